//! Parsed request heads.
use std::mem::MaybeUninit;

use super::{HttpError, Limits};

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

impl Method {
    /// The method token as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other(token) => token,
        }
    }

    /// Methods every listener serves (GET, HEAD, OPTIONS); the others need
    /// `Limits::allow_write_methods`.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Method::Get | Method::Head | Method::Options)
    }

    fn from_token(token: &str) -> Self {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl RangeSpec {
    /// Parse a `Range` header value. `None` unless it holds exactly one
    /// well-formed `bytes=` range (`a-b`, `a-`, `-n`); a reversed range
    /// (`5-3`) is invalid and ignored too, as RFC 9110 §14.2 asks.
    pub fn parse(value: &str) -> Option<RangeSpec> {
        let value = value.trim_matches(is_ows);
        let (unit, set) = value.split_once('=')?;
        if !unit.trim_matches(is_ows).eq_ignore_ascii_case("bytes") || set.contains(',') {
            return None;
        }
        let (first, last) = set.trim_matches(is_ows).split_once('-')?;
        if first.is_empty() {
            return Some(RangeSpec::Suffix(parse_digits(last)?));
        }
        let first = parse_digits(first)?;
        if last.is_empty() {
            return Some(RangeSpec::FromTo { first, last: None });
        }
        let last = parse_digits(last)?;
        (first <= last).then_some(RangeSpec::FromTo {
            first,
            last: Some(last),
        })
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// A non-empty run of ASCII digits as `u64` (no sign, no overflow).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Why a head is refused: the status to answer with and the error.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) error: HttpError,
}

impl Refusal {
    fn malformed(what: impl Into<String>) -> Self {
        Refusal {
            status: 400,
            error: HttpError::Malformed(what.into()),
        }
    }

    pub(super) fn too_large(limits: &Limits) -> Self {
        Refusal {
            status: 431,
            error: HttpError::HeadTooLarge {
                limit: limits.max_head_bytes,
            },
        }
    }
}

/// Result of looking at the start of a byte stream for a request head.
#[derive(Debug)]
// Returned once per head and moved straight into the session's state.
#[allow(clippy::large_enum_variant)]
pub(super) enum Parsed {
    /// No complete head yet (and nothing wrong so far).
    Partial,
    /// A complete, accepted head of `head_len` bytes.
    Complete { request: Request, head_len: usize },
}

/// Header slots kept on the stack; more (when `max_headers` is larger) are
/// allocated for the one parse.
const STACK_HEADERS: usize = 64;

/// Parse the request head at the start of `bytes` and apply `limits`.
pub(super) fn parse(bytes: &[u8], limits: &Limits) -> Result<Parsed, Refusal> {
    // Every header line takes at least 3 bytes ("a:\n"), so a huge
    // `max_headers` is capped by what `max_head_bytes` can hold.
    let slots = limits
        .max_headers
        .min(limits.max_head_bytes / 3 + 1)
        .min(bytes.len() / 3 + 1);
    if slots <= STACK_HEADERS {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        parse_with(bytes, limits, &mut headers[..slots])
    } else {
        let mut headers: Vec<MaybeUninit<httparse::Header<'_>>> =
            std::iter::repeat_with(MaybeUninit::uninit)
                .take(slots)
                .collect();
        parse_with(bytes, limits, &mut headers)
    }
}

fn parse_with<'b>(
    bytes: &'b [u8],
    limits: &Limits,
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Parsed, Refusal> {
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(bytes, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if bytes.len() > limits.max_head_bytes {
                Err(Refusal::too_large(limits))
            } else {
                Ok(Parsed::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::too_large(limits)),
        Err(httparse::Error::Version) => {
            return Err(Refusal {
                status: 505,
                error: HttpError::Version,
            });
        }
        Err(e) => return Err(Refusal::malformed(e.to_string())),
    };
    if head_len > limits.max_head_bytes {
        return Err(Refusal::too_large(limits));
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Refusal::malformed("incomplete request line"));
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => {
            return Err(Refusal {
                status: 505,
                error: HttpError::Version,
            });
        }
    };

    let method = Method::from_token(method);
    if !method.is_read_only() && !limits.allow_write_methods {
        return Err(Refusal {
            status: 405,
            error: HttpError::MethodNotAllowed(method.as_str().to_owned()),
        });
    }

    let form = split_target(target, &method)?;
    let path = percent_decode_inner(form.path)?;

    let mut host = form.authority.map(str::to_owned);
    let mut seen_host = false;
    let mut range: Option<RangeSpec> = None;
    let mut range_count = 0u32;
    let mut if_none_match: Option<String> = None;
    let mut if_modified_since: Option<String> = None;
    let mut origin: Option<String> = None;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;

    for h in req.headers.iter() {
        let name = h.name;
        let value = trim_value(h.value);
        if name.eq_ignore_ascii_case("host") {
            if seen_host {
                return Err(Refusal::malformed("more than one Host header"));
            }
            seen_host = true;
            if host.is_none() {
                host = Some(text(value));
            }
        } else if name.eq_ignore_ascii_case("range") {
            range_count += 1;
            range = std::str::from_utf8(value).ok().and_then(RangeSpec::parse);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            match &mut if_none_match {
                Some(list) => {
                    list.push_str(", ");
                    list.push_str(&String::from_utf8_lossy(value));
                }
                None => if_none_match = Some(text(value)),
            }
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            if if_modified_since.is_none() {
                if_modified_since = Some(text(value));
            }
        } else if name.eq_ignore_ascii_case("origin") {
            if origin.is_none() {
                origin = Some(text(value));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(parse_digits)
                .ok_or_else(|| Refusal::malformed("invalid Content-Length"))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(Refusal::malformed("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim_value(token);
                if token.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        }
    }
    if range_count > 1 {
        range = None;
    }

    // Bodies: none unless allowed; Content-Length only.
    let content_length = content_length.unwrap_or(0);
    if transfer_encoding || content_length > 0 {
        if limits.max_body_bytes == 0 {
            let what = if transfer_encoding {
                "Transfer-Encoding on a request"
            } else {
                "Content-Length > 0 on a request"
            };
            return Err(Refusal {
                status: 400,
                error: HttpError::UnexpectedBody(what.to_owned()),
            });
        }
        if transfer_encoding {
            if content_length > 0
                || req
                    .headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("content-length"))
            {
                return Err(Refusal::malformed(
                    "both Transfer-Encoding and Content-Length",
                ));
            }
            return Err(Refusal {
                status: 411,
                error: HttpError::UnexpectedBody(
                    "Transfer-Encoding (chunked) request bodies are not supported; send Content-Length"
                        .to_owned(),
                ),
            });
        }
        if content_length > limits.max_body_bytes {
            return Err(Refusal {
                status: 413,
                error: HttpError::BodyTooLarge {
                    limit: limits.max_body_bytes,
                },
            });
        }
    }

    let keep_alive = !conn_close
        && match version {
            Version::Http11 => true,
            Version::Http10 => conn_keep_alive,
        };

    Ok(Parsed::Complete {
        request: Request {
            method,
            target: target.to_owned(),
            path,
            query: form.query.map(str::to_owned),
            version,
            keep_alive,
            host,
            range,
            if_none_match,
            if_modified_since,
            origin,
            content_length,
        },
        head_len,
    })
}

/// The parts of a request target.
#[derive(Debug, PartialEq, Eq)]
struct TargetForm<'a> {
    /// Authority of an absolute-form target (`http://host/...`).
    authority: Option<&'a str>,
    /// Path, still percent-encoded.
    path: &'a str,
    /// Query without `?`.
    query: Option<&'a str>,
}

/// Split a target in origin-form (`/p?q`), absolute-form
/// (`http://host/p?q`, path only is served) or asterisk-form (`*`, OPTIONS
/// only). Anything else is malformed.
fn split_target<'a>(target: &'a str, method: &Method) -> Result<TargetForm<'a>, Refusal> {
    if target == "*" {
        return if *method == Method::Options {
            Ok(TargetForm {
                authority: None,
                path: "*",
                query: None,
            })
        } else {
            Err(Refusal::malformed(
                "asterisk-form target on a method other than OPTIONS",
            ))
        };
    }
    let (authority, rest) = if target.starts_with('/') {
        (None, target)
    } else if let Some(after) = strip_prefix_ignore_case(target, "http://")
        .or_else(|| strip_prefix_ignore_case(target, "https://"))
    {
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let authority = &after[..end];
        if authority.is_empty() || authority.contains('@') {
            return Err(Refusal::malformed(
                "invalid authority in absolute-form target",
            ));
        }
        (Some(authority), &after[end..])
    } else {
        return Err(Refusal::malformed("request target is not in origin-form"));
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok(TargetForm {
        authority,
        path,
        query,
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Percent-decode a path. Invalid escapes, a decoded NUL or invalid UTF-8
/// after decoding are malformed.
pub fn percent_decode(raw: &str) -> Result<String, HttpError> {
    percent_decode_inner(raw).map_err(|r| r.error)
}

fn percent_decode_inner(raw: &str) -> Result<String, Refusal> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&c| hex_value(c)),
                bytes.get(i + 2).and_then(|&c| hex_value(c)),
            ) else {
                return Err(Refusal::malformed("invalid percent-escape in path"));
            };
            let decoded = hi << 4 | lo;
            if decoded == 0 {
                return Err(Refusal::malformed("NUL in decoded path"));
            }
            out.push(decoded);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Refusal::malformed("decoded path is not UTF-8"))
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn trim_value(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |p| p + 1);
    &v[start..end]
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}
