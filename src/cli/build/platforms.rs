//! `bk build --platform a,b,…`: one build for several target platforms,
//! as buildx asks BuildKit for it.
//!
//! The Dockerfile is planned and lowered once per platform (each plan
//! gets that platform as `TARGETPLATFORM`; `BUILDPLATFORM` stays this
//! machine's), step names carry the stage's platform, and the graphs
//! become one ([`crate::llb::Definition::absorb`]): a stage on the build
//! platform lowers to the same vertices for every target, so it runs
//! once. One solve runs every platform's root under one progress stream.
//!
//! Outputs, as BuildKit's exporters write a multi-platform result:
//! - `type=local`: `dest/<os>_<arch>[_<variant>]/…` per platform, or all
//!   platforms merged into `dest` with `platform-split=false` (a file two
//!   platforms both have is then an error);
//! - `type=tar`: the same per-platform directories inside the archive
//!   (BuildKit's tar exporter always splits a multi-platform result and
//!   never a single one; `platform-split` is accepted and ignored);
//! - `type=oci`, `--push` / `type=registry`: an image index (a Docker
//!   manifest list with `oci-mediatypes=false`) naming one image per
//!   platform, each entry with its platform (each image and index entry
//!   with the annotations for its platform, see [`super::annotations`]);
//!   `--metadata-file` and `-q` / `--iidfile` then give the index's digest;
//! - `-t` alone / `type=image` unpushed: the index is named in the local
//!   image store, where `FROM` picks each platform's image from it;
//! - `type=docker` / `--load` hold one image only: refused before
//!   building, with BuildKit's docker exporter's words.
//!
//! With one platform (or none) nothing here changes the build.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};

use super::annotations::{Annotations, Level};
use super::{image_options, lower_options, plan_options, BuildOpts, DockerfileText, ImageExport};
use crate::cli::build_opts::{Dest, Output, OutputKind};
use crate::content::ContentStore;
use crate::dockerfile;
use crate::exporter;
use crate::exporter::image as image_exp;
use crate::exporter::metadata::ImageMetadata;
use crate::image::Platform;
use crate::llb::{Definition, Input};
use crate::snapshot::Store;
use crate::solver::SolveResult;

/// One platform's share of the build: its plan and graph.
pub(in crate::cli) struct Target {
    /// The platform asked for; `None` when no `--platform` was given.
    pub platform: Option<Platform>,
    pub plan: dockerfile::Plan,
    pub lowered: dockerfile::Lowered,
}

/// The platforms to build for, each once, in the order given (buildx
/// drops repeats); a single `None` when none was asked for.
fn requested(opts: &BuildOpts) -> Vec<Option<Platform>> {
    let mut platforms: Vec<Platform> = Vec::new();
    for p in &opts.platforms {
        if !platforms.contains(p) {
            platforms.push(p.clone());
        }
    }
    if platforms.is_empty() {
        return vec![None];
    }
    platforms.into_iter().map(Some).collect()
}

/// The platforms a multi-platform build makes images for.
pub(in crate::cli) fn built(opts: &BuildOpts) -> Vec<Platform> {
    requested(opts)
        .into_iter()
        .map(|p| p.unwrap_or_else(Platform::host))
        .collect()
}

/// Whether the build is for several platforms.
pub(in crate::cli) fn is_multi(opts: &BuildOpts) -> bool {
    requested(opts).len() > 1
}

/// Plans and lowers the Dockerfile for every requested platform, with
/// all named contexts (each use picks its platform's). The planner's
/// warnings are printed once (they are the same for all).
pub(in crate::cli) fn plan(
    dockerfile: &DockerfileText,
    ast: &dockerfile::Ast,
    opts: &BuildOpts,
    named: &dockerfile::NamedContexts,
    resolver: &dyn dockerfile::BaseImageResolver,
) -> anyhow::Result<Vec<Target>> {
    let platforms = requested(opts);
    let multi = platforms.len() > 1;
    let mut targets = Vec::with_capacity(platforms.len());
    for (i, platform) in platforms.into_iter().enumerate() {
        let plan_opts = dockerfile::PlanOptions {
            target_platform: platform.clone(),
            ..plan_options(opts, named)
        };
        // The checks run once, and also when planning fails: findings
        // are reported before the error, as BuildKit does.
        let plan = match dockerfile.plan(ast, &plan_opts, resolver) {
            Ok(plan) => plan,
            Err(err) if i == 0 => {
                dockerfile.check_build(ast, &plan_opts, None)?;
                return Err(err);
            }
            Err(err) => return Err(err),
        };
        if i == 0 {
            dockerfile.print_plan_warnings(&plan);
            dockerfile.check_build(ast, &plan_opts, Some(&plan))?;
        }
        let lower_opts = dockerfile::LowerOptions {
            platform_prefix: multi,
            ..lower_options(opts)
        };
        let lowered = dockerfile.lower(&plan, &lower_opts)?;
        targets.push(Target {
            platform,
            plan,
            lowered,
        });
    }
    Ok(targets)
}

/// One graph for all targets and each target's root in it.
pub(in crate::cli) fn combine(targets: &[Target]) -> (Definition, Vec<Option<Input>>) {
    if let [only] = targets {
        let def = only.lowered.definition.clone();
        let root = def.root.clone();
        return (def, vec![root]);
    }
    let mut all = Definition::new();
    let roots = targets
        .iter()
        .map(|t| all.absorb(&t.lowered.definition))
        .collect();
    (all, roots)
}

/// Why the outputs cannot take several platforms, if they cannot:
/// checked before anything is built.
pub(in crate::cli) fn refusal(opts: &BuildOpts) -> Option<String> {
    if !is_multi(opts) {
        return None;
    }
    // BuildKit's docker exporter's words.
    opts.outputs
        .iter()
        .any(|o| o.kind == OutputKind::Docker)
        .then(|| "docker exporter does not currently support exporting manifest lists".to_string())
}

/// Whether a one-platform build still goes through the split exporters:
/// `type=local` with `platform-split=true` puts even one platform's tree
/// in its platform directory, as BuildKit's local exporter does (its tar
/// exporter splits only a multi-platform result, whatever the attribute).
pub(in crate::cli) fn split_single(opts: &BuildOpts) -> bool {
    opts.outputs.first().is_some_and(|o| {
        o.kind == OutputKind::Local
            && o.attrs
                .get("platform-split")
                .is_some_and(|v| matches!(v.as_str(), "true" | "1" | ""))
    })
}

/// The name of a platform's directory in split outputs.
fn platform_name(target: &Target) -> String {
    target
        .platform
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| Platform::host().to_string())
}

/// What every platform's image export shares.
pub(in crate::cli) struct Shared<'a> {
    pub root: &'a Path,
    pub registry: &'a crate::registry::Registry,
    pub cache: &'a crate::cache::CacheDb,
}

/// Writes a multi-platform result where `--output` says (see the
/// module documentation). Returns the image ID (the index's digest) when
/// an image was made.
pub(in crate::cli) fn export(
    opts: &BuildOpts,
    store: &Store,
    targets: &[Target],
    results: &[SolveResult],
    shared: &Shared<'_>,
) -> anyhow::Result<Option<String>> {
    let Some(output) = opts.outputs.first() else {
        eprintln!(
            "WARNING: No output specified. Build result will only remain in the build cache. \
             To export it, use --output type=local,dest=DIR or --output type=tar,dest=FILE"
        );
        return super::write_metadata(opts, None);
    };
    match output.kind {
        OutputKind::Local | OutputKind::Tar => {
            export_trees(output, store, targets, results)?;
            super::write_metadata(opts, None)
        }
        OutputKind::Oci | OutputKind::Image => {
            let metadata = export_index(opts, output, store, targets, results, shared)?;
            super::write_metadata(opts, Some(metadata))
        }
        kind => bail!(
            "not supported yet: --output type={} with several platforms",
            kind.name()
        ),
    }
}

/// `type=local` / `type=tar`: every platform's tree, split into
/// platform directories or (local, `platform-split=false`) merged.
fn export_trees(
    output: &Output,
    store: &Store,
    targets: &[Target],
    results: &[SolveResult],
) -> anyhow::Result<()> {
    // Scratch results are exported as empty directories: uncommitted
    // snapshots, removed again when `empties` is dropped.
    let mut empties = Vec::new();
    let mut dirs = Vec::with_capacity(results.len());
    for result in results {
        match result.dir(store) {
            Some(dir) => dirs.push(dir),
            None => {
                let empty = store
                    .prepare(None)
                    .context("failed to prepare an empty result")?;
                dirs.push(empty.path().to_path_buf());
                empties.push(empty);
            }
        }
    }
    let names: Vec<String> = targets.iter().map(platform_name).collect();
    let split = output
        .attrs
        .get("platform-split")
        .is_none_or(|v| !matches!(v.as_str(), "false" | "0"));
    match (output.kind, &output.dest) {
        (OutputKind::Local, Some(Dest::Path(dest))) => {
            let parts: Vec<(&str, &Path)> = names
                .iter()
                .map(String::as_str)
                .zip(dirs.iter().map(|d| d.as_path()))
                .collect();
            let done = if split {
                exporter::platform_split(&parts, dest)
            } else {
                exporter::platform_merge(&parts, dest)
            };
            done.with_context(|| format!("failed to export to {}", dest.display()))?;
        }
        (OutputKind::Tar, Some(dest)) => {
            let subs = names
                .iter()
                .map(|n| exporter::platform_dir_name(n))
                .collect::<Result<Vec<_>, _>>()?;
            let trees: Vec<exporter::tar::Tree<'_>> = subs
                .iter()
                .zip(&dirs)
                .map(|(sub, dir)| exporter::tar::Tree {
                    sub: Some(sub.as_str()),
                    dir,
                })
                .collect();
            let (dest, shown) = match dest {
                Dest::Path(p) => (
                    exporter::tar::Dest::Path(p.clone()),
                    p.display().to_string(),
                ),
                Dest::Stdout => (exporter::tar::Dest::Stdout, "standard output".into()),
            };
            exporter::tar::export_trees(&trees, dest)
                .with_context(|| format!("failed to export to {shown}"))?;
        }
        (OutputKind::Local, _) => {
            bail!("--output type=local needs a directory: dest=- is for type=tar")
        }
        (kind, _) => bail!("--output type={} needs dest=", kind.name()),
    }
    drop(empties);
    Ok(())
}

/// `type=oci` and pushed images: each platform's image, then an index
/// of them, written as an OCI layout archive or pushed.
fn export_index(
    opts: &BuildOpts,
    output: &Output,
    store: &Store,
    targets: &[Target],
    results: &[SolveResult],
    shared: &Shared<'_>,
) -> anyhow::Result<ImageMetadata> {
    // The options are the same for every platform (they depend on the
    // output and SOURCE_DATE_EPOCH, which every plan shares).
    let epoch = targets.first().and_then(|t| t.plan.epoch);
    let pushing = crate::cli::build_push::is_push(output);
    let options = image_options(opts, output, epoch)?;
    if pushing && options.names.is_empty() {
        bail!(
            "pushing needs an image name: give -t NAME or --output type=image,name=NAME,push=true"
        );
    }
    // Each image takes the annotations for its platform (validated by
    // `image_options`).
    let annotations =
        Annotations::parse(&output.attrs, &opts.annotations).context("invalid annotation")?;
    let mut images = Vec::with_capacity(targets.len());
    let mut descriptors = BTreeMap::new();
    for (target, result) in targets.iter().zip(results) {
        let platform = match &target.platform {
            Some(p) => p.clone(),
            None => Platform::host(),
        };
        let own = image_exp::ImageOptions {
            manifest_annotations: annotations.at(Level::Manifest, Some(&platform)),
            ..options.clone()
        };
        descriptors.insert(
            platform.clone(),
            annotations.at(Level::ManifestDescriptor, Some(&platform)),
        );
        let export = ImageExport {
            root: shared.root,
            image: &target.lowered.image,
            epoch: target.plan.epoch,
            registry: shared.registry,
            cache: shared.cache,
        };
        let (_, committed) = super::local_image::make_image(opts, store, result, &export, &own)
            .with_context(|| format!("failed to make the image for {}", platform_name(target)))?;
        images.push((platform, committed));
    }
    let content = ContentStore::open(shared.root).with_context(|| {
        format!(
            "failed to open the content store in {}",
            shared.root.display()
        )
    })?;
    let index = image_exp::commit_index(&content, images, &descriptors, &options)
        .context("failed to make the index")?;
    let names: Vec<String> = options.names.iter().map(ToString::to_string).collect();
    if pushing {
        crate::cli::build_push::push_to_names(
            opts,
            output,
            shared.registry,
            &options,
            &index.index,
        )?;
        return Ok(ImageMetadata::index(&index.index, &names));
    }
    if output.kind == OutputKind::Image {
        super::local_image::name_image(opts, shared.root, &options, &index.index)?;
        return Ok(ImageMetadata::index(&index.index, &names));
    }
    let (dest, shown) = super::archive_dest(output)?;
    image_exp::write_archive(
        &content,
        image_exp::Archived::Index(&index),
        image_exp::Format::Oci,
        &options,
        &dest,
    )
    .with_context(|| format!("failed to export the image to {shown}"))?;
    Ok(ImageMetadata::index(&index.index, &names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn opts(argv: &[&str]) -> BuildOpts {
        let mut full = vec!["bk", "build"];
        full.extend_from_slice(argv);
        let cli = crate::cli::Cli::try_parse_from(full).unwrap();
        match cli.command {
            crate::cli::Command::Build(args) => BuildOpts::from_args(*args, |_| None).unwrap(),
            _ => unreachable!("parsed as build"),
        }
    }

    #[test]
    fn platforms_are_deduplicated_in_order() {
        let o = opts(&["--platform", "linux/arm64,linux/amd64,linux/arm64", "."]);
        let got: Vec<String> = requested(&o)
            .into_iter()
            .map(|p| p.unwrap().to_string())
            .collect();
        assert_eq!(got, ["linux/arm64", "linux/amd64"]);
        assert!(is_multi(&o));
        assert_eq!(requested(&opts(&["."])), vec![None]);
        assert!(!is_multi(&opts(&[
            "--platform",
            "linux/amd64,linux/amd64",
            "."
        ])));
    }

    #[test]
    fn single_image_outputs_are_refused_for_several_platforms() {
        let two = "linux/amd64,linux/arm64";
        let refused = |argv: &[&str]| refusal(&opts(argv));
        assert_eq!(
            refused(&["--platform", two, "--load", "."]).unwrap(),
            "docker exporter does not currently support exporting manifest lists"
        );
        assert!(refused(&["--platform", two, "-o", "type=docker,dest=x", "."]).is_some());
        for ok in [
            &["--platform", two, "-t", "a", "."][..],
            &["--platform", two, "-t", "a", "--push", "."],
            &["--platform", two, "-o", "type=oci,dest=x", "."],
            &["--platform", two, "-o", "out", "."],
            &["--platform", "linux/arm64", "--load", "."],
        ] {
            assert_eq!(refused(ok), None, "{ok:?}");
        }
    }
}
