//! Build cache shared between stores: `--cache-to` writes the results
//! of a build as layer blobs plus a cache config that maps cache keys to
//! them; `--cache-from` reads such a config so that the solver can fetch
//! a step's result instead of running it.
//!
//! # Format, and what is BuildKit-compatible
//!
//! The config is BuildKit's `application/vnd.buildkit.cacheconfig.v0`
//! JSON ([`config::CacheConfig`]): `layers` (each a blob with its parent
//! layer's index, media type, diff ID and size in `annotations`) and
//! `records` (a cache key and the index of its result's top layer). A
//! record's result is the chain of layers from that top layer down
//! through the parents, exactly the layers an image of the result has:
//! each step's diff against the tree below it. It is carried by an OCI
//! image manifest whose config is the cache config and whose layers are
//! the blobs (BuildKit's `image-manifest=true` shape), stored in an OCI
//! image layout directory (`type=local`) or pushed to a repository
//! (`type=registry`). `type=inline` puts the config, base64-encoded,
//! under `moby.buildkit.cache.v0` in the exported image's config, with
//! blob digests that are the image's own layers.
//!
//! Not compatible: the keys. BuildKit's record digests are its own
//! content-addressed keys linked through `inputs` (each record names its
//! parents' records), and its solver recomputes them from LLB; bk's keys
//! ([`crate::solver::cache_key`]) already cover the inputs' keys, so bk
//! writes records without `inputs` and looks them up by key alone.
//! BuildKit can therefore read a bk cache's manifest and blobs but will
//! never match a key in it, and bk ignores BuildKit's records for the
//! same reason (they are parsed, never hit). bk always writes the
//! image-manifest shape (`image-manifest=` and `oci-mediatypes=` are
//! accepted and change nothing); it reads that and BuildKit's default
//! shape, an index listing the blobs and the config.
//!
//! Imports `content`, `registry`, `image` and `util`; never the solver,
//! the exporter or the CLI (those call in).

pub mod config;
mod export;
mod import;

pub use export::{write_local, CacheManifest, ExportLayer, ExportRecord};
pub use import::{ImportSource, Imported, ImportedLayer};

use std::path::PathBuf;

use crate::content::ContentError;
use crate::registry::RegistryError;
use crate::util::fs::FsError;

/// The cache config's media type (BuildKit's).
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.buildkit.cacheconfig.v0";
/// The image config key that carries an inline cache config.
pub const INLINE_CACHE_KEY: &str = "moby.buildkit.cache.v0";
/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The annotation naming a manifest's tag in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why exporting or importing build cache failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCacheError {
    #[error("failed to encode the cache {what}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to store the cache {what}")]
    StoreBlob {
        what: &'static str,
        #[source]
        source: ContentError,
    },
    #[error("failed to copy blob {digest} into the cache directory")]
    CopyBlob {
        digest: String,
        #[source]
        source: FsError,
    },
    #[error("failed to write the cache directory {}", dir.display())]
    WriteDir {
        dir: PathBuf,
        #[source]
        source: FsError,
    },
    #[error("failed to read the cache directory {}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: FsError,
    },
    #[error("{what} in {where_} is not valid JSON")]
    Parse {
        what: &'static str,
        where_: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no cache manifest {wanted} in {where_}")]
    NoManifest { wanted: String, where_: String },
    #[error("{where_} holds neither a build cache nor an image with inline cache (config type `{media_type}`)")]
    NotCache { where_: String, media_type: String },
    #[error("invalid digest `{0}` in the cache")]
    Digest(String),
    #[error("failed to fetch the cache from {reference}")]
    Registry {
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
}

pub type Result<T> = std::result::Result<T, RemoteCacheError>;
