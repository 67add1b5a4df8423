//! Writing to the transport, by whoever holds its lock: the worker, a flushing task, `close()`,
//! or a stream whose write goes straight to the transport.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use smux_proto::frame::{Cmd, Header, HEADER_LEN};
use smux_proto::StreamId;

use crate::conn::{Conn, IoState, WriterWait};
use crate::error::StreamOp;
use crate::lifecycle::fail;
use crate::output::MAX_IOV;
use crate::sync::atomic::Ordering;
use crate::wakers::Wakes;
use crate::{Transport, WriteMode};

/// Bytes written per call of [`Conn::drive_output`]: one busy connection must not starve the
/// runtime.
const MAX_WRITE: usize = 1024 * 1024;
/// A direct write sends at most this much: a control frame that becomes ready meanwhile waits
/// behind at most one such write.
const DIRECT_MAX: usize = 64 * 1024;
/// Frames in one direct write, at most (each takes two of the write's buffers).
const DIRECT_FRAMES: usize = 16;

/// What a direct write did.
pub(crate) enum Direct {
    /// The bytes were taken (some perhaps queued to finish their frame).
    Wrote(usize),
    /// The transport failed.
    Failed(io::Error),
    /// The transport is full and nothing is queued ahead: wait for it, as a socket write
    /// would, rather than copy the bytes into the queue.
    Full,
    /// Nothing was written: take the queued path.
    Declined,
}

impl<T: Transport> Conn<T> {
    /// Moves frames from the session through the output queue to the transport, and flushes
    /// the transport once the queue is empty; a transport failure ends the session. Returns
    /// whether it stopped for its budget with more to write. Call with the transport lock
    /// held (`io`).
    pub fn drive_output(
        &self,
        io: &mut IoState<T>,
        wakes: &mut Wakes,
        cx: &mut Context<'_>,
    ) -> bool {
        match self.write_queue(io, wakes, cx) {
            Ok(more) => more,
            Err(e) => {
                fail(io, &mut self.state(wakes), e);
                false
            }
        }
    }

    /// [`Conn::drive_output`] if nobody holds the transport: `None` when somebody does (the
    /// holder, or the worker, writes what is queued then).
    pub fn try_drive_output(&self, wakes: &mut Wakes, cx: &mut Context<'_>) -> Option<bool> {
        let mut io = self.try_io()?;
        Some(self.drive_output(&mut io, wakes, cx))
    }

    fn write_queue(
        &self,
        io: &mut IoState<T>,
        wakes: &mut Wakes,
        cx: &mut Context<'_>,
    ) -> io::Result<bool> {
        let mut budget = MAX_WRITE;
        loop {
            self.pull(io, wakes);
            let Some(t) = io.io.as_mut() else {
                return Ok(false);
            };
            if io.out.is_empty() {
                if io.needs_flush {
                    if let Poll::Ready(r) = t.poll_flush(cx) {
                        r?;
                        io.needs_flush = false;
                        self.flushed_up_to(io.out.done(), wakes);
                    }
                }
                return Ok(false);
            }
            if budget == 0 {
                return Ok(true);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = io.out.slices(self.mode, &mut slices);
            let offered = self.offered(&slices[..n]);
            let n = match t.poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    io.out.set_backlogged();
                    return Ok(false);
                }
            };
            io.out.advance(n);
            io.out.wrote(offered, n);
            budget = budget.saturating_sub(n);
            self.wrote(io, wakes, cx)?;
        }
    }

    /// What a write of `slices` can take when the transport has room: all of them if it
    /// writes vectored, else the first (so that a transport that writes one buffer at a time
    /// does not look backlogged).
    fn offered(&self, slices: &[IoSlice<'_>]) -> usize {
        match self.mode {
            WriteMode::Vectored => slices.iter().map(|s| s.len()).sum(),
            _ => slices.first().map_or(0, |s| s.len()),
        }
    }

    /// The transport took bytes. When a stream waits for its flush, flush now: for a
    /// socket that costs nothing, and the waiter need not wait for the rest of the queue.
    fn wrote(
        &self,
        io: &mut IoState<T>,
        wakes: &mut Wakes,
        cx: &mut Context<'_>,
    ) -> io::Result<()> {
        io.needs_flush = true;
        if self.room_wanted.load(Ordering::Acquire) {
            self.wake_room(&mut self.state(wakes));
        }
        if !self.flush_wanted.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(t) = io.io.as_mut() else {
            return Ok(());
        };
        if let Poll::Ready(r) = t.poll_flush(cx) {
            r?;
            io.needs_flush = false;
            self.flushed_up_to(io.out.done(), wakes);
        }
        Ok(())
    }

    /// The transport has flushed every frame that ends at or below `done`: wake the flushes
    /// it completes. The state lock is taken even when `flush_wanted` is clear: a waiter that checked
    /// `flushed` under it may not have set `flush_wanted` yet, and would miss its wake.
    fn flushed_up_to(&self, done: u64, wakes: &mut Wakes) {
        self.flushed.fetch_max(done, Ordering::AcqRel);
        self.wake_flushed(&mut self.state(wakes));
    }

    /// Pulls frames from the session until the queue holds a few writes' worth, and control
    /// frames beyond that: they go ahead of the data queued.
    fn pull(&self, io: &mut IoState<T>, wakes: &mut Wakes) {
        if !io.out.has_control_room() || io.io.is_none() {
            return;
        }
        let mut st = self.state(wakes);
        let now = st.last_now;
        loop {
            let t = if io.out.has_room(st.session.sending_streams()) {
                st.session.poll_transmit(now)
            } else if io.out.has_control_room() {
                st.session.poll_control(now)
            } else {
                None
            };
            let Some(t) = t else {
                break;
            };
            let control = !matches!(t.cmd, Cmd::Psh | Cmd::Fin);
            let end = io.out.push_frame(&t.header, t.payload, control);
            if let Some(slot) = st.slots.get_mut(&t.stream_id.0) {
                slot.flush_target = end;
            }
        }
        st.dispatch_events();
    }

    /// The transport failed under a direct write: the session ends, and the writer hears why.
    fn fail_direct(&self, io: &mut IoState<T>, wakes: &mut Wakes, e: io::Error) -> Direct {
        let mut st = self.state(wakes);
        fail(io, &mut st, e);
        Direct::Failed(st.end_error(StreamOp::Write))
    }

    /// Parks the writer of `id` until the transport takes more, unless the stream can no longer
    /// write: `close()` may have woken the writers between our look and now, and the queued
    /// path reports why.
    fn wait_room_unless_closed(&self, id: StreamId, wakes: &mut Wakes, cx: &Context<'_>) -> Direct {
        let mut st = self.state(wakes);
        if st.session.direct_room(id).is_err() {
            return Direct::Declined;
        }
        self.park_writer(&mut st, id, WriterWait::Room, cx);
        Direct::Full
    }

    /// Writes up to a write's worth of `buf` to stream `id` straight to the transport, as
    /// whole frames, when nobody else holds the transport: first what is queued (as a flush
    /// would), then, if that all went, `buf`. Only what the transport does not take of the
    /// frames it began is copied (to the front of the output queue, for the worker to
    /// finish). When the transport is full, the writer waits for it instead of queueing.
    pub fn write_direct(&self, id: StreamId, cx: &mut Context<'_>, buf: &[u8]) -> Direct {
        let mut wakes = Wakes::default();
        if self.mode == WriteMode::Single {
            return Direct::Declined;
        }
        let Some(mut guard) = self.try_io() else {
            return Direct::Declined;
        };
        let io = &mut *guard;
        {
            let st = self.state(&mut wakes);
            let ours = st.slots.get(&id.0).is_some_and(|s| s.waiting_room);
            if st.session.has_output() || st.room_waiters.len() > usize::from(ours) {
                // Others have data queued or wait for the transport: queue too, so that the
                // session's round robin shares the transport among us.
                return Direct::Declined;
            }
        }
        // The rest of a frame begun earlier goes first: write it from this task. (Had the
        // transport failed, `direct_room` below declines and the queued path reports it.)
        if self.drive_output(io, &mut wakes, cx) {
            return Direct::Declined;
        }
        let Some(t) = io.io.as_mut() else {
            return Direct::Declined;
        };
        if !io.out.is_empty() {
            // The transport is full: wait for it, as a socket write would.
            return self.wait_room_unless_closed(id, &mut wakes, cx);
        }
        let (room, version) = {
            let st = self.state(&mut wakes);
            match st.session.direct_room(id) {
                Ok(room) => (room, st.session.config().version()),
                Err(_) => return Direct::Declined,
            }
        };
        let len = buf
            .len()
            .min(room)
            .min(DIRECT_MAX)
            .min(DIRECT_FRAMES * self.frame);
        if len < self.frame {
            return Direct::Declined;
        }
        let mut headers = [[0u8; HEADER_LEN]; DIRECT_FRAMES];
        let mut slices = [IoSlice::new(&[]); 2 * DIRECT_FRAMES];
        let frames = buf[..len].chunks(self.frame);
        let count = frames.len();
        for (h, p) in headers.iter_mut().zip(frames.clone()) {
            let plen = u16::try_from(p.len()).expect("frames are at most 65,535 bytes");
            *h = Header::new(version, Cmd::Psh, plen, id).encode();
        }
        for (i, (h, p)) in headers.iter().zip(frames.clone()).enumerate() {
            slices[2 * i] = IoSlice::new(h);
            slices[2 * i + 1] = IoSlice::new(p);
        }
        let mut took = match t.poll_write_vectored(cx, &slices[..2 * count]) {
            Poll::Ready(Ok(0)) => {
                return self.fail_direct(io, &mut wakes, io::ErrorKind::WriteZero.into())
            }
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                return Direct::Declined
            }
            Poll::Ready(Err(e)) => return self.fail_direct(io, &mut wakes, e),
            Poll::Pending => {
                io.out.set_backlogged();
                return self.wait_room_unless_closed(id, &mut wakes, cx);
            }
        };
        // Whole frames the transport took, then the one it began: it must be finished before
        // anything else goes out.
        let wire = took;
        io.out.skip(wire);
        io.out.wrote(self.offered(&slices[..2 * count]), took);
        let mut sent = 0;
        for (h, p) in headers.iter().zip(frames) {
            if took == 0 {
                break;
            }
            let flen = HEADER_LEN + p.len();
            if took < flen {
                let (hrest, prest) = match took.checked_sub(HEADER_LEN) {
                    None => (&h[took..], p),
                    Some(into_payload) => (&h[..0], &p[into_payload..]),
                };
                io.out.push_rest(hrest, prest);
                took = 0;
            } else {
                took -= flen;
            }
            sent += p.len();
        }
        {
            let mut st = self.state(&mut wakes);
            let now = st.last_now;
            st.session.commit_direct(id, sent, now);
            if let Some(slot) = st.slots.get_mut(&id.0) {
                slot.flush_target = io.out.pulled();
            }
            if !io.out.is_empty() {
                // The rest of the frame is the worker's to write.
                st.notify_worker();
            }
        }
        if let Err(e) = self.wrote(io, &mut wakes, cx) {
            fail(io, &mut self.state(&mut wakes), e);
        }
        Direct::Wrote(sent)
    }
}
