//! The line format: field order, the hash of each line over the text as written, and the
//! records the chain is checked with.

use std::borrow::Cow;
use std::io;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    upstream: Option<AsText<'a, Upstream>>,
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

#[derive(Serialize)]
struct ForwardLine<'a> {
    seq: u64,
    time: &'a str,
    kind: &'static str,
    request_id: &'a str,
    tenant: &'a str,
    route: &'a str,
    method: &'a str,
    path: &'a str,
    client_ip: Option<IpAddr>,
    prev: &'a str,
}

/// A field written as its `Display` text (a JSON string), straight into the line.
struct AsText<'a, T>(&'a T);

impl<T: std::fmt::Display> Serialize for AsText<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
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
            let path = redact_path(&r.path);
            let line = RequestLine {
                seq,
                time: &time,
                kind: "request",
                request_id: &r.request_id,
                tenant: r.tenant.as_deref(),
                route: r.route.as_deref(),
                method: r.method.as_str(),
                path: &path,
                status: r.status,
                denial: r.denial,
                duration_ms: r.duration.as_micros() as f64 / 1000.0,
                client_ip: r.client_ip,
                egress: r.egress,
                upstream: r.upstream.as_ref().map(AsText),
                bytes_in: r.bytes_in,
                bytes_out: r.bytes_out,
                prev,
            };
            to_safe_json(&mut *out, &line)?;
        }
        AuditEvent::Forward(f, _) => {
            let time = rfc3339_millis(f.time);
            let path = redact_path(&f.path);
            let line = ForwardLine {
                seq,
                time: &time,
                kind: "forward",
                request_id: &f.request_id,
                tenant: &f.tenant,
                route: &f.route,
                method: f.method.as_str(),
                path: &path,
                client_ip: f.client_ip,
                prev,
            };
            to_safe_json(&mut *out, &line)?;
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
    String::from_utf8_lossy(&text).into_owned()
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
