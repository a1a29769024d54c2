//! `bk build --check` runs the semantic layer (stages, ARGs, target,
//! dependencies, image config) and reports its errors with the Dockerfile
//! snippet and its warnings as `WARNING:` lines.

use crate::util::{data, describe, Dir};

#[test]
fn unknown_target_fails_with_buildkits_message() {
    let dir = Dir::new();
    dir.create(
        "Dockerfile",
        "FROM scratch AS build\nFROM scratch AS final\n",
    );
    let err = dir
        .bk()
        .args(["build", "--check", "--target", "nosuch", "."])
        .fails();
    assert!(
        err.contains(r#"ERROR: Dockerfile: target stage "nosuch" could not be found"#),
        "{err}"
    );
    let err = dir
        .bk()
        .args(["build", "--check", "--target", "buidl", "."])
        .fails();
    assert!(err.contains("(did you mean build?)"), "{err}");
    // Stage names match in any case.
    let out = dir
        .bk()
        .args(["build", "--check", "--target", "BUILD", "."])
        .output();
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn duplicate_stage_name_marks_the_second_from() {
    let dir = Dir::new();
    dir.create(
        "Dockerfile",
        "FROM scratch AS a\nRUN true\nFROM scratch AS A\nRUN false\n",
    );
    let err = dir.bk().args(["build", "--check", "."]).fails();
    assert!(err.contains("Dockerfile:3\n"), "{err}");
    assert!(err.contains("   3 | >>> FROM scratch AS A"), "{err}");
    assert!(err.contains("   1 |     FROM scratch AS a"), "{err}");
    assert!(
        err.contains(
            r#"ERROR: Dockerfile:3: duplicate stage name "a", stage names should be unique"#
        ),
        "{err}"
    );
}

#[test]
fn global_arg_in_from_is_overridden_by_build_arg() {
    let dir = Dir::new();
    // The default is not a valid image name; only the override makes the
    // FROM line valid, so success proves the build arg was used.
    dir.create("Dockerfile", "ARG BASE=Not-Valid\nFROM ${BASE}\nRUN true\n");
    let err = dir.bk().args(["build", "--check", "."]).fails();
    assert!(err.contains("   2 | >>> FROM ${BASE}"), "{err}");
    assert!(
        err.contains(r#"failed to parse stage name "Not-Valid""#),
        "{err}"
    );
    let out = dir
        .bk()
        .args(["build", "--check", "--build-arg", "BASE=alpine:3.20", "."])
        .output();
    // The default alone is still flagged (InvalidDefaultArgInFrom), so the
    // check exits 1, but planning succeeds.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Check complete, 1 warning has been found!"),
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("ERROR"));
}

#[test]
fn failing_arg_expansion_shows_the_arg_line() {
    let dir = Dir::new();
    dir.create("Dockerfile", "FROM scratch\nARG NAME=${WHO:?missing}\n");
    let err = dir.bk().args(["build", "--check", "."]).fails();
    assert!(err.contains("   2 | >>> ARG NAME=${WHO:?missing}"), "{err}");
    assert!(err.contains("WHO: missing"), "{err}");
    // A build arg only reaches declared ARGs: WHO alone does not help…
    let err = dir
        .bk()
        .args(["build", "--check", "--build-arg", "WHO=me", "."])
        .fails();
    assert!(err.contains("WHO: missing"), "{err}");
    // …but giving NAME skips its default altogether, as in BuildKit.
    let out = dir
        .bk()
        .args(["build", "--check", "--build-arg", "NAME=me", "."])
        .output();
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn unconsumed_build_args_are_warnings() {
    let dir = Dir::new();
    dir.create("Dockerfile", "FROM scratch\nARG USED\n");
    let out = dir
        .bk()
        .args([
            "build",
            "--check",
            "--build-arg",
            "USED=1",
            "--build-arg",
            "EXTRA=2",
            "--build-arg",
            "http_proxy=http://proxy:3128",
            ".",
        ])
        .output();
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING: One or more build-args [EXTRA] were not consumed"),
        "{stderr}"
    );
    assert!(!stderr.contains("no warnings found"), "{stderr}");
}

#[test]
fn check_accepts_the_realworld_fixture() {
    let out = Dir::new()
        .bk()
        .args(["build", "--check", "-f"])
        .arg_path(&data("realworld/Dockerfile"))
        .arg_path(&data("realworld"))
        .output();
    // Three genuine findings: the check exits 1 without an error.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("WARNING: MaintainerDeprecated - "),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("ERROR"), "{stderr}");
    // Every target in it plans too, on both platforms it is built for.
    for target in [
        "binaries",
        "release-distroless",
        "integration-tests",
        "dev",
        "lint",
    ] {
        for platform in ["linux/amd64", "windows/amd64"] {
            let out = Dir::new()
                .bk()
                .args([
                    "build",
                    "--check",
                    // Its lint findings (legacy ENV, MAINTAINER) are
                    // genuine; planning is what is tested here.
                    "--build-arg",
                    "BUILDKIT_DOCKERFILE_CHECK=skip=all",
                    "--target",
                    target,
                    "--platform",
                    platform,
                    "-f",
                ])
                .arg_path(&data("realworld/Dockerfile"))
                .arg_path(&data("realworld"))
                .output();
            assert!(
                out.status.success(),
                "{target} {platform}: {}",
                describe(&out)
            );
        }
    }
}

#[test]
fn syntax_directives_select_the_built_in_front_end_or_are_refused() {
    let dir = Dir::new();
    dir.create("a.txt", "A");
    let build = |df: &str, extra: &[&str]| {
        dir.create("Dockerfile", df);
        let mut cmd = dir.bk();
        cmd.args(["build", "-o", "out"]).args(extra).args(["."]);
        cmd.output()
    };
    for syntax in [
        "docker/dockerfile:1",
        "docker/dockerfile:1.7-labs",
        "docker.io/docker/dockerfile-upstream:master",
        "docker/dockerfile:1@sha256:0123456789012345678901234567890123456789012345678901234567890123",
    ] {
        let out = build(
            &format!("# syntax={syntax}\nFROM scratch\nCOPY a.txt /\n"),
            &[],
        );
        assert!(out.status.success(), "{syntax}: {}", describe(&out));
        assert_eq!(std::fs::read_to_string(dir.path().join("out/a.txt")).unwrap(), "A");
    }
    let df = "# syntax=example.com/my/frontend:2\nFROM scratch\nCOPY a.txt /\n";
    let out = build(df, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"example.com/my/frontend:2\""), "{err}");
    assert!(err.contains("BUILDKIT_SYNTAX"), "{err}");
    assert!(
        err.contains(">>> # syntax=example.com/my/frontend:2"),
        "{err}"
    );
    // The build argument overrides the directive, both ways.
    let fix = ["--build-arg", "BUILDKIT_SYNTAX=docker/dockerfile:1"];
    let out = build(df, &fix);
    assert!(out.status.success(), "{}", describe(&out));
    let out = build(
        "FROM scratch\n",
        &["--build-arg", "BUILDKIT_SYNTAX=other/fe:1"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"other/fe:1\""));
}
