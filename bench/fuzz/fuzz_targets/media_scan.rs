//! What a load-tested server streams to a viewer, into spate-bench's
//! incremental scanners: the HTTP-FLV scanner, the HTTP-TS scanner, the
//! bare TS packet scanner (HLS TS segments), the fMP4 `moof` gatherer and
//! decoder (DASH / HLS-fMP4 segments) and the init-segment timescale
//! reader. Arbitrary bytes must give tags or an error, never a panic or
//! a hang.
//!
//! Input layout: `[n][n split sizes][stream...]`; the stream is fed in
//! pieces of those sizes (cycled, 0 = the rest). Checks: each scanner
//! reports the same tags and the same error split as whole (an error ends
//! the feed); the `moof` gatherer answers at most once per segment, and
//! never with an empty list; a response head's framing and its chunked
//! body decode to the same bytes, completion and bytes used either way.
#![no_main]
#![allow(dead_code)]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/flvparse.rs"]
mod flvparse;
#[path = "../../src/fmp4scan.rs"]
mod fmp4scan;
#[path = "../../src/httpbody.rs"]
mod httpbody;
#[path = "../../src/tsparse.rs"]
mod tsparse;

use flvparse::{HttpFlvScanner, ScanError, TagSeen};
use tsparse::{HttpTsScanner, TsPackets};

fn pieces<'a>(sizes: &[u8], mut data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while !data.is_empty() {
        let n = match sizes.get(i % sizes.len().max(1)).copied().unwrap_or(0) {
            0 => data.len(),
            n => usize::from(n).min(data.len()),
        };
        out.push(&data[..n]);
        data = &data[n..];
        i += 1;
    }
    out
}

type Feed<'a, S> = &'a dyn Fn(&mut S, &[u8], &mut Vec<TagSeen>) -> Result<(), ScanError>;

/// Tags and the first error, fed in `parts`.
fn scan<S>(mut s: S, parts: &[&[u8]], feed: Feed<'_, S>) -> (Vec<TagSeen>, Option<ScanError>) {
    let mut tags = Vec::new();
    for p in parts {
        if let Err(e) = feed(&mut s, p, &mut tags) {
            return (tags, Some(e));
        }
    }
    (tags, None)
}

fn same<S>(make: impl Fn() -> S, whole: &[u8], parts: &[&[u8]], feed: Feed<'_, S>, what: &str) {
    let a = scan(make(), &[whole], feed);
    let b = scan(make(), parts, feed);
    assert_eq!(a, b, "{what}: whole vs split");
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let parts = pieces(sizes, stream);

    same(
        HttpFlvScanner::new,
        stream,
        &parts,
        &|s, d, out| s.feed(d, |t| out.push(t)),
        "http-flv",
    );
    same(
        HttpTsScanner::new,
        stream,
        &parts,
        &|s, d, out| s.feed(d, |t| out.push(t)),
        "http-ts",
    );
    same(
        TsPackets::default,
        stream,
        &parts,
        &|s, d, out| s.feed(d, &mut |t| out.push(t)),
        "ts packets",
    );

    for timescale in [1, 1000, 90_000] {
        let mut g = fmp4scan::MoofGatherer::default();
        let mut got = None;
        for p in &parts {
            if let Some(t) = g.feed(p, timescale) {
                assert!(got.is_none(), "the gatherer answered twice");
                got = Some(t);
            }
        }
        let _ = fmp4scan::decode_times(stream, timescale);
        if let Some(t) = got {
            assert!(!t.is_empty());
        }
    }
    let _ = fmp4scan::init_timescale(stream);

    // The HLS/DASH engine's response framing and chunked decoder (trailers
    // included): the same body, used bytes and completion whole or split.
    if let Ok(Some((_, framing, head))) = httpbody::response_framing(stream) {
        assert!(head <= stream.len(), "head {head} of {}", stream.len());
        if let httpbody::Framing::Chunked(_) = framing {
            let body = &stream[head..];
            let dechunk = |parts: &[&[u8]]| {
                let mut d = httpbody::Dechunk::default();
                let mut out = Vec::new();
                let mut used = 0;
                for p in parts {
                    match d.feed(
                        p,
                        |e| e,
                        |b| {
                            out.extend_from_slice(b);
                            Ok(())
                        },
                    ) {
                        Ok((n, done)) => {
                            assert!(n <= p.len());
                            used += n;
                            if done {
                                return (out, used, Ok(true));
                            }
                        }
                        Err(e) => return (out, used, Err(e)),
                    }
                }
                (out, used, Ok(false))
            };
            let whole = dechunk(&[body]);
            let split = dechunk(&pieces(sizes, body));
            assert_eq!(whole.2.is_ok(), split.2.is_ok(), "chunked: whole vs split");
            if let (Ok(a), Ok(b)) = (&whole.2, &split.2) {
                assert_eq!(a, b, "chunked completion: whole vs split");
                assert_eq!(whole.0, split.0, "chunked body: whole vs split");
                if *a {
                    assert_eq!(whole.1, split.1, "chunked bytes used");
                }
            }
        }
    }
});
