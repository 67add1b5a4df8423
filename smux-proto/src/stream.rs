//! One stream's state: its receive queue, its send queue, its version-2 window accounting, its
//! half-close flags and its counters. It is a leaf: it knows nothing of the session or the
//! scheduler. The session routes frames here and keeps the session-wide budgets; the queues of
//! stream ids (`table.rs`, `scheduler.rs`) mark which of them hold the stream in its
//! [`Membership`].

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ResetReason;
use crate::flow::{RecvWindow, SendWindow};

mod counters;

pub use counters::QueuedAhead;
pub(crate) use counters::StreamCounters;

/// Memory one slot of a receive queue takes.
pub(crate) const SLOT: usize = std::mem::size_of::<RxChunk>();

/// A kept payload (a slice of the transport's read buffer, not a copy) is at least a quarter
/// of the buffer it pins (see `decode.rs`), so it is charged that whole buffer: its own bytes
/// and this many times as many again.
pub(crate) const PIN_EXTRA: usize = 3;

/// A received payload waiting to be read.
#[derive(Debug)]
struct RxChunk {
    data: Bytes,
    /// A slice of the transport's read buffer: it keeps that whole buffer alive.
    pinned: bool,
}

/// Received payloads shorter than this are appended to the previous one when it is small too,
/// so a peer sending tiny frames cannot make each byte cost a queue slot and an allocation.
const COALESCE_BELOW: usize = 256;
/// The size up to which small payloads are coalesced into one chunk.
const COALESCE_CHUNK: usize = 1024;

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

    // ---- receive side ----

    /// Unread payload bytes.
    pub fn unread(&self) -> usize {
        self.rx_bytes
    }

    /// Whether data can be taken.
    pub fn has_unread(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Whether this stream queues payload from the peer for reading.
    pub fn accepts_data(&self) -> bool {
        !self
            .flags
            .has(Flags::FIN_RECV | Flags::RELEASED | Flags::EXPIRED | Flags::READS_DROPPED)
    }

    /// Whether payload from the peer is counted as read and dropped (version 2 keeps the
    /// peer's window moving for it until the peer's FIN).
    pub fn discards_data(&self) -> bool {
        self.reads_dropped() && !self.fin_recv()
    }

    /// Memory the receive side holds: unread payload, the rest of the read buffers its pinned
    /// chunks keep alive, and the queue's slots.
    pub fn rx_memory(&self) -> usize {
        self.rx_bytes + PIN_EXTRA * self.pinned + self.rx.capacity() * SLOT
    }

    /// Unread bytes in pinned chunks.
    pub fn pinned(&self) -> usize {
        self.pinned
    }

    /// What [`Stream::rx_memory`] grows by at most when a payload of `len` bytes is queued,
    /// pinned (`pin`) or copied.
    pub fn rx_cost(&self, len: usize, pin: bool) -> usize {
        let cap = self.rx.capacity();
        let grow = if self.rx.len() == cap { cap.max(1) } else { 0 };
        len + pin_extra(len, pin) + grow * SLOT
    }

    /// What [`Stream::rx_memory`] grows by at most when `len` bytes are queued as two payloads
    /// (a piece of a frame now, the rest of it later): two pushes can grow the queue twice.
    pub fn rx_cost_split(&self, len: usize, pin: bool) -> usize {
        let grown = |queued: usize, cap: usize| if queued == cap { cap + cap.max(1) } else { cap };
        let (queued, cap) = (self.rx.len(), self.rx.capacity());
        let after = grown(queued + 1, grown(queued, cap));
        len + pin_extra(len, pin) + (after - cap) * SLOT
    }

    /// Queues a received payload (`pinned`: a slice of the read buffer); returns whether the
    /// queue was empty before. The queue grows by doubling from one slot, so its slots never
    /// cost much more than the chunks it holds, and tiny payloads share a chunk.
    pub fn push_rx(&mut self, data: Bytes, pinned: bool) -> bool {
        let was_empty = self.rx.is_empty();
        self.rx_bytes += data.len();
        if data.len() < COALESCE_BELOW {
            if let Some(back) = self.rx.back_mut() {
                if back.data.len() + data.len() <= COALESCE_CHUNK {
                    // An exact allocation, so memory is what is counted; the copy is at most
                    // one small chunk.
                    let mut merged = BytesMut::with_capacity(back.data.len() + data.len());
                    merged.extend_from_slice(&back.data);
                    merged.extend_from_slice(&data);
                    if std::mem::take(&mut back.pinned) {
                        self.pinned -= back.data.len();
                    }
                    back.data = merged.freeze();
                    return was_empty;
                }
            }
        }
        if self.rx.len() == self.rx.capacity() {
            self.rx.reserve_exact(self.rx.capacity().max(1));
        }
        if pinned {
            self.pinned += data.len();
        }
        self.rx.push_back(RxChunk { data, pinned });
        was_empty
    }

    /// Copies unread data into `buf`; returns the bytes copied.
    pub fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let Some(front) = self.rx.front_mut() else {
                break;
            };
            let n = front.data.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&front.data[..n]);
            done += n;
            if front.pinned {
                self.pinned -= n;
            }
            if n == front.data.len() {
                self.rx.pop_front();
            } else {
                front.data.advance(n);
            }
        }
        self.rx_bytes -= done;
        self.trim_rx();
        done
    }

    /// Takes up to `max` (at least 1) bytes of the first unread chunk without copying.
    pub fn read_chunk(&mut self, max: usize) -> Option<Bytes> {
        let front = self.rx.front_mut()?;
        let (chunk, pinned) = if front.data.len() <= max {
            let c = self.rx.pop_front().expect("a front");
            (c.data, c.pinned)
        } else {
            (front.data.split_to(max), front.pinned)
        };
        if pinned {
            self.pinned -= chunk.len();
        }
        self.rx_bytes -= chunk.len();
        self.trim_rx();
        Some(chunk)
    }

    /// Copies the pinned chunks into allocations of their own, so that the read buffers they
    /// kept alive can go; returns the memory freed (by the count of [`Stream::rx_memory`]).
    pub fn unpin(&mut self) -> usize {
        if self.pinned == 0 {
            return 0;
        }
        for c in self.rx.iter_mut().filter(|c| c.pinned) {
            c.data = Bytes::copy_from_slice(&c.data);
            c.pinned = false;
        }
        PIN_EXTRA * std::mem::take(&mut self.pinned)
    }

    /// Gives back queue memory once most of it is unused.
    fn trim_rx(&mut self) {
        let cap = self.rx.capacity();
        if self.rx.is_empty() {
            self.rx = VecDeque::new();
        } else if cap >= 8 && self.rx.len() * 4 <= cap {
            self.rx.shrink_to(self.rx.len() * 2);
        }
    }

    /// Drops all unread data; returns the memory it held.
    fn drop_rx(&mut self) -> usize {
        let freed = self.rx_memory();
        self.rx = VecDeque::new();
        self.rx_bytes = 0;
        self.pinned = 0;
        freed
    }

    /// The stream no longer takes data: returns the credit it held in the session's budget
    /// (none once it discards what arrives).
    pub fn take_credit(&mut self) -> usize {
        if self.reads_dropped() {
            // Its window keeps moving for the data it discards.
            0
        } else {
            self.recv_window.take_credit()
        }
    }

    // ---- send side ----

    /// Bytes written but not yet handed out as frames.
    pub fn queued(&self) -> usize {
        self.tx_bytes
    }

    /// Version 2: bytes the peer's window lets us accept now.
    pub fn send_window(&self) -> usize {
        self.peer_window.available()
    }

    /// Version 2: the peer's UPD.
    pub fn apply_upd(&mut self, consumed: u32, window: u32) {
        self.peer_window.apply_upd(consumed, window);
    }

    /// Queues `data` for sending.
    pub fn push_tx(&mut self, data: Bytes) {
        self.tx_bytes += data.len();
        self.peer_window.note_written(data.len());
        self.tx.push_back(data);
    }

    /// `n` bytes went to the transport without passing through the queue.
    pub fn note_sent_direct(&mut self, n: usize) {
        self.peer_window.note_written(n);
    }

    /// Queues a copy of `data` in pieces of at most `frame` bytes, each its own allocation, so
    /// that a piece's memory goes as soon as its frame is sent. A small write first fills the
    /// last piece, so many small writes do not cost a piece each.
    pub fn push_tx_copy(&mut self, mut data: &[u8], frame: usize) {
        self.tx_bytes += data.len();
        self.peer_window.note_written(data.len());
        if let Some(back) = self.tx.back_mut().filter(|b| b.len() < frame) {
            let n = (frame - back.len()).min(data.len());
            if n < COALESCE_CHUNK {
                // A piece shared with its writer (`write_bytes`) stays as it is.
                *back = match std::mem::take(back).try_into_mut() {
                    Ok(mut tail) => {
                        tail.extend_from_slice(&data[..n]);
                        data = &data[n..];
                        tail.freeze()
                    }
                    Err(shared) => shared,
                };
            }
        }
        while !data.is_empty() {
            let n = frame.min(data.len());
            self.tx.push_back(copy_in(&data[..n]));
            data = &data[n..];
        }
    }

    /// Takes the payload of the next data frame, at most `max` bytes.
    pub fn pop_tx(&mut self, max: usize) -> Option<Bytes> {
        let out = take_front(&mut self.tx, max)?;
        self.tx_bytes -= out.len();
        if self.tx.is_empty() && self.tx.capacity() > 8 {
            self.tx = VecDeque::new();
        }
        Some(out)
    }

    /// Drops all queued output; returns how many bytes it held.
    pub fn drop_tx(&mut self) -> usize {
        let n = self.tx_bytes;
        self.tx = VecDeque::new();
        self.tx_bytes = 0;
        n
    }

    /// Whether FIN is due now: asked for, not sent, and all data before it handed out.
    pub fn fin_due(&self) -> bool {
        self.fin_queued() && !self.fin_sent() && self.tx.is_empty()
    }
}

/// Copies written bytes into a buffer of our own, placed at the same offset within a 64-byte
/// line as the source. On CPUs whose `rep movsb` slows down tenfold when the destination sits
/// a few bytes past the source modulo the page size (seen on AMD EPYC with FSRM), this keeps
/// the copy at full speed; elsewhere it costs at most 63 bytes.
fn copy_in(data: &[u8]) -> Bytes {
    const LINE: usize = 64;
    if data.len() < 4096 {
        return Bytes::copy_from_slice(data);
    }
    let mut buf = BytesMut::with_capacity(data.len() + LINE);
    let pad = (data.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize) % LINE;
    buf.resize(pad, 0);
    buf.extend_from_slice(data);
    let mut out = buf.freeze();
    out.advance(pad);
    out
}

/// Takes up to `max` bytes from the front of `queue` without copying.
fn take_front(queue: &mut VecDeque<Bytes>, max: usize) -> Option<Bytes> {
    let front = queue.front_mut()?;
    if front.len() <= max {
        queue.pop_front()
    } else {
        Some(front.split_to(max))
    }
}

/// The extra charge of a payload of `len` bytes, pinned or not (see [`PIN_EXTRA`]).
fn pin_extra(len: usize, pin: bool) -> usize {
    if pin {
        PIN_EXTRA * len
    } else {
        0
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
