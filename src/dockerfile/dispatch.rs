//! Evaluating one stage's instructions in order, as BuildKit's dispatcher
//! does before it emits LLB: word expansion against the environment in
//! force, the image config each instruction changes (ENV, LABEL, USER,
//! WORKDIR, CMD/ENTRYPOINT with the stage's SHELL, EXPOSE, VOLUME,
//! STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD, MAINTAINER), ARG values, the
//! history entry BuildKit writes for each, and what RUN/COPY/ADD need later
//! (their environment, working directory, user, argv and resolved paths).
//!
//! It owns the per-stage state only; splitting stages, resolving bases and
//! dependencies is `stages`' job. No I/O: it must never import the solver,
//! snapshotter, runner or rootless layers.

use std::time::Duration;

use super::args::{stage_arg_value, BuildArgs, NON_ENV_ARGS};
use super::config_values::{
    go_duration, go_list, go_quoted_list, normalize_workdir, parse_ports, resolve_dest,
    rfc3339_utc, validate_signal,
};
use super::error::{Error, Result};
use super::heredoc::{chomp_heredoc_content, must_parse_heredoc};
use super::instructions::{
    Add, Chmod, Copy, Health, Instruction, InstructionError, Run, ShellOrExec,
};
use super::location::Range;
use super::shell::{EnvGetter, EnvList, Lex};
use super::stage_error::StageError;
use crate::image::config::{Empty, HealthConfig, History};
use crate::image::{Image, Platform};

/// BuildKit's marker in every history entry it writes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// What a stage-level instruction refers to outside its stage: another
/// stage (by index) or an image (normalised reference).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    Stage(usize),
    Image(String),
    /// A named build context (`--build-context NAME=…`), by the key the
    /// target platform chose (`NAME`, or `NAME::PLATFORM` when scoped).
    Context(String),
}

/// One evaluated instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The instruction with its words expanded (RUN's command line is left
    /// to the shell; EXPOSE keeps its words, see the image config).
    pub instruction: Instruction,
    /// It came from a base image's (or base stage's) ONBUILD trigger.
    pub onbuild: bool,
    /// The environment in force when it runs: the image's ENV plus the ARG
    /// values declared so far (what BuildKit's LLB state carries).
    pub env: EnvList,
    pub workdir: String,
    pub user: String,
    pub platform: Platform,
    /// What the build must do beyond changing the config.
    pub action: Action,
}

/// The filesystem work a step asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Only the image config changes.
    Config,
    /// `WORKDIR` creates its directory (BuildKit skips `/`).
    Mkdir(String),
    Run(RunAction),
    Copy(CopyAction),
}

/// What RUN executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAction {
    /// The final argv: shell-form commands wrapped with the stage's SHELL,
    /// heredoc scripts folded in as BuildKit does.
    pub args: Vec<String>,
    /// A single heredoc starting with `#!`: written to this file (mounted
    /// read-only under `/dev/pipes/`) and executed as `args[0]`.
    pub script: Option<InlineScript>,
    /// Per `--mount`, the stage or image it takes files from.
    pub mount_sources: Vec<Option<Source>>,
}

/// A heredoc script RUN executes as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineScript {
    pub name: String,
    pub data: String,
}

/// What COPY/ADD copies where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyAction {
    /// `COPY --from`: the stage or image to copy from; `None` for the build
    /// context (and for ADD).
    pub source: Option<Source>,
    /// The destination resolved against the working directory, trailing
    /// `/` kept.
    pub dest: String,
    pub chmod: Option<Chmod>,
}

/// The state BuildKit threads through a stage: the image config being
/// built plus what its LLB state carries (environment, directory, user,
/// declared ARGs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageState {
    pub image: Image,
    pub env: EnvList,
    pub workdir: String,
    pub user: String,
    pub platform: Platform,
    /// ARGs declared in this stage or its base stages, with their values.
    pub build_args: Vec<(String, Option<String>)>,
    /// CMD was set in this stage (an ENTRYPOINT then keeps it).
    cmd_set: bool,
}

/// Stage-independent inputs of the dispatcher.
pub struct DispatchContext<'a> {
    pub lex: &'a Lex,
    pub globals: &'a EnvList,
    pub build_args: &'a BuildArgs,
    /// SOURCE_DATE_EPOCH, for history timestamps.
    pub epoch: Option<i64>,
}

/// Where an instruction's external references point, and whether those
/// stages were already evaluated (BuildKit needs them defined earlier).
#[derive(Debug, Clone, Default)]
pub struct StepSources {
    /// COPY `--from`: the source, and whether it is ready.
    pub copy_from: Option<(Source, bool)>,
    /// RUN, per mount.
    pub mounts: Vec<Option<(Source, bool)>>,
}

impl StageState {
    /// The start of a stage built on an image (or scratch): its config,
    /// with PATH ensured, its ENV as the environment, its WORKDIR and
    /// USER in force. Triggers are the caller's business and are cleared.
    pub fn from_image(mut image: Image, platform: Platform) -> StageState {
        image.config.on_build.clear();
        let state = StageState {
            image,
            env: EnvList::new(),
            workdir: "/".to_string(),
            user: String::new(),
            platform,
            build_args: Vec::new(),
            cmd_set: false,
        };
        state.init()
    }

    /// The start of a stage built on an earlier stage: everything that
    /// stage ended with, its ARG values included, but not its ONBUILD
    /// triggers (they run here instead).
    pub fn from_stage(base: &StageState) -> StageState {
        let mut state = base.clone();
        state.image.config.on_build.clear();
        state.cmd_set = false;
        state.init()
    }

    /// BuildKit's preparation of every stage before its first instruction.
    fn init(mut self) -> StageState {
        let os = self.image.os.clone();
        if os != "windows" && !self.image.config.env.iter().any(|e| env_key(e) == "PATH") {
            self.image
                .config
                .env
                .push(format!("PATH={}", crate::image::config::DEFAULT_PATH));
        }
        for entry in &self.image.config.env {
            let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            self.env.set(k, v);
        }
        if !self.image.config.working_dir.is_empty() {
            let current = self.image.config.working_dir.clone();
            let wd = normalize_workdir(&current, &current);
            self.image.config.working_dir = wd.clone();
            self.workdir = wd;
        }
        if !self.image.config.user.is_empty() {
            self.user = self.image.config.user.clone();
        }
        self
    }

    /// Evaluates one instruction: expands it, applies it to the config,
    /// records history. Errors carry the instruction's location.
    pub fn dispatch(
        &mut self,
        mut instruction: Instruction,
        onbuild: bool,
        sources: &StepSources,
        stage_name: &str,
        ctx: &DispatchContext<'_>,
    ) -> Result<Step> {
        let location = instruction.location();
        let at = |e: Error| locate(e, location);
        // ARG defaults are expanded by the ARG itself, only when used.
        if instruction.supports_expansion() {
            let env = self.env.clone();
            instruction
                .expand(&mut |word: &str| {
                    ctx.lex
                        .process_word(word, &env)
                        .map_err(|e| Error::new(e, location))
                })
                .map_err(at)?;
            // Heredoc bodies keep their quotes, with the default escape.
            let mut raw = Lex::new('\\');
            raw.skip_process_quotes = true;
            instruction
                .expand_raw(&mut |word: &str| {
                    raw.process_word(word, &env)
                        .map_err(|e| Error::new(e, location))
                })
                .map_err(at)?;
        }

        // The step runs in the state as it was before the instruction.
        let (env, workdir, user) = (self.env.clone(), self.workdir.clone(), self.user.clone());
        let mut action = Action::Config;
        let fail = |kind: StageError| Error::new(kind, location);

        match &mut instruction {
            Instruction::From(_) => {}
            Instruction::Maintainer(c) => {
                self.image.author = Some(c.maintainer.clone());
                self.commit(format!("MAINTAINER {}", c.maintainer), false, ctx);
            }
            Instruction::Env(c) => {
                let mut msg = String::from("ENV");
                for kv in &c.env {
                    msg.push(' ');
                    msg.push_str(&kv.to_string());
                    self.env.set(kv.key.clone(), kv.value.clone());
                    add_env(&mut self.image.config.env, &kv.key, &kv.value);
                }
                self.commit(msg, false, ctx);
            }
            Instruction::Run(c) => {
                let run = self.dispatch_run(c, sources, location)?;
                let msg = format!(
                    "RUN {} # buildkit",
                    run_command_string(&run.args, &self.build_args, &self.env)
                );
                action = Action::Run(run);
                self.commit(msg, true, ctx);
            }
            Instruction::Workdir(c) => {
                let wd = normalize_workdir(&self.image.config.working_dir, &c.path);
                self.image.config.working_dir = wd.clone();
                self.workdir = wd.clone();
                let layer = wd != "/";
                if layer {
                    action = Action::Mkdir(wd.clone());
                }
                self.commit(format!("WORKDIR {wd}"), layer, ctx);
            }
            Instruction::Copy(c) => {
                let source = match &sources.copy_from {
                    Some((_, false)) => {
                        return Err(fail(StageError::CopyFromLaterStage {
                            from: c.from.clone(),
                            stage: stage_name.to_string(),
                        }))
                    }
                    Some((source, true)) => Some(source.clone()),
                    None => None,
                };
                let chmod = c.validate()?;
                if source.is_none() {
                    check_copy_sources(c).map_err(fail)?;
                }
                let msg = copy_message("COPY", c.parents, &c.chown, &c.chmod, c);
                action = Action::Copy(CopyAction {
                    source,
                    dest: resolve_dest(&self.workdir, &c.dest),
                    chmod,
                });
                self.commit(msg, true, ctx);
            }
            Instruction::Add(c) => {
                let chmod = c.validate(&|s| git_source(s).is_some())?;
                let msg = add_message(c);
                action = Action::Copy(CopyAction {
                    source: None,
                    dest: resolve_dest(&self.workdir, &c.dest),
                    chmod,
                });
                self.commit(msg, true, ctx);
            }
            Instruction::Label(c) => {
                let mut msg = String::from("LABEL");
                for kv in &c.labels {
                    self.image
                        .config
                        .labels
                        .insert(kv.key.clone(), kv.value.clone());
                    msg.push(' ');
                    msg.push_str(&kv.to_string());
                }
                self.commit(msg, false, ctx);
            }
            Instruction::Onbuild(c) => {
                // Stored for images built on this one; BuildKit writes no
                // history for it.
                self.image.config.on_build.push(c.expression.clone());
            }
            Instruction::Cmd(c) => {
                let args = self.command_line(&c.cmd);
                self.image.config.cmd = non_empty(args.clone());
                self.image.config.args_escaped = true;
                self.cmd_set = true;
                self.commit(format!("CMD {}", go_quoted_list(&args)), false, ctx);
            }
            Instruction::Entrypoint(c) => {
                let args = self.command_line(&c.cmd);
                self.image.config.entrypoint = non_empty(args.clone());
                // An inherited CMD was written for the old entrypoint.
                if !self.cmd_set {
                    self.image.config.cmd = None;
                }
                self.commit(format!("ENTRYPOINT {}", go_quoted_list(&args)), false, ctx);
            }
            Instruction::Healthcheck(c) => {
                let health = health_config(&c.health);
                let msg = format!("HEALTHCHECK {}", health_history(&health));
                self.image.config.healthcheck = Some(health);
                self.commit(msg, false, ctx);
            }
            Instruction::Expose(c) => {
                let mut words = Vec::new();
                for port in &c.ports {
                    words.extend(
                        ctx.lex
                            .process_words(port, &self.env)
                            .map_err(|e| Error::new(e, location))?,
                    );
                }
                let ports = parse_ports(&words).map_err(|e| fail(e.into()))?;
                for p in &ports {
                    self.image.config.exposed_ports.insert(p.clone(), Empty {});
                }
                self.commit(format!("EXPOSE {}", go_list(&ports)), false, ctx);
            }
            Instruction::User(c) => {
                self.user = c.user.clone();
                self.image.config.user = c.user.clone();
                self.commit(format!("USER {}", c.user), false, ctx);
            }
            Instruction::Volume(c) => {
                for v in &c.volumes {
                    // Expansion can empty a path that parsed fine.
                    if v.is_empty() {
                        return Err(Error::new(InstructionError::EmptyVolume, location));
                    }
                    self.image.config.volumes.insert(v.clone(), Empty {});
                }
                self.commit(format!("VOLUME {}", go_list(&c.volumes)), false, ctx);
            }
            Instruction::Stopsignal(c) => {
                validate_signal(&c.signal).map_err(|e| fail(StageError::StopSignal(e)))?;
                self.image.config.stop_signal = c.signal.clone();
                self.commit(format!("STOPSIGNAL {}", c.signal), false, ctx);
            }
            Instruction::Shell(c) => {
                self.image.config.shell = c.shell.clone();
                self.commit(format!("SHELL {}", go_list(&c.shell)), false, ctx);
            }
            Instruction::Arg(c) => {
                let mut parts = Vec::new();
                for arg in &mut c.args {
                    let (value, _) = stage_arg_value(
                        &arg.key,
                        arg.value.as_deref(),
                        ctx.build_args,
                        ctx.globals,
                        &self.env,
                        ctx.lex,
                    )
                    .map_err(|e| Error::new(e, location))?;
                    if let Some(v) = &value {
                        if !NON_ENV_ARGS.contains(&arg.key.as_str()) {
                            self.env.set(arg.key.clone(), v.clone());
                        }
                    }
                    parts.push(match &value {
                        Some(v) => format!("{}={v}", arg.key),
                        None => arg.key.clone(),
                    });
                    arg.value = value.clone();
                    self.build_args.push((arg.key.clone(), value));
                }
                self.commit(format!("ARG {}", parts.join(" ")), false, ctx);
            }
        }
        Ok(Step {
            instruction,
            onbuild,
            env,
            workdir,
            user,
            platform: self.platform.clone(),
            action,
        })
    }

    /// RUN's argv and mounts, as BuildKit builds them.
    fn dispatch_run(&self, run: &Run, sources: &StepSources, location: Range) -> Result<RunAction> {
        let mut mount_sources = Vec::with_capacity(run.mounts.len());
        for (i, mount) in run.mounts.iter().enumerate() {
            match sources.mounts.get(i).cloned().flatten() {
                Some((_, false)) => {
                    return Err(Error::new(
                        StageError::MountFromLaterStage {
                            from: mount.from.clone(),
                            target: mount.target.clone(),
                        },
                        location,
                    ))
                }
                Some((source, true)) => mount_sources.push(Some(source)),
                None => mount_sources.push(None),
            }
        }

        let mut args = run.cmd.args();
        let mut script = None;
        if !run.heredocs.is_empty() {
            if args.len() != 1 || !run.cmd.prepend_shell() {
                return Err(Error::new(
                    StageError::InvalidRunCommand(go_list(&args)),
                    location,
                ));
            }
            if must_parse_heredoc(&args[0]).is_some() {
                // The whole command is one heredoc: run its body.
                let file = &run.heredocs[0];
                let data = if file.chomp {
                    chomp_heredoc_content(&file.data)
                } else {
                    file.data.clone()
                };
                if self.image.os != "windows" && data.starts_with("#!") {
                    let path = format!("/dev/pipes/{}", file.name);
                    script = Some(InlineScript {
                        name: file.name.clone(),
                        data,
                    });
                    args = vec![super::config_values::path_clean(&path)];
                } else {
                    args = vec![data];
                }
            } else {
                // Heredocs inside a longer command go to the shell as
                // written.
                let mut text = args[0].clone();
                for file in &run.heredocs {
                    text.push('\n');
                    text.push_str(&file.data);
                    text.push_str(&file.name);
                }
                args = vec![text];
            }
        }
        if run.cmd.prepend_shell() {
            args = self.with_shell(&args);
        }
        Ok(RunAction {
            args,
            script,
            mount_sources,
        })
    }

    /// CMD/ENTRYPOINT argv: shell form goes through the stage's SHELL.
    fn command_line(&self, cmd: &ShellOrExec) -> Vec<String> {
        let args = cmd.args();
        if cmd.prepend_shell() {
            self.with_shell(&args)
        } else {
            args
        }
    }

    /// `SHELL` (or the OS default) followed by the command as one word.
    fn with_shell(&self, args: &[String]) -> Vec<String> {
        let mut shell = if self.image.config.shell.is_empty() {
            default_shell(&self.image.os)
        } else {
            self.image.config.shell.clone()
        };
        shell.push(args.join(" "));
        shell
    }

    fn commit(&mut self, created_by: String, layer: bool, ctx: &DispatchContext<'_>) {
        self.image.history.push(History {
            created: ctx.epoch.map(rfc3339_utc),
            created_by,
            comment: Some(HISTORY_COMMENT.to_string()),
            empty_layer: !layer,
        });
    }
}

/// The shell BuildKit uses when SHELL was not set.
pub fn default_shell(os: &str) -> Vec<String> {
    if os == "windows" {
        vec!["cmd".into(), "/S".into(), "/C".into()]
    } else {
        vec!["/bin/sh".into(), "-c".into()]
    }
}

/// An empty argv is stored as "unset": Go omits empty lists from the
/// config JSON, so BuildKit's `CMD []` and no CMD look the same.
fn non_empty(args: Vec<String>) -> Option<Vec<String>> {
    (!args.is_empty()).then_some(args)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Replaces the first entry for `key` in place, else appends: BuildKit's
/// order-preserving update of the config's Env.
fn add_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| env_key(e) == key) {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// RUN's history text: `|N k=v … ` before the argv when ARGs are in
/// scope, each value as the environment has it (an ENV may have replaced
/// it), so a rebuild with other build args shows up in history.
pub fn run_command_string(
    args: &[String],
    build_args: &[(String, Option<String>)],
    env: &EnvList,
) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in build_args {
        let v = env
            .get(key)
            .map(str::to_string)
            .unwrap_or_else(|| value.clone().unwrap_or_default());
        match pairs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => pairs.push((key.clone(), v)),
        }
    }
    let mut words: Vec<String> = Vec::new();
    if !pairs.is_empty() {
        words.push(format!("|{}", pairs.len()));
        words.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    words.extend(args.iter().cloned());
    words.join(" ")
}

fn copy_message(keyword: &str, parents: bool, chown: &str, chmod: &str, c: &Copy) -> String {
    let mut msg = String::from(keyword);
    if parents {
        msg.push_str(" --parents");
    }
    push_common(&mut msg, chown, chmod);
    push_paths(
        &mut msg,
        &c.sources,
        c.heredocs.iter().map(|h| h.path.as_str()),
        &c.dest,
    );
    msg
}

fn add_message(c: &Add) -> String {
    let mut msg = String::from("ADD");
    push_common(&mut msg, &c.chown, &c.chmod);
    push_paths(
        &mut msg,
        &c.sources,
        c.heredocs.iter().map(|h| h.path.as_str()),
        &c.dest,
    );
    msg
}

fn push_common(msg: &mut String, chown: &str, chmod: &str) {
    if !chown.is_empty() {
        msg.push_str(" --chown=");
        msg.push_str(chown);
    }
    if !chmod.is_empty() {
        msg.push_str(" --chmod=");
        msg.push_str(chmod);
    }
}

fn push_paths<'a>(
    msg: &mut String,
    sources: &[String],
    heredocs: impl Iterator<Item = &'a str>,
    dest: &str,
) {
    for src in sources {
        msg.push(' ');
        msg.push_str(src);
    }
    for name in heredocs {
        msg.push_str(" <<");
        msg.push_str(name);
    }
    msg.push(' ');
    msg.push_str(dest);
    msg.push_str(" # buildkit");
}

/// COPY takes files from the context or a stage; remote sources are ADD's.
fn check_copy_sources(c: &Copy) -> std::result::Result<(), StageError> {
    for src in &c.sources {
        match git_source(src) {
            Some(false) => return Err(StageError::CopyGit),
            Some(true) => {}
            None if src.starts_with("http://") || src.starts_with("https://") => {
                return Err(StageError::CopyUrl)
            }
            None => {}
        }
    }
    Ok(())
}

/// Whether a source names a git repository, and if so whether it could
/// also be a local path (`github.com/…`, which COPY treats as local). An
/// approximation of BuildKit's git-URL parser: known git schemes, HTTP(S)
/// URLs whose path ends in `.git`, and scp-style `user@host:path`.
pub fn git_source(src: &str) -> Option<bool> {
    if src.starts_with("./") || src.starts_with("../") {
        return None;
    }
    if src.starts_with("github.com/") {
        return Some(true);
    }
    if let Some((scheme, rest)) = src.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "ssh" | "git" => Some(false),
            "http" | "https" => {
                let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
                rest[..path_end].ends_with(".git").then_some(false)
            }
            _ => None,
        };
    }
    let (user, rest) = src.split_once('@')?;
    let (host, _) = rest.split_once(':')?;
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    (word(user) && word(host)).then_some(false)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn health_config(health: &Health) -> HealthConfig {
    match health {
        Health::None => HealthConfig {
            test: health.test(),
            ..HealthConfig::default()
        },
        Health::Check(c) => HealthConfig {
            test: health.test(),
            interval: nanos(c.interval),
            timeout: nanos(c.timeout),
            start_period: nanos(c.start_period),
            start_interval: nanos(c.start_interval),
            retries: i64::from(c.retries),
        },
    }
}

/// Go's `%+v` of the health config struct.
fn health_history(h: &HealthConfig) -> String {
    format!(
        "{{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        go_list(&h.test),
        go_duration(h.interval),
        go_duration(h.timeout),
        go_duration(h.start_period),
        go_duration(h.start_interval),
        h.retries
    )
}

/// Gives an error the instruction's location if it has none yet.
fn locate(err: Error, location: Range) -> Error {
    if err.location.is_empty() {
        err.with_location(location)
    } else {
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_history_lists_args_in_scope() {
        let env: EnvList = [("A", "from-env"), ("B", "2")].into_iter().collect();
        let build_args = vec![
            ("A".to_string(), Some("1".to_string())),
            ("C".to_string(), None),
            ("B".to_string(), Some("x".to_string())),
            ("A".to_string(), Some("3".to_string())),
        ];
        let args = vec!["/bin/sh".to_string(), "-c".into(), "echo hi".into()];
        assert_eq!(
            run_command_string(&args, &build_args, &env),
            "|3 A=from-env C= B=2 /bin/sh -c echo hi"
        );
        assert_eq!(run_command_string(&args, &[], &env), "/bin/sh -c echo hi");
    }

    #[test]
    fn add_env_replaces_in_place() {
        let mut env = vec!["key1=val1".to_string(), "key2=val2".into(), "key3".into()];
        add_env(&mut env, "key1", "value1");
        add_env(&mut env, "key3", "val3");
        add_env(&mut env, "key4", "v");
        assert_eq!(env, ["key1=value1", "key2=val2", "key3=val3", "key4=v"]);
    }

    #[test]
    fn git_sources() {
        for (src, want) in [
            ("https://github.com/o/r.git", Some(false)),
            ("https://github.com/o/r.git#v1:dir", Some(false)),
            ("https://example.com/file.tar.gz", None),
            ("git@github.com:o/r.git", Some(false)),
            ("ssh://git@host/r", Some(false)),
            ("git://host/r", Some(false)),
            ("github.com/o/r", Some(true)),
            ("./dir", None),
            ("dir/file", None),
            ("me@host", None),
        ] {
            assert_eq!(git_source(src), want, "{src}");
        }
    }

    #[test]
    fn health_history_is_go_struct_syntax() {
        let h = HealthConfig {
            test: vec!["bin".into(), "-c".into(), "exit 0".into()],
            interval: 1_000_000_000,
            timeout: 10_000_000_000,
            start_period: 3_000_000_000,
            start_interval: 100_000_000,
            retries: 5,
        };
        assert_eq!(
            health_history(&h),
            "{Test:[bin -c exit 0] Interval:1s Timeout:10s StartPeriod:3s StartInterval:100ms Retries:5}"
        );
    }

    #[test]
    fn stage_init_adds_path_and_takes_image_settings() {
        let mut image = Image {
            os: "linux".into(),
            ..Image::default()
        };
        image.config.env = vec!["A=1".into()];
        image.config.working_dir = "rel".into();
        image.config.user = "me".into();
        image.config.on_build = vec!["RUN x".into()];
        let s = StageState::from_image(image, Platform::host());
        assert_eq!(
            s.image.config.env,
            [
                "A=1".to_string(),
                format!("PATH={}", crate::image::config::DEFAULT_PATH)
            ]
        );
        assert_eq!(s.env.get("A"), Some("1"));
        // A relative base WORKDIR is resolved against itself, as BuildKit does.
        assert_eq!(s.workdir, "/rel/rel");
        assert_eq!(s.user, "me");
        assert!(s.image.config.on_build.is_empty());

        let win = Image {
            os: "windows".into(),
            ..Image::default()
        };
        let s = StageState::from_image(win, Platform::host());
        assert!(s.image.config.env.is_empty());
        assert_eq!(s.workdir, "/");
    }
}
