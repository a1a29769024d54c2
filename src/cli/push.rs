//! `bk push NAME`: sends an image of the local image store to the
//! registry its name points at, as `docker push` does. Blobs the
//! registry already has are not sent again; the push reports what it
//! uploaded.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::build_push::summary;
use super::local_images::{familiar, LocalImages};
use crate::image::Reference;
use crate::registry::Registry;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The local image to push (name[:tag]; the name says where)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Allow plain HTTP or an unverified certificate for its registry
    #[arg(long)]
    pub insecure: bool,
    /// Print only the pushed manifest's digest
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: PushArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let local = LocalImages::open(root)?;
    let (name, image) = local.find(&args.name)?;
    // An image ID has no registry to go to; docker refuses it too.
    let Some(name) = name else {
        anyhow::bail!(
            "{} is an image ID, not a name: give the name to push to (bk tag {} REGISTRY/NAME:TAG)",
            args.name,
            args.name
        );
    };
    let target = Reference::with_default_tag(name);
    let insecure = args.insecure.then(|| target.domain.clone());
    let registry = Registry::new(local.content).with_insecure(insecure);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the push's thread pool")?;
    if !args.quiet {
        eprintln!("pushing {}", familiar(&target));
    }
    let started = std::time::Instant::now();
    let pushed = runtime
        .block_on(registry.push(&image.descriptor, &target))
        .with_context(|| format!("failed to push {}", familiar(&target)))?;
    if args.quiet {
        println!("{}", pushed.manifest.digest);
    } else {
        eprintln!(
            "{} in {:.2}s",
            summary(&pushed),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
