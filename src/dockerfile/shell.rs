//! Word expansion and splitting exactly as BuildKit's shell lexer
//! (`frontend/dockerfile/shell`) does it: quote removal, the escape token,
//! `$VAR` / `${VAR}` with every modifier BuildKit knows, the raw modes the
//! parser uses to detect heredocs, and the record of which variables a word
//! used (for the UndefinedVar lint). Also [`EnvList`], the ordered
//! environment callers hand it.
//!
//! This is not a POSIX shell: it mirrors what BuildKit does, quirks
//! included, because a Dockerfile must expand to the same strings under `bk`
//! as under `docker build`. The quirks kept on purpose are called out where
//! they happen. The `#`/`%`/`/` patterns live in `shell_pattern`.

use std::collections::BTreeSet;

use unicode_general_category::{get_general_category, GeneralCategory};

pub use super::shell_pattern::PatternError;
use super::shell_pattern::{self, Pattern};

/// A word that could not be expanded, and why. Displays as BuildKit's
/// message: `failed to process "<word>": <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {}: {kind}", go_quote(.word))]
pub struct ShellError {
    /// The whole word given to the lexer.
    pub word: String,
    pub kind: ShellErrorKind,
}

/// How deep `${…}` words may nest inside one another.
pub const MAX_NESTING: usize = 200;

/// What went wrong while expanding a word. The texts are BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellErrorKind {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// `${` whose closing brace never comes.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${VAR/pattern` with no `/` before the end.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${…}` nested deeper than [`MAX_NESTING`] levels.
    #[error("syntax error: substitutions nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// `${}`, `${{…`, `${:…`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// An operator after the name that BuildKit does not implement (`=`,
    /// `:=`, `:#`, …); holds the operator as written, `:` included. Go
    /// shows a missing character as U+FFFD.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${VAR?msg}` / `${VAR:?msg}` with VAR unset.
    #[error("{name}: {}", message.as_deref().unwrap_or("is not allowed to be unset"))]
    VarUnset {
        name: String,
        message: Option<String>,
    },
    /// `${VAR:?msg}` with VAR set but empty.
    #[error("{name}: {}", message.as_deref().unwrap_or("is not allowed to be empty"))]
    VarEmpty {
        name: String,
        message: Option<String>,
    },
    /// A `#`, `%` or `/` pattern with a bad escape. For `%`/`%%` the
    /// pattern shown is reversed, as BuildKit shows it.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        pattern: String,
        reason: PatternError,
    },
}

/// Where the lexer looks variables up.
pub trait EnvGetter {
    fn get(&self, key: &str) -> Option<&str>;
    fn keys(&self) -> Vec<String>;
}

/// An ordered environment: each key once, in the order it was last set.
///
/// Keys compare case-sensitively, as BuildKit does on Unix (it upper-cases
/// them only on Windows, which `bk` does not target).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList {
    entries: Vec<(String, String)>,
}

impl EnvList {
    pub fn new() -> Self {
        EnvList::default()
    }

    /// Parses `KEY=VALUE` strings as BuildKit's `EnvsFromSlice` does: split
    /// at the first `=`, a missing `=` means an empty value, later wins.
    pub fn from_assignments<I, S>(assignments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut env = EnvList::new();
        for a in assignments {
            let a = a.as_ref();
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            env.set(k, v);
        }
        env
    }

    /// Sets `key`, moving it to the end of the order (like BuildKit's
    /// `EnvList.AddOrReplace`, whose key order follows the latest set).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, value.into()));
    }

    /// Removes `key`; true if it was set.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
        self.entries.len() != before
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EnvList {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut env = EnvList::new();
        for (k, v) in pairs {
            env.set(k, v);
        }
        env
    }
}

impl EnvGetter for EnvList {
    fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<String> {
        self.entries.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// The outcome of expanding one word, with the variables it used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    pub result: String,
    /// Variables looked up and found set (possibly empty).
    pub matched: BTreeSet<String>,
    /// Variables looked up and not set.
    pub unmatched: BTreeSet<String>,
}

/// The lexer's settings.
#[derive(Debug, Clone)]
pub struct Lex {
    /// The escape token: `\` or, after `# escape=``, a backtick.
    pub escape: char,
    /// Keep quote characters in the output (quoted text is still literal).
    pub raw_quotes: bool,
    /// Keep escape tokens in the output (the escaped character is still
    /// taken literally).
    pub raw_escapes: bool,
    /// Treat `'` and `"` as ordinary characters (BuildKit does this for the
    /// instructions that expand a word before parsing it themselves).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written (`$X`, `${X:-d}`)
    /// instead of expanding them.
    pub skip_unset_env: bool,
}

impl Lex {
    pub fn new(escape: char) -> Self {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` into one string; spaces between words are kept.
    pub fn process_word(&self, word: &str, env: &dyn EnvGetter) -> Result<String, ShellError> {
        Ok(self.process_word_with_matches(word, env)?.result)
    }

    /// Expands `word` into one string and reports which variables it used.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<Expansion, ShellError> {
        let mut x = Expander::new(self, word, env);
        let (result, _) = x.top_level(word)?;
        Ok(Expansion {
            result,
            matched: x.matched,
            unmatched: x.unmatched,
        })
    }

    /// Expands `word` and splits the result into words: whitespace from the
    /// input or from an unquoted expansion separates words, quoted text and
    /// escaped whitespace do not, and empty words are dropped (so `''`
    /// alone yields no word).
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<Vec<String>, ShellError> {
        let mut x = Expander::new(self, word, env);
        Ok(x.top_level(word)?.1)
    }
}

/// What ends the word being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The end of the input.
    End,
    /// The `}` of `${VAR…}`.
    Brace,
    /// The `/` between pattern and replacement in `${VAR/…/…}`.
    Slash,
}

impl Stop {
    fn char(self) -> Option<char> {
        match self {
            Stop::End => None,
            Stop::Brace => Some('}'),
            Stop::Slash => Some('/'),
        }
    }

    /// The error for running out of input before the stop character. Any
    /// failure of a nested word that leaves the input exhausted is reported
    /// this way too (an unclosed quote inside `${…}` is a missing `}`).
    fn missing(self) -> ShellErrorKind {
        match self {
            Stop::Slash => ShellErrorKind::MissingSlash,
            Stop::End | Stop::Brace => ShellErrorKind::MissingBrace,
        }
    }
}

/// A cursor over the input, one char at a time.
struct Scanner<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(src: &'a str) -> Self {
        // Go's text/scanner, which BuildKit reads words with, silently
        // drops a byte-order mark at the very start.
        let pos = if src.starts_with('\u{FEFF}') {
            '\u{FEFF}'.len_utf8()
        } else {
            0
        };
        Scanner { src, pos }
    }

    fn peek(&self) -> Option<char> {
        self.src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn at_end(&self) -> bool {
        self.peek().is_none()
    }
}

/// The words being split out of one (possibly nested) word.
///
/// The partial word lives in a buffer shared by every nesting level
/// ([`Expander::word_buf`]): a nested word inside `${VAR<op>…}` clears it
/// when it starts and takes what it holds when it ends. BuildKit shares it
/// the same way (since v0.15), so in `process_words` the part of a word read
/// before such an expansion is lost: `a${X:-b}` splits to `["b"]`. Kept
/// identical on purpose; `process_word` is not affected.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    in_word: bool,
}

impl Words {
    /// A character that splits words when it is whitespace.
    fn add_char(&mut self, buf: &mut String, ch: char) {
        if !ch.is_whitespace() {
            self.add_raw_char(buf, ch);
        } else if self.in_word && !buf.is_empty() {
            self.done.push(std::mem::take(buf));
            self.in_word = false;
        }
    }

    /// A character that is part of the word whatever it is.
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
            self.done.push(std::mem::take(buf));
        }
        self.done
    }
}

/// The state of expanding one word.
struct Expander<'a> {
    lex: &'a Lex,
    env: &'a dyn EnvGetter,
    scan: Scanner<'a>,
    /// Whether escape tokens are kept; on inside `#`/`%`/`/` patterns so
    /// the pattern sees `\*`.
    raw_escapes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    /// The partial word, shared by all nesting levels (see [`Words`]).
    word_buf: String,
    /// How many `${…}` words enclose the current position.
    depth: usize,
}

impl<'a> Expander<'a> {
    fn new(lex: &'a Lex, word: &'a str, env: &'a dyn EnvGetter) -> Self {
        Expander {
            lex,
            env,
            scan: Scanner::new(word),
            raw_escapes: lex.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            word_buf: String::new(),
            depth: 0,
        }
    }

    fn top_level(&mut self, word: &str) -> Result<(String, Vec<String>), ShellError> {
        let raw_escapes = self.lex.raw_escapes;
        self.read_until(Stop::End, raw_escapes)
            .map_err(|kind| ShellError {
                word: word.to_string(),
                kind,
            })
    }

    /// Reads up to `stop` (consuming it) with `raw_escapes` in force,
    /// returning the expanded text and its split words.
    fn read_until(
        &mut self,
        stop: Stop,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellErrorKind> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.read_until_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn read_until_inner(&mut self, stop: Stop) -> Result<(String, Vec<String>), ShellErrorKind> {
        let mut result = String::new();
        let mut words = Words::default();
        self.word_buf.clear();
        let quotes = !self.lex.skip_process_quotes;
        while let Some(ch) = self.scan.peek() {
            if Some(ch) == stop.char() {
                self.scan.next();
                return Ok((result, words.finish(&mut self.word_buf)));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    // Unquoted expansions are split like input text.
                    words.add_str(&mut self.word_buf, &value);
                }
                '<' => {
                    let text = self.possible_heredoc();
                    result.push_str(&text);
                    words.add_raw_str(&mut self.word_buf, &text);
                }
                '\'' if quotes => {
                    let text = self.single_quoted()?;
                    result.push_str(&text);
                    words.add_raw_str(&mut self.word_buf, &text);
                }
                '"' if quotes => {
                    let text = self.double_quoted()?;
                    result.push_str(&text);
                    words.add_raw_str(&mut self.word_buf, &text);
                }
                _ => {
                    self.scan.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(&mut self.word_buf, ch);
                            result.push(ch);
                        }
                        // An escape token at the very end is dropped.
                        let Some(escaped) = self.scan.next() else {
                            break;
                        };
                        words.add_raw_char(&mut self.word_buf, escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(&mut self.word_buf, ch);
                        result.push(ch);
                    }
                }
            }
        }
        if stop != Stop::End {
            return Err(stop.missing());
        }
        Ok((result, words.finish(&mut self.word_buf)))
    }

    /// A nested word inside `${…}`, with failures at the end of input
    /// reported as the missing terminator.
    fn nested(&mut self, stop: Stop, raw_escapes: bool) -> Result<String, ShellErrorKind> {
        // Each level recurses; a hostile line (up to 64 KiB) could nest
        // ten thousand deep and overflow the stack. Go's growable stacks
        // hide this in BuildKit; no real Dockerfile nests more than a few.
        if self.depth >= MAX_NESTING {
            return Err(ShellErrorKind::TooDeep);
        }
        self.depth += 1;
        let read = self.read_until(stop, raw_escapes);
        self.depth -= 1;
        match read {
            Ok((text, _)) => Ok(text),
            Err(_) if self.scan.at_end() => Err(stop.missing()),
            Err(e) => Err(e),
        }
    }

    /// `'…'`: everything literal up to the next `'`; there is no escape.
    fn single_quoted(&mut self) -> Result<String, ShellErrorKind> {
        let mut out = String::new();
        self.scan.next();
        if self.lex.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.scan.next() {
                None => return Err(ShellErrorKind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    /// `"…"`: literal except `$` expansions; the escape token escapes only
    /// `"`, `$` and itself and is kept before anything else.
    fn double_quoted(&mut self) -> Result<String, ShellErrorKind> {
        let mut out = String::new();
        self.scan.next();
        if self.lex.raw_quotes {
            out.push('"');
        }
        loop {
            match self.scan.peek() {
                None => return Err(ShellErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.scan.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(mut ch) => {
                    self.scan.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.scan.peek() {
                            // Dropped; the loop then reports the open quote.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.lex.escape => {
                                self.scan.next();
                                ch = next;
                            }
                            // Kept as is; with raw escapes BuildKit writes
                            // it twice (`"\t"` → `\\t`), and so do we.
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// `$name`, `${name}` or `${name<op>…}`, the `$` not yet consumed.
    fn dollar(&mut self) -> Result<String, ShellErrorKind> {
        self.scan.next();
        if self.scan.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.scan.next();
        match self.scan.peek() {
            None => return Err(ShellErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.scan.next() {
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let op = self.scan.next();
                self.modifier(&name, true, op)
            }
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => self.modifier(&name, false, Some(op)),
            Some('/') => self.substitution(&name),
            other => Err(ShellErrorKind::UnsupportedModifier(
                go_char(other).to_string(),
            )),
        }
    }

    /// `${name<op>word}` (or `${name:<op>word}` when `colon`), the operator
    /// consumed. With the colon an empty value counts as unset.
    fn modifier(
        &mut self,
        name: &str,
        colon: bool,
        op: Option<char>,
    ) -> Result<String, ShellErrorKind> {
        let written = format!("{}{}", if colon { ":" } else { "" }, go_char(op));
        let trims = matches!(op, Some('#' | '%'));
        if colon && trims {
            return Err(ShellErrorKind::UnsupportedModifier(written));
        }
        // The word is read (and its variables looked up) before the
        // operator is judged: `${X:=y}` fails only after reading `y}`.
        let word = self.nested(Stop::Brace, trims)?;
        let value = self.lookup(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{written}{word}}}"));
        }
        let unset = match &value {
            None => true,
            Some(v) => colon && v.is_empty(),
        };
        match op {
            Some('-') => Ok(if unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if unset { String::new() } else { word }),
            Some('?') => {
                let message = (!word.is_empty()).then_some(word);
                match value {
                    None => Err(ShellErrorKind::VarUnset {
                        name: name.to_string(),
                        message,
                    }),
                    Some(v) if colon && v.is_empty() => Err(ShellErrorKind::VarEmpty {
                        name: name.to_string(),
                        message,
                    }),
                    Some(v) => Ok(v),
                }
            }
            Some(op @ ('#' | '%')) => {
                // A doubled operator (`##`, `%%`) is seen in the expanded
                // word, so a pattern that expands to a leading `#` doubles it.
                let (pattern, greedy) = match word.strip_prefix(op) {
                    Some(rest) => (rest, true),
                    None => (word.as_str(), false),
                };
                let value = value.unwrap_or_default();
                if op == '%' {
                    shell_pattern::trim_suffix(pattern, &value, greedy)
                } else {
                    shell_pattern::trim_prefix(pattern, &value, greedy)
                }
            }
            _ => Err(ShellErrorKind::UnsupportedModifier(written)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`, the
    /// first `/` consumed.
    fn substitution(&mut self, name: &str) -> Result<String, ShellErrorKind> {
        let all = self.scan.peek() == Some('/');
        if all {
            self.scan.next();
        }
        let pattern = self.nested(Stop::Slash, true)?;
        let replacement = self.nested(Stop::Brace, true)?;
        let value = self.lookup(name);
        if self.lex.skip_unset_env && value.is_none() {
            // BuildKit writes a single `/` back even for `//`.
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        // An unset variable is matched as empty: `${UNSET/*/x}` is `x`.
        let value = value.unwrap_or_default();
        let re = Pattern::compile(&pattern, true, false).map_err(|reason| {
            ShellErrorKind::InvalidPattern {
                pattern: pattern.clone(),
                reason,
            }
        })?;
        if all {
            // Through Go's ReplaceAllString: `$0` in the replacement is
            // the match.
            return Ok(re.replace_all(&value, &replacement));
        }
        Ok(match re.find_at(&value, 0) {
            Some((start, end)) => format!("{}{replacement}{}", &value[..start], &value[end..]),
            None => value,
        })
    }

    /// A variable name: letters, digits and `_`; or a run of digits (a
    /// positional parameter); or one special-parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.scan.peek() {
            if name.is_empty() && is_go_digit(ch) {
                while let Some(d) = self.scan.peek().filter(|&d| is_go_digit(d)) {
                    self.scan.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.scan.next();
                return ch.to_string();
            }
            if !(is_go_letter(ch) || is_go_digit(ch) || ch == '_') {
                break;
            }
            self.scan.next();
            name.push(ch);
        }
        name
    }

    /// `<<` and the blanks after it stay glued to the following word, so
    /// the parser can find heredoc markers written as `<< EOF`.
    fn possible_heredoc(&mut self) -> String {
        self.scan.next();
        if self.scan.peek() != Some('<') {
            return "<".to_string();
        }
        self.scan.next();
        let mut out = "<<".to_string();
        while let Some(ch @ (' ' | '\t' | '\r')) = self.scan.peek() {
            self.scan.next();
            out.push(ch);
        }
        out
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(value) => {
                self.matched.insert(name.to_string());
                Some(value.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }
}

/// POSIX special parameters; never set in a Dockerfile, but they end a name.
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Go's `unicode.IsLetter`: general category L.
pub(super) fn is_go_letter(ch: char) -> bool {
    use GeneralCategory::*;
    matches!(
        get_general_category(ch),
        UppercaseLetter | LowercaseLetter | TitlecaseLetter | ModifierLetter | OtherLetter
    )
}

/// Go's `unicode.IsDigit`: general category Nd (not `²`, not `Ⅻ`).
pub(super) fn is_go_digit(ch: char) -> bool {
    get_general_category(ch) == GeneralCategory::DecimalNumber
}

/// Go's `unicode.IsPrint`: categories L, M, N, P, S and the ASCII space.
fn is_go_print(ch: char) -> bool {
    use GeneralCategory::*;
    ch == ' '
        || !matches!(
            get_general_category(ch),
            Control
                | Format
                | Surrogate
                | PrivateUse
                | Unassigned
                | SpaceSeparator
                | LineSeparator
                | ParagraphSeparator
        )
}

/// How Go prints a rune with `%c`/`string(r)`: the end of input is U+FFFD.
fn go_char(ch: Option<char>) -> char {
    ch.unwrap_or('\u{FFFD}')
}

/// `s` as Go's `%q` prints it, so error messages match BuildKit's.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            _ if is_go_print(ch) => out.push(ch),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            _ if ch < ' ' || ch == '\u{7f}' => out.push_str(&format!("\\x{:02x}", ch as u32)),
            _ if (ch as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", ch as u32)),
            _ => out.push_str(&format!("\\U{:08x}", ch as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvList {
        pairs.iter().copied().collect()
    }

    type Pairs<'a> = &'a [(&'a str, &'a str)];
    /// Input, environment, result, matched names, unmatched names.
    type MatchCase<'a> = (&'a str, Pairs<'a>, &'a str, &'a [&'a str], &'a [&'a str]);

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn word(lex: &Lex, input: &str, pairs: &[(&str, &str)]) -> Result<String, ShellError> {
        lex.process_word(input, &env(pairs))
    }

    fn words(lex: &Lex, input: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        lex.process_words(input, &env(pairs)).unwrap()
    }

    fn kind(lex: &Lex, input: &str, pairs: &[(&str, &str)]) -> ShellErrorKind {
        word(lex, input, pairs).unwrap_err().kind
    }

    /// lex_test.go's TestProcessWithMatches: results and the variables
    /// recorded as found / not found.
    #[test]
    fn matches_and_unmatched() {
        let fb: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
        let cases: &[MatchCase] = &[
            ("x", &[("DUMMY", "dummy")], "x", &[], &[]),
            ("x ${UNUSED}", &[("DUMMY", "dummy")], "x ", &[], &["UNUSED"]),
            ("x ${FOO}", &[("FOO", "y")], "x y", &["FOO"], &[]),
            (
                "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
                fb,
                "xxx  ccc",
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            (
                "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
                fb,
                "xxx bbb ccc",
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            ("${FOO:-}", fb, "xxx", &["FOO"], &[]),
            ("${FOO:-}", &[], "", &[], &["FOO"]),
            (
                "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
                fb,
                "aaa bbb ",
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            (
                "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
                fb,
                "aaa  ",
                &["FOO", "BAR"],
                &["BAZ"],
            ),
            ("${FOO?aaa}", fb, "xxx", &["FOO"], &[]),
            ("${BAR?bbb}", fb, "", &["BAR"], &[]),
            ("${FOO:?aaa}", fb, "xxx", &["FOO"], &[]),
            (
                "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
                &[("FOO", "()[]{}^$.*?|\\x")],
                "x",
                &["FOO"],
                &[],
            ),
            ("${FOO%%\\**}", &[("FOO", "xx**")], "xx", &["FOO"], &[]),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], "y", &["FOO"], &[]),
            ("${FOO#*}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
            (
                "${FOO#$BAR}",
                &[("FOO", "xxyy"), ("BAR", "x")],
                "xyy",
                &["FOO", "BAR"],
                &[],
            ),
            (
                "${FOO#$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                "xxyy",
                &["FOO", "BAR"],
                &[],
            ),
            ("${FOO#}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
            ("${FOO##*x}", &[("FOO", "xxyy")], "yy", &["FOO"], &[]),
            ("${FOO##}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
            ("${FOO#?\\?}", &[("FOO", "???y")], "?y", &["FOO"], &[]),
            (
                "${ABC:-.}${FOO%x}${ABC:-.}",
                &[("FOO", "xxyy")],
                ".xxyy.",
                &["FOO"],
                &["ABC"],
            ),
            ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], "a", &["FOO"], &[]),
            ("${FOO%}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
            (
                "${FOO%%$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                "xxyy",
                &["FOO", "BAR"],
                &[],
            ),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
                "/foo.*/*.txt - /foo..*.txt",
                &["FOO", "NEEDLE"],
                &[],
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                "/tmp/bar.txt - /bar.txt",
                &["FOO", "NEEDLE"],
                &[],
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "/a/foo/b/c.txt"),
                    ("NEEDLE", "/?/"),
                    ("REPLACEMENT", "/"),
                ],
                "/foo/b/c.txt - /foo/c.txt",
                &["FOO", "NEEDLE", "REPLACEMENT"],
                &[],
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                "https://google.de",
                &["FOO", "NEEDLE", "REPLACEMENT"],
                &[],
            ),
            (
                "${FOO//\\//\\/}",
                &[("FOO", "/tmp/foo.txt")],
                "\\/tmp\\/foo.txt",
                &["FOO"],
                &[],
            ),
            (
                "${FOO/$BAR/ww}",
                &[("FOO", "xxyy"), ("BAR", "")],
                "wwxxyy",
                &["FOO", "BAR"],
                &[],
            ),
            ("${FOO///}", &[("FOO", "xxyy")], "xxyy", &["FOO"], &[]),
            ("${FOO///}", &[], "", &[], &["FOO"]),
        ];
        let lex = Lex::new('\\');
        for &(input, pairs, expected, matched, unmatched) in cases {
            let got = lex
                .process_word_with_matches(input, &env(pairs))
                .unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.result, expected, "{input:?}");
            assert_eq!(got.matched, set(matched), "{input:?} matched");
            assert_eq!(got.unmatched, set(unmatched), "{input:?} unmatched");
        }
        let errors: &[(&str, &[(&str, &str)])] = &[
            ("${BAZ?ccc}", fb),
            ("${BAR:?bbb}", fb),
            ("${BAZ:?ccc}", fb),
            ("${BAZ:?}", fb),
            ("${FOO=aaa}", fb),
            ("${FOO=:aaa}", fb),
            ("${FOO=}", &[]),
            ("${FOO:#}", &[]),
            ("${FOO:##}", &[]),
            ("${FOO:%}", &[]),
            ("${FOO:%%}", &[]),
            ("${FOO//ww}", &[("FOO", "xxyy")]),
            ("${FOO//}", &[("FOO", "xxyy")]),
        ];
        for &(input, pairs) in errors {
            assert!(word(&lex, input, pairs).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn mandatory_variables() {
        let lex = Lex::new('\\');
        let plain = &[("VAR", "plain"), ("ARG", "x")];
        let empty = &[("VAR", ""), ("ARG", "x")];
        let unset = &[("ARG", "x")];
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        assert_eq!(word(&lex, no_empty, plain).unwrap(), "plain");
        assert_eq!(
            kind(&lex, no_empty, empty),
            ShellErrorKind::VarEmpty {
                name: "VAR".into(),
                message: Some("message herex".into())
            }
        );
        assert_eq!(
            kind(&lex, no_empty, unset).to_string(),
            "VAR: message herex"
        );
        assert_eq!(word(&lex, no_unset, plain).unwrap(), "plain");
        assert_eq!(word(&lex, no_unset, empty).unwrap(), "");
        assert_eq!(
            kind(&lex, no_unset, unset).to_string(),
            "VAR: message herex"
        );
        assert_eq!(
            kind(&lex, "${VAR?}", unset).to_string(),
            "VAR: is not allowed to be unset"
        );
        assert_eq!(
            kind(&lex, "${VAR:?}", empty).to_string(),
            "VAR: is not allowed to be empty"
        );
    }

    #[test]
    fn release_file_name() {
        let lex = Lex::new('\\');
        let release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            word(&lex, release, &pairs).unwrap()
        };
        assert_eq!(
            with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]),
            "something-v1.2.3.linux-arm-v7.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
        assert_eq!(
            with(&[("TARGETARCH", "arm64")]),
            "something-v1.2.3.linux-arm64.tar.gz"
        );
    }

    #[test]
    fn error_messages_are_buildkits() {
        let lex = Lex::new('\\');
        let msg = |input: &str| {
            word(&lex, input, &[("PWD", "/home"), ("P", "ab\\")])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            msg("he${}"),
            r#"failed to process "he${}": syntax error: bad substitution"#
        );
        assert_eq!(
            msg("${:-x}"),
            r#"failed to process "${:-x}": syntax error: bad substitution"#
        );
        assert_eq!(
            msg("a${"),
            r#"failed to process "a${": syntax error: missing '}'"#
        );
        assert_eq!(
            msg("${X:-abc"),
            r#"failed to process "${X:-abc": syntax error: missing '}'"#
        );
        // An open quote inside ${...} is reported as the missing brace.
        assert_eq!(
            msg("${X:-'abc}"),
            r#"failed to process "${X:-'abc}": syntax error: missing '}'"#
        );
        assert_eq!(
            msg("${X/abc"),
            r#"failed to process "${X/abc": syntax error: missing '/' in ${}"#
        );
        assert_eq!(
            msg("${X/a/b"),
            r#"failed to process "${X/a/b": syntax error: missing '}'"#
        );
        assert_eq!(
            msg("${PWD:=0}"),
            r#"failed to process "${PWD:=0}": unsupported modifier (:=) in substitution"#
        );
        assert_eq!(
            msg("${PWD=0}"),
            r#"failed to process "${PWD=0}": unsupported modifier (=) in substitution"#
        );
        assert_eq!(
            msg("${PWD:#a}"),
            r#"failed to process "${PWD:#a}": unsupported modifier (:#) in substitution"#
        );
        // Go prints the missing operator of an unclosed ${NAME as U+FFFD.
        assert_eq!(
            msg("${PWD"),
            "failed to process \"${PWD\": unsupported modifier (\u{FFFD}) in substitution"
        );
        assert_eq!(
            msg("'abc"),
            r#"failed to process "'abc": unexpected end of statement while looking for matching single-quote"#
        );
        assert_eq!(
            msg("\"abc"),
            r#"failed to process "\"abc": unexpected end of statement while looking for matching double-quote"#
        );
        assert_eq!(
            msg("${PWD#\\x}"),
            r#"failed to process "${PWD#\\x}": invalid pattern (\x) in substitution: invalid escape '\x'"#
        );
        // % reverses the pattern before checking it; the message shows that.
        // A pattern can only end in a lone `\` through a variable.
        assert_eq!(
            msg("${PWD%$P}"),
            r#"failed to process "${PWD%$P}": invalid pattern (\ba) in substitution: invalid escape '\b'"#
        );
        assert_eq!(
            msg("${PWD%ab\\}"),
            r#"failed to process "${PWD%ab\\}": syntax error: missing '}'"#
        );
        assert_eq!(
            msg("${PWD/\\x/}"),
            r#"failed to process "${PWD/\\x/}": invalid pattern (\x) in substitution: invalid escape '\x'"#
        );
        // The word is quoted the way Go's %q does it.
        assert_eq!(
            msg("\t\u{a0}é\u{1}\u{1F600}\u{E000}${"),
            "failed to process \"\\t\\u00a0é\\x01\u{1F600}\\ue000${\": syntax error: missing '}'"
        );
        assert_eq!(
            go_quote("\u{10FFFD}\u{7f}\u{85}"),
            "\"\\U0010fffd\\x7f\\u0085\""
        );
    }

    #[test]
    fn unsupported_modifiers_read_their_word_first() {
        let lex = Lex::new('\\');
        // The word after `:=` is read before the operator is rejected, so
        // skip-unset mode lets it through untouched when X is unset.
        let got = lex
            .process_word_with_matches("${X:=$Y}", &env(&[("Y", "y")]))
            .unwrap_err();
        assert_eq!(got.kind, ShellErrorKind::UnsupportedModifier(":=".into()));
        let mut skip = Lex::new('\\');
        skip.skip_unset_env = true;
        assert_eq!(word(&skip, "${X:=$Y}", &[("Y", "y")]).unwrap(), "${X:=y}");
        assert!(word(&skip, "${X:=$Y}", &[("X", ""), ("Y", "y")]).is_err());
    }

    #[test]
    fn skip_unset_env_keeps_references() {
        let mut lex = Lex::new('\\');
        lex.skip_unset_env = true;
        let e: &[(&str, &str)] = &[("SET", "v")];
        for (input, expected) in [
            ("$X", "$X"),
            ("${X}", "${X}"),
            ("$SET-${SET}", "v-v"),
            ("${X:-a b}", "${X:-a b}"),
            ("${X:-'q'}", "${X:-q}"),
            ("${X:-$SET}", "${X:-v}"),
            ("${X?must}", "${X?must}"),
            ("${X#a*}", "${X#a*}"),
            ("${X%%\\*}", "${X%%\\*}"),
            // BuildKit writes `//` back as `/`.
            ("${X//a/b}", "${X/a/b}"),
            ("${X/a/b}", "${X/a/b}"),
            ("$1 $@ $0", "$1 $@ $0"),
            ("${SET:+x}", "x"),
            ("$", "$"),
        ] {
            assert_eq!(word(&lex, input, e).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn raw_quotes_and_escapes() {
        let mut lex = Lex::new('\\');
        lex.raw_quotes = true;
        assert_eq!(
            word(&lex, r#"'a $X'"b $X"c"#, &[("X", "x")]).unwrap(),
            r#"'a $X'"b x"c"#
        );
        assert_eq!(
            words(&lex, r#"'a b' "c d" e"#, &[]),
            [r#"'a b'"#, r#""c d""#, "e"]
        );

        let mut lex = Lex::new('\\');
        lex.raw_escapes = true;
        assert_eq!(
            word(&lex, r"a\ b\$X\\", &[("X", "x")]).unwrap(),
            r"a\ b\$X\\"
        );
        assert_eq!(words(&lex, r"a\ b c", &[]), [r"a\ b", "c"]);
        assert_eq!(word(&lex, r#""\"\$\\""#, &[]).unwrap(), r#"\"\$\\"#);
        // BuildKit's quirk: an escape before an ordinary character inside
        // double quotes comes out twice.
        assert_eq!(word(&lex, r#""\t""#, &[]).unwrap(), r"\\t");
        // A trailing escape token is kept in raw mode, dropped otherwise.
        assert_eq!(word(&lex, r"ab\", &[]).unwrap(), r"ab\");
        assert_eq!(word(&Lex::new('\\'), r"ab\", &[]).unwrap(), "ab");

        // The parser's heredoc-detection settings.
        let mut lex = Lex::new('\\');
        lex.raw_quotes = true;
        lex.raw_escapes = true;
        lex.skip_unset_env = true;
        assert_eq!(
            words(&lex, r#"cat <<"EOF" <<-'E2' <<\E3 $X"#, &[]),
            ["cat", r#"<<"EOF""#, "<<-'E2'", r"<<\E3", "$X"]
        );
    }

    #[test]
    fn patterns_keep_escapes_even_when_not_raw() {
        let lex = Lex::new('\\');
        // Inside #/%// the escape token is kept so the pattern sees `\*`;
        // elsewhere in ${…} it is removed.
        assert_eq!(word(&lex, r"${X#\*}", &[("X", "*a")]).unwrap(), "a");
        assert_eq!(word(&lex, r"${X:-\*}", &[]).unwrap(), "*");
        assert_eq!(word(&lex, r"${X/\*/-}", &[("X", "a*b")]).unwrap(), "a-b");
    }

    #[test]
    fn skip_process_quotes() {
        let mut lex = Lex::new('\\');
        lex.skip_process_quotes = true;
        assert_eq!(
            word(&lex, r#"'$X' "$X""#, &[("X", "x")]).unwrap(),
            r#"'x' "x""#
        );
        assert_eq!(word(&lex, r"\'", &[]).unwrap(), "'");
        assert_eq!(word(&lex, "'", &[]).unwrap(), "'");
    }

    #[test]
    fn backtick_escape() {
        let lex = Lex::new('`');
        let e: &[(&str, &str)] = &[("PWD", "/home")];
        for (input, expected) in [
            (r"C:\dir\$PWD", r"C:\dir\/home"),
            ("a`$PWD", "a$PWD"),
            ("a``b", "a`b"),
            ("a` b", "a b"),
            ("\"a`\"b\"", "a\"b"),
            ("\"`$PWD``\"", "$PWD`"),
            // Only ", $ and the escape token are escaped inside quotes.
            ("\"`a\\\"", "`a\\"),
            ("${X:-`}}", "}"),
            ("ab`", "ab"),
        ] {
            assert_eq!(word(&lex, input, e).unwrap(), expected, "{input:?}");
        }
        assert_eq!(words(&lex, "a` b c", &[]), ["a b", "c"]);
    }

    #[test]
    fn word_splitting() {
        let lex = Lex::new('\\');
        let e: &[(&str, &str)] = &[("X", " a  b "), ("E", "")];
        assert_eq!(words(&lex, "p${X}q", e), ["p", "a", "b", "q"]);
        assert_eq!(words(&lex, "p\"${X}\"q", e), ["p a  b q"]);
        assert_eq!(
            words(&lex, "  one\ttwo\nthree  ", e),
            ["one", "two", "three"]
        );
        assert_eq!(words(&lex, "", e), Vec::<String>::new());
        // Empty expansions and empty quotes make no word.
        assert_eq!(words(&lex, "$E ''", e), Vec::<String>::new());
        assert_eq!(words(&lex, "a '' b", e), ["a", "b"]);
        // `<<` keeps the blanks after it and glues to the next word.
        assert_eq!(
            words(&lex, "cat << \tEOF x<y", e),
            ["cat", "<< \tEOF", "x<y"]
        );
        // A modifier's word splits after expansion, quotes and all.
        assert_eq!(words(&lex, "${N:-'a b' c}", e), ["a", "b", "c"]);
    }

    /// BuildKit shares one partial-word buffer across nesting levels, so
    /// `process_words` forgets what came before a `${VAR<op>…}` in the same
    /// word. bk does the same, to split words exactly as BuildKit does.
    #[test]
    fn words_lose_prefix_before_modifier_like_buildkit() {
        let lex = Lex::new('\\');
        let e: &[(&str, &str)] = &[("X", "x")];
        assert_eq!(words(&lex, "80${P:-/tcp}", e), ["/tcp"]);
        assert_eq!(words(&lex, "a b${X/x/y}c", e), ["a", "yc"]);
        assert_eq!(words(&lex, "a\"${P:-q}\"", e), ["q"]);
        // Plain ${X} and $X do not nest, and process_word is unaffected.
        assert_eq!(words(&lex, "80${X}", e), ["80x"]);
        assert_eq!(word(&lex, "80${P:-/tcp}", e).unwrap(), "80/tcp");
    }

    #[test]
    fn names_and_parameters() {
        let lex = Lex::new('\\');
        let e: &[(&str, &str)] = &[("é1", "E"), ("a", "A"), ("١٢", "N"), ("_", "U")];
        for (input, expected) in [
            ("$é1!", "E!"),
            // A combining mark is not a letter to Go: the name stops there.
            ("$a\u{301}", "A\u{301}"),
            // Superscripts and roman numerals are not digits.
            ("$²", "$²"),
            ("$Ⅻ", "$Ⅻ"),
            // Non-ASCII decimal digits make a positional parameter.
            ("$١٢x", "Nx"),
            ("$_", "U"),
            ("$0a", "a"),
            ("$$$", "$"),
            ("${#}", ""),
            ("${--d}", "d"),
            ("${+x}", ""),
        ] {
            assert_eq!(word(&lex, input, e).unwrap(), expected, "{input:?}");
        }
        assert_eq!(
            kind(&lex, "${#X}", e),
            ShellErrorKind::UnsupportedModifier("X".into())
        );
        assert_eq!(
            kind(&lex, "${.}", e),
            ShellErrorKind::UnsupportedModifier(".".into())
        );
    }

    #[test]
    fn substitution_details() {
        let lex = Lex::new('\\');
        let e: &[(&str, &str)] = &[("F", "foo"), ("P", "#o"), ("R", "<$0>")];
        for (input, expected) in [
            // An unset variable is matched as empty.
            ("${U/*/x}", "x"),
            ("${U//a/x}", ""),
            // `//` goes through Go's template expansion; `/` does not.
            ("${F//o/$R}", "f<o><o>"),
            ("${F/o/$R}", "f<$0>o"),
            (r"${F//o/[\$0]}", r"f[\o][\o]"),
            // A pattern that expands to a leading `#` doubles the operator.
            ("${F#$P}", "foo"),
            ("${F#o*}", "foo"),
            ("${F%o*}", "fo"),
            ("${F%%o*}", "f"),
            ("${F#\u{FEFF}f}", "oo"),
        ] {
            assert_eq!(word(&lex, input, e).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn leading_bom_is_dropped_like_go_scanner() {
        let lex = Lex::new('\\');
        assert_eq!(word(&lex, "\u{FEFF}$a", &[("a", "A")]).unwrap(), "A");
        assert_eq!(word(&lex, "x\u{FEFF}", &[]).unwrap(), "x\u{FEFF}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let lex = Lex::new('\\');
        let nest = |n: usize| format!("{}v{}", "${X:-".repeat(n), "}".repeat(n));
        assert_eq!(word(&lex, &nest(MAX_NESTING), &[]).unwrap(), "v");
        assert_eq!(
            kind(&lex, &nest(MAX_NESTING + 1), &[]),
            ShellErrorKind::TooDeep
        );
        assert_eq!(kind(&lex, &nest(20_000), &[]), ShellErrorKind::TooDeep);
        let quoted = format!("{}v{}", "\"${X:-".repeat(5000), "}\"".repeat(5000));
        assert_eq!(kind(&lex, &quoted, &[]), ShellErrorKind::TooDeep);
    }

    #[test]
    fn env_list() {
        let mut e = EnvList::from_assignments(["A=1", "B", "C=x=y", "A=2"]);
        assert_eq!(e.get("A"), Some("2"));
        assert_eq!(e.get("B"), Some(""));
        assert_eq!(e.get("C"), Some("x=y"));
        assert_eq!(e.get("a"), None, "keys are case-sensitive");
        assert_eq!(e.keys(), ["B", "C", "A"]);
        e.set("B", "3");
        assert_eq!(e.keys(), ["C", "A", "B"]);
        assert!(e.remove("C"));
        assert!(!e.remove("C"));
        assert_eq!(e.iter().collect::<Vec<_>>(), [("A", "2"), ("B", "3")]);
        assert_eq!(e.len(), 2);
    }

    /// Every short string over the characters the lexer treats specially
    /// must expand or fail, never panic, in every mode.
    #[test]
    fn no_panics_on_short_inputs() {
        let alphabet = [
            '$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', '\'', '"', '<', '*', 'A',
            'é', ' ', '\n',
        ];
        let e = env(&[("A", "a*\n/"), ("é", "")]);
        let mut lexes = Vec::new();
        for escape in ['\\', '`'] {
            for bits in 0..16u8 {
                let mut lex = Lex::new(escape);
                lex.raw_quotes = bits & 1 != 0;
                lex.raw_escapes = bits & 2 != 0;
                lex.skip_process_quotes = bits & 4 != 0;
                lex.skip_unset_env = bits & 8 != 0;
                lexes.push(lex);
            }
        }
        let mut inputs = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..3 {
            frontier = frontier
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            inputs.extend(frontier.iter().cloned());
        }
        // Longer shapes around the modifiers.
        for a in alphabet {
            for b in alphabet {
                inputs.push(format!("${{A{a}{b}}}"));
                inputs.push(format!("${{A/{a}/{b}}}"));
                inputs.push(format!("${{A:{a}{b}"));
            }
        }
        for lex in &lexes {
            for input in &inputs {
                let _ = lex.process_word_with_matches(input, &e);
                let _ = lex.process_words(input, &e);
            }
        }
    }
}
