//! The built-in demo: a config, a demo secret and a demo upstream, so that one command shows the
//! gateway matching a route, checking a key, injecting a secret and leaving from an egress IP.

use std::collections::HashMap;
use std::net::SocketAddr;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use sha2::{Digest, Sha256};

/// The demo tenant's gateway key.
pub const DEMO_KEY: &str = "demo-key";
/// The demo secret injected as `Authorization: Bearer …` (not a real credential).
pub const DEMO_TOKEN: &str = "demo-token-not-a-real-secret";

/// The demo upstream: answers with a JSON echo of what it received, including the source
/// address, so the injected header and the egress binding are visible.
#[derive(Debug, Default)]
pub struct EchoUpstream;

/// The demo configuration text for the given addresses.
pub fn demo_config(listen: SocketAddr, admin_listen: SocketAddr, upstream: SocketAddr) -> String {
    include_str!("demo.toml")
        .replace("{LISTEN}", &listen.to_string())
        .replace("{ADMIN_LISTEN}", &admin_listen.to_string())
        .replace("{UPSTREAM}", &upstream.to_string())
        .replace("{DEMO_KEY_SHA256}", &hex::encode(Sha256::digest(DEMO_KEY)))
}

/// The demo's environment: the demo secret, and nothing from the real process environment.
pub fn demo_env() -> HashMap<String, String> {
    [(
        "PORTCULLIS_SECRET_DEMO_ECHO_TOKEN".to_owned(),
        DEMO_TOKEN.to_owned(),
    )]
    .into()
}

/// Picks a free loopback port for the demo upstream.
pub fn free_loopback_addr() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

/// What to print so a newcomer knows what to try.
pub fn banner(listen: SocketAddr, admin: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        "\
Portcullis demo
  gateway   http://{listen}
  admin     http://{admin}   (admin API: next release)
  upstream  http://{upstream}   (demo echo server)

Try:
  curl -s http://{listen}/demo/echo/hello -H 'x-portcullis-key: {DEMO_KEY}'
      -> the upstream echoes the request: path rewritten to /api/hello, an Authorization header
         injected from the demo secret, and the connection made from egress IP 127.0.0.2
  curl -s http://{listen}/demo/echo/hello
      -> 401 {{\"error\":\"unauthenticated\",...}}
  curl -s http://{listen}/demo/echo/../../etc/passwd -H 'x-portcullis-key: {DEMO_KEY}' --path-as-is
      -> 403 path_denied
  curl -s http://{listen}/demo/status
      -> a public route (no key)
  curl -s http://{listen}/.well-known/egress-ips.json
      -> the published egress IPs
"
    )
}

// === impl EchoUpstream ===

#[async_trait]
impl ServeHttp for EchoUpstream {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body_len = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_len += chunk.len();
        }
        let req = session.req_header();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                )
            })
            .collect();
        let echo = serde_json::json!({
            "upstream": "portcullis demo echo",
            "method": req.method.as_str(),
            "path": req.uri.to_string(),
            "source_address": session.client_addr().map(|a| a.to_string()),
            "headers": headers,
            "body_bytes": body_len,
        });
        let body = serde_json::to_vec_pretty(&echo).unwrap_or_default();
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}
