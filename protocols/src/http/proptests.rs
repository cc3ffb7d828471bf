//! Property tests: generated request heads round-trip through the session
//! whatever the input split; arbitrary bytes never panic.
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::sample::Index;

use super::{Limits, Method, Output, RangeSpec, Request, ServerSession, Version};

/// One generated request, in its decoded form.
#[derive(Debug, Clone)]
struct Spec {
    method: Method,
    /// Decoded path (starts with `/`).
    path: String,
    query: Option<String>,
    http10: bool,
    host: Option<String>,
    origin: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    range: Option<RangeSpec>,
    connection: Option<&'static str>,
    /// Headers the session does not interpret.
    extra: Vec<(String, String)>,
    /// Lower-case hex in escapes.
    lower_hex: bool,
    /// Body (only with write methods).
    body: Vec<u8>,
}

/// Bytes that may stay literal in a path.
fn is_path_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

fn encode_path(path: &str, lower_hex: bool) -> String {
    let mut out = String::with_capacity(path.len() * 3);
    for b in path.bytes() {
        if is_path_literal(b) {
            out.push(b as char);
        } else if lower_hex {
            let _ = write!(out, "%{b:02x}");
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn range_text(r: RangeSpec) -> String {
    match r {
        RangeSpec::FromTo { first, last: None } => format!("bytes={first}-"),
        RangeSpec::FromTo {
            first,
            last: Some(last),
        } => format!("bytes={first}-{last}"),
        RangeSpec::Suffix(n) => format!("bytes=-{n}"),
    }
}

impl Spec {
    fn target(&self) -> String {
        let mut t = encode_path(&self.path, self.lower_hex);
        if let Some(q) = &self.query {
            t.push('?');
            t.push_str(q);
        }
        t
    }

    fn keep_alive(&self) -> bool {
        match (self.http10, self.connection) {
            (_, Some("close")) => false,
            (true, c) => c.is_some_and(|c| c.eq_ignore_ascii_case("keep-alive")),
            (false, _) => true,
        }
    }

    fn serialise(&self, out: &mut Vec<u8>) {
        let mut head = format!(
            "{} {} HTTP/1.{}\r\n",
            self.method.as_str(),
            self.target(),
            if self.http10 { 0 } else { 1 }
        );
        let mut put = |name: &str, value: &str| {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        };
        if let Some(h) = &self.host {
            put("Host", h);
        }
        for (n, v) in &self.extra {
            put(n, v);
        }
        if let Some(v) = &self.origin {
            put("origin", v);
        }
        if let Some(v) = &self.if_none_match {
            put("If-None-Match", v);
        }
        if let Some(v) = &self.if_modified_since {
            put("IF-MODIFIED-SINCE", v);
        }
        if let Some(r) = self.range {
            put("Range", &range_text(r));
        }
        if let Some(c) = self.connection {
            put("Connection", c);
        }
        if !self.body.is_empty() {
            put("Content-Length", &self.body.len().to_string());
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
    }

    fn check(&self, req: &Request, body: &[u8]) {
        assert_eq!(req.method, self.method);
        assert_eq!(req.target, self.target());
        assert_eq!(req.path, self.path);
        assert_eq!(req.query, self.query);
        assert_eq!(
            req.version,
            if self.http10 {
                Version::Http10
            } else {
                Version::Http11
            }
        );
        assert_eq!(req.keep_alive, self.keep_alive());
        assert_eq!(req.host, self.host);
        assert_eq!(req.origin, self.origin);
        assert_eq!(req.if_none_match, self.if_none_match);
        assert_eq!(req.if_modified_since, self.if_modified_since);
        assert_eq!(req.range, self.range);
        assert_eq!(req.content_length, self.body.len() as u64);
        assert_eq!(body, &self.body[..]);
    }
}

const SPECIAL: [&str; 9] = [
    "host",
    "origin",
    "if-none-match",
    "if-modified-since",
    "range",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
];

fn method(write: bool) -> BoxedStrategy<Method> {
    let read = prop_oneof![Just(Method::Get), Just(Method::Head), Just(Method::Options)];
    if write {
        prop_oneof![
            read,
            Just(Method::Post),
            Just(Method::Put),
            Just(Method::Delete),
            "[A-Z]{1,7}".prop_map(|t| match t.as_str() {
                "GET" | "HEAD" | "OPTIONS" | "POST" | "PUT" | "DELETE" => Method::Other("X".into()),
                _ => Method::Other(t),
            }),
        ]
        .boxed()
    } else {
        read.boxed()
    }
}

fn range() -> impl Strategy<Value = RangeSpec> {
    prop_oneof![
        (any::<u64>(), proptest::option::of(any::<u64>())).prop_map(|(a, b)| {
            RangeSpec::FromTo {
                first: a.min(b.unwrap_or(a)),
                last: b.map(|b| b.max(a)),
            }
        }),
        any::<u64>().prop_map(RangeSpec::Suffix),
    ]
}

fn spec(write: bool) -> impl Strategy<Value = Spec> {
    let path = proptest::collection::vec("[^\\x00]{0,8}", 0..5).prop_map(|segs| {
        let mut p = String::from("/");
        p.push_str(&segs.join("/"));
        p
    });
    let headers = (
        proptest::option::of("[a-z0-9.-]{1,20}(:[0-9]{1,5})?"),
        proptest::option::of("https?://[a-z0-9.]{1,15}"),
        proptest::option::of("(W/)?\"[a-z0-9-]{0,10}\"(, \"[a-z0-9]{1,4}\")?|\\*"),
        proptest::option::of(
            (0u64..253_402_300_799)
                .prop_map(|s| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s))),
        ),
        proptest::option::of(range()),
        proptest::option::of(prop_oneof![
            Just("close"),
            Just("keep-alive"),
            Just("Keep-Alive"),
            Just("upgrade")
        ]),
        proptest::collection::vec(
            (
                "[A-Za-z][A-Za-z0-9-]{0,12}".prop_filter("interpreted header", |n| {
                    !SPECIAL.iter().any(|s| s.eq_ignore_ascii_case(n))
                }),
                "([!-~]([ -~]{0,20}[!-~])?)?",
            ),
            0..6,
        ),
    );
    let body = if write {
        proptest::collection::vec(any::<u8>(), 0..40).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (
        method(write),
        path,
        proptest::option::of("[a-zA-Z0-9=&%._~+/?-]{0,12}"),
        any::<bool>(),
        headers,
        any::<bool>(),
        body,
    )
        .prop_map(|(method, path, query, http10, headers, lower_hex, body)| {
            let (host, origin, if_none_match, if_modified_since, range, connection, extra) =
                headers;
            Spec {
                method,
                path,
                query,
                http10,
                host,
                origin,
                if_none_match,
                if_modified_since,
                range,
                connection,
                extra,
                lower_hex,
                body,
            }
        })
}

/// Cut `data` at the given points (in any order, duplicates allowed).
fn chunks<'a>(data: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
    at.push(0);
    at.push(data.len());
    at.sort_unstable();
    at.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

/// Run the chunks through a session, answering every request at once.
/// Returns the requests and whether the session ended with `Close`.
fn run(chunks: &[&[u8]], limits: &Limits, eof: bool) -> (Vec<(Request, Vec<u8>)>, Vec<Output>) {
    let now = spate_tests::test_epoch();
    let mut s = ServerSession::new(now, limits);
    let mut requests = Vec::new();
    let mut ends = Vec::new();
    let mut drain = |s: &mut ServerSession| {
        while let Some(out) = s.poll_output() {
            match out {
                Output::Request(req, body) => {
                    assert!(ends.is_empty(), "request after the end");
                    requests.push((req, body));
                    assert_eq!(s.poll_timeout(), None);
                    s.response_done(now, limits);
                }
                end => {
                    assert!(ends.is_empty(), "two ends");
                    ends.push(end);
                    assert_eq!(s.poll_timeout(), None);
                    assert_eq!(s.buffered_capacity(), 0);
                }
            }
        }
    };
    for chunk in chunks {
        s.handle_input(now, chunk, limits);
        drain(&mut s);
    }
    if eof {
        s.handle_eof();
        drain(&mut s);
    }
    (requests, ends)
}

fn round_trip(specs: &[Spec], cuts: &[Index], limits: &Limits) {
    let mut wire = Vec::new();
    for s in specs {
        s.serialise(&mut wire);
    }
    // Requests after a non-keep-alive one are never served.
    let served = specs
        .iter()
        .position(|s| !s.keep_alive())
        .map_or(specs.len(), |i| i + 1);
    let (got, ends) = run(&chunks(&wire, cuts), limits, false);
    assert_eq!(
        got.len(),
        served,
        "wire: {:?}",
        String::from_utf8_lossy(&wire)
    );
    for (spec, (req, body)) in specs.iter().zip(&got) {
        spec.check(req, body);
    }
    if served < specs.len() || !specs[served - 1].keep_alive() {
        assert!(matches!(ends.as_slice(), [Output::Close]), "{ends:?}");
    } else {
        assert!(ends.is_empty(), "{ends:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn request_heads_round_trip(
        specs in proptest::collection::vec(spec(false), 1..4),
        cuts in proptest::collection::vec(any::<Index>(), 0..8),
    ) {
        round_trip(&specs, &cuts, &Limits::default());
    }

    #[test]
    fn requests_with_bodies_round_trip(
        specs in proptest::collection::vec(spec(true), 1..4),
        cuts in proptest::collection::vec(any::<Index>(), 0..8),
    ) {
        let limits = Limits {
            max_body_bytes: 64,
            allow_write_methods: true,
            ..Limits::default()
        };
        round_trip(&specs, &cuts, &limits);
    }

    #[test]
    fn byte_at_a_time_equals_one_chunk(spec in spec(false)) {
        let mut wire = Vec::new();
        spec.serialise(&mut wire);
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        let (got, _) = run(&bytes, &Limits::default(), false);
        prop_assert_eq!(got.len(), 1);
        spec.check(&got[0].0, &got[0].1);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<Index>(), 0..16),
        small in any::<bool>(),
        bodies in any::<bool>(),
        eof in any::<bool>(),
    ) {
        let limits = Limits {
            max_head_bytes: if small { 64 } else { 16 * 1024 },
            max_headers: if small { 2 } else { 64 },
            max_body_bytes: if bodies { 100 } else { 0 },
            allow_write_methods: bodies,
            ..Limits::default()
        };
        run(&chunks(&data, &cuts), &limits, eof);
    }

    #[test]
    fn mangled_requests_never_panic(
        spec in spec(true),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..6),
        cuts in proptest::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut wire = Vec::new();
        spec.serialise(&mut wire);
        for (at, b) in edits {
            let i = at.index(wire.len());
            wire[i] = b;
        }
        let limits = Limits {
            max_body_bytes: 10,
            allow_write_methods: true,
            ..Limits::default()
        };
        run(&chunks(&wire, &cuts), &limits, true);
    }
}
