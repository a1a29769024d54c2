//! How bk talks to one registry host: HTTPS or plain HTTP, and which
//! certificates it trusts — Docker's rules.
//!
//! - Extra CA certificates for `host:port` are the `*.crt` files in
//!   `<dir>/<host:port>/` for each certs directory: `$BK_CERTS_DIR`
//!   (colon separated) when set, else `$XDG_CONFIG_HOME/bk/certs.d`
//!   (`~/.config/bk/certs.d`); then Docker's `/etc/docker/certs.d`. A
//!   host with such certificates speaks verified HTTPS.
//! - Loopback hosts (`localhost`, `127.0.0.0/8`, `::1`) and insecure
//!   hosts (`--insecure-registry`, `BK_INSECURE_REGISTRIES`,
//!   `registry.insecure=true`) without such certificates are asked
//!   whether they speak TLS at all; those that do not get plain HTTP (as
//!   containerd's resolver falls back for localhost). A TLS server's
//!   certificate is then verified unless the host is insecure.
//! - Every other host speaks verified HTTPS with the system roots.
//!
//! Imports nothing project-internal.

use std::path::PathBuf;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};

/// Why a registry client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A certificate file or directory could not be read.
    #[error("cannot read registry certificates `{}`", path.display())]
    ReadCerts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `.crt` file holds no PEM certificate.
    #[error("`{}` is not a PEM certificate", path.display())]
    NotPem { path: PathBuf },
    /// The HTTP client refused the configuration (a certificate it
    /// cannot parse).
    #[error("cannot set up a client for {host} (certificates from {dirs})")]
    Client {
        host: String,
        dirs: String,
        #[source]
        source: OciDistributionError,
    },
}

/// Whether `host` (with port) is a loopback name or address.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if name == "localhost" || name == "::1" {
        return true;
    }
    name.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The certs.d directories, most specific first.
pub fn certs_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::env::var_os("BK_CERTS_DIR") {
        Some(list) => std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => directories::BaseDirs::new()
            .map(|d| vec![d.config_dir().join("bk").join("certs.d")])
            .unwrap_or_default(),
    };
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    dirs
}

/// The `*.crt` files for `host` in `dirs`, read.
pub fn host_certificates(
    dirs: &[PathBuf],
    host: &str,
) -> Result<Vec<(PathBuf, Vec<u8>)>, TransportError> {
    let mut certs = Vec::new();
    for dir in dirs {
        let dir = dir.join(host);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(TransportError::ReadCerts { path: dir, source }),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| TransportError::ReadCerts {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "crt") {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).map_err(|source| TransportError::ReadCerts {
                path: path.clone(),
                source,
            })?;
            if !contains(&data, b"-----BEGIN CERTIFICATE-----") {
                return Err(TransportError::NotPem { path });
            }
            certs.push((path, data));
        }
    }
    Ok(certs)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The client for `host`, set up by the rules in the module doc.
pub async fn connect(host: &str, insecure: &[String]) -> Result<Client, TransportError> {
    let dirs = certs_dirs();
    let certs = host_certificates(&dirs, host)?;
    let listed = insecure.iter().any(|h| h == host);
    let build = |protocol, accept_invalid: bool| {
        let config = ClientConfig {
            protocol,
            accept_invalid_certificates: accept_invalid,
            extra_root_certificates: certs
                .iter()
                .map(|(_, data)| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: data.clone(),
                })
                .collect(),
            // One PUT per blob, streamed from the file: chunked PATCHes
            // of a few MiB each cost a round trip apiece.
            use_monolithic_push: true,
            user_agent: concat!("bk/", env!("CARGO_PKG_VERSION")),
            // An unreachable host fails in seconds rather than hanging on
            // the system's TCP timeout (minutes).
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            ..ClientConfig::default()
        };
        Client::try_from(config).map_err(|source| TransportError::Client {
            host: host.into(),
            dirs: describe(&dirs),
            source,
        })
    };
    if !certs.is_empty() {
        return build(ClientProtocol::Https, listed);
    }
    if !(listed || is_loopback(host)) {
        return build(ClientProtocol::Https, false);
    }
    let probe = build(ClientProtocol::Https, true)?;
    if speaks_tls(&probe, host).await {
        build(ClientProtocol::Https, listed)
    } else {
        build(ClientProtocol::Http, false)
    }
}

/// Whether a TLS server answers `GET /v2/` on `host`. Asked through a
/// client of its own (the credentials a client stores stick to it).
async fn speaks_tls(probe: &Client, host: &str) -> bool {
    let reference = oci_client::Reference::with_tag(host.into(), "bk/probe".into(), "x".into());
    !matches!(
        probe
            .auth(
                &reference,
                &RegistryAuth::Anonymous,
                RegistryOperation::Pull
            )
            .await,
        Err(OciDistributionError::RequestError(_))
    )
}

/// Whether `err` is a TLS certificate the client did not trust.
pub fn is_untrusted_certificate(err: &OciDistributionError) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = cause {
        if e.to_string().contains("invalid peer certificate") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Where to put a CA for `host`, for error messages.
pub fn trust_hint(host: &str) -> String {
    let first = certs_dirs()
        .into_iter()
        .next()
        .unwrap_or_else(|| PathBuf::from("/etc/docker/certs.d"));
    format!(
        "put its CA certificate in {}/ca.crt (BK_CERTS_DIR, ~/.config/bk/certs.d or \
         /etc/docker/certs.d), or skip verification with --insecure-registry {host}",
        first.join(host).display()
    )
}

fn describe(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "docker.io",
            "reg:5000",
            "10.0.0.1:5000",
            "localhost.example",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn certificates_are_found_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("reg:5000");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("ca.crt"), "-----BEGIN CERTIFICATE-----\nx\n").unwrap();
        std::fs::write(host.join("client.key"), "not a cert").unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let found = host_certificates(&dirs, "reg:5000").unwrap();
        assert_eq!(found.len(), 1);
        assert!(host_certificates(&dirs, "other:5000").unwrap().is_empty());
        std::fs::write(host.join("bad.crt"), "garbage").unwrap();
        let err = host_certificates(&dirs, "reg:5000").unwrap_err();
        assert!(err.to_string().contains("bad.crt"), "{err}");
    }
}
