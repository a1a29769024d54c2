//! Low-level file-system primitives that the snapshot store and the
//! exporters share: extended attributes, special nodes, metadata copies,
//! no-replace renames, sorted directory listings and random names. Each
//! returns a bare `io::Error`; the caller wraps it in an
//! [`FsError`](crate::util::fs::FsError) naming the path and operation,
//! because only the caller knows which of its paths failed in which role.
//!
//! Never follows a symlink at the path it is given. Imports nothing
//! project-internal: it sits under everything in `snapshot` and `exporter`.

use std::ffi::{CStr, CString, OsString};
use std::fs::{self, File, FileType, Metadata};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// The kind of node a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl EntryKind {
    pub fn of(ft: FileType) -> EntryKind {
        if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else if ft.is_char_device() {
            EntryKind::CharDevice
        } else if ft.is_block_device() {
            EntryKind::BlockDevice
        } else if ft.is_socket() {
            EntryKind::Socket
        } else {
            EntryKind::File
        }
    }
}

/// A path as a C string for the raw syscalls below.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// True for the errors that mean "this file system or this user cannot
/// have that attribute / owner / node", as opposed to a real failure.
pub fn is_not_permitted(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOTSUP) | Some(libc::EINVAL)
    )
}

/// What an xattr call acts on: a path, never followed if it is a
/// symlink, or an open file (which spares the kernel a path lookup).
#[derive(Clone, Copy)]
enum XattrNode<'a> {
    Path(&'a CStr),
    Fd(BorrowedFd<'a>),
}

impl XattrNode<'_> {
    /// The NUL-separated name list into `buf`, or its size when `buf` is
    /// empty.
    fn list(self, buf: &mut [u8]) -> io::Result<usize> {
        let (ptr, len) = (buf.as_mut_ptr().cast::<libc::c_char>(), buf.len());
        // SAFETY: the path is a live NUL-terminated string, or the fd is
        // open for the borrow's lifetime; `ptr` points to `len` writable
        // bytes of a live slice, and the kernel writes at most `len` bytes
        // there (none when `len` is 0, which only asks for the size).
        let n = unsafe {
            match self {
                XattrNode::Path(p) => libc::llistxattr(p.as_ptr(), ptr, len),
                XattrNode::Fd(fd) => libc::flistxattr(fd.as_raw_fd(), ptr, len),
            }
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// The value of `name` into `buf`, or its size when `buf` is empty.
    fn get(self, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
        let (ptr, len) = (buf.as_mut_ptr().cast::<libc::c_void>(), buf.len());
        // SAFETY: as in `list`; `name` is a live NUL-terminated string.
        let n = unsafe {
            match self {
                XattrNode::Path(p) => libc::lgetxattr(p.as_ptr(), name.as_ptr(), ptr, len),
                XattrNode::Fd(fd) => libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), ptr, len),
            }
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn set(self, name: &CStr, value: &[u8]) -> io::Result<()> {
        let (ptr, len) = (value.as_ptr().cast::<libc::c_void>(), value.len());
        // SAFETY: the path or fd is live as in `list`; `name` is a live
        // NUL-terminated string; `ptr` and `len` describe a live slice the
        // kernel only reads.
        let rc = unsafe {
            match self {
                XattrNode::Path(p) => libc::lsetxattr(p.as_ptr(), name.as_ptr(), ptr, len, 0),
                XattrNode::Fd(fd) => libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), ptr, len, 0),
            }
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Every attribute, sorted by name; none where xattrs are not
    /// supported.
    fn list_all(self) -> io::Result<Vec<(CString, Vec<u8>)>> {
        let names = loop {
            let size = match self.list(&mut []) {
                Ok(size) => size,
                Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            if size == 0 {
                return Ok(Vec::new());
            }
            let mut buf = vec![0u8; size];
            match self.list(&mut buf) {
                Ok(got) => {
                    buf.truncate(got);
                    break buf;
                }
                // The list grew between the two calls: ask for the size
                // again.
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
                Err(e) => return Err(e),
            }
        };
        let mut out = Vec::new();
        for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            // `split` on NUL leaves no NUL inside `name`.
            let name = CString::new(name).map_err(|_| io::Error::from(ErrorKind::InvalidData))?;
            match self.get_one(&name)? {
                Some(value) => out.push((name, value)),
                // Removed between listing and reading: it is simply not
                // there.
                None => continue,
            }
        }
        out.sort();
        Ok(out)
    }

    /// One attribute's value, `None` if it does not exist (any more).
    fn get_one(self, name: &CStr) -> io::Result<Option<Vec<u8>>> {
        loop {
            let size = match self.get(name, &mut []) {
                Ok(size) => size,
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut buf = vec![0u8; size];
            match self.get(name, &mut buf) {
                Ok(got) => {
                    buf.truncate(got);
                    return Ok(Some(buf));
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::ERANGE) => continue,
                    Some(libc::ENODATA) => return Ok(None),
                    _ => return Err(e),
                },
            }
        }
    }

    /// Copies every attribute of `self` onto `dst`; see [`copy_xattrs`].
    fn copy_all_to(self, dst: XattrNode<'_>, strict: bool) -> io::Result<u64> {
        let mut skipped = 0;
        for (name, value) in self.list_all()? {
            match dst.set(&name, &value) {
                Ok(()) => {}
                Err(e) if !strict && is_not_permitted(&e) => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(skipped)
    }
}

/// The extended attributes of `path` itself (not of a symlink's target),
/// sorted by name. A file system without xattr support has none.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<(CString, Vec<u8>)>> {
    XattrNode::Path(&c_path(path)?).list_all()
}

/// Sets one extended attribute on `path` itself (not a symlink's target).
pub fn set_xattr(path: &Path, name: &CStr, value: &[u8]) -> io::Result<()> {
    XattrNode::Path(&c_path(path)?).set(name, value)
}

/// Removes one extended attribute from `path` itself; a missing one is
/// not an error.
pub fn remove_xattr(path: &Path, name: &CStr) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: both strings are live and NUL-terminated; nothing is written.
    let rc = unsafe { libc::lremovexattr(path.as_ptr(), name.as_ptr()) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENODATA) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// The value of one extended attribute of `path` itself, `None` when it
/// is not set or the file system has none.
pub fn get_xattr(path: &Path, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    match XattrNode::Path(&c_path(path)?).get_one(name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Ok(None),
        other => other,
    }
}

/// Copies every extended attribute of `src` onto `dst`. With `strict`
/// false, attributes the file system or user cannot set are skipped and
/// counted; with `strict` true any failure is returned.
pub fn copy_xattrs(src: &Path, dst: &Path, strict: bool) -> io::Result<u64> {
    let (src, dst) = (c_path(src)?, c_path(dst)?);
    XattrNode::Path(&src).copy_all_to(XattrNode::Path(&dst), strict)
}

/// What [`apply_metadata`] could not carry over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub owner: u64,
    pub xattrs: u64,
}

/// Which parts of the metadata [`apply_metadata`] copies.
#[derive(Debug, Clone, Copy)]
pub struct MetaOpts {
    /// Try `lchown`; a refusal is counted, not returned, unless `strict`.
    pub owner: bool,
    pub xattrs: bool,
    /// Fail on anything not carried over instead of counting it.
    pub strict: bool,
}

/// Gives `dst` the owner, permission bits, extended attributes (read from
/// `src`) and access/modification times of `meta`, in the order that keeps
/// each: `chown` first (it clears set-id bits and file capabilities), then
/// the mode, then xattrs, then times (every other change touches them).
pub fn apply_metadata(
    src: &Path,
    dst: &Path,
    meta: &Metadata,
    opts: MetaOpts,
) -> io::Result<Skipped> {
    let mut skipped = Skipped::default();
    let is_symlink = meta.file_type().is_symlink();
    if opts.owner {
        let current = fs::symlink_metadata(dst)?;
        if current.uid() != meta.uid() || current.gid() != meta.gid() {
            match std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())) {
                Ok(()) => {}
                Err(e) if !opts.strict && is_not_permitted(&e) => skipped.owner += 1,
                Err(e) => return Err(e),
            }
        }
    }
    // Linux has no lchmod: a symlink's own mode bits are always 0777.
    if !is_symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    if opts.xattrs {
        skipped.xattrs = copy_xattrs(src, dst, opts.strict)?;
    }
    set_times(dst, meta)?;
    Ok(skipped)
}

/// Sets the access and modification times of `path` itself to `meta`'s.
pub fn set_times(path: &Path, meta: &Metadata) -> io::Result<()> {
    filetime::set_symlink_file_times(
        path,
        filetime::FileTime::from_last_access_time(meta),
        filetime::FileTime::from_last_modification_time(meta),
    )
}

/// [`apply_metadata`] for a regular file copied through open files:
/// `src` is the source (read for its xattrs), `dst` the new copy, `meta`
/// the source's metadata. Same parts, same order, but every call goes to
/// a descriptor, so none of them looks the path up again.
pub fn apply_metadata_fd(
    src: &File,
    dst: &File,
    meta: &Metadata,
    opts: MetaOpts,
) -> io::Result<Skipped> {
    let mut skipped = Skipped::default();
    if opts.owner {
        let current = dst.metadata()?;
        if current.uid() != meta.uid() || current.gid() != meta.gid() {
            match std::os::unix::fs::fchown(dst, Some(meta.uid()), Some(meta.gid())) {
                Ok(()) => {}
                Err(e) if !opts.strict && is_not_permitted(&e) => skipped.owner += 1,
                Err(e) => return Err(e),
            }
        }
    }
    dst.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    if opts.xattrs {
        skipped.xattrs =
            XattrNode::Fd(src.as_fd()).copy_all_to(XattrNode::Fd(dst.as_fd()), opts.strict)?;
    }
    filetime::set_file_handle_times(
        dst,
        Some(filetime::FileTime::from_last_access_time(meta)),
        Some(filetime::FileTime::from_last_modification_time(meta)),
    )?;
    Ok(skipped)
}

/// Creates a fifo, device or socket node at `dst` like the one `meta`
/// describes (permission bits are fixed later by [`apply_metadata`]).
pub fn make_node(dst: &Path, meta: &Metadata) -> io::Result<()> {
    use nix::sys::stat::{Mode, SFlag};
    let mode = meta.mode();
    let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
    let perm = Mode::from_bits_truncate(mode & 0o7777);
    nix::sys::stat::mknod(dst, kind, perm, meta.rdev()).map_err(io::Error::from)
}

/// Copies the bytes of regular file `src` into a new file `dst`, which
/// must not exist. `src` is opened without following a symlink, so a node
/// swapped for a link under us is refused rather than read through.
pub fn copy_contents(src: &Path, dst: &Path) -> io::Result<File> {
    let mut from = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    // std uses copy_file_range here, so same-file-system copies stay in
    // the kernel (and may share extents on file systems that reflink).
    io::copy(&mut from, &mut to)?;
    Ok(to)
}

/// Makes `dst` a copy of the non-directory `src` described by `meta`:
/// regular files get their bytes copied, symlinks the same target, other
/// nodes are recreated. Metadata is not applied here.
pub fn copy_node(src: &Path, dst: &Path, meta: &Metadata) -> io::Result<()> {
    let ft = meta.file_type();
    if ft.is_file() {
        copy_contents(src, dst).map(drop)
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)
    } else {
        make_node(dst, meta)
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of
/// replacing an existing `to` (which `rename(2)` would do silently for an
/// empty directory).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let cfrom = c_path(from)?;
    let cto = c_path(to)?;
    // SAFETY: both strings are live and NUL-terminated; AT_FDCWD makes the
    // relative-path behaviour that of rename(2); no memory is written.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cfrom.as_ptr(),
            libc::AT_FDCWD,
            cto.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // Some file systems (older NFS, FUSE) lack the flag: check, then
    // rename. The window between the two is harmless for random names.
    if err.raw_os_error() == Some(libc::EINVAL) {
        if fs::symlink_metadata(to).is_ok() {
            return Err(io::Error::from(ErrorKind::AlreadyExists));
        }
        return fs::rename(from, to);
    }
    Err(err)
}

/// The entries of `dir` (names and types, no `.`/`..`), sorted by the
/// bytes of their names so that every walk is deterministic.
pub fn read_dir_sorted(dir: &Path) -> io::Result<Vec<(OsString, FileType)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        out.push((entry.file_name(), entry.file_type()?));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

/// `bytes` random bytes as lowercase hex, for temporary and snapshot names.
/// Uniqueness, not secrecy, is what matters, and every user of a name
/// creates it exclusively and retries on a clash; so a hash of the
/// per-process random hasher keys, the pid, the time and a counter will do
/// without a random-number crate.
pub fn random_hex(bytes: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut keyed = std::collections::hash_map::RandomState::new().build_hasher();
    keyed.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = Sha256::new();
    hasher.update(keyed.finish().to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(nanos.to_le_bytes());
    let digest = hasher.finalize();
    hex::encode(&digest[..bytes.min(digest.len())])
}

/// Removes the tree at `path` (a missing one is not an error). Snapshots
/// keep their directories' real modes, and without root a directory such
/// as `dr-xr-xr-x /proc` refuses to have its entries removed; so when a
/// plain removal is refused, every directory in the tree is made
/// owner-writable and the removal tried again.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            open_up_dirs(path)?;
            match fs::remove_dir_all(path) {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                other => other,
            }
        }
        Err(e) => Err(e),
    }
}

/// Adds owner rwx to every directory under (and including) `root`.
fn open_up_dirs(root: &Path) -> io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = match fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !meta.is_dir() {
            continue;
        }
        if meta.mode() & 0o700 != 0o700 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(meta.mode() | 0o700))?;
        }
        for (name, ft) in read_dir_sorted(&dir)? {
            if ft.is_dir() {
                stack.push(dir.join(name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_names_differ_and_are_hex() {
        let a = random_hex(16);
        let b = random_hex(16);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn rename_noreplace_refuses_an_existing_empty_dir() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        let to = dir.path().join("to");
        fs::create_dir(&from).unwrap();
        fs::create_dir(&to).unwrap();
        let err = rename_noreplace(&from, &to).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert!(from.is_dir());
        fs::remove_dir(&to).unwrap();
        rename_noreplace(&from, &to).unwrap();
        assert!(to.is_dir() && !from.exists());
    }

    #[test]
    fn xattrs_round_trip_when_supported() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"").unwrap();
        fs::write(&b, b"").unwrap();
        let name = CString::new("user.bk.test").unwrap();
        match set_xattr(&a, &name, b"v1") {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return,
            r => r.unwrap(),
        }
        assert_eq!(
            list_xattrs(&a).unwrap(),
            vec![(name.clone(), b"v1".to_vec())]
        );
        assert_eq!(copy_xattrs(&a, &b, true).unwrap(), 0);
        assert_eq!(list_xattrs(&b).unwrap(), vec![(name, b"v1".to_vec())]);
    }

    #[test]
    fn sorted_listing_orders_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b", "a.txt", "a", "B"] {
            fs::write(dir.path().join(n), b"").unwrap();
        }
        let names: Vec<_> = read_dir_sorted(dir.path())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n.into_string().unwrap())
            .collect();
        assert_eq!(names, ["B", "a", "a.txt", "b"]);
    }
}
