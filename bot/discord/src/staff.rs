//! Discord's side of hand-overs: the staff channel as a staff desk, a thread
//! per case started from its packet message, and the line that reaches
//! Discord users with a staff member's answer. Everything is escaped
//! markdown with empty `allowed_mentions`, as every other message.

use std::sync::{Arc, Weak};

use fixbot_core::case::{ConversationKey, StaffThread};
use fixbot_core::desk::{BoxFuture, DeskError, StaffDesk, UserLine};
use fixbot_core::engine::Transition;
use fixbot_core::handover::{DeskNote, Packet};
use fixbot_core::markup::Markup;
use fixbot_core::store::Store;
use serenity::all::{
    AutoArchiveDuration, ChannelId, ChannelType, CreateAllowedMentions, CreateMessage, CreateThread, Http, Message,
};

use crate::{Handler, PART, Reach, split, to_markdown};

/// The staff channel as a desk.
pub(crate) struct DiscordDesk<S> {
    pub handler: Weak<Handler<S>>,
    pub http: Arc<Http>,
    pub channel: ChannelId,
}

/// Reaches Discord users for the staff desk.
pub(crate) struct DiscordLine<S> {
    pub handler: Weak<Handler<S>>,
    pub http: Arc<Http>,
}

fn failed(error: impl std::fmt::Display) -> DeskError {
    DeskError::new(PART, error)
}

impl<S: Store + 'static> DiscordDesk<S> {
    fn handler(&self) -> Result<Arc<Handler<S>>, DeskError> {
        self.handler.upgrade().ok_or_else(|| failed("the front-end has stopped"))
    }

    /// Posts the packet in the staff channel and starts the case's thread
    /// from it; a packet too long for one message goes on in the thread.
    async fn open_case(&self, packet: &Packet) -> Result<StaffThread, DeskError> {
        let handler = self.handler()?;
        let parts = split(&packet.body);
        let (first, rest) = parts.split_first().ok_or_else(|| failed("an empty packet"))?;
        let posted = post(&handler, &self.http, self.channel, first).await?;
        let builder = CreateThread::new(packet.topic.clone())
            .kind(ChannelType::PublicThread)
            .auto_archive_duration(AutoArchiveDuration::OneWeek);
        let thread = handler
            .retry(|| self.channel.create_thread_from_message(&*self.http, posted.id, builder.clone()))
            .await
            .map_err(failed)?;
        handler.parents.lock().await.insert(thread.id, Some(self.channel));
        for part in rest {
            post(&handler, &self.http, thread.id, part).await?;
        }
        Ok(StaffThread { desk: PART.to_owned(), id: format!("discord:{}", thread.id), place: thread.id.to_string() })
    }

    async fn post_note(&self, thread: &StaffThread, note: &DeskNote) -> Result<(), DeskError> {
        let handler = self.handler()?;
        let channel = thread
            .place
            .parse::<u64>()
            .ok()
            .filter(|id| *id != 0)
            .map(ChannelId::new)
            .ok_or_else(|| failed(format!("unreadable place `{}`", thread.place)))?;
        for part in split(&note.body) {
            post(&handler, &self.http, channel, &part).await?;
        }
        Ok(())
    }
}

/// Posts one message of staff-side text, escaped and pinging no one.
async fn post<S: Store + 'static>(
    handler: &Handler<S>,
    http: &Http,
    channel: ChannelId,
    body: &Markup,
) -> Result<Message, DeskError> {
    let message = CreateMessage::new().content(to_markdown(body)).allowed_mentions(CreateAllowedMentions::new());
    let sent = handler.retry(|| channel.send_message(http, message.clone())).await.map_err(failed)?;
    fixbot_core::metrics::metrics().messages_sent.with_label_values(&[PART]).inc();
    Ok(sent)
}

impl<S: Store + 'static> StaffDesk for DiscordDesk<S> {
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

impl<S: Store + 'static> UserLine for DiscordLine<S> {
    fn deliver<'a>(&'a self, key: &'a ConversationKey, transition: &'a Transition) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let channel = key.chat.parse::<u64>().ok().filter(|id| *id != 0).map(ChannelId::new);
            let (Some(handler), Some(channel)) = (self.handler.upgrade(), channel) else { return false };
            handler.deliver(&self.http, key, transition, Reach::Channel { channel, reply_to: None }).await
        })
    }
}
