//! [`KcpGoCodec`] and its FEC decoder on their own: what they drop and why, what FEC rebuilds,
//! and how much the decoder holds, on any input.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use smux_tunnel::kcp::codec::{CRYPT_HEADER, MAX_DATAGRAM};
use smux_tunnel::kcp::fec::{FecDecoder, FEC_EXPIRE_MS, FLAG_DATA, FLAG_PARITY};
use smux_tunnel::kcp::{Codec, CodecConfig, Crypt, DropReason, KcpGoCodec};

fn config(crypt: Crypt, data_shards: usize, parity_shards: usize) -> CodecConfig {
    CodecConfig {
        crypt,
        // Any key: derive_key's 4096 rounds are slow in a debug build, and tested elsewhere.
        key: [0x24; 32],
        data_shards,
        parity_shards,
    }
}

fn codec(crypt: Crypt, data_shards: usize, parity_shards: usize) -> KcpGoCodec {
    KcpGoCodec::new(&config(crypt, data_shards, parity_shards)).unwrap()
}

/// A KCP-looking packet: `len` bytes, the 5th (KCP's command) 81, the rest from `seed`.
fn packet(len: usize, seed: u8) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    if len > 5 {
        p[4] = 81;
        p[5] = seed;
    }
    p
}

fn seal_all(codec: &mut KcpGoCodec, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in packets {
        codec.seal(p, &mut |d| out.push(d.to_vec()));
    }
    out
}

fn open_all(codec: &mut KcpGoCodec, datagrams: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    for d in datagrams {
        codec.open(d, &mut |p| got.push(p.to_vec())).unwrap();
    }
    got
}

fn open_one(codec: &mut KcpGoCodec, datagram: &[u8]) -> Result<Vec<Vec<u8>>, DropReason> {
    let mut got = Vec::new();
    codec.open(datagram, &mut |p| got.push(p.to_vec()))?;
    Ok(got)
}

#[test]
fn overhead_is_the_headers() {
    assert_eq!(codec(Crypt::Aes, 10, 3).overhead(), 28);
    assert_eq!(codec(Crypt::None, 0, 0).overhead(), 20);
    // FEC is on only with both counts above 0, as in kcp-go.
    assert_eq!(codec(Crypt::Aes, 10, 0).overhead(), 20);
    assert_eq!(codec(Crypt::Aes, 0, 3).overhead(), 20);
    assert!(KcpGoCodec::new(&config(Crypt::Aes, 200, 57)).is_err());
    assert!(KcpGoCodec::new(&config(Crypt::Aes, 128, 128)).is_ok());
}

#[test]
fn datagram_sizes() {
    let mut c = codec(Crypt::Aes, 3, 2);
    let lens = [100, 1472, 24];
    let out = seal_all(&mut c, &lens.map(|n| packet(n, 1)));
    let sizes: Vec<usize> = out.iter().map(Vec::len).collect();
    // The data shards, then the parity shards as long as the longest data shard.
    assert_eq!(sizes, [128, 1500, 52, 1500, 1500]);

    let mut c = codec(Crypt::Salsa20, 0, 0);
    let out = seal_all(&mut c, &[packet(1480, 2)]);
    assert_eq!(out[0].len(), MAX_DATAGRAM);
}

#[test]
#[should_panic(expected = "does not fit a datagram")]
fn sealing_an_oversized_packet_is_a_bug() {
    codec(Crypt::Aes, 10, 3).seal(&packet(1473, 0), &mut |_| {});
}

#[test]
fn nonces_differ() {
    let mut c = codec(Crypt::None, 0, 0);
    let out = seal_all(&mut c, &vec![packet(30, 0); 100]);
    let nonces: BTreeSet<&[u8]> = out.iter().map(|d| &d[..16]).collect();
    assert_eq!(nonces.len(), 100);
}

#[test]
fn corrupt_datagrams_fail_the_checksum() {
    for crypt in Crypt::ALL {
        for (d, p) in [(0, 0), (10, 3)] {
            let mut tx = codec(crypt, d, p);
            let mut rx = codec(crypt, d, p);
            let sealed = seal_all(&mut tx, &[packet(200, 7)]).remove(0);
            let mut corrupt = 0;
            for at in [0, 16, 19, 20, 27, 100, sealed.len() - 1] {
                let mut bad = sealed.clone();
                bad[at] ^= 0x40;
                // `none` and `xor` change the nonce alone, which nothing checks; the others
                // carry a change to the nonce into the keystream of what follows.
                if at < 16 && matches!(crypt, Crypt::None | Crypt::Xor) {
                    assert_eq!(open_one(&mut rx, &bad), Ok(vec![packet(200, 7)]));
                    continue;
                }
                corrupt += 1;
                assert_eq!(
                    open_one(&mut rx, &bad),
                    Err(DropReason::Checksum),
                    "{crypt} {d}+{p}: byte {at}"
                );
            }
            assert_eq!(open_one(&mut rx, &sealed), Ok(vec![packet(200, 7)]));
            let stats = rx.counters().snapshot();
            assert_eq!(stats.checksum, corrupt, "{crypt}");
            assert_eq!(stats.dropped(DropReason::Checksum), corrupt);
            assert_eq!(stats.dropped_total(), corrupt);
        }
    }
}

#[test]
fn another_key_or_crypt_fails_the_checksum() {
    for crypt in Crypt::ALL.into_iter().filter(|&c| c != Crypt::None) {
        let mut tx = codec(crypt, 0, 0);
        let sealed = seal_all(&mut tx, &[packet(300, 1)]).remove(0);
        let mut other = config(crypt, 0, 0);
        other.key[0] ^= 1;
        let mut rx = KcpGoCodec::new(&other).unwrap();
        assert_eq!(
            open_one(&mut rx, &sealed),
            Err(DropReason::Checksum),
            "{crypt}"
        );
        for wrong in Crypt::ALL.into_iter().filter(|&c| c != crypt) {
            let mut rx = codec(wrong, 0, 0);
            assert_eq!(
                open_one(&mut rx, &sealed),
                Err(DropReason::Checksum),
                "{crypt} opened as {wrong}"
            );
        }
    }
}

#[test]
fn short_and_long_datagrams() {
    let mut rx = codec(Crypt::Aes, 10, 3);
    for len in [0, 1, 19] {
        assert_eq!(open_one(&mut rx, &vec![0; len]), Err(DropReason::Truncated));
    }
    // Sealed correctly, but shorter than a KCP header.
    let mut tx = codec(Crypt::Aes, 0, 0);
    for len in [0, 23] {
        let sealed = seal_all(&mut tx, &[packet(len, 0)]).remove(0);
        assert_eq!(open_one(&mut rx, &sealed), Err(DropReason::Truncated));
    }
    assert_eq!(
        open_one(&mut rx, &vec![0; MAX_DATAGRAM + 1]),
        Err(DropReason::Oversized)
    );
    let stats = rx.counters().snapshot();
    assert_eq!((stats.truncated, stats.oversized), (5, 1));
}

/// Re-seals a `none` datagram after `edit`: `none` leaves the bytes in clear, so only the CRC
/// needs redoing.
fn reseal_none(datagram: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut d = datagram.to_vec();
    edit(&mut d);
    let crc = crc32fast::hash(&d[CRYPT_HEADER..]);
    d[16..20].copy_from_slice(&crc.to_le_bytes());
    d
}

#[test]
fn a_data_shard_with_a_wrong_size_is_dropped() {
    let mut tx = codec(Crypt::None, 10, 3);
    let mut rx = codec(Crypt::None, 10, 3);
    let sealed = seal_all(&mut tx, &[packet(100, 3)]).remove(0);
    for size in [0u16, 1, 101, 103, 0xffff] {
        let bad = reseal_none(&sealed, |d| d[26..28].copy_from_slice(&size.to_le_bytes()));
        assert_eq!(open_one(&mut rx, &bad), Err(DropReason::Fec), "size {size}");
    }
    assert_eq!(open_one(&mut rx, &sealed), Ok(vec![packet(100, 3)]));
    assert_eq!(rx.counters().snapshot().fec, 5);
}

#[test]
fn bare_kcp_and_fec_shards_are_told_apart() {
    // With FEC on, a bare KCP packet (no FEC header) is delivered, as kcp-go does.
    let mut bare = codec(Crypt::Aes, 0, 0);
    let mut fec = codec(Crypt::Aes, 4, 2);
    let plain = seal_all(&mut bare, &[packet(60, 1)]);
    assert_eq!(open_all(&mut fec, &plain), [packet(60, 1)]);
    // With FEC off, data shards are delivered and parity shards ignored.
    let sealed = seal_all(&mut fec, &(0..4).map(|i| packet(60, i)).collect::<Vec<_>>());
    assert_eq!(sealed.len(), 6);
    assert_eq!(
        open_all(&mut bare, &sealed),
        (0..4).map(|i| packet(60, i)).collect::<Vec<_>>()
    );
    assert_eq!(bare.counters().snapshot().parity_shards, 2);
}

#[test]
fn a_lost_data_shard_is_rebuilt() {
    let mut tx = codec(Crypt::Aes, 10, 3);
    let mut rx = codec(Crypt::Aes, 10, 3);
    let packets: Vec<Vec<u8>> = (0..10).map(|i| packet(30 + 100 * i, i as u8)).collect();
    let mut sealed = seal_all(&mut tx, &packets);
    assert_eq!(sealed.len(), 13);
    // The longest data shard, the shortest, and one between: the rebuilt ones are
    // zero-padded to the longest, and their size field trims them.
    for lost in [9, 4, 0] {
        sealed.remove(lost);
    }
    let got = open_all(&mut rx, &sealed);
    let stats = rx.counters().snapshot();
    assert_eq!(stats.recovered, 3);
    assert_eq!(stats.parity_shards, 3);
    assert_eq!(
        got[7..],
        [packets[0].clone(), packets[4].clone(), packets[9].clone()]
    );
    assert_eq!(rx.fec_decoder().unwrap().waiting(), 0);
}

#[test]
fn more_losses_than_parity_rebuild_nothing() {
    let mut tx = codec(Crypt::Aes, 10, 3);
    let mut rx = codec(Crypt::Aes, 10, 3);
    let packets: Vec<Vec<u8>> = (0..10).map(|i| packet(300, i as u8)).collect();
    let sealed = seal_all(&mut tx, &packets);
    let got = open_all(&mut rx, &sealed[4..]);
    assert_eq!(got.len(), 6);
    assert_eq!(rx.counters().snapshot().recovered, 0);
    assert_eq!(rx.fec_decoder().unwrap().waiting(), 9);
}

#[test]
fn late_shards_of_a_done_group_are_ignored() {
    // 1 + 1: a parity shard alone could rebuild its data shard again.
    let mut tx = codec(Crypt::Aes, 1, 1);
    let mut rx = codec(Crypt::Aes, 1, 1);
    let sealed = seal_all(&mut tx, &[packet(50, 1), packet(60, 2)]);
    assert_eq!(sealed.len(), 4);
    assert_eq!(open_all(&mut rx, &sealed), [packet(50, 1), packet(60, 2)]);
    // Repeated too.
    assert!(open_all(&mut rx, &sealed).len() == 2);
    assert_eq!(rx.counters().snapshot().recovered, 0);
    assert_eq!(rx.fec_decoder().unwrap().waiting(), 0);
}

#[test]
fn shards_expire_after_a_minute() {
    let mut tx = codec(Crypt::Aes, 4, 2);
    let mut rx = codec(Crypt::Aes, 4, 2);
    let packets: Vec<Vec<u8>> = (0..8).map(|i| packet(100, i)).collect();
    let sealed = seal_all(&mut tx, &packets);
    assert_eq!(sealed.len(), 12);
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut open = |d: &[u8], at: Instant| {
        rx.open_at(d, at, &mut |p| got.push(p.to_vec())).unwrap();
        rx.fec_decoder().unwrap().waiting()
    };
    // Two of the first group's six shards, then a minute and a bit of nothing.
    assert_eq!(open(&sealed[0], t0), 1);
    assert_eq!(open(&sealed[1], t0), 2);
    let later = t0 + Duration::from_millis(u64::from(FEC_EXPIRE_MS) + 1);
    // The next arrival expires them; its group then goes as usual.
    assert_eq!(open(&sealed[6], later), 1);
    // The first group's parity now finds too little to rebuild from.
    assert_eq!(open(&sealed[4], later), 2);
    assert_eq!(open(&sealed[5], later), 3);
    assert_eq!(rx.counters().snapshot().recovered, 0);
    assert_eq!(
        got,
        [packets[0].clone(), packets[1].clone(), packets[4].clone()]
    );

    // Just under a minute, they are still there and the group is rebuilt.
    let mut rx = codec(Crypt::Aes, 4, 2);
    let just = t0 + Duration::from_millis(u64::from(FEC_EXPIRE_MS));
    for (d, at) in [(0, t0), (1, t0), (4, just), (5, just)] {
        rx.open_at(&sealed[d], at, &mut |_| {}).unwrap();
    }
    assert_eq!(rx.counters().snapshot().recovered, 2);
}

#[test]
fn the_queue_keeps_three_groups() {
    let mut dec = FecDecoder::new(10, 3).unwrap();
    assert_eq!(dec.limit(), 39);
    // One data shard of each of 50 groups: none completes.
    let mut short = 0;
    for g in 0..50u32 {
        let mut shard = Vec::new();
        shard.extend_from_slice(&(g * 13).to_le_bytes());
        shard.extend_from_slice(&FLAG_DATA.to_le_bytes());
        shard.extend_from_slice(&[4, 0, 1, 2]);
        let report = dec.decode(&shard, 0, &mut |_| panic!("nothing to rebuild"));
        short += usize::from(report.short);
        assert_eq!(dec.waiting(), (g as usize + 1).min(39));
    }
    assert_eq!(short, 50 - 39);
}

#[test]
fn duplicates_are_dropped() {
    let mut dec = FecDecoder::new(4, 2).unwrap();
    let shard = [7, 0, 0, 0, 0xf2, 0, 1, 2, 3];
    for _ in 0..5 {
        dec.decode(&shard, 0, &mut |_| panic!("nothing to rebuild"));
    }
    assert_eq!(dec.waiting(), 1);
}

/// An FEC shard from its header on: `seqid`, a flag, and `body`.
fn shard(seqid: u32, parity: bool, body: &[u8]) -> Vec<u8> {
    let mut s = seqid.to_le_bytes().to_vec();
    let flag = if parity { FLAG_PARITY } else { FLAG_DATA };
    s.extend_from_slice(&flag.to_le_bytes());
    s.extend_from_slice(body);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Sealed, then opened, with up to `parity` datagrams of each group lost and the rest
    /// maybe reordered within their group: every packet arrives.
    #[test]
    fn round_trip_with_loss(
        crypt in prop::sample::select(Crypt::ALL.to_vec()),
        (data, parity) in prop::sample::select(vec![(0, 0), (1, 1), (2, 1), (4, 2), (10, 3), (3, 5)]),
        lens in prop::collection::vec(24usize..=1472, 1..60),
        losses in prop::collection::vec(prop::collection::btree_set(0usize..13, 0..=5), 20),
        reorder in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let packets: Vec<Vec<u8>> =
            lens.iter().enumerate().map(|(i, &n)| packet(n, i as u8)).collect();
        let mut tx = codec(crypt, data, parity);
        let mut rx = codec(crypt, data, parity);
        let sealed = seal_all(&mut tx, &packets);
        let group = (data + parity).max(1);
        let mut sent = Vec::new();
        let mut lost_data = 0;
        let mut rng = seed;
        for (g, chunk) in sealed.chunks(group).enumerate() {
            // Loss only in whole groups, and only with FEC.
            let whole = data > 0 && chunk.len() == group;
            let lost: BTreeSet<usize> = if whole {
                losses[g % losses.len()].iter().copied().filter(|&k| k < group).take(parity).collect()
            } else {
                BTreeSet::new()
            };
            lost_data += lost.iter().filter(|&&k| k < data).count();
            let mut kept: Vec<Vec<u8>> = chunk.iter().enumerate()
                .filter(|(k, _)| !lost.contains(k)).map(|(_, d)| d.clone()).collect();
            if reorder {
                for i in (1..kept.len()).rev() {
                    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                    kept.swap(i, (rng % (i as u64 + 1)) as usize);
                }
            }
            sent.extend(kept);
        }
        let got = open_all(&mut rx, &sent);
        let stats = rx.counters().snapshot();
        prop_assert_eq!(stats.dropped_total(), 0);
        if reorder {
            // A late data shard may come after its group was rebuilt: KCP drops the copy.
            let got: BTreeSet<Vec<u8>> = got.into_iter().collect();
            let want: BTreeSet<Vec<u8>> = packets.into_iter().collect();
            prop_assert_eq!(got, want);
            prop_assert!(stats.recovered >= lost_data as u64);
        } else {
            prop_assert_eq!(stats.recovered, lost_data as u64);
            let mut got = got;
            let mut want = packets;
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }

    /// Whatever ids, flags and lengths a peer sends, the decoder holds at most its limit of
    /// shards and never panics.
    #[test]
    fn the_decoder_is_bounded(
        (data, parity) in prop::sample::select(vec![(1, 1), (10, 3), (3, 5), (128, 128)]),
        shards in prop::collection::vec(
            (any::<u32>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..64), 0u32..200_000),
            1..300,
        ),
        near in any::<bool>(),
    ) {
        let mut dec = FecDecoder::new(data, parity).unwrap();
        let mut now = 0u32;
        for (id, is_parity, body, dt) in shards {
            // Near ids collide into groups; any ids spread over the circle.
            let id = if near { id % 64 } else { id };
            now = now.wrapping_add(dt);
            dec.decode(&shard(id, is_parity, &body), now, &mut |s| assert!(!s.is_empty()));
            prop_assert!(dec.waiting() <= dec.limit());
        }
    }

    /// Any datagram, to any codec: a drop or a delivery, never a panic.
    #[test]
    fn any_datagram_opens_or_drops(
        crypt in prop::sample::select(Crypt::ALL.to_vec()),
        datagram in prop::collection::vec(any::<u8>(), 0..1600),
    ) {
        let mut rx = codec(crypt, 10, 3);
        let _ = rx.open(&datagram, &mut |p| assert!(p.len() < MAX_DATAGRAM));
    }
}
