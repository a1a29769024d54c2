//! Tests of the local context against real directories and a real cache
//! database: what the walk sends and what the checksum reacts to.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{EntryKind, LocalContext, SourceError};
use crate::cache::{CacheDb, Digest};
use crate::source::dockerignore::Dockerignore;

struct Fixture {
    _dir: tempfile::TempDir,
    ctx: PathBuf,
    db: CacheDb,
}

impl Fixture {
    /// A context holding `files` (a trailing `/` makes a directory) and a
    /// cache database beside it.
    fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        for (path, content) in files {
            write(&ctx.join(path), content);
        }
        let db = CacheDb::open(&dir.path().join("cache")).unwrap();
        Fixture { _dir: dir, ctx, db }
    }

    fn open(&self, dockerignore: &str) -> LocalContext {
        let ignore =
            Dockerignore::parse(Path::new(".dockerignore"), dockerignore.as_bytes()).unwrap();
        LocalContext::open(&self.ctx, ignore).unwrap()
    }

    /// A context whose digests are remembered however fresh the files are,
    /// so that counters are exact in tests that just wrote them.
    fn open_eager(&self) -> LocalContext {
        self.open("").with_settle_window(Duration::ZERO)
    }

    fn paths(&self, dockerignore: &str, include: &[&str], exclude: &[&str]) -> Vec<String> {
        self.paths_following(dockerignore, include, exclude, &[])
    }

    fn paths_following(
        &self,
        dockerignore: &str,
        include: &[&str],
        exclude: &[&str],
        follow: &[&str],
    ) -> Vec<String> {
        self.open(dockerignore)
            .walk(&owned(include), &owned(exclude), &owned(follow))
            .unwrap()
            .iter()
            .map(|e| e.path().to_str().unwrap().to_owned())
            .collect()
    }

    /// The digest of what `include` selects, from a fresh context.
    fn digest(&self, include: &[&str]) -> Digest {
        let ctx = self.open_eager();
        let entries = ctx.walk(&owned(include), &[], &[]).unwrap();
        ctx.checksum(&entries, &self.db).unwrap()
    }

    /// Files hashed (not served from the cache) by one checksum of the
    /// whole context from a fresh context.
    fn hashed(&self) -> u64 {
        let ctx = self.open_eager();
        let entries = ctx.walk(&[], &[], &[]).unwrap();
        ctx.checksum(&entries, &self.db).unwrap();
        ctx.stats().hashed_files
    }
}

fn write(path: &Path, content: &str) {
    let text = path.to_str().unwrap();
    if let Some(dir) = text.strip_suffix('/') {
        std::fs::create_dir_all(dir).unwrap();
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const TREE: &[(&str, &str)] = &[
    ("Dockerfile", "FROM scratch\n"),
    ("README.md", "readme"),
    ("src/main.rs", "fn main() {}"),
    ("src/lib.rs", "pub mod x;"),
    ("src/notes.txt", "notes"),
    ("src/deep/x.rs", "x"),
    ("target/debug/bk", "binary"),
    ("target/keep/me", "kept"),
    ("logs/a.log", "a"),
    ("empty/", ""),
];

#[test]
fn walk_lists_everything_sorted_with_parents_first() {
    let fx = Fixture::new(TREE);
    assert_eq!(
        fx.paths("", &[], &[]),
        [
            "Dockerfile",
            "README.md",
            "empty",
            "logs",
            "logs/a.log",
            "src",
            "src/deep",
            "src/deep/x.rs",
            "src/lib.rs",
            "src/main.rs",
            "src/notes.txt",
            "target",
            "target/debug",
            "target/debug/bk",
            "target/keep",
            "target/keep/me",
        ]
    );
}

#[test]
fn dockerignore_excludes_files_and_whole_directories() {
    let fx = Fixture::new(TREE);
    let paths = fx.paths("target\n*.md\nsrc/**/*.rs\n", &[], &[]);
    assert_eq!(
        paths,
        [
            "Dockerfile",
            "empty",
            "logs",
            "logs/a.log",
            "src",
            "src/deep",
            "src/notes.txt"
        ]
    );
}

#[test]
fn dockerignore_exception_reincludes_under_an_excluded_directory() {
    let fx = Fixture::new(TREE);
    // `target` is excluded, but walked for the exception; it is sent only
    // because something inside it is, and just before it.
    let paths = fx.paths("target\n!target/keep\n", &[], &[]);
    assert_eq!(
        &paths[paths.len() - 3..],
        ["target", "target/keep", "target/keep/me"]
    );
    assert!(!paths.iter().any(|p| p.starts_with("target/debug")));

    // Everything excluded except a file deep down.
    let paths = fx.paths("*\n!src/deep/x.rs\n", &[], &[]);
    assert_eq!(paths, ["src", "src/deep", "src/deep/x.rs"]);

    // A wildcard exception forces the walk into every excluded directory.
    let paths = fx.paths("*\n!**/*.rs\n", &[], &[]);
    assert_eq!(
        paths,
        [
            "src",
            "src/deep",
            "src/deep/x.rs",
            "src/lib.rs",
            "src/main.rs"
        ]
    );
}

#[test]
fn include_patterns_select_only_matching_files_and_their_parents() {
    let fx = Fixture::new(TREE);
    assert_eq!(
        fx.paths("", &["src/*.rs"], &[]),
        ["src", "src/lib.rs", "src/main.rs"]
    );
    // A directory includes all of it; a trailing slash is cleaned away.
    assert_eq!(
        fx.paths("", &["target/"], &[]),
        [
            "target",
            "target/debug",
            "target/debug/bk",
            "target/keep",
            "target/keep/me"
        ]
    );
    assert_eq!(
        fx.paths("", &["Dockerfile", "src/deep/x.rs"], &[]),
        ["Dockerfile", "src", "src/deep", "src/deep/x.rs"]
    );
    // Wildcards before the last component: every directory is walked,
    // and sent only for what matches inside it.
    assert_eq!(
        fx.paths("", &["**/*.rs"], &[]),
        [
            "src",
            "src/deep",
            "src/deep/x.rs",
            "src/lib.rs",
            "src/main.rs"
        ]
    );
    assert!(fx.paths("", &["nothing-here"], &[]).is_empty());
    // Includes and .dockerignore both apply.
    assert_eq!(
        fx.paths("src/main.rs\n", &["src/*.rs"], &[]),
        ["src", "src/lib.rs"]
    );
}

#[test]
fn exclude_patterns_apply_on_top_of_dockerignore() {
    let fx = Fixture::new(TREE);
    assert_eq!(
        fx.paths("", &["src"], &["src/*.txt", "src/deep"]),
        ["src", "src/lib.rs", "src/main.rs"]
    );
    assert_eq!(
        fx.paths("", &["src"], &["src/*", "!src/main.rs"]),
        ["src", "src/main.rs"]
    );
    // An --exclude exception cannot bring back what .dockerignore left out:
    // the two lists filter separately.
    assert_eq!(
        fx.paths("src/main.rs\n", &["src"], &["src/deep", "!src/main.rs"]),
        ["src", "src/lib.rs", "src/notes.txt"]
    );
}

#[test]
fn invalid_patterns_are_named() {
    let fx = Fixture::new(TREE);
    let ctx = fx.open("");
    let err = ctx.walk(&owned(&["ok", "src/[a"]), &[], &[]).unwrap_err();
    assert!(
        matches!(&err, SourceError::IncludePattern { pattern, .. } if pattern == "src/[a"),
        "{err:?}"
    );
    let err = ctx.walk(&[], &owned(&["!"]), &[]).unwrap_err();
    assert!(
        matches!(&err, SourceError::ExcludePattern { pattern, .. } if pattern == "!"),
        "{err:?}"
    );
    // Blank patterns are skipped, as Docker skips them; a list of only
    // blank include patterns is still an include filter, matching nothing.
    assert!(ctx.walk(&owned(&["  "]), &[], &[]).unwrap().is_empty());
    assert_eq!(ctx.walk(&[], &owned(&[" ", "src"]), &[]).unwrap().len(), 10);
}

#[test]
fn follow_paths_bring_symlink_targets_into_the_walk() {
    let fx = Fixture::new(TREE);
    symlink("src/deep", fx.ctx.join("link")).unwrap();
    assert_eq!(
        fx.paths_following("", &[], &[], &["link/x.rs", "Dockerfile"]),
        ["Dockerfile", "link", "src", "src/deep", "src/deep/x.rs"]
    );
    // `.` means the whole context.
    assert_eq!(fx.paths_following("", &[], &[], &["."]).len(), 17);
}

#[test]
fn entries_carry_lstat_metadata_and_never_follow_symlinks() {
    let fx = Fixture::new(&[("f", "12345"), ("d/", "")]);
    set_mode(&fx.ctx.join("f"), 0o4751);
    symlink("/etc/passwd", fx.ctx.join("passwd")).unwrap();
    symlink("/", fx.ctx.join("rootlink")).unwrap();
    let ctx = fx.open("");
    let entries = ctx.walk(&[], &[], &[]).unwrap();
    let kinds: Vec<(&str, EntryKind)> = entries
        .iter()
        .map(|e| (e.path().to_str().unwrap(), e.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("d", EntryKind::Dir),
            ("f", EntryKind::File),
            ("passwd", EntryKind::Symlink),
            ("rootlink", EntryKind::Symlink)
        ]
    );
    let f = &entries[1];
    assert_eq!((f.mode(), f.size()), (0o4751, 5));
    let meta = std::fs::symlink_metadata(fx.ctx.join("f")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((f.uid(), f.gid()), (meta.uid(), meta.gid()));
    assert_eq!(
        f.mtime_ns(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
    );
    assert_eq!(entries[2].link_target(), Some(Path::new("/etc/passwd")));
    assert_eq!(entries[0].link_target(), None);

    // The link is hashed as a link: only `f` is read.
    ctx.checksum(&entries, &fx.db).unwrap();
    assert_eq!(ctx.stats().hashed_files, 1);
}

#[test]
fn symlink_digest_follows_the_link_not_the_target() {
    let fx = Fixture::new(&[("a", "x")]);
    let outside = fx._dir.path().join("outside");
    write(&outside, "one");
    symlink(&outside, fx.ctx.join("link")).unwrap();
    let before = fx.digest(&[]);
    write(&outside, "two, longer");
    assert_eq!(fx.digest(&[]), before, "target contents must not count");
    std::fs::remove_file(fx.ctx.join("link")).unwrap();
    symlink(fx._dir.path().join("elsewhere"), fx.ctx.join("link")).unwrap();
    assert_ne!(fx.digest(&[]), before, "the target path counts");
}

#[test]
fn checksum_is_stable_and_ignores_mtime_and_unselected_files() {
    let fx = Fixture::new(TREE);
    let selected = ["src/*.rs"];
    let first = fx.digest(&selected);
    assert_eq!(fx.digest(&selected), first);
    let ctx = fx.open_eager();
    let mut entries = ctx.walk(&owned(&selected), &[], &[]).unwrap();
    entries.reverse();
    entries.extend(entries.clone());
    assert_eq!(
        ctx.checksum(&entries, &fx.db).unwrap(),
        first,
        "order and duplicates"
    );

    // `touch`: a new mtime on a selected file and its directory.
    let past = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_file_mtime(fx.ctx.join("src/main.rs"), past).unwrap();
    filetime::set_file_mtime(fx.ctx.join("src"), past).unwrap();
    assert_eq!(fx.digest(&selected), first);

    // Unselected files, in and out of the selected directory.
    write(&fx.ctx.join("src/notes.txt"), "edited");
    write(&fx.ctx.join("README.md"), "edited");
    write(&fx.ctx.join("src/new.txt"), "new");
    assert_eq!(fx.digest(&selected), first);

    // The whole context does see those edits.
    assert_ne!(fx.digest(&[]), Fixture::new(TREE).digest(&[]));
}

#[test]
fn checksum_changes_with_content_mode_and_name() {
    let fx = Fixture::new(TREE);
    let selected = ["src/*.rs"];
    let base = fx.digest(&selected);

    write(&fx.ctx.join("src/main.rs"), "fn main() { }");
    let edited = fx.digest(&selected);
    assert_ne!(edited, base);
    write(&fx.ctx.join("src/main.rs"), "fn main() {}");
    assert_eq!(fx.digest(&selected), base, "same content, same digest");

    set_mode(&fx.ctx.join("src/main.rs"), 0o755);
    assert_ne!(fx.digest(&selected), base);
    set_mode(&fx.ctx.join("src/main.rs"), 0o644);
    assert_eq!(fx.digest(&selected), base);

    // A selected directory's mode counts too.
    set_mode(&fx.ctx.join("src"), 0o700);
    assert_ne!(fx.digest(&selected), base);
    set_mode(&fx.ctx.join("src"), 0o755);
    assert_eq!(fx.digest(&selected), base);

    std::fs::rename(fx.ctx.join("src/lib.rs"), fx.ctx.join("src/lib2.rs")).unwrap();
    assert_ne!(fx.digest(&selected), base);
    std::fs::rename(fx.ctx.join("src/lib2.rs"), fx.ctx.join("src/lib.rs")).unwrap();
    assert_eq!(fx.digest(&selected), base);

    // Moving content between two files is not the same tree.
    write(&fx.ctx.join("src/lib.rs"), "fn main() {}");
    write(&fx.ctx.join("src/main.rs"), "pub mod x;");
    assert_ne!(fx.digest(&selected), base);
}

#[test]
fn checksum_does_not_depend_on_ownership() {
    let fx = Fixture::new(&[("f", "x")]);
    let before = fx.digest(&[]);
    match std::os::unix::fs::chown(fx.ctx.join("f"), Some(12345), Some(54321)) {
        Ok(()) => {}
        // Only root can give files away; there is nothing to test then.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return,
        Err(e) => panic!("{e}"),
    }
    let ctx = fx.open_eager();
    let entries = ctx.walk(&[], &[], &[]).unwrap();
    assert_eq!((entries[0].uid(), entries[0].gid()), (12345, 54321));
    assert_eq!(ctx.checksum(&entries, &fx.db).unwrap(), before);
}

#[test]
fn no_op_rebuild_hashes_nothing_and_one_edit_hashes_one_file() {
    let fx = Fixture::new(TREE);
    assert_eq!(fx.hashed(), 9);
    let ctx = fx.open_eager();
    let entries = ctx.walk(&[], &[], &[]).unwrap();
    ctx.checksum(&entries, &fx.db).unwrap();
    assert_eq!(
        ctx.stats(),
        super::ChecksumStats {
            hashed_files: 0,
            cache_hits: 9
        }
    );

    write(&fx.ctx.join("src/lib.rs"), "pub mod y;");
    assert_eq!(fx.hashed(), 1);
    assert_eq!(fx.hashed(), 0);

    // Same size, same content, new mtime (`touch`): re-read once, then
    // remembered again.
    filetime::set_file_mtime(
        fx.ctx.join("README.md"),
        filetime::FileTime::from_unix_time(1_500_000_000, 0),
    )
    .unwrap();
    assert_eq!(fx.hashed(), 1);
    assert_eq!(fx.hashed(), 0);

    // A selection only reads what it selects.
    write(&fx.ctx.join("src/main.rs"), "fn main() { 1 }");
    write(&fx.ctx.join("README.md"), "changed");
    let ctx = fx.open_eager();
    let entries = ctx.walk(&owned(&["src/*.rs"]), &[], &[]).unwrap();
    ctx.checksum(&entries, &fx.db).unwrap();
    assert_eq!((ctx.stats().hashed_files, ctx.stats().cache_hits), (1, 1));
}

#[test]
fn recently_changed_files_are_not_remembered() {
    let fx = Fixture::new(&[("old", "a"), ("new", "b")]);
    // A modification time in the future is as unsettled as one just now,
    // and unlike "just now" it does not depend on how fast the test runs.
    let future = SystemTime::now() + Duration::from_secs(3600);
    filetime::set_file_mtime(fx.ctx.join("new"), future.into()).unwrap();
    let run = || {
        let ctx = fx.open(""); // the default settle window
        let entries = ctx.walk(&[], &[], &[]).unwrap();
        let digest = ctx.checksum(&entries, &fx.db).unwrap();
        (digest, ctx.stats().hashed_files)
    };
    let (first, hashed) = run();
    assert_eq!(hashed, 2);
    let (second, hashed) = run();
    assert_eq!(second, first);
    assert!(hashed >= 1, "the unsettled file must be read again");
}

#[test]
fn a_file_changed_after_the_walk_is_an_error_not_a_mixed_digest() {
    let fx = Fixture::new(&[("f", "before")]);
    let ctx = fx.open_eager();
    let entries = ctx.walk(&[], &[], &[]).unwrap();
    write(&fx.ctx.join("f"), "after, longer");
    let err = ctx.checksum(&entries, &fx.db).unwrap_err();
    assert!(
        matches!(&err, SourceError::FileChanged { path } if path.ends_with("ctx/f")),
        "{err:?}"
    );

    std::fs::remove_file(fx.ctx.join("f")).unwrap();
    symlink("/etc/passwd", fx.ctx.join("f")).unwrap();
    let err = ctx.checksum(&entries, &fx.db).unwrap_err();
    assert!(matches!(err, SourceError::FileChanged { .. }), "{err:?}");
}

#[test]
fn open_rejects_what_is_not_a_directory() {
    let fx = Fixture::new(&[("f", "x")]);
    let err = LocalContext::open(&fx.ctx.join("f"), Dockerignore::none()).unwrap_err();
    assert!(
        matches!(err, SourceError::ContextNotDirectory { .. }),
        "{err:?}"
    );
    let missing = fx.ctx.join("missing");
    let err = LocalContext::open(&missing, Dockerignore::none()).unwrap_err();
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains(missing.to_str().unwrap()), "{cause}");
    // A symlinked context resolves to its target.
    symlink(&fx.ctx, fx._dir.path().join("alias")).unwrap();
    let ctx = LocalContext::open(&fx._dir.path().join("alias"), Dockerignore::none()).unwrap();
    assert_eq!(ctx.root(), fx.ctx.canonicalize().unwrap());
}
