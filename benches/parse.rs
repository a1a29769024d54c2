//! Frontend timing: parsing the 434-line realistic Dockerfile fixture and
//! expanding words with the lexer. `cargo bench --bench parse` prints the
//! median and best of many runs; under `cargo test` it runs once as a smoke
//! check (timings are only meaningful from `cargo bench`, in release mode).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bk::dockerfile::shell::{EnvList, Lex};

fn measure(name: &str, runs: usize, mut f: impl FnMut()) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "{name:<32} median {:>9.1} µs   best {:>9.1} µs   ({runs} runs)",
        times[runs / 2].as_secs_f64() * 1e6,
        times[0].as_secs_f64() * 1e6,
    );
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let runs = if benching { 2000 } else { 1 };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/realworld/Dockerfile"
    );
    let text = std::fs::read_to_string(path).expect("read the realworld fixture");
    let lines = text.lines().count();

    measure(&format!("parse realworld ({lines} lines)"), runs, || {
        let ast = bk::dockerfile::parse(black_box(&text)).expect("fixture parses");
        black_box(ast);
    });

    let env = EnvList::from_assignments([
        "GO_VERSION=1.22",
        "TARGETPLATFORM=linux/arm64/v8",
        "VERSION=",
        "LIST=a b  c",
    ]);
    let lex = Lex::new('\\');
    let words = [
        "golang:${GO_VERSION}-alpine${ALPINE_VERSION:-3.19}",
        "${TARGETPLATFORM#linux/}",
        "\"${VERSION:-dev}\" '${LIST}' ${LIST//b/B}",
    ];
    measure("expand 3 words x 1000", runs.max(1) / 10 + 1, || {
        for _ in 0..1000 {
            for w in words {
                black_box(lex.process_word(black_box(w), &env).expect("expands"));
            }
        }
    });
}
