//! Telegram's side of webhook mode, with a load balancer in front of several
//! bot instances: while a webhook is set, queued updates are POSTed to the
//! instances instead of waiting for getUpdates.
//!
//! As Telegram does, up to the webhook's `max_connections` deliveries are in
//! flight at once, a chat's updates one after the other and chats side by
//! side, and an update counts as delivered only when an instance answered 2xx; a refused or reset connection, a timeout or any
//! other status is retried after a pause. As a load balancer does, deliveries
//! go round robin, and an instance that failed is passed over for a while.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{FakeTelegram, Shared};

/// The header Telegram sends the webhook's secret token in.
const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";
/// How long an instance that failed is passed over.
const PASS_OVER: Duration = Duration::from_secs(2);
/// The pause before a failed delivery is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Telegram gives up waiting for a webhook answer after about a minute.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// What the deliveries came to so far.
#[derive(Clone, Debug, Default)]
pub struct DeliveryStats {
    /// POSTs made, per instance.
    pub attempts: Vec<usize>,
    /// POSTs answered 2xx, per instance.
    pub delivered: Vec<usize>,
    /// POSTs that failed: refused or reset connections, timeouts, other statuses.
    pub failed: usize,
}

impl DeliveryStats {
    /// Updates delivered, each counted once.
    pub fn total_delivered(&self) -> usize {
        self.delivered.iter().sum()
    }
}

/// Deliveries running in the background; dropping it stops them.
pub struct WebhookDelivery {
    stats: Arc<Mutex<DeliveryStats>>,
    task: JoinHandle<()>,
}

impl WebhookDelivery {
    /// A snapshot of the counts.
    pub fn stats(&self) -> DeliveryStats {
        self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Drop for WebhookDelivery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Round robin over the instances, passing over those that failed lately.
struct Balancer {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Balancer {
    fn pick(&self) -> usize {
        let count = self.backends.len();
        let down = self.down_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&index| down[index].is_none_or(|until| until <= now))
            // All failed lately: try them anyway, as a balancer with no healthy backend does.
            .unwrap_or(start % count)
    }

    fn mark_down(&self, index: usize) {
        self.down_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner())[index] =
            Some(Instant::now() + PASS_OVER);
    }
}

impl FakeTelegram {
    /// Starts delivering updates by webhook to `backends` with `secret`, as
    /// Telegram does while a webhook is set (see the module docs).
    pub fn deliver_by_webhook(&self, backends: Vec<SocketAddr>, secret: &str) -> WebhookDelivery {
        assert!(!backends.is_empty(), "a webhook needs somewhere to deliver to");
        let stats = Arc::new(Mutex::new(DeliveryStats {
            attempts: vec![0; backends.len()],
            delivered: vec![0; backends.len()],
            failed: 0,
        }));
        let balancer = Arc::new(Balancer {
            down_until: Mutex::new(vec![None; backends.len()]),
            backends,
            next: AtomicUsize::new(0),
        });
        let client = teloxide::net::default_reqwest_settings()
            .no_proxy()
            .timeout(ANSWER_TIMEOUT)
            .build()
            .expect("a reqwest client");
        let task =
            tokio::spawn(deliver_queued(self.shared.clone(), balancer, client, secret.to_owned(), stats.clone()));
        WebhookDelivery { stats, task }
    }
}

/// The updates of one chat waiting for the one in flight, by chat: a chat
/// is in the map while one of its updates is being delivered.
type Lines = Arc<Mutex<HashMap<i64, VecDeque<(i64, String)>>>>;

/// Takes updates off the queue as they come and delivers them, each chat's
/// in order: as Telegram does, the next update of a chat goes out only once
/// the bot answered the one before, while chats go side by side.
async fn deliver_queued(
    shared: Arc<Shared>,
    balancer: Arc<Balancer>,
    client: reqwest::Client,
    secret: String,
    stats: Arc<Mutex<DeliveryStats>>,
) {
    // Sized by the webhook's max_connections when the first update goes out.
    let mut connections: Option<Arc<Semaphore>> = None;
    let lines: Lines = Arc::default();
    loop {
        let notified = shared.wake.notified();
        tokio::pin!(notified);
        // Registered before looking, so a push between the look and the wait is not missed.
        notified.as_mut().enable();
        let batch: Vec<_> = {
            let mut inner = shared.lock();
            if inner.webhook.is_some() {
                connections.get_or_insert_with(|| Arc::new(Semaphore::new(inner.webhook_connections)));
                inner.queue.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        if batch.is_empty() {
            // setWebhook does not wake anyone, so look again now and then.
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            continue;
        }
        let connections = connections.as_ref().expect("sized when the batch was taken");
        for (id, update) in batch {
            let chat = chat_of(&update);
            if let Some(chat) = chat {
                let mut waiting = lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some(line) = waiting.get_mut(&chat) {
                    line.push_back((id, update.to_string()));
                    continue;
                }
                waiting.insert(chat, VecDeque::new());
            }
            let line = Line {
                shared: shared.clone(),
                balancer: balancer.clone(),
                client: client.clone(),
                secret: secret.clone(),
                stats: stats.clone(),
                connections: connections.clone(),
                lines: lines.clone(),
            };
            tokio::spawn(line.run(chat, id, update.to_string()));
        }
    }
}

/// The chat an update belongs to, when it has one.
fn chat_of(update: &serde_json::Value) -> Option<i64> {
    let message = update.get("message").or_else(|| update.get("callback_query").and_then(|query| query.get("message")));
    message?.get("chat")?.get("id")?.as_i64()
}

/// Delivers one update and then the chat's updates that queued behind it.
struct Line {
    shared: Arc<Shared>,
    balancer: Arc<Balancer>,
    client: reqwest::Client,
    secret: String,
    stats: Arc<Mutex<DeliveryStats>>,
    connections: Arc<Semaphore>,
    lines: Lines,
}

impl Line {
    async fn run(self, chat: Option<i64>, mut id: i64, mut body: String) {
        loop {
            let permit = self.connections.clone().acquire_owned().await.expect("the semaphore is never closed");
            deliver(&self.balancer, &self.client, &self.secret, &self.stats, &body).await;
            drop(permit);
            self.shared.lock().acknowledged.insert(id);
            let Some(chat) = chat else { return };
            let mut waiting = self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match waiting.get_mut(&chat).and_then(VecDeque::pop_front) {
                Some(next) => (id, body) = next,
                None => {
                    waiting.remove(&chat);
                    return;
                }
            }
        }
    }
}

/// POSTs one update until an instance answers 2xx.
async fn deliver(
    balancer: &Balancer,
    client: &reqwest::Client,
    secret: &str,
    stats: &Mutex<DeliveryStats>,
    body: &str,
) {
    let count = |update: &dyn Fn(&mut DeliveryStats)| update(&mut stats.lock().unwrap_or_else(|p| p.into_inner()));
    loop {
        let index = balancer.pick();
        count(&|stats| stats.attempts[index] += 1);
        let url = format!("http://{}{}", balancer.backends[index], fixbot_telegram::WEBHOOK_PATH);
        let answer = client
            .post(url)
            .header(SECRET_HEADER, secret)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            count(&|stats| stats.delivered[index] += 1);
            return;
        }
        count(&|stats| stats.failed += 1);
        balancer.mark_down(index);
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}
