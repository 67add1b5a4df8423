//! smux-futures on async-std: echo on 20 streams in both versions.

use std::time::Duration;

use async_std::io::{ReadExt, WriteExt};
use async_std::net::{TcpListener, TcpStream};
use smux_futures::{MuxBuilder, Version};

mod production;

/// `poll_close`: FIN, keeping the read side open (async-std's `WriteExt` has no `close`).
async fn finish<S: futures_io::AsyncWrite + Unpin>(s: &mut S) -> std::io::Result<()> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_close(cx)).await
}

#[test]
fn echo_on_20_streams_on_async_std() {
    async_std::task::block_on(async_std::future::timeout(Duration::from_secs(60), async {
        for version in [Version::V1, Version::V2] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = async_std::task::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let (_sc, mut sa, sw) = MuxBuilder::server()
                    .with_version(version)
                    .with_connection(tcp)
                    .build();
                let worker = async_std::task::spawn(sw);
                while let Some(mut s) = sa.accept().await {
                    async_std::task::spawn(async move {
                        let mut buf = vec![0u8; 8192];
                        loop {
                            let n = s.read(&mut buf).await.unwrap();
                            if n == 0 {
                                break;
                            }
                            s.write_all(&buf[..n]).await.unwrap();
                        }
                        finish(&mut s).await.unwrap();
                    });
                }
                worker.await.unwrap();
            });
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (cc, _ca, cw) = MuxBuilder::client()
                .with_version(version)
                .with_connection(tcp)
                .build();
            let cw = async_std::task::spawn(cw);
            let mut tasks = Vec::new();
            for i in 0..20u8 {
                let mut s = cc.connect().unwrap();
                tasks.push(async_std::task::spawn(async move {
                    let data = vec![i; 10_000 + i as usize];
                    s.write_all(&data).await.unwrap();
                    finish(&mut s).await.unwrap();
                    let mut back = Vec::new();
                    s.read_to_end(&mut back).await.unwrap();
                    assert!(back == data, "stream {i}: echo differs");
                }));
            }
            for t in tasks {
                t.await;
            }
            cc.close().await.unwrap();
            cw.await.unwrap();
            server.await;
        }
    }))
    .expect("timed out");
}

#[test]
fn open_closed_and_io_errors_on_async_std() {
    scenario(production::open_closed_and_io_errors);
}

#[test]
fn drain_on_async_std() {
    scenario(production::drain_lets_the_open_stream_finish);
}

#[test]
fn halves_on_async_std() {
    scenario(production::halves);
}

#[test]
fn chunks_on_async_std() {
    scenario(production::chunks);
}

#[test]
fn auto_version_on_async_std() {
    scenario(production::auto_version);
}

#[test]
fn open_first_come_first_served_on_async_std() {
    scenario(production::open_first_come_first_served);
}

#[test]
fn closed_reports_the_workers_error_on_async_std() {
    scenario(production::closed_reports_the_workers_error);
}

#[test]
fn closed_reports_the_keep_alive_timeout_on_async_std() {
    scenario(production::closed_reports_the_keep_alive_timeout);
}

#[test]
fn write_half_dropped_first_on_async_std() {
    scenario(production::write_half_dropped_first);
}

#[test]
fn a_stalled_reader_is_reset_on_async_std() {
    scenario(production::a_stalled_reader_is_reset);
}

/// Runs one of the `production` scenarios on async-std over loopback TCP, failing after 30 s
/// instead of hanging.
fn scenario<F, Fut>(body: F)
where
    F: FnOnce(TcpStream, TcpStream, fn(production::Task)) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    fn spawn(t: production::Task) {
        async_std::task::spawn(t);
    }
    async_std::task::block_on(async_std::future::timeout(Duration::from_secs(30), async {
        let (client, server) = tcp_pair().await;
        body(client, server, spawn).await;
    }))
    .expect("timed out");
}

/// Both ends of a loopback TCP connection.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = async_std::task::spawn(async move { listener.accept().await.unwrap().0 });
    let client = TcpStream::connect(addr).await.unwrap();
    (client, accept.await)
}
