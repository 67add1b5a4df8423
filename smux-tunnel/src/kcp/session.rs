//! A KCP session over UDP: [`KcpStream`], a byte stream (Tokio's `AsyncRead + AsyncWrite`)
//! over the `kcp` crate's protocol engine, under a [`Codec`] and a UDP socket, configured as
//! kcptun configures kcp-go's sessions (stream mode, no write delay).
//!
//! Each session has a task that owns its timer: it runs KCP's updates when `check()` says, sends
//! what the socket could not take at once, and, for a client, reads the session's own socket. A
//! server's sessions get their datagrams from the listener's task ([`super::listener`]). Reads,
//! writes and received datagrams all work on the session's state under one lock, and each
//! sends what KCP outputs at once, on the calling task.
//!
//! KCP has no connection setup or teardown: a session starts with its first datagram, and ends
//! when its handle is dropped and its data acknowledged (or [`KcpSettings::linger`] has passed),
//! or when it hears nothing valid from its peer for [`KcpSettings::idle_timeout`].
//!
//! The kcp crate's engine is ikcp's; kcp-go's is ikcp's with changes. Both put the same
//! segments on the wire, so they interoperate; what differs is when each sends:
//! - kcp-go flushes as soon as an acknowledgement moves the send window, and the session does
//!   that here after each datagram (the crate would wait for the next update);
//! - acknowledgements wait for the next update in both, except that here KCP also flushes after
//!   every [`INPUTS_PER_FLUSH`] datagrams, so a sender with a small window is not held to one
//!   window per update interval;
//! - the crate times RTTs with the clock of its last update, so the session updates it (runs
//!   [`Kcp::update`]) before each input;
//! - retransmission differs in detail: the crate has no early retransmit, backs a segment's
//!   timeout off from the segment's own timeout (kcp-go, from the current estimate), adds an
//!   eighth to the first timeout without `nodelay`, fast-retransmits no segment sent more than
//!   5 times, counts duplicate acknowledgements for the highest one of a datagram only, and
//!   sends every acknowledgement (kcp-go drops those below its receive point but the last).

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use kcp::Kcp;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::listener::ListenerShared;
use super::mode::{KcpSettings, MTU_LIMIT};
use super::{Codec, DropReason};

/// KCP's segment header: conv, cmd, frg, wnd, ts, sn, una, len.
const KCP_HEADER: usize = kcp::KCP_OVERHEAD;
const CMD_PUSH: u8 = 81;

/// The receive buffer for one datagram: more than any MTU a peer may use, so that an oversized
/// datagram arrives whole and fails its checks rather than arriving cut.
pub(crate) const RECV_BUF: usize = 2048;

/// Datagrams a session's task reads from its socket before it handles them under one lock.
const RECV_BATCH: usize = 32;

/// Datagrams taken in since KCP last flushed, after which it flushes at once: acknowledgements
/// otherwise wait for the next update, so a sender whose window is small against the update
/// interval would stall, and the list of pending acknowledgements would grow with the input
/// rate.
const INPUTS_PER_FLUSH: u32 = 16;

/// The kcp crate refuses a `send` of 128 segments or more.
const SEND_CHUNK_SEGMENTS: usize = 64;

/// Free datagram buffers a session keeps for reuse.
const POOL: usize = 64;

/// A small, fast pseudo-random generator (xorshift64*), seeded from the standard library's
/// per-process random hash keys: conversation ids and nonces need to differ, not to be secret.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn seeded() -> Rng {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Rng(h.finish() | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Counts of what a socket's sessions did and dropped. A client's session has its own; a
/// listener's sessions share the listener's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KcpStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams the codec dropped as too short.
    pub dropped_truncated: u64,
    /// Datagrams the codec dropped for a wrong checksum.
    pub dropped_checksum: u64,
    /// Datagrams the codec dropped for a malformed FEC header or shard.
    pub dropped_fec: u64,
    /// KCP packets the session dropped: too short, another conversation, or malformed.
    pub dropped_kcp: u64,
    /// Datagrams from an address that is not the client's server.
    pub dropped_stranger: u64,
    /// Datagrams that would have opened a session beyond the listener's session cap.
    pub dropped_session_cap: u64,
    /// Datagrams that would have opened a session while the accept queue was full, or after
    /// the listener was dropped.
    pub dropped_backlog: u64,
    /// Outgoing datagrams dropped because the session's send queue was full (the socket had
    /// taken no more for a while; KCP retransmits them).
    pub dropped_outgoing: u64,
    /// Sends and receives the socket failed, other than "would block".
    pub socket_errors: u64,
    /// Sessions opened.
    pub sessions_opened: u64,
    /// Sessions ended for hearing nothing valid for the idle timeout.
    pub sessions_timed_out: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) datagrams_in: AtomicU64,
    pub(crate) datagrams_out: AtomicU64,
    pub(crate) dropped_truncated: AtomicU64,
    pub(crate) dropped_checksum: AtomicU64,
    pub(crate) dropped_fec: AtomicU64,
    pub(crate) dropped_kcp: AtomicU64,
    pub(crate) dropped_stranger: AtomicU64,
    pub(crate) dropped_session_cap: AtomicU64,
    pub(crate) dropped_backlog: AtomicU64,
    pub(crate) dropped_outgoing: AtomicU64,
    pub(crate) socket_errors: AtomicU64,
    pub(crate) sessions_opened: AtomicU64,
    pub(crate) sessions_timed_out: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn codec_drop(&self, reason: DropReason) {
        match reason {
            DropReason::Truncated => Counters::add(&self.dropped_truncated, 1),
            DropReason::Checksum => Counters::add(&self.dropped_checksum, 1),
            // Fec, and any reason added later.
            _ => Counters::add(&self.dropped_fec, 1),
        }
    }

    pub(crate) fn snapshot(&self) -> KcpStats {
        let g = |c: &AtomicU64| c.load(Relaxed);
        KcpStats {
            datagrams_in: g(&self.datagrams_in),
            datagrams_out: g(&self.datagrams_out),
            dropped_truncated: g(&self.dropped_truncated),
            dropped_checksum: g(&self.dropped_checksum),
            dropped_fec: g(&self.dropped_fec),
            dropped_kcp: g(&self.dropped_kcp),
            dropped_stranger: g(&self.dropped_stranger),
            dropped_session_cap: g(&self.dropped_session_cap),
            dropped_backlog: g(&self.dropped_backlog),
            dropped_outgoing: g(&self.dropped_outgoing),
            socket_errors: g(&self.socket_errors),
            sessions_opened: g(&self.sessions_opened),
            sessions_timed_out: g(&self.sessions_timed_out),
        }
    }
}

/// The codec and the datagrams sealed and not yet sent. KCP's output callback (owned by the
/// `Kcp`) and the session's input path both need the codec, hence its own lock; it is only
/// ever taken with the session's lock held, so it is never contended.
struct Wire {
    codec: Box<dyn Codec>,
    queue: VecDeque<Vec<u8>>,
    pool: Vec<Vec<u8>>,
    /// Most datagrams `queue` holds; beyond it new ones are dropped (and counted).
    cap: usize,
    counters: Arc<Counters>,
}

/// KCP's output: each write is one KCP packet, sealed into datagrams and queued.
struct Tx(Arc<Mutex<Wire>>);

impl io::Write for Tx {
    fn write(&mut self, packet: &[u8]) -> io::Result<usize> {
        let mut wire = lock(&self.0);
        let Wire {
            codec,
            queue,
            pool,
            cap,
            counters,
        } = &mut *wire;
        codec.seal(packet, &mut |datagram| {
            if queue.len() >= *cap {
                Counters::add(&counters.dropped_outgoing, 1);
                return;
            }
            let mut b = pool.pop().unwrap_or_default();
            b.clear();
            b.extend_from_slice(datagram);
            queue.push_back(b);
        });
        Ok(packet.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A lock whose holder panicked is still used: every method leaves the state consistent
/// between calls into the kcp crate, and a panic there would already have ended the program's
/// use of the session.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a received datagram did, for the listener.
pub(crate) enum Delivered {
    /// Taken in, or dropped and counted.
    Done,
    /// Its first packet belongs to another conversation; `sn` is that packet's sequence
    /// number (kcp-go replaces the session when it is 0).
    OtherConv { sn: u32 },
}

/// The wakers to wake once the lock is released.
#[derive(Default)]
struct Wakes(Option<Waker>, Option<Waker>, Option<Waker>);

impl Wakes {
    fn wake(self) {
        for w in [self.0, self.1, self.2].into_iter().flatten() {
            w.wake();
        }
    }
}

struct Core {
    kcp: Kcp<Tx>,
    wire: Arc<Mutex<Wire>>,
    epoch: Instant,
    acknodelay: bool,
    idle_timeout: Option<Duration>,
    linger: Duration,
    last_recv: Instant,
    /// Why the session ended; reads return what had arrived, then this error.
    end: Option<io::ErrorKind>,
    /// No more writes: the handle shut down its write side, or was dropped.
    write_shut: bool,
    /// The handle was dropped: the task ends once everything sent is acknowledged.
    handle_gone: bool,
    /// When a shut-down or dropped session stops waiting for acknowledgements.
    linger_until: Option<Instant>,
    /// The socket would not take a datagram: the task waits until it is writable.
    tx_blocked: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    closer: Option<Waker>,
    /// A received segment that did not fit the reader's buffer, and how much of it was read.
    leftover: Vec<u8>,
    leftover_at: usize,
    inputs_unflushed: u32,
    /// Packets the codec delivered from one datagram, end to end, and their ends.
    staging: Vec<u8>,
    staging_ends: Vec<usize>,
}

impl Core {
    fn now_ms(&self, now: Instant) -> u32 {
        // KCP's clock is milliseconds that wrap; peers only echo it back.
        (now.duration_since(self.epoch).as_millis() & 0xffff_ffff) as u32
    }

    /// Runs KCP's timer work if due, and sets its clock to now (it times RTTs and stamps
    /// segments with the clock of its last update).
    fn update(&mut self, now: Instant) {
        let ms = self.now_ms(now);
        // Fails only before the first update (made at creation) or if the output fails
        // (`Tx` does not).
        let _ = self.kcp.update(ms);
    }

    fn flush(&mut self, now: Instant) {
        self.update(now);
        let _ = self.kcp.flush();
        self.inputs_unflushed = 0;
    }

    fn send_room(&self) -> usize {
        let limit = usize::from(self.kcp.snd_wnd().min(self.kcp.rmt_wnd()));
        limit.saturating_sub(self.kcp.wait_snd())
    }

    /// Takes the wakers whose conditions now hold.
    fn wakes(&mut self, now: Instant) -> Wakes {
        let ended = self.end.is_some();
        let mut w = Wakes::default();
        if self.reader.is_some() && (ended || self.kcp.peeksize().is_ok()) {
            w.0 = self.reader.take();
        }
        if self.writer.is_some() && (ended || self.send_room() > 0) {
            w.1 = self.writer.take();
        }
        if self.closer.is_some() && (ended || self.kcp.wait_snd() == 0 || self.lingered(now)) {
            w.2 = self.closer.take();
        }
        w
    }

    fn lingered(&self, now: Instant) -> bool {
        self.linger_until.is_some_and(|t| now >= t)
    }

    fn end(&mut self, kind: io::ErrorKind) {
        if self.end.is_none() {
            self.end = Some(kind);
        }
    }

    /// Opens one datagram and gives its packets to KCP. `server` asks for a first packet of
    /// another conversation to be reported rather than dropped.
    fn input(
        &mut self,
        datagram: &[u8],
        now: Instant,
        counters: &Counters,
        server: bool,
    ) -> Delivered {
        self.staging.clear();
        self.staging_ends.clear();
        let opened = {
            let mut wire = lock(&self.wire);
            let (staging, ends) = (&mut self.staging, &mut self.staging_ends);
            wire.codec.open(datagram, &mut |p| {
                staging.extend_from_slice(p);
                ends.push(staging.len());
            })
        };
        if let Err(reason) = opened {
            counters.codec_drop(reason);
            return Delivered::Done;
        }
        let conv = self.kcp.conv();
        let waiting = self.kcp.wait_snd();
        let mut pushed = false;
        let mut start = 0;
        let mut first = true;
        self.update(now);
        for i in 0..self.staging_ends.len() {
            let end = self.staging_ends[i];
            let packet = &self.staging[start..end];
            start = end;
            if packet.len() < KCP_HEADER {
                Counters::add(&counters.dropped_kcp, 1);
                continue;
            }
            let their_conv = u32::from_le_bytes([packet[0], packet[1], packet[2], packet[3]]);
            if their_conv != conv {
                if server && first {
                    let sn = u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]);
                    return Delivered::OtherConv { sn };
                }
                Counters::add(&counters.dropped_kcp, 1);
                continue;
            }
            first = false;
            pushed |= packet[4] == CMD_PUSH;
            match self.kcp.input(packet) {
                Ok(_) => self.last_recv = now,
                Err(_) => Counters::add(&counters.dropped_kcp, 1),
            }
        }
        self.inputs_unflushed += 1;
        // As kcp-go: flush when acknowledgements moved the send window (new data can go), and
        // after data when acknowledging without delay; and, unlike kcp-go, every few datagrams.
        if self.kcp.wait_snd() < waiting
            || (self.acknodelay && pushed)
            || self.inputs_unflushed >= INPUTS_PER_FLUSH
        {
            self.flush(now);
        }
        Delivered::Done
    }
}

/// What the session's task must watch, besides its timer and kicks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A client's session: its task reads its own socket.
    Client,
    /// A listener's session: the listener's task hands it its datagrams.
    Server,
}

pub(crate) struct Shared {
    core: Mutex<Core>,
    /// Wakes the task: a handle was dropped or shut down, or the socket would not take a
    /// datagram. `notify_one` keeps a permit, so a kick while the task is busy is not lost.
    kick: Notify,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    conv: u32,
    role: Role,
    counters: Arc<Counters>,
    listener: Option<Arc<ListenerShared>>,
}

impl Shared {
    pub(crate) fn new(
        conv: u32,
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        settings: &KcpSettings,
        codec: Box<dyn Codec>,
        counters: Arc<Counters>,
        listener: Option<Arc<ListenerShared>>,
    ) -> io::Result<Arc<Shared>> {
        let mtu = settings
            .kcp_mtu(codec.overhead())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // Room for a full window of data and of acknowledgements, and some over.
        let cap = usize::from(settings.sndwnd) + usize::from(settings.rcvwnd) + 64;
        let wire = Arc::new(Mutex::new(Wire {
            codec,
            queue: VecDeque::new(),
            pool: Vec::new(),
            cap,
            counters: counters.clone(),
        }));
        let mut kcp = Kcp::new_stream(conv, Tx(wire.clone()));
        kcp.set_mtu(mtu)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let p = settings.mode.params();
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        kcp.set_nodelay(p.nodelay, clamp(p.interval), clamp(p.resend), p.nc);
        kcp.set_wndsize(settings.sndwnd, settings.rcvwnd);
        // KCP flushes nothing before its first update.
        let _ = kcp.update(0);
        let now = Instant::now();
        Ok(Arc::new(Shared {
            core: Mutex::new(Core {
                kcp,
                wire,
                epoch: now,
                acknodelay: settings.acknodelay,
                idle_timeout: settings.idle_timeout,
                linger: settings.linger,
                last_recv: now,
                end: None,
                write_shut: false,
                handle_gone: false,
                linger_until: None,
                tx_blocked: false,
                reader: None,
                writer: None,
                closer: None,
                leftover: Vec::new(),
                leftover_at: 0,
                inputs_unflushed: 0,
                staging: Vec::with_capacity(MTU_LIMIT),
                staging_ends: Vec::new(),
            }),
            kick: Notify::new(),
            socket,
            peer,
            conv,
            role: if listener.is_some() {
                Role::Server
            } else {
                Role::Client
            },
            counters,
            listener,
        }))
    }

    /// Sends the queued datagrams until the socket would block. Called with the session's
    /// lock held, so datagrams leave in the order KCP made them. When the socket would block,
    /// the task waits until it is writable: a caller other than the task (`from_task` false)
    /// kicks it to do so.
    fn transmit(&self, core: &mut Core, from_task: bool) {
        let mut wire = lock(&core.wire);
        let mut sent = 0;
        while let Some(d) = wire.queue.front() {
            match self.socket.try_send_to(d, self.peer) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !core.tx_blocked && !from_task {
                        self.kick.notify_one();
                    }
                    core.tx_blocked = true;
                    break;
                }
                // The datagram is lost, as UDP may lose it; KCP retransmits.
                Err(_) => Counters::add(&self.counters.socket_errors, 1),
            }
            let d = wire.queue.pop_front().expect("front was Some");
            if wire.pool.len() < POOL {
                wire.pool.push(d);
            }
        }
        if sent > 0 {
            Counters::add(&self.counters.datagrams_out, sent);
        }
    }

    /// A datagram from the peer, from the listener's task.
    pub(crate) fn deliver(&self, datagram: &[u8]) -> Delivered {
        let now = Instant::now();
        let mut core = lock(&self.core);
        if core.end.is_some() {
            return Delivered::Done;
        }
        let d = core.input(datagram, now, &self.counters, true);
        self.transmit(&mut core, false);
        let w = core.wakes(now);
        drop(core);
        w.wake();
        d
    }

    /// Ends the session (its peer started another conversation, or the listener is gone).
    pub(crate) fn reset(&self, kind: io::ErrorKind) {
        let mut core = lock(&self.core);
        core.end(kind);
        let w = core.wakes(Instant::now());
        drop(core);
        w.wake();
        self.kick.notify_one();
    }

    /// One round of the task's work: KCP's update, sends, expiry. Returns when to come back
    /// and whether to wait for the socket to be writable, or `None` when the session is over.
    fn tick(&self) -> Option<(Instant, bool)> {
        let now = Instant::now();
        let mut core = lock(&self.core);
        if core.end.is_none() {
            core.tx_blocked = false;
            core.update(now);
            self.transmit(&mut core, true);
            if let Some(t) = core.idle_timeout {
                if now.duration_since(core.last_recv) >= t {
                    core.end(io::ErrorKind::TimedOut);
                    Counters::add(&self.counters.sessions_timed_out, 1);
                }
            }
        }
        let w = core.wakes(now);
        let over = core.end.is_some()
            || (core.handle_gone && (core.kcp.wait_snd() == 0 || core.lingered(now)));
        let next = if over {
            None
        } else {
            let ms = core.kcp.check(core.now_ms(now)).max(1);
            let mut at = now + Duration::from_millis(u64::from(ms));
            if let Some(t) = core.idle_timeout {
                at = at.min(core.last_recv + t);
            }
            if let Some(t) = core.linger_until {
                at = at.min(t.max(now));
            }
            Some((at, core.tx_blocked))
        };
        if over && core.end.is_none() {
            // The last acknowledgements of what the peer sent.
            core.flush(now);
            self.transmit(&mut core, true);
        }
        drop(core);
        w.wake();
        next
    }

    /// A client's datagrams, read from its socket. Returns once the socket has nothing more.
    fn receive(&self, bufs: &mut [Vec<u8>], lens: &mut Vec<usize>) {
        loop {
            lens.clear();
            for buf in bufs.iter_mut() {
                match self.socket.try_recv_from(buf) {
                    Ok((n, from)) => {
                        if from == self.peer {
                            lens.push(n);
                        } else {
                            Counters::add(&self.counters.dropped_stranger, 1);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // An ICMP error reported on the socket, or the like: nothing was read.
                    Err(_) => Counters::add(&self.counters.socket_errors, 1),
                }
            }
            if lens.is_empty() {
                return;
            }
            Counters::add(&self.counters.datagrams_in, lens.len() as u64);
            let now = Instant::now();
            let mut core = lock(&self.core);
            if core.end.is_none() {
                for (buf, &n) in bufs.iter().zip(lens.iter()) {
                    core.input(&buf[..n], now, &self.counters, false);
                }
                self.transmit(&mut core, true);
            }
            let w = core.wakes(now);
            drop(core);
            w.wake();
            if lens.len() < bufs.len() {
                return;
            }
        }
    }

    async fn run(self: Arc<Self>) {
        let mut bufs = match self.role {
            Role::Client => vec![vec![0u8; RECV_BUF]; RECV_BATCH],
            Role::Server => Vec::new(),
        };
        let mut lens = Vec::with_capacity(RECV_BATCH);
        while let Some((at, want_write)) = self.tick() {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = self.kick.notified() => {}
                _ = self.socket.writable(), if want_write => {}
                r = self.socket.readable(), if self.role == Role::Client => {
                    if r.is_ok() {
                        self.receive(&mut bufs, &mut lens);
                    }
                }
            }
        }
        let w = {
            let mut core = lock(&self.core);
            core.end(io::ErrorKind::ConnectionAborted);
            core.wakes(Instant::now())
        };
        w.wake();
        if let Some(l) = &self.listener {
            l.remove(self.peer, &self);
        }
    }

    pub(crate) fn spawn(self: &Arc<Self>) {
        tokio::spawn(self.clone().run());
    }
}

/// A KCP session: a reliable, ordered byte stream to one peer over UDP, as kcp-go's
/// `UDPSession` in stream mode. Give it to smux-tokio as a transport.
///
/// Writes take what KCP's send window has room for and flush it at once; they wait while the
/// window (the smaller of ours and the peer's) is full, so a session holds at most about a
/// window of unacknowledged data. Reads wait for data. KCP has no end of stream: reads end
/// only with an error, once the session times out or is reset.
///
/// [`AsyncWrite::poll_shutdown`] waits until everything written is acknowledged (or
/// [`KcpSettings::linger`] passes, then fails with `TimedOut`); dropping the handle does the
/// same in the background, then ends the session.
pub struct KcpStream {
    shared: Arc<Shared>,
}

impl KcpStream {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> KcpStream {
        KcpStream { shared }
    }

    /// A client session to a kcp-go or kcptun server at `server`, on a UDP socket of its own,
    /// with a random conversation id. KCP has no handshake: this returns at once, and the
    /// server learns of the session from its first datagram.
    pub async fn connect<C: Codec>(
        server: SocketAddr,
        settings: &KcpSettings,
        codec: C,
    ) -> io::Result<KcpStream> {
        let local: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = Arc::new(udp_socket(local, settings)?);
        let conv = Rng::seeded().next_u64() as u32;
        let counters = Arc::new(Counters::default());
        Counters::add(&counters.sessions_opened, 1);
        let shared = Shared::new(
            conv,
            socket,
            server,
            settings,
            Box::new(codec),
            counters,
            None,
        )?;
        shared.spawn();
        Ok(KcpStream { shared })
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.shared.conv
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// The local address of the session's socket (a listener's, for a server's session).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// The counts of the session's socket: its own for a client, the listener's (all its
    /// sessions together) for a server.
    pub fn stats(&self) -> KcpStats {
        self.shared.counters.snapshot()
    }
}

impl std::fmt::Debug for KcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpStream")
            .field("conv", &self.shared.conv)
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl AsyncRead for KcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut core = lock(&self.shared.core);
        let start = buf.filled().len();
        let c = &mut *core;
        if c.leftover_at < c.leftover.len() {
            let n = buf.remaining().min(c.leftover.len() - c.leftover_at);
            buf.put_slice(&c.leftover[c.leftover_at..c.leftover_at + n]);
            c.leftover_at += n;
        }
        while buf.remaining() > 0 {
            let Ok(size) = c.kcp.peeksize() else { break };
            if size <= buf.remaining() {
                match c.kcp.recv(buf.initialize_unfilled_to(size)) {
                    Ok(n) => buf.advance(n),
                    Err(_) => break,
                }
            } else {
                c.leftover.resize(size, 0);
                match c.kcp.recv(&mut c.leftover) {
                    Ok(n) => {
                        c.leftover.truncate(n);
                        let k = buf.remaining().min(n);
                        buf.put_slice(&c.leftover[..k]);
                        c.leftover_at = k;
                    }
                    Err(_) => c.leftover.clear(),
                }
                break;
            }
        }
        if buf.filled().len() > start {
            return Poll::Ready(Ok(()));
        }
        if let Some(kind) = c.end {
            return Poll::Ready(Err(kind.into()));
        }
        c.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for KcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let shared = &self.shared;
        let mut core = lock(&shared.core);
        if let Some(kind) = core.end {
            return Poll::Ready(Err(kind.into()));
        }
        if core.write_shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = core.send_room();
        if room == 0 {
            core.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mss = core.kcp.mss();
        let n = buf.len().min(room * mss);
        for chunk in buf[..n].chunks(SEND_CHUNK_SEGMENTS * mss) {
            // Cannot fail: the chunk is under 128 segments and not empty.
            let _ = core.kcp.send(chunk);
        }
        // kcptun turns kcp-go's write delay off: each write is flushed at once.
        core.flush(Instant::now());
        shared.transmit(&mut core, false);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is with KCP, which sends it and retransmits it on its own.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = Instant::now();
        let mut core = lock(&self.shared.core);
        core.write_shut = true;
        if core.kcp.wait_snd() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(kind) = core.end {
            return Poll::Ready(Err(kind.into()));
        }
        if core.lingered(now) {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        if core.linger_until.is_none() {
            core.linger_until = Some(now + core.linger);
            self.shared.kick.notify_one();
        }
        core.closer = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for KcpStream {
    fn drop(&mut self) {
        let mut core = lock(&self.shared.core);
        core.handle_gone = true;
        core.write_shut = true;
        if core.linger_until.is_none() {
            core.linger_until = Some(Instant::now() + core.linger);
        }
        drop(core);
        self.shared.kick.notify_one();
    }
}

/// A UDP socket bound to `local`, with the settings' buffer sizes and DSCP.
pub(crate) fn udp_socket(local: SocketAddr, settings: &KcpSettings) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    // As kcptun: a buffer size the kernel refuses is not fatal.
    let _ = socket.set_recv_buffer_size(settings.sockbuf);
    let _ = socket.set_send_buffer_size(settings.sockbuf);
    if settings.dscp != 0 && local.is_ipv4() {
        let _ = socket.set_tos_v4(u32::from(settings.dscp) << 2);
    }
    socket.bind(&local.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}
