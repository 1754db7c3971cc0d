//! `portcullis-console`: parses arguments and runs the console library.

use std::process::ExitCode;

use clap::Parser;

/// The Portcullis operator console: a live terminal UI over the gateway's admin API.
#[derive(Debug, Parser)]
#[command(name = "portcullis-console", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: portcullis_console::ConsoleArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.args.into_options().and_then(portcullis_console::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
