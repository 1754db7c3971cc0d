//! End-to-end tests of the gateway's life: graceful shutdown with every audit line written,
//! fail-closed auditing that lets no unaudited request through, upstream health that survives a
//! reload, secret rotation next to a relative config path, and a config of 10,000 routes.

// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::upgrade::{upgrade, RequestLoop};
use support::*;

const KEY: &str = "acme-key";
const ADMIN_TOKEN: &str = "admin-token-for-lifecycle-1b7e";

/// A gateway with an admin token, a file audit log, tenant `acme` and the given extra text.
fn config(extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{LISTEN}}"]
admin_listen = "{{ADMIN}}"

[admin]
token_file = "{{DIR}}/admin-token"

[audit]
sink = "file"
path = "{{DIR}}/audit.jsonl"

[[tenants]]
id = "acme"
key_sha256 = ["{key}"]
{extra}
"#,
        key = sha256_hex(KEY),
    )
}

fn route(name: &str, path: &str, targets: &[String], extra: &str) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"
[[routes]]
name = "{name}"
tenant = "acme"
path = "{path}"
targets = [{}]
allow_destinations = ["127.0.0.0/8"]
{extra}
"#,
        targets.join(", ")
    )
}

fn start(config: &str) -> GatewayProcess {
    GatewayProcess::start_with(config, &[], |dir| {
        std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    })
}

async fn admin_get(gw: &GatewayProcess, path: &str) -> serde_json::Value {
    let resp = client()
        .get(gw.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    json(&resp.text().await.unwrap())
}

async fn get(gw: &GatewayProcess, path: &str) -> reqwest::Response {
    client()
        .get(gw.url(path))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_sigterm_finishes_and_its_audit_line_is_written() {
    let slow = UpstreamBuilder::new()
        .reply(|_| Reply {
            body: ReplyBody::Drip {
                chunks: 10,
                interval: Duration::from_millis(100),
            },
            ..Reply::ok("")
        })
        .start()
        .await;
    let mut gw = start(&config(&route("slow", "/slow", &[slow.url()], "")));
    let request = tokio::spawn({
        let url = gw.url("/slow/x");
        async move {
            let resp = client()
                .get(url)
                .header("x-portcullis-key", KEY)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    });
    eventually(
        Duration::from_secs(20),
        "the upstream has the request",
        || async { slow.count().await == 1 },
    )
    .await;
    gw.signal("TERM");
    let (status, body) = request.await.unwrap();
    assert_eq!((status, body), (200, "drip\n".repeat(10)));
    let exit = gw.wait_exit(Duration::from_secs(20));
    assert!(exit.success(), "{exit}:\n{}", gw.log());
    // The writer drained after the proxy did: the line is on disk, and the chain verifies.
    let lines = gw.audit_lines(1).await;
    let request_line = lines
        .iter()
        .find(|l| l["kind"] == "request")
        .unwrap_or_else(|| panic!("no request line: {lines:?}"));
    assert_eq!(request_line["path"], "/slow/x");
    assert_eq!(request_line["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gateway_exits_at_once_on_sigterm() {
    let upstream = UpstreamBuilder::new().start().await;
    let mut gw = start(&config(&route("r", "/r", &[upstream.url()], "")));
    assert_eq!(get(&gw, "/r/x").await.status(), 200);
    gw.audit_lines(1).await;
    let signalled = Instant::now();
    gw.signal("TERM");
    // Nothing in flight: no need to wait out the 5 s grace period.
    let exit = gw.wait_exit(Duration::from_secs(4));
    assert!(exit.success(), "{exit}:\n{}", gw.log());
    assert!(signalled.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_lets_no_request_through_when_the_audit_log_cannot_be_written() {
    let upstream = UpstreamBuilder::new().start().await;
    // /dev/full fails every write with ENOSPC, like a full disk — from the very first request.
    let text = config(&route("r", "/r", &[upstream.url()], "")).replace(
        "path = \"{DIR}/audit.jsonl\"",
        "path = \"/dev/full\"\noverflow = \"fail_closed\"",
    );
    let gw = start(&text);
    for _ in 0..20 {
        let resp = get(&gw, "/r/x").await;
        assert_eq!(resp.status(), 503);
        assert_eq!(
            json(&resp.text().await.unwrap())["error"],
            "audit_unavailable"
        );
    }
    assert_eq!(
        upstream.count().await,
        0,
        "an unaudited request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_writes_a_forward_line_before_each_request_goes_upstream() {
    let upstream = UpstreamBuilder::new().start().await;
    let text = config(&route("r", "/r", &[upstream.url()], "")).replace(
        "path = \"{DIR}/audit.jsonl\"",
        "path = \"{DIR}/audit.jsonl\"\noverflow = \"fail_closed\"",
    );
    let gw = start(&text);
    for i in 0..3 {
        assert_eq!(
            get(&gw, &format!("/r/{i}?token=hunter2")).await.status(),
            200
        );
    }
    let lines = gw.audit_lines(6).await;
    for i in 0..3 {
        let path = format!("/r/{i}?token");
        let forward = lines
            .iter()
            .position(|l| l["kind"] == "forward" && l["path"] == path.as_str());
        let done = lines
            .iter()
            .position(|l| l["kind"] == "request" && l["path"] == path.as_str());
        assert!(
            matches!((forward, done), (Some(f), Some(d)) if f < d),
            "{path}: {lines:?}"
        );
    }
    let text = std::fs::read_to_string(gw.dir.path().join("audit.jsonl")).unwrap();
    assert!(!text.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_marks_survive_a_reload_of_other_routes() {
    let live = UpstreamBuilder::new()
        .reply(|_| Reply::ok("live"))
        .start()
        .await;
    let (_closed, dead) = closed_port();
    let targets = [format!("http://127.0.0.1:{dead}"), live.url()];
    // One check at startup, then none for a minute: after a reload, only a carried-over mark
    // can keep the dead target out.
    let failover = route(
        "failover",
        "/failover",
        &targets,
        "retries = 0\nhealth_check = { interval_ms = 60000 }",
    );
    let gw = start(&config(&failover));
    let dead_addr = format!("127.0.0.1:{dead}");
    let dead_is_out = |routes: &serde_json::Value| {
        routes["routes"][0]["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["address"] == dead_addr.as_str() && u["healthy"] == false)
    };
    eventually(
        Duration::from_secs(20),
        "the dead target marked unhealthy",
        || async { dead_is_out(&admin_get(&gw, "/api/v1/routes").await) },
    )
    .await;

    // Reload a config that changes another route only.
    let other = UpstreamBuilder::new().start().await;
    gw.write_config(&config(&format!(
        "{failover}{}",
        route("other", "/other", &[other.url()], "")
    )));
    let reload = client()
        .post(gw.admin_url("/api/v1/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let routes = admin_get(&gw, "/api/v1/routes").await;
    assert_eq!(routes["routes"].as_array().unwrap().len(), 2);
    assert!(dead_is_out(&routes), "{routes}");
    // With no retries, one request to the dead target would be a 502.
    for _ in 0..10 {
        let resp = get(&gw, "/failover/x").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_next_to_a_relative_config_rotate_and_partial_writes_are_never_injected() {
    const V1: &str = "rotating-secret-v1-aaaa";
    const V2: &str = "rotating-secret-v2-bbbb";
    const V3: &str = "rotating-secret-v3-cccc";
    let upstream = UpstreamBuilder::new()
        .reply(|r| {
            let seen = r
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            Reply::ok(&seen)
        })
        .start()
        .await;
    let text = config(&route(
        "pd",
        "/pd",
        &[upstream.url()],
        "headers = { Authorization = \"${secret:pd}\" }",
    ))
    .replace("[admin]", "[secrets]\ndir = \"secrets\"\n\n[admin]");
    let gw = GatewayProcess::start_relative(&text, &[], |dir| {
        std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
        std::fs::create_dir_all(dir.join("secrets/acme")).unwrap();
        std::fs::write(dir.join("secrets/acme/pd"), V1).unwrap();
    });
    let injected = || async { get(&gw, "/pd/x").await.text().await.unwrap() };
    assert_eq!(injected().await, V1);

    // Rotation by atomic rename, as README says: picked up without a restart.
    let secrets = gw.dir.path().join("secrets/acme");
    std::fs::write(secrets.join("pd.new"), V2).unwrap();
    std::fs::rename(secrets.join("pd.new"), secrets.join("pd")).unwrap();
    eventually(Duration::from_secs(20), "rotation to v2", || async {
        injected().await == V2
    })
    .await;

    // A writer that pauses mid-write for longer than the debounce: while the file is still
    // open, no request may carry the half-written value.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(secrets.join("pd"))
        .unwrap();
    file.write_all(&V3.as_bytes()[..10]).unwrap();
    file.flush().unwrap();
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_millis(600) {
        let seen = injected().await;
        assert_eq!(seen, V2, "a partial write was injected");
    }
    file.write_all(&V3.as_bytes()[10..]).unwrap();
    drop(file);
    eventually(
        Duration::from_secs(20),
        "rotation to v3 once the file is closed",
        || async { injected().await == V3 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_routes_start_serve_and_reload() {
    let upstream = UpstreamBuilder::new().start().await;
    let mut routes = String::new();
    for i in 0..10_000 {
        routes.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\ntenant = \"acme\"\npath = \"/r{i}\"\ntarget = \"{}\"\nallow_destinations = [\"127.0.0.0/8\"]\n\n",
            upstream.url()
        ));
    }
    let text = config(&routes);
    let gw = start(&text);
    let resp = get(&gw, "/r9999/x").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.last().await.uri, "/x");
    let reload = client()
        .post(gw.admin_url("/api/v1/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    assert_eq!(get(&gw, "/r5000/y").await.status(), 200);
    let status = admin_get(&gw, "/api/v1/status").await;
    assert_eq!(status["counts"]["routes"], 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_grace_period_is_cut_and_recorded_as_cut() {
    // Ten seconds of body at the upstream; one second of grace.
    let slow = UpstreamBuilder::new()
        .reply(|_| Reply {
            body: ReplyBody::Drip {
                chunks: 10,
                interval: Duration::from_secs(1),
            },
            ..Reply::ok("")
        })
        .start()
        .await;
    let text = config(&route(
        "slow",
        "/slow",
        &[slow.url()],
        "total_timeout_ms = 30000",
    ))
    .replace("[server]\n", "[server]\nshutdown_grace_seconds = 1\n");
    let mut gw = start(&text);
    let request = tokio::spawn({
        let url = gw.url("/slow/cut?token=QUERY-VALUE-77e1");
        async move {
            let resp = client()
                .get(url)
                .header("x-portcullis-key", KEY)
                .send()
                .await
                .unwrap();
            // The head came; the body is cut short.
            (resp.status().as_u16(), resp.text().await.is_err())
        }
    });
    eventually(
        Duration::from_secs(20),
        "the upstream has the request",
        || async { slow.count().await == 1 },
    )
    .await;
    let signalled = Instant::now();
    gw.signal("TERM");
    let exit = gw.wait_exit(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit}:\n{}", gw.log());
    // The grace period, not the request's ten seconds (nor Pingora's former fixed 5 s).
    assert!(took < Duration::from_secs(8), "exited after {took:?}");
    assert_eq!(request.await.unwrap(), (200, true));
    let lines = gw.audit_lines(1).await;
    let cut = lines
        .iter()
        .find(|l| l["kind"] == "request")
        .unwrap_or_else(|| panic!("no request line: {lines:?}"));
    assert_eq!(cut["path"], "/slow/cut?token", "{cut}");
    assert_eq!(cut["denial"], "shutdown_cut", "{cut}");
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("portcullis::access") && l.contains("shutdown_cut")),
        "{log}"
    );
    assert!(!log.contains("QUERY-VALUE-77e1"), "{log}");
}

/// The gateway of a graceful-upgrade test: fixed listener addresses (the ones being handed
/// over), an upgrade socket in `dir`, and an audit file of its own.
fn upgrade_config(
    listen: &str,
    admin: &str,
    dir: &std::path::Path,
    audit: &str,
    routes: &str,
) -> String {
    format!(
        r#"
[server]
listen = ["{listen}"]
admin_listen = "{admin}"
upgrade_sock = "{sock}"

[admin]
token_file = "{dir}/admin-token"

[audit]
sink = "file"
path = "{dir}/{audit}"

[[tenants]]
id = "acme"
key_sha256 = ["{key}"]
{routes}
"#,
        dir = dir.display(),
        sock = dir.join("upgrade.sock").display(),
        key = sha256_hex(KEY),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_drops_no_request_under_a_request_loop() {
    let upstream = UpstreamBuilder::new()
        .reply(|_| Reply {
            delay: Duration::from_millis(20),
            ..Reply::ok("ok")
        })
        .start()
        .await;
    let routes = route("r", "/r", &[upstream.url()], "");
    let old_text = upgrade_config(
        "127.0.0.1:0",
        "127.0.0.1:0",
        std::path::Path::new("{DIR}"),
        "audit.jsonl",
        &routes,
    );
    let mut old = start(&old_text);
    let dir = old.dir.path().to_owned();
    let new_text = upgrade_config(
        &old.addr.to_string(),
        &old.admin_addr.to_string(),
        &dir,
        "audit-new.jsonl",
        &routes,
    );

    // Four clients, each a new connection per request (what a handover must not lose: the
    // accept queue), until told to stop.
    let requests = RequestLoop::start(4, &old.url("/r/loop"), KEY);
    eventually(
        Duration::from_secs(20),
        "requests through the old process",
        || async { upstream.count().await >= 20 },
    )
    .await;

    // The new process waits on the upgrade socket; the old one hands over on SIGQUIT.
    let mut new = upgrade(&old, &dir.join("upgrade.sock"), &new_text).await;
    assert_eq!(
        new.addr, old.addr,
        "the new process serves the same address"
    );
    let before_exit = upstream.count().await;
    let exit = old.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "{exit}:\n{}", old.log());
    // Keep the loop going on the new process alone for a while.
    eventually(
        Duration::from_secs(20),
        "requests through the new process",
        || async { upstream.count().await >= before_exit + 40 },
    )
    .await;
    let (ok, errors) = requests.stop().await;
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {errors:?}",
        errors.len(),
        ok as usize + errors.len()
    );
    // Both processes served part of the loop.
    let served = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter(|l| json(l)["kind"] == "request")
            .count()
    };
    let (old_served, new_served) = (served("audit.jsonl"), served("audit-new.jsonl"));
    assert!(
        old_served > 0 && new_served > 0,
        "old {old_served}, new {new_served}"
    );
    assert!(new.running(), "{}", new.log());
    eprintln!("upgrade: {ok} requests, 0 errors; old served {old_served}, new {new_served}");
}
