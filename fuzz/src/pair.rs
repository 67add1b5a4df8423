//! The `pair` fuzz target: a client and a server session joined by `smux_proto::pair::Pair`,
//! driven by an arbitrary sequence of application, link and clock operations, against a model
//! of what the protocol guarantees. Each panic is a bug in the core (or in this model).
//!
//! Plain Rust over the public API, so that `smux-proto/tests/fuzz_corpus.rs` replays the
//! corpus on stable.
//!
//! Checked after every operation:
//! - held memory within the configured limits (receive budget, output queue, streams, one
//!   stream's unread data, what a link holds);
//! - every byte read is the next byte the peer wrote on that stream (a per-stream pattern), and
//!   no more arrives than was written;
//! - end of stream (a read of 0, or `Finished`) only once the peer asked for FIN (shutdown,
//!   release, session close, its idle timeout, or a refused SYN) and all its data arrived,
//!   unless our own idle timeout closed the stream;
//! - every command's result is the one the model expects (`Blocked`, `Finished`,
//!   `SessionEnded`, `UnknownStream`);
//! - events: `Opened` once per peer stream, in accept order; no event for a stream never known
//!   or released; `Finished` and `Closed` at most once; `Closed` without `Finished` only with
//!   an idle timeout; nothing after `SessionEnded`; a read that was `Blocked` returns data only
//!   after a `Readable` (no lost wake-up); no protocol error between two of our sessions.
//!
//! Checked at the end, after unstalling both links and pumping and reading until nothing moves:
//! every stream whose reader is alive received everything written (and its FIN, if asked),
//! unless its session ended otherwise than by an orderly close or the reader's idle timeout
//! closed it; a writer refused with `Blocked` got `Writable`; nothing is left queued or held.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use smux_proto::pair::{Pair, Side};
use smux_proto::{
    Config, Event, OpenError, ResetReason, SessionEnd, StreamError, StreamId, Version,
    INITIAL_PEER_WINDOW,
};

/// Operations per input, at most.
const MAX_OPS: usize = 4096;
/// Rounds of the final pump-and-read loop before it must have settled.
const MAX_SETTLE_ROUNDS: usize = 10_000;

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum S {
    Client,
    Server,
}

impl S {
    fn side(self) -> Side {
        match self {
            S::Client => Side::Client,
            S::Server => Side::Server,
        }
    }
}

/// One side's limits, folded into small valid values.
#[derive(Arbitrary, Debug)]
struct Limits {
    frame: u16,
    window: u16,
    stream_unread: u16,
    session_unread: u32,
    backlog: u8,
    streams: u8,
    stream_queued: u16,
    session_queued: u16,
    timers: u8,
    keep_alive_ms: u16,
    idle_ms: u16,
}

impl Limits {
    fn config(&self, version: Version) -> Config {
        let keep_alive = self.timers & 1 != 0;
        let interval = Duration::from_millis(1 + u64::from(self.keep_alive_ms % 5000));
        let stream_queued = 1 + usize::from(self.stream_queued % 8192);
        let stalled = Duration::from_millis(1 + u64::from(self.keep_alive_ms % 3000));
        let c = {
            let mut c = Config::default();
            c.with_version(version)
                .with_max_frame_size(if self.frame >= 0xf000 {
                    65_535
                } else {
                    1 + usize::from(self.frame % 2048)
                })
                .with_keep_alive_interval(keep_alive.then_some(interval))
                .with_keep_alive_timeout(
                    keep_alive.then(|| interval * (1 + u32::from((self.timers >> 4) & 3))),
                )
                .with_idle_timeout(
                    (self.timers & 2 != 0)
                        .then(|| Duration::from_millis(1 + u64::from(self.idle_ms % 10_000))),
                )
                .with_stalled_stream_timeout((self.timers & 8 != 0).then_some(stalled))
                .with_stream_window(65_535 + u32::from(self.window))
                .with_window_tuning(self.timers & 4 == 0)
                .with_max_stream_window(
                    (65_535 + u32::from(self.window)) << (2 * (self.timers >> 6)),
                )
                .with_max_stream_unread(65_535 + usize::from(self.stream_unread))
                .with_max_session_unread(65_535 + 64 + (self.session_unread % 200_000) as usize)
                .with_max_accept_backlog(1 + usize::from(self.backlog % 4))
                .with_max_streams(1 + usize::from(self.streams % 8))
                .with_max_stream_queued(stream_queued)
                .with_max_session_queued(stream_queued + usize::from(self.session_queued % 16_384));
            c
        };
        c.validate().expect("the fuzz config is valid");
        c
    }
}

#[derive(Arbitrary, Debug)]
struct Setup {
    v2: bool,
    client: Limits,
    server: Limits,
    chunk: u16,
    link_capacity: u16,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Open(S),
    Accept(S),
    Write {
        side: S,
        stream: u8,
        len: u16,
        zero_copy: bool,
    },
    Read {
        side: S,
        stream: u8,
        max: u16,
        chunk: bool,
    },
    Shutdown {
        side: S,
        stream: u8,
    },
    CloseStream {
        side: S,
        stream: u8,
    },
    Close(S),
    Eof(S),
    TransportError(S),
    Advance {
        ms: u16,
    },
    Stall {
        from: S,
        on: bool,
    },
    Chunk(u16),
    LinkCapacity(u16),
    Transmit(S),
    Deliver {
        from: S,
        limit: u16,
    },
    Drive,
}

/// The byte at `offset` of what `writer` sends on stream `id`: a hash of all three, so that a
/// lost, doubled, reordered or misrouted byte shows.
fn pattern(id: StreamId, writer: Side, offset: usize) -> u8 {
    let x = offset as u64 ^ (u64::from(id.0) << 40) ^ ((writer == Side::Client) as u64) << 63;
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

fn idx(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

/// One direction of one stream: what its writer wrote and its reader read.
#[derive(Debug, Default)]
struct Dir {
    written: usize,
    received: usize,
    /// The writer asked for FIN: no more data will be taken, the FIN follows what was written.
    fin_requested: bool,
    eof_seen: bool,
}

/// What one side knows of one stream.
#[derive(Debug, Default)]
struct View {
    /// Opened here.
    local: bool,
    /// Opened by the peer, and taken by `accept` (or not yet: `in_accept_queue`).
    in_accept_queue: bool,
    /// Opened here or accepted: the application may use it.
    usable: bool,
    released: bool,
    finished: bool,
    closed: bool,
    /// `Closed` came without `Finished`: the idle timeout (or a version-1 reset) closed it
    /// here.
    expired: bool,
    /// The session reset it here: reads and writes fail, and what the peer sent is lost.
    reset: bool,
    blocked_reader: bool,
    blocked_writer: bool,
}

impl View {
    /// The idle timeout closed the stream before the peer's FIN, or it was reset: what the
    /// peer sent later is dropped.
    fn lost_data(&self) -> bool {
        (self.expired && !self.finished) || self.reset
    }
}

struct Model {
    pair: Pair,
    configs: [Config; 2],
    /// Every stream id opened, by either side, in order.
    streams: Vec<StreamId>,
    views: BTreeMap<(usize, u32), View>,
    dirs: BTreeMap<(u32, usize), Dir>,
    accept_queue: [VecDeque<StreamId>; 2],
    ended_seen: [bool; 2],
    /// The last id each side opened (before the first: 1 for the client, 0 for the server).
    last_local: [u32; 2],
    /// What each side's link held after the last operation.
    in_flight: [usize; 2],
}

impl Model {
    fn session_config(&self, side: Side) -> &Config {
        &self.configs[idx(side)]
    }

    fn pick(&self, stream: u8) -> Option<StreamId> {
        if self.streams.is_empty() {
            None
        } else {
            Some(self.streams[usize::from(stream) % self.streams.len()])
        }
    }

    fn view(&self, side: Side, id: StreamId) -> Option<&View> {
        self.views.get(&(idx(side), id.0))
    }

    fn view_mut(&mut self, side: Side, id: StreamId) -> &mut View {
        self.views
            .get_mut(&(idx(side), id.0))
            .expect("a known stream")
    }

    fn dir(&mut self, id: StreamId, writer: Side) -> &mut Dir {
        self.dirs.entry((id.0, idx(writer))).or_default()
    }

    /// Whether the application of `side` may use `id` (`None`: it is waiting to be accepted,
    /// which the model does not use).
    fn usable(&self, side: Side, id: StreamId) -> Option<bool> {
        match self.view(side, id) {
            Some(v) if v.released => Some(false),
            Some(v) if v.usable => Some(true),
            Some(_) => None,
            None => Some(false),
        }
    }

    /// Whether `writer` has said its last word on `id`: it asked for FIN, or it never knew the
    /// stream (its FIN was the refusal of the SYN).
    fn fin_legit(&self, id: StreamId, writer: Side) -> bool {
        self.view(writer, id).is_none()
            || self
                .dirs
                .get(&(id.0, idx(writer)))
                .is_some_and(|d| d.fin_requested)
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Open(s) => self.open(s.side()),
            Op::Accept(s) => {
                self.accept(s.side());
            }
            Op::Write {
                side,
                stream,
                len,
                zero_copy,
            } => {
                if let Some(id) = self.pick(stream) {
                    self.write(side.side(), id, usize::from(len), zero_copy);
                }
            }
            Op::Read {
                side,
                stream,
                max,
                chunk,
            } => {
                if let Some(id) = self.pick(stream) {
                    self.read(side.side(), id, usize::from(max).max(1), chunk);
                }
            }
            Op::Shutdown { side, stream } => {
                if let Some(id) = self.pick(stream) {
                    self.shutdown(side.side(), id);
                }
            }
            Op::CloseStream { side, stream } => {
                if let Some(id) = self.pick(stream) {
                    self.close_stream(side.side(), id);
                }
            }
            Op::Close(s) => self.close(s.side()),
            Op::Eof(s) => self.pair.session(s.side()).handle_eof(),
            Op::TransportError(s) => self.pair.session(s.side()).handle_transport_error(),
            Op::Advance { ms } => self.pair.advance(Duration::from_millis(u64::from(ms))),
            Op::Stall { from, on } => self.pair.set_stalled(from.side(), on),
            Op::Chunk(c) => self.pair.chunk = usize::from(c).max(1),
            Op::LinkCapacity(c) => self.pair.link_capacity = usize::from(c).max(1),
            Op::Transmit(s) => {
                self.pair.transmit(s.side());
            }
            Op::Deliver { from, limit } => {
                self.pair
                    .deliver_up_to(from.side(), usize::from(limit).max(1));
            }
            Op::Drive => {
                self.pair.drive();
            }
        }
        self.after_op();
    }

    fn open(&mut self, side: Side) {
        let max_streams = self.session_config(side).max_streams();
        let s = self.pair.session(side);
        let before = s.num_streams();
        match s.open() {
            Ok(id) => {
                assert!(!s.is_closing(), "opened {id} on a closing session");
                assert_eq!(
                    id.0 % 2 == 1,
                    side == Side::Client,
                    "{id} has the wrong parity"
                );
                let last = &mut self.last_local[idx(side)];
                assert_eq!(id.0, *last + 2, "ids go up by two");
                *last = id.0;
                assert!(
                    !self.views.contains_key(&(idx(side), id.0)),
                    "{id} opened twice"
                );
                self.views.insert(
                    (idx(side), id.0),
                    View {
                        local: true,
                        usable: true,
                        ..View::default()
                    },
                );
                self.streams.push(id);
            }
            Err(OpenError::TooManyStreams { limit }) => {
                assert_eq!(limit, max_streams);
                assert!(before >= max_streams, "refused below the stream limit");
            }
            Err(OpenError::SessionClosed) => assert!(s.is_closing()),
            Err(e) => panic!("open: {e}"),
        }
    }

    fn accept(&mut self, side: Side) -> bool {
        let got = self.pair.session(side).accept();
        let expected = self.accept_queue[idx(side)].pop_front();
        assert_eq!(got, expected, "accept order");
        if let Some(id) = got {
            let v = self.view_mut(side, id);
            v.in_accept_queue = false;
            v.usable = true;
            true
        } else {
            false
        }
    }

    fn write(&mut self, side: Side, id: StreamId, len: usize, zero_copy: bool) {
        let Some(usable) = self.usable(side, id) else {
            return;
        };
        let start = self.dir(id, side).written;
        let data: Vec<u8> = (start..start + len).map(|o| pattern(id, side, o)).collect();
        let s = self.pair.session(side);
        let ended = s.is_ended();
        let result = if zero_copy {
            let mut b = Bytes::from(data);
            let r = s.write_bytes(id, &mut b);
            if let Ok(n) = r {
                assert_eq!(b.len(), len - n, "write_bytes leaves the rest");
            }
            r
        } else {
            s.write(id, &data)
        };
        if !usable {
            assert_eq!(result, Err(StreamError::UnknownStream(id)));
            return;
        }
        if self.view_mut(side, id).reset {
            assert!(
                matches!(result, Err(StreamError::Reset(_))),
                "write after a reset"
            );
            return;
        }
        if ended {
            assert_eq!(result, Err(StreamError::SessionEnded));
            return;
        }
        let finished = self.dir(id, side).fin_requested || self.view_mut(side, id).expired;
        if finished {
            assert_eq!(result, Err(StreamError::Finished), "write after FIN");
            return;
        }
        match result {
            Ok(n) => {
                assert!(n <= len && (n > 0) == (len > 0), "wrote {n} of {len}");
                self.dir(id, side).written += n;
            }
            Err(StreamError::Blocked) => {
                assert!(len > 0, "an empty write blocked");
                self.view_mut(side, id).blocked_writer = true;
            }
            Err(e) => panic!("write on {id}: {e}"),
        }
    }

    /// Reads up to `max` bytes of `id` on `side`, checking them. Returns the bytes read, and
    /// whether it was the end of the stream.
    fn read(&mut self, side: Side, id: StreamId, max: usize, chunk: bool) -> (usize, bool) {
        let Some(usable) = self.usable(side, id) else {
            return (0, false);
        };
        let mut buf = vec![0u8; max];
        let s = self.pair.session(side);
        let ended = s.is_ended();
        let result = if chunk {
            s.read_chunk(id, max).map(|c| match c {
                Some(c) => {
                    assert!(!c.is_empty() && c.len() <= max, "chunk of {}", c.len());
                    buf[..c.len()].copy_from_slice(&c);
                    c.len()
                }
                None => 0,
            })
        } else {
            s.read(id, &mut buf)
        };
        let unread = s.stream_unread(id);
        if !usable {
            assert_eq!(result, Err(StreamError::UnknownStream(id)));
            return (0, false);
        }
        let writer = side.peer();
        let fin_legit = self.fin_legit(id, writer);
        let v = self.view_mut(side, id);
        let (expired, blocked) = (v.expired, v.blocked_reader);
        if v.reset {
            assert!(
                matches!(result, Err(StreamError::Reset(_))),
                "read after a reset"
            );
            return (0, false);
        }
        match result {
            Ok(0) => {
                assert!(!blocked, "end of {id} without an event after Blocked");
                let d = self.dir(id, writer);
                assert!(
                    expired || (fin_legit && d.received == d.written),
                    "end of {id} before its FIN or data: read {} of {}, FIN asked: {}",
                    d.received,
                    d.written,
                    d.fin_requested
                );
                d.eof_seen = true;
                (0, true)
            }
            Ok(n) => {
                assert!(!blocked, "data on {id} without Readable after Blocked");
                let d = self.dir(id, writer);
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(
                        *b,
                        pattern(id, writer, d.received + i),
                        "byte {} of {id} from {writer:?}",
                        d.received + i
                    );
                }
                d.received += n;
                assert!(d.received <= d.written, "more arrived on {id} than written");
                (n, false)
            }
            Err(StreamError::Blocked) => {
                assert!(!ended, "Blocked after the end");
                assert_eq!(unread, Some(0), "Blocked with data unread");
                self.view_mut(side, id).blocked_reader = true;
                (0, false)
            }
            Err(StreamError::SessionEnded) => {
                assert!(ended, "SessionEnded before the end");
                assert!(!blocked, "SessionEnded without the event");
                (0, false)
            }
            Err(e) => panic!("read on {id}: {e}"),
        }
    }

    fn shutdown(&mut self, side: Side, id: StreamId) {
        let Some(usable) = self.usable(side, id) else {
            return;
        };
        let s = self.pair.session(side);
        let ended = s.is_ended();
        let result = s.shutdown(id);
        if !usable {
            assert_eq!(result, Err(StreamError::UnknownStream(id)));
            return;
        }
        let d = self.dir(id, side);
        match result {
            Ok(()) => {
                assert!(!ended || d.fin_requested, "shutdown after the end");
                d.fin_requested = true;
            }
            Err(StreamError::SessionEnded) => {
                assert!(ended && !d.fin_requested, "shutdown refused");
            }
            Err(e) => panic!("shutdown of {id}: {e}"),
        }
    }

    fn close_stream(&mut self, side: Side, id: StreamId) {
        let Some(usable) = self.usable(side, id) else {
            return;
        };
        let s = self.pair.session(side);
        let ended = s.is_ended();
        s.close_stream(id);
        assert!(
            s.stream_unread(id).is_none() || !ended,
            "a released stream stays after the end"
        );
        if usable {
            self.view_mut(side, id).released = true;
            if !ended {
                self.dir(id, side).fin_requested = true;
            }
        }
    }

    fn close(&mut self, side: Side) {
        let s = self.pair.session(side);
        let open = !s.is_closing();
        s.close();
        assert!(s.is_closing());
        if !open {
            return;
        }
        // Every stream gets FIN; streams not yet accepted are released.
        let ids: Vec<u32> = self
            .views
            .keys()
            .filter(|(s, _)| *s == idx(side))
            .map(|(_, id)| *id)
            .collect();
        for id in ids {
            let id = StreamId(id);
            self.dir(id, side).fin_requested = true;
            let v = self.view_mut(side, id);
            if v.in_accept_queue {
                v.in_accept_queue = false;
                v.released = true;
            }
        }
        self.accept_queue[idx(side)].clear();
    }

    /// Takes the events of both sides and checks them, then checks the limits.
    fn after_op(&mut self) {
        self.pair.collect_events();
        for side in [Side::Client, Side::Server] {
            let events: Vec<Event> = self.pair.events(side).drain(..).collect();
            let mut readable = Vec::new();
            for e in &events {
                if let Event::Readable(id) = e {
                    readable.push(*id);
                }
                self.on_event(side, e);
            }
            for id in readable {
                let closed = events.contains(&Event::Closed(id));
                let v = self.view(side, id).expect("checked");
                if !closed && !v.released {
                    assert!(
                        self.pair.session(side).stream_unread(id) > Some(0),
                        "Readable({id}) with nothing to read"
                    );
                }
            }
        }
        self.check_limits();
    }

    fn on_event(&mut self, side: Side, e: &Event) {
        assert!(
            !self.ended_seen[idx(side)],
            "{side:?}: {e:?} after SessionEnded"
        );
        let peer = side.peer();
        match e {
            Event::Opened(id) => {
                let id = *id;
                assert!(
                    self.view(peer, id).is_some_and(|v| v.local),
                    "Opened({id}) that the peer did not open"
                );
                assert!(
                    !self.views.contains_key(&(idx(side), id.0)),
                    "Opened({id}) twice"
                );
                self.views.insert(
                    (idx(side), id.0),
                    View {
                        in_accept_queue: true,
                        ..View::default()
                    },
                );
                self.accept_queue[idx(side)].push_back(id);
            }
            Event::Readable(id) => {
                let v = self.live_view(side, *id, e);
                v.blocked_reader = false;
            }
            Event::Writable(id) => {
                let v = self.live_view(side, *id, e);
                v.blocked_writer = false;
            }
            Event::Finished(id) => {
                let id = *id;
                let v = self.live_view(side, id, e);
                assert!(!v.finished && !v.closed, "{e:?} twice or after Closed");
                v.finished = true;
                v.blocked_reader = false;
                assert!(
                    self.fin_legit(id, peer),
                    "FIN on {id} that the peer did not ask for"
                );
                let unread = self.pair.session(side).stream_unread(id).unwrap_or(0);
                let d = self.dir(id, peer);
                assert_eq!(
                    d.received + unread,
                    d.written,
                    "FIN on {id} before all its data"
                );
            }
            Event::Closed(id) => {
                let id = *id;
                let idle = self.session_config(side).idle_timeout().is_some();
                let v = self.live_view(side, id, e);
                assert!(!v.closed, "Closed({id}) twice");
                v.closed = true;
                v.blocked_reader = false;
                v.blocked_writer = false;
                let (finished, reset) = (v.finished, v.reset);
                let fin_asked = self.dir(id, side).fin_requested;
                if !finished || !fin_asked {
                    // Only the idle timeout or a reset closes a stream before both FINs.
                    assert!(
                        idle || reset,
                        "Closed({id}) without both FINs, an idle timeout or a reset"
                    );
                    self.view_mut(side, id).expired = true;
                    self.dir(id, side).fin_requested = true;
                }
            }
            Event::Reset { id, reason } => {
                let id = *id;
                let c = self.session_config(side);
                let expected = match (c.version(), reason) {
                    (Version::V1, ResetReason::StalledReader) => c.stalled_stream_timeout(),
                    (Version::V2, ResetReason::StalledWriter) => c.stalled_stream_timeout(),
                    (Version::V2, ResetReason::ReceiveBudget) => Some(Duration::ZERO),
                    _ => None,
                };
                assert!(expected.is_some(), "{side:?}: {e:?} in {:?}", c.version());
                let v = self.live_view(side, id, e);
                assert!(!v.reset, "{e:?} twice");
                v.reset = true;
                v.blocked_reader = false;
                v.blocked_writer = false;
                // Our FIN follows what was written.
                self.dir(id, side).fin_requested = true;
            }
            Event::SessionEnded(reason) => {
                let s = self.pair.session(side);
                assert_eq!(s.end_reason(), Some(reason), "SessionEnded reason");
                assert!(
                    !matches!(reason, SessionEnd::Protocol(_)),
                    "protocol error between two of our sessions: {reason}"
                );
                self.ended_seen[idx(side)] = true;
                for ((s, _), v) in self.views.iter_mut() {
                    if *s == idx(side) {
                        v.blocked_reader = false;
                        v.blocked_writer = false;
                    }
                }
            }
            other => panic!("unknown event {other:?}"),
        }
    }

    /// The view of a stream an event names: known and not released.
    fn live_view(&mut self, side: Side, id: StreamId, e: &Event) -> &mut View {
        let v = self
            .views
            .get_mut(&(idx(side), id.0))
            .unwrap_or_else(|| panic!("{side:?}: {e:?} for a stream never opened"));
        assert!(!v.released, "{side:?}: {e:?} after close_stream");
        v
    }

    fn check_limits(&mut self) {
        for side in [Side::Client, Side::Server] {
            let c = self.configs[idx(side)].clone();
            // Version 2: a stream holds at most its window (tuned or not) or the protocol's
            // initial one; a tuned window stays within `max_stream_window`.
            let max_window = c.max_stream_window().max(c.stream_window());
            let stream_limit = |s: &mut smux_proto::Session, id: u32| match c.version() {
                Version::V1 => c.max_stream_unread(),
                Version::V2 => {
                    let w = s
                        .stream_stats(StreamId(id))
                        .and_then(|st| st.receive_window)
                        .unwrap_or(0);
                    assert!(
                        w <= u64::from(max_window),
                        "stream {id}: window {w} > {max_window}"
                    );
                    w.max(u64::from(INITIAL_PEER_WINDOW)) as usize
                }
            };
            // A link takes frames while it holds less than its capacity (which may have just
            // shrunk): one frame over, at most.
            let link_limit = self
                .pair
                .link_capacity
                .saturating_add(8 + c.max_frame_size());
            let in_flight = self.pair.in_flight(side);
            let before = std::mem::replace(&mut self.in_flight[idx(side)], in_flight);
            assert!(in_flight <= before.max(link_limit), "link over capacity");
            let ended_seen = self.ended_seen[idx(side)];
            let ids: Vec<u32> = self
                .views
                .keys()
                .filter(|(s, _)| *s == idx(side))
                .map(|(_, id)| *id)
                .collect();
            let s = self.pair.session(side);
            // Both versions hold at most the budget: version 1 stops reading there, version 2
            // resets streams. Version 2 also grants windows within the budget (each stream's
            // initial one is the protocol's).
            assert!(s.unread_held() <= c.max_session_unread(), "receive budget");
            if c.version() == Version::V2 {
                assert!(
                    s.credit_owed()
                        <= c.max_session_unread() + s.num_streams() * INITIAL_PEER_WINDOW as usize,
                    "windows granted past the budget"
                );
            }
            assert!(s.queued_bytes() <= c.max_session_queued(), "output queue");
            assert!(s.num_streams() <= c.max_streams(), "stream limit");
            assert_eq!(s.is_ended(), ended_seen, "SessionEnded reported once");
            if s.is_ended() {
                assert_eq!(s.poll_timeout(), None, "timers after the end");
                assert!(!s.wants_input() && !s.has_output(), "I/O after the end");
                assert_eq!(s.queued_bytes(), 0, "output kept after the end");
            }
            for id in ids {
                if let Some(u) = s.stream_unread(StreamId(id)) {
                    let limit = stream_limit(s, id);
                    assert!(u <= limit, "stream {id} holds {u} > {limit}");
                }
            }
        }
    }

    /// Unstalls the links, then pumps, accepts and reads until nothing moves.
    fn settle(&mut self) {
        self.pair.set_stalled(Side::Client, false);
        self.pair.set_stalled(Side::Server, false);
        for _ in 0..MAX_SETTLE_ROUNDS {
            let mut progress = self.pair.drive();
            self.after_op();
            for side in [Side::Client, Side::Server] {
                while self.accept(side) {
                    progress += 1;
                    self.after_op();
                }
                let ids: Vec<u32> = self
                    .views
                    .iter()
                    .filter(|((s, _), v)| *s == idx(side) && v.usable && !v.released)
                    .map(|((_, id), _)| *id)
                    .collect();
                for id in ids {
                    let id = StreamId(id);
                    loop {
                        let eof_before = self.dirs.get(&(id.0, idx(side.peer())));
                        let eof_before = eof_before.is_some_and(|d| d.eof_seen);
                        let (n, eof) = self.read(side, id, 1 << 16, false);
                        self.after_op();
                        progress += n + usize::from(eof && !eof_before);
                        if n == 0 {
                            break;
                        }
                    }
                }
            }
            if progress == 0 {
                return;
            }
        }
        panic!("the pair did not settle in {MAX_SETTLE_ROUNDS} rounds");
    }

    /// After `settle`: what must have arrived did.
    fn check_delivery(&mut self) {
        let end = |m: &Model, side: Side| match side {
            Side::Client => m.pair.client.end_reason().cloned(),
            Side::Server => m.pair.server.end_reason().cloned(),
        };
        for side in [Side::Client, Side::Server] {
            let s = self.pair.session(side);
            if !s.is_ended() {
                assert!(!s.has_output(), "{side:?} has output after settling");
                assert!(s.wants_input(), "{side:?} stalled after settling");
                assert_eq!(s.queued_bytes(), 0, "{side:?} kept output");
                assert_eq!(s.unread_held(), 0, "{side:?} holds memory for nothing");
            }
        }
        let keys: Vec<(u32, usize)> = self.dirs.keys().copied().collect();
        for (id, w) in keys {
            let writer = if w == 0 { Side::Client } else { Side::Server };
            let reader = writer.peer();
            let id = StreamId(id);
            // A writer is never left waiting for room its peer will not give: not for a reader
            // that was reset, released or closed by the idle timeout either (version 2 keeps
            // their windows moving until our FIN).
            if end(self, writer).is_none() && end(self, reader).is_none() {
                let d_fin = self.dirs[&(id.0, w)].fin_requested;
                if let Some(wv) = self.view(writer, id) {
                    let done = wv.released || wv.expired || wv.reset || d_fin;
                    assert!(
                        done || !wv.blocked_writer,
                        "{id} on {writer:?}: stranded writer"
                    );
                }
            }
            let writer_ok = matches!(end(self, writer), None | Some(SessionEnd::Closed));
            let reader_alive = end(self, reader).is_none()
                && self
                    .view(reader, id)
                    .is_some_and(|v| v.usable && !v.released && !v.lost_data());
            if !(writer_ok && reader_alive) {
                continue;
            }
            let d = &self.dirs[&(id.0, w)];
            assert_eq!(
                d.received, d.written,
                "{id} from {writer:?}: data lost on a live pair"
            );
            if d.fin_requested {
                assert!(d.eof_seen, "{id} from {writer:?}: FIN lost on a live pair");
            }
            // A writer refused for lack of room heard that room came back.
            let Some(wv) = self.view(writer, id) else {
                // It refused the stream: nothing written, nothing to wait for.
                assert_eq!(d.written, 0);
                continue;
            };
            if end(self, writer).is_none() && !d.fin_requested && !wv.released && !wv.expired {
                assert!(
                    !wv.blocked_writer,
                    "{id} on {writer:?}: Writable never came"
                );
            }
        }
    }
}

/// The `pair` target body.
pub fn pair(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let version = if setup.v2 { Version::V2 } else { Version::V1 };
    let configs = [setup.client.config(version), setup.server.config(version)];
    let mut pair =
        Pair::new(configs[0].clone(), configs[1].clone(), Instant::now()).expect("valid configs");
    pair.chunk = match setup.chunk {
        0 => usize::MAX,
        c => usize::from(c),
    };
    pair.link_capacity = 64 + usize::from(setup.link_capacity) * 8;
    let mut m = Model {
        pair,
        configs,
        streams: Vec::new(),
        views: BTreeMap::new(),
        dirs: BTreeMap::new(),
        accept_queue: [VecDeque::new(), VecDeque::new()],
        ended_seen: [false; 2],
        last_local: [1, 0],
        in_flight: [0; 2],
    };
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        m.apply(op);
    }
    m.settle();
    m.check_delivery();
}
