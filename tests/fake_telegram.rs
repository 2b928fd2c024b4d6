//! A strict fake of the Telegram Bot API, served on 127.0.0.1 so the Telegram front-end can be
//! tested end to end without the network.
//!
//! It is strict on purpose: where the real API refuses a request (bad HTML, text too long,
//! callback data over 64 bytes, editing a message that does not exist, answering a callback
//! twice…) the fake refuses it too, with the status and description Telegram uses, so a bot
//! that passes here does not first meet those errors in production. It never answers 5xx unless a
//! test injects it, because teloxide sleeps ten seconds after any server error.
//!
//! Users are simulated with [`FakeTelegram::text`], [`FakeTelegram::reply_to`] and
//! [`FakeTelegram::press`]; what the bot did is read back with [`FakeTelegram::calls`],
//! [`FakeTelegram::sent`] and the per-message helpers.

// The fixture offers more than any single test module uses.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

/// Telegram's side of webhook mode, behind a load balancer. (The path is
/// spelt out so the benchmarks, which include this file too, find it.)
#[path = "fake_telegram/webhook.rs"]
mod webhook;

use crate::fault_plan::{Fault, FaultPlan};

/// The bot's user id.
pub const BOT_ID: i64 = 777;
/// The bot's username, as used in group commands (`/fix@fixbot_test_bot`).
pub const BOT_USERNAME: &str = "fixbot_test_bot";
/// The only token the fake accepts.
const TOKEN: &str = "123456:TEST-token-abcdef";
/// Longest message text, in characters after entity parsing.
const MAX_TEXT: usize = 4096;
/// Longest callback answer text, in characters.
const MAX_CALLBACK_TEXT: usize = 200;
/// Long polls are cut to this, so a test never waits on the bot's chosen timeout.
const MAX_POLL: Duration = Duration::from_secs(2);
/// Update types Telegram leaves out unless `allowed_updates` names them.
const OPT_IN_UPDATES: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];
/// Telegram's wording; teloxide maps it to `ApiError::MessageNotModified` only in full.
const NOT_MODIFIED: &str = "message is not modified: specified new message content and reply markup are exactly \
                            the same as a current content and reply markup of the message";
/// Telegram's wording (capital "ID"), which teloxide does not map to `InvalidQueryId`.
const QUERY_INVALID: &str = "query is too old and response timeout expired or query ID is invalid";
/// Tags Telegram's HTML parse mode accepts.
const HTML_TAGS: [&str; 15] = [
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "tg-spoiler",
    "blockquote",
    "span",
];
/// The `action` values sendChatAction accepts.
const CHAT_ACTIONS: [&str; 11] = [
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];
/// Inline keyboard button kinds other than callback_data and url, accepted as they are.
const OTHER_BUTTON_KINDS: [&str; 9] = [
    "login_url",
    "web_app",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
    "icon_custom_emoji_id",
];

/// What kind of chat a [`Chat`] is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChatKind {
    /// A one-to-one chat with a user; its id is the user's id.
    Private,
    /// A basic group.
    Group,
    /// A supergroup without topics.
    Supergroup,
    /// A supergroup with topics (`is_forum: true`).
    Forum,
}

/// A chat a simulated user writes in.
#[derive(Clone, Copy, Debug)]
pub struct Chat {
    /// The chat id (a private chat's id is the user's id).
    pub id: i64,
    /// The kind of chat.
    pub kind: ChatKind,
    /// The forum topic (message_thread_id), only for [`ChatKind::Forum`]; `None` is the General topic.
    pub thread: Option<i64>,
}

impl Chat {
    /// The private chat with user `user`.
    pub fn private(user: i64) -> Chat {
        Chat { id: user, kind: ChatKind::Private, thread: None }
    }

    /// A basic group.
    pub fn group(id: i64) -> Chat {
        Chat { id, kind: ChatKind::Group, thread: None }
    }

    /// A supergroup without topics.
    pub fn supergroup(id: i64) -> Chat {
        Chat { id, kind: ChatKind::Supergroup, thread: None }
    }

    /// Topic `thread` of the forum supergroup `id`.
    pub fn topic(id: i64, thread: i64) -> Chat {
        Chat { id, kind: ChatKind::Forum, thread: Some(thread) }
    }
}

/// A simulated user; its first name is `User{id}`.
#[derive(Clone, Copy, Debug)]
pub struct User {
    /// The user id.
    pub id: i64,
    /// The IETF language tag sent as language_code; empty leaves it out.
    pub language: &'static str,
}

/// One request the bot made.
#[derive(Clone, Debug)]
pub struct Call {
    /// The method, lower-case (`sendmessage`).
    pub method: String,
    /// The parameters, from the JSON, form or multipart body and the query string.
    pub params: Value,
    /// The HTTP status answered.
    pub status: u16,
    /// When the request arrived (calls are listed in the order they were answered).
    pub at: Instant,
}

/// One successful sendMessage.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    /// The chat it went to.
    pub chat_id: i64,
    /// The forum topic it went to.
    pub thread: Option<i64>,
    /// The id Telegram gave it.
    pub message_id: i64,
    /// The text as sent (HTML when parse_mode was HTML).
    pub text: String,
    /// The text users see, after entity parsing and trimming.
    pub plain: String,
    /// The inline keyboard: (label, callback_data), or (label, url) for URL buttons, or
    /// (label, "") for other kinds.
    pub buttons: Vec<Vec<(String, String)>>,
    /// The message it replies to.
    pub reply_to: Option<i64>,
}

/// The fake server; clones share it.
#[derive(Clone)]
pub struct FakeTelegram {
    shared: Arc<Shared>,
    port: u16,
}

/// State shared by the server and the test.
struct Shared {
    inner: Mutex<Inner>,
    /// Wakes long polls when an update arrives or another poll supersedes them.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test must not turn every later request into a poisoned-lock panic.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A message as Telegram currently holds it.
#[derive(Clone, Debug)]
struct Stored {
    id: i64,
    chat: i64,
    thread: Option<i64>,
    /// `None` is the bot.
    from: Option<User>,
    date: i64,
    text: String,
    entities: Vec<Value>,
    /// The current inline keyboard, `None` when there is none.
    markup: Option<Value>,
    reply_to: Option<i64>,
    edit_date: Option<i64>,
}

/// An error answer.
#[derive(Debug)]
struct ApiErr {
    status: u16,
    description: String,
    retry_after: Option<u32>,
}

impl ApiErr {
    fn new(status: u16, description: impl Into<String>) -> ApiErr {
        ApiErr { status, description: description.into(), retry_after: None }
    }

    fn body(&self) -> Value {
        let mut body = json!({"ok": false, "error_code": self.status, "description": self.description});
        if let Some(seconds) = self.retry_after {
            body["parameters"] = json!({ "retry_after": seconds });
        }
        body
    }
}

/// A 400 with Telegram's "Bad Request: " prefix.
fn bad(description: impl std::fmt::Display) -> ApiErr {
    ApiErr::new(400, format!("Bad Request: {description}"))
}

#[derive(Default)]
struct Inner {
    last_update_id: i64,
    /// Updates not yet confirmed by an offset.
    queue: VecDeque<(i64, Value)>,
    /// Every update ever queued, for re-delivering one as Telegram does when
    /// a bot died before confirming its offset.
    delivered: HashMap<i64, Value>,
    /// `None` is Telegram's default set.
    allowed: Option<HashSet<String>>,
    /// Bumped by every getUpdates, so an older long poll knows it was superseded.
    poll_generation: u64,
    calls: Vec<Call>,
    sent: Vec<Sent>,
    /// Indexes into `sent` per chat, so a test with many users can follow one chat cheaply.
    sent_by_chat: HashMap<i64, Vec<usize>>,
    chats: HashMap<i64, ChatKind>,
    /// Who created each forum topic, for the service message topic messages reply to.
    topic_creators: HashMap<(i64, i64), User>,
    /// Every forum topic that exists: (chat, message_thread_id).
    topics: HashSet<(i64, i64)>,
    /// Topics the bot created with createForumTopic, by name.
    bot_topics: HashMap<(i64, i64), String>,
    /// Public usernames of chats, which their Chat objects carry.
    usernames: HashMap<i64, String>,
    messages: HashMap<(i64, i64), Stored>,
    last_message_id: HashMap<i64, i64>,
    /// Callback query id → answered yet.
    callbacks: HashMap<String, bool>,
    answered: Vec<(String, Option<String>)>,
    /// Injected failures: (lower-case method, status, retry_after), used first come first served.
    failures: VecDeque<(String, u16, Option<u32>)>,
    /// Injected delays: (lower-case method, how long), used first come first served.
    delays: VecDeque<(String, Duration)>,
    /// Random faults on every call, when a test asked for them.
    faults: Option<FaultPlan>,
    /// How long a timeout fault holds the answer.
    fault_timeout: Duration,
    /// (scope as JSON, language code) → commands.
    commands: BTreeMap<(String, String), Vec<(String, String)>>,
    webhook: Option<String>,
    /// The webhook's max_connections: deliveries in flight at once.
    webhook_connections: usize,
    /// Updates below this id were confirmed by a getUpdates offset.
    confirmed_below: i64,
    /// Updates a webhook answered 2xx.
    acknowledged: HashSet<i64>,
    /// (group, user) pairs where the user is an administrator.
    admins: HashSet<(i64, i64)>,
}

impl FakeTelegram {
    /// Binds 127.0.0.1 on a free port and serves the fake API on the current runtime.
    pub async fn start() -> FakeTelegram {
        let shared = Arc::new(Shared { inner: Mutex::new(Inner::default()), wake: Notify::new() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("a bound address").port();
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the fake Telegram server runs");
        });
        FakeTelegram { shared, port }
    }

    /// The base URL to give teloxide's `Bot::set_api_url`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The token the fake accepts; any other gets 401 Unauthorized.
    pub fn token(&self) -> &str {
        TOKEN
    }

    /// A teloxide bot pointed at the fake, with proxies off so 127.0.0.1 is reached directly.
    pub fn bot(&self) -> teloxide::Bot {
        let client = teloxide::net::default_reqwest_settings().no_proxy().build().expect("a reqwest client");
        teloxide::Bot::with_client(TOKEN, client).set_api_url(self.api_url().parse().expect("a valid URL"))
    }

    /// Queues a raw update for getUpdates; `update_id` is assigned (increasing from 1) and
    /// returned. As with Telegram, an update of a type the bot left out of `allowed_updates`
    /// is never delivered. Chats and callback queries found in it become known to the fake.
    pub fn push(&self, update: Value) -> i64 {
        let id = {
            let mut inner = self.shared.lock();
            inner.learn_from_raw(&update);
            inner.enqueue(update)
        };
        self.shared.wake.notify_waiters();
        id
    }

    /// The JSON of update `id` as it was queued, e.g. to POST it to a webhook.
    pub fn update(&self, id: i64) -> Value {
        self.shared.lock().delivered.get(&id).cloned().expect("only pushed updates are known")
    }

    /// Queues update `id` again, unchanged: what Telegram does when the bot
    /// handled it but died before confirming the offset.
    pub fn redeliver(&self, id: i64) {
        {
            let mut inner = self.shared.lock();
            let update = inner.delivered.get(&id).cloned().expect("only pushed updates can be re-delivered");
            inner.queue.push_back((id, update));
        }
        self.shared.wake.notify_waiters();
    }

    /// Whether the bot took update `id` off Telegram's hands: a getUpdates
    /// offset past it, or a webhook's 2xx answer. Until then Telegram would
    /// deliver it again.
    pub fn acknowledged(&self, id: i64) -> bool {
        let inner = self.shared.lock();
        id < inner.confirmed_below || inner.acknowledged.contains(&id)
    }

    /// Makes `user` an administrator of group `chat`, as getChatMember then says.
    pub fn make_admin(&self, chat: i64, user: i64) {
        self.shared.lock().admins.insert((chat, user));
    }

    /// Makes `chat` known, so the bot may send to it before anyone writes there.
    pub fn add_chat(&self, chat: Chat) {
        self.shared.lock().register_chat(&chat);
    }

    /// Gives chat `chat_id` (a known group or supergroup) a public username,
    /// which its Chat objects then carry, as a public group's do.
    pub fn set_username(&self, chat_id: i64, username: &str) {
        self.shared.lock().usernames.insert(chat_id, username.to_owned());
    }

    /// Forum topics the bot created with createForumTopic: (chat, thread, name), by thread.
    pub fn bot_topics(&self) -> Vec<(i64, i64, String)> {
        let inner = self.shared.lock();
        let mut topics: Vec<(i64, i64, String)> =
            inner.bot_topics.iter().map(|(&(chat, thread), name)| (chat, thread, name.clone())).collect();
        topics.sort();
        topics
    }

    /// `user` writes `text` in `chat`; returns the update id. Bot commands and @mentions in
    /// the text get their entities, as Telegram adds them.
    pub fn text(&self, chat: Chat, user: User, text: &str) -> i64 {
        self.user_message(chat, user, text, None)
    }

    /// `user` replies with `text` to the bot's message `bot_message_id` in `chat`.
    ///
    /// Panics if the bot sent no such message there: a test cannot reply to what does not exist.
    pub fn reply_to(&self, chat: Chat, user: User, text: &str, bot_message_id: i64) -> i64 {
        self.user_message(chat, user, text, Some((bot_message_id, true)))
    }

    /// `user` replies with `text` to someone else's message `message_id` in
    /// `chat` (see [`FakeTelegram::newest_from`]). Panics if there is no such message.
    pub fn reply_to_person(&self, chat: Chat, user: User, text: &str, message_id: i64) -> i64 {
        self.user_message(chat, user, text, Some((message_id, false)))
    }

    /// The id of the newest message `user` wrote in chat `chat`.
    pub fn newest_from(&self, chat: i64, user: i64) -> Option<i64> {
        let inner = self.shared.lock();
        let written =
            |message: &&Stored| message.chat == chat && message.from.as_ref().is_some_and(|from| from.id == user);
        inner.messages.values().filter(written).map(|message| message.id).max()
    }

    /// `user` presses a button with callback data `data` on the bot's message `message_id`.
    ///
    /// The data is not checked against the keyboard, so stale buttons (pressed before the
    /// user's client saw an edit) and forged data (modified clients) can be simulated; use
    /// [`FakeTelegram::press_shown`] to have the fake check the button is shown. Panics if the
    /// bot sent no such message: there is nothing to press.
    pub fn press(&self, chat: Chat, user: User, message_id: i64, data: &str) -> i64 {
        self.press_inner(chat, user, message_id, data, false)
    }

    /// Like [`FakeTelegram::press`], but panics unless the message currently shows a button
    /// with that data.
    pub fn press_shown(&self, chat: Chat, user: User, message_id: i64, data: &str) -> i64 {
        self.press_inner(chat, user, message_id, data, true)
    }

    /// The callback query id of the press pushed as update `update_id`.
    pub fn callback_id(update_id: i64) -> String {
        // Telegram's ids are long decimal strings.
        (4_000_000_000_000_000_000u64 + update_id as u64).to_string()
    }

    /// Every request so far, failed ones included, in the order they were answered (so a
    /// getUpdates long poll is listed when it returns).
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Polls every 20 ms until `what` holds for the calls so far, and returns them; panics
    /// with the calls so far after `timeout`.
    pub async fn wait_for(&self, what: impl Fn(&[Call]) -> bool, timeout: Duration) -> Vec<Call> {
        self.poll(timeout, || Some(self.calls()).filter(|calls| what(calls)), || "on the bot".to_owned()).await
    }

    /// Waits until at least `count` messages were sent, and returns all sent messages; panics
    /// with the calls so far after `timeout`.
    pub async fn wait_for_sent(&self, count: usize, timeout: Duration) -> Vec<Sent> {
        let enough = || Some(self.sent()).filter(|sent| sent.len() >= count);
        self.poll(timeout, enough, || format!("for {count} sent messages")).await
    }

    /// Waits until the bot has acknowledged update `id` ([`FakeTelegram::acknowledged`]);
    /// panics with the calls so far after `timeout`.
    pub async fn wait_acknowledged(&self, id: i64, timeout: Duration) {
        self.poll(timeout, || self.acknowledged(id).then_some(()), || format!("for update {id} to be acknowledged"))
            .await
    }

    /// Polls every 20 ms until `check` finds something; panics after `timeout` with what
    /// was awaited (`failure`) and the calls so far.
    async fn poll<T>(&self, timeout: Duration, check: impl Fn() -> Option<T>, failure: impl Fn() -> String) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check() {
                return found;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting {}; calls so far:\n{}", failure(), describe(&self.calls()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Successful sendMessage calls, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.lock().sent.clone()
    }

    /// Successful sendMessage calls to `chat_id`, in order.
    pub fn sent_to(&self, chat_id: i64) -> Vec<Sent> {
        let inner = self.shared.lock();
        inner
            .sent_by_chat
            .get(&chat_id)
            .map(|indexes| indexes.iter().map(|&i| inner.sent[i].clone()).collect())
            .unwrap_or_default()
    }

    /// How many messages were sent to `chat_id`.
    pub fn sent_count(&self, chat_id: i64) -> usize {
        self.shared.lock().sent_by_chat.get(&chat_id).map_or(0, Vec::len)
    }

    /// The next call of `method` (any case) fails once with `status`; a `retry_after` is sent
    /// as `parameters.retry_after`, which teloxide turns into `RequestError::RetryAfter`.
    /// Several injections for one method are used in turn.
    pub fn fail_next(&self, method: &str, status: u16, retry_after: Option<u32>) {
        self.shared.lock().failures.push_back((method.to_ascii_lowercase(), status, retry_after));
    }

    /// The next call of `method` (any case) is answered only after `delay`, as a slow or
    /// distant Telegram would; the call is carried out after the wait.
    pub fn delay_next(&self, method: &str, delay: Duration) {
        self.shared.lock().delays.push_back((method.to_ascii_lowercase(), delay));
    }

    /// From now on, calls fail at random as `plan` says. A timeout holds the answer for
    /// `timeout`, which should exceed the client's own; long polls never time out (their
    /// client waits longer than the poll), and no fault is carried out before it fails.
    pub fn inject_faults(&self, plan: FaultPlan, timeout: Duration) {
        let mut inner = self.shared.lock();
        inner.faults = Some(plan);
        inner.fault_timeout = timeout;
    }

    /// The fault plan as it stands: what was injected so far.
    pub fn faults(&self) -> Option<FaultPlan> {
        self.shared.lock().faults.clone()
    }

    /// The current inline keyboard of a message, after any edits: `None` if the message is
    /// unknown, an empty list if it shows no keyboard.
    pub fn markup_of(&self, chat_id: i64, message_id: i64) -> Option<Vec<Vec<(String, String)>>> {
        let inner = self.shared.lock();
        let message = inner.messages.get(&(chat_id, message_id))?;
        Some(message.markup.as_ref().map(buttons_of).unwrap_or_default())
    }

    /// The current entities of a message (Telegram's MessageEntity objects), after edits.
    pub fn entities_of(&self, chat_id: i64, message_id: i64) -> Vec<Value> {
        self.shared.lock().messages.get(&(chat_id, message_id)).map(|m| m.entities.clone()).unwrap_or_default()
    }

    /// The current plain text of a message, after any edits.
    pub fn text_of(&self, chat_id: i64, message_id: i64) -> Option<String> {
        self.shared.lock().messages.get(&(chat_id, message_id)).map(|m| m.text.clone())
    }

    /// Successful answerCallbackQuery calls: (callback_query_id, text).
    pub fn answered_callbacks(&self) -> Vec<(String, Option<String>)> {
        self.shared.lock().answered.clone()
    }

    /// How many queued updates the bot has not yet confirmed with an offset.
    pub fn pending_updates(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// The webhook URL set with setWebhook, if any.
    pub fn webhook(&self) -> Option<String> {
        self.shared.lock().webhook.clone()
    }

    /// The commands set for `scope` (`None` is the default scope) and `language` ("" for all).
    pub fn my_commands(&self, scope: Option<Value>, language: &str) -> Vec<(String, String)> {
        let key = (scope_key(scope), language.to_string());
        self.shared.lock().commands.get(&key).cloned().unwrap_or_default()
    }

    /// `reply_to`: the message replied to, and whether it must be the bot's.
    fn user_message(&self, chat: Chat, user: User, text: &str, reply_to: Option<(i64, bool)>) -> i64 {
        let id = {
            let mut inner = self.shared.lock();
            inner.register_chat(&chat);
            if chat.kind == ChatKind::Private {
                assert_eq!(chat.id, user.id, "a private chat's id is its user's id");
            }
            let mut thread = chat.thread;
            if let Some((target, bots)) = reply_to {
                let message = inner.messages.get(&(chat.id, target)).unwrap_or_else(|| {
                    panic!("cannot reply to message {target} in chat {}: there is no such message", chat.id)
                });
                assert!(!bots || message.from.is_none(), "message {target} in chat {} is not the bot's", chat.id);
                // A reply lands in the topic of the message it answers.
                assert!(
                    thread.is_none() || thread == message.thread,
                    "message {target} is in topic {:?}, not {:?}",
                    message.thread,
                    thread
                );
                thread = message.thread;
            }
            if let Some(thread) = thread {
                inner.topic_creators.entry((chat.id, thread)).or_insert(user);
            }
            let message = Stored {
                id: inner.next_message_id(chat.id),
                chat: chat.id,
                thread,
                from: Some(user),
                date: now(),
                text: text.to_string(),
                entities: user_entities(text),
                markup: None,
                reply_to: reply_to.map(|(target, _)| target),
                edit_date: None,
            };
            let value = inner.message_json(&message, false);
            inner.messages.insert((chat.id, message.id), message);
            inner.enqueue(json!({ "message": value }))
        };
        self.shared.wake.notify_waiters();
        id
    }

    fn press_inner(&self, chat: Chat, user: User, message_id: i64, data: &str, check: bool) -> i64 {
        let id = {
            let mut inner = self.shared.lock();
            inner.register_chat(&chat);
            let message = inner.messages.get(&(chat.id, message_id)).unwrap_or_else(|| {
                panic!("cannot press a button on message {message_id} in chat {}: no such message", chat.id)
            });
            assert!(message.from.is_none(), "message {message_id} in chat {} is not the bot's", chat.id);
            if check {
                let buttons = message.markup.as_ref().map(buttons_of).unwrap_or_default();
                assert!(
                    buttons.iter().flatten().any(|(_, d)| d == data),
                    "message {message_id} in chat {} shows no button with data {data:?}; it shows {buttons:?}",
                    chat.id
                );
            }
            let message = inner.message_json(message, false);
            let update_id = inner.last_update_id + 1;
            let query_id = FakeTelegram::callback_id(update_id);
            inner.callbacks.insert(query_id.clone(), false);
            let query = json!({
                "id": query_id,
                "from": user_json(&user),
                "message": message,
                "chat_instance": (chat.id.wrapping_mul(7919) ^ 0x5bd1e995).to_string(),
                "data": data,
            });
            let pushed = inner.enqueue(json!({ "callback_query": query }));
            debug_assert_eq!(pushed, update_id);
            pushed
        };
        self.shared.wake.notify_waiters();
        id
    }
}

impl Inner {
    /// Records `chat`'s kind; panics if a test gives one chat id two kinds.
    fn register_chat(&mut self, chat: &Chat) {
        let known = *self.chats.entry(chat.id).or_insert(chat.kind);
        assert_eq!(known, chat.kind, "chat {} was first used as {known:?}, now as {:?}", chat.id, chat.kind);
        if let Some(thread) = chat.thread {
            assert_eq!(chat.kind, ChatKind::Forum, "only forum chats have topics (chat {})", chat.id);
            self.topics.insert((chat.id, thread));
            // A topic is the thread of its creation message, so later ids come after it.
            let last = self.last_message_id.entry(chat.id).or_insert(0);
            *last = (*last).max(thread);
        }
    }

    fn next_message_id(&mut self, chat: i64) -> i64 {
        let last = self.last_message_id.entry(chat).or_insert(0);
        *last += 1;
        *last
    }

    /// Assigns the next update id and queues the update if its type is allowed.
    fn enqueue(&mut self, mut update: Value) -> i64 {
        self.last_update_id += 1;
        let id = self.last_update_id;
        let object = update.as_object_mut().expect("an update is a JSON object");
        object.insert("update_id".into(), json!(id));
        let kind = object.keys().find(|key| *key != "update_id").cloned().unwrap_or_default();
        let allowed = match &self.allowed {
            Some(set) => set.contains(&kind),
            None => !OPT_IN_UPDATES.contains(&kind.as_str()),
        };
        if allowed {
            self.delivered.insert(id, update.clone());
            self.queue.push_back((id, update));
        }
        id
    }

    /// Best effort for raw pushes: learn the chat, message ids and callback query ids in them.
    fn learn_from_raw(&mut self, update: &Value) {
        let Some(object) = update.as_object() else { return };
        for (kind, body) in object {
            let message = if kind == "callback_query" {
                if let Some(id) = body.get("id").and_then(Value::as_str) {
                    self.callbacks.entry(id.to_string()).or_insert(false);
                }
                body.get("message")
            } else {
                Some(body)
            };
            let Some(chat) = message.and_then(|m| m.get("chat")) else { continue };
            let Some(id) = chat.get("id").and_then(Value::as_i64) else { continue };
            let forum = chat.get("is_forum").and_then(Value::as_bool).unwrap_or(false);
            let kind = match chat.get("type").and_then(Value::as_str) {
                Some("private") => ChatKind::Private,
                Some("group") => ChatKind::Group,
                Some("supergroup") if forum => ChatKind::Forum,
                Some("supergroup") => ChatKind::Supergroup,
                _ => continue,
            };
            self.chats.entry(id).or_insert(kind);
            if let Some(message_id) = message.and_then(|m| m.get("message_id")).and_then(Value::as_i64) {
                let last = self.last_message_id.entry(id).or_insert(0);
                *last = (*last).max(message_id);
            }
        }
    }

    fn chat_json(&self, id: i64) -> Value {
        let mut chat = match self.chats.get(&id).copied().unwrap_or(ChatKind::Private) {
            ChatKind::Private => json!({"id": id, "type": "private", "first_name": format!("User{id}")}),
            ChatKind::Group => json!({"id": id, "type": "group", "title": format!("Group {id}")}),
            ChatKind::Supergroup => json!({"id": id, "type": "supergroup", "title": format!("Supergroup {id}")}),
            ChatKind::Forum => {
                json!({"id": id, "type": "supergroup", "title": format!("Forum {id}"), "is_forum": true})
            }
        };
        if let Some(username) = self.usernames.get(&id) {
            chat["username"] = json!(username);
        }
        chat
    }

    /// getChat: a ChatFullInfo, with the fields Telegram always sends.
    fn get_chat(&self, params: &Value) -> Result<Value, ApiErr> {
        let (id, _) = self.chat_of(params)?;
        let mut chat = self.chat_json(id);
        let fields = json!({
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": false,
                "limited_gifts": false,
                "unique_gifts": false,
                "premium_subscription": false,
            },
        });
        chat.as_object_mut().expect("an object").extend(fields.as_object().expect("an object").clone());
        Ok(chat)
    }

    /// getChatMember: an administrator where a test made the user one, else
    /// a plain member; in a private chat, only its own user is a member.
    fn get_chat_member(&self, params: &Value) -> Result<Value, ApiErr> {
        let (chat, kind) = self.chat_of(params)?;
        let user = int(params, "user_id")?.ok_or_else(|| bad("invalid user_id specified"))?;
        if kind == ChatKind::Private && user != chat {
            return Err(bad("user not found"));
        }
        let user_json = user_json(&User { id: user, language: "" });
        Ok(if self.admins.contains(&(chat, user)) {
            json!({
                "user": user_json,
                "status": "administrator",
                "can_be_edited": false,
                "is_anonymous": false,
                "can_manage_chat": true,
                "can_delete_messages": true,
                "can_manage_video_chats": true,
                "can_restrict_members": true,
                "can_promote_members": false,
                "can_change_info": true,
                "can_invite_users": true,
                "can_post_stories": false,
                "can_edit_stories": false,
                "can_delete_stories": false,
                "can_pin_messages": true,
                "can_manage_topics": true,
            })
        } else {
            json!({"user": user_json, "status": "member"})
        })
    }

    /// createForumTopic: a topic in a forum supergroup, hanging from a
    /// forum_topic_created service message whose id is the topic's id.
    fn create_forum_topic(&mut self, params: &Value) -> Result<Value, ApiErr> {
        let (chat, kind) = self.chat_of(params)?;
        if kind != ChatKind::Forum {
            return Err(bad("the chat is not a forum"));
        }
        let name = string(params, "name")?.unwrap_or_default();
        if !(1..=128).contains(&name.chars().count()) {
            return Err(bad("topic name must be 1-128 characters"));
        }
        const ICON_COLORS: [i64; 6] = [7_322_096, 16_766_590, 13_338_331, 9_367_192, 16_749_490, 16_478_047];
        let icon_color = int(params, "icon_color")?.unwrap_or(ICON_COLORS[0]);
        if !ICON_COLORS.contains(&icon_color) {
            return Err(bad("TOPIC_ICON_COLOR_INVALID"));
        }
        let thread = self.next_message_id(chat);
        self.topics.insert((chat, thread));
        self.bot_topics.insert((chat, thread), name.clone());
        Ok(json!({"message_thread_id": thread, "name": name, "icon_color": icon_color}))
    }

    /// The Message object for `message`; `nested` leaves out reply_to_message, as Telegram
    /// does inside a reply_to_message.
    fn message_json(&self, message: &Stored, nested: bool) -> Value {
        let mut v = Map::new();
        v.insert("message_id".into(), json!(message.id));
        if let Some(thread) = message.thread {
            v.insert("message_thread_id".into(), json!(thread));
        }
        let from = match &message.from {
            Some(user) => user_json(user),
            None => bot_json(),
        };
        v.insert("from".into(), from);
        v.insert("date".into(), json!(message.date));
        v.insert("chat".into(), self.chat_json(message.chat));
        if message.thread.is_some() {
            v.insert("is_topic_message".into(), json!(true));
        }
        if !nested {
            let target = message.reply_to.and_then(|id| self.messages.get(&(message.chat, id)));
            if let Some(target) = target {
                v.insert("reply_to_message".into(), self.message_json(target, true));
            } else if let Some(thread) = message.thread {
                // Telegram makes every topic message that is not a reply a reply to the topic's
                // creation message: a bot must not take it for a reply to itself.
                v.insert("reply_to_message".into(), self.topic_root_json(message.chat, thread));
            }
        }
        if let Some(date) = message.edit_date {
            v.insert("edit_date".into(), json!(date));
        }
        v.insert("text".into(), json!(message.text));
        if !message.entities.is_empty() {
            v.insert("entities".into(), json!(message.entities));
        }
        if let Some(markup) = &message.markup {
            v.insert("reply_markup".into(), markup.clone());
        }
        Value::Object(v)
    }

    /// The forum_topic_created service message a topic hangs from.
    fn topic_root_json(&self, chat: i64, thread: i64) -> Value {
        let (from, name) = match self.bot_topics.get(&(chat, thread)) {
            Some(name) => (bot_json(), name.clone()),
            None => {
                let creator =
                    self.topic_creators.get(&(chat, thread)).copied().unwrap_or(User { id: 1, language: "en" });
                (user_json(&creator), format!("Topic {thread}"))
            }
        };
        json!({
            "message_id": thread,
            "message_thread_id": thread,
            "from": from,
            "date": now(),
            "chat": self.chat_json(chat),
            "is_topic_message": true,
            "forum_topic_created": {"name": name, "icon_color": 7_322_096},
        })
    }

    /// The chat named by `chat_id`, which must be known.
    fn chat_of(&self, params: &Value) -> Result<(i64, ChatKind), ApiErr> {
        match params.get("chat_id") {
            None | Some(Value::Null) => Err(bad("chat_id is empty")),
            // Channels and public usernames are not simulated.
            Some(Value::String(name)) if name.starts_with('@') => Err(bad("chat not found")),
            Some(_) => {
                let id = int(params, "chat_id")?.unwrap_or_default();
                let kind = self.chats.get(&id).copied().ok_or_else(|| bad("chat not found"))?;
                Ok((id, kind))
            }
        }
    }

    fn dispatch(&mut self, method: &str, params: &Value) -> Result<Value, ApiErr> {
        match method {
            "getme" => Ok(me_json()),
            "getchat" => self.get_chat(params),
            "getchatmember" => self.get_chat_member(params),
            "createforumtopic" => self.create_forum_topic(params),
            "sendmessage" => self.send_message(params),
            "editmessagetext" => self.edit_message_text(params),
            "editmessagereplymarkup" => self.edit_message_reply_markup(params),
            "answercallbackquery" => self.answer_callback_query(params),
            "setmycommands" => self.set_my_commands(params),
            "deletemycommands" => {
                let key = (scope_key(json_param(params, "scope")?), language(params)?);
                self.commands.remove(&key);
                Ok(json!(true))
            }
            "getmycommands" => {
                let key = (scope_key(json_param(params, "scope")?), language(params)?);
                let commands = self.commands.get(&key).cloned().unwrap_or_default();
                Ok(commands.iter().map(|(c, d)| json!({"command": c, "description": d})).collect())
            }
            "setwebhook" => {
                let url = string(params, "url")?.unwrap_or_default();
                if !url.is_empty() && !url.starts_with("https://") {
                    return Err(bad("bad webhook: HTTPS url must be provided for webhook"));
                }
                let max_connections = int(params, "max_connections")?.unwrap_or(40);
                if !(1..=100).contains(&max_connections) {
                    return Err(bad("bad webhook: max_connections must be between 1 and 100"));
                }
                if boolean(params, "drop_pending_updates") {
                    self.queue.clear();
                }
                self.webhook = if url.is_empty() { None } else { Some(url) };
                self.webhook_connections = max_connections as usize;
                Ok(json!(true))
            }
            "deletewebhook" => {
                if boolean(params, "drop_pending_updates") {
                    self.queue.clear();
                }
                self.webhook = None;
                Ok(json!(true))
            }
            // Not in the brief's list, but teloxide's polling asks it before deleting a webhook.
            "getwebhookinfo" => Ok(json!({
                "url": self.webhook.clone().unwrap_or_default(),
                "has_custom_certificate": false,
                "pending_update_count": self.queue.len(),
            })),
            "sendchataction" => {
                let (_, kind) = self.chat_of(params)?;
                let action = string(params, "action")?.unwrap_or_default();
                if !CHAT_ACTIONS.contains(&action.as_str()) {
                    return Err(bad("wrong parameter action in request"));
                }
                if int(params, "message_thread_id")?.is_some() && kind != ChatKind::Forum {
                    return Err(bad("message thread not found"));
                }
                Ok(json!(true))
            }
            _ => Err(ApiErr::new(404, "Not Found: method not found")),
        }
    }

    fn send_message(&mut self, params: &Value) -> Result<Value, ApiErr> {
        let (chat, kind) = self.chat_of(params)?;
        let raw = string(params, "text")?.unwrap_or_default();
        let (plain, entities) = format_text(&raw, params, false)?;
        let markup = markup_param(params, false)?;
        let mut thread = int(params, "message_thread_id")?;
        if thread.is_some() && kind != ChatKind::Forum {
            // Telegram takes message_thread_id for forum topics only.
            return Err(bad("message thread not found"));
        }
        if let Some(topic) = thread
            && !self.topics.contains(&(chat, topic))
        {
            return Err(bad("message thread not found"));
        }
        let (target, lenient) = reply_param(params)?;
        let mut reply_to = None;
        if let Some(target) = target {
            match self.messages.get(&(chat, target)) {
                Some(message) if thread.is_none() || thread == message.thread => {
                    reply_to = Some(target);
                    // A reply goes to the topic of the message it answers.
                    thread = message.thread;
                }
                _ if lenient => {}
                _ => return Err(bad("message to be replied not found")),
            }
        }
        let message = Stored {
            id: self.next_message_id(chat),
            chat,
            thread,
            from: None,
            date: now(),
            text: plain.clone(),
            entities,
            markup: markup.clone().filter(|m| m.get("inline_keyboard").is_some()),
            reply_to,
            edit_date: None,
        };
        self.sent_by_chat.entry(chat).or_default().push(self.sent.len());
        self.sent.push(Sent {
            chat_id: chat,
            thread,
            message_id: message.id,
            text: raw,
            plain,
            buttons: message.markup.as_ref().map(buttons_of).unwrap_or_default(),
            reply_to,
        });
        let value = self.message_json(&message, false);
        self.messages.insert((chat, message.id), message);
        Ok(value)
    }

    /// The bot's own message named by chat_id and message_id.
    fn editable(&self, params: &Value) -> Result<(i64, i64), ApiErr> {
        if params.get("inline_message_id").is_some() {
            // Inline-mode messages are not simulated.
            return Err(bad("MESSAGE_ID_INVALID"));
        }
        let (chat, _) = self.chat_of(params)?;
        let id = int(params, "message_id")?.ok_or_else(|| bad("message identifier is not specified"))?;
        let message = self.messages.get(&(chat, id)).ok_or_else(|| bad("message to edit not found"))?;
        if message.from.is_some() {
            return Err(bad("message can't be edited"));
        }
        Ok((chat, id))
    }

    fn edit_message_text(&mut self, params: &Value) -> Result<Value, ApiErr> {
        let key = self.editable(params)?;
        let raw = string(params, "text")?.unwrap_or_default();
        let (plain, entities) = format_text(&raw, params, true)?;
        // Telegram drops the keyboard of a message whose text is edited without one.
        let markup = markup_param(params, true)?;
        let message = self.messages.get_mut(&key).expect("checked by editable");
        if message.text == plain && message.entities == entities && message.markup == markup {
            return Err(bad(NOT_MODIFIED));
        }
        message.text = plain;
        message.entities = entities;
        message.markup = markup;
        message.edit_date = Some(now());
        let message = message.clone();
        Ok(self.message_json(&message, false))
    }

    fn edit_message_reply_markup(&mut self, params: &Value) -> Result<Value, ApiErr> {
        let key = self.editable(params)?;
        let markup = markup_param(params, true)?;
        let message = self.messages.get_mut(&key).expect("checked by editable");
        if message.markup == markup {
            return Err(bad(NOT_MODIFIED));
        }
        message.markup = markup;
        message.edit_date = Some(now());
        let message = message.clone();
        Ok(self.message_json(&message, false))
    }

    fn answer_callback_query(&mut self, params: &Value) -> Result<Value, ApiErr> {
        let id = string(params, "callback_query_id")?.unwrap_or_default();
        match self.callbacks.get(&id) {
            Some(false) => {}
            _ => return Err(bad(QUERY_INVALID)),
        }
        let text = string(params, "text")?;
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_CALLBACK_TEXT) {
            return Err(bad("MESSAGE_TOO_LONG"));
        }
        self.callbacks.insert(id.clone(), true);
        self.answered.push((id, text));
        Ok(json!(true))
    }

    fn set_my_commands(&mut self, params: &Value) -> Result<Value, ApiErr> {
        // As with Telegram, leaving `commands` out sets an empty list.
        let commands = json_param(params, "commands")?.unwrap_or_else(|| json!([]));
        let commands = commands.as_array().ok_or_else(|| bad("can't parse commands JSON object"))?;
        if commands.len() > 100 {
            return Err(bad("BOT_COMMANDS_TOO_MUCH"));
        }
        let mut list = Vec::new();
        for command in commands {
            let name = command.get("command").and_then(Value::as_str).unwrap_or_default();
            let description = command.get("description").and_then(Value::as_str).unwrap_or_default();
            let valid = (1..=32).contains(&name.chars().count())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(bad("BOT_COMMAND_INVALID"));
            }
            if description.trim().is_empty() {
                return Err(bad("command description must be non-empty"));
            }
            if description.chars().count() > 256 {
                return Err(bad("BOT_COMMAND_DESCRIPTION_INVALID"));
            }
            list.push((name.to_string(), description.to_string()));
        }
        let key = (scope_key(json_param(params, "scope")?), language(params)?);
        if list.is_empty() {
            self.commands.remove(&key);
        } else {
            self.commands.insert(key, list);
        }
        Ok(json!(true))
    }
}

/// Serves every request: /bot<token>/<method>.
async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let at = Instant::now();
    let path = percent_decode(uri.path().trim_start_matches('/'));
    let (token, method) = match path.split_once('/') {
        Some((first, method)) if first.starts_with("bot") && !method.is_empty() && !method.contains('/') => {
            (Some(&first[3..]), method.to_ascii_lowercase())
        }
        _ => (None, path.rsplit('/').next().unwrap_or_default().to_ascii_lowercase()),
    };
    let params = parse_params(&uri, &headers, &body);
    let result = match (&params, token) {
        (_, None) => Err(ApiErr::new(404, "Not Found")),
        (_, Some(token)) if token != TOKEN => Err(ApiErr::new(401, "Unauthorized")),
        (Err(error), _) => Err(bad(error)),
        (Ok(params), Some(_)) => {
            let delay = {
                let mut inner = shared.lock();
                let index = inner.delays.iter().position(|(m, _)| *m == method);
                index.and_then(|i| inner.delays.remove(i)).map(|(_, delay)| delay)
            };
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let fault = {
                let mut inner = shared.lock();
                let timeout = inner.fault_timeout;
                let polling = method == "getupdates";
                inner
                    .faults
                    .as_mut()
                    .and_then(|plan| plan.draw(|fault| !(polling && fault == Fault::Timeout)))
                    .map(|f| (f, timeout))
            };
            if let Some((fault, timeout)) = fault {
                return fault_response(&shared, fault, timeout, method, Ok(params.clone()), at).await;
            }
            let injected = {
                let mut inner = shared.lock();
                let index = inner.failures.iter().position(|(m, _, _)| *m == method);
                index.and_then(|i| inner.failures.remove(i))
            };
            match injected {
                Some((_, status, retry_after)) => Err(injected_error(status, retry_after)),
                None if method == "getupdates" => get_updates(&shared, params).await,
                None => shared.lock().dispatch(&method, params),
            }
        }
    };
    let (status, body) = match result {
        Ok(result) => (200, json!({"ok": true, "result": result})),
        Err(error) => (error.status, error.body()),
    };
    let params = params.unwrap_or_else(|error| json!({ "unparsed": error }));
    shared.lock().calls.push(Call { method, params, status, at });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(body)).into_response()
}

/// The answer to a call that a fault plan made fail, recorded like any call.
async fn fault_response(
    shared: &Shared,
    fault: Fault,
    timeout: Duration,
    method: String,
    params: Result<Value, String>,
    at: Instant,
) -> Response {
    let (status, body) = match fault {
        Fault::RateLimited => {
            let error =
                ApiErr { status: 429, description: "Too Many Requests: retry after 1".into(), retry_after: Some(1) };
            (429, error.body())
        }
        Fault::Server => (500, ApiErr::new(500, "Internal Server Error").body()),
        Fault::Timeout => {
            tokio::time::sleep(timeout).await;
            (504, ApiErr::new(504, "Gateway Timeout").body())
        }
        Fault::Garbage => (200, Value::String("<html>502 Bad Gateway</html>".into())),
    };
    let params = params.unwrap_or_else(|error| json!({ "unparsed": error }));
    shared.lock().calls.push(Call { method, params, status, at });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    match body {
        Value::String(text) => (status, text).into_response(),
        body => (status, axum::Json(body)).into_response(),
    }
}

/// getUpdates: confirms updates below `offset`, then answers as soon as any are queued, or
/// after min(timeout, 2) seconds with none.
async fn get_updates(shared: &Shared, params: &Value) -> Result<Value, ApiErr> {
    let offset = int(params, "offset")?;
    let limit = int(params, "limit")?.unwrap_or(100).clamp(1, 100) as usize;
    let timeout = int(params, "timeout")?.unwrap_or(0).max(0) as u64;
    let allowed = json_param(params, "allowed_updates")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout).min(MAX_POLL);
    let generation = {
        let mut inner = shared.lock();
        if inner.webhook.is_some() {
            return Err(ApiErr::new(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the \
                 webhook first",
            ));
        }
        if let Some(allowed) = allowed {
            let list = allowed.as_array().ok_or_else(|| bad("can't parse allowed_updates JSON object"))?;
            let set: HashSet<String> = list.iter().filter_map(Value::as_str).map(str::to_string).collect();
            // An empty list means Telegram's default set; leaving the parameter out keeps the last one.
            inner.allowed = if set.is_empty() { None } else { Some(set) };
        }
        match offset {
            // A negative offset keeps only that many of the newest updates, forgetting the rest.
            Some(offset) if offset < 0 => {
                let keep = offset.unsigned_abs() as usize;
                while inner.queue.len() > keep {
                    inner.queue.pop_front();
                }
            }
            Some(offset) => {
                inner.queue.retain(|(id, _)| *id >= offset);
                inner.confirmed_below = inner.confirmed_below.max(offset);
            }
            None => {}
        }
        inner.poll_generation += 1;
        inner.poll_generation
    };
    // A long poll still waiting is superseded, as Telegram answers it with 409.
    shared.wake.notify_waiters();
    loop {
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        // Registered before looking, so a push between the look and the wait is not missed.
        notified.as_mut().enable();
        {
            let inner = shared.lock();
            if inner.poll_generation != generation {
                return Err(ApiErr::new(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is \
                     running",
                ));
            }
            if !inner.queue.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(inner.queue.iter().take(limit).map(|(_, update)| update.clone()).collect());
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The answer for a failure a test injected.
fn injected_error(status: u16, retry_after: Option<u32>) -> ApiErr {
    let description = match status {
        400 => "Bad Request: injected failure".to_string(),
        401 => "Unauthorized".to_string(),
        403 => "Forbidden: bot was blocked by the user".to_string(),
        404 => "Not Found".to_string(),
        409 => "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
            .to_string(),
        429 => format!("Too Many Requests: retry after {}", retry_after.unwrap_or(1)),
        500..=599 => "Internal Server Error".to_string(),
        _ => "Injected failure".to_string(),
    };
    ApiErr { status, description, retry_after }
}

/// The request's parameters: query string, then the body (JSON, form or multipart).
fn parse_params(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Value, String> {
    let mut params = Map::new();
    if let Some(query) = uri.query() {
        params.extend(parse_form(query));
    }
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let content_type_lower = content_type.to_ascii_lowercase();
    if body.is_empty() {
    } else if content_type_lower.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => params.extend(object),
            _ => return Err("can't parse JSON object".into()),
        }
    } else if content_type_lower.starts_with("multipart/form-data") {
        let boundary = content_type
            .split(';')
            .filter_map(|part| part.trim().strip_prefix("boundary="))
            .next()
            .map(|b| b.trim_matches('"').to_string())
            .ok_or("multipart body without boundary")?;
        params.extend(parse_multipart(body, &boundary));
    } else {
        // Telegram also takes application/x-www-form-urlencoded, the default for a bare body.
        params.extend(parse_form(&String::from_utf8_lossy(body)));
    }
    Ok(Value::Object(params))
}

/// Fields of a form, as strings: the parameter helpers parse numbers and JSON from strings, as
/// Telegram does.
fn parse_form(form: &str) -> Map<String, Value> {
    form.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            (decode(key), Value::String(decode(value)))
        })
        .collect()
}

/// The text fields of a multipart/form-data body; file parts are recorded as "<file>".
fn parse_multipart(body: &[u8], boundary: &str) -> Map<String, Value> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Map::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, value)) = part.split_once("\r\n\r\n") else { continue };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let disposition = head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition"));
        let Some(disposition) = disposition else { continue };
        let Some(name) = disposition.split("name=\"").nth(1).and_then(|rest| rest.split('"').next()) else {
            continue;
        };
        let value = if disposition.contains("filename=") { "<file>" } else { value };
        fields.insert(name.to_string(), json!(value));
    }
    fields
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An integer parameter; Telegram also takes integers written as strings.
fn int(params: &Value, key: &str) -> Result<Option<i64>, ApiErr> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| bad(format!("invalid {key} specified"))),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad(format!("invalid {key} specified"))),
        Some(_) => Err(bad(format!("invalid {key} specified"))),
    }
}

fn string(params: &Value, key: &str) -> Result<Option<String>, ApiErr> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(bad(format!("field \"{key}\" must be of type String"))),
    }
}

fn boolean(params: &Value, key: &str) -> bool {
    match params.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// A JSON-serialized parameter: an object or array, or a string holding one (form bodies).
fn json_param(params: &Value, key: &str) -> Result<Option<Value>, ApiErr> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            serde_json::from_str(s).map(Some).map_err(|_| bad(format!("can't parse {key} JSON object")))
        }
        Some(other) => Ok(Some(other.clone())),
    }
}

/// The language_code parameter: empty or a two-letter ISO 639-1 code.
fn language(params: &Value) -> Result<String, ApiErr> {
    let code = string(params, "language_code")?.unwrap_or_default();
    if code.is_empty() || (code.len() == 2 && code.chars().all(|c| c.is_ascii_lowercase())) {
        Ok(code)
    } else {
        Err(bad("invalid language code specified"))
    }
}

/// A command scope as a map key; no scope is the default scope.
fn scope_key(scope: Option<Value>) -> String {
    scope.unwrap_or_else(|| json!({"type": "default"})).to_string()
}

/// reply_parameters (or the older reply_to_message_id): the target and whether a missing
/// target is allowed.
fn reply_param(params: &Value) -> Result<(Option<i64>, bool), ApiErr> {
    if let Some(reply) = json_param(params, "reply_parameters")? {
        let id = int(&reply, "message_id")?.ok_or_else(|| bad("message to be replied not found"))?;
        return Ok((Some(id), boolean(&reply, "allow_sending_without_reply")));
    }
    Ok((int(params, "reply_to_message_id")?, boolean(params, "allow_sending_without_reply")))
}

/// The text users would see and its entities, or Telegram's refusal.
fn format_text(raw: &str, params: &Value, edit: bool) -> Result<(String, Vec<Value>), ApiErr> {
    if raw.is_empty() {
        return Err(bad("message text is empty"));
    }
    let mode = string(params, "parse_mode")?.unwrap_or_default();
    let (plain, entities) = match mode.to_ascii_lowercase().as_str() {
        "" => {
            let entities = json_param(params, "entities")?.and_then(|e| e.as_array().cloned()).unwrap_or_default();
            (raw.to_string(), entities)
        }
        "html" => parse_html(raw).map_err(|reason| bad(format!("can't parse entities: {reason}")))?,
        "markdown" | "markdownv2" => {
            return Err(bad(format!("fake_telegram does not implement parse_mode {mode}; fixbot sends HTML")));
        }
        _ => return Err(bad("unsupported parse_mode")),
    };
    let (plain, entities) = trim(plain, entities);
    if plain.is_empty() {
        return Err(bad("message must be non-empty"));
    }
    if plain.chars().count() > MAX_TEXT {
        // Telegram words the same error differently for edits.
        return Err(bad(if edit { "MESSAGE_TOO_LONG" } else { "message is too long" }));
    }
    Ok((plain, entities))
}

/// Strips leading and trailing whitespace as Telegram does, moving entities with the text.
fn trim(plain: String, entities: Vec<Value>) -> (String, Vec<Value>) {
    let start = plain.len() - plain.trim_start().len();
    let body = plain.trim();
    let lead = plain[..start].encode_utf16().count();
    let end = lead + body.encode_utf16().count();
    let entities = entities
        .into_iter()
        .filter_map(|mut entity| {
            let offset = entity.get("offset")?.as_u64()? as usize;
            let length = entity.get("length")?.as_u64()? as usize;
            let from = offset.max(lead);
            let to = (offset + length).min(end);
            if to <= from {
                return None;
            }
            entity["offset"] = json!(from - lead);
            entity["length"] = json!(to - from);
            Some(entity)
        })
        .collect();
    (body.to_string(), entities)
}

/// reply_markup, checked like Telegram checks inline keyboards. An inline keyboard with no
/// buttons is no keyboard. `inline_only` is for edits, which take nothing else.
fn markup_param(params: &Value, inline_only: bool) -> Result<Option<Value>, ApiErr> {
    let Some(markup) = json_param(params, "reply_markup")? else { return Ok(None) };
    if let Some(rows) = markup.get("inline_keyboard") {
        let rows = rows
            .as_array()
            .ok_or_else(|| bad("can't parse inline keyboard markup: field \"inline_keyboard\" must be an Array"))?;
        let mut count = 0;
        for row in rows {
            let row =
                row.as_array().ok_or_else(|| bad("can't parse inline keyboard markup: a row must be an Array"))?;
            for button in row {
                check_button(button)?;
                count += 1;
            }
        }
        return Ok(if count == 0 { None } else { Some(json!({ "inline_keyboard": rows })) });
    }
    if inline_only {
        return Err(bad("inline keyboard expected"));
    }
    if ["keyboard", "remove_keyboard", "force_reply"].iter().any(|k| markup.get(k).is_some()) {
        // Accepted, but a Message shows only inline keyboards.
        return Ok(Some(markup));
    }
    Err(bad("can't parse reply keyboard markup JSON object"))
}

fn check_button(button: &Value) -> Result<(), ApiErr> {
    let unallowed = || bad("can't parse InlineKeyboardButton: Text buttons are not allowed in the inline keyboard");
    let text = button
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("can't parse inline keyboard button: Field \"text\" must be of type String"))?;
    if text.trim().is_empty() {
        return Err(bad("BUTTON_TEXT_INVALID"));
    }
    if let Some(data) = button.get("callback_data") {
        let data = data
            .as_str()
            .ok_or_else(|| bad("can't parse inline keyboard button: Field \"callback_data\" must be of type String"))?;
        return match data.len() {
            // Telegram takes empty data for no data at all.
            0 => Err(unallowed()),
            1..=64 => Ok(()),
            _ => Err(bad("BUTTON_DATA_INVALID")),
        };
    }
    if let Some(url) = button.get("url") {
        let url = url.as_str().unwrap_or_default();
        let scheme_ok = ["http://", "https://", "tg://"].iter().any(|s| url.to_ascii_lowercase().starts_with(s));
        return if scheme_ok && !url.contains(char::is_whitespace) { Ok(()) } else { Err(bad("BUTTON_URL_INVALID")) };
    }
    if OTHER_BUTTON_KINDS.iter().any(|k| button.get(k).is_some()) {
        return Ok(());
    }
    Err(unallowed())
}

/// An inline keyboard as (label, callback_data or url) rows.
fn buttons_of(markup: &Value) -> Vec<Vec<(String, String)>> {
    let rows = markup.get("inline_keyboard").and_then(Value::as_array).cloned().unwrap_or_default();
    rows.iter()
        .map(|row| {
            row.as_array()
                .map(|row| {
                    row.iter()
                        .map(|button| {
                            let field = |k: &str| button.get(k).and_then(Value::as_str).map(str::to_string);
                            let label = field("text").unwrap_or_default();
                            let data = field("callback_data").or_else(|| field("url")).unwrap_or_default();
                            (label, data)
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// An open HTML tag while parsing.
struct Open {
    tag: String,
    /// href for a, the language for code (and for pre, from a code inside it).
    arg: Option<String>,
    /// Where its text starts, in UTF-16 code units as entity offsets are.
    start: usize,
    expandable: bool,
}

/// Telegram's HTML parse mode: the plain text and its entities, or why it cannot be parsed
/// (worded like Telegram's, with byte offsets).
fn parse_html(src: &str) -> Result<(String, Vec<Value>), String> {
    let b = src.as_bytes();
    let mut plain = String::new();
    let mut utf16 = 0;
    let mut stack: Vec<Open> = Vec::new();
    let mut entities: Vec<Value> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'&' => {
                let (ch, len) = decode_entity(&src[i..]).ok_or_else(|| {
                    format!("character \"&\" at byte offset {i} starts no supported entity; escape it as \"&amp;\"")
                })?;
                plain.push(ch);
                utf16 += ch.len_utf16();
                i += len;
            }
            b'<' if b.get(i + 1) == Some(&b'/') => {
                let close = src[i..].find('>').map(|p| p + i).ok_or(format!("Unclosed end tag at byte offset {i}"))?;
                let name = src[i + 2..close].trim().to_ascii_lowercase();
                let open = stack.pop().ok_or(format!("Unexpected end tag at byte offset {i}"))?;
                if name != open.tag {
                    return Err(format!(
                        "Unmatched end tag at byte offset {i}, expected \"</{}>\", found \"</{name}>\"",
                        open.tag
                    ));
                }
                close_entity(open, utf16, &mut stack, &mut entities);
                i = close + 1;
            }
            b'<' => {
                let (open, next) = parse_start_tag(src, i, utf16)?;
                stack.push(open);
                i = next;
            }
            _ => {
                let ch = src[i..].chars().next().expect("i is on a char boundary");
                plain.push(ch);
                utf16 += ch.len_utf16();
                i += ch.len_utf8();
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("Can't find end tag corresponding to start tag \"{}\"", open.tag));
    }
    entities.sort_by_key(|e| (e["offset"].as_u64(), std::cmp::Reverse(e["length"].as_u64())));
    Ok((plain, entities))
}

/// Parses the start tag at `begin`; returns it and the byte after its `>`.
fn parse_start_tag(src: &str, begin: usize, utf16: usize) -> Result<(Open, usize), String> {
    let b = src.as_bytes();
    let unclosed = || format!("Unclosed start tag at byte offset {begin}");
    let mut j = begin + 1;
    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
        j += 1;
    }
    if j >= b.len() {
        return Err(unclosed());
    }
    let tag = src[begin + 1..j].to_ascii_lowercase();
    if !HTML_TAGS.contains(&tag.as_str()) {
        return Err(format!("Unsupported start tag \"{tag}\" at byte offset {begin}"));
    }
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut expandable = false;
    loop {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= b.len() {
            return Err(unclosed());
        }
        if b[j] == b'>' {
            j += 1;
            break;
        }
        let name_start = j;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b'_') {
            j += 1;
        }
        let name = src[name_start..j].to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!("Empty attribute name in the tag \"{tag}\" at byte offset {begin}"));
        }
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= b.len() || b[j] != b'=' {
            if tag == "blockquote" && name == "expandable" {
                expandable = true;
                continue;
            }
            return Err(format!(
                "Expected equal sign in declaration of an attribute of the tag \"{tag}\" at byte offset {begin}"
            ));
        }
        j += 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= b.len() {
            return Err(unclosed());
        }
        let value = if b[j] == b'"' || b[j] == b'\'' {
            let quote = b[j] as char;
            let end = src[j + 1..]
                .find(quote)
                .map(|p| p + j + 1)
                .ok_or(format!("Unclosed end of attribute value in the tag \"{tag}\" at byte offset {begin}"))?;
            let raw = &src[j + 1..end];
            j = end + 1;
            decode_attribute(raw)
                .ok_or(format!("Unsupported HTML entity in an attribute of the tag \"{tag}\" at byte offset {begin}"))?
        } else {
            let start = j;
            while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                j += 1;
            }
            src[start..j].to_string()
        };
        attributes.push((name, value));
    }
    let attribute = |name: &str| attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let arg = match tag.as_str() {
        "a" => {
            let href = attribute("href").filter(|h| !h.is_empty());
            Some(href.ok_or(format!("Tag \"a\" must have a non-empty attribute \"href\" at byte offset {begin}"))?)
        }
        "span" => {
            if attribute("class").as_deref() != Some("tg-spoiler") {
                return Err(format!("Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"));
            }
            None
        }
        "code" => attribute("class").and_then(|c| c.strip_prefix("language-").map(str::to_string)),
        _ => None,
    };
    Ok((Open { tag, arg, start: utf16, expandable }, j))
}

/// Turns a closed tag into its entity; empty ones are dropped, as Telegram drops them.
fn close_entity(open: Open, end: usize, stack: &mut [Open], entities: &mut Vec<Value>) {
    if open.tag == "code"
        && let Some(parent) = stack.last_mut().filter(|p| p.tag == "pre")
    {
        // <pre><code class="language-x"> gives the pre block its language.
        if open.arg.is_some() {
            parent.arg = open.arg;
        }
        return;
    }
    let length = end - open.start;
    if length == 0 {
        return;
    }
    let mut entity = json!({"offset": open.start, "length": length});
    let kind = match open.tag.as_str() {
        "b" | "strong" => "bold",
        "i" | "em" => "italic",
        "u" | "ins" => "underline",
        "s" | "strike" | "del" => "strikethrough",
        "tg-spoiler" | "span" => "spoiler",
        "code" => "code",
        "pre" => {
            if let Some(language) = &open.arg {
                entity["language"] = json!(language);
            }
            "pre"
        }
        "blockquote" if open.expandable => "expandable_blockquote",
        "blockquote" => "blockquote",
        "a" => match open.arg.as_deref().and_then(link_url) {
            Some(url) => {
                entity["url"] = json!(url);
                "text_link"
            }
            // Telegram silently drops links it cannot use.
            None => return,
        },
        _ => return,
    };
    entity["type"] = json!(kind);
    entities.push(entity);
}

/// The URL Telegram would keep for a link, or `None` when it would drop it.
fn link_url(href: &str) -> Option<String> {
    if href.contains(char::is_whitespace) || !href.is_ascii() {
        return None;
    }
    let lower = href.to_ascii_lowercase();
    if ["http://", "https://", "tg://"].iter().any(|s| lower.starts_with(s) && lower.len() > s.len()) {
        return Some(href.to_string());
    }
    if !lower.contains("://") && lower.contains('.') {
        return Some(format!("http://{href}"));
    }
    None
}

/// The character an HTML entity at the start of `s` stands for, and the entity's length.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    for (name, ch) in [("&lt;", '<'), ("&gt;", '>'), ("&amp;", '&'), ("&quot;", '"')] {
        if s.starts_with(name) {
            return Some((ch, name.len()));
        }
    }
    let rest = s.strip_prefix("&#")?;
    let (digits, radix, prefix) = match rest.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16, 3),
        None => (rest, 10, 2),
    };
    let end = digits.find(';')?;
    let number = &digits[..end];
    if number.is_empty() || number.len() > 8 || !number.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let ch = char::from_u32(u32::from_str_radix(number, radix).ok()?).filter(|c| *c != '\0')?;
    Some((ch, prefix + end + 1))
}

/// An attribute value with its entities decoded.
fn decode_attribute(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    while i < raw.len() {
        if raw.as_bytes()[i] == b'&' {
            let (ch, len) = decode_entity(&raw[i..])?;
            out.push(ch);
            i += len;
        } else {
            let ch = raw[i..].chars().next()?;
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    Some(out)
}

/// Entities Telegram finds in a user's text: bot commands and @mentions.
fn user_entities(text: &str) -> Vec<Value> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut entities = Vec::new();
    let mut previous: Option<char> = None;
    for (start, first) in text.char_indices() {
        let at_word_start = previous.is_none_or(char::is_whitespace);
        previous = Some(first);
        if !at_word_start || (first != '/' && first != '@') {
            continue;
        }
        let rest = &text[start + 1..];
        let name_len = rest.find(|c: char| !word(c)).unwrap_or(rest.len());
        let mut len = 1 + name_len;
        let kind = if first == '/' {
            if name_len == 0 || name_len > 64 {
                continue;
            }
            // "/cmd@botname" is one command.
            if let Some(after) = rest[name_len..].strip_prefix('@') {
                let bot_len = after.find(|c: char| !word(c)).unwrap_or(after.len());
                if bot_len >= 3 {
                    len += 1 + bot_len;
                }
            }
            "bot_command"
        } else {
            if !(5..=32).contains(&name_len) {
                continue;
            }
            "mention"
        };
        let offset = text[..start].encode_utf16().count();
        let length = text[start..start + len].encode_utf16().count();
        entities.push(json!({"type": kind, "offset": offset, "length": length}));
    }
    entities
}

fn user_json(user: &User) -> Value {
    let mut value = json!({"id": user.id, "is_bot": false, "first_name": format!("User{}", user.id)});
    if !user.language.is_empty() {
        value["language_code"] = json!(user.language);
    }
    value
}

fn bot_json() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Fixbot Test", "username": BOT_USERNAME})
}

fn me_json() -> Value {
    let mut me = bot_json();
    let fields = json!({
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
        "can_connect_to_business": false,
        "has_main_web_app": false,
    });
    me.as_object_mut().expect("an object").extend(fields.as_object().expect("an object").clone());
    me
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(1)
}

/// Calls, one a line, for panic messages.
fn describe(calls: &[Call]) -> String {
    if calls.is_empty() {
        return "  (none)".into();
    }
    calls.iter().map(|c| format!("  {} {} {}", c.status, c.method, c.params)).collect::<Vec<_>>().join("\n")
}
