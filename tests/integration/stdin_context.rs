//! Inputs on standard input: a context tarball (`bk build -`, plain,
//! gzip- or zstd-compressed, made by the tar tool), a Dockerfile
//! (`-f -`, or `bk build -` with no tarball), and
//! `<Dockerfile>.dockerignore` winning over the context's `.dockerignore`
//! (which a tarball context, used whole, does not apply).

use std::process::{Command, Output};

use crate::util::{describe, Dir};

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(dir: &Dir, rel: &str) -> String {
    let path = dir.path().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `tar <flags> -f - -C <dir> .` as bytes.
fn tar(dir: &Dir, flags: &[&str], from: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args(flags)
        .args(["-f", "-", "-C", from, "."])
        .current_dir(dir.path())
        .output()
        .expect("run tar");
    assert!(out.status.success(), "{}", describe(&out));
    out.stdout
}

#[test]
fn a_context_tarball_on_stdin_is_built() {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\nCOPY a.txt sub/ /\n");
    dir.create("ctx/a.txt", "A");
    dir.create("ctx/sub/b.txt", "B");
    // Not applied: a tarball context is used whole, as buildx sends it.
    dir.create("ctx/.dockerignore", "a.txt\nsub\n");
    dir.create("ctx/Other.Dockerfile", "FROM scratch\nCOPY a.txt /other\n");
    dir.create(
        "outside.Dockerfile",
        "FROM scratch\nCOPY sub/b.txt /outside\n",
    );
    for (flags, out) in [
        (&["-c"][..], "plain"),
        (&["-cz"][..], "gzip"),
        (&["--zstd", "-c"][..], "zstd"),
    ] {
        let bytes = tar(&dir, flags, "ctx");
        ok(dir
            .bk()
            .args(["build", "--progress", "plain", "-o", out, "-"])
            .stdin_bytes(&bytes));
        assert_eq!(read(&dir, &format!("{out}/a.txt")), "A");
        assert_eq!(read(&dir, &format!("{out}/b.txt")), "B");
    }
    // -f names a file inside the tarball, or one outside when it exists.
    let bytes = tar(&dir, &["-cz"], "ctx");
    ok(dir
        .bk()
        .args(["build", "-o", "inner", "-f", "Other.Dockerfile", "-"])
        .stdin_bytes(&bytes));
    assert_eq!(read(&dir, "inner/other"), "A");
    ok(dir
        .bk()
        .args(["build", "-o", "outer", "-f", "outside.Dockerfile", "-"])
        .stdin_bytes(&bytes));
    assert_eq!(read(&dir, "outer/outside"), "B");
    // Nothing of the unpacked context is left behind.
    let tmp = dir.path().join(".bk-root/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_broken_tarball_fails_cleanly() {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\n");
    let mut bytes = tar(&dir, &["-cz"], "ctx");
    bytes.truncate(bytes.len() / 2);
    let out = dir.bk().args(["build", "-"]).stdin_bytes(&bytes);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tarball from standard input"), "{err}");
    let out = dir.bk().args(["build", "-f", "-", "-"]).stdin_bytes(b"");
    assert!(!out.status.success());
}

#[test]
fn a_dockerfile_on_stdin_builds_with_or_without_a_context() {
    let dir = Dir::new();
    dir.create("ctx/a.txt", "A");
    ok(dir
        .bk()
        .args(["build", "-o", "out", "-f", "-", "ctx"])
        .stdin_bytes(b"FROM scratch\nCOPY a.txt /copied\n"));
    assert_eq!(read(&dir, "out/copied"), "A");
    // `bk build -` with a Dockerfile: the context is empty.
    ok(dir
        .bk()
        .args(["build", "-o", "empty", "-"])
        .stdin_bytes(b"FROM scratch\nWORKDIR /made\n"));
    assert!(dir.path().join("empty/made").is_dir());
    let out = dir
        .bk()
        .args(["build", "-o", "none", "-"])
        .stdin_bytes(b"FROM scratch\nCOPY a.txt /\n");
    assert!(!out.status.success(), "{}", describe(&out));
}

#[test]
fn the_dockerfiles_own_ignore_file_wins() {
    let dir = Dir::new();
    dir.create("ctx/a.txt", "A");
    dir.create("ctx/b.txt", "B");
    dir.create("ctx/.dockerignore", "a.txt\n");
    dir.create("df/app.Dockerfile", "FROM scratch\nCOPY . /\n");
    dir.create("df/app.Dockerfile.dockerignore", "b.txt\n");
    ok(dir
        .bk()
        .args(["build", "-o", "out", "-f", "df/app.Dockerfile", "ctx"])
        .output());
    assert_eq!(read(&dir, "out/a.txt"), "A");
    assert!(!dir.path().join("out/b.txt").exists());
    // Without it, the context's file applies.
    std::fs::remove_file(dir.path().join("df/app.Dockerfile.dockerignore")).unwrap();
    ok(dir
        .bk()
        .args(["build", "-o", "out2", "-f", "df/app.Dockerfile", "ctx"])
        .output());
    assert!(!dir.path().join("out2/a.txt").exists());
    assert_eq!(read(&dir, "out2/b.txt"), "B");
}
