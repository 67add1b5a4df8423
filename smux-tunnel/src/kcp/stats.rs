//! The counts a socket's sessions keep of what they did and dropped: [`KcpStats`], and the
//! atomic counters behind it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::DropReason;

/// Counts of what a socket's sessions did and dropped. A client's session has its own; a
/// listener's sessions share the listener's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KcpStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams the codec dropped as too short.
    pub dropped_truncated: u64,
    /// Datagrams the codec dropped for a wrong checksum.
    pub dropped_checksum: u64,
    /// Datagrams the codec dropped for a malformed FEC header or shard.
    pub dropped_fec: u64,
    /// Datagrams the codec dropped as longer than any kcp-go sends.
    pub dropped_oversized: u64,
    /// KCP packets the session dropped: too short, another conversation, or malformed.
    pub dropped_kcp: u64,
    /// Datagrams from an address that is not the client's server.
    pub dropped_stranger: u64,
    /// Datagrams that would have opened a session beyond the listener's session cap.
    pub dropped_session_cap: u64,
    /// Datagrams that would have opened a session while the accept queue was full, or after
    /// the listener was dropped.
    pub dropped_backlog: u64,
    /// Outgoing datagrams dropped because the session's send queue was full (the socket had
    /// taken no more for a while; KCP retransmits them).
    pub dropped_outgoing: u64,
    /// Sends and receives the socket failed, other than "would block".
    pub socket_errors: u64,
    /// Sessions opened.
    pub sessions_opened: u64,
    /// Sessions ended for hearing nothing valid for the idle timeout.
    pub sessions_timed_out: u64,
}

/// A handle on a listener's counts that outlives the listener's move elsewhere (into a
/// server's accept loop, say): [`KcpStatsHandle::snapshot`] reads them at any time.
#[derive(Clone)]
pub struct KcpStatsHandle(pub(crate) std::sync::Arc<Counters>);

impl KcpStatsHandle {
    /// The counts so far.
    pub fn snapshot(&self) -> KcpStats {
        self.0.snapshot()
    }
}

impl std::fmt::Debug for KcpStatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) datagrams_in: AtomicU64,
    pub(crate) datagrams_out: AtomicU64,
    pub(crate) dropped_truncated: AtomicU64,
    pub(crate) dropped_checksum: AtomicU64,
    pub(crate) dropped_fec: AtomicU64,
    pub(crate) dropped_oversized: AtomicU64,
    pub(crate) dropped_kcp: AtomicU64,
    pub(crate) dropped_stranger: AtomicU64,
    pub(crate) dropped_session_cap: AtomicU64,
    pub(crate) dropped_backlog: AtomicU64,
    pub(crate) dropped_outgoing: AtomicU64,
    pub(crate) socket_errors: AtomicU64,
    pub(crate) sessions_opened: AtomicU64,
    pub(crate) sessions_timed_out: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn codec_drop(&self, reason: DropReason) {
        match reason {
            DropReason::Truncated => Counters::add(&self.dropped_truncated, 1),
            DropReason::Checksum => Counters::add(&self.dropped_checksum, 1),
            DropReason::Oversized => Counters::add(&self.dropped_oversized, 1),
            // Fec, and any reason added later.
            _ => Counters::add(&self.dropped_fec, 1),
        }
    }

    pub(crate) fn snapshot(&self) -> KcpStats {
        let g = |c: &AtomicU64| c.load(Relaxed);
        KcpStats {
            datagrams_in: g(&self.datagrams_in),
            datagrams_out: g(&self.datagrams_out),
            dropped_truncated: g(&self.dropped_truncated),
            dropped_checksum: g(&self.dropped_checksum),
            dropped_fec: g(&self.dropped_fec),
            dropped_oversized: g(&self.dropped_oversized),
            dropped_kcp: g(&self.dropped_kcp),
            dropped_stranger: g(&self.dropped_stranger),
            dropped_session_cap: g(&self.dropped_session_cap),
            dropped_backlog: g(&self.dropped_backlog),
            dropped_outgoing: g(&self.dropped_outgoing),
            socket_errors: g(&self.socket_errors),
            sessions_opened: g(&self.sessions_opened),
            sessions_timed_out: g(&self.sessions_timed_out),
        }
    }
}
