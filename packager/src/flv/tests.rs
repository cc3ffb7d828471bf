//! FLV tests against files written by ffmpeg (see
//! `tests/fixtures/README.md`) and hand-assembled Enhanced RTMP tags.
use bytes::{Bytes, BytesMut};

use super::stream::{AUDIO_TRACK, VIDEO_TRACK};
use super::*;
use crate::Error;
use crate::amf0::{self, Amf0Value};
use crate::media::{Codec, Frame, Track};

macro_rules! fixture {
    ($name:literal) => {
        Bytes::from_static(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        )))
    };
}

/// All tags of a whole FLV buffer.
fn tags_of(data: Bytes) -> (FlvHeader, Vec<FlvTag>) {
    let mut d = FlvDemuxer::new();
    d.push_bytes(data);
    let mut tags = Vec::new();
    while let Some(t) = d.next_tag().unwrap() {
        tags.push(t);
    }
    assert_eq!(d.buffered(), 0, "trailing bytes");
    (d.header().unwrap(), tags)
}

#[derive(Debug, Default)]
struct Demuxed {
    tracks: Vec<Track>,
    frames: Vec<Frame>,
    scripts: Vec<ScriptData>,
    other: Vec<FlvEvent>,
}

fn demux(data: Bytes) -> Demuxed {
    let (_, tags) = tags_of(data);
    let mut s = FlvStream::new();
    let mut out = Demuxed::default();
    for t in tags {
        s.handle_tag(t.tag_type, t.timestamp, t.body).unwrap();
        while let Some(e) = s.poll_event() {
            match e {
                FlvEvent::Track {
                    track,
                    config_error,
                } => {
                    assert_eq!(config_error, None);
                    out.tracks.push(track);
                }
                FlvEvent::Frame(f) => out.frames.push(f),
                FlvEvent::Script(sd) => out.scripts.push(sd),
                e => out.other.push(e),
            }
        }
    }
    out
}

fn mux(tracks: &[Track], frames: &[Frame]) -> Bytes {
    let m = FlvMuxer::new(tracks).unwrap();
    let mut out = BytesMut::new();
    m.write_header(&mut out);
    m.write_metadata(&mut out).unwrap();
    m.write_sequence_headers(0, &mut out).unwrap();
    for f in frames {
        m.write_frame_copy(f, &mut out).unwrap();
    }
    out.freeze()
}

#[test]
fn ffmpeg_h264_aac() {
    let file = fixture!("h264_aac.flv");
    let (header, tags) = tags_of(file.clone());
    assert!(header.has_audio && header.has_video);
    assert_eq!(tags[0].tag_type, TagType::Script);
    let d = demux(file.clone());
    // onMetaData as ffmpeg writes it.
    let meta = &d.scripts[0];
    assert_eq!(meta.name, "onMetaData");
    let props = meta.properties().unwrap();
    assert_eq!(props.get("width").and_then(Amf0Value::as_f64), Some(320.0));
    assert_eq!(
        props.get("videocodecid").and_then(Amf0Value::as_f64),
        Some(7.0)
    );
    assert_eq!(
        props.get("audiocodecid").and_then(Amf0Value::as_f64),
        Some(10.0)
    );
    // Tracks from the sequence headers.
    assert_eq!(d.tracks.len(), 2);
    let v = &d.tracks[0];
    assert_eq!(
        (v.id, v.codec, v.timebase),
        (VIDEO_TRACK, Codec::H264, 1000)
    );
    assert_eq!((v.info.width, v.info.height), (Some(320), Some(180)));
    assert_eq!((v.info.profile, v.info.level), (Some(100), Some(13)));
    assert_eq!(v.info.frame_rate.map(|(n, d)| n / d), Some(30));
    let a = &d.tracks[1];
    assert_eq!((a.id, a.codec), (AUDIO_TRACK, Codec::Aac));
    // AAC-LC 44.1 kHz stereo, plus the 0x2b7 sync extension ffmpeg adds.
    assert_eq!(
        a.config.as_deref(),
        Some(&[0x12, 0x10, 0x56, 0xe5, 0x00][..])
    );
    assert_eq!(
        (a.info.sample_rate, a.info.channels),
        (Some(44100), Some(2))
    );
    // Frames: 30 video (first a key frame, B-frames reordered), ~1 s audio.
    let video: Vec<&Frame> = d.frames.iter().filter(|f| f.track == VIDEO_TRACK).collect();
    let audio: Vec<&Frame> = d.frames.iter().filter(|f| f.track == AUDIO_TRACK).collect();
    assert_eq!(video.len(), 30);
    assert!(video[0].keyframe);
    assert_eq!(video.iter().filter(|f| f.keyframe).count(), 2); // -g 15
    assert!(video.iter().any(|f| f.pts > f.dts), "B-frames have cts > 0");
    assert!(video.windows(2).all(|w| w[0].dts <= w[1].dts));
    assert!((43..=46).contains(&audio.len()), "{}", audio.len());
    assert!(audio.iter().all(|f| f.keyframe && f.pts == f.dts));
    // AVCC payloads: 4-byte lengths that add up.
    for f in &video {
        let mut p = &f.payload[..];
        while !p.is_empty() {
            let n = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
            p = &p[4 + n..];
        }
    }
    // Payloads are slices of the file, not copies.
    let range = file.as_ptr() as usize..file.as_ptr() as usize + file.len();
    assert!(
        d.frames
            .iter()
            .all(|f| range.contains(&(f.payload.as_ptr() as usize)))
    );
}

#[test]
fn ffmpeg_h264_mp3() {
    let d = demux(fixture!("h264_mp3.flv"));
    let a = d.tracks.iter().find(|t| t.id == AUDIO_TRACK).unwrap();
    assert_eq!(a.codec, Codec::Mp3);
    assert_eq!(a.config, None);
    assert_eq!(
        (a.info.sample_rate, a.info.channels),
        (Some(22050), Some(1))
    );
    let v = d.tracks.iter().find(|t| t.id == VIDEO_TRACK).unwrap();
    assert_eq!((v.info.width, v.info.height), (Some(160), Some(90)));
    assert!(d.frames.iter().filter(|f| f.track == AUDIO_TRACK).count() > 20);
}

#[test]
fn split_input_gives_the_same_tags() {
    let file = fixture!("h264_aac.flv");
    let (_, whole) = tags_of(file.clone());
    for chunk in [1, 2, 3, 7, 11, 15, 100, 4096] {
        let mut d = FlvDemuxer::new();
        let mut tags = Vec::new();
        for piece in file.chunks(chunk) {
            if chunk % 2 == 0 {
                d.push(piece);
            } else {
                d.push_bytes(Bytes::copy_from_slice(piece));
            }
            while let Some(t) = d.next_tag().unwrap() {
                tags.push(t);
            }
        }
        assert_eq!(tags, whole, "chunk {chunk}");
    }
}

fn assert_same_media(a: &Demuxed, b: &Demuxed) {
    assert_eq!(a.frames, b.frames);
    assert_eq!(a.tracks.len(), b.tracks.len());
    for (x, y) in a.tracks.iter().zip(&b.tracks) {
        assert_eq!((x.id, x.codec, x.timebase), (y.id, y.codec, y.timebase));
        assert_eq!(x.config, y.config);
    }
}

#[test]
fn demux_mux_demux_round_trip() {
    for file in [fixture!("h264_aac.flv"), fixture!("h264_mp3.flv")] {
        let first = demux(file);
        let again = demux(mux(&first.tracks, &first.frames));
        assert_same_media(&first, &again);
        // Our onMetaData carries what the tracks know.
        let props = again.scripts[0].properties().unwrap();
        assert_eq!(
            props.get("width").and_then(Amf0Value::as_f64),
            first.tracks[0].info.width.map(f64::from)
        );
        assert_eq!(
            props.get("encoder").and_then(Amf0Value::as_str),
            Some("Spate")
        );
        // And the track info survives (width, sample rate, channels).
        for (x, y) in first.tracks.iter().zip(&again.tracks) {
            assert_eq!((x.info.width, x.info.height), (y.info.width, y.info.height));
            assert_eq!(
                (x.info.sample_rate, x.info.channels),
                (y.info.sample_rate, y.info.channels)
            );
        }
    }
}

#[test]
fn ffmpeg_bytes_are_reproduced_for_media_tags() {
    // Every audio/video tag we write is byte-identical to ffmpeg's.
    let file = fixture!("h264_aac.flv");
    let (_, tags) = tags_of(file.clone());
    let d = demux(file);
    let ours = mux(&d.tracks, &d.frames);
    let (_, our_tags) = tags_of(ours);
    let media = |t: &&FlvTag| t.tag_type != TagType::Script;
    let mut theirs: Vec<&FlvTag> = tags.iter().filter(media).collect();
    // ffmpeg ends with an AVC end-of-sequence tag; ours is the same bytes.
    let eos = theirs.pop().unwrap();
    assert_eq!(&eos.body[..], b"\x17\x02\0\0\0");
    let m = FlvMuxer::new(&d.tracks).unwrap();
    let mut out = BytesMut::new();
    m.write_sequence_end(VIDEO_TRACK, eos.timestamp, &mut out)
        .unwrap();
    assert_eq!(&out[TAG_HEADER_LEN..out.len() - 4], &eos.body[..]);
    let mine: Vec<&FlvTag> = our_tags.iter().filter(media).collect();
    assert_eq!(theirs.len(), mine.len());
    for (a, b) in theirs.iter().zip(&mine) {
        assert_eq!(a.body, b.body);
        assert_eq!(a.timestamp, b.timestamp);
    }
}

#[test]
fn write_frame_references_the_payload() {
    let track = Track::with_config(0, Codec::H264, 90000, fixture!("avcC_1920x1080.bin")).unwrap();
    let m = FlvMuxer::new(std::slice::from_ref(&track)).unwrap();
    let payload = Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]);
    let frame = Frame {
        track: 0,
        dts: 90000 * 20_000, // 20,000 s: needs the extended timestamp byte
        pts: 90000 * 20_000 + 3003,
        keyframe: true,
        payload: payload.clone(),
    };
    let mut head = BytesMut::new();
    let muxed = m.write_frame(&frame, &mut head).unwrap();
    assert_eq!(head.len(), TAG_HEADER_LEN + 5);
    assert_eq!(muxed.payload.as_ptr(), payload.as_ptr());
    assert_eq!(muxed.trailer, previous_tag_size(5 + 6));
    assert_eq!(u32::from_be_bytes(muxed.trailer), 11 + 11);
    // Tag header: type 9, size 11, timestamp 20,000,000 ms = 0x01312D00.
    assert_eq!(&head[..11], &[9, 0, 0, 11, 0x31, 0x2d, 0x00, 0x01, 0, 0, 0]);
    // AVC header: key frame, NALU, cts 33 ms (3003/90 rounded).
    assert_eq!(&head[11..], &[0x17, 1, 0, 0, 33]);
    // Unknown track.
    let bad = Frame { track: 9, ..frame };
    assert!(matches!(
        m.write_frame(&bad, &mut head),
        Err(Error::FlvMux { track: 9, .. })
    ));
}

fn frame(track: u32, dts: i64, cts: i64, keyframe: bool, payload: &'static [u8]) -> Frame {
    Frame {
        track,
        dts,
        pts: dts + cts,
        keyframe,
        payload: Bytes::from_static(payload),
    }
}

#[test]
fn enhanced_hevc_av1_opus_round_trip() {
    for (video, audio) in [
        (
            Track::with_config(0, Codec::H265, 1000, fixture!("hvcC_640x360.bin")).unwrap(),
            Track::with_config(1, Codec::Opus, 1000, fixture!("OpusHead_mono.bin")).unwrap(),
        ),
        (
            Track::with_config(0, Codec::Av1, 1000, fixture!("av1C_640x360.bin")).unwrap(),
            Track::new(1, Codec::Eac3, 1000),
        ),
    ] {
        let frames = vec![
            frame(0, 0, 66, true, b"\0\0\0\x03\x26\x01\xaf"),
            frame(1, 0, 0, true, b"opus"),
            frame(0, 33, 0, false, b"\0\0\0\x03\x02\x01\xd0"),
            frame(0, 66, -33, false, b"\0\0\0\x01\x02"),
            frame(1, 20, 0, true, b"opus2"),
        ];
        let frames: Vec<Frame> = if video.codec == Codec::Av1 {
            // AV1 has no composition offset in FLV.
            frames
                .into_iter()
                .map(|f| Frame { pts: f.dts, ..f })
                .collect()
        } else {
            frames
        };
        let bytes = mux(&[video.clone(), audio.clone()], &frames);
        let d = demux(bytes.clone());
        assert_eq!(d.frames, frames);
        assert_eq!(d.tracks[0].config, video.config);
        assert_eq!(d.tracks[0].info.width, Some(640));
        assert_eq!(d.tracks[1].codec, audio.codec);
        // The wire form is Enhanced RTMP.
        let (_, tags) = tags_of(bytes);
        let vtags: Vec<&FlvTag> = tags
            .iter()
            .filter(|t| t.tag_type == TagType::Video)
            .collect();
        let fcc = if video.codec == Codec::H265 {
            b"hvc1"
        } else {
            b"av01"
        };
        assert_eq!(vtags[0].body[0], 0x90); // ex header, key frame, SequenceStart
        assert_eq!(&vtags[0].body[1..5], fcc);
        if video.codec == Codec::H265 {
            assert_eq!(vtags[1].body[0], 0x91); // CodedFrames with cts
            assert_eq!(&vtags[1].body[5..8], &[0, 0, 66]);
            assert_eq!(vtags[2].body[0], 0xa3); // inter, CodedFramesX
            assert_eq!(&vtags[3].body[5..8], &[0xff, 0xff, 0xdf]); // -33
        } else {
            assert_eq!(vtags[1].body[0], 0x93);
        }
        let atag = tags.iter().find(|t| t.tag_type == TagType::Audio).unwrap();
        assert_eq!(atag.body[0] >> 4, 9);
    }
}

#[test]
fn opus_dops_config_is_sent_as_opushead() {
    let t = Track::with_config(1, Codec::Opus, 48000, fixture!("dOps_stereo.bin")).unwrap();
    let m = FlvMuxer::new(&[t]).unwrap();
    let mut out = BytesMut::new();
    m.write_sequence_headers(0, &mut out).unwrap();
    let body = &out[TAG_HEADER_LEN..out.len() - 4];
    assert_eq!(&body[..5], b"\x90Opus");
    assert_eq!(&body[5..13], b"OpusHead");
}

#[test]
fn hand_assembled_enhanced_tags() {
    let ts = 1000;
    // hvc1 CodedFrames with SI24 composition time 33.
    let t = parse_video_tag(ts, Bytes::from_static(b"\x91hvc1\x00\x00\x21DATA")).unwrap();
    assert_eq!(t.codec, Codec::H265);
    assert!(t.enhanced && t.is_keyframe());
    assert_eq!(
        t.packet,
        VideoPacket::CodedFrames {
            composition_time: 33,
            data: Bytes::from_static(b"DATA")
        }
    );
    // avc1 CodedFramesX, inter frame.
    let t = parse_video_tag(ts, Bytes::from_static(b"\xa3avc1DATA")).unwrap();
    assert_eq!((t.codec, t.frame_type), (Codec::H264, 2));
    assert!(matches!(
        t.packet,
        VideoPacket::CodedFrames {
            composition_time: 0,
            ..
        }
    ));
    // av01 CodedFrames: no composition time field.
    let t = parse_video_tag(ts, Bytes::from_static(b"\x91av01OBUS")).unwrap();
    assert_eq!(
        t.packet,
        VideoPacket::CodedFrames {
            composition_time: 0,
            data: Bytes::from_static(b"OBUS")
        }
    );
    // vp09 SequenceEnd.
    let t = parse_video_tag(ts, Bytes::from_static(b"\x92vp09")).unwrap();
    assert_eq!((t.codec, t.packet), (Codec::Vp9, VideoPacket::SequenceEnd));
    // Metadata: colorInfo object.
    let mut body = b"\x84hvc1".to_vec();
    amf0::encode(&Amf0Value::String("colorInfo".into()), &mut body);
    amf0::encode(&Amf0Value::Object(vec![]), &mut body);
    let t = parse_video_tag(ts, Bytes::from(body)).unwrap();
    assert!(matches!(&t.packet, VideoPacket::Metadata(v) if v[0].as_str() == Some("colorInfo")));
    // Command frame.
    let t = parse_video_tag(ts, Bytes::from_static(b"\xd1hvc1\x01")).unwrap();
    assert_eq!(t.packet, VideoPacket::Command(1));
    // MPEG2TSSequenceStart.
    let t = parse_video_tag(ts, Bytes::from_static(b"\x95av01\x80")).unwrap();
    assert!(matches!(t.packet, VideoPacket::Mpeg2TsSequenceStart(_)));
    // Multitrack, unknown FourCC, reserved packet type.
    assert_eq!(
        parse_video_tag(ts, Bytes::from_static(b"\x96\x00\x01hvc1")),
        Err(Error::FlvUnsupportedPacketType {
            what: "VideoPacketType",
            packet_type: 6
        })
    );
    assert!(matches!(
        parse_video_tag(ts, Bytes::from_static(b"\x91vp08x")),
        Err(Error::FlvUnsupportedCodec {
            what: "video FourCC",
            ..
        })
    ));
    assert!(parse_video_tag(ts, Bytes::from_static(b"\x99hvc1")).is_err());
    // Legacy HEVC (codec id 12) and legacy errors.
    let t = parse_video_tag(ts, Bytes::from_static(b"\x1c\x01\x00\x00\x00D")).unwrap();
    assert_eq!((t.codec, t.enhanced), (Codec::H265, false));
    assert!(matches!(
        parse_video_tag(ts, Bytes::from_static(b"\x12\x00")),
        Err(Error::FlvUnsupportedCodec {
            what: "video codec id",
            id: 2
        })
    ));
    assert!(matches!(
        parse_video_tag(ts, Bytes::from_static(b"\x17\x01\x00")),
        Err(Error::Truncated { .. })
    ));
    assert_eq!(
        parse_video_tag(ts, Bytes::new()),
        Err(Error::FlvEmptyTag { what: "video" })
    );
    // Negative legacy composition time.
    let t = parse_video_tag(ts, Bytes::from_static(b"\x27\x01\xff\xff\xfeD")).unwrap();
    assert!(matches!(
        t.packet,
        VideoPacket::CodedFrames {
            composition_time: -2,
            ..
        }
    ));

    // ExAudio: Opus SequenceStart / CodedFrames, mp4a, .mp3, ac-3.
    let a = parse_audio_tag(ts, Bytes::from_static(b"\x90OpusOpusHead")).unwrap();
    assert_eq!(a.codec, Codec::Opus);
    assert_eq!(a.legacy_flags, None);
    assert_eq!(
        a.packet,
        AudioPacket::SequenceStart(Bytes::from_static(b"OpusHead"))
    );
    let a = parse_audio_tag(ts, Bytes::from_static(b"\x91mp4aRAW")).unwrap();
    assert_eq!(
        (a.codec, a.packet),
        (
            Codec::Aac,
            AudioPacket::CodedFrames(Bytes::from_static(b"RAW"))
        )
    );
    assert_eq!(
        parse_audio_tag(ts, Bytes::from_static(b"\x91.mp3F"))
            .unwrap()
            .codec,
        Codec::Mp3
    );
    assert_eq!(
        parse_audio_tag(ts, Bytes::from_static(b"\x91ac-3F"))
            .unwrap()
            .codec,
        Codec::Ac3
    );
    assert_eq!(
        parse_audio_tag(ts, Bytes::from_static(b"\x91ec-3F"))
            .unwrap()
            .codec,
        Codec::Eac3
    );
    assert!(matches!(
        parse_audio_tag(ts, Bytes::from_static(b"\x91fLaCF")),
        Err(Error::FlvUnsupportedCodec {
            what: "audio FourCC",
            ..
        })
    ));
    assert!(matches!(
        parse_audio_tag(ts, Bytes::from_static(b"\x95\x00Opus")),
        Err(Error::FlvUnsupportedPacketType {
            what: "AudioPacketType",
            packet_type: 5
        })
    ));
    // Legacy audio: AAC, MP3 flags, Speex unsupported.
    let a = parse_audio_tag(ts, Bytes::from_static(b"\xaf\x00\x12\x10")).unwrap();
    assert_eq!(
        a.packet,
        AudioPacket::SequenceStart(Bytes::from_static(&[0x12, 0x10]))
    );
    let a = parse_audio_tag(ts, Bytes::from_static(b"\x2a\xff\xf3")).unwrap();
    assert_eq!(
        (a.legacy_sample_rate(), a.legacy_channels()),
        (Some(22050), Some(1))
    );
    assert!(matches!(
        parse_audio_tag(ts, Bytes::from_static(b"\xb6x")),
        Err(Error::FlvUnsupportedCodec {
            what: "sound format",
            id: 11
        })
    ));
}

#[test]
fn set_data_frame_is_unwrapped() {
    let mut body = Vec::new();
    for v in [
        Amf0Value::String("@setDataFrame".into()),
        Amf0Value::String("onMetaData".into()),
        Amf0Value::EcmaArray(vec![
            ("width".into(), Amf0Value::Number(1280.0)),
            ("framerate".into(), Amf0Value::Number(29.97)),
        ]),
    ] {
        amf0::encode(&v, &mut body);
    }
    let s = parse_script_tag(&body).unwrap();
    assert_eq!(s.name, "onMetaData");
    assert_eq!(s.values.len(), 1);
    // onMetaData fills what the codec configuration leaves unknown.
    let mut stream = FlvStream::new();
    stream
        .handle_tag(TagType::Script, 0, Bytes::from(body))
        .unwrap();
    stream
        .handle_tag(TagType::Video, 0, Bytes::from_static(b"\x92vp09"))
        .unwrap();
    stream
        .handle_tag(TagType::Video, 0, Bytes::from_static(b"\x93vp09F"))
        .unwrap();
    let v = stream.video_track().unwrap();
    assert_eq!(v.info.width, Some(1280));
    assert_eq!(v.info.frame_rate, Some((30000, 1001)));
}

#[test]
fn stream_drops_frames_before_config_and_dedups_config() {
    let mut s = FlvStream::new();
    s.handle_tag(
        TagType::Video,
        0,
        Bytes::from_static(b"\x17\x01\0\0\0\0\0\0\x01\x65"),
    )
    .unwrap();
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.dropped_frames(), 1);
    let avcc = fixture!("avcC_1920x1080.bin");
    let mut seq = b"\x17\x00\0\0\0".to_vec();
    seq.extend_from_slice(&avcc);
    let seq = Bytes::from(seq);
    s.handle_tag(TagType::Video, 0, seq.clone()).unwrap();
    assert!(matches!(s.poll_event(), Some(FlvEvent::Track { .. })));
    s.handle_tag(TagType::Video, 40, seq).unwrap();
    assert_eq!(s.poll_event(), None, "same config again: no event");
    // A config that does not parse still makes a track, with the error.
    s.handle_tag(
        TagType::Video,
        80,
        Bytes::from_static(b"\x17\x00\0\0\0\x01\x64"),
    )
    .unwrap();
    match s.poll_event() {
        Some(FlvEvent::Track {
            track,
            config_error: Some(Error::Truncated { what: "avcC", .. }),
        }) => assert_eq!(track.info.width, None),
        e => panic!("{e:?}"),
    }
    // End of sequence.
    s.handle_tag(TagType::Video, 80, Bytes::from_static(b"\x17\x02\0\0\0"))
        .unwrap();
    assert_eq!(s.poll_event(), Some(FlvEvent::SequenceEnd { track: 0 }));
}

#[test]
fn stream_unwraps_32_bit_timestamps() {
    let mut s = FlvStream::new();
    let mut dts = Vec::new();
    for ts in [u32::MAX - 20, u32::MAX - 5, 10, 30] {
        s.handle_tag(
            TagType::Audio,
            ts,
            Bytes::from_static(b"\x2a\xff\xf3\x40\xc4"),
        )
        .unwrap();
        while let Some(e) = s.poll_event() {
            if let FlvEvent::Frame(f) = e {
                dts.push(f.dts);
            }
        }
    }
    let base = i64::from(u32::MAX);
    assert_eq!(dts, [base - 20, base - 5, base + 11, base + 31]);
}

#[test]
fn demuxer_errors() {
    let mut d = FlvDemuxer::new();
    d.push(b"FLX");
    assert_eq!(d.next_tag(), Err(Error::FlvSignature { found: *b"FLX" }));
    assert_eq!(d.next_tag(), Err(Error::FlvSignature { found: *b"FLX" }));
    let mut d = FlvDemuxer::new();
    d.push(b"FLV\x01\x05\0\0\0\x08");
    assert_eq!(d.next_tag(), Err(Error::FlvHeaderSize { offset: 8 }));
    // Encrypted tag: an error for that tag, then the next one.
    let mut d = FlvDemuxer::new();
    d.push(b"FLV\x01\x05\0\0\0\x09\0\0\0\0");
    d.push(b"\x28\0\0\x01\0\0\0\0\0\0\0X\0\0\0\x0c");
    d.push(b"\x08\0\0\x01\0\0\x05\0\0\0\0Y\0\0\0\x0c");
    assert_eq!(d.next_tag(), Err(Error::FlvEncryptedTag { offset: 13 }));
    let t = d.next_tag().unwrap().unwrap();
    assert_eq!(
        (t.tag_type, t.timestamp, &t.body[..]),
        (TagType::Audio, 5, &b"Y"[..])
    );
    assert_eq!(d.next_tag(), Ok(None));
    // A larger DataOffset is skipped; reserved tag types pass through.
    let mut d = FlvDemuxer::new();
    d.push(b"FLV\x01\x01\0\0\0\x0cABC\0\0\0\0\x0f\0\0\0\0\0\0\0\0\0\0");
    let t = d.next_tag().unwrap().unwrap();
    assert_eq!(t.tag_type, TagType::Other(15));
    assert!(d.header().unwrap().has_video);
}
