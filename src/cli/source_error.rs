//! A Dockerfile error ready for the terminal: the offending lines with a
//! marker, then `file:line: message`. `main` prints the snippet before the
//! `ERROR:` line, as BuildKit does. Credentials in URLs the lines hold
//! are masked.

use crate::dockerfile;
use crate::util::redact;

/// A frontend error rendered against the Dockerfile it came from.
#[derive(Debug)]
pub struct SourceError {
    pub snippet: Option<String>,
    pub message: String,
}

impl SourceError {
    pub fn new(err: &dockerfile::Error, file_name: &str, source: &str) -> Self {
        SourceError {
            snippet: err.snippet(file_name, source).map(|s| redact::text(&s)),
            message: redact::text(&err.message(file_name)),
        }
    }

    /// A build-time error of the step written on `range`'s lines: the
    /// snippet marks them, the message is the error's own.
    pub fn at(range: dockerfile::Range, file_name: &str, source: &str, message: String) -> Self {
        SourceError {
            snippet: dockerfile::error::snippet(&range, file_name, source)
                .map(|s| redact::text(&s)),
            message: redact::text(&message),
        }
    }
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {}
