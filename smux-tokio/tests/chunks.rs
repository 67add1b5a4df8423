//! Zero-copy I/O: `read_chunk`, `write_chunk` and `AsyncBufRead`.
//!
//! This binary installs the counting allocator (`smux_test_support::alloc::CountingAlloc`), so
//! its tests hold `serial()` and run one at a time. The transfers run on all three Tokio
//! runtimes; the allocation count runs on the current-thread runtime, where nothing else runs
//! meanwhile.

use std::time::Duration;

use bytes::Bytes;
use smux_test_support::alloc::{kib, live, peak, reset_peak, serial, CountingAlloc};
use smux_tokio::{MuxBuilder, MuxStream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

mod common;

use common::on_runtimes;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn chunks_carry_a_transfer_both_ways_in_order() {
    let _serial = serial();
    on_runtimes(|| async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let ((conn, _, _), (_, mut acc, _)) = common::sessions(a, b);
        let data = Bytes::from(common::pattern(5, 3 << 20));
        let mut s = conn.connect().unwrap();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            // Chunks of every size: smaller and larger than a frame, and than the queue.
            let mut rest = sent;
            for size in [1usize, 100, 16 * 1024, 40 * 1024, 1 << 20].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let chunk = rest.split_to((*size).min(rest.len()));
                s.write_chunk(chunk).await.unwrap();
            }
            s.shutdown().await.unwrap();
            s
        });
        let mut p = acc.accept().await.unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = timeout(LIMIT, p.read_chunk(10_000)).await.unwrap().unwrap() {
            assert!(
                !chunk.is_empty() && chunk.len() <= 10_000,
                "{}",
                chunk.len()
            );
            got.extend_from_slice(&chunk);
        }
        assert!(got == data, "the bytes arrive whole and in order");
        drop(writer.await.unwrap());
    });
}

#[test]
fn buffered_reads_lines_and_mix_with_reads_and_chunks() {
    let _serial = serial();
    on_runtimes(|| async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let ((conn, _, _), (_, mut acc, _)) = common::sessions(a, b);
        let mut s = conn.connect().unwrap();
        s.write_all(b"first line\nsecond line\nrest of it")
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let mut p: MuxStream<DuplexStream> = acc.accept().await.unwrap();
        let mut line = String::new();
        p.read_line(&mut line).await.unwrap();
        assert_eq!(line, "first line\n");
        // What the buffered read holds comes first, whichever call reads next.
        let mut five = [0u8; 5];
        p.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"secon");
        let chunk = p.read_chunk(3).await.unwrap().unwrap();
        assert_eq!(&chunk[..], b"d l");
        let (mut r, _w) = p.into_split();
        let mut rest = String::new();
        r.read_line(&mut rest).await.unwrap();
        assert_eq!(rest, "ine\n");
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, b"rest of it");
        assert!(r.read_chunk(100).await.unwrap().is_none());
    });
}

/// A client session whose transport's other end is drained and dropped by a plain task (no
/// session there): what the client holds is all that is measured.
fn client_into_a_sink() -> smux_tokio::MuxConnector<DuplexStream> {
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while b.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let (conn, _acc, worker) = MuxBuilder::client().with_connection(a).build();
    tokio::spawn(worker);
    conn
}

#[test]
fn write_chunk_copies_no_payload() {
    const TOTAL: usize = 4 << 20;
    let _serial = serial();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let conn = client_into_a_sink();
            let data = Bytes::from(common::pattern(1, TOTAL));
            let mut s = conn.connect().unwrap();
            // Warm up: the pipe's buffer, the session's tables, the header buffer.
            s.write_chunk(data.slice(..256 * 1024)).await.unwrap();
            s.write_all(&data[..256 * 1024]).await.unwrap();
            s.flush().await.unwrap();

            let held = |label: &str, before: usize| {
                let grew = peak().saturating_sub(before);
                eprintln!("{label}: the heap grew by at most {}", kib(grew));
                grew
            };
            // In 16 KiB chunks (under a frame, so they queue) and in 1 MiB chunks (which go
            // straight to the transport when they can).
            for size in [16 * 1024, 1 << 20] {
                let before = live();
                reset_peak();
                for chunk in data.chunks(size) {
                    let chunk = data.slice_ref(chunk);
                    s.write_chunk(chunk).await.unwrap();
                }
                s.flush().await.unwrap();
                let grew = held(&format!("write_chunk of {} chunks", kib(size)), before);
                // Headers and bookkeeping, and at most one frame's rest copied when the
                // transport takes part of a frame written straight to it.
                assert!(
                    grew < 64 * 1024,
                    "write_chunk copied payload: {}",
                    kib(grew)
                );
            }
            // The same bytes through write_all are copied into the stream's queue: the
            // measurement sees copies when there are some.
            let before = live();
            reset_peak();
            for chunk in data.chunks(16 * 1024) {
                s.write_all(chunk).await.unwrap();
            }
            s.flush().await.unwrap();
            let grew = held("write_all of 16 KiB writes", before);
            assert!(grew >= 128 * 1024, "write_all copied only {}", kib(grew));
        });
}
