//! Fairness among eight writers: each gets 1/8 ± 25 % of the data bytes on the wire over
//! every 4 MiB while all eight are writing, asserted on the current-thread runtime; on the
//! multi-thread runtime with 2 and 4 workers the shares are reported and the data checked
//! (`common::on_runtimes`). No test sleeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

mod common;

use common::{on_runtimes, Tap};

/// A hang guard for each run: nothing here asserts anything about time.
const LIMIT: Duration = Duration::from_secs(120);

const FAIR_WRITERS: usize = 8;
/// Each writer's total.
const FAIR_TOTAL: u64 = 16 * 1024 * 1024;
/// A measurement window: this many data (PSH payload) bytes on the wire.
const WINDOW: u64 = 4 * 1024 * 1024;

/// What [`FrameMeter`] has measured: the data bytes per stream id in each full window.
#[derive(Default)]
struct Meter {
    /// Writers that have had a write taken. Windows are measured from when all eight have:
    /// the first writer through the barrier fills the transport's buffer alone before the
    /// others run, which is not a share taken from anyone writing.
    started: AtomicUsize,
    /// Set when the first writer has finished: later windows are not measured.
    stop: AtomicBool,
    state: Mutex<MeterState>,
}

impl Meter {
    fn measuring(&self) -> bool {
        self.started.load(Ordering::SeqCst) == FAIR_WRITERS && !self.stop.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct MeterState {
    /// The frame header being assembled.
    header: Vec<u8>,
    /// Payload bytes left of the current frame, and its stream id if it is a PSH.
    left: usize,
    psh: Option<u32>,
    /// The window being filled.
    current: HashMap<u32, u64>,
    filled: u64,
    windows: Vec<HashMap<u32, u64>>,
}

impl MeterState {
    /// Parses `data`; counts its data bytes if `measure`. A window is kept only if it was
    /// filled while measuring throughout.
    fn feed(&mut self, mut data: &[u8], measure: bool) {
        while !data.is_empty() {
            if self.left == 0 && self.header.len() < 8 {
                let n = (8 - self.header.len()).min(data.len());
                self.header.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.header.len() == 8 {
                    let h = &self.header;
                    let len = u16::from_le_bytes([h[2], h[3]]) as usize;
                    let sid = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
                    self.psh = (h[1] == 2).then_some(sid);
                    self.left = len;
                    self.header.clear();
                }
                continue;
            }
            let n = self.left.min(data.len());
            data = &data[n..];
            self.left -= n;
            if let (Some(sid), true) = (self.psh, measure) {
                let mut n = n as u64;
                while n > 0 {
                    let k = n.min(WINDOW - self.filled);
                    *self.current.entry(sid).or_default() += k;
                    self.filled += k;
                    n -= k;
                    if self.filled == WINDOW {
                        let w = std::mem::take(&mut self.current);
                        self.windows.push(w);
                        self.filled = 0;
                    }
                }
            }
        }
    }
}

/// Eight streams write 64 KiB buffers at once, as fast as they can; the peer reads all eight
/// concurrently (in 256 KiB reads, nothing else to do). Data bytes on the wire are measured
/// from when all eight have had a write taken until the first writer finishes: on the
/// current-thread runtime, each stream's share of every 4 MiB window is within 1/8 ± 25 %.
#[test]
fn eight_writers_share_the_wire_fairly() {
    on_runtimes(|| async {
        let rt = common::current_flavor().name();
        let (a, b) = tokio::io::duplex(256 * 1024);
        let meter = Arc::new(Meter::default());
        // The client's transport: counts, per 4 MiB window of data bytes written, each
        // stream's share.
        let a = {
            let meter = Arc::clone(&meter);
            Tap::new(a, move |taken| {
                let measure = meter.measuring();
                let mut st = meter.state.lock().unwrap();
                for part in taken {
                    st.feed(part, measure);
                }
            })
        };
        let ((cc, _ca, cw), (_sc, mut sa, sw)) = common::sessions(a, b);
        timeout(LIMIT, async {
            let peer = tokio::spawn(async move {
                let mut readers = Vec::new();
                for _ in 0..FAIR_WRITERS {
                    let mut s = sa.accept().await.unwrap();
                    readers.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; 256 * 1024];
                        let mut got = 0u64;
                        loop {
                            let n = s.read(&mut buf).await.unwrap();
                            if n == 0 {
                                return got;
                            }
                            got += n as u64;
                        }
                    }));
                }
                let mut total = Vec::new();
                for r in readers {
                    total.push(r.await.unwrap());
                }
                total
            });
            let barrier = Arc::new(tokio::sync::Barrier::new(FAIR_WRITERS));
            let mut writers = Vec::new();
            let mut ids = Vec::new();
            for i in 0..FAIR_WRITERS {
                let mut s = cc.connect().unwrap();
                ids.push(s.get_stream_id());
                let (barrier, meter) = (Arc::clone(&barrier), Arc::clone(&meter));
                writers.push(tokio::spawn(async move {
                    let buf = common::pattern(i as u64, 64 * 1024);
                    // All eight start together.
                    barrier.wait().await;
                    let mut sent = 0;
                    while sent < FAIR_TOTAL {
                        s.write_all(&buf).await.unwrap();
                        if sent == 0 {
                            meter.started.fetch_add(1, Ordering::SeqCst);
                        }
                        sent += buf.len() as u64;
                    }
                    meter.stop.store(true, Ordering::SeqCst);
                    s.shutdown().await.unwrap();
                }));
            }
            for w in writers {
                w.await.unwrap();
            }
            let got = peer.await.unwrap();
            assert!(got.iter().all(|g| *g == FAIR_TOTAL), "bytes read {got:?}");
            let windows = std::mem::take(&mut meter.state.lock().unwrap().windows);
            let (lo, hi) = (WINDOW as f64 / 8.0 * 0.75, WINDOW as f64 / 8.0 * 1.25);
            let mut unfair = Vec::new();
            let mut min_share = f64::MAX;
            let mut max_share = 0f64;
            for (k, w) in windows.iter().enumerate() {
                for id in &ids {
                    let b = w.get(id).copied().unwrap_or(0) as f64;
                    min_share = min_share.min(b / WINDOW as f64);
                    max_share = max_share.max(b / WINDOW as f64);
                    if b < lo || b > hi {
                        unfair.push(format!(
                            "window {k}: stream {id} {:.1} %",
                            100.0 * b / WINDOW as f64
                        ));
                    }
                }
            }
            eprintln!(
                "{rt}: {} windows of 4 MiB while all 8 wrote; shares from {:.1} % to {:.1} % \
                 (bounds 9.4 %-15.6 %); {} out of bounds",
                windows.len(),
                100.0 * min_share,
                100.0 * max_share,
                unfair.len()
            );
            // Asserted on one thread, where only the driver decides who writes. On several,
            // a writer woken while a thread the OS preempted holds it in its run queue waits
            // unpolled while another thread's writer goes on (more so with 4 workers on 2
            // cores), which no library can prevent: there the shares are reported, and the
            // run checks that every byte arrived and every writer finished.
            if common::current_flavor() == common::Flavor::CurrentThread {
                assert!(!windows.is_empty(), "no full window measured");
                assert!(
                    unfair.is_empty(),
                    "{} of {} shares outside 1/8 ± 25 %: {}",
                    unfair.len(),
                    windows.len() * FAIR_WRITERS,
                    unfair
                        .iter()
                        .take(12)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            cc.close().await.unwrap();
            cw.await.unwrap().unwrap();
            sw.await.unwrap().unwrap();
        })
        .await
        .expect("hang");
    });
}
