//! # spate-packager
//!
//! The media model (tracks, frames) and every container format Spate writes
//! or reads. Design principles, in the spirit of mpeg2ts-reader:
//!
//! - **Pure.** No sockets, no file descriptors, no threads, no clock. Time is
//!   a value handed in by the caller, and media time is a number of ticks of
//!   the track's own timebase.
//! - **One model.** Every demuxer produces [`media::Track`]s and
//!   [`media::Frame`]s, every muxer consumes them; codec configuration
//!   travels in its MP4 form (avcC, hvcC, av1C, AudioSpecificConfig,
//!   OpusHead) and frame payloads in the MP4 sample form (length-prefixed
//!   NAL units, raw AAC, OBUs), whatever the container was.
//! - **Reference, don't copy.** Demuxers hand out payloads as `Bytes` slices
//!   of their input; muxers write headers into a buffer they are handed and
//!   reference payload `Bytes` wherever the format allows (FLV tag bodies,
//!   fMP4 mdat), so a frame is packaged once per stream, never per viewer.
//! - **Split input is normal.** Stream demuxers accept bytes in pieces of
//!   any size and give the same result as for one contiguous buffer.
//! - **Bad input is an error value**, never a panic and never a huge
//!   allocation: every parser returns [`Error`] naming what was wrong with
//!   which input, and declared lengths are checked against the bytes that
//!   are there before anything is allocated. Each parser has property tests
//!   and a cargo-fuzz target (`packager/fuzz`, see `docs/fuzzing.md`).
//!
//! Modules: [`amf0`] (RTMP commands, FLV script data), [`media`] (the model
//! and codec configuration parsing), [`flv`] (FLV demux/mux, RTMP media
//! message bodies, Enhanced RTMP), [`ts`] (MPEG-TS demuxer for TS ingest, and
//! muxer for HLS segments and TS over HTTP), [`fmp4`] (CMAF init segments and moof/mdat fragments with
//! payloads by reference), [`segmenter`] (where segments are cut, on one
//! microsecond clock), [`hls`] (live media and multivariant playlists,
//! RFC 6381 codecs strings), [`dash`] (the dynamic MPD of live CMAF). See
//! `docs/media.md`.
#![forbid(unsafe_code)]

pub mod amf0;
pub mod dash;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod media;
pub mod segmenter;
pub mod ts;

/// Errors of this crate: each variant says what was wrong with which input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input ended before a complete structure could be read.
    #[error("{what}: truncated, needed {needed} bytes, had {had}")]
    Truncated {
        /// Which structure was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        had: usize,
    },
    /// An AMF0 type marker that is not defined.
    #[error("AMF0 value: unknown type marker 0x{marker:02x}")]
    Amf0UnknownMarker {
        /// The marker byte.
        marker: u8,
    },
    /// An AMF0 type this decoder does not support (movie clip, reference,
    /// record set, XML document, typed object, AVM+).
    #[error("AMF0 value: unsupported type {name} (marker 0x{marker:02x})")]
    Amf0UnsupportedType {
        /// The marker byte.
        marker: u8,
        /// The type's name in the AMF0 spec.
        name: &'static str,
    },
    /// An AMF0 object-end marker where a value was expected.
    #[error("AMF0 value: object-end marker outside an object")]
    Amf0UnexpectedObjectEnd,
    /// AMF0 containers nested deeper than the limit.
    #[error("AMF0 value: nesting deeper than {limit}")]
    Amf0TooDeep {
        /// The limit ([`amf0::MAX_DEPTH`]).
        limit: usize,
    },
    /// A declared element count larger than the input could hold.
    #[error("{what}: declared {count} elements but only {remaining} bytes remain")]
    Amf0CountTooLarge {
        /// Which structure declared the count.
        what: &'static str,
        /// The declared count.
        count: usize,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A string that is not valid UTF-8.
    #[error("{what}: invalid UTF-8 after {offset} bytes")]
    Amf0InvalidUtf8 {
        /// Which string.
        what: &'static str,
        /// Bytes of valid UTF-8 before the error.
        offset: usize,
    },
    /// A bitstream field (in an SPS, an AudioSpecificConfig, an OBU…) with a
    /// value that is reserved, out of range or inconsistent.
    #[error("{what}: {reason}")]
    InvalidBitstream {
        /// Which structure was being read.
        what: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// A codec configuration record that is not valid.
    #[error("{what}: {reason}")]
    InvalidConfig {
        /// Which record (`avcC`, `hvcC`, `av1C`, `dOps`…).
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// An FLV stream that does not start with the `FLV` signature.
    #[error("FLV header: signature {found:02x?}, expected \"FLV\"")]
    FlvSignature {
        /// The first three bytes.
        found: [u8; 3],
    },
    /// An FLV header whose DataOffset is below 9 or implausibly large.
    #[error("FLV header: DataOffset {offset} out of range (9..=65536)")]
    FlvHeaderSize {
        /// The declared DataOffset.
        offset: u32,
    },
    /// An FLV tag with the Filter bit set (encrypted content).
    #[error("FLV tag at byte {offset}: encrypted (Filter bit set), not supported")]
    FlvEncryptedTag {
        /// Stream offset of the tag header.
        offset: u64,
    },
    /// An FLV/RTMP media tag for a codec this crate does not handle.
    #[error("FLV {what} {id:#x} not supported")]
    FlvUnsupportedCodec {
        /// Which field: `video codec id`, `video FourCC`, `sound format`,
        /// `audio FourCC`.
        what: &'static str,
        /// Its value (a FourCC as a big-endian number).
        id: u32,
    },
    /// An FLV/RTMP media tag with a packet type this crate does not handle
    /// (reserved values, multitrack, ModEx).
    #[error("FLV {what} {packet_type} not supported")]
    FlvUnsupportedPacketType {
        /// Which field: `AVCPacketType`, `VideoPacketType`, `AACPacketType`,
        /// `AudioPacketType`.
        what: &'static str,
        /// Its value.
        packet_type: u8,
    },
    /// An FLV/RTMP tag with no body where one is required.
    #[error("FLV {what} tag: empty body")]
    FlvEmptyTag {
        /// `video`, `audio` or `script`.
        what: &'static str,
    },
    /// A frame or track handed to the FLV muxer that FLV cannot carry.
    #[error("FLV mux, track {track}: {reason}")]
    FlvMux {
        /// The track id.
        track: u32,
        /// What FLV cannot carry.
        reason: &'static str,
    },
}
