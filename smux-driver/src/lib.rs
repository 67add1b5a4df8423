//! The driver shared by `smux-tokio` and `smux-futures`: it moves bytes between a transport and
//! a [`smux_proto::Session`], wakes the tasks waiting on streams, and runs the timers. It is
//! written once, against a few small traits: [`TransportRead`] and [`TransportWrite`] (the
//! transport's two sides), [`Runtime`] (the clock, a sleep and cooperative scheduling) and
//! [`Adapter`] (which types an adapter wraps). The adapters implement them and name this
//! crate's types after their runtime (`smux_tokio::MuxStream<T>` is
//! `MuxStream<TokioAdapter<T>>`); applications use the adapters, not this crate.
//!
//! # Features
//!
//! The stream and its halves ([`MuxStream`], [`MuxReadHalf`], [`MuxWriteHalf`]) are written
//! once too. Each runtime's I/O traits for them are behind a feature, which that runtime's
//! adapter enables (so an adapter pulls in no other runtime):
//! - `tokio`: `tokio::io::AsyncRead`, `AsyncWrite` and `AsyncBufRead` for the streams of
//!   adapters that implement `TokioStreams` (`smux-tokio`);
//! - `futures-io`: `futures_io::AsyncRead`, `AsyncWrite` and `AsyncBufRead` for the streams
//!   of adapters that implement `FuturesIoStreams` (`smux-futures`);
//! - `tracing`: a span per session and events for the streams' lives.
//!
//! # Design
//!
//! Each resource of a connection has one owner:
//! - the transport's **read side** ([`TransportRead`]), with the pages it reads into: the
//!   worker's own, outside every lock (`read.rs`); a read never waits for a write;
//! - its **write side** ([`TransportWrite`]), with the output queue and the flush position:
//!   the write lock's (`write.rs`). Everyone who writes (the worker, a flushing or blocked
//!   writer, a stream's direct write of full frames, `close()`) goes through it; handles only
//!   ever try it, and leave the writing to its holder when it is taken;
//! - the **protocol state** (the [`smux_proto::Session`] and the handles' bookkeeping): the
//!   state lock's (`conn.rs`), taken for a bounded amount of work, never during a syscall;
//! - every **waiter** and the rule that wakes it: `Waiters` (`waiters.rs`), in the state.
//!   Wakers are collected under the lock and run once every lock is released.
//!
//! The lock order is write, then state, and the types enforce it (`lock.rs`): the state lock
//! is taken under the write lock only from the write guard, and both guards borrow the
//! operation's one key, so taking the write lock under the state lock does not compile.
//!
//! A transport whose two sides are separate is given as its halves (the adapters' `Split`);
//! any other is [`share`]d, and each side locks it for one poll.
//!
//! The worker future (`worker.rs`) reads, runs the timers, and writes what the session
//! queued. A stream writes a full frame or more straight to the transport when nothing is
//! queued ahead of it, and a flushing task writes what is queued itself: neither waits for
//! the worker.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Without a runtime's feature nothing polls a stream's reads and writes (the I/O traits do), and
// those paths would be reported unused; each adapter enables its feature.
#![cfg_attr(not(any(feature = "tokio", feature = "futures-io")), allow(dead_code))]

mod builder;
mod conn;
mod error;
mod halves;
mod handles;
#[cfg(feature = "futures-io")]
mod io_futures;
#[cfg(feature = "tokio")]
mod io_tokio;
mod lifecycle;
#[doc(hidden)]
pub mod lock;
mod mux_stream;
mod open;
mod ops;
mod options;
mod output;
mod read;
mod stream;
mod sync;
mod trace;
mod transport;
mod waiters;
mod wakes;
mod worker;
mod write;

#[cfg(all(test, loom))]
mod loom_tests;

use std::task::{Context, Poll};
use std::time::Instant;

pub use builder::{Begin, MuxBuilder, WithConfig, WithConnection};
pub use error::{MuxError, MuxResult};
pub use handles::{Acceptor, Connector};
pub use mux_stream::{MuxReadHalf, MuxStream, MuxWriteHalf, ReuniteError};
#[doc(hidden)]
pub use smux_proto;
/// A connection's statistics ([`Connector::stats`]).
pub use smux_proto::SessionStats as MuxStats;
pub use smux_proto::{QueuedAhead, StreamStats};
pub use transport::{share, Shared, TransportRead, TransportWrite};
pub use worker::Worker;

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
    /// The transport's read side, as the driver wants it.
    type Read: TransportRead;
    /// The transport's write side, as the driver wants it.
    type Write: TransportWrite;
    /// The runtime.
    type Runtime: Runtime;
}

/// An [`Adapter`] whose streams implement Tokio's I/O traits (`tokio::io::AsyncRead`,
/// `AsyncWrite`, `AsyncBufRead`): `smux-tokio`'s. Only such adapters' streams do, so that where
/// both features are on (a program that uses both adapters) each stream still implements
/// one runtime's traits, and extension methods that both families offer stay unambiguous.
#[cfg(feature = "tokio")]
pub trait TokioStreams: Adapter {}

/// An [`Adapter`] whose streams implement futures-io's traits (`futures_io::AsyncRead`,
/// `AsyncWrite`, `AsyncBufRead`): `smux-futures`'. See `TokioStreams`.
#[cfg(feature = "futures-io")]
pub trait FuturesIoStreams: Adapter {}

/// An adapter family: which [`Adapter`] serves a transport of type `T`, and how to split it.
/// Implemented by each adapter crate's marker type, which [`MuxBuilder`] carries.
pub trait Bind<T> {
    /// The adapter for `T`.
    type Adapter: Adapter;
    /// The application's transport, as its read and write sides.
    fn split(
        conn: T,
    ) -> (
        <Self::Adapter as Adapter>::Read,
        <Self::Adapter as Adapter>::Write,
    );
}
