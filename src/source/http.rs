//! `http(s)://` sources (`ADD URL`): one file downloaded into a
//! directory, named as the frontend asks (`http.filename`), mode 0600 and
//! its mtime the server's `Last-Modified`, as BuildKit's HTTP source
//! makes it. The content is hashed while it streams; `http.checksum`
//! (`ADD --checksum=sha256:…`) must match or nothing is kept. Redirects
//! are followed. A rebuild revalidates with the previous answer's
//! `ETag` / `Last-Modified` (`If-None-Match` / `If-Modified-Since`): a
//! 304 reuses the stored file without downloading it again.
//!
//! Credentials in the URL are sent (as basic authentication) but never
//! named in an error.
//!
//! Imports `util` and `content` (digests) only.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::content::HashingWriter;
use crate::util::fs::FsError;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("failed to start the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("failed to fetch {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to fetch {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("failed to write the download of {url}")]
    Write {
        url: String,
        #[source]
        source: FsError,
    },
    #[error("invalid checksum {0:?}: expected sha256:<64 hex digits>")]
    ChecksumFormat(String),
    #[error("digest mismatch for {url}: --checksum is {expected} but the content is {actual}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
}

/// What the server said about a download, kept to revalidate it later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// `sha256:` of the content.
    pub digest: String,
}

/// The outcome of [`fetch`].
#[derive(Debug)]
pub enum Fetched {
    /// The server confirmed the previous download (304).
    NotModified,
    /// The file was written.
    Downloaded(Validators),
}

/// A client following redirects, identifying itself as BuildKit's does.
pub fn client() -> Result<reqwest::Client, HttpError> {
    reqwest::Client::builder()
        .user_agent(concat!("bk/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(HttpError::Client)
}

/// Checks a `--checksum` value: `sha256:` and 64 hex digits.
pub fn checksum(value: &str) -> Result<String, HttpError> {
    match value.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
        }
        _ => Err(HttpError::ChecksumFormat(value.to_string())),
    }
}

/// Downloads `url` into `dir/filename`, or asks whether `previous` is
/// still current. `expected` is a checked `sha256:` digest.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    dir: &Path,
    filename: &str,
    previous: Option<&Validators>,
    expected: Option<&str>,
) -> Result<Fetched, HttpError> {
    // Errors name the URL without its credentials; reqwest's own
    // message would repeat the URL, so it is dropped from the cause.
    let shown = crate::util::redact::url(url);
    let request_err = |source: reqwest::Error| HttpError::Request {
        url: shown.clone(),
        source: source.without_url(),
    };
    let mut request = client.get(url);
    if let Some(previous) = previous {
        if let Some(etag) = &previous.etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &previous.last_modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
        }
    }
    let mut response = request.send().await.map_err(request_err)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED && previous.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(HttpError::Status {
            url: shown.clone(),
            status: status.as_u16(),
        });
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    let path = dir.join(filename);
    let write_err = |e| HttpError::Write {
        url: shown.clone(),
        source: FsError::new("write", &path, e),
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(write_err)?;
    let mut out = HashingWriter::new(std::io::BufWriter::new(file));
    while let Some(chunk) = response.chunk().await.map_err(request_err)? {
        out.write_all(&chunk).map_err(write_err)?;
    }
    let (buf, digest, _) = out.finish();
    buf.into_inner()
        .map_err(|e| write_err(e.into_error()))?
        .sync_all()
        .map_err(write_err)?;
    if let Some(expected) = expected {
        if expected != digest {
            return Err(HttpError::ChecksumMismatch {
                url: shown.clone(),
                expected: expected.to_string(),
                actual: digest,
            });
        }
    }
    // The umask may have narrowed the mode; BuildKit's file is 0600.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(write_err)?;
    if let Some(secs) = last_modified.as_deref().and_then(http_date) {
        let time = filetime::FileTime::from_unix_time(secs, 0);
        filetime::set_file_times(&path, time, time).map_err(write_err)?;
    }
    Ok(Fetched::Downloaded(Validators {
        etag,
        last_modified,
        digest,
    }))
}

/// Seconds since the epoch of an RFC 1123 date (`Sun, 06 Nov 1994
/// 08:49:37 GMT`), the form HTTP servers send.
pub fn http_date(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(http_date("yesterday"), None);
    }

    #[test]
    fn checksums_are_sha256() {
        let hex = "a".repeat(64);
        assert_eq!(
            checksum(&format!("sha256:{hex}")).unwrap(),
            format!("sha256:{hex}")
        );
        for bad in ["md5:abc", &hex, "sha256:abc"] {
            assert!(checksum(bad).is_err(), "{bad}");
        }
    }
}
