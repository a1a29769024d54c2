//! `bk debug dump-llb` output: one JSON object per vertex (digest, op,
//! inputs, platform, progress name), or a Graphviz digraph.

use serde::Serialize;

use super::definition::{Definition, Digest, Input, Metadata, Vertex};

#[derive(Serialize)]
struct Line<'a> {
    digest: &'a Digest,
    #[serde(flatten)]
    vertex: &'a Vertex,
    #[serde(skip_serializing_if = "is_default")]
    metadata: &'a Metadata,
}

fn is_default(m: &&Metadata) -> bool {
    **m == Metadata::default()
}

#[derive(Serialize)]
struct RootLine<'a> {
    root: &'a Option<Input>,
}

/// The reachable vertices, inputs first, then a `{"root": …}` line.
pub fn to_json_lines(def: &Definition) -> String {
    let mut out = String::new();
    for digest in def.reachable() {
        if let Some((vertex, metadata)) = def.get(digest) {
            let line = Line {
                digest,
                vertex,
                metadata,
            };
            out.push_str(&serde_json::to_string(&line).unwrap_or_default());
            out.push('\n');
        }
    }
    out.push_str(&serde_json::to_string(&RootLine { root: &def.root }).unwrap_or_default());
    out.push('\n');
    out
}

/// A Graphviz digraph of the reachable vertices, edges from input to user.
pub fn to_dot(def: &Definition) -> String {
    let mut out = String::from("digraph llb {\n  rankdir=\"BT\";\n  node [shape=box];\n");
    for digest in def.reachable() {
        let Some((vertex, metadata)) = def.get(digest) else {
            continue;
        };
        let label = if metadata.name.is_empty() {
            vertex.op.kind().to_string()
        } else {
            metadata.name.clone()
        };
        out.push_str(&format!(
            "  \"{}\" [label=\"{}\\n{}\"];\n",
            digest,
            dot_escape(&label),
            &digest.hex()[..12]
        ));
        for input in &vertex.inputs {
            out.push_str(&format!("  \"{}\" -> \"{}\";\n", input.digest, digest));
        }
    }
    out.push_str("}\n");
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::llb::{Op, SourceOp};

    #[test]
    fn json_lines_and_dot() {
        let mut def = Definition::new();
        let ctx = def
            .add(
                Vertex {
                    op: Op::Source(SourceOp {
                        identifier: "local://context".into(),
                        attrs: BTreeMap::new(),
                    }),
                    inputs: vec![],
                    platform: None,
                },
                Metadata {
                    name: "[internal] load \"context\"".into(),
                    ..Metadata::default()
                },
            )
            .unwrap();
        def.root = Some(ctx.clone());
        let json = to_json_lines(&def);
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["digest"], ctx.digest.as_str());
        assert_eq!(lines[0]["op"]["source"]["identifier"], "local://context");
        assert_eq!(lines[1]["root"]["digest"], ctx.digest.as_str());
        let dot = to_dot(&def);
        assert!(dot.starts_with("digraph llb {"));
        assert!(dot.contains("[internal] load \\\"context\\\""));
    }
}
