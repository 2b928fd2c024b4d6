//! Which of many patterns match a message: one pass of a literal automaton
//! finds where each pattern can match, and only there is its lazy DFA run,
//! anchored, so no DFA ever tracks every possible start at once.
//!
//! A pattern is cut at its top-level `|` into pieces, and each piece is run
//! on what its literals allow (`regex-syntax` extracts them): the literals
//! every match starts with (its prefixes) and those every match ends with
//! (its suffixes).
//! - Both known: the piece runs forward from a prefix's start only once a
//!   suffix has ended within the piece's length of it. `wi-?fi.{0,120}backup`
//!   on a log that says "wifi" often and "backup" far away never runs.
//! - Prefixes only: it runs forward from each prefix's start.
//! - Suffixes only: its reversed DFA runs backward from each suffix's end.
//! - Neither: it runs unanchored over the whole message, the one slow case
//!   (`fixbot check` cannot see it; the benchmarks can).
//!
//! Running unanchored was what made one set over everything, or a set per
//! flow, slow: patterns like `backup.{0,100}icloud` blow up into huge
//! states when a match may start at every byte.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use regex::bytes::{Regex, RegexBuilder};
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, MatchError};
use regex_syntax::ast::{self, Ast};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind, Repetition};

/// Compiled-program budget of one pattern.
const SIZE_LIMIT: usize = 64 << 20;
/// How much one piece's lazy DFA may cache before it starts over.
const CACHE_CAPACITY: usize = 8 << 20;
/// Literals shorter than this are too common to narrow anything down.
const MIN_LITERAL: usize = 2;
/// At most this many literals per piece and kind; past it the extractor
/// shortens them (still prefixes, or suffixes, of every match) until they
/// fit. A piece whose literals come out too short under the first limit
/// tries the next. Fewer, shorter literals cost little now that a piece
/// waits for both ends, and a smaller automaton builds and runs faster
/// (16 against 48 first: load 140–173 ms against 178–187, diagnosis
/// 97–101× Python against 79–86×, in alternating runs).
const MAX_LITERALS: [usize; 3] = [16, 64, 256];

/// Why the patterns could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A pattern did not compile.
    #[error("{reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What failed, quoting the pattern.
        reason: String,
    },
    /// The literal automaton could not be built.
    #[error("literal prefilter: {0}")]
    Literals(#[from] aho_corasick::BuildError),
}

/// Every pattern, compiled once at load.
pub struct PatternSet {
    pieces: Vec<Piece>,
    /// Every piece's literals, each once.
    literals: AhoCorasick,
    /// What literal `i` stands for: `roles[role_starts[i]..role_starts[i + 1]]`.
    role_starts: Vec<u32>,
    roles: Vec<Role>,
    /// Pieces without usable literals: run on every message.
    everywhere: Vec<u32>,
    /// One thread's working state per thread diagnosing at once.
    scratch: Pool<Scratch, ScratchFactory>,
    sources: Vec<String>,
    /// The regex crate's engine for a pattern one of whose lazy DFAs gave
    /// up, compiled the first time that happens.
    fallbacks: Vec<OnceLock<Option<Regex>>>,
}

impl std::fmt::Debug for PatternSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternSet")
            .field("patterns", &self.sources.len())
            .field("pieces", &self.pieces.len())
            .field("literals", &self.literals.patterns_len())
            .finish_non_exhaustive()
    }
}

/// One branch of a pattern's top-level alternation, ready to run.
struct Piece {
    /// The pattern it belongs to.
    pattern: u32,
    forward: DFA,
    /// Built only for pieces run backward from their suffixes (24 of the
    /// shipped 858), so boxed: a DFA's description is 720 bytes.
    reverse: Option<Box<DFA>>,
    plan: Plan,
}

/// Where a piece is run, from what its literals tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Forward from where a prefix starts.
    Prefix,
    /// Forward from where a prefix starts, once a suffix ends `min..=max`
    /// bytes after it (`max` is `u32::MAX` when matches have no bound).
    Between { min: u32, max: u32 },
    /// Backward from where a suffix ends.
    Suffix,
    /// Unanchored, on every message.
    Everywhere,
}

/// What one literal of the automaton is to one piece.
#[derive(Debug, Clone, Copy)]
struct Role {
    piece: u32,
    /// It ends the piece's matches (else it starts them).
    suffix: bool,
}

/// What one diagnosis knows of a pattern so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Nothing,
    Fired,
    /// The regex crate said it does not match anywhere.
    NotFired,
}

/// One thread's caches and bookkeeping, kept between messages so a
/// diagnosis allocates next to nothing.
struct Scratch {
    /// Each piece's DFA caches, made the first time the piece runs: most
    /// pieces never run on most messages, and empty caches alone would hold
    /// megabytes. Boxed, so a thread's slots for every piece take a pointer
    /// each rather than a cache's 352 bytes (600 KB a thread, unboxed).
    forward: Vec<Option<Box<Cache>>>,
    reverse: Vec<Option<Box<Cache>>>,
    /// Per pattern.
    known: Vec<Known>,
    /// Per piece: the last place it was run at (or queued at), so two
    /// literals found at one place run it once.
    last: Vec<u32>,
    /// Per `Between` piece: the prefix starts waiting for a suffix.
    waiting: Vec<Vec<u32>>,
    /// Suffix roles found at the current end, handled after every prefix
    /// found there (a piece's prefix and suffix can end at one place).
    suffixes: Vec<u32>,
    /// The haystack with ASCII letters lower-cased, which the literal
    /// automaton reads: an automaton of lower-case literals that minds case
    /// builds in a third of the time of one that ignores it (over the
    /// shipped literals, 3.7 ms against 10.5), and the offsets are the same.
    lowered: Vec<u8>,
}

/// Makes one thread's scratch.
type ScratchFactory = Box<dyn Fn() -> Scratch + Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe>;

/// Where one run of a piece is anchored.
#[derive(Debug, Clone, Copy)]
enum At {
    Start(usize),
    End(usize),
    Anywhere,
}

/// The literals (lower-cased) that every match of `hir` starts with
/// (`Prefix`) or ends with (`Suffix`), if they are few and long enough to be
/// worth looking for.
fn literals(hir: &Hir, kind: ExtractKind) -> Option<Vec<Vec<u8>>> {
    MAX_LITERALS.iter().find_map(|&limit| literals_within(hir, kind.clone(), limit))
}

/// Like [`literals`], with at most `limit` of them.
fn literals_within(hir: &Hir, kind: ExtractKind, limit: usize) -> Option<Vec<Vec<u8>>> {
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

/// Whether `source` sets or clears a flag anywhere (`(?i)`, `(?-i:…)`):
/// such a pattern is neither cut nor given literals, which are taken
/// ignoring case.
fn sets_flags(source: &str) -> bool {
    source.match_indices("(?").any(|(at, _)| {
        let rest = &source[at + 2..];
        !(rest.starts_with(':') || rest.starts_with("P<") || rest.starts_with('<'))
    })
}

/// The top-level branches of pattern `source` (parsed as `ast`), looking
/// through groups around the whole of it; the pattern itself when it has
/// one branch or sets flags (a flag group's branches depend on it).
fn branches<'a>(source: &str, ast: &'a Ast) -> Vec<&'a Ast> {
    fn cut<'a>(ast: &'a Ast, out: &mut Vec<&'a Ast>) {
        match ast {
            Ast::Alternation(alternation) => alternation.asts.iter().for_each(|branch| cut(branch, out)),
            Ast::Group(group) => cut(&group.ast, out),
            other => out.push(other),
        }
    }
    if sets_flags(source) {
        return vec![ast];
    }
    let mut out = Vec::new();
    cut(ast, &mut out);
    out
}

/// Patterns run over bytes with Unicode classes off: the folded text is
/// (nearly) ASCII, and ASCII-only `\w`, `[^.]` and case folding keep the
/// automata small.
pub(super) fn compile(source: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(source).case_insensitive(true).unicode(false).size_limit(SIZE_LIMIT).build()
}

/// `ast` (part of `source`) as matched: bytes, ASCII classes, ignoring case
/// when `ignore_case` (the DFAs) and minding it when not (the literals).
fn translate(source: &str, ast: &Ast, ignore_case: bool) -> Result<Hir, regex_syntax::hir::Error> {
    regex_syntax::hir::translate::TranslatorBuilder::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(ignore_case)
        .build()
        .translate(source, ast)
}

/// `hir` without the end its matches may have but need not (`backup\w*`
/// becomes `backup`, `(sync|upload\w*)` becomes `(sync|upload)`).
/// Whether a match starts at a place is all a piece is asked, and every
/// match of `hir` starting there begins with a match of the trimmed form,
/// which extends to one of `hir` by matching the rest empty. Trimmed, a
/// piece's matches end in the literals a `\w*` hid: it then waits for one
/// instead of running from every prefix to its full length.
fn trim_end(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Repetition(Repetition { min: 0, .. }) => Hir::empty(),
        HirKind::Repetition(repetition) if repetition.min == 1 => trim_end(*repetition.sub),
        HirKind::Repetition(repetition) => {
            let last = trim_end((*repetition.sub).clone());
            let before = Repetition { min: repetition.min - 1, max: Some(repetition.min - 1), ..repetition };
            Hir::concat(vec![Hir::repetition(before), last])
        }
        // Captures are not kept by the pieces' automata.
        HirKind::Capture(capture) => trim_end(*capture.sub),
        HirKind::Concat(mut subs) => {
            while let Some(last) = subs.pop() {
                let trimmed = trim_end(last);
                if !matches!(trimmed.kind(), HirKind::Empty) {
                    subs.push(trimmed);
                    break;
                }
            }
            Hir::concat(subs)
        }
        // One branch that may match nothing lets the whole alternation.
        HirKind::Alternation(subs) => {
            let branches: Vec<Hir> = subs.into_iter().map(trim_end).collect();
            match branches.iter().any(|branch| matches!(branch.kind(), HirKind::Empty)) {
                true => Hir::empty(),
                false => Hir::alternation(branches),
            }
        }
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(literal) => Hir::literal(literal.0),
        HirKind::Class(class) => Hir::class(class),
        HirKind::Look(look) => Hir::look(look),
    }
}

/// One lazy DFA for `hir`, run forward or (`reverse`) backward.
fn lazy_dfa(hir: &Hir, reverse: bool) -> Result<DFA, String> {
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .which_captures(thompson::WhichCaptures::None)
                .reverse(reverse)
                .nfa_size_limit(Some(SIZE_LIMIT)),
        )
        .build_from_hir(hir)
        .map_err(|error| error.to_string())?;
    DFA::builder()
        .configure(DFA::config().cache_capacity(CACHE_CAPACITY).skip_cache_capacity_check(true))
        .build_from_nfa(nfa)
        .map_err(|error| error.to_string())
}

/// A piece compiled, before it is numbered, with its literals.
pub(super) struct Draft {
    piece: Piece,
    prefixes: Vec<Vec<u8>>,
    suffixes: Vec<Vec<u8>>,
}

/// A pattern parsed and cut into pieces, before anything is compiled: what
/// the loader's checks read, so a pattern is parsed once for both.
pub(super) struct Parsed {
    ast: Ast,
    /// Whether the pattern sets flags: then it is one piece, run everywhere.
    flags: bool,
    /// Each piece as written, minding case (its literals come from it); for
    /// a pattern that sets flags, the whole of it ignoring case.
    pieces: Vec<Hir>,
}

impl Parsed {
    /// The length of the pattern's shortest match, if it can match at all.
    pub(super) fn minimum_len(&self) -> Option<usize> {
        self.pieces.iter().filter_map(|piece| piece.properties().minimum_len()).min()
    }
}

/// What the regex parser says is wrong with `source`: the last line of its
/// report (the lines before it draw the pattern with a caret).
fn invalid(source: &str, error: impl std::fmt::Display) -> String {
    let text = error.to_string();
    let reason = text.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or(&text);
    format!("invalid regex `{source}`: {}", reason.trim().trim_start_matches("error: "))
}

/// Parses `source` and cuts it into pieces. Case does not change whether a
/// pattern parses or what lengths it matches, so the checks read the pieces
/// minding case, which translates several times faster than ignoring it
/// (and which their literals need); a pattern that sets flags is read whole,
/// ignoring case, as its automaton runs.
pub(super) fn parse(source: &str) -> Result<Parsed, String> {
    let ast = ast::parse::Parser::new().parse(source).map_err(|error| invalid(source, error))?;
    let flags = sets_flags(source);
    let pieces = match flags {
        true => vec![translate(source, &ast, true).map_err(|error| invalid(source, error))?],
        false => branches(source, &ast)
            .into_iter()
            .map(|piece| translate(source, piece, false).map_err(|error| invalid(source, error)))
            .collect::<Result<_, _>>()?,
    };
    Ok(Parsed { ast, flags, pieces })
}

/// Why `source`, which parses, cannot be compiled (past a size limit).
pub(super) fn uncompilable(source: &str, reason: impl std::fmt::Display) -> String {
    format!("regex `{source}` cannot be compiled: {reason}")
}

/// Compiles each piece of pattern `pattern` (`source`, parsed), or says why
/// it cannot be.
pub(super) fn draft(pattern: usize, source: &str, parsed: Parsed) -> Result<Vec<Draft>, String> {
    let failed = |reason: String| uncompilable(source, reason);
    let Parsed { ast, flags, pieces } = parsed;
    let mut drafts = Vec::with_capacity(pieces.len());
    for (written, ast) in pieces.into_iter().zip(branches(source, &ast)) {
        // Literals come from the piece as written (case-sensitive), trimmed,
        // and the automaton matches them ignoring ASCII case, as the DFA
        // does. The DFA itself is not trimmed: its earliest match ends where
        // the trimmed form's does, and every match of the trimmed form
        // ending at a suffix is one of the whole piece, so a reverse run from
        // there finds it whatever the two translations make of the rest.
        let (prefixes, suffixes, plan, hir) = if flags {
            (None, None, Plan::Everywhere, written)
        } else {
            let literal = trim_end(written);
            let (prefixes, suffixes) =
                (literals(&literal, ExtractKind::Prefix), literals(&literal, ExtractKind::Suffix));
            let length = |bound: Option<usize>| bound.map_or(u32::MAX, |bound| bound.min(u32::MAX as usize) as u32);
            let plan = match (&prefixes, &suffixes) {
                (Some(_), Some(_)) => Plan::Between {
                    min: length(literal.properties().minimum_len()),
                    max: length(literal.properties().maximum_len()),
                },
                (Some(_), None) => Plan::Prefix,
                (None, Some(_)) => Plan::Suffix,
                (None, None) => Plan::Everywhere,
            };
            let hir = translate(source, ast, true).map_err(|error| invalid(source, error))?;
            (prefixes, suffixes, plan, hir)
        };
        let forward = lazy_dfa(&hir, false).map_err(failed)?;
        let reverse = match plan {
            Plan::Suffix => Some(Box::new(lazy_dfa(&hir, true).map_err(failed)?)),
            _ => None,
        };
        drafts.push(Draft {
            piece: Piece { pattern: pattern as u32, forward, reverse, plan },
            prefixes: prefixes.unwrap_or_default(),
            suffixes: suffixes.unwrap_or_default(),
        });
    }
    Ok(drafts)
}

impl PatternSet {
    /// Numbers every pattern's pieces (`drafts`, in the order of
    /// `sources`) and builds the literal automaton over their literals.
    pub(super) fn assemble(sources: Vec<String>, drafts: Vec<Vec<Draft>>) -> Result<PatternSet, BuildError> {
        // Sized exactly: kept for the process's life, 752 bytes a piece.
        let mut pieces = Vec::with_capacity(drafts.iter().map(Vec::len).sum());
        // Each literal once, with what it is to every piece.
        let mut roles_of: BTreeMap<Vec<u8>, Vec<Role>> = BTreeMap::new();
        let mut everywhere = Vec::new();
        for draft in drafts {
            for Draft { piece: compiled, prefixes, suffixes } in draft {
                let piece = pieces.len() as u32;
                let tagged = prefixes.into_iter().map(|literal| (literal, false));
                for (literal, suffix) in tagged.chain(suffixes.into_iter().map(|literal| (literal, true))) {
                    roles_of.entry(literal).or_default().push(Role { piece, suffix });
                }
                if compiled.plan == Plan::Everywhere {
                    everywhere.push(piece);
                }
                pieces.push(compiled);
            }
        }
        let literals = AhoCorasick::builder().kind(Some(AhoCorasickKind::ContiguousNFA)).build(roles_of.keys())?;
        let mut role_starts = vec![0u32];
        let mut roles = Vec::new();
        for of_literal in roles_of.values() {
            roles.extend(of_literal);
            role_starts.push(roles.len() as u32);
        }
        let scratch = scratch_pool(sources.len(), pieces.len());
        Ok(PatternSet {
            pieces,
            literals,
            role_starts,
            roles,
            everywhere,
            scratch,
            fallbacks: sources.iter().map(|_| OnceLock::new()).collect(),
            sources,
        })
    }

    /// How many patterns there are.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// The source of pattern `index`, as written.
    pub fn source(&self, index: usize) -> &str {
        &self.sources[index]
    }

    /// Drops every cache the searches so far have grown (the checks made at
    /// load run every example once; a bot that has just started should not
    /// carry what they grew).
    pub fn release_caches(&mut self) {
        self.scratch = scratch_pool(self.sources.len(), self.pieces.len());
    }

    /// The indices of the patterns that match `haystack`, in order.
    pub fn matching(&self, haystack: &[u8]) -> Vec<usize> {
        let mut scratch = self.scratch.get();
        let scratch = &mut *scratch;
        scratch.known.fill(Known::Nothing);
        scratch.last.fill(u32::MAX);
        scratch.waiting.iter_mut().for_each(Vec::clear);
        scratch.suffixes.clear();
        let mut lowered = std::mem::take(&mut scratch.lowered);
        lowered.clear();
        lowered.extend(haystack.iter().map(u8::to_ascii_lowercase));
        // The automaton reports matches by where they end; a piece's suffix
        // is handled once every prefix ending at the same place has been.
        let mut end = 0;
        for found in self.literals.find_overlapping_iter(&lowered) {
            if found.end() != end {
                self.on_suffixes(haystack, end, scratch);
                end = found.end();
            }
            let literal = found.pattern().as_usize();
            for role in &self.roles[self.role_starts[literal] as usize..self.role_starts[literal + 1] as usize] {
                match role.suffix {
                    true => scratch.suffixes.push(role.piece),
                    false => self.on_prefix(haystack, role.piece as usize, found.start(), scratch),
                }
            }
        }
        self.on_suffixes(haystack, end, scratch);
        scratch.lowered = lowered;
        for &piece in &self.everywhere {
            if scratch.known[self.pieces[piece as usize].pattern as usize] == Known::Nothing {
                self.run(haystack, piece as usize, At::Anywhere, scratch);
            }
        }
        scratch.known.iter().enumerate().filter(|(_, known)| **known == Known::Fired).map(|(index, _)| index).collect()
    }

    /// A prefix of `piece` starts at `start`.
    fn on_prefix(&self, haystack: &[u8], piece: usize, start: usize, scratch: &mut Scratch) {
        let Piece { pattern, plan, .. } = self.pieces[piece];
        if scratch.known[pattern as usize] != Known::Nothing || scratch.last[piece] == start as u32 {
            return;
        }
        scratch.last[piece] = start as u32;
        match plan {
            Plan::Prefix => self.run(haystack, piece, At::Start(start), scratch),
            Plan::Between { .. } => scratch.waiting[piece].push(start as u32),
            Plan::Suffix | Plan::Everywhere => {}
        }
    }

    /// Suffixes of the pieces in `scratch.suffixes` end at `end`.
    fn on_suffixes(&self, haystack: &[u8], end: usize, scratch: &mut Scratch) {
        let mut suffixes = std::mem::take(&mut scratch.suffixes);
        for &piece in &suffixes {
            let piece = piece as usize;
            let Piece { pattern, plan, .. } = self.pieces[piece];
            if scratch.known[pattern as usize] != Known::Nothing {
                continue;
            }
            match plan {
                Plan::Suffix if scratch.last[piece] != end as u32 => {
                    scratch.last[piece] = end as u32;
                    self.run(haystack, piece, At::End(end), scratch);
                }
                Plan::Between { min, max } => {
                    let mut waiting = std::mem::take(&mut scratch.waiting[piece]);
                    // A start too far back for this suffix is too far for
                    // every later one; a start that fits runs once, and its
                    // run finds a match ending anywhere.
                    waiting.retain(|&start| {
                        let length = end as u64 - u64::from(start);
                        if length > u64::from(max) {
                            false
                        } else if length >= u64::from(min) {
                            if scratch.known[pattern as usize] == Known::Nothing {
                                self.run(haystack, piece, At::Start(start as usize), scratch);
                            }
                            false
                        } else {
                            true
                        }
                    });
                    scratch.waiting[piece] = waiting;
                }
                Plan::Suffix | Plan::Prefix | Plan::Everywhere => {}
            }
        }
        suffixes.clear();
        scratch.suffixes = suffixes;
    }

    /// Runs `piece` once and records what that says of its pattern: a
    /// piece's failure says nothing of the pattern's other pieces.
    fn run(&self, haystack: &[u8], piece: usize, at: At, scratch: &mut Scratch) {
        let pattern = self.pieces[piece].pattern as usize;
        match self.search(haystack, piece, at, scratch) {
            Ok(true) => scratch.known[pattern] = Known::Fired,
            Ok(false) => {}
            // The DFA only gives up past its cache capacity for a search; the
            // regex crate would then fall back to a slower engine, and so do
            // we, for the whole pattern at once.
            Err(_) => {
                scratch.known[pattern] = match self.fallback(pattern, haystack) {
                    true => Known::Fired,
                    false => Known::NotFired,
                }
            }
        }
    }

    fn search(&self, haystack: &[u8], piece: usize, at: At, scratch: &mut Scratch) -> Result<bool, MatchError> {
        let Piece { forward, reverse, .. } = &self.pieces[piece];
        let input = Input::new(haystack).earliest(true);
        let found = match (at, reverse) {
            (At::End(end), Some(reverse)) => {
                let cache = scratch.reverse[piece].get_or_insert_with(|| Box::new(reverse.create_cache()));
                reverse.try_search_rev(cache, &input.range(..end).anchored(Anchored::Yes))?
            }
            (At::Start(start), _) => {
                let cache = scratch.forward[piece].get_or_insert_with(|| Box::new(forward.create_cache()));
                forward.try_search_fwd(cache, &input.range(start..).anchored(Anchored::Yes))?
            }
            (At::Anywhere | At::End(_), _) => {
                let cache = scratch.forward[piece].get_or_insert_with(|| Box::new(forward.create_cache()));
                forward.try_search_fwd(cache, &input)?
            }
        };
        Ok(found.is_some())
    }

    /// Whether pattern `index` matches anywhere, by the regex crate.
    fn fallback(&self, index: usize, haystack: &[u8]) -> bool {
        self.fallbacks[index]
            .get_or_init(|| compile(&self.sources[index]).ok())
            .as_ref()
            .is_some_and(|regex| regex.is_match(haystack))
    }
}

/// A pool whose threads start with no cache at all.
fn scratch_pool(patterns: usize, pieces: usize) -> Pool<Scratch, ScratchFactory> {
    Pool::new(Box::new(move || Scratch {
        forward: (0..pieces).map(|_| None).collect(),
        reverse: (0..pieces).map(|_| None).collect(),
        known: vec![Known::Nothing; patterns],
        last: vec![u32::MAX; pieces],
        waiting: vec![Vec::new(); pieces],
        suffixes: Vec::new(),
        lowered: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(sources: &[&str]) -> PatternSet {
        let drafts = sources
            .iter()
            .enumerate()
            .map(|(pattern, source)| draft(pattern, source, parse(source).unwrap()).unwrap())
            .collect();
        PatternSet::assemble(sources.iter().map(|source| source.to_string()).collect(), drafts).unwrap()
    }

    fn cut(source: &str) -> Vec<&str> {
        let ast = ast::parse::Parser::new().parse(source).unwrap();
        let spans: Vec<_> = branches(source, &ast).iter().map(|branch| *branch.span()).collect();
        spans.iter().map(|span| &source[span.start.offset..span.end.offset]).collect()
    }

    #[test]
    fn cuts_only_the_top_level_alternation() {
        assert_eq!(cut("a|(b|c)d|(e|f)"), ["a", "(b|c)d", "e", "f"]);
        assert_eq!(cut("(?:icloud|google) full"), ["(?:icloud|google) full"]);
        assert_eq!(cut("(?i:a|b)"), ["(?i:a|b)"]);
        assert_eq!(cut("(?P<n>\\d+ gb|\\d+ mb)"), ["\\d+ gb", "\\d+ mb"]);
    }

    #[test]
    fn every_plan_finds_what_the_regex_crate_finds() {
        let sources = [
            // Prefix only, suffix only, both, neither.
            r"icloud\w*",
            r"\d+ ?gb left",
            r"wi-?fi.{0,20}backup",
            r"\d+\w*",
            // Cut into pieces of different plans.
            r"(room|\d+ ?gb)[^.]{0,10}icloud|icloud[^.]{0,10}(room|upgrad\w*)",
            // A piece that fires, then one run everywhere that does not.
            r"backup.{0,10}icloud|\d+\w*x",
            r"ab|b",
            r"backup",
            // Trimmed: what matches may end with but need not.
            r"(low power|charg\w*).{0,20}(backup|sauvegard\w*)",
            r"up(load\w*|dat(e|ing)?)+",
            r"(\d+ ?gb|room)\b",
        ];
        let patterns = set(&sources);
        let regexes: Vec<Regex> = sources.iter().map(|source| compile(source).unwrap()).collect();
        for text in [
            "my icloudx is 5 gb left",
            "wifi is on. later a backup",
            "wifi, then backup",
            "backup to icloud, 5 things",
            "wifi and then a very long wait before backup",
            "room for icloud",
            "5gb. icloud",
            "ICLOUD upgrading",
            "Wi-Fi first, then BackUp",
            "BACKUP to iCloud, 12 GB Left",
            "xab",
            "b",
            "7",
            "",
            "charging, then sauvegarde",
            "low power mode stopped the backups",
            "charge it. sauvegarde",
            "uploading updates",
            "updat",
            "12 gbx room",
            "12 gb",
        ] {
            let expected: Vec<usize> =
                (0..sources.len()).filter(|&index| regexes[index].is_match(text.as_bytes())).collect();
            assert_eq!(patterns.matching(text.as_bytes()), expected, "{text:?}");
        }
    }

    #[test]
    fn plans_follow_the_literals() {
        let patterns = set(&[r"icloud\w*\d", r"\d+ ?gb", r"wi-?fi.{0,20}backup", r"\d+\w*", r"icloud\w*"]);
        let plans: Vec<Plan> = patterns.pieces.iter().map(|piece| piece.plan).collect();
        assert_eq!(
            plans,
            [
                Plan::Prefix,
                Plan::Suffix,
                Plan::Between { min: 10, max: 31 },
                Plan::Everywhere,
                // Its `\w*` may match nothing: every match starts with "icloud".
                Plan::Between { min: 6, max: 6 },
            ],
            "{patterns:?}"
        );
    }

    #[test]
    fn trimming_drops_only_what_may_match_nothing() {
        let hir = |source: &str| translate(source, &ast::parse::Parser::new().parse(source).unwrap(), false).unwrap();
        for (source, trimmed) in [
            (r"backup\w*", "backup"),
            (r"(sync|upload\w*)", "sync|upload"),
            (r"a(b|c*)", "a"),
            (r"ab{3,5}", "ab{2}b"),
            (r"a(bc)+", "abc"),
            (r"ab?\b", r"ab?\b"),
            (r"a\bb*", r"a\b"),
        ] {
            assert_eq!(trim_end(hir(source)), hir(trimmed), "{source}");
        }
    }
}
