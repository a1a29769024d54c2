//! `--build-context NAME=VALUE` values → what the planner and the solver
//! need: [`NamedContexts`] for the frontend, and the directories of local
//! contexts for the solver. Values as buildx reads them: a local
//! directory, `docker-image://REF[@DIGEST]`, `oci-layout://PATH[:TAG][@DIGEST]`
//! (the path made absolute here), `target:STAGE`, a git URL (as `bk build`
//! takes one) and any other `http(s)://` URL (one downloaded file named
//! `context`). Git and HTTP contexts are fetched only when a step uses them.
//!
//! `NAME::PLATFORM=VALUE` (BuildKit's platform-scoped key, e.g.
//! `base::linux/arm64`) applies only to uses of `NAME` for that platform,
//! where it wins over a plain `NAME`. Every context goes to the planner,
//! which picks per use (a stage's FROM by the stage's platform, `--from`
//! by the target's; see [`NamedContexts`]); a scoped directory is its own
//! local source, keyed `NAME::PLATFORM`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::dockerfile::git_ref::parse_git_ref;
use crate::dockerfile::named_context::scoped_key;
use crate::dockerfile::{ContextSource, NamedContexts};
use crate::image::{Platform, Reference};
use crate::util::redact;

/// The build's named contexts.
#[derive(Debug, Default)]
pub struct BuildContexts {
    /// Every context, plain and platform-scoped.
    pub named: NamedContexts,
    /// Local directories by the key their `local://` source names: plain
    /// ones by name, platform-scoped ones by `NAME::PLATFORM`.
    pub local: Vec<(String, PathBuf)>,
}

/// Parses the `--build-context` pairs, relative paths against `cwd`.
pub fn parse(pairs: &[(String, String)], cwd: &Path) -> anyhow::Result<BuildContexts> {
    let mut out = BuildContexts::default();
    for (key, value) in pairs {
        let invalid = || format!("invalid --build-context {key}={}", redact::text(value));
        let (name, platform) = match key.split_once("::") {
            Some((name, platform)) => {
                let platform = platform
                    .parse::<Platform>()
                    .with_context(|| format!("{}: not a platform after ::", invalid()))?;
                (name, Some(platform))
            }
            None => (key.as_str(), None),
        };
        if name.is_empty() {
            bail!("{}: the name is empty", invalid());
        }
        let mut source = source(value, cwd).with_context(invalid)?;
        let key = scoped_key(name, platform.as_ref());
        out.local.retain(|(k, _)| *k != key);
        let is_dir = source == ContextSource::Local && !value.is_empty();
        if is_dir {
            out.local.push((key.clone(), cwd.join(value)));
        }
        match platform {
            Some(platform) => {
                if is_dir {
                    source = ContextSource::ScopedLocal(key);
                }
                out.named.insert_scoped(name, &platform, source);
            }
            None => out.named.insert(name, source),
        }
    }
    Ok(out)
}

fn source(value: &str, cwd: &Path) -> anyhow::Result<ContextSource> {
    if let Some(reference) = value.strip_prefix("docker-image://") {
        let reference = Reference::parse_normalized(reference)
            .context("not an image reference")?
            .with_default_tag();
        return Ok(ContextSource::Image(reference.to_string()));
    }
    if let Some(layout) = value.strip_prefix("oci-layout://") {
        let (path, rest) = split_layout(layout);
        if path.is_empty() {
            bail!("the OCI layout path is empty");
        }
        let path = cwd.join(path);
        return Ok(ContextSource::OciLayout(format!(
            "oci-layout://{}{rest}",
            path.display()
        )));
    }
    if let Some(stage) = value.strip_prefix("target:") {
        if stage.is_empty() {
            bail!("target: needs a stage name");
        }
        return Ok(ContextSource::Stage(stage.to_lowercase()));
    }
    // As BuildKit's named contexts: a git URL first, then any other
    // HTTP URL.
    match parse_git_ref(value) {
        Some(Ok(git)) if !git.indistinguishable_from_local => {
            return Ok(ContextSource::Git(value.to_string()))
        }
        Some(Err(reason)) => return Err(anyhow::Error::new(reason).context("invalid git URL")),
        _ => {}
    }
    if value.starts_with("http://") || value.starts_with("https://") {
        return Ok(ContextSource::Http(value.to_string()));
    }
    if value.contains("://") {
        bail!("unknown context scheme (expected a directory, docker-image://, oci-layout:// or target:)");
    }
    let dir = cwd.join(value);
    if !dir.is_dir() {
        bail!(
            "{} is not a directory (for an image, write docker-image://{value})",
            dir.display()
        );
    }
    Ok(ContextSource::Local)
}

/// An OCI layout value's path and the `:TAG` / `@DIGEST` after it, split
/// as buildx splits it: the digest at the first `@`, the tag at the first
/// `:` before it.
pub fn split_layout(value: &str) -> (&str, &str) {
    let end = value.find(['@', ':']).unwrap_or(value.len());
    value.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn build_context_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let parsed = parse(
            &[
                pair("src", "src"),
                pair("alpine", "docker-image://alpine"),
                pair("pinned", "docker-image://busybox@sha256:0123456789012345678901234567890123456789012345678901234567890123"),
                pair("base", "target:Build"),
                pair("layout", "oci-layout://out/l:v1"),
            ],
            dir.path(),
        )
        .unwrap();
        assert_eq!(parsed.local, vec![("src".into(), dir.path().join("src"))]);
        let host = Platform::host();
        let get = |name: &str| parsed.named.get(name, &host).map(|f| f.1);
        assert_eq!(get("src"), Some(&ContextSource::Local));
        assert_eq!(
            get("alpine"),
            Some(&ContextSource::Image(
                "docker.io/library/alpine:latest".into()
            ))
        );
        assert!(matches!(
            get("pinned"),
            Some(ContextSource::Image(r)) if r.contains("@sha256:0123")
        ));
        assert_eq!(get("base"), Some(&ContextSource::Stage("build".into())));
        assert_eq!(
            get("layout"),
            Some(&ContextSource::OciLayout(format!(
                "oci-layout://{}/out/l:v1",
                dir.path().display()
            )))
        );
        for (value, want) in [
            ("missing", "not a directory"),
            (
                "https://u:secret@example.com/r.git?bad=1",
                "unexpected query",
            ),
            ("docker-image://UPPER", "not an image reference"),
            ("target:", "stage name"),
            ("ftp://x", "unknown context scheme"),
        ] {
            let err = parse(&[pair("x", value)], dir.path()).unwrap_err();
            let err = format!("{err:#}");
            assert!(
                err.contains(want) && !err.contains("secret"),
                "{value}: {err}"
            );
        }
        assert_eq!(split_layout("/a/b:t@sha256:x"), ("/a/b", ":t@sha256:x"));
        assert_eq!(split_layout("/a/b"), ("/a/b", ""));
    }

    #[test]
    fn remote_values() {
        let dir = tempfile::tempdir().unwrap();
        let parsed = parse(
            &[
                pair("g1", "https://example.com/r.git#main:sub"),
                pair("g2", "git@example.com:a/b.git"),
                pair("g3", "git://127.0.0.1/repo"),
                pair("h", "https://example.com/c.tar.gz"),
            ],
            dir.path(),
        )
        .unwrap();
        for name in ["g1", "g2", "g3"] {
            assert!(
                matches!(
                    parsed.named.get(name, &Platform::host()),
                    Some((_, ContextSource::Git(_)))
                ),
                "{name}"
            );
        }
        assert_eq!(
            parsed.named.get("h", &Platform::host()).map(|f| f.1),
            Some(&ContextSource::Http("https://example.com/c.tar.gz".into()))
        );
    }

    #[test]
    fn platform_scoped_values_win_for_their_platform() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["plain", "arm", "arm2"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let pairs = [
            pair("src::linux/arm64", "arm2"),
            pair("src::linux/arm64", "arm"),
            pair("src", "plain"),
            pair("img::linux/arm64/v8", "docker-image://busybox:arm"),
            pair("img", "docker-image://busybox"),
        ];
        let arm: Platform = "linux/arm64".parse().unwrap();
        let amd: Platform = "linux/amd64".parse().unwrap();
        let parsed = parse(&pairs, dir.path()).unwrap();
        // A scoped directory is its own source, keyed by name and platform;
        // the last flag for a key wins.
        assert_eq!(
            parsed.local,
            vec![
                ("src::linux/arm64".into(), dir.path().join("arm")),
                ("src".into(), dir.path().join("plain")),
            ]
        );
        assert_eq!(
            parsed.named.get("src", &arm),
            Some((
                "src::linux/arm64",
                &ContextSource::ScopedLocal("src::linux/arm64".into())
            ))
        );
        assert_eq!(
            parsed.named.get("src", &amd),
            Some(("src", &ContextSource::Local))
        );
        // `arm64/v8` is `arm64`.
        assert_eq!(
            parsed.named.lookup("img", &arm).map(|f| f.1),
            Some(&ContextSource::Image(
                "docker.io/library/busybox:arm".into()
            ))
        );
        assert_eq!(
            parsed.named.lookup("img", &amd).map(|f| f.1),
            Some(&ContextSource::Image(
                "docker.io/library/busybox:latest".into()
            ))
        );
        let err = parse(&[pair("src::nope/x", "arm")], dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("not a platform"), "{err:#}");
    }
}
