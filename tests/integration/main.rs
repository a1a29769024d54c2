//! One integration binary; a module per feature.

mod add_git;
mod add_http;
mod build;
mod cache_gc;
mod cli;
mod conformance;
mod frontend;
mod image_out;
mod image_store;
mod llb;
mod mounts;
mod mounts_run;
mod multi_platform;
mod named_context;
mod parse;
mod push;
mod registry;
mod registry_util;
mod remote_cache;
mod run;
mod secure_registry;
mod shell_conformance;
mod stdin_context;
mod token_auth;
mod token_registry;
mod util;
