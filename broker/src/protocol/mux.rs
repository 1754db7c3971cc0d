//! The multiplexed connection after the handshake: yamux, the control stream with its
//! heartbeats, and [`TunnelStream`].
//!
//! # Why yamux and not HTTP/2 with reversed roles
//!
//! The gateway must *open* streams toward an agent that *dialled* it. HTTP/2 only lets the
//! client open streams, so the agent would have to be the h2 server on a connection it
//! initiated (reversed roles), and every tunnelled request would be an h2 request wrapping an
//! HTTP/1.1 request (or a CONNECT-style extended stream) — two HTTP layers, h2's header
//! compression state and stream-level semantics to translate. yamux is a plain byte-stream
//! multiplexer: either side may open streams, each stream is an ordered byte pipe with its own
//! flow-control window (256 KiB, auto-tuned), and a stream is exactly what Pingora's
//! `custom_l4` connector wants — something that reads and writes like a TCP socket, over which
//! Pingora speaks its own HTTP/1.1 with its own timeouts and pooling. Raw TCP streams need
//! nothing extra. Per-stream windows give the bounded memory the 1 GiB tests check.
//!
//! # Who opens streams
//!
//! Only the gateway. The gateway is yamux `Server` (even stream ids), the agent `Client` (odd
//! ids); the agent never opens a stream, and the gateway resets every stream an agent opens
//! (counted as `rejected_streams`).
//!
//! # Heartbeats and dead peers
//!
//! Every byte read from the transport refreshes the connection's liveness clock. Each side
//! sends a [`Frame::Ping`] on the control stream every heartbeat interval, so an idle but
//! healthy connection still carries bytes, and drops the connection when nothing at all has
//! arrived for the heartbeat timeout. A busy connection is alive by definition, even if a ping
//! is queued behind data. When a connection ends, for whatever reason, yamux wakes every open
//! stream and [`TunnelStream`] turns their end-of-file into an error that names the reason, so
//! a half-received response fails at once instead of hanging or looking complete.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_io::AsyncRead as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use tokio_util::sync::CancellationToken;

use super::frame::{read_frame, write_frame, CloseReason, Frame, GoAway, Ping};
use super::transport::BoxIo;

/// The most a [`TunnelStream`] read asks yamux for: a few of yamux's 16 KiB data frames.
const MAX_READ: usize = 64 * 1024;

thread_local! {
    /// Initialised bytes for a [`TunnelStream`] read whose caller's buffer is not initialised
    /// (see its `poll_read`): zeroed once per thread, not once per read.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_READ].into_boxed_slice());
}

/// The most streams one connection may have open at once.
pub(crate) const MAX_STREAMS: usize = 256;

/// A request to open a stream, answered by the driver.
pub(crate) type OpenRequest = oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>;

/// Heartbeat settings of one side of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// What both sides share about one live connection: counters, liveness and how it ended.
#[derive(Debug)]
pub(crate) struct Shared {
    /// "agent" or "gateway": who is at the other end, for error messages.
    peer: &'static str,
    started: Instant,
    /// Milliseconds since `started` when the last transport byte arrived.
    last_rx_ms: AtomicU64,
    /// Unix milliseconds of the last ping received; 0 before the first.
    pub(crate) last_heartbeat_unix_ms: AtomicU64,
    pub(crate) open_streams: AtomicU64,
    pub(crate) streams_total: AtomicU64,
    pub(crate) rejected_streams: AtomicU64,
    /// Stream payload bytes read from the peer.
    pub(crate) bytes_in: AtomicU64,
    /// Stream payload bytes written to the peer.
    pub(crate) bytes_out: AtomicU64,
    /// Graceful close requested: a go-away is being sent; the driver stops soon after.
    closing: CancellationToken,
    /// Stop now.
    cancel: CancellationToken,
    /// The driver has stopped and every stream has been failed.
    done: CancellationToken,
    /// The transport under yamux has reported its end (end-of-file or an error). Set by the
    /// transport reader *before* yamux sees that end and wakes the streams, so a stream that
    /// finds itself closed can tell a dead connection from a reset stream without waiting for
    /// the driver to record it.
    transport_ended: AtomicBool,
    /// How many times the driver has been polled: [`LivenessIo`] defers a flush to the next.
    driver_polls: AtomicU64,
    reason: OnceLock<(CloseReason, String)>,
    goaway_tx: mpsc::Sender<GoAway>,
}

/// The most bytes of yamux frames held before they are written to the transport.
const WRITE_BUFFER: usize = 32 * 1024;

/// Counts transport reads for the liveness clock, and coalesces yamux's writes.
///
/// yamux writes each frame as two writes (its 12-byte header, then the body) and flushes after
/// each frame; under TLS each write was its own record and its own `writev(2)`, five per
/// tunnelled request on the gateway. So writes are held, and a flush only marks them due: the
/// first flush in a poll of the driver wakes the driver again, and the first flush of that next
/// poll writes everything the previous poll produced, as one record and one system call. A
/// full buffer and a shutdown write at once.
struct LivenessIo {
    inner: BoxIo,
    shared: Arc<Shared>,
    /// Frames written but not yet handed to the transport.
    pending: Vec<u8>,
    /// The driver poll (see [`Shared::driver_polls`]) in which `pending` was last marked due.
    due_in_poll: Option<u64>,
}

/// One multiplexed stream: a byte pipe to the other side.
///
/// `AsyncRead + AsyncWrite + Unpin + Send + Sync + Debug`, so the gateway can wrap it in
/// Pingora's `VirtualSocketStream`. When its connection ends, pending and later reads and
/// writes fail with an [`io::Error`] of kind `ConnectionAborted` naming why (heartbeat timeout,
/// go-away, connection lost); a stream reset by the peer fails with `ConnectionReset`. A clean
/// end (the peer finished writing) is an ordinary end-of-file.
pub struct TunnelStream {
    inner: Compat<yamux::Stream>,
    shared: Arc<Shared>,
    write_shut: bool,
    /// Whether this stream counts in the open-stream gauge (the control stream does not).
    counted: bool,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(peer: &'static str) -> (Arc<Shared>, mpsc::Receiver<GoAway>) {
        let (goaway_tx, goaway_rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            peer,
            started: Instant::now(),
            last_rx_ms: AtomicU64::new(0),
            last_heartbeat_unix_ms: AtomicU64::new(0),
            open_streams: AtomicU64::new(0),
            streams_total: AtomicU64::new(0),
            rejected_streams: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            closing: CancellationToken::new(),
            cancel: CancellationToken::new(),
            done: CancellationToken::new(),
            transport_ended: AtomicBool::new(false),
            driver_polls: AtomicU64::new(0),
            reason: OnceLock::new(),
            goaway_tx,
        });
        (shared, goaway_rx)
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_rx_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.started.elapsed();
        now.saturating_sub(Duration::from_millis(
            self.last_rx_ms.load(Ordering::Relaxed),
        ))
    }

    /// Records why the connection ends; the first reason wins.
    pub(crate) fn set_reason(&self, reason: CloseReason, message: impl Into<String>) {
        let _ = self.reason.set((reason, message.into()));
    }

    /// Why the connection ended, once it has.
    pub(crate) fn reason(&self) -> Option<&(CloseReason, String)> {
        self.reason.get()
    }

    /// Stops the connection now, recording `reason` unless one is already recorded.
    pub(crate) fn abort(&self, reason: CloseReason, message: impl Into<String>) {
        self.set_reason(reason, message);
        self.cancel.cancel();
    }

    /// Sends a go-away with `reason` on the control stream, then stops the connection (at the
    /// latest one second later, if the go-away cannot be sent).
    pub(crate) fn close(&self, reason: CloseReason, message: &str) {
        self.set_reason(reason, message);
        let _ = self.goaway_tx.try_send(GoAway {
            reason,
            message: message.to_owned(),
        });
        self.closing.cancel();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.is_cancelled()
    }

    /// Resolves once the connection has stopped and its streams have been failed.
    pub(crate) async fn closed(&self) {
        self.done.cancelled().await;
    }

    fn ended(&self) -> bool {
        self.transport_ended.load(Ordering::Acquire)
            || self.cancel.is_cancelled()
            || self.done.is_cancelled()
    }

    fn lost_error(&self) -> io::Error {
        let message = match self.reason.get() {
            Some((reason, message)) => {
                format!(
                    "tunnel connection to the {} closed: {reason}: {message}",
                    self.peer
                )
            }
            None => format!("tunnel connection to the {} lost", self.peer),
        };
        io::Error::new(io::ErrorKind::ConnectionAborted, message)
    }
}

/// Unix milliseconds now.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// yamux settings: at most [`MAX_STREAMS`] streams, and a connection-wide receive window
/// just large enough for each of them to have the default 256 KiB window.
fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    // Streams first: yamux asserts window >= streams * 256 KiB after each setter.
    config.set_max_num_streams(MAX_STREAMS);
    config.set_max_connection_receive_window(Some(MAX_STREAMS * yamux::DEFAULT_CREDIT as usize));
    config
}

/// Starts the connection driver on a transport after the handshake. `on_inbound` is called
/// with every stream the peer opens. Returns the channel to ask for outbound streams.
pub(crate) fn spawn(
    io: BoxIo,
    mode: yamux::Mode,
    shared: Arc<Shared>,
    heartbeat: Heartbeat,
    on_inbound: impl FnMut(yamux::Stream) + Send + 'static,
) -> mpsc::Sender<OpenRequest> {
    shared.touch();
    let io = LivenessIo {
        inner: io,
        shared: shared.clone(),
        pending: Vec::with_capacity(WRITE_BUFFER),
        due_in_poll: None,
    };
    let conn = yamux::Connection::new(io.compat(), yamux_config(), mode);
    let (open_tx, open_rx) = mpsc::channel(64);
    tokio::spawn(drive(conn, open_rx, shared.clone(), on_inbound));
    tokio::spawn(watchdog(shared, heartbeat));
    open_tx
}

enum DriverEnd {
    Conn(Result<(), yamux::ConnectionError>),
    Cancelled,
}

async fn drive(
    mut conn: yamux::Connection<Compat<LivenessIo>>,
    mut open_rx: mpsc::Receiver<OpenRequest>,
    shared: Arc<Shared>,
    mut on_inbound: impl FnMut(yamux::Stream) + Send + 'static,
) {
    let mut pending: Option<OpenRequest> = None;
    let grace = async {
        shared.closing.cancelled().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let end = tokio::select! {
        r = std::future::poll_fn(|cx| {
            shared.driver_polls.fetch_add(1, Ordering::Relaxed);
            poll_conn(&mut conn, &mut open_rx, &mut pending, &mut on_inbound, cx)
        }) => DriverEnd::Conn(r),
        () = shared.cancel.cancelled() => DriverEnd::Cancelled,
        () = grace => DriverEnd::Cancelled,
    };
    match end {
        DriverEnd::Conn(Ok(())) => {
            shared.set_reason(
                CloseReason::ConnectionLost,
                format!("the {} closed the connection", shared.peer),
            );
        }
        DriverEnd::Conn(Err(e)) => {
            shared.set_reason(CloseReason::ConnectionLost, e.to_string());
        }
        DriverEnd::Cancelled => {}
    }
    // Dropping an active yamux connection marks every stream closed and wakes its tasks; the
    // streams' wrappers turn that into errors carrying the reason recorded above.
    shared.cancel.cancel();
    drop(conn);
    drop(pending);
    open_rx.close();
    shared.done.cancel();
}

fn poll_conn(
    conn: &mut yamux::Connection<Compat<LivenessIo>>,
    open_rx: &mut mpsc::Receiver<OpenRequest>,
    pending: &mut Option<OpenRequest>,
    on_inbound: &mut impl FnMut(yamux::Stream),
    cx: &mut Context<'_>,
) -> Poll<Result<(), yamux::ConnectionError>> {
    loop {
        if pending.is_none() {
            if let Poll::Ready(Some(request)) = open_rx.poll_recv(cx) {
                *pending = Some(request);
            }
        }
        if let Some(request) = pending.take() {
            if !request.is_closed() {
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(Ok(stream)) => {
                        let _ = request.send(Ok(stream));
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        let message = e.to_string();
                        let _ = request.send(Err(e));
                        return Poll::Ready(Err(yamux::ConnectionError::Io(io::Error::other(
                            message,
                        ))));
                    }
                    Poll::Pending => *pending = Some(request),
                }
            } else {
                continue;
            }
        }
        match conn.poll_next_inbound(cx) {
            Poll::Ready(Some(Ok(stream))) => on_inbound(stream),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Drops the connection when nothing has been read for the heartbeat timeout.
async fn watchdog(shared: Arc<Shared>, heartbeat: Heartbeat) {
    let check =
        (heartbeat.timeout / 8).clamp(Duration::from_millis(20), Duration::from_millis(500));
    let mut ticker = tokio::time::interval(check);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shared.done.cancelled() => return,
        }
        let idle = shared.idle_for();
        if idle > heartbeat.timeout {
            shared.abort(
                CloseReason::HeartbeatTimeout,
                format!(
                    "nothing received from the {} for {} ms (timeout {} ms)",
                    shared.peer,
                    idle.as_millis(),
                    heartbeat.timeout.as_millis()
                ),
            );
            return;
        }
    }
}

/// Runs the control stream: pings out every interval, pings and go-aways in.
pub(crate) async fn run_control(
    stream: TunnelStream,
    shared: Arc<Shared>,
    heartbeat: Heartbeat,
    mut goaway_rx: mpsc::Receiver<GoAway>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let reader = {
        let shared = shared.clone();
        async move {
            loop {
                match read_frame(&mut rd).await {
                    Ok(Frame::Ping(_)) => {
                        shared
                            .last_heartbeat_unix_ms
                            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
                    }
                    Ok(Frame::GoAway(goaway)) => {
                        tracing::info!(
                            peer = shared.peer,
                            reason = %goaway.reason,
                            message = %goaway.message,
                            "the {} is closing the tunnel connection",
                            shared.peer
                        );
                        shared.abort(
                            goaway.reason,
                            format!("go-away from the {}: {}", shared.peer, goaway.message),
                        );
                        return;
                    }
                    Ok(other) => {
                        shared.abort(
                            CloseReason::ProtocolError,
                            format!("unexpected {} frame on the control stream", other.name()),
                        );
                        return;
                    }
                    Err(e) => {
                        if !shared.ended() {
                            shared.abort(
                                CloseReason::ProtocolError,
                                format!("control stream failed: {e}"),
                            );
                        }
                        return;
                    }
                }
            }
        }
    };
    let writer_shared = shared.clone();
    let writer = async move {
        let shared = writer_shared;
        let mut ticker = tokio::time::interval(heartbeat.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    seq += 1;
                    if write_frame(&mut wr, &Frame::Ping(Ping { seq })).await.is_err() {
                        return;
                    }
                }
                Some(goaway) = goaway_rx.recv() => {
                    // The peer drops the connection when it reads this; if it does not, the
                    // driver's closing grace does.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        write_frame(&mut wr, &Frame::GoAway(goaway)),
                    )
                    .await;
                    shared.closed().await;
                    return;
                }
            }
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
        () = shared_done(&shared) => {}
    }
}

async fn shared_done(shared: &Arc<Shared>) {
    shared.done.cancelled().await;
}

// === impl LivenessIo ===

impl AsyncRead for LivenessIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let had_room = buf.remaining() > 0;
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &result {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.shared.touch(),
            // End-of-file or a failed read: the connection is over. Recorded before yamux gets
            // to close the streams, which it does as soon as this returns.
            Poll::Ready(Ok(())) if had_room => {
                self.shared.transport_ended.store(true, Ordering::Release);
            }
            Poll::Ready(Err(_)) => self.shared.transport_ended.store(true, Ordering::Release),
            _ => {}
        }
        result
    }
}

impl LivenessIo {
    /// Hands every pending byte to the transport.
    fn poll_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => {
                    self.shared.transport_ended.store(true, Ordering::Release);
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => {
                    self.shared.transport_ended.store(true, Ordering::Release);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.due_in_poll = None;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for LivenessIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.len() + buf.len() > WRITE_BUFFER {
            ready!(this.poll_write_pending(cx))?;
        }
        if buf.len() >= WRITE_BUFFER {
            // A large body goes straight through (nothing is pending now).
            let result = Pin::new(&mut this.inner).poll_write(cx, buf);
            if matches!(result, Poll::Ready(Err(_))) {
                this.shared.transport_ended.store(true, Ordering::Release);
            }
            return result;
        }
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.pending.is_empty() {
            let poll = this.shared.driver_polls.load(Ordering::Relaxed);
            match this.due_in_poll {
                // Marked due in an earlier poll: write it all now.
                Some(due) if due != poll => {}
                // Already due in this poll: the driver is woken; keep collecting.
                Some(_) => return Poll::Ready(Ok(())),
                None => {
                    this.due_in_poll = Some(poll);
                    cx.waker().wake_by_ref();
                    return Poll::Ready(Ok(()));
                }
            }
        }
        ready!(this.poll_write_pending(cx))?;
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(result, Poll::Ready(Err(_))) {
            self.shared.transport_ended.store(true, Ordering::Release);
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// === impl TunnelStream ===

impl TunnelStream {
    pub(crate) fn new(stream: yamux::Stream, shared: Arc<Shared>) -> Self {
        shared.open_streams.fetch_add(1, Ordering::Relaxed);
        shared.streams_total.fetch_add(1, Ordering::Relaxed);
        TunnelStream {
            inner: stream.compat(),
            shared,
            write_shut: false,
            counted: true,
        }
    }

    /// The control stream: not counted as an open stream.
    pub(crate) fn new_control(stream: yamux::Stream, shared: Arc<Shared>) -> Self {
        TunnelStream {
            inner: stream.compat(),
            shared,
            write_shut: false,
            counted: false,
        }
    }

    /// The yamux stream id, for logs.
    pub fn id(&self) -> u32 {
        self.inner.get_ref().id().val()
    }

    fn map_err(&self, e: io::Error) -> io::Error {
        if self.shared.ended() {
            self.shared.lost_error()
        } else if e.kind() == io::ErrorKind::WriteZero {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("tunnel stream closed by the {}", self.shared.peer),
            )
        } else {
            e
        }
    }
}

impl fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelStream")
            .field("id", &self.id())
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        if self.counted {
            self.shared.open_streams.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // yamux reads into `&mut [u8]`, so the bytes it is given must be initialised. Callers
        // such as hyper and Pingora hand over uninitialised spare capacity, and zeroing it on
        // every read, pending ones included, was the largest cost of a tunnelled request on
        // both sides. So such a read goes through this thread's scratch buffer, and only the
        // bytes yamux delivers are copied; a caller's buffer that is already initialised (as
        // `tokio::io::copy`'s is) is read into directly.
        let want = buf.remaining().min(MAX_READ);
        let inner = self.inner.get_mut();
        let initialised_spare = buf.initialized().len() - buf.filled().len();
        let polled = if initialised_spare >= want {
            read_initialised(inner, cx, buf, want)
        } else {
            READ_SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
                Ok(mut scratch) => {
                    let polled = Pin::new(&mut *inner).poll_read(cx, &mut scratch[..want]);
                    if let Poll::Ready(Ok(n)) = polled {
                        buf.put_slice(&scratch[..n]);
                    }
                    polled
                }
                // Not reachable (a yamux read never reads another tunnel stream); zeroing the
                // caller's bytes is the correct fallback.
                Err(_) => read_initialised(inner, cx, buf, want),
            })
        };
        match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    if self.counted {
                        self.shared.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    return Poll::Ready(Ok(()));
                }
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                // End of stream: clean only if the peer sent FIN. A stream that is fully
                // closed although we never finished writing was reset, or its connection died.
                let stream = self.inner.get_ref();
                if self.shared.ended() && (stream.is_closed() || self.write_shut) {
                    return Poll::Ready(Err(self.shared.lost_error()));
                }
                if stream.is_closed() && !self.write_shut {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        format!("tunnel stream reset by the {}", self.shared.peer),
                    )));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.map_err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A yamux read straight into `buf`, initialising (zeroing) at most `want` unfilled bytes first.
fn read_initialised(
    stream: &mut yamux::Stream,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    want: usize,
) -> Poll<io::Result<usize>> {
    let polled = Pin::new(stream).poll_read(cx, buf.initialize_unfilled_to(want));
    if let Poll::Ready(Ok(n)) = polled {
        buf.advance(n);
    }
    polled
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if self.counted {
                    self.shared.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.map_err(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.map_err(e))),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_shut = true;
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.map_err(e))),
            other => other,
        }
    }
}

/// Compile-time check of what Pingora's `VirtualSocket` requires.
#[allow(dead_code)]
fn assert_virtual_socket_bounds() {
    fn check<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + fmt::Debug + 'static>() {}
    check::<TunnelStream>();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport that sends each write it is given to the test.
    struct RecordingIo(mpsc::UnboundedSender<Vec<u8>>);

    fn writes(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    impl AsyncRead for RecordingIo {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for RecordingIo {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let _ = self.0.send(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn frames_flushed_in_one_driver_poll_reach_the_transport_as_one_write_in_the_next() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (shared, _goaway) = Shared::new("agent");
        let mut io = LivenessIo {
            inner: Box::new(RecordingIo(tx)),
            shared: shared.clone(),
            pending: Vec::new(),
            due_in_poll: None,
        };
        let woken = Arc::new(AtomicU64::new(0));
        struct CountWakes(Arc<AtomicU64>);
        impl std::task::Wake for CountWakes {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let waker = std::task::Waker::from(Arc::new(CountWakes(woken.clone())));
        let mut cx = Context::from_waker(&waker);
        let mut io = Pin::new(&mut io);

        // One driver poll: two frames (header + body each), each followed by a flush.
        shared.driver_polls.fetch_add(1, Ordering::Relaxed);
        for frame in [&b"header-1"[..], b"body-1", b"header-2", b"body-2"] {
            assert!(matches!(
                io.as_mut().poll_write(&mut cx, frame),
                Poll::Ready(Ok(_))
            ));
            assert!(matches!(
                io.as_mut().poll_flush(&mut cx),
                Poll::Ready(Ok(()))
            ));
        }
        assert!(writes(&mut rx).is_empty(), "held until the next poll");
        assert_eq!(
            woken.load(Ordering::Relaxed),
            1,
            "the driver woke itself once"
        );

        // The next poll's first flush writes all of it at once.
        shared.driver_polls.fetch_add(1, Ordering::Relaxed);
        assert!(matches!(
            io.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(
            writes(&mut rx),
            vec![b"header-1body-1header-2body-2".to_vec()]
        );

        // A shutdown writes what is held at once.
        assert!(matches!(
            io.as_mut().poll_write(&mut cx, b"last"),
            Poll::Ready(Ok(_))
        ));
        assert!(matches!(
            io.as_mut().poll_shutdown(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(writes(&mut rx), vec![b"last".to_vec()]);
        // A large body passes straight through, after anything held.
        assert!(matches!(
            io.as_mut().poll_write(&mut cx, b"held"),
            Poll::Ready(Ok(_))
        ));
        let big = vec![7u8; WRITE_BUFFER];
        assert!(matches!(
            io.as_mut().poll_write(&mut cx, &big),
            Poll::Ready(Ok(_))
        ));
        assert_eq!(writes(&mut rx), vec![b"held".to_vec(), big]);
    }
}
