//! `--ssh`: SSH agents a `RUN --mount=type=ssh` may use, forwarded
//! read-only (BuildKit's `sshprovider`).
//!
//! An id names either an agent socket (`--ssh default` takes
//! `$SSH_AUTH_SOCK`; `--ssh id=/path/to/socket`) or key files (`--ssh
//! id=~/.ssh/id_ed25519[,more]`), which are served by an `ssh-agent`
//! started the first time a step needs them and killed when the
//! [`SshAgents`] is dropped.
//!
//! A step never sees the upstream socket itself: [`SshAgents::forward`]
//! opens a new socket in a private directory and relays only the two
//! requests a client needs (list identities, sign), answering every
//! other request (adding or removing keys, locking, extensions) with a
//! failure, as BuildKit's read-only agent does. This also lets a process
//! of any user id in the sandbox use an agent that checks its peer's uid.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{PrivateDir, SessionError};

/// OpenSSH's limit on one agent message.
const MAX_MESSAGE: usize = 256 * 1024;
const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENTC_SIGN_REQUEST: u8 = 13;

/// What an id forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSource {
    /// A running agent's socket.
    Socket(PathBuf),
    /// Private key files, served by an `ssh-agent` of our own.
    Keys(Vec<PathBuf>),
}

/// The build's SSH agents by id.
#[derive(Debug, Default)]
pub struct SshAgents {
    by_id: BTreeMap<String, Upstream>,
}

#[derive(Debug)]
struct Upstream {
    source: AgentSource,
    /// For key files: the agent serving them, started on first use.
    spawned: Mutex<Option<Result<Arc<SpawnedAgent>, String>>>,
}

impl SshAgents {
    /// Checks `specs` (id, paths) as BuildKit does when the build starts:
    /// no paths (or id `default` alone) means `auth_sock`, the caller's
    /// `$SSH_AUTH_SOCK`; a path that is a socket is an agent, anything
    /// else a key file (which must exist); one socket at most, never
    /// mixed with keys; ids are unique.
    pub fn new(
        specs: impl IntoIterator<Item = (String, Vec<PathBuf>)>,
        auth_sock: Option<PathBuf>,
    ) -> Result<SshAgents, SessionError> {
        let mut by_id = BTreeMap::new();
        for (id, paths) in specs {
            let id = if id.is_empty() { "default".into() } else { id };
            if by_id.contains_key(&id) {
                return Err(SessionError::DuplicateSshId(id));
            }
            let source = if paths.is_empty() {
                match auth_sock.clone().filter(|p| !p.as_os_str().is_empty()) {
                    Some(sock) => AgentSource::Socket(sock),
                    None => return Err(SessionError::NoAgentSocket(id)),
                }
            } else {
                classify(&id, paths)?
            };
            by_id.insert(
                id,
                Upstream {
                    source,
                    spawned: Mutex::new(None),
                },
            );
        }
        Ok(SshAgents { by_id })
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// What `id` forwards, if the user gave it.
    pub fn source(&self, id: &str) -> Option<&AgentSource> {
        self.by_id.get(id).map(|u| &u.source)
    }

    /// A fresh socket forwarding to agent `id`, in its own private
    /// directory, with permission bits `mode`; `None` when the user gave
    /// no such id. Starts the key agent on first use. Blocking.
    pub fn forward(&self, id: &str, mode: u32) -> Result<Option<SshForward>, SessionError> {
        let Some(upstream) = self.by_id.get(id) else {
            return Ok(None);
        };
        let (socket, agent) = match &upstream.source {
            AgentSource::Socket(path) => (path.clone(), None),
            AgentSource::Keys(keys) => {
                let mut spawned = upstream
                    .spawned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let agent = match &*spawned {
                    Some(Ok(agent)) => agent.clone(),
                    Some(Err(message)) => {
                        return Err(SessionError::AgentFailed {
                            id: id.into(),
                            message: message.clone(),
                        })
                    }
                    None => match SpawnedAgent::start(id, keys) {
                        Ok(agent) => {
                            let agent = Arc::new(agent);
                            *spawned = Some(Ok(agent.clone()));
                            agent
                        }
                        Err(e) => {
                            *spawned = Some(Err(e.to_string()));
                            return Err(e);
                        }
                    },
                };
                (agent.socket(), Some(agent))
            }
        };
        SshForward::start(id, socket, mode, agent).map(Some)
    }
}

fn classify(id: &str, paths: Vec<PathBuf>) -> Result<AgentSource, SessionError> {
    let mut socket = None;
    let mut keys = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(&path).map_err(|e| SessionError::StatSshPath {
            id: id.into(),
            path: path.clone(),
            source: e,
        })?;
        if meta.file_type().is_socket() {
            if socket.is_some() {
                return Err(SessionError::MixedSshPaths { id: id.into() });
            }
            socket = Some(path);
        } else {
            keys.push(path);
        }
    }
    match socket {
        Some(_) if !keys.is_empty() => Err(SessionError::MixedSshPaths { id: id.into() }),
        Some(sock) => Ok(AgentSource::Socket(sock)),
        None => Ok(AgentSource::Keys(keys)),
    }
}

/// An `ssh-agent` process holding the key files of one id.
///
/// It is started as `ssh-agent -a SOCKET cat` with `cat` reading a pipe
/// only this process writes to: `ssh-agent` runs `cat` as its command
/// and exits once that command is gone, and `cat` ends when the pipe
/// closes — when this value is dropped, or when `bk` dies in any way, so
/// an agent holding the user's keys never outlives the build.
#[derive(Debug)]
struct SpawnedAgent {
    child: Mutex<Child>,
    /// Closing it ends `cat`, then the agent.
    lifeline: Mutex<Option<std::process::ChildStdin>>,
    dir: PrivateDir,
}

impl SpawnedAgent {
    fn start(id: &str, keys: &[PathBuf]) -> Result<SpawnedAgent, SessionError> {
        let start_err = |source| SessionError::StartAgent {
            id: id.into(),
            source,
        };
        let dir = PrivateDir::new("bk-agent-").map_err(start_err)?;
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-a")
            .arg(&socket)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(start_err)?;
        let lifeline = child.stdin.take();
        let agent = SpawnedAgent {
            child: Mutex::new(child),
            lifeline: Mutex::new(lifeline),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                return Err(SessionError::AgentSocket {
                    id: id.into(),
                    path: socket,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = Command::new("ssh-add")
            .arg("-q")
            .args(keys)
            .env("SSH_AUTH_SOCK", &socket)
            // Never prompt for a passphrase: there is no one to answer.
            .env("SSH_ASKPASS_REQUIRE", "never")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| SessionError::RunSshAdd {
                id: id.into(),
                source: e,
            })?;
        if !out.status.success() {
            return Err(SessionError::AddKeys {
                id: id.into(),
                paths: keys.iter().map(|k| k.display().to_string()).collect(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(agent)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }
}

impl Drop for SpawnedAgent {
    fn drop(&mut self) {
        drop(
            self.lifeline
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        // Our own child (`cat`, by its pid): stop and reap it; the agent
        // sees its command gone and exits.
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A socket forwarding read-only to an agent, for one step; dropping it
/// stops accepting and removes the socket's directory.
#[derive(Debug)]
pub struct SshForward {
    dir: PrivateDir,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Keeps a spawned key agent alive while this forward is.
    _agent: Option<Arc<SpawnedAgent>>,
}

impl SshForward {
    fn start(
        id: &str,
        upstream: PathBuf,
        mode: u32,
        agent: Option<Arc<SpawnedAgent>>,
    ) -> Result<SshForward, SessionError> {
        let dir = PrivateDir::new("bk-ssh-").map_err(|e| SessionError::Listen {
            id: id.into(),
            path: std::env::temp_dir(),
            source: e,
        })?;
        let socket = dir.path().join("ssh_agent.sock");
        let listen_err = |e| SessionError::Listen {
            id: id.into(),
            path: socket.clone(),
            source: e,
        };
        let listener = UnixListener::bind(&socket).map_err(listen_err)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode & 0o777))
            .map_err(listen_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ssh-forward-{id}"))
            .spawn(move || accept_loop(listener, upstream, stop2))
            .map_err(listen_err)?;
        Ok(SshForward {
            dir,
            socket,
            stop,
            thread: Some(thread),
            _agent: agent,
        })
    }

    /// The socket to bind into the sandbox.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The private directory holding the socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SshForward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: UnixListener, upstream: PathBuf, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let upstream = upstream.clone();
        // One thread per client connection; it ends when the client
        // closes (at the latest when the sandbox's processes are gone).
        let _ = std::thread::Builder::new()
            .name("ssh-forward-conn".into())
            .spawn(move || {
                let _ = relay(conn, &upstream);
            });
    }
}

/// Serves one client: each request is checked, then passed to the
/// upstream agent and its one reply passed back (the agent protocol is
/// strictly request, reply).
fn relay(mut client: UnixStream, upstream: &Path) -> io::Result<()> {
    let mut agent: Option<UnixStream> = None;
    while let Some(request) = read_message(&mut client)? {
        let allowed = matches!(
            request.first(),
            Some(&SSH_AGENTC_REQUEST_IDENTITIES | &SSH_AGENTC_SIGN_REQUEST)
        );
        if !allowed {
            write_message(&mut client, &[SSH_AGENT_FAILURE])?;
            continue;
        }
        let conn = match &mut agent {
            Some(conn) => conn,
            None => agent.insert(UnixStream::connect(upstream)?),
        };
        write_message(conn, &request)?;
        match read_message(conn)? {
            Some(reply) => write_message(&mut client, &reply)?,
            None => return Ok(()),
        }
    }
    Ok(())
}

/// One length-prefixed message; `None` at a clean end of stream.
fn read_message(stream: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("agent message of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(Some(body))
}

fn write_message(stream: &mut UnixStream, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "agent message too long"))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    stream.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keygen(dir: &Path, name: &str) -> PathBuf {
        let key = dir.join(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen (openssh-client) is needed by this test");
        assert!(out.status.success(), "{out:?}");
        key
    }

    fn ssh_add_list(socket: &Path) -> std::process::Output {
        Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", socket)
            .output()
            .unwrap()
    }

    #[test]
    fn serves_key_files_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "k1");
        let agents = SshAgents::new([("gh".to_string(), vec![key.clone()])], None).unwrap();
        assert_eq!(
            agents.source("gh"),
            Some(&AgentSource::Keys(vec![key.clone()]))
        );
        let fwd = agents.forward("gh", 0o600).unwrap().unwrap();
        let mode = std::fs::symlink_metadata(fwd.socket())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let listed = ssh_add_list(fwd.socket());
        assert!(listed.status.success(), "{listed:?}");
        let fingerprint = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&key)
            .output()
            .unwrap();
        let fp = String::from_utf8_lossy(&fingerprint.stdout);
        let fp = fp.split_whitespace().nth(1).unwrap();
        assert!(String::from_utf8_lossy(&listed.stdout).contains(fp));
        // Removing keys through the forward is refused.
        let del = Command::new("ssh-add")
            .arg("-D")
            .env("SSH_AUTH_SOCK", fwd.socket())
            .output()
            .unwrap();
        assert!(!del.status.success(), "{del:?}");
        assert!(ssh_add_list(fwd.socket()).status.success());
        // A second forward shares the agent; dropping one keeps the other.
        let fwd2 = agents.forward("gh", 0o644).unwrap().unwrap();
        let dir1 = fwd.dir().to_path_buf();
        drop(fwd);
        assert!(!dir1.exists());
        assert!(ssh_add_list(fwd2.socket()).status.success());
        assert!(agents.forward("other", 0o600).unwrap().is_none());
    }

    #[test]
    fn forwards_an_agent_socket() {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "k2");
        let keyed = SshAgents::new([("k".to_string(), vec![key])], None).unwrap();
        let fwd = keyed.forward("k", 0o600).unwrap().unwrap();
        // `default` from $SSH_AUTH_SOCK, here the forward made above.
        let agents =
            SshAgents::new([("default".to_string(), vec![])], Some(fwd.socket().into())).unwrap();
        let fwd2 = agents.forward("default", 0o600).unwrap().unwrap();
        let listed = ssh_add_list(fwd2.socket());
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains("k2"),
            "{listed:?}"
        );
    }

    #[test]
    fn checked_when_the_build_starts() {
        let err = SshAgents::new([("default".to_string(), vec![])], None).unwrap_err();
        assert!(err.to_string().contains("SSH_AUTH_SOCK"), "{err}");
        let err = SshAgents::new([("x".to_string(), vec!["/no/such/key".into()])], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("ssh x: failed to stat `/no/such/key`"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "x").unwrap();
        let dup = SshAgents::new(
            [
                ("a".to_string(), vec![key.clone()]),
                ("a".to_string(), vec![key]),
            ],
            None,
        );
        assert!(matches!(dup, Err(SessionError::DuplicateSshId(_))));
    }

    #[test]
    fn a_bad_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("not-a-key");
        std::fs::write(&key, "garbage").unwrap();
        let agents = SshAgents::new([("bad".to_string(), vec![key])], None).unwrap();
        let err = agents.forward("bad", 0o600).unwrap_err().to_string();
        assert!(err.starts_with("ssh bad: ssh-add could not load"), "{err}");
        // Reported again, not retried, on the next step.
        let err = agents.forward("bad", 0o600).unwrap_err().to_string();
        assert!(err.contains("failed to start earlier"), "{err}");
    }
}
