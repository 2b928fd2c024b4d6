//! How fixbot calls the Bot API when things go wrong. Every call goes
//! through [`retry`]: a 429 is waited out for as long as Telegram asks, and a
//! failure that may pass (the network, Telegram's 5xx, a timeout) is tried
//! again after a growing pause, a few times at most. Every call also waits
//! for a slot from [`Pacer`], which keeps fixbot under Telegram's limits: in
//! all, per chat, and per group. (teloxide's Throttle would do the pacing,
//! but its worker wakes four times a second, adding up to 250 ms to every
//! answer.)

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;

use fixbot_core::metrics::metrics;
use teloxide::RequestError;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Telegram allows about one message a second per chat…
const CHAT_GAP: Duration = Duration::from_secs(1);
/// …and 20 a minute in a group.
const GROUP_WINDOW: Duration = Duration::from_secs(60);
const GROUP_PER_WINDOW: usize = 20;
/// Attempts of one call before it is given up.
const ATTEMPTS: usize = 5;
/// The first pause after a failure that may pass; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// What kind of failure `error` is, as the metrics name it.
pub(crate) fn kind(error: &RequestError) -> &'static str {
    match error {
        RequestError::RetryAfter(_) => "rate_limited",
        // teloxide keeps no status code; a 5xx arrives as an unknown error
        // with the HTTP reason as its description.
        RequestError::Api(teloxide::ApiError::Unknown(description))
            if ["Internal Server Error", "Bad Gateway", "Service Unavailable", "Gateway Timeout"]
                .iter()
                .any(|reason| description.starts_with(reason)) =>
        {
            "server"
        }
        RequestError::Api(_) | RequestError::MigrateToChatId(_) => "refused",
        RequestError::Network(_) | RequestError::Io(_) => "network",
        RequestError::InvalidJson { .. } => "server",
    }
}

/// Whether a failed call may succeed when made again later: the network or
/// Telegram itself failed, rather than Telegram refusing the request (a
/// blocked bot, a deleted chat), which no retry would change.
pub(crate) fn is_transient(error: &RequestError) -> bool {
    kind(error) != "refused"
}

/// Counts a failed call in the metrics.
pub(crate) fn count_error(error: &RequestError) {
    metrics().api_errors.with_label_values(&[crate::PART, kind(error)]).inc();
}

/// Makes the call `request` builds until it succeeds, is refused, or the
/// attempts run out; `before` runs before every attempt (to wait for a slot).
/// A call retried after a network failure may have reached Telegram the
/// first time; Telegram offers no way to tell, so a rare duplicate is the
/// price of not losing the call.
pub(crate) async fn retry<T, R, W>(before: impl Fn() -> W, request: impl Fn() -> R) -> Result<T, RequestError>
where
    R: IntoFuture<Output = Result<T, RequestError>>,
    W: Future<Output = ()>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        before().await;
        let error = match request().into_future().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        count_error(&error);
        if attempt >= ATTEMPTS || !is_transient(&error) {
            return Err(error);
        }
        attempt += 1;
        metrics().api_retries.with_label_values(&[crate::PART]).inc();
        let pause = match &error {
            RequestError::RetryAfter(after) => after.duration(),
            _ => {
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tracing::debug!(%error, ?pause, attempt, "telegram call failed; trying again");
        tokio::time::sleep(pause).await;
    }
}

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
    /// Per chat: the earliest next slot, and in groups the slots of the
    /// last minute.
    chats: HashMap<i64, Chat>,
}

#[derive(Debug, Default)]
struct Chat {
    next: Option<Instant>,
    recent: std::collections::VecDeque<Instant>,
}

impl Pacer {
    /// A pacer allowing `per_second` calls a second in all (at least one).
    pub fn new(per_second: u32) -> Pacer {
        Pacer { global_gap: Duration::from_secs(1) / per_second.max(1), slots: Mutex::default() }
    }

    /// Waits for the next free slot for `chat` (or only the global one).
    /// Groups and supergroups (negative ids) also get at most 20 a minute.
    async fn wait(&self, chat: Option<i64>) {
        let slot = {
            let mut slots = self.slots.lock().await;
            let now = Instant::now();
            let mut slot = slots.global.map_or(now, |next| next.max(now));
            if let Some(id) = chat {
                let chat = slots.chats.entry(id).or_default();
                slot = chat.next.map_or(slot, |next| next.max(slot));
                if id < 0 {
                    while chat.recent.front().is_some_and(|at| *at + GROUP_WINDOW <= slot) {
                        chat.recent.pop_front();
                    }
                    if chat.recent.len() >= GROUP_PER_WINDOW
                        && let Some(oldest) = chat.recent.front()
                    {
                        slot = slot.max(*oldest + GROUP_WINDOW);
                        chat.recent.pop_front();
                    }
                    chat.recent.push_back(slot);
                }
                chat.next = Some(slot + CHAT_GAP);
                if slots.chats.len() > 4096 {
                    slots.chats.retain(|_, chat| chat.next.is_some_and(|next| next > now) || !chat.recent.is_empty());
                }
            }
            slots.global = Some(slot + self.global_gap);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Makes the call built by `request`, each attempt in a free slot.
    pub async fn call<T, R>(&self, chat: Option<i64>, request: impl Fn() -> R) -> Result<T, RequestError>
    where
        R: IntoFuture<Output = Result<T, RequestError>>,
    {
        retry(|| self.wait(chat), request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_keep_each_limit() {
        let pacer = Pacer::new(30);
        let start = Instant::now();
        let mut slots = Vec::new();
        for _ in 0..3 {
            pacer.wait(Some(7)).await;
            slots.push(start.elapsed());
        }
        assert_eq!(slots, [Duration::ZERO, CHAT_GAP, CHAT_GAP * 2], "one a second in a chat");
        // Another chat only waits for the global gap.
        let before = Instant::now();
        pacer.wait(Some(8)).await;
        assert!(before.elapsed() <= Duration::from_millis(34));
        // A group gets 20 in the first minute, then waits for the window.
        let group = Pacer::new(1000);
        let start = Instant::now();
        for _ in 0..GROUP_PER_WINDOW {
            group.wait(Some(-100)).await;
        }
        assert!(start.elapsed() < GROUP_WINDOW);
        group.wait(Some(-100)).await;
        assert!(start.elapsed() >= GROUP_WINDOW, "the 21st message waits for the minute: {:?}", start.elapsed());
    }
}
