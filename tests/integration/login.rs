//! `bk login` / `bk logout` against the real TLS + htpasswd registry of
//! `secure_registry` (basic auth) and the token registry of
//! `token_registry` (bearer tokens): credentials are checked by the
//! registry, saved in a Docker config directory of the test's own (or
//! through a credential helper script), and a `bk build --push` of a
//! `FROM scratch` image then needs them.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::secure_registry::{self, secure_registry, TlsRegistry};
use crate::token_registry::{self, token_registry};
use crate::util::{describe, Dir};

/// A context whose build needs no base image.
fn context() -> Dir {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n");
    dir.create("ctx/a.txt", "login\n");
    dir
}

/// `bk ARGS` with `certs` trusted, `config` as DOCKER_CONFIG and `path`
/// in front of PATH; `stdin` piped in.
fn bk(
    dir: &Dir,
    certs: &Path,
    config: &Path,
    path: Option<&Path>,
    args: &[&str],
    stdin: &[u8],
) -> Output {
    let mut cmd = dir.bk();
    cmd.env("BK_CERTS_DIR", certs)
        .env("DOCKER_CONFIG", config)
        .args(args);
    if let Some(path) = path {
        let old = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{old}", path.display()));
    }
    cmd.stdin_bytes(stdin)
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1:\n{}",
        describe(out)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // Shown with --nocapture: the messages users get.
    eprintln!("bk said: {}", err.lines().last().unwrap_or_default());
    err
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("config.json")).expect("JSON")
}

fn push(dir: &Dir, certs: &Path, config: &Path, path: Option<&Path>, image: &str) -> Output {
    bk(
        dir,
        certs,
        config,
        path,
        &["build", "--progress=plain", "--push", "-t", image, "ctx"],
        b"",
    )
}

#[test]
fn login_checks_saves_and_logout_removes_basic_auth_credentials() {
    let reg = secure_registry();
    let dir = context();
    let certs = reg.certs_dir();
    let config_dir = dir.path().join("docker");
    let config = config_dir.join("config.json");
    std::fs::create_dir_all(&config_dir).unwrap();
    let before = r#"{"psFormat":"table {{.ID}}","auths":{"other.example:5000":{"auth":"eDp5"}}}"#;
    std::fs::write(&config, before).unwrap();
    let host = reg.host.as_str();
    let image = format!("{host}/login-basic:v1");
    let user = secure_registry::USER;

    // Without credentials the push is refused.
    let err = fails(&push(&dir, &certs, &config_dir, None, &image));
    assert!(err.contains("unauthorized"), "{err}");

    // A wrong password: exit 1, the registry named, nothing written.
    let out = bk(
        &dir,
        &certs,
        &config_dir,
        None,
        &["login", "-u", user, "--password-stdin", host],
        b"wrong\n",
    );
    let err = fails(&out);
    assert!(
        err.contains(&format!("Error response from registry {host}")),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    // No password and no terminal to ask on.
    let err = fails(&bk(
        &dir,
        &certs,
        &config_dir,
        None,
        &["login", "-u", user, host],
        b"",
    ));
    assert!(err.contains("no password"), "{err}");

    let pw = format!("{}\n", secure_registry::PASSWORD);
    let out = ok(&bk(
        &dir,
        &certs,
        &config_dir,
        None,
        &["login", "-u", user, "--password-stdin", host],
        pw.as_bytes(),
    ));
    assert!(out.contains("Login Succeeded"), "{out}");
    let json = read_json(&config);
    assert_eq!(json["psFormat"], "table {{.ID}}", "{json}");
    assert_eq!(
        json["auths"]["other.example:5000"]["auth"], "eDp5",
        "{json}"
    );
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{user}:{}", secure_registry::PASSWORD));
    assert_eq!(json["auths"][host]["auth"], expected.as_str(), "{json}");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    ok(&push(&dir, &certs, &config_dir, None, &image));

    // -p works too, with Docker's warning.
    let out = bk(
        &dir,
        &certs,
        &config_dir,
        None,
        &["login", "-u", user, "-p", secure_registry::PASSWORD, host],
        b"",
    );
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--password-stdin"),
        "{}",
        describe(&out)
    );

    let out = ok(&bk(&dir, &certs, &config_dir, None, &["logout", host], b""));
    assert!(
        out.contains(&format!("Removing login credentials for {host}")),
        "{out}"
    );
    let json = read_json(&config);
    assert_eq!(
        json["auths"],
        serde_json::json!({"other.example:5000": {"auth": "eDp5"}}),
        "{json}"
    );
    assert_eq!(json["psFormat"], "table {{.ID}}");
    let out = ok(&bk(&dir, &certs, &config_dir, None, &["logout", host], b""));
    assert!(out.contains(&format!("Not logged in to {host}")), "{out}");

    let err = fails(&push(&dir, &certs, &config_dir, None, &image));
    assert!(err.contains("unauthorized"), "{err}");
}

#[test]
fn login_to_a_token_registry_goes_through_its_token_service() {
    let reg = token_registry();
    let dir = context();
    let certs = reg.certs_dir();
    // A config directory that does not exist yet: made 0700.
    let config_dir = dir.path().join("new/docker");
    let host = reg.host.as_str();
    let user = token_registry::USER;

    let err = fails(&bk(
        &dir,
        &certs,
        &config_dir,
        None,
        &["login", "-u", user, "--password-stdin", host],
        b"nope",
    ));
    assert!(
        err.contains(&format!("Error response from registry {host}")),
        "{err}"
    );
    assert!(!config_dir.join("config.json").exists());

    let out = ok(&bk(
        &dir,
        &certs,
        &config_dir,
        None,
        &["login", "-u", user, "--password-stdin", host],
        token_registry::PASSWORD.as_bytes(),
    ));
    assert!(out.contains("Login Succeeded"), "{out}");
    let mode = std::fs::metadata(&config_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    ok(&push(
        &dir,
        &certs,
        &config_dir,
        None,
        &format!("{host}/login-token:v1"),
    ));
}

/// A credential helper keeping one server's credentials in a file next
/// to itself, speaking the docker-credential-helpers protocol.
const HELPER: &str = r#"#!/bin/sh
store="$(dirname "$0")/store.json"
case "$1" in
store) cat > "$store" ;;
get) read server
     if [ -f "$store" ] && grep -q "\"ServerURL\":\"$server\"" "$store"; then cat "$store"
     else echo "credentials not found in native keychain"; exit 1; fi ;;
erase) if [ -f "$store" ]; then rm "$store"
       else echo "credentials not found in native keychain"; exit 1; fi ;;
*) exit 2 ;;
esac
"#;

#[test]
fn login_and_logout_go_through_the_configured_credential_helper() {
    let reg = secure_registry();
    let dir = context();
    let certs = reg.certs_dir();
    let bin: PathBuf = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("docker-credential-test");
    std::fs::write(&script, HELPER).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config_dir = dir.path().join("docker");
    std::fs::create_dir_all(&config_dir).unwrap();
    let before = r#"{"credsStore":"test"}"#;
    std::fs::write(config_dir.join("config.json"), before).unwrap();
    let host = reg.host.as_str();
    let image = format!("{host}/login-helper:v1");
    let user = secure_registry::USER;

    let out = ok(&bk(
        &dir,
        &certs,
        &config_dir,
        Some(&bin),
        &["login", "-u", user, "--password-stdin", host],
        secure_registry::PASSWORD.as_bytes(),
    ));
    assert!(out.contains("Login Succeeded"), "{out}");
    let stored: Value = read_json(&bin.join("store.json"));
    assert_eq!(stored["ServerURL"], host);
    assert_eq!(stored["Username"], user);
    assert_eq!(stored["Secret"], secure_registry::PASSWORD);
    // The secret is in the helper only.
    assert_eq!(
        std::fs::read_to_string(config_dir.join("config.json")).unwrap(),
        before
    );

    ok(&push(&dir, &certs, &config_dir, Some(&bin), &image));

    let out = ok(&bk(
        &dir,
        &certs,
        &config_dir,
        Some(&bin),
        &["logout", host],
        b"",
    ));
    assert!(out.contains("Removing login credentials"), "{out}");
    assert!(!bin.join("store.json").exists());
    let out = ok(&bk(
        &dir,
        &certs,
        &config_dir,
        Some(&bin),
        &["logout", host],
        b"",
    ));
    assert!(out.contains(&format!("Not logged in to {host}")), "{out}");
    let err = fails(&push(&dir, &certs, &config_dir, Some(&bin), &image));
    assert!(err.contains("unauthorized"), "{err}");
}
