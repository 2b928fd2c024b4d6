//! The JSON chat API. A browser starts a conversation and keeps its key;
//! each message (a text, a pressed choice or a command) is answered with
//! the events it caused, and a long poll on `/api/v1/events` brings any
//! event the page has not seen (after a reload, or from another tab).
//! Errors are JSON `{"error": "…"}` in words a visitor can act on.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fixbot_core::button::{ButtonCodec, ButtonError};
use fixbot_core::case::ConversationKey;
use fixbot_core::command::Command;
use fixbot_core::desk::{BoxFuture, UserLine};
use fixbot_core::engine::{Input, Transition};
use fixbot_core::flood::Allowance;
use fixbot_core::handover::UserInfo;
use fixbot_core::lang::Lang;
use fixbot_core::markup::Markup;
use fixbot_core::metrics::metrics;
use fixbot_core::redact::redact;
use fixbot_core::store::Store;
use fixbot_core::text::truncate;
use serde::{Deserialize, Serialize};

use crate::outbox::{Choice, Event, Outbox, Speaker};
use crate::{PART, Shared, Web};

/// Characters of a visitor's own text shown back to them.
const ECHO_CHARS: usize = 4000;

/// One thing the visitor did: exactly one field is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    text: Option<String>,
    choice: Option<String>,
    command: Option<String>,
}

/// Where a long poll starts, and how long it may wait.
#[derive(Debug, Deserialize)]
pub struct Poll {
    #[serde(default)]
    after: u64,
    wait: Option<u64>,
}

/// Events and the cursor to poll after next.
#[derive(Debug, Serialize)]
struct Batch {
    events: Vec<Event>,
    cursor: u64,
}

/// `POST /api/v1/conversations`: a new conversation key.
pub async fn start<S: Store + 'static>(State(web): State<Shared<S>>) -> Response {
    if web.starts.check(PART, "new conversations") != Allowance::Pass {
        metrics().rate_limited.with_label_values(&[PART]).inc();
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Many conversations were started just now. Please try again in a minute.",
        );
    }
    match web.tokens.mint() {
        Some(token) => (StatusCode::CREATED, Json(serde_json::json!({ "token": token, "cursor": 0 }))).into_response(),
        None => {
            tracing::error!("the operating system gave no random bytes for a conversation key");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "A conversation could not be started. Please try again.")
        }
    }
}

/// `POST /api/v1/messages`: handles one input and answers with what it caused.
pub async fn send<S: Store + 'static>(
    State(web): State<Shared<S>>,
    headers: HeaderMap,
    body: Result<Json<Message>, JsonRejection>,
) -> Response {
    let Some(user) = visitor(&web, &headers) else { return unauthorised() };
    let message = match body {
        Ok(Json(message)) => message,
        Err(rejection) => return unreadable(&rejection.body_text()),
    };
    let arrived = Instant::now();
    let key = ConversationKey::new(PART, &user, "", &user);
    let flows = web.session.flows();
    let bot = flows.bot();
    let (input, echo) = match (message.text, message.choice, message.command) {
        (Some(text), None, None) if !text.trim().is_empty() => {
            let limit = web.session.config().match_limit;
            let shown: String = redact(truncate(&text, limit)).text.chars().take(ECHO_CHARS).collect();
            (Input::Text(text), Some(shown))
        }
        (Some(_), None, None) => {
            return refuse(StatusCode::BAD_REQUEST, "The message is empty. Type or paste something first.");
        }
        (None, Some(choice), None) => match web.codec.decode(&key, &choice) {
            Ok(button) => (Input::Button(button), web.outbox.label(&user, &choice)),
            Err(error) => {
                // Refused presses change nothing; the visitor is told why.
                let template = match error {
                    ButtonError::Foreign => &bot.messages.foreign_button,
                    ButtonError::Malformed => &bot.messages.stale_button,
                };
                let said = vec![(Speaker::Bot, template.render(), Vec::new())];
                return answer(&web, &user, said, arrived);
            }
        },
        (None, None, Some(name)) => {
            let command = Some(&name)
                .filter(|name| name.bytes().all(|byte| byte.is_ascii_lowercase()))
                .and_then(|name| Command::parse(&format!("/{name}")));
            let Some(command) = command else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "Unknown command. Use one of start, help, back, restart, skip, stop, human, forget.",
                );
            };
            let echo = match command {
                Command::Restart => Some(bot.labels.command_restart.clone()),
                Command::Human => Some(bot.labels.command_human.clone()),
                Command::Back => Some(bot.labels.command_back.clone()),
                _ => None,
            };
            (Input::Command(command), echo)
        }
        _ => return refuse(StatusCode::BAD_REQUEST, "Send exactly one of text, choice or command."),
    };
    let forget = input.command() == Some(Command::Forget);
    // The browser's language, for a case that opens now.
    let hint = headers.get(header::ACCEPT_LANGUAGE).and_then(|value| value.to_str().ok()).and_then(Lang::from_hint);
    let transition = match web.session.handle_in(&key, input, now(), hint).await {
        Ok(transition) => transition,
        Err(error) => {
            tracing::error!(%error, "handling a web message failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, &bot.messages.failure.render().to_plain());
        }
    };
    let mut said = Vec::new();
    if forget {
        // The store forgot them; so does the history their page reads.
        web.outbox.forget(&user);
    } else if let Some(echo) = echo {
        said.push((Speaker::Visitor, Markup::plain(echo), Vec::new()));
    }
    said.extend(bot_said(&web.codec, &key, &transition));
    let response = answer(&web, &user, said, arrived);
    // After the answer is in the outbox: what staff send back comes after it.
    if let Some(handovers) = &web.handovers {
        let visitor = UserInfo { handle: format!("web visitor {}", &user[..user.len().min(8)]), link: None };
        handovers.follow(&key, &transition, &visitor, now()).await;
    }
    response
}

/// What the bot says in `transition`, as outbox entries: the notice, then
/// each reply with its choices sealed for conversation `key`.
fn bot_said(
    codec: &ButtonCodec,
    key: &ConversationKey,
    transition: &Transition,
) -> Vec<(Speaker, Markup, Vec<Choice>)> {
    let notice = transition.notice.iter().map(|notice| (Speaker::Bot, Markup::plain(notice.clone()), Vec::new()));
    let replies = transition.replies.iter().map(|reply| {
        let choices = (reply.choices.iter().enumerate())
            .map(|(index, label)| Choice { label: label.clone(), reference: codec.encode(key, reply.button(index)) })
            .collect();
        (Speaker::Bot, reply.body.clone(), choices)
    });
    notice.chain(replies).collect()
}

/// How staff reach web visitors: what a case's transition says (a staff
/// member's words, the case closed) goes to the visitor's outbox, where the
/// page's long poll picks it up.
pub struct StaffLine {
    pub outbox: Arc<Outbox>,
    pub codec: ButtonCodec,
}

impl UserLine for StaffLine {
    fn deliver<'a>(&'a self, key: &'a ConversationKey, transition: &'a Transition) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let said = bot_said(&self.codec, key, transition);
            let replies = said.len() as u64;
            self.outbox.push(&key.user, said);
            metrics().messages_sent.with_label_values(&[PART]).inc_by(replies);
            true
        })
    }
}

/// `GET /api/v1/events?after=N&wait=S`: the events after cursor `N`,
/// waiting up to `S` seconds (at most the configured wait) for one.
pub async fn events<S: Store + 'static>(
    State(web): State<Shared<S>>,
    headers: HeaderMap,
    query: Result<Query<Poll>, QueryRejection>,
) -> Response {
    let Some(user) = visitor(&web, &headers) else { return unauthorised() };
    let poll = match query {
        Ok(Query(poll)) => poll,
        Err(rejection) => return unreadable(&rejection.body_text()),
    };
    let wait = poll.wait.map_or(web.config.poll_wait, |seconds| Duration::from_secs(seconds).min(web.config.poll_wait));
    let mut stopping = web.stopping.clone();
    let stopped = async move {
        // A dropped sender means nobody will ever stop this server.
        if stopping.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    // A stopping server answers its long polls at once, so that it is not
    // held up by them; the page simply polls again.
    let (events, cursor) = tokio::select! {
        batch = web.outbox.wait(&user, poll.after, wait) => batch,
        () = stopped => web.outbox.wait(&user, poll.after, Duration::ZERO).await,
    };
    private(Json(Batch { events, cursor }).into_response())
}

/// Records what was said in the conversation's outbox and answers with it.
fn answer<S>(web: &Web<S>, user: &str, said: Vec<(Speaker, Markup, Vec<Choice>)>, arrived: Instant) -> Response {
    let replies = said.iter().filter(|(from, _, _)| *from == Speaker::Bot).count();
    metrics().messages_sent.with_label_values(&[PART]).inc_by(replies as u64);
    let (events, cursor) = web.outbox.push(user, said);
    metrics().reply_seconds.with_label_values(&[PART]).observe(arrived.elapsed().as_secs_f64());
    private(Json(Batch { events, cursor }).into_response())
}

/// The user id of the conversation key in the `Authorization` header.
fn visitor<S>(web: &Web<S>, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    web.tokens.verify(value.strip_prefix("Bearer ")?.trim())
}

/// The same answer for a missing, malformed, forged or foreign key, so that
/// none tells anything about another conversation.
fn unauthorised() -> Response {
    let mut response =
        refuse(StatusCode::UNAUTHORIZED, "This conversation key is not valid here. Start a new conversation.");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn unreadable(detail: &str) -> Response {
    let body = serde_json::json!({
        "error": "That request could not be read. Send JSON such as {\"text\": \"The last backup failed\"}.",
        "detail": detail,
    });
    private((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

/// An error answer: `{"error": message}`.
fn refuse(status: StatusCode, message: &str) -> Response {
    private((status, Json(serde_json::json!({ "error": message }))).into_response())
}

/// Marks an answer as one no cache may keep.
fn private(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}
