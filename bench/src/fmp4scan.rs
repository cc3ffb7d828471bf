//! Frame timestamps of a fragmented-MP4 media segment (DASH, CMAF): the
//! segment's first `moof` (after an optional `styp`/`sidx`/`prft`) is
//! gathered as it arrives, and its first `traf` gives every sample's decode
//! time: `tfdt` base media decode time plus the `trun` sample durations
//! (or `tfhd`'s default duration). With the track timescale (the MPD's
//! `SegmentTemplate@timescale`) they become milliseconds, the publisher's
//! FLV timestamps for a server that passes them through.
//!
//! Also here: the media timescale of an initialization segment's video
//! track ([`init_timescale`]), for HLS fMP4 playlists (`#EXT-X-MAP`),
//! which do not state it.

/// Gathers the top-level boxes of a segment body up to the end of its first
/// `moof`.
#[derive(Debug, Default)]
pub struct MoofGatherer {
    buf: Vec<u8>,
    done: bool,
}

/// Most bytes gathered before giving up (a `moof` is a few KiB).
const MAX_GATHER: usize = 256 * 1024;

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Top-level boxes of `data`: (type, body) while complete.
fn boxes(mut data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 8 {
            return None;
        }
        let size = be32(data) as usize;
        let kind = [data[4], data[5], data[6], data[7]];
        let (hdr, size) = match size {
            1 if data.len() >= 16 => (16, be64(&data[8..]) as usize),
            0 => (8, data.len()),
            n => (8, n),
        };
        if size < hdr || size > data.len() {
            return None;
        }
        let body = &data[hdr..size];
        data = &data[size..];
        Some((kind, body))
    })
}

impl MoofGatherer {
    /// Feed body bytes; returns the frames' decode times (ms) once the first
    /// `moof` is complete (then `None` for the rest of the segment).
    pub fn feed(&mut self, data: &[u8], timescale: u64) -> Option<Vec<u32>> {
        if self.done {
            return None;
        }
        self.buf.extend_from_slice(data);
        // Walk the complete top-level boxes. Sizes are the server's word:
        // checked, never trusted in arithmetic.
        let mut at = 0usize;
        while self.buf.len().saturating_sub(at) >= 8 {
            let small = u64::from(be32(&self.buf[at..]));
            let kind = &self.buf[at + 4..at + 8];
            let (hdr, size) = if small == 1 {
                if self.buf.len() - at < 16 {
                    break;
                }
                (16, be64(&self.buf[at + 8..]))
            } else {
                (8, small)
            };
            if size < hdr {
                self.done = true;
                return None;
            }
            if kind == b"moof" {
                // A moof is a few KiB; one past the gather limit is a lie.
                let size = match usize::try_from(size) {
                    Ok(s) if s <= MAX_GATHER => s,
                    _ => {
                        self.done = true;
                        self.buf = Vec::new();
                        return None;
                    }
                };
                if self.buf.len() - at < size {
                    break;
                }
                self.done = true;
                let moof = &self.buf[at + hdr as usize..at + size];
                let r = decode_times(moof, timescale);
                self.buf = Vec::new();
                return r;
            }
            if kind == b"mdat" {
                self.done = true;
                return None;
            }
            at = at.saturating_add(usize::try_from(size).unwrap_or(usize::MAX));
        }
        if self.buf.len() > MAX_GATHER {
            self.done = true;
            self.buf = Vec::new();
        }
        None
    }
}

/// Decode times (ms) of the first `traf`'s samples in a `moof` body.
pub fn decode_times(moof: &[u8], timescale: u64) -> Option<Vec<u32>> {
    if timescale == 0 {
        return None;
    }
    let (_, traf) = boxes(moof).find(|(k, _)| k == b"traf")?;
    let mut default_duration = 0u32;
    let mut base: Option<u64> = None;
    let mut out = Vec::new();
    for (kind, b) in boxes(traf) {
        match &kind {
            b"tfhd" if b.len() >= 8 => {
                let flags = be32(b) & 0x00FF_FFFF;
                let mut at = 8; // version/flags + track_ID
                if flags & 0x01 != 0 {
                    at += 8; // base_data_offset
                }
                if flags & 0x02 != 0 {
                    at += 4; // sample_description_index
                }
                if flags & 0x08 != 0 && b.len() >= at + 4 {
                    default_duration = be32(&b[at..]);
                }
            }
            b"tfdt" if b.len() >= 8 => {
                base = Some(if b[0] == 1 && b.len() >= 12 {
                    be64(&b[4..])
                } else {
                    u64::from(be32(&b[4..]))
                });
            }
            b"trun" if b.len() >= 8 => {
                let t0 = base?;
                let flags = be32(b) & 0x00FF_FFFF;
                let count = be32(&b[4..]) as usize;
                let mut at = 8;
                if flags & 0x01 != 0 {
                    at += 4; // data_offset
                }
                if flags & 0x04 != 0 {
                    at += 4; // first_sample_flags
                }
                let per = [0x100, 0x200, 0x400, 0x800]
                    .iter()
                    .filter(|&&f| flags & f != 0)
                    .count()
                    * 4;
                let mut t = t0;
                for i in 0..count.min(100_000) {
                    let s = at + i * per;
                    if b.len() < s + per {
                        return None;
                    }
                    // 64-bit media times of any size (a lying tfdt near
                    // 2^64): computed wide, the ms wrap like FLV's do.
                    out.push((u128::from(t) * 1000 / u128::from(timescale)) as u32);
                    let d = if flags & 0x100 != 0 {
                        be32(&b[s..])
                    } else {
                        default_duration
                    };
                    t = t.wrapping_add(u64::from(d));
                }
            }
            _ => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The `mdhd` timescale of the first video track (`hdlr` `vide`) of an
/// initialization segment (`ftyp` + `moov`), else of its first track.
/// `None` when there is no `moov` with a track that has one.
pub fn init_timescale(init: &[u8]) -> Option<u64> {
    let (_, moov) = boxes(init).find(|(k, _)| k == b"moov")?;
    let mut first = None;
    for (_, trak) in boxes(moov).filter(|(k, _)| k == b"trak") {
        let Some((_, mdia)) = boxes(trak).find(|(k, _)| k == b"mdia") else {
            continue;
        };
        let mut scale = None;
        let mut video = false;
        for (kind, b) in boxes(mdia) {
            match &kind {
                // version/flags, then v1: 8+8 bytes of times, v0: 4+4.
                b"mdhd" if b.len() >= 24 => {
                    let at = if b[0] == 1 { 20 } else { 12 };
                    if b.len() >= at + 4 {
                        scale = Some(u64::from(be32(&b[at..]))).filter(|&t| t > 0);
                    }
                }
                // version/flags, pre_defined, handler_type.
                b"hdlr" if b.len() >= 12 => video = &b[8..12] == b"vide",
                _ => {}
            }
        }
        if video && scale.is_some() {
            return scale;
        }
        first = first.or(scale);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    /// styp + moof (tfhd with a default duration, tfdt v1, trun with and
    /// without per-sample durations) + mdat.
    fn segment(per_sample: bool) -> Vec<u8> {
        let mut tfhd = 0x0000_0008u32.to_be_bytes().to_vec(); // default-sample-duration-present
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        tfhd.extend_from_slice(&40u32.to_be_bytes());
        let mut tfdt = vec![1, 0, 0, 0];
        tfdt.extend_from_slice(&90_000u64.to_be_bytes());
        let flags: u32 = 0x001 | if per_sample { 0x300 } else { 0x200 };
        let mut trun = flags.to_be_bytes().to_vec();
        trun.extend_from_slice(&3u32.to_be_bytes());
        trun.extend_from_slice(&0u32.to_be_bytes()); // data offset
        for d in [33u32, 34, 33] {
            if per_sample {
                trun.extend_from_slice(&d.to_be_bytes());
            }
            trun.extend_from_slice(&100u32.to_be_bytes()); // size
        }
        let mut traf = boxed(b"tfhd", &tfhd);
        traf.extend(boxed(b"tfdt", &tfdt));
        traf.extend(boxed(b"trun", &trun));
        let mut moof = boxed(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 1]);
        moof.extend(boxed(b"traf", &traf));
        let mut seg = boxed(b"styp", b"msdh\0\0\0\0");
        seg.extend(boxed(b"moof", &moof));
        seg.extend(boxed(b"mdat", &[0u8; 300]));
        seg
    }

    /// Found by the `media_scan` fuzz target: a tfdt near 2^64 overflowed
    /// the ms conversion (and the sum of durations after it).
    #[test]
    fn huge_decode_times_wrap_instead_of_overflowing() {
        let seg = segment(true);
        let at = seg.windows(4).position(|w| w == b"tfdt").expect("tfdt") + 8;
        let mut seg = seg;
        seg[at..at + 8].copy_from_slice(&(u64::MAX - 40).to_be_bytes());
        let moof_at = seg.windows(4).position(|w| w == b"moof").unwrap() + 4;
        let len = u32::from_be_bytes(seg[moof_at - 8..moof_at - 4].try_into().unwrap()) as usize;
        let moof = &seg[moof_at..moof_at - 8 + len];
        for timescale in [1, 1000, 90_000] {
            let t = decode_times(moof, timescale).expect("three samples");
            assert_eq!(t.len(), 3);
            let want = (u128::from(u64::MAX - 40) * 1000 / u128::from(timescale)) as u32;
            assert_eq!(t[0], want, "timescale {timescale}");
        }
    }

    #[test]
    fn decode_times_from_moof_split_anywhere() {
        for (per_sample, want) in [
            (true, vec![90_000, 90_033, 90_067]),
            (false, vec![90_000, 90_040, 90_080]),
        ] {
            let seg = segment(per_sample);
            for step in [1, 7, 100, 10_000] {
                let mut g = MoofGatherer::default();
                let mut got = None;
                for c in seg.chunks(step) {
                    if let Some(t) = g.feed(c, 1000) {
                        assert!(got.is_none(), "reported twice");
                        got = Some(t);
                    }
                }
                assert_eq!(
                    got.as_deref(),
                    Some(&want[..]),
                    "per_sample {per_sample} step {step}"
                );
            }
        }
        // A 90 kHz timescale.
        let mut g = MoofGatherer::default();
        assert_eq!(g.feed(&segment(true), 90_000), Some(vec![1000, 1000, 1000]));
    }

    #[test]
    fn no_moof_no_times() {
        let mut g = MoofGatherer::default();
        assert_eq!(g.feed(&boxed(b"mdat", &[0; 10]), 1000), None);
        assert_eq!(g.feed(&segment(true), 1000), None, "done after the mdat");
        assert_eq!(decode_times(&boxed(b"traf", &[]), 1000), None);
        assert_eq!(decode_times(&[], 0), None);
        // Truncated trun.
        let seg = segment(true);
        let moof_at = 8 + 8 + 8;
        let size = be32(&seg[moof_at - 8..]) as usize;
        let moof = &seg[moof_at..moof_at - 8 + size - 10];
        assert_eq!(decode_times(moof, 1000), None);
    }

    fn trak(handler: &[u8; 4], mdhd_version: u8, timescale: u32) -> Vec<u8> {
        let mut mdhd = vec![mdhd_version, 0, 0, 0];
        let times = if mdhd_version == 1 { 16 } else { 8 };
        mdhd.extend(std::iter::repeat_n(0u8, times));
        mdhd.extend_from_slice(&timescale.to_be_bytes());
        mdhd.extend_from_slice(&[0u8; 8]);
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0u8; 13]);
        let mut mdia = boxed(b"mdhd", &mdhd);
        mdia.extend(boxed(b"hdlr", &hdlr));
        let mut t = boxed(b"tkhd", &[0u8; 84]);
        t.extend(boxed(b"mdia", &mdia));
        boxed(b"trak", &t)
    }

    #[test]
    fn init_timescale_prefers_the_video_track() {
        let mut moov = boxed(b"mvhd", &[0u8; 100]);
        moov.extend(trak(b"soun", 0, 48_000));
        moov.extend(trak(b"vide", 1, 90_000));
        let mut init = boxed(b"ftyp", b"iso6\0\0\0\0iso6");
        init.extend(boxed(b"moov", &moov));
        assert_eq!(init_timescale(&init), Some(90_000));
        // Audio only: its track's timescale.
        let mut moov = boxed(b"mvhd", &[0u8; 100]);
        moov.extend(trak(b"soun", 0, 44_100));
        let mut init = boxed(b"ftyp", b"iso6\0\0\0\0iso6");
        init.extend(boxed(b"moov", &moov));
        assert_eq!(init_timescale(&init), Some(44_100));
        // The packager's own init segment.
        let aac = spate_packager::media::Track::with_config(
            1,
            spate_packager::media::Codec::Aac,
            44_100,
            vec![0x12, 0x10].into(),
        )
        .unwrap();
        let init = spate_packager::fmp4::init_segment(&[aac]).unwrap();
        assert_eq!(init_timescale(&init), Some(44_100));
        // Not an init segment / truncated.
        assert_eq!(init_timescale(b"<html>"), None);
        assert_eq!(init_timescale(&init[..init.len() - 10]), None);
        assert_eq!(init_timescale(&boxed(b"moov", &trak(b"vide", 0, 0))), None);
    }
}
