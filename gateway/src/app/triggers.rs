//! Reload triggers: `SIGHUP`, and a watch of the config file's directory and of the secrets
//! directory (editors save by rename, Kubernetes swaps a `..data` symlink, secret rotation needs
//! no restart). Both call the one [`Reloader::reload`].
//!
//! A secret file is re-read only once its writer is done with it — closed after writing, or
//! renamed into place — never on the intermediate writes of a writer that pauses longer than
//! the debounce, and never from an editor's temporary file. (Rotating by writing a temporary
//! file and renaming it over the old one is still the safe way: a writer that closes a
//! half-written file cannot be told apart from one that is done.) When a reload moves
//! `secrets.dir`, the watch follows it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use portcullis_api::ReloadTrigger;
use tokio::sync::mpsc;

use crate::control::Reloader;
use crate::secrets::is_temporary_name;

/// How long file events must be quiet before a reload (editors write in several steps).
const WATCH_DEBOUNCE: Duration = Duration::from_millis(150);

/// Runs the reload triggers.
pub(crate) struct ReloadTriggers {
    reloader: Arc<Reloader>,
    /// Set up before the gateway reports itself ready, so no change after that is missed; taken
    /// by the task when it starts.
    watch: tokio::sync::Mutex<Option<(Option<Watch>, mpsc::Receiver<()>)>>,
}

/// The file watch: the config file's directory, and the secrets directory of the runtime in
/// force.
struct Watch {
    watcher: notify::RecommendedWatcher,
    /// The secrets directory being watched; the event handler reads it.
    secrets_dir: Arc<ArcSwapOption<PathBuf>>,
}

// === impl ReloadTriggers ===

impl ReloadTriggers {
    /// Triggers for `reloader`. The file watch starts now: a change made as soon as the
    /// gateway reports itself ready is seen even if this task has not started yet.
    pub(crate) fn new(reloader: Arc<Reloader>) -> Self {
        let (tx, rx) = mpsc::channel::<()>(1);
        let mut watch = reloader
            .source()
            .path()
            .and_then(|path| Watch::start(path, tx));
        if let Some(watch) = &mut watch {
            let dir = reloader.shared().runtime.load().config.secrets.dir.clone();
            watch.follow_secrets_dir(dir);
        }
        Self {
            reloader,
            watch: tokio::sync::Mutex::new(Some((watch, rx))),
        }
    }

    async fn reload(&self, trigger: ReloadTrigger, watch: &mut Option<Watch>) {
        self.reloader.reload(trigger).await;
        if let Some(watch) = watch {
            let dir = self
                .reloader
                .shared()
                .runtime
                .load()
                .config
                .secrets
                .dir
                .clone();
            watch.follow_secrets_dir(dir);
        }
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
        let Some((mut watch, mut rx)) = self.watch.lock().await.take() else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload(ReloadTrigger::Sighup, &mut watch).await;
                }
                Some(()) = rx.recv() => {
                    // Wait for the writes to settle: editors and ConfigMap updates come in bursts.
                    while let Ok(Some(())) = tokio::time::timeout(WATCH_DEBOUNCE, rx.recv()).await {}
                    self.reload(ReloadTrigger::File, &mut watch).await;
                }
            }
        }
    }
}

// === impl Watch ===

impl Watch {
    /// Watches the directory of `config` (an absolute path); events that matter send on `tx`.
    fn start(config: &Path, tx: mpsc::Sender<()>) -> Option<Self> {
        let config_name = config.file_name()?.to_owned();
        let config_dir = config.parent().map(Path::to_path_buf)?;
        let secrets_dir: Arc<ArcSwapOption<PathBuf>> = Arc::default();
        let watched_secrets = Arc::clone(&secrets_dir);
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let secrets = watched_secrets.load();
            let relevant = event.paths.iter().any(|p| {
                if p.parent() == Some(config_dir.as_path()) {
                    let name = p.file_name();
                    if name == Some(config_name.as_os_str()) || name.is_some_and(|n| n == "..data")
                    {
                        return !matches!(event.kind, EventKind::Access(_));
                    }
                }
                secrets
                    .as_deref()
                    .is_some_and(|dir| p.starts_with(dir) && secret_file_settled(p, &event.kind))
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
        if let Err(e) = watcher.watch(config.parent()?, RecursiveMode::NonRecursive) {
            tracing::error!(dir = %config.parent()?.display(), error = %e, "cannot watch the config directory");
        }
        Some(Self {
            watcher,
            secrets_dir,
        })
    }

    /// Watches `dir` instead of the secrets directory watched so far.
    fn follow_secrets_dir(&mut self, dir: Option<PathBuf>) {
        let current = self.secrets_dir.load_full();
        if current.as_deref() == dir.as_ref() {
            return;
        }
        if let Some(old) = current.as_deref() {
            let _ = self.watcher.unwatch(old);
        }
        if let Some(new) = &dir {
            match self.watcher.watch(new, RecursiveMode::Recursive) {
                Ok(()) => tracing::info!(dir = %new.display(), "watching the secrets directory"),
                Err(e) => {
                    tracing::error!(dir = %new.display(), error = %e, "cannot watch the secrets directory; reload with SIGHUP or the admin API after rotating")
                }
            }
        }
        self.secrets_dir.store(dir.map(Arc::new));
    }
}

/// Whether an event under the secrets directory means a secret file is ready to be read:
/// created, removed, renamed into place, or closed after writing — not a write still going
/// on, and not an editor's temporary file. Kubernetes' `..data` swap counts.
fn secret_file_settled(path: &Path, kind: &EventKind) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name != "..data" && is_temporary_name(name) {
        return false;
    }
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, RenameMode};

    use super::*;

    #[test]
    fn only_finished_secret_files_count() {
        let file = Path::new("/run/secrets/acme/pd");
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let writing = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(secret_file_settled(file, &closed));
        assert!(secret_file_settled(file, &renamed));
        assert!(secret_file_settled(
            file,
            &EventKind::Create(CreateKind::File)
        ));
        assert!(!secret_file_settled(file, &writing));
        for temp in [
            "/s/acme/.pd.swp",
            "/s/acme/pd~",
            "/s/acme/pd.tmp",
            "/s/acme/.#pd",
        ] {
            assert!(!secret_file_settled(Path::new(temp), &closed), "{temp}");
        }
        assert!(secret_file_settled(Path::new("/s/..data"), &renamed));
    }
}
