//! Cut decisions for small, hand-written streams.
use super::*;

const FRAME: i64 = 40_000; // 25 fps
const AAC_FRAME: i64 = 21_333; // 1024 samples at 48 kHz

fn cut(ended: Option<SegmentSpan>, starts: u64, discontinuity: bool) -> Placement {
    Placement::Cut {
        ended,
        starts,
        discontinuity,
    }
}

fn span(seq: u64, start_us: i64, duration_us: i64, discontinuity: bool) -> SegmentSpan {
    SegmentSpan {
        seq,
        start_us,
        duration_us,
        discontinuity,
    }
}

/// Feed 25 fps video with a keyframe every `gop` frames, frames `from..to`,
/// and collect the cuts.
fn video(s: &mut Segmenter, from: i64, to: i64, gop: i64) -> Vec<Placement> {
    (from..to)
        .map(|n| s.place(n * FRAME, true, n % gop == 0))
        .filter(|p| *p != Placement::Continue)
        .collect()
}

#[test]
fn default_config() {
    let c = SegmenterConfig::default();
    assert_eq!((c.target_us, c.max_gap_us), (2_000_000, 4_000_000));
    assert_eq!(
        SegmenterConfig::with_target(6_000_000).max_gap_us,
        12_000_000
    );
}

#[test]
fn video_cuts_at_keyframes_after_the_target() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 7, true);
    assert!(!s.in_segment());
    // Keyframe every 25 frames (1 s): cuts every 50 frames.
    let cuts = video(&mut s, 0, 151, 25);
    assert_eq!(
        cuts,
        vec![
            cut(None, 7, false),
            cut(Some(span(7, 0, 50 * FRAME, false)), 8, false),
            cut(Some(span(8, 50 * FRAME, 50 * FRAME, false)), 9, false),
            cut(Some(span(9, 100 * FRAME, 50 * FRAME, false)), 10, false),
        ]
    );
    assert!(s.in_segment());
    assert_eq!(s.current(), Some((10, 150 * FRAME)));
    assert_eq!(s.next_seq(), 11);
    assert_eq!(
        s.finish(151 * FRAME),
        Some(span(10, 150 * FRAME, FRAME, false))
    );
    assert!(!s.in_segment());
    assert_eq!(s.finish(200 * FRAME), None);
}

#[test]
fn long_gops_give_long_segments() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    // Keyframe every 75 frames (3 s): a 2 s target still cuts every 3 s.
    let cuts = video(&mut s, 0, 151, 75);
    assert_eq!(
        cuts,
        vec![
            cut(None, 0, false),
            cut(Some(span(0, 0, 75 * FRAME, false)), 1, false),
            cut(Some(span(1, 75 * FRAME, 75 * FRAME, false)), 2, false),
        ]
    );
}

#[test]
fn frames_before_the_first_keyframe_are_dropped() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    assert_eq!(s.place(0, false, true), Placement::Drop); // audio
    assert_eq!(s.place(0, true, false), Placement::Drop);
    assert_eq!(s.place(10_000, false, true), Placement::Drop);
    assert_eq!(s.place(FRAME, true, true), cut(None, 0, false));
    assert_eq!(s.place(FRAME, false, true), Placement::Continue);
    assert_eq!(s.place(2 * FRAME, true, false), Placement::Continue);
    // Keyframes before the target do not cut.
    assert_eq!(s.place(3 * FRAME, true, true), Placement::Continue);
}

#[test]
fn audio_only_cuts_at_any_frame() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, false);
    let mut cuts = Vec::new();
    for n in 0..200 {
        // The keyframe flag does not matter audio-only.
        match s.place(n * AAC_FRAME, true, false) {
            Placement::Continue => {}
            p => cuts.push((n, p)),
        }
    }
    // 2 s / 21.333 ms = 93.75: the 94th frame cuts.
    assert_eq!(
        cuts,
        vec![
            (0, cut(None, 0, false)),
            (94, cut(Some(span(0, 0, 94 * AAC_FRAME, false)), 1, false)),
            (
                188,
                cut(
                    Some(span(1, 94 * AAC_FRAME, 94 * AAC_FRAME, false)),
                    2,
                    false
                )
            ),
        ]
    );
}

#[test]
fn forward_gap_at_a_non_keyframe_ends_the_segment_and_drops_until_a_keyframe() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    video(&mut s, 0, 30, 30);
    // 10 minutes later, mid-GOP.
    let later = 600_000_000;
    assert_eq!(s.place(later, true, false), Placement::Drop);
    assert!(!s.in_segment());
    assert_eq!(s.place(later, false, true), Placement::Drop);
    assert_eq!(s.place(later + FRAME, true, false), Placement::Drop);
    // The segment ended at its last frame + one frame interval.
    assert_eq!(
        s.place(later + 2 * FRAME, true, true),
        cut(Some(span(0, 0, 30 * FRAME, false)), 1, true)
    );
    assert_eq!(s.place(later + 2 * FRAME, false, true), Placement::Continue);
    // The new segment continues normally.
    assert_eq!(
        s.place(later + 2 * FRAME + 2_000_000, true, true),
        cut(Some(span(1, later + 2 * FRAME, 2_000_000, true)), 2, false)
    );
}

#[test]
fn backward_gap_at_a_keyframe_cuts_at_once() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    let base = 100_000_000;
    for n in 0..10 {
        s.place(base + n * FRAME, true, n == 0);
    }
    // The publisher restarted its clock at 0.
    assert_eq!(
        s.place(0, true, true),
        cut(Some(span(0, base, 10 * FRAME, false)), 1, true)
    );
}

#[test]
fn gaps_within_max_gap_are_not_discontinuities() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    assert_eq!(s.place(0, true, true), cut(None, 0, false));
    // A 3.9 s hole is a long segment, not a discontinuity.
    assert_eq!(
        s.place(3_900_000, true, true),
        cut(Some(span(0, 0, 3_900_000, false)), 1, false)
    );
}

#[test]
fn audio_only_gap_cuts_at_the_frame() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 5, false);
    for n in 0..10 {
        s.place(n * AAC_FRAME, true, true);
    }
    assert_eq!(
        s.place(9 * AAC_FRAME + 5_000_000, true, true),
        cut(Some(span(5, 0, 10 * AAC_FRAME, false)), 6, true)
    );
}

#[test]
fn forced_discontinuity_cuts_at_the_next_keyframe() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    video(&mut s, 0, 10, 30);
    s.force_discontinuity();
    // Non-keyframes still continue the segment.
    assert_eq!(s.place(10 * FRAME, true, false), Placement::Continue);
    assert_eq!(
        s.place(11 * FRAME, true, true),
        cut(Some(span(0, 0, 11 * FRAME, false)), 1, true)
    );
    // Once only.
    assert_eq!(s.place(12 * FRAME, true, true), Placement::Continue);
}

#[test]
fn forced_discontinuity_with_rebased_timestamps_estimates_the_end() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    let base = 3_000_000;
    for n in 0..10 {
        s.place(base + n * FRAME, true, n == 0);
    }
    s.force_discontinuity();
    // A rebase 1 s back is within max_gap: the forced flag is what cuts,
    // and the end is estimated instead of going negative.
    assert_eq!(
        s.place(base - 1_000_000, true, true),
        cut(Some(span(0, base, 10 * FRAME, false)), 1, true)
    );
}

#[test]
fn forced_discontinuity_before_the_first_segment_flags_it() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 42, true);
    s.force_discontinuity();
    assert_eq!(s.place(0, true, true), cut(None, 42, true));
}

#[test]
fn finish_returns_a_segment_ended_by_a_gap() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    video(&mut s, 0, 5, 30);
    assert_eq!(s.place(100_000_000, true, false), Placement::Drop);
    assert_eq!(s.finish(100_000_000), Some(span(0, 0, 5 * FRAME, false)));
    assert_eq!(s.finish(100_000_000), None);
}

#[test]
fn frames_after_finish_start_a_discontinuous_segment() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    video(&mut s, 0, 5, 30);
    assert!(s.finish(5 * FRAME).is_some());
    assert_eq!(s.place(6 * FRAME, false, true), Placement::Drop);
    assert_eq!(s.place(6 * FRAME, true, false), Placement::Drop);
    assert_eq!(s.place(7 * FRAME, true, true), cut(None, 1, true));
}

#[test]
fn a_single_frame_segment_ended_by_a_gap_uses_the_previous_interval() {
    let mut s = Segmenter::new(SegmenterConfig::default(), 0, true);
    video(&mut s, 0, 50, 50);
    assert!(matches!(
        s.place(50 * FRAME, true, true),
        Placement::Cut { starts: 1, .. }
    ));
    assert_eq!(
        s.place(50 * FRAME + 10_000_000, true, true),
        cut(Some(span(1, 50 * FRAME, FRAME, false)), 2, true)
    );
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    let mut s = Segmenter::new(SegmenterConfig::default(), u64::MAX, true);
    assert_eq!(s.place(i64::MIN, true, true), cut(None, u64::MAX, false));
    let p = s.place(i64::MAX, true, true);
    assert!(matches!(
        p,
        Placement::Cut {
            starts: 0,
            discontinuity: true,
            ..
        }
    ));
    assert_eq!(s.finish(i64::MIN).map(|s| s.duration_us), Some(0));
}
