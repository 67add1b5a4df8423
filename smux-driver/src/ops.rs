//! What stream handles do: read, write, flush, shut down, release; and the session's
//! gauges. Opening and accepting are in `open.rs`.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use smux_proto::{SessionStats, StreamError, StreamId, StreamStats};

use crate::conn::{Conn, State};
use crate::error::StreamOp;
use crate::stream::ReadTarget;
use crate::waiters::WriterWait;
use crate::write::Direct;
use crate::TransportWrite;

/// A queued write smaller than this goes to the transport at once, from the writing task
/// ([`Conn::send_queued`]): a small write is most often a message that waits for its answer
/// (and a flush right after would leave the worker's wake-up nothing to do). Larger ones are
/// left to the worker, which runs once the writing task yields, so that a stream of chunks
/// (`tokio::io::copy`'s 8 KiB) goes out in few writes.
const SEND_AT_ONCE_BELOW: usize = 4 * 1024;

/// A write queued `n` bytes: if that is [`SEND_AT_ONCE_BELOW`] or more, the worker sends them.
fn leave_large_to_worker(st: &mut State, n: usize) {
    if n >= SEND_AT_ONCE_BELOW {
        st.waiters.notify_worker();
    }
}

impl<W: TransportWrite> Conn<W> {
    /// Reads from stream `id` into `dst`. Nothing put and `Ok` is the end of the stream.
    pub fn poll_read(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        dst: &mut dyn ReadTarget,
    ) -> Poll<io::Result<()>> {
        self.with_state(|st| {
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
                        st.waiters.register_reader(id, cx);
                        break Poll::Pending;
                    }
                    Err(e) => break Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Read))),
                }
            };
            if any {
                st.after_read();
            }
            result
        })
    }

    /// Takes up to `max` unread bytes of `id` without copying them; `None` at the end of the
    /// stream.
    pub fn poll_read_chunk(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        self.with_state(|st| match st.session.read_chunk(id, max) {
            Ok(chunk) => {
                if chunk.as_ref().is_some_and(|c| !c.is_empty()) {
                    st.after_read();
                }
                Poll::Ready(Ok(chunk))
            }
            Err(StreamError::Blocked) => {
                st.waiters.register_reader(id, cx);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Read))),
        })
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
        self.with_state(|st| match st.session.write_bytes(id, data) {
            Ok(n) => {
                leave_large_to_worker(st, n);
                Poll::Ready(Ok(n))
            }
            Err(StreamError::Blocked) => {
                if park {
                    st.waiters.register_writer(id, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Write))),
        })
    }

    /// Writes to stream `id`; what is taken reaches the wire in order. A write of a full frame
    /// or more goes straight to the transport when it can; the rest is queued, and sent at once
    /// if small ([`SEND_AT_ONCE_BELOW`]).
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

    /// Copies from `bufs` into the stream's queue, to be sent (see [`SEND_AT_ONCE_BELOW`]).
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
    /// What was queued is then sent at once or left to the worker (see
    /// [`SEND_AT_ONCE_BELOW`]).
    fn queue_or_park(
        &self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(&mut Context<'_>, bool) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut r = attempt(cx, false);
        if r.is_pending() {
            self.try_drive(cx);
            r = attempt(cx, true);
        }
        if let Poll::Ready(Ok(1..SEND_AT_ONCE_BELOW)) = r {
            self.send_queued(cx);
        }
        r
    }

    /// One attempt of [`Conn::poll_write_queued`]; registers the writer when `park`.
    fn queue_write(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        park: bool,
    ) -> Poll<io::Result<usize>> {
        self.with_state(|st| {
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
                        if park {
                            st.waiters.register_writer(id, cx);
                        }
                        return Poll::Pending;
                    }
                    Err(e) => return Poll::Ready(Err(st.stream_io_error(&e, StreamOp::Write))),
                }
            }
            leave_large_to_worker(st, total);
            Poll::Ready(Ok(total))
        })
    }

    /// Ready once everything written to `id` (and its FIN, if shut down) has been written to
    /// the transport and the transport flushed. The calling task writes what is queued itself
    /// when nobody else holds the transport; otherwise it waits for the holder or the worker.
    pub fn poll_flush(&self, id: StreamId, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(r) = self.with_state(|st| flush_outcome(st, id)) {
            return Poll::Ready(r);
        }
        self.try_drive(cx);
        self.with_state(|st| {
            if let Some(r) = flush_outcome(st, id) {
                return Poll::Ready(r);
            }
            let closing = st.session.is_closing();
            st.waiters
                .park_writer(id, WriterWait::Flush, closing, cx, &self.signals);
            Poll::Pending
        })
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
        let now_crowded = self.with_state(|st| {
            if let Err(e) = st.session.shutdown(id) {
                return Err(st.stream_io_error(&e, StreamOp::Write));
            }
            st.waiters.notify_worker();
            Ok(crowded(st))
        });
        match now_crowded {
            Err(e) => return Poll::Ready(Err(e)),
            Ok(false) => return Poll::Ready(Ok(())),
            Ok(true) => {}
        }
        self.try_drive(cx);
        self.with_state(|st| {
            if !crowded(st) || st.session.is_closing() {
                return Poll::Ready(Ok(()));
            }
            let closing = st.session.is_closing();
            st.waiters
                .park_writer(id, WriterWait::Room, closing, cx, &self.signals);
            Poll::Pending
        })
    }

    /// The version spoken, once known.
    pub fn version(&self) -> Option<smux_proto::Version> {
        self.with_state(|st| st.session.version())
    }

    /// The session's counters and gauges.
    pub fn stats(&self) -> SessionStats {
        self.with_state(|st| st.session.stats())
    }

    /// Stream `id`'s counters and gauges.
    pub fn stream_stats(&self, id: StreamId) -> StreamStats {
        self.with_state(|st| st.session.stream_stats(id).unwrap_or_default())
    }

    /// The write half of `id` is gone: FIN goes out after the data it wrote.
    pub fn finish_writing(&self, id: StreamId) {
        self.with_state(|st| {
            if st.session.shutdown(id).is_ok() {
                st.waiters.notify_worker();
            }
        })
    }

    /// The read half of `id` is gone: its unread data is dropped, and so is what arrives
    /// later (counted as read, so that a version-2 peer's window keeps moving).
    pub fn stop_reading(&self, id: StreamId) {
        self.with_state(|st| {
            if st.session.stop_reading(id).is_ok() {
                st.waiters.forget_reader(id);
                st.after_read();
            }
        })
    }

    /// The stream handle is gone: data it wrote still goes out, then FIN; unread data is
    /// dropped.
    pub fn release_stream(&self, id: StreamId) {
        self.with_state(|st| {
            crate::trace::event_debug!(st, stream = id.0, "stream closed");
            st.session.close_stream(id);
            st.waiters.remove_stream(id);
            // Its FIN (and data it wrote) is to be sent.
            st.waiters.notify_worker();
            st.release_handle();
        })
    }

    /// A connector is gone.
    pub fn release_connector(&self) {
        self.with_state(|st| st.release_handle())
    }

    /// The acceptor is gone: streams the peer opens from now on are closed at once.
    pub fn release_acceptor(&self) {
        self.with_state(|st| {
            st.acceptor_alive = false;
            // A SYN waiting for the backlog is refused now: nobody will make room.
            st.session.set_hold_opens(false);
            st.waiters.forget_acceptor();
            while let Some(id) = st.session.accept() {
                st.session.close_stream(id);
            }
            st.waiters.notify_worker();
            st.release_handle();
        })
    }

    /// One more connector.
    pub fn add_connector(&self) {
        self.with_state(|st| st.handles += 1)
    }

    /// Stream handles alive.
    pub fn num_streams(&self) -> usize {
        self.with_state(|st| st.waiters.streams())
    }

    /// Whether `id` can carry no more data either way.
    pub fn is_stream_closed(&self, id: StreamId) -> bool {
        self.with_state(|st| st.finished || st.session.is_stream_closed(id))
    }
}

/// A flush of `id` is complete (`Ok`) or can no longer complete (the error).
fn flush_outcome(st: &State, id: StreamId) -> Option<io::Result<()>> {
    if !st.waiters.has_stream(id) || st.waiters.flush_done(&st.session, id) {
        return Some(Ok(()));
    }
    // After an orderly end the last frames may still be on their way to the transport.
    let ended = st.session.is_ended();
    let lost = st.finished || (ended && !st.ended_orderly());
    let pending = st.session.has_pending_output(id);
    (lost || (pending && ended)).then(|| Err(st.end_error(StreamOp::Write)))
}

/// More than half the stream limit is taken, and frames wait to be sent.
fn crowded(st: &State) -> bool {
    let s = &st.session;
    s.num_streams() * 2 > s.config().max_streams() && s.has_output()
}
