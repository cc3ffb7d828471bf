//! Segmented outputs of one live stream, packaged once on the core that owns
//! the stream: HLS with MPEG-TS segments, HLS with fMP4 (CMAF) segments, and
//! DASH over the same CMAF segments.
//!
//! Follow one frame: the publisher's core hands each [`Frame`] (rebased
//! timestamps) to [`StreamPackager::on_frame`] → the [`Segmenter`] says
//! whether a CMAF segment starts here → in each TS rendition that carries
//! the track (one per video track, with the first audio track; audio-only:
//! one per audio track), the rendition's own segmenter places it, the frame
//! is muxed into MPEG-TS and the packets are appended to the rendition's
//! [`SegmentWriter`] (the returned ranges, [`TsPiece`]s, are also the items
//! progressive `/<stream>.ts` viewers get: the same bytes) and the frame is
//! kept for its track's CMAF fragment → at a cut, each CMAF
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
    /// Drop an arena's pages before reusing it (segments are sent by
    /// splice/sendfile, which leave page references in socket buffers).
    pub punch_on_reuse: bool,
}

/// What one core needs to answer every segmented request of a stream: an
/// immutable snapshot, replaced whole at every new segment.
#[derive(Debug, Default)]
pub struct SegmentedView {
    /// `/hls/<s>/index.m3u8` (multivariant, TS: one variant per
    /// rendition).
    pub hls_master: Option<Bytes>,
    /// The TS renditions, by index: rendition 0 at `/hls/<s>/media.m3u8`
    /// and `/hls/<s>/<seq>.ts`, rendition `r` ≥ 1 at
    /// `/hls/<s>/<r>/media.m3u8` and `/hls/<s>/<r>/<seq>.ts`. An entry
    /// whose rendition has no segment yet has an empty playlist (`None`).
    pub ts_renditions: Vec<TsRenditionView>,
    /// The stream's video tracks, in track order (what `?video=` picks
    /// from).
    pub video_tracks: Vec<TrackChoice>,
    /// The stream's audio tracks, in track order (what `?audio=` picks
    /// from).
    pub audio_tracks: Vec<TrackChoice>,
    /// `/cmaf/<s>/index.m3u8` (multivariant, fMP4).
    pub cmaf_master: Option<Bytes>,
    /// `/cmaf/<s>/index.mpd`.
    pub mpd: Option<Bytes>,
    /// `/cmaf/<s>/<track>/...`.
    pub cmaf_tracks: Vec<CmafTrackView>,
    /// `Cache-Control: max-age` of playlists, seconds (≤ half a target).
    pub playlist_max_age: u32,
    /// Every track of the stream as the packager knows it (codec, its
    /// configuration and what parsing it revealed): what `/json_<s>.js`
    /// describes.
    pub tracks: Vec<Track>,
}

/// One TS rendition's files.
#[derive(Debug, Default)]
pub struct TsRenditionView {
    /// `media.m3u8` (`None` before its first segment).
    pub media: Option<Bytes>,
    /// A multivariant playlist listing this rendition alone (what
    /// `index.m3u8?video=…` answers).
    pub master: Option<Bytes>,
    /// `<seq>.ts`, by sequence number.
    pub segments: Vec<(u64, SegmentBytes)>,
    /// Track ids it carries: its video track (if any) and its audio track.
    pub video: Option<u32>,
    /// Its audio track.
    pub audio: Option<u32>,
}

/// A track as `?video=` / `?audio=` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackChoice {
    /// Track id.
    pub id: u32,
    /// Its codec.
    pub codec: spate_packager::media::Codec,
    /// Peak bits per second of its segments (0 before the first).
    pub bps: u64,
}

impl SegmentedView {
    /// A TS segment of rendition `r` by number.
    pub fn ts_segment(&self, r: usize, seq: u64) -> Option<&SegmentBytes> {
        find(&self.ts_renditions.get(r)?.segments, seq)
    }

    /// The media playlist of TS rendition `r`.
    pub fn hls_media(&self, r: usize) -> Option<&Bytes> {
        self.ts_renditions.get(r)?.media.as_ref()
    }

    /// The TS rendition a query (`video=…&audio=…`, see
    /// docs/protocols.md) selects: its index, or why there is none.
    /// Without `video` and `audio` keys: rendition 0.
    pub fn select_ts_rendition(&self, query: Option<&str>) -> Result<usize, String> {
        let mut video = None;
        let mut audio = None;
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("video", v)) => video = Some(v),
                Some(("audio", v)) => audio = Some(v),
                _ => {}
            }
        }
        let pick = |what: &str, sel: &str, list: &[TrackChoice]| -> Result<u32, String> {
            let found = if let Ok(i) = sel.parse::<usize>() {
                list.get(i)
            } else if sel.eq_ignore_ascii_case("maxbps") {
                // The first of equals: the lowest index wins a tie.
                list.iter().rev().max_by_key(|t| t.bps)
            } else if sel.eq_ignore_ascii_case("minbps") {
                list.iter().min_by_key(|t| t.bps)
            } else {
                let sel = sel.to_ascii_lowercase();
                let alias = match sel.as_str() {
                    "avc" | "avc1" | "h264" => "h264",
                    "hevc" | "h265" | "hvc1" | "hev1" => "h265",
                    "mpeg" | "mp3" => "mp3",
                    "aac" | "mp4a" => "aac",
                    s => s,
                };
                list.iter().find(|t| t.codec.name() == alias)
            };
            found.map(|t| t.id).ok_or_else(|| {
                format!(
                    "no {what} track matches {what}={sel} (the stream has {} {what} track{}: {})",
                    list.len(),
                    if list.len() == 1 { "" } else { "s" },
                    list.iter()
                        .enumerate()
                        .map(|(i, t)| format!("{i}={}", t.codec))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        };
        let video = video
            .map(|v| pick("video", v, &self.video_tracks))
            .transpose()?;
        let audio = audio
            .map(|a| pick("audio", a, &self.audio_tracks))
            .transpose()?;
        if video.is_none() && audio.is_none() {
            return Ok(0);
        }
        self.ts_renditions
            .iter()
            .position(|r| {
                video.is_none_or(|v| r.video == Some(v)) && audio.is_none_or(|a| r.audio == Some(a))
            })
            .ok_or_else(|| {
                "no MPEG-TS rendition carries that selection (each carries one video track \
                 with the first audio track; every track is in /cmaf/<stream>/)"
                    .to_string()
            })
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
    /// The frame's MPEG-TS packets in each TS rendition that carries its
    /// track (ranges of the TS segments being written).
    pub ts: Vec<TsPiece>,
    /// A segment was completed: the new view for every core.
    pub view: Option<Arc<SegmentedView>>,
}

/// A frame's packets in one TS rendition.
#[derive(Debug, Clone)]
pub struct TsPiece {
    /// Rendition index.
    pub rendition: usize,
    /// The packets: a range of the rendition's segment in the store.
    pub bytes: Bytes,
    /// A TS viewer may start here: the packets begin with PAT/PMT (a
    /// segment start, or a keyframe of the rendition's video track).
    pub start: bool,
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

/// One MPEG-TS rendition: a video track with the first audio track (or,
/// audio-only, one audio track), with its own muxer, segment cuts (at its
/// own keyframes: renditions of one source have aligned GOPs, and a
/// segment of each then starts at the same instant), store and playlist.
#[derive(Debug)]
struct TsRendition {
    muxer: TsMuxer,
    /// Track ids the muxer carries.
    tracks: Vec<u32>,
    /// The track that cuts its segments (its video track; audio-only: its
    /// audio track).
    cut_track: u32,
    video: Option<u32>,
    audio: Option<u32>,
    segmenter: Segmenter,
    writer: SegmentWriter,
    open: Option<OpenSegment>,
    playlist: LivePlaylist,
    segments: VecDeque<Published>,
    peak_bps: u64,
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
    ts: Vec<TsRendition>,
    ts_scratch: Vec<u8>,
    /// A segment of some output was completed: make a new view.
    dirty: bool,
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
        Self {
            settings,
            tracks: Vec::new(),
            segmenter: None,
            first_seq,
            has_video: false,
            cut_track: None,
            ts: Vec::new(),
            ts_scratch: Vec::with_capacity(256 * 1024),
            dirty: false,
            cmaf: Vec::new(),
            cmaf_writer: SegmentWriter::new(settings.arena_bytes, settings.max_arenas)
                .punch_on_reuse(settings.punch_on_reuse),
            fragment_seq: 0,
            open: None,
            epoch_ms: None,
            rebuild: false,
            errors: 0,
            name,
        }
    }

    /// The stream's tracks, in track id order.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Segment-store arenas this stream's outputs hold, and their bytes.
    pub fn store_usage(&self) -> (u64, u64) {
        let mut arenas = self.cmaf_writer.arenas() as u64;
        let mut bytes = self.cmaf_writer.arena_bytes() as u64;
        for r in &self.ts {
            arenas += r.writer.arenas() as u64;
            bytes += r.writer.arena_bytes() as u64;
        }
        (arenas, bytes)
    }

    /// A track appeared or its configuration changed.
    pub fn on_track(&mut self, track: Track) {
        match self.tracks.iter_mut().find(|t| t.id == track.id) {
            Some(t) if *t == track => return,
            Some(t) => *t = track,
            None => {
                // In track id order (a TS source's PIDs, as its PMT lists
                // them), whatever order their first frames came in: the
                // first video and audio tracks are the defaults.
                let at = self.tracks.partition_point(|t| t.id < track.id);
                self.tracks.insert(at, track);
            }
        }
        if self.segmenter.is_some() && !self.published_any() {
            // A track announced shortly after the first (TS sources announce
            // each track with its first frame): start over, so that the
            // first segment already has every track.
            self.segmenter = None;
            self.open = None;
            self.epoch_ms = None;
            // Nothing was published: the renditions start over too.
            self.ts.clear();
            for c in &mut self.cmaf {
                c.frames.clear();
            }
        } else if let Some(s) = self.segmenter.as_mut() {
            self.rebuild = true;
            s.force_discontinuity();
            for r in &mut self.ts {
                r.segmenter.force_discontinuity();
            }
        }
    }

    /// Whether any segment was published yet.
    fn published_any(&self) -> bool {
        self.ts.iter().any(|r| !r.playlist.is_empty())
            || self.cmaf.iter().any(|c| !c.playlist.is_empty())
    }

    /// The publisher reconnected (or its timestamps were rebased): the next
    /// segment starts with a discontinuity.
    pub fn discontinuity(&mut self) {
        if let Some(s) = self.segmenter.as_mut() {
            s.force_discontinuity();
        }
        for r in &mut self.ts {
            r.segmenter.force_discontinuity();
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
        // CMAF (and DASH) segments: cut by the main segmenter, at keyframes
        // of the first video track.
        let placement =
            self.segmenter
                .as_mut()
                .expect("made above")
                .place(dts_us, is_cut, frame.keyframe);
        let keep_cmaf = match placement {
            Placement::Drop => false,
            Placement::Continue => self.open.is_some(),
            Placement::Cut {
                ended,
                starts,
                discontinuity,
            } => {
                if let Some(span) = ended {
                    self.finish_segment(&span, wall_ms);
                }
                if self.rebuild {
                    self.rebuild = false;
                    self.build_outputs();
                }
                self.open = Some(OpenSegment {
                    seq: starts,
                    discontinuity,
                    pdt_ms: epoch + dts_us / 1000,
                    broken: false,
                });
                true
            }
        };
        // MPEG-TS: the one copy of the payload per rendition, into its
        // store.
        for (index, r) in self.ts.iter_mut().enumerate() {
            if !r.tracks.contains(&frame.track) {
                continue;
            }
            let is_cut = frame.track == r.cut_track;
            let mut starts_segment = false;
            self.ts_scratch.clear();
            match r.segmenter.place(dts_us, is_cut, frame.keyframe) {
                Placement::Drop => continue,
                Placement::Continue => {
                    if r.open.is_none() {
                        continue;
                    }
                }
                Placement::Cut {
                    ended,
                    starts,
                    discontinuity,
                } => {
                    if let Some(span) = ended {
                        finish_ts(r, &span, &self.settings, wall_ms, &self.name);
                        self.dirty = true;
                    }
                    r.writer.begin();
                    r.open = Some(OpenSegment {
                        seq: starts,
                        discontinuity,
                        pdt_ms: epoch + dts_us / 1000,
                        broken: false,
                    });
                    starts_segment = true;
                    if r.video.is_none() {
                        // Audio-only: PAT/PMT are not written by themselves.
                        r.muxer.write_psi(&mut self.ts_scratch);
                    }
                }
            }
            if let Err(e) = r.muxer.write_frame(frame, &mut self.ts_scratch) {
                self.errors += 1;
                tracing::debug!("stream {}: TS mux: {e}", self.name);
            }
            if self.ts_scratch.is_empty() {
                continue;
            }
            match r.writer.write(&self.ts_scratch) {
                Ok(range) => out.ts.push(TsPiece {
                    rendition: index,
                    bytes: range.to_bytes(),
                    start: starts_segment || (frame.keyframe && r.video == Some(frame.track)),
                }),
                Err(e) => {
                    self.errors += 1;
                    if let Some(o) = r.open.as_mut()
                        && !o.broken
                    {
                        o.broken = true;
                        tracing::warn!(
                            "stream {}: TS segment {} of rendition {index} dropped: {e}",
                            self.name,
                            o.seq
                        );
                    }
                }
            }
        }
        let main_open = self.open.is_some();
        let cut_track = self.cut_track;
        if let Some(c) = self.cmaf.iter_mut().find(|c| c.track.id == frame.track)
            && if c.track.kind() == MediaKind::Video && Some(c.track.id) != cut_track {
                // Another video rendition: its fragments start at its own
                // keyframes, which may come just before the first track's.
                if frame.keyframe {
                    if !main_open {
                        c.frames.clear();
                    }
                    true
                } else {
                    !c.frames.is_empty()
                }
            } else {
                keep_cmaf
            }
        {
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
        if std::mem::take(&mut self.dirty) {
            out.view = Some(Arc::new(self.make_view(wall_ms)));
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
        // One rendition per video track (with the first audio track), or,
        // audio-only, one per audio track. A rendition keeps its index, and
        // with it its store, playlist and segment numbering, across
        // rebuilds.
        let first_audio = ts_tracks.iter().find(|t| t.kind() == MediaKind::Audio);
        let sets: Vec<(Option<&Track>, Option<&Track>)> = if self.has_video {
            ts_tracks
                .iter()
                .filter(|t| t.kind() == MediaKind::Video)
                .map(|v| (Some(v), first_audio))
                .collect()
        } else {
            ts_tracks.iter().map(|a| (None, Some(a))).collect()
        };
        let next_seq = self
            .segmenter
            .as_ref()
            .map_or(self.first_seq, Segmenter::next_seq);
        let config = SegmenterConfig {
            target_us: self.settings.target_us,
            max_gap_us: 2 * self.settings.target_us.max(1_000_000),
        };
        let mut old = std::mem::take(&mut self.ts).into_iter();
        for (video, audio) in sets {
            let tracks: Vec<Track> = video.into_iter().chain(audio).cloned().collect();
            let muxer = match TsMuxer::new(&tracks) {
                Ok(m) => m,
                Err(e) => {
                    tracing::info!(
                        "stream {}: no MPEG-TS rendition for {tracks:?}: {e}",
                        self.name
                    );
                    continue;
                }
            };
            let video = video.map(|t| t.id);
            let audio = audio.map(|t| t.id);
            let cut_track = video.or(audio).expect("a rendition has a track");
            let ids = tracks.iter().map(|t| t.id).collect();
            match old.next() {
                Some(mut r) => {
                    r.muxer = muxer;
                    r.tracks = ids;
                    r.cut_track = cut_track;
                    r.video = video;
                    r.audio = audio;
                    self.ts.push(r);
                }
                None => self.ts.push(TsRendition {
                    muxer,
                    tracks: ids,
                    cut_track,
                    video,
                    audio,
                    segmenter: Segmenter::new(config, next_seq, video.is_some()),
                    writer: SegmentWriter::new(self.settings.arena_bytes, self.settings.max_arenas)
                        .punch_on_reuse(self.settings.punch_on_reuse),
                    open: None,
                    playlist: LivePlaylist::new(
                        self.settings.window,
                        None,
                        self.settings.target_us,
                    ),
                    segments: VecDeque::new(),
                    peak_bps: 0,
                }),
            }
        }
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

    /// Close the open CMAF segment as `span` and publish it in every
    /// track (the view is made by the caller).
    fn finish_segment(&mut self, span: &SegmentSpan, wall_ms: i64) {
        let Some(open) = self.open.take() else {
            return;
        };
        let seq = span.seq;
        // CMAF: one fragment per track.
        let end_us = span.start_us + span.duration_us;
        for c in &mut self.cmaf {
            let mut frames = std::mem::take(&mut c.frames);
            if c.track.kind() == MediaKind::Video && Some(c.track.id) != self.cut_track {
                // Another video rendition: its frames from its keyframe at
                // the cut on (renditions have aligned GOPs, but its
                // keyframe may arrive just before the first track's) start
                // its next fragment.
                let end = rescale(end_us, 1_000_000, c.track.timebase) - c.last_interval / 2;
                if let Some(i) = frames
                    .iter()
                    .position(|f| f.keyframe && f.dts >= end)
                    .filter(|&i| i > 0)
                {
                    c.frames = frames.split_off(i);
                }
            }
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
        for c in &mut self.cmaf {
            let first = c.playlist.media_sequence();
            age_out(&mut c.segments, first, wall_ms, grace);
        }
        self.dirty = true;
    }

    fn make_view(&self, wall_ms: i64) -> SegmentedView {
        let target_s = (self.settings.target_us / 1_000_000).max(1);
        let mut view = SegmentedView {
            playlist_max_age: (target_s / 2) as u32,
            tracks: self.tracks.clone(),
            ..Default::default()
        };
        let resolution_of = |t: &Track| Some((t.info.width?, t.info.height?));
        let frame_rate_of = |t: &Track| {
            t.info
                .frame_rate
                .filter(|&(_, d)| d > 0)
                .map(|(n, d)| f64::from(n) / f64::from(d))
        };
        let track = |id: u32| self.tracks.iter().find(|t| t.id == id);
        let cmaf_bps = |id: u32| {
            self.cmaf
                .iter()
                .find(|c| c.track.id == id)
                .map_or(0, |c| c.peak_bps)
        };
        // What `?video=` / `?audio=` choose from.
        for t in &self.tracks {
            let rendition = self
                .ts
                .iter()
                .find(|r| r.video == Some(t.id) || r.video.is_none() && r.audio == Some(t.id));
            let choice = TrackChoice {
                id: t.id,
                codec: t.codec,
                bps: rendition.map_or_else(|| cmaf_bps(t.id), |r| r.peak_bps),
            };
            match t.kind() {
                MediaKind::Video if rendition.is_some() => view.video_tracks.push(choice),
                MediaKind::Audio => view.audio_tracks.push(TrackChoice {
                    bps: if self.has_video {
                        cmaf_bps(t.id)
                    } else {
                        choice.bps
                    },
                    ..choice
                }),
                MediaKind::Video => {}
            }
        }
        // HLS (TS): one variant per rendition with a segment, by bandwidth,
        // highest first.
        let mut variants = Vec::new();
        for (i, r) in self.ts.iter().enumerate() {
            let listed = !r.playlist.is_empty();
            view.ts_renditions.push(TsRenditionView {
                media: listed.then(|| Bytes::from(r.playlist.render(false))),
                master: None,
                segments: r
                    .segments
                    .iter()
                    .map(|p| (p.seq, p.bytes.clone()))
                    .collect(),
                video: r.video,
                audio: r.audio,
            });
            if !listed {
                continue;
            }
            let v = r.video.and_then(track);
            let variant = Variant {
                uri: if i == 0 {
                    "media.m3u8".into()
                } else {
                    format!("{i}/media.m3u8")
                },
                bandwidth: r.peak_bps.max(1),
                average_bandwidth: None,
                codecs: r
                    .tracks
                    .iter()
                    .filter_map(|&id| track(id))
                    .filter_map(hls::codecs_string)
                    .collect(),
                resolution: v.and_then(resolution_of),
                frame_rate: v.and_then(frame_rate_of),
                audio_group: None,
            };
            if let Some(last) = view.ts_renditions.last_mut() {
                // `index.m3u8?video=…`: a multivariant playlist of this
                // rendition alone.
                last.master = Some(Bytes::from(hls::master_playlist(
                    std::slice::from_ref(&variant),
                    &[],
                )));
            }
            variants.push(variant);
        }
        if !variants.is_empty() {
            variants.sort_by_key(|v| std::cmp::Reverse(v.bandwidth));
            view.hls_master = Some(Bytes::from(hls::master_playlist(&variants, &[])));
        }
        let listed: Vec<&CmafTrack> = self
            .cmaf
            .iter()
            .filter(|c| !c.playlist.is_empty())
            .collect();
        if !listed.is_empty() {
            // HLS (fMP4): one variant per video track, every audio track a
            // rendition of one audio group (the first is the default); an
            // audio-only stream has one variant per audio track.
            let videos: Vec<&&CmafTrack> = listed
                .iter()
                .filter(|c| c.track.kind() == MediaKind::Video)
                .collect();
            let audios: Vec<&&CmafTrack> = listed
                .iter()
                .filter(|c| c.track.kind() == MediaKind::Audio)
                .collect();
            let mut audio = Vec::new();
            let mut audio_codecs: Vec<String> = Vec::new();
            let mut names: Vec<String> = Vec::new();
            for (i, a) in audios.iter().enumerate() {
                if let Some(cs) = hls::codecs_string(&a.track)
                    && !audio_codecs.contains(&cs)
                {
                    audio_codecs.push(cs);
                }
                let base = a.track.codec.name().to_string();
                let name = if names.contains(&base) {
                    format!("{base}-{}", a.track.id)
                } else {
                    base
                };
                names.push(name.clone());
                audio.push(AudioRendition {
                    group_id: "audio".into(),
                    name,
                    language: None,
                    default: i == 0,
                    autoselect: true,
                    channels: a.track.info.channels.map(u32::from),
                    uri: Some(format!("{}/index.m3u8", a.name)),
                });
            }
            let audio_peak = audios.iter().map(|a| a.peak_bps).max().unwrap_or(0);
            let mut variants: Vec<Variant> = if videos.is_empty() {
                audio.clear();
                audios
                    .iter()
                    .map(|a| Variant {
                        uri: format!("{}/index.m3u8", a.name),
                        bandwidth: a.peak_bps.max(1),
                        average_bandwidth: None,
                        codecs: hls::codecs_string(&a.track).into_iter().collect(),
                        resolution: None,
                        frame_rate: None,
                        audio_group: None,
                    })
                    .collect()
            } else {
                videos
                    .iter()
                    .map(|v| Variant {
                        uri: format!("{}/index.m3u8", v.name),
                        bandwidth: (v.peak_bps + audio_peak).max(1),
                        average_bandwidth: None,
                        codecs: hls::codecs_string(&v.track)
                            .into_iter()
                            .chain(audio_codecs.iter().cloned())
                            .collect(),
                        resolution: resolution_of(&v.track),
                        frame_rate: frame_rate_of(&v.track),
                        audio_group: (!audios.is_empty()).then(|| "audio".to_string()),
                    })
                    .collect()
            };
            variants.sort_by_key(|v| std::cmp::Reverse(v.bandwidth));
            view.cmaf_master = Some(Bytes::from(hls::master_playlist(&variants, &audio)));
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
                    frame_rate: if video { frame_rate_of(&c.track) } else { None },
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
                    // Video renditions in one AdaptationSet (players switch
                    // between them); each audio track in its own.
                    adaptation_set: video.then(|| "video".to_string()),
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

/// Close rendition `r`'s open segment as `span`: into its playlist, and
/// age out what left it.
fn finish_ts(
    r: &mut TsRendition,
    span: &SegmentSpan,
    settings: &SegmentedSettings,
    wall_ms: i64,
    name: &str,
) {
    let Some(open) = r.open.take() else {
        return;
    };
    let seq = span.seq;
    match r.writer.finish() {
        Some(bytes) if !open.broken && !bytes.is_empty() => {
            r.peak_bps = r.peak_bps.max(bps(bytes.len(), span.duration_us));
            r.playlist.push(HlsSegment {
                seq,
                duration_us: span.duration_us,
                uri: format!("{seq}.ts"),
                discontinuity: open.discontinuity,
                program_date_time_ms: Some(open.pdt_ms),
            });
            r.segments.push_back(Published {
                seq,
                bytes,
                left_at_ms: None,
            });
        }
        _ => tracing::debug!("stream {name}: TS segment {seq} not published"),
    }
    let first = r.playlist.media_sequence();
    age_out(&mut r.segments, first, wall_ms, settings.grace_ms);
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

#[cfg(test)]
mod tests {
    use spate_packager::media::Codec;

    use super::*;

    fn view() -> SegmentedView {
        let choice = |id, codec, bps| TrackChoice { id, codec, bps };
        let rendition = |video, audio| TsRenditionView {
            video,
            audio,
            ..Default::default()
        };
        SegmentedView {
            ts_renditions: vec![
                rendition(Some(256), Some(258)),
                rendition(Some(257), Some(258)),
            ],
            video_tracks: vec![
                choice(256, Codec::H264, 900_000),
                choice(257, Codec::H264, 400_000),
            ],
            audio_tracks: vec![
                choice(258, Codec::Aac, 130_000),
                choice(259, Codec::Mp3, 128_000),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn ts_renditions_are_selected_by_index_codec_and_bit_rate() {
        let v = view();
        let sel = |q: &str| v.select_ts_rendition(Some(q));
        assert_eq!(v.select_ts_rendition(None), Ok(0));
        assert_eq!(sel("foo=bar"), Ok(0));
        assert_eq!(sel("video=1"), Ok(1));
        assert_eq!(sel("video=0"), Ok(0));
        assert_eq!(sel("video=h264"), Ok(0));
        assert_eq!(sel("video=AVC"), Ok(0));
        assert_eq!(sel("video=minbps"), Ok(1));
        assert_eq!(sel("video=maxbps"), Ok(0));
        assert_eq!(sel("x=1&video=1&audio=0"), Ok(1));
        assert_eq!(sel("audio=aac"), Ok(0));
        assert_eq!(sel("audio=maxbps"), Ok(0));
        // Not carried in TS with video, or not there at all.
        assert!(sel("audio=mp3").unwrap_err().contains("rendition"));
        assert!(sel("audio=1&video=1").is_err());
        let e = sel("video=2").unwrap_err();
        assert!(e.contains("2 video tracks: 0=h264, 1=h264"), "{e}");
        assert!(sel("video=hevc").is_err());
        assert!(sel("video=").is_err());
    }

    #[test]
    fn bit_rate_ties_go_to_the_lower_index() {
        let mut v = view();
        for t in &mut v.video_tracks {
            t.bps = 0;
        }
        assert_eq!(v.select_ts_rendition(Some("video=maxbps")), Ok(0));
        assert_eq!(v.select_ts_rendition(Some("video=minbps")), Ok(0));
    }
}
