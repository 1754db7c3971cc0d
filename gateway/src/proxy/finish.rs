//! The end of a request: what it ended as (status, refusal, or a response the upstream cut),
//! recorded once and handed to metrics, secret usage, the audit log, the traffic ring and the
//! access log. A request that never reaches `logging` (cut at the end of a graceful stop's
//! grace period, when Pingora drops its task) is recorded from its context's `Drop` instead.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pingora::proxy::Session;
use pingora::{Error, ErrorSource};

use super::ctx::RequestCtx;
use super::error::upstream_error_kind;
use crate::clock::unix_ms;
use crate::observe::audit::AuditEvent;
use crate::observe::metrics::Answer;
use crate::observe::record::{redact_query, RequestRecord, Upstream};
use crate::observe::{access, Recorders};
use crate::outcome::ErrorCode;

/// The `denial` of a response the upstream (or the total timeout) cut after its head had gone
/// out: the caller saw a status, then a truncated body.
pub(super) const UPSTREAM_ABORTED: &str = "upstream_aborted";

/// The `denial` of a request still in flight when a graceful stop's grace period ended.
pub(super) const SHUTDOWN_CUT: &str = "shutdown_cut";

/// How a request ended, for [`emit`].
struct Ending<'a> {
    status: u16,
    aborted: bool,
    /// Overrides the denial code (a cut request).
    cut: Option<&'static str>,
    error: Option<&'a Error>,
}

/// Records the request's outcome everywhere.
pub(super) fn record(
    recorders: &Recorders,
    session: &Session,
    e: Option<&Error>,
    ctx: &mut RequestCtx,
) {
    if ctx.path.is_empty() {
        let req = session.req_header();
        ctx.method = req.method.clone();
        ctx.path = redact_query(req.uri.path(), req.uri.query());
    }
    let status = if ctx.status != 0 {
        ctx.status
    } else {
        session.response_written().map_or(0, |r| r.status.as_u16())
    };
    // An error after the response head went out, not caused by the caller leaving, cut the body.
    let aborted = ctx.denial.is_none()
        && status != 0
        && e.is_some_and(|e| e.esource() != &ErrorSource::Downstream);
    emit(
        recorders,
        ctx,
        Ending {
            status,
            aborted,
            cut: None,
            error: e,
        },
    );
}

/// Records a request whose task was dropped before `logging`: `shutdown_cut` while the process
/// is stopping, `internal` otherwise (a panic).
pub(super) fn record_cut(ctx: &mut RequestCtx) {
    let recorders = Arc::clone(&ctx.recorders);
    let cut = if recorders.stopping.load(Ordering::Acquire) {
        SHUTDOWN_CUT
    } else {
        ErrorCode::Internal.as_str()
    };
    tracing::warn!(request_id = %ctx.request_id, cut, "request cut before it ended");
    let status = ctx.status;
    emit(
        &recorders,
        ctx,
        Ending {
            status,
            aborted: true,
            cut: Some(cut),
            error: None,
        },
    );
}

fn emit(recorders: &Recorders, ctx: &mut RequestCtx, ending: Ending<'_>) {
    ctx.recorded = true;
    let Ending {
        status,
        aborted,
        cut,
        error: e,
    } = ending;
    let rt = Arc::clone(&ctx.runtime);
    let state = ctx.route.map(|i| &rt.routes[i]);
    // One clock read for the duration, the metrics window and the secrets' last use.
    let ended = Instant::now();
    let duration = ended.saturating_duration_since(ctx.started);

    if rt.config.metrics_enabled {
        let metrics = state.map_or(recorders.metrics.unrouted(), |s| &s.metrics);
        let answer = if aborted {
            Answer::Aborted
        } else {
            Answer::Status(status)
        };
        metrics.observe_at(&ctx.method, answer, duration, ended);
        if let Some(code) = ctx.denial {
            metrics.denied(code);
        }
        if let Some(kind) = upstream_error_kind(e, ctx) {
            metrics.upstream_error(kind);
        }
    }
    if let (Some(state), Some(upstream_status)) = (state, ctx.upstream_status) {
        let ended_ms = unix_ms(ctx.arrived + duration);
        for usage in &state.secret_usage {
            usage.used_at(ended_ms);
            if upstream_status == 401 || upstream_status == 403 {
                usage.auth_failed(upstream_status);
            }
        }
    }

    let denial = match (cut, ctx.denial) {
        (Some(cut), _) => Some(cut),
        (None, Some(code)) => Some(code.as_str()),
        (None, None) if aborted => Some(UPSTREAM_ABORTED),
        (None, None) => None,
    };
    let record = Arc::new(RequestRecord {
        time: ctx.arrived,
        request_id: std::mem::take(&mut ctx.request_id),
        tenant: state.map(|s| Arc::clone(&s.tenant)),
        route: state.map(|s| Arc::clone(&s.name)),
        method: ctx.method.clone(),
        path: std::mem::take(&mut ctx.path),
        status,
        denial,
        duration,
        client_ip: ctx.client_ip,
        egress: ctx.egress,
        upstream: match &ctx.tunnel_agent {
            Some(agent) => Some(Upstream::Tunnel {
                tunnel: agent.info().tunnel.clone(),
                agent: agent.info().agent_id.clone(),
            }),
            None => ctx.upstream_addr.map(Upstream::Address),
        },
        bytes_in: ctx.body_bytes,
        bytes_out: ctx.bytes_out,
    });
    access::log(&record, e);
    if let Some(slot) = ctx.audit_slot.take() {
        recorders
            .audit
            .record(slot, AuditEvent::Request(Arc::clone(&record)));
    }
    recorders.traffic.push(record);
}
