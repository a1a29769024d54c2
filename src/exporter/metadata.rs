//! `--metadata-file`: what a build made, as JSON with BuildKit's keys
//! (the exporter response buildx writes): `containerimage.digest` (the
//! manifest's digest), `containerimage.config.digest`,
//! `containerimage.descriptor` (the manifest's descriptor, as an object)
//! and, when the image has names, `image.name` (comma separated); for a
//! multi-platform image the digest and descriptor are the index's and
//! there is no config digest, as BuildKit's image exporter answers; `{}`
//! for outputs that are not images. The file is replaced atomically. (`buildx.build.ref` names a build record
//! on a builder; bk keeps no build history, so it is left out.)
//!
//! Imports `crate::content` and `crate::util` only.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::content::Descriptor;
use crate::util::fs::{self as ufs, FsError};

/// Why the metadata file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot encode the build metadata")]
    Encode(#[source] serde_json::Error),
    #[error("cannot write the metadata file `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: FsError,
    },
}

/// An image output's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageMetadata {
    /// The config's digest; none for an index (a multi-platform
    /// image), as BuildKit writes it.
    #[serde(
        rename = "containerimage.config.digest",
        skip_serializing_if = "Option::is_none"
    )]
    pub config_digest: Option<String>,
    #[serde(rename = "containerimage.descriptor")]
    pub descriptor: Descriptor,
    #[serde(rename = "containerimage.digest")]
    pub digest: String,
    #[serde(rename = "image.name", skip_serializing_if = "Option::is_none")]
    pub names: Option<String>,
}

impl ImageMetadata {
    /// The metadata of the image `manifest` (with config `config`)
    /// named `names`.
    pub fn new(manifest: &Descriptor, config: &Descriptor, names: &[String]) -> ImageMetadata {
        ImageMetadata {
            config_digest: Some(config.digest.clone()),
            descriptor: manifest.clone(),
            digest: manifest.digest.clone(),
            names: (!names.is_empty()).then(|| names.join(",")),
        }
    }

    /// The metadata of a multi-platform image: the index's digest and
    /// descriptor, no config digest.
    pub fn index(index: &Descriptor, names: &[String]) -> ImageMetadata {
        ImageMetadata {
            config_digest: None,
            descriptor: index.clone(),
            digest: index.digest.clone(),
            names: (!names.is_empty()).then(|| names.join(",")),
        }
    }

    /// What buildx prints for `-q` and writes to `--iidfile`: the
    /// config's digest, or the index's for a multi-platform image.
    pub fn image_id(&self) -> &str {
        self.config_digest.as_deref().unwrap_or(&self.digest)
    }
}

/// Writes `metadata` (`{}` for none) as indented JSON to `path`,
/// atomically.
pub fn write(path: &Path, metadata: Option<&ImageMetadata>) -> Result<(), MetadataError> {
    let mut text = match metadata {
        Some(m) => serde_json::to_vec_pretty(m),
        None => serde_json::to_vec_pretty(&serde_json::json!({})),
    }
    .map_err(MetadataError::Encode)?;
    text.push(b'\n');
    ufs::write_atomic(path, &text).map_err(|source| MetadataError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(media_type: &str, digest: &str, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size,
            annotations: Default::default(),
        }
    }

    #[test]
    fn buildkit_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let manifest = desc("application/vnd.oci.image.manifest.v1+json", "sha256:m", 7);
        let config = desc("application/vnd.oci.image.config.v1+json", "sha256:c", 3);
        let names = ["r/a:1".to_string(), "r/b:2".to_string()];
        write(&path, Some(&ImageMetadata::new(&manifest, &config, &names))).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["containerimage.digest"], "sha256:m");
        assert_eq!(v["containerimage.config.digest"], "sha256:c");
        assert_eq!(v["containerimage.descriptor"]["size"], 7);
        assert_eq!(
            v["containerimage.descriptor"]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(v["image.name"], "r/a:1,r/b:2");
        write(&path, Some(&ImageMetadata::new(&manifest, &config, &[]))).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(v.get("image.name").is_none());
        let index = desc("application/vnd.oci.image.index.v1+json", "sha256:i", 9);
        let m = ImageMetadata::index(&index, &names);
        assert_eq!(m.image_id(), "sha256:i");
        write(&path, Some(&m)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["containerimage.digest"], "sha256:i");
        assert_eq!(
            v["containerimage.descriptor"]["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert!(v.get("containerimage.config.digest").is_none());
        write(&path, None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        // Nothing but the file itself is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
