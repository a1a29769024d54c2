//! Value parsers that accept exactly what the Go standard library functions
//! BuildKit calls accept (`strconv.ParseBool`, `strconv.ParseUint`,
//! `strconv.ParseInt`, `go-units.RAMInBytes`), since Rust's own parsers
//! differ at the edges (leading `+`, underscores, case).
//!
//! A leaf: it must not import anything from the frontend but the Go quoting
//! helper.

use crate::dockerfile::node::go_quote;

/// `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `strconv.ParseUint(s, radix, 32)`: digits only, no sign, no separators.
pub fn parse_u32(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

/// `strconv.ParseInt(s, 10, 32)`, with Go's error text on failure.
pub fn parse_i32(s: &str) -> Result<i32, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let syntax = || format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(s));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    s.parse::<i32>().map_err(|_| {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        )
    })
}

/// `units.RAMInBytes`: a number with an optional binary unit (`k`, `m`,
/// `g`, `t`, `p`, optionally followed by `b` or `ib`, any case), `None`
/// when unparseable or negative.
pub fn ram_in_bytes(size: &str) -> Option<i64> {
    let sep = size.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')?;
    let (number, suffix) = if size.as_bytes()[sep] == b' ' {
        (&size[..sep], &size[sep + 1..])
    } else {
        (&size[..=sep], &size[sep + 1..])
    };
    let value: f64 = parse_go_float(number)?;
    if value < 0.0 {
        return None;
    }
    if suffix.is_empty() {
        return Some(value as i64);
    }
    let suffix = suffix.to_lowercase();
    if suffix.len() > 3 {
        return None;
    }
    let mut chars = suffix.chars();
    let unit = chars.next()?;
    let rest: String = chars.collect();
    if unit == 'b' {
        return rest.is_empty().then_some(value as i64);
    }
    let multiplier: f64 = match unit {
        'k' => 1024.0,
        'm' => 1024.0 * 1024.0,
        'g' => 1024.0 * 1024.0 * 1024.0,
        't' => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        'p' => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    if !matches!(rest.as_str(), "" | "b" | "ib") {
        return None;
    }
    Some((value * multiplier) as i64)
}

/// The decimal subset of `strconv.ParseFloat` that a size can hold (the
/// number part always ends in a digit or a dot, so `inf`/`nan` cannot
/// appear; Rust would accept them, Go's hex floats are not supported).
fn parse_go_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_follow_strconv() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", " true", "2"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn unsigned_numbers_reject_signs_and_junk() {
        assert_eq!(parse_u32("0755", 8), Some(0o755));
        assert_eq!(parse_u32("1000", 10), Some(1000));
        assert_eq!(parse_u32("4294967295", 10), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296", 10), None);
        assert_eq!(parse_u32("+1", 10), None);
        assert_eq!(parse_u32("8", 8), None);
        assert_eq!(parse_u32("1_000", 10), None);
        assert_eq!(parse_u32("", 10), None);
    }

    #[test]
    fn signed_numbers_carry_go_messages() {
        assert_eq!(parse_i32("3"), Ok(3));
        assert_eq!(parse_i32("+3"), Ok(3));
        assert_eq!(parse_i32("-3"), Ok(-3));
        assert_eq!(
            parse_i32("abc"),
            Err(r#"strconv.ParseInt: parsing "abc": invalid syntax"#.to_string())
        );
        assert_eq!(
            parse_i32("2147483648"),
            Err(r#"strconv.ParseInt: parsing "2147483648": value out of range"#.to_string())
        );
        assert!(parse_i32("-").is_err());
        assert!(parse_i32("").is_err());
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(ram_in_bytes("32"), Some(32));
        assert_eq!(ram_in_bytes("32b"), Some(32));
        assert_eq!(ram_in_bytes("1k"), Some(1024));
        assert_eq!(ram_in_bytes("1KiB"), Some(1024));
        assert_eq!(ram_in_bytes("1kb"), Some(1024));
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("1 GiB"), Some(1 << 30));
        assert_eq!(ram_in_bytes("1.5g"), Some(3 << 29));
        assert_eq!(ram_in_bytes("2t"), Some(2 << 40));
        assert_eq!(ram_in_bytes("1p"), Some(1 << 50));
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for bad in [
            "", "abc", "-1", "1x", "1kx", "1kib2", "1bb", "1kbb", "1mbs", "k",
        ] {
            assert_eq!(ram_in_bytes(bad), None, "{bad}");
        }
    }
}
