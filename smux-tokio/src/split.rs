//! Owned halves of a [`MuxStream`], like Tokio's `TcpStream::into_split`.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use smux_driver::{ReadBuffer, ReadHalf, WriteHalf};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

use crate::io::TokioReadBuf;
use crate::{MuxStream, TokioAdapter, TokioConn};

/// The read half of a [`MuxStream`] ([`MuxStream::into_split`]), an `AsyncRead`.
///
/// Dropping it drops the stream's unread data and whatever the peer sends on it later (in
/// version 2 that data still counts as read, so the peer's window keeps moving and its writer
/// is never stuck); the write half goes on.
pub struct MuxReadHalf<T: TokioConn> {
    inner: ReadHalf<TokioAdapter<T>>,
    /// The chunk `AsyncBufRead` holds (the stream's, if it held one).
    buffer: ReadBuffer,
}

/// The write half of a [`MuxStream`] ([`MuxStream::into_split`]), an `AsyncWrite`.
///
/// Dropping it queues FIN after the data it wrote, as `shutdown` does; the read half goes on.
pub struct MuxWriteHalf<T: TokioConn> {
    inner: WriteHalf<TokioAdapter<T>>,
}

impl<T: TokioConn> std::fmt::Debug for MuxReadHalf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: TokioConn> std::fmt::Debug for MuxWriteHalf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// [`MuxReadHalf::reunite`] was given halves of two different streams; here they are back.
pub struct ReuniteError<T: TokioConn>(pub MuxReadHalf<T>, pub MuxWriteHalf<T>);

impl<T: TokioConn> std::fmt::Debug for ReuniteError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReuniteError")
            .field(&self.0)
            .field(&self.1)
            .finish()
    }
}

impl<T: TokioConn> std::fmt::Display for ReuniteError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tried to reunite halves of different streams")
    }
}

impl<T: TokioConn> std::error::Error for ReuniteError<T> {}

impl<T: TokioConn> MuxStream<T> {
    /// Splits the stream into a read half and a write half that can move to different tasks
    /// or threads; [`MuxReadHalf::reunite`] puts them back together. Reader and writer wait on
    /// separate wakers, and the halves need no lock of their own.
    pub fn into_split(self) -> (MuxReadHalf<T>, MuxWriteHalf<T>) {
        let (r, w) = smux_driver::split(self.inner);
        let read = MuxReadHalf {
            inner: r,
            buffer: self.buffer,
        };
        (read, MuxWriteHalf { inner: w })
    }
}

impl<T: TokioConn> MuxReadHalf<T> {
    /// Puts the stream back together, or gives both halves back if they are not its halves.
    pub fn reunite(self, write: MuxWriteHalf<T>) -> Result<MuxStream<T>, ReuniteError<T>> {
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
    pub async fn read_chunk(&mut self, max: usize) -> std::io::Result<Option<Bytes>> {
        self.buffer.read_chunk(self.inner.stream(), max).await
    }

    /// The stream id on the wire.
    pub fn get_stream_id(&self) -> u32 {
        self.inner.stream().id()
    }

    /// The stream's statistics, as [`MuxStream::stats`].
    pub fn stats(&self) -> crate::StreamStats {
        self.inner.stream().stats()
    }
}

impl<T: TokioConn> MuxWriteHalf<T> {
    /// The stream id on the wire.
    pub fn get_stream_id(&self) -> u32 {
        self.inner.stream().id()
    }

    /// The stream's statistics, as [`MuxStream::stats`].
    pub fn stats(&self) -> crate::StreamStats {
        self.inner.stream().stats()
    }

    /// Sends all of `data` as frames that slice it, with no copy. As
    /// [`MuxStream::write_chunk`].
    pub async fn write_chunk(&mut self, data: Bytes) -> std::io::Result<()> {
        self.inner.stream().write_chunk(data).await
    }
}

impl<T: TokioConn> AsyncRead for MuxReadHalf<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.buffer
            .poll_read(this.inner.stream(), cx, &mut TokioReadBuf(buf))
    }
}

/// Reads from the chunks the stream already holds, without copying them until `consume`.
impl<T: TokioConn> AsyncBufRead for MuxReadHalf<T> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        this.buffer.poll_fill_buf(this.inner.stream(), cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().buffer.consume(amt);
    }
}

impl<T: TokioConn> AsyncWrite for MuxWriteHalf<T> {
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

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.stream().poll_shutdown(cx)
    }
}
