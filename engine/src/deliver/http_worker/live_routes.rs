//! HTTP routes of live streams (MistServer's URL layout):
//!
//! | URL | what |
//! |---|---|
//! | `/<stream>.flv` | HTTP-FLV, progressive |
//! | `/<stream>.ts` | MPEG-TS, progressive (the same packets as the HLS segments) |
//! | `/hls/<stream>/index.m3u8` | HLS multivariant playlist (TS; `?video=`/`?audio=`: one rendition) |
//! | `/hls/<stream>/media.m3u8`, `/hls/<stream>/<n>.ts` | media playlist, segments (rendition 0) |
//! | `/hls/<stream>/<r>/media.m3u8`, `/hls/<stream>/<r>/<n>.ts` | the same, rendition `r` ≥ 1 |
//! | `/cmaf/<stream>/index.m3u8` | HLS multivariant playlist (fMP4/CMAF) |
//! | `/cmaf/<stream>/index.mpd` | DASH MPD (the same CMAF segments) |
//! | `/cmaf/<stream>/<track>/index.m3u8`, `init.mp4`, `<n>.m4s` | per track |
//! | [`TIME_URL`] | the time, ISO 8601 (the MPD's UTCTiming) |
//!
//! Every answer comes from this core's replica ([`SegmentedView`]): no lock,
//! no waiting. A stream that is not live, a segment that left the window or
//! is not written yet: 404 at once — except an on-demand stream (a
//! `ts-exec:` source), whose request starts it and is parked until it is
//! ready (`exec_sources.rs`).
use std::sync::Arc;
use std::time::SystemTime;

use spate_protocols::http::{Method, Request, response};

use super::live_conn::ViewerFormat;
use super::{BodySrc, Worker};
use crate::live::{SegmentedView, TIME_URL};

/// What a segmented URL names.
enum Target<'a> {
    HlsMaster,
    /// A TS rendition's media playlist.
    HlsMedia(usize),
    /// A TS rendition's segment.
    TsSegment(usize, u64),
    CmafMaster,
    Mpd,
    TrackPlaylist(&'a str),
    TrackInit(&'a str),
    TrackSegment(&'a str, u64),
}

/// `/hls/<stream>/<rest>` or `/cmaf/<stream>/<rest>` → (stream, target).
fn parse(path: &str) -> Option<(&str, Target<'_>)> {
    let (cmaf, rest) = if let Some(r) = path.strip_prefix("/hls/") {
        (false, r)
    } else {
        (true, path.strip_prefix("/cmaf/")?)
    };
    let (stream, rest) = rest.split_once('/')?;
    let number = |s: &str, ext: &str| -> Option<u64> {
        let n = s.strip_suffix(ext)?;
        if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok()
    };
    let target = if !cmaf {
        match rest {
            "index.m3u8" => Target::HlsMaster,
            "media.m3u8" => Target::HlsMedia(0),
            r => match r.split_once('/') {
                // Rendition r ≥ 1: `<r>/media.m3u8`, `<r>/<n>.ts`.
                Some((i, file)) => {
                    let i = (!i.is_empty() && i.len() < 4 && i.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| i.parse::<usize>().ok())
                        .flatten()
                        .filter(|&i| i > 0)?;
                    match file {
                        "media.m3u8" => Target::HlsMedia(i),
                        f => Target::TsSegment(i, number(f, ".ts")?),
                    }
                }
                None => Target::TsSegment(0, number(r, ".ts")?),
            },
        }
    } else {
        match rest {
            "index.m3u8" => Target::CmafMaster,
            "index.mpd" => Target::Mpd,
            r => {
                let (track, file) = r.split_once('/')?;
                match file {
                    "index.m3u8" => Target::TrackPlaylist(track),
                    "init.mp4" => Target::TrackInit(track),
                    f => Target::TrackSegment(track, number(f, ".m4s")?),
                }
            }
        }
    };
    Some((stream, target))
}

/// The `max-age` header values playlists get (≤ half a target duration).
fn playlist_cache_control(max_age: u32) -> &'static str {
    match max_age {
        0 => "no-cache",
        1 => "max-age=1",
        2 => "max-age=2",
        3..=4 => "max-age=3",
        _ => "max-age=5",
    }
}

/// Segments never change: a URL names one segment forever.
const SEGMENT_CACHE_CONTROL: &str = "public, max-age=86400, immutable";

impl Worker {
    /// Answer a request if it names a live route; `false` = not ours (the
    /// static root gets it).
    pub(super) fn route_live(&mut self, slot: u32, generation: u32, req: &Request) -> bool {
        let path = req.path.as_str();
        if path == TIME_URL {
            let now = SystemTime::now();
            let ms = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let body = spate_packager::hls::iso8601_utc_ms(ms);
            self.respond_bytes(
                slot,
                generation,
                req,
                bytes::Bytes::from(body),
                "text/plain; charset=utf-8",
                "no-cache",
                None,
            );
            return true;
        }
        if self.route_json_sources(slot, generation, req)
            || self.deny_http_play(slot, generation, req)
        {
            return true;
        }
        if let Some(name) = path.strip_prefix('/').filter(|p| !p.contains('/')) {
            let progressive = if let Some(n) = name.strip_suffix(".flv") {
                Some((n, ViewerFormat::Flv))
            } else {
                name.strip_suffix(".ts").map(|n| (n, ViewerFormat::Ts))
            };
            // Only for a stream live here, or one PLAY_REWRITE may rename:
            // `/<name>.ts` may also be a file of the static root. (An
            // on-demand stream's request is parked first and comes back
            // here once the stream is live.)
            if let Some((n, format)) = progressive
                && (self.live.by_name.contains_key(n) || self.trigger_may_rewrite(n))
                && self.trigger_viewer_gate(
                    slot,
                    generation,
                    req,
                    n,
                    if format == ViewerFormat::Flv {
                        "FLV"
                    } else {
                        "HTTPTS"
                    },
                )
            {
                return true;
            }
            if let Some((n, _)) = progressive
                && self.demand_request(slot, generation, req, n, false)
            {
                return true;
            }
            if let Some((n, format)) = progressive
                && self.live.by_name.contains_key(n)
            {
                let n = n.to_string();
                self.start_progressive_viewer(slot, generation, req, &n, format);
                return true;
            }
            return false;
        }
        if !path.starts_with("/hls/") && !path.starts_with("/cmaf/") {
            return false;
        }
        self.counters.segmented_requests += 1;
        let Some((stream, target)) = parse(path) else {
            self.respond_status(slot, generation, req, 404);
            return true;
        };
        let connector = match target {
            Target::HlsMaster | Target::HlsMedia(_) => Some("HLS"),
            Target::CmafMaster | Target::TrackPlaylist(_) => Some("CMAF"),
            Target::Mpd => Some("DASH"),
            _ => None,
        };
        if let Some(connector) = connector
            && self.trigger_viewer_gate(slot, generation, req, stream, connector)
        {
            return true;
        }
        if self.demand_request(slot, generation, req, stream, true) {
            return true;
        }
        if let Some(s) = self
            .live
            .by_name
            .get(stream)
            .and_then(|id| self.live.streams.get_mut(id))
        {
            if path.starts_with("/hls/") {
                s.hls_requests += 1;
            } else {
                s.cmaf_requests += 1;
            }
        }
        let view: Option<Arc<SegmentedView>> = self
            .live
            .by_name
            .get(stream)
            .and_then(|id| self.live.streams.get(id))
            .and_then(|s| s.segmented.clone());
        let Some(view) = view else {
            self.respond_status(slot, generation, req, 404);
            return true;
        };
        let playlist_cc = playlist_cache_control(view.playlist_max_age);
        const M3U8: &str = "application/vnd.apple.mpegurl";
        let selects = req.query.as_deref().is_some_and(|q| {
            q.split('&')
                .any(|kv| kv.starts_with("video=") || kv.starts_with("audio="))
        });
        let found = match target {
            Target::HlsMaster if selects => {
                // One rendition's multivariant playlist (its media playlist
                // and segments stay where they are).
                match view.select_ts_rendition(req.query.as_deref()) {
                    Ok(r) => view
                        .ts_renditions
                        .get(r)
                        .and_then(|r| r.master.clone())
                        .map(|b| (BodySrc::Bytes(b), M3U8)),
                    Err(why) => {
                        self.respond_not_found(
                            slot,
                            generation,
                            req,
                            &format!("{stream}: {why}\n"),
                        );
                        return true;
                    }
                }
            }
            Target::HlsMaster => view.hls_master.clone().map(|b| (BodySrc::Bytes(b), M3U8)),
            Target::HlsMedia(r) => view.hls_media(r).map(|b| (BodySrc::Bytes(b.clone()), M3U8)),
            Target::CmafMaster => view.cmaf_master.clone().map(|b| (BodySrc::Bytes(b), M3U8)),
            Target::Mpd => view
                .mpd
                .clone()
                .map(|b| (BodySrc::Bytes(b), "application/dash+xml")),
            Target::TrackPlaylist(t) => view
                .cmaf_track(t)
                .map(|t| (BodySrc::Bytes(t.playlist.clone()), M3U8)),
            Target::TrackInit(t) => view
                .cmaf_track(t)
                .map(|t| (BodySrc::Bytes(t.init.clone()), "video/mp4")),
            Target::TsSegment(r, n) => view
                .ts_segment(r, n)
                .map(|s| (BodySrc::Segment(s.clone()), "video/mp2t")),
            Target::TrackSegment(t, n) => view
                .cmaf_track(t)
                .and_then(|t| t.segment(n))
                .map(|s| (BodySrc::Segment(s.clone()), "video/iso.segment")),
        };
        let Some((src, content_type)) = found else {
            self.respond_status(slot, generation, req, 404);
            return true;
        };
        let src = self.tokenized(stream, req, src, content_type);
        let immutable = matches!(src, BodySrc::Segment(_)) || path.ends_with("/init.mp4");
        let (cc, etag) = if immutable {
            // The URL names these bytes forever (segment numbers are unique
            // per stream incarnation); an init segment can change on a codec
            // change, so its ETag is its length plus a content hash.
            (SEGMENT_CACHE_CONTROL, Some(etag_of(path, &src)))
        } else {
            (playlist_cc, None)
        };
        match src {
            BodySrc::Bytes(b) => {
                self.respond_bytes(slot, generation, req, b, content_type, cc, etag)
            }
            src => self.respond_source(slot, generation, req, src, content_type, cc, etag),
        }
        true
    }

    /// Respond with shared bytes in memory.
    #[allow(clippy::too_many_arguments)]
    fn respond_bytes(
        &mut self,
        slot: u32,
        generation: u32,
        req: &Request,
        body: bytes::Bytes,
        content_type: &'static str,
        cache_control: &'static str,
        etag: Option<String>,
    ) {
        self.respond_source(
            slot,
            generation,
            req,
            BodySrc::Bytes(body),
            content_type,
            cache_control,
            etag,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn respond_source(
        &mut self,
        slot: u32,
        generation: u32,
        req: &Request,
        src: BodySrc,
        content_type: &'static str,
        cache_control: &'static str,
        etag: Option<String>,
    ) {
        let keep_alive = req.keep_alive && self.shutdown_at.is_none();
        let len = match &src {
            BodySrc::Bytes(b) => b.len() as u64,
            BodySrc::Segment(s) => s.len() as u64,
            BodySrc::File(f) => f.len,
        };
        let entity = response::Entity {
            len,
            modified: None,
            etag,
            content_type,
            cache_control: Some(cache_control),
        };
        let d = response::for_entity(req, &entity, SystemTime::now(), keep_alive);
        let log = self.log_line(req);
        let body = if req.method == Method::Head {
            0..0
        } else {
            d.body.clone().unwrap_or(0..0)
        };
        self.start_transfer(
            slot,
            generation,
            d.head,
            Some(src),
            body,
            d.status,
            !keep_alive,
            log,
        );
    }
}

/// A strong validator: a segment's URL names it forever, so its path and
/// length identify it (its bytes are never read here); an init segment (a
/// small buffer, re-made when the codec configuration changes) is hashed.
fn etag_of(path: &str, src: &BodySrc) -> String {
    let (data, len): (&[u8], usize) = match src {
        BodySrc::Bytes(b) => (b, b.len()),
        BodySrc::Segment(s) => (path.as_bytes(), s.len()),
        BodySrc::File(f) => (path.as_bytes(), f.len as usize),
    };
    format!("\"{len:x}-{:016x}\"", super::fnv1a(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segmented_urls_parse() {
        assert!(matches!(
            parse("/hls/live+a/index.m3u8"),
            Some(("live+a", Target::HlsMaster))
        ));
        assert!(matches!(
            parse("/hls/s/1796000123.ts"),
            Some(("s", Target::TsSegment(0, 1_796_000_123)))
        ));
        assert!(matches!(
            parse("/hls/s/2/1796000123.ts"),
            Some(("s", Target::TsSegment(2, 1_796_000_123)))
        ));
        assert!(matches!(
            parse("/hls/s/1/media.m3u8"),
            Some(("s", Target::HlsMedia(1)))
        ));
        assert!(parse("/hls/s/0/media.m3u8").is_none());
        assert!(parse("/hls/s/x/media.m3u8").is_none());
        assert!(matches!(
            parse("/cmaf/s/v0/12.m4s"),
            Some(("s", Target::TrackSegment("v0", 12)))
        ));
        assert!(matches!(
            parse("/cmaf/s/a1/init.mp4"),
            Some(("s", Target::TrackInit("a1")))
        ));
        assert!(matches!(
            parse("/cmaf/s/index.mpd"),
            Some(("s", Target::Mpd))
        ));
        assert!(parse("/hls/s/-1.ts").is_none());
        assert!(parse("/hls/s/99999999999999999999999.ts").is_none());
        assert!(parse("/hls/s").is_none());
        assert!(parse("/cmaf/s/v0/x.m4s").is_none());
    }
}
