//! Fixed admin-API data for the unit and snapshot tests: a gateway with routes in every
//! state, secrets in every state, tunnels online and offline, and a little traffic, all at a
//! fixed "now" so every rendering is reproducible.

#![allow(clippy::unwrap_used)]

use portcullis_api::*;

use crate::model::{Model, Msg, Poll};
use crate::update;

/// The fixed wall clock of the fixtures (2023-11-14 22:13:20Z).
pub(crate) const NOW: u64 = 1_700_000_000_000;

const MIN: u64 = 60_000;
const DAY: u64 = 24 * 60 * MIN;

pub(crate) fn status(requests: u64) -> Status {
    Status {
        version: "0.1.0".into(),
        pid: 4242,
        started_at_ms: NOW - 3_725_000,
        uptime_seconds: 3725.0,
        listeners: Listeners {
            http: vec!["127.0.0.1:8080".parse().unwrap()],
            https: vec![],
            admin: "127.0.0.1:9901".parse().unwrap(),
            tunnel: None,
            tcp_routes: vec![],
        },
        config: ConfigInfo {
            hash: "3f1c2a9be4d07c55a1e8f0b2d6c4e9a7b1f3d5c7e9a0b2c4d6e8f0a1b3c5d7e9".into(),
            source: "/etc/portcullis/portcullis.toml".into(),
            loaded_at_ms: NOW - 5 * MIN,
        },
        last_reload: ReloadStatus {
            result: ReloadResult::Error,
            trigger: ReloadTrigger::File,
            at_ms: NOW - 30_000,
            duration_ms: 3.2,
            active_hash: "3f1c2a9be4d07c55a1e8f0b2d6c4e9a7b1f3d5c7e9a0b2c4d6e8f0a1b3c5d7e9".into(),
            errors: vec![
                "/etc/portcullis/portcullis.toml:41:8: error: unknown field `targt`, expected one of `target`, `targets`".into(),
                "/etc/portcullis/portcullis.toml:57:1: error: route 'acme-jira': duplicate route name".into(),
            ],
            restart_required: vec![],
        },
        egress_pools: vec![EgressPool {
            name: "default".into(),
            addresses: vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
            upcoming: vec!["127.0.0.4".parse().unwrap()],
            retiring: vec![],
        }],
        counts: Counts {
            tenants: 5,
            routes: 5,
            secrets: 6,
            secrets_missing: 3,
            requests,
            active_requests: 3,
            tunnels: 3,
            tunnels_online: 1,
        },
        audit: AuditStatus {
            enabled: true,
            policy: AuditPolicy::Drop,
            written: 12_345,
            dropped: 0,
            write_errors: 0,
            refused: 0,
            healthy: true,
            head_seq: 12_345,
            head_hash: "ab".repeat(32),
        },
    }
}

fn route(
    name: &str,
    tenant: &str,
    rps: f64,
    err: f64,
    p50: Option<f64>,
    p99: Option<f64>,
) -> RouteStatus {
    RouteStatus {
        name: name.into(),
        tenant: tenant.into(),
        host: None,
        path: format!("/{}", name.replace('-', "/")),
        methods: "*".into(),
        public: false,
        auth: AuthMode::Inject,
        upstream: UpstreamKind::Saas,
        tunnel: None,
        targets: vec![format!("https://{name}.example.com")],
        egress_pool: Some("default".into()),
        secrets_missing: vec![],
        stats: WindowStats {
            requests: (rps * 60.0) as u64,
            requests_per_second: rps,
            error_rate: err,
            p50_seconds: p50,
            p99_seconds: p99,
        },
        upstreams: vec![
            UpstreamHealth {
                address: "203.0.113.10:443".into(),
                healthy: true,
            },
            UpstreamHealth {
                address: "203.0.113.11:443".into(),
                healthy: true,
            },
        ],
    }
}

pub(crate) fn routes() -> Routes {
    let jira = route("acme-jira", "acme", 12.5, 0.0, Some(0.045), Some(0.32));
    let mut pd = route("acme-pd", "acme", 3.2, 0.12, Some(0.11), Some(1.9));
    pd.upstreams[1].healthy = false;
    let mut dd = route("globex-datadog", "globex", 0.0, 0.0, None, None);
    dd.auth = AuthMode::Passthrough;
    let mut wiki = route("initech-wiki", "initech", 0.4, 0.0, Some(0.08), Some(0.2));
    wiki.upstream = UpstreamKind::Tunnel;
    wiki.tunnel = Some("initech-dc".into());
    wiki.upstreams = vec![];
    let mut ci = route(
        "umbrella-ci",
        "umbrella",
        0.9,
        1.0,
        Some(0.0004),
        Some(0.001),
    );
    ci.auth = AuthMode::Exchange;
    ci.secrets_missing = vec!["ci-token".into()];
    Routes {
        routes: vec![jira, pd, dd, wiki, ci],
    }
}

fn secret(tenant: &str, name: &str, state: SecretState) -> SecretStatus {
    SecretStatus {
        tenant: tenant.into(),
        name: name.into(),
        status: state,
        source: if state == SecretState::Missing {
            SecretSourceKind::None
        } else {
            SecretSourceKind::File
        },
        location: if state == SecretState::Missing {
            SecretLocation::Searched(vec![
                format!("/run/secrets/{tenant}/{name}"),
                format!(
                    "$PORTCULLIS_SECRET_{}_{}",
                    tenant.to_uppercase(),
                    name.to_uppercase()
                ),
            ])
        } else {
            SecretLocation::Found(format!("/run/secrets/{tenant}/{name}"))
        },
        fingerprint: (state != SecretState::Missing).then(|| "fp:9c2e41d0".into()),
        loaded_at_ms: NOW - 5 * MIN,
        rotated_at_ms: Some(NOW - 2 * DAY),
        expires_at_ms: None,
        last_used_at_ms: Some(NOW - 4_000),
        use_count: 1234,
        last_upstream_auth_failure: None,
        routes: vec![format!("{tenant}-route")],
    }
}

pub(crate) fn secrets() -> Secrets {
    let ok = secret("acme", "jira-token", SecretState::Present);
    let mut expiring = secret("acme", "pd-key", SecretState::Present);
    expiring.expires_at_ms = Some(NOW + 3 * DAY);
    let mut rejected = secret("globex", "dd-api-key", SecretState::Present);
    rejected.last_upstream_auth_failure = Some(AuthFailure {
        at_ms: NOW - 5 * MIN,
        status: 401,
    });
    let mut expired = secret("initech", "wiki-token", SecretState::Present);
    expired.expires_at_ms = Some(NOW - DAY);
    let mut missing = secret("umbrella", "ci-token", SecretState::Missing);
    missing.last_used_at_ms = None;
    missing.use_count = 0;
    missing.rotated_at_ms = None;
    let broken = secret("umbrella", "ci-key", SecretState::Undecryptable);
    Secrets {
        secrets: vec![ok, expiring, rejected, expired, missing, broken],
        exchanges: vec![ExchangeStatus {
            tenant: "umbrella".into(),
            route: "umbrella-ci".into(),
            token_cached_until_ms: None,
            last_exchange_at_ms: Some(NOW - 2 * MIN),
            exchanges: 7,
            last_error: Some("secret 'ci-token' is missing".into()),
        }],
    }
}

pub(crate) fn tunnels() -> Tunnels {
    let agent = |id: &str, addr: &str| AgentStatus {
        id: id.into(),
        version: "0.1.0".into(),
        remote_addr: addr.into(),
        connected_since_ms: NOW - 3 * 3_600_000,
        open_streams: 4,
        bytes_to_agent: 1_572_864,
        bytes_from_agent: 48_234_496,
        last_heartbeat_ms: NOW - 2_000,
    };
    Tunnels {
        tunnels: vec![
            TunnelStatus {
                name: "initech-dc".into(),
                tenant: "initech".into(),
                state: TunnelState::Online,
                routes: vec!["initech-wiki".into()],
                agents: vec![
                    agent("agent-a1", "198.51.100.7:53211"),
                    agent("agent-a2", "198.51.100.8:40022"),
                ],
            },
            TunnelStatus {
                name: "hooli-lab".into(),
                tenant: "hooli".into(),
                state: TunnelState::Reconnecting,
                routes: vec!["hooli-git".into()],
                agents: vec![],
            },
            TunnelStatus {
                name: "umbrella-vpn".into(),
                tenant: "umbrella".into(),
                state: TunnelState::Offline,
                routes: vec!["umbrella-db".into()],
                agents: vec![],
            },
        ],
    }
}

pub(crate) fn entry(seq: u64, route: &str, status: u16, denial: Option<&str>) -> TrafficEntry {
    let tenant = route.split('-').next().unwrap_or("");
    TrafficEntry {
        seq,
        time_ms: NOW - 10_000 + seq * 1000 + 7,
        tenant: Some(tenant.into()),
        route: Some(route.into()),
        method: if seq.is_multiple_of(3) { "POST" } else { "GET" }.into(),
        path: format!("/{}/issues/{seq}?expand", route.replace('-', "/")),
        status,
        denial: denial.map(Into::into),
        duration_ms: 3.0 + seq as f64 * 10.0,
        bytes_in: 0,
        bytes_out: 2048 * seq,
        egress: Some("127.0.0.2".parse().unwrap()),
        upstream: Some("203.0.113.10:443".into()),
        request_id: format!("01HF{seq:04}"),
    }
}

pub(crate) fn traffic() -> TrafficPage {
    TrafficPage {
        entries: vec![
            entry(1, "acme-jira", 200, None),
            entry(2, "acme-jira", 201, None),
            entry(3, "acme-pd", 502, Some("upstream_connect_refused")),
            entry(4, "globex-datadog", 401, Some("unauthenticated")),
            entry(5, "acme-jira", 304, None),
            entry(6, "umbrella-ci", 503, Some("secret_missing")),
            entry(7, "acme-pd", 200, None),
            entry(8, "initech-wiki", 403, Some("path_denied")),
        ],
        next: 8,
        gap: false,
    }
}

/// A model as it is after two polls and a page of traffic, at [`NOW`].
pub(crate) fn model() -> Model {
    let mut model = Model::new("http://127.0.0.1:9901", 5000);
    update(
        &mut model,
        Msg::Tick {
            now_ms: NOW - 2_000,
        },
    );
    update(&mut model, Msg::Traffic(traffic()));
    for (i, requests) in [1000u64, 1010, 1040, 1020 + 60, 1150, 1190]
        .iter()
        .enumerate()
    {
        let at_ms = NOW - 6_000 + i as u64 * 1000;
        update(&mut model, Msg::Polled(Box::new(poll(at_ms, *requests))));
    }
    update(&mut model, Msg::Tick { now_ms: NOW });
    model
}

pub(crate) fn poll(at_ms: u64, requests: u64) -> Poll {
    Poll {
        at_ms,
        status: status(requests),
        routes: routes(),
        secrets: secrets(),
        tunnels: Some(tunnels()),
    }
}
