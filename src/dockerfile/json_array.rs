//! Recognises the exec (JSON array) form of instruction arguments with the
//! same verdicts BuildKit gets from Go's `encoding/json`: a valid array of
//! strings, a valid array holding something else (a hard error upstream), or
//! anything else (the caller falls back to shell form).
//!
//! A small purpose-built reader is used instead of `serde_json` because the
//! verdicts differ at the edges: Go accepts lone UTF-16 surrogate escapes
//! (turning them into U+FFFD), caps nesting at 10000 levels, and rejects a
//! number too large for an `f64`, which makes the whole array fall back to
//! shell form rather than count as a non-string element.

/// Go's `encoding/json` refuses documents nested deeper than this.
const MAX_NESTING_DEPTH: usize = 10_000;

/// What the argument text turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonArray {
    /// A JSON array whose elements are all strings, decoded.
    Strings(Vec<String>),
    /// A valid JSON array with at least one element that is not a string.
    NotAllStrings,
    /// Not a JSON array at all (or not one Go would decode).
    NotJson,
}

/// Classifies `text`, which may have leading whitespace.
pub(crate) fn parse_json_array(text: &str) -> JsonArray {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return JsonArray::NotJson;
    }
    let mut reader = Reader {
        bytes: text.as_bytes(),
        text,
        pos: 1,
        number_overflow: false,
    };
    match reader.top_level_array() {
        Some((elements, all_strings)) => {
            reader.skip_whitespace();
            // An out-of-range number is a decode error in Go, not a type
            // mismatch, so BuildKit treats the text as shell form.
            if reader.pos != reader.bytes.len() || reader.number_overflow {
                JsonArray::NotJson
            } else if all_strings {
                JsonArray::Strings(elements)
            } else {
                JsonArray::NotAllStrings
            }
        }
        None => JsonArray::NotJson,
    }
}

/// A cursor over the JSON text. Every position it stops at is either the end
/// or just before/after an ASCII byte, so slicing `text` there is safe.
struct Reader<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    number_overflow: bool,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Reads the outer array (its `[` already consumed): the decoded string
    /// elements and whether every element was a string.
    fn top_level_array(&mut self) -> Option<(Vec<String>, bool)> {
        let mut elements = Vec::new();
        let mut all_strings = true;
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Some((elements, all_strings));
        }
        loop {
            self.skip_whitespace();
            if self.peek() == Some(b'"') {
                let mut s = String::new();
                self.string(Some(&mut s))?;
                elements.push(s);
            } else {
                all_strings = false;
                self.value()?;
            }
            self.skip_whitespace();
            match self.bump()? {
                b',' => continue,
                b']' => return Some((elements, all_strings)),
                _ => return None,
            }
        }
    }

    /// Validates one value nested inside the outer array. Iterative, so a
    /// deeply nested document cannot exhaust the stack.
    fn value(&mut self) -> Option<()> {
        // Open containers below the outer array: `[` or `{`.
        let mut open: Vec<u8> = Vec::new();
        loop {
            self.skip_whitespace();
            let mut complete = true;
            match self.peek()? {
                c @ (b'[' | b'{') => {
                    self.pos += 1;
                    open.push(c);
                    // The outer array counts as one level.
                    if open.len() + 1 > MAX_NESTING_DEPTH {
                        return None;
                    }
                    self.skip_whitespace();
                    let close = if c == b'[' { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        open.pop();
                    } else if c == b'{' {
                        self.object_key()?;
                        complete = false;
                    } else {
                        complete = false;
                    }
                }
                b'"' => self.string(None)?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            if !complete {
                continue;
            }
            // A value ended: close every container that ends with it.
            loop {
                let Some(&container) = open.last() else {
                    return Some(());
                };
                self.skip_whitespace();
                match (container, self.bump()?) {
                    (b'[', b',') => break,
                    (b'{', b',') => {
                        self.object_key()?;
                        break;
                    }
                    (b'[', b']') | (b'{', b'}') => {
                        open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// `"key" :` inside an object.
    fn object_key(&mut self) -> Option<()> {
        self.skip_whitespace();
        if self.peek() != Some(b'"') {
            return None;
        }
        self.string(None)?;
        self.skip_whitespace();
        (self.bump()? == b':').then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        let literal = self.text.get(start..self.pos)?;
        if literal.parse::<f64>().map_or(true, f64::is_infinite) {
            self.number_overflow = true;
        }
        Some(())
    }

    /// Reads a string (at its opening quote), decoding it into `out` when
    /// given, with Go's treatment of unpaired surrogate escapes.
    fn string(&mut self, mut out: Option<&mut String>) -> Option<()> {
        self.pos += 1;
        let mut run_start = self.pos;
        loop {
            let b = self.peek()?;
            match b {
                b'"' | b'\\' => {
                    if let Some(out) = out.as_deref_mut() {
                        out.push_str(self.text.get(run_start..self.pos)?);
                    }
                    self.pos += 1;
                    if b == b'"' {
                        return Some(());
                    }
                    let decoded = self.escape()?;
                    if let Some(out) = out.as_deref_mut() {
                        out.push(decoded);
                    }
                    run_start = self.pos;
                }
                0x00..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
    }

    /// One escape sequence, after its backslash.
    fn escape(&mut self) -> Option<char> {
        let c = match self.bump()? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4(self.pos)?;
                self.pos += 4;
                if !(0xd800..0xe000).contains(&unit) {
                    return char::from_u32(unit);
                }
                // A surrogate only counts when a valid pair follows at once;
                // otherwise it alone becomes U+FFFD.
                if self.bytes.get(self.pos..self.pos + 2) == Some(b"\\u") {
                    if let Some(low) = self.hex4(self.pos + 2) {
                        if (0xd800..0xdc00).contains(&unit) && (0xdc00..0xe000).contains(&low) {
                            self.pos += 6;
                            let combined = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                            return char::from_u32(combined);
                        }
                    }
                }
                char::REPLACEMENT_CHARACTER
            }
            _ => return None,
        };
        Some(c)
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.bytes.get(at..at.checked_add(4)?)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            let v = (d as char).to_digit(16)?;
            Some(acc * 16 + v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> JsonArray {
        JsonArray::Strings(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn arrays_of_strings_decode() {
        assert_eq!(parse_json_array("[]"), strings(&[]));
        assert_eq!(parse_json_array(r#"[""]"#), strings(&[""]));
        assert_eq!(parse_json_array(r#"[ "a", "b" ]"#), strings(&["a", "b"]));
        assert_eq!(
            parse_json_array("\t[\t\"a\",\t\"b\"\t]\t"),
            strings(&["a", "b"])
        );
        assert_eq!(
            parse_json_array(r#"["abc 123", "♥", "☃", "\" \\ \/ \b \f \n \r \t \u0000"]"#),
            strings(&["abc 123", "♥", "☃", "\" \\ / \u{8} \u{c} \n \r \t \u{0}"])
        );
    }

    #[test]
    fn surrogate_escapes_follow_go() {
        assert_eq!(parse_json_array(r#"["\ud83d\ude00"]"#), strings(&["😀"]));
        assert_eq!(parse_json_array(r#"["\ud800x"]"#), strings(&["\u{fffd}x"]));
        assert_eq!(
            parse_json_array(r#"["\udc00\ud800"]"#),
            strings(&["\u{fffd}\u{fffd}"])
        );
        assert_eq!(
            parse_json_array(r#"["\ud800\u0041"]"#),
            strings(&["\u{fffd}A"])
        );
    }

    #[test]
    fn non_string_elements_are_reported() {
        for text in [
            r#"["a",42,"b"]"#,
            r#"["a",123.456,"b"]"#,
            r#"["a",{},"b"]"#,
            r#"["a",{"c": "d"},"b"]"#,
            r#"["a",["c"],"b"]"#,
            r#"["a",true,"b"]"#,
            r#"["a",false,"b"]"#,
            r#"["a",null,"b"]"#,
            r#"[[[{"k": [1, -0.5e+3, {}]}]]]"#,
        ] {
            assert_eq!(parse_json_array(text), JsonArray::NotAllStrings, "{text}");
        }
    }

    #[test]
    fn invalid_json_is_not_json() {
        for text in [
            "",
            "echo",
            "[",
            r#"["a""#,
            r#"["a"] x"#,
            r#"['a']"#,
            r#"["a",]"#,
            r#"[01]"#,
            r#"[1.]"#,
            r#"[-]"#,
            r#"["\x"]"#,
            "[\"a\nb\"]",
            r#"[{"a"}]"#,
            r#"[{1: 2}]"#,
            r#"[tru]"#,
            r#"["\u12"]"#,
            // Too large for an f64: a decode error in Go.
            r#"["a", 1e400]"#,
            r#"["a", [1e999]]"#,
        ] {
            assert_eq!(parse_json_array(text), JsonArray::NotJson, "{text:?}");
        }
    }

    #[test]
    fn nesting_is_capped_like_go() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(parse_json_array(&nested(10_000)), JsonArray::NotAllStrings);
        assert_eq!(parse_json_array(&nested(10_001)), JsonArray::NotJson);
        assert_eq!(parse_json_array(&"[".repeat(1_000_000)), JsonArray::NotJson);
    }
}
