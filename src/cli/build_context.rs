//! `--build-context NAME=VALUE` values → what the planner and the solver
//! need: [`NamedContexts`] for the frontend, and the directories of local
//! contexts for the solver. Values as buildx reads them: a local
//! directory, `docker-image://REF[@DIGEST]`, `oci-layout://PATH[:TAG][@DIGEST]`
//! (the path made absolute here) and `target:STAGE`. Remote contexts (git,
//! HTTP) are refused by name.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::dockerfile::{ContextSource, NamedContexts};
use crate::image::Reference;

/// The build's named contexts.
#[derive(Debug, Default)]
pub struct BuildContexts {
    pub named: NamedContexts,
    /// Local contexts: name → directory.
    pub local: Vec<(String, PathBuf)>,
}

/// Parses the `--build-context` pairs, relative paths against `cwd`.
pub fn parse(pairs: &[(String, String)], cwd: &Path) -> anyhow::Result<BuildContexts> {
    let mut out = BuildContexts::default();
    for (name, value) in pairs {
        if name.is_empty() {
            bail!("invalid --build-context {name}={value}: the name is empty");
        }
        let source = source(value, cwd)
            .with_context(|| format!("invalid --build-context {name}={value}"))?;
        if let (ContextSource::Local, false) = (&source, value.is_empty()) {
            out.local.retain(|(n, _)| n != name);
            out.local.push((name.clone(), cwd.join(value)));
        }
        out.named.insert(name, source);
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
    let remote = ["http://", "https://", "git://", "ssh://", "git@"]
        .iter()
        .any(|p| value.starts_with(p));
    if remote || value.ends_with(".git") {
        bail!("not supported yet: remote build contexts");
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
        assert_eq!(parsed.named.get("src"), Some(&ContextSource::Local));
        assert_eq!(
            parsed.named.get("alpine"),
            Some(&ContextSource::Image(
                "docker.io/library/alpine:latest".into()
            ))
        );
        assert!(matches!(
            parsed.named.get("pinned"),
            Some(ContextSource::Image(r)) if r.contains("@sha256:0123")
        ));
        assert_eq!(
            parsed.named.get("base"),
            Some(&ContextSource::Stage("build".into()))
        );
        assert_eq!(
            parsed.named.get("layout"),
            Some(&ContextSource::OciLayout(format!(
                "oci-layout://{}/out/l:v1",
                dir.path().display()
            )))
        );
        for (value, want) in [
            ("missing", "not a directory"),
            ("https://example.com/c.tar", "remote build contexts"),
            ("git@example.com:a/b.git", "remote build contexts"),
            ("docker-image://UPPER", "not an image reference"),
            ("target:", "stage name"),
            ("ftp://x", "unknown context scheme"),
        ] {
            let err = parse(&[pair("x", value)], dir.path()).unwrap_err();
            assert!(format!("{err:#}").contains(want), "{value}: {err:#}");
        }
        assert_eq!(split_layout("/a/b:t@sha256:x"), ("/a/b", ":t@sha256:x"));
        assert_eq!(split_layout("/a/b"), ("/a/b", ""));
    }
}
