//! The access log: one structured line per request, target `portcullis::access`, with the
//! request id, route, method, path *without* its query, status, refusal code, egress address and
//! duration — never a header or query value.

use pingora::Error;

use super::record::RequestRecord;
use crate::outcome::ErrorCode;

/// Writes the access line of a finished request (when `portcullis::access` is enabled at `info`).
pub(crate) fn log(record: &RequestRecord, error: Option<&Error>) {
    tracing::info!(
        target: "portcullis::access",
        request_id = %record.request_id,
        route = record.route.as_deref().unwrap_or("-"),
        method = %record.method,
        path = path_without_query(&record.path),
        status = record.status,
        denial = record.denial,
        egress = ?record.egress,
        duration_ms = record.duration.as_secs_f64() * 1000.0,
        error = error.map(|e| e.etype().as_str()),
        "request"
    );
}

/// The record's path keeps query parameter names; the access line keeps none.
fn path_without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(path, _)| path)
}

/// Writes the access line of a request head refused before it could be routed (`bad_request`,
/// see `conn::GuardedStream`): neither route, method nor path is known, so none is logged.
pub(crate) fn log_malformed(request_id: &str) {
    let code = ErrorCode::BadRequest;
    tracing::info!(
        target: "portcullis::access",
        request_id = %request_id,
        route = "-",
        method = %"-",
        path = "-",
        status = code.status(),
        denial = code.as_str(),
        "request"
    );
}
