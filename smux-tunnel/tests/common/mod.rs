//! Helpers shared by the test binaries: deterministic content and running a scenario on each
//! Tokio runtime (from `smux-test-support`, as smux-tokio's tests do), a seeded lossy UDP
//! relay, echo servers (smux over a KCP listener, and plain TCP), echo clients, and the built
//! `tunnel` binary.

#![allow(dead_code)]

use std::net::SocketAddr;

use smux_tokio::{MuxBuilder, Version};
use smux_tunnel::kcp::{CodecConfig, KcpGoCodec, KcpListener, KcpStream};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

#[allow(unused_imports)]
pub use smux_test_support::content::{pattern, Rng};
#[allow(unused_imports)]
pub use smux_test_support::runtimes::{
    all_passed, on_paused_clock, on_runtime, on_runtimes, Flavor, RUNTIMES,
};

/// kcp-go's codec with `-crypt none` and no FEC.
pub fn plain() -> KcpGoCodec {
    KcpGoCodec::new(&CodecConfig::plain()).expect("no FEC")
}

/// Forwards datagrams between one client (the last address that sent to the relay) and
/// `server`, losing `loss_per_mille` of them each way and holding back about twice as many
/// until the next datagram has passed (reordering), by a generator seeded with `seed`.
pub async fn lossy_relay(
    server: SocketAddr,
    seed: u64,
    loss_per_mille: u64,
) -> (SocketAddr, JoinHandle<()>) {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut loss = Loss {
            rng: Rng::new(seed),
            per_mille: loss_per_mille,
        };
        let mut client: Option<SocketAddr> = None;
        let (mut held_up, mut held_down) = (None, None);
        let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
        loop {
            tokio::select! {
                r = front.recv_from(&mut a) => {
                    let Ok((n, from)) = r else { continue };
                    client = Some(from);
                    loss.forward(&a[..n], &mut held_up, &back, server).await;
                }
                r = back.recv_from(&mut b) => {
                    let (Ok((n, _)), Some(c)) = (r, client) else { continue };
                    loss.forward(&b[..n], &mut held_down, &front, c).await;
                }
            }
        }
    });
    (addr, task)
}

/// What a [`lossy_relay`] loses and holds back, both ways.
struct Loss {
    rng: Rng,
    per_mille: u64,
}

impl Loss {
    /// Sends `datagram` from `socket` to `to` unless it is lost or held back (in `held`, one
    /// direction's datagram held back, which follows the next one that passes).
    async fn forward(
        &mut self,
        datagram: &[u8],
        held: &mut Option<Vec<u8>>,
        socket: &UdpSocket,
        to: SocketAddr,
    ) {
        if self.rng.chance(self.per_mille) {
            return;
        }
        if held.is_none() && self.rng.chance(2 * self.per_mille) {
            *held = Some(datagram.to_vec());
            return;
        }
        let _ = socket.send_to(datagram, to).await;
        if let Some(h) = held.take() {
            let _ = socket.send_to(&h, to).await;
        }
    }
}

/// A TCP echo server on a port of its own: its address, and its task (see [`serve_echo`]).
pub async fn tcp_echo_target() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_echo(listener))
}

/// Echoes each connection `listener` accepts back until EOF, then shuts down its write side.
pub fn serve_echo(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    })
}

/// Writes `data` while reading as many bytes back; returns them. Nothing is closed until the
/// echo is in (kcptun ends both directions of a connection when one ends).
pub async fn echo_exact<S: AsyncRead + AsyncWrite>(stream: S, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(stream);
    let mut back = vec![0u8; data.len()];
    let write = async {
        for chunk in data.chunks(32 * 1024) {
            w.write_all(chunk).await.expect("write");
        }
    };
    let read = async { r.read_exact(&mut back).await.expect("read the echo") };
    tokio::join!(write, read);
    back
}

/// Opens `conns` TCP connections to `entry` at once, echoes `size` bytes of a pattern on each
/// (seeded by `seed` and the connection's number), and panics unless each comes back whole.
pub async fn parallel_echoes(entry: SocketAddr, conns: usize, size: usize, seed: u64) {
    let mut rounds = Vec::new();
    for i in 0..conns {
        rounds.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(entry)
                .await
                .expect("connect to the entry");
            let data = pattern(seed + i as u64, size);
            let back = echo_exact(tcp, &data).await;
            assert!(back == data, "connection {i}: the echo differs");
        }));
    }
    for r in rounds {
        r.await.expect("a connection's echo");
    }
}

/// Echoes every smux stream (of version `version`) of every session `listener` accepts, each
/// until its peer finishes it: the listener's address, and the task.
pub fn smux_echo_server(
    mut listener: KcpListener,
    version: Version,
) -> (SocketAddr, JoinHandle<()>) {
    let addr = listener.local_addr().expect("the listener's address");
    let task = tokio::spawn(async move {
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
    });
    (addr, task)
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

/// Connects to `entry`, writes `data` and finishes, and returns the echo, read to the end.
pub async fn round_trip(entry: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let tcp = TcpStream::connect(entry)
        .await
        .expect("connect to the entry");
    echo_round(tcp, data).await
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

/// Starts the built `tunnel` binary with `args` and returns it (killed when dropped) with the
/// address it listens on, from its log; the rest of its log is read and dropped, so that it
/// never blocks on a full pipe.
pub async fn spawn_tunnel(args: &[&str]) -> (tokio::process::Child, SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tunnel"))
        .args(args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cargo test builds the tunnel binary");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the tunnel printed its address");
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}
