//! Docker's path patterns: the wildcard language of `.dockerignore` (and of
//! BuildKit's include/exclude filters), with the exact semantics of
//! `moby/patternmatcher` on Unix. This module owns one pattern
//! ([`Pattern`]), an ordered list of them with `!` exceptions
//! ([`PatternMatcher`]), and the walker hints built on them
//! ([`MatchInfo`], [`PatternMatcher::must_walk`]). It knows nothing about
//! files; paths are slash-separated, relative to the context root, and may
//! be any bytes (Unix file names need not be UTF-8).
//!
//! How Docker matches, and so how this does: a pattern is trimmed and
//! `filepath.Clean`ed, checked against Go's `filepath.Match` syntax, then
//! classified. Patterns of plain characters compare exactly; `prefix/**`
//! and `**suffix` forms without other wildcards compare as a byte prefix or
//! suffix; everything else is rewritten into a Go regular expression
//! (`*` → `[^/]*`, `?` → `[^/]`, `**` → `(.*/)?` or `.*`, `.+()$`
//! escaped, `\x` kept as a regexp escape, everything else — `[`, `]`, `^`,
//! `|`, `{`, `}` included — passed through). The rewrite, not
//! `filepath.Match`, decides what matches; `regexp` reproduces RE2 so that
//! even odd patterns (`[*]`, `\d`, `a^b*`, `a|b*`) behave as under Docker.

mod regexp;

use std::fmt;

pub use regexp::RegexProblem;
use regexp::{decode_rune, Regex};

/// Why a pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `!` with nothing after it (Docker's wording).
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    /// Only whitespace: there is nothing to match with.
    #[error("empty pattern")]
    Empty,
    /// Fails Go's `filepath.Match` syntax check, which Docker runs first.
    #[error("syntax error in pattern `{pattern}`: {problem}")]
    Syntax {
        pattern: String,
        problem: GlobProblem,
    },
    /// Passes the wildcard check but its regular-expression rewrite does
    /// not compile (Docker fails on it when it first matches a path).
    #[error("syntax error in pattern `{pattern}`: {problem}")]
    Regex {
        pattern: String,
        problem: RegexProblem,
    },
}

/// What `filepath.Match`'s syntax check objects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobProblem {
    /// `\` as the last character escapes nothing.
    TrailingBackslash,
    /// `[` without a closing `]`.
    UnterminatedClass,
    /// A class member or range bound that is `-` or `]` (`[]a]`, `[-x]`,
    /// `[x-]`, `[a-b-c]`).
    BadRangeBound,
    /// Bytes inside `[…]` that are not UTF-8.
    InvalidUtf8InClass,
}

impl fmt::Display for GlobProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GlobProblem::TrailingBackslash => "trailing `\\` escapes nothing",
            GlobProblem::UnterminatedClass => "`[` is never closed by `]`",
            GlobProblem::BadRangeBound => {
                "a character class member cannot be an unescaped `-` or `]`"
            }
            GlobProblem::InvalidUtf8InClass => "a character class holds invalid UTF-8",
        })
    }
}

/// How one pattern decides a match; Docker picks the cheapest form that is
/// equivalent to its own regexp *as Docker implements it* — which is not
/// always equivalent to the regexp (`**foo` is a plain suffix test and so
/// also matches `barfoo`).
#[derive(Debug, Clone)]
enum Kind {
    /// No wildcard at all: the path equals the pattern.
    Exact,
    /// `p**` with only plain characters in `p`: the path starts with `p`.
    Prefix,
    /// `**s` with only plain characters in `s`: the path ends with `s`
    /// (and `**/s` also matches `s` itself).
    Suffix,
    Regex(Regex),
}

/// One cleaned pattern, possibly a `!` exception.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The cleaned pattern without its `!`, as Docker stores it.
    text: Vec<u8>,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    /// Parses one pattern as `patternmatcher.New` does for each entry:
    /// surrounding whitespace trimmed, the path cleaned (`a//b/../c/` →
    /// `a/c`), a leading `!` making it an exception. A leading `/` is kept
    /// here; the ignore-file reader is what drops it.
    pub fn new(raw: impl AsRef<[u8]>) -> Result<Pattern, PatternError> {
        let trimmed = trim_space(raw.as_ref());
        if trimmed.is_empty() {
            return Err(PatternError::Empty);
        }
        let cleaned = clean(trimmed);
        let (exclusion, text) = match cleaned.split_first() {
            Some((b'!', [])) => return Err(PatternError::LoneExclamation),
            Some((b'!', rest)) => (true, rest.to_vec()),
            _ => (false, cleaned),
        };
        let shown = || display_pattern(exclusion, &text);
        if let Err(problem) = check_glob_syntax(&text) {
            return Err(PatternError::Syntax {
                pattern: shown(),
                problem,
            });
        }
        let kind = classify(&text).map_err(|problem| PatternError::Regex {
            pattern: shown(),
            problem,
        })?;
        Ok(Pattern {
            text,
            exclusion,
            kind,
        })
    }

    /// The cleaned pattern without any `!` (Go's `Pattern.String`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    /// Whether this is a `!` exception that re-includes what it matches.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// Whether `path` itself matches, ignoring its parent directories.
    pub fn matches(&self, path: impl AsRef<[u8]>) -> bool {
        let path = path.as_ref();
        let text = self.text.as_slice();
        match &self.kind {
            Kind::Exact => path == text,
            Kind::Prefix => {
                // Docker slices off the trailing `**` by bytes.
                let stem = text.get(..text.len().saturating_sub(2)).unwrap_or(b"");
                path.starts_with(stem)
            }
            Kind::Suffix => {
                // …and the leading `**` likewise.
                let suffix = text.get(2..).unwrap_or(b"");
                path.ends_with(suffix)
                    || suffix
                        .split_first()
                        .is_some_and(|(first, rest)| *first == b'/' && path == rest)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }

    /// Whether `path` or one of its parent directories matches: a pattern
    /// naming a directory covers everything below it.
    pub fn matches_or_parent_matches(&self, path: impl AsRef<[u8]>) -> bool {
        let path = path.as_ref();
        self.matches(path) || parent_prefixes(&go_dir(path)).any(|dir| self.matches(dir))
    }

    /// The pattern with one trailing `/**` or `/*` removed: fsutil's idea of
    /// the directory a pattern is about.
    fn without_trailing_glob(&self) -> &[u8] {
        let t = self.text.as_slice();
        let t = t.strip_suffix(b"/**").unwrap_or(t);
        t.strip_suffix(b"/*").unwrap_or(t)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&display_pattern(self.exclusion, &self.text))
    }
}

fn display_pattern(exclusion: bool, text: &[u8]) -> String {
    let bang = if exclusion { "!" } else { "" };
    format!("{bang}{}", String::from_utf8_lossy(text))
}

/// Per-pattern results for a directory, handed to its children by a walker
/// so that they need not re-test the directory's ancestors
/// ([`PatternMatcher::matches_using_parent_results`]). The default value
/// means "no information", as for entries at the context root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// An ordered pattern list. A path is excluded when the last pattern that
/// matches it (or one of its parent directories) is a plain one, and kept
/// when that is a `!` exception or nothing matches.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
    /// Every exception is a plain path once a trailing `/**` or `/*` is
    /// dropped, so [`Self::must_walk`] can decide by prefix.
    only_prefix_exceptions: bool,
}

/// The characters fsutil treats as "this pattern may match anywhere".
const GLOB_CHARS: &[u8] = b"*[]?^\\";

impl PatternMatcher {
    /// Parses each pattern with [`Pattern::new`], skipping blank ones as
    /// Docker does.
    pub fn new<I>(patterns: I) -> Result<PatternMatcher, PatternError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut parsed = Vec::new();
        for raw in patterns {
            if trim_space(raw.as_ref()).is_empty() {
                continue;
            }
            parsed.push(Pattern::new(raw)?);
        }
        Ok(PatternMatcher::from_patterns(parsed))
    }

    /// A matcher over already-parsed patterns, in order.
    pub fn from_patterns(patterns: Vec<Pattern>) -> PatternMatcher {
        let exclusions = patterns.iter().any(Pattern::is_exclusion);
        let only_prefix_exceptions = patterns.iter().filter(|p| p.is_exclusion()).all(|p| {
            !p.without_trailing_glob()
                .iter()
                .any(|b| GLOB_CHARS.contains(b))
        });
        PatternMatcher {
            patterns,
            exclusions,
            only_prefix_exceptions,
        }
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// Docker's verdict for one path (`MatchesOrParentMatches`): `true`
    /// means excluded. Each pattern is tried against the path and, failing
    /// that, against each of its parent directories; a pattern only counts
    /// when it could change the running verdict (a plain pattern while not
    /// excluded, an exception while excluded).
    pub fn matches_or_parent_matches(&self, path: impl AsRef<[u8]>) -> bool {
        let path = path.as_ref();
        let parent = go_dir(path);
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let hit =
                pattern.matches(path) || parent_prefixes(&parent).any(|dir| pattern.matches(dir));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// The walker's form of [`Self::matches_or_parent_matches`]
    /// (`MatchesUsingParentResults`, what BuildKit's context transfer
    /// uses): with the parent directory's [`MatchInfo`], a pattern the parent
    /// matched counts as matched without testing it, and parents are not
    /// re-tested. Returns the verdict and the info to pass to this path's
    /// children. This can differ from `matches_or_parent_matches` when a
    /// pattern was skipped for the parent (it could not change the verdict
    /// there) yet matches it; Docker's walker has the same behaviour.
    ///
    /// Info from a matcher with a different pattern count is treated as no
    /// information rather than an error: the answer is then computed from
    /// scratch, which is what a root entry gets anyway.
    pub fn matches_using_parent_results(
        &self,
        path: impl AsRef<[u8]>,
        parent: &MatchInfo,
    ) -> (bool, MatchInfo) {
        let path = path.as_ref();
        let inherited = (parent.parent_matched.len() == self.patterns.len()
            && !self.patterns.is_empty())
        .then_some(parent.parent_matched.as_slice());
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        let mut matched = false;
        let parent_dir = inherited.is_none().then(|| go_dir(path));
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = inherited.is_some_and(|v| v[i]);
            if !hit {
                if pattern.exclusion != matched {
                    continue;
                }
                hit = pattern.matches(path)
                    || parent_dir
                        .as_deref()
                        .is_some_and(|dir| parent_prefixes(dir).any(|d| pattern.matches(d)));
            }
            info.parent_matched[i] = hit;
            if hit {
                matched = !pattern.exclusion;
            }
        }
        (matched, info)
    }

    /// For a directory that is itself excluded: whether a walker must still
    /// descend into it because a `!` exception could re-include something
    /// below. This is fsutil's rule, so the same directories are skipped as
    /// under BuildKit: without exceptions never; if any exception has a
    /// wildcard (after dropping a trailing `/**` or `/*`) always; otherwise
    /// only when an exception names this directory or a path inside it.
    pub fn must_walk(&self, dir: impl AsRef<[u8]>) -> bool {
        if !self.exclusions {
            return false;
        }
        if !self.only_prefix_exceptions {
            return true;
        }
        let mut dir_slash = dir.as_ref().to_vec();
        dir_slash.push(b'/');
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let mut stem = p.without_trailing_glob().to_vec();
            stem.push(b'/');
            stem.starts_with(&dir_slash)
        })
    }
}

/// Go's `strings.TrimSpace` on bytes: Unicode white space off both ends,
/// invalid UTF-8 counting as non-space.
pub(crate) fn trim_space(mut s: &[u8]) -> &[u8] {
    loop {
        let (r, width) = decode_rune(s);
        if width == 0 || !char::from_u32(r).is_some_and(char::is_whitespace) {
            break;
        }
        s = &s[width..];
    }
    'outer: while let Some(&last) = s.last() {
        if last < 0x80 {
            if char::from(last).is_whitespace() {
                s = &s[..s.len() - 1];
                continue;
            }
            break;
        }
        for width in 2..=4.min(s.len()) {
            let tail = &s[s.len() - width..];
            if let Ok(text) = std::str::from_utf8(tail) {
                let mut chars = text.chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    if c.is_whitespace() {
                        s = &s[..s.len() - width];
                        continue 'outer;
                    }
                }
                break 'outer;
            }
        }
        break;
    }
    s
}

/// Go's `filepath.Clean` on Unix: no repeated or trailing slashes, no `.`
/// elements, `..` folded into its parent where there is one (and dropped
/// at the root), the empty path as `.`.
pub fn clean(path: &[u8]) -> Vec<u8> {
    let rooted = path.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    // Leading `..` elements of a relative path cannot be folded away.
    let mut fixed = 0;
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.len() > fixed {
                    parts.pop();
                } else if !rooted {
                    parts.push(part);
                    fixed += 1;
                }
            }
            _ => parts.push(part),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if rooted {
        out.push(b'/');
    }
    out.extend(parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Go's `filepath.Dir`: everything before the last slash, cleaned.
fn go_dir(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => clean(&path[..=i]),
        None => b".".to_vec(),
    }
}

/// `a`, `a/b`, `a/b/c` for the cleaned directory `a/b/c` (and `""`, `/a`
/// for `/a`); nothing for `.`, which is the context root itself.
fn parent_prefixes(dir: &[u8]) -> impl Iterator<Item = &[u8]> {
    let ends: Vec<usize> = if dir == b"." {
        Vec::new()
    } else {
        dir.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| i)
            .chain(std::iter::once(dir.len()))
            .collect()
    };
    ends.into_iter().map(move |end| &dir[..end])
}

/// The syntax check Docker borrows from Go: `filepath.Match(pattern, ".")`
/// must not fail. Match works chunk by chunk (a chunk is the text between
/// unbracketed stars) and validates a whole chunk whenever it looks at it,
/// but it stops looking as soon as the name `.` cannot match, so a mistake
/// after the first star is only caught if the part before it matches `.`
/// (`a*[` passes, `*[` and `.*[` do not). The same control flow is kept
/// here so that exactly the patterns Docker accepts are accepted.
fn check_glob_syntax(pattern: &[u8]) -> Result<(), GlobProblem> {
    match_glob(pattern, b".", false).map(|_| ())
}

/// Go's `filepath.Match` on Unix: whether `name` matches `pattern` as a
/// whole, `*` and `?` never crossing `/`. A malformed pattern is an error
/// even when an earlier chunk already failed to match, as in Go.
pub fn go_match(pattern: &[u8], name: &[u8]) -> Result<bool, GlobProblem> {
    match_glob(pattern, name, true)
}

/// The matching loop behind [`go_match`] and Docker's syntax check, which
/// differ only in whether chunks after a mismatch are still checked.
fn match_glob(
    mut pattern: &[u8],
    mut name: &[u8],
    check_rest_after_mismatch: bool,
) -> Result<bool, GlobProblem> {
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing star matches whatever is left of this element.
            return Ok(!name.contains(&b'/'));
        }
        // The chunk at the current position; as the last chunk it must
        // use up the name.
        let (tail, ok) = match_chunk(chunk, name)?;
        if ok && (tail.is_empty() || !pattern.is_empty()) {
            name = tail;
            continue;
        }
        if star {
            // The star absorbs more and more of the element, never a `/`.
            let mut skip = 0;
            while skip < name.len() && name[skip] != b'/' {
                let (tail, ok) = match_chunk(chunk, &name[skip + 1..])?;
                if ok && (tail.is_empty() || !pattern.is_empty()) {
                    name = tail;
                    continue 'chunks;
                }
                skip += 1;
            }
        }
        // No match; a syntax error further on still makes this an error.
        while check_rest_after_mismatch && !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, b"")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the chunk after them, up to the next star
/// outside brackets; `\` protects the byte after it.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let stars = pattern.iter().take_while(|&&b| b == b'*').count();
    let p = &pattern[stars..];
    let mut in_class = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' if i + 1 < p.len() => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    (stars > 0, &p[..i], &p[i..])
}

/// Matches one chunk against the start of `s`, returning what is left of
/// `s` and whether it matched. After a mismatch the rest of the chunk is
/// still parsed, so any syntax error in it is reported.
fn match_chunk<'s>(mut chunk: &[u8], mut s: &'s [u8]) -> Result<(&'s [u8], bool), GlobProblem> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut r = 0;
                if !failed {
                    let (rune, width) = decode_rune(s);
                    r = rune;
                    s = &s[width..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut hit = false;
                let mut members = 0;
                loop {
                    if chunk.first() == Some(&b']') && members > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, after) = class_char(chunk)?;
                    chunk = after;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (bound, after) = class_char(&chunk[1..])?;
                        hi = bound;
                        chunk = after;
                    }
                    if lo <= r && r <= hi {
                        hit = true;
                    }
                    members += 1;
                }
                if hit == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, width) = decode_rune(s);
                    s = &s[width..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(GlobProblem::TrailingBackslash);
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { (&[], false) } else { (s, true) })
}

/// One class member or range bound, possibly escaped; the class must go on
/// after it.
fn class_char(chunk: &[u8]) -> Result<(u32, &[u8]), GlobProblem> {
    let mut p = match chunk.first() {
        None => return Err(GlobProblem::UnterminatedClass),
        Some(b'-' | b']') => return Err(GlobProblem::BadRangeBound),
        Some(_) => chunk,
    };
    if p[0] == b'\\' {
        p = &p[1..];
        if p.is_empty() {
            return Err(GlobProblem::UnterminatedClass);
        }
    }
    let (r, width) = decode_rune(p);
    if r == 0xFFFD && width == 1 {
        return Err(GlobProblem::InvalidUtf8InClass);
    }
    let after = &p[width..];
    if after.is_empty() {
        return Err(GlobProblem::UnterminatedClass);
    }
    Ok((r, after))
}

/// Runes as Go's `text/scanner` hands them to Docker's rewrite: invalid
/// bytes become U+FFFD one byte at a time, and a byte-order mark at the
/// very start is skipped.
fn scanner_runes(p: &[u8]) -> Vec<char> {
    let mut out = Vec::with_capacity(p.len());
    let mut rest = p;
    while !rest.is_empty() {
        let (r, width) = decode_rune(rest);
        rest = &rest[width..];
        let c = char::from_u32(r).unwrap_or(char::REPLACEMENT_CHARACTER);
        if out.is_empty() && c == '\u{FEFF}' && rest.len() + width == p.len() {
            continue;
        }
        out.push(c);
    }
    out
}

/// Docker's rewrite of a wildcard pattern, deciding the match kind on the
/// way and compiling the regular expression when one is needed.
fn classify(pattern: &[u8]) -> Result<Kind, RegexProblem> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let runes = scanner_runes(pattern);
    let mut re: Vec<char> = vec!['^'];
    let mut detected = Detected::Exact;
    let mut k = 0;
    let mut first = true;
    while k < runes.len() {
        let c = runes[k];
        k += 1;
        match c {
            '*' if runes.get(k) == Some(&'*') => {
                k += 1;
                // `**/` is the same as `**`.
                if runes.get(k) == Some(&'/') {
                    k += 1;
                }
                if k == runes.len() {
                    // A trailing `**` accepts the rest, as in .gitignore.
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        re.extend(".*".chars());
                        detected = Detected::Regex;
                    }
                } else {
                    // Any number of whole directories, including none.
                    re.extend("(.*/)?".chars());
                    detected = Detected::Regex;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                re.extend("[^/]*".chars());
                detected = Detected::Regex;
            }
            '?' => {
                re.extend("[^/]".chars());
                detected = Detected::Regex;
            }
            // Regexp-special characters that mean themselves in a pattern;
            // they do not make the pattern a regexp one. Docker means to
            // escape `|`, `{` and `}` too, but its lookup table drops every
            // character above `?`, so in a regexp pattern `|` alternates
            // and `{n,m}` repeats, and so they do here.
            '.' | '+' | '(' | ')' | '$' => {
                re.push('\\');
                re.push(c);
            }
            '\\' => {
                re.push('\\');
                if let Some(&next) = runes.get(k) {
                    // Kept as a regexp escape: `\*` is a star, but `\d` is
                    // a digit, as in Docker.
                    re.push(next);
                    k += 1;
                    detected = Detected::Regex;
                }
            }
            '[' | ']' => {
                re.push(c);
                detected = Detected::Regex;
            }
            _ => re.push(c),
        }
        first = false;
    }
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix,
        Detected::Suffix => Kind::Suffix,
        Detected::Regex => {
            re.push('$');
            Kind::Regex(Regex::new(&re)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &[&str], path: &str) -> bool {
        PatternMatcher::new(patterns)
            .unwrap_or_else(|e| panic!("{patterns:?}: {e}"))
            .matches_or_parent_matches(path)
    }

    fn error(pattern: &str) -> PatternError {
        Pattern::new(pattern).expect_err(pattern)
    }

    /// (pattern, path, excluded): the behaviours patternmatcher's own
    /// tests pin down, restated — `**` in every position, trailing slashes
    /// on paths, regexp-special characters meaning themselves, classes.
    const SINGLE_PATTERN_CASES: &[(&str, &str, bool)] = &[
        // `**` alone, and cleaned `**/`, match everything.
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "/", true),
        ("**/", "/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        // Trailing `**` takes whole subtrees, but not the directory itself.
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        // Leading `**/` also matches at the top level.
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        // `**` inside a pattern spans zero or more directories.
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        // Classes and `?`.
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        // Regexp-special characters are literal.
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        // Backslash escapes on Unix.
        ("a\\\\", "a\\", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "ab", false),
        ("a\\*b", "axb", false),
    ];

    /// The `filepath.Match`-style table: one path segment at a time.
    const WILDCARD_CASES: &[(&str, &str, bool)] = &[
        ("abc", "abc", true),
        ("*", "abc", true),
        ("*c", "abc", true),
        ("a*", "a", true),
        ("a*", "abc", true),
        ("a*", "ab/c", true), // the parent `ab` matches
        ("a*/b", "abc/b", true),
        ("a*/b", "a/c/b", false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true),
        ("a*b?c*x", "abxbbxdbxebxczzy", false),
        ("ab[c]", "abc", true),
        ("ab[b-d]", "abc", true),
        ("ab[e-g]", "abc", false),
        ("ab[^c]", "abc", false),
        ("ab[^b-d]", "abc", false),
        ("ab[^e-g]", "abc", true),
        ("a?b", "a☺b", true),
        ("a[^a]b", "a☺b", true),
        ("a???b", "a☺b", false),
        ("a[^a][^a][^a]b", "a☺b", false),
        ("[a-ζ]*", "α", true),
        ("*[a-ζ]", "A", false),
        ("a?b", "a/b", false),
        ("a*b", "a/b", false),
        ("[\\]a]", "]", true),
        ("[\\-]", "-", true),
        ("[x\\-]", "x", true),
        ("[x\\-]", "-", true),
        ("[x\\-]", "z", false),
        ("[\\-x]", "x", true),
        ("[\\-x]", "-", true),
        ("[\\-x]", "a", false),
        ("*x", "xxx", true),
    ];

    #[test]
    fn single_pattern_table() {
        for &(pattern, path, want) in SINGLE_PATTERN_CASES.iter().chain(WILDCARD_CASES) {
            assert_eq!(excluded(&[pattern], path), want, "{pattern:?} vs {path:?}");
        }
    }

    #[test]
    fn malformed_patterns_are_syntax_errors() {
        let cases: &[(&str, GlobProblem)] = &[
            ("[]a]", GlobProblem::BadRangeBound),
            ("[-]", GlobProblem::BadRangeBound),
            ("[x-]", GlobProblem::BadRangeBound),
            ("[-x]", GlobProblem::BadRangeBound),
            ("[a-b-c]", GlobProblem::BadRangeBound),
            ("[^]", GlobProblem::BadRangeBound),
            ("\\", GlobProblem::TrailingBackslash),
            ("a/b\\", GlobProblem::TrailingBackslash),
            ("[", GlobProblem::UnterminatedClass),
            ("[^", GlobProblem::UnterminatedClass),
            ("[^bc", GlobProblem::UnterminatedClass),
            ("a[", GlobProblem::UnterminatedClass),
            ("[a\\", GlobProblem::UnterminatedClass),
            ("*[a", GlobProblem::UnterminatedClass),
        ];
        for &(pattern, problem) in cases {
            assert_eq!(
                error(pattern),
                PatternError::Syntax {
                    pattern: pattern.to_string(),
                    problem
                },
                "{pattern:?}"
            );
        }
        assert_eq!(
            Pattern::new(b"[\xff]".as_slice()).unwrap_err(),
            PatternError::Syntax {
                pattern: "[\u{FFFD}]".into(),
                problem: GlobProblem::InvalidUtf8InClass
            }
        );
        // The message names the pattern.
        assert_eq!(
            error("!src/[a").to_string(),
            "syntax error in pattern `!src/[a`: `[` is never closed by `]`"
        );
    }

    #[test]
    fn lone_exclamation_and_blank_patterns() {
        assert_eq!(error("!"), PatternError::LoneExclamation);
        assert_eq!(error("  !  "), PatternError::LoneExclamation);
        // Cleaning `!/` leaves `!`.
        assert_eq!(error("!/"), PatternError::LoneExclamation);
        assert_eq!(error(" \t "), PatternError::Empty);
        assert_eq!(error("!").to_string(), "illegal exclusion pattern: \"!\"");
        // A matcher skips blank entries instead.
        let m = PatternMatcher::new(["", "  ", "a"]).unwrap();
        assert_eq!(m.patterns().len(), 1);
    }

    #[test]
    fn patterns_are_trimmed_and_cleaned() {
        let p = Pattern::new("  a//b/./c/../d/  ").unwrap();
        assert_eq!(p.as_bytes(), b"a/b/d");
        assert!(!p.is_exclusion());
        let p = Pattern::new("!a/").unwrap();
        assert_eq!(p.as_bytes(), b"a");
        assert!(p.is_exclusion());
        assert_eq!(p.to_string(), "!a");
        // Go cleans before looking at `!`, so `!./a` keeps its `./`.
        assert_eq!(Pattern::new("!./a").unwrap().as_bytes(), b"./a");
        // A leading slash survives here; only the ignore-file reader drops it.
        assert_eq!(Pattern::new("/a").unwrap().as_bytes(), b"/a");
        assert!(!excluded(&["/a"], "a"));
    }

    #[test]
    fn go_clean() {
        let cases: &[(&str, &str)] = &[
            ("", "."),
            (".", "."),
            ("./", "."),
            ("/", "/"),
            ("//", "/"),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("a/./b/.", "a/b"),
            ("a/b/../c", "a/c"),
            ("a/../..", ".."),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("/../a", "/a"),
            ("/a/../..", "/"),
            ("a/b/c/../../../..", ".."),
            ("!./a", "!./a"),
            ("...", "..."),
        ];
        for &(input, want) in cases {
            assert_eq!(clean(input.as_bytes()), want.as_bytes(), "{input:?}");
        }
    }

    #[test]
    fn go_trim_space() {
        assert_eq!(trim_space("\u{3000} a b \u{85}\t\r\n".as_bytes()), b"a b");
        assert_eq!(trim_space("\u{A0}x\u{2029}".as_bytes()), b"x");
        // Zero-width space is not white space in either language.
        assert_eq!(trim_space("\u{200B}".as_bytes()), "\u{200B}".as_bytes());
        assert_eq!(trim_space(b" \xff "), b"\xff");
        assert_eq!(trim_space(b"\xe3\x80"), b"\xe3\x80");
        assert_eq!(trim_space(b""), b"");
    }

    #[test]
    fn directories_cover_their_contents() {
        assert!(excluded(&["build"], "build"));
        assert!(excluded(&["build"], "build/out/app.o"));
        assert!(!excluded(&["build"], "src/build"));
        assert!(!excluded(&["build"], "builds"));
        assert!(excluded(&["*/tmp"], "a/tmp/x/y"));
        assert!(!excluded(&["*/tmp"], "a/b/tmp/x"));
        assert!(excluded(&["**/tmp"], "a/b/tmp/x"));
    }

    #[test]
    fn later_patterns_override_earlier_ones() {
        let logs = ["*.log", "!important.log"];
        assert!(excluded(&logs, "debug.log"));
        assert!(!excluded(&logs, "important.log"));
        assert!(excluded(
            &["*.log", "!important.log", "*.log"],
            "important.log"
        ));
        // An exception before anything excluded has nothing to undo.
        assert!(excluded(&["!a", "a"], "a"));
        assert!(!excluded(&["a", "!a"], "a"));
        assert!(excluded(&["a", "!a", "a"], "a/b"));
        // Multi-pattern cases from patternmatcher's tests.
        assert!(!excluded(
            &["**", "!util/docker/web"],
            "util/docker/web/foo"
        ));
        assert!(excluded(
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo"
        ));
        assert!(!excluded(
            &[
                "**",
                "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
            ],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
        ));
        assert!(!excluded(
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"
        ));
    }

    #[test]
    fn exceptions_reinclude_below_an_excluded_directory() {
        let p = ["vendor", "!vendor/keep", "vendor/keep/*.tmp"];
        assert!(excluded(&p, "vendor"));
        assert!(excluded(&p, "vendor/other/file"));
        assert!(!excluded(&p, "vendor/keep"));
        assert!(!excluded(&p, "vendor/keep/deep/file"));
        assert!(excluded(&p, "vendor/keep/x.tmp"));
        // Everything but one file.
        let p = ["*", "!README.md"];
        assert!(excluded(&p, "src"));
        assert!(excluded(&p, "src/README.md"));
        assert!(!excluded(&p, "README.md"));
    }

    #[test]
    fn parent_rule_tests_every_ancestor() {
        // The deprecated single-parent rule would miss `a/b` for `a/b/c/d`;
        // every ancestor is tried.
        assert!(excluded(&["a/b"], "a/b/c/d"));
        assert!(excluded(&["a/*"], "a/b/c/d"));
        assert!(excluded(&["?/b"], "a/b/c/d"));
        let p = Pattern::new("a/*").unwrap();
        assert!(!p.matches("a/b/c"));
        assert!(p.matches_or_parent_matches("a/b/c"));
        // The path is not cleaned, its parent directory is.
        assert!(excluded(&["a/b"], "a//b//c"));
    }

    /// Where Docker's rewrite into a Go regexp — not `filepath.Match` —
    /// decides; these pin the behaviour a Docker build really has.
    #[test]
    fn docker_rewrite_quirks() {
        // `**x` is a byte-suffix test.
        assert!(excluded(&["**foo"], "barfoo"));
        assert!(excluded(&["**.txt"], "a/b.txt"));
        // A trailing-`**` prefix test has no directory boundary.
        assert!(excluded(&["foo**"], "foobar/x"));
        // `^` is a regexp anchor once the pattern is a regexp one…
        assert!(excluded(&["a^b"], "a^b"));
        assert!(!excluded(&["a^b*"], "a^bc"));
        // …and a class holding `*` wraps the rewritten `[^/]*`.
        assert!(!excluded(&["[*]"], "*"));
        assert!(excluded(&["[*]"], "]"));
        assert!(excluded(&["[*]"], "[^]"));
        // `\` keeps its regexp meaning on letters.
        assert!(excluded(&["\\d"], "7"));
        assert!(!excluded(&["\\d"], "d"));
        assert!(!excluded(&["foo\\bar"], "foobar"));
        assert!(!excluded(&["foo\\bar"], "foo\\bar"));
        assert!(excluded(&["\\x41*"], "Abc"));
        // `\Q` makes the rest literal, the closing `$` included.
        assert!(excluded(&["\\Qa"], "a$"));
        assert!(excluded(&["\\Qa"], "a$/b"));
        assert!(!excluded(&["\\Qa"], "a"));
        // POSIX classes are RE2's.
        assert!(excluded(&["[[:digit:]]"], "5"));
        assert!(!excluded(&["[[:digit:]]"], "d"));
        // A byte-order mark opening a pattern is skipped by the rewrite.
        assert!(excluded(&["\u{FEFF}a*"], "ab"));
        assert!(excluded(&["\u{FEFF}a"], "\u{FEFF}a"));
    }

    /// Docker leaves `|`, `{` and `}` unescaped (its escape table only
    /// covers characters below `@`), so they are regexp syntax as soon as
    /// the pattern has a wildcard.
    #[test]
    fn alternation_and_counts_pass_through() {
        // Without a wildcard the pattern is compared as text.
        assert!(excluded(&["a|b"], "a|b"));
        assert!(!excluded(&["a|b"], "a"));
        // With one, `|` splits the whole regexp: `^a` or `b[^/]*$`.
        assert!(excluded(&["a|b*"], "anything"));
        assert!(excluded(&["a|b*"], "dir/bee"));
        assert!(!excluded(&["a|b*"], "dir/x"));
        // A brace list is not shell expansion…
        assert!(!excluded(&["*.{js,ts}"], "app.js"));
        assert!(excluded(&["*.{js,ts}"], "app.{js,ts}"));
        // …but a count is a count.
        assert!(excluded(&["a{2}*"], "aab"));
        assert!(!excluded(&["a{2}*"], "ab"));
        assert!(matches!(
            error("a{1001}*"),
            PatternError::Regex {
                problem: RegexProblem::InvalidRepeatSize(_),
                ..
            }
        ));
    }

    /// Docker's syntax check is `filepath.Match(p, ".")`, which stops at
    /// the first star-separated chunk that cannot match `.`.
    #[test]
    fn syntax_check_stops_where_go_stops() {
        // `[]a]` after a star is never looked at, and is a fine regexp.
        assert!(excluded(&["x*[]a]"], "xyz]"));
        assert!(excluded(&["x*[]a]"], "xa"));
        // A trailing backslash likewise; it then escapes the final `$`,
        // leaving the regexp open-ended.
        assert!(excluded(&["a*\\"], "ab$"));
        assert!(excluded(&["a*\\"], "a$tail"));
        assert!(!excluded(&["a*\\"], "ab"));
        // An unclosed `[` after a star gets past the check but not RE2.
        assert_eq!(
            error("a*["),
            PatternError::Regex {
                pattern: "a*[".into(),
                problem: RegexProblem::MissingBracket
            }
        );
        // Where the first chunk is a star, or matches `.`, Go reads on.
        for (pattern, problem) in [
            ("*[", GlobProblem::UnterminatedClass),
            ("*[]a]", GlobProblem::BadRangeBound),
            (".*[", GlobProblem::UnterminatedClass),
            ("?*\\", GlobProblem::TrailingBackslash),
            ("[.]*[-]", GlobProblem::BadRangeBound),
        ] {
            assert_eq!(
                error(pattern),
                PatternError::Syntax {
                    pattern: pattern.into(),
                    problem
                },
                "{pattern:?}"
            );
        }
    }

    #[test]
    fn rewrite_errors_are_reported() {
        let cases: &[(&str, RegexProblem)] = &[
            ("\\y", RegexProblem::InvalidEscape("\\y".into())),
            ("a\\8", RegexProblem::InvalidEscape("\\8".into())),
            (
                "[[:foo:]]",
                RegexProblem::UnknownPosixClass("[:foo:]".into()),
            ),
            ("[z-a]", RegexProblem::InvalidCharRange("z-a".into())),
            ("\\pL", RegexProblem::UnicodeClass("\\pL".into())),
        ];
        for (pattern, problem) in cases {
            assert_eq!(
                error(pattern),
                PatternError::Regex {
                    pattern: pattern.to_string(),
                    problem: problem.clone()
                },
                "{pattern:?}"
            );
        }
        assert_eq!(
            error("\\y").to_string(),
            "syntax error in pattern `\\y`: invalid escape sequence `\\y`"
        );
    }

    #[test]
    fn paths_and_patterns_need_not_be_utf8() {
        let exact = Pattern::new(b"a\xff".as_slice()).unwrap();
        assert!(exact.matches(b"a\xff".as_slice()));
        assert!(!exact.matches("a\u{FFFD}"));
        // In regexp form an invalid byte reads as U+FFFD on both sides.
        let wild = Pattern::new(b"a\xff*".as_slice()).unwrap();
        assert!(wild.matches(b"a\xffb".as_slice()));
        assert!(wild.matches("a\u{FFFD}b"));
        assert!(excluded(&["*"], "\u{FFFD}"));
        let m = PatternMatcher::new(["*"]).unwrap();
        assert!(m.matches_or_parent_matches(b"\xfe\xff".as_slice()));
    }

    #[test]
    fn must_walk_follows_fsutil() {
        let none = PatternMatcher::new(["a"]).unwrap();
        assert!(!none.has_exclusions());
        assert!(!none.must_walk("a"));

        let m = PatternMatcher::new(["a", "!a/b/c"]).unwrap();
        assert!(m.has_exclusions());
        assert!(m.must_walk("a"));
        assert!(m.must_walk("a/b"));
        assert!(m.must_walk("a/b/c"));
        assert!(!m.must_walk("a/x"));
        assert!(!m.must_walk("a/b/c/d"));
        // A directory name that is only a string prefix does not count.
        assert!(!m.must_walk("a/b/"));
        let m = PatternMatcher::new(["x", "!a/bc"]).unwrap();
        assert!(!m.must_walk("a/b"));

        // A trailing `/**` or `/*` is dropped before the prefix test.
        let m = PatternMatcher::new(["*", "!keep/**"]).unwrap();
        assert!(m.must_walk("keep"));
        assert!(!m.must_walk("other"));
        let m = PatternMatcher::new(["*", "!keep/*"]).unwrap();
        assert!(m.must_walk("keep"));
        assert!(!m.must_walk("other"));

        // Any other wildcard in an exception: walk everything.
        for exception in ["!*.md", "!a/**/b", "!a/[bc]", "!a?", "!a\\*"] {
            let m = PatternMatcher::new(["*", exception]).unwrap();
            assert!(m.must_walk("anything"), "{exception}");
        }
    }

    /// Walks a fixed tree the way BuildKit's context transfer does and
    /// returns the excluded paths.
    fn walk_excluded(m: &PatternMatcher, tree: &[&str]) -> Vec<String> {
        let mut info_of: Vec<(String, MatchInfo)> = Vec::new();
        let mut out = Vec::new();
        for path in tree {
            let parent = path.rsplit_once('/').map(|(d, _)| d);
            let parent_info = parent
                .and_then(|d| info_of.iter().find(|(p, _)| p == d))
                .map(|(_, i)| i.clone())
                .unwrap_or_default();
            let (hit, info) = m.matches_using_parent_results(path, &parent_info);
            if hit {
                out.push(path.to_string());
            }
            info_of.push((path.to_string(), info));
        }
        out
    }

    #[test]
    fn walker_results_agree_with_the_full_rule() {
        let tree = [
            "a",
            "a/b",
            "a/b/c",
            "a/b/c/d.txt",
            "a/x.log",
            "docs",
            "docs/README.md",
            "docs/img",
            "docs/img/logo.png",
            "x.log",
        ];
        let sets: &[&[&str]] = &[
            &["a"],
            &["a", "!a/b"],
            &["a", "!a/b", "a/b/c"],
            &["*.log", "**/*.log", "!a/x.log"],
            &["docs/**", "!docs/README.md"],
            &["*", "!docs", "docs/img"],
            &["**/c", "!**/d.txt"],
        ];
        for patterns in sets {
            let m = PatternMatcher::new(*patterns).unwrap();
            let full: Vec<String> = tree
                .iter()
                .filter(|p| m.matches_or_parent_matches(p))
                .map(|p| p.to_string())
                .collect();
            assert_eq!(walk_excluded(&m, &tree), full, "{patterns:?}");
        }
    }

    #[test]
    fn walker_skips_patterns_that_could_not_change_the_parent() {
        // At `d` the exception `!d` is skipped (nothing excluded yet), so
        // the walker never records that `d` matches it; `d/f` then stays
        // excluded, while the full rule finds the parent `d` and keeps it.
        // BuildKit's walker behaves the same way.
        let m = PatternMatcher::new(["d/f", "!d"]).unwrap();
        assert_eq!(walk_excluded(&m, &["d", "d/f"]), vec!["d/f".to_string()]);
        assert!(!m.matches_or_parent_matches("d/f"));
        // Info of the wrong length is ignored rather than trusted.
        let other = PatternMatcher::new(["x"]).unwrap();
        let (_, foreign) = other.matches_using_parent_results("x", &MatchInfo::default());
        let (hit, _) = m.matches_using_parent_results("d/f", &foreign);
        assert!(!hit);
    }
}
