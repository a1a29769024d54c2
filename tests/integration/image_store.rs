//! The local image store (`-t`, `--load`, `type=image`, `bk images`,
//! `bk tag`, `bk rmi`, `FROM` a stored image) and the fidelity of the
//! images bk makes: a base image's layers kept as they are, checked with
//! tools that share no code with bk — podman loads the docker archive,
//! umoci unpacks the OCI archive, skopeo reads configs — and
//! `SOURCE_DATE_EPOCH` + `rewrite-timestamp` giving the same image from
//! two stores.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::registry_util::{busybox_layer, registry, sha256, ImageSpec};
use crate::util::{describe, Dir};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `bk` with `args` in `dir`, asserting success; returns stdout.
fn bk(dir: &Dir, args: &[&str]) -> String {
    dir.bk().args(args).stdout()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `skopeo inspect [args] <target>` as JSON.
fn skopeo(args: &[&str], target: &str) -> Value {
    json(&run(Command::new("skopeo")
        .arg("inspect")
        .args(args)
        .arg(target)))
}

/// Pushes the busybox base (one layer) as `repo:latest`; returns its
/// name and the layer's diff_id.
fn push_base(repo: &str) -> (String, String) {
    let reg = registry();
    let layer = busybox_layer("amd64");
    reg.push(
        &format!("{repo}:latest"),
        &[ImageSpec {
            arch: "amd64".into(),
            layers: vec![layer.clone()],
            env: &[PATH, "GREETING=hi"],
            workdir: "/opt",
        }],
    );
    (format!("{}/{repo}", reg.host), sha256(&layer))
}

#[test]
fn tagged_builds_are_listed_retagged_and_removed() {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n");
    dir.create("ctx/a.txt", "A\n");
    // -q prints the image ID, as `docker build -q`.
    let id = bk(&dir, &["build", "-q", "-t", "app", "ctx"]);
    let id = id.trim();
    assert!(
        id.len() == 71 && id.starts_with("sha256:"),
        "image ID: {id:?}"
    );
    let listed = bk(&dir, &["images"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    let header: Vec<&str> = lines[0].split("   ").map(str::trim).collect();
    assert!(
        lines[0].starts_with("REPOSITORY")
            && ["TAG", "IMAGE ID", "CREATED", "SIZE"]
                .iter()
                .all(|c| header.contains(c)),
        "{listed}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..3], ["app", "latest", &id[7..19]], "{listed}");
    assert_eq!(bk(&dir, &["images", "-q", "--no-trunc"]).trim(), id);

    // Another name, by name and by ID prefix; --digests shows the
    // manifest digest, which the config ID is not.
    bk(&dir, &["tag", "app", "me/app:1"]);
    bk(&dir, &["tag", &id[7..15], "localhost:5000/app:2"]);
    let listed = bk(&dir, &["images", "--digests"]);
    for name in ["app ", "me/app ", "localhost:5000/app "] {
        assert!(listed.contains(name), "{name} in {listed}");
    }
    let manifest = listed.lines().nth(1).unwrap().split_whitespace().nth(2);
    assert!(
        manifest.is_some_and(|d| d.starts_with("sha256:") && d != id),
        "{listed}"
    );
    assert_eq!(bk(&dir, &["images", "-q"]).lines().count(), 3);
    let only = bk(&dir, &["images", "me/app"]);
    assert_eq!(only.lines().count(), 2, "{only}");
    assert!(only.contains("me/app "), "{only}");
    // An ID names several images: refused without -f.
    let err = dir.bk().args(["rmi", &id[7..19]]).fails();
    assert!(err.contains("has 3 names"), "{err}");

    // rmi untags what it knows, fails for the rest, keeps blobs.
    let out = dir.bk().args(["rmi", "app", "nope"]).output();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("Untagged: app:latest"), "{stdout}");
    assert!(stderr.contains("No such image: nope"), "{stderr}");
    let out = dir
        .bk()
        .args(["rmi", "me/app:1", "localhost:5000/app:2"])
        .output();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("blobs stay in the content store"),
        "{}",
        describe(&out)
    );
    assert_eq!(bk(&dir, &["images", "-q"]), "");
    let blob = dir
        .path()
        .join(".bk-root/content/blobs/sha256")
        .join(&id[7..]);
    assert!(blob.is_file(), "the config blob stays");
    let err = dir.bk().args(["tag", "app", "other"]).fails();
    assert!(err.contains("No such image: app"), "{err}");
}

#[test]
fn load_and_image_outputs_store_the_image() {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n");
    dir.create("ctx/a.txt", "A\n");
    // A fixed epoch: the config's creation time would otherwise be each
    // build's own second.
    let build = |args: &[&str]| {
        dir.bk()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(args)
            .stdout()
    };
    let loaded = build(&["build", "-q", "--load", "-t", "l", "ctx"]);
    let stored = build(&["build", "-q", "-o", "type=image,name=i:2,push=false", "ctx"]);
    // The same config either way; --load uses Docker media types (the
    // docker exporter's default), type=image OCI's.
    assert_eq!(loaded, stored);
    let digests = bk(&dir, &["images", "--digests"]);
    let manifest = |repo: &str| -> String {
        let row = digests
            .lines()
            .find(|l| l.starts_with(&format!("{repo} ")))
            .unwrap_or_else(|| panic!("{repo} in {digests}"));
        let digest = row.split_whitespace().nth(2).unwrap();
        let path = dir
            .path()
            .join(".bk-root/content/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        json(&std::fs::read_to_string(path).unwrap())["mediaType"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        manifest("l"),
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(manifest("i"), "application/vnd.oci.image.manifest.v1+json");
    // An output that is not an image prints no ID.
    assert_eq!(bk(&dir, &["build", "-q", "-o", "out", "ctx"]), "");
    // --iidfile gets the same ID.
    dir.bk()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--iidfile", "id.txt", "-t", "x", "ctx"])
        .stdout();
    let written = std::fs::read_to_string(dir.path().join("id.txt")).unwrap();
    assert_eq!(written, loaded.trim());
}

#[test]
fn from_a_local_image_needs_no_registry() {
    let dir = Dir::new();
    dir.create(
        "base/Dockerfile",
        "FROM scratch\nENV FOO=bar\nWORKDIR /srv\nCOPY a.txt ./\nUSER 1000\n\
         ONBUILD COPY trigger.txt /trigger.txt\n",
    );
    dir.create("base/a.txt", "from a\n");
    bk(&dir, &["build", "-t", "local/base:1", "base"]);
    // `local/base` is a Docker Hub name: no registry is reachable here, so
    // only the local store can serve it.
    dir.create(
        "app/Dockerfile",
        "FROM local/base:1\nCOPY --from=local/base:1 /srv/a.txt /copied.txt\nCOPY b.txt ./\n",
    );
    dir.create("app/b.txt", "b\n");
    dir.create("app/trigger.txt", "t\n");
    let out = dir
        .bk()
        .args([
            "build",
            "--progress=plain",
            "-o",
            "type=oci,dest=app.tar,name=app",
            "app",
        ])
        .output();
    assert!(out.status.success(), "{}", describe(&out));
    // The base's layers are the snapshots its build made: nothing to
    // unpack.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("in the local store"), "{log}");
    assert!(log.contains(": 0 of 2 layers"), "{log}");
    bk(&dir, &["build", "-o", "type=oci,dest=base.tar", "base"]);
    let app = format!("oci-archive:{}", dir.path().join("app.tar").display());
    let base = format!("oci-archive:{}", dir.path().join("base.tar").display());
    let app_info = skopeo(&[], &app);
    let base_info = skopeo(&[], &base);
    let app_layers = app_info["Layers"].as_array().unwrap();
    let base_layers = base_info["Layers"].as_array().unwrap();
    assert_eq!(base_layers.len(), 2, "WORKDIR and COPY: {base_info}");
    // The base's layers as they are, then ONBUILD's COPY and two COPYs.
    assert_eq!(app_layers.len(), 5, "{app_info}");
    assert_eq!(app_layers[..2], base_layers[..], "base layers reused");
    let config = skopeo(&["--config"], &app);
    assert_eq!(config["config"]["User"], "1000");
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    let env = config["config"]["Env"].as_array().unwrap();
    assert!(env.contains(&Value::from("FOO=bar")), "{env:?}");
    assert!(config["config"].get("OnBuild").is_none(), "{config}");
    let out = dir.path().join("out");
    bk(&dir, &["build", "-o", "out", "app"]);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap_or_default();
    assert_eq!(read("srv/a.txt"), "from a\n");
    assert_eq!(read("srv/b.txt"), "b\n");
    assert_eq!(read("copied.txt"), "from a\n");
    assert_eq!(read("trigger.txt"), "t\n");
    // --pull skips the local store: the registry (unreachable) is asked.
    let err = dir
        .bk()
        .args(["build", "--pull", "-o", "out2", "app"])
        .fails();
    assert!(err.contains("failed to pull"), "{err}");
}

#[test]
fn concurrent_bk_processes_all_tag() {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n");
    dir.create("ctx/a.txt", "A\n");
    bk(&dir, &["build", "-t", "app", "ctx"]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut cmd = dir.bk();
            cmd.args(["tag", "app", &format!("copy{i}")]);
            std::thread::spawn(move || cmd.output())
        })
        .collect();
    for child in children {
        let out = child.join().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    }
    assert_eq!(bk(&dir, &["images", "-q"]).lines().count(), 9);
}

/// A context on a registry base that sets most config fields and file
/// owners and modes.
fn rich_context(dir: &Dir, base: &str) {
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "FROM {base}\n\
             COPY --chown=1000:1000 --chmod=0640 app.conf /etc/app/app.conf\n\
             COPY run.sh /usr/local/bin/run.sh\n\
             USER tester\n\
             WORKDIR /srv/app\n\
             EXPOSE 8080\n\
             LABEL org.example.k=v\n\
             ENTRYPOINT [\"/bin/sh\"]\n"
        ),
    );
    dir.create("ctx/app.conf", "key=value\n");
    let script = dir.create("ctx/run.sh", "#!/bin/sh\necho run\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn an_oci_archive_on_a_registry_base_unpacks_with_umoci() {
    let (base, base_diff_id) = push_base("fidelity-oci");
    let dir = Dir::new();
    rich_context(&dir, &base);
    bk(
        &dir,
        &["build", "-o", "type=oci,dest=img.tar,name=rich:1", "ctx"],
    );
    let tar = dir.path().join("img.tar");
    let target = format!("oci-archive:{}", tar.display());

    // The base's blob, byte for byte, then one layer per COPY/WORKDIR.
    let pushed = skopeo(&["--tls-verify=false"], &format!("docker://{base}"));
    let info = skopeo(&[], &target);
    let layers = info["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4, "{info}");
    assert_eq!(layers[0], pushed["Layers"][0], "base layer reused");
    let config = skopeo(&["--config"], &target);
    assert_eq!(config["rootfs"]["diff_ids"][0], base_diff_id.as_str());
    let c = &config["config"];
    assert_eq!(c["User"], "tester");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh"]));
    assert_eq!(c["Labels"]["org.example.k"], "v");
    let env = c["Env"].as_array().unwrap();
    assert!(env.contains(&Value::from("GREETING=hi")), "{env:?}");

    // umoci (as root, so owners are kept) applies every layer.
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&layout));
    let bundle = dir.path().join("bundle");
    let mut umoci = Command::new("umoci");
    umoci.arg("unpack");
    if !nix::unistd::geteuid().is_root() {
        umoci.arg("--rootless");
    }
    run(umoci
        .arg("--image")
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/app/app.conf")).unwrap(),
        "key=value\n"
    );
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(rootfs.join("srv/app").is_dir());
    if nix::unistd::geteuid().is_root() {
        assert_eq!(
            mode_and_owner(&rootfs.join("etc/app/app.conf")),
            (0o640, 1000, 1000)
        );
        assert_eq!(
            mode_and_owner(&rootfs.join("usr/local/bin/run.sh")),
            (0o755, 0, 0)
        );
        assert_eq!(mode_and_owner(&rootfs.join("bin/busybox")), (0o755, 0, 0));
    }
}

/// A podman that stores everything under `dir` (vfs, no daemon).
fn podman(dir: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"]);
    cmd
}

#[test]
fn a_docker_archive_on_a_registry_base_loads_into_podman() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: podman with a private --root needs root here");
        return;
    }
    let (base, base_diff_id) = push_base("fidelity-docker");
    let dir = Dir::new();
    rich_context(&dir, &base);
    bk(
        &dir,
        &[
            "build",
            "-t",
            "rich:2",
            "-o",
            "type=docker,dest=img.tar",
            "ctx",
        ],
    );
    let pod = dir.path().join("podman");
    let loaded = run(podman(&pod)
        .args(["load", "-i"])
        .arg(dir.path().join("img.tar")));
    assert!(loaded.contains("rich:2"), "{loaded}");
    let inspect = json(&run(podman(&pod).args(["image", "inspect", "rich:2"])));
    let image = &inspect[0];
    let layers = image["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4, "{image}");
    assert_eq!(layers[0], base_diff_id.as_str(), "base layer kept");
    assert_eq!(image["Config"]["User"], "tester");
    assert_eq!(image["Config"]["WorkingDir"], "/srv/app");
    let mount = run(podman(&pod).args(["image", "mount", "rich:2"]));
    let rootfs = Path::new(mount.trim());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/app/app.conf")).unwrap(),
        "key=value\n"
    );
    assert_eq!(
        mode_and_owner(&rootfs.join("etc/app/app.conf")),
        (0o640, 1000, 1000)
    );
    assert_eq!(mode_and_owner(&rootfs.join("bin/busybox")), (0o755, 0, 0));
    run(podman(&pod).args(["image", "unmount", "rich:2"]));
}

#[test]
fn source_date_epoch_and_rewrite_timestamp_give_the_same_image_from_two_stores() {
    let (base, _) = push_base("repro");
    let epoch = 1_700_000_000;
    // Two contexts (and stores) whose files have different mtimes, all
    // later than the epoch.
    let make = |mtime: i64| {
        let dir = Dir::new();
        dir.create(
            "ctx/Dockerfile",
            &format!("FROM {base}\nWORKDIR /app\nCOPY . /app/\n"),
        );
        for name in ["ctx/a.txt", "ctx/sub/b.txt"] {
            let path = dir.create(name, name);
            let t = filetime::FileTime::from_unix_time(mtime, 0);
            filetime::set_file_times(&path, t, t).unwrap();
        }
        dir
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (one, two) = (make(now - 1000), make(now - 10));
    let output = "type=oci,dest=img.tar,name=repro:1,rewrite-timestamp=true";
    let id_one = one
        .bk()
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args(["build", "-q", "-o", output, "ctx"])
        .stdout();
    let id_two = two
        .bk()
        .args(["build", "-q", "-o", output, "ctx"])
        .args(["--build-arg", &format!("SOURCE_DATE_EPOCH={epoch}")])
        .stdout();
    assert_eq!(id_one, id_two, "same image ID");
    let manifest = |dir: &Dir| -> String {
        let target = format!("oci-archive:{}", dir.path().join("img.tar").display());
        sha256(
            run(Command::new("skopeo")
                .args(["inspect", "--raw"])
                .arg(&target))
            .as_bytes(),
        )
    };
    assert_eq!(manifest(&one), manifest(&two), "same manifest digest");
    let read = |dir: &Dir| std::fs::read(dir.path().join("img.tar")).unwrap();
    assert!(read(&one) == read(&two), "byte-identical archives");
    let config = skopeo(
        &["--config"],
        &format!("oci-archive:{}", one.path().join("img.tar").display()),
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let history = config["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last["created"], "2023-11-14T22:13:20Z", "{history:?}");

    // Without rewrite-timestamp the files' own mtimes are in the layer,
    // so the two builds differ: the check above can fail.
    let plain = "type=oci,dest=plain.tar,name=repro:1";
    let ids: Vec<String> = [&one, &two]
        .iter()
        .map(|dir| {
            dir.bk()
                .env("SOURCE_DATE_EPOCH", epoch.to_string())
                .args(["build", "-q", "-o", plain, "ctx"])
                .stdout()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn force_compression_recompresses_base_layers_keeping_their_diff_ids() {
    let (base, base_diff_id) = push_base("recompress");
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", &format!("FROM {base}\nCOPY a.txt /\n"));
    dir.create("ctx/a.txt", "a\n");
    let layers = |output: &str| -> Vec<Value> {
        bk(&dir, &["build", "-o", output, "ctx"]);
        let target = format!("oci-archive:{}", dir.path().join("img.tar").display());
        let config = skopeo(&["--config"], &target);
        assert_eq!(config["rootfs"]["diff_ids"][0], base_diff_id.as_str());
        let raw = json(&run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(&target)));
        raw["layers"].as_array().unwrap().clone()
    };
    let types = |layers: &[Value]| -> Vec<String> {
        layers
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap().to_string())
            .collect()
    };
    let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    let plain = "application/vnd.oci.image.layer.v1.tar";
    assert_eq!(
        types(&layers("type=oci,dest=img.tar,name=r,compression=zstd")),
        [gzip, zstd],
        "the base layer is kept as it is"
    );
    let forced =
        layers("type=oci,dest=img.tar,name=r,compression=uncompressed,force-compression=true");
    assert_eq!(types(&forced), [plain, plain]);
    // Uncompressed, the base blob is its tar: its digest is the diff_id.
    assert_eq!(forced[0]["digest"], base_diff_id.as_str());
    // umoci (which reads no zstd) applies the recompressed layer.
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(dir.path().join("img.tar"))
        .arg("-C")
        .arg(&layout));
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle));
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert!(bundle.join("rootfs/a.txt").is_file());
}

/// Every blob in the store with its modification time.
fn blob_mtimes(dir: &Dir) -> Vec<(String, std::time::SystemTime)> {
    let blobs = dir.path().join(".bk-root/content/blobs/sha256");
    let mut all: Vec<_> = std::fs::read_dir(blobs)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().modified().unwrap())
        })
        .collect();
    all.sort();
    all
}

#[test]
fn a_cached_rebuild_writes_no_layer_again() {
    let dir = Dir::new();
    dir.create(
        "ctx/Dockerfile",
        "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
    );
    dir.create("ctx/a.txt", &"a".repeat(100_000));
    dir.create("ctx/b.txt", "b");
    bk(&dir, &["build", "-t", "app", "ctx"]);
    let before = blob_mtimes(&dir);
    std::thread::sleep(std::time::Duration::from_millis(50));
    bk(&dir, &["build", "-t", "app", "ctx"]);
    let after = blob_mtimes(&dir);
    // Blobs may be added (the config carries a new time), none rewritten.
    for blob in &before {
        assert!(after.contains(blob), "{blob:?} was written again");
    }
    // A docker archive reuses the same layer blobs under Docker names.
    bk(&dir, &["build", "-o", "type=docker,dest=d.tar", "ctx"]);
    let layers: Vec<_> = blob_mtimes(&dir)
        .into_iter()
        .filter(|b| !after.contains(b))
        .collect();
    assert!(
        layers.len() <= 2,
        "only a config and a manifest: {layers:?}"
    );
}
