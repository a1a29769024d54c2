//! BuildKit's instruction test tables run through the real parser: text →
//! [`crate::dockerfile::parser::parse`] → [`parse_instruction`], so the two
//! layers are held to BuildKit together (the unit tests next to each
//! instruction build nodes by hand).
//!
//! Test-only; it may import the parser, which the instruction layer itself
//! must not.

use super::*;
use crate::dockerfile::parser::parse;

/// The first instruction of `source`, typed.
fn first(source: &str) -> Result<Instruction> {
    let ast = parse(source).expect("the parser accepts this text");
    let node = ast.children.first().expect("one instruction");
    parse_instruction(node)
}

fn first_err(source: &str) -> Error {
    match first(source) {
        Ok(i) => panic!("{source:?} should fail, got {i:?}"),
        Err(e) => e,
    }
}

#[test]
fn exactly_one_argument() {
    for kw in ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"] {
        assert_eq!(
            first_err(kw).to_string(),
            format!("{kw} requires exactly one argument")
        );
    }
}

#[test]
fn at_least_one_argument() {
    for kw in ["ENV", "LABEL", "ONBUILD", "HEALTHCHECK", "EXPOSE", "VOLUME"] {
        assert_eq!(
            first_err(kw).to_string(),
            format!("{kw} requires at least one argument")
        );
    }
}

#[test]
fn no_destination() {
    for kw in ["ADD", "COPY"] {
        assert_eq!(
            first_err(&format!("{kw} arg1")).to_string(),
            format!("{kw} requires at least two arguments, but only one was provided. Destination could not be determined")
        );
    }
}

/// The first error of `source` from either layer: our parser rejects
/// unknown keywords itself, where BuildKit leaves that to this layer.
fn any_err(source: &str) -> String {
    match parse(source) {
        Err(e) => e.to_string(),
        Ok(ast) => match parse_instruction(&ast.children[0]) {
            Ok(i) => panic!("{source:?} should fail, got {i:?}"),
            Err(e) => e.to_string(),
        },
    }
}

#[test]
fn error_cases() {
    for (source, expected) in [
        // BuildKit's case continues with `quux \ bar`, which our parser
        // rejects as an unknown instruction before this layer runs.
        (
            "COPY\t\n\t\tRUN quux \\\n      bar",
            "COPY requires at least two arguments",
        ),
        (
            "ONBUILD FROM scratch",
            "FROM isn't allowed as an ONBUILD trigger",
        ),
        ("MAINTAINER --boo joe@example.com", "unknown flag: --boo"),
        (
            "ONBUILD ONBUILD RUN touch foobar",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        ("FOO bar", "unknown instruction: FOO"),
        ("foo bar", "unknown instruction: foo"),
        (
            "COPY /foo <<EOF\nEOF",
            "COPY cannot accept a heredoc as a destination",
        ),
    ] {
        let message = any_err(source);
        assert!(
            message.contains(expected),
            "{source:?}: {message:?} lacks {expected:?}"
        );
    }
}

#[test]
fn errors_point_at_the_instruction_lines() {
    let ast = parse("FROM alpine\n\nRUN --network=bogus \\\n  echo hi\n").unwrap();
    let err = parse_instruction(&ast.children[1]).unwrap_err();
    assert_eq!(err.to_string(), "invalid network mode \"bogus\"");
    assert_eq!(err.location, vec![Range::lines(3, 4)]);
}

#[test]
fn run_flags_used() {
    let Instruction::Run(r) = first("RUN --mount=type=tmpfs,target=/foo/ echo hello").unwrap()
    else {
        panic!()
    };
    assert_eq!(r.flags_used, ["mount"]);
    assert_eq!(r.mount_specs, ["type=tmpfs,target=/foo/"]);
    assert_eq!(r.cmd, ShellOrExec::Shell("echo hello".into()));
}

#[test]
fn healthcheck_shell_form() {
    let Instruction::Healthcheck(h) = first("HEALTHCHECK CMD hello world").unwrap() else {
        panic!()
    };
    assert_eq!(h.health.test(), ["CMD-SHELL", "hello world"]);
    let Instruction::Healthcheck(h) =
        first("HEALTHCHECK --interval=5s --retries=2 CMD [\"curl\", \"-f\", \"x\"]").unwrap()
    else {
        panic!()
    };
    assert_eq!(h.health.test(), ["CMD", "curl", "-f", "x"]);
}

fn sources(source: &str) -> (Vec<String>, Vec<SourceContent>, String) {
    match first(source).unwrap() {
        Instruction::Copy(c) => (c.sources, c.heredocs, c.dest),
        Instruction::Add(a) => (a.sources, a.heredocs, a.dest),
        other => panic!("{other:?}"),
    }
}

fn inline(path: &str, data: &str, expand: bool) -> SourceContent {
    SourceContent {
        path: path.into(),
        data: data.into(),
        expand,
    }
}

#[test]
fn copy_heredocs() {
    assert_eq!(
        sources("COPY /foo /bar"),
        (vec!["/foo".to_string()], vec![], "/bar".to_string())
    );
    for (source, expected) in [
        ("COPY <<EOF /bar\nEOF", vec![inline("EOF", "", true)]),
        (
            "COPY <<EOF /bar\nTESTING\nEOF",
            vec![inline("EOF", "TESTING\n", true)],
        ),
        (
            "COPY <<-EOF /bar\n\tTESTING\nEOF",
            vec![inline("EOF", "TESTING\n", true)],
        ),
        (
            "COPY <<'EOF' /bar\nTESTING\nEOF",
            vec![inline("EOF", "TESTING\n", false)],
        ),
        (
            "COPY <<EOF1 <<EOF2 /bar\nthis is the first file\nEOF1\nthis is the second file\nEOF2",
            vec![
                inline("EOF1", "this is the first file\n", true),
                inline("EOF2", "this is the second file\n", true),
            ],
        ),
        (
            "COPY <<EOF /quotes\n\"quotes\"\nEOF",
            vec![inline("EOF", "\"quotes\"\n", true)],
        ),
    ] {
        let (paths, contents, _) = sources(source);
        assert!(paths.is_empty(), "{source:?}");
        assert_eq!(contents, expected, "{source:?}");
    }
    let (paths, contents, dest) = sources("ADD <<EOF foo.txt /bar\nthis is inline\nEOF");
    assert_eq!(paths, ["foo.txt"]);
    assert_eq!(contents, [inline("EOF", "this is inline\n", true)]);
    assert_eq!(dest, "/bar");
}

#[test]
fn run_heredocs() {
    let file = |name: &str, data: &str, chomp| ShellInlineFile {
        name: name.into(),
        data: data.into(),
        chomp,
    };
    for (source, cmd, files) in [
        (
            "RUN [\"ls\", \"/\"]",
            ShellOrExec::Exec(vec!["ls".into(), "/".into()]),
            vec![],
        ),
        (
            "RUN [\"<<EOF\"]",
            ShellOrExec::Exec(vec!["<<EOF".into()]),
            vec![],
        ),
        ("RUN ls /", ShellOrExec::Shell("ls /".into()), vec![]),
        (
            "RUN <<EOF\nls /\nwhoami\nEOF",
            ShellOrExec::Shell("<<EOF".into()),
            vec![file("EOF", "ls /\nwhoami\n", false)],
        ),
        (
            "RUN <<'EOF' | python\nprint(\"hello\")\nprint(\"world\")\nEOF",
            ShellOrExec::Shell("<<'EOF' | python".into()),
            vec![file("EOF", "print(\"hello\")\nprint(\"world\")\n", false)],
        ),
        (
            "RUN <<-EOF\n\techo test\nEOF",
            ShellOrExec::Shell("<<-EOF".into()),
            vec![file("EOF", "\techo test\n", true)],
        ),
    ] {
        let Instruction::Run(r) = first(source).unwrap() else {
            panic!()
        };
        assert_eq!(r.cmd, cmd, "{source:?}");
        assert_eq!(r.heredocs, files, "{source:?}");
    }
}

#[test]
fn doc_comments() {
    let source = "# foo sets foo\nARG foo=bar\n\n# base defines first stage\nFROM busybox AS base\n# this is irrelevant\nARG foo\n# bar defines bar\n# baz is something else\nARG bar baz=123\n";
    let ast = parse(source).unwrap();
    let typed: Vec<Instruction> = ast
        .children
        .iter()
        .map(|n| parse_instruction(n).unwrap())
        .collect();
    let Instruction::Arg(meta) = &typed[0] else {
        panic!()
    };
    assert_eq!(meta.args[0].key, "foo");
    assert_eq!(meta.args[0].doc_comment, "sets foo");
    let Instruction::From(from) = &typed[1] else {
        panic!()
    };
    assert_eq!(from.stage_name.as_deref(), Some("base"));
    assert_eq!(from.doc_comment, "defines first stage");
    let Instruction::Arg(a) = &typed[2] else {
        panic!()
    };
    assert_eq!(a.args[0].doc_comment, "");
    let Instruction::Arg(b) = &typed[3] else {
        panic!()
    };
    assert_eq!(b.args[0].doc_comment, "defines bar");
    assert_eq!(b.args[1].key, "baz");
    assert_eq!(b.args[1].doc_comment, "is something else");
}

#[test]
fn env_forms_and_onbuild_text() {
    let Instruction::Env(e) = first("ENV A=1 B=\"two words\"").unwrap() else {
        panic!()
    };
    let pairs: Vec<_> = e
        .env
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str(), kv.no_delim))
        .collect();
    assert_eq!(pairs, [("A", "1", false), ("B", "\"two words\"", false)]);
    let Instruction::Env(e) = first("ENV LEGACY value with spaces").unwrap() else {
        panic!()
    };
    assert!(e.env[0].no_delim);
    let Instruction::Onbuild(o) = first("ONBUILD RUN echo hi").unwrap() else {
        panic!()
    };
    assert_eq!(o.expression, "RUN echo hi");
}

#[test]
fn every_conformance_dockerfile_types_or_errors_cleanly() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/conformance/parser");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path().join("Dockerfile");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(ast) = parse(&text) else { continue };
        for node in &ast.children {
            if let Err(e) = parse_instruction(node) {
                assert!(!e.location.is_empty(), "{}: {e}", path.display());
            }
        }
        checked += 1;
    }
    assert!(checked > 10, "only {checked} Dockerfiles parsed");
}

#[test]
fn onbuild_heredoc_keeps_its_body() {
    let Instruction::Onbuild(o) = first("ONBUILD RUN <<EOF\necho hi\nEOF\n").unwrap() else {
        panic!()
    };
    assert_eq!(o.expression, "RUN <<EOF\necho hi\nEOF");
}

#[test]
fn mounts_through_the_parser() {
    let err = first_err("RUN --mount=from=$STAGE,target=/x make");
    assert_eq!(
        err.to_string(),
        "'from' doesn't support variable expansion, define alias stage instead"
    );
    let Instruction::Run(mut r) =
        first("RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,required npm ci").unwrap()
    else {
        panic!()
    };
    r.expand(&mut |w: &str| Ok(w.to_string())).unwrap();
    assert_eq!(r.mounts[0].mount_type, MountType::Secret);
    assert!(r.mounts[0].required && r.mounts[0].read_only);
    assert_eq!(r.mounts[0].target, "/root/.npmrc");
}
