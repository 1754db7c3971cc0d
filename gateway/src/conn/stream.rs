//! [`GuardedStream`]: a downstream stream with a total deadline on each request head.
//!
//! The stream is in one of four phases:
//!
//! - **head**: a request line and headers are arriving. Reads are bounded by one deadline for
//!   the whole head; past it the connection is closed, with a `408` when the client has sent
//!   part of a head (nothing is answered to a client that never sent a byte).
//! - **request**: the proxy parsed the head ([`GuardedStream::head_received`]); reads (the body)
//!   pass straight through and Pingora's per-read timeout applies.
//! - **idle**: the request is over ([`GuardedStream::request_done`]) and the connection waits
//!   for the next one; Pingora's keep-alive timeout bounds the wait. The first byte that arrives
//!   starts the next head and its deadline.
//! - **open**: no deadline (HTTP/2 once its 24-byte preface has arrived: the h2 codec and
//!   Pingora's HTTP/2 idle timeout take over; and a connection whose head timed out).
//!
//! The phase is an atomic because the proxy reaches the stream through `&dyn IO` (Pingora's
//! `ServerSession::stream()`); it is only ever written by the task that owns the connection.
//!
//! The stream also answers for Pingora when Pingora refuses a head it cannot parse (framing,
//! header syntax, a `Host` that contradicts the request target). Pingora 0.9 writes a bare
//! `400` with no body and no hook to change it (cloudflare/pingora#919), before any of the
//! proxy's code runs. Such a write is recognisable: it is the only response that can go out
//! while a head is still being received (the head phase; every answer of the proxy and the
//! admin API comes after [`GuardedStream::head_received`]). It is replaced by the gateway's JSON
//! `bad_request` error, with a request id, an access line and a count in
//! `portcullis_malformed_requests_total`.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::limits::ConnectionGuard;
use super::ConnStats;
use crate::observe::access;
use crate::observe::metrics::ConnectionMetrics;
use crate::outcome::ErrorCode;

const HEAD: u8 = 0;
const REQUEST: u8 = 1;
const IDLE: u8 = 2;
const OPEN: u8 = 3;

/// The HTTP/2 connection preface a client sends first (RFC 9113 section 3.4).
const H2_PREFACE_LEN: usize = 24;

/// How Pingora's answer to a head it refused starts (`HttpSession::respond_error(400)`).
const PINGORA_BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\n";

/// A downstream stream with a total deadline on each request head. See the module docs.
pub(crate) struct GuardedStream {
    inner: Stream,
    phase: AtomicU8,
    /// When the current head must be complete.
    deadline: Instant,
    head_timeout: Duration,
    /// Whether a byte of the current head has arrived (decides whether a 408 is written).
    head_started: bool,
    /// HTTP/2: preface bytes still expected before the deadline stops applying.
    h2_preface_left: usize,
    /// Created the first time a head read has to wait, then reset for each head.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the connection's first head is still expected (counted in `stats.fresh`).
    fresh: AtomicBool,
    stats: Arc<ConnStats>,
    timeouts: IntCounter,
    malformed: IntCounter,
    /// Our answer to a head Pingora refused, once Pingora has started writing its own.
    rejection: Option<Rejection>,
    /// The limiter's count of this connection, on plain listeners (TLS listeners keep it in
    /// the L4 stream, from before the handshake).
    _guard: Option<ConnectionGuard>,
}

// === impl GuardedStream ===

impl GuardedStream {
    /// Wraps a connection's stream, in the head phase for its first request. The deadline
    /// counts from the TCP accept (so a slow TLS handshake eats into it). Head timeouts and
    /// malformed heads are counted in `metrics`.
    pub(crate) fn new(
        inner: Stream,
        head_timeout: Duration,
        stats: Arc<ConnStats>,
        metrics: &ConnectionMetrics,
        guard: Option<ConnectionGuard>,
    ) -> Self {
        let now = Instant::now();
        let accepted = accepted_at(&inner, now);
        let h2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2));
        stats.wrapped.fetch_add(1, Ordering::AcqRel);
        stats.fresh.fetch_add(1, Ordering::AcqRel);
        Self {
            inner,
            phase: AtomicU8::new(HEAD),
            deadline: accepted + head_timeout,
            head_timeout,
            head_started: false,
            h2_preface_left: if h2 { H2_PREFACE_LEN } else { 0 },
            timer: None,
            fresh: AtomicBool::new(true),
            stats,
            timeouts: metrics.header_timeouts.clone(),
            malformed: metrics.malformed_requests.clone(),
            rejection: None,
            _guard: guard,
        }
    }

    /// The guarded stream under a proxy session, if it has one (HTTP/1; an HTTP/2 stream's
    /// session does not expose the connection).
    pub(crate) fn of(session: &ServerSession) -> Option<&GuardedStream> {
        session.stream()?.as_any().downcast_ref::<GuardedStream>()
    }

    /// The request head has been parsed: reads are the body's from here.
    pub(crate) fn head_received(&self) {
        self.phase.store(REQUEST, Ordering::Relaxed);
        self.settle();
    }

    /// The connection's first request has arrived (or never will): a stop need not wait for
    /// it any more.
    fn settle(&self) {
        if self.fresh.swap(false, Ordering::AcqRel) {
            self.stats.fresh.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The request is over (response written, request body read to its end): the connection
    /// is idle until the next request's first byte.
    pub(crate) fn request_done(&self) {
        self.phase.store(IDLE, Ordering::Relaxed);
    }

    fn start_head(&mut self, now: Instant) {
        self.phase.store(HEAD, Ordering::Relaxed);
        self.deadline = now + self.head_timeout;
        self.head_started = true;
    }

    /// A read in the head phase: data passes through until the deadline, then the connection
    /// is closed.
    fn poll_read_head(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read == 0 {
                    return Poll::Ready(Ok(()));
                }
                self.head_started = true;
                // A client trickling bytes gets every read answered at once: check the clock
                // here too, not only when a read has to wait.
                if Instant::now() >= self.deadline {
                    buf.set_filled(before);
                    return Poll::Ready(self.expire(cx));
                }
                if self.h2_preface_left > 0 {
                    self.h2_preface_left = self.h2_preface_left.saturating_sub(read);
                    if self.h2_preface_left == 0 {
                        // HTTP/2 from here: the codec, its limits and the idle timeout.
                        self.phase.store(OPEN, Ordering::Relaxed);
                        self.settle();
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = tokio::time::Instant::from_std(self.deadline);
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(self.expire(cx))
            }
        }
    }

    /// The head deadline passed: count it, answer 408 if the client has started a head (best
    /// effort: a client that does not read gets no more than a closed socket), and end reads.
    fn expire(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.phase.store(OPEN, Ordering::Relaxed);
        self.settle();
        self.timeouts.inc();
        let h2 = self.h2_preface_left > 0;
        tracing::debug!(started = self.head_started, h2, "request header timeout");
        if !self.head_started {
            // Nothing to answer: end of stream, which Pingora takes as a client that left.
            return Ok(());
        }
        if !h2 {
            let response = error_response(ErrorCode::RequestTimeout, &new_request_id());
            if let Poll::Ready(Ok(n)) = Pin::new(&mut self.inner).poll_write(cx, &response) {
                if n == response.len() {
                    let _ = Pin::new(&mut self.inner).poll_flush(cx);
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "request header timeout",
        ))
    }
}

/// Whether `buf` is the start of Pingora's answer to a head it refused: a `400` written while
/// a head is being received (see the module docs). A malformed head is always read in the head
/// phase: a keep-alive connection's next head starts it with its first byte, and Pingora does
/// not serve pipelined requests (it answers the first and closes the connection when more
/// bytes came with it). Any write in another phase answers a parsed request and is left alone.
fn is_pingora_rejection(phase: u8, buf: &[u8]) -> bool {
    phase == HEAD && buf.starts_with(PINGORA_BAD_REQUEST)
}

/// Our answer to a head Pingora refused, and how much of it has been written.
struct Rejection {
    response: Vec<u8>,
    written: usize,
}

impl GuardedStream {
    /// Writes our `bad_request` answer in place of Pingora's; reports every byte Pingora gives
    /// (`swallowed`) as written, so Pingora finishes its response and closes the connection.
    fn poll_write_rejection(
        &mut self,
        cx: &mut Context<'_>,
        swallowed: usize,
    ) -> Poll<io::Result<usize>> {
        if self.rejection.is_none() {
            self.phase.store(OPEN, Ordering::Relaxed);
            self.settle();
            self.malformed.inc();
            let request_id = new_request_id();
            access::log_malformed(&request_id);
            self.rejection = Some(Rejection {
                response: error_response(ErrorCode::BadRequest, &request_id),
                written: 0,
            });
        }
        if let Some(rejection) = self.rejection.as_mut() {
            while rejection.written < rejection.response.len() {
                let rest = &rejection.response[rejection.written..];
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                rejection.written += n;
            }
        }
        Poll::Ready(Ok(swallowed))
    }
}

/// A request id for an answer the connection layer writes itself (there is no parsed request
/// to take one from): the same form as the proxy's.
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A complete HTTP/1.1 error response the connection layer writes itself (a head timeout, a
/// malformed head): the same JSON error body as every other refusal, then the connection
/// closes.
fn error_response(code: ErrorCode, request_id: &str) -> Vec<u8> {
    let status = code.status();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let body = code.body(None, None, request_id);
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// When the connection was accepted, as an `Instant`: the lowest layer's establishment time
/// (the TCP accept), or `now` when the stream does not say.
fn accepted_at(stream: &Stream, now: Instant) -> Instant {
    let established = stream
        .get_timing_digest()
        .into_iter()
        .flatten()
        .next()
        .map(|t| t.established_ts);
    match established.and_then(|at| SystemTime::now().duration_since(at).ok()) {
        Some(ago) => now.checked_sub(ago).unwrap_or(now),
        None => now,
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.stats.wrapped.fetch_sub(1, Ordering::AcqRel);
        self.settle();
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.phase.load(Ordering::Relaxed) {
            HEAD => this.poll_read_head(cx, buf),
            IDLE => {
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                if buf.filled().len() > before {
                    // The next request's first bytes: its head deadline starts now.
                    this.start_head(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            _ => Pin::new(&mut this.inner).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rejection.is_some() || is_pingora_rejection(this.phase.load(Ordering::Relaxed), buf)
        {
            return this.poll_write_rejection(cx, buf.len());
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if this.rejection.is_some()
            || is_pingora_rejection(this.phase.load(Ordering::Relaxed), first)
        {
            let total = bufs.iter().map(|b| b.len()).sum();
            return this.poll_write_rejection(cx, total);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("phase", &self.phase.load(Ordering::Relaxed))
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
