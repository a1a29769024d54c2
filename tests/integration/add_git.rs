//! `ADD <git URL>`: a `git daemon` (started by the test on 127.0.0.1)
//! serves a repository the test makes with two commits and a tag; a tag,
//! a commit id and a branch check out the right files, `.git` only with
//! `--keep-git-dir=true`; an unchanged ref is cached on rebuild, a moved
//! branch gives the new content, and an unknown ref fails naming it.

use std::path::Path;
use std::process::Output;

use crate::git_util::{commit, git, Daemon};
use crate::util::{describe, Dir};

fn build(dir: &Dir, dockerfile: &str, out: &str) -> Output {
    dir.create("ctx/Dockerfile", dockerfile);
    let mut cmd = dir.bk();
    cmd.args(["build", "--progress", "plain", "-o", out])
        .arg_path(Path::new("ctx"));
    cmd.output()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(dir: &Dir, path: &str) -> Option<String> {
    std::fs::read_to_string(dir.path().join(path)).ok()
}

fn exists(dir: &Dir, path: &str) -> bool {
    dir.path().join(path).exists()
}

#[test]
fn add_git_checks_out_tags_commits_and_branches() {
    let dir = Dir::new();
    let repo = dir.path().join("srv/repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let first = commit(&repo, "a.txt", "one");
    git(&repo, &["tag", "-a", "v1", "-m", "v1"]);
    let second = commit(&repo, "sub/b.txt", "two");
    let daemon = Daemon::start(&dir.path().join("srv"));
    let url = daemon.url();

    // A tag: the first commit's files, no .git.
    let log = ok(build(
        &dir,
        &format!("FROM scratch\nADD {url}#v1 /src\n"),
        "out1",
    ));
    assert_eq!(
        read(&dir, "out1/src/a.txt").as_deref(),
        Some("one"),
        "{log}"
    );
    assert!(!exists(&dir, "out1/src/sub"));
    assert!(!exists(&dir, "out1/src/.git"));

    // A commit id, with the .git directory kept.
    ok(build(
        &dir,
        &format!("FROM scratch\nADD --keep-git-dir=true {url}#{second} /src\n"),
        "out2",
    ));
    assert_eq!(read(&dir, "out2/src/sub/b.txt").as_deref(), Some("two"));
    assert!(exists(&dir, "out2/src/.git"));
    let head = git(&dir.path().join("out2/src"), &["rev-parse", "HEAD"]);
    assert_eq!(head, second);
    // The kept repository names its origin and nothing else of the fetch.
    let origin = git(
        &dir.path().join("out2/src"),
        &["remote", "get-url", "origin"],
    );
    assert_eq!(origin, url);
    assert!(!exists(&dir, "out2/src/.git/FETCH_HEAD"));
    // The first commit id gives the first commit's files.
    ok(build(
        &dir,
        &format!("FROM scratch\nADD {url}#{first} /src\n"),
        "out2b",
    ));
    assert!(exists(&dir, "out2b/src/a.txt"));
    assert!(!exists(&dir, "out2b/src/sub"));

    // A branch with a sub-directory; unchanged, the rebuild is cached.
    let dockerfile = format!("FROM scratch\nADD {url}#main:sub /src\n");
    let log = ok(build(&dir, &dockerfile, "out3"));
    assert!(!log.contains("CACHED"), "{log}");
    assert_eq!(read(&dir, "out3/src/b.txt").as_deref(), Some("two"));
    assert!(!exists(&dir, "out3/src/a.txt"));
    let log = ok(build(&dir, &dockerfile, "out4"));
    assert!(log.contains("CACHED"), "{log}");
    assert_eq!(read(&dir, "out4/src/b.txt").as_deref(), Some("two"));

    // The branch moves: the new content.
    commit(&repo, "sub/b.txt", "three");
    let log = ok(build(&dir, &dockerfile, "out5"));
    assert!(!log.contains("CACHED"), "{log}");
    assert_eq!(read(&dir, "out5/src/b.txt").as_deref(), Some("three"));

    // An unknown ref fails, naming the ref and the repository.
    let out = build(
        &dir,
        &format!("FROM scratch\nADD {url}#no-such-ref /src\n"),
        "out6",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-ref") && err.contains(&url), "{err}");
    assert!(!exists(&dir, "out6"));
}
