//! The driver shared by `smux-tokio` and `smux-futures`: it moves bytes between a transport and
//! a [`smux_proto::Session`], wakes the tasks waiting on streams, and runs the timers. It is
//! written once, against two small traits: [`Transport`] (the transport's I/O) and [`Runtime`]
//! (the clock and a sleep). The adapters implement them for their runtime and wrap the handles
//! in their own I/O traits; applications use the adapters, not this crate.
//!
//! Model: quinn's connection driver. One shared state behind a mutex holds the session, the
//! transport and the wakers. The worker future polls the transport; the handles (connector,
//! acceptor, streams) issue commands on the session and wake the worker. No lock is held across
//! an `.await`: every poll takes the lock, does bounded work, and releases it. The transport
//! lives in the shared state (not in the worker) so that `close()` can drain and shut it down
//! when the worker is not being polled.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod error;
mod handles;
mod options;
mod shared;
mod worker;

use std::io::{self, IoSlice};
use std::task::{Context, Poll};
use std::time::Instant;

pub use error::{MuxError, MuxResult};
pub use options::Options;
pub use shared::{ReadTarget, Shared};
#[doc(hidden)]
pub use smux_proto;
pub use worker::Worker;

/// The I/O a transport offers, in the shape both Tokio's and futures-io's traits reduce to.
pub trait Transport: Unpin {
    /// Reads into `buf`; `Ok(0)` is the end of input.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes from `bufs` in order; returns how many bytes were taken.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    /// Whether `poll_write_vectored` writes more than the first buffer at once. When it does
    /// not, the driver gathers small frames into one buffer before writing.
    fn is_write_vectored(&self) -> bool;
    /// Flushes what was written.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Shuts down the write side.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// The clock and sleep of an async runtime.
pub trait Runtime {
    /// A timer future.
    type Sleep: Unpin + Send;
    /// The current time (the runtime's clock, so a paused test clock works).
    fn now() -> Instant;
    /// A timer that fires at `deadline`.
    fn sleep_until(deadline: Instant) -> Self::Sleep;
    /// Moves `sleep` to `deadline`.
    fn reset(sleep: &mut Self::Sleep, deadline: Instant);
    /// Polls `sleep`; `Ready` once its deadline has passed.
    fn poll_sleep(sleep: &mut Self::Sleep, cx: &mut Context<'_>) -> Poll<()>;
}
