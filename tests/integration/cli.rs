//! The command line itself: version, completions, flag validation, and
//! the promise that unbuilt features fail loudly.

use crate::util::{describe, Dir};

#[test]
fn version_names_the_package_version() {
    let out = Dir::new().bk().args(["--version"]).stdout();
    assert_eq!(out.trim(), format!("bk {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn committed_completions_are_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (shell, file) in [("bash", "bk.bash"), ("zsh", "_bk"), ("fish", "bk.fish")] {
        let generated = Dir::new().bk().args(["completion", shell]).stdout();
        let committed = std::fs::read_to_string(root.join("completions").join(file))
            .unwrap_or_else(|e| panic!("completions/{file}: {e} (run ./install.sh)"));
        assert!(
            generated == committed,
            "completions/{file} is stale: run ./install.sh to regenerate it"
        );
    }
}

#[test]
fn invalid_flag_values_are_usage_errors() {
    let dir = Dir::new();
    for args in [
        &["build", "--output", "type=zip,dest=x", "."][..],
        &["build", "--platform", "linux/z80", "."],
        &["build", "--network", "bridge", "."],
        &["build", "--progress", "fancy", "."],
    ] {
        let out = dir.bk().args(args).output();
        assert_eq!(out.status.code(), Some(2), "{args:?}:\n{}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
    }
}

#[test]
fn unbuilt_features_fail_with_not_supported_yet_before_building() {
    let dir = Dir::new();
    dir.create("Dockerfile", "FROM scratch\nCOPY a /\n");
    dir.create("a", "A");
    for (args, flag) in [
        (
            &[
                "build",
                "-o",
                "type=registry,name=example/app,unpack=true",
                ".",
            ][..],
            "--output attribute unpack=true",
        ),
        (
            &["build", "-o", "type=oci,dest=out,buildinfo=true", "."],
            "--output attribute buildinfo=true",
        ),
    ] {
        let err = dir.bk().args(args).fails();
        assert!(
            err.contains(&format!("not supported yet: {flag}")),
            "{args:?}: {err}"
        );
        assert!(!dir.path().join("out").exists(), "no output may be written");
        assert!(
            !dir.path().join(".bk-root").exists(),
            "refused before the store is even opened"
        );
    }
}

#[test]
fn check_accepts_the_hello_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let err = Dir::new()
        .bk()
        .args(["build", "--check"])
        .arg_path(&root.join("examples/hello"))
        .output();
    assert!(err.status.success(), "{}", describe(&err));
    assert!(String::from_utf8_lossy(&err.stdout).contains("Check complete"));
}

#[test]
fn missing_dockerfile_names_the_path() {
    let dir = Dir::new();
    let err = dir.bk().args(["build", "--check", "nowhere"]).fails();
    assert!(err.contains("nowhere/Dockerfile"), "{err}");
}
