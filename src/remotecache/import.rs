//! Reading build cache: a cache manifest (or an image whose config
//! carries an inline cache) becomes [`Imported`], a map from cache key to
//! the top layer of the key's result. Nothing but the manifest and the
//! config is read up front; a layer blob is fetched only when the solver
//! has a hit on it ([`ImportedLayer::fetch`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use super::config::CacheConfig;
use super::{RemoteCacheError, Result, CACHE_CONFIG_MEDIA_TYPE, INLINE_CACHE_KEY, REF_NAME};
use crate::content::digest_hex;
use crate::image::Reference;
use crate::registry::{self, Registry};
use crate::util::fs;

/// Where a cache was imported from.
#[derive(Debug, Clone)]
pub enum ImportSource {
    /// An OCI layout directory.
    Dir(PathBuf),
    /// A registry repository.
    Registry(Arc<Registry>, Reference),
}

impl ImportSource {
    fn describe(&self) -> String {
        match self {
            ImportSource::Dir(dir) => dir.display().to_string(),
            ImportSource::Registry(_, r) => r.to_string(),
        }
    }
}

/// A result's top layer, as an imported cache names it.
#[derive(Debug, Clone)]
pub struct ImportedLayer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// `sha256:` of the uncompressed tar, when the cache says it.
    pub diff_id: Option<String>,
    source: Arc<ImportSource>,
}

impl ImportedLayer {
    /// The blob's path on this machine: in the cache directory, or
    /// downloaded into the content store.
    pub async fn fetch(&self) -> Result<PathBuf> {
        match &*self.source {
            ImportSource::Dir(dir) => {
                let hex = digest_hex(&self.digest)
                    .map_err(|_| RemoteCacheError::Digest(self.digest.clone()))?;
                Ok(dir.join("blobs/sha256").join(hex))
            }
            ImportSource::Registry(registry, reference) => {
                let desc = registry::Descriptor {
                    media_type: self.media_type.clone(),
                    digest: self.digest.clone(),
                    size: self.size,
                    platform: None,
                    annotations: HashMap::new(),
                };
                registry
                    .fetch_blob(reference, &desc)
                    .await
                    .map_err(|source| RemoteCacheError::Registry {
                        reference: reference.to_string(),
                        source: Box::new(source),
                    })
            }
        }
    }
}

/// Imported cache records, by cache key.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    records: HashMap<String, ImportedLayer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Blob {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Blob,
    #[serde(default)]
    layers: Vec<Blob>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Blob>,
}

impl Imported {
    /// How many records there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The top layer of `key`'s result, if the cache has it.
    pub fn get(&self, key: &str) -> Option<&ImportedLayer> {
        self.records.get(key)
    }

    /// Adds `other`'s records (earlier sources win on a shared key).
    pub fn extend(&mut self, other: Imported) {
        for (k, v) in other.records {
            self.records.entry(k).or_insert(v);
        }
    }

    /// Reads the cache in the OCI layout `dir`: the manifest with
    /// `digest`, else the one tagged `tag` (`latest` by default).
    pub fn load_dir(dir: &Path, tag: Option<&str>, digest: Option<&str>) -> Result<Imported> {
        let read_err = |source| RemoteCacheError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        };
        let where_ = dir.display().to_string();
        let index_bytes = fs::read(&dir.join("index.json")).map_err(read_err)?;
        let index: Index =
            serde_json::from_slice(&index_bytes).map_err(|source| RemoteCacheError::Parse {
                what: "index.json",
                where_: where_.clone(),
                source,
            })?;
        let tag = tag.unwrap_or("latest");
        let entry = index
            .manifests
            .iter()
            .find(|d| match digest {
                Some(want) => d.digest == want,
                None => d.annotations.get(REF_NAME).map(String::as_str) == Some(tag),
            })
            .ok_or_else(|| RemoteCacheError::NoManifest {
                wanted: digest.map_or_else(|| format!("tagged {tag}"), str::to_string),
                where_: where_.clone(),
            })?;
        let blob = |digest: &str| -> Result<Vec<u8>> {
            let hex = digest_hex(digest).map_err(|_| RemoteCacheError::Digest(digest.into()))?;
            fs::read(&dir.join("blobs/sha256").join(hex)).map_err(read_err)
        };
        let manifest_bytes = blob(&entry.digest)?;
        let manifest = parse_manifest(&manifest_bytes, &where_)?;
        let config_bytes = blob(&manifest.config.digest)?;
        Self::from_parts(
            &manifest,
            &config_bytes,
            Arc::new(ImportSource::Dir(dir.to_path_buf())),
        )
    }

    /// Reads the cache (or the image with inline cache) `reference`
    /// names on its registry.
    pub async fn load_registry(registry: Arc<Registry>, reference: Reference) -> Result<Imported> {
        let reg_err = |source| RemoteCacheError::Registry {
            reference: reference.to_string(),
            source: Box::new(source),
        };
        let (bytes, _) = registry.fetch_manifest(&reference).await.map_err(reg_err)?;
        let manifest = parse_manifest(&bytes, &reference.to_string())?;
        let desc = registry::Descriptor {
            media_type: manifest.config.media_type.clone(),
            digest: manifest.config.digest.clone(),
            size: manifest.config.size,
            platform: None,
            annotations: HashMap::new(),
        };
        let path = registry
            .fetch_blob(&reference, &desc)
            .await
            .map_err(reg_err)?;
        let config_bytes = fs::read(&path).map_err(|source| RemoteCacheError::ReadDir {
            dir: path.clone(),
            source,
        })?;
        Self::from_parts(
            &manifest,
            &config_bytes,
            Arc::new(ImportSource::Registry(registry, reference)),
        )
    }

    fn from_parts(
        manifest: &Manifest,
        config_bytes: &[u8],
        source: Arc<ImportSource>,
    ) -> Result<Imported> {
        let where_ = source.describe();
        let parse_err = |source| RemoteCacheError::Parse {
            what: "the cache config",
            where_: where_.clone(),
            source,
        };
        let config: CacheConfig = if manifest.config.media_type == CACHE_CONFIG_MEDIA_TYPE {
            serde_json::from_slice(config_bytes).map_err(parse_err)?
        } else {
            // An image: its config may carry an inline cache.
            let value: serde_json::Value =
                serde_json::from_slice(config_bytes).map_err(parse_err)?;
            let inline = value
                .get(INLINE_CACHE_KEY)
                .and_then(|v| v.as_str())
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| RemoteCacheError::NotCache {
                    where_: where_.clone(),
                    media_type: manifest.config.media_type.clone(),
                })?;
            serde_json::from_slice(&inline).map_err(parse_err)?
        };
        let mut records = HashMap::new();
        for record in &config.records {
            // One result per record is all bk writes; BuildKit's may
            // have several (equivalent), any will do.
            let Some(layer) = record
                .results
                .iter()
                .find_map(|r| usize::try_from(r.layer_index).ok())
                .and_then(|i| config.layers.get(i))
            else {
                continue;
            };
            let Some(blob) = manifest.layers.iter().find(|b| b.digest == layer.blob) else {
                continue;
            };
            let annotated = layer.annotations.as_ref();
            let diff_id = annotated
                .map(|a| a.diff_id.clone())
                .filter(|d| !d.is_empty())
                .or_else(|| blob.annotations.get("containerd.io/uncompressed").cloned());
            records.insert(
                record.digest.clone(),
                ImportedLayer {
                    media_type: blob.media_type.clone(),
                    digest: blob.digest.clone(),
                    size: blob.size,
                    diff_id,
                    source: source.clone(),
                },
            );
        }
        Ok(Imported { records })
    }
}

/// A cache manifest: an image manifest (bk's and BuildKit's
/// `image-manifest=true` shape, or an image with inline cache), or
/// BuildKit's default shape, an index whose entries are the layer blobs
/// plus the cache config.
fn parse_manifest(bytes: &[u8], where_: &str) -> Result<Manifest> {
    let parse_err = |source| RemoteCacheError::Parse {
        what: "the cache manifest",
        where_: where_.into(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(parse_err)?;
    if value.get("config").is_none() {
        if let Some(entries) = value.get("manifests") {
            let entries: Vec<Blob> = serde_json::from_value(entries.clone()).map_err(parse_err)?;
            let (configs, layers): (Vec<Blob>, Vec<Blob>) = entries
                .into_iter()
                .partition(|b| b.media_type == CACHE_CONFIG_MEDIA_TYPE);
            if let Some(config) = configs.into_iter().next() {
                return Ok(Manifest { config, layers });
            }
        }
    }
    serde_json::from_value(value).map_err(parse_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentStore;
    use crate::remotecache::{write_local, CacheManifest, ExportLayer, ExportRecord};

    #[test]
    fn a_local_layout_round_trips_by_tag_and_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let content = ContentStore::open(&tmp.path().join("store")).unwrap();
        let blob = content
            .put("application/vnd.oci.image.layer.v1.tar", b"layer bytes")
            .unwrap();
        let records = [ExportRecord {
            key: "sha256:01".into(),
            chain: vec![ExportLayer {
                descriptor: blob.clone(),
                diff_id: blob.digest.clone(),
            }],
        }];
        let manifest = CacheManifest::new(&records);
        let (m, c) = manifest.store(&content).unwrap();
        let dir = tmp.path().join("cache");
        write_local(&dir, &content, &m, &c, &manifest.layers, "v2").unwrap();
        assert!(Imported::load_dir(&dir, None, None).is_err());
        for imported in [
            Imported::load_dir(&dir, Some("v2"), None).unwrap(),
            Imported::load_dir(&dir, None, Some(&m.digest)).unwrap(),
        ] {
            let hit = imported.get("sha256:01").unwrap();
            assert_eq!(hit.digest, blob.digest);
            assert_eq!(hit.diff_id.as_deref(), Some(blob.digest.as_str()));
            assert!(imported.get("sha256:02").is_none());
        }
    }

    #[test]
    fn buildkit_index_shape_is_read() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:aa","size":3}},
            {{"mediaType":"{CACHE_CONFIG_MEDIA_TYPE}","digest":"sha256:cc","size":9}}]}}"#
        );
        let m = parse_manifest(index.as_bytes(), "x").unwrap();
        assert_eq!(m.config.digest, "sha256:cc");
        assert_eq!(m.layers.len(), 1);
    }
}
