//! What changed between a parent tree and a child cloned from it, cheaply,
//! for building image layers. It trusts the copy-on-write rule: a
//! non-directory whose inode (device and inode number) is the parent's at
//! the same path is unchanged, without reading it. Directories, which the
//! clone recreates, are compared by metadata: type and mode, owner,
//! modification time (to the nanosecond) and xattrs; adding or removing an
//! entry changes a directory's mtime, so such a directory is reported as
//! modified, as containerd's differ does. Fifos, devices and sockets,
//! which the clone recreates rather than links, are compared by metadata
//! (with the device number) in the same way.
//!
//! Replacing a directory by a non-directory is one `Modified` entry: its
//! old subtree is gone with it, so no `Deleted` entries are listed inside
//! it. A deleted directory likewise is one `Deleted` entry, and an added
//! directory is listed with everything inside it.
//!
//! Imports `fsx` and `crate::util` only.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, FileType, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::fsx::{self, EntryKind};
use super::SnapshotError;
use crate::util::fs::FsError;

/// How an entry differs from the parent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Relative to the tree root, without a leading `/`.
    pub path: PathBuf,
    /// The node's kind in the child (in the parent for `Deleted`).
    pub entry: EntryKind,
}

/// The changes that turn tree `parent` (none: an empty tree) into tree
/// `child`, sorted by path component by component, so that a directory
/// comes before its contents. The roots themselves are compared too and
/// reported as the path `""` when their metadata differs.
pub fn diff(parent: Option<&Path>, child: &Path) -> Result<Vec<Change>, SnapshotError> {
    let mut out = Vec::new();
    walk(parent, child, &mut out).map_err(SnapshotError::Diff)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn lstat(path: &Path) -> Result<Metadata, FsError> {
    fs::symlink_metadata(path).map_err(|e| FsError::new("inspect", path, e))
}

/// Directory entries by name (a map: lookups by name, sorted iteration).
fn entries(dir: &Path) -> Result<BTreeMap<OsString, FileType>, FsError> {
    Ok(fsx::read_dir_sorted(dir)
        .map_err(|e| FsError::new("read directory", dir, e))?
        .into_iter()
        .collect())
}

/// Whether two nodes that are not the same inode differ in what a layer
/// records of them: type and mode, owner, device number, mtime, xattrs.
fn meta_differs(a: &Path, am: &Metadata, b: &Path, bm: &Metadata) -> Result<bool, FsError> {
    let key = |m: &Metadata| {
        (
            m.mode(),
            m.uid(),
            m.gid(),
            m.rdev(),
            m.mtime(),
            m.mtime_nsec(),
        )
    };
    if key(am) != key(bm) {
        return Ok(true);
    }
    let ax = fsx::list_xattrs(a).map_err(|e| FsError::new("read xattrs of", a, e))?;
    let bx = fsx::list_xattrs(b).map_err(|e| FsError::new("read xattrs of", b, e))?;
    Ok(ax != bx)
}

fn walk(parent: Option<&Path>, child: &Path, out: &mut Vec<Change>) -> Result<(), FsError> {
    let child_root = lstat(child)?;
    // Stack of (relative dir, whether the parent has a directory there).
    let mut stack: Vec<(PathBuf, bool)> = Vec::new();
    match parent {
        Some(p) => {
            let parent_root = lstat(p)?;
            if meta_differs(p, &parent_root, child, &child_root)? {
                out.push(Change {
                    kind: ChangeKind::Modified,
                    path: PathBuf::new(),
                    entry: EntryKind::Dir,
                });
            }
            stack.push((PathBuf::new(), true));
        }
        None => stack.push((PathBuf::new(), false)),
    }
    while let Some((rel, in_parent)) = stack.pop() {
        let child_dir = child.join(&rel);
        let child_entries = entries(&child_dir)?;
        let parent_dir = parent.filter(|_| in_parent).map(|p| p.join(&rel));
        let parent_entries = match &parent_dir {
            Some(dir) => entries(dir)?,
            None => BTreeMap::new(),
        };
        for (name, pft) in &parent_entries {
            if !child_entries.contains_key(name) {
                out.push(Change {
                    kind: ChangeKind::Deleted,
                    path: rel.join(name),
                    entry: EntryKind::of(*pft),
                });
            }
        }
        for (name, cft) in &child_entries {
            let path = rel.join(name);
            let entry = EntryKind::of(*cft);
            let Some(pdir) = parent_dir
                .as_ref()
                .filter(|_| parent_entries.contains_key(name))
            else {
                out.push(Change {
                    kind: ChangeKind::Added,
                    path: path.clone(),
                    entry,
                });
                if cft.is_dir() {
                    stack.push((path, false));
                }
                continue;
            };
            let ppath = pdir.join(name);
            let cpath = child_dir.join(name);
            let pm = match fs::symlink_metadata(&ppath) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(FsError::new("inspect (changed during diff)", &ppath, e))
                }
                Err(e) => return Err(FsError::new("inspect", &ppath, e)),
            };
            let cm = lstat(&cpath)?;
            let changed = if pm.file_type() != cm.file_type() {
                true
            } else if (pm.dev(), pm.ino()) == (cm.dev(), cm.ino()) {
                false
            } else if cm.is_file() || cm.is_symlink() {
                true
            } else {
                // Directories and the fifos, devices and sockets that the
                // clone recreates are new inodes even when unchanged.
                meta_differs(&ppath, &pm, &cpath, &cm)?
            };
            if changed {
                out.push(Change {
                    kind: ChangeKind::Modified,
                    path: path.clone(),
                    entry,
                });
            }
            if cm.is_dir() {
                // Contents of a directory that replaced a non-directory
                // are all new.
                stack.push((path, pm.is_dir()));
            }
        }
    }
    Ok(())
}

/// Test helper: the changes as `(kind, path)` strings, for compact asserts.
#[cfg(test)]
pub(crate) fn summary(changes: &[Change]) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt;
    changes
        .iter()
        .map(|c| {
            let k = match c.kind {
                ChangeKind::Added => 'A',
                ChangeKind::Modified => 'M',
                ChangeKind::Deleted => 'D',
            };
            format!(
                "{k} {}",
                String::from_utf8_lossy(c.path.as_os_str().as_bytes())
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{break_link, replace_file, Store};
    use std::io::Write;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A committed parent with a little of everything, its store and id.
    fn parent_store() -> (tempfile::TempDir, Store, crate::snapshot::SnapshotId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = store.prepare(None).unwrap();
        let r = base.path();
        fs::create_dir_all(r.join("etc/conf.d")).unwrap();
        fs::create_dir_all(r.join("var/cache/x")).unwrap();
        fs::write(r.join("etc/passwd"), b"root:x:0:0\n").unwrap();
        fs::write(r.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        fs::write(r.join("etc/conf.d/a"), b"a").unwrap();
        fs::write(r.join("var/cache/x/blob"), b"blob").unwrap();
        fs::write(r.join("mode"), b"m").unwrap();
        fs::write(r.join("same"), b"s").unwrap();
        fs::write(r.join("file-then-dir"), b"f").unwrap();
        symlink("etc/passwd", r.join("link")).unwrap();
        let id = base.commit().unwrap();
        (dir, store, id)
    }

    #[test]
    fn unchanged_clone_has_no_changes() {
        let (_d, store, id) = parent_store();
        let child = store.prepare(Some(&id)).unwrap();
        let changes = diff(Some(&store.path(&id)), child.path()).unwrap();
        assert_eq!(summary(&changes), Vec::<String>::new());
    }

    #[test]
    fn detects_add_modify_delete_and_mode_changes() {
        let (_d, store, id) = parent_store();
        let child = store.prepare(Some(&id)).unwrap();
        let c = child.path();
        // Modify content through break_link.
        break_link(&c.join("etc/passwd")).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(c.join("etc/passwd"))
            .unwrap()
            .write_all(b"bk:x:1000:1000\n")
            .unwrap();
        // Mode change of a file (private copy first) and of a directory.
        break_link(&c.join("mode")).unwrap();
        fs::set_permissions(c.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(c.join("var"), fs::Permissions::from_mode(0o700)).unwrap();
        // Replace, add, delete (a file and a whole directory).
        replace_file(&c.join("etc/hosts"), 0o644, |f| f.write_all(b"::1\n")).unwrap();
        fs::create_dir(c.join("new")).unwrap();
        fs::write(c.join("new/file"), b"n").unwrap();
        fs::remove_file(c.join("etc/conf.d/a")).unwrap();
        fs::remove_dir_all(c.join("var/cache")).unwrap();
        // A file replaced by a directory.
        fs::remove_file(c.join("file-then-dir")).unwrap();
        fs::create_dir(c.join("file-then-dir")).unwrap();
        fs::write(c.join("file-then-dir/inner"), b"i").unwrap();

        let changes = diff(Some(&store.path(&id)), c).unwrap();
        assert_eq!(
            summary(&changes),
            [
                "M ",
                "M etc",
                "M etc/conf.d",
                "D etc/conf.d/a",
                "M etc/hosts",
                "M etc/passwd",
                "M file-then-dir",
                "A file-then-dir/inner",
                "M mode",
                "A new",
                "A new/file",
                "M var",
                "D var/cache",
            ]
        );
        let kind_of = |p: &str| {
            changes
                .iter()
                .find(|c| c.path == Path::new(p))
                .unwrap()
                .entry
        };
        assert_eq!(kind_of("file-then-dir"), EntryKind::Dir);
        assert_eq!(kind_of("var/cache"), EntryKind::Dir);
        assert_eq!(kind_of("etc/passwd"), EntryKind::File);
    }

    #[test]
    fn a_directory_replaced_by_a_file_is_one_change() {
        let (_d, store, id) = parent_store();
        let child = store.prepare(Some(&id)).unwrap();
        let c = child.path();
        fs::remove_dir_all(c.join("var")).unwrap();
        fs::write(c.join("var"), b"now a file").unwrap();
        let changes = diff(Some(&store.path(&id)), c).unwrap();
        assert_eq!(summary(&changes), ["M ", "M var"]);
        assert_eq!(changes[1].entry, EntryKind::File);
    }

    #[test]
    fn a_symlink_retargeted_is_modified() {
        let (_d, store, id) = parent_store();
        let child = store.prepare(Some(&id)).unwrap();
        let c = child.path();
        fs::remove_file(c.join("link")).unwrap();
        symlink("etc/hosts", c.join("link")).unwrap();
        let changes = diff(Some(&store.path(&id)), c).unwrap();
        assert_eq!(summary(&changes), ["M ", "M link"]);
        assert_eq!(changes[1].entry, EntryKind::Symlink);
    }

    #[test]
    fn without_a_parent_everything_is_added() {
        let (_d, store, id) = parent_store();
        let changes = diff(None, &store.path(&id)).unwrap();
        assert!(changes.iter().all(|c| c.kind == ChangeKind::Added));
        assert_eq!(changes.len(), 13);
        assert_eq!(changes[0].path, Path::new("etc"));
    }

    #[test]
    fn recreated_special_nodes_compare_by_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = store.prepare(None).unwrap();
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&base.path().join("a"), mode).unwrap();
        nix::unistd::mkfifo(&base.path().join("b"), mode).unwrap();
        let id = base.commit().unwrap();
        let child = store.prepare(Some(&id)).unwrap();
        // The clone's fifos are new inodes but equal; a chmod shows.
        fs::set_permissions(child.path().join("b"), fs::Permissions::from_mode(0o600)).unwrap();
        let changes = diff(Some(&store.path(&id)), child.path()).unwrap();
        assert_eq!(summary(&changes), ["M b"]);
        assert_eq!(changes[0].entry, EntryKind::Fifo);
    }
}
