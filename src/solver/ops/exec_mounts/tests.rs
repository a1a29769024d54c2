use std::os::unix::fs::MetadataExt;

use super::*;
use crate::llb::{CacheSharing, ExecMeta, NetMode, SecurityMode};
use crate::session::{SecretSource, Secrets, SshAgents};

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Store,
    caches: CacheMounts,
    session: Session,
}

impl Env {
    fn new(session: Session) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::open(&root).unwrap();
        let caches = CacheMounts::new(&root);
        Env {
            root: dir.path().to_path_buf(),
            _dir: dir,
            store,
            caches,
            session,
        }
    }

    fn cx(&self) -> MountContext<'_> {
        MountContext {
            store: &self.store,
            cache_mounts: &self.caches,
            session: &self.session,
        }
    }

    /// An input tree at `<tmp>/<name>`.
    fn input(&self, name: &str, files: &[(&str, &str)]) -> MountInput {
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).unwrap();
        for (path, data) in files {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        MountInput {
            dir: Some(dir),
            identity: format!("key-of-{name}"),
        }
    }
}

fn exec(mounts: Vec<LlbMount>) -> ExecOp {
    let mut all = vec![mount(None, "/", "/", false, LlbKind::Bind)];
    all[0].output = Some(0);
    all.extend(mounts);
    ExecOp {
        meta: ExecMeta {
            args: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
            hostname: String::new(),
            proxy_env: vec![],
        },
        mounts: all,
        network: NetMode::Sandbox,
        security: SecurityMode::Sandbox,
    }
}

fn mount(
    input: Option<u32>,
    selector: &str,
    dest: &str,
    readonly: bool,
    kind: LlbKind,
) -> LlbMount {
    LlbMount {
        input,
        selector: selector.into(),
        dest: dest.into(),
        output: None,
        readonly,
        kind,
    }
}

fn bind_source(m: &Mount) -> (&Path, bool) {
    match &m.kind {
        MountKind::Bind {
            source, readonly, ..
        } => (source, *readonly),
        other => panic!("not a bind: {other:?}"),
    }
}

/// The owner the tests ask for: 1000:1001 as root, else one's own ids
/// (only root may give files away).
fn owner() -> (u32, u32) {
    if nix::unistd::geteuid().is_root() {
        (1000, 1001)
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    }
}

fn secret_opt(id: &str, optional: bool, env: Option<&str>) -> LlbKind {
    LlbKind::Secret(SecretOpt {
        id: id.into(),
        uid: owner().0,
        gid: owner().1,
        mode: 0o440,
        optional,
        env: env.map(String::from),
    })
}

#[test]
fn bind_resolves_symlinks_inside_the_input() {
    let env = Env::new(Session::default());
    let input = env.input("stage", &[("a/real/f", "x")]);
    let dir = input.dir.clone().unwrap();
    std::os::unix::fs::symlink("/a/real", dir.join("link")).unwrap();
    std::os::unix::fs::symlink("../../../../../a", dir.join("up")).unwrap();
    let op = exec(vec![
        mount(Some(0), "/link", "/m1", true, LlbKind::Bind),
        mount(Some(0), "/up/real/f", "/m2", true, LlbKind::Bind),
    ]);
    let p = prepare(&op, std::slice::from_ref(&input), env.cx()).unwrap();
    assert_eq!(p.mounts.len(), 2, "the root mount is the runner's");
    assert_eq!(
        bind_source(&p.mounts[0]),
        (dir.join("a/real").as_path(), true)
    );
    assert_eq!(
        bind_source(&p.mounts[1]),
        (dir.join("a/real/f").as_path(), true)
    );
    assert_eq!(p.mounts[1].target, "/m2");

    // A link that climbs out lands inside the input, where nothing is.
    std::os::unix::fs::symlink("/../../etc", dir.join("escape")).unwrap();
    let op = exec(vec![mount(
        Some(0),
        "/escape/passwd",
        "/m",
        true,
        LlbKind::Bind,
    )]);
    let err = prepare(&op, &[input], env.cx()).unwrap_err().to_string();
    assert_eq!(err, "mount /m: source `/escape/passwd` not found");
}

#[test]
fn writable_bind_gets_a_throwaway_copy() {
    let env = Env::new(Session::default());
    let input = env.input("ctx", &[("src/f", "orig")]);
    let dir = input.dir.clone().unwrap();
    let op = exec(vec![mount(Some(0), "/src", "/w", false, LlbKind::Bind)]);
    let p = prepare(&op, &[input], env.cx()).unwrap();
    let (copy, readonly) = bind_source(&p.mounts[0]);
    assert!(!readonly);
    assert_ne!(copy, dir.join("src"));
    fs::write(copy.join("f"), "changed").unwrap();
    fs::write(copy.join("new"), "n").unwrap();
    assert_eq!(fs::read_to_string(dir.join("src/f")).unwrap(), "orig");
    assert!(!dir.join("src/new").exists());
    let copy = copy.to_path_buf();
    drop(p);
    assert!(!copy.exists(), "the copy is removed with the step");
}

#[test]
fn scratch_and_missing_inputs() {
    let env = Env::new(Session::default());
    let scratch = MountInput {
        dir: None,
        identity: "scratch".into(),
    };
    let op = exec(vec![mount(Some(0), "/", "/e", true, LlbKind::Bind)]);
    let p = prepare(&op, std::slice::from_ref(&scratch), env.cx()).unwrap();
    let (dir, _) = bind_source(&p.mounts[0]);
    assert_eq!(fs::read_dir(dir).unwrap().count(), 0);
    let op = exec(vec![mount(Some(0), "/x", "/e", true, LlbKind::Bind)]);
    assert!(prepare(&op, &[scratch], env.cx()).is_err());
    let op = exec(vec![mount(Some(3), "/", "/e", true, LlbKind::Bind)]);
    let err = prepare(&op, &[], env.cx()).unwrap_err().to_string();
    assert_eq!(err, "mount /e: input 3 does not exist");
}

#[test]
fn tmpfs_with_size() {
    let env = Env::new(Session::default());
    let op = exec(vec![mount(
        None,
        "/",
        "/t",
        false,
        LlbKind::Tmpfs {
            size: Some(1 << 20),
        },
    )]);
    let p = prepare(&op, &[], env.cx()).unwrap();
    assert_eq!(
        p.mounts,
        [Mount {
            target: "/t".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
                readonly: false,
            },
        }]
    );
}

fn cache(id: &str, sharing: CacheSharing) -> LlbKind {
    LlbKind::Cache {
        id: id.into(),
        sharing,
        mode: None,
        uid: None,
        gid: None,
    }
}

#[test]
fn cache_persists_under_the_store_and_is_seeded_from_its_source() {
    let env = Env::new(Session::default());
    let op = exec(vec![mount(
        None,
        "/",
        "/root/.cache",
        false,
        cache("/root/.cache", CacheSharing::Shared),
    )]);
    let p = prepare(&op, &[], env.cx()).unwrap();
    let (dir, readonly) = bind_source(&p.mounts[0]);
    assert!(!readonly);
    assert!(
        dir.starts_with(env.root.join("store/cache-mounts")),
        "{dir:?}"
    );
    fs::write(dir.join("kept"), "1").unwrap();
    let dir = dir.to_path_buf();
    drop(p);
    let p = prepare(&op, &[], env.cx()).unwrap();
    assert_eq!(bind_source(&p.mounts[0]).0, dir);
    assert_eq!(fs::read_to_string(dir.join("kept")).unwrap(), "1");
    drop(p);

    // Seeded from a stage's `/cache` (how uid/gid/mode reach a cache).
    let stage = env.input("stage", &[("cache/seed", "s"), ("other", "o")]);
    let op = exec(vec![mount(
        Some(0),
        "/cache",
        "/c",
        false,
        cache("/c", CacheSharing::Locked),
    )]);
    let p = prepare(&op, std::slice::from_ref(&stage), env.cx()).unwrap();
    let (seeded, _) = bind_source(&p.mounts[0]);
    assert_eq!(fs::read_to_string(seeded.join("seed")).unwrap(), "s");
    assert!(!seeded.join("other").exists());
    fs::write(seeded.join("seed"), "written").unwrap();
    assert_eq!(
        fs::read_to_string(stage.dir.as_ref().unwrap().join("cache/seed")).unwrap(),
        "s",
        "the stage is never written"
    );
    drop(p);
    let p = prepare(&op, std::slice::from_ref(&stage), env.cx()).unwrap();
    assert_eq!(
        fs::read_to_string(bind_source(&p.mounts[0]).0.join("seed")).unwrap(),
        "written"
    );
    drop(p);
    // Another source, another cache.
    let other = MountInput {
        identity: "different".into(),
        ..stage
    };
    let p = prepare(&op, &[other], env.cx()).unwrap();
    assert_eq!(
        fs::read_to_string(bind_source(&p.mounts[0]).0.join("seed")).unwrap(),
        "s"
    );
}

#[test]
fn secret_as_file_and_as_env() {
    let env0 = tempfile::tempdir().unwrap();
    let file = env0.path().join("token");
    fs::write(&file, "s3cr3t-value").unwrap();
    let session = Session {
        secrets: Secrets::new([("tok".to_string(), SecretSource::File(file))]).unwrap(),
        ..Session::default()
    };
    let env = Env::new(session);
    let op = exec(vec![
        mount(
            None,
            "/",
            "/run/secrets/tok",
            true,
            secret_opt("tok", false, None),
        ),
        mount(None, "/", "", true, secret_opt("tok", false, Some("TOKEN"))),
        mount(
            None,
            "/",
            "/run/secrets/gone",
            true,
            secret_opt("gone", true, None),
        ),
    ]);
    let p = prepare(&op, &[], env.cx()).unwrap();
    assert_eq!(p.mounts.len(), 1, "env-only and missing optional: no file");
    let m = &p.mounts[0];
    let (path, readonly) = bind_source(m);
    assert!(readonly);
    assert_eq!(fs::read_to_string(path).unwrap(), "s3cr3t-value");
    let MountKind::Bind { restrict, .. } = &m.kind else {
        panic!("a secret is a bind mount");
    };
    // Mode 0440 executes nothing: nosuid, nodev and noexec.
    assert_eq!(*restrict, Restrict::ALL);
    let meta = fs::metadata(path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), owner());
    assert_eq!(meta.mode() & 0o777, 0o440);
    let dir_mode = fs::metadata(path.parent().unwrap()).unwrap().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    assert!(!path.starts_with(&env.root), "never under the store");
    assert_eq!(p.env, ["TOKEN=s3cr3t-value"]);
    let shown = format!("{p:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    let path = path.to_path_buf();
    drop(p);
    assert!(!path.exists() && !path.parent().unwrap().exists());

    let op = exec(vec![mount(
        None,
        "/",
        "/run/secrets/x",
        true,
        secret_opt("x", false, None),
    )]);
    let err = prepare(&op, &[], env.cx()).unwrap_err().to_string();
    assert_eq!(err, "secret x: not found");
}

#[test]
fn ssh_socket_forwarded() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let session = Session {
        ssh: SshAgents::new([("default".to_string(), vec![key])], None).unwrap(),
        ..Session::default()
    };
    let env = Env::new(session);
    let ssh = |id: &str, optional| {
        LlbKind::Ssh(SshOpt {
            id: id.into(),
            uid: 0,
            gid: 0,
            mode: 0o600,
            optional,
        })
    };
    let op = exec(vec![
        mount(
            None,
            "/",
            "/run/buildkit/ssh_agent.0",
            true,
            ssh("default", false),
        ),
        mount(
            None,
            "/",
            "/run/buildkit/ssh_agent.1",
            true,
            ssh("nope", true),
        ),
    ]);
    let p = prepare(&op, &[], env.cx()).unwrap();
    assert_eq!(p.mounts.len(), 1);
    let (sock, _) = bind_source(&p.mounts[0]);
    let listed = std::process::Command::new("ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", sock)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let sock = sock.to_path_buf();
    drop(p);
    assert!(!sock.exists());
    let op = exec(vec![mount(None, "/", "/s", true, ssh("nope", false))]);
    let err = prepare(&op, &[], env.cx()).unwrap_err().to_string();
    assert!(err.starts_with("no SSH key \"nope\" forwarded"), "{err}");
}

#[test]
fn one_step_mounting_a_locked_cache_twice_shares_it() {
    let env = Env::new(Session::default());
    let op = exec(vec![
        mount(None, "/", "/a", false, cache("x", CacheSharing::Locked)),
        mount(None, "/", "/b", false, cache("x", CacheSharing::Locked)),
        mount(None, "/", "/c", false, cache("y", CacheSharing::Locked)),
    ]);
    let p = prepare(&op, &[], env.cx()).unwrap();
    assert_eq!(bind_source(&p.mounts[0]).0, bind_source(&p.mounts[1]).0);
    assert_ne!(bind_source(&p.mounts[0]).0, bind_source(&p.mounts[2]).0);
}

#[test]
fn secrets_are_noexec_unless_their_mode_executes() {
    assert_eq!(super::secret_restrict(0o400), Restrict::ALL);
    let script = super::secret_restrict(0o700);
    assert!(script.nosuid && script.nodev && !script.noexec);
    assert!(!super::secret_restrict(0o001).noexec);
}
