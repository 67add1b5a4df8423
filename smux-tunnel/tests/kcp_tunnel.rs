//! The tunnel over KCP, both ends ours, in one process: many connections at once with
//! kcptun's defaults, kcptun's end-both-directions behaviour, hostile datagrams at the server,
//! a connection idle for 90 s on a paused clock, and the built binary.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    echo_exact, on_paused_clock, on_runtimes, parallel_echoes, pattern, spawn_tunnel,
    tcp_echo_target, Rng,
};
use smux_tunnel::kcp::codec::CRYPT_HEADER;
use smux_tunnel::kcp::{Codec, CodecConfig, Crypt, KcpGoCodec, KcpStatsHandle};
use smux_tunnel::{Kcp, Options, ServerListener, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// A tunnel over KCP in this process: the client's entry, the server's address and counts,
/// the two ends' transports (their codec counters), and the tasks, aborted when dropped.
struct KcpTunnel {
    entry: SocketAddr,
    server: SocketAddr,
    stats: KcpStatsHandle,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for KcpTunnel {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn kcp_options(kcp: Kcp) -> Options {
    Options {
        transport: Transport::Kcp(Box::new(kcp)),
        ..Options::default()
    }
}

/// Starts both ends, with kcptun's defaults for each role unless `server`/`client` say.
async fn start(target: SocketAddr, server: Options, client: Options) -> KcpTunnel {
    let listener = ServerListener::bind("127.0.0.1:0", &server.transport)
        .await
        .unwrap();
    let server_addr = listener.local_addr().unwrap();
    let stats = listener.kcp_stats().expect("a KCP listener");
    let s = tokio::spawn(async move {
        let _ =
            smux_tunnel::run_server(listener, target.to_string(), server, std::future::pending())
                .await;
    });
    let entry_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let entry = entry_listener.local_addr().unwrap();
    let c = tokio::spawn(async move {
        let _ = smux_tunnel::run_client(
            entry_listener,
            server_addr.to_string(),
            client,
            std::future::pending(),
        )
        .await;
    });
    KcpTunnel {
        entry,
        server: server_addr,
        stats,
        tasks: vec![s, c],
    }
}

fn defaults() -> (Options, Options) {
    (
        kcp_options(Kcp::kcptun_server()),
        kcp_options(Kcp::kcptun_client()),
    )
}

#[test]
fn fifty_parallel_connections_with_kcptuns_defaults() {
    on_runtimes(|| async {
        let (target, _echo) = tcp_echo_target().await;
        let (server, mut client) = defaults();
        // Two KCP sessions, taken in turn.
        client.conns = 2;
        for version in [smux_tokio::Version::V1, smux_tokio::Version::V2] {
            let (mut s, mut c) = (server.clone(), client.clone());
            s.version = version;
            c.version = version;
            let t = start(target, s, c).await;
            parallel_echoes(t.entry, 50, 256 * 1024, 11).await;
            assert_eq!(t.stats.snapshot().sessions_opened, 2);
        }
    });
}

#[test]
fn with_everything_off() {
    on_runtimes(|| async {
        let (target, _echo) = tcp_echo_target().await;
        let plain = |kcp: Kcp| {
            let mut k = Kcp::new(kcp.settings.clone(), CodecConfig::plain(), false).unwrap();
            k.limits = kcp.limits.clone();
            kcp_options(k)
        };
        let t = start(
            target,
            plain(Kcp::kcptun_server()),
            plain(Kcp::kcptun_client()),
        )
        .await;
        parallel_echoes(t.entry, 4, 1 << 20, 12).await;
    });
}

/// Over KCP a connection has no half-close, as in kcptun: the client's shutdown of its write
/// side ends the connection both ways, so a target that answers only after reading to EOF
/// never gets its answer through.
#[test]
fn one_direction_ending_ends_both() {
    on_runtimes(|| async {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let answered = tokio::spawn(async move {
            let (mut tcp, _) = target.accept().await.unwrap();
            let mut req = Vec::new();
            let _ = tcp.read_to_end(&mut req).await;
            // The tunnel has closed this connection: the answer goes nowhere.
            let _ = tcp.write_all(b"too late").await;
            req
        });
        let (server, client) = defaults();
        let t = start(target_addr, server, client).await;
        let tcp = TcpStream::connect(t.entry).await.unwrap();
        let (mut r, mut w) = tcp.into_split();
        w.write_all(b"request").await.unwrap();
        w.shutdown().await.unwrap();
        let mut back = Vec::new();
        let _ = r.read_to_end(&mut back).await;
        assert!(back.is_empty(), "{back:?}");
        // What was written before the end arrived whole.
        assert_eq!(answered.await.unwrap(), b"request");

        // The target ending first ends the client's connection too, its request unanswered.
        let target = TcpListener::bind(target_addr).await.unwrap();
        let closer = tokio::spawn(async move {
            let (mut tcp, _) = target.accept().await.unwrap();
            tcp.write_all(b"bye").await.unwrap();
            tcp.shutdown().await.unwrap();
            // Keep reading, as a target that would still take a request.
            let mut rest = Vec::new();
            let _ = tcp.read_to_end(&mut rest).await;
        });
        let mut tcp = TcpStream::connect(t.entry).await.unwrap();
        let mut back = Vec::new();
        tcp.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"bye");
        closer.await.unwrap();
    });
}

/// Datagrams with a bad CRC, sealed with another key, truncated, oversized or random are
/// dropped and counted at the server: no session opens, and the tunnel goes on.
#[test]
fn bad_datagrams_are_dropped_and_counted() {
    on_runtimes(|| async {
        let (target, _echo) = tcp_echo_target().await;
        let (server, client) = defaults();
        let t = start(target, server, client).await;
        parallel_echoes(t.entry, 1, 10_000, 1).await;
        let before = t.stats.snapshot();
        assert_eq!(before.sessions_opened, 1);

        let config = CodecConfig::kcptun_default();
        let segment = {
            // A KCP push segment of a new conversation: conv, cmd, frg, wnd, ts, sn, una,
            // len, data.
            let mut s = 0x1234_5678u32.to_le_bytes().to_vec();
            s.extend_from_slice(&[81, 0, 0, 4]);
            for v in [0u32, 0, 0, 4] {
                s.extend_from_slice(&v.to_le_bytes());
            }
            s.extend_from_slice(b"evil");
            s
        };
        let seal = |config: &CodecConfig, packet: &[u8]| {
            let mut codec = KcpGoCodec::new(config).unwrap();
            let mut out = Vec::new();
            codec.seal(packet, &mut |d| out.push(d.to_vec()));
            out.remove(0)
        };
        let sealed = |config: &CodecConfig| seal(config, &segment);
        let mut datagrams = Vec::new();
        // A bad CRC: one bit of the sealed datagram flipped, after the nonce.
        for at in [16, 20, 30] {
            let mut d = sealed(&config);
            d[at] ^= 0x10;
            datagrams.push(d);
        }
        // Another key, another crypt.
        datagrams.push(sealed(&CodecConfig::new(Crypt::Aes, "wrong key", 10, 3)));
        datagrams.push(sealed(&CodecConfig::new(
            Crypt::Salsa20,
            "it's a secrect",
            10,
            3,
        )));
        // Truncated: shorter than the crypto header, and a header with too little after it.
        let whole = sealed(&config);
        datagrams.push(whole[..CRYPT_HEADER - 1].to_vec());
        datagrams.push(Vec::new());
        let no_fec = CodecConfig {
            data_shards: 0,
            parity_shards: 0,
            ..config.clone()
        };
        datagrams.push(seal(&no_fec, &segment[..10]));
        // Oversized.
        datagrams.push(vec![0x42; 1600]);
        // Random, of random lengths.
        let mut rng = Rng::new(5);
        for _ in 0..200 {
            let len = (rng.next_u64() % 1500) as usize;
            datagrams.push(pattern(rng.next_u64(), len));
        }
        let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for d in &datagrams {
            attacker.send_to(d, t.server).await.unwrap();
        }
        let n = datagrams.len() as u64;
        // Wait until the server has read and counted them all (re-checking as it goes).
        let dropped = |s: &smux_tunnel::kcp::KcpStats| {
            s.dropped_checksum + s.dropped_truncated + s.dropped_oversized + s.dropped_fec
        };
        loop {
            let s = t.stats.snapshot();
            if dropped(&s) - dropped(&before) >= n {
                break;
            }
            tokio::task::yield_now().await;
        }
        let after = t.stats.snapshot();
        assert_eq!(dropped(&after) - dropped(&before), n, "{after:?}");
        assert!(after.dropped_checksum - before.dropped_checksum >= 5);
        assert!(after.dropped_truncated - before.dropped_truncated >= 3);
        assert_eq!(after.dropped_oversized, 1);
        assert_eq!(after.sessions_opened, 1, "a session opened: {after:?}");
        // Nothing answered the attacker.
        let mut buf = [0u8; 2048];
        assert!(attacker.try_recv_from(&mut buf).is_err());
        // The tunnel goes on.
        parallel_echoes(t.entry, 2, 100_000, 2).await;
    });
}

/// An open connection idle for 90 s, past smux's keep-alive timeout (30 s) and our KCP
/// sessions' idle timeout (60 s), both of which the keep-alives (every 10 s) hold off: it
/// still echoes afterwards. The clock is paused, and moves only when nothing else can happen
/// (Tokio's paused clock needs the current-thread runtime).
#[test]
fn idle_for_90_s_on_a_paused_clock() {
    on_paused_clock(async {
        let (target, _echo) = tcp_echo_target().await;
        let (server, client) = defaults();
        let t = start(target, server, client).await;
        let mut tcp = TcpStream::connect(t.entry).await.unwrap();
        let first = pattern(1, 50_000);
        assert!(echo_exact(&mut tcp, &first).await == first);
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert!(start.elapsed() >= Duration::from_secs(90));
        let again = pattern(2, 50_000);
        assert!(echo_exact(&mut tcp, &again).await == again);
        parallel_echoes(t.entry, 2, 50_000, 3).await;
        let s = t.stats.snapshot();
        assert_eq!((s.sessions_opened, s.sessions_timed_out), (1, 0), "{s:?}");
    });
}

#[tokio::test]
async fn the_binary_over_kcp() {
    let (target, _echo) = tcp_echo_target().await;
    let target = target.to_string();
    let flags = [
        "--transport",
        "kcp",
        "--key",
        "K",
        "--crypt",
        "salsa20",
        "--mode",
        "fast2",
    ];
    let mut server_args = vec!["server", "-l", "127.0.0.1:0", "-t", &target];
    server_args.extend(flags);
    let (_server, server_addr) = spawn_tunnel(&server_args).await;
    let server_addr = server_addr.to_string();
    let mut client_args = vec!["client", "-l", "127.0.0.1:0", "-r", &server_addr];
    client_args.extend(flags);
    let (_client, entry) = spawn_tunnel(&client_args).await;
    parallel_echoes(entry, 3, 300_000, 42).await;
}
