//! The cost of one `RUN` step's root file system per snapshotter backend:
//! `prepare_mounted` over a parent of 10,000 files (100 directories of
//! 100), append to one file, `commit`. `cargo bench --bench snapshot_run`
//! prints the median and best of several rounds for prepare, commit and
//! both, and the diff check, with `cp -a --reflink=auto` of the same
//! tree as the yardstick for a full copy; under `cargo test` it runs once over a small
//! tree as a smoke check. Backends this user cannot mount are skipped
//! with the reason. Scratch space comes from `$TMPDIR` (or
//! `BK_BENCH_DIR`): the file system there decides whether native copies
//! reflink.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bk::snapshot::{diff, Backend, ChangeKind, Selection, Store};

fn fmt(d: Duration) -> String {
    format!("{:>8.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (dirs, files, rounds) = if benching { (100, 100, 7) } else { (4, 5, 1) };
    let base = std::env::var_os("BK_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::tempdir_in(&base).expect("scratch directory");

    // One parent tree shared by every backend's store would need one
    // store; each backend gets its own store with the same tree instead.
    println!(
        "parent: {} files in {dirs} directories; {rounds} rounds each",
        dirs * files
    );
    let mut cp_parent = None;
    for backend in [Backend::Overlay, Backend::FuseOverlay, Backend::Native] {
        let root = scratch.path().join(backend.name());
        let store = Store::open_with(&root, Selection::Only(backend)).expect("open the store");
        if store.backend() != backend {
            println!(
                "{:<15} skipped: {}",
                backend.name(),
                store.backend_notes().join("; ")
            );
            continue;
        }
        let parent = {
            let active = store.prepare(None).expect("prepare the parent");
            for d in 0..dirs {
                let sub = active.path().join(format!("d{d:03}"));
                std::fs::create_dir(&sub).expect("mkdir");
                for f in 0..files {
                    std::fs::write(sub.join(format!("f{f:03}")), b"a small file\n").expect("write");
                }
            }
            active.commit().expect("commit the parent")
        };
        cp_parent = Some(store.path(&parent));
        let mut prepare = Vec::new();
        let mut commit = Vec::new();
        let mut total = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            let mounted = match store.prepare_mounted(Some(&parent)) {
                Ok(m) => m,
                Err(e) => {
                    println!("{:<15} failed: {e}", backend.name());
                    break;
                }
            };
            let prepared = start.elapsed();
            let target = mounted.root().join("d050").join("f050");
            let target = if target.exists() {
                target
            } else {
                mounted.root().join("d000/f000")
            };
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&target)
                    .expect("open a file of the parent");
                f.write_all(b"changed by RUN\n").expect("append");
            }
            let before_commit = Instant::now();
            let child = mounted.commit().expect("commit");
            commit.push(before_commit.elapsed());
            total.push(start.elapsed());
            prepare.push(prepared);
            let changes = diff(Some(&store.path(&parent)), &store.path(&child)).expect("diff");
            let modified_files = changes
                .iter()
                .filter(|c| c.kind == ChangeKind::Modified && c.path.components().count() == 2)
                .count();
            assert_eq!(modified_files, 1, "{backend}: {changes:?}");
            store.remove(&child).expect("remove the child");
        }
        if total.is_empty() {
            continue;
        }
        for v in [&mut prepare, &mut commit, &mut total] {
            v.sort();
        }
        let n = total.len();
        println!(
            "{:<15} prepare {} | commit {} | total median {} best {}",
            backend.name(),
            fmt(prepare[n / 2]),
            fmt(commit[n / 2]),
            fmt(total[n / 2]),
            fmt(total[0]),
        );
    }
    if let Some(tree) = cp_parent {
        let mut times = Vec::new();
        for round in 0..rounds {
            let dest = scratch.path().join(format!("cp-{round}"));
            let start = Instant::now();
            let status = std::process::Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(&tree)
                .arg(&dest)
                .status()
                .expect("run cp");
            times.push(start.elapsed());
            assert!(status.success());
            std::fs::remove_dir_all(&dest).expect("remove the copy");
        }
        times.sort();
        println!(
            "{:<15} copy    {} (median) best {}",
            "cp -a",
            fmt(times[times.len() / 2]),
            fmt(times[0])
        );
    }
}
