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

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The case changed since it was read; read it again and retry.
    #[error("the case was changed by another message; retry against the new state")]
    Conflict,
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
/// Implementations must make `commit` atomic: the case change and the outcome
/// records are stored together or not at all, so a crash at any point loses
/// no acknowledged step and never records a step twice.
pub trait Store: Send + Sync {
    /// The case of `key` and its version, if one is open.
    fn get(&self, key: &ConversationKey) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send;

    /// Stores `case` (or removes the case when `None`) and appends `outcomes`,
    /// if the stored version is still `expected` (`None`: no case stored).
    /// Fails with [`StoreError::Conflict`] otherwise, changing nothing.
    fn commit(
        &self,
        key: &ConversationKey,
        expected: Option<u64>,
        case: Option<&Case>,
        outcomes: &[OutcomeRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes cases not updated since `before` (Unix seconds); returns how many.
    fn expire(&self, before: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Outcome records at or after `since`, oldest first.
    fn outcomes(&self, since: i64) -> impl Future<Output = Result<Vec<OutcomeRecord>, StoreError>> + Send;
}
