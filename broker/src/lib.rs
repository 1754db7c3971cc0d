//! Portcullis broker tunnels: the wire protocol the gateway and `portcullis-agent` speak, the
//! gateway's server-side API, and the agent itself.
//!
//! A customer runs `portcullis-agent` inside their network. It dials *out* to every gateway
//! instance it is given (TLS, or WebSocket-over-TLS through a corporate `HTTPS_PROXY`),
//! authenticates with its broker token, and then serves the streams the gateway opens: HTTP/1.1
//! requests for its named origins, checked against the agent's own accept rules and given
//! credentials that never leave the customer network, and raw TCP streams to origins of kind
//! `tcp`. Both sides can end the tunnel at any moment; heartbeats detect a dead peer.
//!
//! This crate does not depend on Pingora and has no notion of gateway routes or config files:
//! the gateway wires [`server`] into its own listener, registry and `custom_l4` connector.
//!
//! - [`protocol`]: transports, handshake, frames, multiplexing — the wire protocol, documented
//!   in full there.
//! - [`server`]: [`server::accept`] turns an accepted socket into an [`server::AgentSession`]
//!   on which the gateway opens [`TunnelStream`]s.
//! - [`agent`]: the customer side: configuration ([`agent::config`]), connection loops with
//!   backoff, the HTTP and TCP stream handlers, and the audit log.

pub mod agent;
pub mod protocol;
pub mod server;

pub use protocol::{CloseReason, RefuseCode, StreamKind, Transport, TunnelStream};
pub use server::{accept, AgentSession, ServerOptions, TokenLookup, TokenVerdict, TunnelGrant};

/// This crate's version, sent by the agent in its hello.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
