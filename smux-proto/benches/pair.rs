//! Throughput of the protocol core alone: an in-memory pair of sessions (no sockets), 64 KiB
//! writes on one stream and on 64 streams, versions 1 and 2, printed beside the speed of
//! `copy_from_slice` between two preallocated 64 KiB buffers measured in the same run.
//!
//! Each byte is copied once in (`write`), split off without copying on the way through, and
//! copied once out (`read`), so two memory copies are the floor.
//!
//! ```text
//! cargo bench -p smux-proto --bench pair
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use smux_proto::pair::Pair;
use smux_proto::{Config, StreamError, StreamId, Version};

const WRITE: usize = 64 * 1024;
const REPS: usize = 5;

/// Bytes moved per case and repetition: 1 GiB, or `SMUX_BENCH_MIB` MiB (for profiling runs).
fn total() -> usize {
    let mib = std::env::var("SMUX_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok());
    mib.unwrap_or(1024usize) * 1024 * 1024
}

fn gib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1024.0 * 1024.0 * 1024.0)
}

/// `copy_from_slice` between two preallocated 64 KiB buffers. They are carved from one
/// allocation half a page apart: on some CPUs a copy whose source and destination share their
/// offset within a page runs far below its normal speed (see docs/performance.md), which would
/// make the baseline meaningless.
fn copy_speed() -> f64 {
    let mut region = vec![7u8; 2 * WRITE + 2048];
    let (src, dst) = region.split_at_mut(WRITE + 2048);
    let src = &src[..WRITE];
    let start = Instant::now();
    for _ in 0..total() / WRITE {
        dst.copy_from_slice(black_box(src));
        black_box(&mut *dst);
    }
    gib_per_s(total(), start.elapsed())
}

/// Moves `TOTAL` bytes client to server over `streams` streams; returns GiB/s.
fn pair_speed(version: Version, streams: usize) -> f64 {
    let config = {
        let mut c = Config::default();
        c.with_version(version);
        c
    };
    let mut p = Pair::new(config.clone(), config, Instant::now()).unwrap();
    let ids: Vec<StreamId> = (0..streams).map(|_| p.client.open().unwrap()).collect();
    p.drive();
    while p.server.accept().is_some() {}
    // The application's buffers start on a page, as the baseline's do, so that where the
    // allocator happens to put them does not decide the speed of the copies (see
    // `copy_speed`).
    let mut src_region = vec![1u8; WRITE + 4096];
    let mut buf_region = vec![0u8; WRITE + 4096];
    let src = page_aligned(&mut src_region);
    let buf = page_aligned(&mut buf_region);
    let total = total();
    let per_stream = total / streams;
    let mut sent = vec![0usize; streams];
    let mut received = 0usize;
    let start = Instant::now();
    while received < total {
        // One 64 KiB write per stream, then move and read: the lockstep of an application
        // whose socket drains as fast as it writes.
        for (i, id) in ids.iter().enumerate() {
            if sent[i] < per_stream {
                let n = WRITE.min(per_stream - sent[i]);
                match p.client.write(*id, &src[..n]) {
                    Ok(k) => sent[i] += k,
                    Err(StreamError::Blocked) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
        p.drive();
        for id in &ids {
            while let Ok(n) = p.server.read(*id, buf) {
                if n == 0 {
                    break;
                }
                received += n;
            }
        }
        p.drive();
        p.client_events.clear();
        p.server_events.clear();
    }
    black_box(&buf);
    gib_per_s(total, start.elapsed())
}

fn page_aligned(region: &mut [u8]) -> &mut [u8] {
    let skip = region.as_ptr().align_offset(4096);
    &mut region[skip..skip + WRITE]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this binary too: keep that quick.
    if std::env::args().any(|a| a == "--test") {
        println!("pair benchmark: skipped under cargo test");
        return;
    }
    let only = std::env::var("SMUX_BENCH_ONLY").ok();
    let cases = [
        ("v1, 1 stream", Version::V1, 1),
        ("v1, 64 streams", Version::V1, 64),
        ("v2, 1 stream", Version::V2, 1),
        ("v2, 64 streams", Version::V2, 64),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|(name, _, _)| only.as_deref().is_none_or(|o| name.contains(o)))
        .collect();
    let mut copy = Vec::new();
    let mut results = vec![Vec::new(); cases.len()];
    // Repetitions interleaved so a noisy moment spreads over every case.
    for _ in 0..REPS {
        copy.push(copy_speed());
        for (i, (_, v, n)) in cases.iter().enumerate() {
            results[i].push(pair_speed(*v, *n));
        }
    }
    let copy = median(copy);
    let mib = total() / (1024 * 1024);
    println!("in-memory pair, 64 KiB writes, {REPS} reps of {mib} MiB, medians");
    println!("| case | GiB/s | x copy_from_slice |");
    println!("|---|---|---|");
    println!("| copy_from_slice 64 KiB | {copy:.2} | 1.00 |");
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let m = median(results[i].clone());
        println!("| {name} | {m:.2} | {:.2} |", m / copy);
    }
}
