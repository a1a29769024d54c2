//! Build progress: the events the solver reports and the renderers that
//! show them on stderr the way `docker buildx build` does. This is a LEAF
//! module: it imports nothing project-internal except `util`, so that the
//! solver, the cache and the CLI can all depend on it without cycles.
//!
//! The solver holds a [`Sender`] (cloned freely across tasks and blocking
//! threads) and reports [`Event`]s; [`start`] spawns one renderer thread
//! that folds them into a picture of the build and draws it in the chosen
//! [`Mode`]; [`Handle::finish`] ends the stream, lets the renderer print its
//! final report, and returns a [`Summary`] of what ran and what the cache
//! answered.
//!
//! Modes, as `--progress` names them:
//! - `plain`: BuildKit's numbered text (`#3 [base 2/3] RUN make`,
//!   `#3 0.512 cc -c main.c`, `#3 DONE 1.2s`), decided as BuildKit decides.
//! - `tty`: the live `[+] Building 1.2s (5/7)` view; falls back to `plain`
//!   when the output is not a terminal.
//! - `rawjson`: every event as one JSON object per line.
//! - `quiet`: nothing.
//! - `auto`: `tty` on a terminal whose `TERM` is not `dumb`, else `plain`.
//!
//! Colour is used only by `tty`, and never when `NO_COLOR` is set to a
//! non-empty value (<https://no-color.org>).

mod clock;
mod event;
mod format;
mod plain;
mod sender;
mod summary;
mod trace;
mod tty;

#[cfg(test)]
mod tests;

use std::io::{self, IsTerminal, Write};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{Event, SourceLocation, Stream, Timestamp};
pub use sender::Sender;
pub use summary::{Recorder, Summary};

/// How often the renderer wakes without news: tty timers advance and the
/// plain printer reconsiders which vertex to show (BuildKit's ticker).
const TICK: Duration = Duration::from_millis(150);

/// Why progress output could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("failed to start the progress renderer")]
    Spawn(#[source] io::Error),
    /// Writing to the output failed. Rendering stopped there but counting
    /// went on, so `summary` still describes the whole build.
    #[error("failed to write build progress")]
    Write {
        #[source]
        source: io::Error,
        summary: Summary,
    },
    #[error("the progress renderer panicked")]
    Panicked,
}

/// Where the tty view gets the terminal's size from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermSize {
    /// Ask the terminal behind stderr before every frame, so resizing
    /// the window takes effect at once.
    Stderr,
    /// A fixed size, for tests and for callers that know better.
    Fixed { width: u16, height: u16 },
}

/// The `--progress` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Auto,
    Tty,
    Plain,
    RawJson,
    Quiet,
}

/// Everything [`start_with`] needs to know about the output.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// The output is a terminal of this size source; `None` when it is a
    /// pipe or file.
    pub terminal: Option<TermSize>,
    /// `TERM=dumb`: a terminal that can't move the cursor.
    pub dumb_terminal: bool,
    /// Colour the tty view.
    pub color: bool,
    /// Stamps the [`Sender`]'s events and drives the tty timers.
    pub clock: Arc<dyn Clock>,
}

impl Options {
    /// Options for an output that is not a terminal, without colour, on
    /// the system clock; adjust the fields from there.
    pub fn new(mode: Mode) -> Self {
        Options {
            mode,
            terminal: None,
            dumb_terminal: false,
            color: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// Options for rendering to this process's stderr, read from the
    /// environment: whether stderr is a terminal, `TERM`, `NO_COLOR`.
    pub fn from_env(mode: Mode) -> Self {
        Options {
            terminal: io::stderr().is_terminal().then_some(TermSize::Stderr),
            dumb_terminal: std::env::var_os("TERM").is_some_and(|t| t == "dumb"),
            color: color_allowed(std::env::var_os("NO_COLOR")),
            ..Options::new(mode)
        }
    }

    /// The mode actually used: `auto` and `tty` become `plain` where the
    /// live view can't work.
    pub fn resolved_mode(&self) -> Mode {
        match self.mode {
            Mode::Auto if self.terminal.is_some() && !self.dumb_terminal => Mode::Tty,
            Mode::Auto => Mode::Plain,
            Mode::Tty if self.terminal.is_none() => Mode::Plain,
            other => other,
        }
    }
}

/// Whether colour may be used given the value of `NO_COLOR`: the
/// convention is that any non-empty value turns colour off.
fn color_allowed(no_color: Option<std::ffi::OsString>) -> bool {
    no_color.is_none_or(|v| v.is_empty())
}

/// A renderer: fed every event in order, woken periodically, told once
/// that the build is over.
trait Render: Send {
    fn event(&mut self, event: &Event) -> io::Result<()>;
    fn tick(&mut self, now: Timestamp) -> io::Result<()>;
    fn finish(&mut self, now: Timestamp) -> io::Result<()>;
}

/// `rawjson`: each event as it comes, one JSON object per line.
struct RawJson {
    out: Box<dyn Write + Send>,
}

impl Render for RawJson {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    fn tick(&mut self, _: Timestamp) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self, _: Timestamp) -> io::Result<()> {
        // The `done` line tells a reader the stream ended on purpose.
        self.event(&Event::Done)
    }
}

/// `quiet`: counts only.
struct Quiet;

impl Render for Quiet {
    fn event(&mut self, _: &Event) -> io::Result<()> {
        Ok(())
    }

    fn tick(&mut self, _: Timestamp) -> io::Result<()> {
        Ok(())
    }

    fn finish(&mut self, _: Timestamp) -> io::Result<()> {
        Ok(())
    }
}

fn renderer(options: &Options, out: Box<dyn Write + Send>) -> Box<dyn Render> {
    match options.resolved_mode() {
        Mode::Tty => {
            let size = options.terminal.unwrap_or(TermSize::Stderr);
            Box::new(tty::Tty::new(out, size, options.color))
        }
        Mode::RawJson => Box::new(RawJson { out }),
        Mode::Quiet => Box::new(Quiet),
        Mode::Plain | Mode::Auto => Box::new(plain::Plain::new(Box::new(io::BufWriter::new(out)))),
    }
}

/// Starts rendering to `out`, which is taken to be this process's stderr
/// (see [`Options::from_env`]).
pub fn start(mode: Mode, out: Box<dyn Write + Send>) -> Result<(Sender, Handle), ProgressError> {
    start_with(Options::from_env(mode), out)
}

/// Starts rendering to `out` on a thread of its own.
pub fn start_with(
    options: Options,
    out: Box<dyn Write + Send>,
) -> Result<(Sender, Handle), ProgressError> {
    let (tx, rx) = mpsc::channel();
    let render = renderer(&options, out);
    let clock = Arc::clone(&options.clock);
    let thread = std::thread::Builder::new()
        .name("bk-progress".into())
        .spawn(move || run(rx, render, clock.as_ref()))
        .map_err(ProgressError::Spawn)?;
    let sender = Sender::new(tx.clone(), options.clock);
    Ok((
        sender,
        Handle {
            tx,
            thread: Some(thread),
        },
    ))
}

/// The renderer loop: stops at `Done` or when every sender is gone. A
/// write failure stops the drawing but not the counting.
fn run(
    rx: mpsc::Receiver<Event>,
    mut render: Box<dyn Render>,
    clock: &dyn Clock,
) -> (Summary, Option<io::Error>) {
    let mut recorder = Recorder::new();
    let mut failure: Option<io::Error> = None;
    loop {
        let step = match rx.recv_timeout(TICK) {
            Ok(Event::Done) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Ok(event) => {
                recorder.record(&event);
                if failure.is_some() {
                    continue;
                }
                render.event(&event)
            }
            Err(mpsc::RecvTimeoutError::Timeout) if failure.is_none() => render.tick(clock.now()),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
        };
        if let Err(e) = step {
            failure = Some(e);
        }
    }
    if failure.is_none() {
        if let Err(e) = render.finish(clock.now()) {
            failure = Some(e);
        }
    }
    (recorder.summary(), failure)
}

/// Owns the renderer thread. Dropping it without [`Handle::finish`] still
/// ends the stream and waits for the final output, so an early return in
/// the caller never leaves the terminal mid-frame.
#[derive(Debug)]
pub struct Handle {
    tx: mpsc::Sender<Event>,
    thread: Option<JoinHandle<(Summary, Option<io::Error>)>>,
}

impl Handle {
    /// Ends the event stream (events sent after this are ignored), waits
    /// for the renderer's final output and returns the build's summary.
    pub fn finish(mut self) -> Result<Summary, ProgressError> {
        self.join()
    }

    fn join(&mut self) -> Result<Summary, ProgressError> {
        let Some(thread) = self.thread.take() else {
            return Err(ProgressError::Panicked);
        };
        let _ = self.tx.send(Event::Done);
        match thread.join() {
            Ok((summary, None)) => Ok(summary),
            Ok((summary, Some(source))) => Err(ProgressError::Write { source, summary }),
            Err(_) => Err(ProgressError::Panicked),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}
