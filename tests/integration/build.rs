//! `bk build` end to end: real contexts on disk, real outputs, and the
//! cache proven by progress events rather than by timing.
//!
//! Every test builds from a `ctx/` subdirectory, so that the store
//! (`BK_ROOT`, inside the test directory) and the outputs are never part
//! of the context.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use crate::util::{describe, Dir};

/// A test directory with a context at `ctx/` holding `files`.
fn context(files: &[(&str, &str)]) -> Dir {
    let dir = Dir::new();
    for (name, text) in files {
        dir.create(&format!("ctx/{name}"), text);
    }
    dir
}

/// Every entry below `root`, sorted: `dir/` for directories, `file=text`
/// for files, `link->target` for symlinks.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_symlink() {
            out.push(format!(
                "{rel}->{}",
                std::fs::read_link(&path).unwrap().display()
            ));
        } else if meta.is_dir() {
            out.push(format!("{rel}/"));
            walk(root, &path, out);
        } else {
            out.push(format!("{rel}={}", std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// Builds `ctx` into the directory `out`, returning standard error.
fn build_to_out(dir: &Dir, extra: &[&str]) -> String {
    let mut args = vec!["build", "--progress=plain", "-o", "out"];
    args.extend_from_slice(extra);
    args.push("ctx");
    let out = dir.bk().args(&args).output();
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The vertex events of a `--progress=rawjson` build: name by digest, and
/// how each vertex ended (`cached`, `completed`, `failed`) and whether it
/// was started.
#[derive(Debug, Default)]
pub struct Events {
    names: BTreeMap<String, String>,
    ended: BTreeMap<String, String>,
    started: BTreeMap<String, bool>,
}

impl Events {
    pub fn parse(out: &std::process::Output) -> Events {
        let mut events = Events::default();
        let text = [out.stderr.as_slice(), out.stdout.as_slice()].concat();
        for line in String::from_utf8_lossy(&text).lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(kind), Some(digest)) = (value["type"].as_str(), value["digest"].as_str())
            else {
                continue;
            };
            if let Some(name) = value["name"].as_str() {
                if kind.starts_with("vertex_") {
                    events.names.insert(digest.into(), name.into());
                }
            }
            match kind {
                "vertex_started" => {
                    events.started.insert(digest.into(), true);
                }
                "vertex_cached" => {
                    events.ended.insert(digest.into(), "cached".into());
                }
                "vertex_completed" => {
                    events.ended.insert(digest.into(), "completed".into());
                }
                "vertex_failed" => {
                    events.ended.insert(digest.into(), "failed".into());
                }
                _ => {}
            }
        }
        events
    }

    /// How the vertex whose name contains `needle` ended.
    pub fn end_of(&self, needle: &str) -> &str {
        let matching: Vec<_> = self
            .names
            .iter()
            .filter(|(_, name)| name.contains(needle))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "one vertex named like {needle:?} in {self:#?}"
        );
        self.ended
            .get(matching[0].0)
            .map(String::as_str)
            .unwrap_or("unfinished")
    }
}

fn rawjson_build(dir: &Dir) -> Events {
    let out = dir
        .bk()
        .args(["build", "--progress=rawjson", "-o", "out", "ctx"])
        .output();
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    let events = Events::parse(&out);
    assert!(
        !events.names.is_empty(),
        "no vertex events:\n{}",
        describe(&out)
    );
    events
}

#[test]
fn scratch_copies_files_directories_and_globs() {
    let dir = context(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY a.txt /\nCOPY dir /d/\nCOPY src/*.go /go/\nCOPY dir/sub/b.txt /renamed.txt\n",
        ),
        ("a.txt", "A"),
        ("dir/sub/b.txt", "B"),
        ("dir/top.txt", "T"),
        ("src/x.go", "X"),
        ("src/y.go", "Y"),
        ("src/z.txt", "Z"),
        ("unused.txt", "U"),
    ]);
    build_to_out(&dir, &[]);
    assert_eq!(
        tree(&dir.path().join("out")),
        [
            "a.txt=A",
            "d/",
            "d/sub/",
            "d/sub/b.txt=B",
            "d/top.txt=T",
            "go/",
            "go/x.go=X",
            "go/y.go=Y",
            "renamed.txt=B",
        ]
    );
}

#[test]
fn copy_from_another_stage() {
    let dir = context(&[
        (
            "Dockerfile",
            "FROM scratch AS build\nCOPY a.txt /out/a.txt\nCOPY b.txt /out/b.txt\n\
             FROM scratch\nCOPY --from=build /out /final\nCOPY --from=build /out/b.txt /b\n",
        ),
        ("a.txt", "A"),
        ("b.txt", "B"),
    ]);
    build_to_out(&dir, &[]);
    assert_eq!(
        tree(&dir.path().join("out")),
        ["b=B", "final/", "final/a.txt=A", "final/b.txt=B"]
    );
}

#[test]
fn dockerignore_excludes_files_from_copy() {
    let dir = context(&[
        ("Dockerfile", "FROM scratch\nCOPY . /\n"),
        (
            ".dockerignore",
            "*.log\nsecret/\nDockerfile\n.dockerignore\n",
        ),
        ("keep.txt", "K"),
        ("debug.log", "L"),
        ("secret/key", "S"),
        ("sub/keep.log", "nested logs are not matched by *.log"),
    ]);
    build_to_out(&dir, &[]);
    assert_eq!(
        tree(&dir.path().join("out")),
        [
            "keep.txt=K",
            "sub/",
            "sub/keep.log=nested logs are not matched by *.log"
        ]
    );
}

#[test]
fn target_selects_the_stage() {
    let dir = context(&[
        (
            "Dockerfile",
            "FROM scratch AS first\nCOPY a.txt /\nFROM scratch AS second\nCOPY b.txt /\n",
        ),
        ("a.txt", "A"),
        ("b.txt", "B"),
    ]);
    build_to_out(&dir, &["--target", "first"]);
    assert_eq!(tree(&dir.path().join("out")), ["a.txt=A"]);
}

#[test]
fn build_args_and_arg_scoping_in_copy_destinations() {
    let dir = context(&[
        (
            "Dockerfile",
            "ARG DIR=default\nFROM scratch\nCOPY a.txt /${DIR}unscoped/\nARG DIR\nCOPY a.txt /${DIR}/scoped/\n",
        ),
        ("a.txt", "A"),
    ]);
    build_to_out(&dir, &[]);
    assert_eq!(
        tree(&dir.path().join("out")),
        [
            "default/",
            "default/scoped/",
            "default/scoped/a.txt=A",
            "unscoped/",
            "unscoped/a.txt=A"
        ]
    );
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    build_to_out(&dir, &["--build-arg", "DIR=custom"]);
    assert_eq!(
        tree(&dir.path().join("out")),
        [
            "custom/",
            "custom/scoped/",
            "custom/scoped/a.txt=A",
            "unscoped/",
            "unscoped/a.txt=A"
        ]
    );
}

#[test]
fn heredoc_copy() {
    let dir = context(&[(
        "Dockerfile",
        "FROM scratch\nCOPY <<EOF /hello.txt\nhello\nEOF\nCOPY <<one <<two /docs/\nfirst\none\nsecond\ntwo\n",
    )]);
    build_to_out(&dir, &[]);
    assert_eq!(
        tree(&dir.path().join("out")),
        [
            "docs/",
            "docs/one=first\n",
            "docs/two=second\n",
            "hello.txt=hello\n"
        ]
    );
}

#[test]
fn tar_output_lists_the_files() {
    let dir = context(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt dir /\n"),
        ("a.txt", "A"),
        ("dir/b.txt", "B"),
    ]);
    dir.bk()
        .args([
            "build",
            "--progress=quiet",
            "-o",
            "type=tar,dest=out.tar",
            "ctx",
        ])
        .stdout();
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(dir.path().join("out.tar"))
        .output()
        .expect("run tar");
    assert!(listing.status.success(), "{}", describe(&listing));
    let mut names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != ".")
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "b.txt"]);
}

#[test]
fn tar_output_to_stdout() {
    let dir = context(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /\n"),
        ("a.txt", "A"),
    ]);
    let out = dir
        .bk()
        .args(["build", "--progress=quiet", "-o", "-", "ctx"])
        .output();
    assert!(out.status.success(), "{}", describe(&out));
    let mut archive = tar::Archive::new(out.stdout.as_slice());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .filter(|n| !n.trim_start_matches("./").trim_end_matches('/').is_empty())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with("a.txt"), "{names:?}");
}

#[test]
fn copy_chmod_and_numeric_chown_reach_the_tar_headers() {
    let dir = context(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY --chmod=0640 --chown=1000:1000 a.txt /a.txt\nCOPY --chmod=755 b.sh /b.sh\n",
        ),
        ("a.txt", "A"),
        ("b.sh", "B"),
    ]);
    // Context files reach the build as 0:0 whoever owns them on the host.
    let as_root = nix::unistd::geteuid().is_root();
    if as_root {
        let id = Some(nix::unistd::Uid::from_raw(4242));
        let gid = Some(nix::unistd::Gid::from_raw(4242));
        nix::unistd::chown(&dir.path().join("ctx/b.sh"), id, gid).unwrap();
    }
    dir.bk()
        .args([
            "build",
            "--progress=quiet",
            "-o",
            "type=tar,dest=out.tar",
            "ctx",
        ])
        .stdout();
    let bytes = std::fs::read(dir.path().join("out.tar")).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut seen = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let header = entry.header();
        seen.insert(
            name.trim_start_matches("./").to_string(),
            (
                header.mode().unwrap() & 0o7777,
                header.uid().unwrap(),
                header.gid().unwrap(),
            ),
        );
    }
    assert_eq!(seen.get("a.txt"), Some(&(0o640, 1000, 1000)), "{seen:?}");
    assert_eq!(seen.get("b.sh").map(|s| s.0), Some(0o755), "{seen:?}");
    if as_root {
        assert_eq!(seen.get("b.sh"), Some(&(0o755, 0, 0)), "{seen:?}");
    }

    // The system tool reads the same headers.
    let listing = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(dir.path().join("out.tar"))
        .output()
        .expect("run tar");
    let text = String::from_utf8_lossy(&listing.stdout);
    let line = text
        .lines()
        .find(|l| l.ends_with("a.txt"))
        .unwrap_or_else(|| panic!("a.txt in {text}"));
    assert!(line.starts_with("-rw-r----- 1000/1000 "), "{line}");
    let line = text.lines().find(|l| l.ends_with("b.sh")).unwrap();
    assert!(line.starts_with("-rwxr-xr-x "), "{line}");
}

#[test]
fn warm_rebuild_executes_nothing() {
    let dir = context(&[
        (
            "Dockerfile",
            "FROM scratch AS build\nCOPY a.txt /a\nFROM scratch\nCOPY --from=build /a /b\nCOPY dir /d/\n",
        ),
        ("a.txt", "A"),
        ("dir/x", "X"),
    ]);
    let cold = rawjson_build(&dir);
    assert!(
        cold.ended.values().any(|e| e == "completed"),
        "the cold build ran something: {cold:#?}"
    );
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let warm = rawjson_build(&dir);
    for (digest, name) in &warm.names {
        assert_eq!(
            warm.ended.get(digest).map(String::as_str),
            Some("cached"),
            "{name} was not cached: {warm:#?}"
        );
    }
    assert_eq!(
        tree(&dir.path().join("out")),
        ["b=A", "d/", "d/x=X"],
        "the cached result is exported all the same"
    );
}

#[test]
fn editing_one_file_keeps_the_other_copy_cached() {
    let dir = context(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /a\nCOPY b.txt /b\n"),
        ("a.txt", "A"),
        ("b.txt", "B"),
        ("notes.md", "not copied"),
    ]);
    rawjson_build(&dir);

    // A file no COPY reads: everything stays cached.
    dir.create("ctx/notes.md", "edited");
    let events = rawjson_build(&dir);
    assert_eq!(events.end_of("COPY a.txt"), "cached");
    assert_eq!(events.end_of("COPY b.txt"), "cached");

    // The second COPY's source: only that COPY runs again.
    dir.create("ctx/b.txt", "B2");
    let events = rawjson_build(&dir);
    assert_eq!(events.end_of("COPY a.txt"), "cached");
    assert_eq!(events.end_of("COPY b.txt"), "completed");
    assert_eq!(tree(&dir.path().join("out")), ["a=A", "b=B2"]);
}

#[test]
fn no_cache_runs_everything_again() {
    let dir = context(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /a\n"),
        ("a.txt", "A"),
    ]);
    rawjson_build(&dir);
    let out = dir
        .bk()
        .args([
            "build",
            "--no-cache",
            "--progress=rawjson",
            "-o",
            "out",
            "ctx",
        ])
        .output();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(Events::parse(&out).end_of("COPY a.txt"), "completed");
}

#[test]
fn no_cache_filter_reruns_only_the_named_stage() {
    let dir = context(&[
        (
            "Dockerfile",
            "FROM scratch AS deps\nCOPY a.txt /a\nFROM scratch AS app\nCOPY b.txt /b\nCOPY --from=deps /a /a\n",
        ),
        ("a.txt", "A"),
        ("b.txt", "B"),
    ]);
    rawjson_build(&dir);
    let out = dir
        .bk()
        .args([
            "build",
            "--no-cache-filter",
            "deps",
            "--progress=rawjson",
            "-o",
            "out",
            "ctx",
        ])
        .output();
    assert!(out.status.success(), "{}", describe(&out));
    let events = Events::parse(&out);
    assert_eq!(events.end_of("[deps 1/1] COPY a.txt"), "completed");
    assert_eq!(events.end_of("COPY b.txt"), "cached");
}

/// Builds `COPY link /copied` where `ctx/link` points at `target`.
/// Whatever bk makes of the link — an error, a copied link, nothing — the
/// bytes of the outside file (containing `secret`) must not reach the
/// output, and a failure must be a clean exit 1 without output.
fn assert_copy_of_link_does_not_leak(target: &str, setup: impl Fn(&Dir), secret: &str) {
    let dir = context(&[("Dockerfile", "FROM scratch\nCOPY link /copied\n")]);
    setup(&dir);
    symlink(target, dir.path().join("ctx/link")).unwrap();
    let out = dir
        .bk()
        .args(["build", "--progress=plain", "-o", "out", "ctx"])
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{}", describe(&out));
    if out.status.success() {
        let copied = dir.path().join("out/copied");
        let is_link = std::fs::symlink_metadata(&copied).is_ok_and(|m| m.is_symlink());
        if !is_link {
            let text = std::fs::read_to_string(&copied).unwrap_or_default();
            assert!(!text.contains(secret), "{target}: the outside file leaked");
        }
    } else {
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(stderr.contains("ERROR"), "{stderr}");
        assert!(!dir.path().join("out").exists());
    }
}

#[test]
fn symlinks_out_of_the_context_do_not_leak() {
    // Absolute: resolved inside the context, which has no /etc/passwd.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let first_line = passwd.lines().next().unwrap_or("root:x:0:0").to_string();
    assert_copy_of_link_does_not_leak("/etc/passwd", |_| {}, &first_line);
    // Relative, climbing out of the context to a sibling of it.
    let secret = |dir: &Dir| {
        dir.create("secret", "TOP-SECRET");
    };
    assert_copy_of_link_does_not_leak("../secret", secret, "TOP-SECRET");
    assert_copy_of_link_does_not_leak("../../secret", secret, "TOP-SECRET");
    assert_copy_of_link_does_not_leak("sub/../../secret", secret, "TOP-SECRET");
}

#[test]
fn failing_copy_marks_its_line_and_writes_no_output() {
    let dir = context(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY a.txt /a\nCOPY missing.txt /m\nCOPY a.txt /again\n",
        ),
        ("a.txt", "A"),
    ]);
    let err = dir
        .bk()
        .args(["build", "--progress=plain", "-o", "out", "ctx"])
        .fails();
    assert!(err.contains(">>> COPY missing.txt /m"), "{err}");
    assert!(err.contains("missing.txt"), "{err}");
    assert!(!dir.path().join("out").exists(), "no output on failure");
}

#[test]
fn run_without_a_shell_names_the_missing_program() {
    let dir = context(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /\nRUN make\n"),
        ("a.txt", "A"),
    ]);
    let err = dir
        .bk()
        .args(["build", "--progress=plain", "-o", "out", "ctx"])
        .fails();
    assert!(err.contains(r#"failed to run "/bin/sh -c make""#), "{err}");
    assert!(
        err.contains(r#"exec: "/bin/sh": No such file or directory"#),
        "{err}"
    );
    assert!(err.contains(">>> RUN make"), "{err}");
    assert!(!dir.path().join("out").exists());
    // RUN itself is tested in `run.rs`.
}

#[test]
fn no_output_builds_and_warns() {
    let dir = context(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /\n"),
        ("a.txt", "A"),
    ]);
    let out = dir.bk().args(["build", "--progress=plain", "ctx"]).output();
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No output specified"), "{stderr}");
}
