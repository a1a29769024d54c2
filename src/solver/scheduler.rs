//! Runs a [`Definition`] as a graph of tokio tasks: one task per reachable
//! vertex, each waiting for its inputs' results and then doing its own work,
//! so independent branches run concurrently and a vertex starts the moment
//! its last input is ready. Owns concurrency only — what a vertex *does*
//! (cache lookup, executing its op) is the [`Runner`]'s business.
//!
//! Imports `llb` and the solver's error types; never `cli` or `dockerfile`.
//!
//! Sharing: the graph holds each digest once, so a vertex that several
//! others use (the build context, a stage copied from twice) is one task
//! whose result is published once on a `watch` channel and read by all.
//!
//! Failure: the first vertex error aborts every other task (their futures
//! are dropped at their next await point) and is returned. Blocking work
//! already handed to a thread cannot be interrupted; it finishes in the
//! background and its result is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::error::{LineRange, SolveError, VertexError};
use crate::llb::{Definition, Digest, Input, Metadata, Vertex};

/// One vertex, ready to run: its inputs' results are in `inputs`, in the
/// order of `vertex.inputs`.
pub(crate) struct Task<T> {
    pub digest: Digest,
    pub vertex: Vertex,
    pub meta: Metadata,
    /// The name progress and errors use (never empty).
    pub name: String,
    pub inputs: Vec<Arc<T>>,
}

/// What a vertex does once its inputs are ready.
pub(crate) trait Runner: Send + Sync + 'static {
    type Output: Send + Sync + 'static;

    fn run(
        self: Arc<Self>,
        task: Task<Self::Output>,
    ) -> impl Future<Output = Result<Self::Output, VertexError>> + Send;
}

/// The name a vertex goes by in progress and errors: its metadata name, or
/// its op kind and short digest when the frontend gave none.
pub(crate) fn display_name(digest: &Digest, vertex: &Vertex, meta: &Metadata) -> String {
    if meta.name.is_empty() {
        format!("{} {}", vertex.op.kind(), &digest.hex()[..12])
    } else {
        meta.name.clone()
    }
}

type Slot<T> = watch::Receiver<Option<Arc<T>>>;

/// Runs every vertex any of `roots` depends on, each once (a vertex
/// several roots share is one task), and returns each root's result in
/// the order given (`None` for a `None` root: an empty filesystem).
pub(crate) async fn run_roots<R: Runner>(
    def: &Definition,
    roots: &[Option<Input>],
    runner: Arc<R>,
) -> Result<Vec<Option<Arc<R::Output>>>, SolveError> {
    let wanted: Vec<Input> = roots.iter().flatten().cloned().collect();
    for root in &wanted {
        if def.get(&root.digest).is_none() {
            return Err(SolveError::MissingVertex(root.digest.clone()));
        }
    }
    let order = def.reachable_from(&wanted);
    let mut slots: HashMap<Digest, Slot<R::Output>> = HashMap::with_capacity(order.len());
    let mut tasks = JoinSet::new();
    // Which vertex a task runs, to name it if it panics.
    let mut names = HashMap::with_capacity(order.len());
    for digest in order {
        let (vertex, meta) = def
            .get(digest)
            .cloned()
            .ok_or_else(|| SolveError::MissingVertex(digest.clone()))?;
        // `reachable` yields inputs before their users, so every input's
        // slot exists already.
        let inputs = vertex
            .inputs
            .iter()
            .map(|input| {
                slots
                    .get(&input.digest)
                    .cloned()
                    .map(|slot| (input.digest.clone(), slot))
                    .ok_or_else(|| SolveError::MissingVertex(input.digest.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (publish, slot) = watch::channel(None);
        slots.insert(digest.clone(), slot);
        let name = display_name(digest, &vertex, &meta);
        let location = LineRange::of(&meta);
        let task = Task {
            digest: digest.clone(),
            vertex,
            meta,
            name: name.clone(),
            inputs: Vec::new(),
        };
        let runner = runner.clone();
        let handle = tasks.spawn(async move {
            let result = run_one(runner, task, inputs, publish).await;
            result.map_err(|source| (classify(source), location))
        });
        names.insert(handle.id(), (name, location));
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        match joined {
            Ok((_, Ok(()))) => {}
            // A dependent of the failed vertex noticed first; the real
            // error is still on its way.
            Ok((_, Err((Failure::Input, _)))) => {}
            Ok((id, Err((Failure::Vertex(source), location)))) => {
                // Wait for the aborted tasks to be dropped, so nothing of
                // this build still runs (or reports progress) once the
                // error is returned.
                tasks.shutdown().await;
                let name = names.remove(&id).map(|(n, _)| n).unwrap_or_default();
                return Err(SolveError::Vertex {
                    name,
                    location,
                    source: Box::new(source),
                });
            }
            Err(err) if err.is_cancelled() => {}
            Err(err) => {
                tasks.shutdown().await;
                let (name, location) = names.remove(&err.id()).unwrap_or_default();
                return Err(SolveError::TaskPanicked { name, location });
            }
        }
    }
    roots
        .iter()
        .map(|root| match root {
            None => Ok(None),
            Some(root) => slots
                .get(&root.digest)
                .and_then(|slot| slot.borrow().clone())
                // Every task finished without error, so the root
                // published; a missing value would be a scheduler bug,
                // reported as such.
                .ok_or_else(|| SolveError::MissingVertex(root.digest.clone()))
                .map(Some),
        })
        .collect()
}

/// Why a task ended without a result.
enum Failure {
    /// An input failed; its own task reports the error.
    Input,
    Vertex(VertexError),
}

fn classify(err: VertexError) -> Failure {
    match err {
        VertexError::InputFailed { .. } => Failure::Input,
        other => Failure::Vertex(other),
    }
}

async fn run_one<R: Runner>(
    runner: Arc<R>,
    mut task: Task<R::Output>,
    inputs: Vec<(Digest, Slot<R::Output>)>,
    publish: watch::Sender<Option<Arc<R::Output>>>,
) -> Result<(), VertexError> {
    for (digest, mut slot) in inputs {
        // Err: the input's task ended without publishing (it failed or
        // was aborted). A published value is seen even after its sender
        // is gone.
        let ready = slot
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|value| value.clone());
        match ready {
            Some(result) => task.inputs.push(result),
            None => return Err(VertexError::InputFailed { digest }),
        }
    }
    let output = runner.run(task).await?;
    publish.send_replace(Some(Arc::new(output)));
    Ok(())
}

/// Runs CPU- and disk-bound work on tokio's blocking threads, at most
/// `permits` jobs at a time so that a wide graph does not thrash a small
/// machine.
#[derive(Clone)]
pub(crate) struct Blocking {
    permits: Arc<Semaphore>,
}

impl Blocking {
    pub fn new(permits: usize) -> Blocking {
        Blocking {
            permits: Arc::new(Semaphore::new(permits.max(1))),
        }
    }

    /// As many jobs as the machine has cores.
    pub fn per_core() -> Blocking {
        Blocking::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub async fn run<T, F>(&self, job: F) -> Result<T, VertexError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // The semaphore is never closed, so acquiring only waits.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| VertexError::WorkerPoolClosed)?;
        // The permit moves into the job: if the awaiting task is aborted,
        // the thread keeps running and must keep its slot until it ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(VertexError::Blocking)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::llb::{FileAction, FileActionKind, FileOp, Input, Op, SourceOp};

    fn source(id: &str) -> Vertex {
        Vertex {
            op: Op::Source(SourceOp {
                identifier: id.into(),
                attrs: BTreeMap::new(),
            }),
            inputs: vec![],
            platform: None,
        }
    }

    /// A file op named by its mkdir path, over `inputs`.
    fn over(path: &str, inputs: &[&Input]) -> Vertex {
        Vertex {
            op: Op::File(FileOp {
                actions: vec![FileAction {
                    input: Some(0),
                    secondary_input: None,
                    action: FileActionKind::Mkdir {
                        path: path.into(),
                        mode: 0o755,
                        make_parents: false,
                        owner: None,
                        timestamp: None,
                    },
                }],
            }),
            inputs: inputs.iter().map(|i| (*i).clone()).collect(),
            platform: None,
        }
    }

    fn named(name: &str) -> Metadata {
        Metadata {
            name: name.into(),
            ..Metadata::default()
        }
    }

    /// Test behaviour keyed by vertex name.
    #[derive(Default)]
    struct Fake {
        runs: Mutex<Vec<String>>,
        fail: Option<&'static str>,
        hang: Option<&'static str>,
        panic: Option<&'static str>,
        /// Names that must meet at the barrier: proves they overlap.
        meet: Option<(Vec<&'static str>, Arc<tokio::sync::Barrier>)>,
        dropped_while_hanging: AtomicUsize,
    }

    struct OnDrop<'a>(&'a AtomicUsize);
    impl Drop for OnDrop<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Runner for Fake {
        /// The names of this vertex and everything below it.
        type Output = Vec<String>;

        async fn run(self: Arc<Self>, task: Task<Vec<String>>) -> Result<Vec<String>, VertexError> {
            self.runs.lock().unwrap().push(task.name.clone());
            if let Some((names, barrier)) = &self.meet {
                if names.contains(&task.name.as_str()) {
                    barrier.wait().await;
                }
            }
            if self.fail == Some(task.name.as_str()) {
                return Err(VertexError::NotSupported {
                    what: "test".into(),
                    detail: task.name,
                });
            }
            if self.panic == Some(task.name.as_str()) {
                panic!("test panic");
            }
            if self.hang == Some(task.name.as_str()) {
                let _guard = OnDrop(&self.dropped_while_hanging);
                std::future::pending::<()>().await;
            }
            let mut out = vec![task.name];
            for input in task.inputs {
                out.extend(input.iter().cloned());
            }
            Ok(out)
        }
    }

    /// a, b → ab(a, b) → top(ab, a)
    fn diamond() -> Definition {
        let mut def = Definition::new();
        let a = def.add(source("a"), named("a")).unwrap();
        let b = def.add(source("b"), named("b")).unwrap();
        let ab = def.add(over("/ab", &[&a, &b]), named("ab")).unwrap();
        let mut top = named("top");
        top.description.insert("location".into(), "3-4".into());
        def.root = Some(def.add(over("/top", &[&ab, &a]), top).unwrap());
        def
    }

    async fn solve(
        def: &Definition,
        fake: Fake,
    ) -> (Result<Option<Arc<Vec<String>>>, SolveError>, Arc<Fake>) {
        let fake = Arc::new(fake);
        let roots = std::slice::from_ref(&def.root);
        let result =
            tokio::time::timeout(Duration::from_secs(10), run_roots(def, roots, fake.clone()))
                .await
                .expect("the scheduler must not hang")
                .map(|mut r| r.pop().flatten());
        (result, fake)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_vertices_run_once_and_inputs_arrive_in_order() {
        let (result, fake) = solve(&diamond(), Fake::default()).await;
        let root = result.unwrap().unwrap();
        assert_eq!(*root, ["top", "ab", "a", "b", "a"]);
        let mut runs = fake.runs.lock().unwrap().clone();
        runs.sort();
        assert_eq!(runs, ["a", "ab", "b", "top"], "each digest runs once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn independent_vertices_overlap() {
        // a and b both wait at a two-party barrier: if the scheduler ran
        // them one after the other, the first would wait forever.
        let fake = Fake {
            meet: Some((vec!["a", "b"], Arc::new(tokio::sync::Barrier::new(2)))),
            ..Fake::default()
        };
        let (result, _) = solve(&diamond(), fake).await;
        assert!(result.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_failure_aborts_the_rest_and_names_the_vertex() {
        let fake = Fake {
            meet: Some((vec!["a", "b"], Arc::new(tokio::sync::Barrier::new(2)))),
            fail: Some("b"),
            hang: Some("a"),
            ..Fake::default()
        };
        let (result, fake) = solve(&diamond(), fake).await;
        let err = result.unwrap_err();
        assert!(
            matches!(&err, SolveError::Vertex { name, .. } if name == "b"),
            "{err:?}"
        );
        assert_eq!(err.location(), None);
        assert_eq!(
            fake.dropped_while_hanging.load(Ordering::SeqCst),
            1,
            "the hanging sibling was aborted"
        );
        let runs = fake.runs.lock().unwrap().clone();
        assert!(
            !runs.contains(&"ab".to_string()),
            "dependents never ran: {runs:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_carry_the_location_and_panics_are_reported() {
        let fake = Fake {
            fail: Some("top"),
            ..Fake::default()
        };
        let (result, _) = solve(&diamond(), fake).await;
        let err = result.unwrap_err();
        assert_eq!(err.location(), Some(LineRange { start: 3, end: 4 }));
        assert_eq!(err.vertex_name(), Some("top"));

        let fake = Fake {
            panic: Some("ab"),
            ..Fake::default()
        };
        let (result, _) = solve(&diamond(), fake).await;
        assert!(matches!(result, Err(SolveError::TaskPanicked { name, .. }) if name == "ab"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_root_is_an_empty_result() {
        let (result, fake) = solve(&Definition::new(), Fake::default()).await;
        assert!(result.unwrap().is_none());
        assert!(fake.runs.lock().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_jobs_are_bounded() {
        let pool = Blocking::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut jobs = JoinSet::new();
        for _ in 0..8 {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            jobs.spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            });
        }
        while let Some(job) = jobs.join_next().await {
            job.unwrap().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
    }
}
