//! Per-person rate limiting: someone flooding the bot gets one polite notice,
//! then silence until they may write again; everyone else is not slowed. A
//! GCRA limiter (governor) per (platform, user) allows a burst and then a
//! steady rate.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference as _};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

/// How fast one person may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages that may come at once.
    pub burst: NonZeroU32,
    /// Messages a minute after the burst.
    pub per_minute: NonZeroU32,
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Handle it.
    Pass,
    /// Drop it, and tell the person once to slow down.
    Notice,
    /// Drop it silently: they were told already.
    Silent,
}

type Person = (String, String);

/// The limiter and whom it has warned.
pub struct Flood<C: Clock = DefaultClock> {
    limiter: RateLimiter<Person, HashMapStateStore<Person>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// People warned during their current flood, and when.
    warned: Mutex<HashMap<Person, C::Instant>>,
}

impl<C: Clock> std::fmt::Debug for Flood<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flood").finish_non_exhaustive()
    }
}

impl Flood {
    /// A limiter allowing each person `limit`.
    pub fn new(limit: RateLimit) -> Flood {
        Flood::with_clock(limit, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Flood<C> {
    /// A limiter on `clock`, which tests move by hand.
    pub fn with_clock(limit: RateLimit, clock: C) -> Flood<C> {
        let quota = Quota::per_minute(limit.per_minute).allow_burst(limit.burst);
        let limiter = RateLimiter::new(quota, HashMapStateStore::default(), clock.clone());
        Flood { limiter, clock, warned: Mutex::new(HashMap::new()) }
    }

    /// Whether one more message of `user` on `platform` is handled now.
    pub fn check(&self, platform: &str, user: &str) -> Allowance {
        let person = (platform.to_owned(), user.to_owned());
        let passed = self.limiter.check_key(&person).is_ok();
        let mut warned = self.warned.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if passed {
            warned.remove(&person);
            return Allowance::Pass;
        }
        match warned.insert(person, self.clock.now()) {
            None => Allowance::Notice,
            Some(_) => Allowance::Silent,
        }
    }

    /// Forgets people who have been quiet for `quiet`: their limiter state
    /// and their warning. Keeps memory bounded by the people active lately.
    pub fn forget_quiet(&self, quiet: Duration) {
        self.limiter.retain_recent();
        let now = self.clock.now();
        let mut warned = self.warned.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        warned.retain(|_, at| Duration::from(now.duration_since(*at)) < quiet);
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limit(burst: u32, per_minute: u32) -> RateLimit {
        RateLimit { burst: NonZeroU32::new(burst).unwrap(), per_minute: NonZeroU32::new(per_minute).unwrap() }
    }

    #[test]
    fn a_flood_gets_one_notice_then_silence_until_the_window_passes() {
        let clock = FakeRelativeClock::default();
        let flood = Flood::with_clock(limit(3, 6), clock.clone());
        let ann: Vec<Allowance> = (0..6).map(|_| flood.check("telegram", "ann")).collect();
        use Allowance::{Notice, Pass, Silent};
        assert_eq!(ann, [Pass, Pass, Pass, Notice, Silent, Silent]);
        assert_eq!(flood.check("telegram", "bob"), Pass, "others are not slowed");
        assert_eq!(flood.check("discord", "ann"), Pass, "another platform's ann is another person");
        // Six a minute: one more message after ten seconds.
        clock.advance(Duration::from_secs(10));
        assert_eq!(flood.check("telegram", "ann"), Pass);
        assert_eq!(flood.check("telegram", "ann"), Notice, "a new flood is told again");
        clock.advance(Duration::from_secs(3600));
        flood.forget_quiet(Duration::from_secs(600));
        assert!(flood.warned.lock().unwrap().is_empty());
    }
}
