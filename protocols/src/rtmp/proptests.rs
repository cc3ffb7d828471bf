//! Property tests: chunk encoders → decoder round trips for arbitrary
//! messages, chunk sizes, chunk stream ids and timestamps (extended and
//! wrapping), whatever the input split; arbitrary bytes into a session
//! after a valid handshake never panic and respect the output contract.
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::tests::Client;
use super::*;

#[derive(Debug, Clone)]
struct Msg {
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: Vec<u8>,
}

fn csid() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(2u32),
        3u32..8,
        Just(63u32),
        Just(64u32),
        Just(319u32),
        Just(320u32),
        Just(65_599u32),
    ]
}

fn timestamp() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..5000,
        0xFF_FF00u32..0x100_0100,
        0xFFFF_F000u32..=u32::MAX,
        any::<u32>(),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        csid(),
        timestamp(),
        prop_oneof![Just(8u8), Just(9u8), Just(18u8), any::<u8>()],
        prop_oneof![Just(0u32), Just(1u32), any::<u32>()],
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..2000),
        ],
    )
        .prop_map(|(csid, timestamp, type_id, stream_id, payload)| Msg {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        })
}

/// Messages that tend to share a chunk stream and step forward in time, so
/// the encoder uses fmt 1/2/3 headers.
fn stream_of_msgs() -> impl Strategy<Value = Vec<Msg>> {
    prop_oneof![
        proptest::collection::vec(msg(), 1..20),
        (
            timestamp(),
            proptest::collection::vec((0u32..3, 0u32..100, 0usize..400), 1..30)
        )
            .prop_map(|(start, steps)| {
                let mut ts = start;
                steps
                    .into_iter()
                    .map(|(c, delta, len)| {
                        ts = ts.wrapping_add(delta * 33);
                        Msg {
                            csid: 4 + c,
                            timestamp: ts,
                            type_id: if c == 0 { 8 } else { 9 },
                            stream_id: 1,
                            payload: vec![c as u8; len % 3 * 100],
                        }
                    })
                    .collect()
            }),
    ]
}

fn decode_split(bytes: &[u8], splits: &[usize], chunk_size: u32) -> Vec<Message> {
    let limits = Limits::default();
    let mut d = ChunkDecoder::new();
    d.set_chunk_size(chunk_size);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let len = if splits.is_empty() {
            bytes.len()
        } else {
            splits[i % splits.len()]
        };
        i += 1;
        let end = (pos + len).min(bytes.len());
        let mut piece = &bytes[pos..end];
        while let Some(m) = d.decode(&mut piece, &limits).expect("own encoding decodes") {
            out.push(m);
        }
        assert!(piece.is_empty());
        pos = end;
    }
    out
}

fn check(messages: &[Msg], decoded: &[Message]) {
    assert_eq!(messages.len(), decoded.len());
    for (m, d) in messages.iter().zip(decoded) {
        assert_eq!(d.csid, m.csid);
        assert_eq!(d.timestamp, m.timestamp);
        assert_eq!(d.type_id, m.type_id);
        assert_eq!(d.stream_id, m.stream_id);
        assert_eq!(&d.payload[..], &m.payload[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compressed_encoder_round_trips(
        messages in stream_of_msgs(),
        chunk_size in prop_oneof![1u32..300, Just(4096u32), Just(MAX_CHUNK_SIZE)],
        splits in proptest::collection::vec(1usize..200, 0..8),
    ) {
        let mut enc = ChunkEncoder::new(chunk_size);
        let mut bytes = Vec::new();
        for m in &messages {
            let h = MessageHeader { csid: m.csid, timestamp: m.timestamp, type_id: m.type_id, stream_id: m.stream_id };
            enc.encode(&h, &m.payload, &mut bytes);
        }
        let d = decode_split(&bytes, &splits, chunk_size);
        check(&messages, &d);
    }

    #[test]
    fn stateless_pieces_round_trip(
        messages in proptest::collection::vec(msg(), 1..10),
        splits in proptest::collection::vec(1usize..200, 0..8),
    ) {
        let mut pieces = Vec::new();
        for m in &messages {
            let h = MessageHeader { csid: m.csid, timestamp: m.timestamp, type_id: m.type_id, stream_id: m.stream_id };
            encode_message(&h, &Bytes::from(m.payload.clone()), DEFAULT_CHUNK_SIZE, &mut pieces);
        }
        let bytes: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        check(&messages, &decode_split(&bytes, &splits, DEFAULT_CHUNK_SIZE));
    }

    #[test]
    fn arbitrary_bytes_after_handshake_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        connect_first in any::<bool>(),
        splits in proptest::collection::vec(1usize..300, 0..6),
    ) {
        let mut c = Client::new();
        if connect_first {
            c.connect("live");
        }
        let mut pos = 0;
        let mut i = 0;
        while pos < data.len() && c.closed.is_none() {
            let len = if splits.is_empty() { data.len() } else { splits[i % splits.len()] };
            i += 1;
            let end = (pos + len).min(data.len());
            c.session.handle_input(c.now, &data[pos..end]);
            // Drain without decoding (the output may be cut by a close).
            while let Some(out) = c.session.poll_output() {
                if let Output::Close(_) = out {
                    c.closed = Some(None);
                    prop_assert!(c.session.poll_output().is_none());
                    prop_assert_eq!(c.session.poll_timeout(), None);
                }
            }
            pos = end;
        }
        c.session.handle_timeout(c.now + Duration::from_secs(3600));
        c.session.handle_eof();
        let closes = std::iter::from_fn(|| c.session.poll_output())
            .filter(|o| matches!(o, Output::Close(_)))
            .count();
        prop_assert_eq!(closes, usize::from(c.closed.is_none()));
    }

    #[test]
    fn arbitrary_handshake_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4000)) {
        let now = spate_tests::test_epoch();
        let mut s = ServerSession::new(now, Limits::default());
        s.handle_input(now, &data);
        while s.poll_output().is_some() {}
    }
}
