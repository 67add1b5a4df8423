//! smux-futures under smol: echo on 100 streams, half-close both ways, a keep-alive timeout
//! against a silent peer, `close()`, and streams opened by the server.

use std::io;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smux_futures::{MuxBuilder, MuxError, MuxStream, Version};
use smux_test_support::content::pattern;
use smux_test_support::smol::tcp_pair;

mod production;

/// Runs `f` on smol, failing after `secs` seconds instead of hanging.
fn run<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    smol::block_on(async {
        let limit = async {
            smol::Timer::after(Duration::from_secs(secs)).await;
            panic!("timed out after {secs} s");
        };
        smol::future::or(f, limit).await
    })
}

/// Runs one of the `production` scenarios on smol over loopback TCP, failing after 30 s
/// instead of hanging.
fn scenario<F, Fut>(body: F)
where
    F: FnOnce(TcpStream, TcpStream, fn(production::Task)) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    fn spawn(t: production::Task) {
        smol::spawn(t).detach();
    }
    run(30, async {
        let (a, b) = tcp_pair().await;
        body(a, b, spawn).await;
    });
}

/// Echoes until end of stream, then finishes.
async fn echo(mut s: MuxStream<TcpStream>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await.unwrap();
    }
    s.close().await.unwrap();
}

/// Writes `data`, finishes, and reads the echo to the end, concurrently.
async fn ping(s: MuxStream<TcpStream>, data: Vec<u8>) {
    let (mut r, mut w) = smol::io::split(s);
    let writer = async {
        w.write_all(&data).await.unwrap();
        w.close().await.unwrap();
    };
    let reader = async {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        back
    };
    let ((), back) = smol::future::zip(writer, reader).await;
    assert!(back == data, "echo differs");
}

#[test]
fn echo_on_100_streams_both_versions() {
    for version in [Version::V1, Version::V2] {
        run(60, async {
            let (a, b) = tcp_pair().await;
            let (cc, _ca, cw) = MuxBuilder::client()
                .with_version(version)
                .with_connection(a)
                .build();
            let (_sc, mut sa, sw) = MuxBuilder::server()
                .with_version(version)
                .with_connection(b)
                .build();
            let cw = smol::spawn(cw);
            smol::spawn(sw).detach();
            let server = smol::spawn(async move {
                let mut echoers = Vec::new();
                for _ in 0..100 {
                    echoers.push(smol::spawn(echo(sa.accept().await.unwrap())));
                }
                for e in echoers {
                    e.await;
                }
            });
            let clients: Vec<_> = (0..100u64)
                .map(|i| {
                    let len = 1 + (i as usize * 7919) % (256 * 1024);
                    smol::spawn(ping(cc.connect().unwrap(), pattern(i, len)))
                })
                .collect();
            for c in clients {
                c.await;
            }
            server.await;
            cc.close().await.unwrap();
            assert!(cw.await.is_ok());
        });
    }
}

#[test]
fn half_close_both_ways() {
    run(30, async {
        let (a, b) = tcp_pair().await;
        let (cc, _ca, cw) = MuxBuilder::client().with_connection(a).build();
        let (_sc, mut sa, sw) = MuxBuilder::server().with_connection(b).build();
        smol::spawn(cw).detach();
        smol::spawn(sw).detach();
        // The client finishes first and still reads the answer.
        let mut c = cc.connect().unwrap();
        c.write_all(b"question").await.unwrap();
        c.close().await.unwrap();
        let mut s = sa.accept().await.unwrap();
        let mut q = Vec::new();
        s.read_to_end(&mut q).await.unwrap();
        assert_eq!(q, b"question");
        s.write_all(b"answer").await.unwrap();
        s.close().await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
        let e = c.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        // The server finishes first; the client keeps writing.
        let mut c = cc.connect().unwrap();
        c.write_all(b"1").await.unwrap();
        let mut s = sa.accept().await.unwrap();
        s.write_all(b"bye").await.unwrap();
        s.close().await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
        c.write_all(b"2").await.unwrap();
        c.close().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"12");
    });
}

#[test]
fn keep_alive_timeout_against_a_silent_peer() {
    run(30, async {
        let (a, _silent) = tcp_pair().await;
        let (cc, mut ca, cw) = MuxBuilder::client()
            .with_keep_alive_interval(NonZeroU64::new(1).unwrap())
            .with_keep_alive_timeout(NonZeroU64::new(2).unwrap())
            .with_connection(a)
            .build();
        let start = Instant::now();
        let mut s = cc.connect().unwrap();
        let reader = smol::spawn(async move { s.read(&mut [0u8; 8]).await });
        let r = cw.await;
        assert!(matches!(r, Err(MuxError::KeepAliveTimeout)), "{r:?}");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
        assert_eq!(reader.await.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(ca.accept().await.is_none());
    });
}

#[test]
fn close_drains_then_ends_everything() {
    run(30, async {
        let (a, b) = tcp_pair().await;
        let (cc, mut ca, cw) = MuxBuilder::client().with_connection(a).build();
        let (_sc, mut sa, sw) = MuxBuilder::server().with_connection(b).build();
        let sw = smol::spawn(sw);
        let mut s = cc.connect().unwrap();
        let data = pattern(7, 300 * 1024);
        s.write_all(&data).await.unwrap();
        // The client worker is never polled: close() drains on its own.
        let reader = smol::spawn(async move {
            let mut p = sa.accept().await.unwrap();
            let mut got = Vec::new();
            p.read_to_end(&mut got).await.unwrap();
            got
        });
        cc.close().await.unwrap();
        assert!(reader.await == data);
        assert!(matches!(cc.connect(), Err(MuxError::ConnectionClosed)));
        assert!(ca.accept().await.is_none());
        assert!(sw.await.is_ok());
        drop(cw);
    });
}

#[test]
fn streams_opened_by_the_server() {
    run(30, async {
        let (a, b) = tcp_pair().await;
        let (_cc, mut ca, cw) = MuxBuilder::client().with_connection(a).build();
        let (sc, _sa, sw) = MuxBuilder::server().with_connection(b).build();
        smol::spawn(cw).detach();
        smol::spawn(sw).detach();
        let echoer = smol::spawn(async move {
            for _ in 0..10 {
                let s = ca.accept().await.unwrap();
                assert_eq!(s.get_stream_id() % 2, 0);
                smol::spawn(echo(s)).detach();
            }
        });
        for i in 0..10 {
            ping(sc.connect().unwrap(), pattern(100 + i, 10_000)).await;
        }
        echoer.await;
    });
}

#[test]
fn open_closed_and_io_errors_on_smol() {
    scenario(production::open_closed_and_io_errors);
}

#[test]
fn drain_on_smol() {
    scenario(production::drain_lets_the_open_stream_finish);
}

#[test]
fn halves_on_smol() {
    scenario(production::halves);
}

#[test]
fn chunks_on_smol() {
    scenario(production::chunks);
}

#[test]
fn auto_version_on_smol() {
    scenario(production::auto_version);
}

#[test]
fn open_first_come_first_served_on_smol() {
    scenario(production::open_first_come_first_served);
}

#[test]
fn closed_reports_the_workers_error_on_smol() {
    scenario(production::closed_reports_the_workers_error);
}

#[test]
fn closed_reports_the_keep_alive_timeout_on_smol() {
    scenario(production::closed_reports_the_keep_alive_timeout);
}

#[test]
fn write_half_dropped_first_on_smol() {
    scenario(production::write_half_dropped_first);
}

#[test]
fn a_stalled_reader_is_reset_on_smol() {
    scenario(production::a_stalled_reader_is_reset);
}
