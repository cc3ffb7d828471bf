//! H.264: the AVCDecoderConfigurationRecord (`avcC`, ISO/IEC 14496-15
//! 5.3.3.1) and the sequence parameter set fields Spate needs (ITU-T H.264
//! 7.3.2.1.1).
use bytes::Bytes;

use super::bits::{BitReader, unescape_rbsp};
use super::reader::ByteReader;
use crate::Error;

/// A parsed `avcC` record. Parameter sets are slices of the record's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication` (profile_idc: 66 baseline, 77 main, 100 high…).
    pub profile: u8,
    /// `profile_compatibility` (the constraint_set flags).
    pub compatibility: u8,
    /// `AVCLevelIndication` (level_idc: 31 = level 3.1).
    pub level: u8,
    /// Bytes in each NAL unit length prefix of the samples (1, 2 or 4).
    pub nal_length_size: u8,
    /// Sequence parameter sets, each a whole NAL unit (header included).
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, each a whole NAL unit.
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// Parse an `avcC` record. Trailing high-profile fields (chroma format,
    /// bit depths, SPS extensions) are not interpreted.
    pub fn parse(record: &Bytes) -> Result<AvcConfig, Error> {
        let mut r = ByteReader::new(record, "avcC");
        let version = r.u8()?;
        if version != 1 {
            return Err(Error::InvalidConfig {
                what: "avcC",
                reason: format!("configurationVersion {version}, expected 1"),
            });
        }
        let profile = r.u8()?;
        let compatibility = r.u8()?;
        let level = r.u8()?;
        let nal_length_size = (r.u8()? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(Error::InvalidConfig {
                what: "avcC",
                reason: "lengthSizeMinusOne 2 (3-byte lengths) is not allowed".into(),
            });
        }
        let num_sps = r.u8()? & 0x1f;
        let mut sps = Vec::with_capacity(num_sps.into());
        for _ in 0..num_sps {
            let len = r.u16()?;
            sps.push(r.bytes(len.into())?);
        }
        let num_pps = r.u8()?;
        let mut pps = Vec::with_capacity(num_pps.min(32).into());
        for _ in 0..num_pps {
            let len = r.u16()?;
            pps.push(r.bytes(len.into())?);
        }
        Ok(AvcConfig {
            profile,
            compatibility,
            level,
            nal_length_size,
            sps,
            pps,
        })
    }

    /// Serialize as an `avcC` record (without the high-profile tail).
    pub fn to_record(&self) -> Vec<u8> {
        let mut out = vec![
            1,
            self.profile,
            self.compatibility,
            self.level,
            0xfc | (self.nal_length_size.clamp(1, 4) - 1),
            0xe0 | self.sps.len().min(31) as u8,
        ];
        for s in self.sps.iter().take(31) {
            out.extend_from_slice(&(s.len().min(0xffff) as u16).to_be_bytes());
            out.extend_from_slice(&s[..s.len().min(0xffff)]);
        }
        out.push(self.pps.len().min(255) as u8);
        for p in self.pps.iter().take(255) {
            out.extend_from_slice(&(p.len().min(0xffff) as u16).to_be_bytes());
            out.extend_from_slice(&p[..p.len().min(0xffff)]);
        }
        out
    }
}

/// What Spate reads from an H.264 sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvcSps {
    /// profile_idc.
    pub profile: u8,
    /// The constraint_set flags byte.
    pub constraints: u8,
    /// level_idc.
    pub level: u8,
    /// chroma_format_idc (1 = 4:2:0).
    pub chroma_format: u8,
    /// Luma bit depth.
    pub bit_depth: u8,
    /// Width in pixels after cropping.
    pub width: u32,
    /// Height in pixels after cropping.
    pub height: u32,
    /// Frame rate from the VUI timing info, as (time_scale, 2 *
    /// num_units_in_tick), when present.
    pub frame_rate: Option<(u32, u32)>,
}

impl AvcSps {
    /// Parse an SPS NAL unit (header byte included, emulation prevention not
    /// yet removed).
    pub fn parse(nal: &[u8]) -> Result<AvcSps, Error> {
        const WHAT: &str = "H.264 SPS";
        let rbsp = unescape_rbsp(nal);
        let mut r = BitReader::new(&rbsp, WHAT);
        let header = r.bits(8)?;
        if header & 0x1f != 7 {
            return Err(Error::InvalidBitstream {
                what: WHAT,
                reason: "NAL unit type is not 7 (SPS)",
            });
        }
        let profile = r.bits(8)? as u8;
        let constraints = r.bits(8)? as u8;
        let level = r.bits(8)? as u8;
        let _sps_id = r.ue()?;
        let mut chroma_format = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth = 8;
        if matches!(
            profile,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            chroma_format = r.ue()?;
            if chroma_format > 3 {
                return Err(Error::InvalidBitstream {
                    what: WHAT,
                    reason: "chroma_format_idc above 3",
                });
            }
            if chroma_format == 3 {
                separate_colour_plane = r.bit()?;
            }
            bit_depth = r.ue()?.saturating_add(8);
            let _bit_depth_chroma = r.ue()?;
            let _qpprime_bypass = r.bit()?;
            if r.bit()? {
                let lists = if chroma_format == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        let _log2_max_frame_num = r.ue()?;
        match r.ue()? {
            0 => {
                let _log2_max_poc_lsb = r.ue()?;
            }
            1 => {
                let _delta_always_zero = r.bit()?;
                let _offset_non_ref = r.se()?;
                let _offset_top_bottom = r.se()?;
                let n = r.ue()?;
                if n > 255 {
                    return Err(Error::InvalidBitstream {
                        what: WHAT,
                        reason: "num_ref_frames_in_pic_order_cnt_cycle above 255",
                    });
                }
                for _ in 0..n {
                    r.se()?;
                }
            }
            2 => {}
            _ => {
                return Err(Error::InvalidBitstream {
                    what: WHAT,
                    reason: "pic_order_cnt_type above 2",
                });
            }
        }
        let _max_ref_frames = r.ue()?;
        let _gaps = r.bit()?;
        let width_mbs = u64::from(r.ue()?) + 1;
        let height_map_units = u64::from(r.ue()?) + 1;
        let frame_mbs_only = r.bit()?;
        if !frame_mbs_only {
            let _mbaff = r.bit()?;
        }
        let _direct_8x8 = r.bit()?;
        let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
        if r.bit()? {
            crop_l = r.ue()?.into();
            crop_r = r.ue()?.into();
            crop_t = r.ue()?.into();
            crop_b = r.ue()?.into();
        }
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let (crop_x, crop_y) = if separate_colour_plane || chroma_format == 0 {
            (1, field_factor)
        } else {
            let sub_w = if chroma_format == 3 { 1 } else { 2 };
            let sub_h = if chroma_format == 1 { 2 } else { 1 };
            (sub_w, sub_h * field_factor)
        };
        let full_w = width_mbs * 16;
        let full_h = height_map_units * 16 * field_factor;
        let cut_w = (crop_l + crop_r) * crop_x;
        let cut_h = (crop_t + crop_b) * crop_y;
        if cut_w >= full_w || cut_h >= full_h {
            return Err(Error::InvalidBitstream {
                what: WHAT,
                reason: "frame cropping larger than the picture",
            });
        }
        let width = u32::try_from(full_w - cut_w).map_err(|_| Error::InvalidBitstream {
            what: WHAT,
            reason: "picture width out of range",
        })?;
        let height = u32::try_from(full_h - cut_h).map_err(|_| Error::InvalidBitstream {
            what: WHAT,
            reason: "picture height out of range",
        })?;
        // The VUI is optional and only read for the frame rate; a VUI that
        // does not parse leaves it unknown.
        let frame_rate = match r.bit() {
            Ok(true) => vui_frame_rate(&mut r).ok().flatten(),
            _ => None,
        };
        Ok(AvcSps {
            profile,
            constraints,
            level,
            chroma_format: chroma_format as u8,
            bit_depth: bit_depth.min(255) as u8,
            width,
            height,
            frame_rate,
        })
    }
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), Error> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<(u32, u32)>, Error> {
    if r.bit()? {
        // aspect_ratio_info_present_flag
        if r.bits(8)? == 255 {
            r.skip(32)?; // sar_width, sar_height
        }
    }
    if r.bit()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.bit()? {
        r.skip(4)?; // video_format, video_full_range_flag
        if r.bit()? {
            r.skip(24)?; // colour description
        }
    }
    if r.bit()? {
        r.ue()?;
        r.ue()?;
    }
    if !r.bit()? {
        return Ok(None);
    }
    let num_units_in_tick = r.bits(32)?;
    let time_scale = r.bits(32)?;
    if num_units_in_tick == 0 || time_scale == 0 {
        return Ok(None);
    }
    Ok(num_units_in_tick
        .checked_mul(2)
        .map(|den| (time_scale, den)))
}

/// The `seq_parameter_set_id` of an H.264 SPS NAL unit (header included,
/// still escaped).
pub fn sps_id(nal: &[u8]) -> Result<u32, Error> {
    const WHAT: &str = "H.264 SPS";
    // header, profile_idc, constraint flags, level_idc, then ue(v): a
    // handful of bytes is enough.
    let rbsp = unescape_rbsp(&nal[..nal.len().min(16)]);
    let mut r = BitReader::new(&rbsp, WHAT);
    if r.bits(8)? & 0x1f != 7 {
        return Err(Error::InvalidBitstream {
            what: WHAT,
            reason: "NAL unit type is not 7 (SPS)",
        });
    }
    r.skip(24)?;
    let id = r.ue()?;
    if id > 31 {
        return Err(Error::InvalidBitstream {
            what: WHAT,
            reason: "seq_parameter_set_id above 31",
        });
    }
    Ok(id)
}

/// The `pic_parameter_set_id` of an H.264 PPS NAL unit (header included,
/// still escaped).
pub fn pps_id(nal: &[u8]) -> Result<u32, Error> {
    const WHAT: &str = "H.264 PPS";
    let rbsp = unescape_rbsp(&nal[..nal.len().min(16)]);
    let mut r = BitReader::new(&rbsp, WHAT);
    if r.bits(8)? & 0x1f != 8 {
        return Err(Error::InvalidBitstream {
            what: WHAT,
            reason: "NAL unit type is not 8 (PPS)",
        });
    }
    let id = r.ue()?;
    if id > 255 {
        return Err(Error::InvalidBitstream {
            what: WHAT,
            reason: "pic_parameter_set_id above 255",
        });
    }
    Ok(id)
}

impl AvcConfig {
    /// An `avcC` record (4-byte NAL lengths) from SPS and PPS NAL units, as
    /// an Annex B stream carries them (MPEG-TS, RTP): profile,
    /// compatibility and level from the first SPS, which must parse; for
    /// the high profiles the tail (chroma_format, bit depths, no SPS
    /// extensions) that ISO/IEC 14496-15 requires, as ffmpeg writes it.
    pub fn record_from_parameter_sets(sps: &[Bytes], pps: &[Bytes]) -> Result<Vec<u8>, Error> {
        let invalid = |reason: &str| Error::InvalidConfig {
            what: "avcC",
            reason: reason.into(),
        };
        let first = sps.first().ok_or_else(|| invalid("no SPS"))?;
        if pps.is_empty() {
            return Err(invalid("no PPS"));
        }
        if sps.len() > 31 || pps.len() > 255 {
            return Err(invalid("too many parameter sets"));
        }
        if sps
            .iter()
            .chain(pps)
            .any(|n| n.len() > 0xffff || n.is_empty())
        {
            return Err(invalid("parameter set empty or longer than 65535 bytes"));
        }
        let parsed = AvcSps::parse(first)?;
        let c = AvcConfig {
            profile: parsed.profile,
            compatibility: parsed.constraints,
            level: parsed.level,
            nal_length_size: 4,
            sps: sps.to_vec(),
            pps: pps.to_vec(),
        };
        let mut out = c.to_record();
        if !matches!(parsed.profile, 66 | 77 | 88) {
            let depth = parsed.bit_depth.saturating_sub(8) & 0x07;
            out.extend_from_slice(&[
                0xfc | (parsed.chroma_format & 0x03),
                0xf8 | depth,
                0xf8 | depth,
                0,
            ]);
        }
        Ok(out)
    }
}
