//! The handle the solver clones into every task to report progress. Part
//! of the `progress` LEAF module: imports nothing project-internal except
//! `util`.
//!
//! It wraps a `std::sync::mpsc` sender rather than a tokio channel because
//! file operations run in `spawn_blocking` threads and plain threads must
//! be able to report too; sending on an unbounded std channel never blocks,
//! so it is just as safe inside async tasks.

use std::sync::mpsc;
use std::sync::Arc;

use super::clock::{Clock, SystemClock};
use super::event::{Event, SourceLocation, Stream, Timestamp};

/// Sends [`Event`]s to the renderer. Cheap to clone; every method is
/// fire-and-forget (see [`Sender::send`]).
#[derive(Debug, Clone)]
pub struct Sender {
    tx: mpsc::Sender<Event>,
    clock: Arc<dyn Clock>,
}

impl Sender {
    pub(crate) fn new(tx: mpsc::Sender<Event>, clock: Arc<dyn Clock>) -> Self {
        Sender { tx, clock }
    }

    /// A sender whose events go nowhere, for running the solver without
    /// any progress output (library use, tests of other modules).
    pub fn discard() -> Self {
        let (tx, _rx) = mpsc::channel();
        Sender::new(tx, Arc::new(SystemClock))
    }

    /// Sends one event. A renderer that has already stopped is not an
    /// error: losing progress output must never fail or stall a build.
    pub fn send(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// The time this sender stamps events with.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn started(&self, digest: impl Into<String>, name: impl Into<String>) {
        self.send(Event::VertexStarted {
            digest: digest.into(),
            name: name.into(),
            started: self.now(),
        });
    }

    pub fn cached(&self, digest: impl Into<String>, name: impl Into<String>) {
        self.send(Event::VertexCached {
            digest: digest.into(),
            name: name.into(),
            completed: self.now(),
        });
    }

    pub fn completed(&self, digest: impl Into<String>) {
        self.send(Event::VertexCompleted {
            digest: digest.into(),
            completed: self.now(),
        });
    }

    pub fn failed(&self, digest: impl Into<String>, error: impl Into<String>) {
        self.send(Event::VertexFailed {
            digest: digest.into(),
            error: error.into(),
            completed: self.now(),
        });
    }

    pub fn log(&self, digest: impl Into<String>, stream: Stream, data: impl Into<Vec<u8>>) {
        self.send(Event::Log {
            digest: digest.into(),
            stream,
            data: data.into(),
            timestamp: self.now(),
        });
    }

    /// A sub-task update; `done` marks the last one. The renderer takes
    /// the first update's time as the sub-task's start.
    pub fn status(&self, digest: &str, id: &str, name: &str, progress: (u64, u64), done: bool) {
        let now = self.now();
        let (current, total) = progress;
        self.send(Event::Status {
            digest: digest.into(),
            id: id.into(),
            name: name.into(),
            current,
            total,
            timestamp: now,
            started: None,
            completed: done.then_some(now),
        });
    }

    pub fn warning(
        &self,
        digest: Option<&str>,
        message: impl Into<String>,
        location: Option<SourceLocation>,
    ) {
        self.send(Event::Warning {
            digest: digest.map(str::to_owned),
            message: message.into(),
            location,
        });
    }
}
