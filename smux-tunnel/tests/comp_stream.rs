//! [`CompStream`] on its own: malformed streams are errors (never panics), the framing's
//! bounds hold, and whatever is written is read back, through a pipe that pushes back.

use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll};

use proptest::prelude::*;
use smux_test_support::content::crc32_bitwise;
use smux_tunnel::kcp::CompStream;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

const IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// The masked CRC-32C that the framing format puts before each chunk's data, computed bit by
/// bit (independently of the crate's table).
fn masked_crc(data: &[u8]) -> u32 {
    crc32_bitwise(0x82f6_3b78, data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_le_bytes();
    let mut c = vec![kind, len[0], len[1], len[2]];
    c.extend_from_slice(body);
    c
}

/// An uncompressed data chunk of `data`, with a right checksum.
fn raw_chunk(data: &[u8]) -> Vec<u8> {
    let mut body = masked_crc(data).to_le_bytes().to_vec();
    body.extend_from_slice(data);
    chunk(0x01, &body)
}

/// A compressed data chunk: `block` is a snappy block, `data` what it should decode to.
fn snappy_chunk(block: &[u8], data: &[u8]) -> Vec<u8> {
    let mut body = masked_crc(data).to_le_bytes().to_vec();
    body.extend_from_slice(block);
    chunk(0x00, &body)
}

fn stream(chunks: &[Vec<u8>]) -> Vec<u8> {
    chunks.concat()
}

async fn read_all(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    CompStream::new(bytes).read_to_end(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn well_formed_streams() {
    assert_eq!(read_all(b"").await.unwrap(), b"");
    assert_eq!(read_all(IDENTIFIER).await.unwrap(), b"");
    let s = stream(&[
        IDENTIFIER.to_vec(),
        raw_chunk(b"hello, "),
        // Padding and a reserved skippable chunk are skipped; a second identifier is fine.
        chunk(0xfe, &[0; 10]),
        chunk(0x80, b"skip me"),
        IDENTIFIER.to_vec(),
        raw_chunk(b""),
        snappy_chunk(
            &snap::raw::Encoder::new().compress_vec(b"world").unwrap(),
            b"world",
        ),
    ]);
    assert_eq!(read_all(&s).await.unwrap(), b"hello, world");
}

#[tokio::test]
async fn malformed_streams_are_errors() {
    let big = vec![7u8; 65537];
    let cases: Vec<(&str, Vec<u8>, ErrorKind)> = vec![
        ("no identifier", raw_chunk(b"x"), ErrorKind::InvalidData),
        (
            "bad identifier",
            chunk(0xff, b"sNaPpZ"),
            ErrorKind::InvalidData,
        ),
        (
            "short identifier",
            chunk(0xff, b"sNaPp"),
            ErrorKind::InvalidData,
        ),
        (
            "reserved unskippable chunk",
            stream(&[IDENTIFIER.to_vec(), chunk(0x02, b"")]),
            ErrorKind::InvalidData,
        ),
        (
            // Refused from its header alone: the body is never awaited.
            "chunk longer than any encoding of 64 KiB",
            stream(&[IDENTIFIER.to_vec(), vec![0x80, 0xcf, 0x2a, 0x01]]),
            ErrorKind::InvalidData,
        ),
        (
            "data chunk shorter than its checksum",
            stream(&[IDENTIFIER.to_vec(), chunk(0x01, b"abc")]),
            ErrorKind::InvalidData,
        ),
        (
            "checksum mismatch",
            stream(&[IDENTIFIER.to_vec(), {
                let mut c = raw_chunk(b"data");
                c[9] ^= 1;
                c
            }]),
            ErrorKind::InvalidData,
        ),
        (
            "compressed checksum mismatch",
            stream(&[
                IDENTIFIER.to_vec(),
                snappy_chunk(&[3, 8, b'a', b'b', b'c'], b"abd"),
            ]),
            ErrorKind::InvalidData,
        ),
        (
            "uncompressed chunk over 64 KiB",
            stream(&[IDENTIFIER.to_vec(), raw_chunk(&big)]),
            ErrorKind::InvalidData,
        ),
        (
            // The block's header claims 65537 bytes.
            "compressed chunk over 64 KiB",
            stream(&[
                IDENTIFIER.to_vec(),
                snappy_chunk(&[0x81, 0x80, 0x04, 0, 0], b""),
            ]),
            ErrorKind::InvalidData,
        ),
        (
            // A copy from before the start of the block.
            "corrupt snappy block",
            stream(&[IDENTIFIER.to_vec(), snappy_chunk(&[4, 0x01, 0x10], b"")]),
            ErrorKind::InvalidData,
        ),
        (
            "ends inside a chunk header",
            stream(&[IDENTIFIER.to_vec(), vec![0x01, 0x05]]),
            ErrorKind::UnexpectedEof,
        ),
        (
            "ends inside a chunk",
            stream(&[IDENTIFIER.to_vec(), raw_chunk(b"truncated")[..10].to_vec()]),
            ErrorKind::UnexpectedEof,
        ),
    ];
    for (what, bytes, kind) in cases {
        let err = read_all(&bytes).await.expect_err(what);
        assert_eq!(err.kind(), kind, "{what}: {err}");
    }
}

#[tokio::test]
async fn a_malformed_stream_stays_failed() {
    let mut s = stream(&[IDENTIFIER.to_vec(), raw_chunk(b"good")]);
    s.extend_from_slice(&chunk(0x02, b""));
    s.extend_from_slice(&raw_chunk(b"after"));
    let mut r = CompStream::new(&s[..]);
    let mut buf = [0; 16];
    assert_eq!(r.read(&mut buf).await.unwrap(), 4);
    for _ in 0..3 {
        assert_eq!(
            r.read(&mut buf).await.unwrap_err().kind(),
            ErrorKind::InvalidData
        );
    }
}

#[tokio::test]
async fn writes_are_chunks_of_at_most_64_kib() {
    let mut w = CompStream::new(Vec::new());
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    // One write takes one chunk's worth.
    assert_eq!(w.write(&data).await.unwrap(), 65536);
    w.write_all(&data[65536..]).await.unwrap();
    w.flush().await.unwrap();
    let framed = w.into_inner();
    assert!(framed.starts_with(IDENTIFIER));
    // Walk the chunks: identifier, then 4 data chunks (3 full, 1 of 3392 bytes).
    let mut at = IDENTIFIER.len();
    let mut chunks = 0;
    while at < framed.len() {
        let len = u32::from_le_bytes([framed[at + 1], framed[at + 2], framed[at + 3], 0]);
        assert!(len as usize <= 4 + 76490);
        at += 4 + len as usize;
        chunks += 1;
    }
    assert_eq!((at, chunks), (framed.len(), 4));
    assert_eq!(read_all(&framed).await.unwrap(), data);
}

/// A writer whose every write fails.
struct Broken;

impl AsyncWrite for Broken {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_write_error_after_the_bytes_are_taken_comes_next() {
    let mut w = CompStream::new(Broken);
    // The chunk is made and the bytes taken before the inner stream fails.
    assert_eq!(w.write(b"abc").await.unwrap(), 3);
    assert_eq!(w.flush().await.unwrap_err().kind(), ErrorKind::BrokenPipe);
    assert_eq!(
        w.write(b"d").await.unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
}

/// Drives `writes` through a compressing writer into a pipe of `pipe` bytes and out of a
/// decompressing reader, concurrently; returns what was read.
async fn through_pipe(writes: Vec<Vec<u8>>, pipe: usize) -> Vec<u8> {
    let (a, b) = tokio::io::duplex(pipe);
    let writer = tokio::spawn(async move {
        let mut w = CompStream::new(a);
        for chunk in writes {
            w.write_all(&chunk).await.unwrap();
            w.flush().await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut out = Vec::new();
    CompStream::new(b).read_to_end(&mut out).await.unwrap();
    writer.await.unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(
        writes in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..2000),
                (0usize..150_000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
                (0usize..100_000).prop_map(|n| (0..n).map(|i| (i % 251) as u8).collect()),
            ],
            0..8,
        ),
        pipe in 1usize..70_000,
    ) {
        let want = writes.concat();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = rt.block_on(through_pipe(writes, pipe));
        prop_assert!(got == want, "{} bytes read, {} written", got.len(), want.len());
    }

    /// Any bytes after the identifier: data or an error, never a panic.
    #[test]
    fn any_stream_reads_or_fails(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let s = [IDENTIFIER, &bytes].concat();
        if let Ok(data) = rt.block_on(read_all(&s)) {
            prop_assert!(data.len() <= bytes.len() * 64);
        }
    }
}
