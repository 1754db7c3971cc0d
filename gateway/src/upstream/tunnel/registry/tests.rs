//! The registry's choices, over real agent sessions: the broker crate's agent, in this process,
//! connected over loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_broker::agent::{self, AgentConfig};
use portcullis_broker::server::{self, ServerOptions, StaticTokens, TunnelGrant};
use portcullis_broker::{CloseReason, StreamKind};
use tokio::sync::oneshot;

use super::{Pick, TunnelRegistry};
use crate::observe::audit::AuditLog;
use crate::observe::metrics::Metrics;

/// A loopback "gateway" accepting agents of tunnel `acme-dc1` (tenant `acme`) with `TOKEN`.
struct Harness {
    listener: tokio::net::TcpListener,
    tokens: StaticTokens,
    dir: tempfile::TempDir,
    /// Stops every agent when dropped.
    stops: Vec<oneshot::Sender<()>>,
}

const TOKEN: &str = "registry-test-token";

impl Harness {
    async fn new() -> Self {
        let mut tokens = StaticTokens::new();
        tokens.insert(
            server::token_sha256(TOKEN),
            TunnelGrant {
                tunnel: "acme-dc1".into(),
                tenant: "acme".into(),
            },
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        Self {
            listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokens,
            dir,
            stops: Vec::new(),
        }
    }

    /// Starts an agent with `id` and returns its session as the gateway sees it.
    async fn session(&mut self, id: &str) -> portcullis_broker::server::AgentSession {
        let addr: SocketAddr = self.listener.local_addr().unwrap();
        let text = format!(
            "gateways = [\"{addr}\"]\ntoken_file = \"token\"\ninsecure_plaintext = true\n\
             agent_id = \"{id}\"\n[[origins]]\nname = \"sonar\"\nurl = \"http://127.0.0.1:9\"\n"
        );
        let config = AgentConfig::compile(&self.dir.path().join("agent.toml"), &text).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(agent::run(config, async {
            let _ = stopped.await;
        }));
        self.stops.push(stop);
        let (tcp, remote) = self.listener.accept().await.unwrap();
        server::accept(
            tcp,
            remote,
            &self.tokens,
            &ServerOptions::insecure_plaintext(),
        )
        .await
        .unwrap()
    }
}

fn registry(grace: Duration) -> TunnelRegistry {
    TunnelRegistry::new(grace, Metrics::new("test"), AuditLog::disabled())
}

fn agent_of(pick: Pick) -> String {
    match pick {
        Pick::Agent(session) => session.info().agent_id.clone(),
        other => panic!("expected an agent, got {other:?}"),
    }
}

#[tokio::test]
async fn new_streams_go_to_the_least_busy_agent_of_the_right_tenant() {
    let mut h = Harness::new().await;
    let registry = registry(Duration::from_secs(30));
    assert!(matches!(registry.pick("acme-dc1", "acme"), Pick::Offline));

    let a = h.session("agent-a").await;
    let b = h.session("agent-b").await;
    registry.register(&a, server::token_sha256(TOKEN));
    registry.register(&b, server::token_sha256(TOKEN));
    // Equally idle: taken in turn.
    let mut seen: Vec<String> = (0..4)
        .map(|_| agent_of(registry.pick("acme-dc1", "acme")))
        .collect();
    seen.sort();
    assert_eq!(seen, ["agent-a", "agent-a", "agent-b", "agent-b"]);

    // A stream open on A: everything new goes to B until it has as many.
    let _busy = a.open_stream(StreamKind::Http).await.unwrap();
    for _ in 0..4 {
        assert_eq!(agent_of(registry.pick("acme-dc1", "acme")), "agent-b");
    }
    // Another tenant's request never gets these agents, whatever the tunnel name says.
    assert!(matches!(registry.pick("acme-dc1", "globex"), Pick::Offline));
    assert!(matches!(registry.pick("other", "acme"), Pick::Offline));
    assert_eq!(registry.view("acme-dc1").agents.len(), 2);
}

#[tokio::test]
async fn agents_gone_within_the_grace_are_reconnecting_then_offline_and_revoked_ones_offline_at_once(
) {
    let mut h = Harness::new().await;

    // Lost: reconnecting, with a short Retry-After.
    let registry30 = registry(Duration::from_secs(30));
    let a = h.session("agent-a").await;
    registry30.register(&a, server::token_sha256(TOKEN));
    registry30.unregister(&a, CloseReason::ConnectionLost, "test");
    match registry30.pick("acme-dc1", "acme") {
        Pick::Reconnecting { retry_after } => {
            assert!((1..=5).contains(&retry_after.as_secs()), "{retry_after:?}");
        }
        other => panic!("expected reconnecting, got {other:?}"),
    }
    assert!(registry30.view("acme-dc1").reconnecting);

    // No grace configured: offline at once.
    let registry0 = registry(Duration::ZERO);
    registry0.register(&a, server::token_sha256(TOKEN));
    registry0.unregister(&a, CloseReason::HeartbeatTimeout, "test");
    assert!(matches!(registry0.pick("acme-dc1", "acme"), Pick::Offline));

    // Revoked: nobody is coming back with that token.
    let registry30 = registry(Duration::from_secs(30));
    registry30.register(&a, server::token_sha256(TOKEN));
    registry30.unregister(&a, CloseReason::Revoked, "test");
    assert!(matches!(registry30.pick("acme-dc1", "acme"), Pick::Offline));
    assert!(!registry30.view("acme-dc1").reconnecting);

    // One of two leaving changes nothing for the tunnel's state.
    let registry30 = registry(Duration::from_secs(30));
    let b = h.session("agent-b").await;
    registry30.register(&a, server::token_sha256(TOKEN));
    registry30.register(&b, server::token_sha256(TOKEN));
    registry30.unregister(&a, CloseReason::ConnectionLost, "test");
    assert_eq!(agent_of(registry30.pick("acme-dc1", "acme")), "agent-b");
}

#[tokio::test]
async fn a_closed_session_is_never_picked_even_before_it_is_unregistered() {
    let mut h = Harness::new().await;
    let registry = Arc::new(registry(Duration::from_secs(30)));
    let a = h.session("agent-a").await;
    let b = h.session("agent-b").await;
    registry.register(&a, server::token_sha256(TOKEN));
    registry.register(&b, server::token_sha256(TOKEN));
    a.close(CloseReason::Shutdown, "test");
    tokio::time::timeout(Duration::from_secs(10), a.closed())
        .await
        .unwrap();
    for _ in 0..4 {
        assert_eq!(agent_of(registry.pick("acme-dc1", "acme")), "agent-b");
    }
}

#[tokio::test]
async fn after_an_upgrade_a_request_waits_for_the_expected_agent_then_tunnels_answer_at_once() {
    let mut h = Harness::new().await;
    let registry = Arc::new(registry(Duration::from_secs(30)));
    registry.expect_agents([("acme-dc1", "acme")]);
    assert!(registry.view("acme-dc1").reconnecting);
    // Without waiting: reconnecting, as the admin API shows it.
    assert!(matches!(
        registry.pick("acme-dc1", "acme"),
        Pick::Reconnecting { .. }
    ));
    // Another tenant never waits for this tunnel's agents.
    assert!(matches!(
        registry
            .pick_waiting(
                "acme-dc1",
                "globex",
                Instant::now() + Duration::from_secs(30)
            )
            .await,
        Pick::Offline
    ));
    // A request whose own deadline comes first gets 503 reconnecting at its deadline.
    let limit = Instant::now() + Duration::from_millis(50);
    assert!(matches!(
        registry.pick_waiting("acme-dc1", "acme", limit).await,
        Pick::Reconnecting { .. }
    ));
    assert!(Instant::now() >= limit);

    // A request waiting when the agent arrives gets that agent.
    let waiting = tokio::spawn({
        let registry = Arc::clone(&registry);
        async move {
            registry
                .pick_waiting("acme-dc1", "acme", Instant::now() + Duration::from_secs(30))
                .await
        }
    });
    let a = h.session("agent-a").await;
    registry.register(&a, server::token_sha256(TOKEN));
    let picked = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting request got its agent")
        .unwrap();
    assert_eq!(agent_of(picked), "agent-a");

    // Arrived once: losing it is the ordinary "reconnecting", answered at once.
    registry.unregister(&a, CloseReason::ConnectionLost, "test");
    let started = Instant::now();
    assert!(matches!(
        registry
            .pick_waiting("acme-dc1", "acme", Instant::now() + Duration::from_secs(30))
            .await,
        Pick::Reconnecting { .. }
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_expected_tunnel_whose_agent_never_comes_is_offline_after_the_grace() {
    let registry = registry(Duration::from_millis(100));
    registry.expect_agents([("acme-dc1", "acme")]);
    assert!(matches!(
        registry
            .pick_waiting("acme-dc1", "acme", Instant::now() + Duration::from_secs(30))
            .await,
        Pick::Offline
    ));
    assert!(!registry.view("acme-dc1").reconnecting);
}

#[tokio::test]
async fn close_all_ends_every_agent_connection() {
    let mut h = Harness::new().await;
    let registry = registry(Duration::from_secs(30));
    let a = h.session("agent-a").await;
    let b = h.session("agent-b").await;
    registry.register(&a, server::token_sha256(TOKEN));
    registry.register(&b, server::token_sha256(TOKEN));
    assert_eq!(registry.registered_agents(), 2);
    assert_eq!(registry.close_all(CloseReason::Shutdown, "stopping"), 2);
    for session in [&a, &b] {
        let (reason, _) = tokio::time::timeout(Duration::from_secs(10), session.closed())
            .await
            .unwrap();
        assert_eq!(reason, CloseReason::Shutdown);
        registry.unregister(session, reason, "stopping");
    }
    assert_eq!(registry.registered_agents(), 0);
    assert_eq!(registry.close_all(CloseReason::Shutdown, "stopping"), 0);
}
