//! Where an HTTP/1.1 response body ends, for the viewers: `Content-Length`
//! or `Transfer-Encoding: chunked` (MistServer and SRS answer playlists,
//! segments and progressive streams chunked). The head parser and the chunk
//! decoder are the ones Spate reads origins with
//! (`spate_protocols::http::upstream`); this adds the trailer section after
//! the last chunk, so a keep-alive connection's next response starts at the
//! right byte.
use spate_protocols::http::upstream::{self, ChunkedDecoder};

/// Longest trailer line accepted.
const MAX_TRAILER_LINE: usize = 8192;

/// How a response's body is delimited.
#[derive(Debug)]
pub enum Framing {
    /// `Content-Length` (0 for 204/304): bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Dechunk),
}

/// Parse a response head in `buf`: `Ok(None)` while incomplete, else the
/// status, the body's framing and the head's length. A body neither
/// chunked nor with a `Content-Length` is an error (on a keep-alive
/// connection its end could not be told).
pub fn response_framing(buf: &[u8]) -> Result<Option<(u16, Framing, usize)>, String> {
    let Some(h) = upstream::parse_head(buf)? else {
        return Ok(None);
    };
    let framing = if h.code == 204 || h.code == 304 {
        Framing::Length(0)
    } else if h.chunked() {
        Framing::Chunked(Dechunk::default())
    } else {
        match h.content_length {
            Some(Ok(n)) => Framing::Length(n),
            Some(Err(())) => return Err("bad Content-Length".into()),
            None => return Err("response with neither Content-Length nor chunked body".into()),
        }
    };
    Ok(Some((h.code, framing, h.len)))
}

/// A chunked body's decoder, trailers included.
#[derive(Debug, Default)]
pub struct Dechunk {
    dec: ChunkedDecoder,
    /// Once the last chunk came: bytes of the trailer line being read.
    trailer: Option<usize>,
    done: bool,
}

impl Dechunk {
    /// Decode `data`, handing body bytes to `out` (its first error stops
    /// the decoding and is returned; a framing error is made by `bad`).
    /// Returns the bytes of `data` used and whether the body, trailers and
    /// final CRLF included, is complete (the rest of `data` is not its).
    pub fn feed<E>(
        &mut self,
        data: &[u8],
        bad: impl Fn(String) -> E,
        mut out: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(usize, bool), E> {
        if self.done {
            return Ok((0, true));
        }
        let mut used = 0;
        if self.trailer.is_none() {
            let mut err = None;
            let r = self.dec.feed_counted(data, |d| {
                if err.is_none()
                    && let Err(e) = out(d)
                {
                    err = Some(e);
                }
            });
            // The body's error came before any framing error after it
            // (found by the `media_scan` fuzz target: split input made the
            // other one win).
            if let Some(e) = err {
                return Err(e);
            }
            let (n, last) = r.map_err(&bad)?;
            if !last {
                return Ok((n, false));
            }
            used = n;
            self.trailer = Some(0);
        }
        let line = self.trailer.as_mut().expect("set above");
        for &b in &data[used..] {
            used += 1;
            match b {
                b'\n' if *line == 0 => {
                    self.done = true;
                    return Ok((used, true));
                }
                b'\n' => *line = 0,
                b'\r' => {}
                _ => {
                    *line += 1;
                    if *line > MAX_TRAILER_LINE {
                        return Err(bad("trailer line too long".into()));
                    }
                }
            }
        }
        Ok((used, false))
    }
}

/// A body in chunks of `sizes` (cycled), with a trailer when `trailer`.
#[cfg(test)]
pub fn chunk(body: &[u8], sizes: &[usize], trailer: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    if trailer {
        out.extend_from_slice(b"X-Checksum: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(wire: &[u8], step: usize) -> (Vec<u8>, usize, bool) {
        let mut d = Dechunk::default();
        let mut body = Vec::new();
        let mut used = 0;
        let mut done = false;
        for piece in wire.chunks(step) {
            let (n, fin) = d
                .feed(
                    piece,
                    |e| e,
                    |b| {
                        body.extend_from_slice(b);
                        Ok(())
                    },
                )
                .unwrap();
            used += n;
            if fin {
                done = true;
                break;
            }
            assert_eq!(n, piece.len());
        }
        (body, used, done)
    }

    #[test]
    fn chunked_bodies_end_after_their_trailers_in_any_split() {
        let body: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        for trailer in [false, true] {
            let mut wire = chunk(&body, &[1, 700, 33], trailer);
            let end = wire.len();
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            for step in [1, 2, 5, 64, 4096] {
                let (b, used, done) = decode(&wire, step);
                assert!(done, "step {step}");
                assert_eq!(b, body, "step {step}");
                // What `feed` used of the pieces ends at the body's end.
                let whole = wire[..end].len();
                assert_eq!(used, whole, "step {step} trailer {trailer}");
            }
        }
    }

    #[test]
    fn bad_chunks_and_callback_errors_are_returned() {
        let mut d = Dechunk::default();
        let e = d.feed(b"zz\r\n", |e| e, |_| Ok(())).unwrap_err();
        assert!(e.contains("chunk size"), "{e}");
        let mut d = Dechunk::default();
        let e = d
            .feed(b"3\r\nabc\r\n", |e| e, |_| Err("stop".to_string()))
            .unwrap_err();
        assert_eq!(e, "stop");
        // A body error before a framing error later in the same input wins,
        // as it does when the input arrives split between them.
        let mut d = Dechunk::default();
        let e = d
            .feed(b"3\r\nabc\r\nzz\r\n", |e| e, |_| Err("stop".to_string()))
            .unwrap_err();
        assert_eq!(e, "stop");
        let mut d = Dechunk::default();
        let long = [b"0\r\n".as_slice(), &[b'x'; 9000]].concat();
        assert!(d.feed(&long, |e| e, |_| Ok(())).is_err());
    }

    #[test]
    fn framing_of_heads() {
        let f = |h: &[u8]| response_framing(h);
        assert!(f(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        let h = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody";
        let (s, fr, n) = f(h).unwrap().unwrap();
        assert_eq!((s, n), (200, h.len() - 4));
        assert!(matches!(fr, Framing::Length(12)));
        let (_, fr, _) = f(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(fr, Framing::Chunked(_)));
        let (s, fr, _) = f(b"HTTP/1.1 304 Not Modified\r\n\r\n").unwrap().unwrap();
        assert_eq!(s, 304);
        assert!(matches!(fr, Framing::Length(0)));
        assert!(
            f(b"HTTP/1.1 200 OK\r\n\r\n")
                .unwrap_err()
                .contains("neither")
        );
        assert!(f(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(f(b"garbage\r\n\r\n").is_err());
    }
}
