//! Bearer-token auth end to end against the registry of
//! `token_registry` (docker-registry with `auth: token`, TLS, and a
//! token service in this process): pushes with credentials from a
//! Docker config, pulls back in a fresh store, anonymous pulls of what
//! the service grants anonymous users, refusals named clearly — and what
//! bk asked the token service for (scopes, how often).

use std::path::Path;
use std::process::{Command, Output};

use crate::secure_registry::{write_docker_config, TlsRegistry};
use crate::token_registry::{token_registry, TokenRegistry, PASSWORD, USER};
use crate::util::{describe, Dir};

/// `bk ARGS` with the registry's CA and `docker_config` as Docker
/// config.
fn bk(dir: &Dir, docker_config: &Path, args: &[&str]) -> Output {
    let reg = token_registry();
    let mut cmd = dir.bk();
    cmd.env("BK_CERTS_DIR", reg.certs_dir())
        .env("DOCKER_CONFIG", docker_config)
        .args(args);
    cmd.output()
}

fn build(dir: &Dir, docker_config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["build", "--progress=plain"];
    all.extend_from_slice(args);
    all.push("ctx");
    bk(dir, docker_config, &all)
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn fails(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1:\n{}",
        describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("bk said: {}", err.lines().last().unwrap_or_default());
    err
}

/// A `FROM scratch` context with `layers` COPY steps (one layer each).
fn scratch_context(layers: usize) -> Dir {
    let dir = Dir::new();
    let mut dockerfile = String::from("FROM scratch\n");
    for i in 0..layers {
        dir.create(&format!("ctx/f{i}.txt"), &format!("file {i}\n"));
        dockerfile.push_str(&format!("COPY f{i}.txt /data/f{i}.txt\n"));
    }
    dir.create("ctx/Dockerfile", &dockerfile);
    dir
}

/// skopeo's view of the image (its own token client), as `--raw` JSON.
fn skopeo_raw(reg: &TokenRegistry, reference: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(reg.host_certs())
        .args(["--creds", &reg.creds()])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo failed:\n{}", describe(&out));
    serde_json::from_slice(&out.stdout).expect("skopeo's JSON")
}

/// An empty Docker config directory: anonymous.
fn anonymous(dir: &Dir) -> std::path::PathBuf {
    let path = dir.path().join("no-docker");
    std::fs::create_dir_all(&path).unwrap();
    path
}

#[test]
fn push_and_pull_back_with_bearer_tokens() {
    let reg = token_registry();
    let dir = scratch_context(5);
    let image = format!("{}/tok/app:v1", reg.host);
    let log = ok(build(&dir, &reg.docker_config(), &["--push", "-t", &image]));
    assert!(log.contains(&format!("pushed {image}@sha256:")), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");

    // skopeo, with its own token client, sees the 5 layers.
    let raw = skopeo_raw(reg, &image);
    assert_eq!(raw["layers"].as_array().map(Vec::len), Some(5), "{raw}");

    // What bk asked the token service: pull,push on the repository, as
    // the configured user; one token per (repository, operation) — the
    // pushes, and pulls for the blob checks — not one per blob (6 blobs
    // and a manifest went up).
    let asked = reg.requests_for("tok/app");
    assert!(
        asked
            .iter()
            .any(|r| r.scopes.iter().any(|s| s == "repository:tok/app:pull,push")),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .all(|r| r.user.as_deref() == Some(USER) && r.status == 200),
        "{asked:?}"
    );
    // The registry authorized the manifest PUT (by the token: it
    // knows no passwords).
    let log = reg.log();
    assert!(
        log.lines().any(|l| l.contains("msg=\"authorized request\"")
            && l.contains("http.request.method=PUT")
            && l.contains("http.request.uri=/v2/tok/app/manifests/v1 ")),
        "{log}"
    );
    let pushes = asked.len();
    assert!(
        pushes <= 2,
        "{pushes} token requests for one push: {asked:?}"
    );

    // Pulled back as a base in a fresh store, with the same credentials.
    let next = Dir::new();
    next.create(
        "ctx/Dockerfile",
        &format!("FROM {image}\nCOPY more.txt /more.txt\n"),
    );
    next.create("ctx/more.txt", "more\n");
    ok(build(&next, &reg.docker_config(), &["-o", "out"]));
    let out = next.path().join("out");
    for i in 0..5 {
        assert_eq!(
            std::fs::read_to_string(out.join(format!("data/f{i}.txt"))).unwrap(),
            format!("file {i}\n")
        );
    }
    assert_eq!(
        std::fs::read_to_string(out.join("more.txt")).unwrap(),
        "more\n"
    );
    let asked = reg.requests_for("tok/app");
    assert!(
        asked[pushes..]
            .iter()
            .all(|r| r.scopes == ["repository:tok/app:pull"]),
        "{asked:?}"
    );
    // The pull fetched a manifest, a config and 5 layers with one token.
    assert_eq!(asked.len() - pushes, 1, "{asked:?}");
}

#[test]
fn a_wrong_password_is_refused_by_name() {
    let reg = token_registry();
    let dir = scratch_context(1);
    let config = dir.path().join("bad-docker");
    write_docker_config(&config, &reg.host, USER, "wrong-token-pw");
    let image = format!("{}/tok/denied:v1", reg.host);
    let err = fails(build(&dir, &config, &["--push", "-t", &image]));
    assert!(err.contains(&format!("failed to push {image}")), "{err}");
    assert!(
        err.contains(&format!("{}: unauthorized", reg.host)),
        "{err}"
    );
    assert!(!err.contains("wrong-token-pw"), "{err}");
    // The token service refused it: bk did not go on without a token.
    let asked = reg.requests_for("tok/denied");
    assert!(asked.iter().all(|r| r.status == 401), "{asked:?}");
    assert!(!asked.is_empty());

    // Pulling with it is refused by name too.
    let next = Dir::new();
    next.create(
        "ctx/Dockerfile",
        &format!("FROM {}/tok/other:v1\n", reg.host),
    );
    let err = fails(build(&next, &config, &["-o", "out"]));
    assert!(err.contains(&reg.host), "{err}");
    assert!(err.contains("unauthorized"), "{err}");
    assert!(!err.contains("wrong-token-pw"), "{err}");
}

#[test]
fn anonymous_users_pull_public_images_but_cannot_push() {
    let reg = token_registry();
    let dir = scratch_context(2);
    let image = format!("{}/public/base:v1", reg.host);
    ok(build(&dir, &reg.docker_config(), &["--push", "-t", &image]));

    // Without credentials: the service grants pull on public/…
    let next = Dir::new();
    next.create("ctx/Dockerfile", &format!("FROM {image}\n"));
    ok(build(&next, &anonymous(&next), &["-o", "out"]));
    assert_eq!(
        std::fs::read_to_string(next.path().join("out/data/f1.txt")).unwrap(),
        "file 1\n"
    );
    let asked = reg.requests_for("public/base");
    assert!(
        asked
            .iter()
            .any(|r| r.user.is_none() && r.scopes == ["repository:public/base:pull"]),
        "{asked:?}"
    );

    // … but nothing else: a push is refused, naming the registry.
    let target = format!("{}/public/anon:v1", reg.host);
    let err = fails(build(&dir, &anonymous(&dir), &["--push", "-t", &target]));
    assert!(err.contains(&format!("failed to push {target}")), "{err}");
    assert!(
        err.contains(&format!("{}: unauthorized", reg.host)),
        "{err}"
    );
    // And so is an anonymous pull of a private repository.
    let private = Dir::new();
    private.create(
        "ctx/Dockerfile",
        &format!("FROM {}/tok/private:v1\n", reg.host),
    );
    let err = fails(build(&private, &anonymous(&private), &["-o", "out"]));
    assert!(err.contains(&reg.host), "{err}");
    assert!(err.contains("unauthorized"), "{err}");
}

#[test]
fn bk_push_uses_tokens_too() {
    let reg = token_registry();
    let dir = scratch_context(3);
    let image = format!("{}/tok/stored:v1", reg.host);
    ok(build(&dir, &reg.docker_config(), &["-t", &image]));
    assert!(reg.requests_for("tok/stored").is_empty());
    let out = bk(&dir, &reg.docker_config(), &["push", "-q", &image]);
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let raw = skopeo_raw(reg, &format!("{}/tok/stored@{digest}", reg.host));
    assert_eq!(raw["layers"].as_array().map(Vec::len), Some(3), "{raw}");
    let asked = reg.requests_for("tok/stored");
    assert!(
        asked.iter().any(|r| r
            .scopes
            .iter()
            .any(|s| s == "repository:tok/stored:pull,push")),
        "{asked:?}"
    );
    assert_eq!(asked.len(), 2, "{asked:?}");
}

#[test]
fn blobs_from_another_repository_go_up_with_a_single_scope_token() {
    let reg = token_registry();
    let base = format!("{}/tok/mount-base:v1", reg.host);
    ok(build(
        &scratch_context(2),
        &reg.docker_config(),
        &["--push", "-t", &base],
    ));
    // The next build pulls the base and pushes to another repository:
    // bk tries to mount the base's layers from tok/mount-base, which a
    // token scoped to tok/mount-app alone does not allow; they are
    // uploaded instead.
    let dir = Dir::new();
    dir.create(
        "ctx/Dockerfile",
        &format!("FROM {base}\nCOPY x.txt /x.txt\n"),
    );
    dir.create("ctx/x.txt", "x\n");
    let image = format!("{}/tok/mount-app:v1", reg.host);
    let log = ok(build(&dir, &reg.docker_config(), &["--push", "-t", &image]));
    assert!(log.contains(&format!("pushed {image}@sha256:")), "{log}");
    // The mount was tried and refused (401), then the blob uploaded:
    // 4 blobs (config and 3 layers), none mounted.
    let mounts = reg
        .log()
        .lines()
        .filter(|l| l.starts_with("127.0.0.1 - -"))
        .filter(|l| l.contains("POST /v2/tok/mount-app/blobs/uploads/?") && l.contains("mount="))
        .map(|l| l.split('"').nth(2).unwrap_or("").trim().to_string())
        .collect::<Vec<_>>();
    assert!(!mounts.is_empty(), "no mount tried:\n{}", reg.log());
    assert!(mounts.iter().all(|m| m.starts_with("401 ")), "{mounts:?}");
    assert!(log.contains("4 blobs uploaded"), "{log}");
    assert!(log.contains(", 0 mounted"), "{log}");
    let raw = skopeo_raw(reg, &image);
    assert_eq!(raw["layers"].as_array().map(Vec::len), Some(3), "{raw}");
    let asked = reg.requests_for("tok/mount-app");
    assert_eq!(asked.len(), 2, "{asked:?}");
}
