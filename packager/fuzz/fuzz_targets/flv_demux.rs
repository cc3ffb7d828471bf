//! Arbitrary bytes, split at arbitrary points, into the FLV demuxer and
//! `FlvStream`; every tag body also goes straight into the tag parsers (the
//! RTMP path).
//!
//! Input layout: `[n][n split sizes][stream...]`. The stream is fed in
//! pieces of the given sizes (cycled; 0 means "the rest"), alternating
//! `push` and `push_bytes`. If the stream does not start with `FLV`, a valid
//! file header is put in front so the fuzzer reaches the tags at once.
//! Checks: tags come out the same whatever the split (compared with one
//! contiguous push), bodies are never longer than 2^24 - 1, nothing is
//! left buffered beyond one incomplete tag, and every muxed frame of
//! a successfully demuxed stream re-muxes without error.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use spate_packager::Error;
use spate_packager::flv::{
    FlvDemuxer, FlvEvent, FlvMuxer, FlvStream, FlvTag, MAX_TAG_BODY, parse_audio_tag,
    parse_script_tag, parse_video_tag,
};

fn run(demuxer: &mut FlvDemuxer, tags: &mut Vec<Result<FlvTag, Error>>) {
    loop {
        match demuxer.next_tag() {
            Ok(Some(t)) => tags.push(Ok(t)),
            Ok(None) => return,
            Err(e @ Error::FlvEncryptedTag { .. }) => tags.push(Err(e)),
            Err(e) => {
                tags.push(Err(e));
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let mut input = Vec::with_capacity(stream.len() + 13);
    if !stream.starts_with(b"FLV") {
        input.extend_from_slice(b"FLV\x01\x05\0\0\0\x09\0\0\0\0");
    }
    input.extend_from_slice(stream);

    // Reference: one contiguous push.
    let mut whole = FlvDemuxer::new();
    whole.push_bytes(Bytes::from(input.clone()));
    let mut expected = Vec::new();
    run(&mut whole, &mut expected);

    // Split as the fuzzer says.
    let mut split = FlvDemuxer::new();
    let mut got = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    let mut failed = false;
    while pos < input.len() && !failed {
        let size = match sizes.get(i % sizes.len().max(1)) {
            Some(&s) if s > 0 => usize::from(s),
            _ => input.len() - pos,
        };
        let end = (pos + size).min(input.len());
        if i % 2 == 0 {
            split.push(&input[pos..end]);
        } else {
            split.push_bytes(Bytes::copy_from_slice(&input[pos..end]));
        }
        pos = end;
        i += 1;
        run(&mut split, &mut got);
        failed = matches!(got.last(), Some(Err(e)) if !matches!(e, Error::FlvEncryptedTag { .. }));
    }
    assert_eq!(got, expected, "split changed the tags");
    if !failed {
        assert!(split.buffered() < 11 + MAX_TAG_BODY + 4 + 9);
    }

    // Interpret the tags; re-mux every frame.
    let mut stream = FlvStream::new();
    let mut muxer = FlvMuxer::default();
    let mut head = BytesMut::new();
    for tag in expected.into_iter().flatten() {
        assert!(tag.body.len() <= MAX_TAG_BODY);
        let _ = parse_video_tag(tag.timestamp, tag.body.clone());
        let _ = parse_audio_tag(tag.timestamp, tag.body.clone());
        let _ = parse_script_tag(&tag.body);
        let _ = stream.handle_tag(tag.tag_type, tag.timestamp, tag.body);
        while let Some(event) = stream.poll_event() {
            match event {
                FlvEvent::Track { track, .. } => {
                    muxer.set_track(track).expect("demuxed track re-muxes");
                    head.clear();
                    for t in muxer.tracks() {
                        muxer
                            .write_sequence_header(t.id, 0, &mut head)
                            .expect("sequence header");
                    }
                    muxer.write_metadata(&mut head).expect("metadata");
                }
                FlvEvent::Frame(frame) => {
                    head.clear();
                    let m = muxer
                        .write_frame(&frame, &mut head)
                        .expect("demuxed frame re-muxes");
                    assert_eq!(m.payload, frame.payload);
                }
                _ => {}
            }
        }
    }
});
