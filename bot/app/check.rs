//! `fixbot check`: load the flows and list every problem, one per line as
//! `file:line: reason`, so editors and CI can jump to each. Missing and stale
//! translations are listed as warnings and do not fail the check;
//! `--bless-translations` records today's English hashes in stale ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fixbot_core::flow::StaleHash;

use crate::flows;

/// Runs the check; exit 0 when clean, 1 otherwise.
pub fn run(flag: Option<&Path>, bless: bool) -> ExitCode {
    let origin = flows::locate(flag);
    let shown = flows::describe(&origin);
    match flows::load(&origin) {
        Ok(loaded) => {
            for warning in loaded.warnings() {
                println!("warning: {warning}");
            }
            if bless && !loaded.stale_translations().is_empty() {
                if !matches!(origin, flows::Origin::Dir(_)) {
                    println!("{shown}: the embedded flows cannot be blessed; pass --flows DIR");
                    return ExitCode::FAILURE;
                }
                match bless_stale(loaded.stale_translations()) {
                    Ok(count) => println!("{shown}: blessed {count} stale translation(s)"),
                    Err(error) => {
                        println!("{shown}: blessing failed: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            let steps: usize = loaded.iter().map(|flow| flow.steps.len()).sum();
            let warnings = match loaded.warnings().len() {
                0 => String::new(),
                n => format!(", {n} warning(s)"),
            };
            println!("{shown}: {} flows, {steps} steps: no problems{warnings}", loaded.iter().len());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for problem in &errors.0 {
                println!("{problem}");
            }
            println!("{shown}: {} problem(s)", errors.0.len());
            ExitCode::FAILURE
        }
    }
}

/// Rewrites each stale `source:` hash on its line, file by file.
fn bless_stale(stale: &[StaleHash]) -> std::io::Result<usize> {
    let mut by_file: BTreeMap<&PathBuf, Vec<&StaleHash>> = BTreeMap::new();
    for hash in stale {
        by_file.entry(&hash.file).or_default().push(hash);
    }
    let mut count = 0;
    for (file, hashes) in by_file {
        let text = std::fs::read_to_string(file)?;
        let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
        for hash in hashes {
            let Some(line) = usize::try_from(hash.line).ok().and_then(|line| lines.get_mut(line.wrapping_sub(1)))
            else {
                continue;
            };
            // Only the value after `source:` is touched, so a key or text
            // that happens to contain the same letters is left alone.
            let Some(at) = line.find("source:") else { continue };
            let (key, value) = line.split_at(at + "source:".len());
            if value.contains(&hash.old) {
                *line = format!("{key}{}", value.replacen(&hash.old, &hash.new, 1));
                count += 1;
            }
        }
        std::fs::write(file, lines.join("\n"))?;
    }
    Ok(count)
}
