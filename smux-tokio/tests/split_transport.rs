//! A transport given as its two halves (`Split`): streams work over it as over a whole one, and
//! a read completes while another task is inside the transport's `poll_write`, which a
//! transport shared by both directions cannot offer.

mod common;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::ThreadId;

use common::on_runtimes;
use smux_test_support::tokio::tcp_pair;
use smux_tokio::{MuxBuilder, Split, Version};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

#[test]
fn streams_echo_both_ways_over_a_split_transport() {
    on_runtimes(|| async {
        for version in [Version::V1, Version::V2] {
            let (a, b) = tcp_pair().await;
            let (ar, aw) = a.into_split();
            let (br, bw) = b.into_split();
            let (client, _ca, cw) = MuxBuilder::client()
                .with_version(version)
                .with_connection(Split::new(ar, aw))
                .build();
            let (_sc, mut acceptor, sw) = MuxBuilder::server()
                .with_version(version)
                .with_connection(Split::new(br, bw))
                .build();
            let cw = tokio::spawn(cw);
            let sw = tokio::spawn(sw);
            let echo = tokio::spawn(async move {
                while let Some(mut s) = acceptor.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = tokio::io::split(&mut s);
                        tokio::io::copy(&mut r, &mut w).await.unwrap();
                        s.shutdown().await.unwrap();
                    });
                }
            });
            let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let s = client.connect().unwrap();
                let data = data.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let send = async {
                        w.write_all(&data).await.unwrap();
                        w.shutdown().await.unwrap();
                    };
                    let mut got = Vec::new();
                    let recv = r.read_to_end(&mut got);
                    let ((), n) = tokio::join!(send, recv);
                    assert_eq!(n.unwrap(), data.len());
                    assert!(got == data, "{version:?}: the echo differs");
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            client.close().await.unwrap();
            cw.await.unwrap().unwrap();
            sw.await.unwrap().unwrap();
            echo.await.unwrap();
        }
    });
}

/// Holds the first `poll_write` made on one thread until released, as a slow syscall would.
#[derive(Default)]
struct Gate {
    /// The thread whose write is held.
    thread: Mutex<Option<ThreadId>>,
    held: AtomicBool,
    entered: Notify,
    released: Mutex<bool>,
    wake: Condvar,
}

impl Gate {
    fn hold_if_armed(&self) {
        let ours = *self.thread.lock().unwrap() == Some(std::thread::current().id());
        if ours && !self.held.swap(true, Ordering::SeqCst) {
            self.entered.notify_one();
            let mut released = self.released.lock().unwrap();
            while !*released {
                released = self.wake.wait(released).unwrap();
            }
        }
    }

    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.wake.notify_all();
    }
}

/// A write half whose next write, once armed, holds its thread in `poll_write`.
struct GatedWrite<W> {
    inner: W,
    gate: Arc<Gate>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for GatedWrite<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.gate.hold_if_armed();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.gate.hold_if_armed();
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The held write is made by a task on a thread of its own (a blocking-pool thread running
/// the task with `Handle::block_on`), so that the runtime's own threads stay free: what is
/// tested is that the worker reads without waiting for the transport's write side.
#[test]
fn a_read_completes_while_another_task_is_inside_poll_write() {
    on_runtimes(|| async {
        for version in [Version::V1, Version::V2] {
            let (a, b) = tcp_pair().await;
            let (ar, aw) = a.into_split();
            let gate = Arc::new(Gate::default());
            let aw = GatedWrite {
                inner: aw,
                gate: Arc::clone(&gate),
            };
            let (client, _ca, cw) = MuxBuilder::client()
                .with_version(version)
                .with_connection(Split::new(ar, aw))
                .build();
            let (_sc, mut acceptor, sw) = MuxBuilder::server()
                .with_version(version)
                .with_connection(b)
                .build();
            let cw = tokio::spawn(cw);
            let sw = tokio::spawn(sw);

            let mut reader = client.connect().unwrap();
            reader.write_all(b"hi").await.unwrap();
            reader.flush().await.unwrap();
            let mut peer = acceptor.accept().await.unwrap();
            let mut hi = [0u8; 2];
            peer.read_exact(&mut hi).await.unwrap();

            // The peer drains the other stream, so that its writer never waits for a window.
            let drain = tokio::spawn(async move {
                let mut sink = [0u8; 64 * 1024];
                let mut other = acceptor.accept().await.unwrap();
                while other.read(&mut sink).await.unwrap() > 0 {}
                acceptor
            });

            // Another stream writes until its own task is inside the transport's write, and
            // stays there.
            let entered = gate.entered.notified();
            let mut writer = client.connect().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let handle = tokio::runtime::Handle::current();
            let stuck = tokio::task::spawn_blocking({
                let (gate, stop) = (Arc::clone(&gate), Arc::clone(&stop));
                move || {
                    *gate.thread.lock().unwrap() = Some(std::thread::current().id());
                    handle.block_on(async move {
                        while !stop.load(Ordering::SeqCst) {
                            writer.write_all(&[7u8; 64 * 1024]).await.unwrap();
                        }
                        writer.flush().await.unwrap();
                        writer
                    })
                }
            });
            entered.await;

            // Meanwhile the peer sends, and the read completes.
            peer.write_all(b"ping").await.unwrap();
            peer.flush().await.unwrap();
            let mut ping = [0u8; 4];
            reader.read_exact(&mut ping).await.unwrap();
            assert_eq!(&ping, b"ping");
            assert!(!stuck.is_finished(), "the write is still held");

            stop.store(true, Ordering::SeqCst);
            gate.release();
            let writer = stuck.await.unwrap();
            drop((reader, writer, peer));
            let acceptor = drain.await.unwrap();
            client.close().await.unwrap();
            drop(acceptor);
            cw.await.unwrap().unwrap();
            sw.await.unwrap().unwrap();
        }
    });
}
