//! `portcullis console`: the operator console (`portcullis-console`) on a gateway's admin API.

use std::process::ExitCode;

/// Runs the console until the operator quits.
pub(super) fn console(args: portcullis_console::ConsoleArgs) -> ExitCode {
    match args.into_options().and_then(portcullis_console::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
