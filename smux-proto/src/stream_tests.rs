//! Unit tests of a stream's queues (its window accounting is `flow.rs`'s).

use super::*;
use crate::wire::INITIAL_PEER_WINDOW;

#[test]
fn reads_cross_chunks() {
    let mut s = Stream::new(INITIAL_PEER_WINDOW as usize);
    assert!(s.push_rx(Bytes::from(vec![1u8; 600]), false));
    assert!(!s.push_rx(Bytes::from(vec![2u8; 700]), false));
    assert_eq!(
        s.rx.len(),
        2,
        "payloads of 256 bytes or more keep their own chunk"
    );
    let mut buf = [0u8; 650];
    assert_eq!(s.read_into(&mut buf), 650);
    assert_eq!(&buf[598..602], &[1, 1, 2, 2]);
    assert_eq!(s.unread(), 650);
    assert_eq!(s.read_chunk(1000).unwrap().len(), 650);
    assert!(s.read_chunk(10).is_none());
    assert_eq!(s.rx_memory(), 0, "an empty queue gives its memory back");
}

#[test]
fn rx_memory_counts_slots_and_predicts_growth() {
    let mut s = Stream::new(INITIAL_PEER_WINDOW as usize);
    for i in 0..100usize {
        let cost = s.rx_cost(1000, false);
        let before = s.rx_memory();
        s.push_rx(Bytes::from(vec![0u8; 1000]), false);
        assert_eq!(s.rx_memory() - before, cost, "push {i}");
        // Slots never exceed twice the chunks held.
        assert!(s.rx.capacity() <= 2 * s.rx.len().max(1));
    }
    let mut buf = [0u8; 95_000];
    s.read_into(&mut buf);
    assert_eq!(s.rx.len(), 5);
    assert!(s.rx.capacity() <= 2 * 5, "queue shrinks as it drains");
}

#[test]
fn rx_cost_split_predicts_two_pushes() {
    for k in 0..40 {
        let mut s = Stream::new(INITIAL_PEER_WINDOW as usize);
        for _ in 0..k {
            s.push_rx(Bytes::from(vec![0u8; 1000]), false);
        }
        let cost = s.rx_cost_split(2000, false);
        let before = s.rx_memory();
        s.push_rx(Bytes::from(vec![1u8; 300]), false);
        s.push_rx(Bytes::from(vec![2u8; 1700]), false);
        assert_eq!(s.rx_memory() - before, cost, "after {k} pushes");
    }
}

#[test]
fn a_pinned_chunk_is_charged_its_read_buffer_until_read_or_copied() {
    let mut s = Stream::new(INITIAL_PEER_WINDOW as usize);
    let page = Bytes::from(vec![7u8; 64 * 1024]);
    let cost = s.rx_cost(16 * 1024, true);
    s.push_rx(page.slice(..16 * 1024), true);
    s.push_rx(Bytes::from(vec![8u8; 1000]), false);
    assert_eq!(cost, 64 * 1024 + SLOT, "the whole page and a slot");
    assert_eq!(s.rx_memory(), 64 * 1024 + 1000 + 2 * SLOT);
    // A partial read frees what it read, of the slice's charge too.
    let mut buf = [0u8; 4096];
    s.read_into(&mut buf);
    assert_eq!(s.pinned(), 12 * 1024);
    assert_eq!(s.rx_memory(), 4 * 12 * 1024 + 1000 + s.rx.capacity() * SLOT);
    // Copied out, the rest costs its own bytes, and no longer shares the page.
    assert_eq!(s.unpin(), 3 * 12 * 1024);
    assert_eq!(s.pinned(), 0);
    let front = s.read_chunk(usize::MAX).unwrap();
    assert_eq!(front.len(), 12 * 1024);
    let p = page.as_ptr() as usize;
    assert!(!(p..p + page.len()).contains(&(front.as_ptr() as usize)));
    assert_eq!(s.read_chunk(usize::MAX).unwrap().len(), 1000);
    // A pinned chunk taken whole or in part without copying leaves the count with it.
    s.push_rx(page.slice(16 * 1024..48 * 1024), true);
    assert_eq!(s.read_chunk(1024).unwrap().len(), 1024);
    assert_eq!(s.pinned(), 31 * 1024);
    drop(s.read_chunk(usize::MAX));
    assert_eq!(s.pinned(), 0);
}

#[test]
fn tiny_payloads_share_chunks() {
    let mut s = Stream::new(INITIAL_PEER_WINDOW as usize);
    for i in 0..10_000u32 {
        s.push_rx(Bytes::copy_from_slice(&[i as u8]), false);
    }
    assert_eq!(s.unread(), 10_000);
    assert_eq!(s.rx.len(), 10, "one-byte frames share 1 KiB chunks");
    let mut buf = vec![0u8; 10_000];
    assert_eq!(s.read_into(&mut buf), 10_000);
    assert!(buf.iter().enumerate().all(|(i, b)| *b == i as u8));
}

#[test]
fn send_window_starts_at_initial_and_follows_upd() {
    let mut s = Stream::new(INITIAL_PEER_WINDOW as usize);
    assert_eq!(s.send_window(), INITIAL_PEER_WINDOW as usize);
    s.push_tx(Bytes::from(vec![0; 1000]));
    assert_eq!(s.send_window(), INITIAL_PEER_WINDOW as usize - 1000);
    s.apply_upd(500, 600);
    assert_eq!(s.send_window(), 100);
    // A peer that shrinks its window below what is in flight leaves no room, not a wrap.
    s.apply_upd(0, 10);
    assert_eq!(s.send_window(), 0);
}

#[test]
fn tx_splits_into_frames() {
    let mut s = Stream::new(INITIAL_PEER_WINDOW as usize);
    s.push_tx(Bytes::from(vec![7; 10]));
    assert_eq!(s.pop_tx(4).unwrap().len(), 4);
    assert_eq!(s.queued(), 6);
    assert_eq!(s.pop_tx(100).unwrap().len(), 6);
    assert!(s.pop_tx(100).is_none());
}

#[test]
fn stamps_give_their_instants_back() {
    let t0 = Instant::now();
    let epoch = Epoch::new(t0);
    for nanos in [0, 1, 999_999_999, 86_400 * 365 * 1_000_000_007] {
        let t = t0 + Duration::from_nanos(nanos);
        assert_eq!(epoch.instant(epoch.stamp(t)), t, "{nanos} ns");
    }
    if let Some(before) = t0.checked_sub(Duration::from_secs(1)) {
        assert_eq!(
            epoch.instant(epoch.stamp(before)),
            t0,
            "before the epoch: the epoch"
        );
    }
    let at = |nanos| epoch.stamp(t0 + Duration::from_nanos(nanos));
    assert_eq!(at(5).nanos_since(at(2)), 3);
    assert_eq!(at(2).nanos_since(at(5)), 0);
}

/// Every open stream holds a `Stream` at each end, idle or not, so each byte of it is paid
/// once per stream and per end; a field added in passing would go unnoticed. And the table
/// boxes it: allocators round a box up to a size class, so a few bytes over a class boundary
/// cost a whole step. This pins the size at what it is now: a new field should find room
/// within it (flags go in `Flags`, counts a window bounds in 32 bits, what few streams need
/// out of line as `Tuning`'s measurements are), or raise the bound here knowingly.
#[test]
fn a_stream_stays_small() {
    let size = std::mem::size_of::<Stream>();
    assert!(size <= 184, "a stream is {size} bytes");
}
