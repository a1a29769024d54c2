//! The frontend's error: what went wrong plus where in the Dockerfile, and a
//! renderer that prints the offending lines with a marker, like BuildKit.

use super::instructions::InstructionError;
use super::location::Range;
use super::lower::LowerError;
use super::parser::ParseError;
use super::shell::ShellError;
use super::stage_error::StageError;

/// What went wrong, by the stage of the frontend that found it.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Expand(#[from] ShellError),
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Lower(#[from] LowerError),
}

/// A frontend error with the source ranges it concerns (innermost first).
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub location: Vec<Range>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: impl Into<ErrorKind>, location: Range) -> Self {
        Error {
            kind: kind.into(),
            location: vec![location],
        }
    }

    /// An error without a place (e.g. an empty file).
    pub fn unlocated(kind: impl Into<ErrorKind>) -> Self {
        Error {
            kind: kind.into(),
            location: Vec::new(),
        }
    }

    /// Adds an outer location (e.g. the stage a failing step belongs to).
    pub fn with_location(mut self, location: Range) -> Self {
        self.location.push(location);
        self
    }

    /// The first source line the error concerns, if any.
    pub fn line(&self) -> Option<usize> {
        self.location.first().map(|r| r.start.line)
    }

    /// The offending lines of `source` with a `>>>` marker and two lines of
    /// context on each side, headed by `file:line`, as BuildKit prints them.
    /// `None` when the error has no place inside the file.
    pub fn snippet(&self, file_name: &str, source: &str) -> Option<String> {
        snippet(self.location.first()?, file_name, source)
    }

    /// `file:line: message` (or `file: message` without a place).
    pub fn message(&self, file_name: &str) -> String {
        match self.line() {
            Some(line) => format!("{file_name}:{line}: {self}"),
            None => format!("{file_name}: {self}"),
        }
    }
}

/// The lines of `range` in `source` with a `>>>` marker and two lines of
/// context on each side, headed by `file:line`, as BuildKit prints them.
/// Also used for build-time errors, which know only their vertex's lines.
pub fn snippet(range: &Range, file_name: &str, source: &str) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let (start, end) = (range.start.line, range.end.line.max(range.start.line));
    if start == 0 || start > lines.len() {
        return None;
    }
    let mut out = format!("{file_name}:{start}\n--------------------\n");
    let first = start.saturating_sub(2).max(1);
    let last = (end + 2).min(lines.len());
    for n in first..=last {
        let marker = if (start..=end).contains(&n) {
            ">>>"
        } else {
            "   "
        };
        let text = lines[n - 1].trim_end_matches('\r');
        out.push_str(format!(" {n:>3} | {marker} {text}").trim_end());
        out.push('\n');
    }
    out.push_str("--------------------");
    Some(out)
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}
