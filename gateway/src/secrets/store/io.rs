//! Reading and replacing the store file safely.
//!
//! Writers (`portcullis secrets …`) take an exclusive `flock` on a lock file next to the store
//! (`.<store name>.lock`, never renamed, so every writer locks the same inode) for the whole
//! read-modify-write, so two concurrent commands cannot lose each other's update. The new
//! content goes to a temporary file in the same directory, is flushed to disk, renamed over the
//! store and the directory is flushed: a reader — the gateway, which takes no lock — sees the
//! old file or the new one, whole, never a mix. The store keeps its permission bits across
//! writes (a new store is created `0600`). Both helper files start with a dot, which the
//! gateway's file watch ignores.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::StoreError;

/// How long a writer waits for another one to finish before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How often it looks while waiting.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// An exclusive lock on a store, held until dropped (closing the file releases the `flock`).
#[derive(Debug)]
pub(crate) struct WriteLock {
    _file: File,
}

/// The lock file of `store`: `.<name>.lock` in the same directory.
pub(crate) fn lock_path(store: &Path) -> PathBuf {
    sibling(store, ".lock")
}

/// Takes the writers' lock of `store`, waiting up to 30 s for another writer.
pub(crate) fn lock(store: &Path) -> Result<WriteLock, StoreError> {
    let path = lock_path(store);
    let failed = |reason: String| StoreError::Lock {
        path: store.to_path_buf(),
        lock: path.clone(),
        reason,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| failed(e.to_string()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => return Ok(WriteLock { _file: file }),
            Ok(false) if Instant::now() < deadline => std::thread::sleep(LOCK_POLL),
            Ok(false) => {
                return Err(failed(format!(
                    "another writer has held it for {}s",
                    LOCK_WAIT.as_secs()
                )))
            }
            Err(e) => return Err(failed(e.to_string())),
        }
    }
}

/// Replaces `store` with `bytes` atomically and durably, keeping its permission bits.
pub(crate) fn write_atomic(store: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let failed = |reason: String| StoreError::Write {
        path: store.to_path_buf(),
        reason,
    };
    let dir = match store.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = store
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `tempfile` creates the file 0600 with a random name and removes it if we fail.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| {
            failed(format!(
                "creating a temporary file in '{}': {e}",
                dir.display()
            ))
        })?;
    if let Ok(meta) = std::fs::metadata(store) {
        tmp.as_file()
            .set_permissions(meta.permissions())
            .map_err(|e| failed(format!("setting permissions: {e}")))?;
    }
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| failed(e.to_string()))?;
    tmp.persist(store)
        .map_err(|e| failed(format!("renaming into place: {}", e.error)))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed(format!("flushing directory '{}': {e}", dir.display())))?;
    Ok(())
}

/// `<dir>/.<name><suffix>`.
fn sibling(store: &Path, suffix: &str) -> PathBuf {
    let name = store
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    store.with_file_name(format!(".{name}{suffix}"))
}
