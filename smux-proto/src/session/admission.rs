//! Opening streams: our own opens, and peer SYNs against the stream limit, the accept backlog
//! (with held opens and the accept-stall timeout) and the refusals they may get.

use std::time::Instant;

use super::{Event, Session, State};
use crate::error::OpenError;
use crate::stream::Stream;
use crate::timer::Timer;
use crate::wire::{Cmd, StreamId, Version, INITIAL_PEER_WINDOW};

impl Session {
    /// Opens a stream. Its SYN goes out ahead of any data.
    pub fn open(&mut self) -> Result<StreamId, OpenError> {
        if self.state != State::Open {
            return Err(OpenError::SessionClosed);
        }
        if self.draining {
            return Err(OpenError::Draining);
        }
        if self.streams.len() >= self.config.max_streams() {
            return Err(OpenError::TooManyStreams {
                limit: self.config.max_streams(),
            });
        }
        let Some(next) = self.last_id.checked_add(2).filter(|_| !self.ids_exhausted) else {
            self.ids_exhausted = true;
            return Err(OpenError::IdsExhausted);
        };
        self.last_id = next;
        self.counters.streams_opened += 1;
        let id = StreamId(next);
        let mut s = self.new_stream();
        s.owe_syn();
        let s = self.streams.entry(next).or_insert(s);
        self.sched.ctrl.push(id, s);
        Ok(id)
    }

    /// While `hold` is set, a peer SYN that finds the accept backlog full waits, and the input
    /// behind it with it (as a frame waits for receive room), instead of being refused with a
    /// FIN: for an application whose accept loop is running and will make room, so that a
    /// burst of opens loses none. Once nothing has been accepted for the config's
    /// `accept_stall_timeout` (see [`Session::poll_timeout`]), such SYNs are refused until a
    /// stream is accepted again. Clear it when the application stops accepting: a waiting SYN
    /// is then refused at once. SYNs beyond `max_streams`, for our own ids or after `close`
    /// are refused either way. Off by default.
    pub fn set_hold_opens(&mut self, hold: bool) {
        self.hold_opens = hold;
        if !hold {
            self.timers.stop(Timer::AcceptStall);
        }
    }

    /// Whether input waits on a SYN held for room in the accept backlog (see
    /// [`Session::set_hold_opens`]).
    pub fn is_holding_open(&self) -> bool {
        self.decoder.pending_header().is_some_and(|h| {
            h.cmd == Cmd::Syn && self.syn_stalls(h.stream_id) && !self.refusals_full()
        })
    }

    /// Takes the next stream the peer opened, oldest first. Streams that arrived before the
    /// session ended can still be taken afterwards, to read what the peer sent on them.
    pub fn accept(&mut self) -> Option<StreamId> {
        let id = self.accept_queue.pop(&mut self.streams)?;
        // The application is accepting: a SYN past the backlog may wait again.
        self.accept_stalled = false;
        self.timers.stop(Timer::AcceptStall);
        Some(id)
    }

    /// Streams waiting for [`Session::accept`].
    pub fn accept_backlog(&self) -> usize {
        self.accept_queue.len()
    }

    /// A fresh stream's state: in version 2 the peer may send the protocol's initial window on
    /// it before it hears ours.
    pub(super) fn new_stream(&mut self) -> Box<Stream> {
        let credit = match self.wire_version() {
            Version::V1 => 0,
            Version::V2 => INITIAL_PEER_WINDOW as usize,
        };
        self.flow.lend(credit);
        let mut s = Stream::new(credit);
        s.recv_window
            .set_window(self.flow.starting_window(&self.config));
        s
    }

    /// More refusals wait than a peer opening its ids in order can cause.
    pub(super) fn refusals_full(&self) -> bool {
        self.sched.refusals.len() > self.config.max_streams()
    }

    /// Whether a peer SYN for a new id `id` gets a FIN instead of a stream.
    fn syn_refused(&self, id: StreamId) -> bool {
        !self.streams.contains_key(&id.0)
            && (self.is_local_id(id)
                || self.state != State::Open
                || self.draining
                || self.streams.len() >= self.config.max_streams()
                || self.accept_queue.len() >= self.config.max_accept_backlog())
    }

    /// Whether a peer SYN for `id` must wait: its refusal has no room, or it only lacks room
    /// in the accept backlog while opens are held and the acceptor has not stalled.
    pub(super) fn syn_stalls(&self, id: StreamId) -> bool {
        if !self.syn_refused(id) {
            return false;
        }
        let only_backlog = self.hold_opens
            && !self.accept_stalled
            && id.0 != 0
            && !self.is_local_id(id)
            && self.state == State::Open
            && !self.draining
            && self.streams.len() < self.config.max_streams();
        only_backlog || self.refusals_full()
    }

    /// A SYN waits for the backlog: the accept-stall timeout runs from here (or from the last
    /// accept since).
    pub(super) fn hold_syn(&mut self, now: Instant) {
        if self.hold_opens && self.timers.get(Timer::AcceptStall).is_none() {
            let at = now + self.config.accept_stall_timeout();
            self.timers.set(Timer::AcceptStall, at);
        }
    }

    /// The accept-stall timeout ran out: SYNs past the backlog are refused until an accept.
    pub(super) fn on_accept_stall(&mut self) {
        self.timers.stop(Timer::AcceptStall);
        if self.is_holding_open() {
            self.accept_stalled = true;
        }
    }

    /// A peer SYN that did not have to wait: a new stream, a refusal, or nothing (a duplicate).
    pub(super) fn on_syn(&mut self, id: StreamId, now: Instant) {
        if self.streams.contains_key(&id.0) {
            // Duplicate SYN: ignored, as Go does.
        } else if self.syn_refused(id) {
            self.counters.streams_refused += 1;
            self.sched.refusals.push(id);
        } else {
            self.counters.streams_accepted += 1;
            let mut s = self.new_stream();
            if self.config.idle_timeout().is_some() {
                s.last_activity = Some(self.epoch.stamp(now));
            }
            let s = self.streams.entry(id.0).or_insert(s);
            self.accept_queue.push(id, s);
            self.arm_idle(id, now);
            self.events.push_back(Event::Opened(id));
        }
    }
}
