//! BuildKit's `FileActionCopy` on plain directories: which source entries
//! a copy reads (wildcards, `--parents`, include/exclude patterns) and
//! how they land in the destination (Docker's naming rules, created
//! parents, ownership, `--chmod`, times, hard links, replacement).
//!
//! The work happens in three passes per matched source, after the
//! source side has been walked once into a plan:
//!
//! 1. directories, in walk order, serially (a child needs its parent);
//! 2. everything else in parallel — each is created exclusively under
//!    its final name when nothing is there yet (the usual case: a fresh
//!    directory), else under a temporary name in its final directory
//!    that is renamed over the old entry once complete; either way no
//!    existing destination inode is ever written, and a failure removes
//!    what it created. Only a crash can leave a half-written file, and
//!    only in the uncommitted snapshot being written, which the store
//!    discards whole. Hard links to a file already placed follow;
//! 3. directory metadata, deepest first, since creating entries inside a
//!    directory changes its mtime (and a mode without `w` would stop us).
//!
//! The passes reproduce fsutil's `copy.Copy` decisions exactly; where the
//! serial Go code interleaves them the outcome is the same because the
//! destination paths of one source's entries are all distinct.
//!
//! It imports the Dockerfile layer's pattern matcher (the language
//! BuildKit uses for include/exclude) and nothing else above `fileop`.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rayon::prelude::*;

use super::glob::{self, sorted_entries};
use super::meta;
use super::mode::ModeChange;
use super::owner::{resolve_owner, IdResolver, Ids, Owner, Privilege};
use super::root::{self, CreatedDir, NewDirs};
use super::unpack::{self, UnpackOptions};
use super::{Error, Result};
use crate::pattern::{MatchInfo, PatternMatcher};
use crate::util::chmod::Chmod;
use crate::util::fs::{copy_data, FsError};

/// One copy: BuildKit's `FileActionCopy` options as plain data. Paths are
/// slash-separated and inside their roots; `dest` is absolute (the caller
/// has applied WORKDIR) and its trailing `/` or `/.` is meaningful.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyRequest {
    /// Source path or wildcard pattern, relative to the source root.
    pub src: String,
    pub dest: String,
    /// Follow a symlink named by `src` itself (entries inside a copied
    /// directory are always copied as links).
    pub follow_symlinks: bool,
    /// A directory source copies its contents, not itself (Docker COPY).
    pub dir_copy_contents: bool,
    /// ADD: a local tar archive is extracted into `dest` instead.
    pub attempt_unpack: bool,
    /// Create missing parents of `dest`; without it `dest`'s parent must
    /// exist.
    pub create_dest_path: bool,
    pub allow_wildcard: bool,
    /// A wildcard matching nothing is not an error.
    pub allow_empty_wildcard: bool,
    /// `--chown`; `None` keeps the source's owners.
    pub chown: Option<Owner>,
    /// `--chmod`; `None` keeps the source's modes.
    pub chmod: Option<Chmod>,
    /// Only entries matching one of these (`.dockerignore` syntax, relative
    /// to the source) are copied, with the directories leading to them.
    pub include_patterns: Vec<String>,
    /// `--exclude`.
    pub exclude_patterns: Vec<String>,
    /// `--parents`: keep the source's path (below an optional `/./`
    /// pivot) under `dest`. `src` must then be passed as written, not
    /// cleaned, or the pivot is lost.
    pub parents: bool,
    /// This request is one of several sources of the same instruction, so
    /// a non-directory source needs a directory destination.
    pub several_sources: bool,
    /// Replace a destination entry of another type (a directory by a
    /// file, a symlink by a directory) instead of failing.
    pub always_replace_existing_dest: bool,
    /// Every copied entry and created directory gets this atime and mtime
    /// (`SOURCE_DATE_EPOCH`); `None` keeps the sources' times.
    pub timestamp: Option<SystemTime>,
}

impl CopyRequest {
    /// A request with LLB's defaults: every option off.
    pub fn new(src: impl Into<String>, dest: impl Into<String>) -> Self {
        CopyRequest {
            src: src.into(),
            dest: dest.into(),
            ..CopyRequest::default()
        }
    }

    /// What the Dockerfile frontend sets for COPY/ADD from the context or
    /// a stage: follow the named symlink, copy directory contents, create
    /// the destination, wildcards allowed and allowed to match nothing.
    pub fn dockerfile(src: impl Into<String>, dest: impl Into<String>) -> Self {
        CopyRequest {
            follow_symlinks: true,
            dir_copy_contents: true,
            create_dest_path: true,
            allow_wildcard: true,
            allow_empty_wildcard: true,
            ..CopyRequest::new(src, dest)
        }
    }
}

/// The request with its patterns compiled and `--parents` rewritten the
/// way the Dockerfile frontend rewrites it (source = pivot directory,
/// the rest an include pattern).
struct Prepared {
    /// `cleanPath`ed source.
    src: Vec<u8>,
    dir_copy_contents: bool,
    include: Option<PatternMatcher>,
    exclude: Option<PatternMatcher>,
    /// `--parents` without wildcards: this in-root path must exist.
    required: Option<String>,
    mode: Option<ModeChange>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn compile_patterns(which: &'static str, patterns: &[String]) -> Result<Option<PatternMatcher>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    PatternMatcher::new(patterns)
        .map(Some)
        .map_err(|source| Error::ParsePatterns { which, source })
}

impl Prepared {
    fn new(req: &CopyRequest) -> Result<Prepared> {
        let mut src = req.src.as_bytes().to_vec();
        let mut includes = req.include_patterns.clone();
        let mut required = None;
        let mut dir_copy_contents = req.dir_copy_contents;
        if req.parents {
            let (parent, pattern) = match find(&src, b"/./") {
                Some(i) => (src[..i].to_vec(), src[i + 3..].to_vec()),
                None => (b"/".to_vec(), src.clone()),
            };
            let pattern = root::clean_abs(&pattern);
            let pattern = pattern.strip_prefix(b"/").unwrap_or(&pattern).to_vec();
            if !glob::contains_wildcards(&parent) && !glob::contains_wildcards(&pattern) {
                let mut whole = parent.clone();
                whole.push(b'/');
                whole.extend_from_slice(&pattern);
                required = Some(String::from_utf8_lossy(&root::clean_abs(&whole)).into_owned());
            }
            includes.push(String::from_utf8_lossy(&pattern).into_owned());
            src = root::clean_abs(&parent);
            // The pivot is a directory whose contents (filtered) are
            // copied; the frontend always asks for that.
            dir_copy_contents = true;
        }
        Ok(Prepared {
            src: root::clean_keep_trailing(&src),
            dir_copy_contents,
            include: compile_patterns("include", &includes)?,
            exclude: compile_patterns("exclude", &req.exclude_patterns)?,
            required,
            mode: req.chmod.as_ref().map(ModeChange::compile).transpose()?,
        })
    }

    /// The in-root source paths to copy, after wildcard expansion; empty
    /// only when an empty match is allowed.
    fn matches(&self, req: &CopyRequest, src_root: &Path) -> Result<Vec<Vec<u8>>> {
        if !req.allow_wildcard {
            return Ok(vec![self.src.clone()]);
        }
        let found = glob::resolve_wildcards(src_root, &self.src, req.follow_symlinks)?;
        if found.is_empty() && !req.allow_empty_wildcard {
            return Err(Error::MatchSource {
                pattern: String::from_utf8_lossy(&self.src).into_owned(),
            });
        }
        Ok(found)
    }
}

/// A source entry the copy will read.
#[derive(Debug)]
struct Entry {
    /// Relative to the top of the source (empty for the top itself).
    rel: PathBuf,
    /// Host path.
    host: PathBuf,
    meta: Metadata,
    /// Matched the filters itself; a directory that did not but has
    /// matching entries below is still created (as fsutil does).
    included: bool,
}

/// One matched source, walked.
#[derive(Debug)]
struct Plan {
    /// The in-root path as matched, which names the destination entry.
    name: Vec<u8>,
    /// Root-relative path of the (followed) top entry.
    top_rel: PathBuf,
    /// The source itself.
    top: Entry,
    /// What is copied below it, in walk order.
    below: Vec<Entry>,
    /// An ADD source that is an archive: extracted, not walked.
    archive: bool,
}

struct Planner<'a> {
    prepared: &'a Prepared,
}

impl Planner<'_> {
    fn plan(&self, req: &CopyRequest, src_root: &Path, name: &[u8]) -> Result<Plan> {
        let shown = || String::from_utf8_lossy(name).into_owned();
        let resolved = if req.follow_symlinks {
            root::resolve(src_root, name)?
        } else {
            root::resolve_parent(src_root, name)?
        };
        let host = resolved.host(src_root);
        if req.attempt_unpack {
            // The archive test always follows the path (BuildKit resolves
            // it with RootPath regardless of follow_symlinks).
            let full = root::resolve(src_root, name)?;
            let full_host = full.host(src_root);
            if unpack::is_archive(&full_host) {
                let meta = fs::symlink_metadata(&full_host)
                    .map_err(|e| Error::ReadSource(FsError::new("inspect", &full_host, e)))?;
                return Ok(Plan {
                    name: name.to_vec(),
                    top_rel: full.rel,
                    top: Entry {
                        rel: PathBuf::new(),
                        host: full_host,
                        meta,
                        included: true,
                    },
                    below: Vec::new(),
                    archive: true,
                });
            }
        }
        let meta = match fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::FindSource { path: shown() })
            }
            Err(e) => return Err(Error::ReadSource(FsError::new("inspect", &host, e))),
        };
        let mut below = Vec::new();
        if meta.is_dir() {
            self.walk(
                &host,
                &mut Vec::new(),
                &MatchInfo::default(),
                &MatchInfo::default(),
                &mut below,
            )?;
        }
        Ok(Plan {
            name: name.to_vec(),
            top_rel: resolved.rel,
            top: Entry {
                rel: PathBuf::new(),
                host,
                meta,
                included: true,
            },
            below,
            archive: false,
        })
    }

    /// fsutil's recursive `copy`/`copyDirectory`, source side only: which
    /// entries below `dir` are copied. Returns whether any was.
    fn walk(
        &self,
        dir: &Path,
        rel: &mut Vec<u8>,
        include_parent: &MatchInfo,
        exclude_parent: &MatchInfo,
        out: &mut Vec<Entry>,
    ) -> Result<bool> {
        let include = self.prepared.include.as_ref();
        let exclude = self.prepared.exclude.as_ref();
        let exclusions = exclude.is_some_and(PatternMatcher::has_exclusions);
        let mut any = false;
        let entries = sorted_entries(dir).map_err(|e| match e {
            glob::GlobError::Walk(fs) => Error::ReadSource(fs),
            other => Error::MatchWildcard(other),
        })?;
        for (name, _) in entries {
            let mark = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_os_str().as_bytes());
            let result = (|| -> Result<bool> {
                let (mut included, include_info) = match include {
                    Some(m) => m.matches_using_parent_results(&rel[..], include_parent),
                    None => (true, MatchInfo::default()),
                };
                let (excluded, exclude_info) = match exclude {
                    Some(m) => m.matches_using_parent_results(&rel[..], exclude_parent),
                    None => (false, MatchInfo::default()),
                };
                if excluded {
                    included = false;
                }
                // Nothing below can come back: skip without even a stat.
                if !included && include.is_none() && !exclusions {
                    return Ok(false);
                }
                let host = dir.join(&name);
                let meta = fs::symlink_metadata(&host)
                    .map_err(|e| Error::ReadSource(FsError::new("inspect", &host, e)))?;
                if !meta.is_dir() {
                    if included {
                        out.push(Entry {
                            rel: root::from_bytes(rel),
                            host,
                            meta,
                            included: true,
                        });
                    }
                    return Ok(included);
                }
                if excluded && !exclusions {
                    return Ok(false);
                }
                let at = out.len();
                out.push(Entry {
                    rel: root::from_bytes(rel),
                    host: host.clone(),
                    meta,
                    included,
                });
                let below = self.walk(&host, rel, &include_info, &exclude_info, out)?;
                if !included && !below {
                    // Never materialised: nothing under it was copied.
                    out.truncate(at);
                }
                Ok(included || below)
            })();
            rel.truncate(mark);
            any |= result?;
        }
        Ok(any)
    }
}

/// What happens to a directory's metadata once its contents are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirMeta {
    /// Owner, mode, times and xattrs from the source (with --chown and
    /// --chmod applied).
    Full,
    /// Only the times: an existing (or just `mkdir -p`ed) top directory.
    TimesOnly,
    /// Only the source's raw mode: an existing directory that was not
    /// itself matched but leads to matched entries.
    SourceMode,
}

/// Everything one copy needs besides the plan.
struct Ctx<'a> {
    req: &'a CopyRequest,
    mode: Option<&'a ModeChange>,
    dest_root: &'a Path,
    owner: Option<Ids>,
    privilege: Privilege,
    /// Mode of directories created for the destination path.
    new_dirs: NewDirs,
}

/// Runs one copy. See [`CopyRequest`] for the options; the semantics are
/// BuildKit's, with one addition: a non-directory source among several
/// (or among several wildcard matches) needs a destination that is a
/// directory, instead of each overwriting the previous one.
pub fn copy(
    req: &CopyRequest,
    src_root: &Path,
    dest_root: &Path,
    ids: &dyn IdResolver,
) -> Result<()> {
    let prepared = Prepared::new(req)?;
    let privilege = Privilege::current();
    let owner = match &req.chown {
        Some(o) => {
            let resolved = resolve_owner(o, ids)?;
            privilege.check_requested(resolved)?;
            Some(resolved)
        }
        None => None,
    };
    let dest = root::clean_keep_trailing(req.dest.as_bytes());
    if !req.create_dest_path {
        let resolved = root::resolve(dest_root, &dest)?.host(dest_root);
        // The root itself has no parent to check (and its host parent is
        // none of our business).
        if resolved != dest_root {
            let parent = resolved.parent().unwrap_or(dest_root);
            if let Err(source) = fs::symlink_metadata(parent) {
                return Err(Error::CheckDestination {
                    dest: req.dest.clone(),
                    source,
                });
            }
        }
    }
    let matches = prepared.matches(req, src_root)?;
    if matches.is_empty() {
        return Ok(());
    }
    let planner = Planner {
        prepared: &prepared,
    };
    let plans = matches
        .iter()
        .map(|m| planner.plan(req, src_root, m))
        .collect::<Result<Vec<_>>>()?;
    check_required(&prepared, &plans)?;
    check_several_sources(req, &dest, dest_root, &plans)?;

    let ctx = Ctx {
        req,
        mode: prepared.mode.as_ref(),
        dest_root,
        owner,
        privilege,
        new_dirs: NewDirs {
            mode: prepared
                .mode
                .as_ref()
                .and_then(ModeChange::octal_dir_mode)
                .unwrap_or(0o755),
            owner,
            timestamp: req.timestamp,
        },
    };
    for plan in &plans {
        if plan.archive {
            ctx.unpack(plan, &dest)?;
        } else {
            ctx.copy_one(plan, &dest, prepared.dir_copy_contents)?;
        }
    }
    Ok(())
}

/// Which source files and directories [`copy`] with this request would
/// read, as paths relative to `src_root` with every symlink along them
/// resolved (so each can be `lstat`ed there safely), in walk order. A
/// directory stands for its own metadata, not its contents: the entries
/// below it that are copied are listed too. An ADD archive is one entry.
/// This is what the copy's cache key must cover.
pub fn selected_paths(req: &CopyRequest, src_root: &Path) -> Result<Vec<PathBuf>> {
    let prepared = Prepared::new(req)?;
    let matches = prepared.matches(req, src_root)?;
    let planner = Planner {
        prepared: &prepared,
    };
    let mut plans = Vec::with_capacity(matches.len());
    for m in &matches {
        plans.push(planner.plan(req, src_root, m)?);
    }
    check_required(&prepared, &plans)?;
    let mut out = Vec::new();
    for plan in &plans {
        out.push(plan.top_rel.clone());
        out.extend(plan.below.iter().map(|e| plan.top_rel.join(&e.rel)));
    }
    Ok(out)
}

/// `--parents` with a plain path: something must have been selected
/// under it (BuildKit's `RequiredPaths`).
fn check_required(prepared: &Prepared, plans: &[Plan]) -> Result<()> {
    let Some(required) = &prepared.required else {
        return Ok(());
    };
    if plans.iter().any(|p| !p.below.is_empty()) {
        return Ok(());
    }
    Err(Error::FindSource {
        path: required.clone(),
    })
}

/// Several non-directory sources into one path that is not a directory
/// would each replace the last; refuse that like Docker's documentation
/// says (BuildKit itself silently keeps the last one).
fn check_several_sources(
    req: &CopyRequest,
    dest: &[u8],
    dest_root: &Path,
    plans: &[Plan],
) -> Result<()> {
    if !req.several_sources && plans.len() < 2 {
        return Ok(());
    }
    if dest.ends_with(b"/") || dest.ends_with(b"/.") {
        return Ok(());
    }
    let resolved = root::resolve(dest_root, dest)?.host(dest_root);
    if fs::metadata(&resolved).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let any_file = plans.iter().any(|p| !p.archive && !p.top.meta.is_dir());
    if any_file {
        return Err(Error::CheckSeveralSources);
    }
    Ok(())
}

/// A non-directory to place, and where.
struct Job<'p> {
    entry: &'p Entry,
    dest: PathBuf,
    /// A hard link to this earlier destination instead of a new file.
    link_to: Option<PathBuf>,
}

/// What a non-directory's copy is made from, read before the copy is
/// created.
enum Source {
    /// A regular file, open for reading.
    File(File),
    /// A symlink's target.
    Symlink(PathBuf),
    /// A device, fifo or socket: the node type `mknod` makes and the
    /// device number.
    Node(nix::sys::stat::SFlag, u64),
}

impl Source {
    /// What creating the copy is called in errors.
    fn creating(&self) -> &'static str {
        match self {
            Source::File(_) => "create temporary file",
            Source::Symlink(_) => "create symlink",
            Source::Node(..) => "create special file",
        }
    }

    /// [`Source::creating`] under the final name.
    fn creating_new(&self) -> &'static str {
        match self {
            Source::File(_) => "create file",
            Source::Symlink(_) => "create symlink",
            Source::Node(..) => "create special file",
        }
    }

    /// Creates the copy at `at`, which must not exist: `O_EXCL`,
    /// `symlink` and `mknod` all fail with `AlreadyExists` rather than
    /// replace or write through anything. A regular file is returned
    /// open for writing, still empty.
    fn create_at(&self, at: &Path) -> io::Result<Option<File>> {
        match self {
            Source::File(_) => meta::create_new_file(at).map(Some),
            Source::Symlink(target) => symlink(target, at).map(|()| None),
            Source::Node(kind, dev) => nix::sys::stat::mknod(
                at,
                *kind,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                *dev,
            )
            .map(|()| None)
            .map_err(io::Error::from),
        }
    }
}

impl Ctx<'_> {
    fn in_root(&self, host: &Path) -> String {
        let rel = host.strip_prefix(self.dest_root).unwrap_or(host);
        format!("/{}", rel.display())
    }

    fn mkdir_all(&self, path: &Path) -> Result<Vec<CreatedDir>> {
        Ok(root::mkdir_all(self.dest_root, path, self.new_dirs)?)
    }

    /// BuildKit's `unpack`: the destination is always a directory, and
    /// the directories created for it are 0755 whatever `--chmod` says.
    fn unpack(&self, plan: &Plan, dest: &[u8]) -> Result<()> {
        let dir = root::resolve(self.dest_root, dest)?.host(self.dest_root);
        let created = root::mkdir_all(
            self.dest_root,
            &dir,
            NewDirs {
                mode: 0o755,
                ..self.new_dirs
            },
        )?;
        let archive = &plan.top.host;
        unpack::unpack(
            archive,
            &dir,
            &UnpackOptions {
                owner: self.owner,
                privilege: &self.privilege,
            },
        )
        .map_err(|source| Error::Unpack {
            archive: String::from_utf8_lossy(&plan.name).into_owned(),
            source,
        })?;
        root::finish_dirs(&created)?;
        Ok(())
    }

    /// fsutil's `Copy` for one source: destination naming, then the
    /// three passes.
    fn copy_one(&self, plan: &Plan, dest: &[u8], contents: bool) -> Result<()> {
        let mut created = Vec::new();
        // The destination's directory part (all of it when it ends in `/`
        // or `/.`) is created first.
        let (dir_part, file_part) = root::split(dest);
        let ensure = if !file_part.is_empty() && file_part != b"." {
            dir_part
        } else {
            dest
        };
        let ensure_host = root::resolve(self.dest_root, ensure)?.host(self.dest_root);
        created.extend(self.mkdir_all(&ensure_host)?);

        let dst = root::resolve(self.dest_root, &root::clean(dest))?.host(self.dest_root);
        let dst_meta = match fs::metadata(&dst) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::WriteDestination(FsError::new("inspect", &dst, e))),
        };
        let src_is_dir = plan.top.meta.is_dir();
        let dst_exists = dst_meta.is_some();
        let dst_is_dir = dst_meta.as_ref().is_some_and(Metadata::is_dir);
        let mut target = dst.clone();
        if (!contents && src_is_dir && dst_exists) || (!src_is_dir && dst_is_dir) {
            let name = root::base(&plan.name);
            if name != b"/" && name != b"." {
                target = dst.join(root::from_bytes(name));
            }
        }
        let mkdir_target = if contents && src_is_dir && !dst_exists {
            target.clone()
        } else {
            target
                .parent()
                .filter(|p| p.starts_with(self.dest_root))
                .unwrap_or(self.dest_root)
                .to_path_buf()
        };
        created.extend(self.mkdir_all(&mkdir_target)?);
        self.place_all(plan, &target)?;
        root::finish_dirs(&created)?;
        Ok(())
    }

    fn place_all(&self, plan: &Plan, target: &Path) -> Result<()> {
        // Pass 1: directories.
        let mut dirs: Vec<(&Entry, PathBuf, DirMeta)> = Vec::new();
        let mut jobs: Vec<Job<'_>> = Vec::new();
        let mut first_links: HashMap<(u64, u64), PathBuf> = HashMap::new();
        let all = std::iter::once((true, &plan.top)).chain(plan.below.iter().map(|e| (false, e)));
        for (is_top, entry) in all {
            let dest = if is_top {
                target.to_path_buf()
            } else {
                target.join(&entry.rel)
            };
            if entry.meta.is_dir() {
                let how = self.prepare_dir(entry, &dest, is_top)?;
                dirs.push((entry, dest, how));
                continue;
            }
            // fsutil links regular files it has seen before (by inode)
            // to their first copy.
            let mut link_to = None;
            if entry.meta.is_file() && entry.meta.nlink() > 1 {
                let key = (entry.meta.dev(), entry.meta.ino());
                match first_links.get(&key) {
                    Some(first) => link_to = Some(first.clone()),
                    None => {
                        first_links.insert(key, dest.clone());
                    }
                }
            }
            jobs.push(Job {
                entry,
                dest,
                link_to,
            });
        }

        // Pass 2: files, symlinks and special files in parallel, then the
        // hard links to them.
        jobs.par_iter()
            .filter(|j| j.link_to.is_none())
            .try_for_each(|j| self.place(j))?;
        for job in jobs.iter().filter(|j| j.link_to.is_some()) {
            self.place(job)?;
        }

        // Pass 3: directory metadata, deepest first.
        for (entry, dest, how) in dirs.iter().rev() {
            match how {
                DirMeta::Full => self.apply_metadata(dest, entry)?,
                DirMeta::TimesOnly => meta::set_times(dest, self.req.timestamp, &entry.meta)
                    .map_err(Error::WriteDestination)?,
                DirMeta::SourceMode => {
                    meta::set_mode(dest, entry.meta.mode()).map_err(Error::WriteDestination)?
                }
            }
        }
        Ok(())
    }

    /// fsutil's `copyDirectoryOnly` and its callers' metadata decisions.
    fn prepare_dir(&self, entry: &Entry, dest: &Path, top: bool) -> Result<DirMeta> {
        let mut existing = meta::lstat(dest).map_err(Error::WriteDestination)?;
        if entry.included
            && self.req.always_replace_existing_dest
            && existing.as_ref().is_some_and(|m| !m.is_dir())
        {
            meta::remove_all(dest).map_err(Error::WriteDestination)?;
            existing = None;
        }
        let created = match existing {
            None => {
                // Owner-only until pass 3 sets the real mode.
                meta::create_dir(dest, 0o700).map_err(Error::WriteDestination)?;
                true
            }
            Some(m) if m.is_dir() => false,
            Some(_) => {
                return Err(Error::CopyOntoNonDirectory {
                    path: self.in_root(dest),
                })
            }
        };
        Ok(match (top, entry.included, created) {
            (_, _, true) => DirMeta::Full,
            (true, _, false) => DirMeta::TimesOnly,
            (false, true, false) => DirMeta::Full,
            (false, false, false) => DirMeta::SourceMode,
        })
    }

    /// Places one non-directory: directly under its final name when
    /// nothing is there yet, else under a temporary name beside `dest`
    /// renamed over whatever was there.
    fn place(&self, job: &Job<'_>) -> Result<()> {
        if job.link_to.is_none() && self.place_new(job)? {
            return Ok(());
        }
        let dest = &job.dest;
        if let Some(existing) = meta::lstat(dest).map_err(Error::WriteDestination)? {
            if existing.is_dir() {
                if !self.req.always_replace_existing_dest {
                    return Err(Error::ReplaceDirectory {
                        path: self.in_root(dest),
                    });
                }
                meta::remove_all(dest).map_err(Error::WriteDestination)?;
            }
        }
        let parent = dest.parent().unwrap_or(self.dest_root);
        let entry = job.entry;
        let (tmp, result) = match &job.link_to {
            Some(first) => {
                let tmp =
                    meta::create_temp(parent, "create hard link", |p| fs::hard_link(first, p))
                        .map_err(Error::WriteDestination)?;
                let result = self.apply_metadata(&tmp, entry);
                (tmp, result)
            }
            None => {
                let mut source = self.read_source(entry)?;
                let mut made = None;
                let tmp = meta::create_temp(parent, source.creating(), |p| {
                    made = source.create_at(p)?;
                    Ok(())
                })
                .map_err(Error::WriteDestination)?;
                let result = self.fill(&mut source, made, &tmp, entry);
                (tmp, result)
            }
        };
        let result = result
            .and_then(|()| meta::rename_into_place(&tmp, dest).map_err(Error::WriteDestination));
        if result.is_err() || job.link_to.is_some() {
            // After a successful rename the name is gone; it only remains
            // if renaming onto a link to the same inode did nothing.
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The usual case, a destination name that does not exist yet (a
    /// fresh directory): the copy is created right there, exclusively,
    /// which spares a `stat`, a temporary name and a `rename` per file.
    /// Exclusive creation cannot write through an existing inode, and a
    /// failure after it removes the entry again, so the outcome is that of
    /// the temporary-name path; a crash can leave a partial file under its
    /// real name, but only in an uncommitted snapshot, which the store
    /// discards whole. Returns `false`, having changed nothing, when the
    /// name is taken or the source cannot be read: the general path then
    /// decides (and reports errors in its order).
    fn place_new(&self, job: &Job<'_>) -> Result<bool> {
        let Ok(mut source) = self.read_source(job.entry) else {
            return Ok(false);
        };
        let made = match source.create_at(&job.dest) {
            Ok(made) => made,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => {
                return Err(Error::WriteDestination(FsError::new(
                    source.creating_new(),
                    &job.dest,
                    e,
                )))
            }
        };
        let result = self.fill(&mut source, made, &job.dest, job.entry);
        if result.is_err() {
            let _ = fs::remove_file(&job.dest);
        }
        result.map(|()| true)
    }

    /// Opens or reads what `entry`'s copy is made from.
    fn read_source(&self, entry: &Entry) -> Result<Source> {
        let file_type = entry.meta.file_type();
        if file_type.is_file() {
            return meta::open_source(&entry.host)
                .map(Source::File)
                .map_err(Error::ReadSource);
        }
        if file_type.is_symlink() {
            return fs::read_link(&entry.host)
                .map(Source::Symlink)
                .map_err(|e| Error::ReadSource(FsError::new("read symlink", &entry.host, e)));
        }
        // fsutil's copyDevice: the same node type and device number; a
        // socket cannot be recreated and becomes an empty regular file.
        use nix::sys::stat::SFlag;
        let kind = if file_type.is_block_device() {
            SFlag::S_IFBLK
        } else if file_type.is_char_device() {
            SFlag::S_IFCHR
        } else if file_type.is_fifo() {
            SFlag::S_IFIFO
        } else {
            SFlag::S_IFREG
        };
        Ok(Source::Node(kind, entry.meta.rdev()))
    }

    /// Gives a just-created entry its content (a regular file, still
    /// open as `made`) and its metadata; on failure the caller removes it.
    fn fill(
        &self,
        source: &mut Source,
        made: Option<File>,
        path: &Path,
        entry: &Entry,
    ) -> Result<()> {
        match (source, made) {
            (Source::File(from), Some(mut to)) => {
                copy_data(from, &mut to, entry.meta.len())
                    .map_err(|e| Error::WriteDestination(FsError::new("copy into", path, e)))?;
                self.apply_file_metadata(from, &to, path, entry)
            }
            _ => self.apply_metadata(path, entry),
        }
    }

    /// [`Ctx::apply_metadata`] for a regular file through descriptors: the
    /// copy's own for owner, mode and times, the source's for its xattrs,
    /// so no call looks a path up again.
    fn apply_file_metadata(
        &self,
        from: &File,
        to: &File,
        path: &Path,
        entry: &Entry,
    ) -> Result<()> {
        let w = Error::WriteDestination;
        match self.owner {
            Some(ids) => meta::set_owner_fd(to, path, ids).map_err(w)?,
            None if self.privilege.root => {
                meta::set_owner_fd(to, path, meta::ids_of(&entry.meta)).map_err(w)?
            }
            None => {}
        }
        meta::set_mode_fd(to, path, self.file_mode(entry)).map_err(w)?;
        meta::set_times_fd(to, path, self.req.timestamp, &entry.meta).map_err(w)?;
        meta::copy_xattrs_best_effort_fd(from, to);
        Ok(())
    }

    /// The mode a copy of `entry` gets: the source's, with --chmod applied.
    fn file_mode(&self, entry: &Entry) -> u32 {
        let src_mode = entry.meta.mode() & 0o7777;
        match self.mode {
            Some(change) => change.apply(src_mode, entry.meta.is_dir()),
            None => src_mode,
        }
    }

    /// fsutil's `copyFileInfo` then `copyXAttrs`: owner (the --chown one,
    /// else the source's when we may), mode (--chmod applied to the
    /// source's), times (the fixed timestamp, else the source's), xattrs.
    fn apply_metadata(&self, path: &Path, entry: &Entry) -> Result<()> {
        let w = Error::WriteDestination;
        match self.owner {
            Some(ids) => meta::set_owner(path, ids).map_err(w)?,
            None if self.privilege.root => {
                meta::set_owner(path, meta::ids_of(&entry.meta)).map_err(w)?
            }
            // Unprivileged, the new entry is ours and the source's owner
            // cannot be applied; the snapshot records ownership itself.
            None => {}
        }
        if !entry.meta.file_type().is_symlink() {
            meta::set_mode(path, self.file_mode(entry)).map_err(w)?;
        }
        meta::set_times(path, self.req.timestamp, &entry.meta).map_err(w)?;
        meta::copy_xattrs_best_effort(&entry.host, path);
        Ok(())
    }
}
