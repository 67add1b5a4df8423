//! How frames are batched into transport writes, and opens that outrun the accept loop.
//!
//! - `shutdown()` queues its FIN without waiting for it to be written, and a small write
//!   sends it along with its own frame: on the current-thread runtime an open, 8-byte echo,
//!   close then costs one transport write per side, not one per frame. On the multi-thread
//!   runtime the worker runs in parallel with the tasks and writes a FIN as soon as it is
//!   queued: the client's FIN still mostly shares the next operation's write, the server's
//!   goes alone.
//! - A burst of opens far past the accept backlog, from a task that never yields, is held back
//!   while the application's accept loop runs, instead of being refused.
//!
//! Both run on the current-thread runtime and on the multi-thread runtime with 2 and 4
//! workers (`common::on_runtimes`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

mod common;

use common::{on_runtimes, Tap};

const LIMIT: Duration = Duration::from_secs(30);

/// Client and server transports that count the writes they complete.
fn counting_pair() -> (
    Tap<DuplexStream>,
    Tap<DuplexStream>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (wa, wb): (Arc<AtomicUsize>, Arc<AtomicUsize>) = (Arc::default(), Arc::default());
    let count = |w: &Arc<AtomicUsize>| {
        let w = Arc::clone(w);
        move |_: &[&[u8]]| {
            w.fetch_add(1, Ordering::Relaxed);
        }
    };
    (Tap::new(a, count(&wa)), Tap::new(b, count(&wb)), wa, wb)
}

#[test]
fn an_open_echo_close_costs_one_write_per_side() {
    on_runtimes(|| async {
        const OPS: usize = 1000;
        let (a, b, client_writes, server_writes) = counting_pair();
        let ((conn, _, _), (_, mut acc, _)) = common::sessions(a, b);
        tokio::spawn(async move {
            while let Some(mut s) = acc.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 8];
                    s.read_exact(&mut b).await?;
                    s.write_all(&b).await?;
                    while s.read(&mut b).await? > 0 {}
                    s.shutdown().await
                });
            }
        });
        timeout(LIMIT, async {
            for i in 0..OPS as u64 {
                let mut s = conn.connect().unwrap();
                s.write_all(&i.to_le_bytes()).await.unwrap();
                let mut back = [0u8; 8];
                s.read_exact(&mut back).await.unwrap();
                assert_eq!(u64::from_le_bytes(back), i);
                s.shutdown().await.unwrap();
            }
        })
        .await
        .expect("echoes done in time");
        // Frames per operation: SYN, PSH, FIN from the client; PSH, FIN from the server.
        let (c, s) = (
            client_writes.load(Ordering::Relaxed),
            server_writes.load(Ordering::Relaxed),
        );
        let rt = common::current_flavor();
        eprintln!(
            "{}: client {c}, server {s} transport writes for {OPS} echoes",
            rt.name()
        );
        // A small write goes out at once, from its task; a FIN waits for the worker. On one
        // thread the worker runs only once the tasks yield, so the FIN shares the write of the
        // next operation's frames: one write per operation and side. On several, the worker
        // runs in parallel: the client's FIN still mostly meets the next SYN and PSH (about one
        // operation in four writes it alone on 2 workers), while the server's FIN, written as
        // its echo is read, goes alone: its PSH and its FIN, one write each.
        let (client_most, server_most) = match rt {
            common::Flavor::CurrentThread => (OPS + OPS / 10, OPS + OPS / 10),
            common::Flavor::MultiThread(_) => (OPS + OPS / 2, 2 * OPS + OPS / 10),
        };
        assert!(c <= client_most, "client: {c} writes for {OPS} echoes");
        assert!(s <= server_most, "server: {s} writes for {OPS} echoes");
    });
}

#[test]
fn a_burst_of_opens_past_the_backlog_is_held_not_refused() {
    on_runtimes(|| async {
        const OPEN: usize = 20_000;
        let (a, b) = tokio::io::duplex(1 << 20);
        let ((conn, _, _), (_, mut acc, _)) = common::sessions(a, b);
        let read = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&read);
        tokio::spawn(async move {
            // An accept loop that hands each stream to a task of its own, as servers do.
            while let Some(mut s) = acc.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).await.is_ok() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        // Never yields: every open, write and shutdown completes at once, so the peer gets the
        // SYNs far faster than one accept per poll of its worker.
        let mut streams = Vec::with_capacity(OPEN);
        for _ in 0..OPEN {
            let mut s = conn.connect().unwrap();
            s.write_all(b"x").await.unwrap();
            s.shutdown().await.unwrap();
            streams.push(s);
        }
        // A refused stream reads as a clean end at once; an accepted one only after the server
        // task read its byte and dropped the stream.
        timeout(LIMIT, async {
            for mut s in streams {
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await.unwrap();
            }
        })
        .await
        .expect("every stream ends in time");
        assert_eq!(read.load(Ordering::Relaxed), OPEN, "streams refused");
    });
}
