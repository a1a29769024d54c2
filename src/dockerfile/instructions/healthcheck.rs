//! `HEALTHCHECK NONE` and `HEALTHCHECK [--interval=…] CMD command`, with
//! durations read exactly as Go's `time.ParseDuration` reads them (the
//! syntax users already write for BuildKit, e.g. `1m30s`, `1.5h`, `300ms`).
//!
//! Writing the result into the image config is the stage layer's job; this
//! module must not import it.

use std::time::Duration;

use super::cmdline::ShellOrExec;
use super::go::parse_i32;
use super::{InstructionError, Meta, Request};
use crate::dockerfile::error::Result;

/// A HEALTHCHECK instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    pub meta: Meta,
    pub health: Health,
}

/// What the instruction asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// `HEALTHCHECK NONE`: disable any check inherited from the base image.
    None,
    /// `HEALTHCHECK … CMD …`.
    Check(HealthConfig),
}

/// A health check. Zero durations and retries mean "use the default".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub cmd: ShellOrExec,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i32,
}

impl Health {
    /// The image config's `Test` array: `["NONE"]`, `["CMD", args…]` or
    /// `["CMD-SHELL", command]`.
    pub fn test(&self) -> Vec<String> {
        match self {
            Health::None => vec!["NONE".to_string()],
            Health::Check(config) => match &config.cmd {
                ShellOrExec::Exec(args) => std::iter::once("CMD".to_string())
                    .chain(args.iter().cloned())
                    .collect(),
                ShellOrExec::Shell(command) => vec!["CMD-SHELL".to_string(), command.clone()],
            },
        }
    }
}

pub(crate) fn parse_healthcheck(req: &mut Request) -> Result<Healthcheck> {
    let Some(first) = req.args.first() else {
        return Err(req.fail(InstructionError::AtLeastOneArgument("HEALTHCHECK")));
    };
    let kind = first.to_uppercase();
    let rest = req.args[1..].to_vec();
    if kind == "NONE" {
        // BuildKit reads no flags for NONE, so any given are ignored.
        if !rest.is_empty() {
            return Err(req.fail(InstructionError::HealthcheckNoneArguments));
        }
        return Ok(Healthcheck {
            meta: req.meta(),
            health: Health::None,
        });
    }

    let names = [
        "interval",
        "timeout",
        "start-period",
        "start-interval",
        "retries",
    ];
    let ids = names.map(|name| req.flags.add_string(name, ""));
    req.parse_flags()?;
    if kind != "CMD" {
        return Err(req.fail(InstructionError::HealthcheckType(kind)));
    }
    let cmd = ShellOrExec::from_args(&rest, req.json());
    if cmd.is_empty() {
        return Err(req.fail(InstructionError::HealthcheckMissingCommand));
    }
    let mut durations = [Duration::ZERO; 4];
    for (slot, (name, id)) in durations.iter_mut().zip(names.iter().zip(ids)) {
        *slot = interval(name, req.flags.value(id)).map_err(|e| req.fail(e))?;
    }
    let retries = match req.flags.value(ids[4]) {
        "" => 0,
        value => {
            let n = parse_i32(value).map_err(|e| req.fail(InstructionError::InvalidRetries(e)))?;
            if n < 0 {
                return Err(req.fail(InstructionError::NegativeRetries(n.into())));
            }
            n
        }
    };
    let [interval, timeout, start_period, start_interval] = durations;
    Ok(Healthcheck {
        meta: req.meta(),
        health: Health::Check(HealthConfig {
            cmd,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        }),
    })
}

/// An optional duration flag: empty or zero means unset; anything else must
/// be at least a millisecond.
fn interval(name: &str, value: &str) -> std::result::Result<Duration, InstructionError> {
    if value.is_empty() {
        return Ok(Duration::ZERO);
    }
    let nanos = parse_go_duration(value).map_err(InstructionError::InvalidDuration)?;
    if nanos == 0 {
        return Ok(Duration::ZERO);
    }
    if nanos < 1_000_000 {
        return Err(InstructionError::IntervalTooShort(name.to_string()));
    }
    // Positive here, so the conversion is lossless.
    Ok(Duration::from_nanos(nanos.unsigned_abs()))
}

/// Go's `time.ParseDuration`: a signed sequence of decimal numbers with
/// units (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`), as nanoseconds.
/// Errors are Go's messages.
pub fn parse_go_duration(text: &str) -> std::result::Result<i64, String> {
    const LIMIT: u64 = 1 << 63;
    let invalid = || format!("time: invalid duration {}", time_quote(text));
    let mut s = text.as_bytes();
    let mut negative = false;
    if let Some((&sign @ (b'-' | b'+'), rest)) = s.split_first() {
        negative = sign == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut whole: u64 = 0;
        for &b in &s[..digits] {
            if whole > LIMIT / 10 {
                return Err(invalid());
            }
            whole = whole * 10 + u64::from(b - b'0');
            if whole > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[digits..];
        // Fraction part; digits past what fits are ignored, as in Go.
        let mut fraction: u64 = 0;
        let mut scale = 1f64;
        let mut fraction_digits = 0;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            fraction_digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
            let mut overflow = false;
            for &b in &s[..fraction_digits] {
                if overflow || fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(b - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &s[fraction_digits..];
        }
        if digits == 0 && fraction_digits == 0 {
            return Err(invalid());
        }
        // Unit: everything up to the next number.
        let unit_len = s
            .iter()
            .take_while(|&&b| b != b'.' && !b.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!(
                "time: missing unit in duration {}",
                time_quote(text)
            ));
        }
        let unit_bytes = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u64 = match unit_bytes {
            b"ns" => 1,
            // `us`, `µs` (micro sign) and `μs` (Greek mu).
            b"us" | [0xc2, 0xb5, b's'] | [0xce, 0xbc, b's'] => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    time_quote(&String::from_utf8_lossy(unit_bytes)),
                    time_quote(text)
                ))
            }
        };
        if whole > LIMIT / unit {
            return Err(invalid());
        }
        let mut value = whole * unit;
        if fraction > 0 {
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // 1<<63 negated is exactly i64::MIN.
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// How Go's `time` package quotes in its errors: `"` and `\` escaped,
/// control and non-ASCII bytes as `\xNN`.
fn time_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7f => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{parse_instruction, Instruction};
    use super::*;
    use crate::dockerfile::node::Node;

    fn health(n: &Node) -> Health {
        match parse_instruction(n).unwrap() {
            Instruction::Healthcheck(h) => h.health,
            other => panic!("{other:?}"),
        }
    }

    fn config(n: &Node) -> HealthConfig {
        match health(n) {
            Health::Check(c) => c,
            Health::None => panic!("expected a check"),
        }
    }

    #[test]
    fn go_durations() {
        let ms = 1_000_000i64;
        let s = 1_000 * ms;
        for (text, nanos) in [
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("5s", 5 * s),
            ("30s", 30 * s),
            ("1478s", 1478 * s),
            ("-5s", -5 * s),
            ("+5s", 5 * s),
            ("-0s", 0),
            ("5.0s", 5 * s),
            ("5.6s", 5 * s + 600 * ms),
            ("5.s", 5 * s),
            (".5s", 500 * ms),
            ("1.0s", s),
            ("1.00s", s),
            ("1.004s", s + 4 * ms),
            ("1.0040s", s + 4 * ms),
            ("100.00100s", 100 * s + ms),
            ("10ns", 10),
            ("11us", 11_000),
            ("12µs", 12_000),
            ("12μs", 12_000),
            ("13ms", 13 * ms),
            ("14s", 14 * s),
            ("15m", 15 * 60 * s),
            ("16h", 16 * 3600 * s),
            ("3h30m", (3 * 3600 + 30 * 60) * s),
            ("10.5s4m", 4 * 60 * s + 10 * s + 500 * ms),
            ("-2m3.4s", -(2 * 60 * s + 3 * s + 400 * ms)),
            (
                "1h2m3s4ms5us6ns",
                3600 * s + 2 * 60 * s + 3 * s + 4 * ms + 5_000 + 6,
            ),
            ("39h9m14.425s", (39 * 3600 + 9 * 60 + 14) * s + 425 * ms),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * 60 * s),
            ("9007199254740993ns", 9_007_199_254_740_993),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("0.100000000000000000000h", 6 * 60 * s),
            (
                "0.830103483285477580700h",
                49 * 60 * s + 48 * s + 372_539_827,
            ),
        ] {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
    }

    #[test]
    fn go_duration_errors() {
        for (text, message) in [
            ("", r#"time: invalid duration """#),
            ("3", r#"time: missing unit in duration "3""#),
            ("-", r#"time: invalid duration "-""#),
            ("s", r#"time: invalid duration "s""#),
            (".", r#"time: invalid duration ".""#),
            ("-.", r#"time: invalid duration "-.""#),
            (".s", r#"time: invalid duration ".s""#),
            ("+.s", r#"time: invalid duration "+.s""#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            ("1.1.1s", r#"time: missing unit in duration "1.1.1s""#),
            ("3000000h", r#"time: invalid duration "3000000h""#),
            (
                "9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns""#,
            ),
            (
                "9223372036854775.808us",
                r#"time: invalid duration "9223372036854775.808us""#,
            ),
            (
                "9223372036854ms775us808ns",
                r#"time: invalid duration "9223372036854ms775us808ns""#,
            ),
            (
                "-9223372036854775809ns",
                r#"time: invalid duration "-9223372036854775809ns""#,
            ),
            (
                "1é",
                r#"time: unknown unit "\xc3\xa9" in duration "1\xc3\xa9""#,
            ),
            ("1\"", r#"time: unknown unit "\"" in duration "1\"""#),
        ] {
            assert_eq!(parse_go_duration(text), Err(message.to_string()), "{text}");
        }
    }

    #[test]
    fn none_disables_and_ignores_flags() {
        assert_eq!(health(&node("healthcheck", &[], &["NONE"])), Health::None);
        assert_eq!(
            health(&node("healthcheck", &[], &["none"])).test(),
            ["NONE"]
        );
        // BuildKit does not look at flags for NONE.
        assert_eq!(
            health(&node("healthcheck", &["--bogus"], &["NONE"])),
            Health::None
        );
        assert_eq!(
            parse_err(&node("healthcheck", &[], &["NONE", "x"])),
            "HEALTHCHECK NONE takes no arguments"
        );
    }

    #[test]
    fn shell_and_exec_checks() {
        let h = health(&node("healthcheck", &[], &["CMD", "hello world"]));
        assert_eq!(h.test(), ["CMD-SHELL", "hello world"]);
        let h = health(&node("healthcheck", &[], &["cmd", "hello", "world"]));
        assert_eq!(h.test(), ["CMD-SHELL", "hello world"]);
        let h = health(&json_node(
            "healthcheck",
            &[],
            &["CMD", "curl", "-f", "http://x/"],
        ));
        assert_eq!(h.test(), ["CMD", "curl", "-f", "http://x/"]);
    }

    #[test]
    fn all_options() {
        let c = config(&node(
            "healthcheck",
            &[
                "--interval=5m",
                "--timeout=3s",
                "--start-period=1m30s",
                "--start-interval=1ms",
                "--retries=3",
            ],
            &["CMD", "true"],
        ));
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.start_period, Duration::from_secs(90));
        assert_eq!(c.start_interval, Duration::from_millis(1));
        assert_eq!(c.retries, 3);
        let c = config(&node(
            "healthcheck",
            &["--interval=0s", "--retries=0"],
            &["CMD", "true"],
        ));
        assert_eq!((c.interval, c.retries), (Duration::ZERO, 0));
    }

    #[test]
    fn option_errors() {
        let err = |flag: &str| parse_err(&node("healthcheck", &[flag], &["CMD", "true"]));
        assert_eq!(
            err("--interval=50ns"),
            "Interval \"interval\" cannot be less than 1ms"
        );
        assert_eq!(
            err("--timeout=-1s"),
            "Interval \"timeout\" cannot be less than 1ms"
        );
        assert_eq!(
            err("--start-period=999us"),
            "Interval \"start-period\" cannot be less than 1ms"
        );
        assert_eq!(
            err("--start-interval=0.5ms"),
            "Interval \"start-interval\" cannot be less than 1ms"
        );
        assert_eq!(err("--interval=5"), "time: missing unit in duration \"5\"");
        assert_eq!(err("--retries=-1"), "--retries cannot be negative (-1)");
        assert_eq!(
            err("--retries=three"),
            "strconv.ParseInt: parsing \"three\": invalid syntax"
        );
        assert_eq!(
            err("--retries=99999999999"),
            "strconv.ParseInt: parsing \"99999999999\": value out of range"
        );
        assert_eq!(
            err("--intervl=1s"),
            "unknown flag: --intervl (did you mean interval?)"
        );
    }

    #[test]
    fn type_and_command_errors() {
        assert_eq!(
            parse_err(&node("healthcheck", &[], &["RUN", "x"])),
            "Unknown type \"RUN\" in HEALTHCHECK (try CMD)"
        );
        assert_eq!(
            parse_err(&node("healthcheck", &[], &["CMD"])),
            "Missing command after HEALTHCHECK CMD"
        );
        assert_eq!(
            parse_err(&json_node("healthcheck", &[], &["CMD"])),
            "Missing command after HEALTHCHECK CMD"
        );
        // Flags are checked before the type.
        assert_eq!(
            parse_err(&node("healthcheck", &["--x=1"], &["RUN", "x"])),
            "unknown flag: --x"
        );
    }
}
