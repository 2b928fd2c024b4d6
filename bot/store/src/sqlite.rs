//! `SqliteStore`: cases and the outcome log in one SQLite file, in WAL mode
//! with full sync, so a case survives a crash or `kill -9` at any point.
//! Changes go through one writer that commits them in groups (`writer.rs`);
//! cases are cached, so most messages read nothing.

mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fixbot_core::case::{Case, ConversationKey, OutcomeRecord};
use fixbot_core::store::{Change, Purge, Purged, Store, StoreError, Stored};

use crate::rows::{backend, keyed_case, outcome_record};
use sqlx::Row as _;
use sqlx::Sqlite;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::mpsc;
use writer::{Commit, Job};

/// The schema, one migration per entry, applied in order at open. Never
/// edit an entry that has shipped; add a new one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE cases (
        platform   TEXT    NOT NULL,
        chat       TEXT    NOT NULL,
        thread     TEXT    NOT NULL,
        user       TEXT    NOT NULL,
        version    INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        state      TEXT    NOT NULL,
        PRIMARY KEY (platform, chat, thread, user)
    );
    CREATE INDEX cases_updated_at ON cases (updated_at);
    CREATE TABLE outcomes (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL,
        at      INTEGER NOT NULL,
        symptom TEXT    NOT NULL,
        flow    TEXT    NOT NULL,
        step    TEXT    NOT NULL,
        outcome TEXT    NOT NULL
    );
    CREATE INDEX outcomes_at ON outcomes (at);",
    "CREATE TABLE receipts (
        id TEXT    PRIMARY KEY,
        at INTEGER NOT NULL
    );
    CREATE INDEX receipts_at ON receipts (at);
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // Who an outcome is about (pseudonymous), so /forget can delete it.
    "ALTER TABLE outcomes ADD COLUMN subject INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outcomes_subject ON outcomes (subject);",
    // Whose update a receipt is, and its answer until that is confirmed sent.
    "ALTER TABLE receipts ADD COLUMN subject INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE receipts ADD COLUMN delivery TEXT;
    CREATE INDEX receipts_subject ON receipts (subject);",
    // The staff thread a case handed to a person is answered in, so a
    // staff member's message finds its case.
    "ALTER TABLE cases ADD COLUMN staff_thread TEXT;
    CREATE INDEX cases_staff_thread ON cases (staff_thread) WHERE staff_thread IS NOT NULL;",
];

/// Cases cached at most; past it the cache starts over.
const MAX_CACHED: usize = 100_000;

/// Cases and outcomes in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads, and the writes outside cases (meta, forget, purge).
    pool: SqlitePool,
    /// Case changes and delivery confirmations, committed in groups.
    writer: mpsc::UnboundedSender<Job>,
    /// Cases as last read or written here, with their versions: most
    /// messages then need no read. A case changed by another process is
    /// caught by compare-and-set, and read again.
    cache: Arc<Mutex<HashMap<ConversationKey, Stored>>>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(backend)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(backend)?;
        migrate(&pool).await?;
        let (writer, jobs) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(pool.acquire().await.map_err(backend)?, jobs));
        Ok(SqliteStore { pool, writer, cache: Arc::default() })
    }

    /// Finishes the writes queued, then closes the connections once the
    /// operations in flight are done.
    pub async fn close(&self) {
        let _ = self.writer.send(Job::Stop);
        self.pool.close().await;
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationKey, Stored>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Brings the schema up to date.
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    let applied: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(backend)?;
    if applied as usize > MIGRATIONS.len() {
        return Err(StoreError::Corrupt {
            key: "schema".to_owned(),
            reason: format!("the database has schema version {applied}, newer than this fixbot knows"),
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        sqlx::raw_sql(*migration).execute(&mut *tx).await.map_err(backend)?;
        sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
            .bind(index as i64 + 1)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}

/// A query on one conversation's row: `?1`..`?4` are the key columns, so
/// every statement binds the key the same way and further values follow.
fn keyed<'q>(sql: &'static str, key: &'q ConversationKey) -> Query<'q, Sqlite, SqliteArguments> {
    sqlx::query(sql).bind(&key.platform).bind(&key.chat).bind(&key.thread).bind(&key.user)
}

impl Store for SqliteStore {
    async fn get(&self, key: &ConversationKey) -> Result<Option<Stored>, StoreError> {
        if let Some(stored) = self.cache().get(key) {
            return Ok(Some(stored.clone()));
        }
        let row = keyed(
            "SELECT version, state FROM cases WHERE platform = ?1 AND chat = ?2 AND thread = ?3 AND user = ?4",
            key,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let version: i64 = row.try_get("version").map_err(backend)?;
        let state: String = row.try_get("state").map_err(backend)?;
        let case: Case = serde_json::from_str(&state)
            .map_err(|error| StoreError::Corrupt { key: key.to_string(), reason: error.to_string() })?;
        let stored = Stored { case, version: version as u64 };
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key.clone(), stored.clone());
        Ok(Some(stored))
    }

    async fn commit(&self, key: &ConversationKey, change: Change<'_>) -> Result<(), StoreError> {
        let Change { expected, case, outcomes, receipt } = change;
        let commit = Commit {
            key: key.clone(),
            expected,
            case: case
                .map(|case| {
                    Ok::<_, StoreError>((encode(case)?, case.updated_at, case.staff_thread().map(str::to_owned)))
                })
                .transpose()?,
            outcomes: outcomes.to_vec(),
            receipt: receipt
                .map(|receipt| (receipt.id.to_owned(), receipt.at, receipt.subject, receipt.delivery.to_owned())),
        };
        let result = writer::send(&self.writer, |reply| Job::Commit(commit, reply)).await;
        let mut cache = self.cache();
        match (result, case) {
            (Ok(Some(version)), Some(case)) => {
                cache.insert(key.clone(), Stored { case: case.clone(), version });
                Ok(())
            }
            (Ok(_), _) => {
                cache.remove(key);
                Ok(())
            }
            (Err(error), _) => {
                // Whatever the store holds now, it is not what was cached.
                cache.remove(key);
                Err(error)
            }
        }
    }

    async fn pending_delivery(&self, id: &str) -> Result<Option<String>, StoreError> {
        sqlx::query("SELECT delivery FROM receipts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map_or(Ok(None), |row| row.try_get(0))
            .map_err(backend)
    }

    async fn confirm_delivery(&self, id: &str) -> Result<(), StoreError> {
        writer::send(&self.writer, |reply| Job::Confirm(id.to_owned(), reply)).await
    }

    async fn purge(&self, purge: Purge) -> Result<Purged, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let mut delete = async |sql: &'static str, before: i64| {
            sqlx::query(sql).bind(before).execute(&mut *tx).await.map(|done| done.rows_affected()).map_err(backend)
        };
        let purged = Purged {
            cases: delete("DELETE FROM cases WHERE updated_at < ?", purge.cases_before).await?,
            receipts: delete("DELETE FROM receipts WHERE at < ?", purge.receipts_before).await?,
            outcomes: delete("DELETE FROM outcomes WHERE at < ?", purge.outcomes_before).await?,
        };
        tx.commit().await.map_err(backend)?;
        self.cache().clear();
        Ok(purged)
    }

    async fn forget(&self, platform: &str, user: &str, subject: u64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let cases = sqlx::query("DELETE FROM cases WHERE platform = ? AND user = ?")
            .bind(platform)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        let outcomes = sqlx::query("DELETE FROM outcomes WHERE subject = ?")
            .bind(subject as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        let receipts = sqlx::query("DELETE FROM receipts WHERE subject = ?")
            .bind(subject as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
        self.cache().retain(|key, _| !(key.platform == platform && key.user == user));
        Ok(cases + outcomes + receipts)
    }

    async fn meta_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        sqlx::query("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let stored: String = sqlx::query("SELECT value FROM meta WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(stored)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(backend)?;
        Ok(())
    }

    async fn find_by_staff_thread(&self, thread: &str) -> Result<Option<(ConversationKey, Stored)>, StoreError> {
        let row = sqlx::query(
            "SELECT platform, chat, thread, user, version, state FROM cases WHERE staff_thread = ?
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(thread)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|row| keyed_case(&row, "user")).transpose()
    }

    async fn outcomes(&self, since: i64) -> Result<Vec<OutcomeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT case_id, subject, at, symptom, flow, step, outcome FROM outcomes WHERE at >= ? ORDER BY id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(outcome_record).collect()
    }

    async fn idle_cases(&self, before: i64, limit: usize) -> Result<Vec<(ConversationKey, Stored)>, StoreError> {
        // `expired` is only written when set (see `Case`), so a missing key
        // is a case the sweep has not closed.
        let rows = sqlx::query(
            "SELECT platform, chat, thread, user, version, state FROM cases
             WHERE updated_at < ? AND json_extract(state, '$.expired') IS NULL
             ORDER BY updated_at, platform, chat, thread, user LIMIT ?",
        )
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(|row| keyed_case(row, "user")).collect()
    }
}

fn encode(case: &Case) -> Result<String, StoreError> {
    serde_json::to_string(case).map_err(backend)
}
