//! Writable snapshots for `RUN`: a root file system that a process may
//! change in any way (open files for writing, chmod, link) while its
//! parent stays exactly as it was.
//!
//! ```no_run
//! # fn main() -> Result<(), bk::snapshot::SnapshotError> {
//! # let store = bk::snapshot::Store::open(std::path::Path::new("/var/lib/bk"))?;
//! # let parent = bk::snapshot::SnapshotId::new("ab12")?;
//! let mounted = store.prepare_mounted(Some(&parent))?;
//! /* run the process with mounted.root() as its `/` */
//! let id = mounted.commit()?; // or drop it to throw the changes away
//! # Ok(()) }
//! ```
//!
//! How depends on the store's [`Backend`]:
//! - overlayfs / fuse-overlayfs: the parent's full tree is the one lower
//!   layer of an overlay mounted at `tmp/mnt-<rand>/merged`; commit
//!   unmounts it and applies the upper directory to a hardlink clone of
//!   the parent (see `upper`), which is then published like any
//!   [`Active`].
//! - native: the root is a private copy of the parent (reflinked where
//!   possible); commit links unchanged files back to the parent's inodes
//!   (see `native`) and publishes it.
//!
//! Two names hard-linked to each other in the parent behave as on the
//! backend's BuildKit counterpart: an overlay copies up only the name
//! written to (the other keeps the old content), a native copy keeps
//! them one inode (both change).
//!
//! For overlays the root is a mount point; a native root is a plain
//! directory, which a runner that needs a mount point for `pivot_root`
//! bind-mounts onto itself first.
//!
//! Either way the committed snapshot is a full tree whose unchanged
//! files are the parent's inodes, and [`diff`](super::diff) against the
//! parent lists what the step changed. Owners are kept as this process
//! sees them (inside bk's user namespace: the container's ids).
//!
//! The mount lives in bk's mount namespace. Commit, discard and drop
//! unmount it; if bk dies first, the mount dies with its namespace and
//! the next [`Store::open`] removes the directory.
//!
//! Imports the store, `backend`, `clone`, `native`, `overlay`, `upper`,
//! `fsx` and `crate::util` only.

use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;

use super::backend::{Backend, Privilege};
use super::clone::{CloneMode, CopyRecord};
use super::fsx;
use super::native;
use super::overlay::{self, Dirs, Layout};
use super::store::MNT_PREFIX;
use super::upper::{self, Markers};
use super::{Active, SnapshotError, SnapshotId, Store};
use crate::util::fs::FsError;

/// A writable root file system over a parent snapshot. Dropping it
/// discards the changes (unmounting and removing everything).
#[derive(Debug)]
pub struct Mounted {
    store: Store,
    parent: Option<SnapshotId>,
    state: State,
}

#[derive(Debug)]
enum State {
    Overlay(OverlayState),
    Native {
        active: Active,
        record: CopyRecord,
        copied_until: (i64, i64),
    },
    Done,
}

#[derive(Debug)]
struct OverlayState {
    layout: Layout,
    dirs: Dirs,
    mounted: bool,
    /// The mount directory's lock: held while it is in use, so another
    /// process's [`Store::open`] leaves it alone.
    _lock: Flock<File>,
    /// The parent's shared lock: it must not be removed while it is the
    /// lower layer.
    _parent_lock: Option<Flock<File>>,
}

impl Store {
    /// Makes a writable root file system over `parent` (an empty one,
    /// mode 0755, without a parent) with the store's [`backend`](Store::backend).
    pub fn prepare_mounted(&self, parent: Option<&SnapshotId>) -> Result<Mounted, SnapshotError> {
        let backend = self.backend();
        let state = match backend {
            Backend::Native => {
                let (active, record) = self.prepare_clone(parent, CloneMode::Copy)?;
                State::Native {
                    active,
                    record,
                    copied_until: now(),
                }
            }
            Backend::Overlay | Backend::FuseOverlay => {
                let layout = if backend == Backend::FuseOverlay {
                    Layout::Fuse
                } else {
                    Layout::Kernel(Privilege::current() == Privilege::UserNamespace)
                };
                State::Overlay(self.mount_overlay(parent, layout)?)
            }
        };
        Ok(Mounted {
            store: self.clone(),
            parent: parent.cloned(),
            state,
        })
    }

    fn mount_overlay(
        &self,
        parent: Option<&SnapshotId>,
        layout: Layout,
    ) -> Result<OverlayState, SnapshotError> {
        let parent_lock = match parent {
            Some(id) => Some(self.lock_parent(id).map_err(SnapshotError::Prepare)?),
            None => None,
        };
        let (dir, lock) = self
            .make_locked_tmp_dir(MNT_PREFIX)
            .map_err(SnapshotError::Prepare)?;
        let mut state = OverlayState {
            layout,
            dirs: Dirs::new(&dir),
            mounted: false,
            _lock: lock,
            _parent_lock: parent_lock,
        };
        // From here on, dropping `state` removes the directory.
        let lower = match parent {
            Some(id) => self.path(id),
            None => {
                let lower = state.dirs.empty_lower();
                DirBuilder::new()
                    .mode(0o755)
                    .create(&lower)
                    .map_err(|e| SnapshotError::Prepare(FsError::new("create", &lower, e)))?;
                lower
            }
        };
        state
            .dirs
            .create(&lower)
            .map_err(|e| SnapshotError::Prepare(FsError::new("create", &state.dirs.dir, e)))?;
        overlay::mount(layout, &lower, &state.dirs).map_err(|e| {
            SnapshotError::Mount(FsError::new("mount an overlay at", &state.dirs.merged, e))
        })?;
        state.mounted = true;
        Ok(state)
    }
}

/// The current time as (seconds, nanoseconds) since the epoch.
fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        i64::from(d.subsec_nanos()),
    )
}

impl OverlayState {
    fn unmount(&mut self, detach: bool) -> Result<(), SnapshotError> {
        if self.mounted {
            overlay::unmount(self.layout, &self.dirs.merged, detach).map_err(|e| {
                SnapshotError::Unmount(FsError::new("unmount", &self.dirs.merged, e))
            })?;
            self.mounted = false;
        }
        Ok(())
    }

    /// Unmounts (detaching a busy mount) and removes the mount directory.
    fn remove(&mut self) -> Result<(), SnapshotError> {
        self.unmount(true)?;
        fsx::remove_tree(&self.dirs.dir)
            .map_err(|e| SnapshotError::Discard(FsError::new("remove", &self.dirs.dir, e)))
    }
}

impl Drop for OverlayState {
    fn drop(&mut self) {
        // Best effort: what is left is removed by the next `Store::open`.
        let _ = self.remove();
    }
}

impl Mounted {
    /// The tree to use as `/`: writable, and private to this snapshot.
    pub fn root(&self) -> &Path {
        match &self.state {
            State::Overlay(o) => &o.dirs.merged,
            State::Native { active, .. } => active.path(),
            State::Done => Path::new(""),
        }
    }

    /// The backend serving this snapshot.
    pub fn backend(&self) -> Backend {
        match &self.state {
            State::Overlay(o) if o.layout == Layout::Fuse => Backend::FuseOverlay,
            State::Overlay(_) => Backend::Overlay,
            _ => Backend::Native,
        }
    }

    /// The snapshot this one is written over.
    pub fn parent(&self) -> Option<&SnapshotId> {
        self.parent.as_ref()
    }

    /// Publishes the tree as a new committed snapshot (atomically, as
    /// [`Active::commit`] does) and returns its id. Every process using
    /// the root must have exited: a mount still in use is an error.
    pub fn commit(mut self) -> Result<SnapshotId, SnapshotError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => Err(SnapshotError::Commit(FsError::new(
                "commit",
                PathBuf::new(),
                std::io::Error::other("the snapshot was already committed or discarded"),
            ))),
            State::Native {
                active,
                record,
                copied_until,
            } => {
                if let Some(id) = &self.parent {
                    native::relink_unchanged(
                        &self.store.path(id),
                        active.path(),
                        &record,
                        copied_until,
                    )
                    .map_err(SnapshotError::Commit)?;
                }
                active.commit()
            }
            State::Overlay(mut o) => {
                o.unmount(false)?;
                let active = self.store.prepare(self.parent.as_ref())?;
                let markers = match o.layout {
                    Layout::Fuse => Markers::Fuse,
                    Layout::Kernel(_) => Markers::Kernel,
                };
                upper::apply(&o.dirs.upper, active.path(), markers)
                    .map_err(SnapshotError::Commit)?;
                let id = active.commit()?;
                // The snapshot exists: failing to tidy up is not failing
                // to commit (the next `Store::open` removes it).
                let _ = o.remove();
                Ok(id)
            }
        }
    }

    /// Throws the changes away: unmounts and removes everything.
    pub fn discard(mut self) -> Result<(), SnapshotError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Overlay(mut o) => o.remove(),
            State::Native { active, .. } => active.discard(),
            State::Done => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::diff::summary;
    use crate::snapshot::{diff, Selection};
    use std::collections::BTreeMap;
    use std::ffi::CString;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// Every entry of a tree with everything a snapshot records about it,
    /// inode number included, as text: equal maps mean untouched trees.
    /// (Link counts are left out: a child's links to the parent's inodes
    /// raise them.)
    pub(crate) fn fingerprint(root: &Path) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let path = root.join(&rel);
            let m = fs::symlink_metadata(&path).unwrap();
            let body = if m.is_file() {
                format!("{:?}", fs::read(&path).unwrap())
            } else if m.file_type().is_symlink() {
                format!("-> {:?}", fs::read_link(&path).unwrap())
            } else {
                String::new()
            };
            let xattrs = fsx::list_xattrs(&path).unwrap();
            out.insert(
                rel.clone(),
                format!(
                    "{:o} {}:{} ino={} mtime={}.{} rdev={} {xattrs:?} {body}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.ino(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.rdev()
                ),
            );
            if m.is_dir() {
                for (name, _) in fsx::read_dir_sorted(&path).unwrap() {
                    stack.push(rel.join(name));
                }
            }
        }
        out
    }

    fn note() -> CString {
        CString::new("user.bk.note").unwrap()
    }

    /// A parent with files, directories, symlinks, a hardlink pair,
    /// xattrs, a fifo and odd modes.
    fn parent(store: &Store) -> SnapshotId {
        let base = store.prepare(None).unwrap();
        let r = base.path();
        for d in ["bin", "etc/conf.d", "opt/dir/sub", "var/lib", "ro/inner"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(r.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(r.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(r.join("bin/tool"), r.join("bin/tool-alias")).unwrap();
        fs::write(r.join("etc/passwd"), b"root:x:0:0\n").unwrap();
        fs::write(r.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        fs::write(r.join("etc/conf.d/a"), b"a").unwrap();
        fs::write(r.join("opt/dir/a"), b"old").unwrap();
        fs::write(r.join("opt/dir/sub/b"), b"old").unwrap();
        fs::write(r.join("secret"), b"s").unwrap();
        fs::set_permissions(r.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(r.join("to-delete"), b"bye").unwrap();
        fs::write(r.join("ro/inner/file"), b"deep").unwrap();
        symlink("etc/passwd", r.join("link")).unwrap();
        symlink("/nonexistent", r.join("dangling")).unwrap();
        nix::unistd::mkfifo(
            &r.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        fsx::set_xattr(&r.join("etc/hosts"), &note(), b"file").unwrap();
        fsx::set_xattr(&r.join("etc"), &note(), b"dir").unwrap();
        fs::set_permissions(r.join("ro/inner"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(r.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(r.join("var/lib"), fs::Permissions::from_mode(0o1777)).unwrap();
        let old = filetime::FileTime::from_unix_time(1_234_567_890, 123_456_789);
        for p in [
            "etc/conf.d",
            "etc",
            "opt/dir/sub",
            "opt/dir",
            "opt",
            "var/lib",
            "bin",
            "",
        ] {
            filetime::set_symlink_file_times(r.join(p), old, old).unwrap();
        }
        base.commit().unwrap()
    }

    /// What a RUN step does to its root, with plain file-system calls
    /// (no copy-on-write care at all). `chown`: whether ids other than
    /// the current one exist here.
    fn run_step(root: &Path, chown: bool) {
        fs::write(root.join("new.txt"), b"fresh").unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(root.join("bin/tool"))
            .unwrap()
            .write_all(b"echo more\n")
            .unwrap();
        fs::remove_file(root.join("to-delete")).unwrap();
        fs::remove_dir_all(root.join("opt/dir")).unwrap();
        fs::create_dir(root.join("opt/dir")).unwrap();
        fs::write(root.join("opt/dir/fresh"), b"new").unwrap();
        fs::set_permissions(root.join("etc/hosts"), fs::Permissions::from_mode(0o600)).unwrap();
        if chown {
            std::os::unix::fs::lchown(root.join("secret"), Some(1000), Some(1000)).unwrap();
        }
        fs::hard_link(root.join("etc/passwd"), root.join("etc/passwd-link")).unwrap();
        fs::set_permissions(root.join("var/lib"), fs::Permissions::from_mode(0o700)).unwrap();
        fsx::set_xattr(&root.join("etc"), &note(), b"changed").unwrap();
        // Opened for writing but left as it was: a copy-up, no change.
        drop(
            fs::OpenOptions::new()
                .write(true)
                .open(root.join("etc/conf.d/a"))
                .unwrap(),
        );
    }

    /// Runs the step on every backend-independent fixture and checks the
    /// parent, the diff and the child tree.
    fn check_backend(backend: Backend, chown: bool) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), Selection::Only(backend)).unwrap();
        assert_eq!(store.backend(), backend, "{:?}", store.backend_notes());
        let id = parent(&store);
        let p = store.path(&id);
        let before = fingerprint(&p);

        let mounted = store.prepare_mounted(Some(&id)).unwrap();
        assert_eq!(mounted.backend(), backend);
        let root = mounted.root().to_path_buf();
        assert_eq!(fingerprint(&root).len(), before.len());
        run_step(&root, chown);
        // Writing may clear set-id bits (it does for a writer without
        // CAP_FSETID): the snapshot keeps what the step saw.
        let tool_mode = fs::symlink_metadata(root.join("bin/tool")).unwrap().mode() & 0o7777;
        let child = mounted.commit().unwrap();
        assert!(!root.exists(), "the mount directory is gone");

        assert_eq!(fingerprint(&p), before, "the parent is untouched");
        let c = store.path(&child);
        let mut want = vec![
            "M ",
            "M bin/tool",
            "M etc",
            "M etc/hosts",
            "M etc/passwd",
            "A etc/passwd-link",
            "A new.txt",
            "M opt",
            "M opt/dir",
            "D opt/dir/a",
            "A opt/dir/fresh",
            "D opt/dir/sub",
            "D to-delete",
            "M var/lib",
        ];
        if chown {
            want.insert(want.len() - 2, "M secret");
        }
        // A private copy keeps hard links as one inode, so both names
        // change; an overlay copies up only the name written to.
        if backend == Backend::Native {
            want.insert(2, "M bin/tool-alias");
        }
        let changes = diff(Some(&p), &c).unwrap();
        assert_eq!(
            summary(&changes),
            want,
            "{backend}: parent bin {:?}, child bin {:?}",
            fingerprint(&p.join("bin")).get(Path::new("")),
            fingerprint(&c.join("bin")).get(Path::new(""))
        );

        let read = |rel: &str| fs::read(c.join(rel)).unwrap();
        let mode = |rel: &str| fs::symlink_metadata(c.join(rel)).unwrap().mode() & 0o7777;
        assert_eq!(read("bin/tool"), b"#!/bin/sh\necho hi\necho more\n");
        let alias: &[u8] = if backend == Backend::Native {
            b"#!/bin/sh\necho hi\necho more\n"
        } else {
            b"#!/bin/sh\necho hi\n"
        };
        assert_eq!(read("bin/tool-alias"), alias);
        assert_eq!(mode("bin/tool"), tool_mode);
        if nix::unistd::geteuid().is_root() && Privilege::current() == Privilege::Root {
            assert_eq!(tool_mode, 0o4755);
        }
        assert_eq!(read("new.txt"), b"fresh");
        assert!(!c.join("to-delete").exists());
        let fresh: Vec<_> = fsx::read_dir_sorted(&c.join("opt/dir"))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(fresh, ["fresh"]);
        assert_eq!(mode("etc/hosts"), 0o600);
        assert_eq!(
            fsx::get_xattr(&c.join("etc/hosts"), &note())
                .unwrap()
                .as_deref(),
            Some(&b"file"[..])
        );
        assert_eq!(
            fsx::get_xattr(&c.join("etc"), &note()).unwrap().as_deref(),
            Some(&b"changed"[..])
        );
        if chown {
            let m = fs::symlink_metadata(c.join("secret")).unwrap();
            assert_eq!((m.uid(), m.gid()), (1000, 1000));
        }
        let ino = |rel: &str| fs::symlink_metadata(c.join(rel)).unwrap().ino();
        assert_eq!(ino("etc/passwd"), ino("etc/passwd-link"));
        assert_eq!(mode("var/lib"), 0o700);
        assert_eq!(mode("ro"), 0o500);
        assert_eq!(mode("ro/inner"), 0o555);
        assert_eq!(
            fs::read_link(c.join("link")).unwrap(),
            Path::new("etc/passwd")
        );
        // Unchanged files are the parent's inodes, not copies.
        let pino = |rel: &str| fs::symlink_metadata(p.join(rel)).unwrap().ino();
        for rel in ["etc/conf.d/a", "ro/inner/file", "secret", "link"] {
            if rel != "secret" || !chown {
                assert_eq!(ino(rel), pino(rel), "{rel} is shared with the parent");
            }
        }
        // Nothing of overlay's bookkeeping reaches the snapshot.
        for (path, line) in fingerprint(&c) {
            assert!(!line.contains("overlay"), "{path:?}: {line}");
        }
        assert!(fsx::read_dir_sorted(&dir.path().join("tmp"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn overlay_commit_applies_exactly_the_step() {
        check_backend(Backend::Overlay, true);
    }

    #[test]
    fn fuse_overlayfs_commit_applies_exactly_the_step() {
        check_backend(Backend::FuseOverlay, true);
    }

    #[test]
    fn native_commit_applies_exactly_the_step() {
        check_backend(Backend::Native, true);
    }

    /// The store's `tmp/` is empty and nothing is mounted under `dir`.
    fn assert_clean(dir: &Path) {
        let tmp = dir.join("tmp");
        assert!(
            fsx::read_dir_sorted(&tmp).unwrap().is_empty(),
            "{:?}",
            fsx::read_dir_sorted(&tmp).unwrap()
        );
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let needle = dir.to_string_lossy().into_owned();
        assert!(
            !mounts.lines().any(|l| l.contains(&needle)),
            "still mounted under {needle}"
        );
    }

    fn every_backend() -> [Backend; 3] {
        [Backend::Overlay, Backend::FuseOverlay, Backend::Native]
    }

    #[test]
    fn a_root_without_parent_starts_empty_and_commits() {
        for backend in every_backend() {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(dir.path(), Selection::Only(backend)).unwrap();
            let mounted = store.prepare_mounted(None).unwrap();
            assert_eq!(mounted.parent(), None);
            let root = mounted.root().to_path_buf();
            assert!(fsx::read_dir_sorted(&root).unwrap().is_empty(), "{backend}");
            assert_eq!(
                fs::symlink_metadata(&root).unwrap().mode() & 0o7777,
                0o755,
                "{backend}"
            );
            fs::create_dir(root.join("etc")).unwrap();
            fs::write(root.join("etc/motd"), b"hi").unwrap();
            let id = mounted.commit().unwrap();
            let changes = diff(None, &store.path(&id)).unwrap();
            assert_eq!(summary(&changes), ["A etc", "A etc/motd"], "{backend}");
            assert_eq!(fs::read(store.path(&id).join("etc/motd")).unwrap(), b"hi");
            assert_clean(dir.path());
        }
    }

    #[test]
    fn discard_and_drop_unmount_and_leave_nothing() {
        for backend in every_backend() {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(dir.path(), Selection::Only(backend)).unwrap();
            let id = parent(&store);
            let before = fingerprint(&store.path(&id));
            let mounted = store.prepare_mounted(Some(&id)).unwrap();
            run_step(mounted.root(), true);
            mounted.discard().unwrap();
            assert_clean(dir.path());
            let mounted = store.prepare_mounted(Some(&id)).unwrap();
            run_step(mounted.root(), true);
            drop(mounted);
            assert_clean(dir.path());
            assert_eq!(fingerprint(&store.path(&id)), before, "{backend}");
            assert_eq!(store.list().unwrap(), vec![id], "{backend}");
        }
    }

    #[test]
    fn a_mounted_parent_cannot_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), Selection::Only(Backend::Overlay)).unwrap();
        let id = parent(&store);
        let mounted = store.prepare_mounted(Some(&id)).unwrap();
        assert!(matches!(
            store.remove(&id),
            Err(SnapshotError::Remove { .. })
        ));
        drop(mounted);
        store.remove(&id).unwrap();
    }

    #[test]
    fn a_commit_refuses_a_mount_still_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), Selection::Only(Backend::Overlay)).unwrap();
        let id = parent(&store);
        let mounted = store.prepare_mounted(Some(&id)).unwrap();
        let busy = fs::File::open(mounted.root().join("etc/passwd")).unwrap();
        let err = mounted.commit().unwrap_err();
        assert!(matches!(err, SnapshotError::Unmount(_)), "{err:?}");
        drop(busy);
        // The failed commit dropped the snapshot: detached and removed.
        assert_clean(dir.path());
        assert_eq!(store.list().unwrap(), vec![id]);
    }

    /// Runs this test binary again for the ignored test `name`, under
    /// `wrapper` (a command and its arguments, or nothing).
    fn rerun(name: &str, wrapper: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        };
        cmd.args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Not a test of its own: prepares a writable snapshot in the store
    /// `BK_TEST_CRASH_ROOT` over `BK_TEST_CRASH_PARENT` and dies without
    /// any cleanup, as a killed bk would.
    #[test]
    #[ignore = "run in a child process by open_cleans_up_after_a_killed_run"]
    fn crash_helper() {
        let (Some(root), Ok(parent), Ok(backend)) = (
            std::env::var_os("BK_TEST_CRASH_ROOT"),
            std::env::var("BK_TEST_CRASH_PARENT"),
            std::env::var("BK_TEST_CRASH_BACKEND"),
        ) else {
            return;
        };
        let store = Store::open_with(Path::new(&root), backend.parse().unwrap()).unwrap();
        let id = SnapshotId::new(parent).unwrap();
        let mounted = store.prepare_mounted(Some(&id)).unwrap();
        fs::write(mounted.root().join("written"), b"x").unwrap();
        println!("ROOT={}", mounted.root().display());
        std::process::abort();
    }

    #[test]
    fn open_cleans_up_after_a_killed_run() {
        for backend in every_backend() {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_with(dir.path(), Selection::Only(backend)).unwrap();
            let id = parent(&store);
            let before = fingerprint(&store.path(&id));
            let out = rerun(
                "snapshot::mounted::tests::crash_helper",
                &[],
                &[
                    ("BK_TEST_CRASH_ROOT", dir.path().to_str().unwrap()),
                    ("BK_TEST_CRASH_PARENT", id.as_str()),
                    ("BK_TEST_CRASH_BACKEND", backend.name()),
                ],
            );
            assert!(!out.status.success(), "the helper dies");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let root = stdout
                .lines()
                .find_map(|l| l.split_once("ROOT=").map(|(_, r)| r))
                .unwrap_or_else(|| panic!("{backend}: {stdout}"));
            let root = PathBuf::from(root);
            // The killed run left its tree (and, for overlays, its mount:
            // this test runs without a mount namespace of its own).
            assert!(root.join("written").exists(), "{backend}");
            if backend != Backend::Native {
                assert!(overlay::is_mount_point(&root).unwrap(), "{backend}");
            }
            let again = Store::open_with(dir.path(), Selection::Only(backend)).unwrap();
            assert_clean(dir.path());
            assert_eq!(fingerprint(&again.path(&id)), before, "{backend}");
            if backend == Backend::FuseOverlay {
                assert!(!fuse_server_running(&root), "the fuse server is stopped");
            }
        }
    }

    /// Whether a fuse-overlayfs process serving `merged` is still alive
    /// after a short grace period.
    fn fuse_server_running(merged: &Path) -> bool {
        for _ in 0..50 {
            let running = fs::read_dir("/proc").unwrap().flatten().any(|e| {
                fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    let text = String::from_utf8_lossy(&c);
                    text.contains("fuse-overlayfs") && text.contains(&*merged.to_string_lossy())
                })
            });
            if !running {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
    }

    /// Not a test of its own: the checks an unprivileged user runs inside
    /// a user namespace it made (see overlay_and_native_work_rootless).
    #[test]
    #[ignore = "run in a user namespace by overlay_and_native_work_rootless"]
    fn rootless_helper() {
        if std::env::var_os("BK_TEST_ROOTLESS").is_none() {
            return;
        }
        assert_eq!(Privilege::current(), Privilege::UserNamespace);
        check_backend(Backend::Overlay, false);
        check_backend(Backend::Native, false);
        // Detection finds overlayfs (with userxattr) here.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.backend(),
            Backend::Overlay,
            "{:?}",
            store.backend_notes()
        );
        // The overlay keeps its markers in user.* xattrs.
        let id = parent(&store);
        let mounted = store.prepare_mounted(Some(&id)).unwrap();
        fs::remove_dir_all(mounted.root().join("opt/dir")).unwrap();
        fs::create_dir(mounted.root().join("opt/dir")).unwrap();
        let State::Overlay(o) = &mounted.state else {
            panic!("an overlay")
        };
        let opaque = CString::new("user.overlay.opaque").unwrap();
        assert_eq!(
            fsx::get_xattr(&o.dirs.upper.join("opt/dir"), &opaque)
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        drop(mounted);
        // /dev/fuse is root's only: fuse-overlayfs falls back, saying why.
        if fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .is_err()
        {
            let store =
                Store::open_with(dir.path(), Selection::Only(Backend::FuseOverlay)).unwrap();
            assert_eq!(store.backend(), Backend::Native);
            let notes = store.backend_notes().join("\n");
            assert!(notes.contains("/dev/fuse"), "{notes}");
        }
        println!("ROOTLESS CHECKS PASSED");
    }

    #[test]
    fn overlay_and_native_work_rootless() {
        // An unprivileged user (nobody) makes a user namespace mapping
        // itself to root, as rootless bk does, and runs the checks there.
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(tmp.path(), Some(65534), Some(65534)).unwrap();
        let out = rerun(
            "snapshot::mounted::tests::rootless_helper",
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                "unshare",
                "--user",
                "--map-root-user",
                "--mount",
            ],
            &[
                ("BK_TEST_ROOTLESS", "1"),
                ("TMPDIR", tmp.path().to_str().unwrap()),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ROOTLESS CHECKS PASSED"),
            "{}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
