//! Command-line flags → typed requests → the layers below. The only layer
//! that uses `anyhow`; one file per subcommand.

mod build;
pub mod build_opts;
mod build_push;
mod cache;
mod completion;
pub mod csv;
mod debug;
mod gc_config;
mod source_error;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use source_error::SourceError;

/// BuildKit's Dockerfile builds in one daemonless, rootless binary.
#[derive(Debug, Parser)]
#[command(name = "bk", version, about, propagate_version = true)]
pub struct Cli {
    /// Store directory (cache, blobs, images)
    #[arg(long, global = true, env = "BK_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Print debug logs
    #[arg(long, global = true)]
    pub debug: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build from a Dockerfile and a context
    Build(Box<build::BuildArgs>),
    /// Show disk usage of the build cache
    Du(cache::DuArgs),
    /// Manage the build cache
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Print a shell completion script
    Completion(completion::CompletionArgs),
    /// Developer tools: inspect what bk makes of a Dockerfile
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

/// Parses the process arguments (exits with a usage message on error).
pub fn parse() -> Cli {
    Cli::parse()
}

/// Runs one command; the returned code is the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build::run(*args, cli.root.as_deref()),
        Command::Du(args) => cache::du(args, &build::store_root(cli.root.as_deref())?),
        Command::Cache(cmd) => cache::run(cmd, &build::store_root(cli.root.as_deref())?),
        Command::Completion(args) => completion::run(args),
        Command::Debug(cmd) => debug::run(cmd),
    }
}

/// The clap definition, for completions and tests.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definition_is_consistent() {
        super::command().debug_assert();
    }
}
