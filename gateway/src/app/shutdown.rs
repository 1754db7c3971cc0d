//! The order things stop in.
//!
//! On `SIGTERM` (or `SIGQUIT`, a graceful upgrade) Pingora stops accepting and lets keep-alive
//! connections close after their current request. The gateway then waits until no request is
//! in flight — every request has been answered *and* recorded — or the grace period is over,
//! whichever comes first; an idle gateway exits at once. Only then is the audit writer told to
//! stop: it writes what is queued, syncs the file, and the process exits. So a request that was
//! in flight at the signal finishes with its audit line on disk. `SIGINT` skips the wait.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use prometheus::IntGauge;
use tokio::sync::watch;

/// How often the drain wait looks at the number of requests in flight.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// The longest the audit writer gets to write what is queued and sync.
const AUDIT_FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// What the orchestrator hears.
#[derive(Debug)]
pub(super) enum Event {
    /// A shutdown signal arrived (Pingora acts on it too).
    Signal(ShutdownSignal),
    /// Pingora's `run` returned.
    PingoraEnded,
}

/// Pingora's Unix signal watch, which also tells the orchestrator.
pub(super) struct SignalWatch {
    pub(super) notify: mpsc::Sender<Event>,
}

/// Stops everything in order; owns what must be flushed before the process exits.
pub(super) struct Orchestrator {
    pub(super) events: mpsc::Receiver<Event>,
    pub(super) active_requests: IntGauge,
    pub(super) grace: Duration,
    pub(super) stop_audit: watch::Sender<bool>,
    pub(super) audit_writer: Option<JoinHandle<()>>,
    /// Dropped last: flushes buffered log lines.
    pub(super) flush_on_exit: Vec<Box<dyn Send>>,
}

// === impl SignalWatch ===

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut quit), Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for shutdown signals; stop the gateway with SIGKILL");
            return std::future::pending().await;
        };
        let (kind, told) = tokio::select! {
            _ = quit.recv() => (ShutdownSignal::GracefulUpgrade, ShutdownSignal::GracefulUpgrade),
            _ = terminate.recv() => (ShutdownSignal::GracefulTerminate, ShutdownSignal::GracefulTerminate),
            _ = interrupt.recv() => (ShutdownSignal::FastShutdown, ShutdownSignal::FastShutdown),
        };
        let _ = self.notify.send(Event::Signal(told));
        kind
    }
}

// === impl Orchestrator ===

impl Orchestrator {
    /// Runs on its own thread: waits for a shutdown, drains, stops the audit writer, exits.
    pub(super) fn run(self) -> ! {
        match self.events.recv() {
            Ok(Event::Signal(
                ShutdownSignal::GracefulTerminate | ShutdownSignal::GracefulUpgrade,
            )) => {
                self.drain();
            }
            Ok(Event::Signal(ShutdownSignal::FastShutdown)) => {
                tracing::info!("fast shutdown: requests in flight are cut");
            }
            Ok(Event::PingoraEnded) | Err(_) => {}
        }
        self.exit()
    }

    /// Waits until no request is in flight (seen twice in a row, so a request between reading
    /// its head and starting is not missed) or the grace period is over.
    fn drain(&self) {
        let deadline = Instant::now() + self.grace;
        let mut idle_checks = 0;
        loop {
            let active = self.active_requests.get();
            idle_checks = if active == 0 { idle_checks + 1 } else { 0 };
            if idle_checks >= 2 {
                tracing::info!("graceful shutdown: no request in flight");
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    active,
                    grace_seconds = self.grace.as_secs_f64(),
                    "graceful shutdown: the grace period is over; cutting the requests still in flight"
                );
                return;
            }
            std::thread::sleep(DRAIN_POLL);
        }
    }

    /// Stops the audit writer (it writes what is queued and syncs), then exits the process.
    fn exit(mut self) -> ! {
        let _ = self.stop_audit.send(true);
        if let Some(writer) = self.audit_writer.take() {
            let (done_tx, done_rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = writer.join();
                let _ = done_tx.send(());
            });
            if done_rx.recv_timeout(AUDIT_FLUSH_LIMIT).is_err() {
                tracing::error!("the audit writer did not finish in time; exiting anyway");
            }
        }
        tracing::info!("portcullis stopped");
        drop(std::mem::take(&mut self.flush_on_exit));
        std::process::exit(0)
    }
}
