//! Any text diagnosed against the shipped flows: no panic, the patterns that fire are exactly the
//! ones the regex crate finds, and the verdict, scores and captures are well formed.
#![no_main]

use std::sync::OnceLock;

use fixbot_fuzz::invariants::Reference;
use fixbot_fuzz::shipped_flows;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    let flows = shipped_flows();
    let reference = REFERENCE.get_or_init(|| Reference::new(flows.matcher()));
    reference.check(flows, &String::from_utf8_lossy(data));
});
