//! Interop with Debian's kcptun (20210922, kcp-go 5.6.1), `-crypt none -nocomp -datashard 0
//! -parityshard 0`: kcptun-client against our KCP listener with an smux echo server behind it,
//! and our KCP client with smux against kcptun-server forwarding to a TCP echo server. Each
//! runs 20 connections of 1 MiB at once, each echo read in full before the connection closes
//! (kcptun ends both directions of a connection when one ends), on smux versions 1 and 2.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{pattern, smux_echo_server};
use smux_tokio::{MuxBuilder, Version};
use smux_tunnel::kcp::{KcpListener, KcpSettings, KcpStream, ListenerLimits, PlainCodec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CONNECTIONS: usize = 20;
const SIZE: usize = 1 << 20;
const KCPTUN_FLAGS: [&str; 7] = [
    "-crypt",
    "none",
    "-nocomp",
    "-datashard",
    "0",
    "-parityshard",
    "0",
];

/// A kcptun process, killed when dropped.
struct Kcptun {
    child: Child,
    /// Its log, line by line (kcptun logs to stderr).
    log: mpsc::Receiver<String>,
}

impl Kcptun {
    fn start(program: &str, args: &[String]) -> Kcptun {
        let mut child = Command::new(program)
            .args(KCPTUN_FLAGS)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e} (Debian's package kcptun)"));
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Kcptun { child, log }
    }

    /// Waits until a line of its log contains `marker`; panics if the process exits first.
    fn wait_for(&self, marker: &str) {
        for line in self.log.iter() {
            if line.contains(marker) {
                return;
            }
        }
        panic!("kcptun exited before logging {marker:?}");
    }
}

impl Drop for Kcptun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for `tcp` (else UDP) on 127.0.0.1 at the time of asking: the system's choice
/// for a socket bound to port 0, then released.
fn free_port(tcp: bool) -> u16 {
    if tcp {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// Writes `data` while reading as many bytes back; returns them. Nothing is closed until the
/// echo is in.
async fn echo_exact<S: AsyncRead + AsyncWrite>(stream: S, data: &[u8]) -> Vec<u8> {
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

fn version_number(v: Version) -> &'static str {
    match v {
        Version::V1 => "1",
        _ => "2",
    }
}

fn smux_version(n: u8) -> Version {
    if n == 1 {
        Version::V1
    } else {
        Version::V2
    }
}

async fn kcptun_client_to_our_server(version: Version) {
    let listener = KcpListener::bind(
        "127.0.0.1:0",
        KcpSettings::server(),
        ListenerLimits::default(),
        PlainCodec::new,
    )
    .await
    .unwrap();
    let kcp_port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(smux_echo_server(listener, version));
    let local_port = free_port(true);
    let client = Kcptun::start(
        "kcptun-client",
        &[
            "--key".into(),
            "K".into(),
            "-r".into(),
            format!("127.0.0.1:{kcp_port}"),
            "-l".into(),
            format!("127.0.0.1:{local_port}"),
            "--smuxver".into(),
            version_number(version).into(),
        ],
    );
    client.wait_for("listening on:");
    let mut rounds = Vec::new();
    for i in 0..CONNECTIONS {
        rounds.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(("127.0.0.1", local_port)).await.unwrap();
            let data = pattern(i as u64, SIZE);
            let back = echo_exact(tcp, &data).await;
            assert!(back == data, "connection {i}: the echo differs");
        }));
    }
    for r in rounds {
        r.await.unwrap();
    }
    server.abort();
    drop(client);
}

async fn our_client_to_kcptun_server(version: Version) {
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    let echo = tokio::spawn(async move {
        while let Ok((tcp, _)) = target.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let kcp_port = free_port(false);
    let server = Kcptun::start(
        "kcptun-server",
        &[
            "--key".into(),
            "K".into(),
            "-t".into(),
            target_addr.to_string(),
            "-l".into(),
            format!("127.0.0.1:{kcp_port}"),
            "--smuxver".into(),
            version_number(version).into(),
        ],
    );
    server.wait_for("listening on:");
    let addr: SocketAddr = ([127, 0, 0, 1], kcp_port).into();
    let session = KcpStream::connect(addr, &KcpSettings::client(), PlainCodec::new())
        .await
        .unwrap();
    let (connector, _acceptor, worker) = MuxBuilder::client()
        .with_version(version)
        .with_keep_alive_interval(std::num::NonZeroU64::new(10).unwrap())
        .with_connection(session)
        .build();
    let worker = tokio::spawn(worker);
    let mut rounds = Vec::new();
    for i in 0..CONNECTIONS {
        let stream = connector.connect().unwrap();
        rounds.push(tokio::spawn(async move {
            let data = pattern(100 + i as u64, SIZE);
            let back = echo_exact(stream, &data).await;
            assert!(back == data, "stream {i}: the echo differs");
        }));
    }
    for r in rounds {
        r.await.unwrap();
    }
    connector.close().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
    echo.abort();
    drop(server);
}

#[test]
#[ignore = "needs Debian's kcptun"]
fn kcptun_client_against_our_server() {
    for v in [1, 2] {
        common::on_runtimes(|| kcptun_client_to_our_server(smux_version(v)));
    }
}

#[test]
#[ignore = "needs Debian's kcptun"]
fn our_client_against_kcptun_server() {
    for v in [1, 2] {
        common::on_runtimes(|| our_client_to_kcptun_server(smux_version(v)));
    }
}
