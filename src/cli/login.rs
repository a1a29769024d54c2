//! `bk login [-u USER] [-p PASS | --password-stdin] [SERVER]`: checks
//! the credentials against the registry, then saves them where Docker
//! would and bk reads them ([`crate::registry::auth`]): the configured
//! credential helper, else `auths` in Docker's `config.json`. SERVER is
//! `host[:port]` (a URL's scheme and path are dropped, as Docker does);
//! none means Docker Hub. Missing values are prompted for only on a
//! terminal, the password without echo.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;

use crate::registry::auth::{self, StoredIn};
use crate::registry::login::check_login;
use crate::registry::{insecure_from_env, RegistryError};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users of this machine: prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// Allow plain HTTP or an unverified certificate for the registry
    #[arg(long)]
    pub insecure: bool,
    /// Registry host[:port] (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

/// The registry host `server` names: `docker.io` for Docker Hub's
/// names, otherwise `host[:port]` without a URL's scheme or path.
pub(super) fn registry_host(server: Option<&str>) -> anyhow::Result<String> {
    let Some(server) = server else {
        return Ok("docker.io".into());
    };
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        bail!("invalid registry address {server:?}: expected host[:port]");
    }
    Ok(match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.into(),
    })
}

pub fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let host = registry_host(args.server.as_deref())?;
    let shown = auth::server_address(&host);
    let interactive = std::io::stdin().is_terminal();
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if args.password_stdin && args.username.is_none() {
        bail!("Must provide --username with --password-stdin");
    }
    let user = match args.username {
        Some(user) => user,
        None if interactive => prompt("Username: ", true)?,
        None => bail!(
            "no username for {shown}: give -u USER (standard input is not a terminal to ask on)"
        ),
    };
    let user = user.trim().to_string();
    if user.is_empty() {
        bail!("Username cannot be empty");
    }
    let password = match args.password {
        Some(password) => password,
        None if args.password_stdin => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("failed to read the password from standard input")?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            text.strip_suffix('\r').unwrap_or(text).to_string()
        }
        None if interactive => prompt("Password: ", false)?,
        None => bail!(
            "no password for {shown}: give --password-stdin (standard input is not a terminal to ask on)"
        ),
    };
    if password.is_empty() {
        bail!("Password Required");
    }

    let mut insecure = insecure_from_env();
    if args.insecure {
        insecure.push(host.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the login's runtime")?;
    match runtime.block_on(check_login(&host, &user, &password, &insecure)) {
        Ok(()) => {}
        Err(RegistryError::Unauthorized { .. }) => bail!(
            "Error response from registry {host}: login failed: unauthorized: incorrect username or password"
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("failed to log in to {host}")))
        }
    }
    let stored = auth::store_credentials(&host, &user, &password)
        .with_context(|| format!("failed to save the credentials for {shown}"))?;
    if let StoredIn::File(path) = stored {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.\n\
             Configure a credential helper to remove this warning. See\n\
             https://docs.docker.com/go/credential-store/",
            path.display()
        );
    }
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Asks for one line on the terminal (standard error for the prompt);
/// `echo: false` turns the terminal's echo off meanwhile.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    // Echo off through termios (nix's `term` feature): no extra crate
    // for one flag.
    let saved = if echo {
        None
    } else {
        let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn off the echo")?;
        Some(saved)
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.context("failed to read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
