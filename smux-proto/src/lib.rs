//! The smux multiplexing protocol, versions 1 and 2, as a pure state machine.
//!
//! smux carries many bidirectional streams over one reliable byte transport, speaking the wire
//! protocol of the Go reference implementation (`github.com/xtaci/smux`). This crate is the
//! protocol and nothing else: no I/O, no async, no clock, no threads. Transport bytes and the
//! current time go in; frames to send, stream data and events come out. The `smux-tokio` and
//! `smux-futures` crates drive it over async transports; you can drive it from any event loop.
//!
//! **The contract: after every input ([`Session::handle_input`], [`Session::handle_timeout`],
//! [`Session::handle_eof`]) and every command ([`Session::open`], [`Session::write`],
//! [`Session::read`], [`Session::shutdown`], [`Session::close_stream`], [`Session::close`]),
//! drain the output: call [`Session::poll_transmit`] until it returns `None` and write what it
//! gives to the transport, and [`Session::poll_event`] until it returns `None`. Call
//! [`Session::handle_timeout`] at [`Session::poll_timeout`]. Read the transport only while
//! [`Session::wants_input`] is true.**
//!
//! Backpressure is a return value: [`Session::write`] takes what fits and returns
//! [`StreamError::Blocked`] when nothing does, and [`Event::Writable`] says when to try again.
//! Every quantity a peer can make a session hold has a limit in [`Config`].
//!
//! # Example
//!
//! Two sessions wired back to back in memory:
//!
//! ```
//! use smux_proto::{Config, Event, Role, Session};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut client = Session::new(Role::Client, Config::default(), now).unwrap();
//! let mut server = Session::new(Role::Server, Config::default(), now).unwrap();
//!
//! // Moves everything `from` has to send into `to`.
//! fn deliver(from: &mut Session, to: &mut Session, now: Instant) {
//!     while let Some(t) = from.poll_transmit(now) {
//!         let mut wire = bytes::BytesMut::new();
//!         wire.extend_from_slice(&t.header);
//!         wire.extend_from_slice(&t.payload);
//!         to.handle_input(now, &mut wire.freeze());
//!     }
//! }
//!
//! let id = client.open().unwrap();
//! assert_eq!(client.write(id, b"hello").unwrap(), 5);
//! client.shutdown(id).unwrap();
//! deliver(&mut client, &mut server, now);
//!
//! assert_eq!(server.poll_event(), Some(Event::Opened(id)));
//! let accepted = server.accept().unwrap();
//! let mut buf = [0u8; 16];
//! let n = server.read(accepted, &mut buf).unwrap();
//! assert_eq!(&buf[..n], b"hello");
//! assert_eq!(server.read(accepted, &mut buf).unwrap(), 0); // FIN: end of stream
//! ```
//!
//! # Protocol notes
//!
//! - Stream ids: a client opens 3, 5, 7, ..., a server 2, 4, 6, ... When ids run out,
//!   [`Session::open`] fails with [`OpenError::IdsExhausted`] and the session goes on.
//! - A peer SYN for an id of our own parity, or beyond `max_streams` or the accept backlog, is
//!   answered with a FIN (past the backlog it may wait first: [`Session::set_hold_opens`]); a
//!   duplicate SYN is ignored; a NOP on a non-zero stream counts as a
//!   keep-alive. PSH, FIN and UPD for unknown streams are dropped without a reply, and so is a
//!   PSH after the peer's FIN.
//! - Malformed frames end the session with a [`ProtocolError`] naming what the peer did.
//! - Version 2: a peer may send [`INITIAL_PEER_WINDOW`] bytes before it has heard from us;
//!   that is accepted. We never stop reading a peer that keeps to our windows; the windows are
//!   granted out of the receive budget instead (see [`Config::max_session_unread`]). An UPD
//!   moves the edge (`consumed + window`) right on the first read and then every half window
//!   read, never left.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Layers, bottom up: `wire` (the protocol's vocabulary), `error`, `frame` (the header codec),
// `config`; then `decode`, `timer`, `hasher`, `flow` (version 2 window accounting); then
// `stream` (one stream's state: it knows nothing above it), `table` (the stream table and its
// queues of ids), `scheduler`; then `session`.
mod config;
mod decode;
mod error;
mod flow;
pub mod frame;
mod hasher;
pub mod pair;
mod scheduler;
mod session;
mod stream;
mod table;
mod timer;
mod wire;

pub use config::{Config, Role, MAX_TIMER};
pub use error::{ConfigError, OpenError, ProtocolError, ResetReason, SessionEnd, StreamError};
pub use frame::Header;
pub use hasher::{IdHash, IdHasher};
pub use session::{Event, Session, SessionStats, StreamStats, Transmit};
pub use stream::QueuedAhead;
pub use wire::{Cmd, StreamId, Version, INITIAL_PEER_WINDOW, MAX_WINDOW};

#[cfg(test)]
mod tests;
