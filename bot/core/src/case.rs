//! The state of one conversation's case, as the store keeps it between
//! messages, and the outcome records appended for statistics.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::flow::Platform;
use crate::lang::Lang;

/// Identifies one conversation: one user in one place on one platform. Two
/// users in one channel have separate cases; a thread or forum topic is its
/// own place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConversationKey {
    /// Front-end name: `console`, `telegram`, `discord`, `web`.
    pub platform: String,
    /// Chat, channel or DM id.
    pub chat: String,
    /// Thread or forum topic id; empty when the place has none.
    pub thread: String,
    /// The user's id on that platform.
    pub user: String,
}

impl ConversationKey {
    /// A key from its four parts.
    pub fn new(platform: &str, chat: &str, thread: &str, user: &str) -> ConversationKey {
        ConversationKey {
            platform: platform.to_owned(),
            chat: chat.to_owned(),
            thread: thread.to_owned(),
            user: user.to_owned(),
        }
    }

    /// A stable digest of the person (platform and user, not the place):
    /// outcome records carry it so that `/forget` can find them, while the
    /// log itself holds no user id.
    pub fn subject(&self) -> u64 {
        ConversationKey::new(&self.platform, "", "", &self.user).digest()
    }

    /// A stable 64-bit digest of the key, used to derive case ids.
    pub fn digest(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [&self.platform, &self.chat, &self.thread, &self.user] {
            // A separator byte that never occurs in UTF-8 keeps ("ab","c") and ("a","bc") apart.
            for &byte in part.as_bytes().iter().chain(&[0xff]) {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        hash
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.platform, self.chat, self.thread, self.user)
    }
}

/// A place in a flow. Cases hold steps by id so that they survive edits
/// to the flow file that move steps around.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Flow id.
    pub flow: String,
    /// Step id.
    pub step: String,
    /// The flow's version when the case got here.
    pub version: u64,
}

/// What the bot is waiting for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Nothing recognised yet; the symptom list is on offer.
    AwaitingSymptom,
    /// Several symptoms fit; the user picks one.
    Clarifying {
        /// Flow ids offered, best first.
        candidates: Vec<String>,
    },
    /// The step at `at` differs by platform and the platform is unknown.
    AskingPlatform {
        /// The step to show once the platform is known.
        at: Position,
    },
    /// A step is shown and its choices are on offer.
    AtStep {
        /// The current step.
        at: Position,
    },
    /// A new message pointed at another symptom; switch or stay?
    OfferingSwitch {
        /// The step the case stays at if the user declines.
        at: Position,
        /// Flow id offered.
        to: String,
    },
}

impl Phase {
    /// The step this phase is about, if any.
    pub fn position(&self) -> Option<&Position> {
        match self {
            Phase::AskingPlatform { at } | Phase::AtStep { at } | Phase::OfferingSwitch { at, .. } => Some(at),
            Phase::AwaitingSymptom | Phase::Clarifying { .. } => None,
        }
    }
}

/// How a step (or a case) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The user said this step fixed it.
    Fixed,
    /// The user tried it and it did not help.
    NotFixed,
    /// The user skipped the step.
    Skipped,
    /// The user stopped, restarted or went idle here.
    Abandoned,
    /// The case went to a person here.
    Escalated,
}

impl Outcome {
    /// The snake_case name used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Fixed => "fixed",
            Outcome::NotFixed => "not_fixed",
            Outcome::Skipped => "skipped",
            Outcome::Abandoned => "abandoned",
            Outcome::Escalated => "escalated",
        }
    }

    /// Parses the name written by [`Outcome::as_str`].
    pub fn parse(name: &str) -> Option<Outcome> {
        [Outcome::Fixed, Outcome::NotFixed, Outcome::Skipped, Outcome::Abandoned, Outcome::Escalated]
            .into_iter()
            .find(|outcome| outcome.as_str() == name)
    }
}

/// A step the user went through, with how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tried {
    /// Flow id.
    pub flow: String,
    /// Step id.
    pub step: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// One open case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Pseudonymous id, derived from the key and the opening time; it ties
    /// outcome records together without naming the user.
    pub id: u64,
    /// Bumped on every change; buttons carry it, so a press on an older
    /// message is recognised as stale.
    pub turn: u32,
    /// What the bot waits for.
    pub phase: Phase,
    /// The phone, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The flow the case was first diagnosed as (or picked), for statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symptom: Option<String>,
    /// The diagnosis score of `symptom`.
    #[serde(default)]
    pub score: u32,
    /// Named regex captures, available to step texts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub captures: BTreeMap<String, String>,
    /// Steps left behind, oldest first; `back` pops from here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Tried>,
    /// The redacted message that opened the case, cut short.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub paste: String,
    /// The language the case is answered in; cases stored before there
    /// were translations load as English.
    #[serde(default, skip_serializing_if = "Lang::is_english")]
    pub language: Lang,
    /// Unix seconds when the case opened.
    pub opened_at: i64,
    /// Unix seconds of the last change; idle expiry counts from here.
    pub updated_at: i64,
    /// Set by the idle sweep once it recorded this case as abandoned: the
    /// person's next message then closes it, and says so, without recording
    /// it a second time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// Set while the case is with a person: since when, and where staff answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<Staff>,
}

impl Case {
    /// The short reference staff know the case by (`#3f9a1c02`): eight hex
    /// digits folded from the id, so it names no one.
    pub fn reference(&self) -> String {
        format!("{:08x}", ((self.id >> 32) ^ self.id) as u32)
    }

    /// The lookup key of the staff thread the case is answered in, once a
    /// desk has opened one: what [`crate::store::Store::find_by_staff_thread`] finds it by.
    pub fn staff_thread(&self) -> Option<&str> {
        self.staff.as_ref()?.thread.as_ref().map(|thread| thread.id.as_str())
    }
}

/// A case handed to a person. While a case has one, the user's messages go
/// to staff instead of advancing the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staff {
    /// Unix seconds when the case was handed over.
    pub since: i64,
    /// The thread staff answer in, once a desk has posted the case packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<StaffThread>,
}

/// Where staff discuss one case: a Discord thread, a Telegram forum topic or
/// reply chain, or a help-desk ticket behind the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffThread {
    /// The desk that opened it: `discord`, `telegram` or `webhook`.
    pub desk: String,
    /// Its lookup key, unique across desks and the same whichever instance
    /// sees a staff message in it: `discord:<thread id>`,
    /// `telegram:<chat>:<topic>`, `telegram:<chat>:#<reference>`,
    /// `webhook:<reference>`.
    pub id: String,
    /// Where the desk posts into it, in the desk's own terms.
    pub place: String,
}

/// One line of the append-only outcome log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// The case it belongs to.
    pub case_id: u64,
    /// Who it is about, pseudonymously: [`ConversationKey::subject`].
    pub subject: u64,
    /// Unix seconds.
    pub at: i64,
    /// The flow the case started as.
    pub symptom: String,
    /// The flow the step belongs to (may differ after a `flow:` goto).
    pub flow: String,
    /// The step id; empty for a case that ended before any step.
    pub step: String,
    /// How it ended.
    pub outcome: Outcome,
}
