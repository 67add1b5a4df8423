//! Interoperability with the Go reference implementation, github.com/xtaci/smux 1.5.16 (the
//! release Debian packages), over TCP on 127.0.0.1: our client against a Go server and a Go
//! client against our server, in versions 1 and 2.
//!
//! The Go side is `interop/go-peer`, a small program that runs one scripted behaviour (echo,
//! open streams and verify their echo, the same with one goroutine writing every stream and
//! another reading, stay idle, send without reading, reply after our FIN, read a little and
//! close).
//! It is built once per run of this test binary into `target/go-peer` with `GOPROXY=off`.
//! Every test here is `#[ignore]`d because it needs the Go toolchain and the smux sources
//! (`apt-get install golang-go golang-github-xtaci-smux-dev`):
//!
//! ```sh
//! cargo test -p smux-tokio --test interop_go -- --ignored
//! ```
//!
//! Without `go` on the PATH the tests print a note and pass, unless `CI=true`, where they fail.
//!
//! Some tests put a frame-parsing TCP relay (the "tap") between the two sides. It counts
//! frames by command and version, records the largest PSH payload in each direction, and for
//! version 2 checks every sender against the windows its receiver advertised: a sender may
//! never have sent more on a stream than the largest `consumed + window` the relay has passed
//! it in a UPD (or Go's initial 262,144 before any). The relay's view of the receiver is never
//! behind the sender's, so a violation it reports is real.
//!
//! Each test body runs under a timeout, so a hang fails instead of blocking CI.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io::Write as _;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{ByteGen, Fnv, Rng};
use smux_tokio::{
    MuxAcceptor, MuxBuilder, MuxConnector, MuxError, MuxResult, MuxStream, ProtocolError, Version,
    WithConfig,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod common;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long we wait for one expected line or exit from the Go peer.
const PEER_WAIT: Duration = Duration::from_secs(45);
const MIB: usize = 1 << 20;
/// Go's flags for a fast keep-alive: a NOP every 500 ms, the session closed when a 2 s tick
/// finds that nothing arrived since the previous tick.
const GO_FAST_KEEPALIVE: [&str; 4] = ["-keepalive-interval", "500ms", "-keepalive-timeout", "2s"];

/// Runs a test body under [`TEST_TIMEOUT`].
/// An interop test: needs the Go peer, runs on a 4-thread runtime under `TEST_TIMEOUT`.
macro_rules! go_test {
    ($(#[$doc:meta])* $name:ident, $body:expr) => {
        $(#[$doc])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        #[ignore = "needs the Go peer"]
        async fn $name() {
            with_timeout(stringify!($name), $body).await;
        }
    };
}

async fn with_timeout<F: Future>(name: &str, body: F) -> F::Output {
    with_timeout_of(name, TEST_TIMEOUT, body).await
}

async fn with_timeout_of<F: Future>(name: &str, limit: Duration, body: F) -> F::Output {
    match tokio::time::timeout(limit, body).await {
        Ok(out) => out,
        Err(_) => panic!("{name}: timed out after {limit:?} (hang?)"),
    }
}

// ---------------------------------------------------------------------------------------------
// Pseudo-random numbers and content (the Go peer has the same generator)
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// The Go peer
// ---------------------------------------------------------------------------------------------

/// Builds `interop/go-peer` once per test binary. `None` (after a note on stderr) when `go` is
/// not installed and `CI` is not "true".
fn go_peer() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT.get_or_init(build_go_peer).as_deref()
}

fn build_go_peer() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = root.join("interop/go-peer");
    let out = root.join("target/go-peer");
    let built = std::process::Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .output();
    match built {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "the Go interop tests need `go` and the smux 1.5.16 sources \
                     (apt-get install golang-go golang-github-xtaci-smux-dev); CI=true, so \
                     this is a failure, not a skip"
                );
            }
            // Straight to stderr: libtest would hide an eprintln! of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "note: `go` not found: skipping the Go interop tests \
                 (apt-get install golang-go golang-github-xtaci-smux-dev)"
            );
            None
        }
        Err(e) => panic!("running `go build` in {}: {e}", src.display()),
        Ok(o) if !o.status.success() => panic!(
            "`go build` of the Go peer in {} failed ({}):\n{}{}",
            src.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => Some(out),
    }
}

/// A running Go peer. Its stdout lines arrive in order through `lines`; stdout and stderr
/// both go to `log` for failure messages. Killed when dropped.
struct GoPeer {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    args: String,
}

impl GoPeer {
    fn spawn(bin: &Path, args: &[String]) -> GoPeer {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out_log = Arc::clone(&log);
        tokio::spawn(async move {
            let mut rd = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = rd.next_line().await {
                out_log.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let err_log = Arc::clone(&log);
        tokio::spawn(async move {
            let mut rd = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = rd.next_line().await {
                err_log.lock().unwrap().push(format!("stderr: {line}"));
            }
        });
        GoPeer {
            child,
            lines,
            log,
            args: args.join(" "),
        }
    }

    fn output(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn has_printed(&self, prefix: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with(prefix))
    }

    /// The next stdout line starting with `prefix`; the lines before it are skipped.
    async fn line(&mut self, prefix: &str) -> String {
        let deadline = tokio::time::Instant::now() + PEER_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.starts_with(prefix) => return line,
                Ok(Some(_)) => {}
                Ok(None) => {
                    let status = self.child.wait().await;
                    panic!(
                        "Go peer ({}) ended ({status:?}) without printing {prefix:?}; its \
                         output:\n{}",
                        self.args,
                        self.output()
                    )
                }
                Err(_) => panic!(
                    "Go peer ({}) printed no {prefix:?} within {PEER_WAIT:?}; its output:\n{}",
                    self.args,
                    self.output()
                ),
            }
        }
    }

    async fn exit_status(&mut self) -> ExitStatus {
        match tokio::time::timeout(PEER_WAIT, self.child.wait()).await {
            Ok(status) => status.expect("waiting for the Go peer"),
            Err(_) => panic!(
                "Go peer ({}) still running after {PEER_WAIT:?}; its output:\n{}",
                self.args,
                self.output()
            ),
        }
    }

    /// Waits for the peer to exit and checks that it exited 0.
    async fn exits_ok(&mut self) {
        let status = self.exit_status().await;
        if !status.success() {
            // Let the readers collect the last lines.
            tokio::time::sleep(Duration::from_millis(100)).await;
            panic!(
                "Go peer ({}) exited with {status}; its output:\n{}",
                self.args,
                self.output()
            );
        }
    }
}

/// The Go peer's arguments: `-version` from ours (a later `-version` in `extra` overrides it:
/// Go's flag package keeps the last value), then `extra`.
fn go_args(mode: &str, addr: Option<&str>, version: Version, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "-mode".to_string(),
        mode.to_string(),
        "-version".to_string(),
        (version as u8).to_string(),
    ];
    if let Some(addr) = addr {
        args.push("-addr".to_string());
        args.push(addr.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

// ---------------------------------------------------------------------------------------------
// The tap: a frame-parsing relay
// ---------------------------------------------------------------------------------------------

/// Direction index: frames we send to Go.
const TO_GO: usize = 0;
/// Direction index: frames Go sends to us.
const TO_US: usize = 1;

/// Go's `initialPeerWindow`: what a version-2 sender may send before the first UPD.
const INITIAL_WINDOW: u64 = 262_144;

/// What the tap saw in one direction.
#[derive(Clone, Debug, Default)]
struct DirStats {
    /// Frames by command (SYN, FIN, PSH, NOP, UPD, anything else).
    frames: [u64; 6],
    versions: BTreeSet<u8>,
    psh_bytes: u64,
    max_psh: usize,
    /// Version 2: per stream, this direction's sender.
    flows: HashMap<u32, Flow>,
    /// The largest `sent - consumed` seen on any stream (consumed as last passed to the
    /// sender in a UPD).
    max_in_flight: u64,
    violations: Vec<String>,
    /// The windows advertised by the UPDs sent in this direction.
    windows: BTreeSet<u32>,
}

#[derive(Clone, Copy, Debug)]
struct Flow {
    sent: u64,
    consumed: u64,
    /// The most the sender may have sent: max over `consumed + window` of the UPDs passed to it.
    limit: u64,
}

impl Default for Flow {
    fn default() -> Self {
        Flow {
            sent: 0,
            consumed: 0,
            limit: INITIAL_WINDOW,
        }
    }
}

#[derive(Default)]
struct Tap {
    dirs: Mutex<[DirStats; 2]>,
}

impl Tap {
    /// Records one frame going in direction `dir`. Stream byte counts are kept in u64 and
    /// compared with the u32 `consumed` unwrapped: fine below 4 GiB per stream.
    fn record(&self, dir: usize, hdr: &[u8; 8], payload: &[u8]) {
        let mut dirs = self.dirs.lock().unwrap();
        let (version, cmd) = (hdr[0], hdr[1]);
        let sid = u32::from_le_bytes(hdr[4..8].try_into().unwrap());
        let d = &mut dirs[dir];
        d.frames[usize::from(cmd.min(5))] += 1;
        d.versions.insert(version);
        match cmd {
            2 if !payload.is_empty() => {
                d.psh_bytes += payload.len() as u64;
                d.max_psh = d.max_psh.max(payload.len());
                if version == 2 {
                    let f = d.flows.entry(sid).or_default();
                    f.sent += payload.len() as u64;
                    let (sent, consumed, limit) = (f.sent, f.consumed, f.limit);
                    d.max_in_flight = d.max_in_flight.max(sent - consumed.min(sent));
                    if sent > limit {
                        d.violations.push(format!(
                            "stream {sid}: {sent} bytes sent, but the receiver allowed at most \
                             {limit}"
                        ));
                    }
                }
            }
            4 if payload.len() == 8 => {
                let consumed = u64::from(u32::from_le_bytes(payload[..4].try_into().unwrap()));
                let window = u32::from_le_bytes(payload[4..].try_into().unwrap());
                d.windows.insert(window);
                let window = u64::from(window);
                // A UPD going this way governs the sender of the other direction.
                let f = dirs[1 - dir].flows.entry(sid).or_default();
                f.consumed = f.consumed.max(consumed);
                f.limit = f.limit.max(consumed + window);
            }
            _ => {}
        }
    }

    fn stats(&self) -> [DirStats; 2] {
        self.dirs.lock().unwrap().clone()
    }

    /// Panics if either direction sent beyond a window.
    fn assert_windows_respected(&self, what: &str) {
        let s = self.stats();
        for (dir, name) in [(TO_GO, "we (to Go)"), (TO_US, "Go (to us)")] {
            assert!(
                s[dir].violations.is_empty(),
                "{what}: {name} exceeded the receiver's window {} times; first: {}",
                s[dir].violations.len(),
                s[dir].violations[0]
            );
        }
    }
}

/// Relays frames from `from` to `to`, recording each in `tap` as direction `dir`; at end of
/// input, shuts `to` down.
async fn relay(from: OwnedReadHalf, to: OwnedWriteHalf, tap: Arc<Tap>, dir: usize) {
    let mut rd = BufReader::with_capacity(256 * 1024, from);
    let mut wr = BufWriter::with_capacity(256 * 1024, to);
    let mut payload = vec![0u8; 65_535];
    loop {
        let mut hdr = [0u8; 8];
        if rd.read_exact(&mut hdr).await.is_err() {
            break;
        }
        let len = usize::from(u16::from_le_bytes([hdr[2], hdr[3]]));
        if rd.read_exact(&mut payload[..len]).await.is_err() {
            break;
        }
        tap.record(dir, &hdr, &payload[..len]);
        if wr.write_all(&hdr).await.is_err() || wr.write_all(&payload[..len]).await.is_err() {
            break;
        }
        // Flush whenever the next read might wait.
        if rd.buffer().is_empty() && wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

/// Starts a tap that accepts one connection and relays it to `upstream`. Returns the address
/// to connect to. `accepted_is_ours`: whether the side that connects to the tap is ours.
async fn start_tap(upstream: String, accepted_is_ours: bool) -> (String, Arc<Tap>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let tap = Arc::new(Tap::default());
    let t = Arc::clone(&tap);
    tokio::spawn(async move {
        let (down, _) = listener.accept().await.unwrap();
        let up = TcpStream::connect(&upstream).await.unwrap();
        down.set_nodelay(true).unwrap();
        up.set_nodelay(true).unwrap();
        let (down_rd, down_wr) = down.into_split();
        let (up_rd, up_wr) = up.into_split();
        let (d2u, u2d) = if accepted_is_ours {
            (TO_GO, TO_US)
        } else {
            (TO_US, TO_GO)
        };
        tokio::spawn(relay(down_rd, up_wr, Arc::clone(&t), d2u));
        tokio::spawn(relay(up_rd, down_wr, t, u2d));
    });
    (addr, tap)
}

// ---------------------------------------------------------------------------------------------
// Our side
// ---------------------------------------------------------------------------------------------

/// Our session's settings.
#[derive(Clone, Copy, Debug)]
struct Opts {
    version: Version,
    /// Keep-alive interval and (optional) timeout, seconds.
    keep_alive: Option<(u64, Option<u64>)>,
    window: Option<u32>,
    max_frame: Option<usize>,
    /// Our server takes the client's version (`with_auto_version`).
    auto: bool,
    /// Version 2: our windows tune themselves (the default).
    tuning: bool,
    /// The stalled-stream timeout, seconds (default: off).
    stalled: Option<u64>,
}

impl Opts {
    fn new(version: Version) -> Self {
        Opts {
            version,
            keep_alive: None,
            window: None,
            max_frame: None,
            auto: false,
            tuning: true,
            stalled: None,
        }
    }

    fn stalled_stream_timeout(mut self, secs: u64) -> Self {
        self.stalled = Some(secs);
        self
    }

    /// Our windows stay at the configured one.
    fn fixed_window(mut self) -> Self {
        self.tuning = false;
        self
    }

    fn auto_version(mut self) -> Self {
        self.auto = true;
        self
    }

    fn keep_alive(mut self, interval: u64, timeout: Option<u64>) -> Self {
        self.keep_alive = Some((interval, timeout));
        self
    }

    fn window(mut self, bytes: u32) -> Self {
        self.window = Some(bytes);
        self
    }

    fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = Some(bytes);
        self
    }

    fn builder(&self, server: bool) -> MuxBuilder<WithConfig> {
        let mut b = if server {
            MuxBuilder::server()
        } else {
            MuxBuilder::client()
        };
        b.with_version(self.version);
        if self.auto {
            b.with_auto_version();
        }
        if let Some((interval, timeout)) = self.keep_alive {
            b.with_keep_alive_interval(NonZeroU64::new(interval).unwrap());
            if let Some(t) = timeout {
                b.with_keep_alive_timeout(NonZeroU64::new(t).unwrap());
            }
        }
        if let Some(w) = self.window {
            b.with_stream_window(w);
        }
        b.with_window_tuning(self.tuning);
        if let Some(f) = self.max_frame {
            b.with_max_frame_size(f);
        }
        if let Some(secs) = self.stalled {
            b.with_stalled_stream_timeout(NonZeroU64::new(secs).unwrap());
        }
        b
    }
}

/// Our end of a session, with its worker spawned.
struct Ours {
    connector: MuxConnector<TcpStream>,
    acceptor: Option<MuxAcceptor<TcpStream>>,
    worker: JoinHandle<MuxResult<()>>,
}

impl Ours {
    fn start(opts: &Opts, server: bool, io: TcpStream) -> Ours {
        io.set_nodelay(true).unwrap();
        let (connector, acceptor, worker) = opts.builder(server).with_connection(io).build();
        Ours {
            connector,
            acceptor: Some(acceptor),
            worker: tokio::spawn(worker),
        }
    }

    fn take_acceptor(&mut self) -> MuxAcceptor<TcpStream> {
        self.acceptor.take().expect("acceptor already taken")
    }

    /// The next stream Go opens, waiting at most [`PEER_WAIT`].
    async fn accept(&mut self) -> Option<MuxStream<TcpStream>> {
        let acceptor = self.acceptor.as_mut().expect("acceptor taken");
        tokio::time::timeout(PEER_WAIT, acceptor.accept())
            .await
            .expect("accept() waited too long")
    }

    /// The worker's result, waiting at most `within`.
    async fn worker_result(&mut self, within: Duration) -> MuxResult<()> {
        match tokio::time::timeout(within, &mut self.worker).await {
            Ok(r) => r.expect("our worker panicked"),
            Err(_) => panic!("our worker still running after {within:?}"),
        }
    }

    /// Closes in order and checks that the worker ends `Ok`.
    async fn close(self) {
        let Ours {
            connector,
            acceptor,
            worker,
        } = self;
        connector.close().await.expect("connector.close() failed");
        drop(acceptor);
        drop(connector);
        tokio::time::timeout(PEER_WAIT, worker)
            .await
            .expect("our worker still running after close()")
            .expect("our worker panicked")
            .expect("our worker ended with an error");
    }
}

/// Our client against a Go server started with `go_extra`; through a tap if `tapped`.
async fn ours_to_go(
    bin: &Path,
    opts: &Opts,
    go_extra: &[&str],
    tapped: bool,
) -> (Ours, GoPeer, Option<Arc<Tap>>) {
    let mut go = GoPeer::spawn(bin, &go_args("server", None, opts.version, go_extra));
    let line = go.line("LISTEN ").await;
    let go_addr = line["LISTEN ".len()..].trim().to_string();
    let (addr, tap) = if tapped {
        let (a, t) = start_tap(go_addr, true).await;
        (a, Some(t))
    } else {
        (go_addr, None)
    };
    let io = TcpStream::connect(&addr)
        .await
        .expect("connecting to the Go server");
    (Ours::start(opts, false, io), go, tap)
}

/// A Go client started with `go_extra` against our server; through a tap if `tapped`.
async fn go_to_ours(
    bin: &Path,
    opts: &Opts,
    go_extra: &[&str],
    tapped: bool,
) -> (Ours, GoPeer, Option<Arc<Tap>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours_addr = listener.local_addr().unwrap().to_string();
    let (addr, tap) = if tapped {
        let (a, t) = start_tap(ours_addr, false).await;
        (a, Some(t))
    } else {
        (ours_addr, None)
    };
    let go = GoPeer::spawn(bin, &go_args("client", Some(&addr), opts.version, go_extra));
    let (io, _) = tokio::time::timeout(PEER_WAIT, listener.accept())
        .await
        .unwrap_or_else(|_| panic!("the Go client did not connect; output:\n{}", go.output()))
        .unwrap();
    (Ours::start(opts, true, io), go, tap)
}

/// Echoes one stream: read, write back, until end of stream (which must be a clean `Ok(0)`),
/// then shut down. Returns the stream id and the bytes echoed.
async fn echo_stream(mut s: MuxStream<TcpStream>) -> Result<(u32, u64), String> {
    let id = s.get_stream_id();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let k = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("echo stream {id}: read failed after {n} bytes: {e}"))?;
        if k == 0 {
            break;
        }
        s.write_all(&buf[..k])
            .await
            .map_err(|e| format!("echo stream {id}: write failed after {n} bytes: {e}"))?;
        n += k as u64;
    }
    s.shutdown()
        .await
        .map_err(|e| format!("echo stream {id}: shutdown failed after {n} bytes: {e}"))?;
    Ok((id, n))
}

/// Echoes one stream the way a typical Tokio server does: `tokio::io::copy` over
/// `tokio::io::split` until end of stream, then shut down. Returns the stream id and the bytes
/// echoed.
async fn split_copy_echo(s: MuxStream<TcpStream>) -> Result<(u32, u64), String> {
    let id = s.get_stream_id();
    let (mut r, mut w) = tokio::io::split(s);
    let n = tokio::io::copy(&mut r, &mut w)
        .await
        .map_err(|e| format!("echo stream {id}: copy failed: {e}"))?;
    w.shutdown()
        .await
        .map_err(|e| format!("echo stream {id}: shutdown failed after {n} bytes: {e}"))?;
    Ok((id, n))
}

/// Accepts streams and echoes each in its own task with [`echo_stream`]; results arrive on the
/// channel.
fn spawn_echo_server(
    acceptor: MuxAcceptor<TcpStream>,
) -> mpsc::UnboundedReceiver<Result<(u32, u64), String>> {
    spawn_echo_server_with(acceptor, echo_stream)
}

/// Accepts streams and echoes each in its own task with `echo`; results arrive on the channel.
fn spawn_echo_server_with<F, Fut>(
    mut acceptor: MuxAcceptor<TcpStream>,
    echo: F,
) -> mpsc::UnboundedReceiver<Result<(u32, u64), String>>
where
    F: Fn(MuxStream<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(u32, u64), String>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(s) = acceptor.accept().await {
            let tx = tx.clone();
            let echoed = echo(s);
            tokio::spawn(async move {
                let _ = tx.send(echoed.await);
            });
        }
    });
    rx
}

/// Waits for `n` echo results and checks them; returns `(stream id, bytes echoed)` of each.
async fn echo_results(
    rx: &mut mpsc::UnboundedReceiver<Result<(u32, u64), String>>,
    n: usize,
    go: &GoPeer,
) -> Vec<(u32, u64)> {
    let mut done = Vec::with_capacity(n);
    for i in 0..n {
        match tokio::time::timeout(PEER_WAIT, rx.recv()).await {
            Ok(Some(Ok(r))) => done.push(r),
            Ok(Some(Err(e))) => panic!("{e}; Go output:\n{}", go.output()),
            Ok(None) => panic!(
                "our echo server ended after {i} of {n} streams; Go output:\n{}",
                go.output()
            ),
            Err(_) => panic!(
                "our echo server finished {i} of {n} streams within {PEER_WAIT:?}; Go \
                 output:\n{}",
                go.output()
            ),
        }
    }
    done
}

/// When the client side of an echo sends its FIN.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fin {
    /// As soon as everything is written, while the echo is still coming back.
    AfterWriting,
    /// Only once the whole echo has been read (needed with a Go 1.5.16 version-2 echo,
    /// which stops writing at the next full window once our FIN has arrived).
    AfterEcho,
}

/// One echo round trip on `stream`: writes `total` bytes of pattern `seed` in chunks of
/// 1..=`max_chunk` bytes while reading the echo, sends FIN as `fin` says, and checks the echo
/// byte for byte, by FNV-1a of both sides, and that it ends with `Ok(0)`. Returns the bytes
/// read back.
async fn echo_round_trip(
    stream: MuxStream<TcpStream>,
    seed: u64,
    total: usize,
    max_chunk: usize,
    fin: Fin,
) -> Result<usize, String> {
    let id = stream.get_stream_id();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (echoed_tx, echoed_rx) = oneshot::channel::<()>();

    let writer = async {
        let mut gen = ByteGen::new(seed);
        let mut rng = Rng::new(seed ^ 0xABCD);
        let mut hash = Fnv::new();
        let mut buf = vec![0u8; max_chunk];
        let mut sent = 0;
        while sent < total {
            let n = rng.range(1, max_chunk).min(total - sent);
            gen.fill(&mut buf[..n]);
            hash.update(&buf[..n]);
            wr.write_all(&buf[..n])
                .await
                .map_err(|e| format!("write failed after {sent} of {total} bytes: {e}"))?;
            sent += n;
        }
        if fin == Fin::AfterEcho {
            // An error on the reader's side drops the sender; shut down anyway.
            let _ = echoed_rx.await;
        }
        wr.shutdown()
            .await
            .map_err(|e| format!("shutdown failed: {e}"))?;
        Ok::<_, String>(hash.0)
    };

    let reader = async {
        let mut echoed_tx = Some(echoed_tx);
        let mut gen = ByteGen::new(seed);
        let mut hash = Fnv::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut want = vec![0u8; buf.len()];
        let mut got = 0;
        loop {
            let n = rd.read(&mut buf).await.map_err(|e| {
                format!("read failed after {got} of {total} bytes (want a clean end): {e}")
            })?;
            if n == 0 {
                break;
            }
            if got + n > total {
                return Err(format!("echo longer than sent: {} of {total}", got + n));
            }
            gen.fill(&mut want[..n]);
            if buf[..n] != want[..n] {
                let at = (0..n).find(|&i| buf[i] != want[i]).unwrap();
                return Err(format!(
                    "echo differs at byte {} of {total}: got {:#04x}, want {:#04x}",
                    got + at,
                    buf[at],
                    want[at]
                ));
            }
            hash.update(&buf[..n]);
            got += n;
            if got == total {
                if let Some(tx) = echoed_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        if got != total {
            return Err(format!("echo ended (Ok(0)) after {got} of {total} bytes"));
        }
        Ok(hash.0)
    };

    let (w, r) = tokio::join!(writer, reader);
    let tag = format!("stream {id} ({total} bytes, FIN {fin:?})");
    let sent_hash = w.map_err(|e| format!("{tag}: {e}"))?;
    let echo_hash = r.map_err(|e| format!("{tag}: {e}"))?;
    if sent_hash != echo_hash {
        return Err(format!(
            "{tag}: FNV-1a of the echo {echo_hash:#x} differs from what was sent {sent_hash:#x}"
        ));
    }
    Ok(total)
}

/// Runs one echo round trip per `(seed, size)` concurrently on streams of `ours`, each in its
/// own task; panics with the failures (and the Go peer's output). Returns the bytes echoed.
async fn run_round_trips(
    ours: &Ours,
    go: &GoPeer,
    plans: Vec<(u64, usize)>,
    max_chunk: usize,
    fin: Fin,
) -> usize {
    let tasks: Vec<_> = plans
        .into_iter()
        .map(|(seed, size)| {
            let stream = ours.connector.connect();
            tokio::spawn(async move {
                let stream = stream.map_err(|e| format!("connect failed: {e}"))?;
                echo_round_trip(stream, seed, size, max_chunk, fin).await
            })
        })
        .collect();
    let n = tasks.len();
    let mut failures = Vec::new();
    let mut total = 0;
    for t in tasks {
        match t.await.expect("round-trip task panicked") {
            Ok(bytes) => total += bytes,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} streams failed; first ones:\n{}\nGo output:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n"),
        go.output()
    );
    assert_eq!(
        ours.connector.get_num_streams(),
        0,
        "stream handles still counted after every stream ended"
    );
    total
}

/// Ends a session whose Go side lingers until the peer closes: we close in order, our worker
/// ends `Ok`, Go sees the end of the connection and exits 0.
async fn finish(ours: Ours, mut go: GoPeer) {
    ours.close().await;
    let line = go.line("SESSION CLOSED").await;
    assert_eq!(
        line, "SESSION CLOSED: EOF",
        "Go should see our orderly close as the end of the connection"
    );
    go.exits_ok().await;
}

/// `(seed, size)` for `n` streams of uniform sizes in 1..=`max`; the first is `max`, the
/// second 1 byte.
fn plans(n: usize, max: usize, seed: u64) -> Vec<(u64, usize)> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let size = match i {
                0 => max,
                1 => 1,
                _ => rng.range(1, max),
            };
            (rng.next_u64(), size)
        })
        .collect()
}

/// A Go 1.5.16 version-2 echo cannot take our FIN before its echo is done (see
/// [`Fin::AfterEcho`]); version 1 can.
fn fin_for(version: Version) -> Fin {
    match version {
        Version::V1 => Fin::AfterWriting,
        _ => Fin::AfterEcho,
    }
}

// ---------------------------------------------------------------------------------------------
// Echo on 100 concurrent streams, sizes up to 1 MiB
// ---------------------------------------------------------------------------------------------

/// Our client opens 100 streams to a Go echo server; each sends a uniform random 1..=1 MiB
/// (one exactly 1 MiB, one 1 byte) in chunks up to 64 KiB and checks the echo.
async fn echo_100_ours_to_go(version: Version) {
    let Some(bin) = go_peer() else { return };
    let started = Instant::now();
    let opts = Opts::new(version);
    let (ours, go, _) = ours_to_go(bin, &opts, &["-behavior", "echo"], false).await;
    let total = run_round_trips(
        &ours,
        &go,
        plans(100, MIB, 0x100 + version as u64),
        64 * 1024,
        fin_for(version),
    )
    .await;
    finish(ours, go).await;
    eprintln!(
        "echo 100 streams, ours -> Go, {version:?}: {total} bytes each way in {:?}",
        started.elapsed()
    );
}

go_test!(
    echo_100_streams_ours_to_go_v1,
    echo_100_ours_to_go(Version::V1)
);

go_test!(
    echo_100_streams_ours_to_go_v2,
    echo_100_ours_to_go(Version::V2)
);

/// A Go client opens `streams` streams to our echo server (`open`), stream i sending
/// `size` bytes (or, with `random`, 1..=size) and checking the echo; Go closes each stream
/// after its echo, so our echo reads to a clean end.
async fn go_open_to_ours(version: Version, streams: usize, size: usize, random: bool) {
    let Some(bin) = go_peer() else { return };
    let started = Instant::now();
    let opts = Opts::new(version);
    let (streams_s, size_s) = (streams.to_string(), size.to_string());
    let mut extra = vec![
        "-behavior",
        "open",
        "-streams",
        &streams_s,
        "-size",
        &size_s,
    ];
    if random {
        extra.push("-random");
    }
    let (mut ours, mut go, _) = go_to_ours(bin, &opts, &extra, false).await;
    let mut results = spawn_echo_server(ours.take_acceptor());
    let done = echo_results(&mut results, streams, &go).await;
    let bytes: u64 = done.iter().map(|&(_, n)| n).sum();
    assert!(
        done.iter().all(|&(id, _)| id % 2 == 1),
        "a stream the Go client opened has an even id"
    );
    go.line("OK").await;
    if !random {
        assert_eq!(bytes, (streams * size) as u64);
    }
    finish(ours, go).await;
    eprintln!(
        "Go client opens {streams} streams to our echo, {version:?}: {bytes} bytes each way \
         in {:?}",
        started.elapsed()
    );
}

go_test!(
    echo_100_streams_go_to_ours_v1,
    go_open_to_ours(Version::V1, 100, MIB, true)
);

go_test!(
    echo_100_streams_go_to_ours_v2,
    go_open_to_ours(Version::V2, 100, MIB, true)
);

/// A Go client speaking `version` opens 20 streams to our echo server, which was built with
/// `with_auto_version`: it speaks the client's version, learnt from its first frame.
async fn go_open_to_auto(version: Version) {
    let Some(bin) = go_peer() else { return };
    let opts = Opts::new(Version::V1).auto_version();
    let go_opts = Opts::new(version);
    let extra = ["-behavior", "open", "-streams", "20", "-size", "300000"];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let go = GoPeer::spawn(
        bin,
        &go_args("client", Some(&addr), go_opts.version, &extra),
    );
    let (io, _) = tokio::time::timeout(PEER_WAIT, listener.accept())
        .await
        .unwrap_or_else(|_| panic!("the Go client did not connect; output:\n{}", go.output()))
        .unwrap();
    let mut ours = Ours::start(&opts, true, io);
    let mut results = spawn_echo_server(ours.take_acceptor());
    let done = echo_results(&mut results, 20, &go).await;
    let bytes: u64 = done.iter().map(|&(_, n)| n).sum();
    assert_eq!(bytes, 20 * 300_000);
    assert_eq!(ours.connector.version(), Some(version));
    let mut go = go;
    go.line("OK").await;
    finish(ours, go).await;
}

go_test!(
    auto_version_server_go_client_v1,
    go_open_to_auto(Version::V1)
);

go_test!(
    auto_version_server_go_client_v2,
    go_open_to_auto(Version::V2)
);

// ---------------------------------------------------------------------------------------------
// 256 MiB on one stream, both directions at once
// ---------------------------------------------------------------------------------------------

const BULK: usize = 256 * MIB;

/// Our client writes 256 MiB (chunks up to 256 KiB) to a Go echo server on one stream while
/// reading the echo back; FNV-1a and byte-for-byte checks. Go's default window in version 2.
async fn bulk_ours_to_go(version: Version) {
    let Some(bin) = go_peer() else { return };
    let started = Instant::now();
    let (ours, go, _) = ours_to_go(bin, &Opts::new(version), &["-behavior", "echo"], false).await;
    run_round_trips(
        &ours,
        &go,
        vec![(0xB16, BULK)],
        256 * 1024,
        fin_for(version),
    )
    .await;
    finish(ours, go).await;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "256 MiB echo, ours -> Go, {version:?}: {secs:.2} s ({:.0} MiB/s each way)",
        256.0 / secs
    );
}

go_test!(bulk_256_mib_ours_to_go_v1, bulk_ours_to_go(Version::V1));

go_test!(bulk_256_mib_ours_to_go_v2, bulk_ours_to_go(Version::V2));

go_test!(
    /// A Go client sends 256 MiB on one stream to our echo server and checks the echo
    /// (`open -streams 1 -size 268435456`).
    bulk_256_mib_go_to_ours_v1,
    go_open_to_ours(Version::V1, 1, BULK, false));

go_test!(
    bulk_256_mib_go_to_ours_v2,
    go_open_to_ours(Version::V2, 1, BULK, false)
);

// ---------------------------------------------------------------------------------------------
// 1,000 streams in a burst, opened by either side
// ---------------------------------------------------------------------------------------------

/// Our client opens 1,000 streams at once to a Go echo server, each with 1..=1024 bytes, and
/// closes each after its echo.
async fn burst_ours_to_go(version: Version) {
    let Some(bin) = go_peer() else { return };
    let started = Instant::now();
    let (ours, go, _) = ours_to_go(bin, &Opts::new(version), &["-behavior", "echo"], false).await;
    // Small enough that a version 2 echo never waits for a window: FIN at once is fine.
    run_round_trips(
        &ours,
        &go,
        plans(1000, 1024, 0x1000 + version as u64),
        1024,
        Fin::AfterWriting,
    )
    .await;
    finish(ours, go).await;
    eprintln!(
        "burst of 1000 streams, ours -> Go, {version:?}: {:?}",
        started.elapsed()
    );
}

go_test!(
    burst_1000_streams_ours_to_go_v1,
    burst_ours_to_go(Version::V1)
);

go_test!(
    burst_1000_streams_ours_to_go_v2,
    burst_ours_to_go(Version::V2)
);

/// A Go server opens 1,000 streams at once to our client (`open` in server mode), each with
/// 1..=1024 bytes; our client accepts and echoes them. The ids are even (server-opened).
async fn burst_go_server_opens(version: Version) {
    let Some(bin) = go_peer() else { return };
    let started = Instant::now();
    let extra = [
        "-behavior",
        "open",
        "-streams",
        "1000",
        "-size",
        "1024",
        "-random",
    ];
    let (mut ours, mut go, _) = ours_to_go(bin, &Opts::new(version), &extra, false).await;
    let mut results = spawn_echo_server(ours.take_acceptor());
    let done = echo_results(&mut results, 1000, &go).await;
    go.line("OK").await;
    let mut ids: Vec<u32> = done.iter().map(|&(id, _)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "a stream id was accepted twice");
    assert!(
        ids.iter().all(|id| id % 2 == 0),
        "a stream the Go server opened has an odd id"
    );
    finish(ours, go).await;
    eprintln!(
        "burst of 1000 streams opened by the Go server, {version:?}: {:?}",
        started.elapsed()
    );
}

go_test!(
    burst_1000_streams_go_server_opens_v1,
    burst_go_server_opens(Version::V1)
);

go_test!(
    burst_1000_streams_go_server_opens_v2,
    burst_go_server_opens(Version::V2)
);

// ---------------------------------------------------------------------------------------------
// Half-close against a Go without half-close
// ---------------------------------------------------------------------------------------------

/// Reads `s` to its end and checks the bytes against pattern `seed`. Returns the bytes read
/// and how the stream ended.
async fn read_pattern_to_end(
    s: &mut MuxStream<TcpStream>,
    seed: u64,
) -> (usize, std::io::Result<()>) {
    let mut gen = ByteGen::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; buf.len()];
    let mut got = 0;
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => {
                gen.fill(&mut want[..n]);
                assert!(
                    buf[..n] == want[..n],
                    "stream {}: bytes {got}..{} differ from the pattern",
                    s.get_stream_id(),
                    got + n
                );
                got += n;
            }
            Err(e) => return (got, Err(e)),
        }
    }
}

/// We send a request and FIN; the Go server (`reply`) reads to its end, then writes 1 MiB and
/// closes. Go 1.5.16 lets a stream's owner write after the peer's FIN; what arrives, and our
/// read ends with `Ok(0)` at Go's FIN.
async fn go_writes_after_our_fin(version: Version) -> (usize, String) {
    let bin = go_peer().expect("checked by the caller");
    let extra = ["-behavior", "reply", "-size", "1048576"];
    let (ours, mut go, _) = ours_to_go(bin, &Opts::new(version), &extra, false).await;
    let mut s = ours.connector.connect().unwrap();
    s.write_all(b"request").await.unwrap();
    s.shutdown().await.expect("shutdown (FIN) failed");
    let (got, end) = read_pattern_to_end(&mut s, 0).await;
    let replied = go.line("REPLIED").await;
    assert!(
        end.is_ok(),
        "{version:?}: our read after our FIN ended with {end:?} after {got} bytes, want a \
         clean end (Ok(0)); Go: {replied}"
    );
    assert!(
        replied.contains("read 7 (EOF)"),
        "{version:?}: Go should read our 7 bytes, then EOF: {replied}"
    );
    drop(s);
    finish(ours, go).await;
    (got, replied)
}

/// Version 1: Go writes the whole reply after our FIN and we read all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn half_close_go_writes_after_our_fin_v1() {
    if go_peer().is_none() {
        return;
    }
    with_timeout("half_close_go_writes_after_our_fin_v1", async {
        let (got, replied) = go_writes_after_our_fin(Version::V1).await;
        assert_eq!(got, MIB, "Go: {replied}");
        assert!(replied.ends_with("wrote 1048576 (<nil>)"), "{replied}");
    })
    .await;
}

/// Version 2: a Go 1.5.16 writer that must wait for window space gives up with `io.EOF` once
/// the peer's FIN has arrived (`writeV2` selects on the FIN event). So after our FIN Go gets
/// out what fits in the window it knows (262,144 bytes before our first UPD), sometimes more
/// when a UPD wins the race, and then closes: we read a correct prefix and a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn half_close_go_writes_after_our_fin_v2() {
    if go_peer().is_none() {
        return;
    }
    with_timeout("half_close_go_writes_after_our_fin_v2", async {
        let (got, replied) = go_writes_after_our_fin(Version::V2).await;
        eprintln!("v2 reply after our FIN: we read {got} bytes; Go: {replied}");
        assert!(
            (INITIAL_WINDOW as usize..=MIB).contains(&got),
            "read {got} bytes; Go: {replied}"
        );
        if got < MIB {
            assert!(replied.ends_with("(EOF)"), "{replied}");
        }
    })
    .await;
}

/// Why our version-2 echo clients wait for the echo before their FIN ([`Fin::AfterEcho`]):
/// we write 300 KiB and FIN to a Go echo, then read only after a second. Go's echo fills our
/// 256 KiB window, must wait for a UPD, finds our FIN has arrived, and its `Write` fails with
/// `io.EOF`; it closes the stream. We read exactly our window's worth, then a clean end: the
/// echo is cut short without any error on our side. (Version 1 echoes all of it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn half_close_go_v2_echo_stops_at_our_window_after_our_fin() {
    let Some(bin) = go_peer() else { return };
    with_timeout(
        "half_close_go_v2_echo_stops_at_our_window_after_our_fin",
        async {
            for version in [Version::V1, Version::V2] {
                let extra = ["-behavior", "echo", "-verbose"];
                let (ours, mut go, _) = ours_to_go(bin, &Opts::new(version), &extra, false).await;
                let mut s = ours.connector.connect().unwrap();
                let sent = 300 * 1024;
                let mut data = vec![0u8; sent];
                ByteGen::new(0).fill(&mut data);
                s.write_all(&data).await.unwrap();
                s.shutdown().await.expect("shutdown (FIN) failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (got, end) = read_pattern_to_end(&mut s, 0).await;
                let echoed = go.line("ECHOED").await;
                end.unwrap_or_else(|e| panic!("{version:?}: read after {got} bytes: {e}"));
                let want = match version {
                    Version::V1 => sent,
                    _ => INITIAL_WINDOW as usize,
                };
                assert_eq!(got, want, "{version:?}: Go: {echoed}");
                eprintln!("{version:?}: 300 KiB + FIN, read after 1 s: {got} bytes; Go: {echoed}");
                drop(s);
                finish(ours, go).await;
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// A Go stream closed mid-transfer
// ---------------------------------------------------------------------------------------------

/// What the Go server (`read-close`) reads of each stream before it closes it.
const READ_BEFORE_CLOSE: usize = 64 * 1024;

/// Version 2: the Go server (`read-close`) accepts our stream, reads 64 KiB and closes it while
/// we are still writing. Go 1.5.16 forgets a closed stream, and its receive loop drops a PSH
/// for a stream it does not know without a window update, so the window Go last advertised
/// never reopens. Without a stalled-stream timeout our writer would wait for it for good (not
/// tested: that is forever). With one (1 s here) the stream is reset once its writer has waited
/// that long: the write fails with `ConnectionReset` naming the timeout, so do reads, and the
/// session goes on. (The tap checks that we never sent beyond Go's window meanwhile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn v2_go_closes_mid_transfer_our_writer_is_reset_after_the_stalled_stream_timeout() {
    let Some(bin) = go_peer() else { return };
    with_timeout(
        "v2_go_closes_mid_transfer_our_writer_is_reset_after_the_stalled_stream_timeout",
        async {
            let timeout = Duration::from_secs(1);
            let opts = Opts::new(Version::V2).stalled_stream_timeout(timeout.as_secs());
            let size = READ_BEFORE_CLOSE.to_string();
            let extra = ["-behavior", "read-close", "-size", size.as_str()];
            let (ours, mut go, tap) = ours_to_go(bin, &opts, &extra, true).await;
            let tap = tap.expect("tapped");
            let mut s = ours.connector.connect().unwrap();
            // Write the pattern until a write fails; the test's timeout is the hang guard.
            let mut gen = ByteGen::new(0);
            let mut buf = vec![0u8; 32 * 1024];
            let mut written = 0usize;
            let start = Instant::now();
            let err = loop {
                gen.fill(&mut buf);
                match s.write_all(&buf).await {
                    Ok(()) => written += buf.len(),
                    Err(e) => break e,
                }
            };
            let waited = start.elapsed();
            let closed = go.line("READ-CLOSED").await;
            assert_eq!(
                closed,
                format!(
                    "READ-CLOSED {} read {READ_BEFORE_CLOSE} (<nil>)",
                    s.get_stream_id()
                ),
                "Go reads its 64 KiB, then closes"
            );
            assert!(
                written > READ_BEFORE_CLOSE,
                "Go closed mid-transfer: we wrote {written} bytes before the error"
            );
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
            assert!(err.to_string().contains("stalled-stream timeout"), "{err}");
            // The reset needs the writer to have waited the timeout; well before the test's own
            // timeout (a loose bound: it only says "not a hang").
            assert!(
                waited >= timeout && waited < timeout * 15,
                "the write failed after {waited:?}"
            );
            let stats = s.stats();
            assert!(
                stats.window_wait >= timeout,
                "writes waited {:?} for Go's window",
                stats.window_wait
            );
            let mut one = [0u8; 1];
            let read = s.read(&mut one).await;
            assert!(
                matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
                "a read of the reset stream: {read:?}"
            );
            assert_eq!(ours.connector.stats().streams_reset, 1);
            eprintln!(
                "wrote {written} bytes, reset after {waited:?} (window wait {:?}); Go: {closed}",
                stats.window_wait
            );
            drop(s);
            // The session goes on: a stream that writes just what Go reads ends cleanly.
            let mut s = ours.connector.connect().unwrap();
            let mut data = vec![0u8; READ_BEFORE_CLOSE];
            ByteGen::new(0).fill(&mut data);
            s.write_all(&data).await.unwrap();
            let (got, end) = read_pattern_to_end(&mut s, 0).await;
            assert_eq!((got, end.is_ok()), (0, true), "{end:?}");
            let closed = go.line("READ-CLOSED").await;
            assert!(closed.ends_with("(<nil>)"), "{closed}");
            drop(s);
            tap.assert_windows_respected("read-close");
            finish(ours, go).await;
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Keep-alive
// ---------------------------------------------------------------------------------------------

/// Idle for 5 s, longer than Go's 2 s keep-alive timeout, with our keep-alive on (a NOP every
/// second; Go's timeout must exceed our interval): the session survives and a stream still
/// echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn keepalive_on_survives_go_server_v1() {
    let Some(bin) = go_peer() else { return };
    with_timeout("keepalive_on_survives_go_server_v1", async {
        let opts = Opts::new(Version::V1).keep_alive(1, None);
        let mut extra = vec!["-behavior", "echo"];
        extra.extend(GO_FAST_KEEPALIVE);
        let (ours, go, tap) = ours_to_go(bin, &opts, &extra, true).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !go.has_printed("SESSION CLOSED") && !ours.worker.is_finished(),
            "the session died while idle with keep-alive on; Go output:\n{}",
            go.output()
        );
        run_round_trips(&ours, &go, plans(1, 4096, 0x4A), 4096, Fin::AfterWriting).await;
        let s = tap.unwrap().stats();
        eprintln!(
            "keep-alive on, 5 s idle: NOPs ours -> Go {}, Go -> ours {}",
            s[TO_GO].frames[3], s[TO_US].frames[3]
        );
        assert!(s[TO_GO].frames[3] >= 3, "we sent too few NOPs in 5 s");
        finish(ours, go).await;
    })
    .await;
}

/// The same with a Go client that echoes the streams our server opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn keepalive_on_survives_go_client_v2() {
    let Some(bin) = go_peer() else { return };
    with_timeout("keepalive_on_survives_go_client_v2", async {
        let opts = Opts::new(Version::V2).keep_alive(1, None);
        let mut extra = vec!["-behavior", "echo"];
        extra.extend(GO_FAST_KEEPALIVE);
        let (ours, go, _) = go_to_ours(bin, &opts, &extra, false).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            !go.has_printed("SESSION CLOSED") && !ours.worker.is_finished(),
            "the session died while idle with keep-alive on; Go output:\n{}",
            go.output()
        );
        run_round_trips(&ours, &go, plans(1, 4096, 0x4B), 4096, Fin::AfterWriting).await;
        finish(ours, go).await;
    })
    .await;
}

/// What our side shows when the Go peer closes the connection over keep-alive: the worker
/// ends `Ok` (the peer closed the transport), a read on an open stream fails with
/// `UnexpectedEof`, `connect()` fails with `ConnectionClosed` and `accept()` ends. Returns how
/// long the session lasted.
async fn observe_go_keepalive_close(
    mut ours: Ours,
    mut stream: MuxStream<TcpStream>,
    go: &mut GoPeer,
) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PEER_WAIT, stream.read(&mut buf))
        .await
        .expect("a read on an open stream did not fail when Go dropped the session");
    let lasted = started.elapsed();
    let err = read.expect_err("a read on an open stream succeeded after Go dropped the session");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::UnexpectedEof,
        "read error: {err}"
    );
    let result = ours.worker_result(Duration::from_secs(5)).await;
    assert!(
        result.is_ok(),
        "worker: {result:?} (a peer that closes the transport is an orderly end)"
    );
    assert!(matches!(
        ours.connector.connect(),
        Err(MuxError::ConnectionClosed)
    ));
    assert!(ours.acceptor.as_mut().unwrap().accept().await.is_none());
    let line = go.line("SESSION CLOSED").await;
    assert_eq!(line, "SESSION CLOSED: io: read/write on closed pipe");
    go.exits_ok().await;
    eprintln!("Go dropped the session after {lasted:?}; our read error: {err}");
    lasted
}

/// Our keep-alive off, a Go server with a 2 s timeout: Go closes the connection at its second
/// 2 s tick (our SYN counted for the first), about 4 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn keepalive_off_go_server_drops_us_v1() {
    let Some(bin) = go_peer() else { return };
    with_timeout("keepalive_off_go_server_drops_us_v1", async {
        let mut extra = vec!["-behavior", "echo"];
        extra.extend(GO_FAST_KEEPALIVE);
        let (ours, mut go, _) = ours_to_go(bin, &Opts::new(Version::V1), &extra, false).await;
        let stream = ours.connector.connect().unwrap();
        let lasted = observe_go_keepalive_close(ours, stream, &mut go).await;
        assert!(
            lasted >= Duration::from_millis(1500) && lasted <= Duration::from_millis(5500),
            "Go's 2 s keep-alive timeout closed the session after {lasted:?}"
        );
    })
    .await;
}

/// Our keep-alive off, a Go client (`idle`: one stream, nothing sent) with a 2 s timeout:
/// nothing ever arrives from us, so Go closes at its first 2 s tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn keepalive_off_go_client_drops_us_v2() {
    let Some(bin) = go_peer() else { return };
    with_timeout("keepalive_off_go_client_drops_us_v2", async {
        let mut extra = vec!["-behavior", "idle"];
        extra.extend(GO_FAST_KEEPALIVE);
        let (mut ours, mut go, _) = go_to_ours(bin, &Opts::new(Version::V2), &extra, false).await;
        let stream = ours.accept().await.expect("the idle stream");
        let lasted = observe_go_keepalive_close(ours, stream, &mut go).await;
        assert!(
            lasted >= Duration::from_millis(1000) && lasted <= Duration::from_millis(5500),
            "Go's 2 s keep-alive timeout closed the session after {lasted:?}"
        );
    })
    .await;
}

/// Go with keep-alive disabled sends nothing; ours (NOP every second, 2 s timeout) ends the
/// session with `KeepAliveTimeout`, and Go sees the end of the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn keepalive_ours_drops_silent_go_v1() {
    let Some(bin) = go_peer() else { return };
    with_timeout("keepalive_ours_drops_silent_go_v1", async {
        let opts = Opts::new(Version::V1).keep_alive(1, Some(2));
        let extra = ["-behavior", "echo", "-keepalive-disabled"];
        let (mut ours, mut go, _) = ours_to_go(bin, &opts, &extra, false).await;
        let started = Instant::now();
        let result = ours.worker_result(Duration::from_secs(10)).await;
        let lasted = started.elapsed();
        assert!(
            matches!(result, Err(MuxError::KeepAliveTimeout)),
            "worker: {result:?}"
        );
        assert!(
            lasted >= Duration::from_millis(1500) && lasted <= Duration::from_millis(3500),
            "our 2 s keep-alive timeout fired after {lasted:?}"
        );
        assert!(matches!(
            ours.connector.connect(),
            Err(MuxError::ConnectionClosed)
        ));
        assert_eq!(go.line("SESSION CLOSED").await, "SESSION CLOSED: EOF");
        go.exits_ok().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Version 2 windows
// ---------------------------------------------------------------------------------------------

/// Bulk transfer to a Go echo server with Go's default 64 KiB window, through the tap: we
/// never send beyond what Go allowed, and Go never beyond our 256 KiB (fixed: tuning off).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn v2_our_sender_respects_go_default_window() {
    let Some(bin) = go_peer() else { return };
    with_timeout("v2_our_sender_respects_go_default_window", async {
        let started = Instant::now();
        let (ours, go, tap) = ours_to_go(
            bin,
            &Opts::new(Version::V2).fixed_window(),
            &["-behavior", "echo"],
            true,
        )
        .await;
        let tap = tap.unwrap();
        let plans = vec![(1, 32 * MIB), (2, 8 * MIB), (3, 8 * MIB), (4, 8 * MIB)];
        run_round_trips(&ours, &go, plans, 256 * 1024, Fin::AfterEcho).await;
        finish(ours, go).await;
        tap.assert_windows_respected("Go default window");
        let s = tap.stats();
        assert_eq!(s[TO_US].windows, BTreeSet::from([65_536]), "Go's window");
        assert_our_windows(&s[TO_GO].windows, 262_144);
        eprintln!(
            "v2, Go's 64 KiB window, 56 MiB each way on 4 streams in {:?}: most in flight \
             ours -> Go {} (UPDs from Go: {}), Go -> ours {} (UPDs from us: {})",
            started.elapsed(),
            s[TO_GO].max_in_flight,
            s[TO_US].frames[4],
            s[TO_US].max_in_flight,
            s[TO_GO].frames[4]
        );
    })
    .await;
}

/// A Go client sends 1 MiB on a stream we leave unread for 2 s: Go stops at its initial
/// window of 262,144 bytes (we sent no UPD yet) and our session does not end with a
/// protocol error. Then we read all of it, and a clean end at Go's FIN.
async fn go_sender_honours_our_window(window: Option<u32>) {
    let Some(bin) = go_peer() else { return };
    // The window as configured: this checks what Go does with it, not how it tunes.
    let mut opts = Opts::new(Version::V2).fixed_window();
    if let Some(w) = window {
        opts = opts.window(w);
    }
    let extra = ["-behavior", "send", "-size", "1048576"];
    let (mut ours, mut go, tap) = go_to_ours(bin, &opts, &extra, true).await;
    let tap = tap.unwrap();
    let mut s = ours.accept().await.expect("Go's stream");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !ours.worker.is_finished(),
        "our session ended while Go's data sat unread: {:?}",
        ours.worker_result(Duration::from_secs(1)).await
    );
    let before = tap.stats()[TO_US].psh_bytes;
    assert_eq!(
        before, INITIAL_WINDOW,
        "Go sent {before} bytes before any UPD from us"
    );
    let (got, end) = read_pattern_to_end(&mut s, 0).await;
    end.unwrap_or_else(|e| panic!("read after {got} bytes: {e}; Go:\n{}", go.output()));
    assert_eq!(got, MIB);
    go.line("SENT 1048576").await;
    drop(s);
    finish(ours, go).await;
    tap.assert_windows_respected("our window");
    let s = tap.stats();
    let expected = window.unwrap_or(262_144);
    assert_our_windows(&s[TO_GO].windows, expected);
    eprintln!(
        "v2, our window {expected}: Go sent {before} bytes before reading began; most in \
         flight afterwards {}",
        s[TO_US].max_in_flight
    );
}

/// The windows our UPDs carried. An UPD's window is what the peer may still send past the
/// `consumed` it carries (our edge never moves left), so it varies with what was read by the
/// time the UPD went out; the largest is our configured window.
fn assert_our_windows(windows: &BTreeSet<u32>, configured: u32) {
    assert_eq!(
        windows.last(),
        Some(&configured),
        "our largest window; all: {windows:?}"
    );
}

go_test!(
    v2_go_sender_honours_our_default_window,
    go_sender_honours_our_window(None)
);

go_test!(
    /// Our window 64 KiB, below Go's initial assumption of 256 KiB: the 256 KiB Go sends before
    /// our first UPD are accepted.
    v2_go_sender_honours_our_64_kib_window,
    go_sender_honours_our_window(Some(65_536)));

go_test!(
    /// Window tuning against Go: a Go client sends 64 MiB on one stream and we read as it
    /// comes. Our window grows past the 256 KiB it starts at, Go sends into the grown window
    /// (more than 256 KiB in flight), and never past what we advertised.
    v2_go_sender_reaches_our_tuned_window,
    go_sender_reaches_our_tuned_window()
);

async fn go_sender_reaches_our_tuned_window() {
    let Some(bin) = go_peer() else { return };
    let opts = Opts::new(Version::V2);
    let size = 64 * MIB;
    let size_arg = size.to_string();
    let extra = ["-behavior", "send", "-size", size_arg.as_str()];
    let (mut ours, mut go, tap) = go_to_ours(bin, &opts, &extra, true).await;
    let tap = tap.unwrap();
    let mut s = ours.accept().await.expect("Go's stream");
    let (got, end) = read_pattern_to_end(&mut s, 0).await;
    end.unwrap_or_else(|e| panic!("read after {got} bytes: {e}; Go:\n{}", go.output()));
    assert_eq!(got, size);
    go.line(&format!("SENT {size}")).await;
    let tuned = s.stats().receive_window.expect("version 2");
    drop(s);
    finish(ours, go).await;
    tap.assert_windows_respected("tuned windows");
    let stats = tap.stats();
    let largest = *stats[TO_GO].windows.last().expect("UPDs went out");
    assert!(
        largest > 262_144 && tuned > 262_144,
        "our window did not grow: largest UPD window {largest}, stream window {tuned}"
    );
    assert!(
        stats[TO_US].max_in_flight > 262_144,
        "Go kept within the starting window: at most {} in flight",
        stats[TO_US].max_in_flight
    );
    eprintln!(
        "v2, tuned: our window grew to {tuned}, the largest UPD window {largest}, Go had up to \
         {} in flight",
        stats[TO_US].max_in_flight
    );
}

/// 1 MiB windows on both sides (`-max-stream-buffer 1048576`, `with_stream_window(1 << 20)`):
/// 64 MiB echoed on one stream, windows respected both ways (ours fixed: tuning off).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn v2_1_mib_windows_bulk() {
    let Some(bin) = go_peer() else { return };
    with_timeout("v2_1_mib_windows_bulk", async {
        let started = Instant::now();
        let opts = Opts::new(Version::V2).window(1 << 20).fixed_window();
        let extra = ["-behavior", "echo", "-max-stream-buffer", "1048576"];
        let (ours, go, tap) = ours_to_go(bin, &opts, &extra, true).await;
        let tap = tap.unwrap();
        run_round_trips(&ours, &go, vec![(5, 64 * MIB)], 256 * 1024, Fin::AfterEcho).await;
        finish(ours, go).await;
        tap.assert_windows_respected("1 MiB windows");
        let s = tap.stats();
        assert_eq!(s[TO_US].windows, BTreeSet::from([1 << 20]), "Go's window");
        assert_our_windows(&s[TO_GO].windows, 1 << 20);
        eprintln!(
            "v2, 1 MiB windows, 64 MiB each way in {:?}: most in flight ours -> Go {}, Go -> \
             ours {}",
            started.elapsed(),
            s[TO_GO].max_in_flight,
            s[TO_US].max_in_flight
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 100 streams of 256 KiB from a Go client, to our `tokio::io::copy` echo: hangs
// ---------------------------------------------------------------------------------------------

/// Runs of each case per test (a run that works takes about 0.3 s here).
const HANG_RUNS: usize = 30;
/// A test stops after this many hung runs.
const MAX_HANGS: usize = 3;
/// A run that has not finished after this long counts as a hang. A run that works takes well
/// under a second; this stays below Go's 30 s keep-alive timeout, which would otherwise end a
/// stuck session (our keep-alive is off) and turn the hang into an error.
const HANG_AFTER: Duration = Duration::from_secs(20);

/// How the Go client drives its streams.
#[derive(Clone, Copy, Debug)]
enum GoClient {
    /// `split-echo`: one goroutine writes all of each stream in turn, stream 0 first, while
    /// another reads the echoes in the same order and closes each stream after its echo.
    OneWriter,
    /// `open`: every stream has its own goroutine writing and another reading the echo; the
    /// stream is closed after its echo.
    PerStream,
}

impl GoClient {
    fn behavior(self) -> &'static str {
        match self {
            GoClient::OneWriter => "split-echo",
            GoClient::PerStream => "open",
        }
    }

    fn args(self, streams: usize, size: usize) -> Vec<String> {
        ["-behavior", self.behavior()]
            .into_iter()
            .map(String::from)
            .chain([
                "-streams".into(),
                streams.to_string(),
                "-size".into(),
                size.to_string(),
            ])
            .collect()
    }
}

/// One run: a Go client (`client`) opens `streams` streams of `size` bytes to our server,
/// which echoes each with [`split_copy_echo`]. `Ok(elapsed)` when every echo is verified on
/// both sides within [`HANG_AFTER`]; `Err(what was done)` when the run hung. Failures other
/// than a hang panic.
async fn ours_echo_once(
    bin: &Path,
    opts: &Opts,
    client: GoClient,
    streams: usize,
    size: usize,
) -> Result<Duration, String> {
    let started = Instant::now();
    let args = client.args(streams, size);
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut ours, mut go, _) = go_to_ours(bin, opts, &extra, false).await;
    let mut results = spawn_echo_server_with(ours.take_acceptor(), split_copy_echo);
    let mut done = Vec::with_capacity(streams);
    let run = tokio::time::timeout(HANG_AFTER, async {
        while done.len() < streams {
            match results.recv().await {
                Some(Ok(r)) => done.push(r),
                Some(Err(e)) => panic!("{e}; Go output:\n{}", go.output()),
                None => panic!(
                    "our echo server ended after {} of {streams} streams; Go output:\n{}",
                    done.len(),
                    go.output()
                ),
            }
        }
        go.line("OK").await;
    })
    .await;
    if run.is_err() {
        let hung = format!(
            "{} of {streams} echoes ended (Go closed the stream) within {HANG_AFTER:?}",
            done.len()
        );
        // Killing Go ends the connection, so our worker and the echo tasks end too.
        let _ = go.child.kill().await;
        if tokio::time::timeout(Duration::from_secs(5), &mut ours.worker)
            .await
            .is_err()
        {
            ours.worker.abort();
        }
        return Err(hung);
    }
    assert!(
        done.iter().all(|&(id, n)| id % 2 == 1 && n == size as u64),
        "an echo has an even id or the wrong length: {done:?}"
    );
    finish(ours, go).await;
    Ok(started.elapsed())
}

/// The same run with a Go echo server (`echo`) in place of ours: what the reference does.
async fn go_echo_once(
    bin: &Path,
    client: GoClient,
    streams: usize,
    size: usize,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut server = GoPeer::spawn(
        bin,
        &go_args("server", None, Version::V2, &["-behavior", "echo"]),
    );
    let line = server.line("LISTEN ").await;
    let addr = line["LISTEN ".len()..].trim().to_string();
    let args = client.args(streams, size);
    let extra: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut go = GoPeer::spawn(bin, &go_args("client", Some(&addr), Version::V2, &extra));
    let run = tokio::time::timeout(HANG_AFTER, go.line("OK")).await;
    // Both linger until the connection ends; dropping them kills them.
    match run {
        Ok(_) => Ok(started.elapsed()),
        Err(_) => Err(format!("no OK from the Go client within {HANG_AFTER:?}")),
    }
}

/// Runs `once` [`HANG_RUNS`] times, or until [`MAX_HANGS`] runs have hung; returns a line
/// naming the runs that hung, if any did.
async fn count_hangs<F, Fut>(what: &str, mut once: F) -> Option<String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Duration, String>>,
{
    let mut hung = Vec::new();
    let mut times = Vec::new();
    let mut runs = 0;
    while runs < HANG_RUNS && hung.len() < MAX_HANGS {
        runs += 1;
        let run = runs;
        match once().await {
            Ok(t) => times.push(t),
            Err(e) => {
                eprintln!("{what}: run {run} hung: {e}");
                hung.push(run);
            }
        }
    }
    let summary = format!(
        "{what}: {} of {runs} runs hung (runs {hung:?}: no end within {HANG_AFTER:?})",
        hung.len()
    );
    eprintln!("{summary}; the others took {times:?}");
    (!hung.is_empty()).then_some(summary)
}

/// Runs [`ours_echo_once`] [`HANG_RUNS`] times, each with its own Go process and session of
/// ours.
async fn ours_echo_hangs(opts: Opts, client: GoClient, streams: usize, size: usize) {
    let Some(bin) = go_peer() else { return };
    let what = format!(
        "Go client ({client:?}), {streams} streams x {size} bytes, our tokio::io::copy echo \
         server, {opts:?}"
    );
    if let Some(hung) =
        count_hangs(&what, || ours_echo_once(bin, &opts, client, streams, size)).await
    {
        panic!("{hung}");
    }
}

/// The time limit of a test of up to [`HANG_RUNS`] runs, [`MAX_HANGS`] of which may hang.
const HANG_TEST_TIMEOUT: Duration =
    Duration::from_secs(HANG_AFTER.as_secs() * MAX_HANGS as u64 + 2 * TEST_TIMEOUT.as_secs());

/// Reported hang, as reported: a Go client (version 2, Go defaults) opens 100 streams; one
/// goroutine writes 256 KiB on each stream in turn (Go's initial window of 262,144 lets every
/// write through without a UPD) while another reads the echoes in the same order and closes
/// each stream after its echo; our server, with our defaults, echoes each stream with
/// `tokio::io::copy` over `tokio::io::split`, then shuts it down. [`HANG_RUNS`] runs; the
/// test fails if any does not finish within [`HANG_AFTER`].
///
/// Only with `SMUX_GO_REFERENCE=1`, because Go itself hangs here, against our server and
/// against its own echo server alike (measured, 2 cores: about one run in 25 against either
/// before our fix; 4 in 94 against ours after it). Diagnosed at every hang after the fix: our
/// session reads (nothing unread in our socket) and has written all it could; Go's receive
/// loop is parked on its full 4 MiB budget (`recvLoop` waiting for `bucket`), which holds the
/// echoes of streams its reader reaches only later, while the reader waits for stream j,
/// whose echo is behind them in the TCP queues. Only Go's application can free that budget,
/// and it reads stream j alone. Before our fix, the same client also met the reported
/// mechanism on our side: see the per-stream test, which runs on every CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn v2_go_split_echo_client_100_streams_ours_echo_server() {
    if !go_reference_runs() {
        return;
    }
    with_timeout_of(
        "v2_go_split_echo_client_100_streams_ours_echo_server",
        HANG_TEST_TIMEOUT,
        ours_echo_hangs(Opts::new(Version::V2), GoClient::OneWriter, 100, 256 * 1024),
    )
    .await;
}

/// Whether the runs that Go's own receive loop can hang are wanted (`SMUX_GO_REFERENCE=1`).
fn go_reference_runs() -> bool {
    let on = std::env::var("SMUX_GO_REFERENCE").as_deref() == Ok("1");
    if !on {
        let _ = writeln!(
            std::io::stderr(),
            "note: set SMUX_GO_REFERENCE=1 to run the cases that Go's own receive loop can hang"
        );
    }
    on
}

/// The same in version 1 (no windows: only the 4 MiB session budgets on both sides). Only
/// with `SMUX_GO_REFERENCE=1`: Go's receive loop can park the same way (none of 60 runs did).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn v1_go_split_echo_client_100_streams_ours_echo_server() {
    if !go_reference_runs() {
        return;
    }
    with_timeout_of(
        "v1_go_split_echo_client_100_streams_ours_echo_server",
        HANG_TEST_TIMEOUT,
        ours_echo_hangs(Opts::new(Version::V1), GoClient::OneWriter, 100, 256 * 1024),
    )
    .await;
}

/// The other reading of the report: every stream has its own writing and reading goroutine
/// (`open`), 100 streams of 256 KiB, against the same echo. The reported mechanism in its
/// plain form: Go reads every stream at once, so our echoes soon wait for Go's UPDs (Go's
/// window is 64 KiB); what they leave unread fills our session's 4 MiB, we stop reading the
/// transport, and the UPDs sit behind the data. Before our fix about one run in five hung
/// here (3 of 14, 3 of 19, 5 of 20), against a Go echo server too; after it, none of 90. Go
/// reads every stream at once here, so its own budget cannot park it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn v2_go_per_stream_client_100_streams_ours_echo_server() {
    with_timeout_of(
        "v2_go_per_stream_client_100_streams_ours_echo_server",
        HANG_TEST_TIMEOUT,
        ours_echo_hangs(Opts::new(Version::V2), GoClient::PerStream, 100, 256 * 1024),
    )
    .await;
}

/// Reference, only with `SMUX_GO_REFERENCE=1`: both clients above against a Go 1.5.16 echo
/// server, [`HANG_RUNS`] runs each. Go hangs as well: its echo server or client stops reading the
/// connection when its 4 MiB receive budget is full (`recvLoop` waiting for `bucket`) while
/// what it waits for is behind the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn v2_go_clients_100_streams_go_echo_server_reference() {
    let Some(bin) = go_peer() else { return };
    if !go_reference_runs() {
        return;
    }
    with_timeout_of(
        "v2_go_clients_100_streams_go_echo_server_reference",
        HANG_TEST_TIMEOUT * 2,
        async {
            let mut hung = Vec::new();
            for client in [GoClient::OneWriter, GoClient::PerStream] {
                let what = format!("Go client ({client:?}), 100 x 256 KiB, Go echo server");
                hung.extend(
                    count_hangs(&what, || go_echo_once(bin, client, 100, 256 * 1024)).await,
                );
            }
            assert!(hung.is_empty(), "{}", hung.join("\n"));
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Frame sizes
// ---------------------------------------------------------------------------------------------

/// A Go client sending 65,535-byte frames (`open`, 8 MiB) to our echo server sending 4,096.
async fn frames_go_65535_ours_4096(version: Version) {
    let Some(bin) = go_peer() else { return };
    let opts = Opts::new(version).max_frame(4096);
    let extra = [
        "-behavior",
        "open",
        "-size",
        "8388608",
        "-max-frame",
        "65535",
    ];
    let (mut ours, mut go, tap) = go_to_ours(bin, &opts, &extra, true).await;
    let tap = tap.unwrap();
    let mut results = spawn_echo_server(ours.take_acceptor());
    let done = echo_results(&mut results, 1, &go).await;
    assert_eq!(done[0].1, 8 * MIB as u64);
    go.line("OK").await;
    finish(ours, go).await;
    let s = tap.stats();
    assert_eq!(s[TO_US].max_psh, 65_535, "Go's largest frame");
    assert_eq!(s[TO_GO].max_psh, 4096, "our largest frame");
    tap.assert_windows_respected("frame sizes");
}

go_test!(
    frames_go_65535_ours_4096_v1,
    frames_go_65535_ours_4096(Version::V1)
);

go_test!(
    frames_go_65535_ours_4096_v2,
    frames_go_65535_ours_4096(Version::V2)
);

/// Our client sending 65,535-byte frames (8 MiB in writes up to 1 MiB) to a Go echo server
/// sending 4,096.
async fn frames_ours_65535_go_4096(version: Version) {
    let Some(bin) = go_peer() else { return };
    let opts = Opts::new(version).max_frame(65_535);
    let extra = ["-behavior", "echo", "-max-frame", "4096"];
    let (ours, go, tap) = ours_to_go(bin, &opts, &extra, true).await;
    let tap = tap.unwrap();
    run_round_trips(&ours, &go, vec![(6, 8 * MIB)], MIB, fin_for(version)).await;
    finish(ours, go).await;
    let s = tap.stats();
    assert_eq!(s[TO_GO].max_psh, 65_535, "our largest frame");
    assert_eq!(s[TO_US].max_psh, 4096, "Go's largest frame");
    tap.assert_windows_respected("frame sizes");
}

go_test!(
    frames_ours_65535_go_4096_v1,
    frames_ours_65535_go_4096(Version::V1)
);

go_test!(
    frames_ours_65535_go_4096_v2,
    frames_ours_65535_go_4096(Version::V2)
);

// ---------------------------------------------------------------------------------------------
// Version mismatch
// ---------------------------------------------------------------------------------------------

/// A Go client of version `theirs` opens a stream to our server of version `ours`: our
/// worker ends with `VersionMismatch` naming both at the first frame, `accept()` ends, and Go
/// sees the connection end.
async fn mismatch_go_client_opens(ours_v: Version, theirs: u8) {
    let Some(bin) = go_peer() else { return };
    let theirs_s = theirs.to_string();
    let extra = ["-behavior", "idle", "-version", &theirs_s];
    let (mut ours, mut go, _) = go_to_ours(bin, &Opts::new(ours_v), &extra, false).await;
    let result = ours.worker_result(Duration::from_secs(10)).await;
    let err = result.expect_err("our worker accepted a frame of the wrong version");
    assert!(
        matches!(
            err,
            MuxError::Protocol(ProtocolError::VersionMismatch { ours, theirs: t })
                if ours == ours_v as u8 && t == theirs
        ),
        "worker: {err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("version {theirs}"))
            && msg.contains(&format!("version {}", ours_v as u8)),
        "the message should name both versions: {msg}"
    );
    assert!(ours.accept().await.is_none());
    let line = go.line("SESSION CLOSED").await;
    go.exits_ok().await;
    eprintln!(
        "our v{} server, Go v{theirs} client: {msg}; Go: {line}",
        ours_v as u8
    );
}

go_test!(
    version_mismatch_go_v2_client_ours_v1_server,
    mismatch_go_client_opens(Version::V1, 2)
);

go_test!(
    version_mismatch_go_v1_client_ours_v2_server,
    mismatch_go_client_opens(Version::V2, 1)
);

/// Our v1 client opens a stream (a SYN, no data) to a Go v2 server. Go 1.5.16 stops reading
/// at our SYN (`ErrInvalidProtocol`) without sending a frame; its `AcceptStream` fails, and
/// a typical server (the peer here) closes the session. We see the transport end: the worker
/// ends `Ok`, and the stream read fails with `UnexpectedEof`. We never learn about the
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn version_mismatch_ours_v1_client_go_v2_server_syn() {
    let Some(bin) = go_peer() else { return };
    with_timeout("version_mismatch_ours_v1_client_go_v2_server_syn", async {
        let extra = ["-behavior", "echo", "-version", "2"];
        let (mut ours, mut go, tap) = ours_to_go(bin, &Opts::new(Version::V1), &extra, true).await;
        let mut s = ours.connector.connect().unwrap();
        let line = go.line("SESSION CLOSED").await;
        assert_eq!(line, "SESSION CLOSED: invalid protocol");
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(PEER_WAIT, s.read(&mut buf))
            .await
            .expect("read did not end");
        let result = ours.worker_result(Duration::from_secs(5)).await;
        let frames_from_go = tap.unwrap().stats()[TO_US].frames;
        eprintln!(
            "our v1 client, Go v2 server, our SYN first: Go: {line}; our read: {read:?}; \
             our worker: {result:?}; frames from Go: {frames_from_go:?}"
        );
        assert_eq!(frames_from_go, [0; 6], "Go sent a frame");
        assert_eq!(
            read.expect_err("read succeeded").kind(),
            std::io::ErrorKind::UnexpectedEof
        );
        assert!(result.is_ok(), "worker: {result:?}");
        go.exits_ok().await;
    })
    .await;
}

/// Our v1 client sends nothing to a Go v2 server with a 500 ms keep-alive: Go's first NOP
/// (version 2) ends our session with `VersionMismatch { ours: 1, theirs: 2 }`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the Go peer"]
async fn version_mismatch_ours_v1_client_go_v2_server_nop() {
    let Some(bin) = go_peer() else { return };
    with_timeout("version_mismatch_ours_v1_client_go_v2_server_nop", async {
        let mut extra = vec!["-behavior", "echo", "-version", "2"];
        extra.extend(GO_FAST_KEEPALIVE);
        let (mut ours, mut go, _) = ours_to_go(bin, &Opts::new(Version::V1), &extra, false).await;
        let started = Instant::now();
        let result = ours.worker_result(Duration::from_secs(5)).await;
        let lasted = started.elapsed();
        assert!(
            matches!(
                result,
                Err(MuxError::Protocol(ProtocolError::VersionMismatch {
                    ours: 1,
                    theirs: 2
                }))
            ),
            "worker: {result:?}"
        );
        assert!(lasted < Duration::from_millis(1500), "after {lasted:?}");
        let line = go.line("SESSION CLOSED").await;
        go.exits_ok().await;
        eprintln!(
            "our v1 client, Go v2 server, silent: {} after {lasted:?}; Go: {line}",
            result.unwrap_err()
        );
    })
    .await;
}
