//! Command lines in shell or exec form (shared by RUN, CMD, ENTRYPOINT and
//! HEALTHCHECK) and the CMD, ENTRYPOINT and SHELL instructions.
//!
//! Must not import the lexer: shell-form text is kept verbatim because the
//! container's shell, not the frontend, interprets it.

use super::{InstructionError, Meta, Request};
use crate::dockerfile::error::Result;

/// How a command is to be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    /// Shell form: the arguments joined by spaces, to be run by the stage's
    /// SHELL. Empty when the instruction had no arguments.
    Shell(String),
    /// Exec (JSON) form: the argument vector as given.
    Exec(Vec<String>),
}

impl ShellOrExec {
    /// BuildKit's classification of a node's arguments: JSON arrays are
    /// exec form, anything else one shell string.
    pub(crate) fn from_args(args: &[String], json: bool) -> Self {
        if json {
            ShellOrExec::Exec(args.to_vec())
        } else {
            ShellOrExec::Shell(args.join(" "))
        }
    }

    /// Whether the stage's shell must be put in front (shell form).
    pub fn prepend_shell(&self) -> bool {
        matches!(self, ShellOrExec::Shell(_))
    }

    /// The argument vector before any shell is prepended, as BuildKit's
    /// `CmdLine`: one element for shell form, none when empty.
    pub fn args(&self) -> Vec<String> {
        match self {
            ShellOrExec::Shell(s) if s.is_empty() => Vec::new(),
            ShellOrExec::Shell(s) => vec![s.clone()],
            ShellOrExec::Exec(v) => v.clone(),
        }
    }

    /// No command at all (`CMD []`, or no arguments).
    pub fn is_empty(&self) -> bool {
        match self {
            ShellOrExec::Shell(s) => s.is_empty(),
            ShellOrExec::Exec(v) => v.is_empty(),
        }
    }
}

/// A heredoc body given to a shell-form command, to be fed on its stdin or
/// written as a script by the runner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellInlineFile {
    pub name: String,
    /// The body as written; not chomped (see `chomp`).
    pub data: String,
    /// `<<-`: the runner strips leading tabs.
    pub chomp: bool,
}

/// `CMD`: the default command of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub meta: Meta,
    pub cmd: ShellOrExec,
    pub files: Vec<ShellInlineFile>,
}

/// `ENTRYPOINT`: the image's entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    pub meta: Meta,
    pub cmd: ShellOrExec,
    pub files: Vec<ShellInlineFile>,
}

/// `SHELL ["exe", "args"…]`: the shell for later shell-form commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shell {
    pub meta: Meta,
    pub shell: Vec<String>,
}

/// The heredoc bodies attached to the node, in order.
pub(crate) fn inline_files(req: &Request) -> Vec<ShellInlineFile> {
    req.heredocs()
        .iter()
        .map(|h| ShellInlineFile {
            name: h.name.clone(),
            data: h.content.clone(),
            chomp: h.chomp,
        })
        .collect()
}

pub(crate) fn parse_cmd(req: &mut Request) -> Result<Cmd> {
    req.parse_flags()?;
    Ok(Cmd {
        meta: req.meta(),
        cmd: ShellOrExec::from_args(&req.args, req.json()),
        files: inline_files(req),
    })
}

pub(crate) fn parse_entrypoint(req: &mut Request) -> Result<Entrypoint> {
    req.parse_flags()?;
    Ok(Entrypoint {
        meta: req.meta(),
        cmd: ShellOrExec::from_args(&req.args, req.json()),
        files: inline_files(req),
    })
}

pub(crate) fn parse_shell(req: &mut Request) -> Result<Shell> {
    req.parse_flags()?;
    if req.args.is_empty() {
        return Err(req.fail(InstructionError::AtLeastOneArgument("SHELL")));
    }
    if !req.json() {
        return Err(req.fail(InstructionError::NotJson("SHELL")));
    }
    Ok(Shell {
        meta: req.meta(),
        shell: req.args.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{parse_instruction, Instruction};
    use super::*;
    use crate::dockerfile::node::Heredoc;

    fn cmd_of(i: Instruction) -> (ShellOrExec, Vec<ShellInlineFile>) {
        match i {
            Instruction::Cmd(c) => (c.cmd, c.files),
            Instruction::Entrypoint(c) => (c.cmd, c.files),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shell_form_joins_arguments() {
        let (cmd, _) = cmd_of(parse_instruction(&node("cmd", &[], &["echo", "hi"])).unwrap());
        assert_eq!(cmd, ShellOrExec::Shell("echo hi".into()));
        assert!(cmd.prepend_shell());
        assert_eq!(cmd.args(), ["echo hi"]);
    }

    #[test]
    fn exec_form_keeps_vector() {
        let n = json_node("entrypoint", &[], &["/bin/app", "--flag"]);
        let (cmd, _) = cmd_of(parse_instruction(&n).unwrap());
        assert_eq!(
            cmd,
            ShellOrExec::Exec(vec!["/bin/app".into(), "--flag".into()])
        );
        assert!(!cmd.prepend_shell());
        assert_eq!(cmd.args(), ["/bin/app", "--flag"]);
    }

    #[test]
    fn empty_command_lines() {
        let (cmd, _) = cmd_of(parse_instruction(&json_node("cmd", &[], &[])).unwrap());
        assert!(cmd.is_empty() && !cmd.prepend_shell());
        assert!(cmd.args().is_empty());
        let (cmd, _) = cmd_of(parse_instruction(&node("entrypoint", &[], &[])).unwrap());
        assert!(cmd.is_empty() && cmd.prepend_shell());
        assert!(cmd.args().is_empty());
    }

    #[test]
    fn heredocs_become_inline_files() {
        let mut n = node("cmd", &[], &["<<EOF"]);
        n.heredocs = vec![Heredoc {
            name: "EOF".into(),
            content: "\techo\n".into(),
            chomp: true,
            expand: true,
            file_descriptor: 0,
        }];
        let (_, files) = cmd_of(parse_instruction(&n).unwrap());
        assert_eq!(
            files,
            [ShellInlineFile {
                name: "EOF".into(),
                data: "\techo\n".into(),
                chomp: true
            }]
        );
    }

    #[test]
    fn shell_needs_json() {
        let i = parse_instruction(&json_node("shell", &[], &["powershell", "-command"])).unwrap();
        let Instruction::Shell(s) = i else { panic!() };
        assert_eq!(s.shell, ["powershell", "-command"]);
        assert_eq!(
            parse_err(&node("shell", &[], &["powershell -command"])),
            "SHELL requires the arguments to be in JSON form"
        );
        assert_eq!(
            parse_err(&json_node("shell", &[], &[])),
            "SHELL requires at least one argument"
        );
    }
}
