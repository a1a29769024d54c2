//! The runner's host side: a [`Spec`] → a [`Launch`] plan (user
//! resolved in the root file system, mount points created, `/etc/hosts`
//! and `/etc/resolv.conf` generated) → the sandbox process
//! ([`super::sandbox`], a re-execution of this binary) → its output,
//! streamed to a callback as it comes, and its exit status.
//!
//! Mount points missing from the root file system are created for the
//! run and removed again afterwards when they are still empty, with
//! their parent directory's times restored (BuildKit's mount-stub
//! cleaner), so a RUN leaves no `/proc`, `/dev`, `/etc/hosts` or mount
//! targets behind in its layer (nor `/sys`). The working directory is created if
//! missing and kept, as BuildKit's executor does.
//!
//! Blocking: call it from a thread that stays alive until it returns
//! (the sandbox dies with the thread that started it). The current
//! executable must be `bk`, whose `main` hands `--internal-sandbox` to
//! [`super::sandbox::main_if_requested`] before anything else.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use super::enter::{self, Mode};
use super::etc;
use super::sandbox::{self, HostMount, Launch};
use super::spec::{MountKind, Restrict, Spec};
use super::user::{self, UserError};
use crate::fileop::{self, RootError};
use crate::util::fs::FsError;

/// `PATH` when the process's environment has none (BuildKit's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

/// Why a process could not be run (its own failure is an [`Exit`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no command to run")]
    NoCommand,
    #[error(transparent)]
    User(#[from] UserError),
    #[error("failed to resolve {path} in the root file system")]
    Resolve {
        path: String,
        #[source]
        source: RootError,
    },
    #[error("failed to create the mount point {path}")]
    MountPoint {
        path: String,
        #[source]
        source: FsError,
    },
    #[error("RUN --mount needs the sandbox (it cannot mount {} with --sandbox=none)", .0.join(", "))]
    MountsNeedSandbox(Vec<String>),
    #[error("failed to write the sandbox's {0}")]
    EtcFile(#[source] FsError),
    #[error("failed to start the sandbox process")]
    Spawn(#[source] std::io::Error),
    #[error("failed to hand the sandbox its plan")]
    Plan(#[source] std::io::Error),
    /// The sandbox could not set the process up (mounts, user, exec).
    #[error("failed to start the process in the sandbox: {0}")]
    Setup(String),
}

/// Runs `spec` to completion, passing its output to `output` as it
/// arrives (from two threads, stdout and stderr). Blocking.
pub fn run<F>(spec: &Spec, output: F) -> Result<Exit, RunError>
where
    F: Fn(Stream, &[u8]) + Sync,
{
    if spec.args.is_empty() {
        return Err(RunError::NoCommand);
    }
    let isolated = enter::mode() != Mode::Unisolated;
    if !isolated && !spec.mounts.is_empty() {
        // Without a mount namespace there is nowhere to mount them, and a
        // step that silently ran without its cache, secret or bind
        // would do something else than asked.
        return Err(RunError::MountsNeedSandbox(
            spec.mounts.iter().map(|m| m.target.clone()).collect(),
        ));
    }
    let who = user::resolve(&spec.rootfs, &spec.user)?;
    let mut env = spec.env.clone();
    let has = |env: &[String], key: &str| {
        env.iter()
            .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", who.home));
    }
    let hostname = if spec.hostname.is_empty() {
        etc::DEFAULT_HOSTNAME.to_string()
    } else {
        spec.hostname.clone()
    };

    let mut stubs = Stubs::new(&spec.rootfs);
    let result = (|| {
        // The working directory stays: it is part of the result.
        let cwd = resolve(&spec.rootfs, &spec.cwd)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&cwd)
            .map_err(|e| RunError::MountPoint {
                path: spec.cwd.clone(),
                source: FsError::new("create directory", &cwd, e),
            })?;
        let scratch = Scratch::new()?;
        let mut mounts = Vec::new();
        let (proc_dir, dev_dir, sys_dir) = if isolated {
            let proc_dir = stubs.ensure("/proc", false)?;
            let dev_dir = stubs.ensure("/dev", false)?;
            let sys_dir = stubs.ensure("/sys", false)?;
            let hosts = scratch.write("hosts", &etc::hosts(&hostname))?;
            let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let resolv =
                scratch.write("resolv.conf", &etc::resolv_conf(&host_resolv, spec.network))?;
            for (target, source) in [("/etc/hosts", hosts), ("/etc/resolv.conf", resolv)] {
                mounts.push(HostMount {
                    target: stubs.ensure(target, true)?,
                    // Read-only and nosuid,nodev,noexec, as in BuildKit.
                    kind: MountKind::Bind {
                        source,
                        readonly: true,
                        restrict: Restrict::ALL,
                    },
                });
            }
            for m in &spec.mounts {
                let file = match &m.kind {
                    MountKind::Bind { source, .. } => !source.is_dir(),
                    MountKind::Tmpfs { .. } => false,
                };
                mounts.push(HostMount {
                    target: stubs.ensure(&m.target, file)?,
                    kind: m.kind.clone(),
                });
            }
            (proc_dir, dev_dir, sys_dir)
        } else {
            (PathBuf::new(), PathBuf::new(), PathBuf::new())
        };
        let launch = Launch {
            args: spec.args.clone(),
            env,
            cwd: spec.cwd.clone(),
            uid: who.uid,
            gid: who.gid,
            groups: who.groups,
            hostname,
            network: spec.network,
            rootfs: spec.rootfs.clone(),
            readonly_rootfs: spec.readonly_rootfs,
            proc_dir,
            dev_dir,
            sys_dir,
            mounts,
            isolated,
            all_caps: spec.all_caps,
        };
        let exit = spawn(&launch, &output);
        drop(scratch);
        exit
    })();
    stubs.clean();
    result
}

fn resolve(root: &Path, path: &str) -> Result<PathBuf, RunError> {
    fileop::resolve_in_root(root, path).map_err(|source| RunError::Resolve {
        path: path.to_string(),
        source,
    })
}

/// Starts the sandbox, feeds it the plan, streams its output, and reads
/// its report.
fn spawn<F>(launch: &Launch, output: &F) -> Result<Exit, RunError>
where
    F: Fn(Stream, &[u8]) + Sync,
{
    let plan = serde_json::to_vec(launch).map_err(|e| RunError::Plan(std::io::Error::other(e)))?;
    let (mut ours, theirs) = UnixStream::pair().map_err(RunError::Spawn)?;
    let mut child = Command::new("/proc/self/exe")
        .arg0_compat()
        .arg(sandbox::ARG)
        .arg(std::process::id().to_string())
        .env_clear()
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::Spawn)?;
    let fed = ours
        .write_all(&plan)
        .and_then(|()| ours.shutdown(std::net::Shutdown::Write));
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    std::thread::scope(|s| {
        let pump = |pipe: Option<Box<dyn Read + Send>>, stream| {
            s.spawn(move || {
                let Some(mut pipe) = pipe else { return };
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => output(stream, &buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            });
        };
        pump(
            stdout.map(|p| Box::new(p) as Box<dyn Read + Send>),
            Stream::Stdout,
        );
        pump(
            stderr.map(|p| Box::new(p) as Box<dyn Read + Send>),
            Stream::Stderr,
        );
    });
    let status = child.wait().map_err(RunError::Spawn)?;
    fed.map_err(RunError::Plan)?;
    let mut report = Vec::new();
    for line in BufReader::new(&ours).lines() {
        match line {
            Ok(l) => report.push(l),
            Err(_) => break,
        }
    }
    outcome(&report, status)
}

/// The sandbox's last report line, else its own exit status (a command
/// exec'd without namespaces reports nothing).
fn outcome(report: &[String], status: std::process::ExitStatus) -> Result<Exit, RunError> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(err) = report.iter().find_map(|l| l.strip_prefix("error ")) {
        return Err(RunError::Setup(err.to_string()));
    }
    for line in report.iter().rev() {
        if let Some(n) = line.strip_prefix("exit ").and_then(|n| n.parse().ok()) {
            return Ok(Exit::Code(n));
        }
        if let Some(n) = line.strip_prefix("signal ").and_then(|n| n.parse().ok()) {
            return Ok(Exit::Signal(n));
        }
    }
    match (status.code(), status.signal()) {
        (Some(code), _) => Ok(Exit::Code(code)),
        (None, Some(signal)) => Ok(Exit::Signal(signal)),
        (None, None) => Ok(Exit::Code(1)),
    }
}

/// `argv[0]` of the sandbox: this program's, so `ps` shows `bk`.
trait Arg0Compat {
    fn arg0_compat(&mut self) -> &mut Self;
}

impl Arg0Compat for Command {
    fn arg0_compat(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        let argv0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| OsString::from("bk"));
        self.arg0(argv0)
    }
}

/// A private directory for the generated files, removed on drop (and,
/// if bk was killed first, by the next bk's [`sweep`]).
struct Scratch {
    dir: PathBuf,
}

/// Scratch directories are `bk-run-<pid>-…` in the temporary directory.
const SCRATCH_PREFIX: &str = "bk-run-";

impl Scratch {
    fn new() -> Result<Scratch, RunError> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        let base = std::env::temp_dir();
        SWEPT.call_once(|| sweep(&base));
        let mut last = None;
        for _ in 0..16 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = base.join(format!(
                "{SCRATCH_PREFIX}{}-{}-{nanos:x}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::DirBuilder::new().mode(0o755).create(&dir) {
                Ok(()) => return Ok(Scratch { dir }),
                Err(e) => last = Some(FsError::new("create directory", &dir, e)),
            }
        }
        Err(RunError::EtcFile(last.unwrap_or_else(|| {
            FsError::new(
                "create directory in",
                &base,
                std::io::ErrorKind::AlreadyExists.into(),
            )
        })))
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, RunError> {
        let path = self.dir.join(name);
        fs::write(&path, text).map_err(|e| RunError::EtcFile(FsError::new("write", &path, e)))?;
        Ok(path)
    }
}

/// Removes the scratch directories of bk processes that are gone (killed
/// before they could remove their own), once per process.
fn sweep(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let ours = entry.metadata().is_ok_and(|m| {
            std::os::unix::fs::MetadataExt::uid(&m) == nix::unistd::geteuid().as_raw()
        });
        if ours && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Mount points created for one run, removed again if still empty.
struct Stubs {
    root: PathBuf,
    /// Created paths, parents before children.
    created: Vec<PathBuf>,
    /// Times of the existing directories new entries were made in.
    parents: Vec<(PathBuf, filetime::FileTime, filetime::FileTime)>,
}

impl Stubs {
    fn new(root: &Path) -> Stubs {
        Stubs {
            root: root.to_path_buf(),
            created: Vec::new(),
            parents: Vec::new(),
        }
    }

    /// The host path of `target` in the root, created (a directory, or
    /// an empty file when `file`) with any missing parents if absent.
    fn ensure(&mut self, target: &str, file: bool) -> Result<PathBuf, RunError> {
        let host = resolve(&self.root, target)?;
        let mut missing = Vec::new();
        let mut p = host.clone();
        while p != self.root && fs::symlink_metadata(&p).is_err() {
            missing.push(p.clone());
            match p.parent() {
                Some(parent) => p = parent.to_path_buf(),
                None => break,
            }
        }
        if missing.is_empty() {
            return Ok(host);
        }
        if let Ok(meta) = fs::metadata(&p) {
            self.parents.push((
                p.clone(),
                filetime::FileTime::from_last_access_time(&meta),
                filetime::FileTime::from_last_modification_time(&meta),
            ));
        }
        let fail = |path: &Path, e| RunError::MountPoint {
            path: target.to_string(),
            source: FsError::new("create", path, e),
        };
        for (i, path) in missing.iter().rev().enumerate() {
            let last = i + 1 == missing.len();
            if last && file {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|e| fail(path, e))?;
            } else {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(path)
                    .map_err(|e| fail(path, e))?;
            }
            self.created.push(path.clone());
        }
        Ok(host)
    }

    /// Removes what [`Stubs::ensure`] created and is still empty,
    /// children first, then restores the parents' times.
    fn clean(&mut self) {
        for path in self.created.drain(..).rev() {
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                // Fails when not empty, which is what keeps it.
                let _ = fs::remove_dir(&path);
            } else if meta.is_file() && meta.len() == 0 {
                let _ = fs::remove_file(&path);
            }
        }
        for (dir, atime, mtime) in self.parents.drain(..).rev() {
            let _ = filetime::set_file_times(&dir, atime, mtime);
        }
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        self.clean();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_are_created_and_removed_when_still_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("etc")).unwrap();
        filetime::set_file_mtime(
            root.join("etc"),
            filetime::FileTime::from_unix_time(1000, 0),
        )
        .unwrap();
        let mut stubs = Stubs::new(root);
        let hosts = stubs.ensure("/etc/hosts", true).unwrap();
        assert!(hosts.is_file());
        let deep = stubs.ensure("/a/b/c", false).unwrap();
        assert!(deep.is_dir());
        let kept = stubs.ensure("/k/d", false).unwrap();
        fs::write(kept.join("written"), "x").unwrap();
        // Existing paths are not stubs.
        stubs.ensure("/etc", false).unwrap();
        stubs.clean();
        assert!(!root.join("etc/hosts").exists());
        assert!(!root.join("a").exists());
        assert!(root.join("k/d/written").is_file());
        assert!(root.join("etc").is_dir());
        let mtime = fs::metadata(root.join("etc")).unwrap().modified().unwrap();
        assert_eq!(
            mtime,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000)
        );
    }

    #[test]
    fn stub_targets_follow_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("etc")).unwrap();
        let mut stubs = Stubs::new(root);
        let hosts = stubs.ensure("/etc/hosts", true).unwrap();
        assert_eq!(hosts, root.join("real/hosts"));
    }

    #[test]
    fn sweep_removes_only_dead_processes_scratch() {
        let dir = tempfile::tempdir().unwrap();
        // Above any pid_max: never a live process.
        let dead = dir.path().join(format!("{SCRATCH_PREFIX}999999999-0-ab"));
        let live = dir
            .path()
            .join(format!("{SCRATCH_PREFIX}{}-0-cd", std::process::id()));
        let other = dir.path().join("bk-other-1");
        for d in [&dead, &live, &other] {
            fs::create_dir(d).unwrap();
            fs::write(d.join("hosts"), "x").unwrap();
        }
        sweep(dir.path());
        assert!(!dead.exists());
        assert!(live.join("hosts").exists());
        assert!(other.exists());
    }

    #[test]
    fn outcome_prefers_the_report() {
        use std::os::unix::process::ExitStatusExt;
        let ok = std::process::ExitStatus::from_raw(0);
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(outcome(&lines(&["exit 3"]), ok).unwrap(), Exit::Code(3));
        assert_eq!(outcome(&lines(&["signal 9"]), ok).unwrap(), Exit::Signal(9));
        assert_eq!(outcome(&[], ok).unwrap(), Exit::Code(0));
        let err = outcome(&lines(&["error exec: \"x\": not found"]), ok).unwrap_err();
        assert!(err.to_string().contains("exec: \"x\""), "{err}");
    }
}
