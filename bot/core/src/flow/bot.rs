//! `flows/_bot.yaml`: every sentence, button label and navigation word of the
//! bot itself, and the matching thresholds. Kept out of Rust so that support
//! staff can reword the bot (or translate it) without a release.

use std::collections::HashMap;

use serde::Deserialize;

use super::Problems;
use crate::command::Command;
use crate::markup::Template;
use crate::redact::Kind;
use crate::text::squash;
use crate::yaml::{Spanned, line_of};

/// Declares a table of named strings twice: as written (`Raw…`, spanned) and
/// validated (each value converted by `$convert`), so adding a sentence is a
/// one-word change here plus its text in `_bot.yaml`.
macro_rules! string_table {
    ($(#[$meta:meta])* $raw:ident => $name:ident<$ty:ty> via $convert:ident { $($field:ident),* $(,)? }) => {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(missing_docs)]
        pub struct $raw {
            $(pub $field: Spanned<String>,)*
        }

        $(#[$meta])*
        #[derive(Debug, Clone)]
        #[allow(missing_docs)]
        pub struct $name {
            $(pub $field: $ty,)*
        }

        impl $name {
            fn from_raw(raw: $raw, problems: &mut Problems) -> Option<$name> {
                let mut ok = true;
                $(
                    let $field = match $convert(&raw.$field.value) {
                        Ok(value) => Some(value),
                        Err(reason) => {
                            problems.push(line_of(&raw.$field), format!("`{}`: {reason}", stringify!($field)));
                            ok = false;
                            None
                        }
                    };
                )*
                if !ok {
                    return None;
                }
                Some($name { $($field: $field?,)* })
            }
        }
    };
}

pub(super) fn to_label(text: &str) -> Result<String, String> {
    let label = text.trim();
    match label.chars().count() {
        0 => Err("label is empty".to_owned()),
        n if n > super::MAX_LABEL_CHARS => {
            Err(format!("label has {n} characters, the platforms allow {}", super::MAX_LABEL_CHARS))
        }
        _ => Ok(label.to_owned()),
    }
}

pub(super) fn to_template(text: &str) -> Result<Template, String> {
    let template = Template::parse(text.trim_end())?;
    let max = template.max_chars();
    if max > super::MAX_TEXT_CHARS {
        return Err(format!("text can reach {max} characters, Discord allows {}", super::MAX_TEXT_CHARS));
    }
    Ok(template)
}

string_table! {
    /// Button labels the bot adds itself.
    RawLabels => Labels<String> via to_label {
        fixed, not_fixed, ios, android, person, switch, stay, none_of_these,
        command_fix, command_start, command_help, command_back, command_restart, command_human, command_stop,
        command_fix_error, paste_title, paste_label, thread_name, command_forget, packet_link,
    }
}

string_table! {
    /// Every sentence the bot says outside a flow step.
    RawMessages => Messages<Template> via to_template {
        greeting, help, diagnosed, continue_flow, fallback, clarify, ask_platform,
        resolved, exhausted, escalated, summary, summary_step, outcome_fixed,
        outcome_not_fixed, outcome_skipped, platform_unknown, empty, no_words,
        not_understood, same_symptom, switch_offer, stay, back, at_first, skipped,
        nothing_to_skip, stopped, restarted, expired, resumed, flow_updated,
        stale_button, foreign_button, cut, unreadable_bytes, failure, forgotten, slow_down, removed,
        with_person, with_staff, staff_says, staff_closed, staff_unreachable, packet, packet_footer,
        staff_relay, staff_user_closed, staff_case_closed,
    }
}

/// Longest name of a kind of personal data, so that the notice naming
/// several of them stays one short line.
const MAX_PHRASE_CHARS: usize = 60;

fn to_phrase(text: &str) -> Result<String, String> {
    let phrase = text.trim();
    match phrase.chars().count() {
        0 => Err("phrase is empty".to_owned()),
        n if n > MAX_PHRASE_CHARS => Err(format!("phrase has {n} characters, at most {MAX_PHRASE_CHARS}")),
        _ => Ok(phrase.to_owned()),
    }
}

string_table! {
    /// What the `removed` notice calls each kind of personal data.
    RawKindNames => KindNames<String> via to_phrase {
        email, phone, name, user, imei, iccid, serial, device_id, card, password, token, url, ip,
    }
}

impl KindNames {
    /// The words for one kind. The match is exhaustive, so a new kind
    /// cannot ship without a field here and its words in `_bot.yaml`.
    pub fn of(&self, kind: Kind) -> &str {
        match kind {
            Kind::Email => &self.email,
            Kind::Phone => &self.phone,
            Kind::Name => &self.name,
            Kind::User => &self.user,
            Kind::Imei => &self.imei,
            Kind::Iccid => &self.iccid,
            Kind::Serial => &self.serial,
            Kind::DeviceId => &self.device_id,
            Kind::Card => &self.card,
            Kind::Password => &self.password,
            Kind::Token => &self.token,
            Kind::Url => &self.url,
            Kind::Ip => &self.ip,
        }
    }
}

/// How the bot names the personal data it removed from a message.
#[derive(Debug, Clone)]
pub struct PersonalData {
    /// The words for each kind.
    pub kinds: KindNames,
    /// Between two items of a list but the last two (", ").
    pub separator: String,
    /// Between the last two items (" and ").
    pub last_separator: String,
}

impl PersonalData {
    /// Names `kinds` as one list: "a", "a and b", "a, b and c".
    pub fn list(&self, kinds: &[Kind]) -> String {
        let mut text = String::new();
        for (index, kind) in kinds.iter().enumerate() {
            if index > 0 {
                text.push_str(if index + 1 == kinds.len() { &self.last_separator } else { &self.separator });
            }
            text.push_str(self.kinds.of(*kind));
        }
        text
    }

    fn from_raw(raw: RawPersonalData, problems: &mut Problems) -> Option<PersonalData> {
        // Separators are kept as written: their spaces are the point.
        let mut separator = |spanned: &Spanned<String>, name: &str| {
            if spanned.value.is_empty() {
                problems.push(line_of(spanned), format!("`personal_data.{name}` is empty"));
            }
            spanned.value.clone()
        };
        let between = separator(&raw.separator, "separator");
        let last = separator(&raw.last_separator, "last_separator");
        let kinds = KindNames::from_raw(raw.kinds, problems)?;
        (!between.is_empty() && !last.is_empty()).then_some(PersonalData {
            kinds,
            separator: between,
            last_separator: last,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPersonalData {
    kinds: RawKindNames,
    separator: Spanned<String>,
    last_separator: Spanned<String>,
}

/// What a whole message can mean when it is one of the configured words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Word {
    /// A navigation command ("start over", "person").
    Command(Command),
    /// "It worked": the choice that resolves the step.
    Fixed,
    /// "It didn't": the choice that moves on.
    NotFixed,
}

/// Matching thresholds, all on the summed weights of a flow's patterns.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bot commits to a flow from this score on…
    pub commit_score: u32,
    /// …when the flow also beats the runner-up by this much.
    pub margin: u32,
    /// Flows from this score on are offered in a clarifying question.
    pub clarify_score: u32,
    /// A new paste mid-case offers a switch from this score on.
    pub switch_score: u32,
    /// How many candidates a clarifying question offers.
    pub max_candidates: usize,
}

/// The validated contents of `_bot.yaml`.
#[derive(Debug, Clone)]
pub struct Bot {
    /// Matching thresholds.
    pub settings: Settings,
    /// Button labels.
    pub labels: Labels,
    /// Sentences.
    pub messages: Messages,
    /// Names of the kinds of personal data, for the `removed` notice.
    pub personal_data: PersonalData,
    words: HashMap<String, Word>,
}

/// Raw form of `_bot.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBot {
    settings: RawSettings,
    platforms: RawPlatforms,
    words: RawWords,
    labels: RawLabels,
    messages: RawMessages,
    personal_data: RawPersonalData,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    commit_score: u32,
    margin: u32,
    clarify_score: u32,
    switch_score: u32,
    max_candidates: usize,
}

/// Patterns that tell which phone the user has.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlatforms {
    /// Patterns that point at an iPhone.
    pub ios: Vec<Spanned<String>>,
    /// Patterns that point at an Android phone.
    pub android: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWords {
    help: Spanned<Vec<String>>,
    back: Spanned<Vec<String>>,
    restart: Spanned<Vec<String>>,
    skip: Spanned<Vec<String>>,
    stop: Spanned<Vec<String>>,
    human: Spanned<Vec<String>>,
    fixed: Spanned<Vec<String>>,
    not_fixed: Spanned<Vec<String>>,
}

impl Bot {
    /// Validates the raw file, recording every problem. Platform patterns are
    /// left to the matcher, which compiles them with the flows' patterns.
    pub(crate) fn from_raw(raw: RawBot, problems: &mut Problems) -> (Option<Bot>, RawPlatforms) {
        let settings = raw.settings;
        if settings.clarify_score == 0 || settings.clarify_score > settings.commit_score {
            problems.push(0, "`settings.clarify_score` must be between 1 and `commit_score`");
        }
        if settings.max_candidates < 2 || settings.max_candidates > super::MAX_CHOICES - 2 {
            problems.push(0, format!("`settings.max_candidates` must be between 2 and {}", super::MAX_CHOICES - 2));
        }
        let mut words = HashMap::new();
        let lists = [
            (Word::Command(Command::Help), &raw.words.help, "help"),
            (Word::Command(Command::Back), &raw.words.back, "back"),
            (Word::Command(Command::Restart), &raw.words.restart, "restart"),
            (Word::Command(Command::Skip), &raw.words.skip, "skip"),
            (Word::Command(Command::Stop), &raw.words.stop, "stop"),
            (Word::Command(Command::Human), &raw.words.human, "human"),
            (Word::Fixed, &raw.words.fixed, "fixed"),
            (Word::NotFixed, &raw.words.not_fixed, "not_fixed"),
        ];
        for (word, list, name) in lists {
            for phrase in &list.value {
                let key = squash(phrase);
                if key.is_empty() {
                    problems.push(line_of(list), format!("`words.{name}`: \"{phrase}\" has no letters"));
                } else if let Some(previous) = words.insert(key, word)
                    && previous != word
                {
                    problems
                        .push(line_of(list), format!("`words.{name}`: \"{phrase}\" is also listed as {previous:?}"));
                }
            }
        }
        let labels = Labels::from_raw(raw.labels, problems);
        let removed_line = line_of(&raw.messages.removed);
        let messages = Messages::from_raw(raw.messages, problems);
        if let Some(messages) = &messages
            && !messages.removed.slots().any(|(name, _)| name == "removed")
        {
            problems.push(removed_line, "`removed`: the notice must name what was removed with a `{removed}` slot");
        }
        let personal_data = PersonalData::from_raw(raw.personal_data, problems);
        let bot = (|| {
            Some(Bot {
                settings: Settings {
                    commit_score: settings.commit_score,
                    margin: settings.margin,
                    clarify_score: settings.clarify_score,
                    switch_score: settings.switch_score,
                    max_candidates: settings.max_candidates,
                },
                labels: labels?,
                messages: messages?,
                personal_data: personal_data?,
                words,
            })
        })();
        (bot, raw.platforms)
    }

    /// The navigation word or answer a whole message means, if any.
    pub fn word(&self, text: &str) -> Option<Word> {
        // Longer messages are never a bare word; skip the folding work.
        if text.len() > 64 {
            return None;
        }
        self.words.get(&squash(text)).copied()
    }
}
