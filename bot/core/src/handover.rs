//! What passes between a case and the person it was handed to: the inputs
//! staff give the engine, what the engine has for staff, and the case packet
//! and thread notes staff read, rendered from `flows/_bot.yaml` in the core's
//! markup so that every desk shows user text escaped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::case::{Case, ConversationKey, Outcome, StaffThread, Tried};
use crate::flow::{Bot, Flows, Platform};
use crate::markup::{Markup, Style};

/// Longest name of a staff thread or forum topic: Discord allows 100
/// characters for a thread, Telegram 128 for a topic.
pub const MAX_TOPIC_CHARS: usize = 100;

/// Something staff did about a case, handled by the engine like any input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffInput {
    /// A desk posted the case packet and opened this thread for the case.
    Opened(StaffThread),
    /// A staff member wrote in the case's thread.
    Reply {
        /// How the user sees them named: a first name or display name.
        name: String,
        /// What they wrote.
        text: String,
    },
    /// A staff member closed the case (`/close` in its thread).
    Close {
        /// Who closed it.
        name: String,
    },
    /// No desk could take the case.
    Unreachable,
}

/// What the staff thread of a case must hear after an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToStaff {
    /// The case's reference ([`Case::reference`]).
    pub reference: String,
    /// The thread as the case knew it; `None` while its desk is still
    /// opening it (the thread is then looked up again).
    pub thread: Option<StaffThread>,
    /// What to say.
    pub note: StaffNote,
}

/// A note for a case's staff thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffNote {
    /// The user wrote this, sanitised and redacted.
    Message(String),
    /// The user closed the case.
    UserClosed,
    /// This staff member closed the case, and the user was told.
    StaffClosed(String),
    /// The answer to `/why` in the case's thread ([`crate::why::explain`]):
    /// for staff only, the user sees nothing of it.
    Why(Markup),
}

/// How staff recognise the person a case belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The person's name and handle on their platform, e.g. `Ann (@ann, id 10)`.
    pub handle: String,
    /// A link back to the conversation, where the platform has one staff can open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Everything a desk posts when a case is handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The case's short reference.
    pub reference: String,
    /// The platform the user wrote on (`telegram`, `discord`, …).
    pub platform: String,
    /// Who the user is.
    pub user: UserInfo,
    /// The case as handed over, with every step tried.
    pub case: Case,
    /// The title of the case's symptom, when one was diagnosed.
    pub title: Option<String>,
    /// The packet as chat desks show it.
    pub body: Markup,
    /// A name for the case's thread or forum topic, at most [`MAX_TOPIC_CHARS`].
    pub topic: String,
    /// Unix seconds of the hand-over.
    pub at: i64,
}

impl Packet {
    /// The packet of `case`, handed over by `key`'s user at `at`.
    pub fn new(flows: &Flows, key: &ConversationKey, case: &Case, user: &UserInfo, at: i64) -> Packet {
        let bot = flows.bot();
        let messages = &bot.messages;
        let title = case.symptom.as_deref().and_then(|id| flows.get(id)).map(|flow| flow.title.clone());
        let reference = case.reference();
        let phone = phone_name(bot, case.platform);
        let captures = if case.captures.is_empty() {
            "-".to_owned()
        } else {
            case.captures.iter().map(|(name, value)| format!("{name}: {value}")).collect::<Vec<_>>().join(", ")
        };
        let steps = steps_tried(bot, &case.history, |tried| format!("{}/{}", tried.flow, tried.step));
        let paste = if case.paste.is_empty() { "-".to_owned() } else { case.paste.clone() };
        let mut body = messages.packet.fill(&values(&[
            ("reference", &reference),
            ("user", &user.handle),
            ("platform", &key.platform),
            ("title", title.as_deref().unwrap_or("-")),
            ("symptom", case.symptom.as_deref().unwrap_or("-")),
            ("score", &case.score.to_string()),
            ("phone", &phone),
            ("captures", &captures),
            ("steps", &steps),
            ("paste", &paste),
        ]));
        if let Some(link) = &user.link {
            let mut line = Markup::default();
            line.push(Style::Link(link.clone()), &bot.labels.packet_link);
            body.append_paragraph(line);
        }
        body.append_paragraph(messages.packet_footer.render());
        let topic = match &title {
            Some(title) => format!("#{reference} {title} · {}", user.handle),
            None => format!("#{reference} · {}", user.handle),
        };
        Packet {
            reference,
            platform: key.platform.clone(),
            user: user.clone(),
            case: case.clone(),
            title,
            body,
            topic: topic.chars().take(MAX_TOPIC_CHARS).collect(),
            at,
        }
    }
}

/// A note as a desk posts it into a case's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskNote {
    /// The case's reference.
    pub reference: String,
    /// What happened.
    pub note: StaffNote,
    /// The note as chat desks show it.
    pub body: Markup,
    /// Unix seconds.
    pub at: i64,
}

impl DeskNote {
    /// The note for `reference`'s thread; `user` names the person the case
    /// belongs to, when known.
    pub fn new(flows: &Flows, reference: &str, user: Option<&UserInfo>, note: StaffNote, at: i64) -> DeskNote {
        let messages = &flows.bot().messages;
        let user = user.map_or("-", |user| user.handle.as_str());
        let body = match &note {
            StaffNote::Message(text) => {
                messages.staff_relay.fill(&values(&[("reference", reference), ("user", user), ("text", text)]))
            }
            StaffNote::UserClosed => {
                messages.staff_user_closed.fill(&values(&[("reference", reference), ("user", user)]))
            }
            StaffNote::StaffClosed(name) => {
                messages.staff_case_closed.fill(&values(&[("reference", reference), ("name", name)]))
            }
            StaffNote::Why(explanation) => explanation.clone(),
        };
        DeskNote { reference: reference.to_owned(), note, body, at }
    }
}

/// The phone's name as the bot's strings give it, or "unknown".
pub(crate) fn phone_name(bot: &Bot, platform: Option<Platform>) -> String {
    match platform {
        Some(Platform::Ios) => bot.labels.ios.clone(),
        Some(Platform::Android) => bot.labels.android.clone(),
        None => bot.messages.platform_unknown.render().to_plain(),
    }
}

/// The steps of `history`, one `summary_step` line each with the step as
/// `name` gives it, or `-` when none was tried: for the user's summary and
/// for staff's packet alike.
pub(crate) fn steps_tried(bot: &Bot, history: &[Tried], name: impl Fn(&Tried) -> String) -> String {
    let messages = &bot.messages;
    let lines: Vec<String> = history
        .iter()
        .map(|tried| {
            let outcome = match tried.outcome {
                Outcome::Fixed => &messages.outcome_fixed,
                Outcome::Skipped => &messages.outcome_skipped,
                _ => &messages.outcome_not_fixed,
            };
            let step = name(tried);
            messages
                .summary_step
                .fill(&values(&[("step", &step), ("outcome", &outcome.render().to_plain())]))
                .to_plain()
        })
        .collect();
    if lines.is_empty() { "-".to_owned() } else { lines.join("\n") }
}

/// Whether a staff member's message is the command `name` (`close`, `why`):
/// `/name`, or `/name@botname` as Telegram groups write commands.
pub fn is_command(text: &str, name: &str) -> bool {
    let Some(word) = text.trim().strip_prefix('/').and_then(|rest| rest.split_whitespace().next()) else {
        return false;
    };
    word.split('@').next().is_some_and(|word| word.eq_ignore_ascii_case(name))
}

/// Finds a case reference (`#` and eight hex digits) in a message staff
/// replied to: in a Telegram group without topics, replies form the thread.
pub fn find_reference(text: &str) -> Option<&str> {
    text.match_indices('#').find_map(|(at, _)| {
        let candidate = text.get(at + 1..at + 9)?;
        let hex = candidate.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let ends = text[at + 9..].chars().next().is_none_or(|c| !c.is_ascii_alphanumeric());
        (hex && ends).then_some(candidate)
    })
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_is_a_command_in_any_case_with_or_without_the_bot() {
        assert!(is_command("/close", "close"));
        assert!(is_command(" /Close@fixbot_bot thanks", "close"));
        assert!(is_command("/why", "why"));
        assert!(!is_command("close", "close"));
        assert!(!is_command("/closet", "close"));
        assert!(!is_command("please /close", "close"));
    }

    #[test]
    fn references_are_eight_hex_digits_after_a_hash() {
        assert_eq!(find_reference("Case #3f9a1c02 · Ann"), Some("3f9a1c02"));
        assert_eq!(find_reference("💬 Ann (#0badcafe): hi"), Some("0badcafe"));
        assert_eq!(find_reference("#3f9a1c02a too long, #xyz, #12 short"), None);
        assert_eq!(find_reference("no hash"), None);
    }
}
