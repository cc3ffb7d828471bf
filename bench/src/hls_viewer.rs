//! One viewer thread of the HLS bench: one io_uring (the engine's
//! [`Ring`]), each viewer one HTTP/1.1 keep-alive connection as a direct
//! descriptor (socket set-up and teardown shared with `client.rs`),
//! multishot receives into a provided [`BufRing`].
//!
//! A viewer behaves like a player (hls.js defaults): at its join time it
//! GETs the media playlist; the first time, it starts at the segment
//! holding the point `live_edge` target durations before the end of the
//! list (see [`start_index`]); then it fetches every segment from there on
//! exactly once, in order, one request at a time on its connection. It
//! re-polls the playlist one target duration after the previous poll was
//! sent, or half a target duration when that poll brought nothing new
//! (RFC 8216 §6.3.4). Viewers join at the ramp rate (or spread over
//! `spread` seconds), so their polls do not line up.
//!
//! Measured per segment: fetch latency (request handed to the ring → last
//! body byte) and the playback deadline ([`Playback`]); per playlist poll:
//! latency. A lost connection (reset, close, timeout) is counted and
//! replaced; the viewer keeps its place and retries the request it had in
//! flight.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{opcode, types};
use spate_engine::runtime::bufring::BufRing;
use spate_engine::runtime::ring::{Ring, Token, buffer_id, more};
use spate_engine::runtime::slab::Slab;

use crate::client::{close_fixed, connect_fixed, sockaddr};
use crate::flvparse::TagSeen;
use crate::fmp4scan::MoofGatherer;
use crate::hls_playback::Playback;
use crate::hls_playlist::{self, ByteRange, MediaPlaylist, Playlist, start_index};
use crate::httpbody::{Framing, response_framing};
use crate::live_publish::SendTimes;
use crate::tsparse::TsPackets;

const K_CONNECT: u8 = 1;
const K_CONNECT_TIMEOUT: u8 = 2;
const K_SEND: u8 = 3;
const K_RECV: u8 = 4;
const K_SHUTDOWN: u8 = 5;
const K_CLOSE: u8 = 6;
const K_TICK: u8 = 7;
/// A receive that discards body bytes without copying them (`MSG_TRUNC`).
const K_DISCARD: u8 = 8;

/// Threads keep running.
pub const PHASE_RUN: u8 = 0;
/// Threads leave their loops.
pub const PHASE_STOP: u8 = 1;

/// Largest playlist body kept.
const MAX_PLAYLIST: usize = 4 << 20;

/// What one thread is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub index: usize,
    pub dest: SocketAddrV4,
    /// `Host` header value.
    pub host: Arc<str>,
    /// Request path of the media playlist.
    pub playlist_path: Arc<str>,
    pub sources: Arc<Vec<Ipv4Addr>>,
    /// Most viewers this thread will ever hold (table size).
    pub max_viewers: usize,
    pub connect_concurrency: usize,
    /// New viewers per second on this thread (0: all at once, first polls
    /// spread over `spread`).
    pub ramp_per_sec: f64,
    pub spread: Duration,
    /// Join this many target durations before the end of the playlist.
    pub live_edge: f64,
    /// A request with no complete response after this long is a timeout.
    pub timeout: Duration,
    pub recv_bufs: u16,
    pub recv_buf_size: u32,
    pub pin_cpu: Option<usize>,
    /// Common clock origin of the playback model.
    pub epoch: Instant,
    /// The playlist is a DASH manifest (`dash_mpd.rs`): its first video
    /// Representation's segments are played.
    pub dash: bool,
    /// Fetch the audio track's segments too, as a player does: DASH, the
    /// first audio Representation of the same MPD; HLS, the media
    /// playlist at `audio_playlist_path` (the variant's `EXT-X-MEDIA`
    /// audio rendition), polled like the video one. Stalls are judged on
    /// video only.
    pub audio: bool,
    pub audio_playlist_path: Option<Arc<str>>,
    /// The publisher's send records: TS segments are scanned for their
    /// video frames' DTS and each frame's end-to-end latency (publisher send
    /// → segment complete at the viewer) is recorded.
    pub times: Option<Arc<SendTimes>>,
    /// With `times`: the video track's timescale (the MPD's, or the HLS
    /// init segment's `mdhd`); fMP4 segments'
    /// `moof` give each frame's decode time (`fmp4scan.rs`) for the same
    /// end-to-end latency.
    pub fmp4_timescale: Option<u64>,
    /// Viewers leaving per second, each replaced at once by a new viewer
    /// joining (same slot, fresh state: a new connection, a new join at the
    /// live edge, a new playhead).
    pub churn_per_sec: f64,
    /// With `times`: one viewer in this many scans its segments (the
    /// others only count bytes); 0 = none.
    pub e2e_every: usize,
    /// Subtracted from segment frames' timestamps (ms) before they are
    /// matched to the publisher's: servers that add a constant to PTS/DTS
    /// (nginx-rtmp's HLS adds 700 ms) would otherwise read that much low.
    pub ts_offset_ms: u32,
}

/// State the control thread drives and watches.
#[derive(Debug)]
pub struct Shared {
    pub phase: AtomicU8,
    /// Count latencies, bytes and stalls.
    pub measuring: AtomicBool,
    /// Bumped by the control thread to ask every thread for its stats
    /// (which are then reset).
    pub collect: AtomicU64,
    /// Viewers each thread should hold.
    pub targets: Vec<AtomicUsize>,
    /// Connections up now.
    pub connected: AtomicUsize,
    /// Viewers whose playhead started (first segment arrived).
    pub playing: AtomicUsize,
}

impl Shared {
    pub fn new(threads: usize) -> Self {
        Self {
            phase: AtomicU8::new(PHASE_RUN),
            measuring: AtomicBool::new(false),
            collect: AtomicU64::new(0),
            targets: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            connected: AtomicUsize::new(0),
            playing: AtomicUsize::new(0),
        }
    }
}

/// Errors by kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct HlsErrors {
    /// Socket, bind or connect failed or timed out.
    pub connect: u64,
    /// A request with no complete response within the timeout.
    pub timeout: u64,
    /// The server closed a connection with a request outstanding.
    pub closed: u64,
    /// Receive/send errors (ECONNRESET, EPIPE, …).
    pub reset: u64,
    /// 404 for a segment / for the playlist.
    pub not_found_segment: u64,
    pub not_found_playlist: u64,
    /// Other non-2xx statuses.
    pub bad_status: u64,
    /// Bad HTTP, bad playlist, a segment not starting with a TS sync byte.
    pub parse: u64,
    /// Segments that left the playlist before the viewer could fetch them.
    pub skipped: u64,
}

impl HlsErrors {
    /// Sum of every kind.
    pub fn total(&self) -> u64 {
        self.connect
            + self.timeout
            + self.closed
            + self.reset
            + self.not_found_segment
            + self.not_found_playlist
            + self.bad_status
            + self.parse
            + self.skipped
    }

    pub fn add(&mut self, o: &HlsErrors) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.closed += o.closed;
        self.reset += o.reset;
        self.not_found_segment += o.not_found_segment;
        self.not_found_playlist += o.not_found_playlist;
        self.bad_status += o.bad_status;
        self.parse += o.parse;
        self.skipped += o.skipped;
    }
}

/// What a thread measured since the last collection.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Segment fetch latency, µs (request handed to the ring → last byte).
    pub segment_latency: Histogram<u64>,
    /// Playlist fetch latency, µs.
    pub playlist_latency: Histogram<u64>,
    /// Playback margin of on-time segments, µs: how long before its
    /// deadline each segment (but a viewer's first) arrived.
    pub margin: Histogram<u64>,
    /// Start-up time per viewer, µs: its join time → first segment complete.
    pub startup: Histogram<u64>,
    /// End-to-end latency per video frame of TS or fMP4 segments, µs:
    /// publisher send → the segment holding it complete (with `Plan::times`).
    pub e2e_latency: Histogram<u64>,
    /// Video frames of scanned segments whose timestamp matched a send
    /// record / did not.
    pub e2e_matched: u64,
    pub e2e_unmatched: u64,
    /// Unmatched frames whose timestamp was newer than any frame the
    /// publisher had sent when their segment arrived: the server offsets
    /// its timestamps (see `Plan::ts_offset_ms`).
    pub e2e_future: u64,
    /// Segments fetched (200).
    pub segments: u64,
    /// Init segments fetched (200): one per player and track of an fMP4
    /// playlist.
    pub inits: u64,
    /// Audio segments fetched (200; `Plan::audio`).
    pub audio_segments: u64,
    /// Playlist polls answered (any status) and those that listed nothing new.
    pub playlists: u64,
    pub playlists_unchanged: u64,
    /// Bytes received (heads included) and segment body bytes.
    pub bytes: u64,
    pub segment_bytes: u64,
    /// Ranged requests (DASH `mediaRange`, `Initialization@range`) answered
    /// 200 with the whole resource rather than 206: fine, but the bytes
    /// are the whole file's.
    pub range_ignored: u64,
    /// Late segments + viewers starved at the end of the measurement.
    pub stalls: u64,
    /// Summed rebuffering of the late segments, µs.
    pub stalled_us: u64,
    /// Of `stalls`: viewers whose playhead had run out when measuring ended.
    pub starved_at_end: u64,
    /// Viewers with ≥ 1 stall in the period.
    pub viewers_stalled: u64,
    /// Viewers that fetched ≥ 1 segment in the period.
    pub viewers_active: u64,
    /// Errors (whole period).
    pub errors: HlsErrors,
    /// Connections replaced (after an error or a close by the server).
    pub reconnects: u64,
    /// The server closed an idle keep-alive connection (not an error).
    pub idle_closes: u64,
    /// Multishot receives re-armed for lack of provided buffers.
    pub nobufs: u64,
    /// Viewers that left on purpose (churn), each replaced.
    pub churned: u64,
    pub first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

impl Stats {
    pub fn new() -> Self {
        Self {
            segment_latency: histogram(),
            playlist_latency: histogram(),
            margin: histogram(),
            startup: histogram(),
            e2e_latency: histogram(),
            e2e_matched: 0,
            e2e_unmatched: 0,
            e2e_future: 0,
            segments: 0,
            inits: 0,
            audio_segments: 0,
            playlists: 0,
            playlists_unchanged: 0,
            bytes: 0,
            segment_bytes: 0,
            range_ignored: 0,
            stalls: 0,
            stalled_us: 0,
            starved_at_end: 0,
            viewers_stalled: 0,
            viewers_active: 0,
            errors: HlsErrors::default(),
            reconnects: 0,
            idle_closes: 0,
            nobufs: 0,
            churned: 0,
            first_error: None,
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        self.segment_latency
            .add(&o.segment_latency)
            .expect("same bounds");
        self.playlist_latency
            .add(&o.playlist_latency)
            .expect("same bounds");
        self.margin.add(&o.margin).expect("same bounds");
        self.startup.add(&o.startup).expect("same bounds");
        self.e2e_latency.add(&o.e2e_latency).expect("same bounds");
        self.e2e_matched += o.e2e_matched;
        self.e2e_unmatched += o.e2e_unmatched;
        self.e2e_future += o.e2e_future;
        self.segments += o.segments;
        self.inits += o.inits;
        self.audio_segments += o.audio_segments;
        self.playlists += o.playlists;
        self.playlists_unchanged += o.playlists_unchanged;
        self.bytes += o.bytes;
        self.segment_bytes += o.segment_bytes;
        self.range_ignored += o.range_ignored;
        self.stalls += o.stalls;
        self.stalled_us += o.stalled_us;
        self.starved_at_end += o.starved_at_end;
        self.viewers_stalled += o.viewers_stalled;
        self.viewers_active += o.viewers_active;
        self.errors.add(&o.errors);
        self.reconnects += o.reconnects;
        self.idle_closes += o.idle_closes;
        self.nobufs += o.nobufs;
        self.churned += o.churned;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
    }

    fn error(&mut self, e: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(e());
        }
    }

    /// Count what a playlist update said was wrong (`what`: the track, for
    /// the message).
    fn note_followed(&mut self, f: &Followed, what: &str) {
        let sp = if what.is_empty() { "" } else { " " };
        if let Some((q, to)) = f.skipped {
            self.errors.skipped += to - q;
            self.error(|| {
                format!("{what}{sp}segments {q}..{to} left the playlist before they were fetched")
            });
        }
        if let Some(u) = &f.bad_uri {
            self.errors.parse += 1;
            self.error(|| format!("{what}{sp}segment URI {u:?}: not http"));
        }
        if let Some(u) = &f.bad_init {
            self.errors.parse += 1;
            self.error(|| format!("{what}{sp}init segment URI {u:?}: not http"));
        }
    }
}

/// A segment to fetch.
#[derive(Debug, Clone)]
struct QSeg {
    seq: u64,
    duration_us: u64,
    path: Box<str>,
    /// `Range: bytes=…` (DASH `mediaRange`).
    range: Option<ByteRange>,
}

#[derive(Debug)]
enum Req {
    Playlist,
    /// The HLS audio rendition's media playlist.
    AudioPlaylist,
    /// An initialization segment (fMP4), once per player and track, before
    /// the track's first media segment.
    Init(Kind, Box<str>, Option<ByteRange>),
    Segment(QSeg),
    AudioSegment(QSeg),
}

/// Which of a player's tracks a timer or a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Video,
    Audio,
}

/// Where a player is in one track's playlist.
#[derive(Debug, Default)]
struct Track {
    /// Next sequence number not yet queued (`None` before the first playlist).
    queued_to: Option<u64>,
    queue: VecDeque<QSeg>,
    /// The init segment to fetch next (from the first playlist that names
    /// one); `init_asked`: it was queued once (a player fetches it once).
    init: Option<(Box<str>, Option<ByteRange>)>,
    init_asked: bool,
}

/// What one playlist update gave a track.
#[derive(Debug, Default, PartialEq, Eq)]
struct Followed {
    /// Segments queued.
    new: u64,
    /// Segments that left the playlist before they were queued: `(from, to)`.
    skipped: Option<(u64, u64)>,
    /// A segment URI / the init URI that is not http.
    bad_uri: Option<String>,
    bad_init: Option<String>,
}

impl Track {
    /// Queue `p`'s segments past the ones already queued (joining `live_edge`
    /// target durations before its end), and its init segment once.
    fn follow(&mut self, p: &MediaPlaylist, base: &str, live_edge: f64) -> Followed {
        let mut out = Followed::default();
        if !self.init_asked
            && let Some(map) = &p.map
        {
            self.init_asked = true;
            match hls_playlist::resolve(base, map) {
                Some(path) => self.init = Some((path.into_boxed_str(), p.map_range)),
                None => out.bad_init = Some(map.clone()),
            }
        }
        if self.queued_to.is_none() {
            self.queued_to = start_index(p, live_edge).map(|i| p.segments[i].seq);
        }
        let Some(mut q) = self.queued_to else {
            return out;
        };
        if q < p.media_sequence {
            // Fell out of the window before we asked for them.
            out.skipped = Some((q, p.media_sequence));
            q = p.media_sequence;
        }
        let from = q;
        for s in p.segments.iter().filter(|s| s.seq >= from) {
            match hls_playlist::resolve(base, &s.uri) {
                Some(path) => self.queue.push_back(QSeg {
                    seq: s.seq,
                    duration_us: s.duration_us,
                    path: path.into_boxed_str(),
                    range: s.range,
                }),
                None => out.bad_uri = Some(s.uri.clone()),
            }
            q = s.seq + 1;
            out.new += 1;
        }
        self.queued_to = Some(q);
        out
    }

    fn has_work(&self) -> bool {
        self.init.is_some() || !self.queue.is_empty()
    }
}

/// A player's audio track (`Plan::audio`).
#[derive(Debug, Default)]
struct AudioTrack {
    track: Track,
    /// HLS: the audio playlist's target duration, µs, and its poll timer.
    target_us: u64,
    poll_due: bool,
    poll_at: Option<Instant>,
}

/// A request's byte range.
fn req_range(req: &Req) -> Option<ByteRange> {
    match req {
        Req::Init(_, _, r) => *r,
        Req::Segment(s) | Req::AudioSegment(s) => s.range,
        Req::Playlist | Req::AudioPlaylist => None,
    }
}

/// A GET of `path` into `out`; with `range`, `Range: bytes=first-last`.
fn write_request(out: &mut Vec<u8>, path: &str, host: &str, range: Option<ByteRange>) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: spate-bench-hls\r\nAccept: */*\r\n");
    if let Some((a, b)) = range {
        // Into the connection's buffer: no String per request.
        let _ = std::io::Write::write_fmt(out, format_args!("Range: bytes={a}-{b}\r\n"));
    }
    out.extend_from_slice(b"\r\n");
}

/// A player's next request: a due playlist poll (video, then audio), then
/// init segments, then the older of the two tracks' next segments (video
/// on a tie).
fn next_request(v: &mut Viewer) -> Option<Req> {
    if v.poll_due {
        v.poll_due = false;
        return Some(Req::Playlist);
    }
    if let Some(a) = &mut v.audio
        && a.poll_due
    {
        a.poll_due = false;
        return Some(Req::AudioPlaylist);
    }
    if let Some((p, r)) = v.video.init.take() {
        return Some(Req::Init(Kind::Video, p, r));
    }
    if let Some(a) = &mut v.audio {
        if let Some((p, r)) = a.track.init.take() {
            return Some(Req::Init(Kind::Audio, p, r));
        }
        let audio_first = match (a.track.queue.front(), v.video.queue.front()) {
            (Some(x), Some(y)) => x.seq < y.seq,
            (Some(_), None) => true,
            _ => false,
        };
        if audio_first {
            return a.track.queue.pop_front().map(Req::AudioSegment);
        }
    }
    v.video.queue.pop_front().map(Req::Segment)
}

#[derive(Debug)]
struct InFlight {
    req: Req,
    sent_at: Instant,
}

/// One player; outlives its connections.
#[derive(Debug)]
struct Viewer {
    /// When it joins, µs since the plan's epoch.
    join_us: u64,
    conn: Option<(u32, u32)>,
    /// In the (re)connect queue.
    waiting: bool,
    /// Target duration of the last playlist, µs (0: none yet).
    target_us: u64,
    /// DASH: added to segment frames' decode times (ms) to put them on the
    /// MPD timeline (`Period@start − presentationTimeOffset`, from the last
    /// MPD read); 0 for HLS.
    e2e_offset_ms: i64,
    video: Track,
    /// With `Plan::audio` (and an audio track to follow).
    audio: Option<Box<AudioTrack>>,
    poll_due: bool,
    poll_at: Option<Instant>,
    in_flight: Option<InFlight>,
    playback: Playback,
    stalled_in_period: bool,
    active_in_period: bool,
    /// A starvation already counted as a stall (its late segment is not
    /// counted again).
    starve_counted: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Open,
    Closing,
}

#[derive(Debug)]
struct Conn {
    state: State,
    vid: u32,
    /// Partial response head (only while a head spans receives).
    head: Vec<u8>,
    /// How the body ends (`Content-Length` bytes left, or chunked); `None`
    /// while reading a head.
    framing: Option<Framing>,
    status: u16,
    /// Playlist body being collected.
    body: Vec<u8>,
    keep_body: bool,
    /// The body must start with 0x47 (a `.ts` segment, status 200).
    check_ts: bool,
    /// Scanning this TS segment's frames (end-to-end latency).
    ts_frames: Option<TsPackets>,
    /// Gathering this fMP4 segment's `moof` (end-to-end latency).
    moof: Option<MoofGatherer>,
    /// This response is a segment nobody scans: once its head is read, the
    /// rest of a `Content-Length` body is discarded by the kernel
    /// (`MSG_TRUNC`), counted but never copied to user space.
    discard: bool,
    /// Video frame timestamps (ms) of the segment being received.
    frame_ts: Vec<u32>,
    /// Bytes of the current response received.
    got_bytes: bool,
    /// The request (stays put until its send completes).
    out: Vec<u8>,
    sent: usize,
    send_in_flight: bool,
    /// The request asked for a byte range: a 206 is its success, a 200 the
    /// whole resource (counted in `Stats::range_ignored`).
    ranged: bool,
}

impl Conn {
    fn new(vid: u32) -> Self {
        Self {
            state: State::Connecting,
            vid,
            head: Vec::new(),
            framing: None,
            status: 0,
            body: Vec::new(),
            keep_body: false,
            check_ts: false,
            ts_frames: None,
            moof: None,
            discard: false,
            frame_ts: Vec::new(),
            got_bytes: false,
            out: Vec::new(),
            sent: 0,
            send_in_flight: false,
            ranged: false,
        }
    }
}

/// A response that completed.
#[derive(Debug)]
struct Done {
    status: u16,
    body: Vec<u8>,
}

/// The ring and its provided buffers. Field order matters: the ring (which
/// unregisters the buffer group) drops before the buffers' memory.
struct Io {
    ring: Ring,
    bufs: BufRing,
}

struct HlsThread {
    io: Io,
    plan: Plan,
    shared: Arc<Shared>,
    tx: Sender<(usize, Stats)>,
    conns: Slab<Conn>,
    viewers: Vec<Viewer>,
    timers: BinaryHeap<Reverse<(Instant, u32, Kind)>>,
    reconnect: VecDeque<u32>,
    dest: libc::sockaddr_in,
    connect_timeout: types::Timespec,
    tick: types::Timespec,
    connecting: usize,
    next_source: usize,
    retry_after: Option<Instant>,
    out: Stats,
    measuring: bool,
    measured_in_period: bool,
    collect_seen: u64,
    ramp_tokens: f64,
    ramp_last: Instant,
    /// When the current batch of new viewers started joining (spread mode).
    batch_start: Instant,
    batch_base: usize,
    churn_tokens: f64,
    churn_last: Instant,
    churn_cursor: usize,
}

/// Run one viewer thread until the phase becomes STOP.
pub fn run(plan: Plan, shared: Arc<Shared>, tx: Sender<(usize, Stats)>) -> io::Result<()> {
    if let Some(cpu) = plan.pin_cpu {
        crate::client::pin_to(cpu)?;
    }
    let ring = Ring::new(4096, plan.max_viewers.max(1) as u32)?;
    let bufs = BufRing::new(&ring, 0, plan.recv_bufs, plan.recv_buf_size)?;
    let mut t = HlsThread {
        io: Io { ring, bufs },
        conns: Slab::with_capacity(plan.max_viewers),
        viewers: Vec::with_capacity(plan.max_viewers),
        timers: BinaryHeap::new(),
        reconnect: VecDeque::new(),
        dest: sockaddr(plan.dest),
        connect_timeout: types::Timespec::new().sec(10),
        tick: types::Timespec::new().nsec(10_000_000),
        connecting: 0,
        next_source: plan.index,
        retry_after: None,
        out: Stats::new(),
        measuring: false,
        measured_in_period: false,
        collect_seen: 0,
        ramp_tokens: 0.0,
        ramp_last: Instant::now(),
        batch_start: Instant::now(),
        batch_base: 0,
        churn_tokens: 0.0,
        churn_last: Instant::now(),
        churn_cursor: 0,
        plan,
        shared,
        tx,
    };
    t.run()
}

/// A deterministic spread of viewer `k` over [0, 1).
fn unit_hash(k: u64) -> f64 {
    let mut x = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl HlsThread {
    fn now_us(&self) -> u64 {
        self.plan.epoch.elapsed().as_micros() as u64
    }

    fn run(&mut self) -> io::Result<()> {
        self.push_tick();
        let mut cqes = Vec::with_capacity(4096);
        let mut last_timeout_check = Instant::now();
        loop {
            if self.shared.phase.load(Ordering::Relaxed) == PHASE_STOP {
                break;
            }
            self.measuring = self.shared.measuring.load(Ordering::Relaxed);
            if self.measuring {
                self.measured_in_period = true;
            }
            let c = self.shared.collect.load(Ordering::Acquire);
            if c != self.collect_seen {
                self.collect_seen = c;
                self.finish_period();
                let s = std::mem::replace(&mut self.out, Stats::new());
                let _ = self.tx.send((self.plan.index, s));
            }
            self.add_viewers();
            self.churn();
            self.open_connections();
            self.fire_timers();
            self.io.ring.submit_and_wait(1)?;
            self.io.ring.drain_completions(&mut cqes);
            for &(ud, res, flags) in &cqes {
                self.complete(Token(ud), res, flags);
            }
            if last_timeout_check.elapsed() >= Duration::from_millis(250) {
                last_timeout_check = Instant::now();
                self.check_timeouts();
            }
        }
        Ok(())
    }

    fn push_tick(&mut self) {
        let e = opcode::Timeout::new(&self.tick)
            .build()
            .user_data(Token::new(K_TICK, 0, 0).0);
        // SAFETY: `self.tick` lives as long as the ring (same struct).
        unsafe { self.io.ring.push(&e) };
    }

    /// End of a collection period: count starved viewers (if the period was
    /// measured), distinct stalled / active viewers, and reset the flags.
    fn finish_period(&mut self) {
        let now_us = self.now_us();
        let measured = self.measured_in_period;
        self.measured_in_period = false;
        for v in &mut self.viewers {
            if measured {
                if !v.starve_counted && v.playback.starved(now_us) {
                    v.starve_counted = true;
                    v.stalled_in_period = true;
                    self.out.stalls += 1;
                    self.out.starved_at_end += 1;
                }
                self.out.viewers_stalled += u64::from(v.stalled_in_period);
                self.out.viewers_active += u64::from(v.active_in_period);
            }
            v.stalled_in_period = false;
            v.active_in_period = false;
        }
    }

    /// Create viewers up to this thread's target, at the ramp rate.
    fn add_viewers(&mut self) {
        let target = self.shared.targets[self.plan.index]
            .load(Ordering::Relaxed)
            .min(self.plan.max_viewers);
        if self.viewers.len() >= target {
            self.ramp_last = Instant::now();
            self.batch_start = Instant::now();
            self.batch_base = self.viewers.len();
            return;
        }
        let now = Instant::now();
        if self.plan.ramp_per_sec > 0.0 {
            let dt = now.duration_since(self.ramp_last).as_secs_f64();
            self.ramp_last = now;
            self.ramp_tokens = (self.ramp_tokens + dt * self.plan.ramp_per_sec)
                .min((self.plan.ramp_per_sec / 10.0).max(1.0));
        }
        while self.viewers.len() < target {
            let join_at = if self.plan.ramp_per_sec > 0.0 {
                if self.ramp_tokens < 1.0 {
                    return;
                }
                self.ramp_tokens -= 1.0;
                now
            } else {
                let k = (self.viewers.len() - self.batch_base) as u64;
                let key = (k << 8) | self.plan.index as u64;
                self.batch_start + self.plan.spread.mul_f64(unit_hash(key))
            };
            let vid = self.viewers.len() as u32;
            let v = self.new_viewer(join_at);
            self.viewers.push(v);
            self.reconnect.push_back(vid);
            self.schedule_poll(vid, join_at);
        }
    }

    /// A viewer that joins at `join_at` (waiting for its connection).
    fn new_viewer(&self, join_at: Instant) -> Viewer {
        Viewer {
            join_us: join_at
                .saturating_duration_since(self.plan.epoch)
                .as_micros() as u64,
            conn: None,
            waiting: true,
            target_us: 0,
            e2e_offset_ms: 0,
            video: Track::default(),
            audio: (self.plan.audio && (self.plan.dash || self.plan.audio_playlist_path.is_some()))
                .then(Box::default),
            poll_due: false,
            poll_at: None,
            in_flight: None,
            playback: Playback::new(),
            stalled_in_period: false,
            active_in_period: false,
            starve_counted: false,
        }
    }

    /// Churn: `churn_per_sec` playing viewers a second leave (their
    /// connection closes) and a new viewer joins in their place at once.
    fn churn(&mut self) {
        if self.plan.churn_per_sec <= 0.0 || self.viewers.is_empty() {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.churn_last).as_secs_f64();
        self.churn_last = now;
        self.churn_tokens = (self.churn_tokens + dt * self.plan.churn_per_sec)
            .min((self.plan.churn_per_sec / 10.0).max(1.0));
        let n = self.viewers.len();
        let mut tries = 0;
        while self.churn_tokens >= 1.0 && tries < n {
            let vid = self.churn_cursor % n;
            self.churn_cursor = self.churn_cursor.wrapping_add(1);
            tries += 1;
            let v = &self.viewers[vid];
            let Some((slot, generation)) = v.conn else {
                continue;
            };
            if v.waiting || !v.playback.started() {
                continue;
            }
            self.churn_tokens -= 1.0;
            self.out.churned += 1;
            self.shared.playing.fetch_sub(1, Ordering::Relaxed);
            // The new viewer takes the slot before the old connection
            // closes, so the close does not queue a reconnect for it.
            let mut fresh = self.new_viewer(now);
            // Its poll timer (below) asks for the connection, after the old
            // one's close has gone to the kernel.
            fresh.waiting = false;
            self.viewers[vid] = fresh;
            let was_open = self
                .conns
                .get_mut(slot, generation)
                .is_some_and(|c| c.state == State::Open);
            self.drop_conn(slot, generation);
            if was_open {
                // A departure, not a replaced connection.
                self.out.reconnects = self.out.reconnects.saturating_sub(1);
            }
            self.schedule_poll(vid as u32, now);
        }
    }

    fn schedule_poll(&mut self, vid: u32, at: Instant) {
        self.viewers[vid as usize].poll_at = Some(at);
        self.timers.push(Reverse((at, vid, Kind::Video)));
    }

    /// The next poll of the HLS audio playlist.
    fn schedule_audio_poll(&mut self, vid: u32, at: Instant) {
        if let Some(a) = &mut self.viewers[vid as usize].audio {
            a.poll_at = Some(at);
            self.timers.push(Reverse((at, vid, Kind::Audio)));
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((at, vid, kind))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let v = &mut self.viewers[vid as usize];
            match kind {
                Kind::Video => {
                    if v.poll_at != Some(at) {
                        continue; // superseded
                    }
                    v.poll_at = None;
                    v.poll_due = true;
                }
                Kind::Audio => {
                    let Some(a) = v.audio.as_mut().filter(|a| a.poll_at == Some(at)) else {
                        continue;
                    };
                    a.poll_at = None;
                    a.poll_due = true;
                }
            }
            self.kick(vid);
        }
    }

    /// Open connections for viewers that need one (bounded by the connect
    /// concurrency; paused briefly after a failure).
    fn open_connections(&mut self) {
        if let Some(t) = self.retry_after {
            if Instant::now() < t {
                return;
            }
            self.retry_after = None;
        }
        while self.connecting < self.plan.connect_concurrency {
            let Some(vid) = self.reconnect.pop_front() else {
                return;
            };
            self.viewers[vid as usize].waiting = false;
            if let Err(e) = self.open_one(vid) {
                self.out.errors.connect += 1;
                self.out.error(|| format!("connect: {e}"));
                self.viewers[vid as usize].waiting = true;
                self.reconnect.push_front(vid);
                self.retry_after = Some(Instant::now() + Duration::from_millis(100));
                return;
            }
        }
    }

    fn open_one(&mut self, vid: u32) -> io::Result<()> {
        let src = if self.plan.sources.is_empty() {
            None
        } else {
            let s = self.plan.sources[self.next_source % self.plan.sources.len()];
            self.next_source += 1;
            Some(s)
        };
        let (slot, generation) = self.conns.insert(Conn::new(vid));
        // SAFETY: `dest` and `connect_timeout` live as long as the ring.
        let r = unsafe {
            connect_fixed(
                &mut self.io.ring,
                slot,
                src,
                &self.dest,
                &self.connect_timeout,
                Token::new(K_CONNECT, slot, generation),
                Token::new(K_CONNECT_TIMEOUT, slot, generation),
            )
        };
        if let Err(e) = r {
            self.conns.remove(slot, generation);
            return Err(e);
        }
        self.viewers[vid as usize].conn = Some((slot, generation));
        self.connecting += 1;
        Ok(())
    }

    fn complete(&mut self, token: Token, res: i32, flags: u32) {
        match token.kind() {
            K_TICK => self.push_tick(),
            K_CONNECT_TIMEOUT | K_SHUTDOWN => {}
            K_CONNECT => self.on_connect(token, res),
            K_SEND => self.on_send(token, res),
            K_RECV => self.on_recv(token, res, flags),
            K_DISCARD => self.on_discard(token, res),
            K_CLOSE => {
                if let Some(c) = self.conns.remove(token.slot(), token.generation())
                    && c.send_in_flight
                {
                    // A send may still own the buffer: never free it.
                    std::mem::forget(c.out);
                }
            }
            _ => {}
        }
    }

    fn on_connect(&mut self, token: Token, res: i32) {
        self.connecting -= 1;
        let (slot, generation) = (token.slot(), token.generation());
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if res < 0 {
            self.out.errors.connect += 1;
            self.out
                .error(|| format!("connect: {}", io::Error::from_raw_os_error(-res)));
            self.retry_after = Some(Instant::now() + Duration::from_millis(100));
            self.drop_conn(slot, generation);
            return;
        }
        conn.state = State::Open;
        let vid = conn.vid;
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
        self.arm_recv(slot, generation);
        self.kick(vid);
    }

    /// Arm the connection's one receive (single-shot: each completion arms
    /// the next, so that the kind can change between head and body): into
    /// a provided buffer, or, for the rest of a discarded segment body, a
    /// `MSG_TRUNC` receive that drops up to that many bytes in the kernel.
    /// One is always armed while the connection is open, so a server's
    /// close between requests is seen at once.
    fn arm_recv(&mut self, slot: u32, generation: u32) {
        let Some(conn) = self.conns.get(slot, generation) else {
            return;
        };
        let e = match conn.framing {
            Some(Framing::Length(left)) if conn.discard && conn.status == 200 && left > 0 => {
                // TCP's MSG_TRUNC discards without touching the buffer, so
                // there is none (the kernel only range-checks it).
                opcode::Recv::new(
                    types::Fixed(slot),
                    std::ptr::null_mut(),
                    left.min(1 << 30) as u32,
                )
                .flags(libc::MSG_TRUNC)
                .build()
                .user_data(Token::new(K_DISCARD, slot, generation).0)
            }
            _ => opcode::Recv::new(
                types::Fixed(slot),
                std::ptr::null_mut(),
                self.io.bufs.buffer_size(),
            )
            .buf_group(self.io.bufs.group())
            .build()
            .flags(io_uring::squeue::Flags::BUFFER_SELECT)
            .user_data(Token::new(K_RECV, slot, generation).0),
        };
        // SAFETY: a buffer-select receive writes only into the registered
        // buffer ring, which lives as long as the ring; a MSG_TRUNC receive
        // on a TCP socket writes nothing.
        unsafe { self.io.ring.push(&e) };
    }

    /// A `MSG_TRUNC` receive completed: `res` body bytes were dropped.
    fn on_discard(&mut self, token: Token, res: i32) {
        let (slot, generation) = (token.slot(), token.generation());
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if conn.state != State::Open {
            return;
        }
        if res <= 0 {
            self.recv_failed(slot, generation, res);
            return;
        }
        let n = res as u64;
        if self.measuring {
            self.out.bytes += n;
            self.out.segment_bytes += n;
        }
        let finished = match &mut conn.framing {
            Some(Framing::Length(left)) => {
                *left = left.saturating_sub(n);
                *left == 0
            }
            _ => false,
        };
        if finished {
            conn.framing = None;
        }
        let done = finished.then(|| Done {
            status: conn.status,
            body: std::mem::take(&mut conn.body),
        });
        self.arm_recv(slot, generation);
        if let Some(d) = done {
            self.on_response(slot, generation, d);
        }
    }

    /// Send the viewer's next request if it has one and its connection is
    /// idle (a due playlist poll first, then the oldest queued segment);
    /// ask for a connection if it has none.
    fn kick(&mut self, vid: u32) {
        let v = &mut self.viewers[vid as usize];
        let audio_work = v
            .audio
            .as_ref()
            .is_some_and(|a| a.poll_due || a.track.has_work());
        if v.in_flight.is_some() || (!v.poll_due && !v.video.has_work() && !audio_work) {
            return;
        }
        let Some((slot, generation)) = v.conn else {
            if !v.waiting && self.shared.phase.load(Ordering::Relaxed) != PHASE_STOP {
                v.waiting = true;
                self.reconnect.push_back(vid);
            }
            return;
        };
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if conn.state != State::Open || conn.send_in_flight {
            return;
        }
        let Some(req) = next_request(v) else {
            return;
        };
        let path: &str = match &req {
            Req::Playlist => &self.plan.playlist_path,
            Req::AudioPlaylist => self.plan.audio_playlist_path.as_deref().unwrap_or("/"),
            Req::Init(_, p, _) => p,
            Req::Segment(s) | Req::AudioSegment(s) => &s.path,
        };
        let range = req_range(&req);
        conn.out.clear();
        write_request(&mut conn.out, path, &self.plan.host, range);
        conn.ranged = range.is_some();
        conn.sent = 0;
        conn.keep_body = matches!(req, Req::Playlist | Req::AudioPlaylist);
        conn.check_ts = match &req {
            Req::Segment(s) => s.path.split('?').next().is_some_and(|p| p.ends_with(".ts")),
            Req::Playlist | Req::AudioPlaylist | Req::Init(..) | Req::AudioSegment(_) => false,
        };
        let e2e = self.plan.times.is_some()
            && self.plan.e2e_every > 0
            && (conn.vid as usize).is_multiple_of(self.plan.e2e_every);
        conn.ts_frames = (conn.check_ts && e2e).then(TsPackets::default);
        conn.moof = (matches!(req, Req::Segment(_))
            && !conn.check_ts
            && e2e
            && self.plan.fmp4_timescale.is_some())
        .then(MoofGatherer::default);
        conn.discard = matches!(req, Req::Init(..) | Req::AudioSegment(_))
            || (matches!(req, Req::Segment(_)) && !e2e);
        conn.frame_ts.clear();
        conn.got_bytes = false;
        conn.body.clear();
        v.in_flight = Some(InFlight {
            req,
            sent_at: Instant::now(),
        });
        self.push_send(slot, generation);
    }

    fn push_send(&mut self, slot: u32, generation: u32) {
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        conn.send_in_flight = true;
        let rest = &conn.out[conn.sent..];
        let e = opcode::Send::new(types::Fixed(slot), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(Token::new(K_SEND, slot, generation).0);
        // SAFETY: `conn.out` is not touched until this send completes (its
        // heap buffer does not move when the slab does; a closed connection
        // with a send in flight leaks it instead of freeing it).
        unsafe { self.io.ring.push(&e) };
    }

    fn on_send(&mut self, token: Token, res: i32) {
        let (slot, generation) = (token.slot(), token.generation());
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        conn.send_in_flight = false;
        if conn.state != State::Open {
            return;
        }
        if res < 0 {
            self.out.errors.reset += 1;
            self.out
                .error(|| format!("send: {}", io::Error::from_raw_os_error(-res)));
            self.drop_conn(slot, generation);
            return;
        }
        conn.sent += res as usize;
        if conn.sent < conn.out.len() {
            self.push_send(slot, generation);
        } else {
            let vid = conn.vid;
            // A response may have completed before the send did.
            self.kick(vid);
        }
    }

    fn on_recv(&mut self, token: Token, res: i32, flags: u32) {
        let (slot, generation) = (token.slot(), token.generation());
        let bid = buffer_id(flags);
        let armed = more(flags);
        let open = matches!(
            self.conns.get_mut(slot, generation),
            Some(Conn {
                state: State::Open,
                ..
            })
        );
        if !open {
            if let Some(bid) = bid {
                self.io.bufs.recycle(bid);
            }
            return;
        }
        if res > 0 {
            let r = match bid {
                Some(bid) => {
                    let r = self.consume(slot, generation, bid, res as usize);
                    self.io.bufs.recycle(bid);
                    r
                }
                None => Ok(None),
            };
            match r {
                Ok(done) => {
                    if !armed {
                        self.arm_recv(slot, generation);
                    }
                    if let Some(d) = done {
                        self.on_response(slot, generation, d);
                    }
                }
                Err(e) => {
                    self.out.errors.parse += 1;
                    self.out.error(|| e);
                    self.drop_conn(slot, generation);
                }
            }
            return;
        }
        if let Some(bid) = bid {
            self.io.bufs.recycle(bid);
        }
        if res == -libc::ENOBUFS {
            self.out.nobufs += 1;
            if !armed {
                self.arm_recv(slot, generation);
            }
            return;
        }
        self.recv_failed(slot, generation, res);
    }

    /// A receive ended the connection: 0 (the server closed it) or an error.
    fn recv_failed(&mut self, slot: u32, generation: u32, res: i32) {
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        let busy = self.viewers[conn.vid as usize].in_flight.is_some();
        if res == 0 && !busy {
            self.out.idle_closes += 1;
        } else if res == 0 {
            self.out.errors.closed += 1;
            self.out
                .error(|| "server closed a connection with a request outstanding".into());
        } else {
            self.out.errors.reset += 1;
            self.out
                .error(|| format!("recv: {}", io::Error::from_raw_os_error(-res)));
        }
        self.drop_conn(slot, generation);
    }

    /// Parse received bytes; returns the response they completed, if any.
    fn consume(
        &mut self,
        slot: u32,
        generation: u32,
        bid: u16,
        len: usize,
    ) -> Result<Option<Done>, String> {
        let data = self.io.bufs.get(bid, len);
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return Ok(None);
        };
        if self.measuring {
            self.out.bytes += len as u64;
        }
        if self.viewers[conn.vid as usize].in_flight.is_none() {
            return Err("bytes received with no request outstanding".into());
        }
        conn.got_bytes = true;
        let timescale = self.plan.fmp4_timescale.unwrap_or(1000);
        parse_response(conn, data, self.measuring, &mut self.out, timescale)
    }

    fn on_response(&mut self, slot: u32, generation: u32, d: Done) {
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        let vid = conn.vid;
        let frames = std::mem::take(&mut conn.frame_ts);
        if let Some(times) = &self.plan.times
            && d.status == 200
            && self.measuring
        {
            let now = times.now_us();
            let newest = times.newest();
            // Wrapping, as the frames' ms timestamps are (mod 2^32).
            let shift = (self.viewers[vid as usize].e2e_offset_ms as u32)
                .wrapping_sub(self.plan.ts_offset_ms);
            for ts in frames {
                let ts = ts.wrapping_add(shift);
                match times.sent_us_shifted(ts) {
                    Some(sent) => {
                        self.out.e2e_matched += 1;
                        self.out
                            .e2e_latency
                            .saturating_record(now.saturating_sub(sent).max(1));
                    }
                    None => {
                        self.out.e2e_unmatched += 1;
                        if newest.is_some_and(|n| (ts.wrapping_sub(n) as i32) > 0) {
                            self.out.e2e_future += 1;
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        let now_us = self.now_us();
        let measuring = self.measuring;
        let Some(f) = self.viewers[vid as usize].in_flight.take() else {
            return;
        };
        let latency = now.duration_since(f.sent_at).as_micros() as u64;
        match f.req {
            Req::Playlist | Req::AudioPlaylist => {
                let audio = matches!(f.req, Req::AudioPlaylist);
                self.out.playlists += 1;
                if measuring {
                    self.out.playlist_latency.saturating_record(latency.max(1));
                }
                match d.status {
                    200 if audio => self.on_audio_playlist(vid, &d.body, f.sent_at),
                    200 => self.on_playlist(vid, &d.body, f.sent_at),
                    s => {
                        if s == 404 {
                            self.out.errors.not_found_playlist += 1;
                        } else {
                            self.out.errors.bad_status += 1;
                        }
                        let what = if audio { "audio playlist" } else { "playlist" };
                        self.out.error(|| format!("{what}: HTTP {s}"));
                        let at = (f.sent_at + self.half_target(vid)).max(now);
                        if audio {
                            self.schedule_audio_poll(vid, at);
                        } else {
                            self.schedule_poll(vid, at);
                        }
                    }
                }
            }
            Req::AudioSegment(s) => match d.status {
                200 => {
                    if measuring {
                        self.out.audio_segments += 1;
                    }
                }
                st => {
                    if st == 404 {
                        self.out.errors.not_found_segment += 1;
                    } else {
                        self.out.errors.bad_status += 1;
                    }
                    self.out
                        .error(|| format!("audio segment {} ({}): HTTP {st}", s.seq, s.path));
                }
            },
            Req::Init(_, path, _) => match d.status {
                200 => self.out.inits += 1,
                st => {
                    if st == 404 {
                        self.out.errors.not_found_segment += 1;
                    } else {
                        self.out.errors.bad_status += 1;
                    }
                    self.out.error(|| format!("init segment {path}: HTTP {st}"));
                }
            },
            Req::Segment(s) => match d.status {
                200 => {
                    let v = &mut self.viewers[vid as usize];
                    let first = !v.playback.started();
                    let margin = v.playback.buffered_us(now_us);
                    let late = v.playback.on_segment(now_us, s.duration_us);
                    if first {
                        self.shared.playing.fetch_add(1, Ordering::Relaxed);
                        self.out
                            .startup
                            .saturating_record(now_us.saturating_sub(v.join_us).max(1));
                    }
                    if measuring {
                        v.active_in_period = true;
                        self.out.segments += 1;
                        self.out.segment_latency.saturating_record(latency.max(1));
                        match late {
                            Some(l) => {
                                self.out.stalled_us += l;
                                if !v.starve_counted {
                                    self.out.stalls += 1;
                                    v.stalled_in_period = true;
                                }
                            }
                            None => {
                                if let Some(m) = margin {
                                    self.out.margin.saturating_record(m.max(1) as u64);
                                }
                            }
                        }
                    }
                    v.starve_counted = false;
                }
                st => {
                    if st == 404 {
                        self.out.errors.not_found_segment += 1;
                    } else {
                        self.out.errors.bad_status += 1;
                    }
                    self.out
                        .error(|| format!("segment {} ({}): HTTP {st}", s.seq, s.path));
                }
            },
        }
        self.kick(vid);
    }

    fn half_target(&self, vid: u32) -> Duration {
        match self.viewers[vid as usize].target_us {
            0 => Duration::from_millis(500),
            t => Duration::from_micros(t / 2),
        }
    }

    fn on_playlist(&mut self, vid: u32, body: &[u8], sent_at: Instant) {
        let now = Instant::now();
        // A dynamic MPD is read against the wall clock: the Period that has
        // started, and number-only templates' live edge.
        let wall_ms = crate::dash_mpd::wall_ms();
        let parsed = if self.plan.dash {
            crate::dash_mpd::parse_video_at(body, wall_ms)
                .map(|r| {
                    self.viewers[vid as usize].e2e_offset_ms = r.e2e_offset_ms;
                    Playlist::Media(r.playlist)
                })
                .map_err(|e| format!("MPD: {e}"))
        } else {
            hls_playlist::parse(body).map_err(|e| e.to_string())
        };
        let p = match parsed {
            Ok(Playlist::Media(p)) => p,
            Ok(Playlist::Multivariant(_)) => {
                self.out.errors.parse += 1;
                self.out
                    .error(|| "the media playlist URL gave a multivariant playlist".into());
                let half = self.half_target(vid);
                self.schedule_poll(vid, (sent_at + half).max(now));
                return;
            }
            Err(e) => {
                self.out.errors.parse += 1;
                self.out.error(|| format!("playlist: {e}"));
                let half = self.half_target(vid);
                self.schedule_poll(vid, (sent_at + half).max(now));
                return;
            }
        };
        let live_edge = self.plan.live_edge;
        let base = self.plan.playlist_path.clone();
        let v = &mut self.viewers[vid as usize];
        v.target_us = p.target_us.max(100_000);
        let followed = v.video.follow(&p, &base, live_edge);
        let first = v
            .audio
            .as_ref()
            .is_some_and(|a| a.track.queued_to.is_none());
        if let Some(a) = &mut v.audio {
            if self.plan.dash {
                // The audio set is in the same MPD.
                match crate::dash_mpd::parse_audio_at(body, wall_ms) {
                    Ok(Some((ap, _))) => {
                        let f = a.track.follow(&ap, &base, live_edge);
                        self.out.note_followed(&f, "audio");
                    }
                    Ok(None) => v.audio = None,
                    Err(e) => {
                        self.out.errors.parse += 1;
                        self.out.error(|| format!("MPD audio: {e}"));
                    }
                }
            } else if first && !a.poll_due && a.poll_at.is_none() {
                // HLS: the audio playlist is polled from the first video one on.
                a.poll_due = true;
            }
        }
        self.out.note_followed(&followed, "");
        let interval = if followed.new > 0 {
            Duration::from_micros(self.viewers[vid as usize].target_us)
        } else {
            self.out.playlists_unchanged += 1;
            Duration::from_micros(self.viewers[vid as usize].target_us / 2)
        };
        self.schedule_poll(vid, (sent_at + interval).max(now));
    }

    /// The HLS audio rendition's playlist arrived.
    fn on_audio_playlist(&mut self, vid: u32, body: &[u8], sent_at: Instant) {
        let now = Instant::now();
        let live_edge = self.plan.live_edge;
        let Some(base) = self.plan.audio_playlist_path.clone() else {
            return;
        };
        let Some(a) = self.viewers[vid as usize].audio.as_mut() else {
            return;
        };
        let target = match hls_playlist::parse(body) {
            Ok(Playlist::Media(p)) => {
                a.target_us = p.target_us.max(100_000);
                let f = a.track.follow(&p, &base, live_edge);
                let t = if f.new > 0 {
                    a.target_us
                } else {
                    a.target_us / 2
                };
                self.out.note_followed(&f, "audio");
                t
            }
            Ok(Playlist::Multivariant(_)) | Err(_) => {
                let t = a.target_us.max(1_000_000) / 2;
                self.out.errors.parse += 1;
                self.out
                    .error(|| "the audio playlist URL gave no media playlist".into());
                t
            }
        };
        self.schedule_audio_poll(vid, (sent_at + Duration::from_micros(target)).max(now));
    }

    /// Connections whose request has waited longer than the timeout are
    /// replaced (the request is retried on the new one).
    fn check_timeouts(&mut self) {
        let now = Instant::now();
        let timeout = self.plan.timeout;
        let mut late = Vec::new();
        for v in &self.viewers {
            if let (Some(f), Some(c)) = (&v.in_flight, v.conn)
                && now.duration_since(f.sent_at) > timeout
            {
                late.push(c);
            }
        }
        for (slot, generation) in late {
            self.out.errors.timeout += 1;
            self.out
                .error(|| format!("no complete response within {timeout:?}"));
            self.drop_conn(slot, generation);
        }
    }

    /// Close a connection; its viewer gives back the request it had in
    /// flight (to be retried) and queues for a new connection.
    fn drop_conn(&mut self, slot: u32, generation: u32) {
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if conn.state == State::Closing {
            return;
        }
        if conn.state == State::Open {
            self.shared.connected.fetch_sub(1, Ordering::Relaxed);
            self.out.reconnects += 1;
        }
        conn.state = State::Closing;
        let vid = conn.vid;
        close_fixed(
            &mut self.io.ring,
            slot,
            Token::new(K_SHUTDOWN, slot, generation),
            Token::new(K_CLOSE, slot, generation),
        );
        let stopping = self.shared.phase.load(Ordering::Relaxed) == PHASE_STOP;
        let v = &mut self.viewers[vid as usize];
        if v.conn != Some((slot, generation)) {
            return;
        }
        v.conn = None;
        if let Some(f) = v.in_flight.take() {
            match f.req {
                Req::Playlist => v.poll_due = true,
                Req::Init(Kind::Video, p, r) => v.video.init = Some((p, r)),
                Req::Segment(s) => v.video.queue.push_front(s),
                other => {
                    if let Some(a) = &mut v.audio {
                        match other {
                            Req::AudioPlaylist => a.poll_due = true,
                            Req::Init(_, p, r) => a.track.init = Some((p, r)),
                            Req::AudioSegment(s) => a.track.queue.push_front(s),
                            _ => {}
                        }
                    }
                }
            }
        }
        if !v.waiting && !stopping {
            v.waiting = true;
            self.reconnect.push_back(vid);
        }
    }
}

/// Parse a connection's received bytes (a response head, its body by
/// `Content-Length` or chunked, across receives); returns the response
/// they completed, if any. Bytes past it are an error: one request is
/// outstanding at a time.
fn parse_response(
    conn: &mut Conn,
    data: &[u8],
    measuring: bool,
    out: &mut Stats,
    timescale: u64,
) -> Result<Option<Done>, String> {
    let mut rest = data;
    let mut done = None;
    while !rest.is_empty() {
        if done.is_some() {
            return Err("bytes after the response (none was asked for)".into());
        }
        let mut finished = false;
        match &mut conn.framing {
            None => {
                let (status, framing, used) = if conn.head.is_empty() {
                    match response_framing(rest)? {
                        Some(h) => h,
                        None => {
                            conn.head.extend_from_slice(rest);
                            return Ok(None);
                        }
                    }
                } else {
                    let before = conn.head.len();
                    conn.head.extend_from_slice(rest);
                    match response_framing(&conn.head)? {
                        Some((s, f, used)) => {
                            conn.head.clear();
                            (s, f, used - before)
                        }
                        None => {
                            if conn.head.len() > 64 * 1024 {
                                return Err("response head over 64 KiB".into());
                            }
                            return Ok(None);
                        }
                    }
                };
                // A ranged request's 206 is its 200.
                let status = if conn.ranged && status == 206 {
                    200
                } else {
                    if measuring && conn.ranged && status == 200 {
                        out.range_ignored += 1;
                    }
                    status
                };
                conn.status = status;
                if status != 200 {
                    conn.check_ts = false;
                    conn.keep_body = false;
                }
                if let Framing::Length(body) = framing
                    && conn.keep_body
                    && body > MAX_PLAYLIST as u64
                {
                    return Err(format!("playlist of {body} bytes"));
                }
                if matches!(framing, Framing::Length(0)) {
                    finished = true;
                } else {
                    conn.framing = Some(framing);
                }
                rest = &rest[used..];
            }
            Some(Framing::Length(left)) => {
                let take = ((*left).min(rest.len() as u64)) as usize;
                *left -= take as u64;
                finished = *left == 0;
                body_bytes(conn, &rest[..take], measuring, out, timescale)?;
                rest = &rest[take..];
                if finished {
                    conn.framing = None;
                }
            }
            Some(Framing::Chunked(d)) => {
                let mut d = std::mem::take(d);
                let (used, fin) = d.feed(
                    rest,
                    |e| format!("chunked body: {e}"),
                    |piece| body_bytes(conn, piece, measuring, out, timescale),
                )?;
                rest = &rest[used..];
                finished = fin;
                conn.framing = (!fin).then_some(Framing::Chunked(d));
            }
        }
        if finished {
            done = Some(Done {
                status: conn.status,
                body: std::mem::take(&mut conn.body),
            });
        }
    }
    Ok(done)
}

/// Body bytes of the current response: kept (playlists), counted
/// (segments), scanned for frame timestamps (end-to-end latency).
fn body_bytes(
    conn: &mut Conn,
    piece: &[u8],
    measuring: bool,
    out: &mut Stats,
    timescale: u64,
) -> Result<(), String> {
    if piece.is_empty() {
        return Ok(());
    }
    if conn.check_ts {
        if piece[0] != 0x47 {
            return Err(format!(
                "segment body starts with 0x{:02x}, not a TS sync byte",
                piece[0]
            ));
        }
        conn.check_ts = false;
    }
    if conn.keep_body {
        if conn.body.len() + piece.len() > MAX_PLAYLIST {
            return Err(format!("playlist of more than {MAX_PLAYLIST} bytes"));
        }
        conn.body.extend_from_slice(piece);
    } else if measuring && conn.status == 200 {
        out.segment_bytes += piece.len() as u64;
    }
    if conn.status == 200
        && let Some(tp) = &mut conn.ts_frames
    {
        let frames = &mut conn.frame_ts;
        let r = tp.feed(piece, &mut |t: TagSeen| {
            if t.is_video_frame() {
                frames.push(t.ts);
            }
        });
        if r.is_err() {
            // Lost sync: no latency from this segment.
            conn.ts_frames = None;
            conn.frame_ts.clear();
        }
    }
    if conn.status == 200
        && let Some(g) = &mut conn.moof
        && let Some(ts) = g.feed(piece, timescale)
    {
        conn.frame_ts = ts;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::httpbody::chunk;

    fn playlist(first: u64, n: u64, map: Option<&str>) -> MediaPlaylist {
        let mut text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n");
        if let Some(m) = map {
            text += &format!("#EXT-X-MAP:URI=\"{m}\"\n");
        }
        for k in first..first + n {
            text += &format!("#EXTINF:2,\n{k}.m4s\n");
        }
        match hls_playlist::parse(text.as_bytes()).unwrap() {
            Playlist::Media(p) => p,
            Playlist::Multivariant(_) => unreachable!(),
        }
    }

    fn viewer(audio: bool) -> Viewer {
        Viewer {
            join_us: 0,
            conn: None,
            waiting: false,
            target_us: 0,
            e2e_offset_ms: 0,
            video: Track::default(),
            audio: audio.then(Box::default),
            poll_due: false,
            poll_at: None,
            in_flight: None,
            playback: Playback::new(),
            stalled_in_period: false,
            active_in_period: false,
            starve_counted: false,
        }
    }

    #[test]
    fn track_follows_a_live_playlist_and_its_init_once() {
        let mut t = Track::default();
        // Joins 3 targets back from the end of 10 segments: 7, 8, 9 queued.
        let f = t.follow(
            &playlist(0, 10, Some("init.mp4")),
            "/cmaf/s/0/index.m3u8",
            3.0,
        );
        assert_eq!(f.new, 3);
        assert_eq!(
            t.init.as_ref().map(|(p, r)| (&**p, *r)),
            Some(("/cmaf/s/0/init.mp4", None))
        );
        let seqs: Vec<u64> = t.queue.iter().map(|q| q.seq).collect();
        assert_eq!(seqs, [7, 8, 9]);
        assert_eq!(&*t.queue[0].path, "/cmaf/s/0/7.m4s");
        t.init = None;
        // The next update adds only 10; the init is not asked for again.
        let f = t.follow(
            &playlist(1, 10, Some("init.mp4")),
            "/cmaf/s/0/index.m3u8",
            3.0,
        );
        assert_eq!(f.new, 1);
        assert_eq!(t.init, None);
        // Fell behind the window: 11..14 skipped, 14 and on queued.
        let f = t.follow(&playlist(14, 3, None), "/cmaf/s/0/index.m3u8", 3.0);
        assert_eq!(f.skipped, Some((11, 14)));
        assert_eq!(f.new, 3);
        let f = t.follow(&playlist(17, 1, None), "/x/i.m3u8", 3.0);
        assert_eq!(f.new, 1);
        let mut bad = playlist(18, 1, Some("ftp://h/init.mp4"));
        bad.segments[0].uri = "rtsp://h/18.m4s".into();
        let mut t2 = Track::default();
        let f = t2.follow(&bad, "/x/i.m3u8", 3.0);
        assert_eq!(f.bad_init.as_deref(), Some("ftp://h/init.mp4"));
        assert_eq!(f.bad_uri.as_deref(), Some("rtsp://h/18.m4s"));
    }

    #[test]
    fn requests_go_polls_then_inits_then_the_older_segment() {
        let mut v = viewer(true);
        v.poll_due = true;
        v.video
            .follow(&playlist(5, 2, Some("v/init.mp4")), "/p/v.m3u8", 0.0);
        let a = v.audio.as_mut().unwrap();
        a.poll_due = true;
        a.track
            .follow(&playlist(4, 3, Some("a/init.mp4")), "/p/a.m3u8", 0.0);
        let mut order = Vec::new();
        while let Some(r) = next_request(&mut v) {
            order.push(match r {
                Req::Playlist => "playlist".to_string(),
                Req::AudioPlaylist => "audio playlist".to_string(),
                Req::Init(Kind::Video, p, _) => format!("init {p}"),
                Req::Init(Kind::Audio, p, _) => format!("audio init {p}"),
                Req::Segment(s) => format!("v{}", s.seq),
                Req::AudioSegment(s) => format!("a{}", s.seq),
            });
        }
        // Joining at the newest segment: video 6, audio 6.
        assert_eq!(
            order,
            [
                "playlist",
                "audio playlist",
                "init /p/v/init.mp4",
                "audio init /p/a/init.mp4",
                "v6",
                "a6"
            ]
        );
        // Audio ahead in the queue goes first; video wins a tie.
        let mut v = viewer(true);
        v.video.queue.push_back(QSeg {
            seq: 9,
            duration_us: 1,
            path: "/v9".into(),
            range: None,
        });
        let a = v.audio.as_mut().unwrap();
        a.track.queue.push_back(QSeg {
            seq: 8,
            duration_us: 1,
            path: "/a8".into(),
            range: None,
        });
        a.track.queue.push_back(QSeg {
            seq: 9,
            duration_us: 1,
            path: "/a9".into(),
            range: None,
        });
        let got: Vec<String> = std::iter::from_fn(|| next_request(&mut v))
            .map(|r| match r {
                Req::Segment(s) => format!("v{}", s.seq),
                Req::AudioSegment(s) => format!("a{}", s.seq),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(got, ["a8", "v9", "a9"]);
        // Without an audio track only video is asked for.
        let mut v = viewer(false);
        v.video.follow(&playlist(0, 1, None), "/p/v.m3u8", 0.0);
        assert!(matches!(next_request(&mut v), Some(Req::Segment(_))));
        assert!(next_request(&mut v).is_none());
    }

    /// Feed `wire` in pieces of `step`; the responses completed.
    fn responses(conn: &mut Conn, out: &mut Stats, wire: &[u8], step: usize) -> Vec<Done> {
        let mut done = Vec::new();
        for piece in wire.chunks(step) {
            if let Some(d) = parse_response(conn, piece, true, out, 1000).unwrap() {
                done.push(d);
            }
        }
        done
    }

    #[test]
    fn chunked_playlists_and_segments_in_any_split() {
        let playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg1.ts\n".repeat(20);
        let mut segment = vec![0x47u8; 188 * 12];
        segment[1] = 0x1f;
        for step in [1, 3, 17, 188, 100_000] {
            // A chunked playlist with a trailer…
            let mut conn = Conn::new(0);
            let mut out = Stats::new();
            conn.keep_body = true;
            let mut wire =
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/vnd.apple.mpegurl\r\n\r\n"
                    .to_vec();
            wire.extend(chunk(&playlist, &[5, 300, 64], true));
            let d = responses(&mut conn, &mut out, &wire, step);
            assert_eq!(d.len(), 1, "step {step}");
            assert_eq!((d[0].status, &d[0].body), (200, &playlist), "step {step}");
            // …then, on the same connection, a chunked TS segment (its
            // first body byte must be the sync byte, not a chunk size)…
            conn.keep_body = false;
            conn.check_ts = true;
            let mut wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            wire.extend(chunk(&segment, &[1000, 7], false));
            let d = responses(&mut conn, &mut out, &wire, step);
            assert_eq!(d.len(), 1, "step {step}");
            assert_eq!(out.segment_bytes, segment.len() as u64, "step {step}");
            // …then one with Content-Length.
            conn.check_ts = true;
            let mut wire = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                segment.len()
            )
            .into_bytes();
            wire.extend_from_slice(&segment);
            assert_eq!(responses(&mut conn, &mut out, &wire, step).len(), 1);
            assert_eq!(out.segment_bytes, 2 * segment.len() as u64, "step {step}");
        }
    }

    #[test]
    fn bad_bodies_are_errors() {
        let mut out = Stats::new();
        let mut conn = Conn::new(0);
        conn.check_ts = true;
        let e = parse_response(
            &mut conn,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            true,
            &mut out,
            1000,
        )
        .unwrap_err();
        assert!(e.contains("sync byte"), "{e}");
        let mut conn = Conn::new(0);
        let e = parse_response(
            &mut conn,
            b"HTTP/1.1 200 OK\r\n\r\nabc",
            true,
            &mut out,
            1000,
        )
        .unwrap_err();
        assert!(e.contains("neither"), "{e}");
        let mut conn = Conn::new(0);
        let e = parse_response(
            &mut conn,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            true,
            &mut out,
            1000,
        )
        .unwrap_err();
        assert!(e.contains("chunk"), "{e}");
        // Bytes after a complete response.
        let mut conn = Conn::new(0);
        let e = parse_response(
            &mut conn,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1",
            true,
            &mut out,
            1000,
        )
        .unwrap_err();
        assert!(e.contains("after the response"), "{e}");
    }

    #[test]
    fn spread_is_uniform_enough() {
        let n = 10_000;
        let mut buckets = [0u32; 10];
        for k in 0..n {
            let u = unit_hash(k);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((800..1200).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn ranged_requests_carry_a_range_and_take_206() {
        let mut out = Vec::new();
        write_request(&mut out, "/d/v.mp4", "h:1", Some((100, 199)));
        assert_eq!(
            out,
            b"GET /d/v.mp4 HTTP/1.1\r\nHost: h:1\r\nUser-Agent: spate-bench-hls\r\nAccept: */*\r\nRange: bytes=100-199\r\n\r\n"
        );
        out.clear();
        write_request(&mut out, "/d/1.m4s", "h", None);
        assert!(!String::from_utf8_lossy(&out).contains("Range"));
        // The range comes from the queued segment or init.
        let seg = |range| QSeg {
            seq: 1,
            duration_us: 1,
            path: "/x".into(),
            range,
        };
        assert_eq!(req_range(&Req::Segment(seg(Some((5, 9))))), Some((5, 9)));
        assert_eq!(req_range(&Req::AudioSegment(seg(None))), None);
        assert_eq!(
            req_range(&Req::Init(Kind::Video, "/x".into(), Some((0, 99)))),
            Some((0, 99))
        );
        assert_eq!(req_range(&Req::Playlist), None);
        // A 206 to a ranged request is its success; a 200 is too, noted.
        let mut stats = Stats::new();
        let mut conn = Conn::new(0);
        conn.ranged = true;
        let d = parse_response(
            &mut conn,
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-9/100\r\nContent-Length: 5\r\n\r\nabcde",
            true,
            &mut stats,
            1000,
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.status, 200);
        assert_eq!((stats.range_ignored, stats.segment_bytes), (0, 5));
        let mut conn = Conn::new(0);
        conn.ranged = true;
        let d = parse_response(
            &mut conn,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            true,
            &mut stats,
            1000,
        )
        .unwrap()
        .unwrap();
        assert_eq!((d.status, stats.range_ignored), (200, 1));
        // Unasked for, a 206 stays a 206 (not a success).
        let mut conn = Conn::new(0);
        let d = parse_response(
            &mut conn,
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 1\r\n\r\na",
            true,
            &mut stats,
            1000,
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.status, 206);
    }
}
