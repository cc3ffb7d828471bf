//! # spate-packager
//!
//! The media model (tracks, frames) and every container format Spate writes
//! or reads. Design principles, in the spirit of mpeg2ts-reader:
//!
//! - **Pure.** No sockets, no file descriptors, no threads, no clock. Time is
//!   a value handed in by the caller.
//! - **Reference, don't copy.** Muxers write headers into a buffer they are
//!   handed and reference payload `Bytes` wherever the format allows.
//! - **Bad input is an error value**, never a panic: every parser returns
//!   [`Error`] naming what was wrong.
//!
//! The media model and the formats arrive with the live-core and segmented
//! delivery work; this crate currently holds only the error type.
#![forbid(unsafe_code)]

pub mod amf0;
pub mod flv;
pub mod media;

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
