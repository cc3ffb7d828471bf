//! A stream's live window on one core: the packaged items of the last few
//! seconds, indexed by sequence number and keyframe, and the cursors viewers
//! read it with.
//!
//! The publisher's core pushes each packaged item (an immutable, shared
//! value: `Arc`/`Bytes` inside `T`) into its own replica and sends the same
//! value to every other core, which pushes it into theirs. Viewers never own
//! media: a [`ViewerCursor`] is a sequence number. A viewer that falls too
//! far behind skips to a later keyframe; one that falls out of the window is
//! dropped. Nothing here grows with the number of viewers.
use std::collections::VecDeque;

/// One item of a live window.
#[derive(Debug, Clone)]
pub struct LiveItem<T> {
    /// Sequence number, consecutive per stream.
    pub seq: u64,
    /// Decode timestamp, milliseconds on the stream's (rebased) timeline.
    pub dts_ms: i64,
    /// A video keyframe (or, for audio-only streams, every item): a viewer
    /// may start here.
    pub keyframe: bool,
    /// The packaged value.
    pub value: T,
}

/// Window limits for one stream.
#[derive(Debug, Clone, Copy)]
pub struct WindowLimits {
    /// Media kept behind the newest item, in milliseconds (at least the
    /// newest complete GOP is always kept).
    pub window_ms: i64,
    /// Hard cap on items kept, whatever the timestamps say (a publisher
    /// lying about timestamps cannot grow memory).
    pub max_items: usize,
}

/// The live window of one stream on one core.
#[derive(Debug)]
pub struct LiveWindow<T> {
    items: VecDeque<LiveItem<T>>,
    keyframes: VecDeque<u64>,
    limits: WindowLimits,
}

/// What a viewer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send the item with this sequence number.
    Send(u64),
    /// Nothing new yet.
    Wait,
    /// The viewer lagged past the skip limit: it was moved to this keyframe.
    Skipped(u64),
    /// The viewer's position has left the window: drop it.
    Lost,
}

impl<T> LiveWindow<T> {
    /// An empty window.
    pub fn new(limits: WindowLimits) -> Self {
        Self {
            items: VecDeque::new(),
            keyframes: VecDeque::new(),
            limits,
        }
    }

    /// Add the newest item (sequence numbers must be consecutive; a gap —
    /// items the mesh could not deliver — clears the window so no viewer
    /// reads across it).
    pub fn push(&mut self, item: LiveItem<T>) {
        if let Some(last) = self.items.back()
            && item.seq != last.seq + 1
        {
            self.items.clear();
            self.keyframes.clear();
        }
        if item.keyframe {
            self.keyframes.push_back(item.seq);
        }
        let newest_dts = item.dts_ms;
        self.items.push_back(item);
        // Evict from the front while the second-oldest keyframe is still
        // older than the window, so the window always starts at a keyframe
        // and always holds the newest GOP.
        while self.keyframes.len() >= 2 {
            let second = self.keyframes[1];
            let Some(dts) = self.get(second).map(|i| i.dts_ms) else {
                break;
            };
            if newest_dts - dts >= self.limits.window_ms || self.items.len() > self.limits.max_items
            {
                self.drop_before(second);
            } else {
                break;
            }
        }
        while self.items.len() > self.limits.max_items {
            // Hard cap even without keyframes (e.g. a GOP longer than the cap).
            let front = self.items.pop_front().expect("non-empty");
            if self.keyframes.front() == Some(&front.seq) {
                self.keyframes.pop_front();
            }
        }
    }

    fn drop_before(&mut self, seq: u64) {
        while self.items.front().is_some_and(|i| i.seq < seq) {
            self.items.pop_front();
        }
        while self.keyframes.front().is_some_and(|&k| k < seq) {
            self.keyframes.pop_front();
        }
    }

    /// The item with sequence number `seq`, if still in the window.
    pub fn get(&self, seq: u64) -> Option<&LiveItem<T>> {
        let first = self.items.front()?.seq;
        let idx = seq.checked_sub(first)?;
        self.items.get(idx as usize)
    }

    /// Newest item.
    pub fn newest(&self) -> Option<&LiveItem<T>> {
        self.items.back()
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the window holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Where a new viewer starts: the newest keyframe (the last GOP), if any.
    pub fn join_point(&self) -> Option<u64> {
        self.keyframes.back().copied()
    }

    /// The first keyframe after `seq`.
    pub fn keyframe_after(&self, seq: u64) -> Option<u64> {
        self.keyframes.iter().copied().find(|&k| k > seq)
    }

    /// Decide a viewer's next step: send the item at its cursor, wait, skip
    /// to a later keyframe when it lags more than `skip_lag_ms` behind the
    /// newest item, or report it lost when its position left the window.
    pub fn next_for(&self, cursor: &mut ViewerCursor, skip_lag_ms: i64) -> Next {
        let Some(newest) = self.items.back() else {
            return Next::Wait;
        };
        if cursor.next > newest.seq {
            return Next::Wait;
        }
        let Some(item) = self.get(cursor.next) else {
            return Next::Lost;
        };
        if newest.dts_ms - item.dts_ms > skip_lag_ms
            && let Some(k) = self.keyframe_after(cursor.next)
        {
            cursor.next = k;
            cursor.skips += 1;
            return Next::Skipped(k);
        }
        Next::Send(cursor.next)
    }
}

/// A viewer's position in a stream's window: the next item to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerCursor {
    /// Sequence number of the next item to send.
    pub next: u64,
    /// Times this viewer was moved forward to a keyframe.
    pub skips: u32,
}

impl ViewerCursor {
    /// A cursor at `seq`.
    pub fn at(seq: u64) -> Self {
        Self {
            next: seq,
            skips: 0,
        }
    }

    /// The item at the cursor was handed to the socket.
    pub fn advance(&mut self) {
        self.next += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win() -> LiveWindow<u64> {
        LiveWindow::new(WindowLimits {
            window_ms: 4000,
            max_items: 1000,
        })
    }

    /// 30 fps video with a keyframe every 60 frames (2 s GOP).
    fn feed(w: &mut LiveWindow<u64>, from: u64, to: u64) {
        for seq in from..to {
            w.push(LiveItem {
                seq,
                dts_ms: (seq as i64) * 1000 / 30,
                keyframe: seq % 60 == 0,
                value: seq,
            });
        }
    }

    #[test]
    fn window_starts_at_a_keyframe_and_keeps_about_window_ms() {
        let mut w = win();
        feed(&mut w, 0, 600);
        let first = w
            .get(w.newest().unwrap().seq - (w.len() as u64 - 1))
            .unwrap();
        assert!(first.keyframe);
        let span = w.newest().unwrap().dts_ms - first.dts_ms;
        assert!((4000..6000).contains(&span), "span {span}");
        assert_eq!(w.join_point(), Some(540));
    }

    #[test]
    fn late_joiner_starts_at_last_keyframe_and_reads_in_order() {
        let mut w = win();
        feed(&mut w, 0, 100);
        let mut c = ViewerCursor::at(w.join_point().unwrap());
        assert_eq!(c.next, 60);
        for expect in 60..100 {
            assert_eq!(w.next_for(&mut c, 10_000), Next::Send(expect));
            c.advance();
        }
        assert_eq!(w.next_for(&mut c, 10_000), Next::Wait);
        feed(&mut w, 100, 101);
        assert_eq!(w.next_for(&mut c, 10_000), Next::Send(100));
    }

    #[test]
    fn slow_viewer_skips_to_keyframe_then_is_lost_when_out_of_window() {
        let mut w = win();
        feed(&mut w, 0, 200);
        let mut c = ViewerCursor::at(120);
        // 80 frames (2.6 s) behind with a 1 s skip limit: skip to 180.
        assert_eq!(w.next_for(&mut c, 1000), Next::Skipped(180));
        assert_eq!(c.skips, 1);
        let mut gone = ViewerCursor::at(10);
        assert_eq!(w.next_for(&mut gone, 1000), Next::Lost);
    }

    #[test]
    fn hard_cap_bounds_memory_even_without_keyframes() {
        let mut w = LiveWindow::new(WindowLimits {
            window_ms: 1_000_000,
            max_items: 50,
        });
        for seq in 0..10_000u64 {
            w.push(LiveItem {
                seq,
                dts_ms: 0,
                keyframe: seq == 0,
                value: (),
            });
        }
        assert_eq!(w.len(), 50);
    }

    #[test]
    fn sequence_gap_clears_the_window() {
        let mut w = win();
        feed(&mut w, 0, 100);
        feed(&mut w, 105, 130);
        assert_eq!(w.get(99).map(|i| i.seq), None);
        assert_eq!(w.get(120).map(|i| i.seq), Some(120));
        assert_eq!(w.join_point(), Some(120));
    }
}
