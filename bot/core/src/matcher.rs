//! Diagnosis: which patterns fire on the folded message, scores per flow,
//! vetoes, and a verdict. Ties and weak scores become a clarifying question,
//! never a guess.
//!
//! How patterns are run (see ARCHITECTURE.md for the measurements): every
//! pattern gets a lazy DFA of its own, and one Aho-Corasick automaton holds
//! the literals that every match of a pattern starts with (its prefixes, as
//! `regex-syntax` extracts them), or failing that ends with. One pass of the
//! automaton over the message finds where patterns can match; a pattern is
//! run only there, anchored at each place its prefix occurs, so its DFA
//! never tracks every possible start at once (which is what made one
//! unanchored set over everything, or a set per flow, slow: patterns like
//! `backup.{0,100}icloud` blow up into huge states). The few patterns
//! without usable literals are run unanchored on every message.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use regex::bytes::{Regex, RegexBuilder};
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::pool::Pool;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use crate::flow::{Platform, Settings};
use crate::markup::MAX_SLOT_CHARS;
use crate::text::fold;

/// Compiled-program budget of one pattern.
const SIZE_LIMIT: usize = 64 << 20;
/// How much one pattern's lazy DFA may cache before it starts over.
const CACHE_CAPACITY: usize = 8 << 20;
/// Literals shorter than this are too common to narrow anything down.
const MIN_LITERAL: usize = 2;
/// At most this many literals per pattern; past it the extractor shortens
/// them (still prefixes of every match) until they fit. A pattern whose
/// literals come out too short under the first limit tries the next.
const MAX_LITERALS: [usize; 3] = [48, 256, 1024];

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

/// Makes one thread's (empty) set of caches.
type CacheFactory =
    Box<dyn Fn() -> Vec<Option<Cache>> + Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe>;

/// A pool whose threads start with no cache at all.
fn cache_pool(patterns: usize) -> Pool<Vec<Option<Cache>>, CacheFactory> {
    Pool::new(Box::new(move || (0..patterns).map(|_| None).collect()))
}

/// All patterns of all flows, compiled once at load.
pub struct Matcher {
    /// Each pattern's DFA and where it may start, by pattern index.
    patterns: Vec<Compiled>,
    /// The literals of every pattern that has usable ones, each once.
    literals: AhoCorasick,
    /// The patterns of literal `i`: `literal_owners[literal_starts[i]..literal_starts[i + 1]]`.
    literal_starts: Vec<u32>,
    literal_owners: Vec<u32>,
    /// Patterns without usable literals: run on every message.
    everywhere: Vec<usize>,
    /// One lazy-DFA cache per pattern, per thread diagnosing at once, each
    /// made the first time its pattern runs: most patterns never run on most
    /// messages, and 300 empty caches alone would hold 20 MB.
    caches: Pool<Vec<Option<Cache>>, CacheFactory>,
    owners: Vec<Owner>,
    sources: Vec<String>,
    /// Only patterns with named groups are compiled a second time, for captures.
    capturing: Vec<Option<Regex>>,
    /// The regex crate's engine for a pattern whose lazy DFA gave up,
    /// compiled the first time that happens.
    fallbacks: Vec<std::sync::OnceLock<Option<Regex>>>,
    flow_count: usize,
    settings: Settings,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher").field("patterns", &self.sources.len()).finish_non_exhaustive()
    }
}

/// One pattern, ready to run.
struct Compiled {
    dfa: DFA,
    /// Where its literals say it may match.
    anchor: Anchor,
}

/// What one diagnosis knows of a pattern so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tried {
    /// Not run yet.
    Not,
    /// It matched.
    Fired,
    /// Run last anchored here, without a match.
    At(usize),
    /// Run over the whole message, without a match.
    Everywhere,
}

/// What a pattern's literals tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// Every match starts with one: run anchored where one starts.
    Prefix,
    /// Every match ends with one: when one occurs, run once, unanchored.
    Suffix,
    /// None usable: run unanchored on every message.
    None,
}

/// Why the patterns could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A pattern did not compile.
    #[error("regex `{pattern}`: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What failed.
        reason: String,
    },
    /// The literal automaton could not be built.
    #[error("literal prefilter: {0}")]
    Literals(#[from] aho_corasick::BuildError),
}

/// The literals (lower-cased) that every match of `hir` starts with
/// (`Prefix`) or ends with (`Suffix`), if they are few and long enough to be
/// worth looking for.
fn literals(hir: &regex_syntax::hir::Hir, kind: ExtractKind) -> Option<Vec<Vec<u8>>> {
    MAX_LITERALS.iter().find_map(|&limit| literals_within(hir, kind.clone(), limit))
}

/// Like [`literals`], with at most `limit` of them.
fn literals_within(hir: &regex_syntax::hir::Hir, kind: ExtractKind, limit: usize) -> Option<Vec<Vec<u8>>> {
    let mut extractor = Extractor::new();
    extractor.kind(kind).limit_total(limit);
    let mut seq = extractor.extract(hir);
    seq.dedup();
    let literals = seq.literals()?;
    let shortest = literals.iter().map(|literal| literal.as_bytes().len()).min()?;
    if shortest < MIN_LITERAL {
        return None;
    }
    let mut literals: Vec<Vec<u8>> = literals.iter().map(|literal| literal.as_bytes().to_ascii_lowercase()).collect();
    literals.sort_unstable();
    literals.dedup();
    Some(literals)
}

/// Checks one pattern on its own: it parses, it is written in the folded
/// form messages are matched in, and it cannot match an empty message.
/// Parsing alone is enough here; the pattern is compiled once, in its set.
pub fn check_pattern(source: &str) -> Result<(), String> {
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .unicode(false)
        .utf8(false)
        .build()
        .parse(source)
        .map_err(|error| {
            let text = error.to_string();
            let reason = text.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or(&text);
            format!("invalid regex `{source}`: {}", reason.trim().trim_start_matches("error: "))
        })?;
    if let Some(c) = source.chars().find(|&c| !c.is_whitespace() && fold(&c.to_string()) != c.to_string()) {
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
    if hir.properties().minimum_len() == Some(0) {
        return Err(format!("regex `{source}` matches an empty message, so it would match every message"));
    }
    Ok(())
}

/// Patterns run over bytes with Unicode classes off: the folded text is
/// (nearly) ASCII, and ASCII-only `\\w`, `[^.]` and case folding keep the
/// automata small.
fn compile(source: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(source).case_insensitive(true).unicode(false).size_limit(SIZE_LIMIT).build()
}

impl Matcher {
    /// Compiles every pattern and the literal automaton. Patterns are
    /// assumed to have passed [`check_pattern`].
    pub fn build(specs: Vec<PatternSpec>, flow_count: usize, settings: &Settings) -> Result<Matcher, BuildError> {
        let failed = |pattern: &str, reason: String| BuildError::Pattern { pattern: pattern.to_owned(), reason };
        let mut patterns = Vec::with_capacity(specs.len());
        // Each literal once, with every pattern it stands for.
        let mut owners_of: BTreeMap<Vec<u8>, Vec<u32>> = BTreeMap::new();
        let mut everywhere = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            // Literals come from the pattern as written (case-sensitive), and
            // the automaton matches them ignoring ASCII case, as the DFA does.
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(&spec.source)
                .map_err(|error| failed(&spec.source, error.to_string()))?;
            let toggles_case = spec.source.contains("(?-i") || spec.source.contains("(?i");
            let found = if toggles_case {
                None
            } else if let Some(literals) = literals(&hir, ExtractKind::Prefix) {
                Some((Anchor::Prefix, literals))
            } else {
                literals(&hir, ExtractKind::Suffix).map(|literals| (Anchor::Suffix, literals))
            };
            let anchor = match found {
                Some((anchor, literals)) => {
                    for literal in literals {
                        owners_of.entry(literal).or_default().push(index as u32);
                    }
                    anchor
                }
                None => {
                    everywhere.push(index);
                    Anchor::None
                }
            };
            let dfa = DFA::builder()
                .syntax(syntax::Config::new().case_insensitive(true).unicode(false).utf8(false))
                .thompson(thompson::Config::new().which_captures(thompson::WhichCaptures::None))
                .configure(DFA::config().cache_capacity(CACHE_CAPACITY).skip_cache_capacity_check(true))
                .build(&spec.source)
                .map_err(|error| failed(&spec.source, error.to_string()))?;
            patterns.push(Compiled { dfa, anchor });
        }
        let literals = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(owners_of.keys())?;
        let mut literal_starts = vec![0u32];
        let mut literal_owners = Vec::new();
        for owners in owners_of.values() {
            literal_owners.extend(owners);
            literal_starts.push(literal_owners.len() as u32);
        }
        let mut capturing = Vec::with_capacity(specs.len());
        for spec in &specs {
            let has_names = spec.source.contains("(?P<") || spec.source.contains("(?<");
            let regex = if has_names {
                Some(compile(&spec.source).map_err(|error| failed(&spec.source, error.to_string()))?)
            } else {
                None
            };
            capturing.push(regex);
        }
        Ok(Matcher {
            patterns,
            literals,
            literal_starts,
            literal_owners,
            everywhere,
            caches: cache_pool(specs.len()),
            fallbacks: specs.iter().map(|_| std::sync::OnceLock::new()).collect(),
            owners: specs.iter().map(|spec| spec.owner).collect(),
            sources: specs.into_iter().map(|spec| spec.source).collect(),
            capturing,
            flow_count,
            settings: settings.clone(),
        })
    }

    /// The indices of the patterns that match `haystack`, in order.
    ///
    /// Patterns run as the literal automaton finds their literals, in the
    /// message's order; one that has fired, or a suffix-literal pattern that
    /// has run once over the whole message, is not run again.
    fn fired(&self, haystack: &[u8]) -> Vec<usize> {
        let mut caches = self.caches.get();
        let mut state = vec![Tried::Not; self.patterns.len()];
        for found in self.literals.find_overlapping_iter(haystack) {
            let literal = found.pattern().as_usize();
            let owners =
                &self.literal_owners[self.literal_starts[literal] as usize..self.literal_starts[literal + 1] as usize];
            for &pattern in owners {
                let pattern = pattern as usize;
                let start = match (self.patterns[pattern].anchor, state[pattern]) {
                    (_, Tried::Fired | Tried::Everywhere) => continue,
                    // Two literals of one pattern can start at one place.
                    (Anchor::Prefix, Tried::At(start)) if start == found.start() => continue,
                    (Anchor::Prefix, _) => Some(found.start()),
                    (Anchor::Suffix | Anchor::None, _) => None,
                };
                state[pattern] = self.run(pattern, haystack, start, &mut caches);
            }
        }
        for &pattern in &self.everywhere {
            state[pattern] = self.run(pattern, haystack, None, &mut caches);
        }
        state.iter().enumerate().filter(|(_, state)| **state == Tried::Fired).map(|(index, _)| index).collect()
    }

    /// Runs pattern `index` over `haystack`, anchored at `start` when given,
    /// and says what is now known of it.
    fn run(&self, index: usize, haystack: &[u8], start: Option<usize>, caches: &mut [Option<Cache>]) -> Tried {
        let input = match start {
            None => Input::new(haystack).earliest(true),
            Some(start) => Input::new(haystack).range(start..).anchored(Anchored::Yes).earliest(true),
        };
        // The DFA only gives up past the cache capacity for a search; the
        // regex crate would then fall back to a slower engine, and so do we.
        let dfa = &self.patterns[index].dfa;
        let cache = caches[index].get_or_insert_with(|| dfa.create_cache());
        let matched = match dfa.try_search_fwd(cache, &input) {
            Ok(found) => found.is_some(),
            Err(_) => self.fallback(index, haystack, start),
        };
        match (matched, start) {
            (true, _) => Tried::Fired,
            (false, None) => Tried::Everywhere,
            (false, Some(start)) => Tried::At(start),
        }
    }

    /// Runs pattern `index` with the regex crate, when its lazy DFA gave up.
    fn fallback(&self, index: usize, haystack: &[u8], start: Option<usize>) -> bool {
        let Some(regex) = self.fallbacks[index].get_or_init(|| compile(&self.sources[index]).ok()) else {
            return false;
        };
        match start {
            None => regex.is_match(haystack),
            Some(start) => regex.find_at(haystack, start).is_some_and(|found| found.start() == start),
        }
    }

    /// Drops every cache the searches so far have grown (the checks made
    /// at load run every example once; a bot that has just started should
    /// not carry what they grew).
    pub fn release_caches(&mut self) {
        self.caches = cache_pool(self.patterns.len());
    }

    /// How many patterns there are.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The source and owner of pattern `index`, for explaining a diagnosis.
    pub fn pattern(&self, index: usize) -> (&str, Owner) {
        (&self.sources[index], self.owners[index])
    }

    /// Diagnoses a message with one pass of the set over its folded form.
    pub fn diagnose(&self, text: &str) -> Diagnosis {
        let folded = fold(text);
        let fired = self.fired(folded.as_bytes());
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
