//! The Discord front-end end to end against the fake REST API and gateway:
//! `/fix` with and without text (the paste form), DMs, two users in one
//! channel, foreign and forged buttons, mention injection, a gateway close
//! mid-case, a 429, a kill -9 with SQLite after which an old button
//! carries on, and two servers splitting the shards.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fixbot_core::button::ButtonCodec;
use fixbot_core::engine::EngineConfig;
use fixbot_core::session::Session;
use fixbot_discord::DiscordConfig;
use fixbot_store::{AnyStore, MemoryStore, PostgresStore};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fake_discord::{FakeDiscord, Place, Post, Shard, shard_of};
use crate::store_contract::TestSchema;
use crate::support::{shipped_flows, spawn_serve};

const ICLOUD_FULL: &str = "This iPhone cannot be backed up because there is not enough iCloud storage available.";
const WAIT: Duration = Duration::from_secs(20);
const GUILD: u64 = 5000;

pub(crate) struct Harness {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Harness {
    pub(crate) async fn start(fake: &FakeDiscord, store: AnyStore, guilds: Vec<u64>) -> Harness {
        Harness::start_with(fake, store, DiscordConfig { guild_ids: guilds, ..DiscordConfig::default() }).await
    }

    pub(crate) async fn start_with(fake: &FakeDiscord, store: AnyStore, config: DiscordConfig) -> Harness {
        let session = Arc::new(Session::new(store, shipped_flows(), EngineConfig::default()));
        let config = DiscordConfig { token: fake.token().to_owned(), api_url: Some(fake.api_url()), ..config };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            fixbot_discord::run(config, session, ButtonCodec::new(b"test secret"), shutdown).await.unwrap();
        });
        fake.wait_ready(WAIT).await;
        Harness { stop: Some(stop), task }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task).await.expect("the front-end stops").unwrap();
    }
}

pub(crate) fn memory() -> AnyStore {
    AnyStore::Memory(MemoryStore::new())
}

fn error(text: &str) -> serde_json::Value {
    json!([{ "name": "error", "type": 3, "value": text }])
}

/// Waits until at least `count` posts with content exist, and returns them.
async fn posts(fake: &FakeDiscord, count: usize) -> Vec<Post> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let posts: Vec<Post> = fake.posts().into_iter().filter(|post| !post.content.is_empty()).collect();
        if posts.len() >= count {
            return posts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited for {count} posts, have {}: {:?}",
            posts.len(),
            posts.iter().map(|p| &p.content).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn custom_id(post: &Post, label: &str) -> String {
    post.buttons
        .iter()
        .flatten()
        .find(|button| button.label.starts_with(label))
        .map(|button| button.custom_id.clone())
        .unwrap_or_else(|| panic!("no button {label:?} in {:?}", post.buttons))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_with_text_walked_through_buttons_to_the_end() {
    let fake = FakeDiscord::start().await;
    let bot = Harness::start(&fake, memory(), vec![GUILD]).await;
    let channel = Place::guild(GUILD, 10);
    // Commands are registered per guild when guild ids are configured.
    fake.wait_for(|calls| calls.iter().any(|call| call.method == "PUT" && call.path.contains("/guilds/")), WAIT).await;
    let names: Vec<String> =
        fake.commands().iter().filter_map(|command| command["name"].as_str().map(str::to_owned)).collect();
    assert!(names.contains(&"fix".to_owned()) && names.contains(&"human".to_owned()), "{names:?}");

    fake.slash(channel, 1, "fix", error(ICLOUD_FULL));
    let first = posts(&fake, 1).await[0].clone();
    assert!(first.content.contains("Cloud storage is full"), "{}", first.content);
    let mut count = 1;
    for _ in 0..12 {
        let last = posts(&fake, count).await.last().unwrap().clone();
        let Some(button) = last.buttons.iter().flatten().last().cloned() else { break };
        fake.press(channel, 1, last.message, &button.custom_id);
        count += 1;
        posts(&fake, count).await;
        // The finished step's buttons are disabled by editing its message.
        let components = fake.message_components(last.channel, last.message).unwrap_or_default();
        assert!(components.iter().flatten().all(|button| button.disabled), "{components:?}");
    }
    let last = posts(&fake, count).await.last().unwrap().clone();
    assert!(
        last.content.contains("handing your case") || last.content.contains("backup works again"),
        "{}",
        last.content
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_without_text_opens_the_paste_form() {
    let fake = FakeDiscord::start().await;
    let bot = Harness::start(&fake, memory(), Vec::new()).await;
    let channel = Place::guild(GUILD, 11);
    let id = fake.slash(channel, 2, "fix", json!([]));
    fake.wait_for(|_| !fake.responses(id).is_empty(), WAIT).await;
    let form = fake.responses(id)[0].clone();
    assert_eq!(form["type"], 9, "a modal: {form}");
    let field = &form["data"]["components"][0]["components"][0];
    assert_eq!(field["max_length"], 4000, "{form}");
    let paste = format!("{}\n{ICLOUD_FULL}", "log line\n".repeat(300));
    fake.submit(
        channel,
        2,
        form["data"]["custom_id"].as_str().unwrap(),
        &[(field["custom_id"].as_str().unwrap(), &paste)],
    );
    let posted = posts(&fake, 1).await;
    assert!(posted[0].content.contains("Cloud storage is full"), "{}", posted[0].content);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_case_and_two_users_in_one_channel() {
    let fake = FakeDiscord::start().await;
    let bot = Harness::start(&fake, memory(), Vec::new()).await;
    assert!(
        fake.intents().is_some_and(|intents| intents & (1 << 15) == 0),
        "no message-content intent without help channels"
    );

    let dm = Place::dm(20);
    fake.message(dm, 3, "Backup couldn't complete");
    let posted = posts(&fake, 1).await;
    assert!(posted[0].content.contains("Wi\\-Fi") || posted[0].content.contains("Wi-Fi"), "{}", posted[0].content);
    fake.message(dm, 3, "2");
    posts(&fake, 2).await;

    let channel = Place::guild(GUILD, 12);
    fake.slash(channel, 4, "fix", error(ICLOUD_FULL));
    fake.slash(channel, 5, "fix", error("the last backup could not be completed"));
    let posted = posts(&fake, 4).await;
    let ann = posted.iter().find(|post| post.content.contains("Cloud storage")).unwrap().clone();
    // User 5 presses user 4's button: only user 5 is told, nothing changes.
    fake.press(channel, 5, ann.message, &custom_id(&ann, "Not enough"));
    let refusal = posts(&fake, 5).await.last().unwrap().clone();
    assert!(refusal.ephemeral && refusal.content.contains("someone else"), "{refusal:?}");
    // A forged custom id is refused the same way.
    fake.press_unchecked(channel, 4, ann.message, "forged-id");
    let refusal = posts(&fake, 6).await.last().unwrap().clone();
    assert!(refusal.ephemeral, "{refusal:?}");
    assert!(
        fake.message_components(ann.channel, ann.message).unwrap_or_default().iter().flatten().all(|b| !b.disabled),
        "the owner's buttons still work"
    );
    fake.press(channel, 4, ann.message, &custom_id(&ann, "Not enough"));
    let next = posts(&fake, 7).await.last().unwrap().clone();
    assert!(next.content.contains("Delete Backup"), "{}", next.content);
    // Every interaction was acknowledged well within Discord's 3 seconds.
    for call in fake.calls().iter().filter(|call| call.path.ends_with("/callback")) {
        let id: u64 = call.path.split('/').nth(2).unwrap().parse().unwrap();
        let delay = fake.ack_delay(id).expect("acknowledged");
        assert!(delay < Duration::from_secs(2), "interaction {id} acknowledged after {delay:?}");
    }
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasted_mentions_never_ping() {
    let fake = FakeDiscord::start().await;
    let bot = Harness::start(&fake, memory(), Vec::new()).await;
    let channel = Place::guild(GUILD, 13);
    fake.slash(channel, 6, "fix", error(&format!("@everyone <@&777> @here {ICLOUD_FULL}")));
    posts(&fake, 1).await;
    fake.slash(channel, 6, "human", json!([]));
    let posted = posts(&fake, 2).await;
    assert!(posted[1].content.contains("everyone"), "the summary quotes the paste: {}", posted[1].content);
    for post in fake.posts() {
        let mentions = post.allowed_mentions.clone().unwrap_or_else(|| panic!("no allowed_mentions on {post:?}"));
        assert_eq!(mentions["parse"], json!([]), "{mentions}");
        assert!(mentions.get("roles").is_none_or(|roles| roles == &json!([])), "{mentions}");
    }
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_close_mid_case_resumes_and_the_case_goes_on() {
    let fake = FakeDiscord::start().await;
    let bot = Harness::start(&fake, memory(), Vec::new()).await;
    let channel = Place::guild(GUILD, 14);
    fake.slash(channel, 7, "fix", error(ICLOUD_FULL));
    let first = posts(&fake, 1).await[0].clone();
    fake.close_gateway(4000);
    fake.press(channel, 7, first.message, &custom_id(&first, "Not enough"));
    let next = posts(&fake, 2).await.last().unwrap().clone();
    assert!(next.content.contains("Delete Backup"), "{}", next.content);
    assert!(fake.resumes() >= 1 || fake.identifies() >= 2, "the client reconnected");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_message_create_is_waited_out() {
    let fake = FakeDiscord::start().await;
    let bot = Harness::start(&fake, memory(), Vec::new()).await;
    let dm = Place::dm(21);
    fake.fail_next("POST", "/channels/21/messages", 429, Some(1.0));
    fake.message(dm, 8, ICLOUD_FULL);
    let posted = posts(&fake, 1).await;
    assert!(posted[0].content.contains("Cloud storage"));
    let calls = fake.calls();
    let limited = calls.iter().find(|call| call.status == 429).expect("the 429 was hit");
    let retried = calls
        .iter()
        .find(|call| call.status == 200 && call.path.starts_with("/channels/21/messages") && call.at > limited.at)
        .expect("retried");
    assert!(retried.at.duration_since(limited.at) >= Duration::from_millis(900));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_and_old_buttons_carry_on() {
    let fake = FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("cases.db").display());
    let spawn =
        || spawn_serve(&store, &[], &[("DISCORD_BOT_TOKEN", fake.token()), ("DISCORD_API_URL", &fake.api_url())]);
    let channel = Place::guild(GUILD, 15);
    let mut server = spawn();
    fake.wait_ready(WAIT).await;
    fake.slash(channel, 9, "fix", error(ICLOUD_FULL));
    let first = posts(&fake, 1).await[0].clone();
    server.kill().unwrap();
    server.wait().unwrap();

    let before = fake.identifies() + fake.resumes();
    let mut server = spawn();
    let deadline = tokio::time::Instant::now() + WAIT;
    while fake.identifies() + fake.resumes() == before {
        assert!(tokio::time::Instant::now() < deadline, "the restarted server connects");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.wait_ready(WAIT).await;
    fake.press(channel, 9, first.message, &custom_id(&first, "Not enough"));
    let next = posts(&fake, 2).await.last().unwrap().clone();
    assert!(next.content.contains("Delete Backup"), "{}", next.content);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_help_channel_opens_a_thread_per_case() {
    let fake = FakeDiscord::start().await;
    let help = Place::guild(GUILD, 30);
    let config = DiscordConfig { help_channels: vec![30], threads: true, ..DiscordConfig::default() };
    let bot = Harness::start_with(&fake, memory(), config).await;
    assert!(
        fake.intents().is_some_and(|intents| intents & (1 << 15) != 0),
        "help channels need the message-content intent"
    );

    fake.message(help, 40, ICLOUD_FULL);
    let first = posts(&fake, 1).await[0].clone();
    let threads = fake.threads();
    assert_eq!(threads.len(), 1, "{threads:?}");
    let (parent, thread, name) = threads[0].clone();
    assert_eq!(parent, 30);
    assert!(name.starts_with("Backup help"), "{name}");
    assert_eq!(first.channel, thread, "the case continues in its thread");

    // The owner answers in the thread; a helper chatting there starts nothing.
    let in_thread = Place::guild(GUILD, thread);
    fake.message(in_thread, 41, "has anyone tried turning it off and on again?");
    fake.message(in_thread, 40, "1");
    let posted = posts(&fake, 2).await;
    assert!(posted[1].content.contains("Delete Backup"), "{}", posted[1].content);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts(&fake, 2).await.len(), 2, "the helper's message was not answered");
    // Chatter in other channels is ignored.
    fake.message(Place::guild(GUILD, 31), 42, ICLOUD_FULL);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts(&fake, 2).await.len(), 2);
    bot.stop().await;
}

/// The shard total of the two-server test.
const SHARDS: u64 = 4;

/// The server running `shard` in the two-server test.
fn owner(shard: u64) -> &'static str {
    if shard < 2 { "a" } else { "b" }
}

/// Guild `n` of those whose events Discord sends to `shard` of [`SHARDS`].
fn guild_on_shard(shard: u64, n: u64) -> u64 {
    let guild = ((1 << 30) + SHARDS * n + shard) << 22 | 0x2a;
    assert_eq!(shard_of(guild, SHARDS), shard);
    guild
}

/// A store two servers share: a schema of its own on the PostgreSQL test server when
/// FIXBOT_TEST_POSTGRES_URL is set, else one SQLite file in `dir` (WAL lets two processes
/// share it). The schema, if any, is dropped with the guard.
async fn shared_store(dir: &Path) -> (String, Option<TestSchema>) {
    match std::env::var("FIXBOT_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let schema = TestSchema::new(&url);
            // Creates and migrates the schema; the servers then find it through search_path.
            PostgresStore::open_in_schema(&url, Some(&schema.name)).await.unwrap();
            let separator = if url.contains('?') { '&' } else { '?' };
            (format!("{url}{separator}options[search_path]={}", schema.name), Some(schema))
        }
        _ => (format!("sqlite:{}", dir.join("cases.db").display()), None),
    }
}

/// Waits until each interaction has an answer (a post with content) and returns them in order.
async fn answers(fake: &FakeDiscord, interactions: &[u64]) -> Vec<Post> {
    let answer = |posts: &[Post], id: u64| {
        posts.iter().find(|post| post.interaction == Some(id) && !post.content.is_empty()).cloned()
    };
    let all_answered = |fake: &FakeDiscord| {
        let posts = fake.posts();
        interactions.iter().all(|id| answer(&posts, *id).is_some())
    };
    fake.wait_until("an answer to every interaction", all_answered, WAIT).await;
    let posts = fake.posts();
    interactions.iter().map(|id| answer(&posts, *id).unwrap()).collect()
}

/// Interaction `id`, from a guild on `shard`, reached only the server running that shard, which
/// acknowledged it once and answered it once, every call succeeding.
fn assert_handled_by_owner(fake: &FakeDiscord, id: u64, shard: u64) {
    let owner = Some(owner(shard));
    let deliveries = fake.deliveries(id);
    assert_eq!(deliveries.len(), 1, "interaction {id} is delivered once: {deliveries:?}");
    assert_eq!(deliveries[0].shard, Shard::new(shard, SHARDS), "{deliveries:?}");
    assert_eq!(deliveries[0].instance.as_deref(), owner, "{deliveries:?}");
    let calls = fake.calls_for(id);
    let strays: Vec<_> = calls.iter().filter(|call| call.instance.as_deref() != owner || call.status >= 300).collect();
    assert!(strays.is_empty(), "interaction {id} on shard {shard}: calls not by {owner:?} or failed: {strays:?}");
    let callbacks = calls.iter().filter(|call| call.path.ends_with("/callback")).count();
    assert_eq!(callbacks, 1, "interaction {id} is acknowledged once: {calls:?}");
    let answered = fake.posts().iter().filter(|post| post.interaction == Some(id)).count();
    assert_eq!(answered, 1, "interaction {id} is answered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_split_the_shards_and_each_answers_its_own() {
    let fake = FakeDiscord::start().await;
    fake.recommend_shards(SHARDS);
    let dir = tempfile::tempdir().unwrap();
    let (store, _schema) = shared_store(dir.path()).await;
    let serve = |instance: &str, shards: &str| {
        let api = fake.api_url_for(instance);
        spawn_serve(&store, &["--shards", shards], &[("DISCORD_BOT_TOKEN", fake.token()), ("DISCORD_API_URL", &api)])
    };
    let _a = serve("a", "0-1/4");
    let _b = serve("b", "2-3/4");
    let every_shard: Vec<Shard> = (0..SHARDS).map(|id| Shard::new(id, SHARDS)).collect();
    // serenity starts one process's shards five seconds apart.
    fake.wait_until("all four shards live", |fake| fake.live_shards() == every_shard, WAIT).await;
    fake.wait_until("the commands registered", |fake| !fake.commands().is_empty(), WAIT).await;

    // Two people in guilds of each shard run /fix at once, then press a button.
    let people: Vec<(Place, u64)> = (0..SHARDS)
        .flat_map(|shard| (0..2).map(move |n| (shard, n)))
        .map(|(shard, n)| (Place::guild(guild_on_shard(shard, n), 2000 + 10 * shard + n), 1000 + 10 * shard + n))
        .collect();
    let commands: Vec<u64> =
        people.iter().map(|&(place, user)| fake.slash(place, user, "fix", error(ICLOUD_FULL))).collect();
    let dm = Place::dm(3000);
    fake.message(dm, 999, ICLOUD_FULL);
    let first = answers(&fake, &commands).await;
    let presses: Vec<u64> = people
        .iter()
        .zip(&first)
        .map(|(&(place, user), post)| fake.press(place, user, post.message, &custom_id(post, "Not enough")))
        .collect();
    let next = answers(&fake, &presses).await;
    for (first, next) in first.iter().zip(&next) {
        assert!(first.content.contains("Cloud storage is full"), "{}", first.content);
        assert!(next.content.contains("Delete Backup"), "{}", next.content);
    }
    for (&(place, _), ids) in people.iter().zip(commands.iter().zip(&presses)) {
        let shard = shard_of(place.guild.unwrap(), SHARDS);
        assert_handled_by_owner(&fake, *ids.0, shard);
        assert_handled_by_owner(&fake, *ids.1, shard);
    }

    // DMs go to shard 0, so only server a answers the DM.
    fake.wait_until("the DM answered", |fake| fake.posts().iter().any(|post| post.channel == dm.channel), WAIT).await;
    let dm_calls: Vec<_> = fake.calls().into_iter().filter(|call| call.path.starts_with("/channels/3000/")).collect();
    assert!(dm_calls.iter().all(|call| call.instance.as_deref() == Some("a") && call.status < 300), "{dm_calls:?}");
    assert_eq!(fake.posts().iter().filter(|post| post.channel == dm.channel).count(), 1);

    // Each server identified only as its own shards, out of the same total, and only shard
    // 0's server registered the commands; both checked the total against /gateway/bot.
    for identify in fake.identified() {
        assert_eq!(identify.shard.total, SHARDS, "{identify:?}");
        assert_eq!(identify.instance.as_deref(), Some(owner(identify.shard.id)), "{identify:?}");
    }
    let calls = fake.calls();
    let registrations: Vec<_> = calls.iter().filter(|call| call.path.ends_with("/commands")).collect();
    assert!(registrations.iter().all(|call| call.instance.as_deref() == Some("a")), "{registrations:?}");
    for instance in ["a", "b"] {
        let asked = calls.iter().any(|call| call.path == "/gateway/bot" && call.instance.as_deref() == Some(instance));
        assert!(asked, "server {instance} asked for the recommended shard count");
    }
}

/// Issue "Speaking the user's language": the interaction's `locale` (the
/// user's Discord app language) picks the language of a new case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interaction_locale_picks_the_language_of_the_answer() {
    let fake = FakeDiscord::start().await;
    let bot = Harness::start(&fake, memory(), Vec::new()).await;
    let channel = Place::guild(GUILD, 12);
    fake.set_locale(5, "fr");
    fake.slash(channel, 5, "fix", error(ICLOUD_FULL));
    let posted = posts(&fake, 1).await;
    assert!(posted[0].content.contains("Le stockage en ligne est plein"), "{}", posted[0].content);
    let labels: Vec<&str> = posted[0].buttons.iter().flatten().map(|button| button.label.as_str()).collect();
    assert!(labels.contains(&"Pas assez d'espace libre"), "{labels:?}");
    bot.stop().await;
}
