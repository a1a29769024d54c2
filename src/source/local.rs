//! The local build context, read in place: no copy, no staging directory.
//!
//! [`LocalContext::walk`] lists the entries BuildKit's context transfer
//! would send for one operation — fsutil's filtered walk with the
//! `.dockerignore` patterns as excludes, the operation's include patterns
//! and follow paths, and its `--exclude` patterns — and
//! [`LocalContext::checksum`] digests exactly those entries by content and
//! metadata, never by modification time, so that the cache key of a `COPY`
//! changes when and only when what it copies changes.
//!
//! What goes into the digest, per entry in path order: the relative path,
//! the file type, the permission bits (with setuid, setgid and sticky; a
//! symlink's are always 0777, as in BuildKit), the symlink target, the
//! device number of a device node, and the SHA-256 of a regular file's
//! contents. Owner and group are left out on purpose: BuildKit's client
//! resets every context file to uid/gid 0 before the transfer
//! (`resetUIDAndGID` in `client/solve.go`), so in BuildKit's content hash
//! (`cache/contenthash`) they are always 0 and ownership never changes a
//! context checksum; it must not here either. Modification time is left out
//! as BuildKit's tarsum-v1 headers leave it out. Extended attributes, which
//! BuildKit does hash, are not read yet.
//!
//! Hashing file contents is the expensive part, so content digests are
//! remembered in the cache database under each file's absolute path and
//! `lstat` stamp (size, mtime, ctime, inode, device, mode); a file whose
//! stamp is unchanged is not read again. Uses `cache`, the frontend's
//! ignore file and pattern matcher, and `util`; must not import the
//! solver, snapshotter, executor or CLI.

use std::ffi::OsString;
use std::fs::{Metadata, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::follow::{dedupe_paths, follow_links};
use super::SourceError;
use crate::cache::{CacheDb, Digest, FileStamp};
use crate::pattern::{trim_space, MatchInfo, Pattern, PatternError, PatternMatcher};
use crate::source::dockerignore::Dockerignore;
use crate::util::fs::FsError;

/// Bumped whenever the digest's input changes, so that old cache keys can
/// never collide with new ones.
const DIGEST_DOMAIN: &[u8] = b"bk/local-context/v1\0";

/// How long after its last change a file's content digest may be
/// remembered. Timestamps are coarse (a kernel tick; two seconds on FAT),
/// so a file written again within the same tick as the write we hashed
/// keeps its stamp; remembering the digest of a file that changed this
/// recently could therefore pin stale contents. Git's "racily clean" rule,
/// with a margin that covers the coarsest common file system.
const SETTLE_WINDOW: Duration = Duration::from_secs(2);

/// fsutil's characters that make a pattern more than a plain path prefix.
const PATTERN_CHARS: &[u8] = b"*[]?^\\";

/// What kind of file an entry is. Symlinks are never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl EntryKind {
    fn of(meta: &Metadata) -> EntryKind {
        let t = meta.file_type();
        if t.is_dir() {
            EntryKind::Dir
        } else if t.is_symlink() {
            EntryKind::Symlink
        } else if t.is_fifo() {
            EntryKind::Fifo
        } else if t.is_socket() {
            EntryKind::Socket
        } else if t.is_char_device() {
            EntryKind::CharDevice
        } else if t.is_block_device() {
            EntryKind::BlockDevice
        } else {
            EntryKind::File
        }
    }

    /// The digest's type tag: tar's type flags where tar has one.
    fn tag(self) -> u8 {
        match self {
            EntryKind::File => b'0',
            EntryKind::Symlink => b'2',
            EntryKind::CharDevice => b'3',
            EntryKind::BlockDevice => b'4',
            EntryKind::Dir => b'5',
            EntryKind::Fifo => b'6',
            EntryKind::Socket => b's',
        }
    }
}

/// One file, directory or other node of the context as the walk saw it.
/// Only [`LocalContext::walk`] makes entries, so a checksum is always over
/// paths that exist inside the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    path: PathBuf,
    kind: EntryKind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i64,
    link_target: Option<PathBuf>,
    rdev: u64,
    stamp: FileStamp,
}

impl Entry {
    fn new(path: PathBuf, meta: &Metadata, link_target: Option<PathBuf>) -> Entry {
        Entry {
            path,
            kind: EntryKind::of(meta),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            link_target,
            rdev: meta.rdev(),
            stamp: stamp_of(meta),
        }
    }

    /// Relative to the context root, `/`-separated, no leading `./`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub fn mode(&self) -> u32 {
        self.mode
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Modification time in nanoseconds since the Unix epoch.
    pub fn mtime_ns(&self) -> i64 {
        self.mtime_ns
    }

    /// What a symlink points to, as stored (never resolved).
    pub fn link_target(&self) -> Option<&Path> {
        self.link_target.as_deref()
    }

    /// The device number of a character or block device node.
    pub fn rdev(&self) -> u64 {
        self.rdev
    }

    fn path_bytes(&self) -> &[u8] {
        self.path.as_os_str().as_bytes()
    }
}

/// Work counters of [`LocalContext::checksum`], summed over every call on
/// one context: how many files were read and hashed, and how many content
/// digests came from the cache database instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumStats {
    pub hashed_files: u64,
    pub cache_hits: u64,
}

/// A build-context directory and the ignore file that applies to it.
#[derive(Debug)]
pub struct LocalContext {
    root: PathBuf,
    dockerignore: Dockerignore,
    settle_window: Duration,
    hashed_files: AtomicU64,
    cache_hits: AtomicU64,
}

impl LocalContext {
    /// Opens the context at `dir`. The path is resolved through symlinks
    /// once, as BuildKit's client does, so the absolute paths the checksum
    /// cache is keyed on do not depend on how the directory was named.
    pub fn open(dir: &Path, dockerignore: Dockerignore) -> Result<LocalContext, SourceError> {
        let root = std::fs::canonicalize(dir)
            .map_err(|e| SourceError::OpenContext(FsError::new("resolve", dir, e)))?;
        let meta = std::fs::metadata(&root)
            .map_err(|e| SourceError::OpenContext(FsError::new("inspect", &root, e)))?;
        if !meta.is_dir() {
            return Err(SourceError::ContextNotDirectory { path: root });
        }
        Ok(LocalContext {
            root,
            dockerignore,
            settle_window: SETTLE_WINDOW,
            hashed_files: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        })
    }

    /// Overrides how long a file must be unchanged before its digest is
    /// remembered (two seconds by default; a file changed more recently
    /// could change again within the same timestamp tick). Only for
    /// callers that know nothing writes the context meanwhile — tests,
    /// which cannot backdate a change time.
    pub fn with_settle_window(mut self, window: Duration) -> LocalContext {
        self.settle_window = window;
        self
    }

    /// The resolved context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dockerignore(&self) -> &Dockerignore {
        &self.dockerignore
    }

    pub fn stats(&self) -> ChecksumStats {
        ChecksumStats {
            hashed_files: self.hashed_files.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// The entries a context transfer with these filters would send, in
    /// walk order (each directory's names sorted by bytes, parents before
    /// children), with fsutil's semantics:
    ///
    /// - a path is sent when it passes every filter: it matches an include
    ///   pattern (if there are any), and neither the `.dockerignore`
    ///   patterns nor `exclude_patterns` exclude it; each pattern list has
    ///   Docker's `!` exceptions and is matched with the parent's results;
    /// - a directory that fails a filter is still walked when something
    ///   below it could pass (an include pattern names a path inside it,
    ///   an exception could re-include something in it, or a pattern has
    ///   wildcards), and is then sent just before the first thing inside it
    ///   that is, so the receiver can create it;
    /// - `follow_paths` are resolved through symlinks and added to the
    ///   include patterns;
    /// - symlinks are listed, never followed; the root itself is not
    ///   listed.
    ///
    /// The two exclude lists are matched separately because they are in
    /// BuildKit: `.dockerignore` filters the transfer, `--exclude` the copy,
    /// so an exception in one cannot re-include what the other excluded.
    pub fn walk(
        &self,
        include_patterns: &[String],
        exclude_patterns: &[String],
        follow_paths: &[String],
    ) -> Result<Vec<Entry>, SourceError> {
        let filter = Filter::new(
            &self.root,
            &self.dockerignore,
            include_patterns,
            exclude_patterns,
            follow_paths,
        )?;
        let root_names = read_dir_sorted(&self.root)
            .map_err(|e| SourceError::ReadDir(FsError::new("read directory", &self.root, e)))?;
        let mut stack = vec![Frame {
            abs: self.root.clone(),
            rel: Vec::new(),
            infos: Infos::default(),
            pending: None,
            names: root_names,
            next: 0,
        }];
        let mut out = Vec::new();
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.names.get(top.next).cloned() else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let abs = top.abs.join(&name);
            let mut rel = top.rel.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());

            let meta = match std::fs::symlink_metadata(&abs) {
                Ok(meta) => meta,
                // Deleted since the directory was read: it is not there to
                // send (fsutil skips it the same way).
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(SourceError::Stat(FsError::new("inspect", &abs, e))),
            };
            let is_dir = meta.is_dir();
            let Some((hidden, infos)) = filter.judge(&rel, is_dir, &top.infos) else {
                continue;
            };
            let link_target = if meta.file_type().is_symlink() {
                match std::fs::read_link(&abs) {
                    Ok(target) => Some(target),
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(SourceError::ReadLink(FsError::new("read link", &abs, e)))
                    }
                }
            } else {
                None
            };
            let entry = Entry::new(
                PathBuf::from(OsString::from_vec(rel.clone())),
                &meta,
                link_target,
            );

            if !is_dir {
                if !hidden {
                    emit(&mut stack, &mut out, entry);
                }
                continue;
            }
            let names = match read_dir_sorted(&abs) {
                Ok(names) => names,
                // fsutil forgives an unreadable directory only when it was
                // walked for its children's sake, not sent itself.
                Err(e) if hidden && e.kind() == ErrorKind::PermissionDenied => Vec::new(),
                Err(e) => {
                    return Err(SourceError::ReadDir(FsError::new(
                        "read directory",
                        &abs,
                        e,
                    )))
                }
            };
            let pending = if hidden {
                Some(entry)
            } else {
                emit(&mut stack, &mut out, entry);
                None
            };
            stack.push(Frame {
                abs,
                rel,
                infos,
                pending,
                names,
                next: 0,
            });
        }
        Ok(out)
    }

    /// The content digest of `entries` (see the module documentation for
    /// what it covers). Order and duplicates in `entries` do not matter.
    ///
    /// Regular files are hashed in parallel unless the cache database has
    /// a digest for the file's path and unchanged stamp. A file is checked
    /// against the stamp the walk recorded before and after it is read; if
    /// it changed, this fails with [`SourceError::FileChanged`] rather than
    /// mix two versions into one digest.
    pub fn checksum(&self, entries: &[Entry], db: &CacheDb) -> Result<Digest, SourceError> {
        let started = now_ns();
        let mut sorted: Vec<&Entry> = entries.iter().collect();
        sorted.sort_by(|a, b| a.path_bytes().cmp(b.path_bytes()));
        sorted.dedup_by(|a, b| a.path == b.path);

        let files: Vec<(PathBuf, &Entry)> = sorted
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| (self.root.join(&e.path), *e))
            .collect();
        let queries: Vec<(&Path, FileStamp)> = files
            .iter()
            .map(|(abs, e)| (abs.as_path(), e.stamp))
            .collect();
        let mut contents = db
            .lookup_file_checksums(&queries)
            .map_err(SourceError::LookupChecksums)?;

        let misses: Vec<usize> = (0..files.len())
            .filter(|&i| contents[i].is_none())
            .collect();
        let hashed: Vec<Digest> = misses
            .par_iter()
            .map(|&i| hash_file(&files[i].0, files[i].1))
            .collect::<Result<_, _>>()?;
        self.hashed_files
            .fetch_add(misses.len() as u64, Ordering::Relaxed);
        self.cache_hits
            .fetch_add((files.len() - misses.len()) as u64, Ordering::Relaxed);

        let window = i64::try_from(self.settle_window.as_nanos()).unwrap_or(i64::MAX);
        let settled = |stamp: &FileStamp| {
            stamp.mtime_ns.saturating_add(window) < started
                && stamp.ctime_ns.saturating_add(window) < started
        };
        let mut remember = Vec::new();
        for (&i, digest) in misses.iter().zip(&hashed) {
            contents[i] = Some(*digest);
            let (abs, entry) = &files[i];
            if settled(&entry.stamp) {
                remember.push((abs.as_path(), entry.stamp, *digest));
            }
        }
        db.record_file_checksums(&remember)
            .map_err(SourceError::RecordChecksums)?;

        let mut h = Sha256::new();
        h.update(DIGEST_DOMAIN);
        let mut file_contents = contents.into_iter();
        for entry in sorted {
            put_bytes(&mut h, entry.path_bytes());
            h.update([entry.kind.tag()]);
            let perm = match entry.kind {
                EntryKind::Symlink => 0o777,
                _ => entry.mode & 0o7777,
            };
            h.update(perm.to_le_bytes());
            match entry.kind {
                EntryKind::File => {
                    // `contents` has one slot per file, in this same order,
                    // and every slot was filled above.
                    let digest = file_contents.next().flatten();
                    h.update(digest.map(|d| *d.as_bytes()).unwrap_or_default());
                }
                EntryKind::Symlink => put_bytes(
                    &mut h,
                    entry
                        .link_target
                        .as_deref()
                        .map(|t| t.as_os_str().as_bytes())
                        .unwrap_or_default(),
                ),
                EntryKind::CharDevice | EntryKind::BlockDevice => {
                    h.update(entry.rdev.to_le_bytes())
                }
                EntryKind::Dir | EntryKind::Fifo | EntryKind::Socket => {}
            }
        }
        Ok(Digest::from_bytes(h.finalize().into()))
    }
}

/// A length-prefixed byte string, so that no two entry lists encode to the
/// same digest input.
fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Reads and hashes the regular file `abs` that the walk saw as `entry`.
fn hash_file(abs: &Path, entry: &Entry) -> Result<Digest, SourceError> {
    let changed = || SourceError::FileChanged {
        path: abs.to_path_buf(),
    };
    // O_NOFOLLOW: a file swapped for a symlink must not be read through
    // it. O_NONBLOCK: a file swapped for a FIFO must not hang the build;
    // it has no effect on regular files.
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(abs)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(changed())
        }
        Err(e) => return Err(SourceError::OpenFile(FsError::new("open", abs, e))),
    };
    let stat = |file: &std::fs::File| {
        file.metadata()
            .map(|m| stamp_of(&m))
            .map_err(|e| SourceError::Stat(FsError::new("inspect", abs, e)))
    };
    if stat(&file)? != entry.stamp {
        return Err(changed());
    }
    let mut hasher = Sha256::new();
    let read = io::copy(&mut file, &mut hasher)
        .map_err(|e| SourceError::ReadFile(FsError::new("read", abs, e)))?;
    if read != entry.size || stat(&file)? != entry.stamp {
        return Err(changed());
    }
    Ok(Digest::from_bytes(hasher.finalize().into()))
}

fn stamp_of(meta: &Metadata) -> FileStamp {
    FileStamp {
        size: meta.size(),
        mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
        dev: meta.dev(),
        mode: meta.mode(),
    }
}

/// Seconds and nanoseconds as one count, saturating far outside the years
/// 1678–2262 rather than wrapping.
fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// A directory's names, sorted by bytes as Go's `os.ReadDir` sorts them.
fn read_dir_sorted(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// A directory being walked.
struct Frame {
    abs: PathBuf,
    rel: Vec<u8>,
    /// Match results for the children.
    infos: Infos,
    /// The directory's own entry while it has not been sent: it failed a
    /// filter and is only sent if something inside it is.
    pending: Option<Entry>,
    names: Vec<OsString>,
    next: usize,
}

/// Sends `entry`, after any directory above it that is still pending.
fn emit(stack: &mut [Frame], out: &mut Vec<Entry>, entry: Entry) {
    out.extend(stack.iter_mut().filter_map(|f| f.pending.take()));
    out.push(entry);
}

/// A directory's per-pattern match results, one set per pattern list.
#[derive(Debug, Clone, Default)]
struct Infos {
    include: MatchInfo,
    ignore: MatchInfo,
    exclude: MatchInfo,
}

struct Includes {
    matcher: PatternMatcher,
    /// No include pattern has a wildcard before its last `/*` or `/**`, so
    /// a directory no pattern names a path in can be skipped whole.
    only_prefix: bool,
}

/// The three pattern lists of a walk.
struct Filter<'a> {
    include: Option<Includes>,
    ignore: Option<&'a PatternMatcher>,
    exclude: Option<PatternMatcher>,
}

impl<'a> Filter<'a> {
    fn new(
        root: &Path,
        dockerignore: &'a Dockerignore,
        include_patterns: &[String],
        exclude_patterns: &[String],
        follow_paths: &[String],
    ) -> Result<Filter<'a>, SourceError> {
        let mut includes: Option<Vec<Vec<u8>>> = Some(
            include_patterns
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
        );
        if !follow_paths.is_empty() {
            let targets = follow_links(root, follow_paths).map_err(SourceError::FollowPaths)?;
            if let Some(targets) = targets {
                let mut all = includes.unwrap_or_default();
                all.extend(targets);
                includes = dedupe_paths(all);
            }
        }
        let include = match includes {
            Some(list) if !list.is_empty() => {
                let matcher = compile(&list, |pattern, source| SourceError::IncludePattern {
                    pattern,
                    source,
                })?;
                let only_prefix = matcher
                    .patterns()
                    .iter()
                    .filter(|p| !p.is_exclusion())
                    .all(|p| !stem(p).iter().any(|b| PATTERN_CHARS.contains(b)));
                Some(Includes {
                    matcher,
                    only_prefix,
                })
            }
            _ => None,
        };
        let exclude = if exclude_patterns.is_empty() {
            None
        } else {
            let list: Vec<&[u8]> = exclude_patterns.iter().map(|p| p.as_bytes()).collect();
            Some(compile(&list, |pattern, source| {
                SourceError::ExcludePattern { pattern, source }
            })?)
        };
        let ignore = Some(dockerignore.matcher()).filter(|m| !m.is_empty());
        Ok(Filter {
            include,
            ignore,
            exclude,
        })
    }

    /// The verdict on one path: `None` to skip it (and, for a directory,
    /// everything in it); otherwise whether it is hidden (not sent, but a
    /// directory is walked) and the results its children start from.
    fn judge(&self, rel: &[u8], is_dir: bool, parent: &Infos) -> Option<(bool, Infos)> {
        let mut hidden = false;
        let mut infos = Infos::default();
        if let Some(inc) = &self.include {
            let (matched, info) = inc
                .matcher
                .matches_using_parent_results(rel, &parent.include);
            infos.include = info;
            if !matched {
                if is_dir && inc.only_prefix && !names_path_inside(&inc.matcher, rel) {
                    return None;
                }
                hidden = true;
            }
        }
        for (matcher, parent_info, info) in [
            (self.ignore, &parent.ignore, &mut infos.ignore),
            (self.exclude.as_ref(), &parent.exclude, &mut infos.exclude),
        ] {
            let Some(matcher) = matcher else { continue };
            let (matched, result) = matcher.matches_using_parent_results(rel, parent_info);
            *info = result;
            if matched {
                if is_dir && !matcher.must_walk(rel) {
                    return None;
                }
                hidden = true;
            }
        }
        Some((hidden, infos))
    }
}

/// Whether some include pattern names `dir` or a path inside it.
fn names_path_inside(matcher: &PatternMatcher, dir: &[u8]) -> bool {
    let mut dir_slash = dir.to_vec();
    dir_slash.push(b'/');
    matcher
        .patterns()
        .iter()
        .filter(|p| !p.is_exclusion())
        .any(|p| {
            let mut s = stem(p).to_vec();
            s.push(b'/');
            s.starts_with(&dir_slash)
        })
}

/// A pattern without one trailing `/**` or `/*`, fsutil's
/// `patternWithoutTrailingGlob`.
fn stem(pattern: &Pattern) -> &[u8] {
    let t = pattern.as_bytes();
    let t = t.strip_suffix(b"/**").unwrap_or(t);
    t.strip_suffix(b"/*").unwrap_or(t)
}

/// Compiles a pattern list as `patternmatcher.New` does (blank entries
/// skipped), naming the offending pattern on failure.
fn compile<P: AsRef<[u8]>>(
    patterns: &[P],
    error: impl Fn(String, PatternError) -> SourceError,
) -> Result<PatternMatcher, SourceError> {
    let mut parsed = Vec::with_capacity(patterns.len());
    for raw in patterns {
        let raw = raw.as_ref();
        if trim_space(raw).is_empty() {
            continue;
        }
        let pattern = Pattern::new(raw)
            .map_err(|source| error(String::from_utf8_lossy(raw).into_owned(), source))?;
        parsed.push(pattern);
    }
    Ok(PatternMatcher::from_patterns(parsed))
}
