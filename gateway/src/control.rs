//! The live control plane: what the proxy, the admin API and the background tasks share, and
//! the one reload function every trigger calls (file watch, SIGHUP, `POST /api/v1/reload`).
//!
//! A reload reads and compiles the config, builds a complete new [`Runtime`] off the request
//! path, and publishes it with a single `ArcSwap::store`. An invalid config changes nothing
//! but the reported status: the old runtime keeps serving. In-flight requests hold an `Arc` of
//! the runtime they started with and finish on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use portcullis_config::{LoadError, Snapshot};
use serde::Serialize;

use crate::audit::{AdminRecord, AuditLog};
use crate::metrics::Metrics;
use crate::runtime::{BuildContext, Runtime, SharedRuntime};
use crate::secrets::{Environment, FingerprintChange, SecretUsageRegistry};
use crate::traffic::TrafficRing;

/// How long file events must be quiet before a reload (editors write in several steps).
const WATCH_DEBOUNCE: Duration = Duration::from_millis(150);

/// Everything shared by the proxy, the admin API and the background tasks.
pub struct Shared {
    /// The current runtime snapshot.
    pub runtime: SharedRuntime,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The audit log.
    pub audit: AuditLog,
    /// Recent requests.
    pub traffic: TrafficRing,
    /// Secret usage records.
    pub secret_usage: SecretUsageRegistry,
    /// Process start.
    pub started: SystemTime,
    /// Process start, monotonic.
    pub started_instant: Instant,
    /// The listeners bound at startup (they do not change on reload).
    pub listeners: Listeners,
}

/// Addresses bound at startup.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Listeners {
    /// Plain HTTP listeners.
    pub http: Vec<SocketAddr>,
    /// TLS listeners.
    pub https: Vec<SocketAddr>,
    /// The admin API.
    pub admin: SocketAddr,
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file on disk (re-read on every reload).
    File(PathBuf),
    /// Built-in text (the demo): reloads recompile the same text and re-read secrets.
    Text {
        /// Name shown in errors.
        name: PathBuf,
        /// The config.
        text: String,
    },
}

/// The outcome of the last reload, as the admin API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    /// `success` or `error`.
    pub result: &'static str,
    /// What asked for it: `startup`, `file`, `sighup`, `api`.
    pub trigger: &'static str,
    /// Unix time (ms) it finished.
    pub at_ms: u64,
    /// How long it took.
    pub duration_ms: f64,
    /// Hash of the config now active.
    pub active_hash: String,
    /// Errors of a failed reload (each `file:line:col: error: …`).
    pub errors: Vec<String>,
    /// Changes that were not applied because they need a restart.
    pub restart_required: Vec<String>,
}

/// Performs reloads, one at a time.
pub struct Reloader {
    shared: Arc<Shared>,
    source: ConfigSource,
    overrides: ListenOverrides,
    env: Arc<dyn Environment + Send + Sync>,
    fingerprint_key: [u8; 32],
    serial: tokio::sync::Mutex<()>,
    status: ArcSwap<ReloadStatus>,
}

/// Command-line listener overrides, re-applied to every reloaded config.
#[derive(Debug, Clone, Default)]
pub struct ListenOverrides {
    /// Replaces `server.listen`.
    pub listen: Option<SocketAddr>,
    /// Replaces `server.admin_listen`.
    pub admin_listen: Option<SocketAddr>,
}

/// Runs the reload triggers: SIGHUP and the file watcher.
pub struct ReloadTriggers {
    reloader: Arc<Reloader>,
}

// === impl Shared ===

impl Shared {
    /// Shared state around a first runtime.
    pub fn new(
        runtime: Runtime,
        metrics: Arc<Metrics>,
        audit: AuditLog,
        usage: SecretUsageRegistry,
    ) -> Self {
        let config = &runtime.config;
        let listeners = Listeners {
            http: config.server.listen.clone(),
            https: config.server.tls.iter().map(|t| t.listen).collect(),
            admin: config.server.admin_listen,
        };
        Self {
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            metrics,
            audit,
            traffic: TrafficRing::new(crate::traffic::DEFAULT_TRAFFIC_CAPACITY),
            secret_usage: usage,
            started: SystemTime::now(),
            started_instant: Instant::now(),
            listeners,
        }
    }
}

// === impl ConfigSource ===

impl ConfigSource {
    /// Reads and compiles the config.
    pub fn load(&self) -> Result<Snapshot, LoadError> {
        match self {
            ConfigSource::File(path) => portcullis_config::load(path),
            ConfigSource::Text { name, text } => {
                portcullis_config::compile(name, text).map_err(LoadError::Invalid)
            }
        }
    }

    /// The file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::File(path) => Some(path),
            ConfigSource::Text { .. } => None,
        }
    }
}

// === impl ListenOverrides ===

impl ListenOverrides {
    /// Applies the overrides to a freshly loaded snapshot.
    pub fn apply(&self, snapshot: &mut Snapshot) {
        if let Some(listen) = self.listen {
            snapshot.server.listen = vec![listen];
        }
        if let Some(admin) = self.admin_listen {
            snapshot.server.admin_listen = admin;
        }
    }
}

// === impl Reloader ===

impl Reloader {
    /// A reloader for `shared`, whose first runtime was built from `source`.
    pub fn new(
        shared: Arc<Shared>,
        source: ConfigSource,
        overrides: ListenOverrides,
        env: Arc<dyn Environment + Send + Sync>,
        fingerprint_key: [u8; 32],
    ) -> Self {
        let current = shared.runtime.load();
        let status = ReloadStatus {
            result: "success",
            trigger: "startup",
            at_ms: crate::secrets::now_ms(),
            duration_ms: 0.0,
            active_hash: current.config.hash.clone(),
            errors: Vec::new(),
            restart_required: Vec::new(),
        };
        shared
            .metrics
            .record_reload(true, &current.config.hash, SystemTime::now());
        publish_runtime_metrics(&shared, &current);
        drop(current);
        Self {
            shared,
            source,
            overrides,
            env,
            fingerprint_key,
            serial: tokio::sync::Mutex::new(()),
            status: ArcSwap::from_pointee(status),
        }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Where the config comes from.
    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// The last reload's outcome.
    pub fn status(&self) -> Arc<ReloadStatus> {
        self.status.load_full()
    }

    /// Reloads the configuration; on any error the running config stays as it is.
    pub async fn reload(&self, trigger: &'static str) -> Arc<ReloadStatus> {
        let _one_at_a_time = self.serial.lock().await;
        let started = Instant::now();
        let outcome = self.try_reload().await;
        let shared = &self.shared;
        let current_hash = shared.runtime.load().config.hash.clone();
        let status = match outcome {
            Ok(restart_required) => {
                shared
                    .metrics
                    .record_reload(true, &current_hash, SystemTime::now());
                tracing::info!(trigger, config = %&current_hash[..12], "config reloaded");
                ReloadStatus {
                    result: "success",
                    trigger,
                    at_ms: crate::secrets::now_ms(),
                    duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                    active_hash: current_hash.clone(),
                    errors: Vec::new(),
                    restart_required,
                }
            }
            Err(errors) => {
                shared
                    .metrics
                    .record_reload(false, &current_hash, SystemTime::now());
                for e in &errors {
                    tracing::error!(trigger, error = %e, "config reload rejected; the previous config stays active");
                }
                ReloadStatus {
                    result: "error",
                    trigger,
                    at_ms: crate::secrets::now_ms(),
                    duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                    active_hash: current_hash.clone(),
                    errors,
                    restart_required: Vec::new(),
                }
            }
        };
        shared.audit.record_admin(AdminRecord {
            time: SystemTime::now(),
            action: "reload".into(),
            result: status.result.into(),
            detail: serde_json::json!({
                "trigger": trigger,
                "config_hash": current_hash,
                "errors": status.errors,
            }),
        });
        let status = Arc::new(status);
        self.status.store(Arc::clone(&status));
        status
    }

    async fn try_reload(&self) -> Result<Vec<String>, Vec<String>> {
        let mut snapshot = match self.source.load() {
            Ok(s) => s,
            Err(LoadError::Invalid(errors)) => {
                return Err(errors.0.iter().map(ToString::to_string).collect())
            }
            Err(e) => return Err(vec![e.to_string()]),
        };
        self.overrides.apply(&mut snapshot);
        let restart_required = restart_required(
            &self.shared.listeners,
            &snapshot,
            &self.shared.runtime.load().config,
        );
        let cx = BuildContext {
            env: self.env.as_ref(),
            fingerprint_key: &self.fingerprint_key,
            metrics: &self.shared.metrics,
            usage: &self.shared.secret_usage,
        };
        let runtime = Runtime::build(snapshot, &cx)
            .await
            .map_err(|e| vec![e.to_string()])?;
        for (tenant, name, change) in &runtime.secret_changes {
            if matches!(
                change,
                FingerprintChange::Rotated
                    | FingerprintChange::Appeared
                    | FingerprintChange::Disappeared
            ) {
                let change = match change {
                    FingerprintChange::Rotated => "rotated",
                    FingerprintChange::Appeared => "appeared",
                    _ => "disappeared",
                };
                tracing::info!(%tenant, secret = %name, change, "secret changed");
                self.shared.audit.record_admin(AdminRecord {
                    time: SystemTime::now(),
                    action: "secret_change".into(),
                    result: change.into(),
                    detail: serde_json::json!({ "tenant": tenant, "secret": name }),
                });
            }
        }
        let runtime = Arc::new(runtime);
        publish_runtime_metrics(&self.shared, &runtime);
        // The one store that switches every new request to the new config.
        self.shared.runtime.store(runtime);
        Ok(restart_required)
    }
}

/// Points the exporter at the routes and secrets of `runtime`.
fn publish_runtime_metrics(shared: &Shared, runtime: &Runtime) {
    shared.metrics.publish_routes(
        runtime
            .routes
            .iter()
            .map(|r| Arc::clone(&r.metrics))
            .collect(),
    );
    let mut keys = Vec::new();
    for ((tenant, name), entry) in runtime.secrets.iter() {
        shared
            .metrics
            .set_secret(tenant, name, entry.is_present(), entry.expires);
        keys.push((tenant.clone(), name.clone()));
    }
    shared.metrics.retain_secrets(&keys);
}

/// Settings of `new` that only a restart can apply.
fn restart_required(bound: &Listeners, new: &Snapshot, old: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let https: Vec<SocketAddr> = new.server.tls.iter().map(|t| t.listen).collect();
    if new.server.listen != bound.http || https != bound.https {
        out.push(
            "server.listen / server.tls: listeners change only on restart (or a graceful upgrade)"
                .into(),
        );
    }
    if new.server.admin_listen != bound.admin {
        out.push("server.admin_listen: changes only on restart".into());
    }
    if new.audit != old.audit {
        out.push("audit: the audit sink changes only on restart".into());
    }
    out
}

// === impl ReloadTriggers ===

impl ReloadTriggers {
    /// Triggers for `reloader`.
    pub fn new(reloader: Arc<Reloader>) -> Self {
        Self { reloader }
    }
}

#[async_trait]
impl BackgroundService for ReloadTriggers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let _watcher = self.watch(tx);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reloader.reload("sighup").await;
                }
                Some(()) = rx.recv() => {
                    // Wait for the writes to settle: editors and ConfigMap updates come in bursts.
                    while let Ok(Some(())) = tokio::time::timeout(WATCH_DEBOUNCE, rx.recv()).await {}
                    self.reloader.reload("file").await;
                }
            }
        }
    }
}

impl ReloadTriggers {
    /// Watches the config file's directory (editors save by rename; Kubernetes swaps a `..data`
    /// symlink) and the secrets directory (rotation needs no restart).
    fn watch(&self, tx: tokio::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        use notify::{RecursiveMode, Watcher};
        let config_path = self.reloader.source().path()?.to_path_buf();
        let config_name = config_path.file_name()?.to_owned();
        let config_dir = match config_path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let secrets_dir = self
            .reloader
            .shared()
            .runtime
            .load()
            .config
            .secrets
            .dir
            .clone();
        let watched_secrets = secrets_dir.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            let relevant = event.paths.iter().any(|p| {
                p.file_name() == Some(config_name.as_os_str())
                    || p.file_name().is_some_and(|n| n == "..data")
                    || watched_secrets.as_ref().is_some_and(|d| p.starts_with(d))
            });
            if relevant {
                // A full channel already means "reload pending".
                let _ = tx.try_send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the config; reload with SIGHUP or the admin API");
                return None;
            }
        };
        if let Err(e) = watcher.watch(&config_dir, RecursiveMode::NonRecursive) {
            tracing::error!(dir = %config_dir.display(), error = %e, "cannot watch the config directory");
        }
        if let Some(dir) = secrets_dir {
            if let Err(e) = watcher.watch(&dir, RecursiveMode::Recursive) {
                tracing::error!(dir = %dir.display(), error = %e, "cannot watch the secrets directory");
            }
        }
        Some(watcher)
    }
}
