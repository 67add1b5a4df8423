//! Version 2 flow control: the window we grant the peer on each stream ([`RecvWindow`]), the
//! peer's window for our writes ([`SendWindow`]), and what the session keeps across streams
//! ([`FlowControl`]): the credit the peer holds on all streams together, and what the window
//! tuning measured. This is accounting only: the session looks the streams up, queues the UPDs
//! and keeps the streams that wait for budget.
//!
//! A stream's credit is what the peer may still send on it: the edge we allowed, minus what
//! was read. A fresh stream starts with the protocol's initial window, which we cannot refuse.
//! A grant moves the edge right (an UPD says so) on the first read, then every half window
//! read, and the edge never moves left. The credit of all streams that take data is
//! [`FlowControl::owed`]; a window grows only while that stays within `max_session_window`,
//! except that every stream may have [`MIN_CREDIT`], so that idle streams holding open
//! windows cannot starve the rest.
//!
//! With window tuning, a stream's window doubles when it held the peer back while our reader
//! kept up ([`FlowControl::tune`]); the round trip that decides both is measured from an UPD
//! to the first data beyond the edge it moved ([`FlowControl::note_arrival`]).

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::wire::INITIAL_PEER_WINDOW;

/// The window every stream may have whatever the window budget says (one full frame and a
/// little more), so that open but idle windows cannot starve the other streams.
pub(crate) const MIN_CREDIT: usize = 64 * 1024;

/// The window we grant the peer on one stream. Counts are 32 bits: a window fits the UPD's
/// 32 bits, and every stream carries one.
#[derive(Debug)]
pub(crate) struct RecvWindow {
    /// Bytes the application has read, mod 2^32 (UPD's `consumed`).
    consumed: u32,
    /// Bytes read since the last grant; at most the credit that grant left.
    since_grant: u32,
    /// How far past `consumed` the peer may send: the furthest edge we (or the protocol's
    /// initial window) allowed, minus `consumed`. At most a window.
    credit: u32,
    /// What a grant tops the credit up to: the starting window, or more once the tuning grew
    /// it.
    window: u32,
    /// What the window tuning measures.
    tuning: Tuning,
}

impl RecvWindow {
    /// A window the peer may send `credit` bytes into before it hears from us.
    pub fn new(credit: usize) -> RecvWindow {
        RecvWindow {
            consumed: 0,
            since_grant: 0,
            credit: to_u32(credit),
            window: 0,
            tuning: Tuning::default(),
        }
    }

    /// What a grant tops the credit up to.
    pub fn window(&self) -> usize {
        self.window as usize
    }

    pub fn set_window(&mut self, window: usize) {
        self.window = to_u32(window);
    }

    /// What the peer may still send: the credit not yet used by data read.
    pub fn credit(&self) -> usize {
        self.credit as usize
    }

    /// Counts `n` bytes read: the credit shrinks by as much (the edge stays where it is).
    pub fn note_consumed(&mut self, n: usize) {
        let n = u32::try_from(n).expect("a read stays within the credit");
        self.consumed = self.consumed.wrapping_add(n);
        self.credit -= n;
        self.since_grant += n;
    }

    /// Whether the edge should move now: on the first read, then each time half a window has
    /// been read since the last grant (as Go sends UPDs), or once less than half a window is
    /// left ahead of the reader. The last case matters after a grant the budget cut short:
    /// the stream must not wait for half a window it was never given.
    pub fn grant_due(&self) -> bool {
        let window = self.window();
        let since_grant = self.since_grant as usize;
        let first = self.consumed == self.since_grant && since_grant > 0;
        since_grant > 0 && (first || since_grant >= window / 2 || self.credit() <= window / 2)
    }

    /// Moves the edge right by `extra` bytes.
    pub fn grant(&mut self, extra: usize) {
        self.credit = to_u32(self.credit() + extra);
        self.since_grant = 0;
    }

    /// Moves the edge a whole window past what was read.
    pub fn top_up(&mut self) {
        self.grant(self.window().saturating_sub(self.credit()));
    }

    /// The stream takes no more data: its credit, to return to the budget.
    pub fn take_credit(&mut self) -> usize {
        std::mem::take(&mut self.credit) as usize
    }

    /// The UPD owed goes out at `now`: its `consumed` and window. If it carries a grant that
    /// marked the edge it moved from, the first data beyond that edge will give a round trip.
    pub fn send_upd(&mut self, now: Instant) -> (u32, u32) {
        if let Some(t) = self.tuning.state.as_deref_mut() {
            if let Some(edge) = t.probe_edge.take() {
                t.probe = Some((now, edge));
            }
        }
        (self.consumed, self.credit)
    }

    /// Drops what the tuning measured: the stream is no longer read, so its window no longer
    /// tunes.
    pub fn forget_tuning(&mut self) {
        self.tuning.state = None;
    }
}

/// A window as the UPD carries it.
fn to_u32(window: usize) -> u32 {
    u32::try_from(window).expect("a window fits in 32 bits")
}

/// How one stream's window tunes itself (`Config::window_tuning`).
#[derive(Debug, Default)]
struct Tuning {
    /// What the tuning measures, in a box of its own that only version 2 with tuning on makes,
    /// at the stream's first data or first grant: an idle stream, a version 1 stream or one
    /// with tuning off carries a pointer, not the measurements. `None` reads as
    /// [`TuningState::default`].
    state: Option<Box<TuningState>>,
}

/// What the window tuning measures on one stream.
#[derive(Debug, Default)]
struct TuningState {
    /// Since the last grant, the window held the peer back: data arrived that left it within
    /// an eighth of the window of our edge, or it sent half a window or more within a round
    /// trip (with grants every half window, a window lets through between half and all of
    /// itself per round trip).
    held_back: bool,
    /// The round trip over which arrivals are being counted began here.
    rate_since: Option<Instant>,
    /// Bytes that arrived since `rate_since`.
    rate_bytes: usize,
    /// When the last grant was made.
    last_grant: Option<Instant>,
    /// A grant whose UPD is not yet sent: the edge it moved from, in bytes received.
    probe_edge: Option<u64>,
    /// That UPD went out at this instant: the first data beyond the old edge gives a round
    /// trip.
    probe: Option<(Instant, u64)>,
}

impl Tuning {
    /// What is measured, made now if nothing was yet: only for version 2 with tuning on.
    fn state_mut(&mut self) -> &mut TuningState {
        self.state.get_or_insert_with(Box::default)
    }
}

/// The peer's window for our writes on one stream.
#[derive(Debug)]
pub(crate) struct SendWindow {
    /// Bytes accepted for sending, mod 2^32.
    written: u32,
    /// The peer's last UPD.
    peer_consumed: u32,
    peer_window: u32,
}

impl Default for SendWindow {
    /// What a peer allows before its first UPD: the protocol's initial window.
    fn default() -> SendWindow {
        SendWindow {
            written: 0,
            peer_consumed: 0,
            peer_window: INITIAL_PEER_WINDOW,
        }
    }
}

impl SendWindow {
    /// Bytes the peer's window lets us accept now. A peer that shrinks its window below what
    /// is in flight leaves no room.
    pub fn available(&self) -> usize {
        let in_flight = self.written.wrapping_sub(self.peer_consumed);
        self.peer_window.saturating_sub(in_flight) as usize
    }

    /// `n` more bytes were accepted for sending.
    pub fn note_written(&mut self, n: usize) {
        self.written = self.written.wrapping_add(n as u32);
    }

    /// The peer's UPD.
    pub fn apply_upd(&mut self, consumed: u32, window: u32) {
        self.peer_consumed = consumed;
        self.peer_window = window;
    }
}

/// What [`FlowControl::grow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The edge moved: an UPD is owed.
    pub moved: bool,
    /// The stream got all it wanted; otherwise it waits for the budget.
    pub complete: bool,
}

/// Version 2 flow control across a session's streams.
#[derive(Debug, Default)]
pub(crate) struct FlowControl {
    /// What the peer may still send on all streams that take data together: their credit.
    owed: usize,
    /// The shortest round trip measured (an UPD, to the first data beyond the edge it moved).
    round_trip: Option<Duration>,
    /// The round trip as recently measured (a moving average of the samples, 1/8 each): under
    /// load it includes what the path queues.
    loaded_round_trip: Option<Duration>,
    /// The largest window a stream has grown to, where fresh streams start.
    tuned_window: usize,
}

impl FlowControl {
    /// What the peer may still send on all streams together.
    pub fn owed(&self) -> usize {
        self.owed
    }

    /// The shortest round trip measured.
    pub fn round_trip(&self) -> Option<Duration> {
        self.round_trip
    }

    /// A stream took `credit` that the budget did not grant (the protocol's initial window).
    pub fn lend(&mut self, credit: usize) {
        self.owed += credit;
    }

    /// `credit` came back: read, or returned by a stream that takes no more data.
    pub fn repay(&mut self, credit: usize) {
        self.owed -= credit;
    }

    /// `n` bytes were read from `w`, whose credit is owed: whether a grant is due.
    pub fn on_read(&mut self, w: &mut RecvWindow, n: usize) -> bool {
        w.note_consumed(n);
        self.owed -= n;
        w.grant_due()
    }

    /// Where a fresh stream's window starts: the configured window or, with tuning, the
    /// largest one a stream of this session grew to.
    pub fn starting_window(&self, config: &Config) -> usize {
        let configured = config.stream_window() as usize;
        if config.window_tuning() {
            configured.max(self.tuned_window)
        } else {
            configured
        }
    }

    /// Window tuning, with a grant due on `w` at `now`: if the window held the peer back since
    /// the last grant while our reader kept up (half a window read within one and a half round
    /// trips), the window doubles, up to `max_stream_window`. Both tests use the round trip as
    /// recently measured: a window-limited stream on a path that queues delivers about a
    /// window per loaded round trip, and less per shortest one.
    pub fn tune(&mut self, w: &mut RecvWindow, now: Instant, config: &Config) {
        if !config.window_tuning() {
            return;
        }
        let Some(rtt) = self.loaded_round_trip else {
            return;
        };
        // No measurements yet: no grant was made, so the reader cannot have kept up with one.
        let Some(t) = w.tuning.state.as_deref() else {
            return;
        };
        let cap = config.max_stream_window() as usize;
        let kept_up = t
            .last_grant
            .is_some_and(|t| now.saturating_duration_since(t) <= rtt * 3 / 2);
        if t.held_back && kept_up && w.window() < cap {
            w.set_window((2 * w.window()).min(cap));
            self.tuned_window = self.tuned_window.max(w.window());
        }
    }

    /// Moves `w`'s edge towards a window past what was read, as far as the budget
    /// (`max_session_window`) allows, at `now`; the stream has `received` bytes in all and
    /// `unread` of them unread (the tuning counts its edges in bytes received). Every stream
    /// may have [`MIN_CREDIT`] whatever the budget says. A grant of a sliver waits: it would
    /// cost an UPD for little.
    pub fn grow(
        &mut self,
        w: &mut RecvWindow,
        (received, unread): (u64, usize),
        now: Instant,
        config: &Config,
    ) -> Grant {
        let room = config.max_session_window().saturating_sub(self.owed);
        let window = w.window();
        let wanted = window.saturating_sub(w.credit());
        let floor = MIN_CREDIT.min(window).saturating_sub(w.credit());
        let extra = wanted.min(room.max(floor));
        let worth = extra == wanted || extra >= (window / 4).min(MIN_CREDIT);
        let moved = extra > 0 && worth;
        if moved {
            // Only the tuning reads what is noted here: without it, nothing is.
            if config.window_tuning() {
                // The edge this grant moves from, in bytes received: the first data beyond
                // it, after the UPD goes out, comes a round trip later or more (later if the
                // peer had not reached the old edge yet: the session keeps the shortest).
                let edge = received - unread as u64 + w.credit() as u64;
                let t = w.tuning.state_mut();
                if t.probe.is_none() && t.probe_edge.is_none() {
                    t.probe_edge = Some(edge);
                }
                t.held_back = false;
                t.last_grant = Some(now);
            }
            w.grant(extra);
            self.owed += extra;
        }
        Grant {
            moved,
            complete: extra == wanted && worth,
        }
    }

    /// Whether the budget has room for the streams waiting for it: a quarter of a starting
    /// window at least.
    pub fn has_room_for_waiters(&self, config: &Config) -> bool {
        self.owed + config.stream_window() as usize / 4 <= config.max_session_window()
    }

    /// Window tuning: `n` bytes arrived on `w` at `now`, which leaves `received` received
    /// in all and `unread` unread. Notes whether the window held the peer back, and takes a
    /// round trip from an UPD to the first data beyond the edge it moved.
    pub fn note_arrival(
        &mut self,
        w: &mut RecvWindow,
        n: usize,
        received: u64,
        unread: usize,
        now: Instant,
    ) {
        let left = w.credit().saturating_sub(unread);
        let window = w.window();
        let t = w.tuning.state_mut();
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
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
