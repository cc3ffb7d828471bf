//! A multi-bitrate MPEG-TS source: one ffmpeg sends two H.264 renditions
//! (640x360 and 320x180, aligned GOPs) + AAC + MP3 as TS over UDP to a
//! `[[stream]] source = "tsudp://..."`, and every track reaches the outputs:
//! the HLS (TS) master lists both renditions (each media playlist decodes in
//! ffprobe at its resolution), the CMAF master lists both video variants and
//! both audio renditions, the MPD has both video representations in one
//! AdaptationSet, and `/<stream>.ts?video=…` returns the chosen rendition.
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use spate_tests::{
    ChildGuard, DashMpd, HlsPlaylist, Spate, assert_probe, curl, decode_for, ffmpeg_bin,
    ffprobe_streams, resolve_url,
};

const NAME: &str = "abr";

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port")
        .port()
}

/// ffmpeg: one test picture encoded twice (640x360 800k, 320x180 300k, the
/// same GOP of 2 s without scene cuts, so the renditions' keyframes are
/// aligned), one tone as AAC and as MP3, all in one TS over UDP.
fn send_abr_ts(dir: &std::path::Path, port: u16, seconds: u32) -> ChildGuard {
    let mut cmd = Command::new(ffmpeg_bin());
    let t = seconds.to_string();
    cmd.args([
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000",
        "-map",
        "0:v",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "60",
        "-keyint_min",
        "60",
        "-sc_threshold",
        "0",
        "-s:v:0",
        "640x360",
        "-b:v:0",
        "800k",
        "-s:v:1",
        "320x180",
        "-b:v:1",
        "300k",
        "-c:a:0",
        "aac",
        "-b:a:0",
        "128k",
        "-c:a:1",
        "libmp3lame",
        "-b:a:1",
        "128k",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-t",
        &t,
        "-mpegts_flags",
        "+resend_headers",
        "-f",
        "mpegts",
        &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
    ]);
    ChildGuard::spawn(cmd, dir, "send-abr-ts")
}

fn playlist(s: &Spate, url: &str) -> Option<HlsPlaylist> {
    let r = curl(s.dir(), &["--max-time", "5"], url);
    (r.status == 200)
        .then(|| HlsPlaylist::parse(&String::from_utf8_lossy(&r.body)).ok())
        .flatten()
}

/// Wait until the HLS master lists `variants` variants whose media
/// playlists have at least 2 segments each; returns the master.
fn wait_renditions(s: &Spate, variants: usize, sender: &mut ChildGuard) -> HlsPlaylist {
    let master_url = s.url(&format!("/hls/{NAME}/index.m3u8"));
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last;
    loop {
        assert!(
            sender.running(),
            "the sender stopped early: {}\nserver log:\n{}",
            sender.stderr(),
            s.stderr()
        );
        match playlist(s, &master_url) {
            Some(m) if m.variants.len() >= variants => {
                let counts: Vec<usize> = m
                    .variants
                    .iter()
                    .map(|v| {
                        playlist(s, &resolve_url(&master_url, &v.uri))
                            .map_or(0, |p| p.segments.len())
                    })
                    .collect();
                if counts.iter().all(|&n| n >= 2) {
                    return m;
                }
                last = format!("segments per variant: {counts:?}");
            }
            Some(m) => last = m.text,
            None => last = "no master".into(),
        }
        assert!(
            Instant::now() < deadline,
            "no {variants} renditions of {NAME} with 2 segments within 40 s ({last})\nserver log:\n{}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn multi_bitrate_ts_shows_every_track_and_video_selection_picks_the_rendition() {
    let port = free_udp_port();
    let s = Spate::builder()
        .label("ts_multitrack")
        .live("source_timeout", "2.0")
        .stream(
            NAME,
            &[("source", &format!("\"tsudp://127.0.0.1:{port}\""))],
        )
        .start();
    let mut sender = send_abr_ts(s.dir(), port, 90);
    let master = wait_renditions(&s, 2, &mut sender);
    let master_url = s.url(&format!("/hls/{NAME}/index.m3u8"));

    // HLS (TS): one variant per rendition, highest bandwidth first, each
    // with its resolution and its codecs (H.264 + the first audio, AAC).
    assert_eq!(master.variants.len(), 2, "{}", master.text);
    let resolutions: Vec<&str> = master
        .variants
        .iter()
        .map(|v| v.resolution.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(resolutions, ["640x360", "320x180"], "{}", master.text);
    let bandwidths: Vec<u64> = master
        .variants
        .iter()
        .map(|v| v.bandwidth.unwrap_or(0))
        .collect();
    assert!(
        bandwidths[0] >= bandwidths[1] && bandwidths[1] > 0,
        "{}",
        master.text
    );
    for v in &master.variants {
        let codecs = v.codecs.as_deref().unwrap_or_default();
        assert!(
            codecs.contains("avc1.") && codecs.contains("mp4a.40.2"),
            "{}",
            master.text
        );
    }
    assert!(master.text.contains("FRAME-RATE="), "{}", master.text);
    // Each variant's media playlist decodes at its resolution, with AAC.
    for (v, size) in master.variants.iter().zip([(640, 360), (320, 180)]) {
        let media = resolve_url(&master_url, &v.uri);
        assert_probe(s.dir(), &media, Some(size), true);
    }

    // `index.m3u8?video=` lists the chosen rendition alone.
    let one = playlist(&s, &format!("{master_url}?video=1")).expect("selected master");
    assert_eq!(one.variants.len(), 1, "{}", one.text);
    assert_eq!(
        one.variants[0].resolution.as_deref(),
        Some("320x180"),
        "{}",
        one.text
    );
    assert_probe(
        s.dir(),
        &resolve_url(&master_url, &one.variants[0].uri),
        Some((320, 180)),
        true,
    );
    let r = curl(
        s.dir(),
        &["--max-time", "5"],
        &format!("{master_url}?video=9"),
    );
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));

    // HLS (fMP4): both video variants in one audio group with both audio
    // tracks (AAC the default, MP3 the other, distinct names).
    let cmaf_url = s.url(&format!("/cmaf/{NAME}/index.m3u8"));
    let cmaf = playlist(&s, &cmaf_url).expect("CMAF master");
    assert_eq!(cmaf.variants.len(), 2, "{}", cmaf.text);
    let mut res: Vec<&str> = cmaf
        .variants
        .iter()
        .map(|v| v.resolution.as_deref().unwrap_or_default())
        .collect();
    res.sort_unstable();
    assert_eq!(res, ["320x180", "640x360"], "{}", cmaf.text);
    assert!(
        cmaf.variants
            .iter()
            .all(|v| v.audio.as_deref() == Some("audio")),
        "{}",
        cmaf.text
    );
    let audio: Vec<_> = cmaf
        .media
        .iter()
        .filter(|m| m.media_type == "AUDIO")
        .collect();
    assert_eq!(audio.len(), 2, "{}", cmaf.text);
    assert_ne!(audio[0].name, audio[1].name, "{}", cmaf.text);
    assert_eq!(
        audio
            .iter()
            .filter(|m| m.default.as_deref() == Some("YES"))
            .count(),
        1,
        "{}",
        cmaf.text
    );
    for m in &audio {
        let uri = m.uri.as_deref().expect("audio rendition URI");
        let p = playlist(&s, &resolve_url(&cmaf_url, uri)).expect("audio playlist");
        assert!(!p.segments.is_empty(), "{}", p.text);
    }
    let streams = ffprobe_streams(s.dir(), &cmaf_url).unwrap_or_else(|e| panic!("{e}"));
    let mut audio_codecs: Vec<&str> = streams
        .iter()
        .filter(|p| p.codec_type == "audio")
        .map(|p| p.codec_name.as_str())
        .collect();
    audio_codecs.sort_unstable();
    audio_codecs.dedup();
    assert_eq!(audio_codecs, ["aac", "mp3"], "{streams:#?}");

    // Progressive TS: `?video=` picks the rendition.
    let ts = |q: &str| s.url(&format!("/{NAME}.ts{q}"));
    assert_probe(s.dir(), &ts("?video=1"), Some((320, 180)), true);
    assert_probe(s.dir(), &ts("?video=0"), Some((640, 360)), true);
    assert_probe(s.dir(), &ts(""), Some((640, 360)), true);
    assert_probe(s.dir(), &ts("?video=minbps"), Some((320, 180)), true);
    assert_probe(
        s.dir(),
        &ts("?video=maxbps&audio=0"),
        Some((640, 360)),
        true,
    );
    assert_probe(s.dir(), &ts("?video=h264"), Some((640, 360)), true);
    decode_for(s.dir(), &ts("?video=1"), 4, Duration::from_secs(30)).assert_clean(3.0);
    for bad in ["?video=2", "?video=vp9", "?audio=1"] {
        let r = curl(s.dir(), &["--max-time", "5"], &ts(bad));
        assert_eq!(r.status, 404, "{bad}: {}", String::from_utf8_lossy(&r.body));
        assert!(
            String::from_utf8_lossy(&r.body).contains("track")
                || String::from_utf8_lossy(&r.body).contains("rendition"),
            "{bad}: the 404 says why: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    // DASH: both video representations in one AdaptationSet, and ffprobe
    // sees both.
    let mpd_url = s.url(&format!("/cmaf/{NAME}/index.mpd"));
    let r = curl(s.dir(), &["--max-time", "5"], &mpd_url);
    assert_eq!(r.status, 200);
    let mpd = DashMpd::parse(&String::from_utf8_lossy(&r.body)).expect("MPD");
    let video_sets: Vec<_> = mpd
        .adaptation_sets()
        .filter(|(_, a)| a.mime() == Some("video/mp4"))
        .collect();
    assert_eq!(video_sets.len(), 1, "{}", mpd.text);
    let mut sizes: Vec<(Option<u32>, Option<u32>)> = video_sets[0]
        .1
        .representations
        .iter()
        .map(|r| (r.width, r.height))
        .collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [(Some(320), Some(180)), (Some(640), Some(360))],
        "{}",
        mpd.text
    );
    let streams = ffprobe_streams(s.dir(), &mpd_url).unwrap_or_else(|e| panic!("{e}"));
    let mut video: Vec<(u32, u32)> = streams
        .iter()
        .filter(|p| p.codec_type == "video")
        .map(|p| (p.width, p.height))
        .collect();
    video.sort_unstable();
    assert_eq!(video, [(320, 180), (640, 360)], "{streams:#?}");
    sender.kill();
}
