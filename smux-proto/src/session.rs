//! The session: routes frames to streams, schedules output, runs timers, keeps the budgets.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use crate::config::{Config, Role, Version};
use crate::decode::{Body, Complete, Decoder};
use crate::error::{ConfigError, OpenError, ProtocolError, SessionEnd, StreamError};
use crate::frame::{decode_upd, encode_upd, Cmd, Header, StreamId, HEADER_LEN};
use crate::stream::Stream;
use crate::timer::{DeadlineQueue, Timer, TimerTable};

/// Something the application should know about. Drain with [`Session::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer opened a stream; take it with [`Session::accept`].
    Opened(StreamId),
    /// Data arrived on a stream that had none unread.
    Readable(StreamId),
    /// A stream whose write was [`StreamError::Blocked`] has room again.
    Writable(StreamId),
    /// The peer finished its direction of the stream (FIN): reads end after the unread data.
    Finished(StreamId),
    /// The stream is over in both directions (both FINs, or the idle timeout). Release it with
    /// [`Session::close_stream`] once its unread data is read.
    Closed(StreamId),
    /// The session ended. Streams keep what they received: reads return it, then end of
    /// stream (if the peer had sent FIN) or [`StreamError::SessionEnded`].
    SessionEnded(SessionEnd),
}

/// One frame to hand to the transport: write `header`, then `payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a transmit must be written to the transport"]
pub struct Transmit {
    /// The encoded frame header.
    pub header: [u8; HEADER_LEN],
    /// The payload (empty for SYN, FIN and NOP).
    pub payload: Bytes,
}

impl Transmit {
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

/// What the session should do with a pending header.
enum Step {
    Done,
    /// Budget or refusal queue is full: keep the header and stop reading input.
    Stall,
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
    streams: HashMap<u32, Stream, IdHasher>,
    /// Last id we allocated; the next is two more.
    pub(crate) last_id: u32,
    ids_exhausted: bool,
    accept_queue: VecDeque<StreamId>,
    /// FINs for refused peer SYNs.
    refusals: VecDeque<StreamId>,
    /// A SYN that finds the accept backlog full waits instead of being refused.
    hold_opens: bool,
    /// Streams with SYN, UPD or a due FIN to send; served before any data.
    ctrl: VecDeque<StreamId>,
    /// Streams with data to send, served round-robin one frame at a time.
    ready: VecDeque<StreamId>,
    /// Streams refused a write because the session's output queue was full.
    tx_blocked: VecDeque<StreamId>,
    nop_pending: bool,
    events: VecDeque<Event>,
    decoder: Decoder,
    /// Memory held for unread data of all streams (payload and queue slots), plus what the
    /// frame being received will add.
    rx_held: usize,
    /// The part of `rx_held` reserved for the frame being received.
    rx_reserved: usize,
    /// Bytes written by all streams and not yet handed out.
    tx_queued: usize,
    timers: TimerTable,
    pub(crate) idle: DeadlineQueue,
    /// The latest time we were given.
    now: Instant,
}

impl Session {
    /// A session for `role` speaking `config`, created at `now`. Fails if the config is invalid.
    pub fn new(role: Role, config: Config, now: Instant) -> Result<Session, ConfigError> {
        config.validate()?;
        let mut timers = TimerTable::default();
        if let Some(i) = config.keep_alive_interval {
            timers.set(Timer::KeepAlive, now + i);
        }
        if let Some(t) = config.keep_alive_timeout {
            timers.set(Timer::KeepAliveTimeout, now + t);
        }
        Ok(Session {
            role,
            state: State::Open,
            streams: HashMap::with_hasher(IdHasher::new()),
            last_id: match role {
                Role::Client => 1,
                Role::Server => 0,
            },
            ids_exhausted: false,
            accept_queue: VecDeque::new(),
            refusals: VecDeque::new(),
            hold_opens: false,
            ctrl: VecDeque::new(),
            ready: VecDeque::new(),
            tx_blocked: VecDeque::new(),
            nop_pending: false,
            events: VecDeque::new(),
            decoder: Decoder::default(),
            rx_held: 0,
            rx_reserved: 0,
            tx_queued: 0,
            timers,
            idle: DeadlineQueue::default(),
            now,
            config,
        })
    }

    // ---------------------------------------------------------------- getters

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The protocol version this session speaks.
    pub fn version(&self) -> Version {
        self.config.version
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
    /// frame waits for room (the receive budget is full, or the refusal queue is): then read
    /// the transport no further and call [`Session::handle_input`] again (an empty input will
    /// do) once the application has read or output has been drained.
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
    /// (what `max_session_unread` limits).
    pub fn unread_held(&self) -> usize {
        self.rx_held
    }

    /// Bytes written by all streams and not yet handed out by [`Session::poll_transmit`].
    pub fn queued_bytes(&self) -> usize {
        self.tx_queued
    }

    /// Unread bytes on a stream.
    pub fn stream_unread(&self, id: StreamId) -> Option<usize> {
        self.streams.get(&id.0).map(Stream::unread)
    }

    /// Version 2: bytes the peer's window lets `id` write now (in version 1, `usize::MAX`).
    pub fn send_window(&self, id: StreamId) -> Option<usize> {
        self.streams.get(&id.0).map(|s| match self.config.version {
            Version::V1 => usize::MAX,
            Version::V2 => s.send_window(),
        })
    }

    /// Whether anything of `id` (its SYN, data, or a requested FIN) still waits to be handed
    /// out by [`Session::poll_transmit`].
    pub fn has_pending_output(&self, id: StreamId) -> bool {
        self.streams
            .get(&id.0)
            .is_some_and(|s| s.syn_pending || s.queued() > 0 || s.fin_due())
    }

    /// Whether `id` can carry no more data in either direction: both FINs, the idle timeout,
    /// the end of the session, or an id the session does not know.
    pub fn is_stream_closed(&self, id: StreamId) -> bool {
        self.is_ended() || self.streams.get(&id.0).is_none_or(|s| s.is_done())
    }

    /// Whether [`Session::poll_transmit`] has something to hand out.
    pub fn has_output(&self) -> bool {
        !self.is_ended()
            && (self.nop_pending
                || !self.refusals.is_empty()
                || !self.ctrl.is_empty()
                || !self.ready.is_empty()
                || self.state == State::Closing)
    }

    // ---------------------------------------------------------------- input

    /// Takes bytes received from the transport at `now`. Consumes from the front of `input`
    /// what it can: all of it, unless a frame has to wait for room (see
    /// [`Session::wants_input`]); the rest stays in `input` for the next call. After the end,
    /// input is dropped.
    pub fn handle_input(&mut self, now: Instant, input: &mut Bytes) {
        self.now = self.now.max(now);
        let chunk_len = input.len();
        loop {
            if self.is_ended() {
                input.clear();
                return;
            }
            if self.decoder.in_body() {
                if input.is_empty() {
                    return;
                }
                if let Some(done) = self.decoder.body(input, chunk_len) {
                    self.on_body(done, now);
                }
                continue;
            }
            let Some(raw) = self.decoder.header(input) else {
                return;
            };
            match Header::decode(&raw, self.config.version) {
                Err(e) => {
                    self.end(SessionEnd::Protocol(e));
                }
                Ok(h) => match self.on_header(h, now) {
                    Step::Done => {}
                    Step::Stall => return,
                },
            }
        }
    }

    /// The transport has no more input (the peer closed it). The session ends unless it has
    /// already; an orderly end after our own [`Session::close`] is reported as such.
    pub fn handle_eof(&mut self) {
        self.end(SessionEnd::PeerClosed);
    }

    /// The transport failed. The session ends.
    pub fn handle_transport_error(&mut self) {
        self.end(SessionEnd::TransportFailed);
    }

    /// Runs the timers due at `now`: keep-alive NOP, keep-alive timeout, stream idle timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.is_ended() {
            return;
        }
        if self.timers.is_due(Timer::KeepAliveTimeout, now) {
            if self.wants_input() {
                self.end(SessionEnd::KeepAliveTimeout);
                return;
            }
            // We stopped reading, not the peer: a full budget must not look like a dead peer.
            self.arm_keep_alive_timeout(now);
        }
        if self.timers.is_due(Timer::KeepAlive, now) {
            self.nop_pending = true;
            if let Some(i) = self.config.keep_alive_interval {
                self.timers.set(Timer::KeepAlive, now + i);
            }
        }
        if let Some(idle) = self.config.idle_timeout {
            while let Some(id) = self.idle.pop_due(now) {
                let Some(s) = self.streams.get(&id) else {
                    continue;
                };
                let (Some(last), false) = (s.last_activity, s.expired) else {
                    continue;
                };
                // Data waiting on either side, or arriving, is not idleness: the application
                // or the transport is behind, and expiring would lose it.
                let stalled_here = self
                    .decoder
                    .pending_header()
                    .is_some_and(|h| u32::from_le_bytes([h[4], h[5], h[6], h[7]]) == id);
                let arriving = self.decoder.receiving() == Some(StreamId(id));
                if s.has_unread() || s.queued() > 0 || stalled_here || arriving {
                    self.idle.push(now + idle, id);
                } else if last + idle > now {
                    self.idle.push(last + idle, id);
                } else {
                    self.expire(StreamId(id));
                }
            }
            self.compact_idle();
        }
    }

    fn arm_keep_alive_timeout(&mut self, now: Instant) {
        arm_keep_alive_timeout(&mut self.timers, &self.config, now);
    }

    /// Whether the frame behind `raw` must wait for room before it can be taken.
    fn would_stall(&self, raw: &[u8; HEADER_LEN]) -> bool {
        let Ok(h) = Header::decode(raw, self.config.version) else {
            return false;
        };
        match h.cmd {
            Cmd::Syn => self.syn_stalls(h.stream_id),
            Cmd::Psh if h.len > 0 => match self.streams.get(&h.stream_id.0) {
                Some(s) if s.accepts_data() => self.data_stalls(s, h.len as usize),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether `len` more unread bytes on `s` must wait: the session budget is full, or in
    /// version 1 the stream's share is.
    fn data_stalls(&self, s: &Stream, len: usize) -> bool {
        let stream_full =
            self.config.version == Version::V1 && s.unread() + len > self.config.max_stream_unread;
        stream_full || self.rx_held + s.rx_cost(len) > self.config.max_session_unread
    }

    fn refusals_full(&self) -> bool {
        self.refusals.len() >= self.config.max_pending_refusals
    }

    /// Whether a peer SYN for a new id `id` gets a FIN instead of a stream.
    fn syn_refused(&self, id: StreamId) -> bool {
        !self.streams.contains_key(&id.0)
            && (self.is_local_id(id)
                || self.state != State::Open
                || self.streams.len() >= self.config.max_streams
                || self.accept_queue.len() >= self.config.max_accept_backlog)
    }

    /// Whether a peer SYN for `id` must wait: its refusal has no room, or it only lacks room
    /// in the accept backlog while opens are held.
    fn syn_stalls(&self, id: StreamId) -> bool {
        if !self.syn_refused(id) {
            return false;
        }
        let only_backlog = self.hold_opens
            && id.0 != 0
            && !self.is_local_id(id)
            && self.state == State::Open
            && self.streams.len() < self.config.max_streams;
        only_backlog || self.refusals_full()
    }

    fn is_local_id(&self, id: StreamId) -> bool {
        let odd = id.0 % 2 == 1;
        odd == (self.role == Role::Client)
    }

    fn on_header(&mut self, h: Header, now: Instant) -> Step {
        // Data frames check for room below, where the stream is looked up anyway.
        if h.cmd == Cmd::Syn && self.syn_stalls(h.stream_id) {
            return Step::Stall;
        }
        let id = h.stream_id;
        match h.cmd {
            // NOP on a non-zero stream is taken as keep-alive too, as Go does.
            Cmd::Nop => {
                self.arm_keep_alive_timeout(now);
                self.decoder.take_header();
            }
            Cmd::Syn => {
                self.arm_keep_alive_timeout(now);
                self.decoder.take_header();
                if id.0 == 0 {
                    self.end(ProtocolError::SynForStreamZero.into());
                } else if self.streams.contains_key(&id.0) {
                    // Duplicate SYN: ignored, as Go does.
                } else if self.syn_refused(id) {
                    self.refusals.push_back(id);
                } else {
                    let mut s = Stream::new();
                    if self.config.idle_timeout.is_some() {
                        s.last_activity = Some(now);
                    }
                    s.in_accept_queue = true;
                    self.streams.insert(id.0, s);
                    self.arm_idle(id, now);
                    self.accept_queue.push_back(id);
                    self.events.push_back(Event::Opened(id));
                }
            }
            Cmd::Fin => {
                self.arm_keep_alive_timeout(now);
                self.decoder.take_header();
                if let Some(s) = self.streams.get_mut(&id.0) {
                    if !s.fin_recv {
                        s.fin_recv = true;
                        if !s.released && !s.closed_reported {
                            self.events.push_back(Event::Finished(id));
                        }
                        self.check_done(id);
                    }
                }
            }
            Cmd::Upd => {
                self.arm_keep_alive_timeout(now);
                self.decoder.begin_body(Body::Upd { id });
            }
            Cmd::Psh => {
                let len = h.len as usize;
                let body = match self.streams.get(&id.0) {
                    Some(s) if len > 0 && s.accepts_data() => {
                        if self.data_stalls(s, len) {
                            return Step::Stall;
                        }
                        arm_keep_alive_timeout(&mut self.timers, &self.config, now);
                        let allowed = self.config.stream_unread_limit();
                        if self.config.version == Version::V2 && s.unread() + len > allowed {
                            self.decoder.take_header();
                            self.end(
                                ProtocolError::WindowExceeded {
                                    stream_id: id,
                                    unread: s.unread() + len,
                                    allowed,
                                }
                                .into(),
                            );
                            return Step::Done;
                        }
                        // Charged now: the body's allocation is made as it arrives.
                        self.rx_reserved = s.rx_cost(len);
                        self.rx_held += self.rx_reserved;
                        Body::Data { id, len }
                    }
                    // Unknown, finished or released stream, or an empty PSH: read and drop,
                    // with no reply.
                    _ => {
                        arm_keep_alive_timeout(&mut self.timers, &self.config, now);
                        Body::Discard { len }
                    }
                };
                self.decoder.begin_body(body);
            }
        }
        Step::Done
    }

    fn on_body(&mut self, done: Complete, now: Instant) {
        match done {
            Complete::Discarded => {}
            Complete::Upd { id, payload } => {
                let (consumed, window) = decode_upd(&payload);
                if let Some(s) = self.streams.get_mut(&id.0) {
                    s.apply_upd(consumed, window);
                    self.wake_writer(id);
                }
            }
            Complete::Data { id, data } => {
                self.rx_held -= std::mem::take(&mut self.rx_reserved);
                // A stream released or expired while its payload was arriving drops it.
                if let Some(s) = self.streams.get_mut(&id.0).filter(|s| s.accepts_data()) {
                    if s.last_activity.is_some() {
                        s.last_activity = Some(now);
                    }
                    let before = s.rx_memory();
                    let was_empty = s.push_rx(data);
                    self.rx_held += s.rx_memory() - before;
                    if was_empty {
                        self.events.push_back(Event::Readable(id));
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- commands

    /// Opens a stream. Its SYN goes out ahead of any data.
    pub fn open(&mut self) -> Result<StreamId, OpenError> {
        if self.state != State::Open {
            return Err(OpenError::SessionClosed);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(OpenError::TooManyStreams {
                limit: self.config.max_streams,
            });
        }
        let Some(next) = self.last_id.checked_add(2).filter(|_| !self.ids_exhausted) else {
            self.ids_exhausted = true;
            return Err(OpenError::IdsExhausted);
        };
        self.last_id = next;
        let id = StreamId(next);
        let mut s = Stream::new();
        s.syn_pending = true;
        self.streams.insert(next, s);
        self.schedule_ctrl(id);
        Ok(id)
    }

    /// While `hold` is set, a peer SYN that finds the accept backlog full waits, and the input
    /// behind it with it (as a frame waits for receive room), instead of being refused with a
    /// FIN: for an application whose accept loop is running and will make room, so that a
    /// burst of opens loses none. [`Session::wants_input`] turns `true` again once a stream is
    /// accepted or `hold` is cleared, which lets the waiting SYN be refused. SYNs beyond
    /// `max_streams`, for our own ids or after `close` are refused either way. Off by default.
    pub fn set_hold_opens(&mut self, hold: bool) {
        self.hold_opens = hold;
    }

    /// Whether input waits on a SYN held for room in the accept backlog (see
    /// [`Session::set_hold_opens`]).
    pub fn is_holding_open(&self) -> bool {
        self.decoder.pending_header().is_some_and(|raw| {
            matches!(Header::decode(&raw, self.config.version),
                Ok(h) if h.cmd == Cmd::Syn && self.syn_stalls(h.stream_id) && !self.refusals_full())
        })
    }

    /// Takes the next stream the peer opened, oldest first. Streams that arrived before the
    /// session ended can still be taken afterwards, to read what the peer sent on them.
    pub fn accept(&mut self) -> Option<StreamId> {
        let id = self.accept_queue.pop_front()?;
        if let Some(s) = self.streams.get_mut(&id.0) {
            s.in_accept_queue = false;
        }
        Some(id)
    }

    /// Queues bytes from `data` for sending and returns how many were taken: as many as the
    /// stream's and the session's output limits and (version 2) the peer's window allow, so
    /// nothing taken ever waits on the peer's window. [`StreamError::Blocked`] when none fit;
    /// [`Event::Writable`] follows when room appears.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        self.write_with(id, data.len(), |n| copy_in(&data[..n]))
    }

    /// Like [`Session::write`], taking the front of `data` without copying; what was taken is
    /// split off `data`.
    pub fn write_bytes(&mut self, id: StreamId, data: &mut Bytes) -> Result<usize, StreamError> {
        self.write_with(id, data.len(), |n| data.split_to(n))
    }

    /// Queues the first bytes of a `len`-byte write, as many as there is room for, taking them
    /// with `take`.
    fn write_with(
        &mut self,
        id: StreamId,
        len: usize,
        take: impl FnOnce(usize) -> Bytes,
    ) -> Result<usize, StreamError> {
        let room = self.write_room(id)?;
        if len == 0 {
            return Ok(0);
        }
        if room == 0 {
            return Err(self.block_writer(id));
        }
        let chunk = take(room.min(len));
        let n = chunk.len();
        self.queue_data(id, chunk);
        Ok(n)
    }

    fn write_room(&self, id: StreamId) -> Result<usize, StreamError> {
        let s = self
            .streams
            .get(&id.0)
            .ok_or(StreamError::UnknownStream(id))?;
        if s.released {
            return Err(StreamError::UnknownStream(id));
        }
        if self.is_ended() {
            return Err(StreamError::SessionEnded);
        }
        if s.fin_queued || s.expired {
            return Err(StreamError::Finished);
        }
        let mut room = (self.config.max_stream_queued
            - s.queued().min(self.config.max_stream_queued))
        .min(self.config.max_session_queued - self.tx_queued.min(self.config.max_session_queued));
        if self.config.version == Version::V2 {
            room = room.min(s.send_window());
        }
        Ok(room)
    }

    fn block_writer(&mut self, id: StreamId) -> StreamError {
        let session_full = self.tx_queued >= self.config.max_session_queued;
        if let Some(s) = self.streams.get_mut(&id.0) {
            s.write_blocked = true;
            if session_full && !s.in_tx_blocked {
                s.in_tx_blocked = true;
                self.tx_blocked.push_back(id);
            }
        }
        StreamError::Blocked
    }

    fn queue_data(&mut self, id: StreamId, chunk: Bytes) {
        self.tx_queued += chunk.len();
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        s.push_tx(chunk);
        if !s.in_ready {
            s.in_ready = true;
            self.ready.push_back(id);
        }
    }

    /// Copies unread data of `id` into `buf`. `Ok(0)` for a non-empty `buf` is the end of the
    /// stream (the peer's FIN, or the idle timeout); [`StreamError::Blocked`] means nothing is
    /// there yet ([`Event::Readable`] follows); [`StreamError::SessionEnded`] means the session
    /// ended before the peer finished the stream.
    pub fn read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<usize, StreamError> {
        self.readable(id)?;
        if buf.is_empty() {
            return Ok(0);
        }
        let s = self.streams.get_mut(&id.0).expect("checked by readable");
        let before = s.rx_memory();
        let n = s.read_into(buf);
        self.after_read(id, before, n);
        Ok(n)
    }

    /// Takes up to `max` unread bytes of `id` without copying. `Ok(None)` is the end of the
    /// stream; errors as for [`Session::read`].
    pub fn read_chunk(&mut self, id: StreamId, max: usize) -> Result<Option<Bytes>, StreamError> {
        self.readable(id)?;
        let s = self.streams.get_mut(&id.0).expect("checked by readable");
        let before = s.rx_memory();
        match s.read_chunk(max.max(1)) {
            Some(chunk) => {
                self.after_read(id, before, chunk.len());
                Ok(Some(chunk))
            }
            None => Ok(None),
        }
    }

    /// Whether `id` has data or its end to report; errors if neither will ever come.
    fn readable(&self, id: StreamId) -> Result<(), StreamError> {
        let s = self
            .streams
            .get(&id.0)
            .filter(|s| !s.released)
            .ok_or(StreamError::UnknownStream(id))?;
        if s.has_unread() || s.fin_recv || s.expired {
            Ok(())
        } else if self.is_ended() {
            Err(StreamError::SessionEnded)
        } else {
            Err(StreamError::Blocked)
        }
    }

    /// Gives back the memory a read freed (the stream held `before`) and, in version 2, counts
    /// the `n` bytes consumed.
    fn after_read(&mut self, id: StreamId, before: usize, n: usize) {
        let s = self
            .streams
            .get_mut(&id.0)
            .expect("read from a live stream");
        self.rx_held -= before - s.rx_memory();
        if self.config.version == Version::V2 && n > 0 && self.state == State::Open {
            let window = self.config.stream_window;
            if s.note_consumed(n, window) && !s.fin_recv {
                s.upd_pending = true;
                self.schedule_ctrl(id);
            }
        }
    }

    /// Finishes our direction of `id`: FIN goes out after the data already written; reads go
    /// on. Idempotent.
    pub fn shutdown(&mut self, id: StreamId) -> Result<(), StreamError> {
        let ended = self.is_ended();
        let s = self
            .streams
            .get_mut(&id.0)
            .filter(|s| !s.released)
            .ok_or(StreamError::UnknownStream(id))?;
        // Asked before: whatever became of the session since, the answer stands.
        if s.fin_queued {
            return Ok(());
        }
        if ended {
            return Err(StreamError::SessionEnded);
        }
        s.fin_queued = true;
        if s.fin_due() {
            self.schedule_ctrl(id);
        }
        Ok(())
    }

    /// Releases `id`: data already written still goes out, then FIN (unless sent already);
    /// unread data is dropped and later data from the peer is discarded. The id is unknown to
    /// every command afterwards. Releasing an unknown id does nothing.
    pub fn close_stream(&mut self, id: StreamId) {
        let ended = self.is_ended();
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        if s.released {
            return;
        }
        s.released = true;
        self.rx_held -= s.rx_memory();
        s.drop_rx();
        if s.in_accept_queue {
            s.in_accept_queue = false;
            self.accept_queue.retain(|x| *x != id);
        }
        if s.in_tx_blocked {
            s.in_tx_blocked = false;
            self.tx_blocked.retain(|x| *x != id);
        }
        if ended || s.fin_sent {
            self.remove(id);
            return;
        }
        if !s.fin_queued {
            s.fin_queued = true;
            if s.fin_due() {
                self.schedule_ctrl(id);
            }
        }
    }

    /// Closes the session: no new streams or writes; every open stream gets a FIN after its
    /// queued data; once all of it has been handed out by [`Session::poll_transmit`], the
    /// session ends with [`SessionEnd::Closed`] and the transport can be shut down.
    pub fn close(&mut self) {
        if self.state != State::Open {
            return;
        }
        self.state = State::Closing;
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            let s = self.streams.get_mut(&id).expect("listed");
            s.upd_pending = false;
            if !s.fin_queued {
                s.fin_queued = true;
                if s.fin_due() {
                    self.schedule_ctrl(StreamId(id));
                }
            }
        }
        // Streams never accepted have no owner to read them.
        while let Some(id) = self.accept_queue.pop_front() {
            self.close_stream(id);
        }
    }

    // ---------------------------------------------------------------- output

    /// The next frame to write to the transport, or `None` when there is nothing to send.
    /// Order: NOP and control frames (SYN, UPD, due FINs, refusals) first, then one data frame
    /// per stream in turn. A stream's FIN always follows its data.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.now = self.now.max(now);
        if self.is_ended() {
            return None;
        }
        let v = self.config.version;
        if self.nop_pending {
            self.nop_pending = false;
            return Some(frame(v, Cmd::Nop, StreamId(0), Bytes::new()));
        }
        if let Some(id) = self.refusals.pop_front() {
            return Some(frame(v, Cmd::Fin, id, Bytes::new()));
        }
        if let Some(t) = self.poll_ctrl(now) {
            return Some(t);
        }
        if let Some(t) = self.poll_data(now) {
            return Some(t);
        }
        if self.state == State::Closing {
            self.end(SessionEnd::Closed);
        }
        None
    }

    fn poll_ctrl(&mut self, now: Instant) -> Option<Transmit> {
        let v = self.config.version;
        while let Some(&id) = self.ctrl.front() {
            let Some(s) = self.streams.get_mut(&id.0) else {
                self.ctrl.pop_front();
                continue;
            };
            if s.syn_pending {
                s.syn_pending = false;
                if self.config.idle_timeout.is_some() {
                    s.last_activity = Some(now);
                    self.arm_idle(id, now);
                }
                return Some(frame(v, Cmd::Syn, id, Bytes::new()));
            }
            if s.upd_pending {
                s.upd_pending = false;
                let upd = encode_upd(s.consumed(), self.config.stream_window);
                return Some(frame(v, Cmd::Upd, id, Bytes::copy_from_slice(&upd)));
            }
            self.ctrl.pop_front();
            s.in_ctrl = false;
            if s.fin_due() {
                s.fin_sent = true;
                if s.released {
                    self.remove(id);
                } else {
                    self.check_done(id);
                }
                return Some(frame(v, Cmd::Fin, id, Bytes::new()));
            }
        }
        None
    }

    fn poll_data(&mut self, now: Instant) -> Option<Transmit> {
        while let Some(id) = self.ready.pop_front() {
            let Some(s) = self.streams.get_mut(&id.0) else {
                continue;
            };
            s.in_ready = false;
            let Some(payload) = s.pop_tx(self.config.max_frame_size) else {
                continue;
            };
            if s.last_activity.is_some() {
                s.last_activity = Some(now);
            }
            let fin_due = s.fin_due();
            let write_blocked = s.write_blocked;
            if s.queued() > 0 {
                s.in_ready = true;
                self.ready.push_back(id);
            }
            if fin_due {
                self.schedule_ctrl(id);
            }
            self.tx_queued -= payload.len();
            if write_blocked {
                self.wake_writer(id);
            }
            self.wake_session_blocked();
            return Some(frame(self.config.version, Cmd::Psh, id, payload));
        }
        None
    }

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
        match (self.timers.next(), self.idle.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---------------------------------------------------------------- internals

    fn schedule_ctrl(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id.0) {
            if !s.in_ctrl {
                s.in_ctrl = true;
                self.ctrl.push_back(id);
            }
        }
    }

    fn arm_idle(&mut self, id: StreamId, now: Instant) {
        if let Some(idle) = self.config.idle_timeout {
            self.idle.push(now + idle, id.0);
            self.compact_idle();
        }
    }

    /// Drops idle deadlines of streams that are gone once they could dominate the queue.
    fn compact_idle(&mut self) {
        let streams = &self.streams;
        self.idle
            .compact(streams.len(), |id| streams.contains_key(&id));
    }

    /// Reports `Writable` if `id` was refused a write and now has room.
    fn wake_writer(&mut self, id: StreamId) {
        let Ok(room) = self.write_room(id) else {
            return;
        };
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        // Wake at half a queue free, so one event covers many writes.
        if !s.write_blocked {
            return;
        }
        let low_water = s.queued() <= self.config.max_stream_queued / 2;
        if room > 0 && (low_water || self.config.version == Version::V2) {
            s.write_blocked = false;
            self.events.push_back(Event::Writable(id));
        } else if self.tx_queued >= self.config.max_session_queued && !s.in_tx_blocked {
            // Room will come from the session queue draining: wait with the others there.
            s.in_tx_blocked = true;
            self.tx_blocked.push_back(id);
        }
    }

    /// Once half the session's output queue is free, wakes the streams it refused.
    fn wake_session_blocked(&mut self) {
        if self.tx_blocked.is_empty() || self.tx_queued > self.config.max_session_queued / 2 {
            return;
        }
        while let Some(id) = self.tx_blocked.pop_front() {
            if let Some(s) = self.streams.get_mut(&id.0) {
                s.in_tx_blocked = false;
                if s.write_blocked {
                    s.write_blocked = false;
                    self.events.push_back(Event::Writable(id));
                }
            }
        }
    }

    /// Reports `Closed` once both directions of `id` are over.
    fn check_done(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id.0) {
            if s.is_done() && !s.closed_reported && !s.released {
                s.closed_reported = true;
                self.events.push_back(Event::Closed(id));
            }
        }
    }

    /// The idle timeout closes `id`: unread data is dropped, FIN follows queued data, reads
    /// end and writes fail.
    fn expire(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        s.expired = true;
        self.rx_held -= s.rx_memory();
        s.drop_rx();
        if !s.fin_queued {
            s.fin_queued = true;
            if s.fin_due() {
                self.schedule_ctrl(id);
            }
        }
        self.check_done(id);
    }

    fn remove(&mut self, id: StreamId) {
        if let Some(mut s) = self.streams.remove(&id.0) {
            self.rx_held -= s.rx_memory();
            s.drop_rx();
            self.tx_queued -= s.drop_tx();
        }
    }

    fn end(&mut self, reason: SessionEnd) {
        if self.is_ended() {
            return;
        }
        // A peer closing the transport after our close() drained is our orderly end.
        let reason = match (&self.state, reason) {
            (State::Closing, SessionEnd::PeerClosed) if !self.has_queued_output() => {
                SessionEnd::Closed
            }
            (_, r) => r,
        };
        self.state = State::Ended(reason.clone());
        self.timers.stop_all();
        self.idle.clear();
        self.nop_pending = false;
        self.refusals = VecDeque::new();
        self.ctrl = VecDeque::new();
        self.ready = VecDeque::new();
        self.tx_blocked = VecDeque::new();
        self.decoder = Decoder::default();
        self.rx_held -= std::mem::take(&mut self.rx_reserved);
        // Streams waiting in the accept queue stay there: what the peer sent on them before the
        // end can still be accepted and read. Output is dropped with the transport.
        let mut released = Vec::new();
        for (id, s) in self.streams.iter_mut() {
            self.tx_queued -= s.drop_tx();
            if s.released {
                released.push(*id);
            }
        }
        for id in released {
            self.remove(StreamId(id));
        }
        debug_assert_eq!(self.tx_queued, 0);
        self.events.push_back(Event::SessionEnded(reason));
    }

    fn has_queued_output(&self) -> bool {
        !self.refusals.is_empty() || !self.ctrl.is_empty() || !self.ready.is_empty()
    }
}

/// Hashes stream ids for the stream table: a keyed multiply-and-fold, a fraction of the cost
/// of SipHash per frame. The key is random per session, and the fold brings every input bit
/// into the bucket bits, so a peer cannot pick ids that pile into one bucket without knowing
/// the key.
#[derive(Debug, Clone)]
struct IdHasher {
    key: u64,
}

impl IdHasher {
    fn new() -> IdHasher {
        use std::hash::BuildHasher;
        IdHasher {
            key: std::collections::hash_map::RandomState::new().hash_one(0x736d_7578_u64),
        }
    }
}

impl std::hash::BuildHasher for IdHasher {
    type Hasher = IdHash;

    fn build_hasher(&self) -> IdHash {
        IdHash { h: self.key }
    }
}

#[derive(Debug)]
struct IdHash {
    h: u64,
}

impl std::hash::Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u32(u32::from(*b));
        }
    }

    fn write_u32(&mut self, id: u32) {
        let x = (self.h ^ u64::from(id)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.h = x ^ (x >> 29) ^ (x >> 47);
    }

    fn finish(&self) -> u64 {
        let x = self.h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^ (x >> 31)
    }
}

/// A frame header arrived at `now`: the keep-alive timeout counts from here.
fn arm_keep_alive_timeout(timers: &mut TimerTable, config: &Config, now: Instant) {
    if let Some(t) = config.keep_alive_timeout {
        timers.set(Timer::KeepAliveTimeout, now + t);
    }
}

/// Copies written bytes into a buffer of our own, placed at the same offset within a 64-byte
/// line as the source. On CPUs whose `rep movsb` slows down tenfold when the destination sits
/// a few bytes past the source modulo the page size (seen on AMD EPYC with FSRM), this keeps
/// the copy at full speed; elsewhere it costs at most 63 bytes.
fn copy_in(data: &[u8]) -> Bytes {
    const LINE: usize = 64;
    if data.len() < 4096 {
        return Bytes::copy_from_slice(data);
    }
    let mut buf = BytesMut::with_capacity(data.len() + LINE);
    let pad = (data.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize) % LINE;
    buf.resize(pad, 0);
    buf.extend_from_slice(data);
    let mut out = buf.freeze();
    out.advance(pad);
    out
}

fn frame(v: Version, cmd: Cmd, id: StreamId, payload: Bytes) -> Transmit {
    let len = u16::try_from(payload.len()).expect("payloads are at most one frame");
    Transmit {
        header: Header::new(v, cmd, len, id).encode(),
        payload,
    }
}
