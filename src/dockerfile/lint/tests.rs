//! One Dockerfile that triggers each rule and one that does not, after the
//! cases of BuildKit's `dockerfile_lint_test.go`.

use super::*;
use crate::dockerfile::parser::parse;

fn platform() -> Platform {
    "linux/amd64".parse().unwrap()
}

fn run(
    text: &str,
    config: &str,
    build_args: &[(&str, &str)],
    images: Option<&[Option<Image>]>,
) -> Report {
    let ast = parse(text).unwrap();
    let args: Vec<(String, String)> = build_args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let p = platform();
    let input = LintInput {
        build_args: &args,
        target: None,
        build_platform: &p,
        target_platform: None,
        base_images: images,
        needed: None,
        all_stages: true,
    };
    check_with(&ast, &input, &CheckConfig::parse(config).unwrap())
}

/// `(rule, message, line)` of each finding.
fn lint(text: &str) -> Vec<(&'static str, String, usize)> {
    lint_report(&run(text, "", &[], None))
}

fn lint_report(report: &Report) -> Vec<(&'static str, String, usize)> {
    report
        .findings
        .iter()
        .map(|f| (f.rule.name, f.message.clone(), f.location.start.line))
        .collect()
}

fn one(rule: &'static str, message: &str, line: usize) -> Vec<(&'static str, String, usize)> {
    vec![(rule, message.to_string(), line)]
}

#[test]
fn every_rule_has_a_documentation_address() {
    for rule in rules::ALL {
        assert!(rule
            .url
            .starts_with("https://docs.docker.com/go/dockerfile/rule/"));
        assert!(rule.url.ends_with('/') && !rule.description.is_empty());
    }
    assert_eq!(
        rules::STAGE_NAME_CASING.url,
        "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/"
    );
    assert_eq!(rules::by_name("UndefinedVar"), Some(&rules::UNDEFINED_VAR));
}

#[test]
fn stage_name_casing() {
    assert_eq!(
        lint("FROM scratch AS BadStageName\nFROM BadStageName\n")
            .into_iter()
            .filter(|f| f.0 == "StageNameCasing")
            .collect::<Vec<_>>(),
        one(
            "StageNameCasing",
            "Stage name 'BadStageName' should be lowercase",
            1
        )
    );
    assert!(lint("FROM scratch AS good\n").is_empty());
}

#[test]
fn from_as_casing() {
    assert_eq!(
        lint("FROM scratch as base\nFROM base AS other\n"),
        one(
            "FromAsCasing",
            "'as' and 'FROM' keywords' casing do not match",
            1
        )
    );
    assert_eq!(
        lint("from scratch AS base\nfrom base as other\n"),
        one(
            "FromAsCasing",
            "'AS' and 'from' keywords' casing do not match",
            1
        )
    );
    assert!(lint("FROM scratch AS base\nFROM base AS other\n").is_empty());
}

#[test]
fn no_empty_continuation() {
    assert_eq!(
        lint("FROM scratch\nCOPY a \\\n\nb /\n"),
        one("NoEmptyContinuation", "Empty continuation line", 4)
    );
    assert!(lint("FROM scratch\nCOPY a \\\nb /\n").is_empty());
}

#[test]
fn consistent_instruction_casing() {
    assert_eq!(
        lint("FROM scratch\ncopy a /a\nCOPY b /b\n"),
        one(
            "ConsistentInstructionCasing",
            "Command 'copy' should match the case of the command majority (uppercase)",
            2
        )
    );
    assert_eq!(
        lint("from scratch\nCopy a /a\ncopy b /b\n"),
        one(
            "ConsistentInstructionCasing",
            "Command 'Copy' should match the case of the command majority (lowercase)",
            2
        )
    );
    assert!(lint("from scratch\ncopy a /a\n").is_empty());
}

#[test]
fn json_args_recommended() {
    assert_eq!(
        lint("FROM scratch\nCMD mycommand\nENTRYPOINT [\"x\"]\n"),
        one(
            "JSONArgsRecommended",
            "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
            2
        )
    );
    assert!(lint("FROM scratch\nSHELL [\"/bin/sh\", \"-c\"]\nENTRYPOINT mycommand\n").is_empty());
    assert!(lint("FROM scratch\nCMD [\"mycommand\"]\n").is_empty());
}

#[test]
fn maintainer_deprecated() {
    assert_eq!(
        lint("FROM scratch\nMAINTAINER me@example.com\n"),
        one(
            "MaintainerDeprecated",
            "Maintainer instruction is deprecated in favor of using label",
            2
        )
    );
    assert!(lint("FROM scratch\nLABEL org.opencontainers.image.authors=me\n").is_empty());
}

#[test]
fn undefined_arg_in_from() {
    assert_eq!(
        lint("FROM --platform=$BULIDPLATFORM busybox\n"),
        one(
            "UndefinedArgInFrom",
            "FROM argument 'BULIDPLATFORM' is not declared (did you mean BUILDPLATFORM?)",
            1
        )
    );
    assert_eq!(
        lint("FROM $IMAGE\n")
            .into_iter()
            .filter(|f| f.0 == "UndefinedArgInFrom")
            .collect::<Vec<_>>(),
        one(
            "UndefinedArgInFrom",
            "FROM argument 'IMAGE' is not declared",
            1
        )
    );
    assert!(lint("ARG IMAGE=busybox\nFROM $IMAGE\n").is_empty());
    assert!(lint("ARG IMAGE\nFROM ${IMAGE:-busybox}\n").is_empty());
}

#[test]
fn workdir_relative_path() {
    assert_eq!(
        lint("FROM scratch\nWORKDIR app/\nWORKDIR sub\n"),
        one(
            "WorkdirRelativePath",
            "Relative workdir \"app/\" can have unexpected results if the base image changes",
            2
        )
    );
    assert!(lint("FROM scratch AS base\nWORKDIR /app\nFROM base\nWORKDIR sub\n").is_empty());
}

#[test]
fn undefined_var() {
    assert_eq!(
        lint("FROM scratch\nENV PATH=$PAHT:/x\n"),
        one(
            "UndefinedVar",
            "Usage of undefined variable '$PAHT' (did you mean $PATH?)",
            2
        )
    );
    assert_eq!(
        lint("FROM scratch\nCOPY $DIR /\n"),
        one("UndefinedVar", "Usage of undefined variable '$DIR'", 2)
    );
    // RUN's command is the shell's to expand.
    assert!(lint("FROM scratch\nRUN [\"echo\", \"$NOPE\"]\nRUN echo $NOPE\n").is_empty());
    // Declared (even without a value), set by ENV, or from the base image.
    assert!(lint("FROM scratch\nARG DIR\nENV X=1\nCOPY $DIR $X /\n").is_empty());
    assert!(lint("FROM scratch AS a\nENV D=1\nFROM a\nCOPY $D /\n").is_empty());
    let mut image = Image::default();
    image.config.env = vec!["FROMIMAGE=1".into()];
    let images = [Some(image)];
    let text = "FROM busybox\nCOPY $FROMIMAGE $OTHER /\n";
    assert_eq!(
        lint_report(&run(text, "", &[], Some(&images))),
        one("UndefinedVar", "Usage of undefined variable '$OTHER'", 2)
    );
    // An image whose config is not known may set anything.
    assert!(lint(text).is_empty());
}

#[test]
fn multiple_instructions_disallowed() {
    assert_eq!(
        lint("FROM scratch\nCMD [\"a\"]\nCMD [\"b\"]\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n"),
        vec![
            (
                "MultipleInstructionsDisallowed",
                "Multiple CMD instructions should not be used in the same stage because only the last one will be used".to_string(),
                2
            ),
            (
                "MultipleInstructionsDisallowed",
                "Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used".to_string(),
                4
            ),
        ]
    );
    assert!(lint("FROM scratch AS a\nCMD [\"a\"]\nFROM a\nCMD [\"b\"]\n").is_empty());
}

#[test]
fn legacy_key_value_format() {
    assert_eq!(
        lint("FROM scratch\nENV A b\nLABEL x y\n"),
        vec![
            (
                "LegacyKeyValueFormat",
                "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format"
                    .to_string(),
                2
            ),
            (
                "LegacyKeyValueFormat",
                "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format"
                    .to_string(),
                3
            ),
        ]
    );
    assert!(lint("FROM scratch\nENV A=b\nLABEL x=y\n").is_empty());
}

#[test]
fn redundant_target_platform() {
    assert_eq!(
        lint("FROM --platform=$TARGETPLATFORM scratch\n"),
        one(
            "RedundantTargetPlatform",
            "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
            1
        )
    );
    assert!(lint("FROM --platform=$BUILDPLATFORM scratch\n").is_empty());
    assert!(
        lint("FROM --platform=${TARGETPLATFORM}${EMPTY} scratch\nARG EMPTY\n")
            .iter()
            .all(|f| f.0 != "RedundantTargetPlatform")
    );
}

#[test]
fn secrets_used_in_arg_or_env() {
    assert_eq!(
        lint("FROM scratch\nARG SECRET_PASSPHRASE\nENV GITHUB_TOKEN=x\nARG public_key\n"),
        vec![
            (
                "SecretsUsedInArgOrEnv",
                "Do not use ARG or ENV instructions for sensitive data (ARG \"SECRET_PASSPHRASE\")"
                    .to_string(),
                2
            ),
            (
                "SecretsUsedInArgOrEnv",
                "Do not use ARG or ENV instructions for sensitive data (ENV \"GITHUB_TOKEN\")"
                    .to_string(),
                3
            ),
        ]
    );
    assert!(lint("FROM scratch\nARG KEYBOARD\nENV PASSWORD_FILE=/x\n").is_empty());
}

#[test]
fn invalid_default_arg_in_from() {
    let found = lint("ARG VERSION\nFROM busybox:$VERSION\n");
    assert_eq!(
        found,
        one(
            "InvalidDefaultArgInFrom",
            "Default value for ARG busybox:$VERSION results in empty or invalid base image name",
            2
        )
    );
    // A build arg does not excuse the default.
    let r = run(
        "ARG IMAGE\nFROM $IMAGE\n",
        "",
        &[("IMAGE", "busybox")],
        None,
    );
    assert_eq!(r.findings[0].rule.name, "InvalidDefaultArgInFrom");
    assert!(lint("ARG VERSION=latest\nFROM busybox:${VERSION}\n").is_empty());
}

#[test]
fn from_platform_flag_const_disallowed() {
    assert_eq!(
        lint("FROM --platform=linux/arm64 scratch AS build\n"),
        one(
            "FromPlatformFlagConstDisallowed",
            "FROM --platform flag should not use constant value \"linux/arm64\"",
            1
        )
    );
    assert!(lint("FROM --platform=linux/arm64 scratch AS build-arm64\n").is_empty());
    assert!(lint("FROM --platform=$BUILDPLATFORM scratch AS build\n").is_empty());
}

#[test]
fn skip_and_error_options() {
    let text = "FROM scratch as Base\nMAINTAINER x\n";
    let all = run(text, "", &[], None);
    assert_eq!(all.findings.len(), 3);
    assert_eq!(all.violation(), None);
    let some = run(
        text,
        "skip=StageNameCasing,NoSuchRule;error=true",
        &[],
        None,
    );
    assert_eq!(
        lint_report(&some).iter().map(|f| f.0).collect::<Vec<_>>(),
        ["FromAsCasing", "MaintainerDeprecated"]
    );
    assert_eq!(
        some.violation().as_deref(),
        Some("lint violation found for rules: FromAsCasing, MaintainerDeprecated")
    );
    let none = run(text, "skip=all;error=true", &[], None);
    assert!(none.findings.is_empty() && none.violation().is_none());
}

#[test]
fn a_comment_skips_rules_for_its_instruction() {
    let text = "FROM scratch\n# check=skip=JSONArgsRecommended\nCMD a\nENTRYPOINT b\n";
    assert_eq!(
        lint(text),
        one(
            "JSONArgsRecommended",
            "JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals",
            4
        )
    );
}

#[test]
fn the_directive_and_build_arg_configure_check() {
    let ast = parse("# check=skip=MaintainerDeprecated\nFROM scratch\nMAINTAINER x\n").unwrap();
    let opts = PlanOptions::default();
    assert!(check(&ast, &opts, None, true).unwrap().findings.is_empty());
    let opts = PlanOptions {
        build_args: vec![(CHECK_BUILD_ARG.into(), "error=true".into())],
        ..PlanOptions::default()
    };
    let report = check(&ast, &opts, None, true).unwrap();
    assert_eq!(report.findings.len(), 1);
    assert!(report.violation().is_some());
}

#[test]
fn expose_proto_casing() {
    assert_eq!(
        lint("FROM scratch\nEXPOSE 80/TcP 53/udp\n"),
        one(
            "ExposeProtoCasing",
            "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase",
            2
        )
    );
    assert!(lint("FROM scratch\nEXPOSE 80/tcp 8080\n").is_empty());
}

#[test]
fn expose_invalid_format() {
    assert_eq!(
        lint("FROM scratch\nEXPOSE 127.0.0.1:80:80\n"),
        one(
            "ExposeInvalidFormat",
            "EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:80:80'",
            2
        )
    );
    assert_eq!(lint("FROM scratch\nEXPOSE 8080:80\n").len(), 1);
    assert!(lint("FROM scratch\nEXPOSE 80-90/udp\n").is_empty());
}
