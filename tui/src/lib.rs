//! `portcullis-console`: the operator console of the Portcullis gateway, a terminal UI over the
//! admin API in the manner of k9s and gitui — Overview, Routes, Traffic, Secrets, Tunnels and
//! Config tabs, live.
//!
//! Built as The Elm Architecture: a plain [`Model`], a [`Msg`] enum, a pure [`update`] that
//! returns an optional [`Command`], and [`view`] that draws a model into a ratatui frame. A
//! background thread polls the admin API (decoding with `portcullis-api`'s types, so console
//! and gateway cannot drift) and delivers what it finds as messages; the runtime draws at a
//! steady frame rate and restores the terminal on every way out.
//!
//! It is not an admin API client library for other programs (the [`client`] is plain and
//! blocking, made for this console) and it holds no policy: everything it shows comes from
//! the gateway. The gateway calls [`run`] from `portcullis console` and `portcullis demo`;
//! the `portcullis-console` binary does the same.

mod app;
pub mod client;
mod filter;
#[cfg(test)]
mod fixtures;
mod format;
pub mod keys;
pub mod model;
mod tab;
mod update;
mod view;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

pub use client::{AdminClient, ClientError, TokenSource};
pub use filter::Filter;
pub use model::{Command, Model, Msg, Poll, Tab, DEFAULT_TRAFFIC_KEEP};
pub use update::update;
pub use view::view;

/// The environment variable holding the admin token when no token file is given.
pub const TOKEN_ENV: &str = "PORTCULLIS_ADMIN_TOKEN";

/// What the console needs to run.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The admin API, `http://host:port`.
    pub admin: String,
    /// Where the bearer token comes from.
    pub token: TokenSource,
    /// Time between polls of status, routes, secrets and tunnels (the traffic tail is
    /// continuous).
    pub refresh: Duration,
    /// Traffic entries kept for the Traffic tab.
    pub traffic_keep: usize,
}

/// Why the console could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The admin URL or the token is unusable.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No token given.
    #[error("no admin token: pass --token-file FILE or set {TOKEN_ENV}")]
    NoToken,
    /// The terminal could not be set up or drawn to.
    #[error("terminal: {0}")]
    Terminal(std::io::Error),
    /// The poller thread could not start.
    #[error("starting the poller: {0}")]
    Spawn(std::io::Error),
    /// The poller thread ended (a bug: it only ends when the console does).
    #[error("the admin API poller stopped unexpectedly")]
    PollerStopped,
}

/// Command-line arguments of the console, shared by `portcullis-console` and
/// `portcullis console`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    /// The gateway's admin API.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    pub admin: String,
    /// A file holding the admin token (default: the PORTCULLIS_ADMIN_TOKEN environment variable).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Milliseconds between polls of status, routes, secrets and tunnels.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub refresh_ms: u64,
}

// === impl ConsoleOptions ===

impl ConsoleOptions {
    /// Options with the default refresh (1 s) and traffic buffer.
    pub fn new(admin: impl Into<String>, token: TokenSource) -> Self {
        Self {
            admin: admin.into(),
            token,
            refresh: Duration::from_secs(1),
            traffic_keep: DEFAULT_TRAFFIC_KEEP,
        }
    }
}

// === impl ConsoleArgs ===

impl ConsoleArgs {
    /// The options these arguments ask for; the token comes from `--token-file` or else
    /// from [`TOKEN_ENV`].
    pub fn into_options(self) -> Result<ConsoleOptions, ConsoleError> {
        let token = match self.token_file {
            Some(path) => TokenSource::File(path),
            None => match std::env::var(TOKEN_ENV) {
                Ok(value) if !value.trim().is_empty() => {
                    TokenSource::Value(SecretString::from(value.trim().to_owned()))
                }
                _ => return Err(ConsoleError::NoToken),
            },
        };
        let mut options = ConsoleOptions::new(self.admin, token);
        options.refresh = Duration::from_millis(self.refresh_ms);
        Ok(options)
    }
}

/// Runs the console on the terminal until the operator quits (`q` or Ctrl-C).
///
/// Fails before touching the terminal when the admin URL is malformed or the token file
/// cannot be read; once running, an unreachable gateway or a refused token is shown in the
/// console and retried, never returned.
pub fn run(options: ConsoleOptions) -> Result<(), ConsoleError> {
    let client = AdminClient::new(&options.admin, options.token)?;
    let model = Model::new(client.base(), options.traffic_keep);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = worker::spawn(client, options.refresh, tx).map_err(ConsoleError::Spawn)?;
    let result = app::run_loop(model, &rx, &worker);
    // Dropping the receiver and the worker's request channel stops the poller within one
    // request timeout; it is not joined, so quitting is immediate.
    drop(rx);
    drop(worker);
    result
}
