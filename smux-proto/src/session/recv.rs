//! Receiving: reads by the application, the receive budget, and (version 2) the windows we
//! advertise.
//!
//! Version 1 has no windows: unread data is limited per stream and per session, and a frame
//! that would go above a limit waits, with the input behind it, until the application reads.
//!
//! Version 2 never stops reading a peer that keeps to our windows: a peer whose UPDs we do not
//! read can deadlock with us (DESIGN.md). The windows are granted out of their own budget,
//! `max_session_window` ([`FlowControl`](crate::flow::FlowControl) keeps the accounts); a
//! stream whose window could not grow waits in `credit_wait` for that budget to free up,
//! first come first served. What is held is bounded apart from the windows, by
//! `max_session_unread` (`reset.rs`).

use bytes::Bytes;

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
        let grant_due = self.flow.on_read(&mut s.recv_window, n);
        if self.state == State::Open && grant_due {
            self.flow.tune(&mut s.recv_window, self.now, &self.config);
            self.grow_window(id);
        }
        self.serve_credit_waiters();
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
        let (received, unread) = (s.counters.received, s.unread());
        self.flow
            .note_arrival(&mut s.recv_window, n, received, unread, now);
    }

    /// Whether `len` more unread bytes on `s` must wait. Only in version 1: the session budget
    /// is full, or the stream's share is.
    pub(super) fn data_stalls(&self, s: &Stream, len: usize) -> bool {
        self.config.version() == Version::V1
            && (s.unread() + len > self.config.max_stream_unread()
                || self.rx_held + s.rx_cost(len, false) > self.config.max_session_unread())
    }

    /// Version 2: moves `id`'s edge towards a window past what was read, as far as the budget
    /// allows ([`FlowControl::grow`](crate::flow::FlowControl::grow)), and queues the UPD that
    /// says so. A stream that got less than it wanted waits for the budget. Returns whether it
    /// got all it wanted.
    fn grow_window(&mut self, id: StreamId) -> bool {
        let s = self.streams.get_mut(&id.0).expect("a live stream");
        let held = (s.counters.received, s.unread());
        let grant = self
            .flow
            .grow(&mut s.recv_window, held, self.now, &self.config);
        if grant.moved {
            s.set_upd_pending(true);
            self.sched.ctrl.push(id, s);
        }
        if !grant.complete {
            self.credit_wait.push(id, s);
        }
        grant.complete
    }

    /// Version 2: once the budget has room again, grows the windows of the streams waiting
    /// for it, oldest first.
    pub(super) fn serve_credit_waiters(&mut self) {
        while self.flow.has_room_for_waiters(&self.config) {
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
        self.flow.repay(s.take_credit());
        self.credit_wait.leave(s);
        self.credit_wait.tidy(&self.streams);
        if self.config.version() == Version::V2 {
            self.serve_credit_waiters();
        }
    }
}
