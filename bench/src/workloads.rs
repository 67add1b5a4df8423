//! The workloads, each run in a child process of its own with both ends in that process. Each
//! returns `key=value` pairs for the `RESULT` line (the Go program prints the same keys). They
//! run on Tokio or on smol alike: tasks and timers go through [`spawn`] and [`sleep`].

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use smux_test_support::alloc::live;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use smux_test_support::link::LinkConfig;

use crate::impls::{connect, sleep, spawn, Acceptor, BoxIo, Impl, Opener, Setup};
use crate::wan;

/// Reads' buffer size, and writes' where the workload has no write size of its own.
const CHUNK: usize = 64 * 1024;
/// The write size of the bulk workloads (`stream`, `streams64`, `copy`, `copy-bidi`) unless
/// `--write-size` says.
pub const WRITE_SIZE: usize = CHUNK;
/// `copy-bidi`'s relay: `copy_bidirectional_with_sizes`'s buffer each way.
const RELAY_BUF: usize = 64 * 1024;
const MIB: u64 = 1024 * 1024;
/// Pipelined open+close: streams the client keeps in flight (opened and shut down, the
/// server's close not yet read). Below every implementation's accept backlog (1,024 in
/// smux-tokio and Go).
pub const OPENCLOSE_WINDOW: usize = 256;

pub type Fields = Vec<(&'static str, f64)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Stream,
    Streams64,
    /// Over one connection, two streams at once: one bulk transfer each way.
    Bidi,
    /// One stream's bulk transfer, the receiver `tokio::io::copy` into `tokio::io::sink()`.
    Copy,
    /// One stream through a relay (`tokio::io::copy_bidirectional_with_sizes`, 64 KiB each
    /// way) to an in-memory service: bulk data both ways.
    CopyBidi,
    /// Open, 8-byte echo, close, in sequence; neither side flushes.
    Handshake,
    /// The same with a flush after each write, as a request/response protocol does.
    EchoSeq,
    OpenClose,
    /// Each side flushes after each write, as request/response protocols do.
    PingPong,
    /// The same without the flushes.
    PingPongNoFlush,
    Idle,
    /// Over the emulated WAN link: one stream's bulk transfer.
    WanStream,
    /// Over the link: 8 bulk streams and one interactive request/response stream.
    WanMixed,
    /// Over the link: a fresh stream fetching 1 MiB, on a new and on a warm connection.
    WanFetch,
    /// The tunnel over a link whose connections freeze, on 1 and on 4 smux connections.
    WanTunnel,
    /// kcptun-client through our tunnel server and through Go's kcptun-server, kcptun's
    /// defaults (`bench/src/kcptun.rs`).
    Kcptun,
    /// The same with `-crypt none -nocomp -datashard 0 -parityshard 0`.
    KcptunOff,
}

impl Workload {
    pub const ALL: [Workload; 17] = [
        Workload::Stream,
        Workload::Streams64,
        Workload::Bidi,
        Workload::Copy,
        Workload::CopyBidi,
        Workload::Handshake,
        Workload::EchoSeq,
        Workload::OpenClose,
        Workload::PingPong,
        Workload::PingPongNoFlush,
        Workload::Idle,
        Workload::WanStream,
        Workload::WanMixed,
        Workload::WanFetch,
        Workload::WanTunnel,
        Workload::Kcptun,
        Workload::KcptunOff,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Stream => "stream",
            Workload::Streams64 => "streams64",
            Workload::Bidi => "bidi",
            Workload::Copy => "copy",
            Workload::CopyBidi => "copy-bidi",
            Workload::Handshake => "handshake",
            Workload::EchoSeq => "echo-seq",
            Workload::OpenClose => "openclose",
            Workload::PingPong => "pingpong",
            Workload::PingPongNoFlush => "pingpong-noflush",
            Workload::Idle => "idle",
            Workload::WanStream => "wan-stream",
            Workload::WanMixed => "wan-mixed",
            Workload::WanFetch => "wan-fetch",
            Workload::WanTunnel => "wan-tunnel",
            Workload::Kcptun => "kcptun",
            Workload::KcptunOff => "kcptun-off",
        }
    }

    /// The Go program's name for it: its writes go out at once, so its `pingpong` is the
    /// flushing one, and it has no other; its `handshake` is `echo-seq` (and `handshake`).
    /// The tunnel is ours, `copy` and `copy-bidi` are Tokio's copy functions, and `bidi` is
    /// not in the Go program.
    pub fn go_name(self) -> Option<&'static str> {
        match self {
            Workload::PingPongNoFlush
            | Workload::WanTunnel
            | Workload::Bidi
            | Workload::Copy
            | Workload::CopyBidi
            | Workload::Kcptun
            | Workload::KcptunOff => None,
            Workload::EchoSeq => Some("handshake"),
            w => Some(w.name()),
        }
    }

    /// Runs over the emulated WAN link.
    pub fn over_link(self) -> bool {
        matches!(
            self,
            Workload::WanStream | Workload::WanMixed | Workload::WanFetch | Workload::WanTunnel
        )
    }

    /// A kcptun workload: our tunnel server against Go's kcptun-server, not the libraries.
    pub fn kcptun(self) -> bool {
        matches!(self, Workload::Kcptun | Workload::KcptunOff)
    }

    /// Its sender writes in `--write-size` writes.
    pub fn sized_writes(self) -> bool {
        matches!(
            self,
            Workload::Stream | Workload::Streams64 | Workload::Copy | Workload::CopyBidi
        )
    }

    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// Sizes of the workloads; the same for every implementation in a run.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub mib: u64,
    /// The bulk workloads' write size in bytes ([`Workload::sized_writes`]).
    pub write: usize,
    pub streams: usize,
    pub ops: usize,
    /// Streams of the pipelined open+close.
    pub openclose: usize,
    pub iters: usize,
    pub idle: usize,
    /// The emulated link: rate, round trip, router buffer.
    pub mbit: u64,
    pub rtt_ms: u64,
    pub queue_ms: u64,
    /// MiB of the WAN bulk transfer, and seconds of the mixed workload.
    pub wan_mib: u64,
    pub wan_secs: u64,
    /// `TCP_NOTSENT_LOWAT` on both ends' sockets of the WAN connection, in KiB (0: not set).
    pub lowat_kib: u64,
    /// Ours, version 2: window tuning off (`--no-window-tuning`).
    pub no_tuning: bool,
    /// MiB of each kcptun transfer.
    pub kcptun_mib: u64,
    /// Ping-pong without its clock: no time taken or sorted per round trip, so that an
    /// instruction count (`--instructions`) is the round trips' alone.
    pub untimed: bool,
}

impl Params {
    pub const FULL: Params = Params {
        mib: 1024,
        write: WRITE_SIZE,
        streams: 64,
        ops: 20_000,
        openclose: 200_000,
        iters: 20_000,
        idle: 10_000,
        mbit: 100,
        rtt_ms: 50,
        queue_ms: 50,
        wan_mib: 64,
        wan_secs: 8,
        kcptun_mib: 64,
        lowat_kib: 0,
        no_tuning: false,
        untimed: false,
    };
    pub const QUICK: Params = Params {
        mib: 64,
        write: WRITE_SIZE,
        streams: 64,
        ops: 2_000,
        openclose: 20_000,
        iters: 2_000,
        idle: 2_000,
        mbit: 100,
        rtt_ms: 50,
        queue_ms: 50,
        wan_mib: 16,
        wan_secs: 4,
        kcptun_mib: 16,
        lowat_kib: 0,
        no_tuning: false,
        untimed: false,
    };

    /// The `key=value` arguments a child gets for `w` (the Go program reads the same).
    pub fn args(&self, w: Workload) -> Vec<String> {
        match w {
            Workload::Bidi => vec![format!("mib={}", self.mib)],
            Workload::Stream | Workload::Copy | Workload::CopyBidi => {
                vec![format!("mib={}", self.mib), format!("write={}", self.write)]
            }
            Workload::Streams64 => vec![
                format!("mib={}", self.mib),
                format!("streams={}", self.streams),
                format!("write={}", self.write),
            ],
            Workload::Handshake | Workload::EchoSeq => vec![format!("ops={}", self.ops)],
            Workload::OpenClose => vec![format!("ops={}", self.openclose)],
            Workload::PingPong | Workload::PingPongNoFlush => {
                vec![format!("iters={}", self.iters)]
            }
            Workload::Idle => vec![format!("streams={}", self.idle)],
            Workload::Kcptun | Workload::KcptunOff => vec![format!("mib={}", self.kcptun_mib)],
            Workload::WanStream | Workload::WanMixed | Workload::WanFetch | Workload::WanTunnel => {
                let mut args = vec![
                    format!("mbit={}", self.mbit),
                    format!("rtt={}", self.rtt_ms),
                    format!("queue={}", self.queue_ms),
                    format!("wanmib={}", self.wan_mib),
                    format!("secs={}", self.wan_secs),
                ];
                // Only when set: a "before" build may not know it.
                if self.lowat_kib > 0 {
                    args.push(format!("lowat={}", self.lowat_kib));
                }
                if self.no_tuning {
                    args.push("notuning=1".into());
                }
                args
            }
        }
    }

    /// The emulated link these parameters describe.
    pub fn link(&self) -> LinkConfig {
        LinkConfig {
            rate_bps: self.mbit * 1_000_000,
            delay: Duration::from_millis(self.rtt_ms) / 2,
            queue: Duration::from_millis(self.queue_ms),
            freeze: None,
        }
    }

    /// Reads the arguments `args` produced.
    pub fn from_args(args: &[String]) -> Params {
        let mut p = Params::FULL;
        for a in args {
            let Some((k, v)) = a.split_once('=') else {
                continue;
            };
            let n: u64 = v.parse().unwrap_or_else(|_| panic!("bad number in {a}"));
            match k {
                "mib" => p.mib = n,
                "write" => {
                    assert!(n > 0, "write=0: the write size is at least 1 byte");
                    p.write = n as usize;
                }
                // The streams of whichever workload the child runs.
                "streams" => {
                    p.streams = n as usize;
                    p.idle = n as usize;
                }
                // The operations of whichever workload the child runs.
                "ops" => {
                    p.ops = n as usize;
                    p.openclose = n as usize;
                }
                "iters" => p.iters = n as usize,
                "mbit" => p.mbit = n,
                "rtt" => p.rtt_ms = n,
                "queue" => p.queue_ms = n,
                "wanmib" => p.wan_mib = n,
                "secs" => p.wan_secs = n,
                "lowat" => p.lowat_kib = n,
                "notuning" => p.no_tuning = n > 0,
                "untimed" => p.untimed = n > 0,
                _ => panic!("unknown parameter {k}"),
            }
        }
        p
    }
}

/// Runs `w` on `imp` and returns its result fields.
pub async fn run(imp: Impl, w: Workload, p: Params) -> io::Result<Fields> {
    let open_at_once = if w == Workload::Idle {
        p.idle + 1
    } else {
        p.streams
    };
    if w == Workload::WanTunnel {
        let version = match imp {
            Impl::SmuxV1 => smux_tokio::Version::V1,
            Impl::SmuxV2 => smux_tokio::Version::V2,
            _ => return Err(io::Error::other("the tunnel is built on smux-tokio")),
        };
        #[cfg(feature = "tunnel")]
        return crate::tunnel::run(version, &p).await;
        #[cfg(not(feature = "tunnel"))]
        return Err(io::Error::other(
            "built without the tunnel feature (a before build)",
        ));
    }
    let link = w.over_link().then(|| p.link());
    let setup = Setup {
        link,
        lowat: (p.lowat_kib > 0).then(|| (p.lowat_kib * 1024) as u32),
        window_tuning: !p.no_tuning,
    };
    let (opener, acceptor, link) = connect(imp, open_at_once, setup).await?;
    if let Some(link) = link {
        return wan::run(w, opener, acceptor, link, &p).await;
    }
    match w {
        Workload::Stream => bulk(opener, acceptor, p.mib * MIB, 1, p.write, false).await,
        Workload::Streams64 => bulk(opener, acceptor, p.mib * MIB, p.streams, p.write, false).await,
        Workload::Bidi => bidi(opener, acceptor, p.mib * MIB).await,
        Workload::Copy => bulk(opener, acceptor, p.mib * MIB, 1, p.write, true).await,
        Workload::CopyBidi => copy_bidi(opener, acceptor, p.mib * MIB, p.write).await,
        Workload::Handshake => echo(opener, acceptor, p.ops, false).await,
        Workload::EchoSeq => echo(opener, acceptor, p.ops, true).await,
        Workload::OpenClose => open_close(opener, acceptor, p.openclose).await,
        Workload::PingPong => ping_pong(opener, acceptor, p.iters, true, p.untimed).await,
        Workload::PingPongNoFlush => ping_pong(opener, acceptor, p.iters, false, p.untimed).await,
        Workload::Idle => idle(opener, acceptor, p.idle).await,
        Workload::Kcptun | Workload::KcptunOff => Err(io::Error::other(
            "the kcptun workloads run in a child of their own (--child-kcptun)",
        )),
        _ => unreachable!("the WAN workloads have a link"),
    }
}

/// Reads `s` to its end with a 64 KiB buffer; the bytes read.
async fn read_to_end_counting<R: AsyncRead + Unpin>(mut s: R) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(n),
            k => n += k as u64,
        }
    }
}

/// Reads `s` to its end as [`read_to_end_counting`] does or, with `copy`, with
/// `tokio::io::copy` into `tokio::io::sink()` (the plain `AsyncRead` path, through Tokio's
/// 8 KiB copy buffer); the bytes read.
async fn drain(mut s: BoxIo, copy: bool) -> io::Result<u64> {
    if copy {
        tokio::io::copy(&mut s, &mut tokio::io::sink()).await
    } else {
        read_to_end_counting(s).await
    }
}

/// `streams` streams at once, each writing `total / streams` bytes in `write`-byte writes; the
/// time until the server has read every byte, with 64 KiB reads or, with `copy` (the `copy`
/// workload), through `tokio::io::copy` into a sink.
async fn bulk(
    opener: Opener,
    mut acceptor: Acceptor,
    total: u64,
    streams: usize,
    write: usize,
    copy: bool,
) -> io::Result<Fields> {
    let per = total / streams as u64;
    let (done_tx, done_rx) = oneshot::channel();
    spawn(async move {
        let mut readers = Vec::with_capacity(streams);
        for _ in 0..streams {
            let Some(s) = acceptor.accept().await else {
                break;
            };
            readers.push(spawn(drain(s, copy)));
        }
        let mut n = 0;
        for r in readers {
            n += r.await.and_then(|r| r).unwrap_or(0);
        }
        let _ = done_tx.send((n, acceptor));
    })
    .detach();
    let start = Instant::now();
    let mut writers = Vec::with_capacity(streams);
    for _ in 0..streams {
        let s = opener.open().await?;
        writers.push(spawn(write_counted(s, per, write)));
    }
    let mut kept = Vec::new();
    for w in writers {
        kept.push(w.await??);
    }
    let (n, _acceptor) = done_rx.await.map_err(io::Error::other)?;
    let secs = start.elapsed().as_secs_f64();
    if n != per * streams as u64 {
        return Err(io::Error::other(format!(
            "read {n} of {} bytes",
            per * streams as u64
        )));
    }
    drop(opener);
    Ok(vec![("bytes", n as f64), ("secs", secs)])
}

/// Writes `n` bytes to `w` in `size`-byte writes and shuts it down; gives it back, to be kept
/// until the reader is done (some implementations reset a stream on drop).
async fn write_counted<W: AsyncWrite + Unpin>(mut w: W, n: u64, size: usize) -> io::Result<W> {
    let buf = vec![0x5au8; size];
    let mut left = n;
    while left > 0 {
        let k = left.min(size as u64) as usize;
        w.write_all(&buf[..k]).await?;
        left -= k as u64;
    }
    w.shutdown().await?;
    Ok(w)
}

/// Two bulk transfers at once over one connection, `per` bytes each way in 64 KiB writes,
/// read with 64 KiB buffers: stream A from the client to the server, stream B from the server
/// to the client. The client opens both and names each with its first byte (`A` or `B`, not
/// counted), so that the server tells them apart whatever the order it accepts them in (and
/// yamux, which sends a stream's SYN with its first frame, sees B). Raw TCP: one connection,
/// its halves split at both ends, a direction each way. The time until both readers have
/// read every byte; `bytes` is both directions' sum.
async fn bidi(opener: Opener, acceptor: Acceptor, per: u64) -> io::Result<Fields> {
    if let (Opener::Raw(addr), Acceptor::Raw(listener)) = (&opener, &acceptor) {
        let start = Instant::now();
        let client = TcpStream::connect(addr).await?;
        let (server, _) = listener.accept().await?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        let up = spawn(write_counted(cw, per, CHUNK));
        let down = spawn(write_counted(sw, per, CHUNK));
        let got_up = spawn(read_to_end_counting(sr));
        let got_down = read_to_end_counting(cr).await?;
        let got_up = got_up.await??;
        let secs = start.elapsed().as_secs_f64();
        let _kept = (up.await??, down.await??);
        return bidi_fields(got_up, got_down, per, secs);
    }
    let mut acceptor = acceptor;
    let server = spawn(async move {
        let mut roles = Vec::with_capacity(2);
        for _ in 0..2 {
            let Some(mut s) = acceptor.accept().await else {
                break;
            };
            roles.push(spawn(async move {
                let mut role = [0u8; 1];
                s.read_exact(&mut role).await?;
                match &role {
                    b"A" => {
                        let n = read_to_end_counting(&mut s).await?;
                        Ok::<_, io::Error>((Some(n), s))
                    }
                    b"B" => Ok((None, write_counted(s, per, CHUNK).await?)),
                    _ => Err(io::Error::other("bidi: a stream of no role")),
                }
            }));
        }
        let mut up = None;
        let mut kept = Vec::with_capacity(2);
        for r in roles {
            let (n, s) = r.await??;
            up = up.or(n);
            kept.push(s);
        }
        Ok::<_, io::Error>((up.unwrap_or(0), kept, acceptor))
    });
    let start = Instant::now();
    let mut a = opener.open().await?;
    let mut b = opener.open().await?;
    let up = spawn(async move {
        a.write_all(b"A").await?;
        write_counted(a, per, CHUNK).await
    });
    b.write_all(b"B").await?;
    b.flush().await?;
    let got_down = read_to_end_counting(&mut b).await?;
    let _a = up.await??;
    let (got_up, _kept, _acceptor) = server.await??;
    let secs = start.elapsed().as_secs_f64();
    drop(opener);
    bidi_fields(got_up, got_down, per, secs)
}

/// A relay: the server accepts one stream and relays between it and an in-memory [`Service`]
/// with `tokio::io::copy_bidirectional_with_sizes(stream, service, 64 KiB, 64 KiB)`, as a proxy
/// in front of a local service does. The client sends `per` bytes in `write`-byte writes and
/// shuts its side down, and meanwhile reads (64 KiB buffer) the `per` bytes the service sends,
/// until the relay passes the service's end on as the stream's shutdown; the stream's two
/// directions go at once, each half-closed on its own. The client, like the relay, drives
/// both directions in one task (a `tokio::io::split` of its stream, the halves polled
/// together): yamux 0.13 read from one task and written from another loses a wake-up and
/// hangs (its reads send window updates through the command channel its writes use, whose
/// sender keeps one waiting task). Raw TCP: the same with a TCP connection in place of the
/// stream. The time until the client has read every byte and the relay has returned; `bytes`
/// is both directions' sum.
async fn copy_bidi(
    opener: Opener,
    mut acceptor: Acceptor,
    per: u64,
    write: usize,
) -> io::Result<Fields> {
    let relay = spawn(async move {
        let mut s = acceptor
            .accept()
            .await
            .ok_or_else(|| io::Error::other("copy-bidi: accept ended"))?;
        let mut service = Service { left: per };
        let (up, down) =
            tokio::io::copy_bidirectional_with_sizes(&mut s, &mut service, RELAY_BUF, RELAY_BUF)
                .await?;
        Ok::<_, io::Error>((up, down, s, acceptor))
    });
    let start = Instant::now();
    let s = opener.open().await?;
    let (mut r, w) = tokio::io::split(s);
    let (w, got_down) =
        tokio::try_join!(write_counted(w, per, write), read_to_end_counting(&mut r))?;
    let (got_up, sent_down, s, _acceptor) = relay.await??;
    let secs = start.elapsed().as_secs_f64();
    let _kept = (r.unsplit(w), s);
    drop(opener);
    if sent_down != per {
        return Err(io::Error::other(format!(
            "copy-bidi: the relay passed {sent_down} of the service's {per} bytes"
        )));
    }
    bidi_fields(got_up, got_down, per, secs)
}

/// `copy-bidi`'s local service, in memory and without a copy of its own: what it is sent it
/// discards (as `tokio::io::sink()`), and it sends `left` bytes, then EOF. Its reads hand the
/// reader's buffer back as it is (the relay's buffer is initialized once, so nothing is
/// written to it): the bytes are whatever that buffer holds.
struct Service {
    left: u64,
}

impl AsyncRead for Service {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        // Zeroes only what the reader has never initialized (nothing, for the relay's buffer).
        buf.initialize_unfilled_to(n);
        buf.advance(n);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Service {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn bidi_fields(up: u64, down: u64, per: u64, secs: f64) -> io::Result<Fields> {
    if up != per || down != per {
        return Err(io::Error::other(format!(
            "read {up} bytes up and {down} down, of {per} each"
        )));
    }
    Ok(vec![("bytes", (up + down) as f64), ("secs", secs)])
}

/// Open, 8-byte echo, close; one after the other. With `flush` (`echo-seq`), each side
/// flushes after its write, as a request/response protocol does; without (`handshake`), the
/// writes go out when the implementation sends them of its own accord. The client shuts its
/// stream down and opens the next without waiting for the server's close. Raw TCP: a new
/// connection each time.
async fn echo(
    opener: Opener,
    mut acceptor: Acceptor,
    ops: usize,
    flush: bool,
) -> io::Result<Fields> {
    spawn(async move {
        while let Some(mut s) = acceptor.accept().await {
            spawn(async move {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await?;
                s.write_all(&b).await?;
                if flush {
                    s.flush().await?;
                }
                while s.read(&mut b).await? > 0 {}
                s.shutdown().await
            })
            .detach();
        }
    })
    .detach();
    let start = Instant::now();
    for i in 0..ops {
        let mut s = opener.open().await?;
        let msg = (i as u64).to_le_bytes();
        s.write_all(&msg).await?;
        if flush {
            s.flush().await?;
        }
        let mut back = [0u8; 8];
        s.read_exact(&mut back).await?;
        if back != msg {
            return Err(io::Error::other("echo differs"));
        }
        s.shutdown().await?;
    }
    Ok(vec![
        ("ops", ops as f64),
        ("secs", start.elapsed().as_secs_f64()),
    ])
}

/// Pipelined open+close, no payload: the client opens a stream and shuts it down at once,
/// keeping at most [`OPENCLOSE_WINDOW`] streams in flight; a stream leaves the window when the
/// client reads the server's close (EOF), oldest first. The server accepts each stream,
/// answers with its own close, reads the client's and drops it. The time until the client
/// has seen all `ops` answers and the server has accepted all `ops` streams.
async fn open_close(opener: Opener, mut acceptor: Acceptor, ops: usize) -> io::Result<Fields> {
    let server = spawn(async move {
        let mut n = 0;
        while n < ops {
            let Some(mut s) = acceptor.accept().await else {
                break;
            };
            // The client's FIN follows its SYN, so the read ends at once.
            let _ = s.shutdown().await;
            let mut b = [0u8; 1];
            while matches!(s.read(&mut b).await, Ok(k) if k > 0) {}
            n += 1;
        }
        (n, acceptor)
    });
    async fn answered(mut s: BoxIo) -> io::Result<()> {
        let mut b = [0u8; 1];
        match s.read(&mut b).await? {
            0 => Ok(()),
            _ => Err(io::Error::other("open+close: data on a stream")),
        }
    }
    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(OPENCLOSE_WINDOW);
    for _ in 0..ops {
        if in_flight.len() == OPENCLOSE_WINDOW {
            answered(in_flight.pop_front().expect("full")).await?;
        }
        let mut s = opener.open().await?;
        s.shutdown().await?;
        in_flight.push_back(s);
    }
    for s in in_flight {
        answered(s).await?;
    }
    let (n, _acceptor) = server.await?;
    let secs = start.elapsed().as_secs_f64();
    if n != ops {
        return Err(io::Error::other(format!("accepted {n} of {ops}")));
    }
    Ok(vec![("ops", ops as f64), ("secs", secs)])
}

/// 64-byte ping-pong on one stream: per-round-trip latency. With `flush`, both sides flush
/// after each write. `untimed`: no clock and no latencies, only the round trips (for
/// `--instructions`); the result is the count.
async fn ping_pong(
    opener: Opener,
    mut acceptor: Acceptor,
    iters: usize,
    flush: bool,
    untimed: bool,
) -> io::Result<Fields> {
    spawn(async move {
        let Some(mut s) = acceptor.accept().await else {
            return;
        };
        let mut b = [0u8; 64];
        while s.read_exact(&mut b).await.is_ok()
            && s.write_all(&b).await.is_ok()
            && (!flush || s.flush().await.is_ok())
        {}
    })
    .detach();
    let mut s = opener.open().await?;
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    if untimed {
        for _ in 0..iters + 1000 {
            s.write_all(&msg).await?;
            if flush {
                s.flush().await?;
            }
            s.read_exact(&mut back).await?;
        }
        return Ok(vec![("ops", iters as f64)]);
    }
    let mut lat = Vec::with_capacity(iters);
    for i in 0..iters + 1000 {
        let t = Instant::now();
        s.write_all(&msg).await?;
        if flush {
            s.flush().await?;
        }
        s.read_exact(&mut back).await?;
        if i >= 1000 {
            lat.push(t.elapsed());
        }
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    Ok(vec![("p50_us", at(0.50)), ("p99_us", at(0.99))])
}

/// Opens `n` streams one by one (open, then accept) and keeps both ends: heap bytes and
/// resident bytes (RSS, which also counts what the allocator keeps and the pages a table
/// touches) per stream, and the time of the first and the last thousand opens.
async fn idle(opener: Opener, mut acceptor: Acceptor, n: usize) -> io::Result<Fields> {
    let settle = || sleep(Duration::from_millis(50));
    settle().await;
    let before = live();
    let rss_before = crate::status_kib("VmRSS");
    let mut ends = Vec::with_capacity(2 * n);
    let mut batches = Vec::new();
    let mut t = Instant::now();
    for i in 0..n {
        ends.push(opener.open().await?);
        ends.push(
            acceptor
                .accept()
                .await
                .ok_or_else(|| io::Error::other("accept ended"))?,
        );
        if (i + 1) % 1000 == 0 {
            batches.push(t.elapsed().as_secs_f64());
            t = Instant::now();
        }
    }
    settle().await;
    // The vector of handles is the benchmark's, not the implementation's.
    let vector = (ends.capacity() * size_of::<BoxIo>()) as f64;
    let held = live() as f64 - before as f64 - vector;
    let resident = (crate::status_kib("VmRSS") as f64 - rss_before as f64) * 1024.0 - vector;
    let first = batches.first().copied().unwrap_or(f64::NAN);
    let last = batches.last().copied().unwrap_or(f64::NAN);
    drop(ends);
    Ok(vec![
        ("mem_per_stream", held / n as f64),
        ("rss_per_stream", resident / n as f64),
        ("first_secs", first),
        ("last_secs", last),
    ])
}
