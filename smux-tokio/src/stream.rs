//! `MuxStream`: one multiplexed stream, a Tokio `AsyncRead + AsyncWrite`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use smux_driver::Shared;
use smux_proto::StreamId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::io::{TokioIo, TokioReadBuf};

/// One stream of the connection. It reads and writes like a TCP stream:
/// - `poll_shutdown` sends FIN after the data written so far; the read side stays open;
/// - `poll_flush` returns once the data written so far is handed to the transport;
/// - dropping it sends what it already accepted, then FIN; unread data is dropped.
///
/// Split it with `tokio::io::split` to read and write from two tasks: reader and writer wait
/// on separate wakers.
pub struct MuxStream<T: AsyncRead + AsyncWrite + Unpin> {
    shared: Arc<Shared<TokioIo<T>>>,
    id: StreamId,
}

impl<T: AsyncRead + AsyncWrite + Unpin> MuxStream<T> {
    pub(crate) fn new(shared: Arc<Shared<TokioIo<T>>>, id: StreamId) -> Self {
        MuxStream { shared, id }
    }

    /// The stream id on the wire (odd for streams the client opened, even for the server's).
    pub fn get_stream_id(&self) -> u32 {
        self.id.0
    }

    /// Whether the stream can carry no more data in either direction: both sides sent FIN,
    /// the idle timeout closed it, or the session ended.
    pub fn is_closed(&self) -> bool {
        self.shared.is_stream_closed(self.id)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> std::fmt::Debug for MuxStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxStream").field("id", &self.id.0).finish()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for MuxStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.shared.poll_read(self.id, cx, &mut TokioReadBuf(buf))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MuxStream<T> {
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

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_shutdown(self.id, cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drop for MuxStream<T> {
    fn drop(&mut self) {
        self.shared.release_stream(self.id);
    }
}
