//! A stream handle ([`StreamHandle`]): what a [`MuxStream`](crate::MuxStream) and its halves
//! share, and what their reads and writes go through.

use std::fmt;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::Bytes;
use smux_proto::{StreamId, StreamStats};

use crate::conn::Conn;
use crate::handles::{cooperate, Budget};
use crate::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use crate::sync::Arc;
use crate::Adapter;

/// Bytes a stream may write without its task yielding while another stream's writer waits:
/// past it, the next write wakes the task and returns `Pending` once. On a multi-thread
/// runtime a writer whose writes all complete (its peer drains the transport on another
/// thread) could otherwise write its whole cooperative budget (128 writes of up to 64 KiB) in
/// one poll, while a writer woken meanwhile waits behind it in its thread's run queue with no
/// share of the wire (`tests/fairness.rs`). It is the fair share of the session's queue
/// (`options.rs`). A writer alone does not yield: yielding would only cost it throughput.
const TURN: usize = 256 * 1024;

/// A stream's writing, as its turns see it, in one word: the bytes written since the task last
/// waited or yielded (at most [`TURN`]: past it only "a turn's worth" matters), and in
/// [`Turn::WAITING`] whether the last write returned `Pending` (counted in
/// `Conn::waiting_writers`). Each change of that bit is one atomic operation that also returns
/// the bit before, so `waiting_writers` counts every waiting stream exactly once.
#[derive(Default)]
struct Turn(AtomicU32);

impl Turn {
    const WAITING: u32 = 1 << 31;
    /// [`TURN`] fits below [`Turn::WAITING`], twice over: a count plus a capped write never
    /// reaches the bit.
    const CAP: u32 = {
        assert!(2 * TURN < Turn::WAITING as usize);
        TURN as u32
    };

    /// Whether the turn is over (a turn's worth written, and another writer waits): then the
    /// task is woken, to be polled again after the others, and the caller returns `Pending`.
    fn over(&self, waiting_writers: &AtomicUsize, cx: &Context<'_>) -> bool {
        if self.0.load(Ordering::Relaxed) & !Self::WAITING < Self::CAP
            || waiting_writers.load(Ordering::Relaxed) == 0
        {
            return false;
        }
        self.0.fetch_and(Self::WAITING, Ordering::Relaxed);
        cx.waker().wake_by_ref();
        true
    }

    /// Counts a write that took `n` bytes, or waited (`None`).
    fn count(&self, waiting_writers: &AtomicUsize, took: Option<usize>) {
        let before = match took {
            Some(n) => {
                let n = n.min(TURN) as u32;
                // No atomic write when nothing changes: a writer alone stays at the cap.
                let add = |v: u32| {
                    let next = ((v & !Self::WAITING) + n).min(Self::CAP);
                    (next != v).then_some(next)
                };
                let relaxed = Ordering::Relaxed;
                match self.0.fetch_update(relaxed, relaxed, add) {
                    Ok(before) | Err(before) => before,
                }
            }
            None => self.0.swap(Self::WAITING, Ordering::Relaxed),
        };
        Self::note_waiting(waiting_writers, before, took.is_none());
    }

    fn set_waiting(&self, waiting_writers: &AtomicUsize, waiting: bool) {
        if (self.0.load(Ordering::Relaxed) & Self::WAITING != 0) != waiting {
            let before = if waiting {
                self.0.fetch_or(Self::WAITING, Ordering::Relaxed)
            } else {
                self.0.fetch_and(!Self::WAITING, Ordering::Relaxed)
            };
            Self::note_waiting(waiting_writers, before, waiting);
        }
    }

    /// The waiting bit went from what `before` holds to `waiting`: counts the change.
    fn note_waiting(waiting_writers: &AtomicUsize, before: u32, waiting: bool) {
        if (before & Self::WAITING != 0) != waiting {
            if waiting {
                waiting_writers.fetch_add(1, Ordering::Relaxed);
            } else {
                waiting_writers.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Where a stream read puts its bytes: Tokio's `ReadBuf` or a plain slice.
pub(crate) trait ReadTarget {
    /// Bytes that still fit.
    fn remaining(&self) -> usize;
    /// Appends `data` (at most `remaining()` bytes).
    fn put(&mut self, data: &[u8]);
}

/// One stream of the connection, as [`MuxStream`](crate::MuxStream) wraps it. It reads and writes
/// like a TCP stream:
/// - a write of a full frame or more goes straight to the transport when nothing is queued
///   ahead of it; smaller writes are queued and coalesced;
/// - flushing writes what is queued (the calling task does it, unless another task is
///   writing) and flushes the transport;
/// - shutting down queues FIN after the data written so far; the read side stays open;
/// - dropping it sends what it already accepted, then FIN; unread data is dropped.
pub(crate) struct StreamHandle<A: Adapter> {
    conn: Arc<Conn<A::Write>>,
    id: StreamId,
    budget: Budget<A>,
    write_turn: Turn,
}

impl<A: Adapter> StreamHandle<A> {
    pub(crate) fn new(conn: Arc<Conn<A::Write>>, id: StreamId) -> Self {
        StreamHandle {
            conn,
            id,
            budget: Budget::<A>::default(),
            write_turn: Turn::default(),
        }
    }

    /// The stream id on the wire (odd for streams the client opened, even for the server's).
    pub(crate) fn id(&self) -> u32 {
        self.id.0
    }

    /// The stream's counters and gauges: payload bytes each way, bytes unread and queued,
    /// and in version 2 the windows and the time writes waited for the peer's. O(1), as
    /// [`Connector::stats`](crate::Connector::stats).
    pub(crate) fn stats(&self) -> StreamStats {
        self.conn.stream_stats(self.id)
    }

    /// Whether the stream can carry no more data in either direction: both sides sent FIN,
    /// the idle timeout closed it, or the session ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.conn.is_stream_closed(self.id)
    }

    /// Reads into `dst`; nothing put and `Ok` is the end of the stream.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        dst: &mut dyn ReadTarget,
    ) -> Poll<io::Result<()>> {
        cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_read(self.id, cx, dst))
    }

    /// Writes from `buf`; returns how many bytes were taken.
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.take_turn(cx, |cx| self.conn.poll_write(self.id, cx, buf))
    }

    /// Writes from `bufs`, in order; returns how many bytes were taken.
    pub(crate) fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.take_turn(cx, |cx| self.conn.poll_write_vectored(self.id, cx, bufs))
    }

    /// Runs a write under the cooperative budget, and yields once the stream has written
    /// [`TURN`] bytes since it last waited.
    fn take_turn(
        &self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let writers = &self.conn.signals.waiting_writers;
        if self.write_turn.over(writers, cx) {
            return Poll::Pending;
        }
        let out = cooperate::<A::Runtime, _>(&self.budget, cx, write);
        match &out {
            Poll::Ready(Ok(n)) => self.write_turn.count(writers, Some(*n)),
            Poll::Pending => self.write_turn.count(writers, None),
            Poll::Ready(Err(_)) => {}
        }
        out
    }

    /// Polls for up to `max` unread bytes, without copying them: a slice of what was
    /// received. `None` is the end of the stream.
    pub(crate) fn poll_read_chunk(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
        cooperate::<A::Runtime, _>(&self.budget, cx, |cx| {
            self.conn.poll_read_chunk(self.id, cx, max)
        })
    }

    /// Up to `max` unread bytes, without copying them; `None` at the end of the stream. Cancel
    /// safe: nothing is taken unless it is returned.
    pub(crate) async fn read_chunk(&self, max: usize) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_read_chunk(cx, max)).await
    }

    /// Sends all of `data` as frames that slice it, with no copy (frames of a full frame's
    /// size or more go straight to the transport when nothing is queued ahead; the rest
    /// waits in the stream's queue as slices of `data`). The whole of `data` counts against
    /// the stream's queue limit; a chunk larger than the room there goes out in pieces while
    /// the call waits.
    ///
    /// Not cancel safe in the way `write_all` is not: if the future is dropped before it
    /// completes, a prefix of `data` has been taken and will be sent, and the rest will not;
    /// the stream's `stats().bytes_sent` and `queued_bytes` tell how much was taken in all.
    pub(crate) async fn write_chunk(&self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            std::future::poll_fn(|cx| {
                self.take_turn(cx, |cx| self.conn.poll_write_chunk(self.id, cx, &mut data))
            })
            .await?;
        }
        Ok(())
    }

    /// Ready once everything written so far (and FIN, after a shutdown) is written to the
    /// transport and the transport flushed.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_flush(self.id, cx))
    }

    /// Queues FIN after the data written so far; the read side stays open. Like TCP's
    /// `shutdown`, it does not wait for the FIN to be written; `poll_flush` does.
    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_shutdown(self.id, cx))
    }
}

impl<A: Adapter> StreamHandle<A> {
    /// The write half is gone: FIN goes out after the data written.
    pub(crate) fn finish_writing(&self) {
        self.write_turn
            .set_waiting(&self.conn.signals.waiting_writers, false);
        self.conn.finish_writing(self.id);
    }

    /// The read half is gone: unread data, and what arrives later, is dropped.
    pub(crate) fn stop_reading(&self) {
        self.conn.stop_reading(self.id);
    }
}

impl<A: Adapter> Drop for StreamHandle<A> {
    fn drop(&mut self) {
        self.write_turn
            .set_waiting(&self.conn.signals.waiting_writers, false);
        self.conn.release_stream(self.id);
    }
}

impl<A: Adapter> fmt::Debug for StreamHandle<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxStream").field("id", &self.id.0).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::task::Waker;

    use super::*;

    #[test]
    fn a_turn_counts_its_writer_waiting_once_and_caps_its_bytes() {
        let writers = AtomicUsize::new(0);
        let waiting = || writers.load(Ordering::Relaxed);
        let t = Turn::default();
        let cx = Context::from_waker(Waker::noop());
        t.count(&writers, None);
        t.count(&writers, None);
        assert_eq!(waiting(), 1, "one waiting stream, however often it waits");
        t.count(&writers, Some(10));
        assert_eq!(waiting(), 0);
        t.set_waiting(&writers, false);
        assert_eq!(waiting(), 0);
        // Another stream waits: past a turn's worth (however large the writes), the turn ends.
        writers.fetch_add(1, Ordering::Relaxed);
        t.count(&writers, Some(usize::MAX));
        t.count(&writers, Some(usize::MAX));
        assert_eq!(t.0.load(Ordering::Relaxed), Turn::CAP);
        assert!(t.over(&writers, &cx));
        assert!(!t.over(&writers, &cx), "a new turn");
        t.count(&writers, None);
        assert_eq!(waiting(), 2);
        t.set_waiting(&writers, true);
        assert_eq!(waiting(), 2);
        t.set_waiting(&writers, false);
        assert_eq!(waiting(), 1);
    }
}
