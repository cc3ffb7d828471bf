//! Live streams.
//!
//! A stream is published on one core (the one that accepted its publisher).
//! That core turns each received tag into a [`Packaged`] item — packaged
//! once, immutable, shared — pushes it into its own [`LiveWindow`] and sends
//! the same `Arc` to every other core over the mesh ([`LiveMsg`]). Each core
//! keeps a [`LocalStream`] replica and serves its own viewers from it; a
//! viewer is a [`ViewerCursor`] into the window, never a copy of the media.
//!
//! The [`Registry`] is the one piece of state shared by all cores: who
//! publishes which name. It is touched only when a publish starts or ends
//! (control-plane rate), never per frame.
pub mod buffer;
pub mod segment_store;
pub mod segmented;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use spate_packager::flv::{TagType, previous_tag_size, write_tag_header};
use spate_protocols::rtmp::{self, MediaKind, MessageHeader};

pub use buffer::{LiveItem, LiveWindow, Next, ViewerCursor, WindowLimits};
pub use segmented::{SegmentedSettings, SegmentedView, StreamPackager, TsPiece};

/// Where Spate tells the time (ISO 8601, UTC): the DASH MPD's `UTCTiming`
/// points here so players never ask a time server on the internet.
pub const TIME_URL: &str = "/.well-known/time";

use crate::config::{Config, LiveConfig, RtmpNaming};

/// Identifies one stream incarnation across cores.
pub type StreamId = u64;

/// Message stream id every RTMP player is sent media on when its session
/// uses it (the first `createStream` answers 1); the shared chunk encoding
/// is made for it.
pub const PLAY_STREAM_ID: u32 = 1;

/// What a tag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// FLV audio tag / RTMP message 8.
    Audio,
    /// FLV video tag / RTMP message 9.
    Video,
    /// FLV script tag / RTMP data message 18 (onMetaData).
    Script,
}

/// One tag of a live stream, packaged once for every output and shared.
#[derive(Debug)]
pub struct Packaged {
    /// What it is.
    pub kind: TagKind,
    /// Rebased timestamp, ms.
    pub ts_ms: u32,
    /// The FLV tag body (= the RTMP message payload): shared with the
    /// publisher's receive, never copied.
    pub body: Bytes,
    /// The 11-byte FLV tag header.
    pub flv_head: [u8; 11],
    /// The FLV PreviousTagSize after the body.
    pub flv_trailer: [u8; 4],
    /// The RTMP chunk encoding (headers and slices of `body`) for message
    /// stream [`PLAY_STREAM_ID`] at the configured chunk size.
    pub rtmp: Vec<Bytes>,
    /// The frame's MPEG-TS packets (for `/<stream>.ts`): a range of the TS
    /// segment in the segment store, the same bytes HLS serves. `None` for
    /// tags that are not frames (sequence headers) or not in the TS.
    pub ts: Option<Bytes>,
    /// Progressive TS viewers may start here (the packets begin with
    /// PAT/PMT and a keyframe, or start an audio-only segment).
    pub ts_start: bool,
    /// `ts` and `ts_start` are those of TS rendition 0 (the default); the
    /// frame's packets in the other renditions that carry its track.
    pub ts_renditions: Vec<TsPiece>,
    /// FLV and RTMP viewers get this item (`false`: a frame of a track FLV
    /// does not carry, such as a second video rendition, for TS viewers).
    pub flv: bool,
}

impl Packaged {
    /// Package one tag.
    pub fn new(kind: TagKind, ts_ms: u32, body: Bytes, chunk_size: u32) -> Self {
        let tag_type = match kind {
            TagKind::Audio => TagType::Audio,
            TagKind::Video => TagType::Video,
            TagKind::Script => TagType::Script,
        };
        let mut h = BytesMut::with_capacity(11);
        // Bodies come from RTMP messages (< 16 MiB), which always fit.
        let _ = write_tag_header(&mut h, tag_type, ts_ms, body.len());
        let mut flv_head = [0u8; 11];
        flv_head.copy_from_slice(&h[..11]);
        let mut pieces = Vec::new();
        let header = MessageHeader {
            csid: match kind {
                TagKind::Audio => MediaKind::Audio.csid(),
                TagKind::Video => MediaKind::Video.csid(),
                TagKind::Script => 5,
            },
            timestamp: ts_ms,
            type_id: match kind {
                TagKind::Audio => 8,
                TagKind::Video => 9,
                TagKind::Script => 18,
            },
            stream_id: PLAY_STREAM_ID,
        };
        rtmp::encode_message(&header, &body, chunk_size, &mut pieces);
        Self {
            kind,
            ts_ms,
            flv_trailer: previous_tag_size(body.len()),
            flv_head,
            body,
            rtmp: pieces,
            ts: None,
            ts_start: false,
            ts_renditions: Vec::new(),
            flv: true,
        }
    }

    /// An item only TS viewers get (a frame of a track FLV does not carry).
    pub fn ts_only(kind: TagKind, ts_ms: u32) -> Self {
        let mut p = Self::new(kind, ts_ms, Bytes::new(), 4096);
        p.rtmp.clear();
        p.flv = false;
        p
    }

    /// Set the frame's TS packets from what the packager made.
    pub fn set_ts(&mut self, pieces: Vec<TsPiece>) {
        for piece in pieces {
            if piece.rendition == 0 {
                self.ts_start = piece.start;
                self.ts = Some(piece.bytes);
            } else {
                self.ts_renditions.push(piece);
            }
        }
    }

    /// The packets of TS rendition `r` and whether a viewer may start at
    /// them.
    pub fn ts_of(&self, r: usize) -> Option<(&Bytes, bool)> {
        if r == 0 {
            return self.ts.as_ref().map(|b| (b, self.ts_start));
        }
        self.ts_renditions
            .iter()
            .find(|p| p.rendition == r)
            .map(|p| (&p.bytes, p.start))
    }

    /// The RTMP chunk stream this kind is sent on.
    pub fn rtmp_csid(&self) -> u32 {
        match self.kind {
            TagKind::Audio => MediaKind::Audio.csid(),
            TagKind::Video => MediaKind::Video.csid(),
            TagKind::Script => 5,
        }
    }

    /// The RTMP message type of this kind.
    pub fn rtmp_type(&self) -> u8 {
        match self.kind {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        }
    }

    /// Bytes this item puts on an FLV connection.
    pub fn flv_len(&self) -> usize {
        11 + self.body.len() + 4
    }
}

/// What a new viewer receives before the first item: metadata and the
/// current sequence headers.
#[derive(Debug, Default, Clone)]
pub struct StreamHead {
    /// onMetaData script body (AMF0 "onMetaData", ECMA array).
    pub metadata: Option<Bytes>,
    /// Video sequence header tag body (AVC/HEVC/AV1 configuration).
    pub video_seq: Option<Bytes>,
    /// Audio sequence header tag body (AudioSpecificConfig, OpusHead).
    pub audio_seq: Option<Bytes>,
    /// Whether the stream has had video (decides the FLV header flags and
    /// what a keyframe is).
    pub has_video: bool,
    /// Whether the stream has had audio.
    pub has_audio: bool,
}

impl StreamHead {
    /// The start of an HTTP-FLV body: file header, onMetaData, sequence
    /// headers, all at timestamp `ts_ms`.
    pub fn flv_prologue(&self, ts_ms: u32) -> Bytes {
        let mut out = BytesMut::with_capacity(512);
        spate_packager::flv::write_file_header(&mut out, self.has_audio, self.has_video);
        for (t, body) in [
            (TagType::Script, &self.metadata),
            (TagType::Video, &self.video_seq),
            (TagType::Audio, &self.audio_seq),
        ] {
            if let Some(b) = body {
                // Metadata at 0: ffmpeg takes a script tag with a non-zero
                // timestamp for a subtitle track.
                let ts = if t == TagType::Script { 0 } else { ts_ms };
                let _ = write_tag_header(&mut out, t, ts, b.len());
                out.put_slice(b);
                out.put_slice(&previous_tag_size(b.len()));
            }
        }
        out.freeze()
    }

    /// The same for an RTMP player on `stream_id` with `chunk_size`.
    pub fn rtmp_prologue(&self, ts_ms: u32, stream_id: u32, chunk_size: u32) -> Vec<Bytes> {
        let mut out = Vec::new();
        for (csid, type_id, body) in [
            (5, 18, &self.metadata),
            (MediaKind::Video.csid(), 9, &self.video_seq),
            (MediaKind::Audio.csid(), 8, &self.audio_seq),
        ] {
            if let Some(b) = body {
                let h = MessageHeader {
                    csid,
                    timestamp: if type_id == 18 { 0 } else { ts_ms },
                    type_id,
                    stream_id,
                };
                rtmp::encode_message(&h, b, chunk_size, &mut out);
            }
        }
        out
    }
}

/// What cores tell each other about live streams.
#[derive(Debug)]
pub enum LiveMsg {
    /// A stream exists now (or again), named `name`.
    Start {
        /// Stream id.
        id: StreamId,
        /// Full name (`live+alice`).
        name: Arc<str>,
        /// Window limits from its configuration.
        limits: WindowLimits,
        /// Skip limit for viewers, ms.
        skip_lag_ms: i64,
        /// Longest a core holds new frames before sending them to viewers.
        coalesce: Duration,
    },
    /// Metadata or sequence headers changed.
    Head {
        /// Stream id.
        id: StreamId,
        /// The new head.
        head: Arc<StreamHead>,
    },
    /// The next item.
    Item {
        /// Stream id.
        id: StreamId,
        /// The item.
        item: LiveItem<Arc<Packaged>>,
    },
    /// A new segment: the stream's segmented outputs as they are now.
    Segments {
        /// Stream id.
        id: StreamId,
        /// Playlists, MPD and segments.
        view: Arc<SegmentedView>,
    },
    /// The stream is gone (publisher left and the grace passed).
    End {
        /// Stream id.
        id: StreamId,
    },
}

/// A core's replica of one stream.
#[derive(Debug)]
pub struct LocalStream {
    /// Full name.
    pub name: Arc<str>,
    /// Current head.
    pub head: Arc<StreamHead>,
    /// The window.
    pub window: LiveWindow<Arc<Packaged>>,
    /// Viewers on this core: (slot, generation) of their connections.
    pub viewers: Vec<(u32, u32)>,
    /// Skip limit, ms.
    pub skip_lag_ms: i64,
    /// `[live] viewer_coalesce_ms`: viewers are pumped at most once per this.
    pub coalesce: Duration,
    /// When this core last pumped the stream's viewers.
    pub last_pump: Option<Instant>,
    /// HLS/DASH: playlists and segments (none before the first segment).
    pub segmented: Option<Arc<SegmentedView>>,
    /// Requests under `/hls/<stream>/` answered on this core.
    pub hls_requests: u64,
    /// Requests under `/cmaf/<stream>/` (HLS fMP4, DASH) on this core.
    pub cmaf_requests: u64,
}

/// A core's replicas, by id and by name.
#[derive(Debug, Default)]
pub struct LiveCore {
    /// Streams by id.
    pub streams: HashMap<StreamId, LocalStream>,
    /// Ids by name.
    pub by_name: HashMap<Arc<str>, StreamId>,
}

impl LiveCore {
    /// Apply a message. Returns the stream whose viewers should be woken
    /// (new item) or dropped (end), with what happened.
    pub fn apply(&mut self, msg: LiveMsg) -> Option<(StreamId, bool)> {
        match msg {
            LiveMsg::Start {
                id,
                name,
                limits,
                skip_lag_ms,
                coalesce,
            } => {
                if let Some(old) = self.by_name.insert(name.clone(), id)
                    && old != id
                {
                    self.streams.remove(&old);
                }
                self.streams.entry(id).or_insert_with(|| LocalStream {
                    name,
                    head: Arc::new(StreamHead::default()),
                    window: LiveWindow::new(limits),
                    viewers: Vec::new(),
                    skip_lag_ms,
                    coalesce,
                    last_pump: None,
                    segmented: None,
                    hls_requests: 0,
                    cmaf_requests: 0,
                });
                None
            }
            LiveMsg::Segments { id, view } => {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.segmented = Some(view);
                }
                None
            }
            LiveMsg::Head { id, head } => {
                if let Some(s) = self.streams.get_mut(&id) {
                    s.head = head;
                }
                None
            }
            LiveMsg::Item { id, item } => {
                let s = self.streams.get_mut(&id)?;
                s.window.push(item);
                Some((id, false))
            }
            LiveMsg::End { id } => {
                let s = self.streams.get(&id)?;
                if self.by_name.get(&s.name) == Some(&id) {
                    let name = s.name.clone();
                    self.by_name.remove(&name);
                }
                Some((id, true))
            }
        }
    }

    /// Forget an ended stream once its viewers were told.
    pub fn remove(&mut self, id: StreamId) -> Option<LocalStream> {
        self.streams.remove(&id)
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishRefusal {
    /// No `[[stream]]` covers the name and unknown names are not accepted.
    Unknown,
    /// Someone is publishing this name right now.
    Busy,
    /// The name is not a valid stream name.
    BadName,
}

/// Stream settings resolved for a name.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// Window limits.
    pub limits: WindowLimits,
    /// Reconnect grace, ms.
    pub grace_ms: u64,
    /// Viewer skip limit, ms.
    pub skip_lag_ms: i64,
    /// Longest new frames wait before they go to viewers.
    pub coalesce: Duration,
    /// HLS/DASH packaging.
    pub segmented: SegmentedSettings,
}

/// A publish claim on a name.
#[derive(Debug)]
pub struct Claim {
    /// Stream id (kept across reconnects within the grace).
    pub id: StreamId,
    /// Worker of the current (or last) publisher.
    pub owner: usize,
    /// Live, or waiting for its publisher until the instant.
    pub grace_until: Option<Instant>,
    /// Next item sequence number (so a reconnect continues the numbering).
    pub next_seq: u64,
    /// Last output timestamp (so a reconnect continues the timeline).
    pub last_ts_ms: i64,
    /// The head, so a reconnect on another core starts with it.
    pub head: Arc<StreamHead>,
    /// The segmented packaging, handed to the publisher that continues the
    /// stream (segment numbers, playlists and store carry on).
    pub packager: Option<Box<StreamPackager>>,
}

impl Claim {
    /// What the publisher that takes this claim gets: a copy of the state,
    /// and the packager moved out.
    fn take(&mut self) -> Claim {
        Claim {
            id: self.id,
            owner: self.owner,
            grace_until: self.grace_until,
            next_seq: self.next_seq,
            last_ts_ms: self.last_ts_ms,
            head: self.head.clone(),
            packager: self.packager.take(),
        }
    }
}

/// Where a stream got to when its publisher left: what a publisher that
/// continues it within the grace picks up.
#[derive(Debug)]
pub struct Resume {
    /// Next item sequence number.
    pub next_seq: u64,
    /// Last output timestamp, ms.
    pub last_ts_ms: i64,
    /// The stream head.
    pub head: Arc<StreamHead>,
    /// The segmented packaging.
    pub packager: Option<Box<StreamPackager>>,
}

/// Who publishes what, shared by all cores (touched at publish/unpublish
/// only).
#[derive(Debug)]
pub struct Registry {
    claims: Mutex<HashMap<String, Claim>>,
    next_id: std::sync::atomic::AtomicU64,
    /// What publishes are checked against; replaced on reload.
    rules: std::sync::RwLock<Arc<RegistryRules>>,
    /// Segments leave by a mode that puts references to the store's pages
    /// into socket buffers (`splice`, `sendfile`). `[http] file_send`
    /// changes only with a restart, so this is fixed at start.
    pages_referenced: bool,
}

/// The parts of the configuration the registry decides with.
#[derive(Debug)]
struct RegistryRules {
    live: LiveConfig,
    streams: Vec<crate::config::StreamConfig>,
    naming: RtmpNaming,
}

impl RegistryRules {
    fn of(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            live: config.live.clone(),
            streams: config.streams.clone(),
            naming: config.rtmp.stream_name,
        })
    }
}

impl Registry {
    /// From the configuration.
    pub fn new(config: &Config) -> Self {
        Self {
            claims: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            rules: std::sync::RwLock::new(RegistryRules::of(config)),
            pages_referenced: matches!(
                config.http.file_send,
                crate::config::FileSend::Splice | crate::config::FileSend::Sendfile
            ),
        }
    }

    /// Take a reloaded configuration: stream settings and naming apply to
    /// publishes from now on (streams already live keep theirs).
    pub fn reconfigure(&self, config: &Config) {
        *self.rules.write().expect("registry rules lock") = RegistryRules::of(config);
    }

    fn rules(&self) -> Arc<RegistryRules> {
        self.rules.read().expect("registry rules lock").clone()
    }

    /// The stream name an RTMP `app` + `key` map to.
    pub fn rtmp_name(&self, app: &str, key: &str) -> String {
        match self.rules().naming {
            RtmpNaming::Key => key.to_string(),
            RtmpNaming::AppKey => format!("{app}+{key}"),
        }
    }

    /// Settings for `name` (`base` or `base+wildcard`), or why it is not
    /// accepted.
    pub fn settings(&self, name: &str) -> Result<StreamSettings, PublishRefusal> {
        let (base, wild) = match name.split_once('+') {
            Some((b, w)) => (b, Some(w)),
            None => (name, None),
        };
        if !crate::config::valid_base_name(base)
            || wild.is_some_and(|w| {
                w.is_empty()
                    || w.len() > 100
                    || !w
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            })
        {
            return Err(PublishRefusal::BadName);
        }
        let rules = self.rules();
        let cfg = rules.streams.iter().find(|s| s.name == base);
        if cfg.is_none() && !rules.live.accept_unknown_streams {
            return Err(PublishRefusal::Unknown);
        }
        let buffer = cfg
            .and_then(|c| c.buffer_seconds)
            .unwrap_or(rules.live.buffer_seconds);
        let grace = cfg
            .and_then(|c| c.reconnect_grace)
            .unwrap_or(rules.live.reconnect_grace);
        let segment = cfg
            .and_then(|c| c.segment_duration)
            .unwrap_or(rules.live.segment_duration);
        Ok(StreamSettings {
            limits: WindowLimits {
                window_ms: (buffer * 1000.0) as i64,
                max_items: rules.live.max_buffer_frames,
            },
            grace_ms: (grace * 1000.0) as u64,
            skip_lag_ms: (rules.live.viewer_skip_lag * 1000.0) as i64,
            coalesce: Duration::from_millis(u64::from(rules.live.viewer_coalesce_ms)),
            segmented: SegmentedSettings {
                target_us: (segment * 1_000_000.0) as i64,
                window: rules.live.playlist_segments,
                grace_ms: (rules.live.segment_grace * 1000.0) as i64,
                arena_bytes: rules.live.segment_arena_mib << 20,
                max_arenas: rules.live.segment_max_arenas,
                punch_on_reuse: self.pages_referenced,
            },
        })
    }

    /// Claim `name` for a publisher on worker `owner`. A claim in its grace
    /// period is taken over (same id, numbering and timeline continue).
    pub fn claim(&self, name: &str, owner: usize, now: Instant) -> Result<Claim, PublishRefusal> {
        let mut claims = self.claims.lock().expect("registry lock");
        match claims.get_mut(name) {
            Some(c) if c.grace_until.is_some_and(|t| now < t) => {
                c.grace_until = None;
                c.owner = owner;
                Ok(c.take())
            }
            Some(c) if c.grace_until.is_none() => Err(PublishRefusal::Busy),
            _ => {
                let id = self
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut c = Claim {
                    id,
                    owner,
                    grace_until: None,
                    next_seq: 0,
                    last_ts_ms: 0,
                    head: Arc::new(StreamHead::default()),
                    packager: None,
                };
                let out = c.take();
                claims.insert(name.to_string(), c);
                Ok(out)
            }
        }
    }

    /// The publisher of `name` (stream `id`) left: keep the claim for the
    /// grace with where the stream got to.
    pub fn release(&self, name: &str, id: StreamId, until: Instant, resume: Resume) {
        let mut claims = self.claims.lock().expect("registry lock");
        if let Some(c) = claims.get_mut(name)
            && c.id == id
        {
            c.grace_until = Some(until);
            c.next_seq = resume.next_seq;
            c.last_ts_ms = resume.last_ts_ms;
            c.head = resume.head;
            c.packager = resume.packager;
        }
    }

    /// If `name`'s claim for `id` is still waiting past its grace, remove it
    /// and say so (the caller ends the stream everywhere).
    pub fn expire(&self, name: &str, id: StreamId, now: Instant) -> bool {
        let mut claims = self.claims.lock().expect("registry lock");
        match claims.get(name) {
            Some(c) if c.id == id && c.grace_until.is_some_and(|t| now >= t) => {
                claims.remove(name);
                true
            }
            _ => false,
        }
    }
}

/// Keeps a stream's output timestamps monotonic across publisher timestamp
/// jumps, backward steps and reconnects.
#[derive(Debug, Clone)]
pub struct Rebaser {
    offset: Option<i64>,
    last_out: i64,
    /// Last output per lane (video, audio) for `map_lane`; after a
    /// reconnect both start at the old timeline's end.
    lane_last: [Option<i64>; 2],
    /// Times a discontinuity was smoothed over.
    pub rebases: u64,
}

/// A backward step larger than this (ms) is a discontinuity; smaller ones
/// are normal audio/video interleaving.
const MAX_BACKWARD_MS: i64 = 500;
/// A forward jump larger than this (ms) is a discontinuity.
const MAX_FORWARD_MS: i64 = 5000;
/// Gap put between the last output timestamp and the first after a
/// discontinuity (one frame at 25 fps).
const STEP_MS: i64 = 40;

impl Rebaser {
    /// Continue a timeline that reached `last_out` (0 for a new stream).
    pub fn continuing(last_out: i64, fresh: bool) -> Self {
        Self {
            offset: if fresh { Some(0) } else { None },
            last_out,
            lane_last: if fresh {
                [None; 2]
            } else {
                [Some(last_out); 2]
            },
            rebases: 0,
        }
    }

    /// [`map`](Self::map), then kept strictly above the last output of the
    /// same lane (0 = video, 1 = audio). The one offset is fixed by the
    /// first frame after a reconnect or a jump; a track whose input lags
    /// that frame's (sources interleave audio and video hundreds of ms
    /// apart) would otherwise map at or below its own last output, and a
    /// player refuses a decode timestamp that does not increase. Such
    /// frames are put 1 ms apart until the track's input catches up.
    pub fn map_lane(&mut self, input_ms: i64, lane: usize) -> i64 {
        let mut out = self.map(input_ms);
        let last = &mut self.lane_last[lane.min(1)];
        if let Some(l) = *last
            && out <= l
        {
            out = l + 1;
        }
        *last = Some(out);
        self.last_out = self.last_out.max(out);
        out
    }

    /// The output timestamp for an input timestamp, on the stream's one
    /// offset (see [`map_lane`](Self::map_lane), which every caller uses).
    fn map(&mut self, input_ms: i64) -> i64 {
        let offset = match self.offset {
            Some(o) => o,
            None => {
                let o = self.last_out + STEP_MS - input_ms;
                self.offset = Some(o);
                o
            }
        };
        let mut out = input_ms + offset;
        if out < self.last_out - MAX_BACKWARD_MS || out > self.last_out + MAX_FORWARD_MS {
            self.rebases += 1;
            let o = self.last_out + STEP_MS - input_ms;
            self.offset = Some(o);
            out = input_ms + o;
        }
        let out = out.max(0);
        self.last_out = self.last_out.max(out);
        out
    }

    /// Highest output timestamp so far.
    pub fn last_out(&self) -> i64 {
        self.last_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebaser_keeps_output_monotonic_across_jumps() {
        let mut r = Rebaser::continuing(0, true);
        assert_eq!(r.map(0), 0);
        assert_eq!(r.map(4_000), 4_000);
        // Small interleave step back: kept as is.
        assert_eq!(r.map(3_980), 3_980);
        // Encoder restarts its clock at 0: continue after the last output.
        assert_eq!(r.map(5), 4_040);
        assert_eq!(r.map(38), 4_073);
        // Jump forward by an hour: smoothed too.
        assert_eq!(r.map(3_600_000), 4_113);
        assert_eq!(r.map(3_600_033), 4_146);
        assert_eq!(r.rebases, 2);
    }

    #[test]
    fn reconnect_keeps_every_track_increasing() {
        // The old timeline ended at 10,000 ms (video). The new source's
        // first frame is audio at input 5,000; its video lags by 300 ms.
        let mut r = Rebaser::continuing(10_000, false);
        assert_eq!(r.map_lane(5_000, 1), 10_040);
        let v1 = r.map_lane(4_700, 0);
        assert!(v1 > 10_000, "video went back to {v1}");
        let v2 = r.map_lane(4_733, 0);
        assert!(v2 > v1);
        // Once its input catches up, the offset applies again.
        assert_eq!(r.map_lane(5_100, 0), 10_140);
        assert_eq!(r.map_lane(5_021, 1), 10_061);
    }

    #[test]
    fn reconnect_continues_the_timeline() {
        let mut r = Rebaser::continuing(10_000, false);
        assert_eq!(r.map(123_456), 10_040);
        assert_eq!(r.map(123_489), 10_073);
    }

    fn registry(accept_unknown: bool) -> Registry {
        let mut c = Config::embedded();
        c.live.accept_unknown_streams = accept_unknown;
        Registry::new(&c)
    }

    #[test]
    fn wildcards_use_the_base_and_unknown_names_are_refused() {
        let r = registry(false);
        assert!(r.settings("live").is_ok());
        assert!(r.settings("live+alice").is_ok());
        assert_eq!(r.settings("other").unwrap_err(), PublishRefusal::Unknown);
        assert_eq!(r.settings("live+").unwrap_err(), PublishRefusal::BadName);
        assert_eq!(r.settings("live+a/b").unwrap_err(), PublishRefusal::BadName);
        assert_eq!(r.settings("../x").unwrap_err(), PublishRefusal::BadName);
        assert!(registry(true).settings("other").is_ok());
    }

    #[test]
    fn one_publisher_per_name_and_grace_takeover() {
        let r = registry(false);
        let now = Instant::now();
        let a = r.claim("live+a", 0, now).unwrap();
        assert_eq!(r.claim("live+a", 1, now).unwrap_err(), PublishRefusal::Busy);
        let b = r.claim("live+b", 1, now).unwrap();
        assert_ne!(a.id, b.id);
        let until = now + std::time::Duration::from_secs(5);
        let resume = |next_seq, last_ts_ms| Resume {
            next_seq,
            last_ts_ms,
            head: Arc::new(StreamHead::default()),
            packager: None,
        };
        r.release("live+a", a.id, until, resume(42, 9000));
        let again = r.claim("live+a", 1, now).unwrap();
        assert_eq!(
            (again.id, again.next_seq, again.last_ts_ms, again.owner),
            (a.id, 42, 9000, 1)
        );
        r.release("live+a", a.id, until, resume(50, 9500));
        assert!(!r.expire("live+a", a.id, now));
        assert!(r.expire("live+a", a.id, until));
        let fresh = r.claim("live+a", 0, until).unwrap();
        assert_ne!(fresh.id, a.id);
    }

    #[test]
    fn packaged_item_has_flv_header_and_rtmp_chunks() {
        let body = Bytes::from(vec![0x17u8; 10_000]);
        let p = Packaged::new(TagKind::Video, 0x0102_0304, body.clone(), 4096);
        assert_eq!(p.flv_head[0], 9);
        assert_eq!(&p.flv_head[1..4], &[0, 0x27, 0x10]);
        assert_eq!(&p.flv_head[4..8], &[0x02, 0x03, 0x04, 0x01]);
        assert_eq!(u32::from_be_bytes(p.flv_trailer), 10_011);
        let payload: usize = p.rtmp.iter().skip(1).step_by(2).map(|b| b.len()).sum();
        assert_eq!(payload, 10_000);
    }
}
