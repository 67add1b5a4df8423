//! The workloads over the emulated WAN link (`smux_test_support::link`): what tunnel users
//! see across the internet, where the round trip is tens of milliseconds.
//!
//! - `wan-stream`: one stream sends `wan_mib` MiB. The fraction of the link rate over the
//!   transfer, and the time until a window of four round trips first ran at 80 % of it.
//! - `wan-mixed`: 8 streams send bulk data for `wan_secs` seconds while a ninth sends 64-byte
//!   requests, one at a time, that the server echoes. The bulk rate, and the requests' round
//!   trips (p50, p99), after the first second; for ours, the most data frames (and bytes)
//!   the session's scheduler sent ahead of a request (`StreamStats::queued_ahead`).
//! - `wan-fetch`: a new stream asks for 1 MiB and reads it, first on the new connection, then
//!   again on the same connection after it has carried 16 MiB and sat idle for a second. The
//!   time of each, in round trips.
//!
//! Every result carries the link's own delivered rate (`link_mbit`), measured by the relay
//! from its first delivery to its last in the busier direction; the tables show it beside the
//! bulk workloads (for `wan-fetch` it would average over the idle second).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smux_test_support::link::Link;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::impls::{sleep, spawn, Acceptor, BoxIo, Opener};
use crate::workloads::{Fields, Params, Workload};

const CHUNK: usize = 64 * 1024;
const MIB: u64 = 1024 * 1024;
/// The interactive stream's messages.
const MESSAGE: usize = 64;

/// Runs WAN workload `w`.
pub async fn run(
    w: Workload,
    opener: Opener,
    acceptor: Acceptor,
    link: Link,
    p: &Params,
) -> io::Result<Fields> {
    let rtt = Duration::from_millis(p.rtt_ms);
    let mut fields = match w {
        Workload::WanStream => stream(opener, acceptor, p, rtt).await?,
        Workload::WanMixed => mixed(opener, acceptor, p).await?,
        Workload::WanFetch => fetch(opener, acceptor, rtt).await?,
        _ => unreachable!("not a WAN workload"),
    };
    fields.extend(link_fields(&link, p));
    Ok(fields)
}

/// The link's own delivered rate, in the direction that carried the bulk of the bytes, and
/// its configured rate.
pub fn link_fields(link: &Link, p: &Params) -> Fields {
    let busiest = if link.up.bytes() >= link.down.bytes() {
        &link.up
    } else {
        &link.down
    };
    vec![
        ("link_mbit", busiest.rate_bps().unwrap_or(f64::NAN) / 1e6),
        ("rate_mbit", p.mbit as f64),
    ]
}

/// Reads `s` to its end; returns the bytes and, per read, (seconds since `start`, bytes so
/// far).
async fn read_recording(mut s: BoxIo, start: Instant) -> io::Result<Vec<(f64, u64)>> {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    let mut samples = Vec::new();
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(samples),
            k => {
                n += k as u64;
                samples.push((start.elapsed().as_secs_f64(), n));
            }
        }
    }
}

/// Writes `total` bytes to `s` in 64 KiB writes, then shuts it down.
async fn send(s: &mut BoxIo, total: u64) -> io::Result<()> {
    let buf = vec![0x5au8; CHUNK];
    let mut left = total;
    while left > 0 {
        let k = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..k]).await?;
        left -= k as u64;
    }
    s.shutdown().await
}

/// The first instant at which the bytes of the preceding `window` reached `bps`.
fn time_to_rate(samples: &[(f64, u64)], window: f64, bps: f64) -> f64 {
    let mut j = 0;
    for &(t, n) in samples {
        while t - samples[j].0 > window {
            j += 1;
        }
        let (t0, n0) = samples[j];
        if t - t0 >= window / 2.0 && (n - n0) as f64 * 8.0 / (t - t0) >= bps {
            return t;
        }
    }
    f64::NAN
}

async fn stream(
    opener: Opener,
    mut acceptor: Acceptor,
    p: &Params,
    rtt: Duration,
) -> io::Result<Fields> {
    let total = p.wan_mib * MIB;
    let start = Instant::now();
    let reader = spawn(async move {
        let s = acceptor
            .accept()
            .await
            .ok_or_else(|| io::Error::other("accept ended"))?;
        let samples = read_recording(s, start).await;
        drop(acceptor);
        samples
    });
    let mut s = opener.open().await?;
    send(&mut s, total).await?;
    let samples = reader.await??;
    let secs = start.elapsed().as_secs_f64();
    let got = samples.last().map_or(0, |s| s.1);
    if got != total {
        return Err(io::Error::other(format!("read {got} of {total} bytes")));
    }
    let rate = p.mbit as f64 * 1e6;
    let window = (4.0 * rtt.as_secs_f64()).max(0.1);
    Ok(vec![
        ("link_fraction", total as f64 * 8.0 / secs / rate),
        ("t80_secs", time_to_rate(&samples, window, 0.8 * rate)),
        ("secs", secs),
    ])
}

async fn mixed(opener: Opener, mut acceptor: Acceptor, p: &Params) -> io::Result<Fields> {
    let bulk_bytes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&bulk_bytes);
    // The server: a stream's first byte says what it is. 'B': read to the end, counting;
    // 'I': echo messages until the end.
    spawn(async move {
        while let Some(mut s) = acceptor.accept().await {
            let counted = Arc::clone(&counted);
            spawn(async move {
                let mut kind = [0u8; 1];
                s.read_exact(&mut kind).await?;
                if kind[0] == b'B' {
                    let mut buf = vec![0u8; CHUNK];
                    loop {
                        match s.read(&mut buf).await? {
                            0 => break,
                            k => counted.fetch_add(k as u64, Ordering::Relaxed),
                        };
                    }
                } else {
                    let mut m = [0u8; MESSAGE];
                    while s.read_exact(&mut m).await.is_ok() {
                        s.write_all(&m).await?;
                        s.flush().await?;
                    }
                }
                s.shutdown().await
            })
            .detach();
        }
    })
    .detach();
    let stop = Arc::new(AtomicBool::new(false));
    let mut bulk = Vec::new();
    for _ in 0..8 {
        let mut s = opener.open().await?;
        let stop = Arc::clone(&stop);
        bulk.push(spawn(async move {
            s.write_all(b"B").await?;
            let buf = vec![0x5au8; CHUNK];
            while !stop.load(Ordering::Relaxed) {
                s.write_all(&buf).await?;
            }
            s.shutdown().await?;
            Ok::<_, io::Error>(s)
        }));
    }
    let mut s = opener.open().await?;
    s.write_all(b"I").await?;
    s.flush().await?;
    let start = Instant::now();
    let warm = Duration::from_secs(1);
    let end = Duration::from_secs(p.wan_secs);
    let mut lat = Vec::new();
    // Ours: the most the scheduler sent ahead of one request (frames, bytes).
    let mut ahead_max: Option<(u64, u64)> = None;
    let mut measured_from = None;
    let msg = [7u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    while start.elapsed() < end {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.flush().await?;
        s.read_exact(&mut back).await?;
        if start.elapsed() >= warm {
            measured_from.get_or_insert((t, bulk_bytes.load(Ordering::Relaxed)));
            lat.push(t.elapsed());
            if let Some(a) = s.queued_ahead() {
                let (f, b) = ahead_max.unwrap_or_default();
                ahead_max = Some((f.max(a.frames), b.max(a.bytes)));
            }
        }
        // An interactive user: a request every 20 ms at most.
        sleep(Duration::from_millis(20).saturating_sub(t.elapsed())).await;
    }
    let (t0, n0) = measured_from.ok_or_else(|| io::Error::other("no request after warm-up"))?;
    let bulk_bps =
        (bulk_bytes.load(Ordering::Relaxed) - n0) as f64 * 8.0 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    s.shutdown().await?;
    let mut kept = vec![s];
    for b in bulk {
        kept.push(b.await??);
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    let mut fields = vec![
        ("bulk_mbit", bulk_bps / 1e6),
        ("p50_ms", at(0.50)),
        ("p99_ms", at(0.99)),
        ("requests", lat.len() as f64),
    ];
    if let Some((frames, bytes)) = ahead_max {
        fields.push(("ahead_max_frames", frames as f64));
        fields.push(("ahead_max_kib", bytes as f64 / 1024.0));
    }
    Ok(fields)
}

async fn fetch(opener: Opener, mut acceptor: Acceptor, rtt: Duration) -> io::Result<Fields> {
    // The server: read an 8-byte size, send that many bytes, finish.
    spawn(async move {
        while let Some(mut s) = acceptor.accept().await {
            spawn(async move {
                let mut size = [0u8; 8];
                s.read_exact(&mut size).await?;
                send(&mut s, u64::from_le_bytes(size)).await?;
                // Keep the stream until the client has read it: some implementations reset
                // on drop.
                let mut b = [0u8; 1];
                while s.read(&mut b).await? > 0 {}
                Ok::<_, io::Error>(())
            })
            .detach();
        }
    })
    .detach();
    let get = |size: u64| {
        let opener = &opener;
        async move {
            let t = Instant::now();
            let mut s = opener.open().await?;
            s.write_all(&size.to_le_bytes()).await?;
            s.flush().await?;
            let mut buf = vec![0u8; CHUNK];
            let mut n = 0u64;
            while n < size {
                match s.read(&mut buf).await? {
                    0 => return Err(io::Error::other("early end")),
                    k => n += k as u64,
                }
            }
            let secs = t.elapsed().as_secs_f64();
            s.shutdown().await?;
            Ok::<_, io::Error>(secs)
        }
    };
    let cold = get(MIB).await?;
    get(16 * MIB).await?;
    sleep(Duration::from_secs(1)).await;
    let warm = get(MIB).await?;
    drop(opener);
    let rtts = |secs: f64| secs / rtt.as_secs_f64();
    Ok(vec![("cold_rtts", rtts(cold)), ("warm_rtts", rtts(warm))])
}
