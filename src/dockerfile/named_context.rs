//! `--build-context NAME=VALUE` as the planner sees it: what a name
//! stands for, and how FROM, `COPY --from` and `RUN --mount=from=` find
//! it. As in BuildKit's `dockerui.NamedContext`, a context overrides both
//! a stage and an image of that name: a stage named `NAME` is replaced
//! by the context (its instructions are dropped), and an image name that
//! normalises to the same reference as `NAME` (`alpine`,
//! `alpine:latest` and `docker.io/library/alpine` are one name) reads
//! the context instead of the registry.
//!
//! Pure data: the CLI parses the flag values, the solver reads the
//! contexts. Imports `image` and `llb` only.

use std::collections::BTreeMap;

use super::git_ref::{parse_git_ref, GitRefError};
use crate::image::Reference;
use crate::llb::{attr, SourceOp};

/// What a named context is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// A local directory: lowered to a `local://<name>` source, read
    /// with that directory's own `.dockerignore`.
    Local,
    /// A local directory given for one platform only (`NAME::PLATFORM`):
    /// lowered to `local://<key>`, the key naming the directory among the
    /// build's local contexts, so two platforms' directories of the same
    /// name stay two sources in one graph.
    ScopedLocal(String),
    /// `docker-image://ref`: the image (normalised reference), its
    /// config included, as if FROM named it.
    Image(String),
    /// `oci-layout://path[:tag][@digest]`: an image in an OCI layout
    /// directory; the value is the source identifier the solver reads.
    OciLayout(String),
    /// `target:stage`: another stage of this Dockerfile.
    Stage(String),
    /// A git URL (as `bk build` takes one): the checkout of that ref,
    /// read by a `git://` source vertex only when a step uses it. Like a
    /// directory it has no image config.
    Git(String),
    /// Any other `http(s)://` URL: a directory holding the download as
    /// one file named `context`, never unpacked (BuildKit's
    /// `llb.HTTP(url, Filename("context"))`).
    Http(String),
}

impl ContextSource {
    /// The source vertex of a git or HTTP context `name`, with its step
    /// name (lowering masks credentials in every step name); `None` for
    /// the other kinds.
    pub fn remote_source(&self, name: &str) -> Option<Result<(SourceOp, String), GitRefError>> {
        match self {
            ContextSource::Git(url) => {
                let git = match parse_git_ref(url)? {
                    Ok(git) => git,
                    Err(e) => return Some(Err(e)),
                };
                let op = super::git_ref::source_op(&git, git.keep_git_dir, &git.checksum);
                // Named as BuildKit's `DetectGitContext` names it.
                Some(Ok((op, format!("[internal] load git source {url}"))))
            }
            ContextSource::Http(url) => {
                let mut attrs = BTreeMap::new();
                attrs.insert(attr::HTTP_FILENAME.to_string(), "context".to_string());
                let op = SourceOp {
                    identifier: url.clone(),
                    attrs,
                };
                Some(Ok((op, format!("[context {name}] {url}"))))
            }
            _ => None,
        }
    }
}

/// The build's named contexts, in flag order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedContexts {
    entries: Vec<(String, ContextSource)>,
}

impl NamedContexts {
    /// Adds `name`; a later flag for the same name wins, as buildx's map.
    pub fn insert(&mut self, name: &str, source: ContextSource) {
        self.entries.retain(|(n, _)| n != name);
        self.entries.push((name.to_string(), source));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The context `name` (a stage name or an image reference, as the
    /// Dockerfile writes it) refers to: an exact match first, then one
    /// whose name normalises to the same image reference.
    pub fn lookup(&self, name: &str) -> Option<(&str, &ContextSource)> {
        let found = self.entries.iter().find(|(n, _)| n == name).or_else(|| {
            let key = normalise(name)?;
            self.entries
                .iter()
                .find(|(n, _)| normalise(n).as_deref() == Some(key.as_str()))
        })?;
        Some((found.0.as_str(), &found.1))
    }

    /// The context called exactly `name`.
    pub fn get(&self, name: &str) -> Option<&ContextSource> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, source)| source)
    }
}

/// `name` as a full, tagged image reference, when it is one.
fn normalise(name: &str) -> Option<String> {
    Reference::parse_normalized(name)
        .ok()
        .map(|r| r.with_default_tag().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_contexts_are_source_vertices() {
        let git = ContextSource::Git("https://u:p@example.com/r.git?ref=v1&submodules=0".into());
        let (op, name) = git.remote_source("src").unwrap().unwrap();
        assert_eq!(op.identifier, "git://example.com/r.git#v1");
        assert_eq!(
            op.attrs.get(attr::GIT_FULL_URL).map(String::as_str),
            Some("https://u:p@example.com/r.git")
        );
        assert!(op.attrs.contains_key(attr::GIT_SKIP_SUBMODULES));
        assert!(name.starts_with("[internal] load git source"), "{name}");
        let http = ContextSource::Http("https://example.com/c.tgz".into());
        let (op, name) = http.remote_source("dl").unwrap().unwrap();
        assert_eq!(op.identifier, "https://example.com/c.tgz");
        assert_eq!(
            op.attrs.get(attr::HTTP_FILENAME).map(String::as_str),
            Some("context")
        );
        assert_eq!(name, "[context dl] https://example.com/c.tgz");
        assert!(ContextSource::Local.remote_source("x").is_none());
        let bad = ContextSource::Git("https://example.com/r.git?nope=1".into());
        assert!(bad.remote_source("x").unwrap().is_err());
    }

    #[test]
    fn names_match_as_image_references() {
        let mut contexts = NamedContexts::default();
        contexts.insert("alpine", ContextSource::Local);
        contexts.insert("base", ContextSource::Stage("b".into()));
        contexts.insert("me/app:1", ContextSource::Image("x".into()));
        for name in ["alpine", "alpine:latest", "docker.io/library/alpine"] {
            assert_eq!(contexts.lookup(name).map(|f| f.0), Some("alpine"), "{name}");
        }
        assert!(contexts.lookup("alpine:3").is_none());
        assert_eq!(contexts.lookup("me/app:1").map(|f| f.0), Some("me/app:1"));
        assert!(contexts.lookup("me/app").is_none());
        assert_eq!(
            contexts.lookup("base").map(|f| f.1),
            Some(&ContextSource::Stage("b".into()))
        );
        // The last flag for a name wins.
        contexts.insert("base", ContextSource::Local);
        assert_eq!(contexts.get("base"), Some(&ContextSource::Local));
    }
}
