//! Counting what a build did from its progress events, so the CLI can
//! report it and tests can assert "the warm rebuild ran nothing, every
//! vertex came from the cache" without relying on timing or on rendered
//! text. Part of the `progress` LEAF module: imports nothing
//! project-internal except `util`.

use std::collections::HashMap;
use std::fmt;

use super::event::Event;

/// How each vertex ended, counted over distinct digests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Distinct vertices that appeared in the stream.
    pub vertices: usize,
    /// Vertices that got a `VertexStarted` at any point, whatever their end.
    pub started: usize,
    /// Vertices whose last word was `VertexCached`.
    pub cached: usize,
    /// Vertices whose last word was `VertexCompleted`: they really ran.
    pub completed: usize,
    /// Vertices whose last word was `VertexFailed`.
    pub failed: usize,
    /// Vertices started but never finished (the build stopped under them).
    pub unfinished: usize,
    /// Warnings reported, with or without a vertex.
    pub warnings: usize,
}

impl Summary {
    /// True when there was at least one vertex and the cache answered all.
    pub fn all_cached(&self) -> bool {
        self.vertices > 0 && self.cached == self.vertices
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} vertices: {} ran, {} cached, {} failed",
            self.vertices, self.completed, self.cached, self.failed
        )?;
        if self.unfinished > 0 {
            write!(f, ", {} unfinished", self.unfinished)?;
        }
        if self.warnings > 0 {
            write!(f, ", {} warnings", self.warnings)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Running,
    Cached,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    started: bool,
    end: End,
}

/// Folds events into a [`Summary`]. Every renderer thread runs one, and
/// it can be used on its own over any event list.
#[derive(Debug, Default)]
pub struct Recorder {
    vertices: HashMap<String, Seen>,
    warnings: usize,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, event: &Event) {
        let (digest, end, started) = match event {
            Event::VertexStarted { digest, .. } => (digest, End::Running, true),
            Event::VertexCached { digest, .. } => (digest, End::Cached, false),
            Event::VertexCompleted { digest, .. } => (digest, End::Completed, false),
            Event::VertexFailed { digest, .. } => (digest, End::Failed, false),
            Event::Warning { .. } => {
                self.warnings += 1;
                return;
            }
            Event::Log { .. } | Event::Status { .. } | Event::Done => return,
        };
        let seen = self.vertices.entry(digest.clone()).or_insert(Seen {
            started: false,
            end: End::Running,
        });
        seen.started |= started;
        seen.end = end;
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            vertices: self.vertices.len(),
            warnings: self.warnings,
            ..Summary::default()
        };
        for seen in self.vertices.values() {
            if seen.started {
                s.started += 1;
            }
            match seen.end {
                End::Running => s.unfinished += 1,
                End::Cached => s.cached += 1,
                End::Completed => s.completed += 1,
                End::Failed => s.failed += 1,
            }
        }
        s
    }
}
