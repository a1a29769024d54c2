//! One integration binary; a module per feature.

mod build;
mod cli;
mod conformance;
mod frontend;
mod image_out;
mod llb;
mod mounts;
mod mounts_run;
mod parse;
mod registry;
mod registry_util;
mod run;
mod shell_conformance;
mod util;
