//! Engine behaviour on a small fixture flow set, so that content edits to the
//! shipped flows do not move these tests: platform questions, clarifying
//! questions, navigation, typed answers, switching, stale buttons, expiry,
//! flow edits and bad input.

use fixbot_core::case::{Case, ConversationKey, Outcome, Phase};
use fixbot_core::engine::{self, Command, EngineConfig, Input, Transition};
use fixbot_core::flow::{Flows, Platform};

use crate::support::flows_with;

const ALPHA: &str = r#"
title: Alpha space is full
summary: The alpha space is smaller than the backup.
match:
  - regex: 'alpha (is )?full(?: by (?P<needed>\d+ ?gb))?'
    weight: 10
  - regex: '\balpha\b'
    weight: 3
examples:
  match: ["alpha is full"]
  no_match: ["beta is broken"]
steps:
  - id: check
    ios: "iPhone: free {needed|some space}."
    android: "Android: free {needed|some space}."
  - id: ios_only
    ios: "Only iPhones see this."
  - id: common
    text: "Everyone sees this."
    choices:
      - { label: "It works now", goto: resolved }
      - { label: "Try beta", goto: "flow:beta" }
      - { label: "Ask a human", goto: escalate }
"#;

const BETA: &str = r#"
title: Beta is broken
summary: Beta fails.
match:
  - regex: 'beta (is )?broken'
    weight: 10
  - regex: '\bbeta\b'
    weight: 3
steps:
  - id: one
    text: "Beta step one."
  - id: two
    text: "Beta step two."
"#;

fn fixture() -> Flows {
    flows_with(&[("alpha.yaml", ALPHA), ("beta.yaml", BETA)])
}

/// One conversation played through the pure engine.
struct Chat {
    flows: Flows,
    config: EngineConfig,
    key: ConversationKey,
    case: Option<Case>,
    now: i64,
    last: Option<Transition>,
    outcomes: Vec<(String, Outcome)>,
}

impl Chat {
    fn new(flows: Flows) -> Chat {
        Chat {
            flows,
            config: EngineConfig::default(),
            key: ConversationKey::new("test", "chat", "", "ann"),
            case: None,
            now: 1_000_000,
            last: None,
            outcomes: Vec::new(),
        }
    }

    fn input(&mut self, input: Input) -> String {
        self.now += 10;
        let transition = engine::handle(&self.flows, &self.config, &self.key, self.case.clone(), input, self.now);
        if !transition.changed {
            assert_eq!(transition.case, self.case, "an unchanged transition must keep the case");
        }
        self.case = transition.case.clone();
        self.outcomes.extend(transition.outcomes.iter().map(|r| (r.step.clone(), r.outcome)));
        let text = transition
            .notice
            .clone()
            .into_iter()
            .chain(transition.replies.iter().map(|r| r.to_plain()))
            .collect::<Vec<_>>()
            .join("\n---\n");
        self.last = Some(transition);
        text
    }

    fn say(&mut self, text: &str) -> String {
        self.input(Input::Text(text.to_owned()))
    }

    /// Presses button `index` of the latest reply that had buttons.
    fn press(&mut self, index: usize) -> String {
        let reply = self
            .last
            .as_ref()
            .and_then(|t| t.replies.iter().rev().find(|r| !r.choices.is_empty()))
            .expect("a reply with buttons");
        let button = reply.button(index);
        self.input(Input::Button(button))
    }

    fn step(&self) -> Option<String> {
        self.case.as_ref().and_then(|case| case.phase.position().map(|at| at.step.clone()))
    }
}

#[test]
fn platform_is_guessed_captured_and_one_platform_steps_are_skipped() {
    let mut chat = Chat::new(fixture());
    let reply = chat.say("my android phone: alpha is full by 5 GB");
    assert!(reply.contains("Alpha space is full"), "{reply}");
    assert!(reply.contains("Android: free 5 GB."), "{reply}");
    assert!(reply.contains("[1] That fixed it\n[2] Still failing"), "{reply}");
    chat.say("2");
    // `ios_only` does not apply to Android and is skipped.
    assert_eq!(chat.step().as_deref(), Some("common"));
    let reply = chat.say("it works now");
    assert!(reply.contains("backup works again"), "{reply}");
    assert!(chat.case.is_none());
    assert_eq!(chat.outcomes, vec![("check".into(), Outcome::NotFixed), ("common".into(), Outcome::Fixed)]);
}

#[test]
fn platform_is_asked_only_when_a_step_needs_it() {
    let mut chat = Chat::new(fixture());
    let reply = chat.say("alpha is full");
    assert!(reply.contains("iPhone or an Android"), "{reply}");
    assert!(reply.contains("[1] iPhone\n[2] Android"), "{reply}");
    let reply = chat.press(0);
    assert!(reply.contains("iPhone: free some space."), "{reply}");
    chat.say("no");
    assert_eq!(chat.step().as_deref(), Some("ios_only"));
    assert_eq!(chat.case.as_ref().unwrap().platform, Some(Platform::Ios));

    // A flow whose steps are the same everywhere never asks.
    let mut chat = Chat::new(fixture());
    let reply = chat.say("beta is broken");
    assert!(reply.contains("Beta step one."), "{reply}");
}

#[test]
fn weak_or_tied_matches_ask_and_nothing_offers_the_list() {
    let mut chat = Chat::new(fixture());
    let reply = chat.say("something about alpha and beta");
    assert!(reply.contains("Which fits best?"), "{reply}");
    assert!(
        reply.contains("[1] Alpha space is full\n[2] Beta is broken\n[3] None of these\n[4] Talk to a person"),
        "{reply}"
    );
    let reply = chat.say("beta is broken");
    assert!(reply.contains("Beta step one."), "typing a clearer message answers the question: {reply}");

    let mut chat = Chat::new(fixture());
    let reply = chat.say("what a lovely day");
    assert!(reply.contains("couldn't match"), "{reply}");
    assert!(reply.contains("[1] Alpha space is full\n[2] Beta is broken\n[3] Talk to a person"), "{reply}");
    let reply = chat.say("Beta is broken");
    assert!(reply.contains("Beta step one."), "a typed label picks it: {reply}");
}

#[test]
fn navigation_words_and_commands() {
    let mut chat = Chat::new(fixture());
    chat.say("beta is broken");
    chat.say("still failing");
    assert_eq!(chat.step().as_deref(), Some("two"));
    let reply = chat.say("Go back!");
    assert!(reply.contains("Going back one step.") && reply.contains("Beta step one."), "{reply}");
    let reply = chat.input(Input::Command(Command::Back));
    assert!(reply.contains("no earlier step"), "{reply}");
    let reply = chat.say("skip");
    assert!(reply.contains("Skipping") && reply.contains("Beta step two."), "{reply}");
    let reply = chat.say("/help");
    assert!(reply.contains("start over") && reply.contains("Beta step two."), "help repeats the step: {reply}");
    let reply = chat.say("start over");
    assert!(reply.contains("start over") && reply.contains("Paste the error"), "{reply}");
    assert!(chat.case.is_none());
    assert_eq!(chat.outcomes.last(), Some(&("two".into(), Outcome::Abandoned)));

    chat.say("beta is broken");
    let reply = chat.say("stop");
    assert!(reply.contains("closed this case"), "{reply}");
    assert!(chat.case.is_none());
}

#[test]
fn human_hands_over_with_a_summary() {
    let mut chat = Chat::new(fixture());
    chat.say("beta is broken, mail me at ann@example.com");
    chat.say("2");
    let reply = chat.say("talk to a person");
    assert!(reply.contains("handing your case to a person"), "{reply}");
    assert!(reply.contains("Problem: Beta is broken"), "{reply}");
    assert!(reply.contains("- one: didn't help"), "{reply}");
    assert!(reply.contains("[email]") && !reply.contains("ann@example.com"), "the paste is redacted: {reply}");
    let handover = chat.last.as_ref().unwrap().handover.as_ref().expect("a handover");
    assert_eq!(handover.case.symptom.as_deref(), Some("beta"));
    assert!(chat.case.is_none());
}

#[test]
fn running_out_of_steps_and_flow_gotos() {
    let mut chat = Chat::new(fixture());
    chat.say("iphone: alpha is full");
    chat.say("2");
    chat.say("2");
    let reply = chat.say("Try beta");
    assert!(reply.contains("Let's look at: Beta is broken") && reply.contains("Beta step one."), "{reply}");
    assert_eq!(
        chat.case.as_ref().unwrap().symptom.as_deref(),
        Some("alpha"),
        "the symptom that started the case stays"
    );
    chat.say("2");
    let reply = chat.say("2");
    assert!(reply.contains("tried every step") && reply.contains("handing your case"), "{reply}");
    assert!(chat.case.is_none());
}

#[test]
fn a_strong_new_symptom_offers_a_switch() {
    let mut chat = Chat::new(fixture());
    chat.say("beta is broken");
    let reply = chat.say("oh wait, actually alpha is full");
    assert!(reply.contains("different problem: Alpha space is full"), "{reply}");
    let reply = chat.say("no, stay here");
    assert!(reply.contains("carry on") && reply.contains("Beta step one."), "{reply}");
    chat.say("alpha is full");
    let reply = chat.press(0);
    assert!(reply.contains("Alpha space is full"), "{reply}");
    assert_eq!(chat.case.as_ref().unwrap().symptom.as_deref(), Some("alpha"));

    let reply = chat.say("alpha is full");
    assert!(reply.contains("the problem we're working on"), "{reply}");
    let reply = chat.say("banana");
    assert!(reply.contains("didn't catch that"), "{reply}");
}

#[test]
fn declining_a_switch_during_the_platform_question_asks_it_again() {
    let mut chat = Chat::new(fixture());
    chat.say("alpha is full");
    assert!(matches!(chat.case.as_ref().unwrap().phase, Phase::AskingPlatform { .. }));
    chat.say("beta is broken");
    let reply = chat.say("no, stay here");
    assert!(reply.contains("carry on") && reply.contains("iPhone or an Android"), "{reply}");
    assert!(matches!(chat.case.as_ref().unwrap().phase, Phase::AskingPlatform { .. }));
}

#[test]
fn stale_and_old_case_buttons_change_nothing() {
    let mut chat = Chat::new(fixture());
    chat.say("beta is broken");
    let old = chat.last.as_ref().unwrap().replies.last().unwrap().clone();
    chat.press(1);
    let before = chat.case.clone();
    let reply = chat.input(Input::Button(old.button(1)));
    assert!(reply.contains("earlier step"), "{reply}");
    assert_eq!(chat.case, before);
    assert!(!chat.last.as_ref().unwrap().changed);

    // After the case ends and a new one opens, the old case's buttons stay dead
    // even when turn numbers happen to line up.
    chat.say("stop");
    chat.say("beta is broken");
    let current = chat.last.as_ref().unwrap().replies[0].clone();
    let reply = chat.input(Input::Button(old.button(0)));
    assert!(reply.contains("earlier step"), "{reply}");

    let reply = chat.input(Input::Button(fixbot_core::button::ButtonRef { choice: 99, ..current.button(0) }));
    assert!(reply.contains("earlier step"), "out-of-range choices are refused: {reply}");
}

#[test]
fn idle_cases_expire_and_say_so() {
    let mut chat = Chat::new(fixture());
    chat.say("beta is broken");
    chat.now += chat.config.idle_timeout + 1;
    let reply = chat.say("alpha is full");
    assert!(reply.contains("idle for a while") && reply.contains("Alpha space is full"), "{reply}");
    assert!(chat.outcomes.contains(&("one".into(), Outcome::Abandoned)));
}

/// (symptom, flow, step, outcome) of the latest transition's records.
fn records(chat: &Chat) -> Vec<(String, String, String, Outcome)> {
    let transition = chat.last.as_ref().expect("a transition");
    transition.outcomes.iter().map(|r| (r.symptom.clone(), r.flow.clone(), r.step.clone(), r.outcome)).collect()
}

fn record(symptom: &str, flow: &str, step: &str, outcome: Outcome) -> (String, String, String, Outcome) {
    (symptom.into(), flow.into(), step.into(), outcome)
}

#[test]
fn a_switch_ends_the_first_symptom_as_abandoned_at_its_step() {
    let mut chat = Chat::new(fixture());
    chat.say("beta is broken");
    chat.say("still failing");
    chat.say("alpha is full");
    assert!(records(&chat).is_empty(), "the offer alone ends nothing");
    chat.press(0);
    assert_eq!(records(&chat), [record("beta", "beta", "two", Outcome::Abandoned)]);
    assert_eq!(chat.case.as_ref().unwrap().symptom.as_deref(), Some("alpha"), "the case goes on as alpha");
    chat.input(Input::Command(Command::Human));
    assert_eq!(records(&chat), [record("alpha", "alpha", "check", Outcome::Escalated)]);
}

#[test]
fn the_idle_sweep_records_an_abandoned_case_once() {
    let mut chat = Chat::new(fixture());
    chat.say("beta is broken");
    let case = chat.case.clone().unwrap();
    let (flows, config, key) = (&chat.flows, &chat.config, &chat.key);
    let early = engine::expire(flows, config, key, case.clone(), case.updated_at + config.idle_timeout);
    assert!(!early.changed && early.outcomes.is_empty() && early.case.as_ref() == Some(&case), "not idle yet");

    let later = case.updated_at + config.idle_timeout + 1;
    let swept = engine::expire(flows, config, key, case.clone(), later);
    assert!(swept.changed && swept.replies.is_empty());
    let outcomes: Vec<_> =
        swept.outcomes.iter().map(|r| (r.symptom.as_str(), r.step.as_str(), r.outcome, r.at)).collect();
    assert_eq!(outcomes, [("beta", "one", Outcome::Abandoned, later)]);
    let expired = swept.case.clone().unwrap();
    assert!(expired.expired && expired.updated_at == case.updated_at, "marked, and still idle since then");
    let again = engine::expire(flows, config, key, expired.clone(), later + 600);
    assert!(!again.changed && again.outcomes.is_empty(), "a second sweep records nothing");

    // The person's next message is told the case expired, and nothing is recorded twice.
    chat.case = Some(expired);
    chat.now = later + 60;
    let reply = chat.say("alpha is full");
    assert!(reply.contains("idle for a while") && reply.contains("Alpha space is full"), "{reply}");
    assert!(records(&chat).is_empty(), "{:?}", records(&chat));
}

#[test]
fn an_edited_flow_restarts_a_case_whose_step_is_gone() {
    let mut chat = Chat::new(fixture());
    chat.say("beta is broken");
    chat.say("2");
    assert_eq!(chat.step().as_deref(), Some("two"));
    chat.flows = flows_with(&[("alpha.yaml", ALPHA), ("beta.yaml", &BETA.replace("id: two", "id: renamed"))]);
    let reply = chat.say("2");
    assert!(reply.contains("were updated") && reply.contains("Beta step one."), "{reply}");

    // A step that still exists carries on even though the file changed.
    chat.say("2");
    chat.flows = flows_with(&[("alpha.yaml", ALPHA), ("beta.yaml", &BETA.replace("Beta step one.", "Beta step 1."))]);
    let reply = chat.say("back");
    assert!(reply.contains("Beta step 1."), "{reply}");
}

#[test]
fn bad_input_gets_a_friendly_answer_and_keeps_the_case() {
    let mut chat = Chat::new(fixture());
    chat.say("beta is broken");
    let before = chat.case.clone();
    for (input, expected) in [
        ("", "message was empty"),
        ("   \t  \n ", "message was empty"),
        ("\u{7}\u{1b}\u{202e}\u{200b}", "message was empty"),
        ("\u{1b}[31m", "didn't catch that"),
        ("🙂🙂🔥", "only read text"),
        ("?!?!", "only read text"),
    ] {
        let reply = chat.say(input);
        assert!(reply.contains(expected) && reply.contains("Beta step one."), "{input:?}: {reply}");
        assert_eq!(chat.case, before, "{input:?} must not change the case");
    }
    let huge = format!("{} beta is broken", "x".repeat(1 << 20));
    let reply = chat.say(&huge);
    assert!(reply.contains("very long"), "{reply}");
    assert!(chat.case.is_some());

    let mut fresh = Chat::new(fixture());
    let reply = fresh.say("");
    assert!(reply.contains("message was empty"), "{reply}");
    assert!(fresh.case.is_none());
}

#[test]
fn start_greets_or_resumes() {
    let mut chat = Chat::new(fixture());
    assert!(chat.input(Input::Command(Command::Start)).contains("Paste the error"));
    chat.say("beta is broken");
    let reply = chat.input(Input::Command(Command::Start));
    assert!(reply.contains("Welcome back") && reply.contains("Beta step one."), "{reply}");
    assert!(matches!(chat.case.as_ref().unwrap().phase, Phase::AtStep { .. }));
}

#[test]
fn why_shows_the_patterns_the_runner_up_what_was_redacted_and_the_path() {
    let mut chat = Chat::new(fixture());
    chat.say("my android phone: alpha is full by 5 GB, beta too, mail me at ann@example.com");
    chat.say("2");
    let case = chat.case.clone().expect("an open case");
    let why = fixbot_core::why::explain(&chat.flows, &case).to_plain();
    assert!(why.contains("Symptom: Alpha space is full (score 13)"), "{why}");
    assert!(why.contains("+10 `alpha (is )?full"), "{why}");
    assert!(why.contains(r"+3 `\balpha\b`"), "{why}");
    assert!(why.contains(r"android `\bandroid\b`"), "{why}");
    assert!(why.contains("Runners-up: Beta is broken (3)"), "{why}");
    assert!(why.contains("Redacted: [email]"), "{why}");
    assert!(why.contains("• Alpha space is full / check → not_fixed"), "{why}");
    assert!(why.contains("• now: Alpha space is full / common"), "{why}");
    assert!(!why.contains("ann@example.com"), "{why}");

    // A case whose symptom was picked from the list fired nothing of its own.
    let mut chat = Chat::new(fixture());
    chat.say("nothing I say matches");
    let case = chat.case.clone().expect("an open case");
    let why = fixbot_core::why::explain(&chat.flows, &case).to_plain();
    assert!(why.contains("No symptom recognised yet."), "{why}");
    assert!(why.contains("• now: waiting for a description"), "{why}");
}
