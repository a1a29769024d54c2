//! [`CacheDb`]: one connection to `<root>/cache.db` and the queries on it.
//! Several `bk` processes may share a cache directory, so the database runs
//! in write-ahead-log mode (readers never block the writer) with a busy
//! timeout (writers queue instead of failing), and every multi-statement
//! write takes the write lock up front (`BEGIN IMMEDIATE`): a deferred
//! transaction that reads first and then writes can fail with
//! `SQLITE_BUSY` without waiting when another process wrote in between.
//! Imports only `util` and its siblings.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::types::Type;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};

use super::key::{CacheKey, Digest};
use super::record_type::RecordType;
use super::{schema, CacheError};
use crate::util::fs;

/// The database's file name inside the cache root.
pub const DB_FILE_NAME: &str = "cache.db";

/// How long a statement waits for another process's write lock before
/// giving up. Long, because the alternative is a failed build.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// One row of the result table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResult {
    pub key: CacheKey,
    /// The snapshotter's id of the committed result.
    pub snapshot_id: String,
    /// Human-readable origin (`[stage 2/5] RUN make`), for `bk du` and
    /// pruning messages.
    pub description: String,
    /// Bytes on disk, as reported by whoever committed the snapshot.
    pub size: u64,
    pub created_at: SystemTime,
    pub last_used_at: SystemTime,
    /// How many times [`CacheDb::get`] returned this result.
    pub usage_count: u64,
    /// What made the row.
    pub kind: RecordType,
    /// The snapshot this result was cloned from (shares its inodes).
    pub parent: Option<String>,
}

/// Columns every query returning [`CachedResult`]s selects, in
/// [`read_result`]'s order.
const RESULT_COLUMNS: &str = "cache_key, snapshot_id, description, size, created_at, \
     last_used_at, usage_count, record_type, parent_snapshot";

/// The `lstat` fields a cached file checksum is valid for: if any of them
/// differs, the file may have changed and must be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub dev: u64,
    /// The whole `st_mode`: file type and permission bits.
    pub mode: u32,
}

/// An open cache database. The connection sits behind a mutex so that one
/// `CacheDb` can be shared by a build's threads; separate processes (or
/// separate `CacheDb`s) coordinate through SQLite's file locks.
#[derive(Debug)]
pub struct CacheDb {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The process lease (see `lease`) that rows read or written through
    /// this connection are pinned for; unset: nothing is pinned.
    lease_owner: OnceLock<String>,
}

impl CacheDb {
    /// Opens `<root>/cache.db`, creating the directory and the database if
    /// needed and migrating an older schema.
    pub fn open(root: &Path) -> Result<CacheDb, CacheError> {
        fs::create_dir_all(root).map_err(CacheError::CreateRoot)?;
        let path = root.join(DB_FILE_NAME);
        let mut conn = Connection::open(&path).map_err(|source| CacheError::Open {
            path: path.clone(),
            source,
        })?;
        let configure = |source| CacheError::Configure {
            path: path.clone(),
            source,
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(configure)?;
        enable_wal(&conn, &path)?;
        // Safe with WAL (no corruption on power loss; at worst the last
        // commits are lost, which for a cache means recomputing them) and
        // avoids an fsync per commit.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(configure)?;
        schema::migrate(&mut conn, &path)?;
        Ok(CacheDb {
            path,
            conn: Mutex::new(conn),
            lease_owner: OnceLock::new(),
        })
    }

    /// From now on, every snapshot [`CacheDb::get`] returns or
    /// [`CacheDb::put`] records is leased to `owner` (a live process's
    /// lease name), in the same transaction, so a concurrent prune cannot
    /// remove it between the lookup and its use. Set once.
    pub fn set_lease_owner(&self, owner: &str) {
        let _ = self.lease_owner.set(owner.to_string());
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open
        // (rusqlite rolls back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The result stored under `key`, counting this as a use (last-used
    /// time and use count are updated in the same statement).
    pub fn get(&self, key: &CacheKey) -> Result<Option<CachedResult>, CacheError> {
        let mut conn = self.conn();
        let get_error = |source| CacheError::Get {
            key: key.clone(),
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(get_error)?;
        let row = tx
            .prepare_cached(&format!(
                "UPDATE results SET last_used_at = ?2, usage_count = coalesce(usage_count, 0) + 1
                 WHERE cache_key = ?1 RETURNING {RESULT_COLUMNS}"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(params![key.as_str(), now_ms()], read_result)
                    .optional()
            })
            .map_err(get_error)?;
        if let Some(row) = &row {
            self.lease(&tx, &row.snapshot_id).map_err(get_error)?;
        }
        tx.commit().map_err(get_error)?;
        Ok(row)
    }

    fn lease(&self, tx: &Connection, snapshot_id: &str) -> rusqlite::Result<()> {
        match self.lease_owner.get() {
            Some(owner) if !snapshot_id.is_empty() => tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO leases (owner, snapshot_id) VALUES (?1, ?2)",
                )?
                .execute(params![owner, snapshot_id])
                .map(drop),
            _ => Ok(()),
        }
    }

    /// Records that `key`'s result is the committed snapshot `snapshot_id`.
    /// The snapshot must already be in place: a row is only ever written
    /// for a snapshot that exists. Re-putting the same snapshot keeps its
    /// creation time and use count. Returns the snapshot this replaced, if
    /// the key named a different one, so the caller can release it.
    pub fn put(
        &self,
        key: &CacheKey,
        snapshot_id: &str,
        description: &str,
        size: u64,
    ) -> Result<Option<String>, CacheError> {
        let kind = if snapshot_id.is_empty() {
            RecordType::SourceLocal
        } else {
            RecordType::Regular
        };
        self.put_record(key, snapshot_id, description, size, kind, None)
    }

    /// [`CacheDb::put`] with the record's type and the snapshot it was
    /// cloned from.
    pub fn put_record(
        &self,
        key: &CacheKey,
        snapshot_id: &str,
        description: &str,
        size: u64,
        kind: RecordType,
        parent: Option<&str>,
    ) -> Result<Option<String>, CacheError> {
        let size = i64::try_from(size).map_err(|_| CacheError::StoreSize { size })?;
        let mut conn = self.conn();
        let put_error = |source| CacheError::Put {
            key: key.clone(),
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(put_error)?;
        let previous: Option<String> = tx
            .query_row(
                "SELECT snapshot_id FROM results WHERE cache_key = ?1",
                [key.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(put_error)?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO results
                 (cache_key, snapshot_id, description, size, created_at, last_used_at, usage_count,
                  record_type, parent_snapshot)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, ?6, ?7)
             ON CONFLICT (cache_key) DO UPDATE SET
                 description = excluded.description,
                 record_type = excluded.record_type,
                 parent_snapshot = excluded.parent_snapshot,
                 size = excluded.size,
                 last_used_at = excluded.last_used_at,
                 created_at = CASE WHEN snapshot_id = excluded.snapshot_id
                                   THEN created_at ELSE excluded.created_at END,
                 usage_count = CASE WHEN snapshot_id = excluded.snapshot_id
                                    THEN usage_count ELSE 0 END,
                 snapshot_id = excluded.snapshot_id",
            params![
                key.as_str(),
                snapshot_id,
                description,
                size,
                now,
                kind.as_str(),
                parent
            ],
        )
        .map_err(put_error)?;
        self.lease(&tx, snapshot_id).map_err(put_error)?;
        tx.commit().map_err(put_error)?;
        Ok(previous.filter(|old| old != snapshot_id))
    }

    /// Deletes `key`'s row, returning it; the snapshot it named is the
    /// caller's to release.
    pub fn remove(&self, key: &CacheKey) -> Result<Option<CachedResult>, CacheError> {
        let conn = self.conn();
        conn.prepare_cached(&format!(
            "DELETE FROM results WHERE cache_key = ?1 RETURNING {RESULT_COLUMNS}"
        ))
        .and_then(|mut stmt| stmt.query_row([key.as_str()], read_result).optional())
        .map_err(|source| CacheError::Remove {
            key: key.clone(),
            source,
        })
    }

    /// Every cached result, least recently used first (the order a pruner
    /// evicts in), ties broken by key.
    pub fn list(&self) -> Result<Vec<CachedResult>, CacheError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RESULT_COLUMNS} FROM results ORDER BY last_used_at, cache_key"
            ))
            .map_err(CacheError::List)?;
        let rows = stmt.query_map([], read_result).map_err(CacheError::List)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(CacheError::List)
    }

    /// The sum of the recorded tree sizes (an upper bound of the space the
    /// snapshots take: shared inodes count in every tree) and the oldest
    /// last-used time, for deciding cheaply whether GC has work.
    pub fn totals(&self) -> Result<(u64, Option<SystemTime>), CacheError> {
        self.conn()
            .query_row(
                "SELECT coalesce(sum(size), 0), min(last_used_at) FROM results",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?)),
            )
            .map(|(sum, oldest)| {
                (
                    u64::try_from(sum).unwrap_or(0),
                    oldest.map(Some).map(from_ms),
                )
            })
            .map_err(CacheError::List)
    }

    /// Every blob digest the cache refers to: exported layer blobs and
    /// pulled image layers (`layer <digest>` rows).
    pub fn referenced_blobs(&self) -> Result<HashSet<String>, CacheError> {
        let conn = self.conn();
        let mut out = HashSet::new();
        let mut stmt = conn
            .prepare_cached(
                "SELECT digest FROM layer_blobs
                 UNION SELECT substr(description, 7) FROM results
                       WHERE description LIKE 'layer sha256:%'",
            )
            .map_err(CacheError::List)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(CacheError::List)?;
        for row in rows {
            out.insert(row.map_err(CacheError::List)?);
        }
        Ok(out)
    }

    /// The owners that hold at least one lease.
    pub fn lease_owners(&self) -> Result<Vec<String>, CacheError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT owner FROM leases")
            .map_err(CacheError::Lease)?;
        let rows = stmt
            .query_map([], |row| row.get(0))
            .map_err(CacheError::Lease)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(CacheError::Lease)
    }

    /// Drops every lease `owner` holds (at exit, or for a dead process).
    pub fn release_leases(&self, owner: &str) -> Result<(), CacheError> {
        self.conn()
            .prepare_cached("DELETE FROM leases WHERE owner = ?1")
            .and_then(|mut stmt| stmt.execute([owner]))
            .map(drop)
            .map_err(CacheError::Lease)
    }

    /// The snapshots leased by any of `live` (the owners whose processes
    /// are running).
    pub fn leased_snapshots(&self, live: &HashSet<String>) -> Result<HashSet<String>, CacheError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT owner, snapshot_id FROM leases")
            .map_err(CacheError::Lease)?;
        let rows = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))
            .map_err(CacheError::Lease)?;
        let mut out = HashSet::new();
        for row in rows {
            let (owner, snapshot) = row.map_err(CacheError::Lease)?;
            if live.contains(&owner) {
                out.insert(snapshot);
            }
        }
        Ok(out)
    }

    /// Deletes the rows of `keys` whose snapshot no process in `live`
    /// leases, checking the leases and deleting in one write transaction
    /// (so a build's [`CacheDb::get`] either leased the snapshot first or
    /// finds the row gone). Returns the deleted rows and, of their
    /// snapshots, those no remaining row names (the caller removes them).
    pub fn remove_unleased(
        &self,
        keys: &[CacheKey],
        live: &HashSet<String>,
    ) -> Result<(Vec<CachedResult>, Vec<String>), CacheError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(CacheError::Prune)?;
        let mut removed = Vec::new();
        let mut freed = Vec::new();
        {
            let mut leased_stmt = tx
                .prepare_cached("SELECT owner FROM leases WHERE snapshot_id = ?1")
                .map_err(CacheError::Prune)?;
            let mut delete = tx
                .prepare_cached(&format!(
                    "DELETE FROM results WHERE cache_key = ?1 RETURNING {RESULT_COLUMNS}"
                ))
                .map_err(CacheError::Prune)?;
            let mut still_named = tx
                .prepare_cached("SELECT 1 FROM results WHERE snapshot_id = ?1 LIMIT 1")
                .map_err(CacheError::Prune)?;
            for key in keys {
                let snapshot: Option<String> = tx
                    .query_row(
                        "SELECT snapshot_id FROM results WHERE cache_key = ?1",
                        [key.as_str()],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(CacheError::Prune)?;
                let Some(snapshot) = snapshot else { continue };
                let owners = leased_stmt
                    .query_map([&snapshot], |row| row.get::<_, String>(0))
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(CacheError::Prune)?;
                if owners.iter().any(|o| live.contains(o)) {
                    continue;
                }
                let row = delete
                    .query_row([key.as_str()], read_result)
                    .map_err(CacheError::Prune)?;
                removed.push(row);
                let named = still_named.exists([&snapshot]).map_err(CacheError::Prune)?;
                if !snapshot.is_empty() && !named {
                    // Its layer blob no longer has a snapshot to stand for.
                    tx.execute(
                        "DELETE FROM layer_blobs WHERE snapshot_id = ?1",
                        [&snapshot],
                    )
                    .map_err(CacheError::Prune)?;
                    freed.push(snapshot);
                }
            }
        }
        tx.commit().map_err(CacheError::Prune)?;
        freed.sort();
        freed.dedup();
        Ok((removed, freed))
    }

    /// The remembered content digest of each file, or `None` where there is
    /// none for exactly that path and stamp. All lookups read one snapshot
    /// of the database.
    pub fn lookup_file_checksums(
        &self,
        files: &[(&Path, FileStamp)],
    ) -> Result<Vec<Option<Digest>>, CacheError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(CacheError::LookupFileChecksums)?;
        let mut out = Vec::with_capacity(files.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT checksum FROM file_checksums
                     WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3 AND ctime_ns = ?4
                       AND inode = ?5 AND dev = ?6 AND mode = ?7",
                )
                .map_err(CacheError::LookupFileChecksums)?;
            for (path, stamp) in files {
                let found: Option<String> = stmt
                    .query_row(stamp_params(path, stamp), |row| row.get(0))
                    .optional()
                    .map_err(CacheError::LookupFileChecksums)?;
                // A row that does not parse (written by something else, or
                // damaged) is a miss: the file is re-hashed and the row
                // overwritten, rather than failing every build.
                out.push(found.and_then(|hex| Digest::from_hex(&hex).ok()));
            }
        }
        tx.commit().map_err(CacheError::LookupFileChecksums)?;
        Ok(out)
    }

    /// Remembers each file's content digest under its path and stamp,
    /// replacing what was known for the path. One transaction.
    pub fn record_file_checksums(
        &self,
        files: &[(&Path, FileStamp, Digest)],
    ) -> Result<(), CacheError> {
        if files.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(CacheError::RecordFileChecksums)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO file_checksums
                         (path, size, mtime_ns, ctime_ns, inode, dev, mode, checksum)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(CacheError::RecordFileChecksums)?;
            for (path, stamp, digest) in files {
                let [p, size, mtime, ctime, inode, dev, mode] = stamp_params(path, stamp);
                stmt.execute(params![
                    p,
                    size,
                    mtime,
                    ctime,
                    inode,
                    dev,
                    mode,
                    digest.hex()
                ])
                .map_err(CacheError::RecordFileChecksums)?;
            }
        }
        tx.commit().map_err(CacheError::RecordFileChecksums)
    }
}

/// The parameters `path, size, mtime_ns, ctime_ns, inode, dev, mode` as
/// SQLite values. Unsigned 64-bit fields are stored as the signed integer
/// with the same bits: SQLite has no unsigned type, and the values are only
/// ever compared for equality, which the reinterpretation preserves.
fn stamp_params(path: &Path, stamp: &FileStamp) -> [rusqlite::types::Value; 7] {
    use rusqlite::types::Value;
    [
        Value::Blob(path.as_os_str().as_bytes().to_vec()),
        Value::Integer(stamp.size as i64),
        Value::Integer(stamp.mtime_ns),
        Value::Integer(stamp.ctime_ns),
        Value::Integer(stamp.inode as i64),
        Value::Integer(stamp.dev as i64),
        Value::Integer(i64::from(stamp.mode)),
    ]
}

fn read_result(row: &Row<'_>) -> rusqlite::Result<CachedResult> {
    let key: String = row.get(0)?;
    let key = CacheKey::parse(&key)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)))?;
    let size: Option<i64> = row.get(3)?;
    let size = u64::try_from(size.unwrap_or(0))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Integer, Box::new(e)))?;
    let count: Option<i64> = row.get(6)?;
    let count = u64::try_from(count.unwrap_or(0))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(6, Type::Integer, Box::new(e)))?;
    let kind: String = row.get(7)?;
    let kind = kind
        .parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, Type::Text, Box::new(e)))?;
    Ok(CachedResult {
        key,
        snapshot_id: row.get(1)?,
        description: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
        size,
        created_at: from_ms(row.get(4)?),
        last_used_at: from_ms(row.get(5)?),
        usage_count: count,
        kind,
        parent: row.get(8)?,
    })
}

/// Milliseconds since the Unix epoch; a clock set before 1970 counts as
/// the epoch rather than failing a build.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_ms(ms: Option<i64>) -> SystemTime {
    let ms = u64::try_from(ms.unwrap_or(0)).unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Switches a new database to write-ahead logging. The mode is stored in
/// the file, so it is only changed when it is not WAL already — i.e. once,
/// right after creation. Changing it needs an exclusive lock and SQLite
/// reports `SQLITE_BUSY` at once, without its busy handler, when another
/// connection is doing the same; so when several processes create the
/// database together, the losers wait here and then find WAL already set.
fn enable_wal(conn: &Connection, path: &Path) -> Result<(), CacheError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    let mode = loop {
        match switch_to_wal(conn) {
            Ok(mode) => break mode,
            Err(e)
                if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(CacheError::Configure {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    };
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(CacheError::EnableWal {
            path: path.to_path_buf(),
            mode,
        })
    }
}

/// The journal mode after switching to WAL if it was not WAL yet.
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(mode);
    }
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::SCHEMA_VERSION;
    use std::sync::{Arc, Barrier};

    fn key(n: u32) -> CacheKey {
        CacheKey::from(Digest::of(&n.to_le_bytes()))
    }

    fn raw(dir: &Path) -> Connection {
        Connection::open(dir.join(DB_FILE_NAME)).unwrap()
    }

    #[test]
    fn results_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nested/cache");
        {
            let db = CacheDb::open(&root).unwrap();
            assert_eq!(db.path(), root.join("cache.db"));
            assert_eq!(db.put(&key(1), "snap-1", "RUN make", 4096).unwrap(), None);
            assert_eq!(db.put(&key(2), "snap-2", "COPY . .", 10).unwrap(), None);
            assert!(db.remove(&key(2)).unwrap().is_some());
        }
        let db = CacheDb::open(&root).unwrap();
        let got = db.get(&key(1)).unwrap().unwrap();
        assert_eq!(got.key, key(1));
        assert_eq!(got.snapshot_id, "snap-1");
        assert_eq!(got.description, "RUN make");
        assert_eq!(got.size, 4096);
        assert_eq!(got.usage_count, 1);
        assert!(got.last_used_at >= got.created_at);
        assert_eq!(db.get(&key(2)).unwrap(), None);
        assert_eq!(db.get(&key(3)).unwrap(), None);
        assert_eq!(db.list().unwrap(), vec![got]);
    }

    #[test]
    fn get_counts_uses_and_put_reports_the_replaced_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let db = CacheDb::open(dir.path()).unwrap();
        db.put(&key(1), "a", "first", 1).unwrap();
        db.get(&key(1)).unwrap();
        assert_eq!(db.get(&key(1)).unwrap().unwrap().usage_count, 2);
        // Same snapshot again: nothing replaced, uses kept.
        assert_eq!(db.put(&key(1), "a", "again", 2).unwrap(), None);
        let row = db.list().unwrap().remove(0);
        assert_eq!(
            (row.usage_count, row.description.as_str(), row.size),
            (2, "again", 2)
        );
        // A different snapshot: the old one is handed back, uses restart.
        assert_eq!(db.put(&key(1), "b", "new", 3).unwrap(), Some("a".into()));
        let row = db.remove(&key(1)).unwrap().unwrap();
        assert_eq!((row.snapshot_id.as_str(), row.usage_count), ("b", 0));
        assert_eq!(db.remove(&key(1)).unwrap(), None);
        assert!(db.list().unwrap().is_empty());
        assert!(matches!(
            db.put(&key(2), "c", "", u64::MAX),
            Err(CacheError::StoreSize { size: u64::MAX })
        ));
    }

    #[test]
    fn schema_version_and_wal_are_recorded_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        CacheDb::open(dir.path()).unwrap();
        let conn = raw(dir.path());
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 3);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            ["file_checksums", "layer_blobs", "leases", "results"]
        );
    }

    #[test]
    fn a_v1_database_is_migrated_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = raw(dir.path());
            conn.execute_batch(schema::V1).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO results VALUES (?1, '', 'load context', 0, 1, 1, 0),
                                            (?2, 'ab', 'layer sha256:00', 0, 1, 1, 0),
                                            (?3, 'cd', 'COPY a b', 9, 1, 2, 3)",
                params![key(1).as_str(), key(2).as_str(), key(3).as_str()],
            )
            .unwrap();
        }
        let db = CacheDb::open(dir.path()).unwrap();
        let kind = |n| db.get(&key(n)).unwrap().unwrap().kind;
        assert_eq!(kind(1), RecordType::SourceLocal);
        assert_eq!(kind(2), RecordType::Frozen);
        assert_eq!(kind(3), RecordType::Regular);
        assert_eq!(db.get(&key(3)).unwrap().unwrap().usage_count, 5);
    }

    #[test]
    fn leased_rows_survive_removal_until_their_owner_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let db = CacheDb::open(dir.path()).unwrap();
        db.set_lease_owner("me");
        db.put(&key(1), "aa", "x", 1).unwrap();
        let other = CacheDb::open(dir.path()).unwrap();
        other.put(&key(2), "bb", "y", 1).unwrap();
        other.put(&key(3), "bb", "z", 1).unwrap();
        let live: HashSet<String> = ["me".to_string()].into();
        let (removed, freed) = other.remove_unleased(&[key(1), key(2)], &live).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].key, key(2));
        // `bb` is still named by key 3.
        assert!(freed.is_empty());
        let (_, freed) = other.remove_unleased(&[key(3)], &live).unwrap();
        assert_eq!(freed, ["bb"]);
        // Once "me" is dead, its lease counts for nothing.
        let (removed, freed) = other.remove_unleased(&[key(1)], &HashSet::new()).unwrap();
        assert_eq!((removed.len(), freed), (1, vec!["aa".to_string()]));
        db.release_leases("me").unwrap();
        assert!(db.lease_owners().unwrap().is_empty());
    }

    #[test]
    fn newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        CacheDb::open(dir.path()).unwrap();
        raw(dir.path())
            .pragma_update(None, "user_version", 99)
            .unwrap();
        match CacheDb::open(dir.path()) {
            Err(CacheError::CheckSchema {
                found: 99,
                supported: 3,
                path,
            }) => assert_eq!(path, dir.path().join(DB_FILE_NAME)),
            other => panic!("{other:?}"),
        }
        let version: i64 = raw(dir.path())
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 99);
    }

    #[test]
    fn open_fails_naming_the_root_it_could_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = CacheDb::open(&file.join("cache")).unwrap_err();
        assert!(matches!(err, CacheError::CreateRoot(_)), "{err:?}");
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains(&file.display().to_string()), "{cause}");
    }

    #[test]
    fn concurrent_connections_create_and_write_without_failing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(dir.path().join("shared"));
        const THREADS: u32 = 4;
        const ROWS: u32 = 50;
        let barrier = Arc::new(Barrier::new(THREADS as usize));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let root = Arc::clone(&root);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || -> Result<(), CacheError> {
                    // All threads create the database at the same moment.
                    barrier.wait();
                    let db = CacheDb::open(&root)?;
                    for i in 0..ROWS {
                        let k = key(t * 1000 + i);
                        db.put(&k, &format!("snap-{t}-{i}"), "", u64::from(i))?;
                        db.get(&k)?;
                        db.get(&key(i))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
        let db = CacheDb::open(&root).unwrap();
        assert_eq!(db.list().unwrap().len(), (THREADS * ROWS) as usize);
    }

    #[test]
    fn file_checksums_match_only_the_exact_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let db = CacheDb::open(dir.path()).unwrap();
        let stamp = FileStamp {
            size: 3,
            mtime_ns: -5,
            ctime_ns: 7,
            inode: u64::MAX,
            dev: 1 << 63,
            mode: 0o100644,
        };
        let path = Path::new("/ctx/\u{e9}/file");
        let digest = Digest::of(b"abc");
        db.record_file_checksums(&[(path, stamp, digest)]).unwrap();
        assert_eq!(
            db.lookup_file_checksums(&[(path, stamp)]).unwrap(),
            vec![Some(digest)]
        );
        let changed = [
            FileStamp { size: 4, ..stamp },
            FileStamp {
                mtime_ns: 0,
                ..stamp
            },
            FileStamp {
                ctime_ns: 8,
                ..stamp
            },
            FileStamp { inode: 1, ..stamp },
            FileStamp { dev: 1, ..stamp },
            FileStamp {
                mode: 0o100755,
                ..stamp
            },
        ];
        let queries: Vec<_> = changed.iter().map(|s| (path, *s)).collect();
        assert_eq!(db.lookup_file_checksums(&queries).unwrap(), vec![None; 6]);
        assert_eq!(
            db.lookup_file_checksums(&[(Path::new("/ctx/other"), stamp)])
                .unwrap(),
            vec![None]
        );
        // Non-UTF-8 paths are stored as the bytes they are.
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/ctx/\xff"));
        db.record_file_checksums(&[(odd, stamp, digest)]).unwrap();
        assert_eq!(
            db.lookup_file_checksums(&[(odd, stamp), (path, stamp)])
                .unwrap(),
            vec![Some(digest), Some(digest)]
        );
        // A damaged row is a miss, not an error.
        raw(dir.path())
            .execute("UPDATE file_checksums SET checksum = 'zz'", [])
            .unwrap();
        assert_eq!(
            db.lookup_file_checksums(&[(path, stamp)]).unwrap(),
            vec![None]
        );
    }
}
