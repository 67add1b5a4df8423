//! A kcptun-compatible server on this crate's KCP listener, for trying it against
//! kcptun-client (`-crypt none -nocomp -datashard 0 -parityshard 0`): each smux stream of each
//! session is forwarded to a TCP target; as kcptun does, both directions end when one ends.
//!
//! ```text
//! cargo run --release -p smux-tunnel --example kcp_server -- LISTEN_UDP TARGET_TCP [SMUXVER]
//! ```

use std::net::SocketAddr;

use smux_tokio::{MuxBuilder, Version};
use smux_tunnel::kcp::{KcpListener, KcpSettings, ListenerLimits, PlainCodec};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: kcp_server LISTEN_UDP TARGET_TCP [SMUXVER]");
        std::process::exit(2);
    }
    let target: SocketAddr = args[1].parse().expect("TARGET_TCP: an address");
    let version = match args.get(2).map(String::as_str) {
        Some("2") => Version::V2,
        _ => Version::V1,
    };
    let mut listener = KcpListener::bind(
        args[0].as_str(),
        KcpSettings::server(),
        ListenerLimits::default(),
        PlainCodec::new,
    )
    .await?;
    eprintln!("listening on: {}", listener.local_addr()?);
    loop {
        let session = listener.accept().await?;
        tokio::spawn(async move {
            let (_connector, mut acceptor, worker) = MuxBuilder::server()
                .with_version(version)
                .with_keep_alive_interval(std::num::NonZeroU64::new(10).unwrap())
                .with_connection(session)
                .build();
            tokio::spawn(worker);
            while let Some(stream) = acceptor.accept().await {
                tokio::spawn(async move {
                    let Ok(tcp) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut sr, mut sw) = tokio::io::split(stream);
                    let (mut tr, mut tw) = tcp.into_split();
                    // Either direction ending ends both.
                    tokio::select! {
                        _ = tokio::io::copy(&mut sr, &mut tw) => {}
                        _ = tokio::io::copy(&mut tr, &mut sw) => {}
                    }
                });
            }
        });
    }
}
