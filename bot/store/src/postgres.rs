//! `PostgresStore`: cases, outcomes and receipts in PostgreSQL, shared by
//! several fixbot instances. Compare-and-set on the case version inside one
//! transaction keeps two instances from both advancing a case; the loser
//! replays the message against the new state.

use std::str::FromStr as _;
use std::time::Duration;

use fixbot_core::case::{Case, ConversationKey, OutcomeRecord};
use fixbot_core::store::{Change, Purge, Purged, Store, StoreError, Stored};

use crate::rows::{backend, keyed_case, outcome_record};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::query::Query;
use sqlx::{Executor as _, Postgres, Row as _};

/// The schema, one migration per entry, applied in order at open. Never
/// edit an entry that has shipped; add a new one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE cases (
        platform   TEXT   NOT NULL,
        chat       TEXT   NOT NULL,
        thread     TEXT   NOT NULL,
        user_id    TEXT   NOT NULL,
        version    BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        state      TEXT   NOT NULL,
        PRIMARY KEY (platform, chat, thread, user_id)
    );
    CREATE INDEX cases_updated_at ON cases (updated_at);
    CREATE TABLE outcomes (
        id      BIGSERIAL PRIMARY KEY,
        case_id BIGINT NOT NULL,
        at      BIGINT NOT NULL,
        symptom TEXT   NOT NULL,
        flow    TEXT   NOT NULL,
        step    TEXT   NOT NULL,
        outcome TEXT   NOT NULL
    );
    CREATE INDEX outcomes_at ON outcomes (at);
    CREATE TABLE receipts (
        id TEXT   PRIMARY KEY,
        at BIGINT NOT NULL
    );
    CREATE INDEX receipts_at ON receipts (at);
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // Who an outcome is about (pseudonymous), so /forget can delete it.
    "ALTER TABLE outcomes ADD COLUMN subject BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX outcomes_subject ON outcomes (subject);",
    // Whose update a receipt is, and its answer until that is confirmed sent.
    "ALTER TABLE receipts ADD COLUMN subject BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE receipts ADD COLUMN delivery TEXT;
    CREATE INDEX receipts_subject ON receipts (subject);",
    // The staff thread a case handed to a person is answered in, so a
    // staff member's message finds its case on any instance.
    "ALTER TABLE cases ADD COLUMN staff_thread TEXT;
    CREATE INDEX cases_staff_thread ON cases (staff_thread) WHERE staff_thread IS NOT NULL;",
];

/// Serialises migrations across instances starting at once (an arbitrary,
/// fixed advisory-lock key).
const MIGRATION_LOCK: i64 = 0x0f1b_0700;

/// Cases and outcomes in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` and brings the schema up to date.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::open_in_schema(url, None).await
    }

    /// Like [`PostgresStore::open`], with every table in `schema` (created
    /// when missing): several fixbots, or tests, can share one database.
    /// Schema names are lower-case letters, digits and `_`.
    pub async fn open_in_schema(url: &str, schema: Option<&str>) -> Result<PostgresStore, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(backend)?;
        let mut pool = PgPoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(10));
        if let Some(schema) = schema {
            if !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') || schema.is_empty() {
                return Err(StoreError::Corrupt {
                    key: "schema".into(),
                    reason: format!("`{schema}` is not a valid schema name"),
                });
            }
            let set = format!("SET search_path TO {schema}");
            pool = pool.after_connect(move |connection, _| {
                let set = set.clone();
                Box::pin(async move {
                    connection.execute(sqlx::AssertSqlSafe(set)).await?;
                    Ok(())
                })
            });
            let bootstrap =
                PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await.map_err(backend)?;
            bootstrap
                .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
                .await
                .map_err(backend)?;
            bootstrap.close().await;
        }
        let pool = pool.connect_with(options).await.map_err(backend)?;
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema version after migrations.
    pub async fn schema_version(&self) -> Result<usize, StoreError> {
        let version: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend)?;
        Ok(version as usize)
    }

    /// Closes the pool, waiting for the connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
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
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(index as i64 + 1)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }
}

/// A query on one conversation's row: `$1`..`$4` are the key columns.
fn keyed<'q>(sql: &'static str, key: &'q ConversationKey) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(sql).bind(&key.platform).bind(&key.chat).bind(&key.thread).bind(&key.user)
}

impl Store for PostgresStore {
    async fn get(&self, key: &ConversationKey) -> Result<Option<Stored>, StoreError> {
        let row = keyed(
            "SELECT version, state FROM cases WHERE platform = $1 AND chat = $2 AND thread = $3 AND user_id = $4",
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
        Ok(Some(Stored { case, version: version as u64 }))
    }

    async fn commit(&self, key: &ConversationKey, change: Change<'_>) -> Result<(), StoreError> {
        let Change { expected, case, outcomes, receipt } = change;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if let Some(receipt) = receipt {
            let inserted = sqlx::query(
                "INSERT INTO receipts (id, at, subject, delivery) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(receipt.id)
            .bind(receipt.at)
            .bind(receipt.subject as i64)
            .bind(receipt.delivery)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Duplicate);
            }
        }
        let encode = |case: &Case| serde_json::to_string(case).map_err(backend);
        let applied = match (expected, case) {
            (None, None) => {
                keyed("SELECT 1 FROM cases WHERE platform = $1 AND chat = $2 AND thread = $3 AND user_id = $4", key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(backend)?
                    .is_none()
            }
            (None, Some(case)) => {
                keyed(
                    "INSERT INTO cases (platform, chat, thread, user_id, version, updated_at, state, staff_thread)
                     VALUES ($1, $2, $3, $4, 1, $5, $6, $7) ON CONFLICT DO NOTHING",
                    key,
                )
                .bind(case.updated_at)
                .bind(encode(case)?)
                .bind(case.staff_thread())
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected()
                    == 1
            }
            (Some(version), Some(case)) => {
                keyed(
                    "UPDATE cases SET version = version + 1, updated_at = $5, state = $6, staff_thread = $8
                     WHERE platform = $1 AND chat = $2 AND thread = $3 AND user_id = $4 AND version = $7",
                    key,
                )
                .bind(case.updated_at)
                .bind(encode(case)?)
                .bind(version as i64)
                .bind(case.staff_thread())
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected()
                    == 1
            }
            (Some(version), None) => keyed(
                "DELETE FROM cases WHERE platform = $1 AND chat = $2 AND thread = $3 AND user_id = $4 AND version = $5",
                key,
            )
            .bind(version as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
                == 1,
        };
        if !applied {
            // Dropping the transaction rolls it back, receipt included.
            return Err(StoreError::Conflict);
        }
        for record in outcomes {
            sqlx::query(
                "INSERT INTO outcomes (case_id, subject, at, symptom, flow, step, outcome)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(record.case_id as i64)
            .bind(record.subject as i64)
            .bind(record.at)
            .bind(&record.symptom)
            .bind(&record.flow)
            .bind(&record.step)
            .bind(record.outcome.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn pending_delivery(&self, id: &str) -> Result<Option<String>, StoreError> {
        sqlx::query("SELECT delivery FROM receipts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map_or(Ok(None), |row| row.try_get(0))
            .map_err(backend)
    }

    async fn confirm_delivery(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE receipts SET delivery = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn purge(&self, purge: Purge) -> Result<Purged, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut delete = async |sql: &'static str, before: i64| {
            sqlx::query(sql).bind(before).execute(&mut *tx).await.map(|done| done.rows_affected()).map_err(backend)
        };
        let purged = Purged {
            cases: delete("DELETE FROM cases WHERE updated_at < $1", purge.cases_before).await?,
            receipts: delete("DELETE FROM receipts WHERE at < $1", purge.receipts_before).await?,
            outcomes: delete("DELETE FROM outcomes WHERE at < $1", purge.outcomes_before).await?,
        };
        tx.commit().await.map_err(backend)?;
        Ok(purged)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(backend)?;
        Ok(())
    }

    async fn outcomes(&self, since: i64) -> Result<Vec<OutcomeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT case_id, subject, at, symptom, flow, step, outcome FROM outcomes WHERE at >= $1 ORDER BY id",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(outcome_record).collect()
    }

    async fn idle_cases(&self, before: i64, limit: usize) -> Result<Vec<(ConversationKey, Stored)>, StoreError> {
        // `expired` is only written when set (see `Case`), so a missing key
        // is a case the sweep has not closed. `json`, not `jsonb`: it only
        // checks the text, which is all this needs.
        let rows = sqlx::query(
            "SELECT platform, chat, thread, user_id, version, state FROM cases
             WHERE updated_at < $1 AND (state::json -> 'expired') IS NULL
             ORDER BY updated_at, platform, chat, thread, user_id LIMIT $2",
        )
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(|row| keyed_case(row, "user_id")).collect()
    }

    async fn find_by_staff_thread(&self, thread: &str) -> Result<Option<(ConversationKey, Stored)>, StoreError> {
        let row = sqlx::query(
            "SELECT platform, chat, thread, user_id, version, state FROM cases WHERE staff_thread = $1
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(thread)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|row| keyed_case(&row, "user_id")).transpose()
    }

    async fn forget(&self, platform: &str, user: &str, subject: u64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let cases = sqlx::query("DELETE FROM cases WHERE platform = $1 AND user_id = $2")
            .bind(platform)
            .bind(user)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        let outcomes = sqlx::query("DELETE FROM outcomes WHERE subject = $1")
            .bind(subject as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        let receipts = sqlx::query("DELETE FROM receipts WHERE subject = $1")
            .bind(subject as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        tx.commit().await.map_err(backend)?;
        Ok(cases + outcomes + receipts)
    }

    async fn meta_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        sqlx::query("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend)
    }
}
