//! Exact MPD text for a small live stream (video + audio), the ended form,
//! timeline collapsing and attribute formatting.
use super::mpd::{TimelineEntry, timeline_entries};
use super::*;
use crate::media::MediaKind;

fn video() -> DashRepresentation {
    DashRepresentation {
        id: "v0".into(),
        content_type: MediaKind::Video,
        mime_type: "video/mp4".into(),
        codecs: "avc1.640028".into(),
        bandwidth: 2_000_000,
        width: Some(1920),
        height: Some(1080),
        frame_rate: Some(30000.0 / 1001.0),
        sample_rate: None,
        channels: None,
        timescale: 90000,
        start_number: 5,
        timeline: vec![
            (900_000, 180_000),
            (1_080_000, 180_000),
            (1_260_000, 180_000),
            (1_440_000, 90_000),
        ],
        lang: None,
        adaptation_set: None,
    }
}

fn audio() -> DashRepresentation {
    DashRepresentation {
        id: "a0".into(),
        content_type: MediaKind::Audio,
        mime_type: "audio/mp4".into(),
        codecs: "mp4a.40.2".into(),
        bandwidth: 128_000,
        width: None,
        height: None,
        frame_rate: None,
        sample_rate: Some(48000),
        channels: Some(2),
        timescale: 48000,
        start_number: 5,
        timeline: vec![(480_000, 96_000), (576_000, 96_000), (700_000, 96_000)],
        lang: Some("en".into()),
        adaptation_set: None,
    }
}

fn mpd() -> LiveMpd {
    LiveMpd {
        availability_start_ms: 1_796_151_196_123,
        publish_time_ms: 1_796_151_210_000,
        minimum_update_period_ms: 2000,
        min_buffer_time_ms: 2000,
        time_shift_buffer_depth_ms: 30_000,
        suggested_presentation_delay_ms: 6000,
        max_segment_duration_ms: 2000,
        utc_timing_url: "http://example.com/time?iso&ms".into(),
        initialization: "$RepresentationID$/init.mp4".into(),
        media: "$RepresentationID$/$Number$.m4s".into(),
        representations: vec![video(), audio()],
        ended: false,
    }
}

#[test]
fn live_mpd_text() {
    assert_eq!(
        write_mpd(&mpd()),
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019" type="dynamic" availabilityStartTime="2026-12-01T18:53:16.123Z" publishTime="2026-12-01T18:53:30.000Z" minimumUpdatePeriod="PT2.000S" minBufferTime="PT2.000S" timeShiftBufferDepth="PT30.000S" suggestedPresentationDelay="PT6.000S" maxSegmentDuration="PT2.000S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">
      <Representation id="v0" codecs="avc1.640028" bandwidth="2000000" width="1920" height="1080" frameRate="30000/1001">
        <SegmentTemplate timescale="90000" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s" startNumber="5">
          <SegmentTimeline>
            <S t="900000" d="180000" r="2"/>
            <S d="90000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="en" segmentAlignment="true" startWithSAP="1">
      <Representation id="a0" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="48000">
        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2"/>
        <SegmentTemplate timescale="48000" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s" startNumber="5">
          <SegmentTimeline>
            <S t="480000" d="96000" r="1"/>
            <S t="700000" d="96000"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="http://example.com/time?iso&amp;ms"/>
</MPD>
"#
    );
}

#[test]
fn ended_mpd_has_a_duration_and_no_update_period() {
    let mut m = mpd();
    m.ended = true;
    let text = write_mpd(&m);
    assert!(!text.contains("minimumUpdatePeriod"));
    // Video ends at 1_530_000 / 90000 = 17 s, audio at 796_000 / 48000 =
    // 16.583 s: the later one.
    assert!(text.contains(
        "type=\"dynamic\" availabilityStartTime=\"2026-12-01T18:53:16.123Z\" \
         publishTime=\"2026-12-01T18:53:30.000Z\" mediaPresentationDuration=\"PT17.000S\" \
         minBufferTime=\"PT2.000S\""
    ));
    // Without segments there is no end to tell.
    m.representations
        .iter_mut()
        .for_each(|r| r.timeline.clear());
    let text = write_mpd(&m);
    assert!(!text.contains("mediaPresentationDuration"));
    assert!(text.contains("<SegmentTimeline/>"));
}

#[test]
fn timeline_collapses_runs_and_marks_gaps() {
    let e = |t, d, r| TimelineEntry { t, d, r };
    assert_eq!(timeline_entries(&[]), vec![]);
    assert_eq!(
        timeline_entries(&[
            (0, 10),
            (10, 10),
            (20, 10),
            (30, 5),
            (35, 10),
            (50, 10),
            (60, 10)
        ]),
        vec![
            e(Some(0), 10, 2),
            e(None, 5, 0),
            e(None, 10, 0),
            e(Some(50), 10, 1),
        ]
    );
    // Overlap (a segment starting before the previous ended) gets its t.
    assert_eq!(
        timeline_entries(&[(100, 10), (105, 10)]),
        vec![e(Some(100), 10, 0), e(Some(105), 10, 0)]
    );
}

#[test]
fn attributes_are_escaped_and_optional_parts_left_out() {
    let mut m = mpd();
    m.utc_timing_url.clear();
    m.initialization = "<init>\"'\n.mp4".into();
    m.representations = vec![DashRepresentation {
        id: "a&b".into(),
        frame_rate: Some(25.0),
        ..video()
    }];
    let text = write_mpd(&m);
    assert!(!text.contains("UTCTiming"));
    assert!(text.contains(r#"initialization="&lt;init&gt;&quot;&apos;.mp4""#));
    assert!(text.contains(r#"<Representation id="a&amp;b" "#));
    assert!(text.contains(r#"frameRate="25">"#));
    assert!(text.ends_with("  </Period>\n</MPD>\n"));
}

#[test]
fn frame_rates_are_integers_or_fractions() {
    let rate = |fps: f64| {
        let mut m = mpd();
        m.representations = vec![DashRepresentation {
            frame_rate: Some(fps),
            ..video()
        }];
        let text = write_mpd(&m);
        text.split("frameRate=\"")
            .nth(1)
            .map(|r| r.split('"').next().unwrap_or_default().to_string())
    };
    assert_eq!(rate(30.0).as_deref(), Some("30"));
    assert_eq!(rate(29.97).as_deref(), Some("30000/1001"));
    assert_eq!(rate(23.976).as_deref(), Some("24000/1001"));
    assert_eq!(rate(59.94).as_deref(), Some("60000/1001"));
    assert_eq!(rate(12.5).as_deref(), Some("25/2"));
    assert_eq!(rate(f64::NAN), None);
    assert_eq!(rate(-1.0), None);
}

#[test]
fn representations_with_one_key_share_an_adaptation_set() {
    let mut m = mpd();
    let low = DashRepresentation {
        id: "v1".into(),
        bandwidth: 500_000,
        width: Some(640),
        height: Some(360),
        adaptation_set: Some("video".into()),
        ..video()
    };
    m.representations = vec![
        DashRepresentation {
            adaptation_set: Some("video".into()),
            ..video()
        },
        audio(),
        low,
        DashRepresentation {
            id: "a1".into(),
            ..audio()
        },
    ];
    let text = write_mpd(&m);
    assert_eq!(text.matches("<AdaptationSet ").count(), 3, "{text}");
    assert_eq!(text.matches("</AdaptationSet>").count(), 3);
    assert_eq!(text.matches("<Representation ").count(), 4);
    // The video set comes first, with both video representations, then
    // each audio set; ids count sets.
    let video_set = text
        .split("<AdaptationSet id=\"0\" contentType=\"video\"")
        .nth(1)
        .and_then(|t| t.split("</AdaptationSet>").next())
        .expect("video set");
    assert!(video_set.contains(r#"<Representation id="v0" "#));
    assert!(video_set.contains(r#"<Representation id="v1" "#));
    assert!(text.contains(r#"<AdaptationSet id="1" contentType="audio""#));
    assert!(text.contains(r#"<AdaptationSet id="2" contentType="audio""#));
    assert!(text.find(r#"id="a0""#) < text.find(r#"id="a1""#));
}
