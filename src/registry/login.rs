//! Checking credentials before they are saved (`bk login`): the
//! registry's `GET /v2/` challenge decides how. A bearer challenge sends
//! them to the token service it names, which refuses wrong ones; a basic
//! challenge (htpasswd) is answered by an authenticated request, since
//! oci-client's own authorization only remembers basic credentials. An
//! open registry accepts anything, as with Docker.

use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use super::{is_unauthorized, transport, RegistryError};

/// Whether `user`/`password` are accepted by `host` (with port;
/// `docker.io` for Docker Hub). `insecure`: hosts whose certificates are
/// not verified (see [`transport`]).
pub async fn check_login(
    host: &str,
    user: &str,
    password: &str,
    insecure: &[String],
) -> Result<(), RegistryError> {
    let client =
        transport::connect(host, insecure)
            .await
            .map_err(|source| RegistryError::Transport {
                registry: host.into(),
                source: Box::new(source),
            })?;
    let auth = RegistryAuth::Basic(user.into(), password.into());
    // A repository name is needed for the token scope; nothing is read.
    let probe =
        oci_client::Reference::with_tag(host.into(), "library/bk-login-check".into(), "x".into());
    let classify = |source: OciDistributionError| {
        if is_unauthorized(&source) {
            RegistryError::Unauthorized {
                registry: host.into(),
                source,
            }
        } else if transport::is_untrusted_certificate(&source) {
            RegistryError::UntrustedCertificate {
                registry: host.into(),
                hint: transport::trust_hint(host),
                source,
            }
        } else {
            RegistryError::Authorize {
                registry: host.into(),
                source,
            }
        }
    };
    let token = client
        .auth(&probe, &auth, RegistryOperation::Pull)
        .await
        .map_err(classify)?;
    if token.is_some() {
        // The token service accepted the credentials.
        return Ok(());
    }
    match client.list_tags(&probe, &auth, Some(1), None).await {
        Ok(_) => Ok(()),
        // Authenticated, but no such repository: the expected answer.
        Err(e) if super::is_not_found(&e) => Ok(()),
        Err(e) => Err(classify(e)),
    }
}
