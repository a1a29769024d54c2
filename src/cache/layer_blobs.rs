//! The layer blobs made from snapshots: an image exporter diffs a build
//! step's snapshot against its parent and compresses the result, which
//! costs seconds for big layers; the blob (in the content store) only
//! depends on the two snapshots, the compression and the time clamp, so
//! it is remembered here under a key of those and reused by the next
//! export of an unchanged build, as BuildKit reuses a ref's blob.

use rusqlite::{params, OptionalExtension};

use super::{CacheDb, CacheError, CacheKey};

/// A remembered layer blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// The snapshot the layer was made from (its tree up to this layer).
    pub snapshot_id: String,
    pub media_type: String,
    /// `sha256:` of the blob (in the content store).
    pub digest: String,
    pub size: u64,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

impl CacheDb {
    /// The blob remembered under `key`.
    pub fn layer_blob(&self, key: &CacheKey) -> Result<Option<LayerBlob>, CacheError> {
        self.conn()
            .prepare_cached(
                "SELECT snapshot_id, media_type, digest, size, diff_id FROM layer_blobs
                 WHERE layer_key = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([key.as_str()], |row| {
                    let size: i64 = row.get(3)?;
                    Ok(LayerBlob {
                        snapshot_id: row.get(0)?,
                        media_type: row.get(1)?,
                        digest: row.get(2)?,
                        size: u64::try_from(size).unwrap_or(0),
                        diff_id: row.get(4)?,
                    })
                })
                .optional()
            })
            .map_err(CacheError::GetLayerBlob)
    }

    /// Remembers `blob` under `key` (replacing what was there).
    pub fn put_layer_blob(&self, key: &CacheKey, blob: &LayerBlob) -> Result<(), CacheError> {
        let size =
            i64::try_from(blob.size).map_err(|_| CacheError::StoreSize { size: blob.size })?;
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO layer_blobs
                     (layer_key, snapshot_id, media_type, digest, size, diff_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.as_str(),
                    blob.snapshot_id,
                    blob.media_type,
                    blob.digest,
                    size,
                    blob.diff_id
                ],
            )
            .map(drop)
            .map_err(CacheError::PutLayerBlob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Digest;

    #[test]
    fn blobs_are_remembered_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = CacheDb::open(dir.path()).unwrap();
        let key = CacheKey::from(Digest::of(b"layer"));
        assert_eq!(db.layer_blob(&key).unwrap(), None);
        let blob = LayerBlob {
            snapshot_id: "s1".into(),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: "sha256:aa".into(),
            size: 42,
            diff_id: "sha256:bb".into(),
        };
        db.put_layer_blob(&key, &blob).unwrap();
        assert_eq!(db.layer_blob(&key).unwrap(), Some(blob.clone()));
        let other = LayerBlob {
            digest: "sha256:cc".into(),
            ..blob
        };
        db.put_layer_blob(&key, &other).unwrap();
        // Another process sees it.
        let again = CacheDb::open(dir.path()).unwrap();
        assert_eq!(again.layer_blob(&key).unwrap(), Some(other));
    }
}
