//! Parsed request heads.

/// Request method. Only what Spate serves is named; anything else is
/// `Other` (and rejected with 405 by the session unless allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// OPTIONS (CORS preflight)
    Options,
    /// POST (API only)
    Post,
    /// PUT (API only)
    Put,
    /// DELETE (API only)
    Delete,
    /// Any other token.
    Other(String),
}

/// HTTP version of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: keep-alive only when asked for.
    Http10,
    /// HTTP/1.1: keep-alive unless `Connection: close`.
    Http11,
}

/// A single byte range from a `Range: bytes=` header (multiple ranges are
/// answered with the whole entity, as RFC 9110 allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=first-` or `bytes=first-last` (last inclusive).
    FromTo {
        /// First byte offset.
        first: u64,
        /// Last byte offset, inclusive; `None` = to the end.
        last: Option<u64>,
    },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// One parsed request head. Owned, so the receive buffer can be reused at
/// once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Request target as sent (`/a%20b?x=1`).
    pub target: String,
    /// Path part of the target, percent-decoded (`/a b`). Not normalised:
    /// the router decides what `..` means. Invalid UTF-8 after decoding is a
    /// malformed request.
    pub path: String,
    /// Query string without the `?`, undecoded.
    pub query: Option<String>,
    /// Version.
    pub version: Version,
    /// Whether the connection stays open after the response (version default,
    /// `Connection: close` / `keep-alive`).
    pub keep_alive: bool,
    /// `Host` header.
    pub host: Option<String>,
    /// Parsed `Range` header, when it holds exactly one satisfiable-looking
    /// `bytes=` range. `None` when absent, multi-range or not `bytes`.
    pub range: Option<RangeSpec>,
    /// `If-None-Match`, raw.
    pub if_none_match: Option<String>,
    /// `If-Modified-Since`, raw.
    pub if_modified_since: Option<String>,
    /// `Origin`, for CORS.
    pub origin: Option<String>,
    /// Body length announced by `Content-Length` (0 when none). Bodies are
    /// only accepted when `Limits::max_body_bytes` > 0.
    pub content_length: u64,
}
