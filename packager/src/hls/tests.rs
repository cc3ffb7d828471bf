//! Exact playlist text for small cases, codecs strings of real encoders'
//! configuration records, ISO 8601 vectors.
use bytes::Bytes;

use super::*;
use crate::media::{AudioSpecificConfig, Codec, Track};

macro_rules! fixture {
    ($name:literal) => {
        Bytes::from_static(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        )))
    };
}

fn seg(seq: u64, duration_us: i64, ext: &str) -> HlsSegment {
    HlsSegment {
        seq,
        duration_us,
        uri: format!("{seq}.{ext}"),
        discontinuity: false,
        program_date_time_ms: None,
    }
}

fn codecs(codec: Codec, config: Bytes) -> Option<String> {
    codecs_string(&Track::with_config(0, codec, 90000, config).unwrap())
}

#[test]
fn codecs_strings_of_encoder_records() {
    let avc = codecs(Codec::H264, fixture!("avcC_1920x1080.bin"));
    assert_eq!(avc.as_deref(), Some("avc1.640028"));
    let hevc = codecs(Codec::H265, fixture!("hvcC_640x360.bin"));
    assert_eq!(hevc.as_deref(), Some("hvc1.1.6.L63.90"));
    let hevc10 = codecs(Codec::H265, fixture!("hvcC_main10_1920x1080.bin"));
    assert_eq!(hevc10.as_deref(), Some("hvc1.2.4.L120.90"));
    let av1 = codecs(Codec::Av1, fixture!("av1C_640x360.bin"));
    assert_eq!(av1.as_deref(), Some("av01.0.01M.08"));
    let opus = codecs(Codec::Opus, fixture!("dOps_stereo.bin"));
    assert_eq!(opus.as_deref(), Some("opus"));
    let lc = codecs(
        Codec::Aac,
        Bytes::from(AudioSpecificConfig::encode(2, 44100, 2)),
    );
    assert_eq!(lc.as_deref(), Some("mp4a.40.2"));
    let he = codecs(Codec::Aac, Bytes::from_static(&[0x2b, 0x11, 0x88]));
    assert_eq!(he.as_deref(), Some("mp4a.40.5"));
}

#[test]
fn hevc_profile_space_tier_and_constraints() {
    let mut record = fixture!("hvcC_640x360.bin").to_vec();
    // profile_space 1, high tier, profile_idc 1.
    record[1] = 0x61;
    let s = codecs(Codec::H265, Bytes::from(record.clone()));
    assert_eq!(s.as_deref(), Some("hvc1.A1.6.H63.90"));
    // Constraint bytes: trailing zeros dropped, inner ones kept.
    record[1] = 0x01;
    record[6..12].copy_from_slice(&[0, 0, 0x0b, 0, 0, 0]);
    let s = codecs(Codec::H265, Bytes::from(record.clone()));
    assert_eq!(s.as_deref(), Some("hvc1.1.6.L63.0.0.B"));
    record[6..12].fill(0);
    let s = codecs(Codec::H265, Bytes::from(record));
    assert_eq!(s.as_deref(), Some("hvc1.1.6.L63"));
}

#[test]
fn codecs_strings_without_records() {
    let t = |codec| codecs_string(&Track::new(1, codec, 48000));
    assert_eq!(t(Codec::Mp3).as_deref(), Some("mp4a.40.34"));
    assert_eq!(t(Codec::Ac3).as_deref(), Some("ac-3"));
    assert_eq!(t(Codec::Eac3).as_deref(), Some("ec-3"));
    assert_eq!(t(Codec::Opus).as_deref(), Some("opus"));
    for unknown in [Codec::H264, Codec::H265, Codec::Av1, Codec::Vp9, Codec::Aac] {
        assert_eq!(t(unknown), None, "{unknown}");
    }
    // H.264 and AAC fall back on TrackInfo.
    let mut h264 = Track::new(0, Codec::H264, 90000);
    h264.info.profile = Some(66);
    h264.info.level = Some(30);
    assert_eq!(codecs_string(&h264).as_deref(), Some("avc1.42001e"));
    let mut aac = Track::new(1, Codec::Aac, 48000);
    aac.info.profile = Some(29);
    assert_eq!(codecs_string(&aac).as_deref(), Some("mp4a.40.29"));
    // A record that does not parse.
    let mut bad = Track::new(0, Codec::Av1, 90000);
    bad.config = Some(Bytes::from_static(&[0x00, 1, 2, 3]));
    assert_eq!(codecs_string(&bad), None);
}

#[test]
fn vp9_from_vpcc() {
    let mut t = Track::new(0, Codec::Vp9, 90000);
    // vpcC v1: profile 0, level 3.1 (31), 10-bit 4:2:0.
    t.config = Some(Bytes::from_static(&[
        1, 0, 0, 0, 0, 31, 0xa2, 1, 1, 1, 0, 0,
    ]));
    assert_eq!(codecs_string(&t).as_deref(), Some("vp09.00.31.10"));
    t.config = Some(Bytes::from_static(&[1, 0, 0, 0, 2]));
    assert_eq!(codecs_string(&t), None);
}

#[test]
fn ts_playlist_slides_and_counts_discontinuities() {
    let mut p = LivePlaylist::new(3, None, 2_000_000);
    assert!(p.is_empty());
    let mut first = seg(10, 2_000_000, "ts");
    first.program_date_time_ms = Some(1_796_151_196_123);
    p.push(first);
    assert_eq!(p.target_duration_s(), 2);
    p.push(seg(11, 2_002_000, "ts"));
    // 2.002 s rounds to 2: the target stays (RFC 8216 4.3.3.1 rounds to
    // the nearest integer).
    assert_eq!(p.target_duration_s(), 2);
    let mut disc = seg(12, 1_500_000, "ts");
    disc.discontinuity = true;
    p.push(disc);
    p.push(seg(13, 2_499_500, "ts"));
    assert_eq!(p.media_sequence(), 11);
    assert_eq!(
        p.render(false),
        "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:11
#EXT-X-INDEPENDENT-SEGMENTS
#EXTINF:2.002,
11.ts
#EXT-X-DISCONTINUITY
#EXTINF:1.500,
12.ts
#EXTINF:2.500,
13.ts
"
    );
    let mut dated = seg(14, 2_000_000, "ts");
    dated.program_date_time_ms = Some(1_796_151_196_123);
    p.push(dated);
    p.push(seg(15, 1_999_999, "ts"));
    assert_eq!(p.discontinuity_sequence(), 1);
    assert_eq!(
        p.segments().map(|s| s.seq).collect::<Vec<_>>(),
        vec![13, 14, 15]
    );
    assert_eq!(
        p.render(true),
        "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:13
#EXT-X-DISCONTINUITY-SEQUENCE:1
#EXT-X-INDEPENDENT-SEGMENTS
#EXTINF:2.500,
13.ts
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T18:53:16.123Z
#EXTINF:2.000,
14.ts
#EXTINF:2.000,
15.ts
#EXT-X-ENDLIST
"
    );
}

#[test]
fn fmp4_playlist_writes_a_new_map_where_the_init_segment_changes() {
    let mut p = LivePlaylist::new(5, Some("init-0.mp4".into()), 2_000_000);
    p.push(seg(0, 2_000_000, "m4s"));
    p.push(seg(1, 2_000_000, "m4s"));
    p.set_map(Some("init-1.mp4".into()));
    let mut changed = seg(2, 2_000_000, "m4s");
    changed.discontinuity = true;
    p.push(changed);
    assert_eq!(
        p.render(false),
        "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init-0.mp4\"
#EXTINF:2.000,
0.m4s
#EXTINF:2.000,
1.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init-1.mp4\"
#EXTINF:2.000,
2.m4s
"
    );
    for n in 3..8 {
        p.push(seg(n, 2_000_000, "m4s"));
    }
    // Segment 2 (and its discontinuity tag) left; its map is written
    // before the first listed segment.
    assert_eq!(
        p.render(false),
        "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:3
#EXT-X-DISCONTINUITY-SEQUENCE:1
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init-1.mp4\"
#EXTINF:2.000,
3.m4s
#EXTINF:2.000,
4.m4s
#EXTINF:2.000,
5.m4s
#EXTINF:2.000,
6.m4s
#EXTINF:2.000,
7.m4s
"
    );
}

#[test]
fn empty_playlist_and_degenerate_arguments() {
    let p = LivePlaylist::new(0, None, 0);
    assert_eq!(
        p.render(false),
        "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
"
    );
    let mut p = LivePlaylist::new(0, Some("in\"it.mp4".into()), 6_000_001);
    assert_eq!(p.target_duration_s(), 6);
    let mut s = seg(1, -5, "m4s");
    s.uri = "a\r\nb.m4s".into();
    p.push(s);
    p.push(seg(2, 6_500_000, "m4s"));
    assert_eq!(p.segments().count(), 1);
    assert_eq!(p.target_duration_s(), 7);
    let mut p2 = LivePlaylist::new(1, Some("in\"it.mp4".into()), 0);
    let mut s = seg(1, -5, "m4s");
    s.uri = "a\r\nb.m4s".into();
    p2.push(s);
    assert!(p2.render(false).ends_with(
        "#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:0.000,
ab.m4s
"
    ));
}

#[test]
fn multivariant_playlist() {
    let variants = [
        Variant {
            uri: "video/index.m3u8".into(),
            bandwidth: 2_500_000,
            average_bandwidth: Some(2_000_000),
            codecs: vec!["avc1.640028".into(), "mp4a.40.2".into()],
            resolution: Some((1920, 1080)),
            frame_rate: Some(30000.0 / 1001.0),
            audio_group: Some("aac".into()),
        },
        Variant {
            uri: "audio/index.m3u8".into(),
            bandwidth: 128_000,
            average_bandwidth: None,
            codecs: vec!["mp4a.40.2".into()],
            resolution: None,
            frame_rate: None,
            audio_group: None,
        },
    ];
    let audio = [
        AudioRendition {
            group_id: "aac".into(),
            name: "English".into(),
            language: Some("en".into()),
            default: true,
            autoselect: false,
            channels: Some(2),
            uri: Some("audio/index.m3u8".into()),
        },
        AudioRendition {
            group_id: "aac".into(),
            name: "Commentary".into(),
            language: None,
            default: false,
            autoselect: false,
            channels: None,
            uri: None,
        },
    ];
    assert_eq!(
        master_playlist(&variants, &audio),
        "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"Commentary\",DEFAULT=NO,AUTOSELECT=NO
#EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,CODECS=\"avc1.640028,mp4a.40.2\",RESOLUTION=1920x1080,FRAME-RATE=29.970,AUDIO=\"aac\"
video/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS=\"mp4a.40.2\"
audio/index.m3u8
"
    );
    assert_eq!(
        master_playlist(&[], &[]),
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
}

#[test]
fn iso8601_vectors() {
    let cases = [
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_796_151_196_123, "2026-12-01T18:53:16.123Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (951_868_800_000, "2000-03-01T00:00:00.000Z"),
        (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
        (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
        (-2_203_891_200_000, "1900-03-01T00:00:00.000Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (253_402_300_800_000, "10000-01-01T00:00:00.000Z"),
        (-62_135_596_800_001, "0000-12-31T23:59:59.999Z"),
        (-62_167_219_200_001, "-0001-12-31T23:59:59.999Z"),
    ];
    for (ms, text) in cases {
        assert_eq!(iso8601_utc_ms(ms), text, "{ms}");
    }
    // The extremes format without overflow.
    assert!(iso8601_utc_ms(i64::MIN).ends_with('Z'));
    assert!(iso8601_utc_ms(i64::MAX).ends_with('Z'));
}
