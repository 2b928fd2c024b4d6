//! `fixbot check`: load the flows and list every problem, one per line as
//! `file:line: reason`, so editors and CI can jump to each.

use std::path::Path;
use std::process::ExitCode;

use crate::flows;

/// Runs the check; exit 0 when clean, 1 otherwise.
pub fn run(flag: Option<&Path>) -> ExitCode {
    let origin = flows::locate(flag);
    let shown = flows::describe(&origin);
    match flows::load(&origin) {
        Ok(loaded) => {
            let steps: usize = loaded.iter().map(|flow| flow.steps.len()).sum();
            println!("{shown}: {} flows, {steps} steps: no problems", loaded.iter().len());
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
