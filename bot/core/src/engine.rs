//! The pure conversation engine: `handle(flows, case, input, now)` gives the
//! next case, the replies and the outcome records. No I/O, no clock, no
//! randomness, so the same inputs always give the same transition and every
//! path can be tested by playing messages through it.

use std::collections::BTreeMap;

use crate::button::ButtonRef;
use crate::case::{Case, ConversationKey, Outcome, OutcomeRecord, Phase, Position, Staff, Tried};
pub use crate::command::Command;
use crate::flow::{Bot, Flow, Flows, Goto, Platform, Word};
pub use crate::handover::{StaffInput, StaffNote, ToStaff};
use crate::lang::{Lang, detect};
use crate::markup::{Markup, Template};
use crate::matcher::Verdict;
use crate::redact::redact;
use crate::text::{has_words, sanitize, truncate};

mod staff;

/// Bytes past the match limit that redaction still reads, longer than any
/// single datum it looks for, so none is cut in half and half kept.
const REDACT_OVERLAP: usize = 512;

/// Tunables that are operations' business rather than content's.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Seconds without a message after which a case is closed.
    pub idle_timeout: i64,
    /// Bytes of a message that are matched; the rest is cut with a notice.
    pub match_limit: usize,
    /// Whether a staff desk takes hand-overs. An escalated case then stays
    /// open, with staff, and the user's messages go to them; without a desk
    /// it ends with the summary.
    pub staff: bool,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig { idle_timeout: 24 * 60 * 60, match_limit: 64 * 1024, staff: false }
    }
}

/// One thing the user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A message: a paste, a description, a typed answer or a navigation word.
    Text(String),
    /// A button press, already verified to belong to this conversation.
    Button(ButtonRef),
    /// A navigation command.
    Command(Command),
    /// Something staff did about the case, once it was handed over.
    Staff(StaffInput),
}

impl Input {
    /// The navigation command this input gives, read as the engine reads it:
    /// a slash command, or `/name` in a message once it is cleaned, so an
    /// invisible character in front of `/forget` changes nothing. (Words from
    /// `_bot.yaml` need the flows; [`Bot::word`](crate::flow::Bot::word) reads those.)
    pub fn command(&self) -> Option<Command> {
        match self {
            Input::Command(command) => Some(*command),
            Input::Text(text) => Command::parse(&sanitize(text)),
            Input::Button(_) | Input::Staff(_) => None,
        }
    }
}

/// One message the bot sends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    /// The text.
    pub body: Markup,
    /// Button labels, in order; a press names its index.
    pub choices: Vec<String>,
    /// Low 32 bits of the case id the buttons belong to.
    pub case: u32,
    /// The case turn the buttons belong to.
    pub turn: u32,
}

impl Reply {
    /// Plain-text rendering with `[1] label` lines, as the console shows it.
    pub fn to_plain(&self) -> String {
        let mut text = self.body.to_plain();
        for (index, label) in self.choices.iter().enumerate() {
            text.push_str(&format!("\n[{}] {label}", index + 1));
        }
        text
    }

    /// The reference a press on choice `index` of this reply carries.
    pub fn button(&self, index: usize) -> ButtonRef {
        ButtonRef { case: self.case, turn: self.turn, choice: u8::try_from(index).unwrap_or(u8::MAX) }
    }
}

/// What a person taking over needs to know.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Handover {
    /// The case as it stood, with every step tried.
    pub case: Case,
    /// The summary shown to the user and to staff.
    pub summary: Markup,
}

/// The result of handling one input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    /// The case after the input; `None` when it ended or never opened.
    pub case: Option<Case>,
    /// Whether anything must be stored: the case or the outcome log changed.
    pub changed: bool,
    /// Messages to send, in order.
    pub replies: Vec<Reply>,
    /// A short notice for a refused button press, shown as a toast where the
    /// platform has one; refused presses change nothing.
    pub notice: Option<String>,
    /// Records for the outcome log.
    pub outcomes: Vec<OutcomeRecord>,
    /// Set when the case was handed to a person.
    pub handover: Option<Handover>,
    /// What a message that opened a case was diagnosed as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosed>,
    /// What the staff thread of a case with staff must hear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_staff: Option<ToStaff>,
}

impl Transition {
    /// A transition that changes nothing and says `body`: an answer given
    /// outside the engine, such as the notice to someone flooding the bot.
    pub fn message(body: Markup) -> Transition {
        Transition { replies: vec![Reply { body, choices: Vec::new(), case: 0, turn: 0 }], ..Transition::silence() }
    }

    /// A transition that changes nothing and says nothing.
    pub fn silence() -> Transition {
        Transition {
            case: None,
            changed: false,
            replies: Vec::new(),
            notice: None,
            outcomes: Vec::new(),
            handover: None,
            diagnosis: None,
            to_staff: None,
        }
    }
}

/// The verdict on a message that opened a case, by flow id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Diagnosed {
    /// One symptom fit.
    Symptom(String),
    /// Several might; the user was asked which.
    Unsure(Vec<String>),
    /// Nothing fit.
    Unknown,
}

/// Diagnoses a message the way the engine does: cleaned and redacted first,
/// so personal data never reaches a capture. `fixbot diagnose` uses this too.
pub fn diagnose_text(flows: &Flows, text: &str) -> crate::matcher::Diagnosis {
    flows.diagnose(&redact(&sanitize(text)).text)
}

/// Handles one input for one conversation, with no hint of the user's language.
pub fn handle(
    flows: &Flows,
    config: &EngineConfig,
    key: &ConversationKey,
    case: Option<Case>,
    input: Input,
    now: i64,
) -> Transition {
    handle_in(flows, config, key, case, input, now, None)
}

/// Handles one input for one conversation. `hint` is the language the
/// platform says the user's app is set to ([`Lang::from_hint`]).
///
/// A case speaks the language it was opened in: the user's `/language`
/// choice, else the platform's hint, else the language detected in the
/// message that opened it, else English. `/language` changes it at any time.
pub fn handle_in(
    flows: &Flows,
    config: &EngineConfig,
    key: &ConversationKey,
    case: Option<Case>,
    input: Input,
    now: i64,
    hint: Option<Lang>,
) -> Transition {
    let mut run = Run::new(flows, config, key, case, now, hint);
    run.expire_idle();
    if run.reconcile() {
        run.input(input);
    }
    run.finish()
}

/// Closes `case` for the idle sweep when it has been idle past the timeout:
/// records it as abandoned at the step it was at and marks it
/// [`Case::expired`], so a person who never comes back is still counted, and
/// one who does is told the case expired without it being recorded twice.
/// Any other case comes back unchanged. No replies: nobody is waiting.
pub fn expire(flows: &Flows, config: &EngineConfig, key: &ConversationKey, case: Case, now: i64) -> Transition {
    let mut run = Run::new(flows, config, key, Some(case), now, None);
    if run.idle() && run.case.as_ref().is_some_and(|case| !case.expired) {
        let (flow, step) = run.place();
        run.record(&flow, &step, Outcome::Abandoned);
        if let Some(case) = run.case.as_mut() {
            case.expired = true;
        }
    }
    run.finish()
}

/// What a choice on offer does, whatever the phase that offers it.
#[derive(Debug, Clone)]
enum Action {
    Step(Goto),
    Start(String),
    Platform(Platform),
    Person,
    ShowAll,
    Switch(String),
    Stay,
}

/// The working state of one `handle` call.
struct Run<'a> {
    flows: &'a Flows,
    /// The language replies are in: the case's, or the one it will open in.
    lang: Lang,
    hint: Option<Lang>,
    config: &'a EngineConfig,
    key: &'a ConversationKey,
    now: i64,
    start_turn: u32,
    case: Option<Case>,
    replies: Vec<Reply>,
    notice: Option<String>,
    outcomes: Vec<OutcomeRecord>,
    handover: Option<Handover>,
    diagnosis: Option<Diagnosed>,
    to_staff: Option<ToStaff>,
    changed: bool,
}

impl<'a> Run<'a> {
    fn new(
        flows: &'a Flows,
        config: &'a EngineConfig,
        key: &'a ConversationKey,
        case: Option<Case>,
        now: i64,
        hint: Option<Lang>,
    ) -> Run<'a> {
        Run {
            flows,
            lang: case.as_ref().map(|case| case.language).or(hint).unwrap_or_default(),
            hint,
            config,
            key,
            now,
            start_turn: case.as_ref().map_or(0, |case| case.turn),
            case,
            replies: Vec::new(),
            notice: None,
            outcomes: Vec::new(),
            handover: None,
            diagnosis: None,
            to_staff: None,
            changed: false,
        }
    }

    /// The bot's strings in the case's language.
    fn bot(&self) -> &'a Bot {
        self.flows.bot_in(self.lang)
    }

    /// A flow in the case's language.
    fn flow(&self, id: &str) -> Option<&'a Flow> {
        self.flows.get_in(self.lang, id)
    }

    fn finish(self) -> Transition {
        Transition {
            case: self.case,
            changed: self.changed,
            replies: self.replies,
            notice: self.notice,
            outcomes: self.outcomes,
            handover: self.handover,
            diagnosis: self.diagnosis,
            to_staff: self.to_staff,
        }
    }

    // --- Inputs -----------------------------------------------------------

    fn input(&mut self, input: Input) {
        match input {
            Input::Staff(staff) => self.staff(staff),
            input if self.with_staff() => self.input_with_staff(input),
            Input::Command(command) => self.command(command),
            Input::Button(button) => self.press(button),
            Input::Text(text) => self.text(&text),
        }
    }

    fn command(&mut self, command: Command) {
        let messages = &self.bot().messages;
        match command {
            Command::Start => match self.case {
                Some(_) => {
                    self.say(&messages.resumed, &[]);
                    self.prompt();
                }
                None => self.say(&messages.greeting, &[]),
            },
            Command::Help => {
                self.say(&messages.help, &[]);
                self.prompt();
            }
            Command::Back => self.back(),
            Command::Restart => {
                self.close(Outcome::Abandoned);
                self.say(&messages.restarted, &[]);
                self.say(&messages.greeting, &[]);
            }
            Command::Skip => match self.position().filter(|_| self.at_step()) {
                Some(at) => {
                    self.leave(&at, Outcome::Skipped);
                    self.say(&messages.skipped, &[]);
                    self.enter_after(&at);
                }
                None => {
                    self.say(&messages.nothing_to_skip, &[]);
                    self.prompt();
                }
            },
            Command::Stop => {
                self.close(Outcome::Abandoned);
                self.say(&messages.stopped, &[]);
            }
            Command::Human => self.escalate(),
            Command::Language(Some(lang)) => {
                self.lang = lang;
                let had_case = self.case.is_some();
                self.open().language = lang;
                self.say(&self.bot().messages.language_set, &[("language", lang.name())]);
                // Mid-case the question on screen comes back in the new
                // language; before any case, the greeting does.
                match had_case {
                    true => self.prompt(),
                    false => self.say(&self.bot().messages.greeting, &[]),
                }
            }
            Command::Language(None) => {
                let list: Vec<String> =
                    Lang::ALL.iter().map(|lang| format!("`/language {}` {}", lang.code(), lang.name())).collect();
                self.say(&messages.language_list, &[("languages", &list.join("\n"))]);
                self.prompt();
            }
            // The session deletes the stored traces before the engine runs,
            // so a case is seldom here. One that is is dropped without an
            // outcome, and marked changed so that a store still holding it
            // deletes it: nothing new is written about the user.
            Command::Forget => {
                if self.case.take().is_some() {
                    self.changed = true;
                }
                self.say(&messages.forgotten, &[]);
            }
        }
    }

    fn press(&mut self, button: ButtonRef) {
        let current = self.case.as_ref().is_some_and(|case| case.id as u32 == button.case && case.turn == button.turn);
        let action = if current { self.actions().into_iter().nth(usize::from(button.choice)) } else { None };
        match action {
            Some((_, action)) => self.act(action),
            None => self.notice = Some(self.bot().messages.stale_button.render().to_plain()),
        }
    }

    fn text(&mut self, raw: &str) {
        let messages = &self.bot().messages;
        let clean = sanitize(raw);
        if clean.is_empty() {
            self.say(&messages.empty, &[]);
            return self.prompt();
        }
        if !has_words(&clean) {
            self.say(&messages.no_words, &[]);
            return self.prompt();
        }
        // A case opens in the language of its first message when the
        // platform gave no hint.
        if self.case.is_none()
            && self.hint.is_none()
            && let Some(lang) = detect(&clean).lang
        {
            self.lang = lang;
        }
        if let Some(command) = Command::parse(&clean) {
            return self.command(command);
        }
        let word = self.bot().word(&clean);
        if let Some(Word::Command(command)) = word {
            return self.command(command);
        }
        if let Some(action) = self.typed_answer(&clean, word) {
            return self.act(action);
        }
        self.diagnose(&clean);
    }

    /// Maps a typed answer to one of the choices on offer: its number, its
    /// label, or a yes/no word for the fixed / not-fixed choice of a step.
    fn typed_answer(&self, text: &str, word: Option<Word>) -> Option<Action> {
        let actions = self.actions();
        if let Ok(number) = text.trim().trim_end_matches(['.', ')']).parse::<usize>() {
            return number.checked_sub(1).and_then(|index| actions.get(index)).map(|(_, action)| action.clone());
        }
        let wanted = crate::text::squash(text);
        if let Some((_, action)) = actions.iter().find(|(label, _)| crate::text::squash(label) == wanted) {
            return Some(action.clone());
        }
        let steps = || {
            actions.iter().filter_map(|(_, action)| match action {
                Action::Step(goto) => Some(goto),
                _ => None,
            })
        };
        let pick = |goto: &Goto| Some(Action::Step(goto.clone()));
        match word? {
            Word::Fixed => steps().find(|goto| **goto == Goto::Resolved).and_then(pick),
            Word::NotFixed => {
                let others: Vec<&Goto> = steps().filter(|goto| **goto != Goto::Resolved).collect();
                match others.as_slice() {
                    [only] => pick(only),
                    _ => others.iter().find(|goto| ***goto == Goto::Next).and_then(|goto| pick(goto)),
                }
            }
            _ => None,
        }
    }

    fn diagnose(&mut self, text: &str) {
        let messages = &self.bot().messages;
        let limit = self.config.match_limit;
        let cut = truncate(text, limit);
        if cut.len() < text.len() {
            self.say(&messages.cut, &[("limit", &limit.to_string())]);
        }
        // Redact a little past the cut, then cut the result: an address
        // straddling the limit is still whole when redaction sees it.
        let mut redacted = redact(truncate(text, limit.saturating_add(REDACT_OVERLAP)));
        redacted.text = sanitize(truncate(&redacted.text, limit));
        let diagnosis = self.flows.diagnose(&redacted.text);
        debug_assert_eq!(sanitize(&redacted.text), redacted.text);
        // The user hears what was taken out, by kind only: the data itself
        // is never echoed, and the notice shares the reply's message.
        if !redacted.removed.is_empty() {
            let removed = self.bot().personal_data.list(&redacted.removed);
            self.say(&messages.removed, &[("removed", &removed)]);
        }
        let at = self.position();

        if let Some(at) = at {
            // Mid-case: a strong new symptom is offered as a switch; anything
            // else is an answer we did not understand.
            match diagnosis.verdict {
                Verdict::Symptom(flow) if self.flows.at_in(self.lang, flow).id == at.flow => {
                    self.say(&messages.same_symptom, &[]);
                }
                Verdict::Symptom(flow) if diagnosis.score_of(flow) >= self.bot().settings.switch_score => {
                    let to = self.flows.at_in(self.lang, flow).id.clone();
                    self.set_phase(Phase::OfferingSwitch { at, to });
                }
                _ => self.say(&messages.not_understood, &[]),
            }
            return self.prompt();
        }

        let paste: String = redacted.text.chars().take(500).collect();
        match diagnosis.verdict {
            Verdict::Symptom(flow) => {
                let flow = self.flows.at_in(self.lang, flow);
                self.diagnosis = Some(Diagnosed::Symptom(flow.id.clone()));
                let case = self.open();
                case.paste = paste;
                case.score = diagnosis.best().map_or(0, |(_, score)| score);
                case.captures = diagnosis.captures.clone();
                if case.platform.is_none() {
                    case.platform = diagnosis.platform;
                }
                self.start_flow(flow, &self.bot().messages.diagnosed);
            }
            Verdict::Unsure(candidates) => {
                let case = self.open();
                case.paste = paste;
                case.captures = diagnosis.captures.clone();
                if case.platform.is_none() {
                    case.platform = diagnosis.platform;
                }
                let candidates: Vec<String> =
                    candidates.iter().map(|&flow| self.flows.at_in(self.lang, flow).id.clone()).collect();
                self.diagnosis = Some(Diagnosed::Unsure(candidates.clone()));
                self.set_phase(Phase::Clarifying { candidates });
                self.prompt();
            }
            Verdict::Unknown => {
                self.diagnosis = Some(Diagnosed::Unknown);
                let case = self.open();
                if case.paste.is_empty() {
                    case.paste = paste;
                }
                self.set_phase(Phase::AwaitingSymptom);
                self.prompt();
            }
        }
    }

    // --- Choices ------------------------------------------------------------

    /// The choices on offer in the current phase: labels and what they do.
    /// Buttons, typed numbers and typed labels all go through this one list.
    fn actions(&self) -> Vec<(String, Action)> {
        let labels = &self.bot().labels;
        let Some(case) = &self.case else { return Vec::new() };
        let titled = |id: &str| self.flow(id).map(|flow| (flow.title.clone(), Action::Start(flow.id.clone())));
        match &case.phase {
            Phase::AwaitingSymptom => self
                .flows
                .iter_in(self.lang)
                .map(|flow| (flow.title.clone(), Action::Start(flow.id.clone())))
                .chain([(labels.person.clone(), Action::Person)])
                .collect(),
            Phase::Clarifying { candidates } => candidates
                .iter()
                .filter_map(|id| titled(id))
                .chain([(labels.none_of_these.clone(), Action::ShowAll), (labels.person.clone(), Action::Person)])
                .collect(),
            Phase::AskingPlatform { .. } => vec![
                (labels.ios.clone(), Action::Platform(Platform::Ios)),
                (labels.android.clone(), Action::Platform(Platform::Android)),
            ],
            Phase::AtStep { at } => match self.step_of(at) {
                Some((_, step)) => step
                    .choices
                    .iter()
                    .map(|choice| (choice.label.clone(), Action::Step(choice.goto.clone())))
                    .collect(),
                None => Vec::new(),
            },
            Phase::OfferingSwitch { to, .. } => {
                vec![(labels.switch.clone(), Action::Switch(to.clone())), (labels.stay.clone(), Action::Stay)]
            }
        }
    }

    fn act(&mut self, action: Action) {
        let messages = &self.bot().messages;
        match action {
            Action::Start(id) => {
                let Some(flow) = self.flow(&id) else { return self.prompt() };
                self.open();
                self.start_flow(flow, &messages.continue_flow);
            }
            Action::Platform(platform) => {
                let Some(at) = self.position() else { return self.prompt() };
                self.open().platform = Some(platform);
                self.enter_from(&at.flow, &at.step);
            }
            Action::Step(goto) => {
                let Some(at) = self.position() else { return self.prompt() };
                let outcome = if goto == Goto::Resolved { Outcome::Fixed } else { Outcome::NotFixed };
                self.leave(&at, outcome);
                match goto {
                    Goto::Next => self.enter_after(&at),
                    Goto::Step(index) => {
                        if let Some(step) = self.flow(&at.flow).and_then(|flow| flow.steps.get(index)) {
                            let step = step.id.clone();
                            self.enter_from(&at.flow, &step);
                        }
                    }
                    Goto::Resolved => {
                        self.remove_case();
                        self.say(&messages.resolved, &[]);
                    }
                    Goto::Escalate => self.escalate(),
                    Goto::Flow(id) => match self.flow(&id) {
                        Some(flow) => self.start_flow(flow, &messages.continue_flow),
                        None => self.escalate(),
                    },
                }
            }
            Action::Person => self.escalate(),
            Action::ShowAll => {
                self.set_phase(Phase::AwaitingSymptom);
                self.prompt();
            }
            Action::Switch(id) => {
                let Some(flow) = self.flow(&id) else { return self.prompt() };
                // The first symptom's case ends where the person left it, as
                // a restart would end it; the case goes on as the new symptom.
                if let Some(at) = self.position() {
                    self.record(&at.flow, &at.step, Outcome::Abandoned);
                }
                let case = self.open();
                case.symptom = Some(flow.id.clone());
                self.start_flow(flow, &messages.continue_flow);
            }
            Action::Stay => {
                self.say(&messages.stay, &[]);
                // Re-enter rather than set the phase: the offer may have
                // interrupted the platform question, which must come back.
                match self.position() {
                    Some(at) => self.enter_from(&at.flow, &at.step),
                    None => self.prompt(),
                }
            }
        }
    }

    // --- Moving through flows ----------------------------------------------

    fn start_flow(&mut self, flow: &Flow, intro: &Template) {
        let case = self.open();
        case.symptom.get_or_insert_with(|| flow.id.clone());
        self.say(intro, &[("title", &flow.title), ("summary", &flow.summary)]);
        let first = flow.steps[0].id.clone();
        self.enter_from(&flow.id, &first);
    }

    /// Enters the first step from `step` on that applies to the case's
    /// platform, asking for the platform when a step depends on it.
    fn enter_from(&mut self, flow_id: &str, step: &str) {
        let Some(flow) = self.flow(flow_id) else { return self.escalate() };
        let start = flow.step_index(step).unwrap_or(0);
        let platform = self.case.as_ref().and_then(|case| case.platform);
        for step in &flow.steps[start..] {
            let at = Position { flow: flow.id.clone(), step: step.id.clone(), version: flow.version };
            if step.differs_by_platform {
                match platform {
                    None => {
                        self.set_phase(Phase::AskingPlatform { at });
                        return self.prompt();
                    }
                    Some(platform) if step.text_for(platform).is_none() => continue,
                    Some(_) => {}
                }
            }
            self.set_phase(Phase::AtStep { at });
            return self.prompt();
        }
        self.say(&self.bot().messages.exhausted, &[]);
        self.escalate();
    }

    fn enter_after(&mut self, at: &Position) {
        let next = self
            .flow(&at.flow)
            .and_then(|flow| flow.step_index(&at.step).and_then(|index| flow.steps.get(index + 1)))
            .map(|step| step.id.clone());
        match next {
            Some(step) => self.enter_from(&at.flow, &step),
            None => {
                self.say(&self.bot().messages.exhausted, &[]);
                self.escalate();
            }
        }
    }

    fn back(&mut self) {
        let messages = &self.bot().messages;
        let previous =
            self.case.as_mut().filter(|case| case.phase.position().is_some()).and_then(|case| case.history.pop());
        match previous {
            Some(tried) => {
                self.touch();
                let version = self.flow(&tried.flow).map_or(0, |flow| flow.version);
                self.set_phase(Phase::AtStep { at: Position { flow: tried.flow, step: tried.step, version } });
                self.say(&messages.back, &[]);
            }
            None => self.say(&messages.at_first, &[]),
        }
        self.prompt();
    }

    /// Records how the step at `at` ended and remembers it for `back`.
    fn leave(&mut self, at: &Position, outcome: Outcome) {
        self.record(&at.flow, &at.step, outcome);
        if let Some(case) = self.case.as_mut() {
            case.history.push(Tried { flow: at.flow.clone(), step: at.step.clone(), outcome });
        }
    }

    /// Hands the case to a person, with a summary for them and the user.
    fn escalate(&mut self) {
        let messages = &self.bot().messages;
        if self.case.is_none() {
            self.case = Some(self.new_case());
        }
        let (flow, step) = self.place();
        self.record(&flow, &step, Outcome::Escalated);
        if self.config.staff {
            // The case stays open, with staff: the user's messages now go to
            // the person who takes it, until one of them closes it.
            self.touch();
            let since = self.now;
            let Some(case) = self.case.as_mut() else { return };
            case.staff = Some(Staff { since, thread: None });
            let case = case.clone();
            let summary = self.summary(&case);
            self.say(&messages.escalated, &[]);
            self.append(summary.clone());
            self.say(&messages.with_person, &[]);
            self.handover = Some(Handover { case, summary });
            return;
        }
        let Some(case) = self.case.take() else { return };
        let summary = self.summary(&case);
        self.say(&messages.escalated, &[]);
        self.append(summary.clone());
        self.handover = Some(Handover { case, summary });
        self.changed = true;
    }

    /// The flow and step the case is at, or its symptom and no step.
    fn place(&self) -> (String, String) {
        let Some(case) = &self.case else { return Default::default() };
        match case.phase.position() {
            Some(at) => (at.flow.clone(), at.step.clone()),
            None => (case.symptom.clone().unwrap_or_default(), String::new()),
        }
    }

    fn summary(&self, case: &Case) -> Markup {
        let messages = &self.bot().messages;
        let title = case.symptom.as_deref().and_then(|id| self.flow(id)).map(|flow| flow.title.as_str());
        let platform = crate::handover::phone_name(self.bot(), case.platform);
        let steps = crate::handover::steps_tried(self.bot(), &case.history, |tried| tried.step.replace('_', " "));
        let paste: String = case.paste.chars().take(300).collect();
        messages.summary.fill(&values(&[
            ("title", title.unwrap_or("-")),
            ("platform", &platform),
            ("steps", &steps),
            ("paste", &paste),
        ]))
    }

    // --- Case bookkeeping ---------------------------------------------------

    /// Whether the case has gone without a message for longer than the idle timeout.
    /// A case with a person never is: it waits for them, however long they take.
    fn idle(&self) -> bool {
        self.case
            .as_ref()
            .is_some_and(|case| case.staff.is_none() && self.now - case.updated_at > self.config.idle_timeout)
    }

    /// Closes idle cases before the input is looked at. A case the sweep
    /// already recorded as abandoned ([`Case::expired`]) is not recorded again.
    fn expire_idle(&mut self) {
        if self.idle() {
            match self.case.as_ref().is_some_and(|case| case.expired) {
                true => self.remove_case(),
                false => self.close(Outcome::Abandoned),
            }
            self.say(&self.bot().messages.expired, &[]);
        }
    }

    /// Checks the case still points at steps that exist after a flow edit.
    /// Returns false when the case was restarted and the input must not be
    /// applied to a step it was not meant for.
    fn reconcile(&mut self) -> bool {
        if self.with_staff() {
            return true;
        }
        let Some(at) = self.position() else { return true };
        let Some(flow) = self.flow(&at.flow) else {
            self.close(Outcome::Abandoned);
            self.say(&self.bot().messages.flow_updated, &[]);
            self.say(&self.bot().messages.greeting, &[]);
            return false;
        };
        if flow.version == at.version || flow.step_index(&at.step).is_some() {
            return true;
        }
        if let Some(case) = self.case.as_mut() {
            case.history.clear();
        }
        self.say(&self.bot().messages.flow_updated, &[]);
        let first = flow.steps[0].id.clone();
        self.enter_from(&flow.id, &first);
        false
    }

    /// Ends the case (if any) with `outcome` at its current step.
    fn close(&mut self, outcome: Outcome) {
        if self.case.is_none() {
            return;
        }
        let (flow, step) = self.place();
        self.record(&flow, &step, outcome);
        self.remove_case();
    }

    fn remove_case(&mut self) {
        self.case = None;
        self.changed = true;
    }

    fn record(&mut self, flow: &str, step: &str, outcome: Outcome) {
        let Some(case) = &self.case else { return };
        self.outcomes.push(OutcomeRecord {
            case_id: case.id,
            subject: self.key.subject(),
            at: self.now,
            symptom: case.symptom.clone().unwrap_or_else(|| flow.to_owned()),
            flow: flow.to_owned(),
            step: step.to_owned(),
            outcome,
        });
        self.changed = true;
    }

    fn new_case(&self) -> Case {
        Case {
            id: self.key.digest() ^ (self.now as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            turn: self.start_turn,
            phase: Phase::AwaitingSymptom,
            platform: None,
            symptom: None,
            score: 0,
            captures: BTreeMap::new(),
            history: Vec::new(),
            paste: String::new(),
            language: self.lang,
            opened_at: self.now,
            updated_at: self.now,
            expired: false,
            staff: None,
        }
    }

    /// The open case, opening one if needed, marked as changed.
    fn open(&mut self) -> &mut Case {
        if self.case.is_none() {
            self.case = Some(self.new_case());
        }
        self.touch();
        self.case.as_mut().expect("opened above")
    }

    /// Marks the case changed: a new turn, so buttons sent before are stale.
    fn touch(&mut self) {
        self.changed = true;
        if let Some(case) = self.case.as_mut() {
            case.turn = self.start_turn.wrapping_add(1);
            case.updated_at = self.now;
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        self.open().phase = phase;
    }

    fn position(&self) -> Option<Position> {
        self.case.as_ref().and_then(|case| case.phase.position().cloned())
    }

    fn at_step(&self) -> bool {
        matches!(self.case.as_ref().map(|case| &case.phase), Some(Phase::AtStep { .. }))
    }

    fn step_of(&self, at: &Position) -> Option<(&Flow, &crate::flow::Step)> {
        let flow = self.flow(&at.flow)?;
        Some((flow, flow.steps.get(flow.step_index(&at.step)?)?))
    }

    // --- Replies ------------------------------------------------------------

    /// Adds a sentence; consecutive sentences share one message.
    fn say(&mut self, template: &Template, slots: &[(&str, &str)]) {
        self.append(template.fill(&values(slots)));
    }

    fn append(&mut self, body: Markup) {
        match self.replies.last_mut() {
            Some(last) if last.choices.is_empty() => last.body.append_paragraph(body),
            _ => self.replies.push(Reply { body, choices: Vec::new(), case: 0, turn: 0 }),
        }
    }

    /// Shows the question of the current phase with its choices.
    fn prompt(&mut self) {
        let Some(case) = &self.case else { return };
        let messages = &self.bot().messages;
        let body = match &case.phase {
            Phase::AwaitingSymptom => messages.fallback.render(),
            Phase::Clarifying { .. } => messages.clarify.render(),
            Phase::AskingPlatform { .. } => messages.ask_platform.render(),
            Phase::OfferingSwitch { to, .. } => {
                let title = self.flow(to).map_or("", |flow| flow.title.as_str());
                messages.switch_offer.fill(&values(&[("title", title)]))
            }
            Phase::AtStep { at } => {
                let platform = case.platform;
                match self.step_of(at) {
                    Some((_, step)) => {
                        let template = match platform {
                            Some(platform) => step.text_for(platform),
                            None => step.ios.as_ref().or(step.android.as_ref()),
                        };
                        template.map(|template| template.fill(&case.captures)).unwrap_or_default()
                    }
                    None => Markup::default(),
                }
            }
        };
        let (id, turn) = (case.id as u32, case.turn);
        let choices = self.actions().into_iter().map(|(label, _)| label).collect();
        self.append(body);
        if let Some(last) = self.replies.last_mut() {
            last.choices = choices;
            last.case = id;
            last.turn = turn;
        }
    }
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}
