//! Test harness for the tunnel: a test gateway built on `portcullis_broker::server`, the real
//! `portcullis-agent` process, mock origins that record what they received, a TCP echo server
//! and a CONNECT proxy. Everything on 127.0.0.1:0; every wait is for a condition, with a
//! deadline.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use portcullis_broker::server::{self, AgentSession, ServerOptions, StaticTokens, TunnelGrant};
use portcullis_broker::{StreamKind, TunnelStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const TOKEN: &str = "tok-acme-dc1-0123456789";
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until `cond` holds for the watched value, or panics after `DEADLINE`.
pub async fn wait_for<T>(rx: &mut watch::Receiver<T>, what: &str, cond: impl FnMut(&T) -> bool) {
    match tokio::time::timeout(DEADLINE, rx.wait_for(cond)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => panic!("channel closed while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "broker test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let server =
            portcullis_broker::protocol::transport::server_config(&cert_file, &key_file).unwrap();
        TestPki {
            dir,
            ca_file,
            server,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test gateway

#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: Instant,
    /// `None` for an accepted agent, else the handshake error's reason label.
    pub refused: Option<String>,
    pub message: String,
}

#[derive(Default)]
pub struct GatewayState {
    pub sessions: Vec<AgentSession>,
    pub attempts: Vec<Attempt>,
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub state: watch::Sender<GatewayState>,
    task: tokio::task::JoinHandle<()>,
}

pub fn tokens() -> StaticTokens {
    let mut tokens = StaticTokens::new();
    tokens.insert(
        server::token_sha256(TOKEN),
        TunnelGrant {
            tunnel: "acme-dc1".into(),
            tenant: "acme".into(),
        },
    );
    tokens
}

pub fn options(pki: &TestPki) -> ServerOptions {
    let mut options = ServerOptions::new(pki.server.clone());
    options.heartbeat_interval = Duration::from_millis(500);
    options.heartbeat_timeout = Duration::from_millis(2000);
    options
}

impl TestGateway {
    pub async fn start(tokens: StaticTokens, options: ServerOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, tokens, options)
    }

    /// Binds `addr` again (a restarted gateway), with SO_REUSEADDR.
    pub async fn restart_on(
        addr: SocketAddr,
        tokens: StaticTokens,
        options: ServerOptions,
    ) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        Self::serve(socket.listen(128).unwrap(), tokens, options)
    }

    fn serve(listener: TcpListener, tokens: StaticTokens, options: ServerOptions) -> Self {
        let addr = listener.local_addr().unwrap();
        let (state, _) = watch::channel(GatewayState::default());
        let tx = state.clone();
        let tokens = Arc::new(tokens);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, remote)) = listener.accept().await else {
                    continue;
                };
                let (tx, tokens, options) = (tx.clone(), tokens.clone(), options.clone());
                conns.spawn(async move {
                    let result = server::accept(tcp, remote, &*tokens, &options).await;
                    tx.send_modify(|s| match result {
                        Ok(session) => {
                            s.attempts.push(Attempt {
                                at: Instant::now(),
                                refused: None,
                                message: String::new(),
                            });
                            s.sessions.push(session);
                        }
                        Err(e) => s.attempts.push(Attempt {
                            at: Instant::now(),
                            refused: Some(e.reason().to_owned()),
                            message: e.to_string(),
                        }),
                    });
                });
            }
        });
        TestGateway { addr, state, task }
    }

    /// Waits for a live session and returns it.
    pub async fn session(&self) -> AgentSession {
        let mut rx = self.state.subscribe();
        wait_for(&mut rx, "an agent session", |s| {
            s.sessions.iter().any(|s| !s.is_closed())
        })
        .await;
        let state = rx.borrow();
        state
            .sessions
            .iter()
            .rev()
            .find(|s| !s.is_closed())
            .unwrap()
            .clone()
    }

    /// Stops accepting and drops every session (a gateway crash).
    pub fn stop(self) -> (SocketAddr, Vec<AgentSession>) {
        self.task.abort();
        let sessions =
            std::mem::take(&mut self.state.send_replace(GatewayState::default()).sessions);
        (self.addr, sessions)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends one HTTP/1.1 request on a fresh `http` stream.
pub async fn request(session: &AgentSession, req: Request<Full<Bytes>>) -> Response<Incoming> {
    let stream = session.open_stream(StreamKind::Http).await.unwrap();
    request_on(stream, req).await
}

pub async fn request_on<B>(stream: TunnelStream, req: Request<B>) -> Response<Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender.send_request(req).await.unwrap()
}

pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

pub async fn body_json(resp: Response<Incoming>) -> serde_json::Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}"))
}

// ---------------------------------------------------------------------------------------------
// The agent process

pub struct AgentProcess {
    pub child: Child,
    pub log: watch::Receiver<Vec<String>>,
    pub dir: PathBuf,
}

/// Writes the token file and an agent.toml with `body` after the standard header.
pub fn write_agent_config(
    dir: &Path,
    gateways: &[SocketAddr],
    ca_file: &Path,
    extra: &str,
) -> PathBuf {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    write_agent_config_with_token(dir, gateways, ca_file, extra)
}

pub fn write_agent_config_with_token(
    dir: &Path,
    gateways: &[SocketAddr],
    ca_file: &Path,
    extra: &str,
) -> PathBuf {
    let gateways: Vec<String> = gateways.iter().map(|g| format!("\"{g}\"")).collect();
    let config = format!(
        "gateways = [{}]\ntoken_file = \"token\"\nca_file = \"{}\"\naudit = \"audit.jsonl\"\nagent_id = \"test-agent\"\n{extra}",
        gateways.join(", "),
        ca_file.display()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The standard extra config: fast heartbeats and backoff, plus `origins`.
pub fn tuning() -> &'static str {
    "[heartbeat]\ninterval_ms = 500\ntimeout_ms = 2000\n[backoff]\ninitial_ms = 100\nmax_ms = 1000\n"
}

impl AgentProcess {
    pub fn spawn(config: &Path, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis-agent"));
        cmd.arg("--config")
            .arg(config)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env("PORTCULLIS_AGENT_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = watch::channel(Vec::new());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[agent] {line}");
                tx.send_modify(|l| l.push(line));
            }
        });
        AgentProcess {
            child,
            log,
            dir: config.parent().unwrap().to_path_buf(),
        }
    }

    pub async fn wait_log(&mut self, what: &str, mut cond: impl FnMut(&[String]) -> bool) {
        wait_for(&mut self.log, what, |l| cond(l)).await;
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    /// Peak resident set size, from /proc.
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until the audit file has a line matching `cond`.
    pub async fn wait_audit(
        &self,
        what: &str,
        mut cond: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(line) = self.audit_lines().into_iter().find(|l| cond(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for audit line: {what}"
            );
            // The audit file is written by another process; there is no event to wait on.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Mock origin

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body_bytes: u64,
}

pub struct MockOrigin {
    pub addr: SocketAddr,
    pub received: watch::Receiver<Vec<Received>>,
    task: tokio::task::JoinHandle<()>,
}

const CHUNK: usize = 64 * 1024;

impl MockOrigin {
    /// Routes: `/upload` counts the body and answers its size; `/download?bytes=N` streams N
    /// bytes; `/forever` streams until the client goes away; anything else echoes a JSON summary.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, received) = watch::channel(Vec::new());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        async move { Ok::<_, Infallible>(origin_handle(req, tx).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        MockOrigin {
            addr,
            received,
            task,
        }
    }
}

impl Drop for MockOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn origin_handle(
    req: Request<Incoming>,
    tx: watch::Sender<Vec<Received>>,
) -> Response<OriginBody> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers = req.headers().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut body = req.into_body();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    tx.send_modify(|r| {
        r.push(Received {
            method: method.clone(),
            uri: uri.clone(),
            headers: headers.clone(),
            body_bytes,
        })
    });
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    match path.as_str() {
        "/download" => {
            let total: u64 = query
                .strip_prefix("bytes=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let full = total / CHUNK as u64;
            let rest = (total % CHUNK as u64) as usize;
            let mut chunks = std::iter::repeat_n(chunk.clone(), full as usize).collect::<Vec<_>>();
            if rest > 0 {
                chunks.push(chunk.slice(..rest));
            }
            let stream = futures_util::stream::iter(
                chunks
                    .into_iter()
                    .map(|c| Ok::<_, Infallible>(Frame::data(c))),
            );
            Response::builder()
                .header("content-length", total.to_string())
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        "/forever" => {
            let stream = futures_util::stream::repeat_with(move || {
                Ok::<_, Infallible>(Frame::data(chunk.clone()))
            });
            Response::builder()
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        _ => {
            let auth = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = serde_json::json!({ "method": method, "uri": uri, "authorization": auth, "body_bytes": body_bytes });
            Response::builder()
                .header("content-type", "application/json")
                .header("connection", "keep-alive")
                .body(BodyExt::boxed(Full::new(Bytes::from(body.to_string()))))
                .unwrap()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TCP echo and CONNECT proxy

pub async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

/// A CONNECT proxy that records each CONNECT target.
pub async fn connect_proxy() -> (
    SocketAddr,
    watch::Receiver<Vec<String>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(Vec::new());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                assert!(head.starts_with("CONNECT "), "{head}");
                tx.send_modify(|t| t.push(target.clone()));
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, rx, task)
}
