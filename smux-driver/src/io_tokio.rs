//! Tokio's I/O traits for [`MuxStream`] and its halves (feature `tokio`).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

use crate::stream::ReadTarget;
use crate::{MuxReadHalf, MuxStream, MuxWriteHalf, TokioStreams};

/// Reads land in Tokio's `ReadBuf` without zeroing it first.
struct TokioReadBuf<'a, 'b>(&'a mut ReadBuf<'b>);

impl ReadTarget for TokioReadBuf<'_, '_> {
    fn remaining(&self) -> usize {
        self.0.remaining()
    }

    fn put(&mut self, data: &[u8]) {
        self.0.put_slice(data);
    }
}

impl<A: TokioStreams> AsyncRead for MuxStream<A> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.buffer
            .poll_read(&this.inner, cx, &mut TokioReadBuf(buf))
    }
}

/// Reads from the chunks the stream already holds, without copying them until `consume`.
impl<A: TokioStreams> AsyncBufRead for MuxStream<A> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.buffer.poll_fill_buf(&this.inner, cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().buffer.consume(amt);
    }
}

/// `poll_shutdown` queues FIN after the data written so far and keeps the read side open.
impl<A: TokioStreams> AsyncWrite for MuxStream<A> {
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

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_shutdown(cx)
    }
}

impl<A: TokioStreams> AsyncRead for MuxReadHalf<A> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.buffer
            .poll_read(this.inner.stream(), cx, &mut TokioReadBuf(buf))
    }
}

/// Reads from the chunks the stream already holds, without copying them until `consume`.
impl<A: TokioStreams> AsyncBufRead for MuxReadHalf<A> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.buffer.poll_fill_buf(this.inner.stream(), cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().buffer.consume(amt);
    }
}

/// `poll_shutdown` queues FIN after the data written so far; the read half goes on.
impl<A: TokioStreams> AsyncWrite for MuxWriteHalf<A> {
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

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.stream().poll_shutdown(cx)
    }
}
