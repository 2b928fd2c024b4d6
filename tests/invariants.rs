//! What the engine keeps whatever people send: every reply within both platforms' limits as their
//! renderers send it, a case always at a step that exists, and navigation that never leaves the
//! flow graph. The property tests (`properties.rs`) and the fuzz targets (`fuzz/`, which include
//! this file by path) check with this one piece of code; a violation is a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use fixbot_core::button::{ButtonCodec, ButtonRef};
use fixbot_core::case::{Case, ConversationKey, Phase, Position};
use fixbot_core::engine::{self, Command, EngineConfig, Input, Reply, Transition};
use fixbot_core::flow::{Flow, FlowErrors, Flows, Goto, Platform, Source, Step};
use fixbot_core::markup::MAX_SLOT_CHARS;
use fixbot_core::matcher::{Matcher, Verdict};
use fixbot_core::text::fold;
use regex::bytes::{Regex, RegexBuilder};

// The front-ends' own renderers decide what is sent. The fuzz crate compiles
// just these two files rather than the chat SDKs the front-end crates bring.
#[cfg(not(fuzzing))]
use fixbot_discord as discord;
#[cfg(not(fuzzing))]
use fixbot_telegram as telegram;
#[cfg(fuzzing)]
#[allow(dead_code)]
#[path = "../bot/discord/src/render.rs"]
mod discord;
#[cfg(fuzzing)]
#[allow(dead_code)]
#[path = "../bot/telegram/src/render.rs"]
mod telegram;

/// Where walks start: 2026-01-01T00:00:00Z.
const EPOCH: i64 = 1_767_225_600;
/// Seconds between two acts, as a person types.
const PAUSE: i64 = 60;
/// The longest wait a walk takes at once: ten years, so times stay real.
pub const MAX_WAIT: i64 = 10 * 366 * 24 * 60 * 60;

/// One thing a person (or a forger) does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// A message, typed or pasted.
    Text(String),
    /// A press on button `index` (from 0) of the latest message with buttons,
    /// whether that message offers so many or not.
    Press(usize),
    /// A press on button `index` of the message with buttons `back` before
    /// the latest one (at most 7 back): a step already answered.
    Earlier {
        /// How many messages with buttons back, from 1.
        back: usize,
        /// The button, from 0.
        index: usize,
    },
    /// A press carrying a reference that passed the MAC check but names any
    /// case, turn and choice: an old message's button, or a sealed one replayed.
    Sealed(ButtonRef),
    /// Callback data or a custom id as a platform delivers it, forged or not.
    Data(String),
    /// A slash command.
    Command(Command),
    /// Time passing, in seconds (at most [`MAX_WAIT`]).
    Wait(i64),
}

/// Reads acts from text, one per line as transcripts write them: `> [2]`
/// presses button 2, `> [2^1]` button 2 of the message with buttons before,
/// `> [#case.turn.choice]` a sealed reference, `> {data}`
/// delivers raw callback data, `> !back` is a slash command, `~ wait 25h`
/// passes time, and `> text` says text. A line that starts with none of
/// these continues the message above it, so pastes keep their lines.
pub fn parse_acts(input: &str) -> Vec<Act> {
    let mut acts = Vec::new();
    for line in input.split('\n') {
        if let Some(wait) = line.strip_prefix("~ wait ") {
            let seconds = fixbot_core::text::parse_duration(wait).unwrap_or(0);
            acts.push(Act::Wait(seconds.clamp(0, MAX_WAIT)));
        } else if let Some(said) = line.strip_prefix("> ") {
            acts.push(parse_act(said));
        } else if let Some(Act::Text(text)) = acts.last_mut() {
            text.push('\n');
            text.push_str(line);
        } else {
            acts.push(Act::Text(line.to_owned()));
        }
    }
    acts
}

fn parse_act(said: &str) -> Act {
    if let Some(inner) = said.strip_prefix("[#").and_then(|rest| rest.strip_suffix(']')) {
        let mut fields = inner.split('.').map(|field| field.parse::<u64>().unwrap_or(0));
        let mut next = || fields.next().unwrap_or(0);
        let (case, turn, choice) = (next(), next(), next());
        return Act::Sealed(ButtonRef { case: case as u32, turn: turn as u32, choice: choice as u8 });
    }
    if let Some(inner) = said.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        let (number, back) = inner.split_once('^').unwrap_or((inner, "0"));
        if let (Ok(number), Ok(back)) = (number.parse::<usize>(), back.parse::<usize>()) {
            let index = number.saturating_sub(1);
            return if back == 0 { Act::Press(index) } else { Act::Earlier { back, index } };
        }
    }
    if let Some(data) = said.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
        return Act::Data(data.to_owned());
    }
    if let Some(command) = said.strip_prefix('!').and_then(|name| Command::parse(&format!("/{name}"))) {
        return Act::Command(command);
    }
    Act::Text(said.to_owned())
}

/// Acts played per conversation read by [`check_conversation`]; longer ones
/// find nothing new and slow a fuzz run down.
pub const MAX_ACTS: usize = 64;

/// Plays the conversation `text` writes (see [`parse_acts`]), its first
/// [`MAX_ACTS`] acts, checking every transition.
///
/// # Panics
///
/// When the engine panics or a transition breaks an invariant.
pub fn check_conversation(flows: &Flows, text: &str) {
    let mut walk = Walk::new(flows);
    for act in parse_acts(text).iter().take(MAX_ACTS) {
        walk.act(act);
    }
}

/// One conversation played through the engine, every transition checked.
pub struct Walk<'a> {
    flows: &'a Flows,
    config: EngineConfig,
    key: ConversationKey,
    codec: ButtonCodec,
    case: Option<Case>,
    now: i64,
    /// The latest messages with buttons, newest last.
    prompts: Vec<Reply>,
}

/// How many messages with buttons a walk remembers.
const PROMPTS: usize = 8;

impl<'a> Walk<'a> {
    /// A conversation with no case yet.
    pub fn new(flows: &'a Flows) -> Walk<'a> {
        Walk {
            flows,
            config: EngineConfig::default(),
            key: ConversationKey::new("walk", "chat", "", "user"),
            codec: ButtonCodec::new(b"invariants"),
            case: None,
            now: EPOCH,
            prompts: Vec::new(),
        }
    }

    /// Plays one act and checks the transition; returns it, or `None` when the
    /// act never reached the engine (time passing, data the codec refused).
    ///
    /// # Panics
    ///
    /// When the engine panics or the transition breaks an invariant.
    pub fn act(&mut self, act: &Act) -> Option<Transition> {
        let input = match act {
            Act::Wait(seconds) => {
                self.now += (*seconds).clamp(0, MAX_WAIT);
                return None;
            }
            Act::Text(text) => Input::Text(text.clone()),
            Act::Press(index) => Input::Button(self.button(0, *index)),
            Act::Earlier { back, index } => Input::Button(self.button(*back, *index)),
            Act::Sealed(button) => Input::Button(*button),
            Act::Data(data) => Input::Button(self.codec.decode(&self.key, data).ok()?),
            Act::Command(command) => Input::Command(*command),
        };
        // A press on a button of the current turn must be taken; one on an
        // older turn's must be refused, whatever it says.
        let fresh = self.case.as_ref().is_some_and(|case| self.now - case.updated_at <= self.config.idle_timeout);
        let (mut live, mut stale) = (false, false);
        if let (Input::Button(button), Some(case), true) = (&input, &self.case, fresh) {
            let current = button.case == case.id as u32 && button.turn == case.turn;
            let offered = self.prompts.last().is_some_and(|prompt| {
                (prompt.case, prompt.turn) == (button.case, button.turn)
                    && usize::from(button.choice) < prompt.choices.len()
            });
            live = current && offered && matches!(act, Act::Press(_));
            stale = !current;
        }
        let met = self.case.clone();
        let transition = engine::handle(self.flows, &self.config, &self.key, self.case.take(), input.clone(), self.now);
        let context = Context { input: &input, case: met.as_ref() };
        if live {
            assert_eq!(transition.notice, None, "a press on the current buttons was refused {context}");
        }
        if stale {
            assert!(transition.notice.is_some(), "a press on an older turn's button was taken {context}");
        }
        let expired = met.as_ref().is_some_and(|case| self.now - case.updated_at > self.config.idle_timeout);
        let before = met.as_ref().filter(|_| !expired);
        check_transition(self.flows, &self.key, &self.codec, before, expired, &transition, &context);
        for reply in transition.replies.iter().filter(|reply| !reply.choices.is_empty()) {
            if self.prompts.len() == PROMPTS {
                self.prompts.remove(0);
            }
            self.prompts.push(reply.clone());
        }
        self.case = transition.case.clone();
        self.now += PAUSE;
        Some(transition)
    }
}

/// What an input met, for the message of a violation; formatted only then,
/// so checking costs little.
pub struct Context<'c> {
    /// The input.
    pub input: &'c Input,
    /// The case it met.
    pub case: Option<&'c Case>,
}

impl fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "after {:?} on {:#?}", self.input, self.case)
    }
}

/// Checks one transition from `before` (the case the input met, after idle
/// expiry, which `expired` says closed one): its replies, the case it leaves,
/// and the move between the two.
///
/// # Panics
///
/// On any violation, naming it and `context`.
pub fn check_transition(
    flows: &Flows,
    key: &ConversationKey,
    codec: &ButtonCodec,
    before: Option<&Case>,
    expired: bool,
    transition: &Transition,
    context: &dyn fmt::Display,
) {
    assert!(
        !transition.replies.is_empty() || transition.notice.is_some(),
        "the input got no answer {context}: {transition:#?}"
    );
    // A press on an expired case is refused after the expiry is told.
    if transition.notice.is_some() && !expired {
        assert!(transition.replies.is_empty() && !transition.changed, "a refused press changed something {context}");
    }
    for reply in &transition.replies {
        check_reply(key, codec, reply);
        if !reply.choices.is_empty() {
            let case = transition.case.as_ref().expect("buttons belong to an open case");
            assert_eq!(
                (reply.case, reply.turn),
                (case.id as u32, case.turn),
                "buttons sent for another turn than the case's {context}"
            );
        }
    }
    if !transition.changed {
        assert_eq!(transition.case.as_ref(), before, "an unchanged transition moved the case {context}");
        assert!(transition.outcomes.is_empty(), "an unchanged transition recorded outcomes {context}");
    }
    if let Some(case) = &transition.case {
        check_case(flows, case);
        check_move(flows, before.filter(|before| before.id == case.id), case, context);
    }
}

/// Checks one reply as both front-ends would send it.
///
/// # Panics
///
/// When a message, a label or a button's data breaks a platform's limit.
pub fn check_reply(key: &ConversationKey, codec: &ButtonCodec, reply: &Reply) {
    assert!(!reply.body.to_plain().trim().is_empty(), "a reply with no text: {reply:?}");
    for part in telegram::split(&reply.body) {
        let units: usize = part.spans.iter().map(|span| span.text.encode_utf16().count()).sum();
        assert!(units <= telegram::MAX_MESSAGE_UNITS, "a Telegram message of {units} UTF-16 units");
        assert!(!part.to_plain().trim().is_empty(), "an empty Telegram message from {reply:?}");
    }
    for part in discord::split(&reply.body) {
        let content = discord::to_markdown(&part);
        let chars = content.chars().count();
        assert!(chars <= discord::MAX_CONTENT_CHARS, "a Discord message of {chars} characters");
        assert!(!content.trim().is_empty(), "an empty Discord message from {reply:?}");
    }
    let buttons = reply.choices.len();
    assert!(buttons <= telegram::MAX_BUTTONS.min(discord::MAX_BUTTONS), "{buttons} buttons on one message");
    for (index, label) in reply.choices.iter().enumerate() {
        assert!(!label.trim().is_empty(), "an empty button label in {reply:?}");
        assert!(label.chars().count() <= discord::MAX_LABEL_CHARS, "button label {label:?} is too long");
        let button = reply.button(index);
        assert_eq!(usize::from(button.choice), index, "button {index} names another choice");
        let data = codec.encode(key, button);
        assert!(data.len() <= telegram::MAX_CALLBACK_BYTES, "callback data {data:?} is too long");
        assert!(data.chars().count() <= discord::MAX_CUSTOM_ID_CHARS, "custom id {data:?} is too long");
        assert_eq!(codec.decode(key, &data), Ok(button), "button data {data:?} does not read back");
    }
}

/// Checks that every place a case names exists in `flows`, at its version.
///
/// # Panics
///
/// When the case points at a flow or step that is not there, or waits for
/// something its step cannot ask.
pub fn check_case(flows: &Flows, case: &Case) {
    match &case.phase {
        Phase::AwaitingSymptom => {}
        Phase::Clarifying { candidates } => {
            assert!(!candidates.is_empty(), "a clarifying question without candidates");
            for id in candidates {
                assert!(flows.get(id).is_some(), "candidate `{id}` is no flow");
            }
        }
        Phase::AskingPlatform { at } => {
            let (_, step) = step_at(flows, at);
            assert!(step.differs_by_platform, "the platform is asked at `{}`, which reads the same for both", at.step);
            assert_eq!(case.platform, None, "the platform is asked again");
        }
        Phase::AtStep { at } => {
            let (_, step) = step_at(flows, at);
            let shown = match case.platform {
                Some(platform) => step.text_for(platform).is_some(),
                None => !step.differs_by_platform,
            };
            assert!(shown, "the case is at `{}`, which has no text for {:?}", at.step, case.platform);
        }
        Phase::OfferingSwitch { at, to } => {
            step_at(flows, at);
            assert!(flows.get(to).is_some(), "the switch offers `{to}`, which is no flow");
            assert_ne!(*to, at.flow, "the switch offers the flow the case is in");
        }
    }
    for tried in &case.history {
        let flow = flows.get(&tried.flow).unwrap_or_else(|| panic!("history names flow `{}`", tried.flow));
        assert!(flow.step_index(&tried.step).is_some(), "history names step `{}` of `{}`", tried.step, tried.flow);
    }
    if let Some(symptom) = &case.symptom {
        assert!(flows.get(symptom).is_some(), "the symptom `{symptom}` is no flow");
    }
}

fn step_at<'f>(flows: &'f Flows, at: &Position) -> (&'f Flow, &'f Step) {
    let flow = flows.get(&at.flow).unwrap_or_else(|| panic!("the case is in flow `{}`, which does not exist", at.flow));
    let index = flow.step_index(&at.step).unwrap_or_else(|| panic!("flow `{}` has no step `{}`", at.flow, at.step));
    assert_eq!(at.version, flow.version, "the case holds another version of `{}`", at.flow);
    (flow, &flow.steps[index])
}

/// Checks that a case which went on from `before` to `after` moved along the
/// flow graph: to a step the one before leads to, back to the step it came
/// from, or into a flow the question before offered.
///
/// # Panics
///
/// When the case jumped anywhere else, or its history is not a stack.
pub fn check_move(flows: &Flows, before: Option<&Case>, after: &Case, context: &dyn fmt::Display) {
    let Some(before) = before else { return };
    let (was, now) = (&before.history, &after.history);
    let popped = now.len() + 1 == was.len() && was.starts_with(now);
    let pushed = was.len() + 1 == now.len() && now.starts_with(was);
    assert!(
        now == was || popped || pushed || now.is_empty(),
        "the history changed other than by one step {context}: now {now:#?}"
    );
    if pushed {
        let tried = now.last().expect("pushed");
        let from = before.phase.position().expect("a step was left, so the case was at one");
        assert_eq!((&tried.flow, &tried.step), (&from.flow, &from.step), "history holds a step not left {context}");
    }
    if after.phase != before.phase || after.history != before.history {
        assert_ne!(after.turn, before.turn, "the case moved but kept its turn, so old buttons still work {context}");
    }
    let Some(to) = after.phase.position() else { return };
    let target = (to.flow.as_str(), to.step.as_str());
    if popped {
        let back = was.last().expect("popped");
        assert_eq!(target, (back.flow.as_str(), back.step.as_str()), "back went elsewhere {context}");
        return;
    }
    let allowed = match &before.phase {
        // A case with no step yet may enter any flow: from the list, a
        // clarifying question or a new paste.
        Phase::AwaitingSymptom | Phase::Clarifying { .. } => return,
        Phase::AtStep { at } => {
            let mut allowed = moves(flows, at);
            allowed.push((at.flow.as_str(), at.step.as_str()));
            allowed
        }
        // Once the platform is known, steps that do not apply are passed.
        Phase::AskingPlatform { at } => from_on(flows, &at.flow, &at.step),
        Phase::OfferingSwitch { at, to } => {
            let mut allowed = from_on(flows, &at.flow, &at.step);
            allowed.extend(every_step(flows, to));
            allowed
        }
    };
    assert!(allowed.contains(&target), "the case jumped to {target:?}, off the flow graph {context}");
}

/// The steps one move from `at` leads to: any later step (the next one that
/// applies to the user's platform, or a skip), a `goto` step or a later one,
/// and any step of a flow a choice continues in.
fn moves<'f>(flows: &'f Flows, at: &Position) -> Vec<(&'f str, &'f str)> {
    let (flow, step) = step_at(flows, at);
    let index = flow.step_index(&at.step).expect("checked by step_at");
    let mut allowed: Vec<(&str, &str)> =
        flow.steps[index + 1..].iter().map(|step| (flow.id.as_str(), step.id.as_str())).collect();
    for choice in &step.choices {
        match &choice.goto {
            Goto::Step(target) => {
                allowed.extend(flow.steps[*target..].iter().map(|step| (flow.id.as_str(), step.id.as_str())))
            }
            Goto::Flow(id) => allowed.extend(every_step(flows, id)),
            Goto::Next | Goto::Resolved | Goto::Escalate => {}
        }
    }
    allowed
}

/// `step` of `flow` and every step after it.
fn from_on<'f>(flows: &'f Flows, flow: &str, step: &str) -> Vec<(&'f str, &'f str)> {
    let flow = flows.get(flow).expect("checked by check_case");
    let index = flow.step_index(step).expect("checked by check_case");
    flow.steps[index..].iter().map(|step| (flow.id.as_str(), step.id.as_str())).collect()
}

fn every_step<'f>(flows: &'f Flows, flow: &str) -> Vec<(&'f str, &'f str)> {
    flows
        .get(flow)
        .map_or_else(Vec::new, |flow| flow.steps.iter().map(|step| (flow.id.as_str(), step.id.as_str())).collect())
}

/// Shows every step of every flow to each kind of user and presses each of its
/// buttons, checking each transition: what a flow set that loaded can say.
///
/// # Panics
///
/// When a transition breaks an invariant.
pub fn check_every_step(flows: &Flows) {
    for flow in flows.iter() {
        for step in &flow.steps {
            for platform in [None, Some(Platform::Ios), Some(Platform::Android)] {
                let shown = match platform {
                    Some(platform) => step.text_for(platform).is_some(),
                    None => !step.differs_by_platform,
                };
                if !shown {
                    continue;
                }
                let at = Position { flow: flow.id.clone(), step: step.id.clone(), version: flow.version };
                for press in 0..step.choices.len() + 1 {
                    let mut walk = Walk::new(flows);
                    let mut case = walk.new_case(Phase::AtStep { at: at.clone() });
                    case.platform = platform;
                    walk.case = Some(case);
                    let transition = walk.act(&Act::Command(Command::Help)).expect("commands reach the engine");
                    assert!(transition.replies.iter().any(|reply| !reply.choices.is_empty()), "no prompt at {at:?}");
                    walk.act(&Act::Press(press));
                }
            }
        }
    }
    // The list of symptoms, and each flow entered from it.
    for index in 0..flows.iter().len() {
        let mut walk = Walk::new(flows);
        walk.act(&Act::Text("zq".to_owned()));
        walk.act(&Act::Press(index));
    }
}

impl Walk<'_> {
    /// Button `index` of the message with buttons `back` before the latest.
    fn button(&self, back: usize, index: usize) -> ButtonRef {
        let choice = u8::try_from(index).unwrap_or(u8::MAX);
        match self.prompts.iter().rev().nth(back) {
            Some(prompt) => ButtonRef { choice, ..prompt.button(0) },
            None => ButtonRef { case: 0, turn: 0, choice },
        }
    }

    fn new_case(&self, phase: Phase) -> Case {
        Case {
            id: 1,
            turn: 1,
            phase,
            platform: None,
            symptom: None,
            score: 0,
            captures: BTreeMap::new(),
            history: Vec::new(),
            paste: String::new(),
            language: Default::default(),
            opened_at: self.now,
            updated_at: self.now,
            expired: false,
            staff: None,
        }
    }
}

/// Loads `text` as a flow file beside `bot_yaml` with the real loader and
/// checks the outcome: problems each on one line, or a flow set whose every
/// step keeps the invariants and whose patterns fire as the regex crate's do
/// (on each line of the file).
///
/// # Panics
///
/// When loading panics or either check fails.
pub fn check_flow_file(bot_yaml: &str, text: &str) {
    let sources = vec![
        Source { path: PathBuf::from("flows/_bot.yaml"), text: bot_yaml.to_owned() },
        Source { path: PathBuf::from("flows/fuzzed.yaml"), text: text.to_owned() },
    ];
    match Flows::from_sources(sources) {
        Err(errors) => check_problems(&errors),
        Ok(flows) => {
            check_every_step(&flows);
            let reference = Reference::new(flows.matcher());
            for line in text.lines() {
                reference.check(&flows, line);
            }
        }
    }
}

/// Checks what the loader says of files it refused: at least one problem,
/// each a reason on one line, as `fixbot check` prints them.
///
/// # Panics
///
/// When the loader refused without a reason, or a reason is blank or spans lines.
pub fn check_problems(errors: &FlowErrors) {
    assert!(!errors.0.is_empty(), "the loader refused the files without saying why");
    for problem in &errors.0 {
        assert!(!problem.message.trim().is_empty(), "a problem without a reason: {problem:?}");
        assert!(!problem.message.contains(['\n', '\r']), "a reason over several lines: {problem:?}");
    }
}

/// Every pattern of a matcher compiled by the regex crate alone, as the
/// matcher's options say: the reference its prefilter and DFAs must agree with.
pub struct Reference {
    regexes: Vec<Regex>,
}

impl Reference {
    /// Compiles each pattern of `matcher`.
    ///
    /// # Panics
    ///
    /// When the regex crate refuses a pattern the matcher took.
    pub fn new(matcher: &Matcher) -> Reference {
        let regexes = (0..matcher.len())
            .map(|index| {
                let (source, _) = matcher.pattern(index);
                RegexBuilder::new(source)
                    .case_insensitive(true)
                    .unicode(false)
                    .size_limit(64 << 20)
                    .build()
                    .unwrap_or_else(|error| panic!("the regex crate refuses `{source}`: {error}"))
            })
            .collect();
        Reference { regexes }
    }

    /// Checks the diagnosis of `text`: the patterns that fire are exactly the
    /// ones the regex crate finds in its folded form, and the verdict, scores
    /// and captures are well formed. Returns how many patterns fired.
    ///
    /// # Panics
    ///
    /// When the matcher and the regex crate disagree, or the diagnosis is malformed.
    pub fn check(&self, flows: &Flows, text: &str) -> usize {
        let folded = fold(text);
        let want: Vec<usize> =
            (0..self.regexes.len()).filter(|&index| self.regexes[index].is_match(folded.as_bytes())).collect();
        let diagnosis = flows.diagnose(text);
        assert_eq!(diagnosis.fired, want, "the matcher and the regex crate disagree on {text:?}");
        let count = flows.iter().len();
        assert!(diagnosis.scores.windows(2).all(|pair| pair[0].1 >= pair[1].1), "scores out of order");
        assert!(diagnosis.scores.iter().all(|&(flow, score)| flow < count && score > 0), "a score names no flow");
        match &diagnosis.verdict {
            Verdict::Symptom(flow) => assert_eq!(diagnosis.best().map(|(best, _)| best), Some(*flow)),
            Verdict::Unsure(candidates) => {
                assert!(!candidates.is_empty() && candidates.len() <= flows.bot().settings.max_candidates);
                assert!(candidates.iter().all(|flow| diagnosis.score_of(*flow) > 0), "a candidate scored nothing");
            }
            Verdict::Unknown => {}
        }
        for (name, value) in &diagnosis.captures {
            assert!(value.chars().count() <= MAX_SLOT_CHARS, "capture {name} holds {} characters", value.len());
        }
        // The engine's path: cleaned and redacted first.
        let _ = engine::diagnose_text(flows, text);
        want.len()
    }
}
