//! The line format: field order, the hash of each line over the text as written, and the
//! records the chain is checked with.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::json::JsonObject;
use super::AuditEvent;
use crate::clock::rfc3339_millis;
use crate::observe::escape::to_safe_json;
use crate::observe::record::{redact_query, Upstream};

/// The `prev` of the first line of a new chain.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What separates a line's hashed body from its hash.
const HASH_FIELD: &[u8] = b",\"hash\":\"";

/// The fields of a line that the chain is made of.
#[derive(Debug, Deserialize)]
pub(super) struct LineHead {
    pub(super) seq: u64,
    pub(super) prev: String,
    pub(super) hash: String,
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

/// Appends one line (with its newline) to `out` and returns its hash.
pub(super) fn encode_line(
    out: &mut Vec<u8>,
    seq: u64,
    prev: &str,
    event: &AuditEvent,
) -> io::Result<String> {
    let start = out.len();
    match event {
        AuditEvent::Request(r) => {
            let time = rfc3339_millis(r.time);
            let mut line = JsonObject::open(out);
            line.number("seq", seq)?;
            line.str("time", &time);
            line.str("kind", "request");
            line.str("request_id", &r.request_id);
            line.opt_str("tenant", r.tenant.as_deref());
            line.opt_str("route", r.route.as_deref());
            line.str("method", r.method.as_str());
            line.str("path", &redact_path(&r.path));
            line.number("status", r.status)?;
            line.opt_str("denial", r.denial);
            line.number("duration_ms", r.duration.as_micros() as f64 / 1000.0)?;
            line.opt_ip("client_ip", r.client_ip);
            line.opt_ip("egress", r.egress);
            match &r.upstream {
                Some(Upstream::Address(SocketAddr::V4(addr))) => {
                    line.ascii("upstream", crate::text::socket_v4(*addr).as_bytes());
                }
                other => line.opt_display("upstream", other.as_ref()),
            }
            line.number("bytes_in", r.bytes_in)?;
            line.number("bytes_out", r.bytes_out)?;
            line.str("prev", prev);
            line.close();
        }
        AuditEvent::Forward(f, _) => {
            let time = rfc3339_millis(f.time);
            let mut line = JsonObject::open(out);
            line.number("seq", seq)?;
            line.str("time", &time);
            line.str("kind", "forward");
            line.str("request_id", &f.request_id);
            line.str("tenant", &f.tenant);
            line.str("route", &f.route);
            line.str("method", f.method.as_str());
            line.str("path", &redact_path(&f.path));
            line.opt_ip("client_ip", f.client_ip);
            line.str("prev", prev);
            line.close();
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
            to_safe_json(&mut *out, &line)?;
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
pub(super) fn line_hash(prev: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    let mut text = [0u8; 64];
    // 64 bytes for a 32-byte digest: encoding cannot fail.
    let _ = hex::encode_to_slice(hasher.finalize(), &mut text);
    String::from_utf8(text.to_vec()).unwrap_or_default()
}

pub(super) fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Keeps query parameter names, drops their values: `/a?x=1&y` → `/a?x&y`. Records are
/// already redacted; this is the writer's own guarantee that no value reaches a line.
pub(super) fn redact_path(path: &str) -> Cow<'_, str> {
    match path.split_once('?') {
        None => Cow::Borrowed(path),
        Some((path, query)) => Cow::Owned(redact_query(path, Some(query))),
    }
}
