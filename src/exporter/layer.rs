//! One image layer from one build step: the changes between a parent
//! tree and a child tree (see [`crate::snapshot::diff`]) as a
//! deterministic tar stream, compressed, hashed and stored as a blob in
//! the [`ContentStore`] in a single pass.
//!
//! The tar follows what BuildKit's (containerd's) differ writes:
//! - added and modified paths as entries of the shared tar writer
//!   ([`super::tar::write_node`]), in path order, each preceded by any
//!   unchanged ancestor directory not yet written, so that an extractor
//!   never has to invent a parent's mode;
//! - a deleted path as an empty `.wh.<name>` file beside it;
//! - a path whose type changed (file ↔ directory, symlink, …) as a
//!   whiteout followed by the new entry, so that extractors that would
//!   merge a directory into an existing one start from nothing;
//! - the root itself is never an entry.
//!
//! The same trees always give the same bytes: uncompressed digest
//! (`diff_id`) and, for a given compression and level, the same blob.
//! With a clamp (`rewrite-timestamp`), mtimes later than it are written
//! as it, so that files copied at different times still give the same
//! layer.
//!
//! Base image layers are not made here but reused: [`convert_media_type`]
//! renames their media type for the manifest's flavour and [`recompress`]
//! changes their compression (`force-compression`).
//!
//! Imports `crate::snapshot`, `crate::content` and the tar writer; must
//! not import the solver or the CLI.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::tar::{self as tarw, Failure, Links};
use super::ExportStats;
use crate::content::{BlobWriter, ContentError, ContentStore, Descriptor, HashingWriter};
use crate::snapshot::{self, ChangeKind, SnapshotError};
use crate::util::fs::FsError;

/// How layer blobs are compressed, with the level (`compression-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    /// Level 0–9; BuildKit's default is Go's `DefaultCompression`, 6.
    Gzip(u32),
    /// Level 1–22 (0 means the library default); BuildKit's default is
    /// zstd's "default speed", 3.
    Zstd(i32),
}

impl Compression {
    /// The compression `compression=` and `compression-level=` ask for
    /// (validated by the CLI already; out-of-range levels are clamped as
    /// BuildKit clamps them).
    pub fn from_attrs(kind: Option<&str>, level: Option<u32>) -> Option<Compression> {
        match kind.unwrap_or("gzip") {
            "gzip" => Some(Compression::Gzip(level.unwrap_or(6).min(9))),
            "zstd" => Some(Compression::Zstd(
                level.map_or(3, |l| i32::try_from(l.min(22)).unwrap_or(3)),
            )),
            "uncompressed" => Some(Compression::Uncompressed),
            _ => None,
        }
    }

    /// The layer media type for this compression, OCI or Docker flavour.
    pub fn media_type(self, oci: bool) -> &'static str {
        match (self, oci) {
            (Compression::Uncompressed, true) => "application/vnd.oci.image.layer.v1.tar",
            (Compression::Gzip(_), true) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (Compression::Zstd(_), true) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Compression::Uncompressed, false) => "application/vnd.docker.image.rootfs.diff.tar",
            (Compression::Gzip(_), false) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            (Compression::Zstd(_), false) => "application/vnd.docker.image.rootfs.diff.tar.zstd",
        }
    }
}

/// Why a layer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Comparing the parent and child trees failed.
    #[error("cannot compute the changes of a layer")]
    Diff(#[source] SnapshotError),
    /// Reading a changed file (or the parent's entry) failed.
    #[error("cannot read the tree for a layer")]
    ReadTree(#[source] FsError),
    /// Starting the blob failed.
    #[error("cannot start a layer blob")]
    Start(#[source] ContentError),
    /// Writing (or compressing into) the blob's temporary file failed.
    #[error("cannot write a layer blob")]
    Write(#[source] FsError),
    /// Storing the finished blob failed.
    #[error("cannot store a layer blob")]
    Commit(#[source] ContentError),
    /// Reading a base layer's blob for recompression failed.
    #[error("cannot read layer blob {digest}")]
    ReadBlob {
        digest: String,
        #[source]
        source: ContentError,
    },
    /// Decompressing a base layer's blob failed.
    #[error("cannot decompress layer blob {digest}")]
    Decompress {
        digest: String,
        #[source]
        source: io::Error,
    },
    /// A recompressed base layer no longer has its diff_id (the blob is
    /// not the tar its manifest says).
    #[error("layer blob {digest} decompresses to {actual}, not its diff_id {expected}")]
    DiffId {
        digest: String,
        expected: String,
        actual: String,
    },
}

/// How to write a new layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    pub compression: Compression,
    /// OCI media type (true) or Docker's.
    pub oci: bool,
    /// `rewrite-timestamp`: later mtimes are written as this.
    pub clamp_mtime: Option<i64>,
}

/// The media type of a known layer type in the OCI (`oci`) or Docker
/// flavour (same compression); `None` for types bk does not know
/// (foreign or non-distributable layers), which are kept as they are.
pub fn convert_media_type(media_type: &str, oci: bool) -> Option<String> {
    let compression = match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::Uncompressed,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Compression::Gzip(6),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd(3),
        _ => return None,
    };
    Some(compression.media_type(oci).to_string())
}

/// Rewrites a stored layer blob with `compression` (the tar inside, and
/// so its diff_id, unchanged) and returns the new blob's descriptor.
pub fn recompress(
    store: &ContentStore,
    blob: &Descriptor,
    diff_id: &str,
    compression: Compression,
    oci: bool,
) -> Result<Descriptor, LayerError> {
    let digest = blob.digest.clone();
    let file = store
        .open_blob(&digest)
        .map_err(|source| LayerError::ReadBlob {
            digest: digest.clone(),
            source,
        })?;
    let decompress_err = |source| LayerError::Decompress {
        digest: digest.clone(),
        source,
    };
    let mut reader = crate::registry::unpack::decompress(file).map_err(decompress_err)?;
    let out = store.writer().map_err(LayerError::Start)?;
    let tmp = out.temp_path().to_path_buf();
    let write_err = |e| LayerError::Write(FsError::new("write", &tmp, e));
    let mut out = HashingWriter::new(io::BufWriter::new(
        Compressor::new(out, compression).map_err(write_err)?,
    ));
    io::copy(&mut reader, &mut out).map_err(decompress_err)?;
    let (buffered, actual, _) = out.finish();
    if actual != diff_id {
        return Err(LayerError::DiffId {
            digest,
            expected: diff_id.to_string(),
            actual,
        });
    }
    let blob = buffered
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?
        .finish()
        .map_err(write_err)?;
    blob.commit(compression.media_type(oci), None)
        .map_err(LayerError::Commit)
}

/// A stored layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The compressed blob as the manifest lists it.
    pub descriptor: Descriptor,
    /// `sha256:` of the uncompressed tar, for the config's `rootfs`.
    pub diff_id: String,
    pub stats: ExportStats,
}

/// The compressor between the tar stream and the blob file.
enum Compressor {
    Plain(BlobWriter),
    Gzip(flate2::write::GzEncoder<BlobWriter>),
    Zstd(zstd::stream::write::Encoder<'static, BlobWriter>),
}

impl Compressor {
    fn new(blob: BlobWriter, compression: Compression) -> io::Result<Compressor> {
        Ok(match compression {
            Compression::Uncompressed => Compressor::Plain(blob),
            // GzBuilder's header carries no name and a zero mtime, so the
            // blob depends on the content only.
            Compression::Gzip(level) => Compressor::Gzip(
                flate2::GzBuilder::new().write(blob, flate2::Compression::new(level)),
            ),
            Compression::Zstd(level) => Compressor::Zstd(zstd::Encoder::new(blob, level)?),
        })
    }

    fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Compressor::Plain(b) => Ok(b),
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(z) => z.finish(),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

/// Writes the layer that turns `parent` (None: empty) into `child` into
/// `store`, as `opts` say.
pub fn write_layer(
    store: &ContentStore,
    parent: Option<&Path>,
    child: &Path,
    opts: &LayerOptions,
) -> Result<Layer, LayerError> {
    let LayerOptions {
        compression,
        oci,
        clamp_mtime,
    } = *opts;
    let changes = snapshot::diff(parent, child).map_err(LayerError::Diff)?;
    let blob = store.writer().map_err(LayerError::Start)?;
    let tmp = blob.temp_path().to_path_buf();
    let write_err = |e| LayerError::Write(FsError::new("write", &tmp, e));
    let mut out = HashingWriter::new(io::BufWriter::new(
        Compressor::new(blob, compression).map_err(write_err)?,
    ));
    let mut stats = ExportStats::default();
    let mut links = Links::new();
    let mut written: HashSet<Vec<u8>> = HashSet::new();
    let fail = |f: Failure| match f {
        Failure::Read(e) => LayerError::ReadTree(e),
        Failure::Write(e) => LayerError::Write(FsError::new("write", &tmp, e)),
    };
    for change in &changes {
        let rel = change.path.as_os_str().as_bytes();
        if rel.is_empty() {
            continue;
        }
        // Unchanged ancestors first (in order, outermost first).
        for (i, _) in rel.iter().enumerate().filter(|(_, &b)| b == b'/') {
            let ancestor = &rel[..i];
            if written.insert(ancestor.to_vec()) {
                tarw::write_node(
                    child,
                    ancestor,
                    &mut links,
                    &mut out,
                    &mut stats,
                    clamp_mtime,
                )
                .map_err(fail)?;
            }
        }
        match change.kind {
            ChangeKind::Deleted => {
                tarw::write_whiteout(rel, &mut out).map_err(|e| fail(Failure::Write(e)))?;
            }
            ChangeKind::Added | ChangeKind::Modified => {
                if change.kind == ChangeKind::Modified {
                    if let Some(parent) = parent {
                        let old = parent.join(&change.path);
                        let old_type = fs::symlink_metadata(&old)
                            .map_err(|e| LayerError::ReadTree(FsError::new("inspect", &old, e)))?
                            .file_type();
                        if snapshot::EntryKind::of(old_type) != change.entry {
                            tarw::write_whiteout(rel, &mut out)
                                .map_err(|e| fail(Failure::Write(e)))?;
                        }
                    }
                }
                if tarw::write_node(child, rel, &mut links, &mut out, &mut stats, clamp_mtime)
                    .map_err(fail)?
                    == Some(true)
                {
                    written.insert(rel.to_vec());
                }
            }
        }
    }
    tarw::write_end(&mut out).map_err(write_err)?;
    let (buffered, diff_id, _) = out.finish();
    let compressor = buffered
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?;
    let blob = compressor.finish().map_err(write_err)?;
    let descriptor = blob
        .commit(compression.media_type(oci), None)
        .map_err(LayerError::Commit)?;
    Ok(Layer {
        descriptor,
        diff_id,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{replace_file, Store};
    use std::io::Read;

    /// The entries of an uncompressed layer blob: `name` or `name->link`.
    fn entries(store: &ContentStore, layer: &Layer) -> Vec<String> {
        let bytes = store.read(&layer.descriptor.digest).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = String::new();
                e.read_to_string(&mut data).unwrap();
                if data.is_empty() {
                    name
                } else {
                    format!("{name}={data}")
                }
            })
            .collect()
    }

    fn opts(compression: Compression, oci: bool) -> LayerOptions {
        LayerOptions {
            compression,
            oci,
            clamp_mtime: None,
        }
    }

    fn setup() -> (tempfile::TempDir, Store, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s")).unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        (dir, store, content)
    }

    #[test]
    fn deletions_become_whiteouts_and_type_changes_are_whited_out_first() {
        let (_d, store, content) = setup();
        let base = store.prepare(None).unwrap();
        fs::create_dir_all(base.path().join("etc/sub")).unwrap();
        fs::write(base.path().join("etc/sub/keep"), "k").unwrap();
        fs::write(base.path().join("etc/gone"), "g").unwrap();
        fs::write(base.path().join("flip"), "f").unwrap();
        fs::create_dir(base.path().join("dir")).unwrap();
        let base = base.commit().unwrap();

        let child = store.prepare(Some(&base)).unwrap();
        let c = child.path();
        fs::remove_file(c.join("etc/gone")).unwrap();
        replace_file(&c.join("etc/sub/keep"), 0o644, |f| f.write_all(b"K")).unwrap();
        fs::remove_file(c.join("flip")).unwrap();
        fs::create_dir(c.join("flip")).unwrap();
        fs::write(c.join("flip/in"), "i").unwrap();
        fs::remove_dir(c.join("dir")).unwrap();
        let child = child.commit().unwrap();

        let first = write_layer(
            &content,
            None,
            &store.path(&base),
            &opts(Compression::Uncompressed, true),
        )
        .unwrap();
        assert_eq!(
            entries(&content, &first),
            [
                "dir/",
                "etc/",
                "etc/gone=g",
                "etc/sub/",
                "etc/sub/keep=k",
                "flip=f"
            ]
        );
        let layer = write_layer(
            &content,
            Some(&store.path(&base)),
            &store.path(&child),
            &opts(Compression::Uncompressed, true),
        )
        .unwrap();
        assert_eq!(
            entries(&content, &layer),
            [
                ".wh.dir",
                "etc/",
                "etc/.wh.gone",
                "etc/sub/",
                "etc/sub/keep=K",
                ".wh.flip",
                "flip/",
                "flip/in=i",
            ]
        );
        // Uncompressed: the blob is the tar, so both digests agree.
        assert_eq!(layer.diff_id, layer.descriptor.digest);
        assert_eq!(
            layer.descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar"
        );
    }

    #[test]
    fn same_trees_give_the_same_blobs_and_compression_keeps_the_diff_id() {
        let (_d, store, content) = setup();
        let a = store.prepare(None).unwrap();
        fs::create_dir(a.path().join("app")).unwrap();
        fs::write(a.path().join("app/x"), "x".repeat(10_000)).unwrap();
        let a = a.commit().unwrap();
        let tree = store.path(&a);
        let plain = write_layer(
            &content,
            None,
            &tree,
            &opts(Compression::Uncompressed, true),
        )
        .unwrap();
        let gz1 = write_layer(&content, None, &tree, &opts(Compression::Gzip(6), true)).unwrap();
        let gz2 = write_layer(&content, None, &tree, &opts(Compression::Gzip(6), false)).unwrap();
        let zst = write_layer(&content, None, &tree, &opts(Compression::Zstd(3), true)).unwrap();
        assert_eq!(gz1.descriptor.digest, gz2.descriptor.digest);
        assert_eq!(
            gz2.descriptor.media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        for l in [&gz1, &zst] {
            assert_eq!(l.diff_id, plain.diff_id);
            assert_ne!(l.descriptor.digest, plain.descriptor.digest);
            assert!(l.descriptor.size < plain.descriptor.size);
        }
        // The compressed blobs decompress to the diff_id's bytes.
        let gz = content.read(&gz1.descriptor.digest).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(crate::content::sha256_digest(&tar), plain.diff_id);
        let zs = content.read(&zst.descriptor.digest).unwrap();
        let tar = zstd::decode_all(&zs[..]).unwrap();
        assert_eq!(crate::content::sha256_digest(&tar), plain.diff_id);
        // Gzip level changes the blob, not the diff_id.
        let gz9 = write_layer(&content, None, &tree, &opts(Compression::Gzip(9), true)).unwrap();
        assert_eq!(gz9.diff_id, plain.diff_id);
    }

    #[test]
    fn rewrite_timestamp_clamps_only_later_mtimes() {
        let (_d, store, content) = setup();
        let a = store.prepare(None).unwrap();
        fs::write(a.path().join("old"), "o").unwrap();
        fs::write(a.path().join("new"), "n").unwrap();
        let set = |name: &str, secs| {
            let t = filetime::FileTime::from_unix_time(secs, 0);
            filetime::set_file_mtime(a.path().join(name), t).unwrap();
        };
        set("old", 1_000);
        set("new", 2_000_000_000);
        let a = a.commit().unwrap();
        let mut o = opts(Compression::Uncompressed, true);
        o.clamp_mtime = Some(1_700_000_000);
        let layer = write_layer(&content, None, &store.path(&a), &o).unwrap();
        let bytes = content.read(&layer.descriptor.digest).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let times: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                (name, e.header().mtime().unwrap())
            })
            .collect();
        assert_eq!(
            times,
            [
                ("new".to_string(), 1_700_000_000),
                ("old".to_string(), 1_000)
            ]
        );
    }

    #[test]
    fn media_types_convert_between_flavours() {
        let docker_gz = "application/vnd.docker.image.rootfs.diff.tar.gzip";
        let oci_gz = "application/vnd.oci.image.layer.v1.tar+gzip";
        assert_eq!(convert_media_type(docker_gz, true).as_deref(), Some(oci_gz));
        assert_eq!(
            convert_media_type(oci_gz, false).as_deref(),
            Some(docker_gz)
        );
        assert_eq!(
            convert_media_type("application/vnd.oci.image.layer.v1.tar", false).as_deref(),
            Some("application/vnd.docker.image.rootfs.diff.tar")
        );
        let foreign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
        assert_eq!(convert_media_type(foreign, true), None);
    }

    #[test]
    fn recompressing_keeps_the_tar_and_checks_the_diff_id() {
        let (_d, store, content) = setup();
        let a = store.prepare(None).unwrap();
        fs::write(a.path().join("x"), "x".repeat(5000)).unwrap();
        let a = a.commit().unwrap();
        let gz = write_layer(
            &content,
            None,
            &store.path(&a),
            &opts(Compression::Gzip(6), true),
        )
        .unwrap();
        let plain = recompress(
            &content,
            &gz.descriptor,
            &gz.diff_id,
            Compression::Uncompressed,
            true,
        )
        .unwrap();
        assert_eq!(plain.digest, gz.diff_id);
        assert_eq!(plain.media_type, "application/vnd.oci.image.layer.v1.tar");
        let err = recompress(
            &content,
            &gz.descriptor,
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            Compression::Zstd(3),
            true,
        )
        .unwrap_err();
        assert!(matches!(err, LayerError::DiffId { .. }), "{err}");
    }

    #[test]
    fn an_empty_change_set_is_an_empty_tar() {
        let (_d, store, content) = setup();
        let a = store.prepare(None).unwrap().commit().unwrap();
        let b = store.prepare(Some(&a)).unwrap().commit().unwrap();
        let layer = write_layer(
            &content,
            Some(&store.path(&a)),
            &store.path(&b),
            &opts(Compression::Uncompressed, true),
        )
        .unwrap();
        assert_eq!(layer.descriptor.size, 1024);
    }
}
