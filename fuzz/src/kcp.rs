//! The `kcp_datagram` fuzz target body: arbitrary datagrams into smux-tunnel's `KcpGoCodec`,
//! kcp-go's crypto header and FEC, under a crypt and FEC shape the input chooses. A crash is a
//! bug: a peer's datagram must never panic the codec nor grow what it holds.
//!
//! Plain Rust with no libFuzzer in it, so the stable test `smux-tunnel/tests/fuzz_corpus.rs`
//! includes this file and replays the corpus.

use std::time::{Duration, Instant};

use smux_test_support::content::crc32_bitwise;
use smux_tunnel::kcp::codec::{CRYPT_HEADER, MAX_DATAGRAM};
use smux_tunnel::kcp::{Codec, CodecConfig, Crypt, KcpGoCodec};

// A module of the crate that includes this file (see input.rs).
use crate::input::Input;

/// Any fixed key: kcptun's derivation (4096 rounds of pbkdf2) would slow every run.
const KEY: [u8; 32] = *b"kcp_datagram fuzz target key 32b";

/// FEC shapes: off, and some with fewer, equal and more parity than data shards.
const SHAPES: [(usize, usize); 6] = [(0, 0), (1, 1), (2, 1), (4, 2), (10, 3), (3, 5)];

/// The first byte picks the crypt and FEC shape; then each step is one of:
///
/// - a datagram as received, up to 1600 bytes, into `open`;
/// - a payload that the body seals with a right crypto header (so that the FEC layer sees
///   the fuzzer's bytes), into `open`;
/// - a KCP packet through a second codec's `seal`, some of its datagrams lost, the rest into
///   `open`: the packet must come out first when its data datagram goes in;
/// - the clock moving on, up to about 9 minutes (FEC shards expire after one).
///
/// After every `open`, the FEC decoder holds no more shards than its limit, and nothing
/// delivered is longer than a datagram.
pub fn kcp_datagram(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(setup) = input.byte() else { return };
    let crypt = Crypt::ALL[usize::from(setup) % Crypt::ALL.len()];
    let (data_shards, parity_shards) = SHAPES[usize::from(setup) / Crypt::ALL.len() % SHAPES.len()];
    let config = CodecConfig {
        crypt,
        key: KEY,
        data_shards,
        parity_shards,
    };
    let mut rx = KcpGoCodec::new(&config).expect("a valid shape");
    let mut tx = KcpGoCodec::new(&config).expect("a valid shape");
    let block = crypt.new_block(&KEY);
    let limit = rx.fec_decoder().map_or(0, |d| d.limit());
    let fec = config.fec();
    let mut now = Instant::now();

    let open = |rx: &mut KcpGoCodec, datagram: &[u8], now: Instant| {
        let mut delivered = Vec::new();
        let _ = rx.open_at(datagram, now, &mut |p| {
            assert!(p.len() < MAX_DATAGRAM, "a packet longer than its datagram");
            delivered.push(p.to_vec());
        });
        let waiting = rx.fec_decoder().map_or(0, |d| d.waiting());
        assert!(waiting <= limit, "{waiting} shards held, limit {limit}");
        delivered
    };

    while let Some(op) = input.byte() {
        match op % 4 {
            0 => {
                let len = usize::from(input.u16()) % 1601;
                let datagram = input.take(len).to_vec();
                open(&mut rx, &datagram, now);
            }
            1 => {
                let len = usize::from(input.u16()) % (MAX_DATAGRAM - CRYPT_HEADER + 1);
                let payload = input.take(len);
                let mut datagram = vec![0; CRYPT_HEADER];
                datagram.extend_from_slice(payload);
                // CRC32 (IEEE) bit by bit: the body stays free of the codec's own CRC code.
                let crc = crc32_bitwise(0xedb8_8320, &datagram[CRYPT_HEADER..]);
                datagram[16..20].copy_from_slice(&crc.to_le_bytes());
                block.encrypt(&mut datagram);
                open(&mut rx, &datagram, now);
            }
            2 => {
                let len = usize::from(input.u16()) % (MAX_DATAGRAM - tx.overhead() + 1);
                let packet = input.take(len).to_vec();
                let mut sealed = Vec::new();
                tx.seal(&packet, &mut |d| sealed.push(d.to_vec()));
                for (k, datagram) in sealed.iter().enumerate() {
                    // Bits 2 to 7 of the op lose datagrams.
                    if k < 6 && op >> (2 + k) & 1 == 1 {
                        continue;
                    }
                    let delivered = open(&mut rx, datagram, now);
                    // Without FEC, a packet whose bytes 4 and 5 spell an FEC flag reads as a
                    // shard (a KCP packet never does: its command is 81 to 84).
                    let flagged = !fec && matches!(packet.get(4..6), Some([0xf1 | 0xf2, 0]));
                    if k == 0 && packet.len() >= 24 && !flagged {
                        assert_eq!(delivered.first(), Some(&packet), "sealed, then opened");
                    }
                }
            }
            _ => now += Duration::from_millis(u64::from(input.u16()) * 8),
        }
    }
}
