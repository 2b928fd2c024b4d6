//! `fixbot diagnose`: what the bot makes of a message, as text or as the JSON
//! object of the CLI contract; `--batch` reads JSON Lines and answers one
//! object per line, in order.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use fixbot_core::engine::diagnose_text;
use fixbot_core::flow::Flows;
use fixbot_core::matcher::{Diagnosis, Verdict};
use serde_json::{Value, json};

use crate::flows;

/// Arguments of `fixbot diagnose`.
#[derive(Debug, clap::Args)]
pub struct DiagnoseArgs {
    /// Directory holding the flow files.
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Read JSON Lines from stdin (each line one JSON string) and print one
    /// JSON object per line.
    #[arg(long, conflicts_with = "text")]
    batch: bool,
    /// The message; read from stdin when absent.
    text: Option<String>,
}

/// Runs the command.
pub fn run(args: DiagnoseArgs) -> anyhow::Result<()> {
    let flows = flows::load_for_command(args.flows.as_deref())?;
    if args.batch {
        return batch(&flows);
    }
    let text = match args.text {
        Some(text) => text,
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).context("reading the message from stdin")?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    let diagnosis = diagnose_text(&flows, &text);
    if args.json {
        println!("{}", to_json(&flows, &diagnosis));
    } else {
        print!("{}", to_text(&flows, &diagnosis));
    }
    Ok(())
}

fn batch(flows: &Flows) -> anyhow::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for (index, line) in stdin.split(b'\n').enumerate() {
        let line = line.context("reading stdin")?;
        let line = String::from_utf8_lossy(&line);
        if line.trim().is_empty() {
            continue;
        }
        // A bad line still gets its own line of output, so answers stay
        // aligned with questions.
        let answer = match serde_json::from_str::<String>(&line) {
            Ok(text) => to_json(flows, &diagnose_text(flows, &text)),
            Err(error) => {
                let mut object = to_json(flows, &Diagnosis::unknown());
                object["error"] = json!(format!("line {}: expected a JSON string: {error}", index + 1));
                object
            }
        };
        writeln!(stdout, "{answer}")?;
    }
    stdout.flush()?;
    Ok(())
}

/// The contract's object: symptom (or null when the bot would not commit),
/// platform, best score, every scored candidate, captures.
fn to_json(flows: &Flows, diagnosis: &Diagnosis) -> Value {
    let symptom = match diagnosis.verdict {
        Verdict::Symptom(flow) => json!(flows.at(flow).id),
        Verdict::Unsure(_) | Verdict::Unknown => Value::Null,
    };
    let candidates: Vec<Value> =
        diagnosis.scores.iter().map(|&(flow, score)| json!({ "symptom": flows.at(flow).id, "score": score })).collect();
    json!({
        "symptom": symptom,
        "platform": diagnosis.platform.map(|platform| platform.as_str()),
        "score": diagnosis.best().map_or(0, |(_, score)| score),
        "candidates": candidates,
        "captures": diagnosis.captures,
    })
}

fn to_text(flows: &Flows, diagnosis: &Diagnosis) -> String {
    let mut out = String::new();
    match &diagnosis.verdict {
        Verdict::Symptom(flow) => {
            let flow = flows.at(*flow);
            out.push_str(&format!("symptom: {} ({})\n", flow.id, flow.title));
        }
        Verdict::Unsure(_) => out.push_str("symptom: none (the bot would ask which of the candidates fits)\n"),
        Verdict::Unknown => out.push_str("symptom: none (nothing recognised)\n"),
    }
    out.push_str(&format!("platform: {}\n", diagnosis.platform.map_or("unknown", |p| p.as_str())));
    for &(flow, score) in &diagnosis.scores {
        out.push_str(&format!("  {score:>4}  {}\n", flows.at(flow).id));
    }
    for (name, value) in &diagnosis.captures {
        out.push_str(&format!("capture {name}: {value}\n"));
    }
    out
}
