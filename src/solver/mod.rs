//! The solver: runs a build graph ([`crate::llb::Definition`]) and returns
//! the root's filesystem as a [`Ref`].
//!
//! Owns scheduling (`scheduler`), cache keys ([`cache_key`]) and the
//! execution of each op kind ([`ops`]). May import `llb`, `cache`,
//! `snapshot`, `fileop`, `rootless`, `session`, `source`, `registry`,
//! `remotecache`, `image` and `progress`;
//! never `cli` or
//! `dockerfile` (the frontend's job ends with the graph).
//!
//! # What is cached, and how
//!
//! Every vertex gets a cache key (see [`cache_key`]) once its inputs have
//! theirs. Before executing an exec, file or merge vertex the solver looks
//! its key up in the cache database — unless the vertex's
//! `Metadata.ignore_cache` or [`SolveContext::no_cache`] says not to — and
//! on a hit reuses the committed snapshot the row names (reported as
//! `VertexCached`). On a miss it executes the op into a new snapshot,
//! commits it (a rename into `snapshots/`) and only then records the row,
//! so a row never names a half-written snapshot.
//!
//! A `local://context` source always walks and checksums what it selects
//! (cheap for unchanged files: their digests are remembered by `lstat`
//! stamp); its key covers that checksum. Its result is read in place, so
//! it has no snapshot: its row is recorded with an empty snapshot id and
//! only says "this content was loaded before", which is what makes the
//! source report `VertexCached` on a rebuild (record type
//! `source.local`). Anything that prunes rows must skip empty ids (there
//! is nothing to release).
//!
//! On a miss, the solver takes the store-wide lock of the key
//! (`cache::lock_key`) and looks again before executing: when several
//! `bk` processes build the same step at once, one computes it and the
//! others wait and reuse its result.
//!
//! # Imported cache (`--cache-from`)
//!
//! On a local miss of an exec, file or merge vertex the solver asks
//! [`SolveContext::imported`]. A hit names the top layer of the key's
//! result: the step's diff against its base input (the same base a
//! chain has, see [`SolveResult::chain`]). Equal keys mean equal inputs,
//! so the local base input already holds the layers below; only that
//! one blob is fetched, unpacked onto the base input's snapshot,
//! committed and recorded in the local cache, and the vertex reports
//! `VertexCached` without running. A failed fetch or unpack is a warning
//! in the vertex's log and the step runs. Every step's key and chain are
//! returned in [`SolveResult::steps`] for `--cache-to`.
//!
//! An `http(s)://` source is downloaded into a snapshot of its own; its
//! key covers the content's digest. A rebuild asks the server with the
//! last answer's validators (kept in `<store>/http/`) and, on a 304,
//! reuses that snapshot without downloading.

pub mod cache_key;
mod error;
pub mod ops;
mod scheduler;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::{CacheDb, CacheKey, RecordType};
use crate::image::Platform;
use crate::llb::{Definition, ExecOp, Op, SourceOp};
use crate::progress;
use crate::remotecache::Imported;
use crate::session::Session;
use crate::snapshot::{SnapshotId, Store};
use crate::source::image::Images;
use crate::source::LocalContext;

pub use error::{LineRange, SolveError, VertexError};
use ops::source::Selection;
use scheduler::{Blocking, Runner, Task};

/// A build's result: where the root's filesystem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    /// An empty filesystem (`FROM scratch` with nothing added).
    Scratch,
    /// A committed snapshot in the store.
    Snapshot(SnapshotId),
    /// The build context directory, read in place (only when a graph's
    /// root is a context source itself, which Dockerfiles never produce).
    Context(PathBuf),
}

/// What [`solve`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolveResult {
    pub root: Ref,
    /// The layers of the root's main chain, bottom first, ending with
    /// the root: from the root, each file op's base input (the first
    /// action's), each merge's first input and each exec's root mount's
    /// input, back to scratch or a base image (whose layers come first,
    /// one element each). Image exporters make one layer per element, as
    /// BuildKit makes one per step, and reuse base images' blobs as they
    /// are. `None` when the chain does not start from scratch or an image
    /// (the root is the context itself, or a step builds on it): the
    /// exporter then makes one layer of the whole root.
    pub chain: Option<Vec<ChainLayer>>,
    /// Every exec, file and merge vertex whose chain is known, with its
    /// cache key (what `--cache-to` exports), in completion order.
    pub steps: Vec<Step>,
}

/// A build step's key and result chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub key: CacheKey,
    pub chain: Vec<ChainLayer>,
}

/// One layer of a result's main chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLayer {
    /// The tree up to and including this layer.
    pub snapshot: SnapshotId,
    /// For a base image's layer, the blob it was unpacked from (to be
    /// exported unchanged); `None` for a build step, which the exporter
    /// diffs against the layer below.
    pub blob: Option<LayerBlob>,
}

/// A base image layer's blob, as its manifest and config name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    pub media_type: String,
    /// `sha256:` of the (compressed) blob.
    pub digest: String,
    pub size: u64,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

impl SolveResult {
    /// The directory holding the result, for exporters; `None` for
    /// scratch (the caller exports an empty directory).
    pub fn dir(&self, store: &Store) -> Option<PathBuf> {
        match &self.root {
            Ref::Scratch => None,
            Ref::Snapshot(id) => Some(store.path(id)),
            Ref::Context(dir) => Some(dir.clone()),
        }
    }
}

/// Everything a solve needs besides the graph.
#[derive(Debug, Clone)]
pub struct SolveContext {
    pub store: Store,
    pub cache: Arc<CacheDb>,
    /// The main build context (`local://context`), if the build has one.
    pub context: Option<Arc<LocalContext>>,
    /// Local named contexts (`local://<name>`, from `--build-context`).
    pub named_contexts: HashMap<String, Arc<LocalContext>>,
    /// `--no-cache`: execute every vertex, whatever its metadata says.
    pub no_cache: bool,
    pub progress: progress::Sender,
    /// Blocking jobs at once; 0 means one per core.
    pub parallelism: usize,
    /// Resolves `docker-image://` sources (local store, then registry);
    /// shared with the planner so each image is resolved once per build.
    /// `None`: image sources fail.
    pub images: Option<Arc<Images>>,
    /// Records of `--cache-from`, consulted on a local miss.
    pub imported: Option<Arc<Imported>>,
    /// `--secret` and `--ssh`: what `RUN --mount=type=secret|ssh` reads.
    pub session: Arc<Session>,
    /// `--allow`: entitlements RUN steps may use.
    pub entitlements: ops::exec::Entitlements,
}

/// Runs every vertex the root of `def` needs, concurrently where the
/// graph allows, and returns the root's result. Must be called on a
/// multi-threaded tokio runtime. The first failure cancels the rest and
/// is returned naming the failing vertex and its Dockerfile lines.
pub async fn solve(def: &Definition, ctx: &SolveContext) -> Result<SolveResult, SolveError> {
    let mut results = solve_roots(def, std::slice::from_ref(&def.root), ctx).await?;
    // One root in, one result out.
    results.pop().ok_or(SolveError::MissingResult)
}

/// [`solve`] for several roots of one graph at once (one per platform of
/// a multi-platform build): every vertex any root needs runs once, all
/// under one progress stream, and each root's result comes back in the
/// order given. Each result's [`SolveResult::steps`] holds the steps of
/// the whole solve, so exporting the cache of any one exports all.
pub async fn solve_roots(
    def: &Definition,
    roots: &[Option<crate::llb::Input>],
    ctx: &SolveContext,
) -> Result<Vec<SolveResult>, SolveError> {
    ops::exec::check_entitlements(def, ctx.entitlements)?;
    let solver = Arc::new(Solver {
        store: ctx.store.clone(),
        cache: ctx.cache.clone(),
        context: ctx.context.clone(),
        named_contexts: ctx.named_contexts.clone(),
        no_cache: ctx.no_cache,
        progress: ctx.progress.clone(),
        blocking: match ctx.parallelism {
            0 => Blocking::per_core(),
            n => Blocking::new(n),
        },
        context_turn: tokio::sync::Mutex::new(()),
        images: ctx.images.clone(),
        imported: ctx.imported.clone(),
        steps: std::sync::Mutex::new(Vec::new()),
        session: ctx.session.clone(),
        cache_mounts: ops::exec_mounts::CacheMounts::new(ctx.store.root()),
        runnable: ops::exec::RunnablePlatforms::host(),
    });
    let done = scheduler::run_roots(def, roots, solver.clone()).await?;
    let steps = std::mem::take(
        &mut *solver
            .steps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok(done
        .iter()
        .map(|root| SolveResult {
            root: root.as_ref().map_or(Ref::Scratch, |done| done.out.clone()),
            chain: match root {
                None => Some(Vec::new()),
                Some(done) => done.chain.as_ref().map(|c| c.to_vec()),
            },
            steps: steps.clone(),
        })
        .collect())
}

/// A vertex's result as its dependents see it.
pub(crate) struct Done {
    key: CacheKey,
    out: Ref,
    /// For context sources: what was selected, to read it from.
    selection: Option<Arc<Selection>>,
    /// This result's main chain (see [`SolveResult::chain`]).
    chain: Option<Arc<[ChainLayer]>>,
}

/// The main chain of a vertex's base input (without the vertex's own
/// result): the first action's input for a file op (none: scratch), the
/// first input for a merge, the root mount's input for an exec. `None`
/// when it is unknown.
fn base_chain(op: &Op, inputs: &[Arc<Done>]) -> Option<Vec<ChainLayer>> {
    let base = match op {
        Op::File(file) => match file.actions.first().and_then(|a| a.input) {
            None => return Some(Vec::new()),
            Some(i) => i,
        },
        Op::Merge(merge) => match merge.inputs.first() {
            None => return Some(Vec::new()),
            Some(&i) => i,
        },
        // A RUN's layer is the change of its root mount.
        Op::Exec(exec) => match exec.mounts.iter().find(|m| m.dest == "/") {
            Some(root) => match root.input {
                None => return Some(Vec::new()),
                Some(i) => i,
            },
            None => return None,
        },
        _ => return None,
    };
    let done = inputs.get(base as usize)?;
    done.chain.as_ref().map(|c| c.to_vec())
}

/// `base` followed by the build step that made `id`.
fn extend_chain(base: Option<Vec<ChainLayer>>, id: &SnapshotId) -> Option<Arc<[ChainLayer]>> {
    base.map(|mut c| {
        c.push(ChainLayer {
            snapshot: id.clone(),
            blob: None,
        });
        c.into()
    })
}

/// The directory an op reads an input from.
#[derive(Clone)]
pub(crate) enum InputDir {
    Scratch,
    Snapshot(SnapshotId),
    Context(Arc<Selection>),
}

struct Solver {
    store: Store,
    cache: Arc<CacheDb>,
    context: Option<Arc<LocalContext>>,
    named_contexts: HashMap<String, Arc<LocalContext>>,
    no_cache: bool,
    progress: progress::Sender,
    blocking: Blocking,
    /// Serialises context reads (see `load_context`).
    context_turn: tokio::sync::Mutex<()>,
    images: Option<Arc<Images>>,
    imported: Option<Arc<Imported>>,
    steps: std::sync::Mutex<Vec<Step>>,
    session: Arc<Session>,
    cache_mounts: ops::exec_mounts::CacheMounts,
    /// Platforms whose RUN steps were found runnable here.
    runnable: ops::exec::RunnablePlatforms,
}

impl Runner for Solver {
    type Output = Done;

    async fn run(self: Arc<Self>, task: Task<Done>) -> Result<Done, VertexError> {
        let digest = task.digest.to_string();
        let mut started = false;
        let result = self.clone().run_vertex(&task, &mut started).await;
        if let Err(err) = &result {
            // Renderers ignore events of vertices never announced.
            if !started {
                self.progress.started(&digest, &task.name);
            }
            self.progress.failed(&digest, error_chain(err));
        }
        result
    }
}

impl Solver {
    async fn run_vertex(
        self: Arc<Self>,
        task: &Task<Done>,
        started: &mut bool,
    ) -> Result<Done, VertexError> {
        let digest = task.digest.to_string();
        let use_cache = !self.no_cache && !task.meta.ignore_cache;
        if let Op::Source(op) = &task.vertex.op {
            ops::source::check_supported(op)?;
            if op.identifier.starts_with("docker-image://")
                || op.identifier.starts_with("oci-layout://")
            {
                return self.load_image(task, op, use_cache, started).await;
            }
            if op.identifier.starts_with("http://") || op.identifier.starts_with("https://") {
                return self.load_http(task, op, use_cache, started).await;
            }
            if op.identifier.starts_with("git://") {
                return self.load_git(task, op, use_cache, started).await;
            }
            self.progress.started(&digest, &task.name);
            *started = true;
            return self.load_context(task, op, use_cache).await;
        }
        let mut input_keys = Vec::with_capacity(task.inputs.len());
        for (input, done) in task.vertex.inputs.iter().zip(&task.inputs) {
            if input.output != 0 {
                return Err(VertexError::NotSupported {
                    what: "reading a second output of a step".into(),
                    detail: format!("output {} of {}", input.output, input.digest),
                });
            }
            input_keys.push(done.key.clone());
        }
        let key = self.key(task, &input_keys, None);
        let base = base_chain(&task.vertex.op, &task.inputs);
        let mut _key_lock = None;
        if use_cache {
            let mut found = self.lookup(&key).await?;
            if found.is_none() {
                // Another process may be computing this very key: wait
                // for it, then take its result instead of redoing it.
                _key_lock = Some(self.lock_key(&key).await?);
                found = self.lookup(&key).await?;
            }
            if found.is_none() {
                found = self.import(task, &key, base.as_deref()).await?;
            }
            if let Some(id) = found {
                self.progress.cached(&digest, &task.name);
                return Ok(self.step_done(key, base, id));
            }
        }
        let parent = match task.inputs.first().map(|d| &d.out) {
            Some(Ref::Snapshot(id)) => Some(id.clone()),
            _ => None,
        };
        self.progress.started(&digest, &task.name);
        *started = true;
        let inputs: Vec<InputDir> = task
            .inputs
            .iter()
            .map(|done| match (&done.selection, &done.out) {
                (Some(selection), _) => InputDir::Context(selection.clone()),
                (None, Ref::Snapshot(id)) => InputDir::Snapshot(id.clone()),
                (None, Ref::Scratch | Ref::Context(_)) => InputDir::Scratch,
            })
            .collect();
        let store = self.store.clone();
        let id = match &task.vertex.op {
            Op::File(op) => {
                let op = op.clone();
                self.blocking
                    .run(move || ops::file::run(&store, &op, &inputs))
                    .await??
            }
            Op::Merge(op) => {
                let parents = op
                    .inputs
                    .iter()
                    .map(|&i| match inputs.get(i as usize) {
                        Some(InputDir::Snapshot(id)) => Ok(Some(id.clone())),
                        Some(InputDir::Scratch) => Ok(None),
                        // Linking the user's files into a snapshot would
                        // let later edits of the context change it.
                        Some(InputDir::Context(_)) | None => Err(VertexError::NotSupported {
                            what: "merging the build context directly".into(),
                            detail: format!("merge input {i}"),
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.blocking
                    .run(move || ops::merge::run(&store, &parents))
                    .await??
            }
            Op::Exec(exec) => {
                if let Some(platform) = &task.vertex.platform {
                    self.runnable.check(platform)?;
                }
                let (solver, exec2) = (self.clone(), exec.clone());
                let (dirs, done) = (inputs.clone(), task.inputs.clone());
                // Not on the bounded pool: a `locked` cache may wait here
                // for another step of this build, which must be able to
                // take a worker to finish and release it.
                let prepared = tokio::task::spawn_blocking(move || {
                    let inputs = solver.mount_inputs(&exec2, &dirs, &done)?;
                    ops::exec_mounts::prepare(&exec2, &inputs, solver.mount_context())
                        .map_err(VertexError::from)
                })
                .await
                .map_err(VertexError::Blocking)??;
                let (op, progress, digest) = (exec.clone(), self.progress.clone(), digest.clone());
                // `prepared` lives until the process has exited: dropping
                // it releases caches and removes secrets and copies.
                self.blocking
                    .run(move || {
                        ops::exec::run(&store, &op, &inputs, &prepared, &progress, &digest)
                    })
                    .await??
            }
            Op::Diff(_) => {
                return Err(VertexError::NotSupported {
                    what: "diff ops".into(),
                    detail: "no Dockerfile instruction produces them yet".into(),
                })
            }
            Op::Source(_) => unreachable!("sources returned above"),
        };
        self.record(&key, Some(&id), parent.as_ref(), &task.name)
            .await?;
        self.progress.completed(&digest);
        Ok(self.step_done(key, base, id))
    }

    /// A step's result, remembered in [`SolveResult::steps`].
    fn step_done(&self, key: CacheKey, base: Option<Vec<ChainLayer>>, id: SnapshotId) -> Done {
        let chain = extend_chain(base, &id);
        if let Some(chain) = &chain {
            self.steps
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Step {
                    key: key.clone(),
                    chain: chain.to_vec(),
                });
        }
        Done {
            key,
            chain,
            out: Ref::Snapshot(id),
            selection: None,
        }
    }

    /// The result of `key` from the imported cache: its top layer fetched
    /// and unpacked onto the base input's snapshot (the top of `base`),
    /// committed and recorded. `None` on a miss, when the base is unknown,
    /// or when fetching or unpacking failed (said in the vertex's log).
    async fn import(
        &self,
        task: &Task<Done>,
        key: &CacheKey,
        base: Option<&[ChainLayer]>,
    ) -> Result<Option<SnapshotId>, VertexError> {
        let (Some(imported), Some(base)) = (&self.imported, base) else {
            return Ok(None);
        };
        let Some(layer) = imported.get(key.as_str()).cloned() else {
            return Ok(None);
        };
        let digest = task.digest.to_string();
        let warn = |what: String| {
            self.progress.log(
                &digest,
                progress::Stream::Stderr,
                format!(
                    "WARNING: cannot import cached result {}: {what}\n",
                    layer.digest
                ),
            );
        };
        let blob = match layer.fetch().await {
            Ok(path) => path,
            Err(err) => {
                warn(error_chain(&err));
                return Ok(None);
            }
        };
        let parent = base.last().map(|l| l.snapshot.clone());
        let recorded_parent = parent.clone();
        let (store, layer2) = (self.store.clone(), layer.clone());
        let unpacked = self
            .blocking
            .run(move || -> Result<SnapshotId, String> {
                let active = store
                    .prepare(parent.as_ref())
                    .map_err(|e| error_chain(&e))?;
                let file = std::fs::File::open(&blob)
                    .map_err(|e| format!("open {}: {e}", blob.display()))?;
                if let Err(err) = crate::registry::unpack::apply(
                    active.path(),
                    std::io::BufReader::new(file),
                    layer2.diff_id.as_deref(),
                ) {
                    let _ = active.discard();
                    return Err(error_chain(&err));
                }
                active.commit().map_err(|e| error_chain(&e))
            })
            .await?;
        match unpacked {
            Ok(id) => {
                self.record(key, Some(&id), recorded_parent.as_ref(), &task.name)
                    .await?;
                self.progress.status(
                    &digest,
                    "import",
                    &format!("import {} from the build cache", layer.digest),
                    (0, 0),
                    true,
                );
                Ok(Some(id))
            }
            Err(what) => {
                warn(what);
                Ok(None)
            }
        }
    }

    /// Walks and checksums a context source; reports it cached when the
    /// same content was loaded before.
    async fn load_context(
        &self,
        task: &Task<Done>,
        op: &SourceOp,
        use_cache: bool,
    ) -> Result<Done, VertexError> {
        let digest = task.digest.to_string();
        let context = match op.identifier.strip_prefix("local://") {
            Some(name) if op.identifier != ops::source::MAIN_CONTEXT => {
                self.named_contexts.get(name).cloned()
            }
            _ => self.context.clone(),
        };
        let (op2, cache) = (op.clone(), self.cache.clone());
        let context2 = context.clone();
        // One context read at a time, so that the context's work counters
        // (summed over all reads) tell what this vertex did; each read is
        // parallel inside.
        let turn = self.context_turn.lock().await;
        let before = context.as_ref().map(|c| c.stats()).unwrap_or_default();
        let read = self
            .blocking
            .run(move || ops::source::read(&op2, context2.as_ref(), &cache))
            .await??;
        let after = context.as_ref().map(|c| c.stats()).unwrap_or_default();
        drop(turn);
        let hashed = after.hashed_files.saturating_sub(before.hashed_files);
        let remembered = after.cache_hits.saturating_sub(before.cache_hits);
        self.progress.status(
            &digest,
            "context",
            &format!(
                "checking context: {} entries, {hashed} files read, {remembered} unchanged",
                read.selection.len(),
            ),
            (0, 0),
            true,
        );
        let key = self.key(task, &[], Some(&read.checksum.to_string()));
        let seen = use_cache && self.seen(&key).await?;
        if seen {
            self.progress.cached(&digest, &task.name);
        } else {
            self.record(&key, None, None, &task.name).await?;
            self.progress.completed(&digest);
        }
        Ok(Done {
            key,
            out: Ref::Context(read.selection.root().to_path_buf()),
            selection: Some(read.selection),
            chain: None,
        })
    }

    /// Resolves an image source to its manifest digest (its cache key's
    /// content), locally or on the registry, then reuses the snapshots
    /// cached for its layers or fetches the missing layers and unpacks
    /// them. The result's chain lists the image's layers with their blobs.
    async fn load_image(
        &self,
        task: &Task<Done>,
        op: &SourceOp,
        use_cache: bool,
        started: &mut bool,
    ) -> Result<Done, VertexError> {
        use ops::image::{self, ImageOpError};
        let digest = task.digest.to_string();
        // An OCI layout is imported into the content store when resolved
        // and is a local image from then on.
        let layout = op.identifier.starts_with("oci-layout://");
        let reference = match layout {
            true => None,
            false => Some(image::reference(&op.identifier)?),
        };
        let shown = match &reference {
            Some(r) => r.to_string(),
            None => op.identifier.clone(),
        };
        let images = self
            .images
            .clone()
            .ok_or_else(|| ImageOpError::NoRegistry(shown.clone()))?;
        let platform = task.vertex.platform.clone().unwrap_or_else(Platform::host);
        let pull_err = |source| ImageOpError::Pull {
            reference: shown.clone(),
            source,
        };
        let found = match &reference {
            Some(reference) => images.resolve(reference, &platform).await,
            None => images.resolve_layout(&op.identifier, &platform).await,
        }
        .map_err(pull_err)?;
        let resolved = found.resolved.clone();
        let key = self.key(task, &[], Some(&resolved.manifest_digest));
        // Another process may be pulling this very image: wait for it.
        let _key_lock = if use_cache && self.lookup(&key).await?.is_none() {
            Some(self.lock_key(&key).await?)
        } else {
            None
        };
        if use_cache && self.lookup(&key).await?.is_some() {
            let (store, cache, resolved2) =
                (self.store.clone(), self.cache.clone(), resolved.clone());
            let layers = self
                .blocking
                .run(move || image::cached_layers(&store, &cache, &resolved2))
                .await??;
            // A layer snapshot gone since: unpack again below.
            if let Some(layers) = layers {
                self.progress.cached(&digest, &task.name);
                return Ok(image_done(key, &resolved, layers));
            }
        }
        self.progress.started(&digest, &task.name);
        *started = true;
        let what = if found.local {
            format!("{shown} is {} in the local store", resolved.manifest_digest)
        } else {
            format!("resolve {shown} to {}", resolved.manifest_digest)
        };
        self.progress
            .status(&digest, "resolve", &what, (0, 0), true);
        let blobs = images
            .fetch_layers(&shown, reference.as_ref(), &found)
            .await
            .map_err(|e| pull_err(Arc::new(e)))?;
        let (store, cache, resolved2) = (self.store.clone(), self.cache.clone(), resolved.clone());
        let unpacked = self
            .blocking
            .run(move || image::unpack(&store, &cache, &resolved2, &blobs))
            .await??;
        if !unpacked.skipped_devices.is_empty() {
            self.progress.log(
                &digest,
                progress::Stream::Stderr,
                format!(
                    "WARNING: skipped {} device nodes (creating them needs root): {}\n",
                    unpacked.skipped_devices.len(),
                    unpacked.skipped_devices.join(", ")
                ),
            );
        }
        self.progress.status(
            &digest,
            "unpack",
            &format!(
                "unpack {}: {} of {} layers",
                resolved.manifest_digest,
                unpacked.unpacked,
                resolved.manifest.layers.len()
            ),
            (0, 0),
            true,
        );
        if let Some(id) = unpacked.layers.last() {
            self.record(&key, Some(id), None, &task.name).await?;
        }
        self.progress.completed(&digest);
        Ok(image_done(key, &resolved, unpacked.layers))
    }

    /// Downloads an `http(s)://` source into a snapshot holding the one
    /// file, or — when the cache allows and an earlier download of the
    /// URL is still there — asks the server whether it changed (a 304
    /// reuses it). The key covers the content's digest. What the server
    /// said last is kept in `<store>/http/<sha256 of the URL>.json`.
    async fn load_http(
        &self,
        task: &Task<Done>,
        op: &SourceOp,
        use_cache: bool,
        started: &mut bool,
    ) -> Result<Done, VertexError> {
        use crate::source::http::{self, Fetched, Validators};
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Remembered {
            filename: String,
            snapshot: String,
            validators: Validators,
        }
        let digest = task.digest.to_string();
        let url = op.identifier.clone();
        let filename = op
            .attrs
            .get(crate::llb::attr::HTTP_FILENAME)
            .cloned()
            .unwrap_or_else(|| "__unnamed__".to_string());
        let expected = op
            .attrs
            .get(crate::llb::attr::HTTP_CHECKSUM)
            .map(|c| http::checksum(c))
            .transpose()?;
        let store_err = |source| VertexError::HttpStore {
            url: url.clone(),
            source,
        };
        let meta_dir = self.store.root().join("http");
        let meta_path = meta_dir.join(format!(
            "{}.json",
            crate::content::sha256_digest(url.as_bytes()).trim_start_matches("sha256:")
        ));
        let remembered: Option<Remembered> = std::fs::read(&meta_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .filter(|r: &Remembered| r.filename == filename)
            .filter(|r| SnapshotId::new(r.snapshot.clone()).is_ok_and(|id| self.store.exists(&id)));
        self.progress.started(&digest, &task.name);
        *started = true;
        let client = http::client()?;
        let previous = remembered
            .as_ref()
            .filter(|_| use_cache)
            .map(|r| &r.validators);
        let active = self
            .store
            .prepare(None)
            .map_err(|source| VertexError::HttpSnapshot {
                url: url.clone(),
                source,
            })?;
        let fetched = http::fetch(
            &client,
            &url,
            active.path(),
            &filename,
            previous,
            expected.as_deref(),
        )
        .await?;
        let (id, validators) = match (fetched, remembered) {
            (Fetched::NotModified, Some(r)) => {
                drop(active);
                let id =
                    SnapshotId::new(r.snapshot).map_err(|source| VertexError::HttpSnapshot {
                        url: url.clone(),
                        source,
                    })?;
                (id, r.validators)
            }
            (Fetched::Downloaded(validators), _) => {
                let id = active
                    .commit()
                    .map_err(|source| VertexError::HttpSnapshot {
                        url: url.clone(),
                        source,
                    })?;
                let remembered = Remembered {
                    filename: filename.clone(),
                    snapshot: id.as_str().to_string(),
                    validators: validators.clone(),
                };
                crate::util::fs::create_dir_all(&meta_dir).map_err(store_err)?;
                let json = serde_json::to_vec(&remembered).unwrap_or_default();
                crate::util::fs::write_atomic(&meta_path, &json).map_err(store_err)?;
                (id, validators)
            }
            (Fetched::NotModified, None) => unreachable!("304 only answers a revalidation"),
        };
        if let Some(expected) = &expected {
            if *expected != validators.digest {
                return Err(http::HttpError::ChecksumMismatch {
                    url,
                    expected: expected.clone(),
                    actual: validators.digest,
                }
                .into());
            }
        }
        let key = self.key(task, &[], Some(&validators.digest));
        if use_cache && self.lookup(&key).await?.is_some() {
            self.progress.cached(&digest, &task.name);
        } else {
            self.record(&key, Some(&id), None, &task.name).await?;
            self.progress.completed(&digest);
        }
        Ok(Done {
            key,
            out: Ref::Snapshot(id),
            selection: None,
            chain: None,
        })
    }

    /// Reads a `git://` source: one `git ls-remote` resolves the ref to a
    /// commit; the key covers the repository URL and that commit (the
    /// vertex digest already covers keep-git-dir and the sub-directory),
    /// so an unchanged ref is a cache hit without fetching anything.
    /// Otherwise the commit is fetched shallowly into a scratch snapshot
    /// and the checkout moved into a new one.
    async fn load_git(
        &self,
        task: &Task<Done>,
        op: &SourceOp,
        use_cache: bool,
        started: &mut bool,
    ) -> Result<Done, VertexError> {
        use crate::llb::attr;
        use crate::source::git;
        let digest = task.digest.to_string();
        let fragment = op
            .identifier
            .split_once('#')
            .map_or("", |(_, fragment)| fragment);
        let (git_ref, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        let (git_ref, subdir) = (git_ref.to_string(), subdir.to_string());
        let url = op
            .attrs
            .get(attr::GIT_FULL_URL)
            .cloned()
            .unwrap_or_else(|| op.identifier.split('#').next().unwrap_or("").to_string());
        let keep_git_dir = op
            .attrs
            .get(attr::GIT_KEEP_GIT_DIR)
            .is_some_and(|v| v == "true");
        let submodules = !op.attrs.contains_key(attr::GIT_SKIP_SUBMODULES);
        if op.attrs.get(attr::GIT_MTIME).is_some_and(|m| m == "commit") {
            return Err(VertexError::NotSupported {
                what: "git checkouts with commit mtimes".into(),
                detail: format!("{}: files get the checkout time", op.identifier),
            });
        }
        self.progress.started(&digest, &task.name);
        *started = true;
        // Over ssh, the build's `--ssh default` agent when it has one.
        let agent = match git::is_ssh(&url) {
            true => self
                .session
                .ssh
                .forward("default", 0o600)
                .map_err(ops::exec_mounts::MountError::from)?,
            false => None,
        };
        let transport = git::Transport {
            ssh_auth_sock: agent.as_ref().map(|a| a.socket().to_path_buf()),
        };
        let commit = {
            let (url, git_ref, transport) = (url.clone(), git_ref.clone(), transport.clone());
            self.blocking
                .run(move || git::resolve(&url, &git_ref, &transport))
                .await??
        };
        if let Some(expected) = op.attrs.get(attr::GIT_CHECKSUM) {
            if !commit.starts_with(expected.as_str()) {
                return Err(VertexError::NotSupported {
                    what: "a git ref that moved".into(),
                    detail: format!(
                        "{} #{git_ref} is {commit}, not the --checksum {expected}",
                        git::redact(&url)
                    ),
                });
            }
        }
        let content = format!("{}@{commit}", op.identifier);
        let key = self.key(task, &[], Some(&content));
        if use_cache {
            if let Some(id) = self.lookup(&key).await? {
                self.progress.cached(&digest, &task.name);
                return Ok(Done {
                    key,
                    out: Ref::Snapshot(id),
                    selection: None,
                    chain: None,
                });
            }
        }
        let store = self.store.clone();
        let id = {
            let url = url.clone();
            self.blocking
                .run(move || -> Result<SnapshotId, VertexError> {
                    let snap_err = |source| VertexError::GitSnapshot {
                        url: git::redact(&url),
                        source,
                    };
                    let scratch = store.prepare(None).map_err(snap_err)?;
                    let dest = store.prepare(None).map_err(snap_err)?;
                    git::checkout(
                        &git::Checkout {
                            url: &url,
                            git_ref: &git_ref,
                            commit: &commit,
                            keep_git_dir,
                            subdir: &subdir,
                            submodules,
                            transport: &transport,
                        },
                        scratch.path(),
                        dest.path(),
                    )?;
                    drop(scratch);
                    dest.commit().map_err(snap_err)
                })
                .await??
        };
        self.record(&key, Some(&id), None, &task.name).await?;
        self.progress.completed(&digest);
        Ok(Done {
            key,
            out: Ref::Snapshot(id),
            selection: None,
            chain: None,
        })
    }

    fn mount_context(&self) -> ops::exec_mounts::MountContext<'_> {
        ops::exec_mounts::MountContext {
            store: &self.store,
            cache_mounts: &self.cache_mounts,
            session: &self.session,
        }
    }

    /// The inputs of an exec vertex as its non-root mounts read them; an
    /// input only the root file system uses is not looked at (a context
    /// selection would be copied for nothing).
    fn mount_inputs(
        &self,
        exec: &ExecOp,
        dirs: &[InputDir],
        done: &[Arc<Done>],
    ) -> Result<Vec<ops::exec_mounts::MountInput>, VertexError> {
        let used: Vec<u32> = exec
            .mounts
            .iter()
            .filter(|m| m.dest != "/")
            .filter_map(|m| m.input)
            .collect();
        dirs.iter()
            .zip(done)
            .enumerate()
            .map(|(i, (dir, done))| {
                let dir = match dir {
                    _ if !used.contains(&(i as u32)) => None,
                    InputDir::Scratch => None,
                    InputDir::Snapshot(id) => Some(self.store.path(id)),
                    InputDir::Context(selection) => Some(selection.dir(&self.store)?),
                };
                // A cache seeded from a snapshot is keyed by that
                // snapshot, as BuildKit keys it by the source ref: a
                // `--no-cache` rebuild of the source starts a new cache.
                let identity = match &done.out {
                    Ref::Snapshot(id) => format!("snapshot:{}", id.as_str()),
                    _ => format!("key:{}", done.key),
                };
                Ok(ops::exec_mounts::MountInput { dir, identity })
            })
            .collect()
    }

    fn key(&self, task: &Task<Done>, inputs: &[CacheKey], content: Option<&str>) -> CacheKey {
        let keys: Vec<cache_key::InputKey<'_>> = task
            .vertex
            .inputs
            .iter()
            .zip(inputs)
            .map(|(input, key)| cache_key::InputKey {
                key,
                output: input.output,
            })
            .collect();
        cache_key::compute(&task.vertex, &keys, content)
    }

    /// The committed snapshot cached under `key`, if it still exists.
    async fn lookup(&self, key: &CacheKey) -> Result<Option<SnapshotId>, VertexError> {
        let (cache, store, key) = (self.cache.clone(), self.store.clone(), key.clone());
        self.blocking
            .run(move || {
                let row = cache.get(&key).map_err(VertexError::CacheLookup)?;
                // A row whose snapshot was removed (or whose id is not
                // one) is a miss, not an error: the step just runs again.
                Ok(row
                    .and_then(|row| SnapshotId::new(row.snapshot_id).ok())
                    .filter(|id| store.exists(id)))
            })
            .await?
    }

    /// Waits for (and takes) the store-wide lock on `key`: held by
    /// whichever process is computing that key's result.
    async fn lock_key(&self, key: &CacheKey) -> Result<crate::cache::KeyLock, VertexError> {
        let root = self.store.root().to_path_buf();
        let hex = key
            .as_str()
            .strip_prefix("sha256:")
            .unwrap_or(key.as_str())
            .to_string();
        // Not on `self.blocking`: a wait there would hold one of the
        // per-core permits, and two processes whose permits all wait for
        // keys the other holds (and needs a permit to finish) deadlock.
        tokio::task::spawn_blocking(move || crate::cache::lock_key(&root, &hex))
            .await
            .map_err(|_| VertexError::WorkerPoolClosed)?
            .map_err(VertexError::CacheLookup)
    }

    /// Whether a row exists under `key` (for sources, which have no
    /// snapshot).
    async fn seen(&self, key: &CacheKey) -> Result<bool, VertexError> {
        let (cache, key) = (self.cache.clone(), key.clone());
        self.blocking
            .run(move || {
                cache
                    .get(&key)
                    .map(|row| row.is_some())
                    .map_err(VertexError::CacheLookup)
            })
            .await?
    }

    /// Records `key` → `id` (None: a source read in place) with its size.
    async fn record(
        &self,
        key: &CacheKey,
        id: Option<&SnapshotId>,
        parent: Option<&SnapshotId>,
        name: &str,
    ) -> Result<(), VertexError> {
        let (cache, store, key) = (self.cache.clone(), self.store.clone(), key.clone());
        let (id, name) = (id.cloned(), name.to_string());
        let parent = parent.map(|p| p.as_str().to_string());
        self.blocking
            .run(move || {
                let size = match &id {
                    Some(id) => store.size(id).map_err(VertexError::MeasureSnapshot)?,
                    None => 0,
                };
                let id = id.as_ref().map_or("", SnapshotId::as_str);
                let kind = if id.is_empty() {
                    RecordType::SourceLocal
                } else {
                    RecordType::Regular
                };
                // The replaced snapshot, if any, stays on disk: another
                // build may be reading it; a prune removes it once no row
                // names it and no build leases it.
                cache
                    .put_record(&key, id, &name, size, kind, parent.as_deref())
                    .map(drop)
                    .map_err(VertexError::CacheRecord)
            })
            .await?
    }
}

/// An image source's result: its top layer, and its layers as the
/// bottom of a chain, each with its blob.
fn image_done(
    key: CacheKey,
    resolved: &crate::registry::Resolved,
    layers: Vec<SnapshotId>,
) -> Done {
    let out = layers
        .last()
        .map_or(Ref::Scratch, |id| Ref::Snapshot(id.clone()));
    let chain: Vec<ChainLayer> = layers
        .into_iter()
        .zip(&resolved.manifest.layers)
        .zip(&resolved.config.rootfs.diff_ids)
        .map(|((snapshot, desc), diff_id)| ChainLayer {
            snapshot,
            blob: Some(LayerBlob {
                media_type: desc.media_type.clone(),
                digest: desc.digest.clone(),
                size: desc.size,
                diff_id: diff_id.clone(),
            }),
        })
        .collect();
    Done {
        key,
        out,
        selection: None,
        chain: Some(chain.into()),
    }
}

/// An error and its causes on one line, for progress events.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
