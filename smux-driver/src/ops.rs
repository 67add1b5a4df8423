//! What stream handles do: read, write, flush, shut down, release; and the session's
//! gauges. Opening and accepting are in `open.rs`.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use smux_proto::{SessionStats, StreamError, StreamId, StreamStats};

use crate::conn::{Conn, WriterWait};
use crate::direct::Direct;
use crate::error::StreamOp;
use crate::stream::ReadTarget;
use crate::wakers::Wakes;
use crate::Transport;

impl<T: Transport> Conn<T> {
    /// Reads from stream `id` into `dst`. Nothing put and `Ok` is the end of the stream.
    pub fn poll_read(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        dst: &mut dyn ReadTarget,
    ) -> Poll<io::Result<()>> {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        let mut any = false;
        let result = loop {
            let max = dst.remaining();
            if max == 0 {
                break Poll::Ready(Ok(()));
            }
            match st.session.read_chunk(id, max) {
                Ok(Some(chunk)) => {
                    dst.put(&chunk);
                    any = true;
                }
                Ok(None) => break Poll::Ready(Ok(())),
                Err(_) if any => break Poll::Ready(Ok(())),
                Err(StreamError::Blocked) => {
                    let st = &mut *st;
                    if let Some(slot) = st.slots.get_mut(&id.0) {
                        st.wakes.register(&mut slot.reader, cx);
                    }
                    break Poll::Pending;
                }
                Err(e) => break Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Read))),
            }
        };
        if any {
            st.after_read();
        }
        result
    }

    /// Takes up to `max` unread bytes of `id` without copying them; `None` at the end of the
    /// stream.
    pub fn poll_read_chunk(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        match st.session.read_chunk(id, max) {
            Ok(chunk) => {
                if chunk.as_ref().is_some_and(|c| !c.is_empty()) {
                    st.after_read();
                }
                Poll::Ready(Ok(chunk))
            }
            Err(StreamError::Blocked) => {
                let st = &mut *st;
                if let Some(slot) = st.slots.get_mut(&id.0) {
                    st.wakes.register(&mut slot.reader, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Read))),
        }
    }

    /// Sends the front of `data` on `id` without copying it (a frame or more goes straight to
    /// the transport when it can, the rest is queued as slices of `data`); what was taken is
    /// split off `data`. Returns how many bytes were taken.
    pub fn poll_write_chunk(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        if let Some(r) = self.send_direct(id, cx, data) {
            if let Poll::Ready(Ok(n)) = r {
                data.advance(n);
            }
            return r;
        }
        self.queue_or_park(cx, |cx, park| self.queue_chunk(id, cx, data, park))
    }

    /// One attempt to queue the front of `data`; registers the writer when `park`.
    fn queue_chunk(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        data: &mut Bytes,
        park: bool,
    ) -> Poll<io::Result<usize>> {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        match st.session.write_bytes(id, data) {
            Ok(n) => {
                if n > 0 {
                    st.notify_worker();
                }
                Poll::Ready(Ok(n))
            }
            Err(StreamError::Blocked) => {
                if park {
                    let st = &mut *st;
                    if let Some(slot) = st.slots.get_mut(&id.0) {
                        st.wakes.register(&mut slot.writer, cx);
                    }
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Write))),
        }
    }

    /// Writes to stream `id`; what is taken reaches the wire in order. A write of a full frame
    /// or more goes straight to the transport when it can; the rest is queued for the worker.
    pub fn poll_write(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(r) = self.send_direct(id, cx, buf) {
            return r;
        }
        self.poll_write_queued(id, cx, &[IoSlice::new(buf)])
    }

    /// Writes from `bufs`, in order: the first buffer alone if it is a frame or more (so it
    /// can go straight to the transport), else as many of them as the stream can queue.
    pub fn poll_write_vectored(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) if first.len() >= self.frame => self.poll_write(id, cx, first),
            _ => self.poll_write_queued(id, cx, bufs),
        }
    }

    /// Copies from `bufs` into the stream's queue and wakes the worker to send it.
    fn poll_write_queued(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.queue_or_park(cx, |cx, park| self.queue_write(id, cx, bufs, park))
    }

    /// Sends the front of `buf` on `id` straight to the transport when it is a frame or more
    /// and [`Conn::write_direct`] can; `None` when it is to be queued instead.
    fn send_direct(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        if buf.len() < self.frame {
            return None;
        }
        match self.write_direct(id, cx, buf) {
            Direct::Wrote(n) => Some(Poll::Ready(Ok(n))),
            Direct::Failed(e) => Some(Poll::Ready(Err(e))),
            Direct::Full => Some(Poll::Pending),
            Direct::Declined => None,
        }
    }

    /// Queues with `attempt` (its flag: whether to park the writer when the queue is full).
    /// A writer that finds the queue full writes what is queued itself first, when nobody
    /// else holds the transport (as a flush would), then tries once more, parking this time.
    fn queue_or_park(
        &self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&mut Context<'_>, bool) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let ready @ Poll::Ready(_) = attempt(cx, false) {
            return ready;
        }
        let mut wakes = Wakes::default();
        self.try_drive_output(&mut wakes, cx);
        drop(wakes);
        attempt(cx, true)
    }

    /// One attempt of [`Conn::poll_write_queued`]; registers the writer when `park`.
    fn queue_write(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        park: bool,
    ) -> Poll<io::Result<usize>> {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        let mut total = 0;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            match st.session.write(id, buf) {
                Ok(n) => {
                    total += n;
                    if n < buf.len() {
                        break;
                    }
                }
                Err(_) if total > 0 => break,
                Err(StreamError::Blocked) => {
                    let st = &mut *st;
                    if park {
                        if let Some(slot) = st.slots.get_mut(&id.0) {
                            st.wakes.register(&mut slot.writer, cx);
                        }
                    }
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Write))),
            }
        }
        if total > 0 {
            st.notify_worker();
        }
        Poll::Ready(Ok(total))
    }

    /// Ready once everything written to `id` (and its FIN, if shut down) has been written to
    /// the transport and the transport flushed. The calling task writes what is queued itself
    /// when nobody else holds the transport; otherwise it waits for the holder or the worker.
    pub fn poll_flush(&self, id: StreamId, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut wakes = Wakes::default();
        {
            let st = self.state(&mut wakes);
            if let Some(r) = self.flush_outcome(&st, id) {
                return Poll::Ready(r);
            }
        }
        self.try_drive_output(&mut wakes, cx);
        let mut st = self.state(&mut wakes);
        if let Some(r) = self.flush_outcome(&st, id) {
            return Poll::Ready(r);
        }
        self.park_writer(&mut st, id, WriterWait::Flush, cx);
        Poll::Pending
    }

    /// A flush of `id` is complete (`Ok`) or can no longer complete (the error).
    fn flush_outcome(&self, st: &crate::conn::State, id: StreamId) -> Option<io::Result<()>> {
        if !st.slots.contains_key(&id.0) || self.flush_done(st, id) {
            return Some(Ok(()));
        }
        // After an orderly end the last frames may still be on their way to the transport.
        let ended = st.session.is_ended();
        let lost = st.finished || (ended && !st.ended_orderly());
        let pending = st.session.has_pending_output(id);
        (lost || (pending && ended)).then(|| Err(st.end_error(StreamOp::Write)))
    }

    /// Queues FIN on `id` after its data, as TCP's `shutdown` queues its FIN: it does not wait
    /// for the worker to write it, so that the FIN can share a write with what the task does
    /// next. The read side stays open.
    ///
    /// One exception: while the session holds more than half its `max_streams`, with frames
    /// still to send, the task writes them itself, or waits until they are written. A loop
    /// that opens and shuts down streams without ever waiting otherwise outruns the worker,
    /// and `connect()` fails at the limit with the streams' FINs still queued.
    pub fn poll_shutdown(&self, id: StreamId, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        if let Err(e) = st.session.shutdown(id) {
            return Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Write)));
        }
        st.notify_worker();
        if !crowded(&st) {
            return Poll::Ready(Ok(()));
        }
        drop(st);
        self.try_drive_output(&mut wakes, cx);
        let mut st = self.state(&mut wakes);
        if !crowded(&st) || st.session.is_closing() {
            return Poll::Ready(Ok(()));
        }
        self.park_writer(&mut st, id, WriterWait::Room, cx);
        Poll::Pending
    }

    /// The version spoken, once known.
    pub fn version(&self) -> Option<smux_proto::Version> {
        let mut wakes = Wakes::default();
        let st = self.state(&mut wakes);
        st.session.version()
    }

    /// The session's counters and gauges.
    pub fn stats(&self) -> SessionStats {
        let mut wakes = Wakes::default();
        let st = self.state(&mut wakes);
        st.session.stats()
    }

    /// Stream `id`'s counters and gauges.
    pub fn stream_stats(&self, id: StreamId) -> StreamStats {
        let mut wakes = Wakes::default();
        let st = self.state(&mut wakes);
        st.session.stream_stats(id).unwrap_or_default()
    }

    /// The write half of `id` is gone: FIN goes out after the data it wrote.
    pub fn finish_writing(&self, id: StreamId) {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        if st.session.shutdown(id).is_ok() {
            st.notify_worker();
        }
    }

    /// The read half of `id` is gone: its unread data is dropped, and so is what arrives
    /// later (counted as read, so that a version-2 peer's window keeps moving).
    pub fn stop_reading(&self, id: StreamId) {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        if st.session.stop_reading(id).is_ok() {
            if let Some(slot) = st.slots.get_mut(&id.0) {
                slot.reader = None;
            }
            st.after_read();
        }
    }

    /// The stream handle is gone: data it wrote still goes out, then FIN; unread data is
    /// dropped.
    pub fn release_stream(&self, id: StreamId) {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        crate::trace::event_debug!(st, stream = id.0, "stream closed");
        st.session.close_stream(id);
        if let Some(slot) = st.slots.remove(&id.0) {
            if slot.waiting_flush {
                st.flush_waiters.retain(|w| *w != id);
            }
            if slot.waiting_room {
                st.room_waiters.retain(|w| *w != id);
            }
        }
        // After a burst, give the table's memory back (amortised: once per halving).
        let cap = st.slots.capacity();
        if cap > 64 && st.slots.len() * 4 < cap {
            let len = st.slots.len();
            st.slots.shrink_to(len * 2);
        }
        // Its FIN (and data it wrote) is to be sent.
        st.notify_worker();
        st.release_handle();
    }

    /// A connector is gone.
    pub fn release_connector(&self) {
        let mut wakes = Wakes::default();
        self.state(&mut wakes).release_handle();
    }

    /// The acceptor is gone: streams the peer opens from now on are closed at once.
    pub fn release_acceptor(&self) {
        let mut wakes = Wakes::default();
        let mut st = self.state(&mut wakes);
        st.acceptor_alive = false;
        // A SYN waiting for the backlog is refused now: nobody will make room.
        st.session.set_hold_opens(false);
        let st = &mut *st;
        st.wakes.discard(&mut st.accept_waker);
        while let Some(id) = st.session.accept() {
            st.session.close_stream(id);
        }
        st.notify_worker();
        st.release_handle();
    }

    /// One more connector.
    pub fn add_connector(&self) {
        let mut wakes = Wakes::default();
        self.state(&mut wakes).handles += 1;
    }

    /// Stream handles alive.
    pub fn num_streams(&self) -> usize {
        let mut wakes = Wakes::default();
        let n = self.state(&mut wakes).slots.len();
        n
    }

    /// Whether `id` can carry no more data either way.
    pub fn is_stream_closed(&self, id: StreamId) -> bool {
        let mut wakes = Wakes::default();
        let st = self.state(&mut wakes);
        st.finished || st.session.is_stream_closed(id)
    }
}

/// More than half the stream limit is taken, and frames wait to be sent.
fn crowded(st: &crate::conn::State) -> bool {
    let s = &st.session;
    s.num_streams() * 2 > s.config().max_streams() && s.has_output()
}
