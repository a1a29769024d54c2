use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A RUN sandbox is this binary again; it must start before anything
    // else (it forks and unshares, which needs a single thread).
    if let Some(code) = bk::rootless::sandbox::main_if_requested() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = bk::cli::parse();
    let result = bk::cli::enter_namespaces(&cli).and_then(|entered| match entered {
        Some(code) => Ok(code),
        None => bk::cli::run(cli),
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            // A closed stdout (`bk debug parse F | head`) is not a failure.
            let broken_pipe = err.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            let mut stderr = std::io::stderr().lock();
            // Dockerfile errors show the offending lines first, like BuildKit.
            if let Some(snippet) = err
                .downcast_ref::<bk::cli::SourceError>()
                .and_then(|e| e.snippet.as_deref())
            {
                let _ = writeln!(stderr, "{snippet}");
            }
            let _ = writeln!(stderr, "ERROR: {err:#}");
            ExitCode::from(1)
        }
    }
}
