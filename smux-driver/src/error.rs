//! The error type of the adapters' API, and how a session's end reads to a stream.

use std::io;

use smux_proto::{ProtocolError, SessionEnd};

/// Why a mux operation failed, or why the worker ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// The session is closed: `close()` was called, all handles were dropped, the peer closed
    /// the transport, or the worker was dropped.
    #[error("connection closed")]
    ConnectionClosed,
    /// The configured limit of open streams is reached.
    #[error("too many streams")]
    TooManyStreams,
    /// `drain()` was called: no new streams.
    #[error("connection draining: no new streams")]
    Draining,
    /// Every stream id of our parity has been used (Go's `ErrGoAway`); open a new connection.
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
    /// Nothing arrived from the peer within the keep-alive timeout.
    #[error("keep-alive timeout: the peer sent nothing")]
    KeepAliveTimeout,
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The transport failed.
    #[error("I/O error: {0}")]
    IoError(#[from] io::Error),
}

/// `Result` with [`MuxError`].
pub type MuxResult<T> = Result<T, MuxError>;

/// So that `connector.connect()?` works in a function returning `io::Result`.
///
/// [`MuxError::IoError`] gives back the transport's error unchanged. The others keep the
/// `MuxError` as the error's source, with the kind stream operations use for the same
/// condition: `ConnectionAborted` for a closed session, `TimedOut` for the keep-alive timeout,
/// `InvalidData` for a protocol error; `AddrNotAvailable` for exhausted stream ids (as for
/// exhausted ports), `ConnectionRefused` while draining and `Other` for the stream limit.
impl From<MuxError> for io::Error {
    fn from(e: MuxError) -> io::Error {
        let kind = match &e {
            MuxError::IoError(_) => {
                let MuxError::IoError(e) = e else {
                    unreachable!("matched above")
                };
                return e;
            }
            MuxError::ConnectionClosed => io::ErrorKind::ConnectionAborted,
            MuxError::KeepAliveTimeout => io::ErrorKind::TimedOut,
            MuxError::Protocol(_) => io::ErrorKind::InvalidData,
            MuxError::StreamIdsExhausted => io::ErrorKind::AddrNotAvailable,
            MuxError::TooManyStreams => io::ErrorKind::Other,
            MuxError::Draining => io::ErrorKind::ConnectionRefused,
        };
        io::Error::new(kind, e)
    }
}

/// Which side of a stream met the end of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamOp {
    Read,
    Write,
}

/// How the end of the session reads to a stream that was still open: the `io::ErrorKind` a
/// Tokio or futures user expects, and a message.
pub(crate) fn stream_error(
    end: Option<&SessionEnd>,
    transport: Option<&str>,
    op: StreamOp,
) -> io::Error {
    let (kind, msg) = match end {
        // A write that can no longer go anywhere is a broken pipe.
        Some(SessionEnd::Closed | SessionEnd::PeerClosed) if op == StreamOp::Write => {
            (io::ErrorKind::BrokenPipe, "the connection is closed")
        }
        Some(SessionEnd::Closed) | None => (io::ErrorKind::ConnectionAborted, "session closed"),
        Some(SessionEnd::PeerClosed) => (
            io::ErrorKind::UnexpectedEof,
            "peer closed the connection before finishing the stream",
        ),
        Some(SessionEnd::TransportFailed) => (io::ErrorKind::ConnectionReset, "transport failed"),
        Some(SessionEnd::KeepAliveTimeout) => (io::ErrorKind::TimedOut, "keep-alive timeout"),
        Some(SessionEnd::Protocol(_)) => (io::ErrorKind::InvalidData, "peer broke the protocol"),
        Some(_) => (io::ErrorKind::ConnectionAborted, "session ended"),
    };
    match (end, transport) {
        (Some(SessionEnd::TransportFailed), Some(t)) => io::Error::new(kind, format!("{msg}: {t}")),
        (Some(SessionEnd::Protocol(e)), _) => io::Error::new(kind, format!("{msg}: {e}")),
        _ => io::Error::new(kind, msg),
    }
}

/// The worker's result for a session that ended with `end`.
pub(crate) fn worker_result(end: &SessionEnd, transport: Option<io::Error>) -> MuxResult<()> {
    match end {
        SessionEnd::Closed | SessionEnd::PeerClosed => Ok(()),
        SessionEnd::KeepAliveTimeout => Err(MuxError::KeepAliveTimeout),
        SessionEnd::Protocol(e) => Err(MuxError::Protocol(e.clone())),
        _ => Err(MuxError::IoError(transport.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::ConnectionReset, "transport failed")
        }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mux_errors_become_io_errors_with_their_stream_kinds() {
        let original = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let before = format!("{original:?}");
        let back = io::Error::from(MuxError::IoError(original));
        assert_eq!(
            format!("{back:?}"),
            before,
            "the transport's error comes back unchanged"
        );
        for (e, kind) in [
            (MuxError::ConnectionClosed, io::ErrorKind::ConnectionAborted),
            (MuxError::KeepAliveTimeout, io::ErrorKind::TimedOut),
            (
                MuxError::Protocol(ProtocolError::UnknownCommand { cmd: 9 }),
                io::ErrorKind::InvalidData,
            ),
            (
                MuxError::StreamIdsExhausted,
                io::ErrorKind::AddrNotAvailable,
            ),
            (MuxError::TooManyStreams, io::ErrorKind::Other),
            (MuxError::Draining, io::ErrorKind::ConnectionRefused),
        ] {
            let text = e.to_string();
            let io = io::Error::from(e);
            assert_eq!(io.kind(), kind, "{text}");
            let source = io.get_ref().expect("the MuxError is kept");
            assert!(source.downcast_ref::<MuxError>().is_some(), "{text}");
            assert_eq!(io.to_string(), text);
        }
        // The stream operations use the same kind for the same end.
        assert_eq!(
            stream_error(Some(&SessionEnd::KeepAliveTimeout), None, StreamOp::Read).kind(),
            io::ErrorKind::TimedOut
        );
    }
}
