//! Pushing built images to real registries: the TLS + htpasswd registry
//! of `secure_registry` (CA made by the test, credentials from a Docker
//! config or a credential helper) and the plain one of `registry_util`.
//! What was pushed is read back by skopeo (`copy` into an OCI layout),
//! unpacked by umoci and listed by GNU tar: tools that share no code
//! with bk.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::registry_util::{busybox_layer, layer_tar, registry, ImageSpec};
use crate::secure_registry::{secure_registry, write_docker_config, SecureRegistry, TlsRegistry};
use crate::util::{describe, Dir};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The busybox base on the plain registry, as `host/repo`.
fn busybox_base() -> String {
    let reg = registry();
    reg.push(
        "push-base:latest",
        &[ImageSpec {
            arch: "amd64".into(),
            layers: vec![busybox_layer("amd64")],
            env: &[PATH],
            workdir: "/",
        }],
    );
    format!("{}/push-base", reg.host)
}

const DOCKERFILE: &str = "FROM {BASE}
COPY --chown=1000:1000 --chmod=750 run.sh /opt/app/run.sh
COPY data.txt /opt/app/
ENV APP_MODE=prod
WORKDIR /opt/app
USER tester
LABEL org.example.team=build
EXPOSE 8080/tcp
CMD [\"/opt/app/run.sh\"]
";

fn context() -> Dir {
    let dir = Dir::new();
    dir.create(
        "ctx/Dockerfile",
        &DOCKERFILE.replace("{BASE}", &busybox_base()),
    );
    dir.create("ctx/run.sh", "#!/bin/sh\necho run\n");
    dir.create("ctx/data.txt", "payload\n");
    dir
}

/// `bk build --progress=plain ARGS ctx` with the registry's CA and
/// `docker_config` as Docker config.
fn bk(dir: &Dir, reg: &SecureRegistry, docker_config: &Path, args: &[&str]) -> Output {
    let mut cmd = dir.bk();
    cmd.env("BK_CERTS_DIR", reg.certs_dir())
        .env("DOCKER_CONFIG", docker_config)
        .args(["build", "--progress=plain"])
        .args(args)
        .arg_path(Path::new("ctx"));
    cmd.output()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fails(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1:\n{}",
        describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // Shown with --nocapture: the messages users get.
    eprintln!("bk said: {}", err.lines().last().unwrap_or_default());
    err
}

fn tool(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo inspect [--config|--raw] docker://REF` with the registry's CA
/// and credentials.
fn inspect(reg: &SecureRegistry, what: &[&str], reference: &str) -> Value {
    let text = tool(
        Command::new("skopeo")
            .arg("inspect")
            .args(what)
            .arg("--cert-dir")
            .arg(reg.host_certs())
            .args(["--creds", &reg.creds()])
            .arg(format!("docker://{reference}")),
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("skopeo said {e}: {text}"))
}

/// Copies `reference` into an OCI layout at `dest` (tag `t`).
fn skopeo_copy(reg: &SecureRegistry, reference: &str, dest: &Path) {
    tool(
        Command::new("skopeo")
            .args(["copy", "--src-cert-dir"])
            .arg(reg.host_certs())
            .args(["--src-creds", &reg.creds()])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:t", dest.display())),
    );
}

/// Lines `MODE OWNER/GROUP … NAME` of GNU tar's listing of a layer.
fn tar_listing(layer: &Path) -> Vec<String> {
    tool(
        Command::new("tar")
            .arg("-tvzf")
            .arg(layer)
            .arg("--numeric-owner"),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// PUTs that completed a blob upload, per the registry's access log.
fn blob_puts(log: &str, repo: &str) -> usize {
    let needle = format!("\"PUT /v2/{repo}/blobs/uploads/");
    log.lines().filter(|l| l.contains(&needle)).count()
}

#[test]
fn push_over_tls_with_auth_reads_back_with_skopeo_umoci_and_tar() {
    let reg = secure_registry();
    let dir = context();
    let image = format!("{}/app:v1", reg.host);
    let meta = dir.path().join("meta.json");
    let log = ok(bk(
        &dir,
        reg,
        &reg.docker_config(),
        &[
            "--push",
            "-t",
            &image,
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
    ));
    assert!(log.contains(&format!("pushed {image}@sha256:")), "{log}");

    // Manifest and config as the registry serves them.
    let raw = inspect(reg, &["--raw"], &image);
    let layers = raw["layers"].as_array().expect("layers").clone();
    assert!(!layers.is_empty(), "{raw}");
    let config = inspect(reg, &["--config"], &image);
    let c = &config["config"];
    assert_eq!(
        c["Env"],
        serde_json::json!([PATH, "APP_MODE=prod"]),
        "{config}"
    );
    assert_eq!(c["Cmd"], serde_json::json!(["/opt/app/run.sh"]));
    assert_eq!(c["WorkingDir"], "/opt/app");
    assert_eq!(c["User"], "tester");
    assert_eq!(c["Labels"]["org.example.team"], "build");
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));

    // --metadata-file names what the registry has.
    let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let digest = inspect(reg, &[], &image)["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(m["containerimage.digest"], digest.as_str(), "{m}");
    assert_eq!(m["containerimage.descriptor"]["digest"], digest.as_str());
    assert_eq!(m["containerimage.config.digest"], raw["config"]["digest"]);
    assert_eq!(m["image.name"], image.as_str());

    // skopeo copies it out; tar lists the layers; umoci unpacks it.
    let layout = dir.path().join("layout");
    skopeo_copy(reg, &image, &layout);
    let listing: Vec<String> = layers
        .iter()
        .flat_map(|l| tar_listing(&blob(&layout, l["digest"].as_str().unwrap())))
        .collect();
    let entry = |name: &str| -> Vec<&String> {
        listing
            .iter()
            .filter(|l| l.ends_with(&format!(" {name}")))
            .collect()
    };
    let run_sh = entry("opt/app/run.sh");
    assert!(
        run_sh
            .iter()
            .any(|l| l.starts_with("-rwxr-x--- 1000/1000 ")),
        "{run_sh:?} in {listing:?}"
    );
    let data = entry("opt/app/data.txt");
    assert!(
        data.iter().any(|l| l.starts_with("-rw-r--r-- 0/0 ")),
        "{data:?} in {listing:?}"
    );
    let busybox = entry("bin/busybox");
    assert!(
        busybox.iter().any(|l| l.starts_with("-rwxr-xr-x 0/0 ")),
        "{busybox:?} in {listing:?}"
    );
    let bundle = dir.path().join("bundle");
    tool(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:t", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("opt/app/data.txt")).unwrap(),
        "payload\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("opt/app/run.sh")).unwrap(),
        "#!/bin/sh\necho run\n"
    );
    assert!(rootfs.join("bin/busybox").is_file());
}

#[test]
fn a_second_push_sends_no_blob_again() {
    let reg = secure_registry();
    let dir = context();
    let image = format!("{}/twice:v1", reg.host);
    // A fixed creation time: the same build makes the same config.
    let args = [
        "--push",
        "-t",
        &image,
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
    ];
    ok(bk(&dir, reg, &reg.docker_config(), &args));
    let blobs = inspect(reg, &["--raw"], &image)["layers"]
        .as_array()
        .expect("layers")
        .len()
        + 1;
    let before = blob_puts(&reg.log(), "twice");
    assert_eq!(before, blobs, "layers and the config: {}", reg.log());
    let log = ok(bk(&dir, reg, &reg.docker_config(), &args));
    assert!(
        log.contains(&format!(
            "0 blobs uploaded (0.0 MiB), {blobs} already there"
        )),
        "{log}"
    );
    assert_eq!(blob_puts(&reg.log(), "twice"), before, "no new upload");
}

#[test]
fn several_names_and_mounts_across_repositories() {
    let reg = secure_registry();
    let dir = context();
    let a = format!("{}/multi-a:1", reg.host);
    let b = format!("{}/multi-b:2", reg.host);
    let log = ok(bk(
        &dir,
        reg,
        &reg.docker_config(),
        &[
            "--output",
            &format!("type=image,name={a},name={b},push=true"),
        ],
    ));
    // The second repository gets the blobs by mounting them from the first.
    let blobs = inspect(reg, &["--raw"], &a)["layers"]
        .as_array()
        .expect("layers")
        .len()
        + 1;
    assert!(
        log.contains(&format!(
            "0 blobs uploaded (0.0 MiB), 0 already there, {blobs} mounted"
        )),
        "{log}"
    );
    assert_eq!(blob_puts(&reg.log(), "multi-b"), 0);
    let da = inspect(reg, &[], &a)["Digest"].clone();
    let db = inspect(reg, &[], &b)["Digest"].clone();
    assert_eq!(da, db);
}

#[test]
fn push_by_digest_leaves_no_tag() {
    let reg = secure_registry();
    let dir = context();
    let meta = dir.path().join("meta.json");
    ok(bk(
        &dir,
        reg,
        &reg.docker_config(),
        &[
            "--output",
            &format!(
                "type=registry,name={}/bydigest:unused,push-by-digest=true",
                reg.host
            ),
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
    ));
    let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let digest = m["containerimage.digest"].as_str().expect("digest");
    let by_digest = format!("{}/bydigest@{digest}", reg.host);
    assert_eq!(inspect(reg, &["--raw"], &by_digest)["schemaVersion"], 2);
    let tag = Command::new("skopeo")
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(reg.host_certs())
        .args(["--creds", &reg.creds()])
        .arg(format!("docker://{}/bydigest:unused", reg.host))
        .output()
        .unwrap();
    assert!(!tag.status.success(), "the tag must not exist");
}

#[test]
fn credentials_from_a_helper_program() {
    let reg = secure_registry();
    let dir = context();
    let bin = dir.path().join("bin");
    let called = dir.path().join("helper-called");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-bktest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> {called}\n\
             if [ \"$server\" = \"{host}\" ]; then\n  \
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{pw}\"}}' \"$server\"\n\
             else\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
            called = called.display(),
            host = reg.host,
            user = crate::secure_registry::USER,
            pw = crate::secure_registry::PASSWORD,
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("docker");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({"credHelpers": {&reg.host: "bktest"}}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let image = format!("{}/helper:v1", reg.host);
    let mut cmd = dir.bk();
    cmd.env("BK_CERTS_DIR", reg.certs_dir())
        .env("DOCKER_CONFIG", &config)
        .env("PATH", &path)
        .args(["build", "--progress=plain", "--push", "-t", &image])
        .arg_path(Path::new("ctx"));
    let log = ok(cmd.output());
    assert!(log.contains(&format!("pushed {image}@")), "{log}");
    assert!(!log.contains(crate::secure_registry::PASSWORD), "{log}");
    let asked = std::fs::read_to_string(&called).unwrap();
    assert_eq!(asked.lines().next(), Some(reg.host.as_str()), "{asked}");
    assert_eq!(
        inspect(reg, &["--config"], &image)["config"]["User"],
        "tester"
    );
}

#[test]
fn wrong_credentials_are_refused_by_name() {
    let reg = secure_registry();
    let dir = context();
    let config = dir.path().join("bad-docker");
    write_docker_config(
        &config,
        &reg.host,
        crate::secure_registry::USER,
        "wrong-password",
    );
    let err = fails(bk(
        &dir,
        reg,
        &config,
        &["--push", "-t", &format!("{}/denied:v1", reg.host)],
    ));
    assert!(
        err.contains(&format!("failed to push {}/denied:v1", reg.host)),
        "{err}"
    );
    assert!(err.contains("unauthorized"), "{err}");
    assert!(!err.contains("wrong-password"), "{err}");
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let reg = secure_registry();
    let dir = context();
    let mut cmd = dir.bk();
    // No certs.d for the registry's CA: its certificate cannot verify.
    cmd.env("BK_CERTS_DIR", dir.path().join("no-certs"))
        .env("DOCKER_CONFIG", reg.docker_config())
        .args(["build", "--progress=plain", "--push", "-t"])
        .args([format!("{}/untrusted:v1", reg.host)])
        .arg_path(Path::new("ctx"));
    let err = fails(cmd.output());
    assert!(
        err.contains(&format!("failed to push {}/untrusted:v1", reg.host)),
        "{err}"
    );
    assert!(err.contains("TLS certificate is not trusted"), "{err}");
    assert!(err.contains("--insecure-registry"), "{err}");
    // --insecure-registry accepts it without verification.
    let mut cmd = dir.bk();
    cmd.env("BK_CERTS_DIR", dir.path().join("no-certs"))
        .env("DOCKER_CONFIG", reg.docker_config())
        .args(["build", "--progress=plain", "--push", "-t"])
        .args([format!("{}/untrusted:v1", reg.host)])
        .args(["--insecure-registry", &reg.host])
        .arg_path(Path::new("ctx"));
    ok(cmd.output());
    // So does registry.insecure=true on the output.
    let mut cmd = dir.bk();
    cmd.env("BK_CERTS_DIR", dir.path().join("no-certs"))
        .env("DOCKER_CONFIG", reg.docker_config())
        .args(["build", "--progress=plain", "--output"])
        .args([format!(
            "type=registry,name={}/untrusted:v2,registry.insecure=true",
            reg.host
        )])
        .arg_path(Path::new("ctx"));
    ok(cmd.output());
}

#[test]
fn a_pushed_image_is_a_base_for_the_next_build() {
    let reg = secure_registry();
    let dir = context();
    let image = format!("{}/base-again:v1", reg.host);
    ok(bk(
        &dir,
        reg,
        &reg.docker_config(),
        &["--push", "-t", &image],
    ));
    // Pulled back by bk over TLS with the same credentials, in a fresh store.
    let next = Dir::new();
    next.create(
        "ctx/Dockerfile",
        &format!(
            "FROM {image}
COPY more.txt /more.txt
"
        ),
    );
    next.create("ctx/more.txt", "more\n");
    ok(bk(&next, reg, &reg.docker_config(), &["-o", "out"]));
    let out = next.path().join("out");
    assert_eq!(
        std::fs::read_to_string(out.join("opt/app/data.txt")).unwrap(),
        "payload\n"
    );
    assert!(out.join("bin/busybox").is_file());
    assert!(out.join("more.txt").is_file());
}

#[test]
fn an_unknown_image_is_named() {
    let reg = secure_registry();
    let dir = Dir::new();
    dir.create(
        "ctx/Dockerfile",
        &format!("FROM {}/no-such-image:v9\n", reg.host),
    );
    let err = fails(bk(
        &dir,
        reg,
        &reg.docker_config(),
        &["--push", "-t", &format!("{}/never:v1", reg.host)],
    ));
    assert!(
        err.contains(&format!("{}/no-such-image:v9: not found", reg.host)),
        "{err}"
    );
}

#[test]
fn an_unreachable_registry_is_named() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let reg = secure_registry();
    let dir = context();
    let image = format!("127.0.0.1:{closed}/app:v1");
    let err = fails(bk(
        &dir,
        reg,
        &reg.docker_config(),
        &["--push", "-t", &image],
    ));
    assert!(err.contains(&format!("failed to push {image}")), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
}

#[test]
fn a_corrupted_blob_is_refused_and_nothing_bad_is_kept() {
    let reg = registry();
    // A layer of its own: other tests share the registry's blobs.
    let unique = format!("{:?}", std::time::SystemTime::now());
    let layer = layer_tar(&[("unique", tar::EntryType::Regular, unique.as_bytes(), 0o644)]);
    reg.push(
        "corrupt:latest",
        &[ImageSpec {
            arch: "amd64".into(),
            layers: vec![busybox_layer("amd64"), layer],
            env: &[PATH],
            workdir: "/",
        }],
    );
    let raw = tool(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/corrupt:latest", reg.host)),
    );
    let raw: Value = serde_json::from_str(&raw).unwrap();
    let digest = raw["layers"][1]["digest"].as_str().unwrap().to_string();
    let data = reg.blob_data(&digest);
    let good = std::fs::read(&data).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::write(&data, &bad).unwrap();

    let dir = Dir::new();
    dir.create("ctx/Dockerfile", &format!("FROM {}/corrupt\n", reg.host));
    let build = |dir: &Dir| {
        dir.bk()
            .args(["build", "--progress=plain", "-o", "out", "ctx"])
            .output()
    };
    let err = fails(build(&dir));
    assert!(err.contains(&digest), "{err}");
    assert!(err.to_lowercase().contains("digest"), "{err}");
    let root = dir.path().join(".bk-root/content");
    let hex = digest.trim_start_matches("sha256:");
    assert!(
        !root.join("blobs/sha256").join(hex).exists(),
        "bad blob kept"
    );
    let ingest: Vec<_> = std::fs::read_dir(root.join("ingest")).unwrap().collect();
    assert!(ingest.is_empty(), "leftover ingest files: {ingest:?}");

    std::fs::write(&data, &good).unwrap();
    ok(build(&dir));
    assert!(root.join("blobs/sha256").join(hex).is_file());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/unique")).unwrap(),
        unique
    );
}

#[test]
fn metadata_file_for_archives_and_other_outputs() {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\nCOPY a /a\n");
    dir.create("ctx/a", "A\n");
    let meta = dir.path().join("meta.json");
    let read = || -> Value { serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap() };
    for (kind, transport) in [("oci", "oci-archive"), ("docker", "docker-archive")] {
        let dest = dir.path().join(format!("{kind}.tar"));
        let out = dir
            .bk()
            .args(["build", "--progress=plain", "--metadata-file"])
            .arg_path(&meta)
            .args([
                "-o".to_string(),
                format!("type={kind},dest={},name=example.com/m:1", dest.display()),
                "ctx".to_string(),
            ])
            .output();
        ok(out);
        let m = read();
        let digest = m["containerimage.digest"].as_str().unwrap();
        assert_eq!(m["containerimage.descriptor"]["digest"], digest, "{m}");
        // Both archives carry an OCI index.json naming the manifest.
        let index = tool(Command::new("tar").arg("-xOf").arg(&dest).arg("index.json"));
        let index: Value = serde_json::from_str(&index).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest, "{index}");
        let hex = digest.trim_start_matches("sha256:");
        let manifest = tool(
            Command::new("tar")
                .arg("-xOf")
                .arg(&dest)
                .arg(format!("blobs/sha256/{hex}")),
        );
        let manifest: Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(
            m["containerimage.config.digest"],
            manifest["config"]["digest"]
        );
        // skopeo reads the same config from the archive.
        let config = tool(
            Command::new("skopeo")
                .args(["inspect", "--config", "--raw"])
                .arg(format!("{transport}:{}", dest.display())),
        );
        assert_eq!(
            crate::registry_util::sha256(config.as_bytes()),
            m["containerimage.config.digest"].as_str().unwrap()
        );
        assert_eq!(m["image.name"], "example.com/m:1");
    }
    ok(dir
        .bk()
        .args(["build", "--progress=plain", "--metadata-file"])
        .arg_path(&meta)
        .args(["-o", "out", "ctx"])
        .output());
    assert_eq!(read(), serde_json::json!({}));
}

#[test]
fn a_registry_that_comes_up_late_is_retried() {
    use std::io::BufRead;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\nCOPY a /a\n");
    dir.create("ctx/a", "late\n");
    let config = dir.create(
        "registry.yml",
        &format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        ),
    );
    let image = format!("127.0.0.1:{port}/late:1");
    let mut bk = std::process::Command::new(env!("CARGO_BIN_EXE_bk"))
        .current_dir(dir.path())
        .env("BK_ROOT", dir.path().join(".bk-root"))
        .args(["build", "--progress=plain", "--push", "-t", &image, "ctx"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(bk.stderr.take().unwrap());
    let mut log = Vec::new();
    let mut registry = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        // The push has started against a closed port; its first tries
        // fail. Bring the registry up a little later: bk's retries (up
        // to 3 s of back-off) must find it.
        if line.starts_with("pushing ") && registry.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(300));
            registry = Some(
                std::process::Command::new("docker-registry")
                    .arg("serve")
                    .arg(&config)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start docker-registry"),
            );
        }
        log.push(line);
    }
    let status = bk.wait().unwrap();
    if let Some(mut registry) = registry {
        let _ = registry.kill();
        let _ = registry.wait();
    }
    let log = log.join("\n");
    assert!(status.success(), "{log}");
    assert!(log.contains(&format!("pushed {image}@sha256:")), "{log}");
}

#[test]
fn bk_push_sends_a_stored_image_as_built() {
    let reg = secure_registry();
    let dir = context();
    let image = format!("{}/stored:v1", reg.host);
    // Built into the local store only: nothing reaches the registry yet.
    ok(bk(&dir, reg, &reg.docker_config(), &["-t", &image]));
    assert_eq!(blob_puts(&reg.log(), "stored"), 0, "{}", reg.log());
    let id = {
        let out = dir.bk().args(["images", "-q", "--no-trunc"]).stdout();
        out.lines().next().expect("an image").to_string()
    };

    let push = |args: &[&str]| {
        let mut cmd = dir.bk();
        cmd.env("BK_CERTS_DIR", reg.certs_dir())
            .env("DOCKER_CONFIG", reg.docker_config())
            .args(["push"])
            .args(args);
        cmd.output()
    };
    let digest = String::from_utf8_lossy(&ok_stdout(push(&["-q", &image]))).into_owned();
    let digest = digest.trim();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let raw = inspect(reg, &["--raw"], &image);
    let config = inspect(reg, &["--config"], &image);
    assert_eq!(
        raw["config"]["digest"],
        id.as_str(),
        "the stored image's ID"
    );
    assert_eq!(config["config"]["User"], "tester");
    // Its manifest digest is the one bk printed.
    let by_digest = format!("{}/stored@{digest}", reg.host);
    assert_eq!(inspect(reg, &["--raw"], &by_digest), raw);

    // Pushing again uploads nothing; an ID or an unknown name is refused.
    let log = ok(push(&[&image]));
    assert!(log.contains("0 blobs uploaded"), "{log}");
    let err = fails(push(&[&id]));
    assert!(err.contains("is an image ID, not a name"), "{err}");
    let err = fails(push(&[&format!("{}/nothing:here", reg.host)]));
    assert!(err.contains("No such image"), "{err}");
}

fn ok_stdout(out: Output) -> Vec<u8> {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    out.stdout
}
