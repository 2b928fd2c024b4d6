//! Runs the engine against a store: one message of a conversation at a time,
//! different conversations concurrently. Within a process a lock per
//! conversation key serialises messages; across processes the store's
//! compare-and-set does, and a lost race is simply replayed against the new
//! state, which is safe because the engine is pure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::case::ConversationKey;
use crate::command::Command;
use crate::engine::{self, Diagnosed, EngineConfig, Input, Transition};
use crate::flood::{Allowance, Flood, RateLimit};
use crate::flow::Flows;
use crate::lang::Lang;
use crate::metrics::metrics;
use crate::store::{Change, Purge, Purged, Receipt, Store, StoreError};

/// How often a message is replayed after losing a compare-and-set race
/// before the session gives up.
const MAX_ATTEMPTS: usize = 16;
/// How long update receipts are kept: Telegram keeps an update for redelivery
/// for at most a day.
const RECEIPT_WINDOW: i64 = 24 * 60 * 60;
/// Seconds after which a quiet person's rate-limit state is dropped.
const QUIET_AFTER: u64 = 600;
/// Idle cases the sweep reads from the store at a time.
const IDLE_BATCH: usize = 500;
/// Batches one sweep goes through at most; the next sweep takes the rest.
const IDLE_ROUNDS: usize = 100;

/// Why a message could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Other instances kept changing the case; the message was not applied.
    #[error("the case kept changing under {MAX_ATTEMPTS} attempts; the message was not applied")]
    Contended,
}

/// The conversation runner shared by every front-end.
#[derive(Debug)]
pub struct Session<S> {
    store: S,
    flows: RwLock<Arc<Flows>>,
    config: EngineConfig,
    locks: KeyLocks,
    /// Per-person rate limiting, when configured.
    flood: Option<Flood>,
}

impl<S: Store> Session<S> {
    /// A session over `store` with `flows`.
    pub fn new(store: S, flows: Arc<Flows>, config: EngineConfig) -> Session<S> {
        Session { store, flows: RwLock::new(flows), config, locks: KeyLocks::default(), flood: None }
    }

    /// Limits how fast each person may write: past `limit`, one notice, then
    /// their messages are dropped unanswered until they may write again.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Session<S> {
        self.flood = Some(Flood::new(limit));
        self
    }

    /// The flows in use now.
    pub fn flows(&self) -> Arc<Flows> {
        self.flows.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Replaces the flows; messages already being handled finish on the old ones.
    pub fn replace_flows(&self, flows: Arc<Flows>) {
        *self.flows.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = flows;
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The engine settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Handles one input of conversation `key` at time `now` (Unix seconds)
    /// and returns what to send. The new state is committed before this
    /// returns, so a reply is only ever sent for a stored step.
    pub async fn handle(&self, key: &ConversationKey, input: Input, now: i64) -> Result<Transition, SessionError> {
        self.run(key, input, now, None, None).await
    }

    /// Like [`Session::handle`], with the language the platform says the
    /// user's app is set to; a new case opens in it.
    pub async fn handle_in(
        &self,
        key: &ConversationKey,
        input: Input,
        now: i64,
        hint: Option<Lang>,
    ) -> Result<Transition, SessionError> {
        self.run(key, input, now, None, hint).await
    }

    /// Like [`Session::handle`] for a platform update with a unique id.
    /// Returns `None` when that update was handled and answered before (a
    /// redelivery after a crash or a webhook retry), which must then not be
    /// answered again. When it was handled but its answer never confirmed
    /// sent ([`Session::confirm_delivery`]), the same transition is returned
    /// again, so an answer lost to a crash is sent on redelivery.
    pub async fn handle_once(
        &self,
        key: &ConversationKey,
        input: Input,
        now: i64,
        update_id: &str,
    ) -> Result<Option<Transition>, SessionError> {
        self.handle_once_in(key, input, now, update_id, None).await
    }

    /// Like [`Session::handle_once`], with the platform's language hint.
    pub async fn handle_once_in(
        &self,
        key: &ConversationKey,
        input: Input,
        now: i64,
        update_id: &str,
        hint: Option<Lang>,
    ) -> Result<Option<Transition>, SessionError> {
        match self.run(key, input, now, Some(update_id), hint).await {
            Ok(transition) => Ok(Some(transition)),
            Err(SessionError::Store(StoreError::Duplicate)) => {
                let Some(delivery) = self.store.pending_delivery(update_id).await? else { return Ok(None) };
                let transition = serde_json::from_str(&delivery).map_err(|error| StoreError::Corrupt {
                    key: update_id.to_owned(),
                    reason: format!("unreadable pending delivery: {error}"),
                })?;
                Ok(Some(transition))
            }
            Err(error) => Err(error),
        }
    }

    /// Records that the answer to update `update_id` was sent; a later
    /// redelivery of it is then ignored.
    pub async fn confirm_delivery(&self, update_id: &str) -> Result<(), StoreError> {
        self.store.confirm_delivery(update_id).await
    }

    /// Handles the input and counts it, and what came of it, in the metrics.
    async fn run(
        &self,
        key: &ConversationKey,
        input: Input,
        now: i64,
        update_id: Option<&str>,
        hint: Option<Lang>,
    ) -> Result<Transition, SessionError> {
        let metrics = metrics();
        // What staff do about a case is neither the user's message nor
        // counted against the user's rate.
        let from_user = !matches!(input, Input::Staff(_));
        if from_user {
            metrics.messages_received.with_label_values(&[key.platform.as_str()]).inc();
        }
        let allowance = match &self.flood {
            Some(flood) if from_user => flood.check(&key.platform, &key.user),
            _ => Allowance::Pass,
        };
        if allowance != Allowance::Pass {
            metrics.rate_limited.with_label_values(&[key.platform.as_str()]).inc();
            return Ok(match allowance {
                Allowance::Notice => {
                    Transition::message(self.flows().bot_in(hint.unwrap_or_default()).messages.slow_down.render())
                }
                _ => Transition::silence(),
            });
        }
        let result = self.apply(key, input, now, update_id, hint).await;
        match &result {
            Ok(transition) => {
                match &transition.diagnosis {
                    Some(Diagnosed::Symptom(symptom)) => metrics.diagnoses.with_label_values(&[symptom.as_str()]).inc(),
                    Some(Diagnosed::Unknown) => metrics.diagnoses.with_label_values(&["none"]).inc(),
                    Some(Diagnosed::Unsure(_)) => metrics.clarifying_questions.inc(),
                    None => {}
                }
                metrics.count_outcomes(&transition.outcomes);
            }
            Err(SessionError::Store(StoreError::Duplicate)) => {}
            Err(_) => metrics.store_errors.inc(),
        }
        result
    }

    async fn apply(
        &self,
        key: &ConversationKey,
        input: Input,
        now: i64,
        update_id: Option<&str>,
        hint: Option<Lang>,
    ) -> Result<Transition, SessionError> {
        let lock = self.locks.get(key);
        let _guard = lock.lock().await;
        let flows = self.flows();
        // Read as the engine reads it: a `/forget` the engine obeys is one
        // whose traces were deleted.
        if input.command() == Some(Command::Forget) {
            // Deleted first, then confirmed: the confirmation never claims
            // more than happened. Nothing is written afterwards.
            self.store.forget(&key.platform, &key.user, key.subject()).await?;
            return Ok(engine::handle_in(&flows, &self.config, key, None, input, now, hint));
        }
        for _ in 0..MAX_ATTEMPTS {
            let stored = self.store.get(key).await?;
            let (case, expected) = match stored {
                Some(stored) => (Some(stored.case), Some(stored.version)),
                None => (None, None),
            };
            let transition = engine::handle_in(&flows, &self.config, key, case, input.clone(), now, hint);
            // An unchanged case needs no write, unless the receipt must be kept.
            if !transition.changed && update_id.is_none() {
                return Ok(transition);
            }
            let delivery = match update_id {
                Some(_) => serde_json::to_string(&transition).map_err(|error| StoreError::Backend(Box::new(error)))?,
                None => String::new(),
            };
            let receipt =
                update_id.map(|id| Receipt { id, at: now, subject: key.subject(), delivery: delivery.as_str() });
            let change = Change { expected, case: transition.case.as_ref(), outcomes: &transition.outcomes, receipt };
            match self.store.commit(key, change).await {
                Ok(()) => return Ok(transition),
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(SessionError::Contended)
    }

    /// The idle sweep at `now`: every case idle past the timeout that no
    /// message has closed yet is recorded as abandoned at its step and
    /// marked expired ([`engine::expire`]), so people who never come back
    /// count in the statistics. The case itself stays until the person's
    /// next message closes it and says so, or retention removes it. Returns
    /// how many cases were closed.
    pub async fn close_idle(&self, now: i64) -> Result<u64, SessionError> {
        let metrics = metrics();
        let mut closed = 0;
        for _ in 0..IDLE_ROUNDS {
            let idle = self.store.idle_cases(now - self.config.idle_timeout, IDLE_BATCH).await?;
            let more = idle.len() == IDLE_BATCH;
            for (key, stored) in idle {
                let lock = self.locks.get(&key);
                let _guard = lock.lock().await;
                let transition = engine::expire(&self.flows(), &self.config, &key, stored.case, now);
                if !transition.changed {
                    continue;
                }
                let change = Change {
                    expected: Some(stored.version),
                    case: transition.case.as_ref(),
                    outcomes: &transition.outcomes,
                    receipt: None,
                };
                match self.store.commit(&key, change).await {
                    Ok(()) => {
                        metrics.count_outcomes(&transition.outcomes);
                        closed += 1;
                    }
                    // A message (or another instance's sweep) got there first:
                    // the case is either active again or closed already.
                    Err(StoreError::Conflict) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            if !more {
                break;
            }
        }
        Ok(closed)
    }

    /// The retention sweep at `now`: removes cases untouched and outcome
    /// records older than `retention` seconds, and receipts older than a
    /// day (when no platform delivers an update again). Idle cases are not
    /// removed at the idle timeout: [`Session::close_idle`] records them,
    /// and the person's next message closes such a case and says so.
    pub async fn purge(&self, now: i64, retention: i64) -> Result<Purged, StoreError> {
        if let Some(flood) = &self.flood {
            flood.forget_quiet(std::time::Duration::from_secs(QUIET_AFTER));
        }
        let cut = now - retention;
        self.store.purge(Purge { cases_before: cut, receipts_before: now - RECEIPT_WINDOW, outcomes_before: cut }).await
    }
}

/// One async mutex per conversation key that has a message in flight.
/// Entries are weak, so idle conversations cost nothing; dead entries are
/// swept as the map grows.
#[derive(Debug, Default)]
pub(crate) struct KeyLocks {
    map: Mutex<HashMap<ConversationKey, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    pub(crate) fn get(&self, key: &ConversationKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A conversation's next message usually finds its entry dead (the
        // last message's lock is gone): the entry is reused, without copying
        // the key again.
        if let Some(entry) = map.get_mut(key) {
            return entry.upgrade().unwrap_or_else(|| {
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                *entry = Arc::downgrade(&lock);
                lock
            });
        }
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, lock| lock.strong_count() > 0);
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.clone(), Arc::downgrade(&lock));
        lock
    }
}
