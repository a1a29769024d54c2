//! Command-line flags → typed requests → the layers below. The only layer
//! that uses `anyhow`; one file per subcommand.

mod build;
mod build_context;
pub mod build_opts;
mod build_push;
mod build_remote;
mod build_stdin;
mod cache;
mod completion;
pub mod csv;
mod debug;
mod gc_config;
mod images;
mod local_images;
mod login;
mod logout;
mod push;
mod rmi;
mod source_error;
mod tag;

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
    /// List the images in the local image store
    Images(images::ImagesArgs),
    /// Log in to a registry (saves credentials where Docker keeps them)
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(logout::LogoutArgs),
    /// Push a local image to its registry
    Push(push::PushArgs),
    /// Remove names from the local image store (blobs stay until pruned)
    Rmi(rmi::RmiArgs),
    /// Give a local image another name
    Tag(tag::TagArgs),
}

/// Parses the process arguments (exits with a usage message on error).
pub fn parse() -> Cli {
    Cli::parse()
}

/// Sets this process up for the command before any thread exists: the
/// commands that touch the store run in bk's namespaces (see
/// [`crate::rootless::enter`]). `Some(code)`: this process only waited
/// for the namespace child, which did the work; exit with its code.
pub fn enter_namespaces(cli: &Cli) -> anyhow::Result<Option<ExitCode>> {
    use crate::rootless::{self, Entered, Isolation};
    let isolation = match &cli.command {
        Command::Build(args) if !args.check => match args.sandbox {
            build_opts::Sandbox::Default => Isolation::Namespaces,
            build_opts::Sandbox::None => Isolation::None,
        },
        // Removing and measuring snapshots reads files owned by the ids
        // of bk's user namespace: as a user, enter it. Where user
        // namespaces are unavailable the store can only hold the user's
        // own files (built with --sandbox=none), so go on without.
        Command::Du(_) | Command::Cache(_) if !nix::unistd::Uid::effective().is_root() => {
            return match rootless::enter(Isolation::Namespaces) {
                Ok(Entered::Continue) | Err(_) => Ok(None),
                Ok(Entered::Exit(code)) => Ok(Some(ExitCode::from(code))),
            };
        }
        _ => return Ok(None),
    };
    match rootless::enter(isolation)? {
        Entered::Continue => Ok(None),
        Entered::Exit(code) => Ok(Some(ExitCode::from(code))),
    }
}

/// Runs one command; the returned code is the process exit status.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(args) => build::run(*args, cli.root.as_deref()),
        Command::Du(args) => cache::du(args, &build::store_root(cli.root.as_deref())?),
        Command::Cache(cmd) => cache::run(cmd, &build::store_root(cli.root.as_deref())?),
        Command::Completion(args) => completion::run(args),
        Command::Debug(cmd) => debug::run(cmd),
        Command::Images(args) => images::run(args, cli.root.as_deref()),
        Command::Login(args) => login::run(args),
        Command::Logout(args) => logout::run(args),
        Command::Push(args) => push::run(args, cli.root.as_deref()),
        Command::Rmi(args) => rmi::run(args, cli.root.as_deref()),
        Command::Tag(args) => tag::run(args, cli.root.as_deref()),
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

    #[test]
    fn image_store_commands_parse() {
        use clap::Parser;
        let parse = |argv: &[&str]| super::Cli::try_parse_from(argv).map(|c| c.command);
        match parse(&["bk", "images", "-q", "--digests", "--no-trunc", "app"]) {
            Ok(super::Command::Images(a)) => {
                assert!(a.quiet && a.digests && a.no_trunc);
                assert_eq!(a.filter.as_deref(), Some("app"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["bk", "rmi", "-f", "a", "b:1"]) {
            Ok(super::Command::Rmi(a)) => {
                assert!(a.force);
                assert_eq!(a.names, ["a", "b:1"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["bk", "rmi"]).is_err(), "rmi needs a name");
        match parse(&["bk", "tag", "a", "me/a:2"]) {
            Ok(super::Command::Tag(a)) => {
                assert_eq!((a.source.as_str(), a.target.as_str()), ("a", "me/a:2"))
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["bk", "tag", "a"]).is_err(), "tag needs two names");
    }

    #[test]
    fn login_commands_parse() {
        use clap::Parser;
        let parse = |argv: &[&str]| super::Cli::try_parse_from(argv).map(|c| c.command);
        match parse(&["bk", "login", "-u", "me", "--password-stdin", "reg:5000"]) {
            Ok(super::Command::Login(a)) => {
                assert_eq!(a.username.as_deref(), Some("me"));
                assert!(a.password_stdin && a.password.is_none());
                assert_eq!(a.server.as_deref(), Some("reg:5000"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["bk", "login", "-p", "x", "--password-stdin"]).is_err(),
            "-p and --password-stdin exclude each other"
        );
        match parse(&["bk", "logout"]) {
            Ok(super::Command::Logout(a)) => assert!(a.server.is_none()),
            other => panic!("{other:?}"),
        }
        let host = |s| super::login::registry_host(s).unwrap();
        assert_eq!(host(None), "docker.io");
        assert_eq!(host(Some("https://index.docker.io/v1/")), "docker.io");
        assert_eq!(host(Some("https://reg:5000/v2/")), "reg:5000");
        assert_eq!(host(Some("reg:5000")), "reg:5000");
        assert!(super::login::registry_host(Some("https:///")).is_err());
    }
}
