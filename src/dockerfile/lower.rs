//! Lowering: a [`Plan`] of evaluated stages → the LLB build graph
//! ([`crate::llb::Definition`]), as BuildKit's `dockerfile2llb` emits it.
//! This module owns the stage walk, FROM, WORKDIR, sources and progress
//! names; `lower_copy` does COPY/ADD and `lower_run` does RUN.
//!
//! It is a pure function of the plan: it must never import the solver,
//! snapshotter, cache, exporter or runner layers, and reads no files (the
//! build context and `.dockerignore` are the solver's business).
//!
//! # Conventions the solver relies on
//!
//! * **States.** A stage's filesystem is an `Option<Input>`: `None` is an
//!   empty filesystem (`FROM scratch`), so no vertex exists for it. Only
//!   stages the target needs are lowered; [`Lowered::stage_roots`] holds
//!   each stage's final state (None also for stages not lowered) and the
//!   definition's root is the target's (None for a bare `FROM scratch`).
//! * **FROM.** `FROM <stage>` continues from that stage's final state.
//!   `FROM <image>` is `SourceOp{identifier: "docker-image://<normalised
//!   ref>"}` on the stage's platform. Images named by `COPY --from` or
//!   `RUN --mount=from=` are sources on the plan's target platform (BuildKit
//!   resolves such references as stages without `--platform`).
//! * **Build context.** Every COPY/ADD (and every `RUN --mount` without
//!   `from`) reading the context gets its own `local://context` source whose
//!   attrs say exactly what it reads ([`crate::llb::attr`]):
//!   `local.includepatterns`, a JSON array of the instruction's source
//!   paths/patterns relative to the context root (absent when it reads the
//!   whole context); `local.excludepatterns`, a JSON array of the COPY's
//!   `--exclude` patterns joined onto its source path, so they mean at the
//!   context root what they mean relative to the copied directory (only for
//!   single-source copies, where that can never hide a file another source
//!   needs); and `local.sharedkeyhint` = the context name. `.dockerignore`
//!   is applied by the solver when it reads the context. The vertex has no
//!   platform.
//! * **COPY/ADD** is one `FileOp` on the stage state with one `Copy` action
//!   per source, in order, the first action's `input` the state (None on
//!   scratch), later actions `None` (they continue from the previous one);
//!   `secondary_input` is where the action reads (None: scratch). Paths are
//!   absolute: `src` cleaned against `/`, `dest` resolved against WORKDIR
//!   with its trailing `/` kept (meaning "into this directory"). Local
//!   sources use BuildKit's flags: `follow_symlink`, `dir_copy_contents`,
//!   `allow_wildcard`, `allow_empty_wildcard` (BuildKit lets a wildcard that
//!   matches nothing copy nothing), `create_dest_path`, and
//!   `attempt_unpack` for ADD unless `--unpack=false`. `--parents` is
//!   BuildKit's encoding: `src` is the pivot (`a/./b` → `/a`, else `/`),
//!   `include_patterns` the path below it, `required_paths` the literal path
//!   when there is no wildcard. `--exclude` patterns go to the action as
//!   written (relative to `src`). `--chown` is a [`crate::llb::ChownOpt`]
//!   (numbers and `root` → ids, anything else a name resolved in the
//!   destination's `/etc/passwd`), `--chmod` the mode (octal as four digits,
//!   symbolic as written). Copies get no timestamp: like BuildKit, only
//!   WORKDIR's directory is stamped with SOURCE_DATE_EPOCH.
//! * **Heredoc sources** are `Mkfile` actions (mode 0644, path `/<name>`)
//!   in a scratch-based FileOp named `[internal] preparing inline document`
//!   that the copy reads `/<name>` from.
//! * **Remote ADD.** `http(s)://` → `SourceOp{identifier: <url>}` with
//!   `http.filename` (the URL's last path element, `__unnamed__` without
//!   one) and `http.checksum` (`--checksum`); the copy reads `/<filename>`
//!   without wildcards or unpacking unless `--unpack`. Git → `git://<host>
//!   <path>[#<ref>[:<subdir>]]` with `git.fullurl`, the auth secret names,
//!   `git.keepgitdir`, `git.checksum`, `git.skipsubmodules`, `git.mtime`,
//!   `git.fetchbycommit` and `git.mountsshsock` for SSH remotes; the copy
//!   reads `/` with `dir_copy_contents` off, as BuildKit does (the root has
//!   no name to copy, so its contents land in `dest`).
//! * **`COPY --link`** (without `--chmod`, as in BuildKit) copies onto
//!   scratch and then `MergeOp{inputs: [state, copy]}` (just the copy when
//!   the state is scratch).
//! * **WORKDIR** other than `/` → `Mkdir{path, mode 0755, make_parents}`
//!   owned by the USER in force, stamped with SOURCE_DATE_EPOCH (seconds).
//! * **RUN** → `ExecOp`: mount 0 is the root (`selector "/"`, `dest "/"`,
//!   output 0, input the state or None); other mounts follow sorted by
//!   `dest`, then secrets, then SSH sockets, as BuildKit marshals them. No
//!   mount but the root has an output (rw binds are scratch-on-write, as
//!   BuildKit's `ForceNoOutput`). `env` is the step's environment as
//!   `KEY=value` plus the default PATH when unset (not on Windows) and
//!   `SSH_AUTH_SOCK` when an SSH mount exists; `proxy_env` carries the
//!   proxy build args as BuildKit's executor expands them (`HTTP_PROXY=…`,
//!   `http_proxy=…`, …). Mounts: bind from a stage, an image or the context
//!   (`selector` = `source=` cleaned, `/` for all of it); cache with id
//!   `id=` or else the target as written, cleaned, sharing default
//!   `shared`, input scratch unless `from=`, and with `uid`/`gid`/`mode`
//!   an `[internal] setting cache mount permissions` Mkdir of `/cache`
//!   (selected) carrying them; tmpfs with its size; secrets (id from
//!   `id=`/`source=`/the target's base name; dest the target or
//!   `/run/secrets/<id>`, empty for env-only secrets; mode 0400) and SSH
//!   (id `default`; dest the target or `/run/buildkit/ssh_agent.<n>`; mode
//!   0600). A single `#!` heredoc script is a `Mkfile` (0755) in a scratch
//!   FileOp mounted read-only at `/dev/pipes/`.
//! * **Metadata.** `name` is BuildKit's progress name: `[<stage> <n>/<m>]
//!   <instruction as written, variables expanded>`, where `<stage>` is the
//!   AS name or `stage-<i>` (omitted when the Dockerfile has one stage and
//!   nothing that BuildKit counts as another), `<m>` counts FROM <image>,
//!   COPY, ADD, RUN, WORKDIR and ONBUILD triggers; `[internal] load build
//!   context` for context sources. `description["location"]` is
//!   `"<start_line>-<end_line>"` of the instruction (FROM for images).
//!   `ignore_cache` is set on every exec and file vertex of a stage that
//!   `--no-cache` (all stages) or `--no-cache-filter` (by AS name, any case)
//!   selects; sources are always re-resolved by the solver anyway.

use std::collections::BTreeMap;

use super::config_values::path_clean;
use super::error::{Error, Result};
use super::git_ref::GitRefError;
use super::instructions::Instruction;
use super::location::Range;
use super::named_context::ContextSource;
use super::shell::{EnvList, Lex};
use super::stages::{Action, Base, Plan, Source, Stage, Step};
use crate::image::{Image, Platform};
use crate::llb::{
    attr, ChownOpt, Definition, DefinitionError, FileAction, FileActionKind, FileOp, Input,
    Metadata, NetMode, Op, SourceOp, UserOpt, Vertex,
};

/// What the caller asks for besides the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerOptions {
    /// `--no-cache`: every stage's exec and file vertices ignore the cache.
    pub no_cache: bool,
    /// `--no-cache-filter`: the stages (AS names) whose vertices ignore the
    /// cache.
    pub no_cache_filter: Vec<String>,
    /// The name of the main build context (`context`), used in the local
    /// source's identifier and shared-key hint.
    pub context_name: String,
    /// `--network` of the build: what `RUN --network=default` gets.
    pub network: NetMode,
    /// Several platforms were asked for: numbered step names start with
    /// the stage's platform, as BuildKit's (`[linux/arm64 build 2/3]`;
    /// `[linux/amd64->arm64 …]` when a stage on another platform declares
    /// the target platform's ARGs).
    pub platform_prefix: bool,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            no_cache: false,
            no_cache_filter: Vec::new(),
            context_name: "context".to_string(),
            network: NetMode::Sandbox,
            platform_prefix: false,
        }
    }
}

/// The outcome of lowering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lowered {
    /// The graph; its root is the target stage's final state (None for a
    /// bare `FROM scratch`).
    pub definition: Definition,
    /// The target stage's image config.
    pub image: Image,
    /// Per stage (by index), its final state; None for stages that end
    /// empty and for stages the target does not need.
    pub stage_roots: Vec<Option<Input>>,
}

/// Why a plan could not be turned into a graph. BuildKit's wording where it
/// has one.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// A vertex referred to an input that was never added: a bug here, not
    /// in the Dockerfile.
    #[error("internal error building the graph: {0}")]
    AddVertex(#[from] DefinitionError),
    #[error("stage {0:?} is used before it was built")]
    StageNotLowered(String),
    #[error("invalid git source {url:?}: {reason}")]
    GitRef { url: String, reason: GitRefError },
    #[error("checksum mismatch {flag:?} != {url:?}")]
    GitChecksumMismatch { flag: String, url: String },
    #[error("invalid checksum digest format: {0:?}")]
    ChecksumFormat(String),
    #[error("unsupported digest algorithm: {0:?}")]
    ChecksumAlgorithm(String),
    #[error("invalid mount target {0:?}")]
    MountTarget(String),
    #[error("ssh does not support source")]
    SshSource,
    #[error("arguments are required")]
    EmptyCommand,
    /// The plan names a context the build was not given: a bug here.
    #[error("internal error: no build context named {0:?}")]
    UnknownContext(String),
}

/// A stage's filesystem: None is empty (scratch).
pub(super) type State = Option<Input>;

/// Lowers the stages `plan`'s target needs: see the module documentation.
pub fn lower(plan: &Plan, opts: &LowerOptions) -> Result<Lowered> {
    let mut lowering = Lowering {
        plan,
        opts,
        def: Definition::new(),
        roots: vec![None; plan.stages.len()],
    };
    for stage in plan.stages.iter().filter(|s| s.needed) {
        let state = lowering.stage(stage)?;
        lowering.roots[stage.index] = Some(state);
    }
    let root = lowering.roots.get(plan.target).cloned().flatten().flatten();
    lowering.def.root = root;
    Ok(Lowered {
        definition: lowering.def,
        image: plan.target_stage().image.clone(),
        stage_roots: lowering.roots.into_iter().map(Option::flatten).collect(),
    })
}

/// The graph being built and what is known about the stages so far.
pub(super) struct Lowering<'a> {
    pub(super) plan: &'a Plan,
    pub(super) opts: &'a LowerOptions,
    pub(super) def: Definition,
    /// Per stage: None until lowered, then its final state.
    roots: Vec<Option<State>>,
}

/// Per-stage naming and cache state, mirroring what BuildKit keeps in its
/// dispatch state for `prefixCommand`.
pub(super) struct StageCx {
    /// `[<label> n/m]`; empty for a lone stage.
    label: String,
    /// The stage's platform, for multi-platform names; `None` otherwise.
    platform: Option<Platform>,
    /// `->arm64` when the step's environment names a target platform
    /// other than the stage's (see [`StageCx::enter`]).
    target_suffix: String,
    /// How many steps get a number.
    total: usize,
    /// The number the last named step got.
    index: usize,
    pub(super) ignore_cache: bool,
    /// The Dockerfile's lexer, for expanding instruction text into names.
    pub(super) lex: Lex,
}

impl StageCx {
    fn new(plan: &Plan, opts: &LowerOptions, stage: &Stage) -> StageCx {
        // BuildKit drops the stage name when there is a single dispatch
        // state; images a COPY --from names and every RUN --mount source
        // register extra states before that count is taken (ONBUILD
        // triggers only after).
        let extra_states = stage.steps.iter().filter(|s| !s.onbuild).any(|s| {
            matches!(&s.instruction, Instruction::Copy(c) if !c.from.is_empty())
                || matches!(&s.instruction, Instruction::Run(r) if !r.mounts.is_empty())
        });
        let label = if plan.stages.len() == 1 && !extra_states {
            String::new()
        } else {
            stage.display_name()
        };
        let numbered = stage
            .steps
            .iter()
            .filter(|s| {
                s.onbuild
                    || matches!(
                        s.instruction,
                        Instruction::Add(_)
                            | Instruction::Copy(_)
                            | Instruction::Run(_)
                            | Instruction::Workdir(_)
                    )
            })
            .count();
        let total = numbered + usize::from(matches!(stage.base, Base::Image(_) | Base::Context(_)));
        let ignore_cache = opts.no_cache
            || stage.name.as_deref().is_some_and(|name| {
                opts.no_cache_filter
                    .iter()
                    .any(|f| f.to_lowercase() == name.to_lowercase())
            });
        StageCx {
            label,
            platform: opts.platform_prefix.then(|| stage.platform.clone()),
            target_suffix: String::new(),
            total,
            index: 0,
            ignore_cache,
            lex: Lex::new(plan.escape),
        }
    }

    /// Numbers the next step: `[label n/m] text`.
    pub(super) fn prefix(&mut self, text: &str, onbuild: bool) -> String {
        if self.total == 0 {
            return text.to_string();
        }
        self.index += 1;
        self.prefix_again(text, onbuild)
    }

    /// `text` with the number the last step got (a `COPY --link`'s merge
    /// shares its copy's number).
    pub(super) fn prefix_again(&self, text: &str, onbuild: bool) -> String {
        if self.total == 0 {
            return text.to_string();
        }
        let width = self.total.to_string().len();
        let mut out = String::from("[");
        if let Some(platform) = &self.platform {
            out.push_str(&platform.to_string());
            out.push_str(&self.target_suffix);
            out.push(' ');
        }
        if !self.label.is_empty() {
            out.push_str(&self.label);
            out.push(' ');
        }
        out.push_str(&format!("{:>width$}/{}] ", self.index, self.total));
        if onbuild {
            out.push_str("ONBUILD ");
        }
        out.push_str(text);
        out
    }

    /// Takes the environment of the step about to be named: BuildKit
    /// appends the target platform its `TARGET*` variables name when it
    /// differs from the stage's (`linux/amd64->arm64`).
    pub(super) fn enter(&mut self, env: &EnvList) {
        self.target_suffix = match &self.platform {
            Some(base) => target_suffix(base, env),
            None => String::new(),
        };
    }

    /// An instruction's text as progress shows it: variables expanded with
    /// `lex` (the text as written if that fails), keyword upper-cased.
    pub(super) fn display(lex: &Lex, code: &str, env: &EnvList) -> String {
        let expanded = lex
            .process_word(code, env)
            .unwrap_or_else(|_| code.to_string());
        match expanded.split_once(' ') {
            Some((keyword, rest)) => format!("{} {rest}", keyword.to_uppercase()),
            None => expanded.to_uppercase(),
        }
    }
}

/// BuildKit's `formatTargetPlatform` over the platform the `TARGET*`
/// variables of `env` name (`TARGETPLATFORM` first, else the parts that
/// are set, the rest from `base`): `->arch[/variant]` for another
/// architecture of the same OS, `->os/arch[/variant]` for another OS,
/// nothing otherwise.
fn target_suffix(base: &Platform, env: &EnvList) -> String {
    let get = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    let target = match get("TARGETPLATFORM").and_then(|v| v.parse::<Platform>().ok()) {
        Some(p) => p,
        None => {
            let (os, arch, variant) = (get("TARGETOS"), get("TARGETARCH"), get("TARGETVARIANT"));
            if os.is_none() && arch.is_none() && variant.is_none() {
                return String::new();
            }
            let os = os.filter(|o| !o.is_empty()).unwrap_or(&base.os);
            let arch = arch.filter(|a| !a.is_empty()).unwrap_or(&base.architecture);
            let spec = match variant.filter(|v| !v.is_empty()) {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            };
            match spec.parse::<Platform>() {
                Ok(p) => p,
                Err(_) => return String::new(),
            }
        }
    };
    if target.os != base.os {
        return format!("->{target}");
    }
    if target.architecture != base.architecture {
        return match &target.variant {
            Some(v) => format!("->{}/{v}", target.architecture),
            None => format!("->{}", target.architecture),
        };
    }
    String::new()
}

/// The inputs of one vertex, each once, in first-use order.
#[derive(Debug, Default)]
pub(super) struct InputSet(pub(super) Vec<Input>);

impl InputSet {
    /// The index of `input`, adding it if new.
    pub(super) fn index(&mut self, input: &Input) -> u32 {
        let pos = match self.0.iter().position(|i| i == input) {
            Some(pos) => pos,
            None => {
                self.0.push(input.clone());
                self.0.len() - 1
            }
        };
        u32::try_from(pos).unwrap_or(u32::MAX)
    }
}

impl Lowering<'_> {
    fn stage(&mut self, stage: &Stage) -> Result<State> {
        let mut cx = StageCx::new(self.plan, self.opts, stage);
        let at_stage = |e: LowerError| Error::new(e, stage.location);
        let mut state = match &stage.base {
            Base::Scratch => None,
            Base::Stage(j) => self.stage_root(*j).map_err(at_stage)?,
            Base::Image(reference) => {
                let name = cx.prefix(&format!("FROM {reference}"), false);
                let input = self
                    .image_source(reference, &stage.platform, name, stage.location)
                    .map_err(at_stage)?;
                Some(input)
            }
            Base::Context(name) => {
                let step_name = cx.prefix(&format!("FROM {name}"), false);
                let input = self
                    .named_context(name, &stage.platform, stage.location)
                    .map_err(at_stage)?;
                let local = matches!(
                    self.plan.named_contexts.by_key(name),
                    Some(ContextSource::Local | ContextSource::ScopedLocal(_))
                );
                if local && !stage.steps.is_empty() {
                    // A directory is read in place; the steps built on it
                    // need a snapshot of their own to start from.
                    let copied = self
                        .context_snapshot(input, step_name, stage, cx.ignore_cache)
                        .map_err(at_stage)?;
                    Some(copied)
                } else {
                    Some(input)
                }
            }
        };
        for step in &stage.steps {
            state = self
                .step(&mut cx, step, state)
                .map_err(|e| e.with_location(stage.location))?;
        }
        Ok(state)
    }

    fn step(&mut self, cx: &mut StageCx, step: &Step, state: State) -> Result<State> {
        let location = step.instruction.location();
        cx.enter(&step.env);
        match (&step.action, &step.instruction) {
            (Action::Mkdir(dir), _) => self
                .workdir(cx, step, state, dir)
                .map_err(|e| Error::new(e, location)),
            (Action::Run(action), Instruction::Run(run)) => self.run(cx, step, state, run, action),
            (Action::Copy(action), Instruction::Copy(copy)) => self.copy(
                cx,
                step,
                state,
                &super::lower_copy::Spec::copy(copy, action),
            ),
            (Action::Copy(action), Instruction::Add(add)) => {
                self.copy(cx, step, state, &super::lower_copy::Spec::add(add, action))
            }
            _ => Ok(state),
        }
    }

    /// WORKDIR: BuildKit creates the directory, owned by the USER in force.
    fn workdir(
        &mut self,
        cx: &mut StageCx,
        step: &Step,
        state: State,
        dir: &str,
    ) -> std::result::Result<State, LowerError> {
        let text = StageCx::display(&cx.lex, &step.instruction.meta().code, &step.env);
        let name = cx.prefix(&text, step.onbuild);
        let owner = (!step.user.is_empty()).then(|| chown(&step.user));
        let mut inputs = InputSet::default();
        let input = state.as_ref().map(|s| inputs.index(s));
        let op = Op::File(FileOp {
            actions: vec![FileAction {
                input,
                secondary_input: None,
                action: FileActionKind::Mkdir {
                    path: path_clean(dir),
                    mode: 0o755,
                    make_parents: true,
                    owner,
                    timestamp: self.plan.epoch,
                },
            }],
        });
        let meta = self.metadata(name, step.instruction.location(), cx.ignore_cache);
        self.add(op, inputs, Some(step.platform.clone()), meta)
            .map(Some)
    }

    /// The final state of stage `index`, which must have been lowered.
    fn stage_root(&self, index: usize) -> std::result::Result<State, LowerError> {
        match self.roots.get(index) {
            Some(Some(state)) => Ok(state.clone()),
            _ => Err(LowerError::StageNotLowered(
                self.plan
                    .stages
                    .get(index)
                    .map(Stage::display_name)
                    .unwrap_or_else(|| index.to_string()),
            )),
        }
    }

    /// What a `--from` / `from=` refers to, as a state.
    pub(super) fn source_state(
        &mut self,
        source: &Source,
        location: Range,
    ) -> std::result::Result<State, LowerError> {
        match source {
            Source::Stage(j) => self.stage_root(*j),
            Source::Image(reference) => {
                let platform = self.plan.target_platform.clone();
                let name = format!("FROM {reference}");
                self.image_source(reference, &platform, name, location)
                    .map(Some)
            }
            Source::Context(name) => {
                let platform = self.plan.target_platform.clone();
                self.named_context(name, &platform, location).map(Some)
            }
        }
    }

    /// The source of the named context the planner chose, by its key
    /// (`NAME` or `NAME::PLATFORM`, which step names show as BuildKit
    /// does): a local directory, an OCI layout, a git or HTTP source;
    /// images and stages were resolved by the planner.
    /// A local directory context copied whole onto scratch: the base of
    /// a stage that starts `FROM` such a context (files owned as `COPY`
    /// from a context owns them).
    fn context_snapshot(
        &mut self,
        context: Input,
        name: String,
        stage: &Stage,
        ignore_cache: bool,
    ) -> std::result::Result<Input, LowerError> {
        let mut inputs = InputSet::default();
        let secondary = inputs.index(&context);
        let copy = crate::llb::CopyAction {
            src: "/".into(),
            dest: "/".into(),
            owner: None,
            mode: None,
            follow_symlink: false,
            dir_copy_contents: true,
            attempt_unpack: false,
            create_dest_path: true,
            allow_wildcard: false,
            allow_empty_wildcard: false,
            include_patterns: Vec::new(),
            exclude_patterns: Vec::new(),
            required_paths: Vec::new(),
            parents: false,
            always_replace_existing_dest: false,
            timestamp: None,
        };
        let op = Op::File(FileOp {
            actions: vec![FileAction {
                input: None,
                secondary_input: Some(secondary),
                action: FileActionKind::Copy(copy),
            }],
        });
        let meta = self.metadata(name, stage.location, ignore_cache);
        self.add(op, inputs, Some(stage.platform.clone()), meta)
    }

    fn named_context(
        &mut self,
        name: &str,
        platform: &Platform,
        location: Range,
    ) -> std::result::Result<Input, LowerError> {
        match self.plan.named_contexts.by_key(name) {
            Some(ContextSource::OciLayout(identifier)) => {
                let op = Op::Source(SourceOp {
                    identifier: identifier.clone(),
                    attrs: BTreeMap::new(),
                });
                let meta = self.metadata(
                    format!("[context {name}] OCI load from client"),
                    location,
                    false,
                );
                self.add(op, InputSet::default(), Some(platform.clone()), meta)
            }
            Some(local @ (ContextSource::Local | ContextSource::ScopedLocal(_))) => {
                let key = match local {
                    ContextSource::ScopedLocal(key) => key.as_str(),
                    _ => name,
                };
                let mut attrs = BTreeMap::new();
                attrs.insert(
                    attr::LOCAL_SHARED_KEY_HINT.to_string(),
                    format!("context:{key}"),
                );
                let op = Op::Source(SourceOp {
                    identifier: format!("local://{key}"),
                    attrs,
                });
                let meta = self.metadata(
                    format!("[context {name}] load from client"),
                    location,
                    false,
                );
                self.add(op, InputSet::default(), None, meta)
            }
            Some(source @ (ContextSource::Git(url) | ContextSource::Http(url))) => {
                let (op, step) = source
                    .remote_source(name)
                    .ok_or_else(|| LowerError::UnknownContext(name.to_string()))?
                    .map_err(|reason| LowerError::GitRef {
                        url: crate::util::redact::url(url),
                        reason,
                    })?;
                let meta = self.metadata(step, location, false);
                self.add(Op::Source(op), InputSet::default(), None, meta)
            }
            _ => Err(LowerError::UnknownContext(name.to_string())),
        }
    }

    fn image_source(
        &mut self,
        reference: &str,
        platform: &Platform,
        name: String,
        location: Range,
    ) -> std::result::Result<Input, LowerError> {
        let op = Op::Source(SourceOp {
            identifier: format!("docker-image://{reference}"),
            attrs: BTreeMap::new(),
        });
        let meta = self.metadata(name, location, false);
        self.add(op, InputSet::default(), Some(platform.clone()), meta)
    }

    /// A `local://<context>` source reading `includes` (paths relative to
    /// the context root; an empty one means everything) minus `excludes`.
    pub(super) fn context_source(
        &mut self,
        includes: &[String],
        excludes: &[String],
        location: Range,
    ) -> std::result::Result<Input, LowerError> {
        let context = &self.opts.context_name;
        let mut attrs = BTreeMap::new();
        attrs.insert(attr::LOCAL_SHARED_KEY_HINT.to_string(), context.clone());
        if !includes.is_empty() && !includes.iter().any(String::is_empty) {
            let mut unique: Vec<&String> = Vec::new();
            for i in includes {
                if !unique.contains(&i) {
                    unique.push(i);
                }
            }
            attrs.insert(
                attr::LOCAL_INCLUDE_PATTERNS.to_string(),
                json_array(&unique),
            );
        }
        if !excludes.is_empty() {
            let all: Vec<&String> = excludes.iter().collect();
            attrs.insert(attr::LOCAL_EXCLUDE_PATTERNS.to_string(), json_array(&all));
        }
        let op = Op::Source(SourceOp {
            identifier: format!("local://{context}"),
            attrs,
        });
        let meta = self.metadata("[internal] load build context".into(), location, false);
        self.add(op, InputSet::default(), None, meta)
    }

    /// A scratch-based FileOp holding one inline file (heredocs).
    pub(super) fn inline_file(
        &mut self,
        path: String,
        mode: u32,
        data: &str,
        platform: &Platform,
        ignore_cache: bool,
        location: Range,
    ) -> std::result::Result<Input, LowerError> {
        let op = Op::File(FileOp {
            actions: vec![FileAction {
                input: None,
                secondary_input: None,
                action: FileActionKind::Mkfile {
                    path,
                    mode,
                    data: data.to_string(),
                    owner: None,
                    timestamp: None,
                },
            }],
        });
        let meta = self.metadata(
            "[internal] preparing inline document".into(),
            location,
            ignore_cache,
        );
        self.add(op, InputSet::default(), Some(platform.clone()), meta)
    }

    pub(super) fn metadata(&self, name: String, location: Range, ignore_cache: bool) -> Metadata {
        let mut description = BTreeMap::new();
        description.insert(
            "location".to_string(),
            format!("{}-{}", location.start.line, location.end.line),
        );
        Metadata {
            // A step is named after its line, which may hold a URL with
            // credentials: they never reach the progress display.
            name: crate::util::redact::text(&name),
            ignore_cache,
            description,
        }
    }

    pub(super) fn add(
        &mut self,
        op: Op,
        inputs: InputSet,
        platform: Option<Platform>,
        metadata: Metadata,
    ) -> std::result::Result<Input, LowerError> {
        let vertex = Vertex {
            op,
            inputs: inputs.0,
            platform,
        };
        Ok(self.def.add(vertex, metadata)?)
    }
}

/// `--chown` / USER as BuildKit's `WithUser` reads it: `user[:group]`, each
/// a number (or `root`) → id, else a name. An empty user is uid 0, as
/// BuildKit marshals an empty name.
pub(super) fn chown(spec: &str) -> ChownOpt {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    ChownOpt {
        user: user_opt(user),
        group: group.map(user_opt),
    }
}

fn user_opt(s: &str) -> UserOpt {
    if s == "root" || s.is_empty() {
        return UserOpt::Id(0);
    }
    // Go's ParseInt(s, 10, 32): a signed 32-bit number, stored unsigned.
    match s.parse::<i32>() {
        Ok(n) => UserOpt::Id(n as u32),
        Err(_) => UserOpt::Name(s.to_string()),
    }
}

/// A JSON array of strings (a `Value` always renders).
fn json_array(items: &[&String]) -> String {
    serde_json::Value::from(items.iter().map(|s| s.as_str()).collect::<Vec<_>>()).to_string()
}

/// Go's `path.Base`.
pub(super) fn go_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}
