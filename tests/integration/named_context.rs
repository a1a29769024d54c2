//! `--build-context NAME=VALUE`: a local directory, an image, an OCI
//! layout and another stage, each used by FROM, `COPY --from` and
//! `RUN --mount=from=`, and each overriding a stage or an image of that
//! name; and `COPY --from` / `RUN --mount=from=` naming an image directly.

use std::path::Path;
use std::process::Output;

use crate::registry_util::{busybox_layer, registry, ImageSpec};
use crate::util::{describe, Dir};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A busybox image on the test registry whose config sets `GREETING`
/// and WORKDIR `/work`.
pub fn busybox() -> &'static str {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let reg = registry();
        reg.push(
            "named/busybox:latest",
            &[ImageSpec {
                arch: arch().to_string(),
                layers: vec![busybox_layer(arch())],
                env: &[PATH, "GREETING=from-the-context-image"],
                workdir: "/work",
            }],
        );
        format!("{}/named/busybox", reg.host)
    })
}

fn build(dir: &Dir, extra: &[&str]) -> Output {
    let mut cmd = dir.bk();
    cmd.args(["build", "--progress", "plain", "-o", "out"])
        .args(extra)
        .arg_path(Path::new("ctx"));
    cmd.output()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(dir: &Dir, rel: &str) -> String {
    let path = dir.path().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn a_local_directory_replaces_a_stage_and_serves_from_and_mounts() {
    let dir = Dir::new();
    dir.create("ctx/main.txt", "main");
    dir.create("other/a.txt", "A from other");
    dir.create("other/skip.log", "ignored");
    dir.create("other/.dockerignore", "*.log\n");
    // The stage `src` would fail if it were built: the context replaces
    // it, instructions and all.
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "FROM scratch AS src\nCOPY does-not-exist /\n\
             FROM {} AS run\n\
             RUN --mount=from=src,target=/m cat /m/a.txt > /mounted; ls /m > /listing\n\
             FROM scratch\n\
             COPY --from=src / /copied/\n\
             COPY --from=run /mounted /listing /\n\
             COPY main.txt /\n",
            busybox()
        ),
    );
    ok(build(&dir, &["--build-context", "src=other"]));
    assert_eq!(read(&dir, "out/copied/a.txt"), "A from other");
    assert!(!dir.path().join("out/copied/skip.log").exists());
    assert_eq!(read(&dir, "out/mounted"), "A from other");
    assert!(!read(&dir, "out/listing").contains("skip.log"));
    assert_eq!(read(&dir, "out/main.txt"), "main");

    // Without the context the stage is built, and fails.
    let out = build(&dir, &[]);
    assert!(!out.status.success(), "{}", describe(&out));
}

#[test]
fn an_image_context_replaces_an_image_name_with_its_config() {
    let dir = Dir::new();
    // `alpine` is never pulled: every use reads the context image.
    dir.create(
        "ctx/Dockerfile",
        "FROM alpine:latest\n\
         RUN echo \"$GREETING $(pwd)\" > /greeting\n\
         RUN --mount=from=docker.io/library/alpine,target=/m cat /m/bin/sh > /dev/null && echo mounted > /mounted\n\
         FROM scratch\n\
         COPY --from=0 /greeting /mounted /\n\
         COPY --from=alpine /bin/busybox /from-image\n",
    );
    let image = format!("alpine=docker-image://{}", busybox());
    ok(build(&dir, &["--build-context", &image]));
    assert_eq!(
        read(&dir, "out/greeting").trim(),
        "from-the-context-image /work"
    );
    assert_eq!(read(&dir, "out/mounted").trim(), "mounted");
    let binary = std::fs::read("/bin/busybox").unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("out/from-image")).unwrap(),
        binary
    );

    // A stage of that name is replaced by the image too.
    dir.create(
        "ctx/Dockerfile",
        "FROM scratch AS tools\nCOPY nothing /\nFROM tools\nRUN echo $GREETING > /g\n",
    );
    let image = format!("tools=docker-image://{}", busybox());
    ok(build(&dir, &["--build-context", &image]));
    assert_eq!(read(&dir, "out/g").trim(), "from-the-context-image");
}

#[test]
fn a_target_context_reads_another_stage() {
    let dir = Dir::new();
    dir.create("ctx/a", "A");
    dir.create("ctx/b", "B");
    dir.create(
        "ctx/Dockerfile",
        "FROM scratch AS real\nCOPY a /a\n\
         FROM base\nCOPY b /b\nCOPY --from=base /a /again\n",
    );
    ok(build(&dir, &["--build-context", "base=target:real"]));
    assert_eq!(read(&dir, "out/a"), "A");
    assert_eq!(read(&dir, "out/b"), "B");
    assert_eq!(read(&dir, "out/again"), "A");

    let out = build(&dir, &["--build-context", "base=target:nowhere"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stage \"nowhere\""), "{err}");
}

#[test]
fn bad_context_values_are_named() {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\n");
    for (value, want) in [
        ("x=missing-dir", "not a directory"),
        ("x::linux/nope=ctx", "not a platform"),
        ("x=https://example.com/r.git?nope=1", "unexpected query"),
    ] {
        let out = build(&dir, &["--build-context", value]);
        assert!(!out.status.success(), "{value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{value}: {err}");
    }
}

#[test]
fn an_oci_layout_serves_from_with_its_config() {
    let dir = Dir::new();
    // The layout: an image bk exports, unpacked by tar.
    dir.create("img/f", "in the layout");
    dir.create(
        "img/Dockerfile",
        &format!(
            "FROM {}\nENV LAYOUT=yes\nWORKDIR /lw\nCOPY f /f\n",
            busybox()
        ),
    );
    let out = dir
        .bk()
        .args([
            "build",
            "--progress",
            "plain",
            "-o",
            "type=oci,dest=img.tar",
            "img",
        ])
        .output();
    ok(out);
    std::fs::create_dir(dir.path().join("layout")).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-xf", "img.tar", "-C", "layout"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", describe(&tar));
    let index: serde_json::Value = serde_json::from_str(&read(&dir, "layout/index.json")).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    dir.create(
        "ctx/Dockerfile",
        "FROM img\nRUN echo \"$LAYOUT $(pwd)\" > /o && cat /f >> /o\n\
         FROM scratch\nCOPY --from=0 /o /\nCOPY --from=img /f /copied\n",
    );
    ok(build(&dir, &["--build-context", "img=oci-layout://layout"]));
    assert_eq!(read(&dir, "out/o"), "yes /lw\nin the layout");
    assert_eq!(read(&dir, "out/copied"), "in the layout");

    // By digest, and a digest the layout lacks.
    let pinned = format!("img=oci-layout://layout@{digest}");
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    ok(build(&dir, &["--build-context", &pinned]));
    assert_eq!(read(&dir, "out/copied"), "in the layout");
    let missing = format!("img=oci-layout://layout@sha256:{}", "0".repeat(64));
    let out = build(&dir, &["--build-context", &missing]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OCI layout"), "{err}");
}

/// A busybox image without `GREETING`, WORKDIR `/`.
fn plain_busybox() -> &'static str {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let reg = registry();
        reg.push(
            "named/plain:latest",
            &[ImageSpec {
                arch: arch().to_string(),
                layers: vec![busybox_layer(arch())],
                env: &[PATH],
                workdir: "/",
            }],
        );
        format!("{}/named/plain", reg.host)
    })
}

#[test]
fn copy_from_and_mount_from_an_image_take_files_not_config() {
    let dir = Dir::new();
    // The image named by --from / from= has GREETING and WORKDIR /work;
    // neither reaches the stage.
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "FROM {plain}\n\
             COPY --from={image} /bin/busybox /copied\n\
             RUN --mount=from={image},target=/m cmp /m/bin/busybox /copied && \
                 echo \"[$GREETING] $(pwd)\" > /o\n\
             FROM scratch\nCOPY --from=0 /o /copied /\n",
            plain = plain_busybox(),
            image = busybox()
        ),
    );
    ok(build(&dir, &[]));
    assert_eq!(read(&dir, "out/o"), "[] /\n");
    let binary = std::fs::read("/bin/busybox").unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("out/copied")).unwrap(),
        binary
    );
}

/// A stage can start `FROM` a local directory context and build on it:
/// COPY and RUN run on a snapshot of the directory (a root file system
/// made of busybox here), and the directory itself is left as it was.
#[test]
fn steps_build_on_a_directory_context() {
    let dir = Dir::new();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("copy /bin/busybox (busybox-static)");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    dir.create("rootfs/etc/motd", "from the directory");
    dir.create("ctx/extra.txt", "from the main context");
    dir.create(
        "ctx/Dockerfile",
        "FROM base\n\
         ENV PATH=/bin\n\
         COPY extra.txt /extra.txt\n\
         RUN busybox cat /etc/motd /extra.txt > /made && busybox rm /etc/motd\n",
    );
    ok(build(&dir, &["--build-context", "base=rootfs"]));
    assert_eq!(
        read(&dir, "out/made"),
        "from the directoryfrom the main context"
    );
    assert_eq!(read(&dir, "out/extra.txt"), "from the main context");
    assert!(!dir.path().join("out/etc/motd").exists());
    // The RUN's removal happened in the snapshot, not in the directory.
    assert_eq!(read(&dir, "rootfs/etc/motd"), "from the directory");
}
