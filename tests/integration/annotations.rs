//! Image annotations at every level, with platform selectors, from
//! `--output annotation…` attributes and `--annotation` flags, on a
//! two-platform image written as an OCI archive and pushed to the real
//! registry of `registry_util`. Everything is read back with skopeo and
//! tar, and each test compares whole annotation maps, so an annotation
//! that lands anywhere it was not asked for fails it.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::registry_util::registry;
use crate::util::{describe, Dir};

const TWO: &str = "linux/amd64,linux/arm64";

fn context() -> Dir {
    let dir = Dir::new();
    dir.create(
        "ctx/Dockerfile",
        "FROM scratch\nARG TARGETARCH\nCOPY file-$TARGETARCH /\n",
    );
    dir.create("ctx/file-amd64", "for amd64\n");
    dir.create("ctx/file-arm64", "for arm64\n");
    dir
}

/// `bk build --platform PLATFORMS ARGS ctx`.
fn build(dir: &Dir, platforms: &str, args: &[&str]) -> Output {
    let mut cmd = dir.bk();
    cmd.args(["build", "--progress=plain", "--platform", platforms])
        .args(args)
        .arg_path(Path::new("ctx"));
    cmd.output()
}

fn ok(out: Output) {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
}

fn fails(out: Output) -> String {
    assert!(!out.status.success(), "bk succeeded:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tool(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("run tool");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// An object's `annotations`, `{}` when it has none.
fn annotations(v: &Value) -> Value {
    v.get("annotations").cloned().unwrap_or_else(|| json!({}))
}

/// The index's entry for `arch`.
fn entry<'a>(index: &'a Value, arch: &str) -> &'a Value {
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests: {index}"))
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {arch} entry: {index}"))
}

/// A blob of an OCI archive, as JSON, read by tar.
fn archive_blob(archive: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    tool(
        Command::new("tar")
            .arg("-xOf")
            .arg(archive)
            .arg(format!("blobs/sha256/{hex}")),
    )
}

/// What every two-platform test asks for, from attributes and flags:
/// each level, shared and per platform (one selector written as
/// `linux/arm64/v8`, which is `linux/arm64`), a flag overriding an
/// attribute, and one flag naming two levels.
const ATTRS: &str = "annotation.org.ex.all=all,\
     annotation[linux/arm64/v8].org.ex.arm=arm-manifest,\
     annotation-manifest[linux/amd64].org.ex.all=amd-override,\
     annotation-manifest-descriptor[linux/amd64].org.ex.desc=amd-desc,\
     annotation-index.org.ex.idx=from-attr";
const FLAGS: &[&str] = &[
    "--annotation",
    "index-descriptor:org.ex.top=top",
    "--annotation",
    "manifest-descriptor,index:org.ex.both=both",
    "--annotation",
    "manifest[linux/arm64]:org.ex.flag=arm-flag",
    "--annotation",
    "index:org.ex.idx=from-flag",
];

/// Checks the index and the two manifests against what [`ATTRS`] and
/// [`FLAGS`] ask for; `manifest(digest)` reads a manifest.
fn check_image(index: &Value, manifest: impl Fn(&str) -> Value) {
    assert_eq!(
        annotations(index),
        json!({"org.ex.idx": "from-flag", "org.ex.both": "both"}),
        "{index}"
    );
    let amd = entry(index, "amd64");
    let arm = entry(index, "arm64");
    assert_eq!(
        annotations(amd),
        json!({"org.ex.desc": "amd-desc", "org.ex.both": "both"}),
        "{index}"
    );
    assert_eq!(annotations(arm), json!({"org.ex.both": "both"}), "{index}");
    let amd = manifest(amd["digest"].as_str().unwrap());
    assert_eq!(
        annotations(&amd),
        json!({"org.ex.all": "amd-override"}),
        "{amd}"
    );
    let arm = manifest(arm["digest"].as_str().unwrap());
    assert_eq!(
        annotations(&arm),
        json!({"org.ex.all": "all", "org.ex.arm": "arm-manifest", "org.ex.flag": "arm-flag"}),
        "{arm}"
    );
}

#[test]
fn oci_archive_carries_each_annotation_where_asked() {
    let dir = context();
    let spec = format!("type=oci,dest=img.tar,{ATTRS}");
    let mut args = vec!["-o", spec.as_str()];
    args.extend_from_slice(FLAGS);
    ok(build(&dir, TWO, &args));
    let tar = dir.path().join("img.tar");
    let archive = format!("oci-archive:{}", tar.display());
    let index = tool(Command::new("skopeo").args(["inspect", "--raw", &archive]));
    check_image(&index, |digest| archive_blob(&tar, digest));
    // index.json's one entry, for the index, has the index-descriptor
    // annotation only.
    let layout = tool(Command::new("tar").arg("-xOf").arg(&tar).arg("index.json"));
    let entries = layout["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{layout}");
    assert_eq!(
        annotations(&entries[0]),
        json!({"org.ex.top": "top"}),
        "{layout}"
    );
    // Each platform's image is whole for skopeo, its file in its layer.
    for arch in ["amd64", "arm64"] {
        let config = tool(Command::new("skopeo").args([
            "inspect",
            "--override-arch",
            arch,
            "--config",
            &archive,
        ]));
        assert_eq!(config["architecture"], arch, "{config}");
    }
}

#[test]
fn pushed_index_carries_each_annotation_where_asked() {
    let reg = registry();
    let dir = context();
    let target = format!("{}/annotated:v1", reg.host);
    let spec = format!("type=image,name={target},push=true,{ATTRS}");
    let mut args = vec!["-o", spec.as_str()];
    args.extend_from_slice(FLAGS);
    ok(build(&dir, TWO, &args));
    let inspect = |reference: &str| {
        tool(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]))
    };
    let index = inspect(&target);
    let repo = format!("{}/annotated", reg.host);
    check_image(&index, |digest| inspect(&format!("{repo}@{digest}")));
    // Each platform's image is whole in the registry.
    for arch in ["amd64", "arm64"] {
        let config = tool(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            arch,
            "--config",
            &format!("docker://{target}"),
        ]));
        assert_eq!(config["architecture"], arch, "{config}");
    }
}

#[test]
fn a_lone_image_takes_only_unselected_manifest_annotations() {
    // BuildKit applies platform-selected annotations to a
    // multi-platform image's manifests only: a one-platform build
    // makes one manifest and leaves them out.
    let dir = context();
    ok(build(
        &dir,
        "linux/arm64",
        &[
            "-o",
            "type=oci,dest=img.tar,annotation[linux/arm64].org.ex.sel=x,\
             annotation-manifest-descriptor.org.ex.desc=d",
            "--annotation",
            "org.ex.plain=p",
        ],
    ));
    let tar = dir.path().join("img.tar");
    let manifest = tool(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}", tar.display()),
    ]));
    assert_eq!(
        annotations(&manifest),
        json!({"org.ex.plain": "p"}),
        "{manifest}"
    );
    let layout = tool(Command::new("tar").arg("-xOf").arg(&tar).arg("index.json"));
    assert_eq!(
        annotations(&layout["manifests"][0]),
        json!({"org.ex.desc": "d"}),
        "{layout}"
    );
}

#[test]
fn docker_media_types_take_manifest_annotations() {
    // BuildKit writes manifest annotations into a Docker schema 2
    // manifest too; only the other levels need OCI media types.
    let dir = context();
    ok(build(
        &dir,
        "linux/amd64",
        &[
            "-o",
            "type=docker,dest=img.tar,name=annotated:v1",
            "--annotation",
            "org.ex.k=v",
        ],
    ));
    // skopeo's docker-archive transport makes up a manifest of its own;
    // the archive is also an OCI layout, whose manifest is the stored one.
    let manifest = tool(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}", dir.path().join("img.tar").display()),
    ]));
    assert_eq!(
        manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "{manifest}"
    );
    assert_eq!(
        annotations(&manifest),
        json!({"org.ex.k": "v"}),
        "{manifest}"
    );
}

#[test]
fn misplaced_annotations_are_refused_with_buildkits_words() {
    let dir = context();
    let refused = |platforms: &str, args: &[&str]| fails(build(&dir, platforms, args));
    let err = refused(
        TWO,
        &["-o", "type=oci,dest=x.tar,annotation[linux/s390x].k=v"],
    );
    assert!(
        err.contains("no platform linux/s390x found in source"),
        "{err}"
    );
    let err = refused(TWO, &["-o", "type=oci,dest=x.tar,annotation-layer.k=v"]);
    assert!(err.contains("unrecognized annotation type layer"), "{err}");
    let err = refused(
        TWO,
        &[
            "-o",
            "type=oci,dest=x.tar,oci-mediatypes=false",
            "--annotation",
            "manifest-descriptor:k=v",
        ],
    );
    assert!(err.contains("oci-mediatypes=false"), "{err}");
    let err = refused(
        "linux/amd64",
        &["-o", "type=oci,dest=x.tar", "--annotation", "index:k=v"],
    );
    assert!(
        err.contains("index annotations not supported for single platform export"),
        "{err}"
    );
    // A malformed flag is refused before anything is built.
    let err = refused(
        TWO,
        &[
            "-o",
            "type=oci,dest=x.tar",
            "--annotation",
            "manifest,layer:k=v",
        ],
    );
    assert!(err.contains("unrecognized annotation type layer"), "{err}");
    assert!(!err.contains("COPY"), "{err}");
    assert!(!dir.path().join("x.tar").exists());
}
