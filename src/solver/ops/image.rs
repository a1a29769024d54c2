//! `docker-image://` sources: the image's layers applied in order, each
//! layer a committed snapshot cached under the chain ID of the layers up
//! to it, so images sharing a base share its snapshots and a second pull
//! of the same image unpacks nothing.
//!
//! Imports `registry`, `snapshot`, `cache` and `image`; the pull itself
//! (resolution, downloads) is the registry module's.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::{CacheDb, CacheError, CacheKey, Digest, RecordType};
use crate::image::reference::ReferenceError;
use crate::image::Reference;
use crate::registry::unpack::{self, UnpackError};
use crate::registry::Resolved;
use crate::snapshot::{SnapshotError, SnapshotId, Store};
use crate::source::image::ImageSourceError;
use crate::util::fs::FsError;

/// Why an image source failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageOpError {
    /// The identifier is not an image reference.
    #[error("invalid image reference {reference:?}")]
    ParseReference {
        reference: String,
        #[source]
        source: ReferenceError,
    },
    /// The build was started without a registry client (a bug in the
    /// caller: every CLI build has one).
    #[error("no registry client to pull {0}")]
    NoRegistry(String),
    /// Resolving or downloading failed, or the local image is broken
    /// (shared: the planner and the solver see the same resolution).
    #[error("failed to pull {reference}")]
    Pull {
        reference: String,
        #[source]
        source: Arc<ImageSourceError>,
    },
    /// Starting a layer's snapshot failed.
    #[error("cannot unpack layer {digest}")]
    Prepare {
        digest: String,
        #[source]
        source: SnapshotError,
    },
    /// Opening a downloaded layer failed.
    #[error("cannot open layer {digest}")]
    OpenLayer {
        digest: String,
        #[source]
        source: FsError,
    },
    /// Applying a layer failed (including hostile entries).
    #[error("cannot unpack layer {digest}")]
    Unpack {
        digest: String,
        #[source]
        source: UnpackError,
    },
    /// Committing a layer's snapshot failed.
    #[error("cannot commit layer {digest}")]
    Commit {
        digest: String,
        #[source]
        source: SnapshotError,
    },
    /// Reading or writing a layer's cache row failed.
    #[error("cannot use the layer cache for {digest}")]
    LayerCache {
        digest: String,
        #[source]
        source: CacheError,
    },
}

/// The normalised reference of a `docker-image://` identifier.
pub fn reference(identifier: &str) -> Result<Reference, ImageOpError> {
    let text = identifier
        .strip_prefix("docker-image://")
        .unwrap_or(identifier);
    Reference::parse_normalized(text)
        .map(Reference::with_default_tag)
        .map_err(|source| ImageOpError::ParseReference {
            reference: text.into(),
            source,
        })
}

/// The cache row of the snapshot holding layers up to `chain_id`.
fn layer_key(chain_id: &str) -> CacheKey {
    CacheKey::from(Digest::of(
        format!("bk.layer-chain.v1 {chain_id}").as_bytes(),
    ))
}

/// What unpacking produced.
pub struct Unpacked {
    /// Each layer's snapshot (the tree up to it), bottom first.
    pub layers: Vec<SnapshotId>,
    /// Layers that were unpacked now (the rest were cached).
    pub unpacked: usize,
    /// Device nodes skipped (creating them needs root).
    pub skipped_devices: Vec<String>,
}

/// Applies `resolved`'s layers (downloaded to `blobs`, in order), reusing
/// every cached prefix. Blocking.
pub fn unpack(
    store: &Store,
    db: &CacheDb,
    resolved: &Resolved,
    blobs: &[PathBuf],
) -> Result<Unpacked, ImageOpError> {
    let chain = resolved.chain_ids();
    let mut out = Unpacked {
        layers: Vec::new(),
        unpacked: 0,
        skipped_devices: Vec::new(),
    };
    let layers = resolved.manifest.layers.iter().zip(blobs);
    for ((desc, blob), (chain_id, diff_id)) in
        layers.zip(chain.iter().zip(&resolved.config.rootfs.diff_ids))
    {
        let digest = desc.digest.clone();
        let key = layer_key(chain_id);
        let cached = db
            .get(&key)
            .map_err(|source| ImageOpError::LayerCache {
                digest: digest.clone(),
                source,
            })?
            .and_then(|row| SnapshotId::new(row.snapshot_id).ok())
            .filter(|id| store.exists(id));
        if let Some(id) = cached {
            out.layers.push(id);
            continue;
        }
        let active_parent = out.layers.last().cloned();
        let active = store
            .prepare(out.layers.last())
            .map_err(|source| ImageOpError::Prepare {
                digest: digest.clone(),
                source,
            })?;
        let file = std::fs::File::open(blob).map_err(|e| ImageOpError::OpenLayer {
            digest: digest.clone(),
            source: FsError::new("open", blob, e),
        })?;
        let report = unpack::apply(active.path(), std::io::BufReader::new(file), Some(diff_id))
            .map_err(|source| ImageOpError::Unpack {
                digest: digest.clone(),
                source,
            })?;
        out.skipped_devices.extend(report.skipped_devices);
        let id = active.commit().map_err(|source| ImageOpError::Commit {
            digest: digest.clone(),
            source,
        })?;
        let size = store.size(&id).map_err(|source| ImageOpError::Commit {
            digest: digest.clone(),
            source,
        })?;
        let parent = active_parent.as_ref().map(SnapshotId::as_str);
        db.put_record(
            &key,
            id.as_str(),
            &format!("layer {digest}"),
            size,
            RecordType::Frozen,
            parent,
        )
        .map_err(|source| ImageOpError::LayerCache {
            digest: digest.clone(),
            source,
        })?;
        out.unpacked += 1;
        out.layers.push(id);
    }
    Ok(out)
}

/// Records that `snapshots[i]` holds the layers `diff_ids[..=i]`
/// stacked, so that an image made from these snapshots, used as a base
/// later (`FROM` the tag, or the image pulled back), unpacks nothing: its
/// layers are found by chain ID as if they had been unpacked. Blocking.
pub fn remember_layers(
    db: &CacheDb,
    diff_ids: &[String],
    snapshots: &[SnapshotId],
) -> Result<(), ImageOpError> {
    let rootfs = crate::image::config::RootFs {
        kind: "layers".into(),
        diff_ids: diff_ids.to_vec(),
    };
    for ((chain_id, diff_id), id) in rootfs.chain_ids().iter().zip(diff_ids).zip(snapshots) {
        db.put(
            &layer_key(chain_id),
            id.as_str(),
            &format!("layer {diff_id}"),
            0,
        )
        .map_err(|source| ImageOpError::LayerCache {
            digest: diff_id.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The snapshot of each of `resolved`'s layers when all are cached and
/// still exist (`None` otherwise: the caller unpacks). Blocking.
pub fn cached_layers(
    store: &Store,
    db: &CacheDb,
    resolved: &Resolved,
) -> Result<Option<Vec<SnapshotId>>, ImageOpError> {
    let mut layers = Vec::new();
    for (chain_id, desc) in resolved.chain_ids().iter().zip(&resolved.manifest.layers) {
        let row = db
            .get(&layer_key(chain_id))
            .map_err(|source| ImageOpError::LayerCache {
                digest: desc.digest.clone(),
                source,
            })?;
        match row
            .and_then(|row| SnapshotId::new(row.snapshot_id).ok())
            .filter(|id| store.exists(id))
        {
            Some(id) => layers.push(id),
            None => return Ok(None),
        }
    }
    Ok(Some(layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_normalised() {
        let r = reference("docker-image://busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert!(reference("docker-image://UPPER").is_err());
    }
}
