//! Turning an overlay's upper directory into a snapshot: the upper tree
//! is applied to a hardlink clone of the parent, so that the result is a
//! full tree whose unchanged files are still the parent's inodes (and
//! [`diff`](super::diff) sees exactly what the `RUN` changed).
//!
//! - a whiteout (a character device 0/0; with fuse-overlayfs also a
//!   `.wh.<name>` file) deletes `<name>` from the clone;
//! - an opaque directory (`trusted.overlay.opaque` / `user.overlay.opaque`
//!   / `user.fuseoverlayfs.opaque` = `y`, or fuse-overlayfs's
//!   `.wh..wh..opq` file) first loses the clone's contents;
//! - a new or changed non-directory is renamed into place: its inode
//!   moves from the upper directory, so no shared inode is written;
//! - a directory's mode, owner, times and xattrs are copied onto the
//!   clone's directory after its entries are done (adding entries changes
//!   a directory's mtime).
//!
//! overlayfs copies a file up when it is opened for writing or has its
//! metadata touched, even when nothing ends up different. A copied-up
//! file with a single link whose type, mode, owner, size, mtime, xattrs
//! and bytes equal the clone's is dropped, so the clone keeps the
//! parent's inode and the file does not count as changed. A file with
//! more links in the upper tree was linked during the step and is always
//! moved, so that its names stay one inode.
//!
//! fuse-overlayfs gives a directory it copies up the current time; such
//! a directory whose names did not change (and whose mode and owner are
//! the lower one's) keeps the lower directory's times, so that writing
//! `/etc/x` does not also report `/etc` as changed. (A `touch` of such a
//! directory alone is lost with fuse-overlayfs.)
//!
//! overlay's own bookkeeping xattrs (`trusted.overlay.*`,
//! `user.overlay.*`, fuse-overlayfs's) never reach the snapshot.
//!
//! Imports `fsx` and `crate::util` only.

use std::ffi::{CStr, OsStr};
use std::fs::{self, DirBuilder, Metadata};
use std::io::{self, ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::fsx;
use crate::util::fs::FsError;

/// Whether the upper tree came from fuse-overlayfs, whose `.wh.` names
/// are markers (the kernel's never are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Markers {
    Kernel,
    Fuse,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_FILE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTRS: [&CStr; 3] = [
    c"trusted.overlay.opaque",
    c"user.overlay.opaque",
    c"user.fuseoverlayfs.opaque",
];
const PRIVATE_XATTR_PREFIXES: [&[u8]; 4] = [
    b"trusted.overlay.",
    b"user.overlay.",
    b"user.fuseoverlayfs.",
    b"security.fuseoverlayfs.",
];

/// Whether an xattr is overlay's bookkeeping rather than the file's.
pub(crate) fn is_private_xattr(name: &CStr) -> bool {
    let name = name.to_bytes();
    PRIVATE_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The xattrs of `path` that belong to the file, not to overlay.
fn own_xattrs(path: &Path) -> io::Result<Vec<(std::ffi::CString, Vec<u8>)>> {
    let mut all = fsx::list_xattrs(path)?;
    all.retain(|(name, _)| !is_private_xattr(name));
    Ok(all)
}

/// What [`apply`] did, for tests and reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Non-directories renamed into the clone.
    pub moved: u64,
    /// Names the whiteouts and opaque directories removed.
    pub removed: u64,
    /// Copied-up files dropped because nothing about them changed.
    pub unchanged: u64,
}

/// Applies the upper tree `upper` to `target`, a hardlink clone of the
/// overlay's lower tree. Consumes `upper`'s non-directories.
pub(crate) fn apply(upper: &Path, target: &Path, markers: Markers) -> Result<Applied, FsError> {
    let mut applied = Applied::default();
    let meta = fs::symlink_metadata(upper).map_err(|e| FsError::new("inspect", upper, e))?;
    apply_dir(upper, target, markers, &mut applied)?;
    sync_dir_metadata(upper, &meta, target)?;
    Ok(applied)
}

fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path, markers: Markers) -> Result<bool, FsError> {
    for name in OPAQUE_XATTRS {
        let value =
            fsx::get_xattr(dir, name).map_err(|e| FsError::new("read xattrs of", dir, e))?;
        if value.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(markers == Markers::Fuse && dir.join(OsStr::from_bytes(OPAQUE_FILE)).exists())
}

/// Removes whatever `path` names (a tree or a single node); nothing there
/// is fine.
fn remove_any(path: &Path) -> Result<bool, FsError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FsError::new("inspect", path, e)),
        Ok(m) if m.is_dir() => fsx::remove_tree(path)
            .map(|()| true)
            .map_err(|e| FsError::new("remove", path, e)),
        Ok(_) => fs::remove_file(path)
            .map(|()| true)
            .map_err(|e| FsError::new("remove", path, e)),
    }
}

/// Applies one upper directory to its clone; returns whether names in
/// `target` itself were added, removed or changed kind (which moves a
/// directory's mtime).
fn apply_dir(
    upper: &Path,
    target: &Path,
    markers: Markers,
    applied: &mut Applied,
) -> Result<bool, FsError> {
    let mut names_changed = false;
    if is_opaque(upper, markers)? {
        let old = fsx::read_dir_sorted(target).map_err(|e| FsError::new("read", target, e))?;
        for (name, _) in old {
            if remove_any(&target.join(&name))? {
                applied.removed += 1;
                names_changed = true;
            }
        }
    }
    let entries = fsx::read_dir_sorted(upper).map_err(|e| FsError::new("read", upper, e))?;
    for (name, ft) in entries {
        let bytes = name.as_bytes();
        let from = upper.join(&name);
        if markers == Markers::Fuse && bytes.starts_with(WHITEOUT_PREFIX) {
            if bytes != OPAQUE_FILE {
                let hidden = OsStr::from_bytes(&bytes[WHITEOUT_PREFIX.len()..]);
                if remove_any(&target.join(hidden))? {
                    applied.removed += 1;
                    names_changed = true;
                }
            }
            continue;
        }
        let to = target.join(&name);
        if ft.is_dir() {
            let existing = match fs::symlink_metadata(&to) {
                Ok(m) if m.is_dir() => Some(m),
                Ok(_) => {
                    fs::remove_file(&to).map_err(|e| FsError::new("remove", &to, e))?;
                    make_dir(&to)?;
                    names_changed = true;
                    None
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    make_dir(&to)?;
                    names_changed = true;
                    None
                }
                Err(e) => return Err(FsError::new("inspect", &to, e)),
            };
            // An opaque directory was removed and made again here.
            if existing.is_some() && is_opaque(&from, markers)? {
                names_changed = true;
            }
            // Read before the entries move out, which changes its mtime.
            let mut meta =
                fs::symlink_metadata(&from).map_err(|e| FsError::new("inspect", &from, e))?;
            let inner_changed = apply_dir(&from, &to, markers, applied)?;
            // fuse-overlayfs stamps a directory it copies up with the
            // current time; when its names did not change, the lower
            // directory's times are the right ones.
            if let Some(lower) = existing {
                if markers == Markers::Fuse && !inner_changed && same_dir_attrs(&meta, &lower) {
                    meta = lower;
                }
            }
            sync_dir_metadata(&from, &meta, &to)?;
            continue;
        }
        let meta = fs::symlink_metadata(&from).map_err(|e| FsError::new("inspect", &from, e))?;
        if is_whiteout(&meta) {
            if remove_any(&to)? {
                applied.removed += 1;
                names_changed = true;
            }
            continue;
        }
        if meta.nlink() == 1 && unchanged_copy_up(&from, &meta, &to)? {
            applied.unchanged += 1;
            continue;
        }
        match fs::symlink_metadata(&to) {
            Ok(m) if m.is_dir() => {
                fsx::remove_tree(&to).map_err(|e| FsError::new("remove", &to, e))?;
                names_changed = true;
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => names_changed = true,
            Err(e) => return Err(FsError::new("inspect", &to, e)),
        }
        fs::rename(&from, &to).map_err(|e| FsError::new("move into the snapshot", &from, e))?;
        strip_private_xattrs(&to)?;
        applied.moved += 1;
    }
    Ok(names_changed)
}

/// Whether two directories agree in mode and owner (what a copy-up
/// keeps).
fn same_dir_attrs(a: &Metadata, b: &Metadata) -> bool {
    (a.mode(), a.uid(), a.gid()) == (b.mode(), b.uid(), b.gid())
}

fn make_dir(path: &Path) -> Result<(), FsError> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| FsError::new("create directory", path, e))
}

/// Removes overlay's xattrs from a node moved out of the upper tree
/// (removing an xattr leaves the mtime alone).
fn strip_private_xattrs(path: &Path) -> Result<(), FsError> {
    let names = fsx::list_xattrs(path).map_err(|e| FsError::new("read xattrs of", path, e))?;
    for (name, _) in names.iter().filter(|(n, _)| is_private_xattr(n)) {
        fsx::remove_xattr(path, name).map_err(|e| FsError::new("remove an xattr of", path, e))?;
    }
    Ok(())
}

/// Whether the upper file `from` is a copy-up of `to` that ended up the
/// same in everything a snapshot records.
fn unchanged_copy_up(from: &Path, fm: &Metadata, to: &Path) -> Result<bool, FsError> {
    let tm = match fs::symlink_metadata(to) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(FsError::new("inspect", to, e)),
    };
    same_node(from, fm, to, &tm)
}

/// Whether two regular files or symlinks are equal in type, mode, owner,
/// size, mtime, own xattrs and content. Other node kinds never are (they
/// are cheap to keep as they are).
pub(crate) fn same_node(a: &Path, am: &Metadata, b: &Path, bm: &Metadata) -> Result<bool, FsError> {
    let key = |m: &Metadata| {
        (
            m.mode(),
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
        )
    };
    let (at, bt) = (am.file_type(), bm.file_type());
    if key(am) != key(bm)
        || !((at.is_file() && bt.is_file()) || (at.is_symlink() && bt.is_symlink()))
    {
        return Ok(false);
    }
    let ax = own_xattrs(a).map_err(|e| FsError::new("read xattrs of", a, e))?;
    let bx = own_xattrs(b).map_err(|e| FsError::new("read xattrs of", b, e))?;
    if ax != bx {
        return Ok(false);
    }
    if at.is_symlink() {
        let ra = fs::read_link(a).map_err(|e| FsError::new("read link", a, e))?;
        let rb = fs::read_link(b).map_err(|e| FsError::new("read link", b, e))?;
        return Ok(ra == rb);
    }
    same_bytes(a, b)
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool, FsError> {
    let open = |p: &Path| {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)
            .map_err(|e| FsError::new("open", p, e))
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(|e| FsError::new("read", a, e))?;
        let m = read_full(&mut fb, &mut bb).map_err(|e| FsError::new("read", b, e))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Gives directory `dst` the owner, mode and times of `sm` (read from
/// `src` before its entries moved out) and `src`'s own xattrs (adding,
/// changing and removing).
fn sync_dir_metadata(src: &Path, sm: &Metadata, dst: &Path) -> Result<(), FsError> {
    let dm = fs::symlink_metadata(dst).map_err(|e| FsError::new("inspect", dst, e))?;
    if (sm.uid(), sm.gid()) != (dm.uid(), dm.gid()) {
        std::os::unix::fs::lchown(dst, Some(sm.uid()), Some(sm.gid()))
            .map_err(|e| FsError::new("change the owner of", dst, e))?;
    }
    fs::set_permissions(dst, fs::Permissions::from_mode(sm.mode() & 0o7777))
        .map_err(|e| FsError::new("set the mode of", dst, e))?;
    let want = own_xattrs(src).map_err(|e| FsError::new("read xattrs of", src, e))?;
    let have = own_xattrs(dst).map_err(|e| FsError::new("read xattrs of", dst, e))?;
    for (name, _) in &have {
        if !want.iter().any(|(n, _)| n == name) {
            fsx::remove_xattr(dst, name).map_err(|e| FsError::new("remove an xattr of", dst, e))?;
        }
    }
    for (name, value) in &want {
        if !have.iter().any(|(n, v)| n == name && v == value) {
            fsx::set_xattr(dst, name, value)
                .map_err(|e| FsError::new("set an xattr of", dst, e))?;
        }
    }
    fsx::set_times(dst, sm).map_err(|e| FsError::new("set the times of", dst, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::diff::summary;
    use crate::snapshot::{diff, Store};
    use std::ffi::CString;
    use std::path::PathBuf;

    fn names(dir: &Path) -> Vec<String> {
        fsx::read_dir_sorted(dir)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n.into_string().unwrap())
            .collect()
    }

    /// A parent with `keep`, `gone`, `dir/{a,b}` and `other/x`, and an
    /// upper tree made by `fill`, applied to a clone with `markers`.
    fn applied(markers: Markers, fill: impl Fn(&Path)) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let base = store.prepare(None).unwrap();
        let r = base.path();
        fs::create_dir_all(r.join("dir")).unwrap();
        fs::create_dir_all(r.join("other")).unwrap();
        for f in ["keep", "gone", "dir/a", "dir/b", "other/x"] {
            fs::write(r.join(f), f.as_bytes()).unwrap();
        }
        // Old times, so that a directory the upper tree makes "now" never
        // shares them (the kernel's clock ticks every few milliseconds).
        let old = filetime::FileTime::from_unix_time(1_234_567_890, 0);
        for d in ["dir", "other", ""] {
            filetime::set_symlink_file_times(r.join(d), old, old).unwrap();
        }
        let id = base.commit().unwrap();
        let upper = dir.path().join("upper");
        fs::create_dir(&upper).unwrap();
        fs::set_permissions(&upper, fs::Permissions::from_mode(0o755)).unwrap();
        let root_meta = fs::symlink_metadata(store.path(&id)).unwrap();
        fsx::set_times(&upper, &root_meta).unwrap();
        fill(&upper);
        let child = store.prepare(Some(&id)).unwrap();
        apply(&upper, child.path(), markers).unwrap();
        let cid = child.commit().unwrap();
        (dir, store.path(&id), store.path(&cid))
    }

    #[test]
    fn fuse_marker_files_delete_and_make_opaque() {
        let (_d, parent, c) = applied(Markers::Fuse, |u| {
            fs::write(u.join(".wh.gone"), b"").unwrap();
            fs::create_dir(u.join("dir")).unwrap();
            fs::write(u.join("dir/.wh..wh..opq"), b"").unwrap();
            fs::write(u.join("dir/new"), b"n").unwrap();
        });
        assert_eq!(names(&c), ["dir", "keep", "other"]);
        assert_eq!(names(&c.join("dir")), ["new"]);
        assert_eq!(
            summary(&diff(Some(&parent), &c).unwrap()),
            ["M ", "M dir", "D dir/a", "D dir/b", "A dir/new", "D gone"]
        );
    }

    #[test]
    fn kernel_upper_trees_use_devices_and_xattrs_only() {
        let (_d, _parent, c) = applied(Markers::Kernel, |u| {
            // A file the step named like a marker is just a file.
            fs::write(u.join(".wh.keep"), b"mine").unwrap();
            fs::create_dir(u.join("other")).unwrap();
            let opaque = CString::new("user.overlay.opaque").unwrap();
            fsx::set_xattr(&u.join("other"), &opaque, b"y").unwrap();
            let origin = CString::new("user.overlay.origin").unwrap();
            fs::write(u.join("other/y"), b"y").unwrap();
            fsx::set_xattr(&u.join("other/y"), &origin, b"x").unwrap();
        });
        assert_eq!(names(&c), [".wh.keep", "dir", "gone", "keep", "other"]);
        assert_eq!(names(&c.join("other")), ["y"]);
        assert!(fsx::list_xattrs(&c.join("other")).unwrap().is_empty());
        assert!(fsx::list_xattrs(&c.join("other/y")).unwrap().is_empty());
    }

    #[test]
    fn a_whiteout_device_removes_a_whole_directory() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let (_d, _parent, c) = applied(Markers::Kernel, |u| {
            nix::sys::stat::mknod(
                &u.join("dir"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
            // A directory replacing a file.
            fs::create_dir(u.join("keep")).unwrap();
            fs::write(u.join("keep/inner"), b"i").unwrap();
        });
        assert_eq!(names(&c), ["gone", "keep", "other"]);
        assert_eq!(names(&c.join("keep")), ["inner"]);
    }
}
