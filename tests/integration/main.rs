//! One integration binary; a module per feature.

mod build;
mod cache_gc;
mod cli;
mod conformance;
mod frontend;
mod image_out;
mod llb;
mod parse;
mod push;
mod registry;
mod registry_util;
mod secure_registry;
mod shell_conformance;
mod util;
