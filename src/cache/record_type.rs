//! [`RecordType`]: what kind of step made a cache row, named as BuildKit's
//! `bk du` / `buildx du` name them so that `--filter type=…` reads the
//! same. Imports nothing from the project.

use std::fmt;
use std::str::FromStr;

/// What made a cache row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// A step's result (COPY, RUN, merge…).
    Regular,
    /// A build context read in place: no snapshot, nothing on disk.
    SourceLocal,
    /// An unpacked image layer.
    Frozen,
    /// A `RUN --mount=type=cache` directory.
    ExecCacheMount,
}

impl RecordType {
    pub const ALL: [RecordType; 4] = [
        RecordType::Regular,
        RecordType::SourceLocal,
        RecordType::Frozen,
        RecordType::ExecCacheMount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Regular => "regular",
            RecordType::SourceLocal => "source.local",
            RecordType::Frozen => "frozen",
            RecordType::ExecCacheMount => "exec.cachemount",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A type name no row carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown record type `{0}` (expected regular, source.local, frozen or exec.cachemount)")]
pub struct UnknownRecordType(pub String);

impl FromStr for RecordType {
    type Err = UnknownRecordType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownRecordType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in RecordType::ALL {
            assert_eq!(t.as_str().parse::<RecordType>().unwrap(), t);
        }
        assert!("internal".parse::<RecordType>().is_err());
    }
}
