//! Pushing an image that is in the content store (manifest, config and
//! layers) to a registry reference.
//!
//! Per blob, the cheapest way that works: a `HEAD` finds blobs the
//! target repository already has (nothing is sent); a blob this build
//! pulled from (or pushed to) another repository on the same registry is
//! mounted from there (`POST …?mount=&from=`; a registry that answers
//! 202 — "not mounted, upload instead" — or refuses gets an upload);
//! every other blob is uploaded in one `PUT`, streamed from its file in
//! the store, so no layer is ever held in memory. Blobs go up in
//! parallel ([`PARALLEL_UPLOADS`] at a time), each request retried on
//! transient failures ([`super::retry`]). The manifest goes last, once
//! every blob it names is there, under the tag — or, for a reference
//! with a digest, by digest only (`push-by-digest`).
//!
//! An index (a multi-platform image: OCI image index or Docker manifest
//! list) is pushed as a registry expects it: every platform's blobs and
//! manifest first (each manifest by digest), then the index under the
//! tag, so the tag never names a manifest whose parts are missing.
//!
//! Imports `content`, `image` and `util` only.

use std::sync::Arc;

use bytes::Bytes;
use oci_client::errors::OciDistributionError;
use oci_client::{Client, RegistryOperation};
use tokio::io::AsyncReadExt as _;

use super::{is_unauthorized, Manifest, Registry, RegistryError};
use crate::content::{ContentError, Descriptor};
use crate::image::Reference;

/// Blobs uploaded at the same time.
pub const PARALLEL_UPLOADS: usize = 4;
/// Bytes read from a blob file per body chunk.
const CHUNK: usize = 256 * 1024;

/// Why a push failed. Each variant names the image it was pushing.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The manifest (or a blob it names) is not in the content store,
    /// or is not what its digest says.
    #[error("cannot read {digest} from the content store")]
    ReadContent {
        digest: String,
        #[source]
        source: ContentError,
    },
    /// The stored manifest is not an image manifest.
    #[error("stored manifest {digest} is not an image manifest")]
    ParseManifest {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    /// A digest reference that does not match the manifest.
    #[error("cannot push manifest {manifest} as {reference}: the digest differs")]
    DigestMismatch { reference: String, manifest: String },
    /// Setting up the client or credentials failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry refused the credentials (or there were none).
    #[error("{registry}: unauthorized: authentication required or the credentials are wrong (Docker's config.json or its credential helper)")]
    Unauthorized {
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    /// The registry could not be reached or refused the request.
    #[error("failed to push {what} to {reference}")]
    Request {
        reference: String,
        what: String,
        #[source]
        source: OciDistributionError,
    },
    /// An upload task died (panicked or was cancelled).
    #[error("an upload task for {reference} died")]
    Task {
        reference: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// How one blob got into the target repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The repository already had it.
    Existed,
    /// Mounted from another repository (its path) on the same registry.
    Mounted(String),
    /// Sent in full.
    Uploaded,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The reference pushed to, as given.
    pub reference: Reference,
    /// The manifest's descriptor (its digest names the image).
    pub manifest: Descriptor,
    /// Config and layers, in manifest order (config first), each with
    /// what happened to it.
    pub blobs: Vec<(Descriptor, BlobOutcome)>,
}

impl Pushed {
    /// Blobs with each outcome: (existed, mounted, uploaded).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for (_, outcome) in &self.blobs {
            match outcome {
                BlobOutcome::Existed => counts.0 += 1,
                BlobOutcome::Mounted(_) => counts.1 += 1,
                BlobOutcome::Uploaded => counts.2 += 1,
            }
        }
        counts
    }

    /// Bytes sent in full.
    pub fn uploaded_bytes(&self) -> u64 {
        self.blobs
            .iter()
            .filter(|(_, o)| *o == BlobOutcome::Uploaded)
            .map(|(d, _)| d.size)
            .sum()
    }
}

impl Registry {
    /// Pushes the image whose manifest `manifest` is in the content
    /// store (with its config and layers) to `target`: under its tag
    /// (`latest` when it has neither tag nor digest), or by digest when
    /// `target` has one (which must be the manifest's).
    pub async fn push(
        &self,
        manifest: &Descriptor,
        target: &Reference,
    ) -> Result<Pushed, PushError> {
        if !is_index(&manifest.media_type) {
            return self.push_manifest(manifest, target, None).await;
        }
        let bytes =
            self.content
                .read(&manifest.digest)
                .map_err(|source| PushError::ReadContent {
                    digest: manifest.digest.clone(),
                    source,
                })?;
        let index: super::Index =
            serde_json::from_slice(&bytes).map_err(|source| PushError::ParseManifest {
                digest: manifest.digest.clone(),
                source,
            })?;
        let mut blobs = Vec::new();
        for child in &index.manifests {
            let by_digest = Reference {
                tag: None,
                digest: Some(child.digest.clone()),
                ..target.clone()
            };
            let child = Descriptor {
                media_type: child.media_type.clone(),
                digest: child.digest.clone(),
                size: child.size,
                annotations: Default::default(),
            };
            let pushed = self.push_manifest(&child, &by_digest, None).await?;
            for blob in pushed.blobs {
                if !blobs
                    .iter()
                    .any(|(b, _): &(Descriptor, BlobOutcome)| b.digest == blob.0.digest)
                {
                    blobs.push(blob);
                }
            }
        }
        let mut pushed = self.push_manifest(manifest, target, Some(bytes)).await?;
        pushed.blobs = blobs;
        Ok(pushed)
    }

    /// Pushes one manifest and the blobs it names; `index` holds the
    /// bytes of an index, whose manifests are already there and which
    /// names no blobs.
    async fn push_manifest(
        &self,
        manifest: &Descriptor,
        target: &Reference,
        index: Option<Vec<u8>>,
    ) -> Result<Pushed, PushError> {
        let name = target.to_string();
        let is_index = index.is_some();
        let bytes =
            match index {
                Some(bytes) => bytes,
                None => self.content.read(&manifest.digest).map_err(|source| {
                    PushError::ReadContent {
                        digest: manifest.digest.clone(),
                        source,
                    }
                })?,
            };
        let parsed: Option<Manifest> = if is_index {
            None
        } else {
            Some(
                serde_json::from_slice(&bytes).map_err(|source| PushError::ParseManifest {
                    digest: manifest.digest.clone(),
                    source,
                })?,
            )
        };
        let oci_ref = match &target.digest {
            Some(digest) if *digest != manifest.digest => {
                return Err(PushError::DigestMismatch {
                    reference: name,
                    manifest: manifest.digest.clone(),
                })
            }
            Some(digest) => oci_client::Reference::with_digest(
                target.domain.clone(),
                target.path.clone(),
                digest.clone(),
            ),
            None => oci_client::Reference::with_tag(
                target.domain.clone(),
                target.path.clone(),
                target.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let host = target.domain.as_str();
        let client = self.client(host).await?;
        let fail = |what: String| {
            let name = name.clone();
            move |source: OciDistributionError| request_error(host, &name, what, source)
        };
        self.authorize(&client, &oci_ref, RegistryOperation::Push)
            .await?;
        // The blob checks (HEAD) go with a pull token. oci-client caches
        // tokens per (repository, operation) but fetches one on every
        // miss, so the parallel checks below would each fetch their own:
        // one fetched first is shared by all.
        self.authorize(&client, &oci_ref, RegistryOperation::Pull)
            .await?;

        let mut blobs: Vec<Descriptor> = Vec::new();
        let named = parsed
            .iter()
            .flat_map(|m| std::iter::once(&m.config).chain(&m.layers));
        for d in named {
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(Descriptor {
                    media_type: d.media_type.clone(),
                    digest: d.digest.clone(),
                    size: d.size,
                    annotations: Default::default(),
                });
            }
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL_UPLOADS));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, blob) in blobs.iter().enumerate() {
            let job = BlobJob {
                client: client.clone(),
                oci_ref: oci_ref.clone(),
                blob: blob.clone(),
                path: self
                    .content
                    .path(&blob.digest)
                    .map_err(|source| PushError::ReadContent {
                        digest: blob.digest.clone(),
                        source,
                    })?,
                mount_from: self.sources_on(host, &target.path, &blob.digest),
            };
            if !self.content.exists(&blob.digest) {
                return Err(PushError::ReadContent {
                    digest: blob.digest.clone(),
                    source: ContentError::Read {
                        digest: blob.digest.clone(),
                        source: crate::util::fs::FsError::new(
                            "open",
                            &job.path,
                            std::io::ErrorKind::NotFound.into(),
                        ),
                    },
                });
            }
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, job.run().await)
            });
        }
        let mut outcomes = vec![BlobOutcome::Existed; blobs.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, outcome) = joined.map_err(|source| PushError::Task {
                reference: name.clone(),
                source,
            })?;
            outcomes[i] = outcome.map_err(fail(format!("blob {}", blobs[i].digest)))?;
        }
        self.note_sources(host, &target.path, blobs.iter().map(|b| b.digest.as_str()));

        // A media type from the store that is no header value is sent
        // as the OCI type; the registry then checks it against the body.
        let content_type = http::HeaderValue::from_str(&manifest.media_type).unwrap_or(
            http::HeaderValue::from_static(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE),
        );
        let body = Bytes::from(bytes);
        super::retry::with_retry(|| {
            client.push_manifest_raw(&oci_ref, body.clone(), content_type.clone())
        })
        .await
        .map_err(fail(format!("manifest {}", manifest.digest)))?;
        Ok(Pushed {
            reference: target.clone(),
            manifest: manifest.clone(),
            blobs: blobs.into_iter().zip(outcomes).collect(),
        })
    }
}

/// Whether a media type is an index: an OCI image index or a Docker
/// manifest list.
fn is_index(media_type: &str) -> bool {
    matches!(
        media_type,
        oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE
            | oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE
    )
}

/// One blob to get into the target repository.
struct BlobJob {
    client: Client,
    oci_ref: oci_client::Reference,
    blob: Descriptor,
    path: std::path::PathBuf,
    mount_from: Vec<String>,
}

impl BlobJob {
    async fn run(self) -> Result<BlobOutcome, OciDistributionError> {
        let digest = self.blob.digest.as_str();
        let exists =
            super::retry::with_retry(|| self.client.blob_exists(&self.oci_ref, digest)).await?;
        if exists {
            return Ok(BlobOutcome::Existed);
        }
        for from in &self.mount_from {
            let source = oci_client::Reference::with_tag(
                self.oci_ref.registry().to_string(),
                from.clone(),
                "latest".into(),
            );
            // oci-client takes the 202 "upload instead" answer for an
            // error; any failure here just means "upload it".
            if self
                .client
                .mount_blob(&self.oci_ref, &source, digest)
                .await
                .is_ok()
            {
                return Ok(BlobOutcome::Mounted(from.clone()));
            }
        }
        super::retry::with_retry(|| self.upload()).await?;
        Ok(BlobOutcome::Uploaded)
    }

    /// One streamed upload of the blob's file.
    async fn upload(&self) -> Result<(), OciDistributionError> {
        let file = tokio::fs::File::open(&self.path).await?;
        let stream = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            Ok::<_, OciDistributionError>(Some((Bytes::from(buf), file)))
        });
        self.client
            .push_blob_stream(
                &self.oci_ref,
                stream,
                &self.blob.digest,
                Some(self.blob.size),
            )
            .await
            .map(drop)
    }
}

/// A request failure as the user should see it: refused credentials
/// get their own message.
fn request_error(
    host: &str,
    reference: &str,
    what: String,
    source: OciDistributionError,
) -> PushError {
    if is_unauthorized(&source) {
        return PushError::Unauthorized {
            registry: host.into(),
            source,
        };
    }
    PushError::Request {
        reference: reference.into(),
        what,
        source,
    }
}
