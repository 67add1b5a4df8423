//! A stream's send queue: written data waiting to go out as frames.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::rx::COALESCE_CHUNK;
use super::Stream;

impl Stream {
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
/// line as the source. Some CPUs' `rep movsb` slows down sharply when the destination sits a
/// few bytes past the source modulo the page size (see docs/performance.md); a destination at
/// the source's offset in its line never does. It costs at most 63 bytes a copy.
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
