//! One stream's state: its receive queue, its send queue, its version-2 window accounting, its
//! half-close flags and its counters. It is a leaf: it knows nothing of the session or the
//! scheduler. The session routes frames here and keeps the session-wide budgets; the queues of
//! stream ids (`table.rs`, `scheduler.rs`) mark which of them hold the stream in its
//! [`Membership`].
//!
//! This file has the stream's life (flags, half-close, release); `rx` its receive queue, `tx`
//! its send queue, `counters` what it counts; its version-2 windows are `flow.rs`'s.

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::ResetReason;
use crate::flow::{RecvWindow, SendWindow};

mod counters;
mod rx;
mod tx;

pub use counters::QueuedAhead;
pub(crate) use counters::StreamCounters;
use rx::RxChunk;
#[cfg(test)]
pub(crate) use rx::{PIN_EXTRA, SLOT};

/// One stream. Its size counts once per open stream (the table boxes it), idle streams
/// included: keep what only some streams need out of line (as [`RecvWindow`] keeps the window
/// tuning's measurements), flags in [`Flags`], and counts that a 32-bit window bounds in 32
/// bits.
#[derive(Debug)]
pub(crate) struct Stream {
    // Receive side.
    rx: VecDeque<RxChunk>,
    rx_bytes: usize,
    /// The part of `rx_bytes` in pinned chunks.
    pinned: usize,
    /// Version 2: the window we grant the peer.
    pub recv_window: RecvWindow,

    // Send side: written data in frame-sized chunks, each its own allocation.
    tx: VecDeque<Bytes>,
    tx_bytes: usize,
    /// Version 2: the peer's window for our writes.
    peer_window: SendWindow,

    /// Where it is in its life, what it owes, what the application was told, which of the
    /// session's lists it is in.
    flags: Flags,
    /// Reset by the session: reads and writes fail with this reason.
    reset: Option<ResetReason>,
    /// Last data sent or received, for the idle timeout; `None` while the timeout is off.
    pub last_activity: Option<Stamp>,
    /// The session's queues of ids this stream is in; only those queues change it.
    pub sched: Membership,
    /// What [`Session::stream_stats`](crate::Session::stream_stats) reports.
    pub counters: StreamCounters,
}

/// A stream's yes-or-no state, a bit each.
#[derive(Debug, Default, Clone, Copy)]
struct Flags(u16);

impl Flags {
    /// The peer's FIN arrived: after `rx` drains, reads see end of stream.
    const FIN_RECV: u16 = 1;
    /// The application asked for FIN (shutdown, close, idle expiry or session close); it goes
    /// out after `tx` drains.
    const FIN_QUEUED: u16 = 1 << 1;
    /// Our FIN is on its way out.
    const FIN_SENT: u16 = 1 << 2;
    /// Our SYN is owed.
    const SYN_PENDING: u16 = 1 << 3;
    /// An UPD is owed.
    const UPD_PENDING: u16 = 1 << 4;
    /// A write was refused for lack of room; a `Writable` event is owed.
    const WRITE_BLOCKED: u16 = 1 << 5;
    /// The application released the stream; it is removed once its FIN is out.
    const RELEASED: u16 = 1 << 6;
    /// Nobody will read it (the application dropped its read half or the stream, or it was
    /// reset): data that arrives is counted as read and dropped.
    const READS_DROPPED: u16 = 1 << 7;
    /// The idle timeout closed it.
    const EXPIRED: u16 = 1 << 8;
    /// `Closed` has been reported.
    const CLOSED_REPORTED: u16 = 1 << 9;
    /// In the session's list of streams that may hold the most unread data.
    const HEAVY: u16 = 1 << 10;
    /// Version 2: a deadline for its writer's wait for the peer's window is armed.
    const STALL_WATCHED: u16 = 1 << 11;

    /// Whether any of `flags` is set.
    fn has(self, flags: u16) -> bool {
        self.0 & flags != 0
    }

    /// Whether all of `flags` are set.
    fn all(self, flags: u16) -> bool {
        self.0 & flags == flags
    }

    fn set(&mut self, flag: u16, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }

    /// Sets `flag`; whether it was clear.
    fn raise(&mut self, flag: u16) -> bool {
        let was = self.has(flag);
        self.0 |= flag;
        !was
    }

    /// Clears `flag`; whether it was set.
    fn take(&mut self, flag: u16) -> bool {
        let was = self.has(flag);
        self.0 &= !flag;
        was
    }
}

/// Which of the session's queues of stream ids a stream is in, a bit each. The queues
/// (`table.rs`) choose the bits and are the only ones to change them: the stream only carries
/// them, so that a queue learns in O(1) whether it holds the stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Membership(u8);

impl Membership {
    /// Whether the queue of `bit` holds the stream.
    pub fn contains(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    pub fn insert(&mut self, bit: u8) {
        self.0 |= bit;
    }

    pub fn remove(&mut self, bit: u8) {
        self.0 &= !bit;
    }
}

/// An instant as a stream keeps it: nanoseconds since the session's [`Epoch`], plus one, so
/// that an `Option<Stamp>` takes eight bytes where an `Option<Instant>` takes sixteen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(NonZeroU64);

impl Stamp {
    /// Nanoseconds from `earlier` to this one (none if it is not earlier).
    pub fn nanos_since(self, earlier: Stamp) -> u64 {
        self.0.get().saturating_sub(earlier.0.get())
    }
}

/// The instant a session's [`Stamp`]s count from: when the session was made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epoch(Instant);

impl Epoch {
    pub fn new(at: Instant) -> Epoch {
        Epoch(at)
    }

    /// `t` as a stamp; an instant before the epoch counts as the epoch, and one 584 years
    /// after it as the last stamp.
    pub fn stamp(self, t: Instant) -> Stamp {
        let nanos = t.saturating_duration_since(self.0).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        Stamp(NonZeroU64::MIN.saturating_add(nanos))
    }

    /// The instant `stamp` stands for.
    pub fn instant(self, stamp: Stamp) -> Instant {
        self.0 + Duration::from_nanos(stamp.0.get() - 1)
    }
}

impl Stream {
    /// A stream the peer may send `credit` bytes on before it hears from us (version 2; 0 in
    /// version 1, which has no windows). Boxed, as the stream table keeps it
    /// ([`Streams`](crate::table::Streams)).
    pub fn new(credit: usize) -> Box<Stream> {
        Box::new(Stream {
            rx: VecDeque::new(),
            rx_bytes: 0,
            pinned: 0,
            recv_window: RecvWindow::new(credit),
            tx: VecDeque::new(),
            tx_bytes: 0,
            peer_window: SendWindow::default(),
            flags: Flags::default(),
            reset: None,
            last_activity: None,
            sched: Membership::default(),
            counters: StreamCounters::default(),
        })
    }

    // ---- lifecycle ----

    pub fn is_released(&self) -> bool {
        self.flags.has(Flags::RELEASED)
    }

    /// Nobody will read the stream: unread data is dropped (returns the receive memory freed
    /// and the bytes dropped), and what arrives from now on is counted as read and dropped.
    pub fn drop_reads(&mut self) -> (usize, usize) {
        self.flags.set(Flags::READS_DROPPED, true);
        let unread = self.rx_bytes;
        (self.drop_rx(), unread)
    }

    pub fn reads_dropped(&self) -> bool {
        self.flags.has(Flags::READS_DROPPED)
    }

    pub fn is_expired(&self) -> bool {
        self.flags.has(Flags::EXPIRED)
    }

    pub fn fin_recv(&self) -> bool {
        self.flags.has(Flags::FIN_RECV)
    }

    pub fn fin_queued(&self) -> bool {
        self.flags.has(Flags::FIN_QUEUED)
    }

    pub fn fin_sent(&self) -> bool {
        self.flags.has(Flags::FIN_SENT)
    }

    /// Records the peer's FIN; whether it is new.
    pub fn recv_fin(&mut self) -> bool {
        self.flags.raise(Flags::FIN_RECV)
    }

    /// Asks for our FIN after the queued data; whether it was not asked for before.
    pub fn queue_fin(&mut self) -> bool {
        self.flags.raise(Flags::FIN_QUEUED)
    }

    pub fn mark_fin_sent(&mut self) {
        self.flags.set(Flags::FIN_SENT, true);
    }

    /// The application lets go of the stream: unread data is dropped. Returns the receive
    /// memory freed.
    pub fn release(&mut self) -> usize {
        self.flags.set(Flags::RELEASED, true);
        self.drop_rx()
    }

    /// The idle timeout closes the stream (its reads were dropped first).
    pub fn expire(&mut self) {
        self.flags.set(Flags::EXPIRED, true);
    }

    /// Whether it is in the session's list of streams that may hold the most unread data.
    pub fn is_heavy(&self) -> bool {
        self.flags.has(Flags::HEAVY)
    }

    pub fn set_heavy(&mut self, heavy: bool) {
        self.flags.set(Flags::HEAVY, heavy);
    }

    /// Version 2: whether a deadline for its writer's wait for the peer's window is armed.
    pub fn stall_watched(&self) -> bool {
        self.flags.has(Flags::STALL_WATCHED)
    }

    pub fn set_stall_watched(&mut self, watched: bool) {
        self.flags.set(Flags::STALL_WATCHED, watched);
    }

    /// Marks it reset: reads and writes fail from now on.
    pub fn mark_reset(&mut self, reason: ResetReason) {
        self.reset = Some(reason);
    }

    pub fn reset_reason(&self) -> Option<ResetReason> {
        self.reset
    }

    /// Whether `Closed` is due now (both directions over, not yet reported, not released); if
    /// so it counts as reported.
    pub fn take_closed_report(&mut self) -> bool {
        let due = self.is_done() && !self.flags.has(Flags::CLOSED_REPORTED | Flags::RELEASED);
        if due {
            self.flags.set(Flags::CLOSED_REPORTED, true);
        }
        due
    }

    pub fn closed_reported(&self) -> bool {
        self.flags.has(Flags::CLOSED_REPORTED)
    }

    /// Both directions are over.
    pub fn is_done(&self) -> bool {
        self.flags.has(Flags::EXPIRED) || self.flags.all(Flags::FIN_SENT | Flags::FIN_RECV)
    }

    // ---- control frames owed ----

    /// We opened the stream: its SYN is owed.
    pub fn owe_syn(&mut self) {
        self.flags.set(Flags::SYN_PENDING, true);
    }

    /// Takes the owed SYN.
    pub fn take_syn(&mut self) -> bool {
        self.flags.take(Flags::SYN_PENDING)
    }

    pub fn set_upd_pending(&mut self, pending: bool) {
        self.flags.set(Flags::UPD_PENDING, pending);
    }

    /// Takes the owed UPD.
    pub fn take_upd(&mut self) -> bool {
        self.flags.take(Flags::UPD_PENDING)
    }

    pub fn syn_pending(&self) -> bool {
        self.flags.has(Flags::SYN_PENDING)
    }

    pub fn set_write_blocked(&mut self, blocked: bool) {
        self.flags.set(Flags::WRITE_BLOCKED, blocked);
    }

    pub fn write_blocked(&self) -> bool {
        self.flags.has(Flags::WRITE_BLOCKED)
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
