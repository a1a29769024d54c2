//! What the user lends a build for its duration, as BuildKit's session
//! attachables do: secrets ([`secrets`]) and SSH agents ([`ssh`]).
//!
//! The CLI builds a [`Session`] from `--secret` and `--ssh` once, before
//! the solve; the solver asks it for a secret's bytes or an agent socket
//! only while preparing a `RUN` that mounts one. Nothing obtained here
//! may reach a snapshot, a cache key, the cache database, a log or an
//! exported file: values are handed out in [`secrets::SecretValue`]s
//! whose `Debug` hides the bytes, and agent sockets live in private
//! directories removed when their guard drops.
//!
//! Imports `crate::util` only; the solver and the CLI build on it.

mod private_dir;
pub mod secrets;
pub mod ssh;

pub use private_dir::PrivateDir;
pub use secrets::{SecretSource, SecretValue, Secrets};
pub use ssh::{AgentSource, SshAgents, SshForward};

/// Why a secret or an agent could not be set up or reached.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("secret missing ID")]
    SecretMissingId,
    /// BuildKit's `failed to stat`: a `--secret` file must exist when the
    /// build starts.
    #[error("secret {id}: failed to stat `{}`", path.display())]
    StatSecret {
        id: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id} too big: {size} bytes, at most {max} allowed")]
    SecretTooBig { id: String, size: u64, max: u64 },
    #[error("secret {id}: failed to read `{}`", path.display())]
    ReadSecret {
        id: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("duplicate SSH agent ID {0:?}")]
    DuplicateSshId(String),
    #[error(
        "invalid empty ssh agent socket for {0:?}: make sure SSH_AUTH_SOCK is set, or pass key files (--ssh {0}=path/to/key)"
    )]
    NoAgentSocket(String),
    #[error("ssh {id}: failed to stat `{}`", path.display())]
    StatSshPath {
        id: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh {id}: only a single agent socket is allowed, and not together with key files")]
    MixedSshPaths { id: String },
    #[error(
        "ssh {id}: failed to start ssh-agent for the key files (is openssh-client installed?)"
    )]
    StartAgent {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh {id}: ssh-agent did not create its socket `{}`", path.display())]
    AgentSocket {
        id: String,
        path: std::path::PathBuf,
    },
    #[error("ssh {id}: ssh-add could not load {}: {stderr}", paths.join(", "))]
    AddKeys {
        id: String,
        paths: Vec<String>,
        stderr: String,
    },
    #[error("ssh {id}: failed to run ssh-add")]
    RunSshAdd {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh {id}: failed to listen on `{}`", path.display())]
    Listen {
        id: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A previous attempt to start this agent failed (the first error was
    /// reported then).
    #[error("ssh {id}: the agent failed to start earlier: {message}")]
    AgentFailed { id: String, message: String },
}

/// The secrets and SSH agents of one build.
#[derive(Debug, Default)]
pub struct Session {
    pub secrets: Secrets,
    pub ssh: SshAgents,
}
