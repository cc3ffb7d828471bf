//! Just enough RTMP client for the live bench: the plain handshake, the
//! commands a publisher and a player send, and a chunk-stream scanner for
//! players that skips media payloads instead of reassembling them (a viewer
//! only needs each media message's type, timestamp, first two bytes and the
//! instant its last byte arrived). Control and command messages (small) are
//! reassembled so Set Chunk Size, Window Acknowledgement Size, pings and
//! `_result`/`onStatus` can be answered.
use spate_packager::amf0::{self, Amf0Value};
use spate_protocols::rtmp::{
    CSID_COMMAND, CSID_CONTROL, HANDSHAKE_SIZE, MessageHeader, RTMP_VERSION, encode_message_to_vec,
    message_type, user_control,
};

use crate::flvparse::TagSeen;

/// Bytes of S0 + S1 + S2.
pub const SERVER_HANDSHAKE: usize = 1 + 2 * HANDSHAKE_SIZE;

/// `rtmp://host[:port]/APP/NAME` split up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `host:port` (port 1935 when absent).
    pub hostport: String,
    /// Application (first path segment).
    pub app: String,
    /// Stream name / key (the rest of the path).
    pub name: String,
    /// `rtmp://host:port/APP`.
    pub tc_url: String,
}

/// Parse an `rtmp://` URL.
pub fn parse_rtmp_url(url: &str) -> Result<RtmpUrl, String> {
    let rest = url
        .strip_prefix("rtmp://")
        .ok_or_else(|| format!("{url}: not an rtmp:// URL"))?;
    let (hostport, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("{url}: no application"))?;
    let (app, name) = path
        .split_once('/')
        .ok_or_else(|| format!("{url}: expected rtmp://HOST/APP/NAME"))?;
    if app.is_empty() || name.is_empty() {
        return Err(format!("{url}: expected rtmp://HOST/APP/NAME"));
    }
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:1935")
    };
    Ok(RtmpUrl {
        tc_url: format!("rtmp://{hostport}/{app}"),
        hostport,
        app: app.to_string(),
        name: name.to_string(),
    })
}

/// C0 + C1 of the plain (digest-less) handshake: version 3, time 0, zero,
/// then 1528 filler bytes.
pub fn c0c1() -> Vec<u8> {
    let mut v = vec![0u8; 1 + HANDSHAKE_SIZE];
    v[0] = RTMP_VERSION;
    let mut x: u32 = 0x9E37_79B9;
    for b in &mut v[9..] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    v
}

/// Append a command message (AMF0) on the command chunk stream.
pub fn command(out: &mut Vec<u8>, stream_id: u32, values: &[Amf0Value]) {
    let mut body = Vec::new();
    amf0::encode_all(values, &mut body);
    let h = MessageHeader {
        csid: CSID_COMMAND,
        timestamp: 0,
        type_id: message_type::COMMAND_AMF0,
        stream_id,
    };
    encode_message_to_vec(&h, &body, 128, out);
}

/// Append a protocol control message (chunk stream 2, stream 0).
pub fn control(out: &mut Vec<u8>, type_id: u8, payload: &[u8]) {
    let h = MessageHeader {
        csid: CSID_CONTROL,
        timestamp: 0,
        type_id,
        stream_id: 0,
    };
    encode_message_to_vec(&h, payload, 128, out);
}

fn s(v: &str) -> Amf0Value {
    Amf0Value::String(v.to_string())
}

/// `connect` (transaction 1) then `createStream` (transaction 2).
pub fn connect_and_create(out: &mut Vec<u8>, url: &RtmpUrl, publisher: bool) {
    let mut props = vec![
        ("app".to_string(), s(&url.app)),
        (
            "flashVer".to_string(),
            s("FMLE/3.0 (compatible; spate-bench)"),
        ),
        ("tcUrl".to_string(), s(&url.tc_url)),
    ];
    if publisher {
        props.push(("type".to_string(), s("nonprivate")));
    } else {
        props.push(("fpad".to_string(), Amf0Value::Boolean(false)));
        props.push(("capabilities".to_string(), Amf0Value::Number(15.0)));
        props.push(("audioCodecs".to_string(), Amf0Value::Number(4071.0)));
        props.push(("videoCodecs".to_string(), Amf0Value::Number(252.0)));
        props.push(("videoFunction".to_string(), Amf0Value::Number(1.0)));
    }
    command(
        out,
        0,
        &[
            s("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::Object(props),
        ],
    );
    command(
        out,
        0,
        &[s("createStream"), Amf0Value::Number(2.0), Amf0Value::Null],
    );
}

/// `play NAME` on `stream_id`, plus a Set Buffer Length of 100 ms.
pub fn play(out: &mut Vec<u8>, stream_id: u32, name: &str) {
    command(
        out,
        stream_id,
        &[
            s("play"),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            s(name),
            Amf0Value::Number(-2.0),
        ],
    );
    let mut p = Vec::with_capacity(10);
    p.extend_from_slice(&user_control::SET_BUFFER_LENGTH.to_be_bytes());
    p.extend_from_slice(&stream_id.to_be_bytes());
    p.extend_from_slice(&100u32.to_be_bytes());
    control(out, message_type::USER_CONTROL, &p);
}

/// What a `_result` or `onStatus` said, as far as the bench cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `_result` of createStream: the message stream id.
    Created(u32),
    /// `onStatus` with its level and code.
    Status { level: String, code: String },
    /// `_error` of a transaction.
    Error(f64),
    /// Anything else.
    Other,
}

/// Interpret a command message body.
pub fn parse_reply(body: &[u8]) -> Reply {
    let Ok(v) = amf0::decode_all(body) else {
        return Reply::Other;
    };
    let name = v.first().and_then(Amf0Value::as_str).unwrap_or("");
    let txn = v.get(1).and_then(Amf0Value::as_f64).unwrap_or(0.0);
    match name {
        "_result" if txn == 2.0 => match v.get(3).and_then(Amf0Value::as_f64) {
            Some(id) => Reply::Created(id as u32),
            None => Reply::Other,
        },
        "_error" => Reply::Error(txn),
        "onStatus" => {
            let info = v.get(3);
            let get = |k: &str| {
                info.and_then(|i| i.get(k))
                    .and_then(Amf0Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            Reply::Status {
                level: get("level"),
                code: get("code"),
            }
        }
        _ => Reply::Other,
    }
}

/// What the scanner reports.
#[derive(Debug, Clone, PartialEq)]
pub enum RtmpEvent {
    /// An audio or video message completed.
    Media(TagSeen),
    /// A control, user-control or command message (payload reassembled).
    Message {
        /// Message type id.
        type_id: u8,
        /// Message stream id.
        stream_id: u32,
        /// The body.
        payload: Vec<u8>,
    },
}

#[derive(Debug)]
struct Cs {
    csid: u32,
    ts: u32,
    delta: u32,
    len: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    /// Bytes of the current message received; `None` between messages.
    got: Option<u32>,
    peek: [u8; 2],
    buf: Vec<u8>,
}

/// Largest control/command message reassembled.
const MAX_KEPT: u32 = 64 * 1024;

fn kept(type_id: u8) -> bool {
    matches!(
        type_id,
        message_type::SET_CHUNK_SIZE
            | message_type::USER_CONTROL
            | message_type::WINDOW_ACK_SIZE
            | message_type::COMMAND_AMF0
    )
}

/// Chunk-stream scanner (player side, after the handshake).
#[derive(Debug)]
pub struct ChunkScanner {
    chunk_size: u32,
    streams: Vec<Cs>,
    hdr: [u8; 18],
    hdr_len: usize,
    /// Stream index and payload bytes left in the chunk being read.
    in_chunk: Option<(usize, u32)>,
}

impl Default for ChunkScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkScanner {
    /// A scanner at the default chunk size (128).
    pub fn new() -> Self {
        Self {
            chunk_size: 128,
            streams: Vec::new(),
            hdr: [0; 18],
            hdr_len: 0,
            in_chunk: None,
        }
    }

    /// The length the header gathered so far needs, if known yet.
    fn header_len(&self) -> Option<usize> {
        let h = &self.hdr[..self.hdr_len];
        let b0 = *h.first()?;
        let fmt = b0 >> 6;
        let basic = match b0 & 0x3F {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        if h.len() < basic {
            return None;
        }
        let mh = [11, 7, 3, 0][fmt as usize];
        let base = basic + mh;
        if fmt < 3 {
            if h.len() < basic + 3 {
                return None;
            }
            let field = u32::from_be_bytes([0, h[basic], h[basic + 1], h[basic + 2]]);
            Some(base + if field == 0xFF_FFFF { 4 } else { 0 })
        } else {
            let csid = Self::csid(h, basic);
            let ext = self.streams.iter().any(|s| s.csid == csid && s.extended);
            Some(base + if ext { 4 } else { 0 })
        }
    }

    fn csid(h: &[u8], basic: usize) -> u32 {
        match basic {
            1 => u32::from(h[0] & 0x3F),
            2 => 64 + u32::from(h[1]),
            _ => 64 + u32::from(h[1]) + 256 * u32::from(h[2]),
        }
    }

    /// Consume `data`, appending what completed to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<RtmpEvent>) -> Result<(), String> {
        loop {
            if let Some((idx, left)) = self.in_chunk {
                if data.is_empty() {
                    return Ok(());
                }
                let take = (left as usize).min(data.len());
                let s = &mut self.streams[idx];
                let got = s.got.unwrap_or(0);
                let mut i = 0;
                while got + (i as u32) < 2 && i < take {
                    s.peek[(got as usize) + i] = data[i];
                    i += 1;
                }
                if kept(s.type_id) {
                    s.buf.extend_from_slice(&data[..take]);
                }
                s.got = Some(got + take as u32);
                data = &data[take..];
                let left = left - take as u32;
                if left > 0 {
                    self.in_chunk = Some((idx, left));
                    return Ok(());
                }
                self.in_chunk = None;
                if s.got == Some(s.len) {
                    self.finish(idx, out);
                }
                continue;
            }
            if data.is_empty() {
                return Ok(());
            }
            // Gather the header byte by byte (headers are a few bytes per
            // chunk of up to chunk_size payload bytes).
            loop {
                match self.header_len() {
                    Some(n) if n <= self.hdr_len => break,
                    _ => {}
                }
                let Some((&b, rest)) = data.split_first() else {
                    return Ok(());
                };
                self.hdr[self.hdr_len] = b;
                self.hdr_len += 1;
                data = rest;
            }
            self.apply_header(out)?;
        }
    }

    fn apply_header(&mut self, out: &mut Vec<RtmpEvent>) -> Result<(), String> {
        let h = self.hdr;
        let n = self.hdr_len;
        self.hdr_len = 0;
        let fmt = h[0] >> 6;
        let basic = match h[0] & 0x3F {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let csid = Self::csid(&h, basic);
        let idx = match self.streams.iter().position(|s| s.csid == csid) {
            Some(i) => i,
            None => {
                if fmt != 0 {
                    return Err(format!("chunk stream {csid} starts with fmt {fmt}"));
                }
                if self.streams.len() >= 64 {
                    return Err("more than 64 chunk streams".into());
                }
                self.streams.push(Cs {
                    csid,
                    ts: 0,
                    delta: 0,
                    len: 0,
                    type_id: 0,
                    stream_id: 0,
                    extended: false,
                    got: None,
                    peek: [0; 2],
                    buf: Vec::new(),
                });
                self.streams.len() - 1
            }
        };
        let m = &h[basic..n];
        let be24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let s = &mut self.streams[idx];
        let mut new_message = true;
        if fmt < 3 {
            let mut field = be24(&m[0..3]);
            s.extended = field == 0xFF_FFFF;
            if s.extended {
                let e = &m[m.len() - 4..];
                field = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            }
            if fmt < 2 {
                s.len = be24(&m[3..6]);
                s.type_id = m[6];
            }
            if fmt == 0 {
                s.stream_id = u32::from_le_bytes([m[7], m[8], m[9], m[10]]);
                s.ts = field;
            } else {
                s.ts = s.ts.wrapping_add(field);
            }
            s.delta = field;
        } else if s.got.is_some() {
            new_message = false;
        } else {
            s.ts = s.ts.wrapping_add(s.delta);
        }
        if new_message {
            if kept(s.type_id) && s.len > MAX_KEPT {
                return Err(format!("control message of {} bytes", s.len));
            }
            s.got = Some(0);
            s.peek = [0; 2];
            s.buf.clear();
            if s.len == 0 {
                self.finish(idx, out);
                return Ok(());
            }
        }
        let s = &self.streams[idx];
        let left = (s.len - s.got.unwrap_or(0)).min(self.chunk_size);
        self.in_chunk = Some((idx, left));
        Ok(())
    }

    fn finish(&mut self, idx: usize, out: &mut Vec<RtmpEvent>) {
        let s = &mut self.streams[idx];
        s.got = None;
        match s.type_id {
            message_type::AUDIO | message_type::VIDEO => out.push(RtmpEvent::Media(TagSeen {
                tag_type: s.type_id,
                ts: s.ts,
                peek: s.peek,
            })),
            t if kept(t) => {
                let payload = std::mem::take(&mut s.buf);
                if t == message_type::SET_CHUNK_SIZE && payload.len() >= 4 {
                    let v = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    self.chunk_size = (v & 0x7FFF_FFFF).max(1);
                }
                out.push(RtmpEvent::Message {
                    type_id: t,
                    stream_id: s.stream_id,
                    payload,
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocols::rtmp::ChunkEncoder;

    #[test]
    fn urls() {
        let u = parse_rtmp_url("rtmp://127.0.0.1:1936/live/live+bench").unwrap();
        assert_eq!(u.hostport, "127.0.0.1:1936");
        assert_eq!((u.app.as_str(), u.name.as_str()), ("live", "live+bench"));
        assert_eq!(u.tc_url, "rtmp://127.0.0.1:1936/live");
        assert_eq!(parse_rtmp_url("rtmp://h/a/b").unwrap().hostport, "h:1935");
        assert!(parse_rtmp_url("rtmp://h/a").is_err());
    }

    #[test]
    fn scanner_follows_compressed_headers_and_chunk_size() {
        // Server side: Set Chunk Size 300, then media with fmt 1/2/3
        // headers (ChunkEncoder compresses like ffmpeg), an extended
        // timestamp and a command.
        let mut wire = Vec::new();
        control(
            &mut wire,
            message_type::SET_CHUNK_SIZE,
            &300u32.to_be_bytes(),
        );
        let mut enc = ChunkEncoder::new(300);
        let mut msgs = Vec::new();
        for i in 0..20u32 {
            let ts = if i < 15 { i * 33 } else { 0x0100_0000 + i * 33 };
            let len = 10 + (i as usize % 3) * 400;
            let mut body = vec![0x27u8, 1];
            body.resize(len, i as u8);
            let h = MessageHeader {
                csid: 6,
                timestamp: ts,
                type_id: 9,
                stream_id: 1,
            };
            enc.encode(&h, &body, &mut wire);
            msgs.push(ts);
            let ah = MessageHeader {
                csid: 4,
                timestamp: ts,
                type_id: 8,
                stream_id: 1,
            };
            enc.encode(&ah, &[0xAF, 1, 2, 3], &mut wire);
        }
        let mut cmd = Vec::new();
        amf0::encode_all(
            &[
                s("_result"),
                Amf0Value::Number(2.0),
                Amf0Value::Null,
                Amf0Value::Number(7.0),
            ],
            &mut cmd,
        );
        enc.encode(
            &MessageHeader {
                csid: 3,
                timestamp: 0,
                type_id: 20,
                stream_id: 0,
            },
            &cmd,
            &mut wire,
        );
        for step in [1, 5, 97, 4096] {
            let mut sc = ChunkScanner::new();
            let mut ev = Vec::new();
            for c in wire.chunks(step) {
                sc.feed(c, &mut ev).unwrap();
            }
            let video: Vec<u32> = ev
                .iter()
                .filter_map(|e| match e {
                    RtmpEvent::Media(t) if t.tag_type == 9 => {
                        assert!(t.is_video_frame());
                        Some(t.ts)
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(video, msgs, "step {step}");
            let last = ev.last().unwrap();
            let RtmpEvent::Message { payload, .. } = last else {
                panic!("{last:?}")
            };
            assert_eq!(parse_reply(payload), Reply::Created(7));
        }
    }
}
