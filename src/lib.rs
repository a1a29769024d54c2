//! `bk`: BuildKit's Dockerfile builds in one daemonless, rootless binary.
//!
//! The modules follow the one path data takes:
//!
//! ```text
//! Dockerfile ─► dockerfile::{parse, plan, lower} ─► llb::Definition
//!                                                     │
//! outputs ◄── exporter ◄── solver ◄────────────────────┘
//!                            ├─ cache   (cache key → committed result, SQLite)
//!                            ├─ source  (the local context, read in place)
//!                            ├─ registry (image pulls) ─► content (blobs)
//!                            ├─ remotecache (--cache-from records, blobs fetched on a hit)
//!                            ├─ fileop  (COPY/ADD/mkdir/rm on directories)
//!                            ├─ snapshot (results as directory trees)
//!                            ├─ rootless (RUN in a namespace sandbox)
//!                            ├─ session (--secret values, --ssh agents)
//!                            └─ progress (events → tty / plain / rawjson)
//!
//! exporter (type=oci|docker) ─► content (layers, configs, manifests by digest)
//! cli (type=image,push=true) ─► exporter::image ─► content ─► registry::push
//! ```
//!
//! - [`cli`] turns command-line flags into typed requests; it is the only
//!   place that uses `anyhow`.
//! - [`dockerfile`] is the frontend: text → syntax tree → typed
//!   instructions → stage plan → build graph.
//! - [`content`] stores blobs by digest for the image exporters.
//! - [`remotecache`] reads and writes build cache shared between stores
//!   (`--cache-to`, `--cache-from`).
//! - [`imagestore`] names images built with `-t` (blobs in `content`).
//! - [`llb`], [`image`], [`progress`] and [`util`] are leaves.
//!
//! Lower layers never import higher ones.

pub mod cache;
pub mod cli;
pub mod content;
pub mod dockerfile;
pub mod exporter;
pub mod fileop;
pub mod image;
pub mod imagestore;
pub mod llb;
pub mod pattern;
pub mod progress;
pub mod registry;
pub mod remotecache;
pub mod rootless;
pub mod session;
pub mod snapshot;
pub mod solver;
pub mod source;
pub mod util;
