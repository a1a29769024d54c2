//! The system calls `fileop` makes on single inodes, each returning an
//! error that names its path: creating directories and temporary entries
//! beside their final name, renaming them into place, and setting owner,
//! mode, times and extended attributes without following symlinks.
//!
//! Temporary entries exist so that nothing is ever written through an
//! existing inode at a final path: a destination tree may share inodes
//! with other snapshots by hard links. The rename that publishes an entry
//! replaces whatever was there, atomically. (A name that does not exist
//! yet needs no temporary: creating it with `O_EXCL` cannot reach an
//! existing inode either.) The `_fd` variants act on an open file instead
//! of a path, which spares the kernel a path lookup per call.
//!
//! This is the only file in `fileop` with `unsafe` (the xattr calls,
//! which neither std nor nix wrap). It must not import any other
//! part of the crate except `util::fs` and the `Ids` value.

use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use filetime::FileTime;

use super::owner::Ids;
use crate::util::fs::FsError;

pub(crate) type Result<T> = std::result::Result<T, FsError>;

/// `mkdir` with an explicit mode, then `chmod` so the process umask does
/// not decide the result.
pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir(path).map_err(|e| FsError::new("create directory", path, e))?;
    set_mode(path, mode)
}

/// `chmod`; callers never pass a symlink (Linux has no `lchmod`).
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| FsError::new("change mode of", path, e))
}

/// `lchown`.
pub(crate) fn set_owner(path: &Path, ids: Ids) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(ids.uid), Some(ids.gid))
        .map_err(|e| FsError::new("change owner of", path, e))
}

/// Sets atime and mtime to `ts` without following a symlink.
pub(crate) fn set_times_to(path: &Path, ts: SystemTime) -> Result<()> {
    let t = FileTime::from_system_time(ts);
    filetime::set_symlink_file_times(path, t, t).map_err(|e| FsError::new("set times of", path, e))
}

/// Copies atime and mtime (with nanoseconds) from `meta` without following
/// a symlink at `path`.
pub(crate) fn set_times_from(path: &Path, meta: &Metadata) -> Result<()> {
    filetime::set_symlink_file_times(
        path,
        FileTime::from_last_access_time(meta),
        FileTime::from_last_modification_time(meta),
    )
    .map_err(|e| FsError::new("set times of", path, e))
}

/// Sets the times to `ts` when given, else copies them from `meta`:
/// BuildKit's `copyFileTimestamp`.
pub(crate) fn set_times(path: &Path, ts: Option<SystemTime>, meta: &Metadata) -> Result<()> {
    match ts {
        Some(ts) => set_times_to(path, ts),
        None => set_times_from(path, meta),
    }
}

/// `fchown` on the open file whose path is `path` (named in the error).
pub(crate) fn set_owner_fd(file: &File, path: &Path, ids: Ids) -> Result<()> {
    std::os::unix::fs::fchown(file, Some(ids.uid), Some(ids.gid))
        .map_err(|e| FsError::new("change owner of", path, e))
}

/// `fchmod` on the open file whose path is `path`.
pub(crate) fn set_mode_fd(file: &File, path: &Path, mode: u32) -> Result<()> {
    file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| FsError::new("change mode of", path, e))
}

/// [`set_times`] through an open file (`futimens`).
pub(crate) fn set_times_fd(
    file: &File,
    path: &Path,
    ts: Option<SystemTime>,
    meta: &Metadata,
) -> Result<()> {
    let (atime, mtime) = match ts {
        Some(ts) => {
            let t = FileTime::from_system_time(ts);
            (t, t)
        }
        None => (
            FileTime::from_last_access_time(meta),
            FileTime::from_last_modification_time(meta),
        ),
    };
    filetime::set_file_handle_times(file, Some(atime), Some(mtime))
        .map_err(|e| FsError::new("set times of", path, e))
}

/// The owner recorded in `meta`.
pub(crate) fn ids_of(meta: &Metadata) -> Ids {
    Ids {
        uid: meta.uid(),
        gid: meta.gid(),
    }
}

/// Temporary names are unique within the process by this counter and
/// across processes by the pid; a clash with an existing entry (say, a
/// leftover from a crash) just moves on to the next number.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
const TEMP_ATTEMPTS: usize = 64;

fn temp_name(dir: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".bk-tmp.{}.{n}", std::process::id()))
}

/// Runs `create` on fresh temporary names in `dir` until one does not
/// exist yet, returning the name it succeeded with.
pub(crate) fn create_temp(
    dir: &Path,
    what: &'static str,
    mut create: impl FnMut(&Path) -> io::Result<()>,
) -> Result<PathBuf> {
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let tmp = temp_name(dir);
        match create(&tmp) {
            Ok(()) => return Ok(tmp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(FsError::new(what, tmp, e)),
        }
    }
    let (tmp, e) = last.unwrap_or_else(|| {
        (
            dir.to_path_buf(),
            io::Error::from(io::ErrorKind::AlreadyExists),
        )
    });
    Err(FsError::new(what, tmp, e))
}

/// A new, empty regular file under a temporary name in `dir`, opened for
/// writing; `O_EXCL` makes sure it is a new inode and not a link.
pub(crate) fn create_temp_file(dir: &Path) -> Result<(PathBuf, File)> {
    let mut file = None;
    let path = create_temp(dir, "create temporary file", |p| {
        file = Some(create_new_file(p)?);
        Ok(())
    })?;
    match file {
        Some(f) => Ok((path, f)),
        // create_temp only returns Ok after the closure stored the file.
        None => Err(FsError::new(
            "create temporary file",
            path,
            io::Error::other("file handle missing after creation"),
        )),
    }
}

/// A new, empty regular file at `path` (mode 0600 until its metadata is
/// set), opened for writing; `O_EXCL` fails with `AlreadyExists` rather
/// than open an existing inode or follow a link.
pub(crate) fn create_new_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

/// Opens a source file for reading without following a symlink at its
/// last component (the walk saw a regular file there; if it was swapped
/// for a link since, the open fails instead of reading elsewhere).
pub(crate) fn open_source(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| FsError::new("open", path, e))
}

/// Publishes a finished temporary entry under its final name. `rename`
/// swaps the directory entry, so an inode that was there before (and may
/// be shared with another snapshot) is released, never modified.
pub(crate) fn rename_into_place(tmp: &Path, dest: &Path) -> Result<()> {
    fs::rename(tmp, dest).map_err(|e| {
        let _ = fs::remove_file(tmp);
        FsError::new("rename into place", dest, e)
    })
}

/// Removes whatever is at `path` (a directory with its contents), without
/// following symlinks; absence is fine.
pub(crate) fn remove_all(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(FsError::new("remove", path, e)),
        _ => Ok(()),
    }
}

/// `lstat`, with `None` for a missing path.
pub(crate) fn lstat(path: &Path) -> Result<Option<Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::new("inspect", path, e)),
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// What an xattr call acts on: a path, not followed if it is a symlink,
/// or an open file (which spares the kernel a path lookup).
#[derive(Clone, Copy)]
enum Node<'a> {
    Path(&'a CStr),
    Fd(BorrowedFd<'a>),
}

impl Node<'_> {
    /// `listxattr` into `buf` (its size only, when `buf` is empty).
    fn list(self, buf: &mut [u8]) -> isize {
        let (ptr, len) = (buf.as_mut_ptr().cast::<libc::c_char>(), buf.len());
        // SAFETY: the path is a live NUL-terminated string, or the fd is
        // open for the borrow's lifetime; `ptr` points to `len` writable
        // bytes of a live slice and the kernel writes at most `len` bytes
        // there (none when `len` is 0, which only asks for the size).
        unsafe {
            match self {
                Node::Path(p) => libc::llistxattr(p.as_ptr(), ptr, len),
                Node::Fd(fd) => libc::flistxattr(fd.as_raw_fd(), ptr, len),
            }
        }
    }

    /// `getxattr` of `name` into `buf` (its size only, when `buf` is
    /// empty).
    fn get(self, name: &CStr, buf: &mut [u8]) -> isize {
        let (ptr, len) = (buf.as_mut_ptr().cast::<libc::c_void>(), buf.len());
        // SAFETY: as in `list`; `name` is a live NUL-terminated string.
        unsafe {
            match self {
                Node::Path(p) => libc::lgetxattr(p.as_ptr(), name.as_ptr(), ptr, len),
                Node::Fd(fd) => libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), ptr, len),
            }
        }
    }

    /// `setxattr`; `true` on success, the caller reads `errno` otherwise.
    fn set(self, name: &CStr, value: &[u8]) -> bool {
        let (ptr, len) = (value.as_ptr().cast::<libc::c_void>(), value.len());
        // SAFETY: the path or fd is live as in `list`; `name` is a live
        // NUL-terminated string; `ptr` and `len` describe a live slice
        // that the kernel only reads.
        let rc = unsafe {
            match self {
                Node::Path(p) => libc::lsetxattr(p.as_ptr(), name.as_ptr(), ptr, len, 0),
                Node::Fd(fd) => libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), ptr, len, 0),
            }
        };
        rc == 0
    }

    /// Copies every attribute of `self` to `dest`, best effort (see
    /// [`copy_xattrs_best_effort`]).
    fn copy_all_to(self, dest: Node<'_>) {
        let Some(names) = list_xattrs(self) else {
            return;
        };
        for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let Ok(name_c) = CString::new(name) else {
                continue;
            };
            if let Some(value) = get_xattr(self, &name_c) {
                dest.set(&name_c, &value);
            }
        }
    }
}

/// Copies every extended attribute of `src` to `dest`, neither followed
/// if a symlink. Best effort, as BuildKit's copy handler is: a filesystem
/// without xattrs, or `security.*`/`trusted.*` names an unprivileged
/// process may not set, must not fail a COPY.
pub(crate) fn copy_xattrs_best_effort(src: &Path, dest: &Path) {
    let (Ok(src_c), Ok(dest_c)) = (c_path(src), c_path(dest)) else {
        return;
    };
    Node::Path(&src_c).copy_all_to(Node::Path(&dest_c));
}

/// [`copy_xattrs_best_effort`] between open files.
pub(crate) fn copy_xattrs_best_effort_fd(src: &File, dest: &File) {
    Node::Fd(src.as_fd()).copy_all_to(Node::Fd(dest.as_fd()));
}

/// Sets one extended attribute on `path` without following a symlink.
pub(crate) fn set_xattr(path: &Path, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let path_c = c_path(path)?;
    let name_c =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if Node::Path(&path_c).set(&name_c, value) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One extended attribute of `path` (not followed if a symlink), `None`
/// when absent or unreadable.
#[cfg(test)]
pub(crate) fn read_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    get_xattr(Node::Path(&c_path(path).ok()?), &CString::new(name).ok()?)
}

/// The NUL-separated attribute name list, `None` when unreadable.
fn list_xattrs(node: Node<'_>) -> Option<Vec<u8>> {
    // The list can grow between the size query and the read; retry a few
    // times with the new size rather than fail.
    for _ in 0..4 {
        let size = usize::try_from(node.list(&mut [])).ok()?;
        if size == 0 {
            return Some(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match usize::try_from(node.list(&mut buf)) {
            Ok(n) => {
                buf.truncate(n);
                return Some(buf);
            }
            Err(_) if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) => continue,
            Err(_) => return None,
        }
    }
    None
}

fn get_xattr(node: Node<'_>, name: &CStr) -> Option<Vec<u8>> {
    for _ in 0..4 {
        let size = usize::try_from(node.get(name, &mut [])).ok()?;
        let mut buf = vec![0u8; size];
        match usize::try_from(node.get(name, &mut buf)) {
            Ok(n) => {
                buf.truncate(n);
                return Some(buf);
            }
            Err(_) if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) => continue,
            Err(_) => return None,
        }
    }
    None
}
