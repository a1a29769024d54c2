//! Retrying registry requests that failed for a passing reason: the
//! connection (refused, reset, timed out), a 5xx answer, or 429 (too many
//! requests). Anything else — 401, 404, a digest the registry rejects, a
//! certificate that does not verify — fails at once. Waits double from [`FIRST_WAIT`], [`ATTEMPTS`] tries in
//! all.
//!
//! Imports its sibling `transport` only.

use std::future::Future;
use std::time::Duration;

use oci_client::errors::OciDistributionError;

/// Tries per request.
pub const ATTEMPTS: u32 = 5;
/// The wait before the second try; doubled before each later one.
pub const FIRST_WAIT: Duration = Duration::from_millis(200);

/// Whether `err` may go away when the request is repeated.
pub fn is_transient(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::RequestError(e) => {
            (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
                && !super::transport::is_untrusted_certificate(err)
                && !e
                    .status()
                    .is_some_and(|s| s.is_client_error() && s.as_u16() != 429)
        }
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// Runs `op` until it succeeds, fails for good, or has been tried
/// [`ATTEMPTS`] times; returns the last outcome.
pub async fn with_retry<T, F, Fut>(mut op: F) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OciDistributionError>>,
{
    let mut wait = FIRST_WAIT;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_then_given_up() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = with_retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(server(503))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);

        let calls = AtomicU32::new(0);
        let out = with_retry(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(server(429)),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = with_retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(server(401))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
