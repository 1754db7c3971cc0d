//! The tunnel wire protocol, shared by the agent and the gateway.
//!
//! # Layers
//!
//! ```text
//!   stream payload: HTTP/1.1 (kind http) | raw bytes (kind tcp) | frames (kind control)
//!   stream header:  one Open frame per stream ........................ frame
//!   multiplexing:   yamux (gateway = yamux server, opens every stream) mux
//!   handshake:      PREFACE, Hello →, ← Accepted | Refused ............ frame, client, server
//!   framing:        binary | WebSocket binary messages ............... transport
//!   security:       TLS 1.2/1.3 (rustls, ring); plaintext only if asked
//!   network:        TCP, optionally through an HTTP CONNECT proxy ..... proxy
//! ```
//!
//! # Transports
//!
//! The agent dials the gateway's tunnel listener over TCP (directly, or through the proxy named
//! by `HTTPS_PROXY` / `https_proxy` unless `NO_PROXY` / `no_proxy` matches the gateway's host),
//! then TLS with the gateway's host as server name. On the *binary* transport the tunnel
//! protocol starts right away; on the *WebSocket* transport the agent first sends an HTTP/1.1
//! upgrade request for [`transport::WEBSOCKET_PATH`], and the protocol then travels as the
//! payload of binary WebSocket messages. The server tells the two apart by the first four
//! bytes after TLS (`GET ` or not), so one listener serves both. `insecure_plaintext` drops
//! TLS on both sides, for tests only.
//!
//! # Handshake
//!
//! All of it within the server's handshake deadline (default 10 s), TLS included:
//!
//! 1. agent → gateway: the 8-byte [`frame::PREFACE`] `PCTUNL/1`, then a `Hello` frame:
//!    `{"protocol":1,"token":"…","agent_id":"…","agent_version":"…"}`.
//! 2. The gateway hashes the token with SHA-256 and asks its
//!    [`TokenLookup`](crate::server::TokenLookup) (which compares hashes in constant time).
//! 3. gateway → agent: `Accepted` `{"protocol":1,"tunnel":"…","tenant":"…",
//!    "heartbeat_interval_ms":…,"heartbeat_timeout_ms":…}` — or `Refused`
//!    `{"code":"bad_token"|"revoked"|"version"|"malformed"|…,"message":"…"}`, after which
//!    the gateway closes the connection and the agent backs off before trying again.
//!
//! Frames are a type byte, a big-endian `u32` length and a JSON payload of at most
//! [`frame::MAX_PAYLOAD`] bytes (see [`frame`]). Anything malformed ends that one connection.
//!
//! # Streams
//!
//! After `Accepted` both sides run yamux on the same byte stream ([`mux`] explains why yamux).
//! Only the gateway opens streams; the agent resets none of its own because it opens none, and
//! the gateway resets any stream an agent opens. Every stream starts with an `Open` frame from
//! the gateway naming its kind:
//!
//! - `{"kind":"control"}` — opened once, right after the handshake. Both sides send
//!   `Ping {"seq":n}` frames on it every heartbeat interval, and a `GoAway
//!   {"reason":"shutdown"|"revoked"|…,"message":"…"}` before closing the connection.
//! - `{"kind":"http"}` — plain HTTP/1.1 follows, the gateway as client, the agent as server.
//!   The `Host` header names the agent's origin. No reply frame: the HTTP response is the
//!   reply, and a refusal is an HTTP 403 with a JSON body.
//! - `{"kind":"tcp","origin":"db"}` — the agent answers `OpenOk` once it has connected to
//!   the origin, or `OpenRefused {"reason":…,"message":…}` and closes the stream; after
//!   `OpenOk` raw bytes flow both ways.
//!
//! # Heartbeats
//!
//! Each side pings every heartbeat interval and drops the connection when *no byte at all* has
//! arrived for its heartbeat timeout (gateway default 3 s / 9 s; the agent adopts the
//! gateway's interval when it is shorter than its own). A dropped connection fails all of its
//! open streams with an error naming the reason.

pub mod client;
pub mod frame;
pub mod mux;
pub mod proxy;
pub mod transport;

pub use frame::{decode, CloseReason, Frame, FrameError, RefuseCode, StreamKind, PROTOCOL_VERSION};
pub use mux::TunnelStream;
pub use transport::Transport;
