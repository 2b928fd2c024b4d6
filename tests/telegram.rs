//! The Telegram front-end end to end against the fake Bot API: private and
//! group cases, forum topics, buttons (own, another user's, stale, forged),
//! rate limits, hostile markup, long pastes, and a kill -9 with the SQLite
//! store after which an old button carries on.

use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use fixbot_core::button::ButtonCodec;
use fixbot_core::engine::EngineConfig;
use fixbot_core::session::Session;
use fixbot_store::AnyStore;
use fixbot_telegram::TelegramConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fake_telegram::{BOT_ID, Call, Chat, ChatKind, FakeTelegram, Sent, User};
use crate::support::shipped_flows;

const ICLOUD_FULL: &str = "This iPhone cannot be backed up because there is not enough iCloud storage available.";
const WAIT: Duration = Duration::from_secs(20);

/// The front-end running in-process against a fake.
pub(crate) struct Harness {
    fake: FakeTelegram,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Harness {
    pub(crate) async fn start(fake: &FakeTelegram, store: AnyStore) -> Harness {
        let session = Arc::new(Session::new(store, shipped_flows(), EngineConfig::default()));
        let frontend = fixbot_telegram::connect(config(fake), session, ButtonCodec::new(b"test secret")).await.unwrap();
        Harness::polling(fake, frontend).await
    }

    /// Runs `frontend` by long polling until stopped, once it has asked for updates.
    pub(crate) async fn polling(fake: &FakeTelegram, frontend: fixbot_telegram::Frontend<AnyStore>) -> Harness {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            frontend.poll(Duration::from_secs(1), shutdown).await.unwrap();
        });
        fake.wait_for(|calls| calls.iter().any(|call| call.method == "getupdates"), WAIT).await;
        Harness { fake: fake.clone(), stop: Some(stop), task }
    }

    /// Waits until `count` messages were sent in all, and returns them.
    async fn sent(&self, count: usize) -> Vec<Sent> {
        self.fake.wait_for(|calls| sends(calls) >= count, WAIT).await;
        self.fake.sent()
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task).await.expect("the front-end stops").unwrap();
    }
}

pub(crate) fn config(fake: &FakeTelegram) -> TelegramConfig {
    TelegramConfig { api_url: Some(fake.api_url().parse().unwrap()), ..TelegramConfig::new(fake.token()) }
}

fn sends(calls: &[Call]) -> usize {
    calls.iter().filter(|call| call.method == "sendmessage" && call.status == 200).count()
}

pub(crate) fn memory() -> AnyStore {
    AnyStore::Memory(fixbot_store::MemoryStore::new())
}

pub(crate) fn user(id: i64) -> User {
    User { id, language: "en" }
}

/// The callback data of button `label` (by prefix) on `sent`.
pub(crate) fn button(sent: &Sent, label: &str) -> String {
    sent.buttons
        .iter()
        .flatten()
        .find(|(text, _)| text.starts_with(label))
        .map(|(_, data)| data.clone())
        .unwrap_or_else(|| panic!("no button {label:?} in {:?}", sent.buttons))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_case_walked_to_its_end_with_buttons() {
    let fake = FakeTelegram::start().await;
    let bot = Harness::start(&fake, memory()).await;
    let chat = Chat::private(10);
    // The command menu was registered.
    assert!(
        fake.calls()
            .iter()
            .any(|call| call.method == "setmycommands" && call.params["commands"].as_array().unwrap().len() == 9)
    );

    fake.text(chat, user(10), ICLOUD_FULL);
    let sent = bot.sent(1).await;
    assert!(sent[0].plain.contains("Cloud storage is full"), "{}", sent[0].plain);
    assert!(sent[0].text.contains("<b>"), "menu paths are bold in HTML: {}", sent[0].text);
    assert_eq!(sent[0].reply_to, None, "private replies do not quote");

    // Press "Still failing"-like buttons until the case ends.
    let mut count = 1;
    for _ in 0..12 {
        let last = fake.sent().last().unwrap().clone();
        if last.buttons.is_empty() {
            break;
        }
        let data = last.buttons.last().unwrap().last().unwrap().1.clone();
        fake.press(chat, user(10), last.message_id, &data);
        count += 1;
        let sent = bot.sent(count).await;
        // The pressed message's keyboard is gone, so it cannot be pressed again.
        fake.wait_for(|_| fake.markup_of(chat.id, last.message_id).is_none_or(|rows| rows.is_empty()), WAIT).await;
        assert!(!sent.last().unwrap().plain.is_empty());
    }
    let last = fake.sent().last().unwrap().clone();
    assert!(
        last.plain.contains("handing your case to a person") || last.plain.contains("backup works again"),
        "{}",
        last.plain
    );
    // Every callback query was answered.
    let presses = fake.calls().iter().filter(|call| call.method == "answercallbackquery").count();
    assert_eq!(presses, count - 1);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_case_answered_by_typing() {
    let fake = FakeTelegram::start().await;
    let bot = Harness::start(&fake, memory()).await;
    let chat = Chat::private(11);
    fake.text(chat, user(11), "my phone says storage full, Google Account storage is full");
    bot.sent(1).await;
    fake.text(chat, user(11), "1");
    let sent = bot.sent(2).await;
    fake.text(chat, user(11), "yes");
    let sent_after = bot.sent(3).await;
    assert_ne!(sent[1].plain, sent_after[2].plain);
    assert!(sent_after[2].plain.contains("backup works again"), "{}", sent_after[2].plain);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_in_one_group_keep_their_own_cases() {
    let fake = FakeTelegram::start().await;
    let bot = Harness::start(&fake, memory()).await;
    let group = Chat::group(-100);
    // Chatter not meant for the bot is ignored.
    fake.text(group, user(1), "anyone watching the game tonight?");
    fake.text(group, user(1), &format!("/fix@fixbot_test_bot {ICLOUD_FULL}"));
    fake.text(group, user(2), "/fix the last backup could not be completed");
    let sent = bot.sent(2).await;
    let for_ann = sent.iter().find(|s| s.plain.contains("Cloud storage")).expect("ann's case");
    let for_bob = sent.iter().find(|s| s.plain.contains("Wi-Fi")).expect("bob's case");
    assert!(for_ann.reply_to.is_some() && for_bob.reply_to.is_some(), "group replies quote the user");

    // Bob presses Ann's button: refused with a notice, nothing changes.
    let data = for_ann.buttons[0][0].1.clone();
    fake.press(group, user(2), for_ann.message_id, &data);
    fake.wait_for(|_| !fake.answered_callbacks().is_empty(), WAIT).await;
    let (_, notice) = fake.answered_callbacks()[0].clone();
    assert!(notice.unwrap_or_default().contains("someone else"), "bob is told the button is not his");
    // Ann answers by replying to the bot's message; a command for another bot is ignored.
    fake.text(group, user(1), "/fix@other_bot whatever");
    fake.reply_to(group, user(1), "1", for_ann.message_id);
    let sent = bot.sent(3).await;
    assert!(
        sent[2].plain.contains("backups you don't need") || sent[2].plain.contains("Delete Backup"),
        "{}",
        sent[2].plain
    );
    assert_eq!(sends(&fake.calls()), 3, "nothing else was answered");

    // `/fix` alone asks for the error and opens the reply box for that user,
    // since with privacy mode the bot sees only replies to its messages.
    fake.text(group, user(3), "/fix");
    bot.sent(4).await;
    let calls = fake.calls();
    let asked = calls.iter().rev().find(|call| call.method == "sendmessage").unwrap();
    assert_eq!(asked.params["reply_markup"]["force_reply"], true, "{}", asked.params);
    assert_eq!(asked.params["reply_markup"]["selective"], true);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forum_topic_is_its_own_place() {
    let fake = FakeTelegram::start().await;
    let bot = Harness::start(&fake, memory()).await;
    let topic = Chat::topic(-200, 42);
    let other_topic = Chat::topic(-200, 43);
    fake.text(topic, user(5), &format!("/fix {ICLOUD_FULL}"));
    let sent = bot.sent(1).await;
    assert_eq!(sent[0].thread, Some(42), "answers go to the topic the user wrote in");
    // The same user in another topic starts a separate case.
    fake.text(other_topic, user(5), "/fix Backup couldn't complete");
    let sent = bot.sent(2).await;
    assert_eq!(sent[1].thread, Some(43));
    assert!(sent[1].plain.contains("Wi-Fi"), "{}", sent[1].plain);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_forged_buttons_change_nothing() {
    let fake = FakeTelegram::start().await;
    let bot = Harness::start(&fake, memory()).await;
    let chat = Chat::private(12);
    fake.text(chat, user(12), ICLOUD_FULL);
    let first = bot.sent(1).await[0].clone();
    let data = button(&first, "Not enough");
    fake.press(chat, user(12), first.message_id, &data);
    bot.sent(2).await;
    // The same (now stale) button again, and a forged one.
    fake.press(chat, user(12), first.message_id, &data);
    fake.press(chat, user(12), first.message_id, "1.2.3.0011223344556677");
    fake.press(chat, user(12), first.message_id, "garbage");
    fake.wait_for(|_| fake.answered_callbacks().len() == 4, WAIT).await;
    let notices: Vec<String> =
        fake.answered_callbacks()[1..].iter().map(|(_, text)| text.clone().unwrap_or_default()).collect();
    assert!(notices.iter().all(|text| !text.is_empty()), "every refusal says why: {notices:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sends(&fake.calls()), 2, "refused presses send nothing");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out() {
    let fake = FakeTelegram::start().await;
    let bot = Harness::start(&fake, memory()).await;
    let chat = Chat::private(13);
    fake.fail_next("sendMessage", 429, Some(1));
    fake.fail_next("answerCallbackQuery", 429, Some(1));
    fake.text(chat, user(13), ICLOUD_FULL);
    let first = bot.sent(1).await[0].clone();
    fake.press(chat, user(13), first.message_id, &button(&first, "Not enough"));
    bot.sent(2).await;
    fake.wait_for(|_| fake.answered_callbacks().len() == 1, WAIT).await;
    let calls = fake.calls();
    let limited: Vec<&Call> = calls.iter().filter(|call| call.status == 429).collect();
    assert_eq!(limited.len(), 2, "both 429s were hit");
    for call in limited {
        let retry =
            calls.iter().find(|c| c.method == call.method && c.status == 200 && c.at > call.at).expect("retried");
        assert!(
            retry.at.duration_since(call.at) >= Duration::from_millis(900),
            "{} retried after retry_after",
            call.method
        );
    }
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_markup_and_long_pastes_are_sent_safely() {
    let fake = FakeTelegram::start().await;
    let bot = Harness::start(&fake, memory()).await;
    let chat = Chat::private(14);
    let hostile = "<b>bold</b> & <script>alert(1)</script> *_[]()~`>#+-=|{}.! Not enough iCloud storage &amp; <i>";
    fake.text(chat, user(14), hostile);
    bot.sent(1).await;
    // The hand-over summary quotes the (redacted) paste: it must arrive intact, as text.
    fake.text(chat, user(14), "/human");
    let sent = bot.sent(2).await;
    assert!(sent[1].plain.contains("<script>alert(1)</script>"), "{}", sent[1].plain);
    assert!(!sent[1].text.contains("<script>"), "escaped in HTML: {}", sent[1].text);

    let long = format!("{} {}", "the backup log says: ".repeat(190), ICLOUD_FULL);
    assert!(long.chars().count() >= 4000);
    fake.text(chat, user(14), &long);
    let sent = bot.sent(3).await;
    assert!(sent[2].plain.contains("Cloud storage"), "{}", sent[2].plain);
    assert!(fake.calls().iter().all(|call| call.status != 400), "the fake refused nothing");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_and_old_buttons_carry_on() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("cases.db").display());
    let spawn = || {
        crate::support::spawn_serve(
            &store,
            &[],
            &[("TELEGRAM_BOT_TOKEN", fake.token()), ("TELEGRAM_API_URL", &fake.api_url())],
        )
    };
    let chat = Chat::private(15);
    let mut server = spawn();
    let id = fake.text(chat, user(15), ICLOUD_FULL);
    fake.wait_for(|calls| sends(calls) >= 1, WAIT).await;
    let first = fake.sent()[0].clone();
    // Killed once the update is acknowledged (the next getUpdates' offset):
    // killed between its answer and that, Telegram would hand the update to
    // the next instance, which rightly sends its stored answer again (see
    // the test below), and that copy would pass for the button's answer.
    fake.wait_acknowledged(id, WAIT).await;
    server.kill().unwrap();
    server.wait().unwrap();

    let mut server = spawn();
    fake.press(chat, user(15), first.message_id, &button(&first, "Not enough"));
    fake.wait_for(|calls| sends(calls) >= 2, WAIT).await;
    let next = fake.sent()[1].clone();
    assert!(next.plain.contains("backups you don't need") || next.plain.contains("Delete Backup"), "{}", next.plain);
    assert_eq!(fake.answered_callbacks().len(), 1);
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = (BOT_ID, ChatKind::Private);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_delivered_again_after_a_restart_is_not_answered_twice() {
    let fake = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("cases.db").display());
    let chat = Chat::private(16);
    let bot = Harness::start(&fake, AnyStore::open(&url).await.unwrap()).await;
    let id = fake.text(chat, user(16), ICLOUD_FULL);
    bot.sent(1).await;
    bot.stop().await;

    // The new instance is handed the same update again, as Telegram does
    // when an offset was never confirmed.
    fake.redeliver(id);
    let bot = Harness::start(&fake, AnyStore::open(&url).await.unwrap()).await;
    fake.text(chat, user(16), "1");
    bot.sent(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = fake.sent();
    assert_eq!(
        sent.len(),
        2,
        "the re-delivered update was not answered again: {:?}",
        sent.iter().map(|s| &s.plain).collect::<Vec<_>>()
    );
    assert!(sent[1].plain.contains("Delete Backup"), "and the case went on from the stored step: {}", sent[1].plain);
    bot.stop().await;
}

/// POSTs `body` to the webhook on `address`, as Telegram would; returns the status.
async fn post_update(address: std::net::SocketAddr, secret: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: fixbot\r\nContent-Type: application/json\r\nX-Telegram-Bot-Api-Secret-Token: {secret}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        fixbot_telegram::WEBHOOK_PATH,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_whitespace().nth(1).and_then(|status| status.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_takes_updates_with_the_right_secret_once() {
    let fake = FakeTelegram::start().await;
    let session = Arc::new(Session::new(memory(), shipped_flows(), EngineConfig::default()));
    let frontend = fixbot_telegram::connect(config(&fake), session, ButtonCodec::new(b"s")).await.unwrap();
    frontend.set_webhook("https://bot.example.test/telegram/webhook".parse().unwrap(), "hook-secret_1").await.unwrap();
    assert_eq!(fake.webhook().as_deref(), Some("https://bot.example.test/telegram/webhook"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, frontend.router("hook-secret_1".into())).into_future());

    let chat = Chat::private(17);
    let id = fake.text(chat, user(17), ICLOUD_FULL);
    let body = fake.update(id).to_string();
    assert_eq!(post_update(address, "wrong", &body).await, 401);
    assert_eq!(sends(&fake.calls()), 0, "a request without the secret is not handled");
    assert_eq!(post_update(address, "hook-secret_1", &body).await, 200);
    assert_eq!(sends(&fake.calls()), 1, "the update is answered before the webhook returns");
    // Telegram retries a delivery it thinks failed: answered once all the same.
    assert_eq!(post_update(address, "hook-secret_1", &body).await, 200);
    assert_eq!(post_update(address, "hook-secret_1", "not json").await, 200);
    assert_eq!(sends(&fake.calls()), 1);
    assert!(fake.sent()[0].plain.contains("Cloud storage"));
}

/// Issue "Speaking the user's language": the user's Telegram app language
/// (`from.language_code`) picks the language of a new case, and `/language`
/// switches it mid-case, showing the current step again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn language_code_es_gets_a_spanish_answer_and_language_switches_back() {
    let fake = FakeTelegram::start().await;
    let bot = Harness::start(&fake, memory()).await;
    let chat = Chat::private(40);
    let spanish = User { id: 40, language: "es" };
    fake.text(chat, spanish, ICLOUD_FULL);
    let sent = bot.sent(1).await;
    assert!(sent[0].plain.contains("El almacenamiento en la nube está lleno"), "{}", sent[0].plain);
    assert!(sent[0].plain.contains("Ajustes → [tu nombre] → iCloud"), "{}", sent[0].plain);
    assert!(button(&sent[0], "No hay suficiente espacio").len() <= 64);

    fake.text(chat, spanish, "/language en");
    let sent = bot.sent(2).await;
    assert!(sent[1].plain.contains("answer in English"), "{}", sent[1].plain);
    assert!(sent[1].plain.contains("Settings → [your name] → iCloud"), "{}", sent[1].plain);
    button(&sent[1], "Not enough free space");
    bot.stop().await;
}
