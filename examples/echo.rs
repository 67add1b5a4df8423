//! The seed's echo example, self-contained: a server and a client in one program over
//! 127.0.0.1, with streams opened in both directions.
//!
//! ```text
//! cargo run --example echo
//! ```

use std::num::NonZeroU64;

use smux_tokio::{MuxBuilder, MuxStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Echoes a stream back until the peer finishes it, then finishes ours.
async fn echo<T: AsyncRead + AsyncWrite + Unpin>(mut s: MuxStream<T>) -> std::io::Result<u64> {
    let (mut r, mut w) = tokio::io::split(&mut s);
    let n = tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await?;
    Ok(n)
}

/// Sends `msg` on a stream, finishes it, and reads the echo to the end.
async fn ping<T: AsyncRead + AsyncWrite + Unpin>(
    mut s: MuxStream<T>,
    msg: &[u8],
) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    s.shutdown().await?;
    let mut back = Vec::new();
    s.read_to_end(&mut back).await?;
    Ok(back)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    // The server: echoes every stream the client opens, and opens one of its own.
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let (connector, mut acceptor, worker) = MuxBuilder::server()
            .with_keep_alive_interval(NonZeroU64::new(10).unwrap())
            .with_connection(tcp)
            .build();
        let worker = tokio::spawn(worker);
        let back = ping(connector.connect()?, b"hello from the server").await?;
        println!(
            "server: its own stream came back: {:?}",
            String::from_utf8_lossy(&back)
        );
        let mut echoed = 0;
        while let Some(stream) = acceptor.accept().await {
            let id = stream.get_stream_id();
            let n = echo(stream).await?;
            println!("server: echoed {n} bytes on stream {id}");
            echoed += 1;
        }
        worker.await??;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(echoed)
    });

    // The client: echoes the server's stream, opens three of its own.
    let tcp = TcpStream::connect(addr).await?;
    let (connector, mut acceptor, worker) = MuxBuilder::client()
        .with_keep_alive_interval(NonZeroU64::new(10).unwrap())
        .with_connection(tcp)
        .build();
    let worker = tokio::spawn(worker);
    let from_server = acceptor.accept().await.ok_or("server opened no stream")?;
    echo(from_server).await?;
    for i in 1..=3 {
        let msg = format!("message {i} from the client");
        let back = ping(connector.connect()?, msg.as_bytes()).await?;
        assert_eq!(back, msg.as_bytes());
        println!("client: {:?} came back", String::from_utf8_lossy(&back));
    }
    connector.close().await?;
    worker.await??;
    let echoed = server.await?.map_err(|e| e.to_string())?;
    assert_eq!(echoed, 3);
    println!("done: 4 streams, both directions, one TCP connection");
    Ok(())
}
