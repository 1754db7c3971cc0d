//! The agent's audit log: the customer's own evidence of what came through the tunnel.
//!
//! One JSON object per line, appended to the configured file by a single writer task (so lines
//! never interleave), flushed whenever the queue is drained. Every line has `time` (RFC 3339,
//! UTC, milliseconds) and `event`:
//!
//! - `request`: `request_id` (the `x-request-id` header, if any), `gateway`, `origin`,
//!   `method`, `path` (normalised when it could be, query parameter *names* only),
//!   `decision` (`allowed` / `denied`), `reason` (the deny reason, or the forwarding error),
//!   `status`, `bytes_in` (request body bytes from the gateway), `bytes_out` (response body
//!   bytes to the gateway), `duration_ms` (until the response body ended).
//! - `tcp`: the same for a TCP stream: `origin`, `decision`, `reason`, byte counts, duration.
//! - `connect` / `disconnect`: `gateway`, `tunnel`, `tenant`, `transport`, and on disconnect
//!   `reason` and `message`.
//!
//! Header values are never written. If the writer falls behind by more than 65 536 lines,
//! further lines are dropped and counted, with a warning in the log.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::protocol::frame::{Accepted, CloseReason};
use crate::protocol::transport::Transport;

const QUEUE: usize = 65_536;

/// One `request` line, written without building a `serde_json::Value` (it is written for every
/// request). Its fields are in the order a `json!` object's keys are written (alphabetical),
/// as in every other line, and `time`, which sorts after them all, is appended by
/// [`AuditLog::request`].
#[derive(Debug, Serialize)]
pub(crate) struct RequestLine<'a> {
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) decision: &'a str,
    pub(crate) duration_ms: f64,
    pub(crate) event: &'a str,
    pub(crate) method: &'a str,
    pub(crate) origin: &'a str,
    pub(crate) path: &'a str,
    pub(crate) reason: Option<&'a str>,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) status: u16,
}

/// A handle to the audit writer; cheap to clone. Disabled handles drop every line.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: Option<mpsc::Sender<String>>,
    dropped: Arc<AtomicU64>,
}

// === impl AuditLog ===

impl AuditLog {
    /// Opens (appending, creating) the file and starts the writer. The returned task ends,
    /// with everything flushed, once every handle has been dropped.
    ///
    /// # Errors
    ///
    /// The file cannot be opened for appending.
    pub async fn open(path: &Path) -> std::io::Result<(AuditLog, Option<JoinHandle<()>>)> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let file_name = path.display().to_string();
        let task = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(64 * 1024);
            while let Some(line) = rx.recv().await {
                buf.extend_from_slice(line.as_bytes());
                while buf.len() < 1 << 20 {
                    match rx.try_recv() {
                        Ok(line) => buf.extend_from_slice(line.as_bytes()),
                        Err(_) => break,
                    }
                }
                if let Err(e) = async {
                    file.write_all(&buf).await?;
                    file.flush().await
                }
                .await
                {
                    tracing::error!(file = %file_name, "cannot write the audit log: {e}");
                }
                buf.clear();
            }
            let _ = file.sync_data().await;
        });
        Ok((
            AuditLog {
                tx: Some(tx),
                dropped: Arc::default(),
            },
            Some(task),
        ))
    }

    /// A log that writes nothing.
    pub fn disabled() -> (AuditLog, Option<JoinHandle<()>>) {
        (
            AuditLog {
                tx: None,
                dropped: Arc::default(),
            },
            None,
        )
    }

    /// Queues one event; `time` is added.
    pub fn write(&self, mut event: Value) {
        if self.tx.is_none() {
            return;
        }
        if let Value::Object(map) = &mut event {
            map.insert(
                "time".into(),
                Value::String(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
            );
        }
        let mut line = event.to_string();
        line.push('\n');
        self.send(line);
    }

    /// Queues one `request` line, with `time` added last.
    pub(crate) fn request(&self, line: &RequestLine<'_>) {
        if self.tx.is_some() {
            if let Some(text) = request_text(line, SystemTime::now()) {
                self.send(text);
            }
        }
    }

    fn send(&self, line: String) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(line).is_err() {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::warn!(
                    dropped = before + 1,
                    "audit writer is behind; lines dropped"
                );
            }
        }
    }

    /// A `connect` or `disconnect` line.
    pub(crate) fn connection(
        &self,
        event: &str,
        gateway: &str,
        accepted: &Accepted,
        transport: Transport,
        ended: Option<(CloseReason, &str)>,
    ) {
        let mut value = json!({
            "event": event,
            "gateway": gateway,
            "tunnel": accepted.tunnel,
            "tenant": accepted.tenant,
            "transport": match transport { Transport::Binary => "tls", Transport::WebSocket => "websocket" },
        });
        if let (Some((reason, message)), Value::Object(map)) = (ended, &mut value) {
            map.insert("reason".into(), Value::String(reason.as_str().into()));
            map.insert("message".into(), Value::String(message.into()));
        }
        self.write(value);
    }
}

/// `line` as JSON with `"time"` appended as the last key, and a newline.
fn request_text(line: &RequestLine<'_>, now: SystemTime) -> Option<String> {
    use std::fmt::Write as _;
    let mut text = serde_json::to_string(line).ok()?;
    // `{..}` → `{..,"time":".."}`; the timestamp is digits and punctuation, nothing to escape.
    text.pop();
    writeln!(
        text,
        ",\"time\":\"{}\"}}",
        humantime::format_rfc3339_millis(now)
    )
    .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typed line is byte for byte what the `json!` object of the same fields gives.
    #[test]
    fn request_line_is_the_json_object_line() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_764_000_000_123);
        let odd = "q\"uo\\te \u{7f} ünï \u{1b}[31m";
        for (reason, request_id, duration_ms) in [
            (None, None, 0.0),
            (Some("not_accepted"), Some("req-1"), 1.5),
            (Some(odd), Some(odd), 12.345),
        ] {
            let line = RequestLine {
                bytes_in: 7,
                bytes_out: u64::MAX,
                decision: "allowed",
                duration_ms,
                event: "request",
                method: "GET",
                origin: odd,
                path: "/a?b&c",
                reason,
                request_id,
                status: 502,
            };
            let mut expected = json!({
                "event": "request",
                "request_id": request_id,
                "origin": odd,
                "method": "GET",
                "path": "/a?b&c",
                "decision": "allowed",
                "reason": reason,
                "status": 502,
                "bytes_in": 7,
                "bytes_out": u64::MAX,
                "duration_ms": duration_ms,
                "time": humantime::format_rfc3339_millis(now).to_string(),
            })
            .to_string();
            expected.push('\n');
            assert_eq!(request_text(&line, now).as_deref(), Some(expected.as_str()));
        }
    }
}
