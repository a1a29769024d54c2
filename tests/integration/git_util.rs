//! A real `git daemon` on 127.0.0.1 serving the repositories under a
//! directory the test makes, and helpers to make those repositories.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::util::describe;

/// The daemon, killed when dropped.
pub struct Daemon {
    child: Child,
    pub port: u16,
    /// Its `--verbose` log: one `Request upload-pack` line per
    /// `ls-remote` or fetch.
    log: PathBuf,
}

impl Daemon {
    /// Serves every repository below `base` (`git://127.0.0.1:PORT/NAME`).
    pub fn start(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = base.with_extension("daemon.log");
        // The daemon binary itself, not `git daemon`: the `git` wrapper
        // would be the child killed on drop, leaving the daemon running.
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8_lossy(&exec_path.stdout)
            .trim()
            .to_string();
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg("--verbose")
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg(format!("--base-path={}", base.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start git daemon");
        // Killed by `Drop` even if it never listens.
        let daemon = Daemon { child, port, log };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return daemon;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("git daemon did not listen on {port}");
    }

    /// The URL of the repository `repo` below the base.
    pub fn url_of(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    /// How many times `repo` was asked for (`ls-remote` or fetch).
    pub fn requests(&self, repo: &str) -> usize {
        let wanted = format!("Request upload-pack for '/{repo}'");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.ends_with(&wanted))
            .count()
    }

    /// The URL of `repo`, the repository most tests make.
    pub fn url(&self) -> String {
        self.url_of("repo")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `git args…` in `repo`, returning its trimmed output.
pub fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A new repository at `repo` on branch `main`.
pub fn init(repo: &Path) {
    std::fs::create_dir_all(repo).unwrap();
    git(repo, &["init", "-q", "-b", "main"]);
}

/// Writes `file` and commits everything; returns the commit id.
pub fn commit(repo: &Path, file: &str, text: &str) -> String {
    let path = repo.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", text]);
    git(repo, &["rev-parse", "HEAD"])
}
