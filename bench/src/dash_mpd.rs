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
//! Not handled: number-only templates (`duration` without a timeline: a
//! player computes the live edge from `availabilityStartTime` and its
//! clock), `SegmentList`, `BaseURL`, multi-period manifests. The init
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

/// Parse a manifest into the segments of its first video Representation.
pub fn parse(body: &[u8]) -> Result<MediaPlaylist, String> {
    parse_with_timescale(body).map(|(p, _)| p)
}

/// [`parse`], and the Representation's `SegmentTemplate@timescale` (the
/// track timescale of its fMP4 segments).
pub fn parse_with_timescale(body: &[u8]) -> Result<(MediaPlaylist, u64), String> {
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
    let timeline_at = scope.find("<SegmentTimeline").ok_or(
        "SegmentTemplate without SegmentTimeline (number-only live templates are not supported)",
    )?;
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

    #[test]
    fn unsupported_and_broken() {
        let e = parse(b"<MPD><Period><AdaptationSet contentType=\"video\"><Representation id=\"v\"><SegmentTemplate media=\"$Number$.m4s\" duration=\"2\"/></Representation></AdaptationSet></Period></MPD>").unwrap_err();
        assert!(e.contains("SegmentTimeline"), "{e}");
        assert!(parse(b"<html></html>").is_err());
        assert!(parse(b"<MPD></MPD>").is_err());
        assert!(parse(&[0xFF, 0xFE]).is_err());
        let zero = SPATE.replace("d=\"2000\"", "d=\"0\"");
        assert!(parse(zero.as_bytes()).is_err());
    }
}
