//! The state shared by the worker and the handles of one connection: the protocol state
//! behind one lock, the transport and its output queue behind another.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::ops::{Deref, DerefMut};
use std::task::Waker;
use std::time::{Duration, Instant};

use smux_proto::{Config, Event, Role, Session, SessionEnd, StreamError, StreamId};

use crate::error::{stream_error, StreamOp};
use crate::output::OutQueue;
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use crate::sync::{Mutex, MutexGuard, TryLockError};
use crate::wakers::{Slot, Wakes};
use crate::{Transport, WriteMode};

/// One connection's shared state.
#[derive(Debug)]
pub(crate) struct Conn<T> {
    state: Mutex<State>,
    io: Mutex<IoState<T>>,
    /// The output queue's [`done`](crate::output::OutQueue::done) position as of the
    /// transport's last completed flush: every frame that ends at or below it is flushed.
    /// Stored before the state lock is taken to wake flush waiters, so a waiter checking it
    /// under the state lock cannot miss its wake.
    pub flushed: AtomicU64,
    /// Some stream waits for its flush: writers flush the transport as they go.
    pub flush_wanted: AtomicBool,
    /// Some stream waits for room in the transport: writers wake it as they make progress.
    pub room_wanted: AtomicBool,
    /// Streams whose last write returned `Pending`: while any waits, a writer yields its task
    /// after each turn (`handles.rs`).
    pub waiting_writers: AtomicUsize,
    /// The largest payload of a frame we send.
    pub frame: usize,
    /// What the transport does with many buffers.
    pub mode: WriteMode,
    /// How long the transport stays open after an orderly end we began (see `poll_linger`).
    pub linger: Duration,
}

/// The protocol state and everyone's wakers.
#[derive(Debug)]
pub(crate) struct State {
    pub session: Session,
    /// Wakers queued while the lock is held; moved out when it is released.
    pub wakes: Wakes,
    pub slots: HashMap<u32, Slot>,
    pub flush_waiters: Vec<StreamId>,
    /// Streams whose direct write found the transport full.
    pub room_waiters: Vec<StreamId>,
    pub accept_waker: Option<Waker>,
    pub worker_waker: Option<Waker>,
    pub worker_notified: bool,
    /// Tasks waiting in `close()` or `closed()`.
    pub close_wakers: Vec<Waker>,
    /// `open()` calls waiting for room under the stream limit, first come first served: their
    /// tickets and wakers.
    pub open_waiters: VecDeque<(u64, Option<Waker>)>,
    pub next_open_ticket: u64,
    /// Connectors, acceptors and streams alive.
    pub handles: usize,
    pub acceptor_alive: bool,
    /// The session stopped taking input; a stream read or an accept may let it go on.
    pub read_paused: bool,
    /// The transport's error, until the worker takes it; its kind and message stay.
    pub transport_error: Option<io::Error>,
    pub transport_error_kind: Option<io::ErrorKind>,
    pub transport_error_msg: Option<String>,
    /// The transport is shut down (or failed) and dropped: nothing more will move.
    pub finished: bool,
    /// The worker was dropped before the end.
    pub abandoned: bool,
    pub result_taken: bool,
    /// The latest time the worker saw.
    pub last_now: Instant,
    /// The session's span (feature `tracing`).
    #[cfg(feature = "tracing")]
    pub span: tracing::Span,
    /// Refusals already reported (feature `tracing`).
    #[cfg(feature = "tracing")]
    pub refusals_seen: u64,
}

/// What a parked writer waits for ([`Conn::park_writer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterWait {
    Flush,
    Room,
}

/// The transport and what waits to be written to it.
#[derive(Debug)]
pub(crate) struct IoState<T> {
    /// Dropped (closing the transport) once nothing more can move on it. Still here after the
    /// end only while the worker lingers on it (see `Conn::poll_linger`).
    pub io: Option<T>,
    pub out: OutQueue,
    /// Written since the transport's last flush.
    pub needs_flush: bool,
}

/// The state, locked. When it is released, the wakers queued meanwhile move to the caller's
/// [`Wakes`], which runs them once the caller holds no lock.
pub(crate) struct StateGuard<'a> {
    guard: MutexGuard<'a, State>,
    sink: &'a mut Wakes,
}

impl Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        self.sink.append(&mut self.guard.wakes);
    }
}

/// A panic in another thread while holding a lock leaves the state as consistent as any
/// single call leaves it: go on rather than poison every handle.
fn relock<G>(r: Result<G, std::sync::PoisonError<G>>) -> G {
    r.unwrap_or_else(|e| e.into_inner())
}

impl<T: Transport> Conn<T> {
    pub fn new(
        io: T,
        role: Role,
        config: Config,
        now: Instant,
        handles: usize,
        linger: Duration,
    ) -> Conn<T> {
        let mut session =
            Session::new(role, config, now).expect("the builder validated the config");
        // SYNs past the accept backlog wait while the acceptor lives and accepts (the
        // session refuses them after `accept_stall_timeout` without an accept).
        session.set_hold_opens(true);
        let frame = session.config().max_frame_size();
        let mode = io.write_mode();
        #[cfg(feature = "tracing")]
        let span = {
            let version = match session.version() {
                Some(v) => format!("{}", v as u8),
                None => "auto".to_string(),
            };
            tracing::debug_span!("smux", role = ?role, version = %version)
        };
        Conn {
            state: Mutex::new(State {
                session,
                wakes: Wakes::default(),
                slots: HashMap::new(),
                flush_waiters: Vec::new(),
                room_waiters: Vec::new(),
                accept_waker: None,
                worker_waker: None,
                worker_notified: false,
                close_wakers: Vec::new(),
                open_waiters: VecDeque::new(),
                next_open_ticket: 0,
                handles,
                acceptor_alive: true,
                read_paused: false,
                transport_error: None,
                transport_error_kind: None,
                transport_error_msg: None,
                finished: false,
                abandoned: false,
                result_taken: false,
                last_now: now,
                #[cfg(feature = "tracing")]
                span,
                #[cfg(feature = "tracing")]
                refusals_seen: 0,
            }),
            io: Mutex::new(IoState {
                io: Some(io),
                out: OutQueue::default(),
                needs_flush: false,
            }),
            flushed: AtomicU64::new(0),
            flush_wanted: AtomicBool::new(false),
            room_wanted: AtomicBool::new(false),
            waiting_writers: AtomicUsize::new(0),
            frame,
            mode,
            linger,
        }
    }
}

impl<T> Conn<T> {
    /// Locks the protocol state; wakers queued meanwhile go to `sink`.
    pub fn state<'a>(&'a self, sink: &'a mut Wakes) -> StateGuard<'a> {
        StateGuard {
            guard: relock(self.state.lock()),
            sink,
        }
    }

    /// Locks the transport, waiting for its holder: for the worker and drops only.
    pub fn io(&self) -> MutexGuard<'_, IoState<T>> {
        relock(self.io.lock())
    }

    /// The transport, if nobody holds it. Handles never wait for it.
    pub fn try_io(&self) -> Option<MutexGuard<'_, IoState<T>>> {
        match self.io.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

impl State {
    pub fn release_handle(&mut self) {
        self.handles -= 1;
        if self.handles == 0 {
            self.notify_worker();
        }
    }

    /// Input stopped because the session could not take it, and now it can.
    pub fn paused_input_can_go_on(&self) -> bool {
        self.read_paused && self.session.wants_input()
    }

    /// A read freed room: the session may send an UPD or take input again.
    pub fn after_read(&mut self) {
        self.wake_drainer();
        if self.session.has_output() || self.paused_input_can_go_on() {
            self.notify_worker();
        }
    }

    pub fn stream_io_error(&self, e: &StreamError, op: StreamOp) -> io::Error {
        match e {
            StreamError::Finished => {
                io::Error::new(io::ErrorKind::BrokenPipe, "stream is shut down for writing")
            }
            StreamError::Reset(_) => io::Error::new(io::ErrorKind::ConnectionReset, e.to_string()),
            StreamError::UnknownStream(id) => {
                io::Error::new(io::ErrorKind::NotConnected, format!("unknown stream {id}"))
            }
            _ => self.end_error(op),
        }
    }

    /// What an operation on a stream meets once the session has ended.
    pub fn end_error(&self, op: StreamOp) -> io::Error {
        stream_error(
            self.session.end_reason(),
            self.transport_error_msg.as_deref(),
            op,
        )
    }

    pub fn ended_orderly(&self) -> bool {
        matches!(
            self.session.end_reason(),
            Some(SessionEnd::Closed | SessionEnd::PeerClosed)
        )
    }

    /// Wakes the tasks waiting on what the session reported.
    pub fn dispatch_events(&mut self) {
        #[cfg(feature = "tracing")]
        {
            let refused = self.session.stats().streams_refused;
            if refused > self.refusals_seen {
                crate::trace::event_debug!(
                    self,
                    refused = refused - self.refusals_seen,
                    "peer streams refused"
                );
                self.refusals_seen = refused;
            }
        }
        if !self.open_waiters.is_empty() {
            // A stream may have left the table.
            self.wake_opener();
        }
        if self.session.is_draining() && !self.close_wakers.is_empty() {
            // A stream may have finished.
            self.wake_drainer();
        }
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Opened(_) => {
                    if self.acceptor_alive {
                        self.wakes.take(&mut self.accept_waker);
                    } else {
                        while let Some(id) = self.session.accept() {
                            self.session.close_stream(id);
                        }
                    }
                }
                Event::Readable(id) | Event::Finished(id) => {
                    if let Some(slot) = self.slots.get_mut(&id.0) {
                        self.wakes.take(&mut slot.reader);
                    }
                }
                Event::Writable(id) => {
                    if let Some(slot) = self.slots.get_mut(&id.0) {
                        self.wakes.take(&mut slot.writer);
                    }
                }
                Event::Reset { id, reason } => {
                    crate::trace::event_warn!(self, stream = id.0, %reason, "stream reset");
                    #[cfg(not(feature = "tracing"))]
                    let _ = reason;
                    if let Some(slot) = self.slots.get_mut(&id.0) {
                        self.wakes.take(&mut slot.reader);
                        self.wakes.take(&mut slot.writer);
                    }
                }
                Event::Closed(id) => {
                    if let Some(slot) = self.slots.get_mut(&id.0) {
                        self.wakes.take(&mut slot.reader);
                        self.wakes.take(&mut slot.writer);
                    }
                }
                _ => self.wake_all(),
            }
        }
    }
}
