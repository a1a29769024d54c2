//! `FROM [--platform=p] image [AS name]`: the start of a stage, with
//! BuildKit's stage-name rules.
//!
//! Grouping instructions into stages and resolving names is the stage
//! layer's work; this module must not import it. The base name and platform
//! are kept unexpanded because they are expanded with the global ARGs only.

use super::config::doc_comment;
use super::{Expander, InstructionError, Meta, Request};
use crate::dockerfile::error::Result;

/// A FROM instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub meta: Meta,
    /// The image or earlier stage to build on, unexpanded.
    pub base_name: String,
    /// The `AS` name, lower-cased; `None` for an unnamed stage.
    pub stage_name: Option<String>,
    /// `--platform`, unexpanded; empty when not given.
    pub platform: String,
    /// The text after `# NAME ` in the comments above, for named stages.
    pub doc_comment: String,
}

/// True when `name` (already lower-cased) is a valid stage name:
/// `^[a-z][a-z0-9-_.]*$`.
pub(crate) fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn stage_name(req: &Request) -> Result<Option<String>> {
    match req.args.as_slice() {
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            if !is_valid_stage_name(&lower) {
                return Err(req.fail(InstructionError::InvalidStageName(name.clone())));
            }
            Ok(Some(lower))
        }
        [_] => Ok(None),
        _ => Err(req.fail(InstructionError::FromArguments)),
    }
}

pub(crate) fn parse_from(req: &mut Request) -> Result<From> {
    let stage_name = stage_name(req)?;
    let platform = req.flags.add_string("platform", "");
    req.parse_flags()?;
    let base_name = req.args.first().cloned().unwrap_or_default();
    let doc_comment = stage_name
        .as_deref()
        .map(|name| doc_comment(&req.node.prev_comment, name))
        .unwrap_or_default();
    Ok(From {
        meta: req.meta(),
        base_name,
        stage_name,
        platform: req.flags.value(platform).to_string(),
        doc_comment,
    })
}

impl From {
    /// Expands the base name and platform; the stage layer calls it with an
    /// expander over the global ARGs (BuildKit does not expand the stage
    /// name).
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        let location = self.meta.location;
        self.base_name = f(&self.base_name).map_err(|e| super::locate(e, location))?;
        if !self.platform.is_empty() {
            self.platform = f(&self.platform).map_err(|e| super::locate(e, location))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{parse_instruction, Instruction};
    use super::*;

    fn from(n: &crate::dockerfile::node::Node) -> From {
        match parse_instruction(n).unwrap() {
            Instruction::From(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unnamed_stage() {
        let f = from(&node("from", &[], &["alpine:3.20"]));
        assert_eq!(f.base_name, "alpine:3.20");
        assert_eq!(f.stage_name, None);
        assert_eq!(f.platform, "");
    }

    #[test]
    fn named_stage_is_lower_cased() {
        let mut n = node(
            "from",
            &["--platform=linux/arm64"],
            &["golang", "As", "Build-1.x_y"],
        );
        n.prev_comment = vec!["build-1.x_y compiles things".into()];
        let f = from(&n);
        assert_eq!(f.stage_name.as_deref(), Some("build-1.x_y"));
        assert_eq!(f.platform, "linux/arm64");
        assert_eq!(f.doc_comment, "compiles things");
    }

    #[test]
    fn wrong_argument_counts() {
        for args in [
            &[][..],
            &["a", "b"][..],
            &["a", "b", "c"][..],
            &["a", "as", "b", "c"][..],
        ] {
            assert_eq!(
                parse_err(&node("from", &[], args)),
                "FROM requires either one or three arguments",
                "{args:?}"
            );
        }
    }

    #[test]
    fn invalid_stage_names() {
        for name in ["1st", "a b", "a$", "-x", "_x", "ünï", "a/b", ""] {
            assert_eq!(
                parse_err(&node("from", &[], &["alpine", "AS", name])),
                format!(
                    "invalid name for build stage: {}, name can't start with a number or contain symbols",
                    crate::dockerfile::node::go_quote(name)
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn stage_name_checked_before_flags() {
        assert_eq!(
            parse_err(&node("from", &["--bogus"], &["a", "b"])),
            "FROM requires either one or three arguments"
        );
        assert_eq!(
            parse_err(&node("from", &["--bogus"], &["a"])),
            "unknown flag: --bogus"
        );
        assert_eq!(
            parse_err(&node("from", &["--platfrom=x"], &["a"])),
            "unknown flag: --platfrom (did you mean platform?)"
        );
    }

    #[test]
    fn valid_name_pattern() {
        assert!(is_valid_stage_name("a"));
        assert!(is_valid_stage_name("a0-_."));
        assert!(!is_valid_stage_name("A"));
        assert!(!is_valid_stage_name("0"));
        assert!(!is_valid_stage_name(""));
    }

    #[test]
    fn expand_touches_base_and_platform_only() {
        let mut f = from(&node("from", &["--platform=$P"], &["$IMG", "AS", "x"]));
        f.expand(&mut vars(&[("P", "linux/amd64"), ("IMG", "busybox")]))
            .unwrap();
        assert_eq!(f.base_name, "busybox");
        assert_eq!(f.platform, "linux/amd64");
        assert_eq!(f.stage_name.as_deref(), Some("x"));
    }
}
