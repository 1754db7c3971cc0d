//! A graceful upgrade as an operator runs it, and the request loop that must not notice it.
//!
//! [`upgrade`] starts `portcullis run --upgrade` and sends the running gateway `SIGQUIT` once
//! the new process waits on the upgrade socket; [`RequestLoop`] keeps clients sending requests,
//! each on a new connection (what a handover must not lose is the accept queue), and collects
//! every failure.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::GatewayProcess;

/// Starts `portcullis run --upgrade` on `config` (whose listener addresses and upgrade socket
/// are those of `old`) and sends `old` SIGQUIT once the new process listens on
/// `upgrade_sock`. Returns the new process once it is ready (it has taken every listener over).
pub async fn upgrade(old: &GatewayProcess, upgrade_sock: &Path, config: &str) -> GatewayProcess {
    let old_pid = old.pid();
    let sock = upgrade_sock.to_owned();
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let signaller = std::thread::spawn(move || {
            // Bounded wait for the new process to listen on the upgrade socket.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !sock.exists() && Instant::now() < deadline {
                if rx.try_recv().is_ok() {
                    return;
                }
                // Another process creates the socket; there is no event to wait on.
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &old_pid.to_string()])
                .status();
        });
        let new = GatewayProcess::upgrade_from(&config);
        let _ = tx.send(());
        signaller.join().unwrap();
        new
    })
    .await
    .unwrap()
}

/// Clients sending GET requests with a tenant key in a loop until stopped.
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<(u32, Vec<String>)>>,
}

impl RequestLoop {
    /// `clients` clients sending `GET url` with `x-portcullis-key: key`, each request on a new
    /// connection; any answer but 200 is a failure.
    pub fn start(clients: usize, url: &str, key: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (stop, url, key) = (Arc::clone(&stop), url.to_owned(), key.to_owned());
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .no_proxy()
                        .pool_max_idle_per_host(0)
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap();
                    let (mut ok, mut errors) = (0u32, Vec::new());
                    // Bounded: at most 100,000 requests or until stopped.
                    for _ in 0..100_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match client
                            .get(&url)
                            .header("x-portcullis-key", &key)
                            .send()
                            .await
                        {
                            Ok(resp) if resp.status() == 200 => ok += 1,
                            Ok(resp) => {
                                let status = resp.status();
                                let body = resp.text().await.unwrap_or_default();
                                errors.push(format!("status {status}: {body}"));
                            }
                            Err(e) => errors.push(format!("{e:?}")),
                        }
                    }
                    (ok, errors)
                })
            })
            .collect();
        Self { stop, clients }
    }

    /// Stops the clients (each after its current request); returns how many requests
    /// succeeded and every failure.
    pub async fn stop(self) -> (u32, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut ok, mut errors) = (0, Vec::new());
        for client in self.clients {
            let (o, e) = client.await.unwrap();
            ok += o;
            errors.extend(e);
        }
        (ok, errors)
    }
}
