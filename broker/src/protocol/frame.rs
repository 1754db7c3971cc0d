//! The tunnel's own frames: the handshake, stream headers and the control stream.
//!
//! Everything the protocol says by itself (as opposed to the bytes it carries) is one of these
//! frames. A frame is a 5-byte header — one type byte, then the payload length as a big-endian
//! `u32` — followed by that many bytes of JSON. The length is checked against [`MAX_PAYLOAD`]
//! *before* anything is allocated or read, so a peer cannot make us buffer more than 16 KiB
//! for a frame, and JSON keeps the messages readable in a packet capture and extensible
//! (unknown fields are ignored, so a newer agent can talk to an older gateway).
//!
//! [`decode`] is a pure function over a byte slice, suitable as a fuzz target; [`read_frame`]
//! and [`write_frame`] are its async counterparts over a stream and read exactly one frame,
//! never a byte more, so the bytes that follow (yamux, or a stream's payload) stay in the
//! stream.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[cfg(test)]
mod tests;

/// The 8 bytes an agent sends first on a binary transport (after TLS, and inside the
/// WebSocket on the WebSocket transport). A server that reads anything else closes the
/// connection; a server that reads `GET ` instead knows the agent wants a WebSocket upgrade.
pub const PREFACE: &[u8; 8] = b"PCTUNL/1";

/// The protocol version this crate speaks, sent in [`Hello`] and [`Accepted`].
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest payload a frame may carry, in bytes. Larger lengths are rejected from the
/// header alone.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// The length of a frame header: one type byte and a big-endian `u32` payload length.
pub const HEADER_LEN: usize = 5;

const TYPE_HELLO: u8 = 0x01;
const TYPE_ACCEPTED: u8 = 0x02;
const TYPE_REFUSED: u8 = 0x03;
const TYPE_OPEN: u8 = 0x10;
const TYPE_OPEN_OK: u8 = 0x11;
const TYPE_OPEN_REFUSED: u8 = 0x12;
const TYPE_PING: u8 = 0x20;
const TYPE_GO_AWAY: u8 = 0x21;

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Agent → gateway, first frame after [`PREFACE`]: who the agent is.
    Hello(Hello),
    /// Gateway → agent: the token is good; yamux starts right after this frame.
    Accepted(Accepted),
    /// Gateway → agent: the tunnel is refused; the gateway closes the connection.
    Refused(Refused),
    /// Gateway → agent, first frame of every yamux stream: what the stream is for.
    Open(StreamKind),
    /// Agent → gateway on a `tcp` stream: the origin is connected, raw bytes follow.
    OpenOk,
    /// Agent → gateway on a `tcp` stream: the stream is refused; the agent closes it.
    OpenRefused(OpenRefused),
    /// Either way on the control stream, every heartbeat interval.
    Ping(Ping),
    /// Either way on the control stream: the sender is closing the connection, and why.
    GoAway(GoAway),
}

/// The agent's introduction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the agent speaks ([`PROTOCOL_VERSION`]).
    pub protocol: u16,
    /// The broker token, sent in the clear inside TLS; the gateway hashes it with SHA-256 and
    /// looks the hash up.
    pub token: Token,
    /// A stable identifier of this agent installation (see `agent::config` for how it is
    /// derived), so the gateway can tell a reconnect from a second agent.
    pub agent_id: String,
    /// The agent's software version, for the operator's tunnel list.
    pub agent_version: String,
}

/// The gateway's acceptance of a tunnel connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The protocol version both sides now speak.
    pub protocol: u16,
    /// The tunnel the token belongs to.
    pub tunnel: String,
    /// The tenant owning that tunnel.
    pub tenant: String,
    /// How often the gateway sends pings, and expects them, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// After how long without any byte from the agent the gateway drops the connection.
    pub heartbeat_timeout_ms: u64,
}

/// The gateway's refusal of a tunnel connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The stable reason code.
    pub code: RefuseCode,
    /// A human-readable explanation, never containing the token.
    pub message: String,
}

/// Why a gateway refused a tunnel connection. Stable on the wire (snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseCode {
    /// No tunnel has this token.
    BadToken,
    /// The token was valid but has been revoked.
    Revoked,
    /// The agent speaks a protocol version the gateway does not.
    Version,
    /// The hello frame could not be understood.
    Malformed,
    /// The gateway has too many connections.
    Overloaded,
    /// The gateway is shutting down.
    ShuttingDown,
    /// A code this version does not know (sent by a newer gateway).
    #[serde(other)]
    Unknown,
}

/// What a yamux stream carries; the payload of [`Frame::Open`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreamKind {
    /// HTTP/1.1 follows, spoken by the gateway as client; the `Host` header names the origin.
    Http,
    /// Raw bytes to the named origin of kind `tcp`, after the agent's [`Frame::OpenOk`].
    Tcp {
        /// The agent origin's name.
        origin: String,
    },
    /// The one control stream the gateway opens right after the handshake: heartbeats and
    /// go-away notices, as frames, both ways.
    Control,
}

/// Why an agent refused a `tcp` stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRefused {
    /// A stable reason code: `unknown_origin`, `not_tcp`, `origin_unreachable`, `bad_header`.
    pub reason: String,
    /// A human-readable explanation.
    pub message: String,
}

/// A heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Increments with every ping the sender sends on this connection.
    pub seq: u64,
}

/// A notice that the sender is closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoAway {
    /// Why.
    pub reason: CloseReason,
    /// A human-readable explanation.
    pub message: String,
}

/// Why a tunnel connection was closed. Stable on the wire (snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The token was revoked (e.g. removed by a config reload).
    Revoked,
    /// The sender is shutting down (the customer stopped the agent, or the gateway stops).
    Shutdown,
    /// No byte arrived for longer than the heartbeat timeout.
    HeartbeatTimeout,
    /// The peer broke the protocol (a malformed control frame, for instance).
    ProtocolError,
    /// The transport failed or the peer went away without a word.
    ConnectionLost,
    /// A reason this version does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

/// The broker token: serialized in [`Hello`], never printed. `Debug` shows `[redacted]` and
/// equality is constant-time.
#[derive(Clone)]
pub struct Token(SecretString);

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header announces a payload over [`MAX_PAYLOAD`].
    #[error(
        "frame of type {frame_type:#04x} announces {len} bytes, over the {MAX_PAYLOAD}-byte limit"
    )]
    TooLarge {
        /// The type byte.
        frame_type: u8,
        /// The announced payload length.
        len: u64,
    },
    /// An unknown type byte.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// The payload is not valid JSON for the frame type. The message names the type and the
    /// position, never the payload content (which may contain a token).
    #[error("invalid {frame} frame payload: {reason}")]
    Payload {
        /// The frame type's name.
        frame: &'static str,
        /// What is wrong, without echoing the payload.
        reason: String,
    },
}

/// Why a frame could not be read from or written to a stream.
#[derive(Debug, thiserror::Error)]
pub enum FrameIoError {
    /// The stream failed or ended before a whole frame was read.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes were not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

// === impl Frame ===

impl Frame {
    /// The name of the frame type, for messages.
    pub fn name(&self) -> &'static str {
        type_name(self.type_byte())
    }

    fn type_byte(&self) -> u8 {
        match self {
            Frame::Hello(_) => TYPE_HELLO,
            Frame::Accepted(_) => TYPE_ACCEPTED,
            Frame::Refused(_) => TYPE_REFUSED,
            Frame::Open(_) => TYPE_OPEN,
            Frame::OpenOk => TYPE_OPEN_OK,
            Frame::OpenRefused(_) => TYPE_OPEN_REFUSED,
            Frame::Ping(_) => TYPE_PING,
            Frame::GoAway(_) => TYPE_GO_AWAY,
        }
    }

    /// Encodes the frame: header and JSON payload.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] when the payload would exceed [`MAX_PAYLOAD`] (for example a
    /// hello with a huge agent id).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let payload = match self {
            Frame::Hello(v) => serde_json::to_vec(v),
            Frame::Accepted(v) => serde_json::to_vec(v),
            Frame::Refused(v) => serde_json::to_vec(v),
            Frame::Open(v) => serde_json::to_vec(v),
            Frame::OpenOk => Ok(b"{}".to_vec()),
            Frame::OpenRefused(v) => serde_json::to_vec(v),
            Frame::Ping(v) => serde_json::to_vec(v),
            Frame::GoAway(v) => serde_json::to_vec(v),
        }
        .map_err(|e| FrameError::Payload {
            frame: self.name(),
            reason: e.to_string(),
        })?;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&len| len as usize <= MAX_PAYLOAD)
            .ok_or(FrameError::TooLarge {
                frame_type: self.type_byte(),
                len: payload.len() as u64,
            })?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.push(self.type_byte());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }
}

/// Decodes one frame from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame, and `Ok(Some((frame, used)))`
/// with the number of bytes the frame took otherwise. Never panics and never allocates more
/// than [`MAX_PAYLOAD`], whatever the input: this is the function a fuzz target should call.
///
/// # Errors
///
/// [`FrameError`] when the header announces too much, the type is unknown or the payload is
/// not the JSON that type requires. A header is rejected as soon as it is complete, before
/// its payload has arrived.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let (frame_type, len) = parse_header(header)?;
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let frame = decode_payload(frame_type, payload)?;
    Ok(Some((frame, HEADER_LEN + len)))
}

/// Reads exactly one frame from `r`.
///
/// # Errors
///
/// [`FrameIoError::Io`] when the stream fails or ends mid-frame (an end before the first byte
/// is `UnexpectedEof` too), [`FrameIoError::Frame`] for invalid bytes.
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(r: &mut R) -> Result<Frame, FrameIoError> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await?;
    let (frame_type, len) = parse_header(&header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(decode_payload(frame_type, &payload)?)
}

/// Writes one frame to `w` and flushes it.
///
/// # Errors
///
/// [`FrameIoError::Frame`] when the frame cannot be encoded, [`FrameIoError::Io`] when the
/// stream fails.
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    frame: &Frame,
) -> Result<(), FrameIoError> {
    let bytes = frame.encode()?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

fn parse_header(header: &[u8]) -> Result<(u8, usize), FrameError> {
    let frame_type = header[0];
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLarge {
            frame_type,
            len: u64::from(len),
        });
    }
    if type_name(frame_type) == "unknown" {
        return Err(FrameError::UnknownType(frame_type));
    }
    Ok((frame_type, len as usize))
}

fn decode_payload(frame_type: u8, payload: &[u8]) -> Result<Frame, FrameError> {
    fn json<'a, T: Deserialize<'a>>(
        frame: &'static str,
        payload: &'a [u8],
    ) -> Result<T, FrameError> {
        serde_json::from_slice(payload).map_err(|e| FrameError::Payload {
            frame,
            // serde_json's message can quote the input (a token, say); keep only the class and
            // the position.
            reason: format!(
                "{} at line {} column {}",
                match e.classify() {
                    serde_json::error::Category::Io => "i/o error",
                    serde_json::error::Category::Syntax => "not JSON",
                    serde_json::error::Category::Data => "wrong or missing field",
                    serde_json::error::Category::Eof => "truncated JSON",
                },
                e.line(),
                e.column()
            ),
        })
    }
    let name = type_name(frame_type);
    Ok(match frame_type {
        TYPE_HELLO => Frame::Hello(json(name, payload)?),
        TYPE_ACCEPTED => Frame::Accepted(json(name, payload)?),
        TYPE_REFUSED => Frame::Refused(json(name, payload)?),
        TYPE_OPEN => Frame::Open(json(name, payload)?),
        TYPE_OPEN_OK => {
            let _: serde::de::IgnoredAny = json(name, payload)?;
            Frame::OpenOk
        }
        TYPE_OPEN_REFUSED => Frame::OpenRefused(json(name, payload)?),
        TYPE_PING => Frame::Ping(json(name, payload)?),
        TYPE_GO_AWAY => Frame::GoAway(json(name, payload)?),
        other => return Err(FrameError::UnknownType(other)),
    })
}

fn type_name(frame_type: u8) -> &'static str {
    match frame_type {
        TYPE_HELLO => "hello",
        TYPE_ACCEPTED => "accepted",
        TYPE_REFUSED => "refused",
        TYPE_OPEN => "open",
        TYPE_OPEN_OK => "open_ok",
        TYPE_OPEN_REFUSED => "open_refused",
        TYPE_PING => "ping",
        TYPE_GO_AWAY => "go_away",
        _ => "unknown",
    }
}

// === impl Token ===

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Token(SecretString::from(token.into()))
    }

    /// The token itself, to hash it. Never log the result.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Eq for Token {}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Token::new)
    }
}

// === impl RefuseCode ===

impl RefuseCode {
    /// The wire name, e.g. `bad_token`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseCode::BadToken => "bad_token",
            RefuseCode::Revoked => "revoked",
            RefuseCode::Version => "version",
            RefuseCode::Malformed => "malformed",
            RefuseCode::Overloaded => "overloaded",
            RefuseCode::ShuttingDown => "shutting_down",
            RefuseCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for RefuseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl CloseReason ===

impl CloseReason {
    /// The wire name, e.g. `heartbeat_timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Revoked => "revoked",
            CloseReason::Shutdown => "shutdown",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::ConnectionLost => "connection_lost",
            CloseReason::Unknown => "unknown",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl StreamKind ===

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamKind::Http => f.write_str("http"),
            StreamKind::Tcp { origin } => write!(f, "tcp to origin '{origin}'"),
            StreamKind::Control => f.write_str("control"),
        }
    }
}
