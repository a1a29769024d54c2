//! A real `git daemon` on 127.0.0.1 serving the repositories under a
//! directory the test makes, a real OpenSSH server ([`Sshd`]) serving
//! them over ssh, and helpers to make those repositories.

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

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it
/// right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `ssh-keygen` to make a passphrase-less ed25519 key at `path`
/// (and `path.pub`).
pub fn ssh_keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bk-test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen (openssh-client)");
    assert!(out.status.success(), "ssh-keygen:\n{}", describe(&out));
}

/// A real OpenSSH server (Debian `openssh-server`) on 127.0.0.1, run as
/// root by the test with a host key it made and one authorized client
/// key ([`Sshd::key`]), key-only; killed when dropped. git reaches the
/// repositories by absolute path (`ssh://root@127.0.0.1:PORT/abs/repo`).
pub struct Sshd {
    child: Child,
    pub port: u16,
    /// The authorized client key (private; `.pub` beside it).
    pub key: PathBuf,
    /// A `known_hosts` file naming the server's host key.
    pub known_hosts: PathBuf,
    log: PathBuf,
}

impl Sshd {
    /// Starts the server with its files in `dir` (created).
    pub fn start(dir: &Path) -> Sshd {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the ssh tests run sshd, which must run as root"
        );
        std::fs::create_dir_all(dir).unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let host_key = dir.join("host_ed25519");
        let key = dir.join("client_ed25519");
        ssh_keygen(&host_key);
        ssh_keygen(&key);
        let authorized = dir.join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized).unwrap();
        let port = free_port();
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
        )
        .unwrap();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {host}\n\
                 PidFile none\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\n\
                 AuthenticationMethods publickey\n\
                 PermitRootLogin prohibit-password\n\
                 AuthorizedKeysFile {authorized}\n\
                 StrictModes no\n\
                 LogLevel VERBOSE\n",
                host = host_key.display(),
                authorized = authorized.display(),
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start /usr/sbin/sshd (openssh-server)");
        let mut sshd = Sshd {
            child,
            port,
            key,
            known_hosts,
            log,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return sshd;
            }
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!("sshd exited ({status}):\n{}", sshd.log());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("sshd did not listen on {port}:\n{}", sshd.log());
    }

    /// What the server logged (connections, accepted and refused keys).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An ssh client configuration (for `ssh -F`) reaching this server as
    /// root, also under the name `alias`, trusting its host key only,
    /// with `identity` as the only key file (`None`: keys from the agent
    /// alone).
    pub fn client_config(&self, path: &Path, alias: &str, identity: Option<&Path>) {
        let identity = match identity {
            Some(key) => format!("  IdentityFile {}\n", key.display()),
            // A missing file: ssh skips it, leaving the agent alone.
            None => format!(
                "  IdentityFile {}\n",
                self.key.with_extension("none").display()
            ),
        };
        let text = [
            format!("Host {alias}"),
            "  HostName 127.0.0.1".into(),
            format!("  Port {}", self.port),
            "  User root".into(),
            "Host *".into(),
            format!("  UserKnownHostsFile {}", self.known_hosts.display()),
            "  GlobalKnownHostsFile /dev/null".into(),
            "  StrictHostKeyChecking yes".into(),
            identity,
        ];
        std::fs::write(path, text.join("\n")).unwrap();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
