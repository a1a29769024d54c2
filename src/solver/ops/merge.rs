//! Merge ops: lay several filesystems on top of each other, later inputs
//! winning, as `COPY --link` results are merged onto their stage.
//!
//! The result starts as a hardlink clone of the first input; every further
//! input's tree is then laid over it: its directories are created (or, if
//! present, take the later input's mode, owner and times, as an overlayfs
//! upper directory would), its other entries replace whatever had their
//! name and are hard-linked to the input's inode — committed snapshots are
//! immutable and writers never modify an inode in place, so sharing it is
//! safe. Where linking is refused (link limit, another file system,
//! protected hardlinks for an unprivileged user), regular files are copied.
//!
//! Limitation: a tree records what exists, not what was deleted, so a
//! later input cannot remove anything from an earlier one. That is exact
//! for `COPY --link`, whose merged input is built on scratch (nothing to
//! delete); a general BuildKit merge of inputs with deletions relative to
//! their own bases (carried as whiteouts in layer diffs) is not reproduced.
//!
//! Owns the overlay walk; imports `util`, the snapshot store and the
//! solver's error type; never `cli` or `dockerfile`.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::snapshot::{SnapshotError, SnapshotId, Store};
use crate::util::fs::FsError;

/// Why a merge failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Cloning the first input into a new snapshot failed.
    #[error("cannot start the merged snapshot")]
    Prepare(#[source] SnapshotError),
    /// Renaming the finished merge into place failed.
    #[error("cannot commit the merged snapshot")]
    Commit(#[source] SnapshotError),
    /// Laying input `input` (0-based among the merge's inputs) over the
    /// result failed; the source names the path and system call.
    #[error("cannot lay merge input {input} over the result")]
    Overlay {
        input: usize,
        #[source]
        source: FsError,
    },
}

/// What an overlay did, for progress and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OverlayReport {
    /// Non-directory entries linked (or copied) into the result.
    pub entries: u64,
    /// Of those, regular files copied because linking was refused.
    pub copied: u64,
    /// Directories or files whose owner could not be set (not root).
    pub owner_skipped: u64,
}

/// Merges `inputs` (None: scratch) into a new snapshot: a clone of the
/// first, with every further one laid over it in order. Blocking.
pub fn run(store: &Store, inputs: &[Option<SnapshotId>]) -> Result<SnapshotId, MergeError> {
    let (first, rest) = match inputs.split_first() {
        Some((first, rest)) => (first.as_ref(), rest),
        None => (None, inputs),
    };
    let active = store.prepare(first).map_err(MergeError::Prepare)?;
    for (n, upper) in rest.iter().enumerate() {
        // Scratch adds nothing.
        let Some(upper) = upper else { continue };
        overlay(&store.path(upper), active.path()).map_err(|source| MergeError::Overlay {
            input: n + 1,
            source,
        })?;
    }
    active.commit().map_err(MergeError::Commit)
}

/// Lays the tree at `upper` over the tree at `lower`, in place: see the
/// module documentation. `lower` must be a directory this process may
/// write (an active snapshot); `upper` is only read.
pub fn overlay(upper: &Path, lower: &Path) -> Result<OverlayReport, FsError> {
    let mut report = OverlayReport::default();
    let meta = fs::symlink_metadata(upper).map_err(|e| FsError::new("stat", upper, e))?;
    overlay_dir(upper, lower, &meta, &mut report)?;
    Ok(report)
}

/// Overlays directory `src` onto directory `dst` (which exists and is a
/// real directory), then gives `dst` the metadata of `src`.
fn overlay_dir(
    src: &Path,
    dst: &Path,
    src_meta: &Metadata,
    report: &mut OverlayReport,
) -> Result<(), FsError> {
    let entries = fs::read_dir(src).map_err(|e| FsError::new("read directory", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("read directory", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).map_err(|e| FsError::new("stat", &from, e))?;
        // What is there now, never followed: a symlink in the lower tree
        // is an entry to replace, not a way out of it.
        let existing = match fs::symlink_metadata(&to) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(FsError::new("stat", &to, e)),
        };
        if meta.is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    remove_entry(&to, false)?;
                    make_dir(&to)?;
                }
                None => make_dir(&to)?,
            }
            overlay_dir(&from, &to, &meta, report)?;
        } else {
            if let Some(m) = existing {
                remove_entry(&to, m.is_dir())?;
            }
            place(&from, &to, &meta, report)?;
        }
    }
    // Last, because creating entries changes a directory's mtime and a
    // read-only mode would have forbidden creating them.
    set_metadata(dst, src_meta, report)
}

fn make_dir(path: &Path) -> Result<(), FsError> {
    // Owner-writable until `set_metadata` gives it the input's mode.
    fs::create_dir(path).map_err(|e| FsError::new("create directory", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| FsError::new("set permissions of", path, e))
}

fn remove_entry(path: &Path, is_dir: bool) -> Result<(), FsError> {
    if is_dir {
        fs::remove_dir_all(path).map_err(|e| FsError::new("remove directory", path, e))
    } else {
        fs::remove_file(path).map_err(|e| FsError::new("remove", path, e))
    }
}

/// Puts non-directory `from` at the free name `to`: a hard link to the
/// same inode (Linux links a symlink itself, not its target), or a copy
/// where the kernel refuses the link.
fn place(
    from: &Path,
    to: &Path,
    meta: &Metadata,
    report: &mut OverlayReport,
) -> Result<(), FsError> {
    report.entries += 1;
    let link_err = match fs::hard_link(from, to) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(from).map_err(|e| FsError::new("read link", from, e))?;
        std::os::unix::fs::symlink(&target, to)
            .map_err(|e| FsError::new("create symlink", to, e))?;
    } else if ft.is_file() {
        report.copied += 1;
        copy_file(from, to)?;
    } else {
        // Fifos, sockets and devices cannot be copied; report why the
        // link failed.
        return Err(FsError::new("link", to, link_err));
    }
    set_metadata(to, meta, report)
}

/// Copies the bytes of regular file `from` into the new file `to`,
/// refusing to read through a symlink swapped in under us.
fn copy_file(from: &Path, to: &Path) -> Result<(), FsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)
        .map_err(|e| FsError::new("open", from, e))?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| FsError::new("create", to, e))?;
    io::copy(&mut src, &mut dst).map_err(|e| FsError::new("copy into", to, e))?;
    Ok(())
}

/// Gives `path` the owner (when permitted), mode and times of `meta`, in
/// that order: chown clears set-id bits, and every change touches times.
fn set_metadata(path: &Path, meta: &Metadata, report: &mut OverlayReport) -> Result<(), FsError> {
    let now = fs::symlink_metadata(path).map_err(|e| FsError::new("stat", path, e))?;
    if now.uid() != meta.uid() || now.gid() != meta.gid() {
        match std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid())) {
            Ok(()) => {}
            // An unprivileged build cannot give files away; the tree is
            // still right in content and mode.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => report.owner_skipped += 1,
            Err(e) => return Err(FsError::new("change owner of", path, e)),
        }
    }
    // Linux has no lchmod: a symlink's own mode is always 0777.
    if !meta.file_type().is_symlink() {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| FsError::new("set permissions of", path, e))?;
    }
    filetime::set_symlink_file_times(
        path,
        filetime::FileTime::from_last_access_time(meta),
        filetime::FileTime::from_last_modification_time(meta),
    )
    .map_err(|e| FsError::new("set times of", path, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn later_entries_win_and_share_inodes() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        write(lower.path(), "keep.txt", "lower");
        write(lower.path(), "app/old.txt", "old");
        write(lower.path(), "app/same.txt", "lower");
        write(lower.path(), "was-file/x", "gone");
        fs::remove_dir_all(lower.path().join("was-file")).unwrap();
        fs::write(lower.path().join("was-file"), "file").unwrap();
        write(lower.path(), "was-dir/inner", "inner");
        write(upper.path(), "app/same.txt", "upper");
        write(upper.path(), "app/new/deep.txt", "deep");
        write(upper.path(), "was-file/x", "now a dir");
        write(upper.path(), "was-dir", "now a file");
        symlink("keep.txt", upper.path().join("link")).unwrap();
        fs::set_permissions(upper.path().join("app"), fs::Permissions::from_mode(0o750)).unwrap();

        let report = overlay(upper.path(), lower.path()).unwrap();
        let read = |rel: &str| fs::read_to_string(lower.path().join(rel)).unwrap();
        assert_eq!(read("keep.txt"), "lower");
        assert_eq!(read("app/old.txt"), "old");
        assert_eq!(read("app/same.txt"), "upper");
        assert_eq!(read("app/new/deep.txt"), "deep");
        assert_eq!(read("was-file/x"), "now a dir");
        assert_eq!(read("was-dir"), "now a file");
        assert_eq!(
            fs::read_link(lower.path().join("link")).unwrap(),
            Path::new("keep.txt")
        );
        let mode = fs::metadata(lower.path().join("app")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o750, "the upper directory's mode wins");
        let ino = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
        assert_eq!(
            ino(&lower.path().join("app/same.txt")),
            ino(&upper.path().join("app/same.txt")),
            "files are linked, not copied"
        );
        assert_eq!(report.entries, 5);
        assert_eq!(report.copied, 0);
    }

    #[test]
    fn a_symlinked_directory_below_is_replaced_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        symlink(outside.path(), lower.path().join("etc")).unwrap();
        write(upper.path(), "etc/passwd", "mine");
        overlay(upper.path(), lower.path()).unwrap();
        assert!(fs::symlink_metadata(lower.path().join("etc"))
            .unwrap()
            .is_dir());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn run_merges_snapshots_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let make = |files: &[(&str, &str)]| {
            let active = store.prepare(None).unwrap();
            for (rel, text) in files {
                write(active.path(), rel, text);
            }
            active.commit().unwrap()
        };
        let base = make(&[("a", "base"), ("b", "base")]);
        let upper = make(&[("b", "upper"), ("c", "upper")]);
        let merged = run(&store, &[Some(base.clone()), None, Some(upper)]).unwrap();
        let read = |rel: &str| fs::read_to_string(store.path(&merged).join(rel)).unwrap();
        assert_eq!(
            (read("a"), read("b"), read("c")),
            ("base".into(), "upper".into(), "upper".into())
        );
        assert_eq!(
            fs::read_to_string(store.path(&base).join("b")).unwrap(),
            "base",
            "inputs are never modified"
        );
    }

    #[test]
    fn errors_name_the_path() {
        let lower = tempfile::tempdir().unwrap();
        let err = overlay(&lower.path().join("missing"), lower.path()).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
