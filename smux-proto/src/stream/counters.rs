//! What one stream counts for [`Session::stream_stats`](crate::Session::stream_stats).

use super::Stamp;

/// Data frames and payload bytes handed out ahead of a stream's frame
/// ([`StreamStats::queued_ahead`](crate::StreamStats::queued_ahead)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuedAhead {
    /// Data frames.
    pub frames: u64,
    /// Their payload bytes.
    pub bytes: u64,
}

/// The per-stream counters a [`Stream`](super::Stream) keeps, compactly: every open stream
/// has them. What [`StreamStats`](crate::StreamStats) reports is made from them.
#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    pub sent: u64,
    pub received: u64,
    /// Nanoseconds writes waited for the peer's window, up to the last UPD that opened it.
    window_wait: u64,
    /// A write was refused for want of the peer's window at this instant.
    pub window_shut_since: Option<Stamp>,
    /// The session's data frames and payload bytes sent when this stream's next frame became
    /// ready to go.
    ready_since: Sent,
    /// What went ahead of its last data frame.
    queued_ahead: Sent,
}

/// Data frames and payload bytes sent, mod 2^32: a difference of two is right as long as
/// less than 2^32 frames and 4 GiB went between them, as between a frame's being ready and
/// its turn (round robin puts about a frame of each other sending stream there).
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    frames: u32,
    bytes: u32,
}

impl Sent {
    fn of(q: QueuedAhead) -> Sent {
        Sent {
            frames: q.frames as u32,
            bytes: q.bytes as u32,
        }
    }
}

impl StreamCounters {
    /// The stream's next frame is ready to go, when the session has sent `sent`.
    pub fn ready_at(&mut self, sent: QueuedAhead) {
        self.ready_since = Sent::of(sent);
    }

    /// The stream's frame goes out, when the session has sent `sent`: what went ahead of it
    /// since it was ready.
    pub fn frame_out(&mut self, sent: QueuedAhead) {
        let now = Sent::of(sent);
        self.queued_ahead = Sent {
            frames: now.frames.wrapping_sub(self.ready_since.frames),
            bytes: now.bytes.wrapping_sub(self.ready_since.bytes),
        };
    }

    /// Nanoseconds writes waited for the peer's window, up to the last UPD that opened it.
    pub fn window_wait(&self) -> u64 {
        self.window_wait
    }

    /// What went ahead of the stream's last data frame.
    pub fn queued_ahead(&self) -> QueuedAhead {
        QueuedAhead {
            frames: self.queued_ahead.frames.into(),
            bytes: self.queued_ahead.bytes.into(),
        }
    }

    /// The peer's window opened at `now`: the wait since it shut counts.
    pub fn window_opened(&mut self, now: Stamp) {
        if let Some(since) = self.window_shut_since.take() {
            self.window_wait += now.nanos_since(since);
        }
    }
}
