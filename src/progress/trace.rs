//! The renderers' shared picture of the build: every vertex seen so far
//! with its time intervals, cache/error state, statuses, warnings and log
//! lines, folded from the event stream. Part of the `progress` LEAF module:
//! imports nothing project-internal except `util`.
//!
//! It mirrors the state BuildKit's progress UI keeps per vertex, so that the
//! plain and tty renderers can make the same decisions BuildKit does (which
//! vertex is "current", what time to print, which log lines to show).

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::event::{Event, SourceLocation, Timestamp};

/// How many complete log lines plain mode keeps per vertex to show again
/// when the vertex fails (BuildKit keeps the same number).
const ERROR_LOG_LINES: usize = 10;

/// How many log lines the tty view shows under a running vertex.
pub(super) const TAIL_LINES: usize = 6;

/// A span of time a vertex was being worked on; `stop` is `None` while it
/// is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Interval {
    pub start: Timestamp,
    pub stop: Option<Timestamp>,
}

impl Interval {
    /// Seconds covered, counting an open interval up to `now`.
    pub fn secs(&self, now: Timestamp) -> f64 {
        self.stop.unwrap_or(now).secs_since(self.start)
    }
}

/// Combines overlapping intervals, as BuildKit does before summing a
/// vertex's time: a vertex restarted while still running must not count the
/// overlap twice. An open interval swallows everything after it.
pub(super) fn merge_intervals(intervals: &[Interval]) -> Vec<Interval> {
    let mut sorted = intervals.to_vec();
    sorted.sort_by_key(|i| i.start);
    let mut merged: Vec<Interval> = Vec::with_capacity(sorted.len());
    for next in sorted {
        let Some(cur) = merged.last_mut() else {
            merged.push(next);
            continue;
        };
        match cur.stop {
            None => break,
            Some(stop) if stop < next.start => merged.push(next),
            Some(stop) => match next.stop {
                None => {
                    cur.stop = None;
                    break;
                }
                Some(next_stop) if next_stop > stop => cur.stop = Some(next_stop),
                Some(_) => {}
            },
        }
    }
    merged
}

/// The latest state of one sub-task ([`Event::Status`]).
#[derive(Debug, Clone)]
pub(super) struct StatusState {
    pub id: String,
    pub label: String,
    pub current: u64,
    pub total: u64,
    pub timestamp: Timestamp,
    pub started: Timestamp,
    pub completed: Option<Timestamp>,
}

/// A warning as kept for the end-of-build list.
#[derive(Debug, Clone)]
pub(super) struct WarningEntry {
    pub message: String,
    pub location: Option<SourceLocation>,
}

impl WarningEntry {
    /// The one-line form BuildKit calls "short": message and line.
    pub fn short(&self) -> String {
        match &self.location {
            Some(at) => format!("{} (line {})", self.message, at.line),
            None => self.message.clone(),
        }
    }
}

#[derive(Debug)]
pub(super) struct Vertex {
    pub name: String,
    pub intervals: Vec<Interval>,
    pub cached: bool,
    pub error: Option<String>,
    /// Sub-tasks in the order they first appeared.
    pub statuses: Vec<StatusState>,
    /// Short texts of this vertex's warnings.
    pub warnings: Vec<String>,

    /// Log lines not yet consumed, each `"<seconds> <text>"`. Plain mode
    /// prints and clears them; tty mode keeps them all to show on error.
    pub logs: Vec<Vec<u8>>,
    /// The last entry of `logs` is an unfinished line.
    pub logs_partial: bool,
    /// Bytes of the first entry of `logs` already printed (plain mode).
    pub logs_offset: usize,
    /// The last complete lines, for the error report (plain mode).
    pub logs_buffer: VecDeque<Vec<u8>>,
    /// Raw log bytes received, to rank vertices for the tty log view.
    pub log_bytes: usize,
    /// The last complete raw lines and the unfinished one, for the tty
    /// log view.
    pub tail: VecDeque<Vec<u8>>,
    pub tail_partial: Vec<u8>,

    /// Plain mode's `#N`; 0 until the vertex is first printed.
    pub index: usize,
    /// Updates since the plain printer last switched to this vertex, and
    /// when the first of them arrived: BuildKit's measure of how much a
    /// vertex is waiting to be shown.
    pub count: u64,
    pub last_block_time: Option<Timestamp>,
    /// Status ids (indices into `statuses`) updated since last printed.
    pub status_updates: BTreeSet<usize>,
    /// Warnings already printed.
    pub warning_idx: usize,
}

impl Vertex {
    fn new(name: String) -> Self {
        Vertex {
            name,
            intervals: Vec::new(),
            cached: false,
            error: None,
            statuses: Vec::new(),
            warnings: Vec::new(),
            logs: Vec::new(),
            logs_partial: false,
            logs_offset: 0,
            logs_buffer: VecDeque::new(),
            log_bytes: 0,
            tail: VecDeque::new(),
            tail_partial: Vec::new(),
            index: 0,
            count: 0,
            last_block_time: None,
            status_updates: BTreeSet::new(),
            warning_idx: 0,
        }
    }

    pub fn merged(&self) -> Vec<Interval> {
        merge_intervals(&self.intervals)
    }

    pub fn most_recent_interval(&self) -> Option<Interval> {
        self.merged().last().copied()
    }

    pub fn is_started(&self) -> bool {
        !self.intervals.is_empty()
    }

    pub fn is_completed(&self) -> bool {
        self.most_recent_interval()
            .is_some_and(|i| i.stop.is_some())
    }

    /// Total seconds worked, overlaps merged, open intervals up to `now`.
    pub fn busy_secs(&self, now: Timestamp) -> f64 {
        self.merged().iter().map(|i| i.secs(now)).sum()
    }

    /// Keeps a complete line for the error report.
    pub fn remember_line(&mut self, line: Vec<u8>) {
        if self.logs_buffer.len() == ERROR_LOG_LINES {
            self.logs_buffer.pop_front();
        }
        self.logs_buffer.push_back(line);
    }

    /// Notes an update for the plain printer's scheduling.
    fn touch(&mut self, at: Timestamp) {
        if self.count == 0 {
            self.last_block_time = Some(at);
        }
        self.count += 1;
    }

    /// Closes the open interval at `at`, or records an instant one when
    /// the vertex finished without having been started.
    fn finish(&mut self, at: Timestamp) {
        match self.intervals.iter_mut().rev().find(|i| i.stop.is_none()) {
            Some(open) => open.stop = Some(at.max(open.start)),
            None => self.intervals.push(Interval {
                start: at,
                stop: Some(at),
            }),
        }
    }

    fn add_log(&mut self, data: &[u8], at: Timestamp) {
        self.log_bytes += data.len();
        let start = self.most_recent_interval().map(|i| i.start);
        let offset = start.map_or(0.0, |s| at.secs_since(s));
        // BuildKit's precision: milliseconds for the first ten seconds,
        // then fewer digits so the column stays narrow.
        let prefix = if offset < 10.0 {
            format!("{offset:.3} ")
        } else if offset < 100.0 {
            format!("{offset:.2} ")
        } else {
            format!("{offset:.1} ")
        };
        let mut pieces = data.split(|&b| b == b'\n').peekable();
        let mut first = true;
        while let Some(piece) = pieces.next() {
            let last = pieces.peek().is_none();
            if last && piece.is_empty() {
                // Data ended with a newline: the line is complete.
                self.logs_partial = false;
                break;
            }
            if first && self.logs_partial && !self.logs.is_empty() {
                if let Some(line) = self.logs.last_mut() {
                    line.extend_from_slice(piece);
                }
            } else {
                let mut line = prefix.clone().into_bytes();
                line.extend_from_slice(piece);
                self.logs.push(line);
            }
            first = false;
            if last {
                self.logs_partial = true;
            }
        }
        self.add_tail(data);
    }

    fn add_tail(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                if self.tail.len() == TAIL_LINES {
                    self.tail.pop_front();
                }
                self.tail.push_back(std::mem::take(&mut self.tail_partial));
            } else {
                self.tail_partial.push(b);
            }
        }
    }
}

/// All vertices, in the order first seen, plus the bookkeeping the
/// renderers share.
#[derive(Debug, Default)]
pub(super) struct Trace {
    pub vertices: Vec<Vertex>,
    by_digest: HashMap<String, usize>,
    /// Vertices in the order they were first started (BuildKit's
    /// `t.vertexes`): the tty rows and the error report follow it.
    pub started_order: Vec<usize>,
    /// Vertices with something new for the plain printer.
    pub updates: BTreeSet<usize>,
    /// When the first vertex started.
    pub start_time: Option<Timestamp>,
    /// Every warning, for the end-of-build list.
    pub warnings: Vec<WarningEntry>,
    /// The latest timestamp any event carried: "now" as far as the
    /// stream knows, used for events that carry no time of their own.
    pub latest: Timestamp,
}

impl Trace {
    pub fn id(&self, digest: &str) -> Option<usize> {
        self.by_digest.get(digest).copied()
    }

    fn id_or_insert(&mut self, digest: &str, name: &str) -> usize {
        if let Some(id) = self.id(digest) {
            if !name.is_empty() {
                self.vertices[id].name = name.to_owned();
            }
            return id;
        }
        let id = self.vertices.len();
        self.vertices.push(Vertex::new(name.to_owned()));
        self.by_digest.insert(digest.to_owned(), id);
        id
    }

    /// Records the first start of a vertex.
    fn note_started(&mut self, id: usize, at: Timestamp) {
        if self.vertices[id].intervals.is_empty() {
            self.started_order.push(id);
            if self.start_time.is_none() {
                self.start_time = Some(at);
            }
        }
    }

    /// Folds one event in.
    pub fn apply(&mut self, event: &Event) {
        if let Some(at) = event.timestamp() {
            self.latest = self.latest.max(at);
        }
        match event {
            Event::VertexStarted {
                digest,
                name,
                started,
            } => {
                let id = self.id_or_insert(digest, name);
                self.note_started(id, *started);
                let v = &mut self.vertices[id];
                if v.intervals.iter().any(|i| i.start == *started) {
                    return;
                }
                v.intervals.push(Interval {
                    start: *started,
                    stop: None,
                });
                // A restart clears the previous outcome.
                v.cached = false;
                v.error = None;
                v.touch(*started);
                self.updates.insert(id);
            }
            Event::VertexCached {
                digest,
                name,
                completed,
            } => {
                let id = self.id_or_insert(digest, name);
                self.note_started(id, *completed);
                let v = &mut self.vertices[id];
                v.finish(*completed);
                v.cached = true;
                v.touch(*completed);
                self.updates.insert(id);
            }
            Event::VertexCompleted { digest, completed } => {
                self.finish(digest, *completed, None);
            }
            Event::VertexFailed {
                digest,
                error,
                completed,
            } => {
                self.finish(digest, *completed, Some(error.clone()));
            }
            Event::Log {
                digest,
                data,
                timestamp,
                ..
            } => {
                let Some(id) = self.id(digest) else { return };
                let v = &mut self.vertices[id];
                if data.is_empty() {
                    return;
                }
                v.add_log(data, *timestamp);
                v.touch(*timestamp);
                self.updates.insert(id);
            }
            Event::Status {
                digest,
                id: status_id,
                name,
                current,
                total,
                timestamp,
                started,
                completed,
            } => {
                let Some(id) = self.id(digest) else { return };
                let v = &mut self.vertices[id];
                let label = if name.is_empty() { status_id } else { name };
                let idx = match v.statuses.iter().position(|s| s.id == *status_id) {
                    Some(idx) => idx,
                    None => {
                        v.statuses.push(StatusState {
                            id: status_id.clone(),
                            label: label.clone(),
                            current: 0,
                            total: 0,
                            timestamp: *timestamp,
                            started: started.unwrap_or(*timestamp),
                            completed: None,
                        });
                        v.statuses.len() - 1
                    }
                };
                let s = &mut v.statuses[idx];
                s.label = label.clone();
                s.current = *current;
                s.total = *total;
                s.timestamp = *timestamp;
                if let Some(started) = started {
                    s.started = *started;
                }
                s.completed = *completed;
                v.status_updates.insert(idx);
                v.touch(*timestamp);
                self.updates.insert(id);
            }
            Event::Warning {
                digest,
                message,
                location,
            } => {
                let entry = WarningEntry {
                    message: message.clone(),
                    location: location.clone(),
                };
                // Like BuildKit, a warning is shown with the vertex's next
                // output rather than forcing the vertex to be printed again.
                if let Some(id) = digest.as_deref().and_then(|d| self.id(d)) {
                    let latest = self.latest;
                    let v = &mut self.vertices[id];
                    v.warnings.push(entry.short());
                    v.touch(latest);
                }
                self.warnings.push(entry);
            }
            Event::Done => {}
        }
    }

    fn finish(&mut self, digest: &str, at: Timestamp, error: Option<String>) {
        let Some(id) = self.id(digest) else { return };
        self.note_started(id, at);
        let v = &mut self.vertices[id];
        v.finish(at);
        v.error = error;
        v.touch(at);
        self.updates.insert(id);
    }

    /// Vertices that failed, in start order, for the error report.
    pub fn failed(&self) -> impl Iterator<Item = &Vertex> {
        self.started_order
            .iter()
            .map(|&id| &self.vertices[id])
            .filter(|v| v.error.as_deref().is_some_and(|e| !is_canceled(e)))
    }
}

/// BuildKit shows errors that are context cancellations as `CANCELED`
/// rather than `ERROR`: they are a consequence of another failure.
pub(super) fn is_canceled(error: &str) -> bool {
    error.ends_with("context canceled")
}
