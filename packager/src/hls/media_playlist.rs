//! The sliding-window live media playlist.
use std::collections::VecDeque;
use std::fmt::Write;

use super::{iso8601_utc_ms, quoted_string, uri_line};

/// One finished segment as the media playlist lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsSegment {
    /// Media sequence number; each pushed segment's is the previous one's
    /// + 1.
    pub seq: u64,
    /// Duration in microseconds (negative counts as 0).
    pub duration_us: i64,
    /// The segment's URI line, relative to the playlist (not empty, not
    /// starting with `#`).
    pub uri: String,
    /// An `EXT-X-DISCONTINUITY` comes before this segment.
    pub discontinuity: bool,
    /// `EXT-X-PROGRAM-DATE-TIME` of its first sample, unix epoch ms.
    pub program_date_time_ms: Option<i64>,
}

/// A listed segment and the `EXT-X-MAP` URI in force for it.
#[derive(Debug, Clone)]
struct Listed {
    segment: HlsSegment,
    map_uri: Option<String>,
}

/// A sliding-window live media playlist, updated one segment at a time and
/// rendered whole (see the [module docs](super) for the version and target
/// duration rules).
#[derive(Debug, Clone)]
pub struct LivePlaylist {
    window: usize,
    map_uri: Option<String>,
    listed: VecDeque<Listed>,
    discontinuity_sequence: u64,
    target_duration_s: u64,
}

impl LivePlaylist {
    /// An empty playlist listing the last `window` segments (at least 1).
    /// `map_uri`: the init segment for `EXT-X-MAP:URI=…` (fMP4), `None` for
    /// TS. `target_duration_hint_us`: the segmenter's target; the
    /// `EXT-X-TARGETDURATION` starts at it, rounded to the nearest second (at
    /// least 1).
    ///
    /// RFC 8216 6.2.2 asks a live playlist to stay at least three target
    /// durations long: choose `window` accordingly (6 segments of a 2 s
    /// target is common).
    pub fn new(window: usize, map_uri: Option<String>, target_duration_hint_us: i64) -> Self {
        LivePlaylist {
            window: window.max(1),
            map_uri,
            listed: VecDeque::new(),
            discontinuity_sequence: 0,
            target_duration_s: whole_seconds_nearest(target_duration_hint_us).max(1),
        }
    }

    /// Append a finished segment. When more than `window` are listed, the
    /// oldest leaves: `EXT-X-MEDIA-SEQUENCE` becomes the next one's `seq`,
    /// and `EXT-X-DISCONTINUITY-SEQUENCE` counts one more if the leaving
    /// segment carried `EXT-X-DISCONTINUITY` (RFC 8216 6.2.2: it counts the
    /// discontinuity tags that have left the playlist). A segment longer
    /// than the target duration raises it.
    pub fn push(&mut self, seg: HlsSegment) {
        self.target_duration_s = self
            .target_duration_s
            .max(whole_seconds_nearest(seg.duration_us));
        self.listed.push_back(Listed {
            segment: seg,
            map_uri: self.map_uri.clone(),
        });
        while self.listed.len() > self.window {
            if let Some(gone) = self.listed.pop_front()
                && gone.segment.discontinuity
            {
                self.discontinuity_sequence += 1;
            }
        }
    }

    /// Change the `EXT-X-MAP` for segments pushed from now on (the init
    /// segment changed). The playlist writes a new `EXT-X-MAP` before the
    /// first segment that uses it; the caller flags that segment
    /// `discontinuity` too. Going from `Some` back to `None` cannot be
    /// expressed in one playlist: such segments keep the earlier map.
    pub fn set_map(&mut self, uri: Option<String>) {
        self.map_uri = uri;
    }

    /// Render the whole playlist: `#EXTM3U`, `#EXT-X-VERSION`,
    /// `#EXT-X-TARGETDURATION`, `#EXT-X-MEDIA-SEQUENCE`,
    /// `#EXT-X-DISCONTINUITY-SEQUENCE` (when nonzero),
    /// `#EXT-X-INDEPENDENT-SEGMENTS`, then per segment `#EXT-X-DISCONTINUITY`
    /// (if flagged), `#EXT-X-MAP` (before the first segment and where the
    /// map changes), `#EXT-X-PROGRAM-DATE-TIME` (when given), `#EXTINF` with
    /// milliseconds, and the URI; `ended` adds `#EXT-X-ENDLIST`.
    pub fn render(&self, ended: bool) -> String {
        let mut out = String::with_capacity(200 + 100 * self.listed.len());
        // Writing to a String cannot fail.
        let _ = self.write(&mut out, ended);
        out
    }

    fn write(&self, out: &mut String, ended: bool) -> std::fmt::Result {
        out.push_str("#EXTM3U\n");
        writeln!(out, "#EXT-X-VERSION:{}", self.version())?;
        writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration_s)?;
        writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence())?;
        if self.discontinuity_sequence > 0 {
            writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            )?;
        }
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        let mut map_in_force: Option<&str> = None;
        for Listed { segment, map_uri } in &self.listed {
            if segment.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Some(map) = map_uri.as_deref()
                && map_in_force != Some(map)
            {
                writeln!(out, "#EXT-X-MAP:URI=\"{}\"", quoted_string(map))?;
                map_in_force = Some(map);
            }
            if let Some(ms) = segment.program_date_time_ms {
                writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601_utc_ms(ms))?;
            }
            let ms = milliseconds(segment.duration_us);
            writeln!(out, "#EXTINF:{}.{:03},", ms / 1000, ms % 1000)?;
            writeln!(out, "{}", uri_line(&segment.uri))?;
        }
        if ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        Ok(())
    }

    /// The listed segments, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &HlsSegment> {
        self.listed.iter().map(|l| &l.segment)
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the first listed segment's `seq` (0 while
    /// empty).
    pub fn media_sequence(&self) -> u64 {
        self.listed.front().map_or(0, |l| l.segment.seq)
    }

    /// No segment listed yet.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuity tags that have left.
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// `EXT-X-TARGETDURATION` in seconds.
    pub fn target_duration_s(&self) -> u64 {
        self.target_duration_s
    }

    /// `EXT-X-VERSION`: 6 with `EXT-X-MAP`, else 3.
    pub fn version(&self) -> u32 {
        if self.map_uri.is_some() || self.listed.iter().any(|l| l.map_uri.is_some()) {
            6
        } else {
            3
        }
    }
}

/// A duration in microseconds as the whole milliseconds `EXTINF` prints
/// (rounded to nearest; negative as 0).
fn milliseconds(us: i64) -> u64 {
    (us.max(0) as u64).saturating_add(500) / 1000
}

/// The printed duration rounded to the nearest whole second (RFC 8216
/// 4.3.3.1: each EXTINF, rounded to the nearest integer, must not exceed
/// the target duration). Rounding up instead would turn one 2.049 s segment
/// into a target of 3 s for the rest of the stream, and players poll and
/// join by the target duration.
fn whole_seconds_nearest(us: i64) -> u64 {
    (milliseconds(us) + 500) / 1000
}
