//! `fixbot test`: play transcript files through the engine and say, one line
//! each, whether the bot still answers as written, with a diff where it does
//! not. The check itself is `fixbot_core::transcript::check_file`, the same the
//! integration tests run.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use fixbot_core::transcript::{Outcome, check_file, files_in};

use crate::flows::{self, Origin};

/// Arguments of `fixbot test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Directory holding the flow files; its `transcripts/` are played when no FILE is given.
    #[arg(long, value_name = "DIR")]
    flows: Option<PathBuf>,
    /// Rewrite every transcript that differs with what the bot says now (review the diff before committing).
    #[arg(long)]
    bless: bool,
    /// Transcript files, or directories of them, to play instead.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Plays the transcripts; `Ok(true)` when every one passed.
pub fn run(args: TestArgs) -> anyhow::Result<bool> {
    let flows = flows::load_for_command(args.flows.as_deref())?;
    let paths = transcript_paths(&args)?;
    let (mut ok, mut blessed, mut failed) = (0, 0, 0);
    for path in &paths {
        let report = check_file(&flows, path, args.bless);
        println!("{report}");
        match report.outcome {
            Outcome::Passed => ok += 1,
            Outcome::Blessed => blessed += 1,
            _ => failed += 1,
        }
    }
    let rewritten = if args.bless { format!(", {blessed} rewritten") } else { String::new() };
    println!("{} transcript(s): {ok} ok{rewritten}, {failed} failed", paths.len());
    Ok(failed == 0)
}

/// The files named on the command line (directories expanded), else the
/// `transcripts/` directory beside the flows.
fn transcript_paths(args: &TestArgs) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    if args.files.is_empty() {
        let dir = match flows::locate(args.flows.as_deref()) {
            Origin::Dir(dir) => dir.join("transcripts"),
            Origin::Embedded => bail!("there is no `flows` directory here: pass --flows DIR, or transcript files"),
        };
        paths = list(&dir)?;
        if paths.is_empty() {
            bail!("there are no transcript files (*.txt) in {}", dir.display());
        }
    }
    for path in &args.files {
        if path.is_dir() {
            paths.extend(list(path)?);
        } else {
            // A missing file is reported on its own line, like a broken one.
            paths.push(path.clone());
        }
    }
    Ok(paths)
}

fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    files_in(dir).with_context(|| format!("cannot read the transcripts directory {}", dir.display()))
}
