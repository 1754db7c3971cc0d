//! `portcullis audit verify`: check an audit log's hash chain.

use std::path::PathBuf;
use std::process::ExitCode;

/// Verifies `files` (oldest first); prints `OK …` or the first bad line.
pub(super) fn verify(files: &[PathBuf]) -> ExitCode {
    match crate::observe::audit::verify(files) {
        Ok(report) => {
            println!("OK {} lines, head {}", report.lines, report.head_hash);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
