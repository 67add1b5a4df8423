//! The workloads, each run in a child process of its own with both ends in that process. Each
//! returns `key=value` pairs for the `RESULT` line (the Go program prints the same keys).

use std::io;
use std::time::{Duration, Instant};

use smux_test_support::alloc::live;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::impls::{connect, Acceptor, BoxIo, Impl, Opener};

const CHUNK: usize = 64 * 1024;
const MIB: u64 = 1024 * 1024;

pub type Fields = Vec<(&'static str, f64)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Stream,
    Streams64,
    Handshake,
    OpenClose,
    PingPong,
    Idle,
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Workload::Stream,
        Workload::Streams64,
        Workload::Handshake,
        Workload::OpenClose,
        Workload::PingPong,
        Workload::Idle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Stream => "stream",
            Workload::Streams64 => "streams64",
            Workload::Handshake => "handshake",
            Workload::OpenClose => "openclose",
            Workload::PingPong => "pingpong",
            Workload::Idle => "idle",
        }
    }

    pub fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// Sizes of the workloads; the same for every implementation in a run.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub mib: u64,
    pub streams: usize,
    pub ops: usize,
    pub iters: usize,
    pub idle: usize,
}

impl Params {
    pub const FULL: Params = Params {
        mib: 1024,
        streams: 64,
        ops: 20_000,
        iters: 20_000,
        idle: 10_000,
    };
    pub const QUICK: Params = Params {
        mib: 64,
        streams: 64,
        ops: 2_000,
        iters: 2_000,
        idle: 2_000,
    };

    /// The `key=value` arguments a child gets for `w` (the Go program reads the same).
    pub fn args(&self, w: Workload) -> Vec<String> {
        match w {
            Workload::Stream => vec![format!("mib={}", self.mib)],
            Workload::Streams64 => vec![
                format!("mib={}", self.mib),
                format!("streams={}", self.streams),
            ],
            Workload::Handshake => vec![format!("ops={}", self.ops)],
            Workload::OpenClose => vec![format!("ops={}", self.ops * 5 / 2)],
            Workload::PingPong => vec![format!("iters={}", self.iters)],
            Workload::Idle => vec![format!("streams={}", self.idle)],
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
                // The streams of whichever workload the child runs.
                "streams" => {
                    p.streams = n as usize;
                    p.idle = n as usize;
                }
                "ops" => p.ops = n as usize,
                "iters" => p.iters = n as usize,
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
    let (opener, acceptor) = connect(imp, open_at_once).await?;
    match w {
        Workload::Stream => bulk(opener, acceptor, p.mib * MIB, 1).await,
        Workload::Streams64 => bulk(opener, acceptor, p.mib * MIB, p.streams).await,
        Workload::Handshake => handshake(opener, acceptor, p.ops).await,
        Workload::OpenClose => open_close(opener, acceptor, p.ops).await,
        Workload::PingPong => ping_pong(opener, acceptor, p.iters).await,
        Workload::Idle => idle(opener, acceptor, p.idle).await,
    }
}

async fn read_to_end_counting(mut s: BoxIo) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(n),
            k => n += k as u64,
        }
    }
}

/// `streams` streams at once, each writing `total / streams` bytes in 64 KiB writes; the time
/// until the server has read every byte.
async fn bulk(
    opener: Opener,
    mut acceptor: Acceptor,
    total: u64,
    streams: usize,
) -> io::Result<Fields> {
    let per = total / streams as u64;
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut readers = JoinSet::new();
        for _ in 0..streams {
            let Some(s) = acceptor.accept().await else {
                break;
            };
            readers.spawn(read_to_end_counting(s));
        }
        let mut n = 0;
        while let Some(r) = readers.join_next().await {
            n += r.map_err(io::Error::other).and_then(|r| r).unwrap_or(0);
        }
        let _ = done_tx.send((n, acceptor));
    });
    let start = Instant::now();
    let mut writers = JoinSet::new();
    for _ in 0..streams {
        let mut s = opener.open().await?;
        writers.spawn(async move {
            let buf = vec![0x5au8; CHUNK];
            let mut left = per;
            while left > 0 {
                let k = left.min(CHUNK as u64) as usize;
                s.write_all(&buf[..k]).await?;
                left -= k as u64;
            }
            s.shutdown().await?;
            // Keep the stream until the reader is done: some implementations reset on drop.
            Ok::<_, io::Error>(s)
        });
    }
    let mut kept = Vec::new();
    while let Some(r) = writers.join_next().await {
        kept.push(r.map_err(io::Error::other)??);
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

/// Open, 8-byte echo, close; one after the other.
async fn handshake(opener: Opener, mut acceptor: Acceptor, ops: usize) -> io::Result<Fields> {
    tokio::spawn(async move {
        while let Some(mut s) = acceptor.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await?;
                s.write_all(&b).await?;
                while s.read(&mut b).await? > 0 {}
                s.shutdown().await
            });
        }
    });
    let start = Instant::now();
    for i in 0..ops {
        let mut s = opener.open().await?;
        let msg = (i as u64).to_le_bytes();
        s.write_all(&msg).await?;
        let mut back = [0u8; 8];
        s.read_exact(&mut back).await?;
        if back != msg {
            return Err(io::Error::other("handshake echo differs"));
        }
        s.shutdown().await?;
    }
    Ok(vec![
        ("ops", ops as f64),
        ("secs", start.elapsed().as_secs_f64()),
    ])
}

/// Opens and closes `ops` streams without waiting for anything; the time until the server has
/// accepted all of them.
async fn open_close(opener: Opener, mut acceptor: Acceptor, ops: usize) -> io::Result<Fields> {
    let server = tokio::spawn(async move {
        let mut n = 0;
        while n < ops {
            match acceptor.accept().await {
                // Closed as it is accepted (yamux acknowledges a stream only on its first
                // frame back, and stops opening after 256 unacknowledged ones).
                Some(mut s) => {
                    let _ = s.shutdown().await;
                }
                None => break,
            }
            n += 1;
        }
        (n, acceptor)
    });
    let start = Instant::now();
    for _ in 0..ops {
        let mut s = opener.open().await?;
        s.shutdown().await?;
    }
    let (n, _acceptor) = server.await.map_err(io::Error::other)?;
    let secs = start.elapsed().as_secs_f64();
    if n != ops {
        return Err(io::Error::other(format!("accepted {n} of {ops}")));
    }
    Ok(vec![("ops", ops as f64), ("secs", secs)])
}

/// 64-byte ping-pong on one stream: per-round-trip latency.
async fn ping_pong(opener: Opener, mut acceptor: Acceptor, iters: usize) -> io::Result<Fields> {
    tokio::spawn(async move {
        let Some(mut s) = acceptor.accept().await else {
            return;
        };
        let mut b = [0u8; 64];
        while s.read_exact(&mut b).await.is_ok() && s.write_all(&b).await.is_ok() {}
    });
    let mut s = opener.open().await?;
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut lat = Vec::with_capacity(iters);
    for i in 0..iters + 1000 {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        if i >= 1000 {
            lat.push(t.elapsed());
        }
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    Ok(vec![("p50_us", at(0.50)), ("p99_us", at(0.99))])
}

/// Opens `n` streams one by one (open, then accept) and keeps both ends: heap bytes per
/// stream, and the time of the first and the last thousand opens.
async fn idle(opener: Opener, mut acceptor: Acceptor, n: usize) -> io::Result<Fields> {
    let settle = || tokio::time::sleep(Duration::from_millis(50));
    settle().await;
    let before = live();
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
    let held = live() as f64 - before as f64 - (ends.capacity() * size_of::<BoxIo>()) as f64;
    let first = batches.first().copied().unwrap_or(f64::NAN);
    let last = batches.last().copied().unwrap_or(f64::NAN);
    drop(ends);
    Ok(vec![
        ("mem_per_stream", held / n as f64),
        ("first_secs", first),
        ("last_secs", last),
    ])
}
