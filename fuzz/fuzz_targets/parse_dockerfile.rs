//! Any byte string: parsing must return Ok or Err, never panic, and a
//! parsed tree must dump without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ast) = bk::dockerfile::parser::parse(text) {
            let _ = ast.dump();
        }
    }
});
