//! Connected pairs of loopback TCP streams on Tokio (feature `tokio`).
//!
//! The order is `(client, server)`: the stream of the side that connected, then the stream of
//! the side that accepted. Both have `TCP_NODELAY` set.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use ::tokio::net::{TcpSocket, TcpStream};

/// A connected pair of TCP streams on 127.0.0.1, `(client, server)`, with the system's
/// default buffer sizes. Panics if the system refuses.
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    tcp_pair_with_buffers(None).await
}

/// [`tcp_pair`], with both sockets' send and receive buffers (`SO_SNDBUF`, `SO_RCVBUF`) set
/// to `buffers` bytes before connecting, when it is `Some` (the accepted socket inherits the
/// listener's). Small buffers make a peer that stops reading block the writer soon.
pub async fn tcp_pair_with_buffers(buffers: Option<u32>) -> (TcpStream, TcpStream) {
    try_tcp_pair(buffers)
        .await
        .expect("a TCP pair on 127.0.0.1")
}

/// [`tcp_pair_with_buffers`], returning the error instead of panicking.
pub async fn try_tcp_pair(buffers: Option<u32>) -> io::Result<(TcpStream, TcpStream)> {
    sized_pair(buffers, buffers).await
}

/// A connected pair, `(connecting side, accepting side)`, each side's send and receive buffers
/// set when `Some`, both with `TCP_NODELAY`.
pub(crate) async fn sized_pair(
    connecting: Option<u32>,
    accepting: Option<u32>,
) -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpSocket::new_v4()?;
    let client = TcpSocket::new_v4()?;
    for (s, b) in [(&listener, accepting), (&client, connecting)] {
        if let Some(b) = b {
            s.set_send_buffer_size(b)?;
            s.set_recv_buffer_size(b)?;
        }
    }
    listener.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let addr = listener.local_addr()?;
    let listener = listener.listen(16)?;
    let (connected, accepted) = ::tokio::join!(client.connect(addr), listener.accept());
    let (client, (server, _)) = (connected?, accepted?);
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

#[cfg(test)]
mod tests {
    use ::tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_pair_is_connected_both_ways_with_nodelay() {
        let rt = ::tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            for (mut client, mut server) in [
                super::tcp_pair().await,
                super::tcp_pair_with_buffers(Some(16 * 1024)).await,
            ] {
                assert_eq!(client.local_addr().unwrap(), server.peer_addr().unwrap());
                assert!(client.nodelay().unwrap() && server.nodelay().unwrap());
                let mut buf = [0u8; 2];
                client.write_all(b"cs").await.unwrap();
                server.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"cs");
                server.write_all(b"sc").await.unwrap();
                client.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"sc");
            }
        });
    }
}
