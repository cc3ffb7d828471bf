//! Bit-level reading for codec headers: a big-endian bit reader with
//! Exp-Golomb codes, and removal of H.264/HEVC emulation-prevention bytes.
use crate::Error;

/// Reads bits MSB-first from a byte slice. Every read checks the remaining
/// length and fails with [`Error::Truncated`] naming `what`.
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
    what: &'static str,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader { data, pos: 0, what }
    }

    fn remaining(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    fn truncated(&self, bits: usize) -> Error {
        Error::Truncated {
            what: self.what,
            needed: self.pos.div_ceil(8) + bits.div_ceil(8),
            had: self.data.len(),
        }
    }

    /// One bit.
    pub(crate) fn bit(&mut self) -> Result<bool, Error> {
        if self.remaining() < 1 {
            return Err(self.truncated(1));
        }
        let b = self.data[self.pos / 8] >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Ok(b == 1)
    }

    /// `n` bits (at most 32) as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, Error> {
        debug_assert!(n <= 32);
        if self.remaining() < n as usize {
            return Err(self.truncated(n as usize));
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            v = v << 1 | u64::from(self.bit()?);
        }
        Ok(v as u32)
    }

    /// Skip `n` bits.
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Error> {
        if self.remaining() < n {
            return Err(self.truncated(n));
        }
        self.pos += n;
        Ok(())
    }

    /// Unsigned Exp-Golomb `ue(v)`; values above `u32::MAX - 1` are errors.
    pub(crate) fn ue(&mut self) -> Result<u32, Error> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(Error::InvalidBitstream {
                    what: self.what,
                    reason: "Exp-Golomb code longer than 32 bits",
                });
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// Signed Exp-Golomb `se(v)`.
    pub(crate) fn se(&mut self) -> Result<i32, Error> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }

    /// AV1 `uvlc()`.
    pub(crate) fn uvlc(&mut self) -> Result<u32, Error> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                return Ok(u32::MAX);
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }
}

/// The RBSP of a NAL unit: `00 00 03` becomes `00 00`.
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
        assert_eq!(r.ue().unwrap(), 4);
        let data = [0b0100_1100, 0b1000_0000];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
        assert_eq!(r.se().unwrap(), 2);
    }

    #[test]
    fn exp_golomb_limits() {
        let mut r = BitReader::new(&[0, 0, 0, 0, 0xff], "test");
        assert!(matches!(r.ue(), Err(Error::InvalidBitstream { .. })));
        // 31 zeros, then 32 bits: the largest value.
        let mut r = BitReader::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe], "test");
        assert_eq!(r.ue().unwrap(), u32::MAX - 1);
        let mut r = BitReader::new(&[0, 0], "test");
        assert!(matches!(r.ue(), Err(Error::Truncated { .. })));
    }

    #[test]
    fn unescape() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0, 0, 1, 0, 0, 0, 3]
        );
    }
}
