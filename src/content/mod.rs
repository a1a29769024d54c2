//! The content store: immutable blobs (layers, configs, manifests) named
//! by their SHA-256, at `<root>/content/blobs/sha256/<hex>`, the layout an
//! OCI image layout uses, so that exporters can copy blobs out unchanged.
//!
//! A blob is written through a [`BlobWriter`] into a temporary file under
//! `<root>/content/ingest/`, hashed as it is written, and appears under
//! `blobs/` only on [`BlobWriter::commit`], by one `rename(2)`: a reader
//! never sees a half-written blob, and a blob's name always matches its
//! bytes (unless someone edits the store by hand, which [`ContentStore::read`]
//! catches).
//!
//! Imports `crate::util` only; it must not import the exporters, the
//! solver or the CLI.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWrite;

use crate::util::fs::{self as ufs, FsError};

/// Why a content store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Creating the store's directories failed.
    #[error("cannot open the content store")]
    Open(#[source] FsError),
    /// Creating, writing or flushing a blob's temporary file failed.
    #[error("cannot write a blob")]
    Write(#[source] FsError),
    /// Renaming a finished blob into `blobs/` failed.
    #[error("cannot commit a blob")]
    Commit(#[source] FsError),
    /// The bytes written do not have the digest the caller expected.
    #[error("blob digest mismatch: expected {expected}, wrote {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// Reading a committed blob failed.
    #[error("cannot read blob {digest}")]
    Read {
        digest: String,
        #[source]
        source: FsError,
    },
    /// A committed blob's bytes no longer hash to its name.
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    Corrupt { digest: String, actual: String },
    /// Deleting a blob failed.
    #[error("cannot remove blob {digest}")]
    Remove {
        digest: String,
        #[source]
        source: FsError,
    },
    /// A digest that is not `sha256:` and 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    /// Creating the ingest file of an expected blob failed.
    #[error("cannot start writing blob {digest}")]
    Ingest {
        digest: String,
        #[source]
        source: FsError,
    },
    /// The bytes written are not the expected size.
    #[error("blob {digest} has {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    /// Flushing or renaming a finished expected blob failed.
    #[error("cannot store blob {digest}")]
    Store {
        digest: String,
        #[source]
        source: FsError,
    },
}

/// A blob as manifests refer to it. Serialises as an OCI descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest, checked, so that it can name a
/// file without escaping `blobs/sha256/`.
pub fn digest_hex(digest: &str) -> Result<&str, ContentError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| ContentError::InvalidDigest(digest.to_string()))
}

/// A writer that hashes (SHA-256) and counts what passes through it.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The inner writer, the `sha256:` digest and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A content store rooted at `<root>/content`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let base = root.join("content");
        let store = ContentStore {
            blobs: base.join("blobs").join("sha256"),
            ingest: base.join("ingest"),
        };
        ufs::create_dir_all(&store.blobs).map_err(ContentError::Open)?;
        ufs::create_dir_all(&store.ingest).map_err(ContentError::Open)?;
        Ok(store)
    }

    /// Where the blob `digest` is (or would be).
    pub fn path(&self, digest: &str) -> Result<PathBuf, ContentError> {
        Ok(self.blobs.join(digest_hex(digest)?))
    }

    /// Whether the blob `digest` is committed.
    pub fn exists(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// A new blob, written to a temporary file until committed.
    pub fn writer(&self) -> Result<BlobWriter, ContentError> {
        let tmp = self
            .ingest
            .join(format!("{}-{}", std::process::id(), random_suffix()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| ContentError::Write(FsError::new("create", &tmp, e)))?;
        Ok(BlobWriter {
            out: HashingWriter::new(BufWriter::new(file)),
            tmp: TempFile(Some(tmp)),
            blobs: self.blobs.clone(),
        })
    }

    /// Writes `bytes` as a blob (for configs and manifests); one already
    /// stored is left as it is.
    pub fn put(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, ContentError> {
        let digest = sha256_digest(bytes);
        if self.exists(&digest) {
            return Ok(Descriptor {
                media_type: media_type.to_string(),
                digest,
                size: bytes.len() as u64,
                annotations: Default::default(),
            });
        }
        let mut w = self.writer()?;
        w.write_all(bytes).map_err(|e| w.write_error(e))?;
        w.commit(media_type, None)
    }

    /// Reads a whole blob, checking that its bytes match its digest.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ContentError> {
        let path = self.path(digest)?;
        let bytes = ufs::read(&path).map_err(|source| ContentError::Read {
            digest: digest.to_string(),
            source,
        })?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(ContentError::Corrupt {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming; the caller hashes what it reads (see
    /// [`HashingWriter`]) when it needs the check.
    pub fn open_blob(&self, digest: &str) -> Result<File, ContentError> {
        let path = self.path(digest)?;
        File::open(&path).map_err(|e| ContentError::Read {
            digest: digest.to_string(),
            source: FsError::new("open", &path, e),
        })
    }

    // Blobs whose digest is known in advance (downloads): verified
    // against the expected digest and size before they appear.

    pub async fn ingest(
        &self,
        digest: &str,
        size: Option<u64>,
    ) -> Result<IngestWriter, ContentError> {
        let dest = self.path(digest)?;
        let hex = digest_hex(digest)?;
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
            .map_err(|e| ContentError::Ingest {
                digest: digest.into(),
                source: FsError::new("create", &temp, e),
            })?;
        Ok(IngestWriter {
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
    pub async fn write_verified(
        &self,
        digest: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, ContentError> {
        use tokio::io::AsyncWriteExt;
        let mut writer = self.ingest(digest, Some(bytes.len() as u64)).await?;
        let temp = writer.temp.clone();
        writer
            .write_all(bytes)
            .await
            .map_err(|e| ContentError::Store {
                digest: digest.into(),
                source: FsError::new("write", &temp, e),
            })?;
        writer.commit().await
    }
}

/// A committed blob as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: String,
    /// Allocated bytes.
    pub size: u64,
    /// When it was renamed into `blobs/` (its change time).
    pub committed: std::time::SystemTime,
}

impl ContentStore {
    /// Every committed blob.
    pub fn list(&self) -> Result<Vec<BlobInfo>, ContentError> {
        use std::os::unix::fs::MetadataExt;
        let fail = |e| ContentError::Open(FsError::new("read", &self.blobs, e));
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            let Some(hex) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if hex.len() != 64 || !meta.is_file() {
                continue;
            }
            out.push(BlobInfo {
                digest: format!("sha256:{hex}"),
                size: meta.blocks() * 512,
                committed: std::time::UNIX_EPOCH
                    + std::time::Duration::new(meta.ctime().max(0) as u64, 0),
            });
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Deletes blob `digest` (a missing one is not an error).
    pub fn remove(&self, digest: &str) -> Result<(), ContentError> {
        let path = self.path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContentError::Remove {
                digest: digest.to_string(),
                source: FsError::new("remove", &path, e),
            }),
        }
    }

    /// Removes ingest files of writers that died (`kill -9`, power loss):
    /// their names carry the writer's process id, and a file whose
    /// process no longer runs is garbage. A running process with a reused
    /// id keeps its (foreign) file until it exits: garbage kept, never a
    /// live writer's file removed. Returns how many were removed.
    pub fn clean_stale_ingest(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.ingest) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(ingest_pid) else {
                continue;
            };
            let alive = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
                Ok(()) => true,
                Err(nix::errno::Errno::ESRCH) => false,
                Err(_) => true,
            };
            if !alive && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// The writer's process id in an ingest file name: `<pid>-<rand>` or
/// `<64 hex>-<pid>-<n>`.
fn ingest_pid(name: &str) -> Option<i32> {
    let mut parts = name.split('-');
    let first = parts.next()?;
    let pid = if first.len() == 64 {
        parts.next()?
    } else {
        first
    };
    pid.parse().ok().filter(|&p: &i32| p > 0)
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    // /dev/urandom never fails on Linux in practice; a clock-derived
    // fallback keeps names unique enough with `create_new` guarding.
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_le_bytes();
    }
    hex::encode(bytes)
}

/// A blob being written. Dropped without [`BlobWriter::commit`], its
/// temporary file is removed.
#[derive(Debug)]
pub struct BlobWriter {
    out: HashingWriter<BufWriter<File>>,
    tmp: TempFile,
    blobs: PathBuf,
}

/// Removes a temporary file on drop unless disarmed (kept apart from
/// [`BlobWriter`] so that `commit` can move the writer out).
#[derive(Debug)]
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.0.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

impl BlobWriter {
    /// The temporary file's path (for error messages).
    pub fn temp_path(&self) -> &Path {
        self.tmp.0.as_deref().unwrap_or(Path::new(""))
    }

    /// An I/O error of this writer as a [`ContentError`] naming its file.
    pub fn write_error(&self, e: io::Error) -> ContentError {
        ContentError::Write(FsError::new("write", self.temp_path(), e))
    }

    /// Flushes the blob and renames it to its digest. With `expected`,
    /// refuses (and removes) a blob whose digest differs. A blob already
    /// stored is simply replaced by identical bytes.
    pub fn commit(
        self,
        media_type: &str,
        expected: Option<&str>,
    ) -> Result<Descriptor, ContentError> {
        let BlobWriter {
            out,
            mut tmp,
            blobs,
        } = self;
        let path = tmp.0.clone().unwrap_or_default();
        let (buf, digest, size) = out.finish();
        let file = buf
            .into_inner()
            .map_err(|e| ContentError::Write(FsError::new("write", &path, e.into_error())))?;
        file.sync_all()
            .map_err(|e| ContentError::Write(FsError::new("flush", &path, e)))?;
        if let Some(expected) = expected {
            if expected != digest {
                return Err(ContentError::DigestMismatch {
                    expected: expected.to_string(),
                    actual: digest,
                });
            }
        }
        let dest = blobs.join(digest_hex(&digest)?);
        fs::rename(&path, &dest)
            .map_err(|e| ContentError::Commit(FsError::new("rename into place", &dest, e)))?;
        tmp.0 = None;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: Default::default(),
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A blob being written: hashes and counts what passes through, then
/// [`Writer::commit`] checks both and renames the file into place. Dropped
/// uncommitted, it removes its ingest file.
pub struct IngestWriter {
    file: tokio::fs::File,
    hasher: Sha256,
    written: u64,
    digest: String,
    size: Option<u64>,
    temp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl IngestWriter {
    /// Verifies size and digest, syncs and renames into the store.
    pub async fn commit(mut self) -> Result<PathBuf, ContentError> {
        use tokio::io::AsyncWriteExt;
        let fail = |op, path: &Path, e| ContentError::Store {
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

impl Drop for IngestWriter {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a leftover ingest file is only wasted space.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

impl AsyncWrite for IngestWriter {
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

    #[test]
    fn commit_names_the_blob_by_its_digest_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let desc = store.put("text/plain", b"hello").unwrap();
        assert_eq!(
            desc.digest,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(desc.size, 5);
        assert!(store.exists(&desc.digest));
        assert_eq!(store.read(&desc.digest).unwrap(), b"hello");
        let ingest = dir.path().join("content/ingest");
        assert_eq!(fs::read_dir(ingest).unwrap().count(), 0);
    }

    #[test]
    fn a_wrong_expected_digest_is_refused_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"data").unwrap();
        let tmp = w.temp_path().to_path_buf();
        assert!(tmp.exists());
        let other = sha256_digest(b"other");
        let err = w.commit("x", Some(&other)).unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        assert!(!tmp.exists());
        assert!(!store.exists(&sha256_digest(b"data")));
    }

    #[test]
    fn a_dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"partial").unwrap();
        let tmp = w.temp_path().to_path_buf();
        drop(w);
        assert!(!tmp.exists());
    }

    #[test]
    fn reading_checks_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let desc = store.put("x", b"good").unwrap();
        fs::write(store.path(&desc.digest).unwrap(), b"evil").unwrap();
        assert!(matches!(
            store.read(&desc.digest),
            Err(ContentError::Corrupt { .. })
        ));
    }

    #[test]
    fn digests_that_could_escape_are_refused() {
        for bad in ["sha256:../../etc", "md5:abc", "sha256:ABC", ""] {
            assert!(digest_hex(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn blobs_are_verified_before_they_appear() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let good = sha256_digest(b"hello");
        assert!(!store.exists(&good));
        let path = store.write_verified(&good, b"hello").await.unwrap();
        assert!(store.exists(&good));
        assert_eq!(std::fs::read(path).unwrap(), b"hello");

        let other = sha256_digest(b"other");
        let err = store.write_verified(&other, b"wrong").await.unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        assert!(!store.exists(&other));
        assert!(matches!(
            store.path("md5:abc"),
            Err(ContentError::InvalidDigest(_))
        ));
        // Failed writers leave nothing in ingest.
        let ingest = dir.path().join("content/ingest");
        assert_eq!(std::fs::read_dir(ingest).unwrap().count(), 0);
    }
}
