//! The builder options of the adapters (`async_smux`'s names and units), turned into a
//! [`smux_proto::Config`]. The adapters' `MuxBuilder` setters delegate here, so the checks and
//! the defaults exist once.

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

fn seconds(what: &str, secs: NonZeroU64) -> Duration {
    let d = Duration::from_secs(secs.get());
    assert!(
        d <= MAX_TIMER,
        "{what} must be at most a year, got {secs} s"
    );
    d
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

    /// Send a NOP every `secs` seconds. Panics above a year.
    pub fn keep_alive_interval(&mut self, secs: NonZeroU64) {
        self.config
            .with_keep_alive_interval(Some(seconds("keep-alive interval", secs)));
    }

    /// End the session when nothing arrives for `secs` seconds (default: three intervals, once
    /// an interval is set). Panics above a year.
    pub fn keep_alive_timeout(&mut self, secs: NonZeroU64) {
        self.config
            .with_keep_alive_timeout(Some(seconds("keep-alive timeout", secs)));
        self.keep_alive_timeout_set = true;
    }

    /// Reset a stream that holds the session up for `secs` seconds (see
    /// `Config::stalled_stream_timeout`). Panics above a year.
    pub fn stalled_stream_timeout(&mut self, secs: NonZeroU64) {
        self.config
            .with_stalled_stream_timeout(Some(seconds("stalled-stream timeout", secs)));
    }

    /// Close a stream with no data sent or received for `secs` seconds. Panics above a year.
    pub fn idle_timeout(&mut self, secs: NonZeroU64) {
        self.config
            .with_idle_timeout(Some(seconds("idle timeout", secs)));
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

    /// Version 2: the per-stream window we advertise. Panics below 65,535 (one frame) or
    /// above 2^31 - 1 (what Go can read).
    pub fn stream_window(&mut self, bytes: u32) {
        assert!(
            (65_535..=i32::MAX as u32).contains(&bytes),
            "stream window must be between 65,535 and 2^31 - 1 bytes, got {bytes}"
        );
        self.config.with_stream_window(bytes);
    }

    /// Version 2: how far a stream's window may grow when it tunes itself. Panics above
    /// 2^31 - 1 (what Go can read).
    pub fn max_stream_window(&mut self, bytes: u32) {
        assert!(
            bytes <= i32::MAX as u32,
            "max stream window must be at most 2^31 - 1 bytes, got {bytes}"
        );
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

    /// Largest payload of one frame we send. Panics outside 1..=65,535.
    pub fn max_frame_size(&mut self, bytes: usize) {
        assert!(
            (1..=65_535).contains(&bytes),
            "frame size must be between 1 and 65,535 bytes, got {bytes}"
        );
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
    /// such SYNs are refused. Panics above a year.
    pub fn accept_stall_timeout(&mut self, timeout: Duration) {
        assert!(
            !timeout.is_zero() && timeout <= MAX_TIMER,
            "accept stall timeout must be between 1 ns and a year, got {timeout:?}"
        );
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

    /// The protocol configuration these options make.
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
        if let (Some(i), Some(t)) = (c.keep_alive_interval(), c.keep_alive_timeout()) {
            assert!(
                t >= i,
                "keep-alive timeout ({t:?}) must not be shorter than the interval ({i:?})"
            );
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

    #[test]
    #[should_panic(expected = "frame size")]
    fn frame_size_out_of_range_panics() {
        Options::new(Role::Client).max_frame_size(70_000);
    }

    #[test]
    #[should_panic(expected = "stream window")]
    fn window_too_large_for_go_panics() {
        Options::new(Role::Client).stream_window(u32::MAX);
    }

    #[test]
    #[should_panic(expected = "max stream window")]
    fn max_window_too_large_for_go_panics() {
        Options::new(Role::Client).max_stream_window(u32::MAX);
    }

    #[test]
    #[should_panic(expected = "shorter than the interval")]
    fn timeout_shorter_than_interval_panics() {
        let mut o = Options::new(Role::Client);
        o.keep_alive_interval(nz(10));
        o.keep_alive_timeout(nz(5));
        let _ = o.config();
    }
}
