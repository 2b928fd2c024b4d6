//! The labelled corpus: real device messages and people's own words, each
//! labelled with the flow a support person would start with (or `unknown`).
//! `tuning.jsonl` may guide matcher edits; `holdout.jsonl` must not: it
//! measures how the bot meets messages nobody tuned for.
//!
//! Top-1 is the committed flow, or the first candidate of a clarifying
//! question, or `unknown`. A wrong commitment is a committed flow other
//! than the label: the failure that sends a user down the wrong steps.

use fixbot_core::engine::diagnose_text;
use fixbot_core::flow::Flows;
use fixbot_core::matcher::Verdict;
use fixbot_core::redact::redact;
use fixbot_core::text::sanitize;

use crate::support::{root, shipped_flows};

const MIN_ACCURACY: f64 = 0.90;
const MAX_WRONG_COMMITMENTS: f64 = 0.03;

#[derive(serde::Deserialize)]
struct Labelled {
    label: String,
    text: String,
    #[allow(dead_code)]
    source: String,
}

#[derive(Default)]
struct Score {
    total: usize,
    correct: usize,
    wrong_commitments: usize,
    misses: Vec<String>,
}

impl Score {
    fn add(&mut self, flows: &Flows, labelled: &Labelled) {
        let diagnosis = diagnose_text(flows, &labelled.text);
        let (predicted, committed) = match &diagnosis.verdict {
            Verdict::Symptom(flow) => (flows.at(*flow).id.as_str(), true),
            Verdict::Unsure(candidates) => (flows.at(candidates[0]).id.as_str(), false),
            Verdict::Unknown => ("unknown", false),
        };
        self.total += 1;
        if predicted == labelled.label {
            self.correct += 1;
        } else {
            let kind = if committed { "WRONG" } else { "miss " };
            self.misses.push(format!(
                "{kind} {:<32} got {:<32} {:?}",
                labelled.label,
                predicted,
                short(&labelled.text)
            ));
            if committed {
                self.wrong_commitments += 1;
            }
        }
    }

    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total as f64
    }

    fn wrong_share(&self) -> f64 {
        self.wrong_commitments as f64 / self.total as f64
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<8} {:>4} messages  top-1 accuracy {:>5.1}%  wrong commitments {:>4.1}% ({})",
            self.total,
            self.accuracy() * 100.0,
            self.wrong_share() * 100.0,
            self.wrong_commitments
        )
    }
}

fn short(text: &str) -> String {
    text.chars().take(90).collect()
}

fn read(name: &str) -> Vec<Labelled> {
    let path = root().join("tests/corpus").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), index + 1))
        })
        .collect()
}

#[test]
fn corpus_accuracy_and_wrong_commitments() {
    let flows = shipped_flows();
    let ids: Vec<&str> = flows.iter().map(|flow| flow.id.as_str()).collect();
    let mut overall = Score::default();
    let mut report = Vec::new();
    for name in ["tuning.jsonl", "holdout.jsonl"] {
        let mut score = Score::default();
        for labelled in read(name) {
            assert!(
                labelled.label == "unknown" || ids.contains(&labelled.label.as_str()),
                "{name}: unknown label {}",
                labelled.label
            );
            score.add(&flows, &labelled);
            overall.add(&flows, &labelled);
        }
        report.push(score.line(name.trim_end_matches(".jsonl")));
        // Only the tuning set's misses are shown: the holdout's stay unseen,
        // so nobody tunes the matchers to them by accident.
        if name == "tuning.jsonl" {
            report.extend(score.misses.iter().map(|miss| format!("  {miss}")));
        }
    }
    report.push(overall.line("overall"));
    let report = report.join("\n");
    println!("{report}");
    assert!(overall.total >= 200, "the corpus needs at least 200 messages");
    assert!(
        overall.accuracy() >= MIN_ACCURACY && overall.wrong_share() <= MAX_WRONG_COMMITMENTS,
        "corpus below target (accuracy >= {:.0}%, wrong commitments <= {:.0}%):\n{report}",
        MIN_ACCURACY * 100.0,
        MAX_WRONG_COMMITMENTS * 100.0
    );
}

/// Redaction must not cost a diagnosis: every corpus message gets the same
/// verdict, best flow and platform with its personal data removed as with
/// it left in. Issue "Hostile input, platform faults and privacy".
#[test]
fn redaction_never_changes_a_corpus_diagnosis() {
    let flows = shipped_flows();
    let (mut total, mut redacted_messages) = (0, 0);
    let mut differences = Vec::new();
    for name in ["tuning.jsonl", "holdout.jsonl"] {
        for labelled in read(name) {
            let clean = sanitize(&labelled.text);
            let redacted = redact(&clean);
            total += 1;
            if !redacted.removed.is_empty() {
                redacted_messages += 1;
            }
            let plain = flows.diagnose(&clean);
            let after = diagnose_text(&flows, &labelled.text);
            let best = |diagnosis: &fixbot_core::matcher::Diagnosis| diagnosis.best().map(|(flow, _)| flow);
            if plain.verdict != after.verdict || best(&plain) != best(&after) || plain.platform != after.platform {
                differences.push(format!(
                    "{name}: {:?} -> {:?}: {:?}/{:?}/{:?} became {:?}/{:?}/{:?}",
                    short(&clean),
                    short(&redacted.text),
                    plain.verdict,
                    best(&plain),
                    plain.platform,
                    after.verdict,
                    best(&after),
                    after.platform
                ));
            }
        }
    }
    println!("{total} corpus messages, {redacted_messages} with personal data removed");
    assert!(differences.is_empty(), "redaction changed a diagnosis:\n{}", differences.join("\n"));
}
