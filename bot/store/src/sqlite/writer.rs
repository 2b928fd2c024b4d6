//! Group commit for SQLite: one task owns the write connection and commits
//! every change waiting at that moment in one transaction, so one fsync
//! serves many messages. Each change is still all-or-nothing and
//! compare-and-set on its case's version, and its caller hears back only once
//! its transaction is on disk.
//!
//! A transaction costs the same statements whatever its size: the
//! changes travel as one JSON array per statement, unpacked by SQLite's
//! `json_each`, and the version checks are made in Rust between one read
//! and the writes, under the write lock (`BEGIN IMMEDIATE`). The read and
//! the writes are one query each, so a transaction is two round trips to
//! the connection's thread, however many statements it runs.

use std::collections::{HashMap, HashSet};

use fixbot_core::case::{ConversationKey, OutcomeRecord};
use fixbot_core::store::StoreError;
use serde_json::{Value, json};
use sqlx::pool::PoolConnection;
use sqlx::{Row as _, Sqlite};
use tokio::sync::{mpsc, oneshot};

/// The most changes one transaction takes.
const MAX_BATCH: usize = 1024;

/// A change, owned, on its way to the writer.
pub(super) struct Commit {
    pub key: ConversationKey,
    pub expected: Option<u64>,
    /// The case's JSON, its `updated_at` and its staff thread, or `None` to remove it.
    pub case: Option<(String, i64, Option<String>)>,
    pub outcomes: Vec<OutcomeRecord>,
    /// The receipt: id, time, subject and pending delivery.
    pub receipt: Option<(String, i64, u64, String)>,
}

/// What the writer is asked to do.
// Commits are most of the jobs; boxing them would add an allocation to every
// step to save a few bytes on the rare `Confirm` and `Stop`.
#[allow(clippy::large_enum_variant)]
pub(super) enum Job {
    /// Apply a change; answers the case's new version (`None`: removed).
    Commit(Commit, oneshot::Sender<Result<Option<u64>, StoreError>>),
    /// Drop a receipt's pending delivery.
    Confirm(String, oneshot::Sender<Result<(), StoreError>>),
    /// Finish and give the connection back.
    Stop,
}

/// Runs the writer until every sender is gone.
pub(super) async fn run(mut connection: PoolConnection<Sqlite>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut waiting: Option<Job> = None;
    loop {
        let first = match waiting.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(Job::Stop) | None => return,
                Some(job) => job,
            },
        };
        // Everything queued now joins this transaction, but a conversation
        // at most once: its second change must see the first's version.
        let mut batch = vec![first];
        let mut keys: HashSet<ConversationKey> = batch.iter().filter_map(key_of).cloned().collect();
        while batch.len() < MAX_BATCH {
            let Ok(job) = jobs.try_recv() else { break };
            if matches!(job, Job::Stop) {
                // Finish this batch first; the stop comes round next.
                waiting = Some(job);
                break;
            }
            if let Some(key) = key_of(&job)
                && !keys.insert(key.clone())
            {
                waiting = Some(job);
                break;
            }
            batch.push(job);
        }
        match apply(&mut connection, &batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    match job {
                        Job::Commit(_, reply) => {
                            let _ = reply.send(outcome);
                        }
                        Job::Confirm(_, reply) => {
                            let _ = reply.send(outcome.map(drop));
                        }
                        Job::Stop => {}
                    }
                }
            }
            Err(error) => {
                let reason = error.to_string();
                for job in batch {
                    let failed = || StoreError::Backend(reason.clone().into());
                    match job {
                        Job::Commit(_, reply) => drop(reply.send(Err(failed()))),
                        Job::Confirm(_, reply) => drop(reply.send(Err(failed()))),
                        Job::Stop => {}
                    }
                }
            }
        }
    }
}

fn key_of(job: &Job) -> Option<&ConversationKey> {
    match job {
        Job::Commit(commit, _) => Some(&commit.key),
        Job::Confirm(..) | Job::Stop => None,
    }
}

fn key_json(key: &ConversationKey) -> Value {
    json!([key.platform, key.chat, key.thread, key.user])
}

/// Applies `batch` in one transaction; per job, the new version of its case
/// (commits) or `Ok(None)` (confirms), or why it was refused. On an error
/// the transaction is rolled back and nothing of the batch is written.
async fn apply(
    connection: &mut PoolConnection<Sqlite>,
    batch: &[Job],
) -> Result<Vec<Result<Option<u64>, StoreError>>, sqlx::Error> {
    let result = transact(connection, batch).await;
    if result.is_err() {
        // Fails harmlessly when the error came before `BEGIN` took effect.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut **connection).await;
    }
    result
}

/// The transaction itself, in two round trips to the connection's thread:
/// `BEGIN` with the one read the checks need, then every write with
/// `COMMIT`. sqlx hands the arguments of one query to its statements in
/// order, each `?` the next (a numbered `?N` in a later statement is not
/// bound, as sqlx counts the numbers below it as used), which is what lets
/// a whole group travel as one query.
async fn transact(
    connection: &mut PoolConnection<Sqlite>,
    batch: &[Job],
) -> Result<Vec<Result<Option<u64>, StoreError>>, sqlx::Error> {
    let commits: Vec<&Commit> = batch
        .iter()
        .filter_map(|job| match job {
            Job::Commit(commit, _) => Some(commit),
            Job::Confirm(..) | Job::Stop => None,
        })
        .collect();

    // What the changes are checked against: the stored versions of their
    // cases (rows of kind 0, by commit) and the receipts already taken
    // (kind 1, by id).
    let keys: Vec<Value> = commits.iter().map(|commit| key_json(&commit.key)).collect();
    let receipt_ids: Vec<&str> =
        commits.iter().filter_map(|commit| commit.receipt.as_ref().map(|receipt| receipt.0.as_str())).collect();
    let rows = sqlx::query(
        "BEGIN IMMEDIATE;
         SELECT 0, j.key, c.version, NULL FROM json_each(?) AS j JOIN cases AS c
         ON c.platform = json_extract(j.value, '$[0]') AND c.chat = json_extract(j.value, '$[1]')
         AND c.thread = json_extract(j.value, '$[2]') AND c.user = json_extract(j.value, '$[3]')
         UNION ALL
         SELECT 1, NULL, NULL, r.id FROM json_each(?) AS j JOIN receipts AS r ON r.id = j.value",
    )
    .bind(Value::Array(keys).to_string())
    .bind(json!(receipt_ids).to_string())
    .fetch_all(&mut **connection)
    .await?;
    let mut versions: HashMap<usize, u64> = HashMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    for row in rows {
        if row.try_get::<i64, _>(0)? == 0 {
            versions.insert(row.try_get::<i64, _>(1)? as usize, row.try_get::<i64, _>(2)? as u64);
        } else {
            taken.insert(row.try_get(3)?);
        }
    }

    // Which changes hold, decided as the one-by-one commit would.
    let (mut receipts, mut inserts, mut updates, mut removals, mut outcomes, mut confirms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seen_receipts: HashSet<&str> = HashSet::new();
    let mut results = Vec::with_capacity(batch.len());
    let mut commit_index = 0;
    for job in batch {
        let commit = match job {
            Job::Commit(commit, _) => commit,
            Job::Confirm(id, _) => {
                confirms.push(Value::from(id.as_str()));
                results.push(Ok(None));
                continue;
            }
            Job::Stop => {
                results.push(Ok(None));
                continue;
            }
        };
        let stored = versions.get(&commit_index).copied();
        commit_index += 1;
        if let Some((id, ..)) = &commit.receipt
            && (taken.contains(id) || !seen_receipts.insert(id.as_str()))
        {
            results.push(Err(StoreError::Duplicate));
            continue;
        }
        if stored != commit.expected {
            results.push(Err(StoreError::Conflict));
            continue;
        }
        if let Some((id, at, subject, delivery)) = &commit.receipt {
            receipts.push(json!([id, at, *subject as i64, delivery]));
        }
        let key = &commit.key;
        let version = match (&commit.case, stored) {
            (Some((state, updated_at, staff)), None) => {
                inserts.push(json!([key.platform, key.chat, key.thread, key.user, updated_at, state, staff]));
                Some(1)
            }
            (Some((state, updated_at, staff)), Some(version)) => {
                updates.push(json!([key.platform, key.chat, key.thread, key.user, updated_at, state, staff]));
                Some(version + 1)
            }
            (None, Some(_)) => {
                removals.push(key_json(key));
                None
            }
            (None, None) => None,
        };
        for record in &commit.outcomes {
            outcomes.push(json!([
                record.case_id as i64,
                record.subject as i64,
                record.at,
                record.symptom,
                record.flow,
                record.step,
                record.outcome.as_str()
            ]));
        }
        results.push(Ok(version));
    }

    // Every write, each from its own JSON array (an empty one writes
    // nothing), and the commit.
    let mut write = sqlx::query(
        "INSERT INTO receipts (id, at, subject, delivery) SELECT json_extract(value, '$[0]'),
         json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(?);
         INSERT INTO cases (platform, chat, thread, user, version, updated_at, state, staff_thread)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
         json_extract(value, '$[3]'), 1, json_extract(value, '$[4]'), json_extract(value, '$[5]'),
         json_extract(value, '$[6]') FROM json_each(?);
         UPDATE cases SET version = version + 1, updated_at = u.updated_at, state = u.state,
         staff_thread = u.staff_thread
         FROM (SELECT json_extract(value, '$[0]') AS platform, json_extract(value, '$[1]') AS chat,
               json_extract(value, '$[2]') AS thread, json_extract(value, '$[3]') AS user,
               json_extract(value, '$[4]') AS updated_at, json_extract(value, '$[5]') AS state,
               json_extract(value, '$[6]') AS staff_thread
               FROM json_each(?)) AS u
         WHERE cases.platform = u.platform AND cases.chat = u.chat AND cases.thread = u.thread
         AND cases.user = u.user;
         DELETE FROM cases WHERE (platform, chat, thread, user) IN
         (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
          json_extract(value, '$[3]') FROM json_each(?));
         INSERT INTO outcomes (case_id, subject, at, symptom, flow, step, outcome)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
         json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
         json_extract(value, '$[6]') FROM json_each(?);
         UPDATE receipts SET delivery = NULL WHERE id IN (SELECT value FROM json_each(?));
         COMMIT;",
    );
    for rows in [receipts, inserts, updates, removals, outcomes, confirms] {
        write = write.bind(Value::Array(rows).to_string());
    }
    write.execute(&mut **connection).await?;
    Ok(results)
}

/// Sends `job` to the writer and waits for its answer.
pub(super) async fn send<T>(
    jobs: &mpsc::UnboundedSender<Job>,
    make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
) -> Result<T, StoreError> {
    let (reply, answer) = oneshot::channel();
    jobs.send(make(reply)).map_err(|_| StoreError::Backend("the SQLite writer has stopped".into()))?;
    answer.await.map_err(|_| StoreError::Backend("the SQLite writer stopped mid-commit".into()))?
}
