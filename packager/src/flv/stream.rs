//! From FLV tags to tracks and frames.
use std::collections::VecDeque;

use bytes::Bytes;

use super::TagType;
use super::tag::{
    AudioPacket, AudioTag, ScriptData, VideoPacket, parse_audio_tag, parse_script_tag,
    parse_video_tag,
};
use crate::Error;
use crate::amf0::Amf0Value;
use crate::media::{Codec, Frame, MpegAudioHeader, Track, TrackInfo, parse_config};

/// Track id [`FlvStream`] gives the video track.
pub const VIDEO_TRACK: u32 = 0;
/// Track id [`FlvStream`] gives the audio track.
pub const AUDIO_TRACK: u32 = 1;

/// What [`FlvStream`] found in the tags.
#[derive(Debug, Clone, PartialEq)]
pub enum FlvEvent {
    /// A track appeared, or its codec or configuration changed. Frames
    /// after this event belong to this version of the track.
    Track {
        /// The track (id 0 video, 1 audio; timebase 1000).
        track: Track,
        /// Why `track.info` is (partly) empty, when the configuration did
        /// not parse. The track is still usable for pass-through.
        config_error: Option<Error>,
    },
    /// A frame of a track announced before.
    Frame(Frame),
    /// End of sequence of a track (the publisher stopped that track).
    SequenceEnd {
        /// The track id.
        track: u32,
    },
    /// A script-data tag (`onMetaData` and any other).
    Script(ScriptData),
    /// Enhanced RTMP video metadata (e.g. `colorInfo`).
    VideoMetadata(Vec<Amf0Value>),
}

#[derive(Debug, Default)]
struct TrackState {
    track: Option<Track>,
}

/// The tracks and frames of one FLV stream: an FLV file read with
/// [`FlvDemuxer`](super::FlvDemuxer) or an RTMP publish.
///
/// Feed each tag with [`handle_tag`](Self::handle_tag), then drain
/// [`poll_event`](Self::poll_event) until `None`.
///
/// - Video is track 0 and audio track 1, both with timebase 1000 (ms).
/// - Timestamps are extended to 64 bits: a jump back by more than 2^31 ms
///   is taken as 32-bit wrap-around (RTMP timestamps wrap after ~49.7
///   days).
/// - Frames of codecs that need a configuration (H.264, HEVC, AV1, AAC)
///   arriving before their sequence header are dropped and counted in
///   [`dropped_frames`](Self::dropped_frames). A repeated, identical sequence
///   header produces no event.
/// - `onMetaData` (width, height, framerate, audiosamplerate, stereo) fills
///   [`TrackInfo`] fields the codec configuration did not.
#[derive(Debug, Default)]
pub struct FlvStream {
    video: TrackState,
    audio: TrackState,
    events: VecDeque<FlvEvent>,
    metadata_info_video: TrackInfo,
    metadata_info_audio: TrackInfo,
    last_ts: Option<u32>,
    epoch: i64,
    dropped: u64,
}

impl FlvStream {
    /// A stream with no tracks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current video track.
    pub fn video_track(&self) -> Option<&Track> {
        self.video.track.as_ref()
    }

    /// The current audio track.
    pub fn audio_track(&self) -> Option<&Track> {
        self.audio.track.as_ref()
    }

    /// Frames dropped because their track had no configuration yet.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<FlvEvent> {
        self.events.pop_front()
    }

    fn extend_ts(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last_ts {
            if ts < last && last - ts > 1 << 31 {
                self.epoch += 1 << 32;
            } else if ts > last && ts - last > 1 << 31 && self.epoch > 0 {
                // A late tag from before the wrap.
                return self.epoch - (1 << 32) + i64::from(ts);
            }
        }
        self.last_ts = Some(ts);
        self.epoch + i64::from(ts)
    }

    /// Interpret one tag. Reserved tag types are ignored. On error nothing
    /// was queued and the stream state is unchanged, so the caller may skip
    /// the tag and continue.
    pub fn handle_tag(
        &mut self,
        tag_type: TagType,
        timestamp: u32,
        body: Bytes,
    ) -> Result<(), Error> {
        match tag_type {
            TagType::Video => {
                let tag = parse_video_tag(timestamp, body)?;
                let dts = self.extend_ts(timestamp);
                let keyframe = tag.is_keyframe();
                match tag.packet {
                    VideoPacket::SequenceStart(config) => {
                        self.set_config(true, tag.codec, Some(config), TrackInfo::default());
                    }
                    VideoPacket::CodedFrames {
                        composition_time,
                        data,
                    } => {
                        if !self.ensure_track(true, tag.codec, TrackInfo::default()) {
                            self.dropped += 1;
                            return Ok(());
                        }
                        self.events.push_back(FlvEvent::Frame(Frame {
                            track: VIDEO_TRACK,
                            dts,
                            pts: dts + i64::from(composition_time),
                            keyframe,
                            payload: data,
                        }));
                    }
                    VideoPacket::SequenceEnd => {
                        if self.video.track.is_some() {
                            self.events
                                .push_back(FlvEvent::SequenceEnd { track: VIDEO_TRACK });
                        }
                    }
                    VideoPacket::Metadata(values) => {
                        self.events.push_back(FlvEvent::VideoMetadata(values));
                    }
                    VideoPacket::Mpeg2TsSequenceStart(_) | VideoPacket::Command(_) => {}
                }
            }
            TagType::Audio => {
                let tag = parse_audio_tag(timestamp, body)?;
                let dts = self.extend_ts(timestamp);
                let legacy = legacy_audio_info(&tag);
                match tag.packet {
                    AudioPacket::SequenceStart(config) => {
                        if tag.codec == Codec::Opus && config.starts_with(b"OpusTags") {
                            return Ok(());
                        }
                        self.set_config(false, tag.codec, Some(config), legacy);
                    }
                    AudioPacket::CodedFrames(data) => {
                        let mut info = legacy;
                        if tag.codec == Codec::Mp3
                            && let Ok(h) = MpegAudioHeader::parse(&data)
                        {
                            info.sample_rate = Some(h.sample_rate);
                            info.channels = Some(h.channels);
                        }
                        if !self.ensure_track(false, tag.codec, info) {
                            self.dropped += 1;
                            return Ok(());
                        }
                        self.events.push_back(FlvEvent::Frame(Frame {
                            track: AUDIO_TRACK,
                            dts,
                            pts: dts,
                            keyframe: true,
                            payload: data,
                        }));
                    }
                    AudioPacket::SequenceEnd => {
                        if self.audio.track.is_some() {
                            self.events
                                .push_back(FlvEvent::SequenceEnd { track: AUDIO_TRACK });
                        }
                    }
                    AudioPacket::MultichannelConfig(_) => {}
                }
            }
            TagType::Script => {
                let script = parse_script_tag(&body)?;
                if script.name == "onMetaData"
                    && let Some(props) = script.properties()
                {
                    self.apply_metadata(props);
                }
                self.events.push_back(FlvEvent::Script(script));
            }
            TagType::Other(_) => {}
        }
        Ok(())
    }

    fn apply_metadata(&mut self, props: &Amf0Value) {
        let num = |k: &str| {
            props
                .get(k)
                .and_then(Amf0Value::as_f64)
                .filter(|n| n.is_finite() && *n > 0.0)
        };
        let v = &mut self.metadata_info_video;
        v.width = num("width").map(|n| n as u32);
        v.height = num("height").map(|n| n as u32);
        v.frame_rate = num("framerate").map(frame_rate_fraction);
        let a = &mut self.metadata_info_audio;
        a.sample_rate = num("audiosamplerate").map(|n| n as u32);
        a.channels = num("audiochannels")
            .map(|n| n.min(255.0) as u8)
            .or_else(|| {
                props
                    .get("stereo")
                    .and_then(Amf0Value::as_bool)
                    .map(|s| if s { 2 } else { 1 })
            });
    }

    /// Make sure a track of `codec` exists; false when it needs a config it
    /// does not have.
    fn ensure_track(&mut self, video: bool, codec: Codec, info: TrackInfo) -> bool {
        let state = if video { &self.video } else { &self.audio };
        match &state.track {
            Some(t) if t.codec == codec => true,
            _ if codec.needs_config() => false,
            _ => {
                self.set_config(video, codec, None, info);
                true
            }
        }
    }

    fn set_config(&mut self, video: bool, codec: Codec, config: Option<Bytes>, extra: TrackInfo) {
        let (state, id, meta) = if video {
            (&mut self.video, VIDEO_TRACK, &self.metadata_info_video)
        } else {
            (&mut self.audio, AUDIO_TRACK, &self.metadata_info_audio)
        };
        if let Some(t) = &state.track
            && t.codec == codec
            && t.config == config
        {
            return;
        }
        let (mut info, config_error) = match &config {
            Some(c) => match parse_config(codec, c) {
                Ok(info) => (info, None),
                Err(e) => (TrackInfo::default(), Some(e)),
            },
            None => (TrackInfo::default(), None),
        };
        info.fill_from(&extra);
        info.fill_from(meta);
        let track = Track {
            id,
            codec,
            timebase: 1000,
            config,
            info,
        };
        state.track = Some(track.clone());
        self.events.push_back(FlvEvent::Track {
            track,
            config_error,
        });
    }
}

fn legacy_audio_info(tag: &AudioTag) -> TrackInfo {
    TrackInfo {
        sample_rate: if tag.codec == Codec::Aac {
            None // AAC's flags are fixed at 44 kHz stereo; the config says.
        } else {
            tag.legacy_sample_rate()
        },
        channels: if tag.codec == Codec::Aac {
            None
        } else {
            tag.legacy_channels()
        },
        ..TrackInfo::default()
    }
}

/// A frame rate in frames per second as a fraction: integers exactly,
/// NTSC rates as n*1000/1001, anything else in thousandths.
pub(crate) fn frame_rate_fraction(fps: f64) -> (u32, u32) {
    let fps = fps.clamp(0.0, 1_000_000.0);
    if (fps - fps.round()).abs() < 1e-6 {
        return (fps.round() as u32, 1);
    }
    let ntsc = fps * 1001.0 / 1000.0;
    if (ntsc - ntsc.round()).abs() < 1e-3 {
        return (ntsc.round() as u32 * 1000, 1001);
    }
    ((fps * 1000.0).round() as u32, 1000)
}
