//! The one reload function every trigger calls (file watch, SIGHUP, `POST /api/v1/reload`).
//!
//! A reload reads and compiles the config, builds a complete new [`Runtime`] off the request
//! path — resolving DNS only for targets no earlier runtime had, and outside the publish lock,
//! so a slow resolver holds up no other reload — and publishes it with a single
//! `ArcSwap::store`. An invalid config changes nothing but the reported status: the old
//! runtime keeps serving. In-flight requests hold an `Arc` of the runtime they started with
//! and finish on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use portcullis_api::{ReloadResult, ReloadStatus, ReloadTrigger};
use portcullis_config::{LoadError, Snapshot};

use super::{Shared, StartupSettings};
use crate::clock::now_ms;
use crate::observe::audit::AdminRecord;
use crate::runtime::{BuildContext, Built, Runtime};
use crate::secrets::{Environment, FingerprintKey};

/// Performs reloads.
pub(crate) struct Reloader {
    shared: Arc<Shared>,
    source: ConfigSource,
    overrides: ListenOverrides,
    env: Arc<dyn Environment>,
    fingerprint_key: FingerprintKey,
    /// Numbers reloads in the order they started.
    started: AtomicU64,
    /// Serialises publishing; holds the number of the last reload published.
    published: tokio::sync::Mutex<u64>,
    status: ArcSwap<ReloadStatus>,
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub(crate) enum ConfigSource {
    /// A file on disk (re-read on every reload), as an absolute path.
    File(PathBuf),
    /// Built-in text (the demo): reloads recompile the same text and re-read secrets.
    Text {
        /// Name shown in errors.
        name: PathBuf,
        /// The config.
        text: String,
    },
}

/// Command-line listener overrides, re-applied to every reloaded config.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListenOverrides {
    /// Replaces `server.listen`.
    pub(crate) listen: Option<SocketAddr>,
    /// Replaces `server.admin_listen`.
    pub(crate) admin_listen: Option<SocketAddr>,
}

// === impl ConfigSource ===

impl ConfigSource {
    /// A config file. A relative path is made absolute against the working directory now, so
    /// that the file watcher — whose events carry absolute paths — recognises the file and the
    /// secrets directory next to it, and a later `chdir` changes nothing. Symbolic links are
    /// kept as they are (a Kubernetes ConfigMap swaps the target of `..data`).
    pub(crate) fn file(path: &Path) -> std::io::Result<Self> {
        Ok(ConfigSource::File(std::path::absolute(path)?))
    }

    /// Reads and compiles the config.
    pub(crate) fn load(&self) -> Result<Snapshot, LoadError> {
        match self {
            ConfigSource::File(path) => portcullis_config::load(path),
            ConfigSource::Text { name, text } => {
                portcullis_config::compile(name, text).map_err(LoadError::Invalid)
            }
        }
    }

    /// The file, when there is one.
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::File(path) => Some(path),
            ConfigSource::Text { .. } => None,
        }
    }
}

// === impl ListenOverrides ===

impl ListenOverrides {
    /// Applies the overrides to a freshly loaded snapshot.
    pub(crate) fn apply(&self, snapshot: &mut Snapshot) {
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
    pub(crate) fn new(
        shared: Arc<Shared>,
        source: ConfigSource,
        overrides: ListenOverrides,
        env: Arc<dyn Environment>,
        fingerprint_key: FingerprintKey,
    ) -> Self {
        let current = shared.runtime.load_full();
        let status = ReloadStatus {
            result: ReloadResult::Success,
            trigger: ReloadTrigger::Startup,
            at_ms: now_ms(),
            duration_ms: 0.0,
            active_hash: current.config.hash.clone(),
            errors: Vec::new(),
            restart_required: Vec::new(),
        };
        shared
            .recorders
            .metrics
            .record_reload(true, &current.config.hash, SystemTime::now());
        publish_runtime_metrics(&shared, &current);
        Self {
            shared,
            source,
            overrides,
            env,
            fingerprint_key,
            started: AtomicU64::new(0),
            published: tokio::sync::Mutex::new(0),
            status: ArcSwap::from_pointee(status),
        }
    }

    /// The shared state.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Where the config comes from.
    pub(crate) fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// The last reload's outcome.
    pub(crate) fn status(&self) -> Arc<ReloadStatus> {
        self.status.load_full()
    }

    /// Reloads the configuration; on any error the running config stays as it is.
    pub(crate) async fn reload(&self, trigger: ReloadTrigger) -> Arc<ReloadStatus> {
        let started = Instant::now();
        let number = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        // Everything slow (reading, compiling, files, DNS) happens before the lock.
        let prepared = self.prepare().await;
        let mut published = self.published.lock().await;
        let outcome = match prepared {
            Ok(_) if number < *published => {
                // A reload that started later already published a newer reading of the same
                // source: publishing this one would go back in time.
                tracing::debug!(?trigger, "reload superseded by a later one");
                Ok(Vec::new())
            }
            Ok((built, restart_required)) => {
                *published = number;
                self.publish(built);
                Ok(restart_required)
            }
            Err(errors) => Err(errors),
        };
        drop(published);

        let shared = &self.shared;
        let current_hash = shared.runtime.load().config.hash.clone();
        let ok = outcome.is_ok();
        shared
            .recorders
            .metrics
            .record_reload(ok, &current_hash, SystemTime::now());
        let (result, errors, restart_required) = match outcome {
            Ok(restart_required) => {
                tracing::info!(?trigger, config = %&current_hash[..12], "config reloaded");
                (ReloadResult::Success, Vec::new(), restart_required)
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(?trigger, error = %e, "config reload rejected; the previous config stays active");
                }
                (ReloadResult::Error, errors, Vec::new())
            }
        };
        let status = ReloadStatus {
            result,
            trigger,
            at_ms: now_ms(),
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            active_hash: current_hash.clone(),
            errors,
            restart_required,
        };
        shared.recorders.audit.record_admin(AdminRecord::new(
            "reload",
            if ok { "success" } else { "error" },
            serde_json::json!({
                "trigger": trigger,
                "config_hash": current_hash,
                "errors": status.errors,
            }),
        ));
        let status = Arc::new(status);
        self.status.store(Arc::clone(&status));
        status
    }

    /// Loads, compiles and builds the next runtime, and resolves its new targets.
    async fn prepare(&self) -> Result<(Built, Vec<String>), Vec<String>> {
        let mut snapshot = match self.source.load() {
            Ok(s) => s,
            Err(LoadError::Invalid(errors)) => {
                return Err(errors.0.iter().map(ToString::to_string).collect())
            }
            Err(e) => return Err(vec![e.to_string()]),
        };
        self.overrides.apply(&mut snapshot);
        let current = self.shared.runtime.load_full();
        // Compared with the settings the process started with, not the live config: a value
        // changed by an earlier reload was never applied either.
        let restart_required = self
            .shared
            .configured
            .changes_in(&StartupSettings::of(&snapshot));
        let cx = BuildContext {
            env: self.env.as_ref(),
            fingerprint_key: &self.fingerprint_key,
            metrics: &self.shared.recorders.metrics,
            usage: &self.shared.secret_usage,
            previous: Some(&current),
        };
        let built = Runtime::build(snapshot, &cx)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        built.resolve().await;
        Ok((built, restart_required))
    }

    /// Makes `built` the runtime every new request uses.
    fn publish(&self, built: Built) {
        let runtime = built.runtime;
        for (tenant, name, change) in &runtime.secret_changes {
            if let Some(change) = change.reported() {
                tracing::info!(%tenant, secret = %name, change, "secret changed");
                self.shared.recorders.audit.record_admin(AdminRecord::new(
                    "secret_change",
                    change,
                    serde_json::json!({ "tenant": tenant, "secret": name }),
                ));
            }
        }
        let runtime = Arc::new(runtime);
        publish_runtime_metrics(&self.shared, &runtime);
        // The one store that switches every new request to the new config.
        self.shared.runtime.store(Arc::clone(&runtime));
        // Then the agents whose token the new config no longer lists are disconnected.
        self.shared.tunnels.apply(&runtime);
    }
}

/// Points the exporter at the routes and secrets of `runtime`.
fn publish_runtime_metrics(shared: &Shared, runtime: &Runtime) {
    let metrics = &shared.recorders.metrics;
    metrics.publish_routes(
        runtime
            .routes
            .iter()
            .map(|r| Arc::clone(&r.metrics))
            .collect(),
    );
    let mut keys = Vec::with_capacity(runtime.secrets.len());
    for ((tenant, name), entry) in runtime.secrets.iter() {
        metrics.set_secret(tenant, name, entry.is_present(), entry.expires);
        keys.push((tenant.clone(), name.clone()));
    }
    metrics.retain_secrets(&keys);
}
