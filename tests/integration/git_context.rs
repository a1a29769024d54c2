//! Remote build contexts against real servers on 127.0.0.1 started by
//! each test (a `git daemon`, and python3's HTTP server for git's "dumb"
//! HTTP transport and plain downloads): `bk build <git URL>` with refs,
//! sub-directories and `-f`, used whole (no `.dockerignore`); `--build-context` git and
//! HTTP values used by FROM, `COPY --from` and `RUN --mount=from=`;
//! submodules; `NAME::PLATFORM` contexts (directories and OCI layouts),
//! each use picking by its platform; and credentials in URLs never
//! printed.

use std::path::Path;
use std::process::{Command, Output};

use crate::add_http::Server;
use crate::git_util::{commit, git, init, Daemon};
use crate::util::{describe, Dir};

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(dir: &Dir, rel: &str) -> Option<String> {
    std::fs::read_to_string(dir.path().join(rel)).ok()
}

fn exists(dir: &Dir, rel: &str) -> bool {
    dir.path().join(rel).exists()
}

/// `bk build --progress plain -o OUT ARGS…`.
fn bk(dir: &Dir, out: &str, args: &[&str]) -> Output {
    let mut cmd = dir.bk();
    cmd.args(["build", "--progress", "plain", "-o", out])
        .args(args);
    cmd.output()
}

/// A bare copy of `repo` at `srv/NAME.git`, readable over git's dumb
/// HTTP transport from a static file server.
fn publish_bare(dir: &Dir, repo: &Path, name: &str) {
    let bare = dir.path().join(format!("srv/{name}.git"));
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(repo)
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    git(&bare, &["update-server-info"]);
}

/// `repo`: v1 = a Dockerfile and a.txt; main adds `sub/` with its own
/// Dockerfile, an alternative one and a `.dockerignore`.
fn make_repo(repo: &Path) {
    init(repo);
    std::fs::write(repo.join("Dockerfile"), "FROM scratch\nCOPY . /all/\n").unwrap();
    commit(repo, "a.txt", "one");
    git(repo, &["tag", "v1"]);
    for (name, text) in [
        ("sub/Dockerfile", "FROM scratch\nCOPY . /sub/\n"),
        ("sub/alt.Dockerfile", "FROM scratch\nCOPY keep.txt /alt/\n"),
        ("sub/.dockerignore", "*.log\n"),
        ("sub/skip.log", "ignored"),
    ] {
        let path = repo.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    commit(repo, "sub/keep.txt", "kept");
}

#[test]
fn a_git_url_is_a_build_context() {
    let dir = Dir::new();
    let repo = dir.path().join("git/repo");
    make_repo(&repo);
    let daemon = Daemon::start(&dir.path().join("git"));
    let url = daemon.url();

    // A tag: the Dockerfile at the root, the tag's files, no .git.
    let log = ok(bk(&dir, "out1", &[&format!("{url}#v1")]));
    assert_eq!(
        read(&dir, "out1/all/a.txt").as_deref(),
        Some("one"),
        "{log}"
    );
    assert!(!exists(&dir, "out1/all/sub"));
    assert!(!exists(&dir, "out1/all/.git"));

    // BuildKit's build argument keeps the checkout's .git.
    let log = ok(bk(
        &dir,
        "out1k",
        &[
            "--build-arg",
            "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1",
            &format!("{url}#v1"),
        ],
    ));
    let kept = dir.path().join("out1k/all");
    assert_eq!(
        git(&kept, &["rev-parse", "HEAD"]),
        git(&repo, &["rev-parse", "v1"]),
        "{log}"
    );
    assert_eq!(git(&kept, &["remote", "get-url", "origin"]), url);

    // A branch and a sub-directory: its Dockerfile; its .dockerignore
    // filters nothing (BuildKit uses a remote context whole).
    let context = format!("{url}#main:sub");
    ok(bk(&dir, "out2", &[&context]));
    assert_eq!(read(&dir, "out2/sub/keep.txt").as_deref(), Some("kept"));
    assert_eq!(read(&dir, "out2/sub/skip.log").as_deref(), Some("ignored"));
    assert!(!exists(&dir, "out2/sub/a.txt"));
    // Unchanged, the rebuild is cached: one ls-remote, no fetch.
    let before = daemon.requests("repo");
    let log = ok(bk(&dir, "out3", &[&context]));
    assert!(log.contains("CACHED"), "{log}");
    assert_eq!(read(&dir, "out3/sub/keep.txt").as_deref(), Some("kept"));
    assert_eq!(daemon.requests("repo"), before + 1);
    // An ADD of the same URL reuses that checkout.
    dir.create(
        "ctx/Dockerfile",
        &format!("FROM scratch\nADD {context} /added\n"),
    );
    ok(bk(&dir, "out3b", &["ctx"]));
    assert_eq!(read(&dir, "out3b/added/keep.txt").as_deref(), Some("kept"));
    assert_eq!(daemon.requests("repo"), before + 2);
    // --no-cache fetches again.
    ok(bk(&dir, "out3c", &["--no-cache", &context]));
    assert!(daemon.requests("repo") > before + 3);
    // The checkout is a cache record: listed, and pruned.
    let du = dir.bk().args(["du", "--verbose"]).stdout();
    assert!(
        du.contains(&format!("[internal] load git source {context}")),
        "{du}"
    );
    ok(dir
        .bk()
        .args(["cache", "prune", "--all", "--force"])
        .output());
    let before = daemon.requests("repo");
    ok(bk(&dir, "out3d", &[&context]));
    assert!(daemon.requests("repo") > before + 1);

    // -f is relative to the sub-directory.
    ok(bk(&dir, "out4", &["-f", "alt.Dockerfile", &context]));
    assert_eq!(read(&dir, "out4/alt/keep.txt").as_deref(), Some("kept"));
    // A missing Dockerfile and an unknown ref are named.
    let out = bk(&dir, "out5", &["-f", "nope.Dockerfile", &context]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nope.Dockerfile"),
        "{err}"
    );
    let out = bk(&dir, "out5", &[&format!("{url}#no-such-ref")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no-such-ref"),
        "{err}"
    );
    assert!(!exists(&dir, "out5"));

    // The same repository over HTTP: a URL ending in .git is git.
    publish_bare(&dir, &repo, "repo");
    let server = Server::start(&dir);
    ok(bk(
        &dir,
        "out6",
        &[&format!("{}#main:sub", server.url("/repo.git"))],
    ));
    assert_eq!(read(&dir, "out6/sub/keep.txt").as_deref(), Some("kept"));
}

#[test]
fn git_and_http_named_contexts_serve_from_copy_and_mounts() {
    let dir = Dir::new();
    let repo = dir.path().join("git/repo");
    make_repo(&repo);
    let daemon = Daemon::start(&dir.path().join("git"));
    // An HTTP context is one file named `context`, not unpacked.
    std::fs::create_dir_all(dir.path().join("srv")).unwrap();
    let tar = Command::new("tar")
        .args(["-czf", "srv/blob.tar.gz", "-C", "git/repo", "a.txt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", describe(&tar));
    let server = Server::start(&dir);
    let busybox = crate::named_context::busybox();
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "FROM {busybox} AS run\n\
             RUN --mount=from=src,target=/m cat /m/keep.txt > /mounted\n\
             FROM scratch\n\
             COPY --from=src keep.txt /from-git\n\
             COPY --from=dl context /from-http\n\
             COPY --from=run /mounted /mounted\n"
        ),
    );
    let src = format!("src={}#main:sub", daemon.url());
    let dl = format!("dl={}", server.url("/blob.tar.gz"));
    // A context no step uses is never fetched, even when unreachable.
    let unused = "unused=git://127.0.0.1:1/nothing";
    ok(bk(
        &dir,
        "out",
        &[
            "--build-context",
            &src,
            "--build-context",
            &dl,
            "--build-context",
            unused,
            "ctx",
        ],
    ));
    assert_eq!(read(&dir, "out/from-git").as_deref(), Some("kept"));
    assert_eq!(read(&dir, "out/mounted").as_deref(), Some("kept"));
    assert_eq!(
        std::fs::read(dir.path().join("out/from-http")).unwrap(),
        std::fs::read(dir.path().join("srv/blob.tar.gz")).unwrap()
    );

    // FROM a git context: its checkout is the root file system.
    dir.create("ctx2/Dockerfile", "FROM src\n");
    ok(bk(&dir, "out2", &["--build-context", &src, "ctx2"]));
    assert_eq!(read(&dir, "out2/keep.txt").as_deref(), Some("kept"));
    assert!(exists(&dir, "out2/skip.log"));
}

#[test]
fn submodules_are_checked_out_unless_disabled() {
    let dir = Dir::new();
    let base = dir.path().join("git");
    let lib = base.join("lib");
    init(&lib);
    commit(&lib, "lib.txt", "lib");
    let daemon = Daemon::start(&base);
    let main = base.join("main");
    init(&main);
    std::fs::write(
        main.join("Dockerfile"),
        "FROM scratch\nCOPY lib/lib.txt /got\n",
    )
    .unwrap();
    commit(&main, "a.txt", "a");
    // Both repositories come from the daemon: git refuses file:// ones.
    git(
        &main,
        &["submodule", "add", "-q", &daemon.url_of("lib"), "lib"],
    );
    git(&main, &["commit", "-q", "-m", "lib"]);
    let url = daemon.url_of("main");

    dir.create(
        "ctx/Dockerfile",
        &format!(
            "FROM scratch\n\
             ADD {url} /all\n\
             ADD {url}?submodules=false /none\n\
             ADD --keep-git-dir=true {url}#main /kept\n"
        ),
    );
    ok(bk(&dir, "out", &["ctx"]));
    assert_eq!(read(&dir, "out/all/lib/lib.txt").as_deref(), Some("lib"));
    assert!(!exists(&dir, "out/all/.git"));
    assert!(!exists(&dir, "out/all/lib/.git"));
    assert!(exists(&dir, "out/none/lib"));
    assert!(!exists(&dir, "out/none/lib/lib.txt"));
    assert_eq!(read(&dir, "out/kept/lib/lib.txt").as_deref(), Some("lib"));
    let kept = dir.path().join("out/kept");
    assert_eq!(git(&kept, &["remote", "get-url", "origin"]), url);
    let status = git(&kept, &["submodule", "status"]);
    assert!(
        status
            .trim_start()
            .starts_with(|c: char| c.is_ascii_hexdigit()),
        "{status}"
    );

    // A git build context gets its submodules too.
    ok(bk(&dir, "out2", &[&url]));
    assert_eq!(read(&dir, "out2/got").as_deref(), Some("lib"));
}

#[test]
fn platform_scoped_contexts_win_for_their_platform() {
    let dir = Dir::new();
    dir.create("plain/f", "plain");
    dir.create("arm/f", "arm");
    dir.create("ctx/Dockerfile", "FROM scratch\nCOPY --from=src f /f\n");
    let args = |platform: &'static str| {
        [
            "--build-context",
            "src::linux/arm64=arm",
            "--build-context",
            "src=plain",
            "--platform",
            platform,
            "ctx",
        ]
    };
    ok(bk(&dir, "out-arm", &args("linux/arm64")));
    assert_eq!(read(&dir, "out-arm/f").as_deref(), Some("arm"));
    ok(bk(&dir, "out-amd", &args("linux/amd64")));
    assert_eq!(read(&dir, "out-amd/f").as_deref(), Some("plain"));

    // Both platforms in one build, each with its own directory of the
    // same name.
    dir.create("amd/f", "amd");
    let both = [
        "--build-context",
        "src::linux/arm64=arm",
        "--build-context",
        "src::linux/amd64=amd",
        "--build-context",
        "src=plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "ctx",
    ];
    ok(bk(&dir, "out-both", &both));
    assert_eq!(read(&dir, "out-both/linux_arm64/f").as_deref(), Some("arm"));
    assert_eq!(read(&dir, "out-both/linux_amd64/f").as_deref(), Some("amd"));
}

/// The platform `bk` builds on (`BUILDPLATFORM`), and another one.
fn build_and_other_platform() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "aarch64" => ("linux/arm64", "linux/amd64"),
        _ => ("linux/amd64", "linux/arm64"),
    }
}

#[test]
fn scoped_contexts_follow_the_platform_of_each_use() {
    // As BuildKit: a FROM picks `NAME::PLATFORM` by its stage's platform
    // (the build platform for `FROM --platform=$BUILDPLATFORM`), while a
    // `COPY --from` of a context picks by the target platform, whatever
    // stage it is in. (A stage built on a directory context is left as it
    // is here: a file operation cannot start from a context.)
    let (build, other) = build_and_other_platform();
    let dir = Dir::new();
    for (sub, text) in [
        ("tool-build/tool.txt", "tool for build"),
        ("tool-other/tool.txt", "tool for other"),
        ("base-other/base.txt", "base for other"),
        ("base-plain/base.txt", "plain base"),
    ] {
        dir.create(sub, text);
    }
    dir.create(
        "ctx/Dockerfile",
        "FROM --platform=$BUILDPLATFORM tool AS build\n\
         FROM base AS target-base\n\
         FROM --platform=$BUILDPLATFORM scratch AS in-build\n\
         COPY --from=tool tool.txt /target-tool.txt\n\
         FROM scratch\n\
         COPY --from=target-base base.txt /base.txt\n\
         COPY --from=build tool.txt /build-tool.txt\n\
         COPY --from=in-build target-tool.txt /copied-in-build.txt\n\
         COPY --from=tool tool.txt /target-tool.txt\n",
    );
    let tool_build = format!("tool::{build}=tool-build");
    let tool_other = format!("tool::{other}=tool-other");
    let base_other = format!("base::{other}=base-other");
    let platforms = format!("{build},{other}");
    let log = ok(bk(
        &dir,
        "out",
        &[
            "--build-context",
            &tool_build,
            "--build-context",
            &tool_other,
            "--build-context",
            &base_other,
            "--build-context",
            "base=base-plain",
            "--platform",
            &platforms,
            "ctx",
        ],
    ));
    let file = |platform: &str, name: &str| {
        read(&dir, &format!("out/{}/{name}", platform.replace('/', "_")))
    };
    for (platform, base, target_tool) in [
        (build, "plain base", "tool for build"),
        (other, "base for other", "tool for other"),
    ] {
        assert_eq!(
            file(platform, "base.txt").as_deref(),
            Some(base),
            "{platform}"
        );
        // The build-platform stage read the build platform's tool.
        assert_eq!(
            file(platform, "build-tool.txt").as_deref(),
            Some("tool for build"),
            "{platform}"
        );
        assert_eq!(
            file(platform, "copied-in-build.txt").as_deref(),
            Some(target_tool),
            "{platform}"
        );
        assert_eq!(
            file(platform, "target-tool.txt").as_deref(),
            Some(target_tool),
            "{platform}"
        );
        assert!(!exists(
            &dir,
            &format!("out/{}/tool.txt", platform.replace('/', "_"))
        ));
    }
    // Step names carry the chosen key, as BuildKit's do.
    for key in [
        format!("tool::{build}"),
        format!("tool::{other}"),
        format!("base::{other}"),
    ] {
        assert!(
            log.contains(&format!("[context {key}] load from client")),
            "{key}: {log}"
        );
    }
}

/// `dir/NAME`: an OCI layout of a scratch image for `platform` with
/// WORKDIR `/lw-NAME` and `/which` saying `NAME`, made by `bk` and
/// unpacked by tar.
fn oci_layout(dir: &Dir, name: &str, platform: &str) {
    dir.create(&format!("{name}-src/which"), name);
    dir.create(
        &format!("{name}-src/Dockerfile"),
        &format!("FROM scratch\nWORKDIR /lw-{name}\nCOPY which /which\n"),
    );
    let tar = format!("{name}.tar");
    let dest = format!("type=oci,dest={tar}");
    let src = format!("{name}-src");
    ok(bk(dir, &dest, &["--platform", platform, &src]));
    std::fs::create_dir(dir.path().join(name)).unwrap();
    let out = Command::new("tar")
        .args(["-xf", &tar, "-C", name])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn scoped_oci_layouts_give_each_stage_its_platform_config() {
    // A build-platform stage on `img` reads `img::<build platform>`'s
    // layout, config included (its WORKDIR places a relative COPY); the
    // target stage reads the target's.
    let (build, other) = build_and_other_platform();
    let dir = Dir::new();
    oci_layout(&dir, "build", build);
    oci_layout(&dir, "other", other);
    dir.create("ctx/g", "copied");
    dir.create(
        "ctx/Dockerfile",
        "FROM --platform=$BUILDPLATFORM img AS b\n\
         COPY g rel/\n\
         FROM img\n\
         COPY g rel/\n\
         COPY --from=b / /b/\n",
    );
    let img_build = format!("img::{build}=oci-layout://build");
    let img_other = format!("img::{other}=oci-layout://other");
    ok(bk(
        &dir,
        "out",
        &[
            "--build-context",
            &img_build,
            "--build-context",
            &img_other,
            "--platform",
            other,
            "ctx",
        ],
    ));
    assert_eq!(read(&dir, "out/which").as_deref(), Some("other"));
    assert_eq!(read(&dir, "out/lw-other/rel/g").as_deref(), Some("copied"));
    assert_eq!(read(&dir, "out/b/which").as_deref(), Some("build"));
    assert_eq!(
        read(&dir, "out/b/lw-build/rel/g").as_deref(),
        Some("copied")
    );
    assert!(!exists(&dir, "out/b/rel") && !exists(&dir, "out/rel"));
}

#[test]
fn credentials_in_dockerfile_urls_are_never_printed() {
    let dir = Dir::new();
    let repo = dir.path().join("git/repo");
    make_repo(&repo);
    publish_bare(&dir, &repo, "repo");
    dir.create("srv/file.txt", "downloaded");
    let server = Server::start(&dir);
    let with_password = |path: &str| server.url(path).replace("://", "://me:s3cret@");
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "FROM scratch\n\
             ADD {} /file.txt\n\
             ADD {}#main:sub /git\n",
            with_password("/file.txt"),
            with_password("/repo.git")
        ),
    );
    let log = ok(bk(&dir, "out", &["ctx"]));
    assert_eq!(read(&dir, "out/file.txt").as_deref(), Some("downloaded"));
    assert_eq!(read(&dir, "out/git/keep.txt").as_deref(), Some("kept"));
    assert!(!log.contains("s3cret"), "{log}");
    assert!(log.contains("http://xxxxx:xxxxx@127.0.0.1"), "{log}");

    // A failing download: neither the step nor the error shows it.
    dir.create(
        "ctx/Dockerfile",
        &format!("FROM scratch\nADD {} /f\n", with_password("/missing")),
    );
    let out = bk(&dir, "out2", &["ctx"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("404") && !err.contains("s3cret"), "{err}");

    // git's own messages about a git context are scrubbed too (git
    // names the host with its user information when it cannot look it
    // up).
    let out = bk(&dir, "out3", &["git://me:s3cret@127.0.0.1:1/repo"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("xxxxx") && !err.contains("s3cret"), "{err}");
}
