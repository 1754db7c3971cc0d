//! End-to-end tests of the edge's hardening (issue 10), each attack driven over real sockets
//! against the real binary: slow request heads (slowloris) and idle keep-alive connections,
//! connection limits before TLS and the descriptor limit, the method policy, the admin
//! listener's Host check, log and audit escaping, and the framing, SSRF and traversal probes
//! that were already refused and must stay so. HTTP/2 abuse is in `tests/h2_abuse.rs`;
//! graceful stop and upgrade in `tests/lifecycle.rs`.

// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const KEY: &str = "acme-key";
const ADMIN_TOKEN: &str = "admin-token-for-hardening-5c1d";
const TRACE_SECRET: &str = "trace-secret-value-0f3a";

/// A gateway with an admin token, a file audit log, tenant `acme`, `server_extra` in
/// `[server]` and the given routes.
fn config(server_extra: &str, routes: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{LISTEN}}"]
admin_listen = "{{ADMIN}}"
{server_extra}

[admin]
token_file = "{{DIR}}/admin-token"
hosts = ["gw-admin.internal"]

[audit]
sink = "file"
path = "{{DIR}}/audit.jsonl"

[[tenants]]
id = "acme"
key_sha256 = ["{key}"]

{routes}
"#,
        key = sha256_hex(KEY),
    )
}

/// A public route `name` on `path` to `target`, with `extra` lines.
fn route(name: &str, path: &str, target: &str, extra: &str) -> String {
    format!(
        r#"
[[routes]]
name = "{name}"
tenant = "acme"
path = "{path}"
target = "{target}"
public = true
allow_destinations = ["127.0.0.0/8"]
{extra}
"#
    )
}

fn start(config: &str) -> GatewayProcess {
    GatewayProcess::start_with(config, &[], |dir| {
        std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    })
}

/// Reads one HTTP/1.1 response with a `content-length` body (or to the end of the stream);
/// `None` when the connection ends before a status line.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = find(&data, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&data[..end + 4 + len]).into_owned());
            }
        }
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (!data.is_empty()).then(|| String::from_utf8_lossy(&data).into_owned())
            }
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "no response within 20 s: {}",
                String::from_utf8_lossy(&data)
            ),
        }
    }
}

fn find(data: &[u8], needle: &[u8]) -> Option<usize> {
    data.windows(needle.len()).position(|w| w == needle)
}

/// Waits (bounded) for the peer to close; returns how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection was still open after {limit:?}"),
        }
    }
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 is all local).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_cut_at_the_head_deadline_while_honest_slow_clients_finish() {
    let upstream = UpstreamBuilder::new().start().await;
    let gw = start(&config(
        "request_header_timeout_ms = 2000",
        &route("r", "/r", &upstream.url(), ""),
    ));
    // Thirty clients trickling a byte every 200 ms: the head never ends.
    let mut attackers = Vec::new();
    for _ in 0..30 {
        let addr = gw.addr;
        attackers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            let (mut read, mut write) = stream.split();
            let trickle = async {
                for b in b"GET /r/x HTTP/1.1\r\nHost: gw\r\nX-Slow: ".iter().chain(&[b'a'; 40]) {
                    if write.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                std::future::pending::<()>().await;
            };
            let mut answer = Vec::new();
            tokio::select! {
                _ = trickle => unreachable!(),
                _ = tokio::time::timeout(Duration::from_secs(15), read.read_to_end(&mut answer)) => {}
            }
            (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
        }));
    }
    // Meanwhile a normal request, and an honest client sending one header line every 250 ms
    // (done after 1 s of its 2 s).
    assert_eq!(
        client().get(gw.url("/r/x")).send().await.unwrap().status(),
        200
    );
    let mut honest = TcpStream::connect(gw.addr).await.unwrap();
    for line in [
        "GET /r/honest HTTP/1.1\r\n",
        "Host: gw\r\n",
        "X-A: 1\r\n",
        "X-B: 2\r\n",
        "\r\n",
    ] {
        honest.write_all(line.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let answer = read_response(&mut honest).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    for attacker in attackers {
        let (elapsed, answer) = attacker.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{answer}"
        );
        assert!(answer.contains(r#"{"error":"request_timeout""#), "{answer}");
        // The deadline counts from the accept; generous above for a loaded machine, but far
        // below "forever" (Pingora's own bound is 60 s per read).
        assert!(
            elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(6),
            "cut after {elapsed:?}"
        );
    }
    assert_eq!(
        gw.metric("portcullis_request_header_timeouts_total").await,
        30.0
    );
    assert_eq!(upstream.count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_on_a_keep_alive_connection_has_its_own_deadline_and_idle_ones_close() {
    let upstream = UpstreamBuilder::new().start().await;
    let gw = start(&config(
        "request_header_timeout_ms = 1000\nkeepalive_timeout_ms = 3000",
        &route("r", "/r", &upstream.url(), ""),
    ));
    let request = b"GET /r/x HTTP/1.1\r\nHost: gw\r\n\r\n";
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    assert!(read_response(&mut conn)
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    // Idle for longer than a head may take (the client's pause, not a wait for the gateway):
    // idle time is keep-alive time, not head time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    conn.write_all(request).await.unwrap();
    assert!(read_response(&mut conn)
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    // The next head starts and stalls: cut one deadline after its first byte.
    conn.write_all(b"GET /r/x HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let answer = read_response(&mut conn).await.unwrap();
    let elapsed = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "cut after {elapsed:?}"
    );
    closed_within(&mut conn, Duration::from_secs(5)).await;

    // An idle keep-alive connection is closed after keepalive_timeout_ms.
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(request).await.unwrap();
    assert!(read_response(&mut idle)
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    let idle_for = closed_within(&mut idle, Duration::from_secs(15)).await;
    assert!(
        idle_for >= Duration::from_millis(2500) && idle_for < Duration::from_secs(8),
        "closed after {idle_for:?}"
    );
    assert_eq!(
        gw.metric("portcullis_request_header_timeouts_total").await,
        1.0
    );
}

/// A TLS client trusting `cert`'s CA.
fn tls_connector(cert: &TestCert) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(cert.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A GET over TLS from the loopback address `from`; the status, or `None` when the
/// connection is closed before a response (a refusal before TLS fails the handshake).
async fn tls_get(cert: &TestCert, from: &str, to: SocketAddr) -> Option<u16> {
    let tcp = connect_from(from, to).await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tls_connector(cert).connect(name, tcp).await.ok()?;
    tls.write_all(b"GET /r/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_refuse_before_tls_count_and_give_places_back() {
    let upstream = UpstreamBuilder::new().start().await;
    let cert = TestCert::generate();
    let text = config(
        "max_connections = 5\nmax_connections_per_ip = 3\n# Held connections stay silent for the whole test.\nrequest_header_timeout_ms = 120000\n\n[[server.tls]]\nlisten = \"{TLS_LISTEN}\"\ncert = \"{DIR}/cert.pem\"\nkey = \"{DIR}/key.pem\"",
        &route("r", "/r", &upstream.url(), ""),
    );
    let gw = GatewayProcess::start_with(&text, &[], |dir| {
        std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
        cert.write(dir);
    });
    let tls = gw.tls_addrs[0];
    let active = "portcullis_active_connections";
    // Three silent connections from one address: never a TLS byte, still counted.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", tls).await);
    }
    eventually(Duration::from_secs(20), "3 connections counted", || async {
        gw.metric(active).await == 3.0
    })
    .await;
    // A fourth from the same address is refused before any TLS: the handshake fails.
    assert_eq!(tls_get(&cert, "127.0.0.1", tls).await, None);
    let per_ip = "portcullis_connections_rejected_total{reason=\"max_connections_per_ip\"}";
    assert_eq!(gw.metric(per_ip).await, 1.0);
    // Two more from another address fill the total of 5, on either listener.
    held.push(connect_from("127.0.0.2", tls).await);
    held.push(connect_from("127.0.0.2", gw.addr).await);
    eventually(Duration::from_secs(20), "5 connections counted", || async {
        gw.metric(active).await == 5.0
    })
    .await;
    assert_eq!(tls_get(&cert, "127.0.0.3", tls).await, None);
    let mut plain = connect_from("127.0.0.4", gw.addr).await;
    plain
        .write_all(b"GET /r/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap_or_default();
    assert_eq!(read_response(&mut plain).await, None, "refused at accept");
    let total = "portcullis_connections_rejected_total{reason=\"max_connections\"}";
    assert_eq!(gw.metric(total).await, 2.0);

    // Closing gives the places back, per address too.
    drop(held);
    eventually(Duration::from_secs(20), "no connection counted", || async {
        gw.metric(active).await == 0.0
    })
    .await;
    for _ in 0..3 {
        assert_eq!(tls_get(&cert, "127.0.0.1", tls).await, Some(200));
    }
    assert_eq!(upstream.count().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_descriptor_limit_is_raised_to_the_hard_limit_and_both_are_logged() {
    let upstream = UpstreamBuilder::new().start().await;
    let gw = GatewayProcess::start_after_shell(
        &config("", &route("r", "/r", &upstream.url(), "")),
        "ulimit -S -n 256",
        |dir| std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap(),
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gw.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    // Log lines go through a buffered writer: wait for the line, not for the ready file.
    eventually(
        Duration::from_secs(20),
        "the descriptor limit logged",
        || async {
            let log = gw.log();
            log.contains("soft_at_start=256") && log.contains(&format!("soft={soft} hard={hard}"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_track_and_connect_are_refused_unless_the_route_lists_them() {
    let upstream = UpstreamBuilder::new().start().await;
    let routes = format!(
        "{}{}",
        route(
            "open",
            "/open",
            &upstream.url(),
            "headers = { Authorization = \"Bearer ${secret:trace}\" }"
        ),
        route(
            "debug",
            "/debug",
            &upstream.url(),
            "allowed_methods = [\"GET\", \"TRACE\"]"
        )
    );
    // The route without allowed_methods injects a secret: a TRACE echoed by the upstream
    // would hand it back to the caller.
    let gw = GatewayProcess::start_with(
        &config("", &routes),
        &[("PORTCULLIS_SECRET_ACME_TRACE", TRACE_SECRET)],
        |dir| std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap(),
    );
    for (request, what) in [
        ("TRACE /open/x HTTP/1.1\r\nHost: gw\r\n", "TRACE"),
        ("TRACK /open/x HTTP/1.1\r\nHost: gw\r\n", "TRACK"),
        ("trace /open/x HTTP/1.1\r\nHost: gw\r\n", "trace"),
        (
            "TRACK /debug/x HTTP/1.1\r\nHost: gw\r\n",
            "TRACK on a route listing TRACE",
        ),
        (
            "TRACE /nowhere HTTP/1.1\r\nHost: gw\r\n",
            "TRACE with no route",
        ),
        (
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n",
            "CONNECT",
        ),
        (
            "CONNECT /open/x HTTP/1.1\r\nHost: gw\r\n",
            "CONNECT in origin form",
        ),
    ] {
        let (status, text) = raw_request(gw.addr, &format!("{request}Connection: close\r\n\r\n"));
        assert_eq!(status, 405, "{what}: {text}");
        assert!(
            text.contains(r#""error":"method_not_allowed""#)
                && text
                    .to_ascii_lowercase()
                    .contains("content-type: application/json"),
            "{what}: {text}"
        );
    }
    // Listed: forwarded.
    let (status, text) = raw_request(
        gw.addr,
        "TRACE /debug/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(upstream.count().await, 1);
    assert_eq!(upstream.last().await.method, "TRACE");
    // GET on the same route is forwarded with the secret: the refusals above were the
    // method policy, not a route that injects nothing.
    assert_eq!(
        raw_request(
            gw.addr,
            "GET /open/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
        )
        .0,
        200
    );
    let forwarded = upstream.requests().await;
    assert_eq!(forwarded.len(), 2);
    assert_eq!(
        header_map(&forwarded[1])
            .get("authorization")
            .map(String::as_str),
        Some(format!("Bearer {TRACE_SECRET}").as_str())
    );
    assert!(
        forwarded[..1]
            .iter()
            .all(|r| !header_map(r).values().any(|v| v.contains(TRACE_SECRET))),
        "a TRACE carried the secret"
    );
    // Every refusal has its access line (Pingora's own CONNECT refusal had none).
    eventually(
        Duration::from_secs(20),
        "access lines of the refusals",
        || async {
            let log = gw.log();
            log.matches("denial=\"method_not_allowed\"").count() == 7
                && log.contains("method=CONNECT path=\"/\" status=405")
        },
    )
    .await;
    assert!(!gw.log().contains(TRACE_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_only_requests_for_its_own_host_names() {
    let gw = start(&config("", ""));
    let admin = gw.admin_addr;
    for (host, expected) in [
        ("evil.example", 421),
        ("127.0.0.1.nip.io:9901", 421),
        ("localhost.evil.example", 421),
        ("localhost", 200),
        ("LOCALHOST:9901", 200),
        ("gw-admin.internal:9901", 200),
    ] {
        let resp = client()
            .get(format!("http://{admin}/metrics"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), expected, "{host}");
        if expected == 421 {
            assert_eq!(
                json(&resp.text().await.unwrap())["error"],
                "misdirected_request"
            );
        }
    }
    // The listener's own address (what a browser sends for http://127.0.0.1:port).
    assert_eq!(
        client()
            .get(gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A valid token does not make a foreign Host acceptable.
    let resp = client()
        .get(gw.admin_url("/api/v1/status"))
        .header("host", "rebind.example")
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 421);
    // A head the parser refuses gets the JSON error (Pingora's adapter closed silently), and
    // its raw bytes, bearer token included, reach no log line (the adapter logged them at
    // `error`).
    let (status, text) = raw_request(
        admin,
        &format!("GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: x\r\n\r\n"),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains(r#"{"error":"bad_request","request_id":""#),
        "{text}"
    );
    // Keep-alive still works on the admin listener (the console polls over one connection).
    let mut conn = TcpStream::connect(admin).await.unwrap();
    for _ in 0..2 {
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let answer = read_response(&mut conn).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
    eventually(
        Duration::from_secs(20),
        "the access line of the malformed head",
        || async { gw.log().contains("status=400 denial=\"bad_request\"") },
    )
    .await;
    assert!(!gw.log().contains(ADMIN_TOKEN), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_has_its_own_connection_cap_and_head_deadline() {
    let text = config("request_header_timeout_ms = 1500", "").replace(
        "hosts = [\"gw-admin.internal\"]",
        "hosts = [\"gw-admin.internal\"]\nmax_connections = 3",
    );
    let gw = start(&text);
    // Four local clients start a request head and stop: three places, so exactly one is
    // closed at once with nothing written, and the three held ones get a 408 at the deadline.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from("127.0.0.1", gw.admin_addr).await;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap_or_default();
        held.push(stream);
    }
    let mut timed_out = 0;
    let mut refused = 0;
    for stream in &mut held {
        match read_response(stream).await {
            Some(resp) => {
                assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
                timed_out += 1;
            }
            None => refused += 1,
        }
    }
    assert_eq!((timed_out, refused), (3, 1));
    drop(held);
    // The places are given back: the admin API answers again, and both limits were counted.
    let refusals = "portcullis_connections_rejected_total{reason=\"admin_max_connections\"}";
    assert_eq!(gw.metric(refusals).await, 1.0);
    assert_eq!(
        gw.metric("portcullis_request_header_timeouts_total").await,
        3.0
    );
    // The public listeners' cap is apart: none of these counted there.
    assert_eq!(
        gw.metric("portcullis_connections_rejected_total{reason=\"max_connections\"}")
            .await,
        0.0
    );
}

/// Raw bytes that must never reach a log or audit line as they are: a line separator, NEL
/// (a C1 control), a bidi override, ESC.
const HOSTILE: [&[u8]; 4] = [b"\xe2\x80\xa8", b"\xc2\x85", b"\xe2\x80\xae", b"\x1b"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_queries_and_hosts_reach_logs_and_audit_only_escaped() {
    let (_closed, dead) = closed_port();
    let upstream = UpstreamBuilder::new().start().await;
    let routes = format!(
        "{}{}",
        route("live", "/live", &upstream.url(), ""),
        route(
            "dead",
            "/dead",
            &format!("http://127.0.0.1:{dead}"),
            "retries = 0"
        )
    );
    let text = config("", &routes);
    for format in ["text", "json"] {
        let gw = GatewayProcess::start_with(&text, &[("PORTCULLIS_LOG_FORMAT", format)], |dir| {
            std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
        });
        let requests: [&[u8]; 6] = [
            // Pingora's own "Fail to proxy" line carries a request summary: query value and
            // Host were in it.
            b"GET /dead/x?api_key=QUERY-VALUE-9d2e HTTP/1.1\r\nHost: hostile-host-4b7a.example\r\n",
            b"GET /dead/a\xe2\x80\xa8INJECTED b HTTP/1.1\r\nHost: gw\r\n",
            b"GET /dead/a\xc2\x85b\xe2\x80\xaec HTTP/1.1\r\nHost: gw\r\n",
            b"GET /live/x?na\xe2\x80\xa8me=QUERY-VALUE-9d2e HTTP/1.1\r\nHost: h\xe2\x80\xa8ost\r\n",
            b"GET /live/%0d%0aINJECTED%1b[31m HTTP/1.1\r\nHost: gw\r\n",
            b"GET /nowhere/\xe2\x80\xa8\r\nINJECTED: x HTTP/1.1\r\nHost: gw\r\n",
        ];
        for request in requests {
            let mut conn = TcpStream::connect(gw.addr).await.unwrap();
            conn.write_all(request).await.unwrap();
            conn.write_all(b"Connection: close\r\n\r\n").await.unwrap();
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer)).await;
        }
        // Every request but the unparsable last one has its access and audit line; the log
        // writer is buffered, so wait for all of them before looking.
        eventually(Duration::from_secs(20), "the access lines", || async {
            let log = gw.log();
            log.matches("portcullis::access").count() >= 5 && log.contains("a%E2%80%A8INJECTED")
        })
        .await;
        let audit = gw.audit_lines(5).await;
        let log = std::fs::read(gw.dir.path().join("gateway.log")).unwrap();
        let audit_bytes = std::fs::read(gw.dir.path().join("audit.jsonl")).unwrap();
        for (name, bytes) in [("log", &log), ("audit", &audit_bytes)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains("QUERY-VALUE-9d2e"),
                "{format} {name}: a query value:\n{text}"
            );
            assert!(
                !text.contains("hostile-host"),
                "{format} {name}: the Host:\n{text}"
            );
            for raw in HOSTILE {
                assert!(
                    find(bytes, raw).is_none(),
                    "{format} {name}: raw {raw:?}:\n{text}"
                );
            }
            for line in text.lines() {
                assert!(
                    !line.starts_with("INJECTED"),
                    "{format} {name}: a forged line:\n{text}"
                );
                if format == "json" || name == "audit" {
                    serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| {
                        panic!("{format} {name}: not one JSON line ({e}): {line}")
                    });
                } else {
                    assert!(
                        line.starts_with("20"),
                        "{format} {name}: not a log line: {line}"
                    );
                }
            }
        }
        // The escapes read back as what the caller sent (nothing is lost, only quoted): NEL
        // and the bidi override as Rust or JSON escapes; the line separator of a request line
        // with a space in it arrives percent-encoded (Pingora's parser does that).
        let text = String::from_utf8_lossy(&log);
        assert!(
            text.contains("a\\u{85}b\\u{202e}c") || text.contains("a\\u0085b\\u202ec"),
            "{format}: {text}"
        );
        assert!(text.contains("a%E2%80%A8INJECTED"), "{format}: {text}");
        assert!(
            audit
                .iter()
                .any(|l| l["path"].as_str() == Some("/dead/a\u{85}b\u{202e}c")),
            "{audit:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_and_smuggling_probes_are_refused_and_never_desync_the_upstream() {
    let upstream = UpstreamBuilder::new().start().await;
    let gw = start(&config("", &route("r", "/r", &upstream.url(), "")));
    let smuggled = "GET /r/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    let probes: Vec<(&str, String)> = vec![
        ("CL.TE", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE.CL", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n{smuggled}")),
        ("two Content-Length", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nContent-Length: 41\r\n\r\n{smuggled}")),
        ("Content-Length list", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 0, 41\r\n\r\n{smuggled}")),
        ("TE xchunked", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE with space before colon", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE tab value", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}")),
        ("TE chunked, identity", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}")),
        ("obs-fold TE", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("bare LF chunk size", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\n\n{smuggled}")),
        ("chunk size overflow", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nx\r\n0\r\n\r\n{smuggled}")),
        ("chunk extension with CR", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n1;a\rb\r\nx\r\n0\r\n\r\n{smuggled}")),
        ("negative Content-Length", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nContent-Length: -1\r\n\r\n{smuggled}")),
        ("plus Content-Length", format!("POST /r/a HTTP/1.1\r\nHost: gw\r\nContent-Length: +0\r\n\r\n{smuggled}")),
        ("two Host", format!("GET /r/a HTTP/1.1\r\nHost: gw\r\nHost: other\r\n\r\n{smuggled}")),
        ("space in header name", format!("GET /r/a HTTP/1.1\r\nHost: gw\r\nX A: b\r\n\r\n{smuggled}")),
        ("HTTP/1.0 with TE", format!("POST /r/a HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}")),
        ("NUL in header", format!("GET /r/a HTTP/1.1\r\nHost: gw\r\nX-A: a\0b\r\n\r\n{smuggled}")),
    ];
    assert_eq!(probes.len(), 18);
    let mut bad_requests = 0;
    for (name, probe) in probes {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(probe.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        // At most one response: a second one would be the smuggled request's.
        assert!(
            answer.matches("HTTP/1.1 ").count() <= 1,
            "{name}: two responses on one connection:\n{answer}"
        );
        // Every refusal is the gateway's JSON error, also where Pingora refused the head
        // before any of the proxy's code ran (it answers a bare 400 of its own).
        if let Some((head, body)) = answer.split_once("\r\n\r\n") {
            assert!(!head.contains("Server: Pingora"), "{name}: {answer}");
            if head.starts_with("HTTP/1.1 400 ") {
                assert!(
                    head.contains("content-type: application/json"),
                    "{name}: {answer}"
                );
                assert_eq!(json(body)["error"], "bad_request", "{name}: {answer}");
                bad_requests += 1;
            }
        }
    }
    // Pingora refuses most of these at parse time; each such refusal has its access line and
    // is counted.
    assert!(bad_requests >= 10, "only {bad_requests} probes got a 400");
    eventually(
        Duration::from_secs(20),
        "the access line of every malformed head",
        || async {
            gw.log()
                .matches("status=400 denial=\"bad_request\"")
                .count()
                >= bad_requests
        },
    )
    .await;
    assert!(gw.metric("portcullis_malformed_requests_total").await >= 1.0);
    let seen: Vec<String> = upstream
        .requests()
        .await
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert!(
        !seen.iter().any(|uri| uri.contains("smuggled")),
        "a smuggled request reached the upstream: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_through_absolute_form_connect_and_userinfo_and_traversal_stay_refused() {
    let upstream = UpstreamBuilder::new().start().await;
    // Something that must never be reached through the gateway.
    let internal = UpstreamBuilder::new().start().await;
    let gw = start(&config("", &route("r", "/r", &upstream.url(), "")));
    let target = internal.addr;
    for request in [
        format!("GET http://{target}/secret HTTP/1.1\r\nHost: {target}\r\n"),
        format!("GET http://{target}/r/x HTTP/1.1\r\nHost: gw\r\n"),
        format!("GET http://user@{target}/r/x HTTP/1.1\r\nHost: gw\r\n"),
        format!("GET /r/x HTTP/1.1\r\nHost: user:pw@{target}\r\n"),
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"),
        format!("GET //{target}/r/x HTTP/1.1\r\nHost: gw\r\n"),
        format!("GET /r/..%2f..%2f{target} HTTP/1.1\r\nHost: gw\r\n"),
    ] {
        let _ = raw_request(gw.addr, &format!("{request}Connection: close\r\n\r\n"));
    }
    assert_eq!(
        internal.count().await,
        0,
        "the gateway reached a target no route names"
    );
    for path in upstream.requests().await.iter().map(|r| r.uri.clone()) {
        assert!(!path.contains(&target.to_string()), "{path}");
    }
    // A CONNECT whose target contradicts its Host is refused by Pingora's parser: with the
    // gateway's JSON error all the same.
    let (status, text) = raw_request(
        gw.addr,
        &format!("CONNECT {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains(r#"{"error":"bad_request","request_id":""#),
        "{text}"
    );
    // The ninth traversal encoding (tests/proxy.rs has eight): uppercase %2E%2E.
    let (status, text) = raw_request(
        gw.addr,
        "GET /r/%2E%2E/%2E%2E/admin HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 403, "{text}");
}
