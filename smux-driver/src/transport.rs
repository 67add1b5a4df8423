//! The transport as the driver holds it: a read side, owned by the worker, and a write side,
//! owned by the connection's write lock (`write.rs`). A transport whose sides are separate
//! (a split TCP socket) is used as its two halves, and a read never waits for a write. One
//! that cannot split is [`share`]d: both sides lock it for one poll at a time.

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use crate::sync::{Arc, Mutex};
use crate::WriteMode;

/// The read side of a transport.
pub trait TransportRead: Unpin {
    /// Reads into `buf`; `Ok(0)` is the end of input.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
}

/// The write side of a transport, in the shape both Tokio's and futures-io's traits reduce to.
pub trait TransportWrite: Unpin {
    /// Writes from `bufs` in order; returns how many bytes were taken.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    /// Whether `poll_write_vectored` writes more than the first buffer at once.
    fn write_mode(&self) -> WriteMode;
    /// Flushes what was written.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Shuts down the write side.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// One side of a transport that cannot split: each call locks the transport for its poll,
/// so a read waits for a write for one non-blocking call at most.
#[derive(Debug)]
pub struct Shared<T>(Arc<Mutex<T>>);

/// Splits a transport that cannot split itself into two [`Shared`] sides.
pub fn share<T>(transport: T) -> (Shared<T>, Shared<T>) {
    let t = Arc::new(Mutex::new(transport));
    (Shared(Arc::clone(&t)), Shared(t))
}

impl<T> Shared<T> {
    fn with<O>(&self, f: impl FnOnce(&mut T) -> O) -> O {
        // A panic inside a poll leaves the transport as any failed call would.
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut t)
    }
}

impl<T: TransportRead> TransportRead for Shared<T> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.with(|t| t.poll_read(cx, buf))
    }
}

impl<T: TransportWrite> TransportWrite for Shared<T> {
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.with(|t| t.poll_write_vectored(cx, bufs))
    }

    fn write_mode(&self) -> WriteMode {
        self.with(|t| t.write_mode())
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|t| t.poll_flush(cx))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|t| t.poll_shutdown(cx))
    }
}
