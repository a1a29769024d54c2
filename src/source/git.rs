//! `git://…` sources (`ADD <git URL>`), read with the `git` executable:
//! the ref (branch, tag or full commit sha; empty is the remote's HEAD)
//! is resolved to a commit with one `git ls-remote`, then that commit is
//! fetched shallowly and checked out. The checkout has no `.git` unless
//! the source keeps it, and holds only the sub-directory when one is
//! named, as BuildKit's git source makes it.
//!
//! Credentials in a URL (`https://user:token@host/…`) are never printed:
//! errors name the URL with its user information masked (`xxxxx`),
//! and git's own messages are scrubbed the same way.
//!
//! git never asks anything on a terminal: a build fails instead of
//! hanging. Over ssh (`ssh://…`, scp-like `user@host:path`) git runs as
//! the user with the user's own ssh setup (`~/.ssh/config`, agent,
//! `known_hosts`, `GIT_SSH_COMMAND` or `core.sshCommand`), with
//! `BatchMode=yes` added so that ssh never prompts for a password,
//! passphrase or unknown host key. A [`Transport`] may name the agent
//! socket to use instead of the inherited `SSH_AUTH_SOCK`: the build's
//! `--ssh` agent, as BuildKit's git source mounts the session's agent.
//! Unlike BuildKit (which ignores the ssh config and, without known hosts
//! from the client, turns host key checking off), host keys are checked
//! against the user's `known_hosts`.
//!
//! Imports `util` only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::util::fs::FsError;

/// Why reading a repository failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The `git` executable could not be started.
    #[error("failed to run git for {url}: is git installed?")]
    Missing {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// `git ls-remote` failed: the repository is unreachable or not one.
    #[error("failed to read the refs of {url}: {stderr}")]
    Unreachable { url: String, stderr: String },
    /// The ref names no branch, tag or commit of the repository.
    #[error("ref {git_ref:?} not found in {url}")]
    UnknownRef { url: String, git_ref: String },
    /// Fetching or checking out the commit failed.
    #[error("failed to {what} {commit} of {url}: {stderr}")]
    Fetch {
        what: &'static str,
        url: String,
        commit: String,
        stderr: String,
    },
    /// The sub-directory is not a directory of the commit.
    #[error("sub-directory {subdir:?} not found in {commit} of {url}")]
    NoSubdir {
        url: String,
        commit: String,
        subdir: String,
    },
    /// Arranging the checkout on disk failed.
    #[error("failed to arrange the checkout of {url}")]
    Arrange {
        url: String,
        #[source]
        source: FsError,
    },
}

/// `url` with any user information masked (`xxxxx:xxxxx@`), fit to
/// print.
pub fn redact(url: &str) -> String {
    crate::util::redact::url(url)
}

/// How git reaches a remote beyond the user's own setup.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// The ssh agent socket git's ssh uses (`SSH_AUTH_SOCK`); `None`
    /// keeps the one bk inherited.
    pub ssh_auth_sock: Option<PathBuf>,
}

/// Whether git reaches `url` over ssh: `ssh://…` (also `git+ssh://`,
/// `ssh+git://`) or the scp-like `[user@]host:path`, as git itself tells
/// them apart.
pub fn is_ssh(url: &str) -> bool {
    if let Some((scheme, _)) = url.split_once("://") {
        return matches!(scheme, "ssh" | "git+ssh" | "ssh+git");
    }
    // git's rule: a colon before any slash makes it scp-like.
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The ssh command line git is given: the one the user chose
/// (`GIT_SSH_COMMAND`, then `core.sshCommand`) or `ssh`, with
/// `-o BatchMode=yes` added when it is OpenSSH. `None` leaves git's own
/// choice alone (`GIT_SSH`, which names a program rather than a command
/// line, or a command that is not `ssh`).
fn ssh_command() -> Option<&'static str> {
    static COMMAND: OnceLock<Option<String>> = OnceLock::new();
    COMMAND
        .get_or_init(|| {
            let env = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
            let chosen = match env("GIT_SSH_COMMAND") {
                Some(command) => Some(command),
                None if env("GIT_SSH").is_some() => return None,
                None => configured_ssh_command(),
            };
            let command = chosen.unwrap_or_else(|| "ssh".to_string());
            let program = command.split_whitespace().next().unwrap_or("");
            let openssh = Path::new(program.trim_matches(|c| c == '\'' || c == '"'))
                .file_name()
                .is_some_and(|name| name == "ssh");
            openssh.then(|| format!("{command} -o BatchMode=yes"))
        })
        .as_deref()
}

/// `core.sshCommand` from the user's and the system's git configuration.
fn configured_ssh_command() -> Option<String> {
    ["--global", "--system"].iter().find_map(|scope| {
        let output = Command::new("git")
            .args(["config", scope, "--get", "core.sshCommand"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let value = String::from_utf8_lossy(&output.stdout).trim().to_string();
        (output.status.success() && !value.is_empty()).then_some(value)
    })
}

/// Whether `text` is a full commit id (40 or 64 lowercase hex digits).
pub fn is_commit(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Runs `git args…` (in `dir` when given), returning stdout or the
/// scrubbed stderr.
fn git(
    url: &str,
    transport: &Transport,
    dir: Option<&Path>,
    args: &[&str],
) -> Result<Result<String, String>, GitError> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    // Also for other URLs: their submodules may be reached over ssh.
    if let Some(ssh) = ssh_command() {
        command.env("GIT_SSH_COMMAND", ssh);
    }
    if let Some(sock) = &transport.ssh_auth_sock {
        command.env("SSH_AUTH_SOCK", sock);
    }
    let output = command
        .args(args)
        .stdin(Stdio::null())
        // Never ask on a terminal: a build fails instead of hanging.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .output()
        .map_err(|source| GitError::Missing {
            url: redact(url),
            source,
        })?;
    if output.status.success() {
        Ok(Ok(String::from_utf8_lossy(&output.stdout).into_owned()))
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = crate::util::redact::text_about(url, stderr.trim());
        Ok(Err(stderr))
    }
}

/// The commit `git_ref` names in the repository at `url`: a full commit
/// id is taken as is; otherwise one `git ls-remote`, preferring a branch
/// or tag of exactly that name (an annotated tag's commit, not the tag
/// object). Blocking.
pub fn resolve(url: &str, git_ref: &str, transport: &Transport) -> Result<String, GitError> {
    if is_commit(git_ref) {
        return Ok(git_ref.to_string());
    }
    let wanted = if git_ref.is_empty() { "HEAD" } else { git_ref };
    let listing =
        git(url, transport, None, &["ls-remote", "--", url, wanted])?.map_err(|stderr| {
            GitError::Unreachable {
                url: redact(url),
                stderr,
            }
        })?;
    let refs: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    let candidates = [
        wanted.to_string(),
        format!("refs/heads/{wanted}"),
        format!("refs/tags/{wanted}^{{}}"),
        format!("refs/tags/{wanted}"),
    ];
    candidates
        .iter()
        .find_map(|name| refs.iter().find(|(_, r)| r == name).map(|(c, _)| c))
        .or_else(|| refs.first().map(|(c, _)| c))
        .map(|c| c.to_string())
        .ok_or_else(|| GitError::UnknownRef {
            url: redact(url),
            git_ref: git_ref.to_string(),
        })
}

/// What [`checkout`] makes.
pub struct Checkout<'a> {
    pub url: &'a str,
    /// The ref as written (fetched by name when it is not a commit id).
    pub git_ref: &'a str,
    /// The commit [`resolve`] found.
    pub commit: &'a str,
    pub keep_git_dir: bool,
    /// A directory of the repository to keep alone; empty for all.
    pub subdir: &'a str,
    /// Whether submodules are checked out too (recursively), as BuildKit
    /// does unless the source says `submodules=false`.
    pub submodules: bool,
    pub transport: &'a Transport,
}

/// Fetches `spec.commit` into the empty directory `scratch` and moves the
/// checkout (or its sub-directory) into the empty directory `dest`, which
/// must be on the same file system. Blocking.
pub fn checkout(spec: &Checkout<'_>, scratch: &Path, dest: &Path) -> Result<(), GitError> {
    let url = spec.url;
    let git = |dir, args: &[&str]| git(url, spec.transport, dir, args);
    let fetch_err = |what: &'static str| {
        move |stderr: String| GitError::Fetch {
            what,
            url: redact(url),
            commit: spec.commit.to_string(),
            stderr,
        }
    };
    git(Some(scratch), &["init", "-q", "."])?.map_err(fetch_err("initialise a clone for"))?;
    // The origin is the URL itself while fetching: submodules with
    // relative URLs are found next to it.
    git(Some(scratch), &["remote", "add", "origin", url])?
        .map_err(fetch_err("name the origin of"))?;
    // A ref is fetched by name (servers need not allow fetching any
    // commit); a commit id directly, and failing that with all refs.
    let by_name = if is_commit(spec.git_ref) {
        spec.commit.to_string()
    } else if spec.git_ref.is_empty() {
        "HEAD".to_string()
    } else {
        spec.git_ref.to_string()
    };
    let shallow = git(
        Some(scratch),
        &["fetch", "-q", "--depth=1", "--no-tags", "--", url, &by_name],
    )?;
    let have = || {
        git(
            Some(scratch),
            &["cat-file", "-e", &format!("{}^{{commit}}", spec.commit)],
        )
        .map(|r| r.is_ok())
    };
    if shallow.is_err() || !have()? {
        git(
            Some(scratch),
            &[
                "fetch",
                "-q",
                "--tags",
                "--",
                url,
                "+refs/heads/*:refs/remotes/origin/*",
            ],
        )?
        .map_err(fetch_err("fetch"))?;
        if !have()? {
            return Err(fetch_err("find")(
                "the commit is not in the repository".into(),
            ));
        }
    }
    git(Some(scratch), &["checkout", "-q", "--detach", spec.commit])?
        .map_err(fetch_err("check out"))?;
    let with_submodules = spec.submodules && scratch.join(".gitmodules").is_file();
    if with_submodules {
        git(
            Some(scratch),
            &[
                "-c",
                "protocol.file.allow=never",
                "submodule",
                "update",
                "--init",
                "--recursive",
                "--depth=1",
            ],
        )?
        .map_err(fetch_err("check out the submodules of"))?;
    }
    let arrange = |source| GitError::Arrange {
        url: redact(url),
        source,
    };
    // The origin is named without credentials from now on.
    git(
        Some(scratch),
        &["remote", "set-url", "origin", &redact(url)],
    )?
    .map_err(fetch_err("name the origin of"))?;
    if spec.keep_git_dir {
        // The kept repository keeps no trace of the fetch.
        git(
            Some(scratch),
            &["reflog", "expire", "--all", "--expire=now"],
        )?
        .map_err(fetch_err("clean the reflog of"))?;
        let fetch_head = scratch.join(".git/FETCH_HEAD");
        if let Err(e) = std::fs::remove_file(&fetch_head) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(arrange(FsError::new("remove", &fetch_head, e)));
            }
        }
    } else {
        let dot_git = scratch.join(".git");
        std::fs::remove_dir_all(&dot_git)
            .map_err(|e| arrange(FsError::new("remove", &dot_git, e)))?;
        if with_submodules {
            // Each submodule's `.git` file too (git tracks no entry of
            // that name, so none is the project's).
            remove_dot_git(scratch).map_err(arrange)?;
        }
    }
    let subdir = spec.subdir.trim_matches('/');
    let from = if subdir.is_empty() {
        scratch.to_path_buf()
    } else {
        scratch.join(subdir)
    };
    if subdir.split('/').any(|c| c == "..") || !from.is_dir() {
        return Err(GitError::NoSubdir {
            url: redact(url),
            commit: spec.commit.to_string(),
            subdir: spec.subdir.to_string(),
        });
    }
    let entries = std::fs::read_dir(&from).map_err(|e| arrange(FsError::new("read", &from, e)))?;
    for entry in entries {
        let entry = entry.map_err(|e| arrange(FsError::new("read", &from, e)))?;
        let to = dest.join(entry.file_name());
        std::fs::rename(entry.path(), &to)
            .map_err(|e| arrange(FsError::new("move", entry.path(), e)))?;
    }
    Ok(())
}

/// Removes every `.git` below `dir` (directories and files).
fn remove_dot_git(dir: &Path) -> Result<(), FsError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FsError::new("read", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("read", dir, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| FsError::new("inspect", &path, e))?;
        if entry.file_name() == ".git" {
            let removed = if kind.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| FsError::new("remove", &path, e))?;
        } else if kind.is_dir() {
            remove_dot_git(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("https://user:secret@example.com/r.git"),
            "https://xxxxx:xxxxx@example.com/r.git"
        );
        assert_eq!(redact("git://example.com/r.git"), "git://example.com/r.git");
        assert_eq!(redact("git@example.com:r.git"), "git@example.com:r.git");
    }

    #[test]
    fn ssh_urls_are_recognised_as_git_does() {
        assert!(is_ssh("ssh://git@example.com/r.git"));
        assert!(is_ssh("git+ssh://example.com/r.git"));
        assert!(is_ssh("git@example.com:o/r.git"));
        assert!(is_ssh("alias:/srv/r.git"));
        assert!(!is_ssh("https://u:p@example.com/r.git"));
        assert!(!is_ssh("git://example.com/r.git"));
        assert!(!is_ssh("/srv/r:1.git"));
        assert!(!is_ssh("./a:b"));
    }

    #[test]
    fn commit_ids_are_recognised() {
        assert!(is_commit(&"a".repeat(40)));
        assert!(!is_commit("v1.0"));
        assert!(!is_commit(&"A".repeat(40)));
    }
}
