//! Counts the events being handled, so a stop can wait for them: serenity
//! runs each event in a task of its own, which closing the gateway does not
//! wait for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The number of events in flight, and a wake-up when it drops to zero.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One event in flight; dropping it ends it.
pub struct Handling(Arc<InFlight>);

impl InFlight {
    /// Marks one more event in flight until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> Handling {
        self.count.fetch_add(1, Ordering::SeqCst);
        Handling(self.clone())
    }

    /// Completes once no event is in flight.
    pub async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            // Registered before looking, so a drop in between is not missed.
            idle.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_event() {
        let in_flight = Arc::new(InFlight::default());
        in_flight.idle().await;
        let (first, second) = (in_flight.enter(), in_flight.enter());
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one event is still in flight");
        drop(second);
        waiter.await.unwrap();
    }
}
