//! The `--shards` / `DISCORD_SHARDS` syntax: `FIRST-LAST/TOTAL` or `ID/TOTAL`.

use fixbot_discord::ShardRange;

/// Reads `0-1/4` (shards 0 and 1 of 4) or `2/4` (shard 2 of 4). The message
/// of an error says in words what is wrong; the caller names the value.
pub fn parse_shards(text: &str) -> Result<ShardRange, String> {
    let syntax = || "not a shard range; write FIRST-LAST/TOTAL like 0-1/4, or ID/TOTAL like 2/4".to_string();
    let (range, total) = text.trim().split_once('/').ok_or_else(syntax)?;
    let (first, last) = range.split_once('-').unwrap_or((range, range));
    let number = |part: &str| part.trim().parse::<u32>().map_err(|_| syntax());
    ShardRange::new(number(first)?, number(last)?, number(total)?).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_single_shards_are_read() {
        let range = parse_shards("0-1/4").unwrap();
        assert_eq!((range.first(), range.last(), range.total()), (0, 1, 4));
        let single = parse_shards(" 2/4 ").unwrap();
        assert_eq!((single.first(), single.last(), single.total()), (2, 2, 4));
        assert_eq!(parse_shards("0 - 3 / 4").unwrap().to_string(), "0-3/4");
        assert_eq!(parse_shards("0/1").unwrap().to_string(), "0/1");
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let error = |text: &str| parse_shards(text).unwrap_err();
        assert_eq!(error("5/4"), "there is no shard 5 among 4 (shards are numbered 0 to 3)");
        assert_eq!(error("3-1/4"), "the range 3-1 runs backwards");
        assert_eq!(error("0/0"), "the shard total must be at least 1");
        for text in ["x", "", "4", "0-1", "1-/4", "-1/4", "0-1/x", "0/4/8", "99999999999/4"] {
            assert!(error(text).starts_with("not a shard range; write FIRST-LAST/TOTAL"), "{text}: {}", error(text));
        }
    }
}
