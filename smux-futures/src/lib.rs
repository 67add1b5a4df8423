//! smux stream multiplexing for futures-io runtimes (smol, async-std, or any
//! `futures_io::AsyncRead + AsyncWrite + Unpin` transport): many bidirectional streams over one
//! transport, speaking the wire protocol of the Go reference implementation
//! (`github.com/xtaci/smux`), versions 1 and 2.
//!
//! The API is the one of `smux-tokio`, driven by the same code: [`MuxBuilder`],
//! [`MuxConnector`], [`MuxAcceptor`] (a `futures_core::Stream` too), [`MuxStream`] (a
//! `futures_io::AsyncRead + AsyncWrite`; `poll_close` queues FIN and keeps the read side open)
//! and [`MuxWorker`]. Timers (keep-alive, idle timeout) use `async-io`'s `Timer`, the reactor
//! smol and async-std run on.
//!
//! ```no_run
//! use smol::io::{AsyncReadExt, AsyncWriteExt};
//! use smux_futures::MuxBuilder;
//!
//! # fn main() -> std::io::Result<()> {
//! smol::block_on(async {
//!     let tcp = smol::net::TcpStream::connect("127.0.0.1:12345").await?;
//!     let (connector, mut acceptor, worker) = MuxBuilder::client().with_connection(tcp).build();
//!     smol::spawn(worker).detach();
//!
//!     let mut s = connector.connect().unwrap();
//!     s.write_all(b"hello").await?;
//!     let mut buf = [0u8; 5];
//!     s.read_exact(&mut buf).await?;
//!
//!     while let Some(peer) = acceptor.accept().await {
//!         // ...
//!         # drop(peer);
//!     }
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Lifecycle
//!
//! As in `smux-tokio`: the worker ends when all handles are dropped, on
//! [`MuxConnector::close`], when the peer closes the transport, or on a keep-alive timeout; then
//! every pending read, write and accept completes.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod split;

use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
use smux_driver::{
    Adapter, Bind, ReadBuffer, ReadTarget, Runtime, Shared, StreamHandle, TransportRead,
    TransportWrite, WriteMode,
};

pub use smux_driver::{
    Begin, MuxError, MuxResult, MuxStats, QueuedAhead, StreamStats, WithConfig, WithConnection,
};
pub use smux_proto::{ProtocolError, Version};
pub use split::{MuxReadHalf, MuxWriteHalf, ReuniteError};

/// A transport the handles run over: any futures-io `AsyncRead + AsyncWrite + Unpin`, whose
/// reads and writes then take turns, one poll at a time; or a [`Split`] of a read half and a
/// write half, whose reads never wait for a write.
pub trait FuturesConn: Sized {
    /// The read side, as the driver reads it.
    #[doc(hidden)]
    type Read: TransportRead;
    /// The write side, as the driver writes it.
    #[doc(hidden)]
    type Write: TransportWrite;
    /// Splits the transport into its sides.
    #[doc(hidden)]
    fn into_sides(self) -> (Self::Read, Self::Write);
}

impl<T: AsyncRead + AsyncWrite + Unpin> FuturesConn for T {
    type Read = Shared<FuturesIo<T>>;
    type Write = Shared<FuturesIo<T>>;
    fn into_sides(self) -> (Self::Read, Self::Write) {
        smux_driver::share(FuturesIo(self))
    }
}

/// A transport given as its two halves: the worker reads one while streams write the other,
/// and a read never waits for a write. For example, two clones of a smol `TcpStream` (which
/// reads and writes through `&TcpStream`):
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use smux_futures::{MuxBuilder, Split};
///
/// smol::block_on(async {
///     let tcp = smol::net::TcpStream::connect("127.0.0.1:12345").await?;
///     let (connector, acceptor, worker) = MuxBuilder::client()
///         .with_connection(Split::new(tcp.clone(), tcp))
///         .build();
///     smol::spawn(worker).detach();
///     # drop((connector, acceptor));
///     Ok(())
/// })
/// # }
/// ```
///
/// A transport given whole works too; its reads and writes then take turns, one non-blocking
/// call at a time.
#[derive(Debug)]
pub struct Split<R, W> {
    read: R,
    write: W,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Split<R, W> {
    /// The transport whose read half is `read` and write half `write`.
    pub fn new(read: R, write: W) -> Self {
        Split { read, write }
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> FuturesConn for Split<R, W> {
    type Read = FuturesIo<R>;
    type Write = FuturesIo<W>;
    fn into_sides(self) -> (Self::Read, Self::Write) {
        (FuturesIo(self.read), FuturesIo(self.write))
    }
}

/// Builds a session: choose the role ([`MuxBuilder::client`] or [`MuxBuilder::server`]), set
/// options, give the transport ([`MuxBuilder::with_connection`]), then `build()`.
pub type MuxBuilder<S> = smux_driver::MuxBuilder<S, Futures>;
/// Opens streams ([`MuxConnector::connect`]); cloneable.
pub type MuxConnector<T> = smux_driver::Connector<FuturesAdapter<T>>;
/// Receives the streams the peer opens; a `futures_core::Stream` of them too.
pub type MuxAcceptor<T> = smux_driver::Acceptor<FuturesAdapter<T>>;
/// The future that drives the connection; spawn it.
pub type MuxWorker<T> = smux_driver::Worker<FuturesAdapter<T>>;

/// The futures-io adapter family, which [`MuxBuilder`] carries.
#[derive(Debug)]
pub enum Futures {}

/// The futures-io adapter for a transport of type `T`.
#[derive(Debug)]
pub struct FuturesAdapter<T>(PhantomData<fn() -> T>);

impl<T: FuturesConn> Adapter for FuturesAdapter<T> {
    type Read = T::Read;
    type Write = T::Write;
    type Runtime = AsyncIoRuntime;
    type Stream = MuxStream<T>;
}

impl<T: FuturesConn> Bind<T> for Futures {
    type Adapter = FuturesAdapter<T>;
    fn split(conn: T) -> (T::Read, T::Write) {
        conn.into_sides()
    }
}

/// One stream of the connection; it reads and writes like a TCP stream (see
/// `smux_tokio::MuxStream`). `poll_close` queues FIN after the data written so far and keeps
/// the read side open.
///
/// **Dropping a stream mid-message.** smux has no reset: the peer reads what was sent, then a
/// clean end of stream, and cannot tell an abandoned message from a finished one.
///
/// **What `flush` and `close` wait for.** `poll_flush` returns once everything this stream
/// wrote (and its FIN, after `poll_close`) has been handed to the transport and the
/// transport's own `poll_flush` has returned. `poll_close` queues the FIN and returns without
/// waiting for it to be written, unless the session holds more than half of `max_streams`
/// with frames unsent.
///
/// **Cancel safety.** A read or write that returned `Pending` took nothing.
/// [`read_chunk`](Self::read_chunk) is cancel safe; [`write_chunk`](Self::write_chunk) is
/// not, like `write_all`: dropped early, it has sent a prefix of its buffer
/// ([`stats`](Self::stats) tells how much).
pub struct MuxStream<T: FuturesConn> {
    inner: StreamHandle<FuturesAdapter<T>>,
    /// The chunk `AsyncBufRead` holds.
    buffer: ReadBuffer,
}

impl<T: FuturesConn> From<StreamHandle<FuturesAdapter<T>>> for MuxStream<T> {
    fn from(inner: StreamHandle<FuturesAdapter<T>>) -> Self {
        MuxStream {
            inner,
            buffer: ReadBuffer::default(),
        }
    }
}

impl<T: FuturesConn> std::fmt::Debug for MuxStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: FuturesConn> MuxStream<T> {
    /// The stream id on the wire (odd for streams the client opened, even for the server's).
    pub fn get_stream_id(&self) -> u32 {
        self.inner.id()
    }

    /// Whether the stream can carry no more data in either direction.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Payload bytes each way, bytes unread and queued, and in version 2 the windows and the
    /// time writes waited for the peer's. O(1).
    pub fn stats(&self) -> StreamStats {
        self.inner.stats()
    }

    /// Up to `max` bytes of what arrived, without copying: a slice of the received data.
    /// `None` is the end of the stream. Cancel safe.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.buffer.read_chunk(&self.inner, max).await
    }

    /// Sends all of `data` as frames that slice it, with no copy. The whole of `data` counts
    /// against the stream's queue limit; a chunk larger than the room there goes out in
    /// pieces while the call waits. If the future is dropped before it completes, a prefix of
    /// `data` has been taken and will be sent, and the rest will not; [`MuxStream::stats`]
    /// (`bytes_sent` + `queued_bytes`) counts what the stream has taken in all.
    pub async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        self.inner.write_chunk(data).await
    }
}

/// Reads from the chunks the stream already holds, without copying them until `consume`.
impl<T: FuturesConn> AsyncBufRead for MuxStream<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.buffer.poll_fill_buf(&this.inner, cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().buffer.consume(amt);
    }
}

/// A futures-io transport, or one of its halves, as the driver wants it.
#[doc(hidden)]
#[derive(Debug)]
pub struct FuturesIo<T>(T);

impl<T: AsyncRead + Unpin> TransportRead for FuturesIo<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> TransportWrite for FuturesIo<T> {
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn write_mode(&self) -> WriteMode {
        // futures-io cannot say: its default `poll_write_vectored` writes the first buffer
        // only (smol's and async-std's sockets write them all).
        WriteMode::Unknown
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// The clock, `async-io`'s timer, and a cooperative budget per handle.
#[doc(hidden)]
#[derive(Debug)]
pub struct AsyncIoRuntime;

/// Ready operations a handle does in a row before it yields once.
const BUDGET: u8 = 128;

impl Runtime for AsyncIoRuntime {
    type Sleep = async_io::Timer;
    /// Ready operations since the handle last returned `Pending`.
    type Budget = AtomicU8;
    type Proceed = ();

    fn now() -> Instant {
        Instant::now()
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        async_io::Timer::at(deadline)
    }

    fn reset(sleep: &mut Self::Sleep, deadline: Instant) {
        sleep.set_at(deadline);
    }

    fn poll_sleep(sleep: &mut Self::Sleep, cx: &mut Context<'_>) -> Poll<()> {
        std::future::Future::poll(Pin::new(sleep), cx).map(|_| ())
    }

    /// After [`BUDGET`] ready operations in a row, the handle wakes its task and returns
    /// `Pending` once, so that a loop of ready operations lets the executor run other tasks.
    fn poll_proceed(budget: &AtomicU8, cx: &mut Context<'_>) -> Poll<()> {
        if budget.load(Ordering::Relaxed) >= BUDGET {
            budget.store(0, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(())
    }

    fn done(budget: &AtomicU8, (): (), progress: bool) {
        if progress {
            budget.fetch_add(1, Ordering::Relaxed);
        } else {
            budget.store(0, Ordering::Relaxed);
        }
    }
}

/// A plain slice being filled.
struct SliceTarget<'a> {
    buf: &'a mut [u8],
    filled: usize,
}

impl ReadTarget for SliceTarget<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.filled
    }

    fn put(&mut self, data: &[u8]) {
        self.buf[self.filled..self.filled + data.len()].copy_from_slice(data);
        self.filled += data.len();
    }
}

/// A read of `stream` into `buf` (from `buffer` first), as futures-io reads: how many bytes,
/// 0 at the end.
pub(crate) fn poll_read_into<A: Adapter>(
    buffer: &mut ReadBuffer,
    stream: &StreamHandle<A>,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let mut target = SliceTarget { buf, filled: 0 };
    buffer
        .poll_read(stream, cx, &mut target)
        .map_ok(|()| target.filled)
}

impl<T: FuturesConn> AsyncRead for MuxStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        poll_read_into(&mut this.buffer, &this.inner, cx, buf)
    }
}

/// `poll_close` sends FIN after the data written so far and keeps the read side open.
impl<T: FuturesConn> AsyncWrite for MuxStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_shutdown(cx)
    }
}
