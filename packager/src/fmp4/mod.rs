//! fMP4 / CMAF: the fragmented ISO BMFF of HLS-fMP4, LL-HLS and DASH.
//!
//! Writing only, pure (no I/O, no clock):
//! - [`init_segment`] / [`write_init_segment`]: `ftyp` (major `iso6`,
//!   compatible `iso6 cmfc dash mp41`) + `moov` (`mvhd`, one `trak` per
//!   track with an empty sample table and the codec's sample entry, `mvex`
//!   with one `trex` per track). CMAF wants one track per init segment;
//!   several work too.
//! - [`write_fragment`]: for a sequence number and one [`TrackRun`] (frames
//!   of one track) per track, writes `moof` (`mfhd`, then per run `tfhd`
//!   with default-base-is-moof, `tfdt` v1, `trun` with data_offset and
//!   per-sample duration/size/flags/composition offset) and the 8-byte
//!   `mdat` header into the caller's buffer, and returns the frames'
//!   payload `Bytes`, which are the `mdat` body: a fragment is the written
//!   bytes followed by those payloads, sent with `writev`, never copied.
//!   [`write_styp`] optionally comes first (a CMAF segment/chunk header).
//!
//! Conventions: media time is the track's own timebase (the `mdhd`
//! timescale is [`Track::timebase`](crate::media::Track::timebase), so
//! `dts`/`pts` go out unconverted); the MP4 track_ID is `Track::id + 1`
//! because MP4 reserves 0 and [`FlvStream`](crate::flv::FlvStream) numbers
//! video 0. Payloads already are MP4 samples (length-prefixed NAL units,
//! raw AAC, Opus packets), so nothing is rewritten. Errors are
//! [`Error::InvalidConfig`] with `what` `"fMP4 mux"` (or the config
//! parser's error).

mod boxes;
mod fragment;
mod init;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use fragment::{
    NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS, TrackRun, write_fragment, write_styp,
};
pub use init::{COMPATIBLE_BRANDS, MAJOR_BRAND, init_segment, write_init_segment};

use crate::Error;

/// The MP4 track_ID of a [`Track::id`](crate::media::Track::id): id + 1.
pub fn mp4_track_id(id: u32) -> Result<u32, Error> {
    id.checked_add(1)
        .ok_or_else(|| boxes::err("track id u32::MAX has no MP4 track_ID"))
}
