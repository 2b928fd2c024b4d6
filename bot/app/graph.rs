//! `fixbot graph`: one flow drawn as a Mermaid or Graphviz diagram, so an
//! author can see its steps, the choices between them as labelled edges, and
//! where it ends (resolved, a person, another flow) before any user does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::bail;
use fixbot_core::flow::{Flow, Flows, Goto, Platform};

use crate::flows;

/// Arguments of `fixbot graph`.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The flow: its id (`cloud_storage_full`) or its file (`flows/cloud_storage_full.yaml`).
    #[arg(value_name = "FLOW")]
    flow: String,
    /// Directory holding the flow files [default: the FLOW file's directory, else ./flows].
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,
    /// The diagram's syntax.
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    format: Format,
}

/// A diagram syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Mermaid flowchart, as GitHub and GitLab render in Markdown.
    Mermaid,
    /// Graphviz DOT, for `dot -Tsvg`.
    Dot,
}

/// Prints the diagram of the flow named on the command line.
pub fn run(args: GraphArgs) -> anyhow::Result<()> {
    // A path names its flow by its stem and its directory by its parent.
    let as_path = Path::new(&args.flow);
    let is_path = args.flow.contains(['/', '\\']) || args.flow.ends_with(".yaml") || args.flow.ends_with(".yml");
    let (id, dir) = match is_path {
        true => {
            let stem = as_path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
            let parent = as_path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
            (stem.to_owned(), args.flows.clone().or_else(|| Some(parent.to_path_buf())))
        }
        false => (args.flow.clone(), args.flows.clone()),
    };
    let flows = flows::load_for_command(dir.as_deref())?;
    let Some(flow) = flows.get(&id) else {
        let ids: Vec<&str> = flows.iter().map(|flow| flow.id.as_str()).collect();
        bail!("there is no flow `{id}`; the flows are: {}", ids.join(", "));
    };
    let graph = Graph::of(&flows, flow);
    print!(
        "{}",
        match args.format {
            Format::Mermaid => graph.to_mermaid(),
            Format::Dot => graph.to_dot(),
        }
    );
    Ok(())
}

/// What a node stands for; each kind is drawn in its own shape and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Where a case enters the flow, labelled with the flow's title.
    Start,
    /// A step of the flow.
    Step,
    /// The case ends fixed.
    Resolved,
    /// The case goes to a person.
    Escalate,
    /// The case continues in another flow.
    Flow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    /// Lower-case letters, digits and `_` only, so no syntax needs it quoted.
    id: String,
    kind: Kind,
    label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    from: String,
    to: String,
    /// Empty for an unlabelled edge.
    label: String,
}

/// A flow as nodes and edges, before any syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Graph {
    name: String,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

/// Where a choice leads a user of one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Step(usize),
    Resolved,
    Escalate,
    Flow(String),
}

/// Longest step text shown in a step's box.
const PREVIEW_CHARS: usize = 48;

impl Graph {
    /// Draws `flow` as the engine walks it: `next` and jumps land on the first
    /// step from there that applies to the user's platform, and running out of
    /// steps hands the case to a person. Where the platforms part ways, each
    /// edge says which platform takes it.
    fn of(flows: &Flows, flow: &Flow) -> Graph {
        let labels = &flows.bot().labels;
        let platform_name = |platform: Platform| match platform {
            Platform::Ios => labels.ios.as_str(),
            Platform::Android => labels.android.as_str(),
        };
        let mut graph = Graph { name: flow.id.clone(), nodes: Vec::new(), edges: Vec::new() };
        graph.nodes.push(Node { id: "start".to_owned(), kind: Kind::Start, label: flow.title.clone() });
        for step in &flow.steps {
            let text = step.ios.as_ref().or(step.android.as_ref()).map(|text| text.render().to_plain());
            let mut label = format!("{}\n{}", step.id, preview(text.as_deref().unwrap_or_default()));
            match (&step.ios, &step.android) {
                (Some(_), None) => write!(label, "\n({} only)", labels.ios),
                (None, Some(_)) => write!(label, "\n({} only)", labels.android),
                _ if step.differs_by_platform => write!(label, "\n({} and {} differ)", labels.ios, labels.android),
                _ => Ok(()),
            }
            .expect("writing to a String");
            graph.nodes.push(Node { id: step_node(&step.id), kind: Kind::Step, label });
        }

        let mut ends: Vec<Target> = Vec::new();
        let mut connect =
            |graph: &mut Graph, from: &str, label: &str, lead: &dyn Fn(Platform) -> Target, on: &[Platform]| {
                let targets: Vec<(Platform, Target)> = on.iter().map(|&platform| (platform, lead(platform))).collect();
                let same = targets.windows(2).all(|pair| pair[0].1 == pair[1].1);
                for (index, (platform, target)) in targets.iter().enumerate() {
                    if same && index > 0 {
                        break;
                    }
                    let label = match (same, label.is_empty()) {
                        (true, _) => label.to_owned(),
                        (false, true) => platform_name(*platform).to_owned(),
                        (false, false) => format!("{label} ({})", platform_name(*platform)),
                    };
                    if !matches!(target, Target::Step(_)) && !ends.contains(target) {
                        ends.push(target.clone());
                    }
                    graph.edges.push(Edge { from: from.to_owned(), to: target_node(flow, target), label });
                }
            };

        let both = [Platform::Ios, Platform::Android];
        connect(&mut graph, "start", "", &|platform| enter(flow, 0, platform), &both);
        for (index, step) in flow.steps.iter().enumerate() {
            let on: Vec<Platform> = both.into_iter().filter(|&platform| step.text_for(platform).is_some()).collect();
            for choice in &step.choices {
                let lead = |platform| match &choice.goto {
                    Goto::Next => enter(flow, index + 1, platform),
                    Goto::Step(target) => enter(flow, *target, platform),
                    Goto::Resolved => Target::Resolved,
                    Goto::Escalate => Target::Escalate,
                    Goto::Flow(id) => Target::Flow(id.clone()),
                };
                connect(&mut graph, &step_node(&step.id), &choice.label, &lead, &on);
            }
        }

        for end in ends {
            let (kind, label) = match &end {
                Target::Resolved => (Kind::Resolved, "resolved".to_owned()),
                Target::Escalate => (Kind::Escalate, "escalate: a person takes over".to_owned()),
                Target::Flow(id) => {
                    let title = flows.get(id).map(|other| other.title.as_str()).unwrap_or_default();
                    (Kind::Flow, format!("flow:{id}\n{title}"))
                }
                Target::Step(_) => continue,
            };
            graph.nodes.push(Node { id: target_node(flow, &end), kind, label });
        }
        graph
    }

    /// Mermaid `flowchart` syntax. Every label is quoted, with the characters
    /// Mermaid would read as syntax or HTML written as `#code;` entities.
    fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for node in &self.nodes {
            let label = mermaid_text(&node.label);
            let shape = match node.kind {
                Kind::Start => format!("([\"{label}\"])"),
                Kind::Step => format!("[\"{label}\"]"),
                Kind::Resolved => format!("(((\"{label}\")))"),
                Kind::Escalate => format!("{{{{\"{label}\"}}}}"),
                Kind::Flow => format!("[[\"{label}\"]]"),
            };
            writeln!(out, "    {}{shape}", node.id).expect("writing to a String");
        }
        for edge in &self.edges {
            match edge.label.is_empty() {
                true => writeln!(out, "    {} --> {}", edge.from, edge.to),
                false => writeln!(out, "    {} -->|\"{}\"| {}", edge.from, mermaid_text(&edge.label), edge.to),
            }
            .expect("writing to a String");
        }
        for (kind, class, style) in STYLES {
            let members: Vec<&str> =
                self.nodes.iter().filter(|node| node.kind == kind).map(|node| node.id.as_str()).collect();
            if !members.is_empty() {
                writeln!(out, "    classDef {class} {}", style.mermaid).expect("writing to a String");
                writeln!(out, "    class {} {class}", members.join(",")).expect("writing to a String");
            }
        }
        out
    }

    /// Graphviz DOT syntax, every id and label a quoted string.
    fn to_dot(&self) -> String {
        let mut out = format!("digraph \"{}\" {{\n", dot_text(&self.name));
        out.push_str(
            "    node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];\n",
        );
        out.push_str("    edge [fontname=\"Helvetica\", fontsize=10];\n");
        for node in &self.nodes {
            let style = STYLES.iter().find(|(kind, _, _)| *kind == node.kind).map(|(_, _, style)| style.dot);
            write!(out, "    \"{}\" [label=\"{}\"", node.id, dot_text(&node.label)).expect("writing to a String");
            if let Some(style) = style {
                write!(out, ", {style}").expect("writing to a String");
            }
            out.push_str("];\n");
        }
        for edge in &self.edges {
            write!(out, "    \"{}\" -> \"{}\"", edge.from, edge.to).expect("writing to a String");
            if !edge.label.is_empty() {
                write!(out, " [label=\"{}\"]", dot_text(&edge.label)).expect("writing to a String");
            }
            out.push_str(";\n");
        }
        out.push_str("}\n");
        out
    }
}

/// How one kind of node is drawn in each syntax.
struct Style {
    mermaid: &'static str,
    dot: &'static str,
}

/// The kinds drawn apart from plain steps: the entry, and the three ends.
const STYLES: [(Kind, &str, Style); 4] = [
    (
        Kind::Start,
        "entry",
        Style { mermaid: "fill:#e8eaf6,stroke:#3949ab", dot: "shape=oval, fillcolor=\"#e8eaf6\", color=\"#3949ab\"" },
    ),
    (
        Kind::Resolved,
        "resolved",
        Style {
            mermaid: "fill:#d4edda,stroke:#2e7d32,stroke-width:2px",
            dot: "shape=doublecircle, style=filled, fillcolor=\"#d4edda\", color=\"#2e7d32\"",
        },
    ),
    (
        Kind::Escalate,
        "escalated",
        Style {
            mermaid: "fill:#fde2cf,stroke:#e65100,stroke-width:2px",
            dot: "shape=hexagon, style=filled, fillcolor=\"#fde2cf\", color=\"#e65100\"",
        },
    ),
    (
        Kind::Flow,
        "other_flow",
        Style {
            mermaid: "fill:#e3f2fd,stroke:#1565c0,stroke-dasharray:4 2",
            dot: "shape=box, style=\"filled,dashed\", fillcolor=\"#e3f2fd\", color=\"#1565c0\"",
        },
    ),
];

/// The first step from `from` on that applies to `platform`, as the engine
/// enters it; past the last one the case goes to a person.
fn enter(flow: &Flow, from: usize, platform: Platform) -> Target {
    (from..flow.steps.len())
        .find(|&index| flow.steps[index].text_for(platform).is_some())
        .map_or(Target::Escalate, Target::Step)
}

fn step_node(id: &str) -> String {
    format!("step_{}", node_id(id))
}

fn target_node(flow: &Flow, target: &Target) -> String {
    match target {
        Target::Step(index) => step_node(&flow.steps[*index].id),
        Target::Resolved => "resolved".to_owned(),
        Target::Escalate => "escalate".to_owned(),
        Target::Flow(id) => format!("flow_{}", node_id(id)),
    }
}

/// Ids are validated by the loader; this keeps a node id safe in every syntax
/// even if that rule is ever loosened.
fn node_id(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// The first line of a step's text, cut to fit a box.
fn preview(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
    match line.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None => line.to_owned(),
    }
}

/// Text for inside a Mermaid `"…"` label: quotes, `#` (which starts an
/// entity), `&`, angle brackets, backticks (which would start a Markdown
/// string) and `|` as numeric entities; line breaks as `<br>`; other control
/// characters as spaces. Unicode passes through as it is.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("<br>"),
            '"' | '#' | '&' | '<' | '>' | '`' | '|' => write!(out, "#{};", u32::from(c)).expect("writing to a String"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text for inside a DOT `"…"` string: backslashes doubled (so none starts an
/// escape such as `\N`), quotes escaped, line breaks as `\n`, other control
/// characters as spaces. DOT files are UTF-8, so Unicode passes through.
fn dot_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mermaid_labels_carry_no_syntax() {
        assert_eq!(mermaid_text("say \"hi\" #1 <b>|`x`"), "say #34;hi#34; #35;1 #60;b#62;#124;#96;x#96;");
        assert_eq!(mermaid_text("a\nb\tc → é [x] {y}"), "a<br>b c → é [x] {y}");
    }

    #[test]
    fn dot_labels_escape_quotes_backslashes_and_breaks() {
        assert_eq!(dot_text("C:\\N \"q\"\nnext"), "C:\\\\N \\\"q\\\"\\nnext");
        assert_eq!(dot_text("→ ü"), "→ ü");
    }

    #[test]
    fn previews_cut_on_characters() {
        let long = "é".repeat(60);
        assert_eq!(preview(&long).chars().count(), PREVIEW_CHARS + 1);
        assert_eq!(preview("\n  first line  \nsecond"), "first line");
    }
}
