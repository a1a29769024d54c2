//! The system calls `fileop` makes on single inodes, each returning an
//! error that names its path: creating directories and temporary entries
//! beside their final name, renaming them into place, and setting owner,
//! mode, times and extended attributes without following symlinks.
//!
//! Temporary entries exist so that nothing is ever written through an
//! existing inode at a final path: a destination tree may share inodes
//! with other snapshots by hard links, and a crash must never leave a
//! half-written file under its real name. The rename that publishes an
//! entry replaces whatever was there, atomically.
//!
//! This is the only file in `fileop` with `unsafe` (the xattr calls,
//! which neither std nor nix wrap). It must not import any other
//! part of the crate except `util::fs` and the `Ids` value.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
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
        file = Some(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(p)?,
        );
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

/// Copies every extended attribute of `src` to `dest`, neither followed
/// if a symlink. Best effort, as BuildKit's copy handler is: a filesystem
/// without xattrs, or `security.*`/`trusted.*` names an unprivileged
/// process may not set, must not fail a COPY.
pub(crate) fn copy_xattrs_best_effort(src: &Path, dest: &Path) {
    let (Ok(src_c), Ok(dest_c)) = (c_path(src), c_path(dest)) else {
        return;
    };
    let Some(names) = list_xattrs(&src_c) else {
        return;
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name_c) = CString::new(name) else {
            continue;
        };
        if let Some(value) = get_xattr(&src_c, &name_c) {
            set_xattr_raw(&dest_c, &name_c, &value);
        }
    }
}

/// Sets one extended attribute on `path` without following a symlink.
pub(crate) fn set_xattr(path: &Path, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let path_c = c_path(path)?;
    let name_c =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if set_xattr_raw(&path_c, &name_c, value) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One extended attribute of `path` (not followed if a symlink), `None`
/// when absent or unreadable.
#[cfg(test)]
pub(crate) fn read_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    get_xattr(&c_path(path).ok()?, &CString::new(name).ok()?)
}

/// The NUL-separated attribute name list, `None` when unreadable.
fn list_xattrs(path: &CString) -> Option<Vec<u8>> {
    // The list can grow between the size query and the read; retry a few
    // times with the new size rather than fail.
    for _ in 0..4 {
        // SAFETY: `path` is a valid NUL-terminated string for the call's
        // duration; a null buffer with size 0 asks only for the size and
        // the kernel writes nothing.
        let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        let size = usize::try_from(size).ok()?;
        if size == 0 {
            return Some(Vec::new());
        }
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` is a live, writable allocation of exactly
        // `buf.len()` bytes, which is the size passed; the kernel writes at
        // most that many bytes.
        let got = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match usize::try_from(got) {
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

fn get_xattr(path: &CString, name: &CString) -> Option<Vec<u8>> {
    for _ in 0..4 {
        // SAFETY: both strings are valid and NUL-terminated; a null buffer
        // with size 0 only queries the value's size.
        let size =
            unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        let size = usize::try_from(size).ok()?;
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` is writable for `buf.len()` bytes, the size passed,
        // and the kernel writes no more than that.
        let got = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        match usize::try_from(got) {
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

/// `true` on success; the caller reads `errno` otherwise.
fn set_xattr_raw(path: &CString, name: &CString, value: &[u8]) -> bool {
    // SAFETY: the strings are valid and NUL-terminated; `value` is
    // readable for `value.len()` bytes, the size passed, and the kernel
    // only reads from it.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    rc == 0
}
