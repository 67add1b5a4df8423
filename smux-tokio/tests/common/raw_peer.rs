//! A peer that speaks smux by hand: frames encoded byte by byte (no smux-proto), and a frame
//! reader that parses what our side sends without allocating per frame. Used by the tests that
//! play a hostile or broken peer, with [`Probe`], which shows when our writers are parked.

#![allow(dead_code)]

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::Notify;

pub const SYN: u8 = 0;
pub const FIN: u8 = 1;
pub const PSH: u8 = 2;
pub const NOP: u8 = 3;
pub const UPD: u8 = 4;

/// `VERSION | CMD | LENGTH (u16 LE) | STREAM_ID (u32 LE)`.
pub fn header(ver: u8, cmd: u8, len: u16, id: u32) -> [u8; 8] {
    let l = len.to_le_bytes();
    let i = id.to_le_bytes();
    [ver, cmd, l[0], l[1], i[0], i[1], i[2], i[3]]
}

/// Appends one frame to `out`.
pub fn put_frame(out: &mut Vec<u8>, ver: u8, cmd: u8, id: u32, payload: &[u8]) {
    let len = u16::try_from(payload.len()).expect("a payload fits one frame");
    out.extend_from_slice(&header(ver, cmd, len, id));
    out.extend_from_slice(payload);
}

/// One frame as bytes.
pub fn frame(ver: u8, cmd: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    put_frame(&mut v, ver, cmd, id, payload);
    v
}

/// A version-2 UPD frame.
pub fn upd(id: u32, consumed: u32, window: u32) -> Vec<u8> {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&consumed.to_le_bytes());
    p[4..].copy_from_slice(&window.to_le_bytes());
    frame(2, UPD, id, &p)
}

/// A received frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub ver: u8,
    pub cmd: u8,
    pub len: usize,
    pub id: u32,
}

/// Reads frames from `r` through one fixed buffer.
pub struct FrameReader<R> {
    r: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(r: R) -> Self {
        FrameReader {
            r,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// Makes `n` bytes available at `start`; `false` on end of input before any of them.
    async fn fill(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.start < n {
            if self.buf.len() - self.start < n {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let got = self.r.read(&mut self.buf[self.end..]).await?;
            if got == 0 {
                if self.end == self.start {
                    return Ok(false);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside a frame",
                ));
            }
            self.end += got;
        }
        Ok(true)
    }

    /// The next frame and its payload; `None` when the connection ends between frames.
    pub async fn next(&mut self) -> io::Result<Option<(Head, &[u8])>> {
        if !self.fill(8).await? {
            return Ok(None);
        }
        let b = &self.buf[self.start..self.start + 8];
        let head = Head {
            ver: b[0],
            cmd: b[1],
            len: u16::from_le_bytes([b[2], b[3]]) as usize,
            id: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        };
        if !self.fill(8 + head.len).await? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let at = self.start + 8;
        self.start = at + head.len;
        Ok(Some((head, &self.buf[at..at + head.len])))
    }

    /// The next frame, which must exist.
    pub async fn expect(&mut self) -> (Head, Vec<u8>) {
        match self.next().await {
            Ok(Some((h, p))) => (h, p.to_vec()),
            Ok(None) => panic!("the connection ended; a frame was expected"),
            Err(e) => panic!("reading a frame: {e}"),
        }
    }

    /// Whether bytes are buffered that no frame has taken yet.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    pub fn into_inner(self) -> R {
        self.r
    }
}

/// A stream writer that records whether its last `poll_write` was `Pending` and how many
/// bytes it has taken, and signals `changed` each time either changes.
/// A waker that notes being woken, then wakes `inner`.
struct WokeFlag {
    inner: std::task::Waker,
    woken: AtomicBool,
}

impl std::task::Wake for WokeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.inner.wake_by_ref();
    }
}

pub struct Probe<W> {
    pub inner: W,
    pub parked: Arc<AtomicBool>,
    pub accepted: Arc<AtomicUsize>,
    pub changed: Arc<Notify>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Probe<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A `Pending` after which the task was already woken is a yield (the writer's turn,
        // or the cooperative budget), not a wait for room: it does not count as parked.
        let woke = Arc::new(WokeFlag {
            inner: cx.waker().clone(),
            woken: AtomicBool::new(false),
        });
        let waker = std::task::Waker::from(Arc::clone(&woke));
        let r = Pin::new(&mut self.inner).poll_write(&mut Context::from_waker(&waker), buf);
        match &r {
            Poll::Pending => self
                .parked
                .store(!woke.woken.load(Ordering::SeqCst), Ordering::SeqCst),
            Poll::Ready(Ok(n)) => {
                self.parked.store(false, Ordering::SeqCst);
                self.accepted.fetch_add(*n, Ordering::SeqCst);
            }
            Poll::Ready(Err(_)) => self.parked.store(false, Ordering::SeqCst),
        }
        self.changed.notify_waiters();
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
