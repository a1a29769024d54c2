//! The `plain` renderer: BuildKit's text output, line for line. Part of
//! the `progress` LEAF module: imports nothing project-internal except
//! `util`.
//!
//! Each vertex gets a number the first time it is printed (`#1`, `#2`, …
//! so numbers only ever grow down the page) and its lines are prefixed
//! with it: the name, statuses, `WARN:` lines, log lines as
//! `#N <seconds> <text>`, then `#N CACHED`, `#N DONE 1.2s` or
//! `#N ERROR: msg`. Output of concurrent vertices is not interleaved line
//! by line: like BuildKit, one vertex is "current" and the others' output
//! is held back until it finishes or has been waiting long enough, then
//! printed as a block under a repeated header (`#1 ...` closes the block
//! that is interrupted).
//!
//! Every decision uses the events' own timestamps as "now", so a scripted
//! event sequence always renders the same text.

use std::collections::HashMap;
use std::io::{self, Write};

use super::event::{Event, Timestamp};
use super::format;
use super::trace::{is_canceled, Trace};
use super::Render;

/// A vertex that has waited this long for its output is shown even if
/// the current one is still busy (BuildKit's `maxDelay`).
const MAX_DELAY_SECS: f64 = 10.0;
/// The current vertex keeps the screen at least this long, scaled by how
/// much of the activity is its own (BuildKit's `antiFlicker`).
const ANTI_FLICKER_SECS: f64 = 5.0;
/// A status line is reprinted only after this much time…
const MIN_STATUS_SECS: f64 = 5.0;
/// …or this much progress (a fraction of its total).
const MIN_STATUS_PROGRESS: f64 = 0.05;

#[derive(Debug, Clone, Copy)]
struct LastStatus {
    current: u64,
    timestamp: Timestamp,
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    block_secs: f64,
    speed: f64,
    share: f64,
    over_limit: bool,
}

pub(super) struct Plain {
    out: Box<dyn Write + Send>,
    trace: Trace,
    /// The vertex whose block is open.
    current: Option<usize>,
    not_first: bool,
    next_index: usize,
    /// When each (vertex, status) line was last printed.
    last: HashMap<(usize, usize), LastStatus>,
}

impl Plain {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Plain {
            out,
            trace: Trace::default(),
            current: None,
            not_first: false,
            next_index: 0,
            last: HashMap::new(),
        }
    }

    /// Prints what is due: finished vertices first (in the order they
    /// finished), then the current vertex's news, then maybe a switch to
    /// another vertex that has been waiting.
    fn print(&mut self, now: Timestamp) -> io::Result<()> {
        let (mut completed, rest): (Vec<usize>, Vec<usize>) = self
            .trace
            .updates
            .iter()
            .partition(|&&id| self.trace.vertices[id].is_completed());

        let current = self.current;
        if let Some(c) = current.filter(|c| completed.contains(c)) {
            self.print_vtx(c)?;
        }
        completed.sort_by_key(|&id| {
            self.trace.vertices[id]
                .most_recent_interval()
                .and_then(|i| i.stop)
        });
        for id in completed.iter().copied().filter(|&id| Some(id) != current) {
            self.print_vtx(id)?;
        }

        if rest.is_empty() {
            if let Some(c) = current {
                let v = &self.trace.vertices[c];
                if v.is_started() && !v.is_completed() {
                    return Ok(());
                }
            }
            // Nothing new: open the block of a vertex still running, so
            // the last lines on screen say what the build is waiting for.
            let open = self.trace.started_order.iter().copied().find(|&id| {
                let v = &self.trace.vertices[id];
                v.is_started() && !v.is_completed()
            });
            if let Some(id) = open {
                self.print_vtx(id)?;
            }
            return Ok(());
        }

        if let Some(c) = current.filter(|c| rest.contains(c)) {
            self.print_vtx(c)?;
        }

        let current_done = current.is_none_or(|c| completed.contains(&c));
        let mut candidates = rest.clone();
        if let Some(c) = current.filter(|_| !current_done) {
            if !candidates.contains(&c) {
                candidates.push(c);
            }
        }
        let mut stats: HashMap<usize, Stat> = HashMap::new();
        let mut sum = 0.0;
        let mut max: Option<usize> = None;
        for id in candidates {
            let v = &self.trace.vertices[id];
            let Some(since) = v.last_block_time else {
                continue;
            };
            // A floor on the waiting time keeps the speed finite when an
            // update and the decision share a timestamp.
            let block_secs = now.secs_since(since).max(0.001);
            let speed = v.count as f64 / block_secs;
            let over_limit = block_secs > MAX_DELAY_SECS && Some(id) != current;
            stats.insert(
                id,
                Stat {
                    block_secs,
                    speed,
                    share: 0.0,
                    over_limit,
                },
            );
            sum += speed;
            let faster = max.is_none_or(|m| stats[&m].speed < speed);
            if over_limit || faster {
                max = Some(id);
            }
        }
        for stat in stats.values_mut() {
            stat.share = if sum > 0.0 { stat.speed / sum } else { 0.0 };
        }
        let Some(max) = max else { return Ok(()) };

        if current_done {
            return self.print_vtx(max);
        }
        // Show a vertex that has been held back for too long.
        if let Some(id) = rest
            .iter()
            .copied()
            .find(|id| stats.get(id).is_some_and(|s| s.over_limit))
        {
            return self.print_vtx(id);
        }
        // Otherwise switch when the current vertex has had the screen for
        // longer than its share of the activity earns it.
        let Some(cur) = current.and_then(|c| stats.get(&c)) else {
            return self.print_vtx(max);
        };
        if ANTI_FLICKER_SECS / (1.0 - cur.share) < cur.block_secs {
            return self.print_vtx(max);
        }
        Ok(())
    }

    fn print_vtx(&mut self, id: usize) -> io::Result<()> {
        if self.trace.vertices[id].index == 0 {
            self.next_index += 1;
            self.trace.vertices[id].index = self.next_index;
        }

        if Some(id) != self.current {
            if let Some(old) = self.current {
                let o = &mut self.trace.vertices[old];
                if o.logs_partial {
                    writeln!(self.out)?;
                }
                o.logs_offset = 0;
                o.count = 0;
                writeln!(self.out, "#{} ...", o.index)?;
            }
            if self.not_first {
                writeln!(self.out)?;
            }
            self.not_first = true;
            let v = &self.trace.vertices[id];
            writeln!(self.out, "#{} {}", v.index, v.name)?;
        }

        let out = &mut self.out;
        let v = &mut self.trace.vertices[id];
        let n = v.index;

        let mut open_status = false;
        let updated = std::mem::take(&mut v.status_updates);
        for (sid, s) in v.statuses.iter().enumerate() {
            if !updated.contains(&sid) {
                continue;
            }
            if let (Some(last), None) = (self.last.get(&(id, sid)), s.completed) {
                let progressed = if s.total > 0 {
                    s.current.saturating_sub(last.current) as f64 / s.total as f64
                } else {
                    0.0
                };
                let waited = s.timestamp.secs_since(last.timestamp);
                if progressed < MIN_STATUS_PROGRESS && waited < MIN_STATUS_SECS {
                    continue;
                }
            }
            self.last.insert(
                (id, sid),
                LastStatus {
                    current: s.current,
                    timestamp: s.timestamp,
                },
            );
            let mut progress = format::progress(s.current, s.total);
            if !progress.is_empty() {
                progress.insert(0, ' ');
            }
            let end = s.completed.unwrap_or(s.timestamp);
            let secs = end.secs_since(s.started);
            let mut tm = if secs > 0.01 {
                format!(" {secs:.1}s")
            } else {
                String::new()
            };
            if s.completed.is_some() {
                tm.push_str(" done");
            } else {
                open_status = true;
            }
            writeln!(out, "#{n} {}{progress}{tm}", s.label)?;
        }

        for w in &v.warnings[v.warning_idx..] {
            writeln!(out, "#{n} WARN: {w}")?;
        }
        v.warning_idx = v.warnings.len();

        let last = v.logs.len().saturating_sub(1);
        let mut finished_lines = Vec::new();
        for (i, line) in v.logs.iter().enumerate() {
            if i == 0 && v.logs_offset != 0 {
                // The start of this line was printed before; continue it.
                out.write_all(line.get(v.logs_offset..).unwrap_or_default())?;
            } else {
                write!(out, "#{n} ")?;
                out.write_all(line)?;
            }
            let unfinished = i == last && v.logs_partial;
            if !unfinished {
                writeln!(out)?;
                finished_lines.push(line.clone());
            }
        }
        for line in finished_lines {
            v.remember_line(line);
        }
        if !v.logs.is_empty() {
            if v.logs_partial {
                v.logs.drain(..last);
                v.logs_offset = v.logs[0].len();
            } else {
                v.logs.clear();
                v.logs_offset = 0;
            }
        }

        self.current = Some(id);
        if v.is_completed() && !open_status {
            self.current = None;
            v.count = 0;
            if v.logs_partial {
                writeln!(out)?;
            }
            match &v.error {
                Some(e) if is_canceled(e) => writeln!(out, "#{n} CANCELED")?,
                Some(e) => writeln!(out, "#{n} ERROR: {e}")?,
                None if v.cached => writeln!(out, "#{n} CACHED")?,
                None => {
                    let mut tm = String::new();
                    if v.is_started() {
                        // Completed, so every interval is closed and `now`
                        // is never used.
                        let secs = v.busy_secs(Timestamp::default());
                        tm = format!(" {secs:.1}s");
                    }
                    writeln!(out, "#{n} DONE{tm}")?;
                }
            }
        }
        self.trace.updates.remove(&id);
        Ok(())
    }
}

impl Render for Plain {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        self.trace.apply(event);
        let now = self.trace.latest;
        self.print(now)?;
        self.out.flush()
    }

    fn tick(&mut self, now: Timestamp) -> io::Result<()> {
        let now = now.max(self.trace.latest);
        self.print(now)?;
        self.out.flush()
    }

    fn finish(&mut self, now: Timestamp) -> io::Result<()> {
        let now = now.max(self.trace.latest);
        self.print(now)?;
        format::error_logs(&self.trace, false, &mut self.out)?;
        format::warnings(&self.trace, false, &mut self.out)?;
        self.out.flush()
    }
}
