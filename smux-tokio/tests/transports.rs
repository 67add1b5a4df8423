//! Echo and bulk transfers over real transports: TCP on 127.0.0.1, `tokio::io::duplex`, and
//! TLS (tokio-rustls with a self-signed certificate made by rcgen).
//!
//! Every echo test opens N client streams concurrently, each in its own task. A stream writes a
//! random number of random-size chunks of pseudo-random bytes (1 byte to 256 KiB each),
//! shuts down its write side and reads the echo to end of stream, checking it byte for byte
//! against the same generator. The reader runs alongside the writer (the stream is split):
//! an echo client that wrote everything before reading could deadlock on any flow-controlled
//! transport, multiplexed or not, once the echoed bytes exceed the buffering between the two
//! ends. The server accepts each stream and echoes it in its own task (copy to end of stream,
//! then shutdown).
//!
//! Each test body runs under a 60 s timeout so that a hang fails instead of blocking CI.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{ByteGen, Fnv, Rng};
use smux_test_support::tokio::tcp_pair;
use smux_tokio::{MuxBuilder, MuxStream, Version};

mod common;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest single write of an echo stream.
const MAX_WRITE: usize = 256 * 1024;
/// Largest total one echo stream sends.
const MAX_PER_STREAM: usize = 512 * 1024;
/// Largest total all streams of one echo test send (each way).
const MAX_TOTAL: usize = 64 * 1024 * 1024;

/// Runs a test body under [`TEST_TIMEOUT`].
async fn with_timeout<F: Future>(name: &str, body: F) -> F::Output {
    match tokio::time::timeout(TEST_TIMEOUT, body).await {
        Ok(out) => out,
        Err(_) => panic!("{name}: timed out after {TEST_TIMEOUT:?} (hang?)"),
    }
}

// ---------------------------------------------------------------------------------------------
// Pseudo-random numbers and content
// ---------------------------------------------------------------------------------------------

#[test]
fn byte_gen_is_independent_of_chunking() {
    let mut whole = vec![0u8; 1000];
    ByteGen::new(7).fill(&mut whole);
    let mut pieces = vec![0u8; 1000];
    let mut g = ByteGen::new(7);
    let mut rng = Rng::new(1);
    let mut at = 0;
    while at < pieces.len() {
        let n = rng.range(1, 13).min(pieces.len() - at);
        g.fill(&mut pieces[at..at + n]);
        at += n;
    }
    assert_eq!(whole, pieces);
    let mut other = vec![0u8; 1000];
    ByteGen::new(8).fill(&mut other);
    assert_ne!(whole, other);
}

// ---------------------------------------------------------------------------------------------
// The echo workload
// ---------------------------------------------------------------------------------------------

/// What one client stream sends.
#[derive(Clone, Debug)]
struct StreamPlan {
    index: usize,
    content_seed: u64,
    writes: Vec<usize>,
    /// Largest read the reader asks for at once.
    read_buf: usize,
}

impl StreamPlan {
    fn total(&self) -> usize {
        self.writes.iter().sum()
    }
}

/// Plans for `n` streams. Stream 0 starts with a 256 KiB write and stream 1 is a single byte,
/// so the extremes are always exercised.
fn make_plans(n: usize, seed: u64) -> Vec<StreamPlan> {
    let mut rng = Rng::new(seed);
    let plans: Vec<StreamPlan> = (0..n)
        .map(|index| {
            let count = rng.range(1, 4);
            let mut writes = Vec::with_capacity(count);
            let mut total = 0;
            for _ in 0..count {
                let size = rng.size(MAX_WRITE).min(MAX_PER_STREAM - total);
                if size == 0 {
                    break;
                }
                total += size;
                writes.push(size);
            }
            match index {
                0 => writes = vec![MAX_WRITE, 1, MAX_WRITE - 1],
                1 => writes = vec![1],
                _ => {}
            }
            StreamPlan {
                index,
                content_seed: rng.next_u64(),
                writes,
                read_buf: rng.size(64 * 1024),
            }
        })
        .collect();
    let total: usize = plans.iter().map(StreamPlan::total).sum();
    assert!(
        total <= MAX_TOTAL,
        "plan for {n} streams sends {total} bytes, above {MAX_TOTAL}"
    );
    plans
}

/// One client stream: write the plan and shut down the write side, while reading the echo to
/// end of stream and checking it. Returns the bytes echoed back.
async fn client_stream<T>(stream: MuxStream<T>, plan: StreamPlan) -> Result<usize, String>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let id = stream.get_stream_id();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let expected_total = plan.total();

    let writer = async {
        let mut gen = ByteGen::new(plan.content_seed);
        for (k, &size) in plan.writes.iter().enumerate() {
            let mut buf = vec![0u8; size];
            gen.fill(&mut buf);
            wr.write_all(&buf)
                .await
                .map_err(|e| format!("write #{k} ({size} bytes) failed: {e}"))?;
        }
        wr.shutdown()
            .await
            .map_err(|e| format!("shutdown failed: {e}"))?;
        Ok::<_, String>(())
    };

    let reader = async {
        let mut gen = ByteGen::new(plan.content_seed);
        let mut buf = vec![0u8; plan.read_buf];
        let mut want = vec![0u8; plan.read_buf];
        let mut got = 0usize;
        loop {
            let n = rd
                .read(&mut buf)
                .await
                .map_err(|e| format!("read failed after {got} of {expected_total} bytes: {e}"))?;
            if n == 0 {
                break;
            }
            if got + n > expected_total {
                return Err(format!(
                    "echo longer than sent: {} bytes, sent {expected_total}",
                    got + n
                ));
            }
            gen.fill(&mut want[..n]);
            if buf[..n] != want[..n] {
                let at = (0..n).find(|&i| buf[i] != want[i]).unwrap();
                return Err(format!(
                    "echo differs at byte {} of {expected_total}: got {:#04x}, want {:#04x}",
                    got + at,
                    buf[at],
                    want[at]
                ));
            }
            got += n;
        }
        if got != expected_total {
            return Err(format!(
                "echo ended after {got} bytes, sent {expected_total}"
            ));
        }
        Ok(got)
    };

    let (w, r) = tokio::join!(writer, reader);
    let tag = format!(
        "client stream #{} (id {id}, writes {:?})",
        plan.index, plan.writes
    );
    w.map_err(|e| format!("{tag}: {e}"))?;
    r.map_err(|e| format!("{tag}: {e}"))
}

/// One server stream: copy what arrives back until end of stream, then shut down.
/// Returns the stream id and the bytes echoed.
async fn echo_stream<T>(stream: MuxStream<T>) -> Result<(u32, u64), String>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let id = stream.get_stream_id();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let n = tokio::io::copy(&mut rd, &mut wr)
        .await
        .map_err(|e| format!("server stream id {id}: copy failed: {e}"))?;
    wr.shutdown()
        .await
        .map_err(|e| format!("server stream id {id}: shutdown failed after {n} bytes: {e}"))?;
    Ok((id, n))
}

/// How the client ends the session once every stream is done.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// `connector.close().await`.
    Close,
    /// Drop every handle and let the worker finish.
    DropHandles,
}

/// Runs the echo workload with `streams` client streams over the given transport pair and
/// checks everything: content, counts, stream ids, and that both workers end `Ok`.
async fn run_echo<C, S>(
    client_io: C,
    server_io: S,
    version: Version,
    streams: usize,
    seed: u64,
    ending: Ending,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let plans = make_plans(streams, seed);
    let total: usize = plans.iter().map(StreamPlan::total).sum();

    // Server: accept and echo each stream in its own task until the session ends.
    let server = tokio::spawn(async move {
        let (server_connector, mut acceptor, worker) = MuxBuilder::server()
            .with_version(version)
            .with_connection(server_io)
            .build();
        drop(server_connector);
        let worker = tokio::spawn(worker);
        let mut echoes = Vec::new();
        while let Some(stream) = acceptor.accept().await {
            echoes.push(tokio::spawn(echo_stream(stream)));
        }
        let mut results = Vec::with_capacity(echoes.len());
        for e in echoes {
            results.push(e.await.expect("server echo task panicked"));
        }
        let worker_result = worker.await.expect("server worker panicked");
        (results, worker_result)
    });

    // Client: one task per stream, each opening its own stream.
    let (connector, acceptor, worker) = MuxBuilder::client()
        .with_version(version)
        .with_connection(client_io)
        .build();
    let worker = tokio::spawn(worker);
    let tasks: Vec<_> = plans
        .into_iter()
        .map(|plan| {
            let connector = connector.clone();
            tokio::spawn(async move {
                let stream = connector
                    .connect()
                    .map_err(|e| format!("client stream #{}: connect failed: {e}", plan.index))?;
                drop(connector);
                client_stream(stream, plan).await
            })
        })
        .collect();

    let mut failures = Vec::new();
    let mut echoed_back = 0usize;
    let mut completed = 0usize;
    for t in tasks {
        match t.await.expect("client stream task panicked") {
            Ok(n) => {
                completed += 1;
                echoed_back += n;
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {streams} client streams failed; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(completed, streams);
    assert_eq!(echoed_back, total);
    assert_eq!(
        connector.get_num_streams(),
        0,
        "client stream handles still counted after every stream task ended"
    );

    match ending {
        Ending::Close => {
            connector.close().await.expect("connector.close() failed");
            assert!(
                connector.connect().is_err(),
                "connect() succeeded after close()"
            );
            drop(acceptor);
            drop(connector);
        }
        Ending::DropHandles => {
            drop(acceptor);
            drop(connector);
        }
    }
    worker
        .await
        .expect("client worker panicked")
        .expect("client worker ended with an error");

    let (results, server_worker) = server.await.expect("server task panicked");
    server_worker.expect("server worker ended with an error");
    assert_eq!(
        results.len(),
        streams,
        "server accepted {} streams, client opened {streams}",
        results.len()
    );
    let mut ids = HashSet::new();
    let mut server_bytes = 0u64;
    for r in results {
        let (id, n) = r.unwrap_or_else(|e| panic!("{e}"));
        assert!(id % 2 == 1, "client-opened stream has even id {id}");
        assert!(ids.insert(id), "stream id {id} accepted twice");
        server_bytes += n;
    }
    assert_eq!(
        server_bytes, total as u64,
        "server echoed a different total"
    );
    eprintln!(
        "echo: {streams} streams, {version:?}, {ending:?}: {total} bytes each way in {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------------------------

/// A TLS pair over TCP on 127.0.0.1, with a fresh self-signed certificate for "localhost"
/// that the client trusts through its root store.
async fn tls_pair() -> (
    tokio_rustls::client::TlsStream<TcpStream>,
    tokio_rustls::server::TlsStream<TcpStream>,
) {
    use tokio_rustls::rustls::crypto::ring::default_provider;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("rcgen: self-signed certificate");
    let cert_der = certified.cert.der().clone();
    let key_der =
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));

    let server_config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .expect("rustls: server protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .expect("rustls: server certificate");

    let mut roots = RootCertStore::empty();
    roots.add(cert_der).expect("rustls: trust the certificate");
    let client_config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .expect("rustls: client protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();

    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let connector = TlsConnector::from(Arc::new(client_config));
    let (client_tcp, server_tcp) = tcp_pair().await;
    let name = ServerName::try_from("localhost").unwrap();
    let (client, server) = tokio::join!(
        connector.connect(name, client_tcp),
        acceptor.accept(server_tcp)
    );
    (
        client.expect("TLS handshake (client)"),
        server.expect("TLS handshake (server)"),
    )
}

// ---------------------------------------------------------------------------------------------
// Echo over TCP
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_echo_1_stream_v1() {
    with_timeout("tcp_echo_1_stream_v1", async {
        let (c, s) = tcp_pair().await;
        run_echo(c, s, Version::V1, 1, 0x1001, Ending::Close).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_echo_100_streams_v1() {
    with_timeout("tcp_echo_100_streams_v1", async {
        let (c, s) = tcp_pair().await;
        run_echo(c, s, Version::V1, 100, 0x1100, Ending::Close).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_echo_1000_streams_v1() {
    with_timeout("tcp_echo_1000_streams_v1", async {
        let (c, s) = tcp_pair().await;
        run_echo(c, s, Version::V1, 1000, 0x1999, Ending::Close).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_echo_1_stream_v2() {
    with_timeout("tcp_echo_1_stream_v2", async {
        let (c, s) = tcp_pair().await;
        run_echo(c, s, Version::V2, 1, 0x2001, Ending::Close).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_echo_100_streams_v2() {
    with_timeout("tcp_echo_100_streams_v2", async {
        let (c, s) = tcp_pair().await;
        run_echo(c, s, Version::V2, 100, 0x2100, Ending::Close).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_echo_1000_streams_v2() {
    with_timeout("tcp_echo_1000_streams_v2", async {
        let (c, s) = tcp_pair().await;
        run_echo(c, s, Version::V2, 1000, 0x2999, Ending::Close).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Echo over tokio::io::duplex (64 KiB pipe), ending by dropping every handle
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplex_echo_100_streams_v1() {
    with_timeout("duplex_echo_100_streams_v1", async {
        let (c, s) = tokio::io::duplex(64 * 1024);
        run_echo(c, s, Version::V1, 100, 0x3100, Ending::DropHandles).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplex_echo_100_streams_v2() {
    with_timeout("duplex_echo_100_streams_v2", async {
        let (c, s) = tokio::io::duplex(64 * 1024);
        run_echo(c, s, Version::V2, 100, 0x3200, Ending::DropHandles).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplex_echo_1000_streams_v1() {
    with_timeout("duplex_echo_1000_streams_v1", async {
        let (c, s) = tokio::io::duplex(64 * 1024);
        run_echo(c, s, Version::V1, 1000, 0x3199, Ending::Close).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplex_echo_1000_streams_v2() {
    with_timeout("duplex_echo_1000_streams_v2", async {
        let (c, s) = tokio::io::duplex(64 * 1024);
        run_echo(c, s, Version::V2, 1000, 0x3299, Ending::Close).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Echo over TLS
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_echo_100_streams_v1() {
    with_timeout("tls_echo_100_streams_v1", async {
        let (c, s) = tls_pair().await;
        run_echo(c, s, Version::V1, 100, 0x4100, Ending::Close).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_echo_100_streams_v2() {
    with_timeout("tls_echo_100_streams_v2", async {
        let (c, s) = tls_pair().await;
        run_echo(c, s, Version::V2, 100, 0x4200, Ending::Close).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_echo_100_streams_v2_drop_handles() {
    with_timeout("tls_echo_100_streams_v2_drop_handles", async {
        let (c, s) = tls_pair().await;
        run_echo(c, s, Version::V2, 100, 0x4300, Ending::DropHandles).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// A shutdown whose FIN went out, re-polled after the peer closed the connection
// ---------------------------------------------------------------------------------------------

/// A waker that does nothing: the test polls by hand.
struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// The race the echo server can hit: its `shutdown()` is pending while the worker writes the
/// FIN; the client reads that FIN (end of stream), closes the connection, and only then is
/// the server's shutdown polled again. The FIN did reach the peer and both sides finished the
/// stream, so the shutdown must complete `Ok`. Polled by hand to make the interleaving
/// deterministic.
async fn shutdown_after_peer_close(version: Version) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (_server_connector, mut acceptor, server_worker) = MuxBuilder::server()
        .with_version(version)
        .with_connection(server_io)
        .build();
    let server_worker = tokio::spawn(server_worker);
    let (connector, _client_acceptor, client_worker) = MuxBuilder::client()
        .with_version(version)
        .with_connection(client_io)
        .build();
    let client_worker = tokio::spawn(client_worker);

    let mut cs = connector.connect().unwrap();
    cs.write_all(b"ping").await.unwrap();
    cs.shutdown().await.unwrap();
    let mut ss = acceptor.accept().await.expect("no stream arrived");
    let mut got = Vec::new();
    ss.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping");
    ss.write_all(b"pong").await.unwrap();

    // First poll of the server's shutdown: queues the FIN.
    let waker = Waker::from(Arc::new(NoopWake));
    let mut cx = Context::from_waker(&waker);
    let first = Pin::new(&mut ss).poll_shutdown(&mut cx);
    assert!(
        !matches!(first, Poll::Ready(Err(_))),
        "{version:?}: first poll_shutdown failed: {first:?}"
    );

    // The FIN reaches the client: it reads the reply to a clean end, then closes.
    let mut back = Vec::new();
    cs.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"pong");
    drop(cs);
    connector.close().await.expect("connector.close() failed");
    client_worker
        .await
        .unwrap()
        .expect("client worker ended with an error");
    server_worker
        .await
        .unwrap()
        .expect("server worker ended with an error");

    // Now the server's shutdown is polled again.
    if first.is_pending() {
        let second = Pin::new(&mut ss).poll_shutdown(&mut cx);
        assert!(
            matches!(second, Poll::Ready(Ok(()))),
            "{version:?}: shutdown whose FIN the peer already read completed with {second:?} \
             after the peer closed the connection; want Ready(Ok(()))"
        );
    }
}

#[tokio::test]
async fn shutdown_repolled_after_peer_close_is_ok_v1() {
    with_timeout(
        "shutdown_repolled_after_peer_close_is_ok_v1",
        shutdown_after_peer_close(Version::V1),
    )
    .await;
}

#[tokio::test]
async fn shutdown_repolled_after_peer_close_is_ok_v2() {
    with_timeout(
        "shutdown_repolled_after_peer_close_is_ok_v2",
        shutdown_after_peer_close(Version::V2),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 1 GiB on one stream
// ---------------------------------------------------------------------------------------------

const ONE_GIB: u64 = 1 << 30;

/// Sends `ONE_GIB` bytes of a deterministic pattern on one client stream over TCP; the server
/// hashes what it reads. Both ends' FNV-1a hashes and byte counts must match.
async fn one_gib(version: Version) {
    let started = Instant::now();
    let (client_io, server_io) = tcp_pair().await;

    let server = tokio::spawn(async move {
        let (_connector, mut acceptor, worker) = MuxBuilder::server()
            .with_version(version)
            .with_connection(server_io)
            .build();
        let worker = tokio::spawn(worker);
        let mut stream = acceptor.accept().await.expect("no stream arrived");
        let mut hash = Fnv::new();
        let mut got = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("server read failed after {got} bytes: {e}"));
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            got += n as u64;
        }
        // Acknowledge with what we saw, then finish our side.
        stream.write_all(&got.to_le_bytes()).await.unwrap();
        stream.write_all(&hash.0.to_le_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        assert!(acceptor.accept().await.is_none(), "a second stream arrived");
        let worker_result = worker.await.expect("server worker panicked");
        (got, hash.0, worker_result)
    });

    let (connector, _acceptor, worker) = MuxBuilder::client()
        .with_version(version)
        .with_connection(client_io)
        .build();
    let worker = tokio::spawn(worker);
    let mut stream = connector.connect().unwrap();
    let mut gen = ByteGen::new(0x1_6B);
    let mut hash = Fnv::new();
    let mut rng = Rng::new(0x51_2E);
    let mut buf = vec![0u8; MAX_WRITE];
    let mut sent = 0u64;
    while sent < ONE_GIB {
        // Varying write sizes, up to 256 KiB.
        let n = (rng.size(MAX_WRITE) as u64).min(ONE_GIB - sent) as usize;
        gen.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        stream
            .write_all(&buf[..n])
            .await
            .unwrap_or_else(|e| panic!("client write failed after {sent} bytes: {e}"));
        sent += n as u64;
    }
    stream.shutdown().await.unwrap();
    let mut ack = Vec::new();
    stream.read_to_end(&mut ack).await.unwrap();
    assert_eq!(ack.len(), 16, "server acknowledgement has the wrong length");
    let peer_count = u64::from_le_bytes(ack[..8].try_into().unwrap());
    let peer_hash = u64::from_le_bytes(ack[8..].try_into().unwrap());
    assert_eq!(
        peer_count, ONE_GIB,
        "server received a different byte count"
    );
    assert_eq!(
        peer_hash, hash.0,
        "server's FNV-1a differs from the client's: data corrupted"
    );
    drop(stream);
    connector.close().await.expect("connector.close() failed");
    worker
        .await
        .expect("client worker panicked")
        .expect("client worker ended with an error");

    let (got, server_hash, server_worker) = server.await.expect("server task panicked");
    server_worker.expect("server worker ended with an error");
    assert_eq!(got, ONE_GIB);
    assert_eq!(server_hash, hash.0);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "1 GiB on one stream, {version:?}: {secs:.2} s ({:.0} MiB/s)",
        1024.0 / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: moves 1 GiB"]
async fn tcp_one_stream_1_gib_v1() {
    with_timeout("tcp_one_stream_1_gib_v1", one_gib(Version::V1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: moves 1 GiB"]
async fn tcp_one_stream_1_gib_v2() {
    with_timeout("tcp_one_stream_1_gib_v2", one_gib(Version::V2)).await;
}
