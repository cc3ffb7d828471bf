//! Property tests of [`TsDemuxer`]: arbitrary frames of every codec our
//! [`TsMuxer`] writes come back the same (payload, dts, pts, keyframe,
//! equivalent configuration) whatever the split of the stream; arbitrary
//! and corrupted input never panics, splits never change the events, and
//! the event stream keeps its invariants.
use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::media::{
    AudioSpecificConfig, AvcConfig, Codec, Frame, HevcConfig, OpusHead, Track, rescale,
};

const AVCC: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/avcC_1920x1080.bin"
));
const HVCC: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/hvcC_640x360.bin"
));
const DOPS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/dOps_stereo.bin"
));

fn source_tracks() -> Vec<Track> {
    let asc = AudioSpecificConfig::encode(2, 44100, 2);
    let mut mp3 = Track::new(3, Codec::Mp3, 1000);
    mp3.info.sample_rate = Some(44100);
    vec![
        Track::with_config(0, Codec::H264, 1000, Bytes::from_static(AVCC)).unwrap(),
        Track::with_config(1, Codec::H265, 90_000, Bytes::from_static(HVCC)).unwrap(),
        Track::with_config(2, Codec::Aac, 44100, Bytes::from(asc)).unwrap(),
        mp3,
        Track::with_config(4, Codec::Opus, 48000, Bytes::from_static(DOPS)).unwrap(),
    ]
}

/// Emulation prevention, so the unit can go into Annex B unambiguously,
/// and no trailing zero byte.
fn escape(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    let mut zeros = 0;
    for &b in body {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    if out.last() == Some(&0) {
        out.push(0x80);
    }
    out
}

fn frames_strategy() -> impl Strategy<Value = Vec<Frame>> {
    prop::collection::vec(
        (
            0u32..5,
            1i64..60,
            0i64..200,
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 1..3000),
            prop::collection::vec(any::<Index>(), 0..3),
        ),
        1..40,
    )
    .prop_map(|items| {
        let tracks = source_tracks();
        let mut ms = 0i64;
        items
            .into_iter()
            .map(|(track, step, cts, key, body, cuts)| {
                ms += step;
                let tb = tracks[track as usize].timebase;
                let dts = rescale(ms, 1000, tb);
                match track {
                    0 | 1 => {
                        let mut points: Vec<usize> =
                            cuts.iter().map(|c| c.index(body.len())).collect();
                        points.extend([0, body.len()]);
                        points.sort_unstable();
                        points.dedup();
                        let mut payload = Vec::new();
                        for w in points.windows(2) {
                            let mut nal = if track == 0 {
                                vec![if key { 0x65 } else { 0x41 }]
                            } else {
                                vec![if key { 19 << 1 } else { 1 << 1 }, 0x01]
                            };
                            nal.extend(escape(&body[w[0]..w[1]]));
                            payload.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                            payload.extend_from_slice(&nal);
                        }
                        Frame {
                            track,
                            dts,
                            pts: dts + rescale(cts, 1000, tb),
                            keyframe: key,
                            payload: Bytes::from(payload),
                        }
                    }
                    2 => Frame {
                        track,
                        dts,
                        pts: dts,
                        keyframe: true,
                        payload: Bytes::from(body[..body.len().min(2000)].to_vec()),
                    },
                    3 => {
                        // One MPEG-1 layer III frame, 44.1 kHz, stereo.
                        let index = body[0] % 14 + 1;
                        let pad = body[0] >> 7;
                        let f = [0xFF, 0xFB, (index << 4) | (pad << 1), 0x04];
                        let len = crate::media::MpegAudioFrame::parse(&f).unwrap().len;
                        let mut v = f.to_vec();
                        v.extend(body.iter().cycle().take(len - 4));
                        Frame {
                            track,
                            dts,
                            pts: dts,
                            keyframe: true,
                            payload: Bytes::from(v),
                        }
                    }
                    _ => {
                        // CELT fullband 20 ms, stereo, one frame: 960 samples.
                        let mut v = vec![0xFC];
                        v.extend_from_slice(&body[..body.len().min(1200)]);
                        Frame {
                            track,
                            dts,
                            pts: dts,
                            keyframe: true,
                            payload: Bytes::from(v),
                        }
                    }
                }
            })
            .collect()
    })
}

/// Push `data` in pieces cut at `cuts`, finish; the events.
fn demux_split(data: &[u8], cuts: &[Index], limits: TsDemuxLimits) -> (Vec<TsEvent>, TsDemuxStats) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    points.extend([0, data.len()]);
    points.sort_unstable();
    let mut d = TsDemuxer::new(limits);
    let mut events = Vec::new();
    for w in points.windows(2) {
        d.push(&data[w[0]..w[1]]);
        while let Some(e) = d.poll_event() {
            events.push(e);
        }
    }
    d.finish();
    while let Some(e) = d.poll_event() {
        events.push(e);
    }
    (events, d.stats().clone())
}

/// What every event stream must satisfy: frames only of announced tracks,
/// payloads within the PES limit, DTS never decreasing between
/// Discontinuity events, Discontinuity/TrackRemoved only for announced
/// tracks, ids never reused after removal.
pub(super) fn check_invariants(events: &[TsEvent], limits: &TsDemuxLimits) -> Result<(), String> {
    let mut live: HashMap<u32, (u16, u16)> = HashMap::new();
    let mut removed: HashSet<u32> = HashSet::new();
    let mut last_dts: HashMap<u32, i64> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        match e {
            TsEvent::Track {
                track,
                program,
                pid,
            } => {
                if removed.contains(&track.id) {
                    return Err(format!("event {i}: id {} reused", track.id));
                }
                if track.timebase != TS_TIMEBASE {
                    return Err(format!("event {i}: timebase {}", track.timebase));
                }
                if let Some(&(p, q)) = live.get(&track.id)
                    && (p, q) != (*program, *pid)
                {
                    return Err(format!("event {i}: track {} moved", track.id));
                }
                live.insert(track.id, (*program, *pid));
            }
            TsEvent::TrackRemoved { id } => {
                if live.remove(id).is_none() {
                    return Err(format!("event {i}: removed unannounced {id}"));
                }
                removed.insert(*id);
                last_dts.remove(id);
            }
            TsEvent::Discontinuity { id } => {
                if !live.contains_key(id) {
                    return Err(format!("event {i}: discontinuity of unannounced {id}"));
                }
                last_dts.remove(id);
            }
            TsEvent::Frame(f) => {
                if !live.contains_key(&f.track) {
                    return Err(format!("event {i}: frame of unannounced {}", f.track));
                }
                if f.payload.is_empty() || f.payload.len() >= limits.max_pes_bytes {
                    return Err(format!("event {i}: payload of {} bytes", f.payload.len()));
                }
                if let Some(&l) = last_dts.get(&f.track)
                    && f.dts < l
                {
                    return Err(format!(
                        "event {i}: dts {} after {l} without a discontinuity",
                        f.dts
                    ));
                }
                last_dts.insert(f.track, f.dts);
            }
        }
    }
    Ok(())
}

fn config_equivalent(got: &Track, want: &Track) -> bool {
    let (Some(g), Some(w)) = (&got.config, &want.config) else {
        return want.config.is_none()
            && got.info.sample_rate == want.info.sample_rate
            && got.info.channels == Some(2);
    };
    match want.codec {
        Codec::H264 => {
            let (g, w) = (AvcConfig::parse(g).unwrap(), AvcConfig::parse(w).unwrap());
            (g.profile, g.level, g.sps, g.pps) == (w.profile, w.level, w.sps, w.pps)
        }
        Codec::H265 => {
            let (g, w) = (HevcConfig::parse(g).unwrap(), HevcConfig::parse(w).unwrap());
            [
                crate::media::NAL_VPS,
                crate::media::NAL_SPS,
                crate::media::NAL_PPS,
            ]
            .iter()
            .all(|&t| g.nalus(t).eq(w.nalus(t)))
                && (g.profile, g.level) == (w.profile, w.level)
        }
        Codec::Opus => {
            let (g, w) = (OpusHead::parse(g).unwrap(), OpusHead::parse(w).unwrap());
            (g.channels, g.pre_skip) == (w.channels, w.pre_skip)
        }
        _ => g == w,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn mux_demux_round_trip(frames in frames_strategy(), cuts in prop::collection::vec(any::<Index>(), 0..12)) {
        let tracks = source_tracks();
        let mut m = TsMuxer::new(&tracks).unwrap();
        let mut ts = Vec::new();
        for f in &frames {
            m.write_frame(f, &mut ts).unwrap();
        }
        let limits = TsDemuxLimits::default();
        let (events, stats) = demux_split(&ts, &cuts, limits);
        check_invariants(&events, &limits).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&events, &demux_split(&ts, &[], limits).0);
        prop_assert_eq!(
            (stats.cc_errors, stats.pes_errors, stats.es_errors, stats.resyncs, stats.skipped_bytes),
            (0, 0, 0, 0, 0)
        );
        let mut dropped = 0;
        for t in &tracks {
            let mut want: Vec<Frame> = Vec::new();
            let mut seen_key = !t.codec.is_video();
            for f in frames.iter().filter(|f| f.track == t.id) {
                seen_key |= f.keyframe;
                if !seen_key {
                    dropped += 1;
                    continue;
                }
                want.push(Frame {
                    dts: rescale(f.dts, t.timebase, 90_000),
                    pts: rescale(f.pts, t.timebase, 90_000),
                    ..f.clone()
                });
            }
            let got: Vec<Frame> = events.iter().filter_map(|e| match e {
                TsEvent::Frame(f) if f.track == t.id => Some(f.clone()),
                _ => None,
            }).collect();
            prop_assert_eq!(&got, &want, "track {}", t.id);
            let announced: Vec<&Track> = events.iter().filter_map(|e| match e {
                TsEvent::Track { track, program, pid } if track.id == t.id => {
                    assert_eq!((*program, *pid), (PROGRAM_NUMBER, FIRST_ES_PID + t.id as u16));
                    Some(track)
                }
                _ => None,
            }).collect();
            if want.is_empty() {
                continue;
            }
            prop_assert_eq!(announced.len(), 1, "track {} announced once", t.id);
            prop_assert_eq!(announced[0].codec, t.codec);
            prop_assert!(config_equivalent(announced[0], t), "config of track {}", t.id);
        }
        prop_assert_eq!(stats.dropped_frames, dropped);
    }

    #[test]
    fn corrupted_streams_keep_invariants(
        frames in frames_strategy(),
        damage in prop::collection::vec((any::<Index>(), any::<u8>()), 0..30),
        cut in any::<Index>(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        small in any::<bool>(),
    ) {
        let mut m = TsMuxer::new(&source_tracks()).unwrap();
        let mut ts = Vec::new();
        for f in &frames {
            m.write_frame(f, &mut ts).unwrap();
        }
        for (at, byte) in &damage {
            let i = at.index(ts.len());
            ts[i] = *byte;
        }
        if damage.len() % 3 == 1 {
            // Remove a run of bytes (a truncated packet or lost datagram).
            let i = cut.index(ts.len());
            ts.drain(i..(i + 1 + damage.len() * 7).min(ts.len()));
        }
        let limits = if small {
            TsDemuxLimits { max_pes_bytes: 2000, max_streams: 3, max_programs: 1, max_buffered_bytes: 3000 }
        } else {
            TsDemuxLimits::default()
        };
        let (events, _) = demux_split(&ts, &cuts, limits);
        check_invariants(&events, &limits).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&events, &demux_split(&ts, &[], limits).0);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..4000),
        syncs in any::<bool>(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut data = data;
        if syncs {
            // Sync bytes every 188 bytes so the garbage gets past alignment.
            for i in (0..data.len()).step_by(PACKET_LEN) {
                data[i] = SYNC_BYTE;
            }
        }
        let limits = TsDemuxLimits::default();
        let (events, stats) = demux_split(&data, &cuts, limits);
        check_invariants(&events, &limits).map_err(TestCaseError::fail)?;
        let (whole, whole_stats) = demux_split(&data, &[], limits);
        prop_assert_eq!(events, whole);
        prop_assert_eq!(stats, whole_stats);
    }
}
