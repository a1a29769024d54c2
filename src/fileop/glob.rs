//! Wildcard sources (`COPY *.go sub/*/x /dst/`, `rm` with wildcards): Go's
//! `filepath.Match` and fsutil's `ResolveWildcards`, which is what BuildKit
//! uses for them. This is *not* the `.dockerignore` language of
//! [`crate::pattern`]: there is no `**`, and `*`/`?` stop at
//! `/`, so `sub/*` matches `sub/dir` but nothing inside it.
//!
//! Resolution splits the path at its first element with a wildcard, walks
//! the directory before it (resolved inside the root) in byte order and
//! returns every entry whose relative path matches the rest; a matched
//! directory is not descended into. It must not import the copy engine.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::root::{self, RootError};
use crate::util::fs::FsError;

/// Why wildcard resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum GlobError {
    #[error(transparent)]
    ResolveBase(#[from] RootError),
    /// Reading the base directory or one below it failed (including the
    /// base not existing, as in fsutil's walk).
    #[error(transparent)]
    Walk(FsError),
}

/// fsutil's `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
pub fn contains_wildcards(name: &[u8]) -> bool {
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

/// fsutil's `splitWildcards`: the cleaned path up to (not including) the
/// first element with a wildcard, and the rest; the rest is empty when
/// there is no wildcard.
pub(crate) fn split_wildcards(path: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let cleaned = root::clean(path);
    let mut before: Vec<&[u8]> = Vec::new();
    let mut after: Vec<&[u8]> = Vec::new();
    for part in cleaned.split(|&b| b == b'/') {
        if after.is_empty() && !contains_wildcards(part) {
            before.push(if part.is_empty() { b"/" } else { part });
        } else {
            after.push(part);
        }
    }
    (go_join(&before), go_join(&after))
}

/// `filepath.Join` of elements (empty ones skipped), cleaned; empty when
/// all are empty.
fn go_join(parts: &[&[u8]]) -> Vec<u8> {
    let mut joined = Vec::new();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if !joined.is_empty() {
            joined.push(b'/');
        }
        joined.extend_from_slice(part);
    }
    if joined.is_empty() {
        return joined;
    }
    root::clean(&joined)
}

/// One matched entry: its absolute in-root path (`/sub/x`), symlinks along
/// the base directory already resolved.
pub(crate) type Match = Vec<u8>;

/// fsutil's `ResolveWildcards(root, path, followLinks)`. Without a
/// wildcard the cleaned path is returned as is (relative to the root,
/// whether or not it exists). `follow_links` decides whether a symlink
/// naming the base directory itself is followed.
pub(crate) fn resolve_wildcards(
    root_dir: &Path,
    path: &[u8],
    follow_links: bool,
) -> Result<Vec<Match>, GlobError> {
    let (base, pattern) = split_wildcards(path);
    if pattern.is_empty() {
        return Ok(vec![root::clean_abs(&base)]);
    }
    let resolved = if follow_links {
        root::resolve(root_dir, &base)?
    } else {
        root::resolve_parent(root_dir, &base)?
    };
    let host = resolved.host(root_dir);
    let meta = fs::symlink_metadata(&host)
        .map_err(|e| GlobError::Walk(FsError::new("inspect", &host, e)))?;
    let mut out = Vec::new();
    if meta.is_dir() {
        let walk = Walk {
            pattern: &pattern,
            max_depth: max_match_depth(&pattern),
        };
        walk.dir(&host, &resolved.rel, &mut Vec::new(), 1, &mut out)?;
    }
    Ok(out)
}

struct Walk<'p> {
    pattern: &'p [u8],
    /// Entries deeper than this cannot match, so the walk stops there
    /// (fsutil walks everything; the result is the same).
    max_depth: usize,
}

impl Walk<'_> {
    fn dir(
        &self,
        host: &Path,
        rel_base: &Path,
        rel: &mut Vec<u8>,
        depth: usize,
        out: &mut Vec<Match>,
    ) -> Result<(), GlobError> {
        for (name, is_dir) in sorted_entries(host)? {
            let mark = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_os_str().as_bytes());
            if go_match(self.pattern, rel) {
                let found = rel_base.join(root::from_bytes(rel));
                out.push(root::clean_abs(root::bytes(&found)));
            } else if is_dir && depth < self.max_depth {
                self.dir(&host.join(&name), rel_base, rel, depth + 1, out)?;
            }
            rel.truncate(mark);
        }
        Ok(())
    }
}

/// A directory's entries in byte order (as Go's walk sorts them), each
/// with whether it is a real directory (symlinks are not descended).
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<(PathBuf, bool)>, GlobError> {
    let read = |e: io::Error| GlobError::Walk(FsError::new("read directory", dir, e));
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(read)? {
        let entry = entry.map_err(read)?;
        let is_dir = entry.file_type().map_err(read)?.is_dir();
        entries.push((PathBuf::from(entry.file_name()), is_dir));
    }
    entries.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    Ok(entries)
}

/// How many path elements a name matched by `pattern` can have: one more
/// than its slashes, plus one per character class (Go lets a class match
/// `/`).
fn max_match_depth(pattern: &[u8]) -> usize {
    1 + pattern.iter().filter(|&&b| b == b'/' || b == b'[').count()
}

/// Go's `filepath.Match` on Unix, with a malformed pattern matching
/// nothing (fsutil ignores the error it returns).
pub(crate) fn go_match(pattern: &[u8], name: &[u8]) -> bool {
    crate::pattern::go_match(pattern, name).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_follows_go() {
        let yes = |p: &str, n: &str| assert!(go_match(p.as_bytes(), n.as_bytes()), "{p} ~ {n}");
        let no = |p: &str, n: &str| assert!(!go_match(p.as_bytes(), n.as_bytes()), "{p} !~ {n}");
        yes("abc", "abc");
        yes("*", "abc");
        yes("*c", "abc");
        no("a*", "ab/c");
        yes("a*/b", "abc/b");
        no("a*/b", "a/c/b");
        yes("a*b*c*d*e*/f", "axbxcxdxe/f");
        yes("a*b*c*d*e*/f", "axbxcxdxexxx/f");
        no("a*b*c*d*e*/f", "axbxcxdxe/xxx/f");
        yes("a*b?c*x", "abxbbxdbxebxczzx");
        no("a*b?c*x", "abxbbxdbxebxczzy");
        yes("ab[c]", "abc");
        yes("ab[b-d]", "abc");
        no("ab[e-g]", "abc");
        no("ab[^c]", "abc");
        yes("ab[^e-g]", "abc");
        no("a?b", "a/b");
        yes("a\\*b", "a*b");
        no("a\\*b", "ab");
        yes("a?b", "a☺b");
        yes("a[^a]b", "a☺b");
        // A class may match `/` in Go.
        yes("a[^x]b", "a/b");
        // Malformed patterns match nothing.
        no("[", "a");
        no("a[", "a");
        no("[-]", "-");
        no("*x\\", "x");
        no("[a-", "a");
        yes("*.go", "foo.go");
        no("*.go", "sub/foo.go");
    }

    #[test]
    fn split_at_first_wildcard() {
        let s = |p: &str| {
            let (a, b) = split_wildcards(p.as_bytes());
            (String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap())
        };
        assert_eq!(s("/foo/*.go"), ("/foo".into(), "*.go".into()));
        assert_eq!(s("/a/b*/./c/**/e"), ("/a".into(), "b*/c/**/e".into()));
        assert_eq!(s("/foo/bar/"), ("/foo/bar".into(), "".into()));
        assert_eq!(s("/*"), ("/".into(), "*".into()));
        assert_eq!(s("/a\\*b"), ("/a\\*b".into(), "".into()));
    }

    #[test]
    fn resolve_walks_in_order_and_stops_at_matches() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("sub/dir1/dir2")).unwrap();
        fs::create_dir_all(r.join("sub/dir0")).unwrap();
        fs::write(r.join("sub/dir1/dir2/foo"), b"").unwrap();
        fs::write(r.join("b.go"), b"").unwrap();
        fs::write(r.join("a.go"), b"").unwrap();
        std::os::unix::fs::symlink("sub", r.join("link")).unwrap();
        let m = |p: &str, follow: bool| -> Vec<String> {
            resolve_wildcards(r, p.as_bytes(), follow)
                .unwrap()
                .into_iter()
                .map(|p| String::from_utf8(p).unwrap())
                .collect()
        };
        assert_eq!(m("*.go", true), ["/a.go", "/b.go"]);
        assert_eq!(m("/sub/*", true), ["/sub/dir0", "/sub/dir1"]);
        assert_eq!(m("sub/*/dir2/foo", true), ["/sub/dir1/dir2/foo"]);
        assert_eq!(m("link/dir*", true), ["/sub/dir0", "/sub/dir1"]);
        // Without following, a link as the base is not a directory.
        assert!(m("link/dir*", false).is_empty());
        assert!(m("nomatch*", true).is_empty());
        assert_eq!(m("/sub/../a.go", true), ["/a.go"]);
        assert_eq!(m("sub/dir1/", true), ["/sub/dir1"]);
        assert!(resolve_wildcards(r, b"missing/*", true).is_err());
    }
}
