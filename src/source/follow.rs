//! Follow paths: BuildKit's `local.followpaths`, the context paths an
//! operation needs with every symlink on the way resolved, turned into
//! extra include patterns (fsutil's `FollowLinks`). The Dockerfile frontend
//! sends the `COPY` sources this way, so a source that is a symlink — or
//! sits under one — brings its target into the transfer.
//!
//! Paths here are slash-separated byte strings relative to the context
//! root, manipulated with Go's `path/filepath` rules (`Clean`, `Join`,
//! `Dir`, `Base`), because the results are compared with patterns that
//! were cleaned the same way. Symlink targets are resolved inside the
//! context: an absolute target is relative to the root and `..` stops at
//! the root, as on the client side of a BuildKit transfer. Nothing outside
//! the root is ever looked at. Imports only the frontend's pattern helpers
//! and `util`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::pattern::{clean, Pattern};
use crate::util::fs::FsError;

/// The include patterns `paths` stand for: each path, every symlink met on
/// the way to it, and what those symlinks point to, sorted and with paths
/// inside other listed paths dropped. `None` when that covers the whole
/// context (a path resolved to `.`), which means "no include filter".
pub(super) fn follow_links(root: &Path, paths: &[String]) -> Result<Option<Vec<Vec<u8>>>, FsError> {
    let mut resolver = Resolver {
        root,
        resolved: BTreeSet::new(),
    };
    for path in paths {
        resolver.append(path.as_bytes())?;
    }
    dedupe_paths(resolver.resolved.into_iter().collect()).map_or(Ok(None), |paths| Ok(Some(paths)))
}

/// fsutil's `dedupePaths`: drops each path that lies under the path kept
/// before it (so the input is expected sorted), and gives `None` — no
/// filtering at all — as soon as one path is `.`.
pub(super) fn dedupe_paths(paths: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(paths.len());
    let mut last_dir = b"/".to_vec();
    for path in paths {
        if path == b"." {
            return None;
        }
        if path.starts_with(&last_dir) {
            continue;
        }
        last_dir = path.clone();
        last_dir.push(b'/');
        out.push(path);
    }
    Some(out)
}

struct Resolver<'a> {
    root: &'a Path,
    resolved: BTreeSet<Vec<u8>>,
}

impl Resolver<'_> {
    /// Resolves `path` and everything it leads to. fsutil recurses into
    /// each symlink target in turn; the work stack here visits the same
    /// paths in the same order without growing the call stack with the
    /// length of a symlink chain.
    fn append(&mut self, path: &[u8]) -> Result<(), FsError> {
        let mut work = vec![path.to_vec()];
        while let Some(path) = work.pop() {
            let next = self.step(&path)?;
            work.extend(next.into_iter().rev());
        }
        Ok(())
    }

    /// Walks `path` one component at a time until it ends or meets a
    /// symlink; records what it reached and returns the paths to continue
    /// with (each symlink target joined with the rest of `path`). A symlink
    /// already recorded is not followed again, which also ends cycles.
    fn step(&mut self, path: &[u8]) -> Result<Vec<Vec<u8>>, FsError> {
        let mut rest = join(b".", path);
        let mut current = b".".to_vec();
        loop {
            let (first, tail) = match rest.iter().position(|&b| b == b'/') {
                Some(i) => (rest[..i].to_vec(), rest[i + 1..].to_vec()),
                None => (rest.clone(), Vec::new()),
            };
            current = join(&current, &first);
            let targets = self.read_symlink(&current, true)?;
            rest = tail;
            if (rest.is_empty() || targets.is_some()) && self.resolved.contains(&current) {
                return Ok(Vec::new());
            }
            if let Some(targets) = targets {
                self.resolved.insert(current);
                return Ok(targets.iter().map(|t| join(t, &rest)).collect());
            }
            if rest.is_empty() {
                self.resolved.insert(current);
                return Ok(Vec::new());
            }
        }
    }

    /// The target of the symlink at `path` (as a root-relative path with a
    /// leading `/` when it was relative), `None` when `path` is not a
    /// symlink or does not exist. A last component with wildcards stands
    /// for every matching name in its directory; then the result holds the
    /// targets of the matching symlinks, or is `None` when none is one.
    fn read_symlink(
        &self,
        path: &[u8],
        allow_wildcard: bool,
    ) -> Result<Option<Vec<Vec<u8>>>, FsError> {
        if escapes_root(path) {
            return Ok(None);
        }
        let name = base(path);
        if allow_wildcard && contains_wildcards(name) {
            let parent = dir(path);
            let Some(names) = self.list_dir(&parent)? else {
                return Ok(None);
            };
            // Go's filepath.Match; a malformed pattern matches nothing.
            let Ok(pattern) = Pattern::new(name) else {
                return Ok(None);
            };
            let mut out: Option<Vec<Vec<u8>>> = None;
            for entry in names.iter().filter(|n| pattern.matches(n)) {
                if let Some(targets) = self.read_symlink(&join(&parent, entry), false)? {
                    out.get_or_insert_with(Vec::new).extend(targets);
                }
            }
            return Ok(out);
        }
        if path == b"." || path == b"/" {
            return Ok(None);
        }
        let abs = self.abs(path);
        match std::fs::symlink_metadata(&abs) {
            Ok(meta) if meta.file_type().is_symlink() => {}
            Ok(_) => return Ok(None),
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(FsError::new("inspect", abs, e)),
        }
        let link = match std::fs::read_link(&abs) {
            Ok(link) => link,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(FsError::new("read link", abs, e)),
        };
        let link = clean(link.as_os_str().as_bytes());
        if link.first() == Some(&b'/') {
            return Ok(Some(vec![link]));
        }
        Ok(Some(vec![join(b"/", &join(&dir(path), &link))]))
    }

    /// The sorted names in the directory at `path`; `None` when it is
    /// missing or not a directory (a symlink to one included).
    fn list_dir(&self, path: &[u8]) -> Result<Option<Vec<Vec<u8>>>, FsError> {
        let abs = self.abs(path);
        match std::fs::symlink_metadata(&abs) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(FsError::new("inspect", abs, e)),
        }
        let read_error = |e| FsError::new("read directory", &abs, e);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&abs).map_err(read_error)? {
            names.push(entry.map_err(read_error)?.file_name().as_bytes().to_vec());
        }
        names.sort();
        Ok(Some(names))
    }

    fn abs(&self, path: &[u8]) -> PathBuf {
        if path == b"." {
            self.root.to_path_buf()
        } else {
            self.root.join(OsStr::from_bytes(path))
        }
    }
}

fn is_absent(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// Whether a cleaned relative path climbs above the context root.
fn escapes_root(path: &[u8]) -> bool {
    path == b".." || path.starts_with(b"../")
}

/// fsutil's test for a name that `filepath.Match` would treat as a
/// pattern: `*`, `?` or `[` not escaped by a backslash.
fn contains_wildcards(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Go's `filepath.Join(a, b)`: empty elements are ignored, the result is
/// cleaned.
fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Vec::new(),
        (true, false) => clean(b),
        (false, true) => clean(a),
        (false, false) => {
            let mut joined = Vec::with_capacity(a.len() + b.len() + 1);
            joined.extend_from_slice(a);
            joined.push(b'/');
            joined.extend_from_slice(b);
            clean(&joined)
        }
    }
}

/// Go's `filepath.Base`.
fn base(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        return b".";
    }
    let trimmed = match path.iter().rposition(|&b| b != b'/') {
        Some(end) => &path[..=end],
        None => return b"/",
    };
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// Go's `filepath.Dir`.
fn dir(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => clean(&path[..=i]),
        None => b".".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn strings(paths: Option<Vec<Vec<u8>>>) -> Option<Vec<String>> {
        paths.map(|v| {
            v.into_iter()
                .map(|p| String::from_utf8(p).unwrap())
                .collect()
        })
    }

    fn follow(root: &Path, paths: &[&str]) -> Option<Vec<String>> {
        let paths: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
        strings(follow_links(root, &paths).unwrap())
    }

    fn some(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn go_path_helpers() {
        assert_eq!(join(b".", b"/a/../b/"), b"b");
        assert_eq!(join(b"/", b"x/../../y"), b"/y");
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(base(b"a/b"), b"b");
        assert_eq!(base(b"a/b//"), b"b");
        assert_eq!(base(b"//"), b"/");
        assert_eq!(base(b""), b".");
        assert_eq!(dir(b"a/b"), b"a");
        assert_eq!(dir(b"a"), b".");
        assert_eq!(dir(b"/a"), b"/");
        assert!(contains_wildcards(b"*.rs"));
        assert!(contains_wildcards(b"a[bc]"));
        assert!(!contains_wildcards(b"a\\*b"));
        assert!(!contains_wildcards(b"plain"));
    }

    #[test]
    fn dedupe_drops_nested_paths_and_dot_disables_filtering() {
        let v = |s: &[&str]| s.iter().map(|p| p.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            strings(dedupe_paths(v(&["a", "a/b", "ab", "b/c", "b/c/d"]))),
            some(&["a", "ab", "b/c"])
        );
        assert_eq!(dedupe_paths(v(&["a", ".", "b"])), None);
        assert_eq!(strings(dedupe_paths(Vec::new())), some(&[]));
    }

    #[test]
    fn plain_paths_pass_through_and_symlinks_add_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::fs::write(root.join("real/sub/f"), "x").unwrap();
        symlink("real", root.join("rel")).unwrap();
        symlink("/real/sub", root.join("abs")).unwrap();
        symlink("../../outside", root.join("real/up")).unwrap();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();

        assert_eq!(follow(root, &["./x/../Dockerfile"]), some(&["Dockerfile"]));
        // A symlink on the way is kept and its target added.
        assert_eq!(follow(root, &["rel/sub/f"]), some(&["real/sub/f", "rel"]));
        // Absolute targets are inside the context.
        assert_eq!(follow(root, &["abs/f"]), some(&["abs", "real/sub/f"]));
        // `..` stops at the root.
        assert_eq!(follow(root, &["real/up"]), some(&["outside", "real/up"]));
        // Cycles end.
        assert_eq!(follow(root, &["a"]), some(&["a", "b"]));
        // Wildcards pass through, plus the targets of matching symlinks.
        assert_eq!(follow(root, &["r*"]), some(&["r*", "real"]));
        assert_eq!(follow(root, &["real/*"]), some(&["outside", "real/*"]));
        assert_eq!(follow(root, &["real/s*"]), some(&["real/s*"]));
        // The whole context means no filter.
        assert_eq!(follow(root, &["src", "."]), None);
        assert_eq!(follow(root, &["x/.."]), None);
    }
}
