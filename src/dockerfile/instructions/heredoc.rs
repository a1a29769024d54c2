//! Recognising a heredoc word (`<<EOF`, `<<-'EOF'`, `3<<"END"`) among an
//! instruction's arguments, as BuildKit does for COPY/ADD sources and
//! destinations, and chomping heredoc bodies.
//!
//! Self-contained on purpose: only the tiny quoting subset a delimiter word
//! can use is needed here, so it must not import the lexer or the parser at
//! run time (its tests check it agrees with the lexer).

/// A heredoc reference found in an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeredocWord {
    /// The delimiter with quotes removed; the body is looked up by it.
    pub name: String,
    /// No part of the delimiter was quoted, so the body is expanded.
    pub expand: bool,
    /// `<<-`: leading tabs of body lines are removed.
    pub chomp: bool,
    /// The digits before `<<` (0 when none).
    pub file_descriptor: u64,
}

/// Whether `word` is a heredoc reference, and which. Anything that does not
/// form exactly one valid delimiter word is an ordinary argument (BuildKit
/// discards its errors here too).
pub fn parse_heredoc_word(word: &str) -> Option<HeredocWord> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    // Go's `\s` in the pattern BuildKit uses: ASCII space, \t \n \f \r.
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\x0c', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (name, quoted) = single_word(rest)?;
    Some(HeredocWord {
        name,
        expand: !quoted,
        chomp,
        // An overlong descriptor is 0, as BuildKit ignores the parse error.
        file_descriptor: word[..digits].parse().unwrap_or(0),
    })
}

/// Removes the leading tabs of every line, what `<<-` asks for.
pub fn chomp_heredoc(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// Splits shell-style with `\` escapes and both quote kinds, no variables;
/// returns the one word and whether any quoting was used, or `None` for
/// zero or several words or an unterminated quote.
fn single_word(text: &str) -> Option<(String, bool)> {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                // A trailing escape is dropped, as the shell lexer does.
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '\'' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        // Inside double quotes only these may be escaped.
                        '\\' => match chars.next() {
                            Some(c @ ('"' | '$' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return None,
                        },
                        c => word.push(c),
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    // Like the shell lexer, an empty word (`''`) is no word at all.
    words.retain(|w| !w.is_empty());
    match words.len() {
        1 => words.pop().map(|w| (w, quoted)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(name: &str, expand: bool, chomp: bool, fd: u64) -> Option<HeredocWord> {
        Some(HeredocWord {
            name: name.into(),
            expand,
            chomp,
            file_descriptor: fd,
        })
    }

    #[test]
    fn plain_and_chomped_delimiters() {
        assert_eq!(parse_heredoc_word("<<EOF"), word("EOF", true, false, 0));
        assert_eq!(parse_heredoc_word("<<-EOF"), word("EOF", true, true, 0));
        assert_eq!(parse_heredoc_word("3<<EOF"), word("EOF", true, false, 3));
        assert_eq!(parse_heredoc_word("<< EOF"), word("EOF", true, false, 0));
    }

    #[test]
    fn quoting_turns_expansion_off() {
        assert_eq!(parse_heredoc_word("<<'EOF'"), word("EOF", false, false, 0));
        assert_eq!(
            parse_heredoc_word("<<\"EOF\""),
            word("EOF", false, false, 0)
        );
        assert_eq!(parse_heredoc_word("<<E'O'F"), word("EOF", false, false, 0));
        assert_eq!(
            parse_heredoc_word("<<-\"EOF\""),
            word("EOF", false, true, 0)
        );
        // An escaped quote is content, not quoting.
        assert_eq!(parse_heredoc_word("<<E\\\"F"), word("E\"F", true, false, 0));
    }

    #[test]
    fn non_heredoc_words() {
        for w in [
            "EOF", "<EOF", "<<", "<<-", "a<<EOF", "<<EOF<", "<<'EOF", "<<\"E", "<<a b", "<<<EOF",
            "x3<<EOF",
        ] {
            assert_eq!(parse_heredoc_word(w), None, "{w}");
        }
    }

    /// The shell lexer is the reference for what a delimiter word is; this
    /// module only avoids depending on it at run time.
    #[test]
    fn agrees_with_the_shell_lexer() {
        use crate::dockerfile::shell::{EnvList, Lex};
        let env = EnvList::new();
        let lex = |raw_quotes: bool, text: &str| {
            let mut lex = Lex::new('\\');
            lex.skip_unset_env = true;
            lex.raw_quotes = raw_quotes;
            lex.process_words(text, &env).ok()
        };
        let quotes = |w: &str| w.matches(['\'', '"']).count();
        for rest in [
            "EOF",
            "'EOF'",
            "\"EOF\"",
            "E'O'F",
            "E\\\"F",
            "\"E\\\"F\"",
            "'E\"F'",
            "\"E'F\"",
            "a b",
            "''",
            "\"\"",
            "'EOF",
            "\"EOF",
            "$EOF",
            "${EOF}",
            "\"$EOF\"",
            "E\\ F",
            "EOF\\",
            "\"a\\b\"",
        ] {
            let expected = match (lex(false, rest), lex(true, rest)) {
                (Some(words), Some(raw)) if words.len() == 1 && raw.len() == 1 => {
                    Some((words[0].clone(), quotes(&words[0]) == quotes(&raw[0])))
                }
                _ => None,
            };
            let ours = single_word(rest).map(|(name, quoted)| (name, !quoted));
            assert_eq!(ours, expected, "{rest}");
        }
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(chomp_heredoc("\t\ta\n\tb\tc\nd\n"), "a\nb\tc\nd\n");
        assert_eq!(chomp_heredoc(""), "");
        assert_eq!(chomp_heredoc("\t"), "");
        assert_eq!(chomp_heredoc(" \ta\n"), " \ta\n");
    }
}
