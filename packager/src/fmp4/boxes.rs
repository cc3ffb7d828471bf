//! Writing ISO BMFF boxes into a `Vec<u8>`: a size placeholder, the body,
//! then the size patched in.
use crate::Error;

/// The `what` of errors from this module.
pub(crate) const WHAT: &str = "fMP4 mux";

pub(crate) fn err(reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        what: WHAT,
        reason: reason.into(),
    }
}

/// Start a box: writes a zero size and the type; returns where it starts.
pub(crate) fn open(out: &mut Vec<u8>, typ: &[u8; 4]) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(typ);
    start
}

/// Start a full box (version and 24-bit flags after the type).
pub(crate) fn open_full(out: &mut Vec<u8>, typ: &[u8; 4], version: u8, flags: u32) -> usize {
    let start = open(out, typ);
    out.extend_from_slice(&(u32::from(version) << 24 | (flags & 0x00ff_ffff)).to_be_bytes());
    start
}

/// Patch the size of the box started at `start` to reach the end of `out`.
pub(crate) fn close(out: &mut [u8], start: usize) -> Result<(), Error> {
    let size = u32::try_from(out.len() - start).map_err(|_| err("box larger than 4 GiB"))?;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

pub(crate) fn u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// The unity transformation matrix of `mvhd` and `tkhd`.
pub(crate) fn matrix(out: &mut Vec<u8>) {
    for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
        u32(out, v);
    }
}

/// An MPEG-4 descriptor (ISO/IEC 14496-1 8.3.3): tag, length in the
/// expandable 7-bit form (as few bytes as needed), body.
pub(crate) fn descriptor(out: &mut Vec<u8>, tag: u8, body: &[u8]) -> Result<(), Error> {
    let len = body.len();
    if len >= 1 << 28 {
        return Err(err("MPEG-4 descriptor longer than 2^28 bytes"));
    }
    out.push(tag);
    let mut groups = 1;
    while groups < 4 && len >> (7 * groups) != 0 {
        groups += 1;
    }
    for i in (0..groups).rev() {
        let b = (len >> (7 * i)) as u8 & 0x7f;
        out.push(if i > 0 { b | 0x80 } else { b });
    }
    out.extend_from_slice(body);
    Ok(())
}
