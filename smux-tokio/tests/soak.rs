//! Soak: open, echo a few bytes, close, one cycle after another on one connection; the heap
//! must not grow with the cycles. Memory is measured for the whole process by the counting
//! allocator `smux_test_support::alloc::CountingAlloc`, so this binary holds only these tests,
//! and they run one at a time.

use std::time::{Duration, Instant};

use smux_tokio::{MuxBuilder, MuxConnector};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use smux_test_support::alloc::{kib, live, serial, CountingAlloc};
use smux_test_support::tokio::tcp_pair;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Waits until no stream handle is alive on `c`'s connection.
async fn no_streams_left<T: smux_tokio::TokioConn>(c: &MuxConnector<T>) {
    while c.get_num_streams() > 0 {
        tokio::task::yield_now().await;
    }
}

/// Runs `cycles` cycles (open a stream, write 4 bytes and FIN, read the echo to its end, drop;
/// the server accepts each stream in a task of its own, echoes to the end, FIN, drop) over
/// TCP. Returns the live heap once every stream is gone, after `checkpoint` cycles and after
/// the last.
async fn soak(cycles: u32, checkpoint: u32) -> (usize, usize) {
    let (theirs, ours) = tcp_pair().await;
    let (cc, _ca, cw) = MuxBuilder::client().with_connection(ours).build();
    let (sc, mut sa, sw) = MuxBuilder::server().with_connection(theirs).build();
    let cw = tokio::spawn(cw);
    let sw = tokio::spawn(sw);
    let server = tokio::spawn(async move {
        while let Some(mut s) = sa.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                let n = read_to_eof(&mut s, &mut buf).await;
                s.write_all(&buf[..n]).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    let start = Instant::now();
    let mut at_checkpoint = 0;
    for i in 1..=cycles {
        let mut s = cc.connect().unwrap();
        let msg = i.to_le_bytes();
        s.write_all(&msg).await.unwrap();
        s.shutdown().await.unwrap();
        let mut buf = [0u8; 16];
        let n = read_to_eof(&mut s, &mut buf).await;
        assert_eq!(&buf[..n], &msg, "cycle {i}");
        drop(s);
        if i == checkpoint {
            no_streams_left(&cc).await;
            no_streams_left(&sc).await;
            at_checkpoint = live();
            eprintln!(
                "{i} cycles in {:?}: live heap {}",
                start.elapsed(),
                kib(at_checkpoint)
            );
        }
    }
    no_streams_left(&cc).await;
    no_streams_left(&sc).await;
    let end = live();
    eprintln!(
        "{cycles} cycles in {:?}: live heap {}",
        start.elapsed(),
        kib(end)
    );
    cc.close().await.unwrap();
    cw.await.unwrap().unwrap();
    sw.await.unwrap().unwrap();
    server.await.unwrap();
    drop(sc);
    (at_checkpoint, end)
}

fn run_soak(cycles: u32, checkpoint: u32, multi_thread: bool, limit: Duration) {
    let _serial = serial();
    let rt = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let (first, last) = rt.block_on(async {
        timeout(limit, soak(cycles, checkpoint))
            .await
            .expect("soak not done in time (hang?)")
    });
    let growth = last as f64 / first as f64 - 1.0;
    eprintln!(
        "live heap after {checkpoint} cycles {}, after {cycles} {} ({:+.2}%)",
        kib(first),
        kib(last),
        growth * 100.0
    );
    assert!(
        growth.abs() <= 0.10,
        "the live heap went from {} after {checkpoint} cycles to {} after {cycles}",
        kib(first),
        kib(last)
    );
}

/// A million cycles on a current-thread runtime; the live heap after the last is within 10% of
/// what it was after the first 100,000.
#[test]
#[ignore = "soak: 1M cycles"]
fn soak_1m_cycles() {
    run_soak(1_000_000, 100_000, false, Duration::from_secs(600));
}

/// The same, shorter, on a two-thread runtime, for every test run.
#[test]
fn soak_20k_cycles_multi_thread() {
    run_soak(20_000, 2_000, true, Duration::from_secs(120));
}

/// Reads into `buf` until the end of the stream, without allocating; returns the length.
async fn read_to_eof(s: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> usize {
    let mut n = 0;
    loop {
        match s.read(&mut buf[n..]).await.unwrap() {
            0 => return n,
            k => n += k,
        }
    }
}
