//! fixbot-telegram: the Telegram front-end. It translates updates into core
//! inputs and transitions into Bot API calls, and holds no troubleshooting
//! logic. Updates arrive by long polling (one instance) or by webhook (any
//! number of instances behind a load balancer); every update is applied once
//! (its id is a store receipt), and every callback query is answered. With a
//! staff chat configured, it is also a staff desk (`staff.rs`).

mod api;
mod incoming;
mod polling;
mod render;
mod staff;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fixbot_core::button::{ButtonCodec, ButtonError};
use fixbot_core::case::ConversationKey;
use fixbot_core::desk::{Handovers, StaffMessage, StaffOutcome};
use fixbot_core::engine::{Input, Transition};
use fixbot_core::handover::UserInfo;
use fixbot_core::health::Health;
use fixbot_core::lang::Lang;
use fixbot_core::metrics::metrics;
use fixbot_core::session::Session;
use fixbot_core::store::Store;
use fixbot_core::why::{self, Asker};
use teloxide::payloads::{AnswerCallbackQuerySetters as _, SendMessageSetters as _, SetMyCommandsSetters as _};
use teloxide::requests::Requester as _;
use teloxide::types::{
    AllowedUpdate, BotCommand, BotCommandScope, CallbackQueryId, ChatId, ForceReply, InlineKeyboardButton,
    InlineKeyboardMarkup, MessageId, ParseMode, ReplyMarkup, ReplyParameters, Update, UserId,
};
use teloxide::{Bot, RequestError};
use tokio::sync::Mutex;

pub use incoming::{Incoming, Me, Place, WhyAsker, read_update};
pub use render::{MAX_BUTTONS, MAX_CALLBACK_BYTES, MAX_MESSAGE_UNITS, split, to_html};
pub use webhook::{WEBHOOK_PATH, valid_secret};

use api::Pacer;

/// How much longer than a long poll's own timeout its client waits.
const POLL_MARGIN: Duration = Duration::from_secs(15);

/// How long one call may take: Telegram answers in well under a second
/// when it is well.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Telegram's documented limit for messages in all, per second.
pub const DEFAULT_MESSAGES_PER_SECOND: u32 = 30;

/// How the front-end reaches Telegram.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    /// The bot token from BotFather.
    pub token: String,
    /// A self-hosted Bot API server (or a test fake) instead of api.telegram.org.
    pub api_url: Option<url::Url>,
    /// Calls a second in all. Telegram allows about 30; a bot with paid
    /// broadcasts may send up to 1000.
    pub messages_per_second: u32,
    /// How long one call may take before it is given up and tried again.
    pub request_timeout: Duration,
    /// Where the front-end reports whether it takes updates, as [`PART`].
    pub health: Health,
    /// The staff group cases are handed to, when it is a staff desk.
    pub staff_chat: Option<i64>,
}

impl TelegramConfig {
    /// The settings for `token` on api.telegram.org at Telegram's default rate.
    pub fn new(token: impl Into<String>) -> TelegramConfig {
        TelegramConfig {
            token: token.into(),
            api_url: None,
            messages_per_second: DEFAULT_MESSAGES_PER_SECOND,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            health: Health::default(),
            staff_chat: None,
        }
    }
}

/// The name the front-end reports its health under.
pub const PART: &str = "telegram";

/// Why the front-end stopped.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// Telegram refused or could not be reached at start (e.g. a wrong token).
    #[error("telegram: {0}")]
    Request(#[from] RequestError),
    /// The HTTP client could not be built (its TLS roots, for one).
    #[error("telegram: cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The staff chat could not be looked up (the bot is not in it, say).
    #[error("telegram: the staff chat {chat}: {source}")]
    StaffChat {
        /// The configured chat id.
        chat: i64,
        /// What Telegram said.
        source: RequestError,
    },
}

impl TelegramError {
    /// Whether trying again later may help: the network or Telegram failed,
    /// rather than Telegram refusing (a wrong token), which no retry changes.
    pub fn is_transient(&self) -> bool {
        match self {
            TelegramError::Request(error) | TelegramError::StaffChat { source: error, .. } => api::is_transient(error),
            TelegramError::Client(_) => false,
        }
    }
}

/// The running front-end: the clients, the session and what it remembers
/// between updates.
struct Telegram<S> {
    me: Me,
    bot: Bot,
    session: Arc<Session<S>>,
    codec: ButtonCodec,
    /// Slots for sending messages.
    pacer: Pacer,
    /// Slots for edits and callback answers, a lane of their own so that
    /// taking a keyboard off never delays the answer that follows.
    edits: Pacer,
    health: Health,
    /// The latest message with buttons per conversation, so its keyboard can
    /// be removed once the case moves on. Lost on restart, which is fine:
    /// presses on old buttons are refused as stale anyway.
    prompts: Mutex<HashMap<ConversationKey, (ChatId, MessageId)>>,
    /// Where handed-over cases go and staff answers come from, when any desk is configured.
    handovers: Option<Arc<Handovers<S>>>,
    /// The staff chat, when this front-end is a staff desk.
    staff: Option<staff::StaffChat>,
}

/// A connected front-end, ready to take updates by polling or by webhook.
pub struct Frontend<S> {
    telegram: Arc<Telegram<S>>,
}

impl<S> Clone for Frontend<S> {
    fn clone(&self) -> Self {
        Frontend { telegram: self.telegram.clone() }
    }
}

/// Checks the token with `getMe` and registers the command menu.
pub async fn connect<S: Store + 'static>(
    config: TelegramConfig,
    session: Arc<Session<S>>,
    codec: ButtonCodec,
) -> Result<Frontend<S>, TelegramError> {
    connect_with(config, session, codec, None).await
}

/// Like [`connect`], taking part in hand-overs: the front-end reaches its
/// users for `handovers`, and with `config.staff_chat` set it is a staff
/// desk too, which is why that chat is looked up here.
pub async fn connect_with<S: Store + 'static>(
    config: TelegramConfig,
    session: Arc<Session<S>>,
    codec: ButtonCodec,
    handovers: Option<Arc<Handovers<S>>>,
) -> Result<Frontend<S>, TelegramError> {
    let client = teloxide::net::default_reqwest_settings().timeout(config.request_timeout).build()?;
    let mut bot = Bot::with_client(config.token, client);
    if let Some(url) = config.api_url {
        bot = bot.set_api_url(url);
    }
    let me = bot.get_me().await?;
    let me = Me { id: me.user.id, username: me.username().to_owned() };
    let staff = match (config.staff_chat, &handovers) {
        (Some(chat), Some(_)) => {
            Some(staff::find_staff_chat(&bot, chat).await.map_err(|source| TelegramError::StaffChat { chat, source })?)
        }
        _ => None,
    };
    register_commands(&bot, &session).await;
    let telegram = Telegram {
        me,
        bot,
        session,
        codec,
        pacer: Pacer::new(config.messages_per_second),
        edits: Pacer::new(config.messages_per_second),
        health: config.health,
        prompts: Mutex::new(HashMap::new()),
        handovers: handovers.clone(),
        staff,
    };
    let telegram = Arc::new(telegram);
    if let Some(handovers) = handovers {
        handovers.add_line(PART, Arc::new(staff::TelegramLine { telegram: Arc::downgrade(&telegram) }));
        if let Some(staff) = telegram.staff {
            tracing::info!(chat = staff.chat.0, forum = staff.forum, "telegram staff chat takes hand-overs");
            handovers.add_desk(Arc::new(staff::TelegramDesk { telegram: Arc::downgrade(&telegram), staff }));
        }
    }
    Ok(Frontend { telegram })
}

impl<S: Store + 'static> Frontend<S> {
    /// The bot's username.
    pub fn username(&self) -> &str {
        &self.telegram.me.username
    }

    /// Asks Telegram to deliver updates to `url` with `secret` in the
    /// `X-Telegram-Bot-Api-Secret-Token` header, up to 100 at once
    /// (Telegram's most; its default of 40 would idle instances behind a
    /// load balancer while answers wait out per-chat limits).
    pub async fn set_webhook(&self, url: url::Url, secret: &str) -> Result<(), TelegramError> {
        use teloxide::payloads::SetWebhookSetters as _;
        self.telegram
            .bot
            .set_webhook(url)
            .secret_token(secret.to_owned())
            .max_connections(100)
            .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
            .await?;
        self.telegram.health.set(PART, true, "taking updates by webhook");
        tracing::info!(bot = %self.username(), "telegram front-end taking updates by webhook");
        Ok(())
    }

    /// The webhook route, `POST` [`WEBHOOK_PATH`], to mount on the server's
    /// HTTP listener. Requests without the right secret are refused.
    pub fn router(&self, secret: String) -> axum::Router {
        webhook::router(self.clone(), secret)
    }

    /// Handles one update: what both polling and the webhook do. Returns
    /// `false` when its answer could not be sent for a reason that may pass
    /// (network, Telegram's 5xx); the update should then be delivered again.
    async fn handle_update(&self, update: Update) -> bool {
        match read_update(&update, &self.telegram.me, self.telegram.staff_chat()) {
            Some(incoming) => self.telegram.handle(update.id.0, incoming).await,
            None => true,
        }
    }
}

/// Registers the command menu; a failure only costs the menu, so it is logged.
async fn register_commands<S: Store>(bot: &Bot, session: &Session<S>) {
    let flows = session.flows();
    let labels = &flows.bot().labels;
    let commands = [
        ("fix", &labels.command_fix),
        ("start", &labels.command_start),
        ("help", &labels.command_help),
        ("back", &labels.command_back),
        ("restart", &labels.command_restart),
        ("human", &labels.command_human),
        ("stop", &labels.command_stop),
        ("forget", &labels.command_forget),
        ("language", &labels.command_language),
    ]
    .map(|(name, description)| BotCommand::new(name, description.as_str()));
    // Group admins also see `/why`, which only they (and the staff chat) may use.
    let why = BotCommand::new("why", labels.command_why.as_str());
    let for_admins = commands.iter().cloned().chain([why]).collect::<Vec<_>>();
    let registered = async {
        bot.set_my_commands(commands).await?;
        bot.set_my_commands(for_admins).scope(BotCommandScope::AllChatAdministrators).await
    };
    if let Err(error) = registered.await {
        tracing::warn!(%error, "telegram setMyCommands failed");
    }
}

impl<S> Telegram<S> {
    /// The staff chat's id, when this front-end is a staff desk.
    fn staff_chat(&self) -> Option<ChatId> {
        self.staff.map(|staff| staff.chat)
    }
}

impl<S: Store + 'static> Telegram<S> {
    /// Handles one update and sends its answer; `false` when the answer
    /// could not be sent and may be on a later delivery of the update.
    async fn handle(&self, update_id: u32, incoming: Incoming) -> bool {
        let arrived = std::time::Instant::now();
        let sent = self.answer(update_id, incoming).await;
        metrics().reply_seconds.with_label_values(&[PART]).observe(arrived.elapsed().as_secs_f64());
        sent
    }

    async fn answer(&self, update_id: u32, incoming: Incoming) -> bool {
        let receipt = format!("telegram:{update_id}");
        let sent = match incoming {
            Incoming::Message { key, input, place, hint, user } => {
                match self.apply(&key, input, &receipt, place, hint).await {
                    Some(transition) => {
                        let sent = self.deliver(&key, place, &transition, None).await;
                        self.follow(&key, &transition, &user).await;
                        sent
                    }
                    None => return true,
                }
            }
            Incoming::Press { key, query, data, place, message, hint, user } => {
                self.press(&key, query, &data, place, message, &receipt, hint, &user).await
            }
            Incoming::Why { about, place, asker, .. } => {
                let staff = match asker {
                    WhyAsker::StaffChat => true,
                    WhyAsker::GroupMember(user) => self.is_group_admin(place.chat, user).await,
                    WhyAsker::Private => false,
                };
                let asker = if staff { Asker::Staff } else { Asker::Other };
                let answer = why::answer(&self.session, asker, about.as_ref()).await;
                // Nothing was stored, so a failed send is not worth a redelivery.
                for part in split(&answer) {
                    if self.send(place, &part, None).await.is_err() {
                        break;
                    }
                }
                return true;
            }
            Incoming::Staff { thread, name, text, .. } => {
                let Some(handovers) = &self.handovers else { return true };
                let message = StaffMessage { name, text };
                // Relayed and confirmed by the desk; an unrelated thread is ignored.
                return handovers.staff_message(&thread, message, Some(&receipt), now()).await != StaffOutcome::Unsent;
            }
        };
        if !sent {
            return false;
        }
        // Only now may a redelivery of this update go unanswered.
        if let Err(error) = self.session.confirm_delivery(&receipt).await {
            tracing::warn!(%error, "recording a telegram answer as sent failed");
        }
        true
    }

    /// Carries out what a transition asks of staff (a hand-over, a message
    /// for them), once the user has their answer.
    async fn follow(&self, key: &ConversationKey, transition: &Transition, user: &UserInfo) {
        if let Some(handovers) = &self.handovers {
            handovers.follow(key, transition, user, now()).await;
        }
    }

    // The fields of `Incoming::Press`, taken apart by `answer`.
    #[allow(clippy::too_many_arguments)]
    async fn press(
        &self,
        key: &ConversationKey,
        query: CallbackQueryId,
        data: &str,
        place: Place,
        message: MessageId,
        receipt: &str,
        hint: Option<Lang>,
        user: &UserInfo,
    ) -> bool {
        let flows = self.session.flows();
        let messages = &flows.bot().messages;
        let refusal = |template: &fixbot_core::markup::Template| Some(template.render().to_plain());
        let (notice, transition) = match self.codec.decode(key, data) {
            Err(ButtonError::Foreign) => (refusal(&messages.foreign_button), None),
            Err(ButtonError::Malformed) => (refusal(&messages.stale_button), None),
            Ok(button) => match self.apply(key, Input::Button(button), receipt, place, hint).await {
                Some(transition) => (transition.notice.clone(), Some(transition)),
                None => (None, None),
            },
        };
        // Answer first: the user's spinner stops at once, whatever follows.
        let answer = self.edits.call(None, || {
            let request = self.bot.answer_callback_query(query.clone());
            match &notice {
                Some(text) => request.text(text.clone()),
                None => request,
            }
        });
        if let Err(error) = answer.await {
            tracing::warn!(%error, "telegram answerCallbackQuery failed");
        }
        match transition.filter(|transition| transition.notice.is_none()) {
            Some(transition) => {
                let sent = self.deliver(key, place, &transition, Some(message)).await;
                self.follow(key, &transition, user).await;
                sent
            }
            None => true,
        }
    }

    /// Runs the input through the session. `None` when the update was
    /// handled before, or when the store failed (the user is told).
    async fn apply(
        &self,
        key: &ConversationKey,
        input: Input,
        receipt: &str,
        place: Place,
        hint: Option<Lang>,
    ) -> Option<Transition> {
        match self.session.handle_once_in(key, input, now(), receipt, hint).await {
            Ok(transition) => transition,
            Err(error) => {
                tracing::error!(%error, "handling a telegram update failed");
                let text = self.session.flows().bot().messages.failure.render();
                let _ = self.send(place, &text, None).await;
                None
            }
        }
    }

    /// Sends the replies, and takes the keyboard off the previous prompt of
    /// this conversation so a finished step cannot be pressed again. Returns
    /// `false` when a reply failed for a reason that may pass.
    async fn deliver(
        &self,
        key: &ConversationKey,
        place: Place,
        transition: &Transition,
        pressed: Option<MessageId>,
    ) -> bool {
        if transition.changed {
            let previous = self.prompts.lock().await.remove(key);
            let stale = pressed.map(|id| (place.chat, id)).into_iter().chain(previous);
            let mut cleared = Vec::new();
            for (chat, message) in stale {
                if cleared.contains(&(chat, message)) {
                    continue;
                }
                cleared.push((chat, message));
                let result = self.edits.call(Some(chat.0), || self.bot.edit_message_reply_markup(chat, message)).await;
                if let Err(error) = result {
                    tracing::debug!(%error, "removing an old keyboard failed");
                }
            }
        }
        // In a group the bot only sees replies to its own messages, so when it
        // waits for typed text it opens the reply box for that user alone.
        let expects_text = place.chat.0 < 0 && transition.outcomes.is_empty();
        let mut place = place;
        let mut settled = true;
        let count = transition.replies.len();
        for (index, reply) in transition.replies.iter().enumerate() {
            let keyboard: Option<ReplyMarkup> = if !reply.choices.is_empty() {
                Some(
                    InlineKeyboardMarkup::new(reply.choices.iter().enumerate().map(|(choice, label)| {
                        vec![InlineKeyboardButton::callback(
                            label.clone(),
                            self.codec.encode(key, reply.button(choice)),
                        )]
                    }))
                    .into(),
                )
            } else if expects_text && index + 1 == count {
                Some(ForceReply::new().selective().into())
            } else {
                None
            };
            let parts = split(&reply.body);
            let last = parts.len();
            for (part_index, part) in parts.iter().enumerate() {
                let markup = if part_index + 1 == last { keyboard.clone() } else { None };
                let has_buttons = matches!(markup, Some(ReplyMarkup::InlineKeyboard(_)));
                match self.send(place, part, markup).await {
                    Ok(sent) if has_buttons => {
                        self.prompts.lock().await.insert(key.clone(), (place.chat, sent));
                    }
                    Ok(_) => {}
                    Err(error) => settled &= !api::is_transient(&error),
                }
                // Only the first message quotes the user's.
                place.reply_to = None;
            }
        }
        settled
    }

    /// Whether `user` owns or administers group `chat`, as Telegram says now.
    async fn is_group_admin(&self, chat: ChatId, user: UserId) -> bool {
        match self.edits.call(None, || self.bot.get_chat_member(chat, user)).await {
            Ok(member) => member.is_privileged(),
            Err(error) => {
                tracing::warn!(%error, "asking telegram whether someone is a group admin failed");
                false
            }
        }
    }

    /// Sends one message in a free slot, retrying a 429 and passing failures.
    async fn send(
        &self,
        place: Place,
        body: &fixbot_core::markup::Markup,
        keyboard: Option<ReplyMarkup>,
    ) -> Result<MessageId, RequestError> {
        let html = to_html(body);
        let request = || {
            let mut request = self.bot.send_message(place.chat, html.clone()).parse_mode(ParseMode::Html);
            if let Some(thread) = place.thread {
                request = request.message_thread_id(thread);
            }
            if let Some(message) = place.reply_to {
                request = request.reply_parameters(ReplyParameters::new(message).allow_sending_without_reply());
            }
            if let Some(keyboard) = &keyboard {
                request = request.reply_markup(keyboard.clone());
            }
            request
        };
        match self.pacer.call(Some(place.chat.0), request).await {
            Ok(message) => {
                metrics().messages_sent.with_label_values(&[PART]).inc();
                Ok(message.id)
            }
            Err(error) => {
                tracing::warn!(%error, chat = place.chat.0, "telegram sendMessage failed");
                Err(error)
            }
        }
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}
