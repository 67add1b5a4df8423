//! smux without an async runtime: two threads, each driving a `smux_proto::Session` over a
//! plain `std::net::TcpStream` on 127.0.0.1 with a hand-written event loop (non-blocking reads
//! and writes, `poll_timeout` for the keep-alive timer).
//!
//! Each side opens streams to the other and sends 2 MiB on each; each side reads and checks
//! what the peer's streams carry. 16 MiB move in all, then both sides close.
//!
//! ```text
//! cargo run --example blocking
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use smux_proto::{Config, Event, Role, Session, StreamError, StreamId, Version};

const STREAMS_PER_SIDE: usize = 4;
const BYTES_PER_STREAM: usize = 2 * 1024 * 1024;
/// Output pulled from the session but not yet written; past this we stop pulling.
const OUT_HIGH_WATER: usize = 256 * 1024;

/// The byte at `offset` of stream `id`, so the reader can check every byte.
fn pattern(id: StreamId, offset: usize) -> u8 {
    (offset as u32)
        .wrapping_mul(2_654_435_761)
        .wrapping_add(id.0) as u8
        ^ (offset >> 11) as u8
}

#[derive(Debug, Default)]
struct Summary {
    sent: usize,
    received: usize,
    streams_opened: usize,
    streams_accepted: usize,
    frames_out: usize,
}

/// One side's event loop. Returns when the session has ended and all output is written.
fn run(role: Role, mut sock: TcpStream, config: Config) -> io::Result<Summary> {
    sock.set_nonblocking(true)?;
    sock.set_nodelay(true)?;
    let mut session = Session::new(role, config, Instant::now()).expect("valid config");
    let mut summary = Summary::default();

    // Streams we write: id -> bytes sent so far.
    let mut sending: HashMap<StreamId, usize> = HashMap::new();
    for _ in 0..STREAMS_PER_SIDE {
        let id = session.open().expect("open a stream");
        sending.insert(id, 0);
        summary.streams_opened += 1;
    }
    // Streams the peer opened: id -> bytes received so far.
    let mut receiving: HashMap<StreamId, usize> = HashMap::new();
    let mut finished_receiving = 0;

    let mut out: VecDeque<Bytes> = VecDeque::new();
    let mut out_bytes = 0;
    let mut input = Bytes::new();
    let mut read_buf = vec![0u8; 64 * 1024];
    let mut chunk = vec![0u8; 64 * 1024];
    let mut closing = false;
    let mut eof = false;
    let mut ended_pass = false;

    loop {
        let now = Instant::now();
        let mut progress = false;

        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
        }

        // The application: write what the session takes.
        for (id, sent) in sending.iter_mut() {
            while *sent < BYTES_PER_STREAM {
                let n = chunk.len().min(BYTES_PER_STREAM - *sent);
                for (i, b) in chunk[..n].iter_mut().enumerate() {
                    *b = pattern(*id, *sent + i);
                }
                match session.write(*id, &chunk[..n]) {
                    Ok(k) => {
                        *sent += k;
                        summary.sent += k;
                        progress = true;
                        if *sent == BYTES_PER_STREAM {
                            session.shutdown(*id).expect("shutdown");
                        }
                    }
                    Err(StreamError::Blocked) => break,
                    Err(e) => panic!("write on {id}: {e}"),
                }
            }
        }

        // Events: new streams, readable data.
        while let Some(event) = session.poll_event() {
            progress = true;
            match event {
                Event::Opened(_) => {
                    while let Some(id) = session.accept() {
                        receiving.insert(id, 0);
                        summary.streams_accepted += 1;
                    }
                }
                Event::SessionEnded(reason) => println!("{role:?}: session ended: {reason}"),
                _ => {}
            }
        }
        for (id, got) in receiving.iter_mut() {
            loop {
                match session.read(*id, &mut read_buf) {
                    Ok(0) => {
                        assert_eq!(*got, BYTES_PER_STREAM, "stream {id} ended early");
                        session.close_stream(*id);
                        finished_receiving += 1;
                        *got = usize::MAX;
                        break;
                    }
                    Ok(n) => {
                        for (i, b) in read_buf[..n].iter().enumerate() {
                            assert_eq!(*b, pattern(*id, *got + i), "byte {} of {id}", *got + i);
                        }
                        *got += n;
                        summary.received += n;
                        progress = true;
                    }
                    Err(StreamError::Blocked) | Err(StreamError::UnknownStream(_)) => break,
                    Err(e) => panic!("read on {id}: {e}"),
                }
            }
        }

        // All sent and all received: close the session once.
        let all_sent = sending.values().all(|s| *s == BYTES_PER_STREAM);
        if !closing && all_sent && finished_receiving == STREAMS_PER_SIDE {
            session.close();
            closing = true;
        }

        // Transport input, while the session takes it.
        while !eof && session.wants_input() {
            if input.is_empty() {
                match sock.read(&mut read_buf) {
                    Ok(0) => {
                        eof = true;
                        session.handle_eof();
                        break;
                    }
                    Ok(n) => input = Bytes::copy_from_slice(&read_buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            session.handle_input(Instant::now(), &mut input);
            progress = true;
        }

        // Transport output: pull frames, write them vectored.
        while out_bytes < OUT_HIGH_WATER {
            let Some(t) = session.poll_transmit(Instant::now()) else {
                break;
            };
            summary.frames_out += 1;
            out_bytes += t.wire_len();
            out.push_back(Bytes::copy_from_slice(&t.header));
            if !t.payload.is_empty() {
                out.push_back(t.payload);
            }
        }
        while !out.is_empty() {
            let slices: Vec<IoSlice<'_>> = out.iter().take(64).map(|b| IoSlice::new(b)).collect();
            match sock.write_vectored(&slices) {
                Ok(mut n) => {
                    out_bytes -= n;
                    progress = true;
                    while n > 0 {
                        let front = out.front_mut().expect("wrote queued bytes");
                        if n >= front.len() {
                            n -= front.len();
                            out.pop_front();
                        } else {
                            let _ = front.split_to(n);
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }

        // The end: once output is written and what arrived before it has been read (the
        // reads above run once more after the session ended).
        if session.is_ended() && out.is_empty() {
            if ended_pass {
                let _ = sock.shutdown(Shutdown::Write);
                if finished_receiving < STREAMS_PER_SIDE {
                    let reason = session.end_reason().map(|r| r.to_string());
                    return Err(io::Error::other(format!("session ended early: {reason:?}")));
                }
                return Ok(summary);
            }
            ended_pass = true;
            continue;
        }
        if !progress {
            // Nothing to do: sleep until the next timer, at most a millisecond.
            let wait = session
                .poll_timeout()
                .map_or(Duration::from_millis(1), |t| {
                    t.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_millis(1));
            thread::sleep(wait);
        }
    }
}

fn main() -> io::Result<()> {
    let config = {
        let mut c = Config::default();
        c.with_version(Version::V2)
            .with_keep_alive_interval(Some(Duration::from_secs(1)))
            .with_keep_alive_timeout(Some(Duration::from_secs(5)));
        c
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let started = Instant::now();

    let server_config = config.clone();
    let server = thread::spawn(move || -> io::Result<Summary> {
        let (sock, _) = listener.accept()?;
        run(Role::Server, sock, server_config)
    });
    let client = run(Role::Client, TcpStream::connect(addr)?, config)?;
    let server = server.join().expect("server thread")?;
    let elapsed = started.elapsed();

    for (name, s) in [("client", &client), ("server", &server)] {
        println!(
            "{name}: opened {} streams, accepted {}, sent {} bytes, received {} bytes, {} frames out",
            s.streams_opened, s.streams_accepted, s.sent, s.received, s.frames_out
        );
    }
    let total = client.received + server.received;
    assert_eq!(total, 2 * STREAMS_PER_SIDE * BYTES_PER_STREAM);
    println!(
        "moved {} MiB in both directions over one TCP connection in {:.0?}, every byte checked",
        total / (1024 * 1024),
        elapsed
    );
    Ok(())
}
