//! The order things stop in.
//!
//! On `SIGTERM`, or `SIGQUIT` (a graceful upgrade: Pingora first hands the listening sockets
//! to the new process and keeps accepting for 5 s), Pingora stops accepting and lets every
//! connection end after its current request. The gateway then waits until no connection is
//! open and no request in flight — every request answered *and* recorded — which is at once
//! when the gateway is idle. If that has not happened when `server.shutdown_grace_seconds`
//! is over, Pingora drops the tasks still running; each request cut that way is recorded
//! (access line, audit line `shutdown_cut`) as its context is dropped, and Pingora returns.
//! Once the proxy is drained, the tunnel agents' connections are closed (go-away `shutdown`,
//! and their `tunnel_disconnect` audit lines written): the agents reconnect within their
//! backoff (500 ms by default) to whichever gateway listens now — after `SIGQUIT`, the new
//! process, the only one still accepting on the tunnel listener. They are closed this late so
//! that requests through a tunnel still in flight here finish; the new process meanwhile holds
//! its tunnel requests until the agents arrive (`TunnelRegistry::expect_agents`). TCP-route
//! connections ride on those agent connections and end with them.
//! Only then is the audit writer told to stop: it writes what is queued, syncs the file, and
//! the process exits. So every request that reached the proxy has its audit line on disk.
//! `SIGINT` skips the wait (requests in flight are cut and recorded the same way).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::{broadcast, watch};

use crate::conn::ConnStats;
use crate::observe::Recorders;
use crate::upstream::tunnel::TunnelRegistry;

/// How often the drain looks at what is still open.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// The longest the audit writer gets to write what is queued and sync.
const AUDIT_FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// How long Pingora may take to stop accepting after the signal: an upgrade sends the
/// sockets (up to ~6 s of retries) and keeps accepting 5 s more.
const STOP_ACCEPTING_LIMIT: Duration = Duration::from_secs(30);

/// Past the grace period, how long Pingora may take to drop its tasks and return.
const RUNTIME_STOP_LIMIT: Duration = Duration::from_secs(10);

/// How long closing the agents' connections (go-away sent, disconnect audited) may take.
const AGENTS_CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// What the orchestrator hears.
#[derive(Debug)]
pub(super) enum Event {
    /// A shutdown signal arrived (Pingora acts on it too).
    Signal(ShutdownSignal),
    /// Pingora's `run` returned: its runtimes are stopped, every task dropped.
    PingoraEnded,
}

/// Pingora's Unix signal watch, which also tells the orchestrator.
pub(super) struct SignalWatch {
    pub(super) notify: mpsc::Sender<Event>,
}

/// Stops everything in order; owns what must be flushed before the process exits.
pub(super) struct Orchestrator {
    pub(super) events: mpsc::Receiver<Event>,
    pub(super) phases: broadcast::Receiver<ExecutionPhase>,
    pub(super) recorders: Arc<Recorders>,
    pub(super) connections: Arc<ConnStats>,
    /// The agents connected to this process, closed once the proxy has drained.
    pub(super) tunnels: Arc<TunnelRegistry>,
    /// Whether Pingora's `run` has returned (its tasks, agent sessions included, are gone).
    pub(super) pingora_done: bool,
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
        let kind = tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = terminate.recv() => ShutdownSignal::GracefulTerminate,
            _ = interrupt.recv() => ShutdownSignal::FastShutdown,
        };
        let told = match kind {
            ShutdownSignal::GracefulUpgrade => ShutdownSignal::GracefulUpgrade,
            ShutdownSignal::GracefulTerminate => ShutdownSignal::GracefulTerminate,
            _ => ShutdownSignal::FastShutdown,
        };
        let _ = self.notify.send(Event::Signal(told));
        kind
    }
}

// === impl Orchestrator ===

impl Orchestrator {
    /// Runs on its own thread: waits for a shutdown, drains, stops the audit writer, exits.
    pub(super) fn run(mut self) -> ! {
        match self.events.recv() {
            Ok(Event::Signal(
                signal @ (ShutdownSignal::GracefulTerminate | ShutdownSignal::GracefulUpgrade),
            )) => {
                self.recorders.stopping.store(true, Ordering::Release);
                let upgrade = matches!(signal, ShutdownSignal::GracefulUpgrade);
                tracing::info!(
                    upgrade,
                    grace_seconds = self.grace.as_secs(),
                    "graceful shutdown"
                );
                self.drain();
                self.close_agents();
            }
            Ok(Event::Signal(_)) => {
                self.recorders.stopping.store(true, Ordering::Release);
                tracing::info!("fast shutdown: requests in flight are cut");
                // Pingora drops every task at once; wait for that, so the cut requests are
                // recorded before the audit writer stops.
                self.wait_for_pingora(Instant::now() + RUNTIME_STOP_LIMIT);
            }
            Ok(Event::PingoraEnded) | Err(_) => {}
        }
        self.exit()
    }

    /// Waits until Pingora has stopped accepting, then until nothing is open or in flight
    /// (seen twice in a row, so a request between reading its head and starting is not
    /// missed), or until Pingora ends at the end of the grace period.
    fn drain(&mut self) {
        let stop_deadline = Instant::now() + STOP_ACCEPTING_LIMIT;
        while !self.accepting_stopped() {
            if self.pingora_ended(DRAIN_POLL) || Instant::now() >= stop_deadline {
                return;
            }
        }
        let deadline = Instant::now() + self.grace + RUNTIME_STOP_LIMIT;
        let mut idle_checks = 0;
        loop {
            let open = self.connections.open() + self.connections.unsettled();
            let active = self.recorders.metrics.active_requests().get();
            idle_checks = if open == 0 && active == 0 {
                idle_checks + 1
            } else {
                0
            };
            if idle_checks >= 2 {
                tracing::info!("graceful shutdown: no connection open, no request in flight");
                return;
            }
            if self.pingora_ended(DRAIN_POLL) {
                tracing::warn!(
                    requests = active,
                    grace_seconds = self.grace.as_secs_f64(),
                    "graceful shutdown: the grace period is over; the requests still in flight were cut"
                );
                return;
            }
            if Instant::now() >= deadline {
                tracing::error!("graceful shutdown: Pingora did not stop in time; exiting anyway");
                return;
            }
        }
    }

    /// Closes the tunnel agents' connections and waits (bounded) until each one's end is
    /// recorded: they reconnect to the gateway that accepts now.
    fn close_agents(&mut self) {
        let open = self.tunnels.close_all(
            portcullis_broker::CloseReason::Shutdown,
            "the gateway is stopping; reconnect",
        );
        if open == 0 {
            return;
        }
        tracing::info!(
            agents = open,
            "graceful shutdown: closed the tunnel agents' connections; they reconnect to the gateway that accepts now"
        );
        let deadline = Instant::now() + AGENTS_CLOSE_LIMIT;
        // With Pingora ended the sessions' tasks are gone: nothing more will be recorded.
        while !self.pingora_done && self.tunnels.registered_agents() > 0 {
            if Instant::now() >= deadline || self.pingora_ended(DRAIN_POLL) {
                return;
            }
        }
    }

    /// Whether Pingora has broadcast the shutdown to its services (the listeners stop).
    fn accepting_stopped(&mut self) -> bool {
        loop {
            match self.phases.try_recv() {
                Ok(ExecutionPhase::ShutdownStarted)
                | Ok(ExecutionPhase::ShutdownGracePeriod)
                | Ok(ExecutionPhase::ShutdownRuntimes)
                | Ok(ExecutionPhase::Terminated) => return true,
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(broadcast::error::TryRecvError::Empty) => return false,
                // Pingora is gone: nothing accepts any more.
                Err(broadcast::error::TryRecvError::Closed) => return true,
            }
        }
    }

    /// Waits up to `wait` for Pingora's `run` to return; true when it has.
    fn pingora_ended(&mut self, wait: Duration) -> bool {
        if self.pingora_done {
            return true;
        }
        self.pingora_done = match self.events.recv_timeout(wait) {
            Ok(Event::PingoraEnded) | Err(RecvTimeoutError::Disconnected) => true,
            Ok(Event::Signal(_)) | Err(RecvTimeoutError::Timeout) => false,
        };
        self.pingora_done
    }

    fn wait_for_pingora(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            if self.pingora_ended(DRAIN_POLL) {
                return;
            }
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
