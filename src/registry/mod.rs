//! Pulling images from a registry: resolve a reference (tag or digest)
//! to the manifest for one platform, read its config, and download its
//! layers into the [content store](crate::content), streaming and in
//! parallel, skipping blobs already there. [`unpack`] applies layers.
//!
//! The wire protocol is `oci-client`'s; this module adds what it leaves
//! out: platform selection in an index, Docker's rules for HTTP, HTTPS
//! and trusted certificates per host ([`transport`]), and credentials
//! from Docker's `config.json` and credential helpers ([`auth`]).
//! Registries that want bearer tokens (Docker Hub, GHCR, distribution
//! with `auth: token`) get oci-client's token flow: the credentials go
//! to the token service named in the registry's challenge, never to the
//! registry itself, and each (repository, pull or push) token is fetched
//! once per build ([`Registry::authorize`]) and reused by every request.
//! [`push`] sends images from the content store to a registry; `raw`
//! fetches a manifest or blob as it is (for build cache import);
//! [`login`] checks credentials for `bk login`.
//!
//! Every tag is resolved once per build, and always against the
//! registry (there is no local tag→digest cache yet), so `--pull` changes
//! nothing here: a build always sees the tag's current digest.
//!
//! Imports `content`, `image` and `util` only.

pub mod auth;
pub mod login;
pub mod push;
mod raw;
pub mod retry;
pub mod transport;
pub mod unpack;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use serde::Deserialize;
use tokio::sync::Mutex as AsyncMutex;

use self::auth::AuthError;
use self::transport::TransportError;

use crate::content::{ContentError, ContentStore};
use crate::image::{Image, Platform, Reference};

/// Why pulling an image failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Authenticating to the registry failed.
    #[error("failed to authorize to {registry}")]
    Authorize {
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    /// The registry (or its token service) refused the credentials, or
    /// wants some and there were none.
    #[error("{registry}: unauthorized: authentication required or the credentials are wrong (Docker's config.json or its credential helper)")]
    Unauthorized {
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    /// The registry's TLS certificate is not trusted.
    #[error("{registry}: its TLS certificate is not trusted: {hint}")]
    UntrustedCertificate {
        registry: String,
        hint: String,
        #[source]
        source: OciDistributionError,
    },
    /// The registry has no such tag or digest. (The reference is kept
    /// for callers; the message leaves it to the wrapping error.)
    #[error("not found")]
    NotFound {
        reference: String,
        #[source]
        source: OciDistributionError,
    },
    /// Fetching a manifest failed otherwise.
    #[error("failed to resolve {reference}")]
    FetchManifest {
        reference: String,
        #[source]
        source: OciDistributionError,
    },
    /// A manifest or index is not the JSON it claims to be.
    #[error("invalid manifest {digest} of {reference}")]
    ParseManifest {
        reference: String,
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest of a media type bk cannot read (schema 1, artifacts).
    #[error("{reference}: unsupported manifest type {media_type:?}")]
    ManifestType {
        reference: String,
        media_type: String,
    },
    /// An index lists no manifest for the requested platform.
    #[error("{reference}: no image for platform {platform} (the index has: {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    /// Downloading a blob (config or layer) failed.
    #[error("failed to download {digest} of {reference}")]
    FetchBlob {
        reference: String,
        digest: String,
        #[source]
        source: OciDistributionError,
    },
    /// Storing a downloaded blob failed (or it did not verify).
    #[error("failed to store {digest} of {reference}")]
    StoreBlob {
        reference: String,
        digest: String,
        /// Boxed: every pull result carries this type.
        #[source]
        source: Box<ContentError>,
    },
    /// The image config is not valid JSON of an image config.
    #[error("invalid image config {digest} of {reference}")]
    ParseConfig {
        reference: String,
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    /// The config lists a different number of diff_ids than layers.
    #[error("{reference}: the manifest has {layers} layers but the config {diff_ids} diff_ids")]
    LayerCount {
        reference: String,
        layers: usize,
        diff_ids: usize,
    },
    /// Credentials for the registry could not be found.
    #[error("cannot get credentials for {registry}")]
    Credentials {
        registry: String,
        #[source]
        source: AuthError,
    },
    /// No client could be set up for the registry (certificates).
    #[error("cannot connect to {registry}")]
    Transport {
        registry: String,
        /// Boxed: every pull result carries this type.
        #[source]
        source: Box<TransportError>,
    },
    /// A download task died (panicked or was cancelled).
    #[error("a download task of {reference} died")]
    Task {
        reference: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// A content descriptor as manifests write it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DescriptorPlatform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker v2 schema 2: same fields).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An index or manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Index {
    #[serde(default)]
    pub(super) manifests: Vec<Descriptor>,
}

/// Just the media type, to tell an index from a manifest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// An image resolved for one platform.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference as asked (normalised).
    pub reference: String,
    /// The digest of the platform's manifest: what identifies the image.
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub config: Image,
}

impl Resolved {
    /// The chain ID of each layer prefix (`chain[i]` covers layers
    /// `0..=i`), from the config's diff_ids, as the OCI spec defines it.
    pub fn chain_ids(&self) -> Vec<String> {
        self.config.rootfs.chain_ids()
    }
}

/// The media types bk asks for, most specific first.
const ACCEPT: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// Registries named by `BK_INSECURE_REGISTRIES` (comma separated).
pub fn insecure_from_env() -> Vec<String> {
    std::env::var("BK_INSECURE_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The client of one build: one HTTP client per registry host (the
/// protocol is chosen per host) and the content store.
pub struct Registry {
    content: ContentStore,
    insecure: Vec<String>,
    /// One client per host, set up on first use (which may probe it).
    clients: AsyncMutex<HashMap<String, Client>>,
    /// Credentials per host, looked up once (helpers are programs).
    auths: Mutex<HashMap<String, RegistryAuth>>,
    /// Which (host, repository, operation) the clients are authorized
    /// for: see [`Registry::authorize`].
    authorized: Mutex<HashMap<AuthKey, Arc<AsyncMutex<bool>>>>,
    /// Which repositories (host, path) each blob is known to be in:
    /// what this build pulled or pushed. Cross-repository mounts use it.
    sources: Mutex<HashMap<String, Vec<(String, String)>>>,
    /// Per build: each (reference, platform) is resolved once; failures
    /// are remembered too, so the planner and the solver agree. One cell
    /// per key, so different images resolve concurrently.
    resolved: Mutex<HashMap<(String, Platform), Arc<ResolveCell>>>,
}

/// (host, repository, push?) of one authorization.
type AuthKey = (String, String, bool);

/// A shared resolution outcome.
pub type ResolveResult = Result<Arc<Resolved>, Arc<RegistryError>>;

/// Where one key's outcome is computed once and then shared.
type ResolveCell = tokio::sync::OnceCell<ResolveResult>;

impl std::fmt::Debug for Registry {
    // oci-client's Client has no Debug; the store root says which one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("content", &self.content)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(content: ContentStore) -> Registry {
        Registry {
            content,
            insecure: insecure_from_env(),
            clients: AsyncMutex::new(HashMap::new()),
            auths: Mutex::new(HashMap::new()),
            authorized: Mutex::new(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
        }
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Also treats `hosts` as insecure (`--insecure-registry`,
    /// `registry.insecure=true`): see [`transport`].
    pub fn with_insecure(mut self, hosts: impl IntoIterator<Item = String>) -> Registry {
        for host in hosts {
            if !self.insecure.contains(&host) {
                self.insecure.push(host);
            }
        }
        self
    }

    /// This registry's state (insecure hosts, credentials, the known
    /// sources of blobs) with no connections yet, for use on another
    /// tokio runtime: an HTTP client's pooled connections belong to the
    /// runtime that opened them.
    pub fn renewed(&self) -> Registry {
        Registry {
            content: self.content.clone(),
            insecure: self.insecure.clone(),
            clients: AsyncMutex::new(HashMap::new()),
            auths: Mutex::new(copy_locked(&self.auths)),
            // Tokens live in the clients, which are not kept.
            authorized: Mutex::new(HashMap::new()),
            sources: Mutex::new(copy_locked(&self.sources)),
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `host`, set up on first use.
    pub(crate) async fn client(&self, host: &str) -> Result<Client, RegistryError> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(host) {
            return Ok(client.clone());
        }
        let client = transport::connect(host, &self.insecure)
            .await
            .map_err(|source| RegistryError::Transport {
                registry: host.into(),
                source: Box::new(source),
            })?;
        clients.insert(host.into(), client.clone());
        Ok(client)
    }

    /// The credentials for `host`, looked up once per build.
    pub(crate) fn credentials(&self, host: &str) -> Result<RegistryAuth, RegistryError> {
        let mut auths = self.auths.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(auth) = auths.get(host) {
            return Ok(auth.clone());
        }
        let auth = auth::docker_auth(host).map_err(|source| RegistryError::Credentials {
            registry: host.into(),
            source,
        })?;
        auths.insert(host.into(), auth.clone());
        Ok(auth)
    }

    /// Authorizes `client` for `operation` on `oci_ref`'s repository,
    /// once per build: with a token registry, this fetches the bearer
    /// token. oci-client's `Client::auth` asks the token service every
    /// time it is called, while the client's own requests reuse the
    /// cached token (and fetch a new one when it expires) — so a second
    /// call for the same repository would only cost a token request.
    /// Concurrent callers for the same key wait for the first.
    pub(crate) async fn authorize(
        &self,
        client: &Client,
        oci_ref: &oci_client::Reference,
        operation: RegistryOperation,
    ) -> Result<(), RegistryError> {
        let host = oci_ref.registry().to_string();
        let key = (
            host.clone(),
            oci_ref.repository().to_string(),
            operation == RegistryOperation::Push,
        );
        let cell = self
            .authorized
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        let mut done = cell.lock().await;
        if *done {
            return Ok(());
        }
        let auth = self.credentials(&host)?;
        retry::with_retry(|| client.auth(oci_ref, &auth, operation))
            .await
            .map_err(|source| {
                if is_unauthorized(&source) {
                    RegistryError::Unauthorized {
                        registry: host.clone(),
                        source,
                    }
                } else if transport::is_untrusted_certificate(&source) {
                    RegistryError::UntrustedCertificate {
                        registry: host.clone(),
                        hint: transport::trust_hint(&host),
                        source,
                    }
                } else {
                    RegistryError::Authorize {
                        registry: host.clone(),
                        source,
                    }
                }
            })?;
        *done = true;
        Ok(())
    }

    /// Records that the blobs `digests` are in `host`/`path`.
    pub(crate) fn note_sources<'a>(
        &self,
        host: &str,
        path: &str,
        digests: impl IntoIterator<Item = &'a str>,
    ) {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        for digest in digests {
            let list = sources.entry(digest.to_string()).or_default();
            if !list.iter().any(|(h, p)| h == host && p == path) {
                list.push((host.to_string(), path.to_string()));
            }
        }
    }

    /// The repositories on `host` other than `path` known to hold
    /// `digest`.
    pub(crate) fn sources_on(&self, host: &str, path: &str, digest: &str) -> Vec<String> {
        let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources
            .get(digest)
            .into_iter()
            .flatten()
            .filter(|(h, p)| h == host && p != path)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Resolves `reference` for `platform` once per build; later calls
    /// return the first outcome.
    pub async fn resolve(&self, reference: &Reference, platform: &Platform) -> ResolveResult {
        let key = (reference.to_string(), platform.clone());
        let cell = self
            .resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            self.resolve_uncached(reference, platform)
                .await
                .map(Arc::new)
                .map_err(Arc::new)
        })
        .await
        .clone()
    }

    async fn resolve_uncached(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        let name = reference.to_string();
        let (client, oci_ref) = self.connect(reference).await?;
        let (bytes, digest) = self.manifest(&client, &oci_ref, &name).await?;
        let probe: Probe =
            serde_json::from_slice(&bytes).map_err(|source| RegistryError::ParseManifest {
                reference: name.clone(),
                digest: digest.clone(),
                source,
            })?;
        let is_index = matches!(
            probe.media_type.as_deref(),
            Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE)
        ) || (probe.media_type.is_none() && probe.manifests.is_some());
        let (bytes, digest) = if is_index {
            let index: Index =
                serde_json::from_slice(&bytes).map_err(|source| RegistryError::ParseManifest {
                    reference: name.clone(),
                    digest: digest.clone(),
                    source,
                })?;
            let chosen = pick_platform(&index.manifests, platform).ok_or_else(|| {
                RegistryError::NoPlatform {
                    reference: name.clone(),
                    platform: platform.to_string(),
                    available: index
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref())
                        .map(|p| match &p.variant {
                            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                            None => format!("{}/{}", p.os, p.architecture),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            let by_digest = oci_client::Reference::with_digest(
                oci_ref.registry().to_string(),
                oci_ref.repository().to_string(),
                chosen.digest.clone(),
            );
            self.manifest(&client, &by_digest, &name).await?
        } else {
            (bytes, digest)
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| RegistryError::ParseManifest {
                reference: name.clone(),
                digest: digest.clone(),
                source,
            })?;
        if let Some(other) = manifest
            .media_type
            .as_deref()
            .filter(|t| ![OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE].contains(t))
        {
            return Err(RegistryError::ManifestType {
                reference: name,
                media_type: other.into(),
            });
        }
        // Kept so that an image exporter can write the manifest as is.
        self.store_bytes(&name, &digest, &bytes).await?;
        let config_bytes = self
            .blob_bytes(&client, &oci_ref, &name, &manifest.config)
            .await?;
        let config: Image =
            serde_json::from_slice(&config_bytes).map_err(|source| RegistryError::ParseConfig {
                reference: name.clone(),
                digest: manifest.config.digest.clone(),
                source,
            })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(RegistryError::LayerCount {
                reference: name,
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        self.note_sources(
            &reference.domain,
            &reference.path,
            manifest
                .layers
                .iter()
                .chain(std::iter::once(&manifest.config))
                .map(|d| d.digest.as_str()),
        );
        Ok(Resolved {
            reference: name,
            manifest_digest: digest,
            manifest,
            config,
        })
    }

    /// The client for `reference`'s host, authorised to pull from its
    /// repository (blob requests need the token for the scope first).
    async fn connect(
        &self,
        reference: &Reference,
    ) -> Result<(Client, oci_client::Reference), RegistryError> {
        let oci_ref = match &reference.digest {
            Some(digest) => oci_client::Reference::with_digest(
                reference.domain.clone(),
                reference.path.clone(),
                digest.clone(),
            ),
            None => oci_client::Reference::with_tag(
                reference.domain.clone(),
                reference.path.clone(),
                reference.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let client = self.client(&reference.domain).await?;
        self.authorize(&client, &oci_ref, RegistryOperation::Pull)
            .await?;
        Ok((client, oci_ref))
    }

    async fn manifest(
        &self,
        client: &Client,
        oci_ref: &oci_client::Reference,
        name: &str,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let auth = self.credentials(oci_ref.registry())?;
        match client.pull_manifest_raw(oci_ref, &auth, ACCEPT).await {
            Ok((bytes, digest)) => Ok((bytes.to_vec(), digest)),
            Err(source) if is_not_found(&source) => Err(RegistryError::NotFound {
                reference: name.into(),
                source,
            }),
            Err(source) if is_unauthorized(&source) => Err(RegistryError::Unauthorized {
                registry: oci_ref.registry().into(),
                source,
            }),
            Err(source) => Err(RegistryError::FetchManifest {
                reference: name.into(),
                source,
            }),
        }
    }

    async fn store_bytes(
        &self,
        name: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        if self.content.exists(digest) {
            return Ok(());
        }
        self.content
            .write_verified(digest, bytes)
            .await
            .map(drop)
            .map_err(|source| RegistryError::StoreBlob {
                reference: name.into(),
                digest: digest.into(),
                source: Box::new(source),
            })
    }

    /// A small blob's bytes, from the store or downloaded into it.
    async fn blob_bytes(
        &self,
        client: &Client,
        oci_ref: &oci_client::Reference,
        name: &str,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, RegistryError> {
        let path = download(&self.content, client, oci_ref, name, desc).await?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| RegistryError::StoreBlob {
                reference: name.into(),
                digest: desc.digest.clone(),
                source: Box::new(ContentError::Store {
                    digest: desc.digest.clone(),
                    source: crate::util::fs::FsError::new("read", &path, e),
                }),
            })
    }

    /// Downloads every layer of `resolved` not yet in the content store,
    /// all at once, and returns their paths in layer order.
    pub async fn fetch_layers(
        &self,
        reference: &Reference,
        resolved: &Resolved,
    ) -> Result<Vec<PathBuf>, RegistryError> {
        let (client, oci_ref) = self.connect(reference).await?;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, desc) in resolved.manifest.layers.iter().enumerate() {
            let (content, client, oci_ref) =
                (self.content.clone(), client.clone(), oci_ref.clone());
            let (name, desc) = (resolved.reference.clone(), desc.clone());
            tasks.spawn(async move {
                download(&content, &client, &oci_ref, &name, &desc)
                    .await
                    .map(|path| (i, path))
            });
        }
        let mut paths = vec![PathBuf::new(); resolved.manifest.layers.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, path) = joined.map_err(|source| RegistryError::Task {
                reference: resolved.reference.clone(),
                source,
            })??;
            paths[i] = path;
        }
        Ok(paths)
    }
}

/// A copy of what `m` holds.
fn copy_locked<T: Clone>(m: &Mutex<T>) -> T {
    m.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Streams blob `desc` into the content store unless it is there.
async fn download(
    content: &ContentStore,
    client: &Client,
    oci_ref: &oci_client::Reference,
    name: &str,
    desc: &Descriptor,
) -> Result<PathBuf, RegistryError> {
    let store_err = |source| RegistryError::StoreBlob {
        reference: name.into(),
        digest: desc.digest.clone(),
        source: Box::new(source),
    };
    let path = content.path(&desc.digest).map_err(store_err)?;
    if content.exists(&desc.digest) {
        return Ok(path);
    }
    let mut writer = content
        .ingest(&desc.digest, Some(desc.size))
        .await
        .map_err(store_err)?;
    let layer = oci_client::manifest::OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: i64::try_from(desc.size).unwrap_or(i64::MAX),
        ..Default::default()
    };
    client
        .pull_blob(oci_ref, &layer, &mut writer)
        .await
        .map_err(|source| RegistryError::FetchBlob {
            reference: name.into(),
            digest: desc.digest.clone(),
            source,
        })?;
    writer.commit().await.map_err(store_err)
}

fn is_not_found(err: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match err {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

/// Whether the registry said 401/403 or "unauthorized"/"denied".
pub fn is_unauthorized(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::Unauthorized
                    | oci_client::errors::OciErrorCode::Denied
            )
        }),
        OciDistributionError::RequestError(e) => e
            .status()
            .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
        _ => false,
    }
}

/// The index entry for `want`: same OS and architecture, and the same
/// variant when one is asked for (arm64's default variant is v8).
/// Attestation manifests (platform unknown/unknown) never match.
fn pick_platform<'a>(entries: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let norm = |arch: &str, v: Option<&str>| -> Option<String> {
        match (arch, v) {
            ("arm64", Some("v8")) => None,
            (_, v) => v.map(String::from),
        }
    };
    let want_variant = norm(&want.architecture, want.variant.as_deref());
    let candidates = entries.iter().filter(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
    });
    let mut fallback = None;
    for d in candidates {
        let Some(p) = &d.platform else { continue };
        let have = norm(&p.architecture, p.variant.as_deref());
        if have == want_variant {
            return Some(d);
        }
        if want_variant.is_none() && fallback.is_none() {
            fallback = Some(d);
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_IMAGE_MEDIA_TYPE.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(DescriptorPlatform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(String::from),
            }),
            annotations: HashMap::new(),
        }
    }

    #[test]
    fn blob_sources_are_per_registry_and_survive_renewal() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(ContentStore::open(dir.path()).unwrap());
        registry.note_sources("reg:5000", "base", ["sha256:a", "sha256:b"]);
        registry.note_sources("reg:5000", "base", ["sha256:a"]);
        registry.note_sources("other:1", "lib", ["sha256:a"]);
        assert_eq!(registry.sources_on("reg:5000", "app", "sha256:a"), ["base"]);
        // Not from the target repository itself, nor another registry.
        assert!(registry
            .sources_on("reg:5000", "base", "sha256:a")
            .is_empty());
        assert!(registry.sources_on("third:1", "app", "sha256:a").is_empty());
        let renewed = registry.renewed();
        assert_eq!(renewed.sources_on("other:1", "app", "sha256:a"), ["lib"]);
    }

    #[test]
    fn platforms_are_picked_from_an_index() {
        let index = [
            entry("unknown", "unknown", None, "att"),
            entry("linux", "arm", Some("v6"), "arm6"),
            entry("linux", "arm", Some("v7"), "arm7"),
            entry("linux", "amd64", None, "amd"),
            entry("linux", "arm64", Some("v8"), "arm64"),
        ];
        let pick = |p: &str| pick_platform(&index, &p.parse().unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64").as_deref(), Some("amd"));
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("arm7"));
        assert_eq!(pick("linux/arm64").as_deref(), Some("arm64"));
        assert_eq!(pick("linux/s390x"), None);
    }
}
