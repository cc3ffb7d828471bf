//! Media fragments: `styp`, `moof` and the `mdat` header, payloads by
//! reference.
use bytes::Bytes;

use super::boxes::{close, err, open, open_full, u32, u64};
use super::init::{COMPATIBLE_BRANDS, MAJOR_BRAND};
use super::mp4_track_id;
use crate::Error;
use crate::media::Frame;

/// `sample_flags` of a sync sample: sample_depends_on = 2 (depends on no
/// other sample).
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: sample_depends_on = 1, and
/// sample_is_non_sync_sample.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// `tfhd` flag: default-base-is-moof.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: data-offset, sample duration, size, flags, composition
/// time offset present.
const TRUN_DATA_OFFSET: u32 = 0x001;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;

/// The frames of one track in one fragment.
#[derive(Debug, Clone, Copy)]
pub struct TrackRun<'a> {
    /// [`Track::id`](crate::media::Track::id) of the track (the MP4
    /// track_ID written is this + 1, as in the init segment).
    pub track: u32,
    /// Its frames in decode order; every `frame.track` must equal `track`.
    pub frames: &'a [Frame],
    /// The dts where this run ends (normally the next fragment's first
    /// dts): gives the last sample's duration. `None` repeats the previous
    /// sample's duration, which needs at least two frames.
    pub end_dts: Option<i64>,
}

/// Append a `styp` box (same brands as the init segment), which CMAF
/// segments and DASH media segments may start with.
pub fn write_styp(out: &mut Vec<u8>) -> Result<(), Error> {
    let b = open(out, b"styp");
    out.extend_from_slice(MAJOR_BRAND);
    u32(out, 0);
    for brand in COMPATIBLE_BRANDS {
        out.extend_from_slice(brand);
    }
    close(out, b)
}

/// Append one fragment's `moof` and `mdat` header to `out` and return the
/// payloads that form the `mdat` body: the fragment on the wire is `out`'s
/// new bytes followed by the returned `Bytes` in order (shared, never
/// copied).
///
/// - `moof` holds `mfhd` (`seq`, which should start at 1 and increase) and
///   one `traf` per non-empty run in the order given: `tfhd`
///   (default-base-is-moof), `tfdt` version 1 (baseMediaDecodeTime = the
///   first frame's dts, which must not be negative) and `trun` with
///   data_offset, per-sample duration (next dts − dts; the last from
///   `end_dts`), size, flags ([`SYNC_SAMPLE_FLAGS`] for keyframes,
///   [`NON_SYNC_SAMPLE_FLAGS`] otherwise) and, when any frame has
///   pts ≠ dts, signed composition time offsets (`trun` version 1).
/// - The `mdat` body is the runs' payloads in order; `mdat` uses the
///   64-bit size form only when the body exceeds 4 GiB − 8.
///
/// Errors (nothing useful in `out` then): a frame of another track, dts
/// going backwards, a duration or composition offset that does not fit
/// 32 bits, a negative first dts, a single frame without `end_dts`.
pub fn write_fragment(
    seq: u32,
    runs: &[TrackRun<'_>],
    out: &mut Vec<u8>,
) -> Result<Vec<Bytes>, Error> {
    let mut payload_len: u64 = 0;
    let mut payloads = Vec::with_capacity(runs.iter().map(|r| r.frames.len()).sum());
    for r in runs {
        for f in r.frames {
            if f.track != r.track {
                return Err(err(format!(
                    "frame of track {} in the run of track {}",
                    f.track, r.track
                )));
            }
            payload_len += f.payload.len() as u64;
            payloads.push(f.payload.clone());
        }
    }
    let mdat_header_len: u64 = if payload_len + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };

    let moof = open(out, b"moof");
    let mfhd = open_full(out, b"mfhd", 0, 0);
    u32(out, seq);
    close(out, mfhd)?;
    // Where each trun's data_offset field is, and its offset into mdat's body.
    let mut patches = Vec::with_capacity(runs.len());
    let mut body_offset: u64 = 0;
    for r in runs.iter().filter(|r| !r.frames.is_empty()) {
        let pos = write_traf(out, r)?;
        patches.push((pos, body_offset));
        body_offset += r.frames.iter().map(|f| f.payload.len() as u64).sum::<u64>();
    }
    close(out, moof)?;
    let moof_len = (out.len() - moof) as u64;
    for (pos, offset) in patches {
        let data_offset = i32::try_from(moof_len + mdat_header_len + offset)
            .map_err(|_| err("trun data_offset beyond 2 GiB"))?;
        out[pos..pos + 4].copy_from_slice(&data_offset.to_be_bytes());
    }
    if mdat_header_len == 16 {
        u32(out, 1);
        out.extend_from_slice(b"mdat");
        u64(out, payload_len + 16);
    } else {
        u32(out, (payload_len + 8) as u32);
        out.extend_from_slice(b"mdat");
    }
    Ok(payloads)
}

/// Write one `traf`; returns the position of the trun's data_offset field.
fn write_traf(out: &mut Vec<u8>, r: &TrackRun<'_>) -> Result<usize, Error> {
    let frames = r.frames;
    let id = mp4_track_id(r.track)?;
    let first_dts = frames[0].dts;
    let base = u64::try_from(first_dts)
        .map_err(|_| err(format!("track {}: negative dts {first_dts}", r.track)))?;
    let mut durations = Vec::with_capacity(frames.len());
    for w in frames.windows(2) {
        durations.push(duration(r.track, w[0].dts, w[1].dts)?);
    }
    let last = frames[frames.len() - 1].dts;
    durations.push(match (r.end_dts, durations.last()) {
        (Some(end), _) => duration(r.track, last, end)?,
        (None, Some(&d)) => d,
        (None, None) => {
            return Err(err(format!(
                "track {}: a single frame needs end_dts for its duration",
                r.track
            )));
        }
    });
    let mut ctos = Vec::with_capacity(frames.len());
    for f in frames {
        let cto = i32::try_from(f.pts.saturating_sub(f.dts)).map_err(|_| {
            err(format!(
                "track {}: composition offset {} does not fit 32 bits",
                r.track,
                f.cts()
            ))
        })?;
        ctos.push(cto);
    }
    let with_cto = ctos.iter().any(|&c| c != 0);

    let traf = open(out, b"traf");
    let tfhd = open_full(out, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF);
    u32(out, id);
    close(out, tfhd)?;
    let tfdt = open_full(out, b"tfdt", 1, 0);
    u64(out, base);
    close(out, tfdt)?;
    let mut flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS;
    if with_cto {
        flags |= TRUN_CTO;
    }
    let trun = open_full(out, b"trun", u8::from(with_cto), flags);
    u32(
        out,
        u32::try_from(frames.len()).map_err(|_| err("more than 2^32 samples"))?,
    );
    let data_offset_pos = out.len();
    u32(out, 0); // patched by the caller
    for (i, f) in frames.iter().enumerate() {
        u32(out, durations[i]);
        u32(
            out,
            u32::try_from(f.payload.len()).map_err(|_| err("sample larger than 4 GiB"))?,
        );
        u32(
            out,
            if f.keyframe {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            },
        );
        if with_cto {
            out.extend_from_slice(&ctos[i].to_be_bytes());
        }
    }
    close(out, trun)?;
    close(out, traf)?;
    Ok(data_offset_pos)
}

fn duration(track: u32, dts: i64, next: i64) -> Result<u32, Error> {
    next.checked_sub(dts)
        .and_then(|d| u32::try_from(d).ok())
        .ok_or_else(|| {
            err(format!(
                "track {track}: dts {dts} then {next}: not a duration of 0..2^32 ticks"
            ))
        })
}
