//! `GET /json_<stream>.js`: MistServer's protocol auto-selection document
//! (docs/protocols.md). A player asks it which URLs can play a stream and
//! picks the first it handles: the stream's tracks, and the outputs that
//! carry its codecs, best first (HLS fMP4, DASH, HLS TS, HTTP-FLV, TS,
//! RTMP).
//!
//! What an output carries comes from the packager: CMAF (HLS fMP4, DASH)
//! writes H.264, HEVC, AV1, VP9, AAC, MP3 and Opus; the MPEG-TS muxer (HLS
//! TS, `/<s>.ts`) H.264, HEVC, AAC, MP3 and Opus; FLV and RTMP are offered
//! only for the legacy FLV codecs (H.264, AAC, MP3) — Spate writes HEVC and
//! Opus as Enhanced RTMP tags, which few players read. An output is listed
//! when it carries a video track of a stream that has video and an audio
//! track of a stream that has audio (FLV: the first of each, the ones FLV
//! viewers get).
use std::fmt::Write as _;
use std::sync::Arc;

use spate_packager::hls::codecs_string;
use spate_packager::media::{Codec, MediaKind, Track};
use spate_protocols::http::Request;

use super::Worker;
use crate::config::{Config, RtmpNaming};
use crate::control::access;
use crate::live::SegmentedView;

/// What absolute URLs are made of, from the configuration.
#[derive(Debug, Clone)]
pub(super) struct SourceUrls {
    http_port: u16,
    /// RTMP port and naming, when RTMP is on.
    rtmp: Option<(u16, RtmpNaming)>,
}

impl SourceUrls {
    pub(super) fn from_config(config: &Config) -> Self {
        Self {
            http_port: config.http.port,
            rtmp: config
                .rtmp
                .enabled
                .then_some((config.rtmp.port, config.rtmp.stream_name)),
        }
    }
}

/// One output in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    HlsCmaf,
    Dash,
    HlsTs,
    Flv,
    Ts,
    Rtmp,
}

impl Output {
    /// Best first: what most players handle best.
    const ALL: [Output; 6] = [
        Output::HlsCmaf,
        Output::Dash,
        Output::HlsTs,
        Output::Flv,
        Output::Ts,
        Output::Rtmp,
    ];

    /// MistServer's source type.
    fn mime(self) -> &'static str {
        match self {
            Output::HlsCmaf => "html5/application/vnd.apple.mpegurl;version=7",
            Output::Dash => "dash/video/mp4",
            Output::HlsTs => "html5/application/vnd.apple.mpegurl",
            Output::Flv => "flash/7",
            Output::Ts => "html5/video/mpeg",
            Output::Rtmp => "flash/10",
        }
    }

    fn priority(self) -> u32 {
        match self {
            Output::HlsCmaf => 10,
            Output::Dash => 9,
            Output::HlsTs => 8,
            Output::Flv => 7,
            Output::Ts => 6,
            Output::Rtmp => 5,
        }
    }

    fn carries(self, codec: Codec) -> bool {
        use Codec::*;
        match self {
            Output::HlsCmaf | Output::Dash => {
                matches!(codec, H264 | H265 | Av1 | Vp9 | Aac | Mp3 | Opus)
            }
            Output::HlsTs | Output::Ts => matches!(codec, H264 | H265 | Aac | Mp3 | Opus),
            Output::Flv | Output::Rtmp => matches!(codec, H264 | Aac | Mp3),
        }
    }

    /// Whether the stream's view has this output at all.
    fn present(self, view: &SegmentedView) -> bool {
        match self {
            Output::HlsCmaf => view.cmaf_master.is_some(),
            Output::Dash => view.mpd.is_some(),
            Output::HlsTs => view.hls_master.is_some(),
            Output::Ts => !view.ts_renditions.is_empty(),
            Output::Flv | Output::Rtmp => true,
        }
    }

    /// Whether this output plays a stream of `tracks`.
    fn plays(self, tracks: &[Track]) -> bool {
        let of = |k: MediaKind| tracks.iter().filter(move |t| t.kind() == k);
        let ok = |k: MediaKind| {
            let mut it = of(k).peekable();
            if it.peek().is_none() {
                return true;
            }
            match self {
                // FLV viewers get the first video and the first audio track.
                Output::Flv | Output::Rtmp => it.next().is_some_and(|t| self.carries(t.codec)),
                _ => it.any(|t| self.carries(t.codec)),
            }
        };
        !tracks.is_empty() && ok(MediaKind::Video) && ok(MediaKind::Audio)
    }
}

/// MistServer's codec names.
fn mist_codec(c: Codec) -> &'static str {
    match c {
        Codec::H264 => "H264",
        Codec::H265 => "HEVC",
        Codec::Av1 => "AV1",
        Codec::Vp9 => "VP9",
        Codec::Aac => "AAC",
        Codec::Mp3 => "MP3",
        Codec::Opus => "opus",
        Codec::Ac3 => "AC3",
        Codec::Eac3 => "EAC3",
        _ => "unknown",
    }
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The host part of a `Host` header we put into URLs: only the characters
/// of a host name, an IPv4 or a bracketed IPv6 address and a port.
fn clean_host(host: Option<&str>) -> Option<&str> {
    host.filter(|h| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    })
}

/// `host[:port]` without the port.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h,
        _ => host,
    }
}

/// The document for `stream`, whose view is `view`; `host` from the
/// request, `token` to put on every URL.
fn document(
    stream: &str,
    view: &SegmentedView,
    urls: &SourceUrls,
    host: &str,
    token: Option<&str>,
) -> String {
    let mut j = String::with_capacity(2048);
    let bitrate = |t: &Track| {
        view.video_tracks
            .iter()
            .chain(&view.audio_tracks)
            .find(|c| c.id == t.id)
            .map_or(0, |c| c.bps)
    };
    let _ = write!(j, "{{\"stream\":{},\"type\":\"live\"", json_str(stream));
    if let Some(v) = view.tracks.iter().find(|t| t.kind() == MediaKind::Video)
        && let (Some(w), Some(h)) = (v.info.width, v.info.height)
    {
        let _ = write!(j, ",\"width\":{w},\"height\":{h}");
    }
    let mut tracks = Vec::new();
    let mut meta = Vec::new();
    for t in &view.tracks {
        let mut o = String::new();
        let kind = if t.kind() == MediaKind::Video {
            "video"
        } else {
            "audio"
        };
        let _ = write!(
            o,
            "{{\"id\":{},\"type\":\"{kind}\",\"codec\":\"{}\"",
            t.id,
            mist_codec(t.codec)
        );
        if let Some(cs) = codecs_string(t) {
            let _ = write!(o, ",\"codecstring\":{}", json_str(&cs));
        }
        if t.kind() == MediaKind::Video {
            if let Some(w) = t.info.width {
                let _ = write!(o, ",\"width\":{w}");
            }
            if let Some(h) = t.info.height {
                let _ = write!(o, ",\"height\":{h}");
            }
            if let Some((n, d)) = t.info.frame_rate.filter(|&(_, d)| d > 0) {
                let fps = f64::from(n) / f64::from(d);
                let _ = write!(
                    o,
                    ",\"fps\":{},\"fpks\":{}",
                    (fps * 1000.0).round() / 1000.0,
                    (fps * 1000.0).round() as u64
                );
            }
        } else {
            if let Some(r) = t.info.sample_rate {
                let _ = write!(o, ",\"rate\":{r}");
            }
            if let Some(c) = t.info.channels {
                let _ = write!(o, ",\"channels\":{c}");
            }
        }
        let bps = bitrate(t);
        if bps > 0 {
            // MistServer's `bps` is bytes per second.
            let _ = write!(o, ",\"bitrate\":{bps},\"bps\":{}", bps / 8);
        }
        o.push('}');
        meta.push(format!("\"{kind}_{}_{}\":{o}", mist_codec(t.codec), t.id));
        tracks.push(o);
    }
    let _ = write!(
        j,
        ",\"tracks\":[{}],\"meta\":{{\"live\":1,\"tracks\":{{{}}}}}",
        tracks.join(","),
        meta.join(",")
    );
    let q = token.map(|t| format!("?token={t}")).unwrap_or_default();
    let mut sources = Vec::new();
    for out in Output::ALL {
        if !out.present(view) || !out.plays(&view.tracks) {
            continue;
        }
        let (url, rel) = match out {
            Output::Rtmp => {
                let Some((port, naming)) = urls.rtmp else {
                    continue;
                };
                let (app, key) = match naming {
                    RtmpNaming::Key => ("live", stream),
                    RtmpNaming::AppKey => match stream.split_once('+') {
                        Some(p) => p,
                        // `app+key` names always have a wildcard.
                        None => continue,
                    },
                };
                let rel = format!("/{app}/{key}{q}");
                (format!("rtmp://{}:{port}{rel}", host_name(host)), rel)
            }
            _ => {
                let rel = match out {
                    Output::HlsCmaf => format!("/cmaf/{stream}/index.m3u8{q}"),
                    Output::Dash => format!("/cmaf/{stream}/index.mpd{q}"),
                    Output::HlsTs => format!("/hls/{stream}/index.m3u8{q}"),
                    Output::Flv => format!("/{stream}.flv{q}"),
                    _ => format!("/{stream}.ts{q}"),
                };
                (format!("http://{host}{rel}"), rel)
            }
        };
        sources.push(format!(
            "{{\"url\":{},\"relurl\":{},\"type\":\"{}\",\"priority\":{}}}",
            json_str(&url),
            json_str(&rel),
            out.mime(),
            out.priority()
        ));
    }
    let _ = write!(j, ",\"source\":[{}]}}", sources.join(","));
    j.push('\n');
    j
}

impl Worker {
    /// Answer `/json_<stream>.js`; `false` = not that URL.
    pub(super) fn route_json_sources(&mut self, slot: u32, generation: u32, req: &Request) -> bool {
        let Some(stream) = req
            .path
            .strip_prefix("/json_")
            .and_then(|n| n.strip_suffix(".js"))
            .filter(|n| !n.is_empty() && !n.contains('/'))
        else {
            return false;
        };
        if self.demand_request(slot, generation, req, stream, true) {
            return true;
        }
        const NO_CACHE: (&str, &str) = ("Cache-Control", "no-cache");
        let Some(s) = self
            .live
            .by_name
            .get(stream)
            .and_then(|id| self.live.streams.get(id))
        else {
            let body = format!(
                "{{\"error\":{}}}\n",
                json_str(&format!("stream {stream} is not live"))
            );
            self.respond_text(slot, generation, req, 404, &body, &[NO_CACHE]);
            return true;
        };
        let Some(view): Option<Arc<SegmentedView>> =
            s.segmented.clone().filter(|v| !v.tracks.is_empty())
        else {
            let body = format!(
                "{{\"error\":{}}}\n",
                json_str(&format!(
                    "stream {stream} is starting: its tracks are not known yet"
                ))
            );
            self.respond_text(
                slot,
                generation,
                req,
                503,
                &body,
                &[NO_CACHE, ("Retry-After", "1")],
            );
            return true;
        };
        let fallback = format!("localhost:{}", self.json_sources.http_port);
        let host = clean_host(req.host.as_deref()).unwrap_or(&fallback);
        let token = req
            .query
            .as_deref()
            .and_then(access::token_param)
            .filter(|t| access::token_chars_ok(t));
        let body = document(stream, &view, &self.json_sources, host, token);
        self.respond_text(slot, generation, req, 200, &body, &[NO_CACHE]);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn track(id: u32, codec: Codec) -> Track {
        let mut t = Track::new(id, codec, 1000);
        t.config = None::<Bytes>;
        t
    }

    fn view(tracks: Vec<Track>) -> SegmentedView {
        SegmentedView {
            hls_master: Some(Bytes::new()),
            cmaf_master: Some(Bytes::new()),
            mpd: Some(Bytes::new()),
            ts_renditions: vec![Default::default()],
            tracks,
            ..Default::default()
        }
    }

    fn urls() -> SourceUrls {
        SourceUrls {
            http_port: 8080,
            rtmp: Some((1935, RtmpNaming::Key)),
        }
    }

    fn types(doc: &str) -> Vec<&str> {
        doc.split("\"type\":\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .filter(|t| t.contains('/'))
            .collect()
    }

    #[test]
    fn h264_aac_gets_every_output_best_first() {
        let v = view(vec![track(0, Codec::H264), track(1, Codec::Aac)]);
        let d = document("live+a", &v, &urls(), "h:8080", None);
        assert_eq!(
            types(&d),
            [
                "html5/application/vnd.apple.mpegurl;version=7",
                "dash/video/mp4",
                "html5/application/vnd.apple.mpegurl",
                "flash/7",
                "html5/video/mpeg",
                "flash/10"
            ]
        );
        assert!(
            d.contains("\"url\":\"http://h:8080/cmaf/live+a/index.m3u8\""),
            "{d}"
        );
        assert!(d.contains("\"url\":\"rtmp://h:1935/live/live+a\""), "{d}");
        assert!(d.contains("\"audio_AAC_1\":{"), "{d}");
    }

    #[test]
    fn hevc_and_opus_are_not_offered_over_flv() {
        let v = view(vec![track(0, Codec::H265), track(1, Codec::Aac)]);
        let d = document("s", &v, &urls(), "h", Some("9.ab"));
        let t = types(&d);
        assert!(!t.contains(&"flash/7") && !t.contains(&"flash/10"), "{d}");
        assert!(t.contains(&"html5/application/vnd.apple.mpegurl"), "{d}");
        assert!(d.contains("/cmaf/s/index.mpd?token=9.ab"), "{d}");
        let v = view(vec![track(0, Codec::H264), track(1, Codec::Opus)]);
        let t = types(&document("s", &v, &urls(), "h", None)).join(" ");
        assert!(!t.contains("flash"), "{t}");
        let v = view(vec![track(0, Codec::Av1)]);
        let d = document("s", &v, &urls(), "h", None);
        let t = types(&d);
        assert_eq!(
            t,
            [
                "html5/application/vnd.apple.mpegurl;version=7",
                "dash/video/mp4"
            ]
        );
    }

    #[test]
    fn hosts_are_cleaned_and_ports_stripped_for_rtmp() {
        assert_eq!(clean_host(Some("a.b:80")), Some("a.b:80"));
        assert_eq!(clean_host(Some("a\"b")), None);
        assert_eq!(host_name("a.b:80"), "a.b");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(json_str("a\"\\\n"), "\"a\\\"\\\\\\u000a\"");
    }
}
