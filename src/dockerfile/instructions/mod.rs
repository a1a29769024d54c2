//! Syntax-tree node → typed instruction, with the per-instruction checks
//! BuildKit makes at parse time (argument counts, accepted flags, FROM's
//! stage name, ONBUILD triggers, heredoc sources, `RUN --mount` grammar,
//! HEALTHCHECK durations) and the word-expansion hooks its dispatcher calls
//! later.
//!
//! It reads [`Node`] values (plus the parser's public heredoc-marker reader,
//! shared as in BuildKit): it must not import the parser's internals, the
//! shell lexer (expansion is a callback the stage layer supplies), nor
//! anything about stages, ARG scoping or image configuration, which are
//! built on top of these types.

mod cmdline;
mod config;
mod copy;
mod error;
mod from;
pub(crate) mod go;
mod healthcheck;
mod run;
mod run_mount;

pub use cmdline::{Cmd, Entrypoint, Shell, ShellInlineFile, ShellOrExec};
pub use config::{
    Arg, Env, Expose, KeyValue, KeyValueOptional, Label, Maintainer, Onbuild, Stopsignal, User,
    Volume, Workdir,
};
pub use copy::{merge_keep_git_dir, parse_chmod, Add, Chmod, Copy, SourceContent};
pub use error::InstructionError;
pub use from::From;
pub use healthcheck::{parse_go_duration, Health, HealthConfig, Healthcheck};
pub use run::{parse_device, Device, NetworkMode, Run, SecurityMode};
pub use run_mount::{parse_mount, Mount, MountType, Sharing};

use super::error::{Error, Result};
use super::flags::Flags;
use super::location::Range;
use super::node::{Heredoc, Node};
use super::suggest::suggest;

/// What every instruction carries besides its own fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The keyword as written (`RUN`, `run`, `Run`), for messages and lints.
    pub keyword: String,
    /// The instruction's source text, trimmed; what BuildKit prints as the
    /// step name.
    pub code: String,
    /// The lines the instruction spans.
    pub location: Range,
    /// Comment lines directly above, for doc comments and `# check=` lines.
    pub comments: Vec<String>,
}

/// One Dockerfile instruction, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// Starts a stage rather than being a command within one.
    From(From),
    Run(Run),
    Cmd(Cmd),
    Entrypoint(Entrypoint),
    Shell(Shell),
    Env(Env),
    Label(Label),
    Maintainer(Maintainer),
    Expose(Expose),
    Add(Add),
    Copy(Copy),
    Volume(Volume),
    User(User),
    Workdir(Workdir),
    Arg(Arg),
    Onbuild(Onbuild),
    Stopsignal(Stopsignal),
    Healthcheck(Healthcheck),
}

/// Turns one word into its expanded form (the stage layer plugs the shell
/// lexer in here, with the environment in force at that point).
pub type Expander<'a> = dyn FnMut(&str) -> Result<String> + 'a;

/// Every instruction keyword, in the form unknown-instruction hints use.
const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Types one syntax-tree node, FROM included.
pub fn parse_instruction(node: &Node) -> Result<Instruction> {
    let mut req = Request::new(node);
    let instruction = match node.value.to_lowercase().as_str() {
        "env" => Instruction::Env(config::parse_env(&mut req)?),
        "maintainer" => Instruction::Maintainer(config::parse_maintainer(&mut req)?),
        "label" => Instruction::Label(config::parse_label(&mut req)?),
        "add" => Instruction::Add(copy::parse_add(&mut req)?),
        "copy" => Instruction::Copy(copy::parse_copy(&mut req)?),
        "from" => Instruction::From(from::parse_from(&mut req)?),
        "onbuild" => Instruction::Onbuild(config::parse_onbuild(&mut req)?),
        "workdir" => Instruction::Workdir(config::parse_workdir(&mut req)?),
        "run" => Instruction::Run(run::parse_run(&mut req)?),
        "cmd" => Instruction::Cmd(cmdline::parse_cmd(&mut req)?),
        "healthcheck" => Instruction::Healthcheck(healthcheck::parse_healthcheck(&mut req)?),
        "entrypoint" => Instruction::Entrypoint(cmdline::parse_entrypoint(&mut req)?),
        "expose" => Instruction::Expose(config::parse_expose(&mut req)?),
        "user" => Instruction::User(config::parse_user(&mut req)?),
        "volume" => Instruction::Volume(config::parse_volume(&mut req)?),
        "stopsignal" => Instruction::Stopsignal(config::parse_stopsignal(&mut req)?),
        "arg" => Instruction::Arg(config::parse_arg(&mut req)?),
        "shell" => Instruction::Shell(cmdline::parse_shell(&mut req)?),
        _ => {
            return Err(req.fail(InstructionError::UnknownInstruction {
                suggestion: suggest(&req.keyword, &INSTRUCTIONS, false),
                instruction: req.keyword.clone(),
            }))
        }
    };
    Ok(instruction)
}

/// Types a node that must be a command inside a stage (anything but FROM).
pub fn parse_command(node: &Node) -> Result<Instruction> {
    let instruction = parse_instruction(node)?;
    if let Instruction::From(from) = &instruction {
        return Err(Error::new(
            InstructionError::NotACommand(from.meta.keyword.to_uppercase()),
            from.meta.location,
        ));
    }
    Ok(instruction)
}

impl Instruction {
    /// The fields every instruction has.
    pub fn meta(&self) -> &Meta {
        match self {
            Instruction::From(c) => &c.meta,
            Instruction::Run(c) => &c.meta,
            Instruction::Cmd(c) => &c.meta,
            Instruction::Entrypoint(c) => &c.meta,
            Instruction::Shell(c) => &c.meta,
            Instruction::Env(c) => &c.meta,
            Instruction::Label(c) => &c.meta,
            Instruction::Maintainer(c) => &c.meta,
            Instruction::Expose(c) => &c.meta,
            Instruction::Add(c) => &c.meta,
            Instruction::Copy(c) => &c.meta,
            Instruction::Volume(c) => &c.meta,
            Instruction::User(c) => &c.meta,
            Instruction::Workdir(c) => &c.meta,
            Instruction::Arg(c) => &c.meta,
            Instruction::Onbuild(c) => &c.meta,
            Instruction::Stopsignal(c) => &c.meta,
            Instruction::Healthcheck(c) => &c.meta,
        }
    }

    /// The lines the instruction spans.
    pub fn location(&self) -> Range {
        self.meta().location
    }

    /// Whether [`Instruction::expand`] changes anything: the instructions
    /// BuildKit expands word by word before dispatching them. FROM (expanded
    /// with global ARGs by the stage layer) and ARG (whose expansion errors
    /// BuildKit defers) are handled by their own callers and excluded here,
    /// though both have an `expand` method.
    pub fn supports_expansion(&self) -> bool {
        matches!(
            self,
            Instruction::Env(_)
                | Instruction::Label(_)
                | Instruction::Add(_)
                | Instruction::Copy(_)
                | Instruction::Workdir(_)
                | Instruction::Run(_)
                | Instruction::User(_)
                | Instruction::Volume(_)
                | Instruction::Stopsignal(_)
        )
    }

    /// Expands the words BuildKit expands before dispatching the command
    /// (see [`Instruction::supports_expansion`]); a no-op for the rest.
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        match self {
            Instruction::Env(c) => c.expand(f),
            Instruction::Label(c) => c.expand(f),
            Instruction::Add(c) => c.expand(f),
            Instruction::Copy(c) => c.expand(f),
            Instruction::Workdir(c) => c.expand(f),
            Instruction::Run(c) => c.expand(f),
            Instruction::User(c) => c.expand(f),
            Instruction::Volume(c) => c.expand(f),
            Instruction::Stopsignal(c) => c.expand(f),
            _ => Ok(()),
        }
    }

    /// Expands heredoc bodies of COPY/ADD whose delimiter was unquoted.
    /// BuildKit runs this with a lexer that keeps quotes as written, so the
    /// stage layer should pass such an expander; a no-op for the rest.
    pub fn expand_raw(&mut self, f: &mut Expander<'_>) -> Result<()> {
        match self {
            Instruction::Add(c) => c.expand_raw(f),
            Instruction::Copy(c) => c.expand_raw(f),
            _ => Ok(()),
        }
    }
}

/// What a per-instruction parser works from: the node's arguments flattened
/// as BuildKit flattens them, plus the flags still to be declared.
pub(crate) struct Request<'a> {
    pub node: &'a Node,
    /// The keyword as written in the source, if the parser lower-cased it.
    pub keyword: String,
    pub args: Vec<String>,
    pub flags: Flags,
}

impl<'a> Request<'a> {
    fn new(node: &'a Node) -> Self {
        Request {
            node,
            keyword: keyword_as_written(node),
            args: node_args(node),
            flags: Flags::new(&node.flags),
        }
    }

    pub fn meta(&self) -> Meta {
        Meta {
            keyword: self.keyword.clone(),
            code: self.node.original.trim().to_string(),
            location: self.location(),
            comments: self.node.prev_comment.clone(),
        }
    }

    pub fn location(&self) -> Range {
        self.node.location()
    }

    pub fn json(&self) -> bool {
        self.node.json
    }

    pub fn heredocs(&self) -> &'a [Heredoc] {
        &self.node.heredocs
    }

    /// An error at this instruction.
    pub fn fail(&self, err: impl Into<InstructionError>) -> Error {
        Error::new(err.into(), self.location())
    }

    /// Checks the given flags against those declared so far.
    pub fn parse_flags(&mut self) -> Result<()> {
        let location = self.location();
        self.flags
            .parse()
            .map_err(|e| Error::new(Into::<InstructionError>::into(e), location))
    }
}

/// The arguments in BuildKit's flattened order: ONBUILD's nested instruction
/// contributes its keyword followed by its own arguments.
fn node_args(node: &Node) -> Vec<String> {
    let mut args = node.next.clone();
    if let Some(inner) = &node.inner {
        args.push(inner.value.clone());
        args.extend(node_args(inner));
    }
    args
}

/// BuildKit keeps the keyword's spelling (its errors say `unknown
/// instruction: FOO`); the tree may hold it lower-cased, so recover it from
/// the original text when that starts with the same word.
fn keyword_as_written(node: &Node) -> String {
    let first = node.original.split_whitespace().next().unwrap_or_default();
    if first.eq_ignore_ascii_case(&node.value) {
        first.to_string()
    } else {
        node.value.clone()
    }
}

/// Runs an expander on each string in place.
fn expand_all(values: &mut [String], f: &mut Expander<'_>) -> Result<()> {
    for value in values {
        *value = f(value)?;
    }
    Ok(())
}

/// Gives an expander's error the instruction's location when it has none.
fn locate(err: Error, location: Range) -> Error {
    if err.location.is_empty() {
        err.with_location(location)
    } else {
        err
    }
}

/// The text of a Go-style `strings.TrimSpace`.
fn trim_space(s: &str) -> &str {
    s.trim()
}

#[cfg(test)]
mod parsed_tests;

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A node as the parser would produce it for simple cases: `keyword`
    /// lower-cased, `original` rebuilt from the pieces.
    pub fn node(keyword: &str, flags: &[&str], args: &[&str]) -> Node {
        let mut original = keyword.to_string();
        for part in flags.iter().chain(args) {
            original.push(' ');
            original.push_str(part);
        }
        Node {
            value: keyword.to_lowercase(),
            next: args.iter().map(|s| s.to_string()).collect(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            original,
            start_line: 3,
            end_line: 4,
            ..Node::default()
        }
    }

    pub fn json_node(keyword: &str, flags: &[&str], args: &[&str]) -> Node {
        Node {
            json: true,
            ..node(keyword, flags, args)
        }
    }

    /// The message of a parse failure; panics (in tests only) on success.
    pub fn parse_err(node: &Node) -> String {
        match parse_instruction(node) {
            Ok(i) => panic!("expected an error, got {i:?}"),
            Err(e) => {
                assert_eq!(e.line(), Some(node.start_line), "error must be located");
                e.to_string()
            }
        }
    }

    /// An expander that replaces `$NAME` words from a fixed list.
    pub fn vars(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl FnMut(&str) -> Result<String> {
        move |word: &str| {
            let mut out = word.to_string();
            for (k, v) in pairs {
                out = out.replace(&format!("${k}"), v);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn unknown_instruction_keeps_spelling_and_hints() {
        // "FOO" is two edits from "FROM", so BuildKit hints at it too.
        let mut n = node("foo", &[], &["bar"]);
        n.original = "FOO bar".into();
        assert_eq!(
            parse_err(&n),
            "unknown instruction: FOO (did you mean FROM?)"
        );
        n.original = "foo bar".into();
        assert_eq!(
            parse_err(&n),
            "unknown instruction: foo (did you mean from?)"
        );
        let mut n = node("banana", &[], &["bar"]);
        n.original = "BANANA bar".into();
        assert_eq!(parse_err(&n), "unknown instruction: BANANA");
        let mut n = node("runn", &[], &["x"]);
        n.original = "RUNN x".into();
        assert_eq!(
            parse_err(&n),
            "unknown instruction: RUNN (did you mean RUN?)"
        );
        n.original = "runn x".into();
        assert_eq!(
            parse_err(&n),
            "unknown instruction: runn (did you mean run?)"
        );
    }

    #[test]
    fn meta_records_keyword_code_location_comments() {
        let mut n = node("workdir", &[], &["/app"]);
        n.original = "  WorkDir /app  ".into();
        n.prev_comment = vec!["set the dir".into()];
        let i = parse_instruction(&n).unwrap();
        let meta = i.meta();
        assert_eq!(meta.keyword, "WorkDir");
        assert_eq!(meta.code, "WorkDir /app");
        assert_eq!(meta.location, Range::lines(3, 4));
        assert_eq!(meta.comments, ["set the dir"]);
        assert_eq!(i.location(), Range::lines(3, 4));
    }

    #[test]
    fn keyword_falls_back_to_node_value() {
        let mut n = node("user", &[], &["me"]);
        n.original = String::new();
        assert_eq!(parse_instruction(&n).unwrap().meta().keyword, "user");
    }

    #[test]
    fn parse_command_rejects_from() {
        let n = node("from", &[], &["alpine"]);
        let err = parse_command(&n).unwrap_err();
        assert_eq!(err.to_string(), "FROM is not a command type");
        assert_eq!(err.line(), Some(3));
        assert!(parse_command(&node("user", &[], &["me"])).is_ok());
    }

    #[test]
    fn errors_are_instruction_errors() {
        let err = parse_instruction(&node("user", &[], &[])).unwrap_err();
        assert!(matches!(
            err.kind,
            crate::dockerfile::ErrorKind::Instruction(InstructionError::ExactlyOneArgument("USER"))
        ));
    }

    #[test]
    fn exactly_one_argument_commands() {
        for kw in ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"] {
            assert_eq!(
                parse_err(&node(kw, &[], &[])),
                format!("{kw} requires exactly one argument")
            );
            assert_eq!(
                parse_err(&node(kw, &[], &["a", "b"])),
                format!("{kw} requires exactly one argument")
            );
        }
    }

    #[test]
    fn at_least_one_argument_commands() {
        for kw in [
            "ENV",
            "LABEL",
            "ONBUILD",
            "HEALTHCHECK",
            "EXPOSE",
            "VOLUME",
            "ARG",
            "SHELL",
        ] {
            assert_eq!(
                parse_err(&node(kw, &[], &[])),
                format!("{kw} requires at least one argument")
            );
        }
    }

    #[test]
    fn no_destination_commands() {
        for kw in ["ADD", "COPY"] {
            assert_eq!(
                parse_err(&node(kw, &[], &["arg1"])),
                format!("{kw} requires at least two arguments, but only one was provided. Destination could not be determined")
            );
        }
    }

    #[test]
    fn instructions_without_flags_reject_any_flag() {
        for (kw, args) in [
            ("maintainer", &["joe@example.com"][..]),
            ("env", &["a", "b", "="][..]),
            ("label", &["a", "b", "="][..]),
            ("workdir", &["/"][..]),
            ("user", &["me"][..]),
            ("expose", &["80"][..]),
            ("volume", &["/v"][..]),
            ("cmd", &["x"][..]),
            ("entrypoint", &["x"][..]),
            ("onbuild", &[][..]),
        ] {
            let mut n = node(kw, &["--boo"], args);
            if kw == "onbuild" {
                n.inner = Some(Box::new(node("run", &[], &["x"])));
            }
            assert_eq!(parse_err(&n), "unknown flag: --boo", "{kw}");
        }
        let mut shell = json_node("shell", &["--boo"], &["sh"]);
        shell.json = true;
        assert_eq!(parse_err(&shell), "unknown flag: --boo");
    }

    #[test]
    fn expand_dispatches_to_supported_instructions() {
        let mut env = parse_instruction(&node("env", &[], &["A", "$X", "="])).unwrap();
        assert!(env.supports_expansion());
        env.expand(&mut vars(&[("X", "1")])).unwrap();
        let Instruction::Env(e) = &env else { panic!() };
        assert_eq!(e.env[0].value, "1");

        let mut cmd = parse_instruction(&node("cmd", &[], &["echo $X"])).unwrap();
        assert!(!cmd.supports_expansion());
        cmd.expand(&mut vars(&[("X", "1")])).unwrap();
        let Instruction::Cmd(c) = &cmd else { panic!() };
        assert_eq!(c.cmd, ShellOrExec::Shell("echo $X".into()));
    }

    #[test]
    fn expander_errors_gain_the_location() {
        let mut user = parse_instruction(&node("user", &[], &["$X"])).unwrap();
        let err = user
            .expand(&mut |_: &str| Err(Error::unlocated(InstructionError::FromArguments)))
            .unwrap_err();
        assert_eq!(err.line(), Some(3));
    }

    /// How the stage layer is expected to drive expansion: the shell lexer
    /// over the stage's environment, its errors located at the instruction.
    #[test]
    fn stage_layer_plugs_the_lexer_in() {
        use crate::dockerfile::shell::{EnvList, Lex};
        let env = EnvList::from_assignments(["DIR=/app", "UID=1000"]);
        let lex = Lex::new('\\');
        let mut expand = |word: &str| lex.process_word(word, &env).map_err(Error::unlocated);

        let n = node("copy", &["--chown=${UID}"], &["'a b'", "$DIR/"]);
        let mut copy = parse_command(&n).unwrap();
        copy.expand(&mut expand).unwrap();
        let Instruction::Copy(c) = &copy else {
            panic!()
        };
        assert_eq!((c.chown.as_str(), c.dest.as_str()), ("1000", "/app/"));
        assert_eq!(c.sources, ["a b"]);

        let n = node(
            "run",
            &["--mount=type=cache,target=${DIR}/.cache,uid=$UID"],
            &["make"],
        );
        let mut run = parse_command(&n).unwrap();
        run.expand(&mut expand).unwrap();
        let Instruction::Run(r) = &run else { panic!() };
        assert_eq!(r.mounts[0].target, "/app/.cache");
        assert_eq!(r.mounts[0].uid, Some(1000));

        let mut workdir = parse_command(&node("workdir", &[], &["${DIR"])).unwrap();
        let err = workdir.expand(&mut expand).unwrap_err();
        assert!(matches!(err.kind, crate::dockerfile::ErrorKind::Expand(_)));
        assert_eq!(err.line(), Some(3));
    }

    /// Odd shapes and text must give errors, never panics.
    #[test]
    fn never_panics_on_odd_input() {
        let words = [
            "", " ", "=", "--", "-", "\"", "'", "<<", "<<EOF", "<<-", "1<<", "é", "AS", "as", "$",
            "a=b", "\u{0}", "ONBUILD", "from", "CMD", "NONE", "\t\n",
        ];
        let flags = [
            "--",
            "--=",
            "--mount",
            "--mount=",
            "--mount=\"",
            "--mount=type=secret",
            "--network=",
            "--interval=é",
            "--retries=",
            "--platform",
            "--chmod=",
            "-x",
            "é",
        ];
        for keyword in INSTRUCTIONS.iter().chain(&["bogus", ""]) {
            for (i, a) in words.iter().enumerate() {
                let b = words[(i * 7 + 3) % words.len()];
                let f = flags[i % flags.len()];
                for args in [vec![], vec![*a], vec![*a, b], vec![*a, "as", b]] {
                    for flag_set in [vec![], vec![f]] {
                        for json in [false, true] {
                            let mut n = node(keyword, &flag_set, &args);
                            n.json = json;
                            n.original = format!("{a}{b}");
                            if i % 3 == 0 {
                                n.inner = Some(Box::new(node(b, &[], &[a])));
                            }
                            if let Ok(mut parsed) = parse_instruction(&n) {
                                let _ = parsed.expand(&mut |w: &str| Ok(w.to_string()));
                                let _ = parsed.expand_raw(&mut |w: &str| Ok(w.to_string()));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn onbuild_args_flatten_the_nested_instruction() {
        let mut n = node("onbuild", &[], &[]);
        n.inner = Some(Box::new(node("run", &[], &["echo hi"])));
        assert_eq!(node_args(&n), ["run", "echo hi"]);
    }
}
