//! `portcullis-console`: parses arguments and runs the console library.

use clap::Parser;

/// The Portcullis operator console: a live terminal UI over the gateway's admin API.
#[derive(Debug, Parser)]
#[command(name = "portcullis-console", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: portcullis_console::ConsoleArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    portcullis_console::run(cli.args.into_options()?)?;
    Ok(())
}
