//! The write side: the transport's write half, the output queue and the flush position, owned
//! by the write lock. Everyone who writes goes through [`Conn::writer`] and then one of three
//! operations on the guard: [`Conn::drive`] (what the session queued: the worker, a flushing
//! task, a writer whose queue is full, `close()`), [`Conn::write_direct`] (a stream's full
//! frames straight from its buffer) and [`Conn::poll_finish`] (the end).

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use smux_proto::frame::{Cmd, Header, HEADER_LEN};
use smux_proto::{SessionEnd, StreamId};

use crate::conn::{Conn, State, Writer};
use crate::error::StreamOp;
use crate::output::{OutQueue, MAX_IOV};
use crate::sync::atomic::Ordering;
use crate::waiters::{Wakes, WriterWait};
use crate::{TransportWrite, WriteMode};

/// Bytes written per call of [`Conn::drive`]: one busy connection must not starve the runtime.
const MAX_WRITE: usize = 1024 * 1024;
/// A direct write sends at most this much: a control frame that becomes ready meanwhile waits
/// behind at most one such write.
const DIRECT_MAX: usize = 64 * 1024;
/// Frames in one direct write, at most (each takes two of the write's buffers).
const DIRECT_FRAMES: usize = 16;

/// The transport's write half and what waits to be written to it.
#[derive(Debug)]
pub(crate) struct WriteSide<W> {
    /// Dropped (closing the write half) once nothing more can move on it.
    io: Option<W>,
    out: OutQueue,
    /// Written since the transport's last flush.
    needs_flush: bool,
}

impl<W> WriteSide<W> {
    pub fn new(io: W) -> Self {
        WriteSide {
            io: Some(io),
            out: OutQueue::default(),
            needs_flush: false,
        }
    }

    pub fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// Bytes wait to be written, or written bytes to be flushed.
    pub fn has_work(&self) -> bool {
        !self.out.is_empty() || self.needs_flush
    }

    /// Records a transport failure: the session ends and unwritten output is dropped.
    pub fn fail(&mut self, st: &mut State, e: io::Error) {
        self.out.clear();
        st.fail(e);
    }

    /// Nothing more will move: marks the end, wakes everyone (the worker too), and hands back
    /// the write half for the caller to drop once it holds no lock (dropping it may be a
    /// syscall).
    pub fn finish(&mut self, st: &mut State) -> Option<W> {
        st.finished = true;
        self.out.clear();
        st.waiters.wake_all();
        st.waiters.release_worker();
        self.io.take()
    }
}

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

impl<W: TransportWrite> Conn<W> {
    /// Moves frames from the session through the output queue to the transport, and flushes
    /// the transport once the queue is empty; a transport failure ends the session. Returns
    /// whether it stopped for its budget with more to write.
    pub fn drive(&self, w: &mut Writer<'_, W>, cx: &mut Context<'_>) -> bool {
        let more = match self.write_queue(w, cx) {
            Ok(more) => more,
            Err(e) => {
                let (ws, mut st) = w.parts();
                ws.fail(&mut st, e);
                false
            }
        };
        self.note_queued(w);
        more
    }

    /// Records whether the write side has work left, for the worker
    /// ([`Signals::queued`](crate::waiters::Signals::queued)).
    fn note_queued(&self, w: &Writer<'_, W>) {
        self.signals.queued.store(w.has_work(), Ordering::Relaxed);
    }

    /// [`Conn::drive`] from a stream's task, if nobody holds the write side: `None` when
    /// somebody does (the holder, or the worker, writes what is queued then).
    pub fn try_drive(&self, cx: &mut Context<'_>) -> Option<bool> {
        let mut key = Wakes::default();
        let mut w = self.writer(&mut key)?;
        let more = self.drive(&mut w, cx);
        leave_rest_to_worker(&mut w);
        Some(more)
    }

    /// Sends what a write just queued, from the writing task, as a socket's write does: no
    /// task switch to the worker, which a flush right after would make useless. If somebody
    /// holds the write side, it is left to the holder, which wakes the worker as it lets go.
    /// If bytes wait already (the transport is full), or the transport cannot take all now,
    /// it is left to the worker, which writes as the transport drains: a task that writes into
    /// a full transport only fills it sooner, and every byte it adds is one more ahead of the
    /// next small message (a request behind bulk transfers over a slow link waits longer).
    pub fn send_queued(&self, cx: &mut Context<'_>) {
        let mut key = Wakes::default();
        let Some(mut w) = self.writer_or_hand_off(&mut key) else {
            return;
        };
        if !w.has_work() {
            self.drive(&mut w, cx);
        }
        leave_rest_to_worker(&mut w);
    }

    fn write_queue(&self, w: &mut Writer<'_, W>, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut budget = MAX_WRITE;
        let mut dry = false;
        loop {
            // Once the session ran dry, what it queues later wakes the worker to write it.
            if !dry {
                dry = pull(w);
            }
            let ws = &mut **w;
            let Some(t) = ws.io.as_mut() else {
                return Ok(false);
            };
            if ws.out.is_empty() {
                if ws.needs_flush {
                    self.flush(w, cx)?;
                }
                return Ok(false);
            }
            if budget == 0 {
                return Ok(true);
            }
            // Few segments are the common case: a small array is cheaper to set up.
            let res = if ws.out.segments() <= FEW {
                write_slices(self.mode, t, &mut ws.out, &mut [IoSlice::new(&[]); FEW], cx)
            } else {
                write_slices(
                    self.mode,
                    t,
                    &mut ws.out,
                    &mut [IoSlice::new(&[]); MAX_IOV],
                    cx,
                )
            };
            let (offered, n) = match res {
                Poll::Ready(Ok((_, 0))) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(r)) => r,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    ws.out.set_backlogged();
                    return Ok(false);
                }
            };
            ws.out.advance(n);
            ws.out.wrote(offered, n);
            budget = budget.saturating_sub(n);
            self.wrote(w, cx)?;
        }
    }

    /// The transport took bytes. Writers waiting for room are woken; when a stream waits for
    /// its flush, the transport is flushed now: for a socket that costs nothing, and the
    /// waiter need not wait for the rest of the queue.
    fn wrote(&self, w: &mut Writer<'_, W>, cx: &mut Context<'_>) -> io::Result<()> {
        w.needs_flush = true;
        if self.signals.room_wanted.load(Ordering::Acquire) {
            w.state().waiters.wake_room(&self.signals);
        }
        if self.signals.flush_wanted.load(Ordering::Acquire) {
            self.flush(w, cx)?;
        }
        Ok(())
    }

    /// Flushes the transport; once it has, wakes the flushes that completes. The state lock
    /// is taken even when no flush waits: a waiter that looked at the flushed position under
    /// it may not have registered yet, and would miss its wake.
    fn flush(&self, w: &mut Writer<'_, W>, cx: &mut Context<'_>) -> io::Result<()> {
        let ws = &mut **w;
        let Some(t) = ws.io.as_mut() else {
            return Ok(());
        };
        if let Poll::Ready(r) = t.poll_flush(cx) {
            r?;
            ws.needs_flush = false;
            let done = ws.out.done();
            let mut st = w.state();
            let st = &mut *st;
            st.waiters.flushed_to(done, &st.session, &self.signals);
        }
        Ok(())
    }

    /// The transport failed under a direct write: the session ends, and the writer hears why.
    fn fail_direct(&self, w: &mut Writer<'_, W>, e: io::Error) -> Direct {
        let (ws, mut st) = w.parts();
        ws.fail(&mut st, e);
        Direct::Failed(st.end_error(StreamOp::Write))
    }

    /// Parks the writer of `id` until the transport takes more, unless the stream can no longer
    /// write: `close()` may have woken the writers between our look and now, and the queued
    /// path reports why.
    fn wait_room_unless_closed(
        &self,
        w: &mut Writer<'_, W>,
        id: StreamId,
        cx: &Context<'_>,
    ) -> Direct {
        let mut st = w.state();
        if st.session.direct_room(id).is_err() {
            return Direct::Declined;
        }
        let closing = st.session.is_closing();
        st.waiters
            .park_writer(id, WriterWait::Room, closing, cx, &self.signals);
        Direct::Full
    }

    /// Writes up to a write's worth of `buf` to stream `id` straight to the transport, as
    /// whole frames, when nobody else holds the write side: first what is queued (as a flush
    /// would), then, if that all went, `buf`. Only what the transport does not take of the
    /// frames it began is copied (to the front of the output queue, for whoever writes next).
    /// When the transport is full, the writer waits for it instead of queueing.
    pub fn write_direct(&self, id: StreamId, cx: &mut Context<'_>, buf: &[u8]) -> Direct {
        if self.mode == WriteMode::Single {
            return Direct::Declined;
        }
        let mut key = Wakes::default();
        let Some(mut w) = self.writer(&mut key) else {
            return Direct::Declined;
        };
        {
            let st = w.state();
            if st.session.has_output() || st.waiters.others_wait_room(id) {
                // Others have data queued or wait for the transport: queue too, so that the
                // session's round robin shares the transport among us.
                return Direct::Declined;
            }
        }
        // The rest of a frame begun earlier goes first: write it from this task. (Had the
        // transport failed, `direct_room` below declines and the queued path reports it.)
        if self.drive(&mut w, cx) || w.io.is_none() {
            return Direct::Declined;
        }
        if w.has_queued() {
            // The transport is full: wait for it, as a socket write would.
            leave_rest_to_worker(&mut w);
            return self.wait_room_unless_closed(&mut w, id, cx);
        }
        let (room, version) = {
            let st = w.state();
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
        let t = w.io.as_mut().expect("looked above");
        let mut took = match t.poll_write_vectored(cx, &slices[..2 * count]) {
            Poll::Ready(Ok(0)) => return self.fail_direct(&mut w, io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                return Direct::Declined
            }
            Poll::Ready(Err(e)) => return self.fail_direct(&mut w, e),
            Poll::Pending => {
                w.out.set_backlogged();
                return self.wait_room_unless_closed(&mut w, id, cx);
            }
        };
        // Whole frames the transport took, then the one it began: it must be finished before
        // anything else goes out.
        w.out.skip(took);
        w.out.wrote(offered(self.mode, &slices[..2 * count]), took);
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
                w.out.push_rest(hrest, prest);
                took = 0;
            } else {
                took -= flen;
            }
            sent += p.len();
        }
        {
            let (ws, mut st) = w.parts();
            let now = st.last_now;
            st.session.commit_direct(id, sent, now);
            st.waiters.set_flush_target(id, ws.out.pulled());
            if ws.has_queued() {
                // The rest of the frame is for whoever writes next.
                st.waiters.notify_worker();
            }
        }
        if let Err(e) = self.wrote(&mut w, cx) {
            let (ws, mut st) = w.parts();
            ws.fail(&mut st, e);
        }
        self.note_queued(&w);
        Direct::Wrote(sent)
    }

    /// Once the session has ended and its output is written: flushes and shuts down the
    /// transport (after an orderly end), drops the write half, and wakes everyone. `Ready`
    /// once finished; `State::linger` then tells whether the worker lingers on the read side
    /// (an orderly end that we began, see `Worker::poll_end`).
    pub fn poll_finish(&self, w: &mut Writer<'_, W>, cx: &mut Context<'_>) -> Poll<()> {
        let (orderly, ours) = {
            let st = w.state();
            if st.finished {
                return Poll::Ready(());
            }
            if !st.session.is_ended() {
                return Poll::Pending;
            }
            (
                st.ended_orderly() && st.failure.error.is_none(),
                matches!(st.session.end_reason(), Some(SessionEnd::Closed)),
            )
        };
        let mut shut = Ok(());
        let ws = &mut **w;
        if let (true, Some(t)) = (orderly, ws.io.as_mut()) {
            if !ws.out.is_empty() {
                return Poll::Pending;
            }
            shut = match t.poll_flush(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => match t.poll_shutdown(cx) {
                    Poll::Pending => return Poll::Pending,
                    // The peer may have closed first; shutting down is then moot.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                    Poll::Ready(r) => r,
                },
                Poll::Ready(Err(e)) => Err(e),
            };
        }
        let dead = {
            let (ws, mut st) = w.parts();
            // We ended first: the peer may still be sending, so the worker lingers on the
            // read side (unless told not to).
            st.linger = orderly && ours && shut.is_ok() && !self.linger.is_zero();
            if let Err(e) = shut {
                st.record_error(e);
            }
            ws.finish(&mut st)
        };
        drop(dead);
        Poll::Ready(())
    }
}

/// After a stream's task wrote: if it left work (the transport was full, the write budget
/// ran out, a flush waits), the worker takes it over. The transport keeps the waker of the
/// last write that waited only (Tokio's sockets and pipes do), which is now the task's; the
/// task may never come back (its write cancelled, or failed at once because the session
/// ended), so the worker writes again, and the transport then wakes the worker. The task, if
/// it waits, is woken as for any queued write: when the queue takes more.
fn leave_rest_to_worker<W>(w: &mut Writer<'_, W>) {
    if w.has_work() {
        w.state().waiters.notify_worker();
    }
}

/// Segments a small write array holds.
const FEW: usize = 8;

/// Writes the segments at the front of `out`, as many as `slices` holds; returns how many
/// bytes the write offered and how many it took.
fn write_slices<'a, W: TransportWrite>(
    mode: WriteMode,
    t: &mut W,
    out: &'a mut OutQueue,
    slices: &mut [IoSlice<'a>],
    cx: &mut Context<'_>,
) -> Poll<io::Result<(usize, usize)>> {
    let n = out.slices(mode, slices);
    let offered = offered(mode, &slices[..n]);
    t.poll_write_vectored(cx, &slices[..n])
        .map_ok(|took| (offered, took))
}

/// What a write of `slices` can take when the transport has room: all of them if it writes
/// vectored, else the first (so that a transport that writes one buffer at a time does not
/// look backlogged).
fn offered(mode: WriteMode, slices: &[IoSlice<'_>]) -> usize {
    match mode {
        WriteMode::Vectored => slices.iter().map(|s| s.len()).sum(),
        _ => slices.first().map_or(0, |s| s.len()),
    }
}

/// Pulls frames from the session until the queue holds a few writes' worth, and control
/// frames beyond that: they go ahead of the data queued. Returns whether the session ran dry.
fn pull<W>(w: &mut Writer<'_, W>) -> bool {
    let (ws, mut st) = w.parts();
    if !ws.out.has_control_room() || ws.io.is_none() {
        return false;
    }
    let st = &mut *st;
    let now = st.last_now;
    loop {
        let t = if ws.out.has_room(st.session.sending_streams()) {
            st.session.poll_transmit(now)
        } else if ws.out.has_control_room() {
            st.session.poll_control(now)
        } else {
            None
        };
        let Some(t) = t else {
            break;
        };
        let control = !matches!(t.cmd, Cmd::Psh | Cmd::Fin);
        let end = ws.out.push_frame(&t.header, t.payload, control);
        st.waiters.set_flush_target(t.stream_id, end);
    }
    st.dispatch_events();
    !st.session.has_output()
}
