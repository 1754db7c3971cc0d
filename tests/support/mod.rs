//! Shared pieces of the end-to-end tests: a recording mock upstream, the real `portcullis`
//! binary started on free loopback ports, a raw-socket client for requests that HTTP clients
//! would "fix" (traversal), and test TLS material.
//!
//! Everything listens on loopback; nothing here sends traffic anywhere else.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

pub mod agent;
pub mod upgrade;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// What the mock upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub peer: SocketAddr,
    pub body_len: u64,
    /// The first 64 KiB of the body.
    pub body: Vec<u8>,
}

/// How the mock upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
    pub delay: Duration,
}

#[derive(Debug, Clone)]
pub enum ReplyBody {
    Text(String),
    /// `n` zero bytes, streamed in 64 KiB chunks.
    Zeros(u64),
    /// `chunks` small chunks, one every `interval` (a slow streaming response).
    Drip {
        chunks: u32,
        interval: Duration,
    },
}

type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

pub struct UpstreamBuilder {
    ip: IpAddr,
    tls: Option<TestCert>,
    responder: Responder,
}

/// A running mock upstream; stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A self-signed CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
#[derive(Clone)]
pub struct TestCert {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The `portcullis` binary running a config; killed when dropped.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// TLS listeners, in config order.
    pub tls_addrs: Vec<SocketAddr>,
    /// The tunnel listener, when configured.
    pub tunnel_addr: Option<SocketAddr>,
    /// TCP route listeners, by route name.
    pub tcp_addrs: Vec<(String, SocketAddr)>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Child,
    log_path: PathBuf,
}

// === impl Reply ===

impl Reply {
    pub fn ok(text: &str) -> Self {
        Self {
            status: 200,
            headers: vec![],
            body: ReplyBody::Text(text.to_owned()),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

// === impl UpstreamBuilder ===

impl UpstreamBuilder {
    pub fn new() -> Self {
        Self {
            ip: IpAddr::from([127, 0, 0, 1]),
            tls: None,
            responder: Arc::new(|r: &Recorded| Reply::ok(&format!("hello from {}", r.uri))),
        }
    }

    pub fn ip(mut self, ip: &str) -> Self {
        self.ip = ip.parse().unwrap();
        self
    }

    pub fn tls(mut self, cert: &TestCert) -> Self {
        self.tls = Some(cert.clone());
        self
    }

    pub fn reply(mut self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        self.responder = Arc::new(f);
        self
    }

    pub async fn start(self) -> Upstream {
        let listener = TcpListener::bind(SocketAddr::new(self.ip, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let acceptor = self.tls.map(|cert| tls_acceptor(&cert));
        let responder = self.responder;
        let task_log = Arc::clone(&log);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&task_log);
                let responder = Arc::clone(&responder);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = Arc::clone(&log);
                        let responder = Arc::clone(&responder);
                        async move { Ok::<_, Infallible>(handle(req, peer, log, responder).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Upstream { addr, log, task }
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    responder: Responder,
) -> Response<BoxBody> {
    let (parts, mut body) = req.into_parts();
    let mut body_len = 0u64;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    body_len += d.len() as u64;
                    let room = (64 * 1024usize).saturating_sub(kept.len());
                    kept.extend_from_slice(&d[..d.len().min(room)]);
                }
            }
            Err(_) => break,
        }
    }
    let recorded = Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers,
        peer,
        body_len,
        body: kept,
    };
    let reply = responder(&recorded);
    log.lock().await.push(recorded);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = Response::builder().status(reply.status);
    for (n, v) in &reply.headers {
        resp = resp.header(n, v);
    }
    let body: BoxBody = match reply.body {
        ReplyBody::Text(t) => Full::new(Bytes::from(t)).boxed(),
        ReplyBody::Zeros(n) => {
            resp = resp.header("content-length", n);
            let chunk = Bytes::from(vec![0u8; 64 * 1024]);
            let chunks = n / chunk.len() as u64;
            let rest = (n % chunk.len() as u64) as usize;
            let stream = futures_stream(chunks, rest, chunk);
            StreamBody::new(stream).boxed()
        }
        ReplyBody::Drip { chunks, interval } => {
            let stream = futures_util::stream::unfold(0u32, move |sent| async move {
                if sent >= chunks {
                    return None;
                }
                tokio::time::sleep(interval).await;
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"drip\n"))),
                    sent + 1,
                ))
            });
            StreamBody::new(stream).boxed()
        }
    };
    resp.body(body).unwrap()
}

fn futures_stream(
    chunks: u64,
    rest: usize,
    chunk: Bytes,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    let tail = chunk.slice(..rest);
    let mut sent = 0u64;
    let mut tail_sent = rest == 0;
    futures_util::stream::poll_fn(move |_| {
        if sent < chunks {
            sent += 1;
            std::task::Poll::Ready(Some(Ok(Frame::data(chunk.clone()))))
        } else if !tail_sent {
            tail_sent = true;
            std::task::Poll::Ready(Some(Ok(Frame::data(tail.clone()))))
        } else {
            std::task::Poll::Ready(None)
        }
    })
}

fn tls_acceptor(cert: &TestCert) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

// === impl Upstream ===

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn requests(&self) -> Vec<Recorded> {
        self.log.lock().await.clone()
    }

    pub async fn last(&self) -> Recorded {
        self.log
            .lock()
            .await
            .last()
            .cloned()
            .expect("upstream saw no request")
    }

    pub async fn count(&self) -> usize {
        self.log.lock().await.len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === impl TestCert ===

impl TestCert {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portcullis test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca = dir.join("ca.pem");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&ca, &self.ca_pem).unwrap();
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (ca, cert, key)
    }
}

// === impl GatewayProcess ===

/// A loopback port that refuses connections for as long as the returned socket lives: bound,
/// never listening. (A port that was merely free a moment ago may be taken by the time it is
/// used.)
pub fn closed_port() -> (socket2::Socket, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    (socket, port)
}

/// What `--ready-file` holds: the addresses the gateway really listens on.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Ready {
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub admin: SocketAddr,
    #[serde(default)]
    pub tunnel: Option<SocketAddr>,
    #[serde(default)]
    pub tcp_routes: Vec<ReadyTcpRoute>,
}

/// A TCP route's listener in the ready file.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ReadyTcpRoute {
    pub name: String,
    pub addr: SocketAddr,
}

/// Waits for `child` to write its ready file (or to exit, which panics with `log`).
pub fn wait_ready(child: &mut Child, ready: &Path, log: impl Fn() -> String) -> Ready {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(ready) {
            return serde_json::from_str(&text).unwrap();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("portcullis exited early ({status}):\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "portcullis did not become ready:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

impl GatewayProcess {
    /// Starts `portcullis run` on `config` with extra environment variables. `{LISTEN}`,
    /// `{ADMIN}` and `{TLS_LISTEN}` in the config become `127.0.0.1:0`: the gateway picks free
    /// ports and reports them in its ready file.
    pub fn start(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(config, env, |_| {})
    }

    /// As `start`, letting the caller write files into the config directory first (`{DIR}` in
    /// the config is replaced by its path).
    pub fn start_with(config: &str, env: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> Self {
        Self::launch(config, env, prepare, false)
    }

    /// As `start_with`, run from the config directory with a relative `--config` path (as an
    /// operator typing `portcullis run --config gw.toml` does).
    pub fn start_relative(config: &str, env: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> Self {
        Self::launch(config, env, prepare, true)
    }

    /// As `start_with`, with `shell` run by `sh` first in the process that then becomes the
    /// gateway (e.g. `ulimit -S -n 256`).
    pub fn start_after_shell(config: &str, shell: &str, prepare: impl FnOnce(&Path)) -> Self {
        Self::launch_full(config, &[], prepare, false, Some(shell), None)
    }

    /// `portcullis run --upgrade` on `config` (listener addresses and the upgrade socket
    /// written out: those of the running gateway): takes the running gateway's sockets over
    /// once that one is sent SIGQUIT, so the caller sends it from elsewhere. Returns once the
    /// new process is ready; its log and ready file are in a directory of its own.
    pub fn upgrade_from(config: &str) -> Self {
        Self::launch_full(config, &[], |_| {}, false, None, Some("--upgrade"))
    }

    fn launch(
        config: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
        relative: bool,
    ) -> Self {
        Self::launch_full(config, env, prepare, relative, None, None)
    }

    fn launch_full(
        config: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
        relative: bool,
        shell: Option<&str>,
        extra_arg: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, fill(config, dir.path())).unwrap();
        let log_path = dir.path().join("gateway.log");
        let ready_path = dir.path().join("ready.json");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = match shell {
            Some(shell) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg(format!("{shell}; exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_portcullis"));
                cmd
            }
            None => Command::new(env!("CARGO_BIN_EXE_portcullis")),
        };
        cmd.arg("run");
        cmd.args(extra_arg);
        cmd.args(["--threads", "1", "--config"]);
        if relative {
            cmd.current_dir(dir.path()).arg("portcullis.toml");
        } else {
            cmd.arg(&config_path);
        }
        cmd.arg("--ready-file")
            .arg(&ready_path)
            .env("RUST_LOG", "info")
            .env_remove("PORTCULLIS_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning portcullis");
        let ready = wait_ready(&mut child, &ready_path, || {
            std::fs::read_to_string(&log_path).unwrap_or_default()
        });
        Self {
            addr: ready.http[0],
            admin_addr: ready.admin,
            tls_addrs: ready.https,
            tunnel_addr: ready.tunnel,
            tcp_addrs: ready
                .tcp_routes
                .into_iter()
                .map(|r| (r.name, r.addr))
                .collect(),
            dir,
            config_path,
            child,
            log_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// Rewrites the config file the way editors do: write a temporary file, rename it over.
    pub fn write_config(&self, config: &str) {
        let text = self.fill(config);
        let tmp = self.dir.path().join(".portcullis.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// `config` with its placeholders filled in as for this gateway.
    pub fn fill(&self, config: &str) -> String {
        fill(config, self.dir.path())
    }

    /// Waits (bounded) for the process to exit, returning its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "portcullis did not exit in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The config text as it is on disk now.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).unwrap()
    }

    /// The audit file `{DIR}/audit.jsonl`, parsed, once it has at least `n` lines.
    pub async fn audit_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let path = self.dir.path().join("audit.jsonl");
        eventually(Duration::from_secs(20), &format!("{n} audit lines"), || {
            let path = path.clone();
            async move { std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= n) }
        })
        .await;
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(json)
            .collect()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the gateway process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    /// Resident memory of the gateway process now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// A metric's value from the admin listener's `/metrics` (loopback needs no token), 0 when
    /// absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}

/// A config with its placeholders filled in: listeners on port 0, `{DIR}` the config directory.
fn fill(config: &str, dir: &Path) -> String {
    config
        .replace("{LISTEN}", "127.0.0.1:0")
        .replace("{ADMIN}", "127.0.0.1:0")
        .replace("{TLS_LISTEN}", "127.0.0.1:0")
        .replace("{TUNNEL_LISTEN}", "127.0.0.1:0")
        .replace("{TCP_LISTEN}", "127.0.0.1:0")
        .replace("{DIR}", dir.to_str().unwrap())
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain client (no proxy from the environment, no redirects).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends bytes as they are and returns (status, headers, body) of the response; for requests
/// an HTTP client would normalise (`/../`, `%2e%2e`, backslashes).
pub fn raw_request(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A raw TCP upstream that answers every connection with `head` and `body`, then closes the
/// connection — a response cut short when `body` is shorter than the head announces.
pub async fn raw_upstream(
    head: &'static str,
    body: &'static [u8],
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // Read the request head, then answer and hang up.
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// Polls `check` until it returns true or `timeout` passes (then panics with `what`).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Parses a JSON body.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The header map of a recorded request as name -> value strings, for readable assertions.
pub fn header_map(r: &Recorded) -> HashMap<String, String> {
    r.headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.to_str().unwrap_or("<binary>").to_owned(),
            )
        })
        .collect()
}
