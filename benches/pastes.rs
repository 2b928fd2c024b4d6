//! The benchmarks' messages: real-sized pastes built from the labelled
//! corpus, the way people paste, an error with log lines and their own words
//! around it, from 100 B to 4 KiB (log-uniform), always the same.

use std::path::Path;

/// Lines that surround an error in a paste.
const FILLER: &[&str] = &[
    "2024-05-01 10:22:31 kernel: usb 1-1: new high-speed USB device number 5 using xhci_hcd",
    "AppleMobileBackup[412]: WARNING: Backup message: Could not back up (MBErrorDomain/207)",
    "E/BackupManagerService( 1234): Transport error: backup failed, will retry in 3600 s",
    "I tried restarting both the phone and the computer, same thing.",
    "It worked fine last week, nothing changed as far as I know.",
    "Device: iPhone 13, iOS 17.4.1. Computer: Windows 11, iTunes 12.13.2.3",
    "Samsung Galaxy S22, One UI 6.1, Smart Switch 4.3.24052_3 on macOS 14.4",
    "Any idea? I really need this backup before I trade the phone in.",
    "at com.google.android.gms.backup.BackupTransportService.performBackup(BackupTransportService.java:412)",
    "Finder says: The backup was not completed because an error occurred.",
];

/// The corpus messages, as people wrote them.
pub fn corpus(root: &Path) -> Vec<String> {
    ["tuning", "holdout"]
        .iter()
        .flat_map(|name| {
            let text = std::fs::read_to_string(root.join(format!("tests/corpus/{name}.jsonl"))).expect("the corpus");
            text.lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    let entry: serde_json::Value = serde_json::from_str(line).expect("a corpus line is JSON");
                    entry["text"].as_str().expect("a corpus line has a text").to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `count` pastes of 100 B to 4 KiB, each around one corpus message.
pub fn pastes(root: &Path, count: usize) -> Vec<String> {
    let corpus = corpus(root);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|index| {
            // Log-uniform between 100 B and 4 KiB.
            let fraction = (next() % 10_000) as f64 / 10_000.0;
            let size = (100.0 * (4096.0f64 / 100.0).powf(fraction)) as usize;
            let error = &corpus[index % corpus.len()];
            let mut paste = String::new();
            while paste.len() + error.len() < size {
                paste.push_str(FILLER[(next() % FILLER.len() as u64) as usize]);
                paste.push('\n');
            }
            let at = paste.len() / 2;
            let at = (0..=at).rev().find(|&at| paste.is_char_boundary(at)).unwrap_or(0);
            paste.insert_str(at, &format!("{error}\n"));
            paste
        })
        .collect()
}
