//! Docker COPY naming and placement rules as a table: each case starts
//! from the same source tree (BuildKit's `testCopyWildcards` one) and a
//! given destination state, runs one or more copies with the Dockerfile
//! frontend's options, and checks the resulting tree or the error.

use super::*;

#[derive(Clone, Copy)]
enum Pre {
    File(&'static str, &'static str),
    Dir(&'static str),
}

#[derive(Clone, Copy, Debug)]
enum Want {
    File(&'static str, &'static str),
    Dir(&'static str),
    Absent(&'static str),
}

struct Case {
    name: &'static str,
    pre: Vec<Pre>,
    copies: Vec<(&'static str, &'static str)>,
    tweak: fn(&mut CopyRequest),
    want: std::result::Result<Vec<Want>, &'static str>,
}

fn none(_: &mut CopyRequest) {}

fn case(
    name: &'static str,
    pre: Vec<Pre>,
    copies: Vec<(&'static str, &'static str)>,
    want: std::result::Result<Vec<Want>, &'static str>,
) -> Case {
    Case {
        name,
        pre,
        copies,
        tweak: none,
        want,
    }
}

fn with(mut c: Case, tweak: fn(&mut CopyRequest)) -> Case {
    c.tweak = tweak;
    c
}

fn source_tree(fx: &Fx) {
    put(&fx.src, "foo.go", "foo-contents", 0o600);
    put(&fx.src, "bar.go", "bar-contents", 0o600);
    put(&fx.src, "sub/dir1/dir2/foo", "foo-contents", 0o600);
    put(&fx.src, "single", "single-contents", 0o644);
}

fn cases() -> Vec<Case> {
    use Pre as P;
    use Want::*;
    vec![
        case(
            "file to file",
            vec![],
            vec![("foo.go", "/dst.go")],
            Ok(vec![File("dst.go", "foo-contents")]),
        ),
        case(
            "file to dir/ creates the directory",
            vec![],
            vec![("foo.go", "/out/")],
            Ok(vec![File("out/foo.go", "foo-contents")]),
        ),
        case(
            "file to an existing directory without slash goes inside",
            vec![P::Dir("exist")],
            vec![("foo.go", "/exist")],
            Ok(vec![File("exist/foo.go", "foo-contents")]),
        ),
        case(
            "file to a missing path without slash becomes that path",
            vec![],
            vec![("foo.go", "/a/b/name")],
            Ok(vec![File("a/b/name", "foo-contents"), Dir("a/b")]),
        ),
        case(
            "file replaces an existing file",
            vec![P::File("x", "old")],
            vec![("foo.go", "/x")],
            Ok(vec![File("x", "foo-contents")]),
        ),
        case(
            "same copy twice",
            vec![],
            vec![("sub", "/sub"), ("sub", "/sub"), ("foo.go", "/d/foo.go"), ("foo.go", "/d/foo.go")],
            Ok(vec![File("sub/dir1/dir2/foo", "foo-contents"), File("d/foo.go", "foo-contents")]),
        ),
        case(
            "directory copies its contents",
            vec![],
            vec![("sub/dir1", "/subdest6")],
            Ok(vec![File("subdest6/dir2/foo", "foo-contents"), Absent("subdest6/dir1")]),
        ),
        case(
            "directory with a trailing slash",
            vec![],
            vec![("sub/dir1/", "/subdest4")],
            Ok(vec![File("subdest4/dir2/foo", "foo-contents")]),
        ),
        case(
            "directory with /.",
            vec![],
            vec![("sub/dir1/.", "/subdest5")],
            Ok(vec![File("subdest5/dir2/foo", "foo-contents")]),
        ),
        case(
            "directory contents merge into an existing directory",
            vec![P::File("exist/keep", "kept")],
            vec![("sub", "/exist")],
            Ok(vec![File("exist/keep", "kept"), File("exist/dir1/dir2/foo", "foo-contents")]),
        ),
        case(
            "wildcard into dir/",
            vec![],
            vec![("*.go", "/gofiles/")],
            Ok(vec![
                File("gofiles/foo.go", "foo-contents"),
                File("gofiles/bar.go", "bar-contents"),
            ]),
        ),
        case(
            "wildcard with one match to a file name",
            vec![],
            vec![("f*.go", "/foo2.go")],
            Ok(vec![File("foo2.go", "foo-contents")]),
        ),
        case(
            "wildcard matching a directory copies its contents",
            vec![],
            vec![("sub/*", "/subdest/")],
            Ok(vec![File("subdest/dir2/foo", "foo-contents"), Absent("subdest/dir1")]),
        ),
        case(
            "wildcard in a middle element",
            vec![],
            vec![("sub/*/dir2/foo", "/subdest2/")],
            Ok(vec![File("subdest2/foo", "foo-contents")]),
        ),
        case(
            "wildcard in a middle element to a file name",
            vec![],
            vec![("sub/*/dir2/foo", "/subdest3/bar")],
            Ok(vec![File("subdest3/bar", "foo-contents")]),
        ),
        case(
            "the whole context",
            vec![],
            vec![(".", "/all/")],
            Ok(vec![File("all/foo.go", "foo-contents"), File("all/sub/dir1/dir2/foo", "foo-contents")]),
        ),
        case(
            "wildcard matching nothing is allowed by the frontend",
            vec![],
            vec![("foo.go", "/"), ("nomatch*", "/")],
            Ok(vec![File("foo.go", "foo-contents")]),
        ),
        with(
            case(
                "wildcard matching nothing, not allowed",
                vec![],
                vec![("nomatch*", "/nm/")],
                Err("/nomatch* not found"),
            ),
            |r| r.allow_empty_wildcard = false,
        ),
        case(
            "several wildcard matches need a directory destination",
            vec![],
            vec![("*.go", "/single-dest")],
            Err("When using COPY with more than one source file, the destination must be a directory and end with a /"),
        ),
        case(
            "several wildcard matches into an existing directory",
            vec![P::Dir("exist")],
            vec![("*.go", "/exist")],
            Ok(vec![File("exist/foo.go", "foo-contents"), File("exist/bar.go", "bar-contents")]),
        ),
        with(
            case(
                "one file among several sources to a non-directory",
                vec![],
                vec![("foo.go", "/x")],
                Err("When using COPY with more than one source file, the destination must be a directory and end with a /"),
            ),
            |r| r.several_sources = true,
        ),
        with(
            case(
                "several directory sources merge",
                vec![],
                vec![("sub", "/m"), ("sub/dir1", "/m")],
                Ok(vec![File("m/dir1/dir2/foo", "foo-contents"), File("m/dir2/foo", "foo-contents")]),
            ),
            |r| r.several_sources = true,
        ),
        case(
            "missing source",
            vec![],
            vec![("nope", "/x")],
            Err("\"/nope\": not found"),
        ),
        with(
            case(
                "missing source without wildcard support",
                vec![],
                vec![("nope", "/x")],
                Err("\"/nope\": not found"),
            ),
            |r| r.allow_wildcard = false,
        ),
        case(
            "directory onto an existing file fails",
            vec![P::File("clash", "f")],
            vec![("sub", "/clash")],
            Err("cannot copy to non-directory: /clash"),
        ),
        case(
            "file onto an existing directory inside the destination fails",
            vec![P::Dir("out/single/x")],
            vec![("single", "/out/")],
            Err("cannot replace to directory /out/single with file"),
        ),
        with(
            case(
                "always replace: file over a directory",
                vec![P::File("out/single/x", "x")],
                vec![("single", "/out/")],
                Ok(vec![File("out/single", "single-contents")]),
            ),
            |r| r.always_replace_existing_dest = true,
        ),
        with(
            case(
                "always replace: directory over a file",
                vec![P::File("clash", "f")],
                vec![("sub", "/clash")],
                Ok(vec![File("clash/dir1/dir2/foo", "foo-contents")]),
            ),
            |r| r.always_replace_existing_dest = true,
        ),
        case(
            "destination ending in /.",
            vec![],
            vec![("foo.go", "/dot/.")],
            Ok(vec![File("dot/foo.go", "foo-contents")]),
        ),
        case(
            "destination is the root",
            vec![],
            vec![("single", "/")],
            Ok(vec![File("single", "single-contents")]),
        ),
        with(
            case(
                "directory itself into an existing directory (LLB default)",
                vec![P::Dir("exist")],
                vec![("sub/dir1", "/exist")],
                Ok(vec![File("exist/dir1/dir2/foo", "foo-contents")]),
            ),
            |r| r.dir_copy_contents = false,
        ),
        with(
            case(
                "directory itself to a missing path (LLB default)",
                vec![],
                vec![("sub/dir1", "/new")],
                Ok(vec![File("new/dir2/foo", "foo-contents")]),
            ),
            |r| r.dir_copy_contents = false,
        ),
        with(
            case(
                "no destination creation and a missing parent",
                vec![],
                vec![("foo.go", "/no/such/x")],
                Err("failed to stat /no/such/x"),
            ),
            |r| r.create_dest_path = false,
        ),
        with(
            case(
                "no destination creation and an existing parent",
                vec![],
                vec![("foo.go", "/x")],
                Ok(vec![File("x", "foo-contents")]),
            ),
            |r| r.create_dest_path = false,
        ),
    ]
}

#[test]
fn docker_copy_table() {
    let mut failures = Vec::new();
    for c in cases() {
        let fx = Fx::new();
        source_tree(&fx);
        for p in &c.pre {
            match *p {
                Pre::File(rel, content) => put(&fx.dest, rel, content, 0o644),
                Pre::Dir(rel) => put_dir(&fx.dest, rel, 0o755),
            }
        }
        let mut result = Ok(());
        for (src, dest) in &c.copies {
            let mut req = CopyRequest::dockerfile(*src, *dest);
            (c.tweak)(&mut req);
            result = fx.copy(&req);
            if result.is_err() {
                break;
            }
        }
        match (&c.want, result) {
            (Ok(wants), Ok(())) => {
                for w in wants {
                    let ok = match *w {
                        Want::File(rel, content) => {
                            fs::symlink_metadata(fx.dest.join(rel)).is_ok_and(|m| m.is_file())
                                && read(&fx.dest, rel) == content
                        }
                        Want::Dir(rel) => {
                            fs::symlink_metadata(fx.dest.join(rel)).is_ok_and(|m| m.is_dir())
                        }
                        Want::Absent(rel) => !exists(&fx.dest, rel),
                    };
                    if !ok {
                        failures.push(format!(
                            "{}: {w:?} not met; tree {:?}",
                            c.name,
                            tree(&fx.dest)
                        ));
                    }
                }
            }
            (Err(msg), Err(e)) => {
                if e.to_string() != *msg {
                    failures.push(format!("{}: error `{e}`, want `{msg}`", c.name));
                }
            }
            (Ok(_), Err(e)) => failures.push(format!("{}: unexpected error `{e}`", c.name)),
            (Err(msg), Ok(())) => failures.push(format!(
                "{}: succeeded, want error `{msg}`; tree {:?}",
                c.name,
                tree(&fx.dest)
            )),
        }
        assert_no_temp_files(&fx.dest);
        fx.assert_outside_untouched();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refused_multi_source_copy_writes_nothing() {
    let fx = Fx::new();
    source_tree(&fx);
    let err = fx
        .copy(&CopyRequest::dockerfile("*.go", "/deep/single"))
        .unwrap_err();
    assert!(
        matches!(err, crate::fileop::Error::CheckSeveralSources),
        "{err}"
    );
    assert!(tree(&fx.dest).is_empty(), "{:?}", tree(&fx.dest));
}
