//! HTTP/2 abuse against the real binary over TLS (ALPN h2): rapid reset, CONTINUATION flood,
//! PING flood, SETTINGS flood, and more concurrent streams than allowed. Each test asserts
//! that the attacking connection is closed or the attack bounded, that the gateway's RSS stays
//! within 64 MiB of its idle RSS, and that a normal request succeeds during the attack.
//!
//! Rapid reset and the stream limit use the `h2` crate as the client (the implementation
//! Pingora itself uses). The floods are frames the `h2` crate will not send (an endless header
//! block, thousands of unanswered PINGs and SETTINGS), so they are written as raw frames on
//! the same TLS connection.

// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How far above its idle RSS the gateway may grow under any of these attacks.
const RSS_BUDGET_KIB: u64 = 64 * 1024;

/// HTTP/2 idle timeout (the keep-alive timeout) of the test gateway: a connection with no
/// stream open is closed after this long, whatever frames it sends.
const IDLE_MS: u64 = 2000;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Target {
    gw: GatewayProcess,
    cert: TestCert,
    _upstream: Upstream,
    idle_rss_kib: u64,
}

async fn target(upstream_delay: Duration) -> Target {
    target_with(upstream_delay, &format!("keepalive_timeout_ms = {IDLE_MS}")).await
}

/// As [`target`], with `server_extra` in `[server]` instead of the keep-alive timeout.
async fn target_with(upstream_delay: Duration, server_extra: &str) -> Target {
    let upstream = UpstreamBuilder::new()
        .reply(move |_| Reply {
            delay: upstream_delay,
            ..Reply::ok("ok")
        })
        .start()
        .await;
    let cert = TestCert::generate();
    let config = format!(
        r#"
[server]
listen = ["{{LISTEN}}"]
admin_listen = "{{ADMIN}}"
{server_extra}
h2_max_concurrent_streams = 10
max_request_header_bytes = 16384

[[server.tls]]
listen = "{{TLS_LISTEN}}"
cert = "{{DIR}}/cert.pem"
key = "{{DIR}}/key.pem"

[[tenants]]
id = "acme"

[[routes]]
name = "r"
tenant = "acme"
path = "/r"
target = "{}"
public = true
allow_destinations = ["127.0.0.0/8"]
"#,
        upstream.url()
    );
    let gw = GatewayProcess::start_with(&config, &[], |dir| {
        cert.write(dir);
    });
    // Warm up both listeners, then take the idle RSS.
    assert_eq!(normal_request(&gw).await.0, 200);
    assert_eq!(h2_get(&cert, gw.tls_addrs[0]).await, 200);
    let idle_rss_kib = gw.rss_kib();
    Target {
        gw,
        cert,
        _upstream: upstream,
        idle_rss_kib,
    }
}

/// A GET over plain HTTP/1.1: its status and how long it took.
async fn normal_request(gw: &GatewayProcess) -> (u16, Duration) {
    let started = Instant::now();
    let status = client()
        .get(gw.url("/r/normal"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (status, started.elapsed())
}

async fn tls(cert: &TestCert, addr: SocketAddr) -> TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(cert.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    stream
}

fn request(path: &str) -> http::Request<()> {
    http::Request::builder()
        .uri(format!("https://localhost{path}"))
        .body(())
        .unwrap()
}

/// A GET over HTTP/2 with the `h2` crate; its status.
async fn h2_get(cert: &TestCert, addr: SocketAddr) -> u16 {
    let (client, conn) = h2::client::handshake(tls(cert, addr).await).await.unwrap();
    let driver = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let (resp, _) = client.send_request(request("/r/h2"), true).unwrap();
    let status = resp.await.unwrap().status().as_u16();
    driver.abort();
    status
}

/// One raw frame: 24-bit length, type, flags, stream id.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// An HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1), first byte ORed with `high`.
fn hpack_int(out: &mut Vec<u8>, high: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name (RFC 7541 section 6.2.2).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// `GET https://localhost/r/raw` as an HPACK block (static table entries).
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    hpack_literal(&mut block, ":path", b"/r/raw");
    hpack_literal(&mut block, ":authority", b"localhost");
    block
}

/// Writes the client preface and an empty SETTINGS frame.
async fn raw_h2(cert: &TestCert, addr: SocketAddr) -> TlsStream<TcpStream> {
    let mut stream = tls(cert, addr).await;
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    stream
}

/// Floods `frames` (one after another, each written whole) until the peer closes the
/// connection, all are sent, or `limit` passes. Reads (and drops) what the server sends, so
/// only the server decides when the connection ends. Returns whether the server closed it
/// and how many frames went out.
async fn flood(
    stream: TlsStream<TcpStream>,
    mut next: impl FnMut(usize) -> Option<Vec<u8>>,
    limit: Duration,
) -> (bool, usize) {
    let (mut read, mut write) = tokio::io::split(stream);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let started = Instant::now();
    let mut sent = 0;
    let closed = loop {
        if reader.is_finished() {
            break true;
        }
        if started.elapsed() > limit {
            break false;
        }
        let Some(bytes) = next(sent) else {
            // Everything sent: does the server still close the connection in time?
            break tokio::time::timeout(limit.saturating_sub(started.elapsed()), reader)
                .await
                .is_ok();
        };
        match tokio::time::timeout(Duration::from_secs(5), write.write_all(&bytes)).await {
            Ok(Ok(())) => sent += 1,
            // The server stopped reading (its buffers are bounded) or closed the connection.
            Ok(Err(_)) => break true,
            Err(_) => {
                // Blocked for 5 s: the server is not reading; wait for it to close.
                break tokio::time::timeout(limit.saturating_sub(started.elapsed()), reader)
                    .await
                    .is_ok();
            }
        }
    };
    (closed, sent)
}

/// What every test checks after its attack: memory and a normal request.
async fn assert_unharmed(t: &Target, latencies: &[Duration]) {
    let peak = t.gw.peak_rss_kib();
    assert!(
        peak < t.idle_rss_kib + RSS_BUDGET_KIB,
        "peak RSS {peak} KiB, idle {} KiB",
        t.idle_rss_kib
    );
    assert!(!latencies.is_empty());
    let worst = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "idle RSS {} KiB, peak {peak} KiB; {} normal requests during the attack, slowest {worst:?}",
        t.idle_rss_kib,
        latencies.len()
    );
    let (status, _) = normal_request(&t.gw).await;
    assert_eq!(status, 200);
    assert_eq!(h2_get(&t.cert, t.gw.tls_addrs[0]).await, 200);
}

/// Normal requests every 50 ms while `attack` runs; their latencies.
async fn during<F: std::future::Future>(
    gw: &GatewayProcess,
    attack: F,
) -> (F::Output, Vec<Duration>) {
    let url = gw.url("/r/during");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut latencies = Vec::new();
            // At least one request, even when the attack is over before the first could be
            // sent (a CONTINUATION flood is cut within milliseconds; on a loaded machine the
            // prober's first connection can take longer than that).
            while latencies.is_empty()
                || (!stop.load(std::sync::atomic::Ordering::Relaxed) && latencies.len() < 2000)
            {
                let started = Instant::now();
                let resp = client().get(&url).send().await.unwrap();
                assert_eq!(
                    resp.status(),
                    200,
                    "a normal request failed during the attack"
                );
                latencies.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            latencies
        }
    });
    let out = attack.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, prober.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_bounded() {
    let t = target(Duration::from_millis(200)).await;
    let addr = t.gw.tls_addrs[0];
    let ((opened, goaway), latencies) = during(&t.gw, async {
        let (client, conn) = h2::client::handshake(tls(&t.cert, addr).await)
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let mut client = client;
        let mut opened = 0;
        let mut goaway = false;
        for _ in 0..20_000 {
            client = match tokio::time::timeout(Duration::from_secs(10), client.ready()).await {
                Ok(Ok(c)) => c,
                _ => {
                    goaway = true;
                    break;
                }
            };
            match client.send_request(request("/r/reset"), false) {
                Ok((_, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    opened += 1;
                }
                Err(_) => {
                    goaway = true;
                    break;
                }
            }
        }
        driver.abort();
        (opened, goaway)
    })
    .await;
    // h2's limit on streams reset before they were accepted ends the connection with
    // ENHANCE_YOUR_CALM; if the server kept up instead, every stream was cheap.
    assert!(goaway || opened == 20_000, "opened {opened}");
    assert_unharmed(&t, &latencies).await;
    eprintln!("rapid reset: {opened} streams opened, connection closed: {goaway}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut() {
    let t = target(Duration::ZERO).await;
    let stream = raw_h2(&t.cert, t.gw.tls_addrs[0]).await;
    let mut value = vec![b'a'; 16_000];
    value[0] = b'b';
    let mut fragment = Vec::new();
    hpack_literal(&mut fragment, "x-flood", &value);
    let ((closed, sent), latencies) = during(&t.gw, async {
        flood(
            stream,
            |i| match i {
                // HEADERS without END_HEADERS, then CONTINUATION frames that never end it.
                0 => Some(frame(HEADERS, END_STREAM, 1, &get_block())),
                1..=10_000 => Some(frame(CONTINUATION, 0, 1, &fragment)),
                _ => None,
            },
            Duration::from_secs(30),
        )
        .await
    })
    .await;
    assert!(closed, "still open after {sent} frames");
    // The header list limit (16 KiB here) is passed by the second CONTINUATION frame.
    assert!(
        sent < 10_000,
        "{sent} frames were read before the connection ended"
    );
    assert_unharmed(&t, &latencies).await;
    eprintln!("continuation flood: closed after {sent} frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_bounded_and_closed_by_the_idle_timeout() {
    let t = target(Duration::ZERO).await;
    let stream = raw_h2(&t.cert, t.gw.tls_addrs[0]).await;
    let started = Instant::now();
    let ((closed, sent), latencies) = during(&t.gw, async {
        flood(
            stream,
            // 64 PINGs per write, up to 6.4 million.
            |i| {
                (i < 100_000).then(|| {
                    (0..64u64)
                        .flat_map(|n| frame(PING, 0, 0, &(i as u64 * 64 + n).to_be_bytes()))
                        .collect()
                })
            },
            Duration::from_secs(30),
        )
        .await
    })
    .await;
    let lasted = started.elapsed();
    // No stream is ever open on this connection: the idle timeout closes it mid-flood.
    assert!(closed, "still open after {sent} writes ({lasted:?})");
    assert!(
        lasted < Duration::from_millis(IDLE_MS) + Duration::from_secs(10),
        "{lasted:?}"
    );
    assert_unharmed(&t, &latencies).await;
    eprintln!("ping flood: {} pings, closed after {lasted:?}", sent * 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_is_bounded_and_closed_by_the_idle_timeout() {
    let t = target(Duration::ZERO).await;
    let stream = raw_h2(&t.cert, t.gw.tls_addrs[0]).await;
    // SETTINGS_HEADER_TABLE_SIZE = 4096 and SETTINGS_INITIAL_WINDOW_SIZE varying.
    let started = Instant::now();
    let ((closed, sent), latencies) = during(&t.gw, async {
        flood(
            stream,
            |i| {
                (i < 100_000).then(|| {
                    (0..32u32)
                        .flat_map(|n| {
                            let mut payload = vec![0, 1, 0, 0, 0x10, 0];
                            payload.extend_from_slice(&[0, 4]);
                            payload.extend_from_slice(
                                &(65_535 + (i as u32 * 32 + n) % 1000).to_be_bytes(),
                            );
                            frame(SETTINGS, 0, 0, &payload)
                        })
                        .collect()
                })
            },
            Duration::from_secs(30),
        )
        .await
    })
    .await;
    let lasted = started.elapsed();
    assert!(closed, "still open after {sent} writes ({lasted:?})");
    assert!(
        lasted < Duration::from_millis(IDLE_MS) + Duration::from_secs(10),
        "{lasted:?}"
    );
    assert_unharmed(&t, &latencies).await;
    eprintln!(
        "settings flood: {} frames, closed after {lasted:?}",
        sent * 32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_configured_limit_are_refused() {
    // Each request holds its stream for 2 s at the upstream.
    let t = target(Duration::from_secs(2)).await;
    let stream = raw_h2(&t.cert, t.gw.tls_addrs[0]).await;
    let block = get_block();
    let (mut read, mut write) = tokio::io::split(stream);
    let ((), latencies) = during(&t.gw, async {
        // 500 streams at once, ignoring the server's SETTINGS_MAX_CONCURRENT_STREAMS (10).
        let mut burst = Vec::new();
        for n in 0..500u32 {
            burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * n, &block));
        }
        write.write_all(&burst).await.unwrap();
        // Read what comes back for a while: responses and refusals.
        let mut buf = vec![0u8; 64 * 1024];
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(200), read.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
    })
    .await;
    // Only the streams within the limit reached the upstream.
    let reached = t
        ._upstream
        .requests()
        .await
        .iter()
        .filter(|r| r.uri == "/raw")
        .count();
    assert!(reached <= 10, "{reached} streams reached the upstream");
    assert!(reached > 0, "no stream was served at all");
    assert_unharmed(&t, &latencies).await;
    eprintln!("concurrent streams: {reached} of 500 served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keep_alive_off_a_ping_flood_is_closed_by_the_head_deadline() {
    // keepalive_timeout_ms = 0 turns HTTP/1 keep-alive off; an HTTP/2 connection must still
    // idle out (Pingora would read "no idle timeout" as never).
    let t = target_with(
        Duration::ZERO,
        "keepalive_timeout_ms = 0\nrequest_header_timeout_ms = 1500",
    )
    .await;
    let stream = raw_h2(&t.cert, t.gw.tls_addrs[0]).await;
    let started = Instant::now();
    let ((closed, sent), latencies) = during(&t.gw, async {
        flood(
            stream,
            |i| {
                (i < 100_000).then(|| {
                    (0..64u64)
                        .flat_map(|n| frame(PING, 0, 0, &(i as u64 * 64 + n).to_be_bytes()))
                        .collect()
                })
            },
            Duration::from_secs(30),
        )
        .await
    })
    .await;
    let lasted = started.elapsed();
    assert!(closed, "still open after {sent} writes ({lasted:?})");
    assert!(lasted < Duration::from_secs(12), "{lasted:?}");
    assert_unharmed(&t, &latencies).await;
    eprintln!("ping flood, keep-alive off: closed after {lasted:?}");
}
