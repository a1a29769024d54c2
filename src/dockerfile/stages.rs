//! The semantic layer of the frontend: syntax tree + build options → a
//! [`Plan`] of stages, everything BuildKit's `dockerfile2llb` decides before
//! it emits LLB. It splits instructions into stages (with the global ARGs
//! before the first FROM), evaluates ARGs and FROM lines, picks the target,
//! links stages through FROM / `COPY --from` / `RUN --mount=from=`, keeps
//! only the stages the target needs, runs base images' ONBUILD triggers,
//! and evaluates each needed stage's instructions into image configs,
//! history and per-step environments (see `dispatch`).
//!
//! Pure functions: base image configs come from a caller-supplied
//! [`BaseImageResolver`]; nothing here reads files, talks to registries or
//! runs anything. It must never import the solver, snapshotter, runner or
//! rootless layers.

use std::collections::{BTreeMap, BTreeSet};

use super::args::{
    default_args, eval_meta_args, unused_build_args_warning, BuildArgs, MetaArg, MetaArgValue,
    ProxyEnv,
};
use super::config_values::go_atoi;
use super::dispatch::{DispatchContext, StageState, StepSources};
use super::error::{Error, ErrorKind, Result};
use super::instructions::{self, Instruction};
use super::location::Range;
use super::named_context::{ContextSource, NamedContexts};
use super::node::Ast;
use super::shell::{EnvGetter, EnvList, Lex};
use super::stage_error::StageError;
use super::suggest::suggest;
use crate::image::reference::Reference;
use crate::image::{Image, Platform};

pub use super::dispatch::{Action, CopyAction, InlineScript, RunAction, Source, Step};

/// The base of `FROM scratch`.
const SCRATCH: &str = "scratch";
/// Names that mean something else in FROM/`--from` and cannot name stages.
const RESERVED_NAMES: [&str; 2] = ["scratch", "context"];

/// What the caller asks for, besides the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--build-arg` pairs; a repeated key keeps its last value.
    pub build_args: Vec<(String, String)>,
    /// `--target`, matched case-insensitively; the last stage when `None`.
    pub target: Option<String>,
    /// Where RUN executes (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// What the image is for (`TARGETPLATFORM`); `None` means "not asked
    /// for": the build platform, and the image keeps its base's platform.
    pub target_platform: Option<Platform>,
    /// `--label` pairs added to the target's config.
    pub labels: Vec<(String, String)>,
    /// `--build-context`s: names that override stages and images, plain
    /// and platform-scoped (each use picks by its platform).
    pub named_contexts: NamedContexts,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            build_args: Vec::new(),
            target: None,
            build_platform: Platform::host(),
            target_platform: None,
            labels: Vec::new(),
            named_contexts: NamedContexts::default(),
        }
    }
}

/// Supplies base images' configs. Pulling comes later; a resolver that
/// knows nothing returns `None` and the stage starts from an empty config.
pub trait BaseImageResolver {
    /// The config of `reference` (normalised, e.g.
    /// `docker.io/library/alpine:3.20`) for `platform`.
    fn resolve(&self, reference: &str, platform: &Platform) -> Option<Image>;

    /// The config of the named context `key` (`--build-context`, by the
    /// key a stage's FROM chose: `NAME` or `NAME::PLATFORM`) for
    /// `platform`, the stage's, for contexts that have one (OCI layouts);
    /// `None` otherwise.
    fn resolve_context(&self, _key: &str, _platform: &Platform) -> Option<Image> {
        None
    }
}

impl<F: Fn(&str, &Platform) -> Option<Image>> BaseImageResolver for F {
    fn resolve(&self, reference: &str, platform: &Platform) -> Option<Image> {
        self(reference, platform)
    }
}

/// A resolver that knows no images.
pub struct NoBaseImages;

impl BaseImageResolver for NoBaseImages {
    fn resolve(&self, _: &str, _: &Platform) -> Option<Image> {
        None
    }
}

/// What a stage builds on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image, as a normalised reference.
    Image(String),
    /// A named build context that is not an image or a stage (a local
    /// directory, an OCI layout), by the key the stage's platform chose
    /// (`NAME`, or `NAME::PLATFORM` for a platform-scoped one; see
    /// [`NamedContexts::by_key`]).
    Context(String),
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// FROM's image or stage after ARG expansion, as written.
    pub base_name: String,
    pub base: Base,
    pub platform: Platform,
    /// FROM's lines.
    pub location: Range,
    /// Stages and images this one needs besides its base, in first-use
    /// order (`COPY --from`, `RUN --mount=from=`, ONBUILD triggers).
    pub deps: Vec<Source>,
    /// The target depends on it; only such stages are evaluated.
    pub needed: bool,
    /// The evaluated instructions, ONBUILD triggers first; empty when not
    /// needed.
    pub steps: Vec<Step>,
    /// The config the stage ends with (default when not needed).
    pub image: Image,
    /// The resolved config of the base image, unchanged (with its
    /// `created`), for image bases.
    pub base_image: Option<Image>,
}

impl Stage {
    /// The name BuildKit shows: the `AS` name or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// A non-fatal finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanWarning {
    pub message: String,
    pub location: Option<Range>,
}

/// The outcome of planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every stage in file order.
    pub stages: Vec<Stage>,
    /// Index of the stage to build.
    pub target: usize,
    /// The environment of FROM lines: platform defaults and global ARGs.
    pub global_args: EnvList,
    /// The global ARGs as evaluated.
    pub meta_args: Vec<MetaArgValue>,
    /// Proxy settings from build args, for every RUN.
    pub proxy: Option<ProxyEnv>,
    /// SOURCE_DATE_EPOCH in seconds, when given as a number.
    pub epoch: Option<i64>,
    pub warnings: Vec<PlanWarning>,
    /// The platform asked for (the build platform when none was): images
    /// named by `COPY --from` and `RUN --mount=from=` are pulled for it.
    pub target_platform: Platform,
    /// The Dockerfile's escape character, for expanding instruction text
    /// into progress names later.
    pub escape: char,
    /// The `--build-context`s, every platform's, for lowering
    /// `Base::Context` and `Source::Context` by key.
    pub named_contexts: NamedContexts,
}

impl Plan {
    pub fn target_stage(&self) -> &Stage {
        &self.stages[self.target]
    }
}

/// A stage while planning: its FROM and commands, then what they resolve
/// to.
struct Draft {
    from: instructions::From,
    commands: Vec<Command>,
    base: Base,
    platform: Option<Platform>,
    /// The base's ONBUILD triggers were turned into commands.
    triggers_done: bool,
    base_image: Option<Image>,
    resolved: bool,
}

struct Command {
    instruction: Instruction,
    onbuild: bool,
    /// `COPY --from`.
    copy_from: Option<Source>,
    /// RUN, per mount.
    mounts: Vec<Option<Source>>,
}

impl Command {
    fn sources(&self) -> impl Iterator<Item = &Source> {
        self.copy_from.iter().chain(self.mounts.iter().flatten())
    }
}

/// Plans the build of `ast`: see the module documentation.
pub fn plan(ast: &Ast, opts: &PlanOptions, resolver: &dyn BaseImageResolver) -> Result<Plan> {
    let (meta_cmds, mut drafts) = split(ast)?;
    let Some(last) = drafts.last() else {
        return Err(Error::unlocated(StageError::NoStages));
    };

    let mut build_args = BuildArgs::new(&opts.build_args);
    let build_platform = opts.build_platform.clone();
    let target_platform = opts
        .target_platform
        .clone()
        .unwrap_or_else(|| build_platform.clone());
    let target_name = match &opts.target {
        Some(t) => t.clone(),
        None => last.from.stage_name.clone().unwrap_or_default(),
    };
    let lex = Lex::new(ast.escape);

    let defaults = default_args(&build_platform, &target_platform, &target_name, &build_args);
    let metas: Vec<MetaArg> = meta_cmds
        .iter()
        .flat_map(|cmd| {
            cmd.args.iter().map(|a| MetaArg {
                key: a.key.clone(),
                default: a.value.clone(),
                location: cmd.meta.location,
            })
        })
        .collect();
    let (mut globals, meta_args) = eval_meta_args(defaults, &lex, &metas, &build_args)?;
    let mut declared: BTreeSet<String> = metas.iter().map(|m| m.key.clone()).collect();
    let mut warnings = Vec::new();
    let epoch = source_date_epoch(&mut build_args, &mut globals, &drafts, &mut warnings)?;

    let contexts = &opts.named_contexts;
    resolve_froms(&mut drafts, &lex, &globals, contexts, &target_platform)?;
    let target = find_target(&drafts, opts.target.as_deref())?;
    link_commands(&mut drafts, &lex, contexts, &target_platform)?;
    check_cycles(&drafts)?;
    validate_references(&mut drafts)?;
    let needed = resolve_needed(
        &mut drafts,
        target,
        &target_platform,
        resolver,
        &lex,
        contexts,
    )?;

    // Evaluate the needed stages in file order; a stage can only use
    // stages evaluated before it.
    let ctx = DispatchContext {
        lex: &lex,
        globals: &globals,
        build_args: &build_args,
        epoch,
    };
    let mut states: Vec<Option<StageState>> = vec![None; drafts.len()];
    let mut stages = Vec::with_capacity(drafts.len());
    for (i, draft) in drafts.iter().enumerate() {
        let mut stage = Stage {
            index: i,
            name: draft.from.stage_name.clone(),
            base_name: draft.from.base_name.clone(),
            base: draft.base.clone(),
            platform: draft
                .platform
                .clone()
                .unwrap_or_else(|| target_platform.clone()),
            location: draft.from.meta.location,
            deps: dedup(draft.commands.iter().flat_map(Command::sources).cloned()),
            needed: needed[i],
            steps: Vec::new(),
            image: Image::default(),
            base_image: draft.base_image.clone(),
        };
        if needed[i] {
            let mut state = initial_state(draft, &states, &target_platform);
            let name = stage.display_name();
            for cmd in &draft.commands {
                let ready = |s: &Source| match s {
                    Source::Stage(j) => (s.clone(), states[*j].is_some()),
                    Source::Image(_) | Source::Context(_) => (s.clone(), true),
                };
                let sources = StepSources {
                    copy_from: cmd.copy_from.as_ref().map(ready),
                    mounts: cmd.mounts.iter().map(|m| m.as_ref().map(ready)).collect(),
                };
                let step = state
                    .dispatch(cmd.instruction.clone(), cmd.onbuild, &sources, &name, &ctx)
                    .map_err(|e| e.with_location(stage.location))?;
                if let Instruction::Arg(arg) = &step.instruction {
                    declared.extend(arg.args.iter().map(|a| a.key.clone()));
                }
                stage.steps.push(step);
            }
            stage.platform = state.platform.clone();
            stage.image = state.image.clone();
            states[i] = Some(state);
        }
        stages.push(stage);
    }

    finalize_target(&mut stages[target].image, opts, &target_platform);
    if let Some(message) = unused_build_args_warning(&build_args, &declared) {
        warnings.push(PlanWarning {
            message,
            location: None,
        });
    }
    Ok(Plan {
        stages,
        target,
        global_args: globals,
        meta_args,
        proxy: ProxyEnv::from_build_args(&build_args),
        epoch,
        warnings,
        target_platform,
        escape: ast.escape,
        named_contexts: opts.named_contexts.clone(),
    })
}

/// Types every instruction and groups them: ARGs before the first FROM
/// are global, everything else belongs to the FROM above it.
fn split(ast: &Ast) -> Result<(Vec<instructions::Arg>, Vec<Draft>)> {
    let mut metas = Vec::new();
    let mut drafts: Vec<Draft> = Vec::new();
    for node in &ast.children {
        let instruction = instructions::parse_instruction(node)?;
        match instruction {
            Instruction::Arg(arg) if drafts.is_empty() => metas.push(arg),
            Instruction::From(from) => {
                if let Some(name) = &from.stage_name {
                    if RESERVED_NAMES.contains(&name.as_str()) {
                        return Err(Error::new(
                            StageError::ReservedName(name.clone()),
                            from.meta.location,
                        ));
                    }
                    if drafts
                        .iter()
                        .any(|d| d.from.stage_name.as_deref() == Some(name))
                    {
                        return Err(Error::new(
                            StageError::DuplicateName(name.clone()),
                            from.meta.location,
                        ));
                    }
                }
                drafts.push(Draft {
                    from,
                    commands: Vec::new(),
                    base: Base::Scratch,
                    platform: None,
                    triggers_done: false,
                    base_image: None,
                    resolved: false,
                });
            }
            other => {
                let Some(draft) = drafts.last_mut() else {
                    return Err(Error::new(StageError::NoStage, other.location()));
                };
                draft.commands.push(Command {
                    instruction: other,
                    onbuild: false,
                    copy_from: None,
                    mounts: Vec::new(),
                });
            }
        }
    }
    Ok((metas, drafts))
}

/// SOURCE_DATE_EPOCH from build args or global ARGs: a number becomes the
/// image's and its history's timestamp (and, with `rewrite-timestamp`,
/// the clamp of new layers' mtimes) and is normalised; `context` is
/// unset for a local context, as in BuildKit; a stage's time (a remote
/// ADD's) is dropped with a warning.
fn source_date_epoch(
    build_args: &mut BuildArgs,
    globals: &mut EnvList,
    drafts: &[Draft],
    warnings: &mut Vec<PlanWarning>,
) -> Result<Option<i64>> {
    const KEY: &str = "SOURCE_DATE_EPOCH";
    let value = match build_args.get(KEY) {
        Some(v) => v.to_string(),
        None => match globals.get(KEY) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => return Ok(None),
        },
    };
    let epoch = if value.is_empty() {
        None
    } else if let Some(n) = go_atoi(&value) {
        Some(n)
    } else if value == "context" {
        // The main context's time: a git commit's or an HTTP archive's.
        // A local directory has none, so BuildKit leaves the epoch unset,
        // as here; the time of a git or HTTP context is not read yet,
        // so it leaves the epoch unset too.
        None
    } else if drafts
        .iter()
        .any(|d| d.from.stage_name.as_deref() == Some(value.to_lowercase().as_str()))
    {
        // BuildKit takes the time of the stage's one remote (git or
        // HTTP) ADD, sources bk cannot read yet.
        warnings.push(PlanWarning {
            message: format!(
                "SOURCE_DATE_EPOCH={value} (the time of a stage's remote ADD) is not supported \
                 yet; ignored"
            ),
            location: None,
        });
        None
    } else {
        return Err(Error::unlocated(StageError::SourceDateEpoch(value)));
    };
    let normalised = epoch.map(|n| n.to_string());
    if build_args.get(KEY).is_some() {
        build_args.set(KEY, normalised.clone());
    }
    if globals.get(KEY).is_some() {
        match &normalised {
            Some(v) => globals.set(KEY, v.clone()),
            None => {
                globals.remove(KEY);
            }
        }
    }
    Ok(epoch)
}

/// Expands each FROM with the global ARGs and decides what it builds on:
/// an earlier stage of exactly that name, scratch, a named context of
/// that name, or an image. A stage whose own name has a named context is
/// replaced by it: its instructions are dropped. Both look contexts up
/// with the stage's platform (its `--platform`, else `target_platform`),
/// as BuildKit does.
fn resolve_froms(
    drafts: &mut [Draft],
    lex: &Lex,
    globals: &EnvList,
    contexts: &NamedContexts,
    target_platform: &Platform,
) -> Result<()> {
    for i in 0..drafts.len() {
        let (earlier, rest) = drafts.split_at_mut(i);
        let draft = &mut rest[0];
        let location = draft.from.meta.location;
        let original = draft.from.base_name.clone();
        let base_name = lex
            .process_word(&original, globals)
            .map_err(|e| Error::new(e, location))?;
        if base_name.is_empty() {
            return Err(Error::new(StageError::BlankBaseName(original), location));
        }
        if !draft.from.platform.is_empty() {
            let expression = draft.from.platform.clone();
            let expanded = lex.process_word(&expression, globals).map_err(|e| {
                Error::new(
                    StageError::PlatformExpansion {
                        expression: expression.clone(),
                        reason: Box::new(e),
                    },
                    location,
                )
            })?;
            if expanded.is_empty() {
                return Err(Error::new(StageError::EmptyPlatform(expression), location));
            }
            let platform = expanded.parse::<Platform>().map_err(|reason| {
                Error::new(StageError::InvalidPlatform { expression, reason }, location)
            })?;
            draft.platform = Some(platform);
        }
        let names: Vec<Option<String>> =
            earlier.iter().map(|d| d.from.stage_name.clone()).collect();
        let platform = draft.platform.as_ref().unwrap_or(target_platform);
        let replaced = draft.from.stage_name.as_deref().and_then(|name| {
            contexts
                .get(name, platform)
                .map(|(key, source)| (name, key, source))
        });
        if let Some((name, key, source)) = replaced {
            draft.base = context_base(key, source, &names, location)?;
            draft.commands.clear();
            draft.from.base_name = name.to_string();
            continue;
        }
        // Only earlier stages count, and the name must match exactly (stage
        // names are lower case; BuildKit does not fold FROM's word).
        draft.base = match names
            .iter()
            .rposition(|n| n.as_deref() == Some(base_name.as_str()))
        {
            Some(j) => Base::Stage(j),
            None if base_name == SCRATCH => Base::Scratch,
            None => match contexts.lookup(&base_name, platform) {
                Some((key, source)) => context_base(key, source, &names, location)?,
                None => Base::Image(base_name.clone()),
            },
        };
        draft.from.base_name = base_name;
    }
    Ok(())
}

/// What a stage built on the named context `name` (its key: `NAME` or
/// `NAME::PLATFORM`) starts from: what a `--from` naming it would read
/// ([`context_source`]), as a stage base.
fn context_base(
    name: &str,
    source: &ContextSource,
    earlier: &[Option<String>],
    location: Range,
) -> Result<Base> {
    Ok(match context_source(name, source, earlier, location)? {
        Source::Stage(j) => Base::Stage(j),
        Source::Image(reference) => Base::Image(reference),
        Source::Context(key) => Base::Context(key),
    })
}

/// What a `--from` naming the context `name` (its key) reads; a
/// `target:` context must name a stage defined earlier (`stages`).
fn context_source(
    name: &str,
    source: &ContextSource,
    stages: &[Option<String>],
    location: Range,
) -> Result<Source> {
    Ok(match source {
        ContextSource::Image(reference) => Source::Image(reference.clone()),
        ContextSource::Local
        | ContextSource::ScopedLocal(_)
        | ContextSource::OciLayout(_)
        | ContextSource::Git(_)
        | ContextSource::Http(_) => Source::Context(name.to_string()),
        ContextSource::Stage(stage) => match stage_by_name(stage, stages) {
            Some(j) => Source::Stage(j),
            None => {
                return Err(Error::new(
                    StageError::ContextStage {
                        context: name.to_string(),
                        stage: stage.clone(),
                    },
                    location,
                ))
            }
        },
    })
}

/// The stage `--target` names (any case), or the last one.
fn find_target(drafts: &[Draft], target: Option<&str>) -> Result<usize> {
    let Some(target) = target else {
        return Ok(drafts.len() - 1);
    };
    let lower = target.to_lowercase();
    if let Some(i) = drafts
        .iter()
        .rposition(|d| d.from.stage_name.as_deref() == Some(lower.as_str()))
    {
        return Ok(i);
    }
    let names: Vec<&str> = drafts
        .iter()
        .map(|d| d.from.stage_name.as_deref().unwrap_or_default())
        .filter(|n| !n.is_empty())
        .collect();
    Err(Error::unlocated(StageError::TargetNotFound {
        name: target.to_string(),
        suggestion: suggest(target, &names, true),
    }))
}

/// Finds what each `COPY --from` and `RUN --mount=from=` refers to. A
/// named context is looked up for the build's `target_platform`, whatever
/// the stage's own platform: BuildKit gives a `--from` that is not a stage
/// no platform of its own.
fn link_commands(
    drafts: &mut [Draft],
    lex: &Lex,
    contexts: &NamedContexts,
    target_platform: &Platform,
) -> Result<()> {
    let names: Vec<Option<String>> = drafts.iter().map(|d| d.from.stage_name.clone()).collect();
    for draft in drafts.iter_mut() {
        for cmd in &mut draft.commands {
            link_command(cmd, &names, lex, contexts, target_platform)?;
        }
    }
    Ok(())
}

/// A `--from` name that is not a stage: a named context (looked up for
/// `platform`), else an image.
fn non_stage_source(
    name: &str,
    names: &[Option<String>],
    contexts: &NamedContexts,
    platform: &Platform,
    location: Range,
) -> Result<Source> {
    match contexts.lookup(name, platform) {
        Some((context, source)) => context_source(context, source, names, location),
        None => Ok(Source::Image(name.to_string())),
    }
}

fn link_command(
    cmd: &mut Command,
    names: &[Option<String>],
    lex: &Lex,
    contexts: &NamedContexts,
    platform: &Platform,
) -> Result<()> {
    let location = cmd.instruction.location();
    match &cmd.instruction {
        Instruction::Copy(c) if !c.from.is_empty() => {
            // Stages are linked before anything is expanded, so the value
            // must be literal: expanding it with no variables must not
            // change it.
            let literal = lex
                .process_word(&c.from, &EnvList::new())
                .map_err(|e| Error::new(e, location))?;
            if literal != c.from {
                return Err(Error::new(StageError::FromVariable, location));
            }
            let source = match go_atoi(&c.from) {
                Some(n) => match usize::try_from(n).ok().filter(|&i| i < names.len()) {
                    Some(i) => Source::Stage(i),
                    None => return Err(Error::new(StageError::InvalidStageIndex(n), location)),
                },
                None => match stage_by_name(&c.from, names) {
                    Some(j) => Source::Stage(j),
                    None => non_stage_source(&c.from, names, contexts, platform, location)?,
                },
            };
            cmd.copy_from = Some(source);
        }
        Instruction::Run(r) => {
            // Mounts name stages only (no index form); anything else is an
            // image.
            cmd.mounts =
                r.mounts
                    .iter()
                    .map(|m| {
                        if m.from.is_empty() {
                            return Ok(None);
                        }
                        match stage_by_name(&m.from, names) {
                            Some(j) => Ok(Some(Source::Stage(j))),
                            None => non_stage_source(&m.from, names, contexts, platform, location)
                                .map(Some),
                        }
                    })
                    .collect::<Result<_>>()?;
        }
        _ => {}
    }
    Ok(())
}

fn stage_by_name(name: &str, names: &[Option<String>]) -> Option<usize> {
    let lower = name.to_lowercase();
    names
        .iter()
        .rposition(|n| n.as_deref() == Some(lower.as_str()))
}

/// Rejects stages that (indirectly) copy from themselves, naming the first
/// stage on a cycle and pointing at the instructions that form it.
fn check_cycles(drafts: &[Draft]) -> Result<()> {
    let deps: Vec<Vec<(usize, Range)>> = drafts
        .iter()
        .map(|d| {
            let mut out: Vec<(usize, Range)> = Vec::new();
            for cmd in &d.commands {
                for s in cmd.sources() {
                    if let Source::Stage(j) = s {
                        if !out.iter().any(|(k, _)| k == j) {
                            out.push((*j, cmd.instruction.location()));
                        }
                    }
                }
            }
            out
        })
        .collect();
    let mut visited = vec![false; drafts.len()];
    let mut on_path = vec![false; drafts.len()];
    fn visit(
        i: usize,
        deps: &[Vec<(usize, Range)>],
        visited: &mut [bool],
        on_path: &mut [bool],
        trail: &mut Vec<Range>,
    ) -> bool {
        if visited[i] {
            return false;
        }
        visited[i] = true;
        on_path[i] = true;
        for &(j, location) in &deps[i] {
            trail.push(location);
            if on_path[j] || visit(j, deps, visited, on_path, trail) {
                return true;
            }
            trail.pop();
        }
        on_path[i] = false;
        false
    }
    for (i, draft) in drafts.iter().enumerate() {
        let mut trail = Vec::new();
        if visit(i, &deps, &mut visited, &mut on_path, &mut trail) {
            let name = draft
                .from
                .stage_name
                .clone()
                .unwrap_or_else(|| format!("stage-{i}"));
            let mut err = Error::unlocated(StageError::CircularDependency(name));
            for location in trail {
                err = err.with_location(location);
            }
            return Err(err);
        }
    }
    Ok(())
}

/// Every image name (FROM, `COPY --from`, mounts) must be a valid
/// reference, needed or not, as BuildKit checks them all; names are
/// replaced by their normalised form.
fn validate_references(drafts: &mut [Draft]) -> Result<()> {
    let normalise = |name: &str, location: Range| -> Result<String> {
        Reference::parse_normalized(name)
            .map(|r| r.with_default_tag().to_string())
            .map_err(|reason| {
                Error::new(
                    StageError::InvalidBaseName {
                        name: name.to_string(),
                        reason,
                    },
                    location,
                )
            })
    };
    for draft in drafts.iter_mut() {
        if let Base::Image(name) = &draft.base {
            draft.base = Base::Image(normalise(name, draft.from.meta.location)?);
        }
        for cmd in &mut draft.commands {
            let location = cmd.instruction.location();
            for source in cmd
                .copy_from
                .iter_mut()
                .chain(cmd.mounts.iter_mut().flatten())
            {
                if let Source::Image(name) = source {
                    *source = Source::Image(normalise(name, location)?);
                }
            }
        }
    }
    Ok(())
}

/// Marks the stages the target needs, resolving their base images and
/// turning base ONBUILD triggers into leading commands. Triggers can add
/// `--from` dependencies, so this repeats until nothing new is needed.
fn resolve_needed(
    drafts: &mut [Draft],
    target: usize,
    target_platform: &Platform,
    resolver: &dyn BaseImageResolver,
    lex: &Lex,
    contexts: &NamedContexts,
) -> Result<Vec<bool>> {
    let mut cache: BTreeMap<(String, Platform), Option<Image>> = BTreeMap::new();
    loop {
        let needed = reachable(drafts, target);
        for (i, draft) in drafts.iter_mut().enumerate() {
            if !needed[i] || draft.resolved {
                continue;
            }
            draft.resolved = true;
            let platform = draft
                .platform
                .clone()
                .unwrap_or_else(|| target_platform.clone());
            match &draft.base {
                Base::Image(name) => {
                    let image = cache
                        .entry((name.clone(), platform.clone()))
                        .or_insert_with(|| resolver.resolve(name, &platform))
                        .clone()
                        .unwrap_or_else(|| Image::empty(&platform));
                    draft.base_image = Some(image);
                }
                Base::Context(name) => {
                    let image = resolver
                        .resolve_context(name, &platform)
                        .unwrap_or_else(|| Image::empty(&platform));
                    draft.base_image = Some(image);
                }
                Base::Scratch | Base::Stage(_) => {}
            }
        }

        let mut new_deps = false;
        for i in 0..drafts.len() {
            if !needed[i] || drafts[i].triggers_done {
                continue;
            }
            drafts[i].triggers_done = true;
            let triggers: Vec<String> = match &drafts[i].base {
                Base::Image(_) | Base::Context(_) => drafts[i]
                    .base_image
                    .as_ref()
                    .map(|img| img.config.on_build.clone())
                    .unwrap_or_default(),
                // A base stage's own ONBUILD lines fire here.
                Base::Stage(j) => drafts[*j]
                    .commands
                    .iter()
                    .filter(|c| !c.onbuild)
                    .filter_map(|c| match &c.instruction {
                        Instruction::Onbuild(o) => Some(o.expression.clone()),
                        _ => None,
                    })
                    .collect(),
                Base::Scratch => Vec::new(),
            };
            if triggers.is_empty() {
                continue;
            }
            let names: Vec<Option<String>> =
                drafts.iter().map(|d| d.from.stage_name.clone()).collect();
            let location = drafts[i].from.meta.location;
            let mut commands = Vec::with_capacity(triggers.len());
            for trigger in &triggers {
                let cmd = parse_trigger(trigger, location, &names, lex, contexts, target_platform)
                    .map_err(|e| {
                        Error::new(
                            StageError::OnbuildTrigger {
                                trigger: trigger.clone(),
                                source: Box::new(e.kind),
                            },
                            location,
                        )
                    })?;
                new_deps |= cmd.sources().next().is_some();
                commands.push(cmd);
            }
            let draft = &mut drafts[i];
            commands.append(&mut draft.commands);
            draft.commands = commands;
        }
        if !new_deps {
            return Ok(needed);
        }
        // New image names from triggers must be valid too.
        validate_references(drafts)?;
    }
}

/// One ONBUILD trigger as a command of the stage being built; it is
/// reported at that stage's FROM line.
fn parse_trigger(
    trigger: &str,
    location: Range,
    names: &[Option<String>],
    lex: &Lex,
    contexts: &NamedContexts,
    target_platform: &Platform,
) -> Result<Command> {
    let ast = super::parser::parse(trigger)?;
    let [node] = ast.children.as_slice() else {
        return Err(Error::unlocated(StageError::OnbuildNotSingle));
    };
    let mut node = node.clone();
    node.start_line = location.start.line;
    node.end_line = location.end.line;
    let instruction = instructions::parse_command(&node)?;
    let mut cmd = Command {
        instruction,
        onbuild: true,
        copy_from: None,
        mounts: Vec::new(),
    };
    link_command(&mut cmd, names, lex, contexts, target_platform)?;
    Ok(cmd)
}

/// The stages the target depends on through bases and sources.
fn reachable(drafts: &[Draft], target: usize) -> Vec<bool> {
    let mut seen = vec![false; drafts.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        if let Base::Stage(j) = drafts[i].base {
            todo.push(j);
        }
        for cmd in &drafts[i].commands {
            for s in cmd.sources() {
                if let Source::Stage(j) = s {
                    todo.push(*j);
                }
            }
        }
    }
    seen
}

/// The state a stage starts from. Scratch uses the target platform even
/// with `FROM --platform`, as BuildKit does.
fn initial_state(
    draft: &Draft,
    states: &[Option<StageState>],
    target_platform: &Platform,
) -> StageState {
    match &draft.base {
        Base::Stage(j) => match &states[*j] {
            Some(base) => StageState::from_stage(base),
            // Unreachable: a base stage is needed and earlier, so it was
            // evaluated; fall back to an empty config rather than panic.
            None => StageState::from_image(Image::empty(target_platform), target_platform.clone()),
        },
        Base::Scratch => {
            StageState::from_image(Image::empty(target_platform), target_platform.clone())
        }
        Base::Image(_) | Base::Context(_) => {
            let platform = draft
                .platform
                .clone()
                .unwrap_or_else(|| target_platform.clone());
            let mut image = draft
                .base_image
                .clone()
                .unwrap_or_else(|| Image::empty(&platform));
            image.created = None;
            StageState::from_image(image, platform)
        }
    }
}

/// `--label`s, and the requested platform stamped on the result.
fn finalize_target(image: &mut Image, opts: &PlanOptions, target_platform: &Platform) {
    for (k, v) in &opts.labels {
        image.config.labels.insert(k.clone(), v.clone());
    }
    if opts.target_platform.is_some() {
        let same_os_arch =
            image.os == target_platform.os && image.architecture == target_platform.architecture;
        image.os = target_platform.os.clone();
        image.architecture = target_platform.architecture.clone();
        if target_platform.variant.is_some() || !same_os_arch {
            image.variant = target_platform.variant.clone();
        }
    }
}

fn dedup(sources: impl Iterator<Item = Source>) -> Vec<Source> {
    let mut out: Vec<Source> = Vec::new();
    for s in sources {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The error kind of a failed plan, for callers matching on it.
pub fn stage_error(err: &Error) -> Option<&StageError> {
    match &err.kind {
        ErrorKind::Stage(e) => Some(e),
        _ => None,
    }
}
