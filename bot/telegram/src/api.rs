//! Calls to the Bot API that Throttle does not cover. teloxide's Throttle
//! paces and retries sends; edits and callback answers go through `Pacer`,
//! which keeps them under Telegram's global and per-chat limits and waits out
//! a 429's `retry_after`.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;

use teloxide::RequestError;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Telegram allows about one call a second per chat.
const CHAT_GAP: Duration = Duration::from_secs(1);
/// Attempts before a call that keeps getting 429 is given up.
const ATTEMPTS: usize = 5;

/// Hands out call slots that respect the global and per-chat limits.
#[derive(Debug)]
pub struct Pacer {
    /// Time between two calls in all: a second over the global rate.
    global_gap: Duration,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    global: Option<Instant>,
    chats: HashMap<i64, Instant>,
}

impl Pacer {
    /// A pacer allowing `per_second` calls a second in all (at least one).
    pub fn new(per_second: u32) -> Pacer {
        Pacer { global_gap: Duration::from_secs(1) / per_second.max(1), slots: Mutex::default() }
    }

    /// Waits for the next free slot for `chat` (or only the global one).
    async fn wait(&self, chat: Option<i64>) {
        let slot = {
            let mut slots = self.slots.lock().await;
            let now = Instant::now();
            let mut slot = slots.global.map_or(now, |next| next.max(now));
            if let Some(chat) = chat {
                slot = slots.chats.get(&chat).map_or(slot, |next| (*next).max(slot));
                slots.chats.insert(chat, slot + CHAT_GAP);
                if slots.chats.len() > 4096 {
                    slots.chats.retain(|_, next| *next > now);
                }
            }
            slots.global = Some(slot + self.global_gap);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Makes the call built by `request` in a free slot, retrying after a
    /// 429 for as long as Telegram asks (up to a few times).
    pub async fn call<T, R>(&self, chat: Option<i64>, request: impl Fn() -> R) -> Result<T, RequestError>
    where
        R: IntoFuture<Output = Result<T, RequestError>>,
    {
        let mut attempt = 1;
        loop {
            self.wait(chat).await;
            match request().into_future().await {
                Err(RequestError::RetryAfter(after)) if attempt < ATTEMPTS => {
                    attempt += 1;
                    crate::count_error(&RequestError::RetryAfter(after));
                    fixbot_core::metrics::metrics().api_retries.with_label_values(&[crate::PART]).inc();
                    tracing::warn!(retry_after = ?after.duration(), "telegram asked to slow down");
                    tokio::time::sleep(after.duration()).await;
                }
                result => return result,
            }
        }
    }
}
