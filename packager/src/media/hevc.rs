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
        let f = SpsFields::parse(nal)?;
        Ok(HevcSps {
            profile: f.profile,
            level: f.level,
            chroma_format: f.chroma_format,
            bit_depth: f.bit_depth,
            width: f.width,
            height: f.height,
        })
    }
}

/// Everything `hvcC` needs from an SPS, plus its id.
#[derive(Debug, Clone, Copy)]
struct SpsFields {
    sps_id: u32,
    max_sub_layers: u8,
    temporal_id_nesting: bool,
    profile_space: u8,
    high_tier: bool,
    profile: u8,
    compatibility: u32,
    constraints: u64,
    level: u8,
    chroma_format: u8,
    bit_depth: u8,
    bit_depth_chroma: Option<u8>,
    width: u32,
    height: u32,
}

impl SpsFields {
    fn parse(nal: &[u8]) -> Result<SpsFields, Error> {
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
        let temporal_id_nesting = r.bit()?;
        // profile_tier_level(1, max_sub_layers_minus1)
        let profile_space = r.bits(2)? as u8;
        let high_tier = r.bit()?;
        let profile = r.bits(5)? as u8;
        let compatibility = r.bits(32)?;
        let constraints = (u64::from(r.bits(16)?) << 32) | u64::from(r.bits(32)?);
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
        let sps_id = r.ue()?;
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
        let bit_depth_chroma = r.ue().ok().map(|d| d.saturating_add(8).min(255) as u8);
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
        Ok(SpsFields {
            sps_id,
            max_sub_layers: max_sub_layers_minus1 as u8 + 1,
            temporal_id_nesting,
            profile_space,
            high_tier,
            profile,
            compatibility,
            constraints,
            level,
            chroma_format: chroma_format as u8,
            bit_depth,
            bit_depth_chroma,
            width: (full_w - cut_w) as u32,
            height: (full_h - cut_h) as u32,
        })
    }
}

/// The NAL unit type of an HEVC NAL unit (from its first header byte).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3f)
}

/// The parameter set id of an HEVC VPS (`vps_video_parameter_set_id`),
/// SPS (`sps_seq_parameter_set_id`) or PPS (`pps_pic_parameter_set_id`)
/// NAL unit, header included, still escaped.
pub fn parameter_set_id(nal: &[u8]) -> Result<u32, Error> {
    const WHAT: &str = "HEVC parameter set";
    match nal_type(nal) {
        Some(NAL_VPS) => {
            if nal.len() < 3 {
                return Err(Error::Truncated {
                    what: WHAT,
                    needed: 3,
                    had: nal.len(),
                });
            }
            Ok(u32::from(nal[2] >> 4))
        }
        Some(NAL_SPS) => {
            let id = SpsFields::parse(nal)?.sps_id;
            if id > 15 {
                return Err(Error::InvalidBitstream {
                    what: WHAT,
                    reason: "sps_seq_parameter_set_id above 15",
                });
            }
            Ok(id)
        }
        Some(NAL_PPS) => {
            let rbsp = unescape_rbsp(&nal[..nal.len().min(16)]);
            let mut r = BitReader::new(&rbsp, WHAT);
            r.skip(16)?;
            let id = r.ue()?;
            if id > 63 {
                return Err(Error::InvalidBitstream {
                    what: WHAT,
                    reason: "pps_pic_parameter_set_id above 63",
                });
            }
            Ok(id)
        }
        _ => Err(Error::InvalidBitstream {
            what: WHAT,
            reason: "NAL unit type is not 32, 33 or 34",
        }),
    }
}

impl HevcConfig {
    /// An `hvcC` record (4-byte NAL lengths) from VPS, SPS and PPS NAL
    /// units as an Annex B stream carries them (MPEG-TS, RTP). The general
    /// profile/tier/level, chroma format, bit depths, sub-layer count and
    /// temporal id nesting come from the first SPS, which must parse;
    /// min_spatial_segmentation, parallelismType and the frame rate fields
    /// are written as 0 (unknown). Each array is marked complete.
    pub fn record_from_parameter_sets(
        vps: &[Bytes],
        sps: &[Bytes],
        pps: &[Bytes],
    ) -> Result<Vec<u8>, Error> {
        let invalid = |reason: &str| Error::InvalidConfig {
            what: "hvcC",
            reason: reason.into(),
        };
        let first = sps.first().ok_or_else(|| invalid("no SPS"))?;
        if vps.is_empty() || pps.is_empty() {
            return Err(invalid("no VPS or no PPS"));
        }
        let all = vps.iter().chain(sps).chain(pps);
        if all.clone().count() > 0xffff || all.clone().any(|n| n.len() > 0xffff || n.len() < 2) {
            return Err(invalid("parameter set shorter than its header or too long"));
        }
        let f = SpsFields::parse(first)?;
        let mut out = Vec::with_capacity(
            23 + 15
                + vps
                    .iter()
                    .chain(sps)
                    .chain(pps)
                    .map(|n| n.len() + 2)
                    .sum::<usize>(),
        );
        out.push(1);
        out.push((f.profile_space << 6) | (u8::from(f.high_tier) << 5) | (f.profile & 0x1f));
        out.extend_from_slice(&f.compatibility.to_be_bytes());
        out.extend_from_slice(&f.constraints.to_be_bytes()[2..]);
        out.push(f.level);
        out.extend_from_slice(&[0xf0, 0x00]); // min_spatial_segmentation_idc 0
        out.push(0xfc); // parallelismType 0
        out.push(0xfc | (f.chroma_format & 0x03));
        let luma = f.bit_depth.saturating_sub(8) & 0x07;
        let chroma = f.bit_depth_chroma.unwrap_or(f.bit_depth).saturating_sub(8) & 0x07;
        out.push(0xf8 | luma);
        out.push(0xf8 | chroma);
        out.extend_from_slice(&[0, 0]); // avgFrameRate
        // constantFrameRate 0, numTemporalLayers, temporalIdNested,
        // lengthSizeMinusOne 3.
        out.push(((f.max_sub_layers & 0x07) << 3) | (u8::from(f.temporal_id_nesting) << 2) | 0x03);
        out.push(3);
        for (t, nalus) in [(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)] {
            out.push(0x80 | t);
            out.extend_from_slice(&(nalus.len() as u16).to_be_bytes());
            for n in nalus {
                out.extend_from_slice(&(n.len() as u16).to_be_bytes());
                out.extend_from_slice(n);
            }
        }
        Ok(out)
    }
}
