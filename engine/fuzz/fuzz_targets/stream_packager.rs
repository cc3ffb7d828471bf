//! A publisher's FLV tags — arbitrary bytes — through the whole segmented
//! packaging of a live stream (`spate_engine::live::StreamPackager`): the
//! segmenter, the MPEG-TS muxer, CMAF fragments, the segment store (memfd
//! arenas), HLS playlists and the DASH MPD. This is exactly what an RTMP
//! publisher's media reaches on the publishing core.
//!
//! Input layout: `[flags][stream...]`. flags bit 0: prepend a valid FLV file
//! header; bits 1-3: target segment duration 1..=8 s; bits 4-7: how far the
//! wall clock runs ahead per tag (ms). Tags go through `FlvDemuxer` and
//! `FlvStream` as the engine's RTMP path does; every tenth tag forces a
//! discontinuity (a publisher reconnect).
//!
//! Checks: nothing panics; every TS range handed out is whole 188-byte
//! packets starting with 0x47; every published view is consistent: the
//! media playlists list only segments the view can serve, EXTINF count
//! equals the URIs, TARGETDURATION >= every rounded EXTINF, and the MPD has
//! one SegmentTemplate per CMAF track.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate_engine::live::{SegmentedSettings, SegmentedView, StreamPackager};
use spate_packager::flv::{FlvDemuxer, FlvEvent, FlvStream};

fn check_media_playlist(text: &str, has: impl Fn(u64) -> bool, ext: &str) {
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    let mut target = None;
    let mut extinf = 0;
    let mut uris = 0;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = Some(t.parse::<u64>().expect("integer TARGETDURATION"));
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            let secs: f64 = d.trim_end_matches(',').parse().expect("EXTINF seconds");
            assert!(secs >= 0.0, "{text}");
            let t = target.expect("TARGETDURATION before the first EXTINF");
            assert!(secs.round() as u64 <= t, "EXTINF {secs} > target {t}\n{text}");
            extinf += 1;
        } else if !line.starts_with('#') && !line.is_empty() {
            uris += 1;
            let n: u64 = line
                .strip_suffix(ext)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("segment URI {line:?}"));
            assert!(has(n), "playlist lists {line} which the view cannot serve");
        }
    }
    assert_eq!(extinf, uris, "{text}");
}

fn check_view(v: &SegmentedView) {
    if let Some(m) = &v.hls_media {
        check_media_playlist(
            std::str::from_utf8(m).expect("UTF-8"),
            |n| v.ts_segment(n).is_some(),
            ".ts",
        );
    }
    for t in &v.cmaf_tracks {
        check_media_playlist(
            std::str::from_utf8(&t.playlist).expect("UTF-8"),
            |n| t.segment(n).is_some(),
            ".m4s",
        );
    }
    if let Some(mpd) = &v.mpd {
        let mpd = std::str::from_utf8(mpd).expect("UTF-8");
        assert_eq!(
            mpd.matches("<SegmentTemplate").count(),
            v.cmaf_tracks.len(),
            "{mpd}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(stream.len() + 13);
    if flags & 1 == 1 || !stream.starts_with(b"FLV") {
        input.extend_from_slice(b"FLV\x01\x05\0\0\0\x09\0\0\0\0");
    }
    input.extend_from_slice(stream);
    let settings = SegmentedSettings {
        target_us: i64::from((flags >> 1) & 7) * 1_000_000 + 1_000_000,
        window: 3,
        grace_ms: 4_000,
        arena_bytes: 1 << 20,
        max_arenas: 4,
    };
    let wall_step = i64::from(flags >> 4) * 10;
    let mut packager = StreamPackager::new(Arc::from("fuzz"), settings, 1_000);
    let mut demuxer = FlvDemuxer::new();
    demuxer.push_bytes(Bytes::from(input));
    let mut flv = FlvStream::new();
    let mut wall_ms: i64 = 1_796_000_000_000;
    let mut tags = 0u32;
    while let Ok(Some(tag)) = demuxer.next_tag() {
        tags += 1;
        if tags % 10 == 0 {
            packager.discontinuity();
        }
        wall_ms += wall_step;
        let _ = flv.handle_tag(tag.tag_type, tag.timestamp, tag.body);
        while let Some(ev) = flv.poll_event() {
            match ev {
                FlvEvent::Track { track, .. } => packager.on_track(track),
                FlvEvent::Frame(f) => {
                    let out = packager.on_frame(&f, wall_ms);
                    if let Some(ts) = &out.ts {
                        assert_eq!(ts.len() % 188, 0);
                        assert!(ts.chunks(188).all(|p| p[0] == 0x47));
                    }
                    if let Some(v) = &out.view {
                        check_view(v);
                    }
                }
                _ => {}
            }
        }
    }
});
