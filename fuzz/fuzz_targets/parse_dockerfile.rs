//! Any byte string through the whole frontend: parsing, typing every
//! instruction, and planning stages (ARG scoping, expansion, config) must
//! return Ok or Err, never panic.
#![no_main]

use bk::dockerfile::instructions::parse_instruction;
use bk::dockerfile::{plan, NoBaseImages, PlanOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ast) = bk::dockerfile::parser::parse(text) else {
        return;
    };
    let _ = ast.dump();
    for node in &ast.children {
        let _ = parse_instruction(node);
    }
    let _ = plan(&ast, &PlanOptions::default(), &NoBaseImages);
});
