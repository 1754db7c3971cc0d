//! The Portcullis gateway: a Pingora reverse proxy through which a hosted developer portal makes
//! every call into its tenants' tools.
//!
//! A request is matched to a route, its caller checked (gateway key, caller CIDRs, accept rules),
//! stripped of what it must not forward, given the tenant's secret, and sent from one of the
//! tenant's published egress IPs. The compiled configuration comes from `portcullis-config`;
//! this crate adds what needs IO: secrets, DNS, TLS trust, sockets, the admin API, metrics and
//! the audit log.
//!
//! It is not the policy language (that is `portcullis-config`, `-routes` and `-allowlist`, all
//! pure). Its modules are private: the binary needs only [`main`].
//!
//! One folder per concern, top to bottom: `cli` (one file per subcommand) → `app` (process
//! wiring, reload triggers, shutdown order) → `admin` (the admin API) and `control` (shared state
//! and the reload function) → `proxy` (the request path) → `runtime` (the snapshot a request
//! reads) → `tokens` (key sets and exchanged tokens kept per route) → `upstream`, `secrets`,
//! `observe` (records what happened; decides nothing) → `outcome`, `clock`. `listener` binds
//! (or, in a graceful upgrade, inherits) sockets for `app`; `conn` bounds the connections on
//! them (limits before TLS, the request-head deadline) for `app`, and `proxy` tells it when a
//! head has arrived; `demo` is the built-in demo.

mod admin;
mod app;
mod cli;
mod clock;
mod conn;
mod control;
mod demo;
mod listener;
mod observe;
mod outcome;
mod proxy;
mod runtime;
mod secrets;
mod text;
mod tokens;
mod upstream;

/// Runs the `portcullis` command line; the return value is the process exit code.
pub fn main() -> std::process::ExitCode {
    cli::main()
}
