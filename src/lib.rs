//! `bk`: BuildKit's Dockerfile builds in one daemonless, rootless binary.
//!
//! The modules follow the one path data takes (see the project README):
//!
//! - [`cli`] turns command-line flags into typed requests; it is the only
//!   place that uses `anyhow`.
//! - [`dockerfile`] is the frontend: Dockerfile text → syntax tree → typed
//!   instructions and stages, with BuildKit-identical word expansion and
//!   `.dockerignore` matching.
//! - [`util`] holds leaf helpers (path-naming fs wrappers, atomic writes).
//!
//! Lower layers never import higher ones: `cli → dockerfile → util`.

pub mod cli;
pub mod dockerfile;
pub mod fileop;
pub mod image;
pub mod util;
