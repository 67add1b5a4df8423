//! The session: routes frames to streams, schedules output, runs timers, keeps the budgets.
//!
//! The `Session` type is defined here with its getters; its other methods live beside the
//! concern they serve:
//! - `input`: taking transport bytes, frame by frame;
//! - `admission`: peer SYNs, the accept backlog and refusals;
//! - `recv`: reads, the receive budget and (version 2) our windows;
//! - `send`: writes, the send budget and the frames handed out;
//! - `close`: half-close, releasing streams, closing and ending the session;
//! - `timers`: keep-alive and idle timeouts.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::config::{Config, Role};
use crate::decode::Decoder;
use crate::error::{ConfigError, ResetReason, SessionEnd, StreamError};
use crate::flow::FlowControl;
use crate::frame::Header;
use crate::hasher::IdHasher;
use crate::scheduler::Scheduler;
use crate::stream::{Epoch, Stream};
use crate::table::{IdQueue, Queue, Streams};
use crate::timer::{DeadlineQueue, Timer, TimerTable};
use crate::wire::{Cmd, StreamId, Version, HEADER_LEN, INITIAL_PEER_WINDOW};

mod admission;
mod close;
mod input;
mod recv;
mod reset;
mod send;
mod stats;

pub use stats::{SessionStats, StreamStats};
mod timers;

/// Something the application should know about. Drain with [`Session::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer opened a stream; take it with [`Session::accept`].
    Opened(StreamId),
    /// Data arrived on a stream that had none unread.
    Readable(StreamId),
    /// A stream whose write was [`StreamError::Blocked`](crate::StreamError) has room again.
    Writable(StreamId),
    /// The peer finished its direction of the stream (FIN): reads end after the unread data.
    Finished(StreamId),
    /// The stream is over in both directions (both FINs, or the idle timeout). Release it with
    /// [`Session::close_stream`] once its unread data is read.
    Closed(StreamId),
    /// The session reset a stream ([`ResetReason`]): its reads and writes fail from now on,
    /// and the peer got a FIN.
    Reset {
        /// The stream.
        id: StreamId,
        /// Why.
        reason: ResetReason,
    },
    /// The session ended. Streams keep what they received: reads return it, then end of
    /// stream (if the peer had sent FIN) or [`StreamError::SessionEnded`](crate::StreamError).
    SessionEnded(SessionEnd),
}

/// One frame to hand to the transport: write `header`, then `payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a transmit must be written to the transport"]
pub struct Transmit {
    /// The stream the frame belongs to (0 for NOP).
    pub stream_id: StreamId,
    /// What the frame does.
    pub cmd: Cmd,
    /// The encoded frame header.
    pub header: [u8; HEADER_LEN],
    /// The payload (empty for SYN, FIN and NOP; eight bytes for UPD).
    pub payload: Bytes,
}

impl Transmit {
    fn new(version: Version, cmd: Cmd, stream_id: StreamId, payload: Bytes) -> Transmit {
        let len = u16::try_from(payload.len()).expect("payloads are at most one frame");
        Transmit {
            stream_id,
            cmd,
            header: Header::new(version, cmd, len, stream_id).encode(),
            payload,
        }
    }

    /// Bytes this frame takes on the wire.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    /// [`Session::close`] was called: queued output drains, then the session ends.
    Closing,
    Ended(SessionEnd),
}

/// One side of an smux connection. See the [crate docs](crate) for the calling contract.
///
/// Methods fall into four groups:
/// - getters (`&self`): [`role`](Session::role), [`version`](Session::version),
///   [`is_ended`](Session::is_ended), [`wants_input`](Session::wants_input), ...;
/// - input: [`handle_input`](Session::handle_input), [`handle_timeout`](Session::handle_timeout),
///   [`handle_eof`](Session::handle_eof);
/// - commands: [`open`](Session::open), [`accept`](Session::accept), [`write`](Session::write),
///   [`read`](Session::read), [`shutdown`](Session::shutdown),
///   [`close_stream`](Session::close_stream), [`close`](Session::close);
/// - output: [`poll_transmit`](Session::poll_transmit), [`poll_event`](Session::poll_event),
///   [`poll_timeout`](Session::poll_timeout).
#[derive(Debug)]
pub struct Session {
    config: Config,
    role: Role,
    state: State,
    streams: Streams,
    /// Last id we allocated; the next is two more.
    pub(crate) last_id: u32,
    ids_exhausted: bool,
    /// Peer-opened streams waiting for `accept`.
    accept_queue: IdQueue,
    /// A SYN that finds the accept backlog full waits instead of being refused.
    hold_opens: bool,
    /// Nothing was accepted for `accept_stall_timeout` while a SYN waited: SYNs past the
    /// backlog are refused until something is.
    accept_stalled: bool,
    /// [`Session::drain`] was called: no new streams either way.
    draining: bool,
    /// The counters of [`Session::stats`] (its gauges are filled in when read).
    counters: SessionStats,
    /// Whether `config.version()` is the version spoken: false until the first frame
    /// arrives, with [`Config::auto_version`].
    pub(super) version_known: bool,
    sched: Scheduler,
    events: VecDeque<Event>,
    decoder: Decoder,
    /// Memory held for unread data of all streams (payload and queue slots), plus what the
    /// frame being received will add.
    rx_held: usize,
    /// The part of `rx_held` reserved for the frame being received.
    rx_reserved: usize,
    /// Version 2: the credit the peer holds on all streams, and what the window tuning
    /// measured.
    flow: FlowControl,
    /// Version 2: streams whose window could not grow for lack of budget.
    credit_wait: IdQueue,
    /// Streams that pinned a read buffer, or (version 2) held 16 KiB or more unread, when
    /// last seen: the candidates for copying out and for a reset (see `reset.rs`).
    heavy: Vec<StreamId>,
    /// Version 2: deadlines of writers waiting for the peer's window (see `reset.rs`).
    stalled_writers: DeadlineQueue,
    /// Bytes written by all streams and not yet handed out.
    tx_queued: usize,
    timers: TimerTable,
    pub(crate) idle: DeadlineQueue,
    /// The latest time we were given.
    now: Instant,
    /// When the session was made: what streams count their instants from.
    epoch: Epoch,
}

impl Session {
    /// A session for `role` speaking `config`, created at `now`. Fails if the config is invalid.
    pub fn new(role: Role, config: Config, now: Instant) -> Result<Session, ConfigError> {
        config.validate()?;
        if config.auto_version() && role == Role::Client {
            return Err(ConfigError::new(
                "auto_version",
                "is for a server: a client's first frame sets the version",
                "true for a client".into(),
            ));
        }
        let mut timers = TimerTable::default();
        if let Some(i) = config.keep_alive_interval() {
            timers.set(Timer::KeepAlive, now + i);
        }
        if let Some(t) = config.keep_alive_timeout() {
            timers.set(Timer::KeepAliveTimeout, now + t);
        }
        Ok(Session {
            role,
            state: State::Open,
            streams: Streams::with_hasher(IdHasher::new()),
            last_id: match role {
                Role::Client => 1,
                Role::Server => 0,
            },
            ids_exhausted: false,
            accept_queue: IdQueue::new(Queue::Accept),
            hold_opens: false,
            accept_stalled: false,
            draining: false,
            version_known: !config.auto_version(),
            counters: SessionStats::default(),
            sched: Scheduler::new(),
            events: VecDeque::new(),
            decoder: Decoder::default(),
            rx_held: 0,
            rx_reserved: 0,
            flow: FlowControl::default(),
            credit_wait: IdQueue::new(Queue::CreditWait),
            heavy: Vec::new(),
            stalled_writers: DeadlineQueue::default(),
            tx_queued: 0,
            timers,
            idle: DeadlineQueue::default(),
            now,
            epoch: Epoch::new(now),
            config,
        })
    }

    // ---------------------------------------------------------------- getters

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The protocol version this session speaks: `None` while it waits for the client's
    /// first frame ([`Config::auto_version`]).
    pub fn version(&self) -> Option<Version> {
        self.version_known.then(|| self.config.version())
    }

    /// The version frames are encoded and checked with (the configured one, or the one the
    /// first frame set).
    pub(crate) fn wire_version(&self) -> Version {
        self.config.version()
    }

    /// Auto version: the first byte of the input is the version of the client's first frame.
    /// A byte that is not a version is left for the decoder to reject.
    pub(super) fn learn_version(&mut self, input: &[u8]) {
        let Some(v) = input.first().and_then(|&b| Version::from_byte(b)) else {
            return;
        };
        self.version_known = true;
        self.config.with_version(v);
        if v == Version::V2 {
            // Streams we opened before knowing: the peer may send the initial window on them.
            for s in self.streams.values_mut() {
                s.recv_window.grant(INITIAL_PEER_WINDOW as usize);
                if !s.reads_dropped() {
                    self.flow.lend(INITIAL_PEER_WINDOW as usize);
                }
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the session has ended (see [`Session::end_reason`]).
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended(_))
    }

    /// Whether [`Session::close`] was called or the session ended: no more streams or writes.
    pub fn is_closing(&self) -> bool {
        self.state != State::Open
    }

    /// Why the session ended, once it has.
    pub fn end_reason(&self) -> Option<&SessionEnd> {
        match &self.state {
            State::Ended(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the session can take more input now. It is `false` after the end, and while a
    /// frame waits for room: in version 1 the receive budget is full; a SYN waits for the
    /// accept backlog (see [`Session::set_hold_opens`]); or more refusals wait to be sent than
    /// a peer that opens its ids in order can cause (`max_streams + 1` runs of ids). Then read
    /// the transport no further and call [`Session::handle_input`] again (an empty input will
    /// do) once the application has read or accepted, output has been drained, or a timer
    /// has run. In version 2, data within the windows we advertised never waits.
    pub fn wants_input(&self) -> bool {
        if self.is_ended() {
            return false;
        }
        match self.decoder.pending_header() {
            Some(h) => !self.would_stall(&h),
            None => true,
        }
    }

    /// Streams the session holds: open, waiting to be accepted, or released with their FIN
    /// still to send.
    pub fn num_streams(&self) -> usize {
        self.streams.len()
    }

    /// Memory held for unread data of all streams: payloads and the queue slots holding them
    /// (what `max_session_unread` limits in version 1).
    pub fn unread_held(&self) -> usize {
        self.rx_held
    }

    /// Version 2: what the peer may still send on all streams together before it needs more
    /// window from us (the credit our windows give it). Always 0 in version 1.
    pub fn credit_owed(&self) -> usize {
        self.flow.owed()
    }

    /// Bytes written by all streams and not yet handed out by [`Session::poll_transmit`].
    pub fn queued_bytes(&self) -> usize {
        self.tx_queued
    }

    /// Unread bytes on a stream.
    pub fn stream_unread(&self, id: StreamId) -> Option<usize> {
        self.streams.get(&id.0).map(|s| s.unread())
    }

    /// Version 2: bytes the peer's window lets `id` write now (in version 1, `usize::MAX`).
    pub fn send_window(&self, id: StreamId) -> Option<usize> {
        self.streams.get(&id.0).map(|s| match self.wire_version() {
            Version::V1 => usize::MAX,
            Version::V2 => s.send_window(),
        })
    }

    /// Whether anything of `id` (its SYN, data, or a requested FIN) still waits to be handed
    /// out by [`Session::poll_transmit`].
    pub fn has_pending_output(&self, id: StreamId) -> bool {
        self.streams
            .get(&id.0)
            .is_some_and(|s| s.syn_pending() || s.queued() > 0 || s.fin_due())
    }

    /// Whether `id` can carry no more data in either direction: both FINs, the idle timeout,
    /// the end of the session, or an id the session does not know.
    pub fn is_stream_closed(&self, id: StreamId) -> bool {
        self.is_ended() || self.streams.get(&id.0).is_none_or(|s| s.is_done())
    }

    /// Streams with data queued to send (each gets one frame per turn of
    /// [`Session::poll_transmit`]).
    pub fn sending_streams(&self) -> usize {
        self.sched.sending()
    }

    /// Whether [`Session::poll_transmit`] has something to hand out.
    pub fn has_output(&self) -> bool {
        !self.is_ended()
            && self.version_known
            && (self.sched.has_output() || self.state == State::Closing)
    }

    // ---------------------------------------------------------------- output

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 64 {
            // A burst of events must not keep its memory.
            self.events = VecDeque::new();
        }
        e
    }

    /// When [`Session::handle_timeout`] should next be called, if any timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_ended() {
            return None;
        }
        [
            self.timers.next(),
            self.idle.next(),
            self.stalled_writers.next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---------------------------------------------------------------- shared internals

    /// The stream a command names: known and not released.
    fn command_target(&self, id: StreamId) -> Result<&Stream, StreamError> {
        self.streams
            .get(&id.0)
            .map(Box::as_ref)
            .filter(|s| !s.is_released())
            .ok_or(StreamError::UnknownStream(id))
    }

    fn is_local_id(&self, id: StreamId) -> bool {
        let odd = id.0 % 2 == 1;
        odd == (self.role == Role::Client)
    }

    /// Takes `id` out of the table, with the memory, credit and queue places it held. The
    /// table shrinks once it is mostly empty (amortised: at most once per halving).
    fn remove(&mut self, id: StreamId) {
        let Some(mut s) = self.streams.remove(&id.0) else {
            return;
        };
        self.rx_held -= s.release();
        self.flow.repay(s.take_credit());
        self.tx_queued -= s.drop_tx();
        self.sched.forget(&s, &self.streams);
        for q in [&mut self.accept_queue, &mut self.credit_wait] {
            q.forget(&s);
            q.tidy(&self.streams);
        }
        let cap = self.streams.capacity();
        if cap > 64 && self.streams.len() * 4 < cap {
            self.streams.shrink_to(self.streams.len() * 2);
        }
    }

    /// Entries of the session's queues looked at so far, stale ones included.
    #[cfg(test)]
    pub(crate) fn queue_visits(&self) -> u64 {
        let s = &self.sched;
        [
            &self.accept_queue,
            &self.credit_wait,
            &s.ctrl,
            &s.fresh,
            &s.ready,
            &s.tx_blocked,
        ]
        .iter()
        .map(|q| q.visits)
        .sum()
    }

    /// Memory the stream table holds, roughly: its capacity in entries.
    #[cfg(test)]
    pub(crate) fn table_capacity(&self) -> usize {
        self.streams.capacity()
    }

    /// Reports `Closed` once both directions of `id` are over.
    fn check_done(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id.0) {
            if s.take_closed_report() {
                self.events.push_back(Event::Closed(id));
            }
        }
    }
}
