//! [`KcpStream`]: the session's handle, Tokio's `AsyncRead + AsyncWrite` over the state in
//! [`super::session`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::mode::KcpSettings;
use super::rng::Rng;
use super::session::{lock, Shared, SEND_CHUNK_SEGMENTS};
use super::stats::{Counters, KcpStats};
use super::Codec;

/// A KCP session: a reliable, ordered byte stream to one peer over UDP, as kcp-go's
/// `UDPSession` in stream mode. Give it to smux-tokio as a transport.
///
/// Writes take what KCP's send window has room for and flush it at once; they wait while the
/// window (the smaller of ours and the peer's) is full, so a session holds at most about a
/// window of unacknowledged data. Reads wait for data. KCP has no end of stream: reads end
/// only with an error, once the session times out or is reset.
///
/// [`AsyncWrite::poll_shutdown`] waits until everything written is acknowledged (or
/// [`KcpSettings::linger`] passes, then fails with `TimedOut`); dropping the handle does the
/// same in the background, then ends the session.
pub struct KcpStream {
    shared: Arc<Shared>,
}

impl KcpStream {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> KcpStream {
        KcpStream { shared }
    }

    /// A client session to a kcp-go or kcptun server at `server`, on a UDP socket of its own,
    /// with a random conversation id. KCP has no handshake: this returns at once, and the
    /// server learns of the session from its first datagram.
    pub async fn connect<C: Codec>(
        server: SocketAddr,
        settings: &KcpSettings,
        codec: C,
    ) -> io::Result<KcpStream> {
        let local: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = Arc::new(udp_socket(local, settings)?);
        let conv = Rng::seeded().next_u64() as u32;
        let counters = Arc::new(Counters::default());
        Counters::add(&counters.sessions_opened, 1);
        let shared = Shared::new(
            conv,
            socket,
            server,
            settings,
            Box::new(codec),
            counters,
            None,
        )?;
        shared.spawn();
        Ok(KcpStream { shared })
    }

    /// The conversation id.
    pub fn conv(&self) -> u32 {
        self.shared.conv
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// The local address of the session's socket (a listener's, for a server's session).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// The counts of the session's socket: its own for a client, the listener's (all its
    /// sessions together) for a server.
    pub fn stats(&self) -> KcpStats {
        self.shared.counters.snapshot()
    }
}

impl std::fmt::Debug for KcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpStream")
            .field("conv", &self.shared.conv)
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl AsyncRead for KcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut core = lock(&self.shared.core);
        let start = buf.filled().len();
        let c = &mut *core;
        if c.leftover_at < c.leftover.len() {
            let n = buf.remaining().min(c.leftover.len() - c.leftover_at);
            buf.put_slice(&c.leftover[c.leftover_at..c.leftover_at + n]);
            c.leftover_at += n;
        }
        while buf.remaining() > 0 {
            let Ok(size) = c.kcp.peeksize() else { break };
            if size <= buf.remaining() {
                match c.kcp.recv(buf.initialize_unfilled_to(size)) {
                    Ok(n) => buf.advance(n),
                    Err(_) => break,
                }
            } else {
                c.leftover.resize(size, 0);
                match c.kcp.recv(&mut c.leftover) {
                    Ok(n) => {
                        c.leftover.truncate(n);
                        let k = buf.remaining().min(n);
                        buf.put_slice(&c.leftover[..k]);
                        c.leftover_at = k;
                    }
                    Err(_) => c.leftover.clear(),
                }
                break;
            }
        }
        if buf.filled().len() > start {
            return Poll::Ready(Ok(()));
        }
        if let Some(kind) = c.end {
            return Poll::Ready(Err(kind.into()));
        }
        c.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for KcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let shared = &self.shared;
        let mut core = lock(&shared.core);
        if let Some(kind) = core.end {
            return Poll::Ready(Err(kind.into()));
        }
        if core.write_shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = core.send_room();
        if room == 0 {
            core.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mss = core.kcp.mss();
        let n = buf.len().min(room * mss);
        for chunk in buf[..n].chunks(SEND_CHUNK_SEGMENTS * mss) {
            // Cannot fail: the chunk is under 128 segments and not empty.
            let _ = core.kcp.send(chunk);
        }
        // kcptun turns kcp-go's write delay off: each write is flushed at once.
        core.flush(Instant::now());
        shared.transmit(&mut core, false);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is with KCP, which sends it and retransmits it on its own.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = Instant::now();
        let mut core = lock(&self.shared.core);
        core.write_shut = true;
        if core.kcp.wait_snd() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(kind) = core.end {
            return Poll::Ready(Err(kind.into()));
        }
        if core.lingered(now) {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        if core.linger_until.is_none() {
            core.linger_until = Some(now + core.linger);
            self.shared.kick.notify_one();
        }
        core.closer = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for KcpStream {
    fn drop(&mut self) {
        let mut core = lock(&self.shared.core);
        core.handle_gone = true;
        core.write_shut = true;
        if core.linger_until.is_none() {
            core.linger_until = Some(Instant::now() + core.linger);
        }
        drop(core);
        self.shared.kick.notify_one();
    }
}

/// A UDP socket bound to `local`, with the settings' buffer sizes and DSCP.
pub(crate) fn udp_socket(local: SocketAddr, settings: &KcpSettings) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    // As kcptun: a buffer size the kernel refuses is not fatal.
    let _ = socket.set_recv_buffer_size(settings.sockbuf);
    let _ = socket.set_send_buffer_size(settings.sockbuf);
    if settings.dscp != 0 && local.is_ipv4() {
        let _ = socket.set_tos_v4(u32::from(settings.dscp) << 2);
    }
    socket.bind(&local.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}
