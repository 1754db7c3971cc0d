//! The demo's traffic: a few requests a second through the demo routes — fast, slow, failing,
//! refused (no key, traversal, a missing secret, a bad user token, the agent's own rules) —
//! through both token modes (a demo user's token passed through, an exchanged integration token)
//! and through the broker tunnel, so every view of the console has something moving. Bounded in
//! count and time; it stops by itself, and at shutdown.

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

/// Who a generated request claims to be.
#[derive(Clone, Copy)]
enum Caller {
    /// No gateway key.
    Anonymous,
    /// The demo tenant's gateway key.
    Keyed,
    /// The gateway key and a demo user's token from the demo identity provider.
    KeyedUser,
    /// The gateway key and a user token that is not a JWT.
    KeyedBadToken,
}

/// What the generator sends, in turn.
const REQUESTS: &[(&str, &str, Caller)] = &[
    ("GET", "/demo/echo/incidents?limit=5", Caller::Keyed),
    ("GET", "/demo/slow/reports/weekly", Caller::Keyed),
    ("GET", "/demo/user/me", Caller::KeyedUser),
    ("GET", "/demo/flaky/builds/latest", Caller::Keyed),
    ("POST", "/demo/echo/incidents", Caller::Keyed),
    ("GET", "/demo/exchange/items", Caller::Keyed),
    ("GET", "/demo/flaky/builds/latest", Caller::Keyed),
    ("GET", "/demo/status", Caller::Anonymous),
    ("GET", "/demo/echo/incidents", Caller::Anonymous),
    ("GET", "/demo/user/me", Caller::KeyedBadToken),
    ("GET", "/demo/slow/reports/daily", Caller::Keyed),
    ("GET", "/demo/pagerduty/services", Caller::Keyed),
    ("GET", "/demo/echo/../../etc/passwd", Caller::Keyed),
    ("GET", "/demo/exchange/items/42", Caller::Keyed),
    ("GET", "/demo/flaky/deploys", Caller::Keyed),
    ("DELETE", "/demo/slow/reports/1", Caller::Keyed),
    // Through the broker tunnel: the agent serves the GET and refuses the POST (its accept
    // rules allow GET only: 403 agent_denied).
    ("GET", "/demo/internal/inventory", Caller::Keyed),
    ("POST", "/demo/internal/inventory", Caller::Keyed),
];

/// Sends the demo's requests to the gateway once its address is known.
pub(crate) struct TrafficGenerator {
    gateway: Arc<OnceLock<SocketAddr>>,
    idp: SocketAddr,
}

// === impl TrafficGenerator ===

impl TrafficGenerator {
    /// A generator for the gateway whose address will be set in `gateway`, getting demo user
    /// tokens from the demo identity provider at `idp`.
    pub(crate) fn new(gateway: Arc<OnceLock<SocketAddr>>, idp: SocketAddr) -> Self {
        Self { gateway, idp }
    }

    /// One generated request, with the headers its caller adds.
    async fn send(&self, gateway: SocketAddr, method: &str, path: &str, caller: Caller) {
        let mut headers = String::new();
        if !matches!(caller, Caller::Anonymous) {
            headers.push_str(&format!("x-portcullis-key: {DEMO_KEY}\r\n"));
        }
        match caller {
            Caller::KeyedUser => {
                let Ok(answer) = exchange(self.idp, "GET", "/user-token?sub=alice", "").await
                else {
                    return;
                };
                let token = body_of(&answer).trim();
                headers.push_str(&format!("authorization: Bearer {token}\r\n"));
            }
            Caller::KeyedBadToken => headers.push_str("authorization: Bearer not.a.jwt\r\n"),
            Caller::Anonymous | Caller::Keyed => {}
        }
        let _ = exchange(gateway, method, path, &headers).await;
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
            let (method, path, caller) = REQUESTS[(sent % REQUESTS.len() as u64) as usize];
            let request = self.send(gateway, method, path, caller);
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, request).await;
            sent += 1;
        }
        tracing::info!(sent, "demo traffic generator done");
    }
}

/// One request with the given extra header lines over its own connection (`Connection: close`),
/// reading the answer to the end and returning it.
async fn exchange(
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(server).await?;
    let body = if method == "POST" {
        "{\"title\":\"demo\"}"
    } else {
        ""
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nUser-Agent: portcullis-demo\r\n{headers}content-length: {}\r\ncontent-type: application/json\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(answer)
}

/// The body of a whole HTTP/1.1 answer read to its end (the demo IdP sends no chunked bodies).
fn body_of(answer: &[u8]) -> &str {
    let text = std::str::from_utf8(answer).unwrap_or_default();
    text.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}
