//! Handing a case to a person, end to end through the fakes: the case packet
//! in a Telegram forum topic, a Telegram reply chain and a Discord thread,
//! both ways of the relay and `/close`; a Telegram user answered from the
//! Discord desk inside one `fixbot serve`; the webhook desk through an
//! outage, field by field, with staff answering on the reply endpoint; and
//! what must not be relayed: other threads, the bot's own messages, and the
//! user's words as flow answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fixbot_core::button::ButtonCodec;
use fixbot_core::case::ConversationKey;
use fixbot_core::desk::Handovers;
use fixbot_core::engine::{Command, EngineConfig, Input, StaffInput, StaffNote, handle};
use fixbot_core::session::Session;
use fixbot_core::store::Store as _;
use fixbot_discord::DiscordConfig;
use fixbot_store::{AnyStore, MemoryStore};
use fixbot_telegram::TelegramConfig;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fake_discord::{FakeDiscord, Place, Post};
use crate::fake_telegram::{Chat, ChatKind, FakeTelegram, Sent};
use crate::support::{free_address, shipped_flows, spawn_serve};
use crate::telegram::{Harness, button, user};

const ICLOUD_FULL: &str = "This iPhone cannot be backed up because there is not enough iCloud storage available.";
const WAIT: Duration = Duration::from_secs(20);
/// A moment for something that must not happen to have happened.
const QUIET: Duration = Duration::from_millis(400);
const GUILD: u64 = 5000;
/// The Discord staff channel.
const STAFF_CHANNEL: u64 = 70;

pub(crate) fn staffed_session() -> Arc<Session<AnyStore>> {
    let config = EngineConfig { staff: true, ..EngineConfig::default() };
    Arc::new(Session::new(AnyStore::Memory(MemoryStore::new()), shipped_flows(), config))
}

/// A front-end running in-process until stopped.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task).await.expect("the front-end stops").unwrap();
    }
}

pub(crate) async fn start_telegram(
    fake: &FakeTelegram,
    handovers: &Arc<Handovers<AnyStore>>,
    staff: Option<i64>,
) -> Harness {
    let config = TelegramConfig { staff_chat: staff, ..crate::telegram::config(fake) };
    let session = handovers.session().clone();
    let codec = ButtonCodec::new(b"test secret");
    let frontend = fixbot_telegram::connect_with(config, session, codec, Some(handovers.clone())).await.unwrap();
    Harness::polling(fake, frontend).await
}

async fn start_discord(fake: &FakeDiscord, handovers: &Arc<Handovers<AnyStore>>) -> Running {
    let config = DiscordConfig {
        token: fake.token().to_owned(),
        api_url: Some(fake.api_url()),
        staff_channel: Some(STAFF_CHANNEL),
        ..DiscordConfig::default()
    };
    let (session, handovers) = (handovers.session().clone(), handovers.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let codec = ButtonCodec::new(b"test secret");
        fixbot_discord::run_with(config, session, codec, Some(handovers), shutdown).await.unwrap();
    });
    fake.wait_ready(WAIT).await;
    Running { stop: Some(stop), task }
}

/// Waits until `count` messages were sent to Telegram chat `chat`, and returns them.
async fn sent_to(fake: &FakeTelegram, chat: i64, count: usize) -> Vec<Sent> {
    fake.wait_for(|_| fake.sent_count(chat) >= count, WAIT).await;
    fake.sent_to(chat)
}

/// Waits until `count` messages were posted in Discord channel `channel`, and returns them.
async fn posts_in(fake: &FakeDiscord, channel: u64, count: usize) -> Vec<Post> {
    let have = |fake: &FakeDiscord| fake.posts_in(channel).iter().filter(|post| !post.content.is_empty()).count();
    fake.wait_until(&format!("{count} posts in channel {channel}"), |fake| have(fake) >= count, WAIT).await;
    fake.posts_in(channel).into_iter().filter(|post| !post.content.is_empty()).collect()
}

/// The case of `key` once it records its staff thread (a desk opens the
/// thread a moment before the case is told), or as it is after `WAIT`.
async fn case_with_thread(session: &Session<AnyStore>, key: &ConversationKey) -> fixbot_core::case::Case {
    let deadline = Instant::now() + WAIT;
    loop {
        let case = session.store().get(key).await.unwrap().unwrap().case;
        if case.staff_thread().is_some() || Instant::now() > deadline {
            return case;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Discord content as people read it: markdown escapes taken off.
fn read(post: &Post) -> String {
    post.content.replace('\\', "")
}

#[test]
fn with_staff_the_users_words_go_to_the_person_not_the_flow() {
    let flows = shipped_flows();
    let config = EngineConfig { staff: true, ..EngineConfig::default() };
    let key = ConversationKey::new("telegram", "1", "", "1");
    let opened = handle(&flows, &config, &key, None, Input::Text(ICLOUD_FULL.into()), 100);
    let buttons = opened.replies.last().unwrap().clone();
    let handed = handle(&flows, &config, &key, opened.case, Input::Command(Command::Human), 110);
    let case = handed.case.clone().expect("the case stays open, with a person");
    assert!(case.staff.is_some() && handed.handover.is_some());
    let told = handed.replies.last().unwrap().body.to_plain();
    assert!(told.contains("will answer you right here"), "{told}");

    // Words that would answer a step, navigate or restart are conversation now.
    for words in ["1", "yes", "back", "skip", "start over", "That fixed it"] {
        let next = handle(&flows, &config, &key, Some(case.clone()), Input::Text(words.into()), 120);
        assert!(next.replies.is_empty(), "{words}: {:?}", next.replies);
        assert_eq!(next.to_staff.map(|to| to.note), Some(StaffNote::Message(words.into())), "{words}");
        let after = next.case.expect("still open");
        assert_eq!((after.phase, after.history), (case.phase.clone(), case.history.clone()), "{words}");
        assert!(next.outcomes.is_empty(), "{words}");
    }
    // A button from before the hand-over is refused; commands other than /stop remind.
    let pressed = handle(&flows, &config, &key, Some(case.clone()), Input::Button(buttons.button(0)), 120);
    assert!(pressed.notice.is_some() && pressed.to_staff.is_none());
    let help = handle(&flows, &config, &key, Some(case.clone()), Input::Text("/help".into()), 120);
    assert!(help.replies[0].body.to_plain().contains("talking with a person"));
    assert!(help.to_staff.is_none());
    // A person may take days; the case does not go idle meanwhile.
    let later = handle(&flows, &config, &key, Some(case.clone()), Input::Text("still there?".into()), 100 + 3 * 86_400);
    assert!(later.case.unwrap().staff.is_some());
    // Staff answer in their own voice.
    let reply = StaffInput::Reply { name: "Alex".into(), text: "Hello **there**".into() };
    let answered = handle(&flows, &config, &key, Some(case.clone()), Input::Staff(reply), 130);
    assert_eq!(answered.replies[0].body.to_plain(), "👤 Alex (staff): Hello **there**");
    // The user closes it; staff hear so.
    let stopped = handle(&flows, &config, &key, Some(case), Input::Text("/stop".into()), 140);
    assert!(stopped.case.is_none());
    assert_eq!(stopped.to_staff.map(|to| to.note), Some(StaffNote::UserClosed));

    // Without a desk, a hand-over ends the case with its summary, as before.
    let plain = EngineConfig::default();
    let opened = handle(&flows, &plain, &key, None, Input::Text(ICLOUD_FULL.into()), 100);
    let handed = handle(&flows, &plain, &key, opened.case, Input::Command(Command::Human), 110);
    assert!(handed.case.is_none() && handed.handover.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_case_is_answered_in_a_forum_topic() {
    const STAFF: i64 = -300;
    let fake = FakeTelegram::start().await;
    fake.add_chat(Chat { id: STAFF, kind: ChatKind::Forum, thread: None });
    let session = staffed_session();
    let handovers = Arc::new(Handovers::new(session.clone()));
    let bot = start_telegram(&fake, &handovers, Some(STAFF)).await;
    let ann = Chat::private(10);

    fake.text(ann, user(10), ICLOUD_FULL);
    let first = sent_to(&fake, 10, 1).await[0].clone();
    fake.press(ann, user(10), first.message_id, &button(&first, "Not enough"));
    sent_to(&fake, 10, 2).await;
    fake.text(ann, user(10), "/human");
    let told = sent_to(&fake, 10, 3).await[2].plain.clone();
    assert!(told.contains("handing your case to a person"), "{told}");
    assert!(told.contains("will answer you right here"), "the user knows where the answer comes: {told}");

    // The packet opens a topic of its own, named after the case.
    let packet = sent_to(&fake, STAFF, 1).await[0].clone();
    let topics = fake.bot_topics();
    assert_eq!(topics.len(), 1, "{topics:?}");
    let (_, topic, name) = topics[0].clone();
    assert!(name.starts_with('#') && name.contains("Cloud storage is full") && name.contains("User10"), "{name}");
    assert_eq!(packet.thread, Some(topic), "the packet is in the case's topic");
    let key = ConversationKey::new("telegram", "10", "", "10");
    let case = case_with_thread(&session, &key).await;
    let reference = case.reference();
    for expected in [
        format!("Case #{reference} · User10 (id 10) on telegram"),
        format!("Problem: Cloud storage is full (cloud_storage_full, score {})", case.score),
        "Phone: iPhone".to_owned(),
        "Steps tried:\n- cloud_storage_full/compare_space: didn't help".to_owned(),
        "Message: This iPhone cannot be backed up".to_owned(),
        "Send /close when the case is done".to_owned(),
    ] {
        assert!(packet.plain.contains(&expected), "{expected:?} is not in the packet:\n{}", packet.plain);
    }
    assert!(packet.text.contains(&format!("<b>Case #{reference}</b>")), "{}", packet.text);
    // The case records where it is answered, and the store finds it by that.
    let thread = format!("telegram:{STAFF}:{topic}");
    assert_eq!(case.staff_thread(), Some(thread.as_str()));
    assert_eq!(session.store().find_by_staff_thread(&thread).await.unwrap().unwrap().0, key);

    // The user's messages go to the topic, redacted, and advance nothing.
    fake.text(ann, user(10), "Still failing <b>bold</b>, mail me at ann.lee@example.com");
    let relayed = sent_to(&fake, STAFF, 2).await[1].clone();
    assert_eq!(relayed.thread, Some(topic));
    assert!(relayed.plain.contains(&format!("User10 (id 10) (#{reference}): Still failing <b>bold</b>")));
    assert!(relayed.plain.contains("[email]") && !relayed.plain.contains("ann.lee"), "{}", relayed.plain);
    let notice = sent_to(&fake, 10, 4).await[3].plain.clone();
    assert!(notice.contains("removed an e-mail address"), "the user hears what was removed: {notice}");
    fake.text(ann, user(10), "1");
    assert!(sent_to(&fake, STAFF, 3).await[2].plain.ends_with(": 1"));
    tokio::time::sleep(QUIET).await;
    assert_eq!(fake.sent_count(10), 4, "a typed answer to a person is no step answer");
    let still = session.store().get(&key).await.unwrap().unwrap().case;
    assert_eq!((still.phase, still.history), (case.phase.clone(), case.history.clone()));

    // A staff member answers in the topic; the user sees who speaks.
    let alex = user(99);
    let in_topic = Chat::topic(STAFF, topic);
    fake.text(in_topic, alex, "Hi! Turn Wi-Fi <i>off</i> & on, then retry.");
    let answer = sent_to(&fake, 10, 5).await[4].clone();
    assert_eq!(answer.plain, "👤 User99 (staff): Hi! Turn Wi-Fi <i>off</i> & on, then retry.");
    assert!(answer.text.starts_with("👤 <b>User99 (staff):</b> Hi! Turn Wi-Fi &lt;i&gt;off"), "{}", answer.text);
    // Another topic of the staff group, and the General topic, are not the case's.
    fake.text(Chat::topic(STAFF, topic + 100), alex, "lunch at noon?");
    fake.text(Chat { id: STAFF, kind: ChatKind::Forum, thread: None }, alex, "anyone seen my mug?");
    tokio::time::sleep(QUIET).await;
    assert_eq!(fake.sent_count(10), 5, "nothing from unrelated threads reaches the user");

    // /why: staff get the explanation in the topic; the user sees nothing of it.
    fake.text(in_topic, alex, "/why");
    let why = sent_to(&fake, STAFF, 4).await[3].clone();
    assert_eq!(why.thread, Some(topic));
    for expected in [
        "Why this case went as it did",
        "Symptom: Cloud storage is full",
        "Patterns that fired on the opening message:",
        "Path:\n• Cloud storage is full / compare_space → not_fixed",
    ] {
        assert!(why.plain.contains(expected), "{expected:?} is not in the answer to /why:\n{}", why.plain);
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(fake.sent_count(10), 5, "/why is for staff only");

    // /close: the user is told, staff see it done, and the next message starts afresh.
    fake.text(in_topic, alex, "/close");
    let closed = sent_to(&fake, 10, 6).await[5].plain.clone();
    assert!(closed.contains("User99 from the support team closed this case"), "{closed}");
    assert!(closed.contains("new message"), "{closed}");
    let done = sent_to(&fake, STAFF, 5).await[4].clone();
    assert_eq!((done.thread, done.plain.contains("closed by User99")), (Some(topic), true), "{}", done.plain);
    assert!(session.store().get(&key).await.unwrap().is_none());
    assert!(session.store().find_by_staff_thread(&thread).await.unwrap().is_none());
    fake.text(in_topic, alex, "one more thing");
    fake.text(ann, user(10), ICLOUD_FULL);
    let fresh = sent_to(&fake, 10, 7).await[6].plain.clone();
    assert!(fresh.contains("Cloud storage is full"), "{fresh}");
    tokio::time::sleep(QUIET).await;
    assert_eq!(fake.sent_count(10), 7, "a closed case's topic relays nothing");
    let refused: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|call| ["sendmessage", "createforumtopic", "getchat"].contains(&call.method.as_str()))
        .filter(|call| call.status != 200)
        .collect();
    assert!(refused.is_empty(), "the fake refused {refused:?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staff_group_without_topics_threads_cases_by_replies() {
    const STAFF: i64 = -400;
    let fake = FakeTelegram::start().await;
    let group = Chat::supergroup(STAFF);
    fake.add_chat(group);
    let session = staffed_session();
    let handovers = Arc::new(Handovers::new(session.clone()));
    let bot = start_telegram(&fake, &handovers, Some(STAFF)).await;
    // A public group: the packet links back to the user's message.
    let help = Chat::supergroup(-500);
    fake.add_chat(help);
    fake.set_username(-500, "backup_help");

    fake.text(help, user(11), "/fix my phone says storage full, Google Account storage is full");
    sent_to(&fake, -500, 1).await;
    let asked = fake.text(help, user(11), "/human");
    sent_to(&fake, -500, 2).await;
    let packet = sent_to(&fake, STAFF, 1).await[0].clone();
    assert_eq!(packet.thread, None);
    assert!(packet.plain.contains("Phone: Android"), "{}", packet.plain);
    let message_id = fake.update(asked)["message"]["message_id"].as_i64().unwrap();
    assert!(packet.text.contains(&format!("href=\"https://t.me/backup_help/{message_id}\"")), "{}", packet.text);
    assert!(fake.bot_topics().is_empty(), "no topics in a group without them");

    // The user's messages reply to the packet, each naming the case.
    fake.text(help, user(11), "/fix are you there?");
    let relayed = sent_to(&fake, STAFF, 2).await[1].clone();
    assert_eq!(relayed.reply_to, Some(packet.message_id));
    let key = ConversationKey::new("telegram", "-500", "", "11");
    let reference = session.store().get(&key).await.unwrap().unwrap().case.reference();
    assert!(relayed.plain.contains(&format!("#{reference}")) && relayed.plain.ends_with("are you there?"));

    // A reply to the packet, or to a relayed message, answers the user; other talk does not.
    let bob = user(98);
    fake.reply_to(group, bob, "Checking your account now.", packet.message_id);
    let answer = sent_to(&fake, -500, 3).await[2].clone();
    assert_eq!(answer.plain, "👤 User98 (staff): Checking your account now.");
    fake.text(group, bob, "coffee anyone?");
    tokio::time::sleep(QUIET).await;
    assert_eq!(fake.sent_count(-500), 3);
    fake.reply_to(group, bob, "/close@fixbot_test_bot", relayed.message_id);
    let closed = sent_to(&fake, -500, 4).await[3].plain.clone();
    assert!(closed.contains("User98 from the support team closed this case"), "{closed}");
    let done = sent_to(&fake, STAFF, 3).await[2].clone();
    assert_eq!(done.reply_to, Some(packet.message_id), "{}", done.plain);
    assert!(session.store().get(&key).await.unwrap().is_none());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_case_is_answered_in_a_staff_thread() {
    let fake = FakeDiscord::start().await;
    fake.add_place(Place::guild(GUILD, STAFF_CHANNEL), 1);
    let session = staffed_session();
    let handovers = Arc::new(Handovers::new(session.clone()));
    let bot = start_discord(&fake, &handovers).await;
    assert!(fake.intents().is_some_and(|intents| intents & (1 << 15) != 0), "staff replies need message content");
    let dm = Place::dm(3000);

    fake.message(dm, 40, &format!("@everyone {ICLOUD_FULL}"));
    posts_in(&fake, 3000, 1).await;
    fake.message(dm, 40, "/human");
    let told = read(&posts_in(&fake, 3000, 2).await[1]);
    assert!(told.contains("will answer you right here"), "{told}");

    // The packet in the staff channel, a thread started from it.
    let packet = posts_in(&fake, STAFF_CHANNEL, 1).await[0].clone();
    fake.wait_until("the case's thread", |fake| !fake.threads().is_empty(), WAIT).await;
    let threads = fake.threads();
    assert_eq!(threads.len(), 1, "{threads:?}");
    let (parent, thread, name) = threads[0].clone();
    assert_eq!((parent, thread), (STAFF_CHANNEL, packet.message), "the thread hangs from the packet");
    let key = ConversationKey::new("discord", "3000", "", "40");
    let case = case_with_thread(&session, &key).await;
    let reference = case.reference();
    assert!(name.starts_with(&format!("#{reference} Cloud storage is full")), "{name}");
    let text = read(&packet);
    for expected in [
        format!("Case #{reference}** · User 40 (@user40, id 40) on discord"),
        "Problem:** Cloud storage is full (cloud_storage_full, score".to_owned(),
        "Message:** @everyone This iPhone cannot be backed up".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} is not in the packet:\n{text}");
    }
    assert!(packet.content.contains("\\@everyone"), "user text is escaped: {}", packet.content);
    assert_eq!(case.staff_thread(), Some(format!("discord:{thread}").as_str()));

    // The user's message goes to the thread, redacted; the bot's own post there,
    // which Discord echoes back to it, is not relayed to the user.
    fake.message(dm, 40, "still failing, my mail is bob.stone@example.com");
    let relayed = read(&posts_in(&fake, thread, 1).await[0]);
    assert!(relayed.contains(&format!("(#{reference}): still failing, my mail is [email]")), "{relayed}");
    tokio::time::sleep(QUIET).await;
    assert_eq!(posts_in(&fake, 3000, 3).await.len(), 3, "only the removal notice went to the user");

    // Staff answer in the thread; the user sees who speaks, and nobody is pinged.
    let in_thread = Place::guild(GUILD, thread);
    fake.message(in_thread, 55, "Hello <@&12> @here, try once more");
    let answer = posts_in(&fake, 3000, 4).await[3].clone();
    assert_eq!(read(&answer), "👤 **User 55 (staff):** Hello <@&12> @here, try once more");
    // Talk in the staff channel itself is no case's.
    fake.message(Place::guild(GUILD, STAFF_CHANNEL), 55, "who takes the next one?");
    tokio::time::sleep(QUIET).await;
    assert_eq!(posts_in(&fake, 3000, 4).await.len(), 4);

    fake.message(in_thread, 55, "/close");
    let closed = read(&posts_in(&fake, 3000, 5).await[4]);
    assert!(closed.contains("User 55 from the support team closed this case"), "{closed}");
    let done = read(&posts_in(&fake, thread, 2).await[1]);
    assert!(done.contains(&format!("#{reference}: closed by User 55")), "{done}");
    fake.message(dm, 40, ICLOUD_FULL);
    assert!(read(&posts_in(&fake, 3000, 6).await[5]).contains("Cloud storage is full"));
    for post in fake.posts() {
        let mentions = post.allowed_mentions.clone().unwrap_or_else(|| panic!("no allowed_mentions on {post:?}"));
        assert_eq!(mentions["parse"], json!([]), "{mentions}");
    }
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_case_is_answered_from_the_discord_desk() {
    let telegram = FakeTelegram::start().await;
    let discord = FakeDiscord::start().await;
    discord.add_place(Place::guild(GUILD, STAFF_CHANNEL), 1);
    let channel = STAFF_CHANNEL.to_string();
    let _server = spawn_serve(
        "memory:",
        &[],
        &[
            ("TELEGRAM_BOT_TOKEN", telegram.token()),
            ("TELEGRAM_API_URL", &telegram.api_url()),
            ("DISCORD_BOT_TOKEN", discord.token()),
            ("DISCORD_API_URL", &discord.api_url()),
            ("FIXBOT_STAFF_DISCORD_CHANNEL", &channel),
        ],
    );
    discord.wait_ready(WAIT).await;
    telegram.wait_for(|calls| calls.iter().any(|call| call.method == "getupdates"), WAIT).await;
    let cid = Chat::private(12);

    telegram.text(cid, user(12), ICLOUD_FULL);
    sent_to(&telegram, 12, 1).await;
    telegram.text(cid, user(12), "/human");
    sent_to(&telegram, 12, 2).await;
    let packet = read(&posts_in(&discord, STAFF_CHANNEL, 1).await[0]);
    assert!(packet.contains("User12 (id 12) on telegram"), "{packet}");
    discord.wait_until("the case's thread", |fake| !fake.threads().is_empty(), WAIT).await;
    let (_, thread, _) = discord.threads()[0].clone();

    telegram.text(cid, user(12), "is anyone there?");
    assert!(read(&posts_in(&discord, thread, 1).await[0]).ends_with("is anyone there?"));
    discord.message(Place::guild(GUILD, thread), 55, "Yes, I'm here.");
    let answer = sent_to(&telegram, 12, 3).await[2].plain.clone();
    assert_eq!(answer, "👤 User 55 (staff): Yes, I'm here.");
    discord.message(Place::guild(GUILD, thread), 55, "/close");
    assert!(sent_to(&telegram, 12, 4).await[3].plain.contains("closed this case"));
}

/// A help desk's webhook receiver that fails its first `failures` requests with 500.
#[derive(Clone, Default)]
struct Receiver {
    failures: usize,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Request {
    at: Instant,
    /// What the receiver answered.
    status: u16,
    authorization: String,
    idempotency_key: String,
    body: Value,
}

impl Receiver {
    async fn start(failures: usize) -> (Receiver, String) {
        use axum::http::HeaderMap;
        let receiver = Receiver { failures, ..Receiver::default() };
        let state = receiver.clone();
        let route = axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                let mut requests = state.requests.lock().unwrap();
                let status = if requests.len() < state.failures { 500 } else { 200 };
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                requests.push(Request {
                    at: Instant::now(),
                    status,
                    authorization: header("authorization"),
                    idempotency_key: header("idempotency-key"),
                    body,
                });
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/hook", route)).await });
        (receiver, url)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The events taken (answered 200), in order.
    fn taken(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|request| request.status == 200).map(|request| request.body).collect()
    }

    async fn wait_taken(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        while self.taken().len() < count {
            assert!(Instant::now() < deadline, "waited for {count} events: {:?}", self.requests());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.taken()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_desk_gets_each_event_once_through_an_outage_and_answers_back() {
    let telegram = FakeTelegram::start().await;
    let (receiver, url) = Receiver::start(2).await;
    let listen = free_address().to_string();
    let server = spawn_serve(
        "memory:",
        &["--listen", &listen],
        &[
            ("TELEGRAM_BOT_TOKEN", telegram.token()),
            ("TELEGRAM_API_URL", &telegram.api_url()),
            ("FIXBOT_STAFF_WEBHOOK_URL", &url),
            ("FIXBOT_STAFF_WEBHOOK_SECRET", "desk-secret_1"),
        ],
    );
    telegram.wait_for(|calls| calls.iter().any(|call| call.method == "getupdates"), WAIT).await;
    let dee = Chat::private(13);
    telegram.text(dee, user(13), ICLOUD_FULL);
    let first = sent_to(&telegram, 13, 1).await[0].clone();
    telegram.press(dee, user(13), first.message_id, &button(&first, "Not enough"));
    sent_to(&telegram, 13, 2).await;
    telegram.text(dee, user(13), "/human");
    sent_to(&telegram, 13, 3).await;
    let answered_at = Instant::now();

    // Two 500s, then taken: three attempts of one event, delivered once.
    let taken = receiver.wait_taken(1).await;
    let requests = receiver.requests();
    assert_eq!(requests.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 200], "{requests:?}");
    assert!(requests.iter().all(|r| r.authorization == "Bearer desk-secret_1"), "every attempt carries the secret");
    let event = &taken[0];
    let id = event["id"].as_str().unwrap();
    assert!(requests.iter().all(|r| r.idempotency_key == id && r.body == *event), "one event, attempted thrice");
    assert!(requests[2].at > answered_at, "the user was answered before the desk took the event");
    assert!(requests[2].at - requests[0].at >= Duration::from_millis(2900), "retried with growing pauses");
    // The packet, field by field.
    let reference = event["case"].as_str().unwrap().to_owned();
    assert!(reference.len() == 8 && reference.bytes().all(|b| b.is_ascii_hexdigit()), "{reference}");
    assert_eq!(event["version"], 1);
    assert_eq!(event["event"], "handover");
    assert_eq!(event["relay"], true, "the webhook is the only desk, so it answers");
    assert_eq!(event["reply_path"], format!("/handover/{reference}/reply"));
    assert_eq!(event["user"], json!({"platform": "telegram", "handle": "User13 (id 13)", "link": null}));
    assert_eq!(event["symptom"]["id"], "cloud_storage_full");
    assert_eq!(event["symptom"]["title"], "Cloud storage is full");
    assert!(event["symptom"]["score"].as_u64().unwrap() >= 6, "{event}");
    assert_eq!(event["phone"], "ios");
    assert!(event["captures"].is_object(), "{event}");
    assert_eq!(
        event["steps"],
        json!([{"flow": "cloud_storage_full", "step": "compare_space", "outcome": "not_fixed"}])
    );
    assert_eq!(event["paste"], ICLOUD_FULL);
    assert!(event["at"].as_i64().unwrap() >= event["opened_at"].as_i64().unwrap());
    assert!(event["summary"].as_str().unwrap().contains(&format!("Case #{reference}")), "{event}");

    // The user's message follows, once.
    telegram.text(dee, user(13), "any news?");
    let message = receiver.wait_taken(2).await[1].clone();
    assert_eq!((message["event"].as_str(), message["case"].as_str()), (Some("message"), Some(reference.as_str())));
    assert_eq!(message["text"], "any news?");

    // Staff answer through the reply endpoint: authenticated, applied once per id.
    let client = reqwest::Client::new();
    let reply = |token: &str, case: &str, body: Value| {
        client
            .post(format!("http://{listen}/handover/{case}/reply"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    let answer = json!({"name": "Alex", "text": "Try again over Wi-Fi.", "id": "t-1"});
    assert_eq!(reply("wrong", &reference, answer.clone()).await.unwrap().status(), 401);
    assert_eq!(reply("desk-secret_1", &reference, answer.clone()).await.unwrap().status(), 200);
    assert_eq!(sent_to(&telegram, 13, 4).await[3].plain, "👤 Alex (staff): Try again over Wi-Fi.");
    assert_eq!(reply("desk-secret_1", &reference, answer).await.unwrap().status(), 200, "a retried request");
    assert_eq!(reply("desk-secret_1", "0000beef", json!({"name": "Alex", "text": "?"})).await.unwrap().status(), 404);
    assert_eq!(reply("desk-secret_1", &reference, json!({"name": "", "text": "?"})).await.unwrap().status(), 400);
    tokio::time::sleep(QUIET).await;
    assert_eq!(telegram.sent_count(13), 4, "the retried answer was not sent twice");

    let close = json!({"name": "Alex", "close": true});
    assert_eq!(reply("desk-secret_1", &reference, close).await.unwrap().status(), 200);
    assert!(sent_to(&telegram, 13, 5).await[4].plain.contains("Alex from the support team closed this case"));
    let closed = receiver.wait_taken(3).await[2].clone();
    assert_eq!((closed["event"].as_str(), closed["by"].as_str()), (Some("closed"), Some("staff")));
    assert_eq!(closed["name"], "Alex");
    assert_eq!(receiver.taken().len(), 3, "each event delivered exactly once");

    let metrics = client.get(format!("http://{listen}/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "fixbot_staff_webhook_posts_total{result=\"retried\"} 2",
        "fixbot_staff_webhook_posts_total{result=\"delivered\"} 3",
        "fixbot_handovers_total{desk=\"webhook\",result=\"opened\"} 1",
        "fixbot_staff_relays_total{direction=\"to_user\"} 2",
    ] {
        assert!(metrics.lines().any(|metric| metric == line), "{line} not in /metrics:\n{metrics}");
    }
    drop(server);
}

#[tokio::test]
async fn a_web_visitor_is_handed_over_and_answered_through_the_webhook_desk() {
    let (receiver, url) = Receiver::start(0).await;
    let listen = free_address().to_string();
    let _server = spawn_serve(
        "memory:",
        &["--listen", &listen],
        &[
            ("FIXBOT_WEB_ENABLED", "true"),
            ("FIXBOT_STAFF_WEBHOOK_URL", &url),
            ("FIXBOT_STAFF_WEBHOOK_SECRET", "desk-secret_2"),
        ],
    );
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    let deadline = Instant::now() + WAIT;
    let token = loop {
        match client.post(format!("{base}/api/v1/conversations")).send().await {
            Ok(response) if response.status() == 201 => {
                break response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("the web chat did not come up: {other:?}"),
        }
    };
    let send = |body: Value| client.post(format!("{base}/api/v1/messages")).bearer_auth(&token).json(&body).send();
    assert_eq!(send(json!({ "text": ICLOUD_FULL })).await.unwrap().status(), 200);
    let told: Value = send(json!({ "command": "human" })).await.unwrap().json().await.unwrap();
    assert!(told.to_string().contains("will answer you right here"), "{told}");

    // The desk gets the packet, naming the visitor without their key.
    let packet = receiver.wait_taken(1).await[0].clone();
    assert_eq!(packet["event"], "handover");
    assert_eq!(packet["user"]["platform"], "web");
    let handle = packet["user"]["handle"].as_str().unwrap();
    assert!(handle.starts_with("web visitor ") && !handle.contains(&token), "{handle}");
    let reference = packet["case"].as_str().unwrap().to_owned();

    // Staff answer; the visitor's long poll brings it.
    let reply = client
        .post(format!("{base}/handover/{reference}/reply"))
        .bearer_auth("desk-secret_2")
        .json(&json!({"name": "Alex", "text": "Try again over Wi-Fi.", "id": "w-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let cursor = told["cursor"].as_u64().unwrap();
    let polled: Value = client
        .get(format!("{base}/api/v1/events?after={cursor}&wait=10"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let said = polled["events"].to_string();
    assert!(said.contains("Alex (staff):") && said.contains("Try again over Wi-Fi."), "{polled}");
}
