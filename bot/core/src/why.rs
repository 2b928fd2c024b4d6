//! `/why`: what staff are shown when they ask why the bot treated a case as
//! it did — the patterns that fired on the opening message with their
//! weights, the symptoms that came second, what redaction removed, and the
//! path through the flow. Built from the stored case alone: the opening
//! message is kept redacted, and diagnosis gives the same verdict on the
//! redacted text (a corpus test holds it to that), so nothing unredacted is
//! needed to answer. [`answer`] is the whole command as the front-ends
//! run it once they know whether the asker is staff.

use std::fmt::Write as _;

use crate::case::{Case, ConversationKey, Phase};
use crate::flow::Flows;
use crate::markup::{Markup, Style};
use crate::matcher::Owner;
use crate::redact::Kind;
use crate::session::Session;
use crate::store::Store;

/// Patterns listed at most; the rest are counted.
const MAX_PATTERNS: usize = 8;
/// Runner-up symptoms listed at most.
const MAX_RUNNERS_UP: usize = 3;
/// Characters of a pattern shown before it is cut.
const PATTERN_CHARS: usize = 90;

/// Who asked `/why`, as the front-end judged it by the platform's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// Staff: a Discord member allowed to manage messages or holding a
    /// staff role, a Telegram group admin, anyone in the staff chat.
    Staff,
    /// Anyone else.
    Other,
}

/// The answer to `/why` from `asker` about the case of conversation
/// `about` (`None` when the command named nobody): the explanation, or
/// why there is none. Staff-facing, so in English.
pub async fn answer<S: Store>(session: &Session<S>, asker: Asker, about: Option<&ConversationKey>) -> Markup {
    let flows = session.flows();
    let messages = &flows.bot().messages;
    if asker != Asker::Staff {
        return messages.why_refused.render();
    }
    let Some(key) = about else { return messages.why_how.render() };
    match session.store().get(key).await {
        Ok(Some(stored)) => explain(&flows, &stored.case),
        Ok(None) => messages.why_no_case.render(),
        Err(error) => {
            tracing::warn!(%error, "reading a case for /why failed");
            messages.failure.render()
        }
    }
}

/// The explanation of `case` against the flows loaded now.
pub fn explain(flows: &Flows, case: &Case) -> Markup {
    let mut out = Markup::default();
    let title = |id: &str| flows.get(id).map_or_else(|| format!("{id} (no longer loaded)"), |flow| flow.title.clone());
    out.push(Style::Bold, "Why this case went as it did");
    match &case.symptom {
        Some(symptom) => {
            out.push(Style::Plain, "\nSymptom: ");
            out.push(Style::Bold, &title(symptom));
            out.push(Style::Plain, &format!(" (score {})", case.score));
        }
        None => out.push(Style::Plain, "\nNo symptom recognised yet."),
    }
    if let Some(platform) = case.platform {
        out.push(Style::Plain, &format!("\nPhone: {}", platform.as_str()));
    }

    let diagnosis = flows.diagnose(&case.paste);
    let matcher = flows.matcher();
    let symptom_index = case.symptom.as_deref().and_then(|id| flows.iter().position(|flow| flow.id == id));
    out.push(Style::Plain, "\n\nPatterns that fired on the opening message:");
    let mut listed = 0;
    let mut more = 0;
    for &pattern in &diagnosis.fired {
        let (source, owner) = matcher.pattern(pattern);
        let what = match owner {
            Owner::Match { flow, weight } if Some(flow) == symptom_index => format!("+{weight}"),
            Owner::Veto { flow } if Some(flow) == symptom_index => "veto".to_owned(),
            Owner::Platform(platform) => platform.as_str().to_owned(),
            // Patterns of other flows show up under the runners-up.
            Owner::Match { .. } | Owner::Veto { .. } => continue,
        };
        if listed == MAX_PATTERNS {
            more += 1;
            continue;
        }
        listed += 1;
        out.push(Style::Plain, &format!("\n• {what} "));
        out.push(Style::Code, &shorten(source, PATTERN_CHARS));
    }
    if listed == 0 {
        out.push(Style::Plain, "\n• none (the symptom was picked from the list)");
    }
    if more > 0 {
        out.push(Style::Plain, &format!("\n• and {more} more"));
    }

    let runners_up: Vec<String> = diagnosis
        .scores
        .iter()
        .filter(|(flow, _)| Some(*flow) != symptom_index)
        .take(MAX_RUNNERS_UP)
        .map(|(flow, score)| format!("{} ({score})", flows.at(*flow).title))
        .collect();
    out.push(Style::Plain, "\nRunners-up: ");
    out.push(Style::Plain, &if runners_up.is_empty() { "none".to_owned() } else { runners_up.join(", ") });

    let removed: Vec<&str> = Kind::ALL.iter().map(|kind| kind.tag()).filter(|tag| case.paste.contains(tag)).collect();
    out.push(Style::Plain, "\nRedacted: ");
    out.push(Style::Plain, &if removed.is_empty() { "nothing".to_owned() } else { removed.join(" ") });

    out.push(Style::Plain, "\n\nPath:");
    for tried in &case.history {
        out.push(
            Style::Plain,
            &format!("\n• {} → {}", step_name(flows, &tried.flow, &tried.step), tried.outcome.as_str()),
        );
    }
    let mut now = String::from("\n• now: ");
    match &case.phase {
        Phase::AwaitingSymptom => now.push_str("waiting for a description"),
        Phase::Clarifying { candidates } => {
            let _ = write!(
                now,
                "asked to pick one of {}",
                candidates.iter().map(|id| title(id)).collect::<Vec<_>>().join(", ")
            );
        }
        Phase::AskingPlatform { at } => {
            let _ = write!(now, "asked iPhone or Android before {}", step_name(flows, &at.flow, &at.step));
        }
        Phase::AtStep { at } => now.push_str(&step_name(flows, &at.flow, &at.step)),
        Phase::OfferingSwitch { at, to } => {
            let _ = write!(now, "at {}, offered a switch to {}", step_name(flows, &at.flow, &at.step), title(to));
        }
    }
    out.push(Style::Plain, &now);
    out
}

/// `flow / step`, with the flow's title when it is loaded.
fn step_name(flows: &Flows, flow: &str, step: &str) -> String {
    match flows.get(flow) {
        Some(loaded) if loaded.step_index(step).is_some() => format!("{} / {step}", loaded.title),
        Some(loaded) => format!("{} / {step} (removed since)", loaded.title),
        None => format!("{flow} / {step}"),
    }
}

/// `text` cut to `limit` characters, with an ellipsis when cut.
fn shorten(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
