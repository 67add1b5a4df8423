//! Tokio's I/O traits and clock, as the driver wants them.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use smux_driver::{Runtime, TransportRead, TransportWrite, WriteMode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A Tokio transport, or one of its halves.
#[derive(Debug)]
pub struct TokioIo<T>(pub T);

impl<T: AsyncRead + Unpin> TransportRead for TokioIo<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> TransportWrite for TokioIo<T> {
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn write_mode(&self) -> WriteMode {
        if self.0.is_write_vectored() {
            WriteMode::Vectored
        } else {
            WriteMode::Single
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Tokio's clock (so `tokio::time::pause` works), sleep and cooperative budget.
#[derive(Debug)]
pub struct TokioRuntime;

impl TokioRuntime {
    fn now_std() -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl Runtime for TokioRuntime {
    type Sleep = Pin<Box<tokio::time::Sleep>>;
    /// Tokio keeps the budget per task.
    type Budget = ();
    type Proceed = tokio::task::coop::RestoreOnPending;

    fn now() -> Instant {
        Self::now_std()
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn reset(sleep: &mut Self::Sleep, deadline: Instant) {
        sleep.as_mut().reset(deadline.into());
    }

    fn poll_sleep(sleep: &mut Self::Sleep, cx: &mut Context<'_>) -> Poll<()> {
        sleep.as_mut().poll(cx)
    }

    fn poll_proceed(_: &(), cx: &mut Context<'_>) -> Poll<Self::Proceed> {
        tokio::task::coop::poll_proceed(cx)
    }

    fn done(_: &(), proceed: Self::Proceed, progress: bool) {
        if progress {
            proceed.made_progress();
        }
    }

    /// Not on the multi-thread runtime: there the tasks the worker woke run in parallel with
    /// it on the other worker threads, so its yield does not let them add their frames to its
    /// write (no batching), while every yield costs a message a second trip through the
    /// scheduler before it goes out. `tests/batching.rs` counts the writes per runtime;
    /// docs/performance.md ("How the driver moves data") has the measurements.
    fn batch_by_yielding() -> bool {
        tokio::runtime::Handle::try_current().map_or(true, |h| {
            !matches!(
                h.runtime_flavor(),
                tokio::runtime::RuntimeFlavor::MultiThread
            )
        })
    }
}
