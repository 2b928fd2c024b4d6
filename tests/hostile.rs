//! The hostile-input corpus (`tests/hostile/messages.jsonl`: markup and
//! mention injection for both platforms, bidi and zero-width tricks, control
//! characters, injection shapes, personal data; plus a 1 MiB paste and binary
//! junk made here) through both front-ends' strict fakes, and forged
//! callback data and custom ids. Every message gets an answer the platform
//! accepts, which formats nothing the user wrote, pings no one, carries no
//! invisible or control character and no personal datum; a forged button
//! changes nothing. Issue 7.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_discord::{FakeDiscord, Place};
use crate::fake_telegram::{Chat, FakeTelegram, User};
use crate::support::root;

const WAIT: Duration = Duration::from_secs(60);

/// Every hostile message: the corpus file, a 1 MiB paste and binary junk.
fn corpus() -> Vec<(String, String)> {
    let file = std::fs::read_to_string(root().join("tests/hostile/messages.jsonl")).unwrap();
    let mut corpus: Vec<(String, String)> = file
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            (entry["name"].as_str().unwrap().to_owned(), entry["text"].as_str().unwrap().to_owned())
        })
        .collect();
    let paste = "Not enough iCloud storage. ".repeat((1 << 20) / 27 + 1);
    assert!(paste.len() >= 1 << 20);
    corpus.push(("1 MiB paste".to_owned(), paste));
    // Bytes from a fixed generator, read as a client would send them: invalid
    // UTF-8 becomes U+FFFD.
    let mut state: u32 = 0x1234_5678;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    corpus.push(("binary junk".to_owned(), String::from_utf8_lossy(&junk).into_owned()));
    corpus
}

/// What no reply may carry: a control character other than a line break, a
/// bidi control, or an invisible character.
fn unclean(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}')
            || matches!(c, '\u{FEFF}' | '\u{061C}' | '\u{180E}' | '\u{E0000}'..='\u{E007F}')
    })
}

/// What no reply may say, whatever the user wrote.
const NEVER_SAID: &[&str] =
    &["tg://", "evil.example", "<script", "onerror", "ann.smith@icloud.com", "7946 0958", "F2LXK0ABCDEF", "AAHk2j3h4k"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_through_telegram_are_answered_safely() {
    let fake = FakeTelegram::start().await;
    let bot = crate::telegram::Harness::start(&fake, crate::telegram::memory()).await;
    let corpus = corpus();
    for (index, (_, text)) in corpus.iter().enumerate() {
        let id = 6000 + index as i64;
        fake.text(Chat::private(id), User { id, language: "en" }, text);
    }
    // A group, where a reply could ping people named in it.
    let group = Chat::group(-6000);
    fake.text(group, User { id: 5999, language: "en" }, "/fix @admin @everyone <b>Not enough iCloud storage</b>");

    let deadline = Instant::now() + WAIT;
    let chats: Vec<i64> = (0..corpus.len()).map(|index| 6000 + index as i64).chain([-6000]).collect();
    while chats.iter().any(|&chat| fake.sent_count(chat) == 0) {
        let silent: Vec<&str> = chats
            .iter()
            .zip(corpus.iter().map(|(name, _)| name.as_str()).chain(["group"]))
            .filter(|(chat, _)| fake.sent_count(**chat) == 0)
            .map(|(_, name)| name)
            .collect();
        assert!(Instant::now() < deadline, "no answer to: {silent:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused: Vec<_> = fake.calls().into_iter().filter(|call| call.status != 200).collect();
    assert!(refused.is_empty(), "Telegram refused calls: {refused:?}");
    for (&chat, name) in chats.iter().zip(corpus.iter().map(|(name, _)| name.as_str()).chain(["group"])) {
        for sent in fake.sent_to(chat) {
            assert_eq!(unclean(&sent.plain), None, "{name}: {:?}", sent.plain);
            assert!(sent.plain.chars().count() <= 4096, "{name}");
            for never in NEVER_SAID.iter().chain(&["@admin", "@everyone"]) {
                assert!(!sent.plain.contains(never), "{name}: says {never:?}: {}", sent.plain);
            }
            for entity in fake.entities_of(chat, sent.message_id) {
                let kind = entity["type"].as_str().unwrap_or_default();
                assert!(matches!(kind, "bold" | "code" | "text_link"), "{name}: a {kind} entity: {entity}");
                if let Some(url) = entity["url"].as_str() {
                    assert!(url.starts_with("https://") && !url.contains("evil"), "{name}: links to {url}");
                }
            }
        }
    }

    // Forged callback data on the bot's own message: answered with a
    // notice, nothing sent, nothing changed.
    let chat = Chat::private(6000);
    let user = User { id: 6000, language: "en" };
    let shown = fake.sent_to(6000).pop().unwrap();
    let before = fake.sent_count(6000);
    let real = shown.buttons.iter().flatten().next().map(|(_, data)| data.clone()).unwrap_or_default();
    let forged = [
        String::new(),
        "0.0.0.AAAAAAAAAAAA".to_owned(),
        "x".repeat(64),
        "\u{202e}\u{0000}💣".to_owned(),
        format!("{real}x"),
        real.chars().rev().collect(),
    ];
    let mut presses = Vec::new();
    for data in &forged {
        presses.push(fake.press(chat, user, shown.message_id, data));
    }
    let deadline = Instant::now() + WAIT;
    while fake.answered_callbacks().len() < forged.len() {
        assert!(Instant::now() < deadline, "callbacks answered: {:?}", fake.answered_callbacks());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (id, text) in fake.answered_callbacks() {
        assert!(presses.iter().any(|press| FakeTelegram::callback_id(*press) == id));
        assert!(text.is_some_and(|text| !text.is_empty()), "a forged press is told why nothing happened");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.sent_count(6000), before, "a forged press sends nothing");
    bot.stop().await;
}

/// Whether `pattern` appears in Discord markdown without a backslash before
/// it, so that Discord would read it.
fn unescaped(content: &str, pattern: &str) -> bool {
    content.match_indices(pattern).any(|(at, _)| !content[..at].ends_with('\\'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_through_discord_are_answered_safely() {
    const GUILD: u64 = 5000;
    let fake = FakeDiscord::start().await;
    let bot = crate::discord::Harness::start(&fake, crate::discord::memory(), vec![GUILD]).await;
    fake.wait_for(|calls| calls.iter().any(|call| call.method == "PUT" && call.path.contains("/guilds/")), WAIT).await;
    let corpus = corpus();
    for (index, (_, text)) in corpus.iter().enumerate() {
        let user = 7000 + index as u64;
        fake.message(Place::dm(8000 + index as u64), user, text);
        // The slash command takes what Discord lets a user type in its option.
        if !text.trim().is_empty() && text.chars().count() <= 4000 {
            let option = json!([{ "name": "error", "type": 3, "value": text }]);
            fake.slash(Place::guild(GUILD, 9000 + index as u64), user, "fix", option);
        }
    }
    let channels: Vec<u64> = (0..corpus.len() as u64).map(|index| 8000 + index).collect();
    let deadline = Instant::now() + WAIT;
    while channels.iter().any(|&channel| fake.posts_in(channel).is_empty()) {
        assert!(Instant::now() < deadline, "a DM got no answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused: Vec<_> = fake.calls().into_iter().filter(|call| call.status >= 400).collect();
    assert!(refused.is_empty(), "Discord refused calls: {refused:?}");
    for post in fake.posts() {
        let name = &post.content;
        let mentions = post.allowed_mentions.clone().unwrap_or_default();
        let none = |field: &str| mentions[field].as_array().is_some_and(Vec::is_empty) || mentions[field].is_null();
        let pings_no_one = mentions["parse"] == json!([]) && none("users") && none("roles");
        assert!(pings_no_one && mentions["replied_user"] != true, "every message pings no one: {mentions} on {name}");
        let visible = post.content.replace("`\u{200B}`", "");
        assert_eq!(unclean(&visible), None, "{name:?}");
        assert!(post.content.chars().count() <= 2000);
        for pattern in ["@everyone", "@here", "<@", "<#", "<t:", "](", "**bold", "```"] {
            // Links the flows' authors wrote are markdown; nothing a user wrote is.
            if pattern == "](" && post.content.contains("](<https://") {
                continue;
            }
            assert!(!unescaped(&post.content, pattern), "{pattern} reads as markup in: {}", post.content);
        }
        for never in NEVER_SAID {
            assert!(!post.content.contains(never), "says {never:?}: {}", post.content);
        }
    }

    // Forged custom ids on the bot's own message: a note only the presser
    // sees, and nothing else.
    let (place, user) = (Place::dm(8000), 7000);
    let shown = fake.posts_in(8000).into_iter().rev().find(|post| !post.buttons.is_empty()).unwrap();
    let real = shown.buttons.iter().flatten().next().unwrap().custom_id.clone();
    let forged = ["".to_owned(), "x".repeat(100), format!("{real}x"), "0.0.0.AAAAAAAAAAAA".to_owned()];
    let before = fake.posts_in(8000).len();
    for custom_id in &forged {
        fake.press_unchecked(place, user, shown.message, custom_id);
    }
    let deadline = Instant::now() + WAIT;
    while fake.posts_in(8000).len() < before + forged.len() {
        assert!(Instant::now() < deadline, "every forged press gets its note");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let notes: Vec<_> = fake.posts_in(8000).into_iter().skip(before).collect();
    assert!(notes.iter().all(|note| note.ephemeral), "only the presser sees the note: {notes:?}");
    bot.stop().await;
}
