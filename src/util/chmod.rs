//! `--chmod` values: octal bits up to 07777 or a chmod(1) symbolic
//! expression. Parsed here, in a leaf, because the frontend validates them
//! and the file-operation engine applies them.

/// A `--chmod` value: octal bits or a chmod(1) symbolic expression applied
/// to each file's existing mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(String),
}

/// Why a `--chmod` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmodError {
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    NotOctal(String),
    #[error("invalid chmod parameter: '{0}': invalid syntax")]
    Syntax(String),
}

/// Reads an expanded `--chmod`: an octal number up to 07777, or a symbolic
/// mode like `u+x,go-w` / `a=rX`. Numeric-looking mistakes are "not
/// octal", other syntax errors "invalid syntax", as BuildKit words them.
pub fn parse(value: &str) -> Result<Chmod, ChmodError> {
    let not_octal = || ChmodError::NotOctal(value.to_string());
    if !value.is_empty() && value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return match u32::from_str_radix(value, 8) {
            Ok(bits) if bits <= 0o7777 => Ok(Chmod::Octal(bits)),
            _ => Err(not_octal()),
        };
    }
    if value.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(not_octal());
    }
    if is_symbolic_mode(value) {
        Ok(Chmod::Symbolic(value.to_string()))
    } else {
        Err(ChmodError::Syntax(value.to_string()))
    }
}

/// chmod(1) symbolic syntax: comma-separated clauses of `[ugoa]*` followed
/// by one or more `[+-=][rwxXst]*` or `[+-=][ugo]` actions.
fn is_symbolic_mode(value: &str) -> bool {
    value.split(',').all(|clause| {
        let actions = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        // Each action starts with an operator; what follows is either
        // permission letters or a single "copy from" class letter (which
        // may be followed by more permission letters in BSD's parser).
        let mut chars = actions.chars().peekable();
        if chars.peek().is_none() {
            return false;
        }
        while let Some(op) = chars.next() {
            if !matches!(op, '+' | '-' | '=') {
                return false;
            }
            while let Some(&c) = chars.peek() {
                if !"rwxXstugo".contains(c) {
                    break;
                }
                chars.next();
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_symbolic() {
        assert_eq!(parse("755"), Ok(Chmod::Octal(0o755)));
        assert_eq!(parse("0413"), Ok(Chmod::Octal(0o413)));
        assert_eq!(parse("u+x,go-w"), Ok(Chmod::Symbolic("u+x,go-w".into())));
        assert_eq!(parse("a=rX"), Ok(Chmod::Symbolic("a=rX".into())));
        assert_eq!(parse("10000"), Err(ChmodError::NotOctal("10000".into())));
        assert_eq!(parse("64a"), Err(ChmodError::NotOctal("64a".into())));
        assert_eq!(parse("u!x"), Err(ChmodError::Syntax("u!x".into())));
        assert_eq!(parse(""), Err(ChmodError::Syntax("".into())));
    }
}
