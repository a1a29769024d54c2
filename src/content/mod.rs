//! The content store: blobs (layers, configs, manifests) by digest at
//! `<root>/content/blobs/sha256/<hex>`, as in an OCI layout, so a blob
//! pulled once is never downloaded again.
//!
//! A blob is written under `<root>/content/ingest/` and renamed into
//! place only after its size and sha256 matched what the caller expected:
//! a blob path that exists always holds the right bytes, and a crashed
//! download leaves only an ingest file.
//!
//! Imports `util` only.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWrite;

use crate::util::fs::FsError;

/// Why a content-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Creating the store's directories failed.
    #[error("cannot open the content store")]
    Open(#[source] FsError),
    /// A digest that is not `sha256:` and 64 lowercase hex digits.
    #[error("unsupported digest {0:?}: expected sha256:<64 hex digits>")]
    InvalidDigest(String),
    /// Creating the ingest file failed.
    #[error("cannot start writing blob {digest}")]
    Create {
        digest: String,
        #[source]
        source: FsError,
    },
    /// The bytes written do not hash to the expected digest.
    #[error("blob {expected} has the wrong content: its sha256 is {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// The bytes written are not the expected size.
    #[error("blob {digest} has {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    /// Flushing or renaming the finished blob failed.
    #[error("cannot store blob {digest}")]
    Commit {
        digest: String,
        #[source]
        source: FsError,
    },
}

/// The blob store under one root.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

/// The hex part of a `sha256:` digest, if it is one.
fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

impl ContentStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let content = root.join("content");
        let blobs = content.join("blobs").join("sha256");
        let ingest = content.join("ingest");
        for dir in [&blobs, &ingest] {
            std::fs::create_dir_all(dir)
                .map_err(|e| ContentError::Open(FsError::new("create directory", dir, e)))?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// Where blob `digest` lives (whether or not it is there yet).
    pub fn path(&self, digest: &str) -> Result<PathBuf, ContentError> {
        let hex = sha256_hex(digest).ok_or_else(|| ContentError::InvalidDigest(digest.into()))?;
        Ok(self.blobs.join(hex))
    }

    /// Whether blob `digest` is stored.
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Starts writing blob `digest` of `size` bytes (`None`: unknown).
    pub async fn writer(&self, digest: &str, size: Option<u64>) -> Result<Writer, ContentError> {
        let dest = self.path(digest)?;
        let hex = sha256_hex(digest).unwrap_or_default();
        // A per-writer name: two builds may pull the same blob at once;
        // both renames then put identical bytes in place.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temp = self.ingest.join(format!(
            "{hex}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| ContentError::Create {
                digest: digest.into(),
                source: FsError::new("create", &temp, e),
            })?;
        Ok(Writer {
            file,
            hasher: Sha256::new(),
            written: 0,
            digest: digest.into(),
            size,
            temp,
            dest,
            done: false,
        })
    }

    /// Stores `bytes` as blob `digest` (for small blobs: manifests,
    /// configs).
    pub async fn write_all(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, ContentError> {
        use tokio::io::AsyncWriteExt;
        let mut writer = self.writer(digest, Some(bytes.len() as u64)).await?;
        let temp = writer.temp.clone();
        writer
            .write_all(bytes)
            .await
            .map_err(|e| ContentError::Commit {
                digest: digest.into(),
                source: FsError::new("write", &temp, e),
            })?;
        writer.commit().await
    }
}

/// A blob being written: hashes and counts what passes through, then
/// [`Writer::commit`] checks both and renames the file into place. Dropped
/// uncommitted, it removes its ingest file.
pub struct Writer {
    file: tokio::fs::File,
    hasher: Sha256,
    written: u64,
    digest: String,
    size: Option<u64>,
    temp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl Writer {
    /// Verifies size and digest, syncs and renames into the store.
    pub async fn commit(mut self) -> Result<PathBuf, ContentError> {
        use tokio::io::AsyncWriteExt;
        let fail = |op, path: &Path, e| ContentError::Commit {
            digest: self.digest.clone(),
            source: FsError::new(op, path, e),
        };
        self.file
            .flush()
            .await
            .map_err(|e| fail("flush", &self.temp, e))?;
        if let Some(expected) = self.size {
            if expected != self.written {
                return Err(ContentError::SizeMismatch {
                    digest: self.digest.clone(),
                    expected,
                    actual: self.written,
                });
            }
        }
        let actual = format!(
            "sha256:{}",
            hex::encode(std::mem::take(&mut self.hasher).finalize())
        );
        if actual != self.digest {
            return Err(ContentError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        self.file
            .sync_all()
            .await
            .map_err(|e| fail("sync", &self.temp, e))?;
        tokio::fs::rename(&self.temp, &self.dest)
            .await
            .map_err(|e| fail("rename into the store", &self.temp, e))?;
        self.done = true;
        Ok(self.dest.clone())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a leftover ingest file is only wasted space.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.file).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                // Only what the file accepted is hashed: the caller
                // retries the rest.
                this.hasher.update(&buf[..n]);
                this.written += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    #[tokio::test]
    async fn blobs_are_verified_before_they_appear() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let good = digest_of(b"hello");
        assert!(!store.has(&good));
        let path = store.write_all(&good, b"hello").await.unwrap();
        assert!(store.has(&good));
        assert_eq!(std::fs::read(path).unwrap(), b"hello");

        let other = digest_of(b"other");
        let err = store.write_all(&other, b"wrong").await.unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        assert!(!store.has(&other));
        assert!(matches!(
            store.path("md5:abc"),
            Err(ContentError::InvalidDigest(_))
        ));
        // Failed writers leave nothing in ingest.
        let ingest = dir.path().join("content/ingest");
        assert_eq!(std::fs::read_dir(ingest).unwrap().count(), 0);
    }
}
