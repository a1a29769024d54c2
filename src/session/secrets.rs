//! `--secret` values, looked up by id when a `RUN --mount=type=secret`
//! needs one (BuildKit's `secretsprovider` file store).
//!
//! A file source is checked when the build starts (it must exist and be
//! at most [`MAX_SECRET_SIZE`]) and read each time a step mounts it, so
//! the bytes are held only while a step is being prepared. An
//! environment source is read from this process's environment then.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::SessionError;

/// BuildKit's limit on a secret's size (500 KiB).
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// The name of an environment variable of this process (unset reads
    /// as empty, as in BuildKit).
    Env(String),
}

/// A secret's bytes. `Debug` shows only the length, and the bytes are
/// overwritten when the value is dropped, so that a stray `{:?}` or a
/// reused allocation does not leak it.
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> SecretValue {
        SecretValue(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue({} bytes)", self.0.len())
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // A volatile write, so the zeroing is not optimised away as a
            // dead store just before the free.
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// The build's secrets by id.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    by_id: BTreeMap<String, SecretSource>,
}

impl Secrets {
    /// Checks and indexes `sources`; a later source for the same id
    /// replaces an earlier one, as BuildKit's store does.
    pub fn new(
        sources: impl IntoIterator<Item = (String, SecretSource)>,
    ) -> Result<Secrets, SessionError> {
        let mut by_id = BTreeMap::new();
        for (id, source) in sources {
            if id.is_empty() {
                return Err(SessionError::SecretMissingId);
            }
            if let SecretSource::File(path) = &source {
                let meta = std::fs::metadata(path).map_err(|e| SessionError::StatSecret {
                    id: id.clone(),
                    path: path.clone(),
                    source: e,
                })?;
                if meta.len() > MAX_SECRET_SIZE {
                    return Err(SessionError::SecretTooBig {
                        id,
                        size: meta.len(),
                        max: MAX_SECRET_SIZE,
                    });
                }
            }
            by_id.insert(id, source);
        }
        Ok(Secrets { by_id })
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The ids the user provided, for error messages.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }

    /// The value of secret `id`; `None` when the user provided no such
    /// secret.
    pub fn get(&self, id: &str) -> Result<Option<SecretValue>, SessionError> {
        let Some(source) = self.by_id.get(id) else {
            return Ok(None);
        };
        let bytes = match source {
            SecretSource::Env(var) => std::env::var_os(var)
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .unwrap_or_default(),
            SecretSource::File(path) => {
                std::fs::read(path).map_err(|e| SessionError::ReadSecret {
                    id: id.to_string(),
                    path: path.clone(),
                    source: e,
                })?
            }
        };
        if bytes.len() as u64 > MAX_SECRET_SIZE {
            return Err(SessionError::SecretTooBig {
                id: id.to_string(),
                size: bytes.len() as u64,
                max: MAX_SECRET_SIZE,
            });
        }
        Ok(Some(SecretValue::new(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_env_sources() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, b"s3cr3t").unwrap();
        std::env::set_var("BK_TEST_SECRETS_ENV_SOURCE", "from-env");
        let secrets = Secrets::new([
            ("f".to_string(), SecretSource::File(file.clone())),
            (
                "e".to_string(),
                SecretSource::Env("BK_TEST_SECRETS_ENV_SOURCE".into()),
            ),
            (
                "unset".to_string(),
                SecretSource::Env("BK_TEST_SECRETS_NEVER_SET".into()),
            ),
        ])
        .unwrap();
        assert_eq!(secrets.get("f").unwrap().unwrap().bytes(), b"s3cr3t");
        assert_eq!(secrets.get("e").unwrap().unwrap().bytes(), b"from-env");
        assert_eq!(secrets.get("unset").unwrap().unwrap().bytes(), b"");
        assert!(secrets.get("other").unwrap().is_none());
        // Read when mounted, not when the build started.
        std::fs::write(&file, b"rotated").unwrap();
        assert_eq!(secrets.get("f").unwrap().unwrap().bytes(), b"rotated");
        std::fs::remove_file(&file).unwrap();
        let err = secrets.get("f").unwrap_err().to_string();
        assert!(err.starts_with("secret f: failed to read"), "{err}");
    }

    #[test]
    fn checked_when_the_build_starts() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Secrets::new([("x".to_string(), SecretSource::File(missing))])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("secret x: failed to stat"), "{err}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_SECRET_SIZE as usize + 1]).unwrap();
        let err = Secrets::new([("b".to_string(), SecretSource::File(big))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("too big"), "{err}");
        assert!(Secrets::new([(String::new(), SecretSource::Env("X".into()))]).is_err());
    }

    #[test]
    fn debug_hides_the_bytes() {
        let v = SecretValue::new(b"hunter2".to_vec());
        assert_eq!(format!("{v:?}"), "SecretValue(7 bytes)");
    }
}
