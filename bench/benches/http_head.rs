//! The HTTP request/response head hot path, per request:
//! - `session_get_head`: a keep-alive `ServerSession` takes a typical player
//!   GET head (one chunk), yields the `Request`, and is told the response is
//!   done;
//! - `response_for_entity`: `response::for_entity` writes the 200 head for a
//!   256 KiB segment;
//! - `request_and_response`: both, as the engine runs them per request.
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spate_protocols::http::response::{self, Entity};
use spate_protocols::http::{Limits, Output, Request, ServerSession};

/// What hls.js in Chromium sends for a segment, give or take.
const GET_HEAD: &[u8] = b"GET /hls/live/seg_00042.ts HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
Connection: keep-alive\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\
Accept: */*\r\n\
Origin: http://127.0.0.1:8080\r\n\
Referer: http://127.0.0.1:8080/player.html\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\r\n";

fn entity() -> Entity {
    Entity {
        len: 256 * 1024,
        modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        etag: Some("\"40000-6553f100\"".into()),
        content_type: "video/mp2t",
        cache_control: Some("public, max-age=60"),
    }
}

/// Feed one head, take the request, finish the response.
fn one_request(session: &mut ServerSession, now: Instant, limits: &Limits) -> Request {
    session.handle_input(now, GET_HEAD, limits);
    let req = match session.poll_output() {
        Some(Output::Request(req, _body)) => req,
        other => panic!("expected a request, got {other:?}"),
    };
    session.response_done(now, limits);
    req
}

fn benches(c: &mut Criterion) {
    let limits = Limits::default();
    let now = Instant::now();
    let entity = entity();
    let date = SystemTime::now();

    let mut g = c.benchmark_group("http_head");
    g.throughput(Throughput::Elements(1));

    let mut session = ServerSession::new(now, &limits);
    g.bench_function("session_get_head", |b| {
        b.iter(|| black_box(one_request(&mut session, black_box(now), &limits)))
    });

    let mut session = ServerSession::new(now, &limits);
    let req = one_request(&mut session, now, &limits);
    g.bench_function("response_for_entity", |b| {
        b.iter(|| black_box(response::for_entity(black_box(&req), &entity, date, true)))
    });

    let mut session = ServerSession::new(now, &limits);
    g.bench_function("request_and_response", |b| {
        b.iter(|| {
            let req = one_request(&mut session, black_box(now), &limits);
            black_box(response::for_entity(&req, &entity, date, true))
        })
    });
    g.finish();
}

criterion_group!(http_head, benches);
criterion_main!(http_head);
