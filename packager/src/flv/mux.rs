//! Writing FLV: headers into a buffer, payloads by reference.
use bytes::{BufMut, Bytes, BytesMut};

use super::tag::{
    CODEC_ID_AVC, FRAME_INTER, FRAME_KEY, SOUND_AAC, SOUND_EX_HEADER, SOUND_MP3, fourcc,
};
use super::{MAX_TAG_BODY, TAG_HEADER_LEN, TagType};
use crate::Error;
use crate::amf0::{self, Amf0Value};
use crate::media::{Codec, Frame, MediaKind, OpusHead, Track, rescale};

/// Append the 9-byte FLV file header and PreviousTagSize0 (13 bytes).
pub fn write_file_header(out: &mut BytesMut, has_audio: bool, has_video: bool) {
    out.put_slice(b"FLV\x01");
    out.put_u8(u8::from(has_audio) << 2 | u8::from(has_video));
    out.put_u32(9);
    out.put_u32(0);
}

/// Append an 11-byte tag header: type, DataSize, timestamp (24 bits +
/// extended byte), StreamID 0.
pub fn write_tag_header(
    out: &mut BytesMut,
    tag_type: TagType,
    timestamp: u32,
    data_size: usize,
) -> Result<(), Error> {
    if data_size > MAX_TAG_BODY {
        return Err(Error::FlvMux {
            track: u32::MAX,
            reason: "tag body larger than 16 MiB - 1",
        });
    }
    out.put_u8(tag_type.to_u8() & 0x1f);
    out.put_slice(&(data_size as u32).to_be_bytes()[1..]);
    out.put_slice(&timestamp.to_be_bytes()[1..]);
    out.put_u8((timestamp >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
    Ok(())
}

/// The PreviousTagSize field that follows a tag with `data_size` body bytes.
pub fn previous_tag_size(data_size: usize) -> [u8; 4] {
    ((TAG_HEADER_LEN + data_size) as u32).to_be_bytes()
}

/// A frame tag whose head (tag header + codec header) was written into the
/// caller's buffer: send that head, then `payload`, then `trailer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxedFrame {
    /// The frame payload, shared, not copied.
    pub payload: Bytes,
    /// The PreviousTagSize field that closes the tag.
    pub trailer: [u8; 4],
}

/// Writes tracks and frames as FLV.
///
/// At most one video and one audio track. H.264, AAC and MP3 are written as
/// legacy tags; HEVC, AV1, VP9, Opus, AC-3 and E-AC-3 as Enhanced RTMP
/// tags. Timestamps are converted from the track's timebase to milliseconds
/// and written modulo 2^32 (FLV's range).
#[derive(Debug, Clone, Default)]
pub struct FlvMuxer {
    video: Option<Track>,
    audio: Option<Track>,
}

impl FlvMuxer {
    /// A muxer for these tracks.
    pub fn new(tracks: &[Track]) -> Result<FlvMuxer, Error> {
        let mut m = FlvMuxer::default();
        for t in tracks {
            let slot = match t.kind() {
                MediaKind::Video => &m.video,
                MediaKind::Audio => &m.audio,
            };
            if slot.is_some() {
                return Err(Error::FlvMux {
                    track: t.id,
                    reason: "FLV carries one video and one audio track",
                });
            }
            m.set_track(t.clone())?;
        }
        Ok(m)
    }

    /// Add a track or replace the one of the same kind (a configuration
    /// change); write its sequence header again afterwards.
    pub fn set_track(&mut self, track: Track) -> Result<(), Error> {
        if track.timebase == 0 {
            return Err(Error::FlvMux {
                track: track.id,
                reason: "timebase 0",
            });
        }
        match track.kind() {
            MediaKind::Video => self.video = Some(track),
            MediaKind::Audio => self.audio = Some(track),
        }
        Ok(())
    }

    /// The tracks, video first.
    pub fn tracks(&self) -> impl Iterator<Item = &Track> {
        self.video.iter().chain(self.audio.iter())
    }

    fn track(&self, id: u32) -> Result<&Track, Error> {
        self.tracks().find(|t| t.id == id).ok_or(Error::FlvMux {
            track: id,
            reason: "no such track in this muxer",
        })
    }

    /// Append the file header (with the audio/video flags of the tracks).
    pub fn write_header(&self, out: &mut BytesMut) {
        write_file_header(out, self.audio.is_some(), self.video.is_some());
    }

    /// Append a whole `onMetaData` script tag at timestamp 0.
    pub fn write_metadata(&self, out: &mut BytesMut) -> Result<(), Error> {
        let tracks: Vec<Track> = self.tracks().cloned().collect();
        let body = metadata_body(&tracks);
        write_whole_tag(out, TagType::Script, 0, &[&body])
    }

    /// Append the sequence-header tag of every track that has a
    /// configuration.
    pub fn write_sequence_headers(&self, timestamp: u32, out: &mut BytesMut) -> Result<(), Error> {
        for t in self.tracks() {
            self.write_sequence_header(t.id, timestamp, out)?;
        }
        Ok(())
    }

    /// Append the sequence-header tag of one track; nothing when the track
    /// has no configuration.
    pub fn write_sequence_header(
        &self,
        track: u32,
        timestamp: u32,
        out: &mut BytesMut,
    ) -> Result<(), Error> {
        let t = self.track(track)?;
        let Some(config) = &t.config else {
            return Ok(());
        };
        let opus_head;
        let config: &[u8] = if t.codec == Codec::Opus && !config.starts_with(b"OpusHead") {
            match OpusHead::parse(config) {
                Ok(h) => {
                    opus_head = h.to_opus_head();
                    &opus_head
                }
                Err(_) => config,
            }
        } else {
            config
        };
        let (tag_type, head) = match t.kind() {
            MediaKind::Video => (TagType::Video, video_head(t, FRAME_KEY, 0, 0)?),
            MediaKind::Audio => (TagType::Audio, audio_head(t, 0)?),
        };
        write_whole_tag(out, tag_type, timestamp, &[&head, config])
    }

    /// Append an end-of-sequence tag for a track (video: AVC end of
    /// sequence / SequenceEnd; audio: Enhanced SequenceEnd, nothing for
    /// legacy audio, which has none).
    pub fn write_sequence_end(
        &self,
        track: u32,
        timestamp: u32,
        out: &mut BytesMut,
    ) -> Result<(), Error> {
        let t = self.track(track)?;
        match t.kind() {
            MediaKind::Video => {
                let head = video_head(t, FRAME_KEY, 2, 0)?;
                write_whole_tag(out, TagType::Video, timestamp, &[&head])
            }
            MediaKind::Audio => match audio_fourcc(t.codec) {
                Some(fcc) => {
                    let mut head = vec![SOUND_EX_HEADER << 4 | 2];
                    head.extend_from_slice(&fcc.to_be_bytes());
                    write_whole_tag(out, TagType::Audio, timestamp, &[&head])
                }
                None => Ok(()),
            },
        }
    }

    /// Append the tag header and codec header of `frame` to `out` and
    /// return the payload and PreviousTagSize to send after it.
    pub fn write_frame(&self, frame: &Frame, out: &mut BytesMut) -> Result<MuxedFrame, Error> {
        let t = self.track(frame.track)?;
        let dts_ms = rescale(frame.dts, t.timebase, 1000);
        let (tag_type, head) = match t.kind() {
            MediaKind::Video => {
                let cts = rescale(frame.pts, t.timebase, 1000) - dts_ms;
                let cts = cts.clamp(-(1 << 23), (1 << 23) - 1) as i32;
                let ft = if frame.keyframe {
                    FRAME_KEY
                } else {
                    FRAME_INTER
                };
                (TagType::Video, video_head(t, ft, 1, cts)?)
            }
            MediaKind::Audio => (TagType::Audio, audio_head(t, 1)?),
        };
        let data_size = head.len() + frame.payload.len();
        if data_size > MAX_TAG_BODY {
            return Err(Error::FlvMux {
                track: t.id,
                reason: "frame larger than an FLV tag can hold",
            });
        }
        write_tag_header(out, tag_type, dts_ms as u32, data_size)?;
        out.put_slice(&head);
        Ok(MuxedFrame {
            payload: frame.payload.clone(),
            trailer: previous_tag_size(data_size),
        })
    }

    /// [`write_frame`](Self::write_frame), then copy payload and trailer
    /// into `out` too (files, tests).
    pub fn write_frame_copy(&self, frame: &Frame, out: &mut BytesMut) -> Result<(), Error> {
        let m = self.write_frame(frame, out)?;
        out.put_slice(&m.payload);
        out.put_slice(&m.trailer);
        Ok(())
    }
}

fn write_whole_tag(
    out: &mut BytesMut,
    tag_type: TagType,
    timestamp: u32,
    parts: &[&[u8]],
) -> Result<(), Error> {
    let size: usize = parts.iter().map(|p| p.len()).sum();
    write_tag_header(out, tag_type, timestamp, size)?;
    for p in parts {
        out.put_slice(p);
    }
    out.put_slice(&previous_tag_size(size));
    Ok(())
}

fn video_fourcc(codec: Codec) -> Option<u32> {
    match codec {
        Codec::H265 => Some(fourcc::HVC1),
        Codec::Av1 => Some(fourcc::AV01),
        Codec::Vp9 => Some(fourcc::VP09),
        _ => None,
    }
}

fn audio_fourcc(codec: Codec) -> Option<u32> {
    match codec {
        Codec::Opus => Some(fourcc::OPUS),
        Codec::Ac3 => Some(fourcc::AC3),
        Codec::Eac3 => Some(fourcc::EC3),
        _ => None,
    }
}

/// The video tag header bytes before the data. `packet`: 0 sequence start,
/// 1 coded frames, 2 sequence end.
fn video_head(t: &Track, frame_type: u8, packet: u8, cts: i32) -> Result<Vec<u8>, Error> {
    let cts_bytes = &cts.to_be_bytes()[1..];
    if t.codec == Codec::H264 {
        let mut h = vec![frame_type << 4 | CODEC_ID_AVC, packet];
        h.extend_from_slice(cts_bytes);
        return Ok(h);
    }
    let Some(fcc) = video_fourcc(t.codec) else {
        return Err(Error::FlvMux {
            track: t.id,
            reason: "codec not supported in FLV",
        });
    };
    // CodedFramesX (3) when there is no composition offset.
    let with_cts = packet == 1 && t.codec == Codec::H265 && cts != 0;
    let packet = if packet == 1 && !with_cts { 3 } else { packet };
    let mut h = vec![0x80 | frame_type << 4 | packet];
    h.extend_from_slice(&fcc.to_be_bytes());
    if with_cts {
        h.extend_from_slice(cts_bytes);
    }
    Ok(h)
}

/// The audio tag header bytes before the data. `packet`: 0 sequence start,
/// 1 coded frames.
fn audio_head(t: &Track, packet: u8) -> Result<Vec<u8>, Error> {
    match t.codec {
        // AAC: the flags are fixed (44 kHz, 16-bit, stereo) by the spec.
        Codec::Aac => Ok(vec![SOUND_AAC << 4 | 0x0f, packet]),
        Codec::Mp3 => {
            let rate = match t.info.sample_rate {
                Some(r) if r < 11025 => 0,
                Some(r) if r < 22050 => 1,
                Some(r) if r < 44100 => 2,
                _ => 3,
            };
            let stereo = u8::from(t.info.channels != Some(1));
            Ok(vec![SOUND_MP3 << 4 | rate << 2 | 1 << 1 | stereo])
        }
        codec => match audio_fourcc(codec) {
            Some(fcc) => {
                let mut h = vec![SOUND_EX_HEADER << 4 | packet];
                h.extend_from_slice(&fcc.to_be_bytes());
                Ok(h)
            }
            None => Err(Error::FlvMux {
                track: t.id,
                reason: "codec not supported in FLV",
            }),
        },
    }
}

/// The body of an `onMetaData` script tag for these tracks: an ECMA array
/// with duration 0 (live), width, height, framerate, videocodecid (7 for
/// H.264, else the FourCC as a number, as Enhanced RTMP specifies),
/// audiocodecid (10 AAC, 2 MP3, else the FourCC), audiosamplerate,
/// audiosamplesize, stereo, audiochannels and encoder.
pub fn metadata_body(tracks: &[Track]) -> Vec<u8> {
    let mut props: Vec<(String, Amf0Value)> = vec![("duration".into(), Amf0Value::Number(0.0))];
    let mut num = |k: &str, v: f64| props.push((k.into(), Amf0Value::Number(v)));
    let mut flags = Vec::new();
    for t in tracks {
        match t.kind() {
            MediaKind::Video => {
                if let Some(w) = t.info.width {
                    num("width", w.into());
                }
                if let Some(h) = t.info.height {
                    num("height", h.into());
                }
                if let Some((n, d)) = t.info.frame_rate
                    && d != 0
                {
                    num("framerate", f64::from(n) / f64::from(d));
                }
                let id = match t.codec {
                    Codec::H264 => u32::from(CODEC_ID_AVC),
                    c => video_fourcc(c).unwrap_or(0),
                };
                num("videocodecid", id.into());
            }
            MediaKind::Audio => {
                if let Some(r) = t.info.sample_rate {
                    num("audiosamplerate", r.into());
                }
                num("audiosamplesize", 16.0);
                if let Some(c) = t.info.channels {
                    num("audiochannels", c.into());
                    flags.push(("stereo".to_string(), Amf0Value::Boolean(c >= 2)));
                }
                let id = match t.codec {
                    Codec::Aac => u32::from(SOUND_AAC),
                    Codec::Mp3 => u32::from(SOUND_MP3),
                    c => audio_fourcc(c).unwrap_or(0),
                };
                num("audiocodecid", id.into());
            }
        }
    }
    props.extend(flags);
    props.push(("encoder".into(), Amf0Value::String("Spate".into())));
    let mut out = Vec::new();
    amf0::encode(&Amf0Value::String("onMetaData".into()), &mut out);
    amf0::encode(&Amf0Value::EcmaArray(props), &mut out);
    out
}
