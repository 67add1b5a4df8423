//! `MuxBuilder`, written once for both adapters: generic over the adapter family `F` (the
//! adapters name it with `F` fixed, as `MuxBuilder<S>`), with type states for the role, the
//! options and the transport.

use std::marker::PhantomData;

use crate::conn::Conn;
use crate::options::Options;
use crate::sync::Arc;
use crate::{Acceptor, Adapter, Bind, Connector, Runtime, Worker};

/// Builder state before the role is chosen.
#[derive(Debug)]
pub struct Begin {
    _private: (),
}

/// Builder state holding the options.
#[derive(Debug, Clone)]
pub struct WithConfig {
    options: Options,
}

/// Builder state holding the options and the transport.
#[derive(Debug)]
pub struct WithConnection<T> {
    options: Options,
    connection: T,
}

/// Builds a session: choose the role ([`MuxBuilder::client`] or
/// [`MuxBuilder::server`]), set options, give the transport
/// ([`MuxBuilder::with_connection`]), then `build()`.
///
/// Every option is optional. Keep-alive and the idle timeout are off unless set; when
/// talking to a Go peer, turn keep-alive on (Go drops a peer that is silent for 30 s).
#[derive(Debug)]
pub struct MuxBuilder<S, F> {
    state: S,
    _family: PhantomData<fn() -> F>,
}

impl<F> MuxBuilder<Begin, F> {
    /// A client: the streams it opens have odd ids (3, 5, ...).
    pub fn client() -> MuxBuilder<WithConfig, F> {
        MuxBuilder {
            _family: PhantomData,
            state: WithConfig {
                options: Options::new(crate::smux_proto::Role::Client),
            },
        }
    }

    /// A server: the streams it opens have even ids (2, 4, ...).
    pub fn server() -> MuxBuilder<WithConfig, F> {
        MuxBuilder {
            _family: PhantomData,
            state: WithConfig {
                options: Options::new(crate::smux_proto::Role::Server),
            },
        }
    }
}

impl<F> MuxBuilder<WithConfig, F> {
    /// Send a NOP keep-alive frame every `interval_secs` seconds. Default: off.
    ///
    /// # Panics
    /// In `build()`, above a year.
    pub fn with_keep_alive_interval(&mut self, interval_secs: std::num::NonZeroU64) -> &mut Self {
        self.state.options.keep_alive_interval(interval_secs);
        self
    }

    /// End the session when no frame has arrived from the peer for `timeout_secs`
    /// seconds. Default: three keep-alive intervals, once an interval is set.
    ///
    /// # Panics
    /// In `build()`, above a year or if shorter than the keep-alive interval.
    pub fn with_keep_alive_timeout(&mut self, timeout_secs: std::num::NonZeroU64) -> &mut Self {
        self.state.options.keep_alive_timeout(timeout_secs);
        self
    }

    /// Close a stream (FIN; reads end, writes fail with `BrokenPipe`) when no data has
    /// been sent or received on it for `timeout_secs` seconds and none waits to be
    /// read or sent. It fires between one and two periods after the last data.
    /// Default: off.
    ///
    /// # Panics
    /// In `build()`, above a year.
    pub fn with_idle_timeout(&mut self, timeout_secs: std::num::NonZeroU64) -> &mut Self {
        self.state.options.idle_timeout(timeout_secs);
        self
    }

    /// Frames (of the maximum frame size) a stream may have queued before its
    /// `poll_write` returns `Pending`. A stream holds at most an eighth of the session's
    /// queue of 2 MiB as well (256 KiB), so that concurrent writers share the connection;
    /// a write that finds nothing queued ahead goes to the transport without queueing.
    /// Default: 1,024.
    pub fn with_max_tx_queue(&mut self, size: std::num::NonZeroUsize) -> &mut Self {
        self.state.options.max_tx_queue(size);
        self
    }

    /// The session's receive budget, in frames of the maximum frame size (32 KiB by
    /// default; at least one frame of 65,535 bytes): the memory all streams together may hold
    /// for data received and not yet read, streams waiting to be accepted included. `n`
    /// frames are `n × max frame size` bytes. Default: 128 frames (4 MiB) in version 1, 1,024
    /// frames (32 MiB) in version 2.
    ///
    /// Version 1 stops reading the transport at the budget until the application reads.
    /// Version 2 never stops reading a peer that keeps to its windows (that can deadlock both
    /// sides); when a frame would take it past the budget, the stream holding the most unread
    /// data is reset instead (its reads fail with `ConnectionReset`, the peer gets a FIN, and
    /// the other streams go on). The version-2 default holds the initial windows (256 KiB
    /// each, which the protocol lets a peer send before it hears from us) of 128 fresh
    /// streams.
    pub fn with_max_rx_queue(&mut self, size: std::num::NonZeroUsize) -> &mut Self {
        self.state.options.max_rx_queue(size);
        self
    }

    /// Reset a stream that holds the session up for `timeout_secs` seconds: its unread data
    /// is dropped, FIN is sent (the peer reads a clean end), and its reads and writes fail
    /// with a `ConnectionReset` error that says why. Default: off.
    ///
    /// Version 1: when input has been paused that long because unread data is at a limit
    /// (per stream, or the session's: `with_max_rx_queue`), the stream whose frame is at its
    /// own limit, or, at the session's limit, the stream holding the most unread data is
    /// reset, and input resumes. Off, input waits for the slowest reader however long it
    /// takes.
    ///
    /// Version 2 never stops reading; there the timeout is for our writers. A stream whose
    /// writer has waited that long for the peer's window is reset. A slow reader on the other
    /// side is back-pressure: its window reopens as it reads, and the wait starts over. A
    /// gone one never reopens it: a Go peer that closes a stream drops the data that still
    /// arrives without a window update, and without this timeout our writer waits for good.
    ///
    /// # Panics
    /// In `build()`, above a year.
    pub fn with_stalled_stream_timeout(&mut self, timeout_secs: std::num::NonZeroU64) -> &mut Self {
        self.state.options.stalled_stream_timeout(timeout_secs);
        self
    }

    /// How long a peer SYN past a full accept backlog waits while the acceptor accepts
    /// nothing. While it waits, the session reads no further input; once nothing has
    /// been accepted for this long, SYNs past the backlog are refused with a FIN (the
    /// peer reads a clean end of stream) until a stream is accepted again. Once the
    /// acceptor is dropped they are refused at once. Default: 1 s.
    ///
    /// # Panics
    /// In `build()`, zero or above a year.
    pub fn with_accept_stall_timeout(&mut self, timeout: std::time::Duration) -> &mut Self {
        self.state.options.accept_stall_timeout(timeout);
        self
    }

    /// How long the transport stays open after an orderly end this side began (`close()`, or
    /// every handle dropped): the worker has written everything, sent every FIN and shut down
    /// the transport's write side, and now reads and drops what the peer still sends until the
    /// peer closes its side, at most this long, before it drops the transport. Closing a TCP
    /// socket with input unread makes the kernel reset the connection, and the peer then loses
    /// what it had received but not yet read; lingering avoids that. Handles see the end at
    /// once (`close()` returns when the shutdown is done); the worker's future ends after the
    /// linger. Zero drops the transport at once. Default: 2 s.
    ///
    /// # Panics
    /// Above a year.
    pub fn with_close_linger(&mut self, linger: std::time::Duration) -> &mut Self {
        self.state.options.close_linger(linger);
        self
    }

    /// The protocol version; both sides must agree (or the server takes the client's, with
    /// [`with_auto_version`](Self::with_auto_version)). Default: version 1. The last of
    /// `with_version` and `with_auto_version` called wins.
    pub fn with_version(&mut self, version: crate::smux_proto::Version) -> &mut Self {
        self.state.options.version(version);
        self
    }

    /// Server side: speak whichever version (1 or 2) the client's first frame carries. Until
    /// that frame arrives nothing is sent: keep-alives and the SYNs of streams this side
    /// opens wait for it, and [`Connector::version`](crate::Connector::version) is `None`.
    /// The last of `with_version` and `with_auto_version` called wins.
    ///
    /// # Panics
    /// On a client builder: the client's first frame is what sets the version, so a client
    /// must choose one.
    pub fn with_auto_version(&mut self) -> &mut Self {
        self.state.options.auto_version();
        self
    }

    /// Version 2: the per-stream window we advertise, in bytes; with window tuning, where a
    /// stream's window starts. Default: 256 KiB.
    ///
    /// # Panics
    /// In `build()`, below 65,535 or above 2^31 - 1 (what a Go peer can read).
    pub fn with_stream_window(&mut self, bytes: u32) -> &mut Self {
        self.state.options.stream_window(bytes);
        self
    }

    /// Version 2: how far a stream's window may grow when it tunes itself
    /// ([`MuxBuilder::with_window_tuning`]), in bytes; never below the starting window, and
    /// within the session's window budget ([`MuxBuilder::with_max_session_window`]).
    /// Default: 16 MiB.
    ///
    /// # Panics
    /// In `build()`, above 2^31 - 1 (what a Go peer can read).
    pub fn with_max_stream_window(&mut self, bytes: u32) -> &mut Self {
        self.state.options.max_stream_window(bytes);
        self
    }

    /// Version 2: what the windows we grant may let the peer send on all streams together, in
    /// bytes (a connection-wide window); at most the receive budget (`with_max_rx_queue`).
    /// Windows far past the path's bandwidth-delay product add only queueing, and a request
    /// beside bulk transfers waits behind it: raise it for paths whose product is larger.
    /// The protocol's initial windows (256 KiB per fresh stream) are outside it. Default:
    /// 4 MiB.
    pub fn with_max_session_window(&mut self, bytes: std::num::NonZeroUsize) -> &mut Self {
        self.state.options.max_session_window(bytes);
        self
    }

    /// Version 2: whether stream windows tune themselves. When the peer is held back by a
    /// stream's window while our reader keeps up, the window doubles (up to
    /// [`MuxBuilder::with_max_stream_window`] and within the session's receive budget), so a
    /// stream across a link with a long round trip is not capped at window / round trip.
    /// Fresh streams start from the largest window the session tuned. Windows never shrink;
    /// Go peers honour whatever window we advertise. Default: on.
    pub fn with_window_tuning(&mut self, on: bool) -> &mut Self {
        self.state.options.window_tuning(on);
        self
    }

    /// Largest payload of a frame we send, in bytes. Default: 32,768, as Go.
    ///
    /// # Panics
    /// In `build()`, outside 1..=65,535.
    pub fn with_max_frame_size(&mut self, bytes: usize) -> &mut Self {
        self.state.options.max_frame_size(bytes);
        self
    }

    /// Streams open at once, both directions together; beyond it `connect()` fails and
    /// peer SYNs are refused with a FIN. Default: 65,536.
    pub fn with_max_streams(&mut self, streams: std::num::NonZeroUsize) -> &mut Self {
        self.state.options.max_streams(streams);
        self
    }

    /// Peer-opened streams waiting for `accept()`; beyond it peer SYNs are refused
    /// with a FIN. Default: 1,024.
    pub fn with_max_accept_backlog(&mut self, streams: std::num::NonZeroUsize) -> &mut Self {
        self.state.options.max_accept_backlog(streams);
        self
    }

    /// The transport to multiplex.
    pub fn with_connection<T>(&mut self, connection: T) -> MuxBuilder<WithConnection<T>, F> {
        MuxBuilder {
            _family: PhantomData,
            state: WithConnection {
                options: self.state.options.clone(),
                connection,
            },
        }
    }
}

/// The handles [`MuxBuilder::build`] returns for adapter family `F` and transport `T`.
type Built<T, F> = (
    Connector<<F as Bind<T>>::Adapter>,
    Acceptor<<F as Bind<T>>::Adapter>,
    Worker<<F as Bind<T>>::Adapter>,
);

impl<T, F: Bind<T>> MuxBuilder<WithConnection<T>, F> {
    /// Builds the session: a connector, an acceptor, and the worker to spawn.
    ///
    /// # Panics
    /// If a value is out of range (each setter gives its range), or the keep-alive timeout is
    /// shorter than the interval.
    pub fn build(self) -> Built<T, F> {
        let WithConnection {
            options,
            connection,
        } = self.state;
        let config = options.config();
        let now = <<F::Adapter as Adapter>::Runtime as Runtime>::now();
        let (read, write) = F::split(connection);
        let conn = Arc::new(Conn::new(
            write,
            options.role(),
            config,
            now,
            2,
            options.linger(),
        ));
        (
            Connector::new(Arc::clone(&conn)),
            Acceptor::new(Arc::clone(&conn)),
            Worker::new(conn, read),
        )
    }
}
