//! mkdir, mkfile and rm: BuildKit's semantics (its backend tests'
//! scenarios included), containment in the root, and mkfile's
//! replace-by-rename.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::fileop::{mkdir, mkfile, rm, Error, MkdirRequest, MkfileRequest, Owner, RmRequest};

fn ids(fx: &Fx) -> PasswdResolver {
    PasswdResolver::new(&fx.dest)
}

fn mk(path: &str, mode: u32, parents: bool) -> MkdirRequest {
    MkdirRequest {
        path: path.into(),
        mode,
        make_parents: parents,
        ..MkdirRequest::default()
    }
}

#[test]
fn mkdir_with_and_without_parents() {
    let fx = Fx::new();
    let ts = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    mkdir(
        &MkdirRequest {
            timestamp: Some(ts),
            ..mk("/a/b/c", 0o750, true)
        },
        &fx.dest,
        &ids(&fx),
    )
    .unwrap();
    for p in ["a", "a/b", "a/b/c"] {
        assert_eq!(mode(&fx.dest, p), 0o750, "{p}");
        let m = fs::metadata(fx.dest.join(p)).unwrap();
        assert_eq!(m.mtime(), 1_600_000_000, "{p}");
    }
    // Existing: fine, untouched.
    mkdir(&mk("/a/b/c", 0o700, true), &fx.dest, &ids(&fx)).unwrap();
    assert_eq!(mode(&fx.dest, "a/b/c"), 0o750);
    mkdir(&mk("/a/b/c", 0o700, false), &fx.dest, &ids(&fx)).unwrap();
    assert_eq!(mode(&fx.dest, "a/b/c"), 0o750);
    // Without parents the parent must exist; an existing file is accepted
    // silently, as BuildKit's ErrExist check does.
    let err = mkdir(&mk("/x/y", 0o755, false), &fx.dest, &ids(&fx)).unwrap_err();
    assert!(matches!(err, Error::WriteDestination(_)), "{err}");
    put(&fx.dest, "file", "f", 0o644);
    mkdir(&mk("/file", 0o755, false), &fx.dest, &ids(&fx)).unwrap();
    assert!(fs::metadata(fx.dest.join("file")).unwrap().is_file());
    let err = mkdir(&mk("/file/sub", 0o755, true), &fx.dest, &ids(&fx)).unwrap_err();
    assert!(matches!(err, Error::ResolvePath(_)), "{err}");
    mkdir(&mk("/single", 0o711, false), &fx.dest, &ids(&fx)).unwrap();
    assert_eq!(mode(&fx.dest, "single"), 0o711);
}

#[test]
fn mkdir_follows_links_inside_the_root_only() {
    let fx = Fx::new();
    let outside = fx.outside.to_string_lossy().into_owned();
    put_link(&fx.dest, "abs", &outside);
    put_link(&fx.dest, "rel", "../outside");
    mkdir(&mk("/abs/made", 0o755, true), &fx.dest, &ids(&fx)).unwrap();
    mkdir(&mk("/rel/made", 0o755, true), &fx.dest, &ids(&fx)).unwrap();
    mkdir(
        &mk("/../../outside/made2", 0o755, true),
        &fx.dest,
        &ids(&fx),
    )
    .unwrap();
    assert!(exists(
        &fx.dest,
        &format!("{}/made", outside.trim_start_matches('/'))
    ));
    assert!(exists(&fx.dest, "outside/made"));
    assert!(exists(&fx.dest, "outside/made2"));
    fx.assert_outside_untouched();
}

#[test]
fn mkdir_chown() {
    let fx = Fx::new();
    put(
        &fx.dest,
        "etc/passwd",
        "app:x:1001:1002::/:/bin/sh\n",
        0o644,
    );
    let req = |owner: &str| MkdirRequest {
        owner: Some(Owner::parse(owner)),
        ..mk("/owned/deep", 0o755, true)
    };
    assert!(mkdir(&req("nobody-here"), &fx.dest, &ids(&fx)).is_err());
    if !is_root() {
        eprintln!("mkdir_chown: applying ids skipped, needs root");
        return;
    }
    mkdir(&req("app"), &fx.dest, &ids(&fx)).unwrap();
    assert_eq!(owner(&fx.dest, "owned"), (1001, 1002));
    assert_eq!(owner(&fx.dest, "owned/deep"), (1001, 1002));
}

fn mf(path: &str, data: &str, mode: u32) -> MkfileRequest {
    MkfileRequest {
        path: path.into(),
        mode,
        data: data.as_bytes().to_vec(),
        ..MkfileRequest::default()
    }
}

#[test]
fn mkfile_writes_and_replaces_by_rename() {
    let fx = Fx::new();
    let ts = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    mkfile(
        &MkfileRequest {
            timestamp: Some(ts),
            ..mf("/EOF", "hello\n", 0o644)
        },
        &fx.dest,
        &ids(&fx),
    )
    .unwrap();
    assert_eq!(read(&fx.dest, "EOF"), "hello\n");
    assert_eq!(mode(&fx.dest, "EOF"), 0o644);
    assert_eq!(
        fs::metadata(fx.dest.join("EOF")).unwrap().mtime(),
        1_500_000_000
    );

    // An existing file shared with another snapshot: replaced, not
    // rewritten; its mode is kept as BuildKit's in-place write keeps it.
    let other = tempfile::tempdir().unwrap();
    put(other.path(), "snap", "snapshot", 0o600);
    fs::hard_link(other.path().join("snap"), fx.dest.join("shared")).unwrap();
    mkfile(&mf("/shared", "new", 0o644), &fx.dest, &ids(&fx)).unwrap();
    assert_eq!(read(&fx.dest, "shared"), "new");
    assert_eq!(mode(&fx.dest, "shared"), 0o600);
    assert_eq!(read(other.path(), "snap"), "snapshot");
    assert_eq!(fs::metadata(other.path().join("snap")).unwrap().nlink(), 1);

    // Parent must exist; a directory cannot be replaced.
    assert!(mkfile(&mf("/no/such", "x", 0o644), &fx.dest, &ids(&fx)).is_err());
    put_dir(&fx.dest, "adir", 0o755);
    let err = mkfile(&mf("/adir", "x", 0o644), &fx.dest, &ids(&fx)).unwrap_err();
    assert!(matches!(err, Error::ReplaceDirectory { .. }), "{err}");
    assert_no_temp_files(&fx.dest);
}

#[test]
fn mkfile_through_links_stays_inside() {
    let fx = Fx::new();
    put_link(&fx.dest, "tosecret", "../secret");
    put_link(&fx.dest, "absdir", &fx.outside.to_string_lossy());
    put_dir(
        &fx.dest,
        fx.outside.to_string_lossy().trim_start_matches('/'),
        0o755,
    );
    mkfile(&mf("/tosecret", "in root", 0o644), &fx.dest, &ids(&fx)).unwrap();
    mkfile(&mf("/absdir/f", "in root too", 0o644), &fx.dest, &ids(&fx)).unwrap();
    assert_eq!(read(&fx.dest, "secret"), "in root");
    assert_eq!(
        read(
            &fx.dest,
            &format!("{}/f", fx.outside.to_string_lossy().trim_start_matches('/'))
        ),
        "in root too"
    );
    fx.assert_outside_untouched();
}

fn rmr(path: &str, allow_not_found: bool, allow_wildcard: bool) -> RmRequest {
    RmRequest {
        path: path.into(),
        allow_not_found,
        allow_wildcard,
    }
}

#[test]
fn rm_files_directories_links_and_wildcards() {
    let fx = Fx::new();
    put(&fx.dest, "f", "f", 0o644);
    put(&fx.dest, "d/a/b", "b", 0o644);
    put(&fx.dest, "target", "t", 0o644);
    put_link(&fx.dest, "link", "target");
    put(&fx.dest, "w/x.log", "", 0o644);
    put(&fx.dest, "w/y.log", "", 0o644);
    put(&fx.dest, "w/keep.txt", "", 0o644);
    rm(&rmr("/f", false, false), &fx.dest).unwrap();
    rm(&rmr("d", false, false), &fx.dest).unwrap();
    rm(&rmr("/link", false, false), &fx.dest).unwrap();
    rm(&rmr("/w/*.log", false, true), &fx.dest).unwrap();
    rm(&rmr("/w/*.none", false, true), &fx.dest).unwrap();
    assert!(!exists(&fx.dest, "f"));
    assert!(!exists(&fx.dest, "d"));
    assert!(!exists(&fx.dest, "link"));
    assert_eq!(read(&fx.dest, "target"), "t");
    assert_eq!(tree(&fx.dest.join("w")), ["keep.txt"]);

    let err = rm(&rmr("/missing", false, false), &fx.dest).unwrap_err();
    assert!(matches!(err, Error::FindRemoveTarget { .. }), "{err}");
    rm(&rmr("/missing", true, false), &fx.dest).unwrap();
    // A dangling link counts as missing unless allowed, as with os.Stat.
    put_link(&fx.dest, "dangling", "nowhere");
    assert!(rm(&rmr("/dangling", false, false), &fx.dest).is_err());
    rm(&rmr("/dangling", true, false), &fx.dest).unwrap();
    assert!(!exists(&fx.dest, "dangling"));
}

#[test]
fn rm_parent_traversal_does_not_escape_root() {
    // BuildKit's TestRmParentTraversalDoesNotEscapeRoot, plus links.
    let fx = Fx::new();
    put(&fx.outside.join(".."), "victim/data", "data", 0o644);
    let victim = fx.outside.join("../victim/data");
    for p in [
        "..",
        "../..",
        "a/../..",
        "../victim",
        "/",
        "",
        "..\\..",
        "..\\victim",
    ] {
        assert!(
            rm(&rmr(p, false, false), &fx.dest).is_err(),
            "rm {p:?} succeeded"
        );
        assert!(victim.exists(), "rm {p:?} escaped the root");
    }
    put_link(&fx.dest, "out", "../outside");
    put_link(&fx.dest, "vic", "../victim");
    put_dir(&fx.dest, "outside", 0o755);
    put(&fx.outside, "must-stay", "x", 0o644);
    rm(&rmr("/out/must-stay", true, false), &fx.dest).unwrap();
    rm(&rmr("/vic/data", true, false), &fx.dest).unwrap();
    rm(&rmr("/vic", false, false), &fx.dest).unwrap_err();
    // As in BuildKit, a wildcard whose base directory is missing is an
    // error (the walk cannot start), not an empty match.
    rm(&rmr("/../victim/*", false, true), &fx.dest).unwrap_err();
    assert!(victim.exists());
    assert!(fx.outside.join("must-stay").exists());
    // Removing the link removes only the link.
    rm(&rmr("/out", false, false), &fx.dest).unwrap();
    assert!(!exists(&fx.dest, "out"));
    assert!(fx.outside.join("must-stay").exists());
}
