//! A strict fake of Discord (REST API v10 and the gateway websocket), served on 127.0.0.1 so the
//! Discord front-end can be tested end to end without the network.
//!
//! It is strict on purpose: where Discord refuses a request (content over 2000 characters, six
//! buttons in a row, a custom_id over 100 characters, answering an interaction twice or after
//! three seconds, editing someone else's message…) the fake refuses it too, with the status,
//! code and `errors` tree Discord uses, so a bot that passes here does not first meet those
//! errors in production. It never answers 5xx unless a test injects it.
//!
//! The gateway speaks plain JSON text frames: HELLO, IDENTIFY → READY, heartbeats, RESUME →
//! replay → RESUMED, INVALID_SESSION, RECONNECT and close codes. Users are simulated with
//! [`FakeDiscord::slash`], [`FakeDiscord::press`], [`FakeDiscord::submit`] and
//! [`FakeDiscord::message`]; what the bot did is read back with [`FakeDiscord::calls`],
//! [`FakeDiscord::posts`], [`FakeDiscord::responses`] and the per-message helpers.
//!
//! Dispatches go to the live connection; while none is live they are queued in the session and
//! replayed, in order and with their sequence numbers, on RESUME. As on Discord, a new IDENTIFY
//! starts a new session and what the old one had not delivered is lost.
//!
//! Sharding is Discord's: each IDENTIFY with `shard: [id, total]` starts a session of its own
//! (own session id, sequence numbers and replay), a guild's events go to shard
//! `(guild_id >> 22) % total` ([`shard_of`]), DMs to shard 0, and a new IDENTIFY of a shard ends
//! only that shard's old session. `GET /gateway/bot` recommends [`FakeDiscord::recommend_shards`]
//! shards; [`FakeDiscord::require_shards`] closes smaller IDENTIFYs with 4011.
//!
//! To tell bot processes apart, which Discord cannot, each may use its own
//! [`FakeDiscord::api_url_for`]: its REST calls ([`Call::instance`]), the gateway URL it is given,
//! and so its connections, IDENTIFYs ([`Identify::instance`]) and deliveries
//! ([`Delivery::instance`]) then carry that label.

// The fixture offers more than any single test module uses.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as WsRequest, Response as WsResponse};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::fault_plan::{Fault, FaultPlan};

/// The application id (also the id in interaction webhook paths).
pub const APP_ID: u64 = 900;
/// The bot user's id.
pub const BOT_ID: u64 = 901;
/// The bot user's username.
pub const BOT_USERNAME: &str = "fixbot-test";
/// The only token the fake accepts, without the "Bot " prefix.
const TOKEN: &str = "OTAx.fake-discord.test-token";
/// Short, so heartbeating is exercised within a test's few seconds.
const HEARTBEAT_INTERVAL_MS: u64 = 1000;
/// Discord fails an interaction the bot has not answered within three seconds.
const ACK_WINDOW: Duration = Duration::from_secs(3);
/// Longest message content, in characters.
const MAX_CONTENT: usize = 2000;
/// Milliseconds from the Unix epoch to Discord's, the base of snowflakes.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// Gateway intents Discord knows; any other bit closes the connection with 4013.
const KNOWN_INTENTS: u64 = 0x1_FFFF | (1 << 20) | (1 << 21) | (1 << 24) | (1 << 25);
const GUILD_MESSAGES: u64 = 1 << 9;
const DIRECT_MESSAGES: u64 = 1 << 12;
const MESSAGE_CONTENT: u64 = 1 << 15;
/// GATEWAY_PRESENCE_LIMITED | GATEWAY_GUILD_MEMBERS_LIMITED | GATEWAY_MESSAGE_CONTENT_LIMITED:
/// a bot in under 100 guilds may use every privileged intent.
const APP_FLAGS: u64 = (1 << 13) | (1 << 15) | (1 << 19);
/// What the bot and users may do in every channel: view, send, embed, attach, read history,
/// add reactions, use application commands, create public threads, send in threads.
const PERMISSIONS: u64 =
    (1 << 6) | (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31) | (1 << 35) | (1 << 38);
/// The Manage Messages permission, which staff commands ask for.
pub const MANAGE_MESSAGES: u64 = 1 << 13;
/// The first path segment of an instance's URLs: `/instance/<label>/api/v10/...`.
const INSTANCE_PREFIX: &str = "instance";
/// Message flags.
const SUPPRESS_EMBEDS: u64 = 1 << 2;
const EPHEMERAL: u64 = 1 << 6;
const LOADING: u64 = 1 << 7;
const SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;
const COMPONENTS_V2: u64 = 1 << 15;

/// Where a simulated user acts.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    /// The guild, `None` for a DM channel.
    pub guild: Option<u64>,
    /// The channel (a DM channel, a guild text channel or a thread).
    pub channel: u64,
}

impl Place {
    /// The DM channel `channel` (between the bot and whichever user acts in it).
    pub fn dm(channel: u64) -> Place {
        Place { guild: None, channel }
    }

    /// Text channel (or thread) `channel` of guild `guild`.
    pub fn guild(guild: u64, channel: u64) -> Place {
        Place { guild: Some(guild), channel }
    }
}

/// A shard as a client identifies it; a client that sends none is shard 0 of 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    /// The shard's number, below `total`.
    pub id: u64,
    /// How many shards the bot's gateway traffic is split into.
    pub total: u64,
}

impl Shard {
    /// Shard `id` of `total`.
    pub const fn new(id: u64, total: u64) -> Shard {
        Shard { id, total }
    }

    /// Whether Discord sends this shard the events of `guild` (`None`: a DM, which goes to
    /// shard 0).
    pub fn receives(self, guild: Option<u64>) -> bool {
        match guild {
            Some(guild) => shard_of(guild, self.total) == self.id,
            None => self.id == 0,
        }
    }
}

/// The shard of `total` that receives the events of `guild`: Discord's `(guild_id >> 22) % total`.
pub fn shard_of(guild: u64, total: u64) -> u64 {
    (guild >> 22) % total
}

/// One IDENTIFY the fake accepted.
#[derive(Clone, Debug)]
pub struct Identify {
    /// The shard it identified as.
    pub shard: Shard,
    /// The instance label of its connection ([`FakeDiscord::api_url_for`]).
    pub instance: Option<String>,
    /// The session it started.
    pub session: String,
}

/// One write of an interaction to a gateway connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The shard of the session it was dispatched in.
    pub shard: Shard,
    /// The connection, numbered from 1 in the order they opened.
    pub connection: u64,
    /// The instance label of that connection.
    pub instance: Option<String>,
}

/// One REST request the bot made.
#[derive(Clone, Debug)]
pub struct Call {
    /// The HTTP method, upper-case.
    pub method: String,
    /// The path without `/api/v10` and without the query string.
    pub path: String,
    /// The JSON body (the `payload_json` part of a multipart body), `Null` when there is none.
    pub body: Value,
    /// The HTTP status answered.
    pub status: u16,
    /// When the request arrived (calls are listed in the order they were answered).
    pub at: Instant,
    /// The instance label of the URL it came through ([`FakeDiscord::api_url_for`]).
    pub instance: Option<String>,
}

/// One message the bot created, or one modal it opened.
#[derive(Clone, Debug)]
pub struct Post {
    /// The channel it went to.
    pub channel: u64,
    /// The message id; 0 for a modal, which is no message.
    pub message: u64,
    /// The content as created (type 7 updates: the content after the update).
    pub content: String,
    /// The buttons, row by row (select menus are left out).
    pub buttons: Vec<Vec<Button>>,
    /// The allowed_mentions object sent with it, if any.
    pub allowed_mentions: Option<Value>,
    /// Whether only the interacting user sees it (flag 64).
    pub ephemeral: bool,
    /// The interaction it answers, for interaction responses and followups.
    pub interaction: Option<u64>,
    /// The modal's data (custom_id, title, components) for a type 9 response.
    pub modal: Option<Value>,
}

/// A button as shown on a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    /// The label ("" when the button shows only an emoji).
    pub label: String,
    /// The custom_id ("" for link buttons, which have a url instead).
    pub custom_id: String,
    /// Whether it is greyed out.
    pub disabled: bool,
}

/// The fake Discord; clones share it.
#[derive(Clone)]
pub struct FakeDiscord {
    shared: Arc<Shared>,
    api_port: u16,
    gateway_port: u16,
}

/// State shared by the servers and the test.
struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test must not turn every later request into a poisoned-lock panic.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A channel the fake knows.
#[derive(Clone, Debug)]
struct Chan {
    /// 0 guild text, 1 DM, 11 public thread, 12 private thread.
    kind: u8,
    guild: Option<u64>,
    /// The DM's user.
    recipient: Option<u64>,
    /// A thread's parent channel.
    parent: Option<u64>,
    name: String,
    created: String,
}

/// A message as Discord currently holds it.
#[derive(Clone, Debug)]
struct Msg {
    id: u64,
    channel: u64,
    guild: Option<u64>,
    /// `None` is the bot.
    author: Option<u64>,
    content: String,
    components: Vec<Value>,
    embeds: Vec<Value>,
    flags: u64,
    /// Message type: 0 default, 19 reply, 20 chat input command.
    kind: u8,
    timestamp: String,
    edited: Option<String>,
    reference: Option<u64>,
    /// The interaction it answers.
    interaction: Option<u64>,
    tts: bool,
    mentions: Vec<u64>,
    /// The thread started from it.
    thread: Option<u64>,
}

/// An interaction dispatched to the bot.
#[derive(Clone, Debug)]
struct Itx {
    id: u64,
    token: String,
    /// 2 command, 3 component, 5 modal submit.
    kind: u8,
    place: Place,
    user: u64,
    /// When it was written to a live connection; the three seconds run from here.
    sent_at: Option<Instant>,
    /// The callback type it was answered with.
    ack: Option<u8>,
    /// How long after sending the (last) callback attempt came.
    ack_delay: Option<Duration>,
    /// The message `@original` stands for.
    original: Option<u64>,
    /// The message a component sits on, or a modal's source message.
    source: Option<u64>,
    /// A type 5 whose loading message has not been filled yet.
    deferred_pending: bool,
    /// For a modal submit: the interaction that opened the modal.
    opener: Option<u64>,
    responses: Vec<Value>,
    /// Every write of it to a connection, replays included.
    deliveries: Vec<Delivery>,
}

/// A modal the bot opened for a user.
#[derive(Clone, Debug)]
struct Modal {
    user: u64,
    channel: u64,
    custom_id: String,
    data: Value,
    /// The message of the component interaction that opened it.
    source: Option<u64>,
    /// The interaction answered with it.
    opener: u64,
}

/// A failure a test injected.
#[derive(Clone, Debug)]
struct Failure {
    method: String,
    prefix: String,
    status: u16,
    retry_after: Option<f64>,
}

/// A gateway session: one shard's events, and what a RESUME can pick up.
#[derive(Debug)]
struct Session {
    /// The order sessions started in, from 1; connections name their session by it.
    number: u64,
    id: String,
    shard: Shard,
    /// The intents it was identified with: they decide which messages it is sent.
    intents: u64,
    seq: u64,
    /// Every dispatch of the session: (seq, payload, interaction it carries).
    log: Vec<(u64, String, Option<u64>)>,
    /// False once Discord would refuse to resume it.
    valid: bool,
    /// The connection it is delivered on, while one is live.
    live: Option<u64>,
}

impl Session {
    fn dispatches(&self) -> Vec<Value> {
        self.log.iter().map(|(_, payload, _)| serde_json::from_str(payload).expect("dispatches are JSON")).collect()
    }
}

/// What a connection's writer sends.
#[derive(Debug)]
enum Out {
    Text(String),
    Close(u16, &'static str),
}

/// An open websocket.
#[derive(Debug)]
struct Conn {
    tx: mpsc::UnboundedSender<Out>,
    /// The session IDENTIFYed or RESUMEd on this connection.
    session: Option<u64>,
    /// A close frame was sent; nothing more goes out.
    closing: bool,
    /// The instance label of the URL it connected to.
    instance: Option<String>,
}

#[derive(Default)]
struct Inner {
    last_id: u64,
    gateway_url: String,
    calls: Vec<Call>,
    posts: Vec<Post>,
    /// Indexes into `posts` per channel, so a test with many people can follow one cheaply.
    posts_by_channel: HashMap<u64, Vec<usize>>,
    messages: HashMap<u64, Msg>,
    channels: HashMap<u64, Chan>,
    /// user → DM channel.
    dms: HashMap<u64, u64>,
    /// The app language of users who set one; others send `en-US`.
    locales: HashMap<u64, String>,
    /// Members' permissions in every channel and their roles, where a test set them.
    members: HashMap<u64, (u64, Vec<u64>)>,
    threads: Vec<(u64, u64, String)>,
    interactions: HashMap<u64, Itx>,
    tokens: HashMap<String, u64>,
    modals: Vec<Modal>,
    /// Registered commands by scope (`None` global, `Some(guild)`), as Discord returned them.
    commands: BTreeMap<Option<u64>, Vec<Value>>,
    /// Ids given to commands used while none are registered.
    synthetic_commands: HashMap<String, u64>,
    failures: Vec<Failure>,
    /// Random faults on REST calls, when a test asked for them.
    faults: Option<FaultPlan>,
    // The gateway.
    next_conn: u64,
    conns: HashMap<u64, Conn>,
    /// The current sessions, oldest first: one per shard at most.
    sessions: Vec<Session>,
    sessions_started: u64,
    identified: Vec<Identify>,
    resumes: usize,
    heartbeats: usize,
    connections: Vec<String>,
    intents: Option<u64>,
    /// The shard count GET /gateway/bot recommends.
    recommended_shards: u64,
    /// IDENTIFYs with a smaller shard total are closed with 4011.
    required_shards: u64,
}

/// An error answer.
#[derive(Debug)]
struct ApiErr {
    status: u16,
    body: Value,
    retry_after: Option<f64>,
}

impl ApiErr {
    fn new(status: u16, code: u64, message: &str) -> ApiErr {
        ApiErr { status, body: json!({"message": message, "code": code}), retry_after: None }
    }
}

fn not_found() -> ApiErr {
    ApiErr::new(404, 0, "404: Not Found")
}

fn unknown_message() -> ApiErr {
    ApiErr::new(404, 10008, "Unknown Message")
}

fn unknown_channel() -> ApiErr {
    ApiErr::new(404, 10003, "Unknown Channel")
}

fn unknown_webhook() -> ApiErr {
    ApiErr::new(404, 10015, "Unknown Webhook")
}

fn unknown_interaction() -> ApiErr {
    ApiErr::new(404, 10062, "Unknown interaction")
}

fn empty_message() -> ApiErr {
    ApiErr::new(400, 50006, "Cannot send an empty message")
}

/// A successful answer.
enum Reply {
    Json(Value),
    NoContent,
}

/// Field errors collected while checking a body, reported as Discord's `errors` tree.
#[derive(Default)]
struct Errors(Vec<(Vec<String>, &'static str, String)>);

impl Errors {
    fn add(&mut self, path: &[String], code: &'static str, message: impl Into<String>) {
        self.0.push((path.to_vec(), code, message.into()));
    }

    fn check(self) -> Result<(), ApiErr> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut tree = Value::Object(Map::new());
        for (path, code, message) in self.0 {
            let mut node = &mut tree;
            for key in &path {
                node = node
                    .as_object_mut()
                    .expect("error nodes are objects")
                    .entry(key.clone())
                    .or_insert_with(|| json!({}));
            }
            let list =
                node.as_object_mut().expect("error nodes are objects").entry("_errors").or_insert_with(|| json!([]));
            list.as_array_mut().expect("_errors is a list").push(json!({"code": code, "message": message}));
        }
        Err(ApiErr {
            status: 400,
            body: json!({"message": "Invalid Form Body", "code": 50035, "errors": tree}),
            retry_after: None,
        })
    }
}

/// `path` with `key` appended.
fn at(path: &[String], key: impl ToString) -> Vec<String> {
    let mut path = path.to_vec();
    path.push(key.to_string());
    path
}

/// A message body as the bot sent it.
#[derive(Default, Debug)]
struct Outgoing {
    /// `Some("")` for an explicit null (clears the content of an edit).
    content: Option<String>,
    components: Option<Vec<Value>>,
    embeds: Option<Vec<Value>>,
    flags: Option<u64>,
    allowed_mentions: Option<Value>,
    reference: Option<(u64, bool)>,
    tts: bool,
    /// Attachments, stickers or a poll: a message with only these is not empty.
    other_payload: bool,
}

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.content.as_deref().is_none_or(|c| c.trim().is_empty())
            && self.components.as_ref().is_none_or(Vec::is_empty)
            && self.embeds.as_ref().is_none_or(Vec::is_empty)
            && !self.other_payload
    }
}

impl FakeDiscord {
    /// Binds the REST API and the gateway on free 127.0.0.1 ports and serves both on the
    /// current runtime.
    pub async fn start() -> FakeDiscord {
        let inner = Inner { recommended_shards: 1, required_shards: 1, ..Inner::default() };
        let shared = Arc::new(Shared { inner: Mutex::new(inner) });
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let api_port = api.local_addr().expect("a bound address").port();
        let gateway_port = gateway.local_addr().expect("a bound address").port();
        shared.lock().gateway_url = format!("ws://127.0.0.1:{gateway_port}");
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(api, app).await.expect("the fake Discord API runs");
        });
        tokio::spawn(accept_gateway(shared.clone(), gateway));
        FakeDiscord { shared, api_port, gateway_port }
    }

    /// The base URL to give serenity's `HttpBuilder::proxy`: serenity then sends
    /// `http://127.0.0.1:PORT/api/v10/...`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// Like [`FakeDiscord::api_url`], for one of several bot processes: its calls, and the
    /// connections to the gateway URL it is given, carry `instance` (letters, digits and `-`).
    pub fn api_url_for(&self, instance: &str) -> String {
        assert!(valid_instance(instance), "an instance label is letters, digits and -, not {instance:?}");
        format!("http://127.0.0.1:{}/{INSTANCE_PREFIX}/{instance}", self.api_port)
    }

    /// The gateway URL GET /gateway answers with.
    pub fn gateway_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.gateway_port)
    }

    /// The bot token the fake accepts, without "Bot "; requests must send
    /// `Authorization: Bot <token>`.
    pub fn token(&self) -> &str {
        TOKEN
    }

    /// Polls every 20 ms until `done` holds for the fake; panics after `timeout`, saying it
    /// waited for `what` and listing the REST calls so far.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&FakeDiscord) -> bool, timeout: Duration) {
        self.poll(timeout, || done(self).then_some(()), || format!("waiting for {what}")).await
    }

    /// Waits until a connection has IDENTIFYed or RESUMEd and is live; panics after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) {
        let failure = || {
            let inner = self.shared.lock();
            format!(
                "waiting for a live gateway connection ({} connections, {} identifies, {} resumes)",
                inner.connections.len(),
                inner.identified.len(),
                inner.resumes
            )
        };
        self.poll(timeout, || self.is_live().then_some(()), failure).await
    }

    /// Calls `check` every 20 ms until it gives a value; after `timeout`, panics with
    /// `failure` and the REST calls so far.
    async fn poll<T>(&self, timeout: Duration, check: impl Fn() -> Option<T>, failure: impl Fn() -> String) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check() {
                return found;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} {}; REST calls so far:\n{}", failure(), describe(&self.calls()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many IDENTIFYs were accepted (each started a new session).
    pub fn identifies(&self) -> usize {
        self.shared.lock().identified.len()
    }

    /// Every accepted IDENTIFY, in order: its shard, instance and session.
    pub fn identified(&self) -> Vec<Identify> {
        self.shared.lock().identified.clone()
    }

    /// How many RESUMEs were accepted.
    pub fn resumes(&self) -> usize {
        self.shared.lock().resumes
    }

    /// How many heartbeats were received (and ACKed).
    pub fn heartbeats(&self) -> usize {
        self.shared.lock().heartbeats
    }

    /// The query string of every websocket connection, in order (serenity sends `v=10`).
    pub fn connections(&self) -> Vec<String> {
        self.shared.lock().connections.clone()
    }

    /// Every dispatch (op 0 payload) of the newest session, in sequence order, delivered or
    /// still queued.
    pub fn dispatches(&self) -> Vec<Value> {
        let inner = self.shared.lock();
        inner.sessions.last().map(Session::dispatches).unwrap_or_default()
    }

    /// Every dispatch of `shard`'s current session, as [`FakeDiscord::dispatches`].
    pub fn dispatches_of(&self, shard: Shard) -> Vec<Value> {
        let inner = self.shared.lock();
        inner.sessions.iter().find(|s| s.shard == shard).map(Session::dispatches).unwrap_or_default()
    }

    /// The intents of the last IDENTIFY (also when it was refused for them).
    pub fn intents(&self) -> Option<u64> {
        self.shared.lock().intents
    }

    /// Whether a connection is live (identified or resumed, and not closed).
    pub fn is_live(&self) -> bool {
        self.shared.lock().sessions.iter().any(|s| s.live.is_some())
    }

    /// The shards whose sessions have a live connection, in order.
    pub fn live_shards(&self) -> Vec<Shard> {
        let mut shards: Vec<Shard> =
            self.shared.lock().sessions.iter().filter(|s| s.live.is_some()).map(|s| s.shard).collect();
        shards.sort();
        shards
    }

    /// From now on `GET /gateway/bot` recommends `shards` shards (1 until then).
    pub fn recommend_shards(&self, shards: u64) {
        assert!(shards >= 1, "Discord recommends at least one shard");
        self.shared.lock().recommended_shards = shards;
    }

    /// From now on an IDENTIFY with fewer than `shards` in total is closed with 4011 ("Sharding
    /// required"), as Discord closes a shard that would hold too many guilds.
    pub fn require_shards(&self, shards: u64) {
        self.shared.lock().required_shards = shards;
    }

    /// Closes the live websocket (the newest, with several shards live; with none live, the
    /// newest open one) with `code`. As on Discord, 4000–4003, 4005 and 4008 leave the session
    /// resumable; 4004, 4007, 4009 and 4010–4014 end it, so a RESUME gets INVALID_SESSION.
    /// Panics with no open connection.
    pub fn close_gateway(&self, code: u16) {
        let mut inner = self.shared.lock();
        let open = || inner.conns.iter().filter(|(_, c)| !c.closing).map(|(id, _)| *id).max();
        let target = inner.newest_live().or_else(open).expect("close_gateway: no open gateway connection");
        inner.close(target, code, close_reason(code));
    }

    /// Closes `shard`'s live websocket with `code`, as [`FakeDiscord::close_gateway`] does.
    pub fn close_shard(&self, shard: Shard, code: u16) {
        let mut inner = self.shared.lock();
        let live = inner.sessions.iter().find(|s| s.shard == shard).and_then(|s| s.live);
        let live = live.unwrap_or_else(|| panic!("close_shard: {shard:?} has no live connection"));
        inner.close(live, code, close_reason(code));
    }

    /// Sends RECONNECT (op 7) on the live connection (the newest, with several); the client
    /// should reconnect and RESUME. That session's dispatches from now on are queued for the
    /// RESUME.
    pub fn request_reconnect(&self) {
        let mut inner = self.shared.lock();
        let live = inner.newest_live().expect("request_reconnect: no live gateway connection");
        inner.unlive(live);
        inner.send(live, json!({"op": 7, "d": null, "s": null, "t": null}).to_string());
    }

    /// Sends INVALID_SESSION (op 9) on the live connection (the newest, with several); unless
    /// `resumable`, its session ends and the client must IDENTIFY anew (serenity waits about
    /// 5 s before re-identifying).
    pub fn invalidate_session(&self, resumable: bool) {
        let mut inner = self.shared.lock();
        let live = inner.newest_live().expect("invalidate_session: no live gateway connection");
        let session = inner.conns.get(&live).and_then(|c| c.session);
        inner.unlive(live);
        if !resumable && let Some(session) = session.and_then(|number| inner.session_mut(number)) {
            session.valid = false;
        }
        inner.send(live, json!({"op": 9, "d": resumable, "s": null, "t": null}).to_string());
    }

    /// Makes a channel known, so the bot may post to it before anyone acts there.
    /// For a DM place, `user` is the other side of the DM.
    pub fn add_place(&self, place: Place, user: u64) {
        self.shared.lock().register_place(place, user);
    }

    /// Sets the locale `user`'s Discord app sends with each interaction
    /// (`"fr"`, `"pt-BR"`); users without one send `en-US`.
    pub fn set_locale(&self, user: u64, locale: &str) {
        self.shared.lock().locales.insert(user, locale.to_owned());
    }

    /// Gives `user` these permissions (in every channel) and roles in every
    /// guild, as interactions then carry them in `member`; others have the
    /// permissions every member has and no role.
    pub fn set_member(&self, user: u64, permissions: u64, roles: &[u64]) {
        self.shared.lock().members.insert(user, (permissions, roles.to_vec()));
    }

    /// The DM channel of `user`, if one is known.
    pub fn dm_channel(&self, user: u64) -> Option<u64> {
        self.shared.lock().dms.get(&user).copied()
    }

    /// `user` runs the slash command `name` in `place`, with `options` as Discord sends them,
    /// e.g. `json!([{"name":"error","type":3,"value":"..."}])` (or `json!([])`). Dispatches
    /// INTERACTION_CREATE type 2 and returns the interaction id.
    ///
    /// Once the bot has registered any commands, `name` must be one of them usable in `place`
    /// (a guild's commands only there; DMs only for commands allowing them), and its options
    /// must match the registration: a user could not send anything else. Before any
    /// registration any name is accepted. Panics before the first IDENTIFY, or when no
    /// session's shard receives `place` (as for every simulated user action): Discord delivers
    /// nothing to a bot that never connected, nor for a shard nobody runs.
    pub fn slash(&self, place: Place, user: u64, name: &str, options: Value) -> u64 {
        let mut inner = self.shared.lock();
        inner.require_session("slash", place.guild);
        inner.register_place(place, user);
        let options =
            options.as_array().cloned().unwrap_or_else(|| panic!("slash options must be a JSON array, got {options}"));
        let (command_id, command_guild) = inner.command_for(place, name, &options);
        let mut data = json!({"id": command_id.to_string(), "name": name, "type": 1});
        // Users named in options come resolved, as Discord sends them.
        let users: serde_json::Map<String, Value> = options
            .iter()
            .filter(|option| option["type"] == json!(6))
            .filter_map(|option| option["value"].as_str()?.parse::<u64>().ok())
            .map(|user| (user.to_string(), user_json(user)))
            .collect();
        if !users.is_empty() {
            data["resolved"] = json!({ "users": users });
        }
        if !options.is_empty() {
            data["options"] = Value::Array(options);
        }
        if let Some(guild) = command_guild {
            data["guild_id"] = json!(guild.to_string());
        }
        inner.new_interaction(2, place, user, data, None, None)
    }

    /// `user` presses the button `custom_id` on message `message_id` in `place`. Dispatches
    /// INTERACTION_CREATE type 3 and returns the interaction id. Panics unless the message
    /// shows that button enabled: Discord lets nobody press anything else (use
    /// [`FakeDiscord::press_unchecked`] for a stale client pressing what was just removed).
    pub fn press(&self, place: Place, user: u64, message_id: u64, custom_id: &str) -> u64 {
        self.press_inner(place, user, message_id, custom_id, true)
    }

    /// Like [`FakeDiscord::press`] without checking the button is shown: a user whose client
    /// had not yet seen an edit.
    pub fn press_unchecked(&self, place: Place, user: u64, message_id: u64, custom_id: &str) -> u64 {
        self.press_inner(place, user, message_id, custom_id, false)
    }

    /// `user` submits the modal `custom_id` the bot opened for them, with text inputs
    /// `(custom_id, value)`. Dispatches INTERACTION_CREATE type 5 and returns the interaction
    /// id. Panics unless the bot opened that modal for this user in this channel, or if the
    /// fields do not fit it (unknown input, a required one left out, a value outside
    /// min_length..=max_length): Discord's client would not submit that.
    pub fn submit(&self, place: Place, user: u64, custom_id: &str, fields: &[(&str, &str)]) -> u64 {
        let mut inner = self.shared.lock();
        inner.require_session("submit", place.guild);
        inner.register_place(place, user);
        let modal = inner
            .modals
            .iter()
            .rev()
            .find(|m| m.user == user && m.custom_id == custom_id && m.channel == place.channel)
            .cloned()
            .unwrap_or_else(|| {
                panic!("no modal {custom_id:?} was opened for user {user} in channel {}", place.channel)
            });
        let inputs: Vec<Value> = modal.data["components"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|row| row["components"].get(0))
            .cloned()
            .collect();
        for (name, _) in fields {
            assert!(
                inputs.iter().any(|input| input["custom_id"] == *name),
                "modal {custom_id:?} has no text input {name:?}; it has {:?}",
                inputs.iter().map(|i| i["custom_id"].clone()).collect::<Vec<_>>()
            );
        }
        let mut rows = Vec::new();
        for input in &inputs {
            let id = input["custom_id"].as_str().unwrap_or_default();
            let value = fields.iter().find(|(name, _)| *name == id).map(|(_, value)| *value).unwrap_or("");
            let length = value.chars().count() as u64;
            let required = input["required"].as_bool().unwrap_or(true);
            assert!(!(required && value.is_empty()), "modal {custom_id:?}: text input {id:?} is required");
            if !value.is_empty() {
                let min = input["min_length"].as_u64().unwrap_or(0);
                let max = input["max_length"].as_u64().unwrap_or(4000);
                assert!(
                    (min..=max).contains(&length),
                    "modal {custom_id:?}: {id:?} takes {min}..={max} characters, got {length}"
                );
            }
            rows.push(json!({"type": 1, "components": [{"type": 4, "custom_id": id, "value": value}]}));
        }
        let data = json!({"custom_id": custom_id, "components": rows});
        inner.new_interaction(5, place, user, data, modal.source, Some(modal.opener))
    }

    /// `user` writes `content` in `place`: dispatches MESSAGE_CREATE (DMs carry no guild_id)
    /// and returns the message id. As on Discord, nothing is dispatched unless the bot's
    /// intents include GUILD_MESSAGES (guilds) or DIRECT_MESSAGES (DMs), and in guilds the
    /// content arrives empty without MESSAGE_CONTENT unless the bot is mentioned.
    pub fn message(&self, place: Place, user: u64, content: &str) -> u64 {
        let mut inner = self.shared.lock();
        inner.require_session("message", place.guild);
        inner.register_place(place, user);
        let id = inner.next_id();
        let msg = Msg {
            id,
            channel: place.channel,
            guild: place.guild,
            author: Some(user),
            content: content.to_string(),
            components: Vec::new(),
            embeds: Vec::new(),
            flags: 0,
            kind: 0,
            timestamp: iso_now(),
            edited: None,
            reference: None,
            interaction: None,
            tts: false,
            mentions: mentions_in(content),
            thread: None,
        };
        inner.messages.insert(id, msg.clone());
        inner.echo_message(&msg);
        id
    }

    /// Every REST request so far, failed ones included, in the order they were answered.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Polls every 20 ms until `what` holds for the calls so far, and returns them; panics
    /// with the calls so far after `timeout`.
    pub async fn wait_for(&self, what: impl Fn(&[Call]) -> bool, timeout: Duration) -> Vec<Call> {
        let check = || Some(self.calls()).filter(|calls| what(calls));
        self.poll(timeout, check, || "waiting on the bot".to_string()).await
    }

    /// Waits until at least `count` posts exist and returns them all; panics with the calls so
    /// far after `timeout`.
    pub async fn wait_for_posts(&self, count: usize, timeout: Duration) -> Vec<Post> {
        let check = || Some(self.posts()).filter(|posts| posts.len() >= count);
        let failure = || format!("waiting for {count} posts (have {})", self.posts().len());
        self.poll(timeout, check, failure).await
    }

    /// The shard, connection and instance each write of interaction `interaction` to the
    /// gateway went out on, in order (a replay after RESUME is a second write).
    pub fn deliveries(&self, interaction: u64) -> Vec<Delivery> {
        self.shared.lock().interactions.get(&interaction).map(|i| i.deliveries.clone()).unwrap_or_default()
    }

    /// Every REST call made with interaction `interaction`'s token (its callback, followups
    /// and edits), failed ones included, in order.
    pub fn calls_for(&self, interaction: u64) -> Vec<Call> {
        let token = format!("fake-interaction-token-{interaction}");
        self.calls().into_iter().filter(|call| call.path.split('/').any(|segment| segment == token)).collect()
    }

    /// What the bot successfully sent for interaction `interaction`, in order: callbacks,
    /// followups and edits/deletes of `@original` and of followups, each the request body with
    /// `"_via"` set to "callback", "followup", "edit_original", "delete_original",
    /// "edit_followup" or "delete_followup".
    pub fn responses(&self, interaction: u64) -> Vec<Value> {
        self.shared.lock().interactions.get(&interaction).map(|i| i.responses.clone()).unwrap_or_default()
    }

    /// How long after the interaction reached the bot its callback came (the last attempt
    /// when none succeeded).
    pub fn ack_delay(&self, interaction: u64) -> Option<Duration> {
        self.shared.lock().interactions.get(&interaction).and_then(|i| i.ack_delay)
    }

    /// Every message the bot created (channel messages, interaction responses of type 4 and
    /// 7, filled deferred responses, followups) and every modal it opened, in order.
    pub fn posts(&self) -> Vec<Post> {
        self.shared.lock().posts.clone()
    }

    /// The posts in `channel`, in order.
    pub fn posts_in(&self, channel: u64) -> Vec<Post> {
        let inner = self.shared.lock();
        let indexes = inner.posts_by_channel.get(&channel).map(Vec::as_slice).unwrap_or_default();
        indexes.iter().map(|&index| inner.posts[index].clone()).collect()
    }

    /// The current buttons of a message, after edits (select menus are left out): `None` if
    /// the message is unknown.
    pub fn message_components(&self, channel: u64, message: u64) -> Option<Vec<Vec<Button>>> {
        let inner = self.shared.lock();
        inner.messages.get(&message).filter(|m| m.channel == channel).map(|m| buttons_of(&m.components))
    }

    /// The current content of a message, after edits.
    pub fn content_of(&self, channel: u64, message: u64) -> Option<String> {
        let inner = self.shared.lock();
        inner.messages.get(&message).filter(|m| m.channel == channel).map(|m| m.content.clone())
    }

    /// The message as Discord would return it now (REST shape).
    pub fn message_json(&self, message: u64) -> Option<Value> {
        let inner = self.shared.lock();
        inner.messages.get(&message).map(|m| inner.message_json(m, false))
    }

    /// Threads the bot started: (parent channel, thread id, name).
    pub fn threads(&self) -> Vec<(u64, u64, String)> {
        self.shared.lock().threads.clone()
    }

    /// Registered application commands as Discord returned them, global ones first; guild
    /// commands carry `guild_id`.
    pub fn commands(&self) -> Vec<Value> {
        self.shared.lock().commands.values().flatten().cloned().collect()
    }

    /// The commands registered for one scope: `None` global, `Some(guild)` that guild's.
    pub fn commands_in(&self, guild: Option<u64>) -> Vec<Value> {
        self.shared.lock().commands.get(&guild).cloned().unwrap_or_default()
    }

    /// From now on, REST calls fail at random as `plan` says (never a
    /// timeout: serenity's client has none; never `/gateway`, the address of
    /// the gateway).
    pub fn inject_faults(&self, plan: FaultPlan) {
        self.shared.lock().faults = Some(plan);
    }

    /// The fault plan as it stands: what was injected so far.
    pub fn faults(&self) -> Option<FaultPlan> {
        self.shared.lock().faults.clone()
    }

    /// The next request whose method is `method` (any case, "*" for any) and whose path
    /// (without `/api/v10`) starts with `path_prefix` fails once with `status`. A 429 carries
    /// `retry_after` (default 1 s) in the body and in Retry-After / X-RateLimit-* headers.
    /// Several injections are used in turn.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, retry_after: Option<f64>) {
        let failure =
            Failure { method: method.to_ascii_uppercase(), prefix: path_prefix.to_string(), status, retry_after };
        self.shared.lock().failures.push(failure);
    }

    fn press_inner(&self, place: Place, user: u64, message_id: u64, custom_id: &str, check: bool) -> u64 {
        let mut inner = self.shared.lock();
        inner.require_session("press", place.guild);
        inner.register_place(place, user);
        let message =
            inner.messages.get(&message_id).cloned().unwrap_or_else(|| panic!("press: no message {message_id}"));
        assert_eq!(
            message.channel, place.channel,
            "press: message {message_id} is in channel {}, not {}",
            message.channel, place.channel
        );
        assert!(message.author.is_none(), "press: message {message_id} is not the bot's");
        if check {
            let buttons = buttons_of(&message.components);
            let shown = buttons.iter().flatten().any(|b| b.custom_id == custom_id && !b.disabled);
            assert!(shown, "press: message {message_id} shows no enabled button {custom_id:?}; it shows {buttons:?}");
        }
        let data = json!({"custom_id": custom_id, "component_type": 2});
        inner.new_interaction(3, place, user, data, Some(message_id), None)
    }
}

impl Inner {
    /// A snowflake: milliseconds since Discord's epoch shifted left 22, kept increasing.
    /// A failure the fault plan draws for a call to `path`, if any. Interaction
    /// callbacks are never rate limited, as on Discord.
    fn random_failure(&mut self, path: &str) -> Option<Failure> {
        // Where the gateway is: a client that cannot learn it falls back to
        // Discord's own address, which a test cannot reach.
        if path.starts_with("/gateway") {
            return None;
        }
        let callback = path.starts_with("/interactions/");
        let fault = self.faults.as_mut()?.draw(|fault| match fault {
            Fault::RateLimited => !callback,
            Fault::Server => true,
            // serenity's client has no timeout, and a garbled body is
            // Telegram's proxies' speciality.
            Fault::Timeout | Fault::Garbage => false,
        })?;
        let status = match fault {
            Fault::RateLimited => 429,
            _ => 500 + 2 * u16::from(self.next_id().is_multiple_of(2)),
        };
        Some(Failure { method: "*".into(), prefix: String::new(), status, retry_after: Some(0.5) })
    }

    fn next_id(&mut self) -> u64 {
        let ms = now_ms().saturating_sub(DISCORD_EPOCH_MS);
        self.last_id = (ms << 22).max(self.last_id + 1);
        self.last_id
    }

    /// Panics unless a session receives events of `guild` (`None`: DMs): Discord delivers
    /// nothing to a bot that never connected, nor for a shard nobody identified.
    fn require_session(&self, what: &str, guild: Option<u64>) {
        assert!(
            !self.sessions.is_empty(),
            "{what}: no gateway session yet; start the bot and call wait_ready first (Discord delivers nothing to a bot \
             that never connected)"
        );
        let shards: Vec<Shard> = self.sessions.iter().map(|s| s.shard).collect();
        assert!(
            shards.iter().any(|shard| shard.receives(guild)),
            "{what}: no session receives {} (a guild's events go to shard (guild_id >> 22) % total, DMs to shard 0); \
             sessions: {shards:?}",
            guild.map_or("DMs".to_string(), |guild| format!("guild {guild}"))
        );
    }

    /// Records the channel of `place`; panics if a test gives one channel two natures.
    fn register_place(&mut self, place: Place, user: u64) {
        let created = iso_now();
        match place.guild {
            None => {
                let known = self.dms.get(&user).copied();
                assert!(
                    known.is_none_or(|c| c == place.channel),
                    "user {user}'s DM channel is {}, not {}",
                    known.unwrap_or_default(),
                    place.channel
                );
                let chan = self.channels.entry(place.channel).or_insert(Chan {
                    kind: 1,
                    guild: None,
                    recipient: Some(user),
                    parent: None,
                    name: String::new(),
                    created,
                });
                assert!(
                    chan.kind == 1 && chan.recipient == Some(user),
                    "channel {} is not user {user}'s DM channel ({chan:?})",
                    place.channel
                );
                self.dms.insert(user, place.channel);
            }
            Some(guild) => {
                let chan = self.channels.entry(place.channel).or_insert(Chan {
                    kind: 0,
                    guild: Some(guild),
                    recipient: None,
                    parent: None,
                    name: format!("channel-{}", place.channel),
                    created,
                });
                assert_eq!(chan.guild, Some(guild), "channel {} is not in guild {guild} ({chan:?})", place.channel);
            }
        }
    }

    fn guild_of(&self, channel: u64) -> Option<u64> {
        self.channels.get(&channel).and_then(|c| c.guild)
    }

    // ---- gateway ----

    fn session_mut(&mut self, number: u64) -> Option<&mut Session> {
        self.sessions.iter_mut().find(|s| s.number == number)
    }

    /// The live connection opened last.
    fn newest_live(&self) -> Option<u64> {
        self.sessions.iter().filter_map(|s| s.live).max()
    }

    /// `conn` no longer delivers its session; what comes is queued for a RESUME.
    fn unlive(&mut self, conn: u64) {
        for session in self.sessions.iter_mut().filter(|s| s.live == Some(conn)) {
            session.live = None;
        }
    }

    fn send(&mut self, conn: u64, text: String) -> bool {
        let sent = self.conns.get(&conn).is_some_and(|c| !c.closing && c.tx.send(Out::Text(text)).is_ok());
        if !sent {
            self.unlive(conn);
        }
        sent
    }

    fn close(&mut self, conn: u64, code: u16, reason: &'static str) {
        if let Some(c) = self.conns.get_mut(&conn)
            && !c.closing
        {
            c.closing = true;
            let _ = c.tx.send(Out::Close(code, reason));
        }
        self.unlive(conn);
        // Discord ends the session on these; 4000-4003, 4005 and 4008 may be resumed.
        if matches!(code, 4004 | 4007 | 4009 | 4010..=4014)
            && let Some(number) = self.conns.get(&conn).and_then(|c| c.session)
            && let Some(session) = self.session_mut(number)
        {
            session.valid = false;
        }
    }

    fn open_conn(&mut self, tx: mpsc::UnboundedSender<Out>, query: String, instance: Option<String>) -> u64 {
        self.next_conn += 1;
        let id = self.next_conn;
        self.conns.insert(id, Conn { tx, session: None, closing: false, instance });
        self.connections.push(query.clone());
        let hello = json!({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": ["fake-discord"]}, "s": null, "t": null});
        self.send(id, hello.to_string());
        let pairs = parse_query(&query);
        if pairs.get("v").map(String::as_str) != Some("10") {
            // Discord keeps v10 as the only version a bot should use; the fake speaks only it.
            self.close(id, 4012, "Invalid API version.");
        } else if pairs.get("encoding").is_some_and(|e| e != "json") {
            // ETF is not simulated.
            self.close(id, 4002, "Error while decoding payload.");
        }
        // compress=zlib-stream is answered with plain text frames, which clients also read.
        id
    }

    fn drop_conn(&mut self, conn: u64) {
        self.conns.remove(&conn);
        self.unlive(conn);
    }

    /// Logs a dispatch in every session that receives events of `guild` (`None`: a DM) and
    /// sends it where that session is live.
    fn dispatch(&mut self, event: &str, data: &Value, interaction: Option<u64>, guild: Option<u64>) {
        let targets: Vec<u64> = self.sessions.iter().filter(|s| s.shard.receives(guild)).map(|s| s.number).collect();
        for number in targets {
            self.dispatch_to(number, event, data.clone(), interaction);
        }
    }

    /// Logs a dispatch in session `number` and sends it if the session is live.
    fn dispatch_to(&mut self, number: u64, event: &str, data: Value, interaction: Option<u64>) {
        let Some(session) = self.session_mut(number) else { return };
        session.seq += 1;
        let seq = session.seq;
        let payload = json!({"op": 0, "t": event, "s": seq, "d": data}).to_string();
        session.log.push((seq, payload.clone(), interaction));
        if let Some(live) = session.live {
            self.deliver(live, payload, interaction);
        }
    }

    /// Writes a dispatch to `conn`; an interaction's three seconds run from its first write.
    fn deliver(&mut self, conn: u64, payload: String, interaction: Option<u64>) {
        if !self.send(conn, payload) {
            return;
        }
        let Some(id) = interaction else { return };
        let instance = self.conns.get(&conn).and_then(|c| c.instance.clone());
        let number = self.conns.get(&conn).and_then(|c| c.session);
        let shard = self.sessions.iter().find(|s| Some(s.number) == number).map(|s| s.shard);
        if let Some(itx) = self.interactions.get_mut(&id)
            && let Some(shard) = shard
        {
            itx.sent_at.get_or_insert_with(Instant::now);
            itx.deliveries.push(Delivery { shard, connection: conn, instance });
        }
    }

    fn on_payload(&mut self, conn: u64, text: &str) {
        if self.conns.get(&conn).is_none_or(|c| c.closing) {
            return;
        }
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            return self.close(conn, 4002, "Error while decoding payload.");
        };
        let authed = self.conns.get(&conn).is_some_and(|c| c.session.is_some());
        match payload["op"].as_u64() {
            Some(1) => {
                self.heartbeats += 1;
                self.send(conn, json!({"op": 11, "d": null, "s": null, "t": null}).to_string());
            }
            Some(2) => self.identify(conn, &payload["d"]),
            Some(6) => self.resume(conn, &payload["d"]),
            // Presence update, voice state update, request guild members, request soundboard sounds.
            Some(3 | 4 | 8 | 31) if authed => {}
            Some(3 | 4 | 8 | 31) => self.close(conn, 4003, "Not authenticated."),
            _ => self.close(conn, 4001, "Unknown opcode."),
        }
    }

    fn token_ok(token: &Value) -> bool {
        // Discord takes the gateway token with or without "Bot "; serenity sends it with.
        token.as_str().is_some_and(|t| t.strip_prefix("Bot ").unwrap_or(t) == TOKEN)
    }

    fn identify(&mut self, conn: u64, d: &Value) {
        if self.conns.get(&conn).is_some_and(|c| c.session.is_some()) {
            return self.close(conn, 4005, "Already authenticated.");
        }
        if !Self::token_ok(&d["token"]) {
            return self.close(conn, 4004, "Authentication failed.");
        }
        if !d["properties"].is_object() {
            return self.close(conn, 4002, "Error while decoding payload.");
        }
        let Some(intents) = d["intents"].as_u64() else {
            return self.close(conn, 4013, "Invalid intent(s).");
        };
        // Kept even when refused, so a test can see what the bot asked for.
        self.intents = Some(intents);
        if intents & !KNOWN_INTENTS != 0 {
            return self.close(conn, 4013, "Invalid intent(s).");
        }
        let shard = match &d["shard"] {
            Value::Null => Shard::new(0, 1),
            shard => match shard.as_array().map(|s| s.iter().map(Value::as_u64).collect::<Vec<_>>()).as_deref() {
                Some([Some(id), Some(total)]) if *total >= 1 && id < total => Shard::new(*id, *total),
                _ => return self.close(conn, 4010, "Invalid shard."),
            },
        };
        if shard.total < self.required_shards {
            return self.close(conn, 4011, "Sharding required.");
        }
        // A shard has one session: identifying it again ends the old one, whose undelivered
        // events are lost. Other shards' sessions go on.
        if let Some(index) = self.sessions.iter().position(|s| s.shard == shard) {
            let old = self.sessions.remove(index);
            if let Some(live) = old.live.filter(|live| *live != conn) {
                self.close(live, 4000, "Unknown error.");
            }
        }
        self.sessions_started += 1;
        let number = self.sessions_started;
        let id = format!("fake-session-{number}-{:x}", now_ms());
        self.sessions.push(Session {
            number,
            id: id.clone(),
            shard,
            intents,
            seq: 0,
            log: Vec::new(),
            valid: true,
            live: Some(conn),
        });
        let instance = self.conns.get_mut(&conn).and_then(|c| {
            c.session = Some(number);
            c.instance.clone()
        });
        self.identified.push(Identify { shard, instance: instance.clone(), session: id.clone() });
        let mut ready = json!({
            "v": 10,
            "user": me_json(),
            "guilds": [],
            "session_id": id,
            "resume_gateway_url": self.gateway_url_for(instance.as_deref()),
            "application": {"id": APP_ID.to_string(), "flags": APP_FLAGS},
            "private_channels": [],
            "relationships": [],
            "user_settings": {},
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth_session_id_hash": "fake",
            "_trace": ["fake-discord"],
        });
        if !d["shard"].is_null() {
            ready["shard"] = json!([shard.id, shard.total]);
        }
        self.dispatch_to(number, "READY", ready, None);
    }

    fn resume(&mut self, conn: u64, d: &Value) {
        if self.conns.get(&conn).is_some_and(|c| c.session.is_some()) {
            return self.close(conn, 4005, "Already authenticated.");
        }
        if !Self::token_ok(&d["token"]) {
            return self.close(conn, 4004, "Authentication failed.");
        }
        let asked = d["session_id"].as_str().unwrap_or_default();
        let seq = d["seq"].as_u64().unwrap_or(0);
        let Some(session) = self.sessions.iter_mut().find(|s| s.valid && s.id == asked) else {
            self.send(conn, json!({"op": 9, "d": false, "s": null, "t": null}).to_string());
            return;
        };
        if seq > session.seq {
            // "Reconnect and start a new session."
            session.valid = false;
            return self.close(conn, 4007, "Invalid seq.");
        }
        let (number, old) = (session.number, session.live);
        let missed: Vec<(String, Option<u64>)> =
            session.log.iter().filter(|(s, _, _)| *s > seq).map(|(_, p, i)| (p.clone(), *i)).collect();
        if let Some(old) = old.filter(|old| *old != conn) {
            // Discord drops the connection a session was resumed away from.
            self.close(old, 4000, "Unknown error.");
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(number);
        }
        if let Some(session) = self.session_mut(number) {
            session.live = Some(conn);
        }
        self.resumes += 1;
        for (payload, interaction) in missed {
            self.deliver(conn, payload, interaction);
        }
        self.dispatch_to(number, "RESUMED", json!({"_trace": ["fake-discord"]}), None);
    }

    /// The gateway URL given to `instance` (see [`FakeDiscord::api_url_for`]).
    fn gateway_url_for(&self, instance: Option<&str>) -> String {
        match instance {
            Some(instance) => format!("{}/{INSTANCE_PREFIX}/{instance}", self.gateway_url),
            None => self.gateway_url.clone(),
        }
    }

    /// MESSAGE_CREATE for a new message, to each session whose intents let it see it.
    fn echo_message(&mut self, msg: &Msg) {
        if msg.flags & EPHEMERAL != 0 {
            return;
        }
        let (needed, name) =
            if msg.guild.is_some() { (GUILD_MESSAGES, "GUILD_MESSAGES") } else { (DIRECT_MESSAGES, "DIRECT_MESSAGES") };
        let targets: Vec<(u64, u64)> =
            self.sessions.iter().filter(|s| s.shard.receives(msg.guild)).map(|s| (s.number, s.intents)).collect();
        for &(number, intents) in &targets {
            if intents & needed == 0 {
                if msg.author.is_some() {
                    // Shown with a failing test's output: the likeliest cause of a test waiting in vain.
                    eprintln!(
                        "fake_discord: MESSAGE_CREATE {} not dispatched: the bot's intents ({intents:#x}) lack {name}",
                        msg.id
                    );
                }
                continue;
            }
            let mut value = self.message_json(msg, true);
            let hidden = msg.guild.is_some()
                && msg.author.is_some()
                && intents & MESSAGE_CONTENT == 0
                && !msg.mentions.contains(&BOT_ID);
            if hidden {
                value["content"] = json!("");
            }
            self.dispatch_to(number, "MESSAGE_CREATE", value, None);
        }
    }

    /// The command id (and guild of a guild command) for `/name` at `place`.
    fn command_for(&mut self, place: Place, name: &str, options: &[Value]) -> (u64, Option<u64>) {
        let registered = self.commands.values().any(|list| !list.is_empty());
        if !registered {
            let next = self.next_id();
            return (*self.synthetic_commands.entry(name.to_string()).or_insert(next), None);
        }
        let is_slash = |c: &&Value| c["name"] == name && c["type"].as_u64().unwrap_or(1) == 1;
        let scoped = place.guild.and_then(|g| self.commands.get(&Some(g))).and_then(|list| list.iter().find(is_slash));
        let (command, guild) = match scoped {
            Some(command) => (command, place.guild),
            None => {
                let global = self.commands.get(&None).and_then(|list| list.iter().find(is_slash));
                let command = global.unwrap_or_else(|| {
                    panic!("slash: /{name} is not registered for {place:?}; registered: {:?}", self.command_names())
                });
                if place.guild.is_none() {
                    let contexts = command["contexts"].as_array();
                    let allowed = command["dm_permission"] != json!(false)
                        && contexts.is_none_or(|c| c.iter().any(|x| x.as_u64() == Some(1)));
                    assert!(allowed, "slash: /{name} is not usable in DMs as registered: {command}");
                }
                (command, None)
            }
        };
        let declared = command["options"].as_array().cloned().unwrap_or_default();
        let grouped = declared.iter().any(|o| matches!(o["type"].as_u64(), Some(1 | 2)));
        for option in options {
            let found = declared.iter().find(|d| d["name"] == option["name"]);
            let found = found
                .unwrap_or_else(|| panic!("slash: /{name} has no option {}; registered: {command}", option["name"]));
            assert_eq!(
                found["type"], option["type"],
                "slash: /{name} option {} has type {}",
                option["name"], found["type"]
            );
        }
        if !grouped {
            for required in declared.iter().filter(|d| d["required"] == json!(true)) {
                assert!(
                    options.iter().any(|o| o["name"] == required["name"]),
                    "slash: /{name} needs option {}",
                    required["name"]
                );
            }
        }
        let id = command["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_default();
        (id, guild)
    }

    fn command_names(&self) -> Vec<String> {
        self.commands
            .iter()
            .flat_map(|(scope, list)| {
                list.iter().map(move |c| format!("{}@{scope:?}", c["name"].as_str().unwrap_or_default()))
            })
            .collect()
    }

    /// Creates and dispatches an interaction; returns its id.
    fn new_interaction(
        &mut self,
        kind: u8,
        place: Place,
        user: u64,
        data: Value,
        source: Option<u64>,
        opener: Option<u64>,
    ) -> u64 {
        let id = self.next_id();
        let token = format!("fake-interaction-token-{id}");
        let mut value = json!({
            "id": id.to_string(),
            "application_id": APP_ID.to_string(),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": place.channel.to_string(),
            "channel": self.channel_json(place.channel),
            "app_permissions": PERMISSIONS.to_string(),
            "locale": self.locales.get(&user).map_or("en-US", String::as_str),
            "entitlements": [],
            "attachment_size_limit": 10_485_760,
        });
        match place.guild {
            Some(guild) => {
                value["guild_id"] = json!(guild.to_string());
                value["guild"] = json!({"id": guild.to_string(), "locale": "en-US", "features": []});
                value["guild_locale"] = json!("en-US");
                value["member"] = member_json(user, true);
                if let Some((permissions, roles)) = self.members.get(&user) {
                    value["member"]["permissions"] = json!((PERMISSIONS | permissions).to_string());
                    value["member"]["roles"] = json!(roles.iter().map(u64::to_string).collect::<Vec<_>>());
                }
                value["authorizing_integration_owners"] = json!({"0": guild.to_string()});
                value["context"] = json!(0);
            }
            None => {
                value["user"] = user_json(user);
                // A guild-installed app used in its bot DM: Discord gives the guild as "0".
                value["authorizing_integration_owners"] = json!({"0": "0"});
                value["context"] = json!(1);
            }
        }
        if let Some(message) = source.and_then(|m| self.messages.get(&m)) {
            value["message"] = self.message_json(message, false);
        }
        let itx = Itx {
            id,
            token: token.clone(),
            kind,
            place,
            user,
            sent_at: None,
            ack: None,
            ack_delay: None,
            original: None,
            source,
            deferred_pending: false,
            opener,
            responses: Vec::new(),
            deliveries: Vec::new(),
        };
        self.interactions.insert(id, itx);
        self.tokens.insert(token, id);
        self.dispatch("INTERACTION_CREATE", &value, Some(id), place.guild);
        id
    }

    // ---- JSON shapes ----

    fn channel_json(&self, channel: u64) -> Value {
        let Some(chan) = self.channels.get(&channel) else { return json!({"id": channel.to_string(), "type": 0}) };
        let last = self.messages.values().filter(|m| m.channel == channel).map(|m| m.id).max().map(|id| id.to_string());
        match chan.kind {
            1 => json!({
                "id": channel.to_string(),
                "type": 1,
                "last_message_id": last,
                "flags": 0,
                "recipients": [user_json(chan.recipient.unwrap_or_default())],
            }),
            11 | 12 => json!({
                "id": channel.to_string(),
                "type": chan.kind,
                "guild_id": chan.guild.unwrap_or_default().to_string(),
                "parent_id": chan.parent.map(|p| p.to_string()),
                "owner_id": BOT_ID.to_string(),
                "name": chan.name,
                "last_message_id": last,
                "rate_limit_per_user": 0,
                "message_count": self.messages.values().filter(|m| m.channel == channel).count(),
                "member_count": 1,
                "total_message_sent": self.messages.values().filter(|m| m.channel == channel).count(),
                "flags": 0,
                "permissions": PERMISSIONS.to_string(),
                "thread_metadata": {
                    "archived": false,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": chan.created,
                    "locked": false,
                    "create_timestamp": chan.created,
                },
            }),
            _ => json!({
                "id": channel.to_string(),
                "type": 0,
                "guild_id": chan.guild.unwrap_or_default().to_string(),
                "name": chan.name,
                "position": 0,
                "permission_overwrites": [],
                "nsfw": false,
                "topic": null,
                "last_message_id": last,
                "parent_id": null,
                "rate_limit_per_user": 0,
                "flags": 0,
                "permissions": PERMISSIONS.to_string(),
            }),
        }
    }

    /// The Message object; `gateway` adds guild_id and member as MESSAGE_CREATE has them.
    fn message_json(&self, m: &Msg, gateway: bool) -> Value {
        let author = match m.author {
            Some(user) => user_json(user),
            None => bot_json(),
        };
        let mentions: Vec<Value> =
            m.mentions.iter().map(|&id| if id == BOT_ID { bot_json() } else { user_json(id) }).collect();
        let mut v = json!({
            "id": m.id.to_string(),
            "channel_id": m.channel.to_string(),
            "author": author,
            "content": m.content,
            "timestamp": m.timestamp,
            "edited_timestamp": m.edited,
            "tts": m.tts,
            "mention_everyone": false,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [],
            "embeds": m.embeds,
            "pinned": false,
            "type": m.kind,
            "flags": m.flags,
            "components": m.components,
        });
        if let Some(interaction) = m.interaction {
            // Interaction responses are sent through the application's webhook.
            v["webhook_id"] = json!(APP_ID.to_string());
            v["application_id"] = json!(APP_ID.to_string());
            if let Some(metadata) = self.interaction_metadata(interaction) {
                v["interaction_metadata"] = metadata;
            }
        }
        if let Some(reference) = m.reference {
            let mut r = json!({"type": 0, "message_id": reference.to_string(), "channel_id": m.channel.to_string()});
            if let Some(guild) = m.guild {
                r["guild_id"] = json!(guild.to_string());
            }
            v["message_reference"] = r;
            v["referenced_message"] = match self.messages.get(&reference) {
                Some(target) => {
                    let mut target = target.clone();
                    target.reference = None;
                    self.message_json(&target, false)
                }
                None => Value::Null,
            };
        }
        if let Some(thread) = m.thread {
            v["thread"] = self.channel_json(thread);
        }
        if gateway && let Some(guild) = m.guild {
            v["guild_id"] = json!(guild.to_string());
            let mut member = member_json(m.author.unwrap_or(BOT_ID), false);
            member.as_object_mut().expect("an object").remove("user");
            v["member"] = member;
        }
        v
    }

    /// The interaction_metadata of a response message (a modal submit's names its opener).
    fn interaction_metadata(&self, interaction: u64) -> Option<Value> {
        let itx = self.interactions.get(&interaction)?;
        let mut metadata = json!({
            "id": interaction.to_string(),
            "type": itx.kind,
            "user": user_json(itx.user),
            "authorizing_integration_owners": {"0": itx.place.guild.unwrap_or(0).to_string()},
        });
        if let Some(original) = itx.original.filter(|o| Some(*o) != itx.source) {
            metadata["original_response_message_id"] = json!(original.to_string());
        }
        match itx.kind {
            3 => metadata["interacted_message_id"] = json!(itx.source?.to_string()),
            5 => metadata["triggering_interaction_metadata"] = self.interaction_metadata(itx.opener?)?,
            _ => {}
        }
        Some(metadata)
    }

    // ---- REST ----

    fn route(
        &mut self,
        method: &Method,
        segs: &[&str],
        query: &HashMap<String, String>,
        body: &Value,
        instance: Option<&str>,
    ) -> Result<Reply, ApiErr> {
        let get = method == Method::GET;
        let m = method.as_str();
        match segs {
            ["gateway"] if get => Ok(Reply::Json(json!({"url": self.gateway_url_for(instance)}))),
            ["gateway", "bot"] if get => Ok(Reply::Json(json!({
                "url": self.gateway_url_for(instance),
                "shards": self.recommended_shards,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1},
            }))),
            ["users", "@me"] if get => Ok(Reply::Json(me_json())),
            ["applications", "@me"] | ["oauth2", "applications", "@me"] if get => Ok(Reply::Json(application_json())),
            ["applications", app, "commands"] => {
                check_app(app)?;
                match m {
                    "PUT" => self.put_commands(None, body),
                    "GET" => Ok(Reply::Json(json!(self.commands.get(&None).cloned().unwrap_or_default()))),
                    "POST" => self.post_command(None, body),
                    _ => Err(method_not_allowed()),
                }
            }
            ["applications", app, "guilds", guild, "commands"] => {
                check_app(app)?;
                let guild = snowflake(guild)?;
                match m {
                    "PUT" => self.put_commands(Some(guild), body),
                    "GET" => Ok(Reply::Json(json!(self.commands.get(&Some(guild)).cloned().unwrap_or_default()))),
                    "POST" => self.post_command(Some(guild), body),
                    _ => Err(method_not_allowed()),
                }
            }
            ["interactions", id, token, "callback"] => match m {
                "POST" => self.callback(id, token, query, body),
                _ => Err(method_not_allowed()),
            },
            ["webhooks", app, token] => match m {
                "POST" => self.followup(app, token, body),
                _ => Err(method_not_allowed()),
            },
            ["webhooks", app, token, "messages", message] => self.webhook_message(m, app, token, message, body),
            ["users", "@me", "channels"] => match m {
                "POST" => self.open_dm(body),
                _ => Err(method_not_allowed()),
            },
            ["channels", channel] => match m {
                "GET" => {
                    let channel = self.known_channel(channel)?;
                    Ok(Reply::Json(self.channel_json(channel)))
                }
                _ => Err(method_not_allowed()),
            },
            ["channels", channel, "typing"] => match m {
                "POST" => {
                    self.known_channel(channel)?;
                    Ok(Reply::NoContent)
                }
                _ => Err(method_not_allowed()),
            },
            ["channels", channel, "messages"] => {
                let channel = self.known_channel(channel)?;
                match m {
                    "POST" => self.create_message(channel, body),
                    "GET" => {
                        let limit = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50usize).clamp(1, 100);
                        let mut list: Vec<&Msg> = self
                            .messages
                            .values()
                            .filter(|x| x.channel == channel && x.flags & EPHEMERAL == 0)
                            .collect();
                        list.sort_by_key(|x| std::cmp::Reverse(x.id));
                        Ok(Reply::Json(list.iter().take(limit).map(|x| self.message_json(x, false)).collect()))
                    }
                    _ => Err(method_not_allowed()),
                }
            }
            ["channels", channel, "messages", message] => {
                let channel = self.known_channel(channel)?;
                let message = snowflake(message).map_err(|_| unknown_message())?;
                match m {
                    "GET" => {
                        let msg = self.channel_message(channel, message)?;
                        Ok(Reply::Json(self.message_json(msg, false)))
                    }
                    "PATCH" => self.edit_channel_message(channel, message, body),
                    "DELETE" => {
                        let msg = self.channel_message(channel, message)?;
                        if msg.author.is_some() {
                            return Err(if msg.guild.is_some() {
                                ApiErr::new(403, 50013, "Missing Permissions")
                            } else {
                                ApiErr::new(403, 50003, "Cannot execute action on a DM channel")
                            });
                        }
                        self.messages.remove(&message);
                        Ok(Reply::NoContent)
                    }
                    _ => Err(method_not_allowed()),
                }
            }
            ["channels", channel, "messages", message, "threads"] => match m {
                "POST" => {
                    let channel = self.known_channel(channel)?;
                    let message = snowflake(message).map_err(|_| unknown_message())?;
                    self.start_thread(channel, Some(message), body)
                }
                _ => Err(method_not_allowed()),
            },
            ["channels", channel, "threads"] => match m {
                "POST" => {
                    let channel = self.known_channel(channel)?;
                    self.start_thread(channel, None, body)
                }
                _ => Err(method_not_allowed()),
            },
            ["gateway"]
            | ["gateway", "bot"]
            | ["users", "@me"]
            | ["applications", "@me"]
            | ["oauth2", "applications", "@me"] => Err(method_not_allowed()),
            _ => Err(not_found()),
        }
    }

    fn known_channel(&self, raw: &str) -> Result<u64, ApiErr> {
        let id = snowflake(raw).map_err(|_| unknown_channel())?;
        if self.channels.contains_key(&id) { Ok(id) } else { Err(unknown_channel()) }
    }

    /// A message reachable through the channel endpoints: ephemeral ones are not.
    fn channel_message(&self, channel: u64, message: u64) -> Result<&Msg, ApiErr> {
        self.messages
            .get(&message)
            .filter(|m| m.channel == channel && m.flags & EPHEMERAL == 0)
            .ok_or_else(unknown_message)
    }

    fn create_message(&mut self, channel: u64, body: &Value) -> Result<Reply, ApiErr> {
        let mut errs = Errors::default();
        let out = read_message(body, &[], SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2, &mut errs);
        errs.check()?;
        if out.is_empty() {
            return Err(empty_message());
        }
        let reference = self.check_reference(channel, &out)?;
        let kind = if reference.is_some() { 19 } else { 0 };
        let id = self.create_bot_message(channel, &out, kind, None, out.flags.unwrap_or(0), reference);
        self.post_of(id, None, out.allowed_mentions.clone());
        let msg = &self.messages[&id];
        Ok(Reply::Json(self.message_json(msg, false)))
    }

    fn check_reference(&self, channel: u64, out: &Outgoing) -> Result<Option<u64>, ApiErr> {
        let Some((target, fail_if_missing)) = out.reference else { return Ok(None) };
        match self.messages.get(&target) {
            Some(m) if m.channel == channel && m.flags & EPHEMERAL == 0 => Ok(Some(target)),
            _ if !fail_if_missing => Ok(None),
            _ => {
                let mut errs = Errors::default();
                errs.add(&at(&[], "message_reference"), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message");
                errs.check().map(|_| None)
            }
        }
    }

    fn create_bot_message(
        &mut self,
        channel: u64,
        out: &Outgoing,
        kind: u8,
        interaction: Option<u64>,
        flags: u64,
        reference: Option<u64>,
    ) -> u64 {
        let id = self.next_id();
        let content = out.content.clone().unwrap_or_default();
        let msg = Msg {
            id,
            channel,
            guild: self.guild_of(channel),
            author: None,
            mentions: mentions_in(&content),
            content,
            components: out.components.clone().unwrap_or_default(),
            embeds: out.embeds.clone().unwrap_or_default(),
            flags,
            kind,
            timestamp: iso_now(),
            edited: None,
            reference,
            interaction,
            tts: out.tts,
            thread: None,
        };
        self.messages.insert(id, msg.clone());
        // Discord echoes the bot's own messages to it; a bot must not answer itself.
        self.echo_message(&msg);
        id
    }

    fn push_post(&mut self, post: Post) {
        self.posts_by_channel.entry(post.channel).or_default().push(self.posts.len());
        self.posts.push(post);
    }

    fn post_of(&mut self, message: u64, interaction: Option<u64>, allowed_mentions: Option<Value>) {
        let m = &self.messages[&message];
        let post = Post {
            channel: m.channel,
            message,
            content: m.content.clone(),
            buttons: buttons_of(&m.components),
            allowed_mentions,
            ephemeral: m.flags & EPHEMERAL != 0,
            interaction,
            modal: None,
        };
        self.push_post(post);
    }

    /// Applies an edit body to a stored message.
    fn apply_edit(&mut self, message: u64, body: &Value) -> Result<(), ApiErr> {
        let current = self.messages.get(&message).cloned().ok_or_else(unknown_message)?;
        let mut errs = Errors::default();
        let flags = SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2;
        let out = read_message(body, &[], flags, &mut errs);
        errs.check()?;
        let mut next = current.clone();
        if let Some(content) = out.content {
            next.mentions = mentions_in(&content);
            next.content = content;
        }
        if let Some(components) = out.components {
            next.components = components;
        }
        if let Some(embeds) = out.embeds {
            next.embeds = embeds;
        }
        if let Some(flags) = out.flags {
            // Whether a message is ephemeral is fixed when it is created.
            next.flags = (current.flags & (EPHEMERAL | LOADING)) | (flags & !EPHEMERAL);
        }
        let loading = next.flags & LOADING != 0;
        let check = Outgoing {
            content: Some(next.content.clone()),
            components: Some(next.components.clone()),
            embeds: Some(next.embeds.clone()),
            other_payload: out.other_payload,
            ..Outgoing::default()
        };
        if check.is_empty() && !loading {
            return Err(empty_message());
        }
        next.flags &= !LOADING;
        next.edited = Some(iso_now());
        self.messages.insert(message, next);
        Ok(())
    }

    fn edit_channel_message(&mut self, channel: u64, message: u64, body: &Value) -> Result<Reply, ApiErr> {
        let msg = self.channel_message(channel, message)?;
        if msg.author.is_some() {
            return Err(ApiErr::new(403, 50005, "Cannot edit a message authored by another user"));
        }
        self.apply_edit(message, body)?;
        let msg = &self.messages[&message];
        Ok(Reply::Json(self.message_json(msg, false)))
    }

    fn open_dm(&mut self, body: &Value) -> Result<Reply, ApiErr> {
        let mut errs = Errors::default();
        let recipient = match &body["recipient_id"] {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let Some(user) = recipient.filter(|&u| u != 0) else {
            errs.add(&at(&[], "recipient_id"), "BASE_TYPE_REQUIRED", "This field is required");
            errs.check()?;
            unreachable!("an error was added");
        };
        if user == BOT_ID {
            return Err(ApiErr::new(400, 50007, "Cannot send messages to this user"));
        }
        let channel = match self.dms.get(&user) {
            Some(&channel) => channel,
            None => {
                let channel = self.next_id();
                self.register_place(Place::dm(channel), user);
                channel
            }
        };
        Ok(Reply::Json(self.channel_json(channel)))
    }

    fn start_thread(&mut self, channel: u64, message: Option<u64>, body: &Value) -> Result<Reply, ApiErr> {
        let chan = self.channels[&channel].clone();
        if chan.kind == 1 {
            return Err(ApiErr::new(400, 50003, "Cannot execute action on a DM channel"));
        }
        if chan.kind != 0 {
            return Err(ApiErr::new(400, 50024, "Cannot execute action on this channel type"));
        }
        if let Some(message) = message {
            let msg = self.channel_message(channel, message)?;
            if msg.thread.is_some() {
                return Err(ApiErr::new(400, 160004, "A thread has already been created for this message"));
            }
        }
        let mut errs = Errors::default();
        let name = match &body["name"] {
            Value::String(name) if (1..=100).contains(&name.chars().count()) => name.clone(),
            Value::String(_) => {
                errs.add(&at(&[], "name"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.");
                String::new()
            }
            _ => {
                errs.add(&at(&[], "name"), "BASE_TYPE_REQUIRED", "This field is required");
                String::new()
            }
        };
        if let Some(duration) = body.get("auto_archive_duration").filter(|d| !d.is_null())
            && !matches!(duration.as_u64(), Some(60 | 1440 | 4320 | 10080))
        {
            errs.add(
                &at(&[], "auto_archive_duration"),
                "BASE_TYPE_CHOICES",
                "Value must be one of {60, 1440, 4320, 10080}.",
            );
        }
        let kind = match (message, body.get("type").and_then(Value::as_u64)) {
            (Some(_), _) => 11,
            // Without a message Discord's default is a private thread.
            (None, None) => 12,
            (None, Some(kind @ (11 | 12))) => kind as u8,
            (None, Some(_)) => {
                errs.add(&at(&[], "type"), "BASE_TYPE_CHOICES", "Value must be one of {10, 11, 12}.");
                0
            }
        };
        errs.check()?;
        // A thread started from a message takes the message's id.
        let id = match message {
            Some(message) => message,
            None => self.next_id(),
        };
        if let Some(message) = message
            && let Some(msg) = self.messages.get_mut(&message)
        {
            msg.thread = Some(id);
        }
        self.channels.insert(
            id,
            Chan {
                kind,
                guild: chan.guild,
                recipient: None,
                parent: Some(channel),
                name: name.clone(),
                created: iso_now(),
            },
        );
        self.threads.push((channel, id, name));
        Ok(Reply::Json(self.channel_json(id)))
    }

    // ---- interactions ----

    fn callback(
        &mut self,
        id: &str,
        token: &str,
        query: &HashMap<String, String>,
        body: &Value,
    ) -> Result<Reply, ApiErr> {
        let itx_id =
            self.tokens.get(token).copied().filter(|i| Ok(*i) == id.parse::<u64>()).ok_or_else(unknown_interaction)?;
        let itx = self.interactions[&itx_id].clone();
        if itx.ack.is_some() {
            return Err(ApiErr::new(400, 40060, "Interaction has already been acknowledged."));
        }
        let elapsed = itx.sent_at.map(|t| t.elapsed()).unwrap_or_default();
        self.interactions.get_mut(&itx_id).expect("known").ack_delay = Some(elapsed);
        if itx.sent_at.is_none() || elapsed > ACK_WINDOW {
            return Err(unknown_interaction());
        }
        let mut errs = Errors::default();
        let kind = body["type"].as_u64();
        let allowed: &[u64] = match itx.kind {
            2 => &[4, 5, 9],
            3 => &[4, 5, 6, 7, 9],
            _ if itx.source.is_some() => &[4, 5, 6, 7],
            _ => &[4, 5],
        };
        let Some(kind) = kind.filter(|k| allowed.contains(k)) else {
            errs.add(
                &at(&[], "type"),
                "INTERACTION_RESPONSE_TYPE_INVALID",
                format!("Value must be one of {allowed:?}."),
            );
            errs.check()?;
            unreachable!("an error was added");
        };
        let data_path = at(&[], "data");
        let data = &body["data"];
        let place = itx.place;
        let mut post_modal = None;
        match kind {
            4 => {
                let out = read_message(
                    data,
                    &data_path,
                    SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2,
                    &mut errs,
                );
                errs.check()?;
                if out.is_empty() {
                    return Err(empty_message());
                }
                let message_kind = if itx.kind == 2 { 20 } else { 0 };
                let id = self.create_bot_message(
                    place.channel,
                    &out,
                    message_kind,
                    Some(itx_id),
                    out.flags.unwrap_or(0),
                    None,
                );
                self.post_of(id, Some(itx_id), out.allowed_mentions.clone());
                self.interactions.get_mut(&itx_id).expect("known").original = Some(id);
            }
            5 => {
                let out =
                    read_message(data, &data_path, EPHEMERAL | SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS, &mut errs);
                errs.check()?;
                let flags = LOADING | (out.flags.unwrap_or(0) & EPHEMERAL);
                let message_kind = if itx.kind == 2 { 20 } else { 0 };
                let id = self.create_bot_message(
                    place.channel,
                    &Outgoing::default(),
                    message_kind,
                    Some(itx_id),
                    flags,
                    None,
                );
                let entry = self.interactions.get_mut(&itx_id).expect("known");
                entry.original = Some(id);
                entry.deferred_pending = true;
            }
            6 => {
                if !data.is_null() && data.as_object().is_none_or(|d| !d.is_empty()) {
                    errs.add(&data_path, "BASE_TYPE_DICT", "Type 6 takes no data.");
                    errs.check()?;
                }
                self.interactions.get_mut(&itx_id).expect("known").original = itx.source;
            }
            7 => {
                let source = itx.source.expect("type 7 is allowed only with a source message");
                if !data.is_object() {
                    errs.add(&data_path, "BASE_TYPE_REQUIRED", "This field is required");
                    errs.check()?;
                }
                // Wrap edit errors under "data", where Discord reports them for a callback.
                self.apply_edit(source, data).map_err(|mut e| {
                    if let Some(tree) = e.body.get_mut("errors") {
                        *tree = json!({"data": tree.clone()});
                    }
                    e
                })?;
                self.post_of(source, Some(itx_id), data.get("allowed_mentions").cloned().filter(|a| !a.is_null()));
                self.interactions.get_mut(&itx_id).expect("known").original = Some(source);
            }
            9 => {
                check_modal(data, &data_path, &mut errs);
                errs.check()?;
                self.modals.push(Modal {
                    user: itx.user,
                    channel: place.channel,
                    custom_id: data["custom_id"].as_str().unwrap_or_default().to_string(),
                    data: data.clone(),
                    source: itx.source,
                    opener: itx_id,
                });
                post_modal = Some(data.clone());
            }
            _ => unreachable!("filtered above"),
        }
        if let Some(modal) = post_modal {
            self.push_post(Post {
                channel: place.channel,
                message: 0,
                content: String::new(),
                buttons: Vec::new(),
                allowed_mentions: None,
                ephemeral: false,
                interaction: Some(itx_id),
                modal: Some(modal),
            });
        }
        let entry = self.interactions.get_mut(&itx_id).expect("known");
        entry.ack = Some(kind as u8);
        entry.responses.push(tagged(body, "callback"));
        if query.get("with_response").is_some_and(|v| v == "true") {
            let original = entry.original;
            let message = original.and_then(|m| self.messages.get(&m)).map(|m| self.message_json(m, false));
            let mut answer = json!({
                "interaction": {"id": itx_id.to_string(), "type": itx.kind, "response_message_id": original.map(|m| m.to_string())},
                "resource": {"type": kind},
            });
            if let Some(message) = message {
                answer["resource"]["message"] = message;
            }
            return Ok(Reply::Json(answer));
        }
        Ok(Reply::NoContent)
    }

    /// The interaction behind a webhook path; it must have been acknowledged.
    fn webhook_interaction(&self, app: &str, token: &str) -> Result<u64, ApiErr> {
        if app.parse::<u64>().ok() != Some(APP_ID) {
            return Err(unknown_webhook());
        }
        let id = self.tokens.get(token).copied().ok_or_else(unknown_webhook)?;
        if self.interactions[&id].ack.is_none() {
            return Err(unknown_webhook());
        }
        Ok(id)
    }

    fn followup(&mut self, app: &str, token: &str, body: &Value) -> Result<Reply, ApiErr> {
        let itx_id = self.webhook_interaction(app, token)?;
        let itx = self.interactions[&itx_id].clone();
        let mut errs = Errors::default();
        let out =
            read_message(body, &[], SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2, &mut errs);
        errs.check()?;
        if out.is_empty() {
            return Err(empty_message());
        }
        let id = match (itx.deferred_pending, itx.original) {
            // After a type 5, the first followup fills the loading message, keeping the
            // ephemerality chosen when deferring.
            (true, Some(original)) => {
                let mut fill = body.clone();
                if let Some(object) = fill.as_object_mut() {
                    object.remove("flags");
                }
                self.apply_edit(original, &fill)?;
                self.interactions.get_mut(&itx_id).expect("known").deferred_pending = false;
                original
            }
            _ => self.create_bot_message(itx.place.channel, &out, 0, Some(itx_id), out.flags.unwrap_or(0), None),
        };
        self.post_of(id, Some(itx_id), out.allowed_mentions.clone());
        self.interactions.get_mut(&itx_id).expect("known").responses.push(tagged(body, "followup"));
        let msg = &self.messages[&id];
        Ok(Reply::Json(self.message_json(msg, false)))
    }

    fn webhook_message(
        &mut self,
        method: &str,
        app: &str,
        token: &str,
        message: &str,
        body: &Value,
    ) -> Result<Reply, ApiErr> {
        if !matches!(method, "GET" | "PATCH" | "DELETE") {
            return Err(method_not_allowed());
        }
        let itx_id = self.webhook_interaction(app, token)?;
        let itx = self.interactions[&itx_id].clone();
        let is_original = message == "@original";
        let target = if is_original {
            itx.original.ok_or_else(unknown_message)?
        } else {
            let id = snowflake(message).map_err(|_| unknown_message())?;
            // A followup of this interaction, or the message it stands for.
            let ours =
                self.messages.get(&id).is_some_and(|m| m.interaction == Some(itx_id)) || Some(id) == itx.original;
            if !ours {
                return Err(unknown_message());
            }
            id
        };
        if !self.messages.contains_key(&target) {
            return Err(unknown_message());
        }
        match method {
            "GET" => Ok(Reply::Json(self.message_json(&self.messages[&target], false))),
            "DELETE" => {
                self.messages.remove(&target);
                let via = if is_original { "delete_original" } else { "delete_followup" };
                let entry = self.interactions.get_mut(&itx_id).expect("known");
                entry.responses.push(json!({"_via": via}));
                if is_original {
                    entry.deferred_pending = false;
                }
                Ok(Reply::NoContent)
            }
            _ => {
                self.apply_edit(target, body)?;
                let entry = self.interactions.get_mut(&itx_id).expect("known");
                let filled = is_original && entry.deferred_pending;
                entry.deferred_pending &= !filled;
                entry.responses.push(tagged(body, if is_original { "edit_original" } else { "edit_followup" }));
                if filled {
                    // The deferred "thinking…" message becomes the visible answer now.
                    self.post_of(target, Some(itx_id), body.get("allowed_mentions").cloned().filter(|a| !a.is_null()));
                }
                Ok(Reply::Json(self.message_json(&self.messages[&target], false)))
            }
        }
    }

    // ---- commands ----

    fn put_commands(&mut self, guild: Option<u64>, body: &Value) -> Result<Reply, ApiErr> {
        let Some(list) = body.as_array() else {
            let mut errs = Errors::default();
            errs.add(&[], "BASE_TYPE_ARRAY", "Must be an array.");
            errs.check()?;
            unreachable!("an error was added");
        };
        let mut errs = Errors::default();
        let mut names = HashSet::new();
        let mut counts = [0usize; 5];
        for (i, command) in list.iter().enumerate() {
            let path = at(&[], i);
            check_command(command, &path, &mut errs);
            let kind = command["type"].as_u64().unwrap_or(1) as usize;
            counts[kind.min(4)] += 1;
            let key = (kind, command["name"].as_str().unwrap_or_default().to_string());
            if !names.insert(key) {
                errs.add(
                    &at(&path, "name"),
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                );
            }
        }
        if counts[1] > 100 || counts[2] > 15 || counts[3] > 15 {
            errs.add(&[], "BASE_TYPE_MAX_LENGTH", "Too many application commands.");
        }
        errs.check()?;
        let previous = self.commands.get(&guild).cloned().unwrap_or_default();
        let mut stored = Vec::new();
        for command in list {
            let same = previous
                .iter()
                .find(|p| p["name"] == command["name"] && p["type"] == json!(command["type"].as_u64().unwrap_or(1)));
            let id = same.and_then(|p| p["id"].as_str()).and_then(|s| s.parse().ok()).unwrap_or_else(|| self.next_id());
            stored.push(self.command_json(id, guild, command));
        }
        self.commands.insert(guild, stored.clone());
        Ok(Reply::Json(Value::Array(stored)))
    }

    fn post_command(&mut self, guild: Option<u64>, body: &Value) -> Result<Reply, ApiErr> {
        let mut errs = Errors::default();
        check_command(body, &[], &mut errs);
        errs.check()?;
        let list = self.commands.entry(guild).or_default();
        let position = list
            .iter()
            .position(|c| c["name"] == body["name"] && c["type"] == json!(body["type"].as_u64().unwrap_or(1)));
        let id = position.and_then(|p| list[p]["id"].as_str()).and_then(|s| s.parse().ok());
        let id = match id {
            Some(id) => id,
            None => self.next_id(),
        };
        let command = self.command_json(id, guild, body);
        let list = self.commands.entry(guild).or_default();
        match position {
            Some(p) => list[p] = command.clone(),
            None => list.push(command.clone()),
        }
        Ok(Reply::Json(command))
    }

    fn command_json(&mut self, id: u64, guild: Option<u64>, command: &Value) -> Value {
        let kind = command["type"].as_u64().unwrap_or(1);
        let mut v = json!({
            "id": id.to_string(),
            "application_id": APP_ID.to_string(),
            "version": self.next_id().to_string(),
            "type": kind,
            "name": command["name"],
            "description": command["description"].as_str().unwrap_or_default(),
            "options": command["options"].as_array().cloned().unwrap_or_default(),
            "default_member_permissions": command["default_member_permissions"],
            "dm_permission": command["dm_permission"].as_bool().unwrap_or(true),
            "nsfw": command["nsfw"].as_bool().unwrap_or(false),
            "integration_types": command["integration_types"].as_array().cloned().unwrap_or_else(|| vec![json!(0)]),
            "contexts": command["contexts"],
        });
        for key in ["name_localizations", "description_localizations"] {
            v[key] = command[key].clone();
        }
        if let Some(guild) = guild {
            v["guild_id"] = json!(guild.to_string());
        }
        v
    }
}

/// Reads and checks a message body (create, edit or interaction data) under `base`.
fn read_message(body: &Value, base: &[String], allowed_flags: u64, errs: &mut Errors) -> Outgoing {
    let mut out = Outgoing::default();
    let Some(object) = body.as_object() else {
        if !body.is_null() {
            errs.add(base, "BASE_TYPE_DICT", "Must be an object.");
        }
        return out;
    };
    match object.get("content") {
        None => {}
        Some(Value::Null) => out.content = Some(String::new()),
        Some(Value::String(content)) => {
            if content.chars().count() > MAX_CONTENT {
                errs.add(
                    &at(base, "content"),
                    "BASE_TYPE_MAX_LENGTH",
                    format!("Must be {MAX_CONTENT} or fewer in length."),
                );
            }
            out.content = Some(content.clone());
        }
        Some(other) => {
            errs.add(&at(base, "content"), "STRING_TYPE_CONVERT", format!("Could not interpret \"{other}\" as string."))
        }
    }
    match object.get("flags") {
        None | Some(Value::Null) => {}
        Some(flags) => match flags.as_u64() {
            Some(flags) if flags & !allowed_flags == 0 => out.flags = Some(flags),
            _ => errs.add(
                &at(base, "flags"),
                "MESSAGE_FLAGS_INVALID",
                format!("Only flags {allowed_flags:#x} may be set here."),
            ),
        },
    }
    let v2 = out.flags.unwrap_or(0) & COMPONENTS_V2 != 0;
    match object.get("components") {
        None => {}
        Some(Value::Null) => out.components = Some(Vec::new()),
        Some(components) => {
            check_message_components(components, &at(base, "components"), v2, errs);
            out.components = Some(components.as_array().cloned().unwrap_or_default());
        }
    }
    match object.get("embeds") {
        None => {}
        Some(Value::Null) => out.embeds = Some(Vec::new()),
        Some(embeds) => {
            check_embeds(embeds, &at(base, "embeds"), errs);
            out.embeds = Some(embeds.as_array().cloned().unwrap_or_default());
        }
    }
    if let Some(mentions) = object.get("allowed_mentions").filter(|a| !a.is_null()) {
        check_allowed_mentions(mentions, &at(base, "allowed_mentions"), errs);
        out.allowed_mentions = Some(mentions.clone());
    }
    if let Some(reference) = object.get("message_reference").filter(|r| !r.is_null()) {
        let id = match &reference["message_id"] {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        match id {
            Some(id) => out.reference = Some((id, reference["fail_if_not_exists"].as_bool().unwrap_or(true))),
            None => errs.add(
                &at(&at(base, "message_reference"), "message_id"),
                "BASE_TYPE_REQUIRED",
                "This field is required",
            ),
        }
    }
    if let Some(nonce) = object.get("nonce").and_then(Value::as_str)
        && nonce.chars().count() > 25
    {
        errs.add(&at(base, "nonce"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.");
    }
    out.tts = object.get("tts").and_then(Value::as_bool).unwrap_or(false);
    let non_empty =
        |key: &str| object.get(key).is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()) || v.is_object());
    out.other_payload = non_empty("attachments") || non_empty("sticker_ids") || non_empty("poll");
    out
}

/// Action rows of buttons and select menus, as a message takes them.
fn check_message_components(value: &Value, path: &[String], v2: bool, errs: &mut Errors) {
    let Some(rows) = value.as_array() else {
        return errs.add(path, "BASE_TYPE_ARRAY", "Must be an array.");
    };
    if v2 {
        // Components V2 layouts are not simulated; fixbot sends action rows.
        return;
    }
    if rows.len() > 5 {
        errs.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.");
    }
    let mut seen = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let row_path = at(path, i);
        if row["type"].as_u64() != Some(1) {
            errs.add(&at(&row_path, "type"), "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (1,).");
            continue;
        }
        let items_path = at(&row_path, "components");
        let Some(items) = row["components"].as_array() else {
            errs.add(&items_path, "BASE_TYPE_REQUIRED", "This field is required");
            continue;
        };
        if items.is_empty() || items.len() > 5 {
            errs.add(&items_path, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.");
        }
        let selects = items.iter().filter(|c| matches!(c["type"].as_u64(), Some(3 | 5 | 6 | 7 | 8))).count();
        if selects > 0 && items.len() > 1 {
            errs.add(
                &items_path,
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            );
        }
        for (j, item) in items.iter().enumerate() {
            let item_path = at(&items_path, j);
            match item["type"].as_u64() {
                Some(2) => check_button(item, &item_path, &mut seen, errs),
                Some(3 | 5 | 6 | 7 | 8) => {
                    check_custom_id(&item["custom_id"], &item_path, &mut seen, errs);
                    if let Some(placeholder) = item["placeholder"].as_str()
                        && placeholder.chars().count() > 150
                    {
                        errs.add(
                            &at(&item_path, "placeholder"),
                            "BASE_TYPE_MAX_LENGTH",
                            "Must be 150 or fewer in length.",
                        );
                    }
                    if item["type"].as_u64() == Some(3) {
                        let count = item["options"].as_array().map_or(0, Vec::len);
                        if !(1..=25).contains(&count) {
                            errs.add(
                                &at(&item_path, "options"),
                                "BASE_TYPE_BAD_LENGTH",
                                "Must be between 1 and 25 in length.",
                            );
                        }
                    }
                }
                _ => errs.add(
                    &at(&item_path, "type"),
                    "UNION_TYPE_CHOICES",
                    "Value of field \"type\" must be one of (2, 3, 5, 6, 7, 8).",
                ),
            }
        }
    }
}

fn check_button(button: &Value, path: &[String], seen: &mut HashSet<String>, errs: &mut Errors) {
    let has = |key: &str| button.get(key).is_some_and(|v| !v.is_null());
    match button["style"].as_u64() {
        Some(1..=4) => {
            check_custom_id(&button["custom_id"], path, seen, errs);
            if has("url") {
                errs.add(
                    &at(path, "url"),
                    "BUTTON_COMPONENT_URL_NOT_ALLOWED",
                    "A button with a custom_id cannot have a url",
                );
            }
        }
        Some(5) => {
            let url = button["url"].as_str().unwrap_or_default();
            let scheme_ok = ["http://", "https://", "discord://"].iter().any(|s| url.starts_with(s));
            if !scheme_ok || url.chars().count() > 512 {
                errs.add(&at(path, "url"), "URL_TYPE_INVALID_URL", "Not a well formed URL.");
            }
            if has("custom_id") {
                errs.add(
                    &at(path, "custom_id"),
                    "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED",
                    "A link button cannot have a custom_id",
                );
            }
        }
        Some(6) => {
            if !has("sku_id") {
                errs.add(&at(path, "sku_id"), "BASE_TYPE_REQUIRED", "This field is required");
            }
        }
        _ => errs.add(&at(path, "style"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4, 5, 6}."),
    }
    match &button["label"] {
        Value::Null => {}
        Value::String(label) if label.chars().count() <= 80 => {}
        Value::String(_) => errs.add(&at(path, "label"), "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length."),
        _ => errs.add(&at(path, "label"), "STRING_TYPE_CONVERT", "Must be a string."),
    }
    let labelled = button["label"].as_str().is_some_and(|l| !l.is_empty()) || has("emoji");
    if !labelled && button["style"].as_u64() != Some(6) {
        errs.add(path, "COMPONENT_BUTTON_LABEL_OR_EMOJI_REQUIRED", "A button needs a label or an emoji");
    }
    if has("disabled") && !button["disabled"].is_boolean() {
        errs.add(&at(path, "disabled"), "BASE_TYPE_BOOLEAN", "Must be either true or false.");
    }
}

fn check_custom_id(value: &Value, path: &[String], seen: &mut HashSet<String>, errs: &mut Errors) {
    let key = at(path, "custom_id");
    match value {
        Value::String(id) if (1..=100).contains(&id.chars().count()) => {
            if !seen.insert(id.clone()) {
                errs.add(&key, "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated");
            }
        }
        Value::String(_) => errs.add(&key, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."),
        Value::Null => errs.add(&key, "BASE_TYPE_REQUIRED", "This field is required"),
        _ => errs.add(&key, "STRING_TYPE_CONVERT", "Must be a string."),
    }
}

fn check_embeds(value: &Value, path: &[String], errs: &mut Errors) {
    let Some(embeds) = value.as_array() else {
        return errs.add(path, "BASE_TYPE_ARRAY", "Must be an array.");
    };
    if embeds.len() > 10 {
        errs.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.");
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        let embed_path = at(path, i);
        let mut text = |key: &[&str], max: usize, errs: &mut Errors| {
            let mut node = embed;
            for k in key {
                node = &node[*k];
            }
            if let Some(s) = node.as_str() {
                let n = s.chars().count();
                total += n;
                if n > max {
                    let mut p = embed_path.clone();
                    p.extend(key.iter().map(|k| k.to_string()));
                    errs.add(&p, "BASE_TYPE_MAX_LENGTH", format!("Must be {max} or fewer in length."));
                }
            }
        };
        text(&["title"], 256, errs);
        text(&["description"], 4096, errs);
        text(&["footer", "text"], 2048, errs);
        text(&["author", "name"], 256, errs);
        let fields = embed["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            errs.add(&at(&embed_path, "fields"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.");
        }
        for (j, field) in fields.iter().enumerate() {
            for (key, max) in [("name", 256), ("value", 1024)] {
                let n = field[key].as_str().map(|s| s.chars().count());
                total += n.unwrap_or(0);
                let p = at(&at(&at(&embed_path, "fields"), j), key);
                match n {
                    None => errs.add(&p, "BASE_TYPE_REQUIRED", "This field is required"),
                    Some(n) if n > max => {
                        errs.add(&p, "BASE_TYPE_MAX_LENGTH", format!("Must be {max} or fewer in length."))
                    }
                    _ => {}
                }
            }
        }
    }
    if total > 6000 {
        errs.add(path, "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000");
    }
}

fn check_allowed_mentions(value: &Value, path: &[String], errs: &mut Errors) {
    if !value.is_object() {
        return errs.add(path, "BASE_TYPE_DICT", "Must be an object.");
    }
    let parse: Vec<&str> =
        value["parse"].as_array().map(|p| p.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    for (i, kind) in parse.iter().enumerate() {
        if !["roles", "users", "everyone"].contains(kind) {
            errs.add(
                &at(&at(path, "parse"), i),
                "BASE_TYPE_CHOICES",
                "Value must be one of {'roles', 'users', 'everyone'}.",
            );
        }
    }
    for kind in ["users", "roles"] {
        let listed = value[kind].as_array().map_or(0, Vec::len);
        if listed > 100 {
            errs.add(&at(path, kind), "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.");
        }
        if listed > 0 && parse.contains(&kind) {
            errs.add(
                path,
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                format!("parse:[\"{kind}\"] and {kind}: [ids...] are mutually exclusive."),
            );
        }
    }
}

/// A modal: custom_id, title and one to five rows of one text input each.
fn check_modal(data: &Value, path: &[String], errs: &mut Errors) {
    if !data.is_object() {
        return errs.add(path, "BASE_TYPE_REQUIRED", "This field is required");
    }
    let mut seen = HashSet::new();
    match &data["custom_id"] {
        Value::String(id) if (1..=100).contains(&id.chars().count()) => {}
        Value::String(_) => {
            errs.add(&at(path, "custom_id"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        }
        _ => errs.add(&at(path, "custom_id"), "BASE_TYPE_REQUIRED", "This field is required"),
    }
    match &data["title"] {
        Value::String(title) if (1..=45).contains(&title.chars().count()) => {}
        Value::String(_) => errs.add(&at(path, "title"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length."),
        _ => errs.add(&at(path, "title"), "BASE_TYPE_REQUIRED", "This field is required"),
    }
    let rows_path = at(path, "components");
    let Some(rows) = data["components"].as_array() else {
        return errs.add(&rows_path, "BASE_TYPE_REQUIRED", "This field is required");
    };
    if rows.is_empty() || rows.len() > 5 {
        errs.add(&rows_path, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.");
    }
    for (i, row) in rows.iter().enumerate() {
        let row_path = at(&rows_path, i);
        let items = row["components"].as_array();
        if row["type"].as_u64() != Some(1) || items.is_none_or(|items| items.len() != 1) {
            errs.add(&row_path, "MODAL_ROW_INVALID", "A modal row is an action row with exactly one text input.");
            continue;
        }
        let input = &items.expect("checked")[0];
        let input_path = at(&at(&row_path, "components"), 0);
        if input["type"].as_u64() != Some(4) {
            errs.add(&at(&input_path, "type"), "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (4,).");
            continue;
        }
        check_custom_id(&input["custom_id"], &input_path, &mut seen, errs);
        match &input["label"] {
            Value::String(label) if (1..=45).contains(&label.chars().count()) => {}
            Value::String(_) => {
                errs.add(&at(&input_path, "label"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length.")
            }
            _ => errs.add(&at(&input_path, "label"), "BASE_TYPE_REQUIRED", "This field is required"),
        }
        if !matches!(input["style"].as_u64(), Some(1 | 2)) {
            errs.add(&at(&input_path, "style"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2}.");
        }
        let bound = |key: &str, min: u64, errs: &mut Errors| -> Option<u64> {
            match &input[key] {
                Value::Null => None,
                v => match v.as_u64() {
                    Some(n) if (min..=4000).contains(&n) => Some(n),
                    _ => {
                        errs.add(&at(&input_path, key), "NUMBER_TYPE_MAX", format!("Must be between {min} and 4000."));
                        None
                    }
                },
            }
        };
        let min = bound("min_length", 0, errs);
        let max = bound("max_length", 1, errs);
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            errs.add(&at(&input_path, "min_length"), "BASE_TYPE_BAD_LENGTH", "min_length must not exceed max_length.");
        }
        if let Some(value) = input["value"].as_str()
            && value.chars().count() as u64 > max.unwrap_or(4000)
        {
            errs.add(
                &at(&input_path, "value"),
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {} or fewer in length.", max.unwrap_or(4000)),
            );
        }
        if let Some(placeholder) = input["placeholder"].as_str()
            && placeholder.chars().count() > 100
        {
            errs.add(&at(&input_path, "placeholder"), "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.");
        }
        if !input["required"].is_null() && !input["required"].is_boolean() {
            errs.add(&at(&input_path, "required"), "BASE_TYPE_BOOLEAN", "Must be either true or false.");
        }
    }
}

/// An application command and its options.
fn check_command(command: &Value, path: &[String], errs: &mut Errors) {
    if !command.is_object() {
        return errs.add(path, "BASE_TYPE_DICT", "Must be an object.");
    }
    let kind = command["type"].as_u64().unwrap_or(1);
    if !(1..=4).contains(&kind) {
        errs.add(&at(path, "type"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4}.");
    }
    let name = command["name"].as_str().unwrap_or_default();
    let name_ok = if kind == 1 { slash_name_ok(name) } else { (1..=32).contains(&name.chars().count()) };
    if !name_ok {
        errs.add(&at(path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid");
    }
    let description = command["description"].as_str().unwrap_or_default();
    if kind == 1 {
        if !(1..=100).contains(&description.chars().count()) {
            errs.add(&at(path, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.");
        }
    } else if !description.is_empty() {
        errs.add(
            &at(path, "description"),
            "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
            "Context menu commands cannot have a description",
        );
    }
    if let Some(permissions) = command.get("default_member_permissions").filter(|p| !p.is_null())
        && permissions.as_str().is_none_or(|p| p.parse::<u64>().is_err())
    {
        errs.add(
            &at(path, "default_member_permissions"),
            "BASE_TYPE_CHOICES",
            "Must be a permission bit set as a string.",
        );
    }
    let options = command["options"].as_array().cloned().unwrap_or_default();
    if kind != 1 && !options.is_empty() {
        errs.add(
            &at(path, "options"),
            "APPLICATION_COMMAND_OPTIONS_NOT_ALLOWED",
            "Only chat input commands take options",
        );
    }
    check_options(&options, &at(path, "options"), 0, errs);
}

/// ^[-_a-z0-9]{1,32}$: lower-case, as Discord requires of chat input command names.
fn slash_name_ok(name: &str) -> bool {
    (1..=32).contains(&name.chars().count())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn check_options(options: &[Value], path: &[String], depth: usize, errs: &mut Errors) {
    if options.len() > 25 {
        errs.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.");
    }
    let mut names = HashSet::new();
    let mut optional_seen = false;
    for (i, option) in options.iter().enumerate() {
        let p = at(path, i);
        let kind = option["type"].as_u64().unwrap_or(0);
        if !(1..=11).contains(&kind) {
            errs.add(&at(&p, "type"), "BASE_TYPE_CHOICES", "Value must be one of {1, ..., 11}.");
        }
        let name = option["name"].as_str().unwrap_or_default();
        if !slash_name_ok(name) {
            errs.add(&at(&p, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid");
        }
        if !names.insert(name.to_string()) {
            errs.add(&at(&p, "name"), "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique");
        }
        let description = option["description"].as_str().unwrap_or_default();
        if !(1..=100).contains(&description.chars().count()) {
            errs.add(&at(&p, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.");
        }
        let required = option["required"].as_bool().unwrap_or(false);
        if required && optional_seen {
            errs.add(
                &at(&p, "required"),
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                "Required options must be placed before non-required options",
            );
        }
        optional_seen |= !required && !matches!(kind, 1 | 2);
        let choices = option["choices"].as_array().cloned().unwrap_or_default();
        if choices.len() > 25 {
            errs.add(&at(&p, "choices"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.");
        }
        if !choices.is_empty() && !matches!(kind, 3 | 4 | 10) {
            errs.add(
                &at(&p, "choices"),
                "APPLICATION_COMMAND_OPTION_CHOICES_NOT_ALLOWED",
                "Only string, integer and number options take choices",
            );
        }
        for (j, choice) in choices.iter().enumerate() {
            let name_len = choice["name"].as_str().map_or(0, |n| n.chars().count());
            if !(1..=100).contains(&name_len) {
                errs.add(
                    &at(&at(&at(&p, "choices"), j), "name"),
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                );
            }
            if choice["value"].as_str().is_some_and(|v| v.chars().count() > 100) {
                errs.add(
                    &at(&at(&at(&p, "choices"), j), "value"),
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 100 or fewer in length.",
                );
            }
        }
        for (key, min) in [("min_length", 0), ("max_length", 1)] {
            if let Some(n) = option.get(key).filter(|v| !v.is_null())
                && n.as_u64().is_none_or(|n| !(min..=6000).contains(&n))
            {
                errs.add(&at(&p, key), "NUMBER_TYPE_MAX", format!("Must be between {min} and 6000."));
            }
        }
        let nested = option["options"].as_array().cloned().unwrap_or_default();
        if matches!(kind, 1 | 2) {
            if depth >= 2 {
                errs.add(
                    &at(&p, "type"),
                    "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                    "Sub-commands nest at most two levels",
                );
            }
            check_options(&nested, &at(&p, "options"), depth + 1, errs);
        } else if !nested.is_empty() {
            errs.add(&at(&p, "options"), "APPLICATION_COMMAND_OPTIONS_NOT_ALLOWED", "Only sub-commands take options");
        }
    }
}

fn check_app(app: &str) -> Result<(), ApiErr> {
    if app.parse::<u64>().ok() == Some(APP_ID) { Ok(()) } else { Err(ApiErr::new(403, 50001, "Missing Access")) }
}

fn snowflake(raw: &str) -> Result<u64, ApiErr> {
    match raw.parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => {
            let mut errs = Errors::default();
            errs.add(&[], "NUMBER_TYPE_COERCE", format!("Value \"{raw}\" is not snowflake."));
            errs.check().map(|_| 0)
        }
    }
}

fn method_not_allowed() -> ApiErr {
    ApiErr::new(405, 0, "405: Method Not Allowed")
}

/// `body` with `"_via": via` added, for [`FakeDiscord::responses`].
fn tagged(body: &Value, via: &str) -> Value {
    let mut value = match body {
        Value::Object(_) => body.clone(),
        other => json!({"body": other}),
    };
    value["_via"] = json!(via);
    value
}

/// Buttons of action rows.
fn buttons_of(components: &[Value]) -> Vec<Vec<Button>> {
    components
        .iter()
        .map(|row| {
            row["components"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["type"].as_u64() == Some(2))
                .map(|c| Button {
                    label: c["label"].as_str().unwrap_or_default().to_string(),
                    custom_id: c["custom_id"].as_str().unwrap_or_default().to_string(),
                    disabled: c["disabled"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .collect()
}

/// Users mentioned as `<@id>` or `<@!id>`.
fn mentions_in(content: &str) -> Vec<u64> {
    let mut found = Vec::new();
    for part in content.split("<@").skip(1) {
        let part = part.strip_prefix('!').unwrap_or(part);
        if let Some((id, _)) = part.split_once('>')
            && let Ok(id) = id.parse::<u64>()
            && !found.contains(&id)
        {
            found.push(id);
        }
    }
    found
}

fn user_json(id: u64) -> Value {
    json!({
        "id": id.to_string(),
        "username": format!("user{id}"),
        "discriminator": "0",
        "global_name": format!("User {id}"),
        "avatar": null,
        "public_flags": 0,
    })
}

fn bot_json() -> Value {
    json!({
        "id": BOT_ID.to_string(),
        "username": BOT_USERNAME,
        "discriminator": "0",
        "global_name": null,
        "avatar": null,
        "bot": true,
        "public_flags": 0,
    })
}

fn me_json() -> Value {
    let mut me = bot_json();
    let extra = json!({
        "verified": true,
        "mfa_enabled": false,
        "email": null,
        "flags": 0,
        "premium_type": 0,
        "locale": "en-US",
        "banner": null,
        "accent_color": null,
        "bio": "",
    });
    me.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
    me
}

fn member_json(user: u64, with_permissions: bool) -> Value {
    let mut member = json!({
        "user": user_json(user),
        "nick": null,
        "avatar": null,
        "banner": null,
        "roles": [],
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
    });
    if with_permissions {
        member["permissions"] = json!(PERMISSIONS.to_string());
    }
    member
}

fn application_json() -> Value {
    json!({
        "id": APP_ID.to_string(),
        "name": "fixbot-test",
        "icon": null,
        "description": "",
        "summary": "",
        "type": null,
        "bot_public": false,
        "bot_require_code_grant": false,
        "verify_key": "0".repeat(64),
        "flags": APP_FLAGS,
        "owner": user_json(1),
        "team": null,
        "bot": bot_json(),
        "hook": true,
        "rpc_origins": [],
        "tags": [],
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "approximate_guild_count": 0,
    })
}

fn close_reason(code: u16) -> &'static str {
    match code {
        4000 => "Unknown error.",
        4001 => "Unknown opcode.",
        4002 => "Error while decoding payload.",
        4003 => "Not authenticated.",
        4004 => "Authentication failed.",
        4005 => "Already authenticated.",
        4007 => "Invalid seq.",
        4008 => "Rate limited.",
        4009 => "Session timed out.",
        4010 => "Invalid shard.",
        4011 => "Sharding required.",
        4012 => "Invalid API version.",
        4013 => "Invalid intent(s).",
        4014 => "Disallowed intent(s).",
        _ => "",
    }
}

/// Whether `label` may name an instance in a URL path.
fn valid_instance(label: &str) -> bool {
    !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `/instance/<label>/rest` as (Some(label), "/rest"); any other path as (None, path).
fn split_instance(path: &str) -> (Option<&str>, &str) {
    let labelled =
        path.strip_prefix('/').and_then(|p| p.strip_prefix(INSTANCE_PREFIX)).and_then(|p| p.strip_prefix('/'));
    match labelled.map(|p| p.split_at(p.find('/').unwrap_or(p.len()))) {
        Some((label, rest)) if valid_instance(label) => (Some(label), rest),
        _ => (None, path),
    }
}

/// Query pairs; serenity writes `?&key=value`, so empty pairs are skipped.
fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// The JSON body, or the `payload_json` part of a multipart body.
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiErr> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let invalid = || ApiErr::new(400, 50109, "The request body contains invalid JSON.");
    if content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
        let boundary = content_type
            .split(';')
            .find_map(|part| part.trim().strip_prefix("boundary="))
            .map(|b| b.trim_matches('"').to_string())
            .ok_or_else(invalid)?;
        let text = String::from_utf8_lossy(body);
        for part in text.split(&format!("--{boundary}")) {
            let Some((head, value)) = part.trim_start_matches("\r\n").split_once("\r\n\r\n") else { continue };
            if head.contains("name=\"payload_json\"") {
                let value = value.strip_suffix("\r\n").unwrap_or(value);
                return serde_json::from_str(value).map_err(|_| invalid());
            }
        }
        return Ok(json!({}));
    }
    // Discord reads JSON only with the JSON content type.
    if !content_type.to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiErr::new(400, 50035, "Invalid Form Body"));
    }
    serde_json::from_slice(body).map_err(|_| invalid())
}

/// Serves every REST request.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let (instance, full) = split_instance(uri.path());
    let (instance, full) = (instance.map(str::to_string), full.to_string());
    let query = parse_query(uri.query().unwrap_or_default());
    let path = full.strip_prefix("/api/v10").filter(|p| p.starts_with('/')).map(str::to_string);
    let parsed = parse_body(&headers, &body);
    let body_value = parsed.as_ref().cloned().unwrap_or(Value::Null);
    let result = {
        let mut inner = shared.lock();
        match &path {
            None => Err(not_found()),
            Some(path) => {
                let public = method == Method::GET && path == "/gateway";
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                let expected = format!("Bot {TOKEN}");
                let position = inner
                    .failures
                    .iter()
                    .position(|f| (f.method == "*" || f.method == method.as_str()) && path.starts_with(&f.prefix));
                if !public && auth != Some(expected.as_str()) {
                    Err(ApiErr::new(401, 0, "401: Unauthorized"))
                } else if let Some(position) = position {
                    let failure = inner.failures.remove(position);
                    Err(injected(&failure))
                } else if let Some(failure) = inner.random_failure(path) {
                    Err(injected(&failure))
                } else {
                    match parsed {
                        Err(error) => Err(error),
                        Ok(body) => {
                            let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
                            inner.route(&method, &segs, &query, &body, instance.as_deref())
                        }
                    }
                }
            }
        }
    };
    let (status, reply_body, retry_after) = match result {
        Ok(Reply::Json(value)) => (200, Some(value), None),
        Ok(Reply::NoContent) => (204, None, None),
        Err(error) => (error.status, Some(error.body), error.retry_after),
    };
    shared.lock().calls.push(Call {
        method: method.as_str().to_string(),
        path: path.unwrap_or(full),
        body: body_value,
        status,
        at,
        instance,
    });
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = match reply_body {
        Some(value) => (code, axum::Json(value)).into_response(),
        None => code.into_response(),
    };
    let headers = response.headers_mut();
    let reset_after = retry_after.unwrap_or(1.0);
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default() + reset_after;
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-ratelimit-limit", "5".into());
    set("x-ratelimit-remaining", if retry_after.is_some() { "0".into() } else { "4".into() });
    set("x-ratelimit-reset", format!("{reset:.3}"));
    set("x-ratelimit-reset-after", format!("{reset_after:.3}"));
    set("x-ratelimit-bucket", "fakebucket".into());
    if let Some(seconds) = retry_after {
        set("retry-after", format!("{}", seconds.ceil() as u64));
        set("x-ratelimit-scope", "user".into());
    }
    response
}

/// The answer for a failure a test injected.
fn injected(failure: &Failure) -> ApiErr {
    match failure.status {
        429 => {
            let seconds = failure.retry_after.unwrap_or(1.0);
            ApiErr {
                status: 429,
                body: json!({"message": "You are being rate limited.", "retry_after": seconds, "global": false}),
                retry_after: Some(seconds),
            }
        }
        400 => ApiErr::new(400, 0, "400: Bad Request"),
        401 => ApiErr::new(401, 0, "401: Unauthorized"),
        403 => ApiErr::new(403, 50013, "Missing Permissions"),
        404 => not_found(),
        status @ 500..=599 => ApiErr::new(status, 0, &format!("{status}: Internal Server Error")),
        status => ApiErr::new(status, 0, "Injected failure"),
    }
}

/// Accepts gateway websockets forever.
async fn accept_gateway(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(serve_gateway(shared.clone(), stream));
    }
}

/// One websocket connection: HELLO, then payloads until either side closes.
async fn serve_gateway(shared: Arc<Shared>, stream: tokio::net::TcpStream) {
    let mut query = String::new();
    let mut instance = None;
    // The signature is tungstenite's; its large error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &WsRequest, response: WsResponse| -> Result<WsResponse, ErrorResponse> {
        query = request.uri().query().unwrap_or_default().to_string();
        instance = split_instance(request.uri().path()).0.map(str::to_string);
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let conn = shared.lock().open_conn(tx, query, instance);
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Out::Text(text) => {
                    if sink.send(WsMessage::Text(text)).await.is_err() {
                        break;
                    }
                }
                Out::Close(code, reason) => {
                    let frame = CloseFrame { code: code.into(), reason: reason.into() };
                    let _ = sink.send(WsMessage::Close(Some(frame))).await;
                    break;
                }
            }
        }
    });
    while let Some(message) = stream.next().await {
        match message {
            Ok(WsMessage::Text(text)) => shared.lock().on_payload(conn, &text),
            // Clients send JSON text; ETF and compressed uploads are not Discord's either.
            Ok(WsMessage::Binary(_)) => shared.lock().close(conn, 4002, "Error while decoding payload."),
            Ok(WsMessage::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    shared.lock().drop_conn(conn);
    writer.abort();
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Now as ISO 8601 with microseconds and "+00:00", as Discord writes timestamps.
fn iso_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Calls, one a line, for panic messages.
fn describe(calls: &[Call]) -> String {
    if calls.is_empty() {
        return "  (none)".into();
    }
    calls
        .iter()
        .map(|c| {
            let mut body = c.body.to_string();
            if body.len() > 300 {
                let cut = (0..=300).rev().find(|i| body.is_char_boundary(*i)).unwrap_or(0);
                body.truncate(cut);
                body.push('…');
            }
            format!("  {} {} {} {}", c.status, c.method, c.path, body)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
