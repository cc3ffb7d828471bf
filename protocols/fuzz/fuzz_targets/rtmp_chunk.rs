//! Arbitrary bytes into an RTMP `ServerSession`, split at arbitrary points;
//! every output is drained, publishes and plays are answered.
//!
//! Input layout: `[config][n][n chunk sizes][payload...]`. Unless config bit
//! 0 is set, the harness first completes a plain handshake (C0 C1 C2), so
//! the payload is chunk stream: seeds are recorded client sessions without
//! their 3073 handshake bytes, after a 2-byte prefix. Config bits:
//! 0 payload includes the handshake (raw connection bytes),
//! 1 the harness sends connect + createStream + publish first (so media
//!   paths are reached without the fuzzer finding a valid publish),
//! 2 reject publish/play instead of accepting,
//! 3 small limits (message 300 bytes, 3 chunk streams, chunk size 1000),
//! 4 EOF at the end, 5 time advances 4 s per chunk and due timeouts fire,
//! 6 the player side gets media sent after each chunk.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use spate_packager::amf0::{self, Amf0Value};
use spate_protocols::rtmp::{
    ChunkEncoder, Event, HANDSHAKE_SIZE, Limits, MediaKind, MessageHeader, Output, ServerSession,
};

struct Harness {
    session: ServerSession,
    now: Instant,
    reject: bool,
    closed: bool,
    playing: bool,
    limits: Limits,
}

impl Harness {
    fn drain(&mut self) {
        while let Some(out) = self.session.poll_output() {
            assert!(!self.closed, "output after Close: {out:?}");
            match out {
                Output::Transmit(b) => assert!(!b.is_empty()),
                Output::Event(e) => match e {
                    Event::Publish { .. } if self.reject => self
                        .session
                        .reject_publish("NetStream.Publish.BadName", "no"),
                    Event::Publish { .. } => self.session.accept_publish(self.now),
                    Event::Play { .. } if self.reject => self
                        .session
                        .reject_play("NetStream.Play.StreamNotFound", "no"),
                    Event::Play { .. } => {
                        self.session.accept_play();
                        self.playing = self.session.play_stream_id().is_some();
                    }
                    Event::Media { payload, .. } => {
                        assert!(payload.len() <= self.limits.max_message_size as usize)
                    }
                    _ => {}
                },
                Output::Close(_) => self.closed = true,
            }
        }
        if self.closed {
            assert_eq!(self.session.poll_timeout(), None);
        }
    }
}

fn command(enc: &mut ChunkEncoder, stream_id: u32, values: &[Amf0Value], out: &mut Vec<u8>) {
    let mut body = Vec::new();
    amf0::encode_all(values, &mut body);
    let h = MessageHeader {
        csid: 3,
        timestamp: 0,
        type_id: 20,
        stream_id,
    };
    enc.encode(&h, &body, out);
}

fuzz_target!(|data: &[u8]| {
    let (config, rest) = match data {
        [c, rest @ ..] => (*c, rest),
        [] => return,
    };
    let (n, rest) = match rest {
        [n, rest @ ..] => (usize::from(*n % 17), rest),
        [] => (0, rest),
    };
    let (sizes, payload) = rest.split_at(n.min(rest.len()));
    let limits = if config & 8 != 0 {
        Limits {
            max_message_size: 300,
            max_chunk_streams: 3,
            max_chunk_size: 1000,
            max_buffered_bytes: 600,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    // The harness, not the library, reads the clock once for a base.
    let now = Instant::now();
    let mut h = Harness {
        session: ServerSession::new(now, limits.clone()),
        now,
        reject: config & 4 != 0,
        closed: false,
        playing: false,
        limits,
    };
    if config & 1 == 0 {
        let mut hs = vec![0u8; 1 + 2 * HANDSHAKE_SIZE];
        hs[0] = 3;
        h.session.handle_input(h.now, &hs);
        h.drain();
    }
    if config & 2 != 0 {
        let mut enc = ChunkEncoder::new(128);
        let mut pre = Vec::new();
        let app = Amf0Value::Object(vec![("app".into(), "live".into())]);
        command(&mut enc, 0, &["connect".into(), 1.0.into(), app], &mut pre);
        command(
            &mut enc,
            0,
            &["createStream".into(), 2.0.into(), Amf0Value::Null],
            &mut pre,
        );
        command(
            &mut enc,
            1,
            &["publish".into(), 3.0.into(), Amf0Value::Null, "k".into()],
            &mut pre,
        );
        h.session.handle_input(h.now, &pre);
        h.drain();
    }

    let frame = Bytes::from_static(&[0x17, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let mut offset = 0;
    let mut i = 0;
    while offset < payload.len() {
        let len = if sizes.is_empty() {
            payload.len()
        } else {
            usize::from(sizes[i % sizes.len()]) + 1
        };
        i += 1;
        let end = (offset + len).min(payload.len());
        h.session.handle_input(h.now, &payload[offset..end]);
        offset = end;
        h.drain();
        if config & 64 != 0 && h.playing {
            h.session
                .send_media(MediaKind::Video, i as u32 * 40, &frame);
            h.drain();
        }
        if config & 32 != 0 {
            h.now += Duration::from_secs(4);
            if h.session.poll_timeout().is_some_and(|d| d <= h.now) {
                h.session.handle_timeout(h.now);
                h.drain();
            }
        }
    }
    if config & 16 != 0 {
        h.session.handle_eof();
        h.drain();
        assert!(h.closed);
    }
});
