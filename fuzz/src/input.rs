//! The fuzz input read as a small program, for the bodies that take it so (`bodies.rs`'
//! `session`, `kcp.rs`' `kcp_datagram`): they use it as `crate::input`, so a stable test that
//! includes one of them by `#[path]` includes this file too, as `mod input` at its root.

/// Reads the fuzz input front to back; past its end, reads come back short or empty.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, `None` at the end.
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(*b)
    }

    /// The next two bytes as a little-endian number, 0 for each byte past the end.
    #[allow(dead_code)] // `session` reads none.
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte().unwrap_or(0), self.byte().unwrap_or(0)])
    }

    /// The next `n` bytes, or what is left if fewer.
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }
}
