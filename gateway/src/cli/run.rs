//! `portcullis run` and `portcullis demo`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis_config::{DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN};
use tracing_appender::non_blocking::WorkerGuard;

use super::{ListenArgs, RunArgs};
use crate::app::{self, ServeOptions};
use crate::control::{ConfigSource, ListenOverrides};
use crate::demo;
use crate::secrets::ProcessEnv;

/// Runs the gateway on `args.config`, or the demo without one.
pub(super) fn run(args: RunArgs, log_guard: WorkerGuard) -> ExitCode {
    let Some(path) = args.config else {
        return demo(&args.listen, false, log_guard);
    };
    let source = match ConfigSource::file(&path) {
        Ok(source) => source,
        Err(e) => return fail(format!("{}: {e}", path.display())),
    };
    let overrides = ListenOverrides {
        listen: args.listen.listen,
        admin_listen: args.listen.admin_listen,
    };
    let mut options = options(&args.listen, log_guard);
    options.upgrade = args.upgrade;
    match app::serve(source, Arc::new(ProcessEnv), overrides, options, Vec::new()) {
        Ok(never) => match never {},
        Err(e) => fail(e.to_string()),
    }
}

/// Whether the demo opens the console: unless told not to, and only on a terminal.
pub(super) fn console_wanted(no_console: bool) -> bool {
    !no_console && std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Runs the built-in demo, with the console on it when there is a terminal.
pub(super) fn demo(args: &ListenArgs, no_console: bool, log_guard: WorkerGuard) -> ExitCode {
    let listen = args.listen.unwrap_or(default_addr(DEFAULT_LISTEN, 8080));
    let admin = args
        .admin_listen
        .unwrap_or(default_addr(DEFAULT_ADMIN_LISTEN, 9901));
    let mut demo = match demo::prepare(listen, admin) {
        Ok(demo) => demo,
        Err(e) => return fail(e.to_string()),
    };
    let console = console_wanted(no_console);
    let mut options = options(args, log_guard);
    let services = std::mem::take(&mut demo.services);
    let env = std::mem::take(&mut demo.env);
    let source = demo.source.clone();
    options.on_ready = Some(Box::new(move |listeners| {
        if let Err(e) = demo.start_agent(listeners) {
            tracing::error!(error = %e, "the demo tunnel stays offline");
        }
        println!("{}", demo.ready(listeners));
        if console {
            open_console(listeners.admin, demo.admin_token_file());
        }
    }));
    match app::serve(
        source,
        Arc::new(env),
        ListenOverrides::default(),
        options,
        services,
    ) {
        Ok(never) => match never {},
        Err(e) => fail(e.to_string()),
    }
}

/// Opens the console on its own thread; quitting it stops the demo the way `SIGTERM` does
/// (drained, audit log flushed).
fn open_console(admin: SocketAddr, token_file: PathBuf) {
    println!("Opening the console (q quits the demo; logs: see the demo directory)…");
    let options = portcullis_console::ConsoleOptions::new(
        format!("http://{admin}"),
        portcullis_console::TokenSource::File(token_file),
    );
    let spawned = std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            if let Err(e) = portcullis_console::run(options) {
                eprintln!("console: {e}");
            }
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGTERM);
        });
    if let Err(e) = spawned {
        eprintln!("error: cannot open the console ({e}); the demo runs without it");
    }
}

fn options(args: &ListenArgs, log_guard: WorkerGuard) -> ServeOptions {
    let mut options = ServeOptions {
        ready_file: args.ready_file.clone(),
        flush_on_exit: vec![Box::new(log_guard)],
        ..ServeOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    options
}

fn default_addr(text: &str, port: u16) -> SocketAddr {
    text.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
