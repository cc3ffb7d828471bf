//! The media model: [`Track`]s and the [`Frame`]s that belong to them.
//!
//! Every demuxer in this crate turns its container into tracks and frames,
//! and every muxer turns tracks and frames back into a container; protocols
//! (RTMP, RTSP, SRT) hand the engine the same two types. See
//! `docs/media.md` for the model in prose.
//!
//! - **Time.** A track has a `timebase` in ticks per second; a frame's `dts`
//!   and `pts` count that track's ticks (1000 for FLV/RTMP sources, 90000
//!   for MPEG-TS/RTP video). `pts - dts` is the composition offset and is
//!   never negative for well-formed input.
//! - **Payloads** are `bytes::Bytes`, normally slices of the buffer the
//!   demuxer read, in the "MP4 form" of each codec (see [`Codec`]).
//! - **Codec configuration** (avcC, hvcC, AudioSpecificConfig, Opus head,
//!   av1C) travels in [`Track::config`] exactly as the MP4 sample entry box
//!   payload would hold it, and [`TrackInfo`] is what parsing it revealed.

mod aac;
mod av1;
mod bits;
mod h264;
mod hevc;
mod mp3;
mod opus;
#[cfg(test)]
mod proptests;
pub(crate) mod reader;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use aac::{AudioSpecificConfig, SAMPLE_RATES as AAC_SAMPLE_RATES};
pub use av1::{Av1Config, OBU_SEQUENCE_HEADER};
pub use h264::{AvcConfig, AvcSps, pps_id as avc_pps_id, sps_id as avc_sps_id};
pub use hevc::{
    HevcConfig, HevcNalArray, HevcSps, NAL_PPS, NAL_SPS, NAL_VPS, nal_type as hevc_nal_type,
    parameter_set_id as hevc_parameter_set_id,
};
pub use mp3::{MpegAudioFrame, MpegAudioHeader};
pub use opus::OpusHead;

use crate::Error;

/// Whether a track carries pictures or sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
}

/// A codec, with the payload format its [`Frame`]s carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// H.264/AVC. Payload: one access unit as NAL units each prefixed with
    /// its big-endian length (AVCC form, `nal_length_size` bytes, 4 in
    /// practice), as in FLV and MP4. Config: `avcC` record.
    H264,
    /// H.265/HEVC. Payload: length-prefixed NAL units as for H.264.
    /// Config: `hvcC` record.
    H265,
    /// AV1. Payload: one temporal unit as low-overhead OBUs (each with
    /// `obu_has_size_field`), as in MP4 and Enhanced RTMP. Config: `av1C`.
    Av1,
    /// VP9. Payload: one frame (or superframe). Config: `vpcC` (optional).
    Vp9,
    /// AAC. Payload: one raw access unit (no ADTS header). Config:
    /// AudioSpecificConfig.
    Aac,
    /// MP3 (MPEG-1/2 audio layer III). Payload: whole MPEG audio frames,
    /// headers included. No config.
    Mp3,
    /// Opus. Payload: one Opus packet. Config: the identification header,
    /// `OpusHead` (RFC 7845) or `dOps` form.
    Opus,
    /// AC-3. Payload: whole syncframes. No config.
    Ac3,
    /// E-AC-3. Payload: whole syncframes. No config.
    Eac3,
}

impl Codec {
    /// Video or audio.
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Av1 | Codec::Vp9 => MediaKind::Video,
            Codec::Aac | Codec::Mp3 | Codec::Opus | Codec::Ac3 | Codec::Eac3 => MediaKind::Audio,
        }
    }

    /// True for video codecs.
    pub fn is_video(self) -> bool {
        self.kind() == MediaKind::Video
    }

    /// True when frames cannot be decoded without [`Track::config`].
    pub fn needs_config(self) -> bool {
        matches!(self, Codec::H264 | Codec::H265 | Codec::Av1 | Codec::Aac)
    }

    /// A short lower-case name (`h264`, `aac`, …) for logs and APIs.
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
            Codec::Av1 => "av1",
            Codec::Vp9 => "vp9",
            Codec::Aac => "aac",
            Codec::Mp3 => "mp3",
            Codec::Opus => "opus",
            Codec::Ac3 => "ac3",
            Codec::Eac3 => "eac3",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the codec configuration (or the container) says about a track.
/// Everything is optional: a field is `None` when nothing said it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackInfo {
    /// Picture width in pixels (after cropping).
    pub width: Option<u32>,
    /// Picture height in pixels (after cropping).
    pub height: Option<u32>,
    /// Frames per second as a fraction (numerator, denominator).
    pub frame_rate: Option<(u32, u32)>,
    /// Codec profile: H.264 profile_idc, HEVC general_profile_idc, AV1
    /// seq_profile, AAC audioObjectType (as signalled first).
    pub profile: Option<u8>,
    /// Codec level: H.264 level_idc, HEVC general_level_idc, AV1
    /// seq_level_idx_0.
    pub level: Option<u8>,
    /// Luma bit depth of video.
    pub bit_depth: Option<u8>,
    /// Bytes in each NAL unit length prefix (H.264/HEVC).
    pub nal_length_size: Option<u8>,
    /// Audio output sample rate in Hz (48000 for Opus).
    pub sample_rate: Option<u32>,
    /// Audio output channels.
    pub channels: Option<u8>,
    /// Opus: samples at 48 kHz to drop at the start.
    pub pre_skip: Option<u16>,
    /// Opus: the encoder's input sample rate (informational).
    pub input_sample_rate: Option<u32>,
}

impl TrackInfo {
    /// Fill the fields of `self` that are `None` from `other`.
    pub fn fill_from(&mut self, other: &TrackInfo) {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = other.$f; } )* };
        }
        fill!(
            width,
            height,
            frame_rate,
            profile,
            level,
            bit_depth,
            nal_length_size,
            sample_rate,
            channels,
            pre_skip,
            input_sample_rate
        );
    }
}

/// One elementary stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Identifier, unique within a stream (FLV demux: 0 video, 1 audio).
    pub id: u32,
    /// The codec.
    pub codec: Codec,
    /// Ticks per second of [`Frame::dts`]/[`Frame::pts`]; 1000 for FLV/RTMP.
    pub timebase: u32,
    /// Codec configuration in its MP4 box-payload form: `avcC`, `hvcC`,
    /// `av1C`, AudioSpecificConfig, `OpusHead`/`dOps`. `None` for codecs
    /// without one (MP3, AC-3) or before it arrived.
    pub config: Option<Bytes>,
    /// What parsing `config` (and container metadata) revealed.
    pub info: TrackInfo,
}

impl Track {
    /// A track without configuration.
    pub fn new(id: u32, codec: Codec, timebase: u32) -> Track {
        Track {
            id,
            codec,
            timebase,
            config: None,
            info: TrackInfo::default(),
        }
    }

    /// A track with a configuration record, parsed into `info`.
    pub fn with_config(
        id: u32,
        codec: Codec,
        timebase: u32,
        config: Bytes,
    ) -> Result<Track, Error> {
        let info = parse_config(codec, &config)?;
        Ok(Track {
            id,
            codec,
            timebase,
            config: Some(config),
            info,
        })
    }

    /// Video or audio.
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }
}

/// One access unit of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// [`Track::id`] of the track it belongs to.
    pub track: u32,
    /// Decode timestamp in the track's timebase.
    pub dts: i64,
    /// Presentation timestamp in the track's timebase (`>= dts` when well
    /// formed; audio has `pts == dts`).
    pub pts: i64,
    /// A random access point: decoding can start here (IDR/IRAP/key frame;
    /// every audio frame).
    pub keyframe: bool,
    /// The coded data, in the form [`Codec`] documents for the track's codec.
    pub payload: Bytes,
}

impl Frame {
    /// `pts - dts`, the composition time offset.
    pub fn cts(&self) -> i64 {
        self.pts.saturating_sub(self.dts)
    }
}

/// Convert `ts` from `from` ticks per second to `to`, rounding to nearest
/// (half away from zero). Saturates instead of overflowing; a zero `from`
/// gives 0.
pub fn rescale(ts: i64, from: u32, to: u32) -> i64 {
    if from == to {
        return ts;
    }
    if from == 0 {
        return 0;
    }
    let num = i128::from(ts) * i128::from(to);
    let den = i128::from(from);
    let half = den / 2;
    let q = if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    };
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Parse a codec configuration record into [`TrackInfo`].
///
/// H.264 and HEVC also parse the first SPS for the picture size (and, for
/// H.264, the frame rate when the VUI has timing info); an SPS that does not
/// parse is an error. Codecs without a configuration this crate interprets
/// (VP9, MP3, AC-3, E-AC-3) give an empty `TrackInfo`.
pub fn parse_config(codec: Codec, config: &Bytes) -> Result<TrackInfo, Error> {
    let mut info = TrackInfo::default();
    match codec {
        Codec::H264 => {
            let c = AvcConfig::parse(config)?;
            info.profile = Some(c.profile);
            info.level = Some(c.level);
            info.nal_length_size = Some(c.nal_length_size);
            if let Some(sps) = c.sps.first() {
                let sps = AvcSps::parse(sps)?;
                info.width = Some(sps.width);
                info.height = Some(sps.height);
                info.bit_depth = Some(sps.bit_depth);
                info.frame_rate = sps.frame_rate;
            }
        }
        Codec::H265 => {
            let c = HevcConfig::parse(config)?;
            info.profile = Some(c.profile);
            info.level = Some(c.level);
            info.bit_depth = Some(c.bit_depth);
            info.nal_length_size = Some(c.nal_length_size);
            if let Some(sps) = c.nalus(NAL_SPS).next() {
                let sps = HevcSps::parse(sps)?;
                info.width = Some(sps.width);
                info.height = Some(sps.height);
            }
        }
        Codec::Av1 => {
            let c = Av1Config::parse(config)?;
            info.profile = Some(c.profile);
            info.level = Some(c.level);
            info.bit_depth = Some(c.bit_depth);
            if let Some((w, h)) = c.max_frame_size {
                info.width = Some(w);
                info.height = Some(h);
            }
        }
        Codec::Aac => {
            let c = AudioSpecificConfig::parse(config)?;
            info.profile = Some(c.object_type);
            info.sample_rate = Some(c.sample_rate);
            info.channels = c.channels;
        }
        Codec::Opus => {
            let h = OpusHead::parse(config)?;
            info.sample_rate = Some(48000);
            info.channels = Some(h.channels);
            info.pre_skip = Some(h.pre_skip);
            info.input_sample_rate = Some(h.input_sample_rate);
        }
        Codec::Vp9 | Codec::Mp3 | Codec::Ac3 | Codec::Eac3 => {}
    }
    Ok(info)
}
