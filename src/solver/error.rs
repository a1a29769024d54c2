//! The solver's errors: [`SolveError`] names the vertex that failed (its
//! progress name and Dockerfile lines) and wraps the [`VertexError`] that
//! says which operation went wrong inside it.
//!
//! Owns only error types; imports the op modules', cache's and
//! snapshotter's errors, never `cli` or
//! `dockerfile` (the CLI renders the Dockerfile snippet from
//! [`LineRange`]).

use super::ops::exec::ExecError;
use super::ops::exec_mounts::MountError;
use super::ops::file::FileError;
use super::ops::image::ImageOpError;
use super::ops::merge::MergeError;
use super::ops::source::SourceOpError;
use crate::cache::CacheError;
use crate::llb::{Digest, Metadata};
use crate::snapshot::SnapshotError;

/// Lines `start..=end` (1-based) of the Dockerfile a vertex came from, as
/// the frontend records them in `Metadata.description["location"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRange {
    pub start: usize,
    pub end: usize,
}

impl LineRange {
    /// The key under which the frontend stores a vertex's location.
    pub const KEY: &'static str = "location";

    /// Reads `"start-end"` (or a single `"line"`) from a vertex's metadata.
    /// A malformed value is ignored: it only costs the error its snippet.
    pub fn of(meta: &Metadata) -> Option<LineRange> {
        let text = meta.description.get(Self::KEY)?;
        let (start, end) = match text.split_once('-') {
            Some((s, e)) => (s.trim().parse().ok()?, e.trim().parse().ok()?),
            None => {
                let line = text.trim().parse().ok()?;
                (line, line)
            }
        };
        (start >= 1 && end >= start).then_some(LineRange { start, end })
    }
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// A vertex's operation failed; the first failure cancels the build.
    #[error("failed to solve: {name}")]
    Vertex {
        /// The vertex's progress name (`[stage-0 2/3] COPY a /`).
        name: String,
        /// Where in the Dockerfile the vertex came from, if known.
        location: Option<LineRange>,
        /// Boxed: op errors are large and every result carries this.
        #[source]
        source: Box<VertexError>,
    },
    /// The graph's root names a vertex the graph does not hold.
    #[error("the build graph has no vertex {0} (its root or an input is dangling)")]
    MissingVertex(Digest),
    /// A solve returned fewer results than it had roots: a bug.
    #[error("the solve returned no result for its root (a bug in bk)")]
    MissingResult,
    /// A vertex's task panicked: a bug, reported instead of hanging.
    #[error("failed to solve: {name}: the step's task panicked (a bug in bk)")]
    TaskPanicked {
        name: String,
        location: Option<LineRange>,
    },
}

impl SolveError {
    /// The Dockerfile lines of the failing vertex, for the CLI's snippet.
    pub fn location(&self) -> Option<LineRange> {
        match self {
            SolveError::Vertex { location, .. } | SolveError::TaskPanicked { location, .. } => {
                *location
            }
            SolveError::MissingVertex(_) | SolveError::MissingResult => None,
        }
    }

    /// The failing vertex's progress name.
    pub fn vertex_name(&self) -> Option<&str> {
        match self {
            SolveError::Vertex { name, .. } | SolveError::TaskPanicked { name, .. } => Some(name),
            SolveError::MissingVertex(_) | SolveError::MissingResult => None,
        }
    }
}

/// What went wrong inside one vertex.
#[derive(Debug, thiserror::Error)]
pub enum VertexError {
    /// An op or source kind bk cannot run yet.
    #[error("not supported yet: {what} ({detail})")]
    NotSupported { what: String, detail: String },
    #[error(transparent)]
    Source(#[from] SourceOpError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Image(#[from] ImageOpError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// Downloading an `http(s)://` source failed.
    #[error(transparent)]
    Http(#[from] crate::source::http::HttpError),
    /// Reading a `git://` source failed.
    #[error(transparent)]
    Git(#[from] crate::source::git::GitError),
    /// Making a git checkout's snapshot failed.
    #[error("failed to make a snapshot for {url}")]
    GitSnapshot {
        url: String,
        #[source]
        source: crate::snapshot::SnapshotError,
    },
    /// Storing or reusing a download failed.
    #[error("failed to store the download of {url}")]
    HttpStore {
        url: String,
        #[source]
        source: crate::util::fs::FsError,
    },
    /// Making the download's snapshot failed.
    #[error("failed to make a snapshot for {url}")]
    HttpSnapshot {
        url: String,
        #[source]
        source: SnapshotError,
    },
    /// Preparing a `RUN --mount` failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Reading the cache database before executing failed.
    #[error("failed to look up the build cache")]
    CacheLookup(#[source] CacheError),
    /// Recording a fresh result in the cache database failed.
    #[error("failed to record the result in the build cache")]
    CacheRecord(#[source] CacheError),
    /// Measuring a committed snapshot for its cache row failed.
    #[error("failed to measure the result")]
    MeasureSnapshot(#[source] SnapshotError),
    /// An input failed; its own error is the one reported, so this one is
    /// only ever seen if the scheduler has a bug.
    #[error("input {digest} failed")]
    InputFailed { digest: Digest },
    /// The pool of blocking workers was shut down (only while exiting).
    #[error("the worker pool is shut down")]
    WorkerPoolClosed,
    /// A blocking worker panicked or was shut down.
    #[error("a blocking worker thread died")]
    Blocking(#[source] tokio::task::JoinError),
}
