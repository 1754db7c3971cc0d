//! End-to-end tests of SaaS proxying: the real `portcullis` binary, real mock upstreams that
//! record what they received, real sockets on loopback.

mod support;

use std::time::Duration;

use support::*;

const KEY: &str = "acme-key";
const SECRET: &str = "pd-secret-value-7f3a";

/// A tenant `acme` with key `acme-key`, egress pool on 127.0.0.2, and the given routes.
fn config(routes: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{LISTEN}}"]
admin_listen = "{{ADMIN}}"
max_request_header_bytes = 8192

[[egress_pools]]
name = "eu"
addresses = ["127.0.0.2"]
upcoming = ["127.0.0.9"]

[[tenants]]
id = "acme"
egress_pool = "eu"
key_sha256 = ["{}"]

{routes}
"#,
        sha256_hex(KEY)
    )
}

fn pd_route(upstream: &Upstream) -> String {
    format!(
        r#"
[[routes]]
name = "acme-pd"
tenant = "acme"
path = "/acme/pd"
target = "{}/api/v2"
allowed_methods = ["GET", "POST"]
allowed_headers = ["x-allowed"]
headers = {{ Authorization = "Token token=${{secret:pagerduty}}" }}
allow_destinations = ["127.0.0.0/8"]
"#,
        upstream.url()
    )
}

fn secret_env() -> Vec<(&'static str, &'static str)> {
    vec![("PORTCULLIS_SECRET_ACME_PAGERDUTY", SECRET)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_with_injected_secret_filtered_headers_and_rewritten_path() {
    let upstream = UpstreamBuilder::new()
        .reply(|_| {
            Reply::ok("{\"ok\":true}")
                .header("set-cookie", "session=upstream")
                .header("x-upstream", "yes")
        })
        .start()
        .await;
    let gw = GatewayProcess::start(&config(&pd_route(&upstream)), &secret_env());

    let resp = client()
        .get(gw.url("/acme/pd/incidents?limit=5"))
        .header("x-portcullis-key", KEY)
        // Smuggling attempts: a caller copy of the injected header, a cookie, a custom header.
        .header("authorization", "Token token=attacker")
        .header("cookie", "portal-session=abc")
        .header("x-not-allowed", "1")
        .header("x-allowed", "2")
        .header("x-request-id", "caller-id-123")
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "caller-id-123");
    assert!(
        resp.headers().get("set-cookie").is_none(),
        "set-cookie must be dropped"
    );
    assert_eq!(resp.headers()["x-upstream"], "yes");
    assert_eq!(resp.text().await.unwrap(), "{\"ok\":true}");

    let seen = upstream.last().await;
    let h = header_map(&seen);
    assert_eq!(seen.uri, "/api/v2/incidents?limit=5");
    assert_eq!(h["authorization"], format!("Token token={SECRET}"));
    assert_eq!(seen.headers.get_all("authorization").iter().count(), 1);
    assert!(!h.contains_key("cookie"));
    assert!(!h.contains_key("x-not-allowed"));
    assert!(
        !h.contains_key("x-portcullis-key"),
        "the gateway key never goes upstream"
    );
    assert_eq!(h["x-allowed"], "2");
    assert_eq!(h["x-request-id"], "caller-id-123");
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "untrusted XFF is replaced"
    );
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["host"],
        upstream.addr.to_string(),
        "change_origin sets Host"
    );
    assert!(!gw.log().contains(SECRET), "the secret leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_answer_json_with_stable_codes() {
    let upstream = UpstreamBuilder::new().start().await;
    let routes = format!(
        r#"{}
[[routes.accept]]
methods = ["GET"]
path = "/incidents/**"

[[routes]]
name = "acme-office-only"
tenant = "acme"
path = "/acme/office"
target = "{}"
caller_cidrs = ["192.0.2.0/24"]
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "acme-no-secret"
tenant = "acme"
path = "/acme/nosecret"
target = "{}"
headers = {{ Authorization = "Bearer ${{secret:never-set}}" }}
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "acme-localhost"
tenant = "acme"
path = "/acme/localhost"
target = "http://localhost:{}"

[[routes]]
name = "acme-small"
tenant = "acme"
path = "/acme/small"
target = "{}"
max_request_body_bytes = 10
allow_destinations = ["127.0.0.0/8"]
"#,
        pd_route(&upstream),
        upstream.url(),
        upstream.url(),
        upstream.addr.port(),
        upstream.url(),
    );
    let gw = GatewayProcess::start(&config(&routes), &secret_env());
    let c = client();

    let check = |resp: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status, "for {code}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = json(&resp.text().await.unwrap());
        assert_eq!(body["error"], code);
        assert_eq!(body["request_id"], request_id.as_str());
        body
    };

    let body = check(
        c.get(gw.url("/nothing/here")).send().await.unwrap(),
        404,
        "no_route",
    )
    .await;
    assert!(body.get("route").is_none());
    let body = check(
        c.get(gw.url("/acme/pd/incidents")).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    assert_eq!(body["route"], "acme-pd");
    check(
        c.get(gw.url("/acme/pd/incidents"))
            .header("x-portcullis-key", "wrong-key")
            .send()
            .await
            .unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    let resp = c
        .delete(gw.url("/acme/pd/incidents"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["allow"], "GET, POST");
    check(resp, 405, "method_not_allowed").await;
    check(
        c.get(gw.url("/acme/pd/services"))
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap(),
        403,
        "path_denied",
    )
    .await;
    check(
        c.get(gw.url("/acme/office/x"))
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap(),
        403,
        "caller_denied",
    )
    .await;
    check(
        c.get(gw.url("/acme/nosecret/x"))
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap(),
        503,
        "secret_missing",
    )
    .await;
    // `localhost` resolves to 127.0.0.1: the guard checks the resolved address.
    check(
        c.get(gw.url("/acme/localhost/x"))
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap(),
        403,
        "destination_denied",
    )
    .await;
    check(
        c.post(gw.url("/acme/small/x"))
            .header("x-portcullis-key", KEY)
            .body("this body is longer than ten bytes")
            .send()
            .await
            .unwrap(),
        413,
        "body_too_large",
    )
    .await;
    check(
        c.get(gw.url("/acme/pd/incidents"))
            .header("x-portcullis-key", KEY)
            .header("x-big", "a".repeat(9000))
            .send()
            .await
            .unwrap(),
        431,
        "headers_too_large",
    )
    .await;

    // None of the denied requests reached the upstream.
    assert_eq!(upstream.count().await, 0);
    // A chunked body over the limit (no content-length to check up front) is cut too.
    let (status, text) = raw_request(
        gw.addr,
        &format!(
            "POST /acme/small/x HTTP/1.1\r\nHost: gw\r\nx-portcullis-key: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n\
             a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"
        ),
    );
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("\"error\":\"body_too_large\""), "{text}");
    assert!(!gw.log().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_attempts_are_refused_before_matching() {
    let upstream = UpstreamBuilder::new().start().await;
    let gw = GatewayProcess::start(&config(&pd_route(&upstream)), &secret_env());
    for path in [
        "/acme/pd/../../admin",
        "/acme/pd/%2e%2e/%2e%2e/admin",
        "/acme/pd/.%2E/x",
        "/acme/pd/a%2fb",
        "/acme/pd/a%5c..%5cb",
        "/acme/pd/a\\..\\b",
        "/acme/pd/%252e%252e/x",
        "/acme/pd/a%00b",
    ] {
        let (status, text) = raw_request(
            gw.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: gw\r\nx-portcullis-key: {KEY}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(status, 403, "{path}: {text}");
        assert!(text.contains("\"error\":\"path_denied\""), "{path}: {text}");
    }
    assert_eq!(upstream.count().await, 0);
    // A harmless dot segment and doubled slashes are normalised, not refused.
    let (status, _) = raw_request(
        gw.addr,
        &format!("GET /acme/pd/./a//b HTTP/1.1\r\nHost: gw\r\nx-portcullis-key: {KEY}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200);
    assert_eq!(upstream.last().await.uri, "/api/v2/a/b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let slow = UpstreamBuilder::new()
        .reply(|_| Reply {
            delay: Duration::from_secs(3),
            ..Reply::ok("late")
        })
        .start()
        .await;
    let (_closed, dead_port) = closed_port();
    let routes = format!(
        r#"
[[routes]]
name = "down"
tenant = "acme"
path = "/down"
target = "http://127.0.0.1:{dead_port}"
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "slow"
tenant = "acme"
path = "/slow"
target = "{}"
read_timeout_ms = 300
allow_destinations = ["127.0.0.0/8"]
"#,
        slow.url()
    );
    let gw = GatewayProcess::start(&config(&routes), &[]);
    let c = client();
    let resp = c
        .get(gw.url("/down/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        json(&resp.text().await.unwrap())["error"],
        "upstream_unreachable"
    );

    let started = std::time::Instant::now();
    let resp = c
        .get(gw.url("/slow/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(
        json(&resp.text().await.unwrap())["error"],
        "upstream_timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timed out by the gateway, not the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_timeout_cuts_a_response_that_keeps_trickling() {
    // Each chunk arrives well within the read timeout, but the whole exchange would take 3 s.
    let trickle = UpstreamBuilder::new()
        .reply(|_| Reply {
            body: ReplyBody::Drip {
                chunks: 30,
                interval: Duration::from_millis(100),
            },
            ..Reply::ok("")
        })
        .start()
        .await;
    let routes = format!(
        r#"
[[routes]]
name = "trickle"
tenant = "acme"
path = "/trickle"
target = "{}"
read_timeout_ms = 1000
total_timeout_ms = 500
allow_destinations = ["127.0.0.0/8"]
"#,
        trickle.url()
    );
    let gw = GatewayProcess::start(&config(&routes), &[]);
    let started = std::time::Instant::now();
    let resp = client()
        .get(gw.url("/trickle/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    // The headers were already on their way: the cut shows as a truncated body.
    let body = resp.bytes().await;
    let elapsed = started.elapsed();
    match body {
        Ok(b) => panic!(
            "body completed ({} bytes) despite the total timeout",
            b.len()
        ),
        Err(_) => assert!(
            elapsed < Duration::from_millis(2500),
            "cut after {elapsed:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_leave_from_the_tenants_egress_address_and_pools_never_cross() {
    let upstream = UpstreamBuilder::new().start().await;
    let mut cfg = config(&format!(
        r#"
[[routes]]
name = "acme-echo"
tenant = "acme"
path = "/acme"
target = "{0}"
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "globex-echo"
tenant = "globex"
path = "/globex"
target = "{0}"
allow_destinations = ["127.0.0.0/8"]
"#,
        upstream.url()
    ));
    cfg.push_str(&format!(
        r#"
[[egress_pools]]
name = "us"
addresses = ["127.0.0.3"]

[[tenants]]
id = "globex"
egress_pool = "us"
key_sha256 = ["{}"]
"#,
        sha256_hex("globex-key")
    ));
    let gw = GatewayProcess::start(&cfg, &[]);
    // One client, keep-alive on both sides: pooled upstream connections must still not be
    // shared between the two egress addresses.
    let c = client();
    for round in 0..3 {
        for (path, key, source) in [
            ("/acme/x", KEY, "127.0.0.2"),
            ("/globex/x", "globex-key", "127.0.0.3"),
        ] {
            let resp = c
                .get(gw.url(path))
                .header("x-portcullis-key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            let seen = upstream.last().await;
            assert_eq!(seen.peer.ip().to_string(), source, "round {round}, {path}");
        }
    }

    // The published document comes from the same pools.
    let doc = json(
        &c.get(gw.url("/.well-known/egress-ips.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        doc["ipv4"],
        serde_json::json!(["127.0.0.2/32", "127.0.0.3/32"])
    );
    assert_eq!(doc["ipv6"], serde_json::json!([]));
    assert_eq!(doc["upcoming"], serde_json::json!(["127.0.0.9/32"]));
    assert_eq!(doc["retiring"], serde_json::json!([]));
    assert!(doc["sync_token"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_retries_and_health_checks_route_around_a_dead_target() {
    let a = UpstreamBuilder::new()
        .reply(|_| Reply::ok("a"))
        .start()
        .await;
    let b = UpstreamBuilder::new()
        .reply(|_| Reply::ok("b"))
        .start()
        .await;
    let (_closed, dead) = closed_port();
    let routes = format!(
        r#"
[[routes]]
name = "lb"
tenant = "acme"
path = "/lb"
targets = ["{}", "{}"]
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "failover"
tenant = "acme"
path = "/failover"
targets = ["http://127.0.0.1:{dead}", "{}"]
retries = 1
health_check = {{ interval_ms = 200 }}
allow_destinations = ["127.0.0.0/8"]
"#,
        a.url(),
        b.url(),
        b.url()
    );
    let gw = GatewayProcess::start(&config(&routes), &[]);
    let c = client();
    let mut bodies = Vec::new();
    for _ in 0..6 {
        let resp = c
            .get(gw.url("/lb/x"))
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        bodies.push(resp.text().await.unwrap());
    }
    assert_eq!(bodies.iter().filter(|b| *b == "a").count(), 3, "{bodies:?}");
    assert_eq!(bodies.iter().filter(|b| *b == "b").count(), 3, "{bodies:?}");

    // With one dead target, every GET still succeeds: first by retrying the connection on the
    // other target, then because the health check has taken the dead one out.
    let before = b.count().await;
    for _ in 0..10 {
        let resp = c
            .get(gw.url("/failover/x"))
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(b.count().await - before, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_is_verified_against_the_routes_ca_and_h2_is_used_when_asked() {
    let cert = TestCert::generate();
    let upstream = UpstreamBuilder::new().tls(&cert).start().await;
    let port = upstream.addr.port();
    let routes = format!(
        r#"
[[routes]]
name = "trusted"
tenant = "acme"
path = "/trusted"
target = "https://localhost:{port}"
ca_file = "{{DIR}}/ca.pem"
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "trusted-h2"
tenant = "acme"
path = "/h2"
target = "https://localhost:{port}"
ca_file = "{{DIR}}/ca.pem"
upstream_http2 = true
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "untrusted"
tenant = "acme"
path = "/untrusted"
target = "https://localhost:{port}"
allow_destinations = ["127.0.0.0/8"]
"#
    );
    let gw = GatewayProcess::start_with(&config(&routes), &[], |dir| {
        cert.write(dir);
    });
    let c = client();
    let resp = c
        .get(gw.url("/trusted/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = upstream.last().await;
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(header_map(&seen)["host"], format!("localhost:{port}"));

    let resp = c
        .get(gw.url("/h2/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.last().await.version, http::Version::HTTP_2);

    // A certificate the route does not trust is refused: no request reaches the upstream.
    let before = upstream.count().await;
    let resp = c
        .get(gw.url("/untrusted/x"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(upstream.count().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_http2_over_tls_through_alpn() {
    let cert = TestCert::generate();
    let upstream = UpstreamBuilder::new().start().await;
    let mut cfg = config(&pd_route(&upstream));
    cfg = cfg.replace(
        "max_request_header_bytes = 8192",
        "max_request_header_bytes = 8192\n\n[[server.tls]]\nlisten = \"{TLS_LISTEN}\"\ncert = \"{DIR}/cert.pem\"\nkey = \"{DIR}/key.pem\"",
    );
    let gw = GatewayProcess::start_with(&cfg, &secret_env(), |dir| {
        cert.write(dir);
    });
    let tls_port = gw.tls_addrs[0].port();
    let ca = reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .resolve(
            "localhost",
            format!("127.0.0.1:{tls_port}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let resp = c
        .get(format!("https://localhost:{tls_port}/acme/pd/incidents"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let seen = upstream.last().await;
    assert_eq!(seen.uri, "/api/v2/incidents");
    assert_eq!(header_map(&seen)["x-forwarded-proto"], "https");
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_streams_both_ways_with_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let upstream = UpstreamBuilder::new()
        .reply(|r| {
            if r.method == "GET" {
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
    let gw = GatewayProcess::start(&config(&pd_route(&upstream)), &secret_env());
    let c = client();

    // Upload: 1 GiB generated on the fly, never held whole by anyone.
    let chunk = bytes::Bytes::from(vec![7u8; 1 << 20]);
    let stream =
        futures_util::stream::iter((0..1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
        .post(gw.url("/acme/pd/upload"))
        .header("x-portcullis-key", KEY)
        .header("content-length", GIB)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), GIB.to_string());

    // Download: count the bytes as they arrive.
    let mut resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
        .get(gw.url("/acme/pd/download"))
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
    drop(c);

    let peak_mib = gw.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 128,
        "gateway peak RSS {peak_mib} MiB for 1 GiB each way"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_routes_need_no_key_and_invalid_request_ids_are_replaced() {
    let upstream = UpstreamBuilder::new().start().await;
    let routes = format!(
        r#"
[[routes]]
name = "status"
tenant = "acme"
path = "/status"
target = "{}"
public = true
change_origin = false
strip_prefix = false
allow_destinations = ["127.0.0.0/8"]
"#,
        upstream.url()
    );
    let gw = GatewayProcess::start(&config(&routes), &[]);
    let resp = client()
        .get(gw.url("/status/page"))
        .header("x-request-id", "has spaces and ; semicolons")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let seen = upstream.last().await;
    assert_eq!(
        seen.uri, "/status/page",
        "strip_prefix = false keeps the path"
    );
    assert_eq!(
        header_map(&seen)["host"],
        gw.addr.to_string(),
        "change_origin = false keeps Host"
    );
    assert_eq!(header_map(&seen)["x-request-id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_upstream_cuts_short_is_recorded_as_aborted() {
    // Announces 1000 bytes, sends 100, hangs up.
    let (addr, _task) = raw_upstream(
        "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",
        &[b'x'; 100],
    )
    .await;
    let routes = format!(
        r#"
[[routes]]
name = "cut"
tenant = "acme"
path = "/cut"
target = "http://{addr}"
retries = 0
allow_destinations = ["127.0.0.0/8"]
"#
    );
    let gw = GatewayProcess::start(&config(&routes), &[]);
    let c = client();
    for _ in 0..5 {
        let resp = c
            .get(gw.url("/cut/x"))
            .header("x-portcullis-key", KEY)
            .send()
            .await
            .unwrap();
        // The caller got the status before the cut; its body ends early.
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.map_or(true, |b| b.len() < 1000));
    }
    // Recorded as failures, not as 200s: in the metrics…
    let aborted = "portcullis_requests_total{tenant=\"acme\",route=\"cut\",method=\"GET\",code=\"aborted\"} 5";
    let scrape = || async {
        let url = gw.admin_url("/metrics");
        client()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    eventually(
        Duration::from_secs(20),
        "five aborted requests in the metrics",
        || async { scrape().await.contains(aborted) },
    )
    .await;
    let metrics = scrape().await;
    assert!(
        !metrics.contains("route=\"cut\",method=\"GET\",code=\"200\""),
        "{metrics}"
    );
    // …and in the access log, with the distinct outcome (written by a background thread).
    eventually(
        Duration::from_secs(20),
        "five upstream_aborted access lines",
        || async { gw.log().matches("denial=\"upstream_aborted\"").count() == 5 },
    )
    .await;
}
