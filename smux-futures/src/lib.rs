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

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use smux_driver::{ReadTarget, Runtime, Transport};

pub use smux_driver::{MuxError, MuxResult};
pub use smux_proto::{ProtocolError, Version};

/// A transport the handles run over: any futures-io `AsyncRead + AsyncWrite + Unpin`.
pub trait FuturesConn: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> FuturesConn for T {}

smux_driver::define_builder!();
smux_driver::define_handles!(FuturesConn, FuturesIo, AsyncIoRuntime);

/// A futures-io transport, as the driver wants it.
#[doc(hidden)]
#[derive(Debug)]
pub struct FuturesIo<T>(T);

impl<T: FuturesConn> Transport for FuturesIo<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // futures-io cannot say; its default `poll_write_vectored` writes the first buffer
        // only, and gathering small frames costs little when the transport does better.
        false
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// The clock and `async-io`'s timer.
#[doc(hidden)]
#[derive(Debug)]
pub struct AsyncIoRuntime;

impl Runtime for AsyncIoRuntime {
    type Sleep = async_io::Timer;

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

impl<T: FuturesConn> AsyncRead for MuxStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut target = SliceTarget { buf, filled: 0 };
        self.shared
            .poll_read(self.id, cx, &mut target)
            .map_ok(|()| target.filled)
    }
}

/// `poll_close` sends FIN after the data written so far and keeps the read side open.
impl<T: FuturesConn> AsyncWrite for MuxStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.shared.poll_write(self.id, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_flush(self.id, cx)
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_shutdown(self.id)
    }
}
