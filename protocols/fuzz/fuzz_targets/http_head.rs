//! Arbitrary bytes, split at arbitrary points, into an HTTP `ServerSession`;
//! every output is drained and every request answered at once.
//!
//! Input layout: `[config][n][n chunk sizes][payload...]`. The payload is the
//! HTTP byte stream, contiguous, so seeds are plain requests after a 2-byte
//! prefix (`\0\0` = default limits, one chunk). Config bits:
//! 0 small head limit (64 bytes), 1 at most 2 headers, 2 bodies and write
//! methods allowed, 3 EOF at the end, 4 `close_after_response` halfway,
//! 5 time advances 4 s per chunk and due timeouts fire.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use spate_protocols::http::{Limits, Output, ServerSession};

struct Harness {
    session: ServerSession,
    limits: Limits,
    now: Instant,
    ended: bool,
}

impl Harness {
    fn drain(&mut self) {
        while let Some(out) = self.session.poll_output() {
            assert!(!self.ended, "output after Reject/Close: {out:?}");
            match out {
                Output::Request(req, body) => {
                    assert_eq!(body.len() as u64, req.content_length);
                    assert!(req.content_length <= self.limits.max_body_bytes);
                    assert!(req.path.starts_with('/') || req.path == "*");
                    assert!(!req.path.contains('\0'));
                    // One request at a time: nothing more until it is done.
                    assert!(self.session.poll_output().is_none());
                    assert_eq!(self.session.poll_timeout(), None);
                    self.session.response_done(self.now, &self.limits);
                }
                Output::Reject(bytes, _) => {
                    assert!(bytes.starts_with(b"HTTP/1.1 "));
                    self.ended = true;
                }
                Output::Close => self.ended = true,
            }
        }
        if self.ended {
            assert_eq!(self.session.poll_timeout(), None);
            assert_eq!(self.session.buffered_capacity(), 0);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (config, rest) = match data {
        [c, rest @ ..] => (*c, rest),
        [] => return,
    };
    let (n, rest) = match rest {
        [n, rest @ ..] => (usize::from(*n % 17), rest),
        [] => (0, rest),
    };
    let (sizes, payload) = rest.split_at(n.min(rest.len()));

    let limits = Limits {
        max_head_bytes: if config & 1 != 0 { 64 } else { 16 * 1024 },
        max_headers: if config & 2 != 0 { 2 } else { 64 },
        max_body_bytes: if config & 4 != 0 { 100 } else { 0 },
        allow_write_methods: config & 4 != 0,
        head_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };
    // The harness, not the library, reads the clock once for a base.
    let now = Instant::now();
    let mut h = Harness {
        session: ServerSession::new(now, &limits),
        limits,
        now,
        ended: false,
    };

    let mut offset = 0;
    let mut i = 0;
    while offset < payload.len() {
        let len = if sizes.is_empty() {
            payload.len()
        } else {
            usize::from(sizes[i % sizes.len()]) + 1
        };
        i += 1;
        let end = (offset + len).min(payload.len());
        h.session
            .handle_input(h.now, &payload[offset..end], &h.limits);
        offset = end;
        h.drain();
        if config & 16 != 0 && offset * 2 >= payload.len() {
            h.session.close_after_response();
            h.drain();
        }
        if config & 32 != 0 {
            h.now += Duration::from_secs(4);
            if h.session.poll_timeout().is_some_and(|d| d <= h.now) {
                h.session.handle_timeout(h.now, &h.limits);
                h.drain();
            }
        }
    }
    if config & 8 != 0 {
        h.session.handle_eof();
        h.drain();
    }
});
