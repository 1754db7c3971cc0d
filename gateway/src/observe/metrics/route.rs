//! Per-route metrics: the request counters, duration histograms, refusal and upstream-error
//! counters and the last-minute window of one (tenant, route), updated on the request path with
//! relaxed atomics only — no lock, no hashing, no label string — and turned into Prometheus
//! families by a custom collector at scrape time.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::Method;
use portcullis_api::WindowStats;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use crate::outcome::{ErrorCode, TokenReason};

/// The `method` label values; anything not listed is `OTHER`.
pub(super) const METHODS: [&str; N_METHODS] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];
const N_METHODS: usize = 10;

/// Status codes exported exactly, sorted (for `binary_search`); [`CODE_LABELS`] spells them.
pub(super) const EXACT_CODES: [u16; N_EXACT_CODES] = [
    200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 410, 413,
    415, 422, 429, 431, 499, 500, 501, 502, 503, 504,
];
const N_EXACT_CODES: usize = 29;

/// The `code` label values: the exact codes, then one class per hundred, then `other` for
/// anything outside 100..=599, then `aborted` for responses the upstream cut after they had
/// started (the caller saw a status, then a truncated body).
pub(super) const CODE_LABELS: [&str; N_CODES] = [
    "200", "201", "202", "204", "206", "301", "302", "304", "307", "308", "400", "401", "403",
    "404", "405", "408", "409", "410", "413", "415", "422", "429", "431", "499", "500", "501",
    "502", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx", "other", "aborted",
];
const N_CODES: usize = N_EXACT_CODES + 7;
/// The index of `aborted` in [`CODE_LABELS`].
const ABORTED: usize = N_CODES - 1;

/// Upper bounds of the exported duration histogram, in seconds and (for the hot path) nanoseconds.
pub(super) const DURATION_BOUNDS_SECONDS: [f64; N_DURATION_BOUNDS] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
pub(super) const DURATION_BOUNDS_NANOS: [u64; N_DURATION_BOUNDS] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];
const N_DURATION_BOUNDS: usize = 15;

/// The live window: `SLOTS` slots of `SLOT_SECONDS` each.
const SLOT_SECONDS: u64 = 10;
const SLOTS: usize = 6;

/// The window's latency histogram: bucket `i` holds durations up to `100 µs · 2^i`, so 24
/// buckets span 100 µs to ~14 min with a factor of two between bounds (the last bucket also
/// takes everything longer).
pub(super) const LATENCY_BUCKETS: usize = 24;
const LATENCY_BASE_NANOS: u64 = 100_000;

/// A slot's epoch while its first writer of a new period zeroes it.
const RESETTING: u64 = u64::MAX;

const N_REASONS: usize = ErrorCode::ALL.len();
const N_KINDS: usize = UpstreamErrorKind::ALL.len();
const N_TOKEN_REASONS: usize = TokenReason::ALL.len();
/// The `result` label values of the exchange and JWKS fetch counters, in index order.
const RESULTS: [&str; 2] = ["success", "error"];

const REQUESTS_TOTAL: &str = "portcullis_requests_total";
const REQUEST_DURATION: &str = "portcullis_request_duration_seconds";
const DENIED_TOTAL: &str = "portcullis_denied_total";
const UPSTREAM_ERRORS_TOTAL: &str = "portcullis_upstream_errors_total";
const JWT_FAILURES_TOTAL: &str = "portcullis_jwt_validation_failures_total";
const TOKEN_EXCHANGES_TOTAL: &str = "portcullis_token_exchanges_total";
const JWKS_FETCHES_TOTAL: &str = "portcullis_jwks_fetches_total";

/// The counters of one (tenant, route), pre-resolved so the request path only touches atomics.
///
/// Obtained from [`Metrics::route`] (or [`Metrics::unrouted`]) when a config snapshot is built and
/// kept next to the compiled route.
pub(crate) struct RouteMetrics {
    tenant: Box<str>,
    route: Box<str>,
    base: Instant,
    /// One lazily allocated cell per (method, code), indexed by [`method_index`] and
    /// [`code_index`].
    pub(super) cells: [[OnceLock<Box<Cell>>; N_CODES]; N_METHODS],
    /// Indexed by `ErrorCode as usize` (the order of [`ErrorCode::ALL`]).
    denied: [AtomicU64; N_REASONS],
    /// Indexed by `UpstreamErrorKind as usize` (the order of [`UpstreamErrorKind::ALL`]).
    upstream_errors: [AtomicU64; N_KINDS],
    /// Indexed by `TokenReason as usize` (the order of [`TokenReason::ALL`]).
    jwt_failures: [AtomicU64; N_TOKEN_REASONS],
    /// Token exchanges, by [`RESULTS`] index.
    exchanges: [AtomicU64; 2],
    /// JWKS fetches, by [`RESULTS`] index.
    jwks_fetches: [AtomicU64; 2],
    slots: [Slot; SLOTS],
}

/// What the caller got, for the `code` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A complete response with this status (or a refusal by the gateway).
    Status(u16),
    /// A response the upstream cut after its head had been sent.
    Aborted,
}

/// Why a request to an upstream failed, the `kind` label of `portcullis_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum UpstreamErrorKind {
    /// The target refused the TCP connection.
    ConnectRefused,
    /// The TCP connection was not established in time.
    ConnectTimeout,
    /// The TLS handshake failed (certificate, protocol, ALPN).
    Tls,
    /// The upstream did not send the response in time.
    ReadTimeout,
    /// The request could not be written in time.
    WriteTimeout,
    /// The connection was reset or closed mid-exchange.
    ConnectionReset,
    /// Every target of the route is marked unhealthy.
    NoHealthyTarget,
    /// The resolved address is in a range the route may not reach.
    DestinationDenied,
    /// Anything else.
    Other,
}

/// One (method, code) series: a histogram whose count is also `portcullis_requests_total`.
pub(super) struct Cell {
    /// Non-cumulative counts per bound of [`DURATION_BOUNDS_NANOS`], plus one for `+Inf`.
    buckets: [AtomicU64; N_DURATION_BOUNDS + 1],
    sum_nanos: AtomicU64,
}

/// Ten seconds of the live window.
struct Slot {
    /// `period + 1` of the ten-second period the counts belong to; 0 when never used,
    /// [`RESETTING`] while being claimed for a new period.
    epoch: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
}

/// Exports the per-route state at scrape time.
pub(super) struct RouteCollector {
    descs: Vec<Desc>,
    unrouted: Arc<RouteMetrics>,
    published: Arc<ArcSwap<Vec<Arc<RouteMetrics>>>>,
}

// === impl RouteCollector ===

impl RouteCollector {
    /// A collector of `unrouted` and whatever is published in `published`.
    pub(super) fn new(
        unrouted: Arc<RouteMetrics>,
        published: Arc<ArcSwap<Vec<Arc<RouteMetrics>>>>,
    ) -> Self {
        Self {
            descs: vec![
                desc(
                    REQUESTS_TOTAL,
                    "Requests finished, by route, method and status code.",
                    &["tenant", "route", "method", "code"],
                ),
                desc(
                    REQUEST_DURATION,
                    "Time from the request's arrival to the end of its response, in seconds.",
                    &["tenant", "route", "method", "code"],
                ),
                desc(
                    DENIED_TOTAL,
                    "Requests refused by the gateway, by route and error code.",
                    &["tenant", "route", "reason"],
                ),
                desc(
                    UPSTREAM_ERRORS_TOTAL,
                    "Failed exchanges with an upstream, by route and kind of failure.",
                    &["tenant", "route", "kind"],
                ),
                desc(
                    JWT_FAILURES_TOTAL,
                    "Passed-through tokens refused, by route and reason.",
                    &["tenant", "route", "reason"],
                ),
                desc(
                    TOKEN_EXCHANGES_TOTAL,
                    "Token exchanges performed for exchange routes, by result.",
                    &["tenant", "route", "result"],
                ),
                desc(
                    JWKS_FETCHES_TOTAL,
                    "Fetches of passthrough routes' key sets (JWKS), by result.",
                    &["tenant", "route", "result"],
                ),
            ],
            unrouted,
            published,
        }
    }
}

// === impl RouteMetrics ===

impl RouteMetrics {
    pub(super) fn new(tenant: &str, route: &str, base: Instant) -> Self {
        Self {
            tenant: tenant.into(),
            route: route.into(),
            base,
            cells: [const { [const { OnceLock::new() }; N_CODES] }; N_METHODS],
            denied: [const { AtomicU64::new(0) }; N_REASONS],
            upstream_errors: [const { AtomicU64::new(0) }; N_KINDS],
            jwt_failures: [const { AtomicU64::new(0) }; N_TOKEN_REASONS],
            exchanges: [const { AtomicU64::new(0) }; 2],
            jwks_fetches: [const { AtomicU64::new(0) }; 2],
            slots: [const { Slot::new() }; SLOTS],
        }
    }

    /// The tenant's name (`""` for unrouted requests).
    pub(crate) fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The route's name (`""` for unrouted requests).
    pub(crate) fn route(&self) -> &str {
        &self.route
    }

    /// Records one finished request; as [`RouteMetrics::observe_at`] at `Instant::now()`.
    #[cfg(test)]
    pub(crate) fn observe(&self, method: &Method, answer: Answer, duration: Duration) {
        self.observe_at(method, answer, duration, Instant::now());
    }

    /// Records one finished request that ended at `now`.
    ///
    /// Lock-free: a handful of relaxed atomic additions. The only allocation is the first use of
    /// a (method, code) pair on this route.
    ///
    /// Labels are folded to keep series bounded: `method` is one of GET, HEAD, POST, PUT,
    /// DELETE, PATCH, OPTIONS, CONNECT, TRACE, or else `OTHER`; `code` is the exact status for
    /// 200 201 202 204 206 301 302 304 307 308 400 401 403 404 405 408 409 410 413 415 422 429
    /// 431 499 500 501 502 503 504, otherwise its class `1xx`..`5xx` (so 418 is `4xx`), and
    /// `other` outside 100..=599; a response the upstream cut after it had started is
    /// `aborted`. Aborted responses and statuses of 500 or more are the window's errors.
    pub(crate) fn observe_at(
        &self,
        method: &Method,
        answer: Answer,
        duration: Duration,
        now: Instant,
    ) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let (code, failed) = match answer {
            Answer::Status(status) => (code_index(status), status >= 500),
            Answer::Aborted => (ABORTED, true),
        };
        self.cells[method_index(method)][code]
            .get_or_init(|| Box::new(Cell::new()))
            .record(nanos);
        self.record_window(failed, nanos, now);
    }

    /// Counts one request refused with `reason` in `portcullis_denied_total`.
    pub(crate) fn denied(&self, reason: ErrorCode) {
        if let Some(counter) = self.denied.get(reason as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one failed upstream exchange in `portcullis_upstream_errors_total`.
    pub(crate) fn upstream_error(&self, kind: UpstreamErrorKind) {
        if let Some(counter) = self.upstream_errors.get(kind as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one passed-through token refused for `reason`.
    pub(crate) fn jwt_failure(&self, reason: TokenReason) {
        if let Some(counter) = self.jwt_failures.get(reason as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one token exchange.
    pub(crate) fn exchanged(&self, ok: bool) {
        self.exchanges[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one JWKS fetch.
    pub(crate) fn jwks_fetched(&self, ok: bool) {
        self.jwks_fetches[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// Statistics over the last minute, for the admin API and console.
    ///
    /// The window is the six ten-second slots ending with the one holding `now`, so it covers
    /// between 50 and 60 seconds (less right after start); the rate divides by that span, at
    /// least one second. Percentiles are interpolated within the latency bucket that holds them,
    /// so they are exact to a factor of two at worst. Counts read while another thread opens a
    /// new slot may be off by the few requests in flight at that instant.
    pub(crate) fn window(&self, now: Instant) -> WindowStats {
        let period = self.period(now);
        let oldest = period.saturating_sub(SLOTS as u64 - 1);
        let mut requests = 0;
        let mut errors = 0;
        let mut latency = [0u64; LATENCY_BUCKETS];
        for slot in &self.slots {
            let epoch = slot.epoch.load(Ordering::Acquire);
            // `epoch` is period + 1; zero means never used, RESETTING (far above) being reset.
            if epoch == 0 || epoch - 1 < oldest || epoch - 1 > period {
                continue;
            }
            requests += slot.requests.load(Ordering::Relaxed);
            errors += slot.errors.load(Ordering::Relaxed);
            for (sum, bucket) in latency.iter_mut().zip(&slot.latency) {
                *sum += bucket.load(Ordering::Relaxed);
            }
        }
        let elapsed = now.saturating_duration_since(self.base).as_secs_f64();
        let span = (elapsed - (oldest * SLOT_SECONDS) as f64).max(1.0);
        WindowStats {
            requests,
            requests_per_second: requests as f64 / span,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_seconds: quantile(&latency, 0.5),
            p99_seconds: quantile(&latency, 0.99),
        }
    }

    /// The ten-second period `now` falls in, counted from the process's time base.
    fn period(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_secs() / SLOT_SECONDS
    }

    /// Adds one request to the live window.
    ///
    /// The first writer of a new period claims its slot: a compare-and-swap moves the epoch to
    /// [`RESETTING`], the counts are zeroed, then the epoch becomes the new period. Writers that
    /// meet a slot being reset, or lose the race to claim it, leave their request out of the
    /// window; a writer still finishing the previous use of a slot can land one request in the
    /// new period. Either is one request at a slot boundary, which a live view tolerates; the
    /// exported counters are not affected.
    fn record_window(&self, failed: bool, nanos: u64, now: Instant) {
        let period = self.period(now);
        let tag = period + 1;
        let slot = &self.slots[(period % SLOTS as u64) as usize];
        let epoch = slot.epoch.load(Ordering::Acquire);
        if epoch != tag {
            // RESETTING is above every tag, and a later tag means this observation is too old
            // for the slot: either way it stays out of the window.
            if epoch > tag {
                return;
            }
            let claimed =
                slot.epoch
                    .compare_exchange(epoch, RESETTING, Ordering::AcqRel, Ordering::Acquire);
            if claimed.is_err() {
                return;
            }
            slot.reset();
            slot.epoch.store(tag, Ordering::Release);
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency[latency_index(nanos)].fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("tenant", &self.tenant)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

// === impl UpstreamErrorKind ===

impl UpstreamErrorKind {
    /// Every kind, in declaration order.
    pub(crate) const ALL: [UpstreamErrorKind; 9] = [
        UpstreamErrorKind::ConnectRefused,
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::Tls,
        UpstreamErrorKind::ReadTimeout,
        UpstreamErrorKind::WriteTimeout,
        UpstreamErrorKind::ConnectionReset,
        UpstreamErrorKind::NoHealthyTarget,
        UpstreamErrorKind::DestinationDenied,
        UpstreamErrorKind::Other,
    ];

    /// The kind as it appears in the `kind` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectRefused => "connect_refused",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::ReadTimeout => "read_timeout",
            UpstreamErrorKind::WriteTimeout => "write_timeout",
            UpstreamErrorKind::ConnectionReset => "connection_reset",
            UpstreamErrorKind::NoHealthyTarget => "no_healthy_target",
            UpstreamErrorKind::DestinationDenied => "destination_denied",
            UpstreamErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for UpstreamErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Cell ===

impl Cell {
    fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; N_DURATION_BOUNDS + 1],
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn record(&self, nanos: u64) {
        // The first bound at or above the value (`le` is inclusive); past the end is `+Inf`.
        let bucket = DURATION_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The count and the exported histogram, whose count is the sum of the buckets read so that
    /// `_count` always equals the `+Inf` bucket.
    pub(super) fn snapshot(&self) -> (u64, proto::Histogram) {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(N_DURATION_BOUNDS);
        for (counter, bound) in self.buckets.iter().zip(DURATION_BOUNDS_SECONDS) {
            cumulative += counter.load(Ordering::Relaxed);
            let mut bucket = proto::Bucket::default();
            bucket.set_upper_bound(bound);
            bucket.set_cumulative_count(cumulative);
            buckets.push(bucket);
        }
        cumulative += self.buckets[N_DURATION_BOUNDS].load(Ordering::Relaxed);
        let mut histogram = proto::Histogram::default();
        histogram.set_bucket(buckets);
        // The encoder adds the `+Inf` bucket from the sample count.
        histogram.set_sample_count(cumulative);
        histogram.set_sample_sum(self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        (cumulative, histogram)
    }
}

// === impl Slot ===

impl Slot {
    const fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: [const { AtomicU64::new(0) }; LATENCY_BUCKETS],
        }
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        for bucket in &self.latency {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}

impl Collector for RouteCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    /// Exports every (method, code) cell used so far, and the denial and upstream-error
    /// counters that are not zero (a series appears with its first event).
    fn collect(&self) -> Vec<MetricFamily> {
        let published = self.published.load();
        let mut requests = family(&self.descs[0], MetricType::COUNTER);
        let mut durations = family(&self.descs[1], MetricType::HISTOGRAM);
        let mut denied = family(&self.descs[2], MetricType::COUNTER);
        let mut upstream = family(&self.descs[3], MetricType::COUNTER);
        let mut jwt = family(&self.descs[4], MetricType::COUNTER);
        let mut exchanges = family(&self.descs[5], MetricType::COUNTER);
        let mut jwks = family(&self.descs[6], MetricType::COUNTER);
        for route in std::iter::once(&self.unrouted).chain(published.iter()) {
            let (tenant, name) = (route.tenant(), route.route());
            for (row, method) in route.cells.iter().zip(METHODS) {
                for (cell, code) in row.iter().zip(CODE_LABELS) {
                    let Some(cell) = cell.get() else { continue };
                    let labels = [
                        ("tenant", tenant),
                        ("route", name),
                        ("method", method),
                        ("code", code),
                    ];
                    let (count, histogram) = cell.snapshot();
                    let mut metric = proto::Metric::from_label(label_pairs(&labels));
                    metric.set_counter(counter(count));
                    requests.mut_metric().push(metric);
                    let mut metric = proto::Metric::from_label(label_pairs(&labels));
                    metric.set_histogram(histogram);
                    durations.mut_metric().push(metric);
                }
            }
            for (value, reason) in route.denied.iter().zip(ErrorCode::ALL) {
                let value = value.load(Ordering::Relaxed);
                if value > 0 {
                    let labels = [
                        ("tenant", tenant),
                        ("route", name),
                        ("reason", reason.as_str()),
                    ];
                    let mut metric = proto::Metric::from_label(label_pairs(&labels));
                    metric.set_counter(counter(value));
                    denied.mut_metric().push(metric);
                }
            }
            for (value, kind) in route.upstream_errors.iter().zip(UpstreamErrorKind::ALL) {
                let value = value.load(Ordering::Relaxed);
                if value > 0 {
                    let labels = [("tenant", tenant), ("route", name), ("kind", kind.as_str())];
                    let mut metric = proto::Metric::from_label(label_pairs(&labels));
                    metric.set_counter(counter(value));
                    upstream.mut_metric().push(metric);
                }
            }
            for (value, reason) in route.jwt_failures.iter().zip(TokenReason::ALL) {
                push_counter(&mut jwt, ("reason", reason.as_str()), tenant, name, value);
            }
            for (value, result) in route.exchanges.iter().zip(RESULTS) {
                push_counter(&mut exchanges, ("result", result), tenant, name, value);
            }
            for (value, result) in route.jwks_fetches.iter().zip(RESULTS) {
                push_counter(&mut jwks, ("result", result), tenant, name, value);
            }
        }
        vec![requests, durations, denied, upstream, jwt, exchanges, jwks]
    }
}

/// Adds a `{tenant, route, <label>}` counter to `family` unless it is zero (a series appears
/// with its first event).
fn push_counter(
    family: &mut MetricFamily,
    label: (&str, &str),
    tenant: &str,
    route: &str,
    value: &AtomicU64,
) {
    let value = value.load(Ordering::Relaxed);
    if value > 0 {
        let labels = [("tenant", tenant), ("route", route), label];
        let mut metric = proto::Metric::from_label(label_pairs(&labels));
        metric.set_counter(counter(value));
        family.mut_metric().push(metric);
    }
}

/// The `METHODS` index of a request method.
pub(super) fn method_index(method: &Method) -> usize {
    match method.as_str() {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "PATCH" => 5,
        "OPTIONS" => 6,
        "CONNECT" => 7,
        "TRACE" => 8,
        _ => 9,
    }
}

/// The `CODE_LABELS` index of a status: exact when listed, else its class, else `other`.
pub(super) fn code_index(status: u16) -> usize {
    match EXACT_CODES.binary_search(&status) {
        Ok(exact) => exact,
        Err(_) => match status {
            100..=599 => N_EXACT_CODES + usize::from(status / 100 - 1),
            _ => N_EXACT_CODES + 5,
        },
    }
}

/// The live-window latency bucket of a duration: the smallest `i` with
/// `nanos <= 100 µs · 2^i`, capped at the last bucket.
pub(super) fn latency_index(nanos: u64) -> usize {
    let units = nanos.saturating_sub(1) / LATENCY_BASE_NANOS;
    ((u64::BITS - units.leading_zeros()) as usize).min(LATENCY_BUCKETS - 1)
}

/// The upper bound of live-window latency bucket `i`, in seconds.
fn latency_bound_seconds(i: usize) -> f64 {
    (LATENCY_BASE_NANOS << i) as f64 / 1e9
}

/// The `q` quantile of a latency histogram, interpolated linearly within its bucket (as
/// Prometheus' `histogram_quantile` does); `None` when the histogram is empty.
pub(super) fn quantile(latency: &[u64; LATENCY_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0;
    for (i, &count) in latency.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (below + count) as f64 >= rank {
            let lower = if i == 0 {
                0.0
            } else {
                latency_bound_seconds(i - 1)
            };
            let upper = latency_bound_seconds(i);
            let within = (rank - below as f64) / count as f64;
            return Some(lower + (upper - lower) * within);
        }
        below += count;
    }
    None
}

/// A descriptor of one per-route family.
fn desc(name: &str, help: &str, labels: &[&str]) -> Desc {
    Desc::new(
        name.to_owned(),
        help.to_owned(),
        labels.iter().map(|label| (*label).to_owned()).collect(),
        HashMap::new(),
    )
    .expect("family names and labels are valid constants")
}

/// An empty family described by `desc`.
fn family(desc: &Desc, kind: MetricType) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family
}

fn label_pairs(labels: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut pair = proto::LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}

fn counter(value: u64) -> proto::Counter {
    let mut counter = proto::Counter::default();
    counter.set_value(value as f64);
    counter
}
