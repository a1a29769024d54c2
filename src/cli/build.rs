//! `bk build`: flags → [`BuildOpts`] → read and check the Dockerfile →
//! plan (base images resolved in the local image store, then on the
//! registry) → lower → solve (with progress) → export. `--check` stops
//! after planning and contacts no registry. Flags whose feature is not
//! built yet fail with "not supported yet" before anything is built,
//! rather than being silently dropped. `--pull` skips the local image
//! store for base images; tags are resolved on the registry once per
//! build anyway.
//!
//! `-t NAME` with no other output, `--output type=image` (not pushed) and
//! `--load` store the image in the local image store ([`local_image`]);
//! `-q` then prints its ID. `--cache-from` and `--cache-to` are read
//! before the solve and written after the outputs ([`cache`]).
//!
//! Planning, lowering and solving go through [`platforms`]: once per
//! `--platform` (once when none or one is given), one graph, one solve;
//! a multi-platform result is exported there too.

pub(super) mod annotations;
pub(super) mod cache;
pub(super) mod local_image;
pub(super) mod platforms;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use super::build_opts::{
    self, CacheSpec, Dest, Entitlement, Network, Output, OutputKind, Progress, Sandbox, Secret,
    SshSpec,
};
use super::{build_context, build_push, build_stdin, SourceError};
use crate::content::ContentStore;
use crate::dockerfile;
use crate::exporter;
use crate::exporter::image as image_exp;
use crate::image::Platform;
use crate::imagestore::ImageStore;
use crate::llb::NetMode;
use crate::progress;
use crate::registry::Registry;
use crate::snapshot::{Selection, Store};
use crate::solver::{self, SolveContext, SolveError};
use crate::source::dockerignore::Dockerignore;
use crate::source::image::Images;
use crate::source::LocalContext;

/// The flags of `bk build`, as clap reads them.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context: a directory, an http(s) URL of a tarball or a
    /// Dockerfile, or `-` (a tarball or a Dockerfile on standard input)
    #[arg(value_name = "CONTEXT")]
    pub context: String,

    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` for standard input)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,

    /// Image name and optionally a tag (name:tag)
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,

    /// Stage to build
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Target platforms (os/arch[/variant], comma separated)
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PLATFORMS",
        env = "BUILDX_DEFAULT_PLATFORM"
    )]
    pub platform: Vec<Platform>,

    /// Output destination (type=local|tar|oci|docker|image|registry,key=value…, or PATH, or -)
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<Output>,

    /// Shorthand for --output=type=registry
    #[arg(long)]
    pub push: bool,

    /// Allow plain HTTP or an unverified certificate for this registry (HOST[:PORT])
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    /// Shorthand for --output=type=docker (load into a local image store)
    #[arg(long)]
    pub load: bool,

    /// External cache sources (type=registry,ref=… | type=local,src=… | REF)
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<CacheSpec>,

    /// Cache export destinations (type=registry,ref=… | type=local,dest=… | type=inline)
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<CacheSpec>,

    /// Secret to expose to RUN --mount=type=secret (id=ID[,src=PATH|,env=VAR])
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<Secret>,

    /// SSH agent socket or keys to expose (default|ID[=PATH,…])
    #[arg(long = "ssh", value_name = "SPEC")]
    pub ssh: Vec<SshSpec>,

    /// Additional build context: NAME[::PLATFORM]=DIR, docker-image://REF,
    /// oci-layout://PATH[:TAG][@DIGEST], target:STAGE, a git URL or a URL
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,

    /// Networking mode for RUN instructions
    #[arg(long, default_value = "default", value_name = "MODE")]
    pub network: Network,

    /// Allow extra privileged entitlement (security.insecure, network.host)
    #[arg(long = "allow", value_delimiter = ',', value_name = "ENTITLEMENT")]
    pub allow: Vec<Entitlement>,

    /// Isolation of RUN steps: default (namespaces; a user namespace
    /// without root) or none (no isolation: chroot as root, run on the host
    /// otherwise; for machines without user namespaces)
    #[arg(
        long,
        default_value = "default",
        value_name = "MODE",
        env = "BK_SANDBOX"
    )]
    pub sandbox: Sandbox,

    /// Do not use cache when building
    #[arg(long = "no-cache")]
    pub no_cache: bool,

    /// Do not cache the given stages
    #[arg(long = "no-cache-filter", value_delimiter = ',', value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,

    /// Always attempt to pull newer versions of base images
    #[arg(long)]
    pub pull: bool,

    /// Progress output
    #[arg(
        long,
        default_value = "auto",
        env = "BUILDKIT_PROGRESS",
        value_name = "MODE"
    )]
    pub progress: Progress,

    /// Write build result metadata to a file
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// Write the image ID to a file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Set metadata for an image (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// Add an annotation to the image ([TYPE[[PLATFORM]],...:]KEY=VALUE; TYPE manifest, manifest-descriptor, index, index-descriptor)
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,

    /// Suppress the build output and print the image ID on success
    #[arg(short, long)]
    pub quiet: bool,

    /// Check the Dockerfile without building
    #[arg(long)]
    pub check: bool,

    /// How RUN gets a writable root file system (auto|overlayfs|fuse-overlayfs|native)
    #[arg(
        long,
        default_value = "auto",
        env = "BK_SNAPSHOTTER",
        value_name = "NAME"
    )]
    pub snapshotter: Selection,
}

/// `bk build`'s request, every value validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOpts {
    pub context: String,
    pub file: Option<String>,
    pub tags: Vec<String>,
    pub target: Option<String>,
    pub build_args: Vec<(String, String)>,
    pub platforms: Vec<Platform>,
    pub outputs: Vec<Output>,
    pub insecure_registries: Vec<String>,
    pub cache_from: Vec<CacheSpec>,
    pub cache_to: Vec<CacheSpec>,
    pub secrets: Vec<Secret>,
    pub ssh: Vec<SshSpec>,
    pub build_contexts: Vec<(String, String)>,
    pub network: Network,
    pub allow: Vec<Entitlement>,
    pub sandbox: Sandbox,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    pub pull: bool,
    pub progress: Progress,
    pub metadata_file: Option<PathBuf>,
    pub iidfile: Option<PathBuf>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub quiet: bool,
    pub check: bool,
    pub snapshotter: Selection,
}

impl BuildOpts {
    /// Validates what clap could not: key/value flags, tags, and the
    /// shorthands (`--push`, `--load`) folded into outputs as buildx does.
    pub fn from_args(
        args: BuildArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<BuildOpts> {
        let mut build_args: Vec<(String, String)> = args
            .build_args
            .iter()
            .map(|a| build_opts::build_arg(a, &env))
            .filter_map(Result::transpose)
            .collect::<Result<_, _>>()?;
        // buildx passes SOURCE_DATE_EPOCH from the environment as a build
        // argument unless one is given, so that reproducible builds need
        // only the variable.
        const EPOCH: &str = "SOURCE_DATE_EPOCH";
        if !build_args.iter().any(|(k, _)| k == EPOCH) {
            if let Some(value) = env(EPOCH) {
                build_args.push((EPOCH.to_string(), value));
            }
        }
        let kv = |what, list: &[String]| -> anyhow::Result<Vec<(String, String)>> {
            Ok(list
                .iter()
                .map(|v| build_opts::key_value(what, v))
                .collect::<Result<_, _>>()?)
        };
        let tags = args
            .tags
            .iter()
            .map(|t| build_opts::tag(t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut outputs = args.outputs;
        if args.push {
            match outputs.iter_mut().find(|o| o.kind == OutputKind::Image) {
                Some(image) => {
                    image.attrs.insert("push".into(), "true".into());
                }
                None => outputs.push("type=registry".parse()?),
            }
        }
        if args.load {
            outputs.push("type=docker".parse()?);
        }
        // `docker build -t app .`: the image goes to the local store.
        if outputs.is_empty() && !tags.is_empty() {
            outputs.push("type=image".parse()?);
        }
        if outputs.len() > 1 {
            bail!("multiple outputs are not supported yet: give one --output (or --push / --load)");
        }
        if args.quiet && args.progress != Progress::Auto && args.progress != Progress::Quiet {
            bail!("--quiet cannot be combined with --progress other than auto or quiet");
        }
        Ok(BuildOpts {
            context: args.context,
            file: args.file,
            tags,
            target: args.target,
            build_args,
            platforms: args.platform,
            outputs,
            insecure_registries: args.insecure_registries,
            cache_from: args.cache_from,
            cache_to: args.cache_to,
            secrets: args.secrets,
            ssh: args.ssh,
            build_contexts: kv("build context", &args.build_contexts)?,
            network: args.network,
            allow: args.allow,
            sandbox: args.sandbox,
            no_cache: args.no_cache,
            no_cache_filter: args.no_cache_filter,
            pull: args.pull,
            progress: if args.quiet {
                Progress::Quiet
            } else {
                args.progress
            },
            metadata_file: args.metadata_file,
            iidfile: args.iidfile,
            labels: kv("label", &args.labels)?,
            annotations: {
                let pairs = kv("annotation", &args.annotations)?;
                // buildx parses them before building.
                for (key, _) in &pairs {
                    annotations::parse_flag(key)
                        .with_context(|| format!("invalid --annotation {key:?}"))?;
                }
                pairs
            },
            quiet: args.quiet,
            check: args.check,
            snapshotter: args.snapshotter,
        })
    }
}

/// A Dockerfile's text and the name errors should call it by.
pub struct DockerfileText {
    pub name: String,
    pub text: String,
}

impl DockerfileText {
    /// Reads `path`, or standard input for `-`.
    pub fn read(path: &str) -> anyhow::Result<DockerfileText> {
        if path == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("failed to read the Dockerfile from standard input")?;
            return Ok(DockerfileText {
                name: "Dockerfile".into(),
                text,
            });
        }
        let bytes =
            crate::util::fs::read(Path::new(path)).context("failed to read the Dockerfile")?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{path}: the Dockerfile is not valid UTF-8"))?;
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_string());
        Ok(DockerfileText { name, text })
    }

    /// Parses the text, turning an error into one that shows its lines.
    pub fn parse(&self) -> anyhow::Result<dockerfile::Ast> {
        dockerfile::parser::parse(&self.text).map_err(|e| self.source_error(&e))
    }

    /// Plans the stages (ARGs, FROMs, target, dependencies, image
    /// configs), turning an error into one that shows its lines. Base
    /// images' configs come from `resolver`.
    pub fn plan(
        &self,
        ast: &dockerfile::Ast,
        opts: &dockerfile::PlanOptions,
        resolver: &dyn dockerfile::BaseImageResolver,
    ) -> anyhow::Result<dockerfile::Plan> {
        dockerfile::plan(ast, opts, resolver).map_err(|e| self.source_error(&e))
    }

    /// Lowers a plan to the build graph, turning an error into one that
    /// shows its lines.
    pub fn lower(
        &self,
        plan: &dockerfile::Plan,
        opts: &dockerfile::LowerOptions,
    ) -> anyhow::Result<dockerfile::Lowered> {
        dockerfile::lower(plan, opts).map_err(|e| self.source_error(&e))
    }

    /// Prints the planner's findings as `WARNING: file:line: text`.
    pub fn print_plan_warnings(&self, plan: &dockerfile::Plan) {
        for warning in &plan.warnings {
            match warning.location {
                Some(at) => eprintln!(
                    "WARNING: {}:{}: {}",
                    self.name, at.start.line, warning.message
                ),
                None => eprintln!("WARNING: {}", warning.message),
            }
        }
    }

    /// Runs the Dockerfile checks (see [`dockerfile::lint`]) for a build
    /// planned with `opts` (`plan` when planning succeeded; `static_check`
    /// for `--check`, which resolved no base image); a malformed `check=`
    /// option is an error.
    pub fn lint(
        &self,
        ast: &dockerfile::Ast,
        opts: &dockerfile::PlanOptions,
        plan: Option<&dockerfile::Plan>,
        static_check: bool,
    ) -> anyhow::Result<dockerfile::lint::Report> {
        Ok(dockerfile::lint::check(ast, opts, plan, static_check)?)
    }

    /// The checks of a build: prints each finding, then fails when
    /// `error=true` asked findings to fail the build.
    pub fn check_build(
        &self,
        ast: &dockerfile::Ast,
        opts: &dockerfile::PlanOptions,
        plan: Option<&dockerfile::Plan>,
    ) -> anyhow::Result<()> {
        let report = self.lint(ast, opts, plan, false)?;
        self.print_findings(&report);
        match report.violation() {
            Some(violation) => bail!("{violation}"),
            None => Ok(()),
        }
    }

    /// Prints the parser's findings as `WARNING: Rule - file:line: text`
    /// (for `bk debug`, which runs no checks).
    pub fn print_warnings(&self, ast: &dockerfile::Ast) {
        for warning in &ast.warnings {
            eprintln!(
                "WARNING: {} - {}:{}: {}",
                warning.rule, self.name, warning.location.start.line, warning.message
            );
        }
    }

    /// Prints check findings as `WARNING: Rule - file:line: text`, then
    /// how many there were, as buildx sums them up after a build.
    pub fn print_findings(&self, report: &dockerfile::lint::Report) {
        for finding in &report.findings {
            eprintln!(
                "WARNING: {} - {}:{}: {}",
                finding.rule.name, self.name, finding.location.start.line, finding.message
            );
        }
        match report.findings.len() {
            0 => {}
            1 => eprintln!("1 warning found"),
            n => eprintln!("{n} warnings found"),
        }
    }

    /// Prints findings as `build --check` does, on standard output: a
    /// count, then each rule with its documentation address, the finding
    /// and the lines.
    pub fn print_check(&self, report: &dockerfile::lint::Report) {
        match report.findings.len() {
            0 => return,
            1 => println!("Check complete, 1 warning has been found!"),
            n => println!("Check complete, {n} warnings have been found!"),
        }
        for finding in &report.findings {
            println!("\nWARNING: {} - {}", finding.rule.name, finding.rule.url);
            println!("{}", finding.message);
            if let Some(snippet) =
                dockerfile::error::snippet(&finding.location, &self.name, &self.text)
            {
                println!("{}", crate::util::redact::text(&snippet));
            }
        }
    }

    /// Refuses a front end other than the built-in one (`# syntax=`,
    /// `BUILDKIT_SYNTAX`), pointing at the directive.
    pub fn check_syntax(
        &self,
        ast: &dockerfile::Ast,
        build_args: &[(String, String)],
    ) -> anyhow::Result<()> {
        dockerfile::syntax::check(ast.directives.syntax.as_ref(), build_args).map_err(|err| {
            match err.location {
                Some(at) => {
                    anyhow::Error::new(SourceError::at(at, &self.name, &self.text, err.to_string()))
                }
                None => anyhow::Error::new(err),
            }
        })
    }

    fn source_error(&self, err: &dockerfile::Error) -> anyhow::Error {
        anyhow::Error::new(SourceError::new(err, &self.name, &self.text))
    }
}

/// The planner's view of the request: build args, target, the first
/// requested platform (none: the host's, without forcing it on the image;
/// a multi-platform build plans each platform, see [`platforms::plan`]),
/// labels and named contexts; builds run on this host.
pub fn plan_options(
    opts: &BuildOpts,
    named_contexts: &dockerfile::NamedContexts,
) -> dockerfile::PlanOptions {
    dockerfile::PlanOptions {
        build_args: opts.build_args.clone(),
        target: opts.target.clone(),
        build_platform: Platform::host(),
        target_platform: opts.platforms.first().cloned(),
        labels: opts.labels.clone(),
        named_contexts: named_contexts.clone(),
    }
}

/// Where the Dockerfile is, given `-f` and the context: `-f` relative to
/// the working directory as buildx resolves it, else `Dockerfile` inside
/// the context.
pub fn dockerfile_path(file: Option<&str>, context: &str) -> anyhow::Result<String> {
    match (file, context) {
        (Some(file), _) => Ok(file.to_string()),
        (None, "-") => bail!("not supported yet: a build context tarball on standard input"),
        (None, ctx) if ctx.contains("://") || ctx.starts_with("git@") => {
            bail!("not supported yet: remote build contexts ({ctx})")
        }
        (None, ctx) => Ok(Path::new(ctx)
            .join("Dockerfile")
            .to_string_lossy()
            .into_owned()),
    }
}

/// The first flag this build asked for that bk cannot honour yet, named as
/// the user wrote it. Checked before anything is built, so a build never
/// runs for minutes only to drop what was asked of it at the end.
fn unsupported_flag(opts: &BuildOpts) -> Option<String> {
    for output in &opts.outputs {
        match output.kind {
            OutputKind::Local | OutputKind::Tar => {
                if let Some(key) = output.attrs.keys().find(|k| *k != "platform-split") {
                    return Some(format!(
                        "--output attribute {key}= (type={})",
                        output.kind.name()
                    ));
                }
            }
            OutputKind::Image if build_push::is_push(output) => {
                if let Some(what) = build_push::unsupported_attr(output) {
                    return Some(what);
                }
            }
            OutputKind::Oci | OutputKind::Docker | OutputKind::Image => {
                if let Some(what) = unsupported_image_attr(output) {
                    return Some(what);
                }
            }
            kind => return Some(format!("--output type={}", kind.name())),
        }
    }
    None
}

/// What an oci/docker output asks for that bk cannot do yet, if anything.
fn unsupported_image_attr(output: &Output) -> Option<String> {
    let kind = output.kind.name();
    // type=docker without dest= is `--load`: the local image store.
    if output.dest.is_none() && output.kind == OutputKind::Oci {
        return Some(format!("--output type={kind} without dest="));
    }
    for (key, value) in &output.attrs {
        let off = matches!(value.as_str(), "false" | "0");
        let ok = match key.as_str() {
            "name" | "compression" | "compression-level" | "force-compression"
            | "oci-mediatypes" | "rewrite-timestamp" => true,
            // Only reached unpushed (see unsupported_flag); the store is
            // always written.
            "push" | "store" | "unpack" => output.kind == OutputKind::Image,
            "buildinfo" => off,
            // A malformed annotation is refused with its reason when the
            // image is made.
            k => annotations::parse_attr(k).is_some(),
        };
        if !ok {
            return Some(format!("--output attribute {key}={value} (type={kind})"));
        }
    }
    None
}

pub fn run(args: BuildArgs, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let opts = BuildOpts::from_args(args, |k| std::env::var(k).ok())?;
    let root = store_root(root)?;
    // `-` as the context: standard input is a tarball or the Dockerfile.
    let mut inputs = build_stdin::inputs(&opts, &root)?;
    let dockerfile_path = inputs.dockerfile.clone();
    let dockerfile = match inputs.dockerfile_text.take() {
        Some(text) => DockerfileText {
            name: "Dockerfile".into(),
            text,
        },
        None => DockerfileText::read(&dockerfile_path)?,
    };
    let ast = dockerfile.parse()?;
    dockerfile.check_syntax(&ast, &opts.build_args)?;
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let contexts = build_context::parse(&opts.build_contexts, &cwd)?;
    if opts.check {
        // A static check: no registry is contacted, image bases plan with
        // empty configs. Semantic errors (unknown target, bad ARG
        // expansion, duplicate stage) fail here, after the findings.
        let plan_opts = plan_options(&opts, &contexts.named);
        let planned = dockerfile.plan(&ast, &plan_opts, &dockerfile::NoBaseImages);
        // Without --target every stage is checked, as buildx does.
        let report = dockerfile.lint(
            &ast,
            &plan_opts,
            planned.as_ref().ok(),
            opts.target.is_none(),
        )?;
        dockerfile.print_check(&report);
        let plan = planned?;
        dockerfile.print_plan_warnings(&plan);
        if let Some(violation) = report.violation() {
            println!();
            bail!("{violation}");
        }
        if report.findings.is_empty() {
            if plan.warnings.is_empty() {
                println!("Check complete, no warnings found.");
            }
            return Ok(ExitCode::SUCCESS);
        }
        // BuildKit's check result carries status 1 when there are
        // findings; buildx exits with it.
        return Ok(ExitCode::from(1));
    }
    if let Some(flag) = unsupported_flag(&opts) {
        bail!("not supported yet: {flag}");
    }
    if let Some(why) = platforms::refusal(&opts) {
        bail!("{why}");
    }
    // Secrets and agents are checked before anything is built, as buildx
    // does when it opens its session.
    let session = Arc::new(build_opts::session(&opts.secrets, &opts.ssh, |k| {
        std::env::var_os(k)
    })?);
    let content = ContentStore::open(&root)
        .with_context(|| format!("failed to open the content store at {}", root.display()))?;
    let registry =
        Arc::new(Registry::new(content.clone()).with_insecure(build_push::insecure_hosts(&opts)?));
    // Base images come from the local store first, as with Docker,
    // unless --pull asks for the registry's.
    let local = if opts.pull {
        None
    } else {
        Some(
            ImageStore::open(&root)
                .with_context(|| format!("failed to open the image store at {}", root.display()))?,
        )
    };
    let images = Arc::new(Images::new(registry.clone(), content, local));
    // Started before planning: the planner resolves base images (their
    // configs give ENV, WORKDIR, USER, ONBUILD) on it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the build's thread pool")?;
    let resolver = ImageResolver {
        images: images.clone(),
        runtime: runtime.handle().clone(),
        contexts: &contexts.named,
    };
    if let Some(Output {
        kind: OutputKind::Local,
        dest: Some(Dest::Stdout),
        ..
    }) = opts.outputs.first()
    {
        bail!("--output type=local needs a directory: dest=- is for type=tar");
    }
    // Semantic errors fail here too, before anything would be built:
    // once per requested platform. Every platform sees all contexts; each
    // use picks its platform's.
    let targets = platforms::plan(&dockerfile, &ast, &opts, &contexts.named, &resolver)?;
    let (definition, roots) = platforms::combine(&targets);

    let store = Store::open_with(&root, opts.snapshotter)
        .with_context(|| format!("failed to open the store at {}", root.display()))?;
    // Resolved now (probed once per store) so that a fallback is said
    // up front, on one line each.
    for note in store.backend_notes() {
        eprintln!("note: {note}");
    }
    let build_session = super::cache::start_build(&root)?;
    let cache = build_session.db.clone();
    let context_dir = Path::new(&inputs.context);
    let from_file = (dockerfile_path != "-").then(|| Path::new(&dockerfile_path));
    let dockerignore = inputs.dockerignore(from_file)?;
    let context = LocalContext::open(context_dir, dockerignore)
        .with_context(|| format!("failed to open the build context {}", inputs.context))?;
    let mut named_contexts = std::collections::HashMap::new();
    for (name, dir) in &contexts.local {
        // A named directory is filtered by its own `.dockerignore`.
        let ignore = Dockerignore::load(dir, None)
            .with_context(|| format!("failed to read the ignore file of build context {name}"))?;
        let local = LocalContext::open(dir, ignore)
            .with_context(|| format!("failed to open build context {name} ({})", dir.display()))?;
        named_contexts.insert(name.clone(), Arc::new(local));
    }

    // Going on with the display that showed a remote context's fetch.
    let (sender, progress) = match inputs.progress.take() {
        Some(display) => display,
        None => progress::start(opts.progress.into(), Box::new(std::io::stderr()))?,
    };
    let ctx = SolveContext {
        store: store.clone(),
        cache: cache.clone(),
        context: Some(std::sync::Arc::new(context)),
        named_contexts,
        // Lowering already marked the vertices --no-cache and
        // --no-cache-filter select; this covers sources too.
        no_cache: opts.no_cache,
        progress: sender,
        parallelism: 0,
        images: Some(images),
        imported: cache::import(&opts, &registry, &runtime),
        session,
        entitlements: solver::ops::exec::Entitlements {
            // As in buildx, asking for the host network on the command
            // line grants it.
            network_host: opts.allow.contains(&Entitlement::NetworkHost)
                || opts.network == Network::Host,
            security_insecure: opts.allow.contains(&Entitlement::SecurityInsecure),
        },
    };
    let solved = runtime.block_on(solver::solve_roots(&definition, &roots, &ctx));
    // A failed build may leave work running. Async tasks (downloads) are
    // dropped here, which removes their temporary files; blocking work (a
    // copy cannot be interrupted) gets a moment, then is abandoned: its
    // output is discarded and the next start cleans what it leaves.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    drop(ctx);
    // Finish the progress display before anything else is printed.
    let summary = progress.finish();
    let results = solved.map_err(|err| build_error(err, &dockerfile))?;
    if let Err(err) = summary {
        eprintln!("WARNING: {:#}", anyhow::Error::new(err));
    }
    let image_id = match (targets.as_slice(), results.as_slice()) {
        ([target], [result]) if !platforms::split_single(&opts) => {
            let image = ImageExport {
                root: &root,
                image: &target.lowered.image,
                epoch: target.plan.epoch,
                registry: &registry,
                cache: &cache,
            };
            export(&opts, &store, result, &image)?
        }
        _ => {
            let shared = platforms::Shared {
                root: &root,
                registry: &registry,
                cache: &cache,
            };
            platforms::export(&opts, &store, &targets, &results, &shared)?
        }
    };
    cache::export(&opts, &store, &results, &root, &cache, &registry)?;
    // `docker build -q`: the image ID, unless stdout carries the output.
    let stdout_taken = opts
        .outputs
        .iter()
        .any(|o| matches!(o.dest, Some(Dest::Stdout)));
    if let Some(path) = &opts.iidfile {
        // As buildx: the config digest, or nothing when no image was made.
        crate::util::fs::write_atomic(path, image_id.as_deref().unwrap_or_default().as_bytes())
            .context("failed to write the image ID file")?;
    }
    if let (true, false, Some(id)) = (opts.quiet, stdout_taken, image_id) {
        println!("{id}");
    }
    super::cache::after_build(&root, &store, &build_session);
    Ok(ExitCode::SUCCESS)
}

/// Base-image configs for the planner, from the local image store or
/// the registry. A failure gives `None` (an empty config) here; the same
/// resolution, remembered per build, then fails the image's vertex in
/// the solver, where the error gets the FROM line's snippet.
struct ImageResolver<'a> {
    images: Arc<Images>,
    runtime: tokio::runtime::Handle,
    /// `--build-context`s, every platform's: OCI layouts have configs.
    contexts: &'a dockerfile::NamedContexts,
}

impl dockerfile::BaseImageResolver for ImageResolver<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Option<crate::image::Image> {
        let reference = solver::ops::image::reference(reference).ok()?;
        self.runtime
            .block_on(self.images.resolve(&reference, platform))
            .ok()
            .map(|found| found.resolved.config.clone())
    }

    /// `key` is the context the stage's platform chose (`NAME` or
    /// `NAME::PLATFORM`); its image is picked from the layout's index for
    /// that same platform, the stage's.
    fn resolve_context(&self, key: &str, platform: &Platform) -> Option<crate::image::Image> {
        let dockerfile::ContextSource::OciLayout(identifier) = self.contexts.by_key(key)? else {
            return None;
        };
        self.runtime
            .block_on(self.images.resolve_layout(identifier, platform))
            .ok()
            .map(|found| found.resolved.config.clone())
    }
}

/// The lowering options the flags ask for.
fn lower_options(opts: &BuildOpts) -> dockerfile::LowerOptions {
    dockerfile::LowerOptions {
        no_cache: opts.no_cache,
        no_cache_filter: opts.no_cache_filter.clone(),
        network: match opts.network {
            Network::Default => NetMode::Sandbox,
            Network::None => NetMode::None,
            Network::Host => NetMode::Host,
        },
        ..dockerfile::LowerOptions::default()
    }
}

/// `--root` / `BK_ROOT`, else `$XDG_DATA_HOME/bk` (`~/.local/share/bk`).
pub(super) fn store_root(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(root) = flag {
        return Ok(root.to_path_buf());
    }
    directories::BaseDirs::new()
        .map(|dirs| dirs.data_dir().join("bk"))
        .context("cannot find a home directory for the store: set --root or BK_ROOT")
}

/// A failed build as the user should see it: the failing step's
/// Dockerfile lines marked, then the error and its causes.
fn build_error(err: SolveError, dockerfile: &DockerfileText) -> anyhow::Error {
    let message = error_chain(&err);
    match err.location() {
        Some(lines) => anyhow::Error::new(SourceError::at(
            dockerfile::Range::lines(lines.start, lines.end),
            &dockerfile.name,
            &dockerfile.text,
            message,
        )),
        None => anyhow::Error::new(err),
    }
}

/// An error and its causes on one line, as anyhow's `{:#}` prints them.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Writes the result where `--output` says, or warns that it stays in the
/// cache as buildx does when no output is given. Returns the image ID
/// (`sha256:` of the config) when the output is an image.
fn export(
    opts: &BuildOpts,
    store: &Store,
    result: &solver::SolveResult,
    image: &ImageExport<'_>,
) -> anyhow::Result<Option<String>> {
    let Some(output) = opts.outputs.first() else {
        eprintln!(
            "WARNING: No output specified. Build result will only remain in the build cache. \
             To export it, use --output type=local,dest=DIR or --output type=tar,dest=FILE"
        );
        return write_metadata(opts, None);
    };
    if build_push::is_push(output) {
        let metadata = build_push::export(opts, output, store, result, image)?;
        return write_metadata(opts, Some(metadata));
    }
    match (output.kind, &output.dest) {
        (OutputKind::Image, _) | (OutputKind::Docker, None) => {
            let metadata = local_image::store(opts, output, store, result, image)?;
            return write_metadata(opts, Some(metadata));
        }
        (OutputKind::Oci | OutputKind::Docker, _) => {
            let metadata = export_image(opts, output, store, result, image)?;
            return write_metadata(opts, Some(metadata));
        }
        _ => {}
    }
    // Scratch is exported as an empty directory: an uncommitted snapshot,
    // removed again when `empty` is dropped.
    let empty;
    let dir = match result.dir(store) {
        Some(dir) => dir,
        None => {
            empty = store
                .prepare(None)
                .context("failed to prepare an empty result")?;
            empty.path().to_path_buf()
        }
    };
    match (output.kind, &output.dest) {
        (OutputKind::Local, Some(Dest::Path(dest))) => {
            exporter::local::export(&dir, dest)
                .with_context(|| format!("failed to export to {}", dest.display()))?;
        }
        (OutputKind::Tar, Some(Dest::Path(dest))) => {
            exporter::tar::export(&dir, exporter::tar::Dest::Path(dest.clone()))
                .with_context(|| format!("failed to export to {}", dest.display()))?;
        }
        (OutputKind::Tar, Some(Dest::Stdout)) => {
            exporter::tar::export(&dir, exporter::tar::Dest::Stdout)
                .context("failed to write the tar archive to standard output")?;
        }
        (kind, _) => bail!("not supported yet: --output type={}", kind.name()),
    }
    write_metadata(opts, None)
}

/// `--metadata-file`: an image's digests (`{}` for other outputs),
/// written atomically. Returns the image ID when an image was made.
fn write_metadata(
    opts: &BuildOpts,
    metadata: Option<exporter::metadata::ImageMetadata>,
) -> anyhow::Result<Option<String>> {
    if let Some(path) = &opts.metadata_file {
        exporter::metadata::write(path, metadata.as_ref())?;
    }
    Ok(metadata.map(|m| m.image_id().to_string()))
}

/// What an image export needs besides the solve result.
pub(super) struct ImageExport<'a> {
    /// The store root; blobs go to `<root>/content`.
    pub root: &'a Path,
    /// The target stage's config.
    pub image: &'a crate::image::Image,
    /// SOURCE_DATE_EPOCH, for the image's creation time.
    pub epoch: Option<i64>,
    /// The build's registry client (insecure hosts, credentials, where
    /// pulled blobs came from).
    pub registry: &'a Registry,
    /// Where layer blobs made from snapshots are remembered.
    pub cache: &'a crate::cache::CacheDb,
}

/// The image options an oci/docker output's attributes and the flags
/// ask for (attributes already checked by [`unsupported_image_attr`]).
pub(super) fn image_options(
    opts: &BuildOpts,
    output: &Output,
    epoch: Option<i64>,
) -> anyhow::Result<image_exp::ImageOptions> {
    let attrs = &output.attrs;
    let flag = |key: &str, default: bool| {
        attrs
            .get(key)
            .map_or(default, |v| !matches!(v.as_str(), "false" | "0"))
    };
    let level = attrs
        .get("compression-level")
        .map(|l| l.parse::<u32>())
        .transpose()
        .context("invalid compression-level")?;
    let compression = exporter::layer::Compression::from_attrs(
        attrs.get("compression").map(String::as_str),
        level,
    )
    .context("invalid compression")?;
    // The docker exporter defaults to Docker media types, as BuildKit's;
    // oci and image to OCI ones.
    let oci_mediatypes = flag("oci-mediatypes", output.kind != OutputKind::Docker);
    let names: Vec<String> = match attrs.get("name") {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
        None => opts.tags.clone(),
    };
    let names = names
        .iter()
        .map(|n| {
            crate::image::Reference::parse_normalized(n)
                .map(crate::image::Reference::with_default_tag)
                .with_context(|| format!("invalid image name {n:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let set =
        annotations::Annotations::parse(attrs, &opts.annotations).context("invalid annotation")?;
    // A multi-platform build's images take their own annotations when
    // `platforms::export_index` makes them; a lone image only those for
    // every platform, as BuildKit.
    let built = platforms::is_multi(opts).then(|| platforms::built(opts));
    set.check(built.as_deref(), oci_mediatypes)?;
    let at = |level| set.at(level, None);
    let created = match epoch {
        Some(secs) => crate::dockerfile::config_values::rfc3339_utc(secs),
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?;
            crate::dockerfile::config_values::rfc3339_utc(
                i64::try_from(now.as_secs()).context("the system clock is out of range")?,
            )
        }
    };
    // BuildKit warns and writes the layers as they are when no epoch is
    // known.
    let clamp_mtime = match (flag("rewrite-timestamp", false), epoch) {
        (true, None) => {
            eprintln!(
                "WARNING: rewrite-timestamp is specified, but no SOURCE_DATE_EPOCH was found"
            );
            None
        }
        (rewrite, epoch) => epoch.filter(|_| rewrite),
    };
    Ok(image_exp::ImageOptions {
        compression,
        oci_mediatypes,
        names,
        manifest_annotations: at(annotations::Level::Manifest),
        descriptor_annotations: at(annotations::Level::ManifestDescriptor),
        index_annotations: at(annotations::Level::Index),
        index_descriptor_annotations: at(annotations::Level::IndexDescriptor),
        created,
        clamp_mtime,
        force_compression: flag("force-compression", false),
    })
}

/// Where an oci/docker archive goes (`dest=`), and how to name it in
/// an error.
pub(super) fn archive_dest(output: &Output) -> anyhow::Result<(image_exp::Dest, String)> {
    Ok(match &output.dest {
        Some(Dest::Path(p)) => (image_exp::Dest::Path(p.clone()), p.display().to_string()),
        Some(Dest::Stdout) => (image_exp::Dest::Stdout, "standard output".to_string()),
        None => bail!(
            "not supported yet: --output type={} without dest=",
            output.kind.name()
        ),
    })
}

/// `--output type=oci|docker`: layers from the solve's main chain (one
/// layer of the whole root when the chain is unknown; a base image's
/// layers as they are), stored in the content store, then written as one
/// archive. Returns the image ID.
fn export_image(
    opts: &BuildOpts,
    output: &Output,
    store: &Store,
    result: &solver::SolveResult,
    image: &ImageExport<'_>,
) -> anyhow::Result<exporter::metadata::ImageMetadata> {
    let options = image_options(opts, output, image.epoch)?;
    let (content, committed) = local_image::make_image(opts, store, result, image, &options)?;
    let format = match output.kind {
        OutputKind::Docker => image_exp::Format::Docker,
        _ => image_exp::Format::Oci,
    };
    let (dest, shown) = archive_dest(output)?;
    image_exp::write_archive(
        &content,
        image_exp::Archived::Image(&committed),
        format,
        &options,
        &dest,
    )
    .with_context(|| format!("failed to export the image to {shown}"))?;
    let names: Vec<String> = options.names.iter().map(ToString::to_string).collect();
    Ok(exporter::metadata::ImageMetadata::new(
        &committed.manifest,
        &committed.config,
        &names,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn opts(argv: &[&str]) -> anyhow::Result<BuildOpts> {
        let mut full = vec!["bk", "build"];
        full.extend_from_slice(argv);
        let cli = crate::cli::Cli::try_parse_from(full)?;
        match cli.command {
            crate::cli::Command::Build(args) => {
                BuildOpts::from_args(*args, |k| (k == "FROM_ENV").then(|| "yes".into()))
            }
            _ => unreachable!("parsed as build"),
        }
    }

    #[test]
    fn unsupported_flags_are_named_before_building() {
        let flag = |argv: &[&str]| unsupported_flag(&opts(argv).unwrap());
        assert_eq!(flag(&["-o", "out", "."]), None);
        assert_eq!(flag(&["-o", "type=tar,dest=-", "."]), None);
        assert_eq!(flag(&["."]), None);
        assert_eq!(flag(&["-t", "a", "--push", "."]), None);
        assert_eq!(flag(&["--metadata-file", "m.json", "-o", "x", "."]), None);
        assert_eq!(flag(&["--load", "."]), None);
        assert_eq!(flag(&["-o", "type=image,name=a,push=false", "."]), None);
        // Image archives are supported, except what is not built yet.
        assert_eq!(flag(&["-o", "type=oci,dest=x", "."]), None);
        assert_eq!(
            flag(&["-o", "type=docker,dest=-,name=a,compression=zstd", "."]),
            None
        );
        assert_eq!(
            flag(&[
                "-o",
                "type=oci,dest=x,annotation.k=v,oci-mediatypes=true",
                "."
            ]),
            None
        );
        assert!(flag(&["-o", "type=oci", "."]).unwrap().contains("dest="));
        assert_eq!(
            flag(&["-o", "type=oci,dest=x,annotation-index.k=v", "."]),
            None
        );
        assert_eq!(
            flag(&[
                "-o",
                "type=oci,dest=x,annotation-manifest[linux/amd64].k=v,annotation[linux/arm64].k=v",
                "."
            ]),
            None
        );
        for attr in ["buildinfo-attrs=true", "annotation-[x].k=v"] {
            let spec = format!("type=oci,dest=x,{attr}");
            let got = flag(&["-o", &spec, "."]).unwrap_or_default();
            assert!(
                got.contains(attr.split('=').next().unwrap()),
                "{attr}: {got}"
            );
        }
        assert!(
            flag(&["-o", "type=local,dest=x,rewrite-timestamp=true", "."])
                .unwrap()
                .contains("rewrite-timestamp")
        );
        assert_eq!(flag(&["--platform", "linux/amd64,linux/arm64", "."]), None);
        assert_eq!(
            flag(&["-o", "type=local,dest=x,platform-split=false", "."]),
            None
        );
        assert_eq!(flag(&["--build-context", "x=/y", "."]), None);
        assert_eq!(flag(&["--platform", "linux/arm64", "."]), None);
        assert_eq!(flag(&["--cache-from", "type=local,src=/c", "."]), None);
        assert_eq!(flag(&["--cache-to", "type=inline", "."]), None);
    }

    #[test]
    fn output_flag() {
        let o = opts(&["--output", "type=local,dest=out", "."]).unwrap();
        assert_eq!(o.outputs[0].kind, OutputKind::Local);
        assert!(opts(&["--output", "type=nope", "."]).is_err());
    }

    #[test]
    fn push_flag_folds_into_image_output() {
        let o = opts(&["-t", "a", "--push", "."]).unwrap();
        assert_eq!(o.outputs.len(), 1);
        assert_eq!(o.outputs[0].attrs["push"], "true");
        let o = opts(&["-o", "type=image,name=a", "--push", "."]).unwrap();
        assert_eq!(o.outputs.len(), 1);
        assert_eq!(o.outputs[0].attrs["push"], "true");
    }

    #[test]
    fn tag_flag_alone_stores_the_image_locally() {
        let o = opts(&["-t", "a", "."]).unwrap();
        assert_eq!(o.outputs.len(), 1);
        assert_eq!(o.outputs[0].kind, OutputKind::Image);
        assert!(o.outputs[0].attrs.is_empty());
        let o = opts(&["-t", "a", "-o", "out", "."]).unwrap();
        assert_eq!(o.outputs.len(), 1);
        assert_eq!(o.outputs[0].kind, OutputKind::Local);
        let o = opts(&["--load", "."]).unwrap();
        assert_eq!(o.outputs[0].kind, OutputKind::Docker);
        assert_eq!(o.outputs[0].dest, None);
        assert!(opts(&["."]).unwrap().outputs.is_empty());
    }

    #[test]
    fn platform_flag() {
        let o = opts(&["--platform", "linux/amd64,linux/arm64", "."]).unwrap();
        assert_eq!(o.platforms.len(), 2);
        assert!(opts(&["--platform", "linux/z80", "."]).is_err());
    }

    #[test]
    fn build_arg_and_tag_flags() {
        let o = opts(&[
            "--build-arg",
            "A=1",
            "--build-arg",
            "FROM_ENV",
            "--build-arg",
            "GONE",
            ".",
        ])
        .unwrap();
        assert_eq!(
            o.build_args,
            vec![("A".into(), "1".into()), ("FROM_ENV".into(), "yes".into())]
        );
        assert!(opts(&["-t", "Bad", "."]).is_err());
    }

    #[test]
    fn other_flags() {
        let o = opts(&[
            "--secret",
            "id=s,src=/f",
            "--ssh",
            "default",
            "--network",
            "none",
            "--progress",
            "plain",
            "--cache-from",
            "type=local,src=/c",
            "--cache-to",
            "type=inline",
            "--label",
            "a=b",
            "--build-context",
            "x=docker-image://alpine",
            "--no-cache-filter",
            "a,b",
            ".",
        ])
        .unwrap();
        assert_eq!(o.network, Network::None);
        assert_eq!(o.progress, Progress::Plain);
        let o2 = opts(&[
            "--allow",
            "security.insecure,network.host",
            "--sandbox",
            "none",
            ".",
        ])
        .unwrap();
        assert_eq!(
            o2.allow,
            vec![Entitlement::SecurityInsecure, Entitlement::NetworkHost]
        );
        assert_eq!(o2.sandbox, Sandbox::None);
        assert!(opts(&["--allow", "device", "."]).is_err());
        assert_eq!(o.no_cache_filter, vec!["a", "b"]);
        assert_eq!(
            o.build_contexts,
            vec![("x".into(), "docker-image://alpine".into())]
        );
        assert!(opts(&["--network", "bridge", "."]).is_err());
        assert!(opts(&["--label", "novalue", "."]).is_err());
        assert!(opts(&["-q", "--progress", "plain", "."]).is_err());
        assert!(opts(&["-o", "a", "-o", "b", "."]).is_err());
    }

    #[test]
    fn snapshotter_flag() {
        use crate::snapshot::Backend;
        assert_eq!(opts(&["."]).unwrap().snapshotter, Selection::Auto);
        let o = opts(&["--snapshotter", "fuse-overlayfs", "."]).unwrap();
        assert_eq!(o.snapshotter, Selection::Only(Backend::FuseOverlay));
        let o = opts(&["--snapshotter", "native", "."]).unwrap();
        assert_eq!(o.snapshotter, Selection::Only(Backend::Native));
        let err = opts(&["--snapshotter", "zfs", "."]).unwrap_err();
        assert!(format!("{err:#}").contains("zfs"), "{err:#}");
    }
}
