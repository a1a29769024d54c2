//! `RUN` for a foreign platform through qemu-user: an index with amd64
//! and arm64 busybox images on the real registry, built with
//! `--platform linux/arm64` as root and as the unprivileged test user,
//! the steps' output checked in the exported directory. The failures are
//! real too: bk runs in a user namespace (`unshare -Urm`) that mounts its
//! own, empty binfmt_misc (Linux ≥ 6.7 gives each user namespace one),
//! then registers a handler without and with the F flag there.
//!
//! Needs what `./test.sh` sets up: qemu-user-static's qemu-aarch64
//! handler registered with F, and `BK_TEST_BUSYBOX_ARM64`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::registry_util::{busybox_layer_for, layer_tar, registry, ImageSpec};
use crate::util::describe;

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The unprivileged user test.sh creates with a subordinate id range.
const USER: &str = "bk-rootless-test";

/// A few steps of busybox work whose results are checked: the machine
/// name, files, shell arithmetic and a loop.
const DOCKERFILE: &str = "ARG BASE
FROM $BASE
RUN uname -m > /m
RUN mkdir -p /d && echo hello > /d/greeting && echo $((6 * 7)) > /d/answer
RUN i=0; while [ $i -lt 200 ]; do i=$((i + 1)); done; echo $i > /d/count
RUN cat /d/greeting /d/answer | wc -l > /d/lines
";

/// `linux/amd64` + `linux/arm64` busybox images as one index, pushed
/// once per run; each image's `/arch` names its architecture.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let applets = ["cat", "echo", "mkdir", "uname", "wc"];
        let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
        let links: Vec<(&str, tar::EntryType, &[u8], u32)> = links
            .iter()
            .map(|n| (n.as_str(), tar::EntryType::Symlink, &b"busybox"[..], 0o777))
            .collect();
        let spec = |arch: &str| ImageSpec {
            arch: arch.into(),
            layers: vec![busybox_layer_for(arch), layer_tar(&links)],
            env: &[PATH],
            workdir: "/",
        };
        let reg = registry();
        reg.push("emubox:latest", &[spec("amd64"), spec("arm64")]);
        format!("{}/emubox:latest", reg.host)
    })
}

/// A build directory with the Dockerfile and a private store, owned by
/// `owner` when given.
fn case(owner: Option<(u32, u32)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE).expect("write Dockerfile");
    if let Some((uid, gid)) = owner {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        for p in [dir.path().to_path_buf(), dir.path().join("Dockerfile")] {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown");
        }
    }
    dir
}

/// `bk build` of `dir` for `platform` into `dir/out`, run through
/// `wrapper` (a command that executes its arguments) when given.
fn build(dir: &Path, bk: &Path, platform: &str, wrapper: &[&str]) -> Output {
    let mut cmd = match wrapper.split_first() {
        None => Command::new(bk),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bk);
            c
        }
    };
    cmd.current_dir(dir)
        .env("BK_ROOT", dir.join(".bk-root"))
        .env("HOME", dir)
        .env_remove("BUILDKIT_PROGRESS")
        .env_remove("BK_SANDBOX")
        .stdin(Stdio::null())
        .args(["build", "--progress", "plain", "--platform", platform])
        .args(["--build-arg", &format!("BASE={}", image())])
        .args(["-o", "out", "."]);
    cmd.output().expect("run bk")
}

fn read(dir: &Path, rel: &str) -> String {
    let path = dir.join("out").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The exported root ran the steps on `uname`'s machine and is the image
/// of `arch`, with an ELF busybox of `e_machine`.
fn assert_built(dir: &Path, arch: &str, uname: &str, e_machine: u16) {
    assert_eq!(read(dir, "m"), format!("{uname}\n"));
    assert_eq!(read(dir, "arch"), arch);
    assert_eq!(read(dir, "d/greeting"), "hello\n");
    assert_eq!(read(dir, "d/answer"), "42\n");
    assert_eq!(read(dir, "d/count"), "200\n");
    assert_eq!(read(dir, "d/lines"), "2\n");
    let busybox = std::fs::read(dir.join("out/bin/busybox")).expect("read exported busybox");
    assert_eq!(busybox.get(18..20), Some(&e_machine.to_le_bytes()[..]));
}

fn host_is_amd64() -> bool {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "the emulation tests expect an x86-64 host running arm64 under qemu"
    );
    true
}

#[test]
fn arm64_runs_under_qemu_and_amd64_natively() {
    assert!(host_is_amd64());
    let bk = PathBuf::from(env!("CARGO_BIN_EXE_bk"));
    let dir = case(None);
    let out = build(dir.path(), &bk, "linux/arm64", &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_built(dir.path(), "arm64", "aarch64", 183);

    let dir = case(None);
    let out = build(dir.path(), &bk, "linux/amd64", &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_built(dir.path(), "amd64", "x86_64", 62);
}

/// bk as an unprivileged user runs in its own user namespace; the
/// kernel finds the host's handler through the namespace's ancestry.
#[test]
fn arm64_runs_under_qemu_rootless() {
    assert!(host_is_amd64());
    assert!(
        nix::unistd::geteuid().is_root(),
        "the rootless emulation test runs bk as {USER} and so needs root"
    );
    let user = nix::unistd::User::from_name(USER)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("user {USER} is missing: ./test.sh (as root) creates it"));
    let dir = case(Some((user.uid.as_raw(), user.gid.as_raw())));
    let out = build(
        dir.path(),
        &bk_copy(),
        "linux/arm64",
        &["runuser", "-u", USER, "--"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_built(dir.path(), "arm64", "aarch64", 183);
}

/// The bk binary where the test user can execute it (the build
/// directory may be closed to other users).
fn bk_copy() -> PathBuf {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::env::temp_dir().join("bk-emulation-test-bin");
        std::fs::create_dir_all(&dir).expect("binary dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let staged = dir.join(format!(".bk-{}", std::process::id()));
        std::fs::copy(env!("CARGO_BIN_EXE_bk"), &staged).expect("copy bk");
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let copy = dir.join("bk");
        std::fs::rename(&staged, &copy).expect("place bk");
        copy
    })
    .clone()
}

/// Debian's qemu-aarch64 entry for the `register` file, with `flags`.
fn aarch64_entry(flags: &str) -> String {
    let magic = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00";
    let mask = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";
    format!(":qemu-aarch64:M::{magic}:{mask}:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:{flags}")
}

/// Runs the arm64 build in a new user and mount namespace whose own
/// binfmt_misc is mounted over the host's, after registering `entry`
/// there when given.
fn build_in_private_binfmt(entry: Option<&str>) -> (tempfile::TempDir, Output) {
    let dir = case(None);
    let out = build_in_private_binfmt_at(dir.path(), "linux/arm64", entry);
    (dir, out)
}

/// [`build_in_private_binfmt`] of `dir` for `platform`.
fn build_in_private_binfmt_at(dir: &Path, platform: &str, entry: Option<&str>) -> Output {
    assert!(host_is_amd64());
    // `printf %b` turns the entry's `\x..` escapes into bytes only where
    // the kernel expects them: it parses the escapes itself.
    let script = r#"set -e
b=/proc/sys/fs/binfmt_misc
mount -t binfmt_misc binfmt_misc "$b" || {
  echo "cannot mount a private binfmt_misc (Linux >= 6.7 is needed)" >&2; exit 99; }
if [ -n "$BK_TEST_ENTRY" ]; then printf '%s\n' "$BK_TEST_ENTRY" > "$b/register"; fi
exec "$@""#;
    let bk = PathBuf::from(env!("CARGO_BIN_EXE_bk"));
    let wrapper = ["env", &format!("BK_TEST_ENTRY={}", entry.unwrap_or(""))];
    let mut args: Vec<&str> = wrapper.to_vec();
    args.extend(["unshare", "-Urm", "sh", "-c", script, "sh"]);
    let out = build(dir, &bk, platform, &args);
    assert_ne!(out.status.code(), Some(99), "{}", describe(&out));
    out
}

/// The failure bk reports when `cause` keeps the arm64 step from running.
fn assert_refused(dir: &Path, out: &Output, cause: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", describe(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "RUN uname -m",
        "cannot run a linux/arm64 step on this linux/amd64 host",
        cause,
    ] {
        assert!(
            stderr.contains(expected),
            "no {expected:?} in:\n{}",
            describe(out)
        );
    }
    // Refused before anything ran or was exported.
    assert!(!dir.join("out").exists(), "{}", describe(out));
    assert!(!stderr.contains("exec format error"), "{}", describe(out));
}

#[test]
fn without_a_handler_the_build_says_what_to_install() {
    let (dir, out) = build_in_private_binfmt(None);
    assert_refused(
        dir.path(),
        &out,
        "no binfmt_misc handler for arm64 programs is registered in /proc/sys/fs/binfmt_misc; \
         install qemu-user-static and binfmt-support \
         (`apt-get install qemu-user-static binfmt-support` on Debian and Ubuntu)",
    );
}

#[test]
fn a_handler_without_fix_binary_is_refused_naming_the_flag() {
    let (dir, out) = build_in_private_binfmt(Some(&aarch64_entry("P")));
    assert_refused(
        dir.path(),
        &out,
        "the binfmt_misc handler `qemu-aarch64` for arm64 programs \
         (/usr/libexec/qemu-binfmt/aarch64-binfmt-P) lacks the F (fix-binary) flag",
    );
}

/// Both platforms in one build: the arm64 steps are refused although
/// the amd64 ones could run.
#[test]
fn a_multi_platform_build_without_a_handler_is_refused() {
    let dir = case(None);
    let out = build_in_private_binfmt_at(dir.path(), "linux/amd64,linux/arm64", None);
    assert_refused(
        dir.path(),
        &out,
        "no binfmt_misc handler for arm64 programs",
    );
}

/// A build whose steps are all cached runs nothing, so it needs no
/// emulator (as in BuildKit): built once with the host's handler, then
/// again in a namespace without any.
#[test]
fn a_cached_foreign_build_needs_no_emulator() {
    let dir = case(None);
    let bk = PathBuf::from(env!("CARGO_BIN_EXE_bk"));
    let out = build(dir.path(), &bk, "linux/arm64", &[]);
    assert!(out.status.success(), "{}", describe(&out));
    std::fs::remove_dir_all(dir.path().join("out")).expect("remove the first output");
    let out = build_in_private_binfmt_at(dir.path(), "linux/arm64", None);
    assert!(out.status.success(), "{}", describe(&out));
    assert_built(dir.path(), "arm64", "aarch64", 183);
}

/// The same namespace with the handler registered with F: bk reads the
/// namespace's own handlers, and the step runs under them.
#[test]
fn a_handler_with_fix_binary_in_the_namespace_runs_the_steps() {
    let (dir, out) = build_in_private_binfmt(Some(&aarch64_entry("PF")));
    assert!(out.status.success(), "{}", describe(&out));
    assert_built(dir.path(), "arm64", "aarch64", 183);
}

/// Both platforms in one build: the amd64 steps run natively, the
/// arm64 ones under qemu, each reporting its own machine; the result is
/// split per platform locally and pushed as an index whose images
/// skopeo and umoci read back without bk.
#[test]
fn two_platforms_in_one_build_run_each_on_its_own_machine() {
    assert!(host_is_amd64());
    let bk = PathBuf::from(env!("CARGO_BIN_EXE_bk"));
    let dir = case(None);
    // A cross-compilation stage on the build platform runs natively, once
    // for both targets, and each target copies its result.
    let cross = format!(
        "ARG BASE\n\
         FROM --platform=$BUILDPLATFORM $BASE AS tool\n\
         ARG TARGETARCH\n\
         RUN uname -m > /native && echo $TARGETARCH > /for\n\
         {}\
         COPY --from=tool /native /for /tool/\n",
        DOCKERFILE.trim_start_matches("ARG BASE\n")
    );
    std::fs::write(dir.path().join("Dockerfile"), cross).expect("write Dockerfile");
    let both = "linux/amd64,linux/arm64";
    let out = build(dir.path(), &bk, both, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    for (platform, arch, uname, e_machine) in [
        ("linux_amd64", "amd64", "x86_64", 62u16),
        ("linux_arm64", "arm64", "aarch64", 183),
    ] {
        let sub = dir.path().join("out").join(platform);
        let split = tempfile::tempdir().expect("temp dir");
        std::fs::rename(&sub, split.path().join("out")).expect("move the platform's tree");
        assert_built(split.path(), arch, uname, e_machine);
        assert_eq!(read(split.path(), "tool/native"), "x86_64\n");
        assert_eq!(read(split.path(), "tool/for"), format!("{arch}\n"));
    }

    // The same build pushed: every step is cached, the index names both.
    let reg = registry();
    let name = format!("{}/emu-two:latest", reg.host);
    let out = Command::new(&bk)
        .current_dir(dir.path())
        .env("BK_ROOT", dir.path().join(".bk-root"))
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .args(["build", "--progress", "plain", "--platform", both])
        .args(["--build-arg", &format!("BASE={}", image())])
        .args(["-t", &name, "--push", "."])
        .output()
        .expect("run bk");
    assert!(out.status.success(), "{}", describe(&out));
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}"))
        .output()
        .expect("run skopeo");
    assert!(raw.status.success(), "{}", describe(&raw));
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).expect("index JSON");
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or_default(),
                m["platform"]["architecture"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{index}");
    // Each platform's image, fetched and unpacked by skopeo and umoci.
    for (arch, uname) in [("amd64", "x86_64"), ("arm64", "aarch64")] {
        let work = tempfile::tempdir().expect("temp dir");
        let layout = work.path().join("layout");
        let copied = Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false", "--override-arch", arch])
            .arg(format!("docker://{name}"))
            .arg(format!("oci:{}:x", layout.display()))
            .output()
            .expect("run skopeo");
        assert!(copied.status.success(), "{}", describe(&copied));
        let bundle = work.path().join("bundle");
        let unpacked = Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:x", layout.display()))
            .arg(&bundle)
            .output()
            .expect("run umoci");
        assert!(unpacked.status.success(), "{}", describe(&unpacked));
        let rootfs = bundle.join("rootfs");
        assert_eq!(
            std::fs::read_to_string(rootfs.join("m")).expect("read /m"),
            format!("{uname}\n")
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("arch")).expect("read /arch"),
            arch
        );
    }
}
