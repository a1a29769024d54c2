//! Exec ops (`RUN`): the root mount's input snapshot → a writable root
//! file system ([`Store::prepare_mounted`]) → the process, run by [`crate::rootless`] with its output
//! streamed to the vertex's progress log → on exit 0 the root is
//! committed as the op's result; otherwise it is discarded and the step
//! fails as BuildKit words it (`process "/bin/sh -c false" did not
//! complete successfully: exit code: 1`).
//!
//! Entitlements (`--allow`) are checked for the whole graph before
//! anything runs, as BuildKit checks them when it loads the definition:
//! `--security=insecure` needs `security.insecure`, `--network=host`
//! needs `network.host`.
//!
//! A RUN step for another platform than the host's runs only when this
//! host can run that architecture's programs inside the sandbox
//! ([`rootless::emulation`]: natively, in the kernel's 32-bit mode, or
//! through a binfmt_misc handler with the `F` flag, such as qemu-user's).
//! That is checked when the first such step is about to run, once per
//! platform and solve ([`RunnablePlatforms`]), so a build never runs the
//! wrong architecture's programs or fails with an obscure `exec format
//! error`, while a fully cached build needs no emulator (as in BuildKit).
//!
//! Imports `llb`, `image` (platforms), `snapshot`, `rootless` and
//! `progress`; never `cli` or `dockerfile`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::image::Platform;
use crate::llb::{Definition, ExecOp, NetMode, Op, SecurityMode};
use crate::progress;
use crate::rootless::emulation::{self, Arch, EmulationError};
use crate::rootless::{self, binfmt, spec, Exit, RunError, Stream};
use crate::snapshot::{SnapshotError, SnapshotId, Store};
use crate::solver::ops::exec_mounts::Prepared;
use crate::solver::{InputDir, LineRange, SolveError, VertexError};

/// `--allow`: what RUN steps may ask for beyond the default sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entitlements {
    /// `network.host`: `RUN --network=host`.
    pub network_host: bool,
    /// `security.insecure`: `RUN --security=insecure`.
    pub security_insecure: bool,
}

/// Why an exec op failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The process ran and failed.
    #[error("process {command:?} did not complete successfully: {}", describe(*exit))]
    Failed { command: String, exit: Exit },
    /// The process could not be started.
    #[error("failed to run {command:?}")]
    Run {
        command: String,
        #[source]
        source: RunError,
    },
    #[error("a RUN step cannot start from {0}")]
    Base(&'static str),
    #[error("cannot prepare the root file system to run in")]
    Prepare(#[source] SnapshotError),
    #[error("cannot commit the result")]
    Commit(#[source] SnapshotError),
    #[error("entitlement {0} is not allowed (pass --allow {0})")]
    Entitlement(&'static str),
    /// The step's platform cannot run on this host.
    #[error("cannot run a {platform} step on this {host} host")]
    Platform {
        platform: String,
        host: String,
        #[source]
        source: Box<EmulationError>,
    },
}

fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(code) => format!("exit code: {code}"),
        Exit::Signal(signal) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {signal}"));
            format!("exit code: {} (killed by {name})", 128 + signal)
        }
    }
}

/// What the RUN steps of `def` are allowed, checked before anything
/// runs: the first exec vertex asking for an entitlement that was not
/// granted, as the error the build fails with.
pub fn check_entitlements(def: &Definition, allowed: Entitlements) -> Result<(), SolveError> {
    for (digest, vertex, meta) in def.iter() {
        let Op::Exec(exec) = &vertex.op else { continue };
        let missing = if exec.security == SecurityMode::Insecure && !allowed.security_insecure {
            Some("security.insecure")
        } else if exec.network == NetMode::Host && !allowed.network_host {
            Some("network.host")
        } else {
            None
        };
        if let Some(entitlement) = missing {
            return Err(SolveError::Vertex {
                name: crate::solver::scheduler::display_name(digest, vertex, meta),
                location: LineRange::of(meta),
                source: Box::new(ExecError::Entitlement(entitlement).into()),
            });
        }
    }
    Ok(())
}

/// The platforms this solve found it can run, so that binfmt_misc is
/// read once per platform, not once per step.
#[derive(Debug)]
pub(crate) struct RunnablePlatforms {
    /// Where binfmt_misc is mounted.
    binfmt: PathBuf,
    known: std::sync::Mutex<HashSet<Platform>>,
}

impl RunnablePlatforms {
    pub fn new(binfmt: &Path) -> RunnablePlatforms {
        RunnablePlatforms {
            binfmt: binfmt.to_path_buf(),
            known: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// The host's binfmt_misc.
    pub fn host() -> RunnablePlatforms {
        RunnablePlatforms::new(Path::new(binfmt::DEFAULT_DIR))
    }

    /// Whether a step for `platform` can run here: natively, in the
    /// kernel's compatibility mode or through a binfmt_misc handler with
    /// the F flag. Checked when a step is about to run (a cached step
    /// needs no emulator), before anything of it is prepared.
    pub fn check(&self, platform: &Platform) -> Result<(), ExecError> {
        let known = |set: &std::sync::Mutex<HashSet<Platform>>| {
            set.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(platform)
        };
        if known(&self.known) {
            return Ok(());
        }
        let host = Platform::host();
        let result = if platform.os != host.os {
            Err(EmulationError::UnknownArch(platform.to_string()))
        } else {
            match Arch::from_goarch(&platform.architecture) {
                Some(arch) => emulation::check(&self.binfmt, arch).map(|_| ()),
                None => Err(EmulationError::UnknownArch(platform.to_string())),
            }
        };
        match result {
            Ok(()) => {
                self.known
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(platform.clone());
                Ok(())
            }
            Err(source) => Err(ExecError::Platform {
                platform: platform.to_string(),
                host: host.to_string(),
                source: Box::new(source),
            }),
        }
    }
}

/// Runs `exec` on `inputs` into a new committed snapshot, logging its
/// output under vertex `digest`. Blocking.
pub(crate) fn run(
    store: &Store,
    exec: &ExecOp,
    inputs: &[InputDir],
    prepared: &Prepared,
    progress: &progress::Sender,
    digest: &str,
) -> Result<SnapshotId, VertexError> {
    let command = exec.meta.args.join(" ");
    // Every mount but the root (cache, bind, tmpfs, secret, ssh, and the
    // `/dev/pipes/` script of a `#!` heredoc), prepared on the host by
    // `exec_mounts` before this step took its worker.
    let extra_mounts: Vec<spec::Mount> = prepared.mounts.clone();
    let base = match exec
        .mounts
        .iter()
        .find(|m| m.dest == "/")
        .and_then(|m| m.input)
    {
        None => None,
        Some(i) => match inputs.get(i as usize) {
            Some(InputDir::Snapshot(id)) => Some(id.clone()),
            Some(InputDir::Scratch) => None,
            Some(InputDir::Context(_)) => {
                return Err(ExecError::Base("the build context itself").into())
            }
            None => return Err(ExecError::Base("a missing input").into()),
        },
    };
    let rootfs = store
        .prepare_mounted(base.as_ref())
        .map_err(ExecError::Prepare)?;
    let mut env = exec.meta.env.clone();
    env.extend(exec.meta.proxy_env.iter().cloned());
    // Secrets with `env=`: values only the process sees.
    env.extend(prepared.env.iter().cloned());
    let spec = spec::Spec {
        args: exec.meta.args.clone(),
        env,
        cwd: if exec.meta.cwd.is_empty() {
            "/".into()
        } else {
            exec.meta.cwd.clone()
        },
        user: exec.meta.user.clone(),
        hostname: exec.meta.hostname.clone(),
        network: match exec.network {
            NetMode::None => spec::Network::None,
            NetMode::Sandbox | NetMode::Host => spec::Network::Host,
        },
        rootfs: rootfs.root().to_path_buf(),
        mounts: extra_mounts,
        readonly_rootfs: false,
        all_caps: exec.security == SecurityMode::Insecure,
    };
    let output = |stream: Stream, data: &[u8]| {
        let stream = match stream {
            Stream::Stdout => progress::Stream::Stdout,
            Stream::Stderr => progress::Stream::Stderr,
        };
        progress.log(digest, stream, data.to_vec());
    };
    let exit = rootless::run(&spec, output).map_err(|source| ExecError::Run {
        command: command.clone(),
        source,
    })?;
    if !exit.success() {
        // Dropping `rootfs` discards the changes.
        return Err(ExecError::Failed { command, exit }.into());
    }
    Ok(rootfs.commit().map_err(ExecError::Commit)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_worded_like_buildkit() {
        let err = ExecError::Failed {
            command: "/bin/sh -c false".into(),
            exit: Exit::Code(1),
        };
        assert_eq!(
            err.to_string(),
            r#"process "/bin/sh -c false" did not complete successfully: exit code: 1"#
        );
        let err = ExecError::Failed {
            command: "sleep 60".into(),
            exit: Exit::Signal(9),
        };
        assert_eq!(
            err.to_string(),
            r#"process "sleep 60" did not complete successfully: exit code: 137 (killed by SIGKILL)"#
        );
    }

    /// A platform only binfmt_misc can run here.
    fn foreign() -> &'static str {
        if Platform::host().architecture == "arm64" {
            "linux/riscv64"
        } else {
            "linux/arm64"
        }
    }

    #[test]
    fn a_foreign_run_without_a_handler_fails_naming_the_platform() {
        let binfmt = tempfile::tempdir().unwrap();
        std::fs::write(binfmt.path().join("status"), "enabled\n").unwrap();
        let platform: Platform = foreign().parse().unwrap();
        let err = RunnablePlatforms::new(binfmt.path())
            .check(&platform)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot run a {} step on this {} host",
                foreign(),
                Platform::host()
            )
        );
        let cause = std::error::Error::source(&err).map(|e| e.to_string());
        assert!(
            cause
                .as_deref()
                .is_some_and(|c| c.contains("no binfmt_misc handler")),
            "{cause:?}"
        );
    }

    #[test]
    fn the_host_platform_needs_no_handler() {
        let missing = tempfile::tempdir().unwrap();
        RunnablePlatforms::new(&missing.path().join("binfmt_misc"))
            .check(&Platform::host())
            .unwrap();
    }

    #[test]
    fn other_operating_systems_are_refused() {
        let missing = tempfile::tempdir().unwrap();
        let err = RunnablePlatforms::new(missing.path())
            .check(&"windows/amd64".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot run a windows/amd64 step on this {} host",
                Platform::host()
            )
        );
    }
}
