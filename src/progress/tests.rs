//! Tests of the `progress` module: the event vocabulary's JSON form and
//! the summary counts.

use super::event::{Event, SourceLocation, Stream, Timestamp};
use super::Recorder;

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

#[test]
fn events_round_trip_through_json() {
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
        Event::Done,
    ];
    for e in &events {
        let line = serde_json::to_string(e).unwrap_or_default();
        let back: Event = match serde_json::from_str(&line) {
            Ok(e) => e,
            Err(err) => panic!("{line:?} is not an Event: {err}"),
        };
        assert_eq!(&back, e);
    }
    assert_eq!(
        serde_json::to_string(&events[0]).unwrap_or_default(),
        format!(
            r#"{{"type":"vertex_started","digest":"sha256:aa","name":"[internal] load build context","started":{BASE}}}"#
        )
    );
    assert!(serde_json::to_string(&events[2])
        .unwrap_or_default()
        .contains(r#""data":[255,111,107,10]"#));
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
