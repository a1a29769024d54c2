//! `--build-context NAME=VALUE` as the planner sees it: what a name
//! stands for, and how FROM, `COPY --from` and `RUN --mount=from=` find
//! it. As in BuildKit's `dockerui.NamedContext`, a context overrides both
//! a stage and an image of that name: a stage named `NAME` is replaced
//! by the context (its instructions are dropped), and an image name that
//! normalises to the same reference as `NAME` (`alpine`,
//! `alpine:latest` and `docker.io/library/alpine` are one name) reads
//! the context instead of the registry.
//!
//! A context may be scoped to one platform (`NAME::PLATFORM`, e.g.
//! `base::linux/arm64`). Each use picks by the platform BuildKit gives
//! it: a FROM (or a stage replaced by a context) by that stage's
//! platform, so `FROM --platform=$BUILDPLATFORM tool` reads
//! `tool::<build platform>`; `COPY --from` and `RUN --mount=from=` by the
//! build's target platform. The scoped context wins over the plain one.
//!
//! Pure data: the CLI parses the flag values, the solver reads the
//! contexts. Imports `image` and `llb` only.

use std::collections::BTreeMap;

use super::git_ref::{parse_git_ref, GitRefError};
use crate::image::{Platform, Reference};
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

/// The build's named contexts, in flag order: plain ones (`NAME`) and
/// platform-scoped ones (`NAME::PLATFORM`). A use is looked up with the
/// platform BuildKit gives it (the stage's platform for FROM, the target
/// platform for `--from`): the context scoped to that platform first,
/// then the plain one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedContexts {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    /// `Some` for a `NAME::PLATFORM` context.
    platform: Option<Platform>,
    /// `NAME` or `NAME::PLATFORM`: what the entry is known by once a use
    /// has chosen it (BuildKit's "name with platform").
    key: String,
    source: ContextSource,
}

impl NamedContexts {
    /// Adds `name`; a later flag for the same name wins, as buildx's map.
    pub fn insert(&mut self, name: &str, source: ContextSource) {
        self.push(name, None, source);
    }

    /// Adds `name` for `platform` only (`NAME::PLATFORM`); a later flag
    /// for the same name and platform wins.
    pub fn insert_scoped(&mut self, name: &str, platform: &Platform, source: ContextSource) {
        self.push(name, Some(platform.clone()), source);
    }

    fn push(&mut self, name: &str, platform: Option<Platform>, source: ContextSource) {
        let key = scoped_key(name, platform.as_ref());
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry {
            name: name.to_string(),
            platform,
            key,
            source,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The context `name` (a stage name or an image reference, as the
    /// Dockerfile writes it) refers to when used for `platform`, with its
    /// key: one scoped to `platform` before a plain one, and for each an
    /// exact match before one whose name normalises to the same image
    /// reference.
    pub fn lookup(&self, name: &str, platform: &Platform) -> Option<(&str, &ContextSource)> {
        let normalised = normalise(name);
        let same_name = |e: &Entry| e.name == name;
        let same_image = |e: &Entry| {
            normalised.is_some() && normalise(&e.name).as_deref() == normalised.as_deref()
        };
        let scoped = |e: &Entry| e.platform.as_ref() == Some(platform);
        let plain = |e: &Entry| e.platform.is_none();
        let found = self
            .find(|e| scoped(e) && same_name(e))
            .or_else(|| self.find(|e| scoped(e) && same_image(e)))
            .or_else(|| self.find(|e| plain(e) && same_name(e)))
            .or_else(|| self.find(|e| plain(e) && same_image(e)))?;
        Some((found.key.as_str(), &found.source))
    }

    /// The context called exactly `name` when used for `platform` (the
    /// one scoped to it first), with its key.
    pub fn get(&self, name: &str, platform: &Platform) -> Option<(&str, &ContextSource)> {
        let found = self
            .find(|e| e.name == name && e.platform.as_ref() == Some(platform))
            .or_else(|| self.find(|e| e.name == name && e.platform.is_none()))?;
        Some((found.key.as_str(), &found.source))
    }

    /// The context a use chose, by the key [`Self::lookup`] or
    /// [`Self::get`] gave.
    pub fn by_key(&self, key: &str) -> Option<&ContextSource> {
        self.find(|e| e.key == key).map(|e| &e.source)
    }

    fn find(&self, pred: impl Fn(&Entry) -> bool) -> Option<&Entry> {
        self.entries.iter().find(|e| pred(e))
    }
}

/// The key of context `name` scoped to `platform` (`NAME::PLATFORM`), or
/// plain `name`: it names the context in step names and, for a local
/// directory, among the build's local sources.
pub fn scoped_key(name: &str, platform: Option<&Platform>) -> String {
    match platform {
        Some(platform) => format!("{name}::{platform}"),
        None => name.to_string(),
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
        let amd: Platform = "linux/amd64".parse().unwrap();
        let mut contexts = NamedContexts::default();
        contexts.insert("alpine", ContextSource::Local);
        contexts.insert("base", ContextSource::Stage("b".into()));
        contexts.insert("me/app:1", ContextSource::Image("x".into()));
        for name in ["alpine", "alpine:latest", "docker.io/library/alpine"] {
            assert_eq!(
                contexts.lookup(name, &amd).map(|f| f.0),
                Some("alpine"),
                "{name}"
            );
        }
        assert!(contexts.lookup("alpine:3", &amd).is_none());
        assert_eq!(
            contexts.lookup("me/app:1", &amd).map(|f| f.0),
            Some("me/app:1")
        );
        assert!(contexts.lookup("me/app", &amd).is_none());
        assert_eq!(
            contexts.lookup("base", &amd).map(|f| f.1),
            Some(&ContextSource::Stage("b".into()))
        );
        // The last flag for a name wins.
        contexts.insert("base", ContextSource::Local);
        assert_eq!(
            contexts.get("base", &amd),
            Some(("base", &ContextSource::Local))
        );
    }

    #[test]
    fn scoped_contexts_win_for_their_platform_only() {
        let amd: Platform = "linux/amd64".parse().unwrap();
        let arm: Platform = "linux/arm64".parse().unwrap();
        let riscv: Platform = "linux/riscv64".parse().unwrap();
        let mut contexts = NamedContexts::default();
        let arm_dir = ContextSource::ScopedLocal("alpine::linux/arm64".into());
        contexts.insert_scoped("alpine", &arm, arm_dir.clone());
        contexts.insert("alpine", ContextSource::Local);
        contexts.insert_scoped("tool", &amd, ContextSource::Image("t:amd".into()));
        // Scoped first, for any spelling of the image name.
        for name in ["alpine", "docker.io/library/alpine:latest"] {
            assert_eq!(
                contexts.lookup(name, &arm),
                Some(("alpine::linux/arm64", &arm_dir)),
                "{name}"
            );
            assert_eq!(
                contexts.lookup(name, &amd),
                Some(("alpine", &ContextSource::Local)),
                "{name}"
            );
        }
        assert_eq!(
            contexts.get("tool", &amd),
            Some(("tool::linux/amd64", &ContextSource::Image("t:amd".into())))
        );
        // No plain `tool`: other platforms see no context at all.
        assert!(contexts.get("tool", &riscv).is_none());
        assert!(contexts.lookup("tool", &arm).is_none());
        assert_eq!(contexts.by_key("alpine::linux/arm64"), Some(&arm_dir));
        assert_eq!(contexts.by_key("alpine"), Some(&ContextSource::Local));
        assert!(contexts.by_key("tool").is_none());
        // A later flag for the same name and platform wins; the plain one
        // stays.
        contexts.insert_scoped("alpine", &arm, ContextSource::Image("a:arm".into()));
        assert_eq!(
            contexts.by_key("alpine::linux/arm64"),
            Some(&ContextSource::Image("a:arm".into()))
        );
        assert_eq!(contexts.by_key("alpine"), Some(&ContextSource::Local));
    }
}
