//! Long polling without head-of-line blocking. Each conversation has a
//! worker that handles its updates in order; conversations run side by
//! side, and a slow one (waiting out a per-chat limit or a struggling
//! Telegram) holds up nobody else.
//!
//! Telegram counts an update as confirmed once getUpdates is called with a
//! higher offset, so the offset never passes an update still being handled:
//! a process that dies mid-update gets it again after a restart (and the
//! store's receipt keeps it from being applied twice). While updates are in
//! flight, polling asks from the oldest of them, skips what it already
//! handed out, and waits for a worker to finish (or a moment) between asks.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fixbot_core::case::ConversationKey;
use fixbot_core::store::Store;
use teloxide::payloads::GetUpdatesSetters as _;
use teloxide::requests::Requester as _;
use teloxide::types::{AllowedUpdate, Update};
use teloxide::{ApiError, Bot, RequestError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::incoming::{Incoming, read_update};
use crate::{Frontend, PART, POLL_MARGIN, Telegram, TelegramError, api};

/// How long polling waits for a worker to finish before asking for new
/// updates anyway, while some are in flight.
const BUSY_ASK_EVERY: Duration = Duration::from_millis(250);

/// The updates handed to workers and not yet finished.
struct Dispatch<S> {
    telegram: Arc<Telegram<S>>,
    workers: HashMap<ConversationKey, Worker>,
    tasks: JoinSet<()>,
    /// Ids handed out and not finished, oldest first.
    in_flight: BTreeSet<u32>,
    /// One past the newest id handed out.
    next: u32,
    done_tx: mpsc::UnboundedSender<(u32, ConversationKey)>,
    done_rx: mpsc::UnboundedReceiver<(u32, ConversationKey)>,
}

/// One conversation's queue.
struct Worker {
    queue: mpsc::UnboundedSender<(u32, Incoming)>,
    /// Updates queued and not finished.
    pending: usize,
}

impl<S: Store + 'static> Dispatch<S> {
    fn new(telegram: Arc<Telegram<S>>) -> Dispatch<S> {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Dispatch {
            telegram,
            workers: HashMap::new(),
            tasks: JoinSet::new(),
            in_flight: BTreeSet::new(),
            next: 0,
            done_tx,
            done_rx,
        }
    }

    /// The offset to ask from: the oldest update in flight, else the next.
    fn offset(&self) -> u32 {
        self.in_flight.first().copied().unwrap_or(self.next)
    }

    /// Hands the updates not seen before to their conversations' workers;
    /// returns how many were new.
    fn hand_out(&mut self, updates: Vec<Update>) -> usize {
        let mut fresh = 0;
        for update in updates {
            let id = update.id.0;
            if id < self.next {
                continue;
            }
            self.next = id + 1;
            fresh += 1;
            let Some(incoming) = read_update(&update, &self.telegram.me, self.telegram.staff_chat()) else {
                continue;
            };
            self.in_flight.insert(id);
            let key = incoming.key().clone();
            let worker = self.workers.entry(key.clone()).or_insert_with(|| {
                let (queue, updates) = mpsc::unbounded_channel();
                self.tasks.spawn(work(self.telegram.clone(), key, updates, self.done_tx.clone()));
                Worker { queue, pending: 0 }
            });
            worker.pending += 1;
            // The worker lives while its sender does, and the sender is
            // dropped only once the worker has finished all it was sent.
            let _ = worker.queue.send((id, incoming));
        }
        fresh
    }

    /// Takes note of a finished update; a conversation with nothing left
    /// loses its worker.
    fn finished(&mut self, (id, key): (u32, ConversationKey)) {
        self.in_flight.remove(&id);
        if let Some(worker) = self.workers.get_mut(&key) {
            worker.pending -= 1;
            if worker.pending == 0 {
                self.workers.remove(&key);
            }
        }
    }

    /// Takes note of every update finished so far.
    fn collect_finished(&mut self) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.finished(done);
        }
        // Reap the workers that ended, so their results do not pile up.
        while self.tasks.try_join_next().is_some() {}
    }

    /// Waits until an update finishes or `BUSY_ASK_EVERY` passes.
    async fn wait_for_progress(&mut self) {
        if let Ok(Some(done)) = tokio::time::timeout(BUSY_ASK_EVERY, self.done_rx.recv()).await {
            self.finished(done);
        }
    }

    /// Lets every worker finish what it was sent.
    async fn drain(&mut self) {
        self.workers.clear();
        while self.tasks.join_next().await.is_some() {}
        self.collect_finished();
    }
}

/// Handles one conversation's updates in order.
async fn work<S: Store + 'static>(
    telegram: Arc<Telegram<S>>,
    key: ConversationKey,
    mut updates: mpsc::UnboundedReceiver<(u32, Incoming)>,
    done: mpsc::UnboundedSender<(u32, ConversationKey)>,
) {
    while let Some((id, incoming)) = updates.recv().await {
        // An answer that could not be sent stays pending in the store;
        // polling has no redelivery to send it with.
        telegram.handle(id, incoming).await;
        let _ = done.send((id, key.clone()));
    }
}

impl<S: Store + 'static> Frontend<S> {
    /// Takes updates by long polling until `shutdown` completes; updates in
    /// flight are finished and their offset confirmed before it returns.
    pub async fn poll(&self, timeout: Duration, shutdown: impl Future<Output = ()>) -> Result<(), TelegramError> {
        // A long poll is held open by Telegram for `timeout`: the client of
        // the other calls would give up on it first.
        let client = teloxide::net::default_reqwest_settings().timeout(timeout + POLL_MARGIN).build()?;
        let bot = &Bot::with_client(self.telegram.bot.token(), client).set_api_url(self.telegram.bot.api_url());
        // Polling and a webhook exclude each other; a leftover webhook would
        // make every getUpdates fail with 409.
        bot.delete_webhook().await?;
        tracing::info!(bot = %self.username(), "telegram front-end polling");
        tokio::pin!(shutdown);
        let mut dispatch = Dispatch::new(self.telegram.clone());
        let mut backoff = Duration::from_millis(500);
        loop {
            dispatch.collect_finished();
            // A long poll only when nothing is in flight: from an older
            // offset Telegram answers at once, with what is in flight.
            let wait = if dispatch.in_flight.is_empty() { timeout } else { Duration::ZERO };
            let request = bot
                .get_updates()
                .offset(dispatch.offset() as i32)
                .timeout(wait.as_secs() as u32)
                .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
            let updates = tokio::select! {
                () = &mut shutdown => break,
                updates = request => updates,
            };
            match updates {
                Ok(updates) => {
                    self.telegram.health.set(PART, true, "taking updates by long polling");
                    backoff = Duration::from_millis(500);
                    if dispatch.hand_out(updates) == 0 && !dispatch.in_flight.is_empty() {
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = dispatch.wait_for_progress() => {}
                        }
                    }
                }
                Err(RequestError::RetryAfter(after)) => tokio::time::sleep(after.duration()).await,
                Err(error) => {
                    self.poll_failed(&error);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        // Finish what was handed out, then confirm it all, so a restart
        // does not fetch handled updates again (receipts would skip them,
        // but there is no need).
        dispatch.drain().await;
        let _ = bot.get_updates().offset(dispatch.offset() as i32).timeout(0).limit(1).await;
        Ok(())
    }

    /// Reports a failed getUpdates in the log, the health and the metrics.
    fn poll_failed(&self, error: &RequestError) {
        api::count_error(error);
        let health = &self.telegram.health;
        if matches!(error, RequestError::Api(ApiError::TerminatedByOtherGetUpdates | ApiError::CantGetUpdates)) {
            // Telegram allows one poller per bot: another instance (or a
            // webhook) holds it. Keep asking, so this one takes over when the
            // other stops, and say so loudly.
            health.set(PART, false, "another instance or a webhook is taking the updates");
            tracing::error!(
                %error,
                "telegram refuses polling: another instance polls with this token or a webhook is set; use one \
                 poller, or the webhook for several instances"
            );
        } else {
            health.set(PART, false, format!("getUpdates failing: {}", api::kind(error).replace('_', " ")));
            tracing::warn!(%error, "telegram getUpdates failed; retrying");
        }
    }
}
