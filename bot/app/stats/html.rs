//! The HTML report of `fixbot stats --html`: one self-contained page (inline
//! CSS, inline SVG bars, no script, font or anything else fetched), a section
//! per symptom with a chart of how its cases ended and one of where they were
//! fixed and where people gave up, each beside a table with the same figures.
//! Every text is HTML-escaped.

use std::fmt::Write as _;

use fixbot_core::markup::escape_html;
use fixbot_core::stats::{Stats, SymptomStats};

use super::{cases, overall, pct, step_name, symptom_name};

/// Width of the ends chart's drawing, in SVG units; the page scales it.
const ENDS_WIDTH: f64 = 520.0;
/// The ends chart's bars: their labels stand left of them, and the figure
/// after them takes the rest of the width.
const ENDS_TRACK: Track = Track { x: 110.0, length: 300.0, height: 20.0 };
/// Width of the steps chart, which stands in a narrower column.
const STEPS_WIDTH: f64 = 440.0;
/// The steps chart's bars, under their step's title.
const STEPS_TRACK: Track = Track { x: 0.0, length: 380.0, height: 14.0 };
/// Characters of a step title shown above its bars; the table has it whole.
const LABEL_CHARS: usize = 64;

const STYLE: &str = "
:root { color-scheme: light; }
body { margin: 0; background: #fff; color: #1f2328;
  font: 16px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; }
main { max-width: 76rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 0 0 .75rem; }
h2 code, td code { font-size: .85em; color: #57606a; font-weight: normal; }
h3 { font-size: 1rem; margin: 1.25rem 0 .5rem; }
section { border-top: 1px solid #d0d7de; padding: 1.25rem 0; }
.pair { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1.5rem; align-items: start; }
.pair.steps { grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); }
@media (max-width: 56rem) { .pair, .pair.steps { grid-template-columns: minmax(0, 1fr); } }
figure { margin: 0; }
svg { display: block; width: 100%; height: auto; }
svg text { font-size: 13px; fill: #1f2328; }
.track { fill: #eef1f4; }
.resolved, .fixed { fill: #1a7f37; }
.escalated { fill: #bc4c00; }
.abandoned, .gave-up { fill: #cf222e; }
.open { fill: #6e7781; }
.key { display: inline-block; width: .8em; height: .8em; margin-right: .3em; vertical-align: -.05em; }
.key.resolved, .key.fixed { background: #1a7f37; }
.key.escalated { background: #bc4c00; }
.key.abandoned, .key.gave-up { background: #cf222e; }
.key.open { background: #6e7781; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: .25rem; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #d8dee4; text-align: right; vertical-align: top; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #afb8c1; }
a { color: #0550ae; }
";

/// `text` cut to `max` characters with an ellipsis.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max - 1).collect();
    format!("{}…", kept.trim_end())
}

/// The whole page.
pub fn render(stats: &Stats, period: &str) -> String {
    let mut page = String::new();
    let title = format!("fixbot statistics: {period}");
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>fixbot statistics</h1>\n",
        escape_html(&title)
    );
    let _ = writeln!(page, "<p>{}</p>", escape_html(&overall(stats, period)));
    if stats.totals.cases > 0 {
        overview(&mut page, stats);
        for (index, symptom) in stats.symptoms.iter().enumerate() {
            section(&mut page, symptom, index + 1);
        }
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

/// The table of every symptom, linking to its section.
fn overview(page: &mut String, stats: &Stats) {
    page.push_str(
        "<table>\n<caption>Symptoms</caption>\n<thead><tr><th scope=\"col\">Symptom</th><th scope=\"col\">Cases</th>\
         <th scope=\"col\">Resolved</th><th scope=\"col\">Escalated</th><th scope=\"col\">Abandoned</th>\
         <th scope=\"col\">Open</th></tr></thead>\n<tbody>\n",
    );
    for (index, symptom) in stats.symptoms.iter().enumerate() {
        let ends = &symptom.ends;
        let _ = writeln!(
            page,
            "<tr><th scope=\"row\"><a href=\"#symptom-{}\">{}</a></th><td>{}</td><td>{} ({}%)</td><td>{} ({}%)</td>\
             <td>{} ({}%)</td><td>{}</td></tr>",
            index + 1,
            escape_html(&symptom_name(symptom)),
            ends.cases,
            ends.resolved,
            pct(ends.resolved_pct),
            ends.escalated,
            pct(ends.escalated_pct),
            ends.abandoned,
            pct(ends.abandoned_pct),
            ends.open,
        );
    }
    page.push_str("</tbody>\n</table>\n");
}

/// Where a chart's bars start, how long a full one is and how thick they
/// are, in SVG units.
struct Track {
    x: f64,
    length: f64,
    height: f64,
}

/// One horizontal bar on its track at `y`: `value` of `max`, then the
/// figure. `data-bar`, `data-value` and `data-max` let a test check the
/// drawing; the track is the bar's previous sibling.
fn bar(svg: &mut String, track: &Track, class: &str, value: u64, max: u64, y: f64, label: &str) {
    let Track { x, length, height } = track;
    let width = if max == 0 { 0.0 } else { length * value as f64 / max as f64 };
    let _ = writeln!(
        svg,
        "<rect class=\"track\" x=\"{x}\" y=\"{y}\" width=\"{length}\" height=\"{height}\"/>\
         <rect class=\"bar {class}\" data-bar=\"{class}\" data-value=\"{value}\" data-max=\"{max}\" \
         x=\"{x}\" y=\"{y}\" width=\"{width:.2}\" height=\"{height}\"><title>{}</title></rect>\
         <text x=\"{:.2}\" y=\"{:.2}\">{}</text>",
        escape_html(label),
        x + length + 8.0,
        y + height - 4.0,
        escape_html(&label_figure(label)),
    );
}

/// The figure written after a bar: the label's part after the colon.
fn label_figure(label: &str) -> String {
    label.split_once(": ").map_or(label, |(_, figure)| figure).to_owned()
}

/// One symptom: how its cases ended, then its steps, each chart beside its table.
fn section(page: &mut String, symptom: &SymptomStats, number: usize) {
    let name = symptom_name(symptom);
    let id = format!("symptom-{number}");
    let code = symptom.symptom.as_deref().map(|id| format!(" <code>{}</code>", escape_html(id))).unwrap_or_default();
    let _ = writeln!(page, "<section aria-labelledby=\"{id}\">\n<h2 id=\"{id}\">{}{code}</h2>", escape_html(&name));
    let ends = &symptom.ends;
    let rows = [
        ("Resolved", "resolved", ends.resolved, Some(ends.resolved_pct)),
        ("Escalated", "escalated", ends.escalated, Some(ends.escalated_pct)),
        ("Abandoned", "abandoned", ends.abandoned, Some(ends.abandoned_pct)),
        ("Still open", "open", ends.open, None),
    ];
    let figure = |count: u64, share: Option<f64>| match share {
        Some(share) => format!("{count} ({}%)", pct(share)),
        None => count.to_string(),
    };

    // How the cases ended.
    let summary = rows
        .iter()
        .map(|(label, _, count, share)| format!("{}: {}", label.to_lowercase(), figure(*count, *share)))
        .collect::<Vec<_>>()
        .join(", ");
    let height = 12.0 + rows.len() as f64 * 30.0;
    let _ = write!(
        page,
        "<div class=\"pair\">\n<figure>\n<svg role=\"img\" aria-labelledby=\"{id}-ends-title {id}-ends-desc\" \
         viewBox=\"0 0 {ENDS_WIDTH} {height}\" width=\"{ENDS_WIDTH}\" height=\"{height}\">\n\
         <title id=\"{id}-ends-title\">How the {} of {} ended</title>\n<desc id=\"{id}-ends-desc\">{}.</desc>\n",
        cases(ends.cases),
        escape_html(&name),
        escape_html(&summary),
    );
    for (row, (label, class, count, share)) in rows.iter().enumerate() {
        let y = 6.0 + row as f64 * 30.0;
        let _ = write!(page, "<text x=\"0\" y=\"{:.2}\">{label}</text>", y + 15.0);
        bar(page, &ENDS_TRACK, class, *count, ends.cases, y, &format!("{label}: {}", figure(*count, *share)));
    }
    page.push_str("</svg>\n</figure>\n");
    let _ = write!(
        page,
        "<table>\n<caption>How the {} ended</caption>\n<thead><tr><th scope=\"col\">End</th>\
         <th scope=\"col\">Cases</th><th scope=\"col\">Share</th></tr></thead>\n<tbody>\n",
        cases(ends.cases)
    );
    for (label, class, count, share) in rows {
        let _ = writeln!(
            page,
            "<tr><th scope=\"row\"><span class=\"key {class}\"></span>{label}</th><td>{count}</td><td>{}</td></tr>",
            share.map_or_else(|| "-".to_owned(), |share| format!("{}%", pct(share))),
        );
    }
    page.push_str("</tbody>\n</table>\n</div>\n");

    // Where cases were fixed and where people gave up.
    let _ = writeln!(page, "<h3>Steps</h3>");
    steps(page, symptom, &id, &name);
    page.push_str("</section>\n");
}

/// The steps chart (fixed here, gave up here) and the steps table.
fn steps(page: &mut String, symptom: &SymptomStats, id: &str, name: &str) {
    let scale = symptom.steps.iter().map(|step| step.fixed.max(step.gave_up())).max().unwrap_or(0).max(1);
    let summary = symptom
        .steps
        .iter()
        .map(|step| format!("{}: fixed {}, gave up {}", step_name(step), step.fixed, step.gave_up()))
        .collect::<Vec<_>>()
        .join("; ");
    let row_height = 58.0;
    let height = 28.0 + symptom.steps.len() as f64 * row_height;
    let _ = write!(
        page,
        "<div class=\"pair steps\">\n<figure>\n<svg role=\"img\" aria-labelledby=\"{id}-steps-title {id}-steps-desc\" \
         viewBox=\"0 0 {STEPS_WIDTH} {height}\" width=\"{STEPS_WIDTH}\" height=\"{height}\">\n\
         <title id=\"{id}-steps-title\">Where the cases of {} were fixed and where people gave up, per step</title>\n\
         <desc id=\"{id}-steps-desc\">{}.</desc>\n\
         <rect class=\"fixed\" x=\"0\" y=\"4\" width=\"12\" height=\"12\"/><text x=\"18\" y=\"15\">fixed here</text>\
         <rect class=\"gave-up\" x=\"110\" y=\"4\" width=\"12\" height=\"12\"/>\
         <text x=\"128\" y=\"15\">gave up here (abandoned or escalated)</text>\n",
        escape_html(name),
        escape_html(&summary),
    );
    for (row, step) in symptom.steps.iter().enumerate() {
        let y = 28.0 + row as f64 * row_height;
        let _ = write!(
            page,
            "<text x=\"0\" y=\"{:.2}\">{}</text>",
            y + 13.0,
            escape_html(&cut(&step_name(step), LABEL_CHARS))
        );
        let (fixed, gave_up) = (step.fixed, step.gave_up());
        bar(page, &STEPS_TRACK, "fixed", fixed, scale, y + 20.0, &format!("Fixed here: {fixed}"));
        bar(page, &STEPS_TRACK, "gave-up", gave_up, scale, y + 37.0, &format!("Gave up here: {gave_up}"));
    }
    page.push_str("</svg>\n</figure>\n");
    page.push_str(
        "<table>\n<caption>Steps</caption>\n<thead><tr><th scope=\"col\">Step</th><th scope=\"col\">Cases</th>\
         <th scope=\"col\">Fixed</th><th scope=\"col\">Not fixed</th><th scope=\"col\">Skipped</th>\
         <th scope=\"col\">Abandoned</th><th scope=\"col\">Escalated</th></tr></thead>\n<tbody>\n",
    );
    for step in &symptom.steps {
        let code = match (&step.title, &step.step) {
            (Some(_), Some(id)) => format!(" <code>{}</code>", escape_html(id)),
            _ => String::new(),
        };
        let _ = writeln!(
            page,
            "<tr><th scope=\"row\">{}{code}</th><td>{}</td><td>{} ({}%)</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape_html(&step_name(step)),
            step.cases,
            step.fixed,
            pct(step.fixed_pct),
            step.not_fixed,
            step.skipped,
            step.abandoned,
            step.escalated,
        );
    }
    page.push_str("</tbody>\n</table>\n</div>\n");
}

#[cfg(test)]
mod tests {
    use fixbot_core::case::{Outcome, OutcomeRecord};

    use super::*;

    #[test]
    fn every_text_is_escaped() {
        let record = OutcomeRecord {
            case_id: 1,
            subject: 1,
            at: 1,
            symptom: "<script>alert(1)</script>".into(),
            flow: "f".into(),
            step: "<img src=x>".into(),
            outcome: Outcome::Fixed,
        };
        let page = render(&Stats::from_records(&[record]), "the last <7d>");
        assert!(!page.contains("<script") && !page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && page.contains("the last &lt;7d&gt;"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = render(&Stats::default(), "every record kept");
        assert!(page.contains("<title>fixbot statistics: every record kept</title>"));
        assert!(page.contains("No outcomes recorded"));
        for fetch in ["http:", "https:", "src=", "<link", "<script", "@import", "url("] {
            assert!(!page.contains(fetch), "{fetch} in {page}");
        }
    }
}
