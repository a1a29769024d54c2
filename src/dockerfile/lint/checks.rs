//! When each rule fires: a walk over the typed instructions that follows
//! the planner's evaluation closely enough to know, per stage, which
//! variables are set, whether a SHELL or an absolute WORKDIR was given, and
//! which CMD/ENTRYPOINT/HEALTHCHECK came before.
//!
//! Rules about the text (casing, MAINTAINER, legacy `ENV k v`, stage names,
//! FROM lines) look at every stage; rules about evaluation (UndefinedVar,
//! JSONArgsRecommended, WorkdirRelativePath, MultipleInstructionsDisallowed)
//! only at the stages the build evaluates, as BuildKit only dispatches
//! those. A stage whose base image config is unknown (a static check
//! contacts no registry) is not checked for UndefinedVar: its image may set
//! any variable.

use std::collections::BTreeSet;

use super::config::CheckConfig;
use super::rules::{self, Rule};
use super::{Finding, LintInput};
use crate::dockerfile::args::{default_args, eval_meta_args, BuildArgs, MetaArg};
use crate::dockerfile::instructions::{parse_instruction, Instruction, Meta};
use crate::dockerfile::location::Range;
use crate::dockerfile::node::{Ast, Node};
use crate::dockerfile::shell::{EnvGetter, EnvList, Lex};
use crate::dockerfile::suggest::suggest;
use crate::image::reference::Reference;
use crate::image::Platform;

/// Build args that never become environment variables.
const NON_ENV_ARGS: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// Added when a base sets no PATH, as the planner does.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct Stage<'a> {
    node: &'a Node,
    from: crate::dockerfile::instructions::From,
    commands: Vec<Instruction>,
}

/// What a stage leaves for stages built on it.
#[derive(Clone)]
struct StageEnd {
    /// `None` when the base image's config is unknown.
    env: Option<EnvList>,
    declared: BTreeSet<String>,
    workdir_set: bool,
    shell_set: bool,
}

pub(super) struct Checker<'a> {
    base: &'a CheckConfig,
    pub findings: Vec<Finding>,
}

impl Checker<'_> {
    fn report(&mut self, config: &CheckConfig, rule: &'static Rule, at: Range, message: String) {
        if config.enabled(rule.name) {
            self.findings.push(Finding {
                rule,
                message,
                location: at,
            });
        }
    }
}

pub(super) fn run(ast: &Ast, input: &LintInput<'_>, base: &CheckConfig) -> Vec<Finding> {
    let mut c = Checker {
        base,
        findings: Vec::new(),
    };
    for w in &ast.warnings {
        if w.rule == rules::NO_EMPTY_CONTINUATION.name {
            let message = rules::EMPTY_CONTINUATION.to_string();
            c.report(base, &rules::NO_EMPTY_CONTINUATION, w.location, message);
        }
    }
    let (metas, stages) = split(ast, &mut c);
    if stages.is_empty() {
        return c.findings;
    }
    casing(&stages, &mut c);

    let build_args = BuildArgs::new(input.build_args);
    let lex = Lex::new(ast.escape);
    let target = input.target.map(str::to_string).unwrap_or_else(|| {
        stages
            .last()
            .and_then(|s| s.from.stage_name.clone())
            .unwrap_or_default()
    });
    let target_platform = input.target_platform.unwrap_or(input.build_platform);
    let defaults = default_args(input.build_platform, target_platform, &target, &build_args);
    let meta_args: Vec<MetaArg> = metas
        .iter()
        .flat_map(|a| {
            a.args.iter().map(|kv| MetaArg {
                key: kv.key.clone(),
                default: kv.value.clone(),
                location: a.meta.location,
            })
        })
        .collect();
    for a in &metas {
        for kv in &a.args {
            secret_key(&mut c, base, "ARG", &kv.key, a.meta.location);
        }
    }
    invalid_defaults(&stages, &lex, &defaults, &meta_args, &mut c);
    let Ok((globals, _)) = eval_meta_args(defaults, &lex, &meta_args, &build_args) else {
        return c.findings;
    };
    let mut from_keys: Vec<String> = globals.keys();
    from_keys.extend(meta_args.iter().map(|m| m.key.clone()));

    let mut ends: Vec<Option<StageEnd>> = Vec::with_capacity(stages.len());
    for (i, stage) in stages.iter().enumerate() {
        let config = base.with_comments(&stage.from.meta.comments);
        let base_stage = from_line(stage, &lex, &globals, &from_keys, &config, &mut c);
        let evaluated = input.all_stages || input.needed.is_none_or(|n| n.get(i) == Some(&true));
        if !evaluated {
            ends.push(None);
            continue;
        }
        let start = match base_stage {
            Some(name) => {
                let parent = stages[..i].iter().rposition(|s| {
                    s.from.stage_name.as_deref() == Some(name.to_lowercase().as_str())
                });
                match parent {
                    Some(j) => ends[j].clone().unwrap_or(StageEnd {
                        env: None,
                        declared: BTreeSet::new(),
                        workdir_set: false,
                        shell_set: false,
                    }),
                    None if name.eq_ignore_ascii_case("scratch") => StageEnd {
                        env: Some(with_path(EnvList::new())),
                        declared: BTreeSet::new(),
                        workdir_set: false,
                        shell_set: false,
                    },
                    None => {
                        let image = input
                            .base_images
                            .and_then(|b| b.get(i))
                            .and_then(Option::as_ref);
                        StageEnd {
                            env: image.map(|img| {
                                with_path(EnvList::from_assignments(img.config.env.iter()))
                            }),
                            declared: BTreeSet::new(),
                            workdir_set: false,
                            shell_set: image.is_some_and(|img| !img.config.shell.is_empty()),
                        }
                    }
                }
            }
            None => StageEnd {
                env: None,
                declared: BTreeSet::new(),
                workdir_set: false,
                shell_set: false,
            },
        };
        let end = commands(stage, start, &lex, &globals, &build_args, &mut c);
        ends.push(Some(end));
    }
    c.findings
}

fn with_path(mut env: EnvList) -> EnvList {
    if env.get("PATH").is_none() {
        env.set("PATH", DEFAULT_PATH);
    }
    env
}

/// Types the instructions: ARGs before the first FROM, then stages. Rules
/// about single instructions' text are checked here, for every stage.
fn split<'a>(
    ast: &'a Ast,
    c: &mut Checker<'_>,
) -> (Vec<crate::dockerfile::instructions::Arg>, Vec<Stage<'a>>) {
    let mut metas = Vec::new();
    let mut stages: Vec<Stage<'a>> = Vec::new();
    for node in &ast.children {
        // An instruction that does not parse fails the build elsewhere.
        let Ok(instruction) = parse_instruction(node) else {
            continue;
        };
        match instruction {
            Instruction::From(from) => {
                from_text(node, &from.meta, c);
                stages.push(Stage {
                    node,
                    from,
                    commands: Vec::new(),
                });
            }
            other => {
                if let Instruction::Maintainer(m) = &other {
                    let base = c.base;
                    let msg = rules::MAINTAINER.to_string();
                    c.report(base, &rules::MAINTAINER_DEPRECATED, m.meta.location, msg);
                }
                match (stages.last_mut(), other) {
                    (Some(stage), cmd) => stage.commands.push(cmd),
                    (None, Instruction::Arg(arg)) => metas.push(arg),
                    (None, _) => {}
                }
            }
        }
    }
    (metas, stages)
}

/// StageNameCasing and FromAsCasing: `FROM image AS name` as written.
fn from_text(node: &Node, meta: &Meta, c: &mut Checker<'_>) {
    let [_, as_word, name] = node.next.as_slice() else {
        return;
    };
    let base = c.base;
    if *name != name.to_lowercase() {
        let msg = rules::stage_name_casing(name);
        c.report(base, &rules::STAGE_NAME_CASING, meta.location, msg);
    }
    let kw = &meta.keyword;
    let lower = *kw == kw.to_lowercase();
    let upper = *kw == kw.to_uppercase();
    let mismatch = (lower && *as_word != as_word.to_lowercase())
        || (!lower && upper && *as_word != as_word.to_uppercase());
    if mismatch {
        let msg = rules::from_as_casing(kw, as_word);
        c.report(base, &rules::FROM_AS_CASING, meta.location, msg);
    }
}

fn self_consistent(s: &str) -> bool {
    s == s.to_lowercase() || s == s.to_uppercase()
}

/// ConsistentInstructionCasing: every keyword against the file's majority.
fn casing(stages: &[Stage<'_>], c: &mut Checker<'_>) {
    let metas = || {
        stages
            .iter()
            .flat_map(|s| std::iter::once(&s.from.meta).chain(s.commands.iter().map(|i| i.meta())))
    };
    let (mut lower, mut upper) = (0, 0);
    for meta in metas() {
        let kw = &meta.keyword;
        if self_consistent(kw) {
            if *kw == kw.to_lowercase() {
                lower += 1;
            } else {
                upper += 1;
            }
        }
    }
    let majority_lower = lower > upper;
    let base = c.base;
    for meta in metas() {
        let kw = &meta.keyword;
        let casing = if majority_lower && *kw != kw.to_lowercase() {
            "lowercase"
        } else if !majority_lower && *kw != kw.to_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        let msg = rules::consistent_instruction_casing(kw, casing);
        c.report(
            base,
            &rules::CONSISTENT_INSTRUCTION_CASING,
            meta.location,
            msg,
        );
    }
}

/// InvalidDefaultArgInFrom: base names must stay valid with no build args.
fn invalid_defaults(
    stages: &[Stage<'_>],
    lex: &Lex,
    defaults: &EnvList,
    metas: &[MetaArg],
    c: &mut Checker<'_>,
) {
    let Ok((args, _)) = eval_meta_args(defaults.clone(), lex, metas, &BuildArgs::new(&[])) else {
        return;
    };
    let base = c.base;
    for stage in stages {
        let Ok(name) = lex.process_word(&stage.from.base_name, &args) else {
            return;
        };
        if Reference::parse_normalized(&name).is_err() {
            let msg = rules::invalid_default_arg_in_from(&stage.from.base_name);
            c.report(
                base,
                &rules::INVALID_DEFAULT_ARG_IN_FROM,
                stage.from.meta.location,
                msg,
            );
        }
    }
}

/// The FROM line's rules; returns the expanded base name.
fn from_line(
    stage: &Stage<'_>,
    lex: &Lex,
    globals: &EnvList,
    keys: &[String],
    config: &CheckConfig,
    c: &mut Checker<'_>,
) -> Option<String> {
    let from = &stage.from;
    let at = from.meta.location;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let undeclared = |unmatched: &BTreeSet<String>, c: &mut Checker<'_>| {
        for arg in unmatched {
            if keys.contains(arg) {
                continue;
            }
            let hint = suggest(arg, &key_refs, true);
            let msg = rules::undefined_arg_in_from(arg, hint.as_deref());
            c.report(config, &rules::UNDEFINED_ARG_IN_FROM, at, msg);
        }
    };
    let name = lex.process_word_with_matches(&from.base_name, globals);
    if let Ok(x) = &name {
        undeclared(&x.unmatched, c);
    }
    if !from.platform.is_empty() {
        if let Ok(x) = lex.process_word_with_matches(&from.platform, globals) {
            undeclared(&x.unmatched, c);
            let only_target = x.unmatched.is_empty()
                && x.matched.len() == 1
                && x.matched.contains("TARGETPLATFORM");
            if only_target && globals.get("TARGETPLATFORM") == Some(x.result.as_str()) {
                let msg = rules::redundant_target_platform(&from.platform);
                c.report(config, &rules::REDUNDANT_TARGET_PLATFORM, at, msg);
            }
            if x.matched.is_empty() && x.unmatched.is_empty() {
                const_platform(from.stage_name.as_deref(), &x.result, at, config, c);
            }
        }
    }
    let _ = stage.node;
    name.ok().map(|x| x.result)
}

/// FromPlatformFlagConstDisallowed, unless the stage is named after the
/// platform (`FROM --platform=linux/arm64 x AS build-arm64`).
fn const_platform(
    stage_name: Option<&str>,
    platform: &str,
    at: Range,
    config: &CheckConfig,
    c: &mut Checker<'_>,
) {
    let Ok(p) = platform.parse::<Platform>() else {
        return;
    };
    let name = stage_name.unwrap_or_default();
    if name.contains(&p.os) || name.contains(&p.architecture) {
        return;
    }
    let msg = rules::from_platform_const(platform);
    c.report(config, &rules::FROM_PLATFORM_FLAG_CONST_DISALLOWED, at, msg);
}

/// SecretsUsedInArgOrEnv: a name made of `_`-separated words of which the
/// first or last (or the whole) is a secret word, and none an allowed one.
fn secret_key(c: &mut Checker<'_>, config: &CheckConfig, instruction: &str, key: &str, at: Range) {
    const DENY: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: [&str; 3] = ["public", "file", "version"];
    let lower = key.to_lowercase();
    // `(?:_|^)word(?:_|$)`: the word as a whole `_`-separated part.
    let has = |words: &[&str]| lower.split('_').any(|part| words.contains(&part));
    if has(&DENY) && !has(&ALLOW) {
        let msg = rules::secrets_used(instruction, key);
        c.report(config, &rules::SECRETS_USED_IN_ARG_OR_ENV, at, msg);
    }
}

/// The commands of one evaluated stage.
fn commands(
    stage: &Stage<'_>,
    mut state: StageEnd,
    lex: &Lex,
    globals: &EnvList,
    build_args: &BuildArgs,
    c: &mut Checker<'_>,
) -> StageEnd {
    let mut used_once: [Option<Range>; 3] = [None, None, None];
    for instruction in &stage.commands {
        let meta = instruction.meta();
        let config = c.base.with_comments(&meta.comments);
        let at = meta.location;
        let mut unmatched = BTreeSet::new();
        let mut expanded = instruction.clone();
        if instruction.supports_expansion() {
            if let Some(env) = &state.env {
                let mut collect =
                    |lex: &Lex, word: &str| match lex.process_word_with_matches(word, env) {
                        Ok(x) => {
                            unmatched.extend(x.unmatched);
                            Ok(x.result)
                        }
                        // Errors are reported by the planner; keep the word.
                        Err(_) => Ok(word.to_string()),
                    };
                let _ = expanded.expand(&mut |w: &str| collect(lex, w));
                let mut raw = Lex::new('\\');
                raw.skip_process_quotes = true;
                let _ = expanded.expand_raw(&mut |w: &str| collect(&raw, w));
            }
        }
        undefined(&unmatched, &state, &config, at, c);
        match &expanded {
            Instruction::Env(e) => {
                for kv in &e.env {
                    if kv.no_delim {
                        let msg = rules::legacy_key_value(&meta.keyword);
                        c.report(&config, &rules::LEGACY_KEY_VALUE_FORMAT, at, msg);
                    }
                    secret_key(c, &config, "ENV", &kv.key, at);
                    if let Some(env) = &mut state.env {
                        env.set(kv.key.clone(), kv.value.clone());
                    }
                }
            }
            Instruction::Label(l) => {
                for kv in &l.labels {
                    if kv.no_delim {
                        let msg = rules::legacy_key_value(&meta.keyword);
                        c.report(&config, &rules::LEGACY_KEY_VALUE_FORMAT, at, msg);
                    }
                }
            }
            Instruction::Arg(a) => {
                for kv in &a.args {
                    secret_key(c, &config, "ARG", &kv.key, at);
                    let value = match (build_args.get(&kv.key), &kv.value) {
                        (Some(v), _) => Some(v.to_string()),
                        (None, Some(default)) => state.env.as_ref().map(|env| {
                            match lex.process_word_with_matches(default, env) {
                                Ok(x) => {
                                    undefined(&x.unmatched, &state, &config, at, c);
                                    x.result
                                }
                                Err(_) => default.clone(),
                            }
                        }),
                        (None, None) => globals.get(&kv.key).map(str::to_string),
                    };
                    if let (Some(env), Some(v)) = (&mut state.env, value) {
                        if !NON_ENV_ARGS.contains(&kv.key.as_str()) {
                            env.set(kv.key.clone(), v);
                        }
                    }
                    state.declared.insert(kv.key.clone());
                }
            }
            Instruction::Workdir(w) => {
                if !state.workdir_set && !w.path.starts_with('/') {
                    let msg = rules::workdir_relative_path(&w.path);
                    c.report(&config, &rules::WORKDIR_RELATIVE_PATH, at, msg);
                }
                state.workdir_set = true;
            }
            Instruction::Shell(_) => state.shell_set = true,
            Instruction::Expose(e) => {
                for spec in &e.ports {
                    let words = match &state.env {
                        Some(env) => lex.process_words(spec, env).unwrap_or_default(),
                        None => vec![spec.clone()],
                    };
                    for port in words {
                        expose(&port, at, &config, c);
                    }
                }
            }
            Instruction::Cmd(cmd) => {
                used_once_check(&mut used_once[0], &meta.keyword, at, &config, c);
                json_args(
                    cmd.cmd.prepend_shell(),
                    &state,
                    &meta.keyword,
                    at,
                    &config,
                    c,
                );
            }
            Instruction::Entrypoint(ep) => {
                used_once_check(&mut used_once[1], &meta.keyword, at, &config, c);
                json_args(
                    ep.cmd.prepend_shell(),
                    &state,
                    &meta.keyword,
                    at,
                    &config,
                    c,
                );
            }
            Instruction::Healthcheck(_) => {
                used_once_check(&mut used_once[2], &meta.keyword, at, &config, c);
            }
            _ => {}
        }
    }
    state
}

/// ExposeProtoCasing and ExposeInvalidFormat for one `[ip:][host:]port[/proto]`
/// (an unknown protocol is the planner's error, not a finding).
fn expose(spec: &str, at: Range, config: &CheckConfig, c: &mut Checker<'_>) {
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip_or_host, container) = match parts.as_slice() {
        [port] => (false, *port),
        [.., port] => (true, *port),
        [] => return,
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    let known = ["", "tcp", "udp", "sctp"].contains(&proto.to_lowercase().as_str());
    if port.is_empty() || !known {
        return;
    }
    if proto != proto.to_lowercase() {
        let msg = rules::expose_proto_casing(spec);
        c.report(config, &rules::EXPOSE_PROTO_CASING, at, msg);
    }
    if ip_or_host {
        let msg = rules::expose_invalid_format(spec);
        c.report(config, &rules::EXPOSE_INVALID_FORMAT, at, msg);
    }
}

/// UndefinedVar for the variables an expansion did not find, unless the
/// stage declared them with ARG (a value may still come at build time).
fn undefined(
    unmatched: &BTreeSet<String>,
    state: &StageEnd,
    config: &CheckConfig,
    at: Range,
    c: &mut Checker<'_>,
) {
    let Some(env) = &state.env else {
        return;
    };
    let keys = env.keys();
    let options: Vec<&str> = keys.iter().map(String::as_str).collect();
    for var in unmatched {
        if state.declared.contains(var) || NON_ENV_ARGS.contains(&var.as_str()) {
            continue;
        }
        let hint = suggest(var, &options, true);
        let msg = rules::undefined_var(var, hint.as_deref());
        c.report(config, &rules::UNDEFINED_VAR, at, msg);
    }
}

/// MultipleInstructionsDisallowed, reported at the earlier instruction:
/// it is the one that has no effect.
fn used_once_check(
    previous: &mut Option<Range>,
    keyword: &str,
    at: Range,
    config: &CheckConfig,
    c: &mut Checker<'_>,
) {
    if let Some(before) = previous.replace(at) {
        let msg = rules::multiple_instructions(keyword);
        c.report(
            config,
            &rules::MULTIPLE_INSTRUCTIONS_DISALLOWED,
            before,
            msg,
        );
    }
}

fn json_args(
    shell_form: bool,
    state: &StageEnd,
    keyword: &str,
    at: Range,
    config: &CheckConfig,
    c: &mut Checker<'_>,
) {
    if shell_form && !state.shell_set {
        let msg = rules::json_args_recommended(keyword);
        c.report(config, &rules::JSON_ARGS_RECOMMENDED, at, msg);
    }
}
