//! The writer task: drains the queue in batches, formats and hashes the lines, writes them to
//! the sink, and tells `forward` events that their line is written. It runs on a thread of its
//! own, so it writes where it runs.

use std::borrow::Cow;
use std::io::{self, Write};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::file::{self, FileSink};
use super::{format, AuditEvent, AuditSink, Head, Shared};

/// The most events the writer takes from the queue for one write.
const BATCH: usize = 256;

/// How long the writer waits for more lines before writing a partial batch (not when a request
/// is waiting for its `forward` line).
const LINGER: Duration = Duration::from_millis(5);

/// How often a writer whose file failed tries to reopen it.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The task that drains the queue into the sink; run it with [`AuditWriter::run`].
#[derive(Debug)]
pub(crate) struct AuditWriter {
    rx: Option<mpsc::Receiver<AuditEvent>>,
    state: Option<WriterState>,
}

/// Everything the writer needs to encode, hash and write lines.
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

/// Where lines go.
#[derive(Debug)]
pub(super) enum Output {
    Stdout,
    File(FileSink),
}

// === impl AuditWriter ===

impl AuditWriter {
    pub(super) fn new(
        rx: mpsc::Receiver<AuditEvent>,
        output: Output,
        chain: Head,
        shared: Arc<Shared>,
    ) -> Self {
        AuditWriter {
            rx: Some(rx),
            state: Some(WriterState {
                output,
                chain,
                shared,
                buf: Vec::new(),
                line: Vec::new(),
            }),
        }
    }

    /// A writer with nothing to do (the sink is off).
    pub(super) fn idle() -> Self {
        AuditWriter {
            rx: None,
            state: None,
        }
    }

    /// Drains the queue into the sink until `stop` turns true (or its sender goes away, or
    /// every handle is dropped); then writes what is still queued, syncs, and returns.
    ///
    /// Lines reach the sink whenever the queue is momentarily empty (and at least every 256
    /// events); files are not synced per line, only on return.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let AuditWriter { rx, state } = self;
        let (Some(mut rx), Some(mut state)) = (rx, state) else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if *stop.borrow_and_update() {
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
                    // turns one cross-thread wake and one write(2) per request into one per
                    // batch. A request waiting for its `forward` line is not kept waiting for
                    // company.
                    let waited_for = batch.iter().any(|e| matches!(e, AuditEvent::Forward(..)));
                    if batch.len() < BATCH && !waited_for {
                        tokio::time::sleep(LINGER).await;
                        while batch.len() < BATCH {
                            match rx.try_recv() {
                                Ok(event) => batch.push(event),
                                Err(_) => break,
                            }
                        }
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
                () = tokio::time::sleep(RETRY_INTERVAL), if retry => {}
            }
            if !write_here(&mut state, &mut batch) {
                return;
            }
        }
        // Refuse new events, then write the ones already queued.
        rx.close();
        while let Ok(event) = rx.try_recv() {
            batch.push(event);
        }
        if write_here(&mut state, &mut batch) {
            state.sync();
        }
    }
}

/// Writes a batch on the calling thread, and says whether the writer can go on.
///
/// The writer has a thread and a runtime of its own (see `app::run`), so a slow disk stalls
/// nothing else there; handing every batch to the blocking pool, as it once did, cost two thread
/// switches and a wake-up per batch on the gateway's core. A panic while writing (a bug) is
/// caught here: the log is marked unhealthy, which `fail_closed` turns into refusals, and the
/// writer stops.
fn write_here(state: &mut WriterState, batch: &mut Vec<AuditEvent>) -> bool {
    let written = std::panic::catch_unwind(AssertUnwindSafe(|| state.write_batch(batch)));
    if written.is_ok() {
        return true;
    }
    // The events' `forward` requesters learn it from their dropped acknowledgements.
    batch.clear();
    state.shared.write_errors.fetch_add(1, Ordering::Relaxed);
    state.shared.healthy.store(false, Ordering::Release);
    tracing::error!("the audit writer failed; audit lines are no longer written");
    false
}

// === impl WriterState ===

impl WriterState {
    /// Whether the sink failed and reopening it might help.
    fn can_retry(&self) -> bool {
        matches!(&self.output, Output::File(f) if f.file.is_none())
    }

    /// Writes every event of the batch (and empties it), or counts what was lost. Each
    /// `forward` event learns whether its line reached the sink.
    fn write_batch(&mut self, events: &mut Vec<AuditEvent>) {
        let mut written = 0;
        let result = self.try_write(events, &mut written);
        let lost = events.len().saturating_sub(written);
        self.record_outcome(result, lost);
        // After the health flag is up to date, so that a refused request sees it at once.
        for (index, event) in events.drain(..).enumerate() {
            if let AuditEvent::Forward(_, ack) = event {
                // The requester may have gone (its caller hung up): nothing to tell then.
                let _ = ack.send(index < written);
            }
        }
    }

    /// Updates the health flag and counters after a batch.
    fn record_outcome(&mut self, result: io::Result<()>, lost: usize) {
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
                let (file, size, head) = file::open_chain_file(&f.path, f.keep)?;
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
            let hash = format::encode_line(&mut self.line, seq, &tentative.hash, event)?;
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
    /// Opens the configured sink and finds the head of an existing chain; `None` when the sink
    /// is off.
    pub(super) fn open(sink: AuditSink) -> io::Result<Option<(Output, Option<Head>)>> {
        Ok(match sink {
            AuditSink::Off => None,
            AuditSink::Stdout => Some((Output::Stdout, None)),
            AuditSink::File {
                path,
                max_bytes,
                keep,
            } => {
                let (file, size, head) = file::open_chain_file(&path, keep)?;
                let sink = FileSink {
                    path,
                    max_bytes,
                    keep,
                    file: Some(file),
                    size,
                };
                Some((Output::File(sink), head))
            }
        })
    }

    fn describe(&self) -> Cow<'_, str> {
        match self {
            Output::Stdout => Cow::Borrowed("stdout"),
            Output::File(f) => f.path.to_string_lossy(),
        }
    }
}
