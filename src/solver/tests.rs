//! `solve` over real stores, caches and contexts: what runs, what the
//! cache answers (counted from progress events, never timed), and how
//! failures are reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::llb::{
    attr, CopyAction, ExecMeta, ExecOp, FileAction, FileActionKind, FileOp, Input, MergeOp,
    Metadata, NetMode, SecurityMode, SourceOp, Vertex,
};
use crate::progress::{Mode, Options, Summary};

struct Env {
    dir: tempfile::TempDir,
    store: Store,
    cache: Arc<CacheDb>,
}

impl Env {
    fn new(files: &[(&str, &str)]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            write(&dir.path().join("ctx"), name, text);
        }
        std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
        let root = dir.path().join("root");
        Env {
            store: Store::open(&root).unwrap(),
            cache: Arc::new(CacheDb::open(&root).unwrap()),
            dir,
        }
    }

    fn ctx(&self) -> Arc<LocalContext> {
        Arc::new(LocalContext::open(&self.dir.path().join("ctx"), Default::default()).unwrap())
    }

    /// Solves `def` on a fresh runtime; returns the result and what the
    /// progress events say happened.
    fn solve(
        &self,
        def: &Definition,
        no_cache: bool,
    ) -> (Result<SolveResult, SolveError>, Summary) {
        let (results, summary) = self.solve_roots(def, std::slice::from_ref(&def.root), no_cache);
        (results.map(|mut r| r.remove(0)), summary)
    }

    /// [`solve_roots`] on a fresh runtime, with what progress says.
    fn solve_roots(
        &self,
        def: &Definition,
        roots: &[Option<Input>],
        no_cache: bool,
    ) -> (Result<Vec<SolveResult>, SolveError>, Summary) {
        let (sender, handle) =
            progress::start_with(Options::new(Mode::Quiet), Box::new(std::io::sink())).unwrap();
        let ctx = SolveContext {
            imported: None,
            named_contexts: Default::default(),
            store: self.store.clone(),
            cache: self.cache.clone(),
            context: Some(self.ctx()),
            no_cache,
            progress: sender,
            parallelism: 2,
            images: None,
            session: Default::default(),
            entitlements: Default::default(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(solve_roots(def, roots, &ctx));
        drop(ctx);
        (result, handle.finish().unwrap())
    }

    fn read(&self, result: &SolveResult, rel: &str) -> String {
        let dir = result.dir(&self.store).expect("a snapshot");
        std::fs::read_to_string(dir.join(rel)).unwrap()
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn named(name: &str, lines: Option<&str>) -> Metadata {
    let mut meta = Metadata {
        name: name.into(),
        ..Metadata::default()
    };
    if let Some(lines) = lines {
        meta.description.insert("location".into(), lines.into());
    }
    meta
}

fn context(def: &mut Definition, include: &str) -> Input {
    let attrs = BTreeMap::from([
        (
            attr::LOCAL_INCLUDE_PATTERNS.to_string(),
            format!("[{include:?}]"),
        ),
        (
            attr::LOCAL_SHARED_KEY_HINT.to_string(),
            "context".to_string(),
        ),
    ]);
    let op = Op::Source(SourceOp {
        identifier: "local://context".into(),
        attrs,
    });
    let vertex = Vertex {
        op,
        inputs: vec![],
        platform: None,
    };
    def.add(vertex, named("[internal] load build context", None))
        .unwrap()
}

/// `COPY <src> <dest>` onto `base` (None: scratch) from `from`.
fn copy(
    def: &mut Definition,
    base: Option<&Input>,
    from: &Input,
    src: &str,
    dest: &str,
    line: &str,
) -> Input {
    let mut inputs = vec![];
    if let Some(base) = base {
        inputs.push(base.clone());
    }
    inputs.push(from.clone());
    let action = CopyAction {
        src: src.into(),
        dest: dest.into(),
        owner: None,
        mode: None,
        follow_symlink: true,
        dir_copy_contents: true,
        attempt_unpack: false,
        create_dest_path: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        include_patterns: vec![],
        exclude_patterns: vec![],
        required_paths: vec![],
        parents: false,
        always_replace_existing_dest: false,
        timestamp: None,
    };
    let vertex = Vertex {
        op: Op::File(FileOp {
            actions: vec![FileAction {
                input: base.map(|_| 0),
                secondary_input: Some(u32::from(base.is_some())),
                action: FileActionKind::Copy(action),
            }],
        }),
        inputs,
        platform: None,
    };
    def.add(vertex, named(&format!("COPY {src} {dest}"), Some(line)))
        .unwrap()
}

/// FROM scratch; COPY a /a; COPY b /b — each COPY reading its own
/// context source, as the frontend lowers them.
fn two_copies() -> Definition {
    let mut def = Definition::new();
    let a = context(&mut def, "a");
    let b = context(&mut def, "b");
    let first = copy(&mut def, None, &a, "/a", "/a", "2-2");
    let second = copy(&mut def, Some(&first), &b, "/b", "/b", "3-3");
    def.root = Some(second);
    def
}

#[test]
fn a_second_identical_build_executes_nothing() {
    let env = Env::new(&[("a", "A"), ("b", "B")]);
    let def = two_copies();
    let (result, cold) = env.solve(&def, false);
    let result = result.unwrap();
    assert_eq!(env.read(&result, "a"), "A");
    assert_eq!(env.read(&result, "b"), "B");
    assert_eq!(
        (cold.vertices, cold.completed, cold.cached),
        (4, 4, 0),
        "{cold}"
    );

    let (again, warm) = env.solve(&def, false);
    assert_eq!(again.unwrap(), result, "the cached snapshot is reused");
    assert!(warm.all_cached(), "{warm}");
    assert_eq!(warm.completed, 0, "{warm}");
}

#[test]
fn several_roots_share_their_common_steps() {
    let env = Env::new(&[("a", "A"), ("b", "B")]);
    let def = two_copies();
    let second = def.root.clone().unwrap();
    let first = def.get(&second.digest).unwrap().0.inputs[0].clone();
    let roots = [Some(first), Some(second), None];
    let (results, summary) = env.solve_roots(&def, &roots, false);
    let results = results.unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(env.read(&results[0], "a"), "A");
    assert!(!results[0].dir(&env.store).unwrap().join("b").exists());
    assert_eq!(env.read(&results[1], "b"), "B");
    assert_eq!(results[2].root, Ref::Scratch);
    // The first COPY, which both roots need, ran once.
    assert_eq!((summary.vertices, summary.completed), (4, 4), "{summary}");
    assert_eq!(results[0].steps.len(), 2, "every result lists all steps");
    assert_eq!(results[0].steps, results[1].steps);
}

#[test]
fn editing_a_file_reruns_only_what_reads_it() {
    let env = Env::new(&[("a", "A"), ("b", "B"), ("unrelated", "U")]);
    let mut def = Definition::new();
    let a = context(&mut def, "a");
    let b = context(&mut def, "b");
    let copy_a = copy(&mut def, None, &a, "/a", "/a", "2-2");
    let copy_b = copy(&mut def, None, &b, "/b", "/b", "3-3");
    let merged = Vertex {
        op: Op::Merge(MergeOp { inputs: vec![0, 1] }),
        inputs: vec![copy_a, copy_b],
        platform: None,
    };
    def.root = Some(def.add(merged, named("merge", None)).unwrap());
    env.solve(&def, false).0.unwrap();

    write(&env.dir.path().join("ctx"), "unrelated", "edited");
    let (_, summary) = env.solve(&def, false);
    assert!(
        summary.all_cached(),
        "an unread file changes nothing: {summary}"
    );

    write(&env.dir.path().join("ctx"), "b", "B2");
    let (result, summary) = env.solve(&def, false);
    let result = result.unwrap();
    // b's source, b's copy and the merge ran; a's source and copy did not.
    assert_eq!((summary.completed, summary.cached), (3, 2), "{summary}");
    assert_eq!(env.read(&result, "a"), "A");
    assert_eq!(env.read(&result, "b"), "B2");
}

#[test]
fn no_cache_and_ignore_cache_execute_again() {
    let env = Env::new(&[("a", "A"), ("b", "B")]);
    let mut def = two_copies();
    env.solve(&def, false).0.unwrap();
    let (_, summary) = env.solve(&def, true);
    assert_eq!(summary.completed, 4, "{summary}");

    // Only the vertex marked ignore_cache runs again. Adding the same
    // vertex again with the mark sets it (metadata is outside digests).
    let root = def.root.clone().unwrap();
    let (vertex, mut meta) = def.get(&root.digest).unwrap().clone();
    meta.ignore_cache = true;
    def.add(vertex, meta).unwrap();
    let (_, summary) = env.solve(&def, false);
    assert_eq!((summary.completed, summary.cached), (1, 3), "{summary}");
}

#[test]
fn failures_name_the_vertex_and_its_lines() {
    let env = Env::new(&[("a", "A")]);
    let mut def = Definition::new();
    let a = context(&mut def, "a");
    let ok = copy(&mut def, None, &a, "/a", "/a", "2-2");
    def.root = Some(copy(&mut def, Some(&ok), &a, "/missing", "/m", "3-4"));
    let (result, summary) = env.solve(&def, false);
    let err = result.unwrap_err();
    assert_eq!(err.vertex_name(), Some("COPY /missing /m"));
    assert_eq!(err.location(), Some(LineRange { start: 3, end: 4 }));
    let text = error_chain(&err);
    assert!(
        text.contains("missing") && text.contains("not found"),
        "{text}"
    );
    assert_eq!(summary.failed, 1, "{summary}");
}

#[test]
fn insecure_exec_needs_its_entitlement_and_images_need_a_registry() {
    // Running a process needs the bk binary (the sandbox is a
    // re-execution of it); the integration tests cover that. The
    // entitlement check happens before anything runs.
    let env = Env::new(&[]);
    let mut def = Definition::new();
    let exec = Vertex {
        op: Op::Exec(ExecOp {
            meta: ExecMeta {
                args: vec!["/bin/sh".into(), "-c".into(), "make".into()],
                env: vec![],
                cwd: "/".into(),
                user: String::new(),
                hostname: String::new(),
                proxy_env: vec![],
            },
            mounts: vec![],
            network: NetMode::Sandbox,
            security: SecurityMode::Insecure,
        }),
        inputs: vec![],
        platform: None,
    };
    def.root = Some(def.add(exec, named("[2/2] RUN make", Some("2-2"))).unwrap());
    let err = env.solve(&def, false).0.unwrap_err();
    assert!(
        error_chain(&err).contains("entitlement security.insecure is not allowed"),
        "{err:?}"
    );
    assert_eq!(err.vertex_name(), Some("[2/2] RUN make"));

    let mut def = Definition::new();
    let image = Vertex {
        op: Op::Source(SourceOp {
            identifier: "docker-image://docker.io/library/alpine:3.20".into(),
            attrs: BTreeMap::new(),
        }),
        inputs: vec![],
        platform: None,
    };
    def.root = Some(def.add(image, named("FROM alpine", Some("1-1"))).unwrap());
    let text = error_chain(&env.solve(&def, false).0.unwrap_err());
    // Pulling needs the registry client the CLI passes in.
    assert!(
        text.contains("no registry client to pull docker.io/library/alpine:3.20"),
        "{text}"
    );
}

#[test]
fn an_empty_graph_is_scratch() {
    let env = Env::new(&[]);
    let (result, _) = env.solve(&Definition::new(), false);
    assert_eq!(result.unwrap().root, Ref::Scratch);
}

#[test]
fn the_main_chain_lists_each_step_bottom_first_cached_or_not() {
    let env = Env::new(&[("a", "A"), ("b", "B")]);
    let def = two_copies();
    let (result, _) = env.solve(&def, false);
    let result = result.unwrap();
    let chain = result.chain.clone().expect("a chain from scratch");
    assert_eq!(chain.len(), 2);
    assert_eq!(result.root, Ref::Snapshot(chain[1].snapshot.clone()));
    assert!(
        chain.iter().all(|l| l.blob.is_none()),
        "build steps have no blob"
    );
    // The first step's snapshot has only /a; the second adds /b.
    let first = env.store.path(&chain[0].snapshot);
    assert!(first.join("a").exists() && !first.join("b").exists());
    // A cached rebuild reports the same chain.
    let (again, _) = env.solve(&def, false);
    assert_eq!(again.unwrap().chain, Some(chain));
    // A merge follows its first input only.
    let mut def = Definition::new();
    let a = context(&mut def, "a");
    let b = context(&mut def, "b");
    let copy_a = copy(&mut def, None, &a, "/a", "/a", "2-2");
    let copy_b = copy(&mut def, None, &b, "/b", "/b", "3-3");
    let merged = Vertex {
        op: Op::Merge(MergeOp { inputs: vec![0, 1] }),
        inputs: vec![copy_a, copy_b],
        platform: None,
    };
    def.root = Some(def.add(merged, named("merge", None)).unwrap());
    let merged = env.solve(&def, false).0.unwrap();
    assert_eq!(merged.chain.map(|c| c.len()), Some(2));
    let (empty, _) = env.solve(&Definition::new(), false);
    assert_eq!(empty.unwrap().chain, Some(vec![]));
}
