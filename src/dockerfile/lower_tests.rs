//! Lowering tests: one per convention in `lower`'s module documentation,
//! asserting on the ops of the resulting definition, plus the digest
//! properties the cache relies on.

use super::lower::{lower, LowerError, LowerOptions, Lowered};
use super::{parse, plan, ErrorKind, NoBaseImages, PlanOptions};
use crate::image::Platform;
use crate::llb::{
    attr, CacheSharing, ChownOpt, CopyAction, Digest, FileActionKind, Input, Metadata, MountKind,
    NetMode, Op, SecurityMode, UserOpt, Vertex,
};

fn amd64() -> Platform {
    "linux/amd64".parse().expect("valid platform")
}

fn build(df: &str, args: &[(&str, &str)], target: Option<&str>, opts: &LowerOptions) -> Lowered {
    try_build(df, args, target, opts).unwrap_or_else(|e| panic!("{e}\n{df}"))
}

fn try_build(
    df: &str,
    args: &[(&str, &str)],
    target: Option<&str>,
    opts: &LowerOptions,
) -> super::Result<Lowered> {
    let ast = parse(df)?;
    let plan_opts = PlanOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(str::to_string),
        build_platform: amd64(),
        target_platform: None,
        ..PlanOptions::default()
    };
    let plan = plan(&ast, &plan_opts, &NoBaseImages)?;
    lower(&plan, opts)
}

fn lowered(df: &str) -> Lowered {
    build(df, &[], None, &LowerOptions::default())
}

/// The vertices in dependency order.
fn vertices(l: &Lowered) -> Vec<(&Digest, &Vertex, &Metadata)> {
    l.definition.iter().collect()
}

/// The vertex whose progress name starts with `name`.
fn named<'a>(l: &'a Lowered, name: &str) -> (&'a Vertex, &'a Metadata) {
    vertices(l)
        .into_iter()
        .find(|(_, _, m)| m.name.starts_with(name))
        .map(|(_, v, m)| (v, m))
        .unwrap_or_else(|| panic!("no vertex named {name:?} in {:#?}", names(l)))
}

fn names(l: &Lowered) -> Vec<String> {
    vertices(l)
        .into_iter()
        .map(|(_, _, m)| m.name.clone())
        .collect()
}

fn vertex<'a>(l: &'a Lowered, input: &Input) -> &'a Vertex {
    &l.definition
        .get(&input.digest)
        .unwrap_or_else(|| panic!("{input:?} not in the graph"))
        .0
}

fn root(l: &Lowered) -> &Vertex {
    vertex(l, l.definition.root.as_ref().expect("a root"))
}

fn source_attrs(v: &Vertex) -> (&str, &std::collections::BTreeMap<String, String>) {
    match &v.op {
        Op::Source(s) => (s.identifier.as_str(), &s.attrs),
        other => panic!("not a source: {other:?}"),
    }
}

/// The copy actions of a file op.
fn copies(v: &Vertex) -> Vec<&CopyAction> {
    match &v.op {
        Op::File(f) => f
            .actions
            .iter()
            .filter_map(|a| match &a.action {
                FileActionKind::Copy(c) => Some(c),
                _ => None,
            })
            .collect(),
        other => panic!("not a file op: {other:?}"),
    }
}

fn exec(v: &Vertex) -> &crate::llb::ExecOp {
    match &v.op {
        Op::Exec(e) => e,
        other => panic!("not an exec: {other:?}"),
    }
}

/// The vertex a file action's secondary input or a mount points at.
fn input_of<'a>(l: &'a Lowered, v: &Vertex, index: Option<u32>) -> &'a Vertex {
    let i = index.expect("an input") as usize;
    vertex(l, &v.inputs[i])
}

#[test]
fn bare_scratch_has_no_root() {
    let l = lowered("FROM scratch\n");
    assert_eq!(l.definition.root, None);
    assert!(l.definition.is_empty());
    assert_eq!(l.stage_roots, vec![None]);
}

#[test]
fn from_image_is_a_docker_image_source_on_the_stage_platform() {
    let l = lowered("FROM --platform=linux/arm64 alpine:3.20\nRUN true\n");
    let (v, m) = named(&l, "[1/2] FROM");
    assert_eq!(m.name, "[1/2] FROM docker.io/library/alpine:3.20");
    assert_eq!(
        source_attrs(v).0,
        "docker-image://docker.io/library/alpine:3.20"
    );
    assert_eq!(v.platform, Some("linux/arm64".parse().unwrap()));
    let run = root(&l);
    assert_eq!(run.platform, Some("linux/arm64".parse().unwrap()));
    assert_eq!(m.description["location"], "1-1");
}

#[test]
fn from_stage_continues_from_its_final_state() {
    let l = lowered("FROM alpine AS base\nRUN one\nFROM base\nRUN two\n");
    let (one, _) = named(&l, "[base 2/2] RUN one");
    let two = root(&l);
    assert_eq!(vertex(&l, &two.inputs[0]), one);
    let base_root = l.stage_roots[0].clone().expect("base has a state");
    assert_eq!(two.inputs[0], base_root);
    assert_eq!(l.stage_roots[1], l.definition.root);
}

#[test]
fn context_copy_reads_a_local_source_with_exactly_its_paths() {
    let l = lowered("FROM scratch\nCOPY src/ a.txt /app/\n");
    let copy = root(&l);
    let actions = copies(copy);
    assert_eq!(actions.len(), 2);
    let c = actions[0];
    assert_eq!((c.src.as_str(), c.dest.as_str()), ("/src", "/app/"));
    assert_eq!(actions[1].src, "/a.txt");
    assert!(c.follow_symlink && c.dir_copy_contents && c.create_dest_path);
    assert!(c.allow_wildcard && c.allow_empty_wildcard);
    assert!(!c.attempt_unpack && !c.parents && c.timestamp.is_none());
    // Scratch: the copy starts from nothing; both actions read the context.
    let Op::File(f) = &copy.op else { panic!() };
    assert_eq!(f.actions[0].input, None);
    assert_eq!(f.actions[0].secondary_input, Some(0));
    assert_eq!(f.actions[1].secondary_input, Some(0));
    let context = input_of(&l, copy, f.actions[0].secondary_input);
    let (id, attrs) = source_attrs(context);
    assert_eq!(id, "local://context");
    assert_eq!(attrs[attr::LOCAL_INCLUDE_PATTERNS], r#"["src","a.txt"]"#);
    assert_eq!(attrs[attr::LOCAL_SHARED_KEY_HINT], "context");
    assert!(!attrs.contains_key(attr::LOCAL_EXCLUDE_PATTERNS));
    assert_eq!(context.platform, None);
    let (_, m) = named(&l, "[internal] load build context");
    assert_eq!(m.description["location"], "2-2");
}

#[test]
fn copy_of_the_whole_context_has_no_include_patterns() {
    let l = lowered("FROM scratch\nCOPY . /app\n");
    let copy = root(&l);
    let (_, attrs) = source_attrs(vertex(&l, &copy.inputs[0]));
    assert!(
        !attrs.contains_key(attr::LOCAL_INCLUDE_PATTERNS),
        "{attrs:?}"
    );
    assert_eq!(copies(copy)[0].src, "/");
}

#[test]
fn excludes_go_to_the_action_and_to_the_context_source() {
    let l = lowered("FROM scratch\nCOPY --exclude=*.md --exclude=!keep.md docs/ /d/\n");
    let copy = root(&l);
    assert_eq!(copies(copy)[0].exclude_patterns, ["*.md", "!keep.md"]);
    let (_, attrs) = source_attrs(vertex(&l, &copy.inputs[0]));
    assert_eq!(
        attrs[attr::LOCAL_EXCLUDE_PATTERNS],
        r#"["docs/*.md","!docs/keep.md"]"#
    );
    // With several sources a restated pattern could hide another source's
    // files, so the context source reads everything they name.
    let l = lowered("FROM scratch\nCOPY --exclude=x a a/x /d/\n");
    let (_, attrs) = source_attrs(vertex(&l, &root(&l).inputs[0]));
    assert!(!attrs.contains_key(attr::LOCAL_EXCLUDE_PATTERNS));
}

#[test]
fn copy_from_a_stage_reads_its_final_state_and_from_an_image_a_source() {
    let df = "FROM alpine AS build\nRUN make\nFROM --platform=linux/arm64 scratch\nCOPY --from=build /out /\nCOPY --from=busybox:1 /bin/sh /sh\n";
    let l = lowered(df);
    let (from_stage, _) = named(&l, "[stage-1 1/2] COPY --from=build");
    let Op::File(f) = &from_stage.op else {
        panic!()
    };
    let read = &from_stage.inputs[f.actions[0].secondary_input.unwrap() as usize];
    assert_eq!(Some(read.clone()), l.stage_roots[0]);
    let last = root(&l);
    let Op::File(f) = &last.op else { panic!() };
    let image = input_of(&l, last, f.actions[0].secondary_input);
    assert_eq!(
        source_attrs(image).0,
        "docker-image://docker.io/library/busybox:1"
    );
    // Images named by --from are pulled for the target platform.
    assert_eq!(image.platform, Some(amd64()));
    let (_, m) = named(&l, "FROM docker.io/library/busybox:1");
    assert_eq!(m.name, "FROM docker.io/library/busybox:1");
}

#[test]
fn heredoc_sources_are_inline_files() {
    let l = lowered("FROM scratch\nARG V=1\nCOPY <<EOF /etc/conf\nv=${V}\nEOF\n");
    let copy = root(&l);
    let c = copies(copy)[0];
    assert_eq!(c.src, "/EOF");
    assert!(!c.allow_wildcard && !c.follow_symlink && !c.dir_copy_contents);
    let Op::File(f) = &copy.op else { panic!() };
    let file = input_of(&l, copy, f.actions[0].secondary_input);
    let Op::File(inline) = &file.op else { panic!() };
    assert_eq!(inline.actions[0].input, None);
    match &inline.actions[0].action {
        FileActionKind::Mkfile {
            path, mode, data, ..
        } => {
            assert_eq!((path.as_str(), *mode), ("/EOF", 0o644));
            assert_eq!(data, "v=1\n");
        }
        other => panic!("{other:?}"),
    }
    named(&l, "[internal] preparing inline document");
}

#[test]
fn chown_and_chmod() {
    let l = lowered("FROM scratch\nCOPY --chown=1000:staff --chmod=755 a /b\n");
    let c = copies(root(&l))[0].clone();
    assert_eq!(
        c.owner,
        Some(ChownOpt {
            user: UserOpt::Id(1000),
            group: Some(UserOpt::Name("staff".into())),
        })
    );
    assert_eq!(c.mode.as_deref(), Some("0755"));
    let l = lowered("FROM scratch\nCOPY --chown=app --chmod=u+x,go-w a /b\n");
    let c = copies(root(&l))[0].clone();
    assert_eq!(c.owner.map(|o| o.user), Some(UserOpt::Name("app".into())));
    assert_eq!(c.mode.as_deref(), Some("u+x,go-w"));
}

#[test]
fn copy_parents_uses_a_pivot_and_include_patterns() {
    let l = lowered("FROM scratch\nCOPY --parents a/./b/c.txt x/*.log /d/\n");
    let cs = copies(root(&l));
    assert_eq!(cs[0].src, "/a");
    assert_eq!(cs[0].include_patterns, ["b/c.txt"]);
    assert_eq!(cs[0].required_paths, ["/a/b/c.txt"]);
    assert!(cs[0].parents);
    assert_eq!(cs[1].src, "/");
    assert_eq!(cs[1].include_patterns, ["x/*.log"]);
    assert!(cs[1].required_paths.is_empty());
    let (_, attrs) = source_attrs(vertex(&l, &root(&l).inputs[0]));
    assert_eq!(
        attrs[attr::LOCAL_INCLUDE_PATTERNS],
        r#"["a/b/c.txt","x/*.log"]"#
    );
}

#[test]
fn copy_link_merges_a_copy_onto_scratch() {
    let l = lowered("FROM alpine\nCOPY --link a /\n");
    let merge = root(&l);
    let Op::Merge(m) = &merge.op else {
        panic!("{merge:?}")
    };
    assert_eq!(m.inputs, [0, 1]);
    let base = vertex(&l, &merge.inputs[0]);
    assert!(matches!(base.op, Op::Source(_)));
    let copy = vertex(&l, &merge.inputs[1]);
    let Op::File(f) = &copy.op else { panic!() };
    assert_eq!(
        f.actions[0].input, None,
        "a linked copy starts from scratch"
    );
    let names = names(&l);
    assert!(
        names.contains(&"[2/2] COPY --link a /".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"[2/2] LINK COPY --link a /".to_string()),
        "{names:?}"
    );
    // With --chmod BuildKit copies in place; on scratch the copy is the
    // result.
    let l = lowered("FROM alpine\nCOPY --link --chmod=644 a /\n");
    assert!(matches!(root(&l).op, Op::File(_)));
    assert_eq!(root(&l).inputs.len(), 2);
    let l = lowered("FROM scratch\nCOPY --link a /\n");
    assert!(matches!(root(&l).op, Op::File(_)));
}

#[test]
fn add_http_is_an_http_source() {
    let sum = format!("sha256:{}", "ab".repeat(32));
    let df = format!("FROM scratch\nADD --checksum={sum} https://example.com/d/f.tgz /opt/\n");
    let l = lowered(&df);
    let copy = root(&l);
    let c = copies(copy)[0];
    assert_eq!(c.src, "/f.tgz");
    assert!(!c.attempt_unpack && !c.allow_wildcard && c.create_dest_path);
    let (id, attrs) = source_attrs(vertex(&l, &copy.inputs[0]));
    assert_eq!(id, "https://example.com/d/f.tgz");
    assert_eq!(attrs[attr::HTTP_CHECKSUM], sum);
    assert_eq!(attrs[attr::HTTP_FILENAME], "f.tgz");
    let err = try_build(
        "FROM scratch\nADD --checksum=sha256:nothex https://e.com/f /\n",
        &[],
        None,
        &LowerOptions::default(),
    )
    .expect_err("bad digest");
    assert!(matches!(
        err.kind,
        ErrorKind::Lower(LowerError::ChecksumFormat(_))
    ));
    assert_eq!(err.line(), Some(2));
}

#[test]
fn add_local_unpacks_unless_told_not_to() {
    let l = lowered("FROM scratch\nADD a.tar /x/\n");
    assert!(copies(root(&l))[0].attempt_unpack);
    let l = lowered("FROM scratch\nADD --unpack=false a.tar /x/\n");
    assert!(!copies(root(&l))[0].attempt_unpack);
}

#[test]
fn add_git_is_a_git_source() {
    let l = lowered(
        "FROM scratch\nADD --keep-git-dir=true https://github.com/o/r.git?ref=v1&subdir=sub /src\n",
    );
    let copy = root(&l);
    let c = copies(copy)[0];
    assert_eq!((c.src.as_str(), c.dest.as_str()), ("/", "/src"));
    assert!(!c.dir_copy_contents);
    let (id, attrs) = source_attrs(vertex(&l, &copy.inputs[0]));
    assert_eq!(id, "git://github.com/o/r.git#v1:sub");
    assert_eq!(attrs[attr::GIT_FULL_URL], "https://github.com/o/r.git");
    assert_eq!(attrs[attr::GIT_KEEP_GIT_DIR], "true");
    assert!(!attrs.contains_key(attr::GIT_MOUNT_SSH_SOCK));
    let l = lowered("FROM scratch\nADD git@github.com:o/r.git#main /src\n");
    let (id, attrs) = source_attrs(vertex(&l, &root(&l).inputs[0]));
    assert_eq!(id, "git://github.com/o/r.git#main");
    assert_eq!(attrs[attr::GIT_MOUNT_SSH_SOCK], "default");
    let err = try_build(
        "FROM scratch\nADD --keep-git-dir=false https://h/r.git?keep-git-dir=1 /src\n",
        &[],
        None,
        &LowerOptions::default(),
    )
    .expect_err("conflict");
    assert_eq!(err.line(), Some(2));
}

#[test]
fn workdir_creates_its_directory_as_the_user() {
    let df = "FROM alpine\nUSER app:app\nWORKDIR /srv/app\nWORKDIR /\nRUN true\n";
    let l = build(
        df,
        &[("SOURCE_DATE_EPOCH", "1700000000")],
        None,
        &LowerOptions::default(),
    );
    let (mkdir, _) = named(&l, "[2/4] WORKDIR /srv/app");
    let Op::File(f) = &mkdir.op else { panic!() };
    match &f.actions[0].action {
        FileActionKind::Mkdir {
            path,
            mode,
            make_parents,
            owner,
            timestamp,
        } => {
            assert_eq!(
                (path.as_str(), *mode, *make_parents),
                ("/srv/app", 0o755, true)
            );
            assert_eq!(
                owner.as_ref().map(|o| &o.user),
                Some(&UserOpt::Name("app".into()))
            );
            assert_eq!(*timestamp, Some(1_700_000_000));
        }
        other => panic!("{other:?}"),
    }
    // WORKDIR / makes nothing and takes no number, but BuildKit counts it
    // in the total.
    named(&l, "[3/4] RUN true");
}

#[test]
fn run_is_an_exec_on_the_stage_root() {
    let df = "FROM alpine\nENV A=1\nWORKDIR /w\nUSER me\nRUN --network=none --security=insecure echo $A\n";
    let l = build(
        df,
        &[("http_proxy", "http://p:3128")],
        None,
        &LowerOptions::default(),
    );
    let run = root(&l);
    let e = exec(run);
    assert_eq!(e.meta.args, ["/bin/sh", "-c", "echo $A"]);
    assert_eq!(e.meta.cwd, "/w");
    assert_eq!(e.meta.user, "me");
    assert!(e.meta.env.contains(&"A=1".to_string()));
    assert!(e.meta.env.iter().any(|v| v.starts_with("PATH=")));
    assert_eq!(
        e.meta.proxy_env,
        ["HTTP_PROXY=http://p:3128", "http_proxy=http://p:3128"]
    );
    assert_eq!(e.network, NetMode::None);
    assert_eq!(e.security, SecurityMode::Insecure);
    let r = &e.mounts[0];
    assert_eq!(
        (r.input, r.selector.as_str(), r.dest.as_str()),
        (Some(0), "/", "/")
    );
    assert_eq!((r.output, r.readonly), (Some(0), false));
    // ENV and USER are not numbered; variables show expanded.
    let (_, m) = named(&l, "[3/3] RUN");
    assert_eq!(
        m.name,
        "[3/3] RUN --network=none --security=insecure echo 1"
    );
}

#[test]
fn run_on_scratch_has_a_root_without_input() {
    let l = lowered("FROM scratch\nRUN [\"/true\"]\n");
    let e = exec(root(&l));
    assert_eq!(e.mounts[0].input, None);
    assert!(root(&l).inputs.is_empty());
    assert_eq!(e.meta.args, ["/true"]);
}

#[test]
fn run_mounts() {
    let df = "FROM alpine AS tools\nFROM alpine\nWORKDIR /src\nRUN --mount=type=bind,source=go.mod,target=go.mod \\\n\
              --mount=type=cache,target=/root/.cache/ \\\n\
              --mount=type=cache,id=c2,target=/c2,sharing=locked,uid=1000,mode=0700 \\\n\
              --mount=type=tmpfs,target=/tmp,size=1m \\\n\
              --mount=type=bind,from=tools,source=/bin,target=/tools,rw \\\n\
              --mount=type=secret,id=tok \\\n\
              --mount=type=secret,id=env,env=TOKEN \\\n\
              --mount=type=ssh \\\n\
              make\n";
    let l = lowered(df);
    let run = root(&l);
    let e = exec(run);
    let dests: Vec<&str> = e.mounts.iter().map(|m| m.dest.as_str()).collect();
    assert_eq!(
        dests,
        [
            "/",
            "/c2",
            "/root/.cache/",
            "/src/go.mod",
            "/tmp",
            "/tools",
            "/run/secrets/tok",
            "",
            "/run/buildkit/ssh_agent.0"
        ]
    );
    let m = |dest: &str| e.mounts.iter().find(|m| m.dest == dest).unwrap();
    // Only the root has an output, read-write binds included.
    assert!(e.mounts[1..].iter().all(|m| m.output.is_none()));

    let gomod = m("/src/go.mod");
    assert!(gomod.readonly);
    assert_eq!(gomod.selector, "/go.mod");
    let (_, attrs) = source_attrs(input_of(&l, run, gomod.input));
    assert_eq!(attrs[attr::LOCAL_INCLUDE_PATTERNS], r#"["go.mod"]"#);

    let cache = m("/root/.cache/");
    assert_eq!(cache.input, None);
    assert!(!cache.readonly);
    assert_eq!(
        cache.kind,
        MountKind::Cache {
            id: "/root/.cache".into(),
            sharing: CacheSharing::Shared,
            mode: None,
            uid: None,
            gid: None
        }
    );
    let owned = m("/c2");
    assert_eq!(owned.selector, "/cache");
    let MountKind::Cache { id, sharing, .. } = &owned.kind else {
        panic!()
    };
    assert_eq!((id.as_str(), *sharing), ("c2", CacheSharing::Locked));
    let Op::File(f) = &input_of(&l, run, owned.input).op else {
        panic!()
    };
    match &f.actions[0].action {
        FileActionKind::Mkdir {
            path, mode, owner, ..
        } => {
            assert_eq!((path.as_str(), *mode), ("/cache", 0o700));
            assert_eq!(owner.as_ref().map(|o| &o.user), Some(&UserOpt::Id(1000)));
        }
        other => panic!("{other:?}"),
    }
    named(&l, "[internal] setting cache mount permissions");

    assert_eq!(
        m("/tmp").kind,
        MountKind::Tmpfs {
            size: Some(1 << 20)
        }
    );
    assert_eq!(m("/tmp").input, None);
    let tools = m("/tools");
    assert!(!tools.readonly);
    assert_eq!(tools.selector, "/bin");
    assert_eq!(
        run.inputs[tools.input.unwrap() as usize],
        l.stage_roots[0].clone().unwrap()
    );

    let MountKind::Secret(s) = &m("/run/secrets/tok").kind else {
        panic!()
    };
    assert_eq!((s.id.as_str(), s.mode, s.optional), ("tok", 0o400, true));
    let MountKind::Secret(s) = &m("").kind else {
        panic!()
    };
    assert_eq!(s.env.as_deref(), Some("TOKEN"));
    let MountKind::Ssh(ssh) = &m("/run/buildkit/ssh_agent.0").kind else {
        panic!()
    };
    assert_eq!((ssh.id.as_str(), ssh.mode), ("default", 0o600));
    assert!(e
        .meta
        .env
        .contains(&"SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0".to_string()));
    // Input indices follow mount order.
    let used: Vec<u32> = e.mounts.iter().filter_map(|m| m.input).collect();
    let mut distinct = used.clone();
    distinct.dedup();
    assert_eq!(distinct, (0..run.inputs.len() as u32).collect::<Vec<_>>());
}

#[test]
fn run_mount_target_cannot_be_the_root() {
    let err = try_build(
        "FROM alpine\nRUN --mount=type=cache,target=. true\n",
        &[],
        None,
        &LowerOptions::default(),
    )
    .expect_err("target /");
    assert!(matches!(
        err.kind,
        ErrorKind::Lower(LowerError::MountTarget(_))
    ));
    assert_eq!(err.line(), Some(2));
}

#[test]
fn secret_env_values_are_masked_in_names() {
    let l = lowered(
        "FROM alpine\nENV TOKEN=visible\nRUN --mount=type=secret,id=t,env=TOKEN echo $TOKEN\n",
    );
    let (_, m) = named(&l, "[stage-0 2/2] RUN");
    assert!(m.name.ends_with("echo ****"), "{}", m.name);
}

#[test]
fn run_heredoc_script_is_mounted_from_an_inline_file() {
    let l = lowered("FROM alpine\nRUN <<EOF\n#!/bin/sh\necho hi\nEOF\n");
    let run = root(&l);
    let e = exec(run);
    assert_eq!(e.meta.args, ["/bin/sh", "-c", "/dev/pipes/EOF"]);
    let pipes = e.mounts.iter().find(|m| m.dest == "/dev/pipes/").unwrap();
    assert!(pipes.readonly);
    let Op::File(f) = &input_of(&l, run, pipes.input).op else {
        panic!()
    };
    match &f.actions[0].action {
        FileActionKind::Mkfile {
            path, mode, data, ..
        } => {
            assert_eq!((path.as_str(), *mode), ("/EOF", 0o755));
            assert_eq!(data, "#!/bin/sh\necho hi\n");
        }
        other => panic!("{other:?}"),
    }
    let (_, m) = named(&l, "[2/2] RUN");
    assert_eq!(m.name, "[2/2] RUN <<EOF (#!/bin/sh...)");
}

#[test]
fn progress_names_count_like_buildkit() {
    // Twelve numbered steps: the index is padded to the total's width.
    let mut df = String::from("FROM alpine AS a\n");
    for i in 0..11 {
        df.push_str(&format!("RUN step{i}\n"));
    }
    df.push_str("FROM a\nCOPY x /x\n");
    let l = lowered(&df);
    let all = names(&l);
    assert!(
        all.contains(&"[a  1/12] FROM docker.io/library/alpine:latest".to_string()),
        "{all:?}"
    );
    assert!(all.contains(&"[a  2/12] RUN step0".to_string()), "{all:?}");
    assert!(all.contains(&"[a 12/12] RUN step10".to_string()), "{all:?}");
    // A stage based on a stage does not count FROM.
    assert!(
        all.contains(&"[stage-1 1/1] COPY x /x".to_string()),
        "{all:?}"
    );
    // A lone stage has no label, unless a RUN --mount registers another.
    let l = lowered("FROM alpine\nRUN a\n");
    assert_eq!(names(&l)[1], "[2/2] RUN a");
    let l = lowered("FROM alpine\nRUN --mount=type=tmpfs,target=/t a\n");
    assert!(names(&l)[1].starts_with("[stage-0 2/2] RUN"));
    // ONBUILD triggers of a base stage are numbered and marked.
    let l = lowered("FROM alpine AS base\nONBUILD RUN trig\nFROM base\nRUN own\n");
    let all = names(&l);
    assert!(
        all.contains(&"[stage-1 1/2] ONBUILD RUN trig".to_string()),
        "{all:?}"
    );
    assert!(
        all.contains(&"[stage-1 2/2] RUN own".to_string()),
        "{all:?}"
    );
}

#[test]
fn locations_span_the_instruction() {
    let l = lowered("FROM alpine\nRUN a \\\n  b\n");
    assert_eq!(root(&l).op.kind(), "exec");
    let (_, m) = named(&l, "[2/2] RUN");
    assert_eq!(m.description["location"], "2-3");
}

#[test]
fn no_cache_marks_exec_and_file_vertices() {
    let df = "FROM alpine AS dep\nRUN a\nFROM alpine AS Final\nCOPY --from=dep / /\nRUN b\n";
    let l = build(
        df,
        &[],
        None,
        &LowerOptions {
            no_cache_filter: vec!["FINAL".into()],
            ..LowerOptions::default()
        },
    );
    assert!(!named(&l, "[dep 2/2] RUN a").1.ignore_cache);
    assert!(named(&l, "[final 2/3] COPY").1.ignore_cache);
    assert!(named(&l, "[final 3/3] RUN b").1.ignore_cache);
    assert!(!named(&l, "[dep 1/2] FROM").1.ignore_cache);
    let l = build(
        df,
        &[],
        None,
        &LowerOptions {
            no_cache: true,
            ..LowerOptions::default()
        },
    );
    assert!(named(&l, "[dep 2/2] RUN a").1.ignore_cache);
}

#[test]
fn only_needed_stages_are_lowered() {
    let l = build(
        "FROM alpine AS unused\nRUN nope\nFROM alpine AS used\nRUN yes\nFROM scratch AS final\nCOPY --from=used / /\n",
        &[],
        None,
        &LowerOptions::default(),
    );
    assert!(!names(&l).iter().any(|n| n.contains("nope")));
    assert_eq!(l.stage_roots.len(), 3);
    assert_eq!(l.stage_roots[0], None);
    assert!(l.stage_roots[1].is_some());
    assert_eq!(l.stage_roots[2], l.definition.root);
}

// ---- Properties the cache relies on ----

fn digests(l: &Lowered) -> Vec<Digest> {
    vertices(l).into_iter().map(|(d, _, _)| d.clone()).collect()
}

fn root_digest(l: &Lowered) -> Digest {
    l.definition.root.clone().expect("a root").digest
}

const PROPERTY_DF: &str = "FROM alpine AS base\nRUN setup\n\
FROM base\nARG DEST=/app\nARG SRC=src\nARG MODE=0644\nARG CMD=make\n\
COPY --chmod=${MODE} ${SRC} ${DEST}/\nRUN ${CMD}\n";

fn property(args: &[(&str, &str)]) -> Lowered {
    build(PROPERTY_DF, args, None, &LowerOptions::default())
}

#[test]
fn lowering_is_deterministic() {
    let a = property(&[]);
    let b = property(&[]);
    assert_eq!(digests(&a), digests(&b));
    assert_eq!(a.definition, b.definition);
    assert_eq!(
        crate::llb::to_json_lines(&a.definition),
        crate::llb::to_json_lines(&b.definition)
    );
}

#[test]
fn inputs_change_the_digests_they_reach() {
    let base = property(&[]);
    let (setup, _) = named(&base, "[base 2/2] RUN setup");
    let setup_digest = setup.digest();
    for arg in [
        ("DEST", "/srv"),
        ("SRC", "other"),
        ("MODE", "0600"),
        ("CMD", "make install"),
    ] {
        let changed = property(&[arg]);
        assert_ne!(root_digest(&changed), root_digest(&base), "{arg:?}");
        // What comes before the changed step keeps its identity.
        assert!(digests(&changed).contains(&setup_digest), "{arg:?}");
    }
    // The COPY itself changes for the three values it uses, not for CMD.
    let copy_of = |l: &Lowered| named(l, "[stage-1 1/2] COPY").0.digest();
    assert_eq!(copy_of(&property(&[("CMD", "x")])), copy_of(&base));
    for arg in [("DEST", "/srv"), ("SRC", "other"), ("MODE", "0600")] {
        assert_ne!(copy_of(&property(&[arg])), copy_of(&base), "{arg:?}");
    }
}

#[test]
fn an_unneeded_stage_contributes_nothing() {
    let with = build(
        &format!("FROM alpine AS unrelated\nRUN other\nCOPY big /big\n{PROPERTY_DF}"),
        &[],
        None,
        &LowerOptions::default(),
    );
    let without = property(&[]);
    let mut a = digests(&with);
    let mut b = digests(&without);
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

/// Lowers `df` for target `platform` on an amd64 build machine, as one
/// platform of a multi-platform build.
fn for_platform(df: &str, platform: &str) -> Lowered {
    let ast = parse(df).unwrap();
    let plan_opts = PlanOptions {
        build_platform: amd64(),
        target_platform: Some(platform.parse().unwrap()),
        ..PlanOptions::default()
    };
    let plan = plan(&ast, &plan_opts, &NoBaseImages).unwrap();
    let opts = LowerOptions {
        platform_prefix: true,
        ..LowerOptions::default()
    };
    lower(&plan, &opts).unwrap()
}

#[test]
fn multi_platform_names_carry_the_stage_platform() {
    // (BuildKit gives `FROM --platform=… scratch` the target platform.)
    let df = "FROM --platform=$BUILDPLATFORM busybox AS build\n\
              COPY a /a\n\
              ARG TARGETARCH\n\
              COPY b-$TARGETARCH /b\n\
              FROM scratch\n\
              ARG TARGETARCH\n\
              COPY --from=build /a /a\n\
              COPY file-$TARGETARCH /\n";
    let arm = for_platform(df, "linux/arm64");
    let amd = for_platform(df, "linux/amd64");
    let arm_names = names(&arm);
    for want in [
        "[linux/amd64 build 1/3] FROM docker.io/library/busybox:latest",
        "[linux/amd64 build 2/3] COPY a /a",
        "[linux/amd64->arm64 build 3/3] COPY b-arm64 /b",
        "[linux/arm64 stage-1 1/2] COPY --from=build /a /a",
        "[linux/arm64 stage-1 2/2] COPY file-arm64 /",
    ] {
        assert!(
            arm_names.iter().any(|n| n == want),
            "{want}: {arm_names:#?}"
        );
    }
    // The build-platform stage's first step is the same vertex for both
    // targets (same digest, same name), so one build runs it once.
    let (arm_copy, arm_meta) = named(&arm, "[linux/amd64 build 2/3]");
    let (amd_copy, amd_meta) = named(&amd, "[linux/amd64 build 2/3]");
    assert_eq!(arm_copy.digest(), amd_copy.digest());
    assert_eq!(arm_meta.name, amd_meta.name);
    assert_ne!(arm.definition.root, amd.definition.root);
    // One platform keeps BuildKit's single-platform names.
    let single = lowered("FROM scratch\nCOPY a /a\nFROM scratch\nCOPY b /b\n");
    assert!(names(&single)
        .iter()
        .any(|n| n == "[stage-1 1/1] COPY b /b"));
}
