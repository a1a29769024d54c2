//! `bk debug …`: developer views of what bk makes of a Dockerfile.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use super::build::DockerfileText;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print the Dockerfile's syntax tree in BuildKit's dump format
    Parse {
        /// Dockerfile to read (`-` for standard input)
        file: String,
    },
    /// Print the build graph (LLB) as JSON lines
    DumpLlb {
        /// Build context
        #[arg(default_value = ".")]
        context: String,
    },
}

pub fn run(cmd: DebugCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DebugCommand::Parse { file } => {
            let text = DockerfileText::read(&file)?;
            let ast = text.parse()?;
            let mut out = std::io::stdout().lock();
            out.write_all(ast.dump().as_bytes())?;
            text.print_warnings(&ast);
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::DumpLlb { .. } => {
            bail!("not supported yet: debug dump-llb (bk does not build an LLB graph yet)")
        }
    }
}
