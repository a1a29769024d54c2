//! Vertices, their digests, and the graph that holds them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::op::Op;
use crate::image::Platform;

/// `sha256:<64 hex>`: the identity of a vertex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// Why a graph is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DefinitionError {
    #[error("invalid digest {0:?}: expected sha256:<64 lower-case hex digits>")]
    InvalidDigest(String),
    #[error("vertex {vertex} refers to unknown input {input}")]
    UnknownInput { vertex: Digest, input: Digest },
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, e.g. for file names.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl TryFrom<String> for Digest {
    type Error = DefinitionError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok = s.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(Digest(s))
        } else {
            Err(DefinitionError::InvalidDigest(s))
        }
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An edge: output `output` of vertex `digest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Input {
    pub digest: Digest,
    pub output: u32,
}

/// An operation with its inputs: the digested part of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    pub op: Op,
    pub inputs: Vec<Input>,
    /// The platform the op runs for (None for platform-neutral ops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Vertex {
    /// sha256 over the canonical JSON of the vertex.
    pub fn digest(&self) -> Digest {
        // Serialising plain structs and BTreeMaps cannot fail; an error
        // here would be a bug in a derive, so fall back to the Debug text
        // rather than panic.
        let bytes = serde_json::to_vec(self).unwrap_or_else(|_| format!("{self:?}").into_bytes());
        Digest::of(&bytes)
    }
}

/// What a vertex carries besides its identity: how progress names it and
/// whether the cache may answer for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Progress name, e.g. `[build 2/4] COPY src/ /app/`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `--no-cache` / `--no-cache-filter`: always execute.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_cache: bool,
    /// Free-form description (`llb.customname`, source location, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub description: BTreeMap<String, String>,
}

/// A build graph: vertices in insertion order (inputs always before the
/// vertices that use them) and the output to build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definition {
    vertices: BTreeMap<Digest, (Vertex, Metadata)>,
    order: Vec<Digest>,
    /// The result to build; None is an empty filesystem (`FROM scratch`).
    pub root: Option<Input>,
}

impl Definition {
    pub fn new() -> Definition {
        Definition::default()
    }

    /// Adds a vertex (once: an identical vertex is shared) and returns its
    /// first output. Inputs must have been added before. Metadata of a
    /// shared vertex merges: it ignores the cache if any user asked so.
    pub fn add(&mut self, vertex: Vertex, metadata: Metadata) -> Result<Input, DefinitionError> {
        let digest = vertex.digest();
        for input in &vertex.inputs {
            if !self.vertices.contains_key(&input.digest) {
                return Err(DefinitionError::UnknownInput {
                    vertex: digest,
                    input: input.digest.clone(),
                });
            }
        }
        match self.vertices.get_mut(&digest) {
            Some((_, existing)) => existing.ignore_cache |= metadata.ignore_cache,
            None => {
                self.order.push(digest.clone());
                self.vertices.insert(digest.clone(), (vertex, metadata));
            }
        }
        Ok(Input { digest, output: 0 })
    }

    pub fn get(&self, digest: &Digest) -> Option<&(Vertex, Metadata)> {
        self.vertices.get(digest)
    }

    /// Vertices in an order where inputs come first.
    pub fn iter(&self) -> impl Iterator<Item = (&Digest, &Vertex, &Metadata)> {
        self.order
            .iter()
            .filter_map(move |d| self.vertices.get(d).map(|(v, m)| (d, v, m)))
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Adds every vertex of `other` (inputs first, each once: a vertex
    /// both graphs hold stays one, keeping this graph's name and ignoring
    /// the cache if either asked so) and returns `other`'s root, valid in
    /// this graph. How several platforms' graphs become one build:
    /// identical steps (a stage on the build platform) run once.
    pub fn absorb(&mut self, other: &Definition) -> Option<Input> {
        for digest in &other.order {
            if let Some((vertex, meta)) = other.vertices.get(digest) {
                match self.vertices.get_mut(digest) {
                    Some((_, existing)) => existing.ignore_cache |= meta.ignore_cache,
                    None => {
                        // `other` holds inputs before their users, so
                        // this graph's order stays valid.
                        self.order.push(digest.clone());
                        self.vertices
                            .insert(digest.clone(), (vertex.clone(), meta.clone()));
                    }
                }
            }
        }
        other.root.clone()
    }

    /// Only the vertices `root` depends on, in dependency order.
    pub fn reachable(&self) -> Vec<&Digest> {
        self.reachable_from(self.root.as_slice())
    }

    /// Only the vertices some of `roots` depend on, each once, in
    /// dependency order.
    pub fn reachable_from<'a>(&'a self, roots: &'a [Input]) -> Vec<&'a Digest> {
        let mut needed = std::collections::BTreeSet::new();
        let mut stack: Vec<&Digest> = roots.iter().map(|i| &i.digest).collect();
        while let Some(d) = stack.pop() {
            if needed.insert(d) {
                if let Some((v, _)) = self.vertices.get(d) {
                    stack.extend(v.inputs.iter().map(|i| &i.digest));
                }
            }
        }
        self.order.iter().filter(|d| needed.contains(d)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llb::op::{FileAction, FileActionKind, FileOp, SourceOp};

    fn source(id: &str) -> Vertex {
        Vertex {
            op: Op::Source(SourceOp {
                identifier: id.into(),
                attrs: BTreeMap::new(),
            }),
            inputs: vec![],
            platform: None,
        }
    }

    fn mkdir_on(input: Input, path: &str) -> Vertex {
        Vertex {
            op: Op::File(FileOp {
                actions: vec![FileAction {
                    input: Some(0),
                    secondary_input: None,
                    action: FileActionKind::Mkdir {
                        path: path.into(),
                        mode: 0o755,
                        make_parents: true,
                        owner: None,
                        timestamp: None,
                    },
                }],
            }),
            inputs: vec![input],
            platform: None,
        }
    }

    #[test]
    fn digests_are_stable_and_semantic() {
        assert_eq!(
            source("local://context").digest(),
            source("local://context").digest()
        );
        assert_ne!(
            source("local://context").digest(),
            source("local://other").digest()
        );
        let a = source("local://a").digest();
        let b = source("local://b").digest();
        let on_a = mkdir_on(
            Input {
                digest: a.clone(),
                output: 0,
            },
            "/x",
        );
        let on_b = mkdir_on(
            Input {
                digest: b,
                output: 0,
            },
            "/x",
        );
        assert_ne!(
            on_a.digest(),
            on_b.digest(),
            "inputs are part of the digest"
        );
        assert_ne!(
            on_a.digest(),
            mkdir_on(
                Input {
                    digest: a,
                    output: 0
                },
                "/y"
            )
            .digest()
        );
        let mut platformed = source("local://context");
        platformed.platform = Some("linux/arm64".parse().unwrap());
        assert_ne!(platformed.digest(), source("local://context").digest());
    }

    #[test]
    fn identical_vertices_are_shared_and_inputs_must_exist() {
        let mut def = Definition::new();
        let a = def
            .add(source("local://context"), Metadata::default())
            .unwrap();
        let again = def
            .add(
                source("local://context"),
                Metadata {
                    ignore_cache: true,
                    ..Metadata::default()
                },
            )
            .unwrap();
        assert_eq!(a, again);
        assert_eq!(def.len(), 1);
        assert!(def.get(&a.digest).unwrap().1.ignore_cache);
        let dangling = mkdir_on(
            Input {
                digest: Digest::of(b"nothing"),
                output: 0,
            },
            "/x",
        );
        assert!(matches!(
            def.add(dangling, Metadata::default()),
            Err(DefinitionError::UnknownInput { .. })
        ));
    }

    #[test]
    fn reachable_skips_unused_vertices() {
        let mut def = Definition::new();
        let used = def.add(source("local://a"), Metadata::default()).unwrap();
        def.add(source("local://unused"), Metadata::default())
            .unwrap();
        let top = def
            .add(mkdir_on(used.clone(), "/x"), Metadata::default())
            .unwrap();
        def.root = Some(top.clone());
        assert_eq!(def.reachable(), vec![&used.digest, &top.digest]);
    }

    #[test]
    fn absorb_shares_identical_vertices_and_keeps_order() {
        let mut amd = Definition::new();
        let ctx = amd
            .add(source("local://context"), Metadata::default())
            .unwrap();
        let top_amd = amd
            .add(mkdir_on(ctx.clone(), "/amd64"), Metadata::default())
            .unwrap();
        amd.root = Some(top_amd.clone());
        let mut arm = Definition::new();
        arm.add(
            source("local://context"),
            Metadata {
                ignore_cache: true,
                ..Metadata::default()
            },
        )
        .unwrap();
        let top_arm = arm
            .add(mkdir_on(ctx.clone(), "/arm64"), Metadata::default())
            .unwrap();
        arm.root = Some(top_arm.clone());

        let mut all = Definition::new();
        assert_eq!(all.absorb(&amd), Some(top_amd.clone()));
        assert_eq!(all.absorb(&arm), Some(top_arm.clone()));
        assert_eq!(all.len(), 3, "the shared context is one vertex");
        assert!(all.get(&ctx.digest).unwrap().1.ignore_cache);
        assert_eq!(all.absorb(&Definition::new()), None);
        let roots = [top_amd.clone(), top_arm.clone()];
        assert_eq!(
            all.reachable_from(&roots),
            vec![&ctx.digest, &top_amd.digest, &top_arm.digest]
        );
        assert_eq!(
            all.reachable_from(&roots[1..]),
            vec![&ctx.digest, &top_arm.digest]
        );
    }

    #[test]
    fn digest_strings_are_validated() {
        assert!(Digest::try_from("sha256:abc".to_string()).is_err());
        let d = Digest::of(b"x");
        assert_eq!(Digest::try_from(d.to_string()).unwrap(), d);
        assert_eq!(d.hex().len(), 64);
    }
}
