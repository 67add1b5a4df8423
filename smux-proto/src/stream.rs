//! One stream's state: its receive queue, its send queue, its version-2 window accounting and
//! its half-close flags. It knows nothing of the session: the session routes frames here and
//! keeps the session-wide budgets.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Buf, Bytes};

use crate::config::INITIAL_PEER_WINDOW;

/// Memory one slot of a receive queue takes.
const SLOT: usize = std::mem::size_of::<Bytes>();

#[derive(Debug)]
pub(crate) struct Stream {
    // Receive side.
    rx: VecDeque<Bytes>,
    rx_bytes: usize,
    /// The peer's FIN arrived: after `rx` drains, reads see end of stream.
    pub fin_recv: bool,
    /// Version 2: bytes the application has read, mod 2^32 (UPD's `consumed`).
    consumed: u32,
    /// Version 2: bytes read since the last UPD was scheduled.
    since_upd: u32,

    // Send side.
    tx: VecDeque<Bytes>,
    tx_bytes: usize,
    /// The application asked for FIN (shutdown, close, idle expiry or session close); it goes
    /// out after `tx` drains.
    pub fin_queued: bool,
    /// Our FIN is on its way out.
    pub fin_sent: bool,
    /// Version 2: bytes accepted for sending, mod 2^32.
    written: u32,
    /// Version 2: the peer's last UPD.
    peer_consumed: u32,
    peer_window: u32,

    // Scheduling flags, owned by the session.
    pub syn_pending: bool,
    pub upd_pending: bool,
    pub in_ctrl: bool,
    pub in_ready: bool,
    pub in_tx_blocked: bool,
    /// Peer-opened and not yet taken by `accept`.
    pub in_accept_queue: bool,
    /// A write was refused for lack of room; a `Writable` event is owed.
    pub write_blocked: bool,
    /// The application released the stream; it is removed once its FIN is out.
    pub released: bool,
    /// The idle timeout closed it.
    pub expired: bool,
    /// `Closed` has been reported.
    pub closed_reported: bool,
    /// Last data sent or received, for the idle timeout; `None` until the first frame.
    pub last_activity: Option<Instant>,
}

impl Stream {
    pub fn new() -> Stream {
        Stream {
            rx: VecDeque::new(),
            rx_bytes: 0,
            fin_recv: false,
            consumed: 0,
            since_upd: 0,
            tx: VecDeque::new(),
            tx_bytes: 0,
            fin_queued: false,
            fin_sent: false,
            written: 0,
            peer_consumed: 0,
            peer_window: INITIAL_PEER_WINDOW,
            syn_pending: false,
            upd_pending: false,
            in_ctrl: false,
            in_ready: false,
            in_tx_blocked: false,
            in_accept_queue: false,
            write_blocked: false,
            released: false,
            expired: false,
            closed_reported: false,
            last_activity: None,
        }
    }

    // ---- receive side ----

    /// Unread payload bytes.
    pub fn unread(&self) -> usize {
        self.rx_bytes
    }

    /// Whether data or FIN can be taken (so a data frame arriving now changes nothing a reader
    /// waits for).
    pub fn has_unread(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Whether this stream still accepts payload from the peer.
    pub fn accepts_data(&self) -> bool {
        !self.fin_recv && !self.released && !self.expired
    }

    /// Memory the receive side holds: unread payload plus the queue's slots.
    pub fn rx_memory(&self) -> usize {
        self.rx_bytes + self.rx.capacity() * SLOT
    }

    /// What [`Stream::rx_memory`] grows by when a payload of `len` bytes is queued.
    pub fn rx_cost(&self, len: usize) -> usize {
        let cap = self.rx.capacity();
        let grow = if self.rx.len() == cap { cap.max(1) } else { 0 };
        len + grow * SLOT
    }

    /// Queues a received payload; returns whether the queue was empty before. The queue grows
    /// by doubling from one slot, so its slots never cost much more than the chunks it holds.
    pub fn push_rx(&mut self, data: Bytes) -> bool {
        let was_empty = self.rx.is_empty();
        if self.rx.len() == self.rx.capacity() {
            self.rx.reserve_exact(self.rx.capacity().max(1));
        }
        self.rx_bytes += data.len();
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

    /// Takes up to `max` bytes of the first unread chunk without copying.
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

    /// Drops all unread data.
    pub fn drop_rx(&mut self) {
        self.rx = VecDeque::new();
        self.rx_bytes = 0;
    }

    /// Version 2: counts `n` bytes read and says whether an UPD is due: on the first read, then
    /// each time half a window has been read since the last one (as Go does).
    pub fn note_consumed(&mut self, n: usize, window: u32) -> bool {
        let first = self.consumed == 0 && self.since_upd == 0;
        self.consumed = self.consumed.wrapping_add(n as u32);
        self.since_upd = self.since_upd.saturating_add(n as u32);
        if first || self.since_upd >= window / 2 {
            self.since_upd = 0;
            true
        } else {
            false
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

    /// Takes the payload of the next data frame, at most `max` bytes.
    pub fn pop_tx(&mut self, max: usize) -> Option<Bytes> {
        let out = take_front(&mut self.tx, max)?;
        self.tx_bytes -= out.len();
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

    /// Both directions are over.
    pub fn is_done(&self) -> bool {
        self.expired || (self.fin_sent && self.fin_recv)
    }
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
mod tests {
    use super::*;

    #[test]
    fn reads_cross_chunks() {
        let mut s = Stream::new();
        assert!(s.push_rx(Bytes::from_static(b"abc")));
        assert!(!s.push_rx(Bytes::from_static(b"defg")));
        let mut buf = [0u8; 5];
        assert_eq!(s.read_into(&mut buf), 5);
        assert_eq!(&buf[..], b"abcde");
        assert_eq!(s.unread(), 2);
        assert_eq!(&s.read_chunk(10).unwrap()[..], b"fg");
        assert!(s.read_chunk(10).is_none());
        assert_eq!(s.rx_memory(), 0, "an empty queue gives its memory back");
    }

    #[test]
    fn rx_memory_counts_slots_and_predicts_growth() {
        let mut s = Stream::new();
        for i in 0..100usize {
            let cost = s.rx_cost(10);
            let before = s.rx_memory();
            s.push_rx(Bytes::from(vec![0u8; 10]));
            assert_eq!(s.rx_memory() - before, cost, "push {i}");
            // Slots never exceed twice the chunks held.
            assert!(s.rx.capacity() <= 2 * s.rx.len().max(1));
        }
        let mut buf = [0u8; 950];
        s.read_into(&mut buf);
        assert_eq!(s.rx.len(), 5);
        assert!(s.rx.capacity() <= 2 * 5, "queue shrinks as it drains");
    }

    #[test]
    fn upd_due_on_first_read_then_every_half_window() {
        let mut s = Stream::new();
        assert!(s.note_consumed(1, 100));
        assert!(!s.note_consumed(48, 100));
        assert!(s.note_consumed(2, 100));
        assert!(!s.note_consumed(49, 100));
        assert!(s.note_consumed(1, 100));
        assert_eq!(s.consumed(), 101);
    }

    #[test]
    fn send_window_starts_at_initial_and_follows_upd() {
        let mut s = Stream::new();
        assert_eq!(s.send_window(), INITIAL_PEER_WINDOW as usize);
        s.push_tx(Bytes::from(vec![0; 1000]));
        assert_eq!(s.send_window(), INITIAL_PEER_WINDOW as usize - 1000);
        s.apply_upd(500, 600);
        assert_eq!(s.send_window(), 100);
        // A peer that shrinks its window below what is in flight leaves no room, not a wrap.
        s.apply_upd(0, 10);
        assert_eq!(s.send_window(), 0);
    }

    #[test]
    fn send_window_survives_counter_wrap() {
        let mut s = Stream::new();
        s.written = u32::MAX - 10;
        s.peer_consumed = u32::MAX - 10;
        s.push_tx(Bytes::from(vec![0; 100]));
        assert_eq!(s.send_window(), INITIAL_PEER_WINDOW as usize - 100);
    }

    #[test]
    fn tx_splits_into_frames() {
        let mut s = Stream::new();
        s.push_tx(Bytes::from(vec![7; 10]));
        assert_eq!(s.pop_tx(4).unwrap().len(), 4);
        assert_eq!(s.queued(), 6);
        assert_eq!(s.pop_tx(100).unwrap().len(), 6);
        assert!(s.pop_tx(100).is_none());
    }
}
