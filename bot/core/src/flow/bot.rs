//! `flows/_bot.yaml`: every sentence, button label and navigation word of the
//! bot itself, and the matching thresholds. Kept out of Rust so that support
//! staff can reword the bot (or translate it) without a release.

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::Deserialize;

use super::Problems;
use crate::command::Command;
use crate::markup::Template;
use crate::redact::Kind;
use crate::text::squash;
use crate::yaml::{Spanned, line_of};

/// Declares a table of named strings twice: as written (`Raw…`, spanned, with
/// its schema named `$schema_name` and each field's schema given by the
/// `where` attributes) and validated (each value converted by `$convert`), so
/// adding a sentence is a documented word here plus its text in `_bot.yaml`.
macro_rules! string_table {
    (
        $(#[$meta:meta])* $raw:ident as $schema_name:literal where $field_schema:tt
            => $name:ident<$ty:ty> via $convert:ident {
            $($(#[$field_meta:meta])* $field:ident),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(rename = $schema_name)]
        #[allow(missing_docs)]
        pub struct $raw {
            $($(#[$field_meta])* #[schemars $field_schema] pub $field: Spanned<String>,)*
        }

        $(#[$meta])*
        #[derive(Debug, Clone)]
        #[allow(missing_docs)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $raw {
            /// Each string's key and English text, for translation hashes.
            fn texts(&self) -> Vec<(&'static str, &str)> {
                vec![$((stringify!($field), self.$field.value.as_str()),)*]
            }
        }

        impl $name {
            /// Replaces the string named `name` by `text`, validated the same
            /// way; `None` when there is no such string.
            pub(crate) fn set(&mut self, name: &str, text: &str) -> Option<Result<(), String>> {
                match name {
                    $(stringify!($field) => Some($convert(text).map(|value| self.$field = value)),)*
                    _ => None,
                }
            }

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
    /// Button labels and command descriptions the bot adds itself, at most 80
    /// characters each.
    RawLabels as "Labels" where (with = "String", length(min = 1, max = 80)) => Labels<String> via to_label {
        /// The default first choice of a step without `choices` (goto `resolved`).
        fixed,
        /// The default second choice of a step without `choices` (goto `next`).
        not_fixed,
        /// The button for iPhone when the bot asks which phone it is; also the
        /// phone's name in the case summary.
        ios,
        /// The button for Android when the bot asks which phone it is; also the
        /// phone's name in the case summary.
        android,
        /// The button that hands the case to a person.
        person,
        /// Accepts the offer to switch to another problem.
        switch,
        /// Declines the offer to switch to another problem.
        stay,
        /// Under a clarifying question: none of the offered problems fits.
        none_of_these,
        /// Telegram and Discord command menus: what `/fix` does.
        command_fix,
        /// Telegram command menu: what `/start` does.
        command_start,
        /// Command menus: what `/help` does.
        command_help,
        /// Command menus: what `/back` does.
        command_back,
        /// Command menus: what `/restart` does.
        command_restart,
        /// Command menus: what `/human` does.
        command_human,
        /// Command menus: what `/stop` does.
        command_stop,
        /// Discord: the description of `/fix`'s text option.
        command_fix_error,
        /// Discord: the title of the form that opens when `/fix` has no text.
        paste_title,
        /// Discord: the label of that form's text box.
        paste_label,
        /// Discord help channels: the name of the thread opened for each case.
        thread_name,
        /// Command menus: what `/forget` does.
        command_forget,
        /// Command menus: what `/language` does.
        command_language,
        /// Discord: the description of `/language`'s option.
        command_language_option,
        /// Staff desks: the link in a case packet back to the user's conversation.
        packet_link,
        /// Staff command menus: what `/why` does.
        command_why,
        /// Discord: the description of `/why`'s option, the person asked about.
        command_why_user,
    }
}

string_table! {
    /// Every sentence the bot says outside a flow step. Same markup as steps
    /// (`**bold**`, `` `code` ``, `[link](https://…)`, `- ` lists); `{name}`
    /// slots are filled in by the bot.
    RawMessages as "Messages" where (with = "String") => Messages<Template> via to_template {
        /// The first message of a conversation, and the answer to `/start`.
        greeting,
        /// The answer to `help` and `/help`.
        help,
        /// Said when the bot recognises a problem. Slots: `{title}`, `{summary}`.
        diagnosed,
        /// Said when a choice continues in another flow. Slots: `{title}`, `{summary}`.
        continue_flow,
        /// Said when nothing was recognised, above the list of problems.
        fallback,
        /// The question when a message could be more than one problem.
        clarify,
        /// Asked when a step differs by phone and the message did not tell.
        ask_platform,
        /// Said when the user confirms the problem is fixed.
        resolved,
        /// Said when every step was tried, before handing over to a person.
        exhausted,
        /// Said when the case goes to a person, above the case summary.
        escalated,
        /// The case summary for the person taking over. Slots: `{title}`,
        /// `{platform}`, `{steps}` (one `summary_step` per line), `{paste}`.
        summary,
        /// One line of the summary's steps. Slots: `{step}`, `{outcome}`.
        summary_step,
        /// A step's outcome in the summary: it fixed the problem.
        outcome_fixed,
        /// A step's outcome in the summary: it did not help.
        outcome_not_fixed,
        /// A step's outcome in the summary: the user skipped it.
        outcome_skipped,
        /// The phone in the summary when nobody said which it is.
        platform_unknown,
        /// The answer to an empty message.
        empty,
        /// The answer to a message with no words (only emoji, say).
        no_words,
        /// The answer to something that is not one of the current step's choices.
        not_understood,
        /// Said when the user pastes the problem the case is already about.
        same_symptom,
        /// The offer to switch when a new message matches another problem. Slot: `{title}`.
        switch_offer,
        /// Said when the user declines to switch.
        stay,
        /// Said when going back one step.
        back,
        /// Said when `back` is asked on the first step.
        at_first,
        /// Said when a step is skipped.
        skipped,
        /// Said when `skip` is asked with no step open.
        nothing_to_skip,
        /// Said when the user closes the case.
        stopped,
        /// Said when the user starts over.
        restarted,
        /// Said when an idle case was closed and a new one starts.
        expired,
        /// Said when the user comes back to an open case.
        resumed,
        /// Said when the case's flow changed since its last step.
        flow_updated,
        /// The answer to a press on a button of an earlier step.
        stale_button,
        /// The answer to a press on someone else's button.
        foreign_button,
        /// Said when only the start of a long message was read. Slot: `{limit}`.
        cut,
        /// Said when part of a message was not readable text.
        unreadable_bytes,
        /// Said when the bot could not save the user's answer.
        failure,
        /// The answer to `/forget`.
        forgotten,
        /// Said once when someone sends messages too fast.
        slow_down,
        /// Said when personal data was removed from a message. Slot: `{removed}`,
        /// the kinds listed with the words under `personal_data`.
        removed,
        /// Said when the case's language is set. Slot: `{language}`.
        language_set,
        /// The answer to `/language` without a language fixbot speaks: the
        /// ones it does, one per line. Slot: `{languages}`.
        language_list,
        /// Said to the user when the case goes to a person at a staff desk.
        with_person,
        /// Said when a user comes back to a case that is with a person.
        with_staff,
        /// How a staff member's message reads to the user. Slots: `{name}`, `{text}`.
        staff_says,
        /// Said to the user when staff close the case. Slot: `{name}`.
        staff_closed,
        /// Said when no staff desk could take the case.
        staff_unreachable,
        /// The case packet staff read in the case's thread. Slots: `{reference}`,
        /// `{user}`, `{platform}`, `{title}`, `{symptom}`, `{score}`, `{phone}`,
        /// `{captures}`, `{steps}`, `{paste}`. Keep `#{reference}`: in a Telegram
        /// group without topics, a reply finds its case by it.
        packet,
        /// Under the packet: how staff answer and close.
        packet_footer,
        /// A user's message relayed to staff. Slots: `{user}`, `{reference}`, `{text}`.
        staff_relay,
        /// Told to staff when the user closes the case. Slots: `{reference}`, `{user}`.
        staff_user_closed,
        /// Told to staff when one of them closes the case. Slots: `{reference}`, `{name}`.
        staff_case_closed,
        /// The answer to `/why` from someone who is not staff.
        why_refused,
        /// The answer to `/why` about a person with no open case there.
        why_no_case,
        /// The answer to `/why` that names nobody: how to name the person.
        why_how,
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
    /// What the `removed` notice calls each kind of personal data, at most 60
    /// characters each.
    RawKindNames as "KindNames" where (with = "String", length(min = 1, max = 60)) => KindNames<String> via to_phrase {
        /// An e-mail address.
        email,
        /// A phone number.
        phone,
        /// A person's name, e.g. in "Ann's iPhone".
        name,
        /// A user name, e.g. in a home-directory path.
        user,
        /// An IMEI or MEID.
        imei,
        /// A SIM card number (ICCID).
        iccid,
        /// A serial number.
        serial,
        /// A device identifier: UDID, backup folder, Android ID, MAC address.
        device_id,
        /// A payment card number.
        card,
        /// A password or recovery key.
        password,
        /// An access token or key.
        token,
        /// A link carrying credentials.
        url,
        /// A public IP address.
        ip,
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

/// How the `removed` notice names the personal data taken out of a message,
/// and how it lists several kinds: "a, b and c".
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PersonalData")]
struct RawPersonalData {
    /// The words for each kind of personal data.
    kinds: RawKindNames,
    /// Between two items of the list but the last two, used exactly as
    /// written, spaces included: `", "`.
    #[schemars(with = "String", length(min = 1))]
    separator: Spanned<String>,
    /// Between the last two items, used exactly as written: `" and "`.
    #[schemars(with = "String", length(min = 1))]
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
    /// The English text of every translatable string, by `section.key`
    /// (`labels.fixed`, `messages.greeting`, `personal_data.email`).
    pub(crate) sources: BTreeMap<String, String>,
}

/// Strings only staff read (the case packet and the notes in a case's staff
/// thread): they stay in English, the staff's language, whatever the user's,
/// so they are not offered for translation.
const STAFF_FACING: &[&str] = &[
    "labels.packet_link",
    "labels.command_why",
    "labels.command_why_user",
    "messages.packet",
    "messages.packet_footer",
    "messages.staff_relay",
    "messages.staff_user_closed",
    "messages.staff_case_closed",
    "messages.why_refused",
    "messages.why_no_case",
    "messages.why_how",
];

/// fixbot's own words (`flows/_bot.yaml`): every sentence the bot says
/// outside a flow step, its button labels, the words people type to navigate,
/// and the matching thresholds. Run `fixbot check` after every change.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Bot", title = "fixbot bot strings")]
pub struct RawBot {
    /// Matching thresholds, all on the summed weights of a flow's patterns.
    settings: RawSettings,
    /// Words that tell which phone the user has, matched like flow patterns.
    platforms: RawPlatforms,
    /// Whole messages that mean a command or an answer. Case, accents and
    /// punctuation are ignored; a phrase may appear in one list only.
    words: RawWords,
    /// Button labels and command descriptions.
    labels: RawLabels,
    /// The bot's sentences.
    messages: RawMessages,
    /// The words of the notice about removed personal data.
    personal_data: RawPersonalData,
}

/// Matching thresholds, all on the summed weights of a flow's patterns.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Settings")]
struct RawSettings {
    /// The bot commits to a flow from this score on…
    commit_score: u32,
    /// …when the flow also beats the runner-up by this much.
    margin: u32,
    /// From this score on (and up to `commit_score`), flows are offered as
    /// buttons in a clarifying question; below it the bot says it does not
    /// recognise the message.
    #[schemars(range(min = 1))]
    clarify_score: u32,
    /// A new message in the middle of a case offers to switch flows from this
    /// score on.
    switch_score: u32,
    /// How many problems a clarifying question offers.
    #[schemars(range(min = 2, max = 14))]
    max_candidates: usize,
}

/// Patterns that tell which phone the user has. The bot asks only when a step
/// differs by platform and none of these matched.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Platforms")]
pub struct RawPlatforms {
    /// Patterns that point at an iPhone (`'\bi ?phones?\b'`), written like
    /// flow patterns.
    #[schemars(with = "Vec<String>")]
    pub ios: Vec<Spanned<String>>,
    /// Patterns that point at an Android phone (`'\bpixel\b'`), written like
    /// flow patterns.
    #[schemars(with = "Vec<String>")]
    pub android: Vec<Spanned<String>>,
}

/// Whole messages that mean a command or an answer, in every language the bot
/// speaks.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Words")]
struct RawWords {
    /// Show the help (as `/help`).
    #[schemars(with = "Vec<String>")]
    help: Spanned<Vec<String>>,
    /// Go back one step (as `/back`).
    #[schemars(with = "Vec<String>")]
    back: Spanned<Vec<String>>,
    /// Start over (as `/restart`).
    #[schemars(with = "Vec<String>")]
    restart: Spanned<Vec<String>>,
    /// Skip the current step.
    #[schemars(with = "Vec<String>")]
    skip: Spanned<Vec<String>>,
    /// Close the case (as `/stop`).
    #[schemars(with = "Vec<String>")]
    stop: Spanned<Vec<String>>,
    /// Talk to a person (as `/human`).
    #[schemars(with = "Vec<String>")]
    human: Spanned<Vec<String>>,
    /// "It worked": chooses the step's choice that goes to `resolved`.
    #[schemars(with = "Vec<String>")]
    fixed: Spanned<Vec<String>>,
    /// "It didn't": chooses the step's choice that goes to `next`.
    #[schemars(with = "Vec<String>")]
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
        let mut sources = BTreeMap::new();
        let sections = [
            ("labels", raw.labels.texts()),
            ("messages", raw.messages.texts()),
            ("personal_data", raw.personal_data.kinds.texts()),
            (
                "personal_data",
                vec![
                    ("separator", raw.personal_data.separator.value.as_str()),
                    ("last_separator", raw.personal_data.last_separator.value.as_str()),
                ],
            ),
        ];
        for (section, texts) in sections {
            for (key, text) in texts {
                let name = format!("{section}.{key}");
                if !STAFF_FACING.contains(&name.as_str()) {
                    sources.insert(name, text.to_owned());
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
                sources,
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
