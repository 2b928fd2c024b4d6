//! The staff desk: where cases handed to a person go, and how their threads
//! and their users reach each other. Each front-end implements [`StaffDesk`]
//! for its staff place and [`UserLine`] for reaching its users; the webhook
//! desk implements [`StaffDesk`] alone. [`Handovers`] routes between them
//! inside one process, so a Telegram user's case can be answered in a
//! Discord thread, while the engine and the session stay pure: every change
//! to a case (the thread opening, a staff reply, a close) is an engine input
//! run through the session, and the store finds a case by its thread.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use crate::case::{ConversationKey, StaffThread};
use crate::engine::{Input, Transition};
use crate::handover::{DeskNote, Packet, StaffInput, StaffNote, ToStaff, UserInfo, is_command};
use crate::metrics::metrics;
use crate::session::{KeyLocks, Session};
use crate::store::Store;

/// A future a desk or line returns; boxed, so the traits can be objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a desk could not post.
#[derive(Debug, thiserror::Error)]
#[error("staff desk {desk}: {reason}")]
pub struct DeskError {
    /// The desk's name.
    pub desk: String,
    /// What failed.
    pub reason: String,
}

impl DeskError {
    /// An error of desk `desk`.
    pub fn new(desk: &str, reason: impl std::fmt::Display) -> DeskError {
        DeskError { desk: desk.to_owned(), reason: reason.to_string() }
    }
}

/// A place where staff take cases: a Discord channel, a Telegram group, a
/// help desk behind a webhook.
pub trait StaffDesk: Send + Sync {
    /// The desk's name, which its threads carry: `discord`, `telegram`, `webhook`.
    fn name(&self) -> &str;

    /// Whether the desk hears of every hand-over and close, also of cases
    /// another desk answers (the webhook, as a help desk's record). Such a
    /// desk answers cases itself only when no chat desk is connected.
    fn records_all(&self) -> bool {
        false
    }

    /// Posts the case packet and opens the case's thread. `relay` says
    /// whether this desk answers the case, or only records it.
    fn open<'a>(&'a self, packet: &'a Packet, relay: bool) -> BoxFuture<'a, Result<StaffThread, DeskError>>;

    /// Posts a note into a case's thread.
    fn post<'a>(&'a self, thread: &'a StaffThread, note: &'a DeskNote) -> BoxFuture<'a, Result<(), DeskError>>;
}

/// A front-end's way to reach one of its users outside an update of theirs.
pub trait UserLine: Send + Sync {
    /// Sends `transition`'s replies to conversation `key`; `false` when one
    /// could not be sent for a reason that may pass.
    fn deliver<'a>(&'a self, key: &'a ConversationKey, transition: &'a Transition) -> BoxFuture<'a, bool>;
}

/// A staff member's message in a case's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMessage {
    /// How the user will see them named.
    pub name: String,
    /// What they wrote; `/close` closes the case.
    pub text: String,
}

/// What came of a staff member's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffOutcome {
    /// The thread belongs to no open case: nothing was relayed.
    NoCase,
    /// The user got it (or had got it before: a redelivered update).
    Answered,
    /// The user could not be reached for a reason that may pass; the update
    /// may be delivered again.
    Unsent,
}

/// Routes hand-overs to desks and replies to users, inside one process.
pub struct Handovers<S> {
    session: Arc<Session<S>>,
    desks: RwLock<Vec<Arc<dyn StaffDesk>>>,
    lines: RwLock<HashMap<String, Arc<dyn UserLine>>>,
    /// One follow-up of a conversation at a time, so a message written
    /// while the case's thread is opening is relayed into it.
    locks: KeyLocks,
}

impl<S: Store> Handovers<S> {
    /// Routes for `session`, with no desk or line yet: front-ends add theirs
    /// as they connect.
    pub fn new(session: Arc<Session<S>>) -> Handovers<S> {
        Handovers { session, desks: RwLock::default(), lines: RwLock::default(), locks: KeyLocks::default() }
    }

    /// The session the cases live in.
    pub fn session(&self) -> &Arc<Session<S>> {
        &self.session
    }

    /// Adds a staff desk; one per name, a later one replacing the earlier.
    pub fn add_desk(&self, desk: Arc<dyn StaffDesk>) {
        let mut desks = self.desks.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        desks.retain(|known| known.name() != desk.name());
        desks.push(desk);
    }

    /// Adds the way to reach users of `platform`.
    pub fn add_line(&self, platform: &str, line: Arc<dyn UserLine>) {
        self.lines.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(platform.to_owned(), line);
    }

    fn desks(&self) -> Vec<Arc<dyn StaffDesk>> {
        self.desks.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn desk(&self, name: &str) -> Option<Arc<dyn StaffDesk>> {
        self.desks().into_iter().find(|desk| desk.name() == name)
    }

    /// The desk that answers a case from `platform`: the chat desk of the
    /// same platform, else another chat desk, else a recording desk.
    fn choose(&self, platform: &str) -> Option<Arc<dyn StaffDesk>> {
        let desks = self.desks();
        let chat = |desk: &&Arc<dyn StaffDesk>| !desk.records_all();
        let found = desks.iter().filter(chat).find(|desk| desk.name() == platform);
        found.or_else(|| desks.iter().find(chat)).or_else(|| desks.first()).cloned()
    }

    /// Sends `transition` to the user of `key`, through their front-end.
    pub async fn deliver(&self, key: &ConversationKey, transition: &Transition) -> bool {
        let line = self.lines.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key.platform).cloned();
        match line {
            Some(line) => line.deliver(key, transition).await,
            None => {
                tracing::warn!(platform = %key.platform, "no front-end reaches this platform; a staff answer waits");
                false
            }
        }
    }

    /// Carries out what `transition`, just sent to the user of `key`, asks
    /// of staff: a hand-over opens a thread at a desk, a message or a close
    /// goes into the case's thread. `user` names the user for staff.
    pub async fn follow(&self, key: &ConversationKey, transition: &Transition, user: &UserInfo, now: i64) {
        let handover = transition.handover.as_ref().filter(|handover| handover.case.staff.is_some());
        if handover.is_none() && transition.to_staff.is_none() {
            return;
        }
        let lock = self.locks.get(key);
        let _guard = lock.lock().await;
        if let Some(handover) = handover {
            self.hand_over(key, handover.case.id, user, now).await;
        }
        if let Some(to_staff) = &transition.to_staff {
            self.tell_staff(key, to_staff, Some(user), now).await;
        }
    }

    /// Posts the packet of case `case_id` of `key` at a desk and records its thread.
    async fn hand_over(&self, key: &ConversationKey, case_id: u64, user: &UserInfo, now: i64) {
        // Read back: an update delivered again must not open a second
        // thread, and a case closed meanwhile needs none.
        let case = match self.session.store().get(key).await {
            Ok(Some(stored)) if stored.case.id == case_id && stored.case.staff.is_some() => stored.case,
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, "reading a case to hand over failed");
                return;
            }
        };
        if case.staff_thread().is_some() {
            return;
        }
        let packet = Packet::new(&self.session.flows(), key, &case, user, now);
        let chosen = self.choose(&key.platform);
        for desk in self.desks().iter().filter(|desk| desk.records_all()) {
            if chosen.as_ref().is_some_and(|chosen| Arc::ptr_eq(chosen, desk)) {
                continue;
            }
            if let Err(error) = desk.open(&packet, false).await {
                tracing::warn!(%error, "recording a hand-over failed");
            }
        }
        let opened = match &chosen {
            Some(desk) => desk.open(&packet, true).await,
            None => Err(DeskError::new("none", "no staff desk is connected")),
        };
        match opened {
            Ok(thread) => {
                metrics().handovers.with_label_values(&[thread.desk.as_str(), "opened"]).inc();
                tracing::info!(desk = %thread.desk, case = %packet.reference, "case handed to staff");
                let input = Input::Staff(StaffInput::Opened(thread.clone()));
                match self.session.handle(key, input, now).await {
                    Ok(transition)
                        if transition.case.as_ref().and_then(|case| case.staff_thread()) == Some(&thread.id) => {}
                    // The user closed the case while its thread was opening.
                    Ok(_) => self.post(&thread, StaffNote::UserClosed, &packet.reference, Some(user), now).await,
                    Err(error) => tracing::warn!(%error, "recording a case's staff thread failed"),
                }
            }
            Err(error) => {
                metrics().handovers.with_label_values(&[error.desk.as_str(), "unreachable"]).inc();
                tracing::warn!(%error, case = %packet.reference, "handing a case to staff failed; the user is told");
                match self.session.handle(key, Input::Staff(StaffInput::Unreachable), now).await {
                    Ok(transition) => {
                        self.deliver(key, &transition).await;
                    }
                    Err(error) => tracing::warn!(%error, "closing a case no desk took failed"),
                }
            }
        }
    }

    /// Posts what `to_staff` says into the case's thread; closes also reach
    /// the recording desks.
    async fn tell_staff(&self, key: &ConversationKey, to_staff: &ToStaff, user: Option<&UserInfo>, now: i64) {
        let thread = match &to_staff.thread {
            Some(thread) => Some(thread.clone()),
            // Written while the thread was opening: it is known by now.
            None => match self.session.store().get(key).await {
                Ok(Some(stored)) => stored.case.staff.and_then(|staff| staff.thread),
                _ => None,
            },
        };
        let reference = &to_staff.reference;
        if let Some(thread) = &thread {
            self.post(thread, to_staff.note.clone(), reference, user, now).await;
        }
        if matches!(to_staff.note, StaffNote::Message(_)) {
            return;
        }
        for desk in self.desks().iter().filter(|desk| desk.records_all()) {
            if thread.as_ref().is_some_and(|thread| thread.desk == desk.name()) {
                continue;
            }
            let record = StaffThread {
                desk: desk.name().to_owned(),
                id: format!("{}:{reference}", desk.name()),
                place: reference.clone(),
            };
            self.post(&record, to_staff.note.clone(), reference, user, now).await;
        }
    }

    async fn post(&self, thread: &StaffThread, note: StaffNote, reference: &str, user: Option<&UserInfo>, now: i64) {
        let Some(desk) = self.desk(&thread.desk) else {
            tracing::warn!(desk = %thread.desk, "a case's staff desk is not connected; a note was dropped");
            return;
        };
        let relayed = matches!(note, StaffNote::Message(_));
        let note = DeskNote::new(&self.session.flows(), reference, user, note, now);
        match desk.post(thread, &note).await {
            Ok(()) if relayed => metrics().staff_relays.with_label_values(&["to_staff"]).inc(),
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, case = reference, "posting to a staff thread failed"),
        }
    }

    /// Handles a staff member's message in staff thread `thread` (a
    /// [`StaffThread::id`]): relays it to the case's user, closes the case
    /// on `/close`, or answers `/why` in the thread. `receipt` is the platform update's id, so a
    /// redelivered update is relayed once.
    pub async fn staff_message(
        &self,
        thread: &str,
        message: StaffMessage,
        receipt: Option<&str>,
        now: i64,
    ) -> StaffOutcome {
        let found = match self.session.store().find_by_staff_thread(thread).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "looking up a staff thread failed");
                return StaffOutcome::Unsent;
            }
        };
        let Some((key, stored)) = found else { return StaffOutcome::NoCase };
        if is_command(&message.text, "why") {
            // Answered in the thread, from the stored case; nothing changes.
            let explanation = crate::why::explain(&self.session.flows(), &stored.case);
            if let Some(thread) = stored.case.staff.as_ref().and_then(|staff| staff.thread.as_ref()) {
                self.post(thread, StaffNote::Why(explanation), &stored.case.reference(), None, now).await;
            }
            return StaffOutcome::Answered;
        }
        let input = if is_command(&message.text, "close") {
            StaffInput::Close { name: message.name }
        } else {
            StaffInput::Reply { name: message.name, text: message.text }
        };
        let handled = match receipt {
            Some(receipt) => self.session.handle_once(&key, Input::Staff(input), now, receipt).await,
            None => self.session.handle(&key, Input::Staff(input), now).await.map(Some),
        };
        let transition = match handled {
            Ok(Some(transition)) => transition,
            Ok(None) => return StaffOutcome::Answered,
            Err(error) => {
                tracing::warn!(%error, "relaying a staff message failed");
                return StaffOutcome::Unsent;
            }
        };
        if transition.replies.is_empty() {
            return StaffOutcome::NoCase;
        }
        let sent = self.deliver(&key, &transition).await;
        if sent {
            metrics().staff_relays.with_label_values(&["to_user"]).inc();
            if let Some(receipt) = receipt
                && let Err(error) = self.session.confirm_delivery(receipt).await
            {
                tracing::warn!(%error, "recording a staff answer as sent failed");
            }
        }
        if let Some(to_staff) = &transition.to_staff {
            self.tell_staff(&key, to_staff, None, now).await;
        }
        if sent { StaffOutcome::Answered } else { StaffOutcome::Unsent }
    }
}
