//! Source positions inside a Dockerfile, as BuildKit reports them: lines are
//! 1-based, characters 0-based.

use serde::Serialize;

/// A point in the Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct Position {
    pub line: usize,
    pub character: usize,
}

/// A section of the Dockerfile between two positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Range {
    pub start: Position,
    pub end: Position,
}

impl Range {
    /// Whole lines `start..=end` (1-based), as BuildKit marks an instruction.
    pub fn lines(start: usize, end: usize) -> Range {
        let end = end.max(start);
        Range {
            start: Position {
                line: start,
                character: 0,
            },
            end: Position {
                line: end,
                character: 0,
            },
        }
    }
}
