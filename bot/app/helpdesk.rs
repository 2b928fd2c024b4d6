//! The webhook staff desk, for an internal help desk: every hand-over, user
//! message and close is POSTed to `staff.webhook_url` as one JSON event (the
//! schema is in docs/handover.md), in order, from a background task that
//! retries 5xx answers, timeouts and connection failures with a growing
//! pause, so a short outage neither loses an event nor delays the user's
//! answer. Staff answer through `POST /handover/{case}/reply` on the serve
//! listener, which makes the desk two-way. Both directions carry the shared
//! secret as a bearer token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use fixbot_core::case::StaffThread;
use fixbot_core::desk::{BoxFuture, DeskError, Handovers, StaffDesk, StaffMessage, StaffOutcome};
use fixbot_core::handover::{DeskNote, Packet, StaffNote};
use fixbot_core::metrics::metrics;
use fixbot_core::store::Store;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The version of the events' JSON shape; a change that could break a
/// receiver gets a new one.
pub const SCHEMA_VERSION: u32 = 1;
/// The desk's name, which its threads carry.
const NAME: &str = "webhook";
/// Attempts of one event before it is given up: with the pauses below,
/// about two minutes of outage are ridden out.
const ATTEMPTS: u32 = 8;
/// The first pause after a failed attempt; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long one attempt may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest staff name the reply endpoint takes.
const MAX_NAME_CHARS: usize = 64;

/// Posts case events to a help desk's webhook.
pub struct WebhookDesk {
    events: mpsc::UnboundedSender<Value>,
}

impl WebhookDesk {
    /// Starts the delivery task for `url`, authenticated with `secret`.
    pub fn start(url: url::Url, secret: String) -> anyhow::Result<WebhookDesk> {
        let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?;
        let (events, queue) = mpsc::unbounded_channel();
        tokio::spawn(deliver_all(client, url, secret, queue));
        Ok(WebhookDesk { events })
    }

    fn enqueue(&self, event: Value) -> Result<(), DeskError> {
        self.events.send(event).map_err(|_| DeskError::new(NAME, "the delivery task has stopped"))
    }
}

/// A unique id per event, for the receiver to drop a delivery it already
/// took (an attempt that timed out after all may have arrived).
fn event_id(reference: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
    format!("{reference}-{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The `handover` event of `packet`.
pub fn handover_event(packet: &Packet, relay: bool) -> Value {
    let case = &packet.case;
    let steps: Vec<Value> = case
        .history
        .iter()
        .map(|tried| json!({"flow": tried.flow, "step": tried.step, "outcome": tried.outcome.as_str()}))
        .collect();
    let symptom = case.symptom.as_ref().map(|id| json!({"id": id, "title": packet.title, "score": case.score}));
    json!({
        "version": SCHEMA_VERSION,
        "event": "handover",
        "id": event_id(&packet.reference),
        "case": packet.reference,
        "at": packet.at,
        "relay": relay,
        "reply_path": format!("/handover/{}/reply", packet.reference),
        "user": {"platform": packet.platform, "handle": packet.user.handle, "link": packet.user.link},
        "symptom": symptom,
        "phone": case.platform,
        "captures": case.captures,
        "steps": steps,
        "paste": case.paste,
        "opened_at": case.opened_at,
        "summary": packet.body.to_plain(),
    })
}

/// The `message` or `closed` event of `note`.
pub fn note_event(note: &DeskNote) -> Value {
    let mut event = json!({
        "version": SCHEMA_VERSION,
        "id": event_id(&note.reference),
        "case": note.reference,
        "at": note.at,
    });
    match &note.note {
        StaffNote::Message(text) => {
            event["event"] = json!("message");
            event["text"] = json!(text);
        }
        StaffNote::UserClosed => {
            event["event"] = json!("closed");
            event["by"] = json!("user");
            event["name"] = Value::Null;
        }
        StaffNote::StaffClosed(name) => {
            event["event"] = json!("closed");
            event["by"] = json!("staff");
            event["name"] = json!(name);
        }
        StaffNote::Why(explanation) => {
            event["event"] = json!("why");
            event["text"] = json!(explanation.to_plain());
        }
    }
    event
}

impl StaffDesk for WebhookDesk {
    fn name(&self) -> &str {
        NAME
    }

    fn records_all(&self) -> bool {
        true
    }

    fn open<'a>(&'a self, packet: &'a Packet, relay: bool) -> BoxFuture<'a, Result<StaffThread, DeskError>> {
        Box::pin(async move {
            self.enqueue(handover_event(packet, relay))?;
            Ok(StaffThread {
                desk: NAME.to_owned(),
                id: format!("{NAME}:{}", packet.reference),
                place: packet.reference.clone(),
            })
        })
    }

    fn post<'a>(&'a self, _thread: &'a StaffThread, note: &'a DeskNote) -> BoxFuture<'a, Result<(), DeskError>> {
        Box::pin(async move { self.enqueue(note_event(note)) })
    }
}

/// How one attempt went.
enum Attempt {
    Delivered,
    /// Worth trying again: a 5xx, 408 or 429, a timeout, a connection failure.
    Passing(String),
    /// Refused for good: another 4xx.
    Refused(String),
}

/// Delivers events one after another, in order, each retried until it is
/// taken, refused or out of attempts.
async fn deliver_all(
    client: reqwest::Client,
    url: url::Url,
    secret: String,
    mut events: mpsc::UnboundedReceiver<Value>,
) {
    while let Some(event) = events.recv().await {
        let body = event.to_string();
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        let (kind, case) = (event["event"].as_str().unwrap_or_default(), event["case"].as_str().unwrap_or_default());
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let request = client
                .post(url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, format!("Bearer {secret}"))
                .header("Idempotency-Key", &id)
                .body(body.clone());
            let outcome = match request.send().await {
                Ok(response) if response.status().is_success() => Attempt::Delivered,
                Ok(response) => {
                    let status = response.status();
                    let passing = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                    if passing { Attempt::Passing(status.to_string()) } else { Attempt::Refused(status.to_string()) }
                }
                Err(error) => Attempt::Passing(error.without_url().to_string()),
            };
            match outcome {
                Attempt::Delivered => {
                    metrics().webhook_posts.with_label_values(&["delivered"]).inc();
                    tracing::debug!(event = kind, case, attempt, "webhook desk event delivered");
                    break;
                }
                Attempt::Refused(reason) => {
                    metrics().webhook_posts.with_label_values(&["failed"]).inc();
                    tracing::error!(event = kind, case, %reason, "the webhook desk refused an event; it is dropped");
                    break;
                }
                Attempt::Passing(reason) if attempt == ATTEMPTS => {
                    metrics().webhook_posts.with_label_values(&["failed"]).inc();
                    tracing::error!(event = kind, case, %reason, attempts = ATTEMPTS, "webhook desk unreachable; event dropped");
                }
                Attempt::Passing(reason) => {
                    metrics().webhook_posts.with_label_values(&["retried"]).inc();
                    tracing::warn!(event = kind, case, %reason, attempt, ?backoff, "webhook desk failed; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The reply endpoint, `POST /handover/{case}/reply`, to mount on the serve
/// listener.
pub fn router<S: Store + 'static>(handovers: Arc<Handovers<S>>, secret: String) -> Router {
    Router::new().route("/handover/{case}/reply", post(reply::<S>)).with_state((handovers, Arc::new(secret)))
}

/// A staff answer from the help desk.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    /// The staff member's name, as the user sees it.
    name: String,
    /// What they answer; may be left out when closing.
    #[serde(default)]
    text: String,
    /// Closes the case (the user is told) instead of answering.
    #[serde(default)]
    close: bool,
    /// The help desk's id of this answer: a retried request with the same
    /// id is applied once.
    #[serde(default)]
    id: Option<String>,
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn reply<S: Store + 'static>(
    State((handovers, secret)): State<(Arc<Handovers<S>>, Arc<String>)>,
    Path(case): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let given = headers.get(header::AUTHORIZATION).map(|value| value.as_bytes()).unwrap_or_default();
    if !constant_time_eq(given, format!("Bearer {secret}").as_bytes()) {
        return answer(StatusCode::UNAUTHORIZED, json!({"error": "missing or wrong bearer token"}));
    }
    let body: ReplyBody = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => return answer(StatusCode::BAD_REQUEST, json!({"error": format!("unreadable body: {error}")})),
    };
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return answer(StatusCode::BAD_REQUEST, json!({"error": "name must be 1 to 64 characters"}));
    }
    if !body.close && body.text.trim().is_empty() {
        return answer(StatusCode::BAD_REQUEST, json!({"error": "text is empty; send close: true to close"}));
    }
    let reference_ok = case.len() == 8 && case.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !reference_ok {
        return answer(StatusCode::NOT_FOUND, json!({"error": "no open case with this reference"}));
    }
    let text = if body.close { "/close".to_owned() } else { body.text };
    let receipt = body.id.map(|id| format!("webhook:{case}:{id}"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64);
    let message = StaffMessage { name: name.to_owned(), text };
    match handovers.staff_message(&format!("{NAME}:{case}"), message, receipt.as_deref(), now).await {
        StaffOutcome::Answered => answer(StatusCode::OK, json!({"delivered": true})),
        StaffOutcome::NoCase => answer(StatusCode::NOT_FOUND, json!({"error": "no open case with this reference"})),
        StaffOutcome::Unsent => answer(
            StatusCode::BAD_GATEWAY,
            json!({"error": "the user could not be reached just now; send the same request again"}),
        ),
    }
}

/// Compares without an early exit, so timing does not reveal the secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_become_message_and_closed_events() {
        let note = |note| DeskNote { reference: "0badcafe".into(), note, body: Default::default(), at: 7 };
        let message = note_event(&note(StaffNote::Message("it still fails".into())));
        assert_eq!((message["event"].as_str(), message["text"].as_str()), (Some("message"), Some("it still fails")));
        assert_eq!((message["version"].as_u64(), message["case"].as_str()), (Some(1), Some("0badcafe")));
        let closed = note_event(&note(StaffNote::StaffClosed("Alex".into())));
        assert_eq!((closed["by"].as_str(), closed["name"].as_str()), (Some("staff"), Some("Alex")));
        let by_user = note_event(&note(StaffNote::UserClosed));
        assert_eq!((by_user["by"].as_str(), by_user["name"].is_null()), (Some("user"), true));
        assert_ne!(message["id"], closed["id"], "every event has its own id");
    }
}
