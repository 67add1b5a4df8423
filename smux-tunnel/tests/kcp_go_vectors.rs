//! smux-tunnel's kcptun transport against the Go code, byte for byte: the vectors in
//! `tests/vectors/`, written by `tests/vectors/gen.go` from kcp-go 5.6.1, kcptun 20210922,
//! klauspost/reedsolomon 1.9 and golang/snappy.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use smux_tunnel::kcp::codec::{CRYPT_HEADER, KCPTUN_DEFAULT_KEY, KCP_OVERHEAD};
use smux_tunnel::kcp::fec::{FEC_HEADER_DATA, FLAG_DATA, FLAG_PARITY};
use smux_tunnel::kcp::{derive_key, Codec, CodecConfig, CompStream, Crypt, DropReason, KcpGoCodec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// The crypt names of kcptun that this crate does not implement (the vectors have them all).
const UNSUPPORTED: [&str; 7] = ["sm4", "tea", "blowfish", "twofish", "cast5", "3des", "xtea"];

fn vectors(name: &str) -> String {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The records of a vector file: its non-comment lines, split on spaces (an empty last field
/// kept).
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(' ').collect())
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn default_key() -> [u8; 32] {
    derive_key(KCPTUN_DEFAULT_KEY)
}

#[test]
fn key_derivation_matches_kcptun() {
    let text = vectors("crypt.txt");
    let rec = records(&text)
        .find(|r| r[0] == "key")
        .expect("a key record");
    let passphrase = String::from_utf8(unhex(rec[1])).unwrap();
    assert_eq!(passphrase, KCPTUN_DEFAULT_KEY);
    assert_eq!(derive_key(&passphrase).to_vec(), unhex(rec[2]));
}

#[test]
fn crypts_match_kcp_go() {
    let text = vectors("crypt.txt");
    let key = default_key();
    let mut seen = Vec::new();
    let mut checked = 0;
    for rec in records(&text).filter(|r| r[0] == "crypt") {
        let (name, plain, sealed) = (rec[1], unhex(rec[2]), unhex(rec[3]));
        let Ok(crypt) = name.parse::<Crypt>() else {
            assert!(
                UNSUPPORTED.contains(&name),
                "{name} is neither supported nor listed"
            );
            continue;
        };
        if !seen.contains(&crypt) {
            seen.push(crypt);
        }
        let block = crypt.new_block(&key);
        let mut buf = plain.clone();
        block.encrypt(&mut buf);
        assert_eq!(buf, sealed, "{name}: encrypt {} bytes", plain.len());
        block.decrypt(&mut buf);
        assert_eq!(buf, plain, "{name}: decrypt {} bytes", plain.len());

        // The codec opens what kcp-go sealed (no FEC): the payload, or too short for KCP.
        let mut codec = KcpGoCodec::new(&CodecConfig {
            crypt,
            key,
            data_shards: 0,
            parity_shards: 0,
        })
        .unwrap();
        let mut got = Vec::new();
        let res = codec.open(&sealed, &mut |p| got.push(p.to_vec()));
        if plain.len() - CRYPT_HEADER >= KCP_OVERHEAD {
            assert_eq!(res, Ok(()), "{name} {}", plain.len());
            assert_eq!(got, [plain[CRYPT_HEADER..].to_vec()]);
        } else {
            assert_eq!(res, Err(DropReason::Truncated), "{name} {}", plain.len());
            assert!(got.is_empty());
        }
        checked += 1;
    }
    assert_eq!(seen, Crypt::ALL, "every supported crypt has vectors");
    assert!(checked >= 6 * 12, "{checked} vectors");
}

#[test]
fn reed_solomon_matches_klauspost() {
    use reed_solomon_erasure::galois_8::ReedSolomon;
    let text = vectors("rs.txt");
    let mut shapes = Vec::new();
    for rec in records(&text) {
        assert_eq!(rec[0], "rs");
        let (d, p): (usize, usize) = (rec[1].parse().unwrap(), rec[2].parse().unwrap());
        let data: Vec<Vec<u8>> = rec[3].split(',').map(unhex).collect();
        let parity: Vec<Vec<u8>> = rec[4].split(',').map(unhex).collect();
        assert_eq!((data.len(), parity.len()), (d, p));
        let rs = ReedSolomon::new(d, p).unwrap();
        let mut shards = data.clone();
        shards.extend(parity.iter().map(|s| vec![0; s.len()]));
        rs.encode(&mut shards).unwrap();
        assert_eq!(
            &shards[d..],
            &parity[..],
            "({d}, {p}) parity, {} bytes",
            data[0].len()
        );
        if !shapes.contains(&(d, p)) {
            shapes.push((d, p));
        }
    }
    assert!(shapes.contains(&(10, 3)) && shapes.len() >= 5, "{shapes:?}");
}

/// A session kcp-go sent: the shape, the datagrams as sent, and each decrypted.
struct Capture {
    config: CodecConfig,
    sent: Vec<Vec<u8>>,
    plain: Vec<Vec<u8>>,
}

impl Capture {
    fn load(crypt: Crypt, data_shards: usize, parity_shards: usize) -> Capture {
        let text = vectors(&format!(
            "session-{}-{data_shards}-{parity_shards}.txt",
            crypt.name()
        ));
        let config = CodecConfig {
            crypt,
            key: default_key(),
            data_shards,
            parity_shards,
        };
        let block = crypt.new_block(&config.key);
        let sent: Vec<Vec<u8>> = records(&text)
            .map(|r| {
                assert_eq!(r[0], "datagram");
                unhex(r[1])
            })
            .collect();
        let plain = sent
            .iter()
            .map(|d| {
                let mut p = d.clone();
                block.decrypt(&mut p);
                // Our encryption of kcp-go's plaintext is kcp-go's ciphertext.
                let mut again = p.clone();
                block.encrypt(&mut again);
                assert_eq!(&again, d);
                p
            })
            .collect();
        Capture {
            config,
            sent,
            plain,
        }
    }

    fn fec(&self) -> bool {
        self.config.fec()
    }

    fn flag(&self, i: usize) -> u16 {
        let p = &self.plain[i];
        u16::from_le_bytes([p[CRYPT_HEADER + 4], p[CRYPT_HEADER + 5]])
    }

    /// The KCP packets kcp-go sent, in order.
    fn packets(&self) -> Vec<Vec<u8>> {
        (0..self.plain.len())
            .filter_map(|i| {
                if !self.fec() {
                    Some(self.plain[i][CRYPT_HEADER..].to_vec())
                } else if self.flag(i) == FLAG_DATA {
                    Some(self.plain[i][CRYPT_HEADER + FEC_HEADER_DATA..].to_vec())
                } else {
                    assert_eq!(self.flag(i), FLAG_PARITY);
                    None
                }
            })
            .collect()
    }
}

const CAPTURES: [(Crypt, usize, usize); 4] = [
    (Crypt::Aes, 10, 3),
    (Crypt::Salsa20, 4, 2),
    (Crypt::Aes128, 1, 1),
    (Crypt::None, 0, 0),
];

#[test]
fn opens_what_kcp_go_sent() {
    for (crypt, d, p) in CAPTURES {
        let cap = Capture::load(crypt, d, p);
        let mut codec = KcpGoCodec::new(&cap.config).unwrap();
        let mut got = Vec::new();
        for dgram in &cap.sent {
            codec
                .open(dgram, &mut |pkt| got.push(pkt.to_vec()))
                .unwrap_or_else(|r| panic!("{crypt} {d}+{p}: dropped {r:?}"));
        }
        let packets = cap.packets();
        assert_eq!(packets.len(), 32, "the capture holds kcp-go's 32 writes");
        assert_eq!(got, packets, "{crypt} {d}+{p}");
        let stats = codec.counters().snapshot();
        assert_eq!((stats.dropped_total(), stats.recovered), (0, 0));
        let parity = cap.sent.len() - 32;
        assert_eq!(stats.parity_shards, parity as u64);
        if cap.fec() {
            assert_eq!(
                parity,
                32 / d * p,
                "{crypt} {d}+{p}: a parity group per full group"
            );
        }
    }
}

#[test]
fn seals_what_kcp_go_sends() {
    for (crypt, d, p) in CAPTURES {
        let cap = Capture::load(crypt, d, p);
        let mut codec = KcpGoCodec::new(&cap.config).unwrap();
        let block = crypt.new_block(&cap.config.key);
        let mut ours = Vec::new();
        for pkt in cap.packets() {
            codec.seal(&pkt, &mut |dgram| {
                let mut plain = dgram.to_vec();
                block.decrypt(&mut plain);
                ours.push(plain);
            });
        }
        // All but the nonce, which is random: the CRC, FEC headers, padding, parity.
        assert_eq!(ours.len(), cap.plain.len(), "{crypt} {d}+{p}");
        for (i, (a, b)) in ours.iter().zip(&cap.plain).enumerate() {
            assert_eq!(a[16..], b[16..], "{crypt} {d}+{p}: datagram {i}");
        }
    }
}

#[test]
fn recovers_what_kcp_go_protected() {
    for (crypt, d, p) in CAPTURES.into_iter().filter(|c| c.1 > 0) {
        let cap = Capture::load(crypt, d, p);
        let group = d + p;
        let groups = 32 / d;
        // Lose data shards of each whole group, as many as it has parity, in a different
        // place in each group.
        for shift in 0..d {
            let mut codec = KcpGoCodec::new(&cap.config).unwrap();
            let mut got = Vec::new();
            let mut lost = 0;
            for (i, dgram) in cap.sent.iter().enumerate() {
                let (g, k) = (i / group, i % group);
                if g < groups && k < d && (k + d - shift) % d < p {
                    lost += 1;
                    continue;
                }
                codec
                    .open(dgram, &mut |pkt| got.push(pkt.to_vec()))
                    .unwrap();
            }
            assert_eq!(lost, groups * p.min(d));
            let stats = codec.counters().snapshot();
            assert_eq!(
                stats.recovered, lost as u64,
                "{crypt} {d}+{p} shift {shift}"
            );
            got.sort();
            let mut want = cap.packets();
            want.sort();
            assert_eq!(got, want, "{crypt} {d}+{p} shift {shift}");
        }
    }
}

/// kcptun's `--nocomp`-less stream: golang/snappy's buffered writer, flushed after each write.
struct SnappyWrite {
    plain: Vec<u8>,
    framed: Vec<u8>,
}

fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn snappy_writes() -> Vec<SnappyWrite> {
    let text = vectors("snappy.txt");
    let words = "smux over KCP over UDP, kcptun's transport. ".repeat(3000);
    records(&text)
        .map(|r| {
            assert_eq!(r[0], "write");
            let n: usize = r[2].parse().unwrap();
            let plain = match r[1] {
                "text" => words.as_bytes()[..n].to_vec(),
                "noise" => noise(n, r[3].parse().unwrap()),
                "zeros" => vec![0; n],
                other => panic!("{other}"),
            };
            SnappyWrite {
                plain,
                framed: unhex(r[4]),
            }
        })
        .collect()
}

/// Reads at most `step` bytes at a time, to split chunks everywhere.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn snappy_reads_what_kcptun_writes() {
    let writes = snappy_writes();
    assert!(writes.len() >= 8);
    let framed: Vec<u8> = writes.iter().flat_map(|w| w.framed.clone()).collect();
    let plain: Vec<u8> = writes.iter().flat_map(|w| w.plain.clone()).collect();
    for step in [1, 3, 4096, usize::MAX] {
        let mut got = Vec::new();
        CompStream::new(Trickle {
            data: &framed,
            step,
        })
        .read_to_end(&mut got)
        .await
        .unwrap();
        assert!(got == plain, "step {step}");
    }
}

#[tokio::test]
async fn snappy_writes_what_kcptun_writes() {
    // snap's block encoder makes the same choices as golang/snappy's: the same bytes, which
    // golang/snappy's reader takes.
    let mut stream = CompStream::new(Vec::new());
    for (i, w) in snappy_writes().iter().enumerate() {
        let before = stream.get_ref().len();
        stream.write_all(&w.plain).await.unwrap();
        stream.flush().await.unwrap();
        assert!(
            stream.get_ref()[before..] == w.framed[..],
            "write {i} ({} bytes) frames differently",
            w.plain.len()
        );
    }
}
