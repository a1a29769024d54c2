//! The hardlink clone that starts a new snapshot from its parent:
//! directories are recreated with the parent's mode, owner (when
//! permitted), times and xattrs (where possible); regular files and
//! symlinks are hard-linked without following (Linux links the symlink
//! itself); fifos, devices and sockets are recreated when permitted and
//! otherwise skipped and counted.
//!
//! Directories are walked in parallel on rayon's pool, one task per
//! directory (big ones split in chunks). Directory metadata is applied
//! only after every entry exists, because creating an entry changes its
//! directory's mtime and a read-only mode would forbid creating entries;
//! the metadata of one directory is unaffected by changes to another's,
//! so that last pass runs in parallel too.
//!
//! Imports `fsx` and `crate::util` only.

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, FileType, Metadata};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::fsx::{self, MetaOpts};
use crate::util::fs::FsError;

/// What a clone could not reproduce exactly, for the caller to warn about.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CloneReport {
    /// Entries below the root that were visited (skipped ones included).
    pub entries: u64,
    /// Files copied instead of linked because their inode had reached the
    /// file system's link limit (ext4: 65,000). Each copy is a new inode,
    /// so it shows up as modified in [`diff`](super::diff).
    pub copied: u64,
    /// Fifos, devices and sockets that could not be recreated (creating
    /// devices needs CAP_MKNOD) and are missing from the clone.
    pub special_skipped: u64,
    /// Directories and recreated nodes whose owner could not be set.
    pub owner_skipped: u64,
    /// Extended attributes that could not be set on directories and
    /// recreated nodes (linked files keep theirs: they are the same inode).
    pub xattrs_skipped: u64,
}

impl CloneReport {
    /// How many things the clone could not reproduce.
    pub fn warnings(&self) -> u64 {
        self.special_skipped + self.owner_skipped + self.xattrs_skipped
    }
}

/// Entries handled by one task; a directory with more is split so that a
/// single huge directory still spreads over the pool.
const CHUNK: usize = 512;

/// Metadata to give a directory once everything inside it exists.
struct Fixup {
    src: PathBuf,
    dst: PathBuf,
    meta: Metadata,
}

/// State shared by the clone's tasks.
#[derive(Default)]
struct Shared {
    entries: AtomicU64,
    copied: AtomicU64,
    special_skipped: AtomicU64,
    owner_skipped: AtomicU64,
    xattrs_skipped: AtomicU64,
    fixups: Mutex<Vec<Fixup>>,
    failed: AtomicBool,
    error: Mutex<Option<FsError>>,
}

impl Shared {
    /// Records the first error and tells the other tasks to stop.
    fn fail(&self, err: FsError) {
        self.failed.store(true, Ordering::Relaxed);
        // A poisoned lock only means another task panicked; the slot is
        // still a plain Option.
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(err);
    }

    fn count_skips(&self, skipped: fsx::Skipped) {
        self.owner_skipped
            .fetch_add(skipped.owner, Ordering::Relaxed);
        self.xattrs_skipped
            .fetch_add(skipped.xattrs, Ordering::Relaxed);
    }
}

/// Metadata copies on the clone are best effort: a rootless build cannot
/// give files away or set `trusted.*` xattrs, and that must not stop it.
const BEST_EFFORT: MetaOpts = MetaOpts {
    owner: true,
    xattrs: true,
    strict: false,
};

/// Clones the tree at `src` into the existing, empty directory `dst`
/// (whose own metadata becomes `src`'s).
pub(crate) fn clone_tree(src: &Path, dst: &Path) -> Result<CloneReport, FsError> {
    let root_meta = fs::symlink_metadata(src).map_err(|e| FsError::new("inspect", src, e))?;
    let shared = Shared::default();
    rayon::scope(|scope| visit(scope, src.to_path_buf(), dst.to_path_buf(), &shared));
    if let Some(err) = shared.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(err);
    }
    let mut fixups = shared
        .fixups
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    fixups.push(Fixup {
        src: src.to_path_buf(),
        dst: dst.to_path_buf(),
        meta: root_meta,
    });
    let skipped = fixups
        .par_iter()
        .map(|f| {
            fsx::apply_metadata(&f.src, &f.dst, &f.meta, BEST_EFFORT)
                .map_err(|e| FsError::new("set metadata of", &f.dst, e))
        })
        .try_fold(fsx::Skipped::default, |acc, r| {
            r.map(|s| fsx::Skipped {
                owner: acc.owner + s.owner,
                xattrs: acc.xattrs + s.xattrs,
            })
        })
        .try_reduce(fsx::Skipped::default, |a, b| {
            Ok(fsx::Skipped {
                owner: a.owner + b.owner,
                xattrs: a.xattrs + b.xattrs,
            })
        })?;
    Ok(CloneReport {
        entries: shared.entries.into_inner(),
        copied: shared.copied.into_inner(),
        special_skipped: shared.special_skipped.into_inner(),
        owner_skipped: shared.owner_skipped.into_inner() + skipped.owner,
        xattrs_skipped: shared.xattrs_skipped.into_inner() + skipped.xattrs,
    })
}

/// Clones the entries of directory `src` into the existing `dst`.
fn visit<'s>(scope: &rayon::Scope<'s>, src: PathBuf, dst: PathBuf, sh: &'s Shared) {
    if sh.failed.load(Ordering::Relaxed) {
        return;
    }
    let mut entries = Vec::new();
    let listing = fs::read_dir(&src).and_then(|rd| {
        for entry in rd {
            let entry = entry?;
            entries.push((entry.file_name(), entry.file_type()?));
        }
        Ok(())
    });
    if let Err(e) = listing {
        return sh.fail(FsError::new("read directory", &src, e));
    }
    while entries.len() > CHUNK {
        let rest = entries.split_off(CHUNK);
        let chunk = std::mem::replace(&mut entries, rest);
        let (src, dst) = (src.clone(), dst.clone());
        scope.spawn(move |scope| clone_entries(scope, &src, &dst, chunk, sh));
    }
    clone_entries(scope, &src, &dst, entries, sh);
}

fn clone_entries<'s>(
    scope: &rayon::Scope<'s>,
    src_dir: &Path,
    dst_dir: &Path,
    entries: Vec<(OsString, FileType)>,
    sh: &'s Shared,
) {
    // Links are made relative to the two directories' descriptors: the
    // kernel then resolves one name per side instead of two full paths,
    // which is most of a link's cost in a deep tree.
    let dirs = open_dir(src_dir).and_then(|s| Ok((s, open_dir(dst_dir)?)));
    let (src_fd, dst_fd) = match dirs {
        Ok(fds) => fds,
        Err(e) => return sh.fail(e),
    };
    for (name, ft) in entries {
        if sh.failed.load(Ordering::Relaxed) {
            return;
        }
        let result = if ft.is_dir() {
            let (src, dst) = (src_dir.join(&name), dst_dir.join(&name));
            clone_dir(&src, &dst, sh).map(|()| {
                scope.spawn(move |scope| visit(scope, src, dst, sh));
            })
        } else if ft.is_file() || ft.is_symlink() {
            link_or_copy(&src_fd, &dst_fd, &name, src_dir, dst_dir, sh)
        } else {
            recreate_node(&src_dir.join(&name), &dst_dir.join(&name), sh)
        };
        match result {
            Ok(()) => {
                sh.entries.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return sh.fail(e),
        }
    }
}

/// A descriptor for `dir` usable only as the base of `*at` calls.
fn open_dir(dir: &Path) -> Result<OwnedFd, FsError> {
    use nix::fcntl::{open, OFlag};
    open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| FsError::new("open directory", dir, e.into()))
}

/// Creates `dst` private to the owner (so entries can be made in it
/// whatever the final mode) and queues its real metadata.
fn clone_dir(src: &Path, dst: &Path, sh: &Shared) -> Result<(), FsError> {
    let meta = fs::symlink_metadata(src).map_err(|e| FsError::new("inspect", src, e))?;
    DirBuilder::new()
        .mode(0o700)
        .create(dst)
        .map_err(|e| FsError::new("create directory", dst, e))?;
    sh.fixups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Fixup {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            meta,
        });
    Ok(())
}

/// Hard-links `name` in the clone to the parent's inode without
/// following a symlink; an inode at the link limit is copied instead.
fn link_or_copy(
    src_fd: &OwnedFd,
    dst_fd: &OwnedFd,
    name: &OsStr,
    src_dir: &Path,
    dst_dir: &Path,
    sh: &Shared,
) -> Result<(), FsError> {
    use nix::fcntl::AtFlags;
    // No AT_SYMLINK_FOLLOW: a symlink is linked as itself, never its target.
    match nix::unistd::linkat(src_fd, name, dst_fd, name, AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EMLINK) => {
            let (src, dst) = (src_dir.join(name), dst_dir.join(name));
            let meta = fs::symlink_metadata(&src).map_err(|e| FsError::new("inspect", &src, e))?;
            fsx::copy_node(&src, &dst, &meta).map_err(|e| FsError::new("copy", &src, e))?;
            let skipped = fsx::apply_metadata(&src, &dst, &meta, BEST_EFFORT)
                .map_err(|e| FsError::new("set metadata of", &dst, e))?;
            sh.count_skips(skipped);
            sh.copied.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(FsError::new("hard-link", dst_dir.join(name), e.into())),
    }
}

/// Recreates a fifo, device or socket; one the user may not create is
/// skipped and counted.
fn recreate_node(src: &Path, dst: &Path, sh: &Shared) -> Result<(), FsError> {
    let meta = fs::symlink_metadata(src).map_err(|e| FsError::new("inspect", src, e))?;
    match fsx::make_node(dst, &meta) {
        Ok(()) => {
            let skipped = fsx::apply_metadata(src, dst, &meta, BEST_EFFORT)
                .map_err(|e| FsError::new("set metadata of", dst, e))?;
            sh.count_skips(skipped);
            Ok(())
        }
        Err(e) if fsx::is_not_permitted(&e) => {
            sh.special_skipped.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(FsError::new("create node", dst, e)),
    }
}
