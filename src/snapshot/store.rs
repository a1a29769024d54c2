//! The store's directory layout and the lifecycle of a snapshot:
//! `<root>/snapshots/<id>/` holds committed (immutable) trees,
//! `<root>/tmp/new-<rand>/` active ones, `<root>/tmp/del-<rand>/` trees
//! being deleted, `<root>/tmp/mnt-<rand>/` overlay mounts of writable
//! snapshots (see [`Mounted`](super::Mounted)).
//!
//! Several `bk` processes may share a store, so "leftover" must mean
//! "nobody holds it": every active or dying directory is `flock`ed
//! exclusively by the process working on it, and [`Store::open`] removes
//! only those it can lock. A parent is locked shared while it is cloned,
//! so [`Store::remove`] refuses a snapshot that is being cloned instead of
//! pulling files out from under the clone.
//!
//! A crashed run's mount directory may still have a mount on it (when
//! bk ran without its own mount namespace) or a `fuse-overlayfs` serving
//! it: [`Store::open`] releases those before removing the directory, and
//! leaves a directory whose mount it cannot release.
//!
//! Imports `backend`, `clone`, `fsx`, `id`, `overlay` and `crate::util` only.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nix::fcntl::{Flock, FlockArg};

use super::backend::{self, Backend, Choice, Selection};
use super::clone::{clone_tree, CloneMode, CloneReport, CopyRecord};
use super::fsx;
use super::overlay;
use super::{SnapshotError, SnapshotId};
use crate::util::fs::{self as ufs, FsError};

const NEW_PREFIX: &str = "new-";
const DEL_PREFIX: &str = "del-";
pub(super) const MNT_PREFIX: &str = "mnt-";
/// Attempts at a fresh random name before giving up; a clash needs two
/// equal 64-bit random names, so more than one attempt is already rare.
const NAME_ATTEMPTS: usize = 16;

/// A snapshot store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    snapshots: PathBuf,
    tmp: PathBuf,
    selection: Selection,
    /// Resolved on first use, once for every clone of this value.
    chosen: Arc<OnceLock<Choice>>,
}

/// A snapshot being written: a directory under `tmp/`, removed when this
/// value is dropped or discarded unless it was committed.
#[derive(Debug)]
pub struct Active {
    path: PathBuf,
    snapshots: PathBuf,
    parent: Option<SnapshotId>,
    report: CloneReport,
    /// Held until the directory is committed or removed, so that another
    /// process's [`Store::open`] does not take it for a crashed run's.
    lock: Flock<File>,
    done: bool,
}

/// Opens `dir` (never through a symlink) and tries to `flock` it without
/// waiting. `Ok(None)`: someone else holds a conflicting lock.
fn try_lock_dir(dir: &Path, exclusive: bool) -> io::Result<Option<Flock<File>>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    let arg = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno.into()),
    }
}

/// Whether `path` still names the directory that `lock` holds open (it
/// may have been renamed or removed between opening and locking).
fn still_names(path: &Path, lock: &Flock<File>) -> io::Result<bool> {
    let held = lock.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn busy(what: &str) -> io::Error {
    io::Error::new(ErrorKind::ResourceBusy, what.to_string())
}

impl Store {
    /// Opens (creating if needed) the store at `root`, and removes the
    /// active and half-deleted snapshots of runs that no longer hold them.
    /// Writable snapshots use the backend detected for this store.
    pub fn open(root: &Path) -> Result<Store, SnapshotError> {
        Store::open_with(root, Selection::Auto)
    }

    /// [`Store::open`] with the writable-snapshot backend chosen by
    /// `selection` (`--snapshotter`).
    pub fn open_with(root: &Path, selection: Selection) -> Result<Store, SnapshotError> {
        let store = Store {
            root: root.to_path_buf(),
            snapshots: root.join("snapshots"),
            tmp: root.join("tmp"),
            selection,
            chosen: Arc::new(OnceLock::new()),
        };
        ufs::create_dir_all(&store.snapshots).map_err(SnapshotError::Open)?;
        ufs::create_dir_all(&store.tmp).map_err(SnapshotError::Open)?;
        store.clean_leftovers().map_err(SnapshotError::Open)?;
        Ok(store)
    }

    fn clean_leftovers(&self) -> Result<(), FsError> {
        let entries =
            fsx::read_dir_sorted(&self.tmp).map_err(|e| FsError::new("read", &self.tmp, e))?;
        for (name, ft) in entries {
            let Some(name_str) = name.to_str() else {
                continue;
            };
            let mount = name_str.starts_with(MNT_PREFIX);
            let ours =
                mount || name_str.starts_with(NEW_PREFIX) || name_str.starts_with(DEL_PREFIX);
            if !ours || !ft.is_dir() {
                continue;
            }
            let path = self.tmp.join(&name);
            let lock = match try_lock_dir(&path, true) {
                Ok(Some(lock)) => lock,
                // Held by a live process, or removed by one just now.
                Ok(None) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(FsError::new("lock leftover", &path, e)),
            };
            // A mount that cannot be released stays, with its directory:
            // removing through it would only fill its upper directory.
            if mount && overlay::release_leftover(&overlay::Dirs::new(&path)).is_err() {
                continue;
            }
            fsx::remove_tree(&path).map_err(|e| FsError::new("remove leftover", &path, e))?;
            drop(lock);
        }
        Ok(())
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The backend [`Store::prepare_mounted`](Self::prepare_mounted)
    /// uses: the one asked for, or the one detected (probed once per
    /// store and situation, then read from `<root>/snapshotter`).
    pub fn backend(&self) -> Backend {
        self.choice().backend
    }

    /// Why the chosen backend is not the one asked for or the first one
    /// tried, one line per reason (empty when nothing was passed over).
    pub fn backend_notes(&self) -> &[String] {
        &self.choice().notes
    }

    fn choice(&self) -> &Choice {
        self.chosen.get_or_init(|| {
            backend::choose(&self.root, self.selection, &|layout| self.probe(layout))
        })
    }

    /// Mounts a tiny overlay of `layout` in a fresh mount directory, and
    /// removes it again.
    fn probe(&self, layout: overlay::Layout) -> io::Result<()> {
        let (dir, lock) = self
            .make_locked_tmp_dir(MNT_PREFIX)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let result = overlay::probe(&dir, layout);
        let released = overlay::release_leftover(&overlay::Dirs::new(&dir));
        if released.is_ok() {
            let _ = fsx::remove_tree(&dir);
        }
        drop(lock);
        result
    }

    /// Where committed snapshot `id` lives (whether or not it exists).
    pub fn path(&self, id: &SnapshotId) -> PathBuf {
        self.snapshots.join(id.as_str())
    }

    /// Whether snapshot `id` is committed.
    pub fn exists(&self, id: &SnapshotId) -> bool {
        fs::symlink_metadata(self.path(id)).is_ok_and(|m| m.is_dir())
    }

    /// Starts a new snapshot: a hardlink clone of `parent`, or an empty
    /// root directory (mode 0755) without one. Write under
    /// [`Active::path`] following the copy-on-write rule, then commit.
    pub fn prepare(&self, parent: Option<&SnapshotId>) -> Result<Active, SnapshotError> {
        self.prepare_clone(parent, CloneMode::Link)
            .map(|(active, _)| active)
    }

    /// [`Store::prepare`] in either clone mode; a private copy also
    /// returns what it copied.
    pub(super) fn prepare_clone(
        &self,
        parent: Option<&SnapshotId>,
        mode: CloneMode,
    ) -> Result<(Active, CopyRecord), SnapshotError> {
        let mut record = CopyRecord::default();
        let parent_lock = match parent {
            Some(id) => Some(self.lock_parent(id).map_err(SnapshotError::Prepare)?),
            None => None,
        };
        let (path, lock) = self
            .make_locked_tmp_dir(NEW_PREFIX)
            .map_err(SnapshotError::Prepare)?;
        // From here on, dropping `active` removes the directory.
        let mut active = Active {
            path,
            snapshots: self.snapshots.clone(),
            parent: parent.cloned(),
            report: CloneReport::default(),
            lock,
            done: false,
        };
        match parent {
            Some(id) => {
                let (report, copied) = clone_tree(&self.path(id), &active.path, mode)
                    .map_err(SnapshotError::Prepare)?;
                active.report = report;
                record = copied;
            }
            None => {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&active.path, fs::Permissions::from_mode(0o755)).map_err(
                    |e| SnapshotError::Prepare(FsError::new("set mode of", &active.path, e)),
                )?;
            }
        }
        drop(parent_lock);
        Ok((active, record))
    }

    /// Locks committed snapshot `id` shared, so it is not removed while
    /// it is cloned.
    pub(super) fn lock_parent(&self, id: &SnapshotId) -> Result<Flock<File>, FsError> {
        let path = self.path(id);
        match try_lock_dir(&path, false) {
            Ok(Some(lock)) if still_names(&path, &lock).unwrap_or(false) => Ok(lock),
            Ok(Some(_)) => Err(FsError::new(
                "find parent snapshot",
                &path,
                io::Error::from(ErrorKind::NotFound),
            )),
            Ok(None) => Err(FsError::new(
                "lock parent snapshot",
                &path,
                busy("the snapshot is being removed"),
            )),
            Err(e) => Err(FsError::new("find parent snapshot", &path, e)),
        }
    }

    /// Creates `tmp/<prefix><rand>` (mode 0700) and locks it exclusively.
    pub(super) fn make_locked_tmp_dir(
        &self,
        prefix: &str,
    ) -> Result<(PathBuf, Flock<File>), FsError> {
        let mut last = io::Error::from(ErrorKind::AlreadyExists);
        for _ in 0..NAME_ATTEMPTS {
            let path = self.tmp.join(format!("{prefix}{}", fsx::random_hex(8)));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(FsError::new("create directory", &path, e)),
            }
            // Another process's `open` may see the new directory before we
            // lock it, lock it first and remove it; then this name is lost
            // and we try another.
            match try_lock_dir(&path, true) {
                Ok(Some(lock)) => match still_names(&path, &lock) {
                    Ok(true) => return Ok((path, lock)),
                    Ok(false) => continue,
                    Err(e) => return Err(FsError::new("inspect", &path, e)),
                },
                Ok(None) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(FsError::new("lock", &path, e)),
            }
        }
        Err(FsError::new("create a fresh directory in", &self.tmp, last))
    }

    /// Deletes committed snapshot `id`. It leaves `snapshots/` in one
    /// rename (so no half-deleted tree is ever visible there) and is then
    /// removed from `tmp/`; a crash in between leaves a `tmp/del-*` that
    /// the next [`Store::open`] removes. Refused while the snapshot is
    /// being cloned.
    pub fn remove(&self, id: &SnapshotId) -> Result<(), SnapshotError> {
        let path = self.path(id);
        let fail = |source| SnapshotError::Remove {
            id: id.clone(),
            source,
        };
        let lock = match try_lock_dir(&path, true) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                return Err(fail(FsError::new(
                    "lock",
                    &path,
                    busy("the snapshot is being cloned or removed"),
                )))
            }
            Err(e) => return Err(fail(FsError::new("open", &path, e))),
        };
        let grave = self.tmp.join(format!("{DEL_PREFIX}{}", fsx::random_hex(8)));
        fsx::rename_noreplace(&path, &grave)
            .map_err(|e| fail(FsError::new("move out of the store", &path, e)))?;
        fsx::remove_tree(&grave).map_err(|e| fail(FsError::new("delete", &grave, e)))?;
        drop(lock);
        Ok(())
    }

    /// The committed snapshots, sorted. Names under `snapshots/` that are
    /// not valid ids (nothing this store makes) are ignored.
    pub fn list(&self) -> Result<Vec<SnapshotId>, SnapshotError> {
        let entries = fsx::read_dir_sorted(&self.snapshots)
            .map_err(|e| SnapshotError::List(FsError::new("read", &self.snapshots, e)))?;
        Ok(entries
            .into_iter()
            .filter(|(_, ft)| ft.is_dir())
            .filter_map(|(name, _)| SnapshotId::new(name.to_str()?).ok())
            .collect())
    }

    /// Disk space the tree of snapshot `id` occupies (allocated blocks),
    /// counting each inode once however many names it has in the tree.
    /// Inodes shared with other snapshots are counted in each of them, so
    /// this is the size of the tree, not what removing it would free.
    pub fn size(&self, id: &SnapshotId) -> Result<u64, SnapshotError> {
        let fail = |source| SnapshotError::Size {
            id: id.clone(),
            source,
        };
        let root = self.path(id);
        let mut seen = HashSet::new();
        let mut total = 0u64;
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let meta =
                fs::symlink_metadata(&dir).map_err(|e| fail(FsError::new("inspect", &dir, e)))?;
            total += meta.blocks() * 512;
            for (name, ft) in
                fsx::read_dir_sorted(&dir).map_err(|e| fail(FsError::new("read", &dir, e)))?
            {
                let path = dir.join(name);
                if ft.is_dir() {
                    stack.push(path);
                    continue;
                }
                let meta = fs::symlink_metadata(&path)
                    .map_err(|e| fail(FsError::new("inspect", &path, e)))?;
                if seen.insert((meta.dev(), meta.ino())) {
                    total += meta.blocks() * 512;
                }
            }
        }
        Ok(total)
    }
}

impl Active {
    /// The directory to write the new snapshot's tree into.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot this one was cloned from.
    pub fn parent(&self) -> Option<&SnapshotId> {
        self.parent.as_ref()
    }

    /// What the clone from the parent could not reproduce.
    pub fn clone_report(&self) -> &CloneReport {
        &self.report
    }

    /// Makes the snapshot durable and immutable: flushes the file system,
    /// renames the directory to `snapshots/<new id>` (never over an
    /// existing one) and flushes that rename. On error nothing is left in
    /// `snapshots/` and the directory is removed.
    pub fn commit(mut self) -> Result<SnapshotId, SnapshotError> {
        let fail = SnapshotError::Commit;
        // syncfs, not a walk of fsyncs: one call flushes every new inode.
        nix::unistd::syncfs(&*self.lock)
            .map_err(|e| fail(FsError::new("flush", &self.path, e.into())))?;
        let (id, target) = self.rename_into_store()?;
        self.done = true;
        let flushed = File::open(&self.snapshots).and_then(|dir| dir.sync_all());
        if let Err(e) = flushed {
            // The rename may not survive a crash: undo it rather than
            // report failure for a snapshot that then exists.
            if fsx::rename_noreplace(&target, &self.path).is_ok() {
                self.done = false;
            }
            return Err(fail(FsError::new("flush", &self.snapshots, e)));
        }
        Ok(id)
    }

    fn rename_into_store(&self) -> Result<(SnapshotId, PathBuf), SnapshotError> {
        let mut last = io::Error::from(ErrorKind::AlreadyExists);
        for _ in 0..NAME_ATTEMPTS {
            let id = SnapshotId::generate();
            let target = self.snapshots.join(id.as_str());
            match fsx::rename_noreplace(&self.path, &target) {
                Ok(()) => return Ok((id, target)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last = e,
                Err(e) => {
                    return Err(SnapshotError::Commit(FsError::new(
                        "rename into the store",
                        &self.path,
                        e,
                    )))
                }
            }
        }
        Err(SnapshotError::Commit(FsError::new(
            "find a free snapshot id in",
            &self.snapshots,
            last,
        )))
    }

    /// Throws the uncommitted snapshot away.
    pub fn discard(mut self) -> Result<(), SnapshotError> {
        fsx::remove_tree(&self.path)
            .map_err(|e| SnapshotError::Discard(FsError::new("remove", &self.path, e)))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a failure leaves a directory that the next
            // `Store::open` removes, since the lock dies with us.
            let _ = fsx::remove_tree(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{break_link, diff};
    use std::ffi::CString;
    use std::io::Write;
    use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};

    fn names(dir: &Path) -> Vec<String> {
        fsx::read_dir_sorted(dir)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n.into_string().unwrap())
            .collect()
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn mtime(p: &Path) -> (i64, i64) {
        let m = fs::symlink_metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec())
    }

    fn ino(p: &Path) -> u64 {
        fs::symlink_metadata(p).unwrap().ino()
    }

    /// Builds a tree with every kind of entry the clone must keep.
    fn fill(r: &Path) {
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::create_dir_all(r.join("empty/nested-empty")).unwrap();
        fs::create_dir_all(r.join("ro/inner")).unwrap();
        fs::write(r.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(r.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(r.join("secret"), b"s").unwrap();
        fs::set_permissions(r.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(r.join("ro/inner/file"), b"deep").unwrap();
        fs::hard_link(r.join("bin/tool"), r.join("bin/tool-alias")).unwrap();
        symlink("tool", r.join("bin/rel-link")).unwrap();
        symlink("/etc/passwd", r.join("abs-link")).unwrap();
        symlink("/nonexistent/dangling", r.join("dangling")).unwrap();
        symlink("../..", r.join("bin/up")).unwrap();
        nix::unistd::mkfifo(
            &r.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        fs::set_permissions(r.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::set_permissions(r.join("ro/inner"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(r.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        let old = filetime::FileTime::from_unix_time(1_234_567_890, 123_456_789);
        for d in ["empty/nested-empty", "empty", "ro/inner", "ro", "bin", ""] {
            filetime::set_symlink_file_times(r.join(d), old, old).unwrap();
        }
        filetime::set_symlink_file_times(r.join("dangling"), old, old).unwrap();
    }

    fn committed_parent() -> (tempfile::TempDir, Store, SnapshotId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let active = store.prepare(None).unwrap();
        fill(active.path());
        let id = active.commit().unwrap();
        (dir, store, id)
    }

    #[test]
    fn open_creates_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a/b")).unwrap();
        assert_eq!(names(store.root()), ["snapshots", "tmp"]);
        assert_eq!(store.list().unwrap(), Vec::<SnapshotId>::new());
    }

    #[test]
    fn clone_preserves_content_modes_links_and_times() {
        let (_d, store, id) = committed_parent();
        let p = store.path(&id);
        let child = store.prepare(Some(&id)).unwrap();
        let c = child.path().to_path_buf();
        assert_eq!(child.clone_report().warnings(), 0);
        assert_eq!(child.parent(), Some(&id));

        assert_eq!(names(&c), names(&p));
        assert_eq!(
            fs::read(c.join("bin/tool")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(fs::read(c.join("ro/inner/file")).unwrap(), b"deep");
        for path in [
            "",
            "bin",
            "bin/tool",
            "secret",
            "empty",
            "empty/nested-empty",
            "ro",
            "ro/inner",
            "fifo",
        ] {
            assert_eq!(mode(&c.join(path)), mode(&p.join(path)), "mode of {path:?}");
            assert_eq!(
                mtime(&c.join(path)),
                mtime(&p.join(path)),
                "mtime of {path:?}"
            );
        }
        assert_eq!(mode(&c.join("bin/tool")), 0o4755);
        assert_eq!(mode(&c.join("empty")), 0o1777);
        assert!(names(&c.join("empty/nested-empty")).is_empty());
        // Symlinks are the same links, never followed.
        for (link, target) in [
            ("bin/rel-link", "tool"),
            ("abs-link", "/etc/passwd"),
            ("dangling", "/nonexistent/dangling"),
            ("bin/up", "../.."),
        ] {
            assert!(fs::symlink_metadata(c.join(link))
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(fs::read_link(c.join(link)).unwrap(), Path::new(target));
            assert_eq!(ino(&c.join(link)), ino(&p.join(link)), "{link} is linked");
        }
        // Files share the parent's inode; hardlinks inside the tree stay one inode.
        assert_eq!(ino(&c.join("bin/tool")), ino(&p.join("bin/tool")));
        assert_eq!(ino(&c.join("bin/tool-alias")), ino(&c.join("bin/tool")));
        // Directories and special nodes are new.
        assert_ne!(ino(&c.join("bin")), ino(&p.join("bin")));
        assert_ne!(ino(&c.join("fifo")), ino(&p.join("fifo")));
        assert!(fs::symlink_metadata(c.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(child.clone_report().entries, 14);
    }

    #[test]
    fn clone_recreates_devices_when_permitted() {
        // Only root can make the device in the parent in the first place.
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = store.prepare(None).unwrap();
        let null = base.path().join("null");
        nix::sys::stat::mknod(
            &null,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        // mknod applies the umask; give the node its mode explicitly.
        fs::set_permissions(&null, fs::Permissions::from_mode(0o666)).unwrap();
        let id = base.commit().unwrap();
        let child = store.prepare(Some(&id)).unwrap();
        let m = fs::symlink_metadata(child.path().join("null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
        assert_eq!(m.mode() & 0o7777, 0o666);
        assert_eq!(child.clone_report().special_skipped, 0);
    }

    #[test]
    fn clone_copies_directory_xattrs_when_supported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = store.prepare(None).unwrap();
        let d = base.path().join("d");
        fs::create_dir(&d).unwrap();
        let name = CString::new("user.bk.note").unwrap();
        match fsx::set_xattr(&d, &name, b"kept") {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return,
            r => r.unwrap(),
        }
        let id = base.commit().unwrap();
        let child = store.prepare(Some(&id)).unwrap();
        assert_eq!(
            fsx::list_xattrs(&child.path().join("d")).unwrap(),
            vec![(name, b"kept".to_vec())]
        );
    }

    #[test]
    fn writing_through_break_link_never_changes_the_parent() {
        let (_d, store, id) = committed_parent();
        let p = store.path(&id);
        let before = (
            fs::read(p.join("bin/tool")).unwrap(),
            mode(&p.join("bin/tool")),
        );
        let child = store.prepare(Some(&id)).unwrap();
        let c = child.path();
        assert!(break_link(&c.join("bin/tool")).unwrap());
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(c.join("bin/tool"))
            .unwrap();
        f.write_all(b"changed").unwrap();
        fs::set_permissions(c.join("bin/tool"), fs::Permissions::from_mode(0o700)).unwrap();
        let id2 = child.commit().unwrap();

        assert_eq!(
            (
                fs::read(p.join("bin/tool")).unwrap(),
                mode(&p.join("bin/tool"))
            ),
            before
        );
        assert_eq!(fs::read(p.join("bin/tool-alias")).unwrap(), before.0);
        let c = store.path(&id2);
        assert_eq!(fs::read(c.join("bin/tool")).unwrap(), b"changed");
        // The other name of the group still shares the parent's inode.
        assert_eq!(ino(&c.join("bin/tool-alias")), ino(&p.join("bin/tool")));
    }

    #[test]
    fn commit_makes_the_snapshot_visible_and_listed() {
        let (_d, store, id) = committed_parent();
        assert!(store.exists(&id));
        assert_eq!(store.list().unwrap(), vec![id.clone()]);
        let id2 = store.prepare(Some(&id)).unwrap().commit().unwrap();
        assert_ne!(id, id2);
        let mut want = vec![id.clone(), id2.clone()];
        want.sort();
        assert_eq!(store.list().unwrap(), want);
        assert!(names(&store.root().join("tmp")).is_empty());
        assert!(diff(Some(&store.path(&id)), &store.path(&id2))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn dropped_discarded_or_failed_actives_leave_nothing() {
        let (_d, store, id) = committed_parent();
        let snapshots = store.root().join("snapshots");
        let tmp = store.root().join("tmp");

        let active = store.prepare(Some(&id)).unwrap();
        let path = active.path().to_path_buf();
        fs::write(path.join("new"), b"x").unwrap();
        drop(active);
        assert!(!path.exists());

        let active = store.prepare(Some(&id)).unwrap();
        active.discard().unwrap();

        // A parent that does not exist fails before anything appears.
        let missing = SnapshotId::new("00").unwrap();
        assert!(matches!(
            store.prepare(Some(&missing)),
            Err(SnapshotError::Prepare(_))
        ));
        assert_eq!(names(&snapshots), [id.as_str()]);
        assert!(names(&tmp).is_empty());
    }

    #[test]
    fn a_failing_clone_leaves_nothing() {
        let (_d, store, id) = committed_parent();
        let p = store.path(&id);
        // Make one entry impossible to clone: without root an unreadable
        // directory; as root an immutable file, which link(2) refuses.
        let (blocker, undo): (PathBuf, Box<dyn Fn()>) = if nix::unistd::geteuid().is_root() {
            let f = p.join("bin/immutable");
            fs::write(&f, b"x").unwrap();
            let status = std::process::Command::new("chattr")
                .arg("+i")
                .arg(&f)
                .status()
                .expect("chattr runs");
            assert!(status.success(), "chattr +i failed on the test file system");
            let g = f.clone();
            (
                f,
                Box::new(move || {
                    let _ = std::process::Command::new("chattr")
                        .arg("-i")
                        .arg(&g)
                        .status();
                }),
            )
        } else {
            let d = p.join("ro/inner");
            fs::set_permissions(&d, fs::Permissions::from_mode(0o000)).unwrap();
            let g = d.clone();
            (
                d,
                Box::new(move || {
                    let _ = fs::set_permissions(&g, fs::Permissions::from_mode(0o755));
                }),
            )
        };
        let result = store.prepare(Some(&id));
        undo();
        let err = result.expect_err("the clone must fail");
        assert!(matches!(err, SnapshotError::Prepare(_)), "{err:?}");
        assert!(blocker.exists());
        assert!(names(&store.root().join("tmp")).is_empty());
        assert_eq!(store.list().unwrap(), vec![id]);
    }

    #[test]
    fn open_removes_leftovers_but_not_live_actives() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tmp = dir.path().join("tmp");
        // A crashed run's active snapshot, with a read-only directory.
        let crashed = tmp.join("new-0123");
        fs::create_dir_all(crashed.join("ro/sub")).unwrap();
        fs::write(crashed.join("ro/sub/f"), b"x").unwrap();
        fs::set_permissions(crashed.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::create_dir_all(tmp.join("del-77/x")).unwrap();
        fs::create_dir_all(tmp.join("unrelated")).unwrap();
        let live = store.prepare(None).unwrap();
        fs::write(live.path().join("f"), b"y").unwrap();

        let again = Store::open(dir.path()).unwrap();
        let left = names(&tmp);
        assert!(!left.contains(&"new-0123".to_string()));
        assert!(!left.contains(&"del-77".to_string()));
        assert!(left.contains(&"unrelated".to_string()));
        assert!(live.path().join("f").exists(), "a live active survives");
        let id = live.commit().unwrap();
        assert!(again.exists(&id));
    }

    #[test]
    fn remove_deletes_and_refuses_while_cloned() {
        let (_d, store, id) = committed_parent();
        // Hold the parent the way a clone in another process does.
        let held = try_lock_dir(&store.path(&id), false).unwrap().unwrap();
        let err = store.remove(&id).unwrap_err();
        assert!(matches!(err, SnapshotError::Remove { .. }), "{err:?}");
        assert!(store.exists(&id));
        drop(held);
        store.remove(&id).unwrap();
        assert!(!store.exists(&id));
        assert!(store.list().unwrap().is_empty());
        assert!(names(&store.root().join("tmp")).is_empty());
        assert!(matches!(
            store.remove(&id),
            Err(SnapshotError::Remove { .. })
        ));
    }

    #[test]
    fn size_counts_each_inode_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let one = store.prepare(None).unwrap();
        fs::write(one.path().join("big"), vec![7u8; 64 * 1024]).unwrap();
        let one = one.commit().unwrap();
        let two = store.prepare(Some(&one)).unwrap();
        fs::hard_link(two.path().join("big"), two.path().join("big2")).unwrap();
        let two = two.commit().unwrap();
        let (s1, s2) = (store.size(&one).unwrap(), store.size(&two).unwrap());
        assert!(s1 >= 64 * 1024, "{s1}");
        assert_eq!(s1, s2);
        let missing = SnapshotId::new("ff").unwrap();
        assert!(matches!(
            store.size(&missing),
            Err(SnapshotError::Size { .. })
        ));
    }

    /// Not a check: times a clone of 50,000 small files (500 directories
    /// of 100) on rayon's pool and on one thread, and the other walks over
    /// the same tree. Run by hand:
    /// `cargo test --lib clone_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn clone_speed_50k_files() {
        use std::time::Instant;
        let base = std::env::var_os("BK_BENCH_DIR").map(PathBuf::from);
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let store = Store::open(dir.path()).unwrap();
        let active = store.prepare(None).unwrap();
        for d in 0..500 {
            let sub = active.path().join(format!("d{d:03}"));
            fs::create_dir(&sub).unwrap();
            for f in 0..100 {
                fs::write(sub.join(format!("f{f:03}")), b"small file").unwrap();
            }
        }
        let id = active.commit().unwrap();
        let time = |label: &str, f: &mut dyn FnMut()| {
            let start = Instant::now();
            f();
            eprintln!("{label}: {:.3}s", start.elapsed().as_secs_f64());
        };
        for round in 0..2 {
            let mut kept = Vec::new();
            time(
                &format!(
                    "round {round}: clone, rayon pool ({} threads)",
                    rayon::current_num_threads()
                ),
                &mut || {
                    kept.push(store.prepare(Some(&id)).unwrap());
                },
            );
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            time(&format!("round {round}: clone, 1 thread"), &mut || {
                kept.push(pool.install(|| store.prepare(Some(&id)).unwrap()));
            });
            time(
                &format!("round {round}: commit (syncfs + rename)"),
                &mut || {
                    kept.pop().unwrap().commit().unwrap();
                },
            );
            time(&format!("round {round}: drop an active clone"), &mut || {
                drop(kept.pop())
            });
        }
        let child = store.prepare(Some(&id)).unwrap();
        time("diff of an unchanged clone", &mut || {
            assert!(diff(Some(&store.path(&id)), child.path())
                .unwrap()
                .is_empty());
        });
        time("size", &mut || {
            store.size(&id).unwrap();
        });
        let out = dir.path().join("out");
        time("local export", &mut || {
            crate::exporter::local::export(&store.path(&id), &out).unwrap();
        });
        time("tar export", &mut || {
            crate::exporter::tar::write_to(&store.path(&id), std::io::sink()).unwrap();
        });
    }
}
