//! Input: transport bytes in, frame by frame. A header is decoded once; the session decides
//! whether its frame can be taken now, then routes it (SYN to admission, PSH to a stream's
//! receive queue, FIN, UPD, NOP).

use std::time::Instant;

use bytes::Bytes;

use super::{Event, Session};
use crate::decode::{Body, Complete, ZERO_COPY_MIN};
use crate::error::{ProtocolError, SessionEnd};
use crate::frame::{decode_upd, Header};
use crate::timer::Timer;
use crate::wire::{Cmd, StreamId, Version};

/// What the session should do with a pending header.
enum Step {
    Done,
    /// A limit is reached: keep the header and stop reading input.
    Stall,
}

impl Session {
    /// Takes bytes received from the transport at `now`. Consumes from the front of `input`
    /// what it can: all of it, unless a frame has to wait for room (see
    /// [`Session::wants_input`]); the rest stays in `input` for the next call. After the end,
    /// input is dropped.
    ///
    /// Payload pieces of 16 KiB or more, and at least a quarter of `input`, may be kept as
    /// slices of `input` rather than copied; the receive budget charges each four times its
    /// size, the buffer it may keep alive. That holds when `input` owns its allocation and it
    /// is at most 64 KiB, as the adapters' read buffers are: give larger or shared buffers in
    /// pieces of their own, or the budget understates what they pin.
    pub fn handle_input(&mut self, now: Instant, input: &mut Bytes) {
        let before = input.len();
        self.take_input(now, input);
        self.counters.wire_bytes_received += (before - input.len()) as u64;
    }

    fn take_input(&mut self, now: Instant, input: &mut Bytes) {
        self.now = self.now.max(now);
        if self.version().is_none() {
            self.learn_version(input);
        }
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
                let early = self.may_hand_over_early();
                if let Some(done) = self.decoder.body(input, chunk_len, early) {
                    self.on_body(done, now);
                }
                continue;
            }
            match self.decoder.header(input, self.wire_version()) {
                None => return,
                Some(Err(e)) => self.end(SessionEnd::Protocol(e)),
                Some(Ok(h)) => match self.on_header(h, now) {
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

    /// Whether the frame of header `h` must wait for room before it can be taken.
    pub(super) fn would_stall(&self, h: &Header) -> bool {
        match h.cmd {
            Cmd::Syn => self.syn_stalls(h.stream_id),
            Cmd::Psh if h.len > 0 => match self.streams.get(&h.stream_id.0) {
                Some(s) if s.accepts_data() => self.data_stalls(s, h.len as usize),
                _ => false,
            },
            _ => false,
        }
    }

    /// A frame header arrived at `now`: the keep-alive timeout counts from here.
    fn heard_from_peer(&mut self, now: Instant) {
        if let Some(t) = self.config.keep_alive_timeout() {
            self.timers.set(Timer::KeepAliveTimeout, now + t);
        }
    }

    fn on_header(&mut self, h: Header, now: Instant) -> Step {
        // Before data waits for room, copying what pins read buffers may make it.
        let stalls = self.would_stall(&h)
            && !(h.cmd == Cmd::Psh && self.compact_pins() > 0 && !self.would_stall(&h));
        if stalls {
            if h.cmd == Cmd::Syn {
                self.hold_syn(now);
            } else if let Some(t) = self.config.stalled_stream_timeout() {
                if self.timers.get(Timer::StalledInput).is_none() {
                    self.timers.set(Timer::StalledInput, now + t);
                }
            }
            return Step::Stall;
        }
        self.timers.stop(Timer::StalledInput);
        self.heard_from_peer(now);
        let id = h.stream_id;
        match h.cmd {
            // NOP on a non-zero stream is taken as keep-alive too, as Go does.
            Cmd::Nop => self.decoder.take_header(),
            Cmd::Syn => {
                self.decoder.take_header();
                if id.0 == 0 {
                    self.end(ProtocolError::SynForStreamZero.into());
                } else {
                    self.on_syn(id, now);
                }
            }
            Cmd::Fin => {
                self.decoder.take_header();
                self.on_fin(id);
            }
            Cmd::Upd => self.decoder.begin_body(Body::Upd { id }),
            Cmd::Psh => {
                let len = h.len as usize;
                self.counters.payload_frames_received += 1;
                self.counters.payload_bytes_received += len as u64;
                if self.wire_version() == Version::V2 && len > 0 {
                    // Never stop reading a peer that keeps to our windows: make room instead.
                    self.make_room(id, len);
                }
                let keep = self.may_keep(id, len);
                let body = match self.streams.get(&id.0) {
                    Some(s) if len > 0 && (s.accepts_data() || s.discards_data()) => {
                        let unread = s.unread() + len;
                        if self.wire_version() == Version::V2 && unread > s.recv_window.credit() {
                            self.decoder.take_header();
                            let allowed = s.recv_window.credit();
                            self.end(
                                ProtocolError::WindowExceeded {
                                    stream_id: id,
                                    unread,
                                    allowed,
                                }
                                .into(),
                            );
                            return Step::Done;
                        }
                        if s.discards_data() {
                            self.consume_discarded(id, len);
                            self.decoder.begin_body(Body::Discard { len });
                            return Step::Done;
                        }
                        // Charged now, for the whole frame: its pieces are queued as they
                        // arrive (see `on_piece`).
                        self.rx_reserved = s.rx_cost(len, keep);
                        self.rx_held += self.rx_reserved;
                        Body::Data { id, len, keep }
                    }
                    // Unknown, finished or released stream, or an empty PSH: read and drop,
                    // with no reply.
                    _ => Body::Discard { len },
                };
                self.decoder.begin_body(body);
            }
        }
        Step::Done
    }

    /// The peer's FIN: reads end after the unread data; in version 2 the peer is owed nothing
    /// more on the stream.
    fn on_fin(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        if !s.recv_fin() {
            return;
        }
        if s.is_released() {
            if s.fin_sent() {
                // A tombstone: the peer has finished too.
                self.remove(id);
            }
            return;
        }
        if !s.closed_reported() {
            self.events.push_back(Event::Finished(id));
        }
        self.return_credit(id);
        self.check_done(id);
    }

    fn on_body(&mut self, done: Complete, now: Instant) {
        match done {
            Complete::Discarded => {}
            Complete::Upd { id, payload } => {
                let (consumed, window) = decode_upd(&payload);
                if let Some(s) = self.streams.get_mut(&id.0) {
                    s.apply_upd(consumed, window);
                    if s.send_window() > 0 {
                        s.counters.window_opened(self.epoch.stamp(now));
                    }
                    self.wake_writer(id);
                }
            }
            Complete::Data {
                id,
                data,
                rest,
                pinned,
            } => self.on_piece(id, data, pinned, rest, now),
        }
    }

    /// A piece of a payload for `id` arrived (`pinned`: a slice of the input), with `rest`
    /// bytes of its frame still to come: it is queued for reading at once. The room reserved
    /// for the frame becomes what the piece really took, plus a reservation for the rest.
    fn on_piece(&mut self, id: StreamId, data: Bytes, pinned: bool, rest: usize, now: Instant) {
        self.rx_held -= std::mem::take(&mut self.rx_reserved);
        // The frame's rest, if any, may be kept as its start was allowed to be.
        let keep = self.decoder.keeps();
        let s = self
            .streams
            .get_mut(&id.0)
            .filter(|s| s.accepts_data())
            .expect("a stream that stops taking data stops its frame (stop_receiving)");
        if s.last_activity.is_some() {
            s.last_activity = Some(self.epoch.stamp(now));
        }
        let before = s.rx_memory();
        s.counters.received += data.len() as u64;
        let arrived = data.len();
        let was_empty = s.push_rx(data, pinned);
        // Queueing may also lower the stream's memory: a small payload merged into the last
        // chunk unpins it, when a read left that chunk a small tail of a kept payload.
        self.rx_held = self.rx_held - before + s.rx_memory();
        if rest > 0 {
            self.rx_reserved = s.rx_cost(rest, keep);
            self.rx_held += self.rx_reserved;
        }
        if was_empty {
            self.events.push_back(Event::Readable(id));
        }
        self.note_heavy(id);
        self.note_arrival(id, arrived, now);
    }

    /// Whether the piece of a payload in the input may go to its stream before the rest of the
    /// frame is here. The budget was checked at the frame's header for the frame in one queue
    /// slot; a piece handed over early makes the rest a second push, and two pushes can grow
    /// the queue twice. So the piece goes early only if the budget has room for both;
    /// otherwise it is kept back (copied) until the budget has room, or the frame ends, and
    /// the budget holds whatever the chunking.
    fn may_hand_over_early(&self) -> bool {
        let Some((id, undelivered)) = self.decoder.receiving() else {
            return true;
        };
        let s = self.streams.get(&id.0).expect("a stream receiving a frame");
        let held_before_frame = self.rx_held - self.rx_reserved;
        let cost = s.rx_cost_split(undelivered, self.decoder.keeps());
        held_before_frame + cost <= self.config.max_session_unread()
    }

    /// Whether the frame of `len` bytes for `id` may keep its pieces without copying: it is
    /// big enough, and the budget has room for the read buffers they would pin.
    fn may_keep(&self, id: StreamId, len: usize) -> bool {
        len >= ZERO_COPY_MIN
            && self.streams.get(&id.0).is_some_and(|s| {
                self.rx_held + s.rx_cost(len, true) <= self.config.max_session_unread()
            })
    }

    /// `id` takes no more data (released, or expired): the rest of a frame arriving for it is
    /// read and dropped, and the room reserved for it is given back.
    pub(super) fn stop_receiving(&mut self, id: StreamId) {
        let Some((_, rest)) = self.decoder.receiving().filter(|(r, _)| *r == id) else {
            return;
        };
        self.decoder.discard_rest();
        self.rx_held -= std::mem::take(&mut self.rx_reserved);
        // Discarded, but counted as read if the stream discards what arrives.
        self.consume_discarded(id, rest);
    }
}
