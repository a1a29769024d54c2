//! COPY options one by one, each against BuildKit's own integration-test
//! scenarios where it has them: `--parents`, `--exclude`, `--chmod`,
//! `--chown`, symlinks, hard links, times, special files, replacing
//! shared inodes, source selection for cache keys, and a larger tree.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::fileop::{selected_paths, Chmod, Error, Owner};

fn dockerfile(src: &str, dest: &str) -> CopyRequest {
    CopyRequest::dockerfile(src, dest)
}

fn parents(src: &str, dest: &str) -> CopyRequest {
    CopyRequest {
        parents: true,
        ..dockerfile(src, dest)
    }
}

fn is_dir(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok_and(|m| m.is_dir())
}

fn is_file(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok_and(|m| m.is_file())
}

/// testCopyRelativeParents' tree, under `test/`.
fn parents_tree(fx: &Fx) {
    for d in ["a/b/c/d/e", "a/b2/c/d/e", "a/b/c2/d/e", "a/b/c2/d/e2"] {
        put_dir(&fx.src, &format!("test/{d}"), 0o755);
    }
    for f in [
        "a/b/c/d/foo",
        "a/b/c/d/e/bay",
        "a/b2/c/d/e/bar",
        "a/b/c2/d/e/baz",
        "a/b/c2/d/e2/baz",
    ] {
        put(&fx.src, &format!("test/{f}"), f, 0o644);
    }
}

#[test]
fn parents_keep_the_path_below_the_pivot() {
    // (sources, checks that must hold, paths that must be absent)
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (
            &["/test/a/b/./c/d"],
            &["c/d/e/", "c/d/foo"],
            &["a", "e", "test"],
        ),
        (
            &["/test/a/b/c/d/."],
            &["test/a/b/c/d/e/", "test/a/b/c/d/foo"],
            &[],
        ),
        (
            &["./test/a/b/c/d"],
            &["test/a/b/c/d/e/", "test/a/b/c/d/foo"],
            &[],
        ),
        (&["/test/a/./b/./c"], &["b/c/d/e/", "b/c/d/foo"], &[]),
        (&["/test/a/./*/c"], &["b/c/d/e/", "b2/c/d/e/bar"], &[]),
        (
            &["/test/a/b*/./c/**/e"],
            &["c/d/e/", "c/d/e/bay", "c/d/e/bar"],
            &["c/d/foo"],
        ),
        (
            &["/test/a/b/c*/./d/**/baz", "/test/a/b*/./c/**/bar"],
            &["d/e/baz", "d/e2/baz", "c/d/e/bar"],
            &["d/e/bay"],
        ),
        // Nothing matches: only the destination directory appears.
        (&["/test/a/b3*/c"], &[""], &["test"]),
        (&["/test/a/b/./c3*"], &[""], &["c3", "test"]),
    ];
    for (sources, present, absent) in cases {
        let fx = Fx::new();
        parents_tree(&fx);
        for src in *sources {
            fx.copy(&parents(src, "/out/"))
                .unwrap_or_else(|e| panic!("{sources:?}: {e}"));
        }
        let out = fx.dest.join("out");
        for p in *present {
            let ok = match p.strip_suffix('/') {
                Some(d) => is_dir(&out, d),
                None if p.is_empty() => is_dir(&out, ""),
                None => is_file(&out, p),
            };
            assert!(ok, "{sources:?}: missing {p}; tree {:?}", tree(&out));
        }
        for p in *absent {
            assert!(
                !exists(&out, p),
                "{sources:?}: unexpected {p}; tree {:?}",
                tree(&out)
            );
        }
    }
}

#[test]
fn parents_with_a_missing_plain_path_fail() {
    let fx = Fx::new();
    parents_tree(&fx);
    let err = fx
        .copy(&parents("/test/nonexistent-file", "/out/"))
        .unwrap_err();
    assert_eq!(err.to_string(), "\"/test/nonexistent-file\": not found");
    // testCopyParents: relative sources, and a WORKDIR-style destination.
    put(&fx.src, "foo1/foo2/bar", "testing", 0o600);
    put(&fx.src, "foo1/foo2/baz", "testing2", 0o600);
    fx.copy(&parents("foo1/foo2/bar", "/")).unwrap();
    fx.copy(&parents("foo1/foo2/ba*", "/test/")).unwrap();
    assert_eq!(read(&fx.dest, "foo1/foo2/bar"), "testing");
    assert_eq!(read(&fx.dest, "test/foo1/foo2/bar"), "testing");
    assert_eq!(read(&fx.dest, "test/foo1/foo2/baz"), "testing2");
    assert!(!exists(&fx.dest, "foo1/foo2/baz"));
}

/// The context of BuildKit's testExcludedFilesOnCopy.
fn exclude_tree(fx: &Fx) {
    for (f, c) in [
        ("dir1/file-101.png", "2"),
        ("dir1/file-102.txt", "3"),
        ("dir1/file-103.jpeg", "4"),
        ("dir2/file-201.pdf", "6"),
        ("dir2/file-202.jpeg", "7"),
        ("dir2/file-203.png", "8"),
        ("dir3/file-301.mp3", "9"),
        ("dir3/file-302.mpeg", "10"),
        ("dir4/file-401.txt", "11"),
    ] {
        put(&fx.src, f, c, 0o600);
    }
    put_link(&fx.src, "dir4/file-402.txt", "file-401.txt");
    put_link(&fx.src, "dir4/file-403.txt", "file-404.txt");
}

fn excluding(src: &str, dest: &str, patterns: &[&str]) -> CopyRequest {
    CopyRequest {
        exclude_patterns: patterns.iter().map(|s| s.to_string()).collect(),
        ..dockerfile(src, dest)
    }
}

#[test]
fn exclude_patterns_filter_the_copied_tree() {
    let fx = Fx::new();
    exclude_tree(&fx);
    fx.copy(&excluding(".", "/1", &["*/*.png", "*/*.jpeg"]))
        .unwrap();
    fx.copy(&excluding(".", "/2", &["*/*.pdf", "*/*.txt"]))
        .unwrap();
    fx.copy(&excluding(
        "dir*",
        "/4/",
        &["*.mp3", "*.jpeg", "*.png", "*.pdf", "*.txt"],
    ))
    .unwrap();
    fx.copy(&CopyRequest {
        attempt_unpack: true,
        ..excluding("dir*", "/5", &["*.mp*", "*.jpeg", "*.png", "*.pdf"])
    })
    .unwrap();
    fx.copy(&excluding("dir*", "/6", &["*"])).unwrap();
    let d = &fx.dest;
    let want_present = [
        ("1/dir1/file-102.txt", "3"),
        ("1/dir2/file-201.pdf", "6"),
        ("1/dir3/file-301.mp3", "9"),
        ("1/dir4/file-401.txt", "11"),
        ("2/dir1/file-101.png", "2"),
        ("2/dir1/file-103.jpeg", "4"),
        ("2/dir2/file-203.png", "8"),
        ("2/dir3/file-302.mpeg", "10"),
        ("4/file-302.mpeg", "10"),
        ("5/file-102.txt", "3"),
        ("5/file-401.txt", "11"),
    ];
    for (p, c) in want_present {
        assert_eq!(read(d, p), c, "{p}");
    }
    assert_eq!(link_target(d, "1/dir4/file-402.txt"), "file-401.txt");
    assert_eq!(link_target(d, "1/dir4/file-403.txt"), "file-404.txt");
    assert_eq!(link_target(d, "5/file-402.txt"), "file-401.txt");
    for p in [
        "1/dir1/file-101.png",
        "1/dir2/file-202.jpeg",
        "2/dir2/file-201.pdf",
        "2/dir4/file-401.txt",
        "2/dir4/file-402.txt",
        "4/file-101.png",
        "4/dir4",
        "4/file-401.txt",
        "5/file-302.mpeg",
        "5/file-301.mp3",
    ] {
        assert!(!exists(d, p), "{p} should be excluded");
    }
    assert!(is_dir(d, "6"));
    assert_eq!(fs::read_dir(d.join("6")).unwrap().count(), 0);
}

#[test]
fn exclude_exceptions_reach_inside_excluded_directories() {
    let fx = Fx::new();
    exclude_tree(&fx);
    fx.copy(&excluding(".", "/o", &["dir1", "!dir1/file-102.txt"]))
        .unwrap();
    assert_eq!(read(&fx.dest, "o/dir1/file-102.txt"), "3");
    assert!(!exists(&fx.dest, "o/dir1/file-101.png"));
    assert_eq!(read(&fx.dest, "o/dir2/file-201.pdf"), "6");
    // The pattern is matched below the source, never against the source
    // itself (fsutil leaves the top entry unfiltered).
    fx.copy(&excluding("dir4/file-401.txt", "/top/", &["*.txt"]))
        .unwrap();
    assert_eq!(read(&fx.dest, "top/file-401.txt"), "11");
}

fn chmod(src: &str, dest: &str, c: Chmod) -> CopyRequest {
    CopyRequest {
        chmod: Some(c),
        ..dockerfile(src, dest)
    }
}

#[test]
fn chmod_octal_sets_files_and_created_parents() {
    // testCopyChmod.
    let fx = Fx::new();
    put(&fx.src, "foo", "foo-contents", 0o600);
    put(&fx.src, "bar", "bar-contents", 0o700);
    fx.copy(&chmod("foo", "/", Chmod::Octal(0o644))).unwrap();
    fx.copy(&chmod("bar", "/baz", Chmod::Octal(0o777))).unwrap();
    fx.copy(&chmod("foo", "/foobis", Chmod::Octal(0))).unwrap();
    fx.copy(&chmod("foo", "/parent/foo", Chmod::Octal(0o777)))
        .unwrap();
    fx.copy(&chmod("foo", "/parent/sub/foo", Chmod::Octal(0o770)))
        .unwrap();
    fx.copy(&chmod("foo", "/footer", Chmod::Octal(0o4755)))
        .unwrap();
    let d = &fx.dest;
    assert_eq!(mode(d, "foo"), 0o644);
    assert_eq!(mode(d, "baz"), 0o777);
    assert_eq!(mode(d, "foobis"), 0);
    assert_eq!(mode(d, "parent"), 0o777);
    assert_eq!(mode(d, "parent/sub"), 0o770);
    assert_eq!(mode(d, "footer"), 0o4755);
    // A directory copy: every entry, directories included.
    put(&fx.src, "tree/x/y", "y", 0o600);
    fx.copy(&chmod("tree", "/t", Chmod::Octal(0o750))).unwrap();
    for p in ["t", "t/x", "t/x/y"] {
        assert_eq!(mode(d, p), 0o750, "{p}");
    }
}

#[test]
fn chmod_symbolic_edits_each_source_mode() {
    // testChmodNonOctal, with the directory readable by its owner so the
    // test also works unprivileged.
    let cases = [
        ("go-w", false, 0o644),
        ("u=rw,g=r,o=r", false, 0o644),
        ("a+X", false, 0o666),
        ("go-w", true, 0o704),
        ("u+rw,g+r,o-x,o+w", true, 0o766),
        ("a+X", true, 0o735),
    ];
    for (i, (m, dir, want)) in cases.into_iter().enumerate() {
        let fx = Fx::new();
        put(&fx.src, "input/file", "", 0o666);
        put_dir(&fx.src, "input/dirs/d/d", 0o724);
        let (src, dest, check) = if dir {
            ("input/dirs/d", "/", "d")
        } else {
            ("input/file", "/f", "f")
        };
        fx.copy(&chmod(src, dest, Chmod::Symbolic(m.into())))
            .unwrap_or_else(|e| panic!("case {i} {m}: {e}"));
        assert_eq!(mode(&fx.dest, check), want, "case {i} {m}");
    }
}

fn chowned(src: &str, dest: &str, owner: &str) -> CopyRequest {
    CopyRequest {
        chown: Some(Owner::parse(owner)),
        ..dockerfile(src, dest)
    }
}

fn chown_source(fx: &Fx) {
    put(&fx.src, "file", "", 0o644);
    put(&fx.src, "dir/subdir/nestedfile", "", 0o644);
    let own = |p: &str, u, g| std::os::unix::fs::lchown(fx.src.join(p), Some(u), Some(g)).unwrap();
    own("file", 100, 200);
    own("dir", 100, 200);
    own("dir/subdir", 101, 201);
    own("dir/subdir/nestedfile", 102, 202);
    put(&fx.dest, "existingdir/existingfile", "", 0o644);
    put_dir(&fx.dest, "existingdir/existingsubdir", 0o755);
    let down =
        |p: &str, u, g| std::os::unix::fs::lchown(fx.dest.join(p), Some(u), Some(g)).unwrap();
    down("existingdir", 500, 600);
    down("existingdir/existingsubdir", 501, 601);
    down("existingdir/existingfile", 501, 601);
}

#[test]
fn ownership_follows_buildkit_with_and_without_chown() {
    if !is_root() {
        eprintln!("skipping ownership_follows_buildkit_with_and_without_chown: needs root");
        return;
    }
    // testCopyChownExistingDir, copy_from stage.
    let fx = Fx::new();
    chown_source(&fx);
    fx.copy(&dockerfile("/file", "/")).unwrap();
    fx.copy(&dockerfile("/dir", "/dir")).unwrap();
    fx.copy(&dockerfile("/dir/.", "/existingdir")).unwrap();
    let d = &fx.dest;
    assert_eq!(owner(d, "file"), (100, 200));
    // The destination directory is created, not copied: owned by us.
    assert_eq!(owner(d, "dir"), (0, 0));
    assert_eq!(owner(d, "dir/subdir"), (101, 201));
    assert_eq!(owner(d, "dir/subdir/nestedfile"), (102, 202));
    assert_eq!(owner(d, "existingdir"), (500, 600));
    assert_eq!(owner(d, "existingdir/existingsubdir"), (501, 601));
    assert_eq!(owner(d, "existingdir/existingfile"), (501, 601));
    assert_eq!(owner(d, "existingdir/subdir"), (101, 201));
    assert_eq!(owner(d, "existingdir/subdir/nestedfile"), (102, 202));

    // copy_from_chowned stage.
    let fx = Fx::new();
    chown_source(&fx);
    fx.copy(&chowned("/file", "/", "300:400")).unwrap();
    fx.copy(&chowned("/dir", "/dir", "300:400")).unwrap();
    fx.copy(&chowned("/dir/.", "/existingdir", "300:400"))
        .unwrap();
    fx.copy(&chowned("/file", "/p/q/file", "300:400")).unwrap();
    let d = &fx.dest;
    for p in [
        "file",
        "dir",
        "dir/subdir",
        "dir/subdir/nestedfile",
        "p",
        "p/q",
        "p/q/file",
    ] {
        assert_eq!(owner(d, p), (300, 400), "{p}");
    }
    assert_eq!(owner(d, "existingdir"), (500, 600));
    assert_eq!(owner(d, "existingdir/existingsubdir"), (501, 601));
    assert_eq!(owner(d, "existingdir/existingfile"), (501, 601));
    assert_eq!(owner(d, "existingdir/subdir"), (300, 400));
    assert_eq!(owner(d, "existingdir/subdir/nestedfile"), (300, 400));
}

#[test]
fn chown_by_name_reads_the_destinations_database() {
    let fx = Fx::new();
    put(&fx.src, "foo", "foo", 0o644);
    put(
        &fx.dest,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
        0o644,
    );
    put(&fx.dest, "etc/group", "root:x:0:\nstaff:x:50:app\n", 0o644);
    let err = fx.copy(&chowned("foo", "/x", "ghost")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user ghost: no matching entries in passwd file"
    );
    let err = fx.copy(&chowned("foo", "/x", "app:ghosts")).unwrap_err();
    assert!(
        err.to_string().contains("unable to find group ghosts"),
        "{err}"
    );
    assert!(!exists(&fx.dest, "x"));
    if !is_root() {
        let err = fx.copy(&chowned("foo", "/x", "app")).unwrap_err();
        assert!(
            err.to_string().contains("--chown to 1001:1002 needs root"),
            "{err}"
        );
        eprintln!("chown_by_name: applying ids skipped, needs root");
        return;
    }
    fx.copy(&chowned("foo", "/a", "app")).unwrap();
    fx.copy(&chowned("foo", "/b", "app:staff")).unwrap();
    fx.copy(&chowned("foo", "/c", "7:staff")).unwrap();
    assert_eq!(owner(&fx.dest, "a"), (1001, 1002));
    assert_eq!(owner(&fx.dest, "b"), (1001, 50));
    assert_eq!(owner(&fx.dest, "c"), (7, 50));
}

#[test]
fn unprivileged_chown_to_others_is_refused() {
    if is_root() {
        eprintln!(
            "skipping unprivileged_chown_to_others_is_refused: running as root \
             (the rule itself is unit-tested in owner.rs)"
        );
        return;
    }
    let fx = Fx::new();
    put(&fx.src, "foo", "foo", 0o644);
    let err = fx.copy(&chowned("foo", "/x", "0:0")).unwrap_err();
    assert!(matches!(err, Error::ResolveOwner(_)), "{err}");
    assert!(!exists(&fx.dest, "x"));
}

#[test]
fn symlinks_are_copied_as_links_and_followed_only_when_named() {
    // testCopySymlinks and testCopyFollowAllSymlinks.
    let fx = Fx::new();
    put(&fx.src, "bar", "bar-contents", 0o600);
    put_link(&fx.src, "foo", "bar");
    put(&fx.src, "sub/lfile", "lfile-contents", 0o600);
    put_link(&fx.src, "sub/l0", "subfile");
    put(&fx.src, "sub/subfile", "subfile-contents", 0o600);
    put_link(&fx.src, "sub/l1", "second");
    put_link(&fx.src, "sub/second", "baz");
    put(&fx.src, "sub/baz", "baz-contents", 0o600);
    put_link(&fx.src, "dir/sub", "../bar");
    put_link(&fx.src, "link", "sub");

    fx.copy(&dockerfile("foo", "/")).unwrap();
    fx.copy(&dockerfile("sub/l*", "/alllinks/")).unwrap();
    fx.copy(&dockerfile("dir/sub", "/viadir")).unwrap();
    fx.copy(&dockerfile("link/lfile", "/")).unwrap();
    fx.copy(&dockerfile("sub", "/tree")).unwrap();
    fx.copy(&CopyRequest {
        follow_symlinks: false,
        ..dockerfile("foo", "/nofollow")
    })
    .unwrap();
    let d = &fx.dest;
    assert!(is_file(d, "foo"));
    assert_eq!(read(d, "foo"), "bar-contents");
    assert_eq!(read(d, "alllinks/l0"), "subfile-contents");
    assert_eq!(read(d, "alllinks/lfile"), "lfile-contents");
    assert_eq!(read(d, "alllinks/l1"), "baz-contents");
    assert!(is_file(d, "alllinks/l1"));
    assert_eq!(read(d, "viadir"), "bar-contents");
    assert_eq!(read(d, "lfile"), "lfile-contents");
    assert_eq!(link_target(d, "tree/l0"), "subfile");
    assert_eq!(link_target(d, "tree/l1"), "second");
    assert_eq!(link_target(d, "tree/second"), "baz");
    assert_eq!(link_target(d, "nofollow"), "bar");
}

#[test]
fn hard_links_inside_the_copied_tree_are_kept() {
    let fx = Fx::new();
    put(&fx.src, "h/a", "shared", 0o640);
    put_dir(&fx.src, "h/sub", 0o755);
    fs::hard_link(fx.src.join("h/a"), fx.src.join("h/sub/b")).unwrap();
    put(&fx.src, "h/c", "alone", 0o644);
    fx.copy(&dockerfile("h", "/h")).unwrap();
    let ino = |root: &Path, p: &str| fs::symlink_metadata(root.join(p)).unwrap().ino();
    let d = &fx.dest;
    assert_eq!(ino(d, "h/a"), ino(d, "h/sub/b"));
    assert_ne!(ino(d, "h/a"), ino(&fx.src, "h/a"));
    assert_ne!(ino(d, "h/a"), ino(d, "h/c"));
    assert_eq!(fs::symlink_metadata(d.join("h/a")).unwrap().nlink(), 2);
    assert_eq!(read(d, "h/sub/b"), "shared");
    assert_eq!(mode(d, "h/sub/b"), 0o640);
    assert_no_temp_files(d);
}

fn mtime(root: &Path, rel: &str) -> (i64, i64) {
    let m = fs::symlink_metadata(root.join(rel)).unwrap();
    (m.mtime(), m.mtime_nsec())
}

#[test]
fn times_are_kept_or_fixed() {
    let fx = Fx::new();
    put(&fx.src, "t/f", "f", 0o644);
    put_link(&fx.src, "t/l", "f");
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 123_456_789);
    for p in ["t/f", "t/l", "t"] {
        filetime::set_symlink_file_times(fx.src.join(p), old, old).unwrap();
    }
    fx.copy(&dockerfile("t", "/kept")).unwrap();
    fx.copy(&CopyRequest {
        dir_copy_contents: false,
        ..dockerfile("t", "/kept2/")
    })
    .unwrap();
    for p in ["kept/f", "kept/l", "kept", "kept2/t", "kept2/t/f"] {
        assert_eq!(mtime(&fx.dest, p), (1_000_000_000, 123_456_789), "{p}");
    }

    let ts = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fx.copy(&CopyRequest {
        timestamp: Some(ts),
        ..dockerfile("t", "/fixed/deep/")
    })
    .unwrap();
    for p in ["fixed", "fixed/deep", "fixed/deep/f", "fixed/deep/l"] {
        assert_eq!(mtime(&fx.dest, p), (1_700_000_000, 0), "{p}");
    }
}

#[test]
fn special_files_are_recreated() {
    let fx = Fx::new();
    nix::unistd::mkfifo(
        &fx.src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(fx.src.join("sock")).unwrap();
    let device = nix::sys::stat::mknod(
        &fx.src.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .is_ok();
    fx.copy(&dockerfile(".", "/s/")).unwrap();
    let meta = |p: &str| fs::symlink_metadata(fx.dest.join(p)).unwrap();
    assert!(meta("s/fifo").file_type().is_fifo());
    assert_eq!(mode(&fx.dest, "s/fifo"), 0o640);
    // A socket cannot be recreated; BuildKit leaves an empty file.
    assert!(meta("s/sock").is_file());
    assert_eq!(meta("s/sock").len(), 0);
    if device {
        assert!(meta("s/null").file_type().is_char_device());
        assert_eq!(meta("s/null").rdev(), nix::sys::stat::makedev(1, 3));
    } else {
        eprintln!("special_files: no device node check, mknod not permitted here");
    }
}

#[test]
fn replacing_a_shared_inode_leaves_the_other_link_alone() {
    let fx = Fx::new();
    let other = tempfile::tempdir().unwrap();
    put(other.path(), "snap-file", "snapshot data", 0o600);
    put(other.path(), "snap-nested", "nested snapshot data", 0o600);
    let before = |p: &str| fs::metadata(other.path().join(p)).unwrap();
    let (m1, m2) = (before("snap-file"), before("snap-nested"));
    put_dir(&fx.dest, "d", 0o755);
    fs::hard_link(other.path().join("snap-file"), fx.dest.join("x")).unwrap();
    fs::hard_link(other.path().join("snap-nested"), fx.dest.join("d/y")).unwrap();
    put(&fx.src, "foo", "new data", 0o755);
    put(&fx.src, "dir/y", "new nested", 0o755);

    fx.copy(&dockerfile("foo", "/x")).unwrap();
    fx.copy(&dockerfile("dir", "/d")).unwrap();

    assert_eq!(read(&fx.dest, "x"), "new data");
    assert_eq!(read(&fx.dest, "d/y"), "new nested");
    for (p, old, content) in [
        ("snap-file", &m1, "snapshot data"),
        ("snap-nested", &m2, "nested snapshot data"),
    ] {
        let now = fs::metadata(other.path().join(p)).unwrap();
        assert_eq!(read(other.path(), p), content);
        assert_eq!(now.mode(), old.mode(), "{p}");
        assert_eq!(
            (now.mtime(), now.mtime_nsec()),
            (old.mtime(), old.mtime_nsec())
        );
        assert_eq!((now.uid(), now.gid()), (old.uid(), old.gid()));
        assert_eq!(now.nlink(), 1, "{p}: dest must no longer share it");
    }
}

#[test]
fn selected_paths_list_what_the_copy_reads() {
    let fx = Fx::new();
    exclude_tree(&fx);
    put_link(&fx.src, "ln", "dir3");
    let sel = |req: &CopyRequest| -> Vec<String> {
        selected_paths(req, &fx.src)
            .unwrap()
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        sel(&excluding("dir1", "/x", &["*.png"])),
        ["dir1", "dir1/file-102.txt", "dir1/file-103.jpeg"]
    );
    assert_eq!(sel(&dockerfile("dir*/*.mp3", "/x/")), ["dir3/file-301.mp3"]);
    // The named symlink is followed: its target is what is read.
    assert_eq!(
        sel(&dockerfile("ln", "/x")),
        ["dir3", "dir3/file-301.mp3", "dir3/file-302.mpeg"]
    );
    assert_eq!(
        sel(&parents("dir4/file-401.txt", "/x/")),
        ["", "dir4", "dir4/file-401.txt"]
    );
    assert!(sel(&dockerfile("nomatch*", "/x/")).is_empty());
    assert!(selected_paths(&dockerfile("nope", "/x"), &fx.src).is_err());
}

#[test]
fn a_larger_tree_and_a_large_file_copy_exactly() {
    let fx = Fx::new();
    for d in 0..40 {
        for f in 0..75 {
            put(
                &fx.src,
                &format!("big/d{d}/f{f}"),
                &format!("{d}/{f}"),
                0o644,
            );
        }
    }
    let large: Vec<u8> = (0..(32u32 << 20)).map(|i| (i % 251) as u8).collect();
    fs::write(fx.src.join("big/large.bin"), &large).unwrap();
    fx.copy(&dockerfile("big", "/big")).unwrap();
    let files = tree(&fx.dest.join("big"))
        .into_iter()
        .filter(|p| !p.ends_with('/'))
        .count();
    assert_eq!(files, 40 * 75 + 1);
    for (d, f) in [(0, 0), (17, 42), (39, 74)] {
        assert_eq!(
            read(&fx.dest, &format!("big/d{d}/f{f}")),
            format!("{d}/{f}")
        );
    }
    assert!(fs::read(fx.dest.join("big/large.bin")).unwrap() == large);
    assert_no_temp_files(&fx.dest);
}

#[test]
fn extended_attributes_are_copied() {
    let fx = Fx::new();
    put(&fx.src, "x", "x", 0o644);
    let name = std::ffi::OsStr::new("user.bk-test");
    if crate::fileop::meta::set_xattr(&fx.src.join("x"), name, b"value").is_err() {
        eprintln!("skipping extended_attributes_are_copied: no user xattrs on this filesystem");
        return;
    }
    fx.copy(&dockerfile("x", "/y")).unwrap();
    assert_eq!(
        crate::fileop::meta::read_xattr(&fx.dest.join("y"), "user.bk-test").as_deref(),
        Some(&b"value"[..])
    );
}

#[test]
fn now_is_not_used_for_copied_files() {
    // Without a timestamp, a copied file's mtime is the source's even if
    // the source is very recent; guard against "now" sneaking in.
    let fx = Fx::new();
    put(&fx.src, "f", "f", 0o644);
    let t = SystemTime::now() - Duration::from_secs(3600);
    filetime::set_file_mtime(fx.src.join("f"), filetime::FileTime::from_system_time(t)).unwrap();
    fx.copy(&dockerfile("f", "/f")).unwrap();
    assert_eq!(mtime(&fx.dest, "f"), mtime(&fx.src, "f"));
}

/// The brief's scale: 50,000 small files. Opt-in (`--ignored`) because a
/// debug build spends most of its time creating the source tree.
#[test]
#[ignore]
fn fifty_thousand_files() {
    let fx = Fx::new();
    for d in 0..500 {
        let dir = fx.src.join(format!("t/d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("f{f}")), b"x").unwrap();
        }
    }
    let start = std::time::Instant::now();
    fx.copy(&dockerfile("t", "/t")).unwrap();
    eprintln!("copied 50,000 files in {:?}", start.elapsed());
    assert_eq!(fs::read_dir(fx.dest.join("t")).unwrap().count(), 500);
    assert_eq!(fs::read_dir(fx.dest.join("t/d499")).unwrap().count(), 100);
}

#[test]
fn non_utf8_names_are_copied_and_matched() {
    use std::os::unix::ffi::OsStrExt;
    let fx = Fx::new();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    let skip = std::ffi::OsStr::from_bytes(b"skip\xff.log");
    put_dir(&fx.src, "n", 0o755);
    fs::write(fx.src.join("n").join(odd), b"latin-1").unwrap();
    fs::write(fx.src.join("n").join(skip), b"excluded").unwrap();
    fx.copy(&excluding("n", "/n", &["*.log"])).unwrap();
    assert_eq!(fs::read(fx.dest.join("n").join(odd)).unwrap(), b"latin-1");
    assert!(!fx.dest.join("n").join(skip).exists());
    fx.copy(&dockerfile("n/caf*", "/w/")).unwrap();
    assert_eq!(fs::read(fx.dest.join("w").join(odd)).unwrap(), b"latin-1");
}

#[test]
fn special_mode_bits_survive_a_plain_copy() {
    let fx = Fx::new();
    put(&fx.src, "m/suid", "", 0o4755);
    put(&fx.src, "m/sgid", "", 0o2711);
    put_dir(&fx.src, "m/tmp", 0o1777);
    fx.copy(&dockerfile("m", "/m")).unwrap();
    assert_eq!(mode(&fx.dest, "m/suid"), 0o4755);
    assert_eq!(mode(&fx.dest, "m/sgid"), 0o2711);
    assert_eq!(mode(&fx.dest, "m/tmp"), 0o1777);
}
