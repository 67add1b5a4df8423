//! Owned halves of a [`MuxStream`], like Tokio's `TcpStream::into_split`
//! (the same API as `smux_tokio`'s, with futures-io traits).

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use smux_driver::{ReadHalf, WriteHalf};

use crate::{FuturesAdapter, FuturesConn, MuxStream};

/// The read half of a [`MuxStream`] ([`MuxStream::into_split`]), a futures-io `AsyncRead`.
///
/// Dropping it drops the stream's unread data and whatever the peer sends on it later (in
/// version 2 that data still counts as read, so the peer's window keeps moving and its writer
/// is never stuck); the write half goes on.
pub struct MuxReadHalf<T: FuturesConn> {
    pub(crate) inner: ReadHalf<FuturesAdapter<T>>,
}

/// The write half of a [`MuxStream`] ([`MuxStream::into_split`]), a futures-io `AsyncWrite`.
///
/// Dropping it queues FIN after the data it wrote, as `poll_close` does; the read half goes
/// on.
pub struct MuxWriteHalf<T: FuturesConn> {
    pub(crate) inner: WriteHalf<FuturesAdapter<T>>,
}

impl<T: FuturesConn> std::fmt::Debug for MuxReadHalf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: FuturesConn> std::fmt::Debug for MuxWriteHalf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// [`MuxReadHalf::reunite`] was given halves of two different streams; here they are back.
pub struct ReuniteError<T: FuturesConn>(pub MuxReadHalf<T>, pub MuxWriteHalf<T>);

impl<T: FuturesConn> std::fmt::Debug for ReuniteError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReuniteError")
            .field(&self.0)
            .field(&self.1)
            .finish()
    }
}

impl<T: FuturesConn> std::fmt::Display for ReuniteError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tried to reunite halves of different streams")
    }
}

impl<T: FuturesConn> std::error::Error for ReuniteError<T> {}

impl<T: FuturesConn> MuxStream<T> {
    /// Splits the stream into a read half and a write half that can move to different tasks
    /// or threads; [`MuxReadHalf::reunite`] puts them back together. Reader and writer wait on
    /// separate wakers, and the halves need no lock of their own.
    pub fn into_split(self) -> (MuxReadHalf<T>, MuxWriteHalf<T>) {
        let (r, w) = smux_driver::split(self.inner);
        (MuxReadHalf { inner: r }, MuxWriteHalf { inner: w })
    }
}

impl<T: FuturesConn> MuxReadHalf<T> {
    /// Puts the stream back together, or gives both halves back if they are not its halves.
    pub fn reunite(self, write: MuxWriteHalf<T>) -> Result<MuxStream<T>, ReuniteError<T>> {
        self.inner
            .reunite(write.inner)
            .map(MuxStream::from)
            .map_err(|(r, w)| ReuniteError(MuxReadHalf { inner: r }, MuxWriteHalf { inner: w }))
    }

    /// The stream id on the wire.
    pub fn get_stream_id(&self) -> u32 {
        self.inner.stream().id()
    }
}

impl<T: FuturesConn> MuxWriteHalf<T> {
    /// The stream id on the wire.
    pub fn get_stream_id(&self) -> u32 {
        self.inner.stream().id()
    }
}

impl<T: FuturesConn> AsyncRead for MuxReadHalf<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        crate::poll_read_into(self.inner.stream(), cx, buf)
    }
}

/// `poll_close` queues FIN after the data written so far; the read half goes on.
impl<T: FuturesConn> AsyncWrite for MuxWriteHalf<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.inner.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.inner.stream().poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.stream().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.stream().poll_shutdown(cx)
    }
}
