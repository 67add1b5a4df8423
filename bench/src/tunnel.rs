//! `wan-tunnel`: the tunnel (smux-tunnel's library, over TCP) over a shared emulated link
//! whose connections freeze now and then, with its streams on one smux connection and on
//! four (`--conns 4`).
//!
//! Behind the tunnel, 4 users send bulk data and 4 send 64-byte requests (one every 20 ms at
//! most) that the target echoes, for `wan_secs` seconds. Each smux connection crosses the
//! link through [`wan_forward`]: all of them share its rate and router buffer, and each
//! freezes on its own (every second on average, for 200 ms: a lost packet's recovery).
//! Figures per connection count N: the requests' round trips (p50, p99) after the first
//! second, and the bulk rate the target received.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smux_test_support::link::{wan_forward, Freeze};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::impls::{sleep, spawn};
use crate::workloads::{Fields, Params};

const MESSAGE: usize = 64;
const USERS: usize = 4;

/// Runs the workload with protocol `version`, for 1 and for 4 smux connections.
pub async fn run(version: smux_tokio::Version, p: &Params) -> io::Result<Fields> {
    let mut fields = Vec::new();
    for (conns, names) in [
        (1, ["n1_p50_ms", "n1_p99_ms", "n1_bulk_mbit"]),
        (4, ["n4_p50_ms", "n4_p99_ms", "n4_bulk_mbit"]),
    ] {
        let (p50, p99, bulk) = once(version, conns, p).await?;
        fields.extend(names.into_iter().zip([p50, p99, bulk]));
    }
    Ok(fields)
}

/// One run with `conns` smux connections: (p50 ms, p99 ms, bulk Mbit/s).
async fn once(
    version: smux_tokio::Version,
    conns: usize,
    p: &Params,
) -> io::Result<(f64, f64, f64)> {
    let received = Arc::new(AtomicU64::new(0));
    let target = TcpListener::bind("127.0.0.1:0").await?;
    let target_addr = target.local_addr()?;
    spawn(serve_target(target, Arc::clone(&received))).detach();

    let mut link = p.link();
    link.freeze = Some(Freeze {
        mean_interval: Duration::from_secs(1),
        duration: Duration::from_millis(200),
    });
    let opts = smux_tunnel::Options {
        version,
        conns,
        notsent_lowat: (p.lowat_kib > 0).then(|| (p.lowat_kib * 1024) as u32),
        ..smux_tunnel::Options::default()
    };
    let server_listener = TcpListener::bind("127.0.0.1:0").await?;
    let forward = wan_forward(link, server_listener.local_addr()?)?;
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    spawn(smux_tunnel::run_server(
        server_listener,
        target_addr.to_string(),
        opts.clone(),
        async move {
            let _ = server_stopped.await;
        },
    ))
    .detach();
    let client_listener = TcpListener::bind("127.0.0.1:0").await?;
    let entry = client_listener.local_addr()?;
    let (stop_client, client_stopped) = oneshot::channel::<()>();
    spawn(smux_tunnel::run_client(
        client_listener,
        forward.addr.to_string(),
        opts,
        async move {
            let _ = client_stopped.await;
        },
    ))
    .detach();

    let start = Instant::now();
    let warm = Duration::from_secs(1);
    let end = Duration::from_secs(p.wan_secs);
    // The bulk users first, then the interactive ones: the tunnel client takes its smux
    // connections in turn, so with N = 4 each carries one of each.
    let mut bulk = Vec::new();
    for _ in 0..USERS {
        let mut b = TcpStream::connect(entry).await?;
        b.set_nodelay(true)?;
        b.write_all(b"B").await?;
        bulk.push(spawn(async move {
            let buf = vec![0x5au8; 64 * 1024];
            while start.elapsed() < end {
                b.write_all(&buf).await?;
            }
            Ok::<_, io::Error>(())
        }));
    }
    let mut interactive = Vec::new();
    for _ in 0..USERS {
        let mut i = TcpStream::connect(entry).await?;
        i.set_nodelay(true)?;
        i.write_all(b"I").await?;
        interactive.push(spawn(async move {
            let mut lat = Vec::new();
            let (msg, mut back) = ([7u8; MESSAGE], [0u8; MESSAGE]);
            while start.elapsed() < end {
                let t = Instant::now();
                i.write_all(&msg).await?;
                i.read_exact(&mut back).await?;
                if start.elapsed() >= warm {
                    lat.push(t.elapsed());
                }
                sleep(Duration::from_millis(20).saturating_sub(t.elapsed())).await;
            }
            Ok::<_, io::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for i in interactive {
        lat.extend(i.await??);
    }
    let bulk_bps = received.load(Ordering::Relaxed) as f64 * 8.0 / start.elapsed().as_secs_f64();
    for b in bulk {
        // A bulk writer may be cut off by the stop below; its figure is already taken.
        let _ = b.await;
    }
    let _ = (stop_client.send(()), stop_server.send(()));
    if lat.is_empty() {
        return Err(io::Error::other("no request after warm-up"));
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    Ok((at(0.50), at(0.99), bulk_bps / 1e6))
}

/// The target: a connection's first byte says what it is. 'B': read and count to the end;
/// 'I': echo 64-byte messages until the end.
async fn serve_target(listener: TcpListener, received: Arc<AtomicU64>) {
    while let Ok((mut s, _)) = listener.accept().await {
        let received = Arc::clone(&received);
        spawn(async move {
            let mut kind = [0u8; 1];
            s.read_exact(&mut kind).await?;
            if kind[0] == b'B' {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await? {
                        0 => break,
                        k => received.fetch_add(k as u64, Ordering::Relaxed),
                    };
                }
            } else {
                let mut m = [0u8; MESSAGE];
                while s.read_exact(&mut m).await.is_ok() {
                    s.write_all(&m).await?;
                }
            }
            Ok::<_, io::Error>(())
        })
        .detach();
    }
}
