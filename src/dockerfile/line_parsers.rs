//! One logical instruction line → keyword, leading `--flags`, and the
//! argument list in the shape BuildKit gives each instruction (exec form,
//! shell string, whitespace list, `key value sep` triples, HEALTHCHECK's
//! type + command).
//!
//! Where BuildKit walks a line byte by byte (flags, HEALTHCHECK) it treats
//! every byte as a Latin-1 character, which garbles non-ASCII text; this
//! module walks characters instead and only treats ASCII whitespace as a
//! separator there, so ASCII input behaves identically and non-ASCII text
//! survives intact.

use super::json_array::{parse_json_array, JsonArray};
use super::parser::ParseError;

/// The arguments of one instruction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Args {
    pub next: Vec<String>,
    pub json: bool,
}

impl Args {
    fn shell(next: Vec<String>) -> Self {
        Args { next, json: false }
    }
}

/// The separators BuildKit's parser splits on: `[\t\v\f\r ]`. Unicode
/// spaces and newlines are not among them.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// ASCII whitespace as Go's `unicode.IsSpace` sees it (including `\v`).
fn is_ascii_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits on runs of [`is_blank`] like Go's `Regexp.Split`: at most `limit`
/// pieces (0 = no limit), and separators at either end leave empty pieces.
pub(crate) fn split_blanks(s: &str, limit: usize) -> Vec<&str> {
    if s.is_empty() {
        return vec![""];
    }
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let mut begin = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !is_blank(bytes[i] as char) {
            i += 1;
            continue;
        }
        if limit > 0 && parts.len() == limit - 1 {
            break;
        }
        // Blanks are ASCII, so these are character boundaries.
        parts.push(&s[begin..i]);
        while i < bytes.len() && is_blank(bytes[i] as char) {
            i += 1;
        }
        begin = i;
    }
    parts.push(&s[begin..]);
    parts
}

/// Lower-cases like Go's `strings.ToLower`, which maps `İ` to a plain `i`
/// where Rust's full mapping adds a combining dot.
pub(crate) fn go_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Upper-cases like Go's `strings.ToUpper`: one character in, one out
/// (Rust's `ß` → `SS` style expansions are left alone).
pub(crate) fn go_upper(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let mut upper = c.to_uppercase();
        match (upper.next(), upper.next()) {
            (Some(u), None) => out.push(u),
            _ => out.push(c),
        }
    }
    out
}

/// A logical line split into its keyword, its leading flags, and the
/// trimmed rest.
pub(crate) struct SplitLine<'a> {
    pub keyword: &'a str,
    pub flags: Vec<String>,
    pub args: &'a str,
}

/// Splits off the keyword and the `--flag` words after it.
pub(crate) fn split_command(line: &str, escape: char) -> SplitLine<'_> {
    let parts = split_blanks(line.trim(), 2);
    let keyword = parts[0];
    let (args, flags) = match parts.get(1) {
        Some(rest) => extract_builder_flags(rest, escape),
        None => ("", Vec::new()),
    };
    SplitLine {
        keyword,
        flags,
        args: args.trim(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Blank,
    Word,
    Quoted(char),
}

/// Takes the leading words that start with `--` (quotes removed, escapes
/// applied) and returns the rest of the line from the first other word. A
/// bare `--` word ends the flags and is dropped.
fn extract_builder_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    // Walked lazily: only the flags are visited, so a long argument list
    // costs nothing here.
    let mut chars = line.char_indices().peekable();
    let mut flags = Vec::new();
    let mut word = String::new();
    // A quoted empty string still makes a word.
    let mut quoted = false;
    let mut phase = Phase::Blank;
    loop {
        let Some((offset, ch)) = chars.next() else {
            if phase != Phase::Blank && word != "--" && (quoted || !word.is_empty()) {
                flags.push(word);
            }
            return ("", flags);
        };
        match phase {
            Phase::Blank => {
                if is_ascii_space(ch) {
                    continue;
                }
                let next_is_dash = chars.peek().is_some_and(|&(_, c)| c == '-');
                if ch != '-' || !next_is_dash {
                    return (&line[offset..], flags);
                }
                phase = Phase::Word;
                word.push(ch);
            }
            Phase::Word => {
                if is_ascii_space(ch) {
                    phase = Phase::Blank;
                    if word == "--" {
                        return (&line[offset..], flags);
                    }
                    if quoted || !word.is_empty() {
                        flags.push(std::mem::take(&mut word));
                    }
                    quoted = false;
                } else if ch == '\'' || ch == '"' {
                    quoted = true;
                    phase = Phase::Quoted(ch);
                } else if ch == escape {
                    // An escape at the very end is dropped.
                    if let Some((_, escaped)) = chars.next() {
                        word.push(escaped);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quoted(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == escape {
                    match chars.next() {
                        Some((_, escaped)) => word.push(escaped),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
}

/// Splits on whitespace outside quotes, keeping quotes and escapes in the
/// words (they are removed later, at expansion). Inside single quotes the
/// escape character is literal.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut phase = Phase::Blank;
    let mut i = 0;
    loop {
        let Some(&ch) = chars.get(i) else {
            if phase != Phase::Blank && (quoted || !word.is_empty()) {
                words.push(word);
            }
            return words;
        };
        i += 1;
        if phase == Phase::Blank {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Blank => {}
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Blank;
                    if quoted || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    quoted = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quoted = true;
                    phase = Phase::Quoted(ch);
                }
                if ch == escape {
                    let Some(&escaped) = chars.get(i) else {
                        continue;
                    };
                    i += 1;
                    word.push(ch);
                    word.push(escaped);
                    continue;
                }
                word.push(ch);
            }
            Phase::Quoted(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    let Some(&escaped) = chars.get(i) else {
                        phase = Phase::Word;
                        continue;
                    };
                    i += 1;
                    word.push(ch);
                    word.push(escaped);
                    continue;
                }
                word.push(ch);
            }
        }
    }
}

/// ENV and LABEL: `name=value …` pairs, or the legacy `name value` form
/// (chosen when the first word has no `=`), as `name value sep` triples
/// where `sep` is `=` or empty for the legacy form.
pub(crate) fn parse_name_val(
    rest: &str,
    instruction: &'static str,
    escape: char,
) -> Result<Args, ParseError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Args::default());
    };
    if !first.contains('=') {
        let parts = split_blanks(rest, 2);
        let [name, value] = parts.as_slice() else {
            return Err(ParseError::MissingValue { instruction });
        };
        return Ok(Args::shell(vec![
            name.to_string(),
            value.to_string(),
            String::new(),
        ]));
    }
    let mut next = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some((name, value)) = word.split_once('=') else {
            return Err(ParseError::MissingEquals { word });
        };
        next.extend([name.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(Args::shell(next))
}

/// ARG: the words as written (`name` or `name=value` each).
pub(crate) fn parse_name_or_name_val(rest: &str, escape: char) -> Args {
    Args::shell(parse_words(rest, escape))
}

/// EXPOSE, FROM, and the shell form of ADD/COPY/VOLUME: one argument per
/// blank-separated word.
pub(crate) fn parse_strings_whitespace_delimited(rest: &str) -> Args {
    if rest.is_empty() {
        return Args::default();
    }
    Args::shell(
        split_blanks(rest, 0)
            .into_iter()
            .map(String::from)
            .collect(),
    )
}

/// MAINTAINER, STOPSIGNAL, USER, WORKDIR: the whole rest as one argument.
pub(crate) fn parse_string(rest: &str) -> Args {
    if rest.is_empty() {
        return Args::default();
    }
    Args::shell(vec![rest.to_string()])
}

/// RUN, CMD, ENTRYPOINT, SHELL: exec form when the rest is a JSON array of
/// strings, else the whole rest as one shell-form string.
pub(crate) fn parse_maybe_json(rest: &str) -> Result<Args, ParseError> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    match parse_json_array(rest) {
        JsonArray::Strings(next) => Ok(Args { next, json: true }),
        JsonArray::NotAllStrings => Err(ParseError::JsonNotAllStrings),
        JsonArray::NotJson => Ok(Args::shell(vec![rest.to_string()])),
    }
}

/// ADD, COPY, VOLUME: exec form, else blank-separated words.
pub(crate) fn parse_maybe_json_to_list(rest: &str) -> Result<Args, ParseError> {
    match parse_json_array(rest) {
        JsonArray::Strings(next) => Ok(Args { next, json: true }),
        JsonArray::NotAllStrings => Err(ParseError::JsonNotAllStrings),
        JsonArray::NotJson => Ok(parse_strings_whitespace_delimited(rest)),
    }
}

/// HEALTHCHECK: the first word (`CMD`, `NONE`, …) then the rest as for RUN.
pub(crate) fn parse_health_config(rest: &str) -> Result<Args, ParseError> {
    let sep = rest.find(is_ascii_space).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Args::default());
    }
    let (kind, command) = rest.split_at(sep);
    let command = parse_maybe_json(command.trim_start_matches(is_ascii_space))?;
    let mut next = Vec::with_capacity(command.next.len() + 1);
    next.push(kind.to_string());
    next.extend(command.next);
    Ok(Args {
        next,
        json: command.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_blanks_behaves_like_go_regexp_split() {
        assert_eq!(split_blanks("", 0), [""]);
        assert_eq!(split_blanks("a  b\tc", 0), ["a", "b", "c"]);
        assert_eq!(split_blanks(" a ", 0), ["", "a", ""]);
        assert_eq!(split_blanks("a  b c", 2), ["a", "b c"]);
        assert_eq!(split_blanks("a", 2), ["a"]);
        assert_eq!(split_blanks("a ", 2), ["a", ""]);
        assert_eq!(split_blanks("a\u{a0}b\nc", 0), ["a\u{a0}b\nc"]);
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let cases: &[(&str, &[&str])] = &[
            ("foo", &["foo"]),
            ("foo bar", &["foo", "bar"]),
            (r"foo\ bar", &[r"foo\ bar"]),
            ("foo=bar", &["foo=bar"]),
            ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
            (r#"foo bar "abc xyz""#, &["foo", "bar", r#""abc xyz""#]),
            ("àöû", &["àöû"]),
            (r#"föo bàr "âbc xÿz""#, &["föo", "bàr", r#""âbc xÿz""#]),
            (r"a\", &["a"]),
            (r#"'a\' b'"#, &[r#"'a\'"#, "b'"]),
            (r#""a\" b""#, &[r#""a\" b""#]),
            ("''", &["''"]),
            ("a\u{3000}b", &["a", "b"]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_words(input, '\\'), *want, "{input}");
        }
        assert_eq!(parse_words("a` b", '`'), ["a` b"]);
    }

    #[test]
    fn flags_are_extracted_before_arguments() {
        let split = |line: &str| {
            let s = split_command(line, '\\');
            (s.keyword.to_string(), s.flags, s.args.to_string())
        };
        assert_eq!(
            split("COPY --from=a --link src dst"),
            (
                "COPY".into(),
                vec!["--from=a".into(), "--link".into()],
                "src dst".into()
            )
        );
        assert_eq!(
            split(r#"RUN --mount=type=bind,source="a b" echo"#),
            (
                "RUN".into(),
                vec!["--mount=type=bind,source=a b".into()],
                "echo".into()
            )
        );
        assert_eq!(
            split("RUN -- --not-a-flag"),
            ("RUN".into(), vec![], "--not-a-flag".into())
        );
        assert_eq!(
            split("RUN --a --"),
            ("RUN".into(), vec!["--a".into()], "".into())
        );
        assert_eq!(
            split("RUN --a=''"),
            ("RUN".into(), vec!["--a=".into()], "".into())
        );
        assert_eq!(
            split(r"RUN --a\ b c"),
            ("RUN".into(), vec!["--a b".into()], "c".into())
        );
        assert_eq!(split("RUN -x"), ("RUN".into(), vec![], "-x".into()));
        assert_eq!(split("  RUN  "), ("RUN".into(), vec![], "".into()));
        assert_eq!(split(""), ("".into(), vec![], "".into()));
        assert_eq!(
            split("COPY --chown=utilisé a b"),
            ("COPY".into(), vec!["--chown=utilisé".into()], "a b".into())
        );
    }

    #[test]
    fn name_val_forms() {
        let nv = |s: &str| parse_name_val(s, "ENV", '\\').map(|a| a.next);
        assert_eq!(nv("foo bar").unwrap(), ["foo", "bar", ""]);
        assert_eq!(nv("foo  bar baz").unwrap(), ["foo", "bar baz", ""]);
        assert_eq!(
            nv("foo=bar thing=star").unwrap(),
            ["foo", "bar", "=", "thing", "star", "="]
        );
        assert_eq!(
            nv(r#"a="b c" d=e=f"#).unwrap(),
            ["a", r#""b c""#, "=", "d", "e=f", "="]
        );
        assert_eq!(nv("").unwrap(), Vec::<String>::new());
        assert_eq!(
            nv("foo").unwrap_err().to_string(),
            "ENV must have two arguments"
        );
        assert_eq!(
            nv("a=b c").unwrap_err().to_string(),
            r#"Syntax error - can't find = in "c". Must be of the form: name=value"#
        );
    }

    #[test]
    fn healthcheck_shapes() {
        let hc = |s: &str| parse_health_config(s).unwrap();
        assert_eq!(hc(""), Args::default());
        assert_eq!(hc("NONE").next, ["NONE"]);
        assert_eq!(hc("CMD   a b").next, ["CMD", "a b"]);
        let exec = hc(r#"CMD ["foo", "bar"]"#);
        assert_eq!(
            (exec.next.as_slice(), exec.json),
            (&["CMD".to_string(), "foo".into(), "bar".into()][..], true)
        );
        assert!(parse_health_config(r#"CMD ["a", 1]"#).is_err());
    }

    #[test]
    fn case_mapping_follows_go() {
        assert_eq!(go_lower("ENTRYPO\u{130}NT"), "entrypoint");
        assert_eq!(go_lower("HEALTHCHEC\u{212a}"), "healthcheck");
        assert_eq!(go_upper("ma\u{131}ntainer"), "MAINTAINER");
        assert_eq!(go_upper("straße"), "STRAßE");
    }
}
