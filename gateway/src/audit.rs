//! The tamper-evident audit log: one JSON line per proxied or denied request and per admin action
//! (reload, secret change), each line carrying the hash of the line before it, so that
//! [`verify`] (`portcullis audit verify FILE…`) can prove that nobody altered, removed or
//! reordered a line.
//!
//! Writing never blocks the request path. [`AuditLog::record`] hands the event to a bounded
//! channel; an [`AuditWriter`] task drains it, formats and hashes the lines on the blocking
//! pool, and writes them to stdout or to a file rotated by size. When the writer falls behind,
//! the [`OverflowPolicy`] decides: `drop` counts the lost events and reports them in
//! [`AuditStats`]; `fail_closed` makes [`AuditLog::reserve`] fail, so the gateway refuses the
//! requests it could not audit. A failing sink (disk full, directory gone) marks the log
//! unhealthy, which in `fail_closed` mode refuses requests too, until the writer manages to
//! reopen the file (it retries every second).
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

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};

#[cfg(test)]
mod tests;

/// The `prev` of the first line of a new chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The most events the writer takes from the queue for one write.
const BATCH: usize = 256;

/// How long the writer waits for more lines before writing a partial batch.
const LINGER: Duration = Duration::from_millis(5);

/// How often a writer whose file failed tries to reopen it.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// What separates a line's hashed body from its hash.
const HASH_FIELD: &[u8] = b",\"hash\":\"";

/// How and where the audit log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Where lines go.
    pub sink: AuditSink,
    /// How many events may wait for the writer; at least 1.
    pub queue_capacity: usize,
    /// What happens when the queue is full.
    pub policy: OverflowPolicy,
}

/// Where audit lines go: the config's own type, so the two cannot drift apart.
pub use portcullis_config::AuditSinkConfig as AuditSink;

/// What to do with an event when the writer has fallen behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Lose the event and count it in [`AuditStats::dropped`].
    Drop,
    /// Refuse the request: [`AuditLog::reserve`] fails when there is no room or the sink fails.
    FailClosed,
}

/// One thing to audit.
#[derive(Debug, Clone)]
pub enum AuditEvent {
    /// A proxied or denied request.
    Request(Arc<RequestRecord>),
    /// An admin action.
    Admin(AdminRecord),
}

/// A request, as it ended: plain owned data with no header values and no secrets.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When the request arrived.
    pub time: SystemTime,
    /// The request id also sent back in `x-request-id`.
    pub request_id: String,
    /// The tenant, once known.
    pub tenant: Option<String>,
    /// The matched route, if any.
    pub route: Option<String>,
    /// The request method.
    pub method: String,
    /// The request path, without query values.
    pub path: String,
    /// The status sent to the caller.
    pub status: u16,
    /// The error code when the gateway refused the request.
    pub denial: Option<&'static str>,
    /// From arrival to the end of the response.
    pub duration: Duration,
    /// The caller's address, if known.
    pub client_ip: Option<IpAddr>,
    /// The source address the request left from.
    pub egress: Option<IpAddr>,
    /// The upstream address the request went to.
    pub upstream: Option<SocketAddr>,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

/// An admin action: a reload, a secret change, ….
#[derive(Debug, Clone)]
pub struct AdminRecord {
    /// When it happened.
    pub time: SystemTime,
    /// What was done: `"reload"`, `"secret_change"`, ….
    pub action: String,
    /// How it ended: `"ok"`, `"error"`, ….
    pub result: String,
    /// Anything else worth keeping (never a secret value).
    pub detail: serde_json::Value,
}

/// The handle the proxy and the admin API record through; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    inner: Option<Arc<Handle>>,
}

#[derive(Debug)]
struct Handle {
    tx: mpsc::Sender<AuditEvent>,
    policy: OverflowPolicy,
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
pub struct AuditSlot {
    permit: Option<mpsc::OwnedPermit<AuditEvent>>,
}

/// Why a fail-closed log cannot take a request's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditUnavailable {
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

/// The state of the audit log, for the admin API and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditStats {
    /// Whether a sink is configured.
    pub enabled: bool,
    /// The overflow policy.
    pub policy: OverflowPolicy,
    /// Lines written to the sink.
    pub written: u64,
    /// Events lost: the queue was full (drop policy, admin actions), the writer had stopped,
    /// or a write error lost them.
    pub dropped: u64,
    /// Failed writes, rotations or reopenings.
    pub write_errors: u64,
    /// Requests refused because a fail-closed log could not take their line.
    pub refused: u64,
    /// Whether the sink is writable and the writer running.
    pub healthy: bool,
    /// The `seq` of the last line written (0 before the first).
    pub head_seq: u64,
    /// The `hash` of the last line written (64 zeros before the first; empty when disabled).
    pub head_hash: String,
}

/// The task that drains the queue into the sink; run it with [`AuditWriter::run`].
#[derive(Debug)]
pub struct AuditWriter {
    rx: Option<mpsc::Receiver<AuditEvent>>,
    state: Option<WriterState>,
}

/// Everything the writer needs off the async runtime: moved into the blocking pool per batch.
#[derive(Debug)]
struct WriterState {
    output: Output,
    /// The head of the chain as written to the sink.
    chain: Head,
    shared: Arc<Shared>,
    /// Lines waiting to be written (our own buffering, written once per batch or rotation).
    buf: Vec<u8>,
    /// The line being encoded.
    line: Vec<u8>,
}

#[derive(Debug)]
enum Output {
    Stdout,
    File(FileSink),
}

#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    /// `None` after an error: reopened (and the chain resynchronised from disk) before the next write.
    file: Option<File>,
    size: u64,
}

/// What [`verify`] found in a sound chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Lines checked, over all files.
    pub lines: u64,
    /// The `seq` of the first line (0 when there were none).
    pub first_seq: u64,
    /// The `seq` of the last line (0 when there were none).
    pub last_seq: u64,
    /// The `hash` of the last line (64 zeros when there were none).
    pub head_hash: String,
    /// The `prev` of the first line: 64 zeros when the files hold the start of the chain,
    /// otherwise the last hash of an older file that was not given.
    pub anchor: String,
}

/// The first bad line [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {}", .file.display(), .line, .message)]
pub struct VerifyError {
    /// The file holding the line.
    pub file: PathBuf,
    /// The line number in that file, from 1 (0 when the file could not be read at all).
    pub line: usize,
    /// What is wrong.
    pub kind: VerifyErrorKind,
    /// What is wrong, for people.
    pub message: String,
}

/// What is wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyErrorKind {
    /// The file could not be read.
    Io,
    /// The line is not an audit record.
    Malformed,
    /// The line's content does not match its own hash: it was edited.
    Altered,
    /// The line does not follow the line before (`prev` or `seq`): lines were removed or reordered.
    Broken,
}

/// The fields of a line that the chain is made of.
#[derive(Debug, Deserialize)]
struct LineHead {
    seq: u64,
    prev: String,
    hash: String,
}

#[derive(Serialize)]
struct RequestLine<'a> {
    seq: u64,
    time: &'a str,
    kind: &'static str,
    request_id: &'a str,
    tenant: Option<&'a str>,
    route: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    status: u16,
    denial: Option<&'a str>,
    duration_ms: f64,
    client_ip: Option<IpAddr>,
    egress: Option<IpAddr>,
    upstream: Option<SocketAddr>,
    bytes_in: u64,
    bytes_out: u64,
    prev: &'a str,
}

#[derive(Serialize)]
struct AdminLine<'a> {
    seq: u64,
    time: &'a str,
    kind: &'static str,
    action: &'a str,
    result: &'a str,
    detail: &'a serde_json::Value,
    prev: &'a str,
}

// === impl AuditLog ===

impl AuditLog {
    /// Opens the sink (continuing the hash chain and sequence from the last line of an existing
    /// file) and returns the handle plus the writer to spawn.
    ///
    /// An existing file whose last complete line is not an audit record is an error: the chain
    /// cannot continue, and the operator should move the file aside. An incomplete last line
    /// (a crash mid-write) is cut off.
    pub fn open(config: AuditConfig) -> io::Result<(AuditLog, AuditWriter)> {
        let (output, head) = match config.sink {
            AuditSink::Off => return Ok((AuditLog::disabled(), AuditWriter::idle())),
            AuditSink::Stdout => (Output::Stdout, None),
            AuditSink::File {
                path,
                max_bytes,
                keep,
            } => {
                let (file, size, head) = open_chain_file(&path, keep)?;
                let sink = FileSink {
                    path,
                    max_bytes,
                    keep,
                    file: Some(file),
                    size,
                };
                (Output::File(sink), head)
            }
        };
        if config.queue_capacity == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the audit queue capacity must be at least 1",
            ));
        }
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
        let writer = AuditWriter {
            rx: Some(rx),
            state: Some(WriterState {
                output,
                chain,
                shared,
                buf: Vec::new(),
                line: Vec::new(),
            }),
        };
        Ok((log, writer))
    }

    /// A log with no sink: everything is a no-op.
    pub fn disabled() -> AuditLog {
        AuditLog { inner: None }
    }

    /// Whether a sink is configured.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Fail-closed mode: reserves room for this request's line before proxying it; `Err` means
    /// refuse the request. In drop mode (and when disabled) always `Ok`, with an empty slot:
    /// [`AuditLog::record`] then tries to send and counts a drop if it cannot.
    pub fn reserve(&self) -> Result<AuditSlot, AuditUnavailable> {
        let Some(handle) = &self.inner else {
            return Ok(AuditSlot::default());
        };
        if handle.policy == OverflowPolicy::Drop {
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

    /// Records an event, in the slot if one was reserved. Never blocks.
    pub fn record(&self, slot: AuditSlot, event: AuditEvent) {
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
    pub fn record_admin(&self, event: AdminRecord) {
        if let Some(handle) = &self.inner {
            handle.try_send(AuditEvent::Admin(event));
        }
    }

    /// The counters and the head of the chain.
    pub fn stats(&self) -> AuditStats {
        let Some(handle) = &self.inner else {
            return AuditStats {
                enabled: false,
                policy: OverflowPolicy::Drop,
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
        AuditStats {
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
    pub fn new(
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
            hash: GENESIS.to_owned(),
        }
    }
}

// === impl AuditWriter ===

impl AuditWriter {
    /// A writer with nothing to do (the sink is off).
    fn idle() -> Self {
        AuditWriter {
            rx: None,
            state: None,
        }
    }

    /// Drains the queue into the sink until `shutdown` turns true (or its sender goes away, or
    /// every handle is dropped); then writes what is still queued, flushes, and returns.
    ///
    /// Lines reach the sink whenever the queue is momentarily empty (and at least every 256
    /// events); files are not synced per line, only on return.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let AuditWriter { rx, state } = self;
        let (Some(mut rx), Some(mut state)) = (rx, state) else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let retry = state.can_retry();
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    // Linger briefly, without polling the channel (each poll that finds it empty
                    // arms a wake-up per sent line), then take what arrived: under load this
                    // turns one cross-thread wake, one hand-off to the blocking pool and one
                    // write(2) per request into one per batch.
                    if batch.len() < BATCH {
                        tokio::time::sleep(LINGER).await;
                        while batch.len() < BATCH {
                            match rx.try_recv() {
                                Ok(event) => batch.push(event),
                                Err(_) => break,
                            }
                        }
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
                () = tokio::time::sleep(RETRY_INTERVAL), if retry => {}
            }
            match write_off_thread(state, batch).await {
                Some((s, b)) => (state, batch) = (s, b),
                None => return,
            }
        }
        // Refuse new events, then write the ones already queued. (An event sent through a slot
        // reserved before this point but used after it is lost.)
        rx.close();
        while let Ok(event) = rx.try_recv() {
            batch.push(event);
        }
        if let Some((mut state, _)) = write_off_thread(state, batch).await {
            let _ = tokio::task::spawn_blocking(move || state.sync()).await;
        }
    }
}

/// Writes a batch on the blocking pool, so that file IO never stalls the runtime's workers.
async fn write_off_thread(
    mut state: WriterState,
    mut batch: Vec<AuditEvent>,
) -> Option<(WriterState, Vec<AuditEvent>)> {
    let shared = state.shared.clone();
    let task = tokio::task::spawn_blocking(move || {
        state.write_batch(&mut batch);
        (state, batch)
    });
    match task.await {
        Ok(done) => Some(done),
        Err(e) => {
            shared.write_errors.fetch_add(1, Ordering::Relaxed);
            shared.healthy.store(false, Ordering::Release);
            tracing::error!(error = %e, "the audit writer failed; audit lines are no longer written");
            None
        }
    }
}

// === impl WriterState ===

impl WriterState {
    /// Whether the sink failed and reopening it might help.
    fn can_retry(&self) -> bool {
        matches!(&self.output, Output::File(f) if f.file.is_none())
    }

    /// Writes every event of the batch (and empties it), or counts what was lost.
    fn write_batch(&mut self, events: &mut Vec<AuditEvent>) {
        let mut written = 0;
        let result = self.try_write(events, &mut written);
        let lost = events.len().saturating_sub(written);
        events.clear();
        match result {
            Ok(()) => {
                if !self.shared.healthy.swap(true, Ordering::AcqRel) {
                    tracing::info!(sink = %self.output.describe(), "the audit log is writable again");
                }
            }
            Err(e) => {
                self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .dropped
                    .fetch_add(lost as u64, Ordering::Relaxed);
                self.shared.healthy.store(false, Ordering::Release);
                if let Output::File(f) = &mut self.output {
                    // Reopen before the next write and continue from what is really on disk.
                    f.file = None;
                }
                self.buf.clear();
                tracing::error!(
                    error = %e,
                    sink = %self.output.describe(),
                    lost,
                    "writing the audit log failed"
                );
            }
        }
    }

    fn try_write(&mut self, events: &[AuditEvent], written: &mut usize) -> io::Result<()> {
        if let Output::File(f) = &mut self.output {
            if f.file.is_none() {
                let (file, size, head) = open_chain_file(&f.path, f.keep)?;
                f.file = Some(file);
                f.size = size;
                if let Some(head) = head {
                    self.chain = head;
                    self.shared.head.store(Arc::new(self.chain.clone()));
                }
            }
        }
        self.buf.clear();
        let mut pending = 0;
        let mut tentative = self.chain.clone();
        for event in events {
            self.line.clear();
            let seq = tentative.seq + 1;
            let hash = encode_line(&mut self.line, seq, &tentative.hash, event)?;
            let rotate = match &self.output {
                Output::File(f) => {
                    let used = f.size + self.buf.len() as u64;
                    used > 0 && used + self.line.len() as u64 > f.max_bytes
                }
                Output::Stdout => false,
            };
            if rotate {
                self.flush(&tentative, &mut pending, written)?;
                if let Output::File(f) = &mut self.output {
                    f.rotate()?;
                }
            }
            self.buf.extend_from_slice(&self.line);
            tentative = Head { seq, hash };
            pending += 1;
        }
        self.flush(&tentative, &mut pending, written)
    }

    /// Writes the buffered lines, then makes `tentative` the head.
    fn flush(
        &mut self,
        tentative: &Head,
        pending: &mut usize,
        written: &mut usize,
    ) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        match &mut self.output {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&self.buf)?;
                out.flush()?;
            }
            Output::File(f) => {
                let file = f
                    .file
                    .as_mut()
                    .ok_or_else(|| io::Error::other("the audit file is not open"))?;
                file.write_all(&self.buf)?;
                f.size += self.buf.len() as u64;
            }
        }
        self.buf.clear();
        self.chain = tentative.clone();
        self.shared.head.store(Arc::new(tentative.clone()));
        self.shared
            .written
            .fetch_add(*pending as u64, Ordering::Relaxed);
        *written += *pending;
        *pending = 0;
        Ok(())
    }

    /// Pushes what was written to stable storage (on shutdown).
    fn sync(&mut self) {
        if let Output::File(FileSink {
            file: Some(file),
            path,
            ..
        }) = &mut self.output
        {
            if let Err(e) = file.sync_data() {
                tracing::error!(error = %e, path = %path.display(), "syncing the audit log failed");
            }
        }
    }
}

// === impl Output ===

impl Output {
    fn describe(&self) -> Cow<'_, str> {
        match self {
            Output::Stdout => Cow::Borrowed("stdout"),
            Output::File(f) => f.path.to_string_lossy(),
        }
    }
}

// === impl FileSink ===

impl FileSink {
    /// `path.(k)` → `path.(k+1)` for k = keep-1 … 1, `path` → `path.1`, a fresh `path`.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            ignore_not_found(fs::remove_file(&self.path))?;
        } else {
            ignore_not_found(fs::remove_file(rotated_path(&self.path, self.keep)))?;
            for k in (1..self.keep).rev() {
                ignore_not_found(fs::rename(
                    rotated_path(&self.path, k),
                    rotated_path(&self.path, k + 1),
                ))?;
            }
            ignore_not_found(fs::rename(&self.path, rotated_path(&self.path, 1)))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        self.file = Some(file);
        self.size = 0;
        tracing::info!(path = %self.path.display(), keep = self.keep, "rotated the audit log");
        Ok(())
    }
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The name of the `k`-th rotated file of `path`: `path.k` (1 is the newest).
pub fn rotated_path(path: &Path, k: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{k}"));
    PathBuf::from(name)
}

/// Opens (or creates) the live file for appending, cuts off an incomplete last line, and finds
/// the head of the chain: its last line, or the last line of `path.1` when it is empty.
fn open_chain_file(path: &Path, keep: usize) -> io::Result<(File, u64, Option<Head>)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let (complete, last) = read_tail(&mut file, len)?;
    if complete < len {
        tracing::warn!(
            path = %path.display(),
            bytes = len - complete,
            "cutting off an incomplete last line of the audit log (a crash or a failed write)"
        );
        file.set_len(complete)?;
    }
    let head = match last {
        Some(line) => Some(parse_head(path, &line)?),
        None if keep > 0 => {
            let previous = rotated_path(path, 1);
            match File::open(&previous) {
                Ok(mut older) => {
                    let len = older.metadata()?.len();
                    match read_tail(&mut older, len)?.1 {
                        Some(line) => Some(parse_head(&previous, &line)?),
                        None => None,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            }
        }
        None => None,
    };
    Ok((file, complete, head))
}

/// Reads backwards from the end of a file of `len` bytes: the length up to and including the
/// last newline, and the last complete line (without its newline), if any.
fn read_tail(file: &mut File, len: u64) -> io::Result<(u64, Option<Vec<u8>>)> {
    const CHUNK: u64 = 8 * 1024;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    while start > 0 {
        let step = CHUNK.min(start);
        start -= step;
        let mut chunk = vec![0; step as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let begin = match buf[..end].iter().rposition(|&b| b == b'\n') {
            Some(nl) => nl + 1,
            None if start == 0 => 0,
            None => continue,
        };
        return Ok((start + end as u64 + 1, Some(buf[begin..end].to_vec())));
    }
    Ok((0, None))
}

/// The head of the chain from a file's last line.
fn parse_head(path: &Path, line: &[u8]) -> io::Result<Head> {
    let invalid = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: the last line is not an audit record ({why}); move the file aside to start a new chain",
                path.display()
            ),
        )
    };
    let head: LineHead = serde_json::from_slice(line).map_err(|e| invalid(e.to_string()))?;
    if !is_hash(&head.hash) {
        return Err(invalid("its hash is not 64 hex digits".to_owned()));
    }
    Ok(Head {
        seq: head.seq,
        hash: head.hash,
    })
}

/// Appends one line (with its newline) to `out` and returns its hash.
fn encode_line(out: &mut Vec<u8>, seq: u64, prev: &str, event: &AuditEvent) -> io::Result<String> {
    let start = out.len();
    match event {
        AuditEvent::Request(r) => {
            let time = rfc3339_millis(r.time);
            let path = redact_query(&r.path);
            let line = RequestLine {
                seq,
                time: &time,
                kind: "request",
                request_id: &r.request_id,
                tenant: r.tenant.as_deref(),
                route: r.route.as_deref(),
                method: &r.method,
                path: &path,
                status: r.status,
                denial: r.denial,
                duration_ms: r.duration.as_micros() as f64 / 1000.0,
                client_ip: r.client_ip,
                egress: r.egress,
                upstream: r.upstream,
                bytes_in: r.bytes_in,
                bytes_out: r.bytes_out,
                prev,
            };
            serde_json::to_writer(&mut *out, &line)?;
        }
        AuditEvent::Admin(a) => {
            let time = rfc3339_millis(a.time);
            let line = AdminLine {
                seq,
                time: &time,
                kind: "admin",
                action: &a.action,
                result: &a.result,
                detail: &a.detail,
                prev,
            };
            serde_json::to_writer(&mut *out, &line)?;
        }
    }
    // Reopen the object to append the hash of everything before it.
    if out.pop() != Some(b'}') {
        return Err(io::Error::other(
            "an audit line did not serialise to an object",
        ));
    }
    let hash = line_hash(prev, &out[start..]);
    out.extend_from_slice(HASH_FIELD);
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(b"\"}\n");
    Ok(hash)
}

/// `hex(sha256(prev + "\n" + body))`.
fn line_hash(prev: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Keeps query parameter names, drops their values: `/a?x=1&y` → `/a?x&y`.
fn redact_query(path: &str) -> Cow<'_, str> {
    match path.split_once('?') {
        None => Cow::Borrowed(path),
        Some((path, query)) => Cow::Owned(crate::traffic::redact_query(path, Some(query))),
    }
}

/// Formats a time as RFC 3339 in UTC with milliseconds: `2026-11-23T19:04:05.123Z`.
/// Times before 1970 are written as the epoch.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Year, month and day of the `days`-th day after 1970-01-01, in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01, so that the leap day is the last day of a "year".
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

// === verify ===

/// Checks the chain over `paths`, given oldest first (`path.N … path.1 path`): every line's own
/// hash, every `prev` against the hash before it, every `seq` against the one before. Reports
/// the first bad line.
pub fn verify(paths: &[PathBuf]) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        lines: 0,
        first_seq: 0,
        last_seq: 0,
        head_hash: GENESIS.to_owned(),
        anchor: GENESIS.to_owned(),
    };
    let mut previous: Option<Head> = None;
    let mut buf = Vec::new();
    for path in paths {
        let fail = |line: usize, kind: VerifyErrorKind, message: String| VerifyError {
            file: path.clone(),
            line,
            kind,
            message,
        };
        let file = File::open(path)
            .map_err(|e| fail(0, VerifyErrorKind::Io, format!("cannot open: {e}")))?;
        let mut reader = BufReader::new(file);
        let mut number = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| fail(number + 1, VerifyErrorKind::Io, format!("cannot read: {e}")))?;
            if n == 0 {
                break;
            }
            number += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            let head = check_line(&buf).map_err(|(kind, message)| fail(number, kind, message))?;
            match &previous {
                Some(before) => {
                    if head.prev != before.hash {
                        return Err(fail(
                            number,
                            VerifyErrorKind::Broken,
                            format!(
                                "prev {} is not the hash of the line before ({}): a line was removed or reordered",
                                short(&head.prev),
                                short(&before.hash)
                            ),
                        ));
                    }
                    if head.seq != before.seq + 1 {
                        return Err(fail(
                            number,
                            VerifyErrorKind::Broken,
                            format!(
                                "seq {} does not follow seq {}: a line was removed or reordered",
                                head.seq, before.seq
                            ),
                        ));
                    }
                }
                None => {
                    if head.prev == GENESIS && head.seq != 1 {
                        return Err(fail(
                            number,
                            VerifyErrorKind::Broken,
                            format!("the chain starts at seq {}, not 1", head.seq),
                        ));
                    }
                    report.first_seq = head.seq;
                    report.anchor = head.prev;
                }
            }
            report.lines += 1;
            previous = Some(Head {
                seq: head.seq,
                hash: head.hash,
            });
        }
    }
    if let Some(last) = previous {
        report.last_seq = last.seq;
        report.head_hash = last.hash;
    }
    Ok(report)
}

/// Checks one line on its own: an audit record whose hash matches its text.
fn check_line(line: &[u8]) -> Result<LineHead, (VerifyErrorKind, String)> {
    let malformed = |why: String| (VerifyErrorKind::Malformed, why);
    let text = std::str::from_utf8(line).map_err(|_| malformed("not UTF-8".to_owned()))?;
    let head: LineHead =
        serde_json::from_str(text).map_err(|e| malformed(format!("not an audit record: {e}")))?;
    if !is_hash(&head.prev) || !is_hash(&head.hash) {
        return Err(malformed(
            "prev and hash must be 64 lowercase hex digits".to_owned(),
        ));
    }
    // The hashed body is everything before `,"hash":"<hash>"}`, which must end the line.
    let suffix = format!(",\"hash\":\"{}\"}}", head.hash);
    let Some(body) = text.strip_suffix(suffix.as_str()) else {
        return Err(malformed("hash is not the last field".to_owned()));
    };
    if line_hash(&head.prev, body.as_bytes()) != head.hash {
        return Err((
            VerifyErrorKind::Altered,
            format!(
                "the line does not match its hash {}: it was edited",
                short(&head.hash)
            ),
        ));
    }
    Ok(head)
}

/// The first 12 hex digits of a hash, for messages.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}
