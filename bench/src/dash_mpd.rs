//! A small reader of live DASH manifests for the player-like viewers,
//! turning one Representation into the same [`MediaPlaylist`] the HLS
//! viewers play: [`parse`] / [`parse_with_timescale`] / [`parse_at`] read
//! the first video Representation (the first one of a set that says it is
//! video, by `contentType`/`mimeType` on the AdaptationSet or the
//! Representation; else of the first set that says nothing, else of the
//! first set), [`parse_audio_at`] the first audio one.
//!
//! Segments come from a `SegmentTemplate` or a `SegmentList`, at the
//! Representation, AdaptationSet or Period level; a lower level's
//! attributes and timeline override a higher one's (e.g. `timescale` and
//! the timeline on the set, `media` on the Representation).
//!
//! * `SegmentTemplate` + `SegmentTimeline`: one segment per timeline
//!   entry, numbered from `startNumber`, its URI the `media` template with
//!   `$RepresentationID$`, `$Number$`, `$Time$` and `$Bandwidth$` filled in
//!   (`$$` → `$`; width formats like `$Number%05d$` are honoured). The
//!   target duration is the longest segment, so a viewer re-polls about as
//!   often as `minimumUpdatePeriod` asks for on a 1-segment update period.
//! * Number-only templates (`@duration`, no timeline; ffmpeg's `-f dash
//!   -use_timeline 0` writes them) are read the way a live player reads
//!   them: segment `startNumber + k` covers `[k·D, (k+1)·D)` after the
//!   Period start, and is available once its end has passed on the wall
//!   clock, counted from `availabilityStartTime` (and not past the Period's
//!   end when its duration is known); the list holds the segments of
//!   `timeShiftBufferDepth` (default 5 segments, at most 30) up to the
//!   newest available one. A static MPD lists the Period's duration worth
//!   (`Period@duration`, else `mediaPresentationDuration` less its start).
//! * `SegmentList`: one segment per `<SegmentURL media=…>`, numbered from
//!   `startNumber`, lasting `duration/timescale` or its `SegmentTimeline`
//!   entry, with its `mediaRange` (`A-B`, fetched with `Range: bytes=A-B`);
//!   a `SegmentURL` without `media` is the BaseURL itself. A live list is listed whole (a live packager rewrites
//!   it on every update).
//!
//! The init segment ([`MediaPlaylist::map`]) is `SegmentTemplate@
//! initialization` (filled like `media`, `$Number$` = `startNumber`,
//! `$Time$` = 0), else the `<Initialization sourceURL=…>` of the
//! SegmentTemplate/SegmentList, else of a `SegmentBase`, with its `range`
//! ([`MediaPlaylist::map_range`]); an `Initialization` with only a `range`
//! is that range of the BaseURL (none without a BaseURL).
//!
//! `BaseURL`s at the MPD, Period, AdaptationSet and Representation levels
//! (the first of each level) are resolved each against the one above:
//! relative ones against the parent's directory, `/x/` replaces the path,
//! and `http(s)://host/path` keeps only the path (the bench talks to one
//! server). Segment and init URIs carry the combined prefix: relative to
//! the MPD when every BaseURL is relative, an absolute path otherwise, so
//! [`crate::hls_playlist::resolve`]`(mpd_path, uri)` is the request path.
//! Without any BaseURL the URIs are the templates' as written.
//!
//! Multi-period: a dynamic MPD read by [`parse_at`] / [`parse_audio_at`]
//! uses the last Period that has started on the given clock (its start is
//! `Period@start`, else the previous Period's start + duration, counted from
//! `availabilityStartTime`; without one, the last Period), or the first
//! Period if none has. [`parse`] and [`parse_with_timescale`] (and any
//! static MPD) use the last Period. Numbers and times count within the
//! chosen Period, as for a single one.
//!
//! `presentationTimeOffset` (PTO; on the SegmentTemplate/SegmentList,
//! inherited like the other attributes, else on a `SegmentBase`; in the
//! timescale) is the media time at the Period start: a number-only
//! template's `$Time$` is `PTO + k·D` (its availability stays on the
//! Period's clock), a timeline's `S@t` is media time already and is used as
//! written, and [`Read::e2e_offset_ms`] (`Period@start − PTO`) puts the
//! segments' decode times on the MPD timeline for end-to-end matching.
//!
//! Not handled: a Representation with only a `SegmentBase` (one file,
//! indexed by its `sidx`), xlink'd Periods, alternative
//! BaseURLs (the first wins). The XML is scanned, not validated:
//! attributes are read from the start tags that matter, and an element's
//! content runs to the first closing tag of its name.
use crate::hls_playlist::{self, ByteRange, MediaPlaylist, Segment};

/// The longest segment a manifest may list (a day, as for HLS `EXTINF`):
/// the players schedule by it.
const MAX_SEGMENT_US: u64 = 86_400_000_000;

/// A segment's `ticks` of `timescale` (> 0) in µs, computed wide (an
/// MPD's 64-bit durations may be anything); longer than a day is an error.
fn ticks_us(ticks: u64, timescale: u64) -> Result<u64, String> {
    let us = u128::from(ticks) * 1_000_000 / u128::from(timescale);
    if us > u128::from(MAX_SEGMENT_US) {
        return Err(format!(
            "a segment of {ticks}/{timescale} s: longer than a day"
        ));
    }
    Ok(us as u64)
}

/// A byte range attribute `A-B` (inclusive, A ≤ B).
fn byte_range(v: &str) -> Result<ByteRange, String> {
    let bad = || format!("bad byte range {v:?}");
    let (a, b) = v.trim().split_once('-').ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

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
                    .unwrap_or(0)
                    // A u64 has 20 digits: a wider `%0Nd` is a lie (found
                    // by the `manifests` fuzz target: a width past what
                    // `format!` takes panicked).
                    .min(20),
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

/// An element: its start tag's text (between `<name` and `>`) and its
/// content up to the first `</name>` (empty for `<name .../>`).
#[derive(Clone, Copy)]
struct Elem<'a> {
    tag: &'a str,
    body: &'a str,
}

/// The elements named `name` in `xml` (an element must not hold one of its
/// own name).
fn elems<'a>(xml: &'a str, name: &str) -> Vec<Elem<'a>> {
    let close = format!("</{name}>");
    tags(xml, name)
        .into_iter()
        .map(|(at, tag)| {
            let body = if tag.trim_end().ends_with('/') {
                ""
            } else {
                // `<` + name + tag + `>`.
                let rest = &xml[at + name.len() + tag.len() + 2..];
                &rest[..rest.find(&close).unwrap_or(rest.len())]
            };
            Elem { tag, body }
        })
        .collect()
}

/// The first element named `name` in `xml`.
fn first<'a>(xml: &'a str, name: &str) -> Option<Elem<'a>> {
    elems(xml, name).into_iter().next()
}

/// `body` up to its first `<child` element: where an element's own
/// BaseURL and segment information are, before its children.
fn head<'a>(body: &'a str, child: &str) -> &'a str {
    &body[..tags(body, child).first().map_or(body.len(), |&(at, _)| at)]
}

/// Text or an attribute value with XML's predefined entities replaced.
fn unescape(v: &str) -> String {
    if !v.contains('&') {
        return v.to_string();
    }
    v.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `scheme://…`.
fn has_scheme(u: &str) -> bool {
    u.split_once("://").is_some_and(|(s, _)| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    })
}

/// `uri` resolved against `base` (a combined BaseURL: empty, relative to
/// the MPD, or an absolute path); absolute URIs and paths stay as written,
/// and an empty `uri` is `base` itself.
fn join(base: &str, uri: &str) -> String {
    if uri.is_empty() {
        return base.to_string();
    }
    if base.is_empty() || uri.starts_with('/') || has_scheme(uri) {
        return uri.to_string();
    }
    if base.starts_with('/')
        && let Some(p) = hls_playlist::resolve(base, uri)
    {
        return p;
    }
    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{uri}")
}

/// The combined `BaseURL` of `scopes` (outermost first; the first BaseURL
/// of each): `http(s)://host/p` counts as `/p`.
fn base_url(scopes: &[&str]) -> String {
    let mut base = String::new();
    for s in scopes {
        if let Some(e) = first(s, "BaseURL") {
            let u = unescape(e.body.trim());
            let mut path = u.as_str();
            for scheme in ["http://", "https://"] {
                if let Some(rest) = u.strip_prefix(scheme) {
                    path = rest.find('/').map_or("/", |i| &rest[i..]);
                }
            }
            base = join(&base, path);
        }
    }
    base
}

/// What a number-only template needs from the Representation.
struct Template<'a> {
    media: &'a str,
    rep_id: &'a str,
    bandwidth: &'a str,
    timescale: u64,
    start_number: u64,
    /// `@presentationTimeOffset`: the media time of the Period start.
    pto: u64,
}

/// Where the chosen Period lies, µs from the presentation start.
struct PeriodSpan {
    start_us: u64,
    /// `Period@duration`, or up to the next Period's known start.
    duration_us: Option<u64>,
}

/// Most segments a number-only template's list holds.
const MAX_NUMBER_WINDOW: u64 = 30;

/// Most segments a timeline or list may hold.
const MAX_LISTED: usize = 100_000;

/// The segments of a `SegmentTemplate@duration` (`d`, in the timescale)
/// without a timeline.
fn number_only(
    mpd: &str,
    period: &PeriodSpan,
    d: &str,
    t: &Template<'_>,
    ended: bool,
    now_ms: i64,
) -> Result<MediaPlaylist, String> {
    let d: u64 = d.parse().map_err(|_| "bad SegmentTemplate@duration")?;
    let d_us = ticks_us(d, t.timescale)?;
    if d_us == 0 {
        return Err("SegmentTemplate@duration is 0".into());
    }
    let (first, last) = if ended {
        let total = match period.duration_us {
            Some(p) => p,
            None => attr(mpd, "mediaPresentationDuration")
                .ok_or("static MPD without mediaPresentationDuration")
                .and_then(|v| iso_duration_us(v).map_err(|_| "bad mediaPresentationDuration"))?
                .saturating_sub(period.start_us),
        };
        (0, total.div_ceil(d_us).max(1) - 1)
    } else {
        let ast = attr(mpd, "availabilityStartTime")
            .ok_or("dynamic MPD with a number-only template but no availabilityStartTime")?;
        let ast_ms = iso_datetime_ms(ast)?;
        let elapsed_us = now_ms
            .saturating_sub(ast_ms)
            .saturating_mul(1000)
            .saturating_sub(i64::try_from(period.start_us).unwrap_or(i64::MAX));
        let mut complete = if elapsed_us > 0 {
            elapsed_us as u64 / d_us
        } else {
            0
        };
        if let Some(p) = period.duration_us {
            complete = complete.min(p.div_ceil(d_us));
        }
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
    // Numbers and times wrap (as `$Number$`/`$Time$` counters would)
    // rather than panic on a startNumber or PTO near 2^64.
    let segments = (first..=last)
        .map(|k| Segment {
            seq: t.start_number.wrapping_add(k),
            duration_us: d_us,
            uri: fill(
                t.media,
                t.rep_id,
                t.bandwidth,
                t.start_number.wrapping_add(k),
                t.pto.wrapping_add(k.wrapping_mul(d)),
            ),
            range: None,
        })
        .collect();
    Ok(MediaPlaylist {
        target_us: d_us,
        media_sequence: t.start_number.wrapping_add(first),
        segments,
        ended,
        map: None,
        map_range: None,
    })
}

/// A `SegmentTimeline`'s content as `(start, duration)` pairs in its
/// timescale (`r="-1"`, repeat to the next S or the period end: once).
fn timeline(body: &str) -> Result<Vec<(u64, u64)>, String> {
    let mut out = Vec::new();
    let mut t = 0u64;
    for (_, s) in tags(body, "S") {
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
        for _ in 0..=r.max(0) {
            out.push((t, d));
            t = t.checked_add(d).ok_or("SegmentTimeline past 2^64 ticks")?;
            if out.len() > MAX_LISTED {
                return Err("more than 100,000 segments listed".into());
            }
        }
    }
    if out.is_empty() {
        return Err("empty SegmentTimeline".into());
    }
    Ok(out)
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

/// Parse a manifest into the segments of its first video Representation
/// (of the last Period).
#[cfg(test)]
pub fn parse(body: &[u8]) -> Result<MediaPlaylist, String> {
    parse_with_timescale(body).map(|(p, _)| p)
}

/// [`parse`], and the Representation's timescale (`SegmentTemplate@` or
/// `SegmentList@timescale`: the track timescale of its fMP4 segments).
/// Number-only templates find their live edge from the wall clock; the
/// Period is the last one.
pub fn parse_with_timescale(body: &[u8]) -> Result<(MediaPlaylist, u64), String> {
    read(body, wall_ms(), false, Track::Video).map(|p| p.expect("a video pick is never None"))
}

/// The wall clock, ms since the Unix epoch: what `parse_at` and
/// `parse_audio_at` compare a dynamic MPD's times against.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// [`parse_with_timescale`] with the wall clock given (ms since the Unix
/// epoch): number-only templates find their live edge from it, and a
/// dynamic MPD's Period is the last one that has started by it.
#[cfg(test)]
pub fn parse_at(body: &[u8], now_ms: i64) -> Result<(MediaPlaylist, u64), String> {
    parse_video_at(body, now_ms).map(|r| (r.playlist, r.timescale))
}

/// [`parse_at`] with the whole [`Read`] (the end-to-end time offset too).
pub fn parse_video_at(body: &[u8], now_ms: i64) -> Result<Read, String> {
    read_full(body, now_ms, true, Track::Video).map(|p| p.expect("a video pick is never None"))
}

/// One Representation as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub playlist: MediaPlaylist,
    /// `SegmentTemplate@`/`SegmentList@timescale`.
    pub timescale: u64,
    /// Added (wrapping) to a segment frame's decode time in ms
    /// (`tfdt · 1000 / timescale`) to give its presentation time on the MPD
    /// timeline: `Period@start − presentationTimeOffset / timescale`, ms.
    pub e2e_offset_ms: i64,
}

/// [`parse_at`] for the first audio Representation (of an AdaptationSet
/// whose `contentType` is `audio` or `mimeType` is `audio/…`, or with an
/// `audio/…` `mimeType` of its own): its playlist and timescale, `None`
/// when the Period has no audio.
pub fn parse_audio_at(body: &[u8], now_ms: i64) -> Result<Option<(MediaPlaylist, u64)>, String> {
    read(body, now_ms, true, Track::Audio)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Track {
    Video,
    Audio,
}

/// `contentType` or `mimeType` of a start tag says `kind` (`video`, `audio`).
fn says(tag: &str, kind: &str) -> bool {
    attr(tag, "contentType") == Some(kind)
        || attr(tag, "mimeType")
            .and_then(|m| m.strip_prefix(kind))
            .is_some_and(|r| r.starts_with('/'))
}

/// The AdaptationSet and Representation to read for `track`.
fn pick<'a>(sets: &[Elem<'a>], track: Track) -> Result<Option<(Elem<'a>, Elem<'a>)>, String> {
    let reps = |s: &Elem<'a>| elems(s.body, "Representation");
    let kind = match track {
        Track::Video => "video",
        Track::Audio => "audio",
    };
    // A set that says so, else a Representation that does.
    for s in sets.iter().filter(|s| says(s.tag, kind)) {
        match reps(s).first() {
            Some(r) => return Ok(Some((*s, *r))),
            None if track == Track::Video => {
                return Err("no Representation in the video AdaptationSet".into());
            }
            None => {}
        }
    }
    for s in sets {
        if let Some(r) = reps(s).into_iter().find(|r| says(r.tag, kind)) {
            return Ok(Some((*s, r)));
        }
    }
    if track == Track::Audio {
        return Ok(None);
    }
    // Nothing says video: the first set that says nothing, else the first.
    let typed = |t: &str| attr(t, "contentType").is_some() || attr(t, "mimeType").is_some();
    let s = sets
        .iter()
        .find(|s| !typed(s.tag) && reps(s).first().is_none_or(|r| !typed(r.tag)))
        .unwrap_or(&sets[0]);
    let r = reps(s)
        .into_iter()
        .next()
        .ok_or("no Representation in the video AdaptationSet")?;
    Ok(Some((*s, r)))
}

/// The Period to read: the last one, or with `clock` (a dynamic MPD's wall
/// clock, ms) the last one that has started by it (the first if none has).
fn pick_period<'a>(
    mpd: &str,
    periods: &[Elem<'a>],
    clock: Option<i64>,
) -> Result<(Elem<'a>, PeriodSpan), String> {
    // Each start, and whether it is known (explicit, or the previous
    // start + a known duration) rather than assumed.
    let mut starts: Vec<(u64, bool)> = Vec::with_capacity(periods.len());
    let mut durations = Vec::with_capacity(periods.len());
    for p in periods {
        let start = match (attr(p.tag, "start"), starts.last(), durations.last()) {
            (Some(v), _, _) => (iso_duration_us(v)?, true),
            (None, None, _) => (0, true),
            (None, Some(&(s, known)), Some(&Some(d))) => (s + d, known),
            (None, Some(&(s, _)), _) => (s, false),
        };
        starts.push(start);
        durations.push(attr(p.tag, "duration").map(iso_duration_us).transpose()?);
    }
    let last = periods.len() - 1;
    let ast = attr(mpd, "availabilityStartTime").and_then(|v| iso_datetime_ms(v).ok());
    let i = match clock.zip(ast) {
        Some((now, ast)) => starts
            .iter()
            .rposition(|&(s, _)| ast + (s / 1000) as i64 <= now)
            .unwrap_or(0),
        None => last,
    };
    let start_us = starts[i].0;
    let duration_us = durations[i].or_else(|| {
        starts
            .get(i + 1)
            .filter(|&&(_, known)| known)
            .map(|&(next, _)| next.saturating_sub(start_us))
    });
    Ok((
        periods[i],
        PeriodSpan {
            start_us,
            duration_us,
        },
    ))
}

/// Parse `body` into `track`'s playlist and timescale.
fn read(
    body: &[u8],
    now_ms: i64,
    period_by_clock: bool,
    track: Track,
) -> Result<Option<(MediaPlaylist, u64)>, String> {
    read_full(body, now_ms, period_by_clock, track).map(|r| r.map(|r| (r.playlist, r.timescale)))
}

/// [`read`], keeping the whole [`Read`].
fn read_full(
    body: &[u8],
    now_ms: i64,
    period_by_clock: bool,
    track: Track,
) -> Result<Option<Read>, String> {
    let xml = std::str::from_utf8(body).map_err(|_| "MPD is not UTF-8".to_string())?;
    let mpd = first(xml, "MPD").ok_or("no <MPD> element")?;
    let ended = attr(mpd.tag, "type") == Some("static");
    let mut periods = elems(mpd.body, "Period");
    if periods.is_empty() {
        periods.push(Elem {
            tag: "",
            body: mpd.body,
        });
    }
    let clock = (period_by_clock && !ended).then_some(now_ms);
    let (period, span) = pick_period(mpd.tag, &periods, clock)?;
    let sets = elems(period.body, "AdaptationSet");
    if sets.is_empty() {
        return Err("no AdaptationSet".into());
    }
    let Some((set, rep)) = pick(&sets, track)? else {
        return Ok(None);
    };
    let place = Place {
        mpd: mpd.tag,
        mpd_head: head(mpd.body, "Period"),
        period_head: head(period.body, "AdaptationSet"),
        set_head: head(set.body, "Representation"),
        rep,
    };
    representation(&place, &span, ended, now_ms).map(Some)
}

/// A Representation and what lies around it.
struct Place<'a> {
    /// The MPD's start tag.
    mpd: &'a str,
    /// The MPD's, Period's and AdaptationSet's own content (before their
    /// children).
    mpd_head: &'a str,
    period_head: &'a str,
    set_head: &'a str,
    rep: Elem<'a>,
}

/// How segment durations are given.
enum Timing<'a> {
    /// A `SegmentTimeline`'s content.
    Timeline(&'a str),
    /// `@duration`.
    Every(&'a str),
    Missing,
}

/// One Representation's playlist, timescale and time offset.
fn representation(
    p: &Place<'_>,
    period: &PeriodSpan,
    ended: bool,
    now_ms: i64,
) -> Result<Read, String> {
    let rep_id = unescape(attr(p.rep.tag, "id").unwrap_or(""));
    let bandwidth = attr(p.rep.tag, "bandwidth").unwrap_or("");
    // Innermost first.
    let scopes = [p.rep.body, p.set_head, p.period_head];
    let kind = scopes
        .iter()
        .find_map(|s| {
            ["SegmentTemplate", "SegmentList"]
                .into_iter()
                .find(|k| first(s, k).is_some())
        })
        .ok_or_else(|| {
            if scopes.iter().any(|s| first(s, "SegmentBase").is_some()) {
                format!(
                    "Representation {rep_id:?} has only a SegmentBase (one file indexed by its sidx): not read by spate-bench (it plays SegmentTemplate and SegmentList)"
                )
            } else {
                format!("Representation {rep_id:?}: no SegmentTemplate or SegmentList")
            }
        })?;
    let infos: Vec<Elem<'_>> = scopes.iter().filter_map(|s| first(s, kind)).collect();
    let get = |key: &str| infos.iter().find_map(|e| attr(e.tag, key));
    let timescale: u64 = get("timescale")
        .unwrap_or("1")
        .parse()
        .map_err(|_| format!("bad {kind}@timescale"))?;
    if timescale == 0 {
        return Err(format!("{kind}@timescale is 0"));
    }
    let start_number: u64 = get("startNumber")
        .unwrap_or("1")
        .parse()
        .map_err(|_| format!("bad {kind}@startNumber"))?;
    // On the segment information, else on a SegmentBase at some level.
    let pto: u64 = get("presentationTimeOffset")
        .or_else(|| {
            scopes
                .iter()
                .filter_map(|s| first(s, "SegmentBase"))
                .find_map(|e| attr(e.tag, "presentationTimeOffset"))
        })
        .unwrap_or("0")
        .parse()
        .map_err(|_| format!("bad {kind}@presentationTimeOffset"))?;
    let timing = infos
        .iter()
        .find_map(|e| match first(e.body, "SegmentTimeline") {
            Some(t) => Some(Timing::Timeline(t.body)),
            None => attr(e.tag, "duration").map(Timing::Every),
        })
        .unwrap_or(Timing::Missing);
    let base = base_url(&[p.mpd_head, p.period_head, p.set_head, p.rep.body]);
    // `<Initialization sourceURL=… range=…>`: without a sourceURL it is
    // the BaseURL (a byte range of the one file).
    let init_child = |e: &Elem<'_>| -> Option<Result<(String, Option<ByteRange>), String>> {
        let i = first(e.body, "Initialization")?;
        let range = attr(i.tag, "range").map(byte_range).transpose();
        let url = attr(i.tag, "sourceURL").map(unescape);
        if url.is_none() && (base.is_empty() || range.as_ref().is_ok_and(|r| r.is_none())) {
            return None;
        }
        Some(
            range
                .map(|r| (url.unwrap_or_default(), r))
                .map_err(|e| format!("Initialization@range: {e}")),
        )
    };
    let (map, map_range) = match if kind == "SegmentTemplate" {
        get("initialization").map(|t| {
            Ok((
                fill(&unescape(t), &rep_id, bandwidth, start_number, 0),
                None,
            ))
        })
    } else {
        None
    }
    .or_else(|| infos.iter().find_map(init_child))
    .or_else(|| {
        scopes
            .iter()
            .filter_map(|s| first(s, "SegmentBase"))
            .find_map(|e| init_child(&e))
    })
    .transpose()?
    {
        Some((u, r)) => (Some(join(&base, &u)), r),
        None => (None, None),
    };
    let mut playlist = if kind == "SegmentTemplate" {
        let media = unescape(get("media").ok_or("SegmentTemplate without @media")?);
        match timing {
            Timing::Timeline(body) => {
                let mut longest = 0u64;
                let segments = timeline(body)?
                    .into_iter()
                    .enumerate()
                    .map(|(k, (t, d))| {
                        // A startNumber near 2^64 wraps rather than panics.
                        let number = start_number.wrapping_add(k as u64);
                        let duration_us = ticks_us(d, timescale)?;
                        longest = longest.max(duration_us);
                        Ok(Segment {
                            seq: number,
                            duration_us,
                            uri: fill(&media, &rep_id, bandwidth, number, t),
                            range: None,
                        })
                    })
                    .collect::<Result<_, String>>()?;
                MediaPlaylist {
                    target_us: longest,
                    media_sequence: start_number,
                    segments,
                    ended,
                    map: None,
                    map_range: None,
                }
            }
            Timing::Every(d) => {
                let t = Template {
                    media: &media,
                    rep_id: &rep_id,
                    bandwidth,
                    timescale,
                    start_number,
                    pto,
                };
                number_only(p.mpd, period, d, &t, ended, now_ms)?
            }
            Timing::Missing => {
                return Err("SegmentTemplate has neither a SegmentTimeline nor @duration".into());
            }
        }
    } else {
        segment_list(
            &infos,
            &timing,
            get("duration"),
            timescale,
            start_number,
            ended,
        )?
    };
    for s in &mut playlist.segments {
        s.uri = join(&base, &s.uri);
        if s.uri.is_empty() {
            return Err("SegmentURL without @media and no BaseURL".into());
        }
    }
    playlist.map = map;
    playlist.map_range = map_range;
    let e2e_offset_ms =
        (period.start_us / 1000) as i64 - (pto as u128 * 1000 / timescale as u128) as i64;
    Ok(Read {
        playlist,
        timescale,
        e2e_offset_ms,
    })
}

/// The segments of a `SegmentList` (`infos`: it and the ones it inherits
/// from, innermost first): its own `SegmentURL`s.
fn segment_list(
    infos: &[Elem<'_>],
    timing: &Timing<'_>,
    every: Option<&str>,
    timescale: u64,
    start_number: u64,
    ended: bool,
) -> Result<MediaPlaylist, String> {
    let urls = infos
        .iter()
        .map(|e| tags(e.body, "SegmentURL"))
        .find(|u| !u.is_empty())
        .ok_or("SegmentList without SegmentURL")?;
    if urls.len() > MAX_LISTED {
        return Err("more than 100,000 segments listed".into());
    }
    let listed: Vec<u64> = match timing {
        Timing::Timeline(body) => timeline(body)?.into_iter().map(|(_, d)| d).collect(),
        _ => Vec::new(),
    };
    let every: Option<u64> = every
        .map(|v| v.parse().map_err(|_| "bad SegmentList@duration"))
        .transpose()?;
    let mut longest = 0u64;
    let mut segments = Vec::with_capacity(urls.len());
    for (k, (_, u)) in urls.iter().enumerate() {
        let d = listed
            .get(k)
            .copied()
            .or(every)
            .ok_or("SegmentList has neither a SegmentTimeline nor @duration")?;
        if d == 0 {
            return Err("SegmentList@duration is 0".into());
        }
        let duration_us = ticks_us(d, timescale)?;
        longest = longest.max(duration_us);
        segments.push(Segment {
            seq: start_number.wrapping_add(k as u64),
            duration_us,
            uri: unescape(attr(u, "media").unwrap_or("")),
            range: attr(u, "mediaRange")
                .map(|r| byte_range(r).map_err(|e| format!("SegmentURL@mediaRange: {e}")))
                .transpose()?,
        });
    }
    Ok(MediaPlaylist {
        target_us: longest,
        media_sequence: start_number,
        segments,
        ended,
        map: None,
        map_range: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls_playlist::resolve;

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

    /// Found by the `manifests` fuzz target: a lying `S@d` or `S@t` near
    /// 2^64 overflowed the duration and the running time.
    #[test]
    fn timelines_near_2_to_the_64_are_refused_or_wrap() {
        let big = SPATE.replace(
            r#"<S t="23" d="2000" r="3"/>"#,
            &format!(r#"<S t="23" d="{}"/>"#, u64::MAX / 2),
        );
        let e = parse(big.as_bytes()).unwrap_err();
        assert!(e.contains("longer than a day"), "{e}");
        // A day is still a segment.
        let day = SPATE.replace(r#"d="2000" r="3""#, r#"d="86400000""#);
        assert_eq!(
            parse(day.as_bytes()).unwrap().segments[0].duration_us,
            86_400_000_000
        );
        let top = SPATE.replace("1796169600", &u64::MAX.to_string());
        let p = parse(top.as_bytes()).unwrap();
        assert_eq!((p.segments[0].seq, p.segments[1].seq), (u64::MAX, 0));
        let e = parse(
            SPATE
                .replace(r#"t="23""#, &format!(r#"t="{}""#, u64::MAX - 100))
                .as_bytes(),
        )
        .unwrap_err();
        assert!(e.contains("2^64"), "{e}");
    }

    #[test]
    fn template_widths_are_capped() {
        assert_eq!(fill("$Number%05d$.m4s", "v", "1", 42, 0), "00042.m4s");
        let wide = fill("$Number%0999999999d$/$Time%070000d$", "v", "1", 7, 9);
        assert_eq!(wide, format!("{:020}/{:020}", 7, 9));
    }

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

    #[test]
    fn init_segments_and_audio() {
        let (p, _) = parse_with_timescale(SPATE.as_bytes()).unwrap();
        assert_eq!(p.map.as_deref(), Some("v0/init.mp4"));
        let (a, ts) = parse_audio_at(SPATE.as_bytes(), 0).unwrap().unwrap();
        assert_eq!(ts, 44_100);
        assert_eq!(a.segments.len(), 1);
        assert_eq!(a.segments[0].seq, 7);
        assert_eq!(a.segments[0].uri, "a1/7.m4s");
        assert_eq!(a.segments[0].duration_us, 2_020_136);
        assert_eq!(a.map, None);

        let ast = iso_datetime_ms("2026-12-02T15:08:20.265Z").unwrap();
        let (p, _) = parse_at(FFMPEG_NUMBERS.as_bytes(), ast + 12_700).unwrap();
        assert_eq!(p.map.as_deref(), Some("init-stream0.m4s"));
        let (a, ts) = parse_audio_at(FFMPEG_NUMBERS.as_bytes(), ast + 12_700)
            .unwrap()
            .unwrap();
        assert_eq!(ts, 1_000_000);
        let uris: Vec<&str> = a.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["a-4.m4s", "a-5.m4s", "a-6.m4s"]);

        // No audio set: None, not an error.
        let video_only = SPATE
            .split("<AdaptationSet id=\"1\"")
            .next()
            .unwrap()
            .to_string()
            + "</Period></MPD>";
        assert_eq!(parse_audio_at(video_only.as_bytes(), 0).unwrap(), None);
        assert!(parse(video_only.as_bytes()).is_ok());
    }

    /// ffmpeg with a timeline, its types only on the Representations (and
    /// audio first); the set's template holds the timescale, timeline and
    /// init, the Representation's only `media`.
    #[test]
    fn types_on_representations_and_inherited_templates() {
        let mpd = r#"<MPD type="dynamic" availabilityStartTime="2026-12-02T15:08:20Z">
          <Period id="0" start="PT0.0S">
            <AdaptationSet id="0" segmentAlignment="true">
              <Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="69000">
                <SegmentTemplate timescale="48000" initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
                  <SegmentTimeline><S t="0" d="96000" r="1"/></SegmentTimeline>
                </SegmentTemplate>
              </Representation>
            </AdaptationSet>
            <AdaptationSet id="1" segmentAlignment="true">
              <SegmentTemplate timescale="12800" initialization="init-$RepresentationID$-$Bandwidth$.m4s" startNumber="3">
                <RepresentationIndex sourceURL="index.sidx"/>
                <SegmentTimeline><S t="512" d="25600" r="2"/></SegmentTimeline>
              </SegmentTemplate>
              <Representation id="0" mimeType="video/mp4" codecs="avc1.640028" bandwidth="832012">
                <SegmentTemplate media="v-$RepresentationID$-$Time$.m4s?a=1&amp;b=2"/>
              </Representation>
            </AdaptationSet>
          </Period></MPD>"#;
        let (p, ts) = parse_at(mpd.as_bytes(), 0).unwrap();
        assert_eq!(ts, 12_800);
        assert_eq!(p.media_sequence, 3);
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.segments[1].uri, "v-0-26112.m4s?a=1&b=2");
        assert_eq!(p.segments[2].seq, 5);
        assert_eq!(p.map.as_deref(), Some("init-0-832012.m4s"));
        let (a, ts) = parse_audio_at(mpd.as_bytes(), 0).unwrap().unwrap();
        assert_eq!(ts, 48_000);
        assert_eq!(a.segments[1].uri, "chunk-1-00002.m4s");
        assert_eq!(a.map.as_deref(), Some("init-1.m4s"));
        // With no type anywhere but on the audio set: the untyped set.
        let untyped = mpd.replace(" mimeType=\"video/mp4\"", "").replace(
            "<AdaptationSet id=\"0\"",
            "<AdaptationSet id=\"0\" contentType=\"audio\"",
        );
        let p = parse(untyped.as_bytes()).unwrap();
        assert_eq!(p.segments[0].uri, "v-0-512.m4s?a=1&b=2");
    }

    /// A Unified-Streaming-like live origin: an absolute MPD BaseURL, a
    /// relative one per Period, and an ad break from another path.
    const USP_MULTI: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"
  availabilityStartTime="1970-01-01T00:00:00Z" publishTime="1970-01-12T00:00:00Z"
  minimumUpdatePeriod="PT2S" timeShiftBufferDepth="PT1M" profiles="urn:mpeg:dash:profile:isoff-live:2011">
  <BaseURL>http://origin.example.com/live/channel1.isml/</BaseURL>
  <Period id="p0" start="PT0S">
    <BaseURL>dash/</BaseURL>
    <AdaptationSet id="1" contentType="audio" mimeType="audio/mp4" lang="en">
      <SegmentTemplate timescale="48000" initialization="channel1-$RepresentationID$.dash" media="channel1-$RepresentationID$-$Time$.dash">
        <SegmentTimeline><S t="0" d="96256" r="2"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="audio_eng=128000" bandwidth="128000" codecs="mp4a.40.2"/>
    </AdaptationSet>
    <AdaptationSet id="2" contentType="video" mimeType="video/mp4">
      <SegmentTemplate timescale="10000000" initialization="channel1-$RepresentationID$.dash" media="channel1-$RepresentationID$-$Time$.dash">
        <SegmentTimeline><S t="0" d="20000000" r="2"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="video=400000" bandwidth="400000" width="640" height="360"/>
    </AdaptationSet>
  </Period>
  <Period id="ad1" start="PT1000S" duration="PT10S">
    <BaseURL>/ads/break1/</BaseURL>
    <AdaptationSet contentType="video" mimeType="video/mp4">
      <BaseURL>video/</BaseURL>
      <Representation id="ad-v" bandwidth="500000">
        <BaseURL>../hd/</BaseURL>
        <SegmentTemplate timescale="1000" startNumber="1" initialization="init.mp4" media="$Number$.m4s" duration="2000"/>
      </Representation>
    </AdaptationSet>
  </Period>
  <Period id="p2">
    <BaseURL>dash/</BaseURL>
    <AdaptationSet contentType="video" mimeType="video/mp4">
      <SegmentTemplate timescale="10000000" initialization="channel1-$RepresentationID$.dash" media="channel1-$RepresentationID$-$Time$.dash">
        <SegmentTimeline><S t="10100000000" d="20000000" r="1"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="video=400000" bandwidth="400000"/>
    </AdaptationSet>
  </Period>
</MPD>"#;

    #[test]
    fn base_urls_and_periods_by_the_clock() {
        let mpd_path = "/live/channel1.isml/.mpd";
        let at = |now_ms| parse_at(USP_MULTI.as_bytes(), now_ms).unwrap().0;
        let req = |p: &MediaPlaylist, i: usize| resolve(mpd_path, &p.segments[i].uri).unwrap();
        let map = |p: &MediaPlaylist| resolve(mpd_path, p.map.as_deref().unwrap()).unwrap();
        // The first Period, by the clock.
        let p = at(500_000);
        assert_eq!(p.segments.len(), 3);
        assert_eq!(
            p.segments[0].uri,
            "/live/channel1.isml/dash/channel1-video=400000-0.dash"
        );
        assert_eq!(
            req(&p, 2),
            "/live/channel1.isml/dash/channel1-video=400000-40000000.dash"
        );
        assert_eq!(
            map(&p),
            "/live/channel1.isml/dash/channel1-video=400000.dash"
        );
        let (a, ts) = parse_audio_at(USP_MULTI.as_bytes(), 500_000)
            .unwrap()
            .unwrap();
        assert_eq!(ts, 48_000);
        assert_eq!(
            req(&a, 1),
            "/live/channel1.isml/dash/channel1-audio_eng=128000-96256.dash"
        );
        // The ad break: an absolute path, then `video/`, then `../hd/`;
        // number-only, counted from the Period start.
        let p = at(1_005_000);
        let seqs: Vec<u64> = p.segments.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(p.segments[1].uri, "/ads/break1/hd/2.m4s");
        assert_eq!(p.map.as_deref(), Some("/ads/break1/hd/init.mp4"));
        assert_eq!(
            parse_audio_at(USP_MULTI.as_bytes(), 1_005_000).unwrap(),
            None
        );
        // The third starts where the break ends (1000 s + 10 s).
        let p = at(1_010_000);
        assert_eq!(
            req(&p, 0),
            "/live/channel1.isml/dash/channel1-video=400000-10100000000.dash"
        );
        // `parse` takes the last Period whatever the clock says.
        assert_eq!(parse(USP_MULTI.as_bytes()).unwrap(), p);
        // Before anything started: the first.
        assert_eq!(at(-5_000), at(0));
        // A break whose next Period has not started yet lists no segment
        // past its own end (6 s: 3 segments).
        let gap = USP_MULTI
            .replace("duration=\"PT10S\"", "duration=\"PT6S\"")
            .replace("<Period id=\"p2\">", "<Period id=\"p2\" start=\"PT1020S\">");
        let (p, _) = parse_at(gap.as_bytes(), 1_015_000).unwrap();
        assert_eq!(p.segments.last().map(|s| s.seq), Some(3));
    }

    #[test]
    fn relative_and_odd_base_urls() {
        let mpd = r#"<MPD type="static"><BaseURL>media/</BaseURL>
          <Period><BaseURL>p1/</BaseURL>
            <AdaptationSet contentType="video"><BaseURL>../video/</BaseURL>
              <Representation id="v1" bandwidth="1"><BaseURL>v1/</BaseURL>
                <SegmentTemplate media="$Number$.m4s" initialization="/init/$RepresentationID$.mp4">
                  <SegmentTimeline><S d="1"/></SegmentTimeline>
                </SegmentTemplate>
              </Representation></AdaptationSet></Period></MPD>"#;
        let p = parse(mpd.as_bytes()).unwrap();
        assert_eq!(p.segments[0].uri, "media/p1/../video/v1/1.m4s");
        assert_eq!(
            resolve("/dash/x/manifest.mpd", &p.segments[0].uri).as_deref(),
            Some("/dash/x/media/video/v1/1.m4s")
        );
        // An absolute template URI ignores the BaseURLs.
        assert_eq!(p.map.as_deref(), Some("/init/v1.mp4"));
        // https keeps only the path; `../` folds into an absolute base.
        let https = mpd.replace("media/", "https://cdn.example/a/b/");
        let p = parse(https.as_bytes()).unwrap();
        assert_eq!(p.segments[0].uri, "/a/b/video/v1/1.m4s");
        // A file-like BaseURL: its directory.
        let file = mpd.replace("<BaseURL>v1/</BaseURL>", "<BaseURL>v1/index.mpd</BaseURL>");
        let p = parse(file.as_bytes()).unwrap();
        assert_eq!(p.segments[0].uri, "media/p1/../video/v1/1.m4s");
    }

    /// A VOD `SegmentList` (MP4Box `-segment-list`-like), one
    /// BaseURL per Representation.
    const SEGMENT_LIST: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT9.5S" minBufferTime="PT1.5S" profiles="urn:mpeg:dash:profile:full:2011">
 <Period duration="PT9.5S">
  <AdaptationSet segmentAlignment="true" mimeType="audio/mp4" lang="und">
   <Representation id="2" codecs="mp4a.40.2" bandwidth="128000">
    <BaseURL>audio/</BaseURL>
    <SegmentList timescale="48000" duration="192000">
     <Initialization sourceURL="init.mp4"/>
     <SegmentURL media="a1.m4s"/><SegmentURL media="a2.m4s"/><SegmentURL media="a3.m4s"/>
    </SegmentList>
   </Representation>
  </AdaptationSet>
  <AdaptationSet segmentAlignment="true" mimeType="video/mp4">
   <Representation id="1" codecs="avc1.4d401f" width="1280" height="720" bandwidth="1500000">
    <BaseURL>video/720p/</BaseURL>
    <SegmentList timescale="1000" duration="4000">
     <Initialization sourceURL="init.mp4"/>
     <SegmentURL media="seg-1.m4s"/>
     <SegmentURL media="seg-2.m4s"/>
     <SegmentURL media="seg-3.m4s" mediaRange="0-1000"/>
    </SegmentList>
   </Representation>
  </AdaptationSet>
 </Period>
</MPD>"#;

    #[test]
    fn segment_lists() {
        let (p, ts) = parse_with_timescale(SEGMENT_LIST.as_bytes()).unwrap();
        assert_eq!(ts, 1000);
        assert!(p.ended);
        assert_eq!(p.media_sequence, 1);
        let uris: Vec<&str> = p.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "video/720p/seg-1.m4s",
                "video/720p/seg-2.m4s",
                "video/720p/seg-3.m4s"
            ]
        );
        assert_eq!(p.segments[2].seq, 3);
        assert_eq!(p.segments[2].duration_us, 4_000_000);
        assert_eq!(p.target_us, 4_000_000);
        assert_eq!(p.map.as_deref(), Some("video/720p/init.mp4"));
        let (a, ts) = parse_audio_at(SEGMENT_LIST.as_bytes(), 0).unwrap().unwrap();
        assert_eq!(ts, 48_000);
        assert_eq!(a.segments[2].uri, "audio/a3.m4s");
        assert_eq!(a.map.as_deref(), Some("audio/init.mp4"));

        // A timeline for the durations, a start number.
        let timed = SEGMENT_LIST.replace(
            r#"<SegmentList timescale="1000" duration="4000">"#,
            r#"<SegmentList timescale="90000" startNumber="10"><SegmentTimeline><S d="360000" r="1"/><S d="135000"/></SegmentTimeline>"#,
        );
        let p = parse(timed.as_bytes()).unwrap();
        let d: Vec<(u64, u64)> = p.segments.iter().map(|s| (s.seq, s.duration_us)).collect();
        assert_eq!(d, [(10, 4_000_000), (11, 4_000_000), (12, 1_500_000)]);

        // Byte ranges of one file: the file, ranged; the list's own range-only
        // Initialization (the file's bytes) wins over the set's SegmentBase.
        let ranges = r#"<MPD type="static"><Period><AdaptationSet contentType="video">
            <SegmentBase><Initialization sourceURL="movie-init.mp4"/></SegmentBase>
            <Representation id="v" bandwidth="1"><BaseURL>http://h/vod/movie.mp4</BaseURL>
              <SegmentList duration="4"><Initialization range="0-861"/>
                <SegmentURL mediaRange="862-9000"/><SegmentURL mediaRange="9001-20000"/>
              </SegmentList></Representation></AdaptationSet></Period></MPD>"#;
        let p = parse(ranges.as_bytes()).unwrap();
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].uri, "/vod/movie.mp4");
        assert_eq!(p.segments[1].range, Some((9001, 20000)));
        assert_eq!(p.map.as_deref(), Some("/vod/movie.mp4"));
        assert_eq!(p.map_range, Some((0, 861)));
        let set_init = ranges.replace("<Initialization range=\"0-861\"/>", "");
        let p = parse(set_init.as_bytes()).unwrap();
        assert_eq!(p.map.as_deref(), Some("/vod/movie-init.mp4"));
        assert_eq!(p.map_range, None);
        let no_file = ranges.replace("<BaseURL>http://h/vod/movie.mp4</BaseURL>", "");
        assert!(parse(no_file.as_bytes()).unwrap_err().contains("BaseURL"));

        // Live: the whole list, not ended.
        let live = SEGMENT_LIST.replace("type=\"static\"", "type=\"dynamic\"");
        let p = parse_at(live.as_bytes(), 0).unwrap().0;
        assert_eq!(p.segments.len(), 3);
        assert!(!p.ended);

        let e = parse(SEGMENT_LIST.replace(" duration=\"4000\"", "").as_bytes()).unwrap_err();
        assert!(e.contains("SegmentTimeline"), "{e}");
        let only_base = r#"<MPD><Period><AdaptationSet contentType="video"><Representation id="v">
            <BaseURL>v.mp4</BaseURL><SegmentBase indexRange="0-100"/></Representation></AdaptationSet></Period></MPD>"#;
        let e = parse(only_base.as_bytes()).unwrap_err();
        assert!(
            e.contains("Representation \"v\" has only a SegmentBase"),
            "{e}"
        );
    }

    #[test]
    fn static_multi_period_reads_the_last() {
        let mpd = r#"<MPD type="static" mediaPresentationDuration="PT17S">
          <Period id="a" duration="PT10S"><AdaptationSet contentType="video"><Representation id="a" bandwidth="1">
            <SegmentTemplate timescale="1000" duration="2000" media="a-$Number$.m4s"/></Representation></AdaptationSet></Period>
          <Period id="b"><AdaptationSet contentType="video"><Representation id="b" bandwidth="1">
            <SegmentTemplate timescale="1000" duration="2000" media="b-$Number$.m4s"/></Representation></AdaptationSet></Period>
        </MPD>"#;
        // The second starts at 10 s and lasts the remaining 7 s.
        for p in [
            parse(mpd.as_bytes()).unwrap(),
            parse_at(mpd.as_bytes(), 0).unwrap().0,
        ] {
            let uris: Vec<&str> = p.segments.iter().map(|s| s.uri.as_str()).collect();
            assert_eq!(uris, ["b-1.m4s", "b-2.m4s", "b-3.m4s", "b-4.m4s"]);
            assert!(p.ended);
        }
    }

    /// A live MPD whose media times start at 90 s (90 kHz) in a Period that
    /// starts 10 s into the presentation, PTO inherited from the set.
    const PTO: &str = r#"<MPD type="dynamic" availabilityStartTime="1970-01-01T00:00:00Z">
      <Period id="p" start="PT10S">
        <AdaptationSet contentType="video">
          <SegmentTemplate timescale="90000" presentationTimeOffset="8100000"/>
          <Representation id="v" bandwidth="1">
            <SegmentTemplate media="v-$Time$.m4s" duration="180000" startNumber="1"/>
          </Representation>
        </AdaptationSet>
        <AdaptationSet contentType="audio">
          <Representation id="a" bandwidth="1">
            <SegmentTemplate timescale="48000" media="a-$Time$.m4s">
              <SegmentTimeline><S t="4320000" d="96000" r="1"/></SegmentTimeline>
            </SegmentTemplate>
          </Representation>
        </AdaptationSet>
      </Period></MPD>"#;

    #[test]
    fn presentation_time_offset() {
        // 15.5 s in: 5.5 s into the Period, segments 1 and 2 complete.
        let r = parse_video_at(PTO.as_bytes(), 15_500).unwrap();
        assert_eq!(r.timescale, 90_000);
        // A number-only `$Time$` counts from the PTO (media time)...
        let uris: Vec<&str> = r.playlist.segments.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, vec!["v-8100000.m4s", "v-8280000.m4s"]);
        // ...while availability stays on the Period's clock, and a frame at
        // media time 90 s (90,000 ms as decoded) is at 10 s on the MPD
        // timeline: 10,000 − 90,000.
        assert_eq!(r.e2e_offset_ms, -80_000);
        let frame_ms = (8_100_000u64 * 1000 / 90_000) as u32;
        assert_eq!(frame_ms.wrapping_add(r.e2e_offset_ms as u32), 10_000);
        // A timeline's S@t is already media time: the URIs are as listed.
        let (a, _) = parse_audio_at(PTO.as_bytes(), 15_500).unwrap().unwrap();
        assert_eq!(a.segments[0].uri, "a-4320000.m4s");
        assert_eq!(a.segments[1].uri, "a-4416000.m4s");
        // Without a PTO or Period start: no offset, `$Time$` from 0.
        let plain = PTO
            .replace(" presentationTimeOffset=\"8100000\"", "")
            .replace("start=\"PT10S\"", "start=\"PT0S\"");
        let r = parse_video_at(plain.as_bytes(), 5_500).unwrap();
        assert_eq!(r.e2e_offset_ms, 0);
        assert_eq!(r.playlist.segments[0].uri, "v-0.m4s");
        // On the Representation's SegmentTemplate, overriding the set's.
        let own = PTO.replace(
            "<SegmentTemplate media=\"v-$Time$.m4s\"",
            "<SegmentTemplate presentationTimeOffset=\"900000\" media=\"v-$Time$.m4s\"",
        );
        let r = parse_video_at(own.as_bytes(), 15_500).unwrap();
        assert_eq!(r.e2e_offset_ms, 0);
        assert_eq!(r.playlist.segments[0].uri, "v-900000.m4s");
        // A SegmentList's, and a bad value.
        let list = r#"<MPD type="static"><Period><AdaptationSet>
            <Representation id="r" bandwidth="1">
              <SegmentList timescale="1000" duration="2000" presentationTimeOffset="5000">
                <SegmentURL media="1.m4s"/>
              </SegmentList>
            </Representation></AdaptationSet></Period></MPD>"#;
        let r = parse_video_at(list.as_bytes(), 0).unwrap();
        assert_eq!(r.e2e_offset_ms, -5_000);
        let bad = list.replace("\"5000\"", "\"x\"");
        let e = parse_video_at(bad.as_bytes(), 0).unwrap_err();
        assert!(e.contains("presentationTimeOffset"), "{e}");
    }

    #[test]
    fn media_and_init_ranges() {
        // ffmpeg `-single_file 1`'s shape: one file, byte ranges of it.
        let mpd = r#"<MPD type="static" mediaPresentationDuration="PT4S"><Period>
          <AdaptationSet contentType="video"><Representation id="0" bandwidth="1">
            <BaseURL>v.mp4</BaseURL>
            <SegmentList timescale="1000" duration="2000">
              <Initialization range="0-99"/>
              <SegmentURL mediaRange="100-199"/>
              <SegmentURL media="other.mp4" mediaRange=" 200 - 299 "/>
              <SegmentURL media="whole.mp4"/>
            </SegmentList>
          </Representation></AdaptationSet></Period></MPD>"#;
        let (p, _) = parse_at(mpd.as_bytes(), 0).unwrap();
        let got: Vec<(&str, Option<ByteRange>)> = p
            .segments
            .iter()
            .map(|s| (s.uri.as_str(), s.range))
            .collect();
        assert_eq!(
            got,
            vec![
                ("v.mp4", Some((100, 199))),
                ("other.mp4", Some((200, 299))),
                ("whole.mp4", None),
            ]
        );
        // An Initialization with only a range is the BaseURL's bytes.
        assert_eq!(p.map.as_deref(), Some("v.mp4"));
        assert_eq!(p.map_range, Some((0, 99)));
        // With a sourceURL, that file's bytes.
        let src = mpd.replace("<Initialization ", "<Initialization sourceURL=\"i.mp4\" ");
        let (p, _) = parse_at(src.as_bytes(), 0).unwrap();
        assert_eq!(
            (p.map.as_deref(), p.map_range),
            (Some("i.mp4"), Some((0, 99)))
        );
        // Without a BaseURL a range alone names nothing: no init.
        let nobase = mpd.replace("<BaseURL>v.mp4</BaseURL>", "");
        let e = parse_at(nobase.as_bytes(), 0).unwrap_err();
        assert!(e.contains("without @media and no BaseURL"), "{e}");
        let nobase = nobase.replace("<SegmentURL mediaRange=\"100-199\"/>", "");
        let (p, _) = parse_at(nobase.as_bytes(), 0).unwrap();
        assert_eq!((p.map, p.map_range), (None, None));
        // Broken ranges are errors naming the attribute.
        for bad in ["100", "x-1", "9-5", "-5"] {
            let b = mpd.replace("mediaRange=\"100-199\"", &format!("mediaRange=\"{bad}\""));
            let e = parse_at(b.as_bytes(), 0).unwrap_err();
            assert!(e.contains("mediaRange"), "{bad}: {e}");
        }
        let b = mpd.replace("range=\"0-99\"", "range=\"99-0\"");
        let e = parse_at(b.as_bytes(), 0).unwrap_err();
        assert!(e.contains("Initialization@range"), "{e}");
        // Templates and HLS never carry ranges.
        let (p, _) = parse_at(SPATE.as_bytes(), 0).unwrap();
        assert!(p.segments.iter().all(|s| s.range.is_none()));
        assert_eq!(p.map_range, None);
    }
}
