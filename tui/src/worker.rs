//! The poller: a background thread that turns the admin API into [`Msg`]s. Status, routes,
//! secrets and tunnels every `refresh`; the traffic tail continuously with the `after`
//! cursor; reloads when the console asks. It retries with backoff when the gateway is gone
//! and re-reads the token file after a 401, so both recover without a restart.
//!
//! It stops when the console drops its end of either channel. Every wait is bounded (the
//! request timeout, the refresh interval, the backoff cap).

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client::{AdminClient, ClientError};
use crate::model::{Msg, Poll};

/// Time between traffic fetches when the tail is caught up.
const TRAFFIC_INTERVAL: Duration = Duration::from_millis(250);
/// Entries per traffic request.
const TRAFFIC_PAGE: usize = portcullis_api::MAX_TRAFFIC_LIMIT;
/// Traffic pages fetched back to back before other work gets a turn.
const TRAFFIC_BURST: usize = 5;
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the console asks of the poller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// `POST /api/v1/reload`, answered with [`Msg::ReloadFinished`].
    Reload,
}

/// The running poller.
#[derive(Debug)]
pub(crate) struct Worker {
    requests: Sender<Request>,
}

struct Poller {
    client: AdminClient,
    refresh: Duration,
    msgs: Sender<Msg>,
    requests: Receiver<Request>,
    /// `after` for the next traffic request.
    cursor: u64,
    /// pid and start time of the gateway last seen: a change means a restart.
    identity: Option<(u32, u64)>,
    /// Consecutive failed polls.
    failures: u32,
}

/// Why the poller loop ends.
struct Stopped;

/// Starts the poller; its messages go to `msgs`.
pub(crate) fn spawn(
    client: AdminClient,
    refresh: Duration,
    msgs: Sender<Msg>,
) -> std::io::Result<Worker> {
    let (requests, requests_rx) = std::sync::mpsc::channel();
    let poller = Poller {
        client,
        refresh,
        msgs,
        requests: requests_rx,
        cursor: 0,
        identity: None,
        failures: 0,
    };
    // Detached: it ends by itself once the console drops its channels.
    std::thread::Builder::new()
        .name("portcullis-console-poller".to_owned())
        .spawn(move || poller.run())?;
    Ok(Worker { requests })
}

// === impl Worker ===

impl Worker {
    /// Asks for a reload; false when the poller has stopped.
    pub(crate) fn send(&self, request: Request) -> bool {
        self.requests.send(request).is_ok()
    }
}

// === impl Poller ===

impl Poller {
    fn run(mut self) {
        let mut next_poll = Instant::now();
        loop {
            if Instant::now() >= next_poll {
                let Ok(delay) = self.poll() else { return };
                next_poll = Instant::now() + delay;
            }
            let connected = self.failures == 0;
            if connected && self.tail().is_err() {
                return;
            }
            let until = if connected {
                next_poll.min(Instant::now() + TRAFFIC_INTERVAL)
            } else {
                next_poll
            };
            match self
                .requests
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(Request::Reload) => {
                    let result = self.client.reload().map_err(|e| e.to_string());
                    if self.send(Msg::ReloadFinished(result)).is_err() {
                        return;
                    }
                    // Show the reload's effect at once.
                    next_poll = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Polls the slow endpoints and reports; returns how long to wait before the next poll.
    fn poll(&mut self) -> Result<Duration, Stopped> {
        match self.fetch() {
            Ok(poll) => {
                let identity = (poll.status.pid, poll.status.started_at_ms);
                if self.identity.is_some_and(|known| known != identity) {
                    // A new gateway process numbers its traffic from 1 again.
                    self.cursor = 0;
                }
                self.identity = Some(identity);
                self.failures = 0;
                self.send(Msg::Polled(Box::new(poll)))?;
                Ok(self.refresh)
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let delay = backoff(self.failures);
                let retry_at_ms = unix_ms() + delay.as_millis() as u64;
                let msg = match error {
                    ClientError::Unauthorized { code } => Msg::Unauthorized { code, retry_at_ms },
                    other => Msg::Disconnected {
                        reason: other.to_string(),
                        retry_at_ms,
                    },
                };
                self.send(msg)?;
                Ok(delay)
            }
        }
    }

    fn fetch(&mut self) -> Result<Poll, ClientError> {
        if self.failures > 0 {
            // After a 401 the operator may have fixed the token file.
            self.client.reload_token()?;
        }
        let status = self.client.status()?;
        let routes = self.client.routes()?;
        let secrets = self.client.secrets()?;
        let tunnels = self.client.tunnels()?;
        Ok(Poll {
            at_ms: unix_ms(),
            status,
            routes,
            secrets,
            tunnels,
        })
    }

    /// Reads what the traffic ring has after the cursor: whole pages back to back while
    /// they come full, up to [`TRAFFIC_BURST`].
    fn tail(&mut self) -> Result<(), Stopped> {
        for _ in 0..TRAFFIC_BURST {
            match self.client.traffic(self.cursor, TRAFFIC_PAGE) {
                Ok(page) => {
                    let full = page.entries.len() >= TRAFFIC_PAGE;
                    self.cursor = page.next;
                    if !page.entries.is_empty() || page.gap {
                        self.send(Msg::Traffic(page))?;
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    self.send(Msg::TrafficFailed(error.to_string()))?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn send(&self, msg: Msg) -> Result<(), Stopped> {
        self.msgs.send(msg).map_err(|_| Stopped)
    }
}

/// 1 s, 2 s, 4 s, then every 5 s.
fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(8);
    (Duration::from_secs(1) * 2u32.pow(exponent)).min(MAX_BACKOFF)
}

/// Wall-clock time, Unix ms.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        let secs: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 5, 5, 5]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
