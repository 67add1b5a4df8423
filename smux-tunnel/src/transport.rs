//! The transport under the tunnel's smux connections: TCP, or kcptun's KCP over UDP ([`Kcp`]:
//! kcp-go's crypt and FEC, KCP, and kcptun's snappy compression unless turned off).
//!
//! [`Conn`] is one smux connection's transport, whichever it is; [`ServerListener`] accepts
//! them, and [`Transport::dial`] makes one.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{lookup_host, TcpListener, TcpStream};

use crate::kcp::{
    CodecConfig, CodecCounters, CodecStats, CompStream, FecShapeError, KcpGoCodec, KcpListener,
    KcpSettings, KcpStatsHandle, KcpStream, ListenerLimits,
};

/// The transport the smux connections run on.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// One TCP connection per smux connection.
    #[default]
    Tcp,
    /// One KCP session per smux connection, as kcptun makes them.
    Kcp(Box<Kcp>),
}

impl Transport {
    /// Whether this is KCP.
    pub fn is_kcp(&self) -> bool {
        matches!(self, Transport::Kcp(_))
    }

    /// Makes a transport to `server` (`HOST:PORT`). TCP sockets get no options here; the
    /// tunnel sets its own.
    pub async fn dial(&self, server: &str) -> io::Result<Conn> {
        match self {
            Transport::Tcp => Ok(Conn::Tcp(TcpStream::connect(server).await?)),
            Transport::Kcp(kcp) => {
                let addr = lookup_host(server).await?.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "no address to dial")
                })?;
                let session = KcpStream::connect(addr, &kcp.settings, kcp.codec()).await?;
                Ok(kcp.wrap(session))
            }
        }
    }
}

/// kcptun's transport, configured as its flags configure it.
#[derive(Clone)]
pub struct Kcp {
    /// The sessions' settings (`--mode`, `--mtu`, `--sndwnd`, ...).
    pub settings: KcpSettings,
    /// kcp-go's crypt and FEC (`--crypt`, `--key`, `--datashard`, `--parityshard`).
    codec: CodecConfig,
    /// kcptun's snappy compression over each session (on unless `--nocomp`).
    pub compression: bool,
    /// The server's caps on sessions.
    pub limits: ListenerLimits,
    /// What every session's codec counts, together.
    counters: Arc<CodecCounters>,
}

impl Kcp {
    /// A transport with these settings and codec, with compression as given.
    ///
    /// # Errors
    /// An FEC shape that Reed-Solomon over GF(2^8) cannot have (more than 256 shards).
    pub fn new(
        settings: KcpSettings,
        codec: CodecConfig,
        compression: bool,
    ) -> Result<Kcp, FecShapeError> {
        // Checks the shape once, so that making a codec later cannot fail.
        KcpGoCodec::new(&codec)?;
        Ok(Kcp {
            settings,
            codec,
            compression,
            limits: ListenerLimits::default(),
            counters: Arc::default(),
        })
    }

    /// kcptun-client's defaults: `--crypt aes --key "it's a secrect" --datashard 10
    /// --parityshard 3 --mode fast --mtu 1350 --sndwnd 128 --rcvwnd 512`, compression on.
    pub fn kcptun_client() -> Kcp {
        Kcp::new(KcpSettings::client(), CodecConfig::kcptun_default(), true)
            .expect("kcptun's default FEC shape")
    }

    /// kcptun-server's defaults: as the client's, with `--sndwnd 1024 --rcvwnd 1024`.
    pub fn kcptun_server() -> Kcp {
        Kcp::new(KcpSettings::server(), CodecConfig::kcptun_default(), true)
            .expect("kcptun's default FEC shape")
    }

    /// The codec configuration.
    pub fn codec_config(&self) -> &CodecConfig {
        &self.codec
    }

    /// What the codecs of all sessions made with this transport (and its clones) counted:
    /// datagrams dropped, shards FEC recovered.
    pub fn codec_stats(&self) -> CodecStats {
        self.counters.snapshot()
    }

    /// A session's codec.
    fn codec(&self) -> KcpGoCodec {
        KcpGoCodec::with_counters(&self.codec, self.counters.clone())
            .expect("the shape was checked in Kcp::new")
    }

    fn wrap(&self, session: KcpStream) -> Conn {
        if self.compression {
            Conn::KcpComp(Box::new(CompStream::new(session)))
        } else {
            Conn::Kcp(session)
        }
    }
}

impl std::fmt::Debug for Kcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kcp")
            .field("settings", &self.settings)
            .field("codec", &self.codec)
            .field("compression", &self.compression)
            .field("limits", &self.limits)
            .finish()
    }
}

/// One smux connection's transport.
#[derive(Debug)]
pub enum Conn {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A KCP session (`--nocomp`).
    Kcp(KcpStream),
    /// A KCP session under kcptun's compression (boxed: the compressor's tables are large).
    KcpComp(Box<CompStream<KcpStream>>),
}

impl Conn {
    /// The peer's address, if known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Conn::Tcp(t) => t.peer_addr().ok(),
            Conn::Kcp(k) => Some(k.peer_addr()),
            Conn::KcpComp(c) => Some(c.get_ref().peer_addr()),
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Conn::Tcp($s) => $e,
            Conn::Kcp($s) => $e,
            Conn::KcpComp($s) => $e,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Tcp(s) => s.is_write_vectored(),
            Conn::Kcp(s) => s.is_write_vectored(),
            Conn::KcpComp(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Where the tunnel server accepts smux connections: a TCP listener, or a KCP one.
pub enum ServerListener {
    /// TCP: each connection is an smux connection.
    Tcp(TcpListener),
    /// KCP: each session is an smux connection, compressed unless `compression` is off.
    Kcp {
        /// The listener.
        listener: KcpListener,
        /// kcptun's compression over each session.
        compression: bool,
    },
}

impl ServerListener {
    /// Listens on `addr` with `transport`.
    pub async fn bind(addr: &str, transport: &Transport) -> io::Result<ServerListener> {
        match transport {
            Transport::Tcp => Ok(ServerListener::Tcp(TcpListener::bind(addr).await?)),
            Transport::Kcp(kcp) => {
                let factory = (**kcp).clone();
                let listener =
                    KcpListener::bind(addr, kcp.settings.clone(), kcp.limits.clone(), move || {
                        factory.codec()
                    })
                    .await?;
                Ok(ServerListener::Kcp {
                    listener,
                    compression: kcp.compression,
                })
            }
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            ServerListener::Tcp(l) => l.local_addr(),
            ServerListener::Kcp { listener, .. } => listener.local_addr(),
        }
    }

    /// KCP: the listener's counts (datagrams, drops, sessions), readable after the listener
    /// has moved into the server.
    pub fn kcp_stats(&self) -> Option<KcpStatsHandle> {
        match self {
            ServerListener::Tcp(_) => None,
            ServerListener::Kcp { listener, .. } => Some(listener.stats_handle()),
        }
    }

    /// The next smux connection's transport.
    pub(crate) async fn accept(&mut self) -> io::Result<Conn> {
        match self {
            ServerListener::Tcp(l) => Ok(Conn::Tcp(l.accept().await?.0)),
            ServerListener::Kcp {
                listener,
                compression,
            } => {
                let session = listener.accept().await?;
                Ok(if *compression {
                    Conn::KcpComp(Box::new(CompStream::new(session)))
                } else {
                    Conn::Kcp(session)
                })
            }
        }
    }
}

impl From<TcpListener> for ServerListener {
    fn from(l: TcpListener) -> Self {
        ServerListener::Tcp(l)
    }
}

impl std::fmt::Debug for ServerListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerListener::Tcp(l) => f.debug_tuple("Tcp").field(l).finish(),
            ServerListener::Kcp {
                listener,
                compression,
            } => f
                .debug_struct("Kcp")
                .field("listener", listener)
                .field("compression", compression)
                .finish(),
        }
    }
}
