//! Error types. Each variant says what happened, in particular what the peer did.

use crate::wire::{Cmd, StreamId};

/// The peer broke the protocol. The session ends with this as its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame carried a version other than the one this session speaks.
    #[error("peer sent a version {theirs} frame to a version {ours} session")]
    VersionMismatch {
        /// Our version.
        ours: u8,
        /// The version byte the peer sent.
        theirs: u8,
    },
    /// A frame carried a command byte that is not SYN, FIN, PSH, NOP or UPD.
    #[error("peer sent unknown command {cmd}")]
    UnknownCommand {
        /// The command byte.
        cmd: u8,
    },
    /// SYN, FIN or NOP with a non-zero length.
    #[error("peer sent {cmd:?} with a {len}-byte payload")]
    UnexpectedPayload {
        /// The command.
        cmd: Cmd,
        /// The length it claimed.
        len: u16,
    },
    /// UPD whose payload is not exactly 8 bytes.
    #[error("peer sent UPD with a {len}-byte payload instead of 8")]
    BadUpdLength {
        /// The length it claimed.
        len: u16,
    },
    /// UPD in a version-1 session.
    #[error("peer sent UPD for stream {stream_id} in a version 1 session")]
    UpdInVersion1 {
        /// The stream it named.
        stream_id: StreamId,
    },
    /// SYN for the reserved stream id 0.
    #[error("peer opened stream 0, which is reserved")]
    SynForStreamZero,
    /// Version 2: the peer sent more than our window (or the initial window it may assume)
    /// allows on one stream.
    #[error("peer sent {unread} unread bytes on stream {stream_id}, over the {allowed} allowed")]
    WindowExceeded {
        /// The stream.
        stream_id: StreamId,
        /// Unread bytes the frame would have made.
        unread: usize,
        /// What flow control allows.
        allowed: usize,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionEnd {
    /// We closed it with [`Session::close`](crate::Session::close) and all queued output has
    /// been handed out.
    #[error("session closed")]
    Closed,
    /// The transport reported end of input ([`Session::handle_eof`](crate::Session::handle_eof)).
    #[error("peer closed the connection")]
    PeerClosed,
    /// The transport failed ([`Session::handle_transport_error`](crate::Session::handle_transport_error)).
    #[error("transport failed")]
    TransportFailed,
    /// No frame header arrived within the keep-alive timeout.
    #[error("keep-alive timeout: nothing received from the peer")]
    KeepAliveTimeout,
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
}

/// A [`Config`](crate::Config) value the protocol cannot use. It reads as, for example,
/// `invalid config: max_frame_size must be between 1 and 65,535 bytes, got 70000`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config: {field} {reason}, got {value}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
    /// The value it had (and, for a limit set by another field, that field's value).
    pub value: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: &'static str, value: String) -> ConfigError {
        ConfigError {
            field,
            reason,
            value,
        }
    }
}

/// Why [`Session::open`](crate::Session::open) failed. The session goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Every stream id of our parity has been used (Go's `ErrGoAway`).
    #[error("stream ids exhausted")]
    IdsExhausted,
    /// `max_streams` streams are open.
    #[error("too many open streams (limit {limit})")]
    TooManyStreams {
        /// The configured limit.
        limit: usize,
    },
    /// The session is closing or has ended.
    #[error("session is closed")]
    SessionClosed,
    /// [`Session::drain`](crate::Session::drain) was called.
    #[error("session is draining")]
    Draining,
}

/// Why the session reset a stream ([`StreamError::Reset`], [`Event::Reset`](crate::Event::Reset)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ResetReason {
    /// Version 1: input waited for this stream's reader for the stalled-stream timeout
    /// ([`Config::stalled_stream_timeout`](crate::Config::stalled_stream_timeout)).
    #[error("its reader fell behind for the stalled-stream timeout")]
    StalledReader,
    /// Version 2: the session's receive budget
    /// ([`Config::max_session_unread`](crate::Config::max_session_unread)) was full and this
    /// stream held the most unread data.
    #[error("the session's receive budget was full and it held the most unread data")]
    ReceiveBudget,
    /// Version 2: its writer waited for the peer's window for the stalled-stream timeout
    /// ([`Config::stalled_stream_timeout`](crate::Config::stalled_stream_timeout)): the peer
    /// stopped reading the stream, or dropped it.
    #[error("its writer waited for the peer's window for the stalled-stream timeout")]
    StalledWriter,
}

/// Why a stream command ([`Session::write`](crate::Session::write),
/// [`Session::read`](crate::Session::read), ...) did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// Nothing can be done now; an event ([`Event::Readable`](crate::Event::Readable) or
    /// [`Event::Writable`](crate::Event::Writable)) says when to try again.
    #[error("operation would block")]
    Blocked,
    /// Writing after [`Session::shutdown`](crate::Session::shutdown), after the idle timeout
    /// closed the stream, or after the session started closing.
    #[error("stream is closed for writing")]
    Finished,
    /// The session ended before the peer finished this stream; the reason is in
    /// [`Session::end_reason`](crate::Session::end_reason).
    #[error("session ended")]
    SessionEnded,
    /// The stream was reset: its unread data was dropped, our FIN was sent, and reads and
    /// writes fail from then on. The reason says which limit it hit.
    #[error("stream reset: {0}")]
    Reset(ResetReason),
    /// No such stream: never opened, or already released with
    /// [`Session::close_stream`](crate::Session::close_stream).
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
}
