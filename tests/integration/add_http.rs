//! `ADD http://…` and remote contexts: a small HTTP server (python3's, started by the test on
//! 127.0.0.1) records each request; the download lands under its URL
//! name with the server's `Last-Modified` as mtime, `--chmod` and
//! `--checksum` apply, redirects are followed, and an unchanged rebuild
//! revalidates with `If-Modified-Since` and downloads nothing; a context
//! URL serves a tarball or a bare Dockerfile; `HTTP_PROXY`/`NO_PROXY` in
//! bk's environment are honoured (the same server acts as the proxy).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::util::{describe, Dir};

const SERVER: &str = r#"
import functools, http.server, sys
log, root = sys.argv[1], sys.argv[2]
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write("%s %s ims=%s\n" % (self.command, self.path, self.headers.get("If-Modified-Since")))
        if self.path.startswith("http://"):
            # Asked as a proxy: serve the URL's path from here.
            self.path = "/" + self.path.split("/", 3)[3]
        if self.path == "/etag":
            with open(log, "a") as f:
                f.write("  inm=%s\n" % self.headers.get("If-None-Match"))
            if self.headers.get("If-None-Match") == '"v1"':
                self.send_response(304)
                self.end_headers()
                return
            body = b"tagged"
            self.send_response(200)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/dir/file.txt")
            self.end_headers()
            return
        return super().do_GET()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The server process, killed when dropped.
pub struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Serves `dir/srv`.
    pub fn start(dir: &Dir) -> Server {
        let log = dir.path().join("requests.log");
        let mut child = Command::new("python3")
            .args(["-c", SERVER])
            .arg(&log)
            .arg(dir.path().join("srv"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server's port");
        Server { child, port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build(dir: &Dir, out: &str) -> Output {
    let mut cmd = dir.bk();
    cmd.args(["build", "--progress", "plain", "-o", out])
        .arg_path(Path::new("ctx"));
    cmd.output()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "bk failed:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sha256(data: &[u8]) -> String {
    crate::registry_util::sha256(data)
}

fn serve(dir: &Dir, text: &str, mtime: i64) {
    let path = dir.create("srv/dir/file.txt", text);
    let time = filetime::FileTime::from_unix_time(mtime, 0);
    filetime::set_file_times(&path, time, time).unwrap();
}

#[test]
fn add_from_a_url_downloads_checks_and_revalidates() {
    let dir = Dir::new();
    serve(&dir, "served", 1_000_000_000);
    let server = Server::start(&dir);
    let digest = sha256(b"served");
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "FROM scratch\n\
             ADD {file} /dl/\n\
             ADD --chmod=644 --checksum={digest} {redirect} /r.txt\n",
            file = server.url("/dir/file.txt"),
            redirect = server.url("/redirect"),
        ),
    );
    ok(build(&dir, "out"));
    let file = dir.path().join("out/dl/file.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "served");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(
        filetime::FileTime::from_last_modification_time(&meta).unix_seconds(),
        1_000_000_000
    );
    let r = dir.path().join("out/r.txt");
    assert_eq!(std::fs::read_to_string(&r).unwrap(), "served");
    assert_eq!(
        std::fs::metadata(&r).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    let first = server.requests();
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(first.iter().all(|l| l.ends_with("ims=None")), "{first:?}");

    // Unchanged: each URL is revalidated, nothing is downloaded, and
    // the steps are cached.
    let log = ok(build(&dir, "out2"));
    let again = server.requests()[3..].to_vec();
    assert!(
        !again.is_empty() && again.iter().all(|l| !l.ends_with("ims=None")),
        "{again:?}"
    );
    assert!(log.contains("CACHED"), "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out2/dl/file.txt")).unwrap(),
        "served"
    );

    // Changed on the server: downloaded again; the pinned checksum now
    // fails, naming both digests.
    serve(&dir, "changed", 1_100_000_000);
    let out = build(&dir, "out3");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("digest mismatch") && err.contains(&digest),
        "{err}"
    );
    assert!(!dir.path().join("out3").exists());
    dir.create(
        "ctx/Dockerfile",
        &format!("FROM scratch\nADD {} /dl/\n", server.url("/dir/file.txt")),
    );
    ok(build(&dir, "out4"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out4/dl/file.txt")).unwrap(),
        "changed"
    );
    // A missing file is the server's 404, named.
    dir.create(
        "ctx/Dockerfile",
        &format!("FROM scratch\nADD {} /\n", server.url("/nope")),
    );
    let out = build(&dir, "out5");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

#[test]
fn a_remote_context_is_a_tarball_or_a_dockerfile() {
    let dir = Dir::new();
    dir.create("ctx/Dockerfile", "FROM scratch\nCOPY a.txt /\n");
    dir.create("ctx/a.txt", "A");
    // A remote context is used whole: its .dockerignore filters nothing.
    dir.create("ctx/.dockerignore", "a.txt\n");
    std::fs::create_dir_all(dir.path().join("srv")).unwrap();
    let tar = Command::new("tar")
        .args(["-czf", "srv/ctx.tar.gz", "-C", "ctx", "."])
        .current_dir(dir.path())
        .output()
        .expect("run tar");
    assert!(tar.status.success(), "{}", describe(&tar));
    dir.create("srv/Dockerfile.remote", "FROM scratch\nWORKDIR /from-url\n");
    let server = Server::start(&dir);
    let remote = |url: &str, out: &str| {
        let mut cmd = dir.bk();
        cmd.args(["build", "-o", out, url]);
        cmd.output()
    };
    ok(remote(&server.url("/ctx.tar.gz"), "out"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/a.txt")).unwrap(),
        "A"
    );
    ok(remote(&server.url("/Dockerfile.remote"), "out2"));
    assert!(dir.path().join("out2/from-url").is_dir());
    let out = remote(&server.url("/missing.tar"), "out3");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    // A URL ending in .git is a git context: refused by this server,
    // named without its credentials.
    let url = format!("http://me:s3cret@127.0.0.1:{}/repo.git#main", server.port);
    let out = remote(&url, "out4");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("git build context http://xxxxx:xxxxx@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn etags_revalidate_and_chown_applies() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path().join("srv")).unwrap();
    let server = Server::start(&dir);
    dir.create(
        "ctx/Dockerfile",
        &format!(
            "FROM scratch\nADD --chown=1234:5678 {} /tagged\n",
            server.url("/etag")
        ),
    );
    let tar_build = |out: &str| {
        let mut cmd = dir.bk();
        cmd.args(["build", "--progress", "plain", "-o"])
            .args([format!("type=tar,dest={out}")])
            .arg_path(Path::new("ctx"));
        ok(cmd.output())
    };
    tar_build("one.tar");
    let listing = Command::new("tar")
        .args(["--numeric-owner", "-tvf", "one.tar"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let line = listing
        .lines()
        .find(|l| l.ends_with("tagged"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.contains("1234/5678"), "{listing}");
    let log = tar_build("two.tar");
    assert!(log.contains("CACHED"), "{log}");
    let requests = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        requests.contains("inm=None") && requests.contains("inm=\"v1\""),
        "{requests}"
    );
}

/// Downloads go through the proxy bk's environment names, except for
/// hosts `NO_PROXY` lists, as BuildKit's HTTP source does with its
/// daemon's environment.
#[test]
fn add_honours_the_proxy_environment() {
    let dir = Dir::new();
    serve(&dir, "via proxy", 1_600_000_000);
    let server = Server::start(&dir);
    // A host that only the proxy can answer for (never resolved here).
    dir.create(
        "ctx/Dockerfile",
        "FROM scratch\nADD http://files.invalid/dir/file.txt /f\n",
    );
    let mut cmd = dir.bk();
    cmd.env("HTTP_PROXY", server.url(""))
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .args(["build", "--progress", "plain", "-o", "out"])
        .arg_path(Path::new("ctx"));
    ok(cmd.output());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/f")).unwrap(),
        "via proxy"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("GET http://files.invalid/dir/file.txt ")),
        "{:?}",
        server.requests()
    );

    // NO_PROXY: straight to the server, past a proxy that is not there.
    dir.create(
        "ctx/Dockerfile",
        &format!("FROM scratch\nADD {} /g\n", server.url("/dir/file.txt")),
    );
    let mut cmd = dir.bk();
    cmd.env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("http_proxy")
        .env_remove("no_proxy")
        .args(["build", "--progress", "plain", "-o", "out2"])
        .arg_path(Path::new("ctx"));
    ok(cmd.output());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out2/g")).unwrap(),
        "via proxy"
    );
}
