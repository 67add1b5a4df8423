//! A smux-tokio client and a smux-futures server (on smol, in a thread of its own) over one
//! TCP connection, in both versions: the two adapters share one driver and one wire format.

use std::time::Duration;

use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::pattern;

/// A smol server that echoes every stream, opens one of its own, and ends when the client
/// closes the connection.
fn smol_server(listener: std::net::TcpListener, version: smux_futures::Version) {
    smol::block_on(async move {
        let listener = smol::net::TcpListener::try_from(listener).unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let (sc, mut sa, sw) = smux_futures::MuxBuilder::server()
            .with_version(version)
            .with_connection(tcp)
            .build();
        let worker = smol::spawn(sw);
        let mut own = sc.connect().unwrap();
        own.write_all(b"from smol").await.unwrap();
        own.close().await.unwrap();
        while let Some(mut s) = sa.accept().await {
            smol::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                }
                s.close().await.unwrap();
            })
            .detach();
        }
        assert!(worker.await.is_ok());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_and_smol_server() {
    for version in [smux_tokio::Version::V1, smux_tokio::Version::V2] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || smol_server(listener, version));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (cc, mut ca, cw) = smux_tokio::MuxBuilder::client()
            .with_version(version)
            .with_connection(tcp)
            .build();
        let cw = tokio::spawn(cw);
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut own = ca.accept().await.unwrap();
            let mut got = Vec::new();
            own.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"from smol");
            let pings: Vec<_> = (0..50u64)
                .map(|i| {
                    let s = cc.connect().unwrap();
                    tokio::spawn(async move {
                        let data = pattern(i, 1 + (i as usize * 7919) % (128 * 1024));
                        let (mut r, mut w) = tokio::io::split(s);
                        let writer = async {
                            w.write_all(&data).await.unwrap();
                            w.shutdown().await.unwrap();
                        };
                        let mut back = Vec::new();
                        let ((), read) = tokio::join!(writer, r.read_to_end(&mut back));
                        read.unwrap();
                        assert!(back == data, "stream {i}: echo differs");
                    })
                })
                .collect();
            for p in pings {
                p.await.unwrap();
            }
            cc.close().await.unwrap();
            assert!(cw.await.unwrap().is_ok());
        })
        .await
        .unwrap();
        server.join().unwrap();
    }
}
