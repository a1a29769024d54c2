//! Paths inside a root directory, resolved the way a process `chroot`ed
//! into that directory would see them: this module owns lexical cleaning
//! of slash-separated in-root paths (Go's `filepath.Clean`/`Base`/`Split`,
//! BuildKit's `cleanPath`), the symlink-following resolution BuildKit gets
//! from continuity's `fs.RootPath`, and creating missing directories along
//! an already resolved path (fsutil's `MkdirAll`).
//!
//! The invariant everything else in `fileop` relies on: a host path this
//! module returns is `root` joined with components that are real
//! directories (or do not exist yet) — never a symlink — so opening or
//! creating something under it cannot leave the root. `..` is clamped at
//! the root and absolute symlink targets restart at the root.
//!
//! It must not import anything but `util::fs`, the sibling `meta`
//! helpers and the `Ids` value; it knows nothing about copies, patterns
//! or owners beyond the ids it is told to apply.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::meta;
use super::owner::Ids;
use crate::util::fs::FsError;

/// continuity gives up after this many symlinks in one resolution; the
/// same bound keeps a link cycle from looping forever.
const MAX_SYMLINKS: u32 = 255;

/// Why a path could not be resolved or its directories created.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// More than [`MAX_SYMLINKS`] links while resolving (a cycle, most
    /// likely).
    #[error("failed to resolve `{path}`: too many levels of symbolic links")]
    FollowSymlinks { path: String },
    /// `lstat` of a component failed for a reason other than absence
    /// (a component that is a file, permissions).
    #[error(transparent)]
    Inspect(FsError),
    #[error(transparent)]
    ReadLink(FsError),
    #[error(transparent)]
    CreateDir(FsError),
    /// A path component that must be a directory is something else.
    #[error("cannot create directory `{}`: a non-directory is in the way", path.display())]
    NotADirectory { path: PathBuf },
    /// Applying owner, mode or times to a directory just created.
    #[error(transparent)]
    SetMetadata(FsError),
}

/// Go's `filepath.Clean` for slash-separated byte paths (one copy, in
/// the pattern leaf, serves the matcher and the file operations).
pub(crate) use crate::pattern::clean;

/// `filepath.Join("/", p)`: `p` cleaned as if it were absolute, so `..`
/// can never climb above the root.
pub(crate) fn clean_abs(path: &[u8]) -> Vec<u8> {
    let mut rooted = Vec::with_capacity(path.len() + 1);
    rooted.push(b'/');
    rooted.extend_from_slice(path);
    clean(&rooted)
}

/// BuildKit's `cleanPath` for FileOp paths: absolute and clean, but a
/// trailing `/` or `/.` survives, because that is how the user says
/// "directory" (and "its contents").
pub(crate) fn clean_keep_trailing(path: &[u8]) -> Vec<u8> {
    let mut out = clean_abs(path);
    if path.ends_with(b"/.") {
        if out != b"/" {
            out.push(b'/');
        }
        out.push(b'.');
    } else if path.ends_with(b"/") && out != b"/" {
        out.push(b'/');
    }
    out
}

/// Go's `filepath.Base`: the last element, trailing slashes ignored; `/`
/// for the root and `.` for the empty path.
pub(crate) fn base(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        return b".";
    }
    let trimmed = {
        let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        &path[..end]
    };
    if trimmed.is_empty() {
        return b"/";
    }
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// Go's `filepath.Split`: everything up to and including the last slash,
/// and the rest.
pub(crate) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => path.split_at(i + 1),
        None => (b"", path),
    }
}

/// The non-empty, non-`.` elements of a cleaned path.
fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// A path resolved inside a root: the root-relative part, which has no
/// symlink components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// Relative to the root; empty for the root itself.
    pub rel: PathBuf,
}

impl Resolved {
    pub fn host(&self, root: &Path) -> PathBuf {
        if self.rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&self.rel)
        }
    }
}

/// continuity's `fs.RootPath`: `path` (cleaned as absolute first) with
/// every symlink along it followed, the last component included; a
/// missing component ends the following, the rest is taken literally.
pub(crate) fn resolve(root: &Path, path: &[u8]) -> Result<Resolved, RootError> {
    resolve_inner(root, path, true)
}

/// fsutil's `rootPath(..., followLinks=false)`: like [`resolve`] but the
/// last component is kept as it is, so a symlink there names the link.
pub(crate) fn resolve_parent(root: &Path, path: &[u8]) -> Result<Resolved, RootError> {
    resolve_inner(root, path, false)
}

fn resolve_inner(root: &Path, path: &[u8], follow_last: bool) -> Result<Resolved, RootError> {
    let cleaned = clean_abs(path);
    let mut pending: Vec<Vec<u8>> = components(&cleaned).map(<[u8]>::to_vec).collect();
    // Consumed from the back, so the list is kept reversed.
    pending.reverse();
    let mut done: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if pending.is_empty() && !follow_last {
            done.push(name);
            break;
        }
        let mut rel = join_rel(&done);
        rel.push(OsStr::from_bytes(&name));
        let host = root.join(&rel);
        let meta = match fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // As continuity does: a missing name is taken literally.
                done.push(name);
                continue;
            }
            Err(e) => return Err(RootError::Inspect(FsError::new("inspect", host, e))),
        };
        if !meta.file_type().is_symlink() {
            done.push(name);
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(RootError::FollowSymlinks {
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
        let target = fs::read_link(&host)
            .map_err(|e| RootError::ReadLink(FsError::new("read symlink", &host, e)))?;
        let target = target.as_os_str().as_bytes();
        // The target is joined to the link's directory (or the root, when
        // absolute) and cleaned lexically before being walked again, as
        // continuity does; `..` therefore cannot climb out of the root.
        let mut joined = Vec::new();
        if !target.starts_with(b"/") {
            for c in &done {
                joined.push(b'/');
                joined.extend_from_slice(c);
            }
        }
        joined.push(b'/');
        joined.extend_from_slice(target);
        let restart = clean_abs(&joined);
        done.clear();
        for c in components(&restart).collect::<Vec<_>>().into_iter().rev() {
            pending.push(c.to_vec());
        }
    }
    Ok(Resolved {
        rel: join_rel(&done),
    })
}

fn join_rel(parts: &[Vec<u8>]) -> PathBuf {
    let mut rel = PathBuf::new();
    for p in parts {
        rel.push(OsStr::from_bytes(p));
    }
    rel
}

/// How [`mkdir_all`] sets up the directories it creates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewDirs {
    /// Permission bits (`& 0o777`) the directories end up with.
    pub mode: u32,
    pub owner: Option<Ids>,
    pub timestamp: Option<SystemTime>,
}

/// A directory [`mkdir_all`] created, to be finished with [`finish_dirs`]
/// once everything inside it has been written.
#[derive(Debug, Clone)]
pub(crate) struct CreatedDir {
    pub path: PathBuf,
    mode: u32,
    timestamp: Option<SystemTime>,
}

/// fsutil's `MkdirAll` on a host path that [`resolve`] produced under
/// `root`: each missing directory below `root` is created, chowned and
/// stamped; existing directories are left alone; a non-directory in the
/// way is an error. The created directories are returned parents first.
///
/// They are created with the owner's `rwx` bits added so that the rest of
/// the operation can fill them even when not running as root; the final
/// mode is set by [`finish_dirs`].
pub(crate) fn mkdir_all(
    root: &Path,
    path: &Path,
    how: NewDirs,
) -> Result<Vec<CreatedDir>, RootError> {
    let rel = path.strip_prefix(root).unwrap_or(Path::new(""));
    let mut created = Vec::new();
    let mut current = root.to_path_buf();
    for component in rel.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(RootError::NotADirectory {
                    path: current.clone(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(RootError::Inspect(FsError::new("inspect", &current, e))),
        }
        meta::create_dir(&current, (how.mode & 0o777) | 0o700).map_err(RootError::CreateDir)?;
        if let Some(ids) = how.owner {
            meta::set_owner(&current, ids).map_err(RootError::SetMetadata)?;
        }
        created.push(CreatedDir {
            path: current.clone(),
            mode: how.mode & 0o777,
            timestamp: how.timestamp,
        });
    }
    Ok(created)
}

/// Gives directories from [`mkdir_all`] their final mode and, when a
/// timestamp was asked for, their times (again: creating entries inside
/// them moved their mtime). Deepest first, so that a mode without `x`
/// does not lock us out of the rest.
pub(crate) fn finish_dirs(dirs: &[CreatedDir]) -> Result<(), RootError> {
    for dir in dirs.iter().rev() {
        meta::set_mode(&dir.path, dir.mode).map_err(RootError::SetMetadata)?;
        if let Some(ts) = dir.timestamp {
            meta::set_times_to(&dir.path, ts).map_err(RootError::SetMetadata)?;
        }
    }
    Ok(())
}

/// Bytes of an `OsStr` path, for the byte-oriented helpers above.
pub(crate) fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// A `PathBuf` from bytes.
pub(crate) fn from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(b.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a//b/./c/", "a/b/c"),
            ("/../a/..", "/"),
            ("../../a", "../../a"),
            ("a/../../b", "../b"),
            ("/a/b/../../../c", "/c"),
        ] {
            assert_eq!(clean(input.as_bytes()), want.as_bytes(), "{input}");
        }
    }

    #[test]
    fn clean_keep_trailing_matches_buildkit() {
        for (input, want) in [
            ("foo", "/foo"),
            ("foo/", "/foo/"),
            ("foo/.", "/foo/."),
            ("/", "/"),
            (".", "/"),
            ("./", "/"),
            ("/.", "/."),
            ("a/../b/", "/b/"),
        ] {
            assert_eq!(
                String::from_utf8(clean_keep_trailing(input.as_bytes())).unwrap(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn base_and_split_match_go() {
        assert_eq!(base(b"/a/b/"), b"b");
        assert_eq!(base(b"/"), b"/");
        assert_eq!(base(b""), b".");
        assert_eq!(base(b"/a/."), b".");
        assert_eq!(split(b"/a/b"), (&b"/a/"[..], &b"b"[..]));
        assert_eq!(split(b"/a/"), (&b"/a/"[..], &b""[..]));
        assert_eq!(split(b"a"), (&b""[..], &b"a"[..]));
    }

    #[test]
    fn resolve_follows_links_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../../real/sub", root.join("real/up")).unwrap();
        symlink("sub", root.join("real/rel")).unwrap();
        let r = |p: &str| resolve(root, p.as_bytes()).unwrap().rel;
        assert_eq!(r("/abs/sub"), Path::new("real/sub"));
        assert_eq!(r("abs/../abs/rel"), Path::new("real/sub"));
        assert_eq!(r("/real/up"), Path::new("real/sub"));
        assert_eq!(r("/../../missing/x"), Path::new("missing/x"));
        assert_eq!(r("/"), Path::new(""));
        assert_eq!(
            resolve_parent(root, b"/abs/rel").unwrap().rel,
            Path::new("real/rel")
        );
    }

    #[test]
    fn resolve_stops_on_cycles() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        let err = resolve(dir.path(), b"/a/x").unwrap_err();
        assert!(matches!(err, RootError::FollowSymlinks { .. }), "{err}");
    }

    #[test]
    fn mkdir_all_refuses_a_file_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"").unwrap();
        let how = NewDirs {
            mode: 0o755,
            owner: None,
            timestamp: None,
        };
        let err = mkdir_all(dir.path(), &dir.path().join("f/x"), how).unwrap_err();
        assert!(matches!(err, RootError::NotADirectory { .. }), "{err}");
        let created = mkdir_all(dir.path(), &dir.path().join("a/b"), how).unwrap();
        assert_eq!(created.len(), 2);
        finish_dirs(&created).unwrap();
    }
}
