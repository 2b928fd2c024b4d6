//! The fake Telegram checked with teloxide's own client: what it answers must deserialize into
//! teloxide's types, and its refusals must surface as the errors teloxide gives for Telegram's.

use std::time::{Duration, Instant};

use serde_json::json;
use teloxide::payloads::setters::*;
use teloxide::requests::Requester;
use teloxide::types::{
    BotCommand, CallbackQueryId, ChatAction, ChatId, ChatKind as TgChatKind, InlineKeyboardButton,
    InlineKeyboardButtonKind, InlineKeyboardMarkup, MaybeInaccessibleMessage, MessageEntityKind, MessageId, ParseMode,
    PublicChatKind, ReplyParameters, Seconds, ThreadId, Update, UpdateKind, UserId,
};
use teloxide::{ApiError, Bot, RequestError};

use crate::fake_telegram::{BOT_ID, BOT_USERNAME, Chat, ChatKind, FakeTelegram, User};

const ANNA: User = User { id: 42, language: "en" };
const BEN: User = User { id: 43, language: "de" };
const GROUP: i64 = -1001;
const FORUM: i64 = -100_200;

/// A fake and a bot built as the brief's front-end will build it.
async fn setup() -> (FakeTelegram, Bot) {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    (fake, bot)
}

fn keyboard(rows: &[&[(&str, &str)]]) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(
        rows.iter().map(|row| row.iter().map(|(label, data)| InlineKeyboardButton::callback(*label, *data))),
    )
}

fn api_error<T: std::fmt::Debug>(result: Result<T, RequestError>) -> ApiError {
    match result {
        Err(RequestError::Api(error)) => error,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// All updates pending, without confirming them.
async fn updates(bot: &Bot) -> Vec<Update> {
    bot.get_updates().await.expect("getUpdates succeeds")
}

#[tokio::test]
async fn get_me_is_the_test_bot_and_the_token_is_checked() {
    let (fake, bot) = setup().await;
    let me = bot.get_me().await.unwrap();
    assert_eq!(me.id, UserId(BOT_ID as u64));
    assert!(me.is_bot);
    assert_eq!(me.username(), BOT_USERNAME);

    // Teloxide's own constructor, as the brief's front-end may use it.
    let plain = Bot::new(fake.token()).set_api_url(fake.api_url().parse().unwrap());
    assert!(plain.get_me().await.is_ok());

    let stranger = Bot::new("999:wrong").set_api_url(fake.api_url().parse().unwrap());
    assert_eq!(api_error(stranger.get_me().await), ApiError::InvalidToken);
    let calls = fake.calls();
    assert_eq!(calls.last().map(|c| (c.method.as_str(), c.status)), Some(("getme", 401)));
    assert!(calls.iter().all(|c| c.method == "getme"));
}

#[tokio::test]
async fn unknown_methods_are_404_not_5xx() {
    let (fake, bot) = setup().await;
    fake.add_chat(Chat::private(ANNA.id));
    let error = api_error(bot.get_chat_member_count(ChatId(ANNA.id)).await);
    assert_eq!(error, ApiError::Unknown("Not Found: method not found".into()));
    assert_eq!(fake.calls()[0].status, 404);
}

#[tokio::test]
async fn send_message_with_html_and_keyboard() {
    let (fake, bot) = setup().await;
    fake.text(Chat::private(ANNA.id), ANNA, "hello");
    let html = "  <b>Phone</b> &amp; <i>backup</i> &lt;3 <a href=\"https://example.com/x?a=1&amp;b=2\">link</a>\n";
    let message = bot
        .send_message(ChatId(ANNA.id), html)
        .parse_mode(ParseMode::Html)
        .reply_markup(keyboard(&[&[("Yes", "y"), ("No", "n")], &[("Help", "help:1")]]))
        .await
        .unwrap();
    // The user's message was 1, so the bot's is 2.
    assert_eq!(message.id, MessageId(2));
    assert_eq!(message.chat.id, ChatId(ANNA.id));
    assert!(message.chat.is_private());
    assert_eq!(message.from.as_ref().map(|u| u.id), Some(UserId(BOT_ID as u64)));
    assert_eq!(message.text(), Some("Phone & backup <3 link"));
    let kinds: Vec<_> = message.entities().unwrap().iter().map(|e| (e.kind.clone(), e.offset, e.length)).collect();
    assert_eq!(kinds[0], (MessageEntityKind::Bold, 0, 5));
    assert_eq!(kinds[1], (MessageEntityKind::Italic, 8, 6));
    assert!(
        matches!(&kinds[2], (MessageEntityKind::TextLink { url }, 18, 4) if url.as_str().starts_with("https://example.com/x?a=1&b=2"))
    );
    let markup = message.reply_markup().unwrap();
    assert_eq!(markup.inline_keyboard.len(), 2);
    assert!(matches!(&markup.inline_keyboard[1][0].kind, InlineKeyboardButtonKind::CallbackData(d) if d == "help:1"));

    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, html);
    assert_eq!(sent[0].plain, "Phone & backup <3 link");
    assert_eq!(sent[0].message_id, 2);
    assert_eq!(sent[0].thread, None);
    assert_eq!(sent[0].reply_to, None);
    let buttons = vec![
        vec![("Yes".to_string(), "y".to_string()), ("No".to_string(), "n".to_string())],
        vec![("Help".to_string(), "help:1".to_string())],
    ];
    assert_eq!(sent[0].buttons, buttons);
    assert_eq!(fake.markup_of(ANNA.id, 2), Some(buttons));
    assert_eq!(fake.markup_of(ANNA.id, 99), None);

    // Without parse_mode the text is taken as it is.
    let plain = bot.send_message(ChatId(ANNA.id), "<b>not bold</b> & fine").await.unwrap();
    assert_eq!(plain.text(), Some("<b>not bold</b> & fine"));
    assert_eq!(fake.markup_of(ANNA.id, 3), Some(vec![]));
}

#[tokio::test]
async fn text_length_is_counted_after_entity_parsing() {
    let (fake, bot) = setup().await;
    fake.add_chat(Chat::private(ANNA.id));
    let chat = ChatId(ANNA.id);
    let limit = "é".repeat(4096);
    assert!(bot.send_message(chat, limit.as_str()).await.is_ok());
    let tagged = format!("<b>{limit}</b>");
    assert!(bot.send_message(chat, tagged).parse_mode(ParseMode::Html).await.is_ok());
    let escaped = "&lt;".repeat(4096);
    assert!(bot.send_message(chat, escaped).parse_mode(ParseMode::Html).await.is_ok());

    let over = "a".repeat(4097);
    assert_eq!(api_error(bot.send_message(chat, over.as_str()).await), ApiError::MessageIsTooLong);
    assert_eq!(api_error(bot.send_message(chat, "").await), ApiError::MessageTextIsEmpty);
    let blank = api_error(bot.send_message(chat, " <b> </b>\n").parse_mode(ParseMode::Html).await);
    assert_eq!(blank, ApiError::Unknown("Bad Request: message must be non-empty".into()));
    // Edits word the same limit differently, as Telegram does.
    assert_eq!(api_error(bot.edit_message_text(chat, MessageId(1), over).await), ApiError::EditedMessageIsTooLong);
    assert_eq!(fake.sent().len(), 3);
    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 200, 200, 400, 400, 400, 400]);
}

#[tokio::test]
async fn bad_html_is_refused_with_the_reason() {
    let (fake, bot) = setup().await;
    fake.add_chat(Chat::private(ANNA.id));
    let cases = [
        ("<b>open", "Can't find end tag corresponding to start tag \"b\""),
        ("<b><i>x</b></i>", "Unmatched end tag at byte offset 7, expected \"</i>\", found \"</b>\""),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<p>para</p>", "Unsupported start tag \"p\" at byte offset 0"),
        ("<br/>", "Unsupported start tag \"br/\" at byte offset 0"),
        ("1 < 2", "Unsupported start tag \"\" at byte offset 2"),
        ("<a>link</a>", "Tag \"a\" must have a non-empty attribute \"href\" at byte offset 0"),
        ("<span>x</span>", "Tag \"span\" must have class \"tg-spoiler\" at byte offset 0"),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("Q&A", "character \"&\" at byte offset 1 starts no supported entity; escape it as \"&amp;\""),
        ("&nbsp;", "character \"&\" at byte offset 0 starts no supported entity; escape it as \"&amp;\""),
    ];
    for (html, reason) in cases {
        let error = api_error(bot.send_message(ChatId(ANNA.id), html).parse_mode(ParseMode::Html).await);
        assert_eq!(
            error,
            ApiError::CantParseEntities(format!("Bad Request: can't parse entities: {reason}")),
            "{html}"
        );
    }
    let fine = [
        "a > b &quot;q&quot; &#65;&#x42; <tg-spoiler>s</tg-spoiler> <span class=\"tg-spoiler\">t</span>",
        "<pre><code class=\"language-rust\">fn main() {}</code></pre> <code>x</code>",
        "<blockquote expandable>quote</blockquote> <s>a</s><del>b</del><strike>c</strike><u>d</u><ins>e</ins>",
        "<B>caps</B> <strong><em>both</em></strong>",
    ];
    for html in fine {
        let message = bot.send_message(ChatId(ANNA.id), html).parse_mode(ParseMode::Html).await;
        assert!(message.is_ok(), "{html}: {message:?}");
    }
    let sent = fake.sent();
    assert_eq!(sent[0].plain, "a > b \"q\" AB s t");
    assert_eq!(sent[1].plain, "fn main() {} x");
    assert!(fake.calls().iter().all(|c| c.status < 500));
}

#[tokio::test]
async fn keyboards_are_checked() {
    let (fake, bot) = setup().await;
    fake.add_chat(Chat::private(ANNA.id));
    let chat = ChatId(ANNA.id);
    // 64 bytes pass even when fewer characters; 65 bytes do not.
    let ok = "é".repeat(32);
    assert!(bot.send_message(chat, "x").reply_markup(keyboard(&[&[("ok", ok.as_str())]])).await.is_ok());
    let long = "é".repeat(32) + "a";
    let error = api_error(bot.send_message(chat, "x").reply_markup(keyboard(&[&[("long", long.as_str())]])).await);
    assert_eq!(error, ApiError::ButtonDataInvalid);
    let error = api_error(bot.send_message(chat, "x").reply_markup(keyboard(&[&[("empty", "")]])).await);
    assert_eq!(
        error,
        ApiError::Unknown(
            "Bad Request: can't parse InlineKeyboardButton: Text buttons are not allowed in the inline keyboard".into()
        )
    );
    let error = api_error(bot.send_message(chat, "x").reply_markup(keyboard(&[&[("", "data")]])).await);
    assert_eq!(error, ApiError::Unknown("Bad Request: BUTTON_TEXT_INVALID".into()));
    let url = InlineKeyboardButton::url("Docs", "https://example.com/docs".parse().unwrap());
    let message = bot.send_message(chat, "x").reply_markup(InlineKeyboardMarkup::new([[url]])).await.unwrap();
    assert_eq!(fake.markup_of(ANNA.id, message.id.0 as i64).unwrap()[0][0].1, "https://example.com/docs");
    assert_eq!(fake.sent().len(), 2);
}

#[tokio::test]
async fn edits_follow_telegram() {
    let (fake, bot) = setup().await;
    let chat = ChatId(ANNA.id);
    fake.text(Chat::private(ANNA.id), ANNA, "hi");
    let message = bot.send_message(chat, "Pick").reply_markup(keyboard(&[&[("A", "a"), ("B", "b")]])).await.unwrap();
    let id = message.id;

    assert_eq!(api_error(bot.edit_message_text(chat, MessageId(99), "x").await), ApiError::MessageToEditNotFound);
    assert_eq!(api_error(bot.edit_message_reply_markup(chat, MessageId(99)).await), ApiError::MessageToEditNotFound);
    // The user's own message is not the bot's to edit.
    assert_eq!(api_error(bot.edit_message_text(chat, MessageId(1), "x").await), ApiError::MessageCantBeEdited);

    let same = keyboard(&[&[("A", "a"), ("B", "b")]]);
    let error = api_error(bot.edit_message_reply_markup(chat, id).reply_markup(same).await);
    assert_eq!(error, ApiError::MessageNotModified);

    let edited = bot.edit_message_reply_markup(chat, id).reply_markup(keyboard(&[&[("C", "c")]])).await.unwrap();
    assert_eq!(edited.text(), Some("Pick"));
    assert_eq!(fake.markup_of(ANNA.id, id.0 as i64), Some(vec![vec![("C".into(), "c".into())]]));

    // Editing the text without a keyboard removes the keyboard, as Telegram does.
    let edited = bot.edit_message_text(chat, id, "<b>Picked</b> C").parse_mode(ParseMode::Html).await.unwrap();
    assert_eq!(edited.text(), Some("Picked C"));
    assert!(edited.reply_markup().is_none());
    assert_eq!(fake.markup_of(ANNA.id, id.0 as i64), Some(vec![]));
    assert_eq!(fake.text_of(ANNA.id, id.0 as i64).as_deref(), Some("Picked C"));
    let error = api_error(bot.edit_message_text(chat, id, "<b>Picked</b> C").parse_mode(ParseMode::Html).await);
    assert_eq!(error, ApiError::MessageNotModified);
    // Same characters, other entities: modified.
    assert!(bot.edit_message_text(chat, id, "Picked C").await.is_ok());
    // Removing a keyboard that is not there is no change either.
    assert_eq!(api_error(bot.edit_message_reply_markup(chat, id).await), ApiError::MessageNotModified);
    // The sent record keeps what was sent.
    assert_eq!(fake.sent()[0].plain, "Pick");
}

#[tokio::test]
async fn updates_carry_what_teloxide_needs() {
    let (fake, bot) = setup().await;
    let private = Chat::private(ANNA.id);
    let topic = Chat::topic(FORUM, 7);

    let first = fake.text(private, ANNA, "my backup failed");
    assert_eq!(first, 1);
    fake.text(Chat::group(GROUP), BEN, "/fix@fixbot_test_bot my text");
    fake.text(topic, BEN, "in a topic");
    let bot_message = bot
        .send_message(ChatId(FORUM), "Which phone?")
        .message_thread_id(ThreadId(MessageId(7)))
        .reply_markup(keyboard(&[&[("iPhone", "ios"), ("Android", "android")]]))
        .await
        .unwrap();
    assert_eq!(bot_message.thread_id, Some(ThreadId(MessageId(7))));
    assert!(bot_message.is_topic_message);
    let bot_id = bot_message.id.0 as i64;
    let reply = fake.reply_to(topic, BEN, "an iPhone 15", bot_id);
    let press = fake.press(topic, BEN, bot_id, "android");

    let updates = updates(&bot).await;
    assert_eq!(updates.len(), 5);
    assert!(updates.iter().all(|u| !matches!(u.kind, UpdateKind::Error(_))), "{updates:#?}");

    let UpdateKind::Message(m) = &updates[0].kind else { panic!("{:?}", updates[0]) };
    assert_eq!(m.text(), Some("my backup failed"));
    assert!(m.chat.is_private());
    let from = m.from.as_ref().unwrap();
    assert_eq!((from.id, from.is_bot, from.first_name.as_str()), (UserId(42), false, "User42"));
    assert_eq!(from.language_code.as_deref(), Some("en"));
    assert!(m.reply_to_message().is_none());

    let UpdateKind::Message(m) = &updates[1].kind else { panic!("{:?}", updates[1]) };
    assert!(m.chat.is_group());
    let entities = m.parse_entities().unwrap();
    assert_eq!(entities.len(), 1);
    assert_eq!(entities[0].kind(), &MessageEntityKind::BotCommand);
    assert_eq!(entities[0].text(), "/fix@fixbot_test_bot");
    assert_eq!(entities[0].start(), 0);

    let UpdateKind::Message(m) = &updates[2].kind else { panic!("{:?}", updates[2]) };
    assert_eq!(m.thread_id, Some(ThreadId(MessageId(7))));
    assert!(m.is_topic_message);
    let TgChatKind::Public(public) = &m.chat.kind else { panic!("{:?}", m.chat) };
    assert!(matches!(&public.kind, PublicChatKind::Supergroup(s) if s.is_forum));
    // A topic message that is no reply still has reply_to_message: the topic's creation.
    let root = m.reply_to_message().unwrap();
    assert_eq!(root.id, MessageId(7));
    assert!(root.forum_topic_created().is_some());
    assert_ne!(root.from.as_ref().unwrap().id, UserId(BOT_ID as u64));

    assert_eq!(updates[3].id.0 as i64, reply);
    let UpdateKind::Message(m) = &updates[3].kind else { panic!("{:?}", updates[3]) };
    assert_eq!(m.text(), Some("an iPhone 15"));
    assert_eq!(m.thread_id, Some(ThreadId(MessageId(7))));
    let replied = m.reply_to_message().unwrap();
    assert_eq!(replied.id, bot_message.id);
    assert_eq!(replied.from.as_ref().unwrap().id, UserId(BOT_ID as u64));
    assert_eq!(replied.text(), Some("Which phone?"));

    assert_eq!(updates[4].id.0 as i64, press);
    let UpdateKind::CallbackQuery(q) = &updates[4].kind else { panic!("{:?}", updates[4]) };
    assert_eq!(q.data.as_deref(), Some("android"));
    assert_eq!(q.from.id, UserId(43));
    assert_eq!(q.id, CallbackQueryId(FakeTelegram::callback_id(press)));
    let Some(MaybeInaccessibleMessage::Regular(on)) = &q.message else { panic!("{q:?}") };
    assert_eq!(on.id, bot_message.id);
    assert_eq!(on.chat.id, ChatId(FORUM));
    assert_eq!(on.thread_id, Some(ThreadId(MessageId(7))));
    assert_eq!(on.reply_markup().unwrap().inline_keyboard[0].len(), 2);

    // Answering once works; twice, or an unknown id, is refused.
    bot.answer_callback_query(q.id.clone()).text("Android it is").await.unwrap();
    let error = api_error(bot.answer_callback_query(q.id.clone()).await);
    let expected = "Bad Request: query is too old and response timeout expired or query ID is invalid";
    assert_eq!(error, ApiError::Unknown(expected.into()));
    let error = api_error(bot.answer_callback_query(CallbackQueryId("nope".into())).await);
    assert_eq!(error, ApiError::Unknown(expected.into()));
    assert_eq!(fake.answered_callbacks(), vec![(q.id.0.clone(), Some("Android it is".to_string()))]);
}

#[tokio::test]
async fn offsets_confirm_updates() {
    let (fake, bot) = setup().await;
    let chat = Chat::private(ANNA.id);
    for text in ["one", "two", "three"] {
        fake.text(chat, ANNA, text);
    }
    let all = updates(&bot).await;
    assert_eq!(all.iter().map(|u| u.id.0).collect::<Vec<_>>(), [1, 2, 3]);
    // Served but unconfirmed updates are served again.
    assert_eq!(updates(&bot).await.len(), 3);
    let limited = bot.get_updates().offset(2).limit(1).await.unwrap();
    assert_eq!(limited.iter().map(|u| u.id.0).collect::<Vec<_>>(), [2]);
    assert_eq!(fake.pending_updates(), 2);
    let rest = bot.get_updates().offset(4).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(fake.pending_updates(), 0);
    // Ids keep increasing after confirmation.
    assert_eq!(fake.text(chat, ANNA, "four"), 4);
    fake.text(chat, ANNA, "five");
    // A negative offset keeps only the newest updates.
    let last = bot.get_updates().offset(-1).await.unwrap();
    assert_eq!(last.iter().map(|u| u.id.0).collect::<Vec<_>>(), [5]);
    assert_eq!(fake.pending_updates(), 1);
}

#[tokio::test]
async fn long_polling_waits_for_an_update() {
    let (fake, bot) = setup().await;
    let pusher = fake.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        pusher.text(Chat::private(ANNA.id), ANNA, "late");
    });
    let got = bot.get_updates().timeout(30).await.unwrap();
    assert_eq!(got.len(), 1);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(2), "{waited:?}");

    // With nothing to serve, the poll ends after min(timeout, 2) seconds, empty.
    let started = Instant::now();
    let empty = bot.get_updates().offset(2).timeout(1).await.unwrap();
    assert!(empty.is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(1900), "{waited:?}");
}

#[tokio::test]
async fn a_second_poller_terminates_the_first() {
    let (_fake, bot) = setup().await;
    let first = tokio::spawn({
        let bot = bot.clone();
        async move { bot.get_updates().timeout(2).await }
    });
    // Let the first poll arrive and start waiting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = bot.get_updates().timeout(0).await;
    assert!(second.unwrap().is_empty());
    assert_eq!(api_error(first.await.unwrap()), ApiError::TerminatedByOtherGetUpdates);
}

#[tokio::test]
async fn allowed_updates_filters_later_updates() {
    let (fake, bot) = setup().await;
    let chat = Chat::private(ANNA.id);
    fake.text(chat, ANNA, "hi");
    let message = bot.send_message(ChatId(ANNA.id), "Pick").reply_markup(keyboard(&[&[("A", "a")]])).await.unwrap();
    let got = bot.get_updates().allowed_updates([teloxide::types::AllowedUpdate::Message]).await.unwrap();
    assert_eq!(got.len(), 1);
    fake.press(chat, ANNA, message.id.0 as i64, "a");
    fake.text(chat, ANNA, "more");
    let got = bot.get_updates().offset(2).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(matches!(got[0].kind, UpdateKind::Message(_)));
}

#[tokio::test]
async fn fail_next_injects_once() {
    let (fake, bot) = setup().await;
    fake.add_chat(Chat::private(ANNA.id));
    fake.fail_next("SendMessage", 429, Some(3));
    match bot.send_message(ChatId(ANNA.id), "x").await {
        Err(RequestError::RetryAfter(seconds)) => assert_eq!(seconds, Seconds::from_seconds(3)),
        other => panic!("expected RetryAfter, got {other:?}"),
    }
    assert!(bot.send_message(ChatId(ANNA.id), "x").await.is_ok());
    fake.fail_next("getupdates", 403, None);
    assert_eq!(api_error(bot.get_updates().await), ApiError::BotBlocked);
    let calls = fake.calls();
    let seen: Vec<(&str, u16)> = calls.iter().map(|c| (c.method.as_str(), c.status)).collect();
    assert_eq!(seen, [("sendmessage", 429), ("sendmessage", 200), ("getupdates", 403)]);
    assert_eq!(calls[0].params["text"], json!("x"));
    assert!(calls[0].at <= calls[1].at);
    assert_eq!(fake.sent().len(), 1);
}

#[tokio::test]
async fn chats_threads_and_replies_are_checked() {
    let (fake, bot) = setup().await;
    assert_eq!(api_error(bot.send_message(ChatId(5), "x").await), ApiError::ChatNotFound);
    fake.add_chat(Chat::group(GROUP));
    let error = api_error(bot.send_message(ChatId(GROUP), "x").message_thread_id(ThreadId(MessageId(3))).await);
    assert_eq!(error, ApiError::Unknown("Bad Request: message thread not found".into()));
    let error =
        api_error(bot.send_message(ChatId(GROUP), "x").reply_parameters(ReplyParameters::new(MessageId(9))).await);
    assert_eq!(error, ApiError::MessageToReplyNotFound);
    let lenient = ReplyParameters::new(MessageId(9)).allow_sending_without_reply();
    assert!(bot.send_message(ChatId(GROUP), "x").reply_parameters(lenient).await.is_ok());

    // A reply in a forum lands in the replied message's topic.
    let asked = fake.text(Chat::topic(FORUM, 11), BEN, "/fix@fixbot_test_bot phone");
    assert_eq!(asked, 1);
    let answer =
        bot.send_message(ChatId(FORUM), "On it").reply_parameters(ReplyParameters::new(MessageId(12))).await.unwrap();
    assert_eq!(answer.thread_id, Some(ThreadId(MessageId(11))));
    assert_eq!(answer.reply_to_message().unwrap().id, MessageId(12));
    let sent = fake.sent();
    assert_eq!((sent[1].chat_id, sent[1].thread, sent[1].reply_to), (FORUM, Some(11), Some(12)));
    // The General topic is the forum without a thread.
    fake.add_chat(Chat { id: FORUM, kind: ChatKind::Forum, thread: None });
}

#[tokio::test]
async fn get_chat_and_forum_topics_as_telegram_has_them() {
    use teloxide::types::{ChatFullInfoKind, ChatFullInfoPublicKind};
    let (fake, bot) = setup().await;
    fake.add_chat(Chat { id: FORUM, kind: ChatKind::Forum, thread: None });
    fake.add_chat(Chat::supergroup(GROUP));
    fake.set_username(GROUP, "backup_help");
    let is_forum = |kind: &ChatFullInfoKind| match kind {
        ChatFullInfoKind::Public(public) => {
            matches!(&public.kind, ChatFullInfoPublicKind::Supergroup(group) if group.is_forum)
        }
        ChatFullInfoKind::Private(_) => false,
    };
    let forum = bot.get_chat(ChatId(FORUM)).await.unwrap();
    assert!(is_forum(&forum.kind) && forum.title() == Some("Forum -100200"));
    let group = bot.get_chat(ChatId(GROUP)).await.unwrap();
    assert!(!is_forum(&group.kind));
    assert_eq!(group.username(), Some("backup_help"));
    assert_eq!(api_error(bot.get_chat(ChatId(-77)).await), ApiError::ChatNotFound);

    // A topic hangs from its creation message: its id is the topic's, and what the bot sends
    // there is a topic message.
    let topic = bot.create_forum_topic(ChatId(FORUM), "#0badcafe Cloud storage is full").await.unwrap();
    assert_eq!(topic.name, "#0badcafe Cloud storage is full");
    assert_eq!(fake.bot_topics(), [(FORUM, topic.thread_id.0.0 as i64, topic.name.clone())]);
    let packet = bot.send_message(ChatId(FORUM), "packet").message_thread_id(topic.thread_id).await.unwrap();
    assert_eq!(packet.thread_id, Some(topic.thread_id));
    assert!(packet.is_topic_message);
    let nowhere = bot.send_message(ChatId(FORUM), "x").message_thread_id(ThreadId(MessageId(999))).await;
    assert_eq!(api_error(nowhere), ApiError::Unknown("Bad Request: message thread not found".into()));
    let error = api_error(bot.create_forum_topic(ChatId(GROUP), "x").await);
    assert_eq!(error, ApiError::Unknown("Bad Request: the chat is not a forum".into()));
    assert!(bot.create_forum_topic(ChatId(FORUM), "").await.is_err(), "a name of 1 to 128 characters");

    // Staff writing in the topic: a topic message, replying to the bot's topic root unless it
    // replies to something else.
    let thread = topic.thread_id.0.0 as i64;
    fake.text(Chat::topic(FORUM, thread), BEN, "on it");
    fake.reply_to(Chat::topic(FORUM, thread), BEN, "see above", packet.id.0 as i64);
    let messages: Vec<_> = updates(&bot)
        .await
        .into_iter()
        .filter_map(|update| match update.kind {
            UpdateKind::Message(message) => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 2);
    for message in &messages {
        assert!(message.is_topic_message && message.thread_id == Some(topic.thread_id), "{message:?}");
    }
    let root = messages[0].reply_to_message().unwrap();
    assert_eq!((root.id, root.from.as_ref().map(|from| from.is_bot)), (MessageId(thread as i32), Some(true)));
    assert_eq!(messages[1].reply_to_message().unwrap().id, packet.id);
}

#[tokio::test]
async fn commands_webhooks_and_chat_actions() {
    let (fake, bot) = setup().await;
    let commands = [BotCommand::new("fix", "Start fixing a backup"), BotCommand::new("cancel_all", "Stop")];
    bot.set_my_commands(commands.clone()).await.unwrap();
    assert_eq!(bot.get_my_commands().await.unwrap(), commands);
    assert!(bot.get_my_commands().language_code("de").await.unwrap().is_empty());
    assert_eq!(fake.my_commands(None, "").len(), 2);
    let error = api_error(bot.set_my_commands([BotCommand::new("Fix", "x")]).await);
    assert_eq!(error, ApiError::Unknown("Bad Request: BOT_COMMAND_INVALID".into()));
    let error = api_error(bot.set_my_commands([BotCommand::new("fix", "")]).await);
    assert_eq!(error, ApiError::Unknown("Bad Request: command description must be non-empty".into()));
    bot.delete_my_commands().await.unwrap();
    assert!(bot.get_my_commands().await.unwrap().is_empty());

    // setWebhook goes out as multipart; while it is set, getUpdates is refused.
    bot.set_webhook("https://example.com/hook".parse().unwrap()).await.unwrap();
    assert_eq!(fake.webhook().as_deref(), Some("https://example.com/hook"));
    assert_eq!(bot.get_webhook_info().await.unwrap().url.unwrap().as_str(), "https://example.com/hook");
    assert!(bot.get_updates().await.is_err());
    assert_eq!(fake.calls().last().unwrap().status, 409);
    bot.delete_webhook().await.unwrap();
    assert_eq!(fake.webhook(), None);
    assert!(bot.get_updates().await.unwrap().is_empty());

    fake.add_chat(Chat::topic(FORUM, 3));
    bot.send_chat_action(ChatId(FORUM), ChatAction::Typing).message_thread_id(ThreadId(MessageId(3))).await.unwrap();
    assert_eq!(api_error(bot.send_chat_action(ChatId(77), ChatAction::Typing).await), ApiError::ChatNotFound);
}

#[tokio::test]
async fn stale_and_forged_presses_reach_the_bot() {
    let (fake, bot) = setup().await;
    let chat = Chat::private(ANNA.id);
    fake.add_chat(chat);
    let message = bot.send_message(ChatId(ANNA.id), "Pick").reply_markup(keyboard(&[&[("A", "a")]])).await.unwrap();
    let id = message.id.0 as i64;
    fake.press_shown(chat, ANNA, id, "a");
    bot.edit_message_text(ChatId(ANNA.id), message.id, "Picked A").await.unwrap();
    fake.press(chat, ANNA, id, "a");
    fake.press(chat, ANNA, id, "forged");
    let updates = updates(&bot).await;
    let data: Vec<_> = updates
        .iter()
        .map(|u| match &u.kind {
            UpdateKind::CallbackQuery(q) => q.data.clone().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(data, ["a", "a", "forged"]);
    // The query carries the message as it is now: edited, without its keyboard.
    let UpdateKind::CallbackQuery(q) = &updates[2].kind else { unreachable!() };
    let Some(MaybeInaccessibleMessage::Regular(on)) = &q.message else { panic!("{q:?}") };
    assert_eq!(on.text(), Some("Picked A"));
    assert!(on.reply_markup().is_none());
}

#[tokio::test]
#[should_panic(expected = "shows no button with data")]
async fn press_shown_checks_the_keyboard() {
    let (fake, bot) = setup().await;
    let chat = Chat::private(ANNA.id);
    fake.add_chat(chat);
    let message = bot.send_message(ChatId(ANNA.id), "Pick").reply_markup(keyboard(&[&[("A", "a")]])).await.unwrap();
    fake.press_shown(chat, ANNA, message.id.0 as i64, "gone");
}

#[tokio::test]
#[should_panic(expected = "no such message")]
async fn pressing_on_a_missing_message_is_a_test_bug() {
    let (fake, _bot) = setup().await;
    fake.press(Chat::private(ANNA.id), ANNA, 5, "a");
}

#[tokio::test]
#[should_panic(expected = "timed out")]
async fn wait_for_panics_on_timeout() {
    let (fake, _bot) = setup().await;
    fake.wait_for(|calls| !calls.is_empty(), Duration::from_millis(60)).await;
}

#[tokio::test]
async fn teloxide_dispatcher_runs_against_the_fake() {
    use teloxide::dispatching::{Dispatcher, UpdateFilterExt};
    use teloxide::types::Message;

    let (fake, bot) = setup().await;
    let handler = Update::filter_message().endpoint(|bot: Bot, message: Message| async move {
        let text = format!("echo: {}", message.text().unwrap_or_default());
        bot.send_message(message.chat.id, text).await?;
        Ok::<(), RequestError>(())
    });
    let mut dispatcher = Dispatcher::builder(bot, handler).build();
    // The runtime ends with the test and takes the dispatcher with it.
    tokio::spawn(async move { dispatcher.dispatch().await });
    fake.text(Chat::private(ANNA.id), ANNA, "ping");
    let sent = fake.wait_for_sent(1, Duration::from_secs(5)).await;
    assert_eq!(sent[0].plain, "echo: ping");
    let calls = fake.calls();
    assert!(calls.iter().any(|c| c.method == "getwebhookinfo" && c.status == 200));
    assert!(calls.iter().all(|c| c.status == 200), "{calls:#?}");
}

/// One raw HTTP/1.1 request to the fake: (status, JSON body).
async fn raw(fake: &FakeTelegram, request_line: &str, content_type: &str, body: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = fake.api_url().trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "{request_line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: \
         {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let json = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(json).unwrap_or_else(|_| panic!("{response}")))
}

#[tokio::test]
async fn query_strings_and_forms_are_read_like_telegram() {
    let (fake, _bot) = setup().await;
    fake.add_chat(Chat::private(ANNA.id));
    let path =
        format!("/bot{}/sendMessage?chat_id={}&text=%3Cb%3E123%3C%2Fb%3E&parse_mode=HTML", fake.token(), ANNA.id);
    let (status, body) = raw(&fake, &format!("GET {path}"), "text/plain", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["text"], json!("123"));
    let form = format!(
        "chat_id={}&text=a+%26+b&reply_markup=%7B%22inline_keyboard%22%3A%5B%5B%7B%22text%22%3A%22Go%22%2C%22callback_data%22%3A%22go%22%7D%5D%5D%7D",
        ANNA.id
    );
    let path = format!("POST /bot{}/sendmessage", fake.token());
    let (status, body) = raw(&fake, &path, "application/x-www-form-urlencoded", &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.sent()[1].plain, "a & b");
    assert_eq!(fake.sent()[1].buttons, vec![vec![("Go".to_string(), "go".to_string())]]);
    let (status, body) = raw(&fake, "POST /nothing/here", "application/json", "{}").await;
    assert_eq!((status, body["description"].clone()), (404, json!("Not Found")));
    let path = format!("POST /bot{}/sendMessage", fake.token());
    let (status, body) = raw(&fake, &path, "application/json", "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(fake.calls().iter().all(|c| c.status < 500));
}
