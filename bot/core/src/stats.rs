//! Statistics over the outcome log: per symptom, how its cases ended
//! (resolved, escalated, abandoned, still open), and per step how often it was
//! the one that fixed the problem and where people gave up. Pure: outcome
//! records in, figures out; `fixbot stats` renders them as a table, JSON, CSV
//! or an HTML report.
//!
//! A case is counted under the symptom that started it. A case that switched
//! to another symptom ended as abandoned under the first and counts again
//! under the second, since the records of each carry their own symptom.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::case::{Outcome, OutcomeRecord};
use crate::flow::{Flows, Step};

/// Longest step title, in characters, before it is cut with an ellipsis.
const MAX_TITLE_CHARS: usize = 60;

/// The figures of every symptom found in a set of outcome records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Every symptom together.
    pub totals: Ends,
    /// One entry per symptom: most cases first, then by id, the cases
    /// without a symptom last.
    pub symptoms: Vec<SymptomStats>,
}

/// How a set of cases ended, in numbers of cases and in percent of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ends {
    /// Cases with at least one record.
    pub cases: u64,
    /// Cases a step fixed.
    pub resolved: u64,
    /// Cases handed to a person.
    pub escalated: u64,
    /// Cases stopped, restarted, switched to another symptom or left idle.
    pub abandoned: u64,
    /// Cases with no end recorded yet.
    pub open: u64,
    /// `resolved` in percent of `cases`, to one decimal.
    pub resolved_pct: f64,
    /// `escalated` in percent of `cases`, to one decimal.
    pub escalated_pct: f64,
    /// `abandoned` in percent of `cases`, to one decimal.
    pub abandoned_pct: f64,
}

/// The figures of one symptom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymptomStats {
    /// The flow id that started the cases; `None` for cases that ended
    /// before any symptom was known (e.g. "talk to a person" straight away).
    pub symptom: Option<String>,
    /// The flow's title, when its flow is loaded ([`Stats::with_flows`]).
    pub title: Option<String>,
    /// How its cases ended.
    #[serde(flatten)]
    pub ends: Ends,
    /// Every step with a record, in flow order once [`Stats::with_flows`]
    /// knows it, else in the order they first occur.
    pub steps: Vec<StepStats>,
}

/// The figures of one step within one symptom's cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// The flow the step belongs to; after a `flow:` goto, not the symptom's.
    /// `None` together with `step` for cases that ended before any step.
    pub flow: Option<String>,
    /// The step id; `None` for cases that ended before any step.
    pub step: Option<String>,
    /// `"2. First sentence of the step"`, when its flow is loaded.
    pub title: Option<String>,
    /// Cases with a record at this step.
    pub cases: u64,
    /// Times it fixed the problem.
    pub fixed: u64,
    /// Times it did not help.
    pub not_fixed: u64,
    /// Times it was skipped.
    pub skipped: u64,
    /// Cases abandoned here.
    pub abandoned: u64,
    /// Cases handed to a person here.
    pub escalated: u64,
    /// `fixed` in percent of the symptom's cases: summed over the steps,
    /// the symptom's `resolved_pct` (up to rounding).
    pub fixed_pct: f64,
    /// `abandoned + escalated` in percent of the symptom's cases: where
    /// people give up.
    pub gave_up_pct: f64,
}

impl StepStats {
    /// Cases that ended here without a fix: abandoned or escalated.
    pub fn gave_up(&self) -> u64 {
        self.abandoned + self.escalated
    }
}

/// `part` in percent of `whole`, to one decimal; 0 when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

impl Ends {
    fn count(&mut self, end: Option<Outcome>) {
        self.cases += 1;
        match end {
            Some(Outcome::Fixed) => self.resolved += 1,
            Some(Outcome::Escalated) => self.escalated += 1,
            Some(Outcome::Abandoned) => self.abandoned += 1,
            Some(Outcome::NotFixed | Outcome::Skipped) | None => self.open += 1,
        }
    }

    fn with_percentages(self) -> Ends {
        Ends {
            resolved_pct: percent(self.resolved, self.cases),
            escalated_pct: percent(self.escalated, self.cases),
            abandoned_pct: percent(self.abandoned, self.cases),
            ..self
        }
    }
}

/// Whether `outcome` ends a case.
fn ends_case(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Fixed | Outcome::Escalated | Outcome::Abandoned)
}

/// One symptom's figures while the records are read.
#[derive(Default)]
struct Tally {
    /// The end of each case, in the order the cases first occur.
    cases: Vec<Option<Outcome>>,
    /// Cases not ended yet, by case id, as indexes into `cases`.
    open: HashMap<u64, usize>,
    /// Steps in the order they first occur.
    steps: Vec<(StepStats, HashSet<usize>)>,
    step_index: HashMap<(Option<String>, Option<String>), usize>,
}

impl Tally {
    fn add(&mut self, record: &OutcomeRecord) {
        let case = *self.open.entry(record.case_id).or_insert_with(|| {
            self.cases.push(None);
            self.cases.len() - 1
        });
        // A case ends once; records under its id after that (an id
        // reused within one second) are another case.
        if ends_case(record.outcome) {
            self.cases[case] = Some(record.outcome);
            self.open.remove(&record.case_id);
        }
        let key = match record.step.as_str() {
            "" => (None, None),
            step => (non_empty(&record.flow), Some(step.to_owned())),
        };
        let index = *self.step_index.entry(key.clone()).or_insert_with(|| {
            let (flow, step) = key;
            let stats = StepStats {
                flow,
                step,
                title: None,
                cases: 0,
                fixed: 0,
                not_fixed: 0,
                skipped: 0,
                abandoned: 0,
                escalated: 0,
                fixed_pct: 0.0,
                gave_up_pct: 0.0,
            };
            self.steps.push((stats, HashSet::new()));
            self.steps.len() - 1
        });
        let (stats, cases) = &mut self.steps[index];
        cases.insert(case);
        match record.outcome {
            Outcome::Fixed => stats.fixed += 1,
            Outcome::NotFixed => stats.not_fixed += 1,
            Outcome::Skipped => stats.skipped += 1,
            Outcome::Abandoned => stats.abandoned += 1,
            Outcome::Escalated => stats.escalated += 1,
        }
    }

    fn finish(self, symptom: Option<String>) -> SymptomStats {
        let mut ends = Ends::default();
        for end in &self.cases {
            ends.count(*end);
        }
        let steps = self
            .steps
            .into_iter()
            .map(|(stats, cases)| StepStats {
                cases: cases.len() as u64,
                fixed_pct: percent(stats.fixed, ends.cases),
                gave_up_pct: percent(stats.gave_up(), ends.cases),
                ..stats
            })
            .collect();
        SymptomStats { symptom, title: None, ends: ends.with_percentages(), steps }
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

impl Stats {
    /// The figures of `records`, read in log order (oldest first, as
    /// [`crate::store::Store::outcomes`] returns them). Records of a case
    /// after its end belong to a new case.
    pub fn from_records(records: &[OutcomeRecord]) -> Stats {
        let mut order: Vec<Option<String>> = Vec::new();
        let mut tallies: HashMap<Option<String>, Tally> = HashMap::new();
        for record in records {
            let symptom = non_empty(&record.symptom);
            let tally = tallies.entry(symptom.clone()).or_insert_with(|| {
                order.push(symptom);
                Tally::default()
            });
            tally.add(record);
        }
        let mut symptoms: Vec<SymptomStats> =
            order.into_iter().map(|symptom| tallies.remove(&symptom).unwrap_or_default().finish(symptom)).collect();
        symptoms.sort_by(|a, b| {
            b.ends.cases.cmp(&a.ends.cases).then_with(|| match (&a.symptom, &b.symptom) {
                (Some(a), Some(b)) => a.cmp(b),
                (a, b) => b.is_some().cmp(&a.is_some()),
            })
        });
        let mut totals = Ends::default();
        for symptom in &symptoms {
            let ends = &symptom.ends;
            totals.cases += ends.cases;
            totals.resolved += ends.resolved;
            totals.escalated += ends.escalated;
            totals.abandoned += ends.abandoned;
            totals.open += ends.open;
        }
        Stats { totals: totals.with_percentages(), symptoms }
    }

    /// Adds the titles of the symptoms and steps whose flows are loaded,
    /// and puts steps in flow order: cases that ended before any step
    /// first, then the symptom's own steps, then those of flows it led to,
    /// then steps no loaded flow has (removed since), as they occurred.
    pub fn with_flows(mut self, flows: &Flows) -> Stats {
        for symptom in &mut self.symptoms {
            let own = symptom.symptom.as_deref().and_then(|id| flows.get(id));
            symptom.title = own.map(|flow| flow.title.clone());
            let mut flow_order: Vec<Option<String>> = Vec::new();
            let mut keys = Vec::with_capacity(symptom.steps.len());
            for step in &mut symptom.steps {
                let found = step.flow.as_deref().and_then(|id| flows.get(id)).and_then(|flow| {
                    let index = flow.step_index(step.step.as_deref()?)?;
                    Some((flow, index))
                });
                if !flow_order.contains(&step.flow) {
                    flow_order.push(step.flow.clone());
                }
                let rank = flow_order.iter().position(|flow| *flow == step.flow).unwrap_or(0);
                let key = match found {
                    _ if step.step.is_none() => (0, 0, 0),
                    Some((flow, index)) if own.is_some_and(|own| own.id == flow.id) => (1, 0, index),
                    Some((_, index)) => (2, rank, index),
                    None => (3, 0, 0),
                };
                step.title = found.map(|(flow, index)| {
                    let title = step_title(&flow.steps[index], index);
                    match own {
                        Some(own) if own.id == flow.id => title,
                        _ => format!("{}: {title}", flow.title),
                    }
                });
                keys.push(key);
            }
            // A stable sort: steps with equal keys keep the order they occurred in.
            let mut keyed: Vec<_> = keys.into_iter().zip(std::mem::take(&mut symptom.steps)).collect();
            keyed.sort_by_key(|(key, _)| *key);
            symptom.steps = keyed.into_iter().map(|(_, step)| step).collect();
        }
        self
    }
}

/// `"2. First sentence of the step"`: its number in the flow and the first
/// sentence of its text (the iPhone text when the platforms differ), cut to
/// [`MAX_TITLE_CHARS`].
pub fn step_title(step: &Step, index: usize) -> String {
    let text = step.ios.as_ref().or(step.android.as_ref()).map(|text| text.render().to_plain()).unwrap_or_default();
    let line = text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or(step.id.as_str());
    let mut end = line.len();
    for (at, c) in line.char_indices() {
        let next = line[at + c.len_utf8()..].chars().next();
        if matches!(c, '.' | '!' | '?') && next.is_none_or(char::is_whitespace) {
            end = at + c.len_utf8();
            break;
        }
    }
    let sentence = &line[..end];
    let cut: String = if sentence.chars().count() > MAX_TITLE_CHARS {
        let kept: String = sentence.chars().take(MAX_TITLE_CHARS - 1).collect();
        format!("{}…", kept.trim_end())
    } else {
        sentence.to_owned()
    };
    format!("{}. {cut}", index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(case_id: u64, symptom: &str, step: &str, outcome: Outcome) -> OutcomeRecord {
        OutcomeRecord {
            case_id,
            subject: case_id * 10,
            at: 1000 + case_id as i64,
            symptom: symptom.to_owned(),
            flow: if step.is_empty() { symptom.to_owned() } else { step.split('/').next().unwrap_or("").to_owned() },
            step: step.split('/').nth(1).unwrap_or("").to_owned(),
            outcome,
        }
    }

    /// Ten cases, counted by hand in the comments.
    fn log() -> Vec<OutcomeRecord> {
        use Outcome::*;
        vec![
            record(1, "full", "full/a", NotFixed),
            record(1, "full", "full/b", Fixed), // 1: resolved at b
            record(2, "full", "full/a", NotFixed),
            record(2, "full", "full/b", NotFixed),
            record(2, "full", "full/c", Escalated), // 2: escalated at c
            record(3, "full", "full/a", Skipped),
            record(3, "full", "full/b", Abandoned), // 3: abandoned at b
            record(4, "full", "full/a", Fixed),     // 4: resolved at a
            record(5, "full", "full/a", NotFixed),  // 5: open
            record(6, "slow", "slow/x", Abandoned), // 6: abandoned (slow)
            record(8, "", "", Escalated),           // 8: escalated before any symptom
            record(9, "full", "full/a", NotFixed),
            record(9, "full", "full/b", Abandoned), // 9: switched: abandoned under full ...
            record(9, "slow", "slow/x", Fixed),     // ... and resolved under slow
            record(4, "full", "full/a", NotFixed),  // 4 again after its end: a new, open case
        ]
    }

    fn step<'a>(symptom: &'a SymptomStats, id: Option<&str>) -> &'a StepStats {
        symptom.steps.iter().find(|step| step.step.as_deref() == id).expect("the step")
    }

    #[test]
    fn cases_and_ends_per_symptom_match_a_count_by_hand() {
        let stats = Stats::from_records(&log());
        let order: Vec<Option<&str>> = stats.symptoms.iter().map(|s| s.symptom.as_deref()).collect();
        assert_eq!(order, [Some("full"), Some("slow"), None], "most cases first, no symptom last");

        // full: cases 1, 2, 3, 4, 5, 9 and the second 4.
        let full = &stats.symptoms[0].ends;
        assert_eq!((full.cases, full.resolved, full.escalated, full.abandoned, full.open), (7, 2, 1, 2, 2));
        assert_eq!((full.resolved_pct, full.escalated_pct, full.abandoned_pct), (28.6, 14.3, 28.6));
        let slow = &stats.symptoms[1].ends;
        assert_eq!(
            (slow.cases, slow.resolved, slow.abandoned, slow.resolved_pct, slow.abandoned_pct),
            (2, 1, 1, 50.0, 50.0)
        );
        let none = &stats.symptoms[2];
        assert_eq!((none.ends.cases, none.ends.escalated, none.ends.escalated_pct), (1, 1, 100.0));
        assert_eq!(step(none, None).escalated, 1);

        let totals = stats.totals;
        assert_eq!((totals.cases, totals.resolved, totals.escalated, totals.abandoned, totals.open), (10, 3, 2, 3, 2));
        assert_eq!((totals.resolved_pct, totals.escalated_pct, totals.abandoned_pct), (30.0, 20.0, 30.0));
    }

    #[test]
    fn steps_show_where_cases_are_fixed_and_where_people_give_up() {
        let stats = Stats::from_records(&log());
        let full = &stats.symptoms[0];
        let ids: Vec<Option<&str>> = full.steps.iter().map(|s| s.step.as_deref()).collect();
        assert_eq!(ids, [Some("a"), Some("b"), Some("c")], "in the order they first occur");
        let a = step(full, Some("a"));
        assert_eq!((a.cases, a.fixed, a.not_fixed, a.skipped, a.abandoned, a.escalated), (7, 1, 5, 1, 0, 0));
        assert_eq!((a.fixed_pct, a.gave_up_pct), (14.3, 0.0));
        let b = step(full, Some("b"));
        assert_eq!((b.cases, b.fixed, b.not_fixed, b.abandoned, b.gave_up()), (4, 1, 1, 2, 2));
        assert_eq!((b.fixed_pct, b.gave_up_pct), (14.3, 28.6));
        let c = step(full, Some("c"));
        assert_eq!((c.cases, c.escalated, c.gave_up_pct), (1, 1, 14.3));
        let x = step(&stats.symptoms[1], Some("x"));
        assert_eq!((x.flow.as_deref(), x.cases, x.fixed, x.abandoned, x.fixed_pct), (Some("slow"), 2, 1, 1, 50.0));
    }

    fn flows() -> Flows {
        use crate::flow::Source;
        let flow = |id: &str, title: &str, steps: &str| Source {
            path: format!("flows/{id}.yaml").into(),
            text: format!(
                "title: {title}\nsummary: S.\nmatch:\n  - regex: '{id} broke'\n    weight: 10\nsteps:\n{steps}"
            ),
        };
        let bot = Source { path: "flows/_bot.yaml".into(), text: include_str!("../../../flows/_bot.yaml").to_owned() };
        let full = "  - id: a\n    text: \"Open **Settings → iCloud**. Then look.\"\n  - id: b\n    ios: \"iPhone only!\"\n  \
                    - id: c\n    text: \"A very long first sentence that goes on and on well past what a chart label can hold.\"\n";
        let slow = "  - id: x\n    text: \"Check Wi-Fi, then try again\"\n";
        Flows::from_sources(vec![bot, flow("full", "Storage full", full), flow("slow", "Slow <network>", slow)])
            .unwrap_or_else(|errors| panic!("{errors}"))
    }

    #[test]
    fn flows_give_titles_and_flow_order() {
        let mut records = log();
        // Reached from `full` by a `flow:` goto, and a step since removed.
        records.insert(
            0,
            OutcomeRecord { flow: "slow".into(), step: "x".into(), ..record(5, "full", "", Outcome::NotFixed) },
        );
        records.insert(0, record(5, "full", "full/gone", Outcome::NotFixed));
        let stats = Stats::from_records(&records).with_flows(&flows());
        let full = &stats.symptoms[0];
        assert_eq!(full.title.as_deref(), Some("Storage full"));
        let steps: Vec<(Option<&str>, Option<&str>)> =
            full.steps.iter().map(|s| (s.step.as_deref(), s.title.as_deref())).collect();
        assert_eq!(
            steps,
            [
                (Some("a"), Some("1. Open Settings → iCloud.")),
                (Some("b"), Some("2. iPhone only!")),
                (Some("c"), Some("3. A very long first sentence that goes on and on well past wh…")),
                (Some("x"), Some("Slow <network>: 1. Check Wi-Fi, then try again")),
                (Some("gone"), None),
            ]
        );
        assert_eq!(stats.symptoms[1].title.as_deref(), Some("Slow <network>"));
        assert_eq!(stats.symptoms[2].title, None, "no symptom, no title");
        assert_eq!(Stats::from_records(&records).with_flows(&flows()).symptoms[0].ends, full.ends, "figures unchanged");
    }

    #[test]
    fn no_records_give_empty_figures() {
        let stats = Stats::from_records(&[]);
        assert!(stats.symptoms.is_empty());
        assert_eq!(stats.totals, Ends::default());
        assert_eq!(percent(1, 0), 0.0);
        assert_eq!(percent(2, 3), 66.7);
    }

    #[test]
    fn the_json_shape_is_flat_per_symptom() {
        let stats = Stats::from_records(&log()[..2]);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["totals"]["cases"], 1);
        let full = &json["symptoms"][0];
        assert_eq!(full["symptom"], "full");
        assert_eq!(full["resolved_pct"], 100.0);
        assert_eq!(full["steps"][1]["step"], "b");
        assert_eq!(full["steps"][1]["fixed"], 1);
        let back: Stats = serde_json::from_value(json).unwrap();
        assert_eq!(back, stats);
    }
}
