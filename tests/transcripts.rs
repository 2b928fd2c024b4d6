//! Every transcript in `flows/transcripts/` played through the engine and
//! compared with the file, by the same code as `fixbot test`. Run with
//! `FIXBOT_BLESS=1` to rewrite the files after an intended change, then review
//! the diff like any code change.

use fixbot_core::transcript::{check_file, files_in};

use crate::support::{root, shipped_flows};

#[test]
fn transcripts_match_the_engine() {
    let flows = shipped_flows();
    let paths = files_in(&root().join("flows/transcripts")).unwrap();
    let bless = std::env::var_os("FIXBOT_BLESS").is_some();
    let failures: Vec<String> = paths
        .iter()
        .map(|path| check_file(&flows, path, bless))
        .filter(|report| !report.passed())
        .map(|report| report.to_string())
        .collect();
    println!("{} transcripts played", paths.len());
    assert!(failures.is_empty(), "transcripts differ (FIXBOT_BLESS=1 rewrites them):\n{}", failures.join("\n"));

    // Every flow has at least one transcript that reaches it.
    for flow in flows.iter() {
        let named = paths.iter().any(|path| path.file_name().unwrap().to_string_lossy().starts_with(&flow.id));
        assert!(named, "flow `{}` has no transcript in flows/transcripts/", flow.id);
    }
}
