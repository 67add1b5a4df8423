//! [`KcpListener`]: a KCP server on one UDP socket, as kcp-go's `Listener`. Sessions are keyed
//! by the client's address; the first valid datagram from a new address opens one, with the
//! conversation id it carries. A datagram from a known address with another conversation id
//! and sequence number 0 replaces that address's session (a client that restarted); with any
//! other sequence number it is dropped.
//!
//! With `-crypt none` anyone can open a session, so the listener caps how many sessions live
//! and how many wait to be accepted, and drops (and counts) datagrams beyond the caps; each
//! session buffers at most about twice its receive window (see [`KcpSettings::rcvwnd`]).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{lookup_host, ToSocketAddrs, UdpSocket};
use tokio::sync::{mpsc, Notify};

use super::mode::KcpSettings;
use super::session::{Delivered, Shared, RECV_BUF};
use super::stats::{Counters, KcpStats, KcpStatsHandle};
use super::stream::{udp_socket, KcpStream};
use super::Codec;

/// Datagrams the listener reads before it checks for other work.
const RECV_BATCH: usize = 64;

/// The listener's caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Sessions alive at once, accepted or not.
    pub max_sessions: usize,
    /// Sessions opened and not yet accepted (kcp-go's accept backlog is 128).
    pub backlog: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_sessions: 1024,
            backlog: 128,
        }
    }
}

/// What the listener shares with its sessions.
pub(crate) struct ListenerShared {
    sessions: Mutex<HashMap<SocketAddr, Arc<Shared>>>,
    /// A session left the map: the listener's task may be waiting for it to empty.
    left: Notify,
}

impl ListenerShared {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Shared>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets `session` if it is still the one for `peer`.
    pub(crate) fn remove(&self, peer: SocketAddr, session: &Arc<Shared>) {
        let mut map = self.sessions();
        if map.get(&peer).is_some_and(|s| Arc::ptr_eq(s, session)) {
            map.remove(&peer);
        }
        drop(map);
        self.left.notify_one();
    }
}

/// A KCP server: accepts a [`KcpStream`] for each client. Dropping it stops accepting; the
/// sessions already accepted go on (the listener's socket and task live until the last ends).
pub struct KcpListener {
    accepted: mpsc::Receiver<KcpStream>,
    socket: Arc<UdpSocket>,
    counters: Arc<Counters>,
}

impl KcpListener {
    /// Listens on `addr`. Each session gets a codec from `codec`; one more checks the first
    /// datagram from each new address.
    pub async fn bind<C, F>(
        addr: impl ToSocketAddrs,
        settings: KcpSettings,
        limits: ListenerLimits,
        codec: F,
    ) -> io::Result<KcpListener>
    where
        C: Codec,
        F: Fn() -> C + Send + 'static,
    {
        let local = lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let probe: Box<dyn Codec> = Box::new(codec());
        settings
            .kcp_mtu(probe.overhead())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let socket = Arc::new(udp_socket(local, &settings)?);
        let counters = Arc::new(Counters::default());
        let (tx, accepted) = mpsc::channel(limits.backlog.max(1));
        let router = Router {
            shared: Arc::new(ListenerShared {
                sessions: Mutex::new(HashMap::new()),
                left: Notify::new(),
            }),
            socket: socket.clone(),
            counters: counters.clone(),
            settings,
            limits,
            probe,
            codec: Box::new(move || Box::new(codec()) as Box<dyn Codec>),
            accept: tx,
        };
        tokio::spawn(router.run());
        Ok(KcpListener {
            accepted,
            socket,
            counters,
        })
    }

    /// The next session a client opened.
    pub async fn accept(&mut self) -> io::Result<KcpStream> {
        self.accepted
            .recv()
            .await
            .ok_or_else(|| io::Error::other("the listener's task ended"))
    }

    /// The address the listener's socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The counts of the listener's socket and all its sessions.
    pub fn stats(&self) -> KcpStats {
        self.counters.snapshot()
    }

    /// A handle on the same counts, readable after the listener has moved.
    pub fn stats_handle(&self) -> KcpStatsHandle {
        KcpStatsHandle(self.counters.clone())
    }
}

impl std::fmt::Debug for KcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KcpListener")
            .field("local", &self.socket.local_addr().ok())
            .finish()
    }
}

/// The listener's task: reads the socket and routes each datagram.
struct Router {
    shared: Arc<ListenerShared>,
    socket: Arc<UdpSocket>,
    counters: Arc<Counters>,
    settings: KcpSettings,
    limits: ListenerLimits,
    probe: Box<dyn Codec>,
    codec: Box<dyn Fn() -> Box<dyn Codec> + Send>,
    accept: mpsc::Sender<KcpStream>,
}

impl Router {
    async fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            if self.accept.is_closed() && self.shared.sessions().is_empty() {
                return;
            }
            tokio::select! {
                r = self.socket.readable() => {
                    if r.is_ok() {
                        self.drain(&mut buf);
                    }
                }
                _ = self.accept.closed(), if !self.accept.is_closed() => {}
                _ = self.shared.left.notified() => {}
            }
        }
    }

    fn drain(&mut self, buf: &mut [u8]) {
        for _ in 0..RECV_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, from)) => self.route(&buf[..n], from),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => Counters::add(&self.counters.socket_errors, 1),
            }
        }
    }

    fn route(&mut self, datagram: &[u8], from: SocketAddr) {
        Counters::add(&self.counters.datagrams_in, 1);
        let known = self.shared.sessions().get(&from).cloned();
        if let Some(session) = known {
            match session.deliver(datagram) {
                Delivered::Done => return,
                Delivered::OtherConv { sn: 0 } => {
                    session.reset(io::ErrorKind::ConnectionReset);
                    self.shared.remove(from, &session);
                }
                Delivered::OtherConv { .. } => {
                    Counters::add(&self.counters.dropped_kcp, 1);
                    return;
                }
            }
        }
        // A new session, if the datagram is valid and the caps allow.
        let Some(conv) = self.first_conv(datagram) else {
            return;
        };
        if self.shared.sessions().len() >= self.limits.max_sessions {
            Counters::add(&self.counters.dropped_session_cap, 1);
            return;
        }
        let Ok(permit) = self.accept.try_reserve() else {
            Counters::add(&self.counters.dropped_backlog, 1);
            return;
        };
        let session = match Shared::new(
            conv,
            self.socket.clone(),
            from,
            &self.settings,
            (self.codec)(),
            self.counters.clone(),
            Some(self.shared.clone()),
        ) {
            Ok(s) => s,
            // The settings were checked at bind with the same codec type.
            Err(_) => return,
        };
        Counters::add(&self.counters.sessions_opened, 1);
        self.shared.sessions().insert(from, session.clone());
        session.spawn();
        session.deliver(datagram);
        permit.send(KcpStream::from_shared(session));
    }

    /// The conversation id of a datagram's first KCP packet, if the datagram opens and holds
    /// one; a datagram that does not is counted as dropped.
    fn first_conv(&mut self, datagram: &[u8]) -> Option<u32> {
        // None: nothing delivered; Some(None): a first packet too short for KCP's header.
        let mut first: Option<Option<u32>> = None;
        let opened = self.probe.open(datagram, &mut |p| {
            if first.is_none() {
                first = Some(
                    (p.len() >= kcp::KCP_OVERHEAD)
                        .then(|| u32::from_le_bytes([p[0], p[1], p[2], p[3]])),
                );
            }
        });
        if let Err(reason) = opened {
            self.counters.codec_drop(reason);
            return None;
        }
        if first.flatten().is_none() {
            Counters::add(&self.counters.dropped_kcp, 1);
        }
        first.flatten()
    }
}
