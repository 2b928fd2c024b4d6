//! Whether each part of a running fixbot works, as readiness probes ask it:
//! front-ends say when they connect and when they lose their platform, and
//! the server reports the whole on `/readyz`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The state of one part (a front-end, the flows).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartState {
    /// Whether the part does its work now.
    pub ready: bool,
    /// What it is doing or why it is not ready, in a few words.
    pub detail: String,
}

/// Shared, cheaply cloned record of every part's state. A part that never
/// reported is not listed, so a front-end that is not configured does not
/// hold readiness back.
#[derive(Debug, Clone, Default)]
pub struct Health {
    parts: Arc<Mutex<BTreeMap<String, PartState>>>,
}

impl Health {
    /// A record with no parts yet.
    pub fn new() -> Health {
        Health::default()
    }

    /// Sets the state of `part`.
    pub fn set(&self, part: &str, ready: bool, detail: impl Into<String>) {
        let state = PartState { ready, detail: detail.into() };
        self.lock().insert(part.to_owned(), state);
    }

    /// Every part and its state, by name.
    pub fn parts(&self) -> BTreeMap<String, PartState> {
        self.lock().clone()
    }

    /// Whether every part that reported is ready.
    pub fn ready(&self) -> bool {
        self.lock().values().all(|state| state.ready)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PartState>> {
        // The map stays consistent whatever panicked while holding it.
        self.parts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_every_reported_part_is() {
        let health = Health::new();
        assert!(health.ready(), "nothing reported holds nothing back");
        let shared = health.clone();
        shared.set("telegram", false, "connecting");
        assert!(!health.ready());
        shared.set("telegram", true, "polling");
        shared.set("discord", true, "connected");
        assert!(health.ready());
        assert_eq!(health.parts()["telegram"].detail, "polling");
    }
}
