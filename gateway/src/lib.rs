//! The Portcullis gateway: a Pingora reverse proxy through which a hosted developer portal makes
//! every call into its tenants' tools.
//!
//! A request is matched to a route, its caller checked (gateway key, caller CIDRs, accept rules),
//! stripped of what it must not forward, given the tenant's secret, and sent from one of the
//! tenant's published egress IPs. The compiled configuration comes from `portcullis-config`;
//! this crate adds what needs IO: secrets, DNS, TLS trust, sockets.
//!
//! It is not the policy language (that is `portcullis-config`, `-routes` and `-allowlist`, all
//! pure) and not the command line's argument parsing beyond [`cli`].

pub mod admin;
pub mod audit;
pub mod cli;
pub mod control;
pub mod demo;
pub mod egress;
pub mod errors;
pub mod metrics;
pub mod proxy;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod traffic;
pub mod upstream;

pub use control::{Reloader, Shared};
pub use errors::ErrorCode;
pub use proxy::Gateway;
pub use runtime::{Runtime, SharedRuntime};
