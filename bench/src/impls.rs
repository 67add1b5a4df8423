//! The implementations under test, behind one opener/acceptor pair so that every workload is
//! written once. Each `connect` returns both ends of one connection over loopback TCP.
//!
//! The workloads run on Tokio (every implementation but smux-futures) or on smol
//! (smux-futures): [`spawn`] and [`sleep`] use whichever runtime the calling task is on, and
//! every stream is a Tokio `AsyncRead + AsyncWrite` (the futures-io ones through
//! `tokio_util::compat`, a wrapper that adds no copy).

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use smux_test_support::link::{wan_pair, Link, LinkConfig};
use smux_test_support::tokio::try_tcp_pair;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

/// A byte stream of any implementation.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {
    /// Ours only: what the session's scheduler sent ahead of this stream's last data frame.
    fn queued_ahead(&self) -> Option<smux_tokio::QueuedAhead> {
        None
    }
}

impl Io for TcpStream {}
impl Io for async_smux::MuxStream<TcpStream> {}

/// A loopback TCP connection as smux-tokio takes it: its two halves, so that reads never wait
/// for writes (what the docs recommend for a `TcpStream`); whole without the `split` feature.
#[cfg(feature = "split")]
type Tcp = smux_tokio::Split<tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf>;
#[cfg(not(feature = "split"))]
type Tcp = TcpStream;
/// The same for smux-futures: two handles of one smol socket.
#[cfg(feature = "split")]
type SmolTcp = smux_futures::Split<smol::net::TcpStream, smol::net::TcpStream>;
#[cfg(not(feature = "split"))]
type SmolTcp = smol::net::TcpStream;

/// `tcp` as smux-tokio takes it ([`Tcp`]).
fn tokio_tcp(tcp: TcpStream) -> Tcp {
    #[cfg(feature = "split")]
    {
        let (read, write) = tcp.into_split();
        smux_tokio::Split::new(read, write)
    }
    #[cfg(not(feature = "split"))]
    tcp
}

/// `tcp` as smux-futures takes it ([`SmolTcp`]).
fn smol_tcp(tcp: smol::net::TcpStream) -> SmolTcp {
    #[cfg(feature = "split")]
    {
        smux_futures::Split::new(tcp.clone(), tcp)
    }
    #[cfg(not(feature = "split"))]
    tcp
}
impl Io for Compat<yamux::Stream> {}

impl Io for smux_tokio::MuxStream<Tcp> {
    fn queued_ahead(&self) -> Option<smux_tokio::QueuedAhead> {
        Some(self.stats().queued_ahead)
    }
}

impl Io for Compat<smux_futures::MuxStream<SmolTcp>> {
    fn queued_ahead(&self) -> Option<smux_tokio::QueuedAhead> {
        Some(self.get_ref().stats().queued_ahead)
    }
}

pub type BoxIo = Box<dyn Io>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Impl {
    /// One TCP connection per stream: the ceiling.
    Raw,
    SmuxV1,
    SmuxV2,
    AsyncSmux,
    Yamux,
    /// smux-futures over smol's TCP socket, on smol.
    FuturesV1,
    FuturesV2,
}

impl Impl {
    pub const ALL: [Impl; 7] = [
        Impl::Raw,
        Impl::SmuxV1,
        Impl::SmuxV2,
        Impl::AsyncSmux,
        Impl::Yamux,
        Impl::FuturesV1,
        Impl::FuturesV2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Impl::Raw => "raw-tcp",
            Impl::SmuxV1 => "smux-tokio-v1",
            Impl::SmuxV2 => "smux-tokio-v2",
            Impl::AsyncSmux => "async_smux",
            Impl::Yamux => "yamux",
            Impl::FuturesV1 => "smux-futures-v1",
            Impl::FuturesV2 => "smux-futures-v2",
        }
    }

    pub fn parse(s: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|i| i.name() == s)
    }

    /// Runs on smol rather than Tokio.
    pub fn on_smol(self) -> bool {
        matches!(self, Impl::FuturesV1 | Impl::FuturesV2)
    }
}

/// A spawned task of either runtime; awaiting it gives its output (an error if it panicked).
/// Unlike Tokio's handle, smol's cancels its task when dropped: [`Task::detach`] lets it run.
pub enum Task<T> {
    Tokio(tokio::task::JoinHandle<T>),
    Smol(smol::Task<T>),
}

impl<T> Task<T> {
    pub fn detach(self) {
        match self {
            Task::Tokio(_) => {}
            Task::Smol(t) => t.detach(),
        }
    }
}

impl<T> Future for Task<T> {
    type Output = io::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.get_mut() {
            Task::Tokio(h) => Pin::new(h).poll(cx).map_err(io::Error::other),
            Task::Smol(t) => Pin::new(t).poll(cx).map(Ok),
        }
    }
}

/// Whether the caller runs inside a Tokio runtime (otherwise: on smol).
fn on_tokio() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Spawns `f` on the runtime of the caller: Tokio's if there is one, else smol's global
/// executor.
pub fn spawn<F>(f: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if on_tokio() {
        Task::Tokio(tokio::spawn(f))
    } else {
        Task::Smol(smol::spawn(f))
    }
}

/// Sleeps on the caller's runtime's timer.
pub async fn sleep(d: Duration) {
    if on_tokio() {
        tokio::time::sleep(d).await;
    } else {
        smol::Timer::after(d).await;
    }
}

/// Opens streams: the client end.
pub enum Opener {
    Raw(SocketAddr),
    Smux(smux_tokio::MuxConnector<Tcp>),
    AsyncSmux(async_smux::MuxConnector<TcpStream>),
    Yamux(mpsc::UnboundedSender<oneshot::Sender<yamux::Stream>>),
    Futures(smux_futures::MuxConnector<SmolTcp>),
}

/// Accepts streams: the server end.
pub enum Acceptor {
    Raw(TcpListener),
    Smux(smux_tokio::MuxAcceptor<Tcp>),
    AsyncSmux(async_smux::MuxAcceptor<TcpStream>),
    Yamux(mpsc::UnboundedReceiver<yamux::Stream>),
    Futures(smux_futures::MuxAcceptor<SmolTcp>),
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
            Opener::Futures(c) => Box::new(c.connect().map_err(io::Error::other)?.compat()),
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
            Acceptor::Futures(a) => Some(Box::new(a.accept().await?.compat())),
        }
    }
}

/// How [`connect`] sets a connection up besides the defaults.
pub struct Setup {
    /// The connection crosses an emulated WAN link (not for raw TCP, whose streams are
    /// connections of their own).
    pub link: Option<LinkConfig>,
    /// `TCP_NOTSENT_LOWAT` on both ends' sockets of the link's connection.
    pub lowat: Option<u32>,
    /// Ours: version-2 window tuning (on by default).
    pub window_tuning: bool,
}

/// Both ends of one connection of `imp`, default settings but for `setup`, with the workers
/// spawned. `streams` is how many streams the workload keeps open at once: yamux's limit (512
/// by default) is raised to it, with the connection window its 256 KiB per stream needs.
pub async fn connect(
    imp: Impl,
    streams: usize,
    setup: Setup,
) -> io::Result<(Opener, Acceptor, Option<Link>)> {
    let Setup {
        link,
        lowat,
        window_tuning,
    } = setup;
    if imp == Impl::Raw {
        if link.is_some() {
            return Err(io::Error::other(
                "raw TCP does not run over the emulated link",
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        return Ok((
            Opener::Raw(listener.local_addr()?),
            Acceptor::Raw(listener),
            None,
        ));
    }
    let (pair, link) = match link {
        Some(config) => {
            let (a, b, link) = wan_pair(config)?;
            if let Some(lowat) = lowat {
                set_notsent_lowat(&a, lowat)?;
                set_notsent_lowat(&b, lowat)?;
            }
            (Some((a, b)), Some(link))
        }
        None => (None, None),
    };
    if imp.on_smol() {
        let version = if imp == Impl::FuturesV1 {
            smux_futures::Version::V1
        } else {
            smux_futures::Version::V2
        };
        let (a, b) = match pair {
            Some((a, b)) => (
                smol::net::TcpStream::try_from(a)?,
                smol::net::TcpStream::try_from(b)?,
            ),
            None => smux_test_support::smol::tcp_pair().await,
        };
        let (conn, _, cw) = smux_futures::MuxBuilder::client()
            .with_version(version)
            .with_window_tuning(window_tuning)
            .with_connection(smol_tcp(a))
            .build();
        let (_, acc, sw) = smux_futures::MuxBuilder::server()
            .with_version(version)
            .with_window_tuning(window_tuning)
            .with_connection(smol_tcp(b))
            .build();
        smol::spawn(cw).detach();
        smol::spawn(sw).detach();
        return Ok((Opener::Futures(conn), Acceptor::Futures(acc), link));
    }
    // Both ends over loopback, (client, server), with Nagle off (as Go does by default).
    let (a, b) = match pair {
        Some((a, b)) => (TcpStream::from_std(a)?, TcpStream::from_std(b)?),
        None => try_tcp_pair(None).await?,
    };
    let (opener, acceptor) = match imp {
        Impl::Raw | Impl::FuturesV1 | Impl::FuturesV2 => unreachable!("handled above"),
        Impl::SmuxV1 | Impl::SmuxV2 => {
            let version = if imp == Impl::SmuxV1 {
                smux_tokio::Version::V1
            } else {
                smux_tokio::Version::V2
            };
            let (conn, _, cw) = smux_tokio::MuxBuilder::client()
                .with_version(version)
                .with_window_tuning(window_tuning)
                .with_connection(tokio_tcp(a))
                .build();
            let (_, acc, sw) = smux_tokio::MuxBuilder::server()
                .with_version(version)
                .with_window_tuning(window_tuning)
                .with_connection(tokio_tcp(b))
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
    };
    Ok((opener, acceptor, link))
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

/// Caps the bytes the kernel holds unsent on `s` at about `bytes` (Linux `TCP_NOTSENT_LOWAT`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_notsent_lowat(s: &std::net::TcpStream, bytes: u32) -> io::Result<()> {
    socket2::SockRef::from(s).set_tcp_notsent_lowat(bytes)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_notsent_lowat(_: &std::net::TcpStream, _: u32) -> io::Result<()> {
    Err(io::Error::other("TCP_NOTSENT_LOWAT is set on Linux only"))
}
