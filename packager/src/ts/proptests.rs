//! Property tests: arbitrary frames muxed by [`TsMuxer`] give a well-formed
//! stream (whole packets, continuous counters, valid PSI) whose PES
//! packets, reassembled by the reader in `tests.rs`, carry exactly what was
//! muxed; arbitrary payloads never panic and a refused frame writes nothing.
use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;

use super::tests::demux;
use super::*;
use crate::media::{AudioSpecificConfig, AvcConfig, Codec, Frame, Track, rescale};

const AVCC: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/avcC_1920x1080.bin"
));

fn tracks() -> Vec<Track> {
    let asc = AudioSpecificConfig::encode(2, 44100, 2);
    let mut mp3 = Track::new(2, Codec::Mp3, 1000);
    mp3.info.sample_rate = Some(22050);
    vec![
        Track::with_config(0, Codec::H264, 1000, Bytes::from_static(AVCC)).unwrap(),
        Track::with_config(1, Codec::Aac, 44100, Bytes::from(asc)).unwrap(),
        mp3,
    ]
}

/// A frame plus the PES payload the muxer should make of it.
#[derive(Debug, Clone)]
struct Case {
    frame: Frame,
    expected: Vec<u8>,
}

fn cases() -> impl Strategy<Value = Vec<Case>> {
    prop::collection::vec(
        (
            0u32..3,
            0i64..120,
            0i64..200,
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..5000),
            prop::collection::vec(any::<Index>(), 0..4),
        ),
        1..30,
    )
    .prop_map(|items| {
        let params = {
            let c = AvcConfig::parse(&Bytes::from_static(AVCC)).unwrap();
            let mut v = Vec::new();
            for n in c.sps.iter().chain(&c.pps) {
                v.extend_from_slice(&[0, 0, 0, 1]);
                v.extend_from_slice(n);
            }
            v
        };
        let mut ms = 0i64;
        items
            .into_iter()
            .map(|(track, step, cts, key, data, cuts)| {
                ms += step;
                match track {
                    0 => {
                        let mut points: Vec<usize> =
                            cuts.iter().map(|c| c.index(data.len() + 1)).collect();
                        points.extend([0, data.len()]);
                        points.sort_unstable();
                        let mut payload = Vec::new();
                        let mut expected = vec![0, 0, 0, 1, 0x09, 0xF0];
                        if key {
                            expected.extend_from_slice(&params);
                        }
                        for w in points.windows(2) {
                            let mut nal = data[w[0]..w[1]].to_vec();
                            let Some(first) = nal.first_mut() else {
                                continue;
                            };
                            *first = (*first & 0x60) | if key { 5 } else { 1 };
                            payload.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                            payload.extend_from_slice(&nal);
                            expected.extend_from_slice(&[0, 0, 0, 1]);
                            expected.extend_from_slice(&nal);
                        }
                        Case {
                            frame: Frame {
                                track,
                                dts: ms,
                                pts: ms + cts,
                                keyframe: key,
                                payload: Bytes::from(payload),
                            },
                            expected,
                        }
                    }
                    1 => {
                        let ts = rescale(ms, 1000, 44100);
                        let n = data.len() + 7;
                        let mut expected = vec![
                            0xFF,
                            0xF1,
                            (1 << 6) | (4 << 2),
                            (2 << 6) | (n >> 11) as u8,
                            (n >> 3) as u8,
                            ((n & 7) as u8) << 5 | 0x1F,
                            0xFC,
                        ];
                        expected.extend_from_slice(&data);
                        Case {
                            frame: Frame {
                                track,
                                dts: ts,
                                pts: ts,
                                keyframe: true,
                                payload: Bytes::from(data),
                            },
                            expected,
                        }
                    }
                    _ => Case {
                        frame: Frame {
                            track,
                            dts: ms,
                            pts: ms,
                            keyframe: true,
                            payload: Bytes::from(data.clone()),
                        },
                        expected: data,
                    },
                }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn muxed_frames_read_back(cases in cases()) {
        let tracks = tracks();
        let mut m = TsMuxer::new(&tracks).unwrap();
        let mut out = Vec::new();
        for c in &cases {
            m.write_frame(&c.frame, &mut out).unwrap();
        }
        let d = demux(&out);
        for (i, t) in tracks.iter().enumerate() {
            let pid = FIRST_ES_PID + i as u16;
            let want: Vec<&Case> = cases.iter().filter(|c| c.frame.track == t.id).collect();
            let got = d.pes.get(&pid).map(Vec::as_slice).unwrap_or(&[]);
            prop_assert_eq!(got.len(), want.len());
            for (c, p) in want.iter().zip(got) {
                let pts = rescale(c.frame.pts, t.timebase, 90000);
                let dts = rescale(c.frame.dts, t.timebase, 90000);
                prop_assert_eq!(p.pts, Some(pts));
                prop_assert_eq!(p.dts.unwrap_or(pts), dts);
                prop_assert_eq!(&p.payload, &c.expected);
                prop_assert_eq!(p.random_access, t.codec.is_video() && c.frame.keyframe);
            }
        }
        prop_assert_eq!(d.streams.len(), 3);
        prop_assert_eq!(d.streams[2].0, STREAM_TYPE_MPEG2_AUDIO);
        for w in d.pcrs.windows(2) {
            prop_assert!(w[1].1 >= w[0].1);
        }
    }

    #[test]
    fn arbitrary_payloads_never_panic(
        frames in prop::collection::vec(
            (0u32..4, any::<bool>(), prop::collection::vec(any::<u8>(), 0..3000)),
            0..20,
        ),
    ) {
        let mut m = TsMuxer::new(&tracks()).unwrap();
        let mut out = Vec::new();
        for (i, (track, key, payload)) in frames.into_iter().enumerate() {
            let f = Frame {
                track,
                dts: i as i64 * 10,
                pts: i as i64 * 10,
                keyframe: key,
                payload: Bytes::from(payload),
            };
            let before = out.len();
            if m.write_frame(&f, &mut out).is_err() {
                prop_assert_eq!(out.len(), before);
            }
        }
        demux(&out);
    }
}
