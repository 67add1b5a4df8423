//! One stream's state: its receive queue, its send queue, its version-2 window accounting and
//! its half-close flags. It knows nothing of the session: the session routes frames here and
//! keeps the session-wide budgets; the scheduler keeps which of its queues the stream is in.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ResetReason;
use crate::scheduler::Membership;
use crate::session::StreamCounters;
use crate::wire::INITIAL_PEER_WINDOW;

/// Memory one slot of a receive queue takes.
pub(crate) const SLOT: usize = std::mem::size_of::<Bytes>();

/// Received payloads shorter than this are appended to the previous one when it is small too,
/// so a peer sending tiny frames cannot make each byte cost a queue slot and an allocation.
const COALESCE_BELOW: usize = 256;
/// The size up to which small payloads are coalesced into one chunk.
const COALESCE_CHUNK: usize = 1024;

#[derive(Debug)]
pub(crate) struct Stream {
    // Receive side.
    rx: VecDeque<Bytes>,
    rx_bytes: usize,
    /// The peer's FIN arrived: after `rx` drains, reads see end of stream.
    fin_recv: bool,
    /// Version 2: bytes the application has read, mod 2^32 (UPD's `consumed`).
    consumed: u32,
    /// Version 2: bytes read since the last window grant.
    since_grant: usize,
    /// Version 2: how far past `consumed` the peer may send: the furthest edge we (or the
    /// protocol's initial window) allowed, minus `consumed`. Never moves the edge left.
    credit: usize,

    // Send side: written data in frame-sized chunks, each its own allocation.
    tx: VecDeque<Bytes>,
    tx_bytes: usize,
    /// The application asked for FIN (shutdown, close, idle expiry or session close); it goes
    /// out after `tx` drains.
    fin_queued: bool,
    /// Our FIN is on its way out.
    fin_sent: bool,
    /// Version 2: bytes accepted for sending, mod 2^32.
    written: u32,
    /// Version 2: the peer's last UPD.
    peer_consumed: u32,
    peer_window: u32,

    // Control frames owed, and what the application was told.
    syn_pending: bool,
    upd_pending: bool,
    /// A write was refused for lack of room; a `Writable` event is owed.
    write_blocked: bool,
    /// The application released the stream; it is removed once its FIN is out.
    released: bool,
    /// Nobody will read it (the application dropped its read half or the stream, or it was
    /// reset): data that arrives is counted as read and dropped.
    reads_dropped: bool,
    /// In the session's list of streams that may hold the most unread data.
    pub heavy: bool,
    /// Version 2: a deadline for its writer's wait for the peer's window is armed.
    pub stall_watched: bool,
    /// Reset by the session: reads and writes fail with this reason.
    reset: Option<ResetReason>,
    /// The idle timeout closed it.
    expired: bool,
    /// `Closed` has been reported.
    closed_reported: bool,
    /// Last data sent or received, for the idle timeout; `None` while the timeout is off.
    pub last_activity: Option<Instant>,
    /// The scheduler's queues this stream is in; only the scheduler changes it.
    pub sched: Membership,
    /// What [`Session::stream_stats`](crate::Session::stream_stats) reports.
    pub counters: StreamCounters,
    /// Version 2: the window grants top the credit up to, and how it tunes itself.
    pub tuning: Tuning,
}

/// Version 2: one stream's receive window as it tunes itself (`Config::window_tuning`).
#[derive(Debug, Default)]
pub(crate) struct Tuning {
    /// What a grant tops the credit up to: the starting window, or more once grown.
    pub window: usize,
    /// What the tuning measures, in a box of its own that only version 2 with tuning on makes
    /// ([`Tuning::state_mut`]), at the stream's first data or first grant: an idle stream, a
    /// version 1 stream or one with tuning off carries a pointer, not the measurements. `None`
    /// reads as [`TuningState::default`].
    state: Option<Box<TuningState>>,
}

/// What the window tuning measures on one stream ([`Tuning`]).
#[derive(Debug, Default)]
pub(crate) struct TuningState {
    /// Since the last grant, the window held the peer back: data arrived that left it within
    /// an eighth of the window of our edge, or it sent half a window or more within a round
    /// trip (with grants every half window, a window lets through between half and all of
    /// itself per round trip).
    pub held_back: bool,
    /// The round trip over which arrivals are being counted began here.
    pub rate_since: Option<Instant>,
    /// Bytes that arrived since `rate_since`.
    pub rate_bytes: usize,
    /// When the last grant was made.
    pub last_grant: Option<Instant>,
    /// A grant whose UPD is not yet sent: the edge it moved from, in bytes received.
    pub probe_edge: Option<u64>,
    /// That UPD went out at this instant: the first data beyond the old edge gives a round
    /// trip.
    pub probe: Option<(Instant, u64)>,
}

impl Tuning {
    /// What was measured; `None` if nothing was yet (all of it as in
    /// [`TuningState::default`]).
    pub fn state(&self) -> Option<&TuningState> {
        self.state.as_deref()
    }

    /// What is measured, made now if nothing was yet: only for version 2 with tuning on.
    pub fn state_mut(&mut self) -> &mut TuningState {
        self.state.get_or_insert_with(Box::default)
    }

    /// The UPD of a grant goes out at `now`: if the grant marked the edge it moved from, the
    /// first data beyond that edge will give a round trip.
    pub fn send_probe(&mut self, now: Instant) {
        if let Some(t) = self.state.as_deref_mut() {
            if let Some(edge) = t.probe_edge.take() {
                t.probe = Some((now, edge));
            }
        }
    }
}

impl Stream {
    /// A stream the peer may send `credit` bytes on before it hears from us (version 2; 0 in
    /// version 1, which has no windows). Boxed, as the stream table keeps it
    /// ([`Streams`](crate::scheduler::Streams)).
    pub fn new(credit: usize) -> Box<Stream> {
        Box::new(Stream {
            rx: VecDeque::new(),
            rx_bytes: 0,
            fin_recv: false,
            consumed: 0,
            since_grant: 0,
            credit,
            tx: VecDeque::new(),
            tx_bytes: 0,
            fin_queued: false,
            fin_sent: false,
            written: 0,
            peer_consumed: 0,
            peer_window: INITIAL_PEER_WINDOW,
            syn_pending: false,
            upd_pending: false,
            write_blocked: false,
            released: false,
            reads_dropped: false,
            heavy: false,
            stall_watched: false,
            reset: None,
            expired: false,
            closed_reported: false,
            last_activity: None,
            sched: Membership::default(),
            counters: StreamCounters::default(),
            tuning: Tuning::default(),
        })
    }

    // ---- lifecycle ----

    pub fn is_released(&self) -> bool {
        self.released
    }

    /// Nobody will read the stream: unread data is dropped (returns the receive memory freed
    /// and the bytes dropped), and what arrives from now on is counted as read and dropped.
    pub fn drop_reads(&mut self) -> (usize, usize) {
        self.reads_dropped = true;
        let unread = self.rx_bytes;
        (self.drop_rx(), unread)
    }

    pub fn reads_dropped(&self) -> bool {
        self.reads_dropped
    }

    pub fn is_expired(&self) -> bool {
        self.expired
    }

    pub fn fin_recv(&self) -> bool {
        self.fin_recv
    }

    pub fn fin_queued(&self) -> bool {
        self.fin_queued
    }

    pub fn fin_sent(&self) -> bool {
        self.fin_sent
    }

    /// Records the peer's FIN; whether it is new.
    pub fn recv_fin(&mut self) -> bool {
        !std::mem::replace(&mut self.fin_recv, true)
    }

    /// Asks for our FIN after the queued data; whether it was not asked for before.
    pub fn queue_fin(&mut self) -> bool {
        !std::mem::replace(&mut self.fin_queued, true)
    }

    pub fn mark_fin_sent(&mut self) {
        self.fin_sent = true;
    }

    /// The application lets go of the stream: unread data is dropped. Returns the receive
    /// memory freed.
    pub fn release(&mut self) -> usize {
        self.released = true;
        self.drop_rx()
    }

    /// The idle timeout closes the stream (its reads were dropped first).
    pub fn expire(&mut self) {
        self.expired = true;
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
        let due = self.is_done() && !self.closed_reported && !self.released;
        self.closed_reported |= due;
        due
    }

    pub fn closed_reported(&self) -> bool {
        self.closed_reported
    }

    /// Both directions are over.
    pub fn is_done(&self) -> bool {
        self.expired || (self.fin_sent && self.fin_recv)
    }

    // ---- control frames owed ----

    /// We opened the stream: its SYN is owed.
    pub fn owe_syn(&mut self) {
        self.syn_pending = true;
    }

    /// Takes the owed SYN.
    pub fn take_syn(&mut self) -> bool {
        std::mem::take(&mut self.syn_pending)
    }

    pub fn set_upd_pending(&mut self, pending: bool) {
        self.upd_pending = pending;
    }

    /// Takes the owed UPD.
    pub fn take_upd(&mut self) -> bool {
        std::mem::take(&mut self.upd_pending)
    }

    pub fn syn_pending(&self) -> bool {
        self.syn_pending
    }

    pub fn set_write_blocked(&mut self, blocked: bool) {
        self.write_blocked = blocked;
    }

    pub fn write_blocked(&self) -> bool {
        self.write_blocked
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
        !self.fin_recv && !self.released && !self.expired && !self.reads_dropped
    }

    /// Whether payload from the peer is counted as read and dropped (version 2 keeps the
    /// peer's window moving for it until the peer's FIN).
    pub fn discards_data(&self) -> bool {
        self.reads_dropped && !self.fin_recv
    }

    /// Memory the receive side holds: unread payload plus the queue's slots.
    pub fn rx_memory(&self) -> usize {
        self.rx_bytes + self.rx.capacity() * SLOT
    }

    /// What [`Stream::rx_memory`] grows by at most when a payload of `len` bytes is queued.
    pub fn rx_cost(&self, len: usize) -> usize {
        let cap = self.rx.capacity();
        let grow = if self.rx.len() == cap { cap.max(1) } else { 0 };
        len + grow * SLOT
    }

    /// What [`Stream::rx_memory`] grows by at most when `len` bytes are queued as two payloads
    /// (a piece of a frame now, the rest of it later): two pushes can grow the queue twice.
    pub fn rx_cost_split(&self, len: usize) -> usize {
        let grown = |queued: usize, cap: usize| if queued == cap { cap + cap.max(1) } else { cap };
        let (queued, cap) = (self.rx.len(), self.rx.capacity());
        let after = grown(queued + 1, grown(queued, cap));
        len + (after - cap) * SLOT
    }

    /// Queues a received payload; returns whether the queue was empty before. The queue grows
    /// by doubling from one slot, so its slots never cost much more than the chunks it holds,
    /// and tiny payloads share a chunk.
    pub fn push_rx(&mut self, data: Bytes) -> bool {
        let was_empty = self.rx.is_empty();
        self.rx_bytes += data.len();
        if data.len() < COALESCE_BELOW {
            if let Some(back) = self.rx.back_mut() {
                if back.len() + data.len() <= COALESCE_CHUNK {
                    // An exact allocation, so memory is what is counted; the copy is at most
                    // one small chunk.
                    let mut merged = BytesMut::with_capacity(back.len() + data.len());
                    merged.extend_from_slice(back);
                    merged.extend_from_slice(&data);
                    *back = merged.freeze();
                    return was_empty;
                }
            }
        }
        if self.rx.len() == self.rx.capacity() {
            self.rx.reserve_exact(self.rx.capacity().max(1));
        }
        self.rx.push_back(data);
        was_empty
    }

    /// Copies unread data into `buf`; returns the bytes copied.
    pub fn read_into(&mut self, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let Some(front) = self.rx.front_mut() else {
                break;
            };
            let n = front.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&front[..n]);
            done += n;
            if n == front.len() {
                self.rx.pop_front();
            } else {
                front.advance(n);
            }
        }
        self.rx_bytes -= done;
        self.trim_rx();
        done
    }

    /// Takes up to `max` (at least 1) bytes of the first unread chunk without copying.
    pub fn read_chunk(&mut self, max: usize) -> Option<Bytes> {
        let chunk = take_front(&mut self.rx, max)?;
        self.rx_bytes -= chunk.len();
        self.trim_rx();
        Some(chunk)
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
        freed
    }

    // ---- version 2: our window ----

    /// What the peer may still send: the credit not yet used by data received.
    pub fn credit(&self) -> usize {
        self.credit
    }

    /// Counts `n` bytes read: the credit shrinks by as much (the edge stays where it is).
    pub fn note_consumed(&mut self, n: usize) {
        self.consumed = self.consumed.wrapping_add(n as u32);
        self.credit -= n;
        self.since_grant += n;
    }

    /// Whether the window should grow now, towards `window`: on the first read, then each
    /// time half a window has been read since the last grant (as Go sends UPDs), or once
    /// less than half a window is left ahead of the reader. The last case matters after a
    /// grant the budget cut short: the stream must not wait for half a window it was never
    /// given.
    pub fn grant_due(&self, window: usize) -> bool {
        let first = self.consumed as usize == self.since_grant && self.since_grant > 0;
        self.since_grant > 0
            && (first || self.since_grant >= window / 2 || self.credit <= window / 2)
    }

    /// Moves the edge right by `extra` bytes.
    pub fn grant(&mut self, extra: usize) {
        self.credit += extra;
        self.since_grant = 0;
    }

    /// The stream no longer takes data: returns the credit it held in the session's budget
    /// (none once it discards what arrives).
    pub fn take_credit(&mut self) -> usize {
        if self.reads_dropped {
            // Its window keeps moving for the data it discards.
            0
        } else {
            std::mem::take(&mut self.credit)
        }
    }

    /// Version 2: the `consumed` value for an UPD.
    pub fn consumed(&self) -> u32 {
        self.consumed
    }

    // ---- send side ----

    /// Bytes written but not yet handed out as frames.
    pub fn queued(&self) -> usize {
        self.tx_bytes
    }

    /// Version 2: bytes the peer's window lets us accept now.
    pub fn send_window(&self) -> usize {
        let in_flight = self.written.wrapping_sub(self.peer_consumed);
        self.peer_window.saturating_sub(in_flight) as usize
    }

    /// Version 2: the peer's UPD.
    pub fn apply_upd(&mut self, consumed: u32, window: u32) {
        self.peer_consumed = consumed;
        self.peer_window = window;
    }

    /// Queues `data` for sending.
    pub fn push_tx(&mut self, data: Bytes) {
        self.tx_bytes += data.len();
        self.written = self.written.wrapping_add(data.len() as u32);
        self.tx.push_back(data);
    }

    /// `n` bytes went to the transport without passing through the queue.
    pub fn note_sent_direct(&mut self, n: usize) {
        self.written = self.written.wrapping_add(n as u32);
    }

    /// Queues a copy of `data` in pieces of at most `frame` bytes, each its own allocation, so
    /// that a piece's memory goes as soon as its frame is sent. A small write first fills the
    /// last piece, so many small writes do not cost a piece each.
    pub fn push_tx_copy(&mut self, mut data: &[u8], frame: usize) {
        self.tx_bytes += data.len();
        self.written = self.written.wrapping_add(data.len() as u32);
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
        self.fin_queued && !self.fin_sent && self.tx.is_empty()
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

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
