//! Lowering RUN (BuildKit's `dispatchRun` and `dispatchRunMounts`): the
//! command, its environment and proxies, every `--mount`, `--network` and
//! `--security` → one ExecOp whose root mount is the stage state. The
//! conventions are in `lower`'s module documentation.
//!
//! Like `lower`, it must not import the solver, runner, snapshotter or cache
//! layers: it describes the process, it never starts one.

use super::args::ProxyEnv;
use super::config_values::path_clean;
use super::error::{Error, Result};
use super::heredoc::must_parse_heredoc;
use super::instructions::{Mount as RunMount, MountType, NetworkMode, Run, SecurityMode, Sharing};
use super::location::Range;
use super::lower::{go_base, InputSet, LowerError, Lowering, StageCx, State};
use super::shell::{EnvList, Lex};
use super::stages::{RunAction, Source, Step};
use crate::image::config::DEFAULT_PATH;
use crate::llb::{
    CacheSharing, ChownOpt, ExecMeta, ExecOp, FileAction, FileActionKind, FileOp, Mount, MountKind,
    NetMode, Op, SecretOpt, SecurityMode as LlbSecurity, SshOpt, UserOpt,
};

/// Where a `#!` heredoc script is mounted; BuildKit's path, slash included.
const PIPES_DIR: &str = "/dev/pipes/";

impl Lowering<'_> {
    /// Lowers one RUN on `state`.
    pub(super) fn run(
        &mut self,
        cx: &mut StageCx,
        step: &Step,
        state: State,
        run: &Run,
        action: &RunAction,
    ) -> Result<State> {
        let location = run.meta.location;
        let fail = |e: LowerError| Error::new(e, location);
        if action.args.is_empty() {
            return Err(fail(LowerError::EmptyCommand));
        }
        let name = cx.prefix(&self.run_name(run, step), step.onbuild);

        // Mounts are collected with the state they read and numbered only
        // once sorted, so input indices follow mount order as in BuildKit.
        let mut mounts: Vec<(Mount, State)> = vec![(
            Mount {
                input: None,
                selector: "/".into(),
                dest: "/".into(),
                output: Some(0),
                readonly: false,
                kind: MountKind::Bind,
            },
            state,
        )];
        if let Some(script) = &action.script {
            let file = self
                .inline_file(
                    path_clean(&format!("/{}", script.name)),
                    0o755,
                    &script.data,
                    &step.platform,
                    cx.ignore_cache,
                    location,
                )
                .map_err(fail)?;
            mounts.push((
                Mount {
                    input: None,
                    selector: "/".into(),
                    dest: PIPES_DIR.into(),
                    output: None,
                    readonly: true,
                    kind: MountKind::Bind,
                },
                Some(file),
            ));
        }
        let mut secrets = Vec::new();
        let mut sockets = Vec::new();
        for (i, m) in run.mounts.iter().enumerate() {
            match m.mount_type {
                MountType::Secret => secrets.push(secret_mount(m)),
                MountType::Ssh => {
                    if !m.source.is_empty() {
                        return Err(fail(LowerError::SshSource));
                    }
                    sockets.push(ssh_mount(m, sockets.len()));
                }
                _ => {
                    let source = action.mount_sources.get(i).cloned().flatten();
                    let mount = self
                        .fs_mount(cx, step, m, source.as_ref(), location)
                        .map_err(fail)?;
                    mounts.push(mount);
                }
            }
        }
        // BuildKit marshals filesystem mounts sorted by destination (the
        // root first), then secrets, then SSH sockets.
        mounts.sort_by(|a, b| a.0.dest.cmp(&b.0.dest));
        let mut inputs = InputSet::default();
        let mut mounts: Vec<Mount> = mounts
            .into_iter()
            .map(|(mut mount, state)| {
                mount.input = state.as_ref().map(|s| inputs.index(s));
                mount
            })
            .collect();
        mounts.append(&mut secrets);

        let mut env: Vec<String> = step.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let has = |env: &[String], key: &str| {
            env.iter()
                .any(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        };
        if step.platform.os != "windows" && !has(&env, "PATH") {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        if let Some(first) = sockets.first() {
            if !has(&env, "SSH_AUTH_SOCK") {
                env.push(format!("SSH_AUTH_SOCK={}", first.dest));
            }
        }
        mounts.append(&mut sockets);

        let op = Op::Exec(ExecOp {
            meta: ExecMeta {
                args: action.args.clone(),
                env,
                cwd: step.workdir.clone(),
                user: step.user.clone(),
                hostname: String::new(),
                proxy_env: self.plan.proxy.as_ref().map(proxy_env).unwrap_or_default(),
            },
            mounts,
            network: match run.network {
                NetworkMode::Default => self.opts.network,
                NetworkMode::None => NetMode::None,
                NetworkMode::Host => NetMode::Host,
            },
            security: match run.security {
                SecurityMode::Sandbox => LlbSecurity::Sandbox,
                SecurityMode::Insecure => LlbSecurity::Insecure,
            },
        });
        let meta = self.metadata(name, location, cx.ignore_cache);
        let input = self
            .add(op, inputs, Some(step.platform.clone()), meta)
            .map_err(fail)?;
        Ok(Some(input))
    }

    /// BuildKit's RUN progress text: the instruction as written (plus a
    /// one-line summary of a whole-command heredoc), variables expanded
    /// with quotes kept and unset ones left alone, secret env values
    /// masked.
    fn run_name(&self, run: &Run, step: &Step) -> String {
        let mut text = run.meta.code.clone();
        let args = run.cmd.args();
        if let (Some(first), [only]) = (run.heredocs.first(), args.as_slice()) {
            if run.cmd.prepend_shell() && must_parse_heredoc(only).is_some() {
                text.push_str(&format!(" ({})", summarize_heredoc(&first.data)));
            }
        }
        let mut lex = Lex::new(self.plan.escape);
        lex.raw_quotes = true;
        lex.skip_unset_env = true;
        let mut env: EnvList = step.env.clone();
        for m in &run.mounts {
            if let (MountType::Secret, Some(var)) = (m.mount_type, &m.env) {
                env.set(var.clone(), "****");
            }
        }
        StageCx::display(&lex, &text, &env)
    }

    /// A bind, cache or tmpfs mount, with the state it reads (its `input`
    /// is set once all mounts are sorted).
    fn fs_mount(
        &mut self,
        cx: &StageCx,
        step: &Step,
        m: &RunMount,
        source: Option<&Source>,
        location: Range,
    ) -> std::result::Result<(Mount, State), LowerError> {
        let dest = if path_clean(&m.target).starts_with('/') {
            m.target.clone()
        } else {
            path_clean(&format!("/{}/{}", step.workdir, m.target))
        };
        if dest == "/" {
            return Err(LowerError::MountTarget(dest));
        }
        let selected = path_clean(&format!("/{}", m.source));

        let mut state: State = match (m.mount_type, source) {
            // tmpfs always starts empty, whatever `from=` says.
            (MountType::Tmpfs, _) => None,
            (_, Some(source)) => self.source_state(source, location)?,
            (MountType::Cache, None) => None,
            (_, None) => {
                let include = selected.trim_start_matches('/').to_string();
                Some(self.context_source(&[include], &[], location)?)
            }
        };
        let mut selector = selected.clone();
        let owned = m.uid.is_some() || m.gid.is_some() || m.mode.is_some();
        if selected == "/" && owned {
            // BuildKit gives a cache its owner and mode by seeding it from
            // a directory created with them.
            state = Some(self.cache_dir(cx, step, m, state, location)?);
            selector = "/cache".into();
        }
        let kind = match m.mount_type {
            MountType::Cache => MountKind::Cache {
                id: if m.cache_id.is_empty() {
                    path_clean(&m.target)
                } else {
                    m.cache_id.clone()
                },
                sharing: match m.sharing {
                    None | Some(Sharing::Shared) => CacheSharing::Shared,
                    Some(Sharing::Private) => CacheSharing::Private,
                    Some(Sharing::Locked) => CacheSharing::Locked,
                },
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
            },
            MountType::Tmpfs => MountKind::Tmpfs {
                size: u64::try_from(m.size_limit).ok().filter(|&s| s > 0),
            },
            _ => MountKind::Bind,
        };
        let mount = Mount {
            input: None,
            selector,
            dest,
            output: None,
            readonly: m.read_only,
            kind,
        };
        Ok((mount, state))
    }

    /// `/cache` with the mount's uid, gid and mode, on `base`.
    fn cache_dir(
        &mut self,
        cx: &StageCx,
        step: &Step,
        m: &RunMount,
        base: State,
        location: Range,
    ) -> std::result::Result<crate::llb::Input, LowerError> {
        let mut inputs = InputSet::default();
        let input = base.as_ref().map(|b| inputs.index(b));
        let op = Op::File(FileOp {
            actions: vec![FileAction {
                input,
                secondary_input: None,
                action: FileActionKind::Mkdir {
                    path: "/cache".into(),
                    mode: m.mode.unwrap_or(0o755) & 0o777,
                    make_parents: false,
                    owner: Some(ChownOpt {
                        user: UserOpt::Id(m.uid.unwrap_or(0)),
                        group: Some(UserOpt::Id(m.gid.unwrap_or(0))),
                    }),
                    timestamp: None,
                },
            }],
        });
        let meta = self.metadata(
            "[internal] setting cache mount permissions".into(),
            location,
            cx.ignore_cache,
        );
        self.add(op, inputs, Some(step.platform.clone()), meta)
    }
}

/// `--mount=type=secret`: BuildKit's id and destination defaults.
fn secret_mount(m: &RunMount) -> Mount {
    let mut id = if m.source.is_empty() {
        m.cache_id.clone()
    } else {
        m.source.clone()
    };
    if id.is_empty() {
        id = go_base(&m.target);
    }
    let dest = match (&m.env, m.target.is_empty()) {
        (None, true) => format!("/run/secrets/{}", go_base(&id)),
        _ => m.target.clone(),
    };
    Mount {
        input: None,
        selector: "/".into(),
        dest,
        output: None,
        readonly: true,
        kind: MountKind::Secret(SecretOpt {
            id,
            uid: m.uid.unwrap_or(0),
            gid: m.gid.unwrap_or(0),
            mode: m.mode.unwrap_or(0o400),
            optional: !m.required,
            env: m.env.clone(),
        }),
    }
}

/// `--mount=type=ssh`, the `n`th of its RUN.
fn ssh_mount(m: &RunMount, n: usize) -> Mount {
    Mount {
        input: None,
        selector: "/".into(),
        dest: if m.target.is_empty() {
            format!("/run/buildkit/ssh_agent.{n}")
        } else {
            m.target.clone()
        },
        output: None,
        readonly: true,
        kind: MountKind::Ssh(SshOpt {
            id: if m.cache_id.is_empty() {
                "default".into()
            } else {
                m.cache_id.clone()
            },
            uid: m.uid.unwrap_or(0),
            gid: m.gid.unwrap_or(0),
            mode: m.mode.unwrap_or(0o600),
            optional: !m.required,
        }),
    }
}

/// The proxy variables as BuildKit's executor sets them: each in upper and
/// lower case.
fn proxy_env(p: &ProxyEnv) -> Vec<String> {
    let mut out = Vec::new();
    for (upper, value) in [
        ("HTTP_PROXY", &p.http_proxy),
        ("HTTPS_PROXY", &p.https_proxy),
        ("FTP_PROXY", &p.ftp_proxy),
        ("NO_PROXY", &p.no_proxy),
        ("ALL_PROXY", &p.all_proxy),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            out.push(format!("{upper}={v}"));
            out.push(format!("{}={v}", upper.to_lowercase()));
        }
    }
    out
}

/// The first line of a heredoc, `...` if there are more.
fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim().replace("\r\n", "\n");
    let mut lines = doc.split('\n');
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        first + "..."
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_summary() {
        assert_eq!(summarize_heredoc("\n  set -e\necho hi\n"), "set -e...");
        assert_eq!(summarize_heredoc("one line\n"), "one line");
    }

    #[test]
    fn proxies_in_both_cases() {
        let p = ProxyEnv {
            http_proxy: Some("http://p:3128".into()),
            no_proxy: Some(String::new()),
            ..ProxyEnv::default()
        };
        assert_eq!(
            proxy_env(&p),
            ["HTTP_PROXY=http://p:3128", "http_proxy=http://p:3128"]
        );
    }
}
