//! fixbot-discord: the Discord front-end. It translates gateway events into
//! core inputs and transitions into REST calls, and holds no troubleshooting
//! logic. Slash commands and a modal need no privileged intent; DMs work as
//! chats; configured help channels (message-content intent) answer pastes.
//! Several processes split the gateway traffic by shard ranges. With a staff
//! channel configured it is also a staff desk (`staff.rs`).

mod in_flight;
mod render;
mod shards;
mod staff;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fixbot_core::button::{ButtonCodec, ButtonError};
use fixbot_core::case::ConversationKey;
use fixbot_core::desk::{Handovers, StaffMessage, StaffOutcome};
use fixbot_core::engine::{Command as CoreCommand, Input, Reply, Transition};
use fixbot_core::handover::UserInfo;
use fixbot_core::health::Health;
use fixbot_core::lang::Lang;
use fixbot_core::markup::Markup;
use fixbot_core::metrics::metrics;
use fixbot_core::session::Session;
use fixbot_core::store::Store;
use fixbot_core::why::{self, Asker};
use serenity::all::{
    ActionRowComponent, ButtonKind, ButtonStyle, ChannelId, ChannelType, ClientBuilder, Command,
    CommandDataOptionValue, CommandInteraction, CommandOptionType, ComponentInteraction, Context, CreateActionRow,
    CreateAllowedMentions, CreateButton, CreateCommand, CreateCommandOption, CreateInputText,
    CreateInteractionResponse, CreateInteractionResponseFollowup, CreateInteractionResponseMessage, CreateMessage,
    CreateModal, CreateThread, EditInteractionResponse, EditMessage, EventHandler, GatewayIntents, GuildId, Http,
    HttpBuilder, InputTextStyle, Interaction, InteractionContext, Member, Message, MessageId, ModalInteraction,
    Permissions, Ready, User, UserId,
};
use serenity::builder::Builder as _;
use serenity::gateway::{ConnectionStage, ShardStageUpdateEvent};
use serenity::http::HttpError;
use tokio::sync::Mutex;

use in_flight::InFlight;
pub use render::{MAX_BUTTONS, MAX_CONTENT_CHARS, MAX_CUSTOM_ID_CHARS, MAX_LABEL_CHARS, escape, split, to_markdown};
pub use shards::{ShardRange, ShardRangeError};

/// The id of the paste form `/fix` opens without text, and of its one field.
const PASTE_FORM: &str = "fix";
/// Longest paste the form takes; Discord allows 4000.
const PASTE_MAX: u16 = 4000;
/// Attempts for a call that keeps getting 429 while we limit ourselves.
const ATTEMPTS: u32 = 5;
/// Discord allows 50 requests a second per bot; with serenity's limiter off
/// (a proxy set), calls are spaced by this much.
const CALL_GAP: Duration = Duration::from_millis(20);

/// How the front-end reaches Discord, and where it listens.
#[derive(Debug, Clone, Default)]
pub struct DiscordConfig {
    /// The bot token.
    pub token: String,
    /// An HTTP proxy for the REST API (or a test fake). Serenity honours it
    /// only with its own rate limiter off, so fixbot then retries 429s itself.
    pub api_url: Option<String>,
    /// Register commands in these guilds (instant) instead of globally.
    pub guild_ids: Vec<u64>,
    /// Channels where plain messages are answered (needs the privileged
    /// message-content intent, enabled in the developer portal).
    pub help_channels: Vec<u64>,
    /// In help channels, open a thread for each case and continue there.
    pub threads: bool,
    /// The shards this process runs when several processes split the gateway
    /// traffic; `None` runs the single shard 0 of 1, which gets everything.
    pub shards: Option<ShardRange>,
    /// Where the front-end reports whether its shards are connected, as [`PART`].
    pub health: Health,
    /// The channel cases are handed to, a thread per case, when it is a
    /// staff desk (needs the message-content intent, to read staff replies).
    pub staff_channel: Option<u64>,
    /// Roles whose members are staff for `/why`, besides members allowed to
    /// manage messages.
    pub staff_roles: Vec<u64>,
}

/// The name the front-end reports its health and metrics under.
pub const PART: &str = "discord";

/// Why the front-end stopped.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    /// The client could not start or the gateway closed for good (for
    /// example 4004, a wrong token, or 4014, an intent that is not enabled).
    #[error("discord: {0}")]
    Client(#[from] serenity::Error),
}

/// Runs the Discord front-end until `shutdown` completes; then closes the
/// gateway, so no new event arrives, and returns once the events in flight
/// are answered.
pub async fn run<S: Store + 'static>(
    config: DiscordConfig,
    session: Arc<Session<S>>,
    codec: ButtonCodec,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DiscordError> {
    run_with(config, session, codec, None, shutdown).await
}

/// Like [`run`], taking part in hand-overs: the front-end reaches its users
/// for `handovers`, and with `config.staff_channel` set it is a staff desk.
pub async fn run_with<S: Store + 'static>(
    config: DiscordConfig,
    session: Arc<Session<S>>,
    codec: ButtonCodec,
    handovers: Option<Arc<Handovers<S>>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DiscordError> {
    let mut http = HttpBuilder::new(&config.token).default_allowed_mentions(CreateAllowedMentions::new());
    let limit_ourselves = config.api_url.is_some();
    if let Some(url) = &config.api_url {
        http = http.proxy(url.trim_end_matches('/')).ratelimiter_disabled(true);
    }
    let mut intents = GatewayIntents::DIRECT_MESSAGES;
    let staff_channel = config.staff_channel.filter(|_| handovers.is_some()).map(ChannelId::new);
    if !config.help_channels.is_empty() || staff_channel.is_some() {
        intents |= GatewayIntents::GUILD_MESSAGES | GatewayIntents::MESSAGE_CONTENT;
    }
    let in_flight = Arc::new(InFlight::default());
    let shard_count = config.shards.map_or(1, |range| range.last() - range.first() + 1);
    config.health.set(PART, false, format!("connecting 0 of {shard_count} shards"));
    let handler = Arc::new(Handler {
        session,
        codec,
        health: config.health,
        shard_count,
        connected: Mutex::new(HashMap::new()),
        in_flight: in_flight.clone(),
        guild_ids: config.guild_ids,
        help_channels: config.help_channels,
        threads: config.threads,
        limit_ourselves,
        next_call: Mutex::new(tokio::time::Instant::now()),
        prompts: Mutex::new(HashMap::new()),
        parents: Mutex::new(HashMap::new()),
        staff_channel,
        staff_roles: config.staff_roles,
        handovers: handovers.clone(),
    });
    let mut client = ClientBuilder::new_with_http(http.build(), intents).event_handler_arc(handler.clone()).await?;
    if let Some(handovers) = handovers {
        let line = staff::DiscordLine { handler: Arc::downgrade(&handler), http: client.http.clone() };
        handovers.add_line(PART, Arc::new(line));
        if let Some(channel) = staff_channel {
            tracing::info!(%channel, "discord staff channel takes hand-overs");
            let desk = staff::DiscordDesk { handler: Arc::downgrade(&handler), http: client.http.clone(), channel };
            handovers.add_desk(Arc::new(desk));
        }
    }
    drop(handler);
    if let Some(range) = config.shards {
        warn_if_too_few_shards(&client.http, range).await;
    }
    let manager = client.shard_manager.clone();
    let connect = async {
        match config.shards {
            None => client.start().await,
            Some(range) => {
                tracing::info!(%range, "running discord shards");
                client.start_shard_range(range.serenity_range(), range.total()).await
            }
        }
    };
    tokio::select! {
        result = connect => result?,
        () = shutdown => {
            manager.shutdown_all().await;
            in_flight.idle().await;
        }
    }
    Ok(())
}

/// Logs a warning when Discord recommends more shards than `range`'s total.
/// A shard holding too many guilds is closed with 4011 ("sharding required"),
/// and serenity 0.12 then spins on the closed socket until its next heartbeat
/// before trying again, so this is worth saying at start.
async fn warn_if_too_few_shards(http: &Http, range: ShardRange) {
    match http.get_bot_gateway().await {
        Ok(gateway) if gateway.shards > range.total() => tracing::warn!(
            recommended = gateway.shards,
            total = range.total(),
            "Discord recommends more shards than the configured total; raise the total on every instance"
        ),
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "asking Discord for its recommended shard count failed"),
    }
}

/// The event handler: the session, the codec and what it remembers.
struct Handler<S> {
    session: Arc<Session<S>>,
    codec: ButtonCodec,
    health: Health,
    /// How many shards this process runs.
    shard_count: u32,
    /// Which of them are connected now, by shard id.
    connected: Mutex<HashMap<u32, bool>>,
    /// Events being handled, which a stop waits for.
    in_flight: Arc<InFlight>,
    guild_ids: Vec<u64>,
    help_channels: Vec<u64>,
    threads: bool,
    limit_ourselves: bool,
    /// When the next call may go out, while we limit ourselves.
    next_call: Mutex<tokio::time::Instant>,
    /// The latest channel message with buttons per conversation, so its
    /// buttons can be taken off when the case moves on by a typed answer.
    prompts: Mutex<HashMap<ConversationKey, (ChannelId, MessageId)>>,
    /// The channel each channel a message came from sits in (a thread's
    /// parent), looked up once.
    parents: Mutex<HashMap<ChannelId, Option<ChannelId>>>,
    /// The staff channel, when this front-end is a staff desk.
    staff_channel: Option<ChannelId>,
    /// Roles whose members may use `/why`.
    staff_roles: Vec<u64>,
    /// Where handed-over cases go and staff answers come from, when any desk is configured.
    handovers: Option<Arc<Handovers<S>>>,
}

/// Where a message was written, as far as the bot is concerned.
enum Room {
    /// A direct message.
    Direct,
    /// A configured help channel.
    Help,
    /// A thread under a help channel.
    HelpThread,
    /// A case's thread under the staff channel.
    StaffThread,
}

/// Where the replies of one input go.
#[derive(Clone, Copy)]
enum Reach<'a> {
    /// Through an interaction: the deferred original, then followups.
    Interaction { token: &'a str, original_open: bool },
    /// As plain channel messages (DMs and help channels), quoting `reply_to`.
    Channel { channel: ChannelId, reply_to: Option<MessageId> },
}

#[serenity::async_trait]
impl<S: Store + 'static> EventHandler for Handler<S> {
    async fn ready(&self, ctx: Context, ready: Ready) {
        tracing::info!(bot = %ready.user.name, shard = ctx.shard_id.0, "discord front-end connected");
        self.shard_connected(ctx.shard_id.0, true).await;
        // Commands belong to the application, not to a shard: only shard 0
        // (one process among those splitting the shards) registers them, so
        // they are not overwritten once per shard.
        if ctx.shard_id.0 != 0 {
            return;
        }
        let commands = self.commands();
        let result = if self.guild_ids.is_empty() {
            Command::set_global_commands(&ctx.http, commands).await.map(drop)
        } else {
            let mut result = Ok(());
            for &guild in &self.guild_ids {
                result = result.and(GuildId::new(guild).set_commands(&ctx.http, commands.clone()).await.map(drop));
            }
            result
        };
        if let Err(error) = result {
            tracing::warn!(%error, "registering discord commands failed");
        }
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        let connected = event.new == ConnectionStage::Connected;
        self.shard_connected(event.shard_id.0, connected).await;
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let _handling = self.in_flight.enter();
        let arrived = std::time::Instant::now();
        match interaction {
            Interaction::Command(command) => self.command(&ctx, command).await,
            Interaction::Component(component) => self.press(&ctx, component).await,
            Interaction::Modal(modal) => self.paste(&ctx, modal).await,
            _ => return,
        }
        metrics().reply_seconds.with_label_values(&[PART]).observe(arrived.elapsed().as_secs_f64());
    }

    async fn message(&self, ctx: Context, message: Message) {
        if message.author.bot {
            return;
        }
        let _handling = self.in_flight.enter();
        let arrived = std::time::Instant::now();
        let Some(room) = self.room(&ctx, &message).await else { return };
        if let Room::StaffThread = room {
            return self.staff_message(&message).await;
        }
        let user = user_info(&message.author, message.guild_id, message.channel_id, Some(message.id));
        let mut channel = message.channel_id;
        let mut reply_to = Some(message.id);
        match room {
            Room::Direct => reply_to = None,
            Room::Help => {
                if self.threads
                    && let Some(thread) = self.open_thread(&ctx, &message).await
                {
                    channel = thread;
                    reply_to = None;
                }
            }
            // In a case's thread only people with a case there are answered,
            // so staff can talk in it without starting cases of their own.
            Room::HelpThread => {
                let key = key(channel, message.author.id);
                if !matches!(self.session.store().get(&key).await, Ok(Some(_))) {
                    return;
                }
                reply_to = None;
            }
            Room::StaffThread => return,
        }
        let key = key(channel, message.author.id);
        let receipt = format!("discord:{}", message.id);
        let reach = Reach::Channel { channel, reply_to };
        // Messages carry no locale of their author; the detector and
        // `/language` decide.
        self.answer(&ctx.http, &key, text_input(&message.content), &receipt, reach, None, &user).await;
        metrics().reply_seconds.with_label_values(&[PART]).observe(arrived.elapsed().as_secs_f64());
    }
}

impl<S: Store + 'static> Handler<S> {
    /// Records a shard's connection and reports the whole to health.
    async fn shard_connected(&self, shard: u32, connected: bool) {
        let mut shards = self.connected.lock().await;
        shards.insert(shard, connected);
        let up = shards.values().filter(|connected| **connected).count() as u32;
        let detail = format!("{up} of {} shards connected", self.shard_count);
        self.health.set(PART, up >= self.shard_count, detail);
    }

    /// Whether the bot answers plain messages in the message's channel.
    async fn room(&self, ctx: &Context, message: &Message) -> Option<Room> {
        if message.guild_id.is_none() {
            return Some(Room::Direct);
        }
        if self.help_channels.contains(&message.channel_id.get()) {
            return Some(Room::Help);
        }
        if !self.threads && self.staff_channel.is_none() {
            return None;
        }
        let parent = self.parent_of(&ctx.http, message.channel_id).await?;
        if Some(parent) == self.staff_channel {
            return Some(Room::StaffThread);
        }
        (self.threads && self.help_channels.contains(&parent.get())).then_some(Room::HelpThread)
    }

    /// The channel `channel` sits in (a thread's parent), looked up once.
    async fn parent_of(&self, http: &Http, channel: ChannelId) -> Option<ChannelId> {
        if let Some(known) = self.parents.lock().await.get(&channel).copied() {
            return known;
        }
        let parent = match self.retry(|| channel.to_channel(http)).await {
            Ok(found) => found.guild().and_then(|found| found.parent_id),
            Err(error) => {
                tracing::debug!(%error, "looking up a discord channel failed");
                return None;
            }
        };
        self.parents.lock().await.insert(channel, parent);
        parent
    }

    /// A staff member's message in a case's thread: relayed to the user,
    /// or `/close` closes the case.
    async fn staff_message(&self, message: &Message) {
        let Some(handovers) = &self.handovers else { return };
        let name = message
            .member
            .as_ref()
            .and_then(|member| member.nick.clone())
            .or_else(|| message.author.global_name.clone())
            .unwrap_or_else(|| message.author.name.clone());
        let staff = StaffMessage { name, text: message.content.clone() };
        let thread = format!("discord:{}", message.channel_id);
        let receipt = format!("discord:{}", message.id);
        if handovers.staff_message(&thread, staff, Some(&receipt), now()).await == StaffOutcome::Unsent {
            tracing::warn!(%thread, "a staff answer could not be sent to the user");
        }
    }

    /// Opens a thread for the case that `message` starts; `None` keeps the
    /// case in the channel (for example without the thread permission).
    async fn open_thread(&self, ctx: &Context, message: &Message) -> Option<ChannelId> {
        let flows = self.session.flows();
        let name: String =
            format!("{}: {}", flows.bot().labels.thread_name, message.author.name).chars().take(100).collect();
        let builder = CreateThread::new(name).kind(ChannelType::PublicThread);
        match self.retry(|| message.channel_id.create_thread_from_message(&ctx.http, message.id, builder.clone())).await
        {
            Ok(thread) => {
                self.parents.lock().await.insert(thread.id, Some(message.channel_id));
                Some(thread.id)
            }
            Err(error) => {
                tracing::warn!(%error, "opening a discord thread failed; answering in the channel");
                None
            }
        }
    }

    fn commands(&self) -> Vec<CreateCommand> {
        let flows = self.session.flows();
        let labels = &flows.bot().labels;
        let simple = |name: &str, description: &str| CreateCommand::new(name).description(description);
        vec![
            CreateCommand::new("fix").description(&labels.command_fix).add_option(
                CreateCommandOption::new(CommandOptionType::String, "error", &labels.command_fix_error)
                    .required(false)
                    .max_length(PASTE_MAX),
            ),
            simple("back", &labels.command_back),
            simple("restart", &labels.command_restart),
            simple("human", &labels.command_human),
            simple("stop", &labels.command_stop),
            simple("help", &labels.command_help),
            simple("forget", &labels.command_forget),
            simple("language", &labels.command_language).add_option(
                CreateCommandOption::new(CommandOptionType::String, "language", &labels.command_language_option)
                    .required(false)
                    .max_length(20),
            ),
            // Shown to members who may manage messages; server admins can
            // change that in the server's settings, so `why` checks again.
            simple("why", &labels.command_why)
                .add_option(
                    CreateCommandOption::new(CommandOptionType::User, "user", &labels.command_why_user).required(true),
                )
                .default_member_permissions(Permissions::MANAGE_MESSAGES)
                .contexts(vec![InteractionContext::Guild]),
        ]
    }

    async fn command(&self, ctx: &Context, command: CommandInteraction) {
        if command.data.name == "why" {
            return self.why(ctx, &command).await;
        }
        let key = key(command.channel_id, command.user.id);
        let input = if command.data.name == "fix" {
            let text =
                command.data.options.iter().find(|option| option.name == "error").and_then(|option| {
                    match &option.value {
                        CommandDataOptionValue::String(text) if !text.trim().is_empty() => Some(text.clone()),
                        _ => None,
                    }
                });
            match text {
                Some(text) => Input::Text(text),
                None => return self.open_paste_form(ctx, &command).await,
            }
        } else {
            // `/language es`: the option's value follows the name.
            let argument = command.data.options.iter().find_map(|option| match &option.value {
                CommandDataOptionValue::String(text) => Some(text.as_str()),
                _ => None,
            });
            match CoreCommand::parse(&format!("/{} {}", command.data.name, argument.unwrap_or_default())) {
                Some(parsed) => Input::Command(parsed),
                None => return,
            }
        };
        // Acknowledge at once: Discord drops interactions not answered in 3 s.
        let defer = CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new());
        if let Err(error) = self.retry(|| command.create_response(&ctx.http, defer.clone())).await {
            tracing::warn!(%error, "deferring a discord command failed");
            return;
        }
        let reach = Reach::Interaction { token: &command.token, original_open: true };
        let receipt = format!("discord:{}", command.id);
        let user = user_info(&command.user, command.guild_id, command.channel_id, None);
        self.answer(&ctx.http, &key, input, &receipt, reach, Lang::from_hint(&command.locale), &user).await;
    }

    /// `/why user:…`: staff see, and only they, why the bot treated that
    /// person's case in this channel as it did; anyone else is told the
    /// command is for staff.
    async fn why(&self, ctx: &Context, command: &CommandInteraction) {
        let about = command.data.options.iter().find_map(|option| match option.value {
            CommandDataOptionValue::User(user) => Some(key(command.channel_id, user)),
            _ => None,
        });
        let asker = if self.is_staff(command.member.as_deref()) { Asker::Staff } else { Asker::Other };
        let answer = why::answer(&self.session, asker, about.as_ref()).await;
        let mut parts = split(&answer).into_iter();
        let first = CreateInteractionResponseMessage::new()
            .content(to_markdown(&parts.next().unwrap_or_default()))
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new());
        let response = CreateInteractionResponse::Message(first);
        if let Err(error) = self.retry(|| command.create_response(&ctx.http, response.clone())).await {
            tracing::warn!(%error, "answering a discord /why failed");
            return;
        }
        for part in parts {
            self.notice(ctx, &command.token, &part).await;
        }
    }

    /// Whether `member` is staff: allowed to manage messages (or an
    /// administrator) in the channel, or holding a configured staff role.
    fn is_staff(&self, member: Option<&Member>) -> bool {
        member.is_some_and(|member| {
            let permitted = member
                .permissions
                .is_some_and(|permissions| permissions.manage_messages() || permissions.administrator());
            permitted || member.roles.iter().any(|role| self.staff_roles.contains(&role.get()))
        })
    }

    /// `/fix` without text opens a form with room for a long paste.
    async fn open_paste_form(&self, ctx: &Context, command: &CommandInteraction) {
        let flows = self.session.flows();
        let labels = &flows.bot().labels;
        let field = CreateInputText::new(InputTextStyle::Paragraph, &labels.paste_label, PASTE_FORM)
            .max_length(PASTE_MAX)
            .required(true);
        let form =
            CreateModal::new(PASTE_FORM, &labels.paste_title).components(vec![CreateActionRow::InputText(field)]);
        if let Err(error) =
            self.retry(|| command.create_response(&ctx.http, CreateInteractionResponse::Modal(form.clone()))).await
        {
            tracing::warn!(%error, "opening the discord paste form failed");
        }
    }

    async fn paste(&self, ctx: &Context, modal: ModalInteraction) {
        let text: String = modal
            .data
            .components
            .iter()
            .flat_map(|row| &row.components)
            .filter_map(|component| match component {
                ActionRowComponent::InputText(input) => input.value.clone(),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let defer = CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new());
        if let Err(error) = self.retry(|| modal.create_response(&ctx.http, defer.clone())).await {
            tracing::warn!(%error, "deferring a discord paste failed");
            return;
        }
        let key = key(modal.channel_id, modal.user.id);
        let reach = Reach::Interaction { token: &modal.token, original_open: true };
        let receipt = format!("discord:{}", modal.id);
        let user = user_info(&modal.user, modal.guild_id, modal.channel_id, None);
        self.answer(&ctx.http, &key, Input::Text(text), &receipt, reach, Lang::from_hint(&modal.locale), &user).await;
    }

    async fn press(&self, ctx: &Context, component: ComponentInteraction) {
        // Acknowledge at once; what follows may take longer than 3 s.
        if let Err(error) =
            self.retry(|| component.create_response(&ctx.http, CreateInteractionResponse::Acknowledge)).await
        {
            tracing::warn!(%error, "acknowledging a discord button failed");
            return;
        }
        let key = key(component.channel_id, component.user.id);
        let reach = Reach::Interaction { token: &component.token, original_open: false };
        let flows = self.session.flows();
        let messages = &flows.bot().messages;
        let transition = match self.codec.decode(&key, &component.data.custom_id) {
            Err(ButtonError::Foreign) => {
                return self.notice(ctx, &component.token, &messages.foreign_button.render()).await;
            }
            Err(ButtonError::Malformed) => {
                return self.notice(ctx, &component.token, &messages.stale_button.render()).await;
            }
            Ok(button) => {
                let receipt = format!("discord:{}", component.id);
                let hint = Lang::from_hint(&component.locale);
                match self.apply(&ctx.http, &key, Input::Button(button), &receipt, reach, hint).await {
                    Some(transition) => (transition, receipt),
                    None => return,
                }
            }
        };
        let (transition, receipt) = transition;
        if let Some(notice) = &transition.notice {
            self.notice(ctx, &component.token, &Markup::plain(notice.clone())).await;
            return self.confirm(&receipt).await;
        }
        // The pressed step is finished: grey out its buttons.
        let disabled = disable(&component.message);
        let edit = EditInteractionResponse::new().components(disabled).allowed_mentions(CreateAllowedMentions::new());
        if let Err(error) = self.retry(|| edit.clone().execute(&ctx.http, &component.token)).await {
            tracing::debug!(%error, "disabling the pressed buttons failed");
        }
        self.deliver(&ctx.http, &key, &transition, reach).await;
        self.confirm(&receipt).await;
        let user = user_info(&component.user, component.guild_id, component.channel_id, Some(component.message.id));
        self.follow(&key, &transition, &user).await;
    }

    /// Runs the input through the session and sends the answer.
    /// `hint` is the locale of the user's Discord app, when the event has one.
    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        http: &Http,
        key: &ConversationKey,
        input: Input,
        receipt: &str,
        reach: Reach<'_>,
        hint: Option<Lang>,
        user: &UserInfo,
    ) {
        if let Some(transition) = self.apply(http, key, input, receipt, reach, hint).await {
            self.deliver(http, key, &transition, reach).await;
            self.confirm(receipt).await;
            self.follow(key, &transition, user).await;
        }
    }

    /// Carries out what a transition asks of staff (a hand-over, a message
    /// for them), once the user has their answer.
    async fn follow(&self, key: &ConversationKey, transition: &Transition, user: &UserInfo) {
        if let Some(handovers) = &self.handovers {
            handovers.follow(key, transition, user, now()).await;
        }
    }

    /// Records the answer to `receipt` as sent. Discord never delivers an
    /// event to a second process, so its answer is not kept for one.
    async fn confirm(&self, receipt: &str) {
        if let Err(error) = self.session.confirm_delivery(receipt).await {
            tracing::warn!(%error, "recording a discord answer as sent failed");
        }
    }

    /// A refusal only the presser sees.
    async fn notice(&self, ctx: &Context, token: &str, text: &Markup) {
        let followup = CreateInteractionResponseFollowup::new()
            .content(to_markdown(text))
            .ephemeral(true)
            .allowed_mentions(CreateAllowedMentions::new());
        match self.retry(|| followup.clone().execute(&ctx.http, (None, token))).await {
            Ok(_) => metrics().messages_sent.with_label_values(&[PART]).inc(),
            Err(error) => tracing::warn!(%error, "sending a discord notice failed"),
        }
    }

    /// Runs the input through the session; `None` when the event was handled
    /// before, or the store failed (the user is told).
    async fn apply(
        &self,
        http: &Http,
        key: &ConversationKey,
        input: Input,
        receipt: &str,
        reach: Reach<'_>,
        hint: Option<Lang>,
    ) -> Option<Transition> {
        match self.session.handle_once_in(key, input, now(), receipt, hint).await {
            Ok(transition) => transition,
            Err(error) => {
                tracing::error!(%error, "handling a discord event failed");
                let failure = self.session.flows().bot().messages.failure.render();
                self.send(http, key, &failure, Vec::new(), reach, true).await;
                None
            }
        }
    }

    /// Sends the replies, and takes the buttons off this conversation's
    /// previous channel prompt so a finished step cannot be pressed again.
    /// Returns `false` when a reply could not be sent for a reason that may pass.
    async fn deliver(&self, http: &Http, key: &ConversationKey, transition: &Transition, mut reach: Reach<'_>) -> bool {
        if transition.changed
            && let Some((channel, message)) = self.prompts.lock().await.remove(key)
        {
            let edit = EditMessage::new().components(Vec::new());
            if let Err(error) = self.retry(|| channel.edit_message(http, message, edit.clone())).await {
                tracing::debug!(%error, "removing old discord buttons failed");
            }
        }
        if transition.replies.is_empty()
            && let Reach::Interaction { token, original_open: true } = reach
        {
            // Nothing to say (a flood being ignored): close the deferred
            // "thinking…" rather than leave it to time out as a failure.
            if let Err(error) = self.retry(|| http.delete_original_interaction_response(token)).await {
                tracing::debug!(%error, "closing a deferred discord response failed");
            }
        }
        let mut settled = true;
        for reply in &transition.replies {
            let parts = split(&reply.body);
            let count = parts.len();
            for (index, part) in parts.iter().enumerate() {
                let rows = if index + 1 == count { self.buttons(key, reply) } else { Vec::new() };
                settled &= self.send(http, key, part, rows, reach, false).await;
                if let Reach::Interaction { original_open, .. } = &mut reach {
                    *original_open = false;
                }
                if let Reach::Channel { reply_to, .. } = &mut reach {
                    *reply_to = None;
                }
            }
        }
        settled
    }

    /// Sends one message where `reach` says, with empty allowed mentions;
    /// `false` when it failed for a reason that may pass.
    async fn send(
        &self,
        http: &Http,
        key: &ConversationKey,
        body: &Markup,
        rows: Vec<CreateActionRow>,
        reach: Reach<'_>,
        ephemeral: bool,
    ) -> bool {
        let content = to_markdown(body);
        let has_buttons = !rows.is_empty();
        let result = match reach {
            Reach::Interaction { token, original_open: true } => {
                let edit = EditInteractionResponse::new()
                    .content(&content)
                    .components(rows)
                    .allowed_mentions(CreateAllowedMentions::new());
                self.retry(|| edit.clone().execute(http, token)).await.map(drop)
            }
            Reach::Interaction { token, original_open: false } => {
                let followup = CreateInteractionResponseFollowup::new()
                    .content(&content)
                    .components(rows)
                    .ephemeral(ephemeral)
                    .allowed_mentions(CreateAllowedMentions::new());
                self.retry(|| followup.clone().execute(http, (None, token))).await.map(drop)
            }
            Reach::Channel { channel, reply_to } => {
                let mut message = CreateMessage::new()
                    .content(&content)
                    .components(rows)
                    .allowed_mentions(CreateAllowedMentions::new());
                if let Some(reply_to) = reply_to {
                    message = message.reference_message((channel, reply_to));
                }
                match self.retry(|| channel.send_message(http, message.clone())).await {
                    Ok(sent) => {
                        if has_buttons {
                            self.prompts.lock().await.insert(key.clone(), (channel, sent.id));
                        }
                        Ok(())
                    }
                    Err(error) => Err(error),
                }
            }
        };
        match result {
            Ok(()) => {
                metrics().messages_sent.with_label_values(&[PART]).inc();
                true
            }
            Err(error) => {
                tracing::warn!(%error, "sending a discord message failed");
                !matches!(kind(&error), "server" | "network" | "rate_limited")
            }
        }
    }

    /// The reply's choices as buttons, five to a row (Discord's maximum).
    fn buttons(&self, key: &ConversationKey, reply: &Reply) -> Vec<CreateActionRow> {
        let buttons: Vec<CreateButton> = reply
            .choices
            .iter()
            .enumerate()
            .map(|(index, label)| {
                let style = if index == 0 { ButtonStyle::Primary } else { ButtonStyle::Secondary };
                CreateButton::new(self.codec.encode(key, reply.button(index))).label(label).style(style)
            })
            .collect();
        buttons.chunks(5).map(|row| CreateActionRow::Buttons(row.to_vec())).collect()
    }

    /// Makes a call, retrying what may pass: a 5xx or a network failure
    /// (after 250 ms, doubling), and a 429 while serenity's own limiter is
    /// off (after 1 s, doubling: serenity's error does not carry Discord's
    /// `retry_after`, and a route's wait is about a second). With the limiter
    /// on, serenity waits out 429s per route and globally itself.
    async fn retry<T, F: Future<Output = serenity::Result<T>>>(&self, call: impl Fn() -> F) -> serenity::Result<T> {
        let (mut server_wait, mut limit_wait) = (Duration::from_millis(250), Duration::from_secs(1));
        let mut attempt = 1;
        loop {
            if self.limit_ourselves {
                let slot = {
                    let mut next = self.next_call.lock().await;
                    let slot = (*next).max(tokio::time::Instant::now());
                    *next = slot + CALL_GAP;
                    slot
                };
                tokio::time::sleep_until(slot).await;
            }
            let result = call().await;
            let Err(error) = &result else { return result };
            let kind = kind(error);
            metrics().api_errors.with_label_values(&[PART, kind]).inc();
            let wait = match kind {
                "rate_limited" if self.limit_ourselves => &mut limit_wait,
                "server" | "network" => &mut server_wait,
                _ => return result,
            };
            if attempt >= ATTEMPTS {
                return result;
            }
            tracing::debug!(%error, ?wait, attempt, "discord call failed; trying again");
            metrics().api_retries.with_label_values(&[PART]).inc();
            tokio::time::sleep(*wait).await;
            *wait *= 2;
            attempt += 1;
        }
    }
}

/// What kind of failure `error` is, as the metrics name it.
fn kind(error: &serenity::Error) -> &'static str {
    match error {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) => match response.status_code.as_u16() {
            429 => "rate_limited",
            500..=599 => "server",
            _ => "refused",
        },
        serenity::Error::Http(HttpError::Request(_)) | serenity::Error::Io(_) | serenity::Error::Tungstenite(_) => {
            "network"
        }
        _ => "refused",
    }
}

/// The buttons of `message`, all disabled.
fn disable(message: &Message) -> Vec<CreateActionRow> {
    message
        .components
        .iter()
        .map(|row| {
            let buttons = row
                .components
                .iter()
                .filter_map(|component| match component {
                    ActionRowComponent::Button(button) => match &button.data {
                        ButtonKind::NonLink { custom_id, style } => Some(
                            CreateButton::new(custom_id.clone())
                                .label(button.label.clone().unwrap_or_default())
                                .style(*style)
                                .disabled(true),
                        ),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            CreateActionRow::Buttons(buttons)
        })
        .collect()
}

/// A typed message: `/command` words are commands, the rest text.
fn text_input(content: &str) -> Input {
    match CoreCommand::parse(content) {
        Some(command) => Input::Command(command),
        None => Input::Text(content.to_owned()),
    }
}

/// How staff see a user: display name, username and id, and a link to the
/// conversation where staff can open it (not in DMs).
fn user_info(user: &User, guild: Option<GuildId>, channel: ChannelId, message: Option<MessageId>) -> UserInfo {
    let name = user.global_name.as_deref().unwrap_or(&user.name);
    let handle = format!("{name} (@{}, id {})", user.name, user.id);
    let link = guild.map(|guild| match message {
        Some(message) => format!("https://discord.com/channels/{guild}/{channel}/{message}"),
        None => format!("https://discord.com/channels/{guild}/{channel}"),
    });
    UserInfo { handle, link }
}

fn key(channel: ChannelId, user: UserId) -> ConversationKey {
    // A thread is a channel of its own, so each thread is its own place.
    ConversationKey::new("discord", &channel.get().to_string(), "", &user.get().to_string())
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs() as i64)
}
