//! The local exporter: copies a tree into a directory on the host.
//!
//! Files are copied, never hard-linked to the snapshot, because the user
//! may edit the output and must not corrupt the build cache by doing so.
//! Kept: content, permission bits, symlinks as symlinks (never followed),
//! hardlinks within the tree as hardlinks between the copies, fifos,
//! devices when permitted, xattrs where possible, access and modification
//! times, and ownership when running as real root (otherwise, in bk's
//! user namespace too, files belong to the user, as with BuildKit's
//! client-side receiver). Sockets are
//! skipped.
//!
//! How the output lands, and what a failure leaves:
//!
//! - `dest` does not exist: the tree is copied into a temporary sibling
//!   `dest.<rand>.tmp` (parent directories of `dest` are created first),
//!   which is renamed to `dest` once complete. On failure the temporary
//!   directory is removed and `dest` does not exist; only parent
//!   directories created for it remain.
//! - `dest` is a directory: as BuildKit, the tree is merged into it.
//!   It is first copied completely into a hidden temporary directory
//!   *inside* `dest` (inside, so every later rename stays on `dest`'s
//!   file system even when `dest` is a mount point), then moved in entry
//!   by entry: an entry absent from `dest` is renamed into place with its
//!   whole subtree; a directory present on both sides is merged the same
//!   way; anything else present in `dest` is replaced (a non-directory
//!   over a non-directory by one atomic rename; a directory and a
//!   non-directory replacing each other by removing the old one first).
//!   Entries of `dest` absent from the tree are kept. A failure while
//!   copying leaves `dest` untouched. A failure while moving leaves the
//!   entries moved so far in place and complete (every file lands by
//!   rename, so none is ever half-written; moved directories already
//!   carry their final metadata), the rest not written, and merged
//!   directories with their previous metadata; the temporary directory
//!   is removed either way.
//! - `dest` exists but is not a directory: an error; nothing is written.
//!
//! Only a crash (not an error) can leave a temporary directory behind.
//!
//! Imports `crate::snapshot::fsx` and `crate::util` only.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, DirBuilder, FileType, Metadata};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{ExportError, ExportStats};
use crate::snapshot::fsx::{self, MetaOpts};
use crate::util::fs::{self as ufs, FsError};

/// One tree to export: into the output's root, or into a new top-level
/// directory `sub` of it (for per-platform outputs).
pub(crate) struct Root<'a> {
    pub sub: Option<OsString>,
    pub dir: &'a Path,
}

/// Copies the tree at `snapshot_dir` into `dest` (see the module
/// documentation for how it lands and what a failure leaves).
pub fn export(snapshot_dir: &Path, dest: &Path) -> Result<ExportStats, ExportError> {
    export_roots(
        &[Root {
            sub: None,
            dir: snapshot_dir,
        }],
        dest,
    )
}

/// Exports several trees into one output.
pub(crate) fn export_roots(roots: &[Root<'_>], dest: &Path) -> Result<ExportStats, ExportError> {
    let prepare = |source| ExportError::Prepare {
        dest: dest.to_path_buf(),
        source,
    };
    // `dest` itself is followed if it is a symlink: the user named it.
    match fs::metadata(dest) {
        Ok(meta) if meta.is_dir() => merge_export(roots, dest),
        Ok(_) => Err(prepare(FsError::new(
            "use as output directory",
            dest,
            io::Error::from(ErrorKind::NotADirectory),
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound => fresh_export(roots, dest),
        Err(e) => Err(prepare(FsError::new("inspect", dest, e))),
    }
}

/// A temporary directory removed (with its contents) on drop unless the
/// export moved it into place.
struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Staging {
    fn create(path: PathBuf) -> Result<Staging, FsError> {
        DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|e| FsError::new("create directory", &path, e))?;
        Ok(Staging { path, armed: true })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the export's own error is the one to report.
            let _ = fsx::remove_tree(&self.path);
        }
    }
}

fn fresh_export(roots: &[Root<'_>], dest: &Path) -> Result<ExportStats, ExportError> {
    let prepare = |source| ExportError::Prepare {
        dest: dest.to_path_buf(),
        source,
    };
    let name = dest.file_name().ok_or_else(|| {
        prepare(FsError::new(
            "name output directory",
            dest,
            io::Error::from(ErrorKind::InvalidInput),
        ))
    })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    ufs::create_dir_all(parent).map_err(prepare)?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".{}.tmp", fsx::random_hex(8)));
    let mut staging = Staging::create(parent.join(tmp_name)).map_err(prepare)?;

    let copy = |source| ExportError::Copy {
        dest: dest.to_path_buf(),
        source,
    };
    let staged = stage(roots, &staging.path).map_err(copy)?;
    for (rel, meta) in &staged.dirs {
        meta.apply(&staging.path.join(rel)).map_err(copy)?;
    }
    fs::rename(&staging.path, dest).map_err(|e| ExportError::Move {
        dest: dest.to_path_buf(),
        source: FsError::new("rename into place", dest, e),
    })?;
    staging.armed = false;
    Ok(staged.stats)
}

fn merge_export(roots: &[Root<'_>], dest: &Path) -> Result<ExportStats, ExportError> {
    let staging = Staging::create(dest.join(format!(".bk-export-{}.tmp", fsx::random_hex(8))))
        .map_err(|source| ExportError::Prepare {
            dest: dest.to_path_buf(),
            source,
        })?;
    let staged = stage(roots, &staging.path).map_err(|source| ExportError::Copy {
        dest: dest.to_path_buf(),
        source,
    })?;
    merge(&staging.path, dest, &staged.dirs).map_err(|source| ExportError::Move {
        dest: dest.to_path_buf(),
        source,
    })?;
    Ok(staged.stats)
}

/// The metadata a directory gets once everything inside it is in place
/// (creating entries changes a directory's mtime, and its final mode may
/// forbid creating or moving entries).
enum DirMeta {
    /// The source directory's metadata.
    Copy { src: PathBuf, meta: Metadata },
    /// A per-platform directory: mode 0755, mtime zero.
    Platform,
}

impl DirMeta {
    fn apply(&self, dst: &Path) -> Result<(), FsError> {
        match self {
            DirMeta::Copy { src, meta } => fsx::apply_metadata(src, dst, meta, meta_opts())
                .map(drop)
                .map_err(|e| FsError::new("set metadata of", dst, e)),
            DirMeta::Platform => {
                fs::set_permissions(dst, fs::Permissions::from_mode(0o755))
                    .map_err(|e| FsError::new("set mode of", dst, e))?;
                let zero = filetime::FileTime::zero();
                filetime::set_symlink_file_times(dst, zero, zero)
                    .map_err(|e| FsError::new("set times of", dst, e))
            }
        }
    }
}

/// Ownership is only carried over by real root: anyone else cannot give
/// files away, and their output is theirs anyway. Root of bk's user
/// namespace is the invoking user outside it, so its output belongs to
/// that user too (container ids would land as subordinate ids nobody
/// can clean up without entering the namespace).
fn meta_opts() -> MetaOpts {
    MetaOpts {
        owner: nix::unistd::geteuid().is_root() && !in_user_namespace(),
        xattrs: true,
        strict: false,
    }
}

/// Whether this process runs in a user namespace other than the
/// initial one (whose uid map is the identity over every id).
fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|map| map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}

/// A staged copy: its counts and its directories' pending metadata, by
/// path relative to the staging root (a `BTreeMap`, so a directory's
/// descendants follow it in order).
struct Staged {
    stats: ExportStats,
    dirs: BTreeMap<PathBuf, DirMeta>,
}

/// A non-directory the walk found, to be placed in the staging tree.
struct Job {
    src: PathBuf,
    dst: PathBuf,
    ft: FileType,
    /// Index of its root: hard links are only kept within one root, so
    /// that two platforms' trees never share an inode.
    root: usize,
}

/// What [`place`] did with one job.
enum Placed {
    /// Copied, with this many content bytes.
    Copied(u64),
    /// A node this user cannot create (a device, without privilege).
    Skipped,
    /// One of several names of its inode: left for the serial pass, which
    /// copies the first name and hard-links the others to it.
    Deferred,
}

/// Copies every root into `staging`; directory metadata is left pending.
///
/// Three passes, as `fileop`'s copy does: directories serially in walk
/// order (a child needs its parent); then every non-directory in
/// parallel, since each is a new file in an already created directory
/// and, for many small files, creating inodes is the cost; then, serially
/// and in walk order, the nodes with several names, so that the first
/// name seen is copied and the others become links to that copy exactly
/// as a serial walk would make them. Nothing lands outside `staging`, so
/// a failure in any pass still leaves no partial output.
fn stage(roots: &[Root<'_>], staging: &Path) -> Result<Staged, FsError> {
    let mut staged = Staged {
        stats: ExportStats::default(),
        dirs: BTreeMap::new(),
    };
    let opts = meta_opts();
    let mut jobs = Vec::new();
    for (index, root) in roots.iter().enumerate() {
        let base = match &root.sub {
            Some(sub) => {
                let rel = PathBuf::from(sub);
                make_dir(&staging.join(&rel))?;
                staged.dirs.insert(rel.clone(), DirMeta::Platform);
                staged.stats.entries += 1;
                rel
            }
            None => PathBuf::new(),
        };
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let src_dir = root.dir.join(&rel);
            let entries = fsx::read_dir_sorted(&src_dir)
                .map_err(|e| FsError::new("read directory", &src_dir, e))?;
            for (name, ft) in entries {
                let rel = rel.join(&name);
                let src = root.dir.join(&rel);
                let out_rel = base.join(&rel);
                let dst = staging.join(&out_rel);
                if ft.is_dir() {
                    // Trees merged into one root share their
                    // directories; the first tree's metadata wins.
                    if let std::collections::btree_map::Entry::Vacant(slot) =
                        staged.dirs.entry(out_rel)
                    {
                        let meta = fs::symlink_metadata(&src)
                            .map_err(|e| FsError::new("inspect", &src, e))?;
                        make_dir(&dst)?;
                        slot.insert(DirMeta::Copy { src, meta });
                        staged.stats.entries += 1;
                    }
                    stack.push(rel);
                    continue;
                }
                if ft.is_socket() {
                    staged.stats.skipped += 1;
                    continue;
                }
                jobs.push(Job {
                    src,
                    dst,
                    ft,
                    root: index,
                });
            }
        }
    }

    let placed = jobs
        .par_iter()
        .map(|job| place(job, opts))
        .collect::<Result<Vec<_>, _>>()?;

    let mut links: HashMap<(usize, u64, u64), PathBuf> = HashMap::new();
    for (job, placed) in jobs.iter().zip(placed) {
        match placed {
            Placed::Copied(bytes) => {
                staged.stats.entries += 1;
                staged.stats.bytes += bytes;
            }
            Placed::Skipped => staged.stats.skipped += 1,
            Placed::Deferred => place_linked(job, opts, &mut links, &mut staged.stats)?,
        }
    }
    Ok(staged)
}

/// Places one non-directory with a single name, or defers it.
fn place(job: &Job, opts: MetaOpts) -> Result<Placed, FsError> {
    let Job { src, dst, ft, .. } = job;
    if ft.is_file() {
        // A regular file is read through the descriptor its metadata
        // comes from, and the copy's metadata set through its own: no
        // call looks either path up again. O_NOFOLLOW: a name swapped for
        // a symlink is refused rather than read through; O_NONBLOCK: one
        // swapped for a fifo does not hang the export (no effect on
        // regular files).
        let mut from = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(src)
            .map_err(|e| FsError::new("copy", src, e))?;
        let meta = from
            .metadata()
            .map_err(|e| FsError::new("inspect", src, e))?;
        if meta.nlink() > 1 || !meta.is_file() {
            return Ok(Placed::Deferred);
        }
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .map_err(|e| FsError::new("copy", src, e))?;
        ufs::copy_data(&mut from, &mut to, meta.len()).map_err(|e| FsError::new("copy", src, e))?;
        fsx::apply_metadata_fd(&from, &to, &meta, opts)
            .map_err(|e| FsError::new("set metadata of", dst, e))?;
        return Ok(Placed::Copied(meta.len()));
    }
    let meta = fs::symlink_metadata(src).map_err(|e| FsError::new("inspect", src, e))?;
    if meta.nlink() > 1 {
        return Ok(Placed::Deferred);
    }
    match fsx::copy_node(src, dst, &meta) {
        Ok(()) => {}
        Err(e) if !ft.is_symlink() && fsx::is_not_permitted(&e) => return Ok(Placed::Skipped),
        Err(e) => return Err(FsError::new("copy", src, e)),
    }
    fsx::apply_metadata(src, dst, &meta, opts)
        .map_err(|e| FsError::new("set metadata of", dst, e))?;
    Ok(Placed::Copied(0))
}

/// Places a node that has (or had, when [`place`] looked) several names:
/// a hard link to the copy of an earlier name in the same root, or else
/// a copy that later names will link to.
fn place_linked(
    job: &Job,
    opts: MetaOpts,
    links: &mut HashMap<(usize, u64, u64), PathBuf>,
    stats: &mut ExportStats,
) -> Result<(), FsError> {
    let Job { src, dst, ft, root } = job;
    let meta = fs::symlink_metadata(src).map_err(|e| FsError::new("inspect", src, e))?;
    let key = (*root, meta.dev(), meta.ino());
    if meta.nlink() > 1 {
        if let Some(first) = links.get(&key) {
            fs::hard_link(first, dst).map_err(|e| FsError::new("hard-link", dst, e))?;
            stats.entries += 1;
            return Ok(());
        }
    }
    match fsx::copy_node(src, dst, &meta) {
        Ok(()) => {}
        Err(e) if !ft.is_file() && !ft.is_symlink() && fsx::is_not_permitted(&e) => {
            stats.skipped += 1;
            return Ok(());
        }
        Err(e) => return Err(FsError::new("copy", src, e)),
    }
    fsx::apply_metadata(src, dst, &meta, opts)
        .map_err(|e| FsError::new("set metadata of", dst, e))?;
    if ft.is_file() {
        stats.bytes += meta.len();
    }
    if meta.nlink() > 1 {
        links.insert(key, dst.clone());
    }
    stats.entries += 1;
    Ok(())
}

/// A staged directory stays owner-only until its metadata is applied.
fn make_dir(path: &Path) -> Result<(), FsError> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| FsError::new("create directory", path, e))
}

/// Moves the staged tree into `dest` entry by entry, applying pending
/// directory metadata as each directory lands.
fn merge(staging: &Path, dest: &Path, dirs: &BTreeMap<PathBuf, DirMeta>) -> Result<(), FsError> {
    let mut merged = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let from_dir = staging.join(&rel_dir);
        let entries = fsx::read_dir_sorted(&from_dir)
            .map_err(|e| FsError::new("read directory", &from_dir, e))?;
        for (name, ft) in entries {
            let rel = rel_dir.join(&name);
            let from = staging.join(&rel);
            let to = dest.join(&rel);
            let existing = match fs::symlink_metadata(&to) {
                Ok(m) => Some(m),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(FsError::new("inspect", &to, e)),
            };
            match existing {
                Some(old) if old.is_dir() && ft.is_dir() => {
                    stack.push(rel.clone());
                    merged.push(rel);
                    continue;
                }
                Some(old) if old.is_dir() => {
                    fsx::remove_tree(&to).map_err(|e| FsError::new("remove", &to, e))?
                }
                Some(_) if ft.is_dir() => {
                    fs::remove_file(&to).map_err(|e| FsError::new("remove", &to, e))?
                }
                // A non-directory over a non-directory: the rename below
                // replaces it atomically.
                _ => {}
            }
            fs::rename(&from, &to).map_err(|e| FsError::new("rename into place", &to, e))?;
            if ft.is_dir() {
                apply_subtree(dirs, &rel, dest)?;
            }
        }
    }
    for rel in merged.iter().rev() {
        if let Some(meta) = dirs.get(rel) {
            meta.apply(&dest.join(rel))?;
        }
    }
    Ok(())
}

/// Applies the pending metadata of `rel` and every directory below it,
/// deepest first, now that they live under `dest`.
fn apply_subtree(
    dirs: &BTreeMap<PathBuf, DirMeta>,
    rel: &Path,
    dest: &Path,
) -> Result<(), FsError> {
    let subtree: Vec<_> = dirs
        .range(rel.to_path_buf()..)
        .take_while(|(p, _)| p.starts_with(rel))
        .collect();
    for (p, meta) in subtree.into_iter().rev() {
        meta.apply(&dest.join(p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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

    fn mtime(p: &Path) -> i64 {
        fs::symlink_metadata(p).unwrap().mtime()
    }

    /// A source tree as a snapshot would hold it.
    fn source(root: &Path) -> PathBuf {
        let src = root.join("snap");
        fs::create_dir_all(src.join("app/empty")).unwrap();
        fs::create_dir_all(src.join("ro")).unwrap();
        fs::write(src.join("app/run"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("app/run"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(src.join("ro/data"), b"data").unwrap();
        fs::hard_link(src.join("app/run"), src.join("app/run2")).unwrap();
        symlink("/etc/shadow", src.join("app/abs")).unwrap();
        symlink("missing", src.join("app/dangling")).unwrap();
        nix::unistd::mkfifo(
            &src.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let old = filetime::FileTime::from_unix_time(1_500_000_000, 0);
        for p in ["app/run", "ro/data", "app/empty", "app", "ro"] {
            filetime::set_file_mtime(src.join(p), old).unwrap();
        }
        filetime::set_symlink_file_times(src.join("app/abs"), old, old).unwrap();
        fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        src
    }

    fn check_copy(src: &Path, out: &Path) {
        assert_eq!(fs::read(out.join("app/run")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(mode(&out.join("app/run")), 0o750);
        assert_eq!(mode(&out.join("ro")), 0o555);
        for p in ["app/run", "ro/data", "app/empty", "app", "ro", "app/abs"] {
            assert_eq!(mtime(&out.join(p)), 1_500_000_000, "mtime of {p}");
        }
        assert_eq!(
            fs::read_link(out.join("app/abs")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert_eq!(
            fs::read_link(out.join("app/dangling")).unwrap(),
            Path::new("missing")
        );
        assert!(fs::symlink_metadata(out.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert!(out.join("app/empty").is_dir());
        // Copies, not links to the snapshot; the tree's own hardlink kept.
        let (s, o, o2) = (
            fs::metadata(src.join("app/run")).unwrap(),
            fs::metadata(out.join("app/run")).unwrap(),
            fs::metadata(out.join("app/run2")).unwrap(),
        );
        assert_ne!(s.ino(), o.ino());
        assert_eq!(o.ino(), o2.ino());
        if nix::unistd::geteuid().is_root() {
            assert_eq!((o.uid(), o.gid()), (s.uid(), s.gid()));
        }
    }

    #[test]
    fn exports_into_a_new_directory() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path());
        let out = dir.path().join("a/b/out");
        let stats = export(&src, &out).unwrap();
        assert_eq!(
            stats,
            ExportStats {
                entries: 9,
                bytes: 14,
                skipped: 0
            }
        );
        check_copy(&src, &out);
        assert_eq!(names(&dir.path().join("a/b")), ["out"]);
        // Editing the output leaves the snapshot alone.
        fs::write(out.join("app/run"), b"edited").unwrap();
        assert_eq!(fs::read(src.join("app/run")).unwrap(), b"#!/bin/sh\n");
    }

    #[test]
    fn merges_into_an_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path());
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("app")).unwrap();
        fs::create_dir_all(out.join("fifo/was-a-dir")).unwrap();
        fs::write(out.join("keep.txt"), b"user file").unwrap();
        fs::write(out.join("app/run"), b"old run").unwrap();
        fs::write(out.join("ro"), b"a file where the tree has a dir").unwrap();
        symlink("/", out.join("app/empty")).unwrap();
        fs::set_permissions(out.join("app"), fs::Permissions::from_mode(0o700)).unwrap();

        export(&src, &out).unwrap();
        check_copy(&src, &out);
        assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"user file");
        // The merged directory took the tree's metadata.
        assert_eq!(mode(&out.join("app")), 0o755 & mode(&src.join("app")));
        assert!(fs::symlink_metadata(out.join("app/empty"))
            .unwrap()
            .is_dir());
        assert_eq!(names(&out), ["app", "fifo", "keep.txt", "ro"]);
    }

    #[test]
    fn a_file_in_the_way_fails_without_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path());
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let before = names(dir.path());

        let err = export(&src, &blocker.join("out")).unwrap_err();
        assert!(matches!(err, ExportError::Prepare { .. }), "{err:?}");
        let err = export(&src, &blocker).unwrap_err();
        assert!(matches!(err, ExportError::Prepare { .. }), "{err:?}");
        assert_eq!(names(dir.path()), before);
        assert_eq!(fs::read(&blocker).unwrap(), b"x");
    }

    #[test]
    fn a_failed_copy_leaves_no_partial_output() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path());
        // A source that vanishes mid-way stands for any read failure.
        let gone = dir.path().join("gone");
        let out = dir.path().join("out");
        let err = export(&gone, &out).unwrap_err();
        assert!(matches!(err, ExportError::Copy { .. }), "{err:?}");
        assert!(!out.exists());

        // Merging: a failing copy leaves the existing directory as it was.
        fs::create_dir(&out).unwrap();
        fs::write(out.join("keep"), b"k").unwrap();
        let err = export(&gone, &out).unwrap_err();
        assert!(matches!(err, ExportError::Copy { .. }), "{err:?}");
        assert_eq!(names(&out), ["keep"]);
        assert_eq!(names(dir.path()), ["out", "snap"]);
        drop(src);
    }

    #[test]
    fn a_failed_move_leaves_complete_entries_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path());
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("ro")).unwrap();
        // Entries cannot be renamed into out/ro: as root make it
        // immutable, otherwise read-only.
        let root = nix::unistd::geteuid().is_root();
        if root {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(out.join("ro"))
                .status()
                .expect("chattr runs")
                .success();
            assert!(ok, "chattr +i failed on the test file system");
        } else {
            fs::set_permissions(out.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        }
        let result = export(&src, &out);
        if root {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(out.join("ro"))
                .status();
        }
        let err = result.unwrap_err();
        assert!(matches!(err, ExportError::Move { .. }), "{err:?}");
        // Entries before `ro` (in name order) landed whole, with their
        // final metadata; nothing of `ro` did; no temporary remains.
        assert_eq!(names(&out), ["app", "fifo", "ro"]);
        assert_eq!(fs::read(out.join("app/run")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(mode(&out.join("app")), mode(&src.join("app")));
        assert_eq!(mtime(&out.join("app")), 1_500_000_000);
        assert!(names(&out.join("ro")).is_empty());
    }

    #[test]
    fn many_files_keep_content_metadata_and_links() {
        // Enough files that the parallel pass splits them between threads,
        // with hard links whose names lie in different directories.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("snap");
        let old = filetime::FileTime::from_unix_time(1_500_000_000, 123);
        for d in 0..8 {
            fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
            for f in 0..50 {
                let p = src.join(format!("d{d}/f{f}"));
                fs::write(&p, format!("{d}/{f}").repeat(f + 1)).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600 + f as u32 % 8)).unwrap();
                filetime::set_file_mtime(&p, old).unwrap();
            }
        }
        fs::write(src.join("big"), vec![7u8; 200_000]).unwrap();
        for d in 1..8 {
            fs::hard_link(src.join("d0/f3"), src.join(format!("d{d}/link"))).unwrap();
        }
        let out = dir.path().join("out");
        let stats = export(&src, &out).unwrap();
        assert_eq!(stats.entries, 1 + 8 + 8 * 50 + 7);
        let bytes: u64 = (0..8u64)
            .flat_map(|d| (0..50u64).map(move |f| (d, f)))
            .map(|(d, f)| format!("{d}/{f}").len() as u64 * (f + 1))
            .sum();
        // Linked names add no bytes: their content was counted once.
        assert_eq!(stats.bytes, bytes + 200_000);
        for d in 0..8 {
            for f in 0..50 {
                let rel = format!("d{d}/f{f}");
                assert_eq!(
                    fs::read(out.join(&rel)).unwrap(),
                    fs::read(src.join(&rel)).unwrap()
                );
                assert_eq!(mode(&out.join(&rel)), 0o600 + f as u32 % 8, "{rel}");
                let m = fs::metadata(out.join(&rel)).unwrap();
                assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 123), "{rel}");
            }
        }
        assert_eq!(fs::read(out.join("big")).unwrap(), vec![7u8; 200_000]);
        // One new inode for all eight names, none shared with the source.
        let first = fs::metadata(out.join("d0/f3")).unwrap();
        assert_eq!(first.nlink(), 8);
        for d in 1..8 {
            assert_eq!(
                fs::metadata(out.join(format!("d{d}/link"))).unwrap().ino(),
                first.ino()
            );
        }
        assert_ne!(first.ino(), fs::metadata(src.join("d0/f3")).unwrap().ino());
    }
}
