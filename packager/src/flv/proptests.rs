//! Property tests: arbitrary tags written with the low-level writers come
//! back from the demuxer whatever the input split; arbitrary frames muxed by
//! [`FlvMuxer`] come back from [`FlvStream`]; arbitrary bytes never panic.
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::Error;
use crate::media::{Codec, Frame, Track};

fn tag_type() -> impl Strategy<Value = TagType> {
    prop_oneof![
        Just(TagType::Audio),
        Just(TagType::Video),
        Just(TagType::Script),
        (0u8..32)
            .prop_filter("not 8/9/18", |t| ![8, 9, 18].contains(t))
            .prop_map(TagType::Other),
    ]
}

fn tag() -> impl Strategy<Value = FlvTag> {
    (
        tag_type(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(tag_type, timestamp, body)| FlvTag {
            tag_type,
            timestamp,
            stream_id: 0,
            body: Bytes::from(body),
        })
}

/// Feed `data` split at the given points; collect tags.
fn demux_split(data: &[u8], cuts: &[Index]) -> Vec<FlvTag> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    let mut d = FlvDemuxer::new();
    let mut tags = Vec::new();
    for w in points.windows(2) {
        d.push(&data[w[0]..w[1]]);
        while let Some(t) = d.next_tag().unwrap() {
            tags.push(t);
        }
    }
    assert_eq!(d.buffered(), 0);
    tags
}

fn frames() -> impl Strategy<Value = Vec<Frame>> {
    // (track, dts step, cts, keyframe, payload)
    prop::collection::vec(
        (
            0u32..2,
            0i64..100,
            0i64..500,
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        0..40,
    )
    .prop_map(|items| {
        let mut dts = 0i64;
        items
            .into_iter()
            .map(|(track, step, cts, key, payload)| {
                dts += step;
                let audio = track == 1;
                Frame {
                    track,
                    dts,
                    pts: if audio { dts } else { dts + cts },
                    keyframe: audio || key,
                    payload: Bytes::from(payload),
                }
            })
            .collect()
    })
}

fn tracks(video: Codec, audio: Codec) -> Vec<Track> {
    let mut v = Track::new(0, video, 1000);
    v.config = match video {
        Codec::H264 => Some(Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0])),
        Codec::H265 | Codec::Av1 => Some(Bytes::from_static(b"\x81cfg")),
        _ => None,
    };
    let mut a = Track::new(1, audio, 1000);
    a.config = match audio {
        Codec::Aac => Some(Bytes::from_static(&[0x12, 0x10])),
        Codec::Opus => Some(Bytes::from_static(
            b"OpusHead\x01\x02\x38\x01\x80\xbb\0\0\0\0\0",
        )),
        _ => None,
    };
    vec![v, a]
}

proptest! {
    #[test]
    fn tags_round_trip_through_any_split(
        tags in prop::collection::vec(tag(), 0..20),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
        has_audio: bool,
        has_video: bool,
    ) {
        let mut out = BytesMut::new();
        write_file_header(&mut out, has_audio, has_video);
        for t in &tags {
            write_tag_header(&mut out, t.tag_type, t.timestamp, t.body.len()).unwrap();
            out.extend_from_slice(&t.body);
            out.extend_from_slice(&previous_tag_size(t.body.len()));
        }
        let back = demux_split(&out, &cuts);
        prop_assert_eq!(back, tags);
    }

    #[test]
    fn frames_round_trip_through_mux_and_stream(
        frames in frames(),
        video in prop_oneof![Just(Codec::H264), Just(Codec::H265), Just(Codec::Av1), Just(Codec::Vp9)],
        audio in prop_oneof![Just(Codec::Aac), Just(Codec::Mp3), Just(Codec::Opus), Just(Codec::Ac3)],
    ) {
        let tracks = tracks(video, audio);
        let frames: Vec<Frame> = frames
            .into_iter()
            .map(|f| {
                // FLV carries no composition offset for AV1/VP9.
                if f.track == 0 && matches!(video, Codec::Av1 | Codec::Vp9) {
                    Frame { pts: f.dts, ..f }
                } else {
                    f
                }
            })
            .collect();
        let m = FlvMuxer::new(&tracks).unwrap();
        let mut out = BytesMut::new();
        m.write_header(&mut out);
        m.write_metadata(&mut out).unwrap();
        m.write_sequence_headers(0, &mut out).unwrap();
        for f in &frames {
            m.write_frame_copy(f, &mut out).unwrap();
        }
        let mut d = FlvDemuxer::new();
        d.push_bytes(out.freeze());
        let mut s = FlvStream::new();
        let mut back = Vec::new();
        let mut configs = Vec::new();
        while let Some(t) = d.next_tag().unwrap() {
            s.handle_tag(t.tag_type, t.timestamp, t.body).unwrap();
            while let Some(e) = s.poll_event() {
                match e {
                    FlvEvent::Frame(f) => back.push(f),
                    FlvEvent::Track { track, .. } => configs.push((track.codec, track.config)),
                    _ => {}
                }
            }
        }
        prop_assert_eq!(back, frames);
        for t in &tracks {
            if t.config.is_some() {
                prop_assert!(configs.contains(&(t.codec, t.config.clone())));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..200),
        with_header: bool,
        cuts in prop::collection::vec(any::<Index>(), 0..4),
    ) {
        let mut data = if with_header { b"FLV\x01\x05\0\0\0\x09\0\0\0\0".to_vec() } else { Vec::new() };
        data.extend_from_slice(&body);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        points.extend([0, data.len()]);
        points.sort_unstable();
        let mut d = FlvDemuxer::new();
        let mut s = FlvStream::new();
        for w in points.windows(2) {
            d.push(&data[w[0]..w[1]]);
            loop {
                match d.next_tag() {
                    Ok(Some(t)) => { let _ = s.handle_tag(t.tag_type, t.timestamp, t.body); }
                    Ok(None) => break,
                    Err(Error::FlvEncryptedTag { .. }) => continue,
                    Err(_) => break,
                }
            }
            while s.poll_event().is_some() {}
        }
        // Tag bodies straight into the tag parsers (the RTMP path).
        let b = Bytes::from(body);
        let _ = parse_video_tag(0, b.clone());
        let _ = parse_audio_tag(0, b.clone());
        let _ = parse_script_tag(&b);
    }
}
