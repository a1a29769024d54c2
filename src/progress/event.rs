//! The progress event model: what the solver reports about each vertex of
//! the build graph, in the shape that is rendered and, in `rawjson` mode,
//! written out one JSON object per line. Part of the `progress` LEAF module:
//! imports nothing project-internal except `util`.
//!
//! The model follows BuildKit's `client.SolveStatus` (vertex started /
//! completed / cached / error, logs, statuses, warnings) but as a flat stream
//! of self-describing events instead of batched snapshots, because the
//! solver here is in-process and sends each change as it happens.
//!
//! Timestamps are Unix nanoseconds in a `u64` ([`Timestamp`]): exact,
//! cheap to compare and subtract, and free of any date library. In JSON
//! they are plain integers; consumers that parse numbers as doubles (jq,
//! JavaScript) lose precision below about a quarter of a microsecond,
//! which is far below anything the renderers show.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time as nanoseconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The timestamp `nanos` nanoseconds after the Unix epoch.
    pub const fn from_unix_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> u64 {
        self.0
    }

    /// The current wall-clock time. A clock set before 1970 reads as the
    /// epoch rather than failing: progress output must never stop a build.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    /// This timestamp moved forward by `d` (saturating).
    pub fn after(self, d: Duration) -> Self {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Seconds from `earlier` to `self`; negative when `earlier` is later.
    /// Signed because a log line may carry a timestamp from just before the
    /// vertex's recorded start, and BuildKit prints that as a negative offset.
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (i128::from(self.0) - i128::from(earlier.0)) as f64 / 1e9
    }
}

/// Which output stream of a process a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where in a source file (usually the Dockerfile) a warning points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLocation {
    pub file: String,
    /// 1-based line number.
    pub line: u32,
}

/// One thing that happened during a build.
///
/// `digest` identifies a vertex (a node of the build graph); `name` is what
/// the user sees for it, in BuildKit's style: `[stage-name 2/5] COPY a /b` or
/// `[internal] load build context`. A vertex may be announced by
/// [`Event::VertexStarted`] or, when the cache answers before any work,
/// directly by [`Event::VertexCached`]. Events for a digest never announced
/// are ignored by the renderers, as BuildKit does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Work on a vertex began. Starting a vertex again after it completed
    /// opens a new interval; its reported time is the sum of the intervals.
    VertexStarted {
        digest: String,
        name: String,
        started: Timestamp,
    },
    /// The vertex's result came from the cache. May follow `VertexStarted`
    /// (the solver began, then found a cache hit) or stand alone.
    VertexCached {
        digest: String,
        name: String,
        completed: Timestamp,
    },
    /// The vertex finished its work. Its duration is `completed` minus the
    /// matching `started`, computed by the renderer so the two can't disagree.
    VertexCompleted {
        digest: String,
        completed: Timestamp,
    },
    /// The vertex failed with `error`, a one-line message.
    VertexFailed {
        digest: String,
        error: String,
        completed: Timestamp,
    },
    /// Output of the vertex's process. `data` is raw bytes, split anywhere
    /// (not necessarily at line ends); renderers reassemble lines. In JSON
    /// it is a string when it is valid UTF-8 and an array of byte values
    /// otherwise, so every chunk survives the round trip exactly.
    Log {
        digest: String,
        stream: Stream,
        #[serde(with = "log_data")]
        data: Vec<u8>,
        timestamp: Timestamp,
    },
    /// Progress of a sub-task of a vertex, such as `transferring context:`
    /// or a layer download. Updates with the same `id` replace each other.
    Status {
        digest: String,
        /// Stable key for the sub-task within the vertex.
        id: String,
        /// Text shown for the sub-task; empty means "show `id`".
        name: String,
        /// Bytes (or items) done so far.
        current: u64,
        /// Expected total; 0 when unknown.
        total: u64,
        /// When this update was made.
        timestamp: Timestamp,
        /// When the sub-task began; the first update's `timestamp` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started: Option<Timestamp>,
        /// Set on the final update.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        completed: Option<Timestamp>,
    },
    /// Something worth the user's attention that does not fail the build.
    Warning {
        /// The vertex the warning belongs to, if any; shown under it as
        /// `#N WARN: …` in plain mode.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<String>,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<SourceLocation>,
    },
    /// The build is over; renderers print their final output and stop.
    Done,
}

impl Event {
    /// The time the event carries, if it carries one.
    pub fn timestamp(&self) -> Option<Timestamp> {
        match self {
            Event::VertexStarted { started, .. } => Some(*started),
            Event::VertexCached { completed, .. }
            | Event::VertexCompleted { completed, .. }
            | Event::VertexFailed { completed, .. } => Some(*completed),
            Event::Log { timestamp, .. } | Event::Status { timestamp, .. } => Some(*timestamp),
            Event::Warning { .. } | Event::Done => None,
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Log bytes as a JSON string when they are UTF-8, else as a byte array.
/// Process output is almost always text, and a string keeps `rawjson`
/// readable; the array form exists so that no byte is ever lost.
mod log_data {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(data) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.collect_seq(data),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Text(text) => text.into_bytes(),
            Repr::Bytes(bytes) => bytes,
        })
    }
}
