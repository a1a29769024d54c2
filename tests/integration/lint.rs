//! Dockerfile checks through the CLI: findings printed once during a
//! build, `# check=` and `BUILDKIT_DOCKERFILE_CHECK` skipping rules,
//! `error=true` failing the build before anything is written, and
//! `build --check` printing each finding with its rule page and lines.

use crate::registry_util::{layer_tar, registry, ImageSpec};
use crate::util::{describe, Dir};

/// Findings: StageNameCasing and FromAsCasing (line 1), JSONArgsRecommended
/// (line 3).
const FLAGGED: &str = "FROM scratch as Base\nCOPY a.txt /\nCMD echo hi\n";

fn dir_with(dockerfile: &str) -> Dir {
    let dir = Dir::new();
    dir.create("a.txt", "A");
    dir.create("Dockerfile", dockerfile);
    dir
}

fn build(dir: &Dir, extra: &[&str]) -> std::process::Output {
    dir.bk()
        .args(["build", "-o", "out"])
        .args(extra)
        .args(["."])
        .output()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_build_prints_each_finding_once_with_a_count() {
    let dir = dir_with(FLAGGED);
    let out = build(&dir, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    for line in [
        "WARNING: StageNameCasing - Dockerfile:1: Stage name 'Base' should be lowercase\n",
        "WARNING: FromAsCasing - Dockerfile:1: 'as' and 'FROM' keywords' casing do not match\n",
        "WARNING: JSONArgsRecommended - Dockerfile:3: JSON arguments recommended for CMD to \
         prevent unintended behavior related to OS signals\n",
        "3 warnings found\n",
    ] {
        assert_eq!(err.matches(line).count(), 1, "{line:?} in:\n{err}");
    }
    // Warnings do not stop the build.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/a.txt")).unwrap(),
        "A"
    );
}

#[test]
fn the_directive_skips_rules_and_ignores_unknown_names() {
    let dir = dir_with(&format!(
        "# check=skip=StageNameCasing, FromAsCasing,NoSuchRule\n{FLAGGED}"
    ));
    let out = build(&dir, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("WARNING: JSONArgsRecommended - Dockerfile:4:"),
        "{err}"
    );
    assert!(!err.contains("Casing"), "{err}");
    assert!(err.contains("1 warning found"), "{err}");

    let dir = dir_with(&format!("# check=skip=all\n{FLAGGED}"));
    let out = build(&dir, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!stderr(&out).contains("WARNING"), "{}", describe(&out));
}

#[test]
fn a_comment_skips_rules_for_the_next_instruction_only() {
    let dir = dir_with(
        "FROM scratch\nCOPY a.txt /\n# check=skip=JSONArgsRecommended\nCMD echo a\nENTRYPOINT echo b\n",
    );
    let out = build(&dir, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(!err.contains("for CMD"), "{err}");
    assert!(err.contains("WARNING: JSONArgsRecommended - Dockerfile:5: JSON arguments recommended for ENTRYPOINT"), "{err}");
}

#[test]
fn the_build_arg_replaces_the_directive() {
    // error=true in the file would fail; the build arg's configuration
    // replaces it entirely.
    let dir = dir_with(&format!("# check=error=true\n{FLAGGED}"));
    let out = build(
        &dir,
        &[
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=StageNameCasing",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(!err.contains("StageNameCasing"), "{err}");
    assert!(err.contains("WARNING: FromAsCasing"), "{err}");
    // Not reported as an unused build arg.
    assert!(!err.contains("were not consumed"), "{err}");

    let out = build(&dir, &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!stderr(&out).contains("WARNING"), "{}", describe(&out));

    // And it can turn error=true on.
    let dir = dir_with(FLAGGED);
    let err = dir
        .bk()
        .args([
            "build",
            "-o",
            "out",
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=error=true",
            ".",
        ])
        .fails();
    assert!(err.contains("lint violation found for rules:"), "{err}");
}

#[test]
fn error_true_fails_after_the_warnings_and_builds_nothing() {
    let dir = dir_with(
        "# check=error=true\nFROM scratch AS base\nCOPY a.txt /\nENV A b\nMAINTAINER me\n",
    );
    let err = dir.bk().args(["build", "-o", "out", "."]).fails();
    let warning = err
        .find("WARNING: LegacyKeyValueFormat - Dockerfile:4: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format")
        .unwrap_or_else(|| panic!("{err}"));
    let error = err
        .find("ERROR: lint violation found for rules: LegacyKeyValueFormat, MaintainerDeprecated")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(warning < error, "{err}");
    assert!(!dir.path().join("out").exists());

    // Without findings error=true changes nothing.
    let dir = dir_with("# check=error=true\nFROM scratch\nCOPY a.txt /\n");
    let out = build(&dir, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(dir.path().join("out/a.txt").exists());
}

#[test]
fn findings_are_printed_before_a_planning_error() {
    let dir = dir_with("FROM scratch as base\nARG X=${Y:?missing}\n");
    let err = dir.bk().args(["build", "-o", "out", "."]).fails();
    let warning = err
        .find("WARNING: FromAsCasing")
        .unwrap_or_else(|| panic!("{err}"));
    let error = err.find("Y: missing").unwrap_or_else(|| panic!("{err}"));
    assert!(warning < error, "{err}");
}

#[test]
fn a_malformed_check_option_is_an_error() {
    let dir = dir_with("# check=skip=all;nonsense\nFROM scratch\n");
    let err = dir.bk().args(["build", "--check", "."]).fails();
    assert!(
        err.contains("failed to parse check options: invalid check option \"nonsense\""),
        "{err}"
    );
}

#[test]
fn check_prints_rule_pages_and_lines_and_exits_1() {
    let dir = dir_with(FLAGGED);
    let out = dir.bk().args(["build", "--check", "."]).output();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = "Check complete, 3 warnings have been found!\n\
        \n\
        WARNING: StageNameCasing - https://docs.docker.com/go/dockerfile/rule/stage-name-casing/\n\
        Stage name 'Base' should be lowercase\n\
        Dockerfile:1\n\
        --------------------\n   \
        1 | >>> FROM scratch as Base\n   \
        2 |     COPY a.txt /\n   \
        3 |     CMD echo hi\n\
        --------------------\n\
        \n\
        WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n\
        'as' and 'FROM' keywords' casing do not match\n";
    assert!(stdout.starts_with(expected), "{stdout}");
    assert!(
        stdout.contains(
            "WARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("   3 | >>> CMD echo hi\n"), "{stdout}");
    // A static check builds nothing.
    assert!(!dir.path().join("out").exists());

    // error=true: the same report, then BuildKit's error.
    let dir = dir_with(&format!("# check=error=true\n{FLAGGED}"));
    let out = dir.bk().args(["build", "--check", "."]).output();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 warnings have been found!"));
    assert!(
        stderr(&out).contains(
            "ERROR: lint violation found for rules: StageNameCasing, FromAsCasing, JSONArgsRecommended"
        ),
        "{}",
        describe(&out)
    );

    // Clean file: exit 0.
    let dir = dir_with("FROM scratch\nCOPY a.txt /\nCMD [\"hi\"]\n");
    let out = dir.bk().args(["build", "--check", "."]).output();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Check complete, no warnings found.\n"
    );
}

#[test]
fn check_without_target_covers_every_stage() {
    // The unused stage's findings count for a check, as in buildx.
    let dir = dir_with("FROM scratch AS unused\nWORKDIR rel\nFROM scratch\nCOPY a.txt /\n");
    let out = dir.bk().args(["build", "--check", "."]).output();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "Relative workdir \"rel\" can have unexpected results if the base image changes"
        ),
        "{stdout}"
    );
    // A build evaluates only the target's stages.
    let out = build(&dir, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !stderr(&out).contains("WorkdirRelativePath"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_build_knows_the_base_images_variables() {
    // The base sets GREETING and a SHELL-free config; a static check
    // cannot know that and leaves UndefinedVar alone for this stage, a
    // build pulls the config and judges every variable.
    let reg = registry();
    reg.push(
        "lintbase:latest",
        &[ImageSpec {
            arch: "amd64".into(),
            layers: vec![layer_tar(&[("f", tar::EntryType::Regular, b"F", 0o644)])],
            env: &["PATH=/bin", "GREETING=hi"],
            workdir: "/",
        }],
    );
    let dir = dir_with(&format!(
        "FROM {}/lintbase\nENV A=$GREETING B=$GREETNG\n",
        reg.host
    ));
    let out = build(&dir, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "WARNING: UndefinedVar - Dockerfile:2: Usage of undefined variable '$GREETNG' \
             (did you mean $GREETING?)\n"
        ),
        "{err}"
    );
    assert_eq!(err.matches("UndefinedVar").count(), 1, "{err}");
    let out = dir.bk().args(["build", "--check", "."]).output();
    assert!(out.status.success(), "{}", describe(&out));
}
