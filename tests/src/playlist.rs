//! HLS playlists and DASH MPDs as independent parsers read them: the PyPI
//! `m3u8` package (`m3u8.parse(text, strict=True)` then `m3u8.loads(text)`)
//! and `mpegdash` (`MPEGDASHParser.parse(text)`), run with the venv python
//! ([`crate::venv_python`]) on `playlist_report.py`, which prints what they
//! found as JSON. A document the parser rejects is an `Err` carrying the
//! parser's own exception text.
//!
//! Also here: resolving the URIs a playlist carries against the playlist's
//! URL ([`resolve_url`]), and expanding a DASH `SegmentTemplate` (with or
//! without a `SegmentTimeline`) into segment URLs. Tests take media playlist,
//! init and segment URLs from the documents, never from a hard-coded layout.
use std::process::Command;
use std::time::Duration;

use crate::media::run_with_timeout;
use crate::{CurlResponse, Json, ScratchDir, curl, venv_python};

/// The parser script (run with `python3 -c`).
const REPORT_PY: &str = include_str!("playlist_report.py");

/// Run the report script on `text`; the JSON it printed, or the parser's
/// error.
fn report(kind: &str, text: &str) -> Result<Json, String> {
    let python = venv_python();
    let dir = ScratchDir::new(&format!("{kind}-parse"));
    let file = dir
        .path()
        .join(if kind == "hls" { "doc.m3u8" } else { "doc.mpd" });
    std::fs::write(&file, text).expect("write document for the parser");
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(REPORT_PY).arg(kind).arg(&file);
    let out = run_with_timeout(cmd, dir.path(), "parse", Duration::from_secs(30));
    let line = out.stdout.lines().last().unwrap_or("");
    let json = Json::parse(line).map_err(|e| {
        format!(
            "the {kind} parser printed no JSON ({e}); exit {:?} after {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status, out.elapsed, out.stdout, out.stderr
        )
    })?;
    if let Some(err) = json.get("error").and_then(Json::as_str) {
        let which = if kind == "hls" {
            "m3u8 (PyPI)"
        } else {
            "mpegdash (PyPI)"
        };
        return Err(format!(
            "{which} rejects the document: {err}\n{}\n---- document ({} bytes) ----\n{}\n---- end ----",
            json.get("traceback")
                .and_then(Json::as_str)
                .unwrap_or_default(),
            text.len(),
            abbreviate_doc(text)
        ));
    }
    Ok(json)
}

fn abbreviate_doc(text: &str) -> String {
    crate::binary::abbreviate(text, 60, 20)
}

fn str_of(v: &Json, k: &str) -> Option<String> {
    v.get(k).and_then(Json::as_str).map(str::to_string)
}

fn num_of(v: &Json, k: &str) -> Option<f64> {
    v.get(k).and_then(Json::as_f64)
}

fn u64_of(v: &Json, k: &str) -> Option<u64> {
    num_of(v, k).filter(|n| *n >= 0.0).map(|n| n as u64)
}

fn bool_of(v: &Json, k: &str) -> bool {
    v.get(k).and_then(Json::as_bool).unwrap_or(false)
}

fn list_of<'a>(v: &'a Json, k: &str) -> &'a [Json] {
    v.get(k).and_then(Json::as_array).unwrap_or(&[])
}

fn strings_of(v: &Json, k: &str) -> Vec<String> {
    list_of(v, k)
        .iter()
        .filter_map(Json::as_str)
        .map(str::to_string)
        .collect()
}

/// An HLS playlist (multivariant or media) as `m3u8` read it.
#[derive(Debug, Clone)]
pub struct HlsPlaylist {
    /// A multivariant ("master") playlist: `EXT-X-STREAM-INF` entries.
    pub is_variant: bool,
    /// `EXT-X-VERSION`.
    pub version: Option<u32>,
    /// `EXT-X-TARGETDURATION`, seconds.
    pub target_duration: Option<f64>,
    /// `EXT-X-MEDIA-SEQUENCE` (m3u8 says 0 when absent from a media
    /// playlist).
    pub media_sequence: Option<u64>,
    /// `EXT-X-ENDLIST` present.
    pub is_endlist: bool,
    /// `EXT-X-PLAYLIST-TYPE` (`vod`, `event`), lower case.
    pub playlist_type: Option<String>,
    /// Media segments, in order.
    pub segments: Vec<HlsSegment>,
    /// Number of `EXT-X-DISCONTINUITY` tags.
    pub discontinuities: usize,
    /// Variant streams (`EXT-X-STREAM-INF` + URI).
    pub variants: Vec<HlsVariant>,
    /// Renditions (`EXT-X-MEDIA`).
    pub media: Vec<HlsMedia>,
    /// `EXT-X-MAP` URIs, as written.
    pub segment_maps: Vec<String>,
    /// Everything the parser reported (see `playlist_report.py`).
    pub report: Json,
    /// The playlist text.
    pub text: String,
}

/// One media segment of an HLS playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct HlsSegment {
    /// URI as written (relative to the playlist, usually).
    pub uri: String,
    /// `EXTINF` duration, seconds.
    pub duration: f64,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Its media sequence number.
    pub media_sequence: Option<u64>,
    /// The `EXT-X-MAP` URI in force for it.
    pub init_uri: Option<String>,
}

/// One `EXT-X-STREAM-INF` variant.
#[derive(Debug, Clone, PartialEq)]
pub struct HlsVariant {
    /// Media playlist URI as written.
    pub uri: String,
    /// `BANDWIDTH`.
    pub bandwidth: Option<u64>,
    /// `CODECS`, e.g. `avc1.64001e,mp4a.40.2`.
    pub codecs: Option<String>,
    /// `RESOLUTION`, e.g. `640x360`.
    pub resolution: Option<String>,
    /// `AUDIO` group id.
    pub audio: Option<String>,
}

/// One `EXT-X-MEDIA` rendition.
#[derive(Debug, Clone, PartialEq)]
pub struct HlsMedia {
    /// `TYPE`: `AUDIO`, `VIDEO`, `SUBTITLES`, `CLOSED-CAPTIONS`.
    pub media_type: String,
    /// `GROUP-ID`.
    pub group_id: Option<String>,
    /// `NAME`.
    pub name: Option<String>,
    /// `URI` as written (none for renditions inside the variant).
    pub uri: Option<String>,
    /// `DEFAULT` (`YES`/`NO`).
    pub default: Option<String>,
    /// `CHANNELS`.
    pub channels: Option<String>,
}

impl HlsPlaylist {
    /// Parse with `m3u8` (strict: syntax errors and tags that need a higher
    /// `EXT-X-VERSION` are errors).
    pub fn parse(text: &str) -> Result<HlsPlaylist, String> {
        let r = report("hls", text)?;
        let segments = list_of(&r, "segments")
            .iter()
            .map(|s| HlsSegment {
                uri: str_of(s, "uri").unwrap_or_default(),
                duration: num_of(s, "duration").unwrap_or(0.0),
                discontinuity: bool_of(s, "discontinuity"),
                media_sequence: u64_of(s, "media_sequence"),
                init_uri: str_of(s, "init_uri"),
            })
            .collect();
        let variants = list_of(&r, "playlists")
            .iter()
            .map(|p| HlsVariant {
                uri: str_of(p, "uri").unwrap_or_default(),
                bandwidth: u64_of(p, "bandwidth"),
                codecs: str_of(p, "codecs"),
                resolution: str_of(p, "resolution"),
                audio: str_of(p, "audio"),
            })
            .collect();
        let media = list_of(&r, "media")
            .iter()
            .map(|m| HlsMedia {
                media_type: str_of(m, "type").unwrap_or_default(),
                group_id: str_of(m, "group_id"),
                name: str_of(m, "name"),
                uri: str_of(m, "uri"),
                default: str_of(m, "default"),
                channels: str_of(m, "channels"),
            })
            .collect();
        let segment_maps = list_of(&r, "segment_map")
            .iter()
            .filter_map(|m| str_of(m, "uri"))
            .collect();
        Ok(HlsPlaylist {
            is_variant: bool_of(&r, "is_variant"),
            version: u64_of(&r, "version").map(|v| v as u32),
            target_duration: num_of(&r, "target_duration"),
            media_sequence: u64_of(&r, "media_sequence"),
            is_endlist: bool_of(&r, "is_endlist"),
            playlist_type: str_of(&r, "playlist_type"),
            segments,
            discontinuities: u64_of(&r, "discontinuities").unwrap_or(0) as usize,
            variants,
            media,
            segment_maps,
            report: r,
            text: text.to_string(),
        })
    }

    /// Total `EXTINF` duration, seconds.
    pub fn duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }
}

/// A DASH MPD as `mpegdash` read it.
#[derive(Debug, Clone)]
pub struct DashMpd {
    /// `MPD@type`: `static` or `dynamic` (None if absent: static).
    pub mpd_type: Option<String>,
    /// `MPD@profiles`.
    pub profiles: Option<String>,
    /// `MPD@availabilityStartTime`.
    pub availability_start_time: Option<String>,
    /// `MPD@minimumUpdatePeriod`.
    pub minimum_update_period: Option<String>,
    /// `MPD@timeShiftBufferDepth`.
    pub time_shift_buffer_depth: Option<String>,
    /// `MPD@mediaPresentationDuration`.
    pub media_presentation_duration: Option<String>,
    /// `UTCTiming` elements: (`schemeIdUri`, `value`).
    pub utc_timings: Vec<(String, String)>,
    /// `MPD/BaseURL` values.
    pub base_urls: Vec<String>,
    /// Periods, in order.
    pub periods: Vec<DashPeriod>,
    /// Everything the parser reported (see `playlist_report.py`).
    pub report: Json,
    /// The MPD text.
    pub text: String,
}

/// One `Period`.
#[derive(Debug, Clone)]
pub struct DashPeriod {
    /// `@id`.
    pub id: Option<String>,
    /// `@start`.
    pub start: Option<String>,
    /// `Period/BaseURL` values.
    pub base_urls: Vec<String>,
    /// Adaptation sets, in order.
    pub adaptation_sets: Vec<DashAdaptationSet>,
}

/// One `AdaptationSet`.
#[derive(Debug, Clone)]
pub struct DashAdaptationSet {
    /// `@id`.
    pub id: Option<u64>,
    /// `@contentType` (`video`, `audio`).
    pub content_type: Option<String>,
    /// `@mimeType` of the set itself (representations may carry their own).
    pub mime_type: Option<String>,
    /// `@codecs` of the set itself.
    pub codecs: Option<String>,
    /// `AdaptationSet/BaseURL` values.
    pub base_urls: Vec<String>,
    /// Representations, with what they inherit from the set filled in.
    pub representations: Vec<DashRepresentation>,
}

impl DashAdaptationSet {
    /// The set's mime type, or its first representation's.
    pub fn mime(&self) -> Option<&str> {
        self.mime_type
            .as_deref()
            .or_else(|| self.representations.first()?.mime_type.as_deref())
    }

    /// The set's codecs, or its first representation's.
    pub fn codecs(&self) -> Option<&str> {
        self.codecs
            .as_deref()
            .or_else(|| self.representations.first()?.codecs.as_deref())
    }
}

/// One `Representation`, with mime type, codecs, size and segment template
/// inherited from its adaptation set (and period) where it has none.
#[derive(Debug, Clone)]
pub struct DashRepresentation {
    /// `@id` (`$RepresentationID$`).
    pub id: String,
    /// `@mimeType`.
    pub mime_type: Option<String>,
    /// `@codecs`.
    pub codecs: Option<String>,
    /// `@bandwidth` (`$Bandwidth$`).
    pub bandwidth: Option<u64>,
    /// `@width`.
    pub width: Option<u32>,
    /// `@height`.
    pub height: Option<u32>,
    /// `@audioSamplingRate`.
    pub audio_sampling_rate: Option<String>,
    /// `Representation/BaseURL` values.
    pub base_urls: Vec<String>,
    /// The `SegmentTemplate` in force (own, else the set's, else the
    /// period's).
    pub template: Option<DashTemplate>,
}

/// A `SegmentTemplate`.
#[derive(Debug, Clone, PartialEq)]
pub struct DashTemplate {
    /// `@media`.
    pub media: Option<String>,
    /// `@initialization`.
    pub initialization: Option<String>,
    /// `@timescale` (1 if absent).
    pub timescale: u64,
    /// `@duration` (in timescale units; for templates without a timeline).
    pub duration: Option<u64>,
    /// `@startNumber` (1 if absent).
    pub start_number: u64,
    /// `SegmentTimeline/S` entries, if there is a timeline.
    pub timeline: Option<Vec<TimelineEntry>>,
}

/// One `S` element: `@t` (start, optional), `@d` (duration), `@r` (repeat
/// count, optional; -1 = until the next S or the end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelineEntry {
    /// `@t`.
    pub t: Option<u64>,
    /// `@d`.
    pub d: u64,
    /// `@r`.
    pub r: Option<i64>,
}

/// One segment a template + timeline describe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DashSegment {
    /// `$Number$`.
    pub number: u64,
    /// `$Time$` (timescale units).
    pub time: u64,
    /// Duration (timescale units).
    pub duration: u64,
}

impl DashTemplate {
    /// The segments of the timeline, in order: numbers from `startNumber`,
    /// times from each `S@t` (or the previous end). `r = -1` (repeat until
    /// the next `S`'s `t`) is expanded up to that `t`; a trailing `r = -1`
    /// counts as no repeat. Empty if there is no timeline.
    pub fn timeline_segments(&self) -> Vec<DashSegment> {
        let Some(tl) = &self.timeline else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut number = self.start_number;
        let mut time = 0u64;
        for (i, s) in tl.iter().enumerate() {
            if let Some(t) = s.t {
                time = t;
            }
            let repeats = match s.r {
                Some(r) if r >= 0 => r as u64,
                Some(_) => match tl.get(i + 1).and_then(|n| n.t) {
                    Some(next) if s.d > 0 && next > time => (next - time) / s.d - 1,
                    _ => 0,
                },
                None => 0,
            };
            for _ in 0..=repeats {
                out.push(DashSegment {
                    number,
                    time,
                    duration: s.d,
                });
                number += 1;
                time += s.d;
            }
        }
        out
    }
}

impl DashRepresentation {
    /// Expand a template string for this representation: `$RepresentationID$`,
    /// `$Bandwidth$`, `$Number$`, `$Time$` (each with an optional `%0Nd`
    /// width) and `$$`.
    pub fn expand(&self, template: &str, number: u64, time: u64) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('$') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('$') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let ident = &after[..end];
            rest = &after[end + 1..];
            if ident.is_empty() {
                out.push('$');
                continue;
            }
            let (name, width) = match ident.split_once('%') {
                Some((n, fmt)) => {
                    let w = fmt
                        .trim_start_matches('0')
                        .trim_end_matches('d')
                        .parse::<usize>()
                        .unwrap_or(0);
                    (n, w)
                }
                None => (ident, 0),
            };
            let value = match name {
                "RepresentationID" => self.id.clone(),
                "Bandwidth" => self.bandwidth.unwrap_or(0).to_string(),
                "Number" => number.to_string(),
                "Time" => time.to_string(),
                other => format!("${other}$"),
            };
            out.push_str(&format!("{value:0>width$}"));
        }
        out.push_str(rest);
        out
    }

    /// The base URL of this representation's segments: `mpd_url` resolved
    /// through the first `BaseURL` of the MPD, the period, the adaptation set
    /// and the representation (those present).
    pub fn base_url(
        &self,
        mpd: &DashMpd,
        period: &DashPeriod,
        set: &DashAdaptationSet,
        mpd_url: &str,
    ) -> String {
        let mut base = mpd_url.to_string();
        for b in [
            mpd.base_urls.first(),
            period.base_urls.first(),
            set.base_urls.first(),
            self.base_urls.first(),
        ]
        .into_iter()
        .flatten()
        {
            base = resolve_url(&base, b);
        }
        base
    }

    /// Absolute URL of the initialization segment (None without a template
    /// or `@initialization`).
    pub fn init_url(&self, base: &str) -> Option<String> {
        let t = self.template.as_ref()?;
        let init = t.initialization.as_ref()?;
        Some(resolve_url(base, &self.expand(init, t.start_number, 0)))
    }

    /// Absolute URLs of the media segments the timeline lists (empty without
    /// a template, `@media` or timeline).
    pub fn segment_urls(&self, base: &str) -> Vec<String> {
        let Some(t) = &self.template else {
            return Vec::new();
        };
        let Some(media) = &t.media else {
            return Vec::new();
        };
        t.timeline_segments()
            .iter()
            .map(|s| resolve_url(base, &self.expand(media, s.number, s.time)))
            .collect()
    }
}

impl DashMpd {
    /// Parse with `mpegdash`.
    pub fn parse(text: &str) -> Result<DashMpd, String> {
        let r = report("dash", text)?;
        let template = |v: Option<&Json>| -> Option<DashTemplate> {
            let t = v.filter(|t| !matches!(t, Json::Null))?;
            let timeline = t.get("timeline").and_then(Json::as_array).map(|ss| {
                ss.iter()
                    .map(|s| TimelineEntry {
                        t: u64_of(s, "t"),
                        d: u64_of(s, "d").unwrap_or(0),
                        r: num_of(s, "r").map(|r| r as i64),
                    })
                    .collect()
            });
            Some(DashTemplate {
                media: str_of(t, "media"),
                initialization: str_of(t, "initialization"),
                timescale: u64_of(t, "timescale").unwrap_or(1),
                duration: u64_of(t, "duration"),
                start_number: u64_of(t, "start_number").unwrap_or(1),
                timeline,
            })
        };
        let periods = list_of(&r, "periods")
            .iter()
            .map(|p| DashPeriod {
                id: str_of(p, "id"),
                start: str_of(p, "start"),
                base_urls: strings_of(p, "base_urls"),
                adaptation_sets: list_of(p, "adaptation_sets")
                    .iter()
                    .map(|a| DashAdaptationSet {
                        id: u64_of(a, "id"),
                        content_type: str_of(a, "content_type"),
                        mime_type: str_of(a, "mime_type"),
                        codecs: str_of(a, "codecs"),
                        base_urls: strings_of(a, "base_urls"),
                        representations: list_of(a, "representations")
                            .iter()
                            .map(|rep| DashRepresentation {
                                id: str_of(rep, "id").unwrap_or_default(),
                                mime_type: str_of(rep, "mime_type"),
                                codecs: str_of(rep, "codecs"),
                                bandwidth: u64_of(rep, "bandwidth"),
                                width: u64_of(rep, "width").map(|w| w as u32),
                                height: u64_of(rep, "height").map(|h| h as u32),
                                audio_sampling_rate: str_of(rep, "audio_sampling_rate"),
                                base_urls: strings_of(rep, "base_urls"),
                                template: template(rep.get("segment_template")),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let utc_timings = list_of(&r, "utc_timings")
            .iter()
            .map(|u| {
                (
                    str_of(u, "scheme_id_uri").unwrap_or_default(),
                    str_of(u, "value").unwrap_or_default(),
                )
            })
            .collect();
        Ok(DashMpd {
            mpd_type: str_of(&r, "type"),
            profiles: str_of(&r, "profiles"),
            availability_start_time: str_of(&r, "availability_start_time"),
            minimum_update_period: str_of(&r, "minimum_update_period"),
            time_shift_buffer_depth: str_of(&r, "time_shift_buffer_depth"),
            media_presentation_duration: str_of(&r, "media_presentation_duration"),
            utc_timings,
            base_urls: strings_of(&r, "base_urls"),
            periods,
            report: r,
            text: text.to_string(),
        })
    }

    /// Every (period, adaptation set) pair, in order.
    pub fn adaptation_sets(&self) -> impl Iterator<Item = (&DashPeriod, &DashAdaptationSet)> {
        self.periods
            .iter()
            .flat_map(|p| p.adaptation_sets.iter().map(move |a| (p, a)))
    }
}

/// `url` fetched with curl; panics unless the transfer worked and the status
/// is 200, or the body is not UTF-8.
pub fn fetch_text(scratch: &std::path::Path, url: &str) -> (CurlResponse, String) {
    let r = curl(scratch, &["--max-time", "10"], url);
    r.assert_status(200);
    let text = String::from_utf8(r.body.clone())
        .unwrap_or_else(|e| panic!("GET {url}: the body is not UTF-8: {e}"));
    (r, text)
}

/// GET `url` (200 required) and parse it as an HLS playlist; panics with
/// the parser's error and the document if it does not parse.
pub fn fetch_hls(scratch: &std::path::Path, url: &str) -> (CurlResponse, HlsPlaylist) {
    let (r, text) = fetch_text(scratch, url);
    let p = HlsPlaylist::parse(&text).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r, p)
}

/// GET `url` (200 required) and parse it as a DASH MPD; panics with the
/// parser's error and the document if it does not parse.
pub fn fetch_dash(scratch: &std::path::Path, url: &str) -> (CurlResponse, DashMpd) {
    let (r, text) = fetch_text(scratch, url);
    let p = DashMpd::parse(&text).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (r, p)
}

/// Resolve a URI reference found in a playlist against the playlist's
/// absolute URL (RFC 3986 section 5.2, enough for playlists): absolute URLs
/// stay as they are, `//host/…` takes the base's scheme, `/path` the base's
/// origin, `?query` the base's path, anything else is merged with the
/// base's directory; `.` and `..` segments are removed.
pub fn resolve_url(base: &str, reference: &str) -> String {
    let reference = reference.trim();
    let has_scheme = reference.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if has_scheme {
        return reference.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    if let Some(net) = reference.strip_prefix("//") {
        return format!("{scheme}://{net}");
    }
    let rest = rest.split('#').next().unwrap_or("");
    let (authority, base_path_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let base_path = base_path_query.split('?').next().unwrap_or("/");
    let origin = format!("{scheme}://{authority}");
    let reference = reference.split('#').next().unwrap_or("");
    if reference.is_empty() {
        return format!("{origin}{base_path_query}");
    }
    if reference.starts_with('?') {
        return format!("{origin}{base_path}{reference}");
    }
    let (ref_path, query) = match reference.find('?') {
        Some(i) => (&reference[..i], &reference[i..]),
        None => (reference, ""),
    };
    let merged = if ref_path.starts_with('/') {
        ref_path.to_string()
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{}{ref_path}", if dir.is_empty() { "/" } else { dir })
    };
    format!("{origin}{}{query}", remove_dot_segments(&merged))
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').collect();
    let last = segs.len() - 1;
    for (i, seg) in segs.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

#[cfg(test)]
mod tests {
    use super::{DashRepresentation, DashTemplate, TimelineEntry, resolve_url};

    #[test]
    fn resolves_playlist_uris() {
        let base = "http://127.0.0.1:8080/hls/live+a/index.m3u8?x=1";
        assert_eq!(
            resolve_url(base, "video/index.m3u8"),
            "http://127.0.0.1:8080/hls/live+a/video/index.m3u8"
        );
        assert_eq!(
            resolve_url(base, "seg12.ts?t=3"),
            "http://127.0.0.1:8080/hls/live+a/seg12.ts?t=3"
        );
        assert_eq!(
            resolve_url(base, "../other/a.ts"),
            "http://127.0.0.1:8080/hls/other/a.ts"
        );
        assert_eq!(
            resolve_url(base, "/abs/x.m4s"),
            "http://127.0.0.1:8080/abs/x.m4s"
        );
        assert_eq!(
            resolve_url(base, "./a/./b/../c.ts"),
            "http://127.0.0.1:8080/hls/live+a/a/c.ts"
        );
        assert_eq!(
            resolve_url(base, "http://127.0.0.2:1/y"),
            "http://127.0.0.2:1/y"
        );
        assert_eq!(resolve_url(base, "//h:2/z"), "http://h:2/z");
        assert_eq!(
            resolve_url(base, "?y=2"),
            "http://127.0.0.1:8080/hls/live+a/index.m3u8?y=2"
        );
        assert_eq!(resolve_url("http://h:1", "a.ts"), "http://h:1/a.ts");
        assert_eq!(
            resolve_url("http://h:1/cmaf/s/", "../../../../x"),
            "http://h:1/x"
        );
    }

    #[test]
    fn expands_dash_templates_and_timelines() {
        let rep = DashRepresentation {
            id: "v0".into(),
            mime_type: None,
            codecs: None,
            bandwidth: Some(1000),
            width: None,
            height: None,
            audio_sampling_rate: None,
            base_urls: vec![],
            template: Some(DashTemplate {
                media: Some(
                    "chunk-$RepresentationID$-$Number%05d$-$Time$-$Bandwidth$$$.m4s".into(),
                ),
                initialization: Some("init-$RepresentationID$.mp4".into()),
                timescale: 90000,
                duration: None,
                start_number: 7,
                timeline: Some(vec![
                    TimelineEntry {
                        t: Some(1000),
                        d: 10,
                        r: Some(2),
                    },
                    TimelineEntry {
                        t: None,
                        d: 5,
                        r: Some(-1),
                    },
                    TimelineEntry {
                        t: Some(1050),
                        d: 20,
                        r: None,
                    },
                ]),
            }),
        };
        let segs = rep.template.as_ref().unwrap().timeline_segments();
        let times: Vec<(u64, u64)> = segs.iter().map(|s| (s.number, s.time)).collect();
        assert_eq!(
            times,
            vec![
                (7, 1000),
                (8, 1010),
                (9, 1020),
                (10, 1030),
                (11, 1035),
                (12, 1040),
                (13, 1045),
                (14, 1050)
            ]
        );
        let base = "http://h:1/cmaf/s/index.mpd";
        assert_eq!(
            rep.init_url(base).as_deref(),
            Some("http://h:1/cmaf/s/init-v0.mp4")
        );
        assert_eq!(
            rep.segment_urls(base)[0],
            "http://h:1/cmaf/s/chunk-v0-00007-1000-1000$.m4s"
        );
    }
}
