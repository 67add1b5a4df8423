//! The implementations under test, behind one opener/acceptor pair so that every workload is
//! written once. Each `connect` returns both ends of one connection over loopback TCP.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;

use smux_test_support::tokio::try_tcp_pair;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

/// A byte stream of any implementation.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type BoxIo = Box<dyn Io>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// One TCP connection per stream: the ceiling.
    Raw,
    SmuxV1,
    SmuxV2,
    AsyncSmux,
    Yamux,
}

impl Impl {
    pub const ALL: [Impl; 5] = [
        Impl::Raw,
        Impl::SmuxV1,
        Impl::SmuxV2,
        Impl::AsyncSmux,
        Impl::Yamux,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Impl::Raw => "raw-tcp",
            Impl::SmuxV1 => "smux-tokio-v1",
            Impl::SmuxV2 => "smux-tokio-v2",
            Impl::AsyncSmux => "async_smux",
            Impl::Yamux => "yamux",
        }
    }

    pub fn parse(s: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|i| i.name() == s)
    }
}

/// Opens streams: the client end.
pub enum Opener {
    Raw(SocketAddr),
    Smux(smux_tokio::MuxConnector<TcpStream>),
    AsyncSmux(async_smux::MuxConnector<TcpStream>),
    Yamux(mpsc::UnboundedSender<oneshot::Sender<yamux::Stream>>),
}

/// Accepts streams: the server end.
pub enum Acceptor {
    Raw(TcpListener),
    Smux(smux_tokio::MuxAcceptor<TcpStream>),
    AsyncSmux(async_smux::MuxAcceptor<TcpStream>),
    Yamux(mpsc::UnboundedReceiver<yamux::Stream>),
}

impl Opener {
    pub async fn open(&self) -> io::Result<BoxIo> {
        Ok(match self {
            Opener::Raw(addr) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Opener::Smux(c) => Box::new(c.connect().map_err(io::Error::other)?),
            Opener::AsyncSmux(c) => Box::new(c.connect().map_err(io::Error::other)?),
            Opener::Yamux(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(reply)
                    .map_err(|_| io::Error::other("yamux driver gone"))?;
                let s = rx
                    .await
                    .map_err(|_| io::Error::other("yamux open failed"))?;
                Box::new(s.compat())
            }
        })
    }
}

impl Acceptor {
    pub async fn accept(&mut self) -> Option<BoxIo> {
        match self {
            Acceptor::Raw(l) => {
                let (s, _) = l.accept().await.ok()?;
                s.set_nodelay(true).ok()?;
                Some(Box::new(s))
            }
            Acceptor::Smux(a) => Some(Box::new(a.accept().await?)),
            Acceptor::AsyncSmux(a) => Some(Box::new(a.accept().await?)),
            Acceptor::Yamux(rx) => Some(Box::new(rx.recv().await?.compat())),
        }
    }
}

/// Both ends of one connection of `imp`, default settings, with the workers spawned.
/// `streams` is how many streams the workload keeps open at once: yamux's limit (512 by
/// default) is raised to it, with the connection window its 256 KiB per stream needs.
pub async fn connect(imp: Impl, streams: usize) -> io::Result<(Opener, Acceptor)> {
    if imp == Impl::Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        return Ok((Opener::Raw(listener.local_addr()?), Acceptor::Raw(listener)));
    }
    // Both ends over loopback, (client, server), with Nagle off (as Go does by default).
    let (a, b) = try_tcp_pair(None).await?;
    Ok(match imp {
        Impl::Raw => unreachable!("handled above"),
        Impl::SmuxV1 | Impl::SmuxV2 => {
            let version = if imp == Impl::SmuxV1 {
                smux_tokio::Version::V1
            } else {
                smux_tokio::Version::V2
            };
            let (conn, _, cw) = smux_tokio::MuxBuilder::client()
                .with_version(version)
                .with_connection(a)
                .build();
            let (_, acc, sw) = smux_tokio::MuxBuilder::server()
                .with_version(version)
                .with_connection(b)
                .build();
            tokio::spawn(cw);
            tokio::spawn(sw);
            (Opener::Smux(conn), Acceptor::Smux(acc))
        }
        Impl::AsyncSmux => {
            let (conn, _, cw) = async_smux::MuxBuilder::client().with_connection(a).build();
            let (_, acc, sw) = async_smux::MuxBuilder::server().with_connection(b).build();
            tokio::spawn(cw);
            tokio::spawn(sw);
            (Opener::AsyncSmux(conn), Acceptor::AsyncSmux(acc))
        }
        Impl::Yamux => {
            let mut config = yamux::Config::default();
            if streams > 512 {
                config.set_max_connection_receive_window(Some(streams * 256 * 1024));
                config.set_max_num_streams(streams);
            }
            let client = yamux::Connection::new(a.compat(), config.clone(), yamux::Mode::Client);
            let server = yamux::Connection::new(b.compat(), config, yamux::Mode::Server);
            let (open_tx, open_rx) = mpsc::unbounded_channel();
            let (in_tx, in_rx) = mpsc::unbounded_channel();
            tokio::spawn(drive_yamux(client, Some(open_rx), None));
            tokio::spawn(drive_yamux(server, None, Some(in_tx)));
            (Opener::Yamux(open_tx), Acceptor::Yamux(in_rx))
        }
    })
}

/// yamux 0.13 makes progress only while `poll_next_inbound` is polled, and opens streams
/// through the same `Connection`: one task owns it, serves open requests and hands inbound
/// streams out.
async fn drive_yamux<T>(
    mut conn: yamux::Connection<T>,
    mut opens: Option<mpsc::UnboundedReceiver<oneshot::Sender<yamux::Stream>>>,
    inbound: Option<mpsc::UnboundedSender<yamux::Stream>>,
) where
    T: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
{
    let mut waiting: Option<oneshot::Sender<yamux::Stream>> = None;
    poll_fn(|cx| loop {
        let mut progressed = false;
        if waiting.is_none() {
            if let Some(rx) = opens.as_mut() {
                if let Poll::Ready(Some(reply)) = rx.poll_recv(cx) {
                    waiting = Some(reply);
                }
            }
        }
        if let Some(reply) = waiting.take() {
            match conn.poll_new_outbound(cx) {
                Poll::Ready(Ok(s)) => {
                    let _ = reply.send(s);
                    progressed = true;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => waiting = Some(reply),
            }
        }
        match conn.poll_next_inbound(cx) {
            Poll::Ready(Some(Ok(s))) => {
                if let Some(tx) = &inbound {
                    let _ = tx.send(s);
                }
                progressed = true;
            }
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => {}
        }
        if !progressed {
            return Poll::Pending;
        }
    })
    .await
}
