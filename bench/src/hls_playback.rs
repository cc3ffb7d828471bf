//! The HLS bench's playback-deadline model, one per viewer, on a µs clock
//! handed in (no clock read here, so it is tested with plain numbers).
//!
//! The playhead starts when the viewer's first segment has fully arrived
//! and then advances in real time. Segment *k* (counting the segments this
//! viewer played, in order) starts at media time `sum(EXTINF of segments
//! 0..k)`, so its deadline is `start + that sum`. A segment whose last byte
//! arrives after its deadline is a **stall**; like a real player, the
//! playhead then waits (rebuffers) until the segment is there, so the
//! stall's length shifts every later deadline and one late segment is one
//! stall, not a cascade. Segments the viewer never got (404, or dropped
//! from the playlist before it fetched them) are skipped: they add no media
//! time (they are counted as errors elsewhere).

/// One viewer's playhead.
#[derive(Debug, Clone, Default)]
pub struct Playback {
    /// When the playhead was at media time 0 (moved forward by rebuffers);
    /// `None` until the first segment arrived.
    origin_us: Option<u64>,
    /// Media received so far (the sum of the played segments' durations).
    media_us: u64,
    /// Stalls so far and their summed length.
    pub stalls: u64,
    /// Summed rebuffering time, µs.
    pub stalled_us: u64,
}

impl Playback {
    /// A viewer that has played nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the playhead has started.
    pub fn started(&self) -> bool {
        self.origin_us.is_some()
    }

    /// The segment of `duration_us` finished arriving at `arrived_us`.
    /// Returns the stall (µs the playhead waited for it), if any.
    pub fn on_segment(&mut self, arrived_us: u64, duration_us: u64) -> Option<u64> {
        let Some(origin) = self.origin_us else {
            self.origin_us = Some(arrived_us);
            self.media_us = duration_us;
            return None;
        };
        let deadline = origin + self.media_us;
        self.media_us += duration_us;
        if arrived_us > deadline {
            let late = arrived_us - deadline;
            self.origin_us = Some(origin + late);
            self.stalls += 1;
            self.stalled_us += late;
            Some(late)
        } else {
            None
        }
    }

    /// Media buffered ahead of the playhead at `now_us` (negative: the
    /// playhead ran out that long ago and is waiting). `None` before start.
    pub fn buffered_us(&self, now_us: u64) -> Option<i64> {
        let origin = self.origin_us?;
        Some((origin + self.media_us) as i64 - now_us as i64)
    }

    /// The playhead has run out of media at `now_us` (a stall in progress).
    pub fn starved(&self, now_us: u64) -> bool {
        self.buffered_us(now_us).is_some_and(|b| b < 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn on_time_segments_never_stall() {
        let mut p = Playback::new();
        assert!(!p.started());
        assert_eq!(p.buffered_us(0), None);
        // Joined 3 segments back: three arrive at once, then one per 2 s.
        assert_eq!(p.on_segment(10 * S, 2 * S), None);
        assert!(p.started());
        assert_eq!(p.on_segment(10 * S + 50_000, 2 * S), None);
        assert_eq!(p.on_segment(10 * S + 90_000, 2 * S), None);
        assert_eq!(p.buffered_us(10 * S + 90_000), Some(6 * S as i64 - 90_000));
        for k in 0..10 {
            // Segment 3 + k is due at 10 s + (6 + 2k) s; it comes 1.9 s early.
            assert_eq!(
                p.on_segment(10 * S + (4 + 2 * k) * S + 100_000, 2 * S),
                None
            );
        }
        assert_eq!(p.stalls, 0);
        assert!(!p.starved(20 * S));
    }

    #[test]
    fn exactly_at_the_deadline_is_not_late() {
        let mut p = Playback::new();
        p.on_segment(0, 2 * S);
        assert_eq!(p.on_segment(2 * S, 2 * S), None);
        assert_eq!(p.on_segment(4 * S + 1, 2 * S), Some(1));
    }

    #[test]
    fn a_late_segment_is_one_stall_and_shifts_later_deadlines() {
        let mut p = Playback::new();
        p.on_segment(0, 2 * S); // playhead 0 at t=0
        // Segment 1 due at 2 s, arrives at 3.5 s: a 1.5 s rebuffer.
        assert_eq!(p.on_segment(3_500_000, 2 * S), Some(1_500_000));
        // Segment 2 was due at 4 s; after the rebuffer it is due at 5.5 s.
        assert_eq!(p.on_segment(5_000_000, 2 * S), None);
        assert_eq!(p.on_segment(7_500_000, 2 * S), None);
        assert_eq!(p.on_segment(9_600_000, 2 * S), Some(100_000));
        assert_eq!((p.stalls, p.stalled_us), (2, 1_600_000));
    }

    #[test]
    fn starvation_shows_before_the_segment_arrives() {
        let mut p = Playback::new();
        p.on_segment(S, 2 * S);
        p.on_segment(S, 2 * S); // 4 s of media from t=1 s: runs out at 5 s
        assert!(!p.starved(5 * S));
        assert!(p.starved(5 * S + 1));
        assert_eq!(p.buffered_us(6 * S), Some(-(S as i64)));
        // Uneven durations add up.
        assert_eq!(p.on_segment(5 * S, 1_500_000), None);
        assert!(p.starved(6_500_001));
    }
}
