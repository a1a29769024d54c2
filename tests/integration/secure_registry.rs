//! A second real registry for the push tests: `docker-registry` on
//! 127.0.0.1 speaking TLS with a certificate from a CA made here with the
//! openssl CLI, and requiring htpasswd (bcrypt, `htpasswd -Bbn`) basic
//! auth. Started once per test binary, stopped by a watchdog shell when
//! the binary exits. The CA goes into a certs.d tree (`certs_dir`) for
//! `BK_CERTS_DIR` and skopeo's `--cert-dir`; the credentials into a
//! Docker config directory (`docker_config`) for `DOCKER_CONFIG`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const USER: &str = "pusher";
pub const PASSWORD: &str = "s3cret-pw";

pub struct SecureRegistry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    dir: PathBuf,
    _watchdog: std::process::Child,
}

/// The shared TLS + auth registry, started on first use. Panics (failing
/// the test) with the reason if it cannot start.
pub fn secure_registry() -> &'static SecureRegistry {
    static REGISTRY: OnceLock<SecureRegistry> = OnceLock::new();
    REGISTRY.get_or_init(start)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

fn start() -> SecureRegistry {
    let dir = tempfile::tempdir().expect("registry dir").keep();
    let host = free_host();
    make_tls(&dir);
    let out = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .expect("run htpasswd (install the apache2-utils package)");
    assert!(out.status.success(), "htpasswd failed");
    std::fs::write(dir.join("htpasswd"), &out.stdout).expect("write htpasswd");
    trust_ca(&dir, &host);
    write_docker_config(&dir.join("docker"), &host, USER, PASSWORD);
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: bk-test\n    path: {}\n",
        dir.join("htpasswd").display()
    );
    let watchdog = serve_tls(&dir, &host, &auth);
    SecureRegistry {
        host,
        dir,
        _watchdog: watchdog,
    }
}

/// `127.0.0.1:<a free port>`.
pub fn free_host() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// Makes a CA (`ca.crt`) and a server certificate for 127.0.0.1 signed
/// by it (`server.crt`, `server.key`) in `dir`.
pub fn make_tls(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=bk test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-new", "-nodes"];
    csr.extend_from_slice(&ec);
    csr.extend_from_slice(&[
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// Puts `dir/ca.crt` into the certs.d tree `dir/certs.d/<host>/`.
pub fn trust_ca(dir: &Path, host: &str) {
    let certs = dir.join("certs.d").join(host);
    std::fs::create_dir_all(&certs).expect("certs.d");
    std::fs::copy(dir.join("ca.crt"), certs.join("ca.crt")).expect("copy CA");
}

/// Starts `docker-registry` on `host` with TLS from [`make_tls`], storage
/// and log (`registry.log`) in `dir` and the YAML `auth` section given;
/// waits until it listens. The returned watchdog shell stops it when
/// this process is gone.
pub fn serve_tls(dir: &Path, host: &str, auth: &str) -> std::process::Child {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n\
             {auth}\
             http:\n  addr: {host}\n  tls:\n    certificate: {crt}\n    key: {key}\n",
            storage = dir.join("storage").display(),
            crt = dir.join("server.crt").display(),
            key = dir.join("server.key").display(),
        ),
    )
    .expect("write registry config");
    crate::registry_util::serve(&config, dir, host)
}

/// Writes `<dir>/config.json` with basic credentials for `host`.
pub fn write_docker_config(dir: &Path, host: &str, user: &str, password: &str) {
    use base64::Engine as _;
    std::fs::create_dir_all(dir).expect("docker config dir");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({"auths": {host: {"auth": auth}}});
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config.json");
}

/// What the TLS registries of the tests (basic auth here, bearer
/// tokens in `token_registry`) offer a test: their CA, credentials and
/// log, all kept under their directory.
pub trait TlsRegistry {
    /// `127.0.0.1:<port>`.
    fn host(&self) -> &str;
    /// Where the registry keeps its certificates, config and log.
    fn dir(&self) -> &Path;
    /// The user and password it accepts.
    fn credentials(&self) -> (&'static str, &'static str);

    /// The certs.d tree trusting the registry's CA (for `BK_CERTS_DIR`).
    fn certs_dir(&self) -> PathBuf {
        self.dir().join("certs.d")
    }

    /// The directory with the CA for skopeo's `--cert-dir`.
    fn host_certs(&self) -> PathBuf {
        self.certs_dir().join(self.host())
    }

    /// A Docker config directory with the right credentials.
    fn docker_config(&self) -> PathBuf {
        self.dir().join("docker")
    }

    /// `user:password` for skopeo's `--creds`.
    fn creds(&self) -> String {
        let (user, password) = self.credentials();
        format!("{user}:{password}")
    }

    /// The registry's log so far (access lines included).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("registry.log")).unwrap_or_default()
    }
}

impl TlsRegistry for SecureRegistry {
    fn host(&self) -> &str {
        &self.host
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn credentials(&self) -> (&'static str, &'static str) {
        (USER, PASSWORD)
    }
}
