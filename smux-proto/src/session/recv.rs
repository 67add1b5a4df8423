//! Receiving: reads by the application, the receive budget, and (version 2) the windows we
//! advertise.
//!
//! Version 1 has no windows: unread data is limited per stream and per session, and a frame
//! that would go above a limit waits, with the input behind it, until the application reads.
//!
//! Version 2 never stops reading a peer that keeps to our windows: a peer whose UPDs we do not
//! read can deadlock with us (DESIGN.md). Each stream has a credit, what the peer may still
//! send on it (the edge we allowed, minus what the application has read); `credit_owed` is
//! their sum. A fresh stream starts with the protocol's initial window, which we cannot
//! refuse. A window grows (an UPD moves the edge right) only while `credit_owed` stays within
//! `max_session_window`, except that every stream may have [`MIN_CREDIT`] so that idle streams
//! holding open windows cannot starve the rest; a stream whose window could not grow waits in
//! `credit_wait` for that budget to free up, first come first served. The edge never moves
//! left. What is held is bounded apart from the windows, by `max_session_unread` (`reset.rs`).

use bytes::Bytes;

/// Version 2: the window every stream may have whatever the window budget says (one full frame
/// and a little more), so that open but idle windows cannot starve the other streams.
pub(crate) const MIN_CREDIT: usize = 64 * 1024;

use super::{Session, State};
use crate::error::StreamError;
use crate::stream::Stream;
use crate::wire::{StreamId, Version};

impl Session {
    /// Copies unread data of `id` into `buf`. `Ok(0)` for a non-empty `buf` is the end of the
    /// stream (the peer's FIN, or the idle timeout); [`StreamError::Blocked`] means nothing is
    /// there yet ([`Event::Readable`](crate::Event) follows); [`StreamError::SessionEnded`]
    /// means the session ended before the peer finished the stream.
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
    /// stream; errors as for [`Session::read`]. A `max` of 0 takes nothing: like a read into
    /// an empty buffer, it returns `Ok(Some(empty))` at once when there is data or an end to
    /// report, and the same errors otherwise.
    pub fn read_chunk(&mut self, id: StreamId, max: usize) -> Result<Option<Bytes>, StreamError> {
        self.readable(id)?;
        if max == 0 {
            return Ok(Some(Bytes::new()));
        }
        let s = self.streams.get_mut(&id.0).expect("checked by readable");
        let before = s.rx_memory();
        match s.read_chunk(max) {
            Some(chunk) => {
                self.after_read(id, before, chunk.len());
                Ok(Some(chunk))
            }
            None => Ok(None),
        }
    }

    /// The application stops reading `id` (its read half is gone) but may go on writing: its
    /// unread data is dropped, and data that arrives later is dropped as it comes. Both count
    /// as read, so in version 2 the peer's window keeps moving and a writer on the other side
    /// is never stuck. Idempotent.
    pub fn stop_reading(&mut self, id: StreamId) -> Result<(), StreamError> {
        self.command_target(id)?;
        self.discard_reads(id);
        Ok(())
    }

    /// Whether `id` has data or its end to report; errors if neither will ever come.
    fn readable(&self, id: StreamId) -> Result<(), StreamError> {
        let s = self.command_target(id)?;
        if let Some(reason) = s.reset_reason() {
            return Err(StreamError::Reset(reason));
        }
        if s.has_unread() || s.fin_recv() || s.is_expired() {
            Ok(())
        } else if self.is_ended() {
            Err(StreamError::SessionEnded)
        } else {
            Err(StreamError::Blocked)
        }
    }

    /// Gives back the memory a read freed (the stream held `before`) and, in version 2, counts
    /// the `n` bytes consumed and lets the window grow.
    fn after_read(&mut self, id: StreamId, before: usize, n: usize) {
        let s = self
            .streams
            .get_mut(&id.0)
            .expect("read from a live stream");
        self.rx_held -= before - s.rx_memory();
        if self.config.version() == Version::V1 || n == 0 {
            return;
        }
        if s.fin_recv() {
            // Its credit was returned with the FIN.
            return;
        }
        s.note_consumed(n);
        self.credit_owed -= n;
        if self.state == State::Open && s.grant_due(s.recv_window()) {
            self.tune_window(id);
            self.grow_window(id);
        }
        self.serve_credit_waiters();
    }

    /// Version 2: where a fresh stream's window starts: the configured window or, with
    /// tuning, the largest one a stream of this session grew to.
    pub(super) fn starting_window(&self) -> usize {
        let configured = self.config.stream_window() as usize;
        if self.config.window_tuning() {
            configured.max(self.tuned_window)
        } else {
            configured
        }
    }

    /// Version 2, window tuning: a grant is due on `id`. If the window held the peer back
    /// since the last grant while our reader kept up (half a window read within one and a
    /// half round trips), the window doubles, up to `max_stream_window`. Both tests use the
    /// round trip as recently measured: a window-limited stream on a path that queues
    /// delivers about a window per loaded round trip, and less per shortest one.
    fn tune_window(&mut self, id: StreamId) {
        if !self.config.window_tuning() {
            return;
        }
        let Some(rtt) = self.loaded_round_trip else {
            return;
        };
        let cap = self.config.max_stream_window() as usize;
        let s = self.streams.get_mut(&id.0).expect("a live stream");
        // No measurements yet: no grant was made, so the reader cannot have kept up with one.
        let Some(t) = s.tuning.state() else {
            return;
        };
        let kept_up = t
            .last_grant
            .is_some_and(|t| self.now.saturating_duration_since(t) <= rtt * 3 / 2);
        if t.held_back && kept_up && s.recv_window() < cap {
            s.set_recv_window((2 * s.recv_window()).min(cap));
            self.tuned_window = self.tuned_window.max(s.recv_window());
        }
    }

    /// Version 2, window tuning: `n` bytes arrived on `id` (already counted in `received`).
    /// Notes whether the window held the peer back, and takes a round trip from an UPD to the
    /// first data beyond the edge it moved.
    pub(super) fn note_arrival(&mut self, id: StreamId, n: usize, now: std::time::Instant) {
        if self.wire_version() != Version::V2 || !self.config.window_tuning() {
            return;
        }
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        let left = s.credit().saturating_sub(s.unread());
        let received = s.counters.received;
        let window = s.recv_window();
        let t = s.tuning.state_mut();
        if left <= window / 8 {
            t.held_back = true;
        }
        if let Some(rtt) = self.loaded_round_trip {
            match t.rate_since {
                Some(since) if now.saturating_duration_since(since) < rtt => {}
                Some(_) if t.rate_bytes * 2 >= window => {
                    t.held_back = true;
                    (t.rate_since, t.rate_bytes) = (Some(now), 0);
                }
                _ => (t.rate_since, t.rate_bytes) = (Some(now), 0),
            }
            t.rate_bytes += n;
        }
        let sample = match t.probe {
            Some((sent, edge)) if received > edge => {
                t.probe = None;
                now.saturating_duration_since(sent)
            }
            _ => return,
        };
        self.round_trip = Some(self.round_trip.map_or(sample, |r| r.min(sample)));
        self.loaded_round_trip = Some(
            self.loaded_round_trip
                .map_or(sample, |r| (r * 7 + sample) / 8),
        );
    }

    /// Whether `len` more unread bytes on `s` must wait. Only in version 1: the session budget
    /// is full, or the stream's share is.
    pub(super) fn data_stalls(&self, s: &Stream, len: usize) -> bool {
        self.config.version() == Version::V1
            && (s.unread() + len > self.config.max_stream_unread()
                || self.rx_held + s.rx_cost(len, false) > self.config.max_session_unread())
    }

    /// Version 2: moves `id`'s edge towards `stream_window` past what was read, as far as the
    /// budget allows, and queues the UPD that says so. Every stream may have [`MIN_CREDIT`]
    /// whatever the budget says, so that streams whose windows are open but idle cannot starve
    /// the others. A stream that got less than it wanted waits for the budget. Returns whether
    /// it got all it wanted.
    fn grow_window(&mut self, id: StreamId) -> bool {
        let room = self
            .config
            .max_session_window()
            .saturating_sub(self.credit_owed);
        let s = self.streams.get_mut(&id.0).expect("a live stream");
        let window = s.recv_window();
        let wanted = window.saturating_sub(s.credit());
        let floor = MIN_CREDIT.min(window).saturating_sub(s.credit());
        let extra = wanted.min(room.max(floor));
        // Growing by a sliver costs an UPD for little: wait for room worth sending.
        let worth = extra == wanted || extra >= (window / 4).min(MIN_CREDIT);
        if extra > 0 && worth {
            // Only the tuning reads what is noted here: without it, nothing is.
            if self.config.window_tuning() {
                // The edge this grant moves from, in bytes received: the first data beyond
                // it, after the UPD goes out, comes a round trip later or more (later if the
                // peer had not reached the old edge yet: the session keeps the shortest).
                let edge = s.counters.received - s.unread() as u64 + s.credit() as u64;
                let t = s.tuning.state_mut();
                if t.probe.is_none() && t.probe_edge.is_none() {
                    t.probe_edge = Some(edge);
                }
                t.held_back = false;
                t.last_grant = Some(self.now);
            }
            s.grant(extra);
            self.credit_owed += extra;
            s.set_upd_pending(true);
            self.sched.ctrl.push(id, s);
        }
        let done = extra == wanted && worth;
        if !done {
            self.credit_wait.push(id, s);
        }
        done
    }

    /// Version 2: once the budget has room again, grows the windows of the streams waiting
    /// for it, oldest first.
    pub(super) fn serve_credit_waiters(&mut self) {
        let quarter = self.config.stream_window() as usize / 4;
        while self.credit_owed + quarter <= self.config.max_session_window() {
            let Some(id) = self.credit_wait.pop(&mut self.streams) else {
                return;
            };
            if !self.grow_window(id) {
                return;
            }
        }
    }

    /// Version 2: `id` takes no more data (the peer's FIN, release, expiry): the credit it
    /// held goes back to the budget.
    pub(super) fn return_credit(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        self.credit_owed -= s.take_credit();
        self.credit_wait.leave(s);
        self.credit_wait.tidy(&self.streams);
        if self.config.version() == Version::V2 {
            self.serve_credit_waiters();
        }
    }
}
