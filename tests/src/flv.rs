//! HTTP-FLV on the wire: a small incremental FLV tag parser, and
//! [`FlvViewer`], a raw-socket viewer on its own thread that records every
//! tag it receives (when, timestamp, kind) so tests can assert on
//! continuity, timestamps and arrival rate.
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// FLV tag type: audio.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type: video.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type: script data (onMetaData).
pub const TAG_SCRIPT: u8 = 18;

/// One FLV tag as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvTag {
    /// 8 audio, 9 video, 18 script.
    pub kind: u8,
    /// Timestamp in ms (24 bits + extension byte).
    pub timestamp: u32,
    /// Body size in bytes.
    pub size: u32,
    /// Video: frame type 1 (keyframe).
    pub keyframe: bool,
    /// A codec configuration record: AVC sequence header (video, AVC packet
    /// type 0) or AAC sequence header (audio, AAC packet type 0).
    pub config: bool,
    /// Video codec id (7 = AVC) or audio sound format (10 = AAC); 0 for script.
    pub codec: u8,
}

/// What [`FlvParser`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvError(pub String);

/// Incremental FLV parser: feed bytes, take out tags.
#[derive(Debug, Default)]
pub struct FlvParser {
    buf: Vec<u8>,
    /// The 9-byte FLV header (plus PreviousTagSize0) was seen.
    pub header_seen: bool,
    /// Header flags: audio present.
    pub has_audio: bool,
    /// Header flags: video present.
    pub has_video: bool,
}

impl FlvParser {
    /// Append received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet parsed.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete tag, `Ok(None)` if more bytes are needed.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        if !self.header_seen {
            if self.buf.len() < 13 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" || self.buf[3] != 1 {
                return Err(FlvError(format!(
                    "not an FLV header: {:02x?}",
                    &self.buf[..13]
                )));
            }
            let offset = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]);
            if offset != 9 {
                return Err(FlvError(format!("FLV header size {offset}, want 9")));
            }
            if self.buf[9..13] != [0, 0, 0, 0] {
                return Err(FlvError(format!(
                    "PreviousTagSize0 is {:02x?}, want 0",
                    &self.buf[9..13]
                )));
            }
            self.has_audio = self.buf[4] & 4 != 0;
            self.has_video = self.buf[4] & 1 != 0;
            self.header_seen = true;
            self.buf.drain(..13);
        }
        if self.buf.len() < 11 {
            return Ok(None);
        }
        let b = &self.buf;
        let kind = b[0] & 0x1f;
        if b[0] & 0x20 != 0 {
            return Err(FlvError("encrypted (filter) tag".into()));
        }
        if !matches!(kind, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT) {
            return Err(FlvError(format!("unknown tag type {kind}")));
        }
        let size = u32::from_be_bytes([0, b[1], b[2], b[3]]);
        let timestamp = u32::from_be_bytes([b[7], b[4], b[5], b[6]]);
        let stream_id = u32::from_be_bytes([0, b[8], b[9], b[10]]);
        if stream_id != 0 {
            return Err(FlvError(format!("StreamID {stream_id}, want 0")));
        }
        let total = 11 + size as usize + 4;
        if self.buf.len() < total {
            return Ok(None);
        }
        let body = &self.buf[11..11 + size as usize];
        let prev = u32::from_be_bytes(self.buf[total - 4..total].try_into().expect("4 bytes"));
        if prev != 11 + size {
            return Err(FlvError(format!(
                "PreviousTagSize {prev} after a tag of {size} bytes (want {})",
                11 + size
            )));
        }
        let (keyframe, config, codec) = match kind {
            TAG_VIDEO => (
                body.first().is_some_and(|b| b >> 4 == 1),
                body.first().is_some_and(|b| b & 0x0f == 7) && body.get(1) == Some(&0),
                body.first().map_or(0, |b| b & 0x0f),
            ),
            TAG_AUDIO => (
                false,
                body.first().is_some_and(|b| b >> 4 == 10) && body.get(1) == Some(&0),
                body.first().map_or(0, |b| b >> 4),
            ),
            _ => (false, false, 0),
        };
        let tag = FlvTag {
            kind,
            timestamp,
            size,
            keyframe,
            config,
            codec,
        };
        self.buf.drain(..total);
        Ok(Some(tag))
    }
}

/// A tag and when it was fully received, relative to the viewer's start.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Since [`FlvViewer::start`] was called.
    pub at: Duration,
    /// The tag.
    pub tag: FlvTag,
}

/// What a [`FlvViewer`] has seen so far.
#[derive(Debug, Clone, Default)]
pub struct ViewerLog {
    /// HTTP status line, once received.
    pub status_line: Option<String>,
    /// HTTP status code (0 until received).
    pub status: u16,
    /// Response header fields.
    pub headers: Vec<(String, String)>,
    /// The FLV header was received.
    pub flv_header: bool,
    /// Every tag received, in order.
    pub tags: Vec<Received>,
    /// Body bytes received.
    pub body_bytes: u64,
    /// Why the connection ended (EOF, error, bad FLV), if it did; `None`
    /// while it is open (or was stopped by the test).
    pub ended: Option<String>,
    /// When it ended, since the start.
    pub ended_at: Option<Duration>,
}

impl ViewerLog {
    /// The received video tags.
    pub fn video(&self) -> impl Iterator<Item = &Received> {
        self.tags.iter().filter(|r| r.tag.kind == TAG_VIDEO)
    }

    /// Media tags (audio and video, not codec configuration records).
    pub fn media(&self) -> impl Iterator<Item = &Received> {
        self.tags
            .iter()
            .filter(|r| matches!(r.tag.kind, TAG_AUDIO | TAG_VIDEO) && !r.tag.config)
    }

    /// Largest timestamp of a media tag received at or after `since`.
    pub fn max_ts_since(&self, since: Duration) -> Option<u32> {
        self.media()
            .filter(|r| r.at >= since)
            .map(|r| r.tag.timestamp)
            .max()
    }

    /// A one-line summary for failure messages.
    pub fn summary(&self) -> String {
        let video = self.video().count();
        let first = self.media().next().map(|r| (r.at, r.tag.timestamp));
        let last = self.media().last().map(|r| (r.at, r.tag.timestamp));
        format!(
            "status {:?}, flv header {}, {} body bytes, {} tags ({video} video), first media (at, ts) {first:?}, last {last:?}, ended {:?} at {:?}",
            self.status_line,
            self.flv_header,
            self.body_bytes,
            self.tags.len(),
            self.ended,
            self.ended_at
        )
    }
}

/// A raw HTTP-FLV viewer: `GET /NAME.flv` on a plain `TcpStream`, reading
/// and parsing tags on a thread until the server closes, the FLV breaks, or
/// [`stop`](Self::stop)/drop.
#[derive(Debug)]
pub struct FlvViewer {
    log: Arc<Mutex<ViewerLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl FlvViewer {
    /// Connect to `addr` and request `path` (e.g. `/live.flv`). Panics if the
    /// connection or the request write fails.
    pub fn start(addr: SocketAddr, path: &str) -> FlvViewer {
        let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set_read_timeout");
        sock.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: spate-tests\r\n\r\n")
                .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("send GET {path}: {e}"));
        let log = Arc::new(Mutex::new(ViewerLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let thread = {
            let log = Arc::clone(&log);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || read_loop(sock, &log, &stop, started))
        };
        FlvViewer {
            log,
            stop,
            thread: Some(thread),
            started,
        }
    }

    /// A copy of what it has seen so far.
    pub fn log(&self) -> ViewerLog {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Time since it started (the clock of [`Received::at`]).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stop reading, close the socket, and return what it saw.
    pub fn stop(mut self) -> ViewerLog {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.log()
    }
}

impl Drop for FlvViewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_loop(mut sock: TcpStream, log: &Mutex<ViewerLog>, stop: &AtomicBool, started: Instant) {
    let mut head = Vec::new();
    let mut parser = FlvParser::default();
    let mut in_body = false;
    let mut buf = vec![0u8; 64 * 1024];
    let end = |why: String| {
        let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
        l.ended = Some(why);
        l.ended_at = Some(started.elapsed());
    };
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.read(&mut buf) {
            Ok(0) => return end("EOF".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return end(format!("read error: {e}")),
        };
        let mut data = &buf[..n];
        if !in_body {
            head.extend_from_slice(data);
            let Some(pos) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if head.len() > 64 * 1024 {
                    return end("response head longer than 64 KiB".into());
                }
                continue;
            };
            let text = String::from_utf8_lossy(&head[..pos]).into_owned();
            let mut lines = text.split("\r\n");
            let status_line = lines.next().unwrap_or("").to_string();
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect();
            {
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                l.status_line = Some(status_line);
                l.status = status;
                l.headers = headers;
            }
            in_body = true;
            let rest = head.split_off(pos + 4);
            if status != 200 {
                // Keep reading (the body of an error) until EOF, but do not
                // parse it as FLV.
                loop {
                    match sock.read(&mut buf) {
                        Ok(0) => return end("EOF".into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                        }
                        Err(e) => return end(format!("read error: {e}")),
                    }
                }
            }
            parser.feed(&rest);
            log.lock().unwrap_or_else(|e| e.into_inner()).body_bytes += rest.len() as u64;
            data = &[];
        }
        parser.feed(data);
        let now = started.elapsed();
        let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
        l.body_bytes += data.len() as u64;
        loop {
            match parser.next_tag() {
                Ok(Some(tag)) => l.tags.push(Received { at: now, tag }),
                Ok(None) => break,
                Err(FlvError(e)) => {
                    l.ended = Some(format!("bad FLV: {e}"));
                    l.ended_at = Some(now);
                    return;
                }
            }
            l.flv_header = parser.header_seen;
        }
        l.flv_header = parser.header_seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let size = body.len() as u32;
        let mut t = vec![kind];
        t.extend_from_slice(&size.to_be_bytes()[1..]);
        t.extend_from_slice(&ts.to_be_bytes()[1..]);
        t.push((ts >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(body);
        t.extend_from_slice(&(11 + size).to_be_bytes());
        t
    }

    #[test]
    fn parses_header_and_tags_fed_byte_by_byte() {
        let mut bytes = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        bytes.extend(tag(TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0, 1]));
        bytes.extend(tag(TAG_AUDIO, 23, &[0xaf, 1, 9]));
        bytes.extend(tag(TAG_VIDEO, 0x0100_0020, &[0x27, 1, 0, 0, 0]));
        let mut p = FlvParser::default();
        let mut tags = Vec::new();
        for b in bytes {
            p.feed(&[b]);
            while let Some(t) = p.next_tag().unwrap() {
                tags.push(t);
            }
        }
        assert!(p.has_audio && p.has_video);
        assert_eq!(tags.len(), 3);
        assert!(tags[0].keyframe && tags[0].config && tags[0].codec == 7);
        assert!(!tags[1].config && tags[1].codec == 10 && tags[1].timestamp == 23);
        assert!(!tags[2].keyframe && tags[2].timestamp == 0x0100_0020);
        let mut bad = FlvParser::default();
        bad.feed(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(bad.next_tag().is_err());
    }
}
