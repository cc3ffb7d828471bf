//! Incremental scanners for what live viewers receive: an HTTP/1.1 response
//! head followed by an FLV stream (HTTP-FLV). Tag bodies are skipped, never
//! copied; only the tag type, timestamp and the first two body bytes (codec
//! and AVC packet type) are kept, and a tag is reported when its last byte
//! has arrived (the instant a player could decode it).

/// One complete tag (or, for RTMP, one complete media message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagSeen {
    /// 8 audio, 9 video, 18 script.
    pub tag_type: u8,
    /// Timestamp, ms.
    pub ts: u32,
    /// First two body bytes (zero-padded when the body is shorter).
    pub peek: [u8; 2],
}

impl TagSeen {
    /// A coded video frame (not a sequence header or end of sequence): AVC
    /// or HEVC packet type 1, or any legacy codec that is not AVC/HEVC.
    pub fn is_video_frame(&self) -> bool {
        if self.tag_type != 9 {
            return false;
        }
        let codec = self.peek[0] & 0x0F;
        if self.peek[0] & 0x80 != 0 {
            // Enhanced RTMP: packet type in the low nibble; 1 = coded frames,
            // 3 = coded frames without composition time.
            return matches!(self.peek[0] & 0x0F, 1 | 3);
        }
        if codec == 7 || codec == 12 {
            return self.peek[1] == 1;
        }
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Reading the HTTP response head.
    Head,
    /// Skipping `n` more bytes (file header + PreviousTagSize0, or a
    /// PreviousTagSize after a tag).
    Skip(usize),
    /// Gathering an 11-byte tag header.
    TagHeader,
    /// In a tag body: bytes left.
    Body(u32),
}

/// Errors a viewer connection can end with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// The response status was not 200 (the status is given).
    Status(u16),
    /// The head did not parse or was too long.
    BadHead,
    /// The FLV stream did not start with "FLV" or a tag type was reserved.
    BadFlv,
    /// A transport packet did not start with the 0x47 sync byte.
    BadTs,
    /// A bad `Transfer-Encoding: chunked` size line.
    BadChunk,
}

/// HTTP response head + FLV tag scanner.
#[derive(Debug)]
pub struct HttpFlvScanner {
    st: St,
    head: Vec<u8>,
    hdr: [u8; 11],
    hdr_len: usize,
    /// First bytes of the file (to check the "FLV" signature).
    sig: [u8; 3],
    sig_len: usize,
    cur: TagSeen,
    body_pos: u32,
    /// The body is `Transfer-Encoding: chunked`.
    chunked: Option<crate::httpbody::Dechunk>,
}

impl Default for HttpFlvScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpFlvScanner {
    /// A scanner expecting a response head first.
    pub fn new() -> Self {
        Self {
            st: St::Head,
            head: Vec::new(),
            hdr: [0; 11],
            hdr_len: 0,
            sig: [0; 3],
            sig_len: 0,
            cur: TagSeen {
                tag_type: 0,
                ts: 0,
                peek: [0; 2],
            },
            body_pos: 0,
            chunked: None,
        }
    }

    /// Consume `data`, calling `on_tag` for every tag completed in it.
    pub fn feed(&mut self, data: &[u8], mut on_tag: impl FnMut(TagSeen)) -> Result<(), ScanError> {
        let mut data = data;
        if self.st == St::Head {
            let mut chunked = false;
            match response_head(&mut self.head, data, &mut chunked)? {
                None => return Ok(()),
                Some(rest) => data = rest,
            }
            self.chunked = chunked.then(crate::httpbody::Dechunk::default);
            self.st = St::Skip(13);
        }
        match self.chunked.take() {
            Some(mut d) => {
                let r = d
                    .feed(
                        data,
                        |_| ScanError::BadChunk,
                        |piece| self.body(piece, &mut on_tag),
                    )
                    .map(|_| ());
                self.chunked = Some(d);
                r
            }
            None => self.body(data, &mut on_tag),
        }
    }

    fn body(&mut self, mut data: &[u8], on_tag: &mut impl FnMut(TagSeen)) -> Result<(), ScanError> {
        while !data.is_empty() {
            match self.st {
                St::Head => unreachable!("the head is parsed in feed"),
                St::Skip(n) => {
                    let take = n.min(data.len());
                    // The first three bytes of the stream must be "FLV".
                    if self.sig_len < 3 {
                        let k = (3 - self.sig_len).min(take);
                        self.sig[self.sig_len..self.sig_len + k].copy_from_slice(&data[..k]);
                        self.sig_len += k;
                        if self.sig_len == 3 && &self.sig != b"FLV" {
                            return Err(ScanError::BadFlv);
                        }
                    }
                    data = &data[take..];
                    self.st = if n == take {
                        St::TagHeader
                    } else {
                        St::Skip(n - take)
                    };
                }
                St::TagHeader => {
                    let take = (11 - self.hdr_len).min(data.len());
                    self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[..take]);
                    self.hdr_len += take;
                    data = &data[take..];
                    if self.hdr_len < 11 {
                        return Ok(());
                    }
                    self.hdr_len = 0;
                    let h = &self.hdr;
                    let tag_type = h[0] & 0x1F;
                    if !matches!(tag_type, 8 | 9 | 18) {
                        return Err(ScanError::BadFlv);
                    }
                    let size = u32::from_be_bytes([0, h[1], h[2], h[3]]);
                    let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
                    self.cur = TagSeen {
                        tag_type,
                        ts,
                        peek: [0; 2],
                    };
                    self.body_pos = 0;
                    if size == 0 {
                        on_tag(self.cur);
                        self.st = St::Skip(4);
                    } else {
                        self.st = St::Body(size);
                    }
                }
                St::Body(left) => {
                    let take = (left as usize).min(data.len());
                    let mut i = 0;
                    while self.body_pos < 2 && i < take {
                        self.cur.peek[self.body_pos as usize] = data[i];
                        self.body_pos += 1;
                        i += 1;
                    }
                    data = &data[take..];
                    let left = left - take as u32;
                    if left == 0 {
                        on_tag(self.cur);
                        self.st = St::Skip(4);
                    } else {
                        self.st = St::Body(left);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Gather a response head in `head` from `data`: `Ok(None)` while it is
/// incomplete; `Ok(Some(rest))` (the bytes after it) once it is complete with
/// status 200, setting `chunked` when the body is `Transfer-Encoding: chunked`.
pub fn response_head<'a>(
    head: &mut Vec<u8>,
    data: &'a [u8],
    chunked: &mut bool,
) -> Result<Option<&'a [u8]>, ScanError> {
    let before = head.len();
    head.extend_from_slice(data);
    match spate_protocols::http::upstream::parse_head(head) {
        Ok(Some(h)) => {
            if h.code != 200 {
                return Err(ScanError::Status(h.code));
            }
            *chunked = h.chunked();
            head.clear();
            head.shrink_to_fit();
            Ok(Some(&data[h.len - before..]))
        }
        Ok(None) => {
            if head.len() > 16 * 1024 {
                return Err(ScanError::BadHead);
            }
            Ok(None)
        }
        Err(_) => Err(ScanError::BadHead),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(t: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        let n = body.len() as u32;
        v.extend_from_slice(&n.to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(body);
        v.extend_from_slice(&(11 + n).to_be_bytes());
        v
    }

    #[test]
    fn scans_split_anywhere() {
        let mut s = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n".to_vec();
        s.extend_from_slice(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
        s.extend(tag(18, 0, b"meta"));
        s.extend(tag(9, 0, &[0x17, 0, 1, 2]));
        s.extend(tag(9, 33, &[0x27, 1, 9, 9, 9]));
        s.extend(tag(8, 0x0100_0021, &[0xAF, 1]));
        s.extend(tag(9, 66, &[]));
        for step in [1, 2, 3, 7, 1000] {
            let mut sc = HttpFlvScanner::new();
            let mut seen = Vec::new();
            for c in s.chunks(step) {
                sc.feed(c, |t| seen.push(t)).unwrap();
            }
            assert_eq!(seen.len(), 5, "step {step}");
            assert_eq!(seen[1].peek, [0x17, 0]);
            assert!(!seen[1].is_video_frame());
            assert!(seen[2].is_video_frame());
            assert_eq!(seen[2].ts, 33);
            assert_eq!(seen[3].ts, 0x0100_0021);
            assert_eq!(seen[4].ts, 66);
        }
    }

    #[test]
    fn chunked_http_flv() {
        let mut body = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        body.extend(tag(9, 0, &[0x17, 1, 2, 3]));
        body.extend(tag(9, 33, &[0x27, 1, 9, 9, 9]));
        let mut s = b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n".to_vec();
        for c in body.chunks(10) {
            s.extend(format!("{:X}\r\n", c.len()).into_bytes());
            s.extend_from_slice(c);
            s.extend_from_slice(b"\r\n");
        }
        s.extend_from_slice(b"0\r\n\r\n");
        for step in [1, 3, 11, 1000] {
            let mut sc = HttpFlvScanner::new();
            let mut seen = Vec::new();
            for c in s.chunks(step) {
                sc.feed(c, |t| seen.push(t.ts)).unwrap();
            }
            assert_eq!(seen, [0, 33], "step {step}");
        }
    }

    #[test]
    fn refuses_404_and_non_flv() {
        let mut sc = HttpFlvScanner::new();
        assert_eq!(
            sc.feed(b"HTTP/1.1 404 Not Found\r\n\r\n", |_| {}),
            Err(ScanError::Status(404))
        );
        let mut sc = HttpFlvScanner::new();
        assert_eq!(
            sc.feed(b"HTTP/1.1 200 OK\r\n\r\n<html>", |_| {}),
            Err(ScanError::BadFlv)
        );
    }
}
