//! Telegram's side of hand-overs: the staff group as a staff desk, and the
//! line that reaches Telegram users with a staff member's answer. In a
//! forum group each case gets a topic (`createForumTopic`) and everything
//! about it is posted there; in a group without topics the packet is posted
//! in the group and the bot's messages about the case reply to it, each
//! naming the case (`#3f9a1c02`), so a staff reply to any of them finds it.

use std::sync::{Arc, Weak};

use fixbot_core::case::{ConversationKey, StaffThread};
use fixbot_core::desk::{BoxFuture, DeskError, StaffDesk, UserLine};
use fixbot_core::engine::Transition;
use fixbot_core::handover::{DeskNote, Packet};
use fixbot_core::markup::Markup;
use fixbot_core::store::Store;
use teloxide::requests::Requester as _;
use teloxide::types::{ChatFullInfoKind, ChatFullInfoPublicKind, ChatId, MessageId, ThreadId};
use teloxide::{Bot, RequestError};

use crate::{PART, Place, Telegram, split};

/// The configured staff chat, as Telegram describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StaffChat {
    /// The group.
    pub chat: ChatId,
    /// Whether it has topics: then a case is a topic of its own.
    pub forum: bool,
}

/// Asks Telegram what the staff chat is, to know whether it has topics.
pub(crate) async fn find_staff_chat(bot: &Bot, chat: i64) -> Result<StaffChat, RequestError> {
    let info = bot.get_chat(ChatId(chat)).await?;
    let forum = match &info.kind {
        ChatFullInfoKind::Public(public) => {
            matches!(&public.kind, ChatFullInfoPublicKind::Supergroup(group) if group.is_forum)
        }
        ChatFullInfoKind::Private(_) => false,
    };
    Ok(StaffChat { chat: ChatId(chat), forum })
}

/// The staff group as a desk.
pub(crate) struct TelegramDesk<S> {
    pub telegram: Weak<Telegram<S>>,
    pub staff: StaffChat,
}

/// Reaches Telegram users for the staff desk.
pub(crate) struct TelegramLine<S> {
    pub telegram: Weak<Telegram<S>>,
}

fn failed(error: impl std::fmt::Display) -> DeskError {
    DeskError::new(PART, error)
}

impl<S: Store + 'static> TelegramDesk<S> {
    fn telegram(&self) -> Result<Arc<Telegram<S>>, DeskError> {
        self.telegram.upgrade().ok_or_else(|| failed("the front-end has stopped"))
    }

    async fn open_case(&self, packet: &Packet) -> Result<StaffThread, DeskError> {
        let telegram = self.telegram()?;
        let chat = self.staff.chat;
        if self.staff.forum {
            let topic = telegram
                .pacer
                .call(Some(chat.0), || telegram.bot.create_forum_topic(chat, packet.topic.clone()))
                .await
                .map_err(failed)?;
            let ThreadId(MessageId(id)) = topic.thread_id;
            let place = Place { chat, thread: Some(topic.thread_id), reply_to: None };
            send_all(&telegram, place, &packet.body).await?;
            return Ok(StaffThread {
                desk: PART.to_owned(),
                id: format!("telegram:{}:{id}", chat.0),
                place: format!("{}:{id}", chat.0),
            });
        }
        let place = Place { chat, thread: None, reply_to: None };
        let first = send_all(&telegram, place, &packet.body).await?;
        Ok(StaffThread {
            desk: PART.to_owned(),
            id: format!("telegram:{}:#{}", chat.0, packet.reference),
            place: format!("{}:r{}", chat.0, first.0),
        })
    }

    async fn post_note(&self, thread: &StaffThread, note: &DeskNote) -> Result<(), DeskError> {
        let telegram = self.telegram()?;
        let place = read_place(&thread.place).ok_or_else(|| failed(format!("unreadable place `{}`", thread.place)))?;
        send_all(&telegram, place, &note.body).await.map(drop)
    }
}

/// A desk place: `chat:topic` in a forum, `chat:r<message>` for a reply chain.
fn read_place(place: &str) -> Option<Place> {
    let (chat, rest) = place.split_once(':')?;
    let chat = ChatId(chat.parse().ok()?);
    match rest.strip_prefix('r') {
        Some(message) => Some(Place { chat, thread: None, reply_to: Some(MessageId(message.parse().ok()?)) }),
        None => Some(Place { chat, thread: Some(ThreadId(MessageId(rest.parse().ok()?))), reply_to: None }),
    }
}

/// Sends `body` in as many messages as it takes; returns the first's id.
async fn send_all<S: Store + 'static>(
    telegram: &Telegram<S>,
    place: Place,
    body: &Markup,
) -> Result<MessageId, DeskError> {
    let mut first = None;
    for part in split(body) {
        let sent = telegram.send(place, &part, None).await.map_err(failed)?;
        first.get_or_insert(sent);
    }
    first.ok_or_else(|| failed("nothing to post"))
}

impl<S: Store + 'static> StaffDesk for TelegramDesk<S> {
    fn name(&self) -> &str {
        PART
    }

    fn open<'a>(&'a self, packet: &'a Packet, _relay: bool) -> BoxFuture<'a, Result<StaffThread, DeskError>> {
        Box::pin(self.open_case(packet))
    }

    fn post<'a>(&'a self, thread: &'a StaffThread, note: &'a DeskNote) -> BoxFuture<'a, Result<(), DeskError>> {
        Box::pin(self.post_note(thread, note))
    }
}

impl<S: Store + 'static> UserLine for TelegramLine<S> {
    fn deliver<'a>(&'a self, key: &'a ConversationKey, transition: &'a Transition) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let (Some(telegram), Ok(chat)) = (self.telegram.upgrade(), key.chat.parse::<i64>()) else {
                return false;
            };
            let thread = key.thread.parse::<i32>().ok().map(|id| ThreadId(MessageId(id)));
            let place = Place { chat: ChatId(chat), thread, reply_to: None };
            telegram.deliver(key, place, transition, None).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_name_a_topic_or_a_message_to_reply_to() {
        let topic = read_place("-1001:42").unwrap();
        assert_eq!((topic.chat, topic.thread, topic.reply_to), (ChatId(-1001), Some(ThreadId(MessageId(42))), None));
        let chain = read_place("-1001:r7").unwrap();
        assert_eq!((chain.chat, chain.thread, chain.reply_to), (ChatId(-1001), None, Some(MessageId(7))));
        assert!(read_place("nonsense").is_none());
    }
}
