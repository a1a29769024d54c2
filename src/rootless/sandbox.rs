//! The sandbox process: a fresh `bk` (`/proc/self/exe` [`ARG`] PPID)
//! that reads a [`Launch`] plan as JSON from its standard input and
//! turns itself into the process the plan describes.
//!
//! It runs before anything else in `main` (single-threaded, so `fork`
//! and `unshare` are safe), and dies with the bk that started it
//! (`PR_SET_PDEATHSIG`). Three processes:
//!
//! 1. the sandbox process unshares mount, pid, ipc, uts (and, for
//!    `--network=none`, network: loopback only, brought up) namespaces,
//!    makes every mount private, sets the hostname, forks pid 1 and
//!    exits with its status;
//! 2. pid 1 binds the root file system onto itself, mounts `/proc`, a
//!    read-only `/sys` (both with runc's masked and read-only paths), a
//!    minimal `/dev` (tmpfs; null, zero, full, random, urandom and tty
//!    bound from the host; devpts with its own ptmx; a tmpfs `/dev/shm`;
//!    the `fd` and `std*` links), the generated `/etc/hosts` and
//!    `/etc/resolv.conf` and the spec's mounts, pivots into the root,
//!    forks the command and reaps every process until the command
//!    exits; when pid 1 exits the kernel kills whatever is left in the
//!    namespace;
//! 3. the command: capabilities reduced to BuildKit's default set,
//!    groups, gid, uid, working directory, then `execve`.
//!
//! Outcome and setup errors go back over the same socket the plan came
//! on (one line: `exit N`, `signal N` or `error TEXT`); the command's
//! own standard input is `/dev/null`.
//!
//! With `isolated: false` (`--sandbox=none`) nothing is unshared: the
//! command is `chroot`ed into the root file system when bk is root and
//! run directly otherwise.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

use super::mounts;
use super::spec::{MountKind, Network};

/// `argv[1]` that makes `bk` the sandbox process.
pub const ARG: &str = "--internal-sandbox";

/// Exit status of the sandbox when it could not set the process up.
const SETUP_FAILED: i32 = 125;

/// Everything the sandbox process needs, resolved by the runner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Inside the sandbox; exists already.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub hostname: String,
    pub network: Network,
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    /// Host paths of the mount points (under `rootfs`, existing).
    pub proc_dir: PathBuf,
    pub dev_dir: PathBuf,
    pub sys_dir: PathBuf,
    /// Mounted in order after `/proc` and `/dev`; targets are host
    /// paths under `rootfs` that exist.
    pub mounts: Vec<HostMount>,
    /// Namespaces and pivot_root (false: `--sandbox=none`).
    pub isolated: bool,
    /// Keep every capability (`--security=insecure`).
    pub all_caps: bool,
}

/// A mount with its target already resolved to a host path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostMount {
    pub target: PathBuf,
    pub kind: MountKind,
}

/// Runs the sandbox if `argv[1]` asks for it, returning the exit code;
/// `None` for every other invocation. Call first thing in `main`.
pub fn main_if_requested() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != ARG {
        return None;
    }
    let parent: Option<i32> = args.next().and_then(|p| p.to_str()?.parse().ok());
    Some(sandbox(parent))
}

/// Where outcome lines go.
struct Report(File);

impl Report {
    fn line(&mut self, text: &str) {
        // Nobody to tell if bk is gone.
        let _ = self.0.write_all(format!("{text}\n").as_bytes());
    }
}

fn sandbox(parent: Option<i32>) -> i32 {
    // Die with the bk thread that started us; if it is already gone,
    // stop here.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if parent.is_none_or(|p| nix::unistd::getppid().as_raw() != p) {
        return SETUP_FAILED;
    }
    // Nothing inherited by accident reaches the command.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on
    // descriptors; it cannot invalidate memory.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    let mut input = Vec::new();
    // SAFETY: fd 0 is the socket the runner passed as standard input;
    // ManuallyDrop keeps this File from closing it.
    let mut stdin = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
    if stdin.read_to_end(&mut input).is_err() {
        return SETUP_FAILED;
    }
    let report = match nix::fcntl::fcntl(&*stdin, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)) {
        // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor.
        Ok(fd) => Report(unsafe { File::from_raw_fd(fd) }),
        Err(_) => return SETUP_FAILED,
    };
    let mut report = report;
    if let Err(e) = null_stdin() {
        report.line(&format!("error {e}"));
        return SETUP_FAILED;
    }
    let launch: Launch = match serde_json::from_slice(&input) {
        Ok(l) => l,
        Err(e) => {
            report.line(&format!("error malformed launch plan: {e}"));
            return SETUP_FAILED;
        }
    };
    if !launch.isolated {
        return unisolated(&launch, &mut report);
    }
    match namespaces(&launch) {
        Ok(()) => {}
        Err(e) => {
            report.line(&format!("error {e}"));
            return SETUP_FAILED;
        }
    }
    // SAFETY: this process is single-threaded (a fresh exec that never
    // started a thread), so the child may do anything after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let code = pid1(&launch, &mut report);
            // SAFETY: _exit ends the child without running the parent's
            // destructors a second time.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    report.line(&format!("error the sandbox's init was killed by {signal}"));
                    return SETUP_FAILED;
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    report.line(&format!("error waiting for the sandbox's init: {e}"));
                    return SETUP_FAILED;
                }
            }
        },
        Err(e) => {
            report.line(&format!("error fork: {e}"));
            SETUP_FAILED
        }
    }
}

fn null_stdin() -> Result<(), String> {
    let null = File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    // SAFETY: dup2 onto fd 0, which this process owns.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(format!("dup2: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Step 1: the namespaces, private mounts, hostname, loopback.
fn namespaces(launch: &Launch) -> Result<(), String> {
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if launch.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    nix::sched::unshare(flags).map_err(|e| format!("unshare namespaces: {e}"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make mounts private: {e}"))?;
    nix::unistd::sethostname(&launch.hostname).map_err(|e| format!("set hostname: {e}"))?;
    if launch.network == Network::None {
        loopback_up().map_err(|e| format!("bring up lo: {e}"))?;
    }
    Ok(())
}

/// Sets `IFF_UP` on `lo` in the current network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain socket(2) call; the result is checked and owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned here only.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass,
    // which lives for the whole call; the union field read is the one
    // the kernel filled.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Step 2: mounts, pivot, fork the command, reap, report.
fn pid1(launch: &Launch, report: &mut Report) -> i32 {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if let Err(e) = mounts::apply(&mounts::plan(launch)).and_then(|()| pivot(&launch.rootfs)) {
        report.line(&format!("error {e}"));
        return SETUP_FAILED;
    }
    // SAFETY: still single-threaded (see `sandbox`).
    let command = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let err = exec(launch);
            report.line(&format!("error {err}"));
            // SAFETY: see `sandbox`.
            unsafe { libc::_exit(SETUP_FAILED) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            report.line(&format!("error fork: {e}"));
            return SETUP_FAILED;
        }
    };
    reap(command, report)
}

/// Waits for every child until `command` ends; reports its status.
fn reap(command: Pid, report: &mut Report) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => {
                report.line(&format!("exit {code}"));
                return code;
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                report.line(&format!("signal {}", signal as i32));
                return 128 + signal as i32;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                report.line(&format!("error waiting for the command: {e}"));
                return SETUP_FAILED;
            }
        }
    }
}

/// `pivot_root` into `root` (already a mount point) and drop the old
/// root.
fn pivot(root: &Path) -> Result<(), String> {
    nix::unistd::chdir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| format!("detach the old root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// BuildKit's default capability set (0x00000000a80425fb): chown,
/// dac_override, fowner, fsetid, kill, setgid, setuid, setpcap,
/// net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap.
const DEFAULT_CAPS: u64 = 0xa804_25fb;

/// Drops every capability outside [`DEFAULT_CAPS`] from the bounding
/// set and from the effective, permitted and inheritable sets.
fn drop_caps() -> Result<(), String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if DEFAULT_CAPS & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
                let err = std::io::Error::last_os_error();
                // EINVAL: a capability this kernel does not know.
                if err.raw_os_error() != Some(libc::EINVAL) {
                    return Err(format!("drop capability {cap}: {err}"));
                }
            }
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget/capset take a v3 header and an array of two data
    // structs, which is what we pass; both live for the calls.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) < 0 {
            return Err(format!("capget: {}", std::io::Error::last_os_error()));
        }
        for (i, d) in data.iter_mut().enumerate() {
            let mask = (DEFAULT_CAPS >> (32 * i)) as u32;
            d.effective &= mask;
            d.permitted &= mask;
            d.inheritable &= mask;
        }
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) < 0 {
            return Err(format!("capset: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Step 3: become the user and exec; returns only on failure.
fn exec(launch: &Launch) -> String {
    if !launch.all_caps {
        if let Err(e) = drop_caps() {
            return e;
        }
    }
    if let Err(e) = become_user(launch) {
        return e;
    }
    if let Err(e) = nix::unistd::chdir(launch.cwd.as_str()) {
        return format!("chdir to {}: {e}", launch.cwd);
    }
    exec_command(launch, "")
}

fn become_user(launch: &Launch) -> Result<(), String> {
    let groups: Vec<Gid> = launch.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    // A single-id user namespace denies setgroups; when no group beyond
    // the primary one is asked for, that is not an error.
    let denied = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "deny")
        .unwrap_or(false);
    if !(denied && launch.groups.iter().all(|&g| g == launch.gid)) {
        nix::unistd::setgroups(&groups)
            .map_err(|e| format!("setgroups {:?}: {e}", launch.groups))?;
    }
    let gid = Gid::from_raw(launch.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| {
        format!(
            "setgid {}: {e}{}",
            launch.gid,
            unmapped_hint(launch.gid, "/proc/self/gid_map")
        )
    })?;
    let uid = Uid::from_raw(launch.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| {
        format!(
            "setuid {}: {e}{}",
            launch.uid,
            unmapped_hint(launch.uid, "/proc/self/uid_map")
        )
    })
}

/// Why a set*id failed when the id is not in this user namespace.
fn unmapped_hint(id: u32, map: &str) -> String {
    let mapped = std::fs::read_to_string(map)
        .map(|text| {
            text.lines().any(|line| {
                let f: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                f.len() == 3 && (f[0]..f[0] + f[2]).contains(&u64::from(id))
            })
        })
        .unwrap_or(true);
    if mapped {
        String::new()
    } else {
        format!(
            " (id {id} is not mapped in bk's user namespace: give your user a range in \
             /etc/subuid and /etc/subgid)"
        )
    }
}

/// `execve` of `args[0]`, looked up in the command's `PATH` when it has
/// no slash; `prefix` is prepended to every candidate (the root file
/// system when not pivoted).
fn exec_command(launch: &Launch, prefix: &str) -> String {
    let Some(name) = launch.args.first() else {
        return "no command to run".into();
    };
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let args: Result<Vec<CString>, String> = launch.args.iter().map(|a| cstr(a)).collect();
    let env: Result<Vec<CString>, String> = launch.env.iter().map(|a| cstr(a)).collect();
    let (args, env) = match (args, env) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let candidates: Vec<String> = if name.contains('/') {
        vec![name.clone()]
    } else {
        let path = launch
            .env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("");
        path.split(':')
            .map(|dir| {
                let dir = if dir.is_empty() { "." } else { dir };
                format!("{dir}/{name}")
            })
            .collect()
    };
    let mut last = nix::errno::Errno::ENOENT;
    for candidate in candidates {
        let Ok(path) = cstr(&format!("{prefix}{candidate}")) else {
            continue;
        };
        match nix::unistd::execve(&path, &args, &env) {
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => continue,
            Err(e) => last = e,
            Ok(never) => match never {},
        }
    }
    if last == nix::errno::Errno::ENOENT && !name.contains('/') {
        format!("exec: {name:?}: executable file not found in $PATH")
    } else {
        format!("exec: {name:?}: {}", last.desc())
    }
}

/// `--sandbox=none`: chroot when root, else straight on the host.
fn unisolated(launch: &Launch, report: &mut Report) -> i32 {
    let root = launch.rootfs.to_string_lossy().into_owned();
    let result = if Uid::effective().is_root() {
        nix::unistd::chroot(launch.rootfs.as_path())
            .map_err(|e| format!("chroot {root}: {e}"))
            .and_then(|()| become_user(launch))
            .and_then(|()| {
                nix::unistd::chdir(launch.cwd.as_str())
                    .map_err(|e| format!("chdir to {}: {e}", launch.cwd))
            })
            .map(|()| String::new())
    } else {
        let cwd = launch.rootfs.join(launch.cwd.trim_start_matches('/'));
        nix::unistd::chdir(&cwd)
            .map_err(|e| format!("chdir to {}: {e}", cwd.display()))
            .map(|()| root)
    };
    let err = match result {
        Ok(prefix) => exec_command(launch, &prefix),
        Err(e) => e,
    };
    report.line(&format!("error {err}"));
    SETUP_FAILED
}
