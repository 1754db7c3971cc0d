//! End-to-end tests of broker tunnels: the real `portcullis` gateway, the real
//! `portcullis-agent`, mock internal origins that record what they received and a TCP echo
//! server — all processes and sockets on loopback, TLS with a test CA.

// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::agent::{echo_server, AgentProcess, AgentSetup};
use support::upgrade::{upgrade, RequestLoop};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "acme-key";
const GLOBEX_KEY: &str = "globex-key";
const ADMIN_TOKEN: &str = "admin-token-for-tunnel-tests-0b7e";
/// The broker tokens the gateway knows (by hash).
const TOKEN_A: &str = "broker-token-acme-a-5f1d9c";
const TOKEN_B: &str = "broker-token-acme-b-88e2a0";
const TOKEN_GLOBEX: &str = "broker-token-globex-31c7";
/// The credential only the agent has; the gateway must never see it.
const AGENT_SECRET: &str = "sonar-credential-only-the-agent-has-91d";

/// Gateway settings a test may vary.
struct Gw<'a> {
    /// `[tunnel] listen`.
    tunnel_listen: &'a str,
    /// Tokens of tunnel `acme-dc1`.
    acme_tokens: &'a [&'a str],
    /// `[tunnel] reconnect_grace_ms`.
    grace_ms: u64,
    /// Appended to the config.
    extra: &'a str,
    /// Appended to `[server]`.
    server: &'a str,
}

impl Default for Gw<'_> {
    fn default() -> Self {
        Self {
            tunnel_listen: "{TUNNEL_LISTEN}",
            acme_tokens: &[TOKEN_A, TOKEN_B],
            grace_ms: 30_000,
            extra: "",
            server: "",
        }
    }
}

fn gateway_config(gw: &Gw<'_>) -> String {
    let acme_tokens: Vec<String> = gw
        .acme_tokens
        .iter()
        .map(|t| format!("\"{}\"", sha256_hex(t)))
        .collect();
    format!(
        r#"
[server]
listen = ["{{LISTEN}}"]
admin_listen = "{{ADMIN}}"
{server}

[admin]
token_file = "{{DIR}}/admin-token"

[audit]
sink = "file"
path = "{{DIR}}/audit.jsonl"

[tunnel]
listen = "{tunnel_listen}"
cert = "{{DIR}}/cert.pem"
key = "{{DIR}}/key.pem"
heartbeat_interval_ms = 500
heartbeat_timeout_ms = 3000
reconnect_grace_ms = {grace_ms}

[[tenants]]
id = "acme"
key_sha256 = ["{acme_key}"]

[[tenants]]
id = "globex"
key_sha256 = ["{globex_key}"]

[[tunnels]]
name = "acme-dc1"
tenant = "acme"
token_sha256 = [{acme_tokens}]

[[tunnels]]
name = "globex-hq"
tenant = "globex"
token_sha256 = ["{globex_token}"]

[[routes]]
name = "acme-sonar"
tenant = "acme"
path = "/acme/sonar"
tunnel = "acme-dc1"
target = "http://sonar"
allowed_methods = ["GET", "POST", "PUT"]
headers = {{ X-Portal = "from-the-gateway" }}

[[routes]]
name = "globex-sonar"
tenant = "globex"
path = "/globex/sonar"
tunnel = "globex-hq"
target = "http://sonar"
{extra}
"#,
        tunnel_listen = gw.tunnel_listen,
        grace_ms = gw.grace_ms,
        acme_key = sha256_hex(KEY),
        globex_key = sha256_hex(GLOBEX_KEY),
        acme_tokens = acme_tokens.join(", "),
        globex_token = sha256_hex(TOKEN_GLOBEX),
        extra = gw.extra,
        server = gw.server,
    )
}

/// Starts a gateway with the test certificate, the admin token and `gw`'s settings.
fn start_gateway(cert: &TestCert, gw: &Gw<'_>) -> GatewayProcess {
    GatewayProcess::start_with(&gateway_config(gw), &[], |dir| {
        cert.write(dir);
        std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    })
}

/// The test CA, written where agents read it.
struct Pki {
    cert: TestCert,
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let cert = TestCert::generate();
        let dir = tempfile::tempdir().unwrap();
        let (ca_file, _, _) = cert.write(dir.path());
        Self {
            cert,
            _dir: dir,
            ca_file,
        }
    }
}

/// The agent's origins: `sonar` (HTTP, the agent adds its credential and `X-Agent: <id>`, and
/// accepts `/api/**` only) and `db` (TCP).
fn origins(origin: &Upstream, agent_id: &str, tcp: Option<SocketAddr>) -> String {
    let mut text = format!(
        r#"
[[origins]]
name = "sonar"
url = "http://{}/internal"
headers = {{ Authorization = "Bearer ${{env:SONAR_TOKEN}}", X-Agent = "{agent_id}" }}
[[origins.accept]]
methods = ["GET", "POST", "PUT"]
path = "/api/**"
"#,
        origin.addr
    );
    if let Some(tcp) = tcp {
        text.push_str(&format!(
            "\n[[origins]]\nname = \"db\"\nurl = \"tcp://{tcp}\"\n"
        ));
    }
    text
}

fn start_agent(
    pki: &Pki,
    gateways: &[SocketAddr],
    token: &str,
    agent_id: &str,
    origins: &str,
) -> AgentProcess {
    start_agent_with(pki, gateways, token, agent_id, "", origins)
}

fn start_agent_with(
    pki: &Pki,
    gateways: &[SocketAddr],
    token: &str,
    agent_id: &str,
    top: &str,
    origins: &str,
) -> AgentProcess {
    AgentProcess::start(
        &AgentSetup {
            gateways,
            token,
            ca_file: &pki.ca_file,
            agent_id,
            top,
        },
        origins,
        &[("SONAR_TOKEN", AGENT_SECRET)],
    )
}

/// An origin that answers `via <X-Agent>` after `delay` for paths ending in `/slow`.
async fn origin() -> Upstream {
    UpstreamBuilder::new()
        .reply(|r| {
            let agent = r
                .headers
                .get("x-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            let mut reply = Reply::ok(&format!("via {agent}"));
            if r.uri.ends_with("/slow") {
                reply.delay = Duration::from_secs(3);
            }
            reply
        })
        .start()
        .await
}

async fn admin_get(gw: &GatewayProcess, path: &str) -> serde_json::Value {
    let resp = client()
        .get(gw.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    json(&resp.text().await.unwrap())
}

async fn metrics(gw: &GatewayProcess) -> String {
    client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The ids of the agents connected to `tunnel`, as the admin API lists them.
async fn agents(gw: &GatewayProcess, tunnel: &str) -> Vec<String> {
    let tunnels = admin_get(gw, "/api/v1/tunnels").await;
    tunnels["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tunnel)
        .unwrap()["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until exactly `ids` are connected to `tunnel` (in any order).
async fn wait_agents(gw: &GatewayProcess, tunnel: &str, ids: &[&str]) {
    let mut want: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    eventually(
        Duration::from_secs(30),
        &format!("agents {ids:?} on {tunnel}"),
        || {
            let want = want.clone();
            async move {
                let mut got = agents(gw, tunnel).await;
                got.sort();
                got == want
            }
        },
    )
    .await;
}

async fn get(gw: &GatewayProcess, path: &str, key: &str) -> (u16, String) {
    let resp = client()
        .get(gw.url(path))
        .header("x-portcullis-key", key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn audit_lines(gw: &GatewayProcess) -> Vec<serde_json::Value> {
    std::fs::read_to_string(gw.dir.path().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(json)
        .collect()
}

/// Waits until the gateway's audit log has an admin line with `action` and `result`.
async fn wait_audit(gw: &GatewayProcess, action: &str, result: &str) -> serde_json::Value {
    wait_audit_line(gw, &format!("audit line {action}/{result}"), |l| {
        l["action"] == action && l["result"] == result
    })
    .await
}

/// Waits until the gateway's audit log has a line matching `cond`.
async fn wait_audit_line(
    gw: &GatewayProcess,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut found = None;
    eventually(Duration::from_secs(30), what, || {
        let line = audit_lines(gw).into_iter().find(|l| cond(l));
        let done = line.is_some();
        found = line;
        async move { done }
    })
    .await;
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_routes_reach_the_agents_origin_under_its_rules_and_credentials() {
    let pki = Pki::new();
    let origin = origin().await;
    let gw = start_gateway(&pki.cert, &Gw::default());
    let tunnel = gw
        .tunnel_addr
        .expect("the ready file reports the tunnel listener");
    let agent = start_agent(
        &pki,
        &[tunnel],
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", None),
    );
    wait_agents(&gw, "acme-dc1", &["agent-a"]).await;

    // Allowed: the agent maps Host "sonar" to its origin, adds its own credential.
    let resp = client()
        .get(gw.url("/acme/sonar/api/projects?limit=5"))
        .header("x-portcullis-key", KEY)
        .header("authorization", "Bearer caller-sent-this")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.text().await.unwrap(), "via agent-a");
    let seen = origin.last().await;
    let h = header_map(&seen);
    assert_eq!(seen.uri, "/internal/api/projects?limit=5");
    assert_eq!(h["authorization"], format!("Bearer {AGENT_SECRET}"));
    assert_eq!(seen.headers.get_all("authorization").iter().count(), 1);
    assert_eq!(
        h["x-portal"], "from-the-gateway",
        "the gateway's injection applies"
    );
    assert!(!h.contains_key("x-portcullis-key"));

    // Denied by the agent's rules (403 agent_denied, the origin sees nothing), by the route's
    // methods (405, before the tunnel), without a key (401).
    let before = origin.count().await;
    let (status, body) = get(&gw, "/acme/sonar/admin/users", KEY).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(json(&body)["error"], "agent_denied");
    assert_eq!(json(&body)["reason"], "not_accepted");
    let resp = client()
        .delete(gw.url("/acme/sonar/api/projects"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(get(&gw, "/acme/sonar/api/x", "wrong-key").await.0, 401);
    assert_eq!(origin.count().await, before);

    // The admin API, metrics and audit show the tunnel.
    let tunnels = admin_get(&gw, "/api/v1/tunnels").await;
    let acme = &tunnels["tunnels"][0];
    assert_eq!(acme["name"], "acme-dc1");
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["state"], "online");
    assert_eq!(acme["routes"], serde_json::json!(["acme-sonar"]));
    let a = &acme["agents"][0];
    assert_eq!(a["id"], "agent-a");
    assert!(a["version"].as_str().unwrap().starts_with("0."));
    assert!(a["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(a["bytes_to_agent"].as_u64().unwrap() > 0);
    assert!(a["bytes_from_agent"].as_u64().unwrap() > 0);
    assert!(a["connected_since_ms"].as_u64().unwrap() > 0);
    assert_eq!(tunnels["tunnels"][1]["state"], "offline");
    let status = admin_get(&gw, "/api/v1/status").await;
    assert_eq!(status["counts"]["tunnels"], 2);
    assert_eq!(status["counts"]["tunnels_online"], 1);
    assert_eq!(status["listeners"]["tunnel"], tunnel.to_string());
    let routes = admin_get(&gw, "/api/v1/routes").await;
    let sonar = &routes["routes"][0];
    assert_eq!(sonar["upstream"], "tunnel");
    assert_eq!(sonar["tunnel"], "acme-dc1");
    assert_eq!(sonar["egress_pool"], serde_json::Value::Null);
    let traffic = admin_get(&gw, "/api/v1/traffic").await;
    let ok = traffic["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == 200)
        .unwrap();
    assert_eq!(ok["upstream"], "tunnel/acme-dc1/agent-a");
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"portcullis_tunnel_agents{tenant="acme",tunnel="acme-dc1"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"portcullis_tunnel_agents{tenant="globex",tunnel="globex-hq"} 0"#));
    assert!(m.contains(
        r#"portcullis_tunnel_bytes_total{direction="to_agent",tenant="acme",tunnel="acme-dc1"}"#
    ));
    assert!(m.contains(r#"portcullis_tunnel_streams_open{tenant="acme",tunnel="acme-dc1"}"#));
    let connect = wait_audit(&gw, "tunnel_connect", "success").await;
    assert_eq!(connect["detail"]["agent_id"], "agent-a");
    assert_eq!(connect["detail"]["tunnel"], "acme-dc1");
    assert!(connect["detail"]["agent_version"].is_string());
    assert!(connect["detail"]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let request = wait_audit_line(&gw, "the request's audit line", |l| {
        l["kind"] == "request" && l["status"] == 200
    })
    .await;
    assert_eq!(request["upstream"], "tunnel/acme-dc1/agent-a");

    // Both sides audit; the agent's credential appears on neither the gateway's log nor audit.
    let agent_lines = agent.audit_lines();
    assert!(agent_lines
        .iter()
        .any(|l| l["event"] == "request" && l["status"] == 200 && l["origin"] == "sonar"));
    assert!(agent_lines
        .iter()
        .any(|l| l["event"] == "request" && l["reason"] == "not_accepted"));
    assert!(!gw.log().contains(AGENT_SECRET));
    let audit_text = std::fs::read_to_string(gw.dir.path().join("audit.jsonl")).unwrap();
    assert!(!audit_text.contains(AGENT_SECRET));
    assert!(
        !audit_text.contains(TOKEN_A),
        "a broker token in the audit log"
    );
    assert!(
        !gw.log().contains(TOKEN_A),
        "a broker token in the gateway log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_the_tunnel_answers_offline_at_once() {
    let pki = Pki::new();
    let origin = origin().await;
    let gw = start_gateway(&pki.cert, &Gw::default());
    let agent = start_agent(
        &pki,
        &[gw.tunnel_addr.unwrap()],
        "not-a-token-the-gateway-knows",
        "agent-x",
        &origins(&origin, "agent-x", None),
    );
    eventually(
        Duration::from_secs(30),
        "a bad_token handshake failure",
        || async {
            metrics(&gw)
                .await
                .contains(r#"portcullis_tunnel_handshake_failures_total{reason="bad_token"}"#)
        },
    )
    .await;
    agent.wait_log("bad_token");
    assert!(gw.log().contains("tunnel agent refused"), "{}", gw.log());
    assert!(!gw.log().contains("not-a-token-the-gateway-knows"));

    let started = Instant::now();
    let (status, body) = get(&gw, "/acme/sonar/api/x", KEY).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(json(&body)["error"], "tunnel_offline");
    assert_eq!(json(&body)["route"], "acme-sonar");
    assert!(started.elapsed() < Duration::from_secs(5), "not at once");
    assert!(agents(&gw, "acme-dc1").await.is_empty());
    assert_eq!(origin.count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_removed_by_a_reload_disconnects_its_agents() {
    let pki = Pki::new();
    let origin = origin().await;
    let gw = start_gateway(&pki.cert, &Gw::default());
    let tunnel = gw.tunnel_addr.unwrap();
    let _a = start_agent(
        &pki,
        &[tunnel],
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", None),
    );
    let _b = start_agent(
        &pki,
        &[tunnel],
        TOKEN_B,
        "agent-b",
        &origins(&origin, "agent-b", None),
    );
    wait_agents(&gw, "acme-dc1", &["agent-a", "agent-b"]).await;

    let reload = |tokens: &'static [&'static str]| {
        let gw = &gw;
        async move {
            gw.write_config(&gateway_config(&Gw {
                tunnel_listen: &tunnel.to_string(),
                acme_tokens: tokens,
                ..Gw::default()
            }));
            let resp = client()
                .post(gw.admin_url("/api/v1/reload"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        }
    };
    // Token A is rotated out: agent A is cut off, agent B keeps serving.
    reload(&[TOKEN_B]).await;
    wait_agents(&gw, "acme-dc1", &["agent-b"]).await;
    let revoked = wait_audit(&gw, "tunnel_disconnect", "revoked").await;
    assert_eq!(revoked["detail"]["agent_id"], "agent-a");
    for _ in 0..5 {
        assert_eq!(
            get(&gw, "/acme/sonar/api/x", KEY).await,
            (200, "via agent-b".into())
        );
    }
    // Agent A's reconnects are refused now.
    eventually(
        Duration::from_secs(30),
        "agent A refused after the reload",
        || async {
            metrics(&gw)
                .await
                .contains(r#"portcullis_tunnel_handshake_failures_total{reason="bad_token"}"#)
        },
    )
    .await;

    // The last token goes too: offline at once, no "reconnecting" grace for a revocation.
    reload(&[]).await;
    wait_agents(&gw, "acme-dc1", &[]).await;
    let (status, body) = get(&gw, "/acme/sonar/api/x", KEY).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(json(&body)["error"], "tunnel_offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agent_fails_its_request_at_once_then_the_tunnel_is_reconnecting() {
    let pki = Pki::new();
    let origin = origin().await;
    let gw = start_gateway(&pki.cert, &Gw::default());
    let tunnel = gw.tunnel_addr.unwrap();
    let mut agent = start_agent(
        &pki,
        &[tunnel],
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", None),
    );
    wait_agents(&gw, "acme-dc1", &["agent-a"]).await;

    // A request whose origin takes three seconds to answer is in flight when the agent dies.
    let url = gw.url("/acme/sonar/api/slow");
    let pending = tokio::spawn(async move {
        let resp = client()
            .get(url)
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap(), Instant::now())
    });
    eventually(
        Duration::from_secs(30),
        "the origin got the request",
        || async { origin.count().await == 1 },
    )
    .await;
    let killed = Instant::now();
    agent.kill();
    let (status, body, answered) = pending.await.unwrap();
    let waited = answered.duration_since(killed);
    assert_eq!(status, 502, "{body}");
    assert_eq!(json(&body)["error"], "tunnel_disconnected");
    eprintln!("the caller had its 502 {waited:?} after the agent was killed");
    assert!(
        waited < Duration::from_secs(1),
        "the caller waited {waited:?} after the agent died"
    );

    // Within the grace window: 503 with Retry-After, at once.
    wait_agents(&gw, "acme-dc1", &[]).await;
    let resp = client()
        .get(gw.url("/acme/sonar/api/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert_eq!(
        json(&resp.text().await.unwrap())["error"],
        "tunnel_reconnecting"
    );
    let tunnels = admin_get(&gw, "/api/v1/tunnels").await;
    assert_eq!(tunnels["tunnels"][0]["state"], "reconnecting");
    let lost = wait_audit(&gw, "tunnel_disconnect", "connection_lost").await;
    assert_eq!(lost["detail"]["agent_id"], "agent-a");

    // The agent comes back: served again, and counted as a reconnect.
    let _agent = start_agent(
        &pki,
        &[tunnel],
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", None),
    );
    wait_agents(&gw, "acme-dc1", &["agent-a"]).await;
    assert_eq!(
        get(&gw, "/acme/sonar/api/x", KEY).await,
        (200, "via agent-a".into())
    );
    assert!(metrics(&gw)
        .await
        .contains(r#"portcullis_tunnel_reconnects_total{tenant="acme",tunnel="acme-dc1"} 1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_share_a_tunnel_and_one_dying_fails_only_its_own_requests() {
    let pki = Pki::new();
    let origin = origin().await;
    let gw = start_gateway(&pki.cert, &Gw::default());
    let tunnel = gw.tunnel_addr.unwrap();
    let mut a = start_agent(
        &pki,
        &[tunnel],
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", None),
    );
    let _b = start_agent(
        &pki,
        &[tunnel],
        TOKEN_A,
        "agent-b",
        &origins(&origin, "agent-b", None),
    );
    wait_agents(&gw, "acme-dc1", &["agent-a", "agent-b"]).await;

    // Two slow requests at once: the second goes to the agent with fewer open streams.
    let slow = |gw: &GatewayProcess| {
        let url = gw.url("/acme/sonar/api/slow");
        tokio::spawn(async move {
            let resp = client()
                .get(url)
                .header("x-portcullis-key", KEY)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        })
    };
    let first = slow(&gw);
    eventually(
        Duration::from_secs(30),
        "the first slow request",
        || async { origin.count().await == 1 },
    )
    .await;
    let second = slow(&gw);
    eventually(
        Duration::from_secs(30),
        "the second slow request",
        || async { origin.count().await == 2 },
    )
    .await;
    let mut carriers: Vec<String> = origin
        .requests()
        .await
        .iter()
        .map(|r| header_map(r)["x-agent"].clone())
        .collect();
    carriers.sort();
    assert_eq!(carriers, ["agent-a", "agent-b"], "the streams were spread");

    a.kill();
    let mut results = vec![first.await.unwrap(), second.await.unwrap()];
    results.sort();
    assert_eq!(results[0], (200, "via agent-b".into()), "{results:?}");
    assert_eq!(results[1].0, 502, "{results:?}");
    assert_eq!(json(&results[1].1)["error"], "tunnel_disconnected");

    // New requests all go to the agent that is left.
    wait_agents(&gw, "acme-dc1", &["agent-b"]).await;
    for _ in 0..10 {
        assert_eq!(
            get(&gw, "/acme/sonar/api/x", KEY).await,
            (200, "via agent-b".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_after_a_gateway_restart() {
    let pki = Pki::new();
    let origin = origin().await;
    let first = start_gateway(&pki.cert, &Gw::default());
    let tunnel = first.tunnel_addr.unwrap();
    let agent = start_agent(
        &pki,
        &[tunnel],
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", None),
    );
    wait_agents(&first, "acme-dc1", &["agent-a"]).await;
    assert_eq!(get(&first, "/acme/sonar/api/x", KEY).await.0, 200);

    // The gateway goes away and comes back on the same tunnel address.
    drop(first);
    let listen = tunnel.to_string();
    let second = start_gateway(
        &pki.cert,
        &Gw {
            tunnel_listen: &listen,
            ..Gw::default()
        },
    );
    assert_eq!(second.tunnel_addr, Some(tunnel));
    wait_agents(&second, "acme-dc1", &["agent-a"]).await;
    assert_eq!(
        get(&second, "/acme/sonar/api/x", KEY).await,
        (200, "via agent-a".into())
    );
    assert!(agent.log().contains("reconnecting"), "{}", agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_serves_two_gateways_with_no_shared_state() {
    let pki = Pki::new();
    let origin = origin().await;
    let one = start_gateway(&pki.cert, &Gw::default());
    let two = start_gateway(&pki.cert, &Gw::default());
    let gateways = [one.tunnel_addr.unwrap(), two.tunnel_addr.unwrap()];
    let _agent = start_agent(
        &pki,
        &gateways,
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", None),
    );
    wait_agents(&one, "acme-dc1", &["agent-a"]).await;
    wait_agents(&two, "acme-dc1", &["agent-a"]).await;
    assert_eq!(
        get(&one, "/acme/sonar/api/1", KEY).await,
        (200, "via agent-a".into())
    );
    assert_eq!(
        get(&two, "/acme/sonar/api/2", KEY).await,
        (200, "via agent-a".into())
    );

    // One instance going away changes nothing for the other.
    drop(one);
    for _ in 0..5 {
        assert_eq!(
            get(&two, "/acme/sonar/api/3", KEY).await,
            (200, "via agent-a".into())
        );
    }
    assert_eq!(agents(&two, "acme-dc1").await, ["agent-a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_transport_reaches_the_same_listener() {
    let pki = Pki::new();
    let origin = origin().await;
    let gw = start_gateway(&pki.cert, &Gw::default());
    let _agent = start_agent_with(
        &pki,
        &[gw.tunnel_addr.unwrap()],
        TOKEN_A,
        "agent-ws",
        "transport = \"websocket\"",
        &origins(&origin, "agent-ws", None),
    );
    wait_agents(&gw, "acme-dc1", &["agent-ws"]).await;
    assert_eq!(
        get(&gw, "/acme/sonar/api/x", KEY).await,
        (200, "via agent-ws".into())
    );
    let connect = wait_audit(&gw, "tunnel_connect", "success").await;
    assert_eq!(connect["detail"]["transport"], "websocket");
    assert_eq!(connect["detail"]["tls"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_never_carries_another_tenants_requests() {
    let pki = Pki::new();
    let origin = origin().await;
    let gw = start_gateway(&pki.cert, &Gw::default());
    let tunnel = gw.tunnel_addr.unwrap();
    let _acme = start_agent(
        &pki,
        &[tunnel],
        TOKEN_A,
        "acme-agent",
        &origins(&origin, "acme-agent", None),
    );
    wait_agents(&gw, "acme-dc1", &["acme-agent"]).await;

    // Globex's route goes through globex's tunnel only, which has no agent; acme's key does not
    // open it either.
    let (status, body) = get(&gw, "/globex/sonar/api/x", GLOBEX_KEY).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(json(&body)["error"], "tunnel_offline");
    assert_eq!(get(&gw, "/globex/sonar/api/x", KEY).await.0, 401);
    assert_eq!(origin.count().await, 0);

    // With globex's own agent connected, each tenant's requests use its own agent only.
    let _globex = start_agent(
        &pki,
        &[tunnel],
        TOKEN_GLOBEX,
        "globex-agent",
        &origins(&origin, "globex-agent", None),
    );
    wait_agents(&gw, "globex-hq", &["globex-agent"]).await;
    assert_eq!(agents(&gw, "acme-dc1").await, ["acme-agent"]);
    for _ in 0..5 {
        assert_eq!(
            get(&gw, "/globex/sonar/api/x", GLOBEX_KEY).await,
            (200, "via globex-agent".into())
        );
        assert_eq!(
            get(&gw, "/acme/sonar/api/x", KEY).await,
            (200, "via acme-agent".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_route_pipes_bytes_to_the_agents_tcp_origin_after_the_caller_check() {
    let pki = Pki::new();
    let origin = origin().await;
    let (echo, _echo_task) = echo_server().await;
    let gw = start_gateway(
        &pki.cert,
        &Gw {
            extra: r#"
[[tcp_routes]]
name = "acme-db"
listen = "{TCP_LISTEN}"
tunnel = "acme-dc1"
origin = "db"
caller_cidrs = ["127.0.0.0/8"]

[[tcp_routes]]
name = "acme-db-office"
listen = "{TCP_LISTEN}"
tunnel = "acme-dc1"
origin = "db"
caller_cidrs = ["192.0.2.0/24"]
"#,
            ..Gw::default()
        },
    );
    let tcp = |name: &str| gw.tcp_addrs.iter().find(|(n, _)| n == name).unwrap().1;
    let _agent = start_agent(
        &pki,
        &[gw.tunnel_addr.unwrap()],
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", Some(echo)),
    );
    wait_agents(&gw, "acme-dc1", &["agent-a"]).await;

    // 1 MiB each way through the tunnel to the echo server and back.
    let mut conn = tokio::net::TcpStream::connect(tcp("acme-db"))
        .await
        .unwrap();
    let payload: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (mut reader, mut writer) = conn.split();
    let write = async {
        writer.write_all(&payload).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let read = async {
        tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut echoed))
            .await
            .expect("the echo came back in time")
            .unwrap();
    };
    tokio::join!(write, read);
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "the echo differs");
    drop(conn);

    // A caller outside the route's CIDRs is closed on before a byte goes anywhere.
    let mut denied = tokio::net::TcpStream::connect(tcp("acme-db-office"))
        .await
        .unwrap();
    let _ = denied.write_all(b"hello?").await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), denied.read(&mut buf))
        .await
        .expect("the gateway closes a denied caller at once")
        .unwrap_or(0);
    assert_eq!(n, 0);

    let closed = wait_audit(&gw, "tcp_connection", "closed").await;
    assert_eq!(closed["detail"]["route"], "acme-db");
    assert_eq!(closed["detail"]["agent_id"], "agent-a");
    assert_eq!(closed["detail"]["bytes_in"], 1024 * 1024);
    assert_eq!(closed["detail"]["bytes_out"], 1024 * 1024);
    let refused = wait_audit(&gw, "tcp_connection", "caller_denied").await;
    assert_eq!(refused["detail"]["route"], "acme-db-office");
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"portcullis_tcp_route_connections_total{result="closed",route="acme-db"} 1"#),
        "{m}"
    );
    assert!(m.contains(
        r#"portcullis_tcp_route_connections_total{result="caller_denied",route="acme-db-office"} 1"#
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_each_way_goes_through_the_tunnel_in_bounded_memory() {
    const GIB: u64 = 1024 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    let pki = Pki::new();
    let origin = UpstreamBuilder::new()
        .reply(|r| {
            if r.uri.ends_with("/download") {
                Reply {
                    body: ReplyBody::Zeros(GIB),
                    ..Reply::ok("")
                }
            } else {
                Reply::ok(&r.body_len.to_string())
            }
        })
        .start()
        .await;
    let gw = start_gateway(&pki.cert, &Gw::default());
    let agent = start_agent(
        &pki,
        &[gw.tunnel_addr.unwrap()],
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", None),
    );
    wait_agents(&gw, "acme-dc1", &["agent-a"]).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();

    // Up: a streamed 1 GiB body, counted by the origin.
    let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
    let chunks = GIB / CHUNK as u64;
    let body = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let resp = http
        .put(gw.url("/acme/sonar/api/upload"))
        .header("x-portcullis-key", KEY)
        .header("content-length", GIB)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), GIB.to_string());

    // Down: 1 GiB streamed from the origin, counted here.
    let mut resp = http
        .get(gw.url("/acme/sonar/api/download"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut received = 0u64;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        received += chunk.len() as u64;
    }
    assert_eq!(received, GIB);

    // Memory stays bounded: far below what buffering a body would take. (Debug builds; the
    // release numbers are in load-tests/tunnel.sh.)
    let gateway_kib = support::agent::peak_rss_kib(gw.pid());
    let agent_kib = agent.peak_rss_kib();
    eprintln!("peak RSS: gateway {gateway_kib} KiB, agent {agent_kib} KiB");
    assert!(
        gateway_kib < 64 * 1024,
        "gateway peak RSS {gateway_kib} KiB"
    );
    assert!(agent_kib < 64 * 1024, "agent peak RSS {agent_kib} KiB");
}

/// Sends `payload` on a connection to TCP route address `addr` and returns what comes back.
async fn echo_through(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = conn.split();
    let write = async {
        writer.write_all(payload).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let read = async {
        tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut echoed))
            .await
            .expect("the echo came back in time")
            .unwrap();
    };
    tokio::join!(write, read);
    echoed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_hands_the_tunnel_and_tcp_route_listeners_over_and_the_agent_follows() {
    let pki = Pki::new();
    let origin = origin().await;
    let (echo, _echo_task) = echo_server().await;
    let saas = UpstreamBuilder::new()
        .reply(|_| Reply::ok("saas"))
        .start()
        .await;
    let tail = format!(
        r#"
[[tcp_routes]]
name = "acme-db"
listen = "{{TCP_LISTEN}}"
tunnel = "acme-dc1"
origin = "db"
caller_cidrs = ["127.0.0.0/8"]

[[routes]]
name = "acme-saas"
tenant = "acme"
path = "/acme/saas"
target = "{}"
allow_destinations = ["127.0.0.0/8"]
"#,
        saas.url()
    );
    let server = "upgrade_sock = \"{DIR}/upgrade.sock\"\nshutdown_grace_seconds = 10";
    let mut old = start_gateway(
        &pki.cert,
        &Gw {
            extra: &tail,
            server,
            ..Gw::default()
        },
    );
    let dir = old.dir.path().to_owned();
    let tunnel = old.tunnel_addr.unwrap();
    let tcp = old.tcp_addrs[0].1;
    let agent = start_agent(
        &pki,
        &[tunnel],
        TOKEN_A,
        "agent-a",
        &origins(&origin, "agent-a", Some(echo)),
    );
    wait_agents(&old, "acme-dc1", &["agent-a"]).await;
    assert_eq!(echo_through(tcp, b"before").await, b"before");

    // The same config on the same addresses, its audit log in the new process's directory.
    let new_text = gateway_config(&Gw {
        tunnel_listen: &tunnel.to_string(),
        extra: &tail.replace("{TCP_LISTEN}", &tcp.to_string()),
        server,
        ..Gw::default()
    })
    .replace("{LISTEN}", &old.addr.to_string())
    .replace("{ADMIN}", &old.admin_addr.to_string())
    .replace("{DIR}/audit.jsonl", "{AUDIT}")
    .replace("{DIR}", dir.to_str().unwrap())
    .replace("{AUDIT}", "{DIR}/audit.jsonl");

    // Requests on a SaaS route and through the tunnel, each on a new connection, across the
    // whole handover.
    let saas_loop = RequestLoop::start(3, &old.url("/acme/saas/x"), KEY);
    let tunnel_loop = RequestLoop::start(2, &old.url("/acme/sonar/api/loop"), KEY);
    eventually(
        Duration::from_secs(20),
        "requests through the old process",
        || async { saas.count().await >= 20 && origin.count().await >= 10 },
    )
    .await;

    let mut new = upgrade(&old, &dir.join("upgrade.sock"), &new_text).await;
    // Every listener taken over, none bound afresh (that would have failed: the old process
    // still holds them).
    assert_eq!(new.addr, old.addr);
    assert_eq!(new.tunnel_addr, Some(tunnel));
    assert_eq!(new.tcp_addrs, [("acme-db".to_owned(), tcp)]);
    let new_log = new.log();
    for what in ["tunnel.listen", "tcp_routes.listen"] {
        assert!(
            new_log
                .lines()
                .any(|l| l.contains("taken over from the running gateway") && l.contains(what)),
            "the new process did not take the {what} socket over:\n{new_log}"
        );
    }

    // The old process stops accepting, closes its agent's connection once drained, and exits;
    // the agent reconnects to the only process accepting now.
    let exit = old.wait_exit(Duration::from_secs(40));
    assert!(exit.success(), "{exit}:\n{}", old.log());
    let left = audit_lines(&old)
        .into_iter()
        .find(|l| l["action"] == "tunnel_disconnect")
        .unwrap_or_else(|| panic!("no disconnect audited by the old process:\n{}", old.log()));
    assert_eq!(left["result"], "shutdown", "{left}");
    wait_agents(&new, "acme-dc1", &["agent-a"]).await;
    let connected = wait_audit(&new, "tunnel_connect", "success").await;
    assert_eq!(connected["detail"]["agent_id"], "agent-a");

    // Served by the new process through the tunnel, and a TCP route connection through it.
    assert_eq!(
        get(&new, "/acme/sonar/api/after", KEY).await,
        (200, "via agent-a".into())
    );
    wait_audit_line(&new, "the request after the handover", |l| {
        l["kind"] == "request" && l["path"] == "/acme/sonar/api/after" && l["status"] == 200
    })
    .await;
    assert_eq!(echo_through(tcp, b"after").await, b"after");
    let closed = wait_audit(&new, "tcp_connection", "closed").await;
    assert_eq!(closed["detail"]["agent_id"], "agent-a");

    // Both loops went on through the new process, without a single failure.
    let (saas_before, tunnel_before) = (saas.count().await, origin.count().await);
    eventually(
        Duration::from_secs(20),
        "requests through the new process",
        || async {
            saas.count().await >= saas_before + 20 && origin.count().await >= tunnel_before + 10
        },
    )
    .await;
    let (saas_ok, saas_errors) = saas_loop.stop().await;
    let (tunnel_ok, tunnel_errors) = tunnel_loop.stop().await;
    assert!(saas_errors.is_empty(), "SaaS route: {saas_errors:?}");
    assert!(tunnel_errors.is_empty(), "tunnel route: {tunnel_errors:?}");
    assert!(new.running(), "{}", new.log());
    assert!(
        agent.log().contains("tunnel disconnected"),
        "{}",
        agent.log()
    );
    // How long the tunnel requests that reached the new process before its agent did waited.
    let waited = audit_lines(&new)
        .iter()
        .filter(|l| l["kind"] == "request" && l["path"] == "/acme/sonar/api/loop")
        .filter_map(|l| l["duration_ms"].as_f64())
        .fold(0.0, f64::max);
    eprintln!(
        "upgrade with a tunnel: SaaS {saas_ok} requests, tunnel {tunnel_ok}, 0 errors; \
         the longest tunnel request on the new process took {waited:.0} ms"
    );

    // And on: the new process holds the sockets in its own table, so it hands them over too.
    let mut newer = upgrade(&new, &dir.join("upgrade.sock"), &new_text).await;
    assert_eq!(newer.tunnel_addr, Some(tunnel));
    assert_eq!(newer.tcp_addrs, [("acme-db".to_owned(), tcp)]);
    let exit = new.wait_exit(Duration::from_secs(40));
    assert!(exit.success(), "{exit}:\n{}", new.log());
    wait_agents(&newer, "acme-dc1", &["agent-a"]).await;
    assert_eq!(
        get(&newer, "/acme/sonar/api/again", KEY).await,
        (200, "via agent-a".into())
    );
    assert_eq!(echo_through(tcp, b"again").await, b"again");
    assert!(newer.running(), "{}", newer.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_gateway_accepts_no_more_tcp_route_connections() {
    let pki = Pki::new();
    // A request that holds the drain open for five seconds.
    let slow = UpstreamBuilder::new()
        .reply(|_| Reply {
            delay: Duration::from_secs(5),
            ..Reply::ok("slow")
        })
        .start()
        .await;
    let tail = format!(
        r#"
[[tcp_routes]]
name = "acme-db"
listen = "{{TCP_LISTEN}}"
tunnel = "acme-dc1"
origin = "db"
caller_cidrs = ["127.0.0.0/8"]

[[routes]]
name = "acme-slow"
tenant = "acme"
path = "/acme/slow"
target = "{}"
allow_destinations = ["127.0.0.0/8"]
"#,
        slow.url()
    );
    let mut gw = start_gateway(
        &pki.cert,
        &Gw {
            extra: &tail,
            server: "shutdown_grace_seconds = 30",
            ..Gw::default()
        },
    );
    let tcp = gw.tcp_addrs[0].1;
    // While it runs, a TCP route connection is accepted (no agent: refused and audited).
    let mut first = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(first.read(&mut buf).await.unwrap_or(0), 0);
    wait_audit(&gw, "tcp_connection", "tunnel_offline").await;

    let request = tokio::spawn({
        let url = gw.url("/acme/slow/x");
        async move {
            let resp = client()
                .get(url)
                .header("x-portcullis-key", KEY)
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    });
    eventually(
        Duration::from_secs(20),
        "the slow request at the upstream",
        || async { slow.count().await == 1 },
    )
    .await;
    gw.signal("TERM");
    eventually(
        Duration::from_secs(20),
        "the TCP routes stop accepting",
        || async {
            gw.log()
                .contains("the tunnel listener and the TCP routes stopped accepting")
        },
    )
    .await;
    // Still draining (the slow request), and the socket still exists (for a new process to
    // take over), but nothing here accepts from it any more: the connection waits in the
    // queue until the process exits, unanswered and unaudited.
    let mut late = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let _ = late.write_all(b"hello?").await;
    assert!(gw.running());
    assert_eq!(request.await.unwrap(), 200);
    let exit = gw.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "{exit}:\n{}", gw.log());
    let read = tokio::time::timeout(Duration::from_secs(10), late.read(&mut buf))
        .await
        .expect("the connection ends with the process");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let audited = audit_lines(&gw)
        .into_iter()
        .filter(|l| l["action"] == "tcp_connection")
        .count();
    assert_eq!(audited, 1, "a connection was accepted after the stop");
}
