//! `--cache-to` / `--cache-from` between two stores: a build exports its
//! cache (to an OCI layout directory, a real registry, or inline in a
//! pushed image), and the same build in a fresh store imports it. Proof
//! that nothing ran is in the rawjson events (every step `cached`) and
//! the outputs being identical; the exported layout is read with skopeo.

use std::path::Path;
use std::process::Output;

use crate::build::Events;
use crate::registry_util::registry;
use crate::util::{describe, Dir};

/// `bk build --progress=rawjson -o OUT ARGS ctx` with the store `store`.
fn build(dir: &Dir, store: &str, out: &str, args: &[&str]) -> Output {
    let mut cmd = dir.bk();
    cmd.env("BK_ROOT", dir.path().join(store))
        .args(["build", "--progress=rawjson", "-o", out])
        .args(args)
        .args(["ctx"]);
    cmd.output()
}

fn ok(out: Output) -> (Events, String) {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    (
        Events::parse(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

const TWO_STAGES: &str = "FROM scratch AS a
COPY a.txt /a
FROM scratch
COPY b.txt /b
COPY --from=a /a /a2
COPY c.txt /c
";

fn two_stages() -> Dir {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", TWO_STAGES);
    dir.create("ctx/a.txt", "A\n");
    dir.create("ctx/b.txt", "B\n");
    dir.create("ctx/c.txt", "C\n");
    dir
}

#[test]
fn local_cache_round_trip_runs_nothing() {
    let dir = two_stages();
    let cache = dir.path().join("cache");
    let to = format!("type=local,dest={},mode=max", cache.display());
    let (first, _) = ok(build(&dir, "s1", "out1", &["--cache-to", &to]));
    assert_eq!(first.end_of("COPY c.txt"), "completed");
    // An independent reader: the layout's manifest has BuildKit's cache
    // config media type.
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:latest", cache.display()))
        .output()
        .expect("run skopeo");
    assert!(raw.status.success(), "skopeo:\n{}", describe(&raw));
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.buildkit.cacheconfig.v0"
    );
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(4));

    let from = format!("type=local,src={}", cache.display());
    let (second, _) = ok(build(&dir, "s2", "out2", &["--cache-from", &from]));
    for step in ["COPY a.txt", "COPY b.txt", "COPY --from=a", "COPY c.txt"] {
        assert_eq!(second.end_of(step), "cached", "{step}");
    }
    for file in ["a2", "b", "c"] {
        assert_eq!(
            read(&dir.path().join("out1").join(file)),
            read(&dir.path().join("out2").join(file))
        );
    }
    // Recorded locally: a third build in store 2 without --cache-from
    // is all hits too.
    let (third, _) = ok(build(&dir, "s2", "out3", &[]));
    assert_eq!(third.end_of("COPY c.txt"), "cached");
}

#[test]
fn mode_min_exports_only_the_final_chain() {
    let dir = two_stages();
    let min = dir.path().join("min");
    let max = dir.path().join("max");
    ok(build(
        &dir,
        "s1",
        "out1",
        &[
            "--cache-to",
            &format!("type=local,dest={}", min.display()),
            "--cache-to",
            &format!("type=local,dest={},mode=max", max.display()),
        ],
    ));
    let (with_min, _) = ok(build(
        &dir,
        "s2",
        "out2",
        &["--cache-from", &format!("type=local,src={}", min.display())],
    ));
    // Stage a's step is not in the final image's chain.
    assert_eq!(with_min.end_of("COPY a.txt"), "completed");
    assert_eq!(with_min.end_of("COPY b.txt"), "cached");
    assert_eq!(with_min.end_of("COPY c.txt"), "cached");
    let (with_max, _) = ok(build(
        &dir,
        "s3",
        "out3",
        &["--cache-from", &format!("type=local,src={}", max.display())],
    ));
    assert_eq!(with_max.end_of("COPY a.txt"), "cached");
    assert_eq!(with_max.end_of("COPY c.txt"), "cached");
}

#[test]
fn changed_file_reruns_only_dependent_steps() {
    let dir = two_stages();
    let cache = dir.path().join("cache");
    ok(build(
        &dir,
        "s1",
        "out1",
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache.display()),
        ],
    ));
    dir.create("ctx/c.txt", "changed\n");
    let (events, _) = ok(build(
        &dir,
        "s2",
        "out2",
        &[
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
        ],
    ));
    assert_eq!(events.end_of("COPY b.txt"), "cached");
    assert_eq!(events.end_of("COPY --from=a"), "cached");
    assert_eq!(events.end_of("COPY c.txt"), "completed");
    assert_eq!(read(&dir.path().join("out2/c")), "changed\n");
    assert_eq!(read(&dir.path().join("out2/b")), "B\n");
}

#[test]
fn registry_cache_round_trip() {
    let reg = registry();
    let dir = two_stages();
    let target = format!("{}/remote-cache:v1", reg.host);
    let (_, log) = ok(build(
        &dir,
        "s1",
        "out1",
        &[
            "--cache-to",
            &format!("type=registry,ref={target},mode=max,compression=zstd"),
        ],
    ));
    assert!(log.contains("exported cache to"), "{log}");
    let (events, _) = ok(build(
        &dir,
        "s2",
        "out2",
        &["--cache-from", &format!("type=registry,ref={target}")],
    ));
    for step in ["COPY a.txt", "COPY b.txt", "COPY --from=a", "COPY c.txt"] {
        assert_eq!(events.end_of(step), "cached", "{step}");
    }
    assert_eq!(read(&dir.path().join("out2/a2")), "A\n");
    assert_eq!(read(&dir.path().join("out2/c")), "C\n");

    // Only hits are downloaded: with c.txt changed, the old COPY c.txt
    // layer (one of the cache's four) never reaches store 3.
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{target}"))
        .output()
        .expect("run skopeo");
    assert!(raw.status.success(), "skopeo:\n{}", describe(&raw));
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 4, "{manifest}");
    dir.create("ctx/c.txt", "changed\n");
    let (events, _) = ok(build(
        &dir,
        "s3",
        "out3",
        &["--cache-from", &format!("type=registry,ref={target}")],
    ));
    assert_eq!(events.end_of("COPY --from=a"), "cached");
    assert_eq!(events.end_of("COPY c.txt"), "completed");
    let blobs = dir.path().join("s3/content/blobs/sha256");
    let fetched = layers
        .iter()
        .filter(|d| blobs.join(d.trim_start_matches("sha256:")).exists())
        .count();
    assert_eq!(fetched, 3, "layers {layers:?} in {}", blobs.display());
}

#[test]
fn inline_cache_in_a_pushed_image() {
    let reg = registry();
    let dir = two_stages();
    let image = format!("{}/inline-cache:v1", reg.host);
    let out = dir
        .bk()
        .env("BK_ROOT", dir.path().join("s1"))
        .args(["build", "--progress=plain", "--push", "-t", &image])
        .args(["--cache-to", "type=inline", "ctx"])
        .output();
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    // The pushed config carries the cache, as BuildKit's inline cache.
    let config = std::process::Command::new("skopeo")
        .args(["inspect", "--config", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .expect("run skopeo");
    assert!(config.status.success(), "skopeo:\n{}", describe(&config));
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert!(
        config["moby.buildkit.cache.v0"].is_string(),
        "no inline cache in {config}"
    );
    let (events, _) = ok(build(
        &dir,
        "s2",
        "out2",
        &["--cache-from", &format!("type=registry,ref={image}")],
    ));
    // mode=min: the final stage's steps.
    assert_eq!(events.end_of("COPY b.txt"), "cached");
    assert_eq!(events.end_of("COPY c.txt"), "cached");
    assert_eq!(read(&dir.path().join("out2/c")), "C\n");
}

#[test]
fn unreachable_cache_sources_warn() {
    let dir = two_stages();
    // Nothing listens on port 1.
    let (events, log) = ok(build(
        &dir,
        "s1",
        "out1",
        &[
            "--cache-from",
            "type=registry,ref=127.0.0.1:1/nothing:v1",
            "--cache-from",
            &format!("type=local,src={}", dir.path().join("missing").display()),
            "--cache-to",
            "type=registry,ref=127.0.0.1:1/nothing:v1,ignore-error=true",
        ],
    ));
    assert_eq!(events.end_of("COPY c.txt"), "completed");
    assert!(
        log.contains("WARNING: failed to import cache from 127.0.0.1:1"),
        "{log}"
    );
    assert!(log.contains("missing"), "{log}");
    assert!(log.contains("ignore-error=true"), "{log}");
    assert_eq!(read(&dir.path().join("out1/c")), "C\n");
    // Without ignore-error a failed export fails the build.
    let out = build(
        &dir,
        "s1",
        "out2",
        &["--cache-to", "type=registry,ref=127.0.0.1:1/nothing:v1"],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failed to export cache"),
        "{}",
        describe(&out)
    );
}

/// A RUN whose output is a nanosecond timestamp: identical after an
/// import only if it did not run again. Base image: busybox with `date`.
#[test]
fn run_result_is_imported_not_rerun() {
    use crate::registry_util::{busybox_layer, layer_tar, ImageSpec};
    let reg = registry();
    let date: &[(&str, tar::EntryType, &[u8], u32)] = &[
        ("bin/date", tar::EntryType::Symlink, b"busybox", 0o777),
        ("bin/cat", tar::EntryType::Symlink, b"busybox", 0o777),
    ];
    reg.push(
        "cachebox:latest",
        &[ImageSpec {
            arch: "amd64".into(),
            layers: vec![busybox_layer("amd64"), layer_tar(date)],
            env: &["PATH=/usr/bin:/bin"],
            workdir: "/",
        }],
    );
    let dir = Dir::new();
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "FROM {}/cachebox\nRUN date +%s%N > /stamp\nCOPY a.txt /a\nRUN cat /stamp /a > /both\n",
            reg.host
        ),
    );
    dir.create("ctx/a.txt", "A\n");
    let cache = dir.path().join("cache");
    ok(build(
        &dir,
        "s1",
        "out1",
        &[
            "--cache-to",
            &format!("type=local,dest={}", cache.display()),
        ],
    ));
    let (events, _) = ok(build(
        &dir,
        "s2",
        "out2",
        &[
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
        ],
    ));
    assert_eq!(events.end_of("RUN date"), "cached");
    assert_eq!(events.end_of("RUN cat"), "cached");
    let stamp = read(&dir.path().join("out1/stamp"));
    assert!(stamp.trim().len() > 10, "{stamp:?}");
    assert_eq!(stamp, read(&dir.path().join("out2/stamp")));
    assert_eq!(
        read(&dir.path().join("out1/both")),
        read(&dir.path().join("out2/both"))
    );
}
