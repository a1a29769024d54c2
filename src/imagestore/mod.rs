//! The local image store: names (`docker.io/library/app:latest`) mapped
//! to image manifests whose blobs (manifest, config, layers) live in the
//! [content store](crate::content). `bk build -t app` stores its result
//! here, `FROM app` finds it here before asking a registry, and
//! `bk images`, `bk tag` and `bk rmi` read and edit the names.
//!
//! The names live in one file, `<root>/images/index.json`, which every
//! change rewrites whole under a temporary name and renames into place:
//! a reader never sees half an index and needs no lock. Writers take an
//! exclusive `flock` on `<root>/images/lock` around read-modify-write, so
//! two `bk` processes tagging at once both land. Removing a name never
//! removes blobs: several names (and the build cache) may share them, and
//! reclaiming unreferenced blobs is the job of a later prune, for which
//! every blob reachable from a name here (manifest, config, layers) is a
//! root to keep.
//!
//! [`ImageStore::get`] gives a name's manifest [`Descriptor`];
//! [`read_image`] reads that manifest and its config back from the
//! content store. A name may point at an image index (a multi-platform
//! build's result): [`read_image_for`] then reads the image of the
//! platform asked for.
//!
//! Imports `crate::content`, `crate::image` and `crate::util` only.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::content::{ContentError, ContentStore, Descriptor};
use crate::image::{Image, Platform, Reference};
use crate::util::fs::{self as ufs, FsError};

/// Why an image store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    /// Creating `<root>/images` failed.
    #[error("cannot open the image store")]
    Open(#[source] FsError),
    /// Opening or locking `<root>/images/lock` failed.
    #[error("cannot lock the image store")]
    Lock(#[source] FsError),
    /// Reading the index failed.
    #[error("cannot read the image index")]
    ReadIndex(#[source] FsError),
    /// The index is not the JSON bk writes.
    #[error("the image index `{}` is corrupt", path.display())]
    ParseIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Writing the new index failed; the old one is still in place.
    #[error("cannot write the image index")]
    WriteIndex(#[source] FsError),
    /// Encoding the index failed.
    #[error("cannot encode the image index")]
    EncodeIndex(#[source] serde_json::Error),
    /// A name with a digest (`app@sha256:…`) cannot be a tag.
    #[error("cannot tag {0}: a name with a digest is not a tag")]
    DigestName(String),
    /// No image has this name.
    #[error("no such image: {0}")]
    NotFound(String),
    /// Reading the manifest or config blob failed.
    #[error("cannot read the {what} of image {digest}")]
    ReadBlob {
        what: &'static str,
        digest: String,
        #[source]
        source: ContentError,
    },
    /// A multi-platform image has no image for the platform asked for.
    #[error("image index {digest} has no image for {platform}")]
    NoPlatform { digest: String, platform: String },
    /// The manifest or config blob is not what it claims to be.
    #[error("the {what} of image {digest} is invalid")]
    ParseBlob {
        what: &'static str,
        digest: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, ImageStoreError>;

/// The on-disk index. Versioned so that a later layout can tell.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    /// Full name (with tag) → manifest descriptor.
    #[serde(default)]
    images: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    manifest: Descriptor,
}

const INDEX_VERSION: u32 = 1;

/// The local image store under `<root>/images`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

/// A name and the manifest it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub name: Reference,
    pub manifest: Descriptor,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<ImageStore> {
        let dir = root.join("images");
        ufs::create_dir_all(&dir).map_err(ImageStoreError::Open)?;
        Ok(ImageStore { dir })
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(ImageStoreError::ReadIndex(FsError::new("read", &path, e))),
        };
        serde_json::from_slice(&bytes)
            .map_err(|source| ImageStoreError::ParseIndex { path, source })
    }

    /// Runs `change` on the index under the store's lock and writes the
    /// result atomically (only when `change` succeeds).
    fn update<T>(&self, change: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let lock_path = self.dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ImageStoreError::Lock(FsError::new("open", &lock_path, e)))?;
        // Held until this function returns (dropping it unlocks).
        let _lock: Flock<File> = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| {
            ImageStoreError::Lock(FsError::new("lock", &lock_path, io::Error::from(e)))
        })?;
        // Under the lock no one else is writing: a temporary index left
        // here is a crashed writer's, and goes.
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".index.json.tmp")
                {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        let mut index = self.read_index()?;
        let out = change(&mut index)?;
        index.version = INDEX_VERSION;
        let bytes = serde_json::to_vec_pretty(&index).map_err(ImageStoreError::EncodeIndex)?;
        ufs::write_atomic(&self.index_path(), &bytes).map_err(ImageStoreError::WriteIndex)?;
        Ok(out)
    }

    /// The manifest `name` points at, if any. `name` should carry a tag
    /// (see [`Reference::with_default_tag`]); a name with a digest is
    /// never in the store.
    pub fn get(&self, name: &Reference) -> Result<Option<Descriptor>> {
        Ok(self
            .read_index()?
            .images
            .get(&name.clone().with_default_tag().to_string())
            .map(|e| e.manifest.clone()))
    }

    /// Every name, sorted by name.
    pub fn list(&self) -> Result<Vec<Tagged>> {
        Ok(self
            .read_index()?
            .images
            .into_iter()
            .filter_map(|(name, entry)| {
                // A name this version cannot parse is skipped rather than
                // failing every listing.
                Reference::parse_normalized(&name).ok().map(|name| Tagged {
                    name,
                    manifest: entry.manifest,
                })
            })
            .collect())
    }

    /// Points `name` at `manifest`, returning what it pointed at before.
    pub fn tag(&self, name: &Reference, manifest: &Descriptor) -> Result<Option<Descriptor>> {
        if name.digest.is_some() {
            return Err(ImageStoreError::DigestName(name.to_string()));
        }
        let key = name.clone().with_default_tag().to_string();
        let mut manifest = manifest.clone();
        manifest.annotations.clear();
        self.update(|index| {
            Ok(index
                .images
                .insert(key, Entry { manifest })
                .map(|e| e.manifest))
        })
    }

    /// Removes `name`, returning the manifest it pointed at. Blobs stay.
    pub fn untag(&self, name: &Reference) -> Result<Descriptor> {
        let key = name.clone().with_default_tag().to_string();
        self.update(|index| {
            index
                .images
                .remove(&key)
                .map(|e| e.manifest)
                .ok_or(ImageStoreError::NotFound(key.clone()))
        })
    }
}

/// An image manifest as stored (OCI or Docker schema 2: same fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// A stored image read back: its manifest and config (for an index,
/// those of one platform's image).
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// What the name points at: the manifest's descriptor, or an index's.
    pub descriptor: Descriptor,
    /// The descriptor of the manifest read: `descriptor` itself, or the
    /// chosen platform's entry of an index.
    pub platform_manifest: Descriptor,
    /// The manifest's bytes, exactly as stored (and hashed).
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub config: Image,
}

impl StoredImage {
    /// The image ID as Docker shows it: the config's digest, or the
    /// index's digest for a multi-platform image.
    pub fn id(&self) -> &str {
        if self.is_index() {
            &self.descriptor.digest
        } else {
            &self.manifest.config.digest
        }
    }

    /// Whether the name points at an index (a multi-platform image).
    pub fn is_index(&self) -> bool {
        self.platform_manifest.digest != self.descriptor.digest
    }

    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.config.os.clone(),
            architecture: self.config.architecture.clone(),
            variant: self.config.variant.clone(),
        }
    }

    /// Bytes in the content store: manifest, config and layers.
    pub fn size(&self) -> u64 {
        self.descriptor.size
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// An index's entries, as far as choosing one needs.
#[derive(Deserialize)]
struct StoredIndex {
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

/// Whether an index entry for `have` serves `want`: same OS and
/// architecture, and the same variant when both name one.
fn serves(have: &Platform, want: &Platform) -> bool {
    have.os == want.os
        && have.architecture == want.architecture
        && (have.variant.is_none() || want.variant.is_none() || have.variant == want.variant)
}

/// Reads the image `descriptor` names and its config from `content`,
/// all checked against their digests. For an index, the image of this
/// machine's platform, else the first.
pub fn read_image(content: &ContentStore, descriptor: &Descriptor) -> Result<StoredImage> {
    read_image_for(content, descriptor, None)
}

/// [`read_image`] choosing an index's image for `platform`; an index
/// without one is [`ImageStoreError::NoPlatform`]. A single image is read
/// whatever its platform (the caller compares).
pub fn read_image_for(
    content: &ContentStore,
    descriptor: &Descriptor,
    platform: Option<&Platform>,
) -> Result<StoredImage> {
    let digest = descriptor.digest.clone();
    let top_bytes = content
        .read(&digest)
        .map_err(|source| ImageStoreError::ReadBlob {
            what: "manifest",
            digest: digest.clone(),
            source,
        })?;
    let index = serde_json::from_slice::<serde_json::Value>(&top_bytes)
        .ok()
        .filter(|v| v.get("manifests").is_some() && v.get("config").is_none());
    let (platform_manifest, manifest_bytes) = match index {
        None => (descriptor.clone(), top_bytes),
        Some(value) => {
            let index: StoredIndex =
                serde_json::from_value(value).map_err(|source| ImageStoreError::ParseBlob {
                    what: "index",
                    digest: digest.clone(),
                    source,
                })?;
            let host = Platform::host();
            let want = platform.unwrap_or(&host);
            let chosen = index
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| serves(p, want)))
                .or_else(|| {
                    platform
                        .is_none()
                        .then(|| index.manifests.first())
                        .flatten()
                })
                .ok_or_else(|| ImageStoreError::NoPlatform {
                    digest: digest.clone(),
                    platform: want.to_string(),
                })?;
            let child = Descriptor {
                media_type: chosen.media_type.clone(),
                digest: chosen.digest.clone(),
                size: chosen.size,
                annotations: Default::default(),
            };
            let bytes =
                content
                    .read(&child.digest)
                    .map_err(|source| ImageStoreError::ReadBlob {
                        what: "manifest",
                        digest: child.digest.clone(),
                        source,
                    })?;
            (child, bytes)
        }
    };
    let digest = platform_manifest.digest.clone();
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|source| ImageStoreError::ParseBlob {
            what: "manifest",
            digest: digest.clone(),
            source,
        })?;
    let config_bytes =
        content
            .read(&manifest.config.digest)
            .map_err(|source| ImageStoreError::ReadBlob {
                what: "config",
                digest: digest.clone(),
                source,
            })?;
    let config: Image =
        serde_json::from_slice(&config_bytes).map_err(|source| ImageStoreError::ParseBlob {
            what: "config",
            digest,
            source,
        })?;
    Ok(StoredImage {
        descriptor: descriptor.clone(),
        platform_manifest,
        manifest_bytes,
        manifest,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Reference {
        Reference::parse_normalized(s).unwrap().with_default_tag()
    }

    fn image(content: &ContentStore, cmd: &str) -> Descriptor {
        let mut img = Image::empty(&"linux/amd64".parse().unwrap());
        img.config.cmd = Some(vec![cmd.into()]);
        let config = content
            .put(
                "application/vnd.oci.image.config.v1+json",
                &serde_json::to_vec(&img).unwrap(),
            )
            .unwrap();
        let manifest = Manifest {
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            config,
            layers: vec![],
        };
        content
            .put(
                "application/vnd.oci.image.manifest.v1+json",
                &serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap()
    }

    #[test]
    fn tag_get_list_untag() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        assert_eq!(store.get(&name("app")).unwrap(), None);
        let one = image(&content, "one");
        assert_eq!(store.tag(&name("app"), &one).unwrap(), None);
        assert_eq!(store.get(&name("app:latest")).unwrap(), Some(one.clone()));
        let two = image(&content, "two");
        assert_eq!(store.tag(&name("app"), &two).unwrap(), Some(one.clone()));
        store.tag(&name("ghcr.io/o/r:1"), &one).unwrap();
        let names: Vec<String> = store
            .list()
            .unwrap()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(names, ["docker.io/library/app:latest", "ghcr.io/o/r:1"]);
        let read = read_image(&content, &store.get(&name("app")).unwrap().unwrap()).unwrap();
        assert_eq!(read.config.config.cmd, Some(vec!["two".to_string()]));
        assert_eq!(read.platform().to_string(), "linux/amd64");
        assert_eq!(store.untag(&name("app")).unwrap(), two);
        assert!(matches!(
            store.untag(&name("app")),
            Err(ImageStoreError::NotFound(n)) if n == "docker.io/library/app:latest"
        ));
        // Blobs stay after untagging.
        assert!(content.exists(&two.digest));
        let by_digest = Reference::parse_normalized(&format!("app@{}", one.digest)).unwrap();
        assert!(matches!(
            store.tag(&by_digest, &one),
            Err(ImageStoreError::DigestName(_))
        ));
    }

    #[test]
    fn an_index_reads_as_the_image_of_the_platform_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        let amd = image(&content, "amd");
        let arm = image(&content, "arm");
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": amd.media_type, "digest": amd.digest, "size": amd.size,
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": arm.media_type, "digest": arm.digest, "size": arm.size,
                 "platform": {"architecture": "arm64", "os": "linux"}},
            ],
        });
        let top = content
            .put(
                "application/vnd.oci.image.index.v1+json",
                &serde_json::to_vec(&index).unwrap(),
            )
            .unwrap();
        let arm64: Platform = "linux/arm64".parse().unwrap();
        let read = read_image_for(&content, &top, Some(&arm64)).unwrap();
        assert_eq!(read.config.config.cmd, Some(vec!["arm".to_string()]));
        assert_eq!(read.platform_manifest.digest, arm.digest);
        assert_eq!(read.descriptor, top);
        assert!(read.is_index());
        assert_eq!(read.id(), top.digest, "an index is known by its digest");
        let s390x: Platform = "linux/s390x".parse().unwrap();
        assert!(matches!(
            read_image_for(&content, &top, Some(&s390x)),
            Err(ImageStoreError::NoPlatform { .. })
        ));
        // A plain image reads as itself, its ID the config's.
        let single = read_image_for(&content, &amd, Some(&arm64)).unwrap();
        assert!(!single.is_index());
        assert_eq!(single.id(), single.manifest.config.digest);
    }

    #[test]
    fn concurrent_writers_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        let desc = image(&content, "x");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (root, desc) = (dir.path().to_path_buf(), desc.clone());
                std::thread::spawn(move || {
                    let store = ImageStore::open(&root).unwrap();
                    for j in 0..10 {
                        store.tag(&name(&format!("t{i}:{j}")), &desc).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let store = ImageStore::open(dir.path()).unwrap();
        assert_eq!(store.list().unwrap().len(), 80);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("images"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "index.json" && n != "lock")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // A crashed writer's temporary index is cleaned by the next one.
        let stale = dir.path().join("images/.index.json.tmp-999999");
        fs::write(&stale, b"half").unwrap();
        store.tag(&name("after"), &desc).unwrap();
        assert!(!stale.exists());
        assert_eq!(store.list().unwrap().len(), 81);
    }

    #[test]
    fn a_corrupt_index_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("images/index.json"), b"{not json").unwrap();
        let err = store.list().unwrap_err();
        assert!(err.to_string().contains("index.json"), "{err}");
    }
}
