//! The output queue: frames pulled from the session (or the rest of a frame a direct write
//! began) that the transport has not taken yet. Its owner, the holder of the transport lock,
//! is the only writer, so a frame's bytes stay together on the wire.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use smux_proto::frame::HEADER_LEN;

use crate::WriteMode;

/// Payload bytes pulled and not yet written, at most: a control frame that becomes ready is
/// pulled before any bulk data beyond this, so at most one bulk write is ever ahead of it.
pub(crate) const HIGH_WATER: usize = 64 * 1024;
/// Segments queued, at most: a flood of 8-byte frames (refusals of a SYN flood) must not cost
/// a queue slot per frame up to `HIGH_WATER`.
const MAX_SEGMENTS: usize = 4096;
/// Segments handed to one vectored write.
pub(crate) const MAX_IOV: usize = 64;
/// Segments shorter than this may be copied together for a transport that may write only its
/// first buffer; longer ones are written as they are.
const SMALL: usize = 1024;
/// Gathered buffers are at most this long.
const GATHER: usize = 64 * 1024;

/// One queued segment.
#[derive(Debug)]
struct Seg {
    bytes: Bytes,
    /// Payload bytes in it (headers do not count toward the high-water mark).
    payload: usize,
}

/// Frames waiting for the transport, as segments (headers, payloads, gathered runs).
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    segs: VecDeque<Seg>,
    /// Bytes in `segs`.
    bytes: usize,
    /// Payload bytes in `segs`, for the high-water mark.
    payload: usize,
    /// Where headers are encoded, so that they share allocations.
    headers: BytesMut,
    /// Wire bytes queued since the start (including those written directly).
    pulled: u64,
    /// The front segment is a gathered run: do not gather it again.
    front_gathered: bool,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Whether another frame may be pulled from the session.
    pub fn has_room(&self) -> bool {
        self.payload < HIGH_WATER && self.segs.len() < MAX_SEGMENTS
    }

    /// The wire position after everything queued so far.
    pub fn pulled(&self) -> u64 {
        self.pulled
    }

    /// Queues a frame; returns the wire position after it.
    pub fn push_frame(&mut self, header: &[u8; HEADER_LEN], payload: Bytes) -> u64 {
        if self.headers.capacity() < HEADER_LEN {
            self.headers.reserve(4096);
        }
        self.headers.extend_from_slice(header);
        let header = self.headers.split().freeze();
        self.push(header, false);
        if !payload.is_empty() {
            self.push(payload, true);
        }
        self.pulled
    }

    /// Records `n` wire bytes written directly, past this queue (which was empty); returns the
    /// wire position after them.
    pub fn skip(&mut self, n: usize) -> u64 {
        debug_assert!(self.is_empty());
        self.pulled += n as u64;
        self.pulled
    }

    /// Queues a copy of the rest of a frame whose beginning was written directly: `header`'s
    /// unwritten tail and the unwritten payload. It goes out before anything queued later.
    pub fn push_rest(&mut self, header: &[u8], payload: &[u8]) {
        if !header.is_empty() {
            self.push(Bytes::copy_from_slice(header), false);
        }
        if !payload.is_empty() {
            self.push(Bytes::copy_from_slice(payload), true);
        }
    }

    fn push(&mut self, seg: Bytes, is_payload: bool) {
        self.bytes += seg.len();
        self.pulled += seg.len() as u64;
        if is_payload {
            self.payload += seg.len();
        }
        self.segs.push_back(Seg {
            payload: if is_payload { seg.len() } else { 0 },
            bytes: seg,
        });
    }

    /// The segments to write next, in `slices`; returns how many. When the transport may
    /// write only its first buffer, the segments at the front are first copied into one
    /// buffer: a run of small ones ([`WriteMode::Unknown`]), or any ([`WriteMode::Single`]).
    pub fn slices<'a>(&'a mut self, mode: WriteMode, slices: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        match mode {
            WriteMode::Vectored => {}
            WriteMode::Unknown => self.gather_front(SMALL),
            WriteMode::Single => self.gather_front(usize::MAX),
        }
        let mut n = 0;
        for (slot, seg) in slices.iter_mut().zip(&self.segs) {
            *slot = IoSlice::new(&seg.bytes);
            n += 1;
        }
        n
    }

    /// Copies the run of segments shorter than `small` at the front into one buffer.
    fn gather_front(&mut self, small: usize) {
        if self.front_gathered || self.segs.front().is_none_or(|s| s.bytes.len() >= GATHER) {
            return;
        }
        let run = self
            .segs
            .iter()
            .take_while(|s| s.bytes.len() < small)
            .scan(0, |total, s| {
                *total += s.bytes.len();
                (*total <= GATHER).then_some(())
            })
            .count();
        if run < 2 {
            return;
        }
        let mut buf = BytesMut::with_capacity(GATHER);
        let mut payload = 0;
        for seg in self.segs.drain(..run) {
            buf.extend_from_slice(&seg.bytes);
            payload += seg.payload;
        }
        self.segs.push_front(Seg {
            bytes: buf.freeze(),
            payload,
        });
        self.front_gathered = true;
    }

    /// The transport took `n` bytes from the front.
    pub fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let front = self.segs.front_mut().expect("wrote bytes that were queued");
            let take = n.min(front.bytes.len());
            if take == front.bytes.len() {
                self.payload -= front.payload;
                self.segs.pop_front();
                self.front_gathered = false;
            } else {
                // A gathered run's payload counts as taken first: the mark is approximate there.
                let paid = take.min(front.payload);
                front.payload -= paid;
                self.payload -= paid;
                front.bytes.advance(take);
            }
            n -= take;
        }
        if self.segs.is_empty() && self.segs.capacity() > 256 {
            self.segs = VecDeque::new();
        }
    }

    /// Drops everything queued (the transport failed).
    pub fn clear(&mut self) {
        self.segs = VecDeque::new();
        self.bytes = 0;
        self.payload = 0;
        self.front_gathered = false;
    }

    /// Bytes queued.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(b: u8) -> [u8; HEADER_LEN] {
        [b; HEADER_LEN]
    }

    fn written(q: &mut OutQueue, mode: WriteMode, max: usize) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = q.slices(mode, &mut slices);
        let mut out = Vec::new();
        for s in &slices[..n] {
            let take = s.len().min(max - out.len());
            out.extend_from_slice(&s[..take]);
        }
        let len = out.len();
        q.advance(len);
        out
    }

    #[test]
    fn frames_come_out_in_order_across_partial_writes() {
        let mut q = OutQueue::default();
        let mut expected = Vec::new();
        for i in 0..5u8 {
            let payload = vec![i; 100 * i as usize];
            q.push_frame(&header(i), Bytes::from(payload.clone()));
            expected.extend_from_slice(&header(i));
            expected.extend_from_slice(&payload);
        }
        assert_eq!(q.pulled(), expected.len() as u64);
        let mut got = Vec::new();
        while !q.is_empty() {
            got.extend(written(&mut q, WriteMode::Vectored, 77));
        }
        assert_eq!(got, expected);
        assert_eq!(q.len(), 0);
        assert!(q.has_room());
    }

    #[test]
    fn small_segments_are_gathered_big_payloads_are_not() {
        let mut q = OutQueue::default();
        let big = Bytes::from(vec![7u8; 4096]);
        q.push_frame(&header(1), Bytes::new());
        q.push_frame(&header(2), Bytes::from_static(b"abc"));
        q.push_frame(&header(3), big.clone());
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = q.slices(WriteMode::Unknown, &mut slices);
        // Three headers and "abc" in one buffer; the big payload on its own, not copied.
        assert_eq!(n, 2);
        assert_eq!(slices[0].len(), 8 + 8 + 3 + 8);
        assert_eq!(slices[1].as_ptr(), big.as_ptr());
        // Vectored transports get the segments as they are.
        let mut v = OutQueue::default();
        v.push_frame(&header(1), Bytes::new());
        v.push_frame(&header(2), Bytes::from_static(b"abc"));
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        assert_eq!(v.slices(WriteMode::Vectored, &mut slices), 3);
        // A transport that writes one buffer gets everything in one.
        let mut one = OutQueue::default();
        one.push_frame(&header(1), big.clone());
        one.push_frame(&header(2), Bytes::from_static(b"abc"));
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        assert_eq!(one.slices(WriteMode::Single, &mut slices), 1);
        assert_eq!(slices[0].len(), 8 + 4096 + 8 + 3);
    }

    #[test]
    fn the_high_water_mark_counts_payload_so_control_frames_wait_behind_one_write() {
        let mut q = OutQueue::default();
        q.push_frame(&header(1), Bytes::from(vec![0u8; 32 * 1024]));
        assert!(q.has_room());
        q.push_frame(&header(1), Bytes::from(vec![0u8; 32 * 1024]));
        assert!(!q.has_room(), "64 KiB of payload is one write's worth");
        // Headers alone (control frames) do not fill it.
        let mut c = OutQueue::default();
        for _ in 0..1000 {
            c.push_frame(&header(3), Bytes::new());
        }
        assert!(c.has_room());
        let _ = written(&mut q, WriteMode::Vectored, 40 * 1024);
        assert!(q.has_room());
    }

    #[test]
    fn the_rest_of_a_direct_frame_goes_first_and_skip_counts_direct_bytes() {
        let mut q = OutQueue::default();
        assert_eq!(q.skip(100), 100);
        q.push_rest(&[1, 2], b"xyz");
        q.push_frame(&header(9), Bytes::new());
        assert_eq!(q.pulled(), 100 + 5 + 8);
        assert_eq!(
            written(&mut q, WriteMode::Vectored, usize::MAX),
            [1, 2, b'x', b'y', b'z', 9, 9, 9, 9, 9, 9, 9, 9]
        );
        q.push_frame(&header(1), Bytes::from_static(b"q"));
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
    }
}
