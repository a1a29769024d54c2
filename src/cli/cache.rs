//! `bk du` and `bk cache prune`, shaped like `buildx du` / `buildx prune`,
//! and the automatic GC a build runs when it finishes.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::cache::units::{human_duration, human_size, parse_duration, parse_size};
use crate::cache::{self, CacheDb, Filters, ProcessLease, PruneOptions, RecordUsage, Usage};
use crate::content::ContentStore;
use crate::snapshot::Store;

use super::gc_config;

/// `bk du`
#[derive(Debug, Args)]
pub struct DuArgs {
    /// Provide filter values (type=regular, id=PREFIX, description~=TEXT, until=24h)
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Print every record's details
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove build cache
    Prune(PruneArgs),
}

/// `bk cache prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Include cache mounts (everything, not just layer cache)
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Amount of disk space to keep for cache
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Keep data newer than this limit
    #[arg(long, value_name = "DURATION")]
    pub keep_duration: Option<String>,
    /// Provide filter values (type=regular, id=PREFIX, description~=TEXT, until=24h)
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(long, short = 'f')]
    pub force: bool,
}

/// The store a cache command works on, opened as a live process.
struct Session {
    store: Store,
    db: CacheDb,
    _lease: ProcessLease,
}

fn open(root: &Path) -> anyhow::Result<Session> {
    let lease = ProcessLease::acquire(root)
        .with_context(|| format!("failed to lock the store at {}", root.display()))?;
    let store = Store::open(root)
        .with_context(|| format!("failed to open the store at {}", root.display()))?;
    let db = CacheDb::open(root)
        .with_context(|| format!("failed to open the build cache at {}", root.display()))?;
    Ok(Session {
        store,
        db,
        _lease: lease,
    })
}

pub fn du(args: DuArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let filters = Filters::parse(&args.filter)?;
    let s = open(root)?;
    let live = cache::live_processes(root)?;
    let leased = cache::leased_snapshots(&s.db, &live)?;
    let usage = cache::measure(&s.store, &s.db, &leased)?;
    let now = SystemTime::now();
    let mut out = std::io::stdout().lock();
    let rows: Vec<&RecordUsage> = usage
        .records
        .iter()
        .filter(|r| filters.matches(&r.record, now))
        .collect();
    if args.verbose {
        for r in &rows {
            write_verbose(&mut out, r, now)?;
        }
    } else {
        write_table(&mut out, &rows, now)?;
    }
    let mounts: u64 = cache::cache_mounts(root).iter().map(|m| m.size).sum();
    write_totals(&mut out, &usage, mounts, &rows, filters.is_empty())?;
    Ok(ExitCode::SUCCESS)
}

/// The id column: the key's hex digits, cut like BuildKit's record ids;
/// `id=` filters match any prefix of the full key.
fn short_id(r: &RecordUsage) -> String {
    let key = r.record.key.as_str();
    let hex = key.strip_prefix("sha256:").unwrap_or(key);
    let mut id = hex[..hex.len().min(25)].to_string();
    if r.in_use {
        id.push('*');
    }
    id
}

fn ago(t: SystemTime, now: SystemTime) -> String {
    format!(
        "{} ago",
        human_duration(now.duration_since(t).unwrap_or_default())
    )
}

fn write_table(
    out: &mut impl Write,
    rows: &[&RecordUsage],
    now: SystemTime,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<27} {:<12} {:<12} LAST ACCESSED",
        "ID", "RECLAIMABLE", "SIZE"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<27} {:<12} {:<12} {}",
            short_id(r),
            r.reclaimable(),
            human_size(r.size),
            ago(r.record.last_used_at, now)
        )?;
    }
    Ok(())
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn write_verbose(out: &mut impl Write, r: &RecordUsage, now: SystemTime) -> std::io::Result<()> {
    let rec = &r.record;
    writeln!(out, "ID:\t\t{}", rec.key)?;
    if let Some(parent) = &rec.parent {
        writeln!(out, "Parent:\t\t{parent}")?;
    }
    if !rec.snapshot_id.is_empty() {
        writeln!(out, "Snapshot:\t{}", rec.snapshot_id)?;
    }
    writeln!(out, "Created at:\t{}", rfc3339(rec.created_at))?;
    writeln!(out, "Mutable:\tfalse")?;
    writeln!(out, "Reclaimable:\t{}", r.reclaimable())?;
    writeln!(out, "In use:\t\t{}", r.in_use)?;
    writeln!(out, "Shared:\t\t{}", human_size(r.shared))?;
    writeln!(out, "Size:\t\t{}", human_size(r.size))?;
    writeln!(out, "Description:\t{}", rec.description)?;
    writeln!(out, "Usage count:\t{}", rec.usage_count)?;
    writeln!(out, "Last used:\t{}", ago(rec.last_used_at, now))?;
    writeln!(out, "Type:\t\t{}", rec.kind)?;
    writeln!(out)
}

fn write_totals(
    out: &mut impl Write,
    usage: &Usage,
    cache_mounts: u64,
    rows: &[&RecordUsage],
    unfiltered: bool,
) -> std::io::Result<()> {
    writeln!(out)?;
    if unfiltered {
        writeln!(out, "Shared:\t\t{}", human_size(usage.shared))?;
        writeln!(out, "Private:\t{}", human_size(usage.private))?;
        writeln!(out, "Reclaimable:\t{}", human_size(usage.reclaimable))?;
        if usage.blobs > 0 {
            writeln!(out, "Blobs:\t\t{}", human_size(usage.blobs))?;
        }
        if cache_mounts > 0 {
            writeln!(out, "Cache mounts:\t{}", human_size(cache_mounts))?;
        }
        writeln!(
            out,
            "Total:\t\t{}",
            human_size(usage.total() + cache_mounts)
        )
    } else {
        // Over the selected records only.
        let size: u64 = rows.iter().map(|r| r.size).sum();
        let reclaimable: u64 = rows
            .iter()
            .filter(|r| r.reclaimable())
            .map(|r| r.size)
            .sum();
        writeln!(out, "Reclaimable:\t{}", human_size(reclaimable))?;
        writeln!(out, "Total:\t\t{}", human_size(size))
    }
}

pub fn run(cmd: CacheCommand, root: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        CacheCommand::Prune(args) => prune(args, root),
    }
}

fn prune(args: PruneArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let opts = PruneOptions {
        all: args.all,
        keep_storage: args
            .keep_storage
            .as_deref()
            .map(parse_size)
            .transpose()
            .context("invalid --keep-storage")?,
        keep_duration: args
            .keep_duration
            .as_deref()
            .map(parse_duration)
            .transpose()
            .context("invalid --keep-duration")?,
        filters: Filters::parse(&args.filter)?,
    };
    if !args.force && !confirm(args.all)? {
        return Ok(ExitCode::SUCCESS);
    }
    let s = open(root)?;
    let (pruned, _) = cache::prune(&s.store, &s.db, &opts)?;
    let mut blobs_freed = 0;
    let mut blobs = Vec::new();
    if args.all && opts.filters.is_empty() && opts.keep_storage.is_none() {
        (blobs, blobs_freed) = prune_blobs(root, &s.db)?;
    }
    let selects_mounts = opts.filters.types.is_empty()
        || opts
            .filters
            .types
            .contains(&cache::RecordType::ExecCacheMount);
    let mounts = if args.all && selects_mounts && opts.keep_storage.is_none() {
        cache::prune_cache_mounts(root)
    } else {
        Vec::new()
    };
    let mounts_freed: u64 = mounts.iter().map(|m| m.size).sum();
    blobs_freed += mounts_freed;
    blobs.extend(mounts.into_iter().map(|m| (m.id, m.size)));
    let now = SystemTime::now();
    let mut out = std::io::stdout().lock();
    let rows: Vec<&RecordUsage> = pruned.removed.iter().collect();
    if !rows.is_empty() || !pruned.unrecorded.is_empty() || !blobs.is_empty() {
        write_table(&mut out, &rows, now)?;
        for (id, size) in &pruned.unrecorded {
            writeln!(
                out,
                "{:<27} {:<12} {:<12} -",
                id.as_str().chars().take(25).collect::<String>(),
                true,
                human_size(*size),
            )?;
        }
        for (digest, size) in &blobs {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            writeln!(
                out,
                "{:<27} {:<12} {:<12} -",
                &hex[..hex.len().min(25)],
                true,
                human_size(*size),
            )?;
        }
    }
    if pruned.skipped_in_use > 0 {
        eprintln!(
            "{} records are in use by a running build and were kept",
            pruned.skipped_in_use
        );
    }
    writeln!(out, "Total:\t{}", human_size(pruned.freed() + blobs_freed))?;
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal, like `docker builder prune`; without a terminal
/// there is no one to ask, so it refuses rather than guess.
fn confirm(all: bool) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to prune without confirmation: stdin is not a terminal (pass --force)");
    }
    let what = if all {
        "all build cache"
    } else {
        "all dangling build cache"
    };
    eprint!("WARNING! This will remove {what}. Are you sure you want to continue? [y/N] ");
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Removes content-store blobs no record names and no live process can
/// be about to use (committed before the oldest live process started);
/// stale ingest files of dead writers too.
fn prune_blobs(root: &Path, db: &CacheDb) -> anyhow::Result<(Vec<(String, u64)>, u64)> {
    let content = ContentStore::open(root).context("failed to open the content store")?;
    content.clean_stale_ingest();
    let mut referenced = db.referenced_blobs()?;
    referenced.extend(image_blobs(root, &content)?);
    let live = cache::live_processes(root)?;
    let mut removed = Vec::new();
    let mut freed = 0;
    for blob in content.list()? {
        let old_enough = live
            .oldest_start
            .is_none_or(|start| blob.committed + Duration::from_secs(1) < start);
        if referenced.contains(&blob.digest) || !old_enough {
            continue;
        }
        content.remove(&blob.digest)?;
        freed += blob.size;
        removed.push((blob.digest, blob.size));
    }
    Ok((removed, freed))
}

/// Every blob a local image name reaches: its manifest (or index), and
/// what those name (configs, layers, platform manifests).
fn image_blobs(root: &Path, content: &ContentStore) -> anyhow::Result<HashSet<String>> {
    let images =
        crate::imagestore::ImageStore::open(root).context("failed to open the image store")?;
    let mut keep = HashSet::new();
    let mut queue: Vec<(String, String)> = images
        .list()
        .context("failed to list local images")?
        .into_iter()
        .map(|t| (t.manifest.digest, t.manifest.media_type))
        .collect();
    while let Some((digest, media_type)) = queue.pop() {
        if !keep.insert(digest.clone()) {
            continue;
        }
        let is_json_list = media_type.contains("manifest") || media_type.contains("index");
        if !is_json_list {
            continue;
        }
        // A manifest the store cannot read keeps only itself.
        let Ok(bytes) = content.read(&digest) else {
            continue;
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let mut descriptors = Vec::new();
        if let Some(config) = value.get("config") {
            descriptors.push(config);
        }
        for list in ["layers", "manifests"] {
            if let Some(items) = value.get(list).and_then(|v| v.as_array()) {
                descriptors.extend(items);
            }
        }
        for d in descriptors {
            if let Some(digest) = d.get("digest").and_then(|v| v.as_str()) {
                let media = d.get("mediaType").and_then(|v| v.as_str()).unwrap_or("");
                queue.push((digest.to_string(), media.to_string()));
            }
        }
    }
    Ok(keep)
}

/// What a build holds on the store while it runs.
pub struct BuildSession {
    pub lease: ProcessLease,
    pub db: Arc<CacheDb>,
}

/// Marks this process live, opens the cache with its leases, and clears
/// what dead processes left (their lock files, leases, ingest files).
pub fn start_build(root: &Path) -> anyhow::Result<BuildSession> {
    let lease = ProcessLease::acquire(root)
        .with_context(|| format!("failed to lock the store at {}", root.display()))?;
    let db = CacheDb::open(root)
        .with_context(|| format!("failed to open the build cache at {}", root.display()))?;
    db.set_lease_owner(lease.owner());
    let live = cache::live_processes(root)?;
    cache::leased_snapshots(&db, &live)?;
    if let Ok(content) = ContentStore::open(root) {
        content.clean_stale_ingest();
    }
    Ok(BuildSession {
        lease,
        db: Arc::new(db),
    })
}

/// Runs GC when the store exceeds its policy; prints one line when it
/// does. Never fails the build: a GC problem is a warning.
pub fn after_build(root: &Path, store: &Store, session: &BuildSession) {
    if let Err(err) = gc(root, store, &session.db) {
        eprintln!("WARNING: cache GC failed: {err:#}");
    }
    let _ = session.db.release_leases(session.lease.owner());
}

fn gc(root: &Path, store: &Store, db: &CacheDb) -> anyhow::Result<()> {
    let policy = gc_config::load(root)?;
    if !policy.enabled {
        return Ok(());
    }
    let (upper_bound, oldest) = db.totals()?;
    let now = SystemTime::now();
    let too_old = match (policy.keep_duration, oldest) {
        (Some(keep), Some(oldest)) => now.duration_since(oldest).unwrap_or_default() > keep,
        _ => false,
    };
    if upper_bound <= policy.keep_storage && !too_old {
        return Ok(());
    }
    let mut removed = 0;
    let mut freed = 0;
    if let Some(keep) = policy.keep_duration.filter(|_| too_old) {
        let (p, _) = cache::prune(
            store,
            db,
            &PruneOptions {
                keep_duration: Some(keep),
                ..PruneOptions::default()
            },
        )?;
        removed += p.removed.len();
        freed += p.freed();
    }
    // Layer cache first; cache mounts only if that is not enough.
    let mut after = 0;
    for all in [false, true] {
        let (p, usage) = cache::prune(
            store,
            db,
            &PruneOptions {
                all,
                keep_storage: Some(policy.keep_storage),
                ..PruneOptions::default()
            },
        )?;
        removed += p.removed.len();
        freed += p.freed();
        after = (usage.shared + usage.private).saturating_sub(p.freed());
        if after <= policy.keep_storage {
            break;
        }
    }
    // Cache mounts last: only when the layer cache alone cannot get the
    // store under the limit.
    let mounts: u64 = cache::cache_mounts(root).iter().map(|m| m.size).sum();
    if after + mounts > policy.keep_storage && mounts > 0 {
        let gone = cache::prune_cache_mounts(root);
        removed += gone.len();
        freed += gone.iter().map(|m| m.size).sum::<u64>();
    }
    if removed > 0 || freed > 0 {
        eprintln!(
            "GC: removed {removed} cache records, freed {}; cache now {} (limit {})",
            human_size(freed),
            human_size(after),
            human_size(policy.keep_storage)
        );
    }
    Ok(())
}
