//! HTTP/1.x responses Spate reads from other servers: an origin's body for
//! an `http://` pull source, a trigger handler's answer. Sans-IO like the
//! rest: [`parse_head`] takes the bytes received so far, [`ChunkedDecoder`]
//! takes body bytes in any split and hands the data out.

/// Most header lines in a response head.
pub const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (with extensions) accepted.
pub const MAX_CHUNK_LINE: usize = 1024;

/// What a response head says, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head (the body starts there).
    pub len: usize,
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
    /// `Content-Length`: `Err(())` when unparsable or given twice with
    /// different values (as bad as each other).
    pub content_length: Option<Result<u64, ()>>,
    /// `Transfer-Encoding`, every header joined with `, `.
    pub transfer_encoding: Option<String>,
    /// `Location`.
    pub location: Option<String>,
}

impl Head {
    /// The body is chunked (the last transfer coding is `chunked`).
    pub fn chunked(&self) -> bool {
        self.transfer_encoding.as_deref().is_some_and(|te| {
            te.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        })
    }
}

/// Parse a response head: `Ok(None)` while it is incomplete, `Err` with
/// what is wrong when it is not an HTTP/1.x response head.
pub fn parse_head(bytes: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(bytes) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let mut head = Head {
        len,
        code: resp.code.unwrap_or(0),
        reason: resp.reason.unwrap_or("").to_string(),
        content_length: None,
        transfer_encoding: None,
        location: None,
    };
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = value.parse::<u64>().map_err(|_| ());
            head.content_length = match head.content_length {
                Some(prev) if prev != v => Some(Err(())),
                _ => Some(v),
            };
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.transfer_encoding = Some(match head.transfer_encoding.take() {
                Some(prev) => format!("{prev}, {value}"),
                None => value,
            });
        } else if h.name.eq_ignore_ascii_case("location") {
            head.location = Some(value);
        }
    }
    Ok(Some(head))
}

/// A `Transfer-Encoding: chunked` body's decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedDecoder {
    /// Reading a chunk-size line (what came so far).
    Size(Vec<u8>),
    /// Inside a chunk: bytes left.
    Data(u64),
    /// After a chunk's data: CR LF (CR seen?).
    DataEnd(bool),
    /// The last (zero-size) chunk came.
    Done,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// At the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder::Size(Vec::new())
    }

    /// Decode `input`, handing the data to `out`; `Ok(true)` once the last
    /// chunk came (trailers are not read).
    pub fn feed(&mut self, input: &[u8], out: impl FnMut(&[u8])) -> Result<bool, String> {
        self.feed_counted(input, out).map(|(_, done)| done)
    }

    /// [`feed`](Self::feed), also saying how many bytes of `input` it used:
    /// all of them, or, when the last chunk's size line ends in `input`, up
    /// to that line's end (what follows — trailers and the final CRLF, then
    /// maybe the next response on a keep-alive connection — is the
    /// caller's).
    pub fn feed_counted(
        &mut self,
        mut input: &[u8],
        mut out: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), String> {
        let len = input.len();
        while !input.is_empty() {
            match self {
                ChunkedDecoder::Size(line) => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(input);
                        if line.len() > MAX_CHUNK_LINE {
                            return Err("chunk-size line too long".into());
                        }
                        return Ok((len, false));
                    };
                    line.extend_from_slice(&input[..nl]);
                    input = &input[nl + 1..];
                    if line.len() > MAX_CHUNK_LINE {
                        return Err("chunk-size line too long".into());
                    }
                    let text = String::from_utf8_lossy(line);
                    let hex = text.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size {hex:?}"))?;
                    *self = if size == 0 {
                        ChunkedDecoder::Done
                    } else {
                        ChunkedDecoder::Data(size)
                    };
                }
                ChunkedDecoder::Data(left) => {
                    let take = (*left).min(input.len() as u64) as usize;
                    out(&input[..take]);
                    input = &input[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        *self = ChunkedDecoder::DataEnd(false);
                    }
                }
                ChunkedDecoder::DataEnd(cr) => match input[0] {
                    b'\r' if !*cr => {
                        *cr = true;
                        input = &input[1..];
                    }
                    b'\n' => {
                        *self = ChunkedDecoder::Size(Vec::new());
                        input = &input[1..];
                    }
                    _ => return Err("chunk data not followed by CRLF".into()),
                },
                ChunkedDecoder::Done => return Ok((len - input.len(), true)),
            }
        }
        Ok((len, matches!(self, ChunkedDecoder::Done)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dechunk(parts: &[&[u8]]) -> Result<(Vec<u8>, bool), String> {
        let mut c = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut done = false;
        for p in parts {
            done = c.feed(p, |d| out.extend_from_slice(d))?;
        }
        Ok((out, done))
    }

    #[test]
    fn chunked_bodies_decode_across_reads() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        assert_eq!(dechunk(&[body]).unwrap(), (b"hello world".to_vec(), true));
        let split: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(dechunk(&split).unwrap(), (b"hello world".to_vec(), true));
        assert_eq!(
            dechunk(&[b"3\r\nabc\r\n2\r"]).unwrap(),
            (b"abc".to_vec(), false)
        );
        assert!(
            dechunk(&[b"zz\r\n"])
                .unwrap_err()
                .contains("bad chunk size")
        );
        assert!(dechunk(&[b"1\r\nab"]).unwrap_err().contains("CRLF"));
        assert!(dechunk(&[&[b'1'; 2000]]).unwrap_err().contains("too long"));
    }

    #[test]
    fn feed_counted_stops_after_the_last_chunk() {
        let wire = b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1";
        let mut c = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (used, done) = c.feed_counted(wire, |d| out.extend_from_slice(d)).unwrap();
        assert!(done);
        assert_eq!(out, b"abc");
        assert_eq!(&wire[used..], b"X-T: 1\r\n\r\nHTTP/1.1");
        let mut c = ChunkedDecoder::new();
        assert_eq!(c.feed_counted(b"3\r\nab", |_| {}).unwrap(), (5, false));
        assert_eq!(
            c.feed_counted(b"c\r\n0\r\n\r\n", |_| {}).unwrap(),
            (6, true)
        );
    }

    #[test]
    fn response_heads_parse() {
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
                .unwrap()
                .is_none()
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nxx")
            .unwrap()
            .unwrap();
        assert_eq!((h.code, h.content_length, h.len), (200, Some(Ok(10)), 39));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.content_length, Some(Err(())));
        let h = parse_head(b"HTTP/1.0 302 Found\r\nlocation: /x.ts\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.code, h.location.as_deref()), (302, Some("/x.ts")));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.chunked());
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(!h.chunked(), "chunked must be the last coding");
        assert!(parse_head(b"\x47\x00\x11garbage\r\n\r\n").is_err());
    }

    /// `body` chunk-encoded with chunk sizes taken in turn from `sizes`.
    fn encode(body: &[u8], sizes: &[usize], ext: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            i += 1;
            out.extend_from_slice(format!("{n:x}").as_bytes());
            if ext {
                out.extend_from_slice(b";name=value");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        #[test]
        fn chunked_round_trip_in_any_split(
            body in proptest::collection::vec(any::<u8>(), 0..4000),
            sizes in proptest::collection::vec(1usize..700, 1..8),
            cuts in proptest::collection::vec(0usize..5000, 0..12),
            ext in any::<bool>(),
        ) {
            let wire = encode(&body, &sizes, ext);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts {
                parts.push(&wire[at..c]);
                at = c;
            }
            parts.push(&wire[at..]);
            prop_assert_eq!(dechunk(&parts).unwrap(), (body, true));
        }

        #[test]
        fn response_heads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_head(&bytes);
            let _ = dechunk(&[&bytes]);
        }
    }
}
