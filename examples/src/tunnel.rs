//! A TCP port forwarder over smux connections, as kcptun, gost and v2ray use smux.
//!
//! The client listens for TCP connections and carries each as a stream over one of
//! `Options::conns` smux connections to the server, taking them in turn (as kcptun's `--conn`
//! does), so that a stall of one TCP connection holds up only its share of the streams. Each
//! smux connection is made on first use and made anew when it dies, on its own. The server
//! dials the target for each stream and copies both ways. Half-close passes through: when one
//! end shuts down its write side, the other end sees EOF while the reverse direction keeps
//! flowing. One log line per connection opened and closed, the closing one with the bytes
//! each way from the stream's statistics. When told to stop, both ends stop accepting and
//! drain their smux connections (open streams finish, new ones are refused) for at most the
//! drain timeout, then close them.

use std::collections::HashMap;
use std::time::Duration;

use std::future::Future;
use std::io;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use smux_tokio::{MuxBuilder, MuxConnector, MuxStream, Version};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// Settings of either end.
#[derive(Debug, Clone, Copy)]
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
    /// Linux's `TCP_NOTSENT_LOWAT` on the smux connections' sockets, in bytes: how much the
    /// kernel holds unsent before the socket stops taking writes. A small value keeps the
    /// kernel's queue from adding its megabytes of delay ahead of an interactive stream's
    /// frame; `None` leaves the system's default. Ignored elsewhere.
    pub notsent_lowat: Option<u32>,
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
        }
    }
}

/// Drains `connector` for at most `deadline`, then closes it (in a task of its own).
fn drain_then_close(connector: MuxConnector<TcpStream>, deadline: Duration) {
    tokio::spawn(async move {
        if tokio::time::timeout(deadline, connector.drain())
            .await
            .is_err()
        {
            eprintln!("drain timeout: closing with streams still open");
        }
        let _ = connector.close().await;
    });
}

/// The smux connections open now, by number, to drain when stopping.
type Live = Arc<std::sync::Mutex<HashMap<u64, MuxConnector<TcpStream>>>>;

/// The closing log line of a stream: bytes each way, from its statistics.
fn closed_line(stream: &MuxStream<TcpStream>, result: io::Result<(u64, u64)>) -> String {
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

/// Sets the socket options of a smux connection's socket.
fn tune_socket(tcp: &TcpStream, opts: &Options) -> io::Result<()> {
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
    b
}

/// Copies both ways until both directions are finished, passing each end's shutdown on to the
/// other. Returns the bytes moved each way.
async fn relay<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional(a, b).await
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Runs until `shutdown` completes, then stops accepting and waits for open connections.
async fn serve_until<F, S>(
    listener: TcpListener,
    shutdown: S,
    mut handle: impl FnMut(TcpStream, u64) -> F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
    S: Future<Output = ()>,
{
    let mut open = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, _) = accepted?;
                let n = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                open.spawn(handle(tcp, n));
            }
            Some(_) = open.join_next(), if !open.is_empty() => {}
        }
    }
    eprintln!(
        "stopped accepting; waiting for {} open connection(s)",
        open.len()
    );
    while open.join_next().await.is_some() {}
    Ok(())
}

/// The tunnel server: each smux connection arriving on `listener` carries streams, each
/// forwarded to a new TCP connection to `target`.
pub async fn run_server(
    listener: TcpListener,
    target: String,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let target = Arc::new(target);
    let live: Live = Arc::default();
    let to_drain = Arc::clone(&live);
    let shutdown = async move {
        shutdown.await;
        for (_, c) in to_drain.lock().unwrap().drain() {
            drain_then_close(c, opts.drain_timeout);
        }
    };
    serve_until(listener, shutdown, move |tcp, n| {
        let target = Arc::clone(&target);
        let live = Arc::clone(&live);
        async move {
            let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            eprintln!("smux connection {n} from {peer}");
            if let Err(e) = tune_socket(&tcp, &opts) {
                eprintln!("smux connection {n}: socket options: {e}");
            }
            let (connector, mut acceptor, worker) =
                builder(false, &opts).with_connection(tcp).build();
            live.lock().unwrap().insert(n, connector);
            let worker = tokio::spawn(worker);
            let mut streams = JoinSet::new();
            while let Some(stream) = acceptor.accept().await {
                streams.spawn(forward_to_target(stream, Arc::clone(&target), n));
            }
            while streams.join_next().await.is_some() {}
            live.lock().unwrap().remove(&n);
            let result = worker
                .await
                .map_err(io::Error::other)
                .and_then(|r| r.map_err(io::Error::other));
            eprintln!("smux connection {n} ended: {result:?}");
        }
    })
    .await
}

async fn forward_to_target(mut stream: MuxStream<TcpStream>, target: Arc<String>, conn: u64) {
    let id = stream.get_stream_id();
    match TcpStream::connect(target.as_str()).await {
        Ok(mut tcp) => {
            eprintln!("[{conn}/{id}] opened to {target}");
            let result = relay(&mut stream, &mut tcp).await;
            eprintln!("[{conn}/{id}] {}", closed_line(&stream, result));
        }
        // Dropping the stream finishes it: the client's connection sees EOF.
        Err(e) => eprintln!("[{conn}/{id}] target {target} refused: {e}"),
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
    let sessions: Arc<Vec<Session>> = Arc::new(
        (0..opts.conns.max(1))
            .map(|_| Session {
                server: server.clone(),
                opts,
                connector: Mutex::new(None),
            })
            .collect(),
    );
    let to_drain = Arc::clone(&sessions);
    let shutdown = async move {
        shutdown.await;
        for session in to_drain.iter() {
            if let Some(c) = session.connector.lock().await.take() {
                drain_then_close(c, opts.drain_timeout);
            }
        }
    };
    let mut turn = 0;
    serve_until(listener, shutdown, move |mut tcp, n| {
        let sessions = Arc::clone(&sessions);
        let which = turn;
        turn = (turn + 1) % sessions.len();
        async move {
            let session = &sessions[which];
            let mut stream = match session.open().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("[{n}] no tunnel to {}: {e}", session.server);
                    return;
                }
            };
            let id = stream.get_stream_id();
            eprintln!("[{n}] opened as stream {id} of smux connection {which}");
            let result = relay(&mut tcp, &mut stream).await;
            eprintln!("[{n}] {}", closed_line(&stream, result));
        }
    })
    .await
}

/// The client's smux connection, made on first use and again after it dies.
struct Session {
    server: String,
    opts: Options,
    connector: Mutex<Option<MuxConnector<TcpStream>>>,
}

impl Session {
    async fn open(&self) -> io::Result<MuxStream<TcpStream>> {
        let mut slot = self.connector.lock().await;
        if let Some(c) = slot.as_ref() {
            match c.connect() {
                Ok(s) => return Ok(s),
                Err(e) => eprintln!(
                    "smux connection to {} is gone ({e}): reconnecting",
                    self.server
                ),
            }
        }
        let tcp = TcpStream::connect(&self.server).await?;
        tune_socket(&tcp, &self.opts)?;
        let (connector, acceptor, worker) = builder(true, &self.opts).with_connection(tcp).build();
        // The server opens no streams.
        drop(acceptor);
        tokio::spawn(worker);
        let stream = connector.connect().map_err(io::Error::other)?;
        *slot = Some(connector);
        Ok(stream)
    }
}
