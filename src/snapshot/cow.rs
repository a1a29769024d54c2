//! The two writer helpers that keep the copy-on-write rule (see the
//! module documentation of [`crate::snapshot`]): [`break_link`] gives a
//! name in an active snapshot its own inode before it is changed, and
//! [`replace_file`] writes new content as a new inode. Both finish with a
//! `rename(2)` over the old name, so the old inode (shared with committed
//! snapshots) is never opened for writing.
//!
//! Imports `fsx` and `crate::util` only.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::fsx::{self, MetaOpts};
use super::SnapshotError;
use crate::util::fs::FsError;

/// A temporary name beside `path`, in the same directory so that the
/// final rename stays on one file system and is atomic.
fn temp_beside(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    dir.join(format!(".bk-cow-{}", fsx::random_hex(8)))
}

/// Removes a temporary file when dropped unless disarmed.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    /// The temporary has been renamed into place: keep it.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // Best effort: the error that made us give up is what matters.
            let _ = fs::remove_file(p);
        }
    }
}

/// Makes the non-directory at `path` private to the active snapshot so
/// that it may then be changed in place: its content, owner, mode, times
/// and xattrs are copied to a new inode, which is renamed over `path`.
/// Returns whether a copy was made.
///
/// No copy is needed (and none is made) for a directory, which the clone
/// already recreated, or for a node with a single link, which nothing else
/// can share. Metadata is copied strictly: a copy that could not keep the
/// owner or an xattr fails rather than silently changing the file.
pub fn break_link(path: &Path) -> Result<bool, SnapshotError> {
    let meta = fs::symlink_metadata(path)
        .map_err(|e| SnapshotError::BreakLink(FsError::new("inspect", path, e)))?;
    if meta.is_dir() || meta.nlink() <= 1 {
        return Ok(false);
    }
    let tmp = temp_beside(path);
    let wrap = SnapshotError::BreakLink;
    if let Err(e) = fsx::copy_node(path, &tmp, &meta) {
        // Remove a partly written copy, but never a clashing name that
        // this call did not create.
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = fs::remove_file(&tmp);
        }
        return Err(wrap(FsError::new("copy", path, e)));
    }
    let guard = TempGuard(Some(tmp.clone()));
    let strict = MetaOpts {
        owner: true,
        xattrs: true,
        strict: true,
    };
    fsx::apply_metadata(path, &tmp, &meta, strict)
        .map_err(|e| wrap(FsError::new("copy metadata to", &tmp, e)))?;
    fs::rename(&tmp, path).map_err(|e| wrap(FsError::new("rename copy over", path, e)))?;
    guard.disarm();
    Ok(true)
}

/// Puts a new regular file at `path` whose bytes are written by `fill`
/// and whose permission bits are `mode` (exactly: the umask does not
/// apply). The file is written under a temporary name beside `path` and
/// renamed over it, so whatever was at `path` (a file shared with the
/// parent, a symlink) is replaced, never written through. The new file
/// has one link, so the caller may change it in place afterwards (for
/// example its owner or times). `path` must not be a directory.
pub fn replace_file<F>(path: &Path, mode: u32, fill: F) -> Result<(), SnapshotError>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let tmp = temp_beside(path);
    let wrap = SnapshotError::ReplaceFile;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| wrap(FsError::new("create", &tmp, e)))?;
    let guard = TempGuard(Some(tmp.clone()));
    fill(&mut file).map_err(|e| wrap(FsError::new("write", &tmp, e)))?;
    file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| wrap(FsError::new("set mode of", &tmp, e)))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| wrap(FsError::new("rename over", path, e)))?;
    guard.disarm();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn break_link_copies_a_shared_file_and_keeps_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        let name = dir.path().join("name");
        fs::write(&shared, b"parent data").unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o4751)).unwrap();
        let mtime = filetime::FileTime::from_unix_time(1_000_000_000, 5);
        filetime::set_file_mtime(&shared, mtime).unwrap();
        fs::hard_link(&shared, &name).unwrap();

        assert!(break_link(&name).unwrap());
        let (a, b) = (fs::metadata(&shared).unwrap(), fs::metadata(&name).unwrap());
        assert_ne!(a.ino(), b.ino());
        assert_eq!((a.nlink(), b.nlink()), (1, 1));
        assert_eq!(b.mode(), a.mode());
        assert_eq!((b.uid(), b.gid()), (a.uid(), a.gid()));
        assert_eq!(filetime::FileTime::from_last_modification_time(&b), mtime);
        assert_eq!(fs::read(&name).unwrap(), b"parent data");

        // Writing through the private copy leaves the other name alone.
        fs::OpenOptions::new()
            .append(true)
            .open(&name)
            .unwrap()
            .write_all(b" + child")
            .unwrap();
        assert_eq!(fs::read(&shared).unwrap(), b"parent data");
        assert_eq!(names(dir.path()), ["name", "shared"]);
    }

    #[test]
    fn break_link_leaves_private_nodes_and_directories_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let ino = fs::metadata(&file).unwrap().ino();
        assert!(!break_link(&file).unwrap());
        assert_eq!(fs::metadata(&file).unwrap().ino(), ino);
        assert!(!break_link(dir.path()).unwrap());
        assert!(matches!(
            break_link(&dir.path().join("missing")),
            Err(SnapshotError::BreakLink(_))
        ));
    }

    #[test]
    fn break_link_on_a_shared_symlink_keeps_the_target_unresolved() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        symlink("/nonexistent/target", &a).unwrap();
        fs::hard_link(&a, &b).unwrap();
        assert!(break_link(&b).unwrap());
        assert_eq!(fs::read_link(&b).unwrap(), Path::new("/nonexistent/target"));
        let (ma, mb) = (
            fs::symlink_metadata(&a).unwrap(),
            fs::symlink_metadata(&b).unwrap(),
        );
        assert!(mb.file_type().is_symlink());
        assert_ne!(ma.ino(), mb.ino());
    }

    #[test]
    fn replace_file_writes_a_new_inode_with_the_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        let name = dir.path().join("name");
        fs::write(&shared, b"old").unwrap();
        fs::hard_link(&shared, &name).unwrap();
        replace_file(&name, 0o640, |f| f.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&name).unwrap(), b"new");
        assert_eq!(fs::read(&shared).unwrap(), b"old");
        assert_eq!(fs::metadata(&name).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(fs::metadata(&name).unwrap().nlink(), 1);

        // A failing writer leaves the old file and no temporary behind.
        let err = replace_file(&name, 0o644, |_| Err(io::Error::other("boom"))).unwrap_err();
        assert!(matches!(err, SnapshotError::ReplaceFile(_)));
        assert_eq!(fs::read(&name).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["name", "shared"]);
    }

    #[test]
    fn replace_file_replaces_a_symlink_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let link = dir.path().join("link");
        fs::write(&target, b"keep").unwrap();
        symlink(&target, &link).unwrap();
        replace_file(&link, 0o600, |f| f.write_all(b"mine")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&link).unwrap().is_file());
    }
}
