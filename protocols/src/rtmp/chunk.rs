//! The chunk stream: splitting messages into chunks and reassembling them.
//!
//! Decoding ([`ChunkDecoder`]) keeps, per chunk stream id (csid), the last
//! header fields and the partial message; only chunk *headers* (≤ 18 bytes)
//! are ever buffered on their own, payload bytes go straight into the
//! message being reassembled. Timestamp rules, as ffmpeg and librtmp write
//! them:
//! - fmt 0 carries the absolute timestamp; fmt 1 and 2 a delta added to the
//!   chunk stream's previous timestamp (wrapping at 2^32);
//! - a fmt 3 chunk that *starts* a message adds the previous header's
//!   timestamp field again (the delta, or after a fmt 0 its absolute value);
//! - a field of 0xFFFFFF means a 4-byte extended timestamp follows, and then
//!   also follows every fmt 3 header on that chunk stream until the next
//!   fmt 0/1/2 header (continuation chunks included).
//!
//! Encoding: [`encode_message`] (fmt 0 then fmt 3 chunks; headers only, the
//! payload referenced, never copied) is stateless, so one encoding can be
//! shared by every receiver with the same chunk size. [`ChunkEncoder`]
//! compresses headers (fmt 1/2/3) the way ffmpeg does, for a client side
//! or for tests.
use bytes::{BufMut, Bytes, BytesMut};

use super::{Limits, RtmpError};

/// Message type ids (RTMP spec section 5.4 and 7).
pub mod message_type {
    /// Set Chunk Size (protocol control).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (protocol control).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (protocol control).
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (protocol control).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (protocol control).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3.
    pub const DATA_AMF3: u8 = 15;
    /// Shared object message, AMF3.
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message, AMF3 (a format byte 0 then AMF0 values in practice).
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 (`@setDataFrame`, `onMetaData`, ...).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object message, AMF0.
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command message, AMF0.
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message: several FLV-tag-like sub-messages.
    pub const AGGREGATE: u8 = 22;
}

/// The chunk size every RTMP connection starts with, both directions.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest chunk size the protocol allows (31 bits).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Lowest and highest chunk stream id a basic header can carry (0 and 1 are
/// the 2- and 3-byte header escapes).
pub const CSID_MIN: u32 = 2;
/// See [`CSID_MIN`].
pub const CSID_MAX: u32 = 65_599;
/// Longest chunk header: 3-byte basic header, 11-byte message header,
/// 4-byte extended timestamp.
pub const MAX_HEADER_LEN: usize = 18;

const EXTENDED: u32 = 0xFF_FFFF;
/// Messages announce up to this many bytes; the reassembly buffer starts
/// at most this large and grows as bytes arrive.
const PREALLOC: usize = 64 * 1024;

/// One reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Chunk stream it arrived on.
    pub csid: u32,
    /// Absolute timestamp (ms, wrapping at 2^32).
    pub timestamp: u32,
    /// Message type id ([`message_type`]).
    pub type_id: u8,
    /// Message stream id (0 for control and NetConnection commands).
    pub stream_id: u32,
    /// The message body.
    pub payload: Bytes,
}

/// Header fields of a message to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Chunk stream id, 2..=65599 (values outside are clamped into it).
    pub csid: u32,
    /// Absolute timestamp in ms.
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
}

#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    /// Last timestamp field: absolute after fmt 0, the delta after fmt 1/2
    /// (the extended value when extended).
    ts_field: u32,
    /// The last fmt 0/1/2 header used an extended timestamp.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The message being received; `None` between messages.
    partial: Option<BytesMut>,
}

/// A parsed chunk header (before it is applied to its chunk stream).
#[derive(Debug)]
struct RawHeader {
    len: usize,
    fmt: u8,
    csid: u32,
    /// 24-bit field (fmt 0-2).
    ts24: Option<u32>,
    /// Extended timestamp, when present.
    ext: Option<u32>,
    length: Option<u32>,
    type_id: Option<u8>,
    stream_id: Option<u32>,
}

fn be24(b: &[u8]) -> u32 {
    u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reassembles messages from the chunk stream of one connection.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    /// Payload bytes still due in the current chunk and its stream's index.
    in_chunk: Option<(usize, u32)>,
    /// Bytes consumed since the chunk stream started (for error offsets).
    consumed: u64,
    /// Sum of the lengths of the messages being received (reserved, so the
    /// bound holds however their bytes interleave).
    buffered: usize,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkDecoder {
    /// A decoder at the default chunk size (128).
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            in_chunk: None,
            consumed: 0,
            buffered: 0,
        }
    }

    /// The peer's chunk size now in force.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Apply the peer's Set Chunk Size (validated by the caller). Takes
    /// effect from the next chunk.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Bytes consumed so far (the offset the next byte will have).
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// Lengths of the messages being received, summed (what
    /// `Limits::max_buffered_bytes` bounds).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Abort Message: drop the partial message on `csid`, if any.
    pub fn abort(&mut self, csid: u32) {
        let Some(idx) = self.streams.iter().position(|s| s.csid == csid) else {
            return;
        };
        let s = &mut self.streams[idx];
        if s.partial.take().is_none() {
            return;
        }
        self.buffered -= s.length as usize;
        // The message's chunk (if one is being read) is dropped too.
        if self.in_chunk.is_some_and(|(i, _)| i == idx) {
            self.in_chunk = None;
        }
    }

    /// Consume bytes from the front of `data` until one message is complete
    /// (returned) or `data` is used up (`Ok(None)`; partial state is kept).
    /// Call again with the rest of `data` after handling a message: a Set
    /// Chunk Size it carries must be applied before the next chunk.
    pub fn decode(
        &mut self,
        data: &mut &[u8],
        limits: &Limits,
    ) -> Result<Option<Message>, RtmpError> {
        loop {
            if let Some((idx, remaining)) = self.in_chunk {
                if data.is_empty() {
                    return Ok(None);
                }
                let take = (remaining as usize).min(data.len());
                let s = &mut self.streams[idx];
                let Some(partial) = s.partial.as_mut() else {
                    unreachable!("a chunk is only read into a partial message")
                };
                partial.extend_from_slice(&data[..take]);
                *data = &data[take..];
                self.consumed += take as u64;
                let remaining = remaining - take as u32;
                if remaining > 0 {
                    self.in_chunk = Some((idx, remaining));
                    return Ok(None);
                }
                self.in_chunk = None;
                if partial.len() == s.length as usize {
                    return Ok(Some(self.finish(idx)));
                }
                continue;
            }
            // Header: gather up to MAX_HEADER_LEN bytes, parse, give back
            // what the header did not use.
            if data.is_empty() {
                return Ok(None);
            }
            let old = self.hdr_len;
            let take = (MAX_HEADER_LEN - old).min(data.len());
            self.hdr[old..old + take].copy_from_slice(&data[..take]);
            self.hdr_len += take;
            let parsed = self.parse_header(&self.hdr[..self.hdr_len]);
            match parsed {
                None => {
                    *data = &data[take..];
                    self.consumed += take as u64;
                    return Ok(None);
                }
                Some(raw) => {
                    let used = raw.len - old;
                    *data = &data[used..];
                    let at = self.consumed - old as u64;
                    self.consumed += used as u64;
                    self.hdr_len = 0;
                    if let Some(msg) = self.apply_header(&raw, at, limits)? {
                        return Ok(Some(msg));
                    }
                }
            }
        }
    }

    fn finish(&mut self, idx: usize) -> Message {
        let s = &mut self.streams[idx];
        let payload = s.partial.take().map(BytesMut::freeze).unwrap_or_default();
        self.buffered -= s.length as usize;
        Message {
            csid: s.csid,
            timestamp: s.timestamp,
            type_id: s.type_id,
            stream_id: s.stream_id,
            payload,
        }
    }

    fn parse_header(&self, b: &[u8]) -> Option<RawHeader> {
        let b0 = *b.first()?;
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => (u32::from(*b.get(1)?) + 64, 2),
            1 => (u32::from(*b.get(2)?) * 256 + u32::from(*b.get(1)?) + 64, 3),
            n => (u32::from(n), 1),
        };
        let mh = [11, 7, 3, 0][usize::from(fmt)];
        let m = b.get(pos..pos + mh)?;
        let mut raw = RawHeader {
            len: 0,
            fmt,
            csid,
            ts24: None,
            ext: None,
            length: None,
            type_id: None,
            stream_id: None,
        };
        if fmt <= 2 {
            raw.ts24 = Some(be24(m));
        }
        if fmt <= 1 {
            raw.length = Some(be24(&m[3..]));
            raw.type_id = Some(m[6]);
        }
        if fmt == 0 {
            raw.stream_id = Some(u32::from_le_bytes([m[7], m[8], m[9], m[10]]));
        }
        pos += mh;
        let extended = match raw.ts24 {
            Some(t) => t == EXTENDED,
            None => self.streams.iter().any(|s| s.csid == csid && s.extended),
        };
        if extended {
            raw.ext = Some(be32(b.get(pos..pos + 4)?));
            pos += 4;
        }
        raw.len = pos;
        Some(raw)
    }

    /// Apply a parsed header to its chunk stream; returns a message when it
    /// is complete already (zero length).
    fn apply_header(
        &mut self,
        raw: &RawHeader,
        at: u64,
        limits: &Limits,
    ) -> Result<Option<Message>, RtmpError> {
        let csid = raw.csid;
        let idx = match self.streams.iter().position(|s| s.csid == csid) {
            Some(i) => i,
            None => {
                if raw.fmt >= 2 {
                    return Err(RtmpError::NoPreviousHeader {
                        csid,
                        fmt: raw.fmt,
                        offset: at,
                    });
                }
                if self.streams.len() >= limits.max_chunk_streams {
                    return Err(RtmpError::TooManyChunkStreams {
                        csid,
                        limit: limits.max_chunk_streams,
                        offset: at,
                    });
                }
                self.streams.push(ChunkStream {
                    csid,
                    timestamp: 0,
                    ts_field: 0,
                    extended: false,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    partial: None,
                });
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[idx];
        if raw.fmt < 3 {
            if let Some(p) = &s.partial {
                return Err(RtmpError::InterruptedMessage {
                    csid,
                    fmt: raw.fmt,
                    received: p.len() as u32,
                    length: s.length,
                    offset: at,
                });
            }
            let ts24 = raw.ts24.unwrap_or(0);
            let field = raw.ext.unwrap_or(ts24);
            s.extended = ts24 == EXTENDED;
            s.ts_field = field;
            s.timestamp = if raw.fmt == 0 {
                field
            } else {
                s.timestamp.wrapping_add(field)
            };
            if let (Some(length), Some(type_id)) = (raw.length, raw.type_id) {
                s.length = length;
                s.type_id = type_id;
            }
            if let Some(id) = raw.stream_id {
                s.stream_id = id;
            }
        } else if s.partial.is_none() {
            // fmt 3 starting a new message: same header, timestamp advanced
            // by the previous field.
            if let Some(ext) = raw.ext {
                s.ts_field = ext;
            }
            s.timestamp = s.timestamp.wrapping_add(s.ts_field);
        }
        let received = match &s.partial {
            Some(p) => p.len(),
            None => {
                if s.length > limits.max_message_size {
                    return Err(RtmpError::MessageTooLarge {
                        csid,
                        type_id: s.type_id,
                        length: s.length,
                        limit: limits.max_message_size,
                        offset: at,
                    });
                }
                if s.length == 0 {
                    return Ok(Some(Message {
                        csid,
                        timestamp: s.timestamp,
                        type_id: s.type_id,
                        stream_id: s.stream_id,
                        payload: Bytes::new(),
                    }));
                }
                if self.buffered.saturating_add(s.length as usize) > limits.max_buffered_bytes {
                    return Err(RtmpError::BufferLimit {
                        csid,
                        limit: limits.max_buffered_bytes,
                        offset: at,
                    });
                }
                self.buffered += s.length as usize;
                s.partial = Some(BytesMut::with_capacity((s.length as usize).min(PREALLOC)));
                0
            }
        };
        let remaining = (s.length as usize - received).min(self.chunk_size as usize);
        self.in_chunk = Some((idx, remaining as u32));
        Ok(None)
    }
}

fn clamp_csid(csid: u32) -> u32 {
    csid.clamp(CSID_MIN, CSID_MAX)
}

/// Append a basic header (1, 2 or 3 bytes).
fn put_basic_header(out: &mut impl BufMut, fmt: u8, csid: u32) {
    let csid = clamp_csid(csid);
    let fmt = fmt << 6;
    match csid {
        2..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => {
            out.put_u8(fmt);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            out.put_u8(fmt | 1);
            let v = csid - 64;
            out.put_u8((v & 0xFF) as u8);
            out.put_u8((v >> 8) as u8);
        }
    }
}

fn put_u24(out: &mut impl BufMut, v: u32) {
    out.put_u8((v >> 16) as u8);
    out.put_u8((v >> 8) as u8);
    out.put_u8(v as u8);
}

/// Append a fmt 0 header for a message of `length` bytes.
fn put_fmt0(out: &mut impl BufMut, h: &MessageHeader, length: u32) {
    put_basic_header(out, 0, h.csid);
    put_u24(out, h.timestamp.min(EXTENDED));
    put_u24(out, length);
    out.put_u8(h.type_id);
    out.put_u32_le(h.stream_id);
    if h.timestamp >= EXTENDED {
        out.put_u32(h.timestamp);
    }
}

/// Append a fmt 3 continuation header.
fn put_fmt3(out: &mut impl BufMut, csid: u32, ext: Option<u32>) {
    put_basic_header(out, 3, csid);
    if let Some(ts) = ext {
        out.put_u32(ts);
    }
}

fn chunk_size_usize(chunk_size: u32) -> usize {
    chunk_size.clamp(1, MAX_CHUNK_SIZE) as usize
}

/// Encode one message as a fmt 0 chunk followed by fmt 3 continuation
/// chunks, appending *pieces* to `out`: header bytes (slices of one small
/// buffer) interleaved with slices of `payload` (reference-counted, not
/// copied). Sending the pieces in order puts the message on the wire.
///
/// Stateless: the result depends only on the arguments, so it can be
/// shared by every connection that uses the same chunk size (and stream
/// id). Timestamps ≥ 0xFFFFFF are written as extended timestamps, repeated
/// on every continuation chunk. `chunk_size` is clamped to 1..=2^31-1,
/// `payload` must be shorter than 2^24 bytes (the length field is 24-bit;
/// longer payloads are cut).
pub fn encode_message(
    header: &MessageHeader,
    payload: &Bytes,
    chunk_size: u32,
    out: &mut Vec<Bytes>,
) {
    let payload = payload.slice(..payload.len().min(0xFF_FFFF));
    let cs = chunk_size_usize(chunk_size);
    let chunks = payload.len().div_ceil(cs).max(1);
    let ext = (header.timestamp >= EXTENDED).then_some(header.timestamp);
    let cont_len = 3 + if ext.is_some() { 4 } else { 0 };
    let mut heads = BytesMut::with_capacity(MAX_HEADER_LEN + (chunks - 1) * cont_len);
    put_fmt0(&mut heads, header, payload.len() as u32);
    let mut marks = Vec::with_capacity(chunks);
    marks.push(heads.len());
    for _ in 1..chunks {
        put_fmt3(&mut heads, header.csid, ext);
        marks.push(heads.len());
    }
    let heads = heads.freeze();
    out.reserve(chunks * 2);
    let mut start = 0;
    for (i, &end) in marks.iter().enumerate() {
        out.push(heads.slice(start..end));
        start = end;
        let from = i * cs;
        let to = (from + cs).min(payload.len());
        if to > from {
            out.push(payload.slice(from..to));
        }
    }
}

/// [`encode_message`] into one contiguous buffer (copies the payload; for
/// small control and command messages).
pub fn encode_message_to_vec(
    header: &MessageHeader,
    payload: &[u8],
    chunk_size: u32,
    out: &mut Vec<u8>,
) {
    let payload = &payload[..payload.len().min(0xFF_FFFF)];
    let cs = chunk_size_usize(chunk_size);
    let ext = (header.timestamp >= EXTENDED).then_some(header.timestamp);
    put_fmt0(out, header, payload.len() as u32);
    for (i, chunk) in payload.chunks(cs).enumerate() {
        if i > 0 {
            put_fmt3(out, header.csid, ext);
        }
        out.extend_from_slice(chunk);
    }
}

#[derive(Debug)]
struct PrevOut {
    csid: u32,
    timestamp: u32,
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// A header-compressing encoder (fmt 1/2/3 where the previous message on the
/// chunk stream allows, as ffmpeg's writer does). Its output decodes with
/// [`ChunkDecoder`]; the state is per connection, so its output cannot be
/// shared between connections.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    prev: Vec<PrevOut>,
}

impl ChunkEncoder {
    /// An encoder writing chunks of `chunk_size` bytes (clamped to
    /// 1..=2^31-1).
    pub fn new(chunk_size: u32) -> Self {
        Self {
            chunk_size: chunk_size.clamp(1, MAX_CHUNK_SIZE),
            prev: Vec::new(),
        }
    }

    /// Change the chunk size for the following messages (after sending Set
    /// Chunk Size).
    pub fn set_chunk_size(&mut self, chunk_size: u32) {
        self.chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Append the chunks of one message to `out`.
    pub fn encode(&mut self, header: &MessageHeader, payload: &[u8], out: &mut Vec<u8>) {
        let payload = &payload[..payload.len().min(0xFF_FFFF)];
        let csid = clamp_csid(header.csid);
        let length = payload.len() as u32;
        let ts = header.timestamp;
        let prev = self.prev.iter_mut().find(|p| p.csid == csid);
        // fmt and the timestamp field it carries.
        let (fmt, field) = match &prev {
            Some(p)
                if p.stream_id == header.stream_id
                    && ts.wrapping_sub(p.timestamp) < 0x8000_0000 =>
            {
                let delta = ts.wrapping_sub(p.timestamp);
                if p.length == length && p.type_id == header.type_id {
                    if delta == p.ts_field {
                        (3, delta)
                    } else {
                        (2, delta)
                    }
                } else {
                    (1, delta)
                }
            }
            _ => (0, ts),
        };
        let ext = (field >= EXTENDED).then_some(field);
        put_basic_header(out, fmt, csid);
        if fmt <= 2 {
            put_u24(out, field.min(EXTENDED));
        }
        if fmt <= 1 {
            put_u24(out, length);
            out.push(header.type_id);
        }
        if fmt == 0 {
            out.extend_from_slice(&header.stream_id.to_le_bytes());
        }
        if let Some(e) = ext {
            out.extend_from_slice(&e.to_be_bytes());
        }
        for (i, chunk) in payload.chunks(self.chunk_size as usize).enumerate() {
            if i > 0 {
                put_fmt3(out, csid, ext);
            }
            out.extend_from_slice(chunk);
        }
        let state = PrevOut {
            csid,
            timestamp: ts,
            ts_field: field,
            length,
            type_id: header.type_id,
            stream_id: header.stream_id,
        };
        match prev {
            Some(p) => *p = state,
            None => self.prev.push(state),
        }
    }
}
