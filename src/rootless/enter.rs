//! Entering bk's own namespaces at start-up, before any thread exists.
//!
//! As root, bk unshares a mount namespace and makes `/` recursively
//! private: every mount it makes (overlay roots, sandbox mounts) then
//! vanishes when it exits, however it exits.
//!
//! As any other user, bk re-executes itself (`/proc/self/exe`, the same
//! arguments, [`SYNC_ENV`] naming two inherited pipe ends). The child
//! unshares a user and a mount namespace first thing and says so over
//! one pipe; the parent then writes its id maps — `newuidmap` /
//! `newgidmap` with the caller's range from `/etc/subuid` and
//! `/etc/subgid` (own id → 0, the range → 1..), or, without a range or
//! the helpers, a single-id map written directly (setgroups denied) with
//! one warning — and answers over the other pipe. From then on the child
//! is root in its namespace: the whole store is written with container
//! ids, as `buildah unshare` does. The parent only forwards SIGINT,
//! SIGTERM, SIGHUP and SIGQUIT and returns the child's exit status.
//!
//! Where user namespaces are disabled the unshare fails; bk stops with
//! one message naming the fix, unless `--sandbox=none` asked to run
//! without isolation: then nothing is unshared at all (as root either,
//! for containers that may not create namespaces), and RUN is `chroot`ed
//! as root and started directly on the host otherwise.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{Gid, Uid};

use super::idmap::{self, IdMap};
use crate::util::fs::FsError;

/// The variable that tells a re-executed bk it is the namespace child:
/// `<read fd>,<write fd>` of its ends of the two pipes.
pub const SYNC_ENV: &str = "_BK_USERNS_SYNC";

/// `--sandbox`: how RUN steps are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Namespaces (user namespace when not root).
    #[default]
    Namespaces,
    /// No namespaces: RUN is `chroot`ed as root and runs directly on the
    /// host otherwise. For machines without user namespaces; not a
    /// sandbox at all.
    None,
}

/// How this bk process runs, once [`enter`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real root, in a private mount namespace.
    Root,
    /// Root inside bk's user namespace; `full_map` when ids other than
    /// 0 are mapped (a subordinate range was granted).
    UserNamespace { full_map: bool },
    /// `--sandbox=none`: no namespaces at all.
    Unisolated,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Set once [`enter`] made this process a private mount namespace of its
/// own (as root, or in its user namespace).
static OWN_MOUNT_NS: AtomicBool = AtomicBool::new(false);

/// Whether this process runs in a mount namespace [`enter`] made for it:
/// then a mount it makes is seen by nobody outside and vanishes when
/// the process ends, however it ends.
pub fn own_mount_namespace() -> bool {
    OWN_MOUNT_NS.load(Ordering::SeqCst)
}

/// The mode [`enter`] set up; without a call (library use, unit tests):
/// `Root` for uid 0, else `Unisolated`.
pub fn mode() -> Mode {
    *MODE.get_or_init(|| {
        if Uid::effective().is_root() {
            Mode::Root
        } else {
            Mode::Unisolated
        }
    })
}

/// What the caller of [`enter`] does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Entered {
    /// Carry on: this process is set up (root, namespace child, or
    /// unisolated).
    Continue,
    /// This was the parent of the namespace child: exit with this code.
    Exit(u8),
}

/// Why setting up the namespaces failed.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error(
        "cannot create a user namespace ({0}): bk needs one to build without root. \
         Enable unprivileged user namespaces (sysctl user.max_user_namespaces=15000; \
         kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0 \
         where those settings exist), run bk as root, or pass --sandbox=none to run RUN \
         steps without any isolation"
    )]
    UserNamespace(Errno),
    #[error("cannot create a private mount namespace")]
    MountNamespace(#[source] Errno),
    #[error("cannot make the mount tree private")]
    PrivateMounts(#[source] Errno),
    #[error("cannot create the pipes to the namespace child")]
    Pipe(#[source] Errno),
    #[error("cannot start bk again inside a user namespace")]
    Spawn(#[source] std::io::Error),
    #[error("cannot talk to the namespace child")]
    Sync(#[source] std::io::Error),
    #[error("cannot read the subordinate id ranges")]
    SubIds(#[source] FsError),
    #[error("cannot write the id map of the namespace child")]
    WriteIdMap(#[source] FsError),
    #[error("the namespace child did not start")]
    ChildGone,
    #[error("malformed {SYNC_ENV}={0:?}")]
    SyncEnv(String),
}

/// Sets this process up for building; call first thing in `main`, before
/// any thread is started. See the module documentation.
pub fn enter(isolation: Isolation) -> Result<Entered, EnterError> {
    if let Some(value) = std::env::var_os(SYNC_ENV) {
        // Only this process reads it; nothing it starts should.
        std::env::remove_var(SYNC_ENV);
        child(&value.to_string_lossy())?;
        return Ok(Entered::Continue);
    }
    if isolation == Isolation::None {
        // Not even a mount namespace: this is also for root in a
        // container that may not create one.
        let _ = MODE.set(Mode::Unisolated);
        return Ok(Entered::Continue);
    }
    if Uid::effective().is_root() {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(EnterError::MountNamespace)?;
        make_private()?;
        OWN_MOUNT_NS.store(true, Ordering::SeqCst);
        let _ = MODE.set(Mode::Root);
        return Ok(Entered::Continue);
    }
    parent().map(Entered::Exit)
}

fn make_private() -> Result<(), EnterError> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(EnterError::PrivateMounts)
}

/// The namespace child: unshare, report, wait for the maps.
fn child(value: &str) -> Result<(), EnterError> {
    let parse = |s: Option<&str>| -> Result<RawFd, EnterError> {
        s.and_then(|s| s.parse().ok())
            .filter(|&fd: &RawFd| fd > 2)
            .ok_or_else(|| EnterError::SyncEnv(value.to_string()))
    };
    let mut parts = value.split(',');
    let (read_fd, write_fd) = (parse(parts.next())?, parse(parts.next())?);
    // SAFETY: the parent created these two pipe ends for this process
    // alone and named them in SYNC_ENV; nothing else in this process
    // (which has only just started, single-threaded) owns them.
    let (mut from_parent, mut to_parent) = unsafe {
        (
            File::from(OwnedFd::from_raw_fd(read_fd)),
            File::from(OwnedFd::from_raw_fd(write_fd)),
        )
    };
    let errno = match nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS) {
        Ok(()) => 0,
        Err(e) => e as i32,
    };
    to_parent
        .write_all(&errno.to_ne_bytes())
        .map_err(EnterError::Sync)?;
    drop(to_parent);
    let mut answer = [0u8; 1];
    let mapped = from_parent.read_exact(&mut answer).is_ok() && answer[0] == b'1';
    if errno != 0 || !mapped {
        // The parent reports why.
        std::process::exit(1);
    }
    // Host groups would show up as `nogroup` inside; drop them where
    // the map allows it (not with a single-id map: setgroups is denied).
    let _ = nix::unistd::setgroups(&[]);
    make_private()?;
    let full_map = std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.lines().count() > 1)
        .unwrap_or(false);
    OWN_MOUNT_NS.store(true, Ordering::SeqCst);
    let _ = MODE.set(Mode::UserNamespace { full_map });
    Ok(())
}

/// The child's pid, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes plain integers.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// The parent: start the child, map its ids, forward signals, return
/// its exit code.
fn parent() -> Result<u8, EnterError> {
    let (child_read, parent_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(EnterError::Pipe)?;
    let (parent_read, child_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(EnterError::Pipe)?;
    for fd in [&child_read, &child_write] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(EnterError::Pipe)?;
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("bk"));
    let mut child = Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .env(
            SYNC_ENV,
            format!("{},{}", child_read.as_raw_fd(), child_write.as_raw_fd()),
        )
        .spawn()
        .map_err(EnterError::Spawn)?;
    drop((child_read, child_write));
    let mut from_child = File::from(parent_read);
    let mut to_child = File::from(parent_write);
    let pid = child.id();
    let mut errno = [0u8; 4];
    if from_child.read_exact(&mut errno).is_err() {
        // It died before unsharing (its own error is on stderr).
        let status = child.wait().map_err(EnterError::Spawn)?;
        return Ok(exit_code(status));
    }
    let errno = i32::from_ne_bytes(errno);
    let fail = |child: &mut std::process::Child, mut to_child: File, err| {
        let _ = to_child.write_all(b"0");
        drop(to_child);
        let _ = child.wait();
        Err(err)
    };
    if errno != 0 {
        return fail(
            &mut child,
            to_child,
            EnterError::UserNamespace(Errno::from_raw(errno)),
        );
    }
    if let Err(err) = map_ids(pid) {
        return fail(&mut child, to_child, err);
    }
    CHILD.store(pid as i32, Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: the handler only reads an atomic and calls kill(2),
        // both async-signal-safe; this process runs no other threads.
        let _ = unsafe { nix::sys::signal::sigaction(signal, &action) };
    }
    to_child.write_all(b"1").map_err(EnterError::Sync)?;
    drop(to_child);
    let status = child.wait().map_err(EnterError::Spawn)?;
    Ok(exit_code(status))
}

/// A child's status as this process's exit code (128 + signal when it
/// was killed, as shells report it).
fn exit_code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => 1,
    }
}

/// Writes the child's uid and gid maps: through the setuid helpers when
/// the caller has subordinate ranges, else a single-id map.
fn map_ids(pid: u32) -> Result<(), EnterError> {
    let uid = Uid::current().as_raw();
    let gid = Gid::current().as_raw();
    let user = nix::unistd::User::from_uid(Uid::current()).ok().flatten();
    let name = user.as_ref().map(|u| u.name.as_str());
    let users = IdMap {
        own: uid,
        sub: idmap::sub_ids(Path::new("/etc/subuid"), name, uid).map_err(EnterError::SubIds)?,
    };
    let groups = IdMap {
        own: gid,
        sub: idmap::sub_ids(Path::new("/etc/subgid"), name, uid).map_err(EnterError::SubIds)?,
    };
    let helpers = (find_in_path("newuidmap"), find_in_path("newgidmap"));
    let why_single = match (&users.sub, &groups.sub, &helpers) {
        (Some(_), Some(_), (Some(uidmap), Some(gidmap))) => {
            match run_helper(uidmap, pid, &users).and_then(|()| run_helper(gidmap, pid, &groups)) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            }
        }
        (None, _, _) | (_, None, _) => format!(
            "no subordinate id range for {} in /etc/subuid and /etc/subgid",
            name.map_or_else(|| format!("uid {uid}"), str::to_string)
        ),
        _ => "newuidmap/newgidmap (package uidmap) not found".to_string(),
    };
    eprintln!(
        "WARNING: {why_single}: only your own user is mapped (as root) in bk's user namespace, \
         so files cannot be owned by other users (RUN chown, COPY --chown, images with such \
         files fail). Add a range, e.g. `usermod --add-subuids 100000-165535 \
         --add-subgids 100000-165535 {}`.",
        name.unwrap_or("USER")
    );
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let write = |file: &str, text: &str| {
        let path = proc.join(file);
        std::fs::write(&path, text)
            .map_err(|e| EnterError::WriteIdMap(FsError::new("write", &path, e)))
    };
    write("uid_map", &users.single_line())?;
    write("setgroups", "deny")?;
    write("gid_map", &groups.single_line())
}

/// Runs `newuidmap`/`newgidmap`; the error text says why it failed.
fn run_helper(helper: &Path, pid: u32, map: &IdMap) -> Result<(), String> {
    let out = Command::new(helper)
        .arg(pid.to_string())
        .args(map.helper_args())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", helper.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed ({}): {}",
            helper.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `name` in `$PATH` (plus the sbin directories the helpers live in on
/// some distributions).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
