//! The echo example on smol with smux-futures: a server and a client in one program over
//! 127.0.0.1, streams opened both ways. No Tokio involved.
//!
//! ```text
//! cargo run --example smol_echo
//! ```

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smux_futures::{MuxBuilder, MuxStream};

/// Echoes a stream until the peer finishes it, then finishes ours.
async fn echo(mut s: MuxStream<TcpStream>) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await?;
        total += n;
    }
    s.close().await?;
    Ok(total)
}

/// Sends `msg`, finishes, and reads the echo to the end.
async fn ping(mut s: MuxStream<TcpStream>, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    s.close().await?;
    let mut back = Vec::new();
    s.read_to_end(&mut back).await?;
    Ok(back)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;

        let server = smol::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let (connector, mut acceptor, worker) =
                MuxBuilder::server().with_connection(tcp).build();
            let worker = smol::spawn(worker);
            let back = ping(connector.connect()?, b"hello from the smol server").await?;
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
            worker.await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(echoed)
        });

        let tcp = TcpStream::connect(addr).await?;
        let (connector, mut acceptor, worker) = MuxBuilder::client().with_connection(tcp).build();
        let worker = smol::spawn(worker);
        let from_server = acceptor
            .accept()
            .await
            .ok_or("the server opened no stream")?;
        echo(from_server).await?;
        for i in 1..=3 {
            let msg = format!("message {i} from the smol client");
            let back = ping(connector.connect()?, msg.as_bytes()).await?;
            assert_eq!(back, msg.as_bytes());
            println!("client: {:?} came back", String::from_utf8_lossy(&back));
        }
        connector.close().await?;
        worker.await?;
        let echoed = server.await.map_err(|e| e.to_string())?;
        assert_eq!(echoed, 3);
        println!("done: 4 streams, both directions, one TCP connection, on smol");
        Ok(())
    })
}
