//! `bk tag SOURCE TARGET`: gives a local image another name, as
//! `docker tag`. SOURCE is a name or an image ID (a unique prefix is
//! enough); TARGET is a name, replaced if it exists.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::local_images::{familiar, parse_name, LocalImages};

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image to name (name[:tag] or image ID)
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new name (name[:tag])
    #[arg(value_name = "TARGET")]
    pub target: String,
}

pub fn run(args: TagArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let local = LocalImages::open(root)?;
    let target = parse_name(&args.target)?;
    let (_, image) = local.find(&args.source)?;
    local
        .names
        .tag(&target, &image.descriptor)
        .with_context(|| format!("failed to tag {}", familiar(&target)))?;
    Ok(ExitCode::SUCCESS)
}
