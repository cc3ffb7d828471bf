//! Unit tests: handshake variants, chunk stream edge cases, the command
//! conversation of a publisher and a player, limits and timeouts.
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_packager::amf0::{self, Amf0Value};

use super::control::{split_aggregate, user_control};
use super::handshake::{
    FLASH_PLAYER_KEY, HANDSHAKE_SIZE, MEDIA_SERVER_KEY, block_digest, digest_offset, fill_noise,
    hmac_sha256,
};
use super::*;

pub(super) fn plain_c0c1() -> Vec<u8> {
    let mut c = vec![0u8; 1 + HANDSHAKE_SIZE];
    c[0] = 3;
    fill_noise(&mut c[9..], 42);
    c
}

/// C0 + a digest C1 the way ffmpeg builds it (client version 9.0.124.2).
pub(super) fn digest_c0c1(scheme: u8, seed: u64) -> (Vec<u8>, [u8; 32]) {
    let mut c = vec![0u8; 1 + HANDSHAKE_SIZE];
    c[0] = 3;
    fill_noise(&mut c[9..], seed);
    c[5..9].copy_from_slice(&[9, 0, 124, 2]);
    let c1 = &mut c[1..];
    let at = digest_offset(c1, scheme);
    let d = block_digest(c1, at, &FLASH_PLAYER_KEY[..30]);
    c1[at..at + 32].copy_from_slice(&d);
    (c, d)
}

/// A scripted client: encodes with header compression, decodes what the
/// session sends, collects events.
pub(super) struct Client {
    pub(super) session: ServerSession,
    pub(super) now: Instant,
    pub(super) enc: ChunkEncoder,
    dec: ChunkDecoder,
    /// Server bytes not decoded yet.
    pending: Vec<u8>,
    /// Handshake bytes still to skip in the server's output.
    skip: usize,
    pub(super) events: Vec<Event>,
    pub(super) messages: Vec<Message>,
    pub(super) closed: Option<Option<RtmpError>>,
}

impl Client {
    pub(super) fn with_limits(limits: Limits) -> Self {
        let now = spate_tests::test_epoch();
        let mut c = Self {
            session: ServerSession::new(now, limits),
            now,
            enc: ChunkEncoder::new(128),
            dec: ChunkDecoder::new(),
            pending: Vec::new(),
            skip: 1 + 2 * HANDSHAKE_SIZE,
            events: Vec::new(),
            messages: Vec::new(),
            closed: None,
        };
        c.feed(&plain_c0c1());
        c.feed(&[0u8; HANDSHAKE_SIZE]);
        assert!(c.closed.is_none());
        c
    }

    pub(super) fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        self.session.handle_input(self.now, bytes);
        self.pump();
    }

    /// Drain outputs into events / decoded server messages.
    pub(super) fn pump(&mut self) {
        while let Some(out) = self.session.poll_output() {
            assert!(self.closed.is_none(), "output after close: {out:?}");
            match out {
                Output::Transmit(b) => {
                    let skip = self.skip.min(b.len());
                    self.skip -= skip;
                    self.pending.extend_from_slice(&b[skip..]);
                }
                Output::Event(e) => self.events.push(e),
                Output::Close(e) => self.closed = Some(e),
            }
        }
        let mut data = &self.pending[..];
        let limits = Limits::default();
        while let Some(m) = self
            .dec
            .decode(&mut data, &limits)
            .expect("server output decodes")
        {
            if m.type_id == message_type::SET_CHUNK_SIZE {
                self.dec
                    .set_chunk_size(u32::from_be_bytes(m.payload[..4].try_into().unwrap()));
            }
            self.messages.push(m);
        }
        assert!(data.is_empty(), "server output ends on a message boundary");
        self.pending.clear();
    }

    pub(super) fn send(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) {
        let mut out = Vec::new();
        let h = MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        };
        self.enc.encode(&h, payload, &mut out);
        self.feed(&out);
    }

    pub(super) fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        let mut body = Vec::new();
        amf0::encode_all(values, &mut body);
        self.send(3, message_type::COMMAND_AMF0, stream_id, 0, &body);
    }

    pub(super) fn connect(&mut self, app: &str) {
        let obj = Amf0Value::Object(vec![
            ("app".into(), app.into()),
            ("type".into(), "nonprivate".into()),
            (
                "flashVer".into(),
                "FMLE/3.0 (compatible; Lavf59.27.100)".into(),
            ),
            (
                "tcUrl".into(),
                format!("rtmp://127.0.0.1:1935/{app}").into(),
            ),
        ]);
        self.command(0, &["connect".into(), 1.0.into(), obj]);
    }

    /// connect, releaseStream, FCPublish, createStream, publish, accept.
    pub(super) fn publish(&mut self, app: &str, name: &str) {
        self.connect(app);
        self.command(
            0,
            &[
                "releaseStream".into(),
                2.0.into(),
                Amf0Value::Null,
                name.into(),
            ],
        );
        self.command(
            0,
            &["FCPublish".into(), 3.0.into(), Amf0Value::Null, name.into()],
        );
        self.command(0, &["createStream".into(), 4.0.into(), Amf0Value::Null]);
        self.command(
            1,
            &[
                "publish".into(),
                5.0.into(),
                Amf0Value::Null,
                name.into(),
                "live".into(),
            ],
        );
        self.session.accept_publish(self.now);
        self.pump();
    }

    /// Commands the server sent: (name, all values).
    pub(super) fn commands(&self) -> Vec<Vec<Amf0Value>> {
        self.messages
            .iter()
            .filter(|m| {
                m.type_id == message_type::COMMAND_AMF0 || m.type_id == message_type::DATA_AMF0
            })
            .map(|m| amf0::decode_all(&m.payload).unwrap())
            .collect()
    }

    pub(super) fn status_codes(&self) -> Vec<String> {
        self.commands()
            .iter()
            .filter(|v| v[0].as_str() == Some("onStatus"))
            .filter_map(|v| v.get(3)?.get("code")?.as_str().map(str::to_owned))
            .collect()
    }

    pub(super) fn media(&self) -> Vec<(MediaKind, u32, Bytes)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Media {
                    kind,
                    timestamp_ms,
                    payload,
                } => Some((*kind, *timestamp_ms, payload.clone())),
                _ => None,
            })
            .collect()
    }
}

fn outputs(session: &mut ServerSession) -> Vec<Output> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

fn transmitted(outs: &[Output]) -> Vec<u8> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Transmit(b) => Some(&b[..]),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

// ---- handshake ----

#[test]
fn plain_handshake_echoes_c1() {
    let now = spate_tests::test_epoch();
    let mut s = ServerSession::new(now, Limits::default());
    let c0c1 = plain_c0c1();
    s.handle_input(now, &c0c1);
    let outs = outputs(&mut s);
    let tx = transmitted(&outs);
    assert_eq!(tx.len(), 1 + 2 * HANDSHAKE_SIZE);
    assert_eq!(tx[0], 3);
    assert_eq!(&tx[5..9], &[0, 0, 0, 0], "plain S1 has a zero version");
    assert_eq!(&tx[1 + HANDSHAKE_SIZE..], &c0c1[1..], "S2 echoes C1");
    assert!(!s.digest_handshake());
}

#[test]
fn handshake_byte_at_a_time_then_chunks_in_same_read() {
    let now = spate_tests::test_epoch();
    let mut s = ServerSession::new(now, Limits::default());
    let c0c1 = plain_c0c1();
    for (i, b) in c0c1.iter().enumerate() {
        s.handle_input(now, std::slice::from_ref(b));
        let outs = outputs(&mut s);
        if i + 1 < c0c1.len() {
            assert!(outs.is_empty(), "no reply before C1 is complete");
        } else {
            assert_eq!(transmitted(&outs).len(), 1 + 2 * HANDSHAKE_SIZE);
        }
    }
    // C2 and a Ping Request in one read.
    let mut data = vec![0u8; HANDSHAKE_SIZE];
    let h = MessageHeader {
        csid: 2,
        timestamp: 0,
        type_id: message_type::USER_CONTROL,
        stream_id: 0,
    };
    encode_message_to_vec(&h, &[0, 6, 0, 0, 0x12, 0x34], 128, &mut data);
    s.handle_input(now, &data);
    let tx = transmitted(&outputs(&mut s));
    let mut rest = &tx[..];
    let m = ChunkDecoder::new()
        .decode(&mut rest, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(m.type_id, message_type::USER_CONTROL);
    assert_eq!(
        &m.payload[..],
        &[0, 7, 0, 0, 0x12, 0x34],
        "Ping Response echoes"
    );
}

fn check_digest_response(scheme: u8) {
    let now = spate_tests::test_epoch();
    let mut s = ServerSession::new(now, Limits::default());
    let (c0c1, client_digest) = digest_c0c1(scheme, 7 + u64::from(scheme));
    s.handle_input(now, &c0c1);
    s.handle_input(now, &[0u8; HANDSHAKE_SIZE]);
    assert!(s.digest_handshake());
    let tx = transmitted(&outputs(&mut s));
    let s1 = &tx[1..1 + HANDSHAKE_SIZE];
    let s2 = &tx[1 + HANDSHAKE_SIZE..];
    assert_ne!(&s1[4..8], &[0, 0, 0, 0]);
    // The client's checks (ffmpeg rtmp_handshake, for playing clients).
    let at = digest_offset(s1, scheme);
    assert_eq!(
        &s1[at..at + 32],
        &block_digest(s1, at, &MEDIA_SERVER_KEY[..36])
    );
    let key = hmac_sha256(&MEDIA_SERVER_KEY, &[&client_digest]);
    assert_eq!(
        &s2[HANDSHAKE_SIZE - 32..],
        &hmac_sha256(&key, &[&s2[..HANDSHAKE_SIZE - 32]])
    );
}

#[test]
fn digest_handshake_scheme_0() {
    check_digest_response(0);
}

#[test]
fn digest_handshake_scheme_1() {
    check_digest_response(1);
}

#[test]
fn hmac_matches_rfc4231_case_2() {
    let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn non_digest_c1_with_version_gets_plain_answer() {
    let now = spate_tests::test_epoch();
    let mut s = ServerSession::new(now, Limits::default());
    let mut c = plain_c0c1();
    c[5] = 9; // a version, but no valid digest
    s.handle_input(now, &c);
    let tx = transmitted(&outputs(&mut s));
    assert_eq!(&tx[1 + HANDSHAKE_SIZE..], &c[1..]);
    assert!(!s.digest_handshake());
}

#[test]
fn wrong_version_closes() {
    let now = spate_tests::test_epoch();
    for v in [0u8, 6, 0x47] {
        let mut s = ServerSession::new(now, Limits::default());
        s.handle_input(now, &[v, 1, 2, 3]);
        assert_eq!(
            outputs(&mut s),
            vec![Output::Close(Some(RtmpError::HandshakeVersion {
                version: v
            }))]
        );
        assert_eq!(s.poll_timeout(), None);
        s.handle_input(now, &[3]);
        assert!(s.poll_output().is_none(), "nothing after close");
    }
}

// ---- chunk stream ----

fn decode_all_messages(bytes: &[u8], limits: &Limits) -> Result<Vec<Message>, RtmpError> {
    let mut d = ChunkDecoder::new();
    let mut data = bytes;
    let mut out = Vec::new();
    while let Some(m) = d.decode(&mut data, limits)? {
        out.push(m);
    }
    assert!(data.is_empty());
    Ok(out)
}

#[test]
fn basic_header_sizes() {
    for (csid, len) in [
        (2u32, 1usize),
        (63, 1),
        (64, 2),
        (319, 2),
        (320, 3),
        (65_599, 3),
    ] {
        let mut v = Vec::new();
        let h = MessageHeader {
            csid,
            timestamp: 5,
            type_id: 9,
            stream_id: 1,
        };
        encode_message_to_vec(&h, b"abc", 128, &mut v);
        assert_eq!(v.len(), len + 11 + 3, "csid {csid}");
        let m = decode_all_messages(&v, &Limits::default()).unwrap();
        assert_eq!(m[0].csid, csid);
        assert_eq!(&m[0].payload[..], b"abc");
    }
}

#[test]
fn extended_timestamp_on_continuation_chunks() {
    let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let h = MessageHeader {
        csid: 6,
        timestamp: 0x0100_0000,
        type_id: 9,
        stream_id: 1,
    };
    let mut v = Vec::new();
    encode_message_to_vec(&h, &payload, 128, &mut v);
    // fmt0 (1+11+4) + 7 continuation headers (1+4) + payload
    assert_eq!(v.len(), 16 + 7 * 5 + 1000);
    assert_eq!(&v[12..16], &[1, 0, 0, 0]);
    assert_eq!(&v[16 + 128..16 + 128 + 5], &[0xC6, 1, 0, 0, 0]);
    let m = decode_all_messages(&v, &Limits::default()).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].timestamp, 0x0100_0000);
    assert_eq!(&m[0].payload[..], &payload[..]);
}

#[test]
fn fmt3_new_message_adds_previous_field() {
    // fmt0 ts 33, then fmt3 (same length/type) = a new message at 66 (the
    // fmt0 field counts as the delta, as ffmpeg writes it).
    let mut v = vec![0x04, 0, 0, 33, 0, 0, 2, 8, 1, 0, 0, 0, b'a', b'b'];
    v.extend_from_slice(&[0xC4, b'c', b'd']);
    // fmt2 delta 10, then fmt3 → +10 again
    v.extend_from_slice(&[0x84, 0, 0, 10, b'e', b'f', 0xC4, b'g', b'h']);
    let m = decode_all_messages(&v, &Limits::default()).unwrap();
    let ts: Vec<u32> = m.iter().map(|m| m.timestamp).collect();
    assert_eq!(ts, vec![33, 66, 76, 86]);
    assert_eq!(&m[3].payload[..], b"gh");
}

#[test]
fn timestamp_wraps_at_32_bits() {
    let mut enc = ChunkEncoder::new(128);
    let mut v = Vec::new();
    let stamps = [
        0xFFFF_FF00u32,
        0xFFFF_FFF0,
        0x0000_0010,
        0x0000_0030,
        0x0100_0000,
    ];
    for ts in stamps {
        let h = MessageHeader {
            csid: 4,
            timestamp: ts,
            type_id: 8,
            stream_id: 1,
        };
        enc.encode(&h, &[1, 2, 3], &mut v);
    }
    let m = decode_all_messages(&v, &Limits::default()).unwrap();
    assert_eq!(m.iter().map(|m| m.timestamp).collect::<Vec<_>>(), stamps);
}

#[test]
fn interleaved_chunk_streams_reassemble() {
    // Two messages of 300 bytes on csid 4 and 6, chunks interleaved.
    let a: Vec<u8> = vec![0xAA; 300];
    let b: Vec<u8> = vec![0xBB; 300];
    let mut ea = Vec::new();
    let mut eb = Vec::new();
    for (csid, p, out) in [(4u32, &a, &mut ea), (6, &b, &mut eb)] {
        let h = MessageHeader {
            csid,
            timestamp: 1,
            type_id: 8,
            stream_id: 1,
        };
        encode_message_to_vec(&h, p, 128, out);
    }
    // Split each into its chunks: first 12+128, then 1+128, then 1+44.
    let split = |v: &[u8]| vec![v[..140].to_vec(), v[140..269].to_vec(), v[269..].to_vec()];
    let (ca, cb) = (split(&ea), split(&eb));
    let mut v = Vec::new();
    for i in 0..3 {
        v.extend_from_slice(&ca[i]);
        v.extend_from_slice(&cb[i]);
    }
    let m = decode_all_messages(&v, &Limits::default()).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(&m[0].payload[..], &a[..]);
    assert_eq!(&m[1].payload[..], &b[..]);
}

#[test]
fn chunk_errors_name_the_place() {
    let l = Limits::default();
    // fmt 3 on a fresh chunk stream.
    assert_eq!(
        decode_all_messages(&[0xC5], &l),
        Err(RtmpError::NoPreviousHeader {
            csid: 5,
            fmt: 3,
            offset: 0
        })
    );
    // Message too large.
    let small = Limits {
        max_message_size: 100,
        ..Limits::default()
    };
    let v = [0x04, 0, 0, 0, 0, 0, 101, 8, 1, 0, 0, 0];
    assert_eq!(
        decode_all_messages(&v, &small),
        Err(RtmpError::MessageTooLarge {
            csid: 4,
            type_id: 8,
            length: 101,
            limit: 100,
            offset: 0
        })
    );
    // fmt 1 inside a message on the same csid.
    let mut v = vec![0x04, 0, 0, 0, 0, 1, 0, 8, 1, 0, 0, 0];
    v.extend_from_slice(&[0u8; 128]);
    v.extend_from_slice(&[0x44, 0, 0, 0, 0, 0, 1, 8]);
    assert_eq!(
        decode_all_messages(&v, &l),
        Err(RtmpError::InterruptedMessage {
            csid: 4,
            fmt: 1,
            received: 128,
            length: 256,
            offset: 140
        })
    );
    // Too many chunk streams.
    let few = Limits {
        max_chunk_streams: 2,
        ..Limits::default()
    };
    let mut v = Vec::new();
    for csid in [3u32, 4, 5] {
        let h = MessageHeader {
            csid,
            timestamp: 0,
            type_id: 20,
            stream_id: 0,
        };
        encode_message_to_vec(&h, b"x", 128, &mut v);
    }
    assert_eq!(
        decode_all_messages(&v, &few),
        Err(RtmpError::TooManyChunkStreams {
            csid: 5,
            limit: 2,
            offset: 26
        })
    );
}

#[test]
fn buffered_bytes_are_bounded() {
    let l = Limits {
        max_message_size: 1000,
        max_buffered_bytes: 1500,
        ..Limits::default()
    };
    // Two partial 1000-byte messages on two csids: the second is refused.
    let mut v = vec![0x04, 0, 0, 0, 0, 0x03, 0xE8, 8, 1, 0, 0, 0];
    v.extend_from_slice(&[0; 128]);
    v.extend_from_slice(&[0x06, 0, 0, 0, 0, 0x03, 0xE8, 9, 1, 0, 0, 0]);
    assert!(matches!(
        decode_all_messages(&v, &l),
        Err(RtmpError::BufferLimit {
            csid: 6,
            limit: 1500,
            ..
        })
    ));
}

#[test]
fn abort_drops_partial_message() {
    let mut d = ChunkDecoder::new();
    let mut v = vec![0x04, 0, 0, 0, 0, 1, 0, 8, 1, 0, 0, 0];
    v.extend_from_slice(&[0u8; 128]);
    let mut data = &v[..];
    assert!(d.decode(&mut data, &Limits::default()).unwrap().is_none());
    assert_eq!(d.buffered(), 256);
    d.abort(4);
    assert_eq!(d.buffered(), 0);
    // A new fmt 0 message on csid 4 is fine now.
    let v = [0x04, 0, 0, 1, 0, 0, 1, 8, 1, 0, 0, 0, 0x55];
    let mut data = &v[..];
    let m = d.decode(&mut data, &Limits::default()).unwrap().unwrap();
    assert_eq!(&m.payload[..], &[0x55]);
}

#[test]
fn zero_length_message() {
    let v = [0x04, 0, 0, 7, 0, 0, 0, 8, 1, 0, 0, 0];
    let m = decode_all_messages(&v, &Limits::default()).unwrap();
    assert_eq!(m.len(), 1);
    assert!(m[0].payload.is_empty());
    assert_eq!(m[0].timestamp, 7);
}

#[test]
fn pieces_equal_contiguous_encoding() {
    let payload = Bytes::from((0..10_000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
    for (ts, cs) in [
        (0u32, 128u32),
        (0xFF_FFFF, 4096),
        (12345, 1),
        (1, 10_000),
        (2, 20_000),
    ] {
        let h = MessageHeader {
            csid: 6,
            timestamp: ts,
            type_id: 9,
            stream_id: 1,
        };
        let mut pieces = Vec::new();
        encode_message(&h, &payload, cs, &mut pieces);
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let mut v = Vec::new();
        encode_message_to_vec(&h, &payload, cs, &mut v);
        assert_eq!(joined, v, "ts {ts} chunk size {cs}");
        // Payload pieces point into the original buffer (no copy).
        assert!(pieces.iter().any(|p| p.as_ptr() >= payload.as_ptr()
            && p.as_ptr() < payload.as_ptr().wrapping_add(payload.len())));
    }
}

#[test]
fn aggregate_split() {
    let mut agg = Vec::new();
    for (t, ts, body) in [
        (9u8, 1000u32, &b"vid"[..]),
        (8, 1020, b"au"),
        (9, 1040, b"v2"),
    ] {
        agg.push(t);
        agg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.push((ts >> 24) as u8);
        agg.extend_from_slice(&[0, 0, 0]);
        agg.extend_from_slice(body);
        agg.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    }
    let subs = split_aggregate(&Bytes::from(agg.clone()), 5000, 4).unwrap();
    let got: Vec<(u8, u32, &[u8])> = subs
        .iter()
        .map(|s| (s.type_id, s.timestamp, &s.payload[..]))
        .collect();
    assert_eq!(
        got,
        vec![(9, 5000, &b"vid"[..]), (8, 5020, b"au"), (9, 5040, b"v2")]
    );
    agg.truncate(agg.len() - 6);
    assert!(matches!(
        split_aggregate(&Bytes::from(agg), 0, 4),
        Err(RtmpError::Aggregate {
            csid: 4,
            offset: 35,
            ..
        })
    ));
}

// ---- session: publish ----

#[test]
fn connect_is_answered() {
    let mut c = Client::new();
    c.connect("live?token=1/");
    let types: Vec<u8> = c.messages.iter().map(|m| m.type_id).collect();
    assert_eq!(types, vec![5, 6, 1, 20]);
    assert_eq!(&c.messages[0].payload[..], &2_500_000u32.to_be_bytes());
    assert_eq!(&c.messages[1].payload[..], &[0x00, 0x26, 0x25, 0xA0, 2]);
    assert_eq!(&c.messages[2].payload[..], &4096u32.to_be_bytes());
    let cmds = c.commands();
    assert_eq!(cmds[0][0].as_str(), Some("_result"));
    assert_eq!(cmds[0][1].as_f64(), Some(1.0));
    assert_eq!(
        cmds[0][3].get("code").and_then(Amf0Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(c.session.out_chunk_size(), 4096);
    let Event::Connect(info) = &c.events[0] else {
        panic!("{:?}", c.events)
    };
    assert_eq!(info.app, "live");
    assert_eq!(info.app_query.as_deref(), Some("token=1/"));
    assert_eq!(
        info.tc_url.as_deref(),
        Some("rtmp://127.0.0.1:1935/live?token=1/")
    );
}

#[test]
fn publish_conversation() {
    let mut c = Client::new();
    c.publish("live", "test?key=abc");
    let cmds = c.commands();
    let results: Vec<(String, f64)> = cmds
        .iter()
        .filter(|v| v[0].as_str() == Some("_result"))
        .map(|v| (v[0].as_str().unwrap().to_owned(), v[1].as_f64().unwrap()))
        .collect();
    assert_eq!(
        results.len(),
        4,
        "connect, releaseStream, FCPublish, createStream"
    );
    let create = cmds.iter().find(|v| v[1].as_f64() == Some(4.0)).unwrap();
    assert_eq!(create[3].as_f64(), Some(1.0), "stream id 1");
    assert_eq!(
        c.events[1],
        Event::Publish {
            stream_id: 1,
            app: "live".into(),
            name: "test".into(),
            query: Some("key=abc".into()),
            publish_type: "live".into(),
        }
    );
    assert_eq!(c.status_codes(), vec!["NetStream.Publish.Start"]);
    assert!(c.session.is_publishing());

    // Metadata through @setDataFrame.
    let meta = vec![
        Amf0Value::from("onMetaData"),
        Amf0Value::EcmaArray(vec![("width".into(), 320.0.into())]),
    ];
    let mut body = Vec::new();
    amf0::encode_all(&[Amf0Value::from("@setDataFrame")], &mut body);
    let prefix = body.len();
    amf0::encode_all(&meta, &mut body);
    c.send(4, message_type::DATA_AMF0, 1, 0, &body);
    let Some(Event::Metadata {
        timestamp_ms: 0,
        values,
        payload,
    }) = c.events.last()
    else {
        panic!("{:?}", c.events.last())
    };
    assert_eq!(values, &meta);
    assert_eq!(&payload[..], &body[prefix..]);

    // Client raises its chunk size, then media with deltas.
    c.send(
        2,
        message_type::SET_CHUNK_SIZE,
        0,
        0,
        &60_000u32.to_be_bytes(),
    );
    c.enc.set_chunk_size(60_000);
    let big = vec![7u8; 100_000];
    c.send(6, 9, 1, 0, &big);
    c.send(4, 8, 1, 0, b"aac0");
    c.send(4, 8, 1, 23, b"aac1");
    c.send(6, 9, 1, 33, b"v1");
    c.send(6, 9, 1, 66, b"v2");
    let media = c.media();
    let got: Vec<(MediaKind, u32, usize)> =
        media.iter().map(|(k, t, p)| (*k, *t, p.len())).collect();
    assert_eq!(
        got,
        vec![
            (MediaKind::Video, 0, 100_000),
            (MediaKind::Audio, 0, 4),
            (MediaKind::Audio, 23, 4),
            (MediaKind::Video, 33, 2),
            (MediaKind::Video, 66, 2),
        ]
    );

    // End: FCUnpublish then deleteStream.
    c.command(
        0,
        &[
            "FCUnpublish".into(),
            6.0.into(),
            Amf0Value::Null,
            "test".into(),
        ],
    );
    assert_eq!(c.events.last(), Some(&Event::Unpublish { stream_id: 1 }));
    c.command(
        0,
        &[
            "deleteStream".into(),
            7.0.into(),
            Amf0Value::Null,
            1.0.into(),
        ],
    );
    assert!(!c.session.is_publishing());
    c.session.handle_eof();
    c.pump();
    assert_eq!(c.closed, Some(None));
}

#[test]
fn reject_publish_closes() {
    let mut c = Client::new();
    c.connect("live");
    c.command(0, &["createStream".into(), 2.0.into(), Amf0Value::Null]);
    c.command(
        1,
        &["publish".into(), 3.0.into(), Amf0Value::Null, "".into()],
    );
    assert!(matches!(c.events.last(), Some(Event::Publish { name, .. }) if name.is_empty()));
    c.session
        .reject_publish("NetStream.Publish.BadName", "no such stream");
    c.pump();
    assert_eq!(c.status_codes(), vec!["NetStream.Publish.BadName"]);
    assert_eq!(c.closed, Some(None));
}

#[test]
fn publish_before_connect_is_an_error() {
    let mut c = Client::new();
    c.command(
        1,
        &["publish".into(), 3.0.into(), Amf0Value::Null, "x".into()],
    );
    assert_eq!(
        c.closed,
        Some(Some(RtmpError::CommandOutOfOrder {
            command: "publish".into(),
            state: "before connect"
        }))
    );
}

#[test]
fn media_before_publish_is_an_error() {
    let mut c = Client::new();
    c.connect("live");
    c.send(6, 9, 1, 0, b"x");
    assert_eq!(
        c.closed,
        Some(Some(RtmpError::MediaBeforePublish {
            type_id: 9,
            csid: 6
        }))
    );
}

#[test]
fn second_publish_is_an_error() {
    let mut c = Client::new();
    c.publish("live", "a");
    c.command(
        1,
        &["publish".into(), 9.0.into(), Amf0Value::Null, "b".into()],
    );
    assert!(matches!(
        c.closed,
        Some(Some(RtmpError::CommandOutOfOrder { .. }))
    ));
}

#[test]
fn unknown_command_gets_error_only_with_transaction() {
    let mut c = Client::new();
    c.connect("live");
    c.command(0, &["frobnicate".into(), 0.0.into(), Amf0Value::Null]);
    c.command(0, &["frobnicate".into(), 9.0.into(), Amf0Value::Null]);
    let cmds = c.commands();
    let errs: Vec<_> = cmds
        .iter()
        .filter(|v| v[0].as_str() == Some("_error"))
        .collect();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0][1].as_f64(), Some(9.0));
    assert!(c.closed.is_none());
}

#[test]
fn amf3_command_with_format_byte() {
    let mut c = Client::new();
    let mut body = vec![0u8];
    let obj = Amf0Value::Object(vec![("app".into(), "live".into())]);
    amf0::encode_all(&["connect".into(), 1.0.into(), obj], &mut body);
    c.send(3, message_type::COMMAND_AMF3, 0, 0, &body);
    assert!(matches!(&c.events[0], Event::Connect(i) if i.app == "live"));
}

#[test]
fn malformed_command_is_an_error() {
    let mut c = Client::new();
    c.send(3, message_type::COMMAND_AMF0, 0, 0, &[0x02, 0x00]);
    assert!(matches!(
        c.closed,
        Some(Some(RtmpError::Amf {
            type_id: 20,
            csid: 3,
            ..
        }))
    ));
    let mut c = Client::new();
    let mut body = Vec::new();
    amf0::encode_all(&[1.0.into()], &mut body);
    c.send(3, message_type::COMMAND_AMF0, 0, 0, &body);
    assert!(matches!(
        c.closed,
        Some(Some(RtmpError::MalformedCommand { .. }))
    ));
}

#[test]
fn set_chunk_size_limits() {
    for (size, err) in [
        (0u32, RtmpError::InvalidChunkSize { size: 0 }),
        (
            0x8000_0000,
            RtmpError::InvalidChunkSize { size: 0x8000_0000 },
        ),
        (
            16 * 1024 * 1024 + 1,
            RtmpError::ChunkSizeOverLimit {
                size: 16 * 1024 * 1024 + 1,
                limit: 16 * 1024 * 1024,
            },
        ),
    ] {
        let mut c = Client::new();
        c.send(2, message_type::SET_CHUNK_SIZE, 0, 0, &size.to_be_bytes());
        assert_eq!(c.closed, Some(Some(err)));
    }
    let mut c = Client::new();
    c.send(2, message_type::SET_CHUNK_SIZE, 0, 0, &[0, 1]);
    assert!(matches!(
        c.closed,
        Some(Some(RtmpError::ControlMessageLength {
            type_id: 1,
            length: 2,
            expected: 4,
            ..
        }))
    ));
}

#[test]
fn acknowledgements_follow_the_peer_window() {
    let mut c = Client::new();
    c.publish("live", "k");
    c.send(
        2,
        message_type::WINDOW_ACK_SIZE,
        0,
        0,
        &5000u32.to_be_bytes(),
    );
    c.messages.clear();
    for i in 0..10 {
        c.send(6, 9, 1, i * 40, &[0u8; 1000]);
    }
    let acks: Vec<u32> = c
        .messages
        .iter()
        .filter(|m| m.type_id == message_type::ACKNOWLEDGEMENT)
        .map(|m| u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
        .collect();
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert!(acks[1] - acks[0] >= 5000, "{acks:?}");
    assert!(u64::from(acks[1]) <= c.session.bytes_received());
}

#[test]
fn aggregate_message_becomes_media_events() {
    let mut c = Client::new();
    c.publish("live", "k");
    let mut agg = Vec::new();
    for (t, ts) in [(9u8, 100u32), (8u8, 110)] {
        agg.push(t);
        agg.extend_from_slice(&[0, 0, 2]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.extend_from_slice(&[0, 0, 0, 0]);
        agg.extend_from_slice(&[t, t]);
        agg.extend_from_slice(&13u32.to_be_bytes());
    }
    c.send(6, message_type::AGGREGATE, 1, 2000, &agg);
    let m = c.media();
    assert_eq!(m.len(), 2);
    assert_eq!((m[0].0, m[0].1), (MediaKind::Video, 2000));
    assert_eq!((m[1].0, m[1].1), (MediaKind::Audio, 2010));
}

// ---- session: play ----

#[test]
fn play_conversation_and_media_out() {
    let mut c = Client::new();
    c.connect("live");
    c.command(0, &["createStream".into(), 2.0.into(), Amf0Value::Null]);
    c.command(
        0,
        &[
            "getStreamLength".into(),
            3.0.into(),
            Amf0Value::Null,
            "cam".into(),
        ],
    );
    c.command(
        1,
        &[
            "play".into(),
            4.0.into(),
            Amf0Value::Null,
            "cam?t=9".into(),
            (-2000.0).into(),
        ],
    );
    assert_eq!(
        c.events.last(),
        Some(&Event::Play {
            stream_id: 1,
            app: "live".into(),
            name: "cam".into(),
            query: Some("t=9".into()),
            start: -2000.0,
        })
    );
    // Nothing goes to a player before accept.
    c.session
        .send_media(MediaKind::Video, 0, &Bytes::from_static(b"x"));
    assert!(c.session.poll_output().is_none());
    c.messages.clear();
    c.session.accept_play();
    c.pump();
    assert_eq!(c.messages[0].type_id, message_type::USER_CONTROL);
    assert_eq!(&c.messages[0].payload[..], &[0, 0, 0, 0, 0, 1]);
    assert_eq!(
        c.status_codes(),
        vec!["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    assert_eq!(
        c.commands().last().unwrap()[0].as_str(),
        Some("|RtmpSampleAccess")
    );
    assert_eq!(c.session.play_stream_id(), Some(1));

    c.messages.clear();
    let meta = vec![Amf0Value::from("onMetaData"), Amf0Value::EcmaArray(vec![])];
    c.session.send_metadata(0, &meta);
    let frame = Bytes::from(vec![0x17u8; 9000]);
    c.session.send_media(MediaKind::Video, 40, &frame);
    c.session.send_media(
        MediaKind::Audio,
        0x0100_0000,
        &Bytes::from_static(b"\xaf\x01zz"),
    );
    let mut shared = Vec::new();
    encode_media(
        MediaKind::Video,
        1,
        80,
        &frame,
        c.session.out_chunk_size(),
        &mut shared,
    );
    c.session.send_encoded(&shared);
    c.pump();
    let got: Vec<(u8, u32, u32, usize)> = c
        .messages
        .iter()
        .map(|m| (m.type_id, m.timestamp, m.stream_id, m.payload.len()))
        .collect();
    assert_eq!(
        got,
        vec![
            (18, 0, 1, 21),
            (9, 40, 1, 9000),
            (8, 0x0100_0000, 1, 4),
            (9, 80, 1, 9000)
        ]
    );
    assert_eq!(amf0::decode_all(&c.messages[0].payload).unwrap(), meta);

    c.session.end_play();
    c.pump();
    assert!(
        c.status_codes()
            .contains(&"NetStream.Play.UnpublishNotify".to_owned())
    );
    c.command(1, &["closeStream".into(), 0.0.into(), Amf0Value::Null]);
    assert_eq!(c.events.last(), Some(&Event::StopPlay { stream_id: 1 }));
}

#[test]
fn reject_play_closes() {
    let mut c = Client::new();
    c.connect("live");
    c.command(
        1,
        &["play".into(), 4.0.into(), Amf0Value::Null, "nope".into()],
    );
    c.session
        .reject_play("NetStream.Play.StreamNotFound", "no such stream");
    c.pump();
    assert_eq!(c.status_codes(), vec!["NetStream.Play.StreamNotFound"]);
    assert_eq!(c.closed, Some(None));
}

// ---- timeouts, limits ----

#[test]
fn setup_and_idle_timeouts() {
    let limits = Limits::default();
    let mut c = Client::new();
    let deadline = c.session.poll_timeout().unwrap();
    assert_eq!(deadline, c.now + limits.setup_timeout);
    c.session
        .handle_timeout(deadline - Duration::from_millis(1));
    assert!(c.session.poll_output().is_none());
    c.session.handle_timeout(deadline);
    c.pump();
    assert!(matches!(c.closed, Some(Some(RtmpError::Timeout { .. }))));

    let mut c = Client::new();
    c.publish("live", "k");
    c.now += Duration::from_secs(5);
    c.send(6, 9, 1, 0, b"v");
    assert_eq!(c.session.poll_timeout(), Some(c.now + limits.idle_timeout));
    c.session.handle_timeout(c.now + limits.idle_timeout);
    c.pump();
    assert!(matches!(
        c.closed,
        Some(Some(RtmpError::Timeout { phase })) if phase.contains("idle")
    ));
}

#[test]
fn limits_validate() {
    assert_eq!(Limits::default().validate(), Ok(()));
    let cases: Vec<(Limits, &str)> = vec![
        (
            Limits {
                max_message_size: 0,
                ..Limits::default()
            },
            "max_message_size",
        ),
        (
            Limits {
                max_message_size: 1 << 24,
                ..Limits::default()
            },
            "max_message_size",
        ),
        (
            Limits {
                max_chunk_streams: 0,
                ..Limits::default()
            },
            "max_chunk_streams",
        ),
        (
            Limits {
                max_chunk_size: 0x8000_0000,
                ..Limits::default()
            },
            "max_chunk_size",
        ),
        (
            Limits {
                max_buffered_bytes: 10,
                ..Limits::default()
            },
            "max_buffered_bytes",
        ),
        (
            Limits {
                out_chunk_size: 0,
                ..Limits::default()
            },
            "out_chunk_size",
        ),
        (
            Limits {
                idle_timeout: Duration::ZERO,
                ..Limits::default()
            },
            "idle_timeout",
        ),
    ];
    for (l, name) in cases {
        match l.validate() {
            Err(RtmpError::InvalidLimit { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn idle_session_is_small() {
    let s = ServerSession::new(spate_tests::test_epoch(), Limits::default());
    assert!(
        std::mem::size_of_val(&s) < 512,
        "{}",
        std::mem::size_of_val(&s)
    );
}

#[test]
fn user_control_constants() {
    assert_eq!(user_control::PING_REQUEST, 6);
    assert_eq!(user_control::PING_RESPONSE, 7);
}

// ---- recorded real clients ----

/// Client → server bytes of `ffmpeg 5.1 -re -f lavfi -i testsrc2 ... -t 1
/// -c:v libx264 -c:a aac -f flv rtmp://127.0.0.1:19350/live/test?key=abc`,
/// recorded while this session answered it (digest C1, connect,
/// releaseStream, FCPublish, createStream, publish, @setDataFrame, 41
/// audio/video messages, FCUnpublish, deleteStream).
const FFMPEG_PUBLISH: &[u8] = include_bytes!("fixtures/ffmpeg5.1-publish.c2s");
/// Client → server bytes of `ffmpeg 5.1 -i rtmp://127.0.0.1:19350/live/test
/// -f null -` (digest C1, connect, createStream, getStreamLength, play, Set
/// Buffer Length, Window Ack Size, acknowledgements, closeStream...).
const FFMPEG_PLAY: &[u8] = include_bytes!("fixtures/ffmpeg5.1-play.c2s");

/// Replay a recording in pieces of `piece` bytes, answering publish/play.
fn replay(bytes: &[u8], piece: usize) -> (Vec<Event>, Option<Option<RtmpError>>, bool) {
    let now = spate_tests::test_epoch();
    let mut s = ServerSession::new(now, Limits::default());
    let mut events = Vec::new();
    let mut closed = None;
    for p in bytes.chunks(piece) {
        s.handle_input(now, p);
        while let Some(o) = s.poll_output() {
            match o {
                Output::Event(e) => {
                    match &e {
                        Event::Publish { .. } => s.accept_publish(now),
                        Event::Play { .. } => s.accept_play(),
                        _ => {}
                    }
                    events.push(e);
                }
                Output::Close(e) => closed = Some(e),
                Output::Transmit(_) => {}
            }
        }
    }
    s.handle_eof();
    while let Some(o) = s.poll_output() {
        if let Output::Close(e) = o {
            closed = Some(e);
        }
    }
    (events, closed, s.digest_handshake())
}

#[test]
fn ffmpeg_publish_recording() {
    for piece in [FFMPEG_PUBLISH.len(), 1, 7, 1460, 4096] {
        let (events, closed, digest) = replay(FFMPEG_PUBLISH, piece);
        assert_eq!(closed, Some(None), "piece {piece}");
        assert!(digest, "ffmpeg sends a digest C1");
        let Event::Connect(info) = &events[0] else {
            panic!("{:?}", events[0])
        };
        assert_eq!(info.app, "live");
        assert_eq!(info.tc_url.as_deref(), Some("rtmp://127.0.0.1:19350/live"));
        assert_eq!(
            events[1],
            Event::Publish {
                stream_id: 1,
                app: "live".into(),
                name: "test".into(),
                query: Some("key=abc".into()),
                publish_type: "live".into(),
            }
        );
        let Event::Metadata { values, .. } = &events[2] else {
            panic!("{:?}", events[2])
        };
        assert_eq!(values[0].as_str(), Some("onMetaData"));
        assert_eq!(
            values[1].get("width").and_then(Amf0Value::as_f64),
            Some(160.0)
        );
        let media: Vec<(MediaKind, u32, Bytes)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Media {
                    kind,
                    timestamp_ms,
                    payload,
                } => Some((*kind, *timestamp_ms, payload.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(media.len(), 41);
        let video: Vec<_> = media.iter().filter(|m| m.0 == MediaKind::Video).collect();
        let audio: Vec<_> = media.iter().filter(|m| m.0 == MediaKind::Audio).collect();
        assert_eq!(
            video.len(),
            17,
            "sequence header + 15 frames + end of sequence"
        );
        assert_eq!(&video[16].2[..2], &[0x17, 0x02], "AVC end of sequence last");
        assert_eq!(&video[0].2[..2], &[0x17, 0x00], "AVC sequence header first");
        assert_eq!(&audio[0].2[..2], &[0xAF, 0x00], "AAC sequence header first");
        for list in [&video, &audio] {
            assert!(
                list.windows(2).all(|w| w[0].1 <= w[1].1),
                "timestamps ascend"
            );
        }
        assert!((900..=1000).contains(&video[15].1), "{}", video[15].1);
        assert_eq!(events.last(), Some(&Event::Unpublish { stream_id: 1 }));
    }
}

#[test]
fn ffmpeg_play_recording() {
    for piece in [FFMPEG_PLAY.len(), 1, 100] {
        let (events, closed, digest) = replay(FFMPEG_PLAY, piece);
        assert!(digest);
        assert_eq!(closed, Some(None));
        assert!(events.iter().any(|e| matches!(e,
            Event::Play { stream_id: 1, app, name, query: None, .. } if app == "live" && name == "test")));
        assert_eq!(events.last(), Some(&Event::StopPlay { stream_id: 1 }));
    }
}

#[test]
fn nothing_after_close_even_if_engine_answers_late() {
    // Publish, then a protocol error in the same read: the engine sees the
    // Publish event before the Close and answers it; nothing may follow
    // the Close.
    let mut c = Client::new();
    c.connect("live");
    let mut body = Vec::new();
    amf0::encode_all(
        &["publish".into(), 2.0.into(), Amf0Value::Null, "k".into()],
        &mut body,
    );
    let mut bytes = Vec::new();
    let h = MessageHeader {
        csid: 3,
        timestamp: 0,
        type_id: message_type::COMMAND_AMF0,
        stream_id: 1,
    };
    c.enc.encode(&h, &body, &mut bytes);
    bytes.push(0xC9); // fmt 3 on a fresh chunk stream: error
    c.session.handle_input(c.now, &bytes);
    let outs = outputs(&mut c.session);
    assert!(matches!(outs[0], Output::Event(Event::Publish { .. })));
    assert!(matches!(outs.last(), Some(Output::Close(Some(_)))));
    c.session.accept_publish(c.now);
    c.session.accept_play();
    c.session
        .send_media(MediaKind::Audio, 0, &Bytes::from_static(b"a"));
    c.session.reject_publish("x", "y");
    c.session.close();
    assert!(c.session.poll_output().is_none());
}
