//! `/why` for staff on both front-ends, on any case and from where the case
//! runs: in a Telegram group an admin replies `/why` to the person's
//! message, in the Telegram staff chat `/why USER_ID` explains a private
//! chat's case, in a Discord channel `/why user:` answers members who may
//! manage messages or hold a staff role, and only they see it. Everyone
//! else is refused, and learns nothing about the case. Issue 9.

use std::sync::Arc;
use std::time::Duration;

use fixbot_core::desk::Handovers;
use fixbot_discord::DiscordConfig;
use serde_json::{Value, json};

use crate::discord::{Harness, memory};
use crate::fake_discord::{FakeDiscord, MANAGE_MESSAGES, Place, Post};
use crate::fake_telegram::{Chat, FakeTelegram, Sent};
use crate::handover::{staffed_session, start_telegram};
use crate::telegram::user;

const ICLOUD_FULL: &str = "This iPhone cannot be backed up because there is not enough iCloud storage available.";
const WAIT: Duration = Duration::from_secs(20);
/// What every explanation starts with.
const EXPLAINED: &str = "Why this case went as it did";
const REFUSED: &str = "Only the support team can use /why.";

/// Waits for the next message to `chat` after the `before` it had, and returns it.
async fn next_to(fake: &FakeTelegram, chat: i64, before: usize) -> Sent {
    fake.wait_for(|_| fake.sent_count(chat) > before, WAIT).await;
    fake.sent_to(chat).swap_remove(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_group_admins_and_the_staff_chat_are_told_why_others_are_refused() {
    const STAFF_CHAT: i64 = -100_700;
    let fake = FakeTelegram::start().await;
    fake.add_chat(Chat::supergroup(STAFF_CHAT));
    let handovers = Arc::new(Handovers::new(staffed_session()));
    let bot = start_telegram(&fake, &handovers, Some(STAFF_CHAT)).await;
    let group = Chat::supergroup(-100_500);

    // Someone asks for help in the group.
    fake.text(group, user(11), &format!("/fix {ICLOUD_FULL}"));
    let answer = next_to(&fake, group.id, 0).await;
    assert!(answer.plain.contains("Cloud storage is full"), "{}", answer.plain);
    let asked = fake.newest_from(group.id, 11).unwrap();

    // Another member asks why: refused, and nothing of the case is shown.
    let count = fake.sent_count(group.id);
    fake.reply_to_person(group, user(12), "/why", asked);
    let refused = next_to(&fake, group.id, count).await;
    assert_eq!(refused.plain, REFUSED);

    // A group admin asks, replying to the person's message: explained, in the group.
    fake.make_admin(group.id, 13);
    let count = fake.sent_count(group.id);
    fake.reply_to_person(group, user(13), "/why@fixbot_test_bot", asked);
    let why = next_to(&fake, group.id, count).await;
    for part in [EXPLAINED, "Symptom: Cloud storage is full", "Patterns that fired", "Runners-up:", "Path:"] {
        assert!(why.plain.contains(part), "no {part:?} in:\n{}", why.plain);
    }
    let asked_by_admin = fake.newest_from(group.id, 13).unwrap();
    assert_eq!(why.reply_to, Some(asked_by_admin), "the answer quotes the question");
    // Naming nobody, the admin is told how to name someone.
    let count = fake.sent_count(group.id);
    fake.text(group, user(13), "/why");
    let how = next_to(&fake, group.id, count).await;
    assert!(how.plain.starts_with("Reply to the person's message with /why"), "{}", how.plain);
    let asked_admin: Vec<Value> = fake
        .calls()
        .into_iter()
        .filter(|call| call.method == "getchatmember")
        .map(|call| call.params["user_id"].clone())
        .collect();
    assert!(asked_admin.contains(&json!(12)) && asked_admin.contains(&json!(13)), "{asked_admin:?}");

    // In a private chat nobody is staff.
    let private = Chat::private(21);
    fake.text(private, user(21), ICLOUD_FULL);
    next_to(&fake, private.id, 0).await;
    let count = fake.sent_count(private.id);
    fake.text(private, user(21), "/why");
    assert_eq!(next_to(&fake, private.id, count).await.plain, REFUSED);

    // In the staff chat, `/why USER_ID` explains that user's private chat.
    let staff = Chat::supergroup(STAFF_CHAT);
    fake.text(staff, user(30), "/why 21");
    let why = next_to(&fake, STAFF_CHAT, 0).await;
    assert!(why.plain.contains(EXPLAINED) && why.plain.contains("Cloud storage is full"), "{}", why.plain);
    fake.text(staff, user(30), "/why 99");
    assert_eq!(next_to(&fake, STAFF_CHAT, 1).await.plain, "That person has no open case here.");

    // Group admins find `/why` in their command menu; nobody else does.
    let names = |commands: Vec<(String, String)>| commands.into_iter().map(|(name, _)| name).collect::<Vec<_>>();
    let everyone = names(fake.my_commands(None, ""));
    let admins = names(fake.my_commands(Some(json!({"type": "all_chat_administrators"})), ""));
    assert!(everyone.contains(&"fix".to_owned()) && !everyone.contains(&"why".to_owned()), "{everyone:?}");
    assert!(admins.contains(&"fix".to_owned()) && admins.contains(&"why".to_owned()), "{admins:?}");
    bot.stop().await;
}

/// The posts answering interaction `id`, once there is one.
async fn answers_to(fake: &FakeDiscord, id: u64) -> Vec<Post> {
    let of = |fake: &FakeDiscord| -> Vec<Post> {
        fake.posts().into_iter().filter(|post| post.interaction == Some(id) && !post.content.is_empty()).collect()
    };
    fake.wait_until(&format!("an answer to interaction {id}"), |fake| !of(fake).is_empty(), WAIT).await;
    of(fake)
}

fn about(user: u64) -> Value {
    json!([{ "name": "user", "type": 6, "value": user.to_string() }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_moderators_and_staff_roles_see_why_only_to_themselves_others_are_refused() {
    const GUILD: u64 = 5000;
    const STAFF_ROLE: u64 = 4242;
    let fake = FakeDiscord::start().await;
    let config = DiscordConfig { guild_ids: vec![GUILD], staff_roles: vec![STAFF_ROLE], ..DiscordConfig::default() };
    let bot = Harness::start_with(&fake, memory(), config).await;
    let channel = Place::guild(GUILD, 10);
    fake.wait_until("/why registered", |fake| fake.commands().iter().any(|command| command["name"] == "why"), WAIT)
        .await;
    let why = fake.commands().into_iter().find(|command| command["name"] == "why").unwrap();
    assert_eq!(why["default_member_permissions"], json!(MANAGE_MESSAGES.to_string()), "{why}");
    assert_eq!(why["contexts"], json!([0]), "guild channels only: {why}");

    let opened = fake.slash(channel, 1, "fix", json!([{ "name": "error", "type": 3, "value": ICLOUD_FULL }]));
    answers_to(&fake, opened).await;

    // A member without the permission (a server admin may have opened the
    // command to everyone): refused, and only they see it.
    let refused = answers_to(&fake, fake.slash(channel, 2, "why", about(1))).await;
    assert_eq!((refused.len(), refused[0].ephemeral), (1, true));
    assert_eq!(refused[0].content.replace('\\', ""), REFUSED);

    // A moderator, and a member with the staff role: explained, to them alone.
    fake.set_member(3, MANAGE_MESSAGES, &[]);
    fake.set_member(4, 0, &[STAFF_ROLE]);
    for staff in [3, 4] {
        let answer = answers_to(&fake, fake.slash(channel, staff, "why", about(1))).await;
        let text: String = answer.iter().map(|post| post.content.replace('\\', "")).collect();
        assert!(answer.iter().all(|post| post.ephemeral), "{answer:?}");
        for part in [EXPLAINED, "Symptom: **Cloud storage is full**", "Patterns that fired", "Path:"] {
            assert!(text.contains(part), "no {part:?} in:\n{text}");
        }
    }
    // Asked about someone with no case in this channel.
    let nobody = answers_to(&fake, fake.slash(channel, 3, "why", about(99))).await;
    assert_eq!(nobody[0].content.replace('\\', ""), "That person has no open case here.");
    bot.stop().await;
}
