//! Shard ranges: the part of the bot's gateway traffic one process takes when
//! several processes split it.

use std::fmt;

/// Shards `first` to `last` (inclusive) of `total`. Discord sends a guild's
/// events to shard `(guild_id >> 22) % total` and DMs to shard 0, so every
/// process must use the same total, and the ranges together must cover
/// `0..total` once.
///
/// Only [`ShardRange::new`] makes one, so `first <= last < total` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRange {
    first: u32,
    last: u32,
    total: u32,
}

/// Why a shard range is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardRangeError {
    /// The text is not written `FIRST-LAST/TOTAL` or `ID/TOTAL`.
    #[error("not a shard range; write FIRST-LAST/TOTAL like 0-1/4, or ID/TOTAL like 2/4")]
    Syntax,
    /// The total is 0.
    #[error("the shard total must be at least 1")]
    NoShards,
    /// A shard number is not below the total.
    #[error("there is no shard {shard} among {total} (shards are numbered 0 to {max})", max = .total.saturating_sub(1))]
    NoSuchShard {
        /// The shard asked for.
        shard: u32,
        /// The total.
        total: u32,
    },
    /// The first shard comes after the last.
    #[error("the range {first}-{last} runs backwards")]
    Backwards {
        /// The first shard asked for.
        first: u32,
        /// The last shard asked for.
        last: u32,
    },
}

impl ShardRange {
    /// Shards `first` to `last` of `total`; refused unless `first <= last < total`.
    pub fn new(first: u32, last: u32, total: u32) -> Result<ShardRange, ShardRangeError> {
        if total == 0 {
            return Err(ShardRangeError::NoShards);
        }
        if first > last {
            return Err(ShardRangeError::Backwards { first, last });
        }
        if last >= total {
            return Err(ShardRangeError::NoSuchShard { shard: last, total });
        }
        Ok(ShardRange { first, last, total })
    }

    /// The first shard this process runs.
    pub fn first(self) -> u32 {
        self.first
    }

    /// The last shard this process runs (inclusive).
    pub fn last(self) -> u32 {
        self.last
    }

    /// How many shards all processes together run.
    pub fn total(self) -> u32 {
        self.total
    }

    /// The range serenity 0.12's `Client::start_shard_range` takes to run
    /// these shards: `first..last`. It boots `end - start + 1` shards, so the
    /// end is the last shard, not one past it. `first..last + 1` would run a
    /// shard too many, and only five seconds after the others (serenity spaces
    /// boots so): another process's shard, which the two would then take from
    /// each other, or one past the total, which Discord closes with 4010 and
    /// serenity spins on.
    pub(crate) fn serenity_range(self) -> std::ops::Range<u32> {
        self.first..self.last
    }
}

/// `2/4` for one shard, `0-1/4` for several: the syntax `fixbot serve --shards` reads.
impl fmt::Display for ShardRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.first, self.total)
        } else {
            write!(f, "{}-{}/{}", self.first, self.last, self.total)
        }
    }
}

/// Reads `0-1/4` (shards 0 and 1 of 4) or `2/4` (shard 2 of 4): the
/// syntax of `fixbot serve --shards` and `DISCORD_SHARDS`.
impl std::str::FromStr for ShardRange {
    type Err = ShardRangeError;

    fn from_str(text: &str) -> Result<ShardRange, ShardRangeError> {
        let (range, total) = text.trim().split_once('/').ok_or(ShardRangeError::Syntax)?;
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let number = |part: &str| part.trim().parse::<u32>().map_err(|_| ShardRangeError::Syntax);
        ShardRange::new(number(first)?, number(last)?, number(total)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_single_shards_are_read() {
        let range: ShardRange = "0-1/4".parse().unwrap();
        assert_eq!((range.first(), range.last(), range.total()), (0, 1, 4));
        let single: ShardRange = " 2/4 ".parse().unwrap();
        assert_eq!((single.first(), single.last(), single.total()), (2, 2, 4));
        assert_eq!("0 - 3 / 4".parse::<ShardRange>().unwrap().to_string(), "0-3/4");
        assert_eq!("0/1".parse::<ShardRange>().unwrap().to_string(), "0/1");
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let error = |text: &str| text.parse::<ShardRange>().unwrap_err().to_string();
        assert_eq!(error("5/4"), "there is no shard 5 among 4 (shards are numbered 0 to 3)");
        assert_eq!(error("3-1/4"), "the range 3-1 runs backwards");
        assert_eq!(error("0/0"), "the shard total must be at least 1");
        for text in ["x", "", "4", "0-1", "1-/4", "-1/4", "0-1/x", "0/4/8", "99999999999/4"] {
            assert!(error(text).starts_with("not a shard range; write FIRST-LAST/TOTAL"), "{text}: {}", error(text));
        }
    }

    #[test]
    fn a_range_inside_the_total_is_kept() {
        let range = ShardRange::new(2, 3, 4).unwrap();
        assert_eq!((range.first(), range.last(), range.total()), (2, 3, 4));
        assert_eq!(range.to_string(), "2-3/4");
        assert_eq!(ShardRange::new(2, 2, 4).unwrap().to_string(), "2/4");
        assert_eq!(ShardRange::new(0, 0, 1).unwrap().to_string(), "0/1");
    }

    #[test]
    fn serenity_is_given_the_last_shard_as_the_end() {
        // tests/fake_discord_selftest.rs checks that serenity runs that end shard.
        assert_eq!(ShardRange::new(0, 1, 4).unwrap().serenity_range(), 0..1);
        assert_eq!(ShardRange::new(2, 2, 4).unwrap().serenity_range(), 2..2);
    }

    #[test]
    fn impossible_ranges_are_refused_with_the_reason() {
        assert_eq!(ShardRange::new(0, 0, 0), Err(ShardRangeError::NoShards));
        assert_eq!(ShardRange::new(5, 5, 4), Err(ShardRangeError::NoSuchShard { shard: 5, total: 4 }));
        assert_eq!(ShardRange::new(0, 4, 4), Err(ShardRangeError::NoSuchShard { shard: 4, total: 4 }));
        assert_eq!(ShardRange::new(3, 1, 4), Err(ShardRangeError::Backwards { first: 3, last: 1 }));
        assert_eq!(
            ShardRange::new(5, 5, 4).unwrap_err().to_string(),
            "there is no shard 5 among 4 (shards are numbered 0 to 3)"
        );
        assert_eq!(ShardRange::new(3, 1, 4).unwrap_err().to_string(), "the range 3-1 runs backwards");
    }
}
