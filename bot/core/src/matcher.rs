//! Diagnosis: which patterns fire on the folded message, scores per flow,
//! vetoes, and a verdict. Ties and weak scores become a clarifying question,
//! never a guess.
//!
//! Which patterns fire is [`patterns`]' job (a literal automaton and lazy
//! DFAs run only where literals allow); this file turns that into scores.

mod patterns;

use std::collections::BTreeMap;

use regex::bytes::Regex;

use crate::flow::{Platform, Settings};
use crate::markup::MAX_SLOT_CHARS;
use crate::text::{fold, folds_to_itself};

pub use patterns::BuildError;
use patterns::PatternSet;

/// What a pattern counts towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Adds `weight` to the flow at this index.
    Match {
        /// Index of the flow.
        flow: usize,
        /// Points added when the pattern fires.
        weight: u32,
    },
    /// Removes the flow at this index from the verdict.
    Veto {
        /// Index of the flow.
        flow: usize,
    },
    /// Points at one kind of phone.
    Platform(Platform),
}

/// A pattern as the loader hands it over.
#[derive(Debug, Clone)]
pub struct PatternSpec {
    /// Line in its file, for diagnostics.
    pub line: u64,
    /// The regex source as written.
    pub source: String,
    /// What it counts towards.
    pub owner: Owner,
}

/// What the bot makes of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One flow clearly fits.
    Symptom(usize),
    /// Several flows (or one weak one) might fit: ask, with these as choices.
    Unsure(Vec<usize>),
    /// Nothing fits.
    Unknown,
}

/// The full result of diagnosing one message.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    /// The decision.
    pub verdict: Verdict,
    /// Every flow with a positive score that no veto removed, best first
    /// (ties broken by flow order, which is sorted by id).
    pub scores: Vec<(usize, u32)>,
    /// The phone the message points at, when it points at exactly one.
    pub platform: Option<Platform>,
    /// Named captures of the fired patterns of the best flow.
    pub captures: BTreeMap<String, String>,
    /// Indices of every pattern that fired.
    pub fired: Vec<usize>,
}

impl Diagnosis {
    /// The diagnosis of a message nothing matched.
    pub fn unknown() -> Diagnosis {
        Diagnosis {
            verdict: Verdict::Unknown,
            scores: Vec::new(),
            platform: None,
            captures: BTreeMap::new(),
            fired: Vec::new(),
        }
    }

    /// The score of the flow at `flow`, 0 when it scored nothing or was vetoed.
    pub fn score_of(&self, flow: usize) -> u32 {
        self.scores.iter().find(|(index, _)| *index == flow).map_or(0, |&(_, score)| score)
    }

    /// The best flow and its score, if any flow scored.
    pub fn best(&self) -> Option<(usize, u32)> {
        self.scores.first().copied()
    }
}

/// All patterns of all flows, compiled once at load.
pub struct Matcher {
    patterns: PatternSet,
    owners: Vec<Owner>,
    /// Only patterns with named groups are compiled a second time, for captures.
    capturing: Vec<Option<Regex>>,
    flow_count: usize,
    settings: Settings,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher").field("patterns", &self.patterns).finish_non_exhaustive()
    }
}

/// Checks one pattern on its own: it parses, it is written in the folded
/// form messages are matched in, and it cannot match an empty message.
pub fn check_pattern(source: &str) -> Result<(), String> {
    check(source).map(drop)
}

/// [`check_pattern`], keeping the parsed pattern for compiling.
fn check(source: &str) -> Result<patterns::Parsed, String> {
    let parsed = patterns::parse(source)?;
    if let Some(c) = source.chars().find(|&c| !c.is_whitespace() && !folds_to_itself(c)) {
        return Err(format!(
            "regex `{source}` contains `{c}`, which never matches: messages are matched with accents removed and quotes straightened (write `{}`)",
            fold(&c.to_string())
        ));
    }
    if source.contains("  ") {
        return Err(format!(
            "regex `{source}` has two spaces in a row, which never match: white space in messages is collapsed to one space"
        ));
    }
    if parsed.minimum_len() == Some(0) {
        return Err(format!("regex `{source}` matches an empty message, so it would match every message"));
    }
    Ok(parsed)
}

/// Every pattern checked and compiled on its own, on every core: what the
/// loader reports each pattern's problem from, before the matcher is
/// assembled from them. One parse serves the check and the compiling.
pub struct Compiled {
    specs: Vec<PatternSpec>,
    drafts: Vec<Result<Vec<patterns::Draft>, String>>,
}

impl Compiled {
    /// Checks and compiles every pattern of `specs`.
    pub fn new(specs: Vec<PatternSpec>) -> Compiled {
        let drafts = crate::parallel::on_every_core(specs.len(), |index| {
            let source = &specs[index].source;
            check(source).and_then(|parsed| patterns::draft(index, source, parsed))
        });
        Compiled { specs, drafts }
    }

    /// Each pattern that cannot be used, with why: its index in the specs
    /// given to [`Compiled::new`], the spec, and a reason that quotes it.
    pub fn problems(&self) -> impl Iterator<Item = (usize, &PatternSpec, &str)> {
        self.drafts
            .iter()
            .zip(&self.specs)
            .enumerate()
            .filter_map(|(index, (draft, spec))| draft.as_ref().err().map(|reason| (index, spec, reason.as_str())))
    }
}

impl Matcher {
    /// Checks and compiles every pattern: [`Compiled::new`], then
    /// [`Matcher::assemble`].
    pub fn build(specs: Vec<PatternSpec>, flow_count: usize, settings: &Settings) -> Result<Matcher, BuildError> {
        Matcher::assemble(Compiled::new(specs), flow_count, settings)
    }

    /// The matcher over patterns compiled one by one; the first pattern's
    /// problem, if any has one.
    pub fn assemble(compiled: Compiled, flow_count: usize, settings: &Settings) -> Result<Matcher, BuildError> {
        let Compiled { specs, drafts } = compiled;
        let drafts = drafts
            .into_iter()
            .zip(&specs)
            .map(|(draft, spec)| draft.map_err(|reason| BuildError::Pattern { pattern: spec.source.clone(), reason }))
            .collect::<Result<_, _>>()?;
        let mut capturing = Vec::with_capacity(specs.len());
        for spec in &specs {
            let has_names = spec.source.contains("(?P<") || spec.source.contains("(?<");
            let regex = match has_names {
                true => Some(patterns::compile(&spec.source).map_err(|error| BuildError::Pattern {
                    pattern: spec.source.clone(),
                    reason: patterns::uncompilable(&spec.source, error),
                })?),
                false => None,
            };
            capturing.push(regex);
        }
        let owners = specs.iter().map(|spec| spec.owner).collect();
        let patterns = PatternSet::assemble(specs.into_iter().map(|spec| spec.source).collect(), drafts)?;
        Ok(Matcher { patterns, owners, capturing, flow_count, settings: settings.clone() })
    }

    /// Drops every cache the searches so far have grown (the checks made
    /// at load run every example once; a bot that has just started should
    /// not carry what they grew).
    pub fn release_caches(&mut self) {
        self.patterns.release_caches();
    }

    /// How many patterns there are.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.len() == 0
    }

    /// The source and owner of pattern `index`, for explaining a diagnosis.
    pub fn pattern(&self, index: usize) -> (&str, Owner) {
        (self.patterns.source(index), self.owners[index])
    }

    /// Diagnoses a message from the patterns that fire on its folded form.
    pub fn diagnose(&self, text: &str) -> Diagnosis {
        let folded = fold(text);
        let fired = self.patterns.matching(folded.as_bytes());
        let mut scores = vec![0u32; self.flow_count];
        let mut vetoed = vec![false; self.flow_count];
        let (mut ios, mut android) = (false, false);
        for &index in &fired {
            match self.owners[index] {
                Owner::Match { flow, weight } => scores[flow] += weight,
                Owner::Veto { flow } => vetoed[flow] = true,
                Owner::Platform(Platform::Ios) => ios = true,
                Owner::Platform(Platform::Android) => android = true,
            }
        }
        let mut ranked: Vec<(usize, u32)> =
            scores.into_iter().enumerate().filter(|&(flow, score)| score > 0 && !vetoed[flow]).collect();
        // A stable sort keeps equal scores in flow order, so results are reproducible.
        ranked.sort_by_key(|&(_, score)| std::cmp::Reverse(score));
        let verdict = self.decide(&ranked);
        let platform = match (ios, android) {
            (true, false) => Some(Platform::Ios),
            (false, true) => Some(Platform::Android),
            _ => None,
        };
        let captures = match ranked.first() {
            Some(&(best, _)) => self.captures(&folded, &fired, best),
            None => BTreeMap::new(),
        };
        Diagnosis { verdict, scores: ranked, platform, captures, fired }
    }

    fn decide(&self, ranked: &[(usize, u32)]) -> Verdict {
        let settings = &self.settings;
        let Some(&(best, top)) = ranked.first() else {
            return Verdict::Unknown;
        };
        let runner_up = ranked.get(1).map_or(0, |&(_, score)| score);
        if top >= settings.commit_score && top >= runner_up + settings.margin {
            Verdict::Symptom(best)
        } else if top >= settings.clarify_score {
            Verdict::Unsure(
                ranked
                    .iter()
                    .take_while(|&&(_, score)| score >= settings.clarify_score)
                    .take(settings.max_candidates)
                    .map(|&(flow, _)| flow)
                    .collect(),
            )
        } else {
            Verdict::Unknown
        }
    }

    fn captures(&self, folded: &str, fired: &[usize], flow: usize) -> BTreeMap<String, String> {
        let mut captures = BTreeMap::new();
        for &index in fired {
            let (Owner::Match { flow: owner, .. }, Some(regex)) = (self.owners[index], &self.capturing[index]) else {
                continue;
            };
            if owner != flow {
                continue;
            }
            let Some(found) = regex.captures(folded.as_bytes()) else { continue };
            for name in regex.capture_names().flatten() {
                if let Some(value) = found.name(name) {
                    let value = String::from_utf8_lossy(value.as_bytes());
                    captures
                        .entry(name.to_owned())
                        .or_insert_with(|| value.trim().chars().take(MAX_SLOT_CHARS).collect());
                }
            }
        }
        captures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings { commit_score: 6, margin: 3, clarify_score: 2, switch_score: 8, max_candidates: 4 }
    }

    fn matcher(specs: &[(&str, Owner)]) -> Matcher {
        // Sorted by flow as the loader hands them over, so sets group cleanly.
        let specs =
            specs.iter().map(|&(source, owner)| PatternSpec { line: 1, source: source.to_owned(), owner }).collect();
        Matcher::build(specs, 3, &settings()).unwrap()
    }

    #[test]
    fn commits_only_with_a_clear_margin() {
        let m = matcher(&[
            ("icloud storage", Owner::Match { flow: 0, weight: 10 }),
            ("storage", Owner::Match { flow: 1, weight: 3 }),
            ("wi-?fi", Owner::Match { flow: 2, weight: 8 }),
            ("iphone", Owner::Platform(Platform::Ios)),
        ]);
        let d = m.diagnose("Not enough iCloud   storage on my iPhone");
        assert_eq!(d.verdict, Verdict::Symptom(0));
        assert_eq!(d.scores, vec![(0, 10), (1, 3)]);
        assert_eq!(d.platform, Some(Platform::Ios));

        let d = m.diagnose("iCloud storage and wifi");
        assert_eq!(d.verdict, Verdict::Unsure(vec![0, 2, 1]));

        assert_eq!(m.diagnose("storage").verdict, Verdict::Unsure(vec![1]));
        assert_eq!(m.diagnose("hello there").verdict, Verdict::Unknown);
    }

    #[test]
    fn vetoes_remove_a_flow() {
        let m =
            matcher(&[("storage", Owner::Match { flow: 0, weight: 10 }), ("phone storage", Owner::Veto { flow: 0 })]);
        assert_eq!(m.diagnose("phone storage full").verdict, Verdict::Unknown);
    }

    #[test]
    fn captures_come_from_the_best_flow_on_folded_text() {
        let m = matcher(&[(r"need (?P<needed>\d+ ?gb) more", Owner::Match { flow: 0, weight: 10 })]);
        let d = m.diagnose("You NEED 5 GB more ‘space’");
        assert_eq!(d.captures.get("needed").map(String::as_str), Some("5 GB"));
        let long = format!("need {} gb more", "1".repeat(200));
        assert_eq!(m.diagnose(&long).captures["needed"].len(), MAX_SLOT_CHARS);
    }

    #[test]
    fn pattern_checks_catch_what_can_never_or_always_match() {
        assert!(check_pattern("sauvegarde echouee").is_ok());
        assert!(check_pattern("sauvegarde échouée").unwrap_err().contains("`é`"));
        assert!(check_pattern("couldn’t").is_err());
        assert!(check_pattern("a  b").is_err());
        assert!(check_pattern("(unclosed").unwrap_err().starts_with("invalid regex"));
        assert!(check_pattern("x*").unwrap_err().contains("empty message"));
    }
}
