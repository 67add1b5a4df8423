//! The output queue: frames pulled from the session (or the rest of a frame a direct write
//! began) that the transport has not taken yet. Its owner, the holder of the transport lock,
//! is the only writer, so a frame's bytes stay together on the wire.
//!
//! Control frames other than FIN are queued ahead of the data frames waiting here when those
//! are more than one write's worth, behind only the frame the transport has begun (and control
//! frames queued before them): a control frame never waits for more than one write. Control
//! frames keep their order among themselves: a stream's UPDs each carry its edge, and the
//! peer takes the last one it reads, so two of them swapped would move the edge left. A FIN
//! is queued at the back: it must follow its stream's data.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use smux_proto::frame::HEADER_LEN;

use crate::WriteMode;

/// Data payload bytes pulled and not yet written, at most: a few writes' worth, so that each
/// write syscall carries many frames. Fewer while fewer streams have data to send (see
/// [`OutQueue::has_room`]).
pub(crate) const HIGH_WATER: usize = 256 * 1024;
/// A control frame queued while no more data payload than this waits goes at the back, in
/// order (it waits for one write at most); beyond it, ahead of the data.
const ONE_WRITE: usize = 64 * 1024;
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
/// Writes in a row that take all they offer, after which a backlogged transport is taken to
/// have caught up: a socket with room for 8 frames at once is not the bottleneck.
const CAUGHT_UP: u8 = 8;

/// One queued segment.
#[derive(Debug)]
struct Seg {
    bytes: Bytes,
    /// Data payload bytes in it (headers and control payloads do not count toward the
    /// high-water mark).
    payload: usize,
    /// The pull position of its first byte (the lowest, for a gathered run).
    start: u64,
    /// It ends a frame.
    frame_end: bool,
}

/// Frames waiting for the transport, as segments (headers, payloads, gathered runs).
///
/// Positions: every queued byte gets a position in the order it was pulled
/// ([`OutQueue::pulled`]). Control frames are written out of that order, so what is done is
/// told by [`OutQueue::done`]: the position below which every byte has been written.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    segs: VecDeque<Seg>,
    /// Bytes in `segs`.
    bytes: usize,
    /// Data payload bytes in `segs`, for the high-water mark.
    payload: usize,
    /// Segments at the front that go before a control frame queued now: the rest of the
    /// frame the transport began, control frames queued earlier, and the data frames queued
    /// before a control frame that went to the back. Behind them, data frames in pull order.
    ahead: usize,
    /// Where headers are encoded, so that they share allocations.
    headers: BytesMut,
    /// Wire bytes queued since the start (including those written directly).
    pulled: u64,
    /// The front segment is a gathered run: do not gather it again.
    front_gathered: bool,
    /// The transport pushes back: it is the bottleneck, and what waits here only adds
    /// latency ([`OutQueue::wrote`]).
    backlogged: bool,
    /// Writes in a row, while backlogged, that took all they offered.
    full_writes: u8,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Segments queued.
    pub fn segments(&self) -> usize {
        self.segs.len()
    }

    /// Whether another frame of any kind may be pulled from the session, while `sending`
    /// streams have data to send there: one write's worth per such stream, up to the
    /// high-water mark (one frame while the transport is backlogged). What is pulled is one
    /// stream's turn after another, so a stream that starts writing later finds at most a
    /// write's worth of any other stream ahead of it.
    pub fn has_room(&self, sending: usize) -> bool {
        let mark = if self.backlogged {
            // One frame: pull only while no data waits.
            1
        } else {
            HIGH_WATER.min(ONE_WRITE * sending.max(1))
        };
        self.payload < mark && self.has_control_room()
    }

    /// The transport refused to take more (it returned `Pending`): it is backlogged.
    pub fn set_backlogged(&mut self) {
        self.backlogged = true;
        self.full_writes = 0;
    }

    /// The transport took `took` of the `offered` bytes of a write. While it is backlogged (it
    /// took less than offered, or refused: [`OutQueue::set_backlogged`]) the queue takes one
    /// data frame at a time: a frame that becomes ready then waits behind one frame, not
    /// behind a few writes' worth (on a slow link, 256 KiB is 21 ms at 100 Mbit/s), and the
    /// socket's own buffer does the batching. It is taken to have caught up after
    /// [`CAUGHT_UP`] writes in a row that took all they offered.
    pub fn wrote(&mut self, offered: usize, took: usize) {
        if took < offered {
            self.set_backlogged();
        } else if self.backlogged {
            self.full_writes += 1;
            if self.full_writes >= CAUGHT_UP {
                self.backlogged = false;
            }
        }
    }

    /// Whether another control frame may be pulled from the session.
    pub fn has_control_room(&self) -> bool {
        self.segs.len() < MAX_SEGMENTS
    }

    /// The pull position after everything queued so far.
    pub fn pulled(&self) -> u64 {
        self.pulled
    }

    /// The pull position below which everything has been written.
    pub fn done(&self) -> u64 {
        // Behind the segments ahead, data frames are in pull order: the first is the oldest.
        let span = (self.ahead + 1).min(self.segs.len());
        self.segs
            .range(..span)
            .map(|s| s.start)
            .min()
            .unwrap_or(self.pulled)
    }

    /// Queues a frame; returns its end's pull position. A control frame (`control`: NOP, SYN
    /// or UPD, never FIN) goes ahead of the data frames queued if they are more than one
    /// write's worth, behind the frame begun and the control frames queued before it.
    pub fn push_frame(&mut self, header: &[u8; HEADER_LEN], payload: Bytes, control: bool) -> u64 {
        if self.headers.capacity() < HEADER_LEN {
            self.headers.reserve(4096);
        }
        self.headers.extend_from_slice(header);
        let header = self.headers.split().freeze();
        let at = (control && self.payload > ONE_WRITE).then_some(self.ahead);
        let data = !control && !payload.is_empty();
        let has_payload = !payload.is_empty();
        self.push(header, false, !has_payload, at);
        if has_payload {
            self.push(payload, data, true, at.map(|i| i + 1));
        }
        if control && at.is_none() {
            // It went to the back: a control frame queued later must not overtake it.
            self.ahead = self.segs.len();
        }
        self.pulled
    }

    /// Records `n` wire bytes written directly, past this queue (which was empty); returns the
    /// pull position after them.
    pub fn skip(&mut self, n: usize) -> u64 {
        debug_assert!(self.is_empty());
        self.pulled += n as u64;
        self.pulled
    }

    /// Queues a copy of the rest of a frame whose beginning was written directly: `header`'s
    /// unwritten tail and the unwritten payload. It goes out before anything queued later.
    pub fn push_rest(&mut self, header: &[u8], payload: &[u8]) {
        debug_assert!(self.is_empty());
        if !header.is_empty() {
            self.push(
                Bytes::copy_from_slice(header),
                false,
                payload.is_empty(),
                None,
            );
        }
        if !payload.is_empty() {
            self.push(Bytes::copy_from_slice(payload), true, true, None);
        }
        self.ahead = self.segs.len();
    }

    /// Queues a segment at the back, or at index `at` (among the segments ahead).
    fn push(&mut self, seg: Bytes, is_payload: bool, frame_end: bool, at: Option<usize>) {
        let len = seg.len();
        let seg = Seg {
            payload: if is_payload { len } else { 0 },
            start: self.pulled,
            frame_end,
            bytes: seg,
        };
        self.bytes += len;
        self.pulled += len as u64;
        self.payload += seg.payload;
        match at {
            None => self.segs.push_back(seg),
            Some(i) => {
                if i == 0 {
                    self.front_gathered = false;
                }
                self.segs.insert(i, seg);
                self.ahead += 1;
            }
        }
    }

    /// The segments to write next, in `slices`; returns how many. When the transport may
    /// write only its first buffer, the segments at the front are first copied into one
    /// buffer: a run of small ones ([`WriteMode::Unknown`]), or any ([`WriteMode::Single`]).
    pub fn slices<'a>(&'a mut self, mode: WriteMode, slices: &mut [IoSlice<'a>]) -> usize {
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
        let (mut payload, mut start, mut frame_end) = (0, u64::MAX, false);
        for seg in self.segs.drain(..run) {
            buf.extend_from_slice(&seg.bytes);
            payload += seg.payload;
            start = start.min(seg.start);
            frame_end = seg.frame_end;
        }
        self.segs.push_front(Seg {
            bytes: buf.freeze(),
            payload,
            start,
            frame_end,
        });
        // The run counts as one segment ahead if any of it was.
        self.ahead = match self.ahead {
            0 => 0,
            a if a >= run => a - run + 1,
            _ => 1,
        };
        self.cover_frame();
        self.front_gathered = true;
    }

    /// Moves the end of the segments ahead to a frame boundary: a control frame queued
    /// there must not split the frame the last of them begins.
    fn cover_frame(&mut self) {
        while self.ahead > 0 && self.ahead < self.segs.len() && !self.segs[self.ahead - 1].frame_end
        {
            self.ahead += 1;
        }
    }

    /// The transport took `n` bytes from the front.
    pub fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        let mut mid_frame = false;
        while n > 0 {
            let front = self.segs.front_mut().expect("wrote bytes that were queued");
            let take = n.min(front.bytes.len());
            if take == front.bytes.len() {
                self.payload -= front.payload;
                mid_frame = !front.frame_end;
                self.segs.pop_front();
                self.ahead = self.ahead.saturating_sub(1);
                self.front_gathered = false;
            } else {
                // A gathered run's payload counts as taken first: the mark is approximate there.
                let paid = take.min(front.payload);
                front.payload -= paid;
                self.payload -= paid;
                front.bytes.advance(take);
                mid_frame = true;
            }
            n -= take;
        }
        if mid_frame && !self.segs.is_empty() {
            // The frame the transport began goes before any control frame queued from now on.
            self.ahead = self.ahead.max(1);
            self.cover_frame();
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
        self.ahead = 0;
        self.front_gathered = false;
        self.backlogged = false;
        self.full_writes = 0;
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
            q.push_frame(&header(i), Bytes::from(payload.clone()), false);
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
        assert!(q.has_room(1));
    }

    #[test]
    fn small_segments_are_gathered_big_payloads_are_not() {
        let mut q = OutQueue::default();
        let big = Bytes::from(vec![7u8; 4096]);
        q.push_frame(&header(1), Bytes::new(), false);
        q.push_frame(&header(2), Bytes::from_static(b"abc"), false);
        q.push_frame(&header(3), big.clone(), false);
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = q.slices(WriteMode::Unknown, &mut slices);
        // Three headers and "abc" in one buffer; the big payload on its own, not copied.
        assert_eq!(n, 2);
        assert_eq!(slices[0].len(), 8 + 8 + 3 + 8);
        assert_eq!(slices[1].as_ptr(), big.as_ptr());
        // Vectored transports get the segments as they are.
        let mut v = OutQueue::default();
        v.push_frame(&header(1), Bytes::new(), false);
        v.push_frame(&header(2), Bytes::from_static(b"abc"), false);
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        assert_eq!(v.slices(WriteMode::Vectored, &mut slices), 3);
        // A transport that writes one buffer gets everything in one.
        let mut one = OutQueue::default();
        one.push_frame(&header(1), big.clone(), false);
        one.push_frame(&header(2), Bytes::from_static(b"abc"), false);
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        assert_eq!(one.slices(WriteMode::Single, &mut slices), 1);
        assert_eq!(slices[0].len(), 8 + 4096 + 8 + 3);
    }

    #[test]
    fn a_backlogged_transport_gets_one_frame_queued_until_it_catches_up() {
        let mut q = OutQueue::default();
        q.push_frame(&header(1), Bytes::from(vec![0u8; 32 * 1024]), false);
        assert!(q.has_room(8));
        // A partial write: the transport is backlogged.
        let n = written(&mut q, WriteMode::Vectored, 1000).len();
        q.wrote(8 + 32 * 1024, n);
        assert!(!q.has_room(8), "one frame while the transport pushes back");
        assert!(q.has_control_room(), "control frames still go");
        // Emptying the queue does not end it; eight writes in a row that take all do.
        for i in 0..CAUGHT_UP {
            let n = written(&mut q, WriteMode::Vectored, 64 * 1024).len();
            q.wrote(n, n);
            assert!(q.is_empty());
            assert!(q.has_room(8), "an empty queue takes a frame");
            q.push_frame(&header(1), Bytes::from(vec![0u8; 32 * 1024]), false);
            let caught_up = i + 1 == CAUGHT_UP;
            assert_eq!(q.has_room(8), caught_up, "after {} full writes", i + 1);
        }
        // Refusing (Pending) makes it backlogged again.
        q.set_backlogged();
        assert!(!q.has_room(8));
    }

    #[test]
    fn the_high_water_mark_counts_data_payload_only() {
        let mut q = OutQueue::default();
        for _ in 0..7 {
            q.push_frame(&header(1), Bytes::from(vec![0u8; 32 * 1024]), false);
        }
        assert!(q.has_room(8));
        assert!(!q.has_room(1), "one write's worth while one stream sends");
        assert!(!q.has_room(3), "one write's worth per stream sending");
        assert!(q.has_room(4));
        q.push_frame(&header(1), Bytes::from(vec![0u8; 32 * 1024]), false);
        assert!(!q.has_room(64), "256 KiB of payload is a few writes' worth");
        assert!(q.has_control_room());
        // Control frames' payloads do not count.
        let mut u = OutQueue::default();
        for _ in 0..1000 {
            u.push_frame(&header(2), Bytes::from(vec![2u8; 8]), true);
        }
        assert!(u.has_room(1));
        // Headers alone (control frames) do not fill it.
        let mut c = OutQueue::default();
        for _ in 0..1000 {
            c.push_frame(&header(3), Bytes::new(), false);
        }
        assert!(c.has_room(1));
        let _ = written(&mut q, WriteMode::Vectored, 40 * 1024);
        assert!(q.has_room(64));
    }

    /// Frames as (header byte, payload length), read back from written bytes whose headers are
    /// `[b; 8]` and whose payloads are `b` repeated.
    fn frames(mut wire: &[u8]) -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        while !wire.is_empty() {
            let b = wire[0];
            let len = wire[HEADER_LEN..].iter().take_while(|&&x| x == b).count();
            out.push((b, len));
            wire = &wire[HEADER_LEN + len..];
        }
        out
    }

    #[test]
    fn control_frames_overtake_more_than_a_write_of_data_but_not_the_frame_begun() {
        const BULK: usize = ONE_WRITE + 1;
        let mut q = OutQueue::default();
        let mut ends = Vec::new();
        for (b, len) in [(1, BULK), (2, 1000), (3, 1000)] {
            ends.push(q.push_frame(&header(b), Bytes::from(vec![b; len]), false));
        }
        // Nothing begun: a control frame goes first; a second one goes behind the first.
        let upd = q.push_frame(&header(7), Bytes::from(vec![7u8; 8]), true);
        q.push_frame(&header(8), Bytes::new(), true);
        // The transport takes part of the UPD: a control frame queued now goes behind it.
        let mut wire = written(&mut q, WriteMode::Vectored, 5);
        q.push_frame(&header(9), Bytes::new(), true);
        // Then part of frame 1: a control frame queued now goes after frame 1.
        wire.extend(written(&mut q, WriteMode::Vectored, 16 + 8 + 8 + 500));
        q.push_frame(&header(10), Bytes::new(), true);
        // A FIN (not control) goes at the back.
        q.push_frame(&header(11), Bytes::new(), false);
        wire.extend(written(&mut q, WriteMode::Vectored, BULK));
        // With a write's worth or less waiting, a control frame keeps its place in line.
        q.push_frame(&header(12), Bytes::new(), true);
        // More than a write's worth behind it: a control frame queued now overtakes that data,
        // but not the control frame at the back.
        q.push_frame(&header(13), Bytes::from(vec![13u8; BULK]), false);
        q.push_frame(&header(14), Bytes::from(vec![14u8; 8]), true);
        while !q.is_empty() {
            wire.extend(written(&mut q, WriteMode::Vectored, 300));
        }
        assert_eq!(
            frames(&wire),
            [
                (7, 8),
                (8, 0),
                (9, 0),
                (1, BULK),
                (10, 0),
                (2, 1000),
                (3, 1000),
                (11, 0),
                (12, 0),
                (14, 8),
                (13, BULK)
            ]
        );
        assert_eq!(q.done(), q.pulled());
        assert!(upd > ends[2]);
    }

    #[test]
    fn done_counts_a_frame_only_once_all_frames_pulled_before_it_are_written() {
        const BULK: usize = ONE_WRITE + 1;
        let mut q = OutQueue::default();
        let d1 = q.push_frame(&header(1), Bytes::from(vec![1u8; BULK]), false);
        let d2 = q.push_frame(&header(2), Bytes::from(vec![2u8; 100]), false);
        let c = q.push_frame(&header(3), Bytes::new(), true);
        assert_eq!(q.done(), 0);
        // The control frame went first, but the data pulled before it is not written yet.
        let _ = written(&mut q, WriteMode::Vectored, 8);
        assert_eq!(q.done(), 0);
        assert!(q.done() < c);
        let _ = written(&mut q, WriteMode::Vectored, 8 + BULK);
        assert_eq!(q.done(), d1);
        let _ = written(&mut q, WriteMode::Vectored, 50);
        assert!(q.done() < d2);
        let _ = written(&mut q, WriteMode::Vectored, 58);
        assert_eq!(q.done(), c);
        assert!(q.is_empty());
    }

    #[test]
    fn gathering_keeps_control_frames_ahead_and_positions_conservative() {
        const BULK: usize = ONE_WRITE;
        let mut q = OutQueue::default();
        q.push_frame(&header(1), Bytes::from(vec![1u8; 10]), false);
        q.push_frame(&header(2), Bytes::from(vec![2u8; BULK]), false);
        q.push_frame(&header(3), Bytes::new(), true);
        // The control frame, the first data frame and the second one's header are gathered
        // into one buffer; the big payload is written as it is.
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        assert_eq!(q.slices(WriteMode::Unknown, &mut slices), 2);
        let mut wire = written(&mut q, WriteMode::Unknown, 20);
        assert_eq!(q.done(), 0);
        // The gathered buffer holds frame 2's header, so frame 2 has begun once it is written:
        // a control frame queued now follows frame 2.
        q.push_frame(&header(4), Bytes::new(), true);
        while !q.is_empty() {
            wire.extend(written(&mut q, WriteMode::Unknown, 1000));
        }
        assert_eq!(frames(&wire), [(3, 0), (1, 10), (2, BULK), (4, 0)]);
        assert_eq!(q.done(), q.pulled());
    }

    #[test]
    fn the_rest_of_a_direct_frame_goes_first_and_skip_counts_direct_bytes() {
        let mut q = OutQueue::default();
        assert_eq!(q.skip(100), 100);
        q.push_rest(&[1, 2], b"xyz");
        q.push_frame(&header(9), Bytes::new(), false);
        assert_eq!(q.pulled(), 100 + 5 + 8);
        assert_eq!(
            written(&mut q, WriteMode::Vectored, usize::MAX),
            [1, 2, b'x', b'y', b'z', 9, 9, 9, 9, 9, 9, 9, 9]
        );
        q.push_frame(&header(1), Bytes::from_static(b"q"), false);
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Data(usize),
            Control(bool),
            Fin,
            Write(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (1usize..20_000).prop_map(Op::Data),
                2 => any::<bool>().prop_map(Op::Control),
                1 => Just(Op::Fin),
                // A write of nothing: the transport was full after the queue gathered.
                1 => Just(Op::Write(0)),
                4 => (1usize..5000).prop_map(Op::Write),
            ]
        }

        /// A queued frame as the model knows it.
        struct Frame {
            control: bool,
            payload: usize,
            end: u64,
            /// For a control frame: the data frames queued and not begun when it was queued.
            waiting: Vec<usize>,
        }

        /// The frames in `wire`, in order, as (id, whether wholly written). Frame `id` has a
        /// header of `[id; 8]` and a payload of `id` repeated `frames[id - 1].payload` times.
        fn parse(mut wire: &[u8], frames: &[Frame]) -> Vec<(u8, bool)> {
            let mut out = Vec::new();
            while !wire.is_empty() {
                let id = wire[0];
                let len = HEADER_LEN + frames[usize::from(id) - 1].payload;
                let take = len.min(wire.len());
                assert!(wire[..take].iter().all(|&b| b == id), "frames interleaved");
                out.push((id, take == len));
                wire = &wire[take..];
            }
            out
        }

        proptest! {
            /// Over any interleaving of frames and partial writes: frames are never split;
            /// data frames and FINs keep their order, and so do control frames; on a vectored
            /// transport, a control frame is written behind at most a write's worth of the data
            /// frames not begun when it was queued; and
            /// `done` passes a frame's end only when it and every frame queued before it are
            /// wholly written (and, without gathering, as soon as they are).
            #[test]
            fn control_frames_wait_for_one_frame_at_most(
                ops in proptest::collection::vec(op(), 1..250),
                mode in prop_oneof![Just(WriteMode::Vectored), Just(WriteMode::Unknown), Just(WriteMode::Single)],
            ) {
                let mut q = OutQueue::default();
                let mut frames: Vec<Frame> = Vec::new();
                let mut wire: Vec<u8> = Vec::new();
                for op in &ops {
                    let (control, payload) = match *op {
                        Op::Data(n) => (false, n),
                        Op::Control(upd) => (true, if upd { 8 } else { 0 }),
                        Op::Fin => (false, 0),
                        Op::Write(max) => {
                            wire.extend(written(&mut q, mode, max));
                            let seen = parse(&wire, &frames);
                            let whole = |i: usize| seen.iter().any(|&(id, w)| usize::from(id) == i && w);
                            for (i, f) in frames.iter().enumerate() {
                                let upto = (1..=i + 1).all(whole);
                                if mode == WriteMode::Vectored {
                                    prop_assert_eq!(q.done() >= f.end, upto, "frame {}", i + 1);
                                } else {
                                    // A gathered buffer counts as written once all of it is.
                                    prop_assert!(q.done() < f.end || upto, "frame {}", i + 1);
                                }
                            }
                            continue;
                        }
                    };
                    let seen = parse(&wire, &frames);
                    let waiting = (1..=frames.len())
                        .filter(|&d| !frames[d - 1].control && seen.iter().all(|&(id, _)| usize::from(id) != d))
                        .collect();
                    let id = u8::try_from(frames.len() + 1).unwrap();
                    let end = q.push_frame(&header(id), Bytes::from(vec![id; payload]), control);
                    frames.push(Frame { control, payload, end, waiting });
                }
                while !q.is_empty() {
                    wire.extend(written(&mut q, mode, 4000));
                }
                prop_assert_eq!(q.done(), q.pulled());
                let order: Vec<u8> = parse(&wire, &frames).iter().map(|f| f.0).collect();
                prop_assert_eq!(order.len(), frames.len());
                let pos = |id: usize| order.iter().position(|&g| usize::from(g) == id).unwrap();
                let data: Vec<usize> = (1..=frames.len()).filter(|&i| !frames[i - 1].control).collect();
                prop_assert!(data.windows(2).all(|w| pos(w[0]) < pos(w[1])), "data out of order");
                let control: Vec<usize> = (1..=frames.len()).filter(|&i| frames[i - 1].control).collect();
                prop_assert!(control.windows(2).all(|w| pos(w[0]) < pos(w[1])), "control frames out of order");
                // Gathering copies a run of small frames (at most 64 KiB) into one buffer, and a
                // control frame may wait behind that; a vectored transport has no such run.
                let gathers = mode != WriteMode::Vectored;
                for (c, f) in frames.iter().enumerate().filter(|(_, f)| f.control && !gathers) {
                    // Of the data frames not begun when it was queued, at most a write's worth
                    // went before it.
                    let ahead: usize = f
                        .waiting
                        .iter()
                        .filter(|&&d| pos(d) < pos(c + 1))
                        .map(|&d| frames[d - 1].payload)
                        .sum();
                    prop_assert!(ahead <= ONE_WRITE, "control {} waited behind {} bytes", c + 1, ahead);
                }
            }
        }
    }
}
