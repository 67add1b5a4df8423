//! The builder options of the adapters (`async_smux`'s names and units), turned into a
//! [`smux_proto::Config`]. The adapters' `MuxBuilder` setters delegate here, so the defaults
//! exist once; the values are checked in one place, [`Config::validate`], when the session is
//! built.

use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use smux_proto::{Config, Role, Version, MAX_TIMER};

/// A stream may hold this fraction of the session's output queue, at most.
const FAIR_SHARE: usize = 8;

/// How long the transport stays open after an orderly end we began, by default.
pub const DEFAULT_CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Options of one session, as the builders take them.
#[derive(Debug, Clone)]
pub struct Options {
    role: Role,
    config: Config,
    keep_alive_timeout_set: bool,
    max_tx_frames: usize,
    max_rx_frames: Option<usize>,
    close_linger: Duration,
}

fn seconds(secs: NonZeroU64) -> Duration {
    Duration::from_secs(secs.get())
}

impl Options {
    /// Defaults for `role`: version 1, keep-alive and idle timeout off, queues of 1,024 frames.
    pub fn new(role: Role) -> Options {
        Options {
            role,
            config: Config::default(),
            keep_alive_timeout_set: false,
            max_tx_frames: 1024,
            max_rx_frames: None,
            close_linger: DEFAULT_CLOSE_LINGER,
        }
    }

    /// Send a NOP every `secs` seconds (at most a year).
    pub fn keep_alive_interval(&mut self, secs: NonZeroU64) {
        self.config.with_keep_alive_interval(Some(seconds(secs)));
    }

    /// End the session when nothing arrives for `secs` seconds (default: three intervals, once
    /// an interval is set; at most a year).
    pub fn keep_alive_timeout(&mut self, secs: NonZeroU64) {
        self.config.with_keep_alive_timeout(Some(seconds(secs)));
        self.keep_alive_timeout_set = true;
    }

    /// Reset a stream that holds the session up for `secs` seconds (see
    /// `Config::stalled_stream_timeout`; at most a year).
    pub fn stalled_stream_timeout(&mut self, secs: NonZeroU64) {
        self.config.with_stalled_stream_timeout(Some(seconds(secs)));
    }

    /// Close a stream with no data sent or received for `secs` seconds (at most a year).
    pub fn idle_timeout(&mut self, secs: NonZeroU64) {
        self.config.with_idle_timeout(Some(seconds(secs)));
    }

    /// Frames a stream may have queued (counted as frames of the maximum frame size) before
    /// its writes wait.
    pub fn max_tx_queue(&mut self, frames: NonZeroUsize) {
        self.max_tx_frames = frames.get();
    }

    /// The session's receive budget, in frames of the maximum frame size (at least one frame
    /// of 65,535 bytes): `Config::max_session_unread`, in both versions.
    pub fn max_rx_queue(&mut self, frames: NonZeroUsize) {
        self.max_rx_frames = Some(frames.get());
    }

    /// The protocol version (no longer automatic).
    pub fn version(&mut self, version: Version) {
        self.config.with_version(version).with_auto_version(false);
    }

    /// Server side: the version of the client's first frame. Panics for a client.
    pub fn auto_version(&mut self) {
        assert!(
            self.role == Role::Server,
            "with_auto_version is for a server: a client's first frame sets the version"
        );
        self.config.with_auto_version(true);
    }

    /// Version 2: the per-stream window we advertise (65,535, one frame, to 2^31 - 1, what Go
    /// can read).
    pub fn stream_window(&mut self, bytes: u32) {
        self.config.with_stream_window(bytes);
    }

    /// Version 2: how far a stream's window may grow when it tunes itself (at most 2^31 - 1,
    /// what Go can read).
    pub fn max_stream_window(&mut self, bytes: u32) {
        self.config.with_max_stream_window(bytes);
    }

    /// Version 2: the connection-wide window (`Config::max_session_window`).
    pub fn max_session_window(&mut self, bytes: NonZeroUsize) {
        self.config.with_max_session_window(bytes.get());
    }

    /// Version 2: whether stream windows tune themselves.
    pub fn window_tuning(&mut self, on: bool) {
        self.config.with_window_tuning(on);
    }

    /// Largest payload of one frame we send (1..=65,535).
    pub fn max_frame_size(&mut self, bytes: usize) {
        self.config.with_max_frame_size(bytes);
    }

    /// Streams open at once, both directions together.
    pub fn max_streams(&mut self, streams: NonZeroUsize) {
        self.config.with_max_streams(streams.get());
    }

    /// Peer-opened streams waiting for `accept`.
    pub fn max_accept_backlog(&mut self, streams: NonZeroUsize) {
        self.config.with_max_accept_backlog(streams.get());
    }

    /// How long a peer SYN past a full accept backlog waits while nothing is accepted, before
    /// such SYNs are refused (1 ns to a year).
    pub fn accept_stall_timeout(&mut self, timeout: Duration) {
        self.config.with_accept_stall_timeout(timeout);
    }

    /// How long, after an orderly end we began, the worker keeps reading until the peer closes
    /// its side, before it drops the transport. Zero drops it at once. Panics above a year.
    pub fn close_linger(&mut self, linger: Duration) {
        assert!(
            linger <= MAX_TIMER,
            "close linger must be at most a year, got {linger:?}"
        );
        self.close_linger = linger;
    }

    /// See [`Options::close_linger`].
    pub fn linger(&self) -> Duration {
        self.close_linger
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The protocol configuration these options make. Panics, with what
    /// [`Config::validate`] says, if a value is out of range.
    pub fn config(&self) -> Config {
        let mut c = self.config.clone();
        if !self.keep_alive_timeout_set {
            let timeout = c.keep_alive_interval().map(|i| (i * 3).min(MAX_TIMER));
            c.with_keep_alive_timeout(timeout);
        }
        let frame = c.max_frame_size();
        // A stream holds at most a fair share of the session's queue: writers that find the
        // transport busy queue, and the first of them must not take the whole queue (the
        // session's round robin can only share what several streams have queued).
        let stream_queued = self
            .max_tx_frames
            .saturating_mul(frame)
            .min(c.max_session_queued() / FAIR_SHARE)
            .max(frame);
        c.with_max_stream_queued(stream_queued);
        if let Some(frames) = self.max_rx_frames {
            let floor = 65_535 + 64;
            c.with_max_session_unread(frames.saturating_mul(frame).max(floor));
        }
        if let Err(e) = c.validate() {
            panic!("{e}");
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn keep_alive_timeout_defaults_to_three_intervals() {
        let mut o = Options::new(Role::Client);
        o.keep_alive_interval(nz(10));
        assert_eq!(
            o.config().keep_alive_timeout(),
            Some(Duration::from_secs(30))
        );
        o.keep_alive_timeout(nz(45));
        assert_eq!(
            o.config().keep_alive_timeout(),
            Some(Duration::from_secs(45))
        );
    }

    #[test]
    fn defaults_are_off_and_valid() {
        let c = Options::new(Role::Server).config();
        assert_eq!(c.keep_alive_interval(), None);
        assert_eq!(c.idle_timeout(), None);
        assert_eq!(c.version(), Version::V1);
        assert_eq!(c.max_session_unread(), 4 * 1024 * 1024);
        let mut o = Options::new(Role::Server);
        o.version(Version::V2);
        assert_eq!(o.config().max_session_unread(), 32 * 1024 * 1024);
    }

    #[test]
    fn queue_sizes_count_frames() {
        let mut o = Options::new(Role::Server);
        o.max_tx_queue(NonZeroUsize::new(4).unwrap());
        o.max_rx_queue(NonZeroUsize::new(8).unwrap());
        let c = o.config();
        assert_eq!(c.max_stream_queued(), 4 * 32_768);
        assert_eq!(c.max_session_unread(), 8 * 32_768);
        // The same in version 2, and not capped by either version's default.
        o.version(Version::V2);
        o.max_rx_queue(NonZeroUsize::new(2048).unwrap());
        assert_eq!(o.config().max_session_unread(), 2048 * 32_768);
    }

    #[test]
    fn a_stream_holds_at_most_an_eighth_of_the_session_queue() {
        let c = Options::new(Role::Server).config();
        assert_eq!(c.max_stream_queued(), c.max_session_queued() / 8);
    }

    /// Builds the config of `o`, which must fail: what the panic says.
    fn panic_message(o: &Options) -> String {
        let err = std::panic::catch_unwind(|| o.config()).expect_err("an invalid value");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn values_out_of_range_panic_with_what_validate_says() {
        type Set = fn(&mut Options);
        let cases: [(Set, &str); 6] = [
            (
                |o| o.max_frame_size(70_000),
                "max_frame_size must be between 1 and 65,535 bytes, got 70000",
            ),
            (
                |o| o.stream_window(u32::MAX),
                "stream_window must not exceed 2^31 - 1 bytes (Go reads it as int32), \
                 got 4294967295",
            ),
            (
                |o| o.stream_window(1000),
                "stream_window must hold at least one full frame (65,535 bytes), got 1000",
            ),
            (
                |o| o.max_stream_window(u32::MAX),
                "max_stream_window must not exceed 2^31 - 1 bytes (Go reads it as int32)",
            ),
            (
                |o| o.idle_timeout(nz(366 * 24 * 3600)),
                "idle_timeout must be between 1 ns and a year, got 31622400s",
            ),
            (
                |o| o.accept_stall_timeout(Duration::ZERO),
                "accept_stall_timeout must be between 1 ns and a year, got 0ns",
            ),
        ];
        for (set, message) in cases {
            let mut o = Options::new(Role::Client);
            set(&mut o);
            let got = panic_message(&o);
            assert!(got.contains(message), "{got:?} does not say {message:?}");
        }
    }

    #[test]
    #[should_panic(
        expected = "keep_alive_timeout must not be shorter than keep_alive_interval, got 5s \
                    with an interval of 10s"
    )]
    fn timeout_shorter_than_interval_panics() {
        let mut o = Options::new(Role::Client);
        o.keep_alive_interval(nz(10));
        o.keep_alive_timeout(nz(5));
        let _ = o.config();
    }
}
