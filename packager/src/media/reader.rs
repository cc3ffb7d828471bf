//! Byte-level reading over `Bytes`, handing out zero-copy slices.
use bytes::Bytes;

use crate::Error;

/// A cursor over a `Bytes` whose reads fail with [`Error::Truncated`]
/// naming `what`.
#[derive(Debug)]
pub(crate) struct ByteReader<'a> {
    data: &'a Bytes,
    pos: usize,
    what: &'static str,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a Bytes, what: &'static str) -> Self {
        ByteReader { data, pos: 0, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    #[allow(dead_code)]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn need(&self, n: usize) -> Result<(), Error> {
        if self.remaining() < n {
            Err(Error::Truncated {
                what: self.what,
                needed: self.pos + n,
                had: self.data.len(),
            })
        } else {
            Ok(())
        }
    }

    pub(crate) fn slice(&mut self, n: usize) -> Result<&'a [u8], Error> {
        self.need(n)?;
        let data: &'a Bytes = self.data;
        let s = &data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, Error> {
        self.need(n)?;
        let b = self.data.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    pub(crate) fn rest(&mut self) -> Bytes {
        let b = self.data.slice(self.pos..);
        self.pos = self.data.len();
        b
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.slice(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        let s = self.slice(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub(crate) fn u24(&mut self) -> Result<u32, Error> {
        let s = self.slice(3)?;
        Ok(u32::from_be_bytes([0, s[0], s[1], s[2]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let s = self.slice(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
}
