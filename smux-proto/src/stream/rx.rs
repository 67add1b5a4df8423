//! A stream's receive queue: payloads from the peer waiting to be read, and the memory they
//! hold by the receive budget's count.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::{Flags, Stream};

/// Memory one slot of a receive queue takes.
pub(crate) const SLOT: usize = std::mem::size_of::<RxChunk>();

/// A kept payload (a slice of the transport's read buffer, not a copy) is at least a quarter
/// of the buffer it pins (see `decode.rs`), so it is charged that whole buffer: its own bytes
/// and this many times as many again.
pub(crate) const PIN_EXTRA: usize = 3;

/// A received payload waiting to be read.
#[derive(Debug)]
pub(super) struct RxChunk {
    data: Bytes,
    /// A slice of the transport's read buffer: it keeps that whole buffer alive.
    pinned: bool,
}

/// Received payloads shorter than this are appended to the previous one when it is small too,
/// so a peer sending tiny frames cannot make each byte cost a queue slot and an allocation.
const COALESCE_BELOW: usize = 256;
/// The size up to which small payloads are coalesced into one chunk.
pub(super) const COALESCE_CHUNK: usize = 1024;

impl Stream {
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
    pub(super) fn drop_rx(&mut self) -> usize {
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
}

/// The extra charge of a payload of `len` bytes, pinned or not (see [`PIN_EXTRA`]).
fn pin_extra(len: usize, pin: bool) -> usize {
    if pin {
        PIN_EXTRA * len
    } else {
        0
    }
}
