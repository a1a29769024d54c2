//! Every `RUN --mount` kind on a real sandbox, with the busybox image
//! from the test registry: caches persist and stay out of the output,
//! `locked` caches serialise separate `bk` processes, binds read stages
//! and the context and discard writes, tmpfs is a tmpfs, secrets arrive
//! as files and variables and leave no byte behind, and an SSH agent
//! serves key files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::registry_util::{busybox_layer, registry, ImageSpec};
use crate::util::{describe, Dir};

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `FROM` line of a busybox base with every applet installed.
fn base() -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let image = IMAGE.get_or_init(|| {
        let reg = registry();
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        reg.push(
            "mounts/busybox:latest",
            &[ImageSpec {
                arch: arch.to_string(),
                layers: vec![busybox_layer(arch)],
                env: &[PATH],
                workdir: "/",
            }],
        );
        format!("{}/mounts/busybox", reg.host)
    });
    format!("FROM {image} AS base\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n")
}

fn build(dir: &Dir, extra: &[&str]) -> Output {
    let mut cmd = dir.bk();
    cmd.args(["build", "--progress", "plain"])
        .args(extra)
        .arg_path(Path::new("."));
    cmd.output()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn cache_persists_across_builds_and_stays_out_of_the_output() {
    let dir = Dir::new();
    dir.create(
        "Dockerfile",
        &format!(
            "{}ARG N\nRUN --mount=type=cache,target=/var/cache/app \\\n  echo $N >> /var/cache/app/log && wc -l < /var/cache/app/log > /count\n",
            base()
        ),
    );
    ok(build(&dir, &["--build-arg", "N=1", "-o", "out1"]));
    ok(build(&dir, &["--build-arg", "N=2", "-o", "out2"]));
    assert_eq!(read(dir.path().join("out1/count")).trim(), "1");
    assert_eq!(read(dir.path().join("out2/count")).trim(), "2");
    for out in ["out1", "out2"] {
        let log = dir.path().join(out).join("var/cache/app/log");
        assert!(!log.exists(), "{} is in the output", log.display());
    }
    // The default id is the target: another target is another cache.
    dir.create(
        "Dockerfile",
        &format!(
            "{}RUN --mount=type=cache,target=/other ls /other | wc -l > /count\n",
            base()
        ),
    );
    ok(build(&dir, &["-o", "out3"]));
    assert_eq!(read(dir.path().join("out3/count")).trim(), "0");
}

/// Two `bk` processes on one store, each appending start and end markers
/// around a pause inside a `locked` cache: the markers never interleave,
/// whatever the timing.
#[test]
fn locked_cache_serialises_two_bk_processes() {
    let dir = Dir::new();
    dir.create(
        "Dockerfile",
        &format!(
            "{}FROM base\nARG WHO\nRUN --mount=type=cache,target=/c,sharing=locked \\\n  echo start-$WHO >> /c/log && sleep 1 && echo end-$WHO >> /c/log\n",
            base()
        ),
    );
    // The base first, so that both runs reach the RUN together.
    ok(build(&dir, &["--target", "base"]));
    let spawn = |who: &str| {
        let mut cmd = dir.bk();
        cmd.args(["build", "--progress", "plain", "--build-arg"])
            .args([format!("WHO={who}")])
            .arg_path(Path::new("."));
        cmd
    };
    let (mut a, mut b) = (spawn("a"), spawn("b"));
    let (oa, ob) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.output());
        let tb = s.spawn(|| b.output());
        (ta.join().unwrap(), tb.join().unwrap())
    });
    ok(oa);
    ok(ob);
    dir.create(
        "Dockerfile",
        &format!(
            "{}RUN --mount=type=cache,target=/c,sharing=locked cp /c/log /log\n",
            base()
        ),
    );
    ok(build(&dir, &["-o", "out"]));
    let log = read(dir.path().join("out/log"));
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    for pair in lines.chunks(2) {
        let who = pair[0].strip_prefix("start-").expect(&log);
        assert_eq!(pair[1], format!("end-{who}"), "interleaved:\n{log}");
    }
}

#[test]
fn bind_from_a_stage_and_the_context_and_rw_writes_are_discarded() {
    let dir = Dir::new();
    dir.create("ctx/file", "from-context\n");
    dir.create(
        "Dockerfile",
        &format!(
            "{}RUN mkdir /data && echo from-stage > /data/f && ln -s /data /link
FROM base
RUN --mount=type=bind,from=base,source=/link/f,target=/m cat /m > /stage
RUN --mount=type=bind,source=ctx,target=/ctx,rw \\
  cat /ctx/file > /ctx1 && echo junk > /ctx/file && touch /ctx/new
RUN --mount=type=bind,source=ctx,target=/ctx cat /ctx/file > /ctx2 && ls /ctx > /list
RUN --mount=type=bind,from=base,source=/data,target=/d,rw echo x > /d/f && touch /d/g
RUN --mount=type=bind,from=base,source=/data,target=/d ls /d > /list2 && cat /d/f > /f2
",
            base()
        ),
    );
    ok(build(&dir, &["-o", "out"]));
    let out = dir.path().join("out");
    assert_eq!(read(out.join("stage")), "from-stage\n");
    assert_eq!(read(out.join("ctx1")), "from-context\n");
    assert_eq!(read(out.join("ctx2")), "from-context\n");
    assert_eq!(read(out.join("list")), "file\n");
    assert_eq!(read(out.join("list2")), "f\n");
    assert_eq!(read(out.join("f2")), "from-stage\n");
    assert_eq!(read(dir.path().join("ctx/file")), "from-context\n");
    assert!(!dir.path().join("ctx/new").exists());
}

#[test]
fn tmpfs_is_a_tmpfs_and_not_in_the_output() {
    let dir = Dir::new();
    dir.create(
        "Dockerfile",
        &format!(
            "{}RUN --mount=type=tmpfs,target=/t,size=64k \\\n  grep ' /t ' /proc/mounts > /mounts && echo x > /t/f && ls /t > /seen\n",
            base()
        ),
    );
    ok(build(&dir, &["-o", "out"]));
    let out = dir.path().join("out");
    let mounts = read(out.join("mounts"));
    assert!(mounts.starts_with("tmpfs /t tmpfs "), "{mounts}");
    assert!(mounts.contains("size=64k"), "{mounts}");
    assert_eq!(read(out.join("seen")), "f\n");
    assert!(!out.join("t/f").exists());
}

#[test]
fn secret_as_a_file_with_owner_and_mode_and_as_env() {
    let dir = Dir::new();
    dir.create("tok.txt", "value-1234");
    dir.create(
        "Dockerfile",
        &format!(
            "{}RUN --mount=type=secret,id=tok,mode=0440,uid=1000,gid=1000 \\
  stat -c '%a %u %g' /run/secrets/tok > /st && \\
  test \"$(cat /run/secrets/tok)\" = value-1234 && echo ok > /file-ok
RUN --mount=type=secret,id=tok,env=TOK test \"$TOK\" = value-1234 && echo ok > /env-ok && \\
  ls /run/secrets 2>&1 | wc -l > /no-file
RUN --mount=type=secret,id=absent true && echo ok > /optional-ok
",
            base()
        ),
    );
    ok(build(
        &dir,
        &["--secret", "id=tok,src=tok.txt", "-o", "out"],
    ));
    let out = dir.path().join("out");
    assert_eq!(read(out.join("st")), "440 1000 1000\n");
    assert_eq!(read(out.join("file-ok")), "ok\n");
    assert_eq!(read(out.join("env-ok")), "ok\n");
    assert_eq!(read(out.join("optional-ok")), "ok\n");
    assert!(!out.join("run/secrets/tok").exists(), "a stub was left");
}

/// Every byte bk writes — the exported tar and OCI archive, the store
/// with its snapshots, caches and database, and the progress output —
/// is searched for the secret's value.
#[test]
fn secret_values_are_never_written_anywhere() {
    let dir = Dir::new();
    let value = format!("SeCrEt-{}-{}", std::process::id(), line!());
    dir.create("secret.txt", &value);
    dir.create(
        "Dockerfile",
        &format!(
            "{}RUN --mount=type=secret,id=s --mount=type=cache,target=/c \\
  cat /run/secrets/s | wc -c > /len && echo \"$S\" | wc -c > /len2
RUN --mount=type=secret,id=s,env=S test -n \"$S\" && echo done > /done
",
            base()
        ),
    );
    let mut logs = String::new();
    logs += &ok(build(
        &dir,
        &[
            "--secret",
            "id=s,src=secret.txt",
            "-o",
            "type=tar,dest=out.tar",
        ],
    ));
    logs += &ok(build(
        &dir,
        &[
            "--secret",
            "id=s,src=secret.txt",
            "-o",
            "type=oci,dest=out.oci.tar",
        ],
    ));
    logs += &ok(build(
        &dir,
        &[
            "--no-cache",
            "--secret",
            "id=s,src=secret.txt",
            "-o",
            "type=oci,dest=out2.oci.tar",
        ],
    ));
    assert!(
        !logs.contains(&value),
        "the secret is in the progress output"
    );
    let tar = std::fs::read(dir.path().join("out.tar")).unwrap();
    assert!(tar.len() > 1000, "the export is empty");
    let mut searched = 0;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if meta.is_file() && p != dir.path().join("secret.txt") {
            let bytes = std::fs::read(&p).unwrap();
            searched += bytes.len();
            let found = bytes.windows(value.len()).any(|w| w == value.as_bytes());
            assert!(!found, "the secret is in {}", p.display());
            // Compressed layers: search their decompressed bytes too.
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut plain = Vec::new();
                let _ = std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&bytes[..]),
                    &mut plain,
                );
                let found = plain.windows(value.len()).any(|w| w == value.as_bytes());
                assert!(!found, "the secret is in the layer {}", p.display());
            }
        }
    }
    assert!(searched > 100_000, "searched only {searched} bytes");
    // The archives also unpack with independent tools.
    let listed = Command::new("tar")
        .arg("-tf")
        .arg(dir.path().join("out.oci.tar"))
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", describe(&listed));
}

#[test]
fn ssh_agent_serves_key_files() {
    let dir = Dir::new();
    let key = dir.path().join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bk-test-key", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(st.success());
    let fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&key)
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    // busybox has no ssh-add: the host's, with its libraries and loader,
    // is bound in from the context.
    let tools = dir.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::copy("/usr/bin/ssh-add", tools.join("ssh-add")).unwrap();
    let ldd = Command::new("ldd")
        .arg("/usr/bin/ssh-add")
        .output()
        .unwrap();
    let mut loader = String::new();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split("=>")
            .last()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap_or("");
        if path.starts_with('/') {
            let name = Path::new(path)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            std::fs::copy(path, tools.join(&name)).unwrap();
            if name.starts_with("ld-linux") {
                loader = name;
            }
        }
    }
    assert!(!loader.is_empty(), "no loader in {ldd:?}");
    dir.create(
        "Dockerfile",
        &format!(
            "{}RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh,id=k \\
  /tools/{loader} --library-path /tools /tools/ssh-add -l > /keys && echo $SSH_AUTH_SOCK > /sock
",
            base()
        ),
    );
    ok(build(
        &dir,
        &["--ssh", &format!("k={}", key.display()), "-o", "out"],
    ));
    let keys = read(dir.path().join("out/keys"));
    assert!(keys.contains(&fp), "{keys} lacks {fp}");
    assert_eq!(
        read(dir.path().join("out/sock")),
        "/run/buildkit/ssh_agent.0\n"
    );

    // `--ssh default`: the caller's agent, from $SSH_AUTH_SOCK.
    let sock = dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let added = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", describe(&added));
    dir.create(
        "Dockerfile",
        &format!(
            "{}RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh \\
  /tools/{loader} --library-path /tools /tools/ssh-add -l > /keys && \\
  (/tools/{loader} --library-path /tools /tools/ssh-add -D; echo $? > /delete)
",
            base()
        ),
    );
    let mut cmd = dir.bk();
    cmd.args([
        "build",
        "--progress",
        "plain",
        "--ssh",
        "default",
        "-o",
        "out2",
        ".",
    ])
    .env("SSH_AUTH_SOCK", &sock);
    let out = cmd.output();
    let _ = agent.kill();
    let _ = agent.wait();
    ok(out);
    assert!(read(dir.path().join("out2/keys")).contains(&fp));
    assert_ne!(
        read(dir.path().join("out2/delete")),
        "0\n",
        "the forward is read-only"
    );
}

/// The same mounts when bk runs as an unprivileged user with a
/// subordinate id range (`bk-rootless-test` in `/etc/subuid`): bk then
/// runs as root in its own user namespace, and a secret still gets the
/// in-sandbox owner it asks for. Needs root to switch users; skipped
/// (saying so) on machines without that user.
#[test]
fn mounts_work_for_an_unprivileged_user() {
    const USER: &str = "bk-rootless-test";
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let has_range = subuid.lines().any(|l| l.starts_with(&format!("{USER}:")));
    let ids = Command::new("id").args(["-u", USER]).output().unwrap();
    if !nix::unistd::geteuid().is_root() || !has_range || !ids.status.success() {
        eprintln!("skipped: needs root and a user {USER} with a range in /etc/subuid");
        return;
    }
    let uid = String::from_utf8_lossy(&ids.stdout).trim().to_string();
    let dir = Dir::new();
    dir.create("tok.txt", "rootless-value-987");
    let key = dir.path().join("key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    dir.create(
        "Dockerfile",
        &format!(
            "{}ARG N
RUN --mount=type=secret,id=tok,uid=1000,gid=1000,mode=0440 \\
    --mount=type=secret,id=tok,env=TOK \\
    --mount=type=cache,target=/c,sharing=locked \\
    --mount=type=tmpfs,target=/t \\
    --mount=type=ssh,id=k,mode=0660,uid=1000 \\
  stat -c '%a %u %g' /run/secrets/tok > /st && test \"$TOK\" = \"$(cat /run/secrets/tok)\" && \\
  echo $N >> /c/log && wc -l < /c/log > /n && grep -q '^tmpfs /t ' /proc/mounts && \\
  stat -c '%a %u %F' $SSH_AUTH_SOCK > /sock
",
            base()
        ),
    );
    let chown = Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let run = |n: &str, out: &str| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--",
            ])
            .arg(env!("CARGO_BIN_EXE_bk"))
            .args([
                "build",
                "--progress",
                "plain",
                "--secret",
                "id=tok,src=tok.txt",
            ])
            .args([
                "--ssh",
                "k=key",
                "--build-arg",
                &format!("N={n}"),
                "-o",
                out,
                ".",
            ])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("BK_ROOT", dir.path().join(".bk-root"))
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
    };
    ok(run("1", "out1"));
    ok(run("2", "out2"));
    let out = dir.path().join("out2");
    assert_eq!(read(out.join("st")), "440 1000 1000\n");
    assert_eq!(read(out.join("n")), "2\n");
    assert_eq!(read(out.join("sock")), "660 1000 socket\n");
    assert!(!out.join("run/secrets/tok").exists());
    let grep = Command::new("grep")
        .args([
            "-r",
            "-l",
            "-a",
            "rootless-value-987",
            ".bk-root",
            "out1",
            "out2",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(grep.status.code(), Some(1), "found in: {}", describe(&grep));
}

#[test]
fn cache_owner_mode_readonly_and_seed_and_heredoc_scripts() {
    let dir = Dir::new();
    dir.create(
        "Dockerfile",
        &format!(
            "{}RUN mkdir /seed && echo seeded > /seed/f
FROM base
RUN --mount=type=cache,target=/c,uid=1000,gid=1001,mode=0710 stat -c '%a %u %g' /c > /cst
RUN --mount=type=cache,target=/ro,ro touch /ro/x 2>/dev/null; echo $? > /rost
RUN --mount=type=cache,target=/s,from=base,source=/seed cat /s/f > /sst && echo more > /s/f
RUN --mount=type=cache,target=/s,from=base,source=/seed cat /s/f > /sst2
RUN --mount=type=cache,id=shared-id,target=/a --mount=type=cache,id=shared-id,target=/b,sharing=locked \\
  echo x > /a/f && cat /b/f > /both
RUN <<EOT
#!/bin/sh
echo from-a-script > /script
EOT
",
            base()
        ),
    );
    ok(build(&dir, &["-o", "out"]));
    let out = dir.path().join("out");
    assert_eq!(read(out.join("cst")), "710 1000 1001\n");
    assert_eq!(read(out.join("rost")), "1\n", "a ro cache is read-only");
    assert_eq!(read(out.join("sst")), "seeded\n");
    assert_eq!(
        read(out.join("sst2")),
        "more\n",
        "the seeded cache persists"
    );
    assert_eq!(read(out.join("both")), "x\n");
    assert_eq!(read(out.join("script")), "from-a-script\n");
    assert!(!out.join("dev").exists() && !out.join("s").join("f").exists());
}

/// BuildKit's `testCacheMountModeNoCache`: with `--no-cache` a cache
/// with a mode starts fresh (its seed is rebuilt), and a later normal
/// build reuses the first one.
#[test]
fn no_cache_starts_a_moded_cache_fresh() {
    let dir = Dir::new();
    dir.create(
        "Dockerfile",
        &format!(
            "{}FROM base AS b2
ARG FOO=abc
RUN --mount=type=cache,target=/cache,mode=0773 touch /cache/$FOO && ls -l /cache | wc -l > /out
FROM scratch
COPY --from=b2 /out /
",
            base()
        ),
    );
    ok(build(&dir, &["-o", "o1"]));
    ok(build(
        &dir,
        &["--no-cache", "--build-arg", "FOO=def", "-o", "o2"],
    ));
    ok(build(&dir, &["--build-arg", "FOO=ghi", "-o", "o3"]));
    assert_eq!(read(dir.path().join("o1/out")), "2\n");
    assert_eq!(read(dir.path().join("o2/out")), "2\n");
    assert_eq!(read(dir.path().join("o3/out")), "3\n");
}

/// A `bk` killed while a step holds a secret leaves no copy of it: the
/// secret files live on a tmpfs of bk's own mount namespace.
#[test]
fn a_killed_bk_leaves_no_secret_behind() {
    let dir = Dir::new();
    let value = format!("killed-{}-{}", std::process::id(), line!());
    dir.create("s.txt", &value);
    dir.create(
        "Dockerfile",
        &format!(
            "{}FROM base\nRUN --mount=type=secret,id=s sleep 30\n",
            base()
        ),
    );
    let mut cmd = dir.bk();
    cmd.args([
        "build",
        "--progress",
        "plain",
        "--secret",
        "id=s,src=s.txt",
        ".",
    ]);
    // Warm the base first, so that the step starts quickly below.
    ok(build(&dir, &["--target", "base"]));
    let find_secret = || -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with("bk-secrets-") {
                continue;
            }
            for file in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if std::fs::read(file.path()).is_ok_and(|b| b == value.as_bytes()) {
                    found.push(file.path());
                }
            }
        }
        found
    };
    let mut child = cmd
        .into_command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The step is running once its secret is prepared; as root the file
    // is visible here only without the tmpfs (which is what we test).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut running = false;
    while std::time::Instant::now() < deadline {
        let busy = std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("bk-secrets-{}-", child.id()))
            });
        if busy {
            running = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(running, "the step never started");
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(find_secret().is_empty(), "left behind: {:?}", find_secret());
}
