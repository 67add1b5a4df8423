//! futures-io's I/O traits for [`MuxStream`] and its halves (feature `futures-io`).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};

use crate::halves::ReadBuffer;
use crate::stream::{ReadTarget, StreamHandle};
use crate::{Adapter, FuturesIoStreams, MuxReadHalf, MuxStream, MuxWriteHalf};

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
fn poll_read_into<A: Adapter>(
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

impl<A: FuturesIoStreams> AsyncRead for MuxStream<A> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        poll_read_into(&mut this.buffer, &this.inner, cx, buf)
    }
}

/// Reads from the chunks the stream already holds, without copying them until `consume`.
impl<A: FuturesIoStreams> AsyncBufRead for MuxStream<A> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.buffer.poll_fill_buf(&this.inner, cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().buffer.consume(amt);
    }
}

/// `poll_close` queues FIN after the data written so far and keeps the read side open.
impl<A: FuturesIoStreams> AsyncWrite for MuxStream<A> {
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

impl<A: FuturesIoStreams> AsyncRead for MuxReadHalf<A> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        poll_read_into(&mut this.buffer, this.inner.stream(), cx, buf)
    }
}

/// Reads from the chunks the stream already holds, without copying them until `consume`.
impl<A: FuturesIoStreams> AsyncBufRead for MuxReadHalf<A> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.buffer.poll_fill_buf(this.inner.stream(), cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().buffer.consume(amt);
    }
}

/// `poll_close` queues FIN after the data written so far; the read half goes on.
impl<A: FuturesIoStreams> AsyncWrite for MuxWriteHalf<A> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner.stream().poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.stream().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.stream().poll_shutdown(cx)
    }
}
