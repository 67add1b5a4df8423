//! The driver shared by `smux-tokio` and `smux-futures`: it moves bytes between a transport and
//! a [`smux_proto::Session`], wakes the tasks waiting on streams, and runs the timers. It is
//! written once, against three small traits: [`Transport`] (the transport's I/O), [`Runtime`]
//! (the clock, a sleep and cooperative scheduling) and [`Adapter`] (which types an adapter
//! wraps). The adapters implement them and wrap [`StreamHandle`] in a `MuxStream` that
//! implements their runtime's I/O traits; applications use the adapters, not this crate.
//!
//! # Design
//!
//! Two locks, never one held across the other's wait:
//! - the **state** lock (`conn.rs`): the session, the wakers, the handles' bookkeeping. Every
//!   handle operation takes it for a bounded amount of work, and never during a syscall;
//! - the **transport** lock: the transport and the frames pulled from the session but not yet
//!   written (`output.rs`). Its holder is the only one writing, so a frame's bytes stay
//!   together on the wire. Handles only ever `try_lock` it: a handle never waits behind
//!   another task's syscall, it leaves the work to the holder or the worker instead.
//!
//! The worker future (`worker.rs`) reads the transport (`input.rs`), runs the timers, and
//! writes what the session queued. A stream writes a full frame or more straight to the
//! transport when nothing is queued ahead of it, and a flushing task writes what is queued
//! itself (`direct.rs`): neither waits for the worker. Wakers are collected while a lock is
//! held and run once every lock is released (`wakers.rs`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod conn;
mod direct;
mod error;
mod halves;
mod handles;
mod input;
mod lifecycle;
mod open;
mod ops;
mod options;
mod output;
mod stream;
mod sync;
mod trace;
mod wakers;
mod worker;

#[cfg(all(test, loom))]
mod loom_tests;

use std::io::{self, IoSlice};
use std::task::{Context, Poll};
use std::time::Instant;

pub use builder::{Begin, MuxBuilder, WithConfig, WithConnection};
pub use error::{MuxError, MuxResult};
pub use halves::{split, ReadBuffer, ReadHalf, WriteHalf};
pub use handles::{Acceptor, Connector};
#[doc(hidden)]
pub use smux_proto;
/// A connection's statistics ([`Connector::stats`]).
pub use smux_proto::SessionStats as MuxStats;
pub use smux_proto::{QueuedAhead, StreamStats};
pub use stream::{ReadTarget, StreamHandle};
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
    /// Whether `poll_write_vectored` writes more than the first buffer at once.
    fn write_mode(&self) -> WriteMode;
    /// Flushes what was written.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Shuts down the write side.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// What a transport's `poll_write_vectored` does with many buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// It writes them all at once (Tokio's sockets): segments go out as they are, and
    /// a stream's full frames go straight from its buffer to the transport.
    Vectored,
    /// It may write only the first one (futures-io cannot say): runs of small segments
    /// (headers, small frames) are gathered into one buffer; payloads of 1 KiB or more are
    /// written as they are, and direct writes are made.
    Unknown,
    /// It writes only the first one (Tokio says so): frames are gathered into buffers of
    /// 64 KiB, so that a header never goes out alone, and there are no direct writes.
    Single,
}

/// The clock, sleep and cooperative scheduling of an async runtime.
pub trait Runtime {
    /// A timer future.
    type Sleep: Unpin + Send;
    /// Per-handle state of the cooperative budget (`()` where the runtime keeps it per task).
    type Budget: Default + Send + Sync;
    /// Permission to do one operation, from [`Runtime::poll_proceed`].
    type Proceed;
    /// The current time (the runtime's clock, so a paused test clock works).
    fn now() -> Instant;
    /// A timer that fires at `deadline`.
    fn sleep_until(deadline: Instant) -> Self::Sleep;
    /// Moves `sleep` to `deadline`.
    fn reset(sleep: &mut Self::Sleep, deadline: Instant);
    /// Polls `sleep`; `Ready` once its deadline has passed.
    fn poll_sleep(sleep: &mut Self::Sleep, cx: &mut Context<'_>) -> Poll<()>;
    /// Whether the task may do one more operation now; `Pending` (with the task woken) once it
    /// has done enough without yielding, so that a loop of ready operations lets the other
    /// tasks (the worker among them) run.
    fn poll_proceed(budget: &Self::Budget, cx: &mut Context<'_>) -> Poll<Self::Proceed>;
    /// Ends the operation `proceed` allowed; `progress` tells whether it did any work (was
    /// ready). Only work spends the budget.
    fn done(budget: &Self::Budget, proceed: Self::Proceed, progress: bool);
    /// Whether the worker, polled from this runtime, yields once before it writes, so that the
    /// tasks its poll woke (and those already queued) add their frames to the same write.
    /// That batching needs the tasks to run before the worker's next poll, as they do where
    /// they share its thread. Default: yes.
    fn batch_by_yielding() -> bool {
        true
    }
}

/// The types one adapter binds together for one transport type.
pub trait Adapter: Sized {
    /// The transport, wrapped as the driver wants it.
    type Io: Transport;
    /// The runtime.
    type Runtime: Runtime;
    /// The adapter's stream type, a thin wrapper of [`StreamHandle`].
    type Stream: From<StreamHandle<Self>>;
}

/// An adapter family: which [`Adapter`] serves a transport of type `T`, and how to wrap it.
/// Implemented by each adapter crate's marker type, which [`MuxBuilder`] carries.
pub trait Bind<T> {
    /// The adapter for `T`.
    type Adapter: Adapter;
    /// Wraps the application's transport.
    fn wrap(conn: T) -> <Self::Adapter as Adapter>::Io;
}
