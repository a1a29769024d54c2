//! Cache keys: what a vertex's result depends on, hashed. Two vertices
//! with the same key produce the same filesystem, so the second can reuse
//! the first one's snapshot.
//!
//! A key is sha256 over a canonical JSON document holding
//!
//! - a schema tag, so that a change to this recipe never matches old rows;
//! - the op, with the fields that do not change its result cleared
//!   (`ExecMeta.proxy_env`: a proxy changes how bytes travel, not which
//!   bytes arrive, as in BuildKit's `ExecOp.CacheMap`; the
//!   `local.sharedkeyhint` source attribute: a transfer hint);
//! - the platform;
//! - the inputs' cache keys and output indexes — keys, not digests, so a
//!   COPY's key follows the *content* of the context rather than the
//!   definition of the source that reads it;
//! - for sources whose content lives outside the graph (the build
//!   context), a checksum of exactly the files the source selects.
//!
//! `Metadata` (progress names, `ignore_cache`, locations) is never part of
//! a key: renaming a stage or moving a line keeps the cache.
//!
//! Pure data → digest: imports `llb`, `image` (the platform) and the
//! cache's key type only.

use serde::Serialize;

use crate::cache::{CacheKey, Digest};
use crate::image::Platform;
use crate::llb::{Op, Vertex};

/// Bumped whenever the recipe below changes meaning.
const SCHEMA: &str = "bk.cachekey.v1";

/// Source attributes that do not change what a source produces.
const IGNORED_SOURCE_ATTRS: &[&str] = &["local.sharedkeyhint"];

/// An input as it enters a key: its own cache key and which output of it.
#[derive(Debug, Clone, Copy)]
pub struct InputKey<'a> {
    pub key: &'a CacheKey,
    pub output: u32,
}

#[derive(Serialize)]
struct Canonical<'a> {
    schema: &'static str,
    op: Op,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a Platform>,
    inputs: Vec<(&'a str, u32)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// The op with every field that must not affect caching cleared.
pub fn canonical_op(op: &Op) -> Op {
    let mut op = op.clone();
    match &mut op {
        Op::Exec(exec) => exec.meta.proxy_env.clear(),
        Op::Source(source) => {
            for attr in IGNORED_SOURCE_ATTRS {
                source.attrs.remove(*attr);
            }
        }
        Op::File(_) | Op::Merge(_) | Op::Diff(_) => {}
    }
    op
}

/// The cache key of `vertex`, given its inputs' keys (in `vertex.inputs`
/// order) and, for sources that read outside content, that content's
/// checksum.
pub fn compute(vertex: &Vertex, inputs: &[InputKey<'_>], content: Option<&str>) -> CacheKey {
    let canonical = Canonical {
        schema: SCHEMA,
        op: canonical_op(&vertex.op),
        platform: vertex.platform.as_ref(),
        inputs: inputs.iter().map(|i| (i.key.as_str(), i.output)).collect(),
        content,
    };
    // The document is plain structs, strings and BTreeMaps: serialising
    // cannot fail. Should it ever, the Debug text is just as canonical.
    let bytes = serde_json::to_vec(&canonical)
        .unwrap_or_else(|_| format!("{SCHEMA}{vertex:?}{inputs:?}{content:?}").into_bytes());
    CacheKey::from(Digest::of(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llb::{
        CopyAction, ExecMeta, ExecOp, FileAction, FileActionKind, FileOp, Input, Mount, MountKind,
        NetMode, SecurityMode, SourceOp,
    };

    /// A cache key made up for a test.
    fn key(seed: &[u8]) -> CacheKey {
        CacheKey::from(Digest::of(seed))
    }

    fn context(attrs: &[(&str, &str)]) -> Vertex {
        Vertex {
            op: Op::Source(SourceOp {
                identifier: "local://context".into(),
                attrs: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            inputs: vec![],
            platform: None,
        }
    }

    fn run(proxy_env: &[&str]) -> Vertex {
        Vertex {
            op: Op::Exec(ExecOp {
                meta: ExecMeta {
                    args: vec!["/bin/sh".into(), "-c".into(), "make".into()],
                    env: vec!["PATH=/usr/bin".into()],
                    cwd: "/".into(),
                    user: String::new(),
                    hostname: String::new(),
                    proxy_env: proxy_env.iter().map(|s| s.to_string()).collect(),
                },
                mounts: vec![Mount {
                    input: Some(0),
                    selector: String::new(),
                    dest: "/".into(),
                    output: Some(0),
                    readonly: false,
                    kind: MountKind::Bind,
                }],
                network: NetMode::Sandbox,
                security: SecurityMode::Sandbox,
            }),
            inputs: vec![Input {
                digest: crate::llb::Digest::of(b"base"),
                output: 0,
            }],
            platform: None,
        }
    }

    fn copy(src: &str) -> Vertex {
        Vertex {
            op: Op::File(FileOp {
                actions: vec![FileAction {
                    input: None,
                    secondary_input: Some(0),
                    action: FileActionKind::Copy(CopyAction {
                        src: src.into(),
                        dest: "/".into(),
                        owner: None,
                        mode: None,
                        follow_symlink: true,
                        dir_copy_contents: true,
                        attempt_unpack: false,
                        create_dest_path: true,
                        allow_wildcard: true,
                        allow_empty_wildcard: true,
                        include_patterns: vec![],
                        exclude_patterns: vec![],
                        required_paths: vec![],
                        parents: false,
                        always_replace_existing_dest: false,
                        timestamp: None,
                    }),
                }],
            }),
            // The digest of the source is deliberately bogus: keys must
            // come from the input keys passed in, not from the graph.
            inputs: vec![Input {
                digest: crate::llb::Digest::of(b"whatever"),
                output: 0,
            }],
            platform: None,
        }
    }

    fn key_over(vertex: &Vertex, input: &CacheKey) -> CacheKey {
        compute(
            vertex,
            &[InputKey {
                key: input,
                output: 0,
            }],
            None,
        )
    }

    #[test]
    fn proxy_env_does_not_change_the_key() {
        let base = key(b"base key");
        assert_eq!(
            key_over(&run(&[]), &base),
            key_over(
                &run(&["HTTP_PROXY=http://proxy:3128", "no_proxy=local"]),
                &base
            )
        );
        // …whereas the ordinary environment does.
        let mut other_env = run(&[]);
        if let Op::Exec(exec) = &mut other_env.op {
            exec.meta.env.push("A=1".into());
        }
        assert_ne!(key_over(&run(&[]), &base), key_over(&other_env, &base));
    }

    #[test]
    fn shared_key_hint_does_not_change_the_key() {
        assert_eq!(
            compute(
                &context(&[("local.sharedkeyhint", "context")]),
                &[],
                Some("sha256:1")
            ),
            compute(
                &context(&[("local.sharedkeyhint", "other")]),
                &[],
                Some("sha256:1")
            ),
        );
        assert_ne!(
            compute(
                &context(&[("local.includepatterns", "[\"a\"]")]),
                &[],
                Some("sha256:1")
            ),
            compute(
                &context(&[("local.includepatterns", "[\"b\"]")]),
                &[],
                Some("sha256:1")
            ),
            "the selection itself stays in the key"
        );
    }

    #[test]
    fn an_inputs_content_change_changes_the_key() {
        let before = compute(&context(&[]), &[], Some("sha256:content-a"));
        let after = compute(&context(&[]), &[], Some("sha256:content-b"));
        assert_ne!(before, after);
        assert_ne!(key_over(&copy("a"), &before), key_over(&copy("a"), &after));
        // Same content, same key, whatever the input's digest is.
        let mut moved = copy("a");
        moved.inputs[0].digest = crate::llb::Digest::of(b"another definition");
        assert_eq!(key_over(&copy("a"), &before), key_over(&moved, &before));
    }

    #[test]
    fn the_op_platform_and_output_index_are_in_the_key() {
        let input = key(b"in");
        assert_ne!(key_over(&copy("a"), &input), key_over(&copy("b"), &input));
        let mut arm = copy("a");
        arm.platform = Some("linux/arm64".parse().unwrap());
        assert_ne!(key_over(&copy("a"), &input), key_over(&arm, &input));
        let second = compute(
            &copy("a"),
            &[InputKey {
                key: &input,
                output: 1,
            }],
            None,
        );
        assert_ne!(key_over(&copy("a"), &input), second);
    }
}
