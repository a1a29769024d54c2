//! Containment: sources named with `..`, symlinks in the source pointing
//! outside (absolutely or relatively), and symlinks in the destination
//! pointing outside must all resolve inside their own root. A secret file
//! and an empty directory next to the roots prove nothing outside is ever
//! read or written.

use super::*;
use crate::fileop::Error;

/// No regular file anywhere under `root` holds the secret.
fn assert_secret_not_copied(root: &Path) {
    for rel in tree(root) {
        let p = root.join(&rel);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            assert_ne!(
                fs::read_to_string(&p).unwrap_or_default(),
                SECRET,
                "{rel} holds the secret"
            );
        }
    }
}

fn escaping_source(fx: &Fx) {
    let secret = fx.secret.to_string_lossy().into_owned();
    let outside = fx.outside.to_string_lossy().into_owned();
    put_link(&fx.src, "abs", &secret);
    put_link(&fx.src, "rel", "../secret");
    put_link(&fx.src, "deep/er/rel", "../../../../../../../secret");
    put_link(&fx.src, "absdir", &outside);
    put_link(&fx.src, "updir", "../../outside");
    // A decoy at the in-root spelling of `../secret`.
    put(&fx.src, "secret", "decoy inside the source root", 0o644);
}

#[test]
fn source_paths_never_leave_the_source_root() {
    let fx = Fx::new();
    escaping_source(&fx);
    for (i, src) in [
        "../secret",
        "/../../secret",
        "a/../../../secret",
        "rel",
        "deep/er/rel",
        "abs",
        "updir/*",
        "absdir/*",
        "../*",
        "rel*",
    ]
    .into_iter()
    .enumerate()
    {
        let dest = format!("/out{i}/");
        match fx.copy(&CopyRequest::dockerfile(src, &dest)) {
            Ok(()) => {}
            Err(Error::FindSource { .. } | Error::MatchWildcard(_)) => {}
            Err(e) => panic!("{src}: unexpected error {e}"),
        }
        assert_secret_not_copied(&fx.dest);
    }
    // The relative spellings land on the decoy.
    assert_eq!(
        read(&fx.dest, "out0/secret"),
        "decoy inside the source root"
    );
    assert_eq!(read(&fx.dest, "out3/rel"), "decoy inside the source root");
    assert_eq!(read(&fx.dest, "out4/rel"), "decoy inside the source root");
    // The absolute link points at a path that does not exist in the root.
    assert!(!exists(&fx.dest, "out5"));
    fx.assert_outside_untouched();
}

#[test]
fn links_inside_a_copied_directory_stay_links() {
    let fx = Fx::new();
    escaping_source(&fx);
    fx.copy(&CopyRequest::dockerfile(".", "/all/")).unwrap();
    assert_eq!(
        link_target(&fx.dest, "all/abs"),
        fx.secret.to_string_lossy()
    );
    assert_eq!(link_target(&fx.dest, "all/rel"), "../secret");
    assert_eq!(
        link_target(&fx.dest, "all/deep/er/rel"),
        "../../../../../../../secret"
    );
    assert_secret_not_copied(&fx.dest);
    fx.assert_outside_untouched();
}

#[test]
fn destination_symlinks_resolve_inside_the_destination_root() {
    let fx = Fx::new();
    put(&fx.src, "single", "single-contents", 0o644);
    put(&fx.src, "dir/sub/file", "nested", 0o644);
    put(&fx.src, "dir/f", "file f", 0o644);
    let outside = fx.outside.to_string_lossy().into_owned();
    let secret = fx.secret.to_string_lossy().into_owned();
    put_link(&fx.dest, "out", "../outside");
    put_link(&fx.dest, "absout", &outside);
    put_link(&fx.dest, "up", "/../../../outside/x");
    put_link(&fx.dest, "tosecret", "../secret");
    put_link(&fx.dest, "abssecret", &secret);

    fx.copy(&CopyRequest::dockerfile("single", "/out/pwned"))
        .unwrap();
    fx.copy(&CopyRequest::dockerfile("single", "/absout/"))
        .unwrap();
    fx.copy(&CopyRequest::dockerfile("single", "/up/sub/"))
        .unwrap();
    // Copying onto a link to a file writes the link's in-root target.
    fx.copy(&CopyRequest::dockerfile("single", "/tosecret"))
        .unwrap();
    fx.copy(&CopyRequest::dockerfile("single", "/abssecret"))
        .unwrap();

    let d = &fx.dest;
    assert_eq!(read(d, "outside/pwned"), "single-contents");
    assert_eq!(
        read(d, &format!("{}/single", outside.trim_start_matches('/'))),
        "single-contents"
    );
    assert_eq!(read(d, "outside/x/sub/single"), "single-contents");
    assert_eq!(read(d, "secret"), "single-contents");
    assert_eq!(read(d, secret.trim_start_matches('/')), "single-contents");
    assert_eq!(link_target(d, "tosecret"), "../secret");
    fx.assert_outside_untouched();
}

#[test]
fn destination_links_below_the_target_are_replaced_not_followed() {
    let fx = Fx::new();
    put(&fx.src, "dir/sub/file", "nested", 0o644);
    put(&fx.src, "dir/f", "file f", 0o644);
    put_dir(&fx.dest, "d", 0o755);
    put_link(&fx.dest, "d/sub", "../../outside");
    put_link(&fx.dest, "d/f", "../../secret");

    // BuildKit refuses to merge a directory into a symlink…
    let err = fx.copy(&CopyRequest::dockerfile("dir", "/d")).unwrap_err();
    assert_eq!(err.to_string(), "cannot copy to non-directory: /d/sub");
    fx.assert_outside_untouched();

    // …unless told to replace, and a file replaces a link outright.
    fx.copy(&CopyRequest {
        always_replace_existing_dest: true,
        ..CopyRequest::dockerfile("dir", "/d")
    })
    .unwrap();
    assert_eq!(read(&fx.dest, "d/sub/file"), "nested");
    assert_eq!(read(&fx.dest, "d/f"), "file f");
    assert!(fs::symlink_metadata(fx.dest.join("d/f")).unwrap().is_file());
    fx.assert_outside_untouched();
}
