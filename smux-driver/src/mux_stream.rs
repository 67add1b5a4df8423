//! The stream type of both adapters ([`MuxStream`]) and its owned halves ([`MuxReadHalf`],
//! [`MuxWriteHalf`]): a [`StreamHandle`] and the chunk a buffered read holds. The runtimes'
//! I/O traits are implemented in `io_tokio.rs` (feature `tokio`) and `io_futures.rs` (feature
//! `futures-io`).

use std::fmt;
use std::io;

use bytes::Bytes;
use smux_proto::StreamStats;

use crate::halves::{split, ReadBuffer, ReadHalf, WriteHalf};
use crate::stream::StreamHandle;
use crate::Adapter;

/// One stream of the connection. It reads and writes like a TCP stream:
/// - a write of a full frame (32 KiB by default) or more goes straight to the transport when
///   nothing is queued ahead of it; smaller writes are queued and share the worker's writes;
/// - flushing writes what is queued from the calling task (unless another task is writing),
///   then flushes the transport;
/// - shutting down (Tokio's `poll_shutdown`, futures-io's `poll_close`) queues FIN after the
///   data written so far and keeps the read side open; like TCP's `shutdown`, it does not
///   wait for the FIN to be written (flushing does);
/// - dropping it sends what it already accepted, then FIN; unread data is dropped, and so is
///   what the peer still sends (in version 2 it is counted as read until the peer's FIN, so
///   the peer's writer is never left waiting for a window).
///
/// Applications name it through their adapter: `smux_tokio::MuxStream<T>` or
/// `smux_futures::MuxStream<T>`, where `T` is the transport.
///
/// # Runtime traits
///
/// Each runtime's I/O traits are behind a feature of this crate, which its adapter enables,
/// and a stream implements those of its adapter's runtime only:
/// - `tokio` (enabled by `smux-tokio`): `tokio::io::AsyncRead`, `AsyncWrite` (its
///   `poll_shutdown` queues FIN) and `AsyncBufRead`, for adapters that implement
///   `TokioStreams`;
/// - `futures-io` (enabled by `smux-futures`): `futures_io::AsyncRead`, `AsyncWrite` (its
///   `poll_close` queues FIN) and `AsyncBufRead`, for adapters that implement
///   `FuturesIoStreams`.
///
/// `AsyncBufRead` lends the chunks the stream received, without copying them until
/// `consume`; reads and [`read_chunk`](Self::read_chunk) take from the lent chunk first, so
/// the bytes keep their order however the calls are mixed. The halves implement the read or
/// the write traits.
///
/// # Behaviour
///
/// **Dropping a stream mid-message.** smux has no reset: the peer reads what was sent, then a
/// clean end of stream, and cannot tell an abandoned message from a finished one. Frame your
/// messages (with a length prefix, say) if the peer must know.
///
/// **What flushing and shutting down wait for.** A flush returns once everything this stream
/// wrote (and its FIN, after a shutdown) has been handed to the transport and the transport's
/// own flush has returned; not for the peer to receive or read it. A shutdown queues the FIN
/// and returns without waiting for it to be written (as TCP's `shutdown`), unless the session
/// holds more than half of `max_streams` with frames unsent.
///
/// **Cancel safety.** The poll functions are the usual ones: a read or write that returned
/// `Pending` took nothing. Of the `async` calls, [`read_chunk`](Self::read_chunk) is cancel
/// safe (nothing is taken unless returned); [`write_chunk`](Self::write_chunk) is not, like
/// `write_all`: dropped early, it has sent a prefix of its buffer ([`stats`](Self::stats)
/// tells how much).
///
/// Split it ([`into_split`](Self::into_split)) to read and write from two tasks: reader and
/// writer wait on separate wakers.
pub struct MuxStream<A: Adapter> {
    pub(crate) inner: StreamHandle<A>,
    /// The chunk `AsyncBufRead` holds.
    pub(crate) buffer: ReadBuffer,
}

impl<A: Adapter> MuxStream<A> {
    pub(crate) fn new(inner: StreamHandle<A>) -> Self {
        MuxStream {
            inner,
            buffer: ReadBuffer::default(),
        }
    }

    /// The stream id on the wire (odd for streams the client opened, even for the server's).
    pub fn get_stream_id(&self) -> u32 {
        self.inner.id()
    }

    /// Whether the stream can carry no more data in either direction: both sides sent FIN,
    /// the idle timeout closed it, or the session ended.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Payload bytes each way, bytes unread and queued, and in version 2 the windows and the
    /// time writes waited for the peer's. O(1).
    pub fn stats(&self) -> StreamStats {
        self.inner.stats()
    }

    /// Up to `max` bytes of what arrived, without copying: a slice of the received data.
    /// `None` is the end of the stream. Cancel safe: nothing is taken unless it is returned.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.buffer.read_chunk(&self.inner, max).await
    }

    /// Sends all of `data` as frames that slice it, with no copy (frames of a full frame's
    /// size or more go straight to the transport when nothing is queued ahead; the rest waits
    /// in the stream's queue as slices of `data`). The whole of `data` counts against the
    /// stream's queue limit; a chunk larger than the room there goes out in pieces while the
    /// call waits.
    ///
    /// Not cancel safe, as `write_all` is not: if the future is dropped before it completes, a
    /// prefix of `data` has been taken and will be sent, and the rest will not;
    /// [`stats`](Self::stats) (`bytes_sent` + `queued_bytes`) counts what the stream has taken
    /// in all.
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        self.inner.write_chunk(data).await
    }

    /// Splits the stream into a read half and a write half that can move to different tasks
    /// or threads, like Tokio's `TcpStream::into_split`; [`MuxReadHalf::reunite`] puts them
    /// back together. Reader and writer wait on separate wakers, and the halves need no lock
    /// of their own. The stream is released once both are gone.
    pub fn into_split(self) -> (MuxReadHalf<A>, MuxWriteHalf<A>) {
        let (r, w) = split(self.inner);
        let read = MuxReadHalf {
            inner: r,
            buffer: self.buffer,
        };
        (read, MuxWriteHalf { inner: w })
    }
}

// Nothing in a stream or its halves is pinned: the I/O traits take them by `&mut`, whatever
// the runtime's budget type.
impl<A: Adapter> Unpin for MuxStream<A> {}
impl<A: Adapter> Unpin for MuxReadHalf<A> {}
impl<A: Adapter> Unpin for MuxWriteHalf<A> {}

impl<A: Adapter> fmt::Debug for MuxStream<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// The read half of a [`MuxStream`] ([`MuxStream::into_split`]): the runtime's `AsyncRead`
/// and `AsyncBufRead` (see [`MuxStream`'s runtime traits](MuxStream#runtime-traits)).
///
/// Dropping it drops the stream's unread data and whatever the peer sends on it later (in
/// version 2 that data still counts as read, so the peer's window keeps moving and its writer
/// is never stuck); the write half goes on.
pub struct MuxReadHalf<A: Adapter> {
    pub(crate) inner: ReadHalf<A>,
    /// The chunk `AsyncBufRead` holds (the stream's, if it held one).
    pub(crate) buffer: ReadBuffer,
}

/// The write half of a [`MuxStream`] ([`MuxStream::into_split`]): the runtime's `AsyncWrite`
/// (see [`MuxStream`'s runtime traits](MuxStream#runtime-traits)).
///
/// Dropping it queues FIN after the data it wrote, as shutting down does; the read half goes
/// on.
pub struct MuxWriteHalf<A: Adapter> {
    pub(crate) inner: WriteHalf<A>,
}

impl<A: Adapter> MuxReadHalf<A> {
    /// Puts the stream back together, or gives both halves back if they are not its halves.
    pub fn reunite(self, write: MuxWriteHalf<A>) -> Result<MuxStream<A>, ReuniteError<A>> {
        let buffer = self.buffer;
        match self.inner.reunite(write.inner) {
            Ok(inner) => Ok(MuxStream { inner, buffer }),
            Err((r, w)) => Err(ReuniteError(
                MuxReadHalf { inner: r, buffer },
                MuxWriteHalf { inner: w },
            )),
        }
    }

    /// Up to `max` bytes of what arrived, without copying; `None` at the end of the stream.
    /// Cancel safe. As [`MuxStream::read_chunk`].
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.buffer.read_chunk(self.inner.stream(), max).await
    }

    /// The stream id on the wire.
    pub fn get_stream_id(&self) -> u32 {
        self.inner.stream().id()
    }

    /// The stream's statistics, as [`MuxStream::stats`].
    pub fn stats(&self) -> StreamStats {
        self.inner.stream().stats()
    }
}

impl<A: Adapter> MuxWriteHalf<A> {
    /// The stream id on the wire.
    pub fn get_stream_id(&self) -> u32 {
        self.inner.stream().id()
    }

    /// The stream's statistics, as [`MuxStream::stats`].
    pub fn stats(&self) -> StreamStats {
        self.inner.stream().stats()
    }

    /// Sends all of `data` as frames that slice it, with no copy. As
    /// [`MuxStream::write_chunk`].
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        self.inner.stream().write_chunk(data).await
    }
}

impl<A: Adapter> fmt::Debug for MuxReadHalf<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<A: Adapter> fmt::Debug for MuxWriteHalf<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// [`MuxReadHalf::reunite`] was given halves of two different streams; here they are back.
pub struct ReuniteError<A: Adapter>(pub MuxReadHalf<A>, pub MuxWriteHalf<A>);

impl<A: Adapter> fmt::Debug for ReuniteError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReuniteError")
            .field(&self.0)
            .field(&self.1)
            .finish()
    }
}

impl<A: Adapter> fmt::Display for ReuniteError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves of different streams")
    }
}

impl<A: Adapter> std::error::Error for ReuniteError<A> {}
