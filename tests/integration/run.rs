//! `RUN` end to end, on a busybox image from the real registry: as root
//! and as an unprivileged user (created here with a subordinate id range;
//! bk then runs in its own user namespace). Results are checked in the
//! exported tar (with `tar`, numeric owners) or directory.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::registry_util::{busybox_layer, layer_tar, registry, ImageSpec};
use crate::util::describe;

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The unprivileged user the rootless runs use.
const USER: &str = "bk-rootless-test";

/// Busybox applets the tests call, linked in `/bin`.
const APPLETS: &[&str] = &[
    "cat", "chown", "echo", "false", "grep", "hostname", "id", "ip", "ls", "mkdir", "pwd", "sleep",
    "stat", "touch", "true", "wc",
];

/// The busybox image with its applets, pushed once per run.
pub(crate) fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let links: Vec<(String, tar::EntryType, &[u8], u32)> = APPLETS
            .iter()
            .map(|a| {
                (
                    format!("bin/{a}"),
                    tar::EntryType::Symlink,
                    &b"busybox"[..],
                    0o777,
                )
            })
            .collect();
        let links: Vec<(&str, tar::EntryType, &[u8], u32)> = links
            .iter()
            .map(|(n, k, d, m)| (n.as_str(), *k, *d, *m))
            .collect();
        let reg = registry();
        reg.push(
            "runbox:latest",
            &[ImageSpec {
                arch: "amd64".into(),
                layers: vec![busybox_layer("amd64"), layer_tar(&links)],
                env: &[PATH],
                workdir: "/",
            }],
        );
        format!("{}/runbox", reg.host)
    })
}

/// Who runs bk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// This process's user (root when the suite runs as root).
    Me,
    /// The unprivileged test user (only when this process is root).
    Unprivileged,
    /// An unprivileged user without a subordinate id range.
    NoRange,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The modes to test: as root, both; otherwise this user only (which is
/// unprivileged already).
pub(crate) fn modes() -> Vec<Who> {
    if is_root() && test_user().is_some() {
        vec![Who::Me, Who::Unprivileged]
    } else {
        vec![Who::Me]
    }
}

/// The user without a subordinate id range (single-id user namespace).
const NO_RANGE_USER: &str = "bk-norange-test";

/// `(uid, gid)` of the test user, created with a subordinate id range
/// on first use (root only). `None` when it cannot be set up.
fn test_user() -> Option<(u32, u32)> {
    static USER_IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER_IDS.get_or_init(|| ensure_user(USER, true))
}

/// `(uid, gid)` of the user without a subordinate range.
fn no_range_user() -> Option<(u32, u32)> {
    static USER_IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER_IDS.get_or_init(|| ensure_user(NO_RANGE_USER, false))
}

/// Creates `name` if missing and gives it a subordinate id range in
/// `/etc/subuid` and `/etc/subgid`, or takes away the one `useradd` may
/// have allocated.
fn ensure_user(name: &str, range: bool) -> Option<(u32, u32)> {
    let lookup = || nix::unistd::User::from_name(name).ok().flatten();
    if lookup().is_none() {
        let out = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", name])
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("useradd failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
    }
    let user = lookup()?;
    let prefix = format!("{name}:");
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let has = text.lines().any(|l| l.starts_with(&prefix));
        if range && !has {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .ok()?;
            std::io::Write::write_all(&mut f, format!("{name}:300000:65536\n").as_bytes()).ok()?;
        } else if !range && has {
            let kept: String = text
                .lines()
                .filter(|l| !l.starts_with(&prefix))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(file, kept).ok()?;
        }
    }
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// The user name and ids `who` runs as, for the unprivileged kinds.
fn account(who: Who) -> Option<(&'static str, u32, u32)> {
    match who {
        Who::Me => None,
        Who::Unprivileged => test_user().map(|(u, g)| (USER, u, g)),
        Who::NoRange => no_range_user().map(|(u, g)| (NO_RANGE_USER, u, g)),
    }
}

/// The bk binary, where `who` can execute it.
fn bk_binary(who: Who) -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_bk"));
    if who == Who::Me {
        return built;
    }
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        // The build directory may not be reachable for other users. One
        // fixed place, replaced by rename on every run (a run still using
        // the old copy keeps its inode), so runs do not pile up copies.
        let dir = std::env::temp_dir().join("bk-rootless-test-bin");
        std::fs::create_dir_all(&dir).expect("binary dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let staged = dir.join(format!(".bk-{}", std::process::id()));
        std::fs::copy(&built, &staged).expect("copy bk");
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("bk");
        std::fs::rename(&staged, &copy).expect("place bk");
        copy
    })
    .clone()
}

/// A build directory `who` owns, with a Dockerfile and a private store.
pub(crate) struct Case {
    dir: tempfile::TempDir,
    who: Who,
}

impl Case {
    pub(crate) fn new(who: Who, dockerfile: &str) -> Case {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
        if let Some((_, uid, gid)) = account(who) {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for p in [dir.path().to_path_buf(), dir.path().join("Dockerfile")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
        }
        Case { dir, who }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `bk build` in this directory with extra arguments.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.bk(&["build", "--progress", "plain"]);
        cmd.args(args).arg(".");
        cmd
    }

    /// `bk ARGS` in this directory, as this case's user, on its store.
    fn bk(&self, args: &[&str]) -> Command {
        let bk = bk_binary(self.who);
        let mut cmd = match account(self.who) {
            None => Command::new(bk),
            Some((name, _, _)) => {
                let mut c = Command::new("runuser");
                c.args(["-u", name, "--"]).arg(bk);
                c
            }
        };
        cmd.current_dir(self.path())
            .env("BK_ROOT", self.path().join(".bk-root"))
            .env("HOME", self.path())
            .env_remove("BUILDKIT_PROGRESS")
            .env_remove("BK_SANDBOX")
            .stdin(Stdio::null())
            .args(args);
        cmd
    }

    pub(crate) fn build(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run bk")
    }

    /// Builds into `out.tar`, asserting success; returns `tar tvf` lines
    /// with numeric owners.
    fn build_tar(&self) -> Vec<String> {
        let out = self.build(&["-o", "type=tar,dest=out.tar"]);
        assert!(out.status.success(), "{:?}: {}", self.who, describe(&out));
        let list = Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(self.path().join("out.tar"))
            .output()
            .expect("run tar");
        assert!(list.status.success(), "{}", describe(&list));
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Builds into the directory `out`, asserting success.
    fn build_dir(&self) -> PathBuf {
        let out = self.build(&["-o", "out"]);
        assert!(out.status.success(), "{:?}: {}", self.who, describe(&out));
        self.path().join("out")
    }
}

/// The `owner/group` column of the `tar tv` line for `name`.
fn owner_of(lines: &[String], name: &str) -> String {
    let line = lines
        .iter()
        .find(|l| l.split_whitespace().nth(5) == Some(name))
        .unwrap_or_else(|| panic!("{name} not in the archive:\n{}", lines.join("\n")));
    line.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn run_chown_and_adduser_give_container_owners() {
    for who in modes() {
        let case = Case::new(
            who,
            &format!(
                "FROM {}\nRUN chown 123:456 /work \
                 && echo app:x:2001:2001::/home/app:/bin/sh >> /etc/passwd \
                 && echo app:x:2001: >> /etc/group \
                 && mkdir -p /home/app && chown app:app /home/app \
                 && touch /home/app/f && chown app:app /home/app/f \
                 && mkdir /data && echo hi > /data/x\n",
                image()
            ),
        );
        let lines = case.build_tar();
        // A rebuild takes the RUN from the cache.
        let again = case.build(&[]);
        let err = String::from_utf8_lossy(&again.stderr);
        let run_line = err
            .lines()
            .position(|l| l.contains("] RUN chown"))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(
            err.lines()
                .nth(run_line + 1)
                .is_some_and(|l| l.ends_with("CACHED")),
            "{who:?}: {err}"
        );
        assert_eq!(owner_of(&lines, "work/"), "123/456", "{who:?}");
        // A local export belongs to whoever ran bk, unless that is root
        // (as with buildx's client-side receiver).
        let out = case.build(&["-o", "out"]);
        assert!(out.status.success(), "{who:?}: {}", describe(&out));
        let meta = std::fs::metadata(case.path().join("out/work")).unwrap();
        let expected = match account(who) {
            None if is_root() => (123, 456),
            None => (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ),
            Some((_, uid, gid)) => (uid, gid),
        };
        assert_eq!(
            (
                std::os::unix::fs::MetadataExt::uid(&meta),
                std::os::unix::fs::MetadataExt::gid(&meta)
            ),
            expected,
            "{who:?}"
        );
        assert_eq!(owner_of(&lines, "home/app/f"), "2001/2001", "{who:?}");
        assert_eq!(owner_of(&lines, "home/app/"), "2001/2001", "{who:?}");
        assert_eq!(owner_of(&lines, "data/x"), "0/0", "{who:?}");
        // Mount points made for the run are gone again.
        for stub in ["proc/", "dev/", "sys/", "etc/hosts", "etc/resolv.conf"] {
            assert!(
                !lines.iter().any(|l| l.ends_with(&format!(" {stub}"))),
                "{who:?}: {stub} left in the result:\n{}",
                lines.join("\n")
            );
        }
    }
}

#[test]
fn user_switching_sets_ids_and_groups() {
    for who in modes() {
        let case = Case::new(
            who,
            &format!(
                "FROM {}\n\
                 RUN mkdir -m 1777 /out && echo bob:x:1500:1500::/home/bob:/bin/sh >> /etc/passwd \
                 && echo bob:x:1500: >> /etc/group && echo extra:x:3000:bob >> /etc/group\n\
                 USER bob\nRUN id > /out/named\n\
                 USER 1500:3000\nRUN id > /out/numeric\n\
                 USER 4242\nRUN id > /out/unknown\n\
                 USER root\nRUN id > /out/root && hostname > /out/hostname\n",
                image()
            ),
        );
        let out = case.build_dir().join("out");
        let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap();
        assert_eq!(
            read("named").trim(),
            "uid=1500(bob) gid=1500(bob) groups=1500(bob),3000(extra)",
            "{who:?}"
        );
        assert_eq!(
            read("numeric").trim(),
            "uid=1500(bob) gid=3000(extra) groups=3000(extra)",
            "{who:?}"
        );
        assert_eq!(
            read("unknown").trim(),
            "uid=4242 gid=0(root) groups=0(root)",
            "{who:?}"
        );
        assert_eq!(
            read("root").trim(),
            "uid=0(root) gid=0(root) groups=0(root)",
            "{who:?}"
        );
        assert_eq!(read("hostname").trim(), "buildkitsandbox", "{who:?}");
    }
}

#[test]
fn workdir_heredoc_env_and_proxy_args() {
    let who = *modes().last().expect("a mode");
    let case = Case::new(
        who,
        &format!(
            "FROM {}\nENV GREETING=hello\nWORKDIR /made/here\nRUN pwd > /pwd.txt\n\
             RUN <<EOF\necho \"$GREETING one\" > /heredoc\necho two >> /heredoc\nEOF\n\
             RUN echo \"$HTTP_PROXY|$HOME\" > /proxy\n",
            image()
        ),
    );
    let out = case.build(&[
        "-o",
        "out",
        "--build-arg",
        "HTTP_PROXY=http://proxy.invalid:3128",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let dir = case.path().join("out");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    assert_eq!(read("pwd.txt"), "/made/here\n");
    assert_eq!(read("heredoc"), "hello one\ntwo\n");
    assert_eq!(read("proxy"), "http://proxy.invalid:3128|/root\n");
}

#[test]
fn failing_run_shows_its_output_exit_code_and_snippet() {
    for who in modes() {
        let case = Case::new(
            who,
            &format!(
                "FROM {}\nRUN true\nRUN echo visible-output && echo on-stderr >&2 && exit 3\n",
                image()
            ),
        );
        let out = case.build(&[]);
        assert_eq!(out.status.code(), Some(1), "{who:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                r#"process "/bin/sh -c echo visible-output && echo on-stderr >&2 && exit 3" did not complete successfully: exit code: 3"#
            ),
            "{who:?}: {err}"
        );
        assert!(
            err.contains("visible-output") && err.contains("on-stderr"),
            "{err}"
        );
        assert!(err.contains(">>> RUN echo visible-output"), "{err}");
        // A process killed by a signal is reported so.
        let case = Case::new(who, &format!("FROM {}\nRUN kill -9 $$\n", image()));
        let err = String::from_utf8_lossy(&case.build(&[]).stderr).into_owned();
        assert!(
            err.contains("did not complete successfully: exit code: 137 (killed by SIGKILL)"),
            "{who:?}: {err}"
        );
        // An unknown command is a failed exec, named.
        let case = Case::new(who, &format!("FROM {}\nRUN [\"no-such-tool\"]\n", image()));
        let err = String::from_utf8_lossy(&case.build(&[]).stderr).into_owned();
        assert!(
            err.contains(r#"exec: "no-such-tool": executable file not found in $PATH"#),
            "{who:?}: {err}"
        );
    }
}

#[test]
fn network_none_has_only_loopback() {
    let host_links = std::fs::read_dir("/sys/class/net").unwrap().count();
    for who in modes() {
        let case = Case::new(
            who,
            &format!(
                "FROM {}\nRUN --network=none ip -o link > /none\nRUN ip -o link > /default\n",
                image()
            ),
        );
        let dir = case.build_dir();
        let none = std::fs::read_to_string(dir.join("none")).unwrap();
        let links: Vec<&str> = none.lines().collect();
        assert_eq!(links.len(), 1, "{who:?}: {none}");
        assert!(
            links[0].contains(": lo:") && links[0].contains("UP"),
            "{none}"
        );
        // The default is the host's network.
        let default = std::fs::read_to_string(dir.join("default")).unwrap();
        assert_eq!(default.lines().count(), host_links, "{who:?}: {default}");
    }
}

#[test]
fn insecure_and_host_network_need_entitlements() {
    let case = Case::new(
        Who::Me,
        &format!(
            "FROM {}\nRUN --security=insecure grep CapBnd /proc/self/status > /insecure\n\
             RUN grep CapBnd /proc/self/status > /default && test -d /sys/class \
             && ! (echo 1 > /proc/sysrq-trigger) 2>/dev/null\n",
            image()
        ),
    );
    let out = case.build(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        err.contains("entitlement security.insecure is not allowed"),
        "{err}"
    );
    let out = case.build(&["--allow", "security.insecure", "-o", "out"]);
    assert!(out.status.success(), "{}", describe(&out));
    let read = |n: &str| std::fs::read_to_string(case.path().join("out").join(n)).unwrap();
    // BuildKit's default capability set, and more with the entitlement.
    assert_eq!(read("default"), "CapBnd:\t00000000a80425fb\n");
    assert_ne!(read("insecure"), read("default"));
    let case = Case::new(
        Who::Me,
        &format!("FROM {}\nRUN --network=host true\n", image()),
    );
    let err = String::from_utf8_lossy(&case.build(&[]).stderr).into_owned();
    assert!(
        err.contains("entitlement network.host is not allowed"),
        "{err}"
    );
    assert!(case.build(&["--allow", "network.host"]).status.success());
    assert!(case.build(&["--network", "host"]).status.success());
}

/// Processes whose command line is `sleep <marker>`.
fn sleepers(marker: &str) -> Vec<String> {
    let want = format!("sleep\0{marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&want)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

#[test]
fn interrupt_leaves_no_process_and_no_mount() {
    for (n, who) in modes().into_iter().enumerate() {
        let marker = format!("{}", 600 + std::process::id() % 1000 * 10 + n as u32);
        let case = Case::new(who, &format!("FROM {}\nRUN sleep {marker}\n", image()));
        let mut cmd = case.command(&[]);
        // Its own process group, so the whole tree gets the signal as a
        // terminal's Ctrl-C would send it.
        cmd.process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn bk");
        let deadline = Instant::now() + Duration::from_secs(60);
        while sleepers(&marker).is_empty() {
            assert!(Instant::now() < deadline, "{who:?}: the RUN never started");
            std::thread::sleep(Duration::from_millis(50));
        }
        let pgid = nix::unistd::Pid::from_raw(-(child.id() as i32));
        nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGINT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{who:?}: bk did not stop on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!status.success(), "{who:?}: {err}");
        // The pid namespace died with its init: nothing is left running.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sleepers(&marker).is_empty() {
            assert!(
                Instant::now() < deadline,
                "{who:?}: sleep {marker} survived"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let root = case.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&root), "{who:?}: mounts left:\n{mounts}");
        let any_ns_mounts = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("mountinfo")).ok())
            .any(|m| m.contains(&root));
        assert!(
            !any_ns_mounts,
            "{who:?}: a process still has a mount in the store"
        );
    }
}

#[test]
fn without_user_namespaces_bk_says_how_to_fix_it() {
    let Some((uid, gid)) = is_root().then(test_user).flatten() else {
        eprintln!("skipping: needs root to disable user namespaces for a child");
        return;
    };
    let case = Case::new(Who::Unprivileged, "FROM scratch\nRUN [\"/bin/true\"]\n");
    let bk = bk_binary(Who::Unprivileged);
    // The shell was exec'd before its id map existed, so it has no
    // capabilities; the one it execs once the map is written is root.
    let inner = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && \
         exec setpriv --reuid={uid} --regid={gid} --clear-groups \"$@\""
    );
    let script = "read _ && exec sh -c \"$0\" sh \"$@\"";
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, &inner])
        .arg(&bk)
        .args(["build", "--progress", "plain", "."])
        .current_dir(case.path())
        .env("BK_ROOT", case.path().join(".bk-root"))
        .env("HOME", case.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: unshare(2) is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().expect("spawn sh in a user namespace");
    // An identity map, so the test user exists inside; root inside may
    // then lower the namespace limit to 0 for everything below it.
    for (file, text) in [
        ("uid_map", "0 0 4294967295\n"),
        ("gid_map", "0 0 4294967295\n"),
    ] {
        std::fs::write(format!("/proc/{}/{file}", child.id()), text).expect(file);
    }
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        err.contains("cannot create a user namespace")
            && err.contains("user.max_user_namespaces")
            && err.contains("--sandbox=none"),
        "{err}"
    );
}

#[test]
fn sandbox_none_runs_without_namespaces() {
    // As root the process is chroot'ed into the root file system; as
    // anyone else it runs on the host (documented as unisolated).
    let root = is_root();
    let case = Case::new(
        Who::Me,
        &format!(
            "FROM {}\nRUN hostname > /hostname && ls / > /ls && test ! -e /proc/self\n",
            image()
        ),
    );
    if !root {
        let out = case.build(&["--sandbox", "none"]);
        assert!(
            !out.status.success(),
            "writing / on the host must fail without root"
        );
        return;
    }
    let out = case.build(&["--sandbox", "none", "-o", "out"]);
    assert!(out.status.success(), "{}", describe(&out));
    let dir = case.path().join("out");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    assert_eq!(
        read("hostname").trim(),
        nix::unistd::gethostname().unwrap().to_string_lossy()
    );
    // chroot: the image's root, no /proc mounted for it (the RUN checked
    // inside), and the host's hostname (no uts namespace).
    assert!(read("ls").lines().any(|l| l == "work"), "{}", read("ls"));
    assert!(!dir.join("proc").exists());
}

#[test]
fn each_run_is_one_image_layer_with_only_its_changes() {
    for who in modes() {
        let case = Case::new(
            who,
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo made > /made && /bin/busybox mkdir /d \
             && /bin/busybox chown 5:6 /d\"]\n",
        );
        std::fs::copy("/bin/busybox", case.path().join("busybox")).unwrap();
        if let Some((_, uid, gid)) = account(who) {
            std::os::unix::fs::chown(case.path().join("busybox"), Some(uid), Some(gid)).unwrap();
        }
        let out = case.build(&["-o", "type=oci,dest=image.tar"]);
        assert!(out.status.success(), "{who:?}: {}", describe(&out));
        let layout = case.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        let untar = Command::new("tar")
            .arg("xf")
            .arg(case.path().join("image.tar"))
            .arg("-C")
            .arg(&layout)
            .output()
            .unwrap();
        assert!(untar.status.success(), "{}", describe(&untar));
        let blob = |digest: &str| {
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let json = |path: PathBuf| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
        };
        let index = json(layout.join("index.json"));
        let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
        let layers: Vec<Vec<String>> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let list = Command::new("tar")
                    .args(["--numeric-owner", "-tvzf"])
                    .arg(blob(l["digest"].as_str().unwrap()))
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&list.stdout)
                    .lines()
                    .map(|line| {
                        let f: Vec<&str> = line.split_whitespace().collect();
                        format!("{} {}", f[1], f[5])
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            layers,
            vec![
                vec!["0/0 bin/".to_string(), "0/0 bin/busybox".to_string()],
                vec!["5/6 d/".to_string(), "0/0 made".to_string()],
            ],
            "{who:?}"
        );
    }
}

#[test]
fn without_a_subordinate_range_only_root_is_mapped() {
    if !is_root() || no_range_user().is_none() {
        eprintln!("skipping: needs root to create a user without a range");
        return;
    }
    let case = Case::new(
        Who::NoRange,
        &format!(
            "FROM {}\nRUN id > /id && echo x > /f && ! chown 5 /f 2>/dev/null\n",
            image()
        ),
    );
    let out = case.build(&["-o", "out"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        err.contains("WARNING: no subordinate id range for bk-norange-test"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(case.path().join("out/id")).unwrap(),
        "uid=0(root) gid=0(root) groups=0(root)\n"
    );
    // COPY --chown to an unmapped id fails up front, saying why.
    let case = Case::new(
        Who::NoRange,
        "FROM scratch\nCOPY --chown=5:5 Dockerfile /\n",
    );
    let err = String::from_utf8_lossy(&case.build(&[]).stderr).into_owned();
    assert!(err.contains("not mapped in bk's user namespace"), "{err}");
    // So does USER with an unmapped id.
    let case = Case::new(
        Who::NoRange,
        &format!("FROM {}\nUSER 5\nRUN true\n", image()),
    );
    let err = String::from_utf8_lossy(&case.build(&[]).stderr).into_owned();
    assert!(
        err.contains("id 5 is not mapped in bk's user namespace"),
        "{err}"
    );
}

#[test]
fn du_and_prune_measure_and_remove_what_run_made() {
    for who in modes() {
        // A directory only container uid 123 may enter: from outside bk's
        // user namespace its owner is a subordinate id of the user.
        let case = Case::new(
            who,
            &format!(
                "FROM {}\nRUN mkdir -m 700 /private && echo x > /private/f \
                 && chown -R 123:456 /private\n",
                image()
            ),
        );
        let out = case.build(&[]);
        assert!(out.status.success(), "{who:?}: {}", describe(&out));
        let du = case.bk(&["du"]).output().expect("run bk du");
        assert!(du.status.success(), "{who:?}: {}", describe(&du));
        assert!(
            String::from_utf8_lossy(&du.stdout).contains("Total:"),
            "{who:?}: {}",
            describe(&du)
        );
        let prune = case
            .bk(&["cache", "prune", "--all", "--force"])
            .output()
            .expect("run bk cache prune");
        assert!(prune.status.success(), "{who:?}: {}", describe(&prune));
        let left: Vec<_> = std::fs::read_dir(case.path().join(".bk-root/snapshots"))
            .expect("snapshots dir")
            .collect();
        assert!(left.is_empty(), "{who:?}: {left:?} left after prune --all");
    }
}
