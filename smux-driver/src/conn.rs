//! One connection as the worker and the handles share it ([`Conn`]): the protocol state
//! ([`State`]) and the write side (`write.rs`) behind their two locks (`lock.rs`), and the
//! signals writers read without a lock. The read side is the worker's own (`read.rs`).

use std::io;
use std::time::{Duration, Instant};

use smux_proto::{Config, Event, Role, Session, SessionEnd, StreamError};

use crate::error::{stream_error, StreamOp};
use crate::lock::{Locks, StateGuard, Unlock, WriteGuard};
use crate::waiters::{Signals, Waiters, Wakes};
use crate::write::WriteSide;
use crate::WriteMode;

/// One connection's shared state; `W` is the transport's write side.
#[derive(Debug)]
pub(crate) struct Conn<W> {
    locks: Locks<State, WriteSide<W>>,
    pub signals: Signals,
    /// The largest payload of a frame we send.
    pub frame: usize,
    /// What the transport does with many buffers.
    pub mode: WriteMode,
    /// How long the transport stays open after an orderly end we began (`Worker::poll_end`).
    pub linger: Duration,
}

/// The state locked, as handed out by [`Conn::state`].
pub(crate) type StateLock<'a> = StateGuard<'a, State, Wakes>;
/// The write side locked, as handed out by [`Conn::writer`].
pub(crate) type Writer<'a, W> = WriteGuard<'a, State, WriteSide<W>, Wakes>;

/// The protocol state and everyone waiting on it.
#[derive(Debug)]
pub(crate) struct State {
    pub session: Session,
    pub waiters: Waiters,
    /// Connectors, acceptors and streams alive.
    pub handles: usize,
    pub acceptor_alive: bool,
    /// The session stopped taking input; a stream read or an accept may let it go on.
    pub read_paused: bool,
    /// Why the transport failed, once it did.
    pub failure: Failure,
    /// The transport is shut down (or failed) and dropped: nothing more will move.
    pub finished: bool,
    /// The worker was dropped before the end.
    pub abandoned: bool,
    /// At the end, the worker lingers on the read side (`Worker::poll_end`).
    pub linger: bool,
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

/// The transport's error: the error itself until the worker reports it, and its kind and
/// message for everyone after (`io::Error` is not `Clone`).
#[derive(Debug, Default)]
pub(crate) struct Failure {
    pub error: Option<io::Error>,
    pub kind: Option<io::ErrorKind>,
    pub msg: Option<String>,
}

impl Unlock<Wakes> for State {
    fn unlock(&mut self, key: &mut Wakes) {
        self.waiters.unlock(key);
    }

    /// Writing was left to the write lock's last holder, which may have finished before it
    /// saw the output left: the worker looks again.
    fn handed_off(&mut self) {
        self.waiters.notify_worker();
    }
}

impl<W: crate::TransportWrite> Conn<W> {
    pub fn new(
        write: W,
        role: Role,
        config: Config,
        now: Instant,
        handles: usize,
        linger: Duration,
    ) -> Conn<W> {
        let mut session =
            Session::new(role, config, now).expect("the builder validated the config");
        // SYNs past the accept backlog wait while the acceptor lives and accepts (the
        // session refuses them after `accept_stall_timeout` without an accept).
        session.set_hold_opens(true);
        let frame = session.config().max_frame_size();
        let mode = write.write_mode();
        #[cfg(feature = "tracing")]
        let span = {
            let version = match session.version() {
                Some(v) => format!("{}", v as u8),
                None => "auto".to_string(),
            };
            tracing::debug_span!("smux", role = ?role, version = %version)
        };
        let state = State {
            session,
            waiters: Waiters::new(),
            handles,
            acceptor_alive: true,
            read_paused: false,
            failure: Failure::default(),
            finished: false,
            abandoned: false,
            linger: false,
            result_taken: false,
            last_now: now,
            #[cfg(feature = "tracing")]
            span,
            #[cfg(feature = "tracing")]
            refusals_seen: 0,
        };
        Conn {
            locks: Locks::new(state, WriteSide::new(write)),
            signals: Signals::default(),
            frame,
            mode,
            linger,
        }
    }
}

impl<W> Conn<W> {
    /// Locks the protocol state; the wakers queued meanwhile go to `key`.
    pub fn state<'a>(&'a self, key: &'a mut Wakes) -> StateLock<'a> {
        self.locks.state(key)
    }

    /// Runs `f` on the state, locked, and the wakers it queued once the lock is released.
    pub fn with_state<O>(&self, f: impl FnOnce(&mut State) -> O) -> O {
        let mut key = Wakes::default();
        let mut st = self.locks.state(&mut key);
        f(&mut st)
    }

    /// The write side, if nobody holds it: the one entry point of everyone who writes.
    /// Handles never wait for it; whoever holds it writes what is queued.
    pub fn writer<'a>(&'a self, key: &'a mut Wakes) -> Option<Writer<'a, W>> {
        self.locks.try_write(key)
    }

    /// The write side for the worker: if somebody holds it, the holder wakes the worker as it
    /// releases it, so that the worker writes what the holder left.
    pub fn writer_or_hand_off<'a>(&'a self, key: &'a mut Wakes) -> Option<Writer<'a, W>> {
        self.locks.try_write_or_hand_off(key)
    }

    /// The write side, waiting for its holder: for drops only.
    pub fn writer_blocking<'a>(&'a self, key: &'a mut Wakes) -> Writer<'a, W> {
        self.locks.write(key)
    }
}

impl State {
    pub fn release_handle(&mut self) {
        self.handles -= 1;
        if self.handles == 0 {
            self.waiters.notify_worker();
        }
    }

    /// The session has frames to write, or has ended (and the transport is to be shut down).
    pub fn wants_write(&self) -> bool {
        self.session.has_output() || self.session.is_ended()
    }

    /// Input stopped because the session could not take it, and now it can.
    pub fn paused_input_can_go_on(&self) -> bool {
        self.read_paused && self.session.wants_input()
    }

    /// A read freed room: the session may send an UPD or take input again.
    pub fn after_read(&mut self) {
        self.waiters.wake_closers_if(self.session.is_draining());
        if self.session.has_output() || self.paused_input_can_go_on() {
            self.waiters.notify_worker();
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
        stream_error(self.session.end_reason(), self.failure.msg.as_deref(), op)
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
        let w = &mut self.waiters;
        if w.has_openers() {
            // A stream may have left the table.
            w.wake_opener(&self.session);
        }
        if self.session.is_draining() {
            // A stream may have finished.
            w.wake_closers_if(true);
        }
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Opened(_) => {
                    if self.acceptor_alive {
                        w.wake_acceptor();
                    } else {
                        while let Some(id) = self.session.accept() {
                            self.session.close_stream(id);
                        }
                    }
                }
                Event::Readable(id) | Event::Finished(id) => w.wake_reader(id),
                Event::Writable(id) => w.wake_writer(id),
                Event::Reset { id, reason } => {
                    crate::trace::event_warn!(self, stream = id.0, %reason, "stream reset");
                    #[cfg(not(feature = "tracing"))]
                    let _ = reason;
                    w.wake_stream(id);
                }
                Event::Closed(id) => w.wake_stream(id),
                _ => w.wake_all(),
            }
        }
    }
}
