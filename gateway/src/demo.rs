//! The built-in demo: a config, a demo secret and a demo upstream, so that one command shows the
//! gateway matching a route, checking a key, injecting a secret and leaving from an egress IP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

/// The demo configuration text for the given addresses; `dir` holds the admin token and the
/// audit log.
pub fn demo_config(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    upstream: SocketAddr,
    dir: &Path,
) -> String {
    include_str!("demo.toml")
        .replace("{LISTEN}", &listen.to_string())
        .replace("{ADMIN_LISTEN}", &admin_listen.to_string())
        .replace("{UPSTREAM}", &upstream.to_string())
        .replace("{DEMO_KEY_SHA256}", &hex::encode(Sha256::digest(DEMO_KEY)))
        .replace("{DIR}", &dir.display().to_string())
}

/// Creates the demo directory with a fresh admin token (mode 0600) and returns it.
pub fn prepare_dir() -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir().join(format!("portcullis-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let token = format!("{:032x}", rand::random::<u128>());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("admin-token"))?;
    file.write_all(token.as_bytes())?;
    Ok(dir)
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
pub fn banner(listen: SocketAddr, admin: SocketAddr, upstream: SocketAddr, dir: &Path) -> String {
    let token_file = dir.join("admin-token");
    let audit = dir.join("audit.jsonl");
    let token_file = token_file.display();
    let audit = audit.display();
    format!(
        "\
Portcullis demo
  gateway   http://{listen}
  admin     http://{admin}   (bearer token in {token_file})
  upstream  http://{upstream}   (demo echo server)
  audit     {audit}

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
  curl -s http://{admin}/metrics
      -> Prometheus metrics (no token needed from loopback)
  curl -s http://{admin}/api/v1/traffic -H \"Authorization: Bearer $(cat {token_file})\"
      -> the requests above, without header or query values
  portcullis audit verify {audit}
      -> checks the audit log's hash chain
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
