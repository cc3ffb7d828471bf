//! What a worker reports about itself when the control plane asks: plain
//! data, built on the worker's own loop from its own state and sent over a
//! channel, so the API thread merges it without touching a worker.
use serde::Serialize;

/// One track of a live stream as the API shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TrackSnapshot {
    /// Track id within the stream.
    pub id: u32,
    /// `video` or `audio`.
    pub kind: &'static str,
    /// Codec name (`h264`, `aac`, ...).
    pub codec: String,
    /// Video width, pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Video height, pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Audio sample rate, Hz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// Audio channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
}

/// The publisher of a stream, reported by the core it publishes on.
#[derive(Debug, Clone, Default)]
pub struct PublisherSnapshot {
    /// What brings the media: `rtmp`, `tsudp`, `tsrtp`, `http`, `ts-exec`.
    pub connector: &'static str,
    /// Its tracks.
    pub tracks: Vec<TrackSnapshot>,
    /// Media payload bytes received for the stream so far.
    pub bytes_in: u64,
    /// Bits per second received over the last second or so.
    pub bitrate_in: u64,
    /// Seconds since the publisher started.
    pub seconds: f64,
    /// Segment-store arenas the stream's packager holds.
    pub store_arenas: u64,
    /// Bytes of those arenas (their sizes, pages are used as written).
    pub store_bytes: u64,
}

/// Viewers of one stream on one core, by how they watch.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ViewerCounts {
    /// HTTP-FLV viewers.
    pub flv: u64,
    /// MPEG-TS over HTTP viewers.
    pub ts: u64,
    /// RTMP players.
    pub rtmp: u64,
    /// Requests under `/hls/<stream>/` (HLS with TS segments) so far.
    pub hls_requests: u64,
    /// Requests under `/cmaf/<stream>/` (HLS fMP4 and DASH) so far.
    pub cmaf_requests: u64,
}

impl ViewerCounts {
    /// Add another core's counts.
    pub fn add(&mut self, o: &ViewerCounts) {
        self.flv += o.flv;
        self.ts += o.ts;
        self.rtmp += o.rtmp;
        self.hls_requests += o.hls_requests;
        self.cmaf_requests += o.cmaf_requests;
    }
}

/// A stream as one core sees it.
#[derive(Debug, Clone, Default)]
pub struct StreamSnapshot {
    /// Full name (`live+alice`).
    pub name: String,
    /// Viewers on this core.
    pub viewers: ViewerCounts,
    /// Set by the core that publishes it.
    pub publisher: Option<PublisherSnapshot>,
    /// The publisher left and the stream waits for it (reconnect grace);
    /// set by the core it published on.
    pub reconnecting: bool,
    /// Segments currently listed / downloadable in the HLS/DASH view.
    pub segments: u64,
    /// Bytes of those segments.
    pub segment_bytes: u64,
}

/// One connection attached to a stream.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSnapshot {
    /// `w0/c12.3`: worker, slot, generation (what `DELETE
    /// /api/sessions/{id}` takes).
    pub id: String,
    /// Stream name.
    pub stream: String,
    /// `publisher` or `viewer`.
    pub role: &'static str,
    /// `rtmp`, `http-flv`, `http-ts`.
    pub connector: &'static str,
    /// The peer's address.
    pub peer: String,
    /// Seconds since it connected.
    pub seconds: f64,
    /// Bytes received from the peer.
    pub bytes_up: u64,
    /// Bytes sent to the peer.
    pub bytes_down: u64,
}

/// A push running on a core.
#[derive(Debug, Clone, Serialize)]
pub struct PushSnapshot {
    /// Stream pushed.
    pub stream: String,
    /// Target URL.
    pub target: String,
    /// Worker it runs on.
    pub worker: usize,
}

/// How busy a worker's loop is.
#[derive(Debug, Clone, Default)]
pub struct LoopSnapshot {
    /// Nanoseconds spent working (completions, pumping) since start.
    pub busy_ns: u64,
    /// Nanoseconds spent waiting in the ring since start.
    pub wait_ns: u64,
    /// Busy share of the last full second (0..=1).
    pub utilisation: f64,
    /// Loop turns since start.
    pub turns: u64,
    /// Sum of the busy part of every turn, ns (= `busy_ns`).
    pub turn_sum_ns: u64,
    /// Quantiles of a turn's busy part: (quantile, ns).
    pub turn_quantiles: Vec<(f64, u64)>,
}

/// Current connections on a worker, by listener.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionCounts {
    /// On the HTTP listener (files, HLS, HTTP-FLV/TS viewers).
    pub http: u64,
    /// On the RTMP listener.
    pub rtmp: u64,
}

/// Every stream the workers reported, merged by name: viewers added up,
/// the publisher from the core that has it, segments as any core sees them.
pub fn merge_streams(
    snaps: &[super::WorkerSnapshot],
) -> std::collections::BTreeMap<String, StreamSnapshot> {
    let mut out: std::collections::BTreeMap<String, StreamSnapshot> = Default::default();
    for snap in snaps {
        for s in &snap.streams {
            let m = out.entry(s.name.clone()).or_insert_with(|| StreamSnapshot {
                name: s.name.clone(),
                ..StreamSnapshot::default()
            });
            m.viewers.add(&s.viewers);
            if m.publisher.is_none() {
                m.publisher = s.publisher.clone();
            }
            m.reconnecting |= s.reconnecting;
            m.segments = m.segments.max(s.segments);
            m.segment_bytes = m.segment_bytes.max(s.segment_bytes);
        }
    }
    out
}
