//! Any bytes as a flow file beside the shipped `_bot.yaml`, through the real loader: it must list
//! problems (each on one line), never panic; a flow that loads must keep every invariant when each
//! of its steps is shown and pressed, and its patterns must fire as the regex crate's do.
#![no_main]

use fixbot_fuzz::BOT_YAML;
use fixbot_fuzz::invariants::check_flow_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_flow_file(BOT_YAML, &String::from_utf8_lossy(data));
});
