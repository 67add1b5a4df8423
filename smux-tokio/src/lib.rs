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
mod stream;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use smux_driver::{Shared, Worker};
use tokio::io::{AsyncRead, AsyncWrite};

pub use smux_driver::{MuxError, MuxResult};
pub use smux_proto::{ProtocolError, Version};
pub use stream::MuxStream;

use crate::io::{TokioIo, TokioRuntime};

smux_driver::define_builder!();

impl<T: AsyncRead + AsyncWrite + Unpin> MuxBuilder<WithConnection<T>> {
    /// Builds the session: a connector, an acceptor, and the worker to spawn.
    ///
    /// # Panics
    /// If the keep-alive timeout is shorter than the interval.
    pub fn build(self) -> (MuxConnector<T>, MuxAcceptor<T>, MuxWorker<T>) {
        let WithConnection {
            options,
            connection,
        } = self.state;
        let config = options.config();
        let now = TokioRuntime::now_std();
        let shared = Shared::new(TokioIo(connection), options.role(), config, now, 2);
        (
            MuxConnector {
                shared: Arc::clone(&shared),
            },
            MuxAcceptor {
                shared: Arc::clone(&shared),
            },
            MuxWorker {
                inner: Worker::new(shared),
            },
        )
    }
}

/// Opens streams. Cloneable; the session lives while any handle does.
pub struct MuxConnector<T: AsyncRead + AsyncWrite + Unpin> {
    shared: Arc<Shared<TokioIo<T>>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> MuxConnector<T> {
    /// Opens a stream. Its SYN goes out ahead of any data, so it can be written to at once.
    ///
    /// Fails with [`MuxError::ConnectionClosed`] once the session is closed,
    /// [`MuxError::TooManyStreams`] at the stream limit, [`MuxError::StreamIdsExhausted`] when
    /// this connection has used every id.
    pub fn connect(&self) -> MuxResult<MuxStream<T>> {
        let id = self.shared.connect()?;
        Ok(MuxStream::new(Arc::clone(&self.shared), id))
    }

    /// Stream handles alive on this connection, in both directions.
    pub fn get_num_streams(&self) -> usize {
        self.shared.num_streams()
    }

    /// Closes the connection in order: data already taken by `poll_write` reaches the wire,
    /// every open stream gets FIN (so the peer reads to a clean end), then the transport is
    /// shut down. Works whether or not the worker is being polled, and may be called more than
    /// once. Afterwards `connect()` fails, the acceptor ends, and reads on open streams return
    /// what had arrived, then a `ConnectionAborted` error.
    pub async fn close(&self) -> MuxResult<()> {
        std::future::poll_fn(|cx| self.shared.poll_close(cx)).await
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Clone for MuxConnector<T> {
    fn clone(&self) -> Self {
        self.shared.add_connector();
        MuxConnector {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drop for MuxConnector<T> {
    fn drop(&mut self) {
        self.shared.release_connector();
    }
}

/// Receives the streams the peer opens. Dropping it closes those that arrive later.
pub struct MuxAcceptor<T: AsyncRead + AsyncWrite + Unpin> {
    shared: Arc<Shared<TokioIo<T>>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> MuxAcceptor<T> {
    /// The next stream the peer opened; `None` once the session is closed.
    pub async fn accept(&mut self) -> Option<MuxStream<T>> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Option<MuxStream<T>>> {
        self.shared
            .poll_accept(cx)
            .map(|id| id.map(|id| MuxStream::new(Arc::clone(&self.shared), id)))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for MuxAcceptor<T> {
    type Item = MuxStream<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_accept(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drop for MuxAcceptor<T> {
    fn drop(&mut self) {
        self.shared.release_acceptor();
    }
}

/// The future that drives the connection; spawn it (`tokio::spawn(worker)`). See the
/// [crate docs](crate#lifecycle) for when it ends.
#[must_use = "the worker does nothing unless polled: spawn it"]
pub struct MuxWorker<T: AsyncRead + AsyncWrite + Unpin> {
    inner: Worker<TokioIo<T>, TokioRuntime>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for MuxWorker<T> {
    type Output = MuxResult<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}
