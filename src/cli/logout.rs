//! `bk logout [SERVER]`: removes the credentials `bk login` saved for
//! SERVER (Docker Hub when none) from the credential helper and from
//! Docker's `config.json`. Not being logged in is not an error, as with
//! Docker: it is said, and the exit status is 0.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::login::registry_host;
use crate::registry::auth;

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

pub fn run(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let host = registry_host(args.server.as_deref())?;
    let shown = auth::server_address(&host);
    let found = auth::erase_credentials(&host)
        .with_context(|| format!("failed to remove the credentials for {shown}"))?;
    if found {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(ExitCode::SUCCESS)
}
