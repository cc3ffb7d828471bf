//! The live bench's RTMP publisher: reads an FLV file, publishes it over
//! RTMP at real-time pace (looping with continuing timestamps), and records
//! when each video frame was handed to the socket, keyed by its timestamp,
//! for the viewers to compute server-added latency.
//!
//! Matching assumption: the server passes timestamps through unchanged for
//! a fresh stream (Spate rebases only on steps back of more than 500 ms or
//! forward of more than 5 s, which a loop with continuing timestamps never makes; nginx-rtmp
//! sends the publisher's absolute timestamps). The viewers count frames whose
//! timestamp has no send record ("unmatched"); the report shows it, and the
//! bench refuses to report latency when frames do not match.
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_packager::amf0::{self, Amf0Value};
use spate_packager::flv::{FlvDemuxer, TagType};
use spate_protocols::rtmp::{
    CSID_AUDIO, CSID_DATA, CSID_VIDEO, ChunkDecoder, Limits, MessageHeader, encode_message_to_vec,
    message_type,
};

use crate::live_rtmp::{self, Reply, RtmpUrl, SERVER_HANDSHAKE};

/// Slots in the send-time table: timestamps modulo this (65.5 s of media).
const SLOTS: usize = 65_536;

/// Send instants of video frames, shared by the publisher and the viewers.
#[derive(Debug)]
pub struct SendTimes {
    /// Common clock origin (µs offsets are from here).
    pub epoch: Instant,
    /// `ts << 32 | (µs since epoch + 1)` at `ts % SLOTS`; 0 = empty.
    video: Box<[AtomicU64]>,
    /// Newest video timestamp sent + 1 (0: none yet).
    newest: AtomicU64,
    /// Video frames sent.
    pub frames_sent: AtomicU64,
    /// Media bytes sent: RTMP, FLV tag bodies; udp-ts, TS packets.
    pub bytes_sent: AtomicU64,
    /// The publisher has stopped (error or end).
    pub stopped: AtomicBool,
    /// Times the publisher closed its connection and published again.
    pub reconnects: AtomicU64,
    /// The server's timestamp shift (server − publisher, wrapping) as the
    /// live viewers last matched it, `1 << 32 | offset`; 0: none yet. A
    /// server continuing a stream (a publisher back within its reconnect
    /// grace, e.g. a run right after another) shifts every timestamp; the
    /// HLS/DASH viewers cannot learn that from segments, so they use this.
    server_offset: AtomicU64,
}

impl SendTimes {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            video: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            newest: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            server_offset: AtomicU64::new(0),
        }
    }

    /// A viewer matched a frame with the server's shift `offset`.
    pub fn note_server_offset(&self, offset: u32) {
        let v = (1 << 32) | u64::from(offset);
        if self.server_offset.load(Ordering::Relaxed) != v {
            self.server_offset.store(v, Ordering::Relaxed);
        }
    }

    /// The server's timestamp shift last matched by a live viewer.
    pub fn server_offset(&self) -> Option<u32> {
        match self.server_offset.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v as u32),
        }
    }

    /// When the frame the server sent with timestamp `ts` was sent: by the
    /// live viewers' idea of the server's shift, else passed through.
    pub fn sent_us_shifted(&self, ts: u32) -> Option<u64> {
        self.server_offset()
            .filter(|&o| o != 0)
            .and_then(|o| self.sent_us(ts.wrapping_sub(o)))
            .or_else(|| self.sent_us(ts))
    }

    /// µs since the epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub(crate) fn record(&self, ts: u32, us: u64) {
        let v = (u64::from(ts) << 32) | ((us + 1) & 0xFFFF_FFFF);
        self.video[ts as usize % SLOTS].store(v, Ordering::Release);
        self.newest.store(u64::from(ts) + 1, Ordering::Release);
    }

    /// When the video frame with timestamp `ts` was sent (µs since epoch).
    pub fn sent_us(&self, ts: u32) -> Option<u64> {
        let v = self.video[ts as usize % SLOTS].load(Ordering::Acquire);
        if v == 0 || (v >> 32) as u32 != ts {
            return None;
        }
        Some((v & 0xFFFF_FFFF) - 1)
    }

    /// Newest video timestamp sent.
    pub fn newest(&self) -> Option<u32> {
        match self.newest.load(Ordering::Acquire) {
            0 => None,
            n => Some((n - 1) as u32),
        }
    }
}

/// One tag of the source file.
pub(crate) struct SrcTag {
    pub(crate) kind: TagType,
    pub(crate) ts: u32,
    pub(crate) body: Bytes,
    /// Sequence header or metadata: sent on the first pass only.
    pub(crate) setup: bool,
}

impl SrcTag {
    /// A video frame (not a sequence header) marked as a keyframe.
    pub(crate) fn is_keyframe(&self) -> bool {
        self.kind == TagType::Video && !self.setup && self.body.first().is_some_and(|b| b >> 4 == 1)
    }
}

/// The tags of an FLV file and the length of one pass (the timestamp
/// offset of the next loop).
pub(crate) fn load(path: &str) -> Result<(Vec<SrcTag>, u32), String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let mut d = FlvDemuxer::new();
    d.push(&data);
    let mut tags = Vec::new();
    while let Some(t) = d.next_tag().map_err(|e| format!("{path}: {e}"))? {
        let b: &[u8] = &t.body;
        let setup = match t.tag_type {
            TagType::Script => true,
            // AVC/HEVC sequence header, AAC sequence header.
            TagType::Video => b.len() >= 2 && matches!(b[0] & 0x0F, 7 | 12) && b[1] != 1,
            TagType::Audio => b.len() >= 2 && b[0] >> 4 == 10 && b[1] == 0,
            TagType::Other(_) => continue,
        };
        tags.push(SrcTag {
            kind: t.tag_type,
            ts: t.timestamp,
            body: t.body.clone(),
            setup,
        });
    }
    let video: Vec<u32> = tags
        .iter()
        .filter(|t| t.kind == TagType::Video && !t.setup)
        .map(|t| t.ts)
        .collect();
    if video.len() < 2 {
        return Err(format!("{path}: fewer than two video frames"));
    }
    let interval = (video[video.len() - 1] - video[0]) / (video.len() as u32 - 1);
    let last = tags.iter().map(|t| t.ts).max().unwrap_or(0);
    // Next pass starts one frame interval after the file's last timestamp.
    Ok((tags, last + interval.max(1)))
}

/// Mean video frame interval of an FLV file, ms (≥ 1).
pub fn video_interval_ms(path: &str) -> Result<u32, String> {
    let (tags, _) = load(path)?;
    let video: Vec<u32> = tags
        .iter()
        .filter(|t| t.kind == TagType::Video && !t.setup)
        .map(|t| t.ts)
        .collect();
    Ok(((video[video.len() - 1] - video[0]) / (video.len() as u32 - 1)).max(1))
}

fn read_message(
    sock: &mut TcpStream,
    dec: &mut ChunkDecoder,
    pending: &mut Vec<u8>,
) -> io::Result<spate_protocols::rtmp::Message> {
    let limits = Limits::default();
    loop {
        let mut slice: &[u8] = pending;
        let r = dec.decode(&mut slice, &limits);
        let used = pending.len() - slice.len();
        pending.drain(..used);
        match r {
            Ok(Some(m)) => {
                if m.type_id == message_type::SET_CHUNK_SIZE && m.payload.len() >= 4 {
                    let p = &m.payload;
                    dec.set_chunk_size(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7FFF_FFFF);
                }
                return Ok(m);
            }
            Ok(None) => {}
            Err(e) => return Err(io::Error::other(format!("RTMP from server: {e}"))),
        }
        let mut buf = [0u8; 16384];
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the publisher connection",
            ));
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Connect, handshake, connect/createStream/publish; returns the socket and
/// the message stream id.
fn setup(url: &RtmpUrl) -> io::Result<(TcpStream, u32)> {
    let addr = url
        .hostport
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.write_all(&live_rtmp::c0c1())?;
    let mut s = vec![0u8; SERVER_HANDSHAKE];
    sock.read_exact(&mut s)?;
    let mut out = s[1..1537].to_vec(); // C2 = S1
    // Commands go at the default chunk size (128), then the media's.
    live_rtmp::connect_and_create(&mut out, url, true);
    live_rtmp::control(
        &mut out,
        message_type::SET_CHUNK_SIZE,
        &4096u32.to_be_bytes(),
    );
    sock.write_all(&out)?;
    let mut dec = ChunkDecoder::new();
    let mut pending = Vec::new();
    let sid = loop {
        let m = read_message(&mut sock, &mut dec, &mut pending)?;
        if m.type_id == message_type::COMMAND_AMF0 {
            match live_rtmp::parse_reply(&m.payload) {
                Reply::Created(id) => break id,
                Reply::Error(t) => {
                    return Err(io::Error::other(format!("_error for transaction {t}")));
                }
                _ => {}
            }
        }
    };
    let mut out = Vec::new();
    let mut body = Vec::new();
    amf0::encode_all(
        &[
            Amf0Value::String("publish".into()),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            Amf0Value::String(url.name.clone()),
            Amf0Value::String("live".into()),
        ],
        &mut body,
    );
    let h = MessageHeader {
        csid: spate_protocols::rtmp::CSID_COMMAND,
        timestamp: 0,
        type_id: message_type::COMMAND_AMF0,
        stream_id: sid,
    };
    encode_message_to_vec(&h, &body, 4096, &mut out);
    sock.write_all(&out)?;
    loop {
        let m = read_message(&mut sock, &mut dec, &mut pending)?;
        if m.type_id == message_type::COMMAND_AMF0
            && let Reply::Status { level, code } = live_rtmp::parse_reply(&m.payload)
        {
            if code == "NetStream.Publish.Start" {
                break;
            }
            if level == "error" {
                return Err(io::Error::other(format!("publish refused: {code}")));
            }
        }
    }
    sock.set_read_timeout(None)?;
    Ok((sock, sid))
}

/// Handle for the running publisher.
pub struct Publisher {
    /// Joined at the end: the error that stopped it, if any.
    pub thread: std::thread::JoinHandle<Result<(), String>>,
}

/// Publish `source` to `url` until `stop` is set. Returns once the publish
/// was accepted (media flowing from then on) or failed.
pub fn start(
    url: &RtmpUrl,
    source: &str,
    times: Arc<SendTimes>,
    stop: Arc<AtomicBool>,
) -> Result<Publisher, String> {
    start_with_reconnects(url, source, times, stop, None)
}

/// [`start`], and with `reconnect_every`, close the connection that often
/// and publish again on a new one (sequence headers first, timestamps
/// continuing), counting reconnects in `times.reconnects`.
pub fn start_with_reconnects(
    url: &RtmpUrl,
    source: &str,
    times: Arc<SendTimes>,
    stop: Arc<AtomicBool>,
    reconnect_every: Option<Duration>,
) -> Result<Publisher, String> {
    let (tags, pass_len) = load(source)?;
    let first = setup(url).map_err(|e| format!("publisher {}: {e}", url.tc_url))?;
    let url = url.clone();
    let thread = std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let mut pos = Position::new(&tags);
            let mut conn = Some(first);
            let r = loop {
                let (mut sock, sid) = match conn.take() {
                    Some(c) => c,
                    None => match setup(&url) {
                        Ok(c) => c,
                        Err(e) => break Err(io::Error::other(format!("reconnect: {e}"))),
                    },
                };
                // Drain whatever the server sends (acknowledgements,
                // pings) so its send buffer never fills.
                if let Ok(mut reader) = sock.try_clone() {
                    let _ = std::thread::Builder::new()
                        .name("publish-drain".into())
                        .spawn(move || {
                            let mut buf = [0u8; 4096];
                            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
                        });
                }
                let until = reconnect_every.map(|d| Instant::now() + d);
                let r = publish_loop(
                    &mut sock, sid, &tags, pass_len, &times, &stop, &mut pos, until,
                );
                let _ = sock.shutdown(std::net::Shutdown::Both);
                match r {
                    Ok(true) => {
                        times.reconnects.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            times.stopped.store(true, Ordering::Relaxed);
            r.map_err(|e| format!("publisher: {e}"))
        })
        .map_err(|e| e.to_string())?;
    Ok(Publisher { thread })
}

/// Where the publisher is in the looped file.
pub(crate) struct Position {
    /// When the first pass's first tag was due.
    pub(crate) start: Instant,
    pub(crate) first_ts: u32,
    /// Added to the file's timestamps: passes so far × the pass length.
    pub(crate) offset: u32,
    pub(crate) pass: u32,
    /// The next tag.
    pub(crate) index: usize,
    /// Sequence headers and metadata must go first on this connection.
    fresh: bool,
}

impl Position {
    pub(crate) fn new(tags: &[SrcTag]) -> Self {
        Self {
            start: Instant::now(),
            first_ts: tags.first().map_or(0, |t| t.ts),
            offset: 0,
            pass: 0,
            index: 0,
            fresh: true,
        }
    }

    /// When the tag at `ts` (offset included) is due.
    pub(crate) fn due(&self, ts: u32) -> Instant {
        self.start + Duration::from_millis(u64::from(ts - self.first_ts))
    }

    /// Past the last tag: the next pass starts, `pass_len` later.
    pub(crate) fn next_pass(&mut self, pass_len: u32) {
        self.index = 0;
        self.pass += 1;
        self.offset += pass_len;
    }
}

/// Send one tag at timestamp `ts`.
fn send_tag(
    sock: &mut TcpStream,
    sid: u32,
    t: &SrcTag,
    ts: u32,
    times: &SendTimes,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    let (csid, type_id, body): (u32, u8, &[u8]) = match t.kind {
        TagType::Video => (CSID_VIDEO, message_type::VIDEO, &t.body[..]),
        TagType::Audio => (CSID_AUDIO, message_type::AUDIO, &t.body[..]),
        _ => {
            // onMetaData → @setDataFrame data message.
            let mut b = Vec::new();
            amf0::encode(&Amf0Value::String("@setDataFrame".into()), &mut b);
            b.extend_from_slice(&t.body);
            let h = MessageHeader {
                csid: CSID_DATA,
                timestamp: ts,
                type_id: message_type::DATA_AMF0,
                stream_id: sid,
            };
            encode_message_to_vec(&h, &b, 4096, out);
            return sock.write_all(out);
        }
    };
    let h = MessageHeader {
        csid,
        timestamp: ts,
        type_id,
        stream_id: sid,
    };
    encode_message_to_vec(&h, body, 4096, out);
    if t.kind == TagType::Video && !t.setup {
        times.record(ts, times.now_us());
        times.frames_sent.fetch_add(1, Ordering::Relaxed);
    }
    times
        .bytes_sent
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    sock.write_all(out)
}

/// Publish from `pos` on. `Ok(true)`: `until` passed (at a keyframe, so the
/// next connection starts cleanly); `Ok(false)`: `stop` was set.
#[allow(clippy::too_many_arguments)]
fn publish_loop(
    sock: &mut TcpStream,
    sid: u32,
    tags: &[SrcTag],
    pass_len: u32,
    times: &SendTimes,
    stop: &AtomicBool,
    pos: &mut Position,
    until: Option<Instant>,
) -> io::Result<bool> {
    let mut out = Vec::with_capacity(256 * 1024);
    if pos.fresh && (pos.pass > 0 || pos.index > 0) {
        // A new connection: sequence headers and metadata first, at the
        // current timestamp.
        let ts = tags.get(pos.index).map_or(0, |t| t.ts) + pos.offset;
        for t in tags.iter().filter(|t| t.setup) {
            send_tag(sock, sid, t, ts, times, &mut out)?;
        }
    }
    pos.fresh = false;
    loop {
        while pos.index < tags.len() {
            let t = &tags[pos.index];
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            if t.setup && pos.pass > 0 {
                pos.index += 1;
                continue;
            }
            if t.is_keyframe() && until.is_some_and(|u| Instant::now() >= u) {
                pos.fresh = true;
                return Ok(true);
            }
            let ts = t.ts + pos.offset;
            let due = pos.due(ts);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            send_tag(sock, sid, t, ts, times, &mut out)?;
            pos.index += 1;
        }
        pos.next_pass(pass_len);
    }
}
