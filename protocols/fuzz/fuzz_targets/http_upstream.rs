//! Arbitrary bytes as an upstream HTTP response (a pull source's origin, a
//! trigger handler): the head parser on every prefix the engine would see,
//! then the body through the chunked decoder, split at arbitrary points.
//! Invariants: no panic; decoding in pieces gives the same data and the
//! same verdict as decoding in one go; `feed_counted` never claims more bytes
//! than it got, and the bytes it claims end the body on their own.
//!
//! Input layout: `[n][n split sizes][response bytes...]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spate_protocols::http::upstream::{ChunkedDecoder, parse_head};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 16).min(rest.len());
    let (sizes, wire) = rest.split_at(n);

    // The engine parses the head again as bytes arrive.
    for end in [wire.len() / 3, wire.len() / 2, wire.len()] {
        let _ = parse_head(&wire[..end]);
    }
    let body = match parse_head(wire) {
        Ok(Some(h)) => {
            let _ = h.chunked();
            &wire[h.len..]
        }
        _ => wire,
    };

    let mut whole = ChunkedDecoder::new();
    let mut whole_out = Vec::new();
    let whole_verdict = whole.feed(body, |d| whole_out.extend_from_slice(d));

    // feed_counted says how many bytes the body used (the next response on
    // a keep-alive connection starts after them): never more than it was
    // given, and once done, those bytes alone decode to the same body.
    let mut counted = ChunkedDecoder::new();
    let mut counted_out = Vec::new();
    if let Ok((used, done)) = counted.feed_counted(body, |d| counted_out.extend_from_slice(d)) {
        assert!(used <= body.len(), "used {used} of {} bytes", body.len());
        assert_eq!(counted_out, whole_out, "feed_counted and feed differ");
        if done {
            let mut again = ChunkedDecoder::new();
            let mut again_out = Vec::new();
            let r = again.feed_counted(&body[..used], |d| again_out.extend_from_slice(d));
            assert_eq!(
                r.ok(),
                Some((used, true)),
                "the used bytes alone do not end the body"
            );
            assert_eq!(again_out, whole_out);
        }
    }

    let mut split = ChunkedDecoder::new();
    let mut split_out = Vec::new();
    let mut verdict = Ok(false);
    let mut at = 0;
    let mut k = 0;
    while at < body.len() {
        let step = sizes.get(k).map_or(body.len(), |&s| s as usize + 1);
        k += 1;
        let end = (at + step).min(body.len());
        verdict = split.feed(&body[at..end], |d| split_out.extend_from_slice(d));
        at = end;
        if verdict.is_err() || verdict == Ok(true) {
            break;
        }
    }
    match (&whole_verdict, &verdict) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "split and whole decoding disagree on the end");
            assert_eq!(whole_out, split_out, "split and whole decoding differ");
        }
        (Err(_), Err(_)) => {}
        // A split can only stop earlier at the same error, or at the end.
        _ => {
            assert!(
                whole_out.starts_with(&split_out) || split_out.starts_with(&whole_out),
                "split decoding diverged: {whole_verdict:?} vs {verdict:?}"
            );
        }
    }
});
