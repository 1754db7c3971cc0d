//! The agent's half of the handshake, usable on its own (tests drive a misbehaving agent
//! with it).

use std::time::Duration;

use super::frame::{read_frame, write_frame, Accepted, Frame, FrameIoError, Hello, RefuseCode};
use super::transport::{self, BoxIo};

/// Why the agent's handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientHandshakeError {
    /// The gateway refused the tunnel.
    #[error("gateway refused the tunnel: {code}: {message}")]
    Refused {
        /// The gateway's reason code.
        code: RefuseCode,
        /// The gateway's explanation.
        message: String,
    },
    /// The gateway's answer could not be read or was not a frame.
    #[error("reading the gateway's answer: {0}")]
    Frame(#[from] FrameIoError),
    /// The gateway answered with a frame other than accepted or refused.
    #[error("unexpected {0} frame in the handshake")]
    Unexpected(&'static str),
    /// No answer within the deadline.
    #[error("no answer to the handshake within {0:?}")]
    Timeout(Duration),
}

/// Sends the preface and `hello` on a fresh transport and waits for the gateway's verdict.
///
/// # Errors
///
/// [`ClientHandshakeError::Refused`] with the gateway's code, or why no verdict was read.
pub async fn handshake(
    io: &mut BoxIo,
    hello: &Hello,
    deadline: Duration,
) -> Result<Accepted, ClientHandshakeError> {
    let exchange = async {
        transport::write_preface(io)
            .await
            .map_err(FrameIoError::Io)?;
        write_frame(io, &Frame::Hello(hello.clone())).await?;
        match read_frame(io).await? {
            Frame::Accepted(accepted) => Ok(accepted),
            Frame::Refused(refused) => Err(ClientHandshakeError::Refused {
                code: refused.code,
                message: refused.message,
            }),
            other => Err(ClientHandshakeError::Unexpected(other.name())),
        }
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| ClientHandshakeError::Timeout(deadline))?
}
