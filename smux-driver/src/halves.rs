//! A stream handle's owned halves ([`split`]), which [`MuxReadHalf`](crate::MuxReadHalf) and
//! [`MuxWriteHalf`](crate::MuxWriteHalf) wrap, and the chunk a buffered read holds
//! ([`ReadBuffer`]).

use std::fmt;
use std::io;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::stream::{ReadTarget, StreamHandle};
use crate::sync::Arc;
use crate::Adapter;

/// The chunk a buffered read (`AsyncBufRead`) holds, for a stream or its read half: reads and
/// chunks are served from it first, so that the bytes keep their order however the
/// application mixes the calls.
#[derive(Debug, Default)]
pub(crate) struct ReadBuffer {
    /// The held chunk, in a box the first `poll_fill_buf` makes and later ones reuse: a stream
    /// never read that way holds a pointer, not a whole `Bytes`. `None` holds nothing.
    held: Option<Box<Bytes>>,
}

impl ReadBuffer {
    /// The held chunk, if it has bytes left.
    fn held(&mut self) -> Option<&mut Bytes> {
        self.held.as_deref_mut().filter(|h| !h.is_empty())
    }

    /// Reads into `dst`, from the held chunk first.
    pub(crate) fn poll_read<A: Adapter>(
        &mut self,
        stream: &StreamHandle<A>,
        cx: &mut Context<'_>,
        dst: &mut dyn ReadTarget,
    ) -> Poll<io::Result<()>> {
        let Some(held) = self.held() else {
            return stream.poll_read(cx, dst);
        };
        let n = dst.remaining().min(held.len());
        dst.put(&held.split_to(n));
        Poll::Ready(Ok(()))
    }

    /// The held chunk, or the next one received; empty at the end of the stream.
    pub(crate) fn poll_fill_buf<A: Adapter>(
        &mut self,
        stream: &StreamHandle<A>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<&[u8]>> {
        let held = self.held.get_or_insert_with(Box::default);
        if held.is_empty() {
            match stream.poll_read_chunk(cx, usize::MAX) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(chunk)) => **held = chunk.unwrap_or_default(),
            }
        }
        Poll::Ready(Ok(held))
    }

    /// `n` bytes of the held chunk were used.
    pub(crate) fn consume(&mut self, n: usize) {
        if let Some(held) = self.held() {
            let _ = held.split_to(n.min(held.len()));
        }
    }

    /// Up to `max` bytes without copying, from the held chunk first; `None` at the end.
    pub(crate) async fn read_chunk<A: Adapter>(
        &mut self,
        stream: &StreamHandle<A>,
        max: usize,
    ) -> io::Result<Option<Bytes>> {
        let Some(held) = self.held() else {
            return stream.read_chunk(max).await;
        };
        let n = max.min(held.len());
        Ok(Some(held.split_to(n)))
    }
}

/// The read half of a stream ([`split`]). Dropping it drops the stream's unread data and what
/// arrives later (in version 2 the peer's window keeps moving); the write half goes on.
pub(crate) struct ReadHalf<A: Adapter> {
    /// `None` once reunited.
    inner: Option<Arc<StreamHandle<A>>>,
}

/// The write half of a stream ([`split`]). Dropping it queues FIN after the data it wrote; the
/// read half goes on.
pub(crate) struct WriteHalf<A: Adapter> {
    /// `None` once reunited.
    inner: Option<Arc<StreamHandle<A>>>,
}

/// Splits a stream into halves that can go to different tasks, like Tokio's
/// `TcpStream::into_split`. The stream is released once both are gone.
pub(crate) fn split<A: Adapter>(stream: StreamHandle<A>) -> (ReadHalf<A>, WriteHalf<A>) {
    let inner = Arc::new(stream);
    (
        ReadHalf {
            inner: Some(Arc::clone(&inner)),
        },
        WriteHalf { inner: Some(inner) },
    )
}

impl<A: Adapter> ReadHalf<A> {
    /// The stream both halves share.
    pub(crate) fn stream(&self) -> &StreamHandle<A> {
        self.inner.as_ref().expect("only reunite takes it")
    }

    /// Whether `write` is this stream's other half.
    pub(crate) fn is_pair_of(&self, write: &WriteHalf<A>) -> bool {
        match (&self.inner, &write.inner) {
            (Some(r), Some(w)) => Arc::ptr_eq(r, w),
            _ => false,
        }
    }

    /// Puts the stream back together; gives both halves back if they are not of one stream.
    #[allow(clippy::result_large_err)]
    pub(crate) fn reunite(
        mut self,
        mut write: WriteHalf<A>,
    ) -> Result<StreamHandle<A>, (ReadHalf<A>, WriteHalf<A>)> {
        if !self.is_pair_of(&write) {
            return Err((self, write));
        }
        let (r, w) = (self.inner.take(), write.inner.take());
        drop(w);
        let inner = r.expect("checked by is_pair_of");
        match Arc::try_unwrap(inner) {
            Ok(stream) => Ok(stream),
            Err(_) => unreachable!("the two halves held the only references"),
        }
    }
}

impl<A: Adapter> WriteHalf<A> {
    /// The stream both halves share.
    pub(crate) fn stream(&self) -> &StreamHandle<A> {
        self.inner.as_ref().expect("only reunite takes it")
    }
}

impl<A: Adapter> Drop for ReadHalf<A> {
    fn drop(&mut self) {
        if let Some(h) = self.inner.take() {
            h.stop_reading();
        }
    }
}

impl<A: Adapter> Drop for WriteHalf<A> {
    fn drop(&mut self) {
        if let Some(h) = self.inner.take() {
            h.finish_writing();
        }
    }
}

impl<A: Adapter> fmt::Debug for ReadHalf<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxReadHalf")
            .field("id", &self.inner.as_ref().map(|h| h.id()))
            .finish()
    }
}

impl<A: Adapter> fmt::Debug for WriteHalf<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxWriteHalf")
            .field("id", &self.inner.as_ref().map(|h| h.id()))
            .finish()
    }
}
