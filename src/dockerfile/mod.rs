//! The Dockerfile frontend: bytes → syntax tree → typed instructions and
//! stages → the LLB build graph (`lower`), with BuildKit-identical word
//! expansion and `.dockerignore` matching.
//!
//! It knows Dockerfile text only; its output is plain data (`crate::llb`).
//! It never touches the disk beyond what its callers hand it and never runs
//! anything; it must not import the solver, snapshotter, cache, exporter or
//! runner layers.
//!
//! Why a hand-written parser: the `dockerfile-parser` crate was measured
//! against what BuildKit accepts and fails on `# escape=`, heredocs,
//! `RUN --mount`/`--network` flags (swallowed into the shell string), bare
//! boolean flags (`COPY --link` becomes a source path), empty lines after a
//! continuation, and knows only `$V`/`${V}` expansion. BuildKit's own
//! structure is followed instead: directives → logical lines with the escape
//! character → heredoc bodies → per-instruction flags and JSON/shell form →
//! a separate shell-word expander.

pub mod args;
pub mod config_values;
mod directives;
pub mod dispatch;
pub mod error;
pub mod flags;
pub mod git_ref;
pub mod heredoc;
pub mod instructions;
mod json_array;
mod line_parsers;
pub mod lint;
pub mod location;
pub mod lower;
mod lower_copy;
mod lower_run;
#[cfg(test)]
mod lower_tests;
pub mod named_context;
pub mod node;
pub mod parser;
pub mod shell;
mod shell_pattern;
pub mod stage_error;
pub mod stages;
#[cfg(test)]
mod stages_tests;
pub mod suggest;
pub mod syntax;

pub use error::{Error, ErrorKind, Result};
pub use location::{Position, Range};
pub use lower::{lower, LowerError, LowerOptions, Lowered};
pub use named_context::{ContextSource, NamedContexts};
pub use node::{Ast, Heredoc, Node};
pub use parser::{parse, ParseError};
pub use stage_error::StageError;
pub use stages::{plan, BaseImageResolver, NoBaseImages, Plan, PlanOptions};
