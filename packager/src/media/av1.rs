//! AV1: the AV1CodecConfigurationRecord (`av1C`, AV1-ISOBMFF 2.3) and the
//! maximum frame size from the sequence header OBU it carries (AV1 spec
//! 5.5).
use bytes::Bytes;

use super::bits::BitReader;
use crate::Error;

/// OBU type of a sequence header.
pub const OBU_SEQUENCE_HEADER: u8 = 1;

/// A parsed `av1C` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Av1Config {
    /// seq_profile (0 Main, 1 High, 2 Professional).
    pub profile: u8,
    /// seq_level_idx_0 (level = 2 + idx/4 . idx%4: 8 = level 4.0).
    pub level: u8,
    /// seq_tier_0.
    pub high_tier: bool,
    /// Bit depth (8, 10 or 12).
    pub bit_depth: u8,
    /// mono_chrome.
    pub monochrome: bool,
    /// chroma_subsampling_x / _y.
    pub chroma_subsampling: (bool, bool),
    /// configOBUs: the sequence header OBU (and metadata OBUs), a slice of
    /// the record.
    pub config_obus: Bytes,
    /// max_frame_width/height from the sequence header, when it parses.
    pub max_frame_size: Option<(u32, u32)>,
}

impl Av1Config {
    /// Parse an `av1C` record.
    pub fn parse(record: &Bytes) -> Result<Av1Config, Error> {
        const WHAT: &str = "av1C";
        if record.len() < 4 {
            return Err(Error::Truncated {
                what: WHAT,
                needed: 4,
                had: record.len(),
            });
        }
        if record[0] != 0x81 {
            return Err(Error::InvalidConfig {
                what: WHAT,
                reason: format!("marker/version byte 0x{:02x}, expected 0x81", record[0]),
            });
        }
        let b1 = record[1];
        let b2 = record[2];
        let high_bitdepth = b2 & 0x40 != 0;
        let twelve_bit = b2 & 0x20 != 0;
        let config_obus = record.slice(4..);
        let max_frame_size = sequence_header_frame_size(&config_obus).ok().flatten();
        Ok(Av1Config {
            profile: b1 >> 5,
            level: b1 & 0x1f,
            high_tier: b2 & 0x80 != 0,
            bit_depth: match (high_bitdepth, twelve_bit) {
                (false, _) => 8,
                (true, false) => 10,
                (true, true) => 12,
            },
            monochrome: b2 & 0x10 != 0,
            chroma_subsampling: (b2 & 0x08 != 0, b2 & 0x04 != 0),
            config_obus,
            max_frame_size,
        })
    }
}

fn leb128(data: &[u8], pos: &mut usize) -> Result<u64, Error> {
    let mut v: u64 = 0;
    for i in 0..8 {
        let Some(&b) = data.get(*pos) else {
            return Err(Error::Truncated {
                what: "AV1 OBU size",
                needed: *pos + 1,
                had: data.len(),
            });
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::InvalidBitstream {
        what: "AV1 OBU size",
        reason: "leb128 longer than 8 bytes",
    })
}

/// Find the sequence header OBU in low-overhead OBUs and read its
/// max_frame_width/height.
fn sequence_header_frame_size(obus: &[u8]) -> Result<Option<(u32, u32)>, Error> {
    let mut pos = 0;
    while pos < obus.len() {
        let header = obus[pos];
        pos += 1;
        let obu_type = (header >> 3) & 0x0f;
        if header & 0x04 != 0 {
            pos += 1; // extension header
        }
        let size = if header & 0x02 != 0 {
            leb128(obus, &mut pos)?
        } else {
            (obus.len().saturating_sub(pos)) as u64
        };
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| pos.checked_add(s))
            .filter(|&e| e <= obus.len())
            .ok_or(Error::Truncated {
                what: "AV1 OBU",
                needed: pos.saturating_add(size as usize),
                had: obus.len(),
            })?;
        if obu_type == OBU_SEQUENCE_HEADER {
            return parse_sequence_header(&obus[pos..end]).map(Some);
        }
        pos = end;
    }
    Ok(None)
}

fn parse_sequence_header(data: &[u8]) -> Result<(u32, u32), Error> {
    let mut r = BitReader::new(data, "AV1 sequence header");
    let _profile = r.bits(3)?;
    let _still = r.bit()?;
    let reduced = r.bit()?;
    if reduced {
        r.skip(5)?;
    } else {
        let timing_info = r.bit()?;
        let mut decoder_model_info = false;
        let mut buffer_delay_len = 0;
        if timing_info {
            r.skip(64)?;
            if r.bit()? {
                r.uvlc()?;
            }
            decoder_model_info = r.bit()?;
            if decoder_model_info {
                buffer_delay_len = r.bits(5)? + 1;
                r.skip(32 + 5 + 5)?;
            }
        }
        let initial_display_delay = r.bit()?;
        let op_count = r.bits(5)? + 1;
        for _ in 0..op_count {
            r.skip(12)?;
            let level = r.bits(5)?;
            if level > 7 {
                r.skip(1)?;
            }
            if decoder_model_info && r.bit()? {
                r.skip(2 * buffer_delay_len as usize + 1)?;
            }
            if initial_display_delay && r.bit()? {
                r.skip(4)?;
            }
        }
    }
    let wbits = r.bits(4)? + 1;
    let hbits = r.bits(4)? + 1;
    let w = r.bits(wbits)?;
    let h = r.bits(hbits)?;
    Ok((w.saturating_add(1), h.saturating_add(1)))
}
