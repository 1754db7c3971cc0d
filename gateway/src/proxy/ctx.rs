//! The state one request carries through every filter.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::Method;
use portcullis_broker::AgentSession;

use crate::observe::audit::AuditSlot;
use crate::observe::Recorders;
use crate::outcome::{ErrorCode, TokenReason};
use crate::runtime::{RouteRuntime, Runtime};
use crate::tokens::exchange::CachedToken;

/// Per-request state. `runtime` is the request's one arc-swap load: every filter reads the
/// same snapshot, so a reload never changes a request half-way.
pub(crate) struct RequestCtx {
    pub(crate) runtime: Arc<Runtime>,
    /// Monotonic arrival, for durations and the total deadline.
    pub(crate) started: Instant,
    /// Wall-clock arrival, for records.
    pub(crate) arrived: SystemTime,
    pub(crate) request_id: String,
    /// The request's method, once its head is read.
    pub(crate) method: Method,
    /// The request's path with query parameter names only (`redact_query`), once its head is
    /// read; empty before.
    pub(crate) path: String,
    /// Index of the matched route in `runtime`.
    pub(crate) route: Option<usize>,
    /// Why the gateway refused or failed the request, once decided.
    pub(crate) denial: Option<ErrorCode>,
    /// Why a passed-through token was refused (with `denial = TokenInvalid`).
    pub(crate) token_reason: Option<TokenReason>,
    /// The exchanged token this attempt sends (exchange routes).
    pub(crate) exchanged: Option<Arc<CachedToken>>,
    /// Whether the request was already retried after an upstream 401 to an exchanged token.
    pub(crate) token_retried: bool,
    /// The rewritten path and query sent upstream.
    pub(crate) upstream_path: String,
    /// Which target of the route the chosen backend belongs to.
    pub(crate) target: usize,
    pub(crate) connect_attempts: u32,
    /// When the whole exchange must be over.
    pub(crate) deadline: Option<Instant>,
    pub(crate) body_bytes: u64,
    pub(crate) body_limit: Option<u64>,
    pub(crate) client_ip: Option<IpAddr>,
    /// The source address the upstream connection left from.
    pub(crate) egress: Option<IpAddr>,
    /// The status the caller got (0 until a response head went out).
    pub(crate) status: u16,
    pub(crate) upstream_addr: Option<SocketAddr>,
    /// The agent a tunnel route's request went to.
    pub(crate) tunnel_agent: Option<AgentSession>,
    /// Seconds for `Retry-After` (503 `tunnel_reconnecting`).
    pub(crate) retry_after: Option<u64>,
    /// The upstream's status, once its response head arrived.
    pub(crate) upstream_status: Option<u16>,
    pub(crate) bytes_out: u64,
    /// Room reserved in the audit queue for this request's line (fail-closed policy).
    pub(crate) audit_slot: Option<AuditSlot>,
    /// Whether the request's outcome was recorded (`logging`). A context dropped without it
    /// is a request cut short — by the end of a graceful stop, or a panic — and is recorded
    /// as such when dropped.
    pub(crate) recorded: bool,
    /// Where the outcome goes; also counts the request in `portcullis_active_requests` until
    /// the context is dropped, which is after `logging`: a graceful shutdown that waits for
    /// zero has every line queued.
    pub(crate) recorders: Arc<Recorders>,
}

// === impl RequestCtx ===

impl RequestCtx {
    /// The context of a request that just arrived.
    pub(crate) fn new(runtime: Arc<Runtime>, recorders: &Arc<Recorders>) -> Self {
        recorders.metrics.active_requests().inc();
        Self {
            runtime,
            started: Instant::now(),
            arrived: SystemTime::now(),
            request_id: String::new(),
            method: Method::GET,
            path: String::new(),
            route: None,
            denial: None,
            token_reason: None,
            exchanged: None,
            token_retried: false,
            upstream_path: String::new(),
            target: 0,
            connect_attempts: 0,
            deadline: None,
            body_bytes: 0,
            body_limit: None,
            client_ip: None,
            egress: None,
            status: 0,
            upstream_addr: None,
            tunnel_agent: None,
            retry_after: None,
            upstream_status: None,
            bytes_out: 0,
            audit_slot: None,
            recorded: false,
            recorders: Arc::clone(recorders),
        }
    }

    /// The matched route's config and runtime state.
    pub(crate) fn route(&self) -> Option<(&portcullis_config::Route, &RouteRuntime)> {
        self.route
            .map(|i| (&self.runtime.config.routes[i], &self.runtime.routes[i]))
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        if !self.recorded && !self.path.is_empty() {
            super::finish::record_cut(self);
        }
        self.recorders.metrics.active_requests().dec();
    }
}
