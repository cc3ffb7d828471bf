//! A small reader of live DASH manifests for the player-like viewers: the
//! first video Representation (or the first one, when no set says it is
//! video) of the first Period, with a `SegmentTemplate` + `SegmentTimeline`
//! (at the Representation or AdaptationSet level), turned into the same
//! [`MediaPlaylist`] the HLS viewers play: one segment per timeline entry,
//! numbered from `startNumber`, its URI the `media` template with
//! `$RepresentationID$`, `$Number$`, `$Time$` and `$Bandwidth$` filled in
//! (`$$` → `$`; width formats like `$Number%05d$` are honoured). The
//! target duration is the longest segment, so a viewer re-polls about as
//! often as `minimumUpdatePeriod` asks for on a 1-segment update period.
//!
//! Number-only templates (`@duration`, no timeline; ffmpeg's `-f dash
//! -use_timeline 0` writes them) are read the way a live player reads them:
//! segment `startNumber + k` covers `[k·D, (k+1)·D)` after the Period start,
//! and is available once its end has passed on the wall clock, counted from
//! `availabilityStartTime`; the list holds the segments of
//! `timeShiftBufferDepth` (default 5 segments, at most 30) up to the newest
//! available one. A static MPD lists `mediaPresentationDuration` worth.
//!
//! Not handled: `SegmentList`, `BaseURL`, multi-period manifests. The init
//! segment is not fetched by the viewers (it is small and fetched once).
//! The XML is scanned, not validated: attributes are read from the start
//! tags that matter.
use crate::hls_playlist::{MediaPlaylist, Segment};

/// The start tags named `name` in `xml` (the text between `<name` and `>`).
fn tags<'a>(xml: &'a str, name: &str) -> Vec<(usize, &'a str)> {
    let open = format!("<{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open) {
        let at = from + i;
        let after = &xml[at + open.len()..];
        // `<SegmentTemplate` must not match `<SegmentTimeline`.
        if after.starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/')
            && let Some(end) = after.find('>')
        {
            out.push((at, &after[..end]));
        }
        from = at + open.len();
    }
    out
}

/// Attribute `key` of a start tag's text.
fn attr<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = tag;
    loop {
        let i = rest.find(key)?;
        let before_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        let after = rest[i + key.len()..].trim_start();
        if before_ok && let Some(v) = after.strip_prefix('=') {
            let v = v.trim_start();
            let q = v.chars().next()?;
            if q == '"' || q == '\'' {
                let v = &v[1..];
                return v.find(q).map(|e| &v[..e]);
            }
        }
        rest = &rest[i + key.len()..];
    }
}

/// The `media` template with the identifiers filled in.
fn fill(template: &str, rep: &str, bandwidth: &str, number: u64, time: u64) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('$') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let ident = &after[..j];
        let (name, width) = match ident.split_once('%') {
            Some((n, f)) => (
                n,
                f.trim_start_matches('0')
                    .trim_end_matches('d')
                    .parse::<usize>()
                    .unwrap_or(0),
            ),
            None => (ident, 0),
        };
        match name {
            "" => out.push('$'),
            "RepresentationID" => out.push_str(rep),
            "Bandwidth" => out.push_str(bandwidth),
            "Number" => out.push_str(&format!("{number:0width$}")),
            "Time" => out.push_str(&format!("{time:0width$}")),
            other => {
                out.push('$');
                out.push_str(other);
                out.push('$');
            }
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

/// What a number-only template needs from the Representation.
struct Template<'a> {
    media: &'a str,
    rep_id: &'a str,
    bandwidth: &'a str,
    timescale: u64,
    start_number: u64,
}

/// Most segments a number-only template's list holds.
const MAX_NUMBER_WINDOW: u64 = 30;

/// The segments of a `SegmentTemplate@duration` without a timeline.
fn number_only(
    xml: &str,
    mpd: &str,
    tmpl: &str,
    t: &Template<'_>,
    ended: bool,
    now_ms: i64,
) -> Result<MediaPlaylist, String> {
    let d: u64 = attr(tmpl, "duration")
        .ok_or("SegmentTemplate has neither a SegmentTimeline nor @duration")?
        .parse()
        .map_err(|_| "bad SegmentTemplate@duration")?;
    let d_us = (d as u128 * 1_000_000 / t.timescale as u128) as u64;
    if d_us == 0 {
        return Err("SegmentTemplate@duration is 0".into());
    }
    let period_start_us = tags(xml, "Period")
        .first()
        .and_then(|(_, p)| attr(p, "start"))
        .map(iso_duration_us)
        .transpose()?
        .unwrap_or(0);
    let (first, last) = if ended {
        let total = attr(mpd, "mediaPresentationDuration")
            .ok_or("static MPD without mediaPresentationDuration")
            .and_then(|v| iso_duration_us(v).map_err(|_| "bad mediaPresentationDuration"))?;
        (0, total.div_ceil(d_us).max(1) - 1)
    } else {
        let ast = attr(mpd, "availabilityStartTime")
            .ok_or("dynamic MPD with a number-only template but no availabilityStartTime")?;
        let ast_ms = iso_datetime_ms(ast)?;
        let elapsed_us = (now_ms - ast_ms) * 1000 - period_start_us as i64;
        let complete = if elapsed_us > 0 {
            elapsed_us as u64 / d_us
        } else {
            0
        };
        if complete == 0 {
            return Err(format!(
                "no segment available yet: availabilityStartTime {ast} is {} ms ago, a segment is {} ms",
                elapsed_us / 1000,
                d_us / 1000
            ));
        }
        let window = match attr(mpd, "timeShiftBufferDepth") {
            Some(v) => iso_duration_us(v)? / d_us,
            None => 5,
        }
        .clamp(1, MAX_NUMBER_WINDOW);
        (complete.saturating_sub(window), complete - 1)
    };
    let first = first.max(last.saturating_sub(MAX_NUMBER_WINDOW - 1));
    let segments = (first..=last)
        .map(|k| Segment {
            seq: t.start_number + k,
            duration_us: d_us,
            uri: fill(t.media, t.rep_id, t.bandwidth, t.start_number + k, k * d),
        })
        .collect();
    Ok(MediaPlaylist {
        target_us: d_us,
        media_sequence: t.start_number + first,
        segments,
        ended,
        map: None,
    })
}

/// An xs:duration such as `PT2.0S`, `PT1H2M3.5S` or `P1DT2H`, in µs
/// (years and months have no fixed length and are refused).
fn iso_duration_us(v: &str) -> Result<u64, String> {
    let bad = || format!("bad duration {v:?}");
    let rest = v.strip_prefix('P').ok_or_else(bad)?;
    let mut total = 0f64;
    let mut in_time = false;
    let mut num = String::new();
    let mut parts = 0;
    for c in rest.chars() {
        match c {
            'T' if num.is_empty() => in_time = true,
            '0'..='9' | '.' => num.push(c),
            'D' | 'H' | 'M' | 'S' if !num.is_empty() => {
                let n: f64 = num.parse().map_err(|_| bad())?;
                num.clear();
                parts += 1;
                total += n * match (c, in_time) {
                    ('D', false) => 86_400.0,
                    ('H', true) => 3_600.0,
                    ('M', true) => 60.0,
                    ('S', true) => 1.0,
                    _ => return Err(bad()),
                };
            }
            _ => return Err(bad()),
        }
    }
    if parts == 0 || !num.is_empty() || !(0.0..1e10).contains(&total) {
        return Err(bad());
    }
    Ok((total * 1e6).round() as u64)
}

/// An xs:dateTime such as `2026-12-02T15:08:20.265Z` (or with `±hh:mm`),
/// in ms since the Unix epoch; without a zone it is taken as UTC.
fn iso_datetime_ms(v: &str) -> Result<i64, String> {
    let bad = || format!("bad date-time {v:?}");
    let (date, time) = v.split_once('T').ok_or_else(bad)?;
    let mut d = date
        .splitn(3, '-')
        .map(|x| x.parse::<i64>().map_err(|_| bad()));
    let (y, mo, da) = (
        d.next().ok_or_else(bad)??,
        d.next().ok_or_else(bad)??,
        d.next().ok_or_else(bad)??,
    );
    let (clock, zone_ms) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (h, m) = time[i + 1..].split_once(':').ok_or_else(bad)?;
        let off = (h.parse::<i64>().map_err(|_| bad())? * 60
            + m.parse::<i64>().map_err(|_| bad())?)
            * 60_000;
        (&time[..i], if &time[i..i + 1] == "+" { off } else { -off })
    } else {
        (time, 0)
    };
    let mut c = clock.splitn(3, ':');
    let h: i64 = c.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let mi: i64 = c.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let sec: f64 = c.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || h > 23
        || mi > 59
        || !(0.0..61.0).contains(&sec)
    {
        return Err(bad());
    }
    let days = spate_packager::hls::days_from_civil(y, mo, da);
    Ok(days * 86_400_000 + h * 3_600_000 + mi * 60_000 + (sec * 1000.0).round() as i64 - zone_ms)
}

/// Parse a manifest into the segments of its first video Representation.
pub fn parse(body: &[u8]) -> Result<MediaPlaylist, String> {
    parse_with_timescale(body).map(|(p, _)| p)
}

/// [`parse`], and the Representation's `SegmentTemplate@timescale` (the
/// track timescale of its fMP4 segments).
pub fn parse_with_timescale(body: &[u8]) -> Result<(MediaPlaylist, u64), String> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    parse_at(body, now_ms)
}

/// [`parse_with_timescale`] with the wall clock given (ms since the Unix
/// epoch): number-only templates find their live edge from it.
pub fn parse_at(body: &[u8], now_ms: i64) -> Result<(MediaPlaylist, u64), String> {
    let xml = std::str::from_utf8(body).map_err(|_| "MPD is not UTF-8".to_string())?;
    let mpd = tags(xml, "MPD")
        .into_iter()
        .next()
        .ok_or("no <MPD> element")?
        .1;
    let ended = attr(mpd, "type") == Some("static");
    let sets = tags(xml, "AdaptationSet");
    if sets.is_empty() {
        return Err("no AdaptationSet".into());
    }
    let is_video = |t: &str| {
        attr(t, "contentType") == Some("video")
            || attr(t, "mimeType").is_some_and(|m| m.starts_with("video/"))
    };
    let (set_at, _) = sets
        .iter()
        .copied()
        .find(|(_, t)| is_video(t))
        .unwrap_or(sets[0]);
    let set_end = xml[set_at..]
        .find("</AdaptationSet>")
        .map_or(xml.len(), |e| set_at + e);
    let set = &xml[set_at..set_end];
    let (rep_at, rep_tag) = tags(set, "Representation")
        .into_iter()
        .next()
        .ok_or("no Representation in the video AdaptationSet")?;
    let rep_id = attr(rep_tag, "id").unwrap_or("");
    let bandwidth = attr(rep_tag, "bandwidth").unwrap_or("");
    // The Representation's template if it has one, else the set's.
    let rep_end = set[rep_at..]
        .find("</Representation>")
        .map_or(set.len(), |e| rep_at + e);
    let rep = &set[rep_at..rep_end];
    let (scope, (_, tmpl)) = match tags(rep, "SegmentTemplate").into_iter().next() {
        Some(t) => (rep, t),
        None => (
            set,
            tags(set, "SegmentTemplate")
                .into_iter()
                .next()
                .ok_or("no SegmentTemplate")?,
        ),
    };
    let timescale: u64 = attr(tmpl, "timescale")
        .unwrap_or("1")
        .parse()
        .map_err(|_| "bad SegmentTemplate@timescale")?;
    if timescale == 0 {
        return Err("SegmentTemplate@timescale is 0".into());
    }
    let media = attr(tmpl, "media").ok_or("SegmentTemplate without @media")?;
    let start_number: u64 = attr(tmpl, "startNumber")
        .unwrap_or("1")
        .parse()
        .map_err(|_| "bad SegmentTemplate@startNumber")?;
    let Some(timeline_at) = scope.find("<SegmentTimeline") else {
        let t = Template {
            media,
            rep_id,
            bandwidth,
            timescale,
            start_number,
        };
        return number_only(xml, mpd, tmpl, &t, ended, now_ms).map(|p| (p, timescale));
    };
    let timeline_end = scope[timeline_at..]
        .find("</SegmentTimeline>")
        .map_or(scope.len(), |e| timeline_at + e);
    let timeline = &scope[timeline_at..timeline_end];
    let mut segments = Vec::new();
    let mut t = 0u64;
    let mut number = start_number;
    let mut longest = 0u64;
    for (_, s) in tags(timeline, "S") {
        if let Some(v) = attr(s, "t") {
            t = v.parse().map_err(|_| format!("bad S@t {v:?}"))?;
        }
        let d: u64 = attr(s, "d")
            .ok_or("S without @d")?
            .parse()
            .map_err(|_| "bad S@d")?;
        if d == 0 {
            return Err("S@d is 0".into());
        }
        let r: i64 = attr(s, "r").unwrap_or("0").parse().map_err(|_| "bad S@r")?;
        // r = -1 (repeat to the next S or the period end): once, here.
        for _ in 0..=r.max(0) {
            let duration_us = d * 1_000_000 / timescale;
            longest = longest.max(duration_us);
            segments.push(Segment {
                seq: number,
                duration_us,
                uri: fill(media, rep_id, bandwidth, number, t),
            });
            number += 1;
            t += d;
            if segments.len() > 100_000 {
                return Err("more than 100,000 segments listed".into());
            }
        }
    }
    if segments.is_empty() {
        return Err("empty SegmentTimeline".into());
    }
    Ok((
        MediaPlaylist {
            target_us: longest,
            media_sequence: start_number,
            segments,
            ended,
            map: None,
        },
        timescale,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spate's shape (abridged from a live run).
    const SPATE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" minimumUpdatePeriod="PT2.000S">
  <Period id="0" start="PT0S">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4">
      <Representation id="v0" codecs="avc1.42c01e" bandwidth="550280" width="640" height="360">
        <SegmentTemplate timescale="1000" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s" startNumber="1796169600">
          <SegmentTimeline>
            <S t="23" d="2000" r="3"/>
            <S d="1500"/>
          </SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4">
      <Representation id="a1" bandwidth="74101">
        <SegmentTemplate timescale="44100" media="$RepresentationID$/$Number$.m4s" startNumber="7">
          <SegmentTimeline><S t="1014" d="89088"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>"#;

    #[test]
    fn spate_manifest() {
        let p = parse(SPATE.as_bytes()).unwrap();
        assert_eq!(p.segments.len(), 5);
        assert_eq!(p.media_sequence, 1_796_169_600);
        assert_eq!(p.segments[0].uri, "v0/1796169600.m4s");
        assert_eq!(p.segments[4].seq, 1_796_169_604);
        assert_eq!(p.segments[4].duration_us, 1_500_000);
        assert_eq!(p.target_us, 2_000_000);
        assert!(!p.ended);
        assert_eq!(parse_with_timescale(SPATE.as_bytes()).unwrap().1, 1000);
    }

    #[test]
    fn set_level_template_time_and_formats() {
        let mpd = r#"<MPD type='static'><Period>
          <AdaptationSet mimeType="audio/mp4"><Representation id="a"/></AdaptationSet>
          <AdaptationSet mimeType="video/mp4">
            <SegmentTemplate timescale="90000" media="chunk-$RepresentationID$-$Time$-$Number%05d$-$Bandwidth$$$.m4s">
              <SegmentTimeline><S t="900" d="180000" r="1"/></SegmentTimeline>
            </SegmentTemplate>
            <Representation id="hd" bandwidth="3000000"/>
          </AdaptationSet></Period></MPD>"#;
        let p = parse(mpd.as_bytes()).unwrap();
        assert!(p.ended);
        assert_eq!(p.media_sequence, 1);
        assert_eq!(p.segments[0].uri, "chunk-hd-900-00001-3000000$.m4s");
        assert_eq!(p.segments[1].uri, "chunk-hd-180900-00002-3000000$.m4s");
        assert_eq!(p.segments[1].duration_us, 2_000_000);
    }

    /// The shape ffmpeg's `-f dash -use_timeline 0 -window_size 3` writes
    /// while live (2026-12-02, ffmpeg 5.1).
    const FFMPEG_NUMBERS: &str = r#"<MPD type="dynamic" minimumUpdatePeriod="PT500S"
        availabilityStartTime="2026-12-02T15:08:20.265Z" timeShiftBufferDepth="PT6.0S">
      <Period id="0" start="PT0.0S">
        <AdaptationSet id="0" contentType="video" startWithSAP="1">
          <Representation id="0" mimeType="video/mp4" bandwidth="832012">
            <SegmentTemplate timescale="1000000" duration="2000000" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
            </SegmentTemplate>
          </Representation>
        </AdaptationSet>
        <AdaptationSet id="1" contentType="audio"><Representation id="1" bandwidth="69000">
          <SegmentTemplate timescale="1000000" duration="2000000" media="a-$Number$.m4s" startNumber="1"/>
        </Representation></AdaptationSet>
      </Period></MPD>"#;

    #[test]
    fn number_only_templates_follow_the_wall_clock() {
        let ast = iso_datetime_ms("2026-12-02T15:08:20.265Z").unwrap();
        // 12.7 s in: segments 1..=6 are complete, 7 is being written; the
        // 6 s time-shift buffer lists the newest 3.
        let (p, ts) = parse_at(FFMPEG_NUMBERS.as_bytes(), ast + 12_700).unwrap();
        assert_eq!(ts, 1_000_000);
        let seqs: Vec<u64> = p.segments.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![4, 5, 6]);
        assert_eq!(p.media_sequence, 4);
        assert_eq!(p.target_us, 2_000_000);
        assert_eq!(p.segments[2].uri, "chunk-stream0-00006.m4s");
        assert!(!p.ended);
        // 2.1 s in: only the first.
        let (p, _) = parse_at(FFMPEG_NUMBERS.as_bytes(), ast + 2_100).unwrap();
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].uri, "chunk-stream0-00001.m4s");
        // Before the first segment is complete: an error that says why.
        let e = parse_at(FFMPEG_NUMBERS.as_bytes(), ast + 1_000).unwrap_err();
        assert!(e.contains("no segment available yet"), "{e}");
        // An hour in, without a time-shift buffer: the default 5.
        let no_tsbd = FFMPEG_NUMBERS.replace("timeShiftBufferDepth=\"PT6.0S\"", "");
        let (p, _) = parse_at(no_tsbd.as_bytes(), ast + 3_600_000).unwrap();
        let seqs: Vec<u64> = p.segments.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (1796..=1800).collect::<Vec<_>>());
        // A Period that starts later shifts the edge.
        let late = FFMPEG_NUMBERS.replace("start=\"PT0.0S\"", "start=\"PT10S\"");
        let (p, _) = parse_at(late.as_bytes(), ast + 12_700).unwrap();
        assert_eq!(p.segments.last().map(|s| s.seq), Some(1));
        // Once ffmpeg ends it the MPD is static: every segment.
        let done = FFMPEG_NUMBERS.replace(
            "type=\"dynamic\"",
            "type=\"static\" mediaPresentationDuration=\"PT7.0S\"",
        );
        let (p, _) = parse_at(done.as_bytes(), 0).unwrap();
        assert_eq!(p.segments.len(), 4);
        assert!(p.ended);
    }

    #[test]
    fn iso_times_and_durations() {
        assert_eq!(iso_datetime_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            iso_datetime_ms("2000-03-01T00:00:00Z").unwrap(),
            951_868_800_000
        );
        assert_eq!(
            iso_datetime_ms("2026-12-02T16:08:20.265+01:00").unwrap(),
            iso_datetime_ms("2026-12-02T15:08:20.265Z").unwrap()
        );
        assert_eq!(
            iso_datetime_ms("2026-12-02T15:08:20").unwrap(),
            iso_datetime_ms("2026-12-02T15:08:20.000Z").unwrap()
        );
        for bad in [
            "",
            "2026-12-02",
            "2026-13-02T00:00:00Z",
            "x-y-zT1:2:3Z",
            "2026-12-02T25:00:00Z",
        ] {
            assert!(iso_datetime_ms(bad).is_err(), "{bad}");
        }
        assert_eq!(iso_duration_us("PT2.0S").unwrap(), 2_000_000);
        assert_eq!(iso_duration_us("PT1H2M3.5S").unwrap(), 3_723_500_000);
        assert_eq!(iso_duration_us("P1DT1S").unwrap(), 86_401_000_000);
        for bad in ["", "2S", "PT", "P1Y", "PT1X", "PT-1S", "PT1.2.3S", "P1S"] {
            assert!(iso_duration_us(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unsupported_and_broken() {
        let e = parse(b"<MPD><Period><AdaptationSet contentType=\"video\"><Representation id=\"v\"><SegmentTemplate media=\"$Number$.m4s\"/></Representation></AdaptationSet></Period></MPD>").unwrap_err();
        assert!(e.contains("SegmentTimeline"), "{e}");
        let e = parse(b"<MPD type=\"dynamic\"><Period><AdaptationSet contentType=\"video\"><Representation id=\"v\"><SegmentTemplate media=\"$Number$.m4s\" duration=\"2\"/></Representation></AdaptationSet></Period></MPD>").unwrap_err();
        assert!(e.contains("availabilityStartTime"), "{e}");
        assert!(parse(b"<html></html>").is_err());
        assert!(parse(b"<MPD></MPD>").is_err());
        assert!(parse(&[0xFF, 0xFE]).is_err());
        let zero = SPATE.replace("d=\"2000\"", "d=\"0\"");
        assert!(parse(zero.as_bytes()).is_err());
    }
}
