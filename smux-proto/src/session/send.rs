//! Sending: writes by the application, the send budget, writers waiting for room, and the
//! frames handed out in the scheduler's order.

use std::time::Instant;

use bytes::Bytes;

use super::{Event, Session, State, Transmit};
use crate::error::{SessionEnd, StreamError};
use crate::frame::encode_upd;
use crate::scheduler::Next;
use crate::stream::QueuedAhead;
use crate::wire::{Cmd, StreamId, Version};

impl Session {
    /// Queues bytes from `data` for sending and returns how many were taken: as many as the
    /// stream's and the session's output limits and (version 2) the peer's window allow, so
    /// nothing taken ever waits on the peer's window. [`StreamError::Blocked`] when none fit;
    /// [`Event::Writable`] follows when room appears. The bytes are copied in frame-sized
    /// pieces (small writes join the piece before), so memory held for unsent data stays
    /// close to what is queued.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let n = self.write_room_for(id, data.len())?;
        if n == 0 {
            return Ok(0);
        }
        let frame = self.config.max_frame_size();
        let s = self.streams.get_mut(&id.0).expect("checked by write_room");
        s.push_tx_copy(&data[..n], frame);
        self.after_queue(id, n);
        Ok(n)
    }

    /// Like [`Session::write`], taking the front of `data` without copying; what was taken is
    /// split off `data` (and shares its allocation until sent).
    pub fn write_bytes(&mut self, id: StreamId, data: &mut Bytes) -> Result<usize, StreamError> {
        let n = self.write_room_for(id, data.len())?;
        if n == 0 {
            return Ok(0);
        }
        let s = self.streams.get_mut(&id.0).expect("checked by write_room");
        s.push_tx(data.split_to(n));
        self.after_queue(id, n);
        Ok(n)
    }

    /// How many bytes of `id` may be sent now as PSH frames written by the caller straight to
    /// the transport, bypassing the stream's queue: the peer's window (version 2), but 0 while
    /// anything must go out first — the session's own output (control frames, other streams'
    /// data) or this stream's SYN or queued data. Errors as [`Session::write`] (but never
    /// `Blocked`). The caller encodes the headers ([`crate::Header`]), writes the frames, and
    /// reports what it wrote (or must still write, in order, before any other frame) with
    /// [`Session::commit_direct`].
    pub fn direct_room(&self, id: StreamId) -> Result<usize, StreamError> {
        let s = self.command_target(id)?;
        if self.is_ended() {
            return Err(StreamError::SessionEnded);
        }
        if let Some(reason) = s.reset_reason() {
            return Err(StreamError::Reset(reason));
        }
        if s.fin_queued() || s.is_expired() {
            return Err(StreamError::Finished);
        }
        if self.version().is_none() || self.has_output() || s.syn_pending() || s.queued() > 0 {
            return Ok(0);
        }
        Ok(match self.wire_version() {
            Version::V1 => usize::MAX,
            Version::V2 => s.send_window(),
        })
    }

    /// `n` bytes of `id` went (or are committed to go, before any other frame) to the
    /// transport as PSH frames, at most [`Session::direct_room`] of them: they count against
    /// the peer's window and as the stream's activity.
    pub fn commit_direct(&mut self, id: StreamId, n: usize, now: Instant) {
        self.now = self.now.max(now);
        if n == 0 {
            return;
        }
        let frames = n.div_ceil(self.config.max_frame_size());
        self.counters.payload_bytes_sent += n as u64;
        self.counters.payload_frames_sent += frames as u64;
        self.counters.wire_bytes_sent += (n + frames * crate::frame::HEADER_LEN) as u64;
        if let Some(s) = self.streams.get_mut(&id.0) {
            s.counters.sent += n as u64;
            s.note_sent_direct(n);
            if s.last_activity.is_some() {
                s.last_activity = Some(self.epoch.stamp(now));
            }
        }
    }

    /// How many of `len` bytes `id` can queue now; `Blocked` (and a `Writable` owed) when none.
    fn write_room_for(&mut self, id: StreamId, len: usize) -> Result<usize, StreamError> {
        let room = self.write_room(id)?;
        if len == 0 {
            return Ok(0);
        }
        if room == 0 {
            return Err(self.block_writer(id));
        }
        Ok(room.min(len))
    }

    fn write_room(&self, id: StreamId) -> Result<usize, StreamError> {
        let s = self.command_target(id)?;
        if self.is_ended() {
            return Err(StreamError::SessionEnded);
        }
        if let Some(reason) = s.reset_reason() {
            return Err(StreamError::Reset(reason));
        }
        if s.fin_queued() || s.is_expired() {
            return Err(StreamError::Finished);
        }
        let c = &self.config;
        let mut room = c
            .max_stream_queued()
            .saturating_sub(s.queued())
            .min(c.max_session_queued().saturating_sub(self.tx_queued));
        // Before an auto-version session knows its version, a peer speaking version 2 must
        // not be sent more than its initial window.
        if c.version() == Version::V2 || !self.version_known {
            room = room.min(s.send_window());
        }
        Ok(room)
    }

    fn block_writer(&mut self, id: StreamId) -> StreamError {
        let session_full = self.tx_queued >= self.config.max_session_queued();
        let v2 = self.config.version() == Version::V2;
        let mut window_shut = false;
        if let Some(s) = self.streams.get_mut(&id.0) {
            window_shut = v2 && s.send_window() == 0;
            if window_shut && s.counters.window_shut_since.is_none() {
                s.counters.window_shut_since = Some(self.epoch.stamp(self.now));
            }
            s.set_write_blocked(true);
            if session_full {
                self.sched.tx_blocked.push(id, s);
            }
        }
        if window_shut {
            self.watch_stalled_writer(id, self.now);
        }
        StreamError::Blocked
    }

    /// `n` bytes were queued on `id`: it is ready to send.
    fn after_queue(&mut self, id: StreamId, n: usize) {
        self.tx_queued += n;
        let sent = self.data_sent();
        let s = self
            .streams
            .get_mut(&id.0)
            .expect("queued on a live stream");
        if self.sched.push_data(id, s, s.queued() == n) {
            s.counters.ready_at(sent);
        }
    }

    /// The next frame to write to the transport, or `None` when there is nothing to send.
    /// Order: NOP and control frames (refusals, then each stream's SYN, UPD and due FIN)
    /// first; then the first frame of each stream that had nothing queued when it got data;
    /// then one data frame per stream in turn. A stream's FIN always follows its data.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.transmit(now, true)
    }

    /// The next control frame (NOP, SYN, UPD or FIN), or `None` when only data frames (or
    /// nothing) are left: for a driver whose output holds data it has not written yet, so that
    /// control frames can still go out ahead of that data. [`Session::poll_transmit`] hands
    /// out the same frames in the same order, data included.
    ///
    /// A FIN ends its stream's data, so it must follow every data frame of that stream already
    /// handed out; NOP, SYN and UPD frames may be written ahead of data handed out earlier.
    pub fn poll_control(&mut self, now: Instant) -> Option<Transmit> {
        self.transmit(now, false)
    }

    fn transmit(&mut self, now: Instant, data: bool) -> Option<Transmit> {
        self.now = self.now.max(now);
        if self.is_ended() || self.version().is_none() {
            return None;
        }
        let v = self.wire_version();
        loop {
            let next = if data {
                self.sched.next(&mut self.streams)
            } else {
                self.sched.next_control(&mut self.streams)
            };
            let Some(next) = next else {
                break;
            };
            let t = match next {
                Next::Nop => Some(Transmit::new(v, Cmd::Nop, StreamId(0), Bytes::new())),
                Next::Refusal(id) => Some(Transmit::new(v, Cmd::Fin, id, Bytes::new())),
                Next::Ctrl(id) => self.ctrl_frame(id, now),
                Next::Data(id) => self.data_frame(id, now),
            };
            if let Some(t) = t {
                self.count_sent(t.payload.len(), t.cmd == Cmd::Psh);
                if t.cmd == Cmd::Nop {
                    self.counters.keep_alives_sent += 1;
                }
                return Some(t);
            }
        }
        if data && self.state == State::Closing {
            self.end(SessionEnd::Closed);
        }
        None
    }

    /// The next control frame `id` owes: SYN, then UPD, then a due FIN, after which it leaves
    /// the control queue.
    fn ctrl_frame(&mut self, id: StreamId, now: Instant) -> Option<Transmit> {
        let v = self.wire_version();
        let s = self
            .streams
            .get_mut(&id.0)
            .expect("the scheduler checked it");
        if s.take_syn() {
            if self.config.idle_timeout().is_some() {
                s.last_activity = Some(self.epoch.stamp(now));
                self.arm_idle(id, now);
            }
            return Some(Transmit::new(v, Cmd::Syn, id, Bytes::new()));
        }
        // An UPD for a stream that takes no more data would tell nothing.
        if s.take_upd() && (s.accepts_data() || s.discards_data()) {
            let (consumed, window) = s.recv_window.send_upd(now);
            let upd = encode_upd(consumed, window);
            return Some(Transmit::new(v, Cmd::Upd, id, Bytes::copy_from_slice(&upd)));
        }
        self.sched.ctrl.pop(&mut self.streams);
        let s = self.streams.get_mut(&id.0).expect("still there");
        if !s.fin_due() {
            return None;
        }
        s.mark_fin_sent();
        if s.is_released() && !self.keeps_tombstone(id) {
            self.remove(id);
        } else {
            self.check_done(id);
        }
        Some(Transmit::new(v, Cmd::Fin, id, Bytes::new()))
    }

    /// One data frame of `id`, which has just left the ready queue.
    fn data_frame(&mut self, id: StreamId, now: Instant) -> Option<Transmit> {
        let sent = self.data_sent();
        let s = self
            .streams
            .get_mut(&id.0)
            .expect("the scheduler checked it");
        let payload = s.pop_tx(self.config.max_frame_size())?;
        s.counters.sent += payload.len() as u64;
        s.counters.frame_out(sent);
        if s.last_activity.is_some() {
            s.last_activity = Some(self.epoch.stamp(now));
        }
        if s.queued() > 0 {
            // Its next frame is ready once this one is counted.
            s.counters.ready_at(QueuedAhead {
                frames: sent.frames + 1,
                bytes: sent.bytes + payload.len() as u64,
            });
            self.sched.ready.push(id, s);
        } else if s.fin_due() {
            self.sched.ctrl.push(id, s);
        }
        self.tx_queued -= payload.len();
        self.wake_writer(id);
        self.wake_session_blocked();
        Some(Transmit::new(self.wire_version(), Cmd::Psh, id, payload))
    }

    /// Reports `Writable` if `id` was refused a write and now has room.
    pub(super) fn wake_writer(&mut self, id: StreamId) {
        let Ok(room) = self.write_room(id) else {
            return;
        };
        let (half_stream, session_full) = (
            self.config.max_stream_queued() / 2,
            self.tx_queued >= self.config.max_session_queued(),
        );
        let v2 = self.wire_version() == Version::V2;
        let Some(s) = self.streams.get_mut(&id.0) else {
            return;
        };
        if !s.write_blocked() {
            return;
        }
        // Wake at half a queue free, so one event covers many writes.
        if room > 0 && (s.queued() <= half_stream || v2) {
            s.set_write_blocked(false);
            self.events.push_back(Event::Writable(id));
        } else if session_full {
            // Room will come from the session queue draining: wait with the others there.
            self.sched.tx_blocked.push(id, s);
        }
    }

    /// Wakes the streams the session's output queue refused, in the order they were refused:
    /// one per frame's worth of room, so that a writer is not starved while the others keep
    /// more than half the queue filled, and all of them once half the queue is free.
    fn wake_session_blocked(&mut self) {
        if self.sched.tx_blocked.is_empty() {
            return;
        }
        let max = self.config.max_session_queued();
        let mut wakes = if self.tx_queued <= max / 2 {
            usize::MAX
        } else {
            max.saturating_sub(self.tx_queued) / self.config.max_frame_size()
        };
        while wakes > 0 {
            let Some(id) = self.sched.tx_blocked.pop(&mut self.streams) else {
                break;
            };
            let s = self.streams.get_mut(&id.0).expect("popped a live stream");
            if s.write_blocked() {
                s.set_write_blocked(false);
                self.events.push_back(Event::Writable(id));
                wakes -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::{Config, Role, Session, StreamError, Version, INITIAL_PEER_WINDOW};

    fn client(version: Version) -> (Session, Instant) {
        let mut c = Config::default();
        c.with_version(version);
        let now = Instant::now();
        (Session::new(Role::Client, c, now).unwrap(), now)
    }

    #[test]
    fn direct_room_is_zero_while_anything_must_go_first() {
        let (mut s, now) = client(Version::V1);
        let id = s.open().unwrap();
        // The SYN has not gone out.
        assert_eq!(s.direct_room(id), Ok(0));
        while s.poll_transmit(now).is_some() {}
        assert_eq!(s.direct_room(id), Ok(usize::MAX));
        // Queued data of its own goes first.
        s.write(id, b"queued").unwrap();
        assert_eq!(s.direct_room(id), Ok(0));
        while s.poll_transmit(now).is_some() {}
        // Another stream's output goes first too.
        let other = s.open().unwrap();
        assert_eq!(s.direct_room(id), Ok(0));
        while s.poll_transmit(now).is_some() {}
        assert_eq!(s.direct_room(other), Ok(usize::MAX));
        s.shutdown(id).unwrap();
        assert_eq!(s.direct_room(id), Err(StreamError::Finished));
    }

    #[test]
    fn poll_control_hands_out_control_frames_only_and_never_a_fin_before_its_data() {
        use crate::frame::Cmd;
        let (mut s, now) = client(Version::V1);
        let a = s.open().unwrap();
        assert_eq!(s.poll_control(now).map(|t| t.cmd), Some(Cmd::Syn));
        s.write(a, &[7u8; 100]).unwrap();
        s.shutdown(a).unwrap();
        let b = s.open().unwrap();
        // B's SYN may overtake A's data; A's FIN waits until A's data has been handed out.
        let t = s.poll_control(now).unwrap();
        assert_eq!((t.cmd, t.stream_id), (Cmd::Syn, b));
        assert!(s.poll_control(now).is_none());
        assert!(s.has_output());
        let order: Vec<_> = std::iter::from_fn(|| s.poll_transmit(now))
            .map(|t| (t.cmd, t.stream_id))
            .collect();
        assert_eq!(order, [(Cmd::Psh, a), (Cmd::Fin, a)]);
    }

    #[test]
    fn a_stream_with_nothing_queued_goes_first_and_queued_ahead_says_what_went_before() {
        use crate::frame::Cmd;
        let (mut s, now) = client(Version::V1);
        let frame = s.config.max_frame_size();
        let bulk: Vec<_> = (0..3).map(|_| s.open().unwrap()).collect();
        let small = s.open().unwrap();
        for &b in &bulk {
            s.write(b, &vec![1u8; 4 * frame]).unwrap();
        }
        while s.poll_control(now).is_some() {}
        // Each bulk stream's first frame, in the order they got data.
        for &b in &bulk {
            assert_eq!(s.poll_transmit(now).unwrap().stream_id, b);
        }
        // Then bulk0 and bulk1 go round; a write on the idle stream goes before the rest.
        for &b in &bulk[..2] {
            assert_eq!(s.poll_transmit(now).unwrap().stream_id, b);
        }
        s.write(small, &[2u8; 64]).unwrap();
        let t = s.poll_transmit(now).unwrap();
        assert_eq!((t.cmd, t.stream_id), (Cmd::Psh, small));
        let first = s.stream_stats(small).unwrap().queued_ahead;
        assert_eq!((first.frames, first.bytes), (0, 0));
        // A stream that keeps data queued takes its turn with the others: bulk2 went first
        // (it was waiting), then bulk0 and bulk1 had one frame each before its second.
        s.write(small, &vec![3u8; 2 * frame]).unwrap();
        let order: Vec<_> = (0..4)
            .map(|_| s.poll_transmit(now).unwrap().stream_id)
            .collect();
        assert_eq!(order, [small, bulk[2], bulk[0], bulk[1]]);
        let next = s.poll_transmit(now).unwrap();
        assert_eq!(next.stream_id, small);
        let ahead = s.stream_stats(small).unwrap().queued_ahead;
        assert_eq!(ahead.frames, 3, "one frame of each bulk stream");
        assert_eq!(ahead.bytes, 3 * frame as u64);
    }

    #[test]
    fn committed_direct_bytes_spend_the_version_2_window() {
        let (mut s, now) = client(Version::V2);
        let id = s.open().unwrap();
        while s.poll_transmit(now).is_some() {}
        let window = INITIAL_PEER_WINDOW as usize;
        assert_eq!(s.direct_room(id), Ok(window));
        s.commit_direct(id, 100_000, now);
        assert_eq!(s.direct_room(id), Ok(window - 100_000));
        assert_eq!(s.send_window(id), Some(window - 100_000));
        // A queued write sees the same window.
        let n = s.write(id, &vec![0u8; window]).unwrap();
        assert_eq!(n, window - 100_000);
    }
}
