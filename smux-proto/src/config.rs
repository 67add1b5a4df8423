//! Session configuration: protocol version, frame size, timers, and a limit for every quantity a
//! peer can make us hold.
//!
//! [`Config`] is `#[non_exhaustive]`: start from [`Config::default`] and change what you need
//! with its `with_*` setters. Values are checked in one place, [`Config::validate`], which
//! [`Session::new`](crate::Session::new) calls.

use std::time::Duration;

use crate::error::ConfigError;
use crate::wire::{Version, MAX_PAYLOAD, MAX_WINDOW};

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

/// Configuration of one [`Session`](crate::Session).
///
/// ```
/// use smux_proto::{Config, Version};
/// use std::time::Duration;
///
/// let mut config = Config::default();
/// config
///     .with_version(Version::V2)
///     .with_keep_alive_interval(Some(Duration::from_secs(10)));
/// assert!(config.validate().is_ok());
/// assert_eq!(config.version(), Version::V2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    version: Version,
    auto_version: bool,
    max_frame_size: usize,
    keep_alive_interval: Option<Duration>,
    keep_alive_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    stream_window: u32,
    max_stream_window: u32,
    window_tuning: bool,
    max_stream_unread: usize,
    max_session_unread: Option<usize>,
    max_session_window: usize,
    max_accept_backlog: usize,
    accept_stall_timeout: Duration,
    stalled_stream_timeout: Option<Duration>,
    max_streams: usize,
    max_stream_queued: usize,
    max_session_queued: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: Version::V1,
            auto_version: false,
            max_frame_size: 32_768,
            keep_alive_interval: None,
            keep_alive_timeout: None,
            idle_timeout: None,
            stream_window: 256 * 1024,
            max_stream_window: 16 * 1024 * 1024,
            window_tuning: true,
            max_stream_unread: 4 * 1024 * 1024,
            max_session_unread: None,
            max_session_window: 4 * 1024 * 1024,
            max_accept_backlog: 1024,
            accept_stall_timeout: Duration::from_secs(1),
            stalled_stream_timeout: None,
            max_streams: 65_536,
            max_stream_queued: 256 * 1024,
            max_session_queued: 2 * 1024 * 1024,
        }
    }
}

/// A getter and a chainable setter per field; the doc comment of each pair is the field's.
impl Config {
    /// Protocol version spoken on the wire. Default: [`Version::V1`].
    pub fn version(&self) -> Version {
        self.version
    }

    /// Sets [`Config::version`].
    pub fn with_version(&mut self, v: Version) -> &mut Self {
        self.version = v;
        self
    }

    /// Server side: speak whichever version the client's first frame carries, sending nothing
    /// before it arrives (keep-alives and the SYNs of streams we open wait for it);
    /// [`Config::version`] is then that version. A client session refuses it
    /// ([`Session::new`](crate::Session::new) fails): its first frame sets the version.
    /// Default: off.
    pub fn auto_version(&self) -> bool {
        self.auto_version
    }

    /// Sets [`Config::auto_version`].
    pub fn with_auto_version(&mut self, auto: bool) -> &mut Self {
        self.auto_version = auto;
        self
    }

    /// Largest payload we put in one PSH frame (1..=65,535). Default: 32,768, as Go. We accept
    /// any length up to 65,535 from the peer whatever this says.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Sets [`Config::max_frame_size`].
    pub fn with_max_frame_size(&mut self, bytes: usize) -> &mut Self {
        self.max_frame_size = bytes;
        self
    }

    /// Send a NOP this often. Default: off.
    pub fn keep_alive_interval(&self) -> Option<Duration> {
        self.keep_alive_interval
    }

    /// Sets [`Config::keep_alive_interval`].
    pub fn with_keep_alive_interval(&mut self, d: Option<Duration>) -> &mut Self {
        self.keep_alive_interval = d;
        self
    }

    /// End the session when no frame header has arrived for this long. Default: off.
    pub fn keep_alive_timeout(&self) -> Option<Duration> {
        self.keep_alive_timeout
    }

    /// Sets [`Config::keep_alive_timeout`].
    pub fn with_keep_alive_timeout(&mut self, d: Option<Duration>) -> &mut Self {
        self.keep_alive_timeout = d;
        self
    }

    /// Close a stream (send FIN, reads end, writes fail) when no data has been sent or received
    /// on it for this long. It fires between one and two periods after the last data, like Go's
    /// keep-alive check. Default: off.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Sets [`Config::idle_timeout`].
    pub fn with_idle_timeout(&mut self, d: Option<Duration>) -> &mut Self {
        self.idle_timeout = d;
        self
    }

    /// Version 2: the per-stream window we advertise (Go's `MaxStreamBuffer`), 65,535 to
    /// 2^31 - 1. Default: 256 KiB. A peer may send [`INITIAL_PEER_WINDOW`](crate::INITIAL_PEER_WINDOW) bytes before it has
    /// heard our window; beyond what we allowed it broke flow control and the session ends with
    /// [`ProtocolError::WindowExceeded`](crate::ProtocolError).
    pub fn stream_window(&self) -> u32 {
        self.stream_window
    }

    /// Sets [`Config::stream_window`].
    pub fn with_stream_window(&mut self, bytes: u32) -> &mut Self {
        self.stream_window = bytes;
        self
    }

    /// Version 2: how far a stream's window may grow when it tunes itself
    /// ([`Config::window_tuning`]); never below [`Config::stream_window`], and never beyond
    /// what the session's budget ([`Config::max_session_unread`]) has room for. Up to
    /// 2^31 - 1. Default: 16 MiB.
    pub fn max_stream_window(&self) -> u32 {
        self.max_stream_window.max(self.stream_window)
    }

    /// Sets [`Config::max_stream_window`].
    pub fn with_max_stream_window(&mut self, bytes: u32) -> &mut Self {
        self.max_stream_window = bytes;
        self
    }

    /// Version 2: whether stream windows tune themselves. A stream starts at
    /// [`Config::stream_window`] (or, once the session has tuned a stream's window, at that
    /// window: a fresh stream on a warm connection does not start slow). When the window held
    /// the peer back (it sent half a window or more within a round trip, or came within an
    /// eighth of a window of our edge) while our reader kept up (half a window read within one
    /// and a half round trips), the window doubles, up to [`Config::max_stream_window`] and as
    /// far as the session's budget allows. The round trip is measured from an UPD to the first
    /// data beyond the edge it moved, averaged over the samples (so that it includes what the
    /// path queues). A window never shrinks, and the edge we advertised never moves left. Go
    /// peers honour any window we advertise. Default: on.
    pub fn window_tuning(&self) -> bool {
        self.window_tuning
    }

    /// Sets [`Config::window_tuning`].
    pub fn with_window_tuning(&mut self, on: bool) -> &mut Self {
        self.window_tuning = on;
        self
    }

    /// Version 1: unread bytes one stream may hold; when a frame would go above it we stop
    /// reading input (head-of-line blocking, as the protocol implies). Default: 4 MiB, the same
    /// as the session budget, as in Go; set it lower to cap one stream's share.
    pub fn max_stream_unread(&self) -> usize {
        self.max_stream_unread
    }

    /// Sets [`Config::max_stream_unread`].
    pub fn with_max_stream_unread(&mut self, bytes: usize) -> &mut Self {
        self.max_stream_unread = bytes;
        self
    }

    /// The session's receive budget: the memory all streams together may hold for data
    /// received and not yet read (payloads and the queue slots holding them), streams waiting
    /// in the accept backlog included. Default: 4 MiB in version 1 (Go's `MaxReceiveBuffer`),
    /// 32 MiB in version 2 (see below); a value set here applies to both.
    ///
    /// Version 1: when a frame would go above it we stop reading input until the application
    /// reads (head-of-line blocking, as the protocol implies; see
    /// [`Config::stalled_stream_timeout`]).
    ///
    /// Version 2: we never stop reading a peer that keeps to our windows (that can deadlock
    /// both sides). The windows we grant stay within [`Config::max_session_window`]. But
    /// every fresh stream may carry [`INITIAL_PEER_WINDOW`](crate::INITIAL_PEER_WINDOW) bytes
    /// before the peer hears from us, which no budget can refuse. So when a frame would take
    /// the memory held above the budget, the stream holding the most unread data (or, if no
    /// stream holds 16 KiB, the frame's own stream) is reset
    /// ([`ResetReason::ReceiveBudget`](crate::ResetReason::ReceiveBudget)): its unread data is
    /// dropped, FIN is sent, its reads fail, and data the peer still sends on it is dropped and
    /// counted as read, so the peer's writer is never left without window. The default of
    /// 32 MiB holds 128 fresh streams' initial windows at once: a burst of 100 streams that
    /// each send their whole initial window before our reader runs (25 MiB) needs no reset.
    pub fn max_session_unread(&self) -> usize {
        self.max_session_unread.unwrap_or(match self.version {
            Version::V1 => 4 * 1024 * 1024,
            Version::V2 => 32 * 1024 * 1024,
        })
    }

    /// Sets [`Config::max_session_unread`].
    pub fn with_max_session_unread(&mut self, bytes: usize) -> &mut Self {
        self.max_session_unread = Some(bytes);
        self
    }

    /// Version 2: what the windows we grant may let the peer send on all streams together (a
    /// connection-wide window, as rust-yamux's `max_connection_receive_window`), at most
    /// [`Config::max_session_unread`]. A window grows only while the total stays within it;
    /// every stream may have 64 KiB whatever it says, so that idle open windows cannot starve
    /// the rest. Windows far past the path's bandwidth-delay product add no throughput, only
    /// queueing: raise it for paths whose product is larger. The protocol's initial windows
    /// are outside it. Default: 4 MiB.
    pub fn max_session_window(&self) -> usize {
        self.max_session_window.min(self.max_session_unread())
    }

    /// Sets [`Config::max_session_window`].
    pub fn with_max_session_window(&mut self, bytes: usize) -> &mut Self {
        self.max_session_window = bytes;
        self
    }

    /// Peer-opened streams waiting for [`Session::accept`](crate::Session::accept). A SYN
    /// beyond it waits for room while opens are held (see
    /// [`Session::set_hold_opens`](crate::Session::set_hold_opens) and
    /// [`Config::accept_stall_timeout`]) and is refused with a FIN otherwise. Default: 1,024.
    pub fn max_accept_backlog(&self) -> usize {
        self.max_accept_backlog
    }

    /// Sets [`Config::max_accept_backlog`].
    pub fn with_max_accept_backlog(&mut self, streams: usize) -> &mut Self {
        self.max_accept_backlog = streams;
        self
    }

    /// How long a peer SYN past a full accept backlog waits while nothing is accepted. While
    /// it waits we read no further input; once no stream has been accepted for this long,
    /// SYNs past the backlog are refused with a FIN until one is. Default: 1 s.
    pub fn accept_stall_timeout(&self) -> Duration {
        self.accept_stall_timeout
    }

    /// Sets [`Config::accept_stall_timeout`].
    pub fn with_accept_stall_timeout(&mut self, d: Duration) -> &mut Self {
        self.accept_stall_timeout = d;
        self
    }

    /// How long a stream may hold the session up before it is reset: its unread data is
    /// dropped, FIN is sent, and its reads and writes fail with
    /// [`StreamError::Reset`](crate::StreamError::Reset). Default: off.
    ///
    /// Version 1: when input has waited this long because unread data is at a limit, the
    /// stream whose frame is at its own limit is reset, or, at the session's limit, the stream
    /// holding the most unread data ([`ResetReason::StalledReader`](crate::ResetReason)), and
    /// input goes on. Off, input waits for the readers however long they take.
    ///
    /// Version 2 never stops reading (see [`Config::max_session_unread`]); there the timeout is
    /// for our writers: a stream whose writer has waited this long for the peer's window
    /// ([`ResetReason::StalledWriter`](crate::ResetReason)) is reset. A slow reader on the
    /// other side is back-pressure, and its window reopens as it reads; a reader that is
    /// gone (a peer that dropped the stream and drops its data without a window update, as
    /// Go does) never reopens it, and without this timeout our writer waits for good.
    pub fn stalled_stream_timeout(&self) -> Option<Duration> {
        self.stalled_stream_timeout
    }

    /// Sets [`Config::stalled_stream_timeout`].
    pub fn with_stalled_stream_timeout(&mut self, d: Option<Duration>) -> &mut Self {
        self.stalled_stream_timeout = d;
        self
    }

    /// Streams open at once, both directions together. A peer SYN beyond it is refused with a
    /// FIN; a local open fails with [`OpenError::TooManyStreams`](crate::OpenError). It also
    /// bounds the refusals waiting to be sent (see [`Session::wants_input`](crate::Session)).
    /// Default: 65,536.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// Sets [`Config::max_streams`].
    pub fn with_max_streams(&mut self, streams: usize) -> &mut Self {
        self.max_streams = streams;
        self
    }

    /// Bytes one stream may have written but not yet handed to the transport. Default: 256 KiB.
    pub fn max_stream_queued(&self) -> usize {
        self.max_stream_queued
    }

    /// Sets [`Config::max_stream_queued`].
    pub fn with_max_stream_queued(&mut self, bytes: usize) -> &mut Self {
        self.max_stream_queued = bytes;
        self
    }

    /// Bytes all streams together may have written but not yet handed to the transport. The
    /// memory held for them stays within this plus one frame. Default: 2 MiB.
    pub fn max_session_queued(&self) -> usize {
        self.max_session_queued
    }

    /// Sets [`Config::max_session_queued`].
    pub fn with_max_session_queued(&mut self, bytes: usize) -> &mut Self {
        self.max_session_queued = bytes;
        self
    }
}

impl Config {
    /// Checks that every value can be used by the protocol. The error names the field, what
    /// it must be, and the value it had.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason, value: &dyn std::fmt::Debug| {
            Err(ConfigError::new(field, reason, format!("{value:?}")))
        };
        if self.max_frame_size == 0 || self.max_frame_size > MAX_PAYLOAD {
            return bad(
                "max_frame_size",
                "must be between 1 and 65,535 bytes",
                &self.max_frame_size,
            );
        }
        let timers = [
            ("keep_alive_interval", self.keep_alive_interval),
            ("keep_alive_timeout", self.keep_alive_timeout),
            ("idle_timeout", self.idle_timeout),
            ("stalled_stream_timeout", self.stalled_stream_timeout),
            ("accept_stall_timeout", Some(self.accept_stall_timeout)),
        ];
        for (field, d) in timers {
            if let Some(d) = d.filter(|d| d.is_zero() || *d > MAX_TIMER) {
                return bad(field, "must be between 1 ns and a year", &d);
            }
        }
        if let (Some(i), Some(t)) = (self.keep_alive_interval, self.keep_alive_timeout) {
            if t < i {
                return Err(ConfigError::new(
                    "keep_alive_timeout",
                    "must not be shorter than keep_alive_interval",
                    format!("{t:?} with an interval of {i:?}"),
                ));
            }
        }
        if (self.stream_window as usize) < MAX_PAYLOAD {
            return bad(
                "stream_window",
                "must hold at least one full frame (65,535 bytes)",
                &self.stream_window,
            );
        }
        let window_too_large = "must not exceed 2^31 - 1 bytes (Go reads it as int32)";
        if self.stream_window > MAX_WINDOW {
            return bad("stream_window", window_too_large, &self.stream_window);
        }
        if self.max_stream_window > MAX_WINDOW {
            return bad(
                "max_stream_window",
                window_too_large,
                &self.max_stream_window,
            );
        }
        if self.max_stream_unread < MAX_PAYLOAD {
            return bad(
                "max_stream_unread",
                "must hold at least one full frame (65,535 bytes)",
                &self.max_stream_unread,
            );
        }
        // A full frame and the queue slot that holds it (a few words).
        if self.max_session_unread() < MAX_PAYLOAD + 64 {
            return bad(
                "max_session_unread",
                "must hold at least one full frame and its queue slot (65,599 bytes)",
                &self.max_session_unread(),
            );
        }
        let zero = "must not be zero";
        if self.max_accept_backlog == 0 {
            return bad("max_accept_backlog", zero, &0);
        }
        if self.max_streams == 0 {
            return bad("max_streams", zero, &0);
        }
        if self.max_stream_queued == 0 {
            return bad("max_stream_queued", zero, &0);
        }
        if self.max_session_queued < self.max_stream_queued {
            return Err(ConfigError::new(
                "max_session_queued",
                "must not be smaller than max_stream_queued",
                format!(
                    "{} with max_stream_queued {}",
                    self.max_session_queued, self.max_stream_queued
                ),
            ));
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
            (
                |c| {
                    c.with_max_frame_size(0);
                },
                "max_frame_size",
            ),
            (
                |c| {
                    c.with_max_frame_size(65_536);
                },
                "max_frame_size",
            ),
            (
                |c| {
                    c.with_keep_alive_interval(Some(Duration::ZERO));
                },
                "keep_alive_interval",
            ),
            (
                |c| {
                    c.with_keep_alive_interval(Some(Duration::from_secs(10)))
                        .with_keep_alive_timeout(Some(Duration::from_secs(5)));
                },
                "keep_alive_timeout",
            ),
            (
                |c| {
                    c.with_stream_window(1000);
                },
                "stream_window",
            ),
            (
                |c| {
                    c.with_stream_window(1 << 31);
                },
                "stream_window",
            ),
            (
                |c| {
                    c.with_max_stream_window(1 << 31);
                },
                "max_stream_window",
            ),
            (
                |c| {
                    c.with_idle_timeout(Some(Duration::MAX));
                },
                "idle_timeout",
            ),
            (
                |c| {
                    c.with_accept_stall_timeout(Duration::ZERO);
                },
                "accept_stall_timeout",
            ),
            (
                |c| {
                    c.with_max_session_unread(1000);
                },
                "max_session_unread",
            ),
            (
                |c| {
                    c.with_max_accept_backlog(0);
                },
                "max_accept_backlog",
            ),
            (
                |c| {
                    c.with_max_streams(0);
                },
                "max_streams",
            ),
            (
                |c| {
                    c.with_max_session_queued(1);
                },
                "max_session_queued",
            ),
        ];
        for (change, field) in cases {
            let mut c = Config::default();
            change(&mut c);
            assert_eq!(c.validate().map_err(|e| e.field), Err(field), "{c:?}");
        }
    }

    #[test]
    fn errors_say_what_the_value_must_be_and_what_it_was() {
        let mut c = Config::default();
        c.with_max_frame_size(70_000);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid config: max_frame_size must be between 1 and 65,535 bytes, got 70000"
        );
        let mut c = Config::default();
        c.with_idle_timeout(Some(MAX_TIMER + Duration::from_secs(1)));
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid config: idle_timeout must be between 1 ns and a year, got 31536001s"
        );
        let mut c = Config::default();
        c.with_keep_alive_interval(Some(Duration::from_secs(10)))
            .with_keep_alive_timeout(Some(Duration::from_secs(5)));
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid config: keep_alive_timeout must not be shorter than keep_alive_interval, \
             got 5s with an interval of 10s"
        );
    }

    #[test]
    fn setters_chain() {
        let mut c = Config::default();
        c.with_version(Version::V2).with_stream_window(65_535);
        assert_eq!((c.version(), c.stream_window()), (Version::V2, 65_535));
    }
}
