//! The matcher's prefilter and anchored DFAs fire exactly the patterns the
//! regex crate finds in a message: on every corpus message, and on pastes
//! built from them with log lines around, up to 16 KiB.

use crate::invariants::Reference;
use crate::support::{root, shipped_flows};

/// Every corpus message, raw.
fn corpus() -> Vec<String> {
    ["tuning", "holdout"]
        .iter()
        .flat_map(|name| {
            let text = std::fs::read_to_string(root().join(format!("tests/corpus/{name}.jsonl"))).unwrap();
            text.lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    serde_json::from_str::<serde_json::Value>(line).unwrap()["text"].as_str().unwrap().to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_prefiltered_matcher_fires_what_the_regex_crate_finds() {
    let flows = shipped_flows();
    let reference = Reference::new(flows.matcher());
    let corpus = corpus();
    let filler = [
        "2024-05-01 10:22:31 kernel: usb 1-1: new high-speed USB device number 5 using xhci_hcd",
        "AppleMobileBackup[412]: WARNING: Backup message: ... (MBErrorDomain/207)",
        "E/BackupManagerService( 1234): Transport error: backup failed",
    ];
    let mut texts: Vec<String> = corpus.clone();
    for (index, message) in corpus.iter().enumerate() {
        let mut paste = String::new();
        let mut step = index;
        while paste.len() < 256 << (index % 7) {
            paste.push_str(filler[step % filler.len()]);
            paste.push('\n');
            paste.push_str(&corpus[(step * 31 + 7) % corpus.len()]);
            paste.push('\n');
            step += 1;
        }
        paste.push_str(message);
        texts.push(paste);
    }
    let mut fired = 0;
    for text in &texts {
        fired += reference.check(&flows, text);
    }
    assert!(fired > texts.len(), "the texts exercise the patterns: {fired} firings on {} texts", texts.len());
}
