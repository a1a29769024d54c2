//! Tests of the planner through whole Dockerfiles: ARG scoping as
//! BuildKit's `dockerfile_args_test.go` asserts it, stage dependencies and
//! target selection, the image config and history each instruction
//! produces, ONBUILD triggers, and the errors.
//!
//! Test-only: it drives the real parser and planner with closure resolvers
//! and must not touch the disk or any layer below the frontend.

use super::dispatch::{Action, Source};
use super::instructions::Instruction;
use super::parser::parse;
use super::shell::{EnvGetter, EnvList};
use super::stages::{plan, Base, NoBaseImages, Plan, PlanOptions, Step};
use crate::image::{Image, Platform};

fn opts(build_args: &[(&str, &str)]) -> PlanOptions {
    let amd64: Platform = "linux/amd64".parse().expect("valid platform");
    PlanOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        build_platform: amd64,
        ..PlanOptions::default()
    }
}

fn with_target(mut o: PlanOptions, target: &str) -> PlanOptions {
    o.target = Some(target.to_string());
    o
}

fn try_plan(df: &str, o: &PlanOptions) -> Result<Plan, String> {
    let ast = parse(df).map_err(|e| format!("parse: {e}"))?;
    plan(&ast, o, &NoBaseImages).map_err(|e| match e.line() {
        Some(line) => format!("{line}: {e}"),
        None => e.to_string(),
    })
}

fn ok(df: &str, o: &PlanOptions) -> Plan {
    try_plan(df, o).unwrap_or_else(|e| panic!("plan failed: {e}\n{df}"))
}

fn err(df: &str, o: &PlanOptions) -> String {
    match try_plan(df, o) {
        Ok(_) => panic!("expected an error for\n{df}"),
        Err(e) => e,
    }
}

/// The steps of a stage that are RUNs.
fn runs(plan: &Plan, stage: usize) -> Vec<&Step> {
    plan.stages[stage]
        .steps
        .iter()
        .filter(|s| matches!(s.instruction, Instruction::Run(_)))
        .collect()
}

fn env_of(step: &Step, key: &str) -> Option<String> {
    step.env.get(key).map(str::to_string)
}

fn history(image: &Image) -> Vec<(String, bool)> {
    image
        .history
        .iter()
        .map(|h| (h.created_by.clone(), h.empty_layer))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn global_arg_in_from_overridden_by_build_arg() {
    // testGlobalArg
    let df = "ARG tag=nosuchtag\nFROM busybox:${tag}\n";
    let p = ok(df, &opts(&[("tag", "latest")]));
    assert_eq!(
        p.stages[0].base,
        Base::Image("docker.io/library/busybox:latest".into())
    );
    let p = ok(df, &opts(&[]));
    assert_eq!(p.stages[0].base_name, "busybox:nosuchtag");
}

#[test]
fn multi_args() {
    // testMultiArgs
    let df = r#"
ARG a1="foo bar" a2=box
ARG a3="$a2-foo"
FROM busy$a2 AS build
ARG a3 a4="123 456" a1
RUN echo -n "$a1:$a3:$a4" > /out
FROM scratch
COPY --from=build /out .
"#;
    let p = ok(df, &opts(&[]));
    assert_eq!(
        p.stages[0].base,
        Base::Image("docker.io/library/busybox:latest".into())
    );
    let run = runs(&p, 0)[0];
    assert_eq!(env_of(run, "a1").as_deref(), Some("foo bar"));
    assert_eq!(env_of(run, "a3").as_deref(), Some("box-foo"));
    assert_eq!(env_of(run, "a4").as_deref(), Some("123 456"));
    assert_eq!(env_of(run, "a2"), None, "global ARGs need a declaration");
    assert_eq!(
        p.stages[0]
            .image
            .history
            .last()
            .map(|h| h.created_by.as_str()),
        Some(
            r#"RUN |3 a3=box-foo a4=123 456 a1=foo bar /bin/sh -c echo -n "$a1:$a3:$a4" > /out # buildkit"#
        )
    );
}

#[test]
fn quoted_meta_args() {
    // testQuotedMetaArgs
    let df = r#"
ARG a1="box"
ARG a2="$a1-foo"
FROM busy$a1 AS build
ARG a2
ARG a3="bar-$a2"
RUN echo -n $a3 > /out
FROM scratch
COPY --from=build /out .
"#;
    let p = ok(df, &opts(&[]));
    assert_eq!(env_of(runs(&p, 0)[0], "a3").as_deref(), Some("bar-box-foo"));
}

#[test]
fn default_env_with_args() {
    // testDefaultEnvWithArgs: (build args, my_arg, my_trimmed_arg)
    let df = r#"
ARG image=idlebox
FROM busy${image#idle} AS build
ARG my_arg
ENV my_arg "my_arg=${my_arg:-def_val}"
ENV my_trimmed_arg "${my_arg%%e*}"
RUN ./myscript.sh $my_arg $my_trimmed_arg
FROM scratch
COPY --from=build /out /out
"#;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (&[], "my_arg=def_val", "my_arg=d"),
        (&[("my_arg", "")], "my_arg=def_val", "my_arg=d"),
        (&[("my_arg", "override")], "my_arg=override", "my_arg=ov"),
    ];
    for (build_args, my_arg, trimmed) in cases {
        let p = ok(df, &opts(build_args));
        assert_eq!(
            p.stages[0].base,
            Base::Image("docker.io/library/busybox:latest".into())
        );
        let run = runs(&p, 0)[0];
        assert_eq!(
            env_of(run, "my_arg").as_deref(),
            Some(*my_arg),
            "{build_args:?}"
        );
        assert_eq!(
            env_of(run, "my_trimmed_arg").as_deref(),
            Some(*trimmed),
            "{build_args:?}"
        );
        let env = &p.stages[0].image.config.env;
        assert!(env.contains(&format!("my_arg={my_arg}")), "{env:?}");
    }
}

#[test]
fn empty_string_arg_in_env() {
    // testEmptyStringArgInEnv
    let df = "FROM busybox AS build\nARG FOO\nARG BAR=\nRUN env > env.txt\n";
    let p = ok(df, &opts(&[]));
    let run = runs(&p, 0)[0];
    assert_eq!(env_of(run, "BAR").as_deref(), Some(""));
    assert_eq!(env_of(run, "FOO"), None);
    assert!(!p.stages[0]
        .image
        .config
        .env
        .iter()
        .any(|e| e.starts_with("BAR")));
}

#[test]
fn builtin_proxy_args() {
    // testBuiltinArgs
    let df = r#"
FROM busybox AS build
ARG FOO
ARG BAR
ARG BAZ=bazcontent
RUN echo -n $HTTP_PROXY::$NO_PROXY::$FOO::$BAR::$BAZ > /out
FROM scratch
COPY --from=build /out /
"#;
    let p = ok(
        df,
        &opts(&[
            ("FOO", "foocontents"),
            ("http_proxy", "hpvalue"),
            ("NO_PROXY", "npvalue"),
        ]),
    );
    let run = runs(&p, 0)[0];
    assert_eq!(env_of(run, "FOO").as_deref(), Some("foocontents"));
    assert_eq!(env_of(run, "BAR"), None);
    assert_eq!(env_of(run, "BAZ").as_deref(), Some("bazcontent"));
    // Proxies reach RUN through the runner, never through env or history.
    assert_eq!(env_of(run, "http_proxy"), None);
    let proxy = p.proxy.clone().expect("proxy settings");
    assert_eq!(proxy.http_proxy.as_deref(), Some("hpvalue"));
    assert_eq!(proxy.no_proxy.as_deref(), Some("npvalue"));
    let created_by = &p.stages[0]
        .image
        .history
        .last()
        .expect("history")
        .created_by;
    assert_eq!(
        created_by,
        "RUN |3 FOO=foocontents BAR= BAZ=bazcontent /bin/sh -c echo -n $HTTP_PROXY::$NO_PROXY::$FOO::$BAR::$BAZ > /out # buildkit"
    );
    assert!(!p.stages[0]
        .image
        .config
        .env
        .iter()
        .any(|e| e.to_lowercase().contains("proxy")));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn target_stage_name_arg() {
    // testTargetStageNameArg: (target, appended final stage, value after ARG)
    let base = r#"
FROM alpine AS base
WORKDIR /out
RUN echo -n "value:$TARGETSTAGE" > /out/first
ARG TARGETSTAGE
RUN echo -n "value:$TARGETSTAGE" > /out/second

FROM scratch AS foo
COPY --from=base /out/ /

FROM scratch
COPY --from=base /out/ /
"#;
    let with_final = format!("{base}\nFROM scratch AS final\nCOPY --from=base /out/ /\n");
    for (df, target, want) in [
        (base, Some("foo"), "foo"),
        (base, None, "default"),
        (with_final.as_str(), None, "final"),
    ] {
        let o = match target {
            Some(t) => with_target(opts(&[]), t),
            None => opts(&[]),
        };
        let p = ok(df, &o);
        let r = runs(&p, 0);
        assert_eq!(env_of(r[0], "TARGETSTAGE"), None, "undeclared default ARG");
        assert_eq!(env_of(r[1], "TARGETSTAGE").as_deref(), Some(want));
    }
}

#[test]
fn arg_default_expansion_errors_only_when_used() {
    // testArgDefaultExpansion
    let df = "FROM scratch\nARG FOO\nARG BAR=${FOO:?\"foo missing\"}\n";
    let e = err(df, &opts(&[]));
    assert!(
        e.starts_with("3: ") && e.contains("FOO: foo missing"),
        "{e}"
    );
    ok(df, &opts(&[("FOO", "123")]));
    ok(df, &opts(&[("BAR", "123")]));
}

#[test]
fn global_arg_error_fails_at_its_line() {
    // testGlobalArgErrors
    let df = "\nARG FOO=${FOO:?\"custom error\"}\nFROM busybox\n";
    let e = err(df, &opts(&[]));
    assert!(
        e.starts_with("2: ") && e.contains("FOO: custom error"),
        "{e}"
    );
    ok(df, &opts(&[("FOO", "bar")]));
}

#[test]
fn platform_args_in_from_and_after_declaration() {
    let df = "FROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETARCH\nARG BUILDOS\nRUN true\nFROM img-$TARGETARCH\nCOPY --from=b / /\n";
    let mut o = opts(&[]);
    o.target_platform = Some("linux/arm64".parse().expect("platform"));
    let p = ok(df, &o);
    assert_eq!(p.stages[0].platform.to_string(), "linux/amd64");
    let run = runs(&p, 0)[0];
    assert_eq!(env_of(run, "TARGETARCH").as_deref(), Some("arm64"));
    assert_eq!(env_of(run, "BUILDOS").as_deref(), Some("linux"));
    assert_eq!(env_of(run, "TARGETOS"), None);
    assert_eq!(
        p.stages[1].base,
        Base::Image("docker.io/library/img-arm64:latest".into())
    );
    assert_eq!(p.stages[1].platform.to_string(), "linux/arm64");
    // The requested platform is stamped on the result.
    assert_eq!(p.target_stage().image.architecture, "arm64");
}

#[test]
fn global_arg_is_inherited_only_by_declaration() {
    let df = "ARG V=1\nFROM scratch\nRUN a\nARG V\nRUN b\nARG V=2\nRUN c\n";
    let p = ok(df, &opts(&[]));
    let r = runs(&p, 0);
    assert_eq!(env_of(r[0], "V"), None);
    assert_eq!(env_of(r[1], "V").as_deref(), Some("1"));
    assert_eq!(env_of(r[2], "V").as_deref(), Some("2"));
    let h = history(&p.stages[0].image);
    assert_eq!(h[1].0, "ARG V=1");
    assert_eq!(h[3].0, "ARG V=2");
    // Both declarations are listed once, with the current value.
    assert_eq!(h[4].0, "RUN |1 V=2 /bin/sh -c c # buildkit");
}

#[test]
fn args_carry_into_child_stages() {
    let df = "FROM scratch AS base\nARG NAME=joe\nFROM base\nRUN echo $NAME\n";
    let p = ok(df, &opts(&[]));
    let run = runs(&p, 1)[0];
    assert_eq!(env_of(run, "NAME").as_deref(), Some("joe"));
    assert_eq!(
        p.stages[1]
            .image
            .history
            .last()
            .map(|h| h.created_by.clone()),
        Some("RUN |1 NAME=joe /bin/sh -c echo $NAME # buildkit".to_string())
    );
}

#[test]
fn unused_build_args_are_reported() {
    let df = "ARG G\nFROM scratch AS a\nARG USED\nFROM scratch AS b\nARG ONLY_IN_B\nFROM a\n";
    let p = ok(
        df,
        &opts(&[
            ("USED", "1"),
            ("G", "1"),
            ("ONLY_IN_B", "1"),
            ("NOPE", "1"),
            ("HTTPS_PROXY", "p"),
        ]),
    );
    let messages: Vec<&str> = p.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        messages,
        ["One or more build-args [NOPE ONLY_IN_B] were not consumed"]
    );
}

#[test]
fn stage_dependencies_and_target_selection() {
    let df = r#"
FROM alpine AS base
FROM base AS a
COPY --from=0 /x /
FROM scratch AS b
RUN --mount=from=a,target=/m true
FROM busybox AS unused
COPY --from=base /x /
FROM b
COPY --from=alpine:3 /y /
RUN --mount=type=cache,target=/c --mount=from=unused2,target=/n true
"#;
    let p = ok(df, &opts(&[]));
    assert_eq!(p.target, 4);
    let needed: Vec<bool> = p.stages.iter().map(|s| s.needed).collect();
    assert_eq!(needed, [true, true, true, false, true]);
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert_eq!(p.stages[1].deps, [Source::Stage(0)]);
    assert_eq!(p.stages[2].deps, [Source::Stage(1)]);
    assert_eq!(p.stages[4].base, Base::Stage(2));
    assert_eq!(
        p.stages[4].deps,
        [
            Source::Image("docker.io/library/alpine:3".into()),
            Source::Image("docker.io/library/unused2:latest".into())
        ]
    );
    assert!(
        p.stages[3].steps.is_empty(),
        "unneeded stages are not evaluated"
    );
    let Action::Run(run) = &p.stages[2].steps[0].action else {
        panic!("RUN step expected");
    };
    assert_eq!(run.mount_sources, [Some(Source::Stage(1))]);

    // --target picks a stage in any case and prunes the rest.
    let p = ok(df, &with_target(opts(&[]), "A"));
    assert_eq!(p.target, 1);
    let needed: Vec<bool> = p.stages.iter().map(|s| s.needed).collect();
    assert_eq!(needed, [true, true, false, false, false]);

    assert_eq!(
        err(df, &with_target(opts(&[]), "nosuch")),
        r#"target stage "nosuch" could not be found"#
    );
    assert_eq!(
        err(df, &with_target(opts(&[]), "bas")),
        r#"target stage "bas" could not be found (did you mean base?)"#
    );
}

#[test]
fn from_names_only_earlier_stages_exactly() {
    // A later stage's name in FROM is an image, and FROM does not fold case.
    let df = "FROM later\nFROM scratch AS later\nFROM later\n";
    let p = ok(df, &opts(&[]));
    assert_eq!(
        p.stages[0].base,
        Base::Image("docker.io/library/later:latest".into())
    );
    assert_eq!(p.stages[2].base, Base::Stage(1));
    let e = err("FROM scratch AS build\nFROM Build\n", &opts(&[]));
    assert_eq!(
        e,
        r#"2: failed to parse stage name "Build": invalid reference format: repository name (library/Build) must be lowercase"#
    );
}

#[test]
fn entrypoint_resets_inherited_cmd_only() {
    let df = r#"
FROM scratch AS base
CMD ["base-cmd"]
FROM base AS child1
ENTRYPOINT ["ep"]
FROM base AS child2
CMD ["own"]
ENTRYPOINT ["ep"]
FROM base AS child3
ENTRYPOINT ["ep"]
CMD ["after"]
FROM base AS child4
SHELL ["/bin/bash", "-eo", "pipefail", "-c"]
ENTRYPOINT exec app
CMD echo hi
FROM base AS child5
ENTRYPOINT []
"#;
    type Case<'a> = (&'a str, Option<&'a [&'a str]>, Option<&'a [&'a str]>);
    let cases: &[Case] = &[
        ("base", None, Some(&["base-cmd"])),
        ("child1", Some(&["ep"]), None),
        ("child2", Some(&["ep"]), Some(&["own"])),
        ("child3", Some(&["ep"]), Some(&["after"])),
        (
            "child4",
            Some(&["/bin/bash", "-eo", "pipefail", "-c", "exec app"]),
            Some(&["/bin/bash", "-eo", "pipefail", "-c", "echo hi"]),
        ),
        ("child5", None, None),
    ];
    for (target, entrypoint, cmd) in cases {
        let p = ok(df, &with_target(opts(&[]), target));
        let config = &p.target_stage().image.config;
        assert_eq!(config.entrypoint, entrypoint.map(strings), "{target}");
        assert_eq!(config.cmd, cmd.map(strings), "{target}");
    }
}

#[test]
fn shell_form_uses_default_shell() {
    let p = ok("FROM scratch\nCMD echo hi\n", &opts(&[]));
    let image = &p.target_stage().image;
    assert_eq!(
        image.config.cmd,
        Some(strings(&["/bin/sh", "-c", "echo hi"]))
    );
    assert!(image.config.args_escaped);
    assert_eq!(
        history(image),
        [(r#"CMD ["/bin/sh" "-c" "echo hi"]"#.to_string(), true)]
    );
}

#[test]
fn expose_is_expanded_and_normalised() {
    let df = "FROM scratch\nENV P=8080\nEXPOSE 80 $P/UDP 9000-9001\n";
    let p = ok(df, &opts(&[]));
    let image = &p.target_stage().image;
    let ports: Vec<&str> = image
        .config
        .exposed_ports
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(ports, ["80/tcp", "8080/udp", "9000/tcp", "9001/tcp"]);
    assert_eq!(
        image.history.last().map(|h| h.created_by.as_str()),
        Some("EXPOSE [8080/udp 80/tcp 9000/tcp 9001/tcp]")
    );
    assert_eq!(
        err("FROM scratch\nEXPOSE 80/tcpx\n", &opts(&[])),
        r#"2: invalid port: "80/tcpx": invalid proto: tcpx"#
    );
}

#[test]
fn workdir_resolution_and_copy_destinations() {
    let df = "FROM scratch\nWORKDIR /app\nWORKDIR sub\nCOPY a .\nWORKDIR ../x\nENV D=/data\nWORKDIR $D/in\nCOPY b rel/\nWORKDIR /\n";
    let p = ok(df, &opts(&[]));
    let stage = p.target_stage();
    let workdirs: Vec<&str> = stage
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Mkdir(d) => Some(d.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(workdirs, ["/app", "/app/sub", "/app/x", "/data/in"]);
    let dests: Vec<&str> = stage
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Copy(c) => Some(c.dest.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(dests, ["/app/sub/", "/data/in/rel/"]);
    assert_eq!(stage.image.config.working_dir, "/");
    let h = history(&stage.image);
    assert_eq!(h[0], ("WORKDIR /app".to_string(), false));
    assert_eq!(h.last(), Some(&("WORKDIR /".to_string(), true)));
}

#[test]
fn history_strings_match_buildkit() {
    let df = r#"FROM scratch
ENV A=1 B="two words"
LABEL l=v
ARG X=1 Y
RUN echo $A
COPY --chown=1:1 a b /dst/
ADD --chmod=644 https://example.com/f.tgz /
COPY <<EOF /f
hi
EOF
USER me
WORKDIR /app
EXPOSE 80
VOLUME /v
STOPSIGNAL SIGKILL
SHELL ["/bin/bash","-c"]
HEALTHCHECK --interval=30s CMD true
MAINTAINER m
ONBUILD RUN x
CMD ["a"]
ENTRYPOINT ["b"]
"#;
    let p = ok(df, &opts(&[]));
    let image = &p.target_stage().image;
    let want: &[(&str, bool)] = &[
        ("ENV A=1 B=two words", true),
        ("LABEL l=v", true),
        ("ARG X=1 Y", true),
        ("RUN |2 X=1 Y= /bin/sh -c echo $A # buildkit", false),
        ("COPY --chown=1:1 a b /dst/ # buildkit", false),
        ("ADD --chmod=644 https://example.com/f.tgz / # buildkit", false),
        ("COPY <<EOF /f # buildkit", false),
        ("USER me", true),
        ("WORKDIR /app", false),
        ("EXPOSE [80/tcp]", true),
        ("VOLUME [/v]", true),
        ("STOPSIGNAL SIGKILL", true),
        ("SHELL [/bin/bash -c]", true),
        (
            "HEALTHCHECK {Test:[CMD-SHELL true] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}",
            true,
        ),
        ("MAINTAINER m", true),
        (r#"CMD ["a"]"#, true),
        (r#"ENTRYPOINT ["b"]"#, true),
    ];
    let want: Vec<(String, bool)> = want.iter().map(|(s, e)| (s.to_string(), *e)).collect();
    assert_eq!(history(image), want);
    assert!(image
        .history
        .iter()
        .all(|h| h.comment.as_deref() == Some("buildkit.dockerfile.v0") && h.created.is_none()));
    let c = &image.config;
    assert_eq!(
        c.env,
        [
            format!("PATH={}", crate::image::config::DEFAULT_PATH),
            "A=1".to_string(),
            "B=two words".to_string()
        ]
    );
    assert_eq!(c.labels.get("l").map(String::as_str), Some("v"));
    assert_eq!(c.user, "me");
    assert!(c.volumes.contains_key("/v"));
    assert_eq!(c.stop_signal, "SIGKILL");
    assert_eq!(c.shell, strings(&["/bin/bash", "-c"]));
    let hc = c.healthcheck.as_ref().expect("healthcheck");
    assert_eq!(hc.test, strings(&["CMD-SHELL", "true"]));
    assert_eq!(hc.interval, 30_000_000_000);
    assert_eq!(image.author.as_deref(), Some("m"));
    assert_eq!(c.on_build, strings(&["RUN x"]));
    assert_eq!(c.cmd, Some(strings(&["a"])));
}

#[test]
fn source_date_epoch_sets_history_time() {
    let p = ok(
        "FROM scratch\nENV A=1\n",
        &opts(&[("SOURCE_DATE_EPOCH", "1700000000")]),
    );
    assert_eq!(p.epoch, Some(1_700_000_000));
    let created = p.target_stage().image.history[0].created.clone();
    assert_eq!(created.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert!(p.warnings.is_empty());
    assert_eq!(
        err("FROM scratch\n", &opts(&[("SOURCE_DATE_EPOCH", "soon")])),
        "invalid SOURCE_DATE_EPOCH: soon"
    );
    // A local context has no time: unset, silently, as in BuildKit.
    let p = ok("FROM scratch\n", &opts(&[("SOURCE_DATE_EPOCH", "context")]));
    assert_eq!(p.epoch, None);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // A stage's remote ADD time is not read yet: said, and unset.
    let p = ok(
        "FROM scratch AS src\nFROM scratch\n",
        &opts(&[("SOURCE_DATE_EPOCH", "src")]),
    );
    assert_eq!(p.epoch, None);
    assert!(p.warnings[0].message.contains("not supported yet"));
}

#[test]
fn healthcheck_none_and_labels_from_options() {
    let mut o = opts(&[]);
    o.labels = vec![("org.x".into(), "1".into())];
    let p = ok("FROM scratch AS a\nHEALTHCHECK NONE\nFROM a\n", &o);
    let image = &p.target_stage().image;
    assert_eq!(
        image.config.healthcheck.as_ref().map(|h| h.test.clone()),
        Some(strings(&["NONE"]))
    );
    assert_eq!(
        image.config.labels.get("org.x").map(String::as_str),
        Some("1")
    );
    assert!(
        p.stages[0].image.config.labels.is_empty(),
        "labels go on the target only"
    );
}

#[test]
fn onbuild_triggers_of_a_base_image_run_first() {
    let resolver = |reference: &str, platform: &Platform| -> Option<Image> {
        (reference == "docker.io/library/base:latest").then(|| {
            let mut image = Image::empty(platform);
            image.created = Some("2024-01-01T00:00:00Z".into());
            image.config.env.push("FROM_BASE=1".into());
            image.config.working_dir = "/srv".into();
            image.config.on_build = strings(&[
                "ENV TRIGGERED=$FROM_BASE",
                "COPY --from=helper /x /y",
                "RUN echo in $PWD",
            ]);
            image
        })
    };
    let df = "FROM scratch AS helper\nFROM base\nRUN true\nONBUILD RUN own\n";
    let ast = parse(df).expect("parses");
    let p = plan(&ast, &opts(&[]), &resolver).expect("plans");
    let stage = p.target_stage();
    assert!(
        p.stages[0].needed,
        "a trigger's --from makes the stage needed"
    );
    assert_eq!(stage.deps, [Source::Stage(0)]);
    let onbuild: Vec<bool> = stage.steps.iter().map(|s| s.onbuild).collect();
    assert_eq!(onbuild, [true, true, true, false, false]);
    assert!(stage
        .steps
        .iter()
        .take(3)
        .all(|s| s.instruction.location().start.line == 2));
    let Action::Copy(copy) = &stage.steps[1].action else {
        panic!("COPY step expected");
    };
    assert_eq!(copy.source, Some(Source::Stage(0)));
    assert_eq!(copy.dest, "/y");
    assert_eq!(stage.steps[2].workdir, "/srv");
    let env = &stage.image.config.env;
    assert!(
        env.contains(&"FROM_BASE=1".to_string()) && env.contains(&"TRIGGERED=1".to_string()),
        "{env:?}"
    );
    // The base's triggers are consumed; the stage's own are stored.
    assert_eq!(stage.image.config.on_build, strings(&["RUN own"]));
    assert_eq!(stage.image.created, None);
    assert_eq!(
        stage
            .base_image
            .as_ref()
            .and_then(|i| i.created.clone())
            .as_deref(),
        Some("2024-01-01T00:00:00Z")
    );
}

#[test]
fn onbuild_triggers_of_a_base_stage_run_first() {
    let df = "FROM scratch AS lib\nONBUILD ENV X=1\nFROM lib AS app\nRUN echo $X\nFROM app\n";
    let p = ok(df, &opts(&[]));
    assert_eq!(p.stages[0].image.config.on_build, strings(&["ENV X=1"]));
    let app = &p.stages[1];
    assert!(app.steps[0].onbuild);
    assert_eq!(env_of(&app.steps[1], "X").as_deref(), Some("1"));
    assert!(app.image.config.on_build.is_empty());
    // Triggers fire one level down only.
    assert!(p.stages[2].steps.is_empty());
}

#[test]
fn bad_onbuild_triggers_point_at_the_from_line() {
    let image_with = |triggers: &'static [&'static str]| {
        move |_: &str, platform: &Platform| -> Option<Image> {
            let mut image = Image::empty(platform);
            image.config.on_build = strings(triggers);
            Some(image)
        }
    };
    let df = "FROM scratch AS x\nFROM base\n";
    let ast = parse(df).expect("parses");
    for (triggers, want) in [
        (
            &["FROM alpine"][..],
            "ONBUILD FROM alpine: FROM is not a command type",
        ),
        (
            &["ONBUILD ONBUILD RUN x"],
            "ONBUILD ONBUILD ONBUILD RUN x: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            &["RUN a\nRUN b"],
            "ONBUILD RUN a\nRUN b: onbuild trigger should be a single expression",
        ),
        (
            &["RUN --bogus x"],
            "ONBUILD RUN --bogus x: unknown flag: --bogus",
        ),
    ] {
        let resolver = image_with(triggers);
        match plan(&ast, &opts(&[]), &resolver) {
            Ok(_) => panic!("{triggers:?} should fail"),
            Err(e) => {
                assert_eq!(e.to_string(), want);
                assert_eq!(e.line(), Some(2), "{triggers:?}");
            }
        }
    }
    // MAINTAINER is only refused inside an ONBUILD line, not as a stored
    // trigger, as in BuildKit; a stored ONBUILD is re-registered.
    let resolver = image_with(&["MAINTAINER someone", "ONBUILD RUN x"]);
    let p = plan(&ast, &opts(&[]), &resolver).expect("plans");
    let image = &p.target_stage().image;
    assert_eq!(image.author.as_deref(), Some("someone"));
    assert_eq!(image.config.on_build, strings(&["RUN x"]));
}

#[test]
fn structural_errors() {
    let o = opts(&[]);
    for (df, want) in [
        ("RUN x\nFROM scratch\n", "1: no build stage in current context"),
        ("ARG A\nENV B=1\n", "2: no build stage in current context"),
        ("ARG A\n", "dockerfile contains no stages to build"),
        (
            "FROM scratch AS a\nRUN x\nFROM scratch AS A\n",
            r#"3: duplicate stage name "a", stage names should be unique"#,
        ),
        (
            "FROM scratch\nFROM scratch AS context\n",
            r#"2: stage name should not use the same name as reserved stage "context""#,
        ),
        ("FROM \"\" AS foo\n", r#"1: base name ("") should not be blank"#),
        ("FROM ${BLANK} AS foo\n", "1: base name (${BLANK}) should not be blank"),
        (
            "FROM busybox AS stage0\nCOPY --from=stage0 f1 /sub/\n",
            "2: circular dependency detected on stage: stage0",
        ),
        (
            "FROM busybox AS stage0\nCOPY --from=stage2 f1 /sub/\nFROM busybox AS stage1\nCOPY --from=stage0 f2 /sub/\nFROM busybox AS stage2\nCOPY --from=stage1 f2 /sub/\n",
            "2: circular dependency detected on stage: stage0",
        ),
        ("FROM scratch\nCOPY --from=5 a b\n", "2: invalid stage index 5"),
        (
            "FROM scratch\nCOPY --from=$X a b\n",
            "2: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
        ),
        (
            "FROM scratch AS first\nCOPY --from=later / /\nFROM scratch AS later\nFROM scratch\nCOPY --from=first / /\n",
            r#"2: cannot copy from stage "later", it needs to be defined before current stage "first""#,
        ),
        (
            "FROM scratch AS first\nRUN --mount=from=later,target=/m x\nFROM scratch AS later\nFROM first\n",
            r#"2: cannot mount from stage "later" to "/m", stage needs to be defined before current command"#,
        ),
        ("FROM scratch\nCOPY http://example.com/a /\n", "2: source can't be a URL for COPY"),
        ("FROM scratch\nCOPY git@github.com:o/r.git /\n", "2: source can't be a git ref for COPY"),
        ("FROM scratch\nSTOPSIGNAL SIGNOPE\n", "2: invalid signal: SIGNOPE"),
        ("FROM scratch\nENV E=\nVOLUME $E\n", "3: VOLUME specified can not be an empty string"),
        (
            "FROM --platform=linux/z80 scratch\n",
            r#"1: failed to parse platform linux/z80: invalid platform "linux/z80": unknown architecture "z80""#,
        ),
        ("FROM --platform=$NOPE scratch\n", "1: empty platform value from expression $NOPE"),
        (
            "FROM scratch\nCOPY --from=Bad:1 a b\n",
            r#"2: failed to parse stage name "Bad:1": invalid reference format: repository name (library/Bad) must be lowercase"#,
        ),
        (
            "FROM scratch\nRUN echo ${X:?nope}\nENV Y=${X:?required}\n",
            r#"3: failed to process "${X:?required}": X: required"#,
        ),
    ] {
        assert_eq!(err(df, &o), want, "{df}");
    }
}

#[test]
fn invalid_references_fail_even_in_unneeded_stages() {
    let e = err("FROM UPPER AS a\nFROM scratch\n", &opts(&[]));
    assert!(
        e.starts_with("1: failed to parse stage name \"UPPER\""),
        "{e}"
    );
}

#[test]
fn errors_carry_instruction_then_stage_location() {
    let ast = parse("FROM scratch\nRUN a\nSTOPSIGNAL 0\n").expect("parses");
    let e = plan(&ast, &opts(&[]), &NoBaseImages).expect_err("bad signal");
    let lines: Vec<usize> = e.location.iter().map(|r| r.start.line).collect();
    assert_eq!(lines, [3, 1]);
    let snippet = e
        .snippet("Dockerfile", "FROM scratch\nRUN a\nSTOPSIGNAL 0\n")
        .expect("snippet");
    assert!(snippet.contains(">>> STOPSIGNAL 0"), "{snippet}");
}

#[test]
fn run_heredocs_become_argv() {
    let df = "FROM scratch\nRUN <<EOF\necho a\nEOF\nRUN <<EOF\n#!/bin/python\nprint(1)\nEOF\nRUN cat <<EOF > /f\nx\nEOF\n";
    let p = ok(df, &opts(&[]));
    let args: Vec<Vec<String>> = p
        .target_stage()
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Run(r) => Some(r.args.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        args,
        [
            strings(&["/bin/sh", "-c", "echo a\n"]),
            strings(&["/bin/sh", "-c", "/dev/pipes/EOF"]),
            strings(&["/bin/sh", "-c", "cat <<EOF > /f\nx\nEOF"]),
        ]
    );
    let Action::Run(r) = &p.target_stage().steps[1].action else {
        panic!("RUN expected");
    };
    assert_eq!(
        r.script.as_ref().map(|s| s.data.as_str()),
        Some("#!/bin/python\nprint(1)\n")
    );
}

#[test]
fn env_expansion_sees_earlier_instructions_only() {
    let df = "FROM scratch\nENV A=1\nENV A=2 B=$A\nENV C=$B\nLABEL x=$C\n";
    let p = ok(df, &opts(&[]));
    let image = &p.target_stage().image;
    assert!(image.config.env.contains(&"B=1".to_string()));
    assert!(image.config.env.contains(&"C=1".to_string()));
    assert_eq!(image.config.labels.get("x").map(String::as_str), Some("1"));
}

#[test]
fn step_env_is_the_state_before_the_step() {
    let p = ok(
        "FROM scratch\nUSER a\nRUN x\nUSER b\nWORKDIR /w\n",
        &opts(&[]),
    );
    let steps = &p.target_stage().steps;
    assert_eq!(steps[1].user, "a");
    assert_eq!(steps[1].workdir, "/");
    assert_eq!(steps[2].user, "a");
    let env: &EnvList = &steps[1].env;
    assert!(env.get("PATH").is_some());
}

#[test]
fn realworld_fixture_plans_like_buildkit() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/realworld/Dockerfile"
    );
    let text = std::fs::read_to_string(path).expect("fixture is readable");
    let p = ok(&text, &opts(&[]));
    let index = |name: &str| {
        p.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("stage {name}"))
    };
    assert_eq!(p.target, index("release"));
    let needed: Vec<&str> = p
        .stages
        .iter()
        .filter(|s| s.needed)
        .filter_map(|s| s.name.as_deref())
        .collect();
    assert_eq!(
        needed,
        [
            "xx",
            "golatest",
            "rustlatest",
            "nodelatest",
            "gobase",
            "gomod",
            "rustbase",
            "twparse",
            "webui-base",
            "webui-deps",
            "webui",
            "plugins-src",
            "build-base",
            "build-linux",
            "plugins",
            "geoip",
            "release-base",
            "release"
        ]
    );
    // `FROM binaries-$TARGETOS` names a stage through a platform default.
    assert_eq!(
        p.stages[index("binaries")].base,
        Base::Stage(index("binaries-linux"))
    );
    assert_eq!(
        p.stages[index("golatest")].base,
        Base::Image("docker.io/library/golang:1.22-alpine3.19".into())
    );
    let image = &p.target_stage().image;
    assert_eq!(image.config.working_dir, "/var/lib/tidewater");
    assert_eq!(image.config.user, "tide:tide");
    assert!(image
        .config
        .env
        .contains(&"TIDEWATER_PLATFORM=amd64".to_string()));
    assert_eq!(
        image
            .config
            .labels
            .get("org.opencontainers.image.version")
            .map(String::as_str),
        Some("dev")
    );
    // --target binaries with a Windows platform picks the other flavour.
    let mut o = with_target(opts(&[]), "binaries");
    o.target_platform = Some("windows/amd64".parse().expect("platform"));
    let p = ok(&text, &o);
    assert_eq!(
        p.stages[p.target].base,
        Base::Stage(index("binaries-windows"))
    );
    assert!(!p.stages[index("build-linux")].needed);
}

#[test]
fn declared_proxy_args_are_ordinary_args() {
    // BuildKit only keeps undeclared proxy build args out of history; once
    // declared with ARG they are recorded like any other.
    let df = "FROM scratch\nARG HTTP_PROXY\nRUN true\n";
    let p = ok(df, &opts(&[("HTTP_PROXY", "http://p:3128")]));
    let run = runs(&p, 0)[0];
    assert_eq!(env_of(run, "HTTP_PROXY").as_deref(), Some("http://p:3128"));
    assert_eq!(
        p.target_stage()
            .image
            .history
            .last()
            .map(|h| h.created_by.as_str()),
        Some("RUN |1 HTTP_PROXY=http://p:3128 /bin/sh -c true # buildkit")
    );
}

#[test]
fn platforms_follow_buildkit() {
    let df = "FROM --platform=linux/arm64 scratch AS s\nFROM --platform=linux/arm64 busybox AS b\nFROM --platform=linux/s390x b AS c\nCOPY --from=s / /\n";
    let p = ok(df, &opts(&[]));
    // Scratch takes the target platform whatever FROM says; a stage base
    // passes its platform on, ignoring the child's --platform.
    assert_eq!(p.stages[0].platform.to_string(), "linux/amd64");
    assert_eq!(p.stages[1].platform.to_string(), "linux/arm64");
    assert_eq!(p.stages[1].image.architecture, "arm64");
    assert_eq!(p.stages[2].platform.to_string(), "linux/arm64");
}

#[test]
fn named_contexts_override_stages_and_images() {
    use super::named_context::{ContextSource, NamedContexts};
    use super::stages::Source;
    let mut contexts = NamedContexts::default();
    contexts.insert("src", ContextSource::Local);
    contexts.insert("alpine", ContextSource::Image("docker.io/me/alp:1".into()));
    contexts.insert("b", ContextSource::Stage("first".into()));
    let o = PlanOptions {
        named_contexts: contexts,
        ..opts(&[])
    };
    let p = try_plan(
        "FROM scratch AS first\n\
         FROM busybox AS src\nCOPY --from=nowhere /x /\n\
         FROM docker.io/library/alpine:latest\nCOPY --from=src / /s\nCOPY --from=b / /b\n\
         RUN --mount=from=alpine true\n",
        &o,
    )
    .unwrap();
    // The stage named like the context is replaced, instructions dropped.
    assert_eq!(p.stages[1].base, Base::Context("src".into()));
    assert!(p.stages[1].deps.is_empty());
    assert_eq!(p.stages[2].base, Base::Image("docker.io/me/alp:1".into()));
    assert_eq!(
        p.stages[2].deps,
        vec![
            Source::Stage(1),
            Source::Stage(0),
            Source::Image("docker.io/me/alp:1".into())
        ]
    );
    let err = try_plan("FROM b\nFROM scratch AS first\n", &o).unwrap_err();
    assert!(
        err.contains("stage \"first\" is not defined before"),
        "{err}"
    );
}

/// Tells which context and platform a stage's base config came from.
struct ContextConfigs;

impl super::stages::BaseImageResolver for ContextConfigs {
    fn resolve(&self, _: &str, _: &Platform) -> Option<Image> {
        None
    }

    fn resolve_context(&self, key: &str, platform: &Platform) -> Option<Image> {
        let mut image = Image::empty(platform);
        image.config.working_dir = format!("/{key}/for/{platform}");
        Some(image)
    }
}

#[test]
fn scoped_contexts_are_chosen_by_the_platform_of_each_use() {
    use super::named_context::{ContextSource, NamedContexts};
    let amd: Platform = "linux/amd64".parse().unwrap();
    let arm: Platform = "linux/arm64".parse().unwrap();
    let mut contexts = NamedContexts::default();
    for platform in [&amd, &arm] {
        let key = format!("tool::{platform}");
        contexts.insert_scoped("tool", platform, ContextSource::ScopedLocal(key));
    }
    contexts.insert_scoped(
        "base",
        &arm,
        ContextSource::Image("docker.io/me/base:arm".into()),
    );
    contexts.insert(
        "base",
        ContextSource::Image("docker.io/me/base:plain".into()),
    );
    contexts.insert_scoped(
        "gen",
        &amd,
        ContextSource::OciLayout("oci-layout:///gen".into()),
    );
    let df = "FROM --platform=$BUILDPLATFORM tool AS build\n\
              COPY --from=tool /a /a\n\
              RUN --mount=from=base true\n\
              FROM --platform=$BUILDPLATFORM busybox AS gen\n\
              RUN dropped\n\
              FROM base\n\
              COPY --from=build /a /a\n\
              COPY --from=gen /g /g\n\
              COPY --from=tool /b /b\n";
    let for_target = |target: &str| {
        let o = PlanOptions {
            named_contexts: contexts.clone(),
            target_platform: Some(target.parse().unwrap()),
            ..opts(&[])
        };
        plan(&parse(df).unwrap(), &o, &ContextConfigs).unwrap()
    };

    // Target arm64 on an amd64 build machine: the build-platform stages
    // read amd64's contexts, the target stage arm64's.
    let p = for_target("linux/arm64");
    assert_eq!(p.stages[0].base, Base::Context("tool::linux/amd64".into()));
    assert_eq!(p.stages[0].platform, amd);
    // The OCI layout's config was resolved with the stage's platform.
    assert_eq!(
        p.stages[0].image.config.working_dir,
        "/tool::linux/amd64/for/linux/amd64"
    );
    // `--from` of a context uses the target platform, even in a
    // build-platform stage (BuildKit gives it no platform of its own).
    assert_eq!(
        p.stages[0].deps,
        vec![
            Source::Context("tool::linux/arm64".into()),
            Source::Image("docker.io/me/base:arm".into()),
        ]
    );
    assert_eq!(p.stages[1].base, Base::Context("gen::linux/amd64".into()));
    assert!(p.stages[1].steps.is_empty());
    assert_eq!(
        p.stages[1].image.config.working_dir,
        "/gen::linux/amd64/for/linux/amd64"
    );
    assert_eq!(
        p.stages[2].base,
        Base::Image("docker.io/me/base:arm".into())
    );
    assert_eq!(p.stages[2].platform, arm);
    assert_eq!(
        p.stages[2].deps,
        vec![
            Source::Stage(0),
            Source::Stage(1),
            Source::Context("tool::linux/arm64".into()),
        ]
    );

    // Target amd64: no base for amd64, so the plain one; tool is amd64's
    // everywhere.
    let p = for_target("linux/amd64");
    assert_eq!(p.stages[0].base, Base::Context("tool::linux/amd64".into()));
    assert_eq!(
        p.stages[2].base,
        Base::Image("docker.io/me/base:plain".into())
    );
    assert_eq!(
        p.stages[2].deps[2],
        Source::Context("tool::linux/amd64".into())
    );

    // Target riscv64: nothing scoped to it, and no plain `tool`, so
    // `--from=tool` is an image while the build-platform FROM still reads
    // amd64's directory.
    let p = for_target("linux/riscv64");
    assert_eq!(p.stages[0].base, Base::Context("tool::linux/amd64".into()));
    assert_eq!(
        p.stages[0].deps[0],
        Source::Image("docker.io/library/tool:latest".into())
    );
}
