//! Session configuration: protocol version, frame size, timers, and a limit for every quantity a
//! peer can make us hold.

use std::time::Duration;

use crate::error::ConfigError;
use crate::frame::MAX_PAYLOAD;

/// The smux protocol version. There is no negotiation: both sides must be configured alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Version {
    /// Version 1: no per-stream flow control, one receive budget per session.
    #[default]
    V1 = 1,
    /// Version 2: adds per-stream windows (UPD frames).
    V2 = 2,
}

/// Which side of the connection a session is. It decides the parity of the stream ids we
/// allocate: clients open odd ids (3, 5, ...), servers even ids (2, 4, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opens odd stream ids.
    Client,
    /// Opens even stream ids.
    Server,
}

/// The longest timer a config may set (a year): long enough for any use, short enough that
/// adding it to an `Instant` cannot overflow.
pub const MAX_TIMER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The window a version-2 sender assumes before the peer's first UPD arrives (Go's
/// `initialPeerWindow`).
pub const INITIAL_PEER_WINDOW: u32 = 262_144;

/// Configuration of one [`Session`](crate::Session). Start from [`Config::default`] and change
/// fields; [`Config::validate`] says whether the result can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Protocol version spoken on the wire. Default: [`Version::V1`].
    pub version: Version,
    /// Largest payload we put in one PSH frame (1..=65,535). Default: 32,768, as Go. We accept
    /// any length up to 65,535 from the peer whatever this says.
    pub max_frame_size: usize,
    /// Send a NOP this often. Default: off.
    pub keep_alive_interval: Option<Duration>,
    /// End the session when no frame header has arrived for this long. Default: off.
    pub keep_alive_timeout: Option<Duration>,
    /// Close a stream (send FIN, reads end, writes fail) when no data has been sent or received
    /// on it for this long. It fires between one and two periods after the last data, like Go's
    /// keep-alive check. Default: off.
    pub idle_timeout: Option<Duration>,
    /// Version 2: the per-stream window we advertise (Go's `MaxStreamBuffer`). Default: 256 KiB.
    /// A peer may still send [`INITIAL_PEER_WINDOW`] bytes before it has heard our window, so one
    /// stream can hold up to the larger of the two; beyond that the peer broke flow control and
    /// the session ends with [`ProtocolError::WindowExceeded`](crate::ProtocolError).
    pub stream_window: u32,
    /// Version 1: unread bytes one stream may hold; when a frame would go above it we stop
    /// reading input (head-of-line blocking, as the protocol implies). Default: 4 MiB, the same
    /// as the session budget, as in Go; set it lower to cap one stream's share.
    pub max_stream_unread: usize,
    /// Memory all streams together may hold for unread data: the payloads and the queue slots
    /// holding them, so many tiny payloads cannot hold more than this says (Go's
    /// `MaxReceiveBuffer`). When a frame would go above it we stop reading input until the
    /// application reads. Default: 4 MiB.
    pub max_session_unread: usize,
    /// Peer-opened streams waiting for [`Session::accept`](crate::Session::accept). A SYN beyond
    /// it is refused with a FIN. Default: 1,024.
    pub max_accept_backlog: usize,
    /// Streams open at once, both directions together. A peer SYN beyond it is refused with a
    /// FIN; a local open fails with [`OpenError::TooManyStreams`](crate::OpenError). Default:
    /// 65,536.
    pub max_streams: usize,
    /// Bytes one stream may have written but not yet handed to the transport. Default: 256 KiB.
    pub max_stream_queued: usize,
    /// Bytes all streams together may have written but not yet handed to the transport.
    /// Default: 2 MiB.
    pub max_session_queued: usize,
    /// FINs for refused peer SYNs waiting to be sent. When full we stop reading input rather than
    /// grow. Default: 1,024.
    pub max_pending_refusals: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: Version::V1,
            max_frame_size: 32_768,
            keep_alive_interval: None,
            keep_alive_timeout: None,
            idle_timeout: None,
            stream_window: 256 * 1024,
            max_stream_unread: 4 * 1024 * 1024,
            max_session_unread: 4 * 1024 * 1024,
            max_accept_backlog: 1024,
            max_streams: 65_536,
            max_stream_queued: 256 * 1024,
            max_session_queued: 2 * 1024 * 1024,
            max_pending_refusals: 1024,
        }
    }
}

impl Config {
    /// The unread bytes one stream may hold before it is over its limit: in version 2 what a
    /// peer following the flow-control rules can send, in version 1 `max_stream_unread`.
    pub(crate) fn stream_unread_limit(&self) -> usize {
        match self.version {
            Version::V1 => self.max_stream_unread,
            Version::V2 => self.stream_window.max(INITIAL_PEER_WINDOW) as usize,
        }
    }

    /// Checks that every value can be used by the protocol.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: &'static str| Err(ConfigError { field, reason });
        if self.max_frame_size == 0 || self.max_frame_size > MAX_PAYLOAD {
            return bad("max_frame_size", "must be between 1 and 65,535");
        }
        let out_of_range = |d: Option<Duration>| d.is_some_and(|d| d.is_zero() || d > MAX_TIMER);
        if out_of_range(self.keep_alive_interval) {
            return bad("keep_alive_interval", "must be between 1 ns and a year");
        }
        if out_of_range(self.keep_alive_timeout) {
            return bad("keep_alive_timeout", "must be between 1 ns and a year");
        }
        if let (Some(i), Some(t)) = (self.keep_alive_interval, self.keep_alive_timeout) {
            if t < i {
                return bad(
                    "keep_alive_timeout",
                    "must not be shorter than the interval",
                );
            }
        }
        if out_of_range(self.idle_timeout) {
            return bad("idle_timeout", "must be between 1 ns and a year");
        }
        if (self.stream_window as usize) < MAX_PAYLOAD {
            return bad(
                "stream_window",
                "must hold at least one full frame (65,535)",
            );
        }
        // Go computes `int32(window) - inflight`: a larger window would stop a Go sender.
        if self.stream_window > i32::MAX as u32 {
            return bad(
                "stream_window",
                "must not exceed 2^31 - 1 (Go reads it as int32)",
            );
        }
        if self.max_stream_unread < MAX_PAYLOAD {
            return bad(
                "max_stream_unread",
                "must hold at least one full frame (65,535)",
            );
        }
        if self.max_session_unread < MAX_PAYLOAD + std::mem::size_of::<bytes::Bytes>() {
            return bad("max_session_unread", "must hold at least one full frame");
        }
        if self.max_accept_backlog == 0 {
            return bad("max_accept_backlog", "must not be zero");
        }
        if self.max_streams == 0 {
            return bad("max_streams", "must not be zero");
        }
        if self.max_stream_queued == 0 {
            return bad("max_stream_queued", "must not be zero");
        }
        if self.max_session_queued < self.max_stream_queued {
            return bad(
                "max_session_queued",
                "must not be smaller than max_stream_queued",
            );
        }
        if self.max_pending_refusals == 0 {
            return bad("max_pending_refusals", "must not be zero");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn invalid_values_name_the_field() {
        type Change = fn(&mut Config);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.max_frame_size = 0, "max_frame_size"),
            (|c| c.max_frame_size = 65_536, "max_frame_size"),
            (
                |c| c.keep_alive_interval = Some(Duration::ZERO),
                "keep_alive_interval",
            ),
            (
                |c| {
                    c.keep_alive_interval = Some(Duration::from_secs(10));
                    c.keep_alive_timeout = Some(Duration::from_secs(5));
                },
                "keep_alive_timeout",
            ),
            (|c| c.stream_window = 1000, "stream_window"),
            (|c| c.stream_window = 1 << 31, "stream_window"),
            (|c| c.idle_timeout = Some(Duration::MAX), "idle_timeout"),
            (|c| c.max_session_unread = 1000, "max_session_unread"),
            (|c| c.max_accept_backlog = 0, "max_accept_backlog"),
            (|c| c.max_streams = 0, "max_streams"),
            (|c| c.max_session_queued = 1, "max_session_queued"),
        ];
        for (change, field) in cases {
            let mut c = Config::default();
            change(&mut c);
            assert_eq!(c.validate().map_err(|e| e.field), Err(field), "{c:?}");
        }
    }
}
