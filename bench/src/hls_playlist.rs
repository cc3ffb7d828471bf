//! A small, tolerant HLS playlist parser for the HLS bench: just what a
//! viewer needs to follow a live media playlist (`#EXT-X-TARGETDURATION`,
//! `#EXT-X-MEDIA-SEQUENCE`, `#EXTINF` + URI lines, `#EXT-X-ENDLIST`) and to
//! pick the first variant of a multivariant playlist (`#EXT-X-STREAM-INF` +
//! URI). Every other tag is ignored, blank lines and CRLF are fine, and a
//! missing target duration is taken from the longest segment; only a body
//! that does not start with `#EXTM3U` (an HTML error page, say) or a number
//! that does not parse is an error.
//!
//! Also here: where a viewer joins a live playlist ([`start_index`]) and how
//! a URI line becomes a request path ([`resolve`]).

/// One listed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number (`#EXT-X-MEDIA-SEQUENCE` + position).
    pub seq: u64,
    /// `#EXTINF` duration, µs (the target duration when the tag is missing).
    pub duration_us: u64,
    /// The URI line, as written.
    pub uri: String,
    /// Bytes `first..=last` of the URI (DASH `mediaRange`): fetched with a
    /// `Range` request; `None`: the whole resource.
    pub range: Option<ByteRange>,
}

/// An inclusive byte range `(first, last)`, as `Range: bytes=first-last`.
pub type ByteRange = (u64, u64);

/// A media playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlaylist {
    /// `#EXT-X-TARGETDURATION`, µs.
    pub target_us: u64,
    /// `#EXT-X-MEDIA-SEQUENCE` (0 when absent, as RFC 8216 says).
    pub media_sequence: u64,
    /// Listed segments, oldest first.
    pub segments: Vec<Segment>,
    /// `#EXT-X-ENDLIST` seen.
    pub ended: bool,
    /// The initialization segment's URI as written (`#EXT-X-MAP:URI`, a
    /// DASH `initialization`), relative to the playlist; `None`: segments
    /// are self-contained (TS).
    pub map: Option<String>,
    /// The init segment's byte range (DASH `Initialization@range`).
    pub map_range: Option<ByteRange>,
}

/// What a playlist body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playlist {
    /// Segments.
    Media(MediaPlaylist),
    /// Variant URIs, in order.
    Multivariant(Vec<String>),
}

/// Why a body is not a playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaylistError {
    /// The first line is not `#EXTM3U`.
    NotM3u8,
    /// A tag's number did not parse: the line.
    BadNumber(String),
    /// Not UTF-8.
    NotText,
}

impl std::fmt::Display for PlaylistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotM3u8 => write!(f, "not a playlist (no #EXTM3U first line)"),
            Self::BadNumber(l) => write!(f, "bad number in {l:?}"),
            Self::NotText => write!(f, "playlist is not UTF-8"),
        }
    }
}

fn secs_to_us(s: &str, line: &str) -> Result<u64, PlaylistError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| PlaylistError::BadNumber(line.to_string()))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(PlaylistError::BadNumber(line.to_string()));
    }
    Ok((v * 1e6).round() as u64)
}

/// Parse a playlist body.
pub fn parse(body: &[u8]) -> Result<Playlist, PlaylistError> {
    let text = std::str::from_utf8(body).map_err(|_| PlaylistError::NotText)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err(PlaylistError::NotM3u8);
    }
    let mut target_us = None;
    let mut media_sequence = 0u64;
    let mut ended = false;
    let mut map = None;
    let mut uris: Vec<(Option<u64>, String)> = Vec::new();
    let mut variants = Vec::new();
    let mut pending_inf: Option<u64> = None;
    let mut pending_variant = false;
    for line in lines {
        if let Some(tag) = line.strip_prefix('#') {
            if let Some(v) = tag.strip_prefix("EXTINF:") {
                let d = v.split(',').next().unwrap_or("");
                pending_inf = Some(secs_to_us(d, line)?);
            } else if let Some(v) = tag.strip_prefix("EXT-X-TARGETDURATION:") {
                target_us = Some(secs_to_us(v, line)?);
            } else if let Some(v) = tag.strip_prefix("EXT-X-MEDIA-SEQUENCE:") {
                media_sequence = v
                    .trim()
                    .parse()
                    .map_err(|_| PlaylistError::BadNumber(line.to_string()))?;
            } else if tag == "EXT-X-ENDLIST" {
                ended = true;
            } else if let Some(v) = tag.strip_prefix("EXT-X-MAP:") {
                // The first map wins (a later one follows a discontinuity).
                if map.is_none() {
                    map = attr(v, "URI");
                }
            } else if tag.starts_with("EXT-X-STREAM-INF:") {
                pending_variant = true;
            }
            // Anything else (comments, other tags): ignored.
            continue;
        }
        if pending_variant {
            variants.push(line.to_string());
            pending_variant = false;
        } else {
            uris.push((pending_inf.take(), line.to_string()));
        }
    }
    if !variants.is_empty() {
        return Ok(Playlist::Multivariant(variants));
    }
    let target_us = target_us.unwrap_or_else(|| {
        uris.iter()
            .filter_map(|(d, _)| *d)
            .max()
            .unwrap_or(0)
            .div_ceil(1_000_000)
            * 1_000_000
    });
    let segments = uris
        .into_iter()
        .enumerate()
        .map(|(i, (d, uri))| Segment {
            // A lying MEDIA-SEQUENCE near 2^64 must not overflow.
            seq: media_sequence.wrapping_add(i as u64),
            duration_us: d.unwrap_or(target_us),
            uri,
            range: None,
        })
        .collect();
    Ok(Playlist::Media(MediaPlaylist {
        target_us,
        media_sequence,
        segments,
        ended,
        map,
        map_range: None,
    }))
}

/// The value of attribute `name` in an attribute list (`A=1,URI="x"`):
/// quoted strings are unquoted and may hold commas.
pub fn attr(list: &str, name: &str) -> Option<String> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value.to_string());
        }
        rest = next;
    }
    None
}

/// The audio rendition a player of variant `variant` (its URI line, as
/// written) of the multivariant playlist `body` fetches: the variant's
/// `AUDIO` group, its `EXT-X-MEDIA:TYPE=AUDIO` entry with `DEFAULT=YES`
/// (else the group's first) that has a `URI`. `None` when the variant
/// names no group or the group's audio is muxed into the variant (no URI).
pub fn audio_rendition(body: &[u8], variant: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let mut media = Vec::new();
    let mut group = None;
    let mut pending: Option<&str> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA:") {
            media.push(v);
        } else if let Some(v) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending = Some(v);
        } else if !line.starts_with('#')
            && let Some(inf) = pending.take()
            && line == variant
            && group.is_none()
        {
            group = Some(attr(inf, "AUDIO")?);
        }
    }
    let group = group?;
    let in_group: Vec<&str> = media
        .into_iter()
        .filter(|m| {
            attr(m, "TYPE").as_deref() == Some("AUDIO")
                && attr(m, "GROUP-ID").as_deref() == Some(group.as_str())
        })
        .collect();
    let pick = in_group
        .iter()
        .find(|m| attr(m, "DEFAULT").as_deref() == Some("YES"))
        .or(in_group.first())?;
    attr(pick, "URI")
}

/// Where a viewer joins a live playlist, as an index into its segments:
/// the segment holding the point `edge_targets` target durations before the
/// end of the listed media (hls.js's `liveSyncDurationCount`, 3 by
/// default). 0 = the newest segment. `None` for an empty playlist.
pub fn start_index(p: &MediaPlaylist, edge_targets: f64) -> Option<usize> {
    let n = p.segments.len();
    if n == 0 {
        return None;
    }
    let total: u64 = p.segments.iter().map(|s| s.duration_us).sum();
    let back = (edge_targets.max(0.0) * p.target_us as f64) as u64;
    if back == 0 {
        return Some(n - 1);
    }
    let point = total.saturating_sub(back);
    let mut end = 0u64;
    for (i, s) in p.segments.iter().enumerate() {
        end += s.duration_us;
        if end > point {
            return Some(i);
        }
    }
    Some(n - 1)
}

/// The request path for `uri` found in the playlist at `base_path`:
/// relative URIs resolve against the playlist's directory, absolute paths
/// stay, and `http://host/...` URLs keep only their path (the bench talks
/// to one server). `None` for other schemes.
pub fn resolve(base_path: &str, uri: &str) -> Option<String> {
    if let Some(rest) = uri.strip_prefix("http://") {
        return Some(match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        });
    }
    if uri.contains("://") {
        return None;
    }
    if uri.starts_with('/') {
        return Some(uri.to_string());
    }
    let base = base_path.split(['?', '#']).next().unwrap_or(base_path);
    let dir = match base.rfind('/') {
        Some(i) => &base[..=i],
        None => "/",
    };
    // Fold "./" and "../" segments.
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    let (path, query) = match uri.find('?') {
        Some(i) => (&uri[..i], &uri[i..]),
        None => (uri, ""),
    };
    let segs: Vec<&str> = path.split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        match *s {
            "." => {}
            ".." => {
                parts.pop();
            }
            "" if i + 1 < segs.len() => {}
            s => parts.push(s),
        }
    }
    Some(format!("/{}{query}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(body: &str) -> MediaPlaylist {
        match parse(body.as_bytes()).unwrap() {
            Playlist::Media(m) => m,
            o => panic!("not media: {o:?}"),
        }
    }

    /// Found by the `manifests` fuzz target: a media sequence near 2^64
    /// overflowed the segments' numbers.
    #[test]
    fn a_media_sequence_near_the_top_wraps() {
        let p = media(&format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n",
            u64::MAX
        ));
        assert_eq!(p.segments[0].seq, u64::MAX);
        assert_eq!(p.segments[1].seq, 0);
    }

    #[test]
    fn spate_media_playlist() {
        let p = media(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1796000123\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z\n\
             #EXTINF:2.000,\n1796000123.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:1.967,\n1796000124.ts\n",
        );
        assert_eq!(p.target_us, 2_000_000);
        assert_eq!(p.media_sequence, 1_796_000_123);
        assert!(!p.ended);
        assert_eq!(
            p.segments,
            vec![
                Segment {
                    seq: 1_796_000_123,
                    duration_us: 2_000_000,
                    uri: "1796000123.ts".into(),
                    range: None,
                },
                Segment {
                    seq: 1_796_000_124,
                    duration_us: 1_967_000,
                    uri: "1796000124.ts".into(),
                    range: None,
                },
            ]
        );
    }

    #[test]
    fn nginx_rtmp_playlist_with_crlf_and_odd_spacing() {
        // nginx-rtmp's shape: version 3, sequence, target, EXTINF with a
        // trailing comma, `<name>-<n>.ts`.
        let p = media(
            "#EXTM3U\r\n#EXT-X-VERSION:3\r\n#EXT-X-MEDIA-SEQUENCE:7\r\n#EXT-X-TARGETDURATION:3\r\n\r\n\
             #EXTINF:2.002,\r\nbench-7.ts\r\n#EXTINF: 2.5 ,title here\r\n  bench-8.ts  \r\n",
        );
        assert_eq!(p.target_us, 3_000_000);
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[0].seq, 7);
        assert_eq!(p.segments[0].duration_us, 2_002_000);
        assert_eq!(p.segments[1].duration_us, 2_500_000);
        assert_eq!(p.segments[1].uri, "bench-8.ts");
    }

    #[test]
    fn tolerant_defaults_and_errors() {
        // No target duration: the longest EXTINF, rounded up; no sequence: 0;
        // a URI without EXTINF gets the target duration.
        let p = media("\u{feff}#EXTM3U\n#EXTINF:1.5\na.ts\nb.ts\n#EXT-X-ENDLIST\n");
        assert_eq!(p.target_us, 2_000_000);
        assert_eq!(p.media_sequence, 0);
        assert_eq!(p.segments[1].duration_us, 2_000_000);
        assert!(p.ended);
        assert_eq!(media("#EXTM3U\n").segments.len(), 0);
        assert_eq!(parse(b"<html>404</html>"), Err(PlaylistError::NotM3u8));
        assert_eq!(parse(b""), Err(PlaylistError::NotM3u8));
        assert!(matches!(
            parse(b"#EXTM3U\n#EXTINF:abc,\nx.ts\n"),
            Err(PlaylistError::BadNumber(_))
        ));
        assert!(matches!(
            parse(b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:-1\n"),
            Err(PlaylistError::BadNumber(_))
        ));
        assert_eq!(parse(&[0xff, 0xfe]), Err(PlaylistError::NotText));
    }

    #[test]
    fn init_segment_map() {
        let p = media(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"720@0\"\n\
             #EXTINF:2,\n1.m4s\n#EXT-X-MAP:URI=\"other.mp4\"\n#EXTINF:2,\n2.m4s\n",
        );
        assert_eq!(p.map.as_deref(), Some("init.mp4"));
        assert_eq!(p.segments.len(), 2);
        assert_eq!(media("#EXTM3U\n#EXTINF:2,\na.ts\n").map, None);
        assert_eq!(attr("A=1,URI=\"x,y\",B=2", "URI").as_deref(), Some("x,y"));
        assert_eq!(attr("A=1,B=2", "B").as_deref(), Some("2"));
        assert_eq!(attr("A=1", "URI"), None);
        assert_eq!(attr("URI=\"unterminated", "URI"), None);
    }

    #[test]
    fn audio_rendition_of_a_variant() {
        let body = b"#EXTM3U\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"en/index.m3u8\"\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"aac\",DEFAULT=YES,URI=\"1/index.m3u8\"\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"m\",NAME=\"muxed\",DEFAULT=YES\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1200000,CODECS=\"avc1.42c01e,mp4a.40.2\",AUDIO=\"a\"\n\
            0/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=600000,AUDIO=\"m\"\n\
            low/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=300000\n\
            plain.m3u8\n";
        // DEFAULT=YES wins over the group's first.
        assert_eq!(
            audio_rendition(body, "0/index.m3u8").as_deref(),
            Some("1/index.m3u8")
        );
        // Muxed (no URI), no group, unknown variant: nothing separate to fetch.
        assert_eq!(audio_rendition(body, "low/index.m3u8"), None);
        assert_eq!(audio_rendition(body, "plain.m3u8"), None);
        assert_eq!(audio_rendition(body, "other.m3u8"), None);
        assert_eq!(audio_rendition(b"\xff", "x"), None);
    }

    #[test]
    fn multivariant_first_variant() {
        let body = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
            #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"x\",URI=\"audio.m3u8\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1200000,CODECS=\"avc1.42c01e,mp4a.40.2\",RESOLUTION=640x360\n\
            media.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=500000\nlow/media.m3u8\n";
        assert_eq!(
            parse(body.as_bytes()).unwrap(),
            Playlist::Multivariant(vec!["media.m3u8".into(), "low/media.m3u8".into()])
        );
    }

    fn of(durs_ms: &[u64], target_s: u64) -> MediaPlaylist {
        MediaPlaylist {
            target_us: target_s * 1_000_000,
            media_sequence: 100,
            segments: durs_ms
                .iter()
                .enumerate()
                .map(|(i, &d)| Segment {
                    seq: 100 + i as u64,
                    duration_us: d * 1000,
                    uri: format!("{i}.ts"),
                    range: None,
                })
                .collect(),
            ended: false,
            map: None,
            map_range: None,
        }
    }

    #[test]
    fn live_edge_like_hls_js() {
        // 6 × 2 s: 3 targets back from 12 s is 6 s, inside segment 3.
        let p = of(&[2000; 6], 2);
        assert_eq!(start_index(&p, 3.0), Some(3));
        assert_eq!(start_index(&p, 0.0), Some(5));
        assert_eq!(start_index(&p, 1.0), Some(5));
        assert_eq!(start_index(&p, 1.5), Some(4));
        // Shorter than the edge: the first segment.
        assert_eq!(start_index(&of(&[2000, 2000], 2), 3.0), Some(0));
        assert_eq!(start_index(&of(&[], 2), 3.0), None);
        // Uneven segments: 10 s total, point 4 s falls in [3.5, 5.5).
        assert_eq!(
            start_index(&of(&[1500, 2000, 2000, 2500, 2000], 2), 3.0),
            Some(2)
        );
    }

    #[test]
    fn uri_resolution() {
        assert_eq!(
            resolve("/hls/live+bench/media.m3u8", "1796000123.ts").as_deref(),
            Some("/hls/live+bench/1796000123.ts")
        );
        assert_eq!(
            resolve("/hls/live+bench/index.m3u8", "media.m3u8").as_deref(),
            Some("/hls/live+bench/media.m3u8")
        );
        assert_eq!(
            resolve("/hls/bench.m3u8", "bench-3.ts").as_deref(),
            Some("/hls/bench-3.ts")
        );
        assert_eq!(
            resolve("/a/b/c.m3u8?x=1", "../d/e.ts?t=2").as_deref(),
            Some("/a/d/e.ts?t=2")
        );
        assert_eq!(
            resolve("/a/b/c.m3u8", "./e.ts").as_deref(),
            Some("/a/b/e.ts")
        );
        assert_eq!(resolve("/a/c.m3u8", "/x/y.ts").as_deref(), Some("/x/y.ts"));
        assert_eq!(
            resolve("/a/c.m3u8", "http://127.0.0.1:8080/z/1.ts").as_deref(),
            Some("/z/1.ts")
        );
        assert_eq!(resolve("/a/c.m3u8", "https://cdn/1.ts"), None);
        assert_eq!(resolve("c.m3u8", "1.ts").as_deref(), Some("/1.ts"));
    }
}
