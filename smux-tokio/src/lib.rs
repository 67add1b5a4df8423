//! smux stream multiplexing for Tokio: many bidirectional streams over one
//! `AsyncRead + AsyncWrite + Unpin` transport (TCP, TLS, a `tokio::io::duplex` pipe, ...),
//! speaking the wire protocol of the Go reference implementation (`github.com/xtaci/smux`),
//! versions 1 and 2. Each [`MuxStream`] behaves like a TCP stream.
//!
//! ```no_run
//! use smux_tokio::MuxBuilder;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::TcpStream;
//! #[tokio::main]
//! async fn main() {
//! let tcp = TcpStream::connect("127.0.0.1:12345").await.unwrap();
//! // build() returns three pieces:
//! // connector — open new outgoing streams
//! // acceptor — receive peer-initiated streams
//! // worker — the future that drives I/O; spawn it
//! let (connector, mut acceptor, worker) =
//! MuxBuilder::client().with_connection(tcp).build();
//! tokio::spawn(worker);
//! // Outgoing
//! let mut s = connector.connect().unwrap();
//! s.write_all(b"hello").await.unwrap();
//! let mut buf = [0u8; 5];
//! s.read_exact(&mut buf).await.unwrap();
//! // Incoming
//! while let Some(mut peer) = acceptor.accept().await {
//! // ...
//! }
//! }
//! ```
//!
//! (The seed's code, unchanged but for the crate name; `tests/lifecycle.rs` runs the same body
//! against a server on an ephemeral port.) The configuration example of the seed:
//!
//! ```no_run
//! # async fn f(connection: tokio::net::TcpStream) {
//! use smux_tokio::MuxBuilder;
//! use std::num::{NonZeroU64, NonZeroUsize};
//! let (connector, acceptor, worker) = MuxBuilder::server()
//! // Send a NOP frame every N seconds to keep the connection alive.
//! .with_keep_alive_interval(NonZeroU64::new(15).unwrap())
//! // If we don't see any frame from the peer for this many seconds,
//! // declare the connection dead and tear everything down.
//! // Defaults to 3 × keep_alive_interval.
//! .with_keep_alive_timeout(NonZeroU64::new(45).unwrap())
//! // Per-stream idle timeout (seconds): close streams with no
//! // recent traffic.
//! .with_idle_timeout(NonZeroU64::new(60).unwrap())
//! // Backpressure thresholds: cap how many frames may sit in the
//! // tx/rx queues before poll_write / poll_read park.
//! .with_max_tx_queue(NonZeroUsize::new(1024).unwrap())
//! .with_max_rx_queue(NonZeroUsize::new(1024).unwrap())
//! .with_connection(connection)
//! .build();
//! # }
//! ```
//!
//! The server side is the same with [`MuxBuilder::server`]; client and server differ only in
//! the parity of the stream ids they allocate.
//!
//! # Lifecycle
//!
//! [`MuxConnector`] (cloneable), [`MuxAcceptor`] and the [`MuxStream`]s share the connection.
//! The [`MuxWorker`] future drives its I/O and ends when
//! - all handles (connectors, the acceptor, streams) are dropped: queued data and FINs are
//!   sent, then the transport is shut down (`Ok`);
//! - [`MuxConnector::close`] is called (`Ok`);
//! - the peer closes the transport (`Ok`; streams the peer did not finish read an
//!   `UnexpectedEof` error after their data);
//! - a configured keep-alive timeout fires ([`MuxError::KeepAliveTimeout`]), or the peer breaks
//!   the protocol ([`MuxError::Protocol`]), or the transport fails ([`MuxError::IoError`]).
//!
//! Then every pending read, write and accept completes. Reads return what had arrived, then
//! end of stream if the peer had finished the stream, or an error: `UnexpectedEof` (peer
//! closed), `ConnectionReset` (transport failed), `TimedOut` (keep-alive), `InvalidData`
//! (protocol error), `ConnectionAborted` (closed locally).
//!
//! # Go peers
//!
//! Go's smux keeps keep-alive on by default and drops a peer that sends nothing for 30 s.
//! Keep-alive here is off by default: turn it on with
//! [`MuxBuilder::with_keep_alive_interval`] (10 s, as Go) when the peer is Go.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod io;
mod split;

use std::io::IoSlice;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use smux_driver::{Adapter, Bind, ReadBuffer, Shared, StreamHandle, TransportRead, TransportWrite};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

pub use smux_driver::{
    Begin, MuxError, MuxResult, MuxStats, QueuedAhead, StreamStats, WithConfig, WithConnection,
};
pub use smux_proto::{ProtocolError, Version};
pub use split::{MuxReadHalf, MuxWriteHalf, ReuniteError};

use crate::io::{TokioIo, TokioReadBuf, TokioRuntime};

/// A transport the handles run over: any Tokio `AsyncRead + AsyncWrite + Unpin`, whose reads
/// and writes then take turns, one poll at a time; or a [`Split`] of a read half and a write
/// half, whose reads never wait for a write.
pub trait TokioConn: Sized {
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

impl<T: AsyncRead + AsyncWrite + Unpin> TokioConn for T {
    type Read = Shared<TokioIo<T>>;
    type Write = Shared<TokioIo<T>>;
    fn into_sides(self) -> (Self::Read, Self::Write) {
        smux_driver::share(TokioIo(self))
    }
}

/// A transport given as its two halves, such as those of [`TcpStream::into_split`]: the
/// worker reads one while streams write the other, and a read never waits for a write.
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// use smux_tokio::{MuxBuilder, Split};
///
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:12345").await?;
/// let (read, write) = tcp.into_split();
/// let (connector, acceptor, worker) = MuxBuilder::client()
///     .with_connection(Split::new(read, write))
///     .build();
/// tokio::spawn(worker);
/// # drop((connector, acceptor));
/// # Ok(())
/// # }
/// ```
///
/// A transport given whole (`with_connection(tcp)`) works too; its reads and writes then take
/// turns, one non-blocking call at a time.
///
/// [`TcpStream::into_split`]: https://docs.rs/tokio/latest/tokio/net/struct.TcpStream.html#method.into_split
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

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> TokioConn for Split<R, W> {
    type Read = TokioIo<R>;
    type Write = TokioIo<W>;
    fn into_sides(self) -> (Self::Read, Self::Write) {
        (TokioIo(self.read), TokioIo(self.write))
    }
}

/// Builds a session: choose the role ([`MuxBuilder::client`] or [`MuxBuilder::server`]), set
/// options, give the transport ([`MuxBuilder::with_connection`]), then `build()`.
pub type MuxBuilder<S> = smux_driver::MuxBuilder<S, Tokio>;
/// Opens streams ([`MuxConnector::connect`]); cloneable. See [`smux_driver::Connector`].
pub type MuxConnector<T> = smux_driver::Connector<TokioAdapter<T>>;
/// Receives the streams the peer opens; a `futures_core::Stream` of them too.
pub type MuxAcceptor<T> = smux_driver::Acceptor<TokioAdapter<T>>;
/// The future that drives the connection; spawn it. See the [crate docs](crate#lifecycle)
/// for when it ends.
pub type MuxWorker<T> = smux_driver::Worker<TokioAdapter<T>>;

/// The Tokio adapter family, which [`MuxBuilder`] carries.
#[derive(Debug)]
pub enum Tokio {}

/// The Tokio adapter for a transport of type `T`.
#[derive(Debug)]
pub struct TokioAdapter<T>(PhantomData<fn() -> T>);

impl<T: TokioConn> Adapter for TokioAdapter<T> {
    type Read = T::Read;
    type Write = T::Write;
    type Runtime = TokioRuntime;
    type Stream = MuxStream<T>;
}

impl<T: TokioConn> Bind<T> for Tokio {
    type Adapter = TokioAdapter<T>;
    fn split(conn: T) -> (T::Read, T::Write) {
        conn.into_sides()
    }
}

/// One stream of the connection. It reads and writes like a TCP stream:
/// - a write of a full frame (32 KiB by default) or more goes straight to the transport when
///   nothing is queued ahead of it; smaller writes are queued and share the worker's writes;
/// - `flush` writes what is queued from the calling task (unless another task is writing),
///   then flushes the transport;
/// - `shutdown` queues FIN after the data written so far and keeps the read side open; like
///   TCP's `shutdown`, it does not wait for the FIN to be written (`flush` does);
/// - dropping it sends what it already accepted, then FIN; unread data is dropped, and so is
///   what the peer still sends (in version 2 it is counted as read until the peer's FIN, so
///   the peer's writer is never left waiting for a window).
///
/// **Dropping a stream mid-message.** smux has no reset: the peer reads what was sent, then a
/// clean end of stream, and cannot tell an abandoned message from a finished one. Frame your
/// messages (a length prefix, as `tokio_util::codec::LengthDelimitedCodec` does) if the peer
/// must know.
///
/// **What `flush` and `shutdown` wait for.** `flush` returns once everything this stream
/// wrote (and its FIN, after `shutdown`) has been handed to the transport and the transport's
/// own `poll_flush` has returned; not for the peer to receive or read it. `shutdown` queues
/// the FIN and returns without waiting for it to be written (as TCP's `shutdown`), unless the
/// session holds more than half of `max_streams` with frames unsent.
///
/// **Cancel safety.** `poll_read`, `poll_write`, `poll_flush` and `poll_shutdown` are the
/// usual poll functions: a read or write that returned `Pending` took nothing. Of the
/// `async` calls, [`read_chunk`](Self::read_chunk) is cancel safe (nothing is taken unless
/// returned); [`write_chunk`](Self::write_chunk) is not, like `write_all`: dropped early, it
/// has sent a prefix of its buffer ([`stats`](Self::stats) tells how much).
///
/// Split it ([`MuxStream::into_split`], or `tokio::io::split`) to read and write from two
/// tasks: reader and writer wait on separate wakers.
pub struct MuxStream<T: TokioConn> {
    inner: StreamHandle<TokioAdapter<T>>,
    /// The chunk `AsyncBufRead` holds.
    buffer: ReadBuffer,
}

impl<T: TokioConn> std::fmt::Debug for MuxStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: TokioConn> From<StreamHandle<TokioAdapter<T>>> for MuxStream<T> {
    fn from(inner: StreamHandle<TokioAdapter<T>>) -> Self {
        MuxStream {
            inner,
            buffer: ReadBuffer::default(),
        }
    }
}

impl<T: TokioConn> MuxStream<T> {
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
    /// `None` is the end of the stream. Cancel safe.
    pub async fn read_chunk(&mut self, max: usize) -> std::io::Result<Option<Bytes>> {
        self.buffer.read_chunk(&self.inner, max).await
    }

    /// Sends all of `data` as frames that slice it, with no copy. The whole of `data` counts
    /// against the stream's queue limit; a chunk larger than the room there goes out in
    /// pieces while the call waits. If the future is dropped before it completes, a prefix of
    /// `data` has been taken and will be sent, and the rest will not; [`MuxStream::stats`]
    /// (`bytes_sent` + `queued_bytes`) counts what the stream has taken in all.
    pub async fn write_chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        self.inner.write_chunk(data).await
    }
}

/// Reads from the chunks the stream already holds, without copying them until `consume`.
impl<T: TokioConn> AsyncBufRead for MuxStream<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        this.buffer.poll_fill_buf(&this.inner, cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().buffer.consume(amt);
    }
}

impl<T: TokioConn> AsyncRead for MuxStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.buffer
            .poll_read(&this.inner, cx, &mut TokioReadBuf(buf))
    }
}

impl<T: TokioConn> AsyncWrite for MuxStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    /// Each open stream holds one of these at each end (boxed, behind a `dyn` or in a task):
    /// two pointers (the connection's `Arc`, the read buffer's box) and two 32-bit words (the
    /// stream id, the write turn). Growing it costs every idle stream; this keeps it from
    /// growing unnoticed.
    #[test]
    fn a_stream_handle_stays_small() {
        let size = std::mem::size_of::<super::MuxStream<tokio::net::TcpStream>>();
        assert!(size <= 2 * std::mem::size_of::<usize>() + 8, "{size} bytes");
    }
}
