//! Dockerfile text → [`Ast`]: directives, logical lines, heredocs, flags,
//! JSON vs shell form, per instruction as BuildKit's parser does.

use super::error::Result;
use super::node::Ast;

/// Why the text is not a Dockerfile.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("file with no instructions")]
    Empty,
}

/// Parses a whole Dockerfile.
pub fn parse(_source: &str) -> Result<Ast> {
    todo!("parser lands in the parser branch")
}
