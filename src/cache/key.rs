//! The value types of content addressing: a SHA-256 [`Digest`] and the
//! validated [`CacheKey`] string (`sha256:<64 hex>`) the result table is
//! keyed on. Pure values; imports nothing beyond its parent's error type.

use std::fmt;

use sha2::{Digest as _, Sha256};

use super::CacheError;

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

/// What is wrong with a would-be cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// It does not start with `sha256:`.
    Algorithm,
    /// The hex part is not 64 characters long.
    Length(usize),
    /// A character other than `0-9a-f`; upper case is refused because
    /// OCI digests are lower-case and two spellings of one key would make
    /// two rows.
    Hex,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::Algorithm => write!(f, "expected the `{PREFIX}` algorithm prefix"),
            KeyProblem::Length(n) => write!(f, "expected {HEX_LEN} hex digits, found {n}"),
            KeyProblem::Hex => f.write_str("expected only lower-case hex digits after `sha256:`"),
        }
    }
}

/// A SHA-256 digest. Shown as `sha256:<hex>`, the OCI spelling.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(Sha256::digest(data).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lower-case hex digits, without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lower-case hex digits (no algorithm prefix).
    pub fn from_hex(text: &str) -> Result<Digest, KeyProblem> {
        if text.len() != HEX_LEN {
            return Err(KeyProblem::Length(text.len()));
        }
        if !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(KeyProblem::Hex);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| KeyProblem::Hex)?;
        Ok(Digest(bytes))
    }

    /// Parses `sha256:<hex>`.
    pub fn parse(text: &str) -> Result<Digest, KeyProblem> {
        let hex = text.strip_prefix(PREFIX).ok_or(KeyProblem::Algorithm)?;
        Digest::from_hex(hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The key of one cached result: `sha256:` and 64 lower-case hex digits.
/// Validated on construction so that the database only ever holds keys in
/// one spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn parse(text: &str) -> Result<CacheKey, CacheError> {
        match Digest::parse(text) {
            Ok(_) => Ok(CacheKey(text.to_owned())),
            Err(problem) => Err(CacheError::ParseKey {
                key: text.to_owned(),
                problem,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> Digest {
        // Validated in every constructor, so this cannot fail; fall back to
        // the zero digest rather than panic if that ever changes.
        Digest::parse(&self.0).unwrap_or(Digest([0; 32]))
    }
}

impl From<Digest> for CacheKey {
    fn from(digest: Digest) -> CacheKey {
        CacheKey(digest.to_string())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_is_the_well_known_value() {
        assert_eq!(Digest::of(b"").to_string(), GOOD);
        assert_eq!(Digest::parse(GOOD).unwrap(), Digest::of(b""));
    }

    #[test]
    fn cache_key_accepts_only_lower_case_sha256() {
        let key = CacheKey::parse(GOOD).unwrap();
        assert_eq!(key.as_str(), GOOD);
        assert_eq!(key.digest(), Digest::of(b""));
        assert_eq!(CacheKey::from(Digest::of(b"")), key);

        let cases: &[(&str, KeyProblem)] = &[
            ("", KeyProblem::Algorithm),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                KeyProblem::Algorithm,
            ),
            ("sha512:e3b0", KeyProblem::Algorithm),
            ("sha256:", KeyProblem::Length(0)),
            ("sha256:e3b0", KeyProblem::Length(4)),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                KeyProblem::Hex,
            ),
            (
                "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                KeyProblem::Hex,
            ),
        ];
        for (text, want) in cases {
            match CacheKey::parse(text) {
                Err(CacheError::ParseKey { key, problem }) => {
                    assert_eq!(&key, text);
                    assert_eq!(problem, *want, "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let err = CacheKey::parse("sha256:xyz").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid cache key `sha256:xyz`: expected 64 hex digits, found 3"
        );
    }
}
