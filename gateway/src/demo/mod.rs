//! The built-in demo: a config, demo secrets, a demo upstream and a demo identity provider, so
//! that one command shows the gateway matching a route, checking a key, injecting a secret,
//! validating a user's token, exchanging a client secret for a token, and leaving from an
//! egress IP — and a broker tunnel: a real `portcullis-agent` (the broker crate's agent, run in
//! this process) dials the gateway's tunnel listener over loopback and serves a demo "internal"
//! service that only it can reach, adding a credential the gateway never sees.

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

/// The credential the demo agent adds for the internal service (not a real credential).
pub(crate) const DEMO_INTERNAL_TOKEN: &str = "demo-internal-credential-held-by-the-agent";

/// Everything `portcullis demo` runs besides the gateway itself.
pub(crate) struct Demo {
    /// The demo config.
    pub(crate) source: ConfigSource,
    /// The demo's environment (the demo secret).
    pub(crate) env: HashMap<String, String>,
    /// The demo upstream, the internal service, the identity provider and the traffic
    /// generator (the listeners on sockets already bound).
    pub(crate) services: Vec<ExtraService>,
    /// The demo upstream's address.
    upstream: SocketAddr,
    /// The internal service's address (reached only through the tunnel).
    internal: SocketAddr,
    /// The gateway's address, for the traffic generator, once it is bound.
    gateway: Arc<OnceLock<SocketAddr>>,
    /// The demo identity provider's address.
    idp: SocketAddr,
    /// Where the admin token, the audit logs, the agent's config and token are.
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

/// Why the demo agent could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoAgentError {
    /// The gateway has no tunnel listener (the demo config always has one).
    #[error("the demo gateway has no tunnel listener")]
    NoListener,
    /// The agent's config or files could not be written or read.
    #[error("preparing the demo agent: {0}")]
    Config(String),
}

/// Sets up the demo for a gateway on `listen` with its admin API on `admin`.
pub(crate) fn prepare(listen: SocketAddr, admin: SocketAddr) -> Result<Demo, DemoError> {
    let upstream = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), "demo upstream")?;
    let upstream_addr = upstream.addr;
    let internal = listener::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "demo internal service",
    )?;
    let internal_addr = internal.addr;
    let idp = listener::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        "demo identity provider",
    )?;
    let idp_addr = idp.addr;
    let dir = prepare_dir().map_err(DemoError::Dir)?;
    let tunnel_token = std::fs::read_to_string(dir.join("agent-token")).map_err(DemoError::Dir)?;
    let text = demo_config(listen, admin, upstream_addr, idp_addr, &dir).replace(
        "{TUNNEL_TOKEN_SHA256}",
        &hex::encode(Sha256::digest(tunnel_token.trim())),
    );
    let mut echo =
        pingora::services::listening::Service::new("demo upstream".to_owned(), echo::EchoUpstream);
    echo.add_tcp(&upstream.pingora_addr());
    let mut internal_echo = pingora::services::listening::Service::new(
        "demo internal service".to_owned(),
        echo::EchoUpstream,
    );
    internal_echo.add_tcp(&internal.pingora_addr());
    let gateway = Arc::new(OnceLock::new());
    let generator = background_service(
        "demo traffic",
        traffic::TrafficGenerator::new(Arc::clone(&gateway), idp_addr),
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
            Box::new(listener::PreBound::new(internal_echo, [internal])),
            Box::new(listener::PreBound::new(idp_service, [idp])),
            Box::new(generator),
        ],
        upstream: upstream_addr,
        internal: internal_addr,
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

/// Creates the demo directory with a fresh admin token, a fresh tunnel token for the demo agent
/// and the internal service's credential (all mode 0600), and returns it.
fn prepare_dir() -> std::io::Result<PathBuf> {
    let dir = dir();
    std::fs::create_dir_all(&dir)?;
    for name in ["admin-token", "agent-token"] {
        write_private(&dir.join(name), &format!("{:032x}", rand::random::<u128>()))?;
    }
    write_private(&dir.join("internal-token"), DEMO_INTERNAL_TOKEN)?;
    Ok(dir)
}

/// Writes `text` to a file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
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
        let addrs = BannerAddrs {
            listen,
            admin: listeners.admin,
            upstream: self.upstream,
            internal: self.internal,
            idp: self.idp,
            tunnel: listeners.tunnel,
        };
        banner(&addrs, &self.dir)
    }

    /// The admin token file, for the console.
    pub(crate) fn admin_token_file(&self) -> PathBuf {
        self.dir.join("admin-token")
    }

    /// Starts the demo agent on its own thread, dialing the gateway's tunnel listener (known
    /// once the listeners are bound). It writes its config to the demo directory first, so a
    /// reader can see exactly what a customer would run.
    pub(crate) fn start_agent(
        &self,
        listeners: &portcullis_api::Listeners,
    ) -> Result<(), DemoAgentError> {
        let tunnel = listeners.tunnel.ok_or(DemoAgentError::NoListener)?;
        let text = include_str!("agent.toml")
            .replace("{TUNNEL}", &tunnel.to_string())
            .replace("{INTERNAL}", &self.internal.to_string());
        let path = self.dir.join("agent.toml");
        std::fs::write(&path, text).map_err(|e| DemoAgentError::Config(e.to_string()))?;
        let config = portcullis_broker::agent::AgentConfig::load(&path)
            .map_err(|e| DemoAgentError::Config(e.to_string()))?;
        std::thread::Builder::new()
            .name("demo agent".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the demo agent");
                        return;
                    }
                };
                // It runs as long as the demo does; the process exit stops it.
                let result = runtime.block_on(portcullis_broker::agent::run(
                    config,
                    std::future::pending(),
                ));
                if let Err(e) = result {
                    tracing::error!(error = %e, "the demo agent stopped");
                }
            })
            .map_err(|e| DemoAgentError::Config(e.to_string()))?;
        Ok(())
    }
}

/// The addresses the banner shows.
struct BannerAddrs {
    listen: SocketAddr,
    admin: SocketAddr,
    upstream: SocketAddr,
    internal: SocketAddr,
    idp: SocketAddr,
    tunnel: Option<SocketAddr>,
}

/// What to print so a newcomer knows what to try.
fn banner(addrs: &BannerAddrs, dir: &Path) -> String {
    let BannerAddrs {
        listen,
        admin,
        upstream,
        internal,
        idp,
        tunnel,
    } = addrs;
    let tunnel = tunnel.map_or_else(|| "-".to_owned(), |t| t.to_string());
    let token_file = dir.join("admin-token");
    let audit = dir.join("audit.jsonl");
    let agent_audit = dir.join("agent-audit.jsonl");
    let agent_config = dir.join("agent.toml");
    let token_file = token_file.display();
    let audit = audit.display();
    let agent_audit = agent_audit.display();
    let agent_config = agent_config.display();
    format!(
        "\
Portcullis demo
  gateway   http://{listen}
  admin     http://{admin}   (bearer token in {token_file})
  upstream  http://{upstream}   (demo echo server: slow under /slow, failing now and then under /flaky)
  idp       http://{idp}   (demo identity provider: JWKS, user tokens, OAuth token endpoint)
  tunnel    {tunnel}   (broker tunnel listener; the demo agent dials it, config {agent_config})
  internal  http://{internal}   (demo internal service, reached only through the agent)
  audit     {audit}   (agent: {agent_audit})
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
  curl -s http://{listen}/demo/internal/hello -H 'x-portcullis-key: {DEMO_KEY}'
      -> through the broker tunnel: the agent maps the route to its 'internal' origin, checks its
         own accept rules and adds its own Authorization header, which the gateway never sees
  curl -s http://{admin}/api/v1/tunnels -H \"Authorization: Bearer $(cat {token_file})\"
      -> the tunnel and its connected agent
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
