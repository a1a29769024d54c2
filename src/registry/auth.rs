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
//! Imports nothing project-internal.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
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
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".docker"),
            None => return Ok(RegistryAuth::Anonymous),
        },
    };
    let path = dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(source) => return Err(AuthError::ReadDockerConfig { path, source }),
    };
    let config: DockerConfig = serde_json::from_slice(&text)
        .map_err(|source| AuthError::ParseDockerConfig { path, source })?;
    auth_for(&config, host, &run_helper)
}

/// The address Docker stores `host`'s credentials under: Docker Hub's
/// v1 index URL, otherwise the host itself.
fn server_address(host: &str) -> String {
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
    let keys: Vec<String> = if host == "docker.io" {
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
    };
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
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        let message = [text.trim(), err.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(AuthError::HelperFailed {
            program: program.into(),
            server: server.into(),
            message: if message.is_empty() {
                out.status.to_string()
            } else {
                message
            },
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
}
