//! Any ignore file, matched against paths taken from its own lines:
//! loading may fail, matching must never panic.
#![no_main]

use std::path::Path;

use bk::source::dockerignore::Dockerignore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ignore) = Dockerignore::parse(Path::new(".dockerignore"), data) else {
        return;
    };
    for line in data.split(|&b| b == b'\n').take(16) {
        let _ = ignore.is_excluded(line);
        let _ = ignore.must_walk(line);
    }
    let _ = ignore.is_excluded("a/b/c.txt");
});
