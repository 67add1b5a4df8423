//! The tunnel over TCP end to end: an echo target behind it, 50 parallel connections,
//! half-close, a target that refuses, the smux connection killed mid-transfer, and the built
//! binary.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use smux_tunnel::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

mod common;
use common::{pattern, round_trip, serve_echo, spawn_tunnel, tcp_echo_target};

const LIMIT: Duration = Duration::from_secs(60);

async fn listen() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// The shutdown future an end of the tunnel is given.
type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// One end of a running tunnel: its task, what stops it, and word that it has stopped
/// accepting.
struct End {
    task: JoinHandle<std::io::Result<()>>,
    stop: Option<oneshot::Sender<()>>,
    /// Completes once the end has seen its shutdown future complete: from then on it accepts
    /// nothing and waits for its open connections.
    taken: Option<oneshot::Receiver<()>>,
}

impl End {
    /// Spawns the end that `run` makes from the shutdown future it is to be given.
    fn spawn<F>(run: impl FnOnce(Shutdown) -> F) -> End
    where
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let (taken_tx, taken) = oneshot::channel::<()>();
        let shutdown = Box::pin(async move {
            let _ = stopped.await;
            let _ = taken_tx.send(());
        });
        End {
            task: tokio::spawn(run(shutdown)),
            stop: Some(stop),
            taken: Some(taken),
        }
    }
}

/// A running tunnel: its client's address, and its two ends.
struct Tunnel {
    entry: SocketAddr,
    ends: [End; 2],
}

impl Tunnel {
    /// Starts a tunnel server forwarding to `target` and a client whose smux connections go
    /// to it, with `opts`.
    async fn start(target: SocketAddr, opts: Options) -> Tunnel {
        let (server_listener, server_addr) = listen().await;
        Tunnel::launch(server_listener, server_addr, target, opts).await
    }

    /// [`Tunnel::start`], with the client's smux connections going through a [`Relay`] that
    /// can cut them.
    async fn start_relayed(target: SocketAddr, opts: Options) -> (Tunnel, Relay) {
        let (server_listener, server_addr) = listen().await;
        let relay = relay(server_addr).await;
        let t = Tunnel::launch(server_listener, relay.addr, target, opts).await;
        (t, relay)
    }

    /// The server on `server_listener`, and a client whose smux connections go to `dial`.
    async fn launch(
        server_listener: TcpListener,
        dial: SocketAddr,
        target: SocketAddr,
        opts: Options,
    ) -> Tunnel {
        let (client_listener, entry) = listen().await;
        let server_opts = opts.clone();
        let server = End::spawn(|shutdown| {
            smux_tunnel::run_server(server_listener, target.to_string(), server_opts, shutdown)
        });
        let client = End::spawn(|shutdown| {
            smux_tunnel::run_client(client_listener, dial.to_string(), opts, shutdown)
        });
        Tunnel {
            entry,
            ends: [client, server],
        }
    }

    /// Tells both ends to stop, and waits until each has taken it (stopped accepting).
    async fn begin_stop(&mut self) {
        for end in &mut self.ends {
            if let Some(stop) = end.stop.take() {
                let _ = stop.send(());
            }
        }
        for end in &mut self.ends {
            if let Some(taken) = end.taken.take() {
                taken.await.expect("the end took the stop");
            }
        }
    }

    /// Whether either end has finished.
    fn any_end_finished(&self) -> bool {
        self.ends.iter().any(|end| end.task.is_finished())
    }

    /// Stops both ends and waits for them to finish, each without an error.
    async fn stop(mut self) {
        self.begin_stop().await;
        for end in self.ends {
            timeout(LIMIT, end.task).await.unwrap().unwrap().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_connections_through_the_tunnel() {
    for version in [smux_tokio::Version::V1, smux_tokio::Version::V2] {
        let (target, _echo) = tcp_echo_target().await;
        let opts = Options {
            version,
            ..Options::default()
        };
        let t = Tunnel::start(target, opts).await;
        timeout(LIMIT, async {
            let conns: Vec<_> = (0..50u64)
                .map(|i| {
                    let data = pattern(i, 1 + (i as usize * 104_729) % (1 << 20));
                    tokio::spawn(async move {
                        let back = round_trip(t.entry, data.clone()).await;
                        assert!(back == data, "connection {i}: echo differs");
                    })
                })
                .collect();
            for c in conns {
                c.await.unwrap();
            }
        })
        .await
        .unwrap();
        t.stop().await;
    }
}

#[tokio::test]
async fn half_close_passes_through() {
    // A target that reads the request to EOF, then answers: it needs the client's FIN to
    // arrive while its own direction stays open.
    let (target, target_addr) = listen().await;
    tokio::spawn(async move {
        let (mut tcp, _) = target.accept().await.unwrap();
        let mut req = Vec::new();
        tcp.read_to_end(&mut req).await.unwrap();
        tcp.write_all(format!("got {} bytes", req.len()).as_bytes())
            .await
            .unwrap();
        tcp.shutdown().await.unwrap();
    });
    let t = Tunnel::start(target_addr, Options::default()).await;
    let back = timeout(LIMIT, round_trip(t.entry, vec![7u8; 100_000]))
        .await
        .unwrap();
    assert_eq!(back, b"got 100000 bytes");
    t.stop().await;
}

#[tokio::test]
async fn a_refusing_target_closes_that_connection_and_the_tunnel_goes_on() {
    // A port with nothing listening (bound, then released).
    let (l, target_addr) = listen().await;
    drop(l);
    let t = Tunnel::start(target_addr, Options::default()).await;
    timeout(LIMIT, async {
        // The connection is closed from the tunnel's side.
        let mut tcp = TcpStream::connect(t.entry).await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(tcp.read(&mut buf).await.unwrap(), 0);
        // Once the target is there, the same tunnel serves the next connection.
        let _echo = serve_echo(TcpListener::bind(target_addr).await.unwrap());
        let back = round_trip(t.entry, b"after the refusal".to_vec()).await;
        assert_eq!(back, b"after the refusal");
    })
    .await
    .unwrap();
    t.stop().await;
}

/// A TCP relay between the tunnel client and server whose connections can be cut: sending
/// `n` on `cut` cuts the `n`th connection it accepted (from 1).
struct Relay {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    /// How many connections it has accepted.
    fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn relay(to: SocketAddr) -> Relay {
    let (l, addr) = listen().await;
    let (cut, rx) = tokio::sync::watch::channel(0u64);
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((mut a, _)) = l.accept().await else {
                return;
            };
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let mut rx = rx.clone();
            rx.mark_unchanged();
            tokio::spawn(async move {
                let Ok(mut b) = TcpStream::connect(to).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                    _ = rx.wait_for(|&c| c == n) => {}
                }
            });
        }
    });
    Relay {
        addr,
        cut,
        accepted,
    }
}

/// Writes `msg` on `tcp` and reads its echo: whether it came back whole.
async fn echoes(tcp: &mut TcpStream, msg: &[u8]) -> bool {
    let mut back = vec![0u8; msg.len()];
    tcp.write_all(msg).await.is_ok() && tcp.read_exact(&mut back).await.is_ok() && back == msg
}

/// `--conns 4`: connections go to four smux connections in turn; when one of them dies, only
/// its streams end, and it alone reconnects.
#[test]
fn four_smux_connections_share_the_streams_and_reconnect_on_their_own() {
    common::on_runtimes(|| async {
        let (target, _echo) = tcp_echo_target().await;
        let opts = Options {
            conns: 4,
            ..Options::default()
        };
        let (t, r) = Tunnel::start_relayed(target, opts).await;
        timeout(LIMIT, async {
            // Eight connections, one after another: user i rides smux connection i % 4, and
            // the relay accepted those in the order of their first use.
            let mut users = Vec::new();
            for i in 0..8u8 {
                let mut tcp = TcpStream::connect(t.entry).await.unwrap();
                assert!(echoes(&mut tcp, &[i; 100]).await, "user {i}");
                users.push(tcp);
            }
            assert_eq!(r.accepted(), 4, "four smux connections");
            // Cut the second: users 1 and 5 lose their streams, the others go on.
            r.cut.send(2).unwrap();
            for (i, tcp) in users.iter_mut().enumerate() {
                if i % 4 == 1 {
                    let mut rest = Vec::new();
                    let _ = tcp.read_to_end(&mut rest).await;
                    assert!(rest.is_empty(), "user {i}");
                } else {
                    assert!(echoes(tcp, b"still here").await, "user {i}");
                }
            }
            // Four more users: the one on the dead connection's turn gets a new one.
            for i in 8..12u8 {
                let mut tcp = TcpStream::connect(t.entry).await.unwrap();
                assert!(echoes(&mut tcp, &[i; 100]).await, "user {i}");
            }
            assert_eq!(r.accepted(), 5, "only the cut connection was made anew");
        })
        .await
        .unwrap();
        t.stop().await;
    });
}

#[tokio::test]
async fn killing_the_smux_connection_closes_its_streams_and_the_tunnel_reconnects() {
    let (target, _echo) = tcp_echo_target().await;
    // The tunnel client reaches the server through a relay we can cut.
    let (t, r) = Tunnel::start_relayed(target, Options::default()).await;
    timeout(LIMIT, async {
        // A transfer in progress: written, echoed, not finished.
        let mut tcp = TcpStream::connect(t.entry).await.unwrap();
        tcp.write_all(b"in flight").await.unwrap();
        let mut buf = [0u8; 9];
        tcp.read_exact(&mut buf).await.unwrap();
        assert_eq!(r.accepted(), 1);
        r.cut.send(1).unwrap();
        // The affected connection closes (end of stream or an error), not hangs. It closes
        // because the client's smux connection ended under it (the server's side cannot reach
        // it any more), so from here on that connection is known dead.
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        // The next connection makes a new smux connection, and goes through.
        let back = round_trip(t.entry, b"again".to_vec()).await;
        assert_eq!(back, b"again", "the first connection after the cut");
        assert_eq!(r.accepted(), 2, "the client reconnected once");
    })
    .await
    .unwrap();
    t.stop().await;
}

#[tokio::test]
async fn the_binary_forwards() {
    let (target, _echo) = tcp_echo_target().await;
    timeout(LIMIT, async {
        let target = target.to_string();
        let (mut server, server_addr) = spawn_tunnel(&[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &target,
            "--version",
            "2",
        ])
        .await;
        let server_addr = server_addr.to_string();
        let (mut client, entry) = spawn_tunnel(&[
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &server_addr,
            "--version",
            "2",
            "--keep-alive",
            "5",
        ])
        .await;
        let data = pattern(42, 300_000);
        assert!(round_trip(entry, data.clone()).await == data);
        client.kill().await.unwrap();
        server.kill().await.unwrap();
    })
    .await
    .unwrap();
}

/// Stopping while a connection is open: both ends stop accepting, the connection goes on, and
/// they finish once it has. On the current-thread runtime an end that took the stop and did
/// not wait would have finished before this test runs again (it would end in the poll that saw
/// its shutdown future complete), so the check after `begin_stop` needs no waiting.
#[tokio::test]
async fn stopping_lets_open_connections_finish() {
    let (target, _echo) = tcp_echo_target().await;
    let mut t = Tunnel::start(target, Options::default()).await;
    timeout(LIMIT, async {
        let tcp = TcpStream::connect(t.entry).await.unwrap();
        let (mut r, mut w) = tcp.into_split();
        w.write_all(b"before the stop").await.unwrap();
        let mut buf = [0u8; 15];
        r.read_exact(&mut buf).await.unwrap();
        // Stop both ends while this connection is open: they stop accepting, and wait.
        t.begin_stop().await;
        assert!(
            !t.any_end_finished(),
            "stopped with a connection still open"
        );
        w.write_all(b" and after").await.unwrap();
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b" and after");
    })
    .await
    .unwrap();
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_version_server_takes_either_version_of_client() {
    let (target, _echo) = tcp_echo_target().await;
    let (server_listener, server_addr) = listen().await;
    let server_opts = Options {
        auto_version: true,
        ..Options::default()
    };
    let server = tokio::spawn(smux_tunnel::run_server(
        server_listener,
        target.to_string(),
        server_opts,
        std::future::pending(),
    ));
    for version in [smux_tokio::Version::V1, smux_tokio::Version::V2] {
        let (client_listener, entry) = listen().await;
        let client_opts = Options {
            version,
            ..Options::default()
        };
        let client = tokio::spawn(smux_tunnel::run_client(
            client_listener,
            server_addr.to_string(),
            client_opts,
            std::future::pending(),
        ));
        let data = pattern(7, 600_000);
        let back = timeout(LIMIT, round_trip(entry, data.clone()))
            .await
            .unwrap();
        assert!(back == data, "{version:?}");
        client.abort();
    }
    server.abort();
}

#[tokio::test]
async fn stopping_closes_what_is_still_open_after_the_drain_timeout() {
    let (target, _echo) = tcp_echo_target().await;
    let opts = Options {
        drain_timeout: Duration::from_millis(200),
        ..Options::default()
    };
    let t = Tunnel::start(target, opts).await;
    timeout(LIMIT, async {
        let tcp = TcpStream::connect(t.entry).await.unwrap();
        let (mut r, mut w) = tcp.into_split();
        w.write_all(b"open").await.unwrap();
        let mut buf = [0u8; 4];
        r.read_exact(&mut buf).await.unwrap();
        // The connection never finishes: the stop drains, gives up at the timeout, closes.
        t.stop().await;
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
        drop(w);
    })
    .await
    .unwrap();
}
