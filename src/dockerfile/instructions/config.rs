//! The instructions that only record a value for the stage or the image
//! (ENV, LABEL, ARG, MAINTAINER, EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL,
//! ONBUILD), with BuildKit's argument checks.
//!
//! Applying them (ARG scoping, image config) is the stage layer's job; this
//! module must not import it, nor the lexer.

use super::{expand_all, locate, trim_space, Expander, InstructionError, Meta, Request};
use crate::dockerfile::error::Result;

/// A `key=value` (or legacy `key value`) pair of ENV or LABEL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy whitespace form (`ENV key value`), which
    /// linters flag.
    pub no_delim: bool,
}

impl std::fmt::Display for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// An ARG declaration: a name and maybe a default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValueOptional {
    pub key: String,
    pub value: Option<String>,
    /// The text after `# KEY ` in the comment above, if any.
    pub doc_comment: String,
}

impl std::fmt::Display for KeyValueOptional {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value.as_deref().unwrap_or(""))
    }
}

/// `ENV key=value …`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub meta: Meta,
    pub env: Vec<KeyValue>,
}

/// `LABEL key=value …`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub meta: Meta,
    pub labels: Vec<KeyValue>,
}

/// `MAINTAINER name` (deprecated, still accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintainer {
    pub meta: Meta,
    pub maintainer: String,
}

/// `EXPOSE port[/proto] …`, sorted as BuildKit sorts them. Ports are
/// expanded and validated when dispatched, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expose {
    pub meta: Meta,
    pub ports: Vec<String>,
}

/// `VOLUME path …`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub meta: Meta,
    pub volumes: Vec<String>,
}

/// `USER user[:group]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub meta: Meta,
    pub user: String,
}

/// `WORKDIR path`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workdir {
    pub meta: Meta,
    pub path: String,
}

/// `ARG name[=default] …`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub meta: Meta,
    pub args: Vec<KeyValueOptional>,
}

/// `ONBUILD instruction`: kept as text, parsed again when a child image
/// builds from this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    pub meta: Meta,
    /// The trigger's source (without `ONBUILD`), heredoc bodies re-attached.
    pub expression: String,
}

/// `STOPSIGNAL signal`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopsignal {
    pub meta: Meta,
    pub signal: String,
}

/// ENV/LABEL arguments come from the parser as key, value, separator
/// triples; the separator is `=` or empty for the legacy form.
fn key_values(req: &Request, name: &'static str) -> Result<Vec<KeyValue>> {
    if req.args.is_empty() {
        return Err(req.fail(InstructionError::AtLeastOneArgument(name)));
    }
    if req.args.len() % 3 != 0 {
        return Err(req.fail(InstructionError::TooManyArguments(name)));
    }
    req.args
        .chunks_exact(3)
        .map(|triple| {
            if triple[0].is_empty() {
                return Err(req.fail(InstructionError::BlankName(name)));
            }
            Ok(KeyValue {
                key: triple[0].clone(),
                value: triple[1].clone(),
                no_delim: triple[2].is_empty(),
            })
        })
        .collect()
}

fn expand_key_values(pairs: &mut [KeyValue], f: &mut Expander<'_>) -> Result<()> {
    for pair in pairs {
        pair.key = f(&pair.key)?;
        pair.value = f(&pair.value)?;
    }
    Ok(())
}

/// The single argument, or BuildKit's "exactly one" error.
fn only_argument(req: &Request, name: &'static str) -> Result<String> {
    match req.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(req.fail(InstructionError::ExactlyOneArgument(name))),
    }
}

/// The comment text documenting `name`: the first comment line that starts
/// with the name and a space.
pub(crate) fn doc_comment(comments: &[String], name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    let prefix = format!("{name} ");
    comments
        .iter()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn parse_env(req: &mut Request) -> Result<Env> {
    req.parse_flags()?;
    Ok(Env {
        env: key_values(req, "ENV")?,
        meta: req.meta(),
    })
}

pub(crate) fn parse_label(req: &mut Request) -> Result<Label> {
    req.parse_flags()?;
    Ok(Label {
        labels: key_values(req, "LABEL")?,
        meta: req.meta(),
    })
}

pub(crate) fn parse_maintainer(req: &mut Request) -> Result<Maintainer> {
    let maintainer = only_argument(req, "MAINTAINER")?;
    req.parse_flags()?;
    Ok(Maintainer {
        meta: req.meta(),
        maintainer,
    })
}

pub(crate) fn parse_workdir(req: &mut Request) -> Result<Workdir> {
    let path = only_argument(req, "WORKDIR")?;
    req.parse_flags()?;
    Ok(Workdir {
        meta: req.meta(),
        path,
    })
}

pub(crate) fn parse_user(req: &mut Request) -> Result<User> {
    let user = only_argument(req, "USER")?;
    req.parse_flags()?;
    Ok(User {
        meta: req.meta(),
        user,
    })
}

pub(crate) fn parse_stopsignal(req: &mut Request) -> Result<Stopsignal> {
    // BuildKit never checks STOPSIGNAL's flags: any are silently ignored.
    let signal = only_argument(req, "STOPSIGNAL")?;
    Ok(Stopsignal {
        meta: req.meta(),
        signal,
    })
}

pub(crate) fn parse_expose(req: &mut Request) -> Result<Expose> {
    if req.args.is_empty() {
        return Err(req.fail(InstructionError::AtLeastOneArgument("EXPOSE")));
    }
    req.parse_flags()?;
    let mut ports = req.args.clone();
    ports.sort();
    Ok(Expose {
        meta: req.meta(),
        ports,
    })
}

pub(crate) fn parse_volume(req: &mut Request) -> Result<Volume> {
    if req.args.is_empty() {
        return Err(req.fail(InstructionError::AtLeastOneArgument("VOLUME")));
    }
    req.parse_flags()?;
    let volumes = req
        .args
        .iter()
        .map(|v| match trim_space(v) {
            "" => Err(req.fail(InstructionError::EmptyVolume)),
            v => Ok(v.to_string()),
        })
        .collect::<Result<_>>()?;
    Ok(Volume {
        meta: req.meta(),
        volumes,
    })
}

pub(crate) fn parse_arg(req: &mut Request) -> Result<Arg> {
    // Like STOPSIGNAL, BuildKit never checks ARG's flags.
    if req.args.is_empty() {
        return Err(req.fail(InstructionError::AtLeastOneArgument("ARG")));
    }
    let comments = &req.node.prev_comment;
    let args = req
        .args
        .iter()
        .map(|arg| {
            // Unlike ENV, ARG's name/value split is done here, because a
            // bare name (no default) is allowed.
            let (key, value) = match arg.split_once('=') {
                Some(("", _)) => return Err(req.fail(InstructionError::BlankName("ARG"))),
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            Ok(KeyValueOptional {
                doc_comment: doc_comment(comments, &key),
                key,
                value,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Arg {
        meta: req.meta(),
        args,
    })
}

pub(crate) fn parse_onbuild(req: &mut Request) -> Result<Onbuild> {
    let Some(first) = req.args.first() else {
        return Err(req.fail(InstructionError::AtLeastOneArgument("ONBUILD")));
    };
    let trigger = trim_space(first).to_uppercase();
    req.parse_flags()?;
    match trigger.as_str() {
        "ONBUILD" => return Err(req.fail(InstructionError::OnbuildChained)),
        "MAINTAINER" | "FROM" => return Err(req.fail(InstructionError::OnbuildTrigger(trigger))),
        _ => {}
    }
    let mut expression = strip_onbuild_keyword(&req.node.original).to_string();
    // The parser may hang heredocs on ONBUILD itself or on the trigger.
    let heredocs = match (&req.node.heredocs, &req.node.inner) {
        (own, Some(inner)) if own.is_empty() => &inner.heredocs,
        (own, _) => own,
    };
    for heredoc in heredocs {
        expression.push('\n');
        expression.push_str(&heredoc.content);
        expression.push_str(&heredoc.name);
    }
    Ok(Onbuild {
        meta: req.meta(),
        expression,
    })
}

/// The original text minus leading whitespace, the `ONBUILD` keyword (any
/// case) and the whitespace after it.
fn strip_onbuild_keyword(original: &str) -> &str {
    // Go's regexp `\s`: ASCII space, \t \n \f \r (not \v).
    const SPACE: [char; 5] = [' ', '\t', '\n', '\x0c', '\r'];
    let rest = original.trim_start_matches(SPACE);
    match rest.get(..7) {
        Some(keyword) if keyword.eq_ignore_ascii_case("onbuild") => {
            rest[7..].trim_start_matches(SPACE)
        }
        _ => original,
    }
}

impl Env {
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        expand_key_values(&mut self.env, f).map_err(|e| locate(e, self.meta.location))
    }
}

impl Label {
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        expand_key_values(&mut self.labels, f).map_err(|e| locate(e, self.meta.location))
    }
}

impl Workdir {
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        self.path = f(&self.path).map_err(|e| locate(e, self.meta.location))?;
        Ok(())
    }
}

impl User {
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        self.user = f(&self.user).map_err(|e| locate(e, self.meta.location))?;
        Ok(())
    }
}

impl Volume {
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        expand_all(&mut self.volumes, f).map_err(|e| locate(e, self.meta.location))
    }
}

impl Stopsignal {
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        self.signal = f(&self.signal).map_err(|e| locate(e, self.meta.location))?;
        Ok(())
    }
}

impl Arg {
    /// Expands names and defaults. The stage layer calls this itself
    /// (BuildKit defers ARG expansion errors until the value is used).
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        for arg in &mut self.args {
            arg.key = f(&arg.key).map_err(|e| locate(e, self.meta.location))?;
            if let Some(value) = &arg.value {
                arg.value = Some(f(value).map_err(|e| locate(e, self.meta.location))?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{parse_instruction, Instruction};
    use super::*;
    use crate::dockerfile::node::{Heredoc, Node};

    fn kv(key: &str, value: &str, no_delim: bool) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            no_delim,
        }
    }

    #[test]
    fn env_and_label_take_triples() {
        let n = node("env", &[], &["A", "1", "=", "B", "two words", ""]);
        let Instruction::Env(env) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        assert_eq!(env.env, [kv("A", "1", false), kv("B", "two words", true)]);
        assert_eq!(env.env[0].to_string(), "A=1");

        let n = node("label", &[], &["org.x", "y", "="]);
        let Instruction::Label(l) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        assert_eq!(l.labels, [kv("org.x", "y", false)]);
    }

    #[test]
    fn env_and_label_reject_bad_triples() {
        for kw in ["ENV", "LABEL"] {
            assert_eq!(
                parse_err(&node(kw, &[], &["arg1", "arg2", "arg3", ""])),
                format!("Bad input to {kw}, too many arguments")
            );
            assert_eq!(
                parse_err(&node(kw, &[], &["", "arg2", "="])),
                format!("{kw} names can not be blank")
            );
        }
    }

    #[test]
    fn env_flags_checked_before_arguments() {
        assert_eq!(parse_err(&node("env", &["--x"], &[])), "unknown flag: --x");
    }

    #[test]
    fn maintainer_counts_arguments_before_flags() {
        assert_eq!(
            parse_err(&node("maintainer", &["--boo"], &[])),
            "MAINTAINER requires exactly one argument"
        );
        let n = node("maintainer", &[], &["Joe <joe@example.com>"]);
        let Instruction::Maintainer(m) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        assert_eq!(m.maintainer, "Joe <joe@example.com>");
    }

    #[test]
    fn stopsignal_and_arg_ignore_flags_like_buildkit() {
        let n = node("stopsignal", &["--anything"], &["SIGKILL"]);
        let Instruction::Stopsignal(s) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        assert_eq!(s.signal, "SIGKILL");
        let n = node("arg", &["--anything"], &["A"]);
        assert!(parse_instruction(&n).is_ok());
    }

    #[test]
    fn expose_sorts_ports_bytewise() {
        let n = node("expose", &[], &["8080", "443/tcp", "80", "53/udp"]);
        let Instruction::Expose(e) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        assert_eq!(e.ports, ["443/tcp", "53/udp", "80", "8080"]);
    }

    #[test]
    fn volume_trims_and_rejects_blank_entries() {
        let n = json_node("volume", &[], &[" /a ", "/b"]);
        let Instruction::Volume(v) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        assert_eq!(v.volumes, ["/a", "/b"]);
        assert_eq!(
            parse_err(&json_node("volume", &[], &["/a", "  "])),
            "VOLUME specified can not be an empty string"
        );
    }

    #[test]
    fn user_and_workdir_keep_their_word() {
        let Instruction::User(u) = parse_instruction(&node("user", &[], &["1000:1000"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(u.user, "1000:1000");
        let Instruction::Workdir(w) = parse_instruction(&node("workdir", &[], &["/app"])).unwrap()
        else {
            panic!()
        };
        assert_eq!(w.path, "/app");
    }

    #[test]
    fn arg_splits_name_and_default() {
        let mut n = node("arg", &[], &["A", "B=", "C=x=y"]);
        n.prev_comment = vec!["C is the third".into(), "A sets a".into()];
        let Instruction::Arg(a) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        let keys: Vec<_> = a.args.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["A", "B", "C"]);
        assert_eq!(a.args[0].value, None);
        assert_eq!(a.args[1].value.as_deref(), Some(""));
        assert_eq!(a.args[2].value.as_deref(), Some("x=y"));
        assert_eq!(a.args[0].doc_comment, "sets a");
        assert_eq!(a.args[1].doc_comment, "");
        assert_eq!(a.args[2].doc_comment, "is the third");
        assert_eq!(a.args[0].to_string(), "A=");
        assert_eq!(
            parse_err(&node("arg", &[], &["=x"])),
            "ARG names can not be blank"
        );
    }

    fn onbuild(trigger: Node, original: &str) -> Node {
        Node {
            inner: Some(Box::new(trigger)),
            original: original.into(),
            ..node("onbuild", &[], &[])
        }
    }

    #[test]
    fn onbuild_keeps_trigger_text() {
        let n = onbuild(node("run", &[], &["echo hi"]), "  onBuild   RUN echo hi");
        let Instruction::Onbuild(o) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        assert_eq!(o.expression, "RUN echo hi");
    }

    #[test]
    fn onbuild_rejects_some_triggers() {
        let n = onbuild(node("onbuild", &[], &[]), "ONBUILD ONBUILD RUN x");
        assert_eq!(
            parse_err(&n),
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
        for kw in ["from", "maintainer"] {
            let n = onbuild(node(kw, &[], &["x"]), "ONBUILD x");
            assert_eq!(
                parse_err(&n),
                format!("{} isn't allowed as an ONBUILD trigger", kw.to_uppercase())
            );
        }
    }

    #[test]
    fn onbuild_reattaches_heredoc_bodies() {
        let mut trigger = node("run", &[], &["<<EOF"]);
        trigger.heredocs = vec![Heredoc {
            name: "EOF".into(),
            content: "echo hi\n".into(),
            expand: true,
            ..Heredoc::default()
        }];
        let n = onbuild(trigger, "ONBUILD RUN <<EOF");
        let Instruction::Onbuild(o) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        assert_eq!(o.expression, "RUN <<EOF\necho hi\nEOF");
    }

    #[test]
    fn onbuild_keyword_stripping() {
        assert_eq!(strip_onbuild_keyword("ONBUILD RUN x"), "RUN x");
        assert_eq!(strip_onbuild_keyword("\tonbuild\tRUN x"), "RUN x");
        assert_eq!(strip_onbuild_keyword("RUN x"), "RUN x");
        assert_eq!(strip_onbuild_keyword("ONBUIL"), "ONBUIL");
        assert_eq!(strip_onbuild_keyword("ONBUILDé"), "é");
    }

    #[test]
    fn expand_rewrites_the_expandable_words() {
        let vars = || vars(&[("X", "1"), ("Y", "2")]);
        let n = node("env", &[], &["K$X", "$Y", "="]);
        let Instruction::Env(mut e) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        e.expand(&mut vars()).unwrap();
        assert_eq!(e.env, [kv("K1", "2", false)]);

        let n = node("arg", &[], &["A$X=$Y", "B"]);
        let Instruction::Arg(mut a) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        a.expand(&mut vars()).unwrap();
        assert_eq!(a.args[0].key, "A1");
        assert_eq!(a.args[0].value.as_deref(), Some("2"));
        assert_eq!(a.args[1].value, None);

        let n = json_node("volume", &[], &["/$X", "/$Y"]);
        let Instruction::Volume(mut v) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        v.expand(&mut vars()).unwrap();
        assert_eq!(v.volumes, ["/1", "/2"]);

        let n = node("stopsignal", &[], &["SIG$X"]);
        let Instruction::Stopsignal(mut s) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        s.expand(&mut vars()).unwrap();
        assert_eq!(s.signal, "SIG1");
    }
}
