//! The `tty` renderer: BuildKit's live console view, redrawn in place. Part
//! of the `progress` LEAF module: imports nothing project-internal except
//! `util`.
//!
//! ```text
//! [+] Building 2.3s (4/5)
//!  => [internal] load build definition from Dockerfile               0.0s
//!  => CACHED [base 1/2] FROM docker.io/library/alpine                 0.0s
//!  => [base 2/2] RUN make                                             1.9s
//!  => => # cc -c main.c
//! ```
//!
//! Each frame is computed whole by [`frame`] (a pure function of the trace,
//! the time and the terminal size, so tests can check it exactly) and shown
//! through an indicatif progress bar whose message is the frame; indicatif
//! does the cursor work of replacing the previous frame. One bar holding the
//! whole frame, rather than a `MultiProgress` with a bar per row, because
//! the rows must be chosen together (BuildKit keeps running rows visible
//! when the list outgrows the terminal) and because a multi-bar redraw
//! updates only the bars that happen to win its rate limiter.
//!
//! When the build ends the live view is cleared and the final frame, with
//! every row, is written as ordinary text so it stays in the scrollback.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use super::event::{Event, Timestamp};
use super::format::{self, BLUE, FAINT, RED, RESET, YELLOW};
use super::trace::{is_canceled, Interval, Trace, TAIL_LINES};
use super::{Render, TermSize};

/// Redraws come at most this often (BuildKit's display rate).
const FRAME_INTERVAL: Duration = Duration::from_millis(100);
/// Columns reserved beside the log lines of a running vertex.
const TERM_PAD: usize = 10;
/// BuildKit's size for a console that does not report one.
const FALLBACK_SIZE: (usize, usize) = (80, 10);

/// The terminal's size now, as (columns, rows).
fn size_of(size: TermSize) -> (usize, usize) {
    match size {
        TermSize::Fixed { width, height } => (width.into(), height.into()),
        TermSize::Stderr => {
            let stderr = io::stderr();
            if !stderr.is_terminal() {
                return FALLBACK_SIZE;
            }
            match terminal_size::terminal_size_of(stderr) {
                Some((w, h)) if w.0 > 0 && h.0 > 0 => (w.0.into(), h.0.into()),
                _ => FALLBACK_SIZE,
            }
        }
    }
}

/// Layout inputs for one frame.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub width: usize,
    pub height: usize,
    pub color: bool,
    /// The final frame: every row, no height limit, `FINISHED` when due.
    pub all: bool,
}

#[derive(Debug)]
struct Job {
    name: String,
    status: String,
    intervals: Vec<Interval>,
    completed: bool,
    error: bool,
    canceled: bool,
    /// The vertex whose log tail may be shown under this row.
    vertex: Option<usize>,
    show_tail: bool,
}

/// The lines of one frame, header first, without trailing newlines.
pub(super) fn frame(trace: &Trace, now: Timestamp, layout: Layout) -> Vec<String> {
    let width = layout.width;
    let total = trace.vertices.len();
    let done = trace.vertices.iter().filter(|v| v.is_completed()).count();
    let elapsed = trace
        .start_time
        .map_or(0.0, |start| now.secs_since(start).max(0.0));
    let mut header = format!("[+] Building {elapsed:.1}s ({done}/{total})");
    if layout.all && done > 0 && done == total {
        header.push_str(" FINISHED");
    }
    let mut lines = vec![truncate(&header, width)];

    let mut jobs = jobs(trace);
    let hidden_by_tails = choose_tails(trace, &mut jobs, layout.height);
    if !layout.all {
        let limit = layout.height as isize - 2 - hidden_by_tails as isize;
        jobs = wrap_height(jobs, limit);
    }

    for job in &jobs {
        if job.intervals.is_empty() {
            continue;
        }
        let mut secs: f64 = job.intervals.iter().map(|i| i.secs(now)).sum();
        if secs < 0.05 {
            secs = 0.0;
        }
        let timer = format!(" {secs:3.1}s");
        // BuildKit's arithmetic, which counts the newline after the timer.
        let timer_cols = timer.len() + 1;
        let mut left = width as isize - 4 - timer_cols as isize - 1;
        let status_cols = job.status.chars().count() as isize;
        let show_status = !job.status.is_empty() && left + status_cols > 20;
        if show_status {
            left -= status_cols + 1;
        }
        if left < 12 {
            // Too narrow to say anything useful.
            continue;
        }
        let mut text = format!(" => {}", truncate(&job.name, left as usize));
        if show_status {
            text.push(' ');
            text.push_str(&job.status);
        }
        let pad = width.saturating_sub(timer_cols + 1);
        let mut line = format!("{text:<pad$} {timer}");
        if job.completed && layout.color {
            let color = if job.canceled {
                YELLOW
            } else if job.error {
                RED
            } else {
                BLUE
            };
            line = format!("{color}{line}{RESET}");
        }
        lines.push(line);
        if let (true, Some(id)) = (job.show_tail, job.vertex) {
            let room = width.saturating_sub(TERM_PAD).max(1);
            for raw in tail_lines(trace, id) {
                let text = truncate(&clean(&raw), room);
                if text.trim().is_empty() {
                    continue;
                }
                let row = format!(" => => # {text}");
                lines.push(if layout.color {
                    format!("{FAINT}{row}{RESET}")
                } else {
                    row
                });
            }
        }
    }
    lines
}

/// One row per started vertex, then rows for its statuses and warnings.
fn jobs(trace: &Trace) -> Vec<Job> {
    let mut jobs = Vec::new();
    for &id in &trace.started_order {
        let v = &trace.vertices[id];
        let mut name = v.name.replace('\t', " ");
        let (mut error, mut canceled) = (false, false);
        if let Some(e) = &v.error {
            if is_canceled(e) {
                canceled = true;
                name = format!("CANCELED {name}");
            } else {
                error = true;
                name = format!("ERROR {name}");
            }
        }
        if v.cached {
            name = format!("CACHED {name}");
        }
        let intervals = v.merged();
        jobs.push(Job {
            name,
            status: String::new(),
            completed: intervals.iter().all(|i| i.stop.is_some()),
            intervals,
            error,
            canceled,
            vertex: Some(id),
            show_tail: false,
        });
        for s in &v.statuses {
            jobs.push(Job {
                name: format!("=> {}", s.label),
                status: format::progress(s.current, s.total),
                intervals: vec![Interval {
                    start: s.started,
                    stop: s.completed,
                }],
                completed: s.completed.is_some(),
                error: false,
                canceled: false,
                vertex: None,
                show_tail: false,
            });
        }
        for w in &v.warnings {
            // BuildKit times a warning row with its vertex and never marks
            // it finished, so it stays in view and is never coloured.
            jobs.push(Job {
                name: format!("WARN: {w}"),
                status: String::new(),
                intervals: v.most_recent_interval().into_iter().collect(),
                completed: false,
                error: false,
                canceled: true,
                vertex: None,
                show_tail: false,
            });
        }
    }
    jobs
}

/// Picks the running vertices whose last log lines fit on screen, the
/// chattiest first; returns how many rows those lines take.
fn choose_tails(trace: &Trace, jobs: &mut [Job], height: usize) -> usize {
    let in_use = jobs.iter().filter(|j| !j.completed).count();
    let mut candidates: Vec<usize> = (0..jobs.len())
        .filter(|&i| {
            let j = &jobs[i];
            !j.completed && j.vertex.is_some_and(|id| trace.vertices[id].log_bytes > 0)
        })
        .collect();
    candidates.sort_by_key(|&i| {
        std::cmp::Reverse(jobs[i].vertex.map_or(0, |id| trace.vertices[id].log_bytes))
    });
    let mut free = height as isize - 2 - in_use as isize;
    let limit = TAIL_LINES as isize + 3;
    let mut hidden = 0;
    for i in candidates {
        if free <= limit {
            break;
        }
        jobs[i].show_tail = true;
        if let Some(id) = jobs[i].vertex {
            hidden += tail_lines(trace, id).len();
        }
        free -= limit;
    }
    hidden
}

/// Keeps the last `limit` rows, but brings running rows that would be cut
/// off back into view in place of finished ones.
fn wrap_height(jobs: Vec<Job>, limit: isize) -> Vec<Job> {
    if limit < 0 {
        return Vec::new();
    }
    let limit = limit as usize;
    if jobs.len() <= limit {
        return jobs;
    }
    let mut jobs = jobs;
    let visible = jobs.split_off(jobs.len() - limit);
    let mut invisible: Vec<Job> = jobs.into_iter().filter(|j| !j.completed).collect();
    if invisible.is_empty() {
        return visible;
    }
    // Drop finished rows from the top of the visible part, one for each
    // hidden running row.
    let mut budget = invisible.len();
    let mut kept = Vec::with_capacity(visible.len());
    for job in visible {
        if !job.completed || budget == 0 {
            kept.push(job);
        }
        budget = budget.saturating_sub(1);
    }
    let freed = limit - kept.len();
    let mut out = invisible.split_off(invisible.len() - freed.min(invisible.len()));
    out.extend(kept);
    out
}

/// The last few log lines of a vertex, the unfinished one included.
fn tail_lines(trace: &Trace, id: usize) -> Vec<Vec<u8>> {
    let v = &trace.vertices[id];
    let mut lines: Vec<Vec<u8>> = v.tail.iter().cloned().collect();
    if !v.tail_partial.is_empty() {
        lines.push(v.tail_partial.clone());
    }
    let skip = lines.len().saturating_sub(TAIL_LINES);
    lines.split_off(skip)
}

/// Makes a raw output line safe to draw in one row: keeps what a terminal
/// would show after the last carriage return, drops escape sequences and
/// other control characters.
fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let shown = text
        .split('\r')
        .rev()
        .find(|part| !part.is_empty())
        .unwrap_or_default();
    let mut out = String::with_capacity(shown.len());
    let mut chars = shown.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ parameters final-byte; otherwise ESC + one char.
                if chars.next_if_eq(&'[').is_some() {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The renderer's output, shared by indicatif (through [`TermLike`]) and
/// the final report.
#[derive(Clone)]
struct Out(Arc<Mutex<Box<dyn Write + Send>>>);

impl Out {
    fn lock(&self) -> io::Result<MutexGuard<'_, Box<dyn Write + Send>>> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("progress output lock poisoned"))
    }
}

/// Lets indicatif draw onto the injected writer with ANSI cursor moves.
struct TermOut {
    out: Out,
    size: TermSize,
}

impl fmt::Debug for TermOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TermOut").field("size", &self.size).finish()
    }
}

impl TermOut {
    fn emit(&self, s: &str) -> io::Result<()> {
        self.out.lock()?.write_all(s.as_bytes())
    }
}

impl TermLike for TermOut {
    fn width(&self) -> u16 {
        u16::try_from(size_of(self.size).0).unwrap_or(u16::MAX)
    }

    fn height(&self) -> u16 {
        u16::try_from(size_of(self.size).1).unwrap_or(u16::MAX)
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.emit(&format!("\x1b[{n}A"))
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.emit(&format!("\x1b[{n}B"))
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.emit(&format!("\x1b[{n}C"))
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.emit(&format!("\x1b[{n}D"))
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        let mut out = self.out.lock()?;
        out.write_all(s.as_bytes())?;
        out.write_all(b"\n")
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.emit(s)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.emit("\r\x1b[2K")
    }

    fn flush(&self) -> io::Result<()> {
        self.out.lock()?.flush()
    }
}

pub(super) struct Tty {
    out: Out,
    bar: ProgressBar,
    trace: Trace,
    size: TermSize,
    color: bool,
    last_draw: Option<Instant>,
}

impl Tty {
    pub fn new(out: Box<dyn Write + Send>, size: TermSize, color: bool) -> Self {
        let out = Out(Arc::new(Mutex::new(out)));
        let target = ProgressDrawTarget::term_like(Box::new(TermOut {
            out: out.clone(),
            size,
        }));
        let style =
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(None, target).with_style(style);
        Tty {
            out,
            bar,
            trace: Trace::default(),
            size,
            color,
            last_draw: None,
        }
    }

    fn draw(&mut self, now: Timestamp) {
        let (width, height) = size_of(self.size);
        let lines = frame(
            &self.trace,
            now,
            Layout {
                width,
                height,
                color: self.color,
                all: false,
            },
        );
        self.bar.set_message(lines.join("\n"));
        self.last_draw = Some(Instant::now());
    }
}

impl Render for Tty {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        self.trace.apply(event);
        let due = self
            .last_draw
            .is_none_or(|at| at.elapsed() >= FRAME_INTERVAL);
        if due {
            let now = self.trace.latest;
            self.draw(now);
        }
        Ok(())
    }

    fn tick(&mut self, now: Timestamp) -> io::Result<()> {
        // Redraw even without news so that running timers advance.
        self.draw(now.max(self.trace.latest));
        Ok(())
    }

    fn finish(&mut self, now: Timestamp) -> io::Result<()> {
        let now = now.max(self.trace.latest);
        self.bar.finish_and_clear();
        let (width, height) = size_of(self.size);
        let lines = frame(
            &self.trace,
            now,
            Layout {
                width,
                height,
                color: self.color,
                all: true,
            },
        );
        let mut out = self.out.lock()?;
        for line in &lines {
            writeln!(out, "{line}")?;
        }
        format::error_logs(&self.trace, true, &mut *out)?;
        format::warnings(&self.trace, self.color, &mut *out)?;
        out.flush()
    }
}
