//! Git references in `ADD` sources, read as BuildKit's `dfgitutil` and
//! `gitutil` read them: `https://host/repo.git#ref:subdir`,
//! `git@host:repo.git?tag=v1&keep-git-dir=1`, `ssh://…`, `git://…`, and the
//! deprecated `github.com/owner/repo` (which COPY/ADD treat as a local path).
//!
//! Pure string handling: it decides what a source *is* and which options its
//! URL carries, and names the `git://` source vertex for lowering. It must
//! not fetch anything or import the solver; cloning is the git source's job.

use std::collections::BTreeMap;

use super::config_values::path_clean;
use super::instructions::go::parse_bool;
use crate::llb::{attr, SourceOp};

/// Why a source that is a git URL cannot be used. Only problems in the
/// URL's options are errors: a string that does not parse as a git URL at
/// all is simply not a git source (BuildKit then treats it as a path).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GitRefError {
    #[error("query {0:?} has no value")]
    QueryNoValue(String),
    #[error("query {0:?} has multiple values")]
    QueryMultipleValues(String),
    #[error("invalid query: {0}")]
    QuerySyntax(String),
    #[error("ref conflicts: {0:?} vs {1:?}")]
    RefConflict(String, String),
    #[error("subdir conflicts: {0:?} vs {1:?}")]
    SubdirConflict(String, String),
    #[error("invalid {key} value: {value:?}")]
    InvalidBool { key: String, value: String },
    #[error("invalid mtime value: {0:?} (must be \"checkout\" or \"commit\")")]
    InvalidMtime(String),
    #[error("unexpected query {0:?}")]
    UnexpectedQuery(String),
    #[error("branch conflicts with tag")]
    BranchConflictsWithTag,
}

/// The transport a git URL uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitScheme {
    Http,
    Https,
    Ssh,
    Git,
}

/// A parsed git source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitRef {
    /// The URL to clone, without fragment and query.
    pub remote: String,
    pub scheme: Option<GitScheme>,
    /// Host (with port) and path as the URL names them, for the source's
    /// identifier (`host/path`), which is the same whatever the transport.
    pub host: String,
    pub path: String,
    /// Branch, tag or commit; empty for the default branch.
    pub git_ref: String,
    pub subdir: String,
    /// `checksum=` / `commit=`: the commit the ref must resolve to.
    pub checksum: String,
    pub keep_git_dir: Option<bool>,
    pub submodules: Option<bool>,
    pub mtime: String,
    pub fetch_by_commit: bool,
    /// `github.com/owner/repo`: could be a local path, and for COPY/ADD it
    /// is one.
    pub indistinguishable_from_local: bool,
}

/// Reads `src` as a git reference. `None`: not a git URL (a path or plain
/// HTTP URL); `Some(Err)`: a git URL with invalid options.
pub fn parse_git_ref(src: &str) -> Option<Result<GitRef, GitRefError>> {
    if src.starts_with("./") || src.starts_with("../") {
        return None;
    }
    let (url, indistinguishable) = if src.starts_with("github.com/") {
        (parse_std_url(&format!("https://{src}"))?, true)
    } else if let Some(scheme) = scheme_prefix(src) {
        // Only the four git transports count; any other scheme (ftp://…)
        // makes the string "not git" rather than an error, as in BuildKit.
        if !matches!(scheme.as_str(), "http" | "https" | "ssh" | "git") {
            return None;
        }
        let url = parse_std_url(src)?;
        if matches!(url.scheme, Some(GitScheme::Http | GitScheme::Https))
            && !url.path.ends_with(".git")
        {
            return None;
        }
        (url, false)
    } else {
        (parse_scp_url(src)?, false)
    };

    let mut git = GitRef {
        remote: url.remote,
        scheme: url.scheme,
        host: url.host,
        path: url.path,
        indistinguishable_from_local: indistinguishable,
        ..GitRef::default()
    };
    if indistinguishable {
        if let Some((_, rest)) = git.remote.split_once("://") {
            git.remote = rest.to_string();
        }
    }
    if let Some(fragment) = url.fragment.filter(|f| !f.is_empty()) {
        let (r, subdir) = fragment.split_once(':').unwrap_or((&fragment, ""));
        git.git_ref = r.to_string();
        git.subdir = clean_subdir(subdir);
    }
    Some(load_query(git, url.query.as_deref()))
}

/// The `git://` source vertex for `git` (ADD and git build contexts):
/// the identifier names the repository the same way whatever the
/// transport, so https and ssh URLs of one repo share a cache key; the
/// URL to fetch (credentials included) is an attribute.
pub fn source_op(git: &GitRef, keep_git_dir: Option<bool>, checksum: &str) -> SourceOp {
    let mut identifier = format!(
        "git://{}{}",
        git.host,
        path_clean(&format!("/{}", git.path))
    );
    if !git.git_ref.is_empty() || !git.subdir.is_empty() {
        identifier.push('#');
        identifier.push_str(&git.git_ref);
        if !git.subdir.is_empty() {
            identifier.push(':');
            identifier.push_str(&git.subdir);
        }
    }
    let mut attrs = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        attrs.insert(k.to_string(), v.to_string());
    };
    set(attr::GIT_FULL_URL, &git.remote);
    set(attr::GIT_AUTH_TOKEN_SECRET, "GIT_AUTH_TOKEN");
    set(attr::GIT_AUTH_HEADER_SECRET, "GIT_AUTH_HEADER");
    if keep_git_dir == Some(true) {
        set(attr::GIT_KEEP_GIT_DIR, "true");
    }
    if !checksum.is_empty() {
        set(attr::GIT_CHECKSUM, checksum);
    }
    if git.submodules == Some(false) {
        set(attr::GIT_SKIP_SUBMODULES, "true");
    }
    if !git.mtime.is_empty() {
        set(attr::GIT_MTIME, &git.mtime);
    }
    if git.fetch_by_commit {
        set(attr::GIT_FETCH_BY_COMMIT, "true");
    }
    if git.scheme == Some(GitScheme::Ssh) {
        set(attr::GIT_MOUNT_SSH_SOCK, "default");
    }
    SourceOp { identifier, attrs }
}

/// `path.Join("/", subdir)` without the leading slash: `a/../b/` → `b`.
pub fn clean_subdir(subdir: &str) -> String {
    let cleaned = super::config_values::path_clean(&format!("/{subdir}"));
    cleaned.trim_start_matches('/').to_string()
}

/// The pieces of a URL that matter for git.
struct Url {
    scheme: Option<GitScheme>,
    remote: String,
    host: String,
    path: String,
    query: Option<String>,
    fragment: Option<String>,
}

/// `^[a-zA-Z0-9]+://`, lower-cased.
fn scheme_prefix(s: &str) -> Option<String> {
    let (scheme, _) = s.split_once("://")?;
    (!scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| scheme.to_ascii_lowercase())
}

fn git_scheme(s: &str) -> Option<GitScheme> {
    match s {
        "http" => Some(GitScheme::Http),
        "https" => Some(GitScheme::Https),
        "ssh" => Some(GitScheme::Ssh),
        "git" => Some(GitScheme::Git),
        _ => None,
    }
}

/// `scheme://[user@]host[:port]/path[?query][#fragment]`, with the path and
/// fragment percent-decoded as Go's `url.Parse` does. `None` when the
/// escapes are malformed (Go rejects the URL).
fn parse_std_url(s: &str) -> Option<Url> {
    let (scheme, rest) = s.split_once("://")?;
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, f)) => (b, Some(unescape(f, false)?)),
        None => (rest, None),
    };
    let (before_query, query) = match before_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q.to_string())),
        None => (before_fragment, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(Url {
        scheme: git_scheme(&scheme.to_ascii_lowercase()),
        remote: format!("{scheme}://{before_query}"),
        host: host.to_string(),
        path: unescape(path, false)?,
        query,
        fragment,
    })
}

/// scp-style `user@host:path[?query][#fragment]`, where user and host are
/// restricted to the characters BuildKit's pattern allows.
fn parse_scp_url(s: &str) -> Option<Url> {
    let (user, rest) = s.split_once('@')?;
    let user_ok = !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    let (host, rest) = rest.split_once(':')?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if !user_ok || !host_ok {
        return None;
    }
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((b, f)) => (b, Some(f.to_string())),
        None => (rest, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (before_fragment, None),
    };
    Some(Url {
        scheme: Some(GitScheme::Ssh),
        remote: format!("{user}@{host}:{path}"),
        host: host.to_string(),
        path: path.to_string(),
        query,
        fragment,
    })
}

/// Percent-decoding; `plus_is_space` for query components.
fn unescape(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Go's `url.ParseQuery`: `&`-separated `key=value` pairs, each decoded;
/// `;` is refused.
fn parse_query(query: &str) -> Result<Vec<(String, Vec<String>)>, GitRefError> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if pair.contains(';') {
            return Err(GitRefError::QuerySyntax(
                "invalid semicolon separator in query".into(),
            ));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || GitRefError::QuerySyntax(format!("invalid escape in {pair:?}"));
        let k = unescape(k, true).ok_or_else(bad)?;
        let v = unescape(v, true).ok_or_else(bad)?;
        match out.iter_mut().find(|(key, _)| *key == k) {
            Some((_, values)) => values.push(v),
            None => out.push((k, vec![v])),
        }
    }
    Ok(out)
}

/// Applies the URL's query options (`ref`, `tag`, `branch`, `subdir`,
/// `checksum`/`commit`, `keep-git-dir`, `submodules`, `mtime`,
/// `fetch-by-commit`) on top of what the fragment said.
fn load_query(mut git: GitRef, query: Option<&str>) -> Result<GitRef, GitRefError> {
    let Some(query) = query else {
        return Ok(git);
    };
    let (mut tag, mut branch) = (String::new(), String::new());
    for (key, values) in parse_query(query)? {
        let value = match values.as_slice() {
            [v] if !v.is_empty() => Some(v.clone()),
            [_, _, ..] => return Err(GitRefError::QueryMultipleValues(key)),
            // Flags may be given bare (`?keep-git-dir`), meaning true.
            _ if matches!(
                key.as_str(),
                "submodules" | "keep-git-dir" | "fetch-by-commit"
            ) =>
            {
                None
            }
            _ => return Err(GitRefError::QueryNoValue(key)),
        };
        let flag = |value: &Option<String>| match value {
            None => Ok(true),
            Some(v) => parse_bool(v).ok_or_else(|| GitRefError::InvalidBool {
                key: key.clone(),
                value: v.clone(),
            }),
        };
        let text = value.clone().unwrap_or_default();
        match key.as_str() {
            "ref" => {
                if !git.git_ref.is_empty() && git.git_ref != text {
                    return Err(GitRefError::RefConflict(git.git_ref, text));
                }
                git.git_ref = text;
            }
            "tag" => tag = text,
            "branch" => branch = text,
            "subdir" => {
                if !git.subdir.is_empty() && git.subdir != text {
                    return Err(GitRefError::SubdirConflict(git.subdir, text));
                }
                git.subdir = text;
            }
            "checksum" | "commit" => git.checksum = text,
            "keep-git-dir" => git.keep_git_dir = Some(flag(&value)?),
            "submodules" => git.submodules = Some(flag(&value)?),
            "fetch-by-commit" => git.fetch_by_commit = flag(&value)?,
            "mtime" => match text.as_str() {
                "checkout" | "commit" => git.mtime = text,
                _ => return Err(GitRefError::InvalidMtime(text)),
            },
            _ => return Err(GitRefError::UnexpectedQuery(key)),
        }
    }
    if !tag.is_empty() {
        if !tag.starts_with("refs/tags/") {
            tag = format!("refs/tags/{tag}");
        }
        if !git.git_ref.is_empty() && git.git_ref != tag {
            return Err(GitRefError::RefConflict(git.git_ref, tag));
        }
        git.git_ref = tag.clone();
    }
    if !branch.is_empty() {
        if !tag.is_empty() {
            return Err(GitRefError::BranchConflictsWithTag);
        }
        if !branch.starts_with("refs/heads/") {
            branch = format!("refs/heads/{branch}");
        }
        if !git.git_ref.is_empty() && git.git_ref != branch {
            return Err(GitRefError::RefConflict(git.git_ref, branch));
        }
        git.git_ref = branch;
    }
    Ok(git)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(src: &str) -> GitRef {
        match parse_git_ref(src) {
            Some(Ok(g)) => g,
            other => panic!("{src}: {other:?}"),
        }
    }

    #[test]
    fn not_git() {
        for src in [
            "./repo.git",
            "../x",
            "dir/file",
            "https://example.com/file.tar.gz",
            "ftp://host/repo.git",
            "me@host",
            "C:\\x",
        ] {
            assert!(parse_git_ref(src).is_none(), "{src}");
        }
    }

    #[test]
    fn https_with_fragment() {
        let g = git("https://github.com/example/plugins.git#v1.2.0:sub/../dir/");
        assert_eq!(g.remote, "https://github.com/example/plugins.git");
        assert_eq!(g.scheme, Some(GitScheme::Https));
        assert_eq!(g.host, "github.com");
        assert_eq!(g.path, "/example/plugins.git");
        assert_eq!(g.git_ref, "v1.2.0");
        assert_eq!(g.subdir, "dir");
        assert!(!g.indistinguishable_from_local);
    }

    #[test]
    fn scp_style_with_query() {
        let g = git("git@github.com:o/r.git?tag=v1&keep-git-dir&submodules=false&checksum=abc");
        assert_eq!(g.remote, "git@github.com:o/r.git");
        assert_eq!(g.scheme, Some(GitScheme::Ssh));
        assert_eq!(
            (g.host.as_str(), g.path.as_str()),
            ("github.com", "o/r.git")
        );
        assert_eq!(g.git_ref, "refs/tags/v1");
        assert_eq!(g.keep_git_dir, Some(true));
        assert_eq!(g.submodules, Some(false));
        assert_eq!(g.checksum, "abc");
    }

    #[test]
    fn github_shorthand_is_indistinguishable() {
        let g = git("github.com/o/r");
        assert!(g.indistinguishable_from_local);
        assert_eq!(g.remote, "github.com/o/r");
    }

    #[test]
    fn query_errors() {
        let err = |src: &str| match parse_git_ref(src) {
            Some(Err(e)) => e,
            other => panic!("{src}: {other:?}"),
        };
        assert_eq!(
            err("https://h/r.git?ref=a#b"),
            GitRefError::RefConflict("b".into(), "a".into())
        );
        assert_eq!(
            err("https://h/r.git?tag=a&branch=b"),
            GitRefError::BranchConflictsWithTag
        );
        assert_eq!(
            err("https://h/r.git?nope=1"),
            GitRefError::UnexpectedQuery("nope".into())
        );
        assert_eq!(
            err("https://h/r.git?ref="),
            GitRefError::QueryNoValue("ref".into())
        );
        assert_eq!(
            err("https://h/r.git?ref=a&ref=b"),
            GitRefError::QueryMultipleValues("ref".into())
        );
        assert!(matches!(
            err("https://h/r.git?keep-git-dir=maybe"),
            GitRefError::InvalidBool { .. }
        ));
        assert_eq!(
            git("https://h/r.git?branch=main").git_ref,
            "refs/heads/main"
        );
    }
}
