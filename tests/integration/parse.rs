//! `bk debug parse` and how Dockerfile errors reach the user.

use crate::util::{data, describe, Dir};

#[test]
fn parses_the_realworld_fixture() {
    let out = Dir::new()
        .bk()
        .args(["debug", "parse"])
        .arg_path(&data("realworld/Dockerfile"))
        .output();
    assert!(out.status.success(), "{}", describe(&out));
    let dump = String::from_utf8_lossy(&out.stdout);
    let source = std::fs::read_to_string(data("realworld/Dockerfile")).unwrap();
    let from_lines = source.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(
        dump.lines().filter(|l| l.starts_with("(from ")).count(),
        from_lines
    );
    assert!(
        dump.contains("(run [\"--mount=type=cache,"),
        "RUN --mount flags kept"
    );
    assert!(dump.contains("(copy [\"--link\""), "COPY --link kept");
    // The fixture has one empty line inside a continuation.
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoEmptyContinuation"));
}

#[test]
fn reads_standard_input() {
    let out = Dir::new()
        .bk()
        .args(["debug", "parse", "-"])
        .stdin_bytes(b"FROM scratch\nCOPY [\"a b\", \"/c\"]\n");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"scratch\")\n(copy \"a b\" \"/c\")\n"
    );
}

#[test]
fn errors_show_file_line_and_snippet() {
    let dir = Dir::new();
    dir.create(
        "Dockerfile",
        "FROM scratch\n\nCOPY a /\nFROBNICATE now\nCMD x\n",
    );
    let err = dir.bk().args(["debug", "parse", "Dockerfile"]).fails();
    assert!(err.contains("Dockerfile:4\n"), "{err}");
    assert!(err.contains("   4 | >>> FROBNICATE now"), "{err}");
    assert!(err.contains("   3 |     COPY a /"), "{err}");
    assert!(
        err.contains("ERROR: Dockerfile:4: unknown instruction: FROBNICATE"),
        "{err}"
    );
}

#[test]
fn build_check_reports_parse_errors_the_same_way() {
    let dir = Dir::new();
    dir.create("Dockerfile", "FROM scratch\nRUN <<EOF\nnever ends\n");
    let err = dir.bk().args(["build", "--check", "."]).fails();
    assert!(err.contains(">>> RUN <<EOF"), "{err}");
    assert!(err.contains("ERROR: Dockerfile:2:"), "{err}");
}

#[test]
fn empty_dockerfile_is_rejected() {
    let dir = Dir::new();
    dir.create("Dockerfile", "# only a comment\n");
    let err = dir.bk().args(["build", "--check", "."]).fails();
    assert!(err.contains("file with no instructions"), "{err}");
}
