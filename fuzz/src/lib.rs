//! What the fuzz targets share: the invariants of `tests/invariants.rs`, compiled here from the
//! same file the integration tests use, and the shipped flows, loaded once per process.

use std::path::Path;
use std::sync::OnceLock;

use fixbot_core::flow::Flows;

#[path = "../../tests/invariants.rs"]
pub mod invariants;

/// The shipped `flows/`, loaded and checked once.
///
/// # Panics
///
/// When the shipped flows do not load: a fuzz run against them means nothing then.
pub fn shipped_flows() -> &'static Flows {
    static FLOWS: OnceLock<Flows> = OnceLock::new();
    FLOWS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flows");
        Flows::load_dir(&dir).unwrap_or_else(|errors| panic!("the shipped flows do not load:\n{errors}"))
    })
}

/// The shipped `_bot.yaml`, as the flow-file target loads it beside each input.
pub const BOT_YAML: &str = include_str!("../../flows/_bot.yaml");
