//! smux stream multiplexing for Tokio: many bidirectional streams over one
//! `AsyncRead + AsyncWrite + Unpin` transport (TCP, TLS, a `tokio::io::duplex` pipe, ...),
//! speaking the wire protocol of the Go reference implementation (`github.com/xtaci/smux`),
//! versions 1 and 2. Each [`MuxStream`] behaves like a TCP stream.
//!
//! ```no_run
//! use smux_tokio::MuxBuilder;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::TcpStream;
//!
//! #[tokio::main]
//! async fn main() {
//!     let tcp = TcpStream::connect("127.0.0.1:12345").await.unwrap();
//!
//!     // build() returns three pieces:
//!     //   connector — open new outgoing streams
//!     //   acceptor  — receive peer-initiated streams
//!     //   worker    — the future that drives I/O; spawn it
//!     let (connector, mut acceptor, worker) = MuxBuilder::client().with_connection(tcp).build();
//!     tokio::spawn(worker);
//!
//!     // Outgoing
//!     let mut s = connector.connect().unwrap();
//!     s.write_all(b"hello").await.unwrap();
//!     let mut buf = [0u8; 5];
//!     s.read_exact(&mut buf).await.unwrap();
//!
//!     // Incoming
//!     while let Some(mut peer) = acceptor.accept().await {
//!         // ...
//!     }
//! }
//! ```
//!
//! The API is that of `async_smux` 0.4: the example above is its quickstart with the crate
//! name changed (`tests/lifecycle.rs` runs the same body against a server on an ephemeral
//! port), and its configuration calls work as they are:
//!
//! ```no_run
//! # async fn f(connection: tokio::net::TcpStream) {
//! use smux_tokio::MuxBuilder;
//! use std::num::{NonZeroU64, NonZeroUsize};
//!
//! let (connector, acceptor, worker) = MuxBuilder::server()
//!     // Send a NOP frame every N seconds to keep the connection alive.
//!     .with_keep_alive_interval(NonZeroU64::new(15).unwrap())
//!     // If we don't see any frame from the peer for this many seconds,
//!     // declare the connection dead and tear everything down.
//!     // Defaults to 3 × keep_alive_interval.
//!     .with_keep_alive_timeout(NonZeroU64::new(45).unwrap())
//!     // Per-stream idle timeout (seconds): close streams with no
//!     // recent traffic.
//!     .with_idle_timeout(NonZeroU64::new(60).unwrap())
//!     // Backpressure thresholds: cap how many frames may sit in the
//!     // tx/rx queues before poll_write / poll_read park.
//!     .with_max_tx_queue(NonZeroUsize::new(1024).unwrap())
//!     .with_max_rx_queue(NonZeroUsize::new(1024).unwrap())
//!     .with_connection(connection)
//!     .build();
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

use std::marker::PhantomData;

use smux_driver::{Adapter, Bind, Shared, TokioStreams, TransportRead, TransportWrite};
use tokio::io::{AsyncRead, AsyncWrite};

pub use smux_driver::{
    Begin, MuxError, MuxResult, MuxStats, QueuedAhead, StreamStats, WithConfig, WithConnection,
};
pub use smux_proto::{ProtocolError, Version};

use crate::io::{TokioIo, TokioRuntime};

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
}

/// Its streams implement Tokio's I/O traits.
impl<T: TokioConn> TokioStreams for TokioAdapter<T> {}

impl<T: TokioConn> Bind<T> for Tokio {
    type Adapter = TokioAdapter<T>;
    fn split(conn: T) -> (T::Read, T::Write) {
        conn.into_sides()
    }
}

/// One stream of the connection, a Tokio `AsyncRead + AsyncWrite + AsyncBufRead`. It reads
/// and writes like a TCP stream:
/// - a write of a full frame (32 KiB by default) or more goes straight to the transport when
///   nothing is queued ahead of it; smaller ones are queued, and one under 4 KiB is then
///   written from the calling task at once (unless another task is writing), as a socket
///   writes; the rest share the worker's writes;
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
/// `async` calls, [`read_chunk`](smux_driver::MuxStream::read_chunk) is cancel safe (nothing
/// is taken unless returned); [`write_chunk`](smux_driver::MuxStream::write_chunk) is not,
/// like `write_all`: dropped early, it has sent a prefix of its buffer
/// ([`stats`](smux_driver::MuxStream::stats) tells how much).
///
/// Split it ([`into_split`](smux_driver::MuxStream::into_split), or `tokio::io::split`) to
/// read and write from two tasks: reader and writer wait on separate wakers.
///
/// The type is the driver's, shared with `smux-futures`; this crate enables its Tokio traits
/// (the driver's feature `tokio`). Its methods are listed below.
pub type MuxStream<T> = smux_driver::MuxStream<TokioAdapter<T>>;

/// The read half of a [`MuxStream`] ([`into_split`](smux_driver::MuxStream::into_split)), a
/// Tokio `AsyncRead + AsyncBufRead`.
///
/// Dropping it drops the stream's unread data and whatever the peer sends on it later (in
/// version 2 that data still counts as read, so the peer's window keeps moving and its writer
/// is never stuck); the write half goes on.
pub type MuxReadHalf<T> = smux_driver::MuxReadHalf<TokioAdapter<T>>;

/// The write half of a [`MuxStream`] ([`into_split`](smux_driver::MuxStream::into_split)), a
/// Tokio `AsyncWrite`.
///
/// Dropping it queues FIN after the data it wrote, as `shutdown` does; the read half goes on.
pub type MuxWriteHalf<T> = smux_driver::MuxWriteHalf<TokioAdapter<T>>;

/// [`reunite`](smux_driver::MuxReadHalf::reunite) was given halves of two different streams;
/// here they are back (fields `.0` and `.1`).
pub type ReuniteError<T> = smux_driver::ReuniteError<TokioAdapter<T>>;

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
