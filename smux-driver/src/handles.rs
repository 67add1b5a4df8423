//! The handles, written once for both adapters: [`Connector`], [`Acceptor`] and
//! [`StreamHandle`], generic over an [`Adapter`]. The adapters name them (`MuxConnector<T>`,
//! `MuxAcceptor<T>`) and wrap `StreamHandle` in their `MuxStream<T>`, which implements their
//! runtime's I/O traits. Every `poll_*` and `async` operation takes part in the runtime's
//! cooperative budget.

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use smux_proto::{StreamId, StreamStats};

use crate::MuxStats;

use crate::conn::Conn;
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::Arc;
use crate::{Adapter, MuxResult, Runtime};

type Budget<A> = <<A as Adapter>::Runtime as Runtime>::Budget;

/// Bytes a stream may write without its task yielding while another stream's writer waits:
/// past it, the next write wakes the task and returns `Pending` once. Without this, on a
/// multi-thread runtime a writer whose writes all complete (its peer drains the transport on
/// another thread) writes up to its whole cooperative budget, 128 writes of up to 64 KiB, in
/// one poll, while a writer woken meanwhile waits behind it in its thread's run queue and gets
/// no share of the wire (8 to 24 MiB in a row in `tests/fairness.rs`); with it, writers take
/// turns of at most this much. It is the fair share of the session's queue (`options.rs`).
/// A writer alone does not yield: that cost a single stream 15 % on the current-thread
/// runtime.
const TURN: usize = 256 * 1024;

/// A stream's writing, as its turns see it.
#[derive(Default)]
struct Turn {
    /// Bytes written since the task last waited or yielded.
    written: AtomicUsize,
    /// The last write returned `Pending` (counted in `Conn::waiting_writers`).
    waiting: AtomicBool,
}

impl Turn {
    /// Whether the turn is over (a turn's worth written, and another writer waits): then the
    /// task is woken, to be polled again after the others, and the caller returns `Pending`.
    fn over<T>(&self, conn: &Conn<T>, cx: &Context<'_>) -> bool {
        if self.written.load(Ordering::Relaxed) < TURN
            || conn.waiting_writers.load(Ordering::Relaxed) == 0
        {
            return false;
        }
        self.written.store(0, Ordering::Relaxed);
        cx.waker().wake_by_ref();
        true
    }

    /// Counts a write that took `n` bytes, or waited (`None`).
    fn count<T>(&self, conn: &Conn<T>, took: Option<usize>) {
        match took {
            Some(n) => {
                self.written.fetch_add(n, Ordering::Relaxed);
                self.set_waiting(conn, false);
            }
            None => {
                self.written.store(0, Ordering::Relaxed);
                self.set_waiting(conn, true);
            }
        }
    }

    fn set_waiting<T>(&self, conn: &Conn<T>, waiting: bool) {
        if self.waiting.load(Ordering::Relaxed) != waiting
            && self.waiting.swap(waiting, Ordering::Relaxed) != waiting
        {
            if waiting {
                conn.waiting_writers.fetch_add(1, Ordering::Relaxed);
            } else {
                conn.waiting_writers.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Runs `op` under the runtime's cooperative budget: `Pending` (the task woken) instead, once
/// the task has done enough without yielding; only a ready outcome spends the budget.
fn cooperate<R: Runtime, O>(
    budget: &R::Budget,
    cx: &mut Context<'_>,
    op: impl FnOnce(&mut Context<'_>) -> Poll<O>,
) -> Poll<O> {
    let Poll::Ready(proceed) = R::poll_proceed(budget, cx) else {
        return Poll::Pending;
    };
    let out = op(cx);
    R::done(budget, proceed, out.is_ready());
    out
}

/// Where a stream read puts its bytes: Tokio's `ReadBuf` or a plain slice.
pub trait ReadTarget {
    /// Bytes that still fit.
    fn remaining(&self) -> usize;
    /// Appends `data` (at most `remaining()` bytes).
    fn put(&mut self, data: &[u8]);
}

/// Opens streams. Cloneable; the session lives while any handle does.
pub struct Connector<A: Adapter> {
    conn: Arc<Conn<A::Io>>,
    budget: Budget<A>,
}

impl<A: Adapter> Connector<A> {
    pub(crate) fn new(conn: Arc<Conn<A::Io>>) -> Self {
        Connector {
            conn,
            budget: Budget::<A>::default(),
        }
    }

    /// Opens a stream. Its SYN goes out ahead of any data, so it can be written to at once.
    ///
    /// Fails with [`MuxError::ConnectionClosed`](crate::MuxError::ConnectionClosed) once the
    /// session is closed, [`MuxError::TooManyStreams`](crate::MuxError::TooManyStreams) at the
    /// stream limit, [`MuxError::StreamIdsExhausted`](crate::MuxError::StreamIdsExhausted) when
    /// this connection has used every id. While [`open`](Self::open) calls wait for room, they
    /// go first: `connect()` fails with `TooManyStreams`.
    pub fn connect(&self) -> MuxResult<A::Stream> {
        let id = self.conn.connect()?;
        Ok(StreamHandle::new(Arc::clone(&self.conn), id).into())
    }

    /// Opens a stream like [`connect`](Self::connect), but at the stream limit waits for a
    /// stream to go instead of failing with `TooManyStreams`. Waiting calls are served first
    /// come, first served, and ahead of `connect()`, which fails while any wait.
    ///
    /// Fails with [`MuxError::ConnectionClosed`](crate::MuxError::ConnectionClosed) once the
    /// session is closed (waiting calls too), and
    /// [`MuxError::StreamIdsExhausted`](crate::MuxError::StreamIdsExhausted) when this
    /// connection has used every id.
    ///
    /// Cancel safe: dropping the future gives up its place in line, and the next call in
    /// line goes on.
    pub async fn open(&self) -> MuxResult<A::Stream> {
        struct Place<'a, T: crate::Transport> {
            conn: &'a Conn<T>,
            ticket: Option<u64>,
        }
        impl<T: crate::Transport> Drop for Place<'_, T> {
            fn drop(&mut self) {
                if let Some(t) = self.ticket {
                    self.conn.cancel_open(t);
                }
            }
        }
        let mut place = Place {
            conn: &self.conn,
            ticket: None,
        };
        let id = std::future::poll_fn(|cx| {
            cooperate::<A::Runtime, _>(&self.budget, cx, |cx| {
                place.conn.poll_open(&mut place.ticket, cx)
            })
        })
        .await?;
        Ok(StreamHandle::new(Arc::clone(&self.conn), id).into())
    }

    /// Resolves once the session has ended and nothing more will move: closed by either side,
    /// failed, or timed out. Any number of tasks may wait. Each gets what the worker returns:
    /// `Ok` for an orderly end, else the same [`MuxError`](crate::MuxError) variant (an
    /// `IoError` rebuilt from the original's kind and message), or `ConnectionClosed` if the
    /// worker was dropped. Cancel safe.
    pub async fn closed(&self) -> MuxResult<()> {
        std::future::poll_fn(|cx| {
            cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_closed(cx))
        })
        .await
    }

    /// Drains the connection, then closes it. From the first call on, `connect()` and `open()`
    /// fail with [`MuxError::Draining`](crate::MuxError::Draining), and a stream the peer opens
    /// is refused with a FIN (smux has no GOAWAY, so the peer reads a clean end of stream with
    /// no data). Streams already open go on in both directions; once every one of them is
    /// over both ways (FIN sent and received) and its data read (or its handle dropped), the
    /// session closes as [`close`](Self::close) does, and this returns what `close` would.
    /// Streams that arrived before the call can still be accepted.
    ///
    /// There is no deadline of its own: wrap it in a timeout, then close.
    ///
    /// With Tokio (`tests/production.rs` runs the same):
    ///
    /// ```text
    /// use std::time::Duration;
    /// if tokio::time::timeout(Duration::from_secs(10), connector.drain()).await.is_err() {
    ///     // Streams still open after 10 s get FIN now; their peers read a clean end.
    ///     let _ = connector.close().await;
    /// }
    /// ```
    ///
    /// Cancel safe: the session stays draining.
    pub async fn drain(&self) -> MuxResult<()> {
        std::future::poll_fn(|cx| {
            cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_drain(cx))
        })
        .await
    }

    /// The connection's counters (bytes and frames each way, streams opened, accepted and
    /// refused, keep-alives sent) and gauges (streams open and waiting for accept, bytes
    /// unread and queued). O(1); it takes the session's state lock briefly, never a lock
    /// held across transport I/O.
    pub fn stats(&self) -> MuxStats {
        self.conn.stats()
    }

    /// The protocol version the connection speaks: `None` on a server built with
    /// `with_auto_version` until the client's first frame has arrived; always `Some` for a
    /// client and without auto.
    pub fn version(&self) -> Option<crate::smux_proto::Version> {
        self.conn.version()
    }

    /// Stream handles alive on this connection, in both directions.
    pub fn get_num_streams(&self) -> usize {
        self.conn.num_streams()
    }

    /// Closes the connection in order: data already taken by `poll_write` reaches the wire,
    /// every open stream gets FIN (so the peer reads to a clean end), then the transport is
    /// shut down. Works whether or not the worker is being polled, and may be called more than
    /// once. Afterwards `connect()` fails, the acceptor ends, and reads on open streams return
    /// what had arrived, then a `ConnectionAborted` error. An error means the session had
    /// ended otherwise (e.g. the worker was dropped) or the transport failed before
    /// everything was written.
    pub async fn close(&self) -> MuxResult<()> {
        std::future::poll_fn(|cx| {
            cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_close(cx))
        })
        .await
    }
}

impl<A: Adapter> Clone for Connector<A> {
    fn clone(&self) -> Self {
        self.conn.add_connector();
        Connector::new(Arc::clone(&self.conn))
    }
}

impl<A: Adapter> Drop for Connector<A> {
    fn drop(&mut self) {
        self.conn.release_connector();
    }
}

impl<A: Adapter> fmt::Debug for Connector<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxConnector").finish_non_exhaustive()
    }
}

/// Receives the streams the peer opens; also a `futures_core::Stream` of them. Dropping it
/// closes those that arrive later.
pub struct Acceptor<A: Adapter> {
    conn: Arc<Conn<A::Io>>,
    budget: Budget<A>,
}

impl<A: Adapter> Acceptor<A> {
    pub(crate) fn new(conn: Arc<Conn<A::Io>>) -> Self {
        Acceptor {
            conn,
            budget: Budget::<A>::default(),
        }
    }

    /// The next stream the peer opened; `None` once the session is closed.
    pub async fn accept(&mut self) -> Option<A::Stream> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next stream the peer opened; `None` once the session is closed.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<A::Stream>> {
        cooperate::<A::Runtime, _>(&self.budget, cx, |cx| {
            self.conn
                .poll_accept(cx)
                .map(|id| id.map(|id| StreamHandle::new(Arc::clone(&self.conn), id).into()))
        })
    }
}

impl<A: Adapter> futures_core::Stream for Acceptor<A> {
    type Item = A::Stream;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_accept(cx)
    }
}

impl<A: Adapter> Drop for Acceptor<A> {
    fn drop(&mut self) {
        self.conn.release_acceptor();
    }
}

impl<A: Adapter> fmt::Debug for Acceptor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxAcceptor").finish_non_exhaustive()
    }
}

/// One stream of the connection, as the adapters' `MuxStream` wraps it. It reads and writes
/// like a TCP stream:
/// - a write of a full frame or more goes straight to the transport when nothing is queued
///   ahead of it; smaller writes are queued and coalesced;
/// - flushing writes what is queued (the calling task does it, unless another task is
///   writing) and flushes the transport;
/// - shutting down queues FIN after the data written so far; the read side stays open;
/// - dropping it sends what it already accepted, then FIN; unread data is dropped.
pub struct StreamHandle<A: Adapter> {
    conn: Arc<Conn<A::Io>>,
    id: StreamId,
    budget: Budget<A>,
    write_turn: Turn,
}

impl<A: Adapter> StreamHandle<A> {
    fn new(conn: Arc<Conn<A::Io>>, id: StreamId) -> Self {
        StreamHandle {
            conn,
            id,
            budget: Budget::<A>::default(),
            write_turn: Turn::default(),
        }
    }

    /// The stream id on the wire (odd for streams the client opened, even for the server's).
    pub fn id(&self) -> u32 {
        self.id.0
    }

    /// The stream's counters and gauges: payload bytes each way, bytes unread and queued,
    /// and in version 2 the windows and the time writes waited for the peer's. O(1), as
    /// [`Connector::stats`].
    pub fn stats(&self) -> StreamStats {
        self.conn.stream_stats(self.id)
    }

    /// Whether the stream can carry no more data in either direction: both sides sent FIN,
    /// the idle timeout closed it, or the session ended.
    pub fn is_closed(&self) -> bool {
        self.conn.is_stream_closed(self.id)
    }

    /// Reads into `dst`; nothing put and `Ok` is the end of the stream.
    pub fn poll_read(
        &self,
        cx: &mut Context<'_>,
        dst: &mut dyn ReadTarget,
    ) -> Poll<io::Result<()>> {
        cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_read(self.id, cx, dst))
    }

    /// Writes from `buf`; returns how many bytes were taken.
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.take_turn(cx, |cx| self.conn.poll_write(self.id, cx, buf))
    }

    /// Writes from `bufs`, in order; returns how many bytes were taken.
    pub fn poll_write_vectored(
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
        if self.write_turn.over(&self.conn, cx) {
            return Poll::Pending;
        }
        let out = cooperate::<A::Runtime, _>(&self.budget, cx, write);
        match &out {
            Poll::Ready(Ok(n)) => self.write_turn.count(&self.conn, Some(*n)),
            Poll::Pending => self.write_turn.count(&self.conn, None),
            Poll::Ready(Err(_)) => {}
        }
        out
    }

    /// Polls for up to `max` unread bytes, without copying them: a slice of what was
    /// received. `None` is the end of the stream.
    pub fn poll_read_chunk(
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
    pub async fn read_chunk(&self, max: usize) -> io::Result<Option<Bytes>> {
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
    pub async fn write_chunk(&self, mut data: Bytes) -> io::Result<()> {
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
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_flush(self.id, cx))
    }

    /// Queues FIN after the data written so far; the read side stays open. Like TCP's
    /// `shutdown`, it does not wait for the FIN to be written; `poll_flush` does.
    pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        cooperate::<A::Runtime, _>(&self.budget, cx, |cx| self.conn.poll_shutdown(self.id, cx))
    }
}

/// The chunk a buffered read (`AsyncBufRead`) holds, for a stream or its read half: reads and
/// chunks are served from it first, so that the bytes keep their order however the
/// application mixes the calls.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    held: Bytes,
}

impl ReadBuffer {
    /// Reads into `dst`, from the held chunk first.
    pub fn poll_read<A: Adapter>(
        &mut self,
        stream: &StreamHandle<A>,
        cx: &mut Context<'_>,
        dst: &mut dyn ReadTarget,
    ) -> Poll<io::Result<()>> {
        if self.held.is_empty() {
            return stream.poll_read(cx, dst);
        }
        let n = dst.remaining().min(self.held.len());
        dst.put(&self.held.split_to(n));
        Poll::Ready(Ok(()))
    }

    /// The held chunk, or the next one received; empty at the end of the stream.
    pub fn poll_fill_buf<A: Adapter>(
        &mut self,
        stream: &StreamHandle<A>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<&[u8]>> {
        if self.held.is_empty() {
            match stream.poll_read_chunk(cx, usize::MAX) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(chunk)) => self.held = chunk.unwrap_or_default(),
            }
        }
        Poll::Ready(Ok(&self.held))
    }

    /// `n` bytes of the held chunk were used.
    pub fn consume(&mut self, n: usize) {
        let _ = self.held.split_to(n.min(self.held.len()));
    }

    /// Up to `max` bytes without copying, from the held chunk first; `None` at the end.
    pub async fn read_chunk<A: Adapter>(
        &mut self,
        stream: &StreamHandle<A>,
        max: usize,
    ) -> io::Result<Option<Bytes>> {
        if self.held.is_empty() {
            return stream.read_chunk(max).await;
        }
        let n = max.min(self.held.len());
        Ok(Some(self.held.split_to(n)))
    }
}

/// The read half of a stream ([`split`]). Dropping it drops the stream's unread data and what
/// arrives later (in version 2 the peer's window keeps moving); the write half goes on.
pub struct ReadHalf<A: Adapter> {
    /// `None` once reunited.
    inner: Option<Arc<StreamHandle<A>>>,
}

/// The write half of a stream ([`split`]). Dropping it queues FIN after the data it wrote; the
/// read half goes on.
pub struct WriteHalf<A: Adapter> {
    /// `None` once reunited.
    inner: Option<Arc<StreamHandle<A>>>,
}

/// Splits a stream into halves that can go to different tasks, like Tokio's
/// `TcpStream::into_split`. The stream is released once both are gone.
pub fn split<A: Adapter>(stream: StreamHandle<A>) -> (ReadHalf<A>, WriteHalf<A>) {
    let inner = Arc::new(stream);
    (
        ReadHalf {
            inner: Some(Arc::clone(&inner)),
        },
        WriteHalf { inner: Some(inner) },
    )
}

impl<A: Adapter> ReadHalf<A> {
    /// The stream both halves share.
    pub fn stream(&self) -> &StreamHandle<A> {
        self.inner.as_ref().expect("only reunite takes it")
    }

    /// Whether `write` is this stream's other half.
    pub fn is_pair_of(&self, write: &WriteHalf<A>) -> bool {
        match (&self.inner, &write.inner) {
            (Some(r), Some(w)) => Arc::ptr_eq(r, w),
            _ => false,
        }
    }

    /// Puts the stream back together; gives both halves back if they are not of one stream.
    #[allow(clippy::result_large_err)]
    pub fn reunite(
        mut self,
        mut write: WriteHalf<A>,
    ) -> Result<StreamHandle<A>, (ReadHalf<A>, WriteHalf<A>)> {
        if !self.is_pair_of(&write) {
            return Err((self, write));
        }
        let (r, w) = (self.inner.take(), write.inner.take());
        drop(w);
        let inner = r.expect("checked by is_pair_of");
        match Arc::try_unwrap(inner) {
            Ok(stream) => Ok(stream),
            Err(_) => unreachable!("the two halves held the only references"),
        }
    }
}

impl<A: Adapter> WriteHalf<A> {
    /// The stream both halves share.
    pub fn stream(&self) -> &StreamHandle<A> {
        self.inner.as_ref().expect("only reunite takes it")
    }
}

impl<A: Adapter> Drop for ReadHalf<A> {
    fn drop(&mut self) {
        if let Some(h) = self.inner.take() {
            h.conn.stop_reading(h.id);
        }
    }
}

impl<A: Adapter> Drop for WriteHalf<A> {
    fn drop(&mut self) {
        if let Some(h) = self.inner.take() {
            h.write_turn.set_waiting(&h.conn, false);
            h.conn.finish_writing(h.id);
        }
    }
}

impl<A: Adapter> fmt::Debug for ReadHalf<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxReadHalf")
            .field("id", &self.inner.as_ref().map(|h| h.id.0))
            .finish()
    }
}

impl<A: Adapter> fmt::Debug for WriteHalf<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxWriteHalf")
            .field("id", &self.inner.as_ref().map(|h| h.id.0))
            .finish()
    }
}

impl<A: Adapter> Drop for StreamHandle<A> {
    fn drop(&mut self) {
        self.write_turn.set_waiting(&self.conn, false);
        self.conn.release_stream(self.id);
    }
}

impl<A: Adapter> fmt::Debug for StreamHandle<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxStream").field("id", &self.id.0).finish()
    }
}
