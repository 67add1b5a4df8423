//! Property tests: a pair of sessions driven by random operation sequences, versions 1 and 2.
//!
//! Checked after every operation: held memory within the configured limits, and (version 2) no
//! stream holding more than flow control allows. Checked at the end, after the links are
//! unstalled and everything is read: every byte written arrived once and in order, FIN after
//! the data, no protocol error, and the same result whatever the chunking of the byte stream.
//! A version-2 stream the receive budget reset (its reads fail, nothing is delivered wrong) is
//! left out of the last two: chunking moves the memory a queue's slots take, and with it which
//! frame finds the budget full.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use smux_proto::pair::{Pair, Side};
use smux_proto::{Config, Event, SessionEnd, StreamError, StreamId, Version, INITIAL_PEER_WINDOW};

#[derive(Debug, Clone)]
enum Op {
    Open(Side),
    Write {
        side: Side,
        stream: usize,
        len: usize,
    },
    Read {
        side: Side,
        stream: usize,
        max: usize,
    },
    Shutdown {
        side: Side,
        stream: usize,
    },
    Close {
        side: Side,
        stream: usize,
    },
    Advance {
        ms: u64,
    },
    Deliver {
        from: Side,
        bytes: usize,
    },
    Stall {
        from: Side,
        on: bool,
    },
    Drive,
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Server)]
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0usize..4096, 2 => 0usize..70_000, 1 => 0usize..=1 << 20]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => side().prop_map(Op::Open),
        6 => (side(), 0usize..8, size()).prop_map(|(side, stream, len)| Op::Write { side, stream, len }),
        4 => (side(), 0usize..8, size()).prop_map(|(side, stream, max)| Op::Read { side, stream, max }),
        1 => (side(), 0usize..8).prop_map(|(side, stream)| Op::Shutdown { side, stream }),
        1 => (side(), 0usize..8).prop_map(|(side, stream)| Op::Close { side, stream }),
        1 => (0u64..2000).prop_map(|ms| Op::Advance { ms }),
        3 => (side(), 1usize..100_000).prop_map(|(from, bytes)| Op::Deliver { from, bytes }),
        1 => (side(), any::<bool>()).prop_map(|(from, on)| Op::Stall { from, on }),
        3 => Just(Op::Drive),
    ]
}

/// The byte at `offset` of what `writer` sends on stream `id`: distinct per stream, direction
/// and position, so a lost, doubled or reordered byte shows.
fn pattern(id: StreamId, writer: Side, offset: usize) -> u8 {
    let d = if writer == Side::Client { 0x5a } else { 0xa5 };
    (offset as u8).wrapping_mul(31) ^ (offset >> 8) as u8 ^ id.0 as u8 ^ d
}

/// One direction of one stream as the test sees it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Dir {
    written: usize,
    received: usize,
    writer_finished: bool,
    reader_closed: bool,
    eof_seen: bool,
    /// The reader's stream was reset: what was not read is gone.
    reset: bool,
}

struct Model {
    pair: Pair,
    /// Streams in the order they were opened: id and the side that opened it.
    streams: Vec<StreamId>,
    dirs: BTreeMap<(u32, u8), Dir>,
    closed: BTreeMap<(u32, u8), bool>,
    config: Config,
}

fn dir_key(id: StreamId, writer: Side) -> (u32, u8) {
    (id.0, (writer == Side::Client) as u8)
}

impl Model {
    fn new(config: Config, chunk: usize) -> Model {
        let mut pair = Pair::new(config.clone(), config.clone(), Instant::now()).unwrap();
        pair.chunk = chunk;
        pair.link_capacity = 128 * 1024;
        Model {
            pair,
            streams: Vec::new(),
            dirs: BTreeMap::new(),
            closed: BTreeMap::new(),
            config,
        }
    }

    fn stream(&self, idx: usize) -> Option<StreamId> {
        if self.streams.is_empty() {
            None
        } else {
            Some(self.streams[idx % self.streams.len()])
        }
    }

    /// Whether `side` can address stream `id`: it opened it, or the peer's SYN arrived.
    fn known(&self, side: Side, id: StreamId) -> bool {
        !self.closed.contains_key(&dir_key(id, side)) && self.pair_session_has(side, id)
    }

    fn pair_session_has(&self, side: Side, id: StreamId) -> bool {
        let s = match side {
            Side::Client => &self.pair.client,
            Side::Server => &self.pair.server,
        };
        s.stream_unread(id).is_some()
    }

    fn accept_all(&mut self) {
        for side in [Side::Client, Side::Server] {
            while self.pair.session(side).accept().is_some() {}
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Open(side) => {
                if let Ok(id) = self.pair.session(side).open() {
                    self.streams.push(id);
                }
            }
            Op::Write { side, stream, len } => {
                let Some(id) = self.stream(stream) else {
                    return;
                };
                if !self.known(side, id) {
                    return;
                }
                let d = self.dirs.entry(dir_key(id, side)).or_default();
                let data: Vec<u8> = (d.written..d.written + len)
                    .map(|o| pattern(id, side, o))
                    .collect();
                match self.pair.session(side).write(id, &data) {
                    Ok(n) => self.dirs.get_mut(&dir_key(id, side)).unwrap().written += n,
                    Err(
                        StreamError::Blocked
                        | StreamError::Finished
                        | StreamError::SessionEnded
                        | StreamError::Reset(_),
                    ) => {}
                    Err(e) => panic!("write: {e}"),
                }
            }
            Op::Read { side, stream, max } => {
                let Some(id) = self.stream(stream) else {
                    return;
                };
                self.read(side, id, max.max(1));
            }
            Op::Shutdown { side, stream } => {
                let Some(id) = self.stream(stream) else {
                    return;
                };
                if self.known(side, id) && self.pair.session(side).shutdown(id).is_ok() {
                    self.dirs
                        .entry(dir_key(id, side))
                        .or_default()
                        .writer_finished = true;
                }
            }
            Op::Close { side, stream } => {
                let Some(id) = self.stream(stream) else {
                    return;
                };
                if self.known(side, id) {
                    self.pair.session(side).close_stream(id);
                    self.closed.insert(dir_key(id, side), true);
                    self.dirs
                        .entry(dir_key(id, side))
                        .or_default()
                        .writer_finished = true;
                    self.dirs
                        .entry(dir_key(id, side.peer()))
                        .or_default()
                        .reader_closed = true;
                }
            }
            Op::Advance { ms } => self.pair.advance(Duration::from_millis(ms)),
            Op::Deliver { from, bytes } => {
                self.pair.transmit(from);
                self.pair.deliver_up_to(from, bytes);
                self.pair.collect_events();
            }
            Op::Stall { from, on } => self.pair.set_stalled(from, on),
            Op::Drive => {
                self.pair.drive();
            }
        }
        self.accept_all();
        self.note_resets();
    }

    /// A stream reset on one side: its FIN ends that side's direction (after what it had
    /// written), and what it had not read of the other direction is gone.
    fn note_resets(&mut self) {
        self.pair.collect_events();
        for side in [Side::Client, Side::Server] {
            let events = match side {
                Side::Client => std::mem::take(&mut self.pair.client_events),
                Side::Server => std::mem::take(&mut self.pair.server_events),
            };
            for e in events {
                if let Event::Reset { id, .. } = e {
                    self.dirs
                        .entry(dir_key(id, side))
                        .or_default()
                        .writer_finished = true;
                    self.dirs.entry(dir_key(id, side.peer())).or_default().reset = true;
                }
            }
        }
    }

    /// Reads up to `max` bytes of `id` on `reader`, checking them against the pattern.
    /// Returns the bytes read.
    fn read(&mut self, reader: Side, id: StreamId, max: usize) -> usize {
        if !self.known(reader, id) {
            return 0;
        }
        let mut buf = vec![0u8; max];
        let key = dir_key(id, reader.peer());
        match self.pair.session(reader).read(id, &mut buf) {
            Ok(0) => {
                let d = self.dirs.entry(key).or_default();
                assert!(d.writer_finished, "EOF on {id} before the writer finished");
                assert_eq!(d.received, d.written, "EOF on {id} before all data arrived");
                d.eof_seen = true;
                0
            }
            Ok(n) => {
                let d = self.dirs.entry(key).or_default();
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(
                        *b,
                        pattern(id, reader.peer(), d.received + i),
                        "byte {} of {id} from {:?} is wrong",
                        d.received + i,
                        reader.peer()
                    );
                }
                d.received += n;
                assert!(
                    d.received <= d.written,
                    "more arrived than was written on {id}"
                );
                n
            }
            Err(StreamError::Blocked | StreamError::SessionEnded) => 0,
            Err(StreamError::Reset(smux_proto::ResetReason::ReceiveBudget)) => {
                assert!(self.dirs.entry(key).or_default().reset, "reset unreported");
                0
            }
            Err(e) => panic!("read: {e}"),
        }
    }

    fn check_limits(&self) {
        let c = &self.config;
        for s in [&self.pair.client, &self.pair.server] {
            // Version 1 stops reading at the budget; version 2 never stops reading a peer within
            // its windows, bounds what the windows let it send (the initial window of each
            // stream is the protocol's, not ours to refuse), and resets streams to hold no
            // more than the budget.
            assert!(
                s.unread_held() <= c.max_session_unread(),
                "receive budget exceeded"
            );
            if c.version() == Version::V2 {
                assert!(
                    s.credit_owed()
                        <= c.max_session_unread() + s.num_streams() * INITIAL_PEER_WINDOW as usize,
                    "windows granted past the budget"
                );
            }
            assert!(
                s.queued_bytes() <= c.max_session_queued(),
                "output queue exceeded"
            );
            for id in &self.streams {
                if let Some(u) = s.stream_unread(*id) {
                    let limit = match c.version() {
                        Version::V1 => c.max_stream_unread(),
                        Version::V2 => c.stream_window().max(INITIAL_PEER_WINDOW) as usize,
                    };
                    assert!(u <= limit, "stream {id} holds {u} > {limit}");
                }
            }
            if let Some(SessionEnd::Protocol(e)) = s.end_reason() {
                panic!("protocol error between two of our sessions: {e}");
            }
        }
    }

    /// Unstalls the links and moves and reads everything there is.
    fn finish(&mut self) {
        self.pair.set_stalled(Side::Client, false);
        self.pair.set_stalled(Side::Server, false);
        loop {
            let mut progress = self.pair.drive();
            self.accept_all();
            self.note_resets();
            for id in self.streams.clone() {
                for reader in [Side::Client, Side::Server] {
                    loop {
                        let n = self.read(reader, id, 1 << 20);
                        progress += n;
                        if n == 0 {
                            break;
                        }
                    }
                }
            }
            self.check_limits();
            if progress == 0 {
                break;
            }
        }
        let ended = self.pair.client.is_ended() || self.pair.server.is_ended();
        for ((id, w), d) in &self.dirs {
            if ended || d.reader_closed || d.reset {
                continue;
            }
            assert_eq!(
                d.received, d.written,
                "stream {id} (writer client={w}) lost data"
            );
            if d.writer_finished {
                // One more read reports the FIN.
                let reader = if *w == 1 { Side::Server } else { Side::Client };
                let id = StreamId(*id);
                if self.known(reader, id) && !d.eof_seen {
                    assert_eq!(self.pair.session(reader).read(id, &mut [0u8; 1]), Ok(0));
                }
            }
        }
    }
}

fn run(config: &Config, ops: &[Op], chunk: usize) -> BTreeMap<(u32, u8), Dir> {
    let mut m = Model::new(config.clone(), chunk);
    for op in ops {
        m.apply(op);
        m.check_limits();
    }
    m.finish();
    m.dirs
}

fn config(version: Version, small: bool, keep_alive: bool) -> Config {
    let mut c = {
        let mut c = Config::default();
        c.with_version(version);
        c
    };
    if small {
        c.with_max_frame_size(4096);
        c.with_stream_window(65_535);
        c.with_max_stream_unread(65_535);
        c.with_max_session_unread(200_000);
        c.with_max_stream_queued(100_000);
        c.with_max_session_queued(300_000);
    }
    if keep_alive {
        c.with_keep_alive_interval(Some(Duration::from_secs(1)));
        c.with_keep_alive_timeout(Some(Duration::from_secs(5)));
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn bytes_arrive_once_in_order_and_chunking_changes_nothing(
        v2 in any::<bool>(),
        small in any::<bool>(),
        keep_alive in any::<bool>(),
        ops in prop::collection::vec(op(), 1..64),
        chunk in 1usize..100_000,
    ) {
        let version = if v2 { Version::V2 } else { Version::V1 };
        let c = config(version, small, keep_alive);
        let mut whole = run(&c, &ops, usize::MAX);
        let mut rechunked = run(&c, &ops, chunk);
        // Both directions of a stream either run reset.
        let reset: Vec<u32> = whole
            .iter()
            .chain(&rechunked)
            .filter(|(_, d)| d.reset)
            .map(|((id, _), _)| *id)
            .collect();
        whole.retain(|(id, _), _| !reset.contains(id));
        rechunked.retain(|(id, _), _| !reset.contains(id));
        prop_assert_eq!(whole, rechunked);
    }
}
