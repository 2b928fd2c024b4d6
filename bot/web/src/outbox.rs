//! What each web conversation was told, numbered, so a browser can long-poll
//! for what it has not seen (`after` a cursor) and a reloaded page can show
//! the case where it was. Kept in memory and bounded: it is a delivery
//! buffer, not a record; the case itself lives in the store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fixbot_core::markup::Markup;
use serde::Serialize;
use tokio::sync::watch;

/// Events kept per conversation; older ones are dropped.
const MAX_EVENTS: usize = 200;
/// Conversations kept; past it the one idle longest is dropped.
const MAX_CONVERSATIONS: usize = 10_000;

/// Who said something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The bot.
    Bot,
    /// The visitor (their text as redacted, or the label they pressed).
    Visitor,
}

/// One answer button: its label and the sealed reference to send back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// What the button says.
    pub label: String,
    /// Sent back as `choice` to press it.
    #[serde(rename = "ref")]
    pub reference: String,
}

/// One numbered message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Increasing from 1 within the conversation.
    pub id: u64,
    /// Who said it.
    pub from: Speaker,
    /// The text, as styled spans.
    pub body: Markup,
    /// Answer buttons; empty when none.
    pub choices: Vec<Choice>,
}

struct Mailbox {
    events: VecDeque<Event>,
    latest: watch::Sender<u64>,
    touched: Instant,
}

impl Mailbox {
    fn new() -> Mailbox {
        Mailbox { events: VecDeque::new(), latest: watch::Sender::new(0), touched: Instant::now() }
    }

    fn since(&self, after: u64) -> (Vec<Event>, u64) {
        let events = self.events.iter().filter(|event| event.id > after).cloned().collect();
        (events, *self.latest.borrow())
    }
}

/// Every conversation's mailbox.
#[derive(Default)]
pub struct Outbox {
    mailboxes: Mutex<HashMap<String, Mailbox>>,
}

impl Outbox {
    /// Appends `messages` to `user`'s conversation; returns them numbered
    /// and the new cursor.
    pub fn push(&self, user: &str, messages: Vec<(Speaker, Markup, Vec<Choice>)>) -> (Vec<Event>, u64) {
        let mut mailboxes = self.mailboxes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !mailboxes.contains_key(user) && mailboxes.len() >= MAX_CONVERSATIONS {
            let idlest = mailboxes.iter().min_by_key(|(_, mailbox)| mailbox.touched).map(|(user, _)| user.clone());
            if let Some(idlest) = idlest {
                mailboxes.remove(&idlest);
            }
        }
        let mailbox = mailboxes.entry(user.to_owned()).or_insert_with(Mailbox::new);
        mailbox.touched = Instant::now();
        let mut latest = *mailbox.latest.borrow();
        let mut pushed = Vec::new();
        for (from, body, choices) in messages {
            latest += 1;
            let event = Event { id: latest, from, body, choices };
            mailbox.events.push_back(event.clone());
            pushed.push(event);
        }
        while mailbox.events.len() > MAX_EVENTS {
            mailbox.events.pop_front();
        }
        mailbox.latest.send_replace(latest);
        (pushed, latest)
    }

    /// Drops everything kept for `user` (they asked to be forgotten); the
    /// numbering goes on, so their open pages simply see nothing old again.
    pub fn forget(&self, user: &str) {
        let mut mailboxes = self.mailboxes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(mailbox) = mailboxes.get_mut(user) {
            mailbox.events.clear();
        }
    }

    /// The label of the choice `reference` offered to `user`, if it is still kept.
    pub fn label(&self, user: &str, reference: &str) -> Option<String> {
        let mailboxes = self.mailboxes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let events = &mailboxes.get(user)?.events;
        let mut choices = events.iter().rev().flat_map(|event| &event.choices);
        choices.find(|choice| choice.reference == reference).map(|choice| choice.label.clone())
    }

    /// The events of `user` after `after`, waiting up to `wait` for one when
    /// there are none yet. A cursor ahead of the latest event (the server
    /// restarted) is answered at once with the latest.
    pub async fn wait(&self, user: &str, after: u64, wait: Duration) -> (Vec<Event>, u64) {
        let mut latest = {
            let mut mailboxes = self.mailboxes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mailbox = mailboxes.entry(user.to_owned()).or_insert_with(Mailbox::new);
            mailbox.touched = Instant::now();
            let (events, cursor) = mailbox.since(after);
            if !events.is_empty() || after > cursor || wait.is_zero() {
                return (events, cursor);
            }
            mailbox.latest.subscribe()
        };
        // Dropped mailboxes end the wait early; either way, read again.
        let _ = tokio::time::timeout(wait, latest.wait_for(|latest| *latest > after)).await;
        let mailboxes = self.mailboxes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match mailboxes.get(user) {
            Some(mailbox) => mailbox.since(after),
            None => (Vec::new(), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(text: &str) -> (Speaker, Markup, Vec<Choice>) {
        (Speaker::Bot, Markup::plain(text), Vec::new())
    }

    #[tokio::test]
    async fn events_are_numbered_per_conversation_and_read_after_a_cursor() {
        let outbox = Outbox::default();
        let (events, cursor) = outbox.push("a", vec![said("one"), said("two")]);
        assert_eq!((events.len(), events[1].id, cursor), (2, 2, 2));
        assert_eq!(outbox.push("b", vec![said("other")]).1, 1);
        let (events, cursor) = outbox.wait("a", 1, Duration::ZERO).await;
        assert_eq!((events.len(), events[0].body.to_plain(), cursor), (1, "two".to_owned(), 2));
        // Ahead of the latest: answered at once.
        let (events, cursor) = outbox.wait("a", 9, Duration::from_secs(60)).await;
        assert_eq!((events.len(), cursor), (0, 2));
    }

    #[tokio::test]
    async fn a_waiting_poll_wakes_on_the_next_event() {
        let outbox = std::sync::Arc::new(Outbox::default());
        outbox.push("a", vec![said("one")]);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.wait("a", 1, Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        outbox.push("a", vec![said("two")]);
        let (events, cursor) = waiting.await.unwrap();
        assert_eq!((events.len(), cursor), (1, 2));
    }
}
