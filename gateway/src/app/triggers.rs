//! Reload triggers: `SIGHUP`, and a watch of the config file's directory, of the secrets
//! directory and of the encrypted secret store (editors save by rename, Kubernetes swaps a
//! `..data` symlink, `portcullis secrets rotate` renames a new store into place; rotation needs
//! no restart). All call the one [`Reloader::reload`].
//!
//! A secret file is re-read only once its writer is done with it — closed after writing, or
//! renamed into place — never on the intermediate writes of a writer that pauses longer than
//! the debounce, and never from an editor's temporary file. (Rotating by writing a temporary
//! file and renaming it over the old one is still the safe way: a writer that closes a
//! half-written file cannot be told apart from one that is done.) The store is watched through
//! its directory, for the store file's own name only (not the CLI's lock and temporary files).
//! When a reload moves `secrets.dir` or `secrets.store`, the watch follows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
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

/// The file watch: the config file's directory, and the secrets directory and store of the
/// runtime in force.
struct Watch {
    watcher: notify::RecommendedWatcher,
    config_dir: PathBuf,
    /// The secret sources being watched; the event handler reads them.
    followed: Arc<ArcSwap<Followed>>,
    /// Directories watched for `followed` (besides the config directory).
    watched: Vec<(PathBuf, RecursiveMode)>,
}

/// The secret sources of the runtime in force whose changes trigger a reload.
#[derive(Debug, Default, PartialEq, Eq)]
struct Followed {
    /// `secrets.dir`, watched recursively.
    secrets_dir: Option<PathBuf>,
    /// `secrets.store`, watched through its directory.
    store: Option<PathBuf>,
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
            watch.follow(followed(&reloader));
        }
        Self {
            reloader,
            watch: tokio::sync::Mutex::new(Some((watch, rx))),
        }
    }

    async fn reload(&self, trigger: ReloadTrigger, watch: &mut Option<Watch>) {
        self.reloader.reload(trigger).await;
        if let Some(watch) = watch {
            watch.follow(followed(&self.reloader));
        }
    }
}

/// The secret sources of the runtime in force.
fn followed(reloader: &Reloader) -> Followed {
    let runtime = reloader.shared().runtime.load();
    let secrets = &runtime.config.secrets;
    Followed {
        secrets_dir: secrets.dir.clone(),
        store: secrets.store.clone(),
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
        let followed: Arc<ArcSwap<Followed>> = Arc::default();
        let watched_sources = Arc::clone(&followed);
        let handler_config_dir = config_dir.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let sources = watched_sources.load();
            let relevant = event.paths.iter().any(|p| {
                if p.parent() == Some(handler_config_dir.as_path()) {
                    let name = p.file_name();
                    if name == Some(config_name.as_os_str()) || name.is_some_and(|n| n == "..data")
                    {
                        return !matches!(event.kind, EventKind::Access(_));
                    }
                }
                let in_dir = sources
                    .secrets_dir
                    .as_deref()
                    .is_some_and(|dir| p.starts_with(dir));
                let is_store = sources.store.as_deref() == Some(p.as_path());
                (in_dir || is_store) && secret_file_settled(p, &event.kind)
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
        Some(Self {
            watcher,
            config_dir,
            followed,
            watched: Vec::new(),
        })
    }

    /// Watches the secret sources of `next` instead of those watched so far.
    fn follow(&mut self, next: Followed) {
        if **self.followed.load() == next {
            return;
        }
        let wanted = watch_list(&self.config_dir, &next);
        for (dir, mode) in std::mem::take(&mut self.watched) {
            if wanted.contains(&(dir.clone(), mode)) {
                self.watched.push((dir, mode));
            } else {
                let _ = self.watcher.unwatch(&dir);
            }
        }
        for (dir, mode) in wanted {
            if self.watched.contains(&(dir.clone(), mode)) {
                continue;
            }
            match self.watcher.watch(&dir, mode) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "watching for secret changes");
                    self.watched.push((dir, mode));
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "cannot watch for secret changes; reload with SIGHUP or the admin API after rotating")
                }
            }
        }
        self.followed.store(Arc::new(next));
    }
}

/// The directories to watch for `followed`: the secrets directory (recursively) and the store's
/// directory — unless the config directory or the secrets directory covers it already.
fn watch_list(config_dir: &Path, followed: &Followed) -> Vec<(PathBuf, RecursiveMode)> {
    let mut out = Vec::new();
    if let Some(dir) = &followed.secrets_dir {
        out.push((dir.clone(), RecursiveMode::Recursive));
    }
    if let Some(parent) = followed.store.as_deref().and_then(Path::parent) {
        let covered = parent == config_dir
            || followed
                .secrets_dir
                .as_deref()
                .is_some_and(|d| parent.starts_with(d));
        if !covered {
            out.push((parent.to_path_buf(), RecursiveMode::NonRecursive));
        }
    }
    out
}

/// Whether an event on a secret file or the store means it is ready to be read:
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
        // The CLI's lock and temporary files next to the store never count.
        for helper in ["/s/.secrets.store.lock", "/s/.secrets.store.XyZ12.tmp"] {
            assert!(
                !secret_file_settled(Path::new(helper), &renamed),
                "{helper}"
            );
        }
    }

    #[test]
    fn the_store_directory_is_watched_unless_already_covered() {
        let config = Path::new("/etc/portcullis");
        let followed = |dir: Option<&str>, store: Option<&str>| Followed {
            secrets_dir: dir.map(PathBuf::from),
            store: store.map(PathBuf::from),
        };
        assert_eq!(
            watch_list(
                config,
                &followed(Some("/run/secrets"), Some("/var/lib/p/s.store"))
            ),
            [
                (PathBuf::from("/run/secrets"), RecursiveMode::Recursive),
                (PathBuf::from("/var/lib/p"), RecursiveMode::NonRecursive)
            ]
        );
        assert!(watch_list(config, &followed(None, Some("/etc/portcullis/s.store"))).is_empty());
        assert_eq!(
            watch_list(
                config,
                &followed(Some("/run/secrets"), Some("/run/secrets/s.store"))
            ),
            [(PathBuf::from("/run/secrets"), RecursiveMode::Recursive)]
        );
    }
}
