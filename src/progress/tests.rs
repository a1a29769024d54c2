//! Tests of the `progress` module: exact plain output for scripted event
//! sequences (timestamps are part of the events, so nothing depends on
//! the speed of the machine), tty frames at a fixed size and time, the
//! rawjson round trip, colour rules, and the summary counts.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::event::{Event, SourceLocation, Stream, Timestamp};
use super::plain::Plain;
use super::trace::{merge_intervals, Interval, Trace};
use super::tty::{frame, Layout, Tty};
use super::{format, start_with, ManualClock, Mode, Options, Recorder, Render, TermSize};

/// A writer the test keeps a handle to after giving it away.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Buf {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Buf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that always fails, like a closed pipe.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
}

const BASE: u64 = 1_700_000_000_000_000_000;

/// `ms` milliseconds into the build.
fn t(ms: u64) -> Timestamp {
    Timestamp::from_unix_nanos(BASE + ms * 1_000_000)
}

fn started(digest: &str, name: &str, ms: u64) -> Event {
    Event::VertexStarted {
        digest: digest.into(),
        name: name.into(),
        started: t(ms),
    }
}

fn cached(digest: &str, name: &str, ms: u64) -> Event {
    Event::VertexCached {
        digest: digest.into(),
        name: name.into(),
        completed: t(ms),
    }
}

fn completed(digest: &str, ms: u64) -> Event {
    Event::VertexCompleted {
        digest: digest.into(),
        completed: t(ms),
    }
}

fn failed(digest: &str, error: &str, ms: u64) -> Event {
    Event::VertexFailed {
        digest: digest.into(),
        error: error.into(),
        completed: t(ms),
    }
}

fn log(digest: &str, stream: Stream, data: &str, ms: u64) -> Event {
    Event::Log {
        digest: digest.into(),
        stream,
        data: data.as_bytes().to_vec(),
        timestamp: t(ms),
    }
}

fn status(digest: &str, id: &str, progress: (u64, u64), ms: u64, done: bool) -> Event {
    Event::Status {
        digest: digest.into(),
        id: id.into(),
        name: String::new(),
        current: progress.0,
        total: progress.1,
        timestamp: t(ms),
        started: None,
        completed: done.then_some(t(ms)),
    }
}

/// Feeds the events to a plain renderer synchronously and returns what
/// it printed, final report included.
fn plain(events: &[Event]) -> String {
    let buf = Buf::default();
    let mut r = Plain::new(Box::new(buf.clone()));
    for e in events {
        if let Err(e) = r.event(e) {
            panic!("plain renderer failed: {e}");
        }
    }
    let end = events.iter().filter_map(Event::timestamp).max();
    if let Err(e) = r.finish(end.unwrap_or_default()) {
        panic!("plain renderer failed: {e}");
    }
    buf.text()
}

#[test]
fn plain_sequential_build_matches_buildkit() {
    let out = plain(&[
        started("d1", "[internal] load build definition from Dockerfile", 0),
        status("d1", "transferring dockerfile:", (123, 0), 10, true),
        completed("d1", 20),
        started(
            "d2",
            "[internal] load metadata for docker.io/library/alpine:3.20",
            30,
        ),
        completed("d2", 1230),
        cached("d3", "[base 1/3] FROM docker.io/library/alpine:3.20", 1240),
        started("d4", "[base 2/3] RUN echo hello && echo world >&2", 1250),
        log("d4", Stream::Stdout, "hello\n", 1762),
        log("d4", Stream::Stderr, "world\n", 1800),
        completed("d4", 2050),
        started("d5", "[base 3/3] COPY a /b", 2060),
        completed("d5", 2100),
    ]);
    let want = "\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 123B done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/library/alpine:3.20
#2 DONE 1.2s

#3 [base 1/3] FROM docker.io/library/alpine:3.20
#3 CACHED

#4 [base 2/3] RUN echo hello && echo world >&2
#4 0.512 hello
#4 0.550 world
#4 DONE 0.8s

#5 [base 3/3] COPY a /b
#5 DONE 0.0s
";
    assert_eq!(out, want);
}

#[test]
fn plain_numbers_vertices_in_order_of_first_appearance() {
    // The digests sort the other way round from their appearance, so a
    // numbering by digest or by map order would show up here.
    let out = plain(&[
        cached("zz", "[stage-a 1/2] FROM scratch", 0),
        started("mm", "[stage-a 2/2] COPY x /x", 10),
        completed("mm", 20),
        cached("aa", "[stage-b 1/1] FROM scratch", 30),
    ]);
    let headers: Vec<&str> = out.lines().filter(|l| l.contains(" [stage-")).collect();
    assert_eq!(
        headers,
        [
            "#1 [stage-a 1/2] FROM scratch",
            "#2 [stage-a 2/2] COPY x /x",
            "#3 [stage-b 1/1] FROM scratch",
        ]
    );
    assert!(out.contains("#1 CACHED\n"));
    assert!(out.contains("#3 CACHED\n"));
}

#[test]
fn plain_holds_back_a_second_vertex_until_the_first_is_done_with_the_screen() {
    let out = plain(&[
        started("a", "[a 1/1] RUN ./slow", 0),
        started("b", "[b 1/1] RUN ./fast", 10),
        log("a", Stream::Stdout, "a1\n", 100),
        log("b", Stream::Stdout, "b1\n", 110),
        log("a", Stream::Stdout, "a2\n", 200),
        log("b", Stream::Stdout, "b2\n", 210),
        completed("b", 300),
        log("a", Stream::Stdout, "a3\n", 400),
        completed("a", 500),
    ]);
    let want = "\
#1 [a 1/1] RUN ./slow
#1 0.100 a1
#1 0.200 a2
#1 ...

#2 [b 1/1] RUN ./fast
#2 0.100 b1
#2 0.200 b2
#2 DONE 0.3s

#1 [a 1/1] RUN ./slow
#1 0.400 a3
#1 DONE 0.5s
";
    assert_eq!(out, want);
}

#[test]
fn plain_shows_a_vertex_that_waited_longer_than_ten_seconds() {
    let out = plain(&[
        started("a", "[a 1/1] RUN ./busy", 0),
        started("b", "[b 1/1] RUN ./quiet", 10),
        log("b", Stream::Stdout, "b1\n", 100),
        log("a", Stream::Stdout, "a1\n", 11_000),
    ]);
    let want = "\
#1 [a 1/1] RUN ./busy
#1 11.00 a1
#1 ...

#2 [b 1/1] RUN ./quiet
#2 0.090 b1
";
    assert_eq!(out, want);
}

#[test]
fn plain_joins_log_chunks_split_mid_line() {
    let out = plain(&[
        started("a", "[1/1] RUN make", 0),
        log("a", Stream::Stdout, "comp", 100),
        log("a", Stream::Stdout, "iling\nlink", 200),
        log("a", Stream::Stdout, "ing\n", 300),
        completed("a", 400),
    ]);
    let want = "\
#1 [1/1] RUN make
#1 0.100 compiling
#1 0.200 linking
#1 DONE 0.4s
";
    assert_eq!(out, want);
}

#[test]
fn plain_renders_errors_and_repeats_the_failed_vertex_logs() {
    let error = r#"process "/bin/sh -c false" did not complete successfully: exit code: 1"#;
    let out = plain(&[
        started("a", "[2/2] RUN false", 0),
        log("a", Stream::Stderr, "oops\n", 100),
        log("a", Stream::Stderr, "no newline", 150),
        failed("a", error, 200),
    ]);
    let want = format!(
        "\
#1 [2/2] RUN false
#1 0.100 oops
#1 0.150 no newline
#1 ERROR: {error}
------
 > [2/2] RUN false:
0.100 oops
0.150 no newline
------
"
    );
    assert_eq!(out, want);
}

#[test]
fn plain_error_report_keeps_only_the_last_ten_lines() {
    let mut events = vec![started("a", "[1/1] RUN seq 12", 0)];
    for i in 1..=12 {
        events.push(log("a", Stream::Stdout, &format!("{i}\n"), i));
    }
    events.push(failed("a", "exit code: 1", 100));
    let out = plain(&events);
    let report = out.split("------\n").nth(1).unwrap_or_default();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.first(), Some(&" > [1/1] RUN seq 12:"));
    assert_eq!(lines.get(1), Some(&"0.003 3"));
    assert_eq!(lines.last(), Some(&"0.012 12"));
    assert_eq!(lines.len(), 11);
}

#[test]
fn plain_marks_canceled_vertices() {
    let out = plain(&[
        started("a", "[1/1] RUN sleep 100", 0),
        failed("a", "failed to run: context canceled", 100),
    ]);
    assert!(out.ends_with("#1 CANCELED\n"), "{out}");
    assert!(
        !out.contains("------"),
        "canceled vertices get no error report"
    );
}

#[test]
fn plain_status_lines_are_rate_limited_like_buildkit() {
    let out = plain(&[
        started("c", "[internal] load build context", 0),
        status("c", "transferring context:", (0, 1000), 0, false),
        // 1% further and 0.1s later: not worth a line.
        status("c", "transferring context:", (10, 1000), 100, false),
        status("c", "transferring context:", (100, 1000), 200, false),
        status("c", "transferring context:", (1000, 1000), 300, true),
        completed("c", 310),
    ]);
    let want = "\
#1 [internal] load build context
#1 transferring context: 0B / 1.00kB
#1 transferring context: 100B / 1.00kB 0.2s
#1 transferring context: 1.00kB / 1.00kB 0.3s done
#1 DONE 0.3s
";
    assert_eq!(out, want);
}

#[test]
fn plain_prints_warnings_under_their_vertex_and_lists_them_at_the_end() {
    let out = plain(&[
        started("a", "[1/2] FROM alpine", 0),
        Event::Warning {
            digest: Some("a".into()),
            message: "FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value".into(),
            location: Some(SourceLocation {
                file: "Dockerfile".into(),
                line: 1,
            }),
        },
        completed("a", 100),
        Event::Warning {
            digest: None,
            message: "no vertex for this one".into(),
            location: None,
        },
    ]);
    let want = "\
#1 [1/2] FROM alpine
#1 WARN: FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value (line 1)
#1 DONE 0.1s

 2 warnings found:
 - FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant value (line 1)
 - no vertex for this one
";
    assert_eq!(out, want);
}

#[test]
fn plain_ignores_events_for_unknown_vertices() {
    let out = plain(&[
        log("ghost", Stream::Stdout, "boo\n", 0),
        completed("ghost", 10),
        status("ghost", "x", (1, 2), 10, false),
    ]);
    assert_eq!(out, "");
}

#[test]
fn restarted_vertex_reports_the_sum_of_its_intervals() {
    let out = plain(&[
        started("a", "[1/1] RUN x", 0),
        completed("a", 1000),
        started("a", "[1/1] RUN x", 5000),
        completed("a", 5500),
    ]);
    assert!(out.ends_with("#1 DONE 1.5s\n"), "{out}");
}

#[test]
fn intervals_merge_like_buildkit() {
    let iv = |a: u64, b: Option<u64>| Interval {
        start: t(a),
        stop: b.map(t),
    };
    assert_eq!(
        merge_intervals(&[iv(10, Some(20)), iv(0, Some(15)), iv(30, Some(40))]),
        [iv(0, Some(20)), iv(30, Some(40))]
    );
    assert_eq!(
        merge_intervals(&[iv(0, Some(10)), iv(5, None), iv(30, Some(40))]),
        [iv(0, None)]
    );
    assert_eq!(
        merge_intervals(&[iv(0, Some(50)), iv(10, Some(20))]),
        [iv(0, Some(50))]
    );
}

#[test]
fn byte_sizes_use_buildkit_units() {
    assert_eq!(format::bytes(0), "0B");
    assert_eq!(format::bytes(999), "999B");
    assert_eq!(format::bytes(1234), "1.23kB");
    assert_eq!(format::bytes(12_300_000), "12.30MB");
    assert_eq!(format::bytes(5_000_000_000), "5.00GB");
    assert_eq!(format::progress(0, 0), "");
    assert_eq!(format::progress(5, 0), "5B");
    assert_eq!(format::progress(5, 10), "5B / 10B");
}

#[test]
fn rawjson_lines_parse_back_into_the_events_sent() {
    let events = vec![
        started("sha256:aa", "[internal] load build context", 0),
        status(
            "sha256:aa",
            "transferring context:",
            (12_300_000, 0),
            5,
            true,
        ),
        Event::Log {
            digest: "sha256:aa".into(),
            stream: Stream::Stderr,
            // Not UTF-8: must survive as bytes.
            data: vec![0xff, b'o', b'k', b'\n'],
            timestamp: t(7),
        },
        log("sha256:aa", Stream::Stdout, "plain text\n", 8),
        completed("sha256:aa", 10),
        cached("sha256:bb", "[base 1/2] FROM alpine", 11),
        failed("sha256:cc", "boom", 12),
        Event::Warning {
            digest: None,
            message: "careful".into(),
            location: Some(SourceLocation {
                file: "Dockerfile".into(),
                line: 3,
            }),
        },
    ];
    let buf = Buf::default();
    let (tx, handle) = match start_with(Options::new(Mode::RawJson), Box::new(buf.clone())) {
        Ok(pair) => pair,
        Err(e) => panic!("start failed: {e}"),
    };
    for e in &events {
        tx.send(e.clone());
    }
    let summary = match handle.finish() {
        Ok(s) => s,
        Err(e) => panic!("finish failed: {e}"),
    };
    let text = buf.text();
    let parsed: Vec<Event> = text
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(e) => e,
            Err(err) => panic!("line {l:?} is not an Event: {err}"),
        })
        .collect();
    let mut want = events.clone();
    want.push(Event::Done);
    assert_eq!(parsed, want);
    assert_eq!(summary.vertices, 3);

    // The wire shape other tools will read.
    let first = text.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            r#"{{"type":"vertex_started","digest":"sha256:aa","name":"[internal] load build context","started":{BASE}}}"#
        )
    );
    assert!(text.contains(r#""data":[255,111,107,10]"#), "{text}");
    assert!(text.contains(r#""data":"plain text\n""#), "{text}");
}

#[test]
fn summary_counts_a_warm_rebuild_as_all_cached() {
    let mut r = Recorder::new();
    for (i, d) in ["a", "b", "c"].iter().enumerate() {
        r.record(&cached(d, "x", i as u64));
    }
    let s = r.summary();
    assert_eq!((s.vertices, s.cached, s.completed, s.started), (3, 3, 0, 0));
    assert!(s.all_cached());
    assert_eq!(s.to_string(), "3 vertices: 0 ran, 3 cached, 0 failed");
}

#[test]
fn summary_counts_each_vertex_by_its_last_state() {
    let mut r = Recorder::new();
    for e in [
        started("ran", "x", 0),
        completed("ran", 1),
        started("hit", "x", 0),
        cached("hit", "x", 1),
        started("bad", "x", 0),
        failed("bad", "e", 1),
        started("left", "x", 0),
        Event::Warning {
            digest: None,
            message: "w".into(),
            location: None,
        },
    ] {
        r.record(&e);
    }
    let s = r.summary();
    assert_eq!(s.vertices, 4);
    assert_eq!(s.started, 4);
    assert_eq!(s.completed, 1);
    assert_eq!(s.cached, 1);
    assert_eq!(s.failed, 1);
    assert_eq!(s.unfinished, 1);
    assert_eq!(s.warnings, 1);
    assert!(!s.all_cached());
}

#[test]
fn sender_stamps_events_with_the_injected_clock_and_finish_returns_the_summary() {
    let clock = Arc::new(ManualClock::new(t(0)));
    let buf = Buf::default();
    let mut options = Options::new(Mode::Plain);
    options.clock = clock.clone();
    let (tx, handle) = match start_with(options, Box::new(buf.clone())) {
        Ok(pair) => pair,
        Err(e) => panic!("start failed: {e}"),
    };
    // Reporting from a plain thread, as spawn_blocking file ops do.
    let worker = tx.clone();
    let c = clock.clone();
    let joined = std::thread::spawn(move || {
        worker.started("d", "[1/1] COPY . /src");
        c.advance(Duration::from_millis(1500));
        worker.log("d", Stream::Stdout, "copied\n");
        c.advance(Duration::from_millis(500));
        worker.completed("d");
    })
    .join();
    assert!(joined.is_ok());
    tx.cached("e", "[2/2] RUN true");
    let summary = match handle.finish() {
        Ok(s) => s,
        Err(e) => panic!("finish failed: {e}"),
    };
    assert_eq!(
        buf.text(),
        "\
#1 [1/1] COPY . /src
#1 1.500 copied
#1 DONE 2.0s

#2 [2/2] RUN true
#2 CACHED
"
    );
    assert_eq!((summary.completed, summary.cached), (1, 1));
    // The renderer is gone; sending must still be harmless.
    tx.completed("d");
}

#[test]
fn dropping_the_handle_still_flushes_the_output() {
    let buf = Buf::default();
    let (tx, handle) = match start_with(Options::new(Mode::Plain), Box::new(buf.clone())) {
        Ok(pair) => pair,
        Err(e) => panic!("start failed: {e}"),
    };
    tx.send(cached("a", "[1/1] FROM x", 0));
    drop(handle);
    assert_eq!(buf.text(), "#1 [1/1] FROM x\n#1 CACHED\n");
}

#[test]
fn write_failures_are_reported_with_the_summary_intact() {
    let (tx, handle) = match start_with(Options::new(Mode::Plain), Box::new(Broken)) {
        Ok(pair) => pair,
        Err(e) => panic!("start failed: {e}"),
    };
    tx.send(cached("a", "x", 0));
    tx.send(cached("b", "y", 1));
    match handle.finish() {
        Err(super::ProgressError::Write { summary, .. }) => assert_eq!(summary.cached, 2),
        other => panic!("expected a write error, got {other:?}"),
    }
}

#[test]
fn quiet_prints_nothing_but_still_counts() {
    let buf = Buf::default();
    let (tx, handle) = match start_with(Options::new(Mode::Quiet), Box::new(buf.clone())) {
        Ok(pair) => pair,
        Err(e) => panic!("start failed: {e}"),
    };
    tx.send(started("a", "x", 0));
    tx.send(completed("a", 5));
    let summary = handle.finish().map(|s| s.completed).ok();
    assert_eq!(summary, Some(1));
    assert_eq!(buf.text(), "");
}

#[test]
fn modes_resolve_like_buildx() {
    let term = Some(TermSize::Fixed {
        width: 80,
        height: 24,
    });
    let resolve = |mode, terminal, dumb| {
        let mut o = Options::new(mode);
        o.terminal = terminal;
        o.dumb_terminal = dumb;
        o.resolved_mode()
    };
    assert_eq!(resolve(Mode::Auto, term, false), Mode::Tty);
    assert_eq!(resolve(Mode::Auto, term, true), Mode::Plain);
    assert_eq!(resolve(Mode::Auto, None, false), Mode::Plain);
    assert_eq!(resolve(Mode::Tty, None, false), Mode::Plain);
    assert_eq!(resolve(Mode::Tty, term, true), Mode::Tty);
    assert_eq!(resolve(Mode::RawJson, term, false), Mode::RawJson);
    assert_eq!(resolve(Mode::Quiet, term, false), Mode::Quiet);
}

#[test]
fn no_color_is_honoured_when_set_and_not_empty() {
    use std::ffi::OsString;
    assert!(super::color_allowed(None));
    assert!(super::color_allowed(Some(OsString::new())));
    assert!(!super::color_allowed(Some(OsString::from("1"))));
}

fn build_trace(events: &[Event]) -> Trace {
    let mut trace = Trace::default();
    for e in events {
        trace.apply(e);
    }
    trace
}

/// Left part padded to 53 columns, then the timer: the layout of a 60
/// column terminal, where rows end one column short of the edge.
fn row60(text: &str, timer: &str) -> String {
    format!("{text:<53} {timer}")
}

#[test]
fn tty_frame_matches_buildkit_layout() {
    let trace = build_trace(&[
        started("d1", "[internal] load build definition from Dockerfile", 0),
        completed("d1", 20),
        cached("d2", "[base 1/2] FROM docker.io/library/alpine:3.20", 30),
        started("d3", "[base 2/2] RUN make", 1000),
        status("d3", "downloading", (1_500_000, 3_000_000), 1200, false),
        log(
            "d3",
            Stream::Stdout,
            "cc -c a.c\ncc -c b.c\n\x1b[1mlinking\x1b[0m\r",
            2000,
        ),
    ]);
    let layout = Layout {
        width: 60,
        height: 20,
        color: false,
        all: false,
    };
    let lines = frame(&trace, t(2500), layout);
    let want = vec![
        "[+] Building 2.5s (2/3)".to_owned(),
        row60(
            " => [internal] load build definition from Dockerfile",
            " 0.0s",
        ),
        // Names are cut to the 49 columns left of the timer.
        row60(
            " => CACHED [base 1/2] FROM docker.io/library/alpine:3",
            " 0.0s",
        ),
        row60(" => [base 2/2] RUN make", " 1.5s"),
        " => => # cc -c a.c".to_owned(),
        " => => # cc -c b.c".to_owned(),
        " => => # linking".to_owned(),
        row60(" => => downloading 1.50MB / 3.00MB", " 1.3s"),
    ];
    assert_eq!(lines, want);
    assert!(lines[1..]
        .iter()
        .all(|l| !l.starts_with(" => [") || l.len() == 59));
}

#[test]
fn tty_final_frame_says_finished_and_shows_errors() {
    let trace = build_trace(&[
        started("a", "[1/2] RUN true", 0),
        completed("a", 100),
        started("b", "[2/2] RUN false", 100),
        failed("b", "exit code: 1", 400),
    ]);
    let layout = Layout {
        width: 40,
        height: 10,
        color: false,
        all: true,
    };
    let lines = frame(&trace, t(500), layout);
    assert_eq!(lines[0], "[+] Building 0.5s (2/2) FINISHED");
    assert_eq!(
        lines[1],
        format!("{:<33} {}", " => [1/2] RUN true", " 0.1s")
    );
    assert_eq!(
        lines[2],
        format!("{:<33} {}", " => ERROR [2/2] RUN false", " 0.3s")
    );
}

#[test]
fn tty_keeps_running_rows_visible_on_a_short_terminal() {
    let mut events = vec![started("run", "[a 1/1] RUN long", 0)];
    for i in 0..10 {
        events.push(cached(
            &format!("c{i}"),
            &format!("[b {i}/9] COPY f{i} /"),
            1,
        ));
    }
    let trace = build_trace(&events);
    let layout = Layout {
        width: 60,
        height: 6,
        color: false,
        all: false,
    };
    let lines = frame(&trace, t(1000), layout);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(lines[1].starts_with(" => [a 1/1] RUN long"), "{lines:#?}");
    assert!(lines[4].starts_with(" => CACHED [b 9/9]"), "{lines:#?}");
}

#[test]
fn tty_colours_finished_rows_only_when_colour_is_on() {
    let trace = build_trace(&[
        cached("a", "[1/3] FROM x", 0),
        started("b", "[2/3] RUN false", 0),
        failed("b", "exit code: 1", 100),
        started("c", "[3/3] RUN sleep 9", 0),
        log("c", Stream::Stdout, "zzz\n", 50),
    ]);
    let mut layout = Layout {
        width: 60,
        height: 30,
        color: true,
        all: false,
    };
    let lines = frame(&trace, t(200), layout);
    assert!(lines[1].starts_with("\x1b[34m") && lines[1].ends_with("\x1b[0m"));
    assert!(lines[2].starts_with("\x1b[31m"));
    assert!(!lines[3].contains('\x1b'), "running rows stay uncoloured");
    assert!(lines[4].starts_with("\x1b[2m"), "log lines are faint");

    layout.color = false;
    let plain = frame(&trace, t(200), layout);
    assert!(plain.iter().all(|l| !l.contains('\x1b')), "{plain:#?}");
}

/// The SGR (colour) sequences in `s`; cursor movement is not colour.
fn sgr_count(s: &str) -> usize {
    s.match_indices("\x1b[")
        .filter(|(i, _)| {
            s[i + 2..]
                .chars()
                .find(|c| !c.is_ascii_digit() && *c != ';')
                == Some('m')
        })
        .count()
}

fn run_tty(color: bool) -> String {
    let buf = Buf::default();
    let mut r = Tty::new(
        Box::new(buf.clone()),
        TermSize::Fixed {
            width: 50,
            height: 20,
        },
        color,
    );
    let events = [
        started("a", "[1/2] RUN make", 0),
        log("a", Stream::Stdout, "building\n", 100),
        completed("a", 200),
        Event::Warning {
            digest: None,
            message: "careful".into(),
            location: None,
        },
    ];
    for e in &events {
        assert!(r.event(e).is_ok());
        assert!(r.tick(t(150)).is_ok());
    }
    assert!(r.finish(t(300)).is_ok());
    buf.text()
}

#[test]
fn tty_renderer_ends_with_the_full_final_frame() {
    let out = run_tty(false);
    let want_tail = format!(
        "[+] Building 0.3s (1/1) FINISHED\n{:<43} {}\n\n 1 warning found:\n - careful\n",
        " => [1/2] RUN make", " 0.2s"
    );
    assert!(out.ends_with(&want_tail), "{out:?}");
    assert_eq!(sgr_count(&out), 0, "NO_COLOR output has colour: {out:?}");
}

#[test]
fn tty_renderer_uses_colour_when_allowed() {
    let out = run_tty(true);
    assert!(sgr_count(&out) > 0, "{out:?}");
    assert!(out.contains("\x1b[33m1 warning found:\x1b[0m"), "{out:?}");
}

#[test]
fn tty_mode_without_a_terminal_falls_back_to_plain() {
    let buf = Buf::default();
    let (tx, handle) = match start_with(Options::new(Mode::Tty), Box::new(buf.clone())) {
        Ok(pair) => pair,
        Err(e) => panic!("start failed: {e}"),
    };
    tx.send(cached("a", "[1/1] FROM x", 0));
    assert!(handle.finish().is_ok());
    assert_eq!(buf.text(), "#1 [1/1] FROM x\n#1 CACHED\n");
}
