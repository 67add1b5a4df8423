//! A connected pair of loopback TCP streams over async-net, the `smol::net` types (feature
//! `smol`), for the futures-io tests. No Tokio here: smux-futures uses this module.
//!
//! The order is `(client, server)`: the stream of the side that connected, then the stream of
//! the side that accepted. Both have `TCP_NODELAY` set.

use std::net::{Ipv4Addr, SocketAddr};

use async_net::{TcpListener, TcpStream};

/// A connected pair of TCP streams on 127.0.0.1, `(client, server)`. Panics if the system
/// refuses.
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("the listener's address");
    let (connected, accepted) =
        futures_lite::future::zip(TcpStream::connect(addr), listener.accept()).await;
    let client = connected.expect("connect to 127.0.0.1");
    let (server, _) = accepted.expect("accept on 127.0.0.1");
    client.set_nodelay(true).expect("TCP_NODELAY");
    server.set_nodelay(true).expect("TCP_NODELAY");
    (client, server)
}

#[cfg(test)]
mod tests {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_pair_is_connected_both_ways_with_nodelay() {
        futures_lite::future::block_on(async {
            let (mut client, mut server) = super::tcp_pair().await;
            assert_eq!(client.local_addr().unwrap(), server.peer_addr().unwrap());
            assert!(client.nodelay().unwrap() && server.nodelay().unwrap());
            let mut buf = [0u8; 2];
            client.write_all(b"cs").await.unwrap();
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"cs");
            server.write_all(b"sc").await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"sc");
        });
    }
}
