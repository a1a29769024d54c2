//! The hardlink clone that starts a new snapshot from its parent:
//! directories are recreated with the parent's mode, owner (when
//! permitted), times and xattrs (where possible); regular files and
//! symlinks are hard-linked without following (Linux links the symlink
//! itself); fifos, devices and sockets are recreated when permitted and
//! otherwise skipped and counted.
//!
//! The same walk also makes a *private copy* ([`CloneMode::Copy`], the
//! native snapshotter's): regular files are reflinked where the file
//! system can (`FICLONE`) and copied otherwise, symlinks recreated, both
//! with owner, mode, xattrs and times; names hard-linked to each other in
//! the source stay one inode in the copy. Each copied inode is recorded
//! with its ctime, so that a commit can tell, without reading it, that a
//! copy was never touched (see [`CopyRecord`]).
//!
//! Directories are walked in parallel on rayon's pool, one task per
//! directory (big ones split in chunks). Directory metadata is applied
//! only after every entry exists, because creating an entry changes its
//! directory's mtime and a read-only mode would forbid creating entries;
//! the metadata of one directory is unaffected by changes to another's,
//! so that last pass runs in parallel too.
//!
//! Imports `fsx` and `crate::util` only.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, FileType, Metadata};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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

/// Whether the clone shares the parent's inodes or copies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloneMode {
    /// Hard links to the parent's files (the copy-on-write rule applies).
    Link,
    /// Private copies that may be written in place.
    Copy,
}

/// What a private copy made: for each copied inode (by inode number in
/// the copy), its ctime right after the copy and the source inode it
/// copies. Any later change to the copy (content, mode, owner, xattrs,
/// links, rename) moves its ctime.
#[derive(Debug, Default)]
pub(crate) struct CopyRecord {
    pub inodes: HashMap<u64, Copied>,
}

/// One copied inode; see [`CopyRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Copied {
    pub ctime: (i64, i64),
    pub source: (u64, u64),
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
struct Shared {
    mode: CloneMode,
    entries: AtomicU64,
    copied: AtomicU64,
    special_skipped: AtomicU64,
    owner_skipped: AtomicU64,
    xattrs_skipped: AtomicU64,
    fixups: Mutex<Vec<Fixup>>,
    failed: AtomicBool,
    error: Mutex<Option<FsError>>,
    /// Copy mode: the first copy of each multiply-linked source inode.
    groups: Mutex<HashMap<(u64, u64), PathBuf>>,
    record: Mutex<HashMap<u64, Copied>>,
    /// Set once `FICLONE` is refused: the file system cannot reflink.
    no_reflink: AtomicBool,
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
/// In [`CloneMode::Copy`] the record of what was copied comes back too
/// (it is empty for a link clone).
pub(crate) fn clone_tree(
    src: &Path,
    dst: &Path,
    mode: CloneMode,
) -> Result<(CloneReport, CopyRecord), FsError> {
    let root_meta = fs::symlink_metadata(src).map_err(|e| FsError::new("inspect", src, e))?;
    let shared = Shared {
        mode,
        entries: AtomicU64::new(0),
        copied: AtomicU64::new(0),
        special_skipped: AtomicU64::new(0),
        owner_skipped: AtomicU64::new(0),
        xattrs_skipped: AtomicU64::new(0),
        fixups: Mutex::new(Vec::new()),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        groups: Mutex::new(HashMap::new()),
        record: Mutex::new(HashMap::new()),
        no_reflink: AtomicBool::new(false),
    };
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
    let report = CloneReport {
        entries: shared.entries.into_inner(),
        copied: shared.copied.into_inner(),
        special_skipped: shared.special_skipped.into_inner(),
        owner_skipped: shared.owner_skipped.into_inner() + skipped.owner,
        xattrs_skipped: shared.xattrs_skipped.into_inner() + skipped.xattrs,
    };
    let record = CopyRecord {
        inodes: shared
            .record
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    };
    Ok((report, record))
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
        } else if (ft.is_file() || ft.is_symlink()) && sh.mode == CloneMode::Link {
            link_or_copy(&src_fd, &dst_fd, &name, src_dir, dst_dir, sh)
        } else if ft.is_file() || ft.is_symlink() {
            copy_private(&src_dir.join(&name), &dst_dir.join(&name), sh)
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

/// Copy mode: gives `dst` its own copy of `src`, or a link to the copy
/// already made of the same source inode.
fn copy_private(src: &Path, dst: &Path, sh: &Shared) -> Result<(), FsError> {
    let meta = fs::symlink_metadata(src).map_err(|e| FsError::new("inspect", src, e))?;
    if meta.nlink() <= 1 {
        return copy_one(src, dst, &meta, sh);
    }
    // Held across the copy so that a second name of the inode waits for
    // the first copy instead of making another; multiply-linked files
    // are few.
    let mut groups = sh.groups.lock().unwrap_or_else(|p| p.into_inner());
    let key = (meta.dev(), meta.ino());
    match groups.get(&key) {
        Some(first) => {
            fs::hard_link(first, dst).map_err(|e| FsError::new("hard-link", dst, e))?;
            // The new link moved the inode's ctime: record the new one.
            record(dst, &meta, sh)
        }
        None => {
            copy_one(src, dst, &meta, sh)?;
            groups.insert(key, dst.to_path_buf());
            Ok(())
        }
    }
}

fn copy_one(src: &Path, dst: &Path, meta: &Metadata, sh: &Shared) -> Result<(), FsError> {
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).map_err(|e| FsError::new("read link", src, e))?;
        std::os::unix::fs::symlink(target, dst)
            .map_err(|e| FsError::new("create symlink", dst, e))?;
        let skipped = fsx::apply_metadata(src, dst, meta, BEST_EFFORT)
            .map_err(|e| FsError::new("set metadata of", dst, e))?;
        sh.count_skips(skipped);
        return record(dst, meta, sh);
    }
    let mut from = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .map_err(|e| FsError::new("open", src, e))?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(|e| FsError::new("create", dst, e))?;
    let cloned = !sh.no_reflink.load(Ordering::Relaxed)
        && match reflink(&from, &to) {
            Ok(()) => true,
            Err(e) if is_no_reflink(&e) => {
                sh.no_reflink.store(true, Ordering::Relaxed);
                false
            }
            Err(e) => return Err(FsError::new("reflink", dst, e)),
        };
    if !cloned {
        crate::util::fs::copy_data(&mut from, &mut to, meta.len())
            .map_err(|e| FsError::new("copy", src, e))?;
    }
    let skipped = fsx::apply_metadata_fd(&from, &to, meta, BEST_EFFORT)
        .map_err(|e| FsError::new("set metadata of", dst, e))?;
    sh.count_skips(skipped);
    let now = to.metadata().map_err(|e| FsError::new("inspect", dst, e))?;
    sh.record.lock().unwrap_or_else(|p| p.into_inner()).insert(
        now.ino(),
        Copied {
            ctime: (now.ctime(), now.ctime_nsec()),
            source: (meta.dev(), meta.ino()),
        },
    );
    Ok(())
}

/// Records the copy at `dst` (already complete) of source `meta`.
fn record(dst: &Path, meta: &Metadata, sh: &Shared) -> Result<(), FsError> {
    let now = fs::symlink_metadata(dst).map_err(|e| FsError::new("inspect", dst, e))?;
    sh.record.lock().unwrap_or_else(|p| p.into_inner()).insert(
        now.ino(),
        Copied {
            ctime: (now.ctime(), now.ctime_nsec()),
            source: (meta.dev(), meta.ino()),
        },
    );
    Ok(())
}

/// Makes `to` share `from`'s extents (`FICLONE`).
fn reflink(from: &fs::File, to: &fs::File) -> io::Result<()> {
    // SAFETY: both descriptors are open for the duration of the call;
    // FICLONE takes the source descriptor as its integer argument and
    // writes no memory of ours.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The errors by which a file system says it cannot reflink (at all, or
/// across these two files).
fn is_no_reflink(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EOPNOTSUPP)
            | Some(libc::ENOTTY)
            | Some(libc::EXDEV)
            | Some(libc::EINVAL)
            | Some(libc::ENOSYS)
    )
}
