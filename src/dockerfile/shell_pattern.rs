//! The shell patterns of `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`:
//! `*` and `?` wildcards plus `\`-escapes, matched with the exact semantics
//! BuildKit gets by translating them into a Go regular expression.
//!
//! BuildKit turns `*` into `.*` (or the lazy `.*?`) and `?` into `.`, so the
//! matching inherits three properties of Go's regexp package that a plain
//! glob matcher would not have: wildcards never match a newline (`.` does not
//! by default), the match chosen among several is the leftmost-first one
//! (the first stars take precedence, not the longest overall match), and the
//! replacement of `//` goes through `Regexp.ReplaceAllString`, which expands
//! `$0` / `${0}` to the matched text and `$$` to `$`. A pattern language of
//! literals, any-char and one kind of star needs none of the rest of a regex
//! engine, so a small Pike VM (linear time, no backtracking blow-up on
//! `*a*a*a…`) stands in for it instead of a dependency.

use super::shell::{is_go_digit, is_go_letter, ShellErrorKind};

/// Why a `#`/`%`/`/` pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A `\` not followed by `*`, `?`, `\`, `}` or `/`; `None` when the
    /// pattern ends with the `\`. Go prints the missing character as U+FFFD.
    #[error("invalid escape '\\{}'", .0.unwrap_or('\u{FFFD}'))]
    InvalidEscape(Option<char>),
}

/// One step of the compiled pattern program.
#[derive(Debug, Clone, Copy)]
enum Inst {
    /// Consume exactly this character, then go to the index.
    Char(char, usize),
    /// Consume any character but `\n`, then go to the index.
    AnyNotNewline(usize),
    /// Try the first index, then (with lower priority) the second.
    Split(usize, usize),
    Match,
}

/// A compiled shell pattern.
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    prog: Vec<Inst>,
    anchored: bool,
}

impl Pattern {
    /// Compiles `pattern`. `greedy` makes every `*` prefer the longest run
    /// (the `##`/`%%`/`/` forms), otherwise the shortest; `anchored` only
    /// allows matches that start at the beginning of the text.
    pub(super) fn compile(
        pattern: &str,
        greedy: bool,
        anchored: bool,
    ) -> Result<Pattern, PatternError> {
        // Go's text/scanner, which BuildKit reads the pattern with, drops a
        // byte-order mark at the very start of its input.
        let pattern = pattern.strip_prefix('\u{FEFF}').unwrap_or(pattern);
        let mut prog = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            let here = prog.len();
            match ch {
                '*' => {
                    // The split either enters the loop body (one more
                    // character) or leaves it; its order is the greediness.
                    let (body, exit) = (here + 1, here + 2);
                    prog.push(if greedy {
                        Inst::Split(body, exit)
                    } else {
                        Inst::Split(exit, body)
                    });
                    prog.push(Inst::AnyNotNewline(here));
                }
                '?' => prog.push(Inst::AnyNotNewline(here + 1)),
                '\\' => {
                    // Inside `${…}` the user must write `\}` and `\/` to keep
                    // those characters from ending the word; the backslash is
                    // not part of the pattern then.
                    if matches!(chars.peek(), Some('}' | '/')) {
                        continue;
                    }
                    match chars.next() {
                        Some(lit @ ('*' | '?' | '\\')) => prog.push(Inst::Char(lit, here + 1)),
                        other => return Err(PatternError::InvalidEscape(other)),
                    }
                }
                lit => prog.push(Inst::Char(lit, here + 1)),
            }
        }
        prog.push(Inst::Match);
        Ok(Pattern { prog, anchored })
    }

    /// The leftmost-first match in `text` that starts at or after byte
    /// offset `from` (a char boundary), as `(start, end)` byte offsets.
    pub(super) fn find_at(&self, text: &str, from: usize) -> Option<(usize, usize)> {
        let n = self.prog.len();
        let mut current = Threads::new(n);
        let mut next = Threads::new(n);
        let mut found = None;
        let mut pos = from;
        loop {
            if current.list.is_empty() && (found.is_some() || (self.anchored && pos != 0)) {
                break;
            }
            // A thread starting here ranks below every thread already
            // running, which started further left.
            if found.is_none() && (!self.anchored || pos == 0) {
                self.add(&mut current, 0, pos);
            }
            let ch = text.get(pos..).and_then(|rest| rest.chars().next());
            for &(pc, start) in &current.list {
                match self.prog[pc] {
                    Inst::Match => {
                        // Everything after this thread has lower priority.
                        found = Some((start, pos));
                        break;
                    }
                    Inst::Char(want, to) => {
                        if ch == Some(want) {
                            self.add(&mut next, to, start);
                        }
                    }
                    Inst::AnyNotNewline(to) => {
                        if ch.is_some_and(|c| c != '\n') {
                            self.add(&mut next, to, start);
                        }
                    }
                    Inst::Split(..) => {}
                }
            }
            let Some(ch) = ch else { break };
            pos += ch.len_utf8();
            std::mem::swap(&mut current, &mut next);
            next.clear();
        }
        found
    }

    /// Adds the thread at `pc` and everything reachable from it without
    /// consuming input, in priority order. An explicit stack keeps a long run
    /// of `*`s from recursing deeply.
    fn add(&self, threads: &mut Threads, pc: usize, start: usize) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if !threads.mark(pc) {
                continue;
            }
            match self.prog[pc] {
                Inst::Split(first, second) => {
                    stack.push(second);
                    stack.push(first);
                }
                _ => threads.list.push((pc, start)),
            }
        }
    }

    /// Every non-overlapping match replaced by `template`, stepping over
    /// empty matches exactly as Go's `Regexp.ReplaceAllString` does.
    pub(super) fn replace_all(&self, text: &str, template: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last_end = 0;
        let mut search = 0;
        while search <= text.len() {
            let Some((start, end)) = self.find_at(text, search) else {
                break;
            };
            out.push_str(&text[last_end..start]);
            // An empty match right after a previous match is not replaced,
            // or `x*`-like patterns would replace twice.
            if end > last_end || start == 0 {
                expand_template(&mut out, template, &text[start..end]);
            }
            last_end = end;
            let width = text[search..].chars().next().map_or(0, char::len_utf8);
            if search + width > end {
                search += width;
            } else if search + 1 > end {
                // Only at the end of the text, where there is no next char.
                search += 1;
            } else {
                search = end;
            }
        }
        out.push_str(&text[last_end..]);
        out
    }
}

/// The ordered thread list of one text position, with a set of the program
/// counters already visited so each is added once (the first time wins,
/// which is what gives leftmost-first priority).
struct Threads {
    list: Vec<(usize, usize)>,
    seen: Vec<bool>,
}

impl Threads {
    fn new(n: usize) -> Self {
        Threads {
            list: Vec::new(),
            seen: vec![false; n],
        }
    }

    /// Marks `pc` visited; false if it already was.
    fn mark(&mut self, pc: usize) -> bool {
        !std::mem::replace(&mut self.seen[pc], true)
    }

    fn clear(&mut self) {
        self.list.clear();
        self.seen.fill(false);
    }
}

/// Appends `template` with Go's `Regexp.Expand` rules. The pattern has no
/// groups, so the only reference that yields text is group 0 (`$0`,
/// `${0}`), the whole match; any other well-formed `$name` / `${name}`
/// expands to nothing, `$$` is a `$`, and a malformed `$` stays literal.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_reference(rest) {
            Some((name, after)) => {
                // Go parses the name as a number without leading zeros;
                // only "0" can name an existing group.
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Splits a leading `name` or `{name}` (letters, digits, `_`) off `s`.
fn template_reference(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(is_go_letter(c) || is_go_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        return after.strip_prefix('}').map(|after| (name, after));
    }
    Some((name, after))
}

/// `value` without its shortest (or, `greedy`, longest) prefix matching
/// `pattern`.
pub(super) fn trim_prefix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, ShellErrorKind> {
    let re = Pattern::compile(pattern, greedy, true).map_err(|reason| {
        ShellErrorKind::InvalidPattern {
            pattern: pattern.to_string(),
            reason,
        }
    })?;
    Ok(match re.find_at(value, 0) {
        Some((_, end)) => value[end..].to_string(),
        None => value.to_string(),
    })
}

/// `value` without its shortest (or longest) suffix matching `pattern`.
///
/// A leftmost search cannot find the shortest rightmost match, so both the
/// pattern and the value are reversed and the prefix is trimmed instead.
/// On a bad pattern the error therefore names the reversed pattern, as
/// BuildKit's does.
pub(super) fn trim_suffix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, ShellErrorKind> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` escape pair in order, so `a\*c`
/// becomes `c\*a`. A lone trailing `\` is reversed like any character.
pub(super) fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let n = chars.len();
    let mut out = vec!['\0'; n];
    let mut i = 0;
    while i < n {
        let at = n - 1 - i;
        if chars[i] == '\\' && i != n - 1 {
            // i <= n - 2, so at >= 1.
            out[at - 1] = '\\';
            out[at] = chars[i + 1];
            i += 2;
        } else {
            out[at] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference semantics, stated directly: try the alternatives in
    /// priority order (greedy stars longest first, lazy shortest first) and
    /// take the first that completes. Exponential, so only for tiny inputs.
    fn reference_find(
        pattern: &str,
        greedy: bool,
        anchored: bool,
        text: &str,
    ) -> Option<(usize, usize)> {
        #[derive(Clone, Copy)]
        enum Tok {
            Lit(char),
            Any,
            Star,
        }
        let mut toks = Vec::new();
        let mut it = pattern.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => {
                    if matches!(it.peek(), Some('}' | '/')) {
                        continue;
                    }
                    toks.push(Tok::Lit(it.next()?));
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let offset = |i: usize| chars.get(i).map_or(text.len(), |&(o, _)| o);
        fn go(toks: &[Tok], chars: &[(usize, char)], i: usize, greedy: bool) -> Option<usize> {
            let Some((&tok, rest)) = toks.split_first() else {
                return Some(i);
            };
            match tok {
                Tok::Lit(c) => (chars.get(i)?.1 == c).then_some(())?,
                Tok::Any => (chars.get(i)?.1 != '\n').then_some(())?,
                Tok::Star => {
                    let run = chars[i..].iter().take_while(|&&(_, c)| c != '\n').count();
                    let mut lens: Vec<usize> = (0..=run).collect();
                    if greedy {
                        lens.reverse();
                    }
                    return lens
                        .into_iter()
                        .find_map(|l| go(rest, chars, i + l, greedy));
                }
            }
            go(rest, chars, i + 1, greedy)
        }
        let last_start = if anchored { 0 } else { chars.len() };
        (0..=last_start).find_map(|s| go(&toks, &chars, s, greedy).map(|e| (offset(s), offset(e))))
    }

    /// Every pattern and text over small alphabets: the VM must agree with
    /// the reference on which match it picks.
    #[test]
    fn vm_matches_reference_semantics() {
        let pattern_alphabet = ['a', 'b', '*', '?', '\n'];
        let text_alphabet = ['a', 'b', '\n'];
        let strings = |alphabet: &[char], max: usize| {
            let mut all = vec![String::new()];
            let mut frontier = vec![String::new()];
            for _ in 0..max {
                frontier = frontier
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |&c| format!("{s}{c}")))
                    .collect();
                all.extend(frontier.iter().cloned());
            }
            all
        };
        let patterns = strings(&pattern_alphabet, 4);
        let texts = strings(&text_alphabet, 4);
        let mut checked = 0;
        for p in &patterns {
            for greedy in [true, false] {
                for anchored in [true, false] {
                    let re = Pattern::compile(p, greedy, anchored).unwrap();
                    for t in &texts {
                        assert_eq!(
                            re.find_at(t, 0),
                            reference_find(p, greedy, anchored, t),
                            "pattern {p:?} greedy={greedy} anchored={anchored} text {t:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100_000, "only {checked} cases");
    }

    #[test]
    fn lazy_and_greedy_stars() {
        let re = Pattern::compile("*a?", true, true).unwrap();
        assert_eq!(re.find_at("xaxab", 0), Some((0, 5)));
        let re = Pattern::compile("*a?", false, true).unwrap();
        assert_eq!(re.find_at("xaxab", 0), Some((0, 3)));
        // Leftmost start first, then the shortest from there.
        let re = Pattern::compile("a*", false, false).unwrap();
        assert_eq!(re.find_at("baaa", 0), Some((1, 2)));
        assert_eq!(re.find_at("baaa", 2), Some((2, 3)));
    }

    #[test]
    fn wildcards_do_not_match_newlines() {
        assert_eq!(trim_prefix("*", "ab\ncd", true).unwrap(), "\ncd");
        assert_eq!(trim_prefix("?", "\nx", true).unwrap(), "\nx");
        assert_eq!(trim_prefix("a\nb", "a\nbc", false).unwrap(), "c");
    }

    #[test]
    fn escapes() {
        // The regex translations lex_test.go pins, checked by behaviour.
        assert_eq!(trim_prefix("\\*", "*x", true).unwrap(), "x");
        assert_eq!(
            trim_prefix("(()[]{\\}^$.\\*\\?|\\\\", "(()[]{}^$.*?|\\x", true).unwrap(),
            "x"
        );
        assert_eq!(trim_prefix("a\\/b", "a/bc", true).unwrap(), "c");
        for bad in ["\\", "\\x", "\\\\\\"] {
            assert!(Pattern::compile(bad, true, true).is_err(), "{bad:?}");
        }
        assert_eq!(
            Pattern::compile("\\x", true, true).unwrap_err().to_string(),
            "invalid escape '\\x'"
        );
        assert_eq!(
            Pattern::compile("a\\", true, true).unwrap_err().to_string(),
            "invalid escape '\\\u{FFFD}'"
        );
    }

    #[test]
    fn leading_bom_is_dropped_like_go_scanner() {
        assert_eq!(trim_prefix("\u{FEFF}a", "ab", true).unwrap(), "b");
        assert_eq!(trim_prefix("a\u{FEFF}", "a\u{FEFF}b", true).unwrap(), "b");
    }

    #[test]
    fn reverse_pattern_keeps_escape_pairs() {
        for (pattern, expected) in [
            ("a\\*c", "c\\*a"),
            ("\\\\\\ab", "b\\a\\\\"),
            ("ab\\", "\\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            ("\\\\b", "b\\\\"),
            ("", ""),
        ] {
            assert_eq!(reverse_pattern(pattern), expected, "{pattern:?}");
        }
    }

    #[test]
    fn trim_suffix_reports_reversed_pattern() {
        assert_eq!(trim_suffix("\\**", "xx**", true).unwrap(), "xx");
        assert_eq!(
            trim_suffix("ab\\", "x", false).unwrap_err(),
            ShellErrorKind::InvalidPattern {
                pattern: "\\ba".into(),
                reason: PatternError::InvalidEscape(Some('b')),
            }
        );
    }

    #[test]
    fn replace_all_follows_go_rules() {
        let re = |p| Pattern::compile(p, true, false).unwrap();
        assert_eq!(re("o").replace_all("foo", "0"), "f00");
        // Empty pattern: a replacement before every character and at the end.
        assert_eq!(re("").replace_all("ab", "-"), "-a-b-");
        assert_eq!(re("").replace_all("", "-"), "-");
        // An empty match right after a real one is not replaced again.
        assert_eq!(re("*").replace_all("ab\ncd", "-"), "-\n-");
        // Template expansion: $0 is the match, $$ a dollar, others empty.
        assert_eq!(
            re("o").replace_all("fo", "<$0|${0}|$1|$$|$x|${|$>"),
            "f<o|o||$||${|$>"
        );
        assert_eq!(re("o").replace_all("fo", "$00${0x}$"), "f$");
        assert_eq!(re("é").replace_all("aéb", "[$0]"), "a[é]b");
    }
}
