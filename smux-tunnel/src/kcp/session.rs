//! A KCP session over UDP, behind its handle [`KcpStream`](super::KcpStream): the `kcp`
//! crate's protocol engine under a [`Codec`] and a UDP socket, configured as kcptun configures
//! kcp-go's sessions (stream mode, no write delay), and the session's task.
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

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use kcp::Kcp;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::listener::ListenerShared;
use super::mode::{KcpSettings, MTU_LIMIT};
use super::stats::Counters;
use super::Codec;

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
pub(super) const SEND_CHUNK_SEGMENTS: usize = 64;

/// Free datagram buffers a session keeps for reuse.
const POOL: usize = 64;

/// The codec and the datagrams sealed and not yet sent. KCP's output callback (owned by the
/// `Kcp`) and the session's input path both need the codec, hence its own lock; it is only
/// ever taken with the session's lock held, so it is never contended.
pub(super) struct Wire {
    codec: Box<dyn Codec>,
    queue: VecDeque<Vec<u8>>,
    pool: Vec<Vec<u8>>,
    /// Most datagrams `queue` holds; beyond it new ones are dropped (and counted).
    cap: usize,
    counters: Arc<Counters>,
}

/// KCP's output: each write is one KCP packet, sealed into datagrams and queued.
pub(super) struct Tx(Arc<Mutex<Wire>>);

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
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

pub(super) struct Core {
    pub(super) kcp: Kcp<Tx>,
    pub(super) wire: Arc<Mutex<Wire>>,
    pub(super) epoch: Instant,
    pub(super) acknodelay: bool,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) linger: Duration,
    pub(super) last_recv: Instant,
    /// Why the session ended; reads return what had arrived, then this error.
    pub(super) end: Option<io::ErrorKind>,
    /// No more writes: the handle shut down its write side, or was dropped.
    pub(super) write_shut: bool,
    /// The handle was dropped: the task ends once everything sent is acknowledged.
    pub(super) handle_gone: bool,
    /// When a shut-down or dropped session stops waiting for acknowledgements.
    pub(super) linger_until: Option<Instant>,
    /// The socket would not take a datagram: the task waits until it is writable.
    pub(super) tx_blocked: bool,
    pub(super) reader: Option<Waker>,
    pub(super) writer: Option<Waker>,
    pub(super) closer: Option<Waker>,
    /// A received segment that did not fit the reader's buffer, and how much of it was read.
    pub(super) leftover: Vec<u8>,
    pub(super) leftover_at: usize,
    pub(super) inputs_unflushed: u32,
    /// Packets the codec delivered from one datagram, end to end, and their ends.
    pub(super) staging: Vec<u8>,
    pub(super) staging_ends: Vec<usize>,
}

impl Core {
    pub(super) fn now_ms(&self, now: Instant) -> u32 {
        // KCP's clock is milliseconds that wrap; peers only echo it back.
        (now.duration_since(self.epoch).as_millis() & 0xffff_ffff) as u32
    }

    /// Runs KCP's timer work if due, and sets its clock to now (it times RTTs and stamps
    /// segments with the clock of its last update).
    pub(super) fn update(&mut self, now: Instant) {
        let ms = self.now_ms(now);
        // Fails only before the first update (made at creation) or if the output fails
        // (`Tx` does not).
        let _ = self.kcp.update(ms);
    }

    pub(super) fn flush(&mut self, now: Instant) {
        self.update(now);
        let _ = self.kcp.flush();
        self.inputs_unflushed = 0;
    }

    pub(super) fn send_room(&self) -> usize {
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

    pub(super) fn lingered(&self, now: Instant) -> bool {
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
    pub(super) core: Mutex<Core>,
    /// Wakes the task: a handle was dropped or shut down, or the socket would not take a
    /// datagram. `notify_one` keeps a permit, so a kick while the task is busy is not lost.
    pub(super) kick: Notify,
    pub(super) socket: Arc<UdpSocket>,
    pub(super) peer: SocketAddr,
    pub(super) conv: u32,
    pub(super) role: Role,
    pub(super) counters: Arc<Counters>,
    pub(super) listener: Option<Arc<ListenerShared>>,
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
    pub(super) fn transmit(&self, core: &mut Core, from_task: bool) {
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
