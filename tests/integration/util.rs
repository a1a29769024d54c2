//! The integration harness: a temporary directory to build in and a `bk`
//! command pointed at it, with assertions that print everything on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A scratch directory that disappears with the test.
pub struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("create temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes `contents` to `name` (parents created).
    pub fn create(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.tmp.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    /// A `bk` command run inside this directory with a private store.
    pub fn bk(&self) -> BkCommand {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bk"));
        cmd.current_dir(self.path())
            .env("BK_ROOT", self.path().join(".bk-root"))
            .env_remove("BUILDKIT_PROGRESS")
            .env_remove("BUILDX_DEFAULT_PLATFORM")
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null());
        BkCommand { cmd }
    }
}

/// A `bk` invocation under test.
pub struct BkCommand {
    cmd: Command,
}

impl BkCommand {
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        &mut self,
        key: K,
        value: V,
    ) -> &mut Self {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove<K: AsRef<std::ffi::OsStr>>(&mut self, key: K) -> &mut Self {
        self.cmd.env_remove(key);
        self
    }

    pub fn arg_path(&mut self, path: &Path) -> &mut Self {
        self.cmd.arg(path);
        self
    }

    pub fn stdin_bytes(&mut self, input: &[u8]) -> Output {
        use std::io::Write;
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn bk");
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait for bk")
    }

    /// The command itself, to spawn and control directly.
    pub fn into_command(self) -> Command {
        self.cmd
    }

    pub fn output(&mut self) -> Output {
        self.cmd.output().expect("run bk")
    }

    /// Runs, asserts success, returns standard output.
    pub fn stdout(&mut self) -> String {
        let out = self.output();
        assert!(out.status.success(), "bk failed:\n{}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, asserts failure with exit code 1, returns standard error.
    pub fn fails(&mut self) -> String {
        let out = self.output();
        assert_eq!(
            out.status.code(),
            Some(1),
            "expected exit 1:\n{}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Path of a file under `tests/data`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}
