//! Interpreting one FLV tag body (= one RTMP audio/video/data message).
use bytes::Bytes;

use crate::Error;
use crate::amf0::{self, Amf0Value};
use crate::media::Codec;
use crate::media::reader::ByteReader;

/// FourCC values of Enhanced RTMP, as big-endian numbers.
pub mod fourcc {
    /// `avc1`: H.264.
    pub const AVC1: u32 = u32::from_be_bytes(*b"avc1");
    /// `hvc1`: HEVC.
    pub const HVC1: u32 = u32::from_be_bytes(*b"hvc1");
    /// `av01`: AV1.
    pub const AV01: u32 = u32::from_be_bytes(*b"av01");
    /// `vp09`: VP9.
    pub const VP09: u32 = u32::from_be_bytes(*b"vp09");
    /// `mp4a`: AAC.
    pub const MP4A: u32 = u32::from_be_bytes(*b"mp4a");
    /// `Opus`.
    pub const OPUS: u32 = u32::from_be_bytes(*b"Opus");
    /// `.mp3`.
    pub const MP3: u32 = u32::from_be_bytes(*b".mp3");
    /// `ac-3`.
    pub const AC3: u32 = u32::from_be_bytes(*b"ac-3");
    /// `ec-3`.
    pub const EC3: u32 = u32::from_be_bytes(*b"ec-3");
}

/// Legacy VideoCodecId of H.264.
pub(crate) const CODEC_ID_AVC: u8 = 7;
/// Legacy VideoCodecId some encoders (SRS, OBS forks) use for HEVC.
pub(crate) const CODEC_ID_HEVC: u8 = 12;
/// Legacy SoundFormat values.
pub(crate) const SOUND_MP3: u8 = 2;
pub(crate) const SOUND_EX_HEADER: u8 = 9;
pub(crate) const SOUND_AAC: u8 = 10;
pub(crate) const SOUND_MP3_8K: u8 = 14;
/// VideoFrameType values.
pub(crate) const FRAME_KEY: u8 = 1;
pub(crate) const FRAME_INTER: u8 = 2;
pub(crate) const FRAME_GENERATED_KEY: u8 = 4;
pub(crate) const FRAME_COMMAND: u8 = 5;

/// What a video tag carries.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoPacket {
    /// Decoder configuration (avcC, hvcC, av1C, vpcC).
    SequenceStart(Bytes),
    /// Coded data of one frame, with its composition time offset in ms
    /// (0 where the format has none: CodedFramesX, AV1, VP9).
    CodedFrames {
        /// pts - dts, milliseconds (SI24).
        composition_time: i32,
        /// The frame, in the form [`Codec`] documents.
        data: Bytes,
    },
    /// End of sequence.
    SequenceEnd,
    /// Enhanced RTMP video metadata (AMF0 name/value pairs, e.g.
    /// `colorInfo`).
    Metadata(Vec<Amf0Value>),
    /// Enhanced RTMP MPEG2TSSequenceStart (e.g. an AV1 video descriptor).
    Mpeg2TsSequenceStart(Bytes),
    /// A video command frame (FrameType 5): 0 start seek, 1 end seek.
    Command(u8),
}

/// One interpreted video tag.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoTag {
    /// The tag's timestamp (dts), milliseconds.
    pub timestamp: u32,
    /// VideoFrameType: 1 key, 2 inter, 3 disposable, 4 generated key,
    /// 5 command.
    pub frame_type: u8,
    /// The codec.
    pub codec: Codec,
    /// True when the tag used the Enhanced RTMP header.
    pub enhanced: bool,
    /// The content.
    pub packet: VideoPacket,
}

impl VideoTag {
    /// A key frame (FrameType 1 or 4).
    pub fn is_keyframe(&self) -> bool {
        self.frame_type == FRAME_KEY || self.frame_type == FRAME_GENERATED_KEY
    }
}

/// What an audio tag carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPacket {
    /// Decoder configuration (AudioSpecificConfig, OpusHead).
    SequenceStart(Bytes),
    /// Coded audio.
    CodedFrames(Bytes),
    /// End of sequence (Enhanced RTMP).
    SequenceEnd,
    /// Enhanced RTMP MultichannelConfig (channel order and count), raw.
    MultichannelConfig(Bytes),
}

/// One interpreted audio tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTag {
    /// The tag's timestamp, milliseconds.
    pub timestamp: u32,
    /// The codec.
    pub codec: Codec,
    /// For legacy tags, the SoundRate/SoundSize/SoundType bits (low nibble
    /// of the first byte); `None` for Enhanced RTMP tags.
    pub legacy_flags: Option<u8>,
    /// The content.
    pub packet: AudioPacket,
}

impl AudioTag {
    /// Sample rate from the legacy SoundRate bits (5512, 11025, 22050,
    /// 44100 Hz; format 14 is 8000 Hz).
    pub fn legacy_sample_rate(&self) -> Option<u32> {
        let flags = self.legacy_flags?;
        Some([5512, 11025, 22050, 44100][usize::from(flags >> 2 & 3)])
    }

    /// Channels from the legacy SoundType bit.
    pub fn legacy_channels(&self) -> Option<u8> {
        Some(if self.legacy_flags? & 1 == 1 { 2 } else { 1 })
    }
}

/// One script-data tag: a name and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptData {
    /// The handler name, e.g. `onMetaData` (an `@setDataFrame` wrapper is
    /// removed).
    pub name: String,
    /// The values after the name (for `onMetaData`, one object or ECMA
    /// array).
    pub values: Vec<Amf0Value>,
}

impl ScriptData {
    /// For `onMetaData`, the properties object.
    pub fn properties(&self) -> Option<&Amf0Value> {
        self.values.iter().find(|v| v.as_properties().is_some())
    }
}

fn video_fourcc(fourcc: u32) -> Result<Codec, Error> {
    Ok(match fourcc {
        fourcc::AVC1 => Codec::H264,
        fourcc::HVC1 => Codec::H265,
        fourcc::AV01 => Codec::Av1,
        fourcc::VP09 => Codec::Vp9,
        id => {
            return Err(Error::FlvUnsupportedCodec {
                what: "video FourCC",
                id,
            });
        }
    })
}

fn audio_fourcc(fourcc: u32) -> Result<Codec, Error> {
    Ok(match fourcc {
        fourcc::MP4A => Codec::Aac,
        fourcc::OPUS => Codec::Opus,
        fourcc::MP3 => Codec::Mp3,
        fourcc::AC3 => Codec::Ac3,
        fourcc::EC3 => Codec::Eac3,
        id => {
            return Err(Error::FlvUnsupportedCodec {
                what: "audio FourCC",
                id,
            });
        }
    })
}

fn si24(v: u32) -> i32 {
    ((v << 8) as i32) >> 8
}

/// Interpret a video tag body (FLV tag or RTMP message type 9) with its
/// timestamp in milliseconds.
pub fn parse_video_tag(timestamp: u32, body: Bytes) -> Result<VideoTag, Error> {
    let mut r = ByteReader::new(&body, "FLV video tag");
    if body.is_empty() {
        return Err(Error::FlvEmptyTag { what: "video" });
    }
    let b0 = r.u8()?;
    let frame_type = (b0 >> 4) & 0x07;
    if b0 & 0x80 == 0 {
        let codec = match b0 & 0x0f {
            CODEC_ID_AVC => Codec::H264,
            CODEC_ID_HEVC => Codec::H265,
            id => {
                return Err(Error::FlvUnsupportedCodec {
                    what: "video codec id",
                    id: id.into(),
                });
            }
        };
        let packet = if frame_type == FRAME_COMMAND {
            VideoPacket::Command(r.u8()?)
        } else {
            let packet_type = r.u8()?;
            let composition_time = si24(r.u24()?);
            match packet_type {
                0 => VideoPacket::SequenceStart(r.rest()),
                1 => VideoPacket::CodedFrames {
                    composition_time,
                    data: r.rest(),
                },
                2 => VideoPacket::SequenceEnd,
                t => {
                    return Err(Error::FlvUnsupportedPacketType {
                        what: "AVCPacketType",
                        packet_type: t,
                    });
                }
            }
        };
        return Ok(VideoTag {
            timestamp,
            frame_type,
            codec,
            enhanced: false,
            packet,
        });
    }
    // Enhanced RTMP: the low nibble is the VideoPacketType.
    let packet_type = b0 & 0x0f;
    if packet_type == 6 || packet_type == 7 {
        return Err(Error::FlvUnsupportedPacketType {
            what: "VideoPacketType",
            packet_type,
        });
    }
    let codec = video_fourcc(r.u32()?)?;
    let packet = if packet_type != 4 && frame_type == FRAME_COMMAND {
        VideoPacket::Command(r.u8()?)
    } else {
        match packet_type {
            0 => VideoPacket::SequenceStart(r.rest()),
            1 => {
                let composition_time = if matches!(codec, Codec::H264 | Codec::H265) {
                    si24(r.u24()?)
                } else {
                    0
                };
                VideoPacket::CodedFrames {
                    composition_time,
                    data: r.rest(),
                }
            }
            2 => VideoPacket::SequenceEnd,
            3 => VideoPacket::CodedFrames {
                composition_time: 0,
                data: r.rest(),
            },
            4 => VideoPacket::Metadata(amf0::decode_all(&r.rest())?),
            5 => VideoPacket::Mpeg2TsSequenceStart(r.rest()),
            t => {
                return Err(Error::FlvUnsupportedPacketType {
                    what: "VideoPacketType",
                    packet_type: t,
                });
            }
        }
    };
    Ok(VideoTag {
        timestamp,
        frame_type,
        codec,
        enhanced: true,
        packet,
    })
}

/// Interpret an audio tag body (FLV tag or RTMP message type 8) with its
/// timestamp in milliseconds.
pub fn parse_audio_tag(timestamp: u32, body: Bytes) -> Result<AudioTag, Error> {
    let mut r = ByteReader::new(&body, "FLV audio tag");
    if body.is_empty() {
        return Err(Error::FlvEmptyTag { what: "audio" });
    }
    let b0 = r.u8()?;
    let format = b0 >> 4;
    match format {
        SOUND_AAC => {
            let packet = match r.u8()? {
                0 => AudioPacket::SequenceStart(r.rest()),
                1 => AudioPacket::CodedFrames(r.rest()),
                t => {
                    return Err(Error::FlvUnsupportedPacketType {
                        what: "AACPacketType",
                        packet_type: t,
                    });
                }
            };
            Ok(AudioTag {
                timestamp,
                codec: Codec::Aac,
                legacy_flags: Some(b0 & 0x0f),
                packet,
            })
        }
        SOUND_MP3 | SOUND_MP3_8K => Ok(AudioTag {
            timestamp,
            codec: Codec::Mp3,
            legacy_flags: Some(b0 & 0x0f),
            packet: AudioPacket::CodedFrames(r.rest()),
        }),
        SOUND_EX_HEADER => {
            let packet_type = b0 & 0x0f;
            if packet_type == 5 || packet_type == 7 {
                return Err(Error::FlvUnsupportedPacketType {
                    what: "AudioPacketType",
                    packet_type,
                });
            }
            let codec = audio_fourcc(r.u32()?)?;
            let packet = match packet_type {
                0 => AudioPacket::SequenceStart(r.rest()),
                1 => AudioPacket::CodedFrames(r.rest()),
                2 => AudioPacket::SequenceEnd,
                4 => AudioPacket::MultichannelConfig(r.rest()),
                t => {
                    return Err(Error::FlvUnsupportedPacketType {
                        what: "AudioPacketType",
                        packet_type: t,
                    });
                }
            };
            Ok(AudioTag {
                timestamp,
                codec,
                legacy_flags: None,
                packet,
            })
        }
        id => Err(Error::FlvUnsupportedCodec {
            what: "sound format",
            id: id.into(),
        }),
    }
}

/// Interpret a script-data tag body (FLV tag or RTMP message type 18):
/// AMF0 values, the first of which is the name. An `@setDataFrame` wrapper
/// (what RTMP publishers send) is removed, so both forms give
/// `onMetaData`.
pub fn parse_script_tag(body: &[u8]) -> Result<ScriptData, Error> {
    if body.is_empty() {
        return Err(Error::FlvEmptyTag { what: "script" });
    }
    let mut rest = amf0::decode_all(body)?;
    let mut name = String::new();
    if let Some(n) = rest.first().and_then(Amf0Value::as_str) {
        name = n.to_owned();
        rest.remove(0);
    }
    if name == "@setDataFrame"
        && let Some(n) = rest.first().and_then(Amf0Value::as_str)
    {
        name = n.to_owned();
        rest.remove(0);
    }
    Ok(ScriptData { name, values: rest })
}
