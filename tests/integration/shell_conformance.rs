//! BuildKit's own expansion tables (`envVarTest`, `wordsTest` from
//! `frontend/dockerfile/shell`) run through `bk`'s lexer. Every failing row
//! is collected and printed before the test fails, and the number of rows
//! run is pinned so a table that stops being read cannot pass silently.

use bk::dockerfile::shell::{EnvList, Lex};

const SHELL_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/conformance/shell");

fn read(name: &str) -> String {
    let path = format!("{SHELL_DATA}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Fails with every collected failure listed, or if the row count is off.
fn report(table: &str, rows: usize, expected_rows: usize, failures: &[String]) {
    let passed = rows - failures.len();
    eprintln!("{table}: {passed}/{rows} rows passed");
    assert!(
        failures.is_empty(),
        "{table}: {} of {rows} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        rows, expected_rows,
        "{table}: ran {rows} rows, expected {expected_rows}; was the table changed or misread?"
    );
}

/// `PLATFORM|input|expected`; `expected` is `error` for a failure. Windows
/// (`W`) rows are skipped: `bk` expands with Unix key rules.
#[test]
fn env_var_test() {
    let text = read("envVarTest");
    let env = EnvList::from_iter([
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]);
    let lex = Lex::new('\\');
    let mut rows = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').collect();
        let [platform, input, expected] = fields[..] else {
            failures.push(format!(
                "line {line_no}: not PLATFORM|input|expected: {line:?}"
            ));
            continue;
        };
        let (platform, input, expected) = (platform.trim(), input.trim(), expected.trim());
        match platform {
            "W" => continue,
            "A" | "U" => {}
            other => {
                failures.push(format!("line {line_no}: unknown platform {other:?}"));
                continue;
            }
        }
        rows += 1;
        let got = lex.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(word), expected) => word == expected && expected != "error",
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "line {line_no}: {input:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    report("envVarTest", rows, 228, &failures);
}

/// `ENV name=value` lines add to the environment for the rows after them;
/// other rows are `input | word,word,...` (or `error`).
#[test]
fn words_test() {
    let text = read("wordsTest");
    let lex = Lex::new('\\');
    let mut assignments: Vec<String> = Vec::new();
    let mut rows = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            // Only leading spaces go: trailing ones are part of the value.
            assignments.push(assignment.trim_start_matches(' ').to_string());
            continue;
        }
        let [input, expected] = line.split('|').collect::<Vec<_>>()[..] else {
            failures.push(format!("line {line_no}: not input|expected: {line:?}"));
            continue;
        };
        rows += 1;
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let env = EnvList::from_assignments(&assignments);
        let got = match lex.process_words(input, &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_string()],
        };
        if got != expected {
            failures.push(format!(
                "line {line_no}: {input:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    report("wordsTest", rows, 24, &failures);
}
