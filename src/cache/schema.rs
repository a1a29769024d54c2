//! The cache database's schema and its migrations. The version lives in
//! SQLite's `PRAGMA user_version`; [`MIGRATIONS`]`[n]` takes a database
//! from version `n` to `n + 1`, so a new version is one appended entry and
//! old databases are upgraded step by step. Imports only rusqlite and its
//! parent's error type.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::CacheError;

/// Version 1.
///
/// `results` is the result cache proper. `file_checksums` remembers the
/// SHA-256 of a local-context file's contents under the `lstat` fields that
/// change whenever the contents can have changed; `path` is a BLOB because
/// Unix paths are bytes, not necessarily UTF-8. `ctime_ns` is in the key as
/// well as `mtime_ns` because tools that restore mtimes (`cp -p`, `rsync
/// -t`, `tar x`) cannot restore the change time.
pub(super) const V1: &str = "
CREATE TABLE results (
    cache_key    TEXT PRIMARY KEY NOT NULL,
    snapshot_id  TEXT NOT NULL,
    description  TEXT,
    size         INTEGER,
    created_at   INTEGER,
    last_used_at INTEGER,
    usage_count  INTEGER
);
-- A pruner evicts the least recently used results first.
CREATE INDEX results_by_last_use ON results (last_used_at);
CREATE TABLE file_checksums (
    path     BLOB PRIMARY KEY NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode    INTEGER NOT NULL,
    dev      INTEGER NOT NULL,
    mode     INTEGER NOT NULL,
    checksum TEXT NOT NULL
);
";

/// Version 2: `layer_blobs` remembers the image layer blob made from a
/// snapshot (diffed against its parent, with one compression), so that
/// exporting an unchanged build again compresses nothing. `snapshot_id`
/// is the child snapshot the blob was made from.
const V2: &str = "
CREATE TABLE layer_blobs (
    layer_key   TEXT PRIMARY KEY NOT NULL,
    snapshot_id TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    digest      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    diff_id     TEXT NOT NULL
);
";

/// Version 3: what `bk du` and pruning need.
///
/// `record_type` says what made a row (`regular`, `source.local` for a
/// context read in place — those rows have an empty `snapshot_id` and
/// nothing on disk —, `frozen` for an unpacked image layer,
/// `exec.cachemount`); V1 rows get it from what V1 wrote. `parent_snapshot`
/// is the snapshot a result was cloned from: the two share every inode the
/// step did not change, so removing the parent frees only what the child
/// does not share (sizes are measured from the inodes, not stored).
/// `leases` pins a snapshot for a running `bk` process; `owner` names the
/// process's lock file under `<root>/locks/proc/`, and a lease whose
/// owner's lock is no longer held (the process died) counts for nothing.
const V3: &str = "
ALTER TABLE results ADD COLUMN record_type TEXT NOT NULL DEFAULT 'regular';
ALTER TABLE results ADD COLUMN parent_snapshot TEXT;
UPDATE results SET record_type = 'source.local' WHERE snapshot_id = '';
UPDATE results SET record_type = 'frozen' WHERE description LIKE 'layer sha256:%';
CREATE INDEX results_by_snapshot ON results (snapshot_id);
CREATE TABLE leases (
    owner       TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    PRIMARY KEY (owner, snapshot_id)
) WITHOUT ROWID;
CREATE INDEX leases_by_snapshot ON leases (snapshot_id);
";

const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Brings the database at `path` up to [`SCHEMA_VERSION`]. Opening an
/// up-to-date database only reads the version; a migration runs inside an
/// immediate (write-locked) transaction and re-reads the version there, so
/// two processes opening a new database at once migrate it once.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), CacheError> {
    let configure = |source| CacheError::Configure {
        path: path.to_path_buf(),
        source,
    };
    let found = user_version(conn).map_err(configure)?;
    check_supported(found, path)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let migrate_error = |source| CacheError::Migrate {
        path: path.to_path_buf(),
        from: found,
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(migrate_error)?;
    let found = user_version(&tx).map_err(migrate_error)?;
    check_supported(found, path)?;
    for step in MIGRATIONS.iter().skip(found as usize) {
        tx.execute_batch(step).map_err(migrate_error)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(migrate_error)?;
    tx.commit().map_err(migrate_error)
}

fn check_supported(found: i64, path: &Path) -> Result<(), CacheError> {
    if (0..=SCHEMA_VERSION).contains(&found) {
        Ok(())
    } else {
        Err(CacheError::CheckSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        })
    }
}
