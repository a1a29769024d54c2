//! The syntax tree the parser produces: one [`Node`] per instruction, in the
//! shape of BuildKit's parser so that [`Node::dump`] prints the exact text of
//! BuildKit's golden AST dumps.

use super::location::Range;

/// A parsed Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct Ast {
    /// The instructions, in file order.
    pub children: Vec<Node>,
    /// The escape character in force (`\` unless `# escape=` said otherwise).
    pub escape: char,
    /// Parser directives found at the top of the file.
    pub directives: Directives,
    /// Non-fatal findings (e.g. empty continuation lines), for lint output.
    pub warnings: Vec<Warning>,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`), each with the
/// line it was given on.
///
/// As in BuildKit, `escape` is what the parse loop honoured, while `syntax`
/// and `check` are found the way BuildKit's front-end selection and linter
/// find them (a `#!` first line is skipped there, indented ones are not
/// seen). Values are as written, e.g. `docker/dockerfile:1 // opts`.
#[derive(Debug, Clone, Default)]
pub struct Directives {
    pub syntax: Option<(String, Range)>,
    pub escape: Option<(char, Range)>,
    pub check: Option<(String, Range)>,
}

/// A non-fatal parser finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// BuildKit's rule name, e.g. `NoEmptyContinuation`.
    pub rule: &'static str,
    pub message: String,
    pub location: Range,
}

/// One instruction (or, for ONBUILD, the nested instruction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword, lower-cased (`run`, `copy`, …).
    pub value: String,
    /// The arguments after the flags: one per JSON array element in exec
    /// form, the whole remainder in shell form, `key value ""` triples for
    /// ENV/LABEL, and so on — exactly as BuildKit splits them.
    pub next: Vec<String>,
    /// ONBUILD's nested instruction.
    pub inner: Option<Box<Node>>,
    /// `--name=value` flags given before the arguments, verbatim.
    pub flags: Vec<String>,
    /// The arguments were given in JSON (exec) form.
    pub json: bool,
    /// The instruction's text as written (continuations joined).
    pub original: String,
    /// Heredoc bodies attached to this instruction, in order. For
    /// `ONBUILD RUN <<EOF` they sit on the ONBUILD node, as in BuildKit.
    pub heredocs: Vec<Heredoc>,
    /// First and last source line (1-based) of the instruction, including
    /// continuation lines and heredoc bodies. An ONBUILD trigger has its
    /// ONBUILD's lines.
    pub start_line: usize,
    pub end_line: usize,
    /// Comment lines directly above the instruction, without the `#`.
    pub prev_comment: Vec<String>,
}

/// A heredoc body (`<<EOF … EOF`) attached to RUN, COPY or ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, without quotes.
    pub name: String,
    /// The file descriptor given before `<<` (0 when none).
    pub file_descriptor: u32,
    /// Unquoted delimiter: the body undergoes variable expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from every body line.
    pub chomp: bool,
    /// The body as written: every line keeps its line ending (`\n`, or
    /// `\r\n` in a CRLF file); `<<-` tabs are not yet stripped (see
    /// [`super::heredoc::chomp_heredoc_content`]).
    pub content: String,
}

impl Node {
    /// The source lines this instruction spans.
    pub fn location(&self) -> Range {
        Range::lines(self.start_line, self.end_line)
    }

    /// BuildKit's s-expression dump: `run ["--flag"] "arg"`, without the
    /// surrounding parentheses (see [`Ast::dump`]).
    pub fn dump(&self) -> String {
        let mut out = self.value.to_lowercase();
        if !self.flags.is_empty() {
            out.push_str(" [");
            for (i, flag) in self.flags.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&go_quote(flag));
            }
            out.push(']');
        }
        if let Some(inner) = &self.inner {
            out.push_str(" (");
            out.push_str(&inner.dump());
            out.push(')');
        }
        for arg in &self.next {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        out.trim().to_string()
    }
}

impl Ast {
    /// One `(instruction …)` line per instruction, as BuildKit's golden
    /// `result` files hold them.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for child in &self.children {
            out.push('(');
            out.push_str(&child.dump());
            out.push_str(")\n");
        }
        out
    }
}

/// Quotes a string the way Go's `strconv.Quote` does, which is what
/// BuildKit's dumps use: `"` and `\` escaped, C escapes for the usual
/// control characters, `\xNN` for other ASCII controls, `\uNNNN` /
/// `\UNNNNNNNN` for non-printable code points, printable text verbatim.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || c.is_whitespace() || is_unprintable_format(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Format characters Go does not consider printable (zero-width and
/// direction marks, the BOM).
fn is_unprintable_format(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_matches_strconv_quote() {
        assert_eq!(go_quote("a b"), r#""a b""#);
        assert_eq!(go_quote("say \"hi\"\\"), r#""say \"hi\"\\""#);
        assert_eq!(go_quote("a\tb\nc"), r#""a\tb\nc""#);
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("한국어"), "\"한국어\"");
        assert_eq!(go_quote("\u{a0}\u{feff}"), r#""\u00a0\ufeff""#);
    }

    #[test]
    fn dump_prints_flags_then_args() {
        let node = Node {
            value: "copy".into(),
            flags: vec!["--from=a".into(), "--link".into()],
            next: vec!["/src".into(), "/dst".into()],
            ..Node::default()
        };
        assert_eq!(node.dump(), r#"copy ["--from=a" "--link"] "/src" "/dst""#);
        let onbuild = Node {
            value: "onbuild".into(),
            inner: Some(Box::new(Node {
                value: "run".into(),
                next: vec!["echo hi".into()],
                ..Node::default()
            })),
            ..Node::default()
        };
        assert_eq!(onbuild.dump(), r#"onbuild (run "echo hi")"#);
    }
}
