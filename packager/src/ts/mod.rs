//! MPEG-TS (ISO/IEC 13818-1): writing, for HLS TS segments and
//! `/<stream>.ts` (TS over HTTP), and reading, for TS ingest (UDP/RTP,
//! SRT, ts-exec, files).
//!
//! # Demuxing
//!
//! [`TsDemuxer`] takes transport stream bytes in pieces of any size and
//! hands out [`TsEvent`]s: a [`Track`](TsEvent::Track) per elementary stream
//! it can read, once its configuration is known, then
//! [`Frame`](TsEvent::Frame)s in the model's forms, plus
//! [`TrackRemoved`](TsEvent::TrackRemoved) and
//! [`Discontinuity`](TsEvent::Discontinuity). Every program of the PAT and
//! every elementary stream of their PMTs is read (H.264 0x1B, HEVC 0x24, AAC
//! ADTS 0x0F, MPEG audio 0x03/0x04, AC-3 0x81 or 0x06 + AC-3 descriptor,
//! E-AC-3 0x87 or 0x06 + E-AC-3 descriptor, Opus 0x06 + registration
//! `Opus`); other stream types (LATM AAC 0x11 among them) are counted in
//! [`TsDemuxStats::unsupported_streams`]. Track ids are assigned in PMT
//! order from 0 across programs; all tracks have timebase 90 000 and
//! timestamps extended past the 33-bit wrap. Video payloads become
//! 4-byte length-prefixed NAL units without AUDs and parameter sets (those
//! go into the avcC/hvcC built from the SPS/PPS(/VPS) seen), ADTS and MPEG
//! audio, AC-3 and Opus PES payloads are split into one frame per audio
//! frame with interpolated timestamps.
//!
//! Bad input never panics and never stops the demuxer: garbage and
//! truncated packets are skipped (resync on sync bytes 188 apart),
//! continuity gaps drop the broken PES and mark the track, malformed PSI,
//! PES and elementary stream data are dropped, and all of it is counted in
//! [`TsDemuxStats`]. Memory is bounded by [`TsDemuxLimits`] (PES size,
//! streams, programs, bytes buffered). See `docs/media.md` for the rules in
//! full.
//!
//! # Muxing
//!
//! [`TsMuxer`] turns [`Frame`](crate::media::Frame)s into 188-byte transport
//! packets appended to a buffer the caller hands in. MPEG-TS interleaves a
//! 4-byte header every 184 payload bytes, so unlike FLV and fMP4 the payload
//! cannot be referenced: it is copied once, straight from the frame into the
//! caller's buffer (reserved up front; no allocation per packet, and no
//! intermediate copy of the payload).
//!
//! Layout of the stream:
//! - One program (number 1). PAT on PID 0, PMT on PID [`PMT_PID`] (0x1000).
//! - The n-th track handed to [`TsMuxer::new`] gets PID
//!   [`FIRST_ES_PID`]` + n` (0x100, 0x101, …; with [`FlvStream`]'s order,
//!   video 0x100 and audio 0x101). PES stream ids: 0xE0.. for video, 0xC0..
//!   for AAC/MP3, 0xBD (private_stream_1) for Opus.
//! - PCR on the first video track's PID (the first track's if there is no
//!   video), in the first packet of each of its PES packets, plus a PCR-only
//!   packet whenever another track's frame finds the last PCR 40 ms old.
//!   PCR = DTS − [`PCR_DELAY`] (clamped at 0, never decreasing).
//! - Stream types: H.264 0x1B, HEVC 0x24, AAC 0x0F (ADTS), MP3 0x03 (0x04
//!   below 32 kHz), Opus 0x06 with a registration descriptor `Opus` and the
//!   DVB extension descriptor (extension tag 0x80, channel_config_code)
//!   of the Opus-in-MPEG-TS mapping (the draft ETSI TS published by the
//!   Opus project), as ffmpeg writes and reads it. AV1, VP9, AC-3 and E-AC-3
//!   are refused.
//!
//! What is inserted: H.264/HEVC payloads go from length-prefixed (AVCC) to
//! Annex B start codes; each access unit starts with an access unit delimiter
//! (H.264 `09 F0`, HEVC type 35) and keyframes get the parameter sets of the
//! track configuration (SPS/PPS, VPS/SPS/PPS) before them. AUDs already in
//! the payload are dropped. AAC frames get a 7-byte ADTS header built from
//! the AudioSpecificConfig; Opus packets the `opus_control_header` (with a
//! start trim for the pre-skip on the first packets).
//! PAT/PMT are written before the first frame and before every keyframe of
//! the PCR track (so a segment cut at a video keyframe starts with them);
//! [`TsMuxer::write_psi`] writes them on demand (audio-only segment starts).
//!
//! [`FlvStream`]: crate::flv::FlvStream

mod demux;
#[cfg(test)]
mod demux_proptests;
#[cfg(test)]
mod demux_tests;
mod es;
mod mux;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use demux::{
    NULL_PID, STREAM_TYPE_AAC_LATM, STREAM_TYPE_AC3, STREAM_TYPE_EAC3, TS_TIMEBASE, TsDemuxLimits,
    TsDemuxStats, TsDemuxer, TsEvent,
};
pub use mux::{TsMuxer, crc32_mpeg2};

/// The program clock reference a transport packet carries, in 27 MHz units
/// (base × 300 + extension), if its adaptation field has one. Pacers and
/// jitter meters read it without demuxing.
pub fn packet_pcr(packet: &[u8]) -> Option<u64> {
    if packet.len() < 12
        || packet[0] != SYNC_BYTE
        || packet[3] & 0x20 == 0
        || packet[4] < 7
        || packet[5] & 0x10 == 0
    {
        return None;
    }
    let b = &packet[6..12];
    let base = (u64::from(b[0]) << 25)
        | (u64::from(b[1]) << 17)
        | (u64::from(b[2]) << 9)
        | (u64::from(b[3]) << 1)
        | (u64::from(b[4]) >> 7);
    let ext = (u64::from(b[4] & 1) << 8) | u64::from(b[5]);
    Some(base * 300 + ext)
}

/// Bytes in a transport packet.
pub const PACKET_LEN: usize = 188;
/// The sync byte every packet starts with.
pub const SYNC_BYTE: u8 = 0x47;
/// PID of the program association table.
pub const PAT_PID: u16 = 0;
/// PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// PID of the first track; the n-th track gets `FIRST_ES_PID + n`.
pub const FIRST_ES_PID: u16 = 0x100;
/// Program number of the single program.
pub const PROGRAM_NUMBER: u16 = 1;
/// How far the PCR runs behind the DTS, in 90 kHz ticks (100 ms).
pub const PCR_DELAY: i64 = 9000;
/// Longest gap between PCRs, in 90 kHz ticks (40 ms).
pub const PCR_INTERVAL: i64 = 3600;

/// Stream type of H.264 video.
pub const STREAM_TYPE_H264: u8 = 0x1B;
/// Stream type of HEVC video.
pub const STREAM_TYPE_HEVC: u8 = 0x24;
/// Stream type of AAC with ADTS framing.
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;
/// Stream type of MPEG-1 audio (MP3 at 32 kHz and above).
pub const STREAM_TYPE_MPEG1_AUDIO: u8 = 0x03;
/// Stream type of MPEG-2 audio (MP3 below 32 kHz).
pub const STREAM_TYPE_MPEG2_AUDIO: u8 = 0x04;
/// Stream type of PES private data (Opus, with descriptors).
pub const STREAM_TYPE_PRIVATE_PES: u8 = 0x06;
