//! Helpers shared by the test binaries: deterministic content, running a scenario on each Tokio
//! runtime (as smux-tokio's tests do), and an smux echo server over a KCP listener.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use smux_tokio::{MuxBuilder, Version};
use smux_tunnel::kcp::{KcpListener, KcpStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// xorshift64*, seeded through a splitmix64 step.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next_u64() % 1000 < per_mille
    }
}

/// `len` bytes of a sequence fixed by `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A Tokio runtime a scenario runs on.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    CurrentThread,
    MultiThread(usize),
}

/// Every scenario that involves scheduling runs on these.
pub const RUNTIMES: [Flavor; 3] = [
    Flavor::CurrentThread,
    Flavor::MultiThread(2),
    Flavor::MultiThread(4),
];

/// How long one run may take before it counts as a hang. A guard only: no test asserts
/// anything about how long it took.
pub const HANG_GUARD: Duration = Duration::from_secs(300);

/// Runs the body `f` makes on a fresh runtime of each flavour, under [`HANG_GUARD`]; every
/// flavour runs, then the failures, if any, are reported together.
pub fn on_runtimes<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut failed = Vec::new();
    for flavor in RUNTIMES {
        let rt = match flavor {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread(n) => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(n);
                b
            }
        }
        .enable_all()
        .build()
        .expect("a Tokio runtime");
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async {
                if tokio::time::timeout(HANG_GUARD, f()).await.is_err() {
                    panic!("no end within {HANG_GUARD:?} (hang)");
                }
            })
        }));
        rt.shutdown_timeout(Duration::from_secs(5));
        if let Err(p) = run {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{flavor:?}: {msg}"));
        }
    }
    assert!(failed.is_empty(), "failed on:\n  {}", failed.join("\n  "));
}

/// Echoes every smux stream of every session the listener accepts, each until its peer
/// finishes it.
pub async fn smux_echo_server(mut listener: KcpListener, version: Version) {
    while let Ok(session) = listener.accept().await {
        tokio::spawn(async move {
            let (_connector, mut acceptor, worker) = MuxBuilder::server()
                .with_version(version)
                .with_keep_alive_interval(std::num::NonZeroU64::new(10).unwrap())
                .with_connection(session)
                .build();
            tokio::spawn(worker);
            while let Some(stream) = acceptor.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tokio::io::split(stream);
                    if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                        let _ = w.shutdown().await;
                    }
                });
            }
        });
    }
}

/// Writes `data` on `stream` while reading its echo; returns the echo, read to the end.
pub async fn echo_round<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    data: Vec<u8>,
) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(stream);
    let len = data.len();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(16 * 1024) {
            w.write_all(chunk).await.expect("write");
        }
        w.shutdown().await.expect("shutdown");
        w
    });
    let mut back = Vec::with_capacity(len);
    r.read_to_end(&mut back).await.expect("read the echo");
    drop(writer.await.expect("writer"));
    back
}

/// Opens `streams` smux streams over `session` and echoes `size` bytes on each, all at once;
/// panics unless each comes back whole.
pub async fn smux_echo_client(session: KcpStream, version: Version, streams: usize, size: usize) {
    let (connector, _acceptor, worker) = MuxBuilder::client()
        .with_version(version)
        .with_keep_alive_interval(std::num::NonZeroU64::new(10).unwrap())
        .with_connection(session)
        .build();
    let worker = tokio::spawn(worker);
    let mut rounds = Vec::new();
    for i in 0..streams {
        let stream = connector.connect().expect("open a stream");
        rounds.push(tokio::spawn(async move {
            let data = pattern(i as u64, size);
            let back = echo_round(stream, data.clone()).await;
            assert_eq!(back.len(), data.len(), "stream {i}: echo length");
            assert!(back == data, "stream {i}: echo differs");
        }));
    }
    for r in rounds {
        r.await.expect("a stream's round");
    }
    connector.close().await.expect("close");
    let _ = worker.await;
}
