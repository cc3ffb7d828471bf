//! Unit tests for the HTTP/1.1 server session and response writing.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::response::{self, Entity};
use super::{HttpError, Limits, Method, Output, RangeSpec, Request, ServerSession, Version};

/// Where each test's timeline starts.
fn t0() -> Instant {
    spate_tests::test_epoch()
}

fn limits() -> Limits {
    Limits::default()
}

fn body_limits(max_body_bytes: u64) -> Limits {
    Limits {
        max_body_bytes,
        allow_write_methods: true,
        ..Limits::default()
    }
}

fn drain(s: &mut ServerSession) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

/// Feed one chunk and expect exactly one request out.
fn one_request(data: &[u8]) -> Request {
    one_request_with(data, &limits()).0
}

fn one_request_with(data: &[u8], limits: &Limits) -> (Request, Vec<u8>) {
    let mut s = ServerSession::new(t0(), limits);
    s.handle_input(t0(), data, limits);
    let mut out = drain(&mut s);
    assert_eq!(out.len(), 1, "outputs: {out:?}");
    match out.remove(0) {
        Output::Request(req, body) => (req, body),
        other => panic!("expected a request, got {other:?}"),
    }
}

/// Feed one chunk and expect exactly one reject; returns its status and error.
fn one_reject(data: &[u8], limits: &Limits) -> (u16, HttpError, Vec<u8>) {
    let mut s = ServerSession::new(t0(), limits);
    s.handle_input(t0(), data, limits);
    let mut out = drain(&mut s);
    assert_eq!(out.len(), 1, "outputs: {out:?}");
    let (bytes, err) = match out.remove(0) {
        Output::Reject(bytes, err) => (bytes, err),
        other => panic!("expected a reject, got {other:?}"),
    };
    // Nothing more after a reject, whatever arrives.
    s.handle_input(t0(), b"GET / HTTP/1.1\r\n\r\n", limits);
    s.handle_eof();
    assert!(s.poll_output().is_none());
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.buffered_capacity(), 0);
    let head = parse_head(&bytes);
    assert_eq!(head.header("connection").as_deref(), Some("close"));
    (head.status, err, bytes)
}

struct ParsedHead {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl ParsedHead {
    fn header(&self, name: &str) -> Option<String> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone());
        let first = found.next();
        assert!(found.next().is_none(), "duplicate header {name}");
        first
    }
}

fn parse_head(bytes: &[u8]) -> ParsedHead {
    let text = std::str::from_utf8(bytes).expect("head is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("head ends with CRLFCRLF");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"));
    let status = parts.next().unwrap().parse().unwrap();
    let reason = parts.next().unwrap();
    assert_eq!(reason, response::reason(status));
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("header line");
            (n.to_owned(), v.to_owned())
        })
        .collect();
    ParsedHead {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

// ---------------------------------------------------------------- session

#[test]
fn session_is_small() {
    let size = std::mem::size_of::<ServerSession>();
    assert!(size <= 96, "ServerSession is {size} bytes");
}

#[test]
fn simple_get() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    assert_eq!(s.poll_timeout(), Some(now + l.idle_timeout));
    assert!(s.poll_output().is_none());
    s.handle_input(
        now,
        b"GET /live/a.m3u8?token=1 HTTP/1.1\r\nHost: example.com\r\nOrigin: https://x.y\r\n\r\n",
        &l,
    );
    let Some(Output::Request(req, body)) = s.poll_output() else {
        panic!("no request");
    };
    assert!(body.is_empty());
    assert_eq!(req.method, Method::Get);
    assert_eq!(req.target, "/live/a.m3u8?token=1");
    assert_eq!(req.path, "/live/a.m3u8");
    assert_eq!(req.query.as_deref(), Some("token=1"));
    assert_eq!(req.version, Version::Http11);
    assert!(req.keep_alive);
    assert_eq!(req.host.as_deref(), Some("example.com"));
    assert_eq!(req.origin.as_deref(), Some("https://x.y"));
    assert_eq!(req.range, None);
    assert_eq!(req.content_length, 0);
    // Serving: no timer, no output.
    assert!(s.poll_output().is_none());
    assert_eq!(s.poll_timeout(), None);
    // Idle again after the response; the idle timer restarts then.
    let later = now + Duration::from_secs(5);
    s.response_done(later, &l);
    assert!(s.poll_output().is_none());
    assert_eq!(s.poll_timeout(), Some(later + l.idle_timeout));
    assert_eq!(s.buffered_capacity(), 0);
}

#[test]
fn pipelining_three_requests_in_one_chunk() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    s.handle_input(
        now,
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        &l,
    );
    let mut paths = Vec::new();
    for i in 0..3 {
        let out = drain(&mut s);
        assert_eq!(out.len(), 1, "one output at a time");
        let Output::Request(req, _) = &out[0] else {
            panic!("expected request {i}");
        };
        paths.push((req.method.clone(), req.path.clone(), req.keep_alive));
        assert_eq!(s.poll_timeout(), None);
        s.response_done(now, &l);
    }
    assert_eq!(
        paths,
        vec![
            (Method::Get, "/1".to_owned(), true),
            (Method::Head, "/2".to_owned(), true),
            (Method::Get, "/3".to_owned(), false),
        ]
    );
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));
    assert_eq!(s.buffered_capacity(), 0);
}

#[test]
fn pipelined_requests_byte_at_a_time() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    let input = b"\r\nGET /a%20b HTTP/1.1\r\nHost: h\r\nRange: bytes=1-2\r\n\r\nGET /c?d HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /e HTTP/1.1\n\n";
    let mut got = Vec::new();
    for &b in input.iter() {
        s.handle_input(now, &[b], &l);
        while let Some(out) = s.poll_output() {
            match out {
                Output::Request(req, _) => {
                    got.push(req);
                    s.response_done(now, &l);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].path, "/a b");
    assert_eq!(
        got[0].range,
        Some(RangeSpec::FromTo {
            first: 1,
            last: Some(2)
        })
    );
    assert_eq!(got[1].path, "/c");
    assert_eq!(got[1].query.as_deref(), Some("d"));
    assert_eq!(got[1].version, Version::Http10);
    assert!(got[1].keep_alive);
    assert_eq!(got[2].path, "/e");
    assert_eq!(s.buffered_capacity(), 0);
}

#[test]
fn input_while_serving_waits_for_response_done() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET /1 HTTP/1.1\r\n\r\n", &l);
    assert!(matches!(s.poll_output(), Some(Output::Request(..))));
    // Second request arrives in two pieces while the first is served.
    s.handle_input(now, b"GET /2 HT", &l);
    assert!(s.poll_output().is_none());
    s.handle_input(now, b"TP/1.1\r\n\r\n", &l);
    assert!(s.poll_output().is_none());
    assert_eq!(s.poll_timeout(), None);
    s.response_done(now, &l);
    let Some(Output::Request(req, _)) = s.poll_output() else {
        panic!("second request");
    };
    assert_eq!(req.path, "/2");
}

#[test]
fn pipelined_partial_head_gets_head_timer_from_response_done() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n", &l);
    assert!(matches!(s.poll_output(), Some(Output::Request(..))));
    let later = now + Duration::from_secs(30);
    s.response_done(later, &l);
    assert!(s.poll_output().is_none());
    assert_eq!(s.poll_timeout(), Some(later + l.head_timeout));
    assert!(s.buffered_capacity() > 0);
    s.handle_input(later, b"\r\n", &l);
    assert!(matches!(s.poll_output(), Some(Output::Request(..))));
}

#[test]
fn idle_session_holds_no_buffer() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    assert_eq!(s.buffered_capacity(), 0);
    // A whole head in one chunk is parsed without copying it.
    s.handle_input(now, b"GET / HTTP/1.1\r\n\r\n", &l);
    assert_eq!(s.buffered_capacity(), 0);
    assert!(s.poll_output().is_some());
    s.response_done(now, &l);
    // A partial head is kept, and released once complete.
    s.handle_input(now, b"GET / HTTP/1.1\r\n", &l);
    assert!(s.buffered_capacity() > 0);
    s.handle_input(now, b"\r\n", &l);
    assert!(s.poll_output().is_some());
    assert_eq!(s.buffered_capacity(), 0);
    s.response_done(now, &l);
    assert_eq!(s.buffered_capacity(), 0);
}

#[test]
fn http10_and_connection_header() {
    let r = one_request(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.version, Version::Http10);
    assert!(!r.keep_alive);
    assert!(one_request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(!one_request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!one_request(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
    assert!(
        !one_request(b"GET / HTTP/1.1\r\nConnection: te\r\nConnection: close\r\n\r\n").keep_alive
    );
    assert!(one_request(b"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n").keep_alive);
}

#[test]
fn non_keep_alive_request_closes_after_response() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    s.handle_input(
        now,
        b"GET / HTTP/1.0\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
        &l,
    );
    let Some(Output::Request(req, _)) = s.poll_output() else {
        panic!()
    };
    assert!(!req.keep_alive);
    assert!(s.poll_output().is_none());
    s.response_done(now, &l);
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));
}

#[test]
fn head_too_large_431() {
    let l = Limits {
        max_head_bytes: 64,
        ..limits()
    };
    // Complete but too large.
    let big = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
    let (status, err, _) = one_reject(big.as_bytes(), &l);
    assert_eq!(status, 431);
    assert_eq!(err, HttpError::HeadTooLarge { limit: 64 });
    // Partial and already too large.
    let (status, _, _) = one_reject(&big.as_bytes()[..80], &l);
    assert_eq!(status, 431);
    // Growing byte by byte, with and without line ends.
    for input in [
        big.clone(),
        format!("GET / HTTP/1.1\r\n{}", "X-A: b\r\n".repeat(20)),
    ] {
        let now = t0();
        let mut s = ServerSession::new(now, &l);
        let mut outs = Vec::new();
        for &b in input.as_bytes() {
            s.handle_input(now, &[b], &l);
            outs.extend(drain(&mut s));
        }
        assert_eq!(outs.len(), 1);
        assert!(matches!(
            &outs[0],
            Output::Reject(_, HttpError::HeadTooLarge { .. })
        ));
    }
}

#[test]
fn too_many_headers_431() {
    let l = Limits {
        max_headers: 3,
        ..limits()
    };
    let ok = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    one_request_with(ok.as_bytes(), &l);
    let too_many = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    let (status, err, _) = one_reject(too_many.as_bytes(), &l);
    assert_eq!(status, 431);
    assert!(matches!(err, HttpError::HeadTooLarge { .. }));
    // More slots than fit on the stack.
    let l = Limits {
        max_headers: 200,
        max_head_bytes: 64 * 1024,
        ..limits()
    };
    let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    one_request_with(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), &l);
    let (status, _, _) = one_reject(
        format!("GET / HTTP/1.1\r\n{many}Y: 1\r\n\r\n").as_bytes(),
        &l,
    );
    assert_eq!(status, 431);
}

#[test]
fn malformed_400() {
    let l = limits();
    for input in [
        &b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"[..],
        b"GET  HTTP/1.1\r\n\r\n",
        b"\x00GET / HTTP/1.1\r\n\r\n",
        b"GET /%zz HTTP/1.1\r\n\r\n",
        b"GET /%4 HTTP/1.1\r\n\r\n",
        b"GET /a%00b HTTP/1.1\r\n\r\n",
        b"GET /%ff%fe HTTP/1.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET foo HTTP/1.1\r\n\r\n",
        b"GET * HTTP/1.1\r\n\r\n",
        b"GET http:///x HTTP/1.1\r\n\r\n",
        b"GET http://u@h/x HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
    ] {
        let (status, err, _) = one_reject(input, &l);
        assert_eq!(status, 400, "{:?}", String::from_utf8_lossy(input));
        assert!(matches!(err, HttpError::Malformed(_)), "{err:?}");
    }
}

#[test]
fn malformed_detected_before_head_ends() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET / HTTP/1.1\r\n", &l);
    assert!(s.poll_output().is_none());
    s.handle_input(now, b"Bad Header\r\n", &l);
    assert!(matches!(
        s.poll_output(),
        Some(Output::Reject(_, HttpError::Malformed(_)))
    ));
}

#[test]
fn method_not_allowed_405() {
    let l = limits();
    for input in [
        &b"POST /api HTTP/1.1\r\n\r\n"[..],
        b"DELETE / HTTP/1.1\r\n\r\n",
        b"PUT / HTTP/1.1\r\n\r\n",
        b"BREW / HTTP/1.1\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
    ] {
        let (status, err, bytes) = one_reject(input, &l);
        assert_eq!(status, 405);
        assert!(matches!(err, HttpError::MethodNotAllowed(_)));
        let head = parse_head(&bytes);
        assert_eq!(head.header("allow").as_deref(), Some("GET, HEAD, OPTIONS"));
    }
    let (_, err, _) = one_reject(b"BREW / HTTP/1.1\r\n\r\n", &l);
    assert_eq!(err, HttpError::MethodNotAllowed("BREW".to_owned()));
    assert_eq!(
        one_request(b"OPTIONS * HTTP/1.1\r\n\r\n").method,
        Method::Options
    );
    let write = Limits {
        allow_write_methods: true,
        ..limits()
    };
    for (input, method) in [
        (&b"POST /api HTTP/1.1\r\n\r\n"[..], Method::Post),
        (b"PUT /api HTTP/1.1\r\n\r\n", Method::Put),
        (b"DELETE /api HTTP/1.1\r\n\r\n", Method::Delete),
        (
            b"PATCH /api HTTP/1.1\r\n\r\n",
            Method::Other("PATCH".into()),
        ),
    ] {
        assert_eq!(one_request_with(input, &write).0.method, method);
    }
}

#[test]
fn bodies_rejected_when_not_allowed() {
    let l = limits();
    for input in [
        &b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
    ] {
        let (status, err, _) = one_reject(input, &l);
        assert_eq!(status, 400);
        assert!(matches!(err, HttpError::UnexpectedBody(_)), "{err:?}");
    }
    assert_eq!(
        one_request(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").content_length,
        0
    );
}

#[test]
fn content_length_bodies_when_allowed() {
    let l = body_limits(16);
    let (req, body) = one_request_with(b"POST /api HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", &l);
    assert_eq!(req.content_length, 5);
    assert_eq!(body, b"hello");

    // Split body, then a pipelined request in the same chunk as its end.
    let now = t0();
    let mut s = ServerSession::new(now, &l);
    s.handle_input(
        now,
        b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123",
        &l,
    );
    assert!(s.poll_output().is_none());
    assert_eq!(s.poll_timeout(), Some(now + l.head_timeout));
    let later = now + Duration::from_secs(1);
    s.handle_input(later, b"45", &l);
    assert_eq!(s.poll_timeout(), Some(later + l.head_timeout));
    s.handle_input(later, b"6789GET /b HTTP/1.1\r\n\r\n", &l);
    let Some(Output::Request(req, body)) = s.poll_output() else {
        panic!()
    };
    assert_eq!(req.path, "/a");
    assert_eq!(body, b"0123456789");
    assert!(s.poll_output().is_none());
    s.response_done(later, &l);
    let Some(Output::Request(req, body)) = s.poll_output() else {
        panic!()
    };
    assert_eq!(req.path, "/b");
    assert!(body.is_empty());

    // Body byte at a time.
    let mut s = ServerSession::new(now, &l);
    for &b in b"PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".iter() {
        s.handle_input(now, &[b], &l);
    }
    let Some(Output::Request(_, body)) = s.poll_output() else {
        panic!()
    };
    assert_eq!(body, b"abc");

    let (status, err, _) = one_reject(b"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", &l);
    assert_eq!(status, 413);
    assert_eq!(err, HttpError::BodyTooLarge { limit: 16 });
    let (status, err, _) = one_reject(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        &l,
    );
    assert_eq!(status, 411);
    assert!(matches!(err, HttpError::UnexpectedBody(_)));
    let (status, _, _) = one_reject(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        &l,
    );
    assert_eq!(status, 400);
}

#[test]
fn body_stall_times_out_408() {
    let now = t0();
    let l = body_limits(100);
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", &l);
    let deadline = s.poll_timeout().unwrap();
    s.handle_timeout(deadline, &l);
    let Some(Output::Reject(bytes, HttpError::Timeout)) = s.poll_output() else {
        panic!()
    };
    assert_eq!(parse_head(&bytes).status, 408);
}

#[test]
fn version_505() {
    let l = limits();
    for input in [
        &b"GET / HTTP/2.0\r\n\r\n"[..],
        b"GET / HTTP/1.2\r\n\r\n",
        b"GET / HTTP/3\r\n\r\n",
    ] {
        let (status, err, _) = one_reject(input, &l);
        assert_eq!(status, 505, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(err, HttpError::Version);
    }
}

#[test]
fn reject_responses_are_complete() {
    let (_, _, bytes) = one_reject(b"GET /%zz HTTP/1.1\r\n\r\n", &limits());
    let head = parse_head(&bytes);
    assert_eq!(head.status, 400);
    assert_eq!(head.header("server").as_deref(), Some("spate"));
    assert_eq!(head.header("connection").as_deref(), Some("close"));
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    assert_eq!(len, head.body.len());
}

#[test]
fn idle_timeout_closes() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, now + l.idle_timeout);
    s.handle_timeout(deadline - Duration::from_millis(1), &l);
    assert!(s.poll_output().is_none());
    s.handle_timeout(deadline, &l);
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn head_timeout_408() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    let first = now + Duration::from_secs(3);
    s.handle_input(first, b"GET / HTTP/1.1\r\n", &l);
    assert_eq!(s.poll_timeout(), Some(first + l.head_timeout));
    // More bytes do not extend the head deadline (slowloris).
    s.handle_input(first + Duration::from_secs(5), b"Host: a\r\n", &l);
    s.handle_input(first + Duration::from_secs(6), b"X", &l);
    assert_eq!(s.poll_timeout(), Some(first + l.head_timeout));
    s.handle_timeout(first + Duration::from_secs(9), &l);
    assert!(s.poll_output().is_none());
    s.handle_timeout(first + l.head_timeout, &l);
    let out = drain(&mut s);
    let [Output::Reject(bytes, HttpError::Timeout)] = out.as_slice() else {
        panic!("{out:?}")
    };
    let head = parse_head(bytes);
    assert_eq!(head.status, 408);
    assert_eq!(head.header("connection").as_deref(), Some("close"));
    assert_eq!(head.header("date"), None);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn no_timeout_while_serving() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET / HTTP/1.1\r\n\r\n", &l);
    assert_eq!(s.poll_timeout(), None);
    assert!(s.poll_output().is_some());
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(now + Duration::from_secs(3600), &l);
    assert!(s.poll_output().is_none());
    s.response_done(now + Duration::from_secs(3600), &l);
    assert_eq!(
        s.poll_timeout(),
        Some(now + Duration::from_secs(3600) + l.idle_timeout)
    );
}

#[test]
fn huge_timeouts_do_not_overflow() {
    let now = t0();
    let l = Limits {
        head_timeout: Duration::MAX,
        idle_timeout: Duration::MAX,
        ..limits()
    };
    let mut s = ServerSession::new(now, &l);
    assert_eq!(s.poll_timeout(), None);
    s.handle_input(now, b"GET", &l);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn eof_handling() {
    let now = t0();
    let l = limits();
    // Idle.
    let mut s = ServerSession::new(now, &l);
    s.handle_eof();
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));
    // Mid-head.
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET / HT", &l);
    s.handle_eof();
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));
    assert_eq!(s.buffered_capacity(), 0);
    // While serving: close after the response.
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", &l);
    assert!(matches!(s.poll_output(), Some(Output::Request(..))));
    s.handle_eof();
    assert!(s.poll_output().is_none());
    s.response_done(now, &l);
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));
    // Request received but not yet polled: it goes out as the last one.
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET / HTTP/1.1\r\n\r\n", &l);
    s.handle_eof();
    let Some(Output::Request(req, _)) = s.poll_output() else {
        panic!()
    };
    assert!(!req.keep_alive);
    s.response_done(now, &l);
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));
}

#[test]
fn close_after_response_for_shutdown() {
    let now = t0();
    let l = limits();
    let mut s = ServerSession::new(now, &l);
    s.close_after_response();
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));

    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET / HTTP/1.1\r\n\r\n", &l);
    assert!(matches!(s.poll_output(), Some(Output::Request(..))));
    s.close_after_response();
    assert!(s.poll_output().is_none());
    s.response_done(now, &l);
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));

    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET / HTTP/1.1\r\n\r\n", &l);
    s.close_after_response();
    let Some(Output::Request(req, _)) = s.poll_output() else {
        panic!()
    };
    assert!(!req.keep_alive);

    // A partial head is still completed and served, as the last request.
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET / HTTP/1.1\r\n", &l);
    s.close_after_response();
    assert!(s.poll_output().is_none());
    s.handle_input(now, b"\r\n", &l);
    let Some(Output::Request(req, _)) = s.poll_output() else {
        panic!()
    };
    assert!(!req.keep_alive);
    s.response_done(now, &l);
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));
}

#[test]
fn pipelining_backlog_is_bounded() {
    let now = t0();
    let l = Limits {
        max_head_bytes: 100,
        ..limits()
    };
    let mut s = ServerSession::new(now, &l);
    s.handle_input(now, b"GET / HTTP/1.1\r\n\r\n", &l);
    assert!(matches!(s.poll_output(), Some(Output::Request(..))));
    for _ in 0..20 {
        s.handle_input(now, b"GET /again HTTP/1.1\r\n\r\n", &l);
    }
    assert!(s.buffered_capacity() <= 256);
    s.response_done(now, &l);
    assert!(matches!(drain(&mut s).as_slice(), [Output::Close]));
}

#[test]
fn request_fields() {
    let r = one_request(
        b"GET /v%C3%A9d%20o/a+b.ts?x=%20&y HTTP/1.1\r\nhost:  h.example:8080 \r\nIf-None-Match: \"a\"\r\nIf-None-Match: W/\"b\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nORIGIN: null\r\nRange: bytes=-500\r\n\r\n",
    );
    assert_eq!(r.target, "/v%C3%A9d%20o/a+b.ts?x=%20&y");
    assert_eq!(r.path, "/véd o/a+b.ts");
    assert_eq!(r.query.as_deref(), Some("x=%20&y"));
    assert_eq!(r.host.as_deref(), Some("h.example:8080"));
    assert_eq!(r.if_none_match.as_deref(), Some("\"a\", W/\"b\""));
    assert_eq!(
        r.if_modified_since.as_deref(),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    assert_eq!(r.origin.as_deref(), Some("null"));
    assert_eq!(r.range, Some(RangeSpec::Suffix(500)));

    // Encoded '/' and '?' stay in the path, decoded.
    let r = one_request(b"GET /a%2Fb%3Fc? HTTP/1.1\r\n\r\n");
    assert_eq!(r.path, "/a/b?c");
    assert_eq!(r.query.as_deref(), Some(""));
    // Absolute-form: path part served, authority is the host.
    let r =
        one_request(b"GET http://Cdn.Example/hls/x/index.m3u8?a=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(r.path, "/hls/x/index.m3u8");
    assert_eq!(r.query.as_deref(), Some("a=1"));
    assert_eq!(r.host.as_deref(), Some("Cdn.Example"));
    let r = one_request(b"HEAD HTTPS://h HTTP/1.1\r\n\r\n");
    assert_eq!(r.path, "/");
    assert_eq!(r.method, Method::Head);
    // Asterisk-form for OPTIONS.
    let r = one_request(b"OPTIONS * HTTP/1.1\r\n\r\n");
    assert_eq!(r.path, "*");
    // Two Range headers: ignored.
    let r = one_request(b"GET / HTTP/1.1\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n");
    assert_eq!(r.range, None);
    // Leading empty lines are skipped (RFC 9112 §2.2).
    assert_eq!(one_request(b"\r\n\r\nGET /x HTTP/1.1\r\n\r\n").path, "/x");
    // Bare LF line ends.
    assert_eq!(
        one_request(b"GET /y HTTP/1.1\nHost: h\n\n").host.as_deref(),
        Some("h")
    );
}

#[test]
fn percent_decoding() {
    use super::percent_decode;
    assert_eq!(percent_decode("/plain").unwrap(), "/plain");
    assert_eq!(percent_decode("/a%20b%2fc").unwrap(), "/a b/c");
    assert_eq!(percent_decode("/%E6%97%A5").unwrap(), "/日");
    assert_eq!(percent_decode("/%e6%97%a5").unwrap(), "/日");
    for bad in ["/%", "/%2", "/%g0", "/%00", "/%C3", "/%80", "/%%41"] {
        assert!(
            matches!(percent_decode(bad), Err(HttpError::Malformed(_))),
            "{bad}"
        );
    }
}

#[test]
fn range_parsing() {
    let ft = |first, last| Some(RangeSpec::FromTo { first, last });
    assert_eq!(RangeSpec::parse("bytes=0-499"), ft(0, Some(499)));
    assert_eq!(RangeSpec::parse("bytes=500-"), ft(500, None));
    assert_eq!(RangeSpec::parse("bytes=-10"), Some(RangeSpec::Suffix(10)));
    assert_eq!(RangeSpec::parse("Bytes=7-7"), ft(7, Some(7)));
    assert_eq!(RangeSpec::parse(" bytes = 1-2 "), ft(1, Some(2)));
    for bad in [
        "bytes=0-1,5-6",
        "bytes=0-1, 5-6",
        "items=0-1",
        "bytes=abc",
        "bytes=5-3",
        "bytes=-",
        "bytes=",
        "bytes 0-1",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=99999999999999999999-",
        "",
    ] {
        assert_eq!(RangeSpec::parse(bad), None, "{bad}");
    }
}

// --------------------------------------------------------------- response

const MODIFIED_SECS: u64 = 1_700_000_000;

fn get(extra: &str) -> Request {
    one_request(format!("GET /v.mp4 HTTP/1.1\r\nHost: h\r\n{extra}\r\n").as_bytes())
}

fn entity(len: u64) -> Entity {
    Entity {
        len,
        modified: Some(UNIX_EPOCH + Duration::new(MODIFIED_SECS, 500_000_000)),
        etag: Some("\"100-1700000000\"".to_owned()),
        content_type: "video/mp4",
        cache_control: Some("max-age=60"),
    }
}

fn now_wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(MODIFIED_SECS + 3600)
}

#[test]
fn entity_200() {
    let d = response::for_entity(&get(""), &entity(100), now_wall(), true);
    assert_eq!(d.status, 200);
    assert_eq!(d.body, Some(0..100));
    let h = parse_head(&d.head);
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("server").as_deref(), Some("spate"));
    assert_eq!(
        h.header("date").as_deref(),
        Some("Tue, 14 Nov 2023 23:13:20 GMT")
    );
    assert_eq!(h.header("content-type").as_deref(), Some("video/mp4"));
    assert_eq!(h.header("content-length").as_deref(), Some("100"));
    assert_eq!(h.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(h.header("etag").as_deref(), Some("\"100-1700000000\""));
    assert_eq!(
        h.header("last-modified").as_deref(),
        Some("Tue, 14 Nov 2023 22:13:20 GMT")
    );
    assert_eq!(h.header("cache-control").as_deref(), Some("max-age=60"));
    assert_eq!(
        h.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(h.header("connection"), None);
    assert_eq!(h.header("content-range"), None);
}

#[test]
fn entity_connection_header() {
    let d = response::for_entity(&get(""), &entity(1), now_wall(), false);
    assert_eq!(
        parse_head(&d.head).header("connection").as_deref(),
        Some("close")
    );
    // The request's own keep-alive wins too.
    let d = response::for_entity(&get("Connection: close\r\n"), &entity(1), now_wall(), true);
    assert_eq!(
        parse_head(&d.head).header("connection").as_deref(),
        Some("close")
    );
    let r10 = one_request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let d = response::for_entity(&r10, &entity(1), now_wall(), true);
    assert_eq!(
        parse_head(&d.head).header("connection").as_deref(),
        Some("keep-alive")
    );
    let r10 = one_request(b"GET / HTTP/1.0\r\n\r\n");
    let d = response::for_entity(&r10, &entity(1), now_wall(), true);
    assert_eq!(
        parse_head(&d.head).header("connection").as_deref(),
        Some("close")
    );
}

fn ranged(
    range: &str,
    len: u64,
) -> (
    u16,
    Option<String>,
    Option<String>,
    Option<std::ops::Range<u64>>,
) {
    let d = response::for_entity(
        &get(&format!("Range: {range}\r\n")),
        &entity(len),
        now_wall(),
        true,
    );
    let h = parse_head(&d.head);
    assert_eq!(h.status, d.status);
    (
        d.status,
        h.header("content-range"),
        h.header("content-length"),
        d.body,
    )
}

#[test]
fn entity_ranges() {
    let s = |x: &str| Some(x.to_owned());
    assert_eq!(
        ranged("bytes=0-9", 100),
        (206, s("bytes 0-9/100"), s("10"), Some(0..10))
    );
    assert_eq!(
        ranged("bytes=10-", 100),
        (206, s("bytes 10-99/100"), s("90"), Some(10..100))
    );
    assert_eq!(
        ranged("bytes=-10", 100),
        (206, s("bytes 90-99/100"), s("10"), Some(90..100))
    );
    // Suffix longer than the entity: all of it.
    assert_eq!(
        ranged("bytes=-1000", 100),
        (206, s("bytes 0-99/100"), s("100"), Some(0..100))
    );
    // `last` clamped.
    assert_eq!(
        ranged("bytes=50-1000", 100),
        (206, s("bytes 50-99/100"), s("50"), Some(50..100))
    );
    assert_eq!(
        ranged("bytes=99-99", 100),
        (206, s("bytes 99-99/100"), s("1"), Some(99..100))
    );
    // Unsatisfiable.
    for (range, len) in [
        ("bytes=100-", 100),
        ("bytes=100-200", 100),
        ("bytes=-0", 100),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-5", 0),
    ] {
        let expect = format!("bytes */{len}");
        assert_eq!(
            ranged(range, len),
            (416, Some(expect), s("0"), None),
            "{range} on {len}"
        );
    }
    // Ignored ranges: a plain 200.
    assert_eq!(ranged("bytes=0-1,3-4", 100).0, 200);
    assert_eq!(ranged("lines=0-1", 100).0, 200);
}

#[test]
fn entity_head_method() {
    let head = one_request(b"HEAD /v.mp4 HTTP/1.1\r\n\r\n");
    let d = response::for_entity(&head, &entity(100), now_wall(), true);
    let g = response::for_entity(&get(""), &entity(100), now_wall(), true);
    assert_eq!(d.status, 200);
    assert_eq!(d.body, None);
    assert_eq!(d.head, g.head);
    let head = one_request(b"HEAD /v.mp4 HTTP/1.1\r\nRange: bytes=10-19\r\n\r\n");
    let d = response::for_entity(&head, &entity(100), now_wall(), true);
    assert_eq!(d.status, 206);
    assert_eq!(d.body, None);
    assert_eq!(
        parse_head(&d.head).header("content-length").as_deref(),
        Some("10")
    );
}

#[test]
fn entity_empty() {
    let d = response::for_entity(&get(""), &entity(0), now_wall(), true);
    assert_eq!(d.status, 200);
    assert_eq!(d.body, None);
    assert_eq!(
        parse_head(&d.head).header("content-length").as_deref(),
        Some("0")
    );
}

fn status_with(extra: &str, e: &Entity) -> u16 {
    let d = response::for_entity(&get(extra), e, now_wall(), true);
    assert_eq!(parse_head(&d.head).status, d.status);
    if d.status == 304 {
        assert_eq!(d.body, None);
        let h = parse_head(&d.head);
        assert_eq!(h.header("content-length"), None);
        assert_eq!(h.header("etag"), e.etag.clone());
    }
    d.status
}

#[test]
fn entity_not_modified() {
    let e = entity(100);
    assert_eq!(
        status_with("If-None-Match: \"100-1700000000\"\r\n", &e),
        304
    );
    assert_eq!(
        status_with("If-None-Match: W/\"100-1700000000\"\r\n", &e),
        304
    );
    assert_eq!(status_with("If-None-Match: *\r\n", &e), 304);
    assert_eq!(
        status_with(
            "If-None-Match: \"x\", W/\"y,z\" ,\"100-1700000000\"\r\n",
            &e
        ),
        304
    );
    assert_eq!(
        status_with(
            "If-None-Match: \"x\"\r\nIf-None-Match: \"100-1700000000\"\r\n",
            &e
        ),
        304
    );
    assert_eq!(status_with("If-None-Match: \"other\"\r\n", &e), 200);
    assert_eq!(status_with("If-None-Match: garbage\r\n", &e), 200);
    assert_eq!(status_with("If-None-Match: \"100-1700000000\r\n", &e), 200);
    // Weak entity tag on our side compares weakly too.
    let weak = Entity {
        etag: Some("W/\"abc\"".to_owned()),
        ..entity(100)
    };
    assert_eq!(status_with("If-None-Match: \"abc\"\r\n", &weak), 304);
    // If-Modified-Since, at second precision (modified has .5 s).
    assert_eq!(
        status_with("If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n", &e),
        304
    );
    assert_eq!(
        status_with("If-Modified-Since: Tue, 14 Nov 2023 23:00:00 GMT\r\n", &e),
        304
    );
    assert_eq!(
        status_with("If-Modified-Since: Tue, 14 Nov 2023 22:13:19 GMT\r\n", &e),
        200
    );
    assert_eq!(status_with("If-Modified-Since: yesterday\r\n", &e), 200);
    // If-None-Match takes precedence over If-Modified-Since.
    assert_eq!(
        status_with(
            "If-None-Match: \"other\"\r\nIf-Modified-Since: Tue, 14 Nov 2023 23:00:00 GMT\r\n",
            &e
        ),
        200
    );
    // Conditional before range.
    assert_eq!(
        status_with(
            "If-None-Match: \"100-1700000000\"\r\nRange: bytes=0-1\r\n",
            &e
        ),
        304
    );
    // No validators on the entity: only `*` matches; IMS needs a time.
    let bare = Entity {
        etag: None,
        modified: None,
        ..entity(100)
    };
    assert_eq!(status_with("If-None-Match: *\r\n", &bare), 304);
    assert_eq!(status_with("If-None-Match: \"a\"\r\n", &bare), 200);
    assert_eq!(
        status_with(
            "If-Modified-Since: Tue, 14 Nov 2023 23:00:00 GMT\r\n",
            &bare
        ),
        200
    );
    // 304 without ETag carries Last-Modified.
    let no_tag = Entity {
        etag: None,
        ..entity(100)
    };
    let d = response::for_entity(
        &get("If-Modified-Since: Tue, 14 Nov 2023 23:00:00 GMT\r\n"),
        &no_tag,
        now_wall(),
        true,
    );
    assert_eq!(d.status, 304);
    assert_eq!(
        parse_head(&d.head).header("last-modified").as_deref(),
        Some("Tue, 14 Nov 2023 22:13:20 GMT")
    );
}

#[test]
fn dates_out_of_range_do_not_panic() {
    let e = Entity {
        modified: Some(UNIX_EPOCH - Duration::from_secs(10)),
        ..entity(10)
    };
    let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
    let d = response::for_entity(&get(""), &e, far, true);
    let h = parse_head(&d.head);
    assert_eq!(
        h.header("last-modified").as_deref(),
        Some("Thu, 01 Jan 1970 00:00:00 GMT")
    );
    assert_eq!(
        h.header("date").as_deref(),
        Some("Fri, 31 Dec 9999 23:59:59 GMT")
    );
}

#[test]
fn simple_responses() {
    let bytes = response::simple(
        404,
        "not found\n",
        &[("X-A", "1"), ("Allow", "GET")],
        now_wall(),
        true,
    );
    let h = parse_head(&bytes);
    assert_eq!(h.status, 404);
    assert_eq!(h.body, b"not found\n");
    assert_eq!(h.header("server").as_deref(), Some("spate"));
    assert_eq!(
        h.header("date").as_deref(),
        Some("Tue, 14 Nov 2023 23:13:20 GMT")
    );
    assert_eq!(
        h.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(h.header("content-length").as_deref(), Some("10"));
    assert_eq!(
        h.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(h.header("x-a").as_deref(), Some("1"));
    assert_eq!(h.header("allow").as_deref(), Some("GET"));
    assert_eq!(h.header("connection"), None);

    let bytes = response::simple(200, "{\"ok\":true}", &[], now_wall(), false);
    let h = parse_head(&bytes);
    assert_eq!(
        h.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(h.header("content-length").as_deref(), Some("11"));
    assert_eq!(h.header("connection").as_deref(), Some("close"));
    assert_eq!(h.body, b"{\"ok\":true}");

    let bytes = response::simple(204, "", &[], now_wall(), true);
    let h = parse_head(&bytes);
    assert_eq!(h.status, 204);
    assert_eq!(h.header("content-length").as_deref(), Some("0"));
}

#[test]
fn content_types() {
    use response::content_type_for as ct;
    let cases = [
        ("/hls/a/index.m3u8", "application/vnd.apple.mpegurl"),
        ("/a.ts", "video/mp2t"),
        ("/seg-1.m4s", "video/iso.segment"),
        ("/a.mp4", "video/mp4"),
        ("/a.m4v", "video/mp4"),
        ("/a.m4a", "audio/mp4"),
        ("/cmaf/a/index.mpd", "application/dash+xml"),
        ("/a.flv", "video/x-flv"),
        ("/a.webm", "video/webm"),
        ("/a.mkv", "video/x-matroska"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/index.htm", "text/html; charset=utf-8"),
        ("/json_a.js", "text/javascript; charset=utf-8"),
        ("/a.json", "application/json"),
        ("/a.css", "text/css; charset=utf-8"),
        ("/a.txt", "text/plain; charset=utf-8"),
        ("/a.svg", "image/svg+xml"),
        ("/a.png", "image/png"),
        ("/a.jpg", "image/jpeg"),
        ("/a.jpeg", "image/jpeg"),
        ("/a.vtt", "text/vtt; charset=utf-8"),
        ("/a.aac", "audio/aac"),
        ("/a.mp3", "audio/mpeg"),
        ("/A.M3U8", "application/vnd.apple.mpegurl"),
        ("/Video.MP4", "video/mp4"),
        ("/a.TS", "video/mp2t"),
        ("/noext", "application/octet-stream"),
        ("/dir.ts/noext", "application/octet-stream"),
        ("/a.unknown", "application/octet-stream"),
        ("/a.", "application/octet-stream"),
        ("", "application/octet-stream"),
        ("/a.tar.gz", "application/octet-stream"),
        ("a.flv", "video/x-flv"),
    ];
    for (path, expected) in cases {
        assert_eq!(ct(path), expected, "{path}");
    }
}

#[test]
fn reasons() {
    assert_eq!(response::reason(200), "OK");
    assert_eq!(response::reason(206), "Partial Content");
    assert_eq!(response::reason(304), "Not Modified");
    assert_eq!(response::reason(404), "Not Found");
    assert_eq!(response::reason(416), "Range Not Satisfiable");
    assert_eq!(response::reason(431), "Request Header Fields Too Large");
    assert_eq!(response::reason(505), "HTTP Version Not Supported");
    assert_eq!(response::reason(499), "Client Error");
    assert_eq!(response::reason(999), "Server Error");
}

#[test]
fn if_modified_since_in_the_future_is_ignored() {
    use std::time::{Duration, UNIX_EPOCH};
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let modified = now - Duration::from_secs(3600);
    let mut req = crate::http::Request {
        method: crate::http::Method::Get,
        target: "/a.ts".into(),
        path: "/a.ts".into(),
        query: None,
        version: crate::http::Version::Http11,
        keep_alive: true,
        host: Some("h".into()),
        range: None,
        if_none_match: None,
        if_modified_since: Some(httpdate::fmt_http_date(now + Duration::from_secs(86_400))),
        origin: None,
        content_length: 0,
    };
    let entity = crate::http::response::Entity {
        len: 10,
        modified: Some(modified),
        etag: None,
        content_type: "video/mp2t",
        cache_control: None,
    };
    let d = crate::http::response::for_entity(&req, &entity, now, true);
    assert_eq!(d.status, 200, "a future If-Modified-Since must be ignored");
    req.if_modified_since = Some(httpdate::fmt_http_date(now));
    let d = crate::http::response::for_entity(&req, &entity, now, true);
    assert_eq!(d.status, 304);
}
