//! Ending things: half-close (`shutdown`), releasing a stream, the idle timeout's expiry,
//! closing the session in order, and the session's end.

use super::{Event, Session, State};
use crate::decode::Decoder;
use crate::error::{SessionEnd, StreamError};
use crate::wire::StreamId;

impl Session {
    /// Finishes our direction of `id`: FIN goes out after the data already written; reads go
    /// on. Idempotent.
    pub fn shutdown(&mut self, id: StreamId) -> Result<(), StreamError> {
        let ended = self.is_ended();
        let s = self.command_target(id)?;
        // Asked before: whatever became of the session since, the answer stands.
        if s.fin_queued() {
            return Ok(());
        }
        if ended {
            return Err(StreamError::SessionEnded);
        }
        self.queue_fin(id);
        Ok(())
    }

    /// Releases `id`: data already written still goes out, then FIN (unless sent already);
    /// unread data is dropped and later data from the peer is discarded. The id is unknown to
    /// every command afterwards. Releasing an unknown id does nothing.
    pub fn close_stream(&mut self, id: StreamId) {
        let ended = self.is_ended();
        if self.streams.get(&id.0).is_none_or(|s| s.is_released()) {
            return;
        }
        self.discard_reads(id);
        let s = self.streams.get_mut(&id.0).expect("checked above");
        s.release();
        self.accept_queue.leave(s);
        self.sched.tx_blocked.leave(s);
        let fin_sent = s.fin_sent();
        self.accept_queue.tidy(&self.streams);
        self.sched.tx_blocked.tidy(&self.streams);
        if ended || (fin_sent && !self.keeps_tombstone(id)) {
            self.remove(id);
            return;
        }
        self.return_credit(id);
        self.queue_fin(id);
    }

    /// Drains the session: from now on [`Session::open`] fails with [`OpenError::Draining`](crate::OpenError::Draining)
    /// and a peer SYN gets a FIN (smux has no GOAWAY: the peer reads a clean end of stream),
    /// while open streams go on in both directions. Once [`Session::is_drained`], close the
    /// session with [`Session::close`].
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether [`Session::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Whether every stream is over in both directions (both FINs, or the idle timeout) and
    /// holds no unread data: after [`Session::drain`], nothing is left to wait for. A stream
    /// the application released whose FIN is out is over for us (what the peer still sends
    /// on it is dropped). O(streams).
    pub fn is_drained(&self) -> bool {
        self.streams
            .values()
            .all(|s| (s.is_released() && s.fin_sent()) || (s.is_done() && s.unread() == 0))
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
            s.set_upd_pending(false);
            self.queue_fin(StreamId(id));
        }
        // Streams never accepted have no owner to read them.
        while let Some(id) = self.accept_queue.pop(&mut self.streams) {
            self.close_stream(id);
        }
    }

    /// Asks for FIN on `id` after its queued data, unless asked before.
    pub(super) fn queue_fin(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        if s.queue_fin() && s.fin_due() {
            self.sched.ctrl.push(id, s);
        }
    }

    /// The idle timeout (or, in version 1, a reset) closes `id`: unread data is dropped, FIN
    /// follows queued data, reads end and writes fail. What the peer still sends is discarded
    /// (in version 2, counted as read) until its FIN.
    pub(super) fn expire(&mut self, id: StreamId) {
        self.discard_reads(id);
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        s.expire();
        let gone = s.is_released() && s.fin_sent();
        self.return_credit(id);
        if gone {
            self.remove(id);
            return;
        }
        self.queue_fin(id);
        self.check_done(id);
    }

    /// Ends the session for `reason`, unless it has ended already.
    pub(super) fn end(&mut self, reason: SessionEnd) {
        if self.is_ended() {
            return;
        }
        // A peer closing the transport after our close() drained is our orderly end.
        let reason = match (&self.state, reason) {
            (State::Closing, SessionEnd::PeerClosed) if !self.sched.has_output() => {
                SessionEnd::Closed
            }
            (_, r) => r,
        };
        self.state = State::Ended(reason.clone());
        self.timers.stop_all();
        self.idle.clear();
        self.sched.clear(&mut self.streams);
        self.credit_wait.clear(&mut self.streams);
        self.decoder = Decoder::default();
        self.stalled_writers.clear();
        self.heavy = Vec::new();
        self.rx_held -= std::mem::take(&mut self.rx_reserved);
        // Streams waiting in the accept queue stay there: what the peer sent on them before the
        // end can still be accepted and read. Output is dropped with the transport.
        let mut released = Vec::new();
        for (id, s) in self.streams.iter_mut() {
            self.tx_queued -= s.drop_tx();
            if s.is_released() {
                released.push(StreamId(*id));
            }
        }
        for id in released {
            self.remove(id);
        }
        debug_assert_eq!(self.tx_queued, 0);
        self.events.push_back(Event::SessionEnded(reason));
    }
}
