//! The tamper-evident audit log: one JSON line per proxied or denied request and per admin action
//! (reload, secret change), each line carrying the hash of the line before it, so that
//! [`verify`] (`portcullis audit verify FILE…`) can prove that nobody altered, removed or
//! reordered a line.
//!
//! Writing never blocks the request path. [`AuditLog::record`] hands the event to a bounded
//! channel; an [`AuditWriter`] task, on a thread of its own, drains it, formats and hashes the
//! lines, and writes them to stdout or to a file rotated by size. When the writer falls behind,
//! the [`OverflowPolicy`] decides: `drop` counts the lost events and reports them in
//! [`AuditStats`]; `fail_closed` makes [`AuditLog::reserve`] fail, so the gateway refuses the
//! requests it could not audit. A failing sink (disk full, directory gone) marks the log
//! unhealthy, which in `fail_closed` mode refuses requests too, until the writer manages to
//! reopen the file (it retries every second).
//!
//! In `fail_closed` mode a request is also not forwarded until a `forward` line naming it has
//! reached the sink ([`AuditLog::confirm_forward`]): no request reaches an upstream unaudited,
//! even in the moments before a failing disk is noticed. "Reached the sink" means `write(2)`
//! succeeded (the page cache; lines are synced on shutdown, not per line).
//!
//! The writer runs until it is told to stop, then writes what is queued and syncs. The
//! process stops it only after the proxy has drained, so the lines of requests that finish
//! during a graceful shutdown are written too.
//!
//! This module is not the place that decides what a request *is*: the records are plain owned
//! data built by the proxy and the admin API. They carry no header values and no secrets, and
//! must not start to: a line is written for anyone who can read the file.
//!
//! # Line format
//!
//! Each line is a JSON object whose fields always come in this order (a request line, wrapped
//! here for reading; on disk it is one line):
//!
//! ```text
//! {"seq":42,"time":"2026-11-23T19:04:05.123Z","kind":"request","request_id":"01J…",
//!  "tenant":"acme","route":"acme-pd","method":"GET","path":"/acme/pd/incidents","status":200,
//!  "denial":null,"duration_ms":3.2,"client_ip":"127.0.0.1","egress":"127.0.0.2",
//!  "upstream":"127.0.0.1:9000","bytes_in":0,"bytes_out":512,"prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! a forward line (`fail_closed` only: written, and waited for, before the request is
//! forwarded; the request's own line follows when it ends):
//!
//! ```text
//! {"seq":41,"time":"2026-11-23T19:04:05.121Z","kind":"forward","request_id":"01J…",
//!  "tenant":"acme","route":"acme-pd","method":"GET","path":"/acme/pd/incidents",
//!  "client_ip":"127.0.0.1","prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! and an admin line:
//!
//! ```text
//! {"seq":43,"time":"2026-11-23T19:04:06.000Z","kind":"admin","action":"reload","result":"ok",
//!  "detail":{"config":"3f2a…"},"prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! - `seq` counts lines from 1 and goes up by one per line, across rotated files.
//! - `time` is RFC 3339 in UTC with milliseconds. `duration_ms` has microsecond precision.
//! - `tenant`, `route`, `denial`, `client_ip`, `egress` and `upstream` are `null` when unknown;
//!   `denial` is the error code of a refused request. `path` never carries query values (should
//!   a caller pass one, the writer keeps only the parameter names: `/a?x=1&y=2` → `/a?x&y`).
//! - `prev` is the `hash` of the line before; the first line of a new chain has `seq` 1 and
//!   `prev` = 64 zeros.
//! - `hash` is the last field: `hash = hex(sha256(prev + "\n" + body))`, where `body` is the
//!   exact text of the line up to, and excluding, `,"hash":"…"}` (that is, ending with the
//!   closing quote of `prev`). Hashing the text as written avoids any JSON canonicalisation.
//!
//! Rotation renames `path` → `path.1` → … → `path.N` (`keep` = N; older files are deleted) and
//! the chain continues into the fresh `path`: its first line's `prev` is the last hash of
//! `path.1`. Restarting the gateway continues the chain and `seq` from the last line on disk.
//!
//! [`verify`] takes the files oldest first (`path.N … path.1 path`), recomputes every hash and
//! checks every link, and reports the first bad line. When the first line does not start a chain
//! (its older files were rotated away), its `prev` is accepted as the anchor and reported. What
//! a hash chain cannot show by itself is lines cut off the *end*: compare the reported head hash
//! with the gateway's (`AuditStats::head_hash`) or with a copy kept elsewhere.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use portcullis_api::AuditPolicy;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::observe::record::RequestRecord;

mod file;
mod format;
mod json;
mod verify;
mod writer;

pub(crate) use self::verify::verify;
pub(crate) use self::writer::AuditWriter;

#[cfg(test)]
mod tests;

/// How and where the audit log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditConfig {
    /// Where lines go.
    pub(crate) sink: AuditSink,
    /// How many events may wait for the writer; at least 1.
    pub(crate) queue_capacity: usize,
    /// What happens when the queue is full.
    pub(crate) policy: AuditPolicy,
}

/// Where audit lines go: the config's own type, so the two cannot drift apart.
pub(crate) use portcullis_config::AuditSinkConfig as AuditSink;

/// One thing to audit.
#[derive(Debug)]
pub(crate) enum AuditEvent {
    /// A proxied or denied request, as it ended.
    Request(Arc<RequestRecord>),
    /// A request about to be forwarded (`fail_closed`): `ack` learns whether its line reached
    /// the sink.
    Forward(ForwardRecord, oneshot::Sender<bool>),
    /// An admin action.
    Admin(AdminRecord),
}

/// A request about to be forwarded: who is calling what, before anything is known of the answer.
#[derive(Debug, Clone)]
pub(crate) struct ForwardRecord {
    /// When the request arrived.
    pub(crate) time: SystemTime,
    /// The request id.
    pub(crate) request_id: String,
    /// The route's tenant.
    pub(crate) tenant: Arc<str>,
    /// The route.
    pub(crate) route: Arc<str>,
    /// The method.
    pub(crate) method: http::Method,
    /// The path with query parameter names only.
    pub(crate) path: String,
    /// The caller's address.
    pub(crate) client_ip: Option<IpAddr>,
}

/// An admin action: a reload, a secret change, ….
#[derive(Debug, Clone)]
pub(crate) struct AdminRecord {
    /// When it happened.
    pub(crate) time: SystemTime,
    /// What was done: `"reload"`, `"secret_change"`, ….
    pub(crate) action: String,
    /// How it ended: `"success"`, `"error"`, ….
    pub(crate) result: String,
    /// Anything else worth keeping (never a secret value).
    pub(crate) detail: serde_json::Value,
}

/// The handle the proxy and the admin API record through; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditLog {
    inner: Option<Arc<Handle>>,
}

#[derive(Debug)]
struct Handle {
    tx: mpsc::Sender<AuditEvent>,
    policy: AuditPolicy,
    shared: Arc<Shared>,
}

/// What the handles and the writer share: counters and the head of the chain on disk.
#[derive(Debug)]
struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    refused: AtomicU64,
    healthy: AtomicBool,
    head: ArcSwap<Head>,
}

/// The last line of a chain: its `seq` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    seq: u64,
    hash: String,
}

/// Room reserved in the queue for one request's line (or nothing, when no room is needed).
#[derive(Debug, Default)]
pub(crate) struct AuditSlot {
    permit: Option<mpsc::OwnedPermit<AuditEvent>>,
}

/// Why a fail-closed log cannot take a request's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuditUnavailable {
    /// The writer has fallen behind and the queue is full.
    #[error("the audit queue is full")]
    Full,
    /// The sink failed and has not recovered.
    #[error("the audit sink is failing")]
    Unhealthy,
    /// The writer has stopped.
    #[error("the audit writer has stopped")]
    Stopped,
}

// === impl AuditLog ===

impl AuditLog {
    /// Opens the sink (continuing the hash chain and sequence from the last line of an existing
    /// file) and returns the handle plus the writer to run.
    ///
    /// An existing file whose last complete line is not an audit record is an error: the chain
    /// cannot continue, and the operator should move the file aside. An incomplete last line
    /// (a crash mid-write) is cut off.
    pub(crate) fn open(config: AuditConfig) -> io::Result<(AuditLog, AuditWriter)> {
        if config.queue_capacity == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the audit queue capacity must be at least 1",
            ));
        }
        let Some((output, head)) = writer::Output::open(config.sink)? else {
            return Ok((AuditLog::disabled(), AuditWriter::idle()));
        };
        let chain = head.unwrap_or_else(Head::genesis);
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            head: ArcSwap::from_pointee(chain.clone()),
        });
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let log = AuditLog {
            inner: Some(Arc::new(Handle {
                tx,
                policy: config.policy,
                shared: shared.clone(),
            })),
        };
        Ok((log, AuditWriter::new(rx, output, chain, shared)))
    }

    /// A log with no sink: everything is a no-op.
    pub(crate) fn disabled() -> AuditLog {
        AuditLog { inner: None }
    }

    /// Fail-closed mode: reserves room for this request's line before proxying it; `Err` means
    /// refuse the request. In drop mode (and when disabled) always `Ok`, with an empty slot:
    /// [`AuditLog::record`] then tries to send and counts a drop if it cannot.
    pub(crate) fn reserve(&self) -> Result<AuditSlot, AuditUnavailable> {
        let Some(handle) = &self.inner else {
            return Ok(AuditSlot::default());
        };
        if handle.policy == AuditPolicy::Drop {
            return Ok(AuditSlot::default());
        }
        let refused = if !handle.shared.healthy.load(Ordering::Acquire) {
            AuditUnavailable::Unhealthy
        } else {
            match handle.tx.clone().try_reserve_owned() {
                Ok(permit) => {
                    return Ok(AuditSlot {
                        permit: Some(permit),
                    })
                }
                Err(TrySendError::Full(_)) => AuditUnavailable::Full,
                Err(TrySendError::Closed(_)) => AuditUnavailable::Stopped,
            }
        };
        handle.shared.refused.fetch_add(1, Ordering::Relaxed);
        Err(refused)
    }

    /// Whether requests must be confirmed with [`AuditLog::confirm_forward`] before they are
    /// forwarded (the `fail_closed` policy).
    pub(crate) fn confirms_forwards(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|h| h.policy == AuditPolicy::FailClosed)
    }

    /// Writes a `forward` line and waits until it has reached the sink. `Err` means the request
    /// must not be forwarded.
    pub(crate) async fn confirm_forward(
        &self,
        record: ForwardRecord,
    ) -> Result<(), AuditUnavailable> {
        let Some(handle) = &self.inner else {
            return Ok(());
        };
        let (ack, written) = oneshot::channel();
        let refused = match handle.tx.try_send(AuditEvent::Forward(record, ack)) {
            Ok(()) => match written.await {
                Ok(true) => return Ok(()),
                Ok(false) => AuditUnavailable::Unhealthy,
                Err(_) => AuditUnavailable::Stopped,
            },
            Err(TrySendError::Full(_)) => AuditUnavailable::Full,
            Err(TrySendError::Closed(_)) => AuditUnavailable::Stopped,
        };
        handle.shared.refused.fetch_add(1, Ordering::Relaxed);
        Err(refused)
    }

    /// Records an event, in the slot if one was reserved. Never blocks.
    pub(crate) fn record(&self, slot: AuditSlot, event: AuditEvent) {
        let Some(handle) = &self.inner else {
            return;
        };
        match slot.permit {
            Some(permit) => {
                permit.send(event);
            }
            None => handle.try_send(event),
        }
    }

    /// Records an admin action (no reservation): tries to send, counting a drop if the queue is full.
    pub(crate) fn record_admin(&self, event: AdminRecord) {
        if let Some(handle) = &self.inner {
            handle.try_send(AuditEvent::Admin(event));
        }
    }

    /// The counters and the head of the chain.
    pub(crate) fn stats(&self) -> portcullis_api::AuditStatus {
        let Some(handle) = &self.inner else {
            return portcullis_api::AuditStatus {
                enabled: false,
                policy: AuditPolicy::Drop,
                written: 0,
                dropped: 0,
                write_errors: 0,
                refused: 0,
                healthy: true,
                head_seq: 0,
                head_hash: String::new(),
            };
        };
        let shared = &handle.shared;
        let head = shared.head.load();
        portcullis_api::AuditStatus {
            enabled: true,
            policy: handle.policy,
            written: shared.written.load(Ordering::Relaxed),
            dropped: shared.dropped.load(Ordering::Relaxed),
            write_errors: shared.write_errors.load(Ordering::Relaxed),
            refused: shared.refused.load(Ordering::Relaxed),
            healthy: shared.healthy.load(Ordering::Acquire) && !handle.tx.is_closed(),
            head_seq: head.seq,
            head_hash: head.hash.clone(),
        }
    }
}

// === impl Handle ===

impl Handle {
    fn try_send(&self, event: AuditEvent) {
        if self.tx.try_send(event).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// === impl AdminRecord ===

impl AdminRecord {
    /// An admin action that happened now.
    pub(crate) fn new(
        action: impl Into<String>,
        result: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        AdminRecord {
            time: SystemTime::now(),
            action: action.into(),
            result: result.into(),
            detail,
        }
    }
}

// === impl Head ===

impl Head {
    fn genesis() -> Self {
        Head {
            seq: 0,
            hash: format::GENESIS.to_owned(),
        }
    }
}
