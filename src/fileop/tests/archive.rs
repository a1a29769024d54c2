//! ADD's local-archive extraction: every compression moby detects, the
//! entry types, ownership, what is not an archive, and hostile archives
//! whose names and links try to leave the extraction directory.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::fileop::Owner;

const MTIME: u64 = 1_234_567_890;

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(1234);
    h.set_gid(5678);
    h
}

/// Writes a raw name (or link name) into a GNU header, bypassing the tar
/// crate's refusal of `..` so hostile archives can be built.
fn raw_names(h: &mut tar::Header, name: &[u8], link: &[u8]) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name = [0; 100];
    gnu.name[..name.len()].copy_from_slice(name);
    gnu.linkname = [0; 100];
    gnu.linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
}

fn entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    name: &str,
    link: &str,
    data: &[u8],
    mode: u32,
) {
    let mut h = header(kind, mode, data.len() as u64);
    raw_names(&mut h, name.as_bytes(), link.as_bytes());
    b.append(&h, data).unwrap();
}

/// pkg/ with a file, a symlink and a hard link, plus a top-level file.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, tar::EntryType::Directory, "pkg/", "", b"", 0o750);
    entry(
        &mut b,
        tar::EntryType::Regular,
        "pkg/a.txt",
        "",
        b"alpha",
        0o640,
    );
    entry(
        &mut b,
        tar::EntryType::Symlink,
        "pkg/l",
        "a.txt",
        b"",
        0o777,
    );
    entry(
        &mut b,
        tar::EntryType::Link,
        "pkg/h",
        "pkg/a.txt",
        b"",
        0o640,
    );
    entry(
        &mut b,
        tar::EntryType::Regular,
        "implied/deep/z",
        "",
        b"zed",
        0o600,
    );
    entry(
        &mut b,
        tar::EntryType::Regular,
        "top.txt",
        "",
        b"top",
        0o4755,
    );
    b.into_inner().unwrap()
}

fn compress(kind: &str, data: &[u8]) -> Vec<u8> {
    match kind {
        "tar" => data.to_vec(),
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::stream::encode_all(data, 3).unwrap(),
        other => panic!("{other}"),
    }
}

fn add(src: &str, dest: &str) -> CopyRequest {
    CopyRequest {
        attempt_unpack: true,
        ..CopyRequest::dockerfile(src, dest)
    }
}

#[test]
fn every_compression_is_extracted() {
    for kind in ["tar", "gz", "bz2", "xz", "zst"] {
        let fx = Fx::new();
        fs::write(
            fx.src.join(format!("a.{kind}")),
            compress(kind, &sample_tar()),
        )
        .unwrap();
        // No trailing slash: an archive always extracts into a directory.
        fx.copy(&add(&format!("a.{kind}"), "/x"))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let d = &fx.dest;
        assert_eq!(read(d, "x/pkg/a.txt"), "alpha", "{kind}");
        assert_eq!(mode(d, "x/pkg/a.txt"), 0o640, "{kind}");
        assert_eq!(mode(d, "x/pkg"), 0o750, "{kind}");
        assert_eq!(mode(d, "x/top.txt"), 0o4755, "{kind}");
        assert_eq!(mode(d, "x/implied"), 0o755, "{kind}");
        assert_eq!(link_target(d, "x/pkg/l"), "a.txt", "{kind}");
        let ino = |p: &str| fs::symlink_metadata(d.join(p)).unwrap().ino();
        assert_eq!(ino("x/pkg/a.txt"), ino("x/pkg/h"), "{kind}");
        for p in ["x/pkg/a.txt", "x/pkg", "x/top.txt"] {
            assert_eq!(
                fs::symlink_metadata(d.join(p)).unwrap().mtime(),
                MTIME as i64,
                "{kind} {p}"
            );
        }
        if is_root() {
            assert_eq!(owner(d, "x/pkg/a.txt"), (1234, 5678));
            assert_eq!(owner(d, "x/implied"), (0, 0));
        }
        assert!(
            !exists(d, "x/a.tar"),
            "{kind}: archive copied instead of extracted"
        );
        assert_no_temp_files(d);
    }
}

#[test]
fn unpacking_is_only_for_archives_and_only_when_asked() {
    let fx = Fx::new();
    fs::write(fx.src.join("a.tar.gz"), compress("gz", &sample_tar())).unwrap();
    put(&fx.src, "fake.tar.gz", "not an archive at all", 0o644);
    put(&fx.src, "empty.tar", "", 0o644);
    fs::write(fx.src.join("zeros.tar"), vec![0u8; 1024]).unwrap();
    fx.copy(&add("fake.tar.gz", "/f/")).unwrap();
    fx.copy(&add("empty.tar", "/f/")).unwrap();
    fx.copy(&add("zeros.tar", "/f/")).unwrap();
    fx.copy(&CopyRequest::dockerfile("a.tar.gz", "/plain/"))
        .unwrap();
    let d = &fx.dest;
    assert_eq!(read(d, "f/fake.tar.gz"), "not an archive at all");
    assert!(exists(d, "f/empty.tar"));
    assert!(exists(d, "f/zeros.tar"));
    assert!(exists(d, "plain/a.tar.gz"));
    assert!(!exists(d, "plain/pkg"));
    // An archive is read as one file, whatever is inside it.
    let sel = crate::fileop::selected_paths(&add("a.tar.gz", "/x/"), &fx.src).unwrap();
    assert_eq!(sel, [PathBuf::from("a.tar.gz")]);
}

#[test]
fn wildcard_adds_extract_each_archive() {
    let fx = Fx::new();
    fs::write(fx.src.join("one.tar"), sample_tar()).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    entry(
        &mut b,
        tar::EntryType::Regular,
        "two.txt",
        "",
        b"two",
        0o644,
    );
    fs::write(
        fx.src.join("two.tar"),
        compress("xz", &b.into_inner().unwrap()),
    )
    .unwrap();
    fx.copy(&add("*.tar", "/w/")).unwrap();
    assert_eq!(read(&fx.dest, "w/pkg/a.txt"), "alpha");
    assert_eq!(read(&fx.dest, "w/two.txt"), "two");
}

#[test]
fn chown_applies_to_every_extracted_entry() {
    if !is_root() {
        eprintln!("skipping chown_applies_to_every_extracted_entry: needs root");
        return;
    }
    let fx = Fx::new();
    fs::write(fx.src.join("a.tar"), sample_tar()).unwrap();
    fx.copy(&CopyRequest {
        chown: Some(Owner::parse("300:400")),
        ..add("a.tar", "/new/x/")
    })
    .unwrap();
    for p in [
        "new",
        "new/x",
        "new/x/pkg",
        "new/x/pkg/a.txt",
        "new/x/pkg/l",
        "new/x/top.txt",
    ] {
        assert_eq!(owner(&fx.dest, p), (300, 400), "{p}");
    }
    // Implied directories belong to root, as in moby.
    assert_eq!(owner(&fx.dest, "new/x/implied"), (0, 0));
}

#[test]
fn hostile_archive_entries_stay_inside_the_extraction_directory() {
    let fx = Fx::new();
    let outside = fx.outside.to_string_lossy().into_owned();
    let mut b = tar::Builder::new(Vec::new());
    entry(
        &mut b,
        tar::EntryType::Regular,
        "../../../evil",
        "",
        b"evil",
        0o644,
    );
    entry(&mut b, tar::EntryType::Regular, "/abs/x", "", b"abs", 0o644);
    entry(&mut b, tar::EntryType::Symlink, "toroot", "/", b"", 0o777);
    entry(
        &mut b,
        tar::EntryType::Regular,
        "toroot/via-root",
        "",
        b"r",
        0o644,
    );
    entry(
        &mut b,
        tar::EntryType::Symlink,
        "up",
        "../../../../..",
        b"",
        0o777,
    );
    entry(
        &mut b,
        tar::EntryType::Regular,
        "up/via-up",
        "",
        b"u",
        0o644,
    );
    entry(
        &mut b,
        tar::EntryType::Symlink,
        "outlink",
        &outside,
        b"",
        0o777,
    );
    entry(
        &mut b,
        tar::EntryType::Regular,
        "outlink/via-abs",
        "",
        b"o",
        0o644,
    );
    entry(&mut b, tar::EntryType::Directory, "..", "", b"", 0o755);
    fs::write(fx.src.join("evil.tar"), b.into_inner().unwrap()).unwrap();

    fx.copy(&add("evil.tar", "/x/")).unwrap();
    let d = &fx.dest;
    assert_eq!(read(d, "x/evil"), "evil");
    assert_eq!(read(d, "x/abs/x"), "abs");
    assert_eq!(read(d, "x/via-root"), "r");
    assert_eq!(read(d, "x/via-up"), "u");
    assert_eq!(
        read(d, &format!("x/{}/via-abs", outside.trim_start_matches('/'))),
        "o"
    );
    // The links themselves are kept as written.
    assert_eq!(link_target(d, "x/toroot"), "/");
    assert!(!exists(d, "evil"));
    fx.assert_outside_untouched();
}

#[test]
fn hostile_hard_links_cannot_reach_outside() {
    let fx = Fx::new();
    let secret = fx.secret.to_string_lossy().into_owned();
    for link in ["../../../secret", secret.as_str()] {
        let mut b = tar::Builder::new(Vec::new());
        entry(&mut b, tar::EntryType::Link, "hl", link, b"", 0o644);
        fs::write(fx.src.join("hl.tar"), b.into_inner().unwrap()).unwrap();
        let err = fx.copy(&add("hl.tar", "/x/")).unwrap_err();
        let chain = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(chain.contains("does not exist"), "{chain}");
        assert_eq!(fs::metadata(&fx.secret).unwrap().nlink(), 1);
        fx.assert_outside_untouched();
    }
}

#[test]
fn a_hard_link_to_a_pre_existing_file_copies_it() {
    let fx = Fx::new();
    let other = tempfile::tempdir().unwrap();
    put(other.path(), "shared", "from a lower layer", 0o644);
    put_dir(&fx.dest, "x", 0o755);
    fs::hard_link(other.path().join("shared"), fx.dest.join("x/pre")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, tar::EntryType::Link, "copy", "pre", b"", 0o600);
    fs::write(fx.src.join("l.tar"), b.into_inner().unwrap()).unwrap();
    fx.copy(&add("l.tar", "/x/")).unwrap();
    assert_eq!(read(&fx.dest, "x/copy"), "from a lower layer");
    assert_eq!(mode(&fx.dest, "x/copy"), 0o600);
    let shared = fs::metadata(other.path().join("shared")).unwrap();
    assert_eq!(shared.mode() & 0o7777, 0o644);
    assert_eq!(shared.nlink(), 2, "only the original two links");
}

#[test]
fn archive_replaces_existing_entries_by_type() {
    let fx = Fx::new();
    put(
        &fx.dest,
        "x/pkg/a.txt/inner",
        "a directory in the way",
        0o644,
    );
    put(&fx.dest, "x/top.txt", "old", 0o644);
    put(&fx.dest, "x/pkg/keep", "kept", 0o644);
    fs::write(fx.src.join("a.tar"), sample_tar()).unwrap();
    fx.copy(&add("a.tar", "/x/")).unwrap();
    assert_eq!(read(&fx.dest, "x/pkg/a.txt"), "alpha");
    assert_eq!(read(&fx.dest, "x/top.txt"), "top");
    assert_eq!(read(&fx.dest, "x/pkg/keep"), "kept");
}

#[test]
fn chmod_does_not_apply_to_extracted_archives() {
    // BuildKit's unpack path ignores --chmod: entries keep the archive's
    // modes and the extraction directory is created 0755.
    let fx = Fx::new();
    fs::write(fx.src.join("a.tar"), sample_tar()).unwrap();
    fx.copy(&CopyRequest {
        chmod: Some(crate::fileop::Chmod::Octal(0o700)),
        ..add("a.tar", "/made/x/")
    })
    .unwrap();
    assert_eq!(mode(&fx.dest, "made"), 0o755);
    assert_eq!(mode(&fx.dest, "made/x"), 0o755);
    assert_eq!(mode(&fx.dest, "made/x/pkg/a.txt"), 0o640);
}
