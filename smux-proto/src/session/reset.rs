//! Streams nobody reads any more, and resets.
//!
//! A stream nobody will read (its read half or the whole stream was dropped, or it was reset)
//! discards what arrives. In version 2 the discarded data still counts as read, and the
//! window keeps moving until the peer's FIN: a peer's writer must never wait for a window
//! that no reader will open (Go drops such data without an UPD, which strands the writer).
//! Such a stream holds no data and owes nothing to the receive budget; a released one stays in
//! the table as a tombstone until the peer's FIN or the end of the session.
//!
//! A reset ends a stream that holds the session up ([`ResetReason`]): in version 2 the stream
//! holding the most unread data when a frame would take the memory held past the budget, or
//! a writer that waited for the peer's window for the stalled-stream timeout; in version 1
//! the reader that input waited for (`timers.rs`).

use std::time::Instant;

use super::{Event, Session, State};
use crate::error::ResetReason;
use crate::wire::{StreamId, Version};

/// Version 2: a stream holding at least this much unread data is a candidate to reset when the
/// budget is full. Fewer than `max_session_unread / HEAVY` streams can hold this much at once,
/// so finding the heaviest costs at most that many looks.
const HEAVY: usize = 16 * 1024;

impl Session {
    /// Nobody will read `id` again: its unread data is dropped and counted as read, and data
    /// that arrives later is dropped as it comes. In version 2 its credit leaves the budget
    /// (it holds no data) and its window keeps moving.
    pub(super) fn discard_reads(&mut self, id: StreamId) {
        let v2 = self.wire_version() == Version::V2;
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        if s.reads_dropped() {
            return;
        }
        // Whether its credit is owed in the budget (it is until the peer's FIN).
        let owed = v2 && !s.fin_recv();
        let (freed, unread) = s.drop_reads();
        s.recv_window.forget_tuning();
        self.rx_held -= freed;
        if owed {
            self.flow.repay(s.recv_window.credit());
            s.recv_window.note_consumed(unread);
            self.credit_wait.leave(s);
            self.credit_wait.tidy(&self.streams);
        }
        // The rest of a frame arriving for it is dropped (and counted) too.
        self.stop_receiving(id);
        self.consume_discarded(id, 0);
        if owed {
            self.serve_credit_waiters();
        }
    }

    /// `n` more bytes arrived for `id`, which discards them: in version 2 they count as read,
    /// and the window moves as it would for a reader that keeps up.
    pub(super) fn consume_discarded(&mut self, id: StreamId, n: usize) {
        let v2 = self.wire_version() == Version::V2;
        let open = self.state == State::Open;
        let Some(s) = self.streams.get_mut(&id.0).filter(|s| s.discards_data()) else {
            return;
        };
        s.counters.received += n as u64;
        if !v2 {
            return;
        }
        s.recv_window.note_consumed(n);
        if open && s.recv_window.grant_due() {
            // It holds nothing, so its window costs the budget nothing.
            s.recv_window.top_up();
            s.set_upd_pending(true);
            self.sched.ctrl.push(id, s);
        }
    }

    /// Resets `id`: its unread data is dropped, FIN goes out after what it has queued, reads
    /// and writes fail with `reason`. In version 2 what the peer still sends is discarded (and
    /// counted as read) until its FIN; version 1 has no windows and stops taking data at once.
    pub(super) fn reset_stream(&mut self, id: StreamId, reason: ResetReason) {
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        if s.reset_reason().is_some() || s.is_released() {
            return;
        }
        s.mark_reset(reason);
        self.counters.streams_reset += 1;
        self.events.push_back(Event::Reset { id, reason });
        match self.wire_version() {
            Version::V1 => self.expire(id),
            Version::V2 => {
                self.discard_reads(id);
                self.queue_fin(id);
                self.check_done(id);
            }
        }
    }

    /// Whether the released stream `id` stays in the table once its FIN is out: in version 2
    /// until the peer's FIN, so that its window keeps moving for the peer's writer.
    pub(super) fn keeps_tombstone(&self, id: StreamId) -> bool {
        self.wire_version() == Version::V2
            && self.streams.get(&id.0).is_some_and(|s| s.discards_data())
    }

    /// Data arrived for `id`: once it pins a read buffer, it is a candidate for
    /// [`Session::compact_pins`], and in version 2, once it holds [`HEAVY`] or more, for a
    /// reset.
    pub(super) fn note_heavy(&mut self, id: StreamId) {
        let v2 = self.wire_version() == Version::V2;
        if let Some(s) = self.streams.get_mut(&id.0) {
            if !s.is_heavy() && (s.pinned() > 0 || v2 && s.unread() >= HEAVY) {
                s.set_heavy(true);
                self.heavy.push(id);
            }
        }
    }

    /// Version 2: a frame of `len` bytes for `id` would take the memory held past the budget.
    /// Copies what pins read buffers, then resets the stream holding the most unread data
    /// until it fits, or `id` itself when no other stream holds more (its frame is then
    /// discarded). Input never stops.
    pub(super) fn make_room(&mut self, id: StreamId, len: usize) {
        let budget = self.config.max_session_unread();
        let mut compacted = false;
        loop {
            let Some(s) = self.streams.get(&id.0).filter(|s| s.accepts_data()) else {
                return;
            };
            if self.rx_held + s.rx_cost(len, false) <= budget {
                return;
            }
            let own = s.unread();
            if !compacted {
                // Copying what pins read buffers may be enough.
                compacted = true;
                if self.compact_pins() > 0 {
                    continue;
                }
            }
            let victim = match self.heaviest() {
                Some((v, unread)) if unread > own => v,
                _ => id,
            };
            self.reset_stream(victim, ResetReason::ReceiveBudget);
        }
    }

    /// The stream that holds the most unread data among those holding [`HEAVY`] or more, and
    /// how much; forgets the entries that no longer hold that much nor pin a read buffer.
    fn heaviest(&mut self) -> Option<(StreamId, usize)> {
        let streams = &mut self.streams;
        let mut best: Option<(StreamId, usize)> = None;
        self.heavy.retain(|id| {
            let Some(s) = streams.get_mut(&id.0) else {
                return false;
            };
            let candidate = s.accepts_data() && s.unread() >= HEAVY;
            if !candidate && s.pinned() == 0 {
                s.set_heavy(false);
                return false;
            }
            if candidate && best.is_none_or(|(_, most)| s.unread() > most) {
                best = Some((*id, s.unread()));
            }
            true
        });
        if self.heavy.capacity() > 64 && self.heavy.len() * 4 < self.heavy.capacity() {
            self.heavy.shrink_to(self.heavy.len() * 2);
        }
        best
    }

    /// Copies what the streams hold in slices of read buffers into allocations of their own,
    /// so that those buffers can go; returns the memory freed (by the budget's count, which
    /// charges a slice the whole buffer it may pin). Every stream that pins a buffer is among
    /// the candidates of `heavy`. Each byte is copied at most once, and only when the budget
    /// is full.
    pub(super) fn compact_pins(&mut self) -> usize {
        let mut freed = 0;
        for id in &self.heavy {
            if let Some(s) = self.streams.get_mut(&id.0) {
                freed += s.unpin();
            }
        }
        self.rx_held -= freed;
        freed
    }

    /// Version 2 with the stalled-stream timeout: `id`'s writer was refused for want of the
    /// peer's window; it is reset if the window is still shut a timeout later. One deadline
    /// per stream at a time.
    pub(super) fn watch_stalled_writer(&mut self, id: StreamId, now: Instant) {
        let Some(t) = self.config.stalled_stream_timeout() else {
            return;
        };
        let Some(s) = self.streams.get_mut(&id.0).filter(|s| !s.stall_watched()) else {
            return;
        };
        s.set_stall_watched(true);
        self.stalled_writers.push(now + t, id.0);
        let streams = &self.streams;
        self.stalled_writers
            .compact(streams.len(), |id| streams.contains_key(&id));
    }

    /// Resets the writers whose wait for the peer's window has lasted the stalled-stream
    /// timeout by `now`.
    pub(super) fn reset_stalled_writers(&mut self, now: Instant) {
        let Some(timeout) = self.config.stalled_stream_timeout() else {
            return;
        };
        while let Some(id) = self.stalled_writers.pop_due(now) {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            let waiting = s.write_blocked() && s.reset_reason().is_none() && !s.is_released();
            let shut = s.counters.window_shut_since.filter(|_| waiting);
            match shut.map(|t| self.epoch.instant(t)) {
                Some(since) if since + timeout <= now => {
                    s.set_stall_watched(false);
                    self.reset_stream(StreamId(id), ResetReason::StalledWriter);
                }
                // Shut again since the deadline was set: the wait counts from then.
                Some(since) => self.stalled_writers.push(since + timeout, id),
                None => s.set_stall_watched(false),
            }
        }
    }
}
