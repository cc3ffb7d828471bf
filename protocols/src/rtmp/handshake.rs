//! The RTMP handshake, server side: C0 C1 → S0 S1 S2, then C2.
//!
//! Two variants are answered:
//! - **plain** (the 2009 spec): S1 is time 0, zero version, and filler bytes;
//!   S2 echoes C1.
//! - **digest** (Flash Player 9+, ffmpeg's native client): C1 carries an
//!   HMAC-SHA256 digest keyed with the first 30 bytes of the Flash Player key,
//!   at an offset given by scheme 0 (sum of bytes 8..12) or scheme 1 (sum of
//!   bytes 772..776). It is answered in kind: S1 carries a digest keyed with
//!   the first 36 bytes of the Media Server key (same scheme), and S2 ends
//!   with an HMAC of its first 1504 bytes keyed by HMAC(full Media Server
//!   key, client digest), which clients that check it (ffmpeg when playing)
//!   verify.
//!
//! C2 is read and not checked (no client relies on it being checked, and
//! clients differ in what they put there).
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::RtmpError;

/// Bytes in C1, C2, S1, S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The only RTMP version byte accepted in C0 (3 = plain RTMP).
pub const RTMP_VERSION: u8 = 3;

const DIGEST_LEN: usize = 32;

/// "Genuine Adobe Flash Player 001" + 32 bytes; clients sign C1 with the
/// first 30 bytes.
pub(crate) const FLASH_PLAYER_KEY: [u8; 62] = concat_key(b"Genuine Adobe Flash Player 001");
/// "Genuine Adobe Flash Media Server 001" + 32 bytes; servers sign S1 with
/// the first 36 bytes and derive the S2 key from all 68.
pub(crate) const MEDIA_SERVER_KEY: [u8; 68] = concat_key(b"Genuine Adobe Flash Media Server 001");

const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];

const fn concat_key<const N: usize>(head: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    while i < head.len() {
        out[i] = head[i];
        i += 1;
    }
    let mut j = 0;
    while j < KEY_TAIL.len() {
        out[head.len() + j] = KEY_TAIL[j];
        j += 1;
    }
    out
}

/// The version S1 announces in the digest variant (as FMS 3.5-era servers
/// and nginx-rtmp do); non-zero tells the client a digest is present.
const SERVER_VERSION: [u8; 4] = [0x0D, 0x0E, 0x0A, 0x0D];

/// Where the 32-byte digest sits in a 1536-byte C1/S1 under `scheme` (0 or 1).
pub(crate) fn digest_offset(block: &[u8], scheme: u8) -> usize {
    let base = if scheme == 0 { 8 } else { 772 };
    let sum: usize = block[base..base + 4].iter().map(|&b| usize::from(b)).sum();
    sum % 728 + base + 4
}

/// HMAC-SHA256 of `parts` concatenated, keyed with `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // new_from_slice accepts keys of any length for HMAC.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The digest a block should carry at `offset`: HMAC over the block without
/// those 32 bytes.
pub(crate) fn block_digest(block: &[u8], offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac_sha256(key, &[&block[..offset], &block[offset + DIGEST_LEN..]])
}

/// Find a valid client digest in C1: the scheme and the digest.
pub(crate) fn find_client_digest(c1: &[u8]) -> Option<(u8, [u8; DIGEST_LEN])> {
    if c1[4..8] == [0, 0, 0, 0] {
        return None; // plain client
    }
    [0u8, 1].into_iter().find_map(|scheme| {
        let offset = digest_offset(c1, scheme);
        let expected = block_digest(c1, offset, &FLASH_PLAYER_KEY[..30]);
        (c1[offset..offset + DIGEST_LEN] == expected).then_some((scheme, expected))
    })
}

/// Fill `buf` with xorshift64* noise from `seed` (the handshake's "random"
/// bytes need not be unpredictable; the session has no entropy source).
pub(crate) fn fill_noise(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn seed_from(c1: &[u8]) -> u64 {
    // FNV-1a over C1: distinct clients get distinct filler.
    c1.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Build S0 S1 S2 (3073 bytes) answering `c1`. Returns the bytes and
/// whether the digest variant was used.
pub(crate) fn server_response(c1: &[u8]) -> (Vec<u8>, bool) {
    let mut out = vec![0u8; 1 + 2 * HANDSHAKE_SIZE];
    out[0] = RTMP_VERSION;
    let seed = seed_from(c1);
    let (s1, s2) = out[1..].split_at_mut(HANDSHAKE_SIZE);
    fill_noise(&mut s1[8..], seed);
    match find_client_digest(c1) {
        Some((scheme, client_digest)) => {
            s1[4..8].copy_from_slice(&SERVER_VERSION);
            let offset = digest_offset(s1, scheme);
            let digest = block_digest(s1, offset, &MEDIA_SERVER_KEY[..36]);
            s1[offset..offset + DIGEST_LEN].copy_from_slice(&digest);

            fill_noise(s2, seed.rotate_left(17) ^ 0x5A5A);
            let key = hmac_sha256(&MEDIA_SERVER_KEY, &[&client_digest]);
            let sig_at = HANDSHAKE_SIZE - DIGEST_LEN;
            let signature = hmac_sha256(&key, &[&s2[..sig_at]]);
            s2[sig_at..].copy_from_slice(&signature);
            (out, true)
        }
        None => {
            s2.copy_from_slice(c1);
            (out, false)
        }
    }
}

/// Where the server side of the handshake is.
#[derive(Debug)]
pub(crate) enum HandshakeState {
    /// Collecting C0 + C1 (1537 bytes) in the buffer.
    C0C1,
    /// S0 S1 S2 produced; collecting C2 (counted, not kept).
    C2 { received: usize },
    /// C2 received: the chunk stream starts.
    Done,
}

/// Server handshake: feed bytes with [`Handshake::input`] until it reports
/// completion; the reply appears once C0+C1 are in.
#[derive(Debug)]
pub(crate) struct Handshake {
    buf: Vec<u8>,
    pub(crate) state: HandshakeState,
    /// Whether the client sent (and was answered with) the digest variant.
    pub(crate) digest: bool,
}

impl Handshake {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::new(),
            state: HandshakeState::C0C1,
            digest: false,
        }
    }

    /// Consume handshake bytes from the front of `data`. Returns how many were
    /// used; the reply (S0 S1 S2) is appended to `reply` when C1 completes.
    /// After the state becomes `Done`, the rest of `data` is chunk stream.
    pub(crate) fn input(&mut self, data: &[u8], reply: &mut Vec<u8>) -> Result<usize, RtmpError> {
        let mut used = 0;
        if let HandshakeState::C0C1 = self.state {
            match data.first() {
                Some(&v) if self.buf.is_empty() && v != RTMP_VERSION => {
                    return Err(RtmpError::HandshakeVersion { version: v });
                }
                _ => {}
            }
            let want = 1 + HANDSHAKE_SIZE - self.buf.len();
            let take = want.min(data.len());
            if self.buf.is_empty() && take == 1 + HANDSHAKE_SIZE {
                // Whole C0+C1 in one piece: no copy needed.
                self.respond(&data[1..take], reply);
            } else {
                self.buf.extend_from_slice(&data[..take]);
                if self.buf.len() == 1 + HANDSHAKE_SIZE {
                    let c0c1 = std::mem::take(&mut self.buf);
                    self.respond(&c0c1[1..], reply);
                }
            }
            used = take;
        }
        if let HandshakeState::C2 { received } = &mut self.state {
            let take = (HANDSHAKE_SIZE - *received).min(data.len() - used);
            *received += take;
            used += take;
            if *received == HANDSHAKE_SIZE {
                self.state = HandshakeState::Done;
            }
        }
        Ok(used)
    }

    fn respond(&mut self, c1: &[u8], reply: &mut Vec<u8>) {
        let (bytes, digest) = server_response(c1);
        reply.extend_from_slice(&bytes);
        self.digest = digest;
        self.buf = Vec::new();
        self.state = HandshakeState::C2 { received: 0 };
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, HandshakeState::Done)
    }
}
