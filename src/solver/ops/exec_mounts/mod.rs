//! The host side of an exec op's mounts: every LLB mount except the root
//! file system becomes a prepared host path and a
//! [`rootless::spec::Mount`](crate::rootless::spec::Mount), plus the
//! environment a secret adds, and guards that undo the preparation when
//! the step is over ([`Prepared`] holds them; drop it after the process
//! has exited).
//!
//! What each kind becomes (BuildKit's `mounts.MountManager` and the exec
//! op's mount setup):
//! - `bind`: the selected path inside its input, resolved with symlinks
//!   kept inside the input; read-only, or — when writable — a private
//!   copy discarded afterwards, so a committed snapshot is never written.
//! - `cache`: an instance of a persistent directory ([`cache`]).
//! - `tmpfs`: a fresh tmpfs of the given size (`nosuid`, read-only when
//!   asked).
//! - `secret`: the value written to a file in a private directory on a
//!   tmpfs of bk's own mount namespace (so it vanishes with bk, however
//!   bk ends) and bound read-only, `nosuid,nodev`, and `noexec` unless
//!   its mode has an execute bit ([`secret_restrict`]), owned and moded
//!   as asked (a plain
//!   chown: the sandbox's ids are this process's, see
//!   `rootless::enter`); or an environment variable (`env=`). Missing:
//!   an error when required, else the mount is skipped.
//! - `ssh`: a fresh socket relaying to the agent ([`crate::session::ssh`]).
//!
//! Secret values go only into the private file, the process environment
//! (through [`Prepared::env`], whose `Debug` hides them) and nowhere
//! else.
//!
//! Imports `llb`, `rootless::spec`, `session`, `snapshot`, `fileop`'s
//! in-root path resolution and `util`; never the scheduler.

pub mod cache;
mod copy;

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fileop::root;
use crate::llb::{ExecOp, Mount as LlbMount, MountKind as LlbKind, SecretOpt, SshOpt};
use crate::rootless::spec::{Mount, MountKind, Restrict};
use crate::session::{PrivateDir, Session, SessionError, SshForward};
use crate::snapshot::{Active, SnapshotError, Store};
use crate::util::fs::FsError;
pub use cache::{CacheLease, CacheMountError, CacheMounts};
pub use copy::copy_tree;

/// Why a mount could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// BuildKit's message for a required secret the user did not give.
    #[error("secret {id}: not found")]
    SecretNotFound { id: String },
    #[error("no SSH key {id:?} forwarded from the client (use --ssh {id}[=path,…])")]
    SshNotFound { id: String },
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("mount {dest}: input {input} does not exist")]
    MissingInput { dest: String, input: u32 },
    #[error("mount {dest}: source `{source_path}` not found")]
    SourceNotFound { dest: String, source_path: String },
    #[error("mount {dest}: failed to resolve source `{source_path}`")]
    Resolve {
        dest: String,
        source_path: String,
        #[source]
        source: root::RootError,
    },
    #[error("mount {dest}: a second output of a step is not supported yet")]
    Output { dest: String },
    #[error("mount {dest}: failed to make a private copy of its source")]
    Copy {
        dest: String,
        #[source]
        source: FsError,
    },
    #[error("mount {dest}: failed to make a directory for the step")]
    Scratch {
        dest: String,
        #[source]
        source: SnapshotError,
    },
    #[error("cache mount {dest}")]
    Cache {
        dest: String,
        #[source]
        source: CacheMountError,
    },
    #[error("failed to create a private directory for secrets")]
    SecretDir(#[source] std::io::Error),
    /// The sandbox's ids are this process's (bk runs as root in its own
    /// user namespace when not root), so a chown here is one there; it
    /// fails when the id is not mapped (no subordinate id range).
    #[error("cannot give {what} the owner {uid}:{gid} (without a subordinate id range in /etc/subuid and /etc/subgid only root is mapped)")]
    Chown {
        what: String,
        uid: u32,
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id}: failed to write it for the step")]
    WriteSecret {
        id: String,
        #[source]
        source: FsError,
    },
}

/// One input of the exec vertex, as its mounts read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInput {
    /// The host directory holding the input's tree (read-only to us);
    /// `None` for an empty file system.
    pub dir: Option<PathBuf>,
    /// A name of the input's result (its snapshot id, or its cache key
    /// when it has none), which tells caches seeded from different
    /// sources apart.
    pub identity: String,
}

/// What preparing mounts needs from the build.
#[derive(Debug, Clone, Copy)]
pub struct MountContext<'a> {
    pub store: &'a Store,
    pub cache_mounts: &'a CacheMounts,
    pub session: &'a Session,
}

/// Mounts ready for the runner; dropping this releases caches, removes
/// throwaway copies and secret files, and stops agent forwarding.
pub struct Prepared {
    /// In the order to mount them (the LLB order: by target, then
    /// secrets, then SSH sockets).
    pub mounts: Vec<Mount>,
    /// `KEY=value` to add to the process environment (secrets with
    /// `env=`). Holds secret values: never log it.
    pub env: Vec<String>,
    guards: Vec<Guard>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .env
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k))
            .collect();
        f.debug_struct("Prepared")
            .field("mounts", &self.mounts)
            .field("env", &names)
            .field("guards", &self.guards.len())
            .finish()
    }
}

/// Something to undo when the step is over.
#[derive(Debug)]
#[allow(dead_code)] // held for their `Drop`s
enum Guard {
    Cache(CacheLease),
    Copy(Active),
    Secrets(SecretsDir),
    Ssh(SshForward),
}

/// Prepares every mount of `exec` except the root file system (`/`),
/// reading inputs from `inputs` (indexed as the vertex's inputs).
/// Blocking: copies, seeds caches, may wait for a `locked` cache, and
/// starts SSH agents. On error, whatever was prepared is undone.
pub fn prepare(
    exec: &ExecOp,
    inputs: &[MountInput],
    cx: MountContext<'_>,
) -> Result<Prepared, MountError> {
    let mut out = Prepared {
        mounts: Vec::new(),
        env: Vec::new(),
        guards: Vec::new(),
    };
    let mut secrets_dir: Option<PathBuf> = None;
    let mut caches: Vec<(String, PathBuf)> = Vec::new();
    for (n, m) in exec.mounts.iter().enumerate() {
        if m.dest == "/" {
            continue;
        }
        let input = match m.input {
            None => None,
            Some(i) => Some(inputs.get(i as usize).ok_or(MountError::MissingInput {
                dest: m.dest.clone(),
                input: i,
            })?),
        };
        match &m.kind {
            LlbKind::Bind => bind(m, input, cx, &mut out)?,
            LlbKind::Cache { id, sharing, .. } => {
                let key = match input {
                    None => id.clone(),
                    Some(input) => format!("{id}:{}:{}", input.identity, m.selector),
                };
                let seed = |dst: &Path| -> Result<(), cache::SeedError> {
                    let src = match input.and_then(|i| i.dir.as_deref()) {
                        Some(dir) => resolve_source(dir, m)?,
                        None => None,
                    };
                    match src {
                        Some(src) => copy_tree(&src, dst)?,
                        None => {
                            fs::create_dir(dst)?;
                            fs::set_permissions(dst, fs::Permissions::from_mode(0o755))?;
                        }
                    }
                    Ok(())
                };
                // One step mounting the same cache twice shares one
                // instance, as BuildKit does (a second `locked` lease
                // would wait for the first forever).
                let path = match caches.iter().find(|(k, _)| *k == key) {
                    Some((_, path)) => path.clone(),
                    None => {
                        let seed: Option<cache::Seed<'_>> = input.map(|_| &seed as cache::Seed<'_>);
                        let lease = cx.cache_mounts.acquire(id, &key, *sharing, seed).map_err(
                            |source| MountError::Cache {
                                dest: m.dest.clone(),
                                source,
                            },
                        )?;
                        let path = lease.path().to_path_buf();
                        out.guards.push(Guard::Cache(lease));
                        caches.push((key, path.clone()));
                        path
                    }
                };
                out.mounts.push(Mount {
                    target: m.dest.clone(),
                    kind: MountKind::Bind {
                        source: path,
                        readonly: m.readonly,
                        restrict: Restrict::default(),
                    },
                });
            }
            LlbKind::Tmpfs { size } => out.mounts.push(Mount {
                target: m.dest.clone(),
                kind: MountKind::Tmpfs {
                    size: *size,
                    readonly: m.readonly,
                },
            }),
            LlbKind::Secret(opt) => secret(m, opt, n, cx, &mut secrets_dir, &mut out)?,
            LlbKind::Ssh(opt) => ssh(m, opt, cx, &mut out)?,
        }
    }
    Ok(out)
}

/// The host path of `m.selector` inside `dir`, symlinks resolved as the
/// input's own root would see them; `None` when it does not exist.
fn resolve_source(dir: &Path, m: &LlbMount) -> Result<Option<PathBuf>, MountError> {
    let resolved =
        root::resolve(dir, m.selector.as_bytes()).map_err(|source| MountError::Resolve {
            dest: m.dest.clone(),
            source_path: m.selector.clone(),
            source,
        })?;
    let host = resolved.host(dir);
    Ok(fs::symlink_metadata(&host).ok().map(|_| host))
}

fn bind(
    m: &LlbMount,
    input: Option<&MountInput>,
    cx: MountContext<'_>,
    out: &mut Prepared,
) -> Result<(), MountError> {
    if m.output.is_some() {
        return Err(MountError::Output {
            dest: m.dest.clone(),
        });
    }
    let not_found = || MountError::SourceNotFound {
        dest: m.dest.clone(),
        source_path: m.selector.clone(),
    };
    let source = match input.and_then(|i| i.dir.as_deref()) {
        Some(dir) => resolve_source(dir, m)?.ok_or_else(not_found)?,
        // An empty file system has only its root: an empty directory of
        // our own stands for it.
        None if m.selector.trim_matches('/').is_empty() => {
            let active = cx
                .store
                .prepare(None)
                .map_err(|source| MountError::Scratch {
                    dest: m.dest.clone(),
                    source,
                })?;
            out.mounts.push(Mount {
                target: m.dest.clone(),
                kind: MountKind::Bind {
                    source: active.path().to_path_buf(),
                    readonly: m.readonly,
                    restrict: Restrict::default(),
                },
            });
            out.guards.push(Guard::Copy(active));
            return Ok(());
        }
        None => return Err(not_found()),
    };
    let source = if m.readonly {
        source
    } else {
        // Writes to a `rw` bind are discarded: the process gets a copy.
        let active = cx
            .store
            .prepare(None)
            .map_err(|source| MountError::Scratch {
                dest: m.dest.clone(),
                source,
            })?;
        let copy = active.path().join("rw");
        copy_tree(&source, &copy).map_err(|source| MountError::Copy {
            dest: m.dest.clone(),
            source,
        })?;
        out.guards.push(Guard::Copy(active));
        copy
    };
    out.mounts.push(Mount {
        target: m.dest.clone(),
        kind: MountKind::Bind {
            source,
            readonly: m.readonly,
            restrict: Restrict::default(),
        },
    });
    Ok(())
}

fn secret(
    m: &LlbMount,
    opt: &SecretOpt,
    n: usize,
    cx: MountContext<'_>,
    dir: &mut Option<PathBuf>,
    out: &mut Prepared,
) -> Result<(), MountError> {
    let Some(value) = cx.session.secrets.get(&opt.id)? else {
        if opt.optional {
            return Ok(());
        }
        return Err(MountError::SecretNotFound { id: opt.id.clone() });
    };
    if let Some(var) = &opt.env {
        out.env
            .push(format!("{var}={}", String::from_utf8_lossy(value.bytes())));
    }
    if m.dest.is_empty() {
        return Ok(());
    }
    let dir = match dir {
        Some(dir) => dir.clone(),
        None => {
            let secrets = SecretsDir::new().map_err(MountError::SecretDir)?;
            let path = secrets.dir.path().to_path_buf();
            out.guards.push(Guard::Secrets(secrets));
            *dir = Some(path.clone());
            path
        }
    };
    let file = dir.join(format!("secret-{n}"));
    let write_err = |e| MountError::WriteSecret {
        id: opt.id.clone(),
        source: FsError::new("write", &file, e),
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .map_err(write_err)?;
    f.write_all(value.bytes()).map_err(write_err)?;
    std::os::unix::fs::fchown(&f, Some(opt.uid), Some(opt.gid)).map_err(|e| MountError::Chown {
        what: format!("secret {}", opt.id),
        uid: opt.uid,
        gid: opt.gid,
        source: e,
    })?;
    f.set_permissions(fs::Permissions::from_mode(opt.mode & 0o777))
        .map_err(write_err)?;
    drop(f);
    out.mounts.push(Mount {
        target: m.dest.clone(),
        kind: MountKind::Bind {
            source: file,
            readonly: true,
            restrict: secret_restrict(opt.mode),
        },
    });
    Ok(())
}

/// A secret file's mount options beyond read-only: `nosuid,nodev`,
/// and `noexec` unless its mode lets someone execute it (BuildKit's
/// rule, so `mode=0755` keeps a secret script runnable).
pub fn secret_restrict(mode: u32) -> Restrict {
    Restrict {
        nosuid: true,
        nodev: true,
        noexec: mode & 0o111 == 0,
    }
}

/// Where a step's secret files live: a private directory (see
/// [`PrivateDir`]) with, when bk runs in its own mount namespace, a fresh
/// tmpfs mounted on it. That mount exists only in bk's namespace, so the
/// files vanish with bk even when it is killed before it can remove
/// them; the directory left behind is empty.
#[derive(Debug)]
struct SecretsDir {
    dir: PrivateDir,
    tmpfs: bool,
}

impl SecretsDir {
    fn new() -> std::io::Result<SecretsDir> {
        use nix::mount::MsFlags;
        let dir = PrivateDir::new("bk-secrets-")?;
        let tmpfs = crate::rootless::enter::own_mount_namespace()
            && nix::mount::mount(
                Some("tmpfs"),
                dir.path(),
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=0700"),
            )
            .is_ok();
        Ok(SecretsDir { dir, tmpfs })
    }
}

impl Drop for SecretsDir {
    fn drop(&mut self) {
        if self.tmpfs {
            // Nothing to report to; a failure leaves a mount only this
            // process sees, gone when it exits.
            let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn ssh(
    m: &LlbMount,
    opt: &SshOpt,
    cx: MountContext<'_>,
    out: &mut Prepared,
) -> Result<(), MountError> {
    let Some(forward) = cx.session.ssh.forward(&opt.id, opt.mode)? else {
        if opt.optional {
            return Ok(());
        }
        return Err(MountError::SshNotFound { id: opt.id.clone() });
    };
    std::os::unix::fs::lchown(forward.socket(), Some(opt.uid), Some(opt.gid)).map_err(|e| {
        MountError::Chown {
            what: format!("the SSH socket for {}", opt.id),
            uid: opt.uid,
            gid: opt.gid,
            source: e,
        }
    })?;
    out.mounts.push(Mount {
        target: m.dest.clone(),
        kind: MountKind::Bind {
            source: forward.socket().to_path_buf(),
            // connect(2) needs no write access to the mount, but nothing
            // here needs protecting either: the socket is this step's.
            readonly: false,
            // BuildKit's ssh mount is a plain `rbind`.
            restrict: Restrict::default(),
        },
    });
    out.guards.push(Guard::Ssh(forward));
    Ok(())
}

#[cfg(test)]
mod tests;
