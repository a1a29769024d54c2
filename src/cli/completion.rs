//! `bk completion SHELL`: prints the completion script clap derives from
//! the command definition (install.sh writes them into `completions/`).

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: Shell,
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut super::command(), "bk", &mut out);
    out
}

pub fn run(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    std::io::stdout().write_all(&script(args.shell))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_mention_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(script(shell)).unwrap();
            assert!(text.contains("build"), "{shell}: no build subcommand");
            assert!(text.contains("build-arg"), "{shell}: no --build-arg");
        }
    }
}
