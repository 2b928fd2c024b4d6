//! Every transcript in `flows/transcripts/` played through the engine and
//! compared with the file. Run with `FIXBOT_BLESS=1` to rewrite the files
//! after an intended change, then review the diff like any code change.

use fixbot_core::transcript::{Transcript, play};

use crate::support::{root, shipped_flows};

#[test]
fn transcripts_match_the_engine() {
    let flows = shipped_flows();
    let dir = root().join("flows/transcripts");
    let bless = std::env::var_os("FIXBOT_BLESS").is_some();
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    paths.retain(|path| path.extension().is_some_and(|ext| ext == "txt"));
    paths.sort();
    let mut failures = Vec::new();
    for path in &paths {
        let expected = std::fs::read_to_string(path).unwrap();
        let transcript = Transcript::parse(&expected).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let actual = play(&flows, &transcript);
        if actual == expected {
            continue;
        }
        if bless {
            std::fs::write(path, &actual).unwrap();
            continue;
        }
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        failures.push(format!(
            "{}:{}:\n  expected: {:?}\n  actual:   {:?}",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>"),
        ));
    }
    println!("{} transcripts played", paths.len());
    assert!(failures.is_empty(), "transcripts differ (FIXBOT_BLESS=1 rewrites them):\n{}", failures.join("\n"));

    // Every flow has at least one transcript that reaches it.
    for flow in flows.iter() {
        let named = paths.iter().any(|path| path.file_name().unwrap().to_string_lossy().starts_with(&flow.id));
        assert!(named, "flow `{}` has no transcript in flows/transcripts/", flow.id);
    }
}
