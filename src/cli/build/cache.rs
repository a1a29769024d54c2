//! `--cache-from` and `--cache-to`: build cache shared between stores
//! (format and compatibility in [`crate::remotecache`]).
//!
//! Import runs before the solve: each source's manifest and config are
//! read (blobs only later, on a hit). As buildx does, a source that
//! cannot be read is a warning and the build goes on without it.
//!
//! Export runs after the image outputs: `mode=min` (default) exports the
//! steps whose result is part of the final result's chain (the image's
//! layers), `mode=max` every step whose chain is known. A failed export
//! fails the build unless `ignore-error=true`. `type=inline` embeds the
//! `mode=min` records in the exported image's config ([`commit_image`]).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};

use super::BuildOpts;
use crate::cache::CacheDb;
use crate::cli::build_opts::{CacheKind, CacheSpec};
use crate::content::ContentStore;
use crate::exporter::image as image_exp;
use crate::exporter::layer::Compression;
use crate::image::{Image, Reference};
use crate::registry::Registry;
use crate::remotecache::{CacheManifest, ExportLayer, ExportRecord, Imported, INLINE_CACHE_KEY};
use crate::snapshot::Store;
use crate::solver::{ChainLayer, SolveResult, Step};

fn flag(spec: &CacheSpec, key: &str) -> bool {
    spec.attrs
        .get(key)
        .is_some_and(|v| matches!(v.as_str(), "true" | "1"))
}

/// The records of every `--cache-from` that could be read; `None` when
/// none was given. Unreadable sources are warned about.
pub(super) fn import(
    opts: &BuildOpts,
    registry: &Arc<Registry>,
    runtime: &tokio::runtime::Runtime,
) -> Option<Arc<Imported>> {
    if opts.cache_from.is_empty() {
        return None;
    }
    let mut all = Imported::default();
    for spec in &opts.cache_from {
        let loaded = match spec.kind {
            CacheKind::Local => {
                let Some(src) = spec.attrs.get("src") else {
                    eprintln!("WARNING: --cache-from type=local needs src=DIR; ignored");
                    continue;
                };
                let dir = PathBuf::from(src);
                crate::remotecache::Imported::load_dir(
                    &dir,
                    spec.attrs.get("tag").map(String::as_str),
                    spec.attrs.get("digest").map(String::as_str),
                )
                .map_err(anyhow::Error::new)
                .with_context(|| format!("failed to import cache from {}", dir.display()))
            }
            CacheKind::Registry => {
                let name = spec.attrs.get("ref").cloned().unwrap_or_default();
                match Reference::parse_normalized(&name) {
                    Ok(reference) => runtime
                        .block_on(Imported::load_registry(registry.clone(), reference))
                        .map_err(anyhow::Error::new)
                        .with_context(|| format!("failed to import cache from {name}")),
                    Err(err) => Err(anyhow::Error::new(err))
                        .with_context(|| format!("invalid cache reference {name}")),
                }
            }
            CacheKind::Inline => {
                eprintln!(
                    "WARNING: --cache-from type=inline is not a source: give the image as \
                     type=registry,ref=IMAGE"
                );
                continue;
            }
        };
        match loaded {
            Ok(imported) => {
                if !opts.quiet {
                    eprintln!("importing cache: {} records", imported.len());
                }
                all.extend(imported);
            }
            Err(err) => eprintln!("WARNING: {err:#}"),
        }
    }
    Some(Arc::new(all))
}

/// Whether `step`'s chain is a prefix of the final result's chain.
fn in_final_chain(step: &Step, result: &SolveResult) -> bool {
    let Some(root) = &result.chain else {
        return false;
    };
    step.chain.len() <= root.len()
        && step
            .chain
            .iter()
            .zip(root)
            .all(|(a, b)| a.snapshot == b.snapshot)
}

/// The steps `mode=` selects: all, or those in some result's final
/// chain (one result per platform; each lists every step of the solve).
fn selected<'a>(spec: &CacheSpec, results: &'a [SolveResult]) -> Vec<&'a Step> {
    let max = spec.attrs.get("mode").is_some_and(|m| m == "max");
    let Some(first) = results.first() else {
        return Vec::new();
    };
    first
        .steps
        .iter()
        .filter(|s| max || results.iter().any(|r| in_final_chain(s, r)))
        .collect()
}

/// The options layers are made with for `spec`.
fn layer_options(spec: &CacheSpec) -> anyhow::Result<image_exp::ImageOptions> {
    let level = spec
        .attrs
        .get("compression-level")
        .map(|l| l.parse::<u32>())
        .transpose()
        .context("invalid compression-level")?;
    let compression =
        Compression::from_attrs(spec.attrs.get("compression").map(String::as_str), level)
            .context("invalid compression")?;
    Ok(image_exp::ImageOptions {
        compression,
        oci_mediatypes: true,
        names: Vec::new(),
        manifest_annotations: Default::default(),
        descriptor_annotations: Default::default(),
        index_annotations: Default::default(),
        index_descriptor_annotations: Default::default(),
        created: String::new(),
        clamp_mtime: None,
        force_compression: flag(spec, "force-compression"),
    })
}

/// The layers of a result chain: each snapshot's tree, with the blob a
/// base image's layer already has.
pub(super) fn chain_sources(store: &Store, chain: &[ChainLayer]) -> Vec<image_exp::LayerSource> {
    chain
        .iter()
        .map(|layer| image_exp::LayerSource {
            tree: store.path(&layer.snapshot),
            snapshot: Some(layer.snapshot.clone()),
            blob: layer.blob.as_ref().map(|b| image_exp::BaseBlob {
                descriptor: crate::content::Descriptor {
                    media_type: b.media_type.clone(),
                    digest: b.digest.clone(),
                    size: b.size,
                    annotations: Default::default(),
                },
                diff_id: b.diff_id.clone(),
            }),
        })
        .collect()
}

/// Writes the build cache of the solve's results (one per platform)
/// everywhere `--cache-to` says (inline caches were written with the
/// image).
pub(super) fn export(
    opts: &BuildOpts,
    store: &Store,
    result: &[SolveResult],
    root: &std::path::Path,
    cache: &CacheDb,
    registry: &Registry,
) -> anyhow::Result<()> {
    for spec in &opts.cache_to {
        if spec.kind == CacheKind::Inline {
            continue;
        }
        if let Err(err) = export_one(opts, spec, store, result, root, cache, registry) {
            if flag(spec, "ignore-error") {
                eprintln!("WARNING: {err:#} (ignored: ignore-error=true)");
            } else {
                return Err(err);
            }
        }
    }
    Ok(())
}

fn export_one(
    opts: &BuildOpts,
    spec: &CacheSpec,
    store: &Store,
    result: &[SolveResult],
    root: &std::path::Path,
    cache: &CacheDb,
    registry: &Registry,
) -> anyhow::Result<()> {
    let content = ContentStore::open(root)
        .with_context(|| format!("failed to open the content store in {}", root.display()))?;
    let options = layer_options(spec)?;
    let mut records = Vec::new();
    for step in selected(spec, result) {
        let (layers, diff_ids) = image_exp::make_layers(
            &content,
            &chain_sources(store, &step.chain),
            &options,
            Some(cache),
        )
        .context("failed to make the cache's layers")?;
        records.push(ExportRecord {
            key: step.key.as_str().to_string(),
            chain: layers
                .into_iter()
                .zip(diff_ids)
                .map(|(descriptor, diff_id)| ExportLayer {
                    descriptor,
                    diff_id,
                })
                .collect(),
        });
    }
    let manifest = CacheManifest::new(&records);
    if manifest.config.records.is_empty() {
        eprintln!(
            "WARNING: no build step's result has layers to export; the cache at {} is empty",
            spec.attrs
                .get("dest")
                .or_else(|| spec.attrs.get("ref"))
                .map_or("", String::as_str)
        );
    }
    let (manifest_desc, config_desc) = manifest
        .store(&content)
        .context("failed to make the cache manifest")?;
    let count = manifest.config.records.len();
    match spec.kind {
        CacheKind::Local => {
            let Some(dest) = spec.attrs.get("dest") else {
                bail!("--cache-to type=local needs dest=DIR");
            };
            let tag = spec.attrs.get("tag").map_or("latest", String::as_str);
            crate::remotecache::write_local(
                std::path::Path::new(dest),
                &content,
                &manifest_desc,
                &config_desc,
                &manifest.layers,
                tag,
            )
            .with_context(|| format!("failed to export cache to {dest}"))?;
            if !opts.quiet {
                eprintln!(
                    "exported cache to {dest}: {count} records, {} layers, manifest {}",
                    manifest.layers.len(),
                    manifest_desc.digest
                );
            }
        }
        CacheKind::Registry => {
            let name = spec.attrs.get("ref").cloned().unwrap_or_default();
            let target = Reference::parse_normalized(&name)
                .with_context(|| format!("invalid cache reference {name}"))?;
            let registry = registry.renewed();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("failed to start the cache export's thread pool")?;
            runtime
                .block_on(registry.push(&manifest_desc, &target))
                .with_context(|| format!("failed to export cache to {target}"))?;
            if !opts.quiet {
                eprintln!(
                    "exported cache to {target}: {count} records, manifest {}",
                    manifest_desc.digest
                );
            }
        }
        CacheKind::Inline => {}
    }
    Ok(())
}

/// Makes an image as [`image_exp::commit`] does and, when `--cache-to
/// type=inline` is asked, puts the `mode=min` cache records in its config
/// under `moby.buildkit.cache.v0` (base64 of the cache config, whose
/// blobs are the image's own layers).
pub(in crate::cli) fn commit_image(
    opts: &BuildOpts,
    content: &ContentStore,
    layers: &[image_exp::LayerSource],
    image: &Image,
    options: &image_exp::ImageOptions,
    cache: &CacheDb,
    result: &SolveResult,
) -> anyhow::Result<image_exp::Committed> {
    let (descs, diff_ids) = image_exp::make_layers(content, layers, options, Some(cache))
        .context("failed to make the image")?;
    let config = image_exp::finish_config(image, diff_ids.clone(), &options.created);
    let inline = opts.cache_to.iter().any(|s| s.kind == CacheKind::Inline);
    // The image's layers are the final chain's only when it is known.
    let chain_ok = result
        .chain
        .as_ref()
        .is_some_and(|c| c.len() == descs.len());
    if !inline || !chain_ok {
        if inline {
            eprintln!("WARNING: no inline cache: the image's layers are not the build's steps");
        }
        return image_exp::commit_config(content, config, descs, diff_ids, options)
            .context("failed to make the image");
    }
    let records: Vec<ExportRecord> = result
        .steps
        .iter()
        .filter(|s| in_final_chain(s, result))
        .map(|s| ExportRecord {
            key: s.key.as_str().to_string(),
            chain: descs
                .iter()
                .zip(&diff_ids)
                .take(s.chain.len())
                .map(|(d, id)| ExportLayer {
                    descriptor: d.clone(),
                    diff_id: id.clone(),
                })
                .collect(),
        })
        .collect();
    let json = CacheManifest::new(&records)
        .config_json()
        .context("failed to make the inline cache")?;
    use base64::Engine;
    let mut value = serde_json::to_value(&config).context("failed to encode the image config")?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            INLINE_CACHE_KEY.into(),
            base64::engine::general_purpose::STANDARD
                .encode(json)
                .into(),
        );
    }
    image_exp::commit_value(content, &value, descs, diff_ids, options)
        .context("failed to make the image")
}
