//! Credentials for a registry, found where the Docker CLI keeps them:
//! `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`). A
//! per-registry `credHelpers` entry wins, then a global `credsStore`,
//! then the inline `auths` entry (base64 `user:password`, or `username`
//! and `password`). Helpers are programs named
//! `docker-credential-<name>`, run as `… get` with the server address on
//! standard input, answering `{"Username": …, "Secret": …}` on standard
//! output — the docker-credential-helpers protocol.
//!
//! Docker's config is read here rather than through the
//! `docker_credential` crate: that crate folds every failure into a bare
//! variant (no path, no helper output), and bk's errors must say which
//! file or helper failed. Secrets never appear in errors: a helper's
//! output is quoted only when it failed, and then it holds a message.
//!
//! Writing is `docker login`'s counterpart ([`store_credentials`],
//! [`erase_credentials`]): through the helper that would answer for the
//! server (`… store` with `{"ServerURL", "Username", "Secret"}`, `… erase`
//! with the server), else into `auths` as base64 `user:password`. The
//! file is edited as a JSON value, so every key bk does not know stays
//! as it was, and replaced atomically (a temporary file renamed over it,
//! mode 0600, in a directory created 0700).
//!
//! Imports nothing project-internal.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

/// Why credentials could not be found.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Docker's config.json exists but cannot be read.
    #[error("cannot read docker credentials from {}", path.display())]
    ReadDockerConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Docker's config.json is not what Docker writes.
    #[error("invalid docker config {}", path.display())]
    ParseDockerConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The credential helper could not be started (not on PATH?).
    #[error("cannot run credential helper {program}")]
    RunHelper {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The helper exited with an error other than "not found".
    #[error("credential helper {program} failed for {server}: {message}")]
    HelperFailed {
        program: String,
        server: String,
        message: String,
    },
    /// The helper's answer is not the protocol's JSON. (Its output is
    /// not quoted: it may hold the secret.)
    #[error(
        "credential helper {program} gave an answer that is not {{\"Username\", \"Secret\"}} JSON"
    )]
    HelperAnswer { program: String },
    /// Docker's config.json (or its directory) cannot be written.
    #[error("cannot write docker credentials to {}", path.display())]
    WriteDockerConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Docker's config.json is JSON but not an object.
    #[error("invalid docker config {}: not a JSON object", path.display())]
    NotAnObject { path: PathBuf },
    /// There is no home directory to find `.docker/config.json` in.
    #[error("cannot find docker's config directory: neither DOCKER_CONFIG nor HOME is set")]
    NoConfigDir,
    /// An identity token (OAuth refresh token) rather than a password.
    #[error("not supported yet: identity tokens from {program} (for {server})")]
    IdentityToken { program: String, server: String },
}

/// A user name and secret from a helper; `None` when it has none.
pub(crate) type HelperResult = Result<Option<(String, String)>, AuthError>;

/// Docker's config.json, the fields bk reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// A helper's answer.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Credentials for `host` (with port) from Docker's config; anonymous
/// when it has none.
pub fn docker_auth(host: &str) -> Result<RegistryAuth, AuthError> {
    let Some(path) = docker_config_path() else {
        return Ok(RegistryAuth::Anonymous);
    };
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(source) => return Err(AuthError::ReadDockerConfig { path, source }),
    };
    let config: DockerConfig = serde_json::from_slice(&text)
        .map_err(|source| AuthError::ParseDockerConfig { path, source })?;
    auth_for(&config, host, &run_helper)
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; `None`
/// when neither variable is set.
pub fn docker_config_path() -> Option<PathBuf> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".docker"),
    };
    Some(dir.join("config.json"))
}

/// Where [`store_credentials`] put them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredIn {
    /// A credential helper program (`docker-credential-…`).
    Helper(String),
    /// The `auths` of this config file.
    File(PathBuf),
}

/// Saves `user`/`password` for `host` (with port; `docker.io` for Docker
/// Hub) where Docker would: the helper configured for it, else `auths`.
pub fn store_credentials(host: &str, user: &str, password: &str) -> Result<StoredIn, AuthError> {
    let path = docker_config_path().ok_or(AuthError::NoConfigDir)?;
    let mut config = read_config_value(&path)?;
    let server = server_address(host);
    if let Some(program) = helper_for(&config, &path, host)? {
        let input = serde_json::json!({"ServerURL": server, "Username": user, "Secret": password});
        run_helper_action(&program, "store", &server, input.to_string().as_bytes())?;
        return Ok(StoredIn::Helper(program));
    }
    set_inline_auth(&mut config, &path, &server, user, password)?;
    write_config_value(&path, &config)?;
    Ok(StoredIn::File(path))
}

/// Removes `host`'s credentials from where Docker keeps them. `false`
/// when there were none.
pub fn erase_credentials(host: &str) -> Result<bool, AuthError> {
    let path = docker_config_path().ok_or(AuthError::NoConfigDir)?;
    let mut config = read_config_value(&path)?;
    let server = server_address(host);
    let mut found = false;
    if let Some(program) = helper_for(&config, &path, host)? {
        found = run_helper_action(&program, "erase", &server, server.as_bytes())?;
    }
    // An inline entry goes too (Docker leaves an empty one beside a
    // helper's credentials).
    if remove_inline_auth(&mut config, host) {
        write_config_value(&path, &config)?;
        found = true;
    }
    Ok(found)
}

/// The config file as a JSON object; an empty one when it is missing.
fn read_config_value(path: &Path) -> Result<serde_json::Value, AuthError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(serde_json::json!({})),
        Err(source) => {
            return Err(AuthError::ReadDockerConfig {
                path: path.into(),
                source,
            })
        }
    };
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|source| AuthError::ParseDockerConfig {
            path: path.into(),
            source,
        })?;
    if !value.is_object() {
        return Err(AuthError::NotAnObject { path: path.into() });
    }
    Ok(value)
}

/// The helper program that answers for `host` in `config`, if any.
fn helper_for(
    config: &serde_json::Value,
    path: &Path,
    host: &str,
) -> Result<Option<String>, AuthError> {
    let typed: DockerConfig =
        serde_json::from_value(config.clone()).map_err(|source| AuthError::ParseDockerConfig {
            path: path.into(),
            source,
        })?;
    Ok(typed
        .cred_helpers
        .get(&server_address(host))
        .or_else(|| {
            lookup_keys(host)
                .iter()
                .find_map(|k| typed.cred_helpers.get(k))
        })
        .or(typed.creds_store.as_ref())
        .filter(|name| !name.is_empty())
        .map(|name| format!("docker-credential-{name}")))
}

/// Sets `auths[server]` to `{"auth": base64(user:password)}`, keeping
/// every other key.
pub(crate) fn set_inline_auth(
    config: &mut serde_json::Value,
    path: &Path,
    server: &str,
    user: &str,
    password: &str,
) -> Result<(), AuthError> {
    use base64::Engine as _;
    let not_object = || AuthError::NotAnObject { path: path.into() };
    let root = config.as_object_mut().ok_or_else(not_object)?;
    let auths = root.entry("auths").or_insert_with(|| serde_json::json!({}));
    if auths.is_null() {
        *auths = serde_json::json!({});
    }
    let auths = auths.as_object_mut().ok_or_else(not_object)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    auths.insert(server.into(), serde_json::json!({ "auth": encoded }));
    Ok(())
}

/// Removes every `auths` entry `host` is looked up under; whether there
/// was one.
pub(crate) fn remove_inline_auth(config: &mut serde_json::Value, host: &str) -> bool {
    let Some(auths) = config.get_mut("auths").and_then(|a| a.as_object_mut()) else {
        return false;
    };
    let mut found = false;
    for key in lookup_keys(host) {
        found |= auths.remove(&key).is_some();
    }
    found
}

/// Writes `config` to `path` atomically: a 0600 temporary file in the
/// same directory (created 0700), renamed over it. A symlinked
/// config.json stays a symlink: its target is replaced.
fn write_config_value(path: &Path, config: &serde_json::Value) -> Result<(), AuthError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let err = |source| AuthError::WriteDockerConfig {
        path: path.into(),
        source,
    };
    let target;
    let path = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            target = std::fs::canonicalize(path).map_err(err)?;
            target.as_path()
        }
        _ => path,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let mut text = serde_json::to_vec_pretty(config).map_err(|e| err(e.into()))?;
    text.push(b'\n');
    let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// The address Docker stores `host`'s credentials under: Docker Hub's
/// v1 index URL, otherwise the host itself.
pub fn server_address(host: &str) -> String {
    if host == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        host.into()
    }
}

/// Credentials for `host` from `config`; `helper(program, server)` runs
/// a credential helper (injected so tests need no program).
pub(crate) fn auth_for(
    config: &DockerConfig,
    host: &str,
    helper: &dyn Fn(&str, &str) -> HelperResult,
) -> Result<RegistryAuth, AuthError> {
    let keys = lookup_keys(host);
    let named = keys
        .iter()
        .find_map(|k| config.cred_helpers.get(k))
        .or(config.creds_store.as_ref())
        .filter(|name| !name.is_empty());
    if let Some(name) = named {
        let program = format!("docker-credential-{name}");
        let server = server_address(host);
        return Ok(match helper(&program, &server)? {
            Some((user, _)) if user == "<token>" => {
                return Err(AuthError::IdentityToken { program, server })
            }
            Some((user, secret)) => RegistryAuth::Basic(user, secret),
            None => RegistryAuth::Anonymous,
        });
    }
    let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let (Some(user), Some(pass)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic(user.clone(), pass.clone()));
    }
    use base64::Engine as _;
    let decoded = entry
        .auth
        .as_deref()
        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    Ok(match decoded.as_deref().and_then(|s| s.split_once(':')) {
        Some((user, pass)) => RegistryAuth::Basic(user.into(), pass.into()),
        None => RegistryAuth::Anonymous,
    })
}

/// The keys `host`'s entries may have in `auths` and `credHelpers`.
fn lookup_keys(host: &str) -> Vec<String> {
    if host == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ]
    } else {
        vec![
            host.into(),
            format!("https://{host}"),
            format!("http://{host}"),
        ]
    }
}

/// Runs `program ACTION` (`store` or `erase`) with `input` on standard
/// input. `false` when the helper said it had no such credentials.
fn run_helper_action(
    program: &str,
    action: &str,
    server: &str,
    input: &[u8],
) -> Result<bool, AuthError> {
    let run = |source| AuthError::RunHelper {
        program: program.into(),
        source,
    };
    let mut child = Command::new(program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(run)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading shows up in its status.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().map_err(run)?;
    if out.status.success() {
        return Ok(true);
    }
    let message = helper_message(&out);
    if message.contains("credentials not found") {
        return Ok(false);
    }
    Err(AuthError::HelperFailed {
        program: program.into(),
        server: server.into(),
        message,
    })
}

/// What a failed helper said (it holds a message, not a secret).
fn helper_message(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    let message = [text.trim(), err.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    if message.is_empty() {
        out.status.to_string()
    } else {
        message
    }
}

/// Runs `program get` with `server` on standard input. `None` when the
/// helper has no credentials for it (its "credentials not found" exit).
fn run_helper(program: &str, server: &str) -> HelperResult {
    let run = |source| AuthError::RunHelper {
        program: program.into(),
        source,
    };
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(run)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading shows up in its status.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(run)?;
    if !out.status.success() {
        let message = helper_message(&out);
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(AuthError::HelperFailed {
            program: program.into(),
            server: server.into(),
            message,
        });
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&out.stdout).map_err(|_| AuthError::HelperAnswer {
            program: program.into(),
        })?;
    Ok(Some((answer.username, answer.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_helper(_: &str, _: &str) -> HelperResult {
        panic!("no helper expected")
    }

    #[test]
    fn docker_config_basic_credentials() {
        let config: DockerConfig = serde_json::from_str(
            r#"{"auths":{"reg:5000":{"auth":"dXNlcjpwYXNz"},
                "https://index.docker.io/v1/":{"username":"me","password":"pw"}}}"#,
        )
        .unwrap();
        assert!(matches!(auth_for(&config, "reg:5000", &no_helper).unwrap(),
            RegistryAuth::Basic(u, p) if u == "user" && p == "pass"));
        assert!(
            matches!(auth_for(&config, "docker.io", &no_helper).unwrap(),
            RegistryAuth::Basic(u, _) if u == "me")
        );
        assert!(matches!(
            auth_for(&config, "other", &no_helper).unwrap(),
            RegistryAuth::Anonymous
        ));
    }

    #[test]
    fn helpers_win_over_inline_auths() {
        let config: DockerConfig = serde_json::from_str(
            r#"{"auths":{"reg:5000":{"auth":"dXNlcjpwYXNz"},"gcr.io":{}},
                "credHelpers":{"gcr.io":"gcloud"},"credsStore":"desktop"}"#,
        )
        .unwrap();
        let seen = std::cell::RefCell::new(Vec::new());
        let helper = |program: &str, server: &str| {
            seen.borrow_mut().push(format!("{program} {server}"));
            Ok(match program {
                "docker-credential-gcloud" => Some(("u".into(), "s".into())),
                _ => None,
            })
        };
        assert!(matches!(auth_for(&config, "gcr.io", &helper).unwrap(),
            RegistryAuth::Basic(u, s) if u == "u" && s == "s"));
        // The global store answers for everything else, even with an
        // inline entry; "not found" there is anonymous.
        assert!(matches!(
            auth_for(&config, "reg:5000", &helper).unwrap(),
            RegistryAuth::Anonymous
        ));
        assert!(matches!(
            auth_for(&config, "docker.io", &helper).unwrap(),
            RegistryAuth::Anonymous
        ));
        assert_eq!(
            *seen.borrow(),
            [
                "docker-credential-gcloud gcr.io",
                "docker-credential-desktop reg:5000",
                "docker-credential-desktop https://index.docker.io/v1/",
            ]
        );
        let token = |_: &str, _: &str| Ok(Some(("<token>".into(), "t".into())));
        assert!(matches!(
            auth_for(&config, "gcr.io", &token),
            Err(AuthError::IdentityToken { .. })
        ));
    }

    #[test]
    fn a_missing_helper_is_named() {
        let err = run_helper("docker-credential-bk-no-such-helper", "x").unwrap_err();
        assert!(
            err.to_string()
                .contains("docker-credential-bk-no-such-helper"),
            "{err}"
        );
    }

    #[test]
    fn inline_auth_edit_keeps_other_keys_and_reads_back() {
        let path = Path::new("config.json");
        let mut config: serde_json::Value = serde_json::from_str(
            r#"{"auths":{"other:1":{"auth":"eDp5"},"https://reg:5000":{"auth":"old"}},
                "psFormat":"table {{.ID}}","proxies":{"default":{"httpProxy":"p"}}}"#,
        )
        .unwrap();
        set_inline_auth(&mut config, path, "reg:5000", "me", "p:w").unwrap();
        assert_eq!(config["auths"]["reg:5000"]["auth"], "bWU6cDp3");
        assert_eq!(config["auths"]["other:1"]["auth"], "eDp5");
        assert_eq!(config["psFormat"], "table {{.ID}}");
        assert_eq!(config["proxies"]["default"]["httpProxy"], "p");
        let typed: DockerConfig = serde_json::from_value(config.clone()).unwrap();
        assert!(matches!(auth_for(&typed, "reg:5000", &no_helper).unwrap(),
            RegistryAuth::Basic(u, p) if u == "me" && p == "p:w"));

        // Logout removes every key the host is read under, nothing else.
        assert!(remove_inline_auth(&mut config, "reg:5000"));
        assert_eq!(
            config["auths"],
            serde_json::json!({"other:1": {"auth": "eDp5"}})
        );
        assert!(!remove_inline_auth(&mut config, "reg:5000"));
        assert_eq!(config["psFormat"], "table {{.ID}}");

        // Docker Hub goes under its v1 index URL; a null or missing
        // `auths` is created.
        let mut empty = serde_json::json!({"auths": null});
        set_inline_auth(&mut empty, path, &server_address("docker.io"), "u", "s").unwrap();
        assert!(empty["auths"]["https://index.docker.io/v1/"]["auth"].is_string());
        let mut wrong = serde_json::json!({"auths": []});
        assert!(set_inline_auth(&mut wrong, path, "h", "u", "s").is_err());
    }

    #[test]
    fn config_is_written_atomically_0600_in_a_0700_dir() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new/.docker/config.json");
        write_config_value(&path, &serde_json::json!({"a": 1})).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(
            read_config_value(&path).unwrap(),
            serde_json::json!({"a": 1})
        );
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.json"], "no temporary file left");
        // A symlink stays one; its target gets the new text.
        let real = tmp.path().join("real.json");
        std::fs::rename(&path, &real).unwrap();
        std::os::unix::fs::symlink(&real, &path).unwrap();
        write_config_value(&path, &serde_json::json!({"b": 2})).unwrap();
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            read_config_value(&real).unwrap(),
            serde_json::json!({"b": 2})
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "[1]").unwrap();
        assert!(matches!(
            read_config_value(&path),
            Err(AuthError::NotAnObject { .. })
        ));
    }
}
