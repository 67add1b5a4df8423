//! Every handle, the worker and every future the handles return is `Send` when the transport
//! is, so each can move to another task or thread of a multi-thread runtime. Checked at
//! compile time: this file does not build if one of them stops being `Send`.

use smux_test_support::tokio::tcp_pair;
use smux_tokio::{
    MuxAcceptor, MuxBuilder, MuxConnector, MuxReadHalf, MuxStream, MuxWorker, MuxWriteHalf,
};
use tokio::net::TcpStream;

fn is_send<T: Send>(_: &T) {}

#[allow(dead_code)]
fn handle_types_are_send() {
    fn send<T: Send>() {}
    send::<MuxConnector<TcpStream>>();
    send::<MuxAcceptor<TcpStream>>();
    send::<MuxStream<TcpStream>>();
    send::<MuxWorker<TcpStream>>();
    send::<MuxReadHalf<TcpStream>>();
    send::<MuxWriteHalf<TcpStream>>();
}

#[tokio::test]
async fn futures_of_the_handles_are_send() {
    let (c, _s) = tcp_pair().await;
    let (connector, mut acceptor, worker) = MuxBuilder::client().with_connection(c).build();
    is_send(&worker);
    is_send(&connector.close());
    is_send(&connector.open());
    is_send(&connector.closed());
    is_send(&connector.drain());
    is_send(&acceptor.accept());
    let stream = connector.connect().unwrap();
    is_send(&stream);
}
