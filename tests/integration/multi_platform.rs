//! `bk build --platform linux/amd64,linux/arm64`: one build, one result
//! per platform. Outputs are read back by tools that share no code with
//! bk: the file system, GNU tar, skopeo (OCI archives and the real
//! registry of `registry_util`) and umoci (one platform's image,
//! unpacked). No RUN step here: the platforms' steps
//! are COPYs, so nothing needs an emulator.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::registry_util::{busybox_layer, registry, sha256, ImageSpec};
use crate::util::{describe, Dir};

const TWO: &str = "linux/amd64,linux/arm64";

/// `FROM scratch` with each platform's own file.
const PER_ARCH: &str = "FROM scratch\nARG TARGETARCH\nCOPY file-$TARGETARCH /\n";

fn context(dockerfile: &str) -> Dir {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", dockerfile);
    dir.create("ctx/file-amd64", "for amd64\n");
    dir.create("ctx/file-arm64", "for arm64\n");
    dir.create("ctx/tool.txt", "built once\n");
    dir
}

/// `bk build --progress=plain --platform a,b ARGS ctx`.
fn build(dir: &Dir, args: &[&str]) -> Output {
    let mut cmd = dir.bk();
    cmd.args(["build", "--progress=plain", "--platform", TWO])
        .args(args)
        .arg_path(Path::new("ctx"));
    cmd.output()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tool(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The platforms of an index's entries, as `os/arch`, in order.
fn index_platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests: {index}"))
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or_default(),
                m["platform"]["architecture"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn local_output_splits_per_platform_or_merges_when_asked() {
    let dir = context(PER_ARCH);
    ok(build(&dir, &["-o", "type=local,dest=out"]));
    let out = dir.path().join("out");
    assert_eq!(read(&out.join("linux_amd64/file-amd64")), "for amd64\n");
    assert_eq!(read(&out.join("linux_arm64/file-arm64")), "for arm64\n");
    assert!(!out.join("linux_amd64/file-arm64").exists());
    assert!(!out.join("linux_arm64/file-amd64").exists());
    let mut top: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["linux_amd64", "linux_arm64"]);

    ok(build(
        &dir,
        &["-o", "type=local,dest=merged,platform-split=false"],
    ));
    let merged = dir.path().join("merged");
    assert_eq!(read(&merged.join("file-amd64")), "for amd64\n");
    assert_eq!(read(&merged.join("file-arm64")), "for arm64\n");

    // Without the split, one path from two platforms is refused, as
    // BuildKit refuses it, and nothing is written.
    let clash = context("FROM scratch\nARG TARGETARCH\nCOPY file-$TARGETARCH /file\n");
    let err = String::from_utf8_lossy(
        &build(&clash, &["-o", "type=local,dest=out,platform-split=false"]).stderr,
    )
    .into_owned();
    assert!(
        err.contains(
            "cannot overwrite file from linux/amd64 with linux/arm64 when split option is disabled"
        ),
        "{err}"
    );
    assert!(!clash.path().join("out").exists());

    // One platform with platform-split=true still gets its directory, as
    // with BuildKit; without the attribute the output is unchanged.
    let one = |args: &[&str]| {
        let out = dir
            .bk()
            .args(["build", "--platform", "linux/arm64"])
            .args(args)
            .args(["ctx"])
            .output();
        assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    };
    one(&["-o", "type=local,dest=one,platform-split=true"]);
    assert_eq!(
        read(&dir.path().join("one/linux_arm64/file-arm64")),
        "for arm64\n"
    );
    one(&["-o", "plain"]);
    assert_eq!(read(&dir.path().join("plain/file-arm64")), "for arm64\n");
}

#[test]
fn tar_output_holds_a_directory_per_platform() {
    let dir = context(PER_ARCH);
    ok(build(&dir, &["-o", "type=tar,dest=out.tar"]));
    let listing = tool(
        Command::new("tar")
            .arg("-tf")
            .arg(dir.path().join("out.tar")),
    );
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        names,
        [
            "linux_amd64/",
            "linux_amd64/file-amd64",
            "linux_arm64/",
            "linux_arm64/file-arm64"
        ]
    );
    // As BuildKit's tar exporter: one platform is never split, and
    // platform-split=false does not merge several.
    let out = dir
        .bk()
        .args(["build", "--platform", "linux/arm64"])
        .args(["-o", "type=tar,dest=one.tar,platform-split=true", "ctx"])
        .output();
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    let listing = tool(
        Command::new("tar")
            .arg("-tf")
            .arg(dir.path().join("one.tar")),
    );
    assert_eq!(listing.lines().collect::<Vec<_>>(), ["file-arm64"]);
    ok(build(
        &dir,
        &["-o", "type=tar,dest=two.tar,platform-split=false"],
    ));
    let listing = tool(
        Command::new("tar")
            .arg("-tf")
            .arg(dir.path().join("two.tar")),
    );
    assert!(
        listing.lines().any(|l| l == "linux_arm64/file-arm64"),
        "{listing}"
    );
}

#[test]
fn oci_archive_is_an_index_of_one_image_per_platform() {
    let dir = context(PER_ARCH);
    ok(build(
        &dir,
        &[
            "-o",
            "type=oci,dest=img.tar,annotation-index.org.example.kind=multi,\
             annotation-manifest-descriptor.org.example.entry=yes,\
             annotation-index-descriptor.org.example.top=index",
            "--metadata-file",
            "meta.json",
            "--iidfile",
            "iid",
        ],
    ));
    let archive = format!("oci-archive:{}", dir.path().join("img.tar").display());
    let raw = tool(Command::new("skopeo").args(["inspect", "--raw", &archive]));
    let index = json(&raw);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
    // Annotations land where BuildKit puts them: on the index, on each
    // of its entries, and on index.json's entry for the index.
    assert_eq!(index["annotations"]["org.example.kind"], "multi", "{index}");
    for entry in index["manifests"].as_array().unwrap() {
        assert_eq!(entry["annotations"]["org.example.entry"], "yes", "{index}");
    }
    let layout = json(&tool(
        Command::new("tar")
            .arg("-xOf")
            .arg(dir.path().join("img.tar"))
            .arg("index.json"),
    ));
    assert_eq!(
        layout["manifests"][0]["annotations"]["org.example.top"], "index",
        "{layout}"
    );
    for arch in ["amd64", "arm64"] {
        let config = json(&tool(Command::new("skopeo").args([
            "inspect",
            "--override-arch",
            arch,
            "--config",
            &archive,
        ])));
        assert_eq!(config["architecture"], arch, "{config}");
        assert_eq!(config["os"], "linux", "{config}");
        // The platform's image on its own, unpacked by umoci (which
        // checks layers against the config's diff_ids).
        let layout = dir.path().join(format!("layout-{arch}"));
        tool(
            Command::new("skopeo")
                .args(["copy", "-q", "--override-arch", arch, &archive])
                .arg(format!("oci:{}:v1", layout.display())),
        );
        let bundle = dir.path().join(format!("bundle-{arch}"));
        tool(
            Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:v1", layout.display()))
                .arg(&bundle),
        );
        let files: Vec<String> = std::fs::read_dir(bundle.join("rootfs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, [format!("file-{arch}")]);
    }
    // The metadata and the image ID are the index's, as buildx writes
    // them for a multi-platform image.
    let meta = json(&read(&dir.path().join("meta.json")));
    let digest = sha256(raw.trim_end().as_bytes());
    assert_eq!(meta["containerimage.digest"], digest.as_str(), "{meta}");
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(meta.get("containerimage.config.digest").is_none(), "{meta}");
    assert_eq!(read(&dir.path().join("iid")), digest);

    // One platform makes no index to annotate.
    let out = dir
        .bk()
        .args(["build", "--platform", "linux/amd64"])
        .args(["-o", "type=oci,dest=one.tar,annotation-index.k=v", "ctx"])
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("index annotations not supported for single platform export"),
        "{}",
        describe(&out)
    );
}

#[test]
fn push_sends_an_index_and_from_picks_each_platforms_base() {
    let reg = registry();
    reg.push(
        "multi-base:latest",
        &["amd64", "arm64"]
            .iter()
            .map(|arch| ImageSpec {
                arch: arch.to_string(),
                layers: vec![busybox_layer(arch)],
                env: &[],
                workdir: "/",
            })
            .collect::<Vec<_>>(),
    );
    let base = format!("{}/multi-base", reg.host);

    // FROM an index: each platform gets its own base (its /arch file),
    // and COPY --from an image reads the target platform's too.
    let dir = context(&format!(
        "FROM {base}\nCOPY --from={base} /arch /copied-arch\nARG TARGETARCH\nCOPY file-$TARGETARCH /\n"
    ));
    ok(build(&dir, &["-o", "out"]));
    for arch in ["amd64", "arm64"] {
        let out = dir.path().join(format!("out/linux_{arch}"));
        assert_eq!(read(&out.join("arch")), arch);
        assert_eq!(read(&out.join("copied-arch")), arch);
        assert!(out.join("bin/busybox").is_file());
        assert!(out.join(format!("file-{arch}")).is_file());
    }

    let target = format!("{}/multi-out:v1", reg.host);
    let out = dir
        .bk()
        .args(["build", "-q", "--platform", TWO, "--push", "-t", &target])
        .args(["--metadata-file", "meta.json", "ctx"])
        .output();
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let docker_ref = format!("docker://{target}");
    let raw =
        tool(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &docker_ref]));
    let index = json(&raw);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
    let digest = sha256(raw.as_bytes());
    assert_eq!(printed, digest, "-q prints the index digest");
    let meta = json(&read(&dir.path().join("meta.json")));
    assert_eq!(meta["containerimage.digest"], digest.as_str(), "{meta}");
    assert_eq!(meta["image.name"], target.as_str());

    for arch in ["amd64", "arm64"] {
        let config = json(&tool(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            arch,
            "--config",
            &docker_ref,
        ])));
        assert_eq!(config["architecture"], arch, "{config}");
        // The pushed platform image holds that platform's files: copy it
        // out and list its top layer with GNU tar.
        let copy = dir.path().join(format!("copy-{arch}"));
        tool(
            Command::new("skopeo")
                .args([
                    "copy",
                    "--src-tls-verify=false",
                    "--override-arch",
                    arch,
                    &docker_ref,
                ])
                .arg(format!("dir:{}", copy.display())),
        );
        let manifest = json(&read(&copy.join("manifest.json")));
        let layers = manifest["layers"].as_array().unwrap();
        let top = layers.last().unwrap()["digest"].as_str().unwrap();
        let listing = tool(
            Command::new("tar")
                .arg("-tzf")
                .arg(copy.join(top.trim_start_matches("sha256:"))),
        );
        assert!(
            listing.lines().any(|l| l == format!("file-{arch}")),
            "{arch}: {listing}"
        );
        let base = layers.first().unwrap()["digest"].as_str().unwrap();
        let base_files = tool(
            Command::new("tar")
                .arg("-xzOf")
                .arg(copy.join(base.trim_start_matches("sha256:")))
                .arg("arch"),
        );
        assert_eq!(base_files, arch);
    }

    // Docker media types: a manifest list.
    let docker_target = format!("{}/multi-out:docker", reg.host);
    ok(build(
        &dir,
        &[
            "-o",
            &format!("type=registry,name={docker_target},oci-mediatypes=false"),
        ],
    ));
    let raw = tool(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{docker_target}"),
    ]));
    let list = json(&raw);
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(
        list["manifests"][0]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(index_platforms(&list), ["linux/amd64", "linux/arm64"]);
}

#[test]
fn a_build_platform_stage_runs_once_for_all_targets() {
    let reg = registry();
    reg.push(
        "multi-tool:latest",
        &[ImageSpec {
            arch: "amd64".into(),
            layers: vec![busybox_layer("amd64")],
            env: &[],
            workdir: "/",
        }],
    );
    let dir = context(&format!(
        "FROM --platform=$BUILDPLATFORM {}/multi-tool AS tool\n\
         COPY tool.txt /tool.txt\n\
         FROM scratch\n\
         ARG TARGETARCH\n\
         COPY --from=tool /tool.txt /\n\
         COPY file-$TARGETARCH /\n",
        reg.host
    ));
    let log = ok(build(&dir, &["-o", "out"]));
    // Plain progress names each vertex on a `#N [..] ..` line; the tool
    // stage's COPY is one vertex, named with the build platform.
    let mut ids: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("] COPY tool.txt /tool.txt"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{log}");
    assert!(
        log.contains("[linux/amd64 tool 2/2] COPY tool.txt /tool.txt"),
        "{log}"
    );
    assert!(
        log.contains("[linux/arm64 stage-1 2/2] COPY file-arm64 /"),
        "{log}"
    );
    for arch in ["amd64", "arm64"] {
        let out = dir.path().join(format!("out/linux_{arch}"));
        assert_eq!(read(&out.join("tool.txt")), "built once\n");
        assert!(out.join(format!("file-{arch}")).is_file());
    }
}

#[test]
fn single_image_outputs_are_refused_before_building() {
    let dir = context(PER_ARCH);
    for args in [&["--load"][..], &["-o", "type=docker,dest=x.tar"]] {
        let out = build(&dir, args);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("docker exporter does not currently support exporting manifest lists"),
            "{err}"
        );
        assert!(!err.contains("COPY"), "nothing was built: {err}");
    }
    assert!(!dir.path().join("x.tar").exists());
}

#[test]
fn the_local_image_store_keeps_the_index_for_from_and_push() {
    let reg = registry();
    let dir = context(PER_ARCH);
    let name = format!("{}/local-multi:v1", reg.host);
    let out = dir
        .bk()
        .args(["build", "-q", "--platform", TWO, "-t", &name, "ctx"])
        .output();
    assert!(
        out.status.success(),
        "bk failed:
{}",
        describe(&out)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let listing = dir.bk().args(["images", "--no-trunc"]).stdout();
    assert!(
        listing.contains(&id),
        "the index digest is the ID: {listing}"
    );

    // FROM the stored name picks each platform's image, with no
    // registry involved (the name was never pushed).
    let user = Dir::new();
    user.create(
        "ctx/Dockerfile",
        &format!(
            "FROM {name}
"
        ),
    );
    let out = user
        .bk()
        .env("BK_ROOT", dir.path().join(".bk-root"))
        .args(["build", "--platform", TWO, "-o", "out", "ctx"])
        .output();
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    for arch in ["amd64", "arm64"] {
        let out = user.path().join(format!("out/linux_{arch}"));
        assert!(out.join(format!("file-{arch}")).is_file(), "{arch}");
        let other = if arch == "amd64" { "arm64" } else { "amd64" };
        assert!(!out.join(format!("file-{other}")).exists(), "{arch}");
    }

    // `bk push` sends the whole index.
    let out = dir.bk().args(["push", "--insecure", &name]).output();
    assert!(out.status.success(), "bk push failed:\n{}", describe(&out));
    let raw = tool(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]));
    assert_eq!(sha256(raw.as_bytes()), id);
    assert_eq!(index_platforms(&json(&raw)), ["linux/amd64", "linux/arm64"]);
}

#[test]
fn the_cache_of_every_platform_is_exported_and_imported() {
    let dir = context(PER_ARCH);
    ok(build(&dir, &["--cache-to", "type=local,dest=cache"]));
    // A fresh store rebuilds both platforms from the exported cache.
    let out = dir
        .bk()
        .env("BK_ROOT", dir.path().join("fresh-root"))
        .args(["build", "--progress=plain", "--platform", TWO])
        .args(["--cache-from", "type=local,src=cache", "-o", "out", "ctx"])
        .output();
    let log = ok(out);
    for arch in ["amd64", "arm64"] {
        let step = format!("[linux/{arch} 1/1] COPY file-{arch} /");
        let id = log
            .lines()
            .find(|l| l.ends_with(&step))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {step}: {log}"));
        assert!(
            log.lines().any(|l| l == format!("{id} CACHED")),
            "{arch} not cached: {log}"
        );
        let file = dir.path().join(format!("out/linux_{arch}/file-{arch}"));
        assert_eq!(read(&file), format!("for {arch}\n"));
    }
}

#[test]
fn a_failing_platform_fails_the_build_naming_its_step() {
    let dir = context(PER_ARCH);
    std::fs::remove_file(dir.path().join("ctx/file-arm64")).unwrap();
    let out = build(&dir, &["-o", "out"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[linux/arm64 1/1] COPY file-arm64 /"), "{err}");
    assert!(err.contains("file-arm64"), "{err}");
    assert!(!dir.path().join("out").exists(), "nothing exported");
}
