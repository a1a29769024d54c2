//! BuildKit's parser golden files: every `parser/<case>/Dockerfile` must
//! dump (`Ast::dump`) to exactly its `result`, and every
//! `parser-negative/<case>/Dockerfile` must be rejected. All cases run and
//! every failure is reported, so one broken case does not hide the others.
//!
//! `BK_EXTRA_PARSER_CASES` may name further directories laid out like
//! `parser/` (e.g. a BuildKit checkout's `testfiles`) to run the same way.

use std::fs;
use std::path::{Path, PathBuf};

use bk::dockerfile::parse;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/conformance")
}

/// The case directories under `dir`, sorted so reports are stable.
fn cases(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut cases: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    cases
}

fn read(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first differing line of two dumps, with both versions.
fn first_difference(want: &str, got: &str) -> String {
    let (want_lines, got_lines): (Vec<&str>, Vec<&str>) =
        (want.lines().collect(), got.lines().collect());
    for i in 0..want_lines.len().max(got_lines.len()) {
        let (w, g) = (want_lines.get(i), got_lines.get(i));
        if w != g {
            return format!(
                "  line {}:\n    - {}\n    + {}",
                i + 1,
                w.unwrap_or(&"<missing>"),
                g.unwrap_or(&"<missing>")
            );
        }
    }
    "  (line endings differ)".to_string()
}

/// Runs the positive cases in `dir`; returns (passed, total, failures).
fn run_positive(dir: &Path) -> (usize, usize, Vec<String>) {
    let cases = cases(dir);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap_or_default().to_string_lossy();
        let source = read(&case.join("Dockerfile"));
        let want = read(&case.join("result")).replace("\r\n", "\n");
        match parse(&source) {
            Err(err) => failures.push(format!("{name}: rejected: {err}")),
            Ok(ast) => {
                let got = ast.dump();
                if got != want {
                    failures.push(format!(
                        "{name}: dump differs\n{}",
                        first_difference(&want, &got)
                    ));
                }
            }
        }
    }
    (cases.len() - failures.len(), cases.len(), failures)
}

fn report(what: &str, passed: usize, total: usize, failures: &[String]) {
    assert!(total > 0, "{what}: no cases found");
    assert!(
        failures.is_empty(),
        "{what}: {passed}/{total} passed; failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn parser_cases_dump_like_buildkit() {
    let (passed, total, failures) = run_positive(&data_dir().join("parser"));
    report("parser", passed, total, &failures);
}

#[test]
fn parser_negative_cases_are_rejected() {
    let cases = cases(&data_dir().join("parser-negative"));
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let name = case.file_name().unwrap_or_default().to_string_lossy();
            match parse(&read(&case.join("Dockerfile"))) {
                Ok(ast) => Some(format!("{name}: accepted:\n{}", ast.dump())),
                Err(_) => None,
            }
        })
        .collect();
    report(
        "parser-negative",
        cases.len() - failures.len(),
        cases.len(),
        &failures,
    );
}

#[test]
fn extra_parser_cases_from_env() {
    let Some(dirs) = std::env::var_os("BK_EXTRA_PARSER_CASES") else {
        return;
    };
    let mut all_failures = Vec::new();
    let (mut passed, mut total) = (0, 0);
    for dir in std::env::split_paths(&dirs) {
        let (p, t, failures) = run_positive(&dir);
        passed += p;
        total += t;
        all_failures.extend(failures);
    }
    report("extra parser cases", passed, total, &all_failures);
}
