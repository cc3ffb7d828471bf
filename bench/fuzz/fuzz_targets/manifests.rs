//! What a load-tested server answers for a playlist or manifest, into
//! spate-bench's HLS playlist reader and DASH MPD reader: arbitrary bytes
//! (usually not UTF-8, not XML) must give a value or an error, never a
//! panic or a hang.
//!
//! Input layout: `[c][body...]`. `c` picks the wall clock the MPD is read
//! against (0..=255 × 7 s after the Unix epoch plus 2026-01-01, so number-only
//! templates land before, at and long after `availabilityStartTime`).
//! Checks: a media playlist's start index is inside it; its resolved
//! segment URIs are absolute paths or URLs; a DASH read has a non-zero
//! timescale and only ranges with first ≤ last (segments and init).
#![no_main]
#![allow(dead_code)]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/dash_mpd.rs"]
mod dash_mpd;
#[path = "../../src/hls_playlist.rs"]
mod hls_playlist;

use hls_playlist::Playlist;

fuzz_target!(|data: &[u8]| {
    let Some((&c, body)) = data.split_first() else {
        return;
    };
    let now_ms = 1_767_225_600_000 + i64::from(c) * 7_000;
    match hls_playlist::parse(body) {
        Ok(Playlist::Media(p)) => {
            for edge in [0.0, 3.0, 1e9] {
                if let Some(i) = hls_playlist::start_index(&p, edge) {
                    assert!(i < p.segments.len(), "start {i} of {}", p.segments.len());
                }
            }
            for s in &p.segments {
                if let Some(u) = hls_playlist::resolve("/hls/x/", &s.uri) {
                    assert!(u.starts_with('/') || u.contains("://"), "{u:?}");
                }
            }
        }
        Ok(Playlist::Multivariant(v)) => {
            if let Some(first) = v.first() {
                let _ = hls_playlist::audio_rendition(body, first);
            }
        }
        Err(_) => {}
    }
    if let Ok(r) = dash_mpd::parse_video_at(body, now_ms) {
        assert!(r.timescale > 0, "timescale 0 accepted");
        let ranges = r.playlist.segments.iter().filter_map(|s| s.range);
        for (a, b) in ranges.chain(r.playlist.map_range) {
            assert!(a <= b, "range {a}-{b}");
        }
    }
    let _ = dash_mpd::parse_audio_at(body, now_ms);
});
