//! git over ssh against a real OpenSSH server started by each test on
//! 127.0.0.1 (key-only, its own host key): `bk build ssh://…#ref:sub`
//! and the scp-like `user@alias:path` (an ssh config `Host` alias) as
//! the build context, shown as `[internal] load git source` with the
//! user masked; `ADD` of an ssh URL authenticated by the build's
//! `--ssh default` agent (a socket, or key files bk serves), and refused
//! without it; and failures (a key the server refuses, an unknown host
//! key) that end quickly with an error naming the URL and ssh's reason
//! instead of prompting.
//!
//! The fetch of a remote main context (git or HTTP) is the first step
//! of the build's progress in every mode, with credentials masked.
//!
//! bk's ssh is pointed at the server the way a user would: an ssh config
//! passed through `GIT_SSH_COMMAND="ssh -F CONFIG"` (OpenSSH finds `~`
//! through the passwd entry, so the test cannot use a private home).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::add_http::Server;
use crate::git_util::{commit, git, init, ssh_keygen, Sshd};
use crate::util::{describe, BkCommand, Dir};

/// How long one bk run may take before the test calls it a hang.
const BOUND: Duration = Duration::from_secs(60);

/// A server and a bare repository it serves: `v1` has `Dockerfile`,
/// `a.txt` and `sub/` (its own Dockerfile and `b.txt` = "b v1"); `main`
/// changes `b.txt` to "b main".
struct Fixture {
    dir: Dir,
    sshd: Sshd,
    /// The bare repository's absolute path on the server.
    repo: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = Dir::new();
        let work = dir.path().join("work");
        init(&work);
        std::fs::write(work.join("Dockerfile"), "FROM scratch\nCOPY . /all/\n").unwrap();
        std::fs::create_dir_all(work.join("sub")).unwrap();
        std::fs::write(work.join("sub/Dockerfile"), "FROM scratch\nCOPY . /sub/\n").unwrap();
        commit(&work, "sub/b.txt", "b v1");
        commit(&work, "a.txt", "one");
        git(&work, &["tag", "v1"]);
        commit(&work, "sub/b.txt", "b main");
        let repo = dir.path().join("srv/repo.git");
        let out = Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(&work)
            .arg(&repo)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        let sshd = Sshd::start(&dir.path().join("sshd"));
        Fixture { dir, sshd, repo }
    }

    /// `ssh://root@127.0.0.1:PORT/abs/srv/repo.git`.
    fn url(&self) -> String {
        format!(
            "ssh://root@127.0.0.1:{}{}",
            self.sshd.port,
            self.repo.display()
        )
    }

    /// The URL as bk prints it: the user masked, as BuildKit masks it.
    fn shown_url(&self) -> String {
        format!(
            "ssh://xxxxx@127.0.0.1:{}{}",
            self.sshd.port,
            self.repo.display()
        )
    }

    /// Writes an ssh config `name` (alias `bkalias`) with `identity` as
    /// its key file and returns a bk command whose git uses it, with no
    /// agent of the test's environment.
    fn bk(&self, name: &str, identity: Option<&Path>) -> BkCommand {
        let config = self.dir.path().join(name);
        self.sshd.client_config(&config, "bkalias", identity);
        let mut cmd = self.dir.bk();
        cmd.env("GIT_SSH_COMMAND", format!("ssh -F {}", config.display()))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("GIT_SSH")
            .args(["build", "--progress", "plain"]);
        cmd
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join(rel)).ok()
    }
}

/// Runs `cmd` to completion, failing the test if it takes longer than
/// [`BOUND`] (a prompt or a hang) after killing it.
fn bounded(cmd: BkCommand, dir: &Dir) -> Output {
    let mut cmd = cmd.into_command();
    let (out, err) = (dir.path().join("bk.out"), dir.path().join("bk.err"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn bk");
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bk still ran after {BOUND:?}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn failed(out: Output) -> String {
    assert!(!out.status.success(), "bk succeeded:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ssh_url_and_scp_alias_as_build_context() {
    let fx = Fixture::new();
    let key = fx.sshd.key.clone();

    // ssh://…#tag:sub: that tag's sub-directory, with its Dockerfile.
    let mut cmd = fx.bk("config", Some(&key));
    cmd.args(["-o", "out1"])
        .arg_path(Path::new(&format!("{}#v1:sub", fx.url())));
    let log = ok(bounded(cmd, &fx.dir));
    assert_eq!(fx.read("out1/sub/b.txt").as_deref(), Some("b v1"), "{log}");
    assert!(fx.read("out1/sub/a.txt").is_none(), "{log}");
    // Shown as a step of its own, its URL without the user.
    let step = format!("[internal] load git source {}#v1:sub", fx.shown_url());
    let line = log
        .lines()
        .find(|l| l.ends_with(&step))
        .unwrap_or_else(|| panic!("no {step:?} step:\n{log}"));
    let number = line.split_whitespace().next().unwrap();
    assert!(
        log.lines()
            .any(|l| l.starts_with(&format!("{number} DONE"))),
        "{log}"
    );
    assert!(!log.contains("root@"), "{log}");
    // The server saw the key: the fetch really went over ssh.
    assert!(
        fx.sshd.log().contains("Accepted publickey for root"),
        "{}",
        fx.sshd.log()
    );

    // The scp-like form through the config's `Host` alias: the default
    // branch, the whole repository.
    let scp = format!("root@bkalias:{}", fx.repo.display());
    let mut cmd = fx.bk("config", Some(&key));
    cmd.args(["-o", "out2"]).arg_path(Path::new(&scp));
    let log = ok(bounded(cmd, &fx.dir));
    assert_eq!(fx.read("out2/all/a.txt").as_deref(), Some("one"), "{log}");
    assert_eq!(fx.read("out2/all/sub/b.txt").as_deref(), Some("b main"));
    assert!(
        log.contains(&format!("[internal] load git source {scp}")),
        "{log}"
    );

    // The same commit again: the checkout comes from the build cache.
    let mut cmd = fx.bk("config", Some(&key));
    cmd.args(["-o", "out3"]).arg_path(Path::new(&scp));
    let log = ok(bounded(cmd, &fx.dir));
    assert!(log.contains("CACHED"), "{log}");
    assert_eq!(fx.read("out3/all/sub/b.txt").as_deref(), Some("b main"));
}

/// An `ssh-agent` of the test's own on `socket`, holding `key`; killed
/// when dropped.
struct Agent(std::process::Child);

impl Agent {
    fn start(socket: &Path, key: &Path) -> Agent {
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let agent = Agent(child);
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-add:\n{}", describe(&out));
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn add_over_ssh_uses_the_builds_agent() {
    let fx = Fixture::new();
    let socket = fx.dir.path().join("agent.sock");
    let _agent = Agent::start(&socket, &fx.sshd.key);
    fx.dir.create(
        "ctx/Dockerfile",
        &format!("FROM scratch\nADD {}#v1 /src\n", fx.url()),
    );
    let build = |out: &str, ssh: Option<String>| {
        // The ssh config names no usable key: only an agent can log in.
        let mut cmd = fx.bk("agent-config", None);
        cmd.args(["-o", out]);
        if let Some(ssh) = ssh {
            cmd.args(["--ssh", &ssh, "--no-cache"]);
        }
        cmd.arg_path(Path::new("ctx"));
        bounded(cmd, &fx.dir)
    };

    // Without --ssh, git has no agent (none is inherited) and no key.
    let log = failed(build("out0", None));
    assert!(log.contains("Permission denied"), "{log}");
    assert!(log.contains(&fx.shown_url()), "{log}");

    // --ssh default=SOCKET: the test's agent, reached through bk's.
    let log = ok(build("out1", Some(format!("default={}", socket.display()))));
    assert_eq!(fx.read("out1/src/a.txt").as_deref(), Some("one"), "{log}");
    assert_eq!(fx.read("out1/src/sub/b.txt").as_deref(), Some("b v1"));
    assert!(!fx.dir.path().join("out1/src/.git").exists());

    // --ssh default=KEYFILE: an agent bk starts for the key.
    let key = fx.sshd.key.display().to_string();
    let log = ok(build("out2", Some(format!("default={key}"))));
    assert_eq!(fx.read("out2/src/a.txt").as_deref(), Some("one"), "{log}");

    // --ssh default (from SSH_AUTH_SOCK) for a named context over ssh.
    fx.dir.create(
        "named/Dockerfile",
        "FROM scratch\nCOPY --from=repo sub/b.txt /b.txt\n",
    );
    let mut cmd = fx.bk("agent-config", None);
    cmd.env("SSH_AUTH_SOCK", &socket)
        .args(["--ssh", "default", "-o", "out3"])
        .args(["--build-context", &format!("repo={}#v1", fx.url())])
        .arg_path(Path::new("named"));
    let log = ok(bounded(cmd, &fx.dir));
    assert_eq!(fx.read("out3/b.txt").as_deref(), Some("b v1"), "{log}");
}

#[test]
fn ssh_failures_are_clear_and_never_prompt() {
    let fx = Fixture::new();
    let context = format!("{}#v1", fx.url());

    // A key the server does not know.
    let wrong = fx.dir.path().join("wrong_ed25519");
    ssh_keygen(&wrong);
    let mut cmd = fx.bk("wrong-key", Some(&wrong));
    cmd.args(["-o", "out"]).arg_path(Path::new(&context));
    let log = failed(bounded(cmd, &fx.dir));
    assert!(log.contains(&fx.shown_url()), "{log}");
    assert!(log.contains("Permission denied (publickey)"), "{log}");
    assert!(!log.contains("root@127"), "{log}");
    assert!(!fx.dir.path().join("out").exists());

    // A host key nobody vouched for: refused, not asked about (ssh would
    // prompt on a terminal without BatchMode).
    let mut cmd = fx.bk("unknown-host", Some(&fx.sshd.key));
    std::fs::write(&fx.sshd.known_hosts, "").unwrap();
    cmd.args(["-o", "out"]).arg_path(Path::new(&context));
    let log = failed(bounded(cmd, &fx.dir));
    assert!(log.contains(&fx.shown_url()), "{log}");
    assert!(log.contains("Host key verification failed"), "{log}");
}

#[test]
fn remote_context_fetch_is_the_first_step_of_the_build() {
    let dir = Dir::new();
    let work = dir.path().join("work");
    init(&work);
    std::fs::write(work.join("Dockerfile"), "FROM scratch\nCOPY . /all/\n").unwrap();
    commit(&work, "a.txt", "one");
    git(&work, &["tag", "v1"]);
    let bare = dir.path().join("srv/repo.git");
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    git(&bare, &["update-server-info"]);
    let out = Command::new("tar")
        .arg("-cf")
        .arg(dir.path().join("srv/ctx.tar"))
        .arg("-C")
        .arg(&work)
        .args(["Dockerfile", "a.txt"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let server = Server::start(&dir);
    let with_password = |path: &str| server.url(path).replace("://", "://me:s3cret@");
    let build = |progress: &str, out: &str, context: &str| {
        let mut cmd = dir.bk();
        cmd.args(["build", "--progress", progress, "-o", out])
            .arg_path(Path::new(context));
        bounded(cmd, &dir)
    };

    // rawjson: the git fetch is the first vertex of the one stream.
    let git_url = with_password("/repo.git#v1");
    let log = ok(build("rawjson", "out1", &git_url));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out1/all/a.txt")).unwrap(),
        "one"
    );
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shown = format!(
        "[internal] load git source {}",
        git_url.replace("me:s3cret", "xxxxx:xxxxx")
    );
    assert_eq!(events[0]["type"], "vertex_started", "{log}");
    assert_eq!(events[0]["name"], shown.as_str(), "{log}");
    assert_eq!(events[1]["type"], "vertex_completed", "{log}");
    assert_eq!(events[1]["digest"], events[0]["digest"], "{log}");
    let done = events.iter().filter(|e| e["type"] == "done").count();
    assert_eq!(done, 1, "{log}");
    assert_eq!(events.last().unwrap()["type"], "done", "{log}");
    assert!(!log.contains("s3cret"), "{log}");

    // plain: the download is step #1, the build's steps follow it.
    let log = ok(build("plain", "out2", &with_password("/ctx.tar")));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out2/all/a.txt")).unwrap(),
        "one"
    );
    assert!(
        log.starts_with("#1 [internal] load remote build context\n"),
        "{log}"
    );
    assert!(log.contains("\n#1 DONE "), "{log}");
    assert!(log.contains("\n#2 "), "{log}");
    assert!(!log.contains("s3cret"), "{log}");

    // quiet: nothing.
    let log = ok(build("quiet", "out3", &git_url));
    assert!(!log.contains("load git source"), "{log}");
}
