//! The live agent sessions of every tunnel, shared by the tunnel listener (which adds and
//! removes them), the request path (which picks one per upstream connection), the reload
//! (which disconnects agents whose token went away) and the admin API (which lists them).
//!
//! The state is an immutable map published through an `ArcSwap`: the request path reads it
//! with one lock-free load, and the rare changes — an agent connecting or leaving — build a new
//! map (`rcu`). Sessions are `AgentSession` handles from the broker crate; their counters
//! (open streams, bytes, last heartbeat) are atomics read without locks.
//!
//! There is no shared state between gateway instances: an agent keeps one connection to every
//! gateway it is given, so each instance's registry holds the agents connected to it.
//!
//! A process started by a graceful upgrade that took the tunnel listener over begins with
//! every tunnel *expected* ([`TunnelRegistry::expect_agents`]): the agents are still connected
//! to the old process, which closes their connections when it stops, and they reconnect to
//! this one. Until the first agent
//! of a tunnel arrives, or the reconnect grace runs out, a request for it waits for the agent
//! ([`TunnelRegistry::pick_waiting`]) instead of failing — the handover is invisible to callers.
//! Outside a handover a tunnel without agents answers at once, as before: 503 reconnecting
//! within the grace after its last agent left, 502 offline otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use portcullis_broker::server::AgentSession;
use portcullis_broker::CloseReason;
use tokio::sync::Notify;

use crate::observe::audit::{AdminRecord, AuditLog};
use crate::observe::metrics::{Metrics, TunnelSample};
use crate::runtime::Runtime;

/// Agent ids remembered per tunnel to tell a reconnect from a first connect; beyond this a
/// tunnel stops learning new ids (they count as first connects).
const MAX_REMEMBERED_AGENTS: usize = 1024;
/// The longest `Retry-After` a reconnecting tunnel answers with, in seconds: agents reconnect
/// within seconds, so a caller should come back soon rather than at the end of the grace.
const MAX_RETRY_AFTER_SECONDS: u64 = 5;

/// The live sessions of every tunnel.
pub(crate) struct TunnelRegistry {
    live: ArcSwap<Live>,
    /// Round-robin start among equally busy agents.
    next: AtomicUsize,
    /// How long a tunnel whose agents all left answers "reconnecting".
    grace: Duration,
    /// Woken whenever an agent registers (requests waiting for an expected tunnel).
    registered: Notify,
    metrics: Arc<Metrics>,
    audit: AuditLog,
}

/// Where a new upstream connection of a tunnel route can go.
#[derive(Debug)]
pub(crate) enum Pick {
    /// This agent.
    Agent(AgentSession),
    /// No agent, and none left recently: 502 `tunnel_offline`.
    Offline,
    /// Every agent left less than the grace window ago: 503 `tunnel_reconnecting`.
    Reconnecting {
        /// What to send in `Retry-After`.
        retry_after: Duration,
    },
}

/// One tunnel as the admin API shows it.
#[derive(Debug)]
pub(crate) struct TunnelView {
    /// Connected agents.
    pub(crate) agents: Vec<AgentSession>,
    /// Whether the last agent left within the grace window.
    pub(crate) reconnecting: bool,
}

/// The published state.
#[derive(Clone, Default)]
struct Live {
    tunnels: HashMap<Arc<str>, LiveTunnel>,
}

#[derive(Clone)]
struct LiveTunnel {
    tenant: Arc<str>,
    agents: Vec<LiveAgent>,
    /// When the last agent left, if it did not leave because its token was revoked.
    last_left: Option<Instant>,
    /// Until when agents are expected though none has connected to this process yet (a
    /// graceful upgrade: they come over from the old process).
    expected_until: Option<Instant>,
    /// Agent ids seen since the process started (bounded), to count reconnects.
    seen: Arc<std::collections::HashSet<String>>,
    /// Bytes of sessions that have ended, so the exported counters never go down.
    retired: Arc<Retired>,
}

#[derive(Clone)]
struct LiveAgent {
    session: AgentSession,
    /// SHA-256 of the token the agent presented.
    token: [u8; 32],
}

#[derive(Default)]
struct Retired {
    to_agent: AtomicU64,
    from_agent: AtomicU64,
}

// === impl TunnelRegistry ===

impl TunnelRegistry {
    /// An empty registry. `grace` is `[tunnel] reconnect_grace_ms`.
    pub(crate) fn new(grace: Duration, metrics: Arc<Metrics>, audit: AuditLog) -> Self {
        Self {
            live: ArcSwap::from_pointee(Live::default()),
            next: AtomicUsize::new(0),
            grace,
            registered: Notify::new(),
            metrics,
            audit,
        }
    }

    /// The agent a new upstream connection of `tunnel` (owned by `tenant`) should use: the one
    /// with the fewest open streams, ties taken in turn. Lock-free.
    pub(crate) fn pick(&self, tunnel: &str, tenant: &str) -> Pick {
        let live = self.live.load();
        let Some(entry) = live.tunnels.get(tunnel) else {
            return Pick::Offline;
        };
        let n = entry.agents.len();
        let start = if n > 1 {
            self.next.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let mut best: Option<(&AgentSession, u64)> = None;
        for i in 0..n {
            let session = &entry.agents[(start + i) % n].session;
            // A session of another tenant can never be registered under this tunnel; checked
            // again here so that no bug elsewhere could route one tenant's request to another's
            // agent.
            if session.is_closed() || session.info().tenant != tenant {
                continue;
            }
            let open = session.stats().open_streams;
            if best.is_none_or(|(_, fewest)| open < fewest) {
                best = Some((session, open));
            }
        }
        if let Some((session, _)) = best {
            return Pick::Agent(session.clone());
        }
        let now = Instant::now();
        let expected = entry
            .expected_until
            .filter(|until| *until > now && *entry.tenant == *tenant);
        let reconnecting = entry
            .last_left
            .map(|left| left + self.grace)
            .filter(|until| *until > now);
        match expected.max(reconnecting) {
            Some(until) => {
                let seconds = (until - now).as_secs().clamp(1, MAX_RETRY_AFTER_SECONDS);
                Pick::Reconnecting {
                    retry_after: Duration::from_secs(seconds),
                }
            }
            None => Pick::Offline,
        }
    }

    /// As [`TunnelRegistry::pick`], but while the tunnel is *expected* (a graceful upgrade,
    /// before its first agent arrives here) waits for an agent, until `limit` or the end of
    /// the reconnect grace, whichever comes first. A tunnel that had agents in this process
    /// and lost them answers at once.
    pub(crate) async fn pick_waiting(&self, tunnel: &str, tenant: &str, limit: Instant) -> Pick {
        // Bounded: each turn ends in an answer, a registration, or one of two deadlines.
        loop {
            let notified = self.registered.notified();
            tokio::pin!(notified);
            // Registered before looking, so an agent arriving in between is not missed.
            notified.as_mut().enable();
            let pick = self.pick(tunnel, tenant);
            if !matches!(pick, Pick::Reconnecting { .. }) {
                return pick;
            }
            let Some(until) = self.expected_until(tunnel) else {
                return pick;
            };
            let wake = until.min(limit);
            if Instant::now() >= wake {
                return pick;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// When `tunnel` stops being expected, while it is.
    fn expected_until(&self, tunnel: &str) -> Option<Instant> {
        let live = self.live.load();
        let until = live.tunnels.get(tunnel)?.expected_until?;
        (until > Instant::now()).then_some(until)
    }

    /// Marks `tunnels` (name, tenant) as expected for the reconnect grace: this process took
    /// over from one whose agents reconnect here once it stops (`run --upgrade`).
    pub(crate) fn expect_agents<'a>(&self, tunnels: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let until = Instant::now() + self.grace;
        let tunnels: Vec<(&str, &str)> = tunnels.into_iter().collect();
        self.live.rcu(|live| {
            let mut live = Live::clone(live);
            for &(tunnel, tenant) in &tunnels {
                live.tunnels.insert(
                    Arc::from(tunnel),
                    LiveTunnel {
                        tenant: Arc::from(tenant),
                        agents: Vec::new(),
                        last_left: None,
                        expected_until: Some(until),
                        seen: Arc::default(),
                        retired: Arc::default(),
                    },
                );
            }
            live
        });
    }

    /// Closes every agent connection with `reason` (the gateway is stopping: its agents
    /// reconnect to whichever gateway listens next). Returns how many were open.
    pub(crate) fn close_all(&self, reason: CloseReason, message: &str) -> usize {
        let live = self.live.load();
        let mut closed = 0;
        for agent in live.tunnels.values().flat_map(|t| &t.agents) {
            if !agent.session.is_closed() {
                closed += 1;
            }
            agent.session.close(reason, message);
        }
        closed
    }

    /// Agent sessions still registered (an ended session leaves once its end is recorded).
    pub(crate) fn registered_agents(&self) -> usize {
        self.live
            .load()
            .tunnels
            .values()
            .map(|t| t.agents.len())
            .sum()
    }

    /// Adds a session that authenticated with the token hashed `token`. Audits the connect and
    /// counts a reconnect when the agent id was seen before on this tunnel.
    pub(crate) fn register(&self, session: &AgentSession, token: [u8; 32]) {
        let info = session.info();
        let tunnel: Arc<str> = Arc::from(info.tunnel.as_str());
        let mut reconnect = false;
        self.live.rcu(|live| {
            let mut live = Live::clone(live);
            let entry = live
                .tunnels
                .entry(Arc::clone(&tunnel))
                .or_insert_with(|| LiveTunnel {
                    tenant: Arc::from(info.tenant.as_str()),
                    agents: Vec::new(),
                    last_left: None,
                    expected_until: None,
                    seen: Arc::default(),
                    retired: Arc::default(),
                });
            if *entry.tenant != *info.tenant {
                // The tunnel changed hands in a reload; its old agents are being revoked.
                entry.tenant = Arc::from(info.tenant.as_str());
                entry.agents.clear();
            }
            reconnect = entry.seen.contains(&info.agent_id);
            if !reconnect && entry.seen.len() < MAX_REMEMBERED_AGENTS {
                let mut seen = (*entry.seen).clone();
                seen.insert(info.agent_id.clone());
                entry.seen = Arc::new(seen);
            }
            entry.agents.push(LiveAgent {
                session: session.clone(),
                token,
            });
            // Arrived: from now on the tunnel follows the ordinary rules.
            entry.expected_until = None;
            live
        });
        self.registered.notify_waiters();
        if reconnect {
            self.metrics
                .tunnels()
                .reconnected(&info.tenant, &info.tunnel);
        }
        tracing::info!(
            tunnel = %info.tunnel,
            tenant = %info.tenant,
            agent_id = %info.agent_id,
            agent_version = %info.agent_version,
            remote = %info.remote,
            transport = ?info.transport,
            tls = info.tls,
            "tunnel agent connected"
        );
        self.audit.record_admin(AdminRecord::new(
            "tunnel_connect",
            "success",
            serde_json::json!({
                "tunnel": info.tunnel,
                "tenant": info.tenant,
                "agent_id": info.agent_id,
                "agent_version": info.agent_version,
                "remote": info.remote.to_string(),
                "transport": format!("{:?}", info.transport).to_lowercase(),
                "tls": info.tls,
                "session": info.session_id,
                "reconnect": reconnect,
            }),
        ));
    }

    /// Removes a session that ended, with why; audits the disconnect.
    pub(crate) fn unregister(&self, session: &AgentSession, reason: CloseReason, message: &str) {
        let info = session.info();
        let id = info.session_id;
        let stats = session.stats();
        self.live.rcu(|live| {
            let mut live = Live::clone(live);
            if let Some(entry) = live.tunnels.get_mut(info.tunnel.as_str()) {
                let before = entry.agents.len();
                entry.agents.retain(|a| a.session.info().session_id != id);
                if entry.agents.len() < before && entry.agents.is_empty() {
                    entry.last_left = (reason != CloseReason::Revoked).then(Instant::now);
                }
            }
            live
        });
        if let Some(entry) = self.live.load().tunnels.get(info.tunnel.as_str()) {
            entry
                .retired
                .to_agent
                .fetch_add(stats.bytes_to_agent, Ordering::Relaxed);
            entry
                .retired
                .from_agent
                .fetch_add(stats.bytes_from_agent, Ordering::Relaxed);
        }
        let connected_for = info.connected_at.elapsed().unwrap_or_default();
        tracing::warn!(
            tunnel = %info.tunnel,
            agent_id = %info.agent_id,
            remote = %info.remote,
            reason = %reason,
            connected_seconds = connected_for.as_secs(),
            "tunnel agent disconnected: {message}"
        );
        self.audit.record_admin(AdminRecord::new(
            "tunnel_disconnect",
            reason.as_str(),
            serde_json::json!({
                "tunnel": info.tunnel,
                "tenant": info.tenant,
                "agent_id": info.agent_id,
                "agent_version": info.agent_version,
                "remote": info.remote.to_string(),
                "session": info.session_id,
                "reason": reason.as_str(),
                "message": message,
                "connected_seconds": connected_for.as_secs_f64(),
                "bytes_to_agent": stats.bytes_to_agent,
                "bytes_from_agent": stats.bytes_from_agent,
                "streams": stats.streams_total,
            }),
        ));
    }

    /// Applies a newly published runtime: every agent whose token no longer opens its tunnel
    /// (token removed, tunnel removed or given to another tenant) is disconnected with
    /// `revoked`, and tunnels the config no longer has are forgotten.
    ///
    /// A handshake that checked its token against the previous runtime and registers after
    /// this ran is caught by [`TunnelRegistry::still_allowed`], which the listener calls after
    /// registering.
    pub(crate) fn apply(&self, runtime: &Runtime) {
        let live = self.live.load_full();
        for (tunnel, entry) in &live.tunnels {
            for agent in &entry.agents {
                if !runtime
                    .tunnel_tokens
                    .still_grants(&agent.token, tunnel, &entry.tenant)
                {
                    revoke(&agent.session);
                }
            }
        }
        self.live.rcu(|live| {
            let mut live = Live::clone(live);
            live.tunnels
                .retain(|name, _| runtime.config.tunnels.iter().any(|t| *t.name == **name));
            live
        });
    }

    /// Whether a just-registered session's token still opens its tunnel in `runtime`; if not
    /// it is disconnected (a reload removed the token while the agent was handshaking).
    pub(crate) fn still_allowed(
        &self,
        session: &AgentSession,
        token: &[u8; 32],
        runtime: &Runtime,
    ) -> bool {
        let info = session.info();
        let allowed = runtime
            .tunnel_tokens
            .still_grants(token, &info.tunnel, &info.tenant);
        if !allowed {
            revoke(session);
        }
        allowed
    }

    /// The tunnel's connected agents and state, for the admin API.
    pub(crate) fn view(&self, tunnel: &str) -> TunnelView {
        let live = self.live.load();
        match live.tunnels.get(tunnel) {
            None => TunnelView {
                agents: Vec::new(),
                reconnecting: false,
            },
            Some(entry) => {
                let agents: Vec<AgentSession> = entry
                    .agents
                    .iter()
                    .filter(|a| !a.session.is_closed())
                    .map(|a| a.session.clone())
                    .collect();
                let now = Instant::now();
                let reconnecting = agents.is_empty()
                    && (entry.last_left.is_some_and(|l| l.elapsed() < self.grace)
                        || entry.expected_until.is_some_and(|u| u > now));
                TunnelView {
                    agents,
                    reconnecting,
                }
            }
        }
    }

    /// Brings the tunnel metrics up to date for every tunnel of `runtime` (called before a
    /// scrape): agents, open streams, bytes each way.
    pub(crate) fn sync_metrics(&self, runtime: &Runtime) {
        let live = self.live.load();
        let samples: Vec<TunnelSample<'_>> = runtime
            .config
            .tunnels
            .iter()
            .map(|t| {
                let tenant = runtime.config.tenants[t.tenant].id.as_str();
                let mut sample = TunnelSample {
                    tenant,
                    tunnel: t.name.as_str(),
                    agents: 0,
                    streams_open: 0,
                    bytes_to_agent: 0,
                    bytes_from_agent: 0,
                };
                if let Some(entry) = live.tunnels.get(t.name.as_str()) {
                    sample.bytes_to_agent = entry.retired.to_agent.load(Ordering::Relaxed);
                    sample.bytes_from_agent = entry.retired.from_agent.load(Ordering::Relaxed);
                    for agent in &entry.agents {
                        let stats = agent.session.stats();
                        if !agent.session.is_closed() {
                            sample.agents += 1;
                        }
                        sample.streams_open += stats.open_streams;
                        sample.bytes_to_agent += stats.bytes_to_agent;
                        sample.bytes_from_agent += stats.bytes_from_agent;
                    }
                }
                sample
            })
            .collect();
        self.metrics.tunnels().sync(&samples);
    }
}

impl std::fmt::Debug for TunnelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.live.load();
        f.debug_struct("TunnelRegistry")
            .field("tunnels", &live.tunnels.len())
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

fn revoke(session: &AgentSession) {
    let info = session.info();
    tracing::warn!(
        tunnel = %info.tunnel,
        agent_id = %info.agent_id,
        remote = %info.remote,
        "disconnecting tunnel agent: its token no longer opens this tunnel"
    );
    session.close(
        CloseReason::Revoked,
        "the token was removed from the gateway config",
    );
}

#[cfg(test)]
mod tests;
