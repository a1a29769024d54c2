//! What one sandboxed process is: the runner's input.
//!
//! The solver's exec op fills a [`Spec`] from an LLB exec op: the root
//! file system comes from the snapshotter (a writable directory), the
//! extra mounts from the op's `RUN --mount`s (cache directories, bind
//! sources, secret files, ssh sockets, tmpfs), already prepared on the
//! host side.
//!
//! It is serde-serializable because the runner hands it (resolved into a
//! launch plan) to a fresh `bk` process over a pipe.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One process to run in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// `argv`, `args[0]` looked up in the sandbox's `PATH` when it has
    /// no slash.
    pub args: Vec<String>,
    /// `KEY=value`, in order; the runner adds `PATH` when unset.
    pub env: Vec<String>,
    /// Absolute working directory inside the sandbox; created if missing.
    pub cwd: String,
    /// `USER` as written: `name`, `uid`, `name:group`, `uid:gid`; empty
    /// means root. Names are resolved in the root file system.
    pub user: String,
    /// Empty means `buildkitsandbox`.
    pub hostname: String,
    pub network: Network,
    /// The directory to use as `/`: writable, owned by the snapshotter.
    pub rootfs: PathBuf,
    /// Mounted over the root file system in order, after `/proc` and `/dev`.
    pub mounts: Vec<Mount>,
    /// Mount the root file system read-only.
    pub readonly_rootfs: bool,
    /// `--security=insecure`: keep every capability instead of
    /// BuildKit's default set.
    #[serde(default)]
    pub all_caps: bool,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Network {
    /// The host's network (BuildKit's rootless default).
    #[default]
    Host,
    /// A new network namespace with only a loopback device.
    None,
}

/// One extra mount inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the sandbox; created (as a directory, or an
    /// empty file when a bind source is not a directory) if missing.
    pub target: String,
    pub kind: MountKind,
}

/// How a [`Mount`] is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A bind mount of a host path (directory, file or socket), recursive
    /// (`rbind`) as in BuildKit.
    Bind {
        source: PathBuf,
        readonly: bool,
        #[serde(default)]
        restrict: Restrict,
    },
    /// A fresh tmpfs, always `nosuid` (BuildKit's options); `size` in
    /// bytes, unlimited when `None`.
    Tmpfs {
        size: Option<u64>,
        #[serde(default)]
        readonly: bool,
    },
}

/// Mount options that take power away from what a mount holds, as
/// `mount -o nosuid,nodev,noexec` spells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restrict {
    /// Set-user-id and set-group-id bits are ignored.
    pub nosuid: bool,
    /// Device nodes cannot be opened.
    pub nodev: bool,
    /// Nothing on it can be executed.
    pub noexec: bool,
}

impl Restrict {
    /// `nosuid,nodev,noexec`: what BuildKit gives files it generates
    /// (`/etc/hosts`, `/etc/resolv.conf`).
    pub const ALL: Restrict = Restrict {
        nosuid: true,
        nodev: true,
        noexec: true,
    };
}
