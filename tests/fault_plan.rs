//! Random platform faults for the fakes: a seeded plan decides, call by call,
//! whether the call fails and how, so a faulty run is the same every time it
//! is played and its figures can be compared.

// The benchmarks include the fakes, and with them this file, using less of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// A way a platform call fails. Every one of them fails before the platform
/// carries the call out: Telegram and Discord offer no way to tell a call
/// that was carried out but whose answer was lost from one that was not, so
/// no client can make those exactly-once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// 429 with a retry-after.
    RateLimited,
    /// 500 or 502.
    Server,
    /// No answer until the client gives up.
    Timeout,
    /// A 200 whose body is not the API's JSON, as a broken proxy answers.
    Garbage,
}

/// Which calls fail, and how.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Calls that fail, per thousand.
    per_mille: u64,
    /// The kinds drawn from, with their weights.
    kinds: Vec<(Fault, u64)>,
    state: u64,
    /// Faults injected so far, by kind.
    pub injected: BTreeMap<Fault, usize>,
    /// Calls seen so far.
    pub calls: usize,
}

impl FaultPlan {
    /// Fails `per_mille` calls in a thousand with `kinds` (weighted), drawn
    /// from `seed`.
    pub fn new(per_mille: u64, kinds: &[(Fault, u64)], seed: u64) -> FaultPlan {
        FaultPlan { per_mille, kinds: kinds.to_vec(), state: seed | 1, injected: BTreeMap::new(), calls: 0 }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: small, fast and good enough to spread faults.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Whether the next call fails, and how; `allowed` says which kinds this
    /// call may get (a long poll cannot time out, say).
    pub fn draw(&mut self, allowed: impl Fn(Fault) -> bool) -> Option<Fault> {
        self.calls += 1;
        if self.next() % 1000 >= self.per_mille {
            return None;
        }
        let kinds: Vec<(Fault, u64)> = self.kinds.iter().copied().filter(|(fault, _)| allowed(*fault)).collect();
        let total: u64 = kinds.iter().map(|(_, weight)| weight).sum();
        if total == 0 {
            return None;
        }
        let mut pick = self.next() % total;
        let fault = kinds.iter().find(|(_, weight)| {
            let hit = pick < *weight;
            pick = pick.saturating_sub(*weight);
            hit
        })?;
        *self.injected.entry(fault.0).or_default() += 1;
        Some(fault.0)
    }

    /// Faults injected so far, in all.
    pub fn total(&self) -> usize {
        self.injected.values().sum()
    }
}
