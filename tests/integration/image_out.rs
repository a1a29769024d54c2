//! `--output type=oci` and `type=docker`, checked by tools that share no
//! code with bk: skopeo reads the archives (layer count, config), umoci
//! unpacks the OCI layout (whiteouts and all) into a root filesystem,
//! and GNU tar lists the archive. If skopeo or umoci is missing, the
//! tests that need them say so and stop (test.sh installs both).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{describe, Dir};

const DOCKERFILE: &str = "FROM scratch
ENV GREETING=hello
COPY a.txt /a.txt
WORKDIR /app
COPY b.txt c.txt /app/
LABEL org.example.k=v
CMD [\"/app/b.txt\"]
";

/// A context with a three-step Dockerfile: COPY, WORKDIR, COPY.
fn context() -> Dir {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", DOCKERFILE);
    dir.create("ctx/a.txt", "A\n");
    dir.create("ctx/b.txt", "B\n");
    dir.create("ctx/c.txt", "C\n");
    dir
}

fn build(dir: &Dir, output: &str, extra: &[&str]) {
    let mut args = vec!["build", "--progress=plain", "-o", output];
    args.extend_from_slice(extra);
    args.push("ctx");
    let out = dir.bk().args(&args).output();
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
}

/// Whether `tool` runs; if not, prints why the caller skips.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed (test.sh installs it)");
    }
    ok
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo inspect [--config] <transport>:<path>` as JSON.
fn skopeo(args: &[&str], image: &Path, transport: &str) -> Value {
    let target = format!("{transport}:{}", image.display());
    let text = run(Command::new("skopeo")
        .arg("inspect")
        .args(args)
        .arg(&target));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("skopeo output {e}: {text}"))
}

#[test]
fn an_oci_archive_reads_back_with_skopeo_and_unpacks_with_umoci() {
    if !(have("skopeo") && have("umoci")) {
        return;
    }
    let dir = context();
    build(&dir, "type=oci,dest=out.tar,name=example.com/app:v1", &[]);
    let tar = dir.path().join("out.tar");

    let info = skopeo(&[], &tar, "oci-archive");
    let layers = info["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 3, "one layer per COPY/WORKDIR: {info}");
    assert_eq!(info["Labels"]["org.example.k"], "v");
    let config = skopeo(&["--config"], &tar, "oci-archive");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/app/b.txt"]));
    assert_eq!(config["config"]["WorkingDir"], "/app");
    let env = config["config"]["Env"].as_array().unwrap();
    assert!(env.contains(&Value::from("GREETING=hello")), "{env:?}");
    let history = config["history"].as_array().unwrap();
    let non_empty = history
        .iter()
        .filter(|h| h["empty_layer"] != Value::Bool(true))
        .count();
    assert_eq!(non_empty, 3, "history matches layers: {history:?}");
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", tar.display())));
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // umoci wants an unpacked layout and finds the image by its tag.
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&layout));
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_default();
    assert_eq!(read("a.txt"), "A\n");
    assert_eq!(read("app/b.txt"), "B\n");
    assert_eq!(read("app/c.txt"), "C\n");
}

#[test]
fn a_docker_archive_takes_its_name_from_the_tag_flag() {
    if !have("skopeo") {
        return;
    }
    let dir = context();
    build(&dir, "type=docker,dest=out-docker.tar", &["-t", "me/app:2"]);
    let tar = dir.path().join("out-docker.tar");
    let info = skopeo(&[], &tar, "docker-archive");
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(3), "{info}");
    assert_eq!(info["Labels"]["org.example.k"], "v");
    let listing = run(Command::new("tar").arg("-tf").arg(&tar));
    for name in ["manifest.json", "index.json", "oci-layout"] {
        assert!(listing.lines().any(|l| l == name), "{name} in {listing}");
    }
    let manifest = run(Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg("manifest.json"));
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["me/app:2"]));
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("docker-archive:{}", tar.display())));
    let raw: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[test]
fn zstd_and_uncompressed_layers_are_readable() {
    if !have("skopeo") {
        return;
    }
    let dir = context();
    for (compression, media) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("uncompressed", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let out = format!("{compression}.tar");
        build(
            &dir,
            &format!("type=oci,dest={out},compression={compression},name=x"),
            &[],
        );
        let tar = dir.path().join(&out);
        let info = skopeo(&[], &tar, "oci-archive");
        assert_eq!(info["Layers"].as_array().map(Vec::len), Some(3), "{info}");
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", tar.display())));
        let raw: Value = serde_json::from_str(&raw).unwrap();
        for layer in raw["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], media, "{compression}");
        }
    }
}

#[test]
fn rebuilds_with_source_date_epoch_are_byte_identical() {
    let dir = context();
    let epoch = ["--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    // rewrite-timestamp: directories COPY writes into get the time of the
    // copy, which the epoch then bounds.
    build(
        &dir,
        "type=oci,dest=one.tar,name=r:1,rewrite-timestamp=true",
        &epoch,
    );
    // --no-cache: the layers are made from fresh snapshots, not reused.
    let mut again = epoch.to_vec();
    again.push("--no-cache");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build(
        &dir,
        "type=oci,dest=two.tar,name=r:1,rewrite-timestamp=true",
        &again,
    );
    build(
        &dir,
        "type=docker,dest=d1.tar,name=r:1,rewrite-timestamp=true",
        &epoch,
    );
    build(
        &dir,
        "type=docker,dest=d2.tar,name=r:1,rewrite-timestamp=true",
        &again,
    );
    let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
    assert!(read("one.tar") == read("two.tar"), "oci archives differ");
    assert!(read("d1.tar") == read("d2.tar"), "docker archives differ");
    assert!(read("one.tar") != read("d1.tar"));
    // The config (stored uncompressed in the archive) carries the epoch,
    // so equal bytes are not just two builds within one second.
    let stamp = b"\"created\":\"2023-11-14T22:13:20Z\"";
    let one = read("one.tar");
    assert!(one.windows(stamp.len()).any(|w| w == stamp));
}

#[test]
fn an_oci_archive_streams_to_standard_output() {
    let dir = context();
    let epoch = ["--build-arg", "SOURCE_DATE_EPOCH=0"];
    build(&dir, "type=oci,dest=file.tar", &epoch);
    let mut args = vec!["build", "-q", "-o", "type=oci,dest=-"];
    args.extend_from_slice(&epoch);
    args.push("ctx");
    let out = dir.bk().args(&args).output();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(out.stdout == std::fs::read(dir.path().join("file.tar")).unwrap());
}

#[test]
fn unsupported_image_attributes_fail_before_building() {
    let dir = context();
    let err = dir
        .bk()
        .args(["build", "-o", "type=oci,dest=x.tar,buildinfo=true", "ctx"])
        .fails();
    assert!(err.contains("not supported yet"), "{err}");
    assert!(!dir.path().join("x.tar").exists());
    let err = dir
        .bk()
        .args([
            "build",
            "-o",
            "type=docker,dest=x.tar,annotation-manifest-descriptor.k=v",
            "ctx",
        ])
        .fails();
    assert!(err.contains("oci-mediatypes=false"), "{err}");
}
