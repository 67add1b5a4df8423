//! The `tracing` feature: a span per session with its role and version, `debug` events for
//! streams opened, accepted, closed and refused, `warn` when a session ends on a protocol
//! error and when a stream is reset. Run with `cargo test -p smux-tokio --features tracing --test tracing` (`.ci/run`
//! does); without the feature this file is empty.
#![cfg(feature = "tracing")]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use smux_tokio::{MuxBuilder, MuxError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

mod common;

/// One event as seen: its level, its fields as text, and its parent span's text.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    text: String,
    span: String,
}

/// A subscriber that keeps every span and event.
#[derive(Default)]
struct Collect {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, String>>,
    events: Mutex<Vec<Seen>>,
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, a: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut t = Text(format!("{} ", a.metadata().name()));
        a.record(&mut t);
        self.spans.lock().unwrap().insert(id, t.0);
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, e: &Event<'_>) {
        let mut t = Text(String::new());
        e.record(&mut t);
        let span = e
            .parent()
            .and_then(|id| self.spans.lock().unwrap().get(&id.into_u64()).cloned())
            .unwrap_or_default();
        self.events.lock().unwrap().push(Seen {
            level: *e.metadata().level(),
            text: t.0,
            span,
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[test]
fn sessions_report_their_streams_and_their_end() {
    let collect = Arc::new(Collect::default());
    tracing::subscriber::set_global_default(Arc::clone(&collect)).unwrap();
    common::on_runtimes(|| {
        let collect = Arc::clone(&collect);
        async move {
            collect.events.lock().unwrap().clear();
            let (a, b) = tokio::io::duplex(64 * 1024);
            let ((conn, _, _), (peer, mut acc, _)) = common::sessions(a, b);
            let mut s = conn.connect().unwrap();
            s.write_all(b"hi").await.unwrap();
            let mut p = acc.accept().await.unwrap();
            let mut buf = [0u8; 2];
            p.read_exact(&mut buf).await.unwrap();
            // The server drains: the client's next stream is refused.
            let draining = {
                let peer = peer.clone();
                tokio::spawn(async move { peer.drain().await })
            };
            while !matches!(peer.connect(), Err(MuxError::Draining)) {
                tokio::task::yield_now().await;
            }
            let mut late = conn.connect().unwrap();
            let mut rest = Vec::new();
            late.read_to_end(&mut rest).await.unwrap();
            drop((s, p, late));
            draining.await.unwrap().unwrap();

            // A peer that breaks the protocol.
            let (c, mut raw) = tokio::io::duplex(1024);
            let (_bad, _acc, worker) = MuxBuilder::client().with_connection(c).build();
            let worker = tokio::spawn(worker);
            raw.write_all(&[9, 0, 0, 0, 0, 0, 0, 0]).await.unwrap();
            assert!(worker.await.unwrap().is_err());

            // A version-2 peer within the protocol sends 128 KiB on a stream nobody reads, past
            // a receive budget of three frames: the stream is reset.
            let (s, mut raw) = tokio::io::duplex(256 * 1024);
            let (server, _acc, worker) = MuxBuilder::server()
                .with_version(smux_tokio::Version::V2)
                .with_max_rx_queue(std::num::NonZeroUsize::new(3).unwrap())
                .with_connection(s)
                .build();
            tokio::spawn(worker);
            let mut flood = vec![2, 0, 0, 0, 3, 0, 0, 0];
            for _ in 0..4 {
                flood.extend_from_slice(&[2, 2, 0, 0x80, 3, 0, 0, 0]);
                flood.extend_from_slice(&[7; 32 * 1024]);
            }
            raw.write_all(&flood).await.unwrap();
            while server.stats().streams_reset == 0 {
                tokio::task::yield_now().await;
            }

            let events = collect.events.lock().unwrap().clone();
            let has = |level: Level, text: &str, span: &str| {
                events
                    .iter()
                    .any(|e| e.level == level && e.text.contains(text) && e.span.contains(span))
            };
            let all = || format!("{events:#?}");
            assert!(
                has(Level::DEBUG, "stream opened", "role=Client"),
                "{}",
                all()
            );
            assert!(
                has(Level::DEBUG, "stream accepted", "role=Server"),
                "{}",
                all()
            );
            assert!(has(Level::DEBUG, "stream closed", "smux"), "{}", all());
            assert!(
                has(Level::DEBUG, "peer streams refused", "role=Server"),
                "{}",
                all()
            );
            assert!(has(Level::DEBUG, "session ended", "version=1"), "{}", all());
            assert!(
                has(Level::WARN, "protocol error", "role=Client"),
                "{}",
                all()
            );
            assert!(has(Level::WARN, "stream reset", "version=2"), "{}", all());
            assert!(has(Level::WARN, "receive budget", "smux"), "{}", all());
            // Nothing above debug for an ordinary session.
            assert_eq!(
                events.iter().filter(|e| e.level <= Level::INFO).count(),
                2,
                "{}",
                all()
            );
        }
    });
}
