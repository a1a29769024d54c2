//! The solver: runs a build graph ([`crate::llb::Definition`]) and returns
//! the root's filesystem.
//!
//! Owns scheduling, cache keys and the execution of each op kind. May
//! import `llb`, `cache`, `snapshot`, `fileop`, `source` and `progress`;
//! never `cli` or `dockerfile` (the frontend's job ends with the graph).

// The pieces land before `solve` wires them together.
#![allow(dead_code)]

pub mod cache_key;
mod error;
mod ops;
mod scheduler;

pub use error::{LineRange, SolveError, VertexError};
