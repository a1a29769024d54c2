//! Manifests and blobs fetched as they are, for readers that are not
//! image pulls (build cache import): no platform selection, no config
//! parsing.

use std::path::PathBuf;

use super::{download, Descriptor, Registry, RegistryError};
use crate::image::Reference;

impl Registry {
    /// The bytes and digest of the manifest (or index) `reference` names.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let (client, oci_ref) = self.connect(reference).await?;
        self.manifest(&client, &oci_ref, &reference.to_string())
            .await
    }

    /// Blob `desc` of `reference`'s repository in the content store
    /// (downloaded unless it is there); returns its path.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> Result<PathBuf, RegistryError> {
        let (client, oci_ref) = self.connect(reference).await?;
        download(
            &self.content,
            &client,
            &oci_ref,
            &reference.to_string(),
            desc,
        )
        .await
    }
}
