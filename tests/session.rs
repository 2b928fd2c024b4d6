//! The session over a store: messages of one conversation are applied one
//! at a time and against the latest state, also when another writer races.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fixbot_core::case::{ConversationKey, OutcomeRecord};
use fixbot_core::engine::{EngineConfig, Input};
use fixbot_core::session::Session;
use fixbot_core::store::{Change, MemoryStore, Purge, Purged, Store, StoreError, Stored};

use crate::support::shipped_flows;

/// A store that loses the first `conflicts` commits, as if another instance
/// had written in between.
struct Racing {
    inner: MemoryStore,
    conflicts: AtomicUsize,
}

impl Store for Racing {
    async fn get(&self, key: &ConversationKey) -> Result<Option<Stored>, StoreError> {
        self.inner.get(key).await
    }
    async fn commit(&self, key: &ConversationKey, change: Change<'_>) -> Result<(), StoreError> {
        if self.conflicts.load(Ordering::SeqCst) > 0 {
            self.conflicts.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::Conflict);
        }
        self.inner.commit(key, change).await
    }
    async fn purge(&self, purge: Purge) -> Result<Purged, StoreError> {
        self.inner.purge(purge).await
    }
    async fn outcomes(&self, since: i64) -> Result<Vec<OutcomeRecord>, StoreError> {
        self.inner.outcomes(since).await
    }
    async fn meta_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        self.inner.meta_or_insert(name, value).await
    }
    async fn forget(&self, platform: &str, user: &str, subject: u64) -> Result<u64, StoreError> {
        self.inner.forget(platform, user, subject).await
    }
    async fn pending_delivery(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.inner.pending_delivery(id).await
    }
    async fn confirm_delivery(&self, id: &str) -> Result<(), StoreError> {
        self.inner.confirm_delivery(id).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn idle_cases(&self, before: i64, limit: usize) -> Result<Vec<(ConversationKey, Stored)>, StoreError> {
        self.inner.idle_cases(before, limit).await
    }

    async fn find_by_staff_thread(&self, thread: &str) -> Result<Option<(ConversationKey, Stored)>, StoreError> {
        self.inner.find_by_staff_thread(thread).await
    }
}

#[tokio::test]
async fn a_lost_race_is_replayed_against_the_new_state() {
    let store = Racing { inner: MemoryStore::new(), conflicts: AtomicUsize::new(3) };
    let session = Session::new(store, shipped_flows(), EngineConfig::default());
    let key = ConversationKey::new("test", "c", "", "ann");
    let transition = session.handle(&key, Input::Text("Not enough iCloud storage".into()), 100).await.unwrap();
    assert!(transition.case.is_some());
    assert_eq!(session.store().inner.get(&key).await.unwrap().unwrap().case, transition.case.unwrap());

    let store = Racing { inner: MemoryStore::new(), conflicts: AtomicUsize::new(usize::MAX) };
    let session = Session::new(store, shipped_flows(), EngineConfig::default());
    let error = session.handle(&key, Input::Text("Not enough iCloud storage".into()), 100).await.unwrap_err();
    assert!(error.to_string().contains("kept changing"), "{error}");
}

#[tokio::test]
async fn a_redelivered_update_is_applied_once_and_answered_until_confirmed() {
    let session = Session::new(MemoryStore::new(), shipped_flows(), EngineConfig::default());
    let key = ConversationKey::new("telegram", "1", "", "1");
    let paste = || Input::Text("Not enough iCloud storage on my iPhone".into());
    let first = session.handle_once(&key, paste(), 100, "telegram:7").await.unwrap().expect("a new update is answered");
    let stored = session.store().get(&key).await.unwrap().unwrap();
    // The process died before the answer went out: the redelivery gets the
    // same answer, and the case does not move again.
    let again = session.handle_once(&key, paste(), 101, "telegram:7").await.unwrap();
    assert_eq!(again.as_ref(), Some(&first), "an unconfirmed answer is given again, unchanged");
    assert_eq!(session.store().get(&key).await.unwrap().unwrap(), stored);
    // Once the answer is confirmed sent, a redelivery is ignored.
    session.confirm_delivery("telegram:7").await.unwrap();
    assert!(session.handle_once(&key, paste(), 102, "telegram:7").await.unwrap().is_none());
    assert_eq!(session.store().get(&key).await.unwrap().unwrap(), stored);
    // A read-only message with a receipt is also answered once.
    assert!(session.handle_once(&key, Input::Text("help".into()), 102, "telegram:8").await.unwrap().is_some());
    session.confirm_delivery("telegram:8").await.unwrap();
    assert!(session.handle_once(&key, Input::Text("help".into()), 103, "telegram:8").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_messages_of_one_user_are_applied_one_after_another() {
    let flows = shipped_flows();
    let session = Arc::new(Session::new(MemoryStore::new(), flows.clone(), EngineConfig::default()));
    let key = ConversationKey::new("test", "c", "", "ann");
    session.handle(&key, Input::Text("iPhone: Not enough iCloud storage".into()), 100).await.unwrap();

    // Twenty "skip"s at once. Applied one after another, each skips the next
    // step; applied to the same state twice, one step would be skipped twice.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (session, key) = (session.clone(), key.clone());
            tokio::spawn(async move { session.handle(&key, Input::Text("skip".into()), 200).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    crate::support::assert_skips_applied_in_turn(session.store(), &flows, 20).await;
}

/// The idle sweep records every case idle past the timeout as abandoned at
/// its step, once, and leaves active cases alone; the person's next message
/// is told the case expired and records nothing more.
async fn idle_cases_are_recorded_as_abandoned_once(store: impl Store) {
    use fixbot_core::case::Outcome;
    let config = EngineConfig { idle_timeout: 3600, ..EngineConfig::default() };
    let session = Session::new(store, shipped_flows(), config);
    let (ann, bob) =
        (ConversationKey::new("telegram", "1", "", "ann"), ConversationKey::new("telegram", "2", "", "bob"));
    session.handle(&ann, Input::Text("iPhone: Not enough iCloud storage".into()), 1000).await.unwrap();
    session.handle(&ann, Input::Text("skip".into()), 1010).await.unwrap();
    session.handle(&bob, Input::Text("iPhone: Not enough iCloud storage".into()), 4000).await.unwrap();

    assert_eq!(session.close_idle(4610).await.unwrap(), 0, "nobody idle for an hour yet");
    assert_eq!(session.close_idle(4611).await.unwrap(), 1, "ann is");
    assert_eq!(session.close_idle(5000).await.unwrap(), 0, "and closed once");
    let records = session.store().outcomes(0).await.unwrap();
    let summary: Vec<_> = records.iter().map(|r| (r.step.as_str(), r.outcome, r.at, r.subject)).collect();
    assert_eq!(
        summary,
        [
            ("compare_space", Outcome::Skipped, 1010, ann.subject()),
            ("delete_old_backups", Outcome::Abandoned, 4611, ann.subject())
        ]
    );
    assert!(session.store().get(&ann).await.unwrap().unwrap().case.expired, "the case stays, marked");

    let reply = session.handle(&ann, Input::Text("hello again".into()), 5010).await.unwrap();
    assert!(reply.replies[0].to_plain().contains("idle for a while"), "{:?}", reply.replies);
    assert_eq!(session.store().outcomes(0).await.unwrap().len(), 2, "nothing recorded twice");
    assert!(session.store().get(&bob).await.unwrap().is_some_and(|stored| !stored.case.expired));
}

#[tokio::test]
async fn idle_cases_are_recorded_as_abandoned_once_in_memory() {
    idle_cases_are_recorded_as_abandoned_once(MemoryStore::new()).await;
}

#[tokio::test]
async fn idle_cases_are_recorded_as_abandoned_once_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    idle_cases_are_recorded_as_abandoned_once(fixbot_store::SqliteStore::open(&dir.path().join("i.db")).await.unwrap())
        .await;
}

#[tokio::test]
async fn idle_cases_are_recorded_as_abandoned_once_in_postgres() {
    let Some(url) = crate::store_contract::postgres_url() else { return };
    let schema = crate::store_contract::TestSchema::new(&url);
    let store = fixbot_store::PostgresStore::open_in_schema(&url, Some(&schema.name)).await.unwrap();
    idle_cases_are_recorded_as_abandoned_once(store).await;
}

/// `/forget` deletes every case of the person (in any chat) and their outcome
/// history, and writes nothing new; others' data stays. Issue 5.
async fn forget_leaves_no_row_behind(store: impl Store) {
    let session = Session::new(store, shipped_flows(), EngineConfig::default());
    let ann_here = ConversationKey::new("telegram", "-100", "", "ann");
    let ann_there = ConversationKey::new("telegram", "7", "", "ann");
    let bob = ConversationKey::new("telegram", "-100", "", "bob");
    for key in [&ann_here, &ann_there, &bob] {
        // Updates with receipts whose answers are still pending hold what the
        // person wrote, so they must go too.
        let update = format!("telegram:{}:{}", key.chat, key.user);
        session.handle_once(key, Input::Text("iPhone: Not enough iCloud storage".into()), 100, &update).await.unwrap();
        session.handle(key, Input::Text("skip".into()), 110).await.unwrap();
    }
    let reply = session.handle(&ann_here, Input::Text("/forget".into()), 120).await.unwrap();
    assert!(reply.replies[0].to_plain().contains("deleted everything"), "{:?}", reply.replies);
    let store = session.store();
    assert!(store.get(&ann_here).await.unwrap().is_none());
    assert!(store.get(&ann_there).await.unwrap().is_none(), "every chat of the person");
    assert!(store.get(&bob).await.unwrap().is_some(), "others keep theirs");
    let outcomes = store.outcomes(0).await.unwrap();
    assert!(outcomes.iter().all(|record| record.subject != ann_here.subject()), "no outcome of ann is left");
    assert!(outcomes.iter().any(|record| record.subject == bob.subject()));
    assert_eq!(store.pending_delivery("telegram:-100:ann").await.unwrap(), None, "no pending answer of ann is left");
    assert_eq!(store.pending_delivery("telegram:7:ann").await.unwrap(), None);
    assert!(store.pending_delivery("telegram:-100:bob").await.unwrap().is_some(), "bob's stays");
}

/// A `/forget` behind an invisible or control character is obeyed by the
/// engine, which cleans text first; the session once read the raw text, so the
/// person was told everything was deleted while their case stayed. Issue 7,
/// found by `properties::every_conversation_keeps_the_invariants`.
#[tokio::test]
async fn forget_behind_an_invisible_character_deletes_too() {
    let session = Session::new(MemoryStore::new(), shipped_flows(), EngineConfig::default());
    for (index, text) in ["\u{200B}/forget", "\u{202E}/forget", "\u{7}/forget", "\u{FEFF} /forget"].iter().enumerate() {
        let key = ConversationKey::new("telegram", "7", "", &format!("user{index}"));
        session.handle(&key, Input::Text("iPhone: Not enough iCloud storage".into()), 100).await.unwrap();
        session.handle(&key, Input::Text("skip".into()), 110).await.unwrap();
        let reply = session.handle(&key, Input::Text((*text).into()), 120).await.unwrap();
        assert!(reply.replies[0].to_plain().contains("deleted everything"), "{text:?}: {:?}", reply.replies);
        assert!(session.store().get(&key).await.unwrap().is_none(), "{text:?} left the case");
        let outcomes = session.store().outcomes(0).await.unwrap();
        assert!(outcomes.iter().all(|record| record.subject != key.subject()), "{text:?} left outcomes");
    }
}

#[tokio::test]
async fn forget_leaves_no_row_behind_in_memory() {
    forget_leaves_no_row_behind(MemoryStore::new()).await;
}

#[tokio::test]
async fn forget_leaves_no_row_behind_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    forget_leaves_no_row_behind(fixbot_store::SqliteStore::open(&dir.path().join("f.db")).await.unwrap()).await;
}

#[tokio::test]
async fn forget_leaves_no_row_behind_in_postgres() {
    let Some(url) = crate::store_contract::postgres_url() else { return };
    let schema = crate::store_contract::TestSchema::new(&url);
    forget_leaves_no_row_behind(fixbot_store::PostgresStore::open_in_schema(&url, Some(&schema.name)).await.unwrap())
        .await;
}
