//! Broker tunnels, the gateway's side: agents dial in, routes reach the customer's private
//! APIs and ports through them.
//!
//! - [`listener`]: the tunnel listener service. It accepts TLS (or, when configured,
//!   plaintext) connections on a socket bound before Pingora starts (or taken over from the
//!   old process in a graceful upgrade, and handed on in the next), runs the broker handshake
//!   against the token table of the runtime in force ([`TunnelTokens`]), and hands each agent
//!   session to the registry until it ends.
//! - [`registry`]: the live agent sessions of every tunnel. It picks the agent a new upstream
//!   connection goes to (the least busy, ties round-robin), answers "offline" or "reconnecting"
//!   when there is none, audits connects and disconnects, and after a reload disconnects the
//!   agents whose token the new config no longer lists.
//! - [`connector`]: Pingora's `custom_l4` connector: an upstream "connection" is one yamux
//!   stream on the chosen agent's session, so the whole proxy path — filters, rewrite,
//!   injection, timeouts, metrics, audit — runs unchanged over the tunnel.
//! - [`tcp`]: `[[tcp_routes]]`: gateway ports whose connections are piped through a tunnel to
//!   an agent's TCP origin, after the caller CIDR check.
//!
//! The wire protocol, the handshake and the agent are the `portcullis-broker` crate's; this
//! module adds what needs the gateway: config, registry, Pingora, audit and metrics.

pub(crate) mod connector;
pub(crate) mod listener;
pub(crate) mod registry;
pub(crate) mod tcp;
mod tokens;

pub(crate) use self::registry::{Pick, TunnelRegistry};
pub(crate) use self::tokens::TunnelTokens;
