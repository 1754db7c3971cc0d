//! The built-in demo: a config, demo secrets, a demo upstream and a demo identity provider, so
//! that one command shows the gateway matching a route, checking a key, injecting a secret,
//! validating a user's token, exchanging a client secret for a token, and leaving from an
//! egress IP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use pingora::prelude::background_service;

use sha2::{Digest, Sha256};

use crate::app::ExtraService;
use crate::control::ConfigSource;
use crate::listener::{self, BindError};

mod echo;
mod idp;
mod traffic;

/// The demo tenant's gateway key.
pub(crate) const DEMO_KEY: &str = "demo-key";
/// The demo secret injected as `Authorization: Bearer …` (not a real credential).
pub(crate) const DEMO_TOKEN: &str = "demo-token-not-a-real-secret";
/// The demo exchange route's client id.
const DEMO_CLIENT_ID: &str = "demo-integration";

/// Everything `portcullis demo` runs besides the gateway itself.
pub(crate) struct Demo {
    /// The demo config.
    pub(crate) source: ConfigSource,
    /// The demo's environment (the demo secret).
    pub(crate) env: HashMap<String, String>,
    /// The demo upstream, on a socket already bound.
    pub(crate) services: Vec<ExtraService>,
    /// The demo upstream's address.
    upstream: SocketAddr,
    /// The gateway's address, for the traffic generator, once it is bound.
    gateway: Arc<OnceLock<SocketAddr>>,
    /// The demo identity provider's address.
    idp: SocketAddr,
    /// Where the admin token and the audit log are.
    dir: PathBuf,
}

/// Why the demo could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// The demo directory (admin token, audit log) could not be prepared.
    #[error("preparing the demo directory: {0}")]
    Dir(std::io::Error),
    /// The demo upstream could not listen.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The demo identity provider's key could not be made.
    #[error(transparent)]
    Idp(#[from] idp::IdpKeyError),
}

/// Sets up the demo for a gateway on `listen` with its admin API on `admin`.
pub(crate) fn prepare(listen: SocketAddr, admin: SocketAddr) -> Result<Demo, DemoError> {
    let upstream = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), "demo upstream")?;
    let upstream_addr = upstream.addr;
    let idp = listener::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "demo identity provider",
    )?;
    let idp_addr = idp.addr;
    let dir = prepare_dir().map_err(DemoError::Dir)?;
    let text = demo_config(listen, admin, upstream_addr, idp_addr, &dir);
    let mut echo =
        pingora::services::listening::Service::new("demo upstream".to_owned(), echo::EchoUpstream);
    echo.add_tcp(&upstream.pingora_addr());
    let gateway = Arc::new(OnceLock::new());
    let generator = background_service(
        "demo traffic",
        traffic::TrafficGenerator::new(Arc::clone(&gateway)),
    );
    // A fresh client secret per run: the identity provider and the gateway's demo environment
    // are the only places it exists.
    let client_secret = format!("demo-secret-{:032x}", rand::random::<u128>());
    let provider = idp::DemoIdp::new(
        format!("http://{idp_addr}/"),
        DEMO_CLIENT_ID,
        &client_secret,
    )?;
    let mut idp_service =
        pingora::services::listening::Service::new("demo identity provider".to_owned(), provider);
    idp_service.add_tcp(&idp.pingora_addr());
    Ok(Demo {
        source: ConfigSource::Text {
            name: PathBuf::from("<built-in demo>"),
            text,
        },
        env: demo_env(&client_secret),
        services: vec![
            Box::new(listener::PreBound::new(echo, [upstream])),
            Box::new(listener::PreBound::new(idp_service, [idp])),
            Box::new(generator),
        ],
        upstream: upstream_addr,
        gateway,
        idp: idp_addr,
        dir,
    })
}

/// The demo configuration text for the given addresses; `dir` holds the admin token and the
/// audit log.
fn demo_config(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    upstream: SocketAddr,
    idp: SocketAddr,
    dir: &Path,
) -> String {
    include_str!("demo.toml")
        .replace("{LISTEN}", &listen.to_string())
        .replace("{ADMIN_LISTEN}", &admin_listen.to_string())
        .replace("{UPSTREAM}", &upstream.to_string())
        .replace("{IDP}", &idp.to_string())
        .replace("{DEMO_KEY_SHA256}", &hex::encode(Sha256::digest(DEMO_KEY)))
        .replace("{DIR}", &dir.display().to_string())
}

/// The demo's directory: admin token, audit log, and the log when the console is open.
fn dir() -> PathBuf {
    std::env::temp_dir().join(format!("portcullis-demo-{}", std::process::id()))
}

/// The demo's log file (`gateway.log` in its directory), for when the console owns the terminal.
pub(crate) fn log_file() -> Option<std::fs::File> {
    let dir = dir();
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::File::create(dir.join("gateway.log")).ok()
}

/// Creates the demo directory with a fresh admin token (mode 0600) and returns it.
fn prepare_dir() -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = dir();
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

/// The demo's environment: the demo secrets, and nothing from the real process environment.
/// `flaky-token` is JWT-shaped and expires in three days, so it shows as expiring; `pagerduty`
/// is left out on purpose.
fn demo_env(client_secret: &str) -> HashMap<String, String> {
    [
        (
            "PORTCULLIS_SECRET_DEMO_ECHO_TOKEN".to_owned(),
            DEMO_TOKEN.to_owned(),
        ),
        (
            "PORTCULLIS_SECRET_DEMO_FLAKY_TOKEN".to_owned(),
            expiring_token(Duration::from_secs(3 * 24 * 3600)),
        ),
        (
            "PORTCULLIS_SECRET_DEMO_CLIENT_ID".to_owned(),
            DEMO_CLIENT_ID.to_owned(),
        ),
        (
            "PORTCULLIS_SECRET_DEMO_CLIENT_SECRET".to_owned(),
            client_secret.to_owned(),
        ),
    ]
    .into()
}

/// A JWT-shaped demo token (not signed: nothing verifies it) whose `exp` is `valid_for` away.
fn expiring_token(valid_for: Duration) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = (SystemTime::now() + valid_for)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64.encode(format!(r#"{{"sub":"demo","exp":{exp}}}"#));
    format!("{header}.{claims}.demo-not-signed")
}

// === impl Demo ===

impl Demo {
    /// The listeners are bound: start the traffic, and say what a newcomer can try.
    pub(crate) fn ready(&self, listeners: &portcullis_api::Listeners) -> String {
        let listen = listeners.http.first().copied().unwrap_or(listeners.admin);
        let _ = self.gateway.set(listen);
        banner(listen, listeners.admin, self.upstream, self.idp, &self.dir)
    }

    /// The admin token file, for the console.
    pub(crate) fn admin_token_file(&self) -> PathBuf {
        self.dir.join("admin-token")
    }
}

/// What to print so a newcomer knows what to try.
fn banner(
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
    idp: SocketAddr,
    dir: &Path,
) -> String {
    let token_file = dir.join("admin-token");
    let audit = dir.join("audit.jsonl");
    let token_file = token_file.display();
    let audit = audit.display();
    format!(
        "\
Portcullis demo
  gateway   http://{listen}
  admin     http://{admin}   (bearer token in {token_file})
  upstream  http://{upstream}   (demo echo server: slow under /slow, failing now and then under /flaky)
  idp       http://{idp}   (demo identity provider: JWKS, user tokens, OAuth token endpoint)
  audit     {audit}
  traffic   a few requests a second through every demo route, for the console to show

Console: `portcullis console --admin http://{admin} --token-file {token_file}`

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
  curl -s http://{listen}/demo/pagerduty/services -H 'x-portcullis-key: {DEMO_KEY}'
      -> 503 secret_missing: the demo never sets this route's secret
  TOKEN=$(curl -s 'http://{idp}/user-token?sub=alice')
  curl -s http://{listen}/demo/user/me -H 'x-portcullis-key: {DEMO_KEY}' -H \"Authorization: Bearer $TOKEN\"
      -> passthrough: alice's token validated against the IdP's JWKS and forwarded as it came
  curl -s http://{listen}/demo/user/me -H 'x-portcullis-key: {DEMO_KEY}' -H 'Authorization: Bearer not.a.jwt'
      -> 401 {{\"error\":\"token_invalid\",\"reason\":\"malformed\",...}}
  curl -s http://{listen}/demo/exchange/items -H 'x-portcullis-key: {DEMO_KEY}'
      -> exchange: the gateway trades the tenant's client secret for a token (cached, refreshed)
         and sends it as Authorization; the caller never sees the secret
  curl -s http://{admin}/api/v1/secrets -H \"Authorization: Bearer $(cat {token_file})\"
      -> secret status and the exchange route's token state (never a value)
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
