//! The persistent result cache: a SQLite database at `<root>/cache.db`
//! that maps cache keys to committed snapshots, and remembers the content
//! hashes of local-context files by their `lstat` identity so that an
//! unchanged context is never re-read.
//!
//! This module owns the database file, its schema and migrations, and the
//! key/digest value types. It stores snapshot *ids* only: the snapshots
//! themselves belong to the snapshotter, which renames a snapshot into
//! place before the row naming it is committed here, so a row never points
//! at a half-written snapshot. It must not import the frontend
//! (`dockerfile`), the context reader (`source`), the solver or the CLI;
//! only `snapshot` (to measure and remove the trees rows name) and `util`.
//!
//! Several processes share one store with no daemon: `lease` says which
//! are alive and serialises work on one cache key, `usage` measures what
//! `bk du` shows, `prune` removes records without touching what a live
//! build uses.

mod cache_mounts;
mod db;
mod key;
mod layer_blobs;
mod lease;
mod prune;
mod record_type;
mod schema;
pub mod units;
mod usage;

use std::path::PathBuf;

pub use cache_mounts::{cache_mounts, prune_cache_mounts, CacheMount};
pub use db::{CacheDb, CachedResult, FileStamp, DB_FILE_NAME};
pub use key::{CacheKey, Digest, KeyProblem};
pub use layer_blobs::LayerBlob;
pub use lease::{clean_key_locks, live_processes, lock_key, KeyLock, LiveProcesses, ProcessLease};
pub use prune::{prune, FilterError, Filters, PruneOptions, Pruned};
pub use record_type::{RecordType, UnknownRecordType};
pub use schema::SCHEMA_VERSION;
pub use usage::{leased_snapshots, measure, RecordUsage, Usage};

use crate::util::fs::FsError;

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory could not be created.
    #[error("failed to create the cache directory")]
    CreateRoot(#[source] FsError),
    /// SQLite could not open (or create) the database file.
    #[error("failed to open cache database `{}`", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Setting the connection's busy timeout or journal mode failed.
    #[error("failed to configure cache database `{}`", path.display())]
    Configure {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The file system refused write-ahead logging (some network file
    /// systems do); without it readers and writers would block each other.
    #[error(
        "cache database `{}` cannot use write-ahead logging (journal mode stays `{mode}`)",
        path.display()
    )]
    EnableWal { path: PathBuf, mode: String },
    /// The schema could not be brought up to [`SCHEMA_VERSION`].
    #[error("failed to migrate cache database `{}` from schema version {from}", path.display())]
    Migrate {
        path: PathBuf,
        from: i64,
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer `bk` (or is not ours); touching
    /// it could destroy data that version relies on.
    #[error(
        "cache database `{}` has schema version {found}; this bk understands up to {supported}",
        path.display()
    )]
    CheckSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A string that is not `sha256:` followed by 64 lower-case hex digits.
    #[error("invalid cache key `{key}`: {problem}")]
    ParseKey { key: String, problem: KeyProblem },
    /// A size too large for SQLite's signed 64-bit integers.
    #[error("result size {size} does not fit the cache database")]
    StoreSize { size: u64 },
    #[error("failed to look up cache key `{key}`")]
    Get {
        key: CacheKey,
        #[source]
        source: rusqlite::Error,
    },
    #[error("failed to record cache key `{key}`")]
    Put {
        key: CacheKey,
        #[source]
        source: rusqlite::Error,
    },
    #[error("failed to remove cache key `{key}`")]
    Remove {
        key: CacheKey,
        #[source]
        source: rusqlite::Error,
    },
    #[error("failed to list cached results")]
    List(#[source] rusqlite::Error),
    /// A process or cache-key lock file could not be made or taken.
    #[error("failed to take a store lock")]
    ProcessLock(#[source] FsError),
    /// Listing the snapshot store failed.
    #[error("failed to measure the store")]
    Measure(#[source] crate::snapshot::SnapshotError),
    /// Walking a snapshot or the content store failed.
    #[error("failed to measure the store")]
    Walk(#[source] FsError),
    #[error("failed to read or update build leases")]
    Lease(#[source] rusqlite::Error),
    #[error("failed to remove cached results")]
    Prune(#[source] rusqlite::Error),
    #[error("failed to look up cached file checksums")]
    LookupFileChecksums(#[source] rusqlite::Error),
    #[error("failed to record file checksums")]
    RecordFileChecksums(#[source] rusqlite::Error),
    #[error("failed to look up a layer blob")]
    GetLayerBlob(#[source] rusqlite::Error),
    #[error("failed to record a layer blob")]
    PutLayerBlob(#[source] rusqlite::Error),
}
