//! Images kept on this machine: `-t NAME` with no other output,
//! `--output type=image` (not pushed) and `--load` make the image
//! (blobs in the content store) and name it in the local image store,
//! where `bk images` lists it and `FROM NAME` finds it. A multi-platform
//! build names its index there ([`name_image`]).
//!
//! Also turns a solve's main chain into the layers an image exporter
//! makes ([`layer_sources`]) and remembers which snapshot holds which
//! layers ([`remember_layers`]), both shared with the archive outputs:
//! `FROM` an image bk made then finds its layers already unpacked.

use anyhow::Context;

use super::{image_options, BuildOpts, ImageExport};
use crate::cache::CacheDb;
use crate::cli::build_opts::Output;
use crate::content::ContentStore;
use crate::exporter::image as image_exp;
use crate::exporter::metadata::ImageMetadata;
use crate::imagestore::ImageStore;
use crate::snapshot::Store;
use crate::solver::ops::image::remember_layers as remember;
use crate::solver::SolveResult;

/// The layers of `result`'s image: a base image's blobs, then one layer
/// per build step; one layer of the whole root when the chain is unknown.
pub(in crate::cli) fn layer_sources(
    store: &Store,
    result: &SolveResult,
) -> Vec<image_exp::LayerSource> {
    match &result.chain {
        Some(chain) => super::cache::chain_sources(store, chain),
        None => result
            .dir(store)
            .into_iter()
            .map(|tree| image_exp::LayerSource {
                tree,
                snapshot: None,
                blob: None,
            })
            .collect(),
    }
}

/// Makes the image and points each of its names at it in the local
/// image store. Returns the image's digests (its ID is the config's).
pub(super) fn store(
    opts: &BuildOpts,
    output: &Output,
    store: &Store,
    result: &SolveResult,
    image: &ImageExport<'_>,
) -> anyhow::Result<ImageMetadata> {
    let options = image_options(opts, output, image.epoch)?;
    let (_, committed) = make_image(opts, store, result, image, &options)?;
    let images = ImageStore::open(image.root)
        .with_context(|| format!("failed to open the image store in {}", image.root.display()))?;
    let id = committed.config.digest.clone();
    if options.names.is_empty() && !opts.quiet {
        eprintln!(
            "WARNING: the image has no name (give -t NAME or name=), so `bk images` does not \
             list it; its ID is {id}"
        );
    }
    for name in &options.names {
        images
            .tag(name, &committed.manifest)
            .with_context(|| format!("failed to name the image {name}"))?;
        if !opts.quiet {
            eprintln!("naming to {name} done");
        }
    }
    let names: Vec<String> = options.names.iter().map(ToString::to_string).collect();
    Ok(ImageMetadata::new(
        &committed.manifest,
        &committed.config,
        &names,
    ))
}

/// Points each name of `options` at `top` (an image or an index already
/// in the content store) in the local image store.
pub(super) fn name_image(
    opts: &BuildOpts,
    root: &std::path::Path,
    options: &image_exp::ImageOptions,
    top: &crate::content::Descriptor,
) -> anyhow::Result<()> {
    let images = ImageStore::open(root)
        .with_context(|| format!("failed to open the image store in {}", root.display()))?;
    if options.names.is_empty() && !opts.quiet {
        eprintln!(
            "WARNING: the image has no name (give -t NAME or name=), so `bk images` does not \
             list it; its ID is {}",
            top.digest
        );
    }
    for name in &options.names {
        images
            .tag(name, top)
            .with_context(|| format!("failed to name the image {name}"))?;
        if !opts.quiet {
            eprintln!("naming to {name} done");
        }
    }
    Ok(())
}

/// Records the snapshots of `result`'s chain as the unpacked layers of
/// `committed`, when they are exactly that: not when `rewrite-timestamp`
/// changed the layers' times, nor when the chain is unknown. A failure
/// only costs an unpack later, so it is a warning.
pub(in crate::cli) fn remember_layers(
    cache: &CacheDb,
    result: &SolveResult,
    committed: &image_exp::Committed,
    options: &image_exp::ImageOptions,
) {
    let Some(chain) = &result.chain else { return };
    if options.clamp_mtime.is_some() || chain.len() != committed.diff_ids.len() {
        return;
    }
    let snapshots: Vec<_> = chain.iter().map(|l| l.snapshot.clone()).collect();
    if let Err(err) = remember(cache, &committed.diff_ids, &snapshots) {
        eprintln!(
            "WARNING: cannot remember the image's layers: {:#}",
            anyhow::Error::new(err)
        );
    }
}

/// Makes `result`'s image in the content store (layers, config with any
/// inline cache, manifest) and remembers its layers, as every image
/// output (local store, archive, push) does first.
pub(in crate::cli) fn make_image(
    opts: &BuildOpts,
    store: &Store,
    result: &SolveResult,
    image: &ImageExport<'_>,
    options: &image_exp::ImageOptions,
) -> anyhow::Result<(ContentStore, image_exp::Committed)> {
    let layers = layer_sources(store, result);
    let content = ContentStore::open(image.root).with_context(|| {
        format!(
            "failed to open the content store in {}",
            image.root.display()
        )
    })?;
    let committed = super::cache::commit_image(
        opts,
        &content,
        &layers,
        image.image,
        options,
        image.cache,
        result,
    )?;
    remember_layers(image.cache, result, &committed, options);
    Ok((content, committed))
}
