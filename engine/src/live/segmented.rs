//! Segmented outputs of one live stream, packaged once on the core that owns
//! the stream: HLS with MPEG-TS segments, HLS with fMP4 (CMAF) segments, and
//! DASH over the same CMAF segments.
//!
//! Follow one frame: the publisher's core hands each [`Frame`] (rebased
//! timestamps) to [`StreamPackager::on_frame`] → the [`Segmenter`] says
//! whether a segment starts here → the frame is muxed into MPEG-TS and the
//! packets are appended to the TS [`SegmentWriter`] (the returned range is
//! also the item progressive `/<stream>.ts` viewers get: the same bytes) and
//! the frame is kept for its track's CMAF fragment → at a cut, each CMAF
//! track's fragment (`styp` + `moof` + `mdat`) is written to the CMAF
//! writer, the playlists and the MPD are updated (incrementally, once per
//! segment), and a new immutable [`SegmentedView`] is made → the view goes
//! to every core over the mesh; each core answers playlist and segment
//! requests from its copy without locks.
//!
//! Segment numbers start at the stream's creation time in unix seconds and
//! increase by one per segment, so a URL never names two different segments,
//! even across restarts (segments are at least 1 s long). Segments that left
//! the playlist stay downloadable for `grace` (a player that just read the
//! playlist still gets them); a download in progress keeps its bytes alive
//! whatever happens (see `segment_store`).
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use spate_packager::dash::{self, DashRepresentation, LiveMpd};
use spate_packager::hls::{self, AudioRendition, HlsSegment, LivePlaylist, Variant};
use spate_packager::media::{Frame, MediaKind, Track, rescale};
use spate_packager::segmenter::{Placement, Segmenter, SegmenterConfig};
use spate_packager::ts::TsMuxer;
use spate_packager::{fmp4, segmenter::SegmentSpan};

use super::segment_store::{SegmentBytes, SegmentWriter};

/// Settings of a stream's segmented outputs.
#[derive(Debug, Clone, Copy)]
pub struct SegmentedSettings {
    /// Target segment duration, µs.
    pub target_us: i64,
    /// Segments listed in playlists.
    pub window: usize,
    /// How long a segment stays downloadable after it left the playlist, ms.
    pub grace_ms: i64,
    /// Size of one segment-store arena, bytes.
    pub arena_bytes: usize,
    /// Most arenas one output may keep alive.
    pub max_arenas: usize,
}

/// What one core needs to answer every segmented request of a stream: an
/// immutable snapshot, replaced whole at every new segment.
#[derive(Debug, Default)]
pub struct SegmentedView {
    /// `/hls/<s>/index.m3u8` (multivariant, TS).
    pub hls_master: Option<Bytes>,
    /// `/hls/<s>/media.m3u8`.
    pub hls_media: Option<Bytes>,
    /// `/hls/<s>/<seq>.ts`, by sequence number.
    pub ts_segments: Vec<(u64, SegmentBytes)>,
    /// `/cmaf/<s>/index.m3u8` (multivariant, fMP4).
    pub cmaf_master: Option<Bytes>,
    /// `/cmaf/<s>/index.mpd`.
    pub mpd: Option<Bytes>,
    /// `/cmaf/<s>/<track>/...`.
    pub cmaf_tracks: Vec<CmafTrackView>,
    /// `Cache-Control: max-age` of playlists, seconds (≤ half a target).
    pub playlist_max_age: u32,
}

impl SegmentedView {
    /// A TS segment by number.
    pub fn ts_segment(&self, seq: u64) -> Option<&SegmentBytes> {
        find(&self.ts_segments, seq)
    }

    /// A CMAF track by its URL name (`v0`, `a1`).
    pub fn cmaf_track(&self, name: &str) -> Option<&CmafTrackView> {
        self.cmaf_tracks.iter().find(|t| t.name == name)
    }
}

fn find(list: &[(u64, SegmentBytes)], seq: u64) -> Option<&SegmentBytes> {
    list.binary_search_by_key(&seq, |(s, _)| *s)
        .ok()
        .map(|i| &list[i].1)
}

/// One CMAF track's files.
#[derive(Debug)]
pub struct CmafTrackView {
    /// URL name: `v<id>` for video, `a<id>` for audio.
    pub name: String,
    /// `init.mp4`.
    pub init: Bytes,
    /// `index.m3u8` (media playlist).
    pub playlist: Bytes,
    /// `<seq>.m4s`, by sequence number.
    pub segments: Vec<(u64, SegmentBytes)>,
}

impl CmafTrackView {
    /// A segment by number.
    pub fn segment(&self, seq: u64) -> Option<&SegmentBytes> {
        find(&self.segments, seq)
    }
}

/// What [`StreamPackager::on_frame`] produced.
#[derive(Debug, Default)]
pub struct FrameOutput {
    /// The frame's MPEG-TS packets (a range of the TS segment being written).
    pub ts: Option<Bytes>,
    /// A segment starts with this frame (progressive TS viewers may start
    /// here: the packets begin with PAT/PMT).
    pub starts_segment: bool,
    /// A segment was completed: the new view for every core.
    pub view: Option<Arc<SegmentedView>>,
}

#[derive(Debug)]
struct Published {
    seq: u64,
    bytes: SegmentBytes,
    /// Wall-clock ms when it left the playlist.
    left_at_ms: Option<i64>,
}

#[derive(Debug)]
struct OpenSegment {
    seq: u64,
    discontinuity: bool,
    pdt_ms: i64,
    /// A write into the store failed: not published.
    broken: bool,
}

#[derive(Debug)]
struct TsOutput {
    muxer: TsMuxer,
    /// Track ids the muxer carries.
    tracks: Vec<u32>,
}

#[derive(Debug)]
struct CmafTrack {
    track: Track,
    name: String,
    init: Bytes,
    frames: Vec<Frame>,
    playlist: LivePlaylist,
    /// (seq, t, d) in the track's timebase, newest last, at most `window`.
    timeline: VecDeque<(u64, i64, i64)>,
    segments: VecDeque<Published>,
    /// Duration of the last frame interval seen (estimates a run's end).
    last_interval: i64,
    /// Peak bits per second over recent segments.
    peak_bps: u64,
    /// Audio with a fixed number of samples per frame: its timebase is the
    /// sample rate and frame timestamps are made exact.
    audio_frame_samples: Option<u32>,
    /// The next audio frame's exact dts (sample clock).
    next_audio_dts: Option<i64>,
}

/// Samples per frame of audio codecs whose frames all have the same length
/// (AAC-LC 1024, MP3 1152 / 576), when the sample rate is known.
fn audio_frame_samples(t: &Track) -> Option<u32> {
    use spate_packager::media::Codec;
    t.info.sample_rate?;
    match t.codec {
        // Object type 2 = AAC-LC; SBR/PS and others keep the source clock.
        Codec::Aac if t.info.profile == Some(2) => Some(1024),
        Codec::Mp3 => Some(if t.info.sample_rate? >= 32_000 {
            1152
        } else {
            576
        }),
        _ => None,
    }
}

/// The segmented packaging of one live stream (lives on the publisher's
/// core; handed over with the stream's claim when the publisher reconnects
/// elsewhere).
#[derive(Debug)]
pub struct StreamPackager {
    settings: SegmentedSettings,
    tracks: Vec<Track>,
    segmenter: Option<Segmenter>,
    first_seq: u64,
    has_video: bool,
    cut_track: Option<u32>,
    ts: Option<TsOutput>,
    ts_writer: SegmentWriter,
    ts_scratch: Vec<u8>,
    ts_playlist: LivePlaylist,
    ts_segments: VecDeque<Published>,
    ts_peak_bps: u64,
    cmaf: Vec<CmafTrack>,
    cmaf_writer: SegmentWriter,
    fragment_seq: u32,
    open: Option<OpenSegment>,
    /// Unix ms of media time 0.
    epoch_ms: Option<i64>,
    /// Tracks changed: rebuild the outputs at the next cut.
    rebuild: bool,
    /// Frames or segments that could not be packaged (logged once each).
    pub errors: u64,
    name: Arc<str>,
}

impl StreamPackager {
    /// A packager for stream `name` whose first segment is numbered
    /// `first_seq`.
    pub fn new(name: Arc<str>, settings: SegmentedSettings, first_seq: u64) -> Self {
        let target = settings.target_us;
        Self {
            settings,
            tracks: Vec::new(),
            segmenter: None,
            first_seq,
            has_video: false,
            cut_track: None,
            ts: None,
            ts_writer: SegmentWriter::new(settings.arena_bytes, settings.max_arenas),
            ts_scratch: Vec::with_capacity(256 * 1024),
            ts_playlist: LivePlaylist::new(settings.window, None, target),
            ts_segments: VecDeque::new(),
            ts_peak_bps: 0,
            cmaf: Vec::new(),
            cmaf_writer: SegmentWriter::new(settings.arena_bytes, settings.max_arenas),
            fragment_seq: 0,
            open: None,
            epoch_ms: None,
            rebuild: false,
            errors: 0,
            name,
        }
    }

    /// A track appeared or its configuration changed.
    pub fn on_track(&mut self, track: Track) {
        match self.tracks.iter_mut().find(|t| t.id == track.id) {
            Some(t) if *t == track => return,
            Some(t) => *t = track,
            None => self.tracks.push(track),
        }
        if self.segmenter.is_some() && !self.published_any() {
            // A track announced shortly after the first (TS sources announce
            // each track with its first frame): start over, so that the
            // first segment already has every track.
            self.segmenter = None;
            self.open = None;
            self.epoch_ms = None;
            self.ts_writer.begin();
            for c in &mut self.cmaf {
                c.frames.clear();
            }
        } else if let Some(s) = self.segmenter.as_mut() {
            self.rebuild = true;
            s.force_discontinuity();
        }
    }

    /// Whether any segment was published yet.
    fn published_any(&self) -> bool {
        !self.ts_playlist.is_empty() || self.cmaf.iter().any(|c| !c.playlist.is_empty())
    }

    /// The publisher reconnected (or its timestamps were rebased): the next
    /// segment starts with a discontinuity.
    pub fn discontinuity(&mut self) {
        if let Some(s) = self.segmenter.as_mut() {
            s.force_discontinuity();
        }
    }

    /// Package one frame (timestamps already on the stream's timeline).
    pub fn on_frame(&mut self, frame: &Frame, wall_ms: i64) -> FrameOutput {
        let mut out = FrameOutput::default();
        if self.segmenter.is_none() {
            if self.tracks.is_empty() {
                return out;
            }
            self.build_outputs();
            self.segmenter = Some(Segmenter::new(
                SegmenterConfig {
                    target_us: self.settings.target_us,
                    max_gap_us: 2 * self.settings.target_us.max(1_000_000),
                },
                self.first_seq,
                self.has_video,
            ));
        }
        let Some(track) = self.tracks.iter().find(|t| t.id == frame.track) else {
            return out;
        };
        let timebase = track.timebase;
        let dts_us = rescale(frame.dts, timebase, 1_000_000);
        let is_cut = self.cut_track.is_none_or(|c| c == frame.track);
        let epoch = *self.epoch_ms.get_or_insert(wall_ms - dts_us / 1000);
        let placement =
            self.segmenter
                .as_mut()
                .expect("made above")
                .place(dts_us, is_cut, frame.keyframe);
        match placement {
            Placement::Drop => return out,
            Placement::Continue => {
                if self.open.is_none() {
                    return out;
                }
            }
            Placement::Cut {
                ended,
                starts,
                discontinuity,
            } => {
                if let Some(span) = ended {
                    out.view = self.finish_segment(&span, wall_ms);
                }
                if self.rebuild {
                    self.rebuild = false;
                    self.build_outputs();
                }
                self.ts_writer.begin();
                self.open = Some(OpenSegment {
                    seq: starts,
                    discontinuity,
                    pdt_ms: epoch + dts_us / 1000,
                    broken: false,
                });
                out.starts_segment = true;
                self.ts_scratch.clear();
                if !self.has_video
                    && let Some(ts) = self.ts.as_mut()
                {
                    // Audio-only: PAT/PMT are not written by themselves.
                    ts.muxer.write_psi(&mut self.ts_scratch);
                }
            }
        }
        if !out.starts_segment {
            self.ts_scratch.clear();
        }
        // MPEG-TS: the one copy of the payload, into the store.
        if let Some(ts) = self.ts.as_mut()
            && ts.tracks.contains(&frame.track)
        {
            if let Err(e) = ts.muxer.write_frame(frame, &mut self.ts_scratch) {
                self.errors += 1;
                tracing::debug!("stream {}: TS mux: {e}", self.name);
            }
            if !self.ts_scratch.is_empty() {
                match self.ts_writer.write(&self.ts_scratch) {
                    Ok(range) => out.ts = Some(range.to_bytes()),
                    Err(e) => {
                        self.errors += 1;
                        if let Some(o) = self.open.as_mut()
                            && !o.broken
                        {
                            o.broken = true;
                            tracing::warn!(
                                "stream {}: TS segment {} dropped: {e}",
                                self.name,
                                o.seq
                            );
                        }
                    }
                }
            }
        }
        if let Some(c) = self.cmaf.iter_mut().find(|c| c.track.id == frame.track) {
            let mut f = frame.clone();
            if let Some(samples) = c.audio_frame_samples {
                // Audio on a sample clock: the source's millisecond
                // timestamps (FLV, RTMP) are rounded, the frames are not.
                let t = rescale(frame.dts, timebase, c.track.timebase);
                let half = i64::from(samples / 2);
                f.dts = match c.next_audio_dts {
                    Some(next) if (t - next).abs() <= half => next,
                    _ => t,
                };
                f.pts = f.dts;
                c.next_audio_dts = Some(f.dts + i64::from(samples));
            } else if c.track.timebase != timebase {
                f.dts = rescale(frame.dts, timebase, c.track.timebase);
                f.pts = rescale(frame.pts, timebase, c.track.timebase);
            }
            if let Some(prev) = c.frames.last() {
                let d = f.dts - prev.dts;
                if d > 0 {
                    c.last_interval = d;
                }
            }
            c.frames.push(f);
        }
        out
    }

    /// (Re)create the TS muxer and the CMAF tracks from the known tracks.
    /// Tracks a format cannot carry are left out, with a log line.
    fn build_outputs(&mut self) {
        self.has_video = self.tracks.iter().any(|t| t.kind() == MediaKind::Video);
        self.cut_track = self
            .tracks
            .iter()
            .find(|t| t.kind() == MediaKind::Video)
            .map(|t| t.id);
        // TS: every track a single-track muxer accepts.
        let ts_tracks: Vec<Track> = self
            .tracks
            .iter()
            .filter(|t| match TsMuxer::new(std::slice::from_ref(t)) {
                Ok(_) => true,
                Err(e) => {
                    tracing::info!(
                        "stream {}: track {} ({}) left out of MPEG-TS: {e}",
                        self.name,
                        t.id,
                        t.codec
                    );
                    false
                }
            })
            .cloned()
            .collect();
        self.ts = if ts_tracks.is_empty() {
            None
        } else {
            match TsMuxer::new(&ts_tracks) {
                Ok(muxer) => Some(TsOutput {
                    muxer,
                    tracks: ts_tracks.iter().map(|t| t.id).collect(),
                }),
                Err(e) => {
                    tracing::info!("stream {}: no MPEG-TS output: {e}", self.name);
                    None
                }
            }
        };
        // CMAF: one init segment per track; keep what existing tracks had.
        let mut old = std::mem::take(&mut self.cmaf);
        for source_track in &self.tracks {
            // Audio with a fixed frame length goes on a sample clock (the
            // MP4 timescale = the sample rate), so its segment durations and
            // DASH timeline are exact.
            let samples = audio_frame_samples(source_track);
            let mut t = source_track.clone();
            if samples.is_some()
                && let Some(rate) = t.info.sample_rate
            {
                t.timebase = rate;
            }
            let t = &t;
            let init = match fmp4::init_segment(std::slice::from_ref(t)) {
                Ok(i) => Bytes::from(i),
                Err(e) => {
                    tracing::info!(
                        "stream {}: track {} ({}) left out of CMAF: {e}",
                        self.name,
                        t.id,
                        t.codec
                    );
                    continue;
                }
            };
            let name = format!(
                "{}{}",
                if t.kind() == MediaKind::Video {
                    'v'
                } else {
                    'a'
                },
                t.id
            );
            if let Some(i) = old.iter().position(|c| c.name == name) {
                let mut c = old.swap_remove(i);
                c.track = t.clone();
                c.init = init;
                c.frames.clear();
                c.audio_frame_samples = samples;
                c.next_audio_dts = None;
                self.cmaf.push(c);
            } else {
                self.cmaf.push(CmafTrack {
                    track: t.clone(),
                    name,
                    init,
                    frames: Vec::new(),
                    playlist: LivePlaylist::new(
                        self.settings.window,
                        Some("init.mp4".into()),
                        self.settings.target_us,
                    ),
                    timeline: VecDeque::new(),
                    segments: VecDeque::new(),
                    last_interval: 0,
                    peak_bps: 0,
                    audio_frame_samples: samples,
                    next_audio_dts: None,
                });
            }
        }
        self.cmaf
            .sort_by_key(|c| (c.track.kind() != MediaKind::Video, c.track.id));
    }

    /// Close the open segment as `span` and publish it in every format.
    fn finish_segment(&mut self, span: &SegmentSpan, wall_ms: i64) -> Option<Arc<SegmentedView>> {
        let open = self.open.take()?;
        let seq = span.seq;
        // TS
        if let Some(bytes) = self.ts_writer.finish()
            && !open.broken
            && self.ts.is_some()
            && !bytes.is_empty()
        {
            self.ts_peak_bps = self.ts_peak_bps.max(bps(bytes.len(), span.duration_us));
            self.ts_playlist.push(HlsSegment {
                seq,
                duration_us: span.duration_us,
                uri: format!("{seq}.ts"),
                discontinuity: open.discontinuity,
                program_date_time_ms: Some(open.pdt_ms),
            });
            self.ts_segments.push_back(Published {
                seq,
                bytes,
                left_at_ms: None,
            });
        }
        // CMAF: one fragment per track.
        let end_us = span.start_us + span.duration_us;
        for c in &mut self.cmaf {
            let frames = std::mem::take(&mut c.frames);
            let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
                continue;
            };
            let end_dts = if Some(c.track.id) == self.cut_track {
                rescale(end_us, 1_000_000, c.track.timebase)
            } else {
                let interval = if c.last_interval > 0 {
                    c.last_interval
                } else {
                    rescale(23_000, 1_000_000, c.track.timebase).max(1)
                };
                last.dts + interval
            };
            let end_dts = end_dts.max(last.dts + 1);
            let t = first.dts;
            let d = end_dts - t;
            self.fragment_seq = self.fragment_seq.wrapping_add(1).max(1);
            let mut head = Vec::with_capacity(256 + 16 * frames.len());
            let written = fmp4::write_styp(&mut head).and_then(|()| {
                fmp4::write_fragment(
                    self.fragment_seq,
                    &[fmp4::TrackRun {
                        track: c.track.id,
                        frames: &frames,
                        end_dts: Some(end_dts),
                    }],
                    &mut head,
                )
            });
            let payloads = match written {
                Ok(p) => p,
                Err(e) => {
                    self.errors += 1;
                    tracing::warn!(
                        "stream {}: CMAF segment {seq} of {} dropped: {e}",
                        self.name,
                        c.name
                    );
                    continue;
                }
            };
            self.cmaf_writer.begin();
            let mut ok = self.cmaf_writer.write(&head).is_ok();
            for p in &payloads {
                ok = ok && self.cmaf_writer.write(p).is_ok();
            }
            let Some(bytes) = self.cmaf_writer.finish().filter(|_| ok) else {
                self.errors += 1;
                tracing::warn!(
                    "stream {}: CMAF segment {seq} of {} dropped: segment store full",
                    self.name,
                    c.name
                );
                continue;
            };
            let duration_us = rescale(d, c.track.timebase, 1_000_000);
            c.peak_bps = c.peak_bps.max(bps(bytes.len(), duration_us));
            c.playlist.push(HlsSegment {
                seq,
                duration_us,
                uri: format!("{seq}.m4s"),
                discontinuity: open.discontinuity,
                program_date_time_ms: Some(open.pdt_ms),
            });
            c.timeline.push_back((seq, t, d));
            while c.timeline.len() > self.settings.window {
                c.timeline.pop_front();
            }
            c.segments.push_back(Published {
                seq,
                bytes,
                left_at_ms: None,
            });
        }
        // Slide: what left the playlists stays for the grace, then goes.
        let grace = self.settings.grace_ms;
        let ts_first = self.ts_playlist.media_sequence();
        age_out(&mut self.ts_segments, ts_first, wall_ms, grace);
        for c in &mut self.cmaf {
            let first = c.playlist.media_sequence();
            age_out(&mut c.segments, first, wall_ms, grace);
        }
        Some(Arc::new(self.make_view(wall_ms)))
    }

    fn make_view(&self, wall_ms: i64) -> SegmentedView {
        let target_s = (self.settings.target_us / 1_000_000).max(1);
        let mut view = SegmentedView {
            playlist_max_age: (target_s / 2) as u32,
            ..Default::default()
        };
        let video = self.tracks.iter().find(|t| t.kind() == MediaKind::Video);
        let resolution = video.and_then(|v| Some((v.info.width?, v.info.height?)));
        let frame_rate = video
            .and_then(|v| v.info.frame_rate)
            .filter(|&(_, d)| d > 0)
            .map(|(n, d)| f64::from(n) / f64::from(d));
        if let Some(ts) = &self.ts
            && !self.ts_playlist.is_empty()
        {
            let codecs: Vec<String> = self
                .tracks
                .iter()
                .filter(|t| ts.tracks.contains(&t.id))
                .filter_map(hls::codecs_string)
                .collect();
            let has_video = ts.tracks.iter().any(|id| Some(*id) == self.cut_track);
            view.hls_master = Some(Bytes::from(hls::master_playlist(
                &[Variant {
                    uri: "media.m3u8".into(),
                    bandwidth: self.ts_peak_bps.max(1),
                    average_bandwidth: None,
                    codecs,
                    resolution: if has_video { resolution } else { None },
                    frame_rate: if has_video { frame_rate } else { None },
                    audio_group: None,
                }],
                &[],
            )));
            view.hls_media = Some(Bytes::from(self.ts_playlist.render(false)));
            view.ts_segments = self
                .ts_segments
                .iter()
                .map(|p| (p.seq, p.bytes.clone()))
                .collect();
        }
        let listed: Vec<&CmafTrack> = self
            .cmaf
            .iter()
            .filter(|c| !c.playlist.is_empty())
            .collect();
        if !listed.is_empty() {
            let v = listed.iter().find(|c| c.track.kind() == MediaKind::Video);
            let a = listed.iter().find(|c| c.track.kind() == MediaKind::Audio);
            let mut audio = Vec::new();
            let mut codecs = Vec::new();
            if let Some(v) = v
                && let Some(cs) = hls::codecs_string(&v.track)
            {
                codecs.push(cs);
            }
            if let Some(a) = a
                && let Some(cs) = hls::codecs_string(&a.track)
            {
                codecs.push(cs);
            }
            let variant = match (v, a) {
                (Some(v), a) => {
                    if let Some(a) = a {
                        audio.push(AudioRendition {
                            group_id: "audio".into(),
                            name: "audio".into(),
                            language: None,
                            default: true,
                            autoselect: true,
                            channels: a.track.info.channels.map(u32::from),
                            uri: Some(format!("{}/index.m3u8", a.name)),
                        });
                    }
                    Variant {
                        uri: format!("{}/index.m3u8", v.name),
                        bandwidth: (v.peak_bps + a.map_or(0, |a| a.peak_bps)).max(1),
                        average_bandwidth: None,
                        codecs,
                        resolution,
                        frame_rate,
                        audio_group: a.map(|_| "audio".to_string()),
                    }
                }
                (None, Some(a)) => Variant {
                    uri: format!("{}/index.m3u8", a.name),
                    bandwidth: a.peak_bps.max(1),
                    average_bandwidth: None,
                    codecs,
                    resolution: None,
                    frame_rate: None,
                    audio_group: None,
                },
                (None, None) => unreachable!("listed is not empty"),
            };
            view.cmaf_master = Some(Bytes::from(hls::master_playlist(&[variant], &audio)));
            let mut reps = Vec::new();
            let mut max_seg_ms = 0;
            for c in &listed {
                let info = &c.track.info;
                let video = c.track.kind() == MediaKind::Video;
                for &(_, _, d) in &c.timeline {
                    max_seg_ms = max_seg_ms.max(rescale(d, c.track.timebase, 1000));
                }
                reps.push(DashRepresentation {
                    id: c.name.clone(),
                    content_type: c.track.kind(),
                    mime_type: if video { "video/mp4" } else { "audio/mp4" }.into(),
                    codecs: hls::codecs_string(&c.track).unwrap_or_default(),
                    bandwidth: c.peak_bps.max(1),
                    width: if video { info.width } else { None },
                    height: if video { info.height } else { None },
                    frame_rate: if video { frame_rate } else { None },
                    sample_rate: if video { None } else { info.sample_rate },
                    channels: if video {
                        None
                    } else {
                        info.channels.map(u32::from)
                    },
                    timescale: c.track.timebase,
                    start_number: c.timeline.front().map_or(0, |e| e.0),
                    timeline: c.timeline.iter().map(|&(_, t, d)| (t, d)).collect(),
                    lang: None,
                });
            }
            let target_ms = self.settings.target_us / 1000;
            view.mpd = Some(Bytes::from(dash::write_mpd(&LiveMpd {
                availability_start_ms: self.epoch_ms.unwrap_or(wall_ms),
                publish_time_ms: wall_ms,
                minimum_update_period_ms: target_ms,
                min_buffer_time_ms: 2 * target_ms,
                time_shift_buffer_depth_ms: self.settings.window as i64 * target_ms,
                suggested_presentation_delay_ms: 3 * target_ms,
                max_segment_duration_ms: max_seg_ms.max(target_ms),
                utc_timing_url: super::TIME_URL.into(),
                initialization: "$RepresentationID$/init.mp4".into(),
                media: "$RepresentationID$/$Number$.m4s".into(),
                representations: reps,
                ended: false,
            })));
            view.cmaf_tracks = listed
                .iter()
                .map(|c| CmafTrackView {
                    name: c.name.clone(),
                    init: c.init.clone(),
                    playlist: Bytes::from(c.playlist.render(false)),
                    segments: c
                        .segments
                        .iter()
                        .map(|p| (p.seq, p.bytes.clone()))
                        .collect(),
                })
                .collect();
        }
        view
    }
}

fn bps(bytes: usize, duration_us: i64) -> u64 {
    if duration_us <= 0 {
        return 0;
    }
    (bytes as u128 * 8 * 1_000_000 / duration_us as u128) as u64
}

/// Mark segments numbered below `first_listed` as gone from the playlist
/// (now), and drop those gone for longer than `grace_ms`.
fn age_out(list: &mut VecDeque<Published>, first_listed: u64, now_ms: i64, grace_ms: i64) {
    for p in list.iter_mut() {
        if p.seq < first_listed && p.left_at_ms.is_none() {
            p.left_at_ms = Some(now_ms);
        }
    }
    while list
        .front()
        .is_some_and(|p| p.left_at_ms.is_some_and(|t| now_ms - t >= grace_ms))
    {
        list.pop_front();
    }
}
