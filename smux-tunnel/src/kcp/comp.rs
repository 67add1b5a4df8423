//! kcptun's compression: [`CompStream`], snappy's framing format over the KCP stream, as
//! kcptun's `generic.CompStream` speaks it with golang/snappy (unless `--nocomp`).
//!
//! The stream is a sequence of chunks, each a type byte, a 24-bit little-endian length, and
//! that many bytes:
//!
//! - `0xff` stream identifier, `sNaPpY`: first in the stream, once per writer;
//! - `0x00` compressed data: the masked CRC-32C of the uncompressed bytes, then a snappy
//!   block of at most 65536 uncompressed bytes;
//! - `0x01` uncompressed data: the masked CRC-32C, then at most 65536 bytes as they are;
//! - `0x02..=0x7f`: reserved, a reader must refuse them; `0x80..=0xfe`: skipped.
//!
//! kcptun flushes after every write, so each write reaches the peer at once, in chunks of its
//! own: [`CompStream`] does the same, one chunk per `poll_write` (of at most 65536 bytes), and
//! hands it to the inner stream before taking more. A chunk that does not shrink by an eighth
//! goes uncompressed, as golang/snappy decides.
//!
//! The snappy block format is the `snap` crate's; the framing is written here because `snap`
//! frames only over blocking `std::io` streams, and keeps its CRC-32C to itself.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most uncompressed bytes in one chunk.
const MAX_BLOCK: usize = 65536;
/// The longest chunk golang/snappy's reader takes: the CRC and the longest snappy encoding of
/// a full block (`snap::raw::max_compress_len(65536)`, golang/snappy's
/// `maxEncodedLenOfMaxBlockSize`).
const MAX_CHUNK: usize = 4 + 76490;
/// The chunk header: type and 24-bit length.
const CHUNK_HEADER: usize = 4;
/// The stream identifier chunk, whole.
const STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";
const MAGIC: &[u8] = b"sNaPpY";

const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_UNCOMPRESSED: u8 = 0x01;
const CHUNK_IDENTIFIER: u8 = 0xff;

/// The CRC-32C (Castagnoli, reflected) table for one byte at a time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| {
        (crc >> 8) ^ CRC32C_TABLE[usize::from((crc as u8) ^ b)]
    })
}

/// The framing format's checksum: the CRC-32C rotated right by 15 bits, plus a constant, so
/// that data holding its own CRC does not checksum to something trivial.
fn masked_crc(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// kcptun's compressed stream over `T` (the KCP stream): writes compress, reads decompress.
///
/// Memory is bounded: reading holds at most one chunk in and one block out (about 140 KiB,
/// taken on the first read), writing one compressed chunk. A malformed stream is an
/// [`io::ErrorKind::InvalidData`] error, and every later read returns the same.
#[derive(Debug)]
pub struct CompStream<T> {
    inner: T,
    read: ReadHalf,
    write: WriteHalf,
}

#[derive(Debug, Default)]
struct ReadHalf {
    /// Bytes read from the inner stream; `raw[start..end]` not yet parsed. Empty until the
    /// first read, then `CHUNK_HEADER + MAX_CHUNK` long: room for any whole chunk.
    raw: Vec<u8>,
    start: usize,
    end: usize,
    /// The last chunk's data; `decoded[pos..]` not yet read.
    decoded: Vec<u8>,
    pos: usize,
    /// The stream identifier has been read.
    identified: bool,
    /// The stream is malformed: every read fails with this.
    failed: Option<&'static str>,
    decoder: snap::raw::Decoder,
}

#[derive(Debug)]
struct WriteHalf {
    /// Chunks not yet written to the inner stream: `out[pos..]`.
    out: Vec<u8>,
    pos: usize,
    identified: bool,
    /// An error the inner stream returned after a write had already taken its bytes: the
    /// next write or flush returns it.
    deferred: Option<io::Error>,
    encoder: snap::raw::Encoder,
}

impl<T> CompStream<T> {
    /// Compression over `inner`.
    pub fn new(inner: T) -> Self {
        CompStream {
            inner,
            read: ReadHalf::default(),
            write: WriteHalf {
                out: Vec::new(),
                pos: 0,
                identified: false,
                deferred: None,
                encoder: snap::raw::Encoder::new(),
            },
        }
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The inner stream. Reading or writing it directly corrupts the compressed stream.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The inner stream, dropping what was read but not yet returned and what was written
    /// but not yet flushed.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl ReadHalf {
    /// Parses the chunk at `raw[start..end]` if it is all there: `Ok(true)` if one was taken
    /// (its data, if any, now in `decoded`), `Ok(false)` if more bytes are needed.
    fn parse(&mut self) -> Result<bool, &'static str> {
        let avail = &self.raw[self.start..self.end];
        let Some((header, rest)) = avail.split_first_chunk::<CHUNK_HEADER>() else {
            return Ok(false);
        };
        let kind = header[0];
        let len =
            usize::from(header[1]) | usize::from(header[2]) << 8 | usize::from(header[3]) << 16;
        if !self.identified && kind != CHUNK_IDENTIFIER {
            return Err("snappy stream: no stream identifier");
        }
        if len > MAX_CHUNK {
            return Err("snappy stream: chunk too long");
        }
        let Some(body) = rest.get(..len) else {
            return Ok(false);
        };
        match kind {
            CHUNK_COMPRESSED | CHUNK_UNCOMPRESSED => {
                let Some((crc, data)) = body.split_first_chunk::<4>() else {
                    return Err("snappy stream: data chunk shorter than its checksum");
                };
                if kind == CHUNK_COMPRESSED {
                    let n = snap::raw::decompress_len(data)
                        .map_err(|_| "snappy stream: corrupt compressed chunk")?;
                    if n > MAX_BLOCK {
                        return Err("snappy stream: chunk decompresses to over 64 KiB");
                    }
                    self.decoded.resize(n, 0);
                    let got = self
                        .decoder
                        .decompress(data, &mut self.decoded)
                        .map_err(|_| "snappy stream: corrupt compressed chunk")?;
                    self.decoded.truncate(got);
                } else {
                    if data.len() > MAX_BLOCK {
                        return Err("snappy stream: uncompressed chunk over 64 KiB");
                    }
                    self.decoded.clear();
                    self.decoded.extend_from_slice(data);
                }
                if masked_crc(&self.decoded) != u32::from_le_bytes(*crc) {
                    self.decoded.clear();
                    return Err("snappy stream: checksum mismatch");
                }
                self.pos = 0;
            }
            CHUNK_IDENTIFIER => {
                if body != MAGIC {
                    return Err("snappy stream: bad stream identifier");
                }
                self.identified = true;
            }
            0x02..=0x7f => return Err("snappy stream: reserved unskippable chunk"),
            // Padding and reserved skippable chunks.
            _ => {}
        }
        self.start += CHUNK_HEADER + len;
        Ok(true)
    }

    fn poll_read<T: AsyncRead + Unpin>(
        &mut self,
        inner: &mut T,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.pos < self.decoded.len() {
                let n = buf.remaining().min(self.decoded.len() - self.pos);
                buf.put_slice(&self.decoded[self.pos..self.pos + n]);
                self.pos += n;
                return Poll::Ready(Ok(()));
            }
            if let Some(msg) = self.failed {
                return Poll::Ready(Err(invalid(msg)));
            }
            match self.parse() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(msg) => {
                    self.failed = Some(msg);
                    return Poll::Ready(Err(invalid(msg)));
                }
            }
            // Need more: make room for a whole chunk after `start`, then read.
            if self.raw.is_empty() {
                self.raw = vec![0; CHUNK_HEADER + MAX_CHUNK];
            }
            if self.end == self.raw.len() {
                self.raw.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let mut space = ReadBuf::new(&mut self.raw[self.end..]);
            ready!(Pin::new(&mut *inner).poll_read(cx, &mut space))?;
            let n = space.filled().len();
            if n == 0 {
                return Poll::Ready(if self.start == self.end {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "snappy stream: ends inside a chunk",
                    ))
                });
            }
            self.end += n;
        }
    }
}

impl WriteHalf {
    /// Appends one chunk of `data` (at most [`MAX_BLOCK`] bytes) to `out`, after the stream
    /// identifier if it is the first.
    fn push_chunk(&mut self, data: &[u8]) {
        if !self.identified {
            self.identified = true;
            self.out.extend_from_slice(STREAM_IDENTIFIER);
        }
        let at = self.out.len();
        let crc = masked_crc(data);
        self.out.resize(
            at + CHUNK_HEADER + 4 + snap::raw::max_compress_len(data.len()),
            0,
        );
        let compressed = self
            .encoder
            .compress(data, &mut self.out[at + CHUNK_HEADER + 4..])
            .ok()
            // Not worth it unless it saves an eighth, as golang/snappy decides.
            .filter(|&n| n < data.len() - data.len() / 8);
        let (kind, len) = match compressed {
            Some(n) => {
                self.out.truncate(at + CHUNK_HEADER + 4 + n);
                (CHUNK_COMPRESSED, 4 + n)
            }
            None => {
                self.out.truncate(at + CHUNK_HEADER + 4);
                self.out.extend_from_slice(data);
                (CHUNK_UNCOMPRESSED, 4 + data.len())
            }
        };
        // At most 4 + 76490: fits the 24-bit length.
        let len = (len as u32).to_le_bytes();
        self.out[at..at + CHUNK_HEADER].copy_from_slice(&[kind, len[0], len[1], len[2]]);
        self.out[at + CHUNK_HEADER..at + CHUNK_HEADER + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// Writes `out` to the inner stream until it is all written.
    fn poll_drain<T: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.deferred.take() {
            return Poll::Ready(Err(e));
        }
        while self.pos < self.out.len() {
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, &self.out[self.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        self.out.clear();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CompStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.read.poll_read(&mut this.inner, cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CompStream<T> {
    /// Compresses up to 64 KiB of `buf` into one chunk, once the previous chunks are all
    /// written, and starts writing it.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.write.poll_drain(&mut this.inner, cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_BLOCK);
        this.write.push_chunk(&buf[..n]);
        // The bytes are taken: an error from here on is the next call's.
        if let Poll::Ready(Err(e)) = this.write.poll_drain(&mut this.inner, cx) {
            this.write.deferred = Some(e);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.write.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.write.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The CRC-32C catalogue's check value.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn max_chunk_is_snaps_bound() {
        assert_eq!(MAX_CHUNK, 4 + snap::raw::max_compress_len(MAX_BLOCK));
    }
}
