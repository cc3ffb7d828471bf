//! Protocol control messages, User Control events and aggregate messages.
use bytes::Bytes;

use super::RtmpError;
use super::chunk::message_type;

/// User Control event types (RTMP spec 7.1.7).
pub mod user_control {
    /// Stream Begin: the stream (id in the data) is functional.
    pub const STREAM_BEGIN: u16 = 0;
    /// Stream EOF: playback of the stream is over.
    pub const STREAM_EOF: u16 = 1;
    /// Stream Dry: no more data for now.
    pub const STREAM_DRY: u16 = 2;
    /// Set Buffer Length (client → server): stream id, buffer ms.
    pub const SET_BUFFER_LENGTH: u16 = 3;
    /// Stream Is Recorded.
    pub const STREAM_IS_RECORDED: u16 = 4;
    /// Ping Request: timestamp to echo.
    pub const PING_REQUEST: u16 = 6;
    /// Ping Response: the echoed timestamp.
    pub const PING_RESPONSE: u16 = 7;
}

/// A decoded protocol control or user control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    SetChunkSize(u32),
    Abort(u32),
    Acknowledgement(u32),
    WindowAckSize(u32),
    SetPeerBandwidth(u32, u8),
    User { event: u16, value: u32 },
}

fn length_error(type_id: u8, csid: u32, length: usize, expected: usize) -> RtmpError {
    RtmpError::ControlMessageLength {
        type_id,
        csid,
        length,
        expected,
    }
}

fn u32_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// Parse a control message (types 1-6). Longer payloads than needed are
/// accepted (trailing bytes ignored), shorter ones are errors.
pub(crate) fn parse_control(type_id: u8, csid: u32, p: &[u8]) -> Result<Control, RtmpError> {
    let need = match type_id {
        message_type::SET_PEER_BANDWIDTH => 5,
        message_type::USER_CONTROL => 2,
        _ => 4,
    };
    if p.len() < need {
        return Err(length_error(type_id, csid, p.len(), need));
    }
    Ok(match type_id {
        message_type::SET_CHUNK_SIZE => Control::SetChunkSize(u32_at(p, 0)),
        message_type::ABORT => Control::Abort(u32_at(p, 0)),
        message_type::ACKNOWLEDGEMENT => Control::Acknowledgement(u32_at(p, 0)),
        message_type::WINDOW_ACK_SIZE => Control::WindowAckSize(u32_at(p, 0)),
        message_type::SET_PEER_BANDWIDTH => Control::SetPeerBandwidth(u32_at(p, 0), p[4]),
        _ => {
            let event = u16::from_be_bytes([p[0], p[1]]);
            // Stream events and pings carry 4 bytes; Set Buffer Length 8
            // (stream id, then ms; the stream id is what is kept).
            let value = if p.len() >= 6 { u32_at(p, 2) } else { 0 };
            Control::User { event, value }
        }
    })
}

/// Payload of a 4-byte protocol control message.
pub(crate) fn u32_payload(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Payload of Set Peer Bandwidth (limit type 2 = dynamic).
pub(crate) fn peer_bandwidth_payload(window: u32, limit_type: u8) -> [u8; 5] {
    let b = window.to_be_bytes();
    [b[0], b[1], b[2], b[3], limit_type]
}

/// Payload of a User Control event with one 4-byte value.
pub(crate) fn user_control_payload(event: u16, value: u32) -> [u8; 6] {
    let e = event.to_be_bytes();
    let v = value.to_be_bytes();
    [e[0], e[1], v[0], v[1], v[2], v[3]]
}

/// One sub-message of an aggregate message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubMessage {
    pub(crate) type_id: u8,
    pub(crate) timestamp: u32,
    pub(crate) payload: Bytes,
}

/// Split an aggregate message (type 22) into its sub-messages: each is an
/// FLV tag (type, 24-bit size, 24+8-bit timestamp, 24-bit stream id, body)
/// followed by a 4-byte back pointer. Sub-message timestamps are rebased so
/// the first one gets the aggregate's `timestamp`. Bodies are slices of
/// `payload` (no copy).
pub(crate) fn split_aggregate(
    payload: &Bytes,
    timestamp: u32,
    csid: u32,
) -> Result<Vec<SubMessage>, RtmpError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut first_ts = None;
    let p = &payload[..];
    while pos < p.len() {
        let err = |detail: &'static str| RtmpError::Aggregate {
            csid,
            offset: pos,
            detail,
        };
        if p.len() - pos < 11 {
            return Err(err("truncated sub-message header"));
        }
        let h = &p[pos..pos + 11];
        let type_id = h[0];
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let ts =
            u32::from(h[7]) << 24 | u32::from(h[4]) << 16 | u32::from(h[5]) << 8 | u32::from(h[6]);
        let body_start = pos + 11;
        if p.len() - body_start < size {
            return Err(err("sub-message body runs past the aggregate"));
        }
        let first = *first_ts.get_or_insert(ts);
        out.push(SubMessage {
            type_id,
            timestamp: timestamp.wrapping_add(ts.wrapping_sub(first)),
            payload: payload.slice(body_start..body_start + size),
        });
        // Back pointer (previous tag size); tolerate a missing last one.
        pos = (body_start + size + 4).min(p.len());
    }
    Ok(out)
}
