//! End-to-end tunnel tests: a test gateway built on `portcullis_broker::server`, the real
//! `portcullis-agent` binary, real mock origins, real TLS — all on loopback.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use portcullis_broker::protocol::client;
use portcullis_broker::protocol::frame::{self, Hello, Token};
use portcullis_broker::protocol::transport::{self, Dial, Transport};
use portcullis_broker::server::{self, OpenError};
use portcullis_broker::{CloseReason, StreamKind};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    pki: TestPki,
    gateway: TestGateway,
    origin: MockOrigin,
    agent: AgentProcess,
    dir: tempfile::TempDir,
    _echo: tokio::task::JoinHandle<()>,
    _dead: tokio::net::TcpSocket,
}

fn origins(origin: SocketAddr, echo: SocketAddr, dead: SocketAddr) -> String {
    format!(
        r#"
[[origins]]
name = "sonar"
url = "http://{origin}"
headers = {{ Authorization = "Bearer ${{env:SONAR_TOKEN}}", "X-Agent-Key" = "${{file:agent-key.txt}}" }}
[[origins.accept]]
methods = ["GET"]
path = "/api/**"
[[origins.accept]]
methods = ["GET"]
path = "/search"
query = {{ project = "acme-*" }}
[[origins.accept]]
methods = ["GET"]
path = "/reports/**"
headers = {{ X-Project = "acme-*" }}
[[origins.accept]]
methods = ["POST"]
path = "/upload"
[[origins.accept]]
methods = ["GET"]
path = "/download"
[[origins.accept]]
methods = ["GET"]
path = "/forever"

[[origins]]
name = "open"
url = "http://{origin}/base"

[[origins]]
name = "dead"
url = "http://{dead}"
connect_timeout_ms = 2000

[[origins]]
name = "echo"
url = "tcp://{echo}"
"#
    )
}

async fn setup_with(agent_extra: &str, env: &[(&str, String)]) -> Setup {
    let pki = TestPki::generate();
    let gateway = TestGateway::start(tokens(), options(&pki)).await;
    let origin = MockOrigin::start().await;
    let (echo, echo_task) = echo_server().await;
    // Bound but not listening: connections to it are refused.
    let dead = tokio::net::TcpSocket::new_v4().unwrap();
    dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("agent-key.txt"), "agent-file-secret\n").unwrap();
    let extra = format!(
        "{agent_extra}{}{}",
        tuning(),
        origins(origin.addr, echo, dead_addr)
    );
    let config = write_agent_config(dir.path(), &[gateway.addr], &pki.ca_file, &extra);
    let mut env = env.to_vec();
    env.push(("SONAR_TOKEN", "sonar-env-secret".to_owned()));
    let agent = AgentProcess::spawn(&config, &env);
    Setup {
        pki,
        gateway,
        origin,
        agent,
        dir,
        _echo: echo_task,
        _dead: dead,
    }
}

async fn setup() -> Setup {
    setup_with("", &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_reach_the_origin_with_the_agents_credentials() {
    let s = setup().await;
    let session = s.gateway.session().await;
    assert_eq!(session.info().tunnel, "acme-dc1");
    assert_eq!(session.info().tenant, "acme");
    assert_eq!(session.info().agent_id, "test-agent");
    assert_eq!(session.info().transport, Transport::Binary);
    assert!(session.info().tls);

    let req = Request::get("/api/projects?page=2&secret=hunter2")
        .header("host", "sonar")
        .header("authorization", "Bearer caller-supplied")
        .header("x-agent-key", "caller-copy")
        .header("x-request-id", "req-123")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = request(&session, req).await;
    assert_eq!(resp.status(), 200);
    let body = body_json(resp).await;
    assert_eq!(body["uri"], "/api/projects?page=2&secret=hunter2");
    assert_eq!(body["authorization"], "Bearer sonar-env-secret");

    let received = s.origin.received.borrow().clone();
    assert_eq!(received.len(), 1);
    let auth: Vec<_> = received[0]
        .headers
        .get_all("authorization")
        .iter()
        .collect();
    assert_eq!(
        auth,
        ["Bearer sonar-env-secret"],
        "the caller's copy is dropped"
    );
    let key: Vec<_> = received[0].headers.get_all("x-agent-key").iter().collect();
    assert_eq!(key, ["agent-file-secret"]);
    assert_eq!(received[0].headers["host"], s.origin.addr.to_string());
    assert_eq!(received[0].headers["x-request-id"], "req-123");

    // A base path on the origin URL is prepended; an origin without rules accepts anything.
    let resp = request(&session, get("open", "/anything/at/all?x=1")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_json(resp).await["uri"], "/base/anything/at/all?x=1");

    // The audit line: query names only, never values; the credentials never.
    let line = s
        .agent
        .wait_audit("the allowed request", |l| l["request_id"] == "req-123")
        .await;
    assert_eq!(line["event"], "request");
    assert_eq!(line["origin"], "sonar");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/api/projects?page&secret");
    assert_eq!(line["decision"], "allowed");
    assert_eq!(line["status"], 200);
    assert!(line["bytes_out"].as_u64().unwrap() > 0);
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    let audit = std::fs::read_to_string(s.dir.path().join("audit.jsonl")).unwrap();
    for secret in ["hunter2", "sonar-env-secret", "agent-file-secret", TOKEN] {
        assert!(!audit.contains(secret), "audit leaks {secret}");
    }
    s.agent
        .wait_audit("the connect line", |l| {
            l["event"] == "connect" && l["tunnel"] == "acme-dc1"
        })
        .await;
    for line in s.agent.lines() {
        for secret in ["sonar-env-secret", "agent-file-secret", TOKEN] {
            assert!(!line.contains(secret), "log leaks {secret}: {line}");
        }
    }

    // Several requests on one keep-alive stream.
    let stream = session.open_stream(StreamKind::Http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        sender.ready().await.unwrap();
        let resp = sender
            .send_request(get("sonar", &format!("/api/{i}")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(body_json(resp).await["uri"], format!("/api/{i}"));
    }
    assert_eq!(session.stats().open_streams, 1);
    assert!(session.stats().bytes_from_agent > 0 && session.stats().bytes_to_agent > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_denies_what_its_rules_do_not_allow() {
    let s = setup().await;
    let session = s.gateway.session().await;
    let cases = [
        ("intranet", "/api/x", "GET", "unknown_origin"),
        ("sonar", "/api/../admin", "GET", "path"),
        ("sonar", "/api/%2e%2e/admin", "GET", "path"),
        ("sonar", "/api/%2F/x", "GET", "path"),
        ("sonar", "/admin", "GET", "not_accepted"),
        ("sonar", "/api/x", "DELETE", "not_accepted"),
        ("sonar", "/search?project=other", "GET", "not_accepted"),
        ("sonar", "/search", "GET", "not_accepted"),
        (
            "sonar",
            "/search?project=acme-1&project=evil",
            "GET",
            "not_accepted",
        ),
        ("echo", "/", "GET", "not_http"),
    ];
    for (host, path, method, reason) in cases {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("x-request-id", format!("deny-{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = request(&session, req).await;
        assert_eq!(resp.status(), 403, "{method} {host}{path}");
        let body = body_json(resp).await;
        assert_eq!(body["error"], "agent_denied", "{body}");
        assert_eq!(body["reason"], reason, "{method} {host}{path}: {body}");
        assert!(
            !body.to_string().contains("/api/**"),
            "rules are not revealed: {body}"
        );
    }
    // Header conditions: the header must be there, and every line of it must match.
    let header_cases: [&[&str]; 3] = [&[], &["globex"], &["acme-1", "evil"]];
    for values in header_cases {
        let mut req = Request::get("/reports/weekly").header("host", "sonar");
        for value in values {
            req = req.header("x-project", *value);
        }
        let resp = request(&session, req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(resp.status(), 403, "x-project {values:?}");
        assert_eq!(body_json(resp).await["reason"], "not_accepted");
    }
    // Query and header conditions let the matching request through; the dot segment is
    // normalised.
    let resp = request(&session, get("SONAR:80", "/search?project=acme-7")).await;
    assert_eq!(resp.status(), 200);
    let req = Request::get("/reports/weekly")
        .header("host", "sonar")
        .header("X-Project", "acme-web")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(request(&session, req).await.status(), 200);
    let resp = request(&session, get("sonar", "/api/./a//b")).await;
    assert_eq!(body_json(resp).await["uri"], "/api/a/b");
    let received: Vec<String> = s
        .origin
        .received
        .borrow()
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(
        received,
        ["/search?project=acme-7", "/reports/weekly", "/api/a/b"],
        "nothing denied reached the origin"
    );
    let line = s
        .agent
        .wait_audit("a denied request", |l| {
            l["request_id"] == "deny-/api/../admin"
        })
        .await;
    assert_eq!(line["decision"], "denied");
    assert_eq!(line["reason"], "path");
    assert_eq!(line["status"], 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_origin_is_a_502_with_a_stable_code() {
    let s = setup().await;
    let session = s.gateway.session().await;
    let resp = request(&session, get("dead", "/x")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(body_json(resp).await["error"], "agent_origin_unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_streams_reach_tcp_origins_only() {
    let s = setup().await;
    let session = s.gateway.session().await;
    let mut stream = session
        .open_stream(StreamKind::Tcp {
            origin: "echo".into(),
        })
        .await
        .unwrap();
    for i in 0..20u32 {
        let msg = format!("ping {i} through the tunnel\n");
        stream.write_all(msg.as_bytes()).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());

    for (origin, reason) in [
        ("sonar", "not_tcp"),
        ("nope", "unknown_origin"),
        ("dead", "not_tcp"),
    ] {
        match session
            .open_stream(StreamKind::Tcp {
                origin: origin.into(),
            })
            .await
        {
            Err(OpenError::Refused { reason: r, .. }) => assert_eq!(r, reason, "{origin}"),
            other => panic!("{origin}: expected a refusal, got {other:?}"),
        }
    }
    s.agent
        .wait_audit("the tcp line", |l| {
            l["event"] == "tcp" && l["origin"] == "echo" && l["decision"] == "allowed"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_logged_clearly_and_retried_with_growing_delays() {
    let pki = TestPki::generate();
    let gateway = TestGateway::start(tokens(), options(&pki)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "wrong-token\n").unwrap();
    let extra = "[backoff]\ninitial_ms = 100\nmax_ms = 10000\n[[origins]]\nname = \"o\"\nurl = \"http://127.0.0.1:9\"\n";
    let config = write_agent_config_with_token(dir.path(), &[gateway.addr], &pki.ca_file, extra);
    let mut agent = AgentProcess::spawn(&config, &[]);
    let mut rx = gateway.state.subscribe();
    wait_for(&mut rx, "five refusals", |s| s.attempts.len() >= 5).await;
    let attempts = rx.borrow().attempts.clone();
    assert!(
        attempts
            .iter()
            .all(|a| a.refused.as_deref() == Some("bad_token")),
        "{attempts:?}"
    );
    assert!(rx.borrow().sessions.is_empty());
    agent
        .wait_log("four logged retry delays", |l| {
            l.iter().filter(|l| l.contains("retry_in_ms=")).count() >= 4
        })
        .await;
    let lines = agent.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("gateway refused the tunnel: bad_token: unknown broker token")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("wrong-token")),
        "the token is never logged"
    );
    let delays: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.split("retry_in_ms=").nth(1))
        .map(|v| v.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    // Ceilings 100, 200, 400, 800 ms with equal jitter: each delay at least the previous.
    for (i, w) in delays[..4].windows(2).enumerate() {
        assert!(w[1] >= w[0], "delay {i} -> {}: {delays:?}", i + 1);
    }
    assert!(delays[3] >= 400 && delays[0] <= 100, "{delays:?}");
    // The server sees the same spacing: the gap before the 5th attempt is at least the 4th delay.
    let gap = |i: usize| attempts[i + 1].at - attempts[i].at;
    assert!(
        gap(3) >= Duration::from_millis(delays[3]) - Duration::from_millis(50),
        "{:?} {delays:?}",
        gap(3)
    );
    assert!(gap(3) > gap(0), "{:?} vs {:?}", gap(3), gap(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agent_mid_response_fails_the_stream_within_a_second() {
    let mut s = setup().await;
    let session = s.gateway.session().await;
    let resp = request(&session, get("sonar", "/forever")).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0usize;
    while got < 1 << 20 {
        let frame = body.frame().await.unwrap().unwrap();
        got += frame.data_ref().map_or(0, Bytes::len);
    }
    s.agent.kill();
    let killed = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Ok(()),
            }
        }
    })
    .await
    .expect("the body must end, not hang");
    let elapsed = killed.elapsed();
    assert!(
        outcome.is_err(),
        "a cut-off body is an error, not a clean end"
    );
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    let (reason, _) = tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .unwrap();
    assert_eq!(reason, CloseReason::ConnectionLost);
    assert!(matches!(
        session.open_stream(StreamKind::Http).await,
        Err(OpenError::Closed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_after_a_gateway_restart() {
    let s = setup().await;
    let restarted_options = options(&s.pki);
    let first = s.gateway.session().await;
    let resp = request(&first, get("sonar", "/api/before")).await;
    assert_eq!(resp.status(), 200);
    let Setup {
        gateway,
        origin,
        mut agent,
        dir,
        pki,
        _echo,
        _dead,
    } = s;
    let (addr, sessions) = gateway.stop();
    drop(sessions);
    drop(first);
    agent
        .wait_log("the disconnect", |l| {
            l.iter().any(|l| l.contains("tunnel disconnected"))
        })
        .await;
    let gateway = TestGateway::restart_on(addr, tokens(), restarted_options).await;
    let second = gateway.session().await;
    let resp = request(&second, get("sonar", "/api/after")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_json(resp).await["uri"], "/api/after");
    drop((origin, dir, pki));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_agent_closes_the_tunnel_with_a_go_away() {
    let mut s = setup().await;
    let session = s.gateway.session().await;
    // The gateway accepts a session a moment before the agent reads that answer; an agent
    // stopped in between has no session to say goodbye on. Stop it once it has one.
    s.agent
        .wait_log("the agent's side of the session", |l| {
            l.iter().any(|l| l.contains("tunnel connected"))
        })
        .await;
    s.agent.terminate();
    let (reason, message) = tokio::time::timeout(DEADLINE, session.closed())
        .await
        .unwrap();
    assert_eq!(reason, CloseReason::Shutdown, "{message}");
    let status = s.agent.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let lines = s.agent.audit_lines();
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "disconnect" && l["reason"] == "shutdown"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_tells_the_agent_why() {
    let mut s = setup().await;
    let session = s.gateway.session().await;
    session.close(CloseReason::Revoked, "token removed by a reload");
    let (reason, _) = tokio::time::timeout(DEADLINE, session.closed())
        .await
        .unwrap();
    assert_eq!(reason, CloseReason::Revoked);
    s.agent
        .wait_log("the revocation", |l| {
            l.iter().any(|l| {
                l.contains("tunnel disconnected")
                    && l.contains("revoked")
                    && l.contains("token removed by a reload")
            })
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_transport_carries_the_tunnel() {
    let s = setup_with("transport = \"websocket\"\n", &[]).await;
    let session = s.gateway.session().await;
    assert_eq!(session.info().transport, Transport::WebSocket);
    let resp = request(&session, get("sonar", "/api/ws")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        body_json(resp).await["authorization"],
        "Bearer sonar-env-secret"
    );
    let mut stream = session
        .open_stream(StreamKind::Tcp {
            origin: "echo".into(),
        })
        .await
        .unwrap();
    stream.write_all(b"over websocket").await.unwrap();
    let mut back = [0u8; 14];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"over websocket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_goes_through_https_proxy_with_connect() {
    let (proxy, mut targets, _task) = connect_proxy().await;
    let s = setup_with("", &[("HTTPS_PROXY", format!("http://{proxy}"))]).await;
    let session = s.gateway.session().await;
    let resp = request(&session, get("sonar", "/api/proxied")).await;
    assert_eq!(resp.status(), 200);
    let gateway = s.gateway.addr.to_string();
    wait_for(&mut targets, "the CONNECT", |t| t.contains(&gateway)).await;
    // The session's remote address is the proxy's side, not the agent's.
    assert_ne!(session.info().remote.port(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_bypasses_the_proxy() {
    let (proxy, targets, _task) = connect_proxy().await;
    let s = setup_with(
        "",
        &[
            ("HTTPS_PROXY", format!("http://{proxy}")),
            ("NO_PROXY", "localhost,127.0.0.0/8".into()),
        ],
    )
    .await;
    let session = s.gateway.session().await;
    assert_eq!(
        request(&session, get("sonar", "/api/direct"))
            .await
            .status(),
        200
    );
    assert!(targets.borrow().is_empty());
}

/// A hand-driven agent: TLS, preface, hello — then whatever the test wants.
async fn rogue_agent(
    gateway: SocketAddr,
    pki: &TestPki,
    token: &str,
) -> (
    transport::BoxIo,
    Result<frame::Accepted, client::ClientHandshakeError>,
) {
    let dial = Dial {
        host: "localhost".into(),
        port: gateway.port(),
        addr: Some(gateway),
        transport: Transport::Binary,
        tls: Some(transport::client_config(Some(&pki.ca_file), false).unwrap()),
        proxy: None,
        timeout: DEADLINE,
    };
    let mut io = transport::dial(&dial).await.unwrap();
    let hello = Hello {
        protocol: frame::PROTOCOL_VERSION,
        token: Token::new(token),
        agent_id: "rogue".into(),
        agent_version: "0".into(),
    };
    let accepted = client::handshake(&mut io, &hello, DEADLINE).await;
    (io, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_opened_by_an_agent_are_reset() {
    use futures_util::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_util::compat::TokioAsyncReadCompatExt;
    let pki = TestPki::generate();
    let gateway = TestGateway::start(tokens(), options(&pki)).await;
    let (io, accepted) = rogue_agent(gateway.addr, &pki, TOKEN).await;
    accepted.unwrap();
    let session = gateway.session().await;
    let mut conn =
        yamux::Connection::new(io.compat(), yamux::Config::default(), yamux::Mode::Client);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut opened = false;
        std::future::poll_fn(|cx| {
            if !opened {
                if let std::task::Poll::Ready(r) = conn.poll_new_outbound(cx) {
                    opened = true;
                    let _ = tx.send(r);
                }
            }
            loop {
                match conn.poll_next_inbound(cx) {
                    // Keep the gateway's control stream alive but unread.
                    std::task::Poll::Ready(Some(Ok(stream))) => std::mem::forget(stream),
                    std::task::Poll::Ready(_) => return std::task::Poll::Ready(()),
                    std::task::Poll::Pending => return std::task::Poll::Pending,
                }
            }
        })
        .await;
    });
    let mut stream = rx.recv().await.unwrap().unwrap();
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        buf.is_empty(),
        "the gateway answered an agent-opened stream: {buf:?} ({read:?})"
    );
    let mut rx = gateway.state.subscribe();
    wait_for(&mut rx, "the rejected stream to be counted", |_| {
        session.stats().rejected_streams == 1
    })
    .await;
    assert!(
        !session.is_closed(),
        "only the stream is reset, not the connection"
    );
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_own_connection() {
    let s = setup().await;
    let session = s.gateway.session().await;
    for bad in [
        // An oversized length: rejected from the header alone.
        [&[0x01u8][..], &u32::MAX.to_be_bytes()].concat(),
        // A hello whose payload is not JSON.
        [&[0x01u8][..], &4u32.to_be_bytes(), b"{{{{"].concat(),
        // An unknown frame type.
        vec![0x7f, 0, 0, 0, 0],
    ] {
        let dial = Dial {
            host: "localhost".into(),
            port: s.gateway.addr.port(),
            addr: Some(s.gateway.addr),
            transport: Transport::Binary,
            tls: Some(transport::client_config(Some(&s.pki.ca_file), false).unwrap()),
            proxy: None,
            timeout: DEADLINE,
        };
        let mut io = transport::dial(&dial).await.unwrap();
        io.write_all(frame::PREFACE).await.unwrap();
        io.write_all(&bad).await.unwrap();
        io.flush().await.unwrap();
        let mut rest = Vec::new();
        // The server answers (a refusal, at most) and closes.
        let _ = tokio::time::timeout(DEADLINE, io.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(rest.len() <= frame::HEADER_LEN + frame::MAX_PAYLOAD);
    }
    let mut rx = s.gateway.state.subscribe();
    wait_for(&mut rx, "three malformed handshakes", |st| {
        st.attempts
            .iter()
            .filter(|a| a.refused.as_deref() == Some("malformed"))
            .count()
            == 3
    })
    .await;
    assert!(!session.is_closed());
    let resp = request(&session, get("sonar", "/api/still-fine")).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_dropped_after_the_heartbeat_timeout_and_its_streams_fail() {
    let pki = TestPki::generate();
    let mut opts = options(&pki);
    opts.heartbeat_interval = Duration::from_millis(200);
    opts.heartbeat_timeout = Duration::from_millis(800);
    let gateway = TestGateway::start(tokens(), opts).await;
    // Handshake, then never read or write again: a hung agent.
    let (io, accepted) = rogue_agent(gateway.addr, &pki, TOKEN).await;
    let accepted = accepted.unwrap();
    assert_eq!(accepted.heartbeat_timeout_ms, 800);
    let session = gateway.session().await;
    let mut stream = session.open_stream(StreamKind::Http).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: sonar\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let err = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted);
    assert!(err.to_string().contains("heartbeat_timeout"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let (reason, _) = session.closed().await;
    assert_eq!(reason, CloseReason::HeartbeatTimeout);
    drop(io);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_revoked_tokens_are_refused_with_their_codes() {
    let pki = TestPki::generate();
    let gateway = TestGateway::start(tokens(), options(&pki)).await;
    let (_, revoked) = rogue_agent(gateway.addr, &pki, "an-unknown-token").await;
    assert!(
        matches!(
            revoked,
            Err(client::ClientHandshakeError::Refused {
                code: portcullis_broker::RefuseCode::BadToken,
                ..
            })
        ),
        "{revoked:?}"
    );
    let mut tokens = tokens();
    tokens.revoke(server::token_sha256("an-old-token"));
    let gateway = TestGateway::start(tokens, options(&pki)).await;
    let (_, revoked) = rogue_agent(gateway.addr, &pki, "an-old-token").await;
    assert!(
        matches!(
            revoked,
            Err(client::ClientHandshakeError::Refused {
                code: portcullis_broker::RefuseCode::Revoked,
                ..
            })
        ),
        "{revoked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_keeps_a_connection_to_every_gateway() {
    let pki = TestPki::generate();
    let one = TestGateway::start(tokens(), options(&pki)).await;
    let two = TestGateway::start(tokens(), options(&pki)).await;
    let origin = MockOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}[[origins]]\nname = \"o\"\nurl = \"http://{}\"\n",
        tuning(),
        origin.addr
    );
    let config = write_agent_config(dir.path(), &[one.addr, two.addr], &pki.ca_file, &extra);
    let _agent = AgentProcess::spawn(&config, &[]);
    for gateway in [&one, &two] {
        let session = gateway.session().await;
        let resp = request(&session, get("o", &format!("/via/{}", gateway.addr.port()))).await;
        assert_eq!(resp.status(), 200);
    }
    // One gateway going away leaves the other serving.
    let (_, sessions) = one.stop();
    drop(sessions);
    let session = two.session().await;
    assert_eq!(request(&session, get("o", "/still")).await.status(), 200);
    assert_eq!(origin.received.borrow().len(), 3);
}
