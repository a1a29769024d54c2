//! `FROM <image>` pulled from a real registry (see `registry_util`):
//! layers unpacked, the base config inherited, blobs reused, platform
//! picked from an index, and bad references and hostile layers refused.

use std::path::Path;

use crate::registry_util::{busybox_layer, layer_tar, registry, ImageSpec};
use crate::util::{describe, Dir};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn busybox(arch: &str) -> ImageSpec<'static> {
    ImageSpec {
        arch: arch.to_string(),
        layers: vec![busybox_layer(arch)],
        env: &[PATH, "GREETING=hi"],
        workdir: "/data",
    }
}

/// Pushes the busybox image once per run under `repo`.
fn push_busybox(repo: &str) -> String {
    let reg = registry();
    reg.push(&format!("{repo}:latest"), &[busybox("amd64")]);
    format!("{}/{repo}", reg.host)
}

fn build(dir: &Dir, dockerfile: &str, extra: &[&str]) -> std::process::Output {
    dir.create("Dockerfile", dockerfile);
    let mut cmd = dir.bk();
    cmd.args(["build", "--progress", "plain", "-o", "out"])
        .args(extra)
        .arg_path(Path::new("."));
    cmd.output()
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn from_registry_image_with_copy_and_base_config() {
    let image = push_busybox("busybox");
    let dir = Dir::new();
    dir.create("x", "hello\n");
    ok(build(
        &dir,
        &format!("FROM {image}\nCOPY x .\nCOPY x /from-$GREETING\n"),
        &[],
    ));
    let out = dir.path().join("out");
    let busybox = std::fs::metadata(out.join("bin/busybox")).expect("busybox unpacked");
    assert_eq!(
        busybox.len(),
        std::fs::metadata("/bin/busybox").unwrap().len()
    );
    assert_eq!(
        std::fs::read_link(out.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let passwd = std::fs::read_to_string(out.join("etc/passwd")).unwrap();
    assert!(passwd.contains("tester:x:1000"), "{passwd}");
    // WORKDIR and ENV come from the base image's config.
    assert_eq!(
        std::fs::read_to_string(out.join("data/x")).unwrap(),
        "hello\n"
    );
    assert!(out.join("from-hi").is_file());
}

fn blob_mtimes(root: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut all: Vec<_> = std::fs::read_dir(root.join("content/blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn rebuilds_reuse_downloaded_blobs() {
    let image = push_busybox("reuse");
    let dir = Dir::new();
    dir.create("x", "1");
    let dockerfile = format!("FROM {image}\nCOPY x /x\n");
    ok(build(&dir, &dockerfile, &[]));
    let root = dir.path().join(".bk-root");
    let before = blob_mtimes(&root);
    assert!(before.len() >= 3, "manifest, config and layer: {before:?}");
    // --no-cache re-resolves and re-unpacks nothing it has: blobs stay.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let log = ok(build(&dir, &dockerfile, &["--no-cache"]));
    assert_eq!(blob_mtimes(&root), before, "{log}");
    assert!(log.contains("0 of 1 layers"), "{log}");
    // A plain rebuild finds the FROM cached.
    let log = ok(build(&dir, &dockerfile, &[]));
    assert!(log.contains("CACHED"), "{log}");
}

#[test]
fn from_a_digest_reference() {
    let reg = registry();
    let digest = reg.push("bydigest:v1", &[busybox("amd64")]);
    let dir = Dir::new();
    dir.create("x", "d");
    ok(build(
        &dir,
        &format!("FROM {}/bydigest@{digest}\nCOPY x .\n", reg.host),
        &[],
    ));
    assert!(dir.path().join("out/bin/busybox").is_file());
    assert!(dir.path().join("out/data/x").is_file());
}

#[test]
fn platform_is_picked_from_an_index() {
    let reg = registry();
    reg.push("multi:latest", &[busybox("amd64"), busybox("arm64")]);
    let dir = Dir::new();
    let dockerfile = format!("FROM {}/multi\n", reg.host);
    ok(build(&dir, &dockerfile, &["--platform", "linux/arm64"]));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/arch")).unwrap(),
        "arm64"
    );
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    ok(build(&dir, &dockerfile, &["--platform", "linux/amd64"]));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/arch")).unwrap(),
        "amd64"
    );
    let out = build(&dir, &dockerfile, &["--platform", "linux/s390x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no image for platform linux/s390x"), "{err}");
}

#[test]
fn missing_image_names_the_reference_at_its_from_line() {
    let reg = registry();
    let dir = Dir::new();
    let out = build(&dir, &format!("FROM {}/nothing-here\n", reg.host), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "failed to pull {}/nothing-here:latest: not found",
            reg.host
        )),
        "{err}"
    );
    assert!(err.contains(">>> FROM"), "{err}");
}

#[test]
fn hostile_layer_is_refused() {
    let reg = registry();
    let mut spec = busybox("amd64");
    spec.layers.push(layer_tar(&[(
        "../escape",
        tar::EntryType::Regular,
        b"gotcha",
        0o644,
    )]));
    reg.push("hostile:latest", &[spec]);
    let dir = Dir::new();
    let out = build(&dir, &format!("FROM {}/hostile\n", reg.host), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"../escape\""), "{err}");
    assert!(err.contains("leaves the root"), "{err}");
    assert!(!dir.path().join(".bk-root/escape").exists());
}
