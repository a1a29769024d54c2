//! `bk rmi NAME…`: removes names from the local image store, as
//! `docker rmi` untags. Every name is tried; an unknown one is reported
//! and makes the exit status 1. Blobs are never deleted here: other
//! names and the build cache may share them, and reclaiming blobs no
//! name uses is a prune's job (not built yet), so an image whose last
//! name goes is said to stay in the content store.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::local_images::{familiar, parse_name, short_id, still_named, LocalImages};
use crate::imagestore::{self, ImageStoreError};

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image names (name[:tag])
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

pub fn run(args: RmiArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let local = LocalImages::open(root)?;
    let mut failed = false;
    for arg in &args.names {
        let name = match parse_name(arg) {
            Ok(name) => name,
            Err(e) => {
                eprintln!("ERROR: {e:#}");
                failed = true;
                continue;
            }
        };
        let manifest = match local.names.untag(&name) {
            Ok(manifest) => manifest,
            Err(ImageStoreError::NotFound(_)) => {
                eprintln!("ERROR: No such image: {arg}");
                failed = true;
                continue;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("failed to remove {arg}"))),
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
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
