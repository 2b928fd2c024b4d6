//! Engine invariants over generated conversations against the shipped flows: pastes, typed
//! answers, presses on current, old and forged buttons, commands and waits, each transition checked
//! by `invariants.rs` (the fuzz targets' checks). Runs are seeded, so CI sees the same cases every
//! time; `PROPTEST_RNG_SEED=<n>` explores others and `PROPTEST_CASES=<n>` runs more.

use std::sync::{Arc, OnceLock};

use fixbot_core::button::ButtonRef;
use fixbot_core::engine::Command;
use fixbot_core::flow::Flows;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::invariants::{Act, MAX_WAIT, Reference, Walk, check_conversation, check_every_step, check_flow_file};
use crate::support::{root, shipped_flows};

/// Conversations per property; each runs up to `MAX_ACTS` inputs.
const CASES: u32 = 256;
/// Longest generated conversation.
const MAX_ACTS: usize = 40;
/// The seed unless `PROPTEST_RNG_SEED` names another.
const SEED: u64 = 0x5eed_f1b0;

/// The shipped flows, loaded once for every property.
fn flows() -> &'static Flows {
    static FLOWS: OnceLock<Arc<Flows>> = OnceLock::new();
    FLOWS.get_or_init(shipped_flows)
}

/// Proptest's settings from the environment, with our case count and seed
/// where it names none.
fn config(cases: u32) -> Config {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if matches!(config.rng_seed, RngSeed::Random) {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config
}

/// What people write: the labelled and hostile corpora, the navigation words
/// and button labels of the shipped flows, and numbers.
fn messages() -> &'static [String] {
    static MESSAGES: OnceLock<Vec<String>> = OnceLock::new();
    MESSAGES.get_or_init(|| {
        let mut messages = Vec::new();
        for file in ["tests/corpus/tuning.jsonl", "tests/corpus/holdout.jsonl", "tests/hostile/messages.jsonl"] {
            let text = std::fs::read_to_string(root().join(file)).unwrap();
            for line in text.lines().filter(|line| !line.trim().is_empty()) {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                messages.push(value["text"].as_str().unwrap().to_owned());
            }
        }
        let flows = flows();
        for flow in flows.iter() {
            messages.push(flow.title.clone());
            messages.extend(flow.steps.iter().flat_map(|step| step.choices.iter().map(|choice| choice.label.clone())));
        }
        let words = ["back", "skip", "start over", "stop", "person", "help", "yes", "no", "it worked", "still failing"];
        messages.extend(words.iter().map(|word| (*word).to_owned()));
        messages.extend((0..=20).map(|number| number.to_string()));
        messages.extend(["/back", "/skip", "/restart", "/start", "/help", "/forget", "/human"].map(str::to_owned));
        messages
    })
}

fn command() -> impl Strategy<Value = Command> {
    prop::sample::select(vec![
        Command::Start,
        Command::Help,
        Command::Back,
        Command::Restart,
        Command::Skip,
        Command::Stop,
        Command::Human,
        Command::Forget,
    ])
}

/// One act, weighted towards what moves a case along.
fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => prop::sample::select(messages()).prop_map(Act::Text),
        1 => "\\PC{0,80}".prop_map(Act::Text),
        6 => (0usize..8).prop_map(Act::Press),
        1 => (1usize..4, 0usize..8).prop_map(|(back, index)| Act::Earlier { back, index }),
        1 => any::<usize>().prop_map(Act::Press),
        1 => (any::<u32>(), any::<u32>(), any::<u8>())
            .prop_map(|(case, turn, choice)| Act::Sealed(ButtonRef { case, turn, choice })),
        1 => ".{0,100}".prop_map(Act::Data),
        3 => command().prop_map(Act::Command),
        1 => prop_oneof![Just(3_600), Just(25 * 3_600), 0..=MAX_WAIT].prop_map(Act::Wait),
    ]
}

/// A conversation that opens with a paste or description from the corpus,
/// so most of it is spent inside a flow.
fn conversation() -> impl Strategy<Value = Vec<Act>> {
    (prop::sample::select(messages()), prop::collection::vec(act(), 1..MAX_ACTS)).prop_map(|(first, mut acts)| {
        acts.insert(0, Act::Text(first));
        acts
    })
}

proptest! {
    #![proptest_config(config(CASES))]

    /// No panic, every reply within both platforms' limits, the case always at
    /// a step of its flow, and every move along the flow graph.
    #[test]
    fn every_conversation_keeps_the_invariants(acts in conversation()) {
        let mut walk = Walk::new(flows());
        for act in &acts {
            walk.act(act);
        }
    }

    /// Conversations of anything at all, from no case, mostly refused or not understood.
    #[test]
    fn any_input_keeps_the_invariants(acts in prop::collection::vec(act(), 1..MAX_ACTS)) {
        let mut walk = Walk::new(flows());
        for act in &acts {
            walk.act(act);
        }
    }

    /// The matcher fires exactly what the regex crate finds on corpus
    /// messages cut, joined and sprinkled with any characters.
    #[test]
    fn the_matcher_agrees_with_the_regex_crate(
        parts in prop::collection::vec(prop_oneof![prop::sample::select(messages()), "\\PC{0,40}"], 1..6),
    ) {
        reference().check(flows(), &parts.concat());
    }
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| Reference::new(flows().matcher()))
}

/// Every step of every shipped flow, for either phone and for a phone not yet
/// known, with each of its buttons pressed.
#[test]
fn every_shipped_step_keeps_the_invariants() {
    check_every_step(flows());
}

/// The inputs a bug was found with (`fuzz/regressions/<target>/`), replayed
/// on every run through the fuzz target's own check.
#[test]
fn fuzz_regressions_keep_the_invariants() {
    let bot = std::fs::read_to_string(root().join("flows/_bot.yaml")).unwrap();
    let mut played = 0;
    for target in ["flow_load", "diagnose", "engine_step"] {
        let dir = root().join("fuzz/regressions").join(target);
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let text = String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned();
            match target {
                "flow_load" => check_flow_file(&bot, &text),
                "diagnose" => drop(reference().check(flows(), &text)),
                _ => check_conversation(flows(), &text),
            }
            played += 1;
        }
    }
    assert!(played >= 2, "the regression inputs are found: {played}");
}
