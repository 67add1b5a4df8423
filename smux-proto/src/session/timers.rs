//! Timers: the keep-alive NOP and timeout, the accept-stall timeout, and per-stream idle
//! timeouts (a deadline queue, so no tick scans every stream).

use std::time::Instant;

use super::{Session, SessionEnd};
use crate::error::ResetReason;
use crate::timer::Timer;
use crate::wire::Cmd;
use crate::wire::StreamId;

impl Session {
    /// Runs the timers due at `now`: keep-alive NOP, keep-alive timeout, the accept-stall
    /// timeout, the stalled-stream timeouts, stream idle timeouts.
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
            if let Some(t) = self.config.keep_alive_timeout() {
                self.timers.set(Timer::KeepAliveTimeout, now + t);
            }
        }
        if self.timers.is_due(Timer::KeepAlive, now) {
            self.sched.queue_nop();
            if let Some(i) = self.config.keep_alive_interval() {
                self.timers.set(Timer::KeepAlive, now + i);
            }
        }
        if self.timers.is_due(Timer::AcceptStall, now) {
            self.on_accept_stall();
        }
        if self.timers.is_due(Timer::StalledInput, now) {
            self.on_stalled_input();
        }
        self.reset_stalled_writers(now);
        if let Some(idle) = self.config.idle_timeout() {
            while let Some(id) = self.idle.pop_due(now) {
                let Some(s) = self.streams.get(&id) else {
                    continue;
                };
                let last = s.last_activity.map(|t| self.epoch.instant(t));
                let (Some(last), false) = (last, s.is_expired()) else {
                    continue;
                };
                // Data waiting on either side, or arriving, is not idleness: the application
                // or the transport is behind, and expiring would lose it.
                let stalled_here = self
                    .decoder
                    .pending_header()
                    .is_some_and(|h| h.stream_id.0 == id);
                let arriving = self.decoder.receiving().is_some_and(|(r, _)| r.0 == id);
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

    /// Version 1, input has waited for readers for the stalled-stream timeout: resets the
    /// stream whose frame is at its own limit, or else the one holding the most unread data,
    /// so that input goes on.
    fn on_stalled_input(&mut self) {
        let Some(h) = self.decoder.pending_header() else {
            return;
        };
        if h.cmd != Cmd::Psh || !self.would_stall(&h) {
            return;
        }
        let own_limit = self
            .streams
            .get(&h.stream_id.0)
            .is_some_and(|s| s.unread() + usize::from(h.len) > self.config.max_stream_unread());
        let victim = if own_limit {
            Some(h.stream_id.0)
        } else {
            self.streams
                .iter()
                .filter(|(_, s)| s.has_unread())
                .max_by_key(|(_, s)| s.unread())
                .map(|(&id, _)| id)
        };
        if let Some(id) = victim {
            self.reset_stream(StreamId(id), ResetReason::StalledReader);
        }
    }

    /// Arms the idle timeout of `id` from `now`.
    pub(super) fn arm_idle(&mut self, id: StreamId, now: Instant) {
        if let Some(idle) = self.config.idle_timeout() {
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
}
