//! A small regular-expression engine for the one dialect Docker's pattern
//! matcher produces: it rewrites a wildcard pattern into text for Go's
//! `regexp` package (RE2 syntax with Perl extensions, `^`/`$` anchoring the
//! whole text, negated classes matching a newline, `.` not matching one) and
//! matches paths with that. Whatever the rewrite lets through — a user's
//! `[`…`]` wrapping a rewritten `*`, `\d`, `\b`, octal and hex escapes,
//! POSIX `[:alpha:]` classes — therefore has its RE2 meaning in Docker, and
//! has it here too.
//!
//! Why not the `regex` crate: its class syntax is not RE2's (`[[` opens a
//! nested class, `&&`/`--` are set operators), so exactly the odd patterns
//! whose meaning we must reproduce would parse differently or not at all.
//!
//! Matching is a Pike VM over runes (invalid UTF-8 bytes read as U+FFFD one
//! byte at a time, as Go does), so it is linear in the path length whatever
//! the pattern; no backtracking blow-up on `*a*a*a*…`.

use std::fmt;

/// Why a translated pattern is not a regular expression Go would compile,
/// or uses a part of RE2 that bk does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegexProblem {
    /// `\` followed by something RE2 gives no meaning, e.g. `\y` or `\8`.
    InvalidEscape(String),
    /// A class range running backwards, e.g. `[z-a]`.
    InvalidCharRange(String),
    /// `[:name:]` with a name POSIX does not define.
    UnknownPosixClass(String),
    /// A class that never closes once `*`/`?` have been rewritten.
    MissingBracket,
    /// `*`, `+` or `?` with nothing before it to repeat.
    MissingRepeatArgument,
    /// Two repetition operators in a row, e.g. `a**`.
    NestedRepeat,
    /// A `{n,m}` count above 1000 or with `n > m`.
    InvalidRepeatSize(String),
    /// The compiled program would exceed Go's limit (about 3.3 million
    /// instructions), e.g. many `?{1000}` in one pattern.
    TooLarge,
    /// A `(` without `)` or the reverse.
    UnbalancedParen,
    /// `\p`/`\P` Unicode classes: Go has the Unicode tables, bk does not.
    UnicodeClass(String),
    /// A construct the translation can never emit (flags groups); kept as
    /// an error rather than guessed at.
    UnsupportedGroup,
}

impl fmt::Display for RegexProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegexProblem::InvalidEscape(s) => write!(f, "invalid escape sequence `{s}`"),
            RegexProblem::InvalidCharRange(s) => write!(f, "invalid character class range `{s}`"),
            RegexProblem::UnknownPosixClass(s) => write!(f, "unknown character class `{s}`"),
            RegexProblem::MissingBracket => write!(f, "missing closing `]`"),
            RegexProblem::MissingRepeatArgument => {
                write!(f, "missing argument to repetition operator")
            }
            RegexProblem::NestedRepeat => write!(f, "invalid nested repetition operator"),
            RegexProblem::InvalidRepeatSize(s) => write!(f, "invalid repeat count `{s}`"),
            RegexProblem::TooLarge => write!(f, "expression too large"),
            RegexProblem::UnbalancedParen => write!(f, "unbalanced parenthesis"),
            RegexProblem::UnicodeClass(s) => write!(
                f,
                "Unicode class escape `{s}` is not supported (Docker gives it Go's Unicode tables)"
            ),
            RegexProblem::UnsupportedGroup => write!(f, "group flags are not supported"),
        }
    }
}

/// Decodes one rune the way Go does: a valid UTF-8 sequence gives its
/// scalar value, anything else gives U+FFFD and consumes one byte.
/// Returns `(rune, width)`; `width` is 0 only for empty input.
pub(crate) fn decode_rune(bytes: &[u8]) -> (u32, usize) {
    let Some(&first) = bytes.first() else {
        return (0xFFFD, 0);
    };
    let len = match first {
        0x00..=0x7F => return (u32::from(first), 1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (0xFFFD, 1),
    };
    match bytes.get(..len).map(std::str::from_utf8) {
        Some(Ok(s)) => match s.chars().next() {
            Some(c) => (u32::from(c), len),
            None => (0xFFFD, 1),
        },
        _ => (0xFFFD, 1),
    }
}

/// Half-open set of runes as sorted, non-overlapping inclusive ranges.
type Ranges = Vec<(u32, u32)>;

const MAX_RUNE: u32 = 0x10FFFF;

fn normalize(mut ranges: Ranges) -> Ranges {
    ranges.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn complement(ranges: &[(u32, u32)]) -> Ranges {
    let mut out = Vec::new();
    let mut next = 0u32;
    for &(lo, hi) in &normalize(ranges.to_vec()) {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi.saturating_add(1);
    }
    if next <= MAX_RUNE {
        out.push((next, MAX_RUNE));
    }
    out
}

/// RE2's ASCII-only Perl classes (`\d`, `\s`, `\w` and their negations).
fn perl_class(letter: char) -> Option<Ranges> {
    let base: &[(u32, u32)] = match letter.to_ascii_lowercase() {
        'd' => &[(0x30, 0x39)],
        's' => &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
        'w' => &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
        _ => return None,
    };
    Some(if letter.is_ascii_uppercase() {
        complement(base)
    } else {
        base.to_vec()
    })
}

/// The POSIX classes RE2 knows inside brackets, `[:^name:]` negating.
fn posix_class(name: &str) -> Option<Ranges> {
    let (negated, bare) = match name.strip_prefix("[:^") {
        Some(rest) => (true, rest),
        None => (false, name.strip_prefix("[:")?),
    };
    let base: &[(u32, u32)] = match bare.strip_suffix(":]")? {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
        "alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
        "ascii" => &[(0x00, 0x7F)],
        "blank" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
        "digit" => &[(0x30, 0x39)],
        "graph" => &[(0x21, 0x7E)],
        "lower" => &[(0x61, 0x7A)],
        "print" => &[(0x20, 0x7E)],
        "punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
        "space" => &[(0x09, 0x0D), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5A)],
        "word" => &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    };
    Some(if negated {
        complement(base)
    } else {
        base.to_vec()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assertion {
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

#[derive(Debug, Clone)]
enum Node {
    Literal(u32),
    Class(Ranges),
    AnyNotNewline,
    Assert(Assertion),
    Concat(Vec<Node>),
    Alternate(Vec<Node>),
    Star(Box<Node>),
    Plus(Box<Node>),
    Quest(Box<Node>),
    /// `{min,max}`; `max` of `None` is unbounded.
    Repeat {
        sub: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
    /// A parenthesised group; kept only because it counts towards Go's
    /// size limit.
    Group(Box<Node>),
}

/// Go's cap on a compiled expression: 128 MiB of 40-byte instructions.
const MAX_SIZE: u64 = (128 << 20) / 40;

/// RE2's largest `{n,m}` count.
const MAX_REPEAT: u32 = 1000;

struct Parser<'a> {
    src: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.src.get(self.pos + offset).copied()
    }

    fn text(&self, from: usize) -> String {
        self.src[from..self.pos.min(self.src.len())]
            .iter()
            .collect()
    }

    /// Alternation of concatenations, up to an unmatched `)` or the end.
    fn parse_alternation(&mut self, depth: usize) -> Result<Node, RegexProblem> {
        let mut branches = vec![self.parse_concat(depth)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.parse_concat(depth)?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Concat(Vec::new()))
        } else {
            Node::Alternate(branches)
        })
    }

    fn parse_concat(&mut self, depth: usize) -> Result<Node, RegexProblem> {
        let mut items: Vec<Node> = Vec::new();
        // RE2 in Perl mode rejects a repetition operator straight after
        // another one (`a**`), lazy `?` suffix included.
        let mut after_repeat = false;
        while let Some(c) = self.peek() {
            let was_repeat = after_repeat;
            after_repeat = false;
            match c {
                '|' => break,
                ')' => {
                    if depth == 0 {
                        return Err(RegexProblem::UnbalancedParen);
                    }
                    break;
                }
                '(' => {
                    self.pos += 1;
                    if self.peek() == Some('?') {
                        return Err(RegexProblem::UnsupportedGroup);
                    }
                    let inner = self.parse_alternation(depth + 1)?;
                    if self.peek() != Some(')') {
                        return Err(RegexProblem::UnbalancedParen);
                    }
                    self.pos += 1;
                    items.push(Node::Group(Box::new(inner)));
                }
                '*' | '+' | '?' => {
                    self.pos += 1;
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.repeat(&mut items, min, max, was_repeat)?;
                    after_repeat = true;
                }
                '{' => match self.counted_repeat()? {
                    Some((min, max)) => {
                        self.repeat(&mut items, min, max, was_repeat)?;
                        after_repeat = true;
                    }
                    // Not a well-formed count: RE2 reads a literal `{`.
                    None => {
                        self.pos += 1;
                        items.push(Node::Literal(u32::from('{')));
                    }
                },
                '[' => items.push(self.parse_class()?),
                '.' => {
                    self.pos += 1;
                    items.push(Node::AnyNotNewline);
                }
                '^' => {
                    self.pos += 1;
                    items.push(Node::Assert(Assertion::BeginText));
                }
                '$' => {
                    self.pos += 1;
                    items.push(Node::Assert(Assertion::EndText));
                }
                '\\' => self.parse_escape_atom(&mut items)?,
                other => {
                    self.pos += 1;
                    items.push(Node::Literal(u32::from(other)));
                }
            }
        }
        Ok(Node::Concat(items))
    }

    /// Applies a repetition operator (already consumed) to the last item.
    fn repeat(
        &mut self,
        items: &mut Vec<Node>,
        min: u32,
        max: Option<u32>,
        was_repeat: bool,
    ) -> Result<(), RegexProblem> {
        if self.peek() == Some('?') {
            // Lazy form: same set of matches, so same answer.
            self.pos += 1;
        }
        // RE2 in Perl mode rejects stacked operators (`a**`, `a*{2}`).
        if was_repeat {
            return Err(RegexProblem::NestedRepeat);
        }
        let sub = Box::new(items.pop().ok_or(RegexProblem::MissingRepeatArgument)?);
        items.push(match (min, max) {
            (0, None) => Node::Star(sub),
            (1, None) => Node::Plus(sub),
            (0, Some(1)) => Node::Quest(sub),
            _ => Node::Repeat { sub, min, max },
        });
        Ok(())
    }

    /// At `{`: `{n}`, `{n,}` or `{n,m}` with decimal counts (no leading
    /// zeros), consumed and returned; `None`, consuming nothing, for any
    /// other text, which RE2 then reads literally.
    fn counted_repeat(&mut self) -> Result<Option<(u32, Option<u32>)>, RegexProblem> {
        let start = self.pos;
        let mut pos = self.pos + 1;
        let number = |pos: &mut usize| -> Option<u64> {
            let digits: String = self.src[*pos..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
                return None;
            }
            *pos += digits.len();
            // Saturate: anything this large is rejected below anyway.
            Some(digits.parse::<u64>().unwrap_or(u64::MAX))
        };
        let Some(min) = number(&mut pos) else {
            return Ok(None);
        };
        let max = match self.src.get(pos) {
            Some(',') => {
                pos += 1;
                if self.src.get(pos) == Some(&'}') {
                    None
                } else {
                    let Some(max) = number(&mut pos) else {
                        return Ok(None);
                    };
                    Some(max)
                }
            }
            _ => Some(min),
        };
        if self.src.get(pos) != Some(&'}') {
            return Ok(None);
        }
        self.pos = pos + 1;
        let limit = u64::from(MAX_REPEAT);
        if min > limit || max.is_some_and(|m| m > limit || m < min) {
            return Err(RegexProblem::InvalidRepeatSize(self.text(start)));
        }
        // Both are at most MAX_REPEAT here.
        let narrow = |v: u64| u32::try_from(v).unwrap_or(MAX_REPEAT);
        Ok(Some((narrow(min), max.map(narrow))))
    }

    /// A backslash sequence outside brackets; pushes its node(s).
    fn parse_escape_atom(&mut self, items: &mut Vec<Node>) -> Result<(), RegexProblem> {
        let start = self.pos;
        let Some(letter) = self.peek_at(1) else {
            // A lone trailing `\`: RE2 rejects it.
            self.pos += 1;
            return Err(RegexProblem::InvalidEscape("\\".into()));
        };
        let assertion = match letter {
            'A' => Some(Assertion::BeginText),
            'z' => Some(Assertion::EndText),
            'b' => Some(Assertion::WordBoundary),
            'B' => Some(Assertion::NotWordBoundary),
            _ => None,
        };
        if let Some(a) = assertion {
            self.pos += 2;
            items.push(Node::Assert(a));
            return Ok(());
        }
        match letter {
            'Q' => {
                // Everything up to `\E` (or the end, the appended `$`
                // included) is literal text.
                self.pos += 2;
                while let Some(c) = self.peek() {
                    if c == '\\' && self.peek_at(1) == Some('E') {
                        self.pos += 2;
                        break;
                    }
                    items.push(Node::Literal(u32::from(c)));
                    self.pos += 1;
                }
                Ok(())
            }
            'C' => {
                self.pos += 2;
                Err(RegexProblem::InvalidEscape(self.text(start)))
            }
            'p' | 'P' => {
                self.pos += 2;
                if self.peek().is_some() {
                    self.pos += 1;
                }
                Err(RegexProblem::UnicodeClass(self.text(start)))
            }
            _ => {
                if let Some(class) = perl_class(letter) {
                    self.pos += 2;
                    items.push(Node::Class(class));
                    return Ok(());
                }
                let r = self.parse_escape_rune()?;
                items.push(Node::Literal(r));
                Ok(())
            }
        }
    }

    /// A single-rune escape at `\`: punctuation, octal, hex or C escape.
    fn parse_escape_rune(&mut self) -> Result<u32, RegexProblem> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(RegexProblem::InvalidEscape("\\".into()));
        };
        self.pos += 1;
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            return Ok(u32::from(c));
        }
        let is_octal = |c: Option<char>| matches!(c, Some('0'..='7'));
        match c {
            // `\1`–`\7` alone would be a backreference, which RE2 lacks;
            // followed by another octal digit it is an octal escape.
            '0'..='7' if c == '0' || is_octal(self.peek()) => {
                let mut value = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ '0'..='7') => {
                            value = value * 8 + (d as u32 - '0' as u32);
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                Ok(value)
            }
            'x' => self.parse_hex(start),
            'a' => Ok(0x07),
            'f' => Ok(0x0C),
            'n' => Ok(0x0A),
            'r' => Ok(0x0D),
            't' => Ok(0x09),
            'v' => Ok(0x0B),
            _ => Err(RegexProblem::InvalidEscape(self.text(start))),
        }
    }

    fn parse_hex(&mut self, start: usize) -> Result<u32, RegexProblem> {
        let invalid = |p: &Self| RegexProblem::InvalidEscape(p.text(start));
        let Some(first) = self.peek() else {
            return Err(invalid(self));
        };
        self.pos += 1;
        if first == '{' {
            let mut value: u32 = 0;
            let mut digits = 0;
            loop {
                let Some(c) = self.peek() else {
                    return Err(invalid(self));
                };
                self.pos += 1;
                if c == '}' {
                    break;
                }
                let d = c.to_digit(16).ok_or_else(|| invalid(self))?;
                value = value * 16 + d;
                if value > MAX_RUNE {
                    return Err(invalid(self));
                }
                digits += 1;
            }
            return if digits == 0 {
                Err(invalid(self))
            } else {
                Ok(value)
            };
        }
        let second = self.peek();
        if second.is_some() {
            self.pos += 1;
        }
        match (first.to_digit(16), second.and_then(|c| c.to_digit(16))) {
            (Some(hi), Some(lo)) => Ok(hi * 16 + lo),
            _ => Err(invalid(self)),
        }
    }

    /// A bracketed class at `[`, RE2 rules: `]` first is literal, `-` is
    /// literal where it cannot form a range, `[:name:]` POSIX classes and
    /// `\d`-style escapes may appear inside.
    fn parse_class(&mut self) -> Result<Node, RegexProblem> {
        self.pos += 1;
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut ranges: Ranges = Vec::new();
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err(RegexProblem::MissingBracket),
                Some(']') if !first => break,
                _ => {}
            }
            first = false;
            if self.peek() == Some('[') && self.peek_at(1) == Some(':') {
                // RE2 looks for the nearest `:]` anywhere ahead; without one
                // the `[` is an ordinary member.
                let rest = &self.src[self.pos + 2..];
                if let Some(i) = rest.windows(2).position(|w| w == [':', ']']) {
                    let end = self.pos + 2 + i + 2;
                    let name: String = self.src[self.pos..end].iter().collect();
                    let class = posix_class(&name).ok_or(RegexProblem::UnknownPosixClass(name))?;
                    ranges.extend(class);
                    self.pos = end;
                    continue;
                }
            }
            if self.peek() == Some('\\') {
                match self.peek_at(1) {
                    Some(p @ ('p' | 'P')) => {
                        let mut s = format!("\\{p}");
                        if let Some(n) = self.peek_at(2) {
                            s.push(n);
                        }
                        return Err(RegexProblem::UnicodeClass(s));
                    }
                    Some(letter) => {
                        if let Some(class) = perl_class(letter) {
                            self.pos += 2;
                            ranges.extend(class);
                            continue;
                        }
                    }
                    None => {}
                }
            }
            let start = self.pos;
            let lo = self.parse_class_rune()?;
            let mut hi = lo;
            if self.peek() == Some('-') && matches!(self.peek_at(1), Some(c) if c != ']') {
                self.pos += 1;
                hi = self.parse_class_rune()?;
                if hi < lo {
                    return Err(RegexProblem::InvalidCharRange(self.text(start)));
                }
            }
            ranges.push((lo, hi));
        }
        self.pos += 1;
        let ranges = if negated {
            complement(&ranges)
        } else {
            normalize(ranges)
        };
        Ok(Node::Class(ranges))
    }

    fn parse_class_rune(&mut self) -> Result<u32, RegexProblem> {
        match self.peek() {
            None => Err(RegexProblem::MissingBracket),
            Some('\\') => self.parse_escape_rune(),
            Some(c) => {
                self.pos += 1;
                Ok(u32::from(c))
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Inst {
    Rune(u32),
    Class(Ranges),
    AnyNotNewline,
    Assert(Assertion),
    Split(usize, usize),
    Jump(usize),
    Match,
}

/// A compiled translated pattern. Like Go's `MatchString`, a match may
/// start anywhere unless the expression itself anchors it (`^`).
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    prog: Vec<Inst>,
}

impl Regex {
    pub(crate) fn new(src: &[char]) -> Result<Regex, RegexProblem> {
        let mut parser = Parser { src, pos: 0 };
        let node = parser.parse_alternation(0)?;
        if parser.pos < src.len() {
            // Only an unmatched `)` stops the top level early.
            return Err(RegexProblem::UnbalancedParen);
        }
        if size(&node) > MAX_SIZE {
            return Err(RegexProblem::TooLarge);
        }
        let mut prog = Vec::new();
        compile(&node, &mut prog);
        prog.push(Inst::Match);
        Ok(Regex { prog })
    }

    pub(crate) fn is_match(&self, text: &[u8]) -> bool {
        let mut runes = Vec::with_capacity(text.len());
        let mut rest = text;
        while !rest.is_empty() {
            let (r, width) = decode_rune(rest);
            runes.push(r);
            rest = &rest[width..];
        }
        let n = self.prog.len();
        // `seen[pc] == generation` marks a pc already queued at this step.
        let mut seen = vec![usize::MAX; n];
        let mut pending: Vec<usize> = Vec::new();
        let mut threads: Vec<usize> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        for pos in 0..=runes.len() {
            let prev = pos.checked_sub(1).and_then(|i| runes.get(i)).copied();
            let next = runes.get(pos).copied();
            threads.clear();
            // Unanchored search: a new attempt starts at every position.
            stack.clear();
            stack.append(&mut pending);
            stack.push(0);
            while let Some(pc) = stack.pop() {
                if seen[pc] == pos {
                    continue;
                }
                seen[pc] = pos;
                match &self.prog[pc] {
                    Inst::Match => return true,
                    Inst::Jump(to) => stack.push(*to),
                    Inst::Split(a, b) => {
                        stack.push(*b);
                        stack.push(*a);
                    }
                    Inst::Assert(a) => {
                        if assertion_holds(*a, prev, next, pos, runes.len()) {
                            stack.push(pc + 1);
                        }
                    }
                    Inst::Rune(_) | Inst::Class(_) | Inst::AnyNotNewline => threads.push(pc),
                }
            }
            let Some(c) = next else { break };
            for &pc in &threads {
                let accepts = match &self.prog[pc] {
                    Inst::Rune(r) => *r == c,
                    Inst::Class(ranges) => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi),
                    Inst::AnyNotNewline => c != u32::from('\n'),
                    _ => false,
                };
                if accepts {
                    pending.push(pc + 1);
                }
            }
        }
        false
    }
}

fn is_word(r: Option<u32>) -> bool {
    r.and_then(char::from_u32)
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn assertion_holds(
    a: Assertion,
    prev: Option<u32>,
    next: Option<u32>,
    pos: usize,
    len: usize,
) -> bool {
    match a {
        Assertion::BeginText => pos == 0,
        Assertion::EndText => pos == len,
        Assertion::WordBoundary => is_word(prev) != is_word(next),
        Assertion::NotWordBoundary => is_word(prev) == is_word(next),
    }
}

/// Go's estimate of a parse tree's compiled size, which it holds to
/// [`MAX_SIZE`].
fn size(node: &Node) -> u64 {
    let n = match node {
        Node::Literal(_) | Node::Class(_) | Node::AnyNotNewline | Node::Assert(_) => 1,
        Node::Group(sub) | Node::Star(sub) => 2 + size(sub),
        Node::Plus(sub) | Node::Quest(sub) => 1 + size(sub),
        Node::Concat(items) => items.iter().map(size).fold(0, u64::saturating_add),
        Node::Alternate(branches) => branches
            .iter()
            .map(size)
            .fold(0, u64::saturating_add)
            .saturating_add(branches.len().saturating_sub(1) as u64),
        Node::Repeat { sub, min, max } => {
            let sub = size(sub);
            match max {
                None if *min == 0 => 2 + sub,
                None => 1 + u64::from(*min) * sub,
                Some(max) => u64::from(*max) * sub + u64::from(max - min),
            }
        }
    };
    n.max(1)
}

fn compile(node: &Node, prog: &mut Vec<Inst>) {
    match node {
        Node::Group(sub) => compile(sub, prog),
        Node::Repeat { sub, min, max } => {
            for _ in 0..*min {
                compile(sub, prog);
            }
            match max {
                None => compile(&Node::Star(sub.clone()), prog),
                Some(max) => {
                    for _ in *min..*max {
                        compile(&Node::Quest(sub.clone()), prog);
                    }
                }
            }
        }
        Node::Literal(r) => prog.push(Inst::Rune(*r)),
        Node::Class(ranges) => prog.push(Inst::Class(ranges.clone())),
        Node::AnyNotNewline => prog.push(Inst::AnyNotNewline),
        Node::Assert(a) => prog.push(Inst::Assert(*a)),
        Node::Concat(items) => {
            for item in items {
                compile(item, prog);
            }
        }
        Node::Alternate(branches) => {
            // split → branch, jump end; split → branch, jump end; … last
            let mut jumps = Vec::new();
            for (i, branch) in branches.iter().enumerate() {
                if i + 1 < branches.len() {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    compile(branch, prog);
                    jumps.push(prog.len());
                    prog.push(Inst::Jump(0));
                    let after = prog.len();
                    prog[split] = Inst::Split(split + 1, after);
                } else {
                    compile(branch, prog);
                }
            }
            let end = prog.len();
            for j in jumps {
                prog[j] = Inst::Jump(end);
            }
        }
        Node::Star(sub) => {
            let split = prog.len();
            prog.push(Inst::Split(0, 0));
            compile(sub, prog);
            prog.push(Inst::Jump(split));
            let after = prog.len();
            prog[split] = Inst::Split(split + 1, after);
        }
        Node::Plus(sub) => {
            let start = prog.len();
            compile(sub, prog);
            let after = prog.len() + 1;
            prog.push(Inst::Split(start, after));
        }
        Node::Quest(sub) => {
            let split = prog.len();
            prog.push(Inst::Split(0, 0));
            compile(sub, prog);
            let after = prog.len();
            prog[split] = Inst::Split(split + 1, after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(src: &str) -> Regex {
        let chars: Vec<char> = src.chars().collect();
        Regex::new(&chars).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn err(src: &str) -> RegexProblem {
        let chars: Vec<char> = src.chars().collect();
        Regex::new(&chars).expect_err(src)
    }

    #[test]
    fn anchors_and_literals() {
        assert!(re("^abc$").is_match(b"abc"));
        assert!(!re("^abc$").is_match(b"abcd"));
        assert!(!re("^abc$").is_match(b"xabc"));
        // Unanchored search, like Go's MatchString.
        assert!(re("bc").is_match(b"abcd"));
        assert!(re("^a\\$").is_match(b"a$x"));
    }

    #[test]
    fn classes_follow_re2() {
        assert!(re("^[^/]*$").is_match(b"abc"));
        assert!(!re("^[^/]*$").is_match(b"a/c"));
        // Negated classes match a newline, `.` does not.
        assert!(re("^[^/]$").is_match(b"\n"));
        assert!(!re("^.$").is_match(b"\n"));
        // `]` first is literal; `-` at the end is literal.
        assert!(re("^[]a]$").is_match(b"]"));
        assert!(re("^[a-]$").is_match(b"-"));
        // `[[^/]` is one class of `[`, `^`, `/`.
        let r = re("^[[^/]*]$");
        assert!(r.is_match(b"]"));
        assert!(r.is_match(b"[^/]"));
        assert!(!r.is_match(b"a]"));
        assert!(re("^[[:alpha:]]$").is_match(b"q"));
        assert!(!re("^[[:alpha:]]$").is_match(b"1"));
        assert!(re("^[[:^alpha:]]$").is_match(b"1"));
        assert!(re("^[\\d]$").is_match(b"7"));
        assert!(re("^[\\]]$").is_match(b"]"));
    }

    #[test]
    fn escapes_follow_re2() {
        assert!(re("^\\d$").is_match(b"4"));
        assert!(!re("^\\d$").is_match(b"d"));
        assert!(re("^\\D$").is_match(b"d"));
        assert!(re("^\\w\\s$").is_match(b"_ "));
        assert!(re("^\\101$").is_match(b"A"));
        assert!(re("^\\0$").is_match(b"\0"));
        assert!(re("^\\x41$").is_match(b"A"));
        assert!(re("^\\x{263a}$").is_match("☺".as_bytes()));
        assert!(re("^\\t$").is_match(b"\t"));
        assert!(re("^a\\b$").is_match(b"a"));
        assert!(!re("^a\\bb$").is_match(b"ab"));
        assert!(re("^a\\Bb$").is_match(b"ab"));
        assert!(re("^\\Qa*$").is_match(b"a*$"));
        assert!(re("^\\Qa*\\E$").is_match(b"a*"));
        assert!(re("\\Aa\\z").is_match(b"a"));
    }

    #[test]
    fn groups_and_repeats() {
        let r = re("^a/(.*/)?b$");
        assert!(r.is_match(b"a/b"));
        assert!(r.is_match(b"a/x/y/b"));
        assert!(!r.is_match(b"a/xb"));
        assert!(re("^(a|b)+$").is_match(b"abba"));
        assert!(!re("^(a|b)+$").is_match(b""));
        assert!(re("^a*?$").is_match(b"aaa"));
        let r = re("^a{2,3}$");
        assert!(!r.is_match(b"a"));
        assert!(r.is_match(b"aa"));
        assert!(r.is_match(b"aaa"));
        assert!(!r.is_match(b"aaaa"));
        assert!(re("^a{2}$").is_match(b"aa"));
        assert!(!re("^a{2}$").is_match(b"aaa"));
        assert!(re("^a{2,}$").is_match(b"aaaaa"));
        assert!(re("^a{0}b$").is_match(b"b"));
        assert!(re("^x(ab){2}$").is_match(b"xabab"));
        // Not a count: literal braces.
        for src in ["^a{$", "^a{,2}$", "^a{01}$", "^a{1,x}$", "^{}$"] {
            let text = src.trim_start_matches('^').trim_end_matches('$');
            assert!(re(src).is_match(text.as_bytes()), "{src}");
        }
        assert!(re("^a|b$").is_match(b"ax"));
        assert!(re("^a|b$").is_match(b"xb"));
        assert!(!re("^a|b$").is_match(b"xa"));
        assert!(re("^|x").is_match(b"anything"));
    }

    #[test]
    fn invalid_expressions_are_errors() {
        assert!(matches!(err("\\y"), RegexProblem::InvalidEscape(_)));
        assert!(matches!(err("\\8"), RegexProblem::InvalidEscape(_)));
        assert!(matches!(err("\\1"), RegexProblem::InvalidEscape(_)));
        assert!(matches!(err("\\C"), RegexProblem::InvalidEscape(_)));
        assert!(matches!(err("\\x4$"), RegexProblem::InvalidEscape(_)));
        assert!(matches!(err("\\é"), RegexProblem::InvalidEscape(_)));
        assert!(matches!(err("\\"), RegexProblem::InvalidEscape(_)));
        assert!(matches!(err("[z-a]"), RegexProblem::InvalidCharRange(_)));
        assert!(matches!(
            err("[[:foo:]]"),
            RegexProblem::UnknownPosixClass(_)
        ));
        assert_eq!(err("[abc"), RegexProblem::MissingBracket);
        assert_eq!(err("*a"), RegexProblem::MissingRepeatArgument);
        assert_eq!(err("a**"), RegexProblem::NestedRepeat);
        assert_eq!(err("a*{2}"), RegexProblem::NestedRepeat);
        assert_eq!(err("{2}"), RegexProblem::MissingRepeatArgument);
        assert!(matches!(err("a{1001}"), RegexProblem::InvalidRepeatSize(_)));
        assert!(matches!(err("a{3,2}"), RegexProblem::InvalidRepeatSize(_)));
        assert!(matches!(
            err("a{99999999999999999999}"),
            RegexProblem::InvalidRepeatSize(_)
        ));
        assert_eq!(err(&"a{1000}".repeat(3400)), RegexProblem::TooLarge);
        assert_eq!(err("(a"), RegexProblem::UnbalancedParen);
        assert_eq!(err("a)"), RegexProblem::UnbalancedParen);
        assert!(matches!(err("\\pL"), RegexProblem::UnicodeClass(_)));
        assert!(matches!(err("[\\pL]"), RegexProblem::UnicodeClass(_)));
    }

    #[test]
    fn invalid_utf8_reads_as_replacement_rune() {
        assert!(re("^a\u{FFFD}b$").is_match(b"a\xffb"));
        assert!(re("^a.b$").is_match(b"a\xffb"));
        assert!(!re("^a..b$").is_match(b"a\xffb"));
        assert_eq!(decode_rune(b"\xe2\x98"), (0xFFFD, 1));
        assert_eq!(decode_rune("☺".as_bytes()), (0x263A, 3));
        assert_eq!(decode_rune(b""), (0xFFFD, 0));
    }

    #[test]
    fn many_stars_stay_linear() {
        let r = re("^a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*b$");
        let long = "a".repeat(5000);
        assert!(!r.is_match(long.as_bytes()));
    }
}
