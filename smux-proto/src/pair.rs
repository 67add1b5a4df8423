//! A deterministic in-memory pair of sessions with virtual time, for tests, fuzzing and
//! benchmarks of code built on this crate.
//!
//! Each direction is a link of bounded capacity (like a socket buffer): frames move from the
//! sender's [`Session::poll_transmit`] into the link while it has room, and from the link into
//! the receiver in chunks of a size the caller picks. A link can be stalled. Time moves only
//! when [`Pair::advance`] says so.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::{Config, ConfigError, Event, Role, Session};

/// One side of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client session.
    Client,
    /// The server session.
    Server,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// One direction of the pair: bytes sent by one side and not yet taken by the other, each
/// with the instant from which it may be delivered.
#[derive(Debug, Default)]
struct Link {
    segments: VecDeque<(Instant, Bytes)>,
    bytes: usize,
    stalled: bool,
}

/// A client and a server session joined by two in-memory links.
#[derive(Debug)]
pub struct Pair {
    /// The client session.
    pub client: Session,
    /// The server session.
    pub server: Session,
    /// Virtual time.
    pub now: Instant,
    /// Events each side reported, oldest first, until taken by the caller.
    pub client_events: VecDeque<Event>,
    /// See `client_events`.
    pub server_events: VecDeque<Event>,
    /// Bytes a link holds before the sender stops handing out frames.
    pub link_capacity: usize,
    /// Largest input chunk delivered at once (re-chunking); `usize::MAX` for whole segments.
    pub chunk: usize,
    /// One-way delay of both links: a frame handed to a link at `now` is delivered from
    /// `now + delay` on. Zero by default.
    pub delay: Duration,
    to_server: Link,
    to_client: Link,
    headers: BytesMut,
}

impl Pair {
    /// A pair created at `now`, with a link capacity of 256 KiB and whole-segment delivery.
    pub fn new(client: Config, server: Config, now: Instant) -> Result<Pair, ConfigError> {
        Ok(Pair {
            client: Session::new(Role::Client, client, now)?,
            server: Session::new(Role::Server, server, now)?,
            now,
            client_events: VecDeque::new(),
            server_events: VecDeque::new(),
            link_capacity: 256 * 1024,
            chunk: usize::MAX,
            delay: Duration::ZERO,
            to_server: Link::default(),
            to_client: Link::default(),
            headers: BytesMut::new(),
        })
    }

    /// The session on `side`.
    pub fn session(&mut self, side: Side) -> &mut Session {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// The events `side` has reported and the caller has not taken.
    pub fn events(&mut self, side: Side) -> &mut VecDeque<Event> {
        match side {
            Side::Client => &mut self.client_events,
            Side::Server => &mut self.server_events,
        }
    }

    fn link(&mut self, from: Side) -> &mut Link {
        match from {
            Side::Client => &mut self.to_server,
            Side::Server => &mut self.to_client,
        }
    }

    /// Stops (or resumes) delivery of what `from` sends.
    pub fn set_stalled(&mut self, from: Side, stalled: bool) {
        self.link(from).stalled = stalled;
    }

    /// Bytes `from` has sent that the other side has not taken.
    pub fn in_flight(&self, from: Side) -> usize {
        let l = match from {
            Side::Client => &self.to_server,
            Side::Server => &self.to_client,
        };
        l.bytes
    }

    /// Moves events of both sessions into `client_events` / `server_events`.
    pub fn collect_events(&mut self) {
        while let Some(e) = self.client.poll_event() {
            self.client_events.push_back(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push_back(e);
        }
    }

    /// Moves frames from `from`'s session into its link while the link has room. Returns the
    /// bytes moved.
    pub fn transmit(&mut self, from: Side) -> usize {
        let now = self.now;
        let due = now + self.delay;
        let cap = self.link_capacity;
        let mut moved = 0;
        loop {
            if self.link(from).bytes >= cap {
                break;
            }
            let Some(t) = self.session(from).poll_transmit(now) else {
                break;
            };
            self.headers.extend_from_slice(&t.header);
            let header = self.headers.split().freeze();
            moved += t.wire_len();
            let link = self.link(from);
            link.bytes += t.wire_len();
            link.segments.push_back((due, header));
            if !t.payload.is_empty() {
                link.segments.push_back((due, t.payload));
            }
        }
        moved
    }

    /// Feeds what `from` sent to the other side, in chunks of at most [`Pair::chunk`] bytes,
    /// while the receiver takes input. Returns the bytes taken.
    pub fn deliver(&mut self, from: Side) -> usize {
        self.deliver_up_to(from, usize::MAX)
    }

    /// Like [`Pair::deliver`], stopping after `limit` bytes (a partial delivery).
    pub fn deliver_up_to(&mut self, from: Side, limit: usize) -> usize {
        let now = self.now;
        let to = from.peer();
        let mut taken = 0;
        while taken < limit {
            let max = self.chunk.min(limit - taken).max(1);
            let link = self.link(from);
            if link.stalled {
                break;
            }
            if link.segments.front().is_some_and(|(due, _)| *due > now) {
                // What is still on its way.
                break;
            }
            let Some((due, mut input)) = link.segments.pop_front() else {
                // A drained link gives back what a burst made it hold.
                if link.segments.capacity() > 64 {
                    link.segments = VecDeque::new();
                }
                // Let a session resume a frame it held back once room appeared.
                let s = self.session(to);
                if s.wants_input() {
                    s.handle_input(now, &mut Bytes::new());
                }
                break;
            };
            if input.len() > max {
                link.segments.push_front((due, input.split_off(max)));
            }
            link.bytes -= input.len();
            let session = self.session(to);
            if session.wants_input() || session.is_ended() {
                let before = input.len();
                session.handle_input(now, &mut input);
                taken += before - input.len();
            }
            if !input.is_empty() {
                let link = self.link(from);
                link.bytes += input.len();
                link.segments.push_front((due, input));
                break;
            }
        }
        taken
    }

    /// Moves frames both ways until nothing moves, collecting events. Returns the bytes moved.
    pub fn drive(&mut self) -> usize {
        let mut total = 0;
        loop {
            let moved = self.transmit(Side::Client)
                + self.transmit(Side::Server)
                + self.deliver(Side::Client)
                + self.deliver(Side::Server);
            self.collect_events();
            if moved == 0 {
                return total;
            }
            total += moved;
        }
    }

    /// Moves virtual time forward by `by` and runs both sessions' due timers.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.collect_events();
    }
}
