//! `RUN --mount` kinds and the `--secret` / `--ssh` flags that feed them:
//! what the CLI checks before building and what a step reports when its
//! mounts cannot be prepared.

use std::path::Path;

use crate::util::Dir;

fn build(dir: &Dir, dockerfile: &str, extra: &[&str]) -> String {
    dir.create("Dockerfile", dockerfile);
    let mut cmd = dir.bk();
    cmd.args(["build", "--progress", "plain", "-o", "out"])
        .args(extra)
        .arg_path(Path::new("."));
    cmd.fails()
}

#[test]
fn required_secret_missing_names_the_secret_and_the_line() {
    let dir = Dir::new();
    let err = build(
        &dir,
        "FROM scratch\nRUN --mount=type=secret,id=tok,required cat /run/secrets/tok\n",
        &[],
    );
    assert!(
        err.contains(
            "ERROR: failed to solve: [stage-0 1/1] RUN --mount=type=secret,id=tok,required"
        ),
        "{err}"
    );
    assert!(err.trim_end().ends_with("secret tok: not found"), "{err}");
    assert!(err.contains(">>> RUN --mount=type=secret"), "{err}");
}

#[test]
fn secret_files_are_checked_before_building() {
    let dir = Dir::new();
    let err = build(
        &dir,
        "FROM scratch\n",
        &["--secret", "id=tok,src=missing.txt"],
    );
    assert!(
        err.contains("secret tok: failed to stat `missing.txt`"),
        "{err}"
    );
    // A lone id is the variable of that name, else the file of that name.
    let err = build(&dir, "FROM scratch\n", &["--secret", "id=no-such-file"]);
    assert!(err.contains("failed to stat `no-such-file`"), "{err}");
    dir.create("big", &"x".repeat(500 * 1024 + 1));
    let err = build(&dir, "FROM scratch\n", &["--secret", "id=big,src=big"]);
    assert!(err.contains("secret big too big"), "{err}");
}

#[test]
fn ssh_sources_are_checked_before_building() {
    let dir = Dir::new();
    dir.create("Dockerfile", "FROM scratch\n");
    let out = dir
        .bk()
        .args(["build", "--ssh", "default", "."])
        .env_remove("SSH_AUTH_SOCK")
        .fails();
    assert!(out.contains("make sure SSH_AUTH_SOCK is set"), "{out}");
    let err = build(&dir, "FROM scratch\n", &["--ssh", "gh=/no/such/key"]);
    assert!(
        err.contains("ssh gh: failed to stat `/no/such/key`"),
        "{err}"
    );
    let err = build(
        &dir,
        "FROM scratch\nRUN --mount=type=ssh,id=other,required true\n",
        &["--ssh", "gh=Dockerfile"],
    );
    assert!(
        err.trim_end()
            .ends_with("no SSH key \"other\" forwarded from the client (use --ssh other[=path,…])"),
        "{err}"
    );
}

#[test]
fn a_key_file_ssh_add_refuses_is_a_clear_error() {
    let dir = Dir::new();
    dir.create("notakey", "garbage\n");
    let err = build(
        &dir,
        "FROM scratch\nRUN --mount=type=ssh,id=k true\n",
        &["--ssh", "k=notakey"],
    );
    assert!(
        err.contains("ssh k: ssh-add could not load notakey"),
        "{err}"
    );
}

#[test]
fn mounts_need_the_sandbox() {
    let dir = Dir::new();
    let err = build(
        &dir,
        "FROM scratch\nRUN --mount=type=tmpfs,target=/t true\n",
        &["--sandbox", "none"],
    );
    assert!(
        err.contains("RUN --mount needs the sandbox (it cannot mount /t with --sandbox=none)"),
        "{err}"
    );
}
