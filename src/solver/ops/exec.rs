//! Exec ops (`RUN`): not runnable yet. Running a process needs the
//! rootless runner (user namespace, mounts, a root filesystem made from
//! the input snapshot), which does not exist yet; until it does, an exec
//! vertex fails with a message that says so instead of pretending.
//!
//! Imports `llb` and the solver's error type only.

use crate::llb::ExecOp;
use crate::solver::VertexError;

/// Fails: see the module documentation.
pub fn run(exec: &ExecOp) -> VertexError {
    VertexError::NotSupported {
        what: "RUN".into(),
        detail: format!(
            "the rootless runner is not built yet; cannot run {}",
            shown_command(exec)
        ),
    }
}

/// The command as a user would recognise it: `sh -c` scripts as the
/// script, exec form as its words.
fn shown_command(exec: &ExecOp) -> String {
    let args = &exec.meta.args;
    let text = match args.as_slice() {
        [shell, flag, script] if flag == "-c" && shell.ends_with("sh") => script.clone(),
        _ => format!("{args:?}"),
    };
    const LIMIT: usize = 80;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("`{}…`", &text[..cut]),
        None => format!("`{text}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llb::{ExecMeta, NetMode, SecurityMode};

    fn exec(args: &[&str]) -> ExecOp {
        ExecOp {
            meta: ExecMeta {
                args: args.iter().map(|a| a.to_string()).collect(),
                env: vec![],
                cwd: "/".into(),
                user: String::new(),
                hostname: String::new(),
                proxy_env: vec![],
            },
            mounts: vec![],
            network: NetMode::Sandbox,
            security: SecurityMode::Sandbox,
        }
    }

    #[test]
    fn names_run_and_the_command() {
        let err = run(&exec(&["/bin/sh", "-c", "make all"])).to_string();
        assert!(
            err.starts_with("not supported yet: RUN (the rootless runner is not built yet"),
            "{err}"
        );
        assert!(err.contains("`make all`"), "{err}");
        let err = run(&exec(&["echo", "hi"])).to_string();
        assert!(err.contains(r#"`["echo", "hi"]`"#), "{err}");
        let long = "x".repeat(200);
        assert!(run(&exec(&["sh", "-c", &long])).to_string().contains("x…`"));
    }
}
