//! Malformed frames from a raw peer over TCP. Each one ends the session with the typed error
//! naming what the peer did (`MuxError::Protocol` from the worker and from `close()`), and
//! every operation pending on every handle completes with an error at once: a read waiting
//! for data, a write blocked on flow control, an accept; `connect()` fails afterwards, data
//! already received stays readable, and the peer sees the connection end.
//!
//! What is not an error, and is dropped without a reply instead (PSH, FIN and UPD for unknown
//! streams, a duplicate SYN, NOP on a stream id, an empty PSH, PSH after FIN), is checked last:
//! the session goes on, and only a SYN of our own parity gets an answer, a FIN.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smux_proto::{Cmd, StreamId};
use smux_tokio::{MuxBuilder, MuxError, ProtocolError, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::timeout;

#[path = "common/raw_peer.rs"]
mod raw_peer;

use raw_peer::{frame, header, upd, FrameReader, Probe, FIN, NOP, PSH, SYN, UPD};
use smux_test_support::tokio::{tcp_pair, tcp_pair_with_buffers};

/// How long everything may take once the bad frame is sent.
const LIMIT: Duration = Duration::from_secs(5);
/// What a version-2 sender may send before it hears the peer's window.
const INITIAL_WINDOW: usize = 262_144;
/// The session's output queue limit (the default `max_session_queued`).
/// What one stream may hold of the session's output queue (an eighth of 2 MiB).
const STREAM_QUEUED: usize = 256 * 1024;

/// Peer-opened streams: 3 has a read waiting, 5 is accepted and never read.
const WAITING: u32 = 3;
const UNREAD: u32 = 5;

/// Sets up a server session of `version` with, on it: a read pending on stream 3, stream 5
/// accepted and not read, a writer on a stream we opened blocked on flow control (in version
/// 2 the peer's initial window, which the peer never opens; in version 1 the output queue,
/// as the peer stops reading), and an accept pending. Then `prelude` (frames that are fine) and
/// `bad` go out; the session must end with `expect`, and everything above complete with an
/// error within [`LIMIT`]. The prelude may send stream 5 bytes of 0x33: they stay readable.
async fn malformed(version: Version, prelude: Vec<u8>, bad: Vec<u8>, expect: ProtocolError) {
    let unread_bytes = count_psh(&prelude, UNREAD);
    let ver = version as u8;
    let (theirs, ours) = tcp_pair_with_buffers(Some(16 * 1024)).await;
    let (connector, mut acceptor, worker) = MuxBuilder::server()
        .with_version(version)
        .with_connection(ours)
        .build();
    let worker = tokio::spawn(worker);
    let (rd, mut wr) = theirs.into_split();
    let mut open = frame(ver, SYN, WAITING, b"");
    open.extend(frame(ver, SYN, UNREAD, b""));
    wr.write_all(&open).await.unwrap();
    let mut waiting = acceptor.accept().await.unwrap();
    let mut unread = acceptor.accept().await.unwrap();
    assert_eq!(
        (waiting.get_stream_id(), unread.get_stream_id()),
        (WAITING, UNREAD)
    );
    let reader = tokio::spawn(async move { waiting.read(&mut [0u8; 64]).await });
    let accept = tokio::spawn(async move { acceptor.accept().await.is_none() });

    let parked = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let changed = Arc::new(Notify::new());
    let mut w = Probe {
        inner: connector.connect().unwrap(),
        parked: Arc::clone(&parked),
        accepted: Arc::clone(&accepted),
        changed: Arc::clone(&changed),
    };
    let ours_id = w.inner.get_stream_id();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 64 * 1024];
        loop {
            if let Err(e) = w.write_all(&chunk).await {
                return e;
            }
        }
    });
    // In version 2 the peer reads everything; in version 1 it reads nothing.
    let drain = (version == Version::V2).then(|| {
        let changed = Arc::clone(&changed);
        tokio::spawn(async move {
            let mut frames = FrameReader::new(rd);
            let mut got = 0;
            // The end, or a reset if our input was not all read when we closed.
            while let Ok(Some((h, p))) = frames.next().await {
                assert!(h.cmd == SYN || (h.cmd == PSH && h.id == ours_id), "{h:?}");
                got += p.len();
                changed.notify_waiters();
            }
            got
        })
    });
    let blocked_at = match version {
        Version::V2 => INITIAL_WINDOW,
        _ => STREAM_QUEUED,
    };
    timeout(LIMIT, async {
        loop {
            let notified = changed.notified();
            if parked.load(Ordering::SeqCst) && accepted.load(Ordering::SeqCst) >= blocked_at {
                break;
            }
            notified.await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the writer never blocked: parked {} accepted {}",
            parked.load(Ordering::SeqCst),
            accepted.load(Ordering::SeqCst)
        )
    });
    if version == Version::V2 {
        assert_eq!(accepted.load(Ordering::SeqCst), INITIAL_WINDOW);
    }

    wr.write_all(&prelude).await.unwrap();
    // We close as soon as the header is read: the rest of a long frame may meet a reset.
    let _ = wr.write_all(&bad).await;
    let sent = Instant::now();
    timeout(LIMIT, async {
        let result = worker.await.unwrap();
        match result {
            Err(MuxError::Protocol(e)) => assert_eq!(e, expect),
            other => panic!("expected {expect:?}, the worker ended with {other:?}"),
        }
        let e = reader.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let e = writer.await.unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(accept.await.unwrap(), "accept did not end");
        let done = sent.elapsed();
        assert!(matches!(
            connector.connect(),
            Err(MuxError::ConnectionClosed)
        ));
        match connector.close().await {
            Err(MuxError::Protocol(e)) => assert_eq!(e, expect),
            other => panic!("close() after {expect:?}: {other:?}"),
        }
        // Data received before the error is still there, then the error.
        let mut got = Vec::new();
        let e = unread.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(got.len(), unread_bytes);
        assert!(got.iter().all(|b| *b == 0x33));
        if let Some(drain) = drain {
            drain.await.unwrap();
        }
        eprintln!("{expect}: everything completed {done:?} after the frame");
    })
    .await
    .expect("something still pending after the protocol error");
    drop(wr);
}

/// Payload bytes the PSH frames in `wire` carry for stream `id`.
fn count_psh(mut wire: &[u8], id: u32) -> usize {
    let mut n = 0;
    while wire.len() >= 8 {
        let len = u16::from_le_bytes([wire[2], wire[3]]) as usize;
        if wire[1] == PSH && u32::from_le_bytes([wire[4], wire[5], wire[6], wire[7]]) == id {
            n += len;
        }
        wire = &wire[8 + len..];
    }
    n
}

#[tokio::test]
async fn wrong_version() {
    let bad = frame(1, NOP, 0, b"");
    let expect = ProtocolError::VersionMismatch { ours: 2, theirs: 1 };
    malformed(Version::V2, vec![], bad, expect).await;
}

#[tokio::test]
async fn unknown_command() {
    for cmd in [5, 0x80, 0xff] {
        let bad = frame(2, cmd, WAITING, b"");
        malformed(
            Version::V2,
            vec![],
            bad,
            ProtocolError::UnknownCommand { cmd },
        )
        .await;
    }
}

#[tokio::test]
async fn syn_fin_and_nop_with_a_payload() {
    for (cmd, raw, id) in [
        (Cmd::Syn, SYN, 9),
        (Cmd::Fin, FIN, WAITING),
        (Cmd::Nop, NOP, 0),
    ] {
        let bad = frame(2, raw, id, b"xyz");
        let expect = ProtocolError::UnexpectedPayload { cmd, len: 3 };
        malformed(Version::V2, vec![], bad, expect).await;
    }
}

#[tokio::test]
async fn upd_of_the_wrong_length() {
    for len in [0u16, 7, 9, 65_535] {
        let mut bad = header(2, UPD, len, WAITING).to_vec();
        bad.resize(8 + len as usize, 0);
        malformed(
            Version::V2,
            vec![],
            bad,
            ProtocolError::BadUpdLength { len },
        )
        .await;
    }
}

#[tokio::test]
async fn upd_in_version_1() {
    let mut bad = upd(WAITING, 0, 65_536);
    bad[0] = 1;
    let expect = ProtocolError::UpdInVersion1 {
        stream_id: StreamId(WAITING),
    };
    malformed(Version::V1, vec![], bad, expect).await;
}

#[tokio::test]
async fn syn_for_stream_zero() {
    let bad = frame(2, SYN, 0, b"");
    malformed(Version::V2, vec![], bad, ProtocolError::SynForStreamZero).await;
}

/// A version-2 peer that sends more than the window on a stream nobody reads: the initial
/// window it may assume (262,144) is accepted and stays readable; one byte more ends the
/// session.
#[tokio::test]
async fn more_than_the_window() {
    let mut prelude = Vec::new();
    let mut left = INITIAL_WINDOW;
    while left > 0 {
        let n = left.min(65_535);
        prelude.extend(frame(2, PSH, UNREAD, &vec![0x33; n]));
        left -= n;
    }
    let bad = frame(2, PSH, UNREAD, &[0x33]);
    let expect = ProtocolError::WindowExceeded {
        stream_id: StreamId(UNREAD),
        unread: INITIAL_WINDOW + 1,
        allowed: INITIAL_WINDOW,
    };
    malformed(Version::V2, prelude, bad, expect).await;
}

/// Frames the protocol tolerates are dropped without a reply, and the session goes on: PSH,
/// FIN and UPD for streams that do not exist, a duplicate SYN (the stream keeps its data), NOP
/// on a stream id, an empty PSH, PSH after the peer's FIN. A SYN of our own parity is refused
/// with a FIN, the only reply. The echo on stream 3 then shows everything was read in order.
#[tokio::test]
async fn tolerated_frames_are_dropped_without_a_reply() {
    timeout(LIMIT, async {
        let (theirs, ours) = tcp_pair().await;
        let (connector, mut acceptor, worker) = MuxBuilder::server()
            .with_version(Version::V2)
            .with_connection(ours)
            .build();
        let worker = tokio::spawn(worker);
        let (rd, mut wr) = theirs.into_split();
        let mut frames = FrameReader::new(rd);
        let mut w = Vec::new();
        w.extend(frame(2, SYN, 3, b""));
        w.extend(frame(2, PSH, 3, b"one "));
        w.extend(frame(2, SYN, 3, b"")); // duplicate
        w.extend(frame(2, PSH, 3, b"two "));
        w.extend(frame(2, SYN, 5, b""));
        w.extend(frame(2, FIN, 5, b""));
        w.extend(frame(2, PSH, 5, b"after fin"));
        w.extend(frame(2, PSH, 99, b"nobody"));
        w.extend(frame(2, FIN, 99, b""));
        w.extend(upd(99, 1, 65_536));
        w.extend(frame(2, NOP, 3, b""));
        w.extend(frame(2, PSH, 3, b""));
        w.extend(frame(2, SYN, 4, b"")); // our parity
        w.extend(frame(2, PSH, 3, b"three"));
        wr.write_all(&w).await.unwrap();
        let mut s = acceptor.accept().await.unwrap();
        let mut fin5 = acceptor.accept().await.unwrap();
        assert_eq!((s.get_stream_id(), fin5.get_stream_id()), (3, 5));
        let mut got = [0u8; 13];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two three");
        let mut rest = Vec::new();
        fin5.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "data after FIN was delivered");
        s.write_all(b"ok").await.unwrap();
        let (h, _) = frames.expect().await;
        assert_eq!(
            (h.cmd, h.id),
            (FIN, 4),
            "the refusal of our own parity's SYN"
        );
        // The first reads sent UPDs for stream 3; then the echo.
        loop {
            let (h, p) = frames.expect().await;
            assert_eq!(h.id, 3, "{h:?}");
            if h.cmd == PSH {
                assert_eq!(p, b"ok");
                break;
            }
            assert_eq!(h.cmd, UPD);
        }
        drop((s, fin5));
        connector.close().await.unwrap();
        worker.await.unwrap().unwrap();
    })
    .await
    .expect("hang");
}
