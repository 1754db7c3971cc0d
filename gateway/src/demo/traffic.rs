//! The demo's traffic: a few requests a second through the demo routes — fast, slow, failing,
//! refused (no key, traversal, a missing secret, the agent's own rules), through the broker
//! tunnel too — so every view of the console has something moving. Bounded in count and time;
//! it stops by itself, and at shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::DEMO_KEY;

/// At most this many requests…
const MAX_REQUESTS: u64 = 20_000;
/// …and for at most this long.
const MAX_DURATION: Duration = Duration::from_secs(30 * 60);
/// The longest one request may take before the generator moves on.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the generator sends, in turn: (method, path, with the demo key).
const REQUESTS: &[(&str, &str, bool)] = &[
    ("GET", "/demo/echo/incidents?limit=5", true),
    ("GET", "/demo/slow/reports/weekly", true),
    ("GET", "/demo/flaky/builds/latest", true),
    ("POST", "/demo/echo/incidents", true),
    ("GET", "/demo/flaky/builds/latest", true),
    ("GET", "/demo/status", false),
    ("GET", "/demo/echo/incidents", false),
    ("GET", "/demo/slow/reports/daily", true),
    ("GET", "/demo/pagerduty/services", true),
    ("GET", "/demo/echo/../../etc/passwd", true),
    ("GET", "/demo/flaky/deploys", true),
    ("DELETE", "/demo/slow/reports/1", true),
    // Through the broker tunnel: the agent serves the GET and refuses the POST (its accept
    // rules allow GET only: 403 agent_denied).
    ("GET", "/demo/internal/inventory", true),
    ("POST", "/demo/internal/inventory", true),
];

/// Sends the demo's requests to the gateway once its address is known.
pub(crate) struct TrafficGenerator {
    gateway: Arc<OnceLock<SocketAddr>>,
}

// === impl TrafficGenerator ===

impl TrafficGenerator {
    /// A generator for the gateway whose address will be set in `gateway`.
    pub(crate) fn new(gateway: Arc<OnceLock<SocketAddr>>) -> Self {
        Self { gateway }
    }
}

#[async_trait]
impl BackgroundService for TrafficGenerator {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let started = Instant::now();
        let mut sent = 0u64;
        while sent < MAX_REQUESTS && started.elapsed() < MAX_DURATION {
            let pause = Duration::from_millis(150 + rand::random::<u64>() % 350);
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(pause) => {}
            }
            let Some(gateway) = self.gateway.get().copied() else {
                continue;
            };
            let (method, path, keyed) = REQUESTS[(sent % REQUESTS.len() as u64) as usize];
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, send(gateway, method, path, keyed)).await;
            sent += 1;
        }
        tracing::info!(sent, "demo traffic generator done");
    }
}

/// One request over its own connection (`Connection: close`), reading the answer to the end.
async fn send(gateway: SocketAddr, method: &str, path: &str, keyed: bool) -> std::io::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(gateway).await?;
    let key = if keyed {
        format!("x-portcullis-key: {DEMO_KEY}\r\n")
    } else {
        String::new()
    };
    let body = if method == "POST" {
        "{\"title\":\"demo\"}"
    } else {
        ""
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {gateway}\r\nUser-Agent: portcullis-demo\r\n{key}content-length: {}\r\ncontent-type: application/json\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).await?;
    Ok(())
}
