//! smux stream multiplexing for futures-io runtimes (smol, async-std, or any
//! `futures_io::AsyncRead + AsyncWrite + Unpin` transport): many bidirectional streams over one
//! transport, speaking the wire protocol of the Go reference implementation
//! (`github.com/xtaci/smux`), versions 1 and 2.
//!
//! The API is the one of the Tokio adapter (`smux-tokio`), with the same driver and the same
//! stream type underneath: [`MuxBuilder`], [`MuxConnector`], [`MuxAcceptor`] (a
//! `futures_core::Stream` too), [`MuxStream`] (a `futures_io::AsyncRead + AsyncWrite`;
//! `poll_close` queues FIN and keeps the read side open) and [`MuxWorker`]. Timers
//! (keep-alive, idle timeout) use `async-io`'s `Timer`, the reactor smol and async-std run on.
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
//! As with Tokio: the worker ends when all handles are dropped, on
//! [`MuxConnector::close`], when the peer closes the transport, or on a keep-alive timeout; then
//! every pending read, write and accept completes.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use smux_driver::{
    Adapter, Bind, FuturesIoStreams, Runtime, Shared, TransportRead, TransportWrite, WriteMode,
};

pub use smux_driver::{
    Begin, MuxError, MuxResult, MuxStats, QueuedAhead, StreamStats, WithConfig, WithConnection,
};
pub use smux_proto::{ProtocolError, Version};

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
}

/// Its streams implement futures-io's traits.
impl<T: FuturesConn> FuturesIoStreams for FuturesAdapter<T> {}

impl<T: FuturesConn> Bind<T> for Futures {
    type Adapter = FuturesAdapter<T>;
    fn split(conn: T) -> (T::Read, T::Write) {
        conn.into_sides()
    }
}

/// One stream of the connection, a futures-io `AsyncRead + AsyncWrite + AsyncBufRead`. It
/// reads and writes like a TCP stream:
/// - a write of a full frame (32 KiB by default) or more goes straight to the transport when
///   nothing is queued ahead of it; smaller ones are queued, and one under 4 KiB is then
///   written from the calling task at once (unless another task is writing), as a socket
///   writes; the rest share the worker's writes;
/// - `flush` writes what is queued from the calling task (unless another task is writing),
///   then flushes the transport;
/// - `close` queues FIN after the data written so far and keeps the read side open; like
///   TCP's `shutdown`, it does not wait for the FIN to be written (`flush` does);
/// - dropping it sends what it already accepted, then FIN; unread data is dropped, and so is
///   what the peer still sends (in version 2 it is counted as read until the peer's FIN, so
///   the peer's writer is never left waiting for a window).
///
/// **Dropping a stream mid-message.** smux has no reset: the peer reads what was sent, then a
/// clean end of stream, and cannot tell an abandoned message from a finished one. Frame your
/// messages (a length prefix, say) if the peer must know.
///
/// **What `flush` and `close` wait for.** `poll_flush` returns once everything this stream
/// wrote (and its FIN, after `poll_close`) has been handed to the transport and the
/// transport's own `poll_flush` has returned. `poll_close` queues the FIN and returns without
/// waiting for it to be written, unless the session holds more than half of `max_streams`
/// with frames unsent.
///
/// **Cancel safety.** A read or write that returned `Pending` took nothing.
/// [`read_chunk`](smux_driver::MuxStream::read_chunk) is cancel safe;
/// [`write_chunk`](smux_driver::MuxStream::write_chunk) is not, like `write_all`: dropped
/// early, it has sent a prefix of its buffer ([`stats`](smux_driver::MuxStream::stats) tells
/// how much).
///
/// Split it ([`into_split`](smux_driver::MuxStream::into_split)) to read and write from two
/// tasks: reader and writer wait on separate wakers.
///
/// The type is the driver's, shared with the Tokio adapter; this crate enables its futures-io
/// traits (the driver's feature `futures-io`). Its methods are listed below.
pub type MuxStream<T> = smux_driver::MuxStream<FuturesAdapter<T>>;

/// The read half of a [`MuxStream`] ([`into_split`](smux_driver::MuxStream::into_split)), a
/// futures-io `AsyncRead + AsyncBufRead`.
///
/// Dropping it drops the stream's unread data and whatever the peer sends on it later (in
/// version 2 that data still counts as read, so the peer's window keeps moving and its writer
/// is never stuck); the write half goes on.
pub type MuxReadHalf<T> = smux_driver::MuxReadHalf<FuturesAdapter<T>>;

/// The write half of a [`MuxStream`] ([`into_split`](smux_driver::MuxStream::into_split)), a
/// futures-io `AsyncWrite`.
///
/// Dropping it queues FIN after the data it wrote, as `poll_close` does; the read half goes
/// on.
pub type MuxWriteHalf<T> = smux_driver::MuxWriteHalf<FuturesAdapter<T>>;

/// [`reunite`](smux_driver::MuxReadHalf::reunite) was given halves of two different streams;
/// here they are back (fields `.0` and `.1`).
pub type ReuniteError<T> = smux_driver::ReuniteError<FuturesAdapter<T>>;

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
