//! Writing response heads. Bodies are the engine's business (file ranges,
//! shared buffers); this module decides status and headers.
//!
//! Heads are written straight into one pre-sized `Vec<u8>`: static pieces
//! are copied, numbers are formatted on the stack, dates go through
//! `httpdate`'s formatter without an intermediate `String`.
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use httpdate::HttpDate;

use super::{Method, RangeSpec, Request, Version};

/// What the engine knows about a file it could serve.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Length in bytes.
    pub len: u64,
    /// Modification time (for Last-Modified / If-Modified-Since).
    pub modified: Option<SystemTime>,
    /// Strong validator, quoted (`"<size>-<mtime>"`), for ETag / If-None-Match.
    pub etag: Option<String>,
    /// Content-Type value.
    pub content_type: &'static str,
    /// Cache-Control value, if any.
    pub cache_control: Option<&'static str>,
}

/// The decided response: a head to send and the byte range of the entity to
/// follow it (`None` for HEAD, 304, 416).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// Status code.
    pub status: u16,
    /// The complete head, CRLFCRLF included.
    pub head: Vec<u8>,
    /// `start..end` of the entity to send after the head.
    pub body: Option<std::ops::Range<u64>>,
}

/// Decide the response for `req` on `entity`: 200, 206 (single range), 304
/// (If-None-Match / If-Modified-Since), 416 (unsatisfiable range), with
/// Content-Type, Content-Length, Accept-Ranges, ETag, Last-Modified,
/// Cache-Control, `Access-Control-Allow-Origin: *`, Date (`now`), Server, and
/// `Connection: close` when `!keep_alive`. HEAD gets the head of a GET and no
/// body.
///
/// Details:
/// - The connection is kept only when both `keep_alive` and
///   `req.keep_alive` say so; an HTTP/1.0 request that asked for keep-alive
///   gets `Connection: keep-alive`.
/// - If-None-Match (`*`, lists, weak comparison) takes precedence over
///   If-Modified-Since, which is compared at second precision (RFC 9110
///   §13.2.2). 304 carries ETag, Cache-Control, Last-Modified only without
///   an ETag, and no Content-Length.
/// - A range's `last` is clamped to `len - 1`; a range starting at or past
///   the end, a zero suffix, or any range on an empty entity is 416 with
///   `Content-Range: bytes */len`.
/// - An empty entity gets a 200 with `Content-Length: 0` and body `None`.
pub fn for_entity(req: &Request, entity: &Entity, now: SystemTime, keep_alive: bool) -> Decided {
    let keep_alive = keep_alive && req.keep_alive;
    let mut w = HeadWriter::new(256 + entity.etag.as_ref().map_or(0, String::len));

    if not_modified(req, entity, now) {
        w.status_line(304);
        w.common(now);
        if let Some(etag) = &entity.etag {
            w.header("ETag", etag);
        } else if let Some(modified) = entity.modified {
            w.date_header("Last-Modified", modified);
        }
        if let Some(cc) = entity.cache_control {
            w.header("Cache-Control", cc);
        }
        w.cors();
        return Decided {
            status: 304,
            head: w.finish(req, keep_alive),
            body: None,
        };
    }

    let len = entity.len;
    let range = req.range.map(|spec| satisfy(spec, len));
    let head_only = req.method == Method::Head;
    match range {
        Some(None) => {
            w.status_line(416);
            w.common(now);
            w.raw(b"Content-Range: bytes */");
            w.number(len);
            w.raw(b"\r\nContent-Length: 0\r\nAccept-Ranges: bytes\r\n");
            w.cors();
            Decided {
                status: 416,
                head: w.finish(req, keep_alive),
                body: None,
            }
        }
        Some(Some((first, last))) => {
            w.status_line(206);
            w.common(now);
            w.header("Content-Type", entity.content_type);
            w.number_header("Content-Length", last - first + 1);
            w.raw(b"Content-Range: bytes ");
            w.number(first);
            w.raw(b"-");
            w.number(last);
            w.raw(b"/");
            w.number(len);
            w.raw(b"\r\n");
            w.validators(entity);
            w.cors();
            Decided {
                status: 206,
                head: w.finish(req, keep_alive),
                body: (!head_only).then_some(first..last + 1),
            }
        }
        None => {
            w.status_line(200);
            w.common(now);
            w.header("Content-Type", entity.content_type);
            w.number_header("Content-Length", len);
            w.validators(entity);
            w.cors();
            Decided {
                status: 200,
                head: w.finish(req, keep_alive),
                body: (!head_only && len > 0).then_some(0..len),
            }
        }
    }
}

/// The inclusive byte range `spec` selects in an entity of `len` bytes, or
/// `None` when unsatisfiable.
fn satisfy(spec: RangeSpec, len: u64) -> Option<(u64, u64)> {
    match spec {
        RangeSpec::FromTo { first, last } => {
            if first >= len {
                return None;
            }
            let last = last.map_or(len - 1, |l| l.min(len - 1));
            (first <= last).then_some((first, last))
        }
        RangeSpec::Suffix(n) => {
            if n == 0 || len == 0 {
                return None;
            }
            Some((len.saturating_sub(n), len - 1))
        }
    }
}

/// RFC 9110 §13.2.2: If-None-Match decides when present; otherwise
/// If-Modified-Since against the modification time, in whole seconds. A
/// date later than `now` is invalid and ignored (§13.1.3).
fn not_modified(req: &Request, entity: &Entity, now: SystemTime) -> bool {
    if let Some(inm) = &req.if_none_match {
        return etag_list_matches(inm, entity.etag.as_deref());
    }
    let (Some(ims), Some(modified)) = (&req.if_modified_since, entity.modified) else {
        return false;
    };
    let Ok(since) = httpdate::parse_http_date(ims.trim()) else {
        return false;
    };
    if unix_secs(since) > unix_secs(now) {
        return false;
    }
    unix_secs(modified) <= unix_secs(since)
}

/// Weak comparison of an If-None-Match value (`*` or a list of possibly
/// weak entity-tags) against our tag.
fn etag_list_matches(header: &str, etag: Option<&str>) -> bool {
    let header = header.trim();
    if header == "*" {
        return true;
    }
    let Some(etag) = etag else {
        return false;
    };
    let ours = opaque_tag(etag);
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(inner) = tag.strip_prefix('"') else {
            return false;
        };
        let Some(end) = inner.find('"') else {
            return false;
        };
        if &inner[..end] == ours {
            return true;
        }
        rest = &inner[end + 1..];
    }
}

/// The opaque part of an entity-tag: without `W/` and the quotes.
fn opaque_tag(tag: &str) -> &str {
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Last second `httpdate` can format (9999-12-31T23:59:59Z).
const MAX_HTTP_DATE_SECS: u64 = 253_402_300_799;

/// `t` as an HTTP-date, clamped to what the format can hold (httpdate
/// panics outside 1970..=9999).
fn http_date(t: SystemTime) -> HttpDate {
    let secs = unix_secs(t).min(MAX_HTTP_DATE_SECS);
    HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs))
}

/// A complete response with a small in-memory body (error pages, 405 with
/// `Allow`, OPTIONS preflight answers). `extra` headers are written verbatim
/// (`("Allow", "GET, HEAD, OPTIONS")`).
///
/// Content-Type is `application/json` when the body starts with `{`, else
/// `text/plain; charset=utf-8`.
pub fn simple(
    status: u16,
    body: &str,
    extra: &[(&str, &str)],
    now: SystemTime,
    keep_alive: bool,
) -> Vec<u8> {
    write_simple(status, body, extra, Some(now), keep_alive)
}

/// [`simple`] with an optional Date: the session has no wall clock, so its
/// own error responses go without one.
pub(super) fn write_simple(
    status: u16,
    body: &str,
    extra: &[(&str, &str)],
    now: Option<SystemTime>,
    keep_alive: bool,
) -> Vec<u8> {
    let extra_len: usize = extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut w = HeadWriter::new(200 + extra_len + body.len());
    w.status_line(status);
    w.raw(b"Server: spate\r\n");
    if let Some(now) = now {
        w.date_header("Date", now);
    }
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    w.header("Content-Type", content_type);
    w.number_header("Content-Length", body.len() as u64);
    w.cors();
    for (name, value) in extra {
        w.header(name, value);
    }
    if !keep_alive {
        w.raw(b"Connection: close\r\n");
    }
    w.raw(b"\r\n");
    w.raw(body.as_bytes());
    w.buf
}

/// Content-Type for a path by extension: m3u8, ts, m4s, mp4, m4a, m4v, mpd,
/// flv, webm, mkv, html, js, json, css, txt, svg, png, jpg, vtt, aac, mp3,
/// else `application/octet-stream`.
///
/// The extension is matched case-insensitively on the last path segment:
///
/// | extension | type |
/// |---|---|
/// | m3u8 | application/vnd.apple.mpegurl |
/// | ts | video/mp2t |
/// | m4s | video/iso.segment |
/// | mp4, m4v | video/mp4 |
/// | m4a | audio/mp4 |
/// | mpd | application/dash+xml |
/// | flv | video/x-flv |
/// | webm | video/webm |
/// | mkv | video/x-matroska |
/// | html, htm | text/html; charset=utf-8 |
/// | js, mjs | text/javascript; charset=utf-8 |
/// | json | application/json |
/// | css | text/css; charset=utf-8 |
/// | txt | text/plain; charset=utf-8 |
/// | svg | image/svg+xml |
/// | png | image/png |
/// | jpg, jpeg | image/jpeg |
/// | gif | image/gif |
/// | ico | image/x-icon |
/// | vtt | text/vtt; charset=utf-8 |
/// | aac | audio/aac |
/// | mp3 | audio/mpeg |
/// | wasm | application/wasm |
/// | xml | application/xml |
pub fn content_type_for(path: &str) -> &'static str {
    const OCTET: &str = "application/octet-stream";
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((_, ext)) = name.rsplit_once('.') else {
        return OCTET;
    };
    let mut lower = [0u8; 4];
    if ext.len() > lower.len() {
        return OCTET;
    }
    let lower = &mut lower[..ext.len()];
    lower.copy_from_slice(ext.as_bytes());
    lower.make_ascii_lowercase();
    match &*lower {
        b"m3u8" => "application/vnd.apple.mpegurl",
        b"ts" => "video/mp2t",
        b"m4s" => "video/iso.segment",
        b"mp4" | b"m4v" => "video/mp4",
        b"m4a" => "audio/mp4",
        b"mpd" => "application/dash+xml",
        b"flv" => "video/x-flv",
        b"webm" => "video/webm",
        b"mkv" => "video/x-matroska",
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"js" | b"mjs" => "text/javascript; charset=utf-8",
        b"json" => "application/json",
        b"css" => "text/css; charset=utf-8",
        b"txt" => "text/plain; charset=utf-8",
        b"svg" => "image/svg+xml",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"ico" => "image/x-icon",
        b"vtt" => "text/vtt; charset=utf-8",
        b"aac" => "audio/aac",
        b"mp3" => "audio/mpeg",
        b"wasm" => "application/wasm",
        b"xml" => "application/xml",
        _ => OCTET,
    }
}

/// Reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// Appends a response head to one buffer.
struct HeadWriter {
    buf: Vec<u8>,
}

impl HeadWriter {
    fn new(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn number(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            // `n % 10` < 10, so the cast cannot truncate.
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[i..]);
    }

    fn status_line(&mut self, status: u16) {
        self.raw(b"HTTP/1.1 ");
        self.number(u64::from(status));
        self.raw(b" ");
        self.raw(reason(status).as_bytes());
        self.raw(b"\r\n");
    }

    fn header(&mut self, name: &str, value: &str) {
        self.raw(name.as_bytes());
        self.raw(b": ");
        self.raw(value.as_bytes());
        self.raw(b"\r\n");
    }

    fn number_header(&mut self, name: &str, value: u64) {
        self.raw(name.as_bytes());
        self.raw(b": ");
        self.number(value);
        self.raw(b"\r\n");
    }

    fn date_header(&mut self, name: &str, t: SystemTime) {
        self.raw(name.as_bytes());
        self.raw(b": ");
        // Writing into a Vec cannot fail.
        let _ = write!(self.buf, "{}", http_date(t));
        self.raw(b"\r\n");
    }

    /// Server and Date.
    fn common(&mut self, now: SystemTime) {
        self.raw(b"Server: spate\r\n");
        self.date_header("Date", now);
    }

    fn cors(&mut self) {
        self.raw(b"Access-Control-Allow-Origin: *\r\n");
    }

    /// Accept-Ranges, ETag, Last-Modified, Cache-Control.
    fn validators(&mut self, entity: &Entity) {
        self.raw(b"Accept-Ranges: bytes\r\n");
        if let Some(etag) = &entity.etag {
            self.header("ETag", etag);
        }
        if let Some(modified) = entity.modified {
            self.date_header("Last-Modified", modified);
        }
        if let Some(cc) = entity.cache_control {
            self.header("Cache-Control", cc);
        }
    }

    /// Connection header and the blank line.
    fn finish(mut self, req: &Request, keep_alive: bool) -> Vec<u8> {
        if !keep_alive {
            self.raw(b"Connection: close\r\n");
        } else if req.version == Version::Http10 {
            self.raw(b"Connection: keep-alive\r\n");
        }
        self.raw(b"\r\n");
        self.buf
    }
}
