//! `bk build <git URL>`: a git repository as the build context, told
//! apart from a local path and from a plain HTTP context as BuildKit's
//! `DetectGitContext` tells them: `git://…`, `ssh://…`, `git@host:repo`,
//! and `http(s)://` URLs whose path ends in `.git`, each with an optional
//! `#ref[:subdir]` fragment or `?ref=…&subdir=…` query; a local directory
//! of the same name wins, as in buildx.
//!
//! The ref is resolved with one `git ls-remote`; the checkout of that
//! commit is a snapshot in the build cache, under the key an `ADD` of the
//! same URL gets (so an unchanged ref fetches nothing, `--no-cache`
//! fetches again, and `bk du` / `bk cache prune` see it). Otherwise the
//! commit is fetched shallowly (with its submodules unless
//! `submodules=false`). The checkout (or its sub-directory) is then read
//! in place like a local context, COPY checksumming what it selects,
//! except that its `.dockerignore` does not apply: BuildKit applies the
//! file only to what a client sends, and uses remote contexts whole.
//!
//! The Dockerfile is `Dockerfile` in it, or `-f PATH` relative to it; an
//! absolute `-f` names a local file and `-f -` reads standard input, as
//! buildx passes them. `.git` is kept with `?keep-git-dir=1` or
//! `--build-arg BUILDKIT_CONTEXT_KEEP_GIT_DIR=1`. Credentials in the URL
//! never appear in messages.
//!
//! Over ssh, git uses the build's `--ssh default` agent when there is
//! one (see `source::git`). The fetch is shown as BuildKit shows it, as
//! the step `[internal] load git source URL` ([`Fetching`], also used for
//! HTTP contexts), on the progress display the build then goes on with.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::build_stdin::Inputs;
use crate::cache::RecordType;
use crate::dockerfile::git_ref::{parse_git_ref, source_op, GitRef};
use crate::dockerfile::instructions::go::parse_bool;
use crate::llb::{Op, Vertex};
use crate::progress;
use crate::session;
use crate::snapshot::{SnapshotId, Store};
use crate::solver::cache_key;
use crate::source::git;

/// The git reference `context` names when it is a git build context;
/// an error for a git URL with invalid options.
pub fn detect(context: &str) -> Option<anyhow::Result<GitRef>> {
    if !context.contains("://") && Path::new(context).exists() {
        return None;
    }
    match parse_git_ref(context)? {
        // The deprecated `github.com/owner/repo` form is fetched over
        // https, as BuildKit's git source does with a scheme-less remote.
        Ok(mut git) if git.indistinguishable_from_local => {
            git.remote = format!("https://{}", git.remote);
            Some(Ok(git))
        }
        Ok(git) => Some(Ok(git)),
        Err(reason) => Some(Err(anyhow::Error::new(reason).context(format!(
            "invalid git build context {}",
            git::redact(context)
        )))),
    }
}

/// `--build-arg BUILDKIT_CONTEXT_KEEP_GIT_DIR=1` keeps the context's
/// `.git` (a value Go's `ParseBool` rejects is ignored), as BuildKit reads
/// it.
fn apply_build_args(git: &mut GitRef, build_args: &[(String, String)]) {
    let keep = build_args
        .iter()
        .rev()
        .find(|(k, _)| k == "BUILDKIT_CONTEXT_KEEP_GIT_DIR")
        .and_then(|(_, v)| parse_bool(v));
    if keep == Some(true) {
        git.keep_git_dir = Some(true);
    }
}

/// A git context's checkout: a committed snapshot of the build cache,
/// leased to this process until dropped so that no prune removes it
/// while the build reads it.
pub struct Checkout {
    session: super::cache::BuildSession,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        // Failing to release only keeps the snapshot until the next
        // process sees this one is gone.
        let _ = self.session.db.release_leases(self.session.lease.owner());
    }
}

/// Finds (or fetches into the build cache) the checkout `git` names and
/// the Dockerfile in it. The cache key is the one an `ADD` of the same
/// URL gets, so either reuses the other's checkout.
pub fn inputs(
    context: &str,
    git: &GitRef,
    opts: &super::build::BuildOpts,
    root: &Path,
) -> anyhow::Result<Inputs> {
    let mut git = git.clone();
    apply_build_args(&mut git, &opts.build_args);
    let shown = git::redact(context);
    if git.mtime == "commit" {
        bail!("not supported yet: git checkouts with commit mtimes ({shown})");
    }
    let fail = || format!("failed to read the git build context {shown}");
    let name = format!("[internal] load git source {shown}");
    let op = source_op(&git, git.keep_git_dir, &git.checksum);
    let vertex = Vertex {
        op: Op::Source(op),
        inputs: Vec::new(),
        platform: None,
    };
    let progress = Fetching::start(opts.progress.into(), &vertex.digest().to_string(), &name)?;
    let fetched = checkout_in_cache(&git, vertex, &name, opts, root);
    let (
        Fetched {
            session,
            checkout,
            commit,
        },
        display,
    ) = progress.end(fetched).with_context(fail)?;

    let mut dockerfile_text = None;
    let dockerfile = match opts.file.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("failed to read the Dockerfile from standard input")?;
            dockerfile_text = Some(text);
            "-".to_string()
        }
        Some(f) if Path::new(f).is_absolute() => f.to_string(),
        named => {
            let name = named.unwrap_or("Dockerfile");
            let path = checkout.join(name.trim_start_matches('/'));
            if !path.is_file() {
                bail!("{}: no {name} in it (commit {commit})", fail());
            }
            path.to_string_lossy().into_owned()
        }
    };
    Ok(Inputs {
        context: checkout.to_string_lossy().into_owned(),
        dockerfile,
        dockerfile_text,
        _dir: None,
        _checkout: Some(Checkout { session }),
        remote: true,
        progress: display,
    })
}

/// A git context's checkout in the build cache.
struct Fetched {
    /// Leases the checkout's snapshot to this process.
    session: super::cache::BuildSession,
    checkout: PathBuf,
    commit: String,
}

/// Resolves `git`'s ref and finds its checkout in the build cache, or
/// fetches it there (under `name`, the step that shows it); says
/// whether the cache had it.
fn checkout_in_cache(
    git: &GitRef,
    vertex: Vertex,
    name: &str,
    opts: &super::build::BuildOpts,
    root: &Path,
) -> anyhow::Result<(Fetched, bool)> {
    let agent = ssh_agent(&git.remote, opts)?;
    let transport = git::Transport {
        ssh_auth_sock: agent.as_ref().map(|a| a.socket().to_path_buf()),
    };
    let commit = git::resolve(&git.remote, &git.git_ref, &transport)?;
    if !git.checksum.is_empty() && !commit.starts_with(git.checksum.as_str()) {
        bail!(
            "#{} is {commit}, not the expected commit {}",
            git.git_ref,
            git.checksum
        );
    }
    let session = super::cache::start_build(root)?;
    let store = Store::open(root)
        .with_context(|| format!("failed to open the store at {}", root.display()))?;
    let Op::Source(op) = &vertex.op else {
        bail!("a git context's vertex is not a source (a bug in bk)");
    };
    // As the solver keys a git source: its vertex and the commit.
    let content = format!("{}@{commit}", op.identifier);
    let key = cache_key::compute(&vertex, &[], Some(&content));
    let cached = match opts.no_cache {
        true => None,
        false => session
            .db
            .get(&key)
            .context("failed to look up the build cache")?
            .and_then(|row| SnapshotId::new(row.snapshot_id).ok())
            .filter(|id| store.exists(id)),
    };
    let hit = cached.is_some();
    let id = match cached {
        Some(id) => id,
        None => {
            let id = fetch(git, &commit, &transport, &store)?;
            let size = store
                .size(&id)
                .context("failed to measure the git checkout")?;
            session
                .db
                .put_record(&key, id.as_str(), name, size, RecordType::Regular, None)
                .context("failed to record the git checkout in the build cache")?;
            id
        }
    };
    let fetched = Fetched {
        session,
        checkout: store.path(&id),
        commit,
    };
    Ok((fetched, hit))
}

/// Over ssh, a socket forwarding to the build's `--ssh default` agent,
/// which git then uses as BuildKit's git source uses the session's;
/// `None` leaves git the user's own agent. Checked as the build checks
/// `--ssh` later.
fn ssh_agent(
    url: &str,
    opts: &super::build::BuildOpts,
) -> anyhow::Result<Option<session::SshForward>> {
    if !git::is_ssh(url) {
        return Ok(None);
    }
    let agents = session::SshAgents::new(
        opts.ssh.iter().map(|s| (s.id.clone(), s.paths.clone())),
        std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
    )?;
    Ok(agents.forward("default", 0o600)?)
}

/// Fetches `commit` into a new committed snapshot.
fn fetch(
    git: &GitRef,
    commit: &str,
    transport: &git::Transport,
    store: &Store,
) -> anyhow::Result<SnapshotId> {
    let scratch = store
        .prepare(None)
        .context("failed to prepare the git checkout")?;
    let dest = store
        .prepare(None)
        .context("failed to prepare the git checkout")?;
    git::checkout(
        &git::Checkout {
            url: &git.remote,
            git_ref: &git.git_ref,
            commit,
            keep_git_dir: git.keep_git_dir == Some(true),
            subdir: &git.subdir,
            submodules: git.submodules != Some(false),
            transport,
        },
        scratch.path(),
        dest.path(),
    )?;
    drop(scratch);
    dest.commit().context("failed to commit the git checkout")
}

/// A progress display the build goes on with.
pub type Display = (progress::Sender, progress::Handle);

/// A step shown while the main context is fetched, before the build
/// graph runs, as BuildKit shows `[internal] load git source URL` or
/// `[internal] load remote build context`, in the mode `--progress`
/// chose. The display then goes on with the build's steps (one
/// numbering, one stream), except the live tty view, which is closed
/// after the fetch: what bk prints before the build starts (warnings,
/// notes) would be drawn over.
pub struct Fetching {
    sender: progress::Sender,
    display: progress::Handle,
    mode: progress::Mode,
    digest: String,
    name: String,
}

impl Fetching {
    /// Shows step `name` (which must hold no credentials) as started.
    pub fn start(mode: progress::Mode, digest: &str, name: &str) -> anyhow::Result<Fetching> {
        let (sender, display) = progress::start(mode, Box::new(std::io::stderr()))
            .context("failed to show the progress of the context fetch")?;
        sender.started(digest, name);
        Ok(Fetching {
            sender,
            display,
            mode,
            digest: digest.to_string(),
            name: name.to_string(),
        })
    }

    /// Shows how the fetch ended (`outcome` says whether the cache
    /// answered); returns the display when the build may go on with it,
    /// having closed it otherwise (always after a failure, so that the
    /// error is printed below it).
    pub fn end<T>(
        self,
        outcome: anyhow::Result<(T, bool)>,
    ) -> anyhow::Result<(T, Option<Display>)> {
        match &outcome {
            Ok((_, true)) => self.sender.cached(&self.digest, &self.name),
            Ok((_, false)) => self.sender.completed(&self.digest),
            Err(err) => self.sender.failed(&self.digest, format!("{err:#}")),
        }
        let live = progress::Options::from_env(self.mode).resolved_mode() == progress::Mode::Tty;
        if outcome.is_ok() && !live {
            let display = (self.sender, self.display);
            return outcome.map(|(value, _)| (value, Some(display)));
        }
        drop(self.sender);
        if let Err(err) = self.display.finish() {
            eprintln!("WARNING: {:#}", anyhow::Error::new(err));
        }
        outcome.map(|(value, _)| (value, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(context: &str) -> Option<String> {
        detect(context).map(|g| g.map(|g| g.remote).unwrap_or_else(|e| format!("{e:#}")))
    }

    #[test]
    fn git_contexts_are_told_apart_as_buildkit_does() {
        assert_eq!(
            remote("https://example.com/r.git#main:dir").as_deref(),
            Some("https://example.com/r.git")
        );
        assert_eq!(
            remote("git://127.0.0.1:9418/repo").as_deref(),
            Some("git://127.0.0.1:9418/repo")
        );
        assert_eq!(
            remote("git@example.com:a/b.git").as_deref(),
            Some("git@example.com:a/b.git")
        );
        assert_eq!(
            remote("ssh://git@example.com/a/b").as_deref(),
            Some("ssh://git@example.com/a/b")
        );
        // A plain HTTP URL is an HTTP context, a path is local.
        assert_eq!(remote("https://example.com/context.tar"), None);
        assert_eq!(remote("."), None);
        assert_eq!(
            remote("github.com/moby/buildkit").as_deref(),
            Some("https://github.com/moby/buildkit")
        );
        assert_eq!(remote("./a.git"), None);
        // Invalid options are errors that hide the credentials.
        let err = remote("https://u:secret@example.com/r.git?nope=1").unwrap();
        assert!(
            err.contains("unexpected query") && !err.contains("secret"),
            "{err}"
        );
    }
}
