//! `fixbot stats`: the outcome log of a store summed up per symptom and step
//! ([`fixbot_core::stats`]), printed as an aligned table, JSON or CSV, and
//! optionally written as a self-contained HTML report (`html.rs`).

mod html;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use fixbot_core::stats::{Stats, StepStats, SymptomStats};
use fixbot_core::store::Store as _;
use fixbot_core::text::parse_duration;
use fixbot_store::AnyStore;

use crate::config::{self, Env};
use crate::flows;

/// Arguments of `fixbot stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// The store: `sqlite:PATH` or `postgres://…` [default: FIXBOT_STORE, else sqlite:fixbot.db].
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Directory holding the flow files, for the titles of symptoms and steps.
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,
    /// Only outcomes of the last DURATION: 90s, 30m, 24h or 7d [default: every record kept].
    #[arg(long, value_name = "DURATION", value_parser = since)]
    since: Option<Since>,
    /// How to print the figures.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also write a self-contained HTML report (charts and tables) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// What `--format` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Aligned plain text.
    Table,
    /// One JSON object (see the README for its shape).
    Json,
    /// One row per symptom and step, with a header row.
    Csv,
}

/// A `--since` duration as written, and in seconds.
#[derive(Debug, Clone)]
struct Since {
    text: String,
    seconds: i64,
}

/// Reads `--since` with the parser the settings use, so a bad value is a
/// usage error that names the forms accepted.
fn since(text: &str) -> Result<Since, String> {
    match parse_duration(text) {
        Some(seconds) => Ok(Since { text: text.trim().to_owned(), seconds }),
        None => Err(format!("`{text}` is not a duration: write a number and s, m, h or d, such as 7d")),
    }
}

/// Runs the command.
pub async fn run(args: StatsArgs, env: Env<'_>) -> anyhow::Result<()> {
    let url = config::store_url(args.store, env)?;
    let flows = flows::load_for_command(args.flows.as_deref())?;
    // Opening a SQLite store creates the file; a report must not create an
    // empty store where a path was mistyped.
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))
        && !path.is_empty()
        && !Path::new(path).exists()
    {
        bail!("there is no store at {path}: check --store (or FIXBOT_STORE)");
    }
    let store = AnyStore::open(&url).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64);
    let cut = args.since.as_ref().map(|since| now - since.seconds);
    let records = store.outcomes(cut.unwrap_or(i64::MIN)).await.context("reading the outcome log")?;
    store.close().await;
    let stats = Stats::from_records(&records).with_flows(&flows);
    let period = match &args.since {
        Some(since) => format!("the last {}", since.text),
        None => "every record kept".to_owned(),
    };

    if let Some(path) = &args.html {
        std::fs::write(path, html::render(&stats, &period))
            .with_context(|| format!("writing the HTML report to {}", path.display()))?;
    }
    let output = match args.format {
        Format::Table => render_table(&stats, &period),
        Format::Json => render_json(&stats, cut),
        Format::Csv => render_csv(&stats),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(output.as_bytes()).and_then(|()| stdout.flush()).context("writing to stdout")
}

/// How a symptom is named: its title while its flow is loaded, else its id.
fn symptom_name(symptom: &SymptomStats) -> String {
    match (&symptom.title, &symptom.symptom) {
        (Some(title), _) => title.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => "(no symptom)".to_owned(),
    }
}

/// How a step is named: its title while its flow has it, else `flow/id`.
fn step_name(step: &StepStats) -> String {
    match (&step.title, &step.flow, &step.step) {
        (Some(title), _, _) => title.clone(),
        (None, Some(flow), Some(id)) => format!("{flow}/{id}"),
        (None, None, Some(id)) => id.clone(),
        (None, _, None) => "(before any step)".to_owned(),
    }
}

fn pct(value: f64) -> String {
    format!("{value:.1}")
}

/// `1 case`, `7 cases`.
fn cases(count: u64) -> String {
    match count {
        1 => "1 case".to_owned(),
        count => format!("{count} cases"),
    }
}

/// Rows of cells as aligned columns, two spaces apart: the first column
/// left-aligned, the figures right-aligned. Widths count characters.
fn aligned(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| rows.iter().filter_map(|row| row.get(column)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (column, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[column] - cell.chars().count());
            if column == 0 {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str("  ");
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn cells<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|cell| (*cell).to_owned()).collect()
}

/// The one sentence over every symptom that the table and the report open with.
fn overall(stats: &Stats, period: &str) -> String {
    let totals = &stats.totals;
    if totals.cases == 0 {
        return format!("No outcomes recorded in {period}.");
    }
    format!(
        "Outcomes of {period}: {}; {} resolved ({}%), {} escalated ({}%), {} abandoned ({}%), {} open.",
        cases(totals.cases),
        totals.resolved,
        pct(totals.resolved_pct),
        totals.escalated,
        pct(totals.escalated_pct),
        totals.abandoned,
        pct(totals.abandoned_pct),
        totals.open,
    )
}

/// The figures as aligned plain text: one line per symptom, then each
/// symptom's steps.
pub fn render_table(stats: &Stats, period: &str) -> String {
    if stats.totals.cases == 0 {
        return format!("{}\n", overall(stats, period));
    }
    let mut out = format!("{}\n\n", overall(stats, period));
    let mut rows = vec![cells(["symptom", "cases", "resolved %", "escalated %", "abandoned %", "open"])];
    for symptom in &stats.symptoms {
        let ends = &symptom.ends;
        rows.push(vec![
            symptom_name(symptom),
            ends.cases.to_string(),
            pct(ends.resolved_pct),
            pct(ends.escalated_pct),
            pct(ends.abandoned_pct),
            ends.open.to_string(),
        ]);
    }
    out.push_str(&aligned(&rows, ""));
    for symptom in &stats.symptoms {
        // The id beside the title; alone, the name is the id already.
        let id = match (&symptom.title, &symptom.symptom) {
            (Some(_), Some(id)) => format!(" ({id})"),
            _ => String::new(),
        };
        out.push_str(&format!("\n{}{id}: {}\n", symptom_name(symptom), cases(symptom.ends.cases)));
        let mut rows = vec![cells([
            "step",
            "cases",
            "fixed",
            "not fixed",
            "skipped",
            "abandoned",
            "escalated",
            "fixed %",
            "gave up %",
        ])];
        for step in &symptom.steps {
            rows.push(vec![
                step_name(step),
                step.cases.to_string(),
                step.fixed.to_string(),
                step.not_fixed.to_string(),
                step.skipped.to_string(),
                step.abandoned.to_string(),
                step.escalated.to_string(),
                pct(step.fixed_pct),
                pct(step.gave_up_pct),
            ]);
        }
        out.push_str(&aligned(&rows, "  "));
    }
    out
}

/// The figures as one JSON object: `since` (Unix seconds, or null for every
/// record kept), then [`Stats`] as it serialises.
pub fn render_json(stats: &Stats, since: Option<i64>) -> String {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        since: Option<i64>,
        #[serde(flatten)]
        stats: &'a Stats,
    }
    // Plain data with string keys always serialises.
    let mut json = serde_json::to_string_pretty(&Report { since, stats }).unwrap_or_default();
    json.push('\n');
    json
}

/// The CSV columns: the symptom's figures, repeated on each of its steps' rows.
const CSV_HEADER: [&str; 21] = [
    "symptom",
    "symptom_title",
    "cases",
    "resolved",
    "escalated",
    "abandoned",
    "open",
    "resolved_pct",
    "escalated_pct",
    "abandoned_pct",
    "flow",
    "step",
    "step_title",
    "step_cases",
    "fixed",
    "not_fixed",
    "skipped",
    "step_abandoned",
    "step_escalated",
    "fixed_pct",
    "gave_up_pct",
];

/// One CSV field, quoted (RFC 4180) when it holds a comma, a quote or a line break.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

fn csv_row(fields: &[String]) -> String {
    let mut row = fields.iter().map(|field| csv_field(field)).collect::<Vec<_>>().join(",");
    row.push_str("\r\n");
    row
}

/// The figures as CSV: a header row, then one row per step of each symptom
/// carrying the symptom's figures too, so a spreadsheet can filter and pivot.
pub fn render_csv(stats: &Stats) -> String {
    let mut out = csv_row(&CSV_HEADER.map(str::to_owned));
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    for symptom in &stats.symptoms {
        let ends = &symptom.ends;
        for step in &symptom.steps {
            out.push_str(&csv_row(&[
                text(&symptom.symptom),
                text(&symptom.title),
                ends.cases.to_string(),
                ends.resolved.to_string(),
                ends.escalated.to_string(),
                ends.abandoned.to_string(),
                ends.open.to_string(),
                pct(ends.resolved_pct),
                pct(ends.escalated_pct),
                pct(ends.abandoned_pct),
                text(&step.flow),
                text(&step.step),
                text(&step.title),
                step.cases.to_string(),
                step.fixed.to_string(),
                step.not_fixed.to_string(),
                step.skipped.to_string(),
                step.abandoned.to_string(),
                step.escalated.to_string(),
                pct(step.fixed_pct),
                pct(step.gave_up_pct),
            ]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_row(&["a".into(), String::new(), "b,c".into()]), "a,,\"b,c\"\r\n");
    }

    #[test]
    fn columns_align_by_characters() {
        let rows = vec![cells(["step", "cases"]), cells(["1. Settings → iCloud", "7"]), cells(["x", "12"])];
        assert_eq!(
            aligned(&rows, "  "),
            "  step                  cases\n  1. Settings → iCloud      7\n  x                        12\n"
        );
    }

    #[test]
    fn since_reads_durations_and_names_the_forms_it_takes() {
        assert_eq!(since("7d").map(|since| since.seconds), Ok(604_800));
        let error = since("7x").unwrap_err();
        assert!(error.contains("`7x` is not a duration") && error.contains("such as 7d"), "{error}");
    }

    #[test]
    fn an_empty_log_says_so() {
        assert_eq!(render_table(&Stats::default(), "the last 7d"), "No outcomes recorded in the last 7d.\n");
        assert_eq!(render_csv(&Stats::default()).lines().count(), 1, "the header alone");
    }
}
