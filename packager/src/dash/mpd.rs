//! The MPD writer.
use std::fmt::{self, Write};

use crate::hls::iso8601_utc_ms;
use crate::media::{MediaKind, rescale};

/// The ISO BMFF live profile (SegmentTemplate addressing).
pub const LIVE_PROFILE: &str = "urn:mpeg:dash:profile:isoff-live:2011";
/// The CMAF profile of ISO/IEC 23009-1 (4th edition).
pub const CMAF_PROFILE: &str = "urn:mpeg:dash:profile:cmaf:2019";
/// `UTCTiming` scheme: an HTTP GET returns the time as ISO 8601.
pub const UTC_TIMING_HTTP_ISO: &str = "urn:mpeg:dash:utc:http-iso:2014";
/// `AudioChannelConfiguration` scheme: the value is the channel count.
const AUDIO_CHANNEL_CONFIGURATION: &str = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011";

/// One track as a DASH Representation: in its own AdaptationSet, or in one
/// shared with the other representations of the same
/// [`adaptation_set`](Self::adaptation_set) key.
#[derive(Debug, Clone, PartialEq)]
pub struct DashRepresentation {
    /// `@id`, also what `$RepresentationID$` stands for in the templates.
    pub id: String,
    /// `Video` or `Audio`: the AdaptationSet's `@contentType`.
    pub content_type: MediaKind,
    /// `@mimeType`: `video/mp4` or `audio/mp4`.
    pub mime_type: String,
    /// `@codecs` ([`codecs_string`](crate::hls::codecs_string)).
    pub codecs: String,
    /// `@bandwidth` in bits per second.
    pub bandwidth: u64,
    /// `@width` (video).
    pub width: Option<u32>,
    /// `@height` (video).
    pub height: Option<u32>,
    /// `@frameRate` (video), written as an integer or a fraction
    /// (`30000/1001`), as the MPD schema requires.
    pub frame_rate: Option<f64>,
    /// `@audioSamplingRate` (audio), Hz.
    pub sample_rate: Option<u32>,
    /// `AudioChannelConfiguration` value (audio).
    pub channels: Option<u32>,
    /// `SegmentTemplate@timescale`: ticks per second of `timeline` (the
    /// track's fMP4 timescale).
    pub timescale: u32,
    /// `SegmentTemplate@startNumber`: `$Number$` of `timeline[0]`.
    pub start_number: u64,
    /// (t, d) of each listed segment in `timescale` units, oldest first,
    /// numbered consecutively from `start_number`. Durations should be
    /// positive.
    pub timeline: Vec<(i64, i64)>,
    /// The AdaptationSet's `@lang` (RFC 5646).
    pub lang: Option<String>,
    /// Representations with the same key share one AdaptationSet (the
    /// renditions a player switches between, e.g. the video bitrates); it
    /// takes `contentType`, `mimeType` and `lang` from the first of them and
    /// sits where that one is in the list. `None`: an AdaptationSet of its
    /// own.
    pub adaptation_set: Option<String>,
}

/// Everything a live MPD says.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveMpd {
    /// `@availabilityStartTime`: unix ms of media time 0.
    pub availability_start_ms: i64,
    /// `@publishTime`: unix ms when this MPD was made.
    pub publish_time_ms: i64,
    /// `@minimumUpdatePeriod`, ms (left out when `ended`).
    pub minimum_update_period_ms: i64,
    /// `@minBufferTime`, ms.
    pub min_buffer_time_ms: i64,
    /// `@timeShiftBufferDepth`, ms.
    pub time_shift_buffer_depth_ms: i64,
    /// `@suggestedPresentationDelay`, ms.
    pub suggested_presentation_delay_ms: i64,
    /// `@maxSegmentDuration`, ms.
    pub max_segment_duration_ms: i64,
    /// The `UTCTiming` value (scheme [`UTC_TIMING_HTTP_ISO`]): a URL
    /// answering with the time in ISO 8601. Left out when empty.
    pub utc_timing_url: String,
    /// `SegmentTemplate@initialization`, e.g. `$RepresentationID$/init.mp4`.
    pub initialization: String,
    /// `SegmentTemplate@media`, e.g. `$RepresentationID$/$Number$.m4s`.
    pub media: String,
    /// In this order: one AdaptationSet each, or per
    /// [`adaptation_set`](DashRepresentation::adaptation_set) key.
    pub representations: Vec<DashRepresentation>,
    /// The live stream ended: no `minimumUpdatePeriod`, and a
    /// `mediaPresentationDuration` up to the end of the last segment;
    /// `type` stays `dynamic` (see the [module docs](super)).
    pub ended: bool,
}

/// Write the MPD.
pub fn write_mpd(mpd: &LiveMpd) -> String {
    let segments: usize = mpd.representations.iter().map(|r| r.timeline.len()).sum();
    let mut out = String::with_capacity(1500 + 600 * mpd.representations.len() + 40 * segments);
    // Writing to a String cannot fail.
    let _ = write(&mut out, mpd);
    out
}

fn write(out: &mut String, mpd: &LiveMpd) -> fmt::Result {
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    write!(
        out,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"{LIVE_PROFILE},{CMAF_PROFILE}\" \
         type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\"",
        iso8601_utc_ms(mpd.availability_start_ms),
        iso8601_utc_ms(mpd.publish_time_ms)
    )?;
    if mpd.ended {
        if let Some(end_ms) = presentation_end_ms(mpd) {
            write!(out, " mediaPresentationDuration=\"{}\"", Duration(end_ms))?;
        }
    } else {
        write!(
            out,
            " minimumUpdatePeriod=\"{}\"",
            Duration(mpd.minimum_update_period_ms)
        )?;
    }
    writeln!(
        out,
        " minBufferTime=\"{}\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\" \
         maxSegmentDuration=\"{}\">",
        Duration(mpd.min_buffer_time_ms),
        Duration(mpd.time_shift_buffer_depth_ms),
        Duration(mpd.suggested_presentation_delay_ms),
        Duration(mpd.max_segment_duration_ms)
    )?;
    out.push_str("  <Period id=\"0\" start=\"PT0S\">\n");
    let reps = &mpd.representations;
    let mut set_id = 0;
    for (index, rep) in reps.iter().enumerate() {
        let members: Vec<&DashRepresentation> = match &rep.adaptation_set {
            None => vec![rep],
            Some(key) => {
                if reps[..index]
                    .iter()
                    .any(|r| r.adaptation_set.as_ref() == Some(key))
                {
                    continue;
                }
                reps[index..]
                    .iter()
                    .filter(|r| r.adaptation_set.as_ref() == Some(key))
                    .collect()
            }
        };
        write_adaptation_set(out, mpd, set_id, &members)?;
        set_id += 1;
    }
    out.push_str("  </Period>\n");
    if !mpd.utc_timing_url.is_empty() {
        writeln!(
            out,
            "  <UTCTiming schemeIdUri=\"{UTC_TIMING_HTTP_ISO}\" value=\"{}\"/>",
            Escaped(&mpd.utc_timing_url)
        )?;
    }
    out.push_str("</MPD>\n");
    Ok(())
}

fn write_adaptation_set(
    out: &mut String,
    mpd: &LiveMpd,
    index: usize,
    members: &[&DashRepresentation],
) -> fmt::Result {
    let rep = members[0];
    let content_type = match rep.content_type {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
    };
    write!(
        out,
        "    <AdaptationSet id=\"{index}\" contentType=\"{content_type}\" mimeType=\"{}\"",
        Escaped(&rep.mime_type)
    )?;
    if let Some(lang) = &rep.lang {
        write!(out, " lang=\"{}\"", Escaped(lang))?;
    }
    out.push_str(" segmentAlignment=\"true\" startWithSAP=\"1\">\n");
    for rep in members {
        write_representation(out, mpd, rep)?;
    }
    out.push_str("    </AdaptationSet>\n");
    Ok(())
}

fn write_representation(out: &mut String, mpd: &LiveMpd, rep: &DashRepresentation) -> fmt::Result {
    write!(
        out,
        "      <Representation id=\"{}\" codecs=\"{}\" bandwidth=\"{}\"",
        Escaped(&rep.id),
        Escaped(&rep.codecs),
        rep.bandwidth
    )?;
    if let Some(w) = rep.width {
        write!(out, " width=\"{w}\"")?;
    }
    if let Some(h) = rep.height {
        write!(out, " height=\"{h}\"")?;
    }
    if let Some(rate) = rep.frame_rate.and_then(frame_rate) {
        write!(out, " frameRate=\"{rate}\"")?;
    }
    if let Some(rate) = rep.sample_rate {
        write!(out, " audioSamplingRate=\"{rate}\"")?;
    }
    out.push_str(">\n");
    if let Some(channels) = rep.channels {
        writeln!(
            out,
            "        <AudioChannelConfiguration schemeIdUri=\"{AUDIO_CHANNEL_CONFIGURATION}\" \
             value=\"{channels}\"/>"
        )?;
    }
    writeln!(
        out,
        "        <SegmentTemplate timescale=\"{}\" initialization=\"{}\" media=\"{}\" \
         startNumber=\"{}\">",
        rep.timescale,
        Escaped(&mpd.initialization),
        Escaped(&mpd.media),
        rep.start_number
    )?;
    if rep.timeline.is_empty() {
        out.push_str("          <SegmentTimeline/>\n");
    } else {
        out.push_str("          <SegmentTimeline>\n");
        for s in timeline_entries(&rep.timeline) {
            out.push_str("            <S");
            if let Some(t) = s.t {
                write!(out, " t=\"{t}\"")?;
            }
            write!(out, " d=\"{}\"", s.d)?;
            if s.r > 0 {
                write!(out, " r=\"{}\"", s.r)?;
            }
            out.push_str("/>\n");
        }
        out.push_str("          </SegmentTimeline>\n");
    }
    out.push_str("        </SegmentTemplate>\n      </Representation>\n");
    Ok(())
}

/// One `S` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimelineEntry {
    /// `@t`, when the segment does not start where the previous ended.
    pub t: Option<i64>,
    /// `@d`.
    pub d: i64,
    /// `@r`: further segments of the same duration, back to back.
    pub r: u64,
}

/// Collapse (t, d) pairs into `S` elements.
pub(super) fn timeline_entries(timeline: &[(i64, i64)]) -> Vec<TimelineEntry> {
    let mut entries: Vec<TimelineEntry> = Vec::new();
    let mut expected_t: Option<i64> = None;
    for &(t, d) in timeline {
        let continues = expected_t == Some(t);
        match entries.last_mut() {
            Some(last) if continues && last.d == d => last.r += 1,
            _ => entries.push(TimelineEntry {
                t: (!continues).then_some(t),
                d,
                r: 0,
            }),
        }
        expected_t = Some(t.saturating_add(d));
    }
    entries
}

/// The end of the last segment of any representation, in ms of media time.
fn presentation_end_ms(mpd: &LiveMpd) -> Option<i64> {
    mpd.representations
        .iter()
        .filter_map(|r| {
            let &(t, d) = r.timeline.last()?;
            Some(rescale(t.saturating_add(d), r.timescale, 1000))
        })
        .max()
}

/// A frame rate as the MPD's FrameRateType: an integer, or a fraction
/// (`30000/1001` for the NTSC rates, else thousandths reduced).
fn frame_rate(fps: f64) -> Option<String> {
    if !fps.is_finite() || fps <= 0.0 || fps > 1e6 {
        return None;
    }
    if (fps - fps.round()).abs() < 1e-3 {
        return Some(format!("{}", fps.round() as u64));
    }
    let ntsc = fps * 1.001;
    if (ntsc - ntsc.round()).abs() < 1e-3 {
        return Some(format!("{}/1001", ntsc.round() as u64 * 1000));
    }
    let milli = (fps * 1000.0).round() as u64;
    let g = gcd(milli, 1000);
    Some(format!("{}/{}", milli / g, 1000 / g))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Milliseconds as xs:duration, `PT1.234S` (negative as 0).
struct Duration(i64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.max(0);
        write!(f, "PT{}.{:03}S", ms / 1000, ms % 1000)
    }
}

/// Text as an XML attribute value: `&<>"'` escaped, control characters
/// (which XML 1.0 cannot carry, or would normalize) dropped.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&apos;")?,
                c if c.is_control() => {}
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}
