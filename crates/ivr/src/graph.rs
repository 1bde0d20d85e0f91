//! Diagrams of a flow (Mermaid or Graphviz dot) for `santral flow graph`.

use std::fmt::Write;

use crate::flowset::Flow;
use crate::model::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

/// Labelled edges of a step: menu keys and branch cases get their own labels.
fn labelled_edges(step: &Step) -> Vec<(String, String)> {
    match step {
        Step::Menu(m) => {
            let mut out: Vec<(String, String)> = m
                .choices
                .0
                .iter()
                .map(|(k, t)| (k.value.clone(), t.value.clone()))
                .collect();
            out.push(("fail".to_owned(), m.on_failure.value.clone()));
            out
        }
        Step::Branch(b) => {
            let mut out: Vec<(String, String)> = b
                .cases
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let label = c
                        .when
                        .var
                        .as_ref()
                        .map(|v| v.value.clone())
                        .unwrap_or_else(|| format!("case {}", i + 1));
                    (label, c.next.value.clone())
                })
                .collect();
            out.push(("default".to_owned(), b.default.value.clone()));
            out
        }
        other => other
            .edges()
            .into_iter()
            .map(|(label, t)| (label.trim_start_matches("on_").to_owned(), t.value.clone()))
            .collect(),
    }
}

fn node_id(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn quote(text: &str) -> String {
    text.replace('"', "'")
}

pub fn render(flow: &Flow, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart TD\n");
            let _ = writeln!(out, "    start((start)) --> s_{}", node_id(&flow.def.start));
            for (name, step) in flow.def.steps.iter() {
                let id = node_id(name);
                let label = quote(&format!("{}: {}", name.value, step.value.kind()));
                let shape = match step.value {
                    Step::Menu(_) | Step::Branch(_) | Step::Hours(_) => format!("{{\"{label}\"}}"),
                    Step::Hangup(_) | Step::Goto(_) => format!("([\"{label}\"])"),
                    _ => format!("[\"{label}\"]"),
                };
                let _ = writeln!(out, "    s_{id}{shape}");
                if let Step::Goto(g) = &step.value {
                    let _ = writeln!(
                        out,
                        "    s_{id} -.-> flow_{}[[\"flow {}\"]]",
                        node_id(&g.flow),
                        quote(&g.flow)
                    );
                }
                for (label, target) in labelled_edges(&step.value) {
                    let _ = writeln!(
                        out,
                        "    s_{id} -->|\"{}\"| s_{}",
                        quote(&label),
                        node_id(&target)
                    );
                }
            }
        }
        GraphFormat::Dot => {
            let _ = writeln!(out, "digraph \"{}\" {{", quote(&flow.name));
            out.push_str("    rankdir=TB;\n    node [shape=box, fontname=\"sans-serif\"];\n");
            let _ = writeln!(
                out,
                "    \"(start)\" [shape=circle];\n    \"(start)\" -> \"{}\";",
                quote(&flow.def.start)
            );
            for (name, step) in flow.def.steps.iter() {
                let shape = match step.value {
                    Step::Menu(_) | Step::Branch(_) | Step::Hours(_) => "diamond",
                    Step::Hangup(_) | Step::Goto(_) => "oval",
                    _ => "box",
                };
                let _ = writeln!(
                    out,
                    "    \"{}\" [label=\"{}\\n({})\", shape={shape}];",
                    quote(name),
                    quote(name),
                    step.value.kind()
                );
                if let Step::Goto(g) = &step.value {
                    let _ = writeln!(
                        out,
                        "    \"flow:{0}\" [label=\"flow {0}\", shape=folder];\n    \"{1}\" -> \"flow:{0}\" [style=dashed];",
                        quote(&g.flow),
                        quote(name)
                    );
                }
                for (label, target) in labelled_edges(&step.value) {
                    let _ = writeln!(
                        out,
                        "    \"{}\" -> \"{}\" [label=\"{}\"];",
                        quote(name),
                        quote(&target),
                        quote(&label)
                    );
                }
            }
            out.push_str("}\n");
        }
    }
    out
}
