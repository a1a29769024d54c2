//! Heredoc markers (`<<EOF`, `<<-EOF`, `3<<'EOF'`): finding them in an
//! instruction line and reading the delimiter word, with BuildKit's rules
//! for when the body is expanded.
//!
//! BuildKit finds heredoc words by running its shell lexer over the line
//! with an empty environment, unset variables left verbatim, quotes and
//! escapes kept raw, and `\` as the escape character whatever `# escape=`
//! says. Only that corner of the lexer matters here, so a private copy of it
//! lives in this file; the real expander is `shell.rs`, which has other
//! callers and modes. The copy keeps the lexer's quirks that change which
//! words come out: a nested `${…}` restarts the shared word buffer, and
//! whitespace inside an unexpanded `${x:-a b}` still splits words.

use super::node::Heredoc;
use super::parser::ParseError;

/// How deep `${…}` may nest in a heredoc word before it is rejected; the
/// lexer recurses per level, and real delimiters never nest at all.
const MAX_SUBSTITUTION_DEPTH: usize = 64;

/// Why a heredoc delimiter word could not be read. Messages are BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeredocWordError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    #[error("substitutions nested deeper than {MAX_SUBSTITUTION_DEPTH} levels")]
    TooDeep,
}

/// Reads one word as a heredoc marker: `None` when it is not one (no `<<`,
/// nothing after it, a `<` in the name, or more than one word), an error
/// when the delimiter is malformed (e.g. an unclosed quote).
///
/// The body is expanded unless some part of the delimiter is quoted; the
/// name is the delimiter with quotes removed.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, ParseError> {
    // The shape is `^(\d*)<<(-?)\s*([^<]*)$`.
    let digits_len = word.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = word.split_at(digits_len);
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\u{c}']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    // BuildKit ignores the parse error: an empty prefix means 0 and an
    // oversized one saturates.
    let file_descriptor = if digits.is_empty() {
        0
    } else {
        digits.parse().unwrap_or(u32::MAX)
    };

    let invalid = |reason| ParseError::InvalidHeredocWord {
        word: rest.to_string(),
        reason,
    };
    let unquoted = lex_words(rest, false, false).map_err(invalid)?;
    let [name] = unquoted.as_slice() else {
        return Ok(None);
    };
    let raw = lex_words(rest, true, false).map_err(invalid)?;
    let [raw_name] = raw.as_slice() else {
        return Err(ParseError::InconsistentHeredocWord {
            word: rest.to_string(),
        });
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        file_descriptor,
        expand: quotes(name) == quotes(raw_name),
        chomp,
        content: String::new(),
    }))
}

/// [`parse_heredoc`] for callers that only care whether `word` is a valid
/// marker (e.g. a COPY source written as `<<EOF`).
pub fn must_parse_heredoc(word: &str) -> Option<Heredoc> {
    parse_heredoc(word).ok().flatten()
}

/// Strips leading tabs from every line: what `<<-` asks for, applied when
/// the body is used.
pub fn chomp_heredoc_content(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// The heredoc markers on an instruction line, in order, without bodies.
/// A line the lexer cannot split (e.g. an unclosed quote) has none.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ParseError> {
    let words = lex_words(line, true, true).unwrap_or_default();
    let mut docs = Vec::new();
    for word in &words {
        if let Some(doc) = parse_heredoc(word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Splits `text` into words as BuildKit's lexer does with an empty
/// environment and unset variables kept verbatim.
fn lex_words(
    text: &str,
    raw_quotes: bool,
    raw_escapes: bool,
) -> Result<Vec<String>, HeredocWordError> {
    let mut chars: Vec<char> = text.chars().collect();
    // Go's text scanner drops a byte-order mark at the start of its input.
    if chars.first() == Some(&'\u{feff}') {
        chars.remove(0);
    }
    let mut lexer = Lexer {
        chars,
        pos: 0,
        raw_quotes,
        raw_escapes,
        words_buf: String::new(),
        depth: 0,
    };
    let (_, words) = lexer.words_until(None, raw_escapes)?;
    Ok(words)
}

const ESCAPE: char = '\\';

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    /// The word being built. Shared by every nesting level, as in BuildKit,
    /// so a nested `${…}` discards the text gathered before it.
    words_buf: String,
    depth: usize,
}

/// The words gathered at one nesting level.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, buf: &mut String, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !buf.is_empty() {
                self.words.push(std::mem::take(buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(buf, ch);
        }
    }

    fn add_raw_char(&mut self, buf: &mut String, ch: char) {
        buf.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, buf: &mut String, s: &str) {
        for ch in s.chars() {
            self.add_char(buf, ch);
        }
    }

    fn add_raw_str(&mut self, buf: &mut String, s: &str) {
        buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.words.push(std::mem::take(buf));
        }
        self.words
    }
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Processes text up to `stop` (or the end when `None`), returning the
    /// processed text and its words.
    fn words_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), HeredocWordError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.words_until_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn words_until_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), HeredocWordError> {
        let mut result = String::new();
        self.words_buf.clear();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.pos += 1;
                return Ok((result, words.finish(&mut self.words_buf)));
            }
            let special = match ch {
                '$' => Some(self.dollar()?),
                '<' => Some(self.possible_heredoc()),
                '\'' => Some(self.single_quoted()?),
                '"' => Some(self.double_quoted()?),
                _ => None,
            };
            if let Some(text) = special {
                result.push_str(&text);
                if ch == '$' {
                    words.add_str(&mut self.words_buf, &text);
                } else {
                    words.add_raw_str(&mut self.words_buf, &text);
                }
                continue;
            }
            self.pos += 1;
            if ch == ESCAPE {
                if self.raw_escapes {
                    words.add_raw_char(&mut self.words_buf, ch);
                    result.push(ch);
                }
                let Some(escaped) = self.next() else {
                    break;
                };
                words.add_raw_char(&mut self.words_buf, escaped);
                result.push(escaped);
            } else {
                words.add_char(&mut self.words_buf, ch);
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return Err(HeredocWordError::Unterminated(stop));
        }
        Ok((result, words.finish(&mut self.words_buf)))
    }

    fn single_quoted(&mut self) -> Result<String, HeredocWordError> {
        let mut out = String::new();
        let open = self.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(HeredocWordError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, HeredocWordError> {
        let mut out = String::new();
        let open = self.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(HeredocWordError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(mut c) => {
                    self.pos += 1;
                    if c == ESCAPE {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            // The loop then reports the missing quote.
                            None => continue,
                            Some(next @ ('"' | '$' | ESCAPE)) => {
                                self.pos += 1;
                                c = next;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    /// `$name` or `${…}`; with no variables set, every form comes back as
    /// written (modulo the lexer's own rewriting of its pieces).
    fn dollar(&mut self) -> Result<String, HeredocWordError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            return Ok(format!("${name}"));
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(HeredocWordError::MissingBrace),
            Some('{' | '}' | ':') => return Err(HeredocWordError::BadSubstitution),
            Some(_) => {}
        }
        if self.depth >= MAX_SUBSTITUTION_DEPTH {
            return Err(HeredocWordError::TooDeep);
        }
        self.depth += 1;
        let name = self.name();
        let out = self.braced(name);
        self.depth -= 1;
        out
    }

    /// The rest of `${name…}` after the name.
    fn braced(&mut self, name: String) -> Result<String, HeredocWordError> {
        // Go spells the end of input as U+FFFD in its messages.
        let shown = |c: Option<char>| c.unwrap_or(char::REPLACEMENT_CHARACTER);
        let ch = self.next();
        let (modifier, op, null_is_unset) = match ch {
            Some('}') => return Ok(format!("${{{name}}}")),
            Some(':') => {
                let op = self.next();
                (format!(":{}", shown(op)), op, true)
            }
            Some(c @ ('+' | '-' | '?' | '#' | '%')) => (c.to_string(), ch, false),
            Some('/') => {
                if self.peek() == Some('/') {
                    // The second slash is consumed and not given back.
                    self.pos += 1;
                }
                let (pattern, _) = self
                    .words_until(Some('/'), true)
                    .map_err(|e| self.at_end_or(e, HeredocWordError::MissingSlash))?;
                let (replacement, _) = self
                    .words_until(Some('}'), true)
                    .map_err(|e| self.at_end_or(e, HeredocWordError::MissingBrace))?;
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            other => {
                return Err(HeredocWordError::UnsupportedModifier(
                    shown(other).to_string(),
                ))
            }
        };
        let pattern_op = matches!(op, Some('#' | '%'));
        if null_is_unset && pattern_op {
            return Err(HeredocWordError::UnsupportedModifier(modifier));
        }
        let (word, _) = self
            .words_until(Some('}'), pattern_op)
            .map_err(|e| self.at_end_or(e, HeredocWordError::MissingBrace))?;
        Ok(format!("${{{name}{modifier}{word}}}"))
    }

    /// BuildKit reports a missing closer instead of the inner error when the
    /// input ran out.
    fn at_end_or(&self, inner: HeredocWordError, at_end: HeredocWordError) -> HeredocWordError {
        if self.peek().is_none() {
            at_end
        } else {
            inner
        }
    }

    /// A variable name: a run of digits, one special parameter, or letters,
    /// digits and underscores.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|&d| is_digit(d)) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                name.push(ch);
                return name;
            }
            if !ch.is_alphabetic() && !is_digit(ch) && ch != '_' {
                break;
            }
            self.pos += 1;
            name.push(ch);
        }
        name
    }

    /// `<<` plus the blanks after it stay together as one piece of a word.
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.pos += 1;
        let mut out = "<<".to_string();
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            self.pos += 1;
            out.push(c);
        }
        out
    }
}

/// Close to Go's `unicode.IsDigit` (decimal digits of any script); Rust's
/// `is_numeric` also admits other numerals, which only matters for exotic
/// characters inside `${…}`.
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heredoc(name: &str, expand: bool) -> Heredoc {
        Heredoc {
            name: name.into(),
            expand,
            ..Heredoc::default()
        }
    }

    #[test]
    fn markers_are_recognised() {
        for src in [
            "<<EOF",
            "<<'EOF'",
            r#"<<"EOF""#,
            "<<-EOF",
            "<<-'EOF'",
            r#"<<-"EOF""#,
            r#"<<EO"F""#,
            "<< EOF",
            "<<- EOF",
        ] {
            let doc = parse_heredoc(src).unwrap().unwrap();
            assert_eq!(doc.name, "EOF", "{src}");
            assert_eq!(doc.chomp, src.starts_with("<<-"), "{src}");
            assert_eq!(doc.expand, !src.contains(['\'', '"']), "{src}");
        }
    }

    #[test]
    fn non_markers_are_none() {
        for src in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "<<  "] {
            assert_eq!(parse_heredoc(src).unwrap(), None, "{src}");
        }
    }

    #[test]
    fn malformed_delimiters_are_errors() {
        for src in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc(src).is_err(), "{src}");
        }
        let err = parse_heredoc("<<'EOF").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"failed to process "'EOF": unexpected end of statement while looking for matching single-quote"#
        );
    }

    #[test]
    fn file_descriptor_prefix() {
        let doc = parse_heredoc("3<<EOF").unwrap().unwrap();
        assert_eq!(doc.file_descriptor, 3);
        let doc = parse_heredoc("99999999999999999999<<EOF").unwrap().unwrap();
        assert_eq!(doc.file_descriptor, u32::MAX);
    }

    #[test]
    fn quoting_disables_expansion() {
        let cases = [
            ("<<eo'f'", heredoc("eof", false)),
            (r"<<eo\'f", heredoc("eo'f", true)),
            (r"<<'e'o\'f", heredoc("eo'f", false)),
            ("<<'one two'", heredoc("one two", false)),
            ("<<$EOF", heredoc("$EOF", true)),
            ("<<${EOF}", heredoc("${EOF}", true)),
            ("<<${A:-x}", heredoc("${A:-x}", true)),
            ("<<${A//x/y}", heredoc("${A/x/y}", true)),
        ];
        for (src, want) in cases {
            assert_eq!(parse_heredoc(src).unwrap(), Some(want), "{src}");
        }
    }

    #[test]
    fn markers_on_a_line() {
        let names = |line: &str| -> Vec<String> {
            heredocs_from_line(line)
                .unwrap()
                .into_iter()
                .map(|h| h.name)
                .collect()
        };
        assert_eq!(names("RUN <<EOF"), ["EOF"]);
        // The lexer keeps only blanks with `<<`, so `<<- EOF` splits in two
        // and is no heredoc (BuildKit's own test of this passes vacuously).
        assert!(names("RUN <<- EOF").is_empty());
        assert_eq!(names("RUN <<-EOF"), ["EOF"]);
        assert_eq!(names("RUN << -EOF"), ["-EOF"]);
        assert_eq!(names("RUN 4<<EOF"), ["EOF"]);
        assert_eq!(names("RUN <<EOF <<EOF2"), ["EOF", "EOF2"]);
        assert_eq!(names("COPY <<  EOF  > foo"), ["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names(r#"RUN "<<EOF""#).is_empty());
        assert!(names("RUN <<EOF 'unclosed").is_empty());
        assert_eq!(names("RUN <<${A}"), ["${A}"]);
        // A substitution with a modifier restarts the word, losing the `<<`.
        assert!(names("RUN <<${A:-b}").is_empty());
    }

    #[test]
    fn lexer_errors_match_buildkit() {
        let err = |s: &str| lex_words(s, false, false).unwrap_err().to_string();
        assert_eq!(err("${"), "syntax error: missing '}'");
        assert_eq!(err("${}"), "syntax error: bad substitution");
        assert_eq!(
            err("${a"),
            "unsupported modifier (\u{fffd}) in substitution"
        );
        assert_eq!(err("${a:#x}"), "unsupported modifier (:#) in substitution");
        assert_eq!(err("${a:-x"), "syntax error: missing '}'");
        assert_eq!(err("${a/x"), "syntax error: missing '/' in ${}");
        assert_eq!(err("${a*}"), "unsupported modifier (*) in substitution");
    }

    #[test]
    fn deep_substitutions_are_refused_not_overflowing() {
        let deep = format!("<<{}{}", "${a:-".repeat(10_000), "}".repeat(10_000));
        assert!(parse_heredoc(&deep).is_err());
        let line = format!("RUN {deep}");
        assert!(heredocs_from_line(&line).unwrap().is_empty());
    }

    #[test]
    fn chomp_strips_leading_tabs_only() {
        assert_eq!(
            chomp_heredoc_content("\thello\n\t\tworld\n x\t\n"),
            "hello\nworld\n x\t\n"
        );
    }
}
