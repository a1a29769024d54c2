//! Writing build cache: the records of a build become a cache config
//! and an OCI manifest in the content store ([`CacheManifest`]), which
//! is then copied into an OCI layout directory ([`write_local`]) or
//! pushed by the caller.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::config::{self, CacheConfig, CacheLayer, CacheRecord, CacheResult, LayerAnnotations};
use super::{RemoteCacheError, Result, CACHE_CONFIG_MEDIA_TYPE, OCI_MANIFEST, REF_NAME};
use crate::content::{digest_hex, ContentStore, Descriptor};
use crate::util::fs::{self, FsError};

/// One layer of a result's chain, made and stored in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportLayer {
    pub descriptor: Descriptor,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

/// A cache key and its result's chain, bottom layer first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRecord {
    pub key: String,
    pub chain: Vec<ExportLayer>,
}

/// A cache config and the layers it names, in config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheManifest {
    pub config: CacheConfig,
    pub layers: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

impl CacheManifest {
    /// The config for `records`: chains that share a bottom share its
    /// layers (one config layer per distinct prefix), and a record with
    /// an empty chain (a step that left scratch empty) is left out, as
    /// there is no layer to point at. Keys are sorted so that the same
    /// build gives the same bytes.
    pub fn new(records: &[ExportRecord]) -> CacheManifest {
        let mut sorted: Vec<&ExportRecord> = records.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.chain.len().cmp(&b.chain.len())));
        let mut out = CacheManifest {
            config: CacheConfig::default(),
            layers: Vec::new(),
        };
        // (parent index, blob) → index.
        let mut index: HashMap<(i64, String), i64> = HashMap::new();
        let mut seen_keys = std::collections::HashSet::new();
        for record in sorted {
            if record.chain.is_empty() || !seen_keys.insert(record.key.clone()) {
                continue;
            }
            let mut parent = -1i64;
            for layer in &record.chain {
                let at = (parent, layer.descriptor.digest.clone());
                parent = match index.get(&at) {
                    Some(&i) => i,
                    None => {
                        let i = out.config.layers.len() as i64;
                        out.config.layers.push(CacheLayer {
                            blob: layer.descriptor.digest.clone(),
                            parent_index: parent,
                            annotations: Some(LayerAnnotations {
                                media_type: layer.descriptor.media_type.clone(),
                                diff_id: layer.diff_id.clone(),
                                size: i64::try_from(layer.descriptor.size).unwrap_or(i64::MAX),
                                created_at: config::epoch(),
                            }),
                        });
                        if !out
                            .layers
                            .iter()
                            .any(|d| d.digest == layer.descriptor.digest)
                        {
                            let mut d = layer.descriptor.clone();
                            d.annotations = BTreeMap::from([(
                                "containerd.io/uncompressed".to_string(),
                                layer.diff_id.clone(),
                            )]);
                            out.layers.push(d);
                        }
                        index.insert(at, i);
                        i
                    }
                };
            }
            out.config.records.push(CacheRecord {
                results: vec![CacheResult {
                    layer_index: parent,
                    created_at: config::epoch(),
                }],
                digest: record.key.clone(),
                inputs: Vec::new(),
            });
        }
        out
    }

    /// The config as JSON.
    pub fn config_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.config).map_err(|source| RemoteCacheError::Encode {
            what: "config",
            source,
        })
    }

    /// Stores the config and a manifest naming it and the layers in
    /// `content`; returns the manifest's and the config's descriptors
    /// (the layers must be there already).
    pub fn store(&self, content: &ContentStore) -> Result<(Descriptor, Descriptor)> {
        let config = content
            .put(CACHE_CONFIG_MEDIA_TYPE, &self.config_json()?)
            .map_err(|source| RemoteCacheError::StoreBlob {
                what: "config",
                source,
            })?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST,
            config: &config,
            layers: &self.layers,
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|source| RemoteCacheError::Encode {
            what: "manifest",
            source,
        })?;
        let manifest =
            content
                .put(OCI_MANIFEST, &bytes)
                .map_err(|source| RemoteCacheError::StoreBlob {
                    what: "manifest",
                    source,
                })?;
        Ok((manifest, config))
    }
}

#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// Writes the cache whose manifest is `manifest` (in `content`, with its
/// config and `layers`) into the OCI layout at `dir` under `tag`. Blobs
/// go first, each by temp file and rename; `index.json` is renamed into
/// place last, so a crash leaves the previous index (and everything it
/// names) readable. Other tags in an existing index are kept.
pub fn write_local(
    dir: &Path,
    content: &ContentStore,
    manifest: &Descriptor,
    config: &Descriptor,
    layers: &[Descriptor],
    tag: &str,
) -> Result<()> {
    let write_err = |source| RemoteCacheError::WriteDir {
        dir: dir.to_path_buf(),
        source,
    };
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(write_err)?;
    for d in layers.iter().chain([config, manifest]) {
        copy_blob(content, &blobs, &d.digest)?;
    }
    fs::write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(write_err)?;
    let index_path = dir.join("index.json");
    let mut index = match std::fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice::<Index>(&bytes).unwrap_or(Index {
            schema_version: 2,
            media_type: String::new(),
            manifests: Vec::new(),
        }),
        Err(_) => Index {
            schema_version: 2,
            media_type: String::new(),
            manifests: Vec::new(),
        },
    };
    index.schema_version = 2;
    index.media_type = "application/vnd.oci.image.index.v1+json".into();
    index
        .manifests
        .retain(|d| d.annotations.get(REF_NAME).is_some_and(|t| t != tag));
    let mut entry = manifest.clone();
    entry.annotations = BTreeMap::from([(REF_NAME.to_string(), tag.to_string())]);
    index.manifests.push(entry);
    let bytes = serde_json::to_vec(&index).map_err(|source| RemoteCacheError::Encode {
        what: "index",
        source,
    })?;
    fs::write_atomic(&index_path, &bytes).map_err(write_err)
}

/// Copies blob `digest` from `content` into `blobs` unless it is there
/// (a blob's name is its content, so an existing one is complete: it was
/// renamed into place).
fn copy_blob(content: &ContentStore, blobs: &Path, digest: &str) -> Result<()> {
    let hex = digest_hex(digest).map_err(|_| RemoteCacheError::Digest(digest.into()))?;
    let target = blobs.join(hex);
    if target.exists() {
        return Ok(());
    }
    let copy_err = |source| RemoteCacheError::CopyBlob {
        digest: digest.into(),
        source,
    };
    let from = content
        .path(digest)
        .map_err(|_| RemoteCacheError::Digest(digest.into()))?;
    let tmp = blobs.join(format!(".{hex}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut src = std::fs::File::open(&from).map_err(|e| FsError::new("open", &from, e))?;
        let mut dst = std::fs::File::create(&tmp).map_err(|e| FsError::new("create", &tmp, e))?;
        let len = src.metadata().map(|m| m.len()).unwrap_or(0);
        fs::copy_data(&mut src, &mut dst, len).map_err(|e| FsError::new("copy to", &tmp, e))?;
        dst.flush().map_err(|e| FsError::new("write", &tmp, e))?;
        dst.sync_all().map_err(|e| FsError::new("sync", &tmp, e))?;
        std::fs::rename(&tmp, &target).map_err(|e| FsError::new("rename into place", &target, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(copy_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(d: &str) -> ExportLayer {
        ExportLayer {
            descriptor: Descriptor {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                digest: d.into(),
                size: 1,
                annotations: BTreeMap::new(),
            },
            diff_id: format!("{d}-diff"),
        }
    }

    #[test]
    fn chains_share_their_prefixes() {
        let records = vec![
            ExportRecord {
                key: "k2".into(),
                chain: vec![layer("a"), layer("b")],
            },
            ExportRecord {
                key: "k1".into(),
                chain: vec![layer("a")],
            },
            ExportRecord {
                key: "k0".into(),
                chain: vec![],
            },
        ];
        let m = CacheManifest::new(&records);
        assert_eq!(m.config.layers.len(), 2);
        assert_eq!(m.config.layers[0].parent_index, -1);
        assert_eq!(m.config.layers[1].parent_index, 0);
        assert_eq!(m.config.records.len(), 2);
        assert_eq!(m.config.records[0].digest, "k1");
        assert_eq!(m.config.records[0].results[0].layer_index, 0);
        assert_eq!(m.config.records[1].results[0].layer_index, 1);
        assert_eq!(m.layers.len(), 2);
    }
}
