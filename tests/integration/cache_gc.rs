//! `bk du`, `bk cache prune` and automatic GC on real stores, and several
//! `bk build` processes sharing one store while some are `kill -9`ed.
//! Sizes are checked against `du(1)`, outputs against the files written.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{describe, Dir};

/// A context with a 300 kB file shared by every stage and a small one.
fn setup(dir: &Dir, name: &str, small: &str) {
    dir.create(&format!("{name}/small"), small);
    dir.create(&format!("{name}/big"), &"x".repeat(300_000));
    dir.create(
        &format!("{name}/Dockerfile"),
        "FROM scratch\nCOPY big /big\nCOPY small /small\n",
    );
}

/// Runs `bk` with the test's store and a config home of its own.
fn bk(dir: &Dir) -> crate::util::BkCommand {
    let mut cmd = dir.bk();
    cmd.env("XDG_CONFIG_HOME", dir.path().join("config"));
    cmd
}

fn build(dir: &Dir, ctx: &str, out: &str) -> String {
    let o = bk(dir)
        .args(["build", "--progress=plain", "-o", out, ctx])
        .output();
    assert!(o.status.success(), "{}", describe(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The record rows of `bk du` output (lines between the header and the
/// blank line before the totals).
fn rows(du: &str) -> Vec<&str> {
    du.lines()
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("Total:"))
        .collect()
}

/// A `Name:  value` total of `bk du`, in bytes (printed with four
/// significant digits).
fn total(du: &str, name: &str) -> f64 {
    let value = du
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in\n{du}"))
        .trim();
    let split = value.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (num, unit) = value.split_at(split);
    let mult = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => panic!("unit {unit}"),
    };
    num.parse::<f64>().unwrap() * mult
}

/// Allocated bytes under `paths` by `du(1)`, less the blocks of the
/// directories themselves.
fn disk_bytes(paths: &[PathBuf]) -> f64 {
    let mut sum = 0.0;
    for p in paths.iter().filter(|p| p.exists()) {
        let o = Command::new("du")
            .args(["-s", "--block-size=1"])
            .arg(p)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let n: f64 = text.split_whitespace().next().unwrap().parse().unwrap();
        let own = Command::new("stat")
            .args(["-c", "%b"])
            .arg(p)
            .output()
            .unwrap();
        let blocks: f64 = String::from_utf8_lossy(&own.stdout).trim().parse().unwrap();
        sum += n - blocks * 512.0;
    }
    sum
}

fn store_paths(dir: &Dir) -> Vec<PathBuf> {
    let root = dir.path().join(".bk-root");
    vec![root.join("snapshots"), root.join("content/blobs/sha256")]
}

fn assert_near(reported: f64, disk: f64) {
    // Four significant digits in the report, and nothing else differs.
    assert!(
        (reported - disk).abs() <= disk * 0.002 + 1.0,
        "du reports {reported} bytes, disk holds {disk}"
    );
}

#[test]
fn du_lists_records_by_filter_and_adds_up_to_the_disk() {
    let dir = Dir::new();
    setup(&dir, "ctx", "one");
    build(&dir, "ctx", "out");
    let du = bk(&dir).args(["du"]).stdout();
    assert!(du.starts_with("ID "), "{du}");
    assert!(
        du.contains("RECLAIMABLE") && du.contains("LAST ACCESSED"),
        "{du}"
    );
    // Two context loads (Dockerfile, context) and two COPY results.
    assert_eq!(rows(&du).len(), 4, "{du}");
    let regular = bk(&dir).args(["du", "--filter", "type=regular"]).stdout();
    assert_eq!(rows(&regular).len(), 2, "{regular}");
    let local = bk(&dir)
        .args(["du", "--filter", "type=source.local"])
        .stdout();
    assert_eq!(rows(&local).len(), 2, "{local}");
    let verbose = bk(&dir)
        .args(["du", "--verbose", "--filter", "description~=COPY small"])
        .stdout();
    assert_eq!(verbose.matches("ID:").count(), 1, "{verbose}");
    assert!(
        verbose.contains("Description:\t[2/2] COPY small /small"),
        "{verbose}"
    );
    assert!(verbose.contains("Type:\t\tregular"), "{verbose}");
    assert!(verbose.contains("Parent:"), "{verbose}");
    assert!(verbose.contains("Usage count:\t0"), "{verbose}");
    // The big file is in both COPY results: shared, counted once.
    assert!(total(&du, "Shared") >= 300_000.0, "{du}");
    assert_near(total(&du, "Total"), disk_bytes(&store_paths(&dir)));
    let bad = bk(&dir).args(["du", "--filter", "type=nope"]).fails();
    assert!(bad.contains("unknown record type `nope`"), "{bad}");
}

#[test]
fn prune_removes_what_the_filter_selects_and_asks_first() {
    let dir = Dir::new();
    setup(&dir, "ctx", "one");
    build(&dir, "ctx", "out");
    let refused = bk(&dir).args(["cache", "prune"]).fails();
    assert!(refused.contains("pass --force"), "{refused}");
    assert_eq!(rows(&bk(&dir).args(["du"]).stdout()).len(), 4);

    let pruned = bk(&dir)
        .args([
            "cache",
            "prune",
            "-f",
            "--filter",
            "description~=COPY small",
        ])
        .stdout();
    assert_eq!(rows(&pruned).len(), 1, "{pruned}");
    assert!(pruned.contains("Total:"), "{pruned}");
    let du = bk(&dir).args(["du", "--verbose"]).stdout();
    assert!(!du.contains("COPY small"), "{du}");
    assert!(du.contains("COPY big"), "{du}");
    assert_near(total(&du, "Total"), disk_bytes(&store_paths(&dir)));

    // The pruned step runs again; the rest is cached; the output is right.
    let log = build(&dir, "ctx", "out2");
    assert!(
        log.contains("COPY big /big\n#") || log.contains("CACHED"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out2/small")).unwrap(),
        "one"
    );

    bk(&dir).args(["cache", "prune", "-f", "--all"]).stdout();
    let du = bk(&dir).args(["du"]).stdout();
    assert!(rows(&du).is_empty(), "{du}");
    assert_eq!(total(&du, "Total"), 0.0, "{du}");
    let snapshots = std::fs::read_dir(dir.path().join(".bk-root/snapshots")).unwrap();
    assert_eq!(snapshots.count(), 0);
}

#[test]
fn prune_keep_storage_evicts_least_recently_used_first() {
    let dir = Dir::new();
    setup(&dir, "a", "a");
    build(&dir, "a", "out-a");
    std::thread::sleep(Duration::from_millis(20));
    setup(&dir, "b", "b");
    dir.create("b/big", &"y".repeat(300_000));
    build(&dir, "b", "out-b");
    // Keep about one build's worth: a's records go, b's stay.
    let pruned = bk(&dir)
        .args(["cache", "prune", "-f", "--keep-storage", "400kb"])
        .stdout();
    assert!(!rows(&pruned).is_empty(), "{pruned}");
    let du = bk(&dir).args(["du"]).stdout();
    assert!(total(&du, "Total") <= 400.0 * 1024.0, "{du}");
    let left = bk(&dir)
        .args(["du", "--verbose", "--filter", "type=regular"])
        .stdout();
    assert!(left.contains("COPY big"), "{left}");
    // What is left is b's: rebuilding b is all cached.
    let log = build(&dir, "b", "out-b2");
    assert_eq!(log.matches("CACHED").count(), 4, "{log}");
}

#[test]
fn gc_runs_after_a_build_when_the_store_exceeds_the_policy() {
    let dir = Dir::new();
    dir.create("config/bk/config.toml", "[gc]\nkeep-storage = \"350KB\"\n");
    setup(&dir, "a", "a");
    let log = build(&dir, "a", "out-a");
    assert!(!log.contains("GC:"), "{log}");
    setup(&dir, "b", "b");
    dir.create("b/big", &"z".repeat(300_000));
    let log = build(&dir, "b", "out-b");
    let gc: Vec<_> = log.lines().filter(|l| l.starts_with("GC:")).collect();
    assert_eq!(gc.len(), 1, "{log}");
    assert!(
        gc[0].contains("removed") && gc[0].contains("limit 358.4kB"),
        "{log}"
    );
    // The build's own results stay; the older build's went.
    let du = bk(&dir).args(["du", "--verbose"]).stdout();
    assert!(total(&du, "Total") <= 358_400.0, "{du}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out-b/small")).unwrap(),
        "b"
    );
    let log = build(&dir, "b", "out-b2");
    assert_eq!(log.matches("CACHED").count(), 4, "{log}");

    // The environment overrides the file: disabled, nothing is removed.
    setup(&dir, "c", "c");
    dir.create("c/big", &"w".repeat(300_000));
    let o = bk(&dir)
        .env("BK_GC_ENABLED", "false")
        .args(["build", "--progress=plain", "-o", "out-c", "c"])
        .output();
    assert!(o.status.success(), "{}", describe(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("GC:"));
    let bad = bk(&dir)
        .env("BK_GC_KEEP_STORAGE", "lots")
        .args(["build", "--progress=plain", "-o", "out-c", "c"])
        .output();
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid size `lots`"),
        "{}",
        describe(&bad)
    );
}

/// A tiny deterministic generator (the seed is printed on failure).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Contexts whose Dockerfiles overlap: the same big file, a shared step,
/// and a step of their own.
fn stress_contexts(dir: &Dir, n: usize) {
    for i in 0..n {
        let ctx = format!("s{i}");
        dir.create(&format!("{ctx}/shared"), &"s".repeat(200_000));
        dir.create(
            &format!("{ctx}/own"),
            &format!("own {i}\n").repeat(1000 + i),
        );
        dir.create(
            &format!("{ctx}/Dockerfile"),
            "FROM scratch\nCOPY shared /shared\nCOPY own /own\nCOPY shared /again\n",
        );
    }
}

fn check_output(dir: &Dir, ctx: usize, out: &Path) -> Result<(), String> {
    let i = ctx;
    let read =
        |name: &str| std::fs::read_to_string(out.join(name)).map_err(|e| format!("{name}: {e}"));
    let shared = "s".repeat(200_000);
    let own = format!("own {i}\n").repeat(1000 + i);
    if read("shared")? != shared || read("again")? != shared || read("own")? != own {
        return Err(format!("wrong content in {}", out.display()));
    }
    let _ = dir;
    Ok(())
}

/// Runs `procs` concurrent builds for `rounds` rounds, killing some with
/// SIGKILL at random moments; every build that exits 0 must have written
/// the right output. Returns (builds, kills).
pub fn stress(dir: &Dir, procs: usize, rounds: usize, seed: u64) -> (usize, usize) {
    let contexts = 3;
    stress_contexts(dir, contexts);
    let mut rng = Lcg(seed);
    let (mut builds, mut kills) = (0, 0);
    for round in 0..rounds {
        let mut children: Vec<(Child, usize, PathBuf, Option<Duration>)> = Vec::new();
        for p in 0..procs {
            let ctx = rng.next(contexts as u64) as usize;
            let out = dir.path().join(format!("out-{round}-{p}"));
            let child = Command::new(env!("CARGO_BIN_EXE_bk"))
                .current_dir(dir.path())
                .env("BK_ROOT", dir.path().join(".bk-root"))
                .env("XDG_CONFIG_HOME", dir.path().join("config"))
                .args(["build", "--progress=plain", "-o"])
                .arg(&out)
                .arg(format!("s{ctx}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let kill_at = (rng.next(3) == 0).then(|| Duration::from_millis(rng.next(150)));
            children.push((child, ctx, out, kill_at));
        }
        let start = Instant::now();
        for (child, _, _, kill_at) in &mut children {
            if let Some(at) = kill_at {
                if let Some(left) = at.checked_sub(start.elapsed()) {
                    std::thread::sleep(left);
                }
                if child.kill().is_ok() {
                    kills += 1;
                }
            }
        }
        for (child, ctx, out, kill_at) in children {
            let o = child.wait_with_output().unwrap();
            builds += 1;
            if o.status.success() {
                if let Err(e) = check_output(dir, ctx, &out) {
                    panic!("seed {seed} round {round}: {e}");
                }
            } else if kill_at.is_none() {
                panic!(
                    "seed {seed} round {round}: a build that was not killed failed:\n{}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
    // After all that, every context still builds right from the store.
    for ctx in 0..contexts {
        let out = dir.path().join(format!("final-{ctx}"));
        let o = bk(dir)
            .args(["build", "--progress=plain", "-o"])
            .arg_path(&out)
            .args([format!("s{ctx}")])
            .output();
        assert!(o.status.success(), "seed {seed}: {}", describe(&o));
        check_output(dir, ctx, &out).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    (builds, kills)
}

#[test]
fn concurrent_builds_with_kills_keep_the_store_sound() {
    let dir = Dir::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let (builds, _kills) = stress(&dir, 4, 3, seed);
    assert_eq!(builds, 12);
    let du = bk(&dir).args(["du"]).stdout();
    // Killed builds may leave unrecorded snapshots: they count in the
    // totals as on disk, so the totals still match the disk.
    assert_near(total(&du, "Total"), disk_bytes(&store_paths(&dir)));
    bk(&dir).args(["cache", "prune", "-f", "--all"]).stdout();
    let du = bk(&dir).args(["du"]).stdout();
    assert!(rows(&du).is_empty(), "seed {seed}: {du}");
    assert_eq!(total(&du, "Total"), 0.0, "seed {seed}: {du}");
    let tmp = std::fs::read_dir(dir.path().join(".bk-root/tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "seed {seed}: leftovers in tmp/");
}

#[test]
fn prune_all_keeps_the_blobs_of_local_images() {
    let dir = Dir::new();
    setup(&dir, "ctx", "kept");
    let o = bk(&dir)
        .args(["build", "--progress=plain", "-t", "app", "ctx"])
        .output();
    assert!(o.status.success(), "{}", describe(&o));
    bk(&dir).args(["cache", "prune", "-f", "--all"]).stdout();
    assert!(rows(&bk(&dir).args(["du"]).stdout()).is_empty());
    // The image still reads back whole: built FROM, its files come out.
    dir.create("from/Dockerfile", "FROM app\n");
    let log = build(&dir, "from", "out");
    assert!(!log.is_empty());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/small")).unwrap(),
        "kept"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/big"))
            .unwrap()
            .len(),
        300_000
    );
}

/// `FROM` a busybox image in the test registry, applets installed.
fn busybox_base() -> String {
    use crate::registry_util::{busybox_layer, registry, ImageSpec};
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let image = IMAGE.get_or_init(|| {
        let reg = registry();
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        reg.push(
            "gc/busybox:latest",
            &[ImageSpec {
                arch: arch.to_string(),
                layers: vec![busybox_layer(arch)],
                env: &["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                workdir: "/",
            }],
        );
        format!("{}/gc/busybox", reg.host)
    });
    format!("FROM {image}\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n")
}

#[test]
fn cache_mounts_survive_a_plain_prune_and_go_with_all() {
    let dir = Dir::new();
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "{}ARG N\nRUN --mount=type=cache,target=/c \\\n  echo $N >> /c/log && head -c 100000 /dev/zero > /c/blob$N && wc -l < /c/log > /count\n",
            busybox_base()
        ),
    );
    let run = |n: &str, out: &str| {
        let o = bk(&dir)
            .args([
                "build",
                "--progress=plain",
                "--build-arg",
                &format!("N={n}"),
                "-o",
                out,
                "ctx",
            ])
            .output();
        assert!(o.status.success(), "{}", describe(&o));
        std::fs::read_to_string(dir.path().join(out).join("count")).unwrap()
    };
    assert_eq!(run("1", "o1").trim(), "1");
    let du = bk(&dir).args(["du"]).stdout();
    assert!(total(&du, "Cache mounts") >= 100_000.0, "{du}");
    assert_near(
        total(&du, "Total"),
        disk_bytes(&[store_paths(&dir)[0].clone(), store_paths(&dir)[1].clone()])
            + total(&du, "Cache mounts"),
    );
    bk(&dir).args(["cache", "prune", "-f"]).stdout();
    // The cache mount was kept: the count goes on.
    assert_eq!(run("2", "o2").trim(), "2");
    let pruned = bk(&dir).args(["cache", "prune", "-f", "--all"]).stdout();
    assert!(pruned.lines().count() > 2, "{pruned}");
    let du = bk(&dir).args(["du"]).stdout();
    assert!(!du.contains("Cache mounts"), "{du}");
    // Gone: it starts empty.
    assert_eq!(run("3", "o3").trim(), "1");
}

/// Two processes building the same step at once: one runs it, the other
/// waits for its result (the random output is the same in both).
#[test]
fn a_step_another_process_is_building_is_waited_for_not_repeated() {
    let dir = Dir::new();
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "{}RUN sleep 1 && head -c 16 /dev/urandom | od -An -tx1 > /random\n",
            busybox_base()
        ),
    );
    // Pull and install the base first, so both start at the RUN.
    dir.create("base/Dockerfile", &busybox_base());
    build(&dir, "base", "base-out");
    let spawn = |out: &str| {
        Command::new(env!("CARGO_BIN_EXE_bk"))
            .current_dir(dir.path())
            .env("BK_ROOT", dir.path().join(".bk-root"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .args(["build", "--progress=plain", "-o", out, "ctx"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", describe(&a));
    assert!(b.status.success(), "{}", describe(&b));
    let read = |o: &str| std::fs::read_to_string(dir.path().join(o).join("random")).unwrap();
    assert_eq!(read("a"), read("b"));
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    // Exactly one of them ran the step; the other reports it cached.
    assert!(logs.contains("CACHED"), "{logs}");
}
