//! Where segments are cut: the decision shared by HLS (TS and fMP4), LL-HLS
//! and DASH, made once per stream.
//!
//! [`Segmenter`] sees every frame of a stream in decode order, as a
//! timestamp on one common microsecond clock (the caller rescales each
//! track's `dts` with [`rescale`](crate::media::rescale)`(dts, timebase,
//! 1_000_000)`), whether it belongs to the *cut track* and whether it is a
//! keyframe, and answers with a [`Placement`]: the frame continues the open
//! segment, starts a new one (closing the previous), or is dropped. It holds
//! no frames and writes nothing; the muxers do that.
//!
//! Rules:
//! - **The cut track** is the video track when the stream has video; in an
//!   audio-only stream every audio frame is of the cut track. Only
//!   cut-track frames move the segmenter; frames of other tracks join the
//!   open segment ([`Placement::Continue`]) or are dropped when none is
//!   open.
//! - **Start.** With video, the first segment starts at the first video
//!   keyframe; every frame before it, of any track, is dropped. Audio-only,
//!   the first frame starts it.
//! - **Cuts** happen only at cut points: a cut-track keyframe with video,
//!   any cut-track frame audio-only. A cut point cuts when `dts - start >=
//!   target_us`, or at once when a discontinuity is pending. A segment is
//!   never cut between keyframes, so a stream whose keyframes are 10 s
//!   apart gets 10 s segments (at most `target_us` + the keyframe interval);
//!   there is no cap that would cut a segment that could not be decoded on
//!   its own.
//! - **Durations** are exact from timestamps: the next segment's start
//!   minus this one's, when the next segment continues the same timeline.
//! - **Gaps.** A cut-track frame whose dts is more than `max_gap_us` after
//!   (or before) the previous cut-track frame's is a discontinuity: the open
//!   segment ends *at once*, at its largest cut-track dts plus the last
//!   frame interval observed on the cut track before the gap (an estimate:
//!   what the segment's last frame would have lasted), and the next segment
//!   — starting at this frame audio-only, at the next keyframe with video
//!   (frames until then are dropped) — carries `discontinuity`. Timestamp
//!   gaps larger than a segment thus produce a discontinuity, never a
//!   10-minute segment. A segment that ends at a discontinuity, detected or
//!   forced with [`Segmenter::force_discontinuity`], always gets this
//!   estimated duration, because the next start is on another timeline.
//! - A segment ended by a gap is reported in the `ended` field of the next
//!   [`Placement::Cut`] (or by [`Segmenter::finish`]); between the gap and
//!   that cut no segment is open.
//! - Frames of other tracks are not checked for gaps: the caller feeds all
//!   tracks in one decode order, and a jump shows on the cut track.
//!
//! Sequence numbers count from `first_seq`, one per segment started.

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// How long segments should be, and what counts as a timestamp gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// The target segment duration in microseconds: a segment is cut at the
    /// first cut point at least this far after its start. Default 2 s.
    pub target_us: i64,
    /// A cut-track dts step forward or backward larger than this, in
    /// microseconds, is a discontinuity. Should be well above the largest
    /// frame interval. Default `2 * target_us`.
    pub max_gap_us: i64,
}

impl SegmenterConfig {
    /// A configuration for a target duration, with `max_gap_us = 2 *
    /// target_us`.
    pub fn with_target(target_us: i64) -> SegmenterConfig {
        SegmenterConfig {
            target_us,
            max_gap_us: target_us.saturating_mul(2),
        }
    }
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig::with_target(2_000_000)
    }
}

/// A finished segment: where it starts and how long it lasts, in
/// microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSpan {
    /// Sequence number.
    pub seq: u64,
    /// dts of its first frame.
    pub start_us: i64,
    /// Duration; never negative. Exact (next start − start) unless the
    /// segment ended at a discontinuity or by [`Segmenter::finish`].
    pub duration_us: i64,
    /// This segment starts after a discontinuity (timestamp gap, forced).
    pub discontinuity: bool,
}

impl SegmentSpan {
    /// `start_us + duration_us` (saturating).
    pub fn end_us(&self) -> i64 {
        self.start_us.saturating_add(self.duration_us)
    }
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The frame belongs to the current segment.
    Continue,
    /// A new segment starts with this frame.
    Cut {
        /// The segment that just ended (`None` for the very first segment,
        /// and after [`Segmenter::finish`] took it).
        ended: Option<SegmentSpan>,
        /// Sequence number of the new segment.
        starts: u64,
        /// The new segment starts after a discontinuity.
        discontinuity: bool,
    },
    /// The frame belongs to no segment: before the first keyframe of a
    /// stream with video, after a timestamp gap until the next keyframe, or
    /// (any track) while no segment is open.
    Drop,
}

/// The open segment.
#[derive(Debug, Clone, Copy)]
struct OpenSegment {
    seq: u64,
    start_us: i64,
    discontinuity: bool,
    /// Largest cut-track dts placed in it.
    max_cut_dts: i64,
}

impl OpenSegment {
    fn span(&self, duration_us: i64) -> SegmentSpan {
        SegmentSpan {
            seq: self.seq,
            start_us: self.start_us,
            duration_us: duration_us.max(0),
            discontinuity: self.discontinuity,
        }
    }
}

/// Decides where a stream's segments are cut; see the [module
/// docs](self) for the rules.
#[derive(Debug, Clone)]
pub struct Segmenter {
    config: SegmenterConfig,
    has_video: bool,
    next_seq: u64,
    open: Option<OpenSegment>,
    /// A segment ended by a gap, waiting for the next cut to report it.
    ended_by_gap: Option<SegmentSpan>,
    discontinuity_pending: bool,
    /// dts of the previous cut-track frame (placed or dropped).
    last_cut_dts: Option<i64>,
    /// The last positive step between consecutive cut-track frames, not
    /// counting gaps; 0 until one was seen.
    last_interval_us: i64,
}

impl Segmenter {
    /// A segmenter whose first segment gets sequence number `first_seq`.
    /// `has_video`: the stream has a video track, whose keyframes are the
    /// only cut points.
    pub fn new(config: SegmenterConfig, first_seq: u64, has_video: bool) -> Self {
        Segmenter {
            config,
            has_video,
            next_seq: first_seq,
            open: None,
            ended_by_gap: None,
            discontinuity_pending: false,
            last_cut_dts: None,
            last_interval_us: 0,
        }
    }

    /// Place one frame, in decode order across all tracks. `dts_us`: its
    /// dts on the common microsecond clock. `is_cut_track`: the frame is of
    /// the track that decides cuts (the video track if the stream has video,
    /// else every audio frame counts). `keyframe`: it is a random access
    /// point (ignored audio-only, where every frame is one).
    pub fn place(&mut self, dts_us: i64, is_cut_track: bool, keyframe: bool) -> Placement {
        if !is_cut_track {
            return if self.open.is_some() {
                Placement::Continue
            } else {
                Placement::Drop
            };
        }
        let step = self.last_cut_dts.map(|last| dts_us.saturating_sub(last));
        self.last_cut_dts = Some(dts_us);
        let gap = step.is_some_and(|s| s.saturating_abs() > self.config.max_gap_us);
        let interval = self.last_interval_us;
        if let Some(s) = step.filter(|&s| s > 0 && !gap) {
            self.last_interval_us = s;
        }
        // Without an open segment the flag is already set (after a gap or
        // `finish`), or nothing came before (first segment).
        if gap && let Some(seg) = self.open.take() {
            self.ended_by_gap = Some(estimated_end(&seg, interval));
            self.discontinuity_pending = true;
        }
        let cut_point = keyframe || !self.has_video;
        let Some(seg) = self.open.as_mut() else {
            return if cut_point {
                self.start(dts_us, None)
            } else {
                Placement::Drop
            };
        };
        if !cut_point
            || !self.discontinuity_pending
                && dts_us.saturating_sub(seg.start_us) < self.config.target_us
        {
            seg.max_cut_dts = seg.max_cut_dts.max(dts_us);
            return Placement::Continue;
        }
        let ended = if self.discontinuity_pending {
            estimated_end(seg, interval)
        } else {
            seg.span(dts_us.saturating_sub(seg.start_us))
        };
        self.start(dts_us, Some(ended))
    }

    /// Start a segment at `dts_us`; `ended` is the one the cut closes (or
    /// the gap closed before).
    fn start(&mut self, dts_us: i64, ended: Option<SegmentSpan>) -> Placement {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let discontinuity = std::mem::take(&mut self.discontinuity_pending);
        self.open = Some(OpenSegment {
            seq,
            start_us: dts_us,
            discontinuity,
            max_cut_dts: dts_us,
        });
        Placement::Cut {
            ended: ended.or(self.ended_by_gap.take()),
            starts: seq,
            discontinuity,
        }
    }

    /// Mark that the next segment must start with a discontinuity (publisher
    /// reconnect, timestamp rebase, track configuration change). The next
    /// cut point (cut-track keyframe) cuts regardless of duration, and the
    /// segment it ends gets the estimated duration (largest cut-track dts +
    /// last frame interval − start). Before the first segment, it flags the
    /// first segment.
    pub fn force_discontinuity(&mut self) {
        self.discontinuity_pending = true;
    }

    /// The stream ended: close the current segment at `end_us` (the dts
    /// after the last frame) and return it, if one was open. A segment
    /// already ended by a gap and not yet reported is returned as it was
    /// ended. Frames placed after this start a new segment (at a keyframe,
    /// with video) with `discontinuity` set.
    pub fn finish(&mut self, end_us: i64) -> Option<SegmentSpan> {
        let span = match self.open.take() {
            Some(seg) => Some(seg.span(end_us.saturating_sub(seg.start_us))),
            None => self.ended_by_gap.take(),
        };
        if span.is_some() {
            self.discontinuity_pending = true;
        }
        span
    }

    /// Sequence number the next segment started will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether a segment is open (frames placed now would join it).
    pub fn in_segment(&self) -> bool {
        self.open.is_some()
    }

    /// The open segment's sequence number and start, if one is open.
    pub fn current(&self) -> Option<(u64, i64)> {
        self.open.map(|s| (s.seq, s.start_us))
    }

    /// The configuration.
    pub fn config(&self) -> SegmenterConfig {
        self.config
    }
}

/// The span of a segment that ends at a discontinuity: its largest
/// cut-track dts plus the last frame interval seen before.
fn estimated_end(seg: &OpenSegment, interval_us: i64) -> SegmentSpan {
    let end = seg.max_cut_dts.saturating_add(interval_us);
    seg.span(end.saturating_sub(seg.start_us))
}
