//! Property tests: for arbitrary streams (monotonic dts with random
//! keyframes, random forward and backward gaps, other-track frames, forced
//! discontinuities) every segment starts at a cut point, sequence numbers
//! go up by one, durations are exact within a timeline and bounded, and
//! arbitrary input never panics.
use proptest::prelude::*;

use super::*;

/// Largest ordinary dts step between cut-track frames.
const MAX_STEP: i64 = 200_000;

#[derive(Debug, Clone)]
enum Event {
    /// A cut-track frame `step` after the previous one.
    Frame { step: i64, key: bool },
    /// A cut-track frame after a gap of `max_gap_us + extra`, forward or
    /// backward.
    Gap {
        extra: i64,
        backward: bool,
        key: bool,
    },
    /// A frame of another track at the current dts.
    Other,
    /// `force_discontinuity()`.
    Force,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        60 => (0..=MAX_STEP, prop::bool::weighted(0.15))
            .prop_map(|(step, key)| Event::Frame { step, key }),
        1 => (1i64..100_000_000, any::<bool>(), any::<bool>())
            .prop_map(|(extra, backward, key)| Event::Gap { extra, backward, key }),
        15 => Just(Event::Other),
        1 => Just(Event::Force),
    ]
}

/// A segment as the test saw it start.
#[derive(Debug, Clone, Copy)]
struct Started {
    seq: u64,
    start_us: i64,
    discontinuity: bool,
}

proptest! {
    #[test]
    fn segments_are_consistent(
        target_us in 500_000i64..=3_000_000,
        first_seq in any::<u64>(),
        has_video: bool,
        start in -1_000_000_000_000i64..1_000_000_000_000,
        events in prop::collection::vec(event(), 0..600),
    ) {
        let config = SegmenterConfig::with_target(target_us);
        let mut s = Segmenter::new(config, first_seq, has_video);
        let mut dts = start;
        let mut started: Vec<Started> = Vec::new();
        let mut ended: Vec<SegmentSpan> = Vec::new();
        let mut expect_discontinuity = false;
        // Largest distance from a cut point to the next cut point, or to
        // the last frame before a gap, within one timeline.
        let mut max_spacing = 0i64;
        let mut last_cut_point: Option<i64> = None;
        for ev in events {
            let (step, is_gap, key) = match ev {
                Event::Force => {
                    s.force_discontinuity();
                    expect_discontinuity = true;
                    continue;
                }
                Event::Other => {
                    let was_open = s.in_segment();
                    let p = s.place(dts, false, true);
                    let expected = if was_open { Placement::Continue } else { Placement::Drop };
                    prop_assert_eq!(p, expected);
                    continue;
                }
                Event::Frame { step, key } => (step, false, key),
                Event::Gap { extra, backward, key } => {
                    let g = config.max_gap_us + extra;
                    (if backward { -g } else { g }, true, key)
                }
            };
            dts += step;
            let cut_point = key || !has_video;
            if is_gap {
                last_cut_point = None;
            } else if let Some(k) = last_cut_point {
                max_spacing = max_spacing.max(dts - k);
            }
            if cut_point {
                last_cut_point = Some(dts);
            }
            let was_open = s.in_segment();
            if is_gap && was_open {
                expect_discontinuity = true;
            }
            match s.place(dts, true, key) {
                Placement::Cut { ended: e, starts, discontinuity } => {
                    prop_assert!(cut_point, "cut at a non-keyframe");
                    let expected_seq = started.last().map_or(first_seq, |p| p.seq.wrapping_add(1));
                    prop_assert_eq!(starts, expected_seq);
                    prop_assert_eq!(discontinuity, expect_discontinuity);
                    expect_discontinuity = false;
                    match e {
                        Some(e) => ended.push(e),
                        None => prop_assert!(started.is_empty(), "only the first cut ends nothing"),
                    }
                    prop_assert!(s.in_segment());
                    started.push(Started { seq: starts, start_us: dts, discontinuity });
                }
                Placement::Continue => prop_assert!(was_open && s.in_segment()),
                Placement::Drop => prop_assert!(!s.in_segment()),
            }
        }
        let end_us = dts + 1_000;
        let last = s.finish(end_us);
        prop_assert!(!s.in_segment());
        ended.extend(last);
        prop_assert_eq!(ended.len(), started.len());

        let bound = target_us + max_spacing;
        for (i, (st, e)) in started.iter().zip(&ended).enumerate() {
            prop_assert_eq!(e.seq, st.seq);
            prop_assert_eq!(e.start_us, st.start_us);
            prop_assert_eq!(e.discontinuity, st.discontinuity);
            prop_assert!(e.duration_us >= 0);
            match started.get(i + 1) {
                // Exact within a timeline.
                Some(next) if !next.discontinuity => {
                    prop_assert_eq!(e.duration_us, next.start_us - st.start_us);
                    prop_assert!(e.duration_us <= bound, "{} > {}", e.duration_us, bound);
                }
                // Ended at a discontinuity: last frame + one interval.
                Some(_) => prop_assert!(e.duration_us <= bound + MAX_STEP),
                None => {}
            }
        }
        // Sum of durations over each run of contiguous segments = last
        // start in the run - first start.
        let mut run_start = 0;
        for i in 1..=started.len() {
            if i == started.len() || started[i].discontinuity {
                let sum: i64 = ended[run_start..i - 1].iter().map(|e| e.duration_us).sum();
                prop_assert_eq!(sum, started[i - 1].start_us - started[run_start].start_us);
                run_start = i;
            }
        }
    }

    #[test]
    fn arbitrary_input_never_panics(
        target_us: i64,
        max_gap_us: i64,
        first_seq: u64,
        has_video: bool,
        frames in prop::collection::vec((any::<i64>(), any::<bool>(), any::<bool>(), 0u8..20), 0..200),
        end_us: i64,
    ) {
        let mut s = Segmenter::new(SegmenterConfig { target_us, max_gap_us }, first_seq, has_video);
        let mut seq = first_seq;
        for (dts, cut_track, key, action) in frames {
            if action == 0 {
                s.force_discontinuity();
            }
            if let Placement::Cut { ended, starts, .. } = s.place(dts, cut_track, key) {
                prop_assert_eq!(starts, seq);
                seq = seq.wrapping_add(1);
                if let Some(e) = ended {
                    prop_assert!(e.duration_us >= 0);
                }
            }
            prop_assert_eq!(s.next_seq(), seq);
        }
        if let Some(e) = s.finish(end_us) {
            prop_assert!(e.duration_us >= 0);
        }
    }
}
