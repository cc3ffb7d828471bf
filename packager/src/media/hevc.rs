//! HEVC: the HEVCDecoderConfigurationRecord (`hvcC`, ISO/IEC 14496-15
//! 8.3.3.1) and the picture size from the sequence parameter set (ITU-T
//! H.265 7.3.2.2).
use bytes::Bytes;

use super::bits::{BitReader, unescape_rbsp};
use super::reader::ByteReader;
use crate::Error;

/// NAL unit type of a video parameter set.
pub const NAL_VPS: u8 = 32;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 34;

/// One array of an `hvcC` record: NAL units of one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcNalArray {
    /// `array_completeness`.
    pub complete: bool,
    /// NAL unit type (32 VPS, 33 SPS, 34 PPS, 39/40 SEI).
    pub nal_type: u8,
    /// The NAL units, header included, as slices of the record.
    pub nalus: Vec<Bytes>,
}

/// A parsed `hvcC` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcConfig {
    /// general_profile_space (0 in practice).
    pub profile_space: u8,
    /// general_tier_flag (false = Main tier).
    pub high_tier: bool,
    /// general_profile_idc (1 Main, 2 Main 10, 3 Main Still Picture, 4 RExt).
    pub profile: u8,
    /// general_profile_compatibility_flags.
    pub compatibility: u32,
    /// general_constraint_indicator_flags (48 bits).
    pub constraints: u64,
    /// general_level_idc (30 × level: 93 = level 3.1, 120 = level 4).
    pub level: u8,
    /// chroma_format_idc.
    pub chroma_format: u8,
    /// Luma bit depth.
    pub bit_depth: u8,
    /// Bytes in each NAL unit length prefix of the samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// Parameter set (and SEI) arrays.
    pub arrays: Vec<HevcNalArray>,
}

impl HevcConfig {
    /// Parse an `hvcC` record.
    pub fn parse(record: &Bytes) -> Result<HevcConfig, Error> {
        let mut r = ByteReader::new(record, "hvcC");
        let version = r.u8()?;
        if version != 1 {
            return Err(Error::InvalidConfig {
                what: "hvcC",
                reason: format!("configurationVersion {version}, expected 1"),
            });
        }
        let b = r.u8()?;
        let compatibility = r.u32()?;
        let constraints = (u64::from(r.u16()?) << 32) | u64::from(r.u32()?);
        let level = r.u8()?;
        let _min_spatial_segmentation = r.u16()?;
        let _parallelism = r.u8()?;
        let chroma_format = r.u8()? & 0x03;
        let bit_depth = (r.u8()? & 0x07) + 8;
        let _bit_depth_chroma = r.u8()?;
        let _avg_frame_rate = r.u16()?;
        let nal_length_size = (r.u8()? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(Error::InvalidConfig {
                what: "hvcC",
                reason: "lengthSizeMinusOne 2 (3-byte lengths) is not allowed".into(),
            });
        }
        let num_arrays = r.u8()?;
        let mut arrays = Vec::with_capacity(usize::from(num_arrays).min(r.remaining() / 3));
        for _ in 0..num_arrays {
            let t = r.u8()?;
            let n = r.u16()?;
            let mut nalus = Vec::with_capacity(usize::from(n).min(r.remaining() / 2));
            for _ in 0..n {
                let len = r.u16()?;
                nalus.push(r.bytes(len.into())?);
            }
            arrays.push(HevcNalArray {
                complete: t & 0x80 != 0,
                nal_type: t & 0x3f,
                nalus,
            });
        }
        Ok(HevcConfig {
            profile_space: b >> 6,
            high_tier: b & 0x20 != 0,
            profile: b & 0x1f,
            compatibility,
            constraints,
            level,
            chroma_format,
            bit_depth,
            nal_length_size,
            arrays,
        })
    }

    /// The NAL units of one type, in record order.
    pub fn nalus(&self, nal_type: u8) -> impl Iterator<Item = &Bytes> {
        self.arrays
            .iter()
            .filter(move |a| a.nal_type == nal_type)
            .flat_map(|a| a.nalus.iter())
    }
}

/// What Spate reads from an HEVC sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcSps {
    /// general_profile_idc.
    pub profile: u8,
    /// general_level_idc.
    pub level: u8,
    /// chroma_format_idc.
    pub chroma_format: u8,
    /// Luma bit depth.
    pub bit_depth: u8,
    /// Width in pixels after the conformance window.
    pub width: u32,
    /// Height in pixels after the conformance window.
    pub height: u32,
}

impl HevcSps {
    /// Parse an SPS NAL unit (2-byte header included, emulation prevention
    /// not yet removed).
    pub fn parse(nal: &[u8]) -> Result<HevcSps, Error> {
        const WHAT: &str = "HEVC SPS";
        let rbsp = unescape_rbsp(nal);
        let mut r = BitReader::new(&rbsp, WHAT);
        let header = r.bits(16)?;
        if (header >> 9) & 0x3f != u32::from(NAL_SPS) {
            return Err(Error::InvalidBitstream {
                what: WHAT,
                reason: "NAL unit type is not 33 (SPS)",
            });
        }
        let _vps_id = r.bits(4)?;
        let max_sub_layers_minus1 = r.bits(3)?;
        let _temporal_id_nesting = r.bit()?;
        // profile_tier_level(1, max_sub_layers_minus1)
        let _profile_space_tier = r.bits(3)?;
        let profile = r.bits(5)? as u8;
        r.skip(32 + 4 + 43 + 1)?; // compatibility, source flags, constraints
        let level = r.bits(8)? as u8;
        let mut sub_profile = [false; 8];
        let mut sub_level = [false; 8];
        for i in 0..max_sub_layers_minus1 as usize {
            sub_profile[i] = r.bit()?;
            sub_level[i] = r.bit()?;
        }
        if max_sub_layers_minus1 > 0 {
            r.skip(2 * (8 - max_sub_layers_minus1 as usize))?;
        }
        for i in 0..max_sub_layers_minus1 as usize {
            if sub_profile[i] {
                r.skip(88)?;
            }
            if sub_level[i] {
                r.skip(8)?;
            }
        }
        let _sps_id = r.ue()?;
        let chroma_format = r.ue()?;
        if chroma_format > 3 {
            return Err(Error::InvalidBitstream {
                what: WHAT,
                reason: "chroma_format_idc above 3",
            });
        }
        let separate_colour_plane = chroma_format == 3 && r.bit()?;
        let full_w = u64::from(r.ue()?);
        let full_h = u64::from(r.ue()?);
        let (mut cl, mut cr, mut ct, mut cb) = (0u64, 0u64, 0u64, 0u64);
        if r.bit()? {
            cl = r.ue()?.into();
            cr = r.ue()?.into();
            ct = r.ue()?.into();
            cb = r.ue()?.into();
        }
        let bit_depth = r.ue()?.saturating_add(8).min(255) as u8;
        let (sub_w, sub_h) = if separate_colour_plane {
            (1, 1)
        } else {
            match chroma_format {
                1 => (2, 2),
                2 => (2, 1),
                _ => (1, 1),
            }
        };
        let cut_w = (cl + cr) * sub_w;
        let cut_h = (ct + cb) * sub_h;
        if full_w == 0 || full_h == 0 || cut_w >= full_w || cut_h >= full_h {
            return Err(Error::InvalidBitstream {
                what: WHAT,
                reason: "empty picture or conformance window larger than the picture",
            });
        }
        Ok(HevcSps {
            profile,
            level,
            chroma_format: chroma_format as u8,
            bit_depth,
            width: (full_w - cut_w) as u32,
            height: (full_h - cut_h) as u32,
        })
    }
}
