//! Where the flows come from: `--flows DIR`, else `./flows`, else the copy
//! embedded in the binary at build time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fixbot_core::flow::{FlowErrors, Flows, Source};

include!(concat!(env!("OUT_DIR"), "/embedded_flows.rs"));

/// Where flows were loaded from, for messages.
pub enum Origin {
    /// A directory on disk.
    Dir(PathBuf),
    /// The copy built into the binary.
    Embedded,
}

/// Resolves the flows location: the flag, `./flows` when present, or the embedded copy.
pub fn locate(flag: Option<&Path>) -> Origin {
    match flag {
        Some(dir) => Origin::Dir(dir.to_path_buf()),
        None if Path::new("flows").is_dir() => Origin::Dir(PathBuf::from("flows")),
        None => Origin::Embedded,
    }
}

/// Loads and checks flows from `origin`.
pub fn load(origin: &Origin) -> Result<Flows, FlowErrors> {
    match origin {
        Origin::Dir(dir) => Flows::load_dir(dir),
        Origin::Embedded => Flows::from_sources(
            EMBEDDED_FLOWS
                .iter()
                .map(|(name, text)| Source { path: Path::new("flows").join(name), text: (*text).to_owned() })
                .collect(),
        ),
    }
}

/// Loads flows for a command that needs them, turning problems into one error
/// that lists each with its file and line.
pub fn load_for_command(flag: Option<&Path>) -> anyhow::Result<Arc<Flows>> {
    let origin = locate(flag);
    let shown = describe(&origin);
    match load(&origin) {
        Ok(flows) => Ok(Arc::new(flows)),
        Err(errors) => {
            let count = errors.0.len();
            Err(anyhow::Error::new(errors).context(format!("the flows in {shown} have {count} problem(s)")))
        }
    }
}

/// How `origin` is named in messages.
pub fn describe(origin: &Origin) -> String {
    match origin {
        Origin::Dir(dir) => dir.display().to_string(),
        Origin::Embedded => "the built-in flows".to_owned(),
    }
}
