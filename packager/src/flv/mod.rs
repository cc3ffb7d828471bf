//! FLV: the container of HTTP-FLV delivery and, tag body for tag body, the
//! media messages of RTMP.
//!
//! Reading, in three layers:
//! - [`FlvDemuxer`] splits a byte stream (the 9-byte file header, then
//!   PreviousTagSize + tag, …) fed in pieces of any size into [`FlvTag`]s.
//!   Tag bodies are `Bytes` slices of what was pushed, not copies.
//! - [`parse_video_tag`], [`parse_audio_tag`] and [`parse_script_tag`]
//!   interpret one tag body. RTMP delivers exactly these bodies (message
//!   types 9, 8 and 18), so the RTMP session uses them without the demuxer.
//!   Legacy tags (AVC codec id 7, HEVC id 12 as some encoders send it, AAC
//!   sound format 10, MP3 2/14) and Enhanced RTMP v1/v2 tags (ExVideoTagHeader
//!   with FourCC `avc1`/`hvc1`/`av01`/`vp09`; ExAudioTagHeader with `mp4a`,
//!   `Opus`, `.mp3`, `ac-3`, `ec-3`) are understood; multitrack and ModEx
//!   packets are reported as unsupported.
//! - [`FlvStream`] turns tags into the media model: [`FlvEvent::Track`] when
//!   a track appears or its configuration changes, [`FlvEvent::Frame`]s in
//!   milliseconds (timebase 1000, 32-bit wrap-around unwrapped), and
//!   `onMetaData`.
//!
//! Writing: [`FlvMuxer`] writes the file header, `onMetaData` and sequence
//! header tags whole (they are small), and for each frame only the 11-byte
//! tag header plus the codec's few header bytes into the caller's buffer,
//! returning the payload `Bytes` and the 4-byte PreviousTagSize separately
//! ([`MuxedFrame`]) so the engine can `writev` head, shared payload and
//! trailer without copying the payload. H.264, AAC and MP3 are written as
//! legacy tags (what every player reads); HEVC, AV1, VP9, Opus, AC-3 and
//! E-AC-3 as Enhanced RTMP tags. The low-level writers
//! ([`write_file_header`], [`write_tag_header`], [`previous_tag_size`]) are
//! public for other framings.

mod demux;
mod mux;
#[cfg(test)]
mod proptests;
mod stream;
mod tag;
#[cfg(test)]
mod tests;

pub use demux::{FlvDemuxer, FlvHeader, FlvTag};
pub use mux::{
    FlvMuxer, MuxedFrame, metadata_body, previous_tag_size, write_file_header, write_tag_header,
};
pub use stream::{AUDIO_TRACK, FlvEvent, FlvStream, VIDEO_TRACK};
pub use tag::{
    AudioPacket, AudioTag, ScriptData, VideoPacket, VideoTag, fourcc, parse_audio_tag,
    parse_script_tag, parse_video_tag,
};

/// Length of the FLV file header (without PreviousTagSize0).
pub const FILE_HEADER_LEN: usize = 9;
/// Length of an FLV tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Length of a PreviousTagSize field.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// Largest tag body (DataSize is 24 bits).
pub const MAX_TAG_BODY: usize = 0xff_ffff;

/// The type of an FLV tag (and of the matching RTMP message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagType {
    /// 8: audio.
    Audio,
    /// 9: video.
    Video,
    /// 18: script data (AMF0).
    Script,
    /// Any other value (reserved); the body is passed through.
    Other(u8),
}

impl TagType {
    /// From the 5-bit TagType field (or an RTMP message type id).
    pub fn from_u8(v: u8) -> TagType {
        match v {
            8 => TagType::Audio,
            9 => TagType::Video,
            18 => TagType::Script,
            o => TagType::Other(o),
        }
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            TagType::Audio => 8,
            TagType::Video => 9,
            TagType::Script => 18,
            TagType::Other(o) => o,
        }
    }
}
