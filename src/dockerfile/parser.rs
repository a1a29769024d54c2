//! Dockerfile text → [`Ast`]: directives, logical lines, heredocs, flags,
//! JSON vs shell form, per instruction as BuildKit's parser does.
//!
//! The file is read one physical line at a time, as BuildKit's scanner does:
//! directives at the top, comments collected for the next instruction,
//! continuation lines joined (skipping comment and blank lines in between),
//! then the joined line is split into keyword, flags and arguments (see
//! `line_parsers`), and heredoc bodies are taken from the lines after it.
//!
//! Two checks BuildKit makes only when it types the instructions are made
//! here too: unknown keywords and forbidden ONBUILD triggers. They are
//! reported only once the whole file has parsed, so that a syntax error
//! anywhere still wins, as it does in BuildKit.

use super::directives::{escape_token, syntax_and_check, DirectiveScanner};
use super::error::{Error, Result};
use super::heredoc::{heredocs_from_line, HeredocWordError};
use super::line_parsers::{
    go_lower, go_upper, parse_health_config, parse_maybe_json, parse_maybe_json_to_list,
    parse_name_or_name_val, parse_name_val, parse_string, parse_strings_whitespace_delimited,
    split_command, Args,
};
use super::location::Range;
use super::node::{go_quote, Ast, Directives, Heredoc, Node, Warning};
use super::suggest;

/// The escape character unless `# escape=` says otherwise.
pub const DEFAULT_ESCAPE: char = '\\';

/// BuildKit reads lines through a scanner with a 64 KiB buffer: a line
/// (without its `\n`) longer than this fails the whole parse.
pub const MAX_LINE_LEN: usize = 65535;

/// Every instruction keyword, lower-cased.
const INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Why the text is not a Dockerfile. Messages are BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("file with no instructions")]
    Empty,
    #[error("dockerfile line greater than max allowed size of {MAX_LINE_LEN}")]
    LineTooLong,
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective { name: &'static str },
    #[error("invalid escape token '{token}' does not match ` or \\")]
    InvalidEscapeToken { token: String },
    #[error("unknown instruction: {instruction}{}", suggest::hint(.suggestion))]
    UnknownInstruction {
        instruction: String,
        /// A known keyword within two edits, cased like the input.
        suggestion: Option<String>,
    },
    /// Legacy `ENV name value` / `LABEL name value` with no value.
    #[error("{instruction} must have two arguments")]
    MissingValue { instruction: &'static str },
    /// A word without `=` in `ENV a=b …` / `LABEL a=b …`.
    #[error("Syntax error - can't find = in {}. Must be of the form: name=value", go_quote(.word))]
    MissingEquals { word: String },
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotAllStrings,
    #[error("unterminated heredoc")]
    UnterminatedHeredoc,
    #[error("failed to process {}: {reason}", go_quote(.word))]
    InvalidHeredocWord {
        word: String,
        reason: HeredocWordError,
    },
    #[error("internal lexing of heredoc produced inconsistent results: {word}")]
    InconsistentHeredocWord { word: String },
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    ChainedOnbuild,
    #[error("{trigger} isn't allowed as an ONBUILD trigger")]
    ForbiddenOnbuildTrigger { trigger: String },
}

/// Parses a whole Dockerfile.
///
/// Errors carry the lines of the instruction concerned (or of the directive,
/// or of the over-long line). Non-fatal findings are in [`Ast::warnings`].
pub fn parse(source: &str) -> Result<Ast> {
    // The byte-order mark still counts toward the first line's length.
    let (body, bom_len) = match source.strip_prefix('\u{feff}') {
        Some(body) => (body, '\u{feff}'.len_utf8()),
        None => (source, 0),
    };
    let mut reader = LineReader {
        lines: PhysicalLines::new(body, bom_len),
        line_no: 0,
    };
    let mut escape = DEFAULT_ESCAPE;
    let mut directives = DirectiveScanner::default();
    let mut escape_directive = None;
    let mut children: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut postponed: Option<Error> = None;

    while let Some(raw) = reader.next_line() {
        let start_line = reader.line_no;
        let here = Range::lines(start_line, start_line);
        if is_comment(raw) {
            // BuildKit drops the first byte of the line, not the `#`, so an
            // indented comment keeps its `#`.
            let mut chars = raw.chars();
            chars.next();
            let comment = chars.as_str().trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_string());
            }
        }
        let text = trim_newline(raw).trim_start();
        if let Some(directive) = directives.scan(text).map_err(|e| Error::new(e, here))? {
            // A directive is not a comment for the next instruction.
            comments.pop();
            if directive.name == "escape" {
                escape = escape_token(&directive.value).map_err(|e| Error::new(e, here))?;
                escape_directive = Some((escape, here));
            }
        }

        let text = if is_comment(text) { "" } else { text };
        let (first, complete) = trim_continuation(text, escape);
        if complete && first.is_empty() {
            continue;
        }
        let mut line = first.to_string();
        if !complete && reader.join_continuations(&mut line, escape) {
            warnings.push(Warning {
                rule: "NoEmptyContinuation",
                message: "Empty continuation line".to_string(),
                location: Range::lines(reader.line_no, reader.line_no),
            });
        }

        let mut typing_error = None;
        let located = |e: ParseError, end: usize| Error::new(e, Range::lines(start_line, end));
        let mut node = node_from_line(
            &line,
            escape,
            std::mem::take(&mut comments),
            &mut typing_error,
        )
        .map_err(|e| located(e, reader.line_no))?;
        if can_contain_heredoc(&node) && line.contains("<<") {
            for mut doc in heredocs_from_line(&line).map_err(|e| located(e, reader.line_no))? {
                if !reader.read_heredoc_body(&mut doc) {
                    return Err(located(ParseError::UnterminatedHeredoc, reader.line_no));
                }
                node.heredocs.push(doc);
            }
        }

        node.start_line = start_line;
        node.end_line = reader.line_no;
        if let Some(inner) = node.inner.as_deref_mut() {
            inner.start_line = node.start_line;
            inner.end_line = node.end_line;
        }
        if postponed.is_none() {
            let unknown = || !INSTRUCTIONS.contains(&node.value.as_str());
            postponed = typing_error
                .or_else(|| unknown().then(|| unknown_instruction(&node)))
                .map(|e| Error::new(e, node.location()));
        }
        children.push(node);
    }

    if children.is_empty() {
        return Err(match reader.line_no {
            0 => Error::unlocated(ParseError::Empty),
            n => Error::new(ParseError::Empty, Range::lines(n, n)),
        });
    }
    if reader.lines.too_long {
        let at = reader.line_no + 1;
        return Err(Error::new(ParseError::LineTooLong, Range::lines(at, at)));
    }
    if let Some(err) = postponed {
        return Err(err);
    }
    let [syntax, check] = syntax_and_check(body);
    Ok(Ast {
        children,
        escape,
        directives: Directives {
            syntax,
            escape: escape_directive,
            check,
        },
        warnings,
    })
}

/// Physical lines with the number of the last one handed out.
struct LineReader<'a> {
    lines: PhysicalLines<'a>,
    line_no: usize,
}

impl<'a> LineReader<'a> {
    fn next_line(&mut self) -> Option<&'a str> {
        let line = self.lines.next()?;
        self.line_no += 1;
        Some(line)
    }

    /// Appends continuation lines to `line` until one does not end in the
    /// escape character (or the file ends). Comment lines and blank lines in
    /// between are skipped without ending the instruction; returns whether
    /// there were blank ones, which BuildKit warns about.
    fn join_continuations(&mut self, line: &mut String, escape: char) -> bool {
        let mut saw_empty = false;
        while let Some(raw) = self.next_line() {
            if is_comment(raw) {
                continue;
            }
            let text = trim_newline(raw);
            if text.trim_start().is_empty() {
                saw_empty = true;
                continue;
            }
            let (part, complete) = trim_continuation(text, escape);
            line.push_str(part);
            if complete {
                break;
            }
        }
        saw_empty
    }

    /// Fills `doc.content` up to its terminator line; false if the file
    /// ends first. Bodies are verbatim: no comments, escapes or directives.
    fn read_heredoc_body(&mut self, doc: &mut Heredoc) -> bool {
        while let Some(raw) = self.next_line() {
            let mut candidate = trim_newline(raw);
            if doc.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == doc.name {
                return true;
            }
            doc.content.push_str(raw);
        }
        false
    }
}

/// The file's physical lines, each with its `\n` (the last may lack one).
/// Stops for good at a line longer than [`MAX_LINE_LEN`], as BuildKit's
/// scanner does, and remembers that it did.
pub(crate) struct PhysicalLines<'a> {
    rest: &'a str,
    /// Bytes already stripped from the first line (a byte-order mark).
    first_line_extra: usize,
    pub too_long: bool,
}

impl<'a> PhysicalLines<'a> {
    pub fn new(text: &'a str, first_line_extra: usize) -> Self {
        PhysicalLines {
            rest: text,
            first_line_extra,
            too_long: false,
        }
    }
}

impl<'a> Iterator for PhysicalLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.too_long || self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.find('\n') {
            Some(i) => self.rest.split_at(i + 1),
            None => (self.rest, ""),
        };
        let content_len = line.len() - usize::from(line.ends_with('\n'))
            + std::mem::take(&mut self.first_line_extra);
        if content_len > MAX_LINE_LEN {
            self.too_long = true;
            return None;
        }
        self.rest = rest;
        Some(line)
    }
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing escape character (and blanks after it) that continues
/// the line; returns the text and whether the line is complete. A doubled
/// escape at the end is not a continuation.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let Some(before) = line.trim_end_matches([' ', '\t']).strip_suffix(escape) else {
        return (line, true);
    };
    match before.chars().next_back() {
        Some(c) if c == escape => (line, true),
        _ => (before, false),
    }
}

/// Builds the node for one logical line. Errors BuildKit would only raise
/// when typing the instruction go to `typing_error` (first one kept).
fn node_from_line(
    line: &str,
    escape: char,
    prev_comment: Vec<String>,
    typing_error: &mut Option<ParseError>,
) -> std::result::Result<Node, ParseError> {
    let split = split_command(line, escape);
    let mut node = Node {
        value: go_lower(split.keyword),
        flags: split.flags,
        original: line.to_string(),
        prev_comment,
        ..Node::default()
    };
    let rest = split.args;
    let args = match node.value.as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(rest)?,
        "arg" => parse_name_or_name_val(rest, escape),
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(rest)?,
        "env" => parse_name_val(rest, "ENV", escape)?,
        "label" => parse_name_val(rest, "LABEL", escape)?,
        "expose" | "from" => parse_strings_whitespace_delimited(rest),
        "healthcheck" => parse_health_config(rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => parse_string(rest),
        "onbuild" => {
            node.inner = onbuild_trigger(rest, escape, typing_error)?.map(Box::new);
            Args::default()
        }
        // BuildKit's parser keeps unknown instructions with one empty
        // argument; they are rejected once the file has parsed.
        _ => Args {
            next: vec![String::new()],
            json: false,
        },
    };
    node.next = args.next;
    node.json = args.json;
    Ok(node)
}

/// The instruction after ONBUILD. A chained `ONBUILD ONBUILD …` is not
/// nested further (it can never be valid), but every level is still parsed
/// for the syntax errors BuildKit would report first.
fn onbuild_trigger(
    rest: &str,
    escape: char,
    typing_error: &mut Option<ParseError>,
) -> std::result::Result<Option<Node>, ParseError> {
    if rest.is_empty() {
        return Ok(None);
    }
    let split = split_command(rest, escape);
    let trigger = go_upper(split.keyword.trim());
    match trigger.as_str() {
        "ONBUILD" => {
            typing_error.get_or_insert(ParseError::ChainedOnbuild);
        }
        "MAINTAINER" | "FROM" => {
            typing_error.get_or_insert(ParseError::ForbiddenOnbuildTrigger { trigger });
        }
        _ => {}
    }
    if go_lower(split.keyword) != "onbuild" {
        return node_from_line(rest, escape, Vec::new(), typing_error).map(Some);
    }
    let mut deeper = split.args;
    while !deeper.is_empty() {
        let level = split_command(deeper, escape);
        if go_lower(level.keyword) != "onbuild" {
            node_from_line(deeper, escape, Vec::new(), &mut None)?;
            break;
        }
        deeper = level.args;
    }
    Ok(Some(Node {
        value: "onbuild".to_string(),
        flags: split.flags,
        original: rest.to_string(),
        ..Node::default()
    }))
}

/// RUN, COPY and ADD in shell form (also as an ONBUILD trigger) take
/// heredocs.
fn can_contain_heredoc(node: &Node) -> bool {
    let target = match node.inner.as_deref() {
        Some(inner) if node.value == "onbuild" => inner,
        _ => node,
    };
    matches!(target.value.as_str(), "add" | "copy" | "run") && !target.json
}

fn unknown_instruction(node: &Node) -> ParseError {
    let instruction = split_command(&node.original, DEFAULT_ESCAPE)
        .keyword
        .to_string();
    // INSTRUCTIONS is sorted, so ties go to the first alphabetically.
    let suggestion = suggest::suggest(&instruction, &INSTRUCTIONS, false);
    ParseError::UnknownInstruction {
        instruction,
        suggestion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::ErrorKind;

    fn dump(source: &str) -> String {
        match parse(source) {
            Ok(ast) => ast.dump(),
            Err(err) => panic!("{source:?} rejected: {err}"),
        }
    }

    fn lines_of(ast: &Ast) -> Vec<(usize, usize)> {
        ast.children
            .iter()
            .map(|n| (n.start_line, n.end_line))
            .collect()
    }

    /// The parse error and the (first, last) lines it points at.
    fn error(source: &str) -> (ParseError, Option<(usize, usize)>) {
        let err = match parse(source) {
            Ok(ast) => panic!("{source:?} accepted:\n{}", ast.dump()),
            Err(err) => err,
        };
        let lines = err.location.first().map(|r| (r.start.line, r.end.line));
        match err.kind {
            ErrorKind::Parse(kind) => (kind, lines),
            other => panic!("not a parse error: {other}"),
        }
    }

    fn heredoc(name: &str, content: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            expand: true,
            content: content.into(),
            ..Heredoc::default()
        }
    }

    #[test]
    fn heredoc_bodies_are_attached_and_counted_in_lines() {
        let source = "FROM alpine
RUN <<EOF
echo \"hello $NAME\"
EOF
RUN 3<<-'END' cat
\ttabbed
\t\ttwice
\tEND
COPY <<A <<\"B\" /dest/
B
A
A
B
RUN --mount=type=cache,target=/x <<RUNME
# not a comment here
RUNME
RUN <<EMPTY
EMPTY
";
        let ast = parse(source).unwrap();
        assert_eq!(
            ast.dump(),
            r#"(from "alpine")
(run "<<EOF")
(run "3<<-'END' cat")
(copy "<<A" "<<\"B\"" "/dest/")
(run ["--mount=type=cache,target=/x"] "<<RUNME")
(run "<<EMPTY")
"#
        );
        assert_eq!(
            lines_of(&ast),
            [(1, 1), (2, 4), (5, 8), (9, 13), (14, 16), (17, 18)]
        );
        let docs: Vec<&[Heredoc]> = ast.children.iter().map(|n| n.heredocs.as_slice()).collect();
        assert!(docs[0].is_empty());
        assert_eq!(docs[1], [heredoc("EOF", "echo \"hello $NAME\"\n")]);
        assert_eq!(
            docs[2],
            [Heredoc {
                name: "END".into(),
                file_descriptor: 3,
                expand: false,
                chomp: true,
                content: "\ttabbed\n\t\ttwice\n".into(),
            }]
        );
        assert_eq!(
            docs[3],
            [
                heredoc("A", "B\n"),
                Heredoc {
                    expand: false,
                    ..heredoc("B", "A\n")
                }
            ]
        );
        assert_eq!(docs[4], [heredoc("RUNME", "# not a comment here\n")]);
        assert_eq!(docs[5], [heredoc("EMPTY", "")]);
    }

    #[test]
    fn heredocs_only_for_run_copy_add_in_shell_form() {
        let source = "FROM a
RUN [\"<<EOF\"]
USER <<EOF
CMD <<EOF
RUN \"<<NOHEREDOC\"
ADD <<EOF /x
y
EOF
";
        let ast = parse(source).unwrap();
        assert_eq!(
            ast.dump(),
            r#"(from "a")
(run "<<EOF")
(user "<<EOF")
(cmd "<<EOF")
(run "\"<<NOHEREDOC\"")
(add "<<EOF" "/x")
"#
        );
        let counts: Vec<usize> = ast.children.iter().map(|n| n.heredocs.len()).collect();
        assert_eq!(counts, [0, 0, 0, 0, 0, 1]);
        assert!(ast.children[1].json);
    }

    #[test]
    fn heredoc_variants_of_the_delimiter() {
        let ast = parse(
            "FROM a
RUN <<eo'f'
echo foo
eof
RUN <<  EOF  > foo
EOF
RUN <<$EOF
$EOF
RUN <<'one two'
x
one two
",
        )
        .unwrap();
        let docs: Vec<&Heredoc> = ast.children.iter().flat_map(|n| &n.heredocs).collect();
        assert_eq!(
            docs,
            [
                &Heredoc {
                    expand: false,
                    ..heredoc("eof", "echo foo\n")
                },
                &heredoc("EOF", ""),
                &heredoc("$EOF", ""),
                &Heredoc {
                    expand: false,
                    ..heredoc("one two", "x\n")
                },
            ]
        );
    }

    #[test]
    fn heredocs_in_onbuild_attach_to_the_onbuild_node() {
        let ast = parse("FROM a\nONBUILD RUN <<EOF\nx\nEOF\nONBUILD RUN [\"<<EOF\"]\n").unwrap();
        assert_eq!(
            ast.dump(),
            "(from \"a\")\n(onbuild (run \"<<EOF\"))\n(onbuild (run \"<<EOF\"))\n"
        );
        assert_eq!(ast.children[1].heredocs, [heredoc("EOF", "x\n")]);
        assert_eq!(lines_of(&ast), [(1, 1), (2, 4), (5, 5)]);
        let inner = ast.children[1].inner.as_deref().unwrap();
        assert_eq!((inner.start_line, inner.end_line), (2, 4));
        assert!(ast.children[2].heredocs.is_empty());
    }

    #[test]
    fn heredocs_ignore_the_escape_directive_and_keep_crlf() {
        let ast = parse("# escape=`\r\nFROM a\r\nRUN <<EOF\r\nhi `\r\nEOF\r\n").unwrap();
        assert_eq!(ast.children[1].heredocs, [heredoc("EOF", "hi `\r\n")]);
        assert_eq!(ast.children[1].original, "RUN <<EOF");
    }

    #[test]
    fn unterminated_heredoc_points_at_the_instruction_and_body() {
        let (err, lines) = error("FROM a\nRUN <<EOF\nabc\n");
        assert_eq!(err, ParseError::UnterminatedHeredoc);
        assert_eq!(lines, Some((2, 3)));
        // The second of two heredocs is missing its terminator.
        let (err, lines) = error("FROM a\nCOPY <<A <<B /\nA\n");
        assert_eq!(err, ParseError::UnterminatedHeredoc);
        assert_eq!(lines, Some((2, 3)));
    }

    #[test]
    fn escape_directive_backtick() {
        assert_eq!(
            dump("# escape = `\n\nFROM `\n    image\n"),
            "(from \"image\")\n"
        );
        let ast = parse("# escape=`\nFROM a\nRUN dir c:\\\nCOPY a `\n b\n").unwrap();
        assert_eq!(
            ast.dump(),
            "(from \"a\")\n(run \"dir c:\\\\\")\n(copy \"a\" \"b\")\n"
        );
        assert_eq!(ast.escape, '`');
        assert_eq!(ast.directives.escape, Some(('`', Range::lines(1, 1))));
    }

    #[test]
    fn directive_keys_are_case_insensitive() {
        let source = "# ESCAPE=`\n# Syntax = docker/dockerfile:1\n#CHECK=skip=all\nFROM a `\n  b\n";
        let ast = parse(source).unwrap();
        assert_eq!(ast.dump(), "(from \"a\" \"b\")\n");
        assert_eq!(ast.escape, '`');
        assert_eq!(
            ast.directives.syntax,
            Some(("docker/dockerfile:1".into(), Range::lines(2, 2)))
        );
        assert_eq!(
            ast.directives.check,
            Some(("skip=all".into(), Range::lines(3, 3)))
        );
        assert!(ast.children[0].prev_comment.is_empty());
    }

    #[test]
    fn directives_after_a_comment_or_instruction_are_comments() {
        let ast = parse("# hello\n# escape=`\nFROM a\\\nb\n").unwrap();
        assert_eq!(ast.escape, '\\');
        assert_eq!(ast.directives.escape, None);
        assert_eq!(ast.children[0].prev_comment, ["hello", "escape=`"]);
        assert_eq!(ast.dump(), "(from \"ab\")\n");

        let ast = parse("FROM a\n# escape=`\n# syntax=x\nRUN a\\\nb\n").unwrap();
        assert_eq!(ast.escape, '\\');
        assert_eq!(ast.directives.syntax, None);
        assert_eq!(ast.children[1].prev_comment, ["escape=`", "syntax=x"]);

        // A blank line ends the directives too.
        let ast = parse("\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(ast.escape, '\\');
    }

    #[test]
    fn repeated_or_invalid_directives_are_rejected() {
        let (err, lines) = error("# escape=`\n# ESCAPE=\\\nFROM a\n");
        assert_eq!(err, ParseError::DuplicateDirective { name: "escape" });
        assert_eq!(lines, Some((2, 2)));
        let (err, _) = error("# syntax=a\n# escape=`\n# syntax=b\nFROM a\n");
        assert_eq!(
            err.to_string(),
            "only one syntax parser directive can be used"
        );
        let (err, lines) = error("# escape=x\nFROM a\n");
        assert_eq!(
            err.to_string(),
            "invalid escape token 'x' does not match ` or \\"
        );
        assert_eq!(lines, Some((1, 1)));
        // An unknown key just ends the directives.
        let ast = parse("# foo=bar\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(ast.escape, '\\');
    }

    #[test]
    fn shebang_hides_escape_but_not_syntax_or_check() {
        let ast = parse("#!/usr/bin/env buildctl\n# syntax=a\n# escape=`\nFROM x\n").unwrap();
        assert_eq!(ast.escape, '\\');
        assert_eq!(
            ast.directives.syntax,
            Some(("a".into(), Range::lines(2, 2)))
        );
        assert_eq!(
            ast.children[0].prev_comment,
            ["!/usr/bin/env buildctl", "syntax=a", "escape=`"]
        );
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let ast = parse("\u{feff}# escape=`\nFROM a `\n b\n").unwrap();
        assert_eq!(ast.dump(), "(from \"a\" \"b\")\n");
        assert_eq!(ast.directives.escape, Some(('`', Range::lines(1, 1))));
        assert_eq!(dump("\u{feff}FROM a\n"), "(from \"a\")\n");
        // Only at the very start.
        let (err, _) = error("FROM a\n\u{feff}RUN x\n");
        assert!(matches!(err, ParseError::UnknownInstruction { .. }));
    }

    #[test]
    fn crlf_input() {
        let ast = parse("FROM x\r\n# c\r\nRUN a \\\r\n  b\r\n\r\nCMD [\"x\"]\r\n").unwrap();
        assert_eq!(ast.dump(), "(from \"x\")\n(run \"a   b\")\n(cmd \"x\")\n");
        assert_eq!(lines_of(&ast), [(1, 1), (3, 4), (6, 6)]);
        assert_eq!(ast.children[1].prev_comment, ["c"]);
    }

    #[test]
    fn continuation_at_end_of_file() {
        assert_eq!(
            dump("FROM alpine:3.5\n\nRUN something \\"),
            "(from \"alpine:3.5\")\n(run \"something\")\n"
        );
        let ast = parse("FROM a\nRUN x \\\n\n").unwrap();
        assert_eq!(lines_of(&ast), [(1, 1), (2, 3)]);
        assert_eq!(ast.warnings.len(), 1);
    }

    #[test]
    fn continuation_edge_cases() {
        // A doubled escape at the end does not continue the line.
        assert_eq!(
            dump("FROM a\nRUN echo \\\\\nCMD x\n"),
            "(from \"a\")\n(run \"echo \\\\\\\\\")\n(cmd \"x\")\n"
        );
        // Blanks after the escape are allowed.
        assert_eq!(dump("FROM a \\ \t\nb\n"), "(from \"a\" \"b\")\n");
        // A line holding only the escape joins what follows.
        let ast = parse("\\\nFROM a\n").unwrap();
        assert_eq!(ast.dump(), "(from \"a\")\n");
        assert_eq!(lines_of(&ast), [(1, 2)]);
        // Leading blanks of continuation lines are kept; of the first, not.
        let ast = parse("   RUN a \\\n   b\n").unwrap();
        assert_eq!(ast.children[0].original, "RUN a    b");
    }

    #[test]
    fn comments_and_empty_lines_inside_continuations() {
        let source = "
FROM alpine:3.6

RUN valid \\
    continuation

RUN something \\

    following \\

    more

RUN another \\

    thing

RUN non-indented \\
# this is a comment
   after-comment

RUN indented \\
    # this is an indented comment
    comment
\t";
        let ast = parse(source).unwrap();
        assert_eq!(
            ast.dump(),
            r#"(from "alpine:3.6")
(run "valid     continuation")
(run "something     following     more")
(run "another     thing")
(run "non-indented    after-comment")
(run "indented     comment")
"#
        );
        assert_eq!(
            lines_of(&ast),
            [(2, 2), (4, 5), (7, 11), (13, 15), (17, 19), (21, 23)]
        );
        let warned: Vec<(&str, &str, usize)> = ast
            .warnings
            .iter()
            .map(|w| (w.rule, w.message.as_str(), w.location.start.line))
            .collect();
        assert_eq!(
            warned,
            [
                ("NoEmptyContinuation", "Empty continuation line", 11),
                ("NoEmptyContinuation", "Empty continuation line", 15)
            ]
        );
    }

    #[test]
    fn line_ranges_span_continuations() {
        let source = "# ESCAPE=\\



FROM brimstone/ubuntu:14.04


# TORUN -v /var/run/docker.sock:/var/run/docker.sock


ENV GOPATH \\
/go




# Install the packages we need, clean up after them and us
RUN apt-get update \\
\t&& dpkg -l \\


    && apt-get clean \\

\t&& rm -rf $GOPATH



";
        let ast = parse(source).unwrap();
        assert_eq!(lines_of(&ast), [(5, 5), (11, 12), (18, 24)]);
        assert_eq!(
            ast.children[1].prev_comment,
            ["TORUN -v /var/run/docker.sock:/var/run/docker.sock"]
        );
        assert_eq!(
            ast.children[2].prev_comment,
            ["Install the packages we need, clean up after them and us"]
        );
    }

    #[test]
    fn previous_comments() {
        let ast = parse("# a\n\n# b\nFROM x\n# c\n#\n# d\n  # e\nRUN y\nRUN z\n").unwrap();
        assert_eq!(ast.children[0].prev_comment, ["a", "b"]);
        // An empty comment starts over; an indented one keeps its `#`.
        assert_eq!(ast.children[1].prev_comment, ["d", "# e"]);
        assert!(ast.children[2].prev_comment.is_empty());
    }

    #[test]
    fn instruction_shapes() {
        let source = r#"FROM --platform=linux/amd64 busybox:latest AS base
ARG A B=2 "C=3 4"
ENV A=1 B="2 3" C\ D=4
ENV LEGACY some value
LABEL "a b"=c
EXPOSE 80/tcp   443
VOLUME ["/a", "/b"]
VOLUME /c /d
ADD --chown=1:1 ["a b", "/c"]
COPY --from=base --link a b /c/
SHELL ["/bin/sh", "-c"]
RUN ["a", "b"] trailing
CMD []
ENTRYPOINT exec "x"
STOPSIGNAL SIGKILL
USER u:g
WORKDIR /a b
MAINTAINER Some One <a@b.c>
"#;
        assert_eq!(
            dump(source),
            r#"(from ["--platform=linux/amd64"] "busybox:latest" "AS" "base")
(arg "A" "B=2" "\"C=3 4\"")
(env "A" "1" "=" "B" "\"2 3\"" "=" "C\\ D" "4" "=")
(env "LEGACY" "some value" "")
(label "\"a b\"" "c" "=")
(expose "80/tcp" "443")
(volume "/a" "/b")
(volume "/c" "/d")
(add ["--chown=1:1"] "a b" "/c")
(copy ["--from=base" "--link"] "a" "b" "/c/")
(shell "/bin/sh" "-c")
(run "[\"a\", \"b\"] trailing")
(cmd)
(entrypoint "exec \"x\"")
(stopsignal "SIGKILL")
(user "u:g")
(workdir "/a b")
(maintainer "Some One <a@b.c>")
"#
        );
        let ast = parse("FROM a\nCMD []\nCMD [\"x\"\nRUN\n").unwrap();
        let json: Vec<bool> = ast.children.iter().map(|n| n.json).collect();
        assert_eq!(json, [false, true, false, false]);
        assert_eq!(ast.children[2].next, ["[\"x\""]);
        assert!(ast.children[3].next.is_empty());
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            dump("from a\nRun b\nhealthcheck none\n"),
            "(from \"a\")\n(run \"b\")\n(healthcheck \"none\")\n"
        );
        assert_eq!(parse("FrOm a\n").unwrap().children[0].value, "from");
    }

    #[test]
    fn healthcheck_forms() {
        let source = "FROM a
HEALTHCHECK NONE
HEALTHCHECK
HEALTHCHECK --interval=5s --timeout=3s --retries=3 \\
  CMD /check.sh --quiet
HEALTHCHECK   CMD   a b
HEALTHCHECK --start-period=0s CMD [\"foo\", \"bar\"]
HEALTHCHECK CONNECT TCP 7000
";
        assert_eq!(
            dump(source),
            r#"(from "a")
(healthcheck "NONE")
(healthcheck)
(healthcheck ["--interval=5s" "--timeout=3s" "--retries=3"] "CMD" "/check.sh --quiet")
(healthcheck "CMD" "a b")
(healthcheck ["--start-period=0s"] "CMD" "foo" "bar")
(healthcheck "CONNECT" "TCP 7000")
"#
        );
        let ast = parse("FROM a\nHEALTHCHECK CMD [\"x\"]\n").unwrap();
        assert!(ast.children[1].json);
        let (err, lines) = error("FROM a\nHEALTHCHECK CMD [\"x\", 1]\n");
        assert_eq!(err, ParseError::JsonNotAllStrings);
        assert_eq!(lines, Some((2, 2)));
    }

    #[test]
    fn onbuild_nests_its_trigger() {
        let source = "FROM a
ONBUILD RUN [\"echo\", \"test\"]
ONBUILD --flag COPY --chown=1 . /
onbuild unknownthing x
ONBUILD
";
        let ast = parse(source).unwrap();
        assert_eq!(
            ast.dump(),
            r#"(from "a")
(onbuild (run "echo" "test"))
(onbuild ["--flag"] (copy ["--chown=1"] "." "/"))
(onbuild (unknownthing ""))
(onbuild)
"#
        );
        let inner = ast.children[2].inner.as_deref().unwrap();
        assert_eq!(inner.original, "COPY --chown=1 . /");
        assert!(ast.children[1].inner.as_deref().unwrap().json);
        assert!(!ast.children[1].json);
    }

    #[test]
    fn onbuild_rejects_chaining_from_and_maintainer() {
        let (err, lines) = error("FROM a\nONBUILD ONBUILD RUN x\n");
        assert_eq!(err, ParseError::ChainedOnbuild);
        assert_eq!(
            err.to_string(),
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
        assert_eq!(lines, Some((2, 2)));
        let (err, _) = error("FROM a\nonbuild from x\n");
        assert_eq!(err.to_string(), "FROM isn't allowed as an ONBUILD trigger");
        let (err, lines) = error("FROM a\nONBUILD \\\n  Maintainer me\n");
        assert_eq!(
            err.to_string(),
            "MAINTAINER isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(lines, Some((2, 3)));
        // Deep chains are refused without deep recursion, and a syntax error
        // further down still wins, as BuildKit parses every level first.
        let chain = format!("FROM a\n{}RUN x\n", "ONBUILD \\\n".repeat(100_000));
        assert_eq!(error(&chain).0, ParseError::ChainedOnbuild);
        let (err, _) = error("FROM a\nONBUILD ONBUILD ONBUILD ENV k\n");
        assert_eq!(err, ParseError::MissingValue { instruction: "ENV" });
    }

    #[test]
    fn unknown_instructions_are_rejected_with_a_suggestion() {
        let (err, lines) = error("FROM a\nRUNN x\n");
        assert_eq!(
            err.to_string(),
            "unknown instruction: RUNN (did you mean RUN?)"
        );
        assert_eq!(lines, Some((2, 2)));
        let (err, _) = error("fomr a\n");
        assert_eq!(
            err.to_string(),
            "unknown instruction: fomr (did you mean from?)"
        );
        let (err, lines) = error("FROM a\nFrobnicate \\\n x\n");
        assert_eq!(err.to_string(), "unknown instruction: Frobnicate");
        assert_eq!(lines, Some((2, 3)));
        let (err, _) = error("FROM a\n\\\n");
        assert_eq!(err.to_string(), "unknown instruction: ");
    }

    #[test]
    fn syntax_errors_win_over_earlier_typing_errors() {
        // BuildKit parses the whole file before typing any instruction.
        let (err, lines) = error("FROM a\nFOO\nENV x\n");
        assert_eq!(err, ParseError::MissingValue { instruction: "ENV" });
        assert_eq!(lines, Some((3, 3)));
        // Among typing errors the first in the file wins.
        let (err, lines) = error("FOO\nONBUILD FROM x\n");
        assert!(matches!(err, ParseError::UnknownInstruction { .. }));
        assert_eq!(lines, Some((1, 1)));
    }

    #[test]
    fn argument_errors_point_at_the_instruction() {
        let (err, lines) = error("FROM a\nENV x\n");
        assert_eq!(err.to_string(), "ENV must have two arguments");
        assert_eq!(lines, Some((2, 2)));
        let (err, lines) = error("FROM a\nLABEL a=b \\\n  c\n");
        assert_eq!(
            err.to_string(),
            r#"Syntax error - can't find = in "c". Must be of the form: name=value"#
        );
        assert_eq!(lines, Some((2, 3)));
        let (err, lines) = error("FROM a\n\nCMD [ \"echo\", [ \"nested json\" ] ]\n");
        assert_eq!(
            err.to_string(),
            "when using JSON array syntax, arrays must be comprised of strings only"
        );
        assert_eq!(lines, Some((3, 3)));
        let (err, _) = error("FROM a\nCOPY [\"a\", null]\n");
        assert_eq!(err, ParseError::JsonNotAllStrings);
    }

    #[test]
    fn files_without_instructions_are_rejected() {
        let err = parse("").unwrap_err();
        assert!(matches!(err.kind, ErrorKind::Parse(ParseError::Empty)));
        assert!(err.location.is_empty());
        let (err, lines) = error("# Hello\n# These are just comments\n\n");
        assert_eq!(err.to_string(), "file with no instructions");
        assert_eq!(lines, Some((3, 3)));
        assert_eq!(error("# escape=`\n").0, ParseError::Empty);
    }

    #[test]
    fn lines_longer_than_buildkit_accepts() {
        let longest = format!("FROM a\nLABEL x={}\n", "a".repeat(MAX_LINE_LEN - 8));
        assert!(parse(&longest).is_ok());
        assert!(parse(longest.trim_end()).is_ok());
        let too_long = format!("FROM a\nLABEL x={}\nRUN b\n", "a".repeat(MAX_LINE_LEN - 7));
        let (err, lines) = error(&too_long);
        assert_eq!(
            err.to_string(),
            "dockerfile line greater than max allowed size of 65535"
        );
        assert_eq!(lines, Some((2, 2)));
        // The byte-order mark counts toward the first line.
        let with_bom = format!("\u{feff}FROM {}\n", "a".repeat(MAX_LINE_LEN - 7));
        assert_eq!(error(&with_bom).0, ParseError::Empty);
        // A too-long line inside a heredoc body leaves it unterminated.
        let in_heredoc = format!("FROM a\nRUN <<EOF\n{}\nEOF\n", "a".repeat(MAX_LINE_LEN + 1));
        assert_eq!(error(&in_heredoc).0, ParseError::UnterminatedHeredoc);
    }

    #[test]
    fn exec_form_edge_cases_do_not_overflow() {
        let deep = format!("FROM a\nCMD {}\n", "[\\\n".repeat(200_000));
        assert_eq!(parse(&deep).unwrap().children[1].next.len(), 1);
        let nested = format!("FROM a\nCMD {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(error(&nested).0, ParseError::JsonNotAllStrings);
    }

    /// A cheap stand-in for the fuzzer: random mixes of the tokens the
    /// parser cares about must never panic, and accepted files must have
    /// consistent line ranges.
    #[test]
    fn random_inputs_never_panic() {
        const PIECES: &[&str] = &[
            "FROM a",
            "RUN",
            "COPY",
            "ADD",
            "ONBUILD",
            "ENV",
            "LABEL",
            "ARG",
            "HEALTHCHECK",
            "CMD",
            "<<",
            "<<-",
            "EOF",
            "3<<",
            "'",
            "\"",
            "\\",
            "`",
            "$",
            "${",
            "}",
            ":",
            "-",
            "--",
            "#",
            "# escape=`",
            "# syntax=x",
            "\n",
            "\r\n",
            " ",
            "\t",
            "[",
            "]",
            ",",
            "=",
            "é",
            "\u{feff}",
            "\u{a0}",
            "\u{130}",
            "x",
            "\u{0}",
            "/",
            "%",
            "#!",
            "{",
            "1e999",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..4000 {
            let len = (next() % 48) as usize;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            if let Ok(ast) = parse(&text) {
                let mut previous_end = 0;
                for node in &ast.children {
                    assert!(node.start_line > previous_end, "{text:?}");
                    assert!(node.end_line >= node.start_line, "{text:?}");
                    previous_end = node.end_line;
                }
                let _ = ast.dump();
            }
        }
    }
}
