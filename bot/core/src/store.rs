//! Where cases live between messages. The `Store` trait is what the session
//! needs: read a case with its version, and commit the next state together
//! with its outcome records, compare-and-set on that version, so two
//! instances can never both advance one case.

mod memory;

use std::future::Future;

pub use memory::MemoryStore;

use crate::case::{Case, ConversationKey, OutcomeRecord};

/// A case as stored, with the version a commit must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The case.
    pub case: Case,
    /// Bumped by every commit; compare-and-set checks it.
    pub version: u64,
}

/// Everything one handled message writes, committed together or not at all.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The version read; `None` when no case was stored.
    pub expected: Option<u64>,
    /// The case to store, or `None` to remove it.
    pub case: Option<&'a Case>,
    /// Records to append to the outcome log.
    pub outcomes: &'a [OutcomeRecord],
    /// An id of the platform's update (e.g. `telegram:1234`): the change is
    /// refused as a duplicate when this id was committed before, so an update
    /// delivered twice is applied once.
    pub receipt: Option<Receipt<'a>>,
}

/// The platform id of an incoming update, when it was handled, and what is
/// still to be sent for it.
#[derive(Debug, Clone, Copy)]
pub struct Receipt<'a> {
    /// Unique per update, e.g. `telegram:1234`.
    pub id: &'a str,
    /// Unix seconds; the retention sweep removes receipts a day old, when
    /// no platform delivers the update again.
    pub at: i64,
    /// Who sent the update ([`ConversationKey::subject`]), so `/forget`
    /// can remove the delivery below.
    pub subject: u64,
    /// The transition to send, serialised, kept until the front-end
    /// confirms it was sent: a redelivery of an update whose answer was
    /// lost (the process died between commit and send) is answered then.
    pub delivery: &'a str,
}

/// The cut-offs of a retention sweep, in Unix seconds: everything last
/// touched before them goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purge {
    /// Cases not updated since then.
    pub cases_before: i64,
    /// Receipts of updates handled before then.
    pub receipts_before: i64,
    /// Outcome records from before then.
    pub outcomes_before: i64,
}

/// How many rows a retention sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Cases.
    pub cases: u64,
    /// Receipts.
    pub receipts: u64,
    /// Outcome records.
    pub outcomes: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The case changed since it was read; read it again and retry.
    #[error("the case was changed by another message; retry against the new state")]
    Conflict,
    /// The update's receipt was committed before: it was already handled.
    #[error("this update was already handled")]
    Duplicate,
    /// A stored case could not be read back (written by an incompatible version).
    #[error("stored case for {key} is unreadable: {reason}")]
    Corrupt {
        /// The conversation.
        key: String,
        /// What failed.
        reason: String,
    },
    /// The backend failed (I/O, connection, SQL).
    #[error("store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Persistent (or not) storage of cases and the outcome log.
///
/// Implementations must make `commit` atomic: the case change, the outcome
/// records and the receipt are stored together or not at all, so a crash at
/// any point loses no acknowledged step and never applies an update twice.
pub trait Store: Send + Sync {
    /// The case of `key` and its version, if one is open.
    fn get(&self, key: &ConversationKey) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send;

    /// Applies `change` if the stored version is still `change.expected`
    /// (`None`: no case stored) and its receipt is new. Fails with
    /// [`StoreError::Conflict`] or [`StoreError::Duplicate`] otherwise,
    /// changing nothing.
    fn commit(&self, key: &ConversationKey, change: Change<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The delivery of receipt `id` if it was committed and its sending was
    /// not yet confirmed with [`Store::confirm_delivery`].
    fn pending_delivery(&self, id: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Records that the answer to receipt `id` was sent, dropping its
    /// delivery: a later redelivery of that update is then ignored.
    fn confirm_delivery(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes what a retention sweep removes: cases not updated since
    /// `cases_before`, receipts older than `receipts_before` and outcome
    /// records older than `outcomes_before` (Unix seconds). Returns how many
    /// of each went.
    fn purge(&self, purge: Purge) -> impl Future<Output = Result<Purged, StoreError>> + Send;

    /// The value stored under `name`, storing `value` first when there is
    /// none. Instances sharing a store thereby agree on one value (e.g. the
    /// button secret) and keep it across restarts.
    fn meta_or_insert(&self, name: &str, value: &str) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Deletes every trace of a person: their cases in every chat of
    /// `platform`, and the outcome records and receipts of `subject`
    /// ([`ConversationKey::subject`]). Returns how many rows went.
    fn forget(&self, platform: &str, user: &str, subject: u64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Checks the store answers, for readiness probes.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Outcome records at or after `since`, oldest first.
    fn outcomes(&self, since: i64) -> impl Future<Output = Result<Vec<OutcomeRecord>, StoreError>> + Send;

    /// Up to `limit` cases not updated since `before` (Unix seconds) that
    /// the idle sweep has not closed yet ([`Case::expired`] unset), with
    /// their keys, least recently updated first.
    ///
    /// [`Case::expired`]: crate::case::Case::expired
    fn idle_cases(
        &self,
        before: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(ConversationKey, Stored)>, StoreError>> + Send;
    /// The case answered in staff thread `thread` ([`Case::staff_thread`]),
    /// with its conversation: how a staff member's message finds the case
    /// it is about, on whichever instance it arrives.
    fn find_by_staff_thread(
        &self,
        thread: &str,
    ) -> impl Future<Output = Result<Option<(ConversationKey, Stored)>, StoreError>> + Send;
}
