//! Image exporters: `--output type=oci` (an OCI image layout as a tar)
//! and `type=docker` (a `docker load` archive); [`commit`] alone makes
//! the image for the local image store. All make the same image: a base
//! image's layers exactly as it has them (same blobs, same digests, only
//! the media type renamed to the manifest's flavour, as BuildKit does),
//! then one layer per later step of the build's main chain
//! ([`super::layer`]), an image config whose `rootfs.diff_ids` and
//! non-empty `history` entries match those layers one to one (skopeo and
//! umoci check this), and a manifest (OCI media types, or Docker schema 2
//! with `oci-mediatypes=false`, the docker exporter's default). Every
//! blob goes through the [`ContentStore`] first and is copied into the
//! archive from there, checked against its digest on the way.
//!
//! A multi-platform build makes one image per platform, then
//! [`commit_index`] stores an index naming them (an OCI image index, or
//! a Docker manifest list with Docker media types), each entry with its
//! platform; an OCI archive of it ([`Archived::Index`]) points
//! `index.json` at that index, as BuildKit's oci exporter does.
//!
//! `force-compression=true` recompresses base layers whose compression
//! differs from the one asked for (same tar, so same diff_id);
//! `rewrite-timestamp=true` clamps the mtimes in the build's own layers
//! to `SOURCE_DATE_EPOCH` and leaves base layers alone, as BuildKit.
//!
//! The archive holds, in this order: `blobs/`, `blobs/sha256/`, each blob
//! (by digest), `oci-layout`, `index.json` and, for `type=docker`,
//! `manifest.json` (the docker-archive index; BuildKit's docker exporter
//! writes both, so the archive is also a valid OCI layout). Entries have
//! mode 0644/0755, owner root and a zero mtime, so the archive depends
//! only on the image: with `SOURCE_DATE_EPOCH` fixing the timestamps, two
//! builds of the same inputs give byte-identical archives.
//!
//! Imports `crate::content`, `crate::image`, `crate::snapshot` (through
//! the layer writer), `crate::cache` (the layer blob memo) and the tar
//! writer; must not import the solver or the CLI — the caller passes the
//! trees of the chain and the config.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::layer::{self, Compression, LayerError};
use super::tar as tarw;
use crate::cache::{CacheDb, CacheKey, Digest, LayerBlob};
use crate::content::{digest_hex, ContentError, ContentStore, Descriptor, HashingWriter};
use crate::image::config::{History, RootFs};
use crate::image::{Image, Platform, Reference};
use crate::snapshot::{fsx, SnapshotId};
use crate::util::fs::FsError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The comment BuildKit gives history entries it adds for layers the
/// frontend did not describe.
const EXPORTER_COMMENT: &str = "buildkit.exporter.image.v0";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why an image could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Making layer `index` (0 = bottom) failed.
    #[error("cannot make layer {index}")]
    Layer {
        index: usize,
        #[source]
        source: LayerError,
    },
    /// Serialising the config, manifest or an index failed.
    #[error("cannot encode the image {what}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Storing the config or manifest blob failed.
    #[error("cannot store the image {what}")]
    StoreBlob {
        what: &'static str,
        #[source]
        source: ContentError,
    },
    /// Reading a blob back for the archive failed, or it no longer
    /// matched its digest.
    #[error("cannot read blob {digest} for the archive")]
    ReadBlob {
        digest: String,
        #[source]
        source: ContentError,
    },
    /// Creating, writing or renaming the archive file failed; the
    /// destination was not touched.
    #[error("cannot write image archive `{}`", dest.display())]
    WriteArchive {
        dest: PathBuf,
        #[source]
        source: FsError,
    },
    /// Writing the archive to standard output failed.
    #[error("cannot write the image archive stream")]
    WriteStream(#[source] io::Error),
}

/// The archive flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An OCI image layout.
    Oci,
    /// A docker-archive (`manifest.json`) plus the OCI layout files.
    Docker,
}

/// What an image export is asked for (the `--output` attributes, parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    pub compression: Compression,
    /// OCI media types (true) or Docker schema 2 (false).
    pub oci_mediatypes: bool,
    /// Names for `index.json` and `manifest.json`, each with a tag.
    pub names: Vec<Reference>,
    /// `annotation.*` / `annotation-manifest.*`: on the manifest (a
    /// multi-platform build commits each image with its platform's).
    pub manifest_annotations: BTreeMap<String, String>,
    /// `annotation-manifest-descriptor.*`: on `index.json`'s entries for
    /// a lone image (a multi-platform index's entries take each
    /// platform's from [`commit_index`]).
    pub descriptor_annotations: BTreeMap<String, String>,
    /// `annotation-index.*`: on a multi-platform image's index.
    pub index_annotations: BTreeMap<String, String>,
    /// `annotation-index-descriptor.*`: on `index.json`'s entry for a
    /// multi-platform image's index.
    pub index_descriptor_annotations: BTreeMap<String, String>,
    /// The image's creation time, RFC 3339 (SOURCE_DATE_EPOCH or now).
    pub created: String,
    /// `rewrite-timestamp`: new layers' mtimes later than this (seconds
    /// since the epoch) are written as this.
    pub clamp_mtime: Option<i64>,
    /// `force-compression`: base layers are recompressed when their
    /// compression differs from [`ImageOptions::compression`].
    pub force_compression: bool,
}

/// One layer of the image to make, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSource {
    /// The full tree up to and including this layer (the next layer is
    /// diffed against it).
    pub tree: PathBuf,
    /// The snapshot `tree` is, when it is one: the blob made from it is
    /// then remembered for the next export (see [`commit`]).
    pub snapshot: Option<SnapshotId>,
    /// A base image's blob for this layer, reused as is when it is in the
    /// content store; `None` for a build step (diffed against the layer
    /// below).
    pub blob: Option<BaseBlob>,
}

/// A base image layer's blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBlob {
    pub descriptor: Descriptor,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

/// A stored image: its manifest, config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The layers' uncompressed digests, as the config lists them.
    pub diff_ids: Vec<String>,
}

/// A multi-platform image: an index (OCI image index, or Docker
/// manifest list without OCI media types) naming one image per platform,
/// all stored in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedIndex {
    pub index: Descriptor,
    /// Each platform's image, in the index's order.
    pub images: Vec<(Platform, Committed)>,
}

/// What an archive holds: one image, or an index of several.
#[derive(Debug, Clone, Copy)]
pub enum Archived<'a> {
    Image(&'a Committed),
    Index(&'a CommittedIndex),
}

impl<'a> Archived<'a> {
    /// The descriptor `index.json` points at.
    fn top(self) -> &'a Descriptor {
        match self {
            Archived::Image(c) => &c.manifest,
            Archived::Index(i) => &i.index,
        }
    }

    /// Every blob, each once, sorted by digest.
    fn blobs(self) -> Vec<&'a Descriptor> {
        let (top, images): (Option<&'a Descriptor>, Vec<&'a Committed>) = match self {
            Archived::Image(c) => (None, vec![c]),
            Archived::Index(i) => (Some(&i.index), i.images.iter().map(|(_, c)| c).collect()),
        };
        let mut blobs: Vec<&'a Descriptor> = top.into_iter().collect();
        for c in images {
            blobs.push(&c.manifest);
            blobs.push(&c.config);
            blobs.extend(&c.layers);
        }
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        blobs.dedup_by(|a, b| a.digest == b.digest);
        blobs
    }
}

/// An index entry: a manifest's descriptor and the platform it is for,
/// with the fields in the order BuildKit writes them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlatformEntry<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
    platform: IndexPlatform<'a>,
}

#[derive(Serialize)]
struct IndexPlatform<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlatformIndex<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<PlatformEntry<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// Stores an index of `images` (one per platform, made by [`commit`]
/// with the same `opts` but for their own manifest annotations): an OCI
/// image index, or a Docker manifest list when `opts` asks for Docker
/// media types, each entry carrying its platform and the annotations
/// `descriptors` has for that platform (BuildKit's manifest-descriptor
/// annotations, which may differ per platform; `opts`'s
/// `descriptor_annotations` are not used here), the index the index
/// annotations, as BuildKit's image writer makes it.
pub fn commit_index(
    content: &ContentStore,
    images: Vec<(Platform, Committed)>,
    descriptors: &BTreeMap<Platform, BTreeMap<String, String>>,
    opts: &ImageOptions,
) -> Result<CommittedIndex, ImageError> {
    let none = BTreeMap::new();
    let media_type = if opts.oci_mediatypes {
        OCI_INDEX
    } else {
        DOCKER_MANIFEST_LIST
    };
    let manifests = images
        .iter()
        .map(|(platform, c)| PlatformEntry {
            media_type: &c.manifest.media_type,
            digest: &c.manifest.digest,
            size: c.manifest.size,
            annotations: descriptors.get(platform).unwrap_or(&none),
            platform: IndexPlatform {
                architecture: &platform.architecture,
                os: &platform.os,
                variant: platform.variant.as_deref(),
            },
        })
        .collect();
    let bytes = serde_json::to_vec(&PlatformIndex {
        schema_version: 2,
        media_type,
        manifests,
        annotations: &opts.index_annotations,
    })
    .map_err(|source| ImageError::Encode {
        what: "index",
        source,
    })?;
    let index = content
        .put(media_type, &bytes)
        .map_err(|source| ImageError::StoreBlob {
            what: "index",
            source,
        })?;
    Ok(CommittedIndex { index, images })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: &'a [Descriptor],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The config with `rootfs` and `history` made to match `diff_ids`, as
/// BuildKit's `normalizeLayersAndHistory` does: history entries claiming
/// more layers than exist are marked empty from the top; missing ones are
/// added with the exporter's comment; entries without a time get
/// `created`.
pub fn finish_config(image: &Image, diff_ids: Vec<String>, created: &str) -> Image {
    let mut img = image.clone();
    let mut seen = 0;
    for h in &mut img.history {
        if !h.empty_layer {
            if seen >= diff_ids.len() {
                h.empty_layer = true;
            } else {
                seen += 1;
            }
        }
    }
    for _ in seen..diff_ids.len() {
        img.history.push(History {
            created: None,
            created_by: String::new(),
            comment: Some(EXPORTER_COMMENT.to_string()),
            empty_layer: false,
        });
    }
    for h in &mut img.history {
        if h.created.is_none() {
            h.created = Some(created.to_string());
        }
    }
    img.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids,
    };
    img.created = Some(created.to_string());
    img
}

/// Makes the layers of `chain` (bottom first: a base blob reused, or the
/// change from `chain[i-1]` to `chain[i]`), the config and the manifest,
/// all stored in `content`. With `memo`, a step's layer made before from
/// the same two snapshots with the same compression and clamp is reused
/// rather than made again, and new ones are remembered.
pub fn commit(
    content: &ContentStore,
    chain: &[LayerSource],
    image: &Image,
    opts: &ImageOptions,
    memo: Option<&CacheDb>,
) -> Result<Committed, ImageError> {
    let (layers, diff_ids) = make_layers(content, chain, opts, memo)?;
    let config = finish_config(image, diff_ids.clone(), &opts.created);
    commit_config(content, config, layers, diff_ids, opts)
}

/// Stores `config` and a manifest of it and `layers` (already stored).
pub fn commit_config(
    content: &ContentStore,
    config: Image,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    opts: &ImageOptions,
) -> Result<Committed, ImageError> {
    commit_value(content, &config, layers, diff_ids, opts)
}

/// [`commit_config`] for a config given as any serialisable value (an
/// image config with extra keys, such as an inline build cache).
pub fn commit_value<C: Serialize>(
    content: &ContentStore,
    config: &C,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    opts: &ImageOptions,
) -> Result<Committed, ImageError> {
    let config_bytes = serde_json::to_vec(config).map_err(|source| ImageError::Encode {
        what: "config",
        source,
    })?;
    let (manifest_type, config_type) = if opts.oci_mediatypes {
        (OCI_MANIFEST, OCI_CONFIG)
    } else {
        (DOCKER_MANIFEST, DOCKER_CONFIG)
    };
    let config_desc =
        content
            .put(config_type, &config_bytes)
            .map_err(|source| ImageError::StoreBlob {
                what: "config",
                source,
            })?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: manifest_type,
        config: &config_desc,
        layers: &layers,
        annotations: &opts.manifest_annotations,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|source| ImageError::Encode {
        what: "manifest",
        source,
    })?;
    let manifest_desc = content
        .put(manifest_type, &manifest_bytes)
        .map_err(|source| ImageError::StoreBlob {
            what: "manifest",
            source,
        })?;
    Ok(Committed {
        manifest: manifest_desc,
        config: config_desc,
        layers,
        diff_ids,
    })
}

/// The layer blobs of `chain` (see [`commit`]) and their diff IDs,
/// stored in `content`.
pub fn make_layers(
    content: &ContentStore,
    chain: &[LayerSource],
    opts: &ImageOptions,
    memo: Option<&CacheDb>,
) -> Result<(Vec<Descriptor>, Vec<String>), ImageError> {
    let mut layers = Vec::with_capacity(chain.len());
    let mut diff_ids = Vec::with_capacity(chain.len());
    for (index, link) in chain.iter().enumerate() {
        let fail = |source| ImageError::Layer { index, source };
        // A base blob missing from the store (removed by hand) is made
        // again from the trees: a valid layer, if not the same bytes.
        let reused = link
            .blob
            .as_ref()
            .filter(|b| content.exists(&b.descriptor.digest));
        let (descriptor, diff_id) = match reused {
            Some(base) => {
                let want = opts.compression.media_type(opts.oci_mediatypes);
                match layer::convert_media_type(&base.descriptor.media_type, opts.oci_mediatypes) {
                    // A media type bk does not know (foreign layers):
                    // kept exactly.
                    None => (base.descriptor.clone(), base.diff_id.clone()),
                    Some(media_type) if !opts.force_compression || media_type == want => {
                        let mut d = base.descriptor.clone();
                        d.media_type = media_type;
                        d.annotations.clear();
                        (d, base.diff_id.clone())
                    }
                    Some(_) => {
                        let d = layer::recompress(
                            content,
                            &base.descriptor,
                            &base.diff_id,
                            opts.compression,
                            opts.oci_mediatypes,
                        )
                        .map_err(fail)?;
                        (d, base.diff_id.clone())
                    }
                }
            }
            None => {
                let below = index.checked_sub(1).map(|i| &chain[i]);
                let key = memo.zip(link.snapshot.as_ref()).and_then(|(db, id)| {
                    let parent = match below {
                        None => None,
                        // Below is a directory bk does not own: nothing
                        // to key the layer by.
                        Some(b) => Some(b.snapshot.as_ref()?),
                    };
                    Some((db, id, blob_key(parent, id, opts)))
                });
                // The memo is only a shortcut: a failed lookup or record
                // makes the layer again, or again next time.
                let remembered = key
                    .as_ref()
                    .and_then(|(db, _, key)| db.layer_blob(key).ok().flatten())
                    .filter(|b| content.exists(&b.digest));
                match remembered {
                    Some(blob) => (
                        Descriptor {
                            media_type: layer::convert_media_type(
                                &blob.media_type,
                                opts.oci_mediatypes,
                            )
                            .unwrap_or(blob.media_type),
                            digest: blob.digest,
                            size: blob.size,
                            annotations: BTreeMap::new(),
                        },
                        blob.diff_id,
                    ),
                    None => {
                        let layer = layer::write_layer(
                            content,
                            below.map(|b| b.tree.as_path()),
                            &link.tree,
                            &layer::LayerOptions {
                                compression: opts.compression,
                                oci: opts.oci_mediatypes,
                                clamp_mtime: opts.clamp_mtime,
                            },
                        )
                        .map_err(fail)?;
                        if let Some((db, id, key)) = &key {
                            let _ = db.put_layer_blob(
                                key,
                                &LayerBlob {
                                    snapshot_id: id.as_str().to_string(),
                                    media_type: layer.descriptor.media_type.clone(),
                                    digest: layer.descriptor.digest.clone(),
                                    size: layer.descriptor.size,
                                    diff_id: layer.diff_id.clone(),
                                },
                            );
                        }
                        (layer.descriptor, layer.diff_id)
                    }
                }
            }
        };
        diff_ids.push(diff_id);
        layers.push(descriptor);
    }
    Ok((layers, diff_ids))
}

/// The memo key of the layer from `parent` (None: the empty tree) to
/// `child`: snapshots are immutable, so these and the options that shape
/// the bytes (compression with its level, time clamp) fix the blob.
fn blob_key(parent: Option<&SnapshotId>, child: &SnapshotId, opts: &ImageOptions) -> CacheKey {
    CacheKey::from(Digest::of(
        format!(
            "bk.layer-blob.v1 {} {} {:?} {:?}",
            parent.map_or("-", SnapshotId::as_str),
            child.as_str(),
            opts.compression,
            opts.clamp_mtime
        )
        .as_bytes(),
    ))
}

/// Where an archive goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A file, replaced atomically.
    Path(PathBuf),
    /// Standard output (`dest=-`), streamed.
    Stdout,
}

/// Writes `image` (one image or an index) as an archive of `format` to
/// `dest`. A docker-archive holds one image: an index is only written
/// as an OCI layout.
pub fn write_archive(
    content: &ContentStore,
    image: Archived<'_>,
    format: Format,
    opts: &ImageOptions,
    dest: &Dest,
) -> Result<(), ImageError> {
    match dest {
        Dest::Stdout => {
            let mut out = BufWriter::new(io::stdout().lock());
            write_entries(content, image, format, opts, &mut out).map_err(|f| match f {
                Fail::Blob(e) => e,
                Fail::Write(e) => ImageError::WriteStream(e),
            })?;
            out.flush().map_err(ImageError::WriteStream)
        }
        Dest::Path(dest) => write_file(content, image, format, opts, dest),
    }
}

/// Failures while writing entries: a blob's, or the output's.
enum Fail {
    Blob(ImageError),
    Write(io::Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Write(e)
    }
}

fn write_file(
    content: &ContentStore,
    image: Archived<'_>,
    format: Format,
    opts: &ImageOptions,
    dest: &Path,
) -> Result<(), ImageError> {
    let fail = |source| ImageError::WriteArchive {
        dest: dest.to_path_buf(),
        source,
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut name = dest.file_name().map(|n| n.to_os_string()).ok_or_else(|| {
        fail(FsError::new(
            "name",
            dest,
            io::Error::from(io::ErrorKind::InvalidInput),
        ))
    })?;
    name.push(format!(".{}.tmp", fsx::random_hex(8)));
    let tmp = dir.join(name);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(&tmp)
        .map_err(|e| fail(FsError::new("create", &tmp, e)))?;
    let result = (|| {
        let mut out = BufWriter::new(file);
        write_entries(content, image, format, opts, &mut out).map_err(|f| match f {
            Fail::Blob(e) => e,
            Fail::Write(e) => fail(FsError::new("write", &tmp, e)),
        })?;
        let file = out
            .into_inner()
            .map_err(|e| fail(FsError::new("write", &tmp, e.into_error())))?;
        file.sync_all()
            .map_err(|e| fail(FsError::new("flush", &tmp, e)))?;
        fs::rename(&tmp, dest).map_err(|e| fail(FsError::new("rename into place", dest, e)))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `docker.io/library/alpine:1` → `alpine:1`, as `docker images` and
/// `manifest.json`'s RepoTags show names.
pub fn familiar(name: &Reference) -> String {
    let full = name.to_string();
    full.strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .map_or(full.clone(), str::to_string)
}

fn write_entries<W: Write>(
    content: &ContentStore,
    image: Archived<'_>,
    format: Format,
    opts: &ImageOptions,
    out: &mut W,
) -> Result<(), Fail> {
    let encode = |what, r: Result<Vec<u8>, serde_json::Error>| {
        r.map_err(|source| Fail::Blob(ImageError::Encode { what, source }))
    };
    let blobs = image.blobs();
    tarw::write_dir_entry("blobs", out)?;
    tarw::write_dir_entry("blobs/sha256", out)?;
    for blob in blobs {
        copy_blob(content, blob, out)?;
    }
    tarw::write_file_entry("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, out)?;
    let mut manifests = Vec::new();
    let entry = |annotations: BTreeMap<String, String>| {
        let mut d = image.top().clone();
        d.annotations = match image {
            Archived::Image(_) => opts.descriptor_annotations.clone(),
            Archived::Index(_) => opts.index_descriptor_annotations.clone(),
        };
        d.annotations.extend(annotations);
        d
    };
    if opts.names.is_empty() {
        manifests.push(entry(BTreeMap::new()));
    }
    for name in &opts.names {
        let mut a = BTreeMap::new();
        a.insert(ANNOTATION_IMAGE_NAME.to_string(), name.to_string());
        if let Some(tag) = &name.tag {
            a.insert(ANNOTATION_REF_NAME.to_string(), tag.clone());
        }
        manifests.push(entry(a));
    }
    let index = encode(
        "index",
        serde_json::to_vec(&Index {
            schema_version: 2,
            media_type: OCI_INDEX,
            manifests: &manifests,
        }),
    )?;
    tarw::write_file_entry("index.json", &index, out)?;
    if let (Format::Docker, Archived::Image(image)) = (format, image) {
        let path = |d: &Descriptor| {
            digest_hex(&d.digest)
                .map(|h| format!("blobs/sha256/{h}"))
                .map_err(|source| {
                    Fail::Blob(ImageError::ReadBlob {
                        digest: d.digest.clone(),
                        source,
                    })
                })
        };
        let entry = DockerArchiveEntry {
            config: path(&image.config)?,
            repo_tags: opts.names.iter().map(familiar).collect(),
            layers: image.layers.iter().map(path).collect::<Result<_, _>>()?,
        };
        let manifest = encode("docker manifest", serde_json::to_vec(&[entry]))?;
        tarw::write_file_entry("manifest.json", &manifest, out)?;
    }
    tarw::write_end(out)?;
    Ok(())
}

/// Copies a stored blob into the archive, hashing it on the way: a blob
/// changed on disk since it was stored fails the export rather than
/// producing an archive whose names lie.
fn copy_blob<W: Write>(content: &ContentStore, blob: &Descriptor, out: &mut W) -> Result<(), Fail> {
    let read_fail = |source| {
        Fail::Blob(ImageError::ReadBlob {
            digest: blob.digest.clone(),
            source,
        })
    };
    let hex = digest_hex(&blob.digest).map_err(read_fail)?;
    let mut file = content.open_blob(&blob.digest).map_err(read_fail)?;
    tarw::write_file_header(&format!("blobs/sha256/{hex}"), blob.size, out)?;
    let mut hashed = HashingWriter::new(out);
    let mut buf = vec![0u8; 64 * 1024];
    let io_fail = |e| {
        read_fail(ContentError::Read {
            digest: blob.digest.clone(),
            source: FsError::new("read", content.path(&blob.digest).unwrap_or_default(), e),
        })
    };
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_fail(e)),
        };
        hashed.write_all(&buf[..n])?;
    }
    let (out, digest, size) = hashed.finish();
    if digest != blob.digest || size != blob.size {
        return Err(read_fail(ContentError::Corrupt {
            digest: blob.digest.clone(),
            actual: digest,
        }));
    }
    tarw::pad(size, out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::layer::Compression;

    fn history(created_by: &str, empty: bool) -> History {
        History {
            created: None,
            created_by: created_by.into(),
            comment: None,
            empty_layer: empty,
        }
    }

    #[test]
    fn history_is_made_to_match_the_layers() {
        let img = Image {
            history: vec![
                history("COPY a", false),
                history("ENV x", true),
                history("COPY b", false),
            ],
            ..Image::default()
        };
        let fewer = finish_config(&img, vec!["sha256:1".into()], "T");
        let flags: Vec<bool> = fewer.history.iter().map(|h| h.empty_layer).collect();
        assert_eq!(flags, [false, true, true]);
        assert!(fewer
            .history
            .iter()
            .all(|h| h.created.as_deref() == Some("T")));
        let ids = vec!["sha256:1".into(), "sha256:2".into(), "sha256:3".into()];
        let more = finish_config(&img, ids.clone(), "T");
        assert_eq!(more.history.len(), 4);
        assert_eq!(more.history[3].comment.as_deref(), Some(EXPORTER_COMMENT));
        assert_eq!(more.rootfs.diff_ids, ids);
        let non_empty = more.history.iter().filter(|h| !h.empty_layer).count();
        assert_eq!(non_empty, 3);
        assert_eq!(more.created.as_deref(), Some("T"));
    }

    fn options(oci: bool) -> ImageOptions {
        ImageOptions {
            compression: Compression::Gzip(6),
            oci_mediatypes: oci,
            names: Vec::new(),
            manifest_annotations: BTreeMap::new(),
            descriptor_annotations: BTreeMap::new(),
            index_annotations: BTreeMap::new(),
            index_descriptor_annotations: BTreeMap::new(),
            created: "T".into(),
            clamp_mtime: None,
            force_compression: false,
        }
    }

    #[test]
    fn base_blobs_are_reused_and_missing_ones_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::snapshot::Store::open(&dir.path().join("s")).unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        let base = store.prepare(None).unwrap();
        fs::write(base.path().join("base"), "b").unwrap();
        let base = base.commit().unwrap();
        let step = store.prepare(Some(&base)).unwrap();
        fs::write(step.path().join("new"), "n").unwrap();
        let step = step.commit().unwrap();
        // The base layer as a registry would have it: Docker media type.
        let pulled = layer::write_layer(
            &content,
            None,
            &store.path(&base),
            &layer::LayerOptions {
                compression: Compression::Gzip(1),
                oci: false,
                clamp_mtime: None,
            },
        )
        .unwrap();
        let chain = |blob: Descriptor| {
            vec![
                LayerSource {
                    tree: store.path(&base),
                    snapshot: Some(base.clone()),
                    blob: Some(BaseBlob {
                        descriptor: blob,
                        diff_id: pulled.diff_id.clone(),
                    }),
                },
                LayerSource {
                    tree: store.path(&step),
                    snapshot: Some(step.clone()),
                    blob: None,
                },
            ]
        };
        let image = Image::default();
        let db = CacheDb::open(dir.path()).unwrap();
        let made = commit(
            &content,
            &chain(pulled.descriptor.clone()),
            &image,
            &options(true),
            Some(&db),
        )
        .unwrap();
        assert_eq!(made.layers.len(), 2);
        assert_eq!(made.layers[0].digest, pulled.descriptor.digest, "same blob");
        assert_eq!(
            made.layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let config: Image =
            serde_json::from_slice(&content.read(&made.config.digest).unwrap()).unwrap();
        assert_eq!(config.rootfs.diff_ids[0], pulled.diff_id);
        // A blob no longer in the store: the layer is made from the tree
        // (level 6 here, so other bytes), with the same content.
        let mut gone = pulled.descriptor.clone();
        gone.digest = crate::content::sha256_digest(b"not stored");
        let remade = commit(&content, &chain(gone.clone()), &image, &options(true), None).unwrap();
        assert_ne!(remade.layers[0].digest, gone.digest);
        assert!(content.exists(&remade.layers[0].digest));
        let config: Image =
            serde_json::from_slice(&content.read(&remade.config.digest).unwrap()).unwrap();
        assert_eq!(config.rootfs.diff_ids[0], pulled.diff_id);

        // The step's layer was remembered: made again from nothing (its
        // tree emptied here, which a snapshot never is), the remembered
        // blob is used, in the Docker flavour asked for now.
        for entry in fs::read_dir(store.path(&step)).unwrap() {
            let _ = entry.map(|e| e.path()).map(fs::remove_file);
        }
        let again = commit(
            &content,
            &chain(pulled.descriptor.clone()),
            &image,
            &options(false),
            Some(&db),
        )
        .unwrap();
        assert_eq!(again.layers[1].digest, made.layers[1].digest);
        assert_eq!(
            again.layers[1].media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        // Another compression is another blob.
        let mut zstd = options(true);
        zstd.compression = Compression::Zstd(3);
        let other = commit(
            &content,
            &chain(pulled.descriptor.clone()),
            &image,
            &zstd,
            Some(&db),
        )
        .unwrap();
        assert_ne!(other.layers[1].digest, made.layers[1].digest);
    }

    #[test]
    fn familiar_names_drop_docker_hub() {
        let r = |s: &str| Reference::parse_normalized(s).unwrap().with_default_tag();
        assert_eq!(familiar(&r("alpine")), "alpine:latest");
        assert_eq!(familiar(&r("me/app:1")), "me/app:1");
        assert_eq!(familiar(&r("ghcr.io/o/r:2")), "ghcr.io/o/r:2");
    }
}
