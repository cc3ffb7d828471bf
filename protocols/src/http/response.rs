//! Writing response heads. Bodies are the engine's business (file ranges,
//! shared buffers); this module decides status and headers.
use std::time::SystemTime;

use super::Request;

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
pub fn for_entity(req: &Request, entity: &Entity, now: SystemTime, keep_alive: bool) -> Decided {
    let _ = (req, entity, now, keep_alive);
    todo!()
}

/// A complete response with a small in-memory body (error pages, 405 with
/// `Allow`, OPTIONS preflight answers). `extra` headers are written verbatim
/// (`("Allow", "GET, HEAD, OPTIONS")`).
pub fn simple(
    status: u16,
    body: &str,
    extra: &[(&str, &str)],
    now: SystemTime,
    keep_alive: bool,
) -> Vec<u8> {
    let _ = (status, body, extra, now, keep_alive);
    todo!()
}

/// Content-Type for a path by extension: m3u8, ts, m4s, mp4, m4a, m4v, mpd,
/// flv, webm, mkv, html, js, json, css, txt, svg, png, jpg, vtt, aac, mp3,
/// else `application/octet-stream`.
pub fn content_type_for(path: &str) -> &'static str {
    let _ = path;
    todo!()
}

/// Reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    let _ = status;
    todo!()
}
