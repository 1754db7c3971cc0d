//! End-to-end tests of the live control plane: hot reload under load with no dropped request,
//! invalid reloads, the three reload triggers, secret rotation, the admin API, metrics, logs
//! and the audit log — against the real binary on loopback.

// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const KEY: &str = "acme-key";
const ADMIN_TOKEN: &str = "admin-token-for-tests-5c1e";
const SECRET_V1: &str = "rotating-secret-v1-9d2b";
const SECRET_V2: &str = "rotating-secret-v2-44aa";

/// A config whose route injects `X-Config: {label}`, so every response says which config served it.
fn config(upstream: &Upstream, label: &str, extra: &str) -> String {
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

[secrets]
dir = "{{DIR}}/secrets"

[[tenants]]
id = "acme"
key_sha256 = ["{key}"]

[[routes]]
name = "acme-pd"
tenant = "acme"
path = "/acme/pd"
target = "{url}"
headers = {{ X-Config = "{label}", Authorization = "Bearer ${{secret:pd}}" }}
allow_destinations = ["127.0.0.0/8"]
{extra}
"#,
        key = sha256_hex(KEY),
        url = upstream.url(),
    )
}

/// The upstream answers with the config label it saw; `/slow` drips for about half a second.
async fn labelled_upstream() -> Upstream {
    UpstreamBuilder::new()
        .reply(|r| {
            let label = r
                .headers
                .get("x-config")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            let reply = Reply::ok(&label).header("x-seen-config", &label);
            if r.uri.ends_with("/slow") {
                Reply {
                    body: ReplyBody::Drip {
                        chunks: 10,
                        interval: Duration::from_millis(50),
                    },
                    ..reply
                }
            } else {
                reply
            }
        })
        .start()
        .await
}

fn start(config: &str) -> GatewayProcess {
    start_with_env(config, &[])
}

/// Starts the gateway with the admin token file and the secrets directory in place.
fn start_with_env(config: &str, env: &[(&str, &str)]) -> GatewayProcess {
    GatewayProcess::start_with(config, env, |dir| {
        std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        std::fs::create_dir_all(dir.join("secrets/acme")).unwrap();
        std::fs::write(dir.join("secrets/acme/pd"), SECRET_V1).unwrap();
    })
}

async fn admin(
    gw: &GatewayProcess,
    method: reqwest::Method,
    path: &str,
) -> (u16, serde_json::Value) {
    let resp = client()
        .request(method, gw.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, json(&resp.text().await.unwrap()))
}

async fn scrape(gw: &GatewayProcess) -> String {
    client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `series` (name and labels exactly as exported), if present.
fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn active_hash(gw: &GatewayProcess) -> String {
    let (_, status) = admin(gw, reqwest::Method::GET, "/api/v1/status").await;
    status["config"]["hash"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_drop_no_request() {
    let upstream = labelled_upstream().await;
    let config_a = config(&upstream, "a", "");
    let config_b = config(&upstream, "b", "");
    let gw = start(&config_a);
    let c = client();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    const MAX_REQUESTS: usize = 6000;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (c, stop, sent, url) = (
            c.clone(),
            Arc::clone(&stop),
            Arc::clone(&sent),
            gw.url("/acme/pd"),
        );
        workers.push(tokio::spawn(async move {
            let mut outcomes: Vec<Result<(u16, String), String>> = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed)
                && sent.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS
                && Instant::now() < deadline
            {
                // One worker in eight streams slowly through several reloads.
                let slow = worker == 0 && i.is_multiple_of(4);
                i += 1;
                let path = if slow { "/slow" } else { "/fast" };
                let result = match c
                    .get(format!("{url}{path}"))
                    .header("x-portcullis-key", KEY)
                    .send()
                    .await
                {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let label = resp
                            .headers()
                            .get("x-seen-config")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        match resp.text().await {
                            Ok(body) if slow && body != "drip\n".repeat(10) => {
                                Err(format!("truncated slow body: {body:?}"))
                            }
                            Ok(body) if !slow && body != label => {
                                Err(format!("body {body:?} vs header {label:?}"))
                            }
                            Ok(_) => Ok((status, label)),
                            Err(e) => Err(format!("body: {e}")),
                        }
                    }
                    Err(e) => Err(format!("transport: {e}")),
                };
                outcomes.push(result);
            }
            outcomes
        }));
    }

    // ≥100 reloads between the two valid configs, with a few invalid ones mixed in, through the
    // admin API (the file watcher sees the writes too and adds reloads of its own).
    let mut last_valid = config_a.clone();
    let mut invalid_rejected = 0;
    for i in 0..120 {
        if i % 25 == 24 {
            gw.write_config("[[routes]]\nname = 'broken'\n");
            let (status, body) = admin(&gw, reqwest::Method::POST, "/api/v1/reload").await;
            assert_eq!(status, 422, "{body}");
            invalid_rejected += 1;
        }
        let next = if i % 2 == 0 { &config_b } else { &config_a };
        gw.write_config(next);
        let (status, body) = admin(&gw, reqwest::Method::POST, "/api/v1/reload").await;
        assert_eq!(status, 200, "{body}");
        last_valid = next.clone();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut seen_a = 0;
    let mut seen_b = 0;
    for w in workers {
        for outcome in w.await.unwrap() {
            total += 1;
            match outcome {
                Ok((200, label)) if label == "a" => seen_a += 1,
                Ok((200, label)) if label == "b" => seen_b += 1,
                Ok(other) => panic!("unexpected answer {other:?}"),
                Err(e) => panic!("request failed during reloads: {e}"),
            }
        }
    }
    assert!(total >= 500, "only {total} requests ran");
    assert!(seen_a > 0 && seen_b > 0, "a={seen_a} b={seen_b}");
    assert_eq!(invalid_rejected, 4);

    let expected = portcullis_config::config_hash(&gw.config_text());
    assert_eq!(gw.config_text(), gw.fill(&last_valid));
    // The watcher may still be settling on the last write; it reloads the same file.
    eventually(
        Duration::from_secs(20),
        "active hash = last valid file",
        || {
            let gw = &gw;
            let expected = expected.clone();
            async move { active_hash(gw).await == expected }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_what_it_can_and_names_every_start_only_setting_it_was_asked_to_change() {
    let upstream = labelled_upstream().await;
    let gw = start(&config(&upstream, "a", ""));
    // Start-only settings changed next to a route change: the route change is applied, and the
    // result names each setting that waits for a restart (and nothing else).
    let admin_line = "admin_listen = \"{ADMIN}\"\n";
    let start_only = format!(
        "{admin_line}shutdown_grace_seconds = 7\nh2_max_concurrent_streams = 5\nkeepalive_timeout_ms = 3000\n"
    );
    gw.write_config(&config(&upstream, "b", "").replacen(admin_line, &start_only, 1));
    let (status, body) = admin(&gw, reqwest::Method::POST, "/api/v1/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "success", "{body}");
    let required: Vec<&str> = body["restart_required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required.len(), 3, "{required:?}");
    for key in [
        "server.shutdown_grace_seconds",
        "server.h2_max_concurrent_streams",
        "server.keepalive_timeout_ms",
    ] {
        assert!(
            required.iter().any(|r| r.starts_with(key)),
            "{key}: {required:?}"
        );
    }
    let served = client()
        .get(gw.url("/acme/pd/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(served.text().await.unwrap(), "b");

    // Back to the settings the process started with: nothing waits for a restart any more
    // (compared with the start, not with the previous reload).
    gw.write_config(&config(&upstream, "c", ""));
    let (status, body) = admin(&gw, reqwest::Method::POST, "/api/v1/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restart_required"], serde_json::json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_keeps_the_old_config_and_says_why_everywhere() {
    let upstream = labelled_upstream().await;
    let gw = start(&config(&upstream, "a", ""));
    let before = active_hash(&gw).await;

    // The file watch sees the change and rejects it first; wait for that, so the admin reload
    // below is the only one that can count from here on.
    gw.write_config(&config(&upstream, "b", "retries = 99\n"));
    eventually(
        Duration::from_secs(20),
        "the file reload's error",
        || async {
            let (_, status) = admin(&gw, reqwest::Method::GET, "/api/v1/status").await;
            status["last_reload"]["trigger"] == "file" && status["last_reload"]["result"] == "error"
        },
    )
    .await;
    let errors_before = metric_value(
        &scrape(&gw).await,
        "portcullis_config_reloads_total{result=\"error\"}",
    );
    assert_eq!(errors_before, Some(1.0));

    let (status, body) = admin(&gw, reqwest::Method::POST, "/api/v1/reload").await;
    assert_eq!(status, 422);
    assert_eq!(body["result"], "error");
    let error = body["errors"][0].as_str().unwrap();
    assert!(
        error.ends_with("error: routes 'acme-pd': retries: 99 is more than 5"),
        "{error}"
    );
    assert!(error.contains("portcullis.toml:"), "{error}");

    // Still serving the old config.
    assert_eq!(active_hash(&gw).await, before);
    let resp = client()
        .get(gw.url("/acme/pd/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "a");

    let (_, status) = admin(&gw, reqwest::Method::GET, "/api/v1/status").await;
    assert_eq!(status["last_reload"]["result"], "error");
    assert_eq!(status["last_reload"]["errors"][0].as_str().unwrap(), error);
    // The error series exists (at 0) from startup; each rejected reload must have counted.
    let metrics = scrape(&gw).await;
    assert_eq!(
        metric_value(
            &metrics,
            "portcullis_config_reloads_total{result=\"error\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    // The log names the error (log lines are written by a background thread).
    eventually(Duration::from_secs(20), "the error in the log", || async {
        gw.log().contains("retries: 99 is more than 5")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_and_sighup_reload_and_secrets_rotate_without_restart() {
    let upstream = labelled_upstream().await;
    let gw = start(&config(&upstream, "a", ""));
    let c = client();
    let get = || {
        c.get(gw.url("/acme/pd/x"))
            .header("x-portcullis-key", KEY)
            .send()
    };
    assert_eq!(get().await.unwrap().text().await.unwrap(), "a");
    assert_eq!(
        header_map(&upstream.last().await)["authorization"],
        format!("Bearer {SECRET_V1}")
    );

    // An editor-style save (write + rename) is picked up by the watcher.
    gw.write_config(&config(&upstream, "b", ""));
    eventually(Duration::from_secs(20), "file watch reload", || async {
        get().await.unwrap().text().await.unwrap() == "b"
    })
    .await;

    // Rotating the secret file needs no restart either.
    let (_, before) = admin(&gw, reqwest::Method::GET, "/api/v1/secrets").await;
    let fingerprint_v1 = before["secrets"][0]["fingerprint"].clone();
    std::fs::write(gw.dir.path().join("secrets/acme/pd.tmp"), SECRET_V2).unwrap();
    std::fs::rename(
        gw.dir.path().join("secrets/acme/pd.tmp"),
        gw.dir.path().join("secrets/acme/pd"),
    )
    .unwrap();
    eventually(Duration::from_secs(20), "secret rotation", || async {
        get().await.unwrap();
        header_map(&upstream.last().await)["authorization"] == format!("Bearer {SECRET_V2}")
    })
    .await;
    // Usage is recorded when a request ends, after its response went out: wait for it.
    eventually(Duration::from_secs(20), "use count of 2", || async {
        let (_, secrets) = admin(&gw, reqwest::Method::GET, "/api/v1/secrets").await;
        secrets["secrets"][0]["use_count"].as_u64() >= Some(2)
    })
    .await;
    let (_, after) = admin(&gw, reqwest::Method::GET, "/api/v1/secrets").await;
    let secret = &after["secrets"][0];
    assert_eq!(secret["status"], "present");
    assert_eq!(secret["source"], "file");
    assert_ne!(secret["fingerprint"], fingerprint_v1);
    assert!(secret["rotated_at_ms"].as_u64().is_some(), "{secret}");
    assert!(secret["use_count"].as_u64().unwrap() >= 2);
    assert_eq!(secret["routes"], serde_json::json!(["acme-pd"]));

    // SIGHUP reloads too.
    gw.signal("HUP");
    eventually(Duration::from_secs(20), "SIGHUP reload", || async {
        let (_, status) = admin(&gw, reqwest::Method::GET, "/api/v1/status").await;
        status["last_reload"]["trigger"] == "sighup"
    })
    .await;
    assert_eq!(
        get().await.unwrap().status(),
        200,
        "still serving after SIGHUP"
    );

    let log = gw.log();
    for secret in [SECRET_V1, SECRET_V2] {
        assert!(!log.contains(secret), "a secret value reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_authenticated_and_never_shows_a_secret() {
    let upstream = labelled_upstream().await;
    let gw = start(&config(&upstream, "a", ""));
    let c = client();
    for _ in 0..3 {
        let resp = c
            .get(gw.url("/acme/pd/incidents?token=query-secret-77&limit=5"))
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = c.get(gw.url("/nowhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    // No token, wrong token: 401 JSON. Unknown path: 404 JSON.
    for token in [None, Some("wrong")] {
        let mut req = c.get(gw.admin_url("/api/v1/status"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(json(&resp.text().await.unwrap())["error"], "unauthorized");
    }
    let (status, body) = admin(&gw, reqwest::Method::GET, "/api/v1/nope").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = admin(&gw, reqwest::Method::GET, "/api/v1/traffic?limit=abc").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    let (status, _) = admin(&gw, reqwest::Method::DELETE, "/api/v1/status").await;
    assert_eq!(status, 405);

    let (_, status) = admin(&gw, reqwest::Method::GET, "/api/v1/status").await;
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["counts"]["routes"], 1);
    assert_eq!(status["listeners"]["http"][0], gw.addr.to_string());

    // Records are written when a request ends, after its response went out: wait for all four.
    eventually(Duration::from_secs(20), "four traffic entries", || async {
        let (_, traffic) = admin(&gw, reqwest::Method::GET, "/api/v1/traffic?after=0").await;
        traffic["entries"].as_array().is_some_and(|e| e.len() == 4)
    })
    .await;
    let (_, routes) = admin(&gw, reqwest::Method::GET, "/api/v1/routes").await;
    let route = &routes["routes"][0];
    assert_eq!(route["name"], "acme-pd");
    assert_eq!(route["stats"]["requests"], 3);
    assert_eq!(route["upstreams"][0]["address"], upstream.addr.to_string());

    let (_, traffic) = admin(
        &gw,
        reqwest::Method::GET,
        "/api/v1/traffic?after=0&limit=10",
    )
    .await;
    let entries = traffic["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["path"], "/acme/pd/incidents?token&limit");
    assert_eq!(entries[0]["route"], "acme-pd");
    assert_eq!(entries[3]["denial"], "no_route");
    let next = traffic["next"].as_u64().unwrap();
    let (_, tail) = admin(
        &gw,
        reqwest::Method::GET,
        &format!("/api/v1/traffic?after={next}"),
    )
    .await;
    assert_eq!(tail["entries"].as_array().unwrap().len(), 0);

    // Metrics: no token needed from loopback.
    let metrics = c
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"portcullis_build_info{version=""#),
        "{metrics}"
    );

    // Nothing secret anywhere an operator can read.
    let (_, secrets) = admin(&gw, reqwest::Method::GET, "/api/v1/secrets").await;
    let everything = format!("{secrets}{status}{routes}{traffic}{metrics}{}", gw.log());
    for needle in [SECRET_V1, ADMIN_TOKEN, KEY, "query-secret-77"] {
        assert!(!everything.contains(needle), "{needle} leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_chains_every_request_and_admin_action() {
    let upstream = labelled_upstream().await;
    let gw = start(&config(&upstream, "a", ""));
    let c = client();
    for path in ["/acme/pd/one", "/acme/pd/two"] {
        c.get(gw.url(path))
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap();
    }
    c.get(gw.url("/acme/pd/three")).send().await.unwrap(); // 401, audited too
    let (status, _) = admin(&gw, reqwest::Method::POST, "/api/v1/reload").await;
    assert_eq!(status, 200);

    let audit_path = gw.dir.path().join("audit.jsonl");
    let lines = gw.audit_lines(4).await;
    let text = std::fs::read_to_string(&audit_path).unwrap();
    let line = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("no audit line for {path}: {text}"))
    };
    assert_eq!(line("/acme/pd/one")["kind"], "request");
    assert_eq!(line("/acme/pd/one")["status"], 200);
    assert_eq!(line("/acme/pd/three")["status"], 401);
    assert_eq!(line("/acme/pd/three")["denial"], "unauthenticated");
    assert!(lines
        .iter()
        .any(|l| l["kind"] == "admin" && l["action"] == "reload"));
    for (a, b) in lines.iter().zip(lines.iter().skip(1)) {
        assert_eq!(b["prev"], a["hash"]);
    }
    assert!(!text.contains(SECRET_V1) && !text.contains(KEY));
    // The counter is raised just after the lines reach the file: wait for it too.
    eventually(
        Duration::from_secs(20),
        "the written-lines counter",
        || async {
            let metrics = scrape(&gw).await;
            metric_value(&metrics, "portcullis_audit_lines_total")
                .is_some_and(|written| written >= lines.len() as f64)
        },
    )
    .await;

    let verify = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["audit", "verify"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = verify(&audit_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("OK {} lines", lines.len())));

    // Edit one field of the second line: verify names that line.
    let tampered = gw.dir.path().join("tampered.jsonl");
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 1 {
                l.replace("\"status\":200", "\"status\":201")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&tampered, edited.join("\n") + "\n").unwrap();
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tampered.jsonl:2:"), "{stderr}");

    // Remove a line: the chain breaks at the line after it.
    let removed: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&tampered, removed.join("\n") + "\n").unwrap();
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tampered.jsonl:2:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_and_carry_no_secret() {
    let upstream = labelled_upstream().await;
    let cfg = config(&upstream, "a", "");
    let gw = start_with_env(&cfg, &[("PORTCULLIS_LOG_FORMAT", "json")]);
    let resp = client()
        .get(gw.url("/acme/pd/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut access = None;
    eventually(Duration::from_secs(20), "access log line", || {
        let found = gw
            .log()
            .lines()
            .map(json)
            .find(|l| l["target"] == "portcullis::access");
        let ok = found.is_some();
        access = found;
        async move { ok }
    })
    .await;
    let access = access.unwrap();
    assert_eq!(access["route"], "acme-pd");
    assert_eq!(access["status"], 200);
    let log = gw.log();
    assert!(!log.contains(SECRET_V1) && !log.contains(KEY) && !log.contains(ADMIN_TOKEN));
}
