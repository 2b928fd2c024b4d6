//! A conversation with the shipped flows, read from the input one act a line as transcripts write
//! them (texts, presses on any button index, sealed and forged button data, commands, waits; see
//! `parse_acts`), each transition checked: no panic, replies within both platforms' limits, the
//! case at a step that exists, and every move along the flow graph.
#![no_main]

use fixbot_fuzz::invariants::check_conversation;
use fixbot_fuzz::shipped_flows;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_conversation(shipped_flows(), &String::from_utf8_lossy(data));
});
