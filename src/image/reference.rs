//! Image references (`alpine`, `ghcr.io/o/r:tag@sha256:…`) parsed and
//! normalised as Docker's `distribution/reference` does it
//! (`ParseNormalizedNamed` + `TagNameOnly`), so that `FROM` accepts and
//! rejects exactly what BuildKit does and names images the same way
//! (`docker.io/library/alpine:latest`).
//!
//! A leaf: pure string handling, no registry access, nothing
//! project-internal imported.

use std::fmt;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (and port), e.g. `docker.io`.
    pub domain: String,
    /// Repository path inside the registry, e.g. `library/alpine`.
    pub path: String,
    pub tag: Option<String>,
    /// `algorithm:hex`.
    pub digest: Option<String>,
}

/// Why a string is not an image reference; the texts are those of
/// `distribution/reference` and `go-digest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    NotLowercase(String),
    #[error("repository name must be lowercase")]
    ContainsUppercase,
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
    #[error("invalid checksum digest format")]
    DigestFormat,
    #[error("invalid checksum digest length")]
    DigestLength,
    #[error("unsupported digest algorithm")]
    DigestAlgorithm,
}

impl Reference {
    /// Parses a reference as a user writes it (`alpine`, `me/app:1`),
    /// filling in Docker Hub's domain and `library/` prefix. No default
    /// tag is added; see [`Reference::with_default_tag`].
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9')) {
            return Err(ReferenceError::HexIdentifier(s.to_string()));
        }
        let (domain, remainder) = split_docker_domain(s);
        // Only the part before the first `:` is the repository; upper case
        // there gets the more specific message.
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::NotLowercase(remote.to_string()));
        }
        parse(&format!("{domain}/{remainder}"))
    }

    /// `name:latest` when neither tag nor digest was given.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// `domain/path` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Decides which part of a familiar name is the registry: the first
/// component if it looks like a host (has `.` or `:`, is `localhost`, or
/// has upper case), Docker Hub otherwise.
fn split_docker_domain(name: &str) -> (String, String) {
    let Some((maybe_domain, rest)) = name.split_once('/') else {
        return (
            DEFAULT_DOMAIN.to_string(),
            format!("{OFFICIAL_REPO_PREFIX}{name}"),
        );
    };
    // The legacy Hub name must be caught before the "has a dot" rule.
    let (domain, mut remote) = if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN.to_string(), rest.to_string())
    } else if maybe_domain == "localhost"
        || maybe_domain.contains(['.', ':'])
        || maybe_domain.to_lowercase() != maybe_domain
    {
        (maybe_domain.to_string(), rest.to_string())
    } else {
        (DEFAULT_DOMAIN.to_string(), name.to_string())
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        remote = format!("{OFFICIAL_REPO_PREFIX}{remote}");
    }
    (domain, remote)
}

/// The reference grammar: `name[:tag][@digest]`, where name is
/// `[domain/]component(/component)*`.
fn parse(s: &str) -> Result<Reference, ReferenceError> {
    let Some(parts) = split_reference(s) else {
        // Report the most helpful reason, in the library's order.
        if s.is_empty() {
            return Err(ReferenceError::NameEmpty);
        }
        if split_reference(&s.to_lowercase()).is_some() {
            return Err(ReferenceError::ContainsUppercase);
        }
        return Err(ReferenceError::InvalidFormat);
    };
    let (name, tag, digest) = parts;
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    if let Some(d) = digest {
        validate_digest(d)?;
    }
    // A leading component that can be a host is one, as the anchored name
    // pattern prefers it.
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if is_domain(first) && is_remote_name(rest) => (first, rest),
        _ => ("", name),
    };
    Ok(Reference {
        domain: domain.to_string(),
        path: path.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// Splits into name, tag and digest if the whole string fits the grammar.
fn split_reference(s: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if digest.is_some_and(|d| !is_digest_pattern(d)) {
        return None;
    }
    // A `:` after the last `/` starts the tag; earlier ones belong to a
    // registry port.
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if tag.is_some_and(|t| !is_tag(t)) || !is_name(name) {
        return None;
    }
    Some((name, tag, digest))
}

fn is_name(name: &str) -> bool {
    if is_remote_name(name) {
        return true;
    }
    matches!(name.split_once('/'), Some((first, rest)) if is_domain(first) && is_remote_name(rest))
}

fn is_remote_name(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

/// Lower-case alphanumeric runs joined by `.`, `_`, `__` or any number of
/// `-`.
fn is_path_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is a DNS-like name or a bracketed IPv6
/// address.
fn is_domain(s: &str) -> bool {
    let (host, port) = if s.starts_with('[') {
        let Some(end) = s.find(']') else { return false };
        let (h, p) = s.split_at(end + 1);
        let inner = &h[1..h.len() - 1];
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        (None, p)
    } else {
        // The port, if any, keeps its `:` so both cases check it alike.
        let host_end = s.find(':').unwrap_or(s.len());
        (Some(&s[..host_end]), &s[host_end..])
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        };
        if !host.split('.').all(label_ok) {
            return false;
        }
    }
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// `[\w][\w.-]{0,127}`
fn is_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// The shape of a digest the grammar accepts: `alg[+-_.alg]*:hex{32,}`.
fn is_digest_pattern(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `go-digest`'s validation of a digest whose shape already matched.
fn validate_digest(d: &str) -> Result<(), ReferenceError> {
    let (alg, hex) = d.split_once(':').ok_or(ReferenceError::DigestFormat)?;
    let size = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            let lower = alg.split(['.', '+', '_', '-']).all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
            return Err(if lower {
                ReferenceError::DigestAlgorithm
            } else {
                ReferenceError::DigestFormat
            });
        }
    };
    if hex.len() != size {
        return Err(ReferenceError::DigestLength);
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ReferenceError::DigestFormat);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        match Reference::parse_normalized(s) {
            Ok(r) => r.with_default_tag().to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn normalises_like_docker() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for (input, want) in [
            ("alpine", "docker.io/library/alpine:latest".to_string()),
            ("alpine:3.20", "docker.io/library/alpine:3.20".into()),
            ("me/app", "docker.io/me/app:latest".into()),
            ("index.docker.io/me/app", "docker.io/me/app:latest".into()),
            ("docker.io/alpine", "docker.io/library/alpine:latest".into()),
            ("ghcr.io/o/r:v1", "ghcr.io/o/r:v1".into()),
            ("localhost/app", "localhost/app:latest".into()),
            ("localhost:5000/app:x", "localhost:5000/app:x".into()),
            ("[::1]:5000/app", "[::1]:5000/app:latest".into()),
            (
                "gcr.io/distroless/static-debian12:nonroot",
                "gcr.io/distroless/static-debian12:nonroot".into(),
            ),
            (
                &format!("busybox@{digest}"),
                format!("docker.io/library/busybox@{digest}"),
            ),
            (
                &format!("busybox:1@{digest}"),
                format!("docker.io/library/busybox:1@{digest}"),
            ),
            ("a__b/c-----d", "docker.io/a__b/c-----d:latest".into()),
        ] {
            assert_eq!(norm(input), want, "{input}");
        }
    }

    #[test]
    fn rejects_like_docker() {
        for (input, want) in [
            ("Alpine", "error: invalid reference format: repository name (library/Alpine) must be lowercase"),
            ("me/App:1", "error: invalid reference format: repository name (me/App) must be lowercase"),
            ("", "error: invalid reference format"),
            ("alpine:", "error: invalid reference format"),
            ("alpine::1", "error: invalid reference format"),
            ("al pine", "error: invalid reference format"),
            ("-alpine", "error: invalid reference format"),
            ("a..b", "error: invalid reference format"),
            ("a/", "error: invalid reference format"),
            ("alpine@sha256:abc", "error: invalid reference format"),
            ("alpine:.tag", "error: invalid reference format"),
        ] {
            assert_eq!(norm(input), want, "{input:?}");
        }
        assert!(norm(&"a".repeat(64)).contains("64-byte hexadecimal"));
        assert_eq!(
            norm(&format!("alpine@sha256:{}", "a".repeat(40))),
            "error: invalid checksum digest length"
        );
        assert_eq!(
            norm(&format!("alpine@md5:{}", "a".repeat(32))),
            "error: unsupported digest algorithm"
        );
        assert!(norm(&format!("x/{}", "a".repeat(260))).contains("not be more than 255"));
    }

    #[test]
    fn tag_length_limit() {
        assert!(is_tag(&"t".repeat(128)));
        assert!(!is_tag(&"t".repeat(129)));
    }
}
