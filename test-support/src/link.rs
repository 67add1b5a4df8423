//! An emulated WAN link between two loopback TCP streams (feature `tokio`): a relay with a
//! one-way delay, a rate limit and a bounded queue in each direction, and optionally a freeze
//! now and then, as a lost packet's recovery stalls a real TCP connection.
//!
//! [`wan_pair`] returns `(client, server)` as standard streams, to be handed to any runtime
//! (`tokio::net::TcpStream::from_std`, `async_net::TcpStream::try_from`): the relay runs on a
//! Tokio runtime of its own, on a thread of its own, so it works under smol too, and its work
//! is not counted against the runtime being measured.
//!
//! Each direction works as a router's output port:
//! - bytes are read from the sending side in reads of at most [`SEGMENT`] bytes;
//! - each read is serialised at the link rate, after the bytes before it (a token bucket with
//!   a bucket of one read), and arrives `delay` after its serialisation ends;
//! - while more than `queue` of link time waits to be serialised, the relay stops reading, so
//!   the sender's TCP sees the backpressure a full router buffer causes (a relay that ends
//!   TCP cannot drop packets instead);
//! - the relay's own sockets have small kernel buffers (`SO_RCVBUF`, `SO_SNDBUF` of
//!   [`RELAY_BUFFER`]), so that its queue is the only one it adds. The endpoints' sockets keep
//!   the system's defaults: the sender's kernel queue is part of what is measured.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use ::tokio::sync::mpsc;

use crate::tokio::sized_pair;

/// The largest read the relay serialises as one unit.
pub const SEGMENT: usize = 16 * 1024;
/// `SO_RCVBUF` and `SO_SNDBUF` of the relay's sockets (the kernel may double it).
pub const RELAY_BUFFER: u32 = 32 * 1024;

/// One direction's (and, by default, both directions') link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// The rate, in bits per second.
    pub rate_bps: u64,
    /// One-way delay: the round trip is twice this.
    pub delay: Duration,
    /// The router buffer, in link time: how much may wait to be serialised.
    pub queue: Duration,
    /// Stalls, if any.
    pub freeze: Option<Freeze>,
}

/// Stall the connection for `duration` at random intervals of `mean_interval` on average
/// (exponentially distributed, from a fixed seed: every run stalls at the same instants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Freeze {
    pub mean_interval: Duration,
    pub duration: Duration,
}

impl LinkConfig {
    /// 100 Mbit/s, 50 ms round trip, a 50 ms router buffer, no freeze.
    pub const DEFAULT: LinkConfig = LinkConfig {
        rate_bps: 100_000_000,
        delay: Duration::from_millis(25),
        queue: Duration::from_millis(50),
        freeze: None,
    };

    /// How long `bytes` take to serialise.
    fn serialise(&self, bytes: usize) -> Duration {
        Duration::from_nanos((bytes as u64 * 8).saturating_mul(1_000_000_000) / self.rate_bps)
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig::DEFAULT
    }
}

/// What one direction of the link delivered.
#[derive(Debug, Default)]
pub struct Delivered {
    bytes: AtomicU64,
    /// Nanoseconds after the link's start of the first and the last delivery.
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

impl Delivered {
    fn record(&self, n: usize, at: Duration) {
        let ns = at.as_nanos() as u64;
        if self.bytes.fetch_add(n as u64, Ordering::Relaxed) == 0 {
            self.first_ns.store(ns, Ordering::Relaxed);
        }
        self.last_ns.store(ns, Ordering::Relaxed);
    }

    /// Bytes delivered so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The rate the link delivered at, in bits per second, from its first delivery to its
    /// last (`None` before two deliveries at different instants).
    pub fn rate_bps(&self) -> Option<f64> {
        let first = self.first_ns.load(Ordering::Relaxed);
        let last = self.last_ns.load(Ordering::Relaxed);
        (last > first).then(|| self.bytes() as f64 * 8.0 * 1e9 / (last - first) as f64)
    }
}

/// The relay of a [`wan_pair`]: what each direction delivered. The relay runs until both
/// directions have ended (each ends when its sender shuts down or a socket fails).
#[derive(Debug)]
pub struct Link {
    /// Client to server.
    pub up: Arc<Delivered>,
    /// Server to client.
    pub down: Arc<Delivered>,
}

/// A pair of loopback TCP streams, `(client, server)`, joined by an emulated link `config`
/// in each direction. Both endpoint streams have `TCP_NODELAY` set and are non-blocking. The
/// calling thread waits while the relay's thread sets the connections up (a few loopback
/// connects), so this may be called from async code of any runtime.
pub fn wan_pair(
    config: LinkConfig,
) -> io::Result<(std::net::TcpStream, std::net::TcpStream, Link)> {
    let link = Link {
        up: Arc::default(),
        down: Arc::default(),
    };
    let (up, down) = (Arc::clone(&link.up), Arc::clone(&link.down));
    let (ends_tx, ends_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("wan-link".into())
        .spawn(move || {
            let relay = async move {
                let (client, relay_client) = sized_pair(None, Some(RELAY_BUFFER)).await?;
                let (relay_server, server) = sized_pair(Some(RELAY_BUFFER), None).await?;
                let ends = (client.into_std()?, server.into_std()?);
                io::Result::Ok((ends, relay_client, relay_server))
            };
            let rt = ::tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let (rt, (ends, relay_client, relay_server)) =
                match rt.and_then(|rt| rt.block_on(relay).map(|r| (rt, r))) {
                    Ok(ready) => ready,
                    Err(e) => {
                        let _ = ends_tx.send(Err(e));
                        return;
                    }
                };
            let _ = ends_tx.send(Ok(ends));
            rt.block_on(async move {
                let start = Instant::now();
                let (cr, cw) = relay_client.into_split();
                let (sr, sw) = relay_server.into_split();
                let up = Port::new(up, &config, start, 0);
                let down = Port::new(down, &config, start, 1);
                let up = ::tokio::spawn(direction(cr, sw, config, start, up));
                let down = ::tokio::spawn(direction(sr, cw, config, start, down));
                let _ = ::tokio::join!(up, down);
            })
        })?;
    let (client, server) = ends_rx
        .recv()
        .map_err(|_| io::Error::other("the relay's thread ended"))??;
    Ok((client, server, link))
}

/// A listening end of an emulated link, for programs that dial an address (a tunnel client):
/// each connection accepted on [`WanForward::addr`] is carried to `target` across one shared
/// link `config`. The connections share each direction's rate, router buffer and stalls, as
/// connections across one path share its bottleneck: a stall holds up only the connection
/// whose bytes cross when it begins (a lost packet stalls only its connection). Runs on a thread and runtime of its own for as long as
/// the process.
#[derive(Debug)]
pub struct WanForward {
    /// Where to connect.
    pub addr: std::net::SocketAddr,
    /// What the link delivered, over all its connections.
    pub link: Link,
}

/// Starts a [`WanForward`] to `target`.
pub fn wan_forward(config: LinkConfig, target: std::net::SocketAddr) -> io::Result<WanForward> {
    let link = Link {
        up: Arc::default(),
        down: Arc::default(),
    };
    let start = Instant::now();
    let (up, down) = (
        Port::new(Arc::clone(&link.up), &config, start, 0),
        Port::new(Arc::clone(&link.down), &config, start, 1),
    );
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("wan-forward".into())
        .spawn(move || {
            let rt = match ::tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = addr_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match relay_listener() {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                let _ = addr_tx.send(listener.local_addr());
                while let Ok((near, _)) = listener.accept().await {
                    let Ok(far) = relay_connect(target).await else {
                        continue;
                    };
                    let _ = (near.set_nodelay(true), far.set_nodelay(true));
                    let (nr, nw) = near.into_split();
                    let (fr, fw) = far.into_split();
                    let (up, down) = (Arc::clone(&up), Arc::clone(&down));
                    ::tokio::spawn(direction(nr, fw, config, start, up));
                    ::tokio::spawn(direction(fr, nw, config, start, down));
                }
            });
        })?;
    let addr = addr_rx
        .recv()
        .map_err(|_| io::Error::other("the forwarder's thread ended"))??;
    Ok(WanForward { addr, link })
}

/// A loopback listener whose sockets have the relay's small buffers.
fn relay_listener() -> io::Result<::tokio::net::TcpListener> {
    let s = ::tokio::net::TcpSocket::new_v4()?;
    s.set_send_buffer_size(RELAY_BUFFER)?;
    s.set_recv_buffer_size(RELAY_BUFFER)?;
    s.bind((std::net::Ipv4Addr::LOCALHOST, 0).into())?;
    s.listen(64)
}

/// A connection to `target` with the relay's small buffers.
async fn relay_connect(target: std::net::SocketAddr) -> io::Result<::tokio::net::TcpStream> {
    let s = ::tokio::net::TcpSocket::new_v4()?;
    s.set_send_buffer_size(RELAY_BUFFER)?;
    s.set_recv_buffer_size(RELAY_BUFFER)?;
    s.connect(target).await
}

/// One direction of the link: the router port its connections share. `free_at` is when it is
/// next free to serialise. The stalls are the link's too: each hits the connection whose bytes
/// cross when it begins (a loss hits the packet on the wire), so more connections do not
/// mean more stalls.
#[derive(Debug)]
struct Port {
    free_at: std::sync::Mutex<Instant>,
    delivered: Arc<Delivered>,
    stalls: Option<std::sync::Mutex<Stalls>>,
}

impl Port {
    fn new(delivered: Arc<Delivered>, config: &LinkConfig, start: Instant, seed: u64) -> Arc<Port> {
        Arc::new(Port {
            free_at: std::sync::Mutex::new(Instant::now()),
            delivered,
            stalls: config
                .freeze
                .map(|f| std::sync::Mutex::new(Stalls::new(f, start, seed))),
        })
    }

    /// The end of the last stall that began by `due`, if any did since the last call: it is
    /// the caller's (call in the order of `due`).
    fn claim_stall(&self, due: Instant) -> Option<Instant> {
        let mut s = self.stalls.as_ref()?.lock().expect("not poisoned");
        let before = s.until;
        s.delay(due);
        (s.until != before).then_some(s.until)
    }

    /// While more than `queue` of link time waits, how long to wait before reading more.
    fn full_until(&self, queue: Duration) -> Option<Instant> {
        let free_at = *self.free_at.lock().expect("not poisoned");
        free_at.checked_sub(queue).filter(|&t| t > Instant::now())
    }

    /// Queues `n` bytes: returns when their serialisation ends.
    fn serialise(&self, config: &LinkConfig, n: usize) -> Instant {
        let mut free_at = self.free_at.lock().expect("not poisoned");
        *free_at = (*free_at).max(Instant::now()) + config.serialise(n);
        *free_at
    }
}

/// One direction of one connection: reads from `from`, schedules each read on `port`, and a
/// second task writes it to `to` when it arrives (after the stalls it claimed).
async fn direction(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    config: LinkConfig,
    start: Instant,
    port: Arc<Port>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let delivered = Arc::clone(&port.delivered);
    let stalls = Arc::clone(&port);
    let writer = ::tokio::spawn(async move {
        // This connection's deliveries wait until here (its last stall's end).
        let mut until = start;
        while let Some((mut at, bytes)) = rx.recv().await {
            if let Some(end) = stalls.claim_stall(at) {
                until = until.max(end);
            }
            at = at.max(until);
            ::tokio::time::sleep_until(at.into()).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
            delivered.record(bytes.len(), start.elapsed());
        }
        let _ = to.shutdown().await;
    });
    // When this connection's bytes in the router buffer finish serialising.
    let mut mine_done = Instant::now();
    loop {
        // A full router buffer: wait until it holds no more than `queue`, unless none of it
        // is this connection's. A router does not let other connections' backlog starve a
        // connection that sends now and then: its packet joins the queue (where drop-tail
        // would have dropped one of theirs).
        while let Some(wait) = port.full_until(config.queue) {
            if mine_done <= Instant::now() {
                break;
            }
            ::tokio::time::sleep_until(wait.min(mine_done).into()).await;
        }
        let mut buf = vec![0u8; SEGMENT];
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.truncate(n);
        let done = port.serialise(&config, n);
        mine_done = done;
        if tx.send((done + config.delay, buf)).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The freeze schedule: stalls of a fixed length at exponentially distributed intervals.
#[derive(Debug)]
struct Stalls {
    freeze: Freeze,
    /// The next stall begins here.
    next: Instant,
    /// The last stall that began ends here.
    until: Instant,
    rng: u64,
}

impl Stalls {
    fn new(freeze: Freeze, start: Instant, seed: u64) -> Stalls {
        let mut s = Stalls {
            freeze,
            next: start,
            until: start,
            // Never zero (xorshift's fixed point).
            rng: 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1,
        };
        s.next = start + s.interval();
        s
    }

    /// An exponentially distributed interval of mean `mean_interval` (xorshift64*).
    fn interval(&mut self) -> Duration {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((r >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        self.freeze.mean_interval.mul_f64(-u.ln())
    }

    /// When bytes due at `due` arrive, given the stalls that began by then (call in the
    /// order of `due`).
    fn delay(&mut self, due: Instant) -> Instant {
        while due >= self.next {
            self.until = self.next + self.freeze.duration;
            self.next = self.until + self.interval();
        }
        due.max(self.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Bytes cross both ways, whole and in order, and each direction counts them. (The
    /// link's rate and delay are checked by the benchmark, which prints them: timings never
    /// decide a test.)
    #[test]
    fn the_link_carries_bytes_both_ways_in_order() {
        let config = LinkConfig {
            rate_bps: 1_000_000_000,
            delay: Duration::from_millis(1),
            queue: Duration::from_millis(5),
            freeze: Some(Freeze {
                mean_interval: Duration::from_millis(20),
                duration: Duration::from_millis(2),
            }),
        };
        let (mut client, mut server, link) = wan_pair(config).unwrap();
        client.set_nonblocking(false).unwrap();
        server.set_nonblocking(false).unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            client.write_all(&sent).unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert!(got == data, "client to server");
        server.write_all(b"reply").unwrap();
        server.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(writer.join().unwrap(), b"reply");
        assert_eq!(link.up.bytes(), data.len() as u64);
        assert_eq!(link.down.bytes(), 5);
    }

    /// Each connection through the forwarder reaches the target and carries its bytes both
    /// ways; the link counts all of them.
    #[test]
    fn the_forwarder_carries_each_connection_to_the_target() {
        let config = LinkConfig {
            rate_bps: 1_000_000_000,
            delay: Duration::from_millis(1),
            ..LinkConfig::DEFAULT
        };
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let forward = wan_forward(config, target.local_addr().unwrap()).unwrap();
        // The target answers each connection with what it read, reversed, once it ends.
        let server = std::thread::spawn(move || {
            for _ in 0..3 {
                let (mut s, _) = target.accept().unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                got.reverse();
                s.write_all(&got).unwrap();
            }
        });
        let mut total = 0;
        for i in 0..3u8 {
            let mut c = std::net::TcpStream::connect(forward.addr).unwrap();
            let data = vec![i; 10_000 * (usize::from(i) + 1)];
            c.write_all(&data).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            assert!(back == data, "connection {i}");
            total += data.len() as u64;
        }
        server.join().unwrap();
        assert_eq!(forward.link.up.bytes(), total);
        assert_eq!(forward.link.down.bytes(), total);
    }

    #[test]
    fn stalls_push_arrivals_past_their_end_and_keep_order() {
        let start = Instant::now();
        let freeze = Freeze {
            mean_interval: Duration::from_millis(10),
            duration: Duration::from_millis(3),
        };
        let mut s = Stalls::new(freeze, start, 0);
        let mut last = start;
        let mut stalled = 0;
        for ms in 0..1000 {
            let due = start + Duration::from_millis(ms);
            let at = s.delay(due);
            assert!(at >= due && at >= last, "never earlier, never out of order");
            if at > due {
                stalled += 1;
            }
            last = at;
        }
        // About 3 ms of every 13 ms is stalled: roughly a quarter of the instants.
        assert!((100..500).contains(&stalled), "{stalled}");
    }
}
