//! Property tests: for arbitrary sample lists the box tree is well formed,
//! the `trun`s describe exactly the referenced payloads, and `tfdt` is the
//! first dts.
use bytes::Bytes;
use proptest::prelude::*;

use super::tests::{find, parse_trun, tfdt, walk};
use super::*;
use crate::media::Frame;

/// (first dts, samples as (duration, composition offset, keyframe, size),
/// end given).
type RunSpec = (i64, Vec<(u32, u16, bool, usize)>, bool);

fn run_spec() -> impl Strategy<Value = RunSpec> {
    (
        0i64..(1 << 40),
        prop::collection::vec(
            (0u32..100_000, any::<u16>(), any::<bool>(), 0usize..300),
            1..40,
        ),
        any::<bool>(),
    )
}

proptest! {
    #[test]
    fn fragments_are_consistent(specs in prop::collection::vec(run_spec(), 0..3), seq: u32) {
        let mut all = Vec::new();
        for (track, (first, samples, _)) in specs.iter().enumerate() {
            let mut dts = *first;
            let mut frames = Vec::new();
            for (i, &(dur, cto, key, size)) in samples.iter().enumerate() {
                frames.push(Frame {
                    track: track as u32,
                    dts,
                    pts: dts + i64::from(cto),
                    keyframe: key,
                    payload: Bytes::from(vec![(track * 64 + i) as u8; size]),
                });
                dts += i64::from(dur);
            }
            all.push(frames);
        }
        let runs: Vec<TrackRun<'_>> = specs
            .iter()
            .zip(&all)
            .enumerate()
            .map(|(track, ((_, samples, with_end), frames))| {
                let last = frames.last().unwrap();
                let end = if *with_end || frames.len() == 1 {
                    Some(last.dts + i64::from(samples.last().unwrap().0))
                } else {
                    None
                };
                TrackRun { track: track as u32, frames, end_dts: end }
            })
            .collect();
        let mut out = vec![0xee; 3]; // something before: offsets are relative
        let payloads = write_fragment(seq, &runs, &mut out).unwrap();
        let total: usize = all.iter().flatten().map(|f| f.payload.len()).sum();
        prop_assert_eq!(payloads.iter().map(Bytes::len).sum::<usize>(), total);
        for (p, f) in payloads.iter().zip(all.iter().flatten()) {
            prop_assert_eq!(p.as_ptr(), f.payload.as_ptr());
        }
        let mut wire = out;
        for p in &payloads {
            wire.extend_from_slice(p);
        }
        let top = walk(&wire, 3, wire.len());
        prop_assert_eq!(top.len(), 2);
        prop_assert_eq!(&top[1].typ, b"mdat");
        prop_assert_eq!(top[1].end - top[1].body, total);
        let moof = top[0].start;
        let tfdts = find(&top, &["moof", "traf", "tfdt"]);
        let truns = find(&top, &["moof", "traf", "trun"]);
        prop_assert_eq!(truns.len(), all.len());
        let mut sizes = 0;
        let mut expect_offset = top[1].body;
        for (i, frames) in all.iter().enumerate() {
            prop_assert_eq!(tfdt(&wire, tfdts[i]), frames[0].dts as u64);
            let t = parse_trun(&wire, truns[i]);
            prop_assert_eq!(moof + t.data_offset as usize, expect_offset);
            prop_assert_eq!(t.samples.len(), frames.len());
            for (j, (s, f)) in t.samples.iter().zip(frames).enumerate() {
                // Without end_dts the last sample repeats the one before.
                let (_, spec, with_end) = &specs[i];
                let k = if j + 1 == spec.len() && !with_end && j > 0 { j - 1 } else { j };
                prop_assert_eq!(s.0, spec[k].0);
                prop_assert_eq!(s.1 as usize, f.payload.len());
                let flags = if f.keyframe { SYNC_SAMPLE_FLAGS } else { NON_SYNC_SAMPLE_FLAGS };
                prop_assert_eq!(s.2, flags);
                prop_assert_eq!(i64::from(s.3), f.pts - f.dts);
                sizes += s.1 as usize;
                expect_offset += f.payload.len();
            }
        }
        prop_assert_eq!(sizes, total);
    }
}
