//! Pre-packaged HLS and DASH served as static files (an edge node in front
//! of a packager): ffmpeg packages a 10 s H.264 + AAC clip into the
//! server's root as HLS with TS segments, HLS with fMP4 segments (separate
//! audio rendition), and DASH (SegmentTemplate + SegmentTimeline); then
//! independent parsers (PyPI m3u8, mpegdash), curl, ffprobe/ffmpeg, and
//! hls.js / dash.js / mpegts.js in headless Chromium read them from the real
//! `spate` binary.
//!
//! These also prove the harness the live segmented tests
//! (`live_segmented.rs`) use: playlist parsing, URI resolution, segment
//! fetching, decode and TS continuity checks, and the browser runner. The
//! last test checks that each of those checks can fail.
//!
//! The packages live under `/vod/…`, not `/hls/` or `/cmaf/`, which are the
//! live stream routes.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use spate_tests::{
    DashMpd, HlsPlaylist, Player, Spate, assert_probe, decode_for, fetch_dash, fetch_hls,
    ffmpeg_bin, play_in_chromium, resolve_url, run_with_timeout, ts_continuity,
};

const W: u32 = 640;
const H: u32 = 360;

/// Run ffmpeg with `args` (cwd `dir`), panicking with its stderr unless it
/// succeeds within 60 s.
fn ffmpeg(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new(ffmpeg_bin());
    cmd.args(["-nostdin", "-hide_banner", "-v", "error", "-y"])
        .args(args)
        .current_dir(dir);
    let out = run_with_timeout(cmd, dir, "package", Duration::from_secs(60));
    assert!(
        out.success(),
        "`{}` failed ({:?}):\n{}",
        out.command,
        out.status,
        out.stderr
    );
}

/// Package the 10 s clip into `<root>/vod/`:
/// - `t10.mp4` (the source: libx264 640x360 30 fps, 2 s GOP; AAC 48 kHz
///   stereo) and `t10.ts` (the same, remuxed to MPEG-TS);
/// - `hls-ts/index.m3u8` + `seg%d.ts` (`-hls_time 2 -hls_playlist_type
///   vod`), and `hls-ts/master.m3u8`, a multivariant playlist naming it;
/// - `hls-fmp4/{video,audio}/index.m3u8` + `init_N.mp4` + `seg%d.m4s`
///   (`-hls_segment_type fmp4`, one playlist per track), and
///   `hls-fmp4/master.m3u8` with an EXT-X-MEDIA audio rendition;
/// - `dash/index.mpd` (`-seg_duration 2 -use_timeline 1 -use_template 1`).
///
/// The masters are written here (ffmpeg 5.1 leaves CODECS out of its own);
/// their CODECS video entry is the one ffmpeg's MPD names.
fn package_vod(root: &Path) {
    let vod = root.join("vod");
    for d in ["hls-ts", "hls-fmp4", "dash"] {
        std::fs::create_dir_all(vod.join(d)).expect("create vod dirs");
    }
    ffmpeg(
        &vod,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30:duration=10",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000:duration=10",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-shortest",
            "t10.mp4",
        ],
    );
    ffmpeg(
        &vod,
        &["-i", "t10.mp4", "-c", "copy", "-f", "mpegts", "t10.ts"],
    );
    ffmpeg(
        &vod,
        &[
            "-i",
            "t10.mp4",
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_filename",
            "hls-ts/seg%d.ts",
            "hls-ts/index.m3u8",
        ],
    );
    ffmpeg(
        &vod,
        &[
            "-i",
            "t10.mp4",
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_type",
            "fmp4",
            "-hls_fmp4_init_filename",
            "init.mp4",
            "-var_stream_map",
            "v:0,name:video a:0,name:audio",
            "-hls_segment_filename",
            "hls-fmp4/%v/seg%d.m4s",
            "hls-fmp4/%v/index.m3u8",
        ],
    );
    ffmpeg(
        &vod,
        &[
            "-i",
            "t10.mp4",
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-c",
            "copy",
            "-f",
            "dash",
            "-seg_duration",
            "2",
            "-use_timeline",
            "1",
            "-use_template",
            "1",
            "-adaptation_sets",
            "id=0,streams=v id=1,streams=a",
            "dash/index.mpd",
        ],
    );
    let mpd = DashMpd::parse(&std::fs::read_to_string(vod.join("dash/index.mpd")).unwrap())
        .unwrap_or_else(|e| panic!("ffmpeg's own MPD: {e}"));
    let avc = mpd
        .adaptation_sets()
        .filter_map(|(_, a)| a.codecs())
        .find(|c| c.starts_with("avc1."))
        .expect("ffmpeg's MPD names an avc1 codec")
        .to_string();
    std::fs::write(
        vod.join("hls-ts/master.m3u8"),
        format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1200000,CODECS=\"{avc},mp4a.40.2\",RESOLUTION=640x360\n\
             index.m3u8\n"
        ),
    )
    .unwrap();
    std::fs::write(
        vod.join("hls-fmp4/master.m3u8"),
        format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1200000,CODECS=\"{avc},mp4a.40.2\",RESOLUTION=640x360,AUDIO=\"aud\"\n\
             video/index.m3u8\n"
        ),
    )
    .unwrap();
}

/// A server whose root holds the packages of [`package_vod`].
fn vod_server(label: &str) -> Spate {
    let s = Spate::builder().label(label).start();
    package_vod(s.root());
    s
}

/// Fetch every segment of media playlist `pl` (at `url`) and its EXT-X-MAP
/// with curl: 200 and a Content-Type from `segment_types` / `init_types`.
/// Returns the segment bodies.
fn fetch_segments(
    s: &Spate,
    url: &str,
    pl: &HlsPlaylist,
    segment_types: &[&str],
    init_types: &[&str],
) -> Vec<Vec<u8>> {
    for map in &pl.segment_maps {
        let u = resolve_url(url, map);
        let r = spate_tests::curl(s.dir(), &["--max-time", "10"], &u);
        r.assert_media_type(init_types);
        assert!(
            r.body.len() > 8 && &r.body[4..8] == b"ftyp",
            "init segment {u} does not start with an ftyp box"
        );
    }
    pl.segments
        .iter()
        .map(|seg| {
            let u = resolve_url(url, &seg.uri);
            let r = spate_tests::curl(s.dir(), &["--max-time", "10"], &u);
            r.assert_media_type(segment_types);
            assert!(!r.body.is_empty(), "segment {u} is empty");
            r.body
        })
        .collect()
}

#[test]
fn static_hls_with_ts_segments_parses_probes_and_decodes() {
    let s = vod_server("static_hls_ts");
    let master_url = s.url("/vod/hls-ts/master.m3u8");
    let (r, master) = fetch_hls(s.dir(), &master_url);
    r.assert_media_type(&["application/vnd.apple.mpegurl"]);
    assert!(master.is_variant, "{}", master.text);
    assert_eq!(master.variants.len(), 1, "{}", master.text);
    let v = &master.variants[0];
    let codecs = v.codecs.as_deref().unwrap_or_default();
    assert!(
        codecs.contains("avc1.") && codecs.contains("mp4a.40.2"),
        "CODECS {codecs:?}"
    );
    assert_eq!(v.resolution.as_deref(), Some("640x360"));

    let media_url = resolve_url(&master_url, &v.uri);
    let (r, pl) = fetch_hls(s.dir(), &media_url);
    r.assert_media_type(&["application/vnd.apple.mpegurl"]);
    assert!(!pl.is_variant);
    assert_eq!(pl.target_duration, Some(2.0), "{}", pl.text);
    assert_eq!(pl.media_sequence, Some(0));
    assert!(pl.is_endlist);
    assert_eq!(pl.playlist_type.as_deref(), Some("vod"));
    assert_eq!(pl.segments.len(), 5, "{}", pl.text);
    assert_eq!(pl.discontinuities, 0);
    assert!((pl.duration() - 10.0).abs() < 0.2, "{}", pl.text);
    for body in fetch_segments(&s, &media_url, &pl, &["video/mp2t"], &[]) {
        assert!(
            body.len().is_multiple_of(188) && body.iter().step_by(188).all(|&b| b == 0x47),
            "a segment is not whole 188-byte TS packets"
        );
    }

    assert_probe(s.dir(), &master_url, Some((W, H)), true);
    decode_for(s.dir(), &master_url, 10, Duration::from_secs(60)).assert_clean(9.0);
    ts_continuity(s.dir(), &media_url, 6, Duration::from_secs(60)).assert_clean(5.0);
}

#[test]
fn static_hls_with_fmp4_segments_and_an_audio_rendition_parses_probes_and_decodes() {
    let s = vod_server("static_hls_fmp4");
    let master_url = s.url("/vod/hls-fmp4/master.m3u8");
    let (_, master) = fetch_hls(s.dir(), &master_url);
    assert!(master.is_variant);
    let audio: Vec<_> = master
        .media
        .iter()
        .filter(|m| m.media_type == "AUDIO")
        .collect();
    assert_eq!(audio.len(), 1, "{}", master.text);
    assert_eq!(master.variants.len(), 1, "{}", master.text);
    let v = &master.variants[0];
    assert_eq!(v.audio, audio[0].group_id, "{}", master.text);
    assert_eq!(v.resolution.as_deref(), Some("640x360"));

    let playlists = [
        resolve_url(&master_url, &v.uri),
        resolve_url(&master_url, audio[0].uri.as_deref().expect("audio URI")),
    ];
    for url in &playlists {
        let (_, pl) = fetch_hls(s.dir(), url);
        assert_eq!(pl.segment_maps.len(), 1, "{url}: EXT-X-MAP\n{}", pl.text);
        assert!(pl.segments.len() >= 5, "{url}\n{}", pl.text);
        assert!(pl.segments.iter().all(|g| g.init_uri.is_some()));
        assert!((pl.duration() - 10.0).abs() < 0.2, "{}", pl.text);
        let bodies = fetch_segments(
            &s,
            url,
            &pl,
            &["video/iso.segment", "video/mp4"],
            &["video/mp4"],
        );
        for b in bodies {
            assert!(
                b.windows(4).any(|w| w == b"moof"),
                "{url}: a segment has no moof"
            );
        }
    }
    assert_probe(s.dir(), &master_url, Some((W, H)), true);
    decode_for(s.dir(), &master_url, 10, Duration::from_secs(60)).assert_clean(9.0);
}

#[test]
fn static_dash_with_segment_timeline_parses_probes_and_decodes() {
    let s = vod_server("static_dash");
    let mpd_url = s.url("/vod/dash/index.mpd");
    let (r, mpd) = fetch_dash(s.dir(), &mpd_url);
    r.assert_media_type(&["application/dash+xml"]);
    assert_eq!(mpd.mpd_type.as_deref(), Some("static"));
    assert_eq!(mpd.periods.len(), 1);
    let sets: Vec<_> = mpd.adaptation_sets().collect();
    assert_eq!(sets.len(), 2, "{}", mpd.text);
    let video = sets
        .iter()
        .find(|(_, a)| a.mime() == Some("video/mp4"))
        .expect("a video/mp4 adaptation set");
    let audio = sets
        .iter()
        .find(|(_, a)| a.mime() == Some("audio/mp4"))
        .expect("an audio/mp4 adaptation set");
    assert!(video.1.codecs().unwrap_or_default().starts_with("avc1."));
    assert_eq!(audio.1.codecs(), Some("mp4a.40.2"));
    let vrep = &video.1.representations[0];
    assert_eq!((vrep.width, vrep.height), (Some(W), Some(H)));

    for (period, set) in &sets {
        for rep in &set.representations {
            let t = rep.template.as_ref().expect("a SegmentTemplate");
            assert!(t.timeline.is_some(), "no SegmentTimeline: {}", mpd.text);
            let segs = t.timeline_segments();
            let total: u64 = segs.iter().map(|g| g.duration).sum();
            let seconds = total as f64 / t.timescale as f64;
            assert!((seconds - 10.0).abs() < 0.2, "timeline totals {seconds} s");
            let base = rep.base_url(&mpd, period, set, &mpd_url);
            let init = rep.init_url(&base).expect("an initialization URL");
            let r = spate_tests::curl(s.dir(), &["--max-time", "10"], &init);
            r.assert_status(200);
            assert_eq!(&r.body[4..8], b"ftyp", "{init}");
            let urls = rep.segment_urls(&base);
            assert_eq!(urls.len(), segs.len());
            for u in urls {
                let r = spate_tests::curl(s.dir(), &["--max-time", "10"], &u);
                r.assert_media_type(&["video/iso.segment", "video/mp4"]);
                assert!(r.body.windows(4).any(|w| w == b"moof"), "{u}");
            }
        }
    }
    assert_probe(s.dir(), &mpd_url, Some((W, H)), true);
    decode_for(s.dir(), &mpd_url, 10, Duration::from_secs(60)).assert_clean(9.0);
}

#[test]
fn static_progressive_ts_probes_and_has_no_continuity_errors() {
    let s = vod_server("static_ts");
    let url = s.url("/vod/t10.ts");
    assert_probe(s.dir(), &url, Some((W, H)), true);
    decode_for(s.dir(), &url, 10, Duration::from_secs(60)).assert_clean(9.0);
    let c = ts_continuity(s.dir(), &url, 10, Duration::from_secs(60));
    c.assert_clean(9.0);
    assert!(c.ts_demuxer_lines > 0, "ffmpeg's TS demuxer logged nothing");
}

#[test]
fn hls_js_plays_static_hls_with_ts_segments() {
    let s = vod_server("static_hlsjs_ts");
    let p = play_in_chromium(
        s.dir(),
        &s.url(""),
        Player::HlsJs,
        "/vod/hls-ts/master.m3u8",
        6.0,
        Duration::from_secs(45),
    );
    p.assert_played(6.0);
    assert_eq!((p.video_width, p.video_height), (W, H), "{}", p.line);
}

#[test]
fn hls_js_plays_static_hls_with_fmp4_segments_and_an_audio_rendition() {
    let s = vod_server("static_hlsjs_fmp4");
    let p = play_in_chromium(
        s.dir(),
        &s.url(""),
        Player::HlsJs,
        "/vod/hls-fmp4/master.m3u8",
        6.0,
        Duration::from_secs(45),
    );
    p.assert_played(6.0);
    assert_eq!((p.video_width, p.video_height), (W, H), "{}", p.line);
    assert!(
        p.requests.iter().any(|r| r.contains("/audio/")),
        "hls.js never fetched the audio rendition: {:#?}",
        p.requests
    );
}

#[test]
fn dash_js_plays_static_dash() {
    let s = vod_server("static_dashjs");
    let p = play_in_chromium(
        s.dir(),
        &s.url(""),
        Player::DashJs,
        "/vod/dash/index.mpd",
        6.0,
        Duration::from_secs(45),
    );
    p.assert_played(6.0);
    assert_eq!((p.video_width, p.video_height), (W, H), "{}", p.line);
}

#[test]
fn mpegts_js_plays_a_static_ts_file() {
    let s = vod_server("static_mpegtsjs");
    let p = play_in_chromium(
        s.dir(),
        &s.url(""),
        Player::MpegtsJs {
            flv: false,
            live: false,
        },
        "/vod/t10.ts",
        6.0,
        Duration::from_secs(45),
    );
    p.assert_played(6.0);
    assert_eq!((p.video_width, p.video_height), (W, H), "{}", p.line);
}

/// Each check used above can fail: broken documents do not parse, a TS with
/// lost packets has continuity errors and decode errors, and a player fed a
/// playlist of non-media segments reports an error instead of passing.
#[test]
fn the_checks_fail_on_broken_media() {
    let s = vod_server("static_broken");
    let vod = s.root().join("vod");

    // Parsers: their own error text comes back.
    let e = HlsPlaylist::parse("garbage\n").unwrap_err();
    assert!(e.contains("#EXTM3U"), "{e}");
    let e = HlsPlaylist::parse("#EXTM3U\n#EXTINF:abc,\nx.ts\n").unwrap_err();
    assert!(e.contains("abc"), "{e}");
    let e = DashMpd::parse("<MPD><Period><AdaptationSet id=\"x\"/></Period></MPD>").unwrap_err();
    assert!(e.contains("invalid literal"), "{e}");
    let e = DashMpd::parse("not xml at all").unwrap_err();
    assert!(e.contains("no <MPD"), "{e}");

    // Every 97th packet after the first 50 lost.
    let ts = std::fs::read(vod.join("t10.ts")).unwrap();
    let broken: Vec<u8> = ts
        .chunks(188)
        .enumerate()
        .filter(|(i, _)| *i <= 50 || i % 97 != 0)
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    std::fs::write(vod.join("broken.ts"), broken).unwrap();
    let url = s.url("/vod/broken.ts");
    let c = ts_continuity(s.dir(), &url, 10, Duration::from_secs(60));
    assert!(
        c.failures.len() > 10,
        "lost packets gave {} continuity failures",
        c.failures.len()
    );
    let d = decode_for(s.dir(), &url, 10, Duration::from_secs(60));
    assert!(
        !d.error_lines.is_empty(),
        "lost packets decoded without errors"
    );

    // A playlist whose segments are not media: hls.js reports an error.
    let dir = vod.join("junk");
    std::fs::create_dir_all(&dir).unwrap();
    let mut pl = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n",
    );
    for i in 0..5 {
        std::fs::write(
            dir.join(format!("s{i}.ts")),
            spate_tests::pseudo_random_bytes(188 * 200, i),
        )
        .unwrap();
        pl.push_str(&format!("#EXTINF:2.0,\ns{i}.ts\n"));
    }
    pl.push_str("#EXT-X-ENDLIST\n");
    std::fs::write(dir.join("index.m3u8"), pl).unwrap();
    let started = Instant::now();
    let p = play_in_chromium(
        s.dir(),
        &s.url(""),
        Player::HlsJs,
        "/vod/junk/index.m3u8",
        3.0,
        Duration::from_secs(30),
    );
    assert!(
        !p.ok && !p.errors.is_empty(),
        "hls.js on random-byte segments: ok={} errors={:?} why={} after {:?}\n{}",
        p.ok,
        p.errors,
        p.why,
        started.elapsed(),
        p.line
    );
}
