//! A real registry that wants bearer tokens, as Docker Hub, GHCR and
//! most hosted registries do: `docker-registry` on 127.0.0.1 with TLS
//! (a CA made here) and `auth: token`, plus the token service it points
//! clients to — a small HTTP server in this test process, on another
//! 127.0.0.1 port, written here so what clients ask of it can be seen.
//!
//! The flow: the registry answers 401 with `WWW-Authenticate: Bearer
//! realm=…,service=…,scope=…`; the client asks the realm for a token
//! with basic credentials (or none) and the scopes it needs; the service
//! answers `{"token", "access_token", "expires_in"}` with a JWT; the
//! client retries with `Authorization: Bearer <jwt>`. The registry
//! accepts a JWT whose issuer and audience (the service) match its
//! config, that is in date, and whose RS256 signature verifies with the
//! certificate in its `x5c` header — which must chain to the
//! `rootcertbundle` (here the self-signed signing certificate itself).
//! Signatures are made with `openssl dgst -sha256 -sign`.
//!
//! What the service grants: [`USER`]/[`PASSWORD`] get the actions they
//! ask for (pull, push) on any repository; anonymous clients get pull on
//! repositories under `public/` and nothing else (an empty grant, which
//! the registry then refuses); wrong credentials get a 401. Every
//! request is recorded ([`TokenRegistry::requests`]).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::secure_registry::{
    free_host, make_tls, openssl, serve_tls, trust_ca, write_docker_config, TlsRegistry,
};

pub const USER: &str = "token-user";
pub const PASSWORD: &str = "t0ken-pw";
const SERVICE: &str = "bk-token-registry";
const ISSUER: &str = "bk-token-issuer";

/// One request to the token service.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The basic-auth user, `None` for an anonymous request.
    pub user: Option<String>,
    /// The `scope` parameters, e.g. `repository:app:pull,push`.
    pub scopes: Vec<String>,
    /// The HTTP status answered (200, or 401 for wrong credentials).
    pub status: u16,
    /// The client's `User-Agent`.
    pub agent: String,
}

pub struct TokenRegistry {
    /// `127.0.0.1:<port>` of the registry.
    pub host: String,
    dir: PathBuf,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    _watchdog: std::process::Child,
}

/// The shared token-auth registry, started on first use.
pub fn token_registry() -> &'static TokenRegistry {
    static REGISTRY: OnceLock<TokenRegistry> = OnceLock::new();
    REGISTRY.get_or_init(start)
}

fn start() -> TokenRegistry {
    let dir = tempfile::tempdir().expect("registry dir").keep();
    let host = free_host();
    make_tls(&dir);
    trust_ca(&dir, &host);
    write_docker_config(&dir.join("docker"), &host, USER, PASSWORD);
    // The token signing key and its self-signed certificate: the
    // registry's root bundle.
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
            "-subj",
            "/CN=bk token issuer",
        ],
    );
    openssl(
        &dir,
        &[
            "x509",
            "-in",
            "token.crt",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ],
    );
    let der = std::fs::read(dir.join("token.der")).expect("read token.der");
    let x5c = base64::engine::general_purpose::STANDARD.encode(der);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind token service");
    let realm = format!(
        "http://{}/token",
        listener.local_addr().expect("token service address")
    );
    let requests = Arc::new(Mutex::new(Vec::new()));
    let service = TokenService {
        key: dir.join("token.key"),
        x5c,
        requests: requests.clone(),
    };
    std::thread::spawn(move || {
        let service = Arc::new(service);
        for stream in listener.incoming().flatten() {
            let service = service.clone();
            std::thread::spawn(move || service.serve(stream));
        }
    });
    let auth = format!(
        "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        dir.join("token.crt").display()
    );
    let watchdog = serve_tls(&dir, &host, &auth);
    TokenRegistry {
        host,
        dir,
        requests,
        _watchdog: watchdog,
    }
}

impl TlsRegistry for TokenRegistry {
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

impl TokenRegistry {
    /// The token requests so far from anything but skopeo whose scopes
    /// name repository `repo`.
    pub fn requests_for(&self, repo: &str) -> Vec<TokenRequest> {
        let prefix = format!("repository:{repo}:");
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|r| r.scopes.iter().any(|s| s.starts_with(&prefix)))
            .filter(|r| !r.agent.contains("skopeo"))
            .cloned()
            .collect()
    }
}

struct TokenService {
    key: PathBuf,
    x5c: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenService {
    /// Answers one request on `stream`, then closes it.
    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let target = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut authorization = None;
        let mut agent = String::new();
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) if header.trim().is_empty() => break,
                Ok(_) => {}
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.trim().eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.trim().to_string());
                } else if name.trim().eq_ignore_ascii_case("user-agent") {
                    agent = value.trim().to_string();
                }
            }
        }
        let (status, body) = self.answer(&target, authorization.as_deref(), agent);
        let reason = if status == 200 { "OK" } else { "Unauthorized" };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = (&stream).write_all(response.as_bytes());
    }

    fn answer(&self, target: &str, authorization: Option<&str>, agent: String) -> (u16, String) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let params: Vec<(String, String)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect();
        let scopes: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string))
            .filter(|s| !s.is_empty())
            .collect();
        let user = authorization.and_then(|a| {
            let encoded = a.strip_prefix("Basic ")?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            Some((user.to_string(), password == PASSWORD && user == USER))
        });
        let status = match (&user, path) {
            (_, p) if p != "/token" => 404,
            (Some((_, false)), _) => 401,
            _ => 200,
        };
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(TokenRequest {
                user: user.as_ref().map(|(u, _)| u.clone()),
                scopes: scopes.clone(),
                status,
                agent,
            });
        if status != 200 {
            return (
                status,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication failed"}]}"#.into(),
            );
        }
        let subject = user.map(|(u, _)| u).unwrap_or_default();
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                let granted: Vec<&str> = actions
                    .split(',')
                    .filter(|a| match subject.as_str() {
                        "" => *a == "pull" && name.starts_with("public/"),
                        _ => matches!(*a, "pull" | "push"),
                    })
                    .collect();
                Some(serde_json::json!({"type": kind, "name": name, "actions": granted}))
            })
            .collect();
        let token = self.sign(&subject, access);
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": 300,
        });
        (200, body.to_string())
    }

    /// A JWT for `subject` granting `access`, RS256-signed, with the
    /// signing certificate in `x5c`.
    fn sign(&self, subject: &str, access: Vec<serde_json::Value>) -> String {
        static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("bk-{}", JTI.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            url.encode(header.to_string()),
            url.encode(claims.to_string())
        );
        let signature = rsa_sign(&self.key, input.as_bytes());
        format!("{input}.{}", url.encode(signature))
    }
}

/// `openssl dgst -sha256 -sign key` over `data`: a PKCS#1 v1.5 RSA
/// signature, what RS256 is.
fn rsa_sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child
        .stdin
        .take()
        .expect("openssl stdin")
        .write_all(data)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl dgst");
    assert!(out.status.success(), "openssl dgst -sign failed");
    out.stdout
}

/// Decodes `%XX` escapes and `+` (a form-encoded space).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
