//! kcp-go's block crypts and kcptun's key derivation, byte for byte as kcp-go 5.6 and kcptun
//! 20210922 do them.
//!
//! A crypt transforms a whole datagram in place: the 16 nonce bytes, the CRC32 and what
//! follows. kcptun derives a 32-byte key from its `--key` passphrase with [`derive_key`], and
//! each crypt takes the prefix of it that its cipher needs ([`Crypt::new_block`]).
//!
//! - The AES crypts are CFB with a segment as wide as the block, started from kcp-go's fixed
//!   initial vector, over the whole datagram: the random nonce is the first block, so the
//!   keystream of every later block differs from datagram to datagram. A last partial block
//!   is XORed with the cipher of the previous ciphertext block, as CFB does.
//! - `salsa20` is Salsa20/20 keyed with the 32 key bytes, its 8-byte nonce the datagram's
//!   first 8 bytes, which stay in clear; the keystream covers the rest from counter 0.
//! - `xor` XORs the datagram with a 1500-byte table derived from the key (pbkdf2-sha1, 32
//!   rounds, kcp-go's salt); bytes past the table's length are left as they are, as kcp-go
//!   leaves them. It hides nothing from anyone who has seen a few datagrams.
//! - `none` leaves the bytes as they are; the nonce and CRC are still there.

use std::fmt;
use std::str::FromStr;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, BlockSizeUser, KeyInit, KeyIvInit, StreamCipher};

/// kcptun's salt for deriving the key from the passphrase.
const KEY_SALT: &[u8] = b"kcp-go";
/// kcptun's rounds of pbkdf2 for the key.
const KEY_ROUNDS: u32 = 4096;
/// kcp-go's salt for the `xor` crypt's table.
const XOR_SALT: &[u8] = b"sH3CIVoF#rWLtJo6";
/// kcp-go's rounds of pbkdf2 for the `xor` crypt's table.
const XOR_ROUNDS: u32 = 32;
/// The `xor` crypt's table length: kcp-go's `mtuLimit`.
const XOR_TABLE_LEN: usize = 1500;
/// kcp-go's fixed initial vector of the CFB crypts.
const INITIAL_VECTOR: [u8; 16] = [
    167, 115, 79, 156, 18, 172, 27, 1, 164, 21, 242, 193, 252, 120, 230, 107,
];

/// The key kcptun derives from its `--key` passphrase: pbkdf2 with HMAC-SHA1, salt `kcp-go`,
/// 4096 rounds, 32 bytes. Client and server must use the same passphrase. Slow on purpose
/// (a few milliseconds): derive once per configuration, not per session.
pub fn derive_key(passphrase: &str) -> [u8; 32] {
    let mut key = [0; 32];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(passphrase.as_bytes(), KEY_SALT, KEY_ROUNDS, &mut key);
    key
}

/// A kcptun `--crypt` method that this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Crypt {
    /// `aes`: AES-256 (all 32 key bytes), kcptun's default.
    Aes,
    /// `aes-128`: AES-128, the first 16 key bytes.
    Aes128,
    /// `aes-192`: AES-192, the first 24 key bytes.
    Aes192,
    /// `salsa20`: Salsa20/20 with the 32 key bytes.
    Salsa20,
    /// `xor`: XOR with a table derived from the key. Obfuscation, not encryption.
    Xor,
    /// `none`: no encryption; the nonce and CRC are still sent.
    None,
}

impl Crypt {
    /// Every crypt, in the order of [`Crypt::name`]'s list in errors.
    pub const ALL: [Crypt; 6] = [
        Crypt::Aes,
        Crypt::Aes128,
        Crypt::Aes192,
        Crypt::Salsa20,
        Crypt::Xor,
        Crypt::None,
    ];

    /// kcptun's name for the crypt, as given to `--crypt`.
    pub fn name(self) -> &'static str {
        match self {
            Crypt::Aes => "aes",
            Crypt::Aes128 => "aes-128",
            Crypt::Aes192 => "aes-192",
            Crypt::Salsa20 => "salsa20",
            Crypt::Xor => "xor",
            Crypt::None => "none",
        }
    }

    /// The crypt keyed with `key` (from [`derive_key`]), taking the prefix of it that kcptun
    /// gives this crypt.
    pub fn new_block(self, key: &[u8; 32]) -> BlockCrypt {
        let inner = match self {
            Crypt::Aes => Inner::Aes256(aes::Aes256::new(key.into())),
            Crypt::Aes128 => Inner::Aes128(aes::Aes128::new(GenericArray::from_slice(&key[..16]))),
            Crypt::Aes192 => Inner::Aes192(aes::Aes192::new(GenericArray::from_slice(&key[..24]))),
            Crypt::Salsa20 => Inner::Salsa20(*key),
            Crypt::Xor => {
                let mut table = Box::new([0; XOR_TABLE_LEN]);
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(key, XOR_SALT, XOR_ROUNDS, &mut table[..]);
                Inner::Xor(table)
            }
            Crypt::None => Inner::None,
        };
        BlockCrypt { crypt: self, inner }
    }
}

impl fmt::Display for Crypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--crypt` name this crate does not implement.
///
/// kcptun itself never refuses a name: any it does not know (a typo included) silently
/// selects `aes`. This crate refuses instead, so that a typo cannot pass for the default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown crypt {name:?}: supported are aes, aes-128, aes-192, salsa20, xor, none \
     (kcptun also has sm4, tea, blowfish, twofish, cast5, 3des, xtea, which this crate does \
     not implement, and silently uses aes for any name it does not know)"
)]
pub struct UnknownCrypt {
    /// The name given.
    pub name: String,
}

impl FromStr for Crypt {
    type Err = UnknownCrypt;

    /// Parses kcptun's `--crypt` name, exactly (kcptun's names are case-sensitive).
    fn from_str(name: &str) -> Result<Self, UnknownCrypt> {
        Crypt::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| UnknownCrypt {
                name: name.to_owned(),
            })
    }
}

/// A crypt with its key: encrypts and decrypts whole datagrams in place.
#[derive(Clone)]
pub struct BlockCrypt {
    crypt: Crypt,
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Aes128(aes::Aes128),
    Aes192(aes::Aes192),
    Aes256(aes::Aes256),
    Salsa20([u8; 32]),
    Xor(Box<[u8; XOR_TABLE_LEN]>),
    None,
}

impl fmt::Debug for BlockCrypt {
    /// The crypt's name only: never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BlockCrypt").field(&self.crypt).finish()
    }
}

impl BlockCrypt {
    /// Which crypt this is.
    pub fn crypt(&self) -> Crypt {
        self.crypt
    }

    /// Encrypts `datagram` (nonce and CRC included) in place, as kcp-go's `Encrypt`.
    pub fn encrypt(&self, datagram: &mut [u8]) {
        match &self.inner {
            Inner::Aes128(c) => cfb_encrypt(c, datagram),
            Inner::Aes192(c) => cfb_encrypt(c, datagram),
            Inner::Aes256(c) => cfb_encrypt(c, datagram),
            Inner::Salsa20(key) => salsa20_apply(key, datagram),
            Inner::Xor(table) => xor_apply(table, datagram),
            Inner::None => {}
        }
    }

    /// Decrypts `datagram` in place, as kcp-go's `Decrypt`.
    pub fn decrypt(&self, datagram: &mut [u8]) {
        match &self.inner {
            Inner::Aes128(c) => cfb_decrypt(c, datagram),
            Inner::Aes192(c) => cfb_decrypt(c, datagram),
            Inner::Aes256(c) => cfb_decrypt(c, datagram),
            Inner::Salsa20(key) => salsa20_apply(key, datagram),
            Inner::Xor(table) => xor_apply(table, datagram),
            Inner::None => {}
        }
    }
}

/// The block of `C` that starts the keystream: the cipher of the initial vector (its prefix,
/// for ciphers with a narrower block, as kcp-go reads it).
fn first_keystream<C: BlockEncrypt>(cipher: &C) -> GenericArray<u8, C::BlockSize> {
    let mut block = GenericArray::clone_from_slice(&INITIAL_VECTOR[..C::block_size()]);
    cipher.encrypt_block(&mut block);
    block
}

/// CFB encryption: each ciphertext block is the plaintext XOR the cipher of the previous
/// ciphertext block (of the initial vector, for the first); a trailing partial block uses the
/// keystream block it would have had whole.
fn cfb_encrypt<C: BlockEncrypt>(cipher: &C, buf: &mut [u8]) {
    let mut keystream = first_keystream(cipher);
    for chunk in buf.chunks_mut(C::block_size()) {
        for (b, k) in chunk.iter_mut().zip(keystream.iter()) {
            *b ^= k;
        }
        if chunk.len() == C::block_size() {
            keystream.copy_from_slice(chunk);
            cipher.encrypt_block(&mut keystream);
        }
    }
}

/// CFB decryption: the keystream of each block is the cipher of the previous ciphertext
/// block, read before it is overwritten with plaintext.
fn cfb_decrypt<C: BlockEncrypt>(cipher: &C, buf: &mut [u8]) {
    let mut keystream = first_keystream(cipher);
    let mut next = GenericArray::<u8, <C as BlockSizeUser>::BlockSize>::default();
    for chunk in buf.chunks_mut(C::block_size()) {
        let whole = chunk.len() == C::block_size();
        if whole {
            next.copy_from_slice(chunk);
            cipher.encrypt_block(&mut next);
        }
        for (b, k) in chunk.iter_mut().zip(keystream.iter()) {
            *b ^= k;
        }
        if whole {
            std::mem::swap(&mut keystream, &mut next);
        }
    }
}

/// Salsa20/20 over all but the first 8 bytes, which are the nonce. Its own inverse.
fn salsa20_apply(key: &[u8; 32], buf: &mut [u8]) {
    if buf.len() <= 8 {
        return;
    }
    let (nonce, rest) = buf.split_at_mut(8);
    let mut cipher = salsa20::Salsa20::new(key.into(), GenericArray::from_slice(nonce));
    cipher.apply_keystream(rest);
}

/// XOR with the table, over as many bytes as both have. Its own inverse.
fn xor_apply(table: &[u8; XOR_TABLE_LEN], buf: &mut [u8]) {
    for (b, t) in buf.iter_mut().zip(table.iter()) {
        *b ^= t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Crypt::ALL {
            assert_eq!(c.name().parse::<Crypt>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        for name in ["", "AES", "aes256", "blowfish", "sm4", "tea"] {
            let err = name.parse::<Crypt>().unwrap_err();
            assert_eq!(err.name, name);
            let msg = err.to_string();
            for c in Crypt::ALL {
                assert!(msg.contains(c.name()), "{msg}");
            }
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let key = [0x5a; 32];
        let s = format!("{:?}", Crypt::Salsa20.new_block(&key));
        assert_eq!(s, "BlockCrypt(Salsa20)");
    }

    #[test]
    fn cfb_inverts_at_every_length() {
        let key = derive_key("k");
        for crypt in [Crypt::Aes, Crypt::Aes128, Crypt::Aes192] {
            let block = crypt.new_block(&key);
            for len in 0..100 {
                let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut buf = plain.clone();
                block.encrypt(&mut buf);
                if len > 0 {
                    assert_ne!(buf, plain, "{crypt} {len}");
                }
                block.decrypt(&mut buf);
                assert_eq!(buf, plain, "{crypt} {len}");
            }
        }
    }
}
