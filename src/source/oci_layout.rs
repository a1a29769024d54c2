//! `oci-layout://PATH[:TAG][@DIGEST]` sources: an image in an OCI image
//! layout directory (`index.json` + `blobs/sha256/…`), as
//! `--build-context NAME=oci-layout://…` names it. The image is chosen as
//! buildx chooses it — the digest when given, else the `index.json` entry
//! whose `org.opencontainers.image.ref.name` is the tag (`latest` by
//! default), else the only entry — then an index is narrowed to the
//! build's platform. Its manifest, config and layers are copied into the
//! content store, each checked against its digest, so the image is then
//! a local image like any other (and its layers can be exported as they
//! are).
//!
//! Imports `content`, `image` and `util`.

use std::io::Write;
use std::path::PathBuf;

use serde::Deserialize;

use crate::content::{sha256_digest, ContentError, ContentStore, Descriptor};
use crate::image::Platform;
use crate::util::fs::FsError;

/// The annotation naming an `index.json` entry.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why an OCI layout could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("invalid OCI layout source {0:?}: expected oci-layout://PATH[:TAG][@DIGEST]")]
    Parse(String),
    #[error("cannot read the OCI layout index")]
    ReadIndex(#[source] FsError),
    #[error("{path}: invalid OCI index")]
    ParseIndex {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "OCI layout {layout}: no image tagged {tag:?} (and more than one image in index.json)"
    )]
    TagNotFound { layout: String, tag: String },
    #[error("OCI layout {layout}: no manifest for {platform} in {digest}")]
    NoPlatform {
        layout: String,
        digest: String,
        platform: String,
    },
    #[error("OCI layout {layout}: invalid digest {digest:?}")]
    Digest { layout: String, digest: String },
    #[error("cannot read blob {digest} of the OCI layout")]
    ReadBlob {
        digest: String,
        #[source]
        source: FsError,
    },
    #[error("blob {digest} of the OCI layout is corrupt (its content hashes to {actual})")]
    Corrupt { digest: String, actual: String },
    #[error("blob {digest} of the OCI layout is not a valid manifest")]
    ParseManifest {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot copy blob {digest} of the OCI layout into the content store")]
    Store {
        digest: String,
        #[source]
        source: ContentError,
    },
}

/// A parsed `oci-layout://` identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    pub path: PathBuf,
    pub tag: String,
    pub digest: Option<String>,
}

impl LayoutRef {
    /// Parses `oci-layout://PATH[:TAG][@DIGEST]`: the digest after the
    /// first `@`, the tag after the first `:` before it, as buildx.
    pub fn parse(identifier: &str) -> Result<LayoutRef, LayoutError> {
        let bad = || LayoutError::Parse(identifier.to_string());
        let rest = identifier.strip_prefix("oci-layout://").ok_or_else(bad)?;
        let (rest, digest) = match rest.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (rest, None),
        };
        let (path, tag) = match rest.split_once(':') {
            Some((p, t)) if !t.is_empty() => (p, t.to_string()),
            Some(_) => return Err(bad()),
            None => (rest, "latest".to_string()),
        };
        if path.is_empty() {
            return Err(bad());
        }
        Ok(LayoutRef {
            path: PathBuf::from(path),
            tag,
            digest,
        })
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Where the blob `digest` is in the layout.
    fn blob_path(&self, digest: &str) -> Result<PathBuf, LayoutError> {
        let (algorithm, hex) = digest
            .split_once(':')
            .filter(|(a, h)| {
                *a == "sha256" && h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .ok_or_else(|| LayoutError::Digest {
                layout: self.name(),
                digest: digest.to_string(),
            })?;
        Ok(self.path.join("blobs").join(algorithm).join(hex))
    }

    /// A small blob (index, manifest, config), checked against its digest.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest)?;
        let bytes = crate::util::fs::read(&path).map_err(|source| LayoutError::ReadBlob {
            digest: digest.to_string(),
            source,
        })?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(LayoutError::Corrupt {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Copies the image for `platform` into `content`; returns its
    /// manifest's descriptor. Blocking.
    pub fn import(
        &self,
        platform: &Platform,
        content: &ContentStore,
    ) -> Result<Descriptor, LayoutError> {
        let mut digest = match &self.digest {
            Some(d) => d.clone(),
            None => self.tagged()?,
        };
        let mut bytes = self.read_blob(&digest)?;
        // An index (or a Docker manifest list): the platform's entry.
        let parse = |digest: &str, bytes: &[u8]| -> Result<Blob, LayoutError> {
            serde_json::from_slice(bytes).map_err(|source| LayoutError::ParseManifest {
                digest: digest.to_string(),
                source,
            })
        };
        let mut blob = parse(&digest, &bytes)?;
        if let Some(manifests) = &blob.manifests {
            let entry = manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| p.serves(platform)))
                .ok_or_else(|| LayoutError::NoPlatform {
                    layout: self.name(),
                    digest: digest.clone(),
                    platform: platform.to_string(),
                })?;
            digest = entry.digest.clone();
            bytes = self.read_blob(&digest)?;
            blob = parse(&digest, &bytes)?;
        }
        let (Some(config), Some(layers)) = (&blob.config, &blob.layers) else {
            return Err(LayoutError::ParseManifest {
                digest: digest.clone(),
                source: serde::de::Error::custom("no config or layers"),
            });
        };
        let config_bytes = self.read_blob(&config.digest)?;
        let store = |digest: &str, source| LayoutError::Store {
            digest: digest.to_string(),
            source,
        };
        content
            .put("", &config_bytes)
            .map_err(|e| store(&config.digest, e))?;
        for layer in layers {
            self.copy_layer(&layer.digest, content)?;
        }
        // The manifest last: once it is there, everything it names is.
        let media_type = blob.media_type.clone().unwrap_or_default();
        content
            .put(&media_type, &bytes)
            .map_err(|e| store(&digest, e))
    }

    /// The digest `index.json` gives the tag, or its only entry's.
    fn tagged(&self) -> Result<String, LayoutError> {
        let path = self.path.join("index.json");
        let bytes = crate::util::fs::read(&path).map_err(LayoutError::ReadIndex)?;
        let index: Blob =
            serde_json::from_slice(&bytes).map_err(|source| LayoutError::ParseIndex {
                path: path.display().to_string(),
                source,
            })?;
        let entries = index.manifests.unwrap_or_default();
        let tagged = entries.iter().find(|m| {
            m.annotations
                .get(REF_NAME)
                .is_some_and(|name| *name == self.tag)
        });
        match (tagged, entries.as_slice()) {
            (Some(entry), _) | (None, [entry]) => Ok(entry.digest.clone()),
            _ => Err(LayoutError::TagNotFound {
                layout: self.name(),
                tag: self.tag.clone(),
            }),
        }
    }

    /// Streams a layer into the content store, checked on commit.
    fn copy_layer(&self, digest: &str, content: &ContentStore) -> Result<(), LayoutError> {
        if content.exists(digest) {
            return Ok(());
        }
        let path = self.blob_path(digest)?;
        let read_err = |e| LayoutError::ReadBlob {
            digest: digest.to_string(),
            source: FsError::new("read", &path, e),
        };
        let mut file = std::fs::File::open(&path).map_err(read_err)?;
        let store = |source| LayoutError::Store {
            digest: digest.to_string(),
            source,
        };
        let mut writer = content.writer().map_err(store)?;
        std::io::copy(&mut file, &mut writer).map_err(read_err)?;
        writer.flush().map_err(read_err)?;
        writer.commit("", Some(digest)).map_err(store)?;
        Ok(())
    }
}

/// The fields of an index or manifest this module reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Blob {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Entry>>,
    #[serde(default)]
    config: Option<Entry>,
    #[serde(default)]
    layers: Option<Vec<Entry>>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    digest: String,
    #[serde(default)]
    platform: Option<EntryPlatform>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct EntryPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl EntryPlatform {
    fn serves(&self, want: &Platform) -> bool {
        let have = Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        };
        super::image::same_platform(&have, want)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn identifiers_parse_as_buildx_splits_them() {
        let r = LayoutRef::parse("oci-layout:///a/b").unwrap();
        assert_eq!(
            (r.path.as_path(), r.tag.as_str()),
            (Path::new("/a/b"), "latest")
        );
        assert_eq!(r.digest, None);
        let r = LayoutRef::parse("oci-layout:///a/b:v1@sha256:00").unwrap();
        assert_eq!(r.tag, "v1");
        assert_eq!(r.digest.as_deref(), Some("sha256:00"));
        for bad in ["/a", "oci-layout://", "oci-layout:///a:"] {
            assert!(LayoutRef::parse(bad).is_err(), "{bad}");
        }
    }
}
