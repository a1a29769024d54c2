//! Where a build's base images come from: the local image store first,
//! as Docker looks in its own images before pulling, then the registry.
//! `FROM app` after `bk build -t app` therefore needs no registry at all.
//!
//! - A tagged name (`app`, `me/app:1`) is looked up in the
//!   [`ImageStore`] (for a stored index, its image for the platform);
//!   an image stored there for another platform is skipped (the
//!   registry may have the right one). A stored image whose
//!   blobs are missing is an error, not a silent pull of whatever the
//!   registry has under that name.
//! - A digest reference (`app@sha256:…`) is taken from the content store
//!   when its manifest and every layer are there (content-addressed, so
//!   any copy is the same image); otherwise it is pulled.
//! - `--pull` builds without the local lookup ([`Images::new`] with no
//!   local store).
//!
//! Each (reference, platform) is resolved once per build, so the planner
//! (which reads the base's config) and the solver (which unpacks its
//! layers) always see the same image, even if another `bk` retags the
//! name in between.
//!
//! Imports `registry`, `imagestore`, `content` and `image`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::content::ContentStore;
use crate::image::{Platform, Reference};
use crate::imagestore::{self, ImageStore, ImageStoreError};
use crate::registry::{Manifest, Registry, RegistryError, Resolved};

/// Why a base image could not be resolved or its layers found.
#[derive(Debug, thiserror::Error)]
pub enum ImageSourceError {
    /// Resolving or pulling from the registry failed.
    #[error(transparent)]
    Registry(Arc<RegistryError>),
    /// Reading the local image store (or the image's blobs) failed.
    #[error("cannot read the local image {name}")]
    Local {
        name: String,
        /// Boxed: every resolution result carries this type.
        #[source]
        source: Box<ImageStoreError>,
    },
    /// The stored manifest is not one bk can use as a base.
    #[error("the local image {name} has an invalid manifest")]
    LocalManifest {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// The stored config lists a different number of layers.
    #[error("the local image {name}: the manifest has {layers} layers but the config {diff_ids} diff_ids")]
    LayerCount {
        name: String,
        layers: usize,
        diff_ids: usize,
    },
    /// An `oci-layout://` source could not be read.
    #[error("cannot read the OCI layout {layout}")]
    Layout {
        layout: String,
        /// Boxed: every resolution result carries this type.
        #[source]
        source: Box<super::oci_layout::LayoutError>,
    },
    /// A layer of a stored image is not in the content store.
    #[error("layer {digest} of the local image {name} is missing from the content store")]
    MissingLayer { name: String, digest: String },
}

/// A resolved base image and where it was found.
#[derive(Debug, Clone)]
pub struct Found {
    pub resolved: Arc<Resolved>,
    /// Found locally: every blob is in the content store already.
    pub local: bool,
}

/// A shared resolution outcome.
pub type FindResult = Result<Found, Arc<ImageSourceError>>;

type FindCell = tokio::sync::OnceCell<FindResult>;

/// A build's base-image resolver: local store, then registry.
pub struct Images {
    registry: Arc<Registry>,
    content: ContentStore,
    local: Option<ImageStore>,
    found: Mutex<HashMap<(String, Platform), Arc<FindCell>>>,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Images {
    /// `local: None` skips the local store (`--pull`).
    pub fn new(registry: Arc<Registry>, content: ContentStore, local: Option<ImageStore>) -> Self {
        Images {
            registry,
            content,
            local,
            found: Mutex::new(HashMap::new()),
        }
    }

    /// The once-per-build cell of what `name` resolves to for `platform`.
    fn cell(&self, name: String, platform: &Platform) -> Arc<FindCell> {
        self.found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((name, platform.clone()))
            .or_default()
            .clone()
    }

    /// Resolves `reference` (normalised, tagged) for `platform`, once per
    /// build.
    pub async fn resolve(&self, reference: &Reference, platform: &Platform) -> FindResult {
        let cell = self.cell(reference.to_string(), platform);
        cell.get_or_init(|| async {
            match self.find_local(reference, platform) {
                Ok(Some(resolved)) => {
                    return Ok(Found {
                        resolved: Arc::new(resolved),
                        local: true,
                    })
                }
                Ok(None) => {}
                Err(e) => return Err(Arc::new(e)),
            }
            self.registry
                .resolve(reference, platform)
                .await
                .map(|resolved| Found {
                    resolved,
                    local: false,
                })
                .map_err(|e| Arc::new(ImageSourceError::Registry(e)))
        })
        .await
        .clone()
    }

    /// Resolves an `oci-layout://` source for `platform`, once per
    /// build: the image is copied into the content store and then found
    /// there like a local image.
    pub async fn resolve_layout(&self, identifier: &str, platform: &Platform) -> FindResult {
        let cell = self.cell(identifier.to_string(), platform);
        cell.get_or_init(|| async {
            let content = self.content.clone();
            let (id, platform) = (identifier.to_string(), platform.clone());
            let layout_err = |source| ImageSourceError::Layout {
                layout: identifier.to_string(),
                source: Box::new(source),
            };
            let descriptor = tokio::task::spawn_blocking(move || {
                super::oci_layout::LayoutRef::parse(&id)?.import(&platform, &content)
            })
            .await
            .map_err(|e| {
                layout_err(super::oci_layout::LayoutError::Parse(format!(
                    "{identifier}: {e}"
                )))
            })
            .and_then(|r| r.map_err(layout_err))
            .map_err(Arc::new)?;
            let resolved = self.stored(identifier, descriptor).map_err(Arc::new)?;
            Ok(Found {
                resolved: Arc::new(resolved),
                local: true,
            })
        })
        .await
        .clone()
    }

    /// The content-store paths of `found`'s layers, in order: local
    /// images' directly, others downloaded as needed (from `reference`'s
    /// registry). `name` names the image in errors.
    pub async fn fetch_layers(
        &self,
        name: &str,
        reference: Option<&Reference>,
        found: &Found,
    ) -> Result<Vec<PathBuf>, ImageSourceError> {
        if let (false, Some(reference)) = (found.local, reference) {
            return self
                .registry
                .fetch_layers(reference, &found.resolved)
                .await
                .map_err(|e| ImageSourceError::Registry(Arc::new(e)));
        }
        found
            .resolved
            .manifest
            .layers
            .iter()
            .map(|layer| {
                self.content
                    .path(&layer.digest)
                    .ok()
                    .filter(|p| p.is_file())
                    .ok_or_else(|| ImageSourceError::MissingLayer {
                        name: name.to_string(),
                        digest: layer.digest.clone(),
                    })
            })
            .collect()
    }

    fn find_local(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Option<Resolved>, ImageSourceError> {
        let name = reference.to_string();
        let local_err = |source| ImageSourceError::Local {
            name: name.clone(),
            source: Box::new(source),
        };
        let (descriptor, by_digest) = match &reference.digest {
            Some(digest) => {
                if !self.content.exists(digest) {
                    return Ok(None);
                }
                let desc = crate::content::Descriptor {
                    media_type: String::new(),
                    digest: digest.clone(),
                    size: 0,
                    annotations: Default::default(),
                };
                (desc, true)
            }
            None => {
                let Some(store) = &self.local else {
                    return Ok(None);
                };
                match store.get(reference).map_err(local_err)? {
                    Some(desc) => (desc, false),
                    None => return Ok(None),
                }
            }
        };
        let image = match imagestore::read_image_for(&self.content, &descriptor, Some(platform)) {
            Ok(image) => image,
            // A digest may name anything else bk stored, and a stored
            // index may lack this platform: the registry resolves those.
            Err(_) if by_digest => return Ok(None),
            Err(ImageStoreError::NoPlatform { .. }) => return Ok(None),
            Err(e) => return Err(local_err(e)),
        };
        if !same_platform(&image.platform(), platform) {
            return Ok(None);
        }
        // An index's image is known by its own manifest's digest.
        let descriptor = image.platform_manifest.clone();
        match self.checked(&name, descriptor, image) {
            Ok(resolved) => Ok(Some(resolved)),
            Err(_) if by_digest => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The image `descriptor` names in the content store, with every
    /// layer present.
    fn stored(
        &self,
        name: &str,
        descriptor: crate::content::Descriptor,
    ) -> Result<Resolved, ImageSourceError> {
        let image = imagestore::read_image(&self.content, &descriptor).map_err(|source| {
            ImageSourceError::Local {
                name: name.to_string(),
                source: Box::new(source),
            }
        })?;
        self.checked(name, descriptor, image)
    }

    fn checked(
        &self,
        name: &str,
        descriptor: crate::content::Descriptor,
        image: imagestore::StoredImage,
    ) -> Result<Resolved, ImageSourceError> {
        let name = name.to_string();
        let manifest: Manifest =
            serde_json::from_slice(&image.manifest_bytes).map_err(|source| {
                ImageSourceError::LocalManifest {
                    name: name.clone(),
                    source,
                }
            })?;
        if manifest.layers.len() != image.config.rootfs.diff_ids.len() {
            return Err(ImageSourceError::LayerCount {
                name,
                layers: manifest.layers.len(),
                diff_ids: image.config.rootfs.diff_ids.len(),
            });
        }
        if let Some(missing) = manifest
            .layers
            .iter()
            .find(|l| !self.content.exists(&l.digest))
        {
            return Err(ImageSourceError::MissingLayer {
                name,
                digest: missing.digest.clone(),
            });
        }
        Ok(Resolved {
            reference: name,
            manifest_digest: descriptor.digest,
            manifest,
            config: image.config,
        })
    }
}

/// Whether an image made for `have` serves a build for `want`: same OS
/// and architecture, and the same variant when both name one (arm64's
/// default variant is v8).
pub(crate) fn same_platform(have: &Platform, want: &Platform) -> bool {
    let variant = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", Some("v8")) => None,
        (_, v) => v.map(str::to_string),
    };
    have.os == want.os
        && have.architecture == want.architecture
        && (variant(have).is_none() || variant(want).is_none() || variant(have) == variant(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_match_loosely_on_variants() {
        let p = |s: &str| s.parse::<Platform>().unwrap();
        assert!(same_platform(&p("linux/amd64"), &p("linux/amd64")));
        assert!(same_platform(&p("linux/arm64/v8"), &p("linux/arm64")));
        assert!(same_platform(&p("linux/arm"), &p("linux/arm/v7")));
        assert!(!same_platform(&p("linux/arm/v6"), &p("linux/arm/v7")));
        assert!(!same_platform(&p("linux/amd64"), &p("linux/arm64")));
    }
}
