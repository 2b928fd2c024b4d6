//! Reading what both SQL stores return, once: a case row with its key, an
//! outcome row, and the error a driver failure becomes. The two schemas
//! differ only in the user column's name (`user` is reserved in PostgreSQL).

use fixbot_core::case::{Case, ConversationKey, Outcome, OutcomeRecord};
use fixbot_core::store::{StoreError, Stored};
use sqlx::{ColumnIndex, Decode, Row, Type};

/// A driver or database failure, as the store reports it.
pub(crate) fn backend(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(error))
}

/// A `platform, chat, thread, <user_column>, version, state` row as the case
/// it holds, with its conversation.
pub(crate) fn keyed_case<R>(row: &R, user_column: &str) -> Result<(ConversationKey, Stored), StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |name: &str| row.try_get::<String, _>(name).map_err(backend);
    let key = ConversationKey::new(&text("platform")?, &text("chat")?, &text("thread")?, &text(user_column)?);
    let version: i64 = row.try_get("version").map_err(backend)?;
    let case: Case = serde_json::from_str(&text("state")?)
        .map_err(|error| StoreError::Corrupt { key: key.to_string(), reason: error.to_string() })?;
    Ok((key, Stored { case, version: version as u64 }))
}

/// A `case_id, subject, at, symptom, flow, step, outcome` row.
pub(crate) fn outcome_record<R>(row: &R) -> Result<OutcomeRecord, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |name: &str| row.try_get::<String, _>(name).map_err(backend);
    let number = |name: &str| row.try_get::<i64, _>(name).map_err(backend);
    let outcome = text("outcome")?;
    Ok(OutcomeRecord {
        case_id: number("case_id")? as u64,
        subject: number("subject")? as u64,
        at: number("at")?,
        symptom: text("symptom")?,
        flow: text("flow")?,
        step: text("step")?,
        outcome: Outcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt {
            key: "outcomes".to_owned(),
            reason: format!("unknown outcome `{outcome}`"),
        })?,
    })
}
