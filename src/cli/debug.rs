//! `bk debug …`: developer views of what bk makes of a Dockerfile.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::build::{dockerfile_path, DockerfileText};
use super::build_opts;
use crate::dockerfile;
use crate::image::Platform;
use crate::llb;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print the Dockerfile's syntax tree in BuildKit's dump format
    Parse {
        /// Dockerfile to read (`-` for standard input)
        file: String,
    },
    /// Print the build graph (LLB) as JSON lines, or as a Graphviz digraph
    DumpLlb(DumpLlbArgs),
}

/// The flags of `bk debug dump-llb`: the subset of `bk build`'s that shape
/// the graph.
#[derive(Debug, Args)]
pub struct DumpLlbArgs {
    /// Build context
    #[arg(default_value = ".", value_name = "CONTEXT")]
    pub context: String,

    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` for standard input)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,

    /// Stage to build
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Target platform (os/arch[/variant])
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<Platform>,

    /// Mark every step as not cacheable
    #[arg(long = "no-cache")]
    pub no_cache: bool,

    /// Print a Graphviz digraph instead of JSON lines
    #[arg(long)]
    pub dot: bool,
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
        DebugCommand::DumpLlb(args) => dump_llb(args),
    }
}

/// Parse → plan → lower, then print the graph. Findings go to standard
/// error so the graph on standard output stays machine-readable.
fn dump_llb(args: DumpLlbArgs) -> anyhow::Result<ExitCode> {
    let build_args = args
        .build_args
        .iter()
        .map(|a| build_opts::build_arg(a, |k| std::env::var(k).ok()))
        .filter_map(Result::transpose)
        .collect::<Result<Vec<_>, _>>()?;
    let dockerfile = DockerfileText::read(&dockerfile_path(args.file.as_deref(), &args.context)?)?;
    let ast = dockerfile.parse()?;
    dockerfile.print_warnings(&ast);
    let plan_opts = dockerfile::PlanOptions {
        build_args,
        target: args.target,
        build_platform: Platform::host(),
        target_platform: args.platform,
        labels: Vec::new(),
        named_contexts: Default::default(),
    };
    // Debug dumps never touch the network: image bases get empty configs.
    let plan = dockerfile.plan(&ast, &plan_opts, &dockerfile::NoBaseImages)?;
    dockerfile.print_plan_warnings(&plan);
    let lower_opts = dockerfile::LowerOptions {
        no_cache: args.no_cache,
        ..dockerfile::LowerOptions::default()
    };
    let lowered = dockerfile.lower(&plan, &lower_opts)?;
    let text = if args.dot {
        llb::to_dot(&lowered.definition)
    } else {
        llb::to_json_lines(&lowered.definition)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
