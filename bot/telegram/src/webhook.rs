//! Webhook mode: Telegram POSTs each update to fixbot's HTTP listener, which
//! lets several instances share one bot behind a load balancer. The secret
//! token Telegram echoes in a header proves a request comes from Telegram.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use fixbot_core::store::Store;
use teloxide::types::Update;

use crate::Frontend;

/// Where Telegram delivers updates on fixbot's listener.
pub const WEBHOOK_PATH: &str = "/telegram/webhook";

/// The header Telegram puts the webhook's secret token in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Whether `secret` is a valid webhook secret token for Telegram: 1 to 256
/// characters of `A-Z`, `a-z`, `0-9`, `_` and `-`.
pub fn valid_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn router<S: Store + 'static>(frontend: Frontend<S>, secret: String) -> Router {
    Router::new().route(WEBHOOK_PATH, post(receive::<S>)).with_state((frontend, secret))
}

/// Handles one update before answering, so Telegram retries it when fixbot
/// dies midway; the update's receipt keeps a retry from being applied twice,
/// and its pending delivery lets the retry send an answer that was lost. An
/// answer that could not be sent gets a 500, so Telegram delivers the update
/// again later.
async fn receive<S: Store + 'static>(
    State((frontend, secret)): State<(Frontend<S>, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let given = headers.get(SECRET_HEADER).map(|value| value.as_bytes()).unwrap_or_default();
    if !constant_time_eq(given, secret.as_bytes()) {
        return StatusCode::UNAUTHORIZED;
    }
    // An update fixbot cannot read is acknowledged anyway: a retry would
    // not read any better, and Telegram would keep sending it.
    let Ok(update) = serde_json::from_slice::<Update>(&body) else {
        tracing::warn!(bytes = body.len(), "ignoring a webhook body that is not an update");
        return StatusCode::OK;
    };
    if frontend.handle_update(update).await { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR }
}

/// Compares without an early exit, so timing does not reveal the secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_follow_telegrams_rules() {
        assert!(valid_secret("abc-DEF_123"));
        assert!(!valid_secret(""));
        assert!(!valid_secret("has space"));
        assert!(!valid_secret(&"x".repeat(257)));
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"diff"));
        assert!(!constant_time_eq(b"short", b"longer"));
    }
}
