//! The fake Discord checked with serenity's own client: what it sends over the gateway and
//! answers over REST must deserialize into serenity's types, serenity must be able to resume
//! on it, shards must get their own sessions and events, and its refusals must surface as the
//! errors serenity gives for Discord's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use serenity::all::{
    ActionRowComponent, ButtonStyle, ChannelId, ChannelType, Command, CommandOptionType, ComponentInteractionDataKind,
    Context, CreateActionRow, CreateButton, CreateCommand, CreateCommandOption, CreateEmbed, CreateInputText,
    CreateInteractionResponse, CreateInteractionResponseFollowup, CreateInteractionResponseMessage, CreateMessage,
    CreateModal, CreateThread, EditInteractionResponse, EditMessage, EventHandler, GatewayIntents, GuildId,
    InputTextStyle, Interaction, Message, MessageFlags, MessageId, MessageType, Ready, ResolvedValue, ResumedEvent,
};
use serenity::http::{Http, HttpBuilder, HttpError};
use serenity::{Client, async_trait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::fake_discord::{APP_ID, BOT_ID, BOT_USERNAME, FakeDiscord, Place, Shard, shard_of};

const ANNA: u64 = 42;
const DM: Place = Place { guild: None, channel: 100 };
const GUILD: u64 = 7;
const TEXT: Place = Place { guild: Some(GUILD), channel: 70 };
const WAIT: Duration = Duration::from_secs(5);

/// What serenity handed to the event handler.
#[derive(Clone, Debug)]
enum Seen {
    Ready(Box<Ready>),
    Interaction(Box<Interaction>),
    Message(Box<Message>),
    Resumed,
}

/// Records every event, in order.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

impl Recorder {
    fn push(&self, seen: Seen) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).push(seen);
    }

    fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `pick` finds something among the events.
    async fn wait<T>(&self, what: &str, pick: impl Fn(&Seen) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = self.all().iter().find_map(&pick) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (serenity silently drops dispatches it cannot parse: check \
                 FakeDiscord::dispatches); seen: {:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn interaction(&self, id: u64) -> Interaction {
        self.wait(&format!("interaction {id}"), |s| match s {
            Seen::Interaction(i) if i.id().get() == id => Some((**i).clone()),
            _ => None,
        })
        .await
    }

    async fn message(&self, id: u64) -> Message {
        self.wait(&format!("message {id}"), |s| match s {
            Seen::Message(m) if m.id.get() == id => Some((**m).clone()),
            _ => None,
        })
        .await
    }
}

struct Handler(Arc<Recorder>);

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _: Context, ready: Ready) {
        self.0.push(Seen::Ready(Box::new(ready)));
    }

    async fn interaction_create(&self, _: Context, interaction: Interaction) {
        self.0.push(Seen::Interaction(Box::new(interaction)));
    }

    async fn message(&self, _: Context, message: Message) {
        self.0.push(Seen::Message(Box::new(message)));
    }

    async fn resume(&self, _: Context, _: ResumedEvent) {
        self.0.push(Seen::Resumed);
    }
}

/// A fake, serenity connected to it, and an `Http` for answering, built as the front-end
/// builds them.
struct Bot {
    fake: FakeDiscord,
    http: Arc<Http>,
    events: Arc<Recorder>,
    client: tokio::task::JoinHandle<serenity::Result<()>>,
}

fn http_for(fake: &FakeDiscord, token: &str) -> Http {
    HttpBuilder::new(token).proxy(fake.api_url()).ratelimiter_disabled(true).application_id(APP_ID.into()).build()
}

async fn start(intents: GatewayIntents) -> Bot {
    let fake = FakeDiscord::start().await;
    let events = Arc::new(Recorder::default());
    let mut client = client_for(&fake, intents, Handler(events.clone())).await;
    let client = tokio::spawn(async move { client.start().await });
    fake.wait_ready(WAIT).await;
    events.wait("READY", |s| matches!(s, Seen::Ready(_)).then_some(())).await;
    Bot { http: Arc::new(http_for(&fake, fake.token())), fake, events, client }
}

/// A serenity client on an `Http` pointed at the fake, as the front-end builds it.
async fn client_for(fake: &FakeDiscord, intents: GatewayIntents, handler: Handler) -> Client {
    serenity::client::ClientBuilder::new_with_http(http_for(fake, fake.token()), intents)
        .event_handler(handler)
        .await
        .expect("the client builds")
}

fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// The status, code and field errors of a refused request.
fn refusal<T: std::fmt::Debug>(result: serenity::Result<T>) -> (u16, isize, String, Vec<(String, String)>) {
    match result {
        Err(serenity::Error::Http(HttpError::UnsuccessfulRequest(response))) => (
            response.status_code.as_u16(),
            response.error.code,
            response.error.message.clone(),
            response.error.errors.iter().map(|e| (e.path.clone(), e.code.clone())).collect(),
        ),
        other => panic!("expected Discord to refuse, got {other:?}"),
    }
}

/// Every dispatch of the session deserializes as serenity's gateway event: serenity drops
/// what it cannot parse without telling the handler, so a bad shape would otherwise go unseen.
fn assert_dispatches_parse(fake: &FakeDiscord) {
    assert_parse(&fake.dispatches());
}

/// [`assert_dispatches_parse`] for the dispatches of one session.
fn assert_parse(dispatches: &[Value]) {
    assert!(!dispatches.is_empty());
    for (index, payload) in dispatches.iter().enumerate() {
        assert_eq!(payload["s"], json!(index + 1), "sequence numbers run 1, 2, 3…");
        let parsed = serde_json::from_value::<serenity::model::event::GatewayEvent>(payload.clone());
        assert!(parsed.is_ok(), "{}: {:?}\n{payload:#}", payload["t"], parsed.err());
    }
}

fn buttons(specs: &[(&str, &str)]) -> CreateActionRow {
    CreateActionRow::Buttons(specs.iter().map(|(id, label)| CreateButton::new(*id).label(*label)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_heartbeats_on_a_plain_connection() {
    let bot = start(intents()).await;
    let ready = bot.events.wait("READY", |s| if let Seen::Ready(r) = s { Some(r.clone()) } else { None }).await;
    assert_eq!(ready.user.id.get(), BOT_ID);
    assert_eq!(ready.user.name, BOT_USERNAME);
    assert!(ready.user.bot);
    assert_eq!(ready.application.id.get(), APP_ID);
    assert_eq!(ready.version, 10);
    assert!(!ready.session_id.is_empty());
    assert_eq!(ready.resume_gateway_url, bot.fake.gateway_url());
    assert_eq!(bot.fake.identifies(), 1);
    assert_eq!(bot.fake.intents(), Some(intents().bits()));
    // serenity asks REST only for the gateway URL, then connects to it with ?v=10.
    let calls = bot.fake.calls();
    let asked: Vec<_> = calls.iter().map(|c| (c.method.as_str(), c.path.as_str(), c.status)).collect();
    assert_eq!(asked, [("GET", "/gateway", 200)]);
    assert_eq!(bot.fake.connections(), ["v=10"]);
    // Heartbeats every second are ACKed, so the connection stays up without reconnecting.
    let deadline = Instant::now() + WAIT;
    while bot.fake.heartbeats() < 1 {
        assert!(Instant::now() < deadline, "no heartbeat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(bot.fake.is_live());
    assert_eq!((bot.fake.identifies(), bot.fake.resumes(), bot.fake.connections().len()), (1, 0, 1));
}

#[tokio::test]
async fn rest_basics_deserialize_and_the_token_is_checked() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake, fake.token());
    let me = http.get_current_user().await.unwrap();
    assert_eq!((me.id.get(), me.name.as_str(), me.bot), (BOT_ID, BOT_USERNAME, true));
    let app = http.get_current_application_info().await.unwrap();
    assert_eq!(app.id.get(), APP_ID);
    let gateway = http.get_bot_gateway().await.unwrap();
    assert_eq!((gateway.url, gateway.shards), (fake.gateway_url(), 1));

    let stranger = http_for(&fake, "not-the-token");
    assert_eq!(refusal(stranger.get_current_user().await), (401, 0, "401: Unauthorized".into(), vec![]));
    // Unknown routes are 404, never 5xx.
    assert_eq!(refusal(http.get_guild(GuildId::new(5)).await).0, 404);
    assert!(fake.calls().iter().all(|c| c.status < 500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_command_is_answered_once_then_followed_up_and_edited() {
    let bot = start(intents()).await;
    let option = CreateCommandOption::new(CommandOptionType::String, "error", "The error shown").required(false);
    let registered = Command::set_global_commands(
        &bot.http,
        vec![CreateCommand::new("fix").description("Fix a backup").add_option(option)],
    )
    .await
    .unwrap();
    assert_eq!(registered[0].name, "fix");
    assert_eq!(bot.fake.commands()[0]["name"], "fix");
    assert!(bot.fake.commands()[0].get("guild_id").is_none());

    let id = bot.fake.slash(DM, ANNA, "fix", json!([{"name": "error", "type": 3, "value": "E42"}]));
    let Interaction::Command(command) = bot.events.interaction(id).await else { panic!("not a command") };
    assert_eq!(command.data.name, "fix");
    assert_eq!(command.data.id, registered[0].id);
    assert_eq!(command.user.id.get(), ANNA);
    assert!(command.guild_id.is_none() && command.member.is_none());
    assert_eq!(command.channel_id.get(), DM.channel);
    let options = command.data.options();
    assert_eq!(options[0].name, "error");
    assert!(matches!(options[0].value, ResolvedValue::String("E42")));

    let answer = CreateInteractionResponseMessage::new()
        .content("Which phone?")
        .ephemeral(true)
        .components(vec![buttons(&[("os:ios", "iPhone"), ("os:android", "Android")])]);
    command.create_response(&bot.http, CreateInteractionResponse::Message(answer.clone())).await.unwrap();
    let (status, code, message, _) =
        refusal(command.create_response(&bot.http, CreateInteractionResponse::Message(answer)).await);
    assert_eq!((status, code, message.as_str()), (400, 40060, "Interaction has already been acknowledged."));
    assert!(bot.fake.ack_delay(id).unwrap() < Duration::from_secs(3));

    let original = command.get_response(&bot.http).await.unwrap();
    assert_eq!(original.content, "Which phone?");
    assert!(original.flags.unwrap().contains(MessageFlags::EPHEMERAL));
    assert_eq!(original.kind, MessageType::ChatInputCommand);
    let posts = bot.fake.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!((posts[0].channel, posts[0].message, posts[0].ephemeral), (DM.channel, original.id.get(), true));
    assert_eq!(posts[0].interaction, Some(id));
    let labels: Vec<_> = posts[0].buttons[0].iter().map(|b| (b.label.as_str(), b.custom_id.as_str())).collect();
    assert_eq!(labels, [("iPhone", "os:ios"), ("Android", "os:android")]);

    let followup = command
        .create_followup(&bot.http, CreateInteractionResponseFollowup::new().content("More help"))
        .await
        .unwrap();
    assert_eq!(followup.content, "More help");
    let edited =
        command.edit_response(&bot.http, EditInteractionResponse::new().content("Which phone, again?")).await.unwrap();
    assert_eq!(edited.id, original.id);
    assert!(edited.edited_timestamp.is_some());
    let vias: Vec<Value> = bot.fake.responses(id).iter().map(|r| r["_via"].clone()).collect();
    assert_eq!(vias, [json!("callback"), json!("followup"), json!("edit_original")]);
    assert_eq!(bot.fake.content_of(DM.channel, original.id.get()).as_deref(), Some("Which phone, again?"));

    // In a guild the user comes as a member.
    let guild_id = bot.fake.slash(TEXT, ANNA, "fix", json!([]));
    let Interaction::Command(command) = bot.events.interaction(guild_id).await else { panic!("not a command") };
    assert_eq!(command.guild_id.map(|g| g.get()), Some(GUILD));
    assert_eq!(command.member.as_ref().map(|m| m.user.id.get()), Some(ANNA));
    assert_eq!(command.user.id.get(), ANNA);
    // The public followup was echoed back as MESSAGE_CREATE, as Discord does.
    assert!(bot.events.message(followup.id.get()).await.author.bot);
    assert_dispatches_parse(&bot.fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons_are_pressed_and_the_message_updated() {
    let bot = start(intents()).await;
    bot.fake.add_place(DM, ANNA);
    let sent = ChannelId::new(DM.channel)
        .send_message(
            &bot.http,
            CreateMessage::new().content("Pick one").components(vec![buttons(&[("yes", "Yes"), ("no", "No")])]),
        )
        .await
        .unwrap();
    assert_eq!(sent.author.id.get(), BOT_ID);
    assert_eq!(sent.components[0].components.len(), 2);

    let id = bot.fake.press(DM, ANNA, sent.id.get(), "yes");
    let Interaction::Component(press) = bot.events.interaction(id).await else { panic!("not a component") };
    assert_eq!(press.data.custom_id, "yes");
    assert!(matches!(press.data.kind, ComponentInteractionDataKind::Button));
    assert_eq!(press.message.id, sent.id);
    assert_eq!(press.user.id.get(), ANNA);

    let disabled = CreateActionRow::Buttons(vec![
        CreateButton::new("yes").label("Yes").disabled(true),
        CreateButton::new("no").label("No").style(ButtonStyle::Secondary).disabled(true),
    ]);
    let update = CreateInteractionResponseMessage::new().content("You picked yes").components(vec![disabled]);
    press.create_response(&bot.http, CreateInteractionResponse::UpdateMessage(update)).await.unwrap();
    let shown = bot.fake.message_components(DM.channel, sent.id.get()).unwrap();
    assert!(shown[0].iter().all(|b| b.disabled));
    let posts = bot.fake.posts();
    assert_eq!(
        (posts[1].message, posts[1].content.as_str(), posts[1].interaction),
        (sent.id.get(), "You picked yes", Some(id))
    );

    // A press acknowledged without a message (type 6): `@original` is then the pressed message.
    let embed = CreateEmbed::new().title("Backup").description("Stopped at 40%").field("Phone", "Pixel", true);
    let other = ChannelId::new(DM.channel)
        .send_message(&bot.http, CreateMessage::new().embed(embed).components(vec![buttons(&[("retry", "Retry")])]))
        .await
        .unwrap();
    assert_eq!(other.embeds[0].title.as_deref(), Some("Backup"));
    assert_eq!(other.embeds[0].fields[0].value, "Pixel");
    let retry = bot.fake.press(DM, ANNA, other.id.get(), "retry");
    let Interaction::Component(press) = bot.events.interaction(retry).await else { panic!("not a component") };
    press.create_response(&bot.http, CreateInteractionResponse::Acknowledge).await.unwrap();
    let edited = press.edit_response(&bot.http, EditInteractionResponse::new().content("Retrying")).await.unwrap();
    assert_eq!(edited.id, other.id);
    assert_eq!(bot.fake.content_of(DM.channel, other.id.get()).as_deref(), Some("Retrying"));
    assert_eq!(bot.fake.posts().len(), 3, "type 6 and its edits create no post");

    // Buttons can also be taken away with a plain channel edit.
    let edited = ChannelId::new(DM.channel)
        .edit_message(&bot.http, sent.id, EditMessage::new().content("Done").components(vec![]))
        .await
        .unwrap();
    assert!(edited.components.is_empty());
    assert_eq!(bot.fake.message_components(DM.channel, sent.id.get()), Some(vec![]));
    assert_dispatches_parse(&bot.fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modal_is_opened_submitted_and_answered_after_deferring() {
    let bot = start(intents()).await;
    let id = bot.fake.slash(TEXT, ANNA, "report", json!([]));
    let Interaction::Command(command) = bot.events.interaction(id).await else { panic!("not a command") };
    let input = CreateInputText::new(InputTextStyle::Paragraph, "What happened?", "what").max_length(500);
    let modal =
        CreateModal::new("report-modal", "Describe the error").components(vec![CreateActionRow::InputText(input)]);
    command.create_response(&bot.http, CreateInteractionResponse::Modal(modal)).await.unwrap();
    let posts = bot.fake.posts();
    assert_eq!(posts[0].modal.as_ref().map(|m| m["title"].clone()), Some(json!("Describe the error")));

    let submitted = bot.fake.submit(TEXT, ANNA, "report-modal", &[("what", "It stopped at 40%")]);
    let Interaction::Modal(submit) = bot.events.interaction(submitted).await else { panic!("not a modal submit") };
    assert_eq!(submit.data.custom_id, "report-modal");
    let ActionRowComponent::InputText(text) = &submit.data.components[0].components[0] else {
        panic!("not a text input")
    };
    assert_eq!((text.custom_id.as_str(), text.value.as_deref()), ("what", Some("It stopped at 40%")));
    assert_eq!(submit.guild_id.map(|g| g.get()), Some(GUILD));

    let defer = CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new());
    submit.create_response(&bot.http, defer).await.unwrap();
    assert_eq!(bot.fake.posts().len(), 1, "a deferred answer is no post until filled");
    let filled =
        submit.edit_response(&bot.http, EditInteractionResponse::new().content("Thanks, looking")).await.unwrap();
    assert_eq!(filled.content, "Thanks, looking");
    let posts = bot.fake.posts();
    assert_eq!(
        (posts[1].content.as_str(), posts[1].interaction, posts[1].ephemeral),
        ("Thanks, looking", Some(submitted), false)
    );
    // The deferred message was echoed when created, naming the modal and the command behind it.
    let echo = bot.events.message(filled.id.get()).await;
    assert!(echo.interaction_metadata.is_some());
    assert_dispatches_parse(&bot.fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_and_intents_gate_them() {
    let bot = start(intents()).await;
    let id = bot.fake.message(DM, ANNA, "my backup failed");
    let message = bot.events.message(id).await;
    assert_eq!((message.content.as_str(), message.author.id.get()), ("my backup failed", ANNA));
    assert!(message.guild_id.is_none() && !message.author.bot);
    assert_eq!(message.channel_id.get(), DM.channel);

    let reply = ChannelId::new(DM.channel)
        .send_message(&bot.http, CreateMessage::new().content("Let's fix it").reference_message(&message))
        .await
        .unwrap();
    assert_eq!(reply.kind, MessageType::InlineReply);
    assert_eq!(reply.referenced_message.as_ref().map(|m| m.id), Some(message.id));
    // Discord echoes the bot's own messages to it.
    let echo = bot.events.message(reply.id.get()).await;
    assert!(echo.author.bot);

    let guild = bot.fake.message(TEXT, ANNA, "in a guild");
    let guild = bot.events.message(guild).await;
    assert_eq!(guild.guild_id.map(|g| g.get()), Some(GUILD));
    assert_eq!(guild.content, "in a guild");

    // Without MESSAGE_CONTENT, guild messages arrive empty unless they mention the bot.
    let blind = start(GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES).await;
    let hidden = blind.events.message(blind.fake.message(TEXT, ANNA, "secret")).await;
    assert_eq!(hidden.content, "");
    let mention = format!("<@{BOT_ID}> help");
    let shown = blind.events.message(blind.fake.message(TEXT, ANNA, &mention)).await;
    assert_eq!(shown.content, mention);
    assert_eq!(shown.mentions[0].id.get(), BOT_ID);
    let dm = blind.events.message(blind.fake.message(DM, ANNA, "dm text")).await;
    assert_eq!(dm.content, "dm text");
    assert_dispatches_parse(&bot.fake);
    assert_dispatches_parse(&blind.fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_4000_makes_serenity_resume_and_get_what_it_missed() {
    let bot = start(intents()).await;
    let before = bot.fake.message(DM, ANNA, "before");
    bot.events.message(before).await;
    bot.fake.close_gateway(4000);
    // Queued while no connection is live, replayed on RESUME.
    let during = bot.fake.message(DM, ANNA, "while away");
    let press = bot.fake.slash(DM, ANNA, "fix", json!([]));
    bot.fake.wait_ready(WAIT).await;
    bot.events.wait("RESUMED", |s| matches!(s, Seen::Resumed).then_some(())).await;
    assert_eq!(bot.events.message(during).await.content, "while away");
    let Interaction::Command(command) = bot.events.interaction(press).await else { panic!("not a command") };
    // The three seconds run from the replay, so it can still be answered.
    let answer = CreateInteractionResponseMessage::new().content("back");
    command.create_response(&bot.http, CreateInteractionResponse::Message(answer)).await.unwrap();
    assert_eq!((bot.fake.identifies(), bot.fake.resumes()), (1, 1));
    assert_eq!(bot.fake.connections().len(), 2);
    // Each event once: nothing replayed twice.
    let seen = bot.events.all();
    let count = |id: u64| seen.iter().filter(|s| matches!(s, Seen::Message(m) if m.id.get() == id)).count();
    assert_eq!((count(before), count(during)), (1, 1));
    assert_dispatches_parse(&bot.fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_followup_fills_a_deferred_answer() {
    let bot = start(intents()).await;
    let id = bot.fake.slash(DM, ANNA, "fix", json!([]));
    let Interaction::Command(command) = bot.events.interaction(id).await else { panic!("not a command") };
    let defer = CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new().ephemeral(true));
    command.create_response(&bot.http, defer).await.unwrap();
    let loading = command.get_response(&bot.http).await.unwrap();
    assert!(loading.flags.unwrap().contains(MessageFlags::LOADING | MessageFlags::EPHEMERAL));
    let first =
        command.create_followup(&bot.http, CreateInteractionResponseFollowup::new().content("Done")).await.unwrap();
    assert_eq!(first.id, loading.id, "the first followup after a defer fills the loading message");
    assert!(!first.flags.unwrap().contains(MessageFlags::LOADING));
    let second =
        command.create_followup(&bot.http, CreateInteractionResponseFollowup::new().content("More")).await.unwrap();
    assert_ne!(second.id, loading.id);
    let posts = bot.fake.posts();
    let seen: Vec<_> = posts.iter().map(|p| (p.message, p.content.as_str(), p.ephemeral)).collect();
    assert_eq!(seen, [(loading.id.get(), "Done", true), (second.id.get(), "More", false)]);
    assert_dispatches_parse(&bot.fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_and_resumable_invalid_session_are_resumed() {
    let bot = start(intents()).await;
    bot.fake.request_reconnect();
    let first = bot.fake.message(DM, ANNA, "after op 7");
    bot.fake.wait_ready(WAIT).await;
    assert_eq!(bot.events.message(first).await.content, "after op 7");
    bot.fake.invalidate_session(true);
    let second = bot.fake.message(DM, ANNA, "after op 9");
    bot.fake.wait_ready(WAIT).await;
    assert_eq!(bot.events.message(second).await.content, "after op 9");
    assert_eq!((bot.fake.identifies(), bot.fake.resumes()), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_4004_is_fatal() {
    let bot = start(intents()).await;
    bot.fake.close_gateway(4004);
    let ended = tokio::time::timeout(WAIT, bot.client).await.expect("serenity stops").expect("the task ends");
    assert!(
        matches!(ended, Err(serenity::Error::Gateway(serenity::gateway::GatewayError::InvalidAuthentication))),
        "{ended:?}"
    );
    assert_eq!(bot.fake.connections().len(), 1);
}

#[tokio::test]
async fn injected_429_surfaces_with_rate_limit_headers() {
    let fake = FakeDiscord::start().await;
    fake.add_place(DM, ANNA);
    let http = http_for(&fake, fake.token());
    fake.fail_next("POST", "/channels/100/messages", 429, Some(2.5));
    let refused = refusal(ChannelId::new(DM.channel).send_message(&http, CreateMessage::new().content("hi")).await);
    assert_eq!(refused.0, 429);
    // Used once: the retry goes through.
    ChannelId::new(DM.channel).send_message(&http, CreateMessage::new().content("hi")).await.unwrap();
    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 200]);

    // The body and headers, read raw because serenity keeps neither.
    fake.fail_next("GET", "/users/@me", 429, Some(2.5));
    let raw = raw_get(&fake, "/api/v10/users/@me").await;
    let lower = raw.to_ascii_lowercase();
    assert!(raw.starts_with("HTTP/1.1 429"), "{raw}");
    assert!(lower.contains("\r\nretry-after: 3\r\n"), "{raw}");
    assert!(lower.contains("\r\nx-ratelimit-remaining: 0\r\n"), "{raw}");
    assert!(lower.contains("\r\nx-ratelimit-reset-after: 2.500\r\n"), "{raw}");
    let body: Value = serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
    assert_eq!(body, json!({"message": "You are being rate limited.", "retry_after": 2.5, "global": false}));
}

/// A GET by hand, to see the raw response.
async fn raw_get(fake: &FakeDiscord, path: &str) -> String {
    let address = fake.api_url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bot {}\r\nConnection: close\r\n\r\n",
        fake.token()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_checked_like_discord_checks_them() {
    let bot = start(intents()).await;
    let (fake, http) = (&bot.fake, &bot.http);
    fake.add_place(DM, ANNA);
    let channel = ChannelId::new(DM.channel);

    // serenity refuses long content itself, so the raw route is used to reach the fake.
    let long = json!({"content": "é".repeat(2001)});
    let (status, code, message, errors) = refusal(http.send_message(channel, vec![], &long).await);
    assert_eq!((status, code, message.as_str()), (400, 50035, "Invalid Form Body"));
    assert_eq!(errors, [("content".to_string(), "BASE_TYPE_MAX_LENGTH".to_string())]);
    assert!(http.send_message(channel, vec![], &json!({"content": "é".repeat(2000)})).await.is_ok());

    let long_id = "x".repeat(101);
    let builder = CreateMessage::new().content("x").components(vec![buttons(&[(long_id.as_str(), "Long")])]);
    let (_, code, _, errors) = refusal(channel.send_message(&http, builder).await);
    assert_eq!(code, 50035);
    assert_eq!(errors, [("components.0.components.0.custom_id".to_string(), "BASE_TYPE_BAD_LENGTH".to_string())]);

    let six: Vec<(String, String)> = (0..6).map(|i| (format!("b{i}"), format!("B{i}"))).collect();
    let six: Vec<(&str, &str)> = six.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let builder = CreateMessage::new().content("x").components(vec![buttons(&six)]);
    let (_, _, _, errors) = refusal(channel.send_message(&http, builder).await);
    assert_eq!(errors, [("components.0.components".to_string(), "BASE_TYPE_BAD_LENGTH".to_string())]);

    let rows: Vec<CreateActionRow> = (0..6).map(|i| buttons(&[(&*format!("r{i}"), "R")])).collect();
    let (_, _, _, errors) =
        refusal(channel.send_message(&http, CreateMessage::new().content("x").components(rows)).await);
    assert_eq!(errors, [("components".to_string(), "BASE_TYPE_MAX_LENGTH".to_string())]);

    let twice = CreateMessage::new().content("x").components(vec![buttons(&[("same", "A"), ("same", "B")])]);
    let (_, _, _, errors) = refusal(channel.send_message(&http, twice).await);
    assert_eq!(
        errors,
        [("components.0.components.1.custom_id".to_string(), "COMPONENT_CUSTOM_ID_DUPLICATED".to_string())]
    );

    let long_label = "L".repeat(81);
    let builder = CreateMessage::new().content("x").components(vec![buttons(&[("ok", long_label.as_str())])]);
    let (_, _, _, errors) = refusal(channel.send_message(&http, builder).await);
    assert_eq!(errors, [("components.0.components.0.label".to_string(), "BASE_TYPE_MAX_LENGTH".to_string())]);

    assert_eq!(refusal(channel.send_message(&http, CreateMessage::new().content("  ")).await).1, 50006);
    assert_eq!(refusal(ChannelId::new(999).send_message(&http, CreateMessage::new().content("x")).await).1, 10003);

    // Someone else's message cannot be edited; an unknown one is 404.
    let words = bot.events.message(fake.message(TEXT, ANNA, "a user's words")).await;
    let edit = ChannelId::new(TEXT.channel).edit_message(&http, words.id, EditMessage::new().content("mine"));
    assert_eq!(refusal(edit.await).1, 50005);
    let edit = channel.edit_message(&http, MessageId::new(12345), EditMessage::new().content("x"));
    assert_eq!(refusal(edit.await).1, 10008);

    // Command names are lower-case.
    let bad = CreateCommand::new("Fix").description("Fix");
    let (_, code, _, errors) = refusal(Command::set_global_commands(&http, vec![bad]).await);
    assert_eq!((code, errors[0].0.as_str()), (50035, "0.name"));
    let (_, _, _, errors) = refusal(Command::set_global_commands(&http, vec![CreateCommand::new("fix")]).await);
    assert_eq!(errors[0].0, "0.description");
    assert!(fake.commands().is_empty());
    GuildId::new(GUILD).set_commands(&http, vec![CreateCommand::new("fix").description("Fix")]).await.unwrap();
    assert_eq!(fake.commands_in(Some(GUILD))[0]["guild_id"], json!(GUILD.to_string()));
    assert!(fake.calls().iter().all(|c| c.status < 500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_and_dm_channels_are_created() {
    let bot = start(intents()).await;
    bot.fake.add_place(TEXT, ANNA);
    let starter =
        ChannelId::new(TEXT.channel).send_message(&bot.http, CreateMessage::new().content("Case #1")).await.unwrap();
    let thread = ChannelId::new(TEXT.channel)
        .create_thread_from_message(&bot.http, starter.id, CreateThread::new("Case #1"))
        .await
        .unwrap();
    assert_eq!(thread.kind, ChannelType::PublicThread);
    assert_eq!(thread.id.get(), starter.id.get());
    assert_eq!(thread.parent_id.map(|p| p.get()), Some(TEXT.channel));
    assert_eq!(bot.fake.threads(), [(TEXT.channel, thread.id.get(), "Case #1".to_string())]);
    let starter = bot.http.get_message(ChannelId::new(TEXT.channel), starter.id).await.unwrap();
    assert_eq!(starter.thread.as_ref().map(|t| t.id), Some(thread.id));
    let inside = thread.id.send_message(&bot.http, CreateMessage::new().content("in the thread")).await.unwrap();
    assert_eq!(inside.channel_id, thread.id);
    let again =
        ChannelId::new(TEXT.channel).create_thread_from_message(&bot.http, starter.id, CreateThread::new("Again"));
    assert_eq!(refusal(again.await).1, 160004);

    let dm = bot.http.create_private_channel(&json!({"recipient_id": ANNA.to_string()})).await.unwrap();
    assert_eq!(dm.recipient.id.get(), ANNA);
    assert_eq!(bot.fake.dm_channel(ANNA), Some(dm.id.get()));
    dm.id.send_message(&bot.http, CreateMessage::new().content("Hello from the bot")).await.unwrap();
    let in_dm = ChannelId::new(dm.id.get()).create_thread_from_message(&bot.http, starter.id, CreateThread::new("x"));
    assert_eq!(refusal(in_dm.await).1, 50003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_after_three_seconds_is_an_unknown_interaction() {
    let bot = start(intents()).await;
    let id = bot.fake.slash(DM, ANNA, "fix", json!([]));
    let Interaction::Command(command) = bot.events.interaction(id).await else { panic!("not a command") };
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let answer = CreateInteractionResponse::Message(CreateInteractionResponseMessage::new().content("late"));
    let (status, code, message, _) = refusal(command.create_response(&bot.http, answer).await);
    assert_eq!((status, code, message.as_str()), (404, 10062, "Unknown interaction"));
    assert!(bot.fake.ack_delay(id).unwrap() > Duration::from_secs(3));
    // Never acknowledged, so there is nothing to follow up on.
    let followup = command.create_followup(&bot.http, CreateInteractionResponseFollowup::new().content("x")).await;
    assert_eq!(refusal(followup).1, 10015);
    assert!(bot.fake.posts().is_empty());
}

/// A serenity client running shard `id` of `total`, its calls and gateway connection labelled
/// `instance`; returns what it sees.
async fn start_shard(fake: &FakeDiscord, instance: &str, id: u32, total: u32) -> Arc<Recorder> {
    let events = Arc::new(Recorder::default());
    let http = HttpBuilder::new(fake.token())
        .proxy(fake.api_url_for(instance))
        .ratelimiter_disabled(true)
        .application_id(APP_ID.into())
        .build();
    let mut client = serenity::client::ClientBuilder::new_with_http(http, intents())
        .event_handler(Handler(events.clone()))
        .await
        .expect("the client builds");
    tokio::spawn(async move { client.start_shard(id, total).await });
    events
}

/// The ids of the messages and interactions among `dispatches`.
fn ids_in(dispatches: &[Value]) -> Vec<u64> {
    dispatches.iter().filter_map(|d| d["d"]["id"].as_str()?.parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_has_its_own_session_and_its_guilds_events() {
    let fake = FakeDiscord::start().await;
    let zero = start_shard(&fake, "zero", 0, 2).await;
    let one = start_shard(&fake, "one", 1, 2).await;
    let (shard0, shard1) = (Shard::new(0, 2), Shard::new(1, 2));
    fake.wait_until("both shards live", |fake| fake.live_shards() == [shard0, shard1], WAIT).await;
    let ready = |events: Arc<Recorder>| async move {
        events.wait("READY", |s| if let Seen::Ready(r) = s { Some(r.clone()) } else { None }).await
    };
    let (ready0, ready1) = (ready(zero.clone()).await, ready(one.clone()).await);
    assert_eq!(ready0.shard.map(|s| (s.id.0, s.total)), Some((0, 2)));
    assert_eq!(ready1.shard.map(|s| (s.id.0, s.total)), Some((1, 2)));
    assert_ne!(ready0.session_id, ready1.session_id);
    let mut identified: Vec<_> = fake.identified().into_iter().map(|i| (i.shard, i.instance)).collect();
    identified.sort();
    assert_eq!(identified, [(shard0, Some("zero".to_string())), (shard1, Some("one".to_string()))]);
    assert!(fake.calls().iter().all(|call| call.instance.is_some()), "{:?}", fake.calls());

    // (guild_id >> 22) % 2 names the shard; DMs go to shard 0.
    let (even, odd) = (Place::guild(8 << 22, 80), Place::guild((7 << 22) | 5, 70));
    assert_eq!((shard_of(8 << 22, 2), shard_of((7 << 22) | 5, 2)), (0, 1));
    let on_zero = fake.message(even, ANNA, "to shard 0");
    let in_dm = fake.message(DM, ANNA, "a DM");
    let on_one = fake.slash(odd, ANNA, "fix", json!([]));
    assert_eq!(zero.message(on_zero).await.content, "to shard 0");
    assert_eq!(zero.message(in_dm).await.content, "a DM");
    let Interaction::Command(command) = one.interaction(on_one).await else { panic!("not a command") };
    assert_eq!(command.guild_id.map(|g| g.get()), Some((7 << 22) | 5));
    assert_eq!(ids_in(&fake.dispatches_of(shard0)), [on_zero, in_dm]);
    assert_eq!(ids_in(&fake.dispatches_of(shard1)), [on_one]);
    let delivery = &fake.deliveries(on_one)[..];
    assert!(matches!(delivery, [d] if d.shard == shard1 && d.instance.as_deref() == Some("one")), "{delivery:?}");

    // Shard 1 drops: shard 0 carries on, and shard 1 resumes its own session with what it missed.
    fake.close_shard(shard1, 4000);
    let missed = fake.message(odd, ANNA, "while shard 1 was away");
    let meanwhile = fake.message(even, ANNA, "shard 0 carries on");
    assert_eq!(zero.message(meanwhile).await.content, "shard 0 carries on");
    one.wait("RESUMED", |s| matches!(s, Seen::Resumed).then_some(())).await;
    assert_eq!(one.message(missed).await.content, "while shard 1 was away");
    assert_eq!((fake.identifies(), fake.resumes()), (2, 1));
    assert!(!zero.all().iter().any(|s| matches!(s, Seen::Resumed)));
    // Each session numbers its own dispatches from 1.
    assert_parse(&fake.dispatches_of(shard0));
    assert_parse(&fake.dispatches_of(shard1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serenity_runs_the_end_of_a_shard_range_too() {
    // fixbot-discord's ShardRange::serenity_range relies on this: serenity 0.12 boots
    // `end - start + 1` shards, so `1..2` runs shards 1 and 2 (five seconds apart).
    let fake = FakeDiscord::start().await;
    let mut client = client_for(&fake, intents(), Handler(Arc::default())).await;
    tokio::spawn(async move { client.start_shard_range(1..2, 4).await });
    let expected = [Shard::new(1, 4), Shard::new(2, 4)];
    fake.wait_until("shards 1 and 2 of 4 live", |fake| fake.live_shards() == expected, WAIT * 3).await;
    let identified: Vec<Shard> = fake.identified().iter().map(|i| i.shard).collect();
    assert_eq!(identified, expected);
}

/// What the gateway answers a bare websocket's IDENTIFY with `shard`: READY's data, or the
/// close code.
async fn identify_raw(fake: &FakeDiscord, shard: Value) -> Result<Value, u16> {
    let url = format!("{}/?v=10&encoding=json", fake.gateway_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("the gateway accepts");
    let hello = ws.next().await.expect("HELLO").expect("a frame");
    assert!(matches!(&hello, WsMessage::Text(text) if text.contains("\"op\":10")), "{hello:?}");
    let properties = json!({"os": "linux", "browser": "test", "device": "test"});
    let token = format!("Bot {}", fake.token());
    let identify = json!({"op": 2, "d": {"token": token, "intents": 0, "properties": properties, "shard": shard}});
    ws.send(WsMessage::Text(identify.to_string())).await.expect("IDENTIFY is sent");
    match ws.next().await {
        Some(Ok(WsMessage::Text(text))) => {
            let ready: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(ready["t"], "READY", "{ready}");
            Ok(ready["d"].clone())
        }
        Some(Ok(WsMessage::Close(Some(frame)))) => Err(frame.code.into()),
        other => panic!("neither READY nor a close: {other:?}"),
    }
}

#[tokio::test]
async fn shard_counts_are_recommended_and_checked_at_identify() {
    let fake = FakeDiscord::start().await;
    let http = http_for(&fake, fake.token());
    assert_eq!(http.get_bot_gateway().await.unwrap().shards, 1);
    fake.recommend_shards(3);
    assert_eq!(http.get_bot_gateway().await.unwrap().shards, 3);
    // A bare websocket, because serenity 0.12 spins on a socket closed with 4010 or 4011
    // until its next heartbeat is due, then identifies the same way again.
    for shard in [json!([4, 4]), json!([0, 0]), json!([0]), json!([0, 1, 2]), json!("0/1")] {
        assert_eq!(identify_raw(&fake, shard.clone()).await.err(), Some(4010), "{shard}");
    }
    fake.require_shards(2);
    assert_eq!(identify_raw(&fake, Value::Null).await.err(), Some(4011));
    assert_eq!(identify_raw(&fake, json!([0, 1])).await.err(), Some(4011));
    let ready = identify_raw(&fake, json!([1, 2])).await.unwrap();
    assert_eq!(ready["shard"], json!([1, 2]));
    let identified: Vec<Shard> = fake.identified().iter().map(|i| i.shard).collect();
    assert_eq!(identified, [Shard::new(1, 2)]);
}
