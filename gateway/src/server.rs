//! Assembles the Pingora server: the proxy service on the configured listeners, and the
//! background driver for target discovery and health checks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::{background_service, Opt, Server};
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::admin::AdminApi;
use crate::audit::AuditWriter;
use crate::control::{ReloadTriggers, Reloader};
use crate::proxy::Gateway;
use crate::runtime::SharedRuntime;

/// How often the background driver wakes to run due health checks.
const HEALTH_TICK: Duration = Duration::from_millis(250);
/// How often target host names are re-resolved.
const DNS_REFRESH: Duration = Duration::from_secs(30);

/// Process-level knobs that are not part of the hot-reloadable config.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Seconds in-flight requests get to finish on shutdown.
    pub grace_period_seconds: u64,
}

/// Runs target discovery and health checks against whichever runtime is current.
struct UpstreamDriver {
    runtime: SharedRuntime,
}

/// Why the server could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A TLS listener's certificate or key could not be loaded.
    #[error("TLS listener {listen}: {reason}")]
    Tls {
        /// The listener.
        listen: String,
        /// What failed.
        reason: String,
    },
}

// === impl ServeOptions ===

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            grace_period_seconds: 5,
        }
    }
}

/// Drains the audit channel to its sink until shutdown.
struct AuditService {
    writer: tokio::sync::Mutex<Option<AuditWriter>>,
}

/// Builds the Pingora server: the proxy on the configured listeners, the admin API, the reload
/// triggers, the audit writer and the upstream driver. The caller may add more services (the
/// demo upstream) before running it.
pub fn build_server(
    reloader: Arc<Reloader>,
    audit_writer: AuditWriter,
    options: &ServeOptions,
) -> Result<Server, ServeError> {
    let shared = Arc::clone(reloader.shared());
    let runtime = Arc::clone(&shared.runtime);
    let conf = ServerConf {
        threads: options.threads.max(1),
        grace_period_seconds: Some(options.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(options.grace_period_seconds),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let current = runtime.load();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(Arc::clone(&shared)),
        "portcullis proxy",
    );
    for addr in &current.config.server.listen {
        proxy.add_tcp(&addr.to_string());
    }
    for tls in &current.config.server.tls {
        let tls_error = |reason: String| ServeError::Tls {
            listen: tls.listen.to_string(),
            reason,
        };
        let cert = tls
            .cert
            .to_str()
            .ok_or_else(|| tls_error("cert path is not UTF-8".into()))?;
        let key = tls
            .key
            .to_str()
            .ok_or_else(|| tls_error("key path is not UTF-8".into()))?;
        let mut settings =
            TlsSettings::intermediate(cert, key).map_err(|e| tls_error(e.to_string()))?;
        settings.enable_h2();
        proxy.add_tls_with_settings(&tls.listen.to_string(), None, settings);
    }
    server.add_service(proxy);

    let mut admin = pingora::services::listening::Service::new(
        "portcullis admin".to_owned(),
        AdminApi::new(Arc::clone(&reloader)),
    );
    admin.add_tcp(&shared.listeners.admin.to_string());
    server.add_service(admin);

    server.add_service(background_service(
        "upstream discovery and health",
        UpstreamDriver { runtime },
    ));
    server.add_service(background_service(
        "reload triggers",
        ReloadTriggers::new(reloader),
    ));
    server.add_service(background_service(
        "audit writer",
        AuditService {
            writer: tokio::sync::Mutex::new(Some(audit_writer)),
        },
    ));
    Ok(server)
}

// === impl AuditService ===

#[async_trait]
impl BackgroundService for AuditService {
    async fn start(&self, shutdown: ShutdownWatch) {
        if let Some(writer) = self.writer.lock().await.take() {
            writer.run(shutdown).await;
        }
    }
}

// === impl UpstreamDriver ===

#[async_trait]
impl BackgroundService for UpstreamDriver {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(HEALTH_TICK);
        let mut last_refresh = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let current = self.runtime.load_full();
            current.run_due_health_checks().await;
            if last_refresh.elapsed() >= DNS_REFRESH {
                last_refresh = tokio::time::Instant::now();
                current.refresh_targets().await;
            }
        }
    }
}
