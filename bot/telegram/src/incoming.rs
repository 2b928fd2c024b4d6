//! What an update means to fixbot: who it is from, where replies go, and the
//! core `Input` it carries. Private chats take any text; groups take the bot's
//! commands and replies to the bot's own messages, so the bot never answers
//! chatter that was not meant for it. In the staff chat, a message in a
//! case's forum topic, or a reply to one of the bot's messages about a case,
//! is a staff member's message for that case. `/why` is staff's question
//! about someone's case, wherever it is asked; who may ask is decided when
//! it is answered.

use fixbot_core::case::ConversationKey;
use fixbot_core::engine::{Command, Input};
use fixbot_core::handover::{UserInfo, find_reference};
use fixbot_core::lang::Lang;
use teloxide::types::{CallbackQueryId, Chat, ChatId, Message, MessageId, ThreadId, Update, UpdateKind, User, UserId};

/// Stands in for a photo, sticker or other message without text: it has no
/// words, so the engine answers that it can only read text.
const NO_TEXT: &str = "\u{1F5BC}";

/// Who the bot is, for recognising commands and replies meant for it.
#[derive(Debug, Clone)]
pub struct Me {
    /// The bot's user id.
    pub id: UserId,
    /// The bot's username, without `@`.
    pub username: String,
}

/// Where replies to a conversation go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The chat.
    pub chat: ChatId,
    /// The forum topic, when the chat has topics.
    pub thread: Option<ThreadId>,
    /// In groups, the user's message the first reply quotes, so it is clear
    /// whom the bot answers.
    pub reply_to: Option<MessageId>,
}

/// Who asks `/why`, as far as the update tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhyAsker {
    /// A member of the staff chat: staff.
    StaffChat,
    /// A member of a group: staff when Telegram says they own or administer it.
    GroupMember(UserId),
    /// Someone in a private chat, where nobody is staff.
    Private,
}

/// An update the bot acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message for the bot.
    Message {
        /// The conversation.
        key: ConversationKey,
        /// What the user said.
        input: Input,
        /// Where to answer.
        place: Place,
        /// The language the user's Telegram app is set to (`from.language_code`).
        hint: Option<Lang>,
        /// Who wrote, as staff see them if the case is handed over.
        user: UserInfo,
    },
    /// A press on one of the bot's buttons.
    Press {
        /// The conversation of the user who pressed.
        key: ConversationKey,
        /// To answer the query (every query must be answered).
        query: CallbackQueryId,
        /// The button's callback data.
        data: String,
        /// Where to answer.
        place: Place,
        /// The message the button is on.
        message: MessageId,
        /// The language the user's Telegram app is set to.
        hint: Option<Lang>,
        /// Who pressed, as staff see them if the case is handed over.
        user: UserInfo,
    },
    /// `/why`: staff asking why the bot treated someone's case as it did.
    Why {
        /// The asker's own key, which orders their messages.
        key: ConversationKey,
        /// The case asked about: the person whose message the command
        /// replies to in a group, or the private chat of the user id given
        /// in the staff chat; `None` when it names nobody.
        about: Option<ConversationKey>,
        /// Where to answer.
        place: Place,
        /// Who asks, as far as the update tells.
        asker: WhyAsker,
    },
    /// A staff member's message in a case's thread of the staff chat.
    Staff {
        /// The staff member's own key, which orders their messages.
        key: ConversationKey,
        /// The case thread's lookup key.
        thread: String,
        /// The staff member's first name, as the user sees it.
        name: String,
        /// What they wrote.
        text: String,
    },
}

impl Incoming {
    /// The conversation the update belongs to.
    pub fn key(&self) -> &ConversationKey {
        match self {
            Incoming::Message { key, .. }
            | Incoming::Press { key, .. }
            | Incoming::Why { key, .. }
            | Incoming::Staff { key, .. } => key,
        }
    }
}

/// Reads an update; `None` for updates the bot ignores. Messages in
/// `staff_chat` are staff's, never a user's case.
pub fn read_update(update: &Update, me: &Me, staff_chat: Option<ChatId>) -> Option<Incoming> {
    match &update.kind {
        UpdateKind::Message(message) if Some(message.chat.id) == staff_chat => read_staff(message, me),
        UpdateKind::Message(message) => read_message(message, me),
        UpdateKind::CallbackQuery(query) => {
            let message = query.message.as_ref()?;
            let thread = message.regular_message().and_then(topic);
            let chat = message.chat();
            if Some(chat.id) == staff_chat {
                return None;
            }
            Some(Incoming::Press {
                key: key(chat.id, thread, query.from.id),
                query: query.id.clone(),
                data: query.data.clone().unwrap_or_default(),
                place: Place { chat: chat.id, thread, reply_to: None },
                message: message.id(),
                hint: query.from.language_code.as_deref().and_then(Lang::from_hint),
                user: user_info(&query.from, chat, message.id()),
            })
        }
        _ => None,
    }
}

/// A staff member's message: in a forum, the case is the topic's; in a
/// group without topics, the one a reply to the bot's message names.
/// Other bots, and messages that are not text, are not relayed.
fn read_staff(message: &Message, me: &Me) -> Option<Incoming> {
    let from = message.from.as_ref().filter(|user| !user.is_bot)?;
    let text = message.text()?;
    let chat = message.chat.id;
    let case_thread = match topic(message) {
        Some(ThreadId(MessageId(topic))) => Some(format!("telegram:{}:{topic}", chat.0)),
        None => message
            .reply_to_message()
            .filter(|replied| replied.from.as_ref().is_some_and(|user| user.id == me.id))
            .and_then(|replied| Some(format!("telegram:{}:#{}", chat.0, find_reference(replied.text()?)?))),
    };
    let Some(thread) = case_thread else {
        // Outside a case's thread, `/why USER_ID` asks about that user's
        // private chat with the bot.
        let about = read_why(text, me)?.parse::<u64>().ok().map(|user| key(ChatId(user as i64), None, UserId(user)));
        return Some(Incoming::Why {
            key: key(chat, topic(message), from.id),
            about,
            place: Place { chat, thread: topic(message), reply_to: Some(message.id) },
            asker: WhyAsker::StaffChat,
        });
    };
    Some(Incoming::Staff {
        key: key(chat, topic(message), from.id),
        thread,
        name: from.first_name.clone(),
        text: text.to_owned(),
    })
}

/// How staff see a user: their name, @username and id, and a t.me link to
/// the message where the chat is public.
fn user_info(from: &User, chat: &Chat, message: MessageId) -> UserInfo {
    let handle = match &from.username {
        Some(username) => format!("{} (@{username}, id {})", from.full_name(), from.id),
        None => format!("{} (id {})", from.full_name(), from.id),
    };
    let link =
        chat.username().filter(|_| !chat.is_private()).map(|username| format!("https://t.me/{username}/{}", message.0));
    UserInfo { handle, link }
}
fn read_message(message: &Message, me: &Me) -> Option<Incoming> {
    let from = message.from.as_ref().filter(|user| !user.is_bot)?;
    let text = message.text().or_else(|| message.caption());
    let private = message.chat.is_private();
    let thread = topic(message);
    if text.and_then(|text| read_why(text, me)).is_some() {
        // Staff reply `/why` to the message of the person they ask about.
        let about = message
            .reply_to_message()
            .and_then(|replied| replied.from.as_ref())
            .filter(|user| !user.is_bot)
            .map(|user| key(message.chat.id, thread, user.id));
        return Some(Incoming::Why {
            key: key(message.chat.id, thread, from.id),
            about,
            place: Place { chat: message.chat.id, thread, reply_to: (!private).then_some(message.id) },
            asker: if private { WhyAsker::Private } else { WhyAsker::GroupMember(from.id) },
        });
    }
    let input = match text.and_then(|text| read_command(text, me)) {
        Some(Ok(input)) => input,
        // A command for another bot, or one fixbot does not know, in a group.
        Some(Err(())) if !private => return None,
        _ => {
            let to_bot =
                message.reply_to_message().and_then(|reply| reply.from.as_ref()).is_some_and(|user| user.id == me.id);
            if !private && !to_bot {
                return None;
            }
            Input::Text(text.unwrap_or(NO_TEXT).to_owned())
        }
    };
    Some(Incoming::Message {
        key: key(message.chat.id, thread, from.id),
        input,
        place: Place { chat: message.chat.id, thread, reply_to: (!private).then_some(message.id) },
        hint: from.language_code.as_deref().and_then(Lang::from_hint),
        user: user_info(from, &message.chat, message.id),
    })
}

/// Reads `/name[@bot] [text]`: `Some(Ok)` for fixbot's commands, `Some(Err)`
/// for other commands, `None` for text that is no command.
fn read_command(text: &str, me: &Me) -> Option<Result<Input, ()>> {
    let (name, args) = match split_command(text, me)? {
        Some(command) => command,
        None => return Some(Err(())),
    };
    if name.eq_ignore_ascii_case("fix") {
        let args = args.trim();
        return Some(Ok(if args.is_empty() { Input::Command(Command::Start) } else { Input::Text(args.to_owned()) }));
    }
    Some(Command::parse(&format!("/{name} {args}")).map(Input::Command).ok_or(()))
}

/// `/name[@bot] rest` taken apart into the name and the rest; `Some(None)`
/// for a command addressed to another bot, `None` for text that is no
/// command.
fn split_command<'t>(text: &'t str, me: &Me) -> Option<Option<(&'t str, &'t str)>> {
    let rest = text.trim_start().strip_prefix('/')?;
    let (word, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let (name, target) = word.split_once('@').unwrap_or((word, ""));
    Some((target.is_empty() || target.eq_ignore_ascii_case(&me.username)).then_some((name, args)))
}

/// The argument of `/why` (trimmed, maybe empty), when `text` is that command for this bot.
fn read_why<'t>(text: &'t str, me: &Me) -> Option<&'t str> {
    let (name, args) = split_command(text, me)??;
    name.eq_ignore_ascii_case("why").then_some(args.trim())
}

/// The forum topic of a message, if it was sent in one.
fn topic(message: &Message) -> Option<ThreadId> {
    message.is_topic_message.then_some(message.thread_id).flatten()
}

fn key(chat: ChatId, thread: Option<ThreadId>, user: UserId) -> ConversationKey {
    let thread = thread.map(|ThreadId(MessageId(id))| id.to_string()).unwrap_or_default();
    ConversationKey::new("telegram", &chat.0.to_string(), &thread, &user.0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Me {
        Me { id: UserId(777), username: "fixbot_test_bot".into() }
    }

    #[test]
    fn commands_for_this_bot_others_and_plain_text() {
        let me = me();
        assert_eq!(
            read_command("/fix@FixBot_Test_Bot  backup failed ", &me),
            Some(Ok(Input::Text("backup failed".into())))
        );
        assert_eq!(read_command("/fix", &me), Some(Ok(Input::Command(Command::Start))));
        assert_eq!(read_command("/back@fixbot_test_bot", &me), Some(Ok(Input::Command(Command::Back))));
        assert_eq!(read_command("/human", &me), Some(Ok(Input::Command(Command::Human))));
        assert_eq!(read_command("/fix@other_bot x", &me), Some(Err(())));
        assert_eq!(read_command("/weather", &me), Some(Err(())));
        assert_eq!(read_command("my backup failed", &me), None);
    }
}
