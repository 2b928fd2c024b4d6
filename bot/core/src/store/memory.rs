//! An in-process store for tests and for `fixbot chat` without a database.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Change, Purge, Purged, Store, StoreError, Stored};
use crate::case::{ConversationKey, OutcomeRecord};

/// Keeps cases in a hash map; everything is lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cases: HashMap<ConversationKey, Stored>,
    outcomes: Vec<OutcomeRecord>,
    receipts: HashMap<String, MemoryReceipt>,
    meta: HashMap<String, String>,
}

/// A receipt: when, whose, and the delivery not yet confirmed sent.
#[derive(Debug)]
struct MemoryReceipt {
    at: i64,
    subject: u64,
    delivery: Option<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, still consistent.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &ConversationKey) -> Result<Option<Stored>, StoreError> {
        Ok(self.lock().cases.get(key).cloned())
    }

    async fn commit(&self, key: &ConversationKey, change: Change<'_>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let current = inner.cases.get(key).map(|stored| stored.version);
        if current != change.expected {
            return Err(StoreError::Conflict);
        }
        if let Some(receipt) = change.receipt {
            if inner.receipts.contains_key(receipt.id) {
                return Err(StoreError::Duplicate);
            }
            let stored =
                MemoryReceipt { at: receipt.at, subject: receipt.subject, delivery: Some(receipt.delivery.to_owned()) };
            inner.receipts.insert(receipt.id.to_owned(), stored);
        }
        match (change.case, inner.cases.get_mut(key)) {
            // Replaced in place: the key is neither copied nor hashed again.
            (Some(case), Some(stored)) => {
                stored.case.clone_from(case);
                stored.version += 1;
            }
            (Some(case), None) => {
                inner.cases.insert(key.clone(), Stored { case: case.clone(), version: 1 });
            }
            (None, _) => {
                inner.cases.remove(key);
            }
        }
        inner.outcomes.extend_from_slice(change.outcomes);
        Ok(())
    }

    async fn pending_delivery(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().receipts.get(id).and_then(|receipt| receipt.delivery.clone()))
    }

    async fn confirm_delivery(&self, id: &str) -> Result<(), StoreError> {
        if let Some(receipt) = self.lock().receipts.get_mut(id) {
            receipt.delivery = None;
        }
        Ok(())
    }

    async fn purge(&self, purge: Purge) -> Result<Purged, StoreError> {
        let mut inner = self.lock();
        let (cases, receipts, outcomes) = (inner.cases.len(), inner.receipts.len(), inner.outcomes.len());
        inner.cases.retain(|_, stored| stored.case.updated_at >= purge.cases_before);
        inner.receipts.retain(|_, receipt| receipt.at >= purge.receipts_before);
        inner.outcomes.retain(|record| record.at >= purge.outcomes_before);
        Ok(Purged {
            cases: (cases - inner.cases.len()) as u64,
            receipts: (receipts - inner.receipts.len()) as u64,
            outcomes: (outcomes - inner.outcomes.len()) as u64,
        })
    }

    async fn forget(&self, platform: &str, user: &str, subject: u64) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let count = |inner: &Inner| inner.cases.len() + inner.outcomes.len() + inner.receipts.len();
        let before = count(&inner);
        inner.cases.retain(|key, _| !(key.platform == platform && key.user == user));
        inner.outcomes.retain(|record| record.subject != subject);
        inner.receipts.retain(|_, receipt| receipt.subject != subject);
        Ok((before - count(&inner)) as u64)
    }

    async fn meta_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        Ok(self.lock().meta.entry(name.to_owned()).or_insert_with(|| value.to_owned()).clone())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn outcomes(&self, since: i64) -> Result<Vec<OutcomeRecord>, StoreError> {
        Ok(self.lock().outcomes.iter().filter(|record| record.at >= since).cloned().collect())
    }

    async fn idle_cases(&self, before: i64, limit: usize) -> Result<Vec<(ConversationKey, Stored)>, StoreError> {
        let mut idle: Vec<(ConversationKey, Stored)> = self
            .lock()
            .cases
            .iter()
            .filter(|(_, stored)| stored.case.updated_at < before && !stored.case.expired)
            .map(|(key, stored)| (key.clone(), stored.clone()))
            .collect();
        idle.sort_by(|(a_key, a), (b_key, b)| (a.case.updated_at, a_key).cmp(&(b.case.updated_at, b_key)));
        idle.truncate(limit);
        Ok(idle)
    }

    async fn find_by_staff_thread(&self, thread: &str) -> Result<Option<(ConversationKey, Stored)>, StoreError> {
        let inner = self.lock();
        let found = inner.cases.iter().find(|(_, stored)| stored.case.staff_thread() == Some(thread));
        Ok(found.map(|(key, stored)| (key.clone(), stored.clone())))
    }
}
