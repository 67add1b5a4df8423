//! Counters and gauges of a session and of its streams, read in O(1).

use std::time::Duration;

use super::Session;
use crate::frame::HEADER_LEN;
use crate::stream::QueuedAhead;
use crate::wire::{StreamId, Version};

/// What a session has moved and holds. Counters count from the session's start; gauges are as
/// of the call. Wire and payload bytes are counted as frames are handed to the transport by
/// [`Session::poll_transmit`] (or reported by [`Session::commit_direct`]) and as input is
/// taken by [`Session::handle_input`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Payload bytes of PSH frames sent.
    pub payload_bytes_sent: u64,
    /// PSH frames sent.
    pub payload_frames_sent: u64,
    /// Payload bytes of PSH frames received (all of them, for streams that took them or not).
    pub payload_bytes_received: u64,
    /// PSH frames received.
    pub payload_frames_received: u64,
    /// Bytes of every frame sent: headers and payloads.
    pub wire_bytes_sent: u64,
    /// Bytes of input taken.
    pub wire_bytes_received: u64,
    /// Streams we opened.
    pub streams_opened: u64,
    /// Streams the peer opened that we admitted (into the accept backlog).
    pub streams_accepted: u64,
    /// Streams the peer opened that we refused with a FIN.
    pub streams_refused: u64,
    /// Keep-alive NOPs sent.
    pub keep_alives_sent: u64,
    /// Streams reset by the session ([`ResetReason`](crate::ResetReason)): at the receive
    /// budget, or for the stalled-stream timeout.
    pub streams_reset: u64,
    /// Streams in the table now, in both directions.
    pub streams_open: usize,
    /// Streams waiting for `accept` now.
    pub streams_waiting_accept: usize,
    /// Memory held now for data received and not yet read.
    pub unread_bytes: usize,
    /// Bytes written by the streams and not yet handed to the transport now.
    pub queued_bytes: usize,
    /// Version 2 with window tuning: the shortest round trip measured so far (from an UPD to
    /// the first data beyond the edge it moved); `None` before one.
    pub round_trip: Option<Duration>,
}

/// What one stream has moved and holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Payload bytes handed to the transport.
    pub bytes_sent: u64,
    /// Payload bytes received for it.
    pub bytes_received: u64,
    /// Bytes received and not yet read, now.
    pub unread_bytes: usize,
    /// Bytes written and not yet handed to the transport, now.
    pub queued_bytes: usize,
    /// Version 2: what the peer's window lets us send now; `None` in version 1.
    pub peer_window: Option<u64>,
    /// Version 2: what we let the peer send now (our advertised edge, less what was
    /// received); `None` in version 1.
    pub advertised_window: Option<u64>,
    /// Version 2: time writes spent refused for want of the peer's window (up to the last
    /// UPD that opened it, or now while it is still shut).
    pub window_wait: Duration,
    /// Version 2: the window our grants top the peer's allowance up to: the starting window,
    /// or more once it tuned itself (`Config::window_tuning`); `None` in version 1.
    pub receive_window: Option<u64>,
    /// What the scheduler sent ahead of this stream's last data frame: the data frames (and
    /// their payload bytes) the session handed out, for any stream, from the moment that
    /// frame's data was ready until its turn. Round-robin keeps it to about one frame per
    /// other stream with data to send. (A driver's own output queue and the kernel's come
    /// on top.)
    pub queued_ahead: QueuedAhead,
}

impl Session {
    /// The session's counters and gauges. O(1).
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            streams_open: self.streams.len(),
            streams_waiting_accept: self.accept_queue.len(),
            unread_bytes: self.rx_held,
            queued_bytes: self.tx_queued,
            round_trip: self.flow.round_trip(),
            ..self.counters
        }
    }

    /// Stream `id`'s counters and gauges, `None` for an id the session does not know. O(1).
    pub fn stream_stats(&self, id: StreamId) -> Option<StreamStats> {
        let s = self.streams.get(&id.0)?;
        let v2 = self.wire_version() == Version::V2;
        let c = &s.counters;
        let now = self.epoch.stamp(self.now);
        let open_wait = c.window_shut_since.map_or(0, |t| now.nanos_since(t));
        Some(StreamStats {
            bytes_sent: c.sent,
            bytes_received: c.received,
            unread_bytes: s.unread(),
            queued_bytes: s.queued(),
            peer_window: v2.then(|| s.send_window() as u64),
            advertised_window: v2.then(|| s.recv_window.credit().saturating_sub(s.unread()) as u64),
            window_wait: Duration::from_nanos(c.window_wait() + open_wait),
            receive_window: v2.then_some(s.recv_window.window() as u64),
            queued_ahead: c.queued_ahead(),
        })
    }

    /// The data frames and payload bytes sent so far.
    pub(super) fn data_sent(&self) -> QueuedAhead {
        QueuedAhead {
            frames: self.counters.payload_frames_sent,
            bytes: self.counters.payload_bytes_sent,
        }
    }

    /// A frame with `payload` bytes went out (`data`: a PSH).
    pub(super) fn count_sent(&mut self, payload: usize, data: bool) {
        self.counters.wire_bytes_sent += (HEADER_LEN + payload) as u64;
        if data {
            self.counters.payload_bytes_sent += payload as u64;
            self.counters.payload_frames_sent += 1;
        }
    }
}
