//! Simulated people for the load and fault runs. Each has a script of ten
//! messages (a paste, typed answers, button presses, "back", new pastes, two
//! "skip"s sent at once), planned by playing it through the engine alone;
//! the script is then walked against a fake platform, each turn waiting for
//! its answers as a person would. Where the engine alone ended is where the
//! real run must end: same case, same outcome records, same number of
//! messages, none lost and none twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fixbot_core::case::{Case, ConversationKey};
use fixbot_core::engine::{EngineConfig, Input, Reply, Transition};
use fixbot_core::session::Session;
use fixbot_core::store::{MemoryStore, Store};

use crate::support::shipped_flows;

/// Messages each simulated person sends.
pub const MESSAGES_PER_USER: usize = 10;

/// Errors people paste, one per flow family, so cases spread over flows.
const PASTES: [&str; 4] = [
    "This iPhone cannot be backed up because there is not enough iCloud storage available.",
    "backup stuck at 43% for hours on my android",
    "The last backup could not be completed.",
    "iPhone Storage Full. You can manage your storage in Settings. and now backup fails",
];

/// A chat platform as the simulated people use it, through its fake.
pub trait Platform: Clone + Send + Sync + 'static {
    /// The conversation of `user`, as the front-end keys it.
    fn key(&self, user: i64) -> ConversationKey;
    /// How many messages the front-end sends for `transition`.
    fn messages(&self, transition: &Transition) -> usize;
    /// `user` writes `text`; returns the update's id.
    fn send_text(&self, user: i64, text: &str) -> i64;
    /// The newest message to `user` and its buttons as (label, data).
    fn newest(&self, user: i64) -> Option<(u64, Vec<(String, String)>)>;
    /// `user` presses the button with `data` on `message`; returns the update's id.
    fn press(&self, user: i64, message: u64, data: &str) -> i64;
    /// Whether the bot has taken update `id` off the platform's hands, so
    /// the platform will not deliver it again.
    fn acknowledged(&self, id: i64) -> bool;
    /// How many messages `user` got so far.
    fn sent_count(&self, user: i64) -> usize;
}

/// What a simulated person sends in one turn.
#[derive(Clone, Debug)]
pub enum Turn {
    /// Typed text, answered before the next turn.
    Type(String),
    /// A press on button `index` of the newest bot message, labelled `label`.
    Press { index: usize, label: String },
    /// "skip" typed twice without waiting: the two may be handled at once.
    DoubleSkip,
}

impl Turn {
    /// Messages the turn sends.
    pub fn updates(&self) -> usize {
        if matches!(self, Turn::DoubleSkip) { 2 } else { 1 }
    }
}

/// One person's turns, with how many bot messages each must bring.
pub struct Script {
    /// Who.
    pub user: i64,
    /// What they send, and the messages each turn must bring.
    pub turns: Vec<(Turn, usize)>,
}

/// A small deterministic generator, so every run plays the same scripts.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// The engine alone, with a memory store: what every run is compared with.
pub fn reference() -> Session<MemoryStore> {
    Session::new(MemoryStore::new(), shipped_flows(), EngineConfig::default())
}

/// Plays each person's turns through `reference` to get their scripts.
pub async fn plan<P: Platform>(
    platform: &P,
    users: impl Iterator<Item = i64>,
    reference: &Session<MemoryStore>,
) -> Vec<Script> {
    let mut scripts = Vec::new();
    for user in users {
        let key = platform.key(user);
        let mut random = XorShift(0x9e37_79b9_7f4a_7c15 ^ (user as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut newest: Option<Reply> = None;
        let mut turns = Vec::new();
        let mut sent = 0;
        let mut after_double = false;
        let play = async |input: Input, newest: &mut Option<Reply>| {
            let transition = reference.handle(&key, input, 1_000_000).await.unwrap();
            if let Some(last) = transition.replies.last() {
                *newest = Some(last.clone());
            }
            platform.messages(&transition)
        };
        while sent < MESSAGES_PER_USER {
            let roll = random.below(100);
            let buttons = newest.as_ref().map_or(0, |reply| reply.choices.len());
            let turn = if sent == 0 {
                Turn::Type(PASTES[user as usize % PASTES.len()].to_owned())
            } else if roll < 50 && buttons > 0 && !after_double {
                // Right after two skips the two answers may arrive in either
                // order, so which message is newest is not known.
                let index = random.below(buttons as u64) as usize;
                Turn::Press { index, label: newest.as_ref().unwrap().choices[index].clone() }
            } else if roll < 60 || (roll < 80 && sent + 2 > MESSAGES_PER_USER) {
                Turn::Type("skip".to_owned())
            } else if roll < 70 {
                Turn::Type("back".to_owned())
            } else if roll < 80 {
                Turn::DoubleSkip
            } else if roll < 92 {
                Turn::Type("1".to_owned())
            } else {
                Turn::Type(PASTES[(user as usize + 1) % PASTES.len()].to_owned())
            };
            after_double = matches!(turn, Turn::DoubleSkip);
            let expected = match &turn {
                Turn::Type(text) => play(Input::Text(text.clone()), &mut newest).await,
                Turn::Press { index, .. } => {
                    let button = newest.as_ref().unwrap().button(*index);
                    play(Input::Button(button), &mut newest).await
                }
                Turn::DoubleSkip => {
                    play(Input::Text("skip".into()), &mut newest).await
                        + play(Input::Text("skip".into()), &mut newest).await
                }
            };
            sent += turn.updates();
            turns.push((turn, expected));
        }
        scripts.push(Script { user, turns });
    }
    scripts
}

/// How one person's walk went.
#[derive(Default)]
pub struct Walked {
    /// Who.
    pub user: i64,
    /// Messages their turns should have brought.
    pub expected_messages: usize,
    /// The turn whose answer never came, if one did not.
    pub stalled_at: Option<usize>,
    /// A press found something else than the engine alone had shown.
    pub diverged: Option<String>,
    /// How long each turn waited for its answers.
    pub waits: Vec<Duration>,
}

/// Plays `script` on `platform`, waiting up to `answer_wait` for each
/// turn's answers before the next.
pub async fn walk<P: Platform>(platform: P, script: Script, answer_wait: Duration) -> Walked {
    let user = script.user;
    let mut walked = Walked { user, ..Walked::default() };
    for (number, (turn, expected)) in script.turns.into_iter().enumerate() {
        let asked = Instant::now();
        let updates = match turn {
            Turn::Type(text) => vec![platform.send_text(user, &text)],
            Turn::DoubleSkip => vec![platform.send_text(user, "skip"), platform.send_text(user, "skip")],
            Turn::Press { index, label } => {
                let newest = platform.newest(user);
                let button = newest.as_ref().and_then(|(message, buttons)| Some((message, buttons.get(index)?)));
                match button {
                    Some((message, (shown, data))) if *shown == label => vec![platform.press(user, *message, data)],
                    _ => {
                        walked.diverged = Some(format!("turn {number}: no button {label:?} on {newest:?}"));
                        return walked;
                    }
                }
            }
        };
        walked.expected_messages += expected;
        let deadline = Instant::now() + answer_wait;
        // The answers have come and the bot is done with the turn: a copy
        // of an earlier answer, sent again when an update was delivered
        // again, cannot pass for this turn's, as a person would tell it
        // apart.
        while platform.sent_count(user) < walked.expected_messages
            || !updates.iter().all(|update| platform.acknowledged(*update))
        {
            if Instant::now() >= deadline {
                walked.stalled_at = Some(number);
                return walked;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        walked.waits.push(asked.elapsed());
    }
    walked
}

/// A case as compared: what it says, not when it was written or its id.
fn comparable(case: Option<Case>) -> Option<Case> {
    case.map(|case| Case { id: 0, opened_at: 0, updated_at: 0, ..case })
}

/// Outcome records per person as (symptom, flow, step, outcome), in order.
async fn outcomes_by_subject(store: &impl Store) -> BTreeMap<u64, Vec<String>> {
    let mut by_subject: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for record in store.outcomes(0).await.unwrap() {
        let line = format!("{} {} {} {}", record.symptom, record.flow, record.step, record.outcome.as_str());
        by_subject.entry(record.subject).or_default().push(line);
    }
    by_subject
}

/// What a run came to, against the engine alone.
#[derive(Debug, Default)]
pub struct Tally {
    /// Messages the people sent.
    pub updates: usize,
    /// Bot messages the engine alone sent.
    pub expected_messages: usize,
    /// Bot messages that never came.
    pub lost: usize,
    /// Bot messages that came more than once.
    pub duplicated: usize,
    /// Outcome records stored, and how many the engine alone wrote.
    pub records: (usize, usize),
    /// People whose outcome records differ from the engine alone's.
    pub other_outcomes: usize,
    /// Everything else that went wrong, one line each.
    pub problems: Vec<String>,
    /// The median and 99th percentile of a turn's wait for its answers.
    pub waits: (Duration, Duration),
}

impl Tally {
    /// Compares what `store` holds and `platform` sent for every walked
    /// person with what `reference` (the engine alone) did.
    pub async fn of<P: Platform>(
        platform: &P,
        walked: &[Walked],
        updates: usize,
        store: &impl Store,
        reference: &Session<MemoryStore>,
    ) -> Tally {
        let mut tally = Tally { updates, ..Tally::default() };
        for walked in walked {
            let user = walked.user;
            let got = platform.sent_count(user);
            tally.expected_messages += walked.expected_messages;
            tally.lost += walked.expected_messages.saturating_sub(got);
            tally.duplicated += got.saturating_sub(walked.expected_messages);
            if let Some(turn) = walked.stalled_at {
                tally.problems.push(format!("user {user}: no answer to turn {turn}"));
            }
            if let Some(divergence) = &walked.diverged {
                tally.problems.push(format!("user {user}: {divergence}"));
            }
            let key = platform.key(user);
            let stored = store.get(&key).await.unwrap().map(|stored| stored.case);
            let wanted = reference.store().get(&key).await.unwrap().map(|stored| stored.case);
            if comparable(stored.clone()) != comparable(wanted.clone()) {
                tally.problems.push(format!("user {user}: the case is\n  {stored:?}\nbut should be\n  {wanted:?}"));
            }
        }
        let subjects: Vec<u64> = walked.iter().map(|walked| platform.key(walked.user).subject()).collect();
        let (outcomes, wanted) = (outcomes_by_subject(store).await, outcomes_by_subject(reference.store()).await);
        tally.other_outcomes = subjects.iter().filter(|subject| outcomes.get(subject) != wanted.get(subject)).count();
        let count = |by_subject: &BTreeMap<u64, Vec<String>>| {
            subjects.iter().filter_map(|subject| by_subject.get(subject)).map(Vec::len).sum()
        };
        tally.records = (count(&outcomes), count(&wanted));
        let mut waits: Vec<Duration> = walked.iter().flat_map(|walked| walked.waits.iter().copied()).collect();
        waits.sort();
        let percentile = |p: usize| waits.get(waits.len().saturating_sub(1) * p / 100).copied().unwrap_or_default();
        tally.waits = (percentile(50), percentile(99));
        tally
    }

    /// One line with the figures.
    pub fn figures(&self) -> String {
        format!(
            "{} messages; bot messages expected {}, lost {}, duplicated {}; outcome records {} (expected {}), \
             people with other outcomes {}; other problems {}; a turn's answers came after {:.2?} (median), \
             {:.2?} (p99)",
            self.updates,
            self.expected_messages,
            self.lost,
            self.duplicated,
            self.records.0,
            self.records.1,
            self.other_outcomes,
            self.problems.len(),
            self.waits.0,
            self.waits.1
        )
    }

    /// Fails the test, with the figures, unless every message was answered,
    /// every case ended as the engine alone ended it and no transition was
    /// applied twice; at most `duplicates` messages may have come twice.
    pub fn assert_sound(&self, context: &str, duplicates: usize) {
        let figures = format!("{context}: {}", self.figures());
        let first: Vec<&str> = self.problems.iter().take(10).map(String::as_str).collect();
        assert!(self.problems.is_empty(), "{figures}\n{}", first.join("\n"));
        assert_eq!(self.lost, 0, "{figures}");
        assert_eq!(self.other_outcomes, 0, "no transition applied twice or lost: {figures}");
        assert_eq!(self.records.0, self.records.1, "{figures}");
        assert!(self.duplicated <= duplicates, "{figures}");
    }
}

/// Telegram through its fake: private chats whose id is the user's.
#[derive(Clone)]
pub struct TelegramPeople(pub crate::fake_telegram::FakeTelegram);

impl Platform for TelegramPeople {
    fn key(&self, user: i64) -> ConversationKey {
        ConversationKey::new("telegram", &user.to_string(), "", &user.to_string())
    }

    fn messages(&self, transition: &Transition) -> usize {
        transition.replies.iter().map(|reply| fixbot_telegram::split(&reply.body).len()).sum()
    }

    fn send_text(&self, user: i64, text: &str) -> i64 {
        use crate::fake_telegram::{Chat, User};
        self.0.text(Chat::private(user), User { id: user, language: "en" }, text)
    }

    fn newest(&self, user: i64) -> Option<(u64, Vec<(String, String)>)> {
        let newest = self.0.sent_to(user).pop()?;
        Some((newest.message_id as u64, newest.buttons.into_iter().flatten().collect()))
    }

    fn press(&self, user: i64, message: u64, data: &str) -> i64 {
        use crate::fake_telegram::{Chat, User};
        self.0.press(Chat::private(user), User { id: user, language: "en" }, message as i64, data)
    }

    fn acknowledged(&self, id: i64) -> bool {
        self.0.acknowledged(id)
    }

    fn sent_count(&self, user: i64) -> usize {
        self.0.sent_count(user)
    }
}

/// Discord through its fake: direct messages, typed and with buttons, in a
/// DM channel of each person's own.
#[derive(Clone)]
pub struct DiscordPeople(pub crate::fake_discord::FakeDiscord);

impl DiscordPeople {
    fn place(user: i64) -> crate::fake_discord::Place {
        crate::fake_discord::Place::dm(Self::channel(user))
    }

    fn channel(user: i64) -> u64 {
        900_000 + user as u64
    }

    /// The messages people see in `user`'s DM channel: not the paste form,
    /// not notes only the presser sees.
    fn seen(&self, user: i64) -> Vec<crate::fake_discord::Post> {
        let seen =
            |post: &crate::fake_discord::Post| !post.ephemeral && post.modal.is_none() && !post.content.is_empty();
        self.0.posts_in(Self::channel(user)).into_iter().filter(seen).collect()
    }
}

impl Platform for DiscordPeople {
    fn key(&self, user: i64) -> ConversationKey {
        ConversationKey::new("discord", &Self::channel(user).to_string(), "", &user.to_string())
    }

    fn messages(&self, transition: &Transition) -> usize {
        transition.replies.iter().map(|reply| fixbot_discord::split(&reply.body).len()).sum()
    }

    fn send_text(&self, user: i64, text: &str) -> i64 {
        self.0.message(Self::place(user), user as u64, text) as i64
    }

    fn newest(&self, user: i64) -> Option<(u64, Vec<(String, String)>)> {
        let newest = self.seen(user).pop()?;
        Some((newest.message, newest.buttons.into_iter().flatten().map(|b| (b.label, b.custom_id)).collect()))
    }

    fn press(&self, user: i64, message: u64, data: &str) -> i64 {
        self.0.press(Self::place(user), user as u64, message, data) as i64
    }

    /// The gateway has no acknowledgement: an event is sent once, and
    /// whether the bot handled it shows only in what it sends.
    fn acknowledged(&self, _id: i64) -> bool {
        true
    }

    fn sent_count(&self, user: i64) -> usize {
        self.seen(user).len()
    }
}
