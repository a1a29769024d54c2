//! What `bk images`, `bk tag` and `bk rmi` share: opening the local image
//! store, reading names as Docker does (`app` is
//! `docker.io/library/app:latest`) and showing them back the familiar way.

use std::path::Path;

use anyhow::{bail, Context};

use crate::content::{ContentStore, Descriptor};
use crate::image::Reference;
use crate::imagestore::{self, ImageStore, StoredImage};

/// The content store and the image names of one store root.
pub struct LocalImages {
    pub content: ContentStore,
    pub names: ImageStore,
}

impl LocalImages {
    pub fn open(root: Option<&Path>) -> anyhow::Result<LocalImages> {
        let root = super::build::store_root(root)?;
        let content = ContentStore::open(&root)
            .with_context(|| format!("failed to open the content store at {}", root.display()))?;
        let names = ImageStore::open(&root)
            .with_context(|| format!("failed to open the image store at {}", root.display()))?;
        Ok(LocalImages { content, names })
    }

    /// The image `arg` names: a name (`app`, `me/app:1`), or an image ID
    /// (`sha256:…` or a unique prefix of its hex, as `bk images` shows).
    pub fn find(&self, arg: &str) -> anyhow::Result<(Option<Reference>, StoredImage)> {
        if let Ok(name) = parse_name(arg) {
            if let Some(desc) = self.names.get(&name)? {
                let image = imagestore::read_image(&self.content, &desc)
                    .with_context(|| format!("failed to read the image {}", familiar(&name)))?;
                return Ok((Some(name), image));
            }
        }
        let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches: Vec<StoredImage> = Vec::new();
            for tagged in self.names.list()? {
                let Ok(image) = imagestore::read_image(&self.content, &tagged.manifest) else {
                    continue;
                };
                let id = image.id().trim_start_matches("sha256:");
                if id.starts_with(hex) && !matches.iter().any(|m| m.id() == image.id()) {
                    matches.push(image);
                }
            }
            match matches.len() {
                0 => {}
                1 => return Ok((None, matches.remove(0))),
                _ => bail!("image ID {arg} is ambiguous: give more digits"),
            }
        }
        bail!("No such image: {arg}")
    }
}

/// `arg` as a full name with a tag (`app` → `docker.io/library/app:latest`).
pub fn parse_name(arg: &str) -> anyhow::Result<Reference> {
    Reference::parse_normalized(arg)
        .map(Reference::with_default_tag)
        .with_context(|| format!("invalid image name {arg:?}"))
}

/// The repository as Docker shows it: `app`, `me/app`, `ghcr.io/o/r`.
pub fn familiar_repository(name: &Reference) -> String {
    let full = name.name();
    full.strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .map_or(full.clone(), str::to_string)
}

/// `app:latest`, `ghcr.io/o/r:1`.
pub fn familiar(name: &Reference) -> String {
    let mut out = familiar_repository(name);
    if let Some(tag) = &name.tag {
        out.push(':');
        out.push_str(tag);
    }
    if let Some(digest) = &name.digest {
        out.push('@');
        out.push_str(digest);
    }
    out
}

/// The 12 hex digits Docker shows for an image ID.
pub fn short_id(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}

/// Whether some name still points at `manifest`.
pub fn still_named(names: &ImageStore, manifest: &Descriptor) -> anyhow::Result<bool> {
    Ok(names
        .list()?
        .iter()
        .any(|t| t.manifest.digest == manifest.digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_the_familiar_way() {
        let r = |s: &str| parse_name(s).unwrap();
        assert_eq!(familiar(&r("app")), "app:latest");
        assert_eq!(familiar_repository(&r("me/app:1")), "me/app");
        assert_eq!(familiar(&r("ghcr.io/o/r:2")), "ghcr.io/o/r:2");
        assert_eq!(familiar(&r("localhost:5000/x")), "localhost:5000/x:latest");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert!(parse_name("Bad").is_err());
    }
}
