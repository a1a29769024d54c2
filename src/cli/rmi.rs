//! `bk rmi NAME…`: removes names from the local image store, as
//! `docker rmi` untags. An image ID (or a unique prefix) stands for the
//! one name it has; `-f` removes all its names. Every argument is tried;
//! an unknown one is reported and makes the exit status 1. Blobs are never deleted here: other
//! names and the build cache may share them, and reclaiming blobs no
//! name uses is a prune's job (not built yet), so an image whose last
//! name goes is said to stay in the content store.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use anyhow::bail;

use super::local_images::{familiar, parse_name, short_id, still_named, LocalImages};
use crate::image::Reference;
use crate::imagestore::{self, ImageStoreError};

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove every name of an image given by ID
    #[arg(short, long)]
    pub force: bool,
    /// Image names (name[:tag]) or IDs
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

pub fn run(args: RmiArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let local = LocalImages::open(root)?;
    let mut failed = false;
    for arg in &args.names {
        let names = match names_of(&local, arg, args.force) {
            Ok(names) => names,
            Err(e) => {
                eprintln!("ERROR: {e:#}");
                failed = true;
                continue;
            }
        };
        for name in names {
            let manifest = match local.names.untag(&name) {
                Ok(manifest) => manifest,
                Err(ImageStoreError::NotFound(_)) => {
                    eprintln!("ERROR: No such image: {arg}");
                    failed = true;
                    continue;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("failed to remove {arg}")))
                }
            };
            println!("Untagged: {}", familiar(&name));
            if !still_named(&local.names, &manifest)? {
                let id = imagestore::read_image(&local.content, &manifest)
                    .map(|image| short_id(image.id()))
                    .unwrap_or_else(|_| short_id(&manifest.digest));
                eprintln!(
                    "note: image {id} has no name left; its blobs stay in the content store \
                     until pruning (not built yet)"
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The names `arg` stands for: itself when it is a stored name, else the
/// names of the image it is the ID of (all of them only with `force`).
fn names_of(local: &LocalImages, arg: &str, force: bool) -> anyhow::Result<Vec<Reference>> {
    if let Ok(name) = parse_name(arg) {
        if local.names.get(&name)?.is_some() {
            return Ok(vec![name]);
        }
    }
    let (_, image) = local.find(arg)?;
    // Every name whose image has this ID (two manifests may share a
    // config: Docker and OCI media types).
    let names: Vec<Reference> = local
        .names
        .list()?
        .into_iter()
        .filter(|t| {
            imagestore::read_image(&local.content, &t.manifest).is_ok_and(|i| i.id() == image.id())
        })
        .map(|t| t.name)
        .collect();
    if names.len() > 1 && !force {
        bail!(
            "image {} has {} names ({}): give a name, or -f to remove them all",
            short_id(image.id()),
            names.len(),
            names.iter().map(familiar).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(names)
}
