//! `bk build`'s registry output: `--output type=image,push=true`,
//! `type=registry` and `--push` (with `-t` naming the image). The image
//! is made in the content store as for the archive outputs, then pushed
//! to each name in turn (`name=a,b`), or by digest only with
//! `push-by-digest=true`. `registry.insecure=true` and
//! `--insecure-registry HOST` let a registry use plain HTTP or an
//! unverified certificate (see `registry::transport`).

use anyhow::{bail, Context};

use super::build::{image_options, BuildOpts, ImageExport};
use super::build_opts::{Output, OutputKind};
use crate::exporter::metadata::ImageMetadata;
use crate::image::Reference;
use crate::registry::push::Pushed;
use crate::snapshot::Store;
use crate::solver;

/// Whether `output` pushes to a registry.
pub fn is_push(output: &Output) -> bool {
    output.kind == OutputKind::Image && flag(output, "push")
}

fn flag(output: &Output, key: &str) -> bool {
    output
        .attrs
        .get(key)
        .is_some_and(|v| !matches!(v.as_str(), "false" | "0"))
}

/// Checks the names of push outputs before anything is built, and
/// returns the hosts to treat as insecure: `--insecure-registry` and the
/// registries of push outputs and cache refs with `registry.insecure=true`.
pub fn insecure_hosts(opts: &BuildOpts) -> anyhow::Result<Vec<String>> {
    let mut hosts = opts.insecure_registries.clone();
    for output in opts.outputs.iter().filter(|o| is_push(o)) {
        let names: Vec<String> = output
            .attrs
            .get("name")
            .map(|n| {
                n.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_else(|| opts.tags.clone());
        if names.is_empty() {
            bail!(
                "pushing needs an image name: give -t NAME or --output type=image,name=NAME,push=true"
            );
        }
        let insecure = flag(output, "registry.insecure") || flag(output, "insecure");
        for name in names {
            let reference = Reference::parse_normalized(&name)
                .with_context(|| format!("invalid image name {name:?}"))?;
            if insecure {
                hosts.push(reference.domain);
            }
        }
    }
    // Cache refs with `registry.insecure=true`.
    for spec in opts.cache_from.iter().chain(&opts.cache_to) {
        let insecure = spec
            .attrs
            .get("registry.insecure")
            .is_some_and(|v| matches!(v.as_str(), "true" | "1"));
        if let (true, Some(name)) = (insecure, spec.attrs.get("ref")) {
            let reference = Reference::parse_normalized(name)
                .with_context(|| format!("invalid cache reference {name:?}"))?;
            hosts.push(reference.domain);
        }
    }
    Ok(hosts)
}

/// What a push output asks for that bk cannot do yet, if anything.
pub fn unsupported_attr(output: &Output) -> Option<String> {
    for (key, value) in &output.attrs {
        let off = matches!(value.as_str(), "false" | "0");
        let ok = match key.as_str() {
            "name" | "push" | "push-by-digest" | "registry.insecure" | "insecure" | "store"
            | "compression" | "compression-level" | "force-compression" | "oci-mediatypes" => true,
            "unpack" | "rewrite-timestamp" | "buildinfo" | "name-canonical" => off,
            // Every annotation level and selector; a malformed one is
            // refused with its reason when the image is made. The index
            // descriptor's exist only in OCI layouts and the image store,
            // so a push drops them, as BuildKit's does.
            k => super::build::annotations::parse_attr(k).is_some(),
        };
        if !ok {
            return Some(format!(
                "--output attribute {key}={value} (type=image,push=true)"
            ));
        }
    }
    None
}

/// Makes the image in the content store and pushes it to every name.
pub fn export(
    opts: &BuildOpts,
    output: &Output,
    store: &Store,
    result: &solver::SolveResult,
    image: &ImageExport<'_>,
) -> anyhow::Result<ImageMetadata> {
    let options = image_options(opts, output, image.epoch)?;
    if options.names.is_empty() {
        bail!(
            "pushing needs an image name: give -t NAME or --output type=image,name=NAME,push=true"
        );
    }
    let (_, committed) =
        super::build::local_image::make_image(opts, store, result, image, &options)?;
    push_to_names(opts, output, image.registry, &options, &committed.manifest)?;
    let names: Vec<String> = options.names.iter().map(ToString::to_string).collect();
    Ok(ImageMetadata::new(
        &committed.manifest,
        &committed.config,
        &names,
    ))
}

/// Pushes the image or index `top` (in the content store) to every
/// name of `options` (which must have one), or by digest only with
/// `push-by-digest=true`.
pub(super) fn push_to_names(
    opts: &BuildOpts,
    output: &Output,
    registry: &crate::registry::Registry,
    options: &crate::exporter::image::ImageOptions,
    top: &crate::content::Descriptor,
) -> anyhow::Result<()> {
    let by_digest = flag(output, "push-by-digest");
    // The build's runtime is gone; connections are opened afresh here.
    let registry = registry.renewed();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the push's thread pool")?;
    for name in &options.names {
        let target = if by_digest {
            Reference {
                tag: None,
                digest: Some(top.digest.clone()),
                ..name.clone()
            }
        } else {
            name.clone()
        };
        if !opts.quiet {
            eprintln!("pushing {target}");
        }
        let started = std::time::Instant::now();
        let pushed = runtime
            .block_on(registry.push(top, &target))
            .with_context(|| format!("failed to push {target}"))?;
        if !opts.quiet {
            eprintln!(
                "{} in {:.2}s",
                summary(&pushed),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// `pushed NAME@DIGEST: 2 blobs uploaded (1.2 MiB), 1 already there, 0 mounted`.
pub(super) fn summary(pushed: &Pushed) -> String {
    let (existed, mounted, uploaded) = pushed.counts();
    let target = Reference {
        tag: if pushed.reference.digest.is_some() {
            None
        } else {
            pushed.reference.tag.clone()
        },
        digest: Some(pushed.manifest.digest.clone()),
        ..pushed.reference.clone()
    };
    format!(
        "pushed {target}: {uploaded} blobs uploaded ({:.1} MiB), {existed} already there, {mounted} mounted",
        pushed.uploaded_bytes() as f64 / (1024.0 * 1024.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(spec: &str) -> Output {
        spec.parse().unwrap()
    }

    fn opts(argv: &[&str]) -> BuildOpts {
        let mut full = vec!["bk", "build"];
        full.extend_from_slice(argv);
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(full).unwrap();
        match cli.command {
            crate::cli::Command::Build(args) => BuildOpts::from_args(*args, |_| None).unwrap(),
            _ => unreachable!("parsed as build"),
        }
    }

    #[test]
    fn names_are_checked_and_insecure_hosts_collected() {
        let hosts = |argv: &[&str]| insecure_hosts(&opts(argv)).map_err(|e| format!("{e:#}"));
        assert_eq!(
            hosts(&[
                "--push",
                "-t",
                "r:5000/a",
                "--insecure-registry",
                "h:1",
                "."
            ])
            .unwrap(),
            ["h:1"]
        );
        assert_eq!(
            hosts(&[
                "-o",
                "type=registry,name=r:5000/a,name=q:1/b,registry.insecure=true",
                "."
            ])
            .unwrap(),
            ["r:5000", "q:1"]
        );
        assert!(hosts(&["--push", "."])
            .unwrap_err()
            .contains("needs an image name"));
        assert!(hosts(&["-o", "type=registry,name=Bad/Name", "."])
            .unwrap_err()
            .contains("invalid image name"));
        // Outputs that do not push are not checked here.
        assert!(hosts(&["-o", "out", "."]).unwrap().is_empty());
        assert_eq!(
            hosts(&[
                "--cache-to",
                "type=registry,ref=c:7/cache,registry.insecure=true",
                "--cache-from",
                "type=registry,ref=d:8/cache",
                "."
            ])
            .unwrap(),
            ["c:7"]
        );
    }

    #[test]
    fn push_outputs_and_their_attributes() {
        assert!(is_push(&output("type=registry,name=r/a")));
        assert!(is_push(&output("type=image,name=r/a,push=true")));
        assert!(!is_push(&output("type=image,name=r/a")));
        assert!(!is_push(&output("type=image,name=r/a,push=false")));
        assert_eq!(
            unsupported_attr(&output(
                "type=registry,name=a,push-by-digest=true,registry.insecure=true,oci-mediatypes=false"
            )),
            None
        );
        assert!(
            unsupported_attr(&output("type=registry,name=a,unpack=true"))
                .unwrap()
                .contains("unpack")
        );
    }
}
