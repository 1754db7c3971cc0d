//! The upstream driver: runs due health checks, re-resolves target names and warms the key sets
//! of passthrough routes, always against the runtime in force, so groups and routes added by a
//! reload are picked up without restarting anything.

use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::runtime::SharedRuntime;

/// How often the driver wakes to run due health checks.
const HEALTH_TICK: Duration = Duration::from_millis(250);
/// How often target host names are re-resolved.
const DNS_REFRESH: Duration = Duration::from_secs(30);

/// Runs target discovery and health checks against whichever runtime is current.
pub(crate) struct UpstreamDriver {
    runtime: SharedRuntime,
}

// === impl UpstreamDriver ===

impl UpstreamDriver {
    /// A driver for the runtimes published in `runtime`.
    pub(crate) fn new(runtime: SharedRuntime) -> Self {
        Self { runtime }
    }
}

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
            current.warm_key_sets();
            current.run_due_health_checks().await;
            if last_refresh.elapsed() >= DNS_REFRESH {
                last_refresh = tokio::time::Instant::now();
                current.refresh_targets().await;
            }
        }
    }
}
