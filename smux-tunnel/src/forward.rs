//! The forwarder: a TCP port forwarder over smux connections, as kcptun, gost and v2ray use
//! smux, on TCP or on kcptun's KCP transport ([`Transport`]).
//!
//! The client listens for TCP connections and carries each as a stream over one of
//! `Options::conns` smux connections to the server, taking them in turn (as kcptun's `--conn`
//! does), so that a stall of one transport holds up only its share of the streams. Each smux
//! connection is made on first use and made anew when it dies (or, with
//! `Options::auto_expire`, when it is that old), on its own. The server dials the target for
//! each stream and copies both ways.
//!
//! Over TCP, half-close passes through: when one end shuts down its write side, the other end
//! sees EOF while the reverse direction keeps flowing. Over KCP the tunnel does what kcptun
//! does: the first direction to end (EOF or error) ends both, so that either end of a
//! connection can be ours or kcptun's and behave the same.
//!
//! One log line per connection opened and closed (unless `Options::quiet`), the closing one
//! with the bytes each way from the stream's statistics. When told to stop, both ends stop
//! accepting and drain their smux connections (open streams finish, new ones are refused) for
//! at most the drain timeout, then close them.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smux_tokio::{MuxBuilder, MuxConnector, MuxStream, Version};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::log::logln;
use crate::transport::{Conn, ServerListener, Transport};

/// smux-tokio's maximum frame size, in which `with_max_rx_queue` counts.
const FRAME: usize = 32 * 1024;

/// Settings of either end.
#[derive(Debug, Clone)]
pub struct Options {
    /// smux protocol version (the server's, unless `auto_version`).
    pub version: Version,
    /// Server: speak the version of each client's first frame.
    pub auto_version: bool,
    /// Send a keep-alive every so many seconds (and drop a peer silent for three times that).
    pub keep_alive: Option<NonZeroU64>,
    /// When stopping, how long open streams may take to finish before the smux connections
    /// are closed under them.
    pub drain_timeout: Duration,
    /// Client: smux connections to spread the streams over (at least 1).
    pub conns: usize,
    /// Linux's `TCP_NOTSENT_LOWAT` on the smux connections' TCP sockets, in bytes: how much
    /// the kernel holds unsent before the socket stops taking writes. A small value keeps the
    /// kernel's queue from adding its megabytes of delay ahead of an interactive stream's
    /// frame; `None` leaves the system's default. Ignored elsewhere, and over KCP.
    pub notsent_lowat: Option<u32>,
    /// What the smux connections run on.
    pub transport: Transport,
    /// kcptun's `--smuxbuf`: the smux receive budget in bytes (rounded up to whole frames),
    /// and in version 2 also the session's window. `None`: smux-tokio's defaults.
    pub smux_buffer: Option<usize>,
    /// kcptun's `--streambuf`: version 2's per-stream window in bytes, where window tuning
    /// starts. `None`: smux-tokio's default.
    pub stream_buffer: Option<u32>,
    /// No log line per connection opened and closed (kcptun's `--quiet`).
    pub quiet: bool,
    /// Client: a smux connection this old takes no new streams; a new one is made for them,
    /// and the old one drains for at most `scavenge_ttl`, then closes (kcptun's
    /// `--autoexpire`). `None`: never.
    pub auto_expire: Option<Duration>,
    /// Client: see `auto_expire` (kcptun's `--scavengettl`).
    pub scavenge_ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            version: Version::V1,
            auto_version: false,
            keep_alive: NonZeroU64::new(10),
            drain_timeout: Duration::from_secs(10),
            conns: 1,
            notsent_lowat: Some(128 * 1024),
            transport: Transport::Tcp,
            smux_buffer: None,
            stream_buffer: None,
            quiet: false,
            auto_expire: None,
            scavenge_ttl: Duration::from_secs(600),
        }
    }
}

/// Drains `connector` for at most `deadline`, then closes it (in a task of its own).
fn drain_then_close(connector: MuxConnector<Conn>, deadline: Duration) {
    tokio::spawn(async move {
        if tokio::time::timeout(deadline, connector.drain())
            .await
            .is_err()
        {
            logln!("drain timeout: closing with streams still open");
        }
        let _ = connector.close().await;
    });
}

/// The smux connections open now, by number, to drain when stopping.
type Live = Arc<std::sync::Mutex<HashMap<u64, MuxConnector<Conn>>>>;

/// The closing log line of a stream: bytes each way, from its statistics.
fn closed_line(stream: &MuxStream<Conn>, result: io::Result<(u64, u64)>) -> String {
    let s = stream.stats();
    match result {
        Ok(_) => format!(
            "closed: {} bytes sent, {} received",
            s.bytes_sent, s.bytes_received
        ),
        Err(e) => format!(
            "closed: {e} ({} bytes sent, {} received)",
            s.bytes_sent, s.bytes_received
        ),
    }
}

/// Sets the socket options of a smux connection's TCP socket.
fn tune_socket(conn: &Conn, opts: &Options) -> io::Result<()> {
    let Conn::Tcp(tcp) = conn else {
        return Ok(());
    };
    tcp.set_nodelay(true)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(lowat) = opts.notsent_lowat {
        socket2::SockRef::from(tcp).set_tcp_notsent_lowat(lowat)?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = opts;
    Ok(())
}

fn builder(client: bool, opts: &Options) -> MuxBuilder<smux_tokio::WithConfig> {
    let mut b = if client {
        MuxBuilder::client()
    } else {
        MuxBuilder::server()
    };
    b.with_version(opts.version);
    if opts.auto_version && !client {
        b.with_auto_version();
    }
    if let Some(k) = opts.keep_alive {
        b.with_keep_alive_interval(k);
    }
    if let Some(bytes) = opts.smux_buffer {
        // The command line refuses less than a full frame and its slot; this keeps a
        // library caller's value valid too.
        let frames = bytes.div_ceil(FRAME).max(3);
        b.with_max_rx_queue(NonZeroUsize::new(frames).expect("at least 3"));
        if opts.version == Version::V2 || opts.auto_version {
            b.with_max_session_window(NonZeroUsize::new(frames * FRAME).expect("at least 3"));
        }
    }
    if let Some(bytes) = opts.stream_buffer {
        b.with_stream_window(bytes.max(65_535));
    }
    b
}

/// Copies both ways. `half_close`: until both directions are finished, passing each end's
/// shutdown on to the other; otherwise, as kcptun, until either direction ends, which ends
/// both (the caller drops both ends). Returns the bytes moved each way (0 for a direction
/// cut short).
async fn relay<A, B>(a: &mut A, b: &mut B, half_close: bool) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    if half_close {
        return tokio::io::copy_bidirectional(a, b).await;
    }
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    // The direction that ends has written everything; the other's bytes in flight are
    // dropped with it, as kcptun drops them. Dropping the ends closes them: a stream's FIN
    // follows the data written, a TCP socket's close its queued bytes.
    tokio::select! {
        r = tokio::io::copy(&mut ar, &mut bw) => r.map(|n| (n, 0)),
        r = tokio::io::copy(&mut br, &mut aw) => r.map(|n| (0, n)),
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Runs until `shutdown` completes, then stops accepting and waits for open connections.
async fn serve_until<T, F, S, A>(
    mut accept: A,
    shutdown: S,
    mut handle: impl FnMut(T, u64) -> F,
) -> io::Result<()>
where
    A: AsyncAccept<T>,
    F: Future<Output = ()> + Send + 'static,
    S: Future<Output = ()>,
{
    let mut open = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept.next() => {
                let conn = accepted?;
                let n = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                open.spawn(handle(conn, n));
            }
            Some(_) = open.join_next(), if !open.is_empty() => {}
        }
    }
    logln!(
        "stopped accepting; waiting for {} open connection(s)",
        open.len()
    );
    while open.join_next().await.is_some() {}
    Ok(())
}

/// Something that accepts connections of type `T`.
trait AsyncAccept<T> {
    fn next(&mut self) -> impl Future<Output = io::Result<T>> + '_;
}

impl AsyncAccept<TcpStream> for TcpListener {
    async fn next(&mut self) -> io::Result<TcpStream> {
        Ok(self.accept().await?.0)
    }
}

impl AsyncAccept<Conn> for ServerListener {
    async fn next(&mut self) -> io::Result<Conn> {
        self.accept().await
    }
}

/// The tunnel server: each smux connection arriving on `listener` (bound for
/// `opts.transport`: see [`ServerListener::bind`]) carries streams, each forwarded to a new
/// TCP connection to `target`.
pub async fn run_server(
    listener: impl Into<ServerListener>,
    target: String,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let target = Arc::new(target);
    let opts = Arc::new(opts);
    let live: Live = Arc::default();
    let to_drain = Arc::clone(&live);
    let drain_timeout = opts.drain_timeout;
    let shutdown = async move {
        shutdown.await;
        for (_, c) in to_drain.lock().unwrap().drain() {
            drain_then_close(c, drain_timeout);
        }
    };
    serve_until(listener.into(), shutdown, move |conn: Conn, n| {
        let target = Arc::clone(&target);
        let live = Arc::clone(&live);
        let opts = Arc::clone(&opts);
        async move {
            let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            logln!("smux connection {n} from {peer}");
            if let Err(e) = tune_socket(&conn, &opts) {
                logln!("smux connection {n}: socket options: {e}");
            }
            let (connector, mut acceptor, worker) =
                builder(false, &opts).with_connection(conn).build();
            live.lock().unwrap().insert(n, connector);
            let worker = tokio::spawn(worker);
            let mut streams = JoinSet::new();
            let half_close = !opts.transport.is_kcp();
            while let Some(stream) = acceptor.accept().await {
                streams.spawn(forward_to_target(
                    stream,
                    Arc::clone(&target),
                    n,
                    half_close,
                    opts.quiet,
                ));
            }
            while streams.join_next().await.is_some() {}
            live.lock().unwrap().remove(&n);
            let result = worker
                .await
                .map_err(io::Error::other)
                .and_then(|r| r.map_err(io::Error::other));
            logln!("smux connection {n} ended: {result:?}");
        }
    })
    .await
}

async fn forward_to_target(
    mut stream: MuxStream<Conn>,
    target: Arc<String>,
    conn: u64,
    half_close: bool,
    quiet: bool,
) {
    let id = stream.get_stream_id();
    match TcpStream::connect(target.as_str()).await {
        Ok(mut tcp) => {
            if !quiet {
                logln!("[{conn}/{id}] opened to {target}");
            }
            let result = relay(&mut stream, &mut tcp, half_close).await;
            if !quiet {
                logln!("[{conn}/{id}] {}", closed_line(&stream, result));
            }
        }
        // Dropping the stream finishes it: the client's connection sees EOF.
        Err(e) => logln!("[{conn}/{id}] target {target} refused: {e}"),
    }
}

/// The tunnel client: each TCP connection arriving on `listener` is carried as a stream over
/// one of `opts.conns` smux connections to `server`, in turn; each is made anew when it dies.
pub async fn run_client(
    listener: TcpListener,
    server: String,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let opts = Arc::new(opts);
    let sessions: Arc<Vec<Session>> = Arc::new(
        (0..opts.conns.max(1))
            .map(|_| Session {
                server: server.clone(),
                opts: Arc::clone(&opts),
                connector: Mutex::new(None),
            })
            .collect(),
    );
    let to_drain = Arc::clone(&sessions);
    let drain_timeout = opts.drain_timeout;
    let shutdown = async move {
        shutdown.await;
        for session in to_drain.iter() {
            if let Some((c, _)) = session.connector.lock().await.take() {
                drain_then_close(c, drain_timeout);
            }
        }
    };
    let mut turn = 0;
    let half_close = !opts.transport.is_kcp();
    let quiet = opts.quiet;
    serve_until(listener, shutdown, move |mut tcp: TcpStream, n| {
        let sessions = Arc::clone(&sessions);
        let which = turn;
        turn = (turn + 1) % sessions.len();
        async move {
            let session = &sessions[which];
            let mut stream = match session.open().await {
                Ok(s) => s,
                Err(e) => {
                    logln!("[{n}] no tunnel to {}: {e}", session.server);
                    return;
                }
            };
            let id = stream.get_stream_id();
            if !quiet {
                logln!("[{n}] opened as stream {id} of smux connection {which}");
            }
            let result = relay(&mut tcp, &mut stream, half_close).await;
            if !quiet {
                logln!("[{n}] {}", closed_line(&stream, result));
            }
        }
    })
    .await
}

/// The client's smux connection, made on first use and again after it dies or expires.
struct Session {
    server: String,
    opts: Arc<Options>,
    /// The connection and when it was made.
    connector: Mutex<Option<(MuxConnector<Conn>, Instant)>>,
}

impl Session {
    async fn open(&self) -> io::Result<MuxStream<Conn>> {
        let mut slot = self.connector.lock().await;
        if let Some((c, made)) = slot.take() {
            let expired = self
                .opts
                .auto_expire
                .is_some_and(|age| made.elapsed() >= age);
            if expired {
                logln!(
                    "smux connection to {} expired: a new one takes new streams",
                    self.server
                );
                drain_then_close(c, self.opts.scavenge_ttl);
            } else {
                match c.connect() {
                    Ok(s) => {
                        *slot = Some((c, made));
                        return Ok(s);
                    }
                    Err(e) => logln!(
                        "smux connection to {} is gone ({e}): reconnecting",
                        self.server
                    ),
                }
            }
        }
        let conn = self.opts.transport.dial(&self.server).await?;
        tune_socket(&conn, &self.opts)?;
        let (connector, acceptor, worker) = builder(true, &self.opts).with_connection(conn).build();
        // The server opens no streams.
        drop(acceptor);
        tokio::spawn(worker);
        let stream = connector.connect().map_err(io::Error::other)?;
        *slot = Some((connector, Instant::now()));
        Ok(stream)
    }
}
