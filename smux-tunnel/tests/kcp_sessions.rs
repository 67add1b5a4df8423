//! KCP sessions end to end in one process: our client and our listener over loopback UDP,
//! with smux-tokio on top, directly and through a lossy, reordering relay; hostile datagrams;
//! the listener's caps; a client that restarts; the idle timeout.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{
    lossy_relay, on_paused_clock, on_runtimes, pattern, plain, smux_echo_client, smux_echo_server,
    Rng,
};
use smux_tokio::Version;
use smux_tunnel::kcp::{KcpListener, KcpSettings, KcpStream, ListenerLimits};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;

async fn listener(limits: ListenerLimits) -> KcpListener {
    KcpListener::bind("127.0.0.1:0", KcpSettings::server(), limits, plain)
        .await
        .expect("bind")
}

async fn connect(addr: SocketAddr) -> KcpStream {
    KcpStream::connect(addr, &KcpSettings::client(), plain())
        .await
        .expect("connect")
}

#[test]
fn smux_echo_over_kcp() {
    on_runtimes(|| async {
        let (addr, server) =
            smux_echo_server(listener(ListenerLimits::default()).await, Version::V1);
        // 4 MiB out and back, on four streams at once.
        smux_echo_client(connect(addr).await, Version::V1, 4, 1 << 20).await;
        server.abort();
    });
}

#[test]
fn smux_echo_through_a_lossy_reordering_relay() {
    on_runtimes(|| async {
        let (server_addr, server) =
            smux_echo_server(listener(ListenerLimits::default()).await, Version::V2);
        let (relay_addr, relay) = lossy_relay(server_addr, 24, 10).await;
        smux_echo_client(connect(relay_addr).await, Version::V2, 3, 1 << 20).await;
        server.abort();
        relay.abort();
    });
}

#[test]
fn raw_stream_one_way_then_shutdown() {
    on_runtimes(|| async {
        let mut l = listener(ListenerLimits::default()).await;
        let mut client = connect(l.local_addr().unwrap()).await;
        let data = pattern(7, 3 << 20);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            // Returns once the server has acknowledged everything.
            client.shutdown().await.unwrap();
            client
        });
        let mut server = l.accept().await.unwrap();
        let mut got = vec![0u8; data.len()];
        server.read_exact(&mut got).await.unwrap();
        assert!(got == data, "the bytes differ");
        let client = writer.await.unwrap();
        assert_eq!(client.conv(), server.conv());
        let stats = l.stats();
        assert_eq!(stats.sessions_opened, 1);
        assert_eq!(stats.dropped_checksum, 0);
    });
}

/// A KCP segment: conv, cmd, frg, wnd, ts, sn, una, then the data.
fn segment(conv: u32, cmd: u8, ts: u32, sn: u32, una: u32, data: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&conv.to_le_bytes());
    s.extend_from_slice(&[cmd, 0]);
    s.extend_from_slice(&1024u16.to_le_bytes());
    for v in [ts, sn, una, data.len() as u32] {
        s.extend_from_slice(&v.to_le_bytes());
    }
    s.extend_from_slice(data);
    s
}

/// kcp-go's `-crypt none` header around a packet.
fn seal(packet: &[u8]) -> Vec<u8> {
    let mut d = vec![0x5a; 16];
    d.extend_from_slice(&crc32fast::hash(packet).to_le_bytes());
    d.extend_from_slice(packet);
    d
}

#[tokio::test]
async fn hostile_datagrams_are_dropped_and_counted() {
    let mut l = listener(ListenerLimits::default()).await;
    let addr = l.local_addr().unwrap();
    let mut client = connect(addr).await;
    client.write_all(b"hello").await.unwrap();
    let mut server = l.accept().await.unwrap();
    let mut hello = [0u8; 5];
    server.read_exact(&mut hello).await.unwrap();

    // From another address: junk, a bad checksum, a short packet, and segments of every
    // command with extreme sequence numbers, timestamps and lengths; then from the client's
    // own conversation id, the same extremes.
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = Rng::new(99);
    let mut datagrams = vec![vec![1, 2, 3], vec![0; 19], seal(&[0; 10])];
    let mut bad = seal(&segment(1, 81, 0, 0, 0, b"x"));
    bad[20] ^= 0xff;
    datagrams.push(bad);
    let extremes = [0, 1, 0x7fff_ffff, 0x8000_0000, 0x8000_0001, u32::MAX];
    for conv in [0x1234_5678, client.conv()] {
        for cmd in [81, 82, 83, 84, 0, 255] {
            for &v in &extremes {
                let w = extremes[(rng.next_u64() % 6) as usize];
                datagrams.push(seal(&segment(conv, cmd, v, w, v, b"junk")));
                datagrams.push(seal(&segment(conv, cmd, w, v, w, &[])));
                // A length past the end of the datagram.
                let mut s = segment(conv, cmd, v, v, v, b"abc");
                s[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
                datagrams.push(seal(&s));
            }
        }
    }
    for d in &datagrams {
        attacker.send_to(d, addr).await.unwrap();
    }
    // The same sent to the client, from a stranger.
    let client_addr: SocketAddr = ([127, 0, 0, 1], client.local_addr().unwrap().port()).into();
    for d in &datagrams {
        attacker.send_to(d, client_addr).await.unwrap();
    }

    // The session still works both ways afterwards.
    let data = pattern(3, 256 * 1024);
    client.write_all(&data).await.unwrap();
    let mut got = vec![0u8; data.len()];
    server.read_exact(&mut got).await.unwrap();
    assert!(got == data);
    server.write_all(&data).await.unwrap();
    client.read_exact(&mut got).await.unwrap();
    assert!(got == data);

    // Each hostile datagram is counted once it has been read. The attacker's datagrams may be
    // read after the echo, so wait for the counts, re-checking as the counters move.
    let counted = |s: &smux_tunnel::kcp::KcpStats| {
        s.dropped_truncated + s.dropped_checksum + s.dropped_kcp + s.sessions_opened
    };
    loop {
        let s = l.stats();
        if s.dropped_truncated >= 2 && s.dropped_checksum >= 1 && counted(&s) >= 4 {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let s = client.stats();
        if s.dropped_stranger >= datagrams.len() as u64 {
            break;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn caps_drop_and_count_new_sessions() {
    let limits = ListenerLimits {
        max_sessions: 2,
        backlog: 8,
    };
    let mut l = listener(limits).await;
    let addr = l.local_addr().unwrap();
    let mut clients = Vec::new();
    for i in 0..4u8 {
        let mut c = connect(addr).await;
        c.write_all(&[i]).await.unwrap();
        clients.push(c);
    }
    // Two sessions open; the other two clients' datagrams (and their retransmissions) are
    // dropped at the cap.
    let a = l.accept().await.unwrap();
    let b = l.accept().await.unwrap();
    assert_ne!(a.peer_addr(), b.peer_addr());
    loop {
        let s = l.stats();
        if s.dropped_session_cap >= 2 {
            assert_eq!(s.sessions_opened, 2);
            break;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_new_conversation_from_the_same_address_replaces_the_session() {
    let mut l = listener(ListenerLimits::default()).await;
    let addr = l.local_addr().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer.send_to(&seal(&segment(7, 81, 0, 0, 0, b"first")), addr)
        .await
        .unwrap();
    let mut first = l.accept().await.unwrap();
    assert_eq!(first.conv(), 7);
    let mut buf = [0u8; 5];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"first");
    // Another conversation, not at its start: dropped.
    peer.send_to(&seal(&segment(8, 81, 0, 5, 0, b"stray")), addr)
        .await
        .unwrap();
    // Another conversation at its start: the client restarted.
    peer.send_to(&seal(&segment(9, 81, 0, 0, 0, b"again")), addr)
        .await
        .unwrap();
    let err = first.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let mut second = l.accept().await.unwrap();
    assert_eq!(second.conv(), 9);
    second.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"again");
    assert!(l.stats().dropped_kcp >= 1);
}

#[test]
fn a_silent_peer_times_out() {
    // The clock is paused: Tokio moves it only when every task waits, so the idle timeout
    // fires as soon as nothing else can happen, and at its exact instant.
    on_paused_clock(async {
        let silent = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let settings = KcpSettings {
            idle_timeout: Some(Duration::from_secs(30)),
            ..KcpSettings::client()
        };
        let start = tokio::time::Instant::now();
        let mut c = KcpStream::connect(silent.local_addr().unwrap(), &settings, plain())
            .await
            .unwrap();
        c.write_all(b"anyone?").await.unwrap();
        let err = c.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        // Not before the timeout.
        assert!(start.elapsed() >= Duration::from_secs(30));
        let err = c.write(b"more").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(c.stats().sessions_timed_out, 1);
    });
}

#[test]
fn writes_wait_when_the_send_window_is_full() {
    // A peer that never answers: nothing is acknowledged, so writes stop at the window (the
    // smaller of ours and the peer's initial 128 packets) and stay stopped. Paused clock: the
    // retransmissions run at once, and no timing decides anything.
    on_paused_clock(async {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let settings = KcpSettings::client();
        let mut c = KcpStream::connect(silent.local_addr().unwrap(), &settings, plain())
            .await
            .unwrap();
        let chunk = vec![7u8; 16 * 1024];
        let mut written = 0usize;
        loop {
            let w = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::pin::Pin::new(&mut c).poll_write(cx, &chunk))
            })
            .await;
            match w {
                std::task::Poll::Ready(n) => written += n.unwrap(),
                std::task::Poll::Pending => break,
            }
        }
        // KCP's segments hold mtu - 20 (codec) - 24 (KCP header) bytes each.
        let mss = settings.mtu - 20 - 24;
        assert!(written <= 128 * mss, "{written} bytes taken");
        assert!(written > 0);
        // Still full after many retransmission timeouts (the paused clock jumps to each).
        let more = tokio::time::timeout(Duration::from_secs(20), c.write(&chunk)).await;
        assert!(
            more.is_err(),
            "a write went through with nothing acknowledged"
        );
    });
}

/// What a peer that keeps to the protocol can make a server's session hold when nobody reads
/// it: KCP's receive window in order (the queue for the reader) and its window out of order,
/// and nothing beyond. Checked on the wire, through what the session acknowledges (a peer
/// may count as held only what was acknowledged), then through what the reader gets.
#[test]
fn an_unread_session_holds_two_receive_windows_at_most() {
    // The smallest receive window KCP takes (a smaller one counts as this).
    const WND: u32 = 128;
    const CMD_ACK: u8 = 82;
    // A marker: a duplicate of segment 0 whose acknowledgement carries this timestamp.
    const MARK_TS: u32 = 0xfeed;
    on_runtimes(|| async {
        let settings = KcpSettings {
            rcvwnd: WND as u16,
            ..KcpSettings::server()
        };
        let mut l = KcpListener::bind("127.0.0.1:0", settings, ListenerLimits::default(), plain)
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let conv = 0x00c0_ffee;
        let payload = |sn: u32| [sn as u8; 100];
        // Four windows, in order, a datagram each; then the marker.
        for sn in 0..4 * WND {
            let s = segment(conv, 81, sn, sn, 0, &payload(sn));
            peer.send_to(&seal(&s), addr).await.unwrap();
        }
        let mark = segment(conv, 81, MARK_TS, 0, 0, &payload(0));
        peer.send_to(&seal(&mark), addr).await.unwrap();

        // The session's acknowledgements, until the marker's: the listener handles one
        // address's datagrams in order, so everything before it has been taken in or refused.
        let mut acked = std::collections::BTreeSet::new();
        let mut buf = [0u8; 2048];
        'marker: loop {
            let n = peer.recv(&mut buf).await.unwrap();
            let mut p = &buf[20..n];
            while p.len() >= 24 {
                let word = |i: usize| u32::from_le_bytes(p[i..i + 4].try_into().unwrap());
                let (ts, sn, len) = (word(8), word(12), word(20) as usize);
                if p[4] == CMD_ACK {
                    if ts == MARK_TS {
                        break 'marker;
                    }
                    acked.insert(sn);
                }
                p = &p[(24 + len).min(p.len())..];
            }
        }
        let expected: std::collections::BTreeSet<u32> = (0..2 * WND).collect();
        assert_eq!(
            acked, expected,
            "acknowledged beyond two windows, or short of them"
        );

        // The reader gets those two windows, in order, and nothing more arrives.
        let mut s = l.accept().await.unwrap();
        for sn in 0..2 * WND {
            let mut got = [0u8; 100];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(got, payload(sn), "segment {sn}");
        }
        let mut more = [0u8; 1];
        let nothing = std::future::poll_fn(|cx| {
            let mut rb = tokio::io::ReadBuf::new(&mut more);
            std::task::Poll::Ready(tokio::io::AsyncRead::poll_read(
                std::pin::Pin::new(&mut s),
                cx,
                &mut rb,
            ))
        })
        .await;
        assert!(nothing.is_pending(), "data beyond the windows was kept");
    });
}
