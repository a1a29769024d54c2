//! Snapshot identifiers. An id becomes a directory name under
//! `<root>/snapshots/`, so it is validated when it is made: lowercase hex
//! only, which rules out `/`, `..`, empty names and case clashes on
//! case-insensitive file systems. Imports only the module's error type.

use std::fmt;
use std::str::FromStr;

use super::SnapshotError;

/// The name of a committed snapshot: 1 to 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId(String);

impl SnapshotId {
    /// The longest id accepted (a SHA-256 in hex, should a caller want
    /// content-derived ids).
    pub const MAX_LEN: usize = 64;

    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<SnapshotId, SnapshotError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid {
            Ok(SnapshotId(id))
        } else {
            Err(SnapshotError::InvalidId(id))
        }
    }

    /// A fresh random id (128 bits).
    pub(crate) fn generate() -> SnapshotId {
        SnapshotId(super::fsx::random_hex(16))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SnapshotId {
    type Err = SnapshotError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SnapshotId::new(s)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SnapshotId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_hex_only() {
        assert_eq!(SnapshotId::new("0af9").unwrap().as_str(), "0af9");
        assert!(SnapshotId::new("a".repeat(64)).is_ok());
        for bad in ["", "..", "../x", "a/b", "ABC", "xyz", " a", "a\0"] {
            assert!(
                matches!(SnapshotId::new(bad), Err(SnapshotError::InvalidId(_))),
                "{bad:?}"
            );
        }
        assert!(SnapshotId::new("a".repeat(65)).is_err());
    }

    #[test]
    fn generated_ids_validate() {
        let id = SnapshotId::generate();
        assert_eq!(SnapshotId::new(id.as_str()).unwrap(), id);
        assert_eq!(id.as_str().len(), 32);
    }
}
