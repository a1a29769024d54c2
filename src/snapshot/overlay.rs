//! Mounting and unmounting an overlay over one parent tree: kernel
//! overlayfs through `mount(2)`, or the `fuse-overlayfs` program; the
//! probe that tells whether either works here; and the release of a
//! crashed run's mount.
//!
//! A mount directory (`<root>/tmp/mnt-<rand>/`) holds `upper/`, `work/`
//! and `merged/` (and `lower/`, an empty tree, when there is no parent).
//! There is always exactly one lower layer, the parent's *full* tree, so
//! the `lowerdir` option never grows with the chain's length.
//!
//! The kernel mount names its three directories as `/proc/self/fd/N` of
//! descriptors opened here: the option string is split at `,` (and
//! `lowerdir` at `:`) without any escaping, and a store path containing
//! those characters must still work. `redirect_dir`, `metacopy` and
//! `index` are off so that the upper directory is self-contained: every
//! changed file is there whole, and a renamed lower directory is copied,
//! not redirected. Inside a user namespace `userxattr` makes overlay keep
//! its markers in `user.overlay.*` (kernel ≥ 5.11); it implies no
//! redirects (and the kernel refuses an explicit `redirect_dir` with it).
//!
//! Imports `fsx` and `crate::util` only.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder};
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{MntFlags, MsFlags};

use super::fsx;

/// Which overlay implementation serves a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Kernel overlayfs; `true` adds `userxattr`.
    Kernel(bool),
    /// The `fuse-overlayfs` program.
    Fuse,
}

/// The directories of one overlay mount, all under `dir`.
#[derive(Debug, Clone)]
pub(crate) struct Dirs {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

impl Dirs {
    pub fn new(dir: &Path) -> Dirs {
        Dirs {
            dir: dir.to_path_buf(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
        }
    }

    /// Where the empty lower tree of a parentless snapshot goes.
    pub fn empty_lower(&self) -> PathBuf {
        self.dir.join("lower")
    }

    /// Creates `upper/`, `work/` and `merged/`; `upper/` gets the lower
    /// root's mode, owner and times, because the merged root shows the
    /// upper root's.
    pub fn create(&self, lower: &Path) -> io::Result<()> {
        for d in [&self.upper, &self.work, &self.merged] {
            DirBuilder::new().mode(0o700).create(d)?;
        }
        let meta = fs::symlink_metadata(lower)?;
        let opts = fsx::MetaOpts {
            owner: true,
            xattrs: true,
            strict: false,
        };
        fsx::apply_metadata(lower, &self.upper, &meta, opts)?;
        fs::set_permissions(&self.merged, fs::Permissions::from_mode(0o755))
    }
}

fn open_path(dir: &Path) -> io::Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Mounts `lower` + `dirs.upper` at `dirs.merged`.
pub(crate) fn mount(layout: Layout, lower: &Path, dirs: &Dirs) -> io::Result<()> {
    match layout {
        Layout::Kernel(userxattr) => mount_kernel(lower, dirs, userxattr),
        Layout::Fuse => mount_fuse(lower, dirs),
    }
}

fn mount_kernel(lower: &Path, dirs: &Dirs, userxattr: bool) -> io::Result<()> {
    let (l, u, w) = (
        open_path(lower)?,
        open_path(&dirs.upper)?,
        open_path(&dirs.work)?,
    );
    let mut opts = format!(
        "lowerdir=/proc/self/fd/{},upperdir=/proc/self/fd/{},workdir=/proc/self/fd/{},\
         metacopy=off,index=off",
        l.as_raw_fd(),
        u.as_raw_fd(),
        w.as_raw_fd()
    );
    // userxattr already rules redirects out, and the kernel refuses it
    // together with any redirect_dir value.
    opts.push_str(if userxattr {
        ",userxattr"
    } else {
        ",redirect_dir=off"
    });
    nix::mount::mount(
        Some("overlay"),
        &dirs.merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("mount -t overlay -o {opts}: {e}"),
        )
    })
}

/// The program that serves fuse mounts.
const FUSE_OVERLAYFS: &str = "fuse-overlayfs";

/// Finds `name` in `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// Why fuse-overlayfs cannot be used here, if it cannot: the program is
/// missing, or `/dev/fuse` cannot be opened (on many hosts it is
/// `crw------- root`, closed to other users).
pub(crate) fn fuse_unavailable() -> Option<String> {
    if find_program(FUSE_OVERLAYFS).is_none() {
        return Some(format!(
            "the {FUSE_OVERLAYFS} program is not installed (Debian package fuse-overlayfs)"
        ));
    }
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => None,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Some(
            "this user may not open /dev/fuse (as root, `chmod 0666 /dev/fuse` allows it)"
                .to_string(),
        ),
        Err(e) => Some(format!("cannot open /dev/fuse: {e}")),
    }
}

fn mount_fuse(lower: &Path, dirs: &Dirs) -> io::Result<()> {
    // fuse-overlayfs splits its options at `,` and `:` with no escape.
    for p in [lower, &dirs.upper, &dirs.work] {
        if p.as_os_str().as_bytes().iter().any(|b| b",:\\".contains(b)) {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{FUSE_OVERLAYFS} cannot take the path {} (it contains `,`, `:` or `\\`)",
                    p.display()
                ),
            ));
        }
    }
    let mut opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        dirs.upper.display(),
        dirs.work.display()
    );
    // Without allow_other only the mounting user may enter the mount; a
    // RUN step with another USER must too. Permission checks are then the
    // kernel's (default_permissions), as on a real file system.
    if nix::unistd::geteuid().is_root() {
        opts.push_str(",allow_other,default_permissions");
    }
    // The program forks into the background once the mount is in place,
    // so waiting for it is waiting for the mount.
    let out = Command::new(FUSE_OVERLAYFS)
        .arg("-o")
        .arg(&opts)
        .arg(&dirs.merged)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!(
            "{FUSE_OVERLAYFS} -o {opts} failed ({}): {}",
            out.status,
            text.trim()
        )));
    }
    Ok(())
}

/// Whether `path` is the root of a mount (its device differs from its
/// parent directory's).
pub(crate) fn is_mount_point(path: &Path) -> io::Result<bool> {
    let here = fs::symlink_metadata(path)?;
    let parent = fs::symlink_metadata(path.join(".."))?;
    Ok(here.dev() != parent.dev() || here.ino() == parent.ino())
}

/// Unmounts `merged`. With `detach` a busy mount is detached (it goes
/// away when its last user does); without, a busy mount is an error, so
/// that a commit never reads an upper directory that is still written.
pub(crate) fn unmount(layout: Layout, merged: &Path, detach: bool) -> io::Result<()> {
    let flags = if detach {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    match nix::mount::umount2(merged, flags) {
        Ok(()) => Ok(()),
        // Not mounted (any more).
        Err(nix::errno::Errno::EINVAL) => Ok(()),
        // A fuse mount made through the setuid helper belongs to the user,
        // who unmounts it through the helper too.
        Err(nix::errno::Errno::EPERM) if layout == Layout::Fuse => {
            let mut cmd = Command::new("fusermount3");
            cmd.arg("-u");
            if detach {
                cmd.arg("-z");
            }
            let out = cmd.arg(merged).stdin(Stdio::null()).output()?;
            if out.status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "fusermount3 -u {} failed: {}",
                    merged.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Releases the mount of a crashed run's mount directory: stops a
/// `fuse-overlayfs` still serving it (it may live on in a mount namespace
/// that nothing else holds) and detaches the mount if this namespace has
/// it. Errors mean the mount is still there.
pub(crate) fn release_leftover(dirs: &Dirs) -> io::Result<()> {
    stop_fuse_servers(&dirs.merged);
    match fs::symlink_metadata(&dirs.merged) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        // A dead fuse mount answers ENOTCONN: detach it below.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        Err(e) => return Err(e),
        Ok(_) => {
            if !is_mount_point(&dirs.merged)? {
                return Ok(());
            }
        }
    }
    match nix::mount::umount2(&dirs.merged, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends SIGTERM to every `fuse-overlayfs` whose mount point is `merged`.
fn stop_fuse_servers(merged: &Path) {
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        let is_fuse = args
            .first()
            .and_then(|a| Path::new(OsStr::from_bytes(a)).file_name())
            .is_some_and(|n| n == FUSE_OVERLAYFS);
        if is_fuse && args.last() == Some(&merged.as_os_str().as_bytes()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Mounts a tiny overlay under `dir` (a fresh, empty directory), writes
/// and deletes through it, checks that the upper directory recorded both,
/// and unmounts it. Leaves `dir`'s contents for the caller to remove.
pub(crate) fn probe(dir: &Path, layout: Layout) -> io::Result<()> {
    let dirs = Dirs::new(dir);
    let lower = dirs.empty_lower();
    DirBuilder::new().mode(0o755).create(&lower)?;
    fs::write(lower.join("gone"), b"lower")?;
    fs::create_dir(lower.join("dir"))?;
    fs::write(lower.join("dir/old"), b"lower")?;
    dirs.create(&lower)?;
    mount(layout, &lower, &dirs)?;
    let used = (|| {
        fs::write(dirs.merged.join("new"), b"upper")?;
        fs::remove_file(dirs.merged.join("gone"))?;
        fs::remove_dir_all(dirs.merged.join("dir"))?;
        fs::create_dir(dirs.merged.join("dir"))?;
        if fs::read(dirs.merged.join("new"))? != b"upper" || dirs.merged.join("dir/old").exists() {
            return Err(io::Error::other("the merged tree does not show the writes"));
        }
        Ok(())
    })();
    let unmounted = unmount(layout, &dirs.merged, used.is_err());
    used?;
    unmounted?;
    if fs::read(dirs.upper.join("new"))? != b"upper" {
        return Err(io::Error::other("the upper directory lacks a written file"));
    }
    let whiteout = fs::symlink_metadata(dirs.upper.join("gone"))
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false)
        || dirs.upper.join(".wh.gone").exists();
    if !whiteout {
        return Err(io::Error::other("the upper directory lacks a whiteout"));
    }
    Ok(())
}
