//! Parser directives (`# syntax=`, `# escape=`, `# check=`): recognising a
//! directive line, and finding `syntax`/`check` the way BuildKit's
//! front-end selection and linter configuration find them.
//!
//! BuildKit reads directives twice with slightly different rules. The parse
//! loop consults them on each line (after stripping leading whitespace) and
//! takes only `escape` from them. `syntax` and `check` are read by a
//! separate scan that skips a `#!` first line and does not strip leading
//! whitespace. Both are mirrored so that [`super::node::Directives`] holds
//! what BuildKit would act on.

use super::location::Range;
use super::parser::{ParseError, PhysicalLines};

/// One recognised directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    /// `syntax`, `escape` or `check`.
    pub name: &'static str,
    pub value: String,
}

/// Consumes lines from the top of a file until the first one that is not a
/// directive; after that it never matches again.
#[derive(Debug, Default)]
pub(crate) struct DirectiveScanner {
    done: bool,
    seen: Vec<&'static str>,
}

impl DirectiveScanner {
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Looks at the next line (without its line ending). A repeated
    /// directive is an error.
    pub fn scan(&mut self, line: &str) -> Result<Option<Directive>, ParseError> {
        if self.done {
            return Ok(None);
        }
        let found = line
            .strip_prefix('#')
            .and_then(|rest| match_directive(rest.trim_start()))
            .and_then(|(key, value)| Some((known_name(key)?, value)));
        let Some((name, value)) = found else {
            self.done = true;
            return Ok(None);
        };
        if self.seen.contains(&name) {
            return Err(ParseError::DuplicateDirective { name });
        }
        self.seen.push(name);
        Ok(Some(Directive {
            name,
            value: value.to_string(),
        }))
    }
}

fn known_name(key: &str) -> Option<&'static str> {
    ["syntax", "escape", "check"]
        .into_iter()
        .find(|name| key.eq_ignore_ascii_case(name))
}

/// The `\s` of Go regular expressions.
fn is_regex_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// Matches `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` with the choices a
/// backtracking engine makes: when only whitespace follows `=`, the value
/// is its last character.
pub(crate) fn match_directive(text: &str) -> Option<(&str, &str)> {
    if !text.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let key_len = text.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let (key, rest) = text.split_at(key_len);
    let after_eq = rest.trim_start_matches(is_regex_space).strip_prefix('=')?;
    let value = after_eq.trim_start_matches(is_regex_space);
    if !value.is_empty() {
        return Some((key, value.trim_end_matches(is_regex_space)));
    }
    let last = after_eq.chars().next_back()?;
    Some((key, &after_eq[after_eq.len() - last.len_utf8()..]))
}

/// The value of `# escape=`: only `\` and `` ` `` are allowed.
pub(crate) fn escape_token(value: &str) -> Result<char, ParseError> {
    match value {
        "\\" => Ok('\\'),
        "`" => Ok('`'),
        _ => Err(ParseError::InvalidEscapeToken {
            token: value.to_string(),
        }),
    }
}

/// The first `syntax` and `check` directives as BuildKit's directive scan
/// sees them: a `#!` line is skipped, lines are taken as written, and the
/// scan stops at the first non-directive line or a repeated directive.
/// `source` has had any byte-order mark removed.
pub(crate) fn syntax_and_check(source: &str) -> [Option<(String, Range)>; 2] {
    let mut found: [Option<(String, Range)>; 2] = [None, None];
    let mut line_no = 0;
    let mut body = source;
    if source.starts_with("#!") {
        body = source.split_once('\n').map_or("", |(_, rest)| rest);
        line_no = 1;
    }
    let mut scanner = DirectiveScanner::default();
    for raw in PhysicalLines::new(body, 0) {
        if scanner.is_done() {
            break;
        }
        line_no += 1;
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let line = line.strip_suffix('\r').unwrap_or(line);
        // A repeated directive ends the scan; the first one stands.
        let Ok(directive) = scanner.scan(line) else {
            break;
        };
        let Some(directive) = directive else {
            continue;
        };
        let slot = match directive.name {
            "syntax" => 0,
            "check" => 1,
            _ => continue,
        };
        found[slot] = Some((directive.value, Range::lines(line_no, line_no)));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(text: &str) -> Result<Vec<Directive>, ParseError> {
        let mut scanner = DirectiveScanner::default();
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(d) = scanner.scan(line.trim_start())? {
                out.push(d);
            }
        }
        Ok(out)
    }

    #[test]
    fn directives_stop_at_the_first_other_line() {
        let found = scan_all("#escape=\\\n# key = FOO bar\n\n# smth\n").unwrap();
        assert_eq!(
            found,
            [Directive {
                name: "escape",
                value: "\\".into()
            }]
        );
        let found = scan_all("# EScape=\\\n# KEY = FOO bar\n").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "escape");
        let found = scan_all("# comment\n# escape=`\n").unwrap();
        assert!(found.is_empty());
        let found = scan_all("\n# escape=`\n").unwrap();
        assert!(found.is_empty());
    }

    #[test]
    fn repeated_directives_are_rejected() {
        let err = scan_all("# syntax=a\n# SYNTAX=b\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "only one syntax parser directive can be used"
        );
        assert!(scan_all("# syntax=a\n# check=b\n# escape=`\n").is_ok());
    }

    #[test]
    fn directive_values_are_trimmed_like_the_regex() {
        assert_eq!(match_directive("syntax = a b  "), Some(("syntax", "a b")));
        assert_eq!(match_directive("k\t=\tv"), Some(("k", "v")));
        assert_eq!(match_directive("escape= "), Some(("escape", " ")));
        assert_eq!(match_directive("escape=\t "), Some(("escape", " ")));
        assert_eq!(match_directive("escape="), None);
        assert_eq!(match_directive("1a=b"), None);
        assert_eq!(match_directive("a-b=c"), None);
        assert_eq!(match_directive("a\u{b}=c"), None);
    }

    #[test]
    fn escape_values() {
        assert_eq!(escape_token("`").unwrap(), '`');
        assert_eq!(escape_token("\\").unwrap(), '\\');
        assert_eq!(
            escape_token("x").unwrap_err().to_string(),
            "invalid escape token 'x' does not match ` or \\"
        );
    }

    #[test]
    fn syntax_and_check_skip_a_shebang() {
        let [syntax, check] =
            syntax_and_check("#!/bin/sh\n# syntax = a // opts\n#check=skip=all\nFROM x\n");
        assert_eq!(syntax, Some(("a // opts".into(), Range::lines(2, 2))));
        assert_eq!(check, Some(("skip=all".into(), Range::lines(3, 3))));
        let [syntax, _] = syntax_and_check("#!/bin/sh\n\n# syntax = a\n");
        assert_eq!(syntax, None);
        let [syntax, _] = syntax_and_check("  # syntax = a\n");
        assert_eq!(syntax, None);
        let [syntax, _] = syntax_and_check("# syntax=a\r\n# syntax=b\r\n");
        assert_eq!(syntax, Some(("a".into(), Range::lines(1, 1))));
    }
}
