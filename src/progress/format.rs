//! Small text formatters shared by the renderers: byte sizes the way
//! BuildKit prints them, and the error and warning reports printed after
//! the build. Part of the `progress` LEAF module: imports nothing
//! project-internal except `util`.

use std::io::{self, Write};

use super::trace::Trace;

const UNITS: [&str; 7] = ["kB", "MB", "GB", "TB", "PB", "EB", "ZB"];

/// A byte count in decimal units with two decimals (`1.23MB`), and whole
/// bytes below a kilobyte (`123B`): the format BuildKit uses for statuses.
pub(super) fn bytes(n: u64) -> String {
    if n < 1000 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// `current / total`, or just `current` when the total is unknown, or
/// nothing when there is no progress to show yet.
pub(super) fn progress(current: u64, total: u64) -> String {
    if total != 0 {
        format!("{} / {}", bytes(current), bytes(total))
    } else if current != 0 {
        bytes(current)
    } else {
        String::new()
    }
}

/// The block BuildKit prints after the progress for every failed vertex:
/// its name and its last log lines between `------` rules, so the cause
/// is visible without scrolling back.
///
/// `all_logs` is true for the tty renderer, which never printed the logs
/// and so shows them all; the plain renderer printed them already and
/// repeats only the last few it kept.
pub(super) fn error_logs(trace: &Trace, all_logs: bool, out: &mut dyn Write) -> io::Result<()> {
    for v in trace.failed() {
        writeln!(out, "------")?;
        writeln!(out, " > {}:", v.name)?;
        if all_logs {
            for line in &v.logs {
                out.write_all(line)?;
                writeln!(out)?;
            }
        } else {
            for line in &v.logs_buffer {
                out.write_all(line)?;
                writeln!(out)?;
            }
            if v.logs_partial {
                if let Some(line) = v.logs.last() {
                    out.write_all(line)?;
                    writeln!(out)?;
                }
            }
        }
        writeln!(out, "------")?;
    }
    Ok(())
}

/// The list of warnings `docker buildx build` prints once the build is
/// over, in yellow on a colour terminal.
pub(super) fn warnings(trace: &Trace, color: bool, out: &mut dyn Write) -> io::Result<()> {
    let n = trace.warnings.len();
    if n == 0 {
        return Ok(());
    }
    let head = if n == 1 {
        "1 warning found:".to_owned()
    } else {
        format!("{n} warnings found:")
    };
    write!(out, "\n ")?;
    if color {
        writeln!(out, "{YELLOW}{head}{RESET}")?;
    } else {
        writeln!(out, "{head}")?;
    }
    for w in &trace.warnings {
        writeln!(out, " - {}", w.short())?;
    }
    Ok(())
}

// The SGR colours BuildKit's console uses by default (see its init.go):
// blue for finished rows, red for errors, yellow for cancelled rows and
// warnings, faint for log lines.
pub(super) const BLUE: &str = "\x1b[34m";
pub(super) const RED: &str = "\x1b[31m";
pub(super) const YELLOW: &str = "\x1b[33m";
pub(super) const FAINT: &str = "\x1b[2m";
pub(super) const RESET: &str = "\x1b[0m";
