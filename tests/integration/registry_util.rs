//! A real registry for the pull tests: `docker-registry` (distribution
//! 2.8) on 127.0.0.1 with a free port and a temporary storage directory,
//! started once per test binary and stopped by a watchdog shell when the
//! binary exits. Images are written as OCI layouts here (layers are tars
//! built in code, so hostile ones can be made too) and pushed with
//! `skopeo copy`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    dir: PathBuf,
    /// Never waited for: it ends with this process (see `start`).
    _watchdog: std::process::Child,
}

/// The shared registry, started on first use. Panics (failing the test)
/// with the reason if it cannot start.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(start)
}

fn start() -> Registry {
    // Kept for the whole run: the temp dir must outlive every test.
    let dir = tempfile::tempdir().expect("registry dir").keep();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            dir.join("storage").display()
        ),
    )
    .expect("write registry config");
    let watchdog = serve(&config, &dir, &host);
    Registry {
        host,
        dir,
        _watchdog: watchdog,
    }
}

/// Runs `docker-registry serve CONFIG` with its log in `dir/registry.log`
/// and waits until it listens on `host`. The returned watchdog shell
/// kills the registry once this test process is gone, so no registry
/// outlives the run even when a test panics.
pub fn serve(config: &Path, dir: &Path, host: &str) -> std::process::Child {
    let script = r#"docker-registry serve "$1" >"$2" 2>&1 & r=$!
while kill -0 "$3" 2>/dev/null && kill -0 "$r" 2>/dev/null; do sleep 1; done
kill "$r" 2>/dev/null"#;
    let watchdog = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(config)
        .arg(dir.join("registry.log"))
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("start docker-registry (install the docker-registry package)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(host).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    watchdog
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// One layer's tar, uncompressed, built from `(name, kind, data)` with
/// names written raw (so `../x` is possible).
pub fn layer_tar(entries: &[(&str, tar::EntryType, &[u8], u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data, mode) in entries {
        let mut header = tar::Header::new_ustar();
        let bytes = name.as_bytes();
        header.as_ustar_mut().expect("ustar").name[..bytes.len()].copy_from_slice(bytes);
        header.set_entry_type(*kind);
        header.set_mode(*mode);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            header
                .set_link_name(std::str::from_utf8(data).expect("utf-8 link"))
                .expect("link name");
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, std::io::empty()).expect("append");
        } else {
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, *data).expect("append");
        }
    }
    builder.into_inner().expect("finish tar")
}

/// The busybox base: `/bin/busybox` (from busybox-static), `/bin/sh`,
/// `/etc/passwd` and `/etc/group` with root and `tester` (uid 1000), an
/// empty `/work`, and `/arch` naming `arch`. The binary is the host's
/// whatever `arch` says: for images that are only pulled, never run.
pub fn busybox_layer(arch: &str) -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("read /bin/busybox (busybox-static)");
    busybox_tree(arch, &busybox)
}

/// The environment variable naming an arm64 busybox binary (test.sh
/// fetches busybox-static:arm64 and sets it).
pub const BUSYBOX_ARM64_ENV: &str = "BK_TEST_BUSYBOX_ARM64";

/// [`busybox_layer`] with a busybox that runs as `arch`: the host's
/// `/bin/busybox` for amd64, the binary [`BUSYBOX_ARM64_ENV`] names for
/// arm64. Panics (failing the test) naming what is missing.
pub fn busybox_layer_for(arch: &str) -> Vec<u8> {
    let path = match arch {
        "amd64" => std::path::PathBuf::from("/bin/busybox"),
        "arm64" => std::env::var_os(BUSYBOX_ARM64_ENV)
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "{BUSYBOX_ARM64_ENV} is not set: it must name an arm64 busybox \
                     (./test.sh fetches busybox-static:arm64 and sets it)"
                )
            }),
        other => panic!("no busybox binary for {other} in the tests"),
    };
    let busybox = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("read the {arch} busybox `{}`: {e}", path.display()));
    // e_machine (bytes 18-19): x86-64 62, AArch64 183. A wrong binary
    // would make the emulation tests prove nothing.
    let machine = busybox
        .get(18..20)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    let expected = if arch == "arm64" { 183 } else { 62 };
    assert_eq!(
        machine,
        Some(expected),
        "`{}` is not an {arch} ELF program",
        path.display()
    );
    busybox_tree(arch, &busybox)
}

fn busybox_tree(arch: &str, busybox: &[u8]) -> Vec<u8> {
    use tar::EntryType::{Directory as D, Regular as F, Symlink as S};
    layer_tar(&[
        ("bin/", D, b"", 0o755),
        ("bin/busybox", F, busybox, 0o755),
        ("bin/sh", S, b"busybox", 0o777),
        ("etc/", D, b"", 0o755),
        (
            "etc/passwd",
            F,
            b"root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000::/home/tester:/bin/sh\n",
            0o644,
        ),
        ("etc/group", F, b"root:x:0:\ntester:x:1000:\n", 0o644),
        ("work/", D, b"", 0o755),
        ("arch", F, arch.as_bytes(), 0o644),
    ])
}

/// An image for one platform: its layers (uncompressed tars, gzipped
/// here) and the config's runtime fields.
pub struct ImageSpec<'a> {
    pub arch: String,
    pub layers: Vec<Vec<u8>>,
    pub env: &'a [&'a str],
    pub workdir: &'a str,
}

/// Writes `json` as a blob of `layout`, returning its descriptor.
fn blob(layout: &Path, media_type: &str, data: &[u8]) -> serde_json::Value {
    let digest = sha256(data);
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(layout.join("blobs/sha256").join(hex), data).expect("write blob");
    serde_json::json!({"mediaType": media_type, "digest": digest, "size": data.len()})
}

fn manifest(layout: &Path, spec: &ImageSpec<'_>) -> serde_json::Value {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in &spec.layers {
        diff_ids.push(sha256(tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        layers.push(blob(
            layout,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &gz,
        ));
    }
    let config = serde_json::json!({
        "architecture": &spec.arch, "os": "linux",
        "config": {"Env": spec.env, "WorkingDir": spec.workdir},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": layers,
    });
    let mut desc = blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    desc["platform"] = serde_json::json!({"os": "linux", "architecture": &spec.arch});
    desc
}

impl Registry {
    /// Where the registry keeps blob `digest` (`sha256:…`).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes `specs` as `repo:tag`: one image, or an index of all of
    /// them when there are several. Returns the pushed top digest.
    pub fn push(&self, repo_tag: &str, specs: &[ImageSpec<'_>]) -> String {
        let layout = tempfile::tempdir_in(&self.dir).expect("layout dir");
        let root = layout.path();
        std::fs::create_dir_all(root.join("blobs/sha256")).expect("blobs dir");
        std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        let manifests: Vec<_> = specs.iter().map(|s| manifest(root, s)).collect();
        let mut top = if manifests.len() == 1 {
            manifests[0].clone()
        } else {
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            });
            blob(
                root,
                "application/vnd.oci.image.index.v1+json",
                index.to_string().as_bytes(),
            )
        };
        if let Some(obj) = top.as_object_mut() {
            obj.remove("platform");
        }
        top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "t"});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [top.clone()]});
        std::fs::write(root.join("index.json"), index.to_string()).expect("index.json");
        let out = Command::new("skopeo")
            .args([
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:t", root.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host))
            .output()
            .expect("run skopeo (install the skopeo package)");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        top["digest"].as_str().expect("digest").to_string()
    }
}
