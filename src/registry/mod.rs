//! Pulling images from a registry: resolve a reference (tag or digest)
//! to the manifest for one platform, read its config, and download its
//! layers into the [content store](crate::content), streaming and in
//! parallel, skipping blobs already there. [`unpack`] applies layers.
//!
//! The wire protocol is `oci-client`'s; this module adds what it leaves
//! out: platform selection in an index, the Docker rule that `localhost`
//! and loopback registries speak plain HTTP (others only when listed in
//! `BK_INSECURE_REGISTRIES=host:port,…`), and basic credentials from
//! Docker's `config.json`.
//!
//! Every tag is resolved once per build, and always against the
//! registry (there is no local tag→digest cache yet), so `--pull` changes
//! nothing here: a build always sees the tag's current digest.
//!
//! Imports `content` and `image` only.

pub mod unpack;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use serde::Deserialize;

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
    /// Credentials come from a helper program, which bk cannot run yet.
    #[error("not supported yet: docker credential helpers ({helper} for {registry})")]
    CredentialHelper { registry: String, helper: String },
    /// Docker's config.json exists but cannot be read.
    #[error("cannot read docker credentials from {path}")]
    ReadDockerConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Docker's config.json is not what Docker writes.
    #[error("invalid docker config {path}")]
    ParseDockerConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
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
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
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

/// Whether `host` (with port) gets plain HTTP: loopback names as Docker
/// does, and those listed in `insecure`.
pub fn plain_http(host: &str, insecure: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1") || insecure.iter().any(|h| h == host)
}

/// Registries named by `BK_INSECURE_REGISTRIES` (comma separated).
fn insecure_from_env() -> Vec<String> {
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
    clients: Mutex<HashMap<String, Client>>,
    /// Per build: each (reference, platform) is resolved once; failures
    /// are remembered too, so the planner and the solver agree. One cell
    /// per key, so different images resolve concurrently.
    resolved: Mutex<HashMap<(String, Platform), Arc<ResolveCell>>>,
}

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
            clients: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
        }
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    fn client(&self, host: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(host.to_string())
            .or_insert_with(|| {
                Client::new(ClientConfig {
                    protocol: if plain_http(host, &self.insecure) {
                        ClientProtocol::Http
                    } else {
                        ClientProtocol::Https
                    },
                    ..ClientConfig::default()
                })
            })
            .clone()
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
        let client = self.client(&reference.domain);
        let auth = docker_auth(&reference.domain)?;
        client
            .auth(&oci_ref, &auth, RegistryOperation::Pull)
            .await
            .map_err(|source| RegistryError::Authorize {
                registry: reference.domain.clone(),
                source,
            })?;
        Ok((client, oci_ref))
    }

    async fn manifest(
        &self,
        client: &Client,
        oci_ref: &oci_client::Reference,
        name: &str,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let auth = docker_auth(oci_ref.registry())?;
        match client.pull_manifest_raw(oci_ref, &auth, ACCEPT).await {
            Ok((bytes, digest)) => Ok((bytes.to_vec(), digest)),
            Err(source) if is_not_found(&source) => Err(RegistryError::NotFound {
                reference: name.into(),
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

/// Docker's config.json, the fields bk reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Credentials for `host` from `$DOCKER_CONFIG/config.json` (default
/// `~/.docker/config.json`); anonymous when it has none.
fn docker_auth(host: &str) -> Result<RegistryAuth, RegistryError> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".docker"),
            None => return Ok(RegistryAuth::Anonymous),
        },
    };
    let path = dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(source) => return Err(RegistryError::ReadDockerConfig { path, source }),
    };
    let config: DockerConfig = serde_json::from_slice(&text)
        .map_err(|source| RegistryError::ParseDockerConfig { path, source })?;
    auth_for(&config, host)
}

fn auth_for(config: &DockerConfig, host: &str) -> Result<RegistryAuth, RegistryError> {
    // Docker Hub's credentials are stored under its v1 index URL.
    let keys: Vec<String> = if host == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ]
    } else {
        vec![
            host.into(),
            format!("https://{host}"),
            format!("http://{host}"),
        ]
    };
    if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
        return Err(RegistryError::CredentialHelper {
            registry: host.into(),
            helper: helper.clone(),
        });
    }
    let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) else {
        // A global `credsStore` may hold credentials too; without running
        // it, pulls are anonymous, which public images allow.
        return Ok(RegistryAuth::Anonymous);
    };
    if let (Some(user), Some(pass)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic(user.clone(), pass.clone()));
    }
    use base64::Engine as _;
    let decoded = entry
        .auth
        .as_deref()
        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    Ok(match decoded.as_deref().and_then(|s| s.split_once(':')) {
        Some((user, pass)) => RegistryAuth::Basic(user.into(), pass.into()),
        None => RegistryAuth::Anonymous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_speak_http() {
        assert!(plain_http("localhost:5000", &[]));
        assert!(plain_http("127.0.0.1:5000", &[]));
        assert!(plain_http("[::1]:5000", &[]));
        assert!(!plain_http("docker.io", &[]));
        assert!(plain_http("reg:5000", &["reg:5000".into()]));
    }

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

    #[test]
    fn docker_config_basic_credentials() {
        let config: DockerConfig = serde_json::from_str(
            r#"{"auths":{"reg:5000":{"auth":"dXNlcjpwYXNz"},
                "https://index.docker.io/v1/":{"username":"me","password":"pw"}},
                "credHelpers":{"gcr.io":"gcloud"}}"#,
        )
        .unwrap();
        assert!(matches!(auth_for(&config, "reg:5000").unwrap(),
            RegistryAuth::Basic(u, p) if u == "user" && p == "pass"));
        assert!(matches!(auth_for(&config, "docker.io").unwrap(),
            RegistryAuth::Basic(u, _) if u == "me"));
        assert!(matches!(
            auth_for(&config, "other").unwrap(),
            RegistryAuth::Anonymous
        ));
        assert!(matches!(
            auth_for(&config, "gcr.io"),
            Err(RegistryError::CredentialHelper { .. })
        ));
    }
}
