//! `bk debug dump-llb`: a Dockerfile parsed, planned and lowered to the
//! build graph, printed as JSON lines (one vertex per line, then the root)
//! or as a Graphviz digraph.

use serde_json::Value;

use crate::util::{data, Dir};

/// The vertex lines and the root line of a dump.
fn parse_dump(out: &str) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let root = lines.pop().expect("a root line");
    assert!(root.get("root").is_some(), "last line is the root: {root}");
    (lines, root)
}

fn named<'a>(vertices: &'a [Value], prefix: &str) -> &'a Value {
    vertices
        .iter()
        .find(|v| {
            v["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no vertex named {prefix:?}"))
}

const MULTI_STAGE: &str = "FROM alpine:3.20 AS build\nWORKDIR /src\nCOPY . .\nRUN make\n\
FROM scratch\nCOPY --from=build /src/out /app\n";

#[test]
fn multi_stage_dump_has_the_copy_from_edge() {
    let dir = Dir::new();
    dir.create("Dockerfile", MULTI_STAGE);
    let out = dir.bk().args(["debug", "dump-llb", "."]).stdout();
    let (vertices, root) = parse_dump(&out);
    let root_digest = root["root"]["digest"].as_str().expect("a root digest");
    let copy = named(&vertices, "[stage-1 1/1] COPY --from=build");
    assert_eq!(copy["digest"], root_digest);
    let make = named(&vertices, "[build 4/4] RUN make");
    let inputs: Vec<&str> = copy["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .filter_map(|i| i["digest"].as_str())
        .collect();
    assert_eq!(inputs, [make["digest"].as_str().expect("digest")]);
    let image = named(&vertices, "[build 1/4] FROM");
    assert_eq!(
        image["op"]["source"]["identifier"],
        "docker-image://docker.io/library/alpine:3.20"
    );
    let context = named(&vertices, "[internal] load build context");
    assert_eq!(context["op"]["source"]["identifier"], "local://context");
    // Every input is printed before the vertex that uses it.
    let position = |d: &str| vertices.iter().position(|v| v["digest"] == d);
    for (i, v) in vertices.iter().enumerate() {
        for input in v["inputs"].as_array().into_iter().flatten() {
            let at = position(input["digest"].as_str().unwrap_or_default());
            assert!(at.is_some_and(|at| at < i), "{v}");
        }
    }
}

#[test]
fn dot_output_is_a_digraph() {
    let dir = Dir::new();
    dir.create("Dockerfile", MULTI_STAGE);
    let out = dir.bk().args(["debug", "dump-llb", "--dot", "."]).stdout();
    assert!(out.starts_with("digraph llb {"), "{out}");
    assert!(out.trim_end().ends_with('}'), "{out}");
    assert!(out.contains(" -> "), "{out}");
    assert!(out.contains("[build 4/4] RUN make"), "{out}");
}

#[test]
fn flags_shape_the_graph() {
    let dir = Dir::new();
    dir.create(
        "df",
        "FROM alpine AS first\nARG V=1\nRUN echo $V\nFROM scratch AS other\nCOPY x /x\n",
    );
    let dump = |args: &[&str]| {
        let mut cmd = dir.bk();
        cmd.args(["debug", "dump-llb", "-f", "df"]).args(args);
        parse_dump(&cmd.args(["."]).stdout())
    };
    let (_, default_root) = dump(&[]);
    let (vertices, first) = dump(&["--target", "first"]);
    assert!(!vertices.iter().any(|v| v["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n.contains("COPY x"))));
    assert_ne!(first, default_root);
    let (_, changed) = dump(&["--target", "first", "--build-arg", "V=2"]);
    assert_ne!(changed, first);
    let (vertices, _) = dump(&["--target", "first", "--platform", "linux/arm64"]);
    let run = named(&vertices, "[first 2/2] RUN");
    assert_eq!(run["platform"]["architecture"], "arm64");
    let (vertices, _) = dump(&["--target", "first", "--no-cache"]);
    assert_eq!(
        named(&vertices, "[first 2/2] RUN")["metadata"]["ignore_cache"],
        true
    );
}

#[test]
fn lowering_errors_show_the_dockerfile_lines() {
    let dir = Dir::new();
    dir.create(
        "Dockerfile",
        "FROM alpine\nRUN --mount=type=cache,target=/ true\n",
    );
    let err = dir.bk().args(["debug", "dump-llb", "."]).fails();
    assert!(
        err.contains("   2 | >>> RUN --mount=type=cache,target=/ true"),
        "{err}"
    );
    assert!(
        err.contains(r#"ERROR: Dockerfile:2: invalid mount target "/""#),
        "{err}"
    );
}

#[test]
fn realworld_dockerfile_lowers_for_every_target() {
    let dockerfile = data("realworld/Dockerfile");
    let dir = Dir::new();
    for args in [
        &["--target", "release"][..],
        &["--target", "integration-tests"],
        &["--target", "binaries"],
        &["--platform", "linux/arm64"],
    ] {
        let out = dir
            .bk()
            .args(["debug", "dump-llb", "-f"])
            .arg_path(&dockerfile)
            .args(args)
            .args(["."])
            .stdout();
        let (vertices, root) = parse_dump(&out);
        assert!(root["root"]["digest"].is_string(), "{args:?}");
        assert!(vertices.len() > 10, "{args:?}: {}", vertices.len());
        if args == ["--platform", "linux/arm64"] {
            let release = vertices
                .iter()
                .filter(|v| v["op"].get("exec").is_some())
                .filter(|v| v["platform"]["architecture"] == "arm64")
                .count();
            assert!(release > 0, "RUNs of the release image run for arm64");
        }
    }
}
