//! `spate-bench run SCENARIO.toml`: publishers and viewer groups from a
//! scenario file (`scenario.rs`), run against any server that speaks the
//! protocols, using only the URLs of the file's templates.
//!
//! One publisher thread per published stream (RTMP: `live_publish.rs`;
//! MPEG-TS over UDP: `ts_publish.rs`; send instants recorded per video
//! frame either way); per viewer group its own viewer
//! threads: HTTP-FLV, RTMP and HTTP-TS groups run the live viewer engine
//! (`live_viewer.rs`: per-frame latency publisher send → viewer receipt,
//! lag sampled every 100 ms → stalled viewer-seconds, start-up = connect →
//! first keyframe), HLS and DASH groups the player-like HLS engine (`hls_viewer.rs`,
//! `dash_mpd.rs` for manifests:
//! segments late for their playback deadline → stalls; "latency" is the
//! segment fetch time; start-up = join → first segment).
//!
//! Every second the control thread collects every group's counters (one
//! row of the timeline: viewers, stalls, p50/p99 latency, server CPU/RSS),
//! prints a progress line to stderr, and folds the measured seconds into
//! the totals. At the end: a table on stdout, the JSON report, and two SVG
//! plots next to it (`<report>-latency.svg`, `<report>-viewers.svg`).
//!
//! Exit status: 0 when every step ran and the last one was clean (every
//! viewer live, no stall, no error), 1 when it ran but was not clean, 2 on
//! a setup error.
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::hls_viewer;
use crate::live_publish::{self, Publisher, SendTimes};
use crate::live_rtmp::parse_rtmp_url;
use crate::live_viewer::{self, Proto};
use crate::procstat::ServerProcs;
use crate::scenario::{self, PublishProtocol, Scenario, ViewProtocol};
use crate::svg::{Chart, Series};
use crate::ts_publish;

/// Arguments of `spate-bench run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario file (TOML; see docs/benchmarks.md).
    scenario: PathBuf,
    /// HTTP base of the templates' `{http}`: http://HOST:PORT.
    #[arg(long)]
    target: Option<String>,
    /// RTMP base of the templates' `{rtmp}`: rtmp://HOST:PORT.
    #[arg(long)]
    rtmp: Option<String>,
    /// Server process to sample (CPU, RSS); overrides `[server] pid`.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the JSON report here (and the SVG plots next to it).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Ramp the viewer counts by the scenario's `[find_max] steps`
    /// (multipliers of every group's count) until a step is not clean;
    /// report the largest clean one.
    #[arg(long)]
    find_max: bool,
    /// Overrides the scenario's label.
    #[arg(long)]
    label: Option<String>,
    /// Source addresses for viewers, round robin: `A-B`, `A,B,C` or `A`.
    #[arg(long, default_value = "127.0.0.2-127.0.0.40")]
    sources: String,
    /// Seconds to wait for the viewers of a step to be live.
    #[arg(long, default_value_t = 60.0)]
    connect_deadline: f64,
    /// Seconds to wait for an HLS playlist or a DASH MPD to list 3 segments.
    #[arg(long, default_value_t = 40.0)]
    hls_wait: f64,
    /// No progress line.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// A distribution, ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Dist {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

impl Dist {
    /// From a histogram of µs.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| Some(v as f64 / 1000.0);
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: Some(h.mean() / 1000.0),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the step's viewers started joining.
    pub t: f64,
    /// warmup / connect / measure.
    pub phase: String,
    pub connected: usize,
    pub live: usize,
    /// Viewers stalled in this second (live engines: stalled viewer-
    /// seconds; HLS: viewers with a late segment).
    pub stalls: u64,
    /// Latency of the live groups (FLV, RTMP, TS) this second, ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub server_cpu: Option<f64>,
    pub server_rss: Option<u64>,
    pub server_fds: Option<u64>,
    /// CPU seconds spate-bench itself used in this second.
    #[serde(default)]
    pub client_cpu: f64,
    /// Busy CPU seconds of everything else on the machine (not the server,
    /// not spate-bench, interrupts excluded): a noisy neighbour shows here.
    #[serde(default)]
    pub other_cpu: f64,
    /// File descriptors spate-bench itself has open (its viewer connections
    /// are io_uring direct descriptors, not among them).
    #[serde(default)]
    pub client_fds: u64,
}

/// One viewer group's result in one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupReport {
    pub name: String,
    pub protocol: String,
    pub url: String,
    pub viewers: usize,
    pub connected: usize,
    pub live: usize,
    /// What `latency` measures: `publisher-send-to-receipt` (FLV, RTMP, TS)
    /// or `segment-fetch` (HLS).
    pub latency_kind: String,
    pub latency: Dist,
    /// HLS/DASH (TS or fMP4 segments): per video frame, publisher send →
    /// the segment holding it complete at the viewer (what a player could show at the
    /// earliest). For FLV/RTMP/TS `latency` is already end to end.
    #[serde(default)]
    pub end_to_end: Option<Dist>,
    pub startup: Dist,
    /// Viewer-seconds observed and of them stalled (live engines); for HLS
    /// viewer periods with a segment fetched and with a late one.
    pub viewer_seconds: u64,
    pub stalled_viewer_seconds: u64,
    /// Stall events (HLS: late segments + starved viewers; live engines:
    /// stalled viewer-seconds).
    pub stalls: u64,
    pub bytes: u64,
    pub bytes_per_s: f64,
    /// Viewers closed on purpose (churn) while measuring; each was replaced.
    pub churned: u64,
    /// HLS/DASH: media segments fetched while measuring, and init segments
    /// fetched in the whole step (a player fetches an fMP4 playlist's init
    /// segment once, when it joins: mostly during the ramp).
    #[serde(default)]
    pub segments: u64,
    #[serde(default)]
    pub init_segments: u64,
    /// HLS/DASH with `audio`: audio segments fetched while measuring.
    #[serde(default)]
    pub audio_segments: u64,
    /// DASH: ranged requests (`mediaRange`, `Initialization@range`, `sidx`
    /// subsegments) answered 200 with the whole file instead of 206, while
    /// measuring (fine, but the bytes counted are the whole file's).
    #[serde(default)]
    pub range_ignored: u64,
    pub errors: BTreeMap<String, u64>,
    /// Live engines: video frames whose timestamp matched a send record,
    /// did not, and times a viewer re-learned the server's offset.
    pub timestamps: Option<TimestampMatch>,
    pub first_error: Option<String>,
    pub clean: bool,
}

/// How received frames matched the publisher's send records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimestampMatch {
    pub matched: u64,
    pub unmatched: u64,
    pub shifts: u64,
    /// HLS/DASH: unmatched frames stamped later than anything sent when
    /// they arrived (the server adds a constant to its timestamps).
    #[serde(default)]
    pub future: u64,
}

/// Server usage over a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerUsage {
    pub pids: Vec<u32>,
    pub cpu_seconds: Option<f64>,
    pub cpu_per_second: Option<f64>,
    pub rss_start: Option<u64>,
    pub rss_end: Option<u64>,
    pub rss_max: Option<u64>,
    pub fds_start: Option<u64>,
    pub fds_end: Option<u64>,
}

/// What one publisher sent, warm-up and every step included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublisherReport {
    pub url: String,
    pub protocol: String,
    /// Video frames sent (each with a send record).
    pub frames_sent: u64,
    /// RTMP: FLV tag bodies; udp-ts, rtp-ts: TS packets (RTP headers not counted).
    pub bytes_sent: u64,
    /// RTMP: reconnects; udp-ts, rtp-ts: outages (`reconnect_every`).
    pub reconnects: u64,
}

/// One step (the only one without --find-max).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub multiplier: f64,
    pub viewers: usize,
    pub seconds: f64,
    pub clean: bool,
    pub groups: Vec<GroupReport>,
    pub server: Option<ServerUsage>,
    /// Most viewer connections open at once in the step (every group,
    /// every phase) and spate-bench's own open fds at most.
    #[serde(default)]
    pub max_connected: usize,
    #[serde(default)]
    pub client_fds_max: u64,
    pub timeline: Vec<Second>,
}

/// The whole report (`--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub mode: String,
    pub label: String,
    pub scenario: String,
    pub target_http: String,
    pub target_rtmp: String,
    pub streams: Vec<String>,
    /// Per published stream, what its publisher sent over the whole run.
    #[serde(default)]
    pub publishers: Vec<PublisherReport>,
    pub duration: f64,
    pub warmup: f64,
    pub find_max: bool,
    /// Largest clean total viewer count (find-max), or the run's count when
    /// it was clean.
    pub max_clean_viewers: Option<usize>,
    pub steps: Vec<StepReport>,
    /// With a `[soak]` section: the verdict.
    #[serde(default)]
    pub soak: Option<SoakVerdict>,
    pub failure: Option<String>,
}

/// A soak's result: pass = RSS at the end within the tolerance of its
/// value right after warm-up, the server's fds, once the viewers left, not
/// above their count right after warm-up (the same point: by then the
/// server has made what it keeps per stream, e.g. segment-store arenas),
/// and no viewer lost (disconnected, refused, timed out) — across the
/// publisher's reconnects too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakVerdict {
    pub pass: bool,
    pub rss_tolerance: f64,
    pub rss_after_warmup: Option<u64>,
    pub rss_end: Option<u64>,
    pub rss_change: Option<f64>,
    /// The server's fds at the first measured second (after warm-up): the
    /// baseline `fds_after` is judged against.
    pub fds_baseline: Option<u64>,
    /// The server's fds before the viewers came (reported, not judged).
    #[serde(default)]
    pub fds_before_viewers: Option<u64>,
    /// The server's fds `settle` seconds after the viewers left.
    pub fds_after: Option<u64>,
    pub lost_viewers: u64,
    pub publisher_reconnects: u64,
    pub reasons: Vec<String>,
}

/// Judge a soak from its (last) step.
/// Medians of the server's RSS over the first and the last window of the
/// measured seconds (window: a tenth of them, 1..=60), if there are at
/// least 10 measured seconds with an RSS sample.
pub fn rss_window_medians(timeline: &[Second]) -> Option<(u64, u64)> {
    let rss: Vec<u64> = timeline
        .iter()
        .filter(|s| s.phase == "measure")
        .filter_map(|s| s.server_rss)
        .collect();
    if rss.len() < 10 {
        return None;
    }
    let w = (rss.len() / 10).clamp(1, 60);
    let median = |xs: &[u64]| {
        let mut v = xs.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    };
    Some((median(&rss[..w]), median(&rss[rss.len() - w..])))
}

pub fn soak_verdict(
    rule: &scenario::Soak,
    step: Option<&StepReport>,
    fds_before_viewers: Option<u64>,
    fds_after: Option<u64>,
    publisher_reconnects: u64,
) -> SoakVerdict {
    let mut reasons = Vec::new();
    let (mut rss_after_warmup, mut rss_end, fds_baseline) = step
        .and_then(|s| s.server.as_ref())
        .map_or((None, None, None), |u| {
            (u.rss_start, u.rss_end, u.fds_start)
        });
    // With a per-second timeline, compare medians of a window at each end
    // (a tenth of the measured seconds, at most 60) instead of two single
    // samples: memory that breathes (arenas emptied and refilled) is not
    // growth, and one sample at a peak or trough would say it is.
    if let Some((a, b)) = step.and_then(|s| rss_window_medians(&s.timeline)) {
        rss_after_warmup = Some(a);
        rss_end = Some(b);
    }
    let rss_change = rss_after_warmup
        .zip(rss_end)
        .filter(|(a, _)| *a > 0)
        .map(|(a, b)| (b as f64 - a as f64) / a as f64);
    match rss_change {
        None => reasons.push("no server RSS samples (give [server] pid or --server-pid)".into()),
        Some(c) if c.abs() > rule.rss_tolerance => reasons.push(format!(
            "RSS changed {:+.1}% (more than ±{:.1}%)",
            c * 100.0,
            rule.rss_tolerance * 100.0
        )),
        _ => {}
    }
    match (fds_baseline, fds_after) {
        (Some(b), Some(a)) if a > b => {
            reasons.push(format!(
                "{} more server fds after the viewers left than after warm-up ({b} → {a})",
                a - b
            ));
        }
        (Some(_), Some(_)) => {}
        _ => reasons.push("no server fd counts".into()),
    }
    let lost: u64 = step.map_or(0, |s| {
        s.groups
            .iter()
            .flat_map(|g| g.errors.iter())
            .map(|(_, v)| v)
            .sum()
    });
    if lost > 0 {
        reasons.push(format!("{lost} viewers lost (errors and disconnects)"));
    }
    if step.is_none() {
        reasons.push("no measured step".into());
    }
    SoakVerdict {
        pass: reasons.is_empty(),
        rss_tolerance: rule.rss_tolerance,
        rss_after_warmup,
        rss_end,
        rss_change,
        fds_baseline,
        fds_before_viewers,
        fds_after,
        lost_viewers: lost,
        publisher_reconnects,
        reasons,
    }
}

/// Collected measures of a group so far (a few per second: size does
/// not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Totals {
    Live(live_viewer::Stats),
    Hls(hls_viewer::Stats),
}

/// The threads of one viewer group.
enum Engine {
    Live {
        shared: Arc<live_viewer::Shared>,
        rx: mpsc::Receiver<(usize, live_viewer::Stats)>,
    },
    Hls {
        shared: Arc<hls_viewer::Shared>,
        rx: mpsc::Receiver<(usize, hls_viewer::Stats)>,
    },
}

struct Group {
    name: String,
    protocol: ViewProtocol,
    url: String,
    count: usize,
    /// Churn per second: that many viewers may be between a leave and
    /// their replacement's join at any instant.
    churn: f64,
    threads: usize,
    engine: Engine,
    handles: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Group {
    fn set_target(&self, n: usize) {
        let targets = match &self.engine {
            Engine::Live { shared, .. } => &shared.targets,
            Engine::Hls { shared, .. } => &shared.targets,
        };
        for (i, t) in targets.iter().enumerate() {
            t.store(
                n / self.threads + usize::from(i < n % self.threads),
                Ordering::Relaxed,
            );
        }
    }
    fn connected(&self) -> usize {
        match &self.engine {
            Engine::Live { shared, .. } => shared.connected.load(Ordering::Relaxed),
            Engine::Hls { shared, .. } => shared.connected.load(Ordering::Relaxed),
        }
    }
    fn live(&self) -> usize {
        match &self.engine {
            Engine::Live { shared, .. } => shared.live.load(Ordering::Relaxed),
            Engine::Hls { shared, .. } => shared.playing.load(Ordering::Relaxed),
        }
    }
    fn collect(&self) -> Result<Totals, String> {
        let late = || format!("{}: a viewer thread did not report within 10 s", self.name);
        match &self.engine {
            Engine::Live { shared, rx } => {
                shared.collect.fetch_add(1, Ordering::AcqRel);
                let mut t = live_viewer::Stats::new();
                for _ in 0..self.threads {
                    let (_, s) = rx
                        .recv_timeout(Duration::from_secs(10))
                        .map_err(|_| late())?;
                    t.merge(&s);
                }
                Ok(Totals::Live(t))
            }
            Engine::Hls { shared, rx } => {
                shared.collect.fetch_add(1, Ordering::AcqRel);
                let mut t = hls_viewer::Stats::new();
                for _ in 0..self.threads {
                    let (_, s) = rx
                        .recv_timeout(Duration::from_secs(10))
                        .map_err(|_| late())?;
                    t.merge(&s);
                }
                Ok(Totals::Hls(t))
            }
        }
    }
    fn stop(&self) {
        match &self.engine {
            Engine::Live { shared, .. } => shared
                .phase
                .store(live_viewer::PHASE_STOP, Ordering::Relaxed),
            Engine::Hls { shared, .. } => shared
                .phase
                .store(hls_viewer::PHASE_STOP, Ordering::Relaxed),
        }
    }
    fn empty(&self) -> Totals {
        match self.engine {
            Engine::Live { .. } => Totals::Live(live_viewer::Stats::new()),
            Engine::Hls { .. } => Totals::Hls(hls_viewer::Stats::new()),
        }
    }
}

impl Totals {
    fn merge(&mut self, o: &Totals) {
        match (self, o) {
            (Totals::Live(a), Totals::Live(b)) => a.merge(b),
            (Totals::Hls(a), Totals::Hls(b)) => a.merge(b),
            _ => unreachable!("groups keep their engine"),
        }
    }
    /// Start-up times recorded in the period.
    fn startup(&self) -> &Histogram<u64> {
        match self {
            Totals::Live(s) => &s.startup,
            Totals::Hls(s) => &s.startup,
        }
    }
    /// Viewers stalled in the period.
    fn stalled(&self) -> u64 {
        match self {
            Totals::Live(s) => s.stalled_viewer_seconds,
            Totals::Hls(s) => s.viewers_stalled,
        }
    }
    fn errors(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        match self {
            Totals::Live(s) => {
                m.insert("connect".into(), s.connect_errors);
                m.insert("disconnect".into(), s.disconnects);
                m.insert("protocol".into(), s.protocol_errors);
            }
            Totals::Hls(s) => {
                let e = &s.errors;
                for (k, v) in [
                    ("connect", e.connect),
                    ("timeout", e.timeout),
                    ("closed", e.closed),
                    ("reset", e.reset),
                    ("segment_404", e.not_found_segment),
                    ("playlist_404", e.not_found_playlist),
                    ("bad_status", e.bad_status),
                    ("parse", e.parse),
                    ("skipped_segments", e.skipped),
                ] {
                    m.insert(k.into(), v);
                }
            }
        }
        m
    }
}

/// `x.json` → `x-latency.svg`, `x-viewers.svg`.
pub fn plot_paths(report: &Path) -> (PathBuf, PathBuf) {
    let stem = report
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let dir = report.parent().unwrap_or(Path::new(""));
    (
        dir.join(format!("{stem}-latency.svg")),
        dir.join(format!("{stem}-viewers.svg")),
    )
}

/// The two plots of a step's timeline.
pub fn plots(title: &str, timeline: &[Second]) -> (String, String) {
    let pts = |f: &dyn Fn(&Second) -> Option<f64>| {
        timeline
            .iter()
            .filter_map(|s| f(s).map(|y| (s.t, y)))
            .collect::<Vec<_>>()
    };
    let latency = Chart {
        title: format!("{title}: end-to-end latency (FLV/RTMP/TS viewers)"),
        x_label: "seconds".into(),
        y_label: "latency, ms".into(),
        y2_label: String::new(),
        series: vec![
            Series {
                name: "p50".into(),
                color: "#1f77b4",
                points: pts(&|s| s.p50_ms),
                right_axis: false,
            },
            Series {
                name: "p99".into(),
                color: "#d62728",
                points: pts(&|s| s.p99_ms),
                right_axis: false,
            },
        ],
    };
    let viewers = Chart {
        title: format!("{title}: viewers and stalls"),
        x_label: "seconds".into(),
        y_label: "viewers".into(),
        y2_label: "stalled viewers".into(),
        series: vec![
            Series {
                name: "connected".into(),
                color: "#1f77b4",
                points: pts(&|s| Some(s.connected as f64)),
                right_axis: false,
            },
            Series {
                name: "live".into(),
                color: "#2ca02c",
                points: pts(&|s| Some(s.live as f64)),
                right_axis: false,
            },
            Series {
                name: "stalled (right axis)".into(),
                color: "#d62728",
                points: pts(&|s| Some(s.stalls as f64)),
                right_axis: true,
            },
        ],
    };
    (latency.render(), viewers.render())
}

/// The server's RSS and fds over time (`<report>-memory.svg`).
pub fn memory_plot(title: &str, timeline: &[Second]) -> String {
    Chart {
        title: format!("{title}: server memory and file descriptors"),
        x_label: "seconds".into(),
        y_label: "RSS, MiB".into(),
        y2_label: "open fds".into(),
        series: vec![
            Series {
                name: "RSS".into(),
                color: "#1f77b4",
                points: timeline
                    .iter()
                    .filter_map(|s| s.server_rss.map(|b| (s.t, b as f64 / 1048576.0)))
                    .collect(),
                right_axis: false,
            },
            Series {
                name: "fds (right axis)".into(),
                color: "#ff7f0e",
                points: timeline
                    .iter()
                    .filter_map(|s| s.server_fds.map(|f| (s.t, f as f64)))
                    .collect(),
                right_axis: true,
            },
        ],
    }
    .render()
}

/// Parse an ffmpeg bitrate (`1M`, `500k`, `800000`) into bits/s.
fn bits(b: &str) -> f64 {
    let (n, m) = match b.as_bytes().last() {
        Some(b'k' | b'K') => (&b[..b.len() - 1], 1e3),
        Some(b'm' | b'M') => (&b[..b.len() - 1], 1e6),
        _ => (b, 1.0),
    };
    n.parse::<f64>().unwrap_or(1e6) * m
}

/// Make the publisher's FLV from ffmpeg's test pattern.
fn generate(dir: &Path, i: usize, p: &scenario::Publisher) -> Result<PathBuf, String> {
    let (bitrate, seconds, fps) = (&p.bitrate, p.pattern_seconds, p.pattern_fps);
    let out = dir.join(format!("pattern-{i}.flv"));
    let b = bits(bitrate) as u64;
    let ffmpeg = std::env::var("FFMPEG").unwrap_or_else(|_| "ffmpeg".into());
    let mut cmd = Command::new(&ffmpeg);
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-f",
        "lavfi",
        "-i",
    ])
    .arg(format!(
        "testsrc2=size={}:rate={fps}:duration={seconds}",
        p.pattern_size
    ));
    if p.pattern_audio {
        cmd.args(["-f", "lavfi", "-i"]).arg(format!(
            "sine=frequency=1000:sample_rate=48000:duration={seconds}"
        ));
    }
    // A keyframe every 2 s.
    let gop = (2 * fps).to_string();
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-sc_threshold",
        "0",
    ])
    .arg("-b:v")
    .arg(b.to_string())
    .arg("-maxrate")
    .arg(b.to_string())
    .arg("-bufsize")
    .arg((2 * b).to_string());
    if p.pattern_audio {
        cmd.args(["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]);
    } else {
        cmd.arg("-an");
    }
    let o = cmd
        .args(["-shortest", "-y"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {ffmpeg} to generate the test pattern: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{ffmpeg} failed making the test pattern ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(out)
}

struct Running {
    stop: Arc<AtomicBool>,
    pubs: Vec<(String, Arc<SendTimes>, Publisher)>,
    groups: Vec<Group>,
}

impl Running {
    /// Stop and join the viewer threads (the publishers keep going).
    fn stop_viewers(&mut self) -> Option<String> {
        let mut failure = None;
        for g in &self.groups {
            g.stop();
        }
        for g in self.groups.drain(..) {
            for h in g.handles {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failure = Some(format!("{} viewer thread: {e}", g.name)),
                    Err(_) => failure = Some(format!("{} viewer thread panicked", g.name)),
                }
            }
        }
        failure
    }

    fn shutdown(mut self) -> Option<String> {
        let mut failure = self.stop_viewers();
        self.stop.store(true, Ordering::Relaxed);
        for (url, _, p) in self.pubs {
            match p.thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = Some(format!("publisher {url}: {e}")),
                Err(_) => failure = Some(format!("publisher {url} panicked")),
            }
        }
        failure
    }
}

fn http_dest(url: &str) -> Result<(SocketAddrV4, String, String), String> {
    crate::parse_url(url)
}

/// Start the viewer threads of group `i` (targets 0: nobody joins yet).
fn start_group(
    sc: &Scenario,
    i: usize,
    max_count: usize,
    times: Arc<SendTimes>,
    frame_ms: u32,
    sources: &Arc<Vec<std::net::Ipv4Addr>>,
    hls_wait: f64,
) -> Result<Group, String> {
    let v = &sc.viewers[i];
    let url = sc.viewer_url(i);
    let name = v
        .name
        .clone()
        .unwrap_or_else(|| format!("{}#{i}", v.protocol.name()));
    let threads = v.threads.min(max_count).max(1);
    // Ring table size: the viewers, plus room for connections still
    // closing while their replacements connect (churn, reconnects).
    let base = max_count.div_ceil(threads);
    let per_thread = (base + (v.churn / threads as f64).ceil() as usize * 2 + 16)
        .min(20_000)
        .max(base);
    let mut handles = Vec::new();
    let engine = match v.protocol {
        ViewProtocol::HttpFlv | ViewProtocol::HttpTs | ViewProtocol::Rtmp => {
            let (dest, proto) = if v.protocol == ViewProtocol::Rtmp {
                let u = parse_rtmp_url(&url)?;
                let (dest, _, _) = http_dest(&format!("http://{}/", u.hostport))?;
                (dest, Proto::Rtmp(Arc::new(u)))
            } else {
                let (dest, host, path) = http_dest(&url)?;
                let req = Arc::new(
                    format!(
                        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: spate-bench\r\nAccept: */*\r\n\r\n"
                    )
                    .into_bytes(),
                );
                let p = if v.protocol == ViewProtocol::HttpTs {
                    Proto::Ts(req)
                } else {
                    Proto::Flv(req)
                };
                (dest, p)
            };
            let shared = Arc::new(live_viewer::Shared::new(threads));
            // Stalls and latencies are sampled all the time; the control
            // thread decides which seconds count.
            shared.measuring.store(true, Ordering::Release);
            let (tx, rx) = mpsc::channel();
            for index in 0..threads {
                let plan = live_viewer::Plan {
                    index,
                    dest,
                    sources: sources.clone(),
                    max_viewers: per_thread,
                    proto: proto.clone(),
                    connect_concurrency: 256,
                    ramp_per_sec: v.ramp / threads as f64,
                    recv_bufs: 1024,
                    recv_buf_size: 16384,
                    stall_ms: frame_ms + v.stall_tolerance_ms,
                    churn_per_sec: v.churn / threads as f64,
                    learn_offset: true,
                    pin_cpu: None,
                };
                let (shared, times, tx) = (shared.clone(), times.clone(), tx.clone());
                handles.push(
                    std::thread::Builder::new()
                        .name(format!("g{i}-{index}"))
                        .spawn(move || live_viewer::run(plan, shared, times, tx))
                        .map_err(|e| format!("spawn: {e}"))?,
                );
            }
            Engine::Live { shared, rx }
        }
        ViewProtocol::Hls | ViewProtocol::Dash => {
            let dash = v.protocol == ViewProtocol::Dash;
            let (dest, host, path) = http_dest(&url)?;
            let mut timescale = None;
            let mut audio_path = None;
            let media_path = if dash {
                timescale = Some(wait_mpd(
                    dest,
                    &host,
                    &path,
                    3,
                    Duration::from_secs_f64(hls_wait),
                )?);
                path
            } else {
                let (media, m, audio) = crate::hls::resolve_media(
                    dest,
                    &host,
                    &path,
                    3,
                    Duration::from_secs_f64(hls_wait),
                )?;
                // fMP4 segments: their decode times are in the video
                // track's timescale, which only the init segment says.
                if let Some(map) = &m.map {
                    timescale = Some(init_timescale(dest, &host, &media, map)?);
                }
                if v.audio {
                    audio_path = audio.map(Arc::<str>::from);
                }
                media
            };
            let shared = Arc::new(hls_viewer::Shared::new(threads));
            shared.measuring.store(true, Ordering::Release);
            let (tx, rx) = mpsc::channel();
            let host: Arc<str> = host.into();
            let playlist_path: Arc<str> = media_path.into();
            let epoch = Instant::now();
            for index in 0..threads {
                let plan = hls_viewer::Plan {
                    index,
                    dest,
                    host: host.clone(),
                    playlist_path: playlist_path.clone(),
                    sources: sources.clone(),
                    max_viewers: per_thread,
                    connect_concurrency: 256,
                    ramp_per_sec: v.ramp / threads as f64,
                    spread: Duration::from_secs(2),
                    live_edge: 3.0,
                    timeout: Duration::from_secs(10),
                    recv_bufs: 1024,
                    recv_buf_size: 32768,
                    pin_cpu: None,
                    epoch,
                    dash,
                    audio: v.audio,
                    audio_playlist_path: audio_path.clone(),
                    times: Some(times.clone()),
                    fmp4_timescale: timescale,
                    churn_per_sec: v.churn / threads as f64,
                    e2e_every: v.e2e_every,
                    ts_offset_ms: v.ts_offset_ms,
                };
                let (shared, tx) = (shared.clone(), tx.clone());
                handles.push(
                    std::thread::Builder::new()
                        .name(format!("g{i}-{index}"))
                        .spawn(move || hls_viewer::run(plan, shared, tx))
                        .map_err(|e| format!("spawn: {e}"))?,
                );
            }
            Engine::Hls { shared, rx }
        }
    };
    Ok(Group {
        name,
        protocol: v.protocol,
        url,
        count: v.count,
        churn: v.churn,
        threads,
        engine,
        handles,
    })
}

/// The video timescale of the init segment `map` of the playlist at
/// `playlist_path`.
fn init_timescale(
    dest: SocketAddrV4,
    host: &str,
    playlist_path: &str,
    map: &str,
) -> Result<u64, String> {
    let path = crate::hls_playlist::resolve(playlist_path, map)
        .ok_or_else(|| format!("{playlist_path}: init segment URI {map:?} is not http"))?;
    match crate::hls::http_get(dest, host, &path)? {
        (200, body) => crate::fmp4scan::init_timescale(&body)
            .ok_or_else(|| format!("{path}: not an fMP4 init segment (no moov track timescale)")),
        (s, _) => Err(format!("{path}: init segment: HTTP {s}")),
    }
}

/// Wait until the MPD at `path` lists `want` segments of its video
/// Representation; returns that Representation's timescale.
fn wait_mpd(
    dest: SocketAddrV4,
    host: &str,
    path: &str,
    want: usize,
    wait: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + wait;
    loop {
        let last = match crate::hls::http_get(dest, host, path) {
            Ok((200, body)) => match crate::dash_mpd::parse_with_timescale(&body) {
                Ok((m, ts)) if m.segments.len() >= want => return Ok(ts),
                Ok((m, _)) => format!("{} segments listed", m.segments.len()),
                Err(e) => e,
            },
            Ok((s, _)) => format!("HTTP {s}"),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{path}: no MPD with {want} segments after {:.0} s (last: {last})",
                wait.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `startup`: every start-up of the step (most viewers start while
/// connecting, before measuring).
fn group_report(
    g: &Group,
    viewers: usize,
    t: &Totals,
    startup: &Histogram<u64>,
    seconds: f64,
) -> GroupReport {
    let (connected, live) = (g.connected(), g.live());
    let errors = t.errors();
    let (latency_kind, latency, startup, vs, svs, stalls, bytes, first_error) = match t {
        Totals::Live(s) => (
            "publisher-send-to-receipt",
            Dist::of(&s.latency),
            Dist::of(startup),
            s.viewer_seconds,
            s.stalled_viewer_seconds,
            s.stalled_viewer_seconds,
            s.bytes,
            s.first_error.clone(),
        ),
        Totals::Hls(s) => (
            "segment-fetch",
            Dist::of(&s.segment_latency),
            Dist::of(startup),
            s.viewers_active,
            s.viewers_stalled,
            s.stalls,
            s.bytes,
            s.first_error.clone(),
        ),
    };
    // Unmatched timestamps are an error only when most frames miss (a
    // server that rewrites timestamps: latency cannot be measured).
    let hard_errors: u64 = errors.values().sum();
    // A churning group is short of the viewers between a leave and the
    // replacement's first frame.
    let slack = g.churn.ceil() as usize;
    let churned = match t {
        Totals::Live(s) => s.churned,
        Totals::Hls(s) => s.churned,
    };
    let clean = connected + slack >= viewers
        && live + slack >= viewers
        && stalls == 0
        && hard_errors == 0
        && (latency.count > 0 || matches!(t, Totals::Hls(s) if s.segments > 0));
    GroupReport {
        name: g.name.clone(),
        protocol: g.protocol.name().into(),
        url: g.url.clone(),
        viewers,
        connected,
        live,
        latency_kind: latency_kind.into(),
        latency,
        end_to_end: match t {
            Totals::Hls(s) if s.e2e_matched + s.e2e_unmatched > 0 => Some(Dist::of(&s.e2e_latency)),
            _ => None,
        },
        startup,
        viewer_seconds: vs,
        stalled_viewer_seconds: svs,
        stalls,
        bytes,
        bytes_per_s: bytes as f64 / seconds.max(1e-9),
        churned,
        segments: match t {
            Totals::Hls(s) => s.segments,
            Totals::Live(_) => 0,
        },
        init_segments: 0,
        audio_segments: match t {
            Totals::Hls(s) => s.audio_segments,
            Totals::Live(_) => 0,
        },
        range_ignored: match t {
            Totals::Hls(s) => s.range_ignored,
            Totals::Live(_) => 0,
        },
        errors,
        timestamps: match t {
            Totals::Live(s) => Some(TimestampMatch {
                matched: s.ts_matched,
                unmatched: s.ts_unmatched,
                shifts: s.ts_shifts,
                future: 0,
            }),
            Totals::Hls(s) if s.e2e_matched + s.e2e_unmatched > 0 => Some(TimestampMatch {
                matched: s.e2e_matched,
                unmatched: s.e2e_unmatched,
                shifts: 0,
                future: s.e2e_future,
            }),
            Totals::Hls(_) => None,
        },
        first_error,
        clean,
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn print_step(s: &StepReport) {
    println!(
        "step ×{} ({} viewers, {:.1} s measured): {}",
        s.multiplier,
        s.viewers,
        s.seconds,
        if s.clean { "clean" } else { "NOT clean" }
    );
    println!(
        "  connections: {} at most at once; spate-bench's own open fds: {} at most",
        s.max_connected, s.client_fds_max
    );
    println!(
        "  {:<14} {:>7} {:>7} {:>7} | {:>8} {:>8} {:>8} | {:>9} | {:>7} {:>9} | {:>8} | {:>6}",
        "group",
        "viewers",
        "up",
        "live",
        "lat p50",
        "lat p99",
        "lat max",
        "start p50",
        "stalls",
        "of v-s",
        "Mbit/s",
        "errors"
    );
    for g in &s.groups {
        println!(
            "  {:<14} {:>7} {:>7} {:>7} | {:>8} {:>8} {:>8} | {:>9} | {:>7} {:>9} | {:>8.2} | {:>6}",
            g.name,
            g.viewers,
            g.connected,
            g.live,
            fmt_opt(g.latency.p50),
            fmt_opt(g.latency.p99),
            fmt_opt(g.latency.max),
            fmt_opt(g.startup.p50),
            g.stalls,
            g.viewer_seconds,
            g.bytes_per_s * 8.0 / 1e6,
            g.errors.values().sum::<u64>(),
        );
        if let Some(d) = &g.end_to_end {
            println!(
                "  {:<14} end to end (publisher send → segment complete): p50 {} p99 {} max {} ms over {} frames",
                "",
                fmt_opt(d.p50),
                fmt_opt(d.p99),
                fmt_opt(d.max),
                d.count
            );
            if let Some(m) = &g.timestamps
                && m.matched == 0
                && m.unmatched > 0
            {
                println!(
                    "  {:<14} WARNING: end to end NOT MEASURED: none of {} frames matched the publisher's send times (the server rewrote timestamps, or an HLS/DASH-only scenario continued a stream: add a live viewer group on it)",
                    "", m.unmatched
                );
            }
            if g.range_ignored > 0 {
                println!(
                    "  {:<14} note: {} ranged requests were answered 200 with the whole file (the server ignores Range): the bytes are the whole file's",
                    "", g.range_ignored
                );
            }
            if let Some(m) = &g.timestamps
                && m.future > 0
            {
                println!(
                    "  {:<14} WARNING: {} of {} frames carried timestamps newer than any frame sent when their segment arrived: the server adds a constant to its PTS/DTS (nginx-rtmp's HLS adds 700 ms), so end to end reads low; set `ts_offset_ms` on this group",
                    "",
                    m.future,
                    m.matched + m.unmatched
                );
            }
        }
        if let Some(e) = &g.first_error {
            println!("  {:<14} first error: {e}", "");
        }
    }
    if let Some(u) = &s.server {
        println!(
            "  server: CPU {} s ({} s/s), RSS {} → {} MiB (max {}), fds {} → {}",
            fmt_opt(u.cpu_seconds),
            fmt_opt(u.cpu_per_second),
            fmt_opt(u.rss_start.map(|b| b as f64 / 1048576.0)),
            fmt_opt(u.rss_end.map(|b| b as f64 / 1048576.0)),
            fmt_opt(u.rss_max.map(|b| b as f64 / 1048576.0)),
            u.fds_start.map_or("-".into(), |v| v.to_string()),
            u.fds_end.map_or("-".into(), |v| v.to_string()),
        );
    }
}

/// Run `spate-bench run`.
pub fn run(args: RunArgs) -> Result<ExitCode, String> {
    let mut sc = scenario::load(&args.scenario)?;
    if let Some(t) = &args.target {
        sc.target.http = t.clone();
    }
    if let Some(r) = &args.rtmp {
        sc.target.rtmp = r.clone();
    }
    if let Some(l) = &args.label {
        sc.label = l.clone();
    }
    // Re-check with the overrides (bases must be scheme://host:port).
    sc.check()
        .map_err(|e| format!("{e} (with --target/--rtmp applied)"))?;
    let pid = args.server_pid.or(sc.server.pid);
    let server = match pid {
        Some(p) if sc.server.with_children => ServerProcs::resolve(&[], &[p]),
        Some(p) => ServerProcs::resolve(&[p], &[]),
        None => Ok(ServerProcs::default()),
    }
    .map_err(|e| format!("server process: {e}"))?;
    let sources = Arc::new(crate::parse_sources(&args.sources)?);
    let multipliers: Vec<f64> = if args.find_max {
        sc.find_max.steps.clone()
    } else {
        vec![1.0]
    };
    let max_mult = multipliers.iter().copied().fold(1.0, f64::max);
    let scaled = |count: usize, m: f64| ((count as f64 * m).round() as usize).max(1);
    for (i, v) in sc.viewers.iter().enumerate() {
        let n = scaled(v.count, max_mult);
        if n.div_ceil(v.threads) > 20_000 {
            return Err(format!(
                "viewers[{i}]: {n} viewers at the largest step over {} thread(s) is more than 20,000 per ring; raise threads",
                v.threads
            ));
        }
    }

    // Publisher sources.
    let tmp = std::env::temp_dir().join(format!("spate-bench-{}", std::process::id()));
    let mut sources_of_group = Vec::new();
    for (i, p) in sc.publisher.iter().enumerate() {
        let src = match (&p.source, &p.pattern) {
            // A relative source is relative to the scenario file.
            (Some(s), _) if s.is_relative() => {
                args.scenario.parent().unwrap_or(Path::new("")).join(s)
            }
            (Some(s), _) => s.clone(),
            (None, _) => {
                std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
                eprintln!(
                    "spate-bench run: generating publisher[{i}]'s test pattern ({} s at {})",
                    p.pattern_seconds, p.bitrate
                );
                generate(&tmp, i, p)?
            }
        };
        let src = src.to_string_lossy().into_owned();
        let interval = live_publish::video_interval_ms(&src)?;
        sources_of_group.push((src, interval));
    }

    let streams = sc.streams();
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Running {
        stop: stop.clone(),
        pubs: Vec::new(),
        groups: Vec::new(),
    };
    let started = (|| -> Result<(), String> {
        for s in &streams {
            let times = Arc::new(SendTimes::new());
            let source = &sources_of_group[s.group].0;
            let reconnect_every = sc.publisher[s.group]
                .reconnect_every
                .map(Duration::from_secs_f64);
            let p = match sc.publisher[s.group].protocol {
                PublishProtocol::Rtmp => live_publish::start_with_reconnects(
                    &parse_rtmp_url(&s.url)?,
                    source,
                    times.clone(),
                    stop.clone(),
                    reconnect_every,
                )?,
                PublishProtocol::UdpTs | PublishProtocol::RtpTs => ts_publish::start(
                    &scenario::parse_udp_url(&s.url)?,
                    source,
                    times.clone(),
                    stop.clone(),
                    reconnect_every,
                )?,
            };
            eprintln!(
                "spate-bench run: publishing ({}) {}",
                sc.publisher[s.group].protocol.name(),
                s.url
            );
            running.pubs.push((s.url.clone(), times, p));
        }
        // Let the streams come up before the viewers ask.
        std::thread::sleep(Duration::from_millis(1000));
        for i in 0..sc.viewers.len() {
            let v = &sc.viewers[i];
            let times = running.pubs[v.stream].1.clone();
            let frame_ms = sources_of_group[streams[v.stream].group].1;
            let g = start_group(
                &sc,
                i,
                scaled(v.count, max_mult),
                times,
                frame_ms,
                &sources,
                args.hls_wait,
            )?;
            eprintln!(
                "spate-bench run: {}: {} viewers of {}",
                g.name, v.count, g.url
            );
            running.groups.push(g);
        }
        Ok(())
    })();
    if let Err(e) = started {
        let _ = running.shutdown();
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }

    // Reported with the soak verdict; its baseline is the first measured
    // second's count, like RSS's.
    let fds_before_viewers = server.fd_count().ok().filter(|_| !server.is_empty());
    let mut steps = Vec::new();
    let mut failure = None;
    for &m in &multipliers {
        match run_step(&sc, &args, &running, &server, m) {
            Ok(s) => {
                print_step(&s);
                let clean = s.clean;
                steps.push(s);
                if running
                    .pubs
                    .iter()
                    .any(|p| p.1.stopped.load(Ordering::Relaxed))
                {
                    failure = Some("a publisher stopped".to_string());
                    break;
                }
                if args.find_max && !clean {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(f) = running.stop_viewers() {
        failure.get_or_insert(f);
    }
    let soak = sc.soak.as_ref().map(|rule| {
        // Let the server close what the viewers left.
        std::thread::sleep(Duration::from_secs_f64(rule.settle));
        let fds_after = server.fd_count().ok().filter(|_| !server.is_empty());
        let reconnects = running
            .pubs
            .iter()
            .map(|p| p.1.reconnects.load(Ordering::Relaxed))
            .sum();
        soak_verdict(
            rule,
            steps.last(),
            fds_before_viewers,
            fds_after,
            reconnects,
        )
    });
    let publisher_times: Vec<(String, Arc<SendTimes>)> = running
        .pubs
        .iter()
        .map(|(url, t, _)| (url.clone(), t.clone()))
        .collect();
    if let Some(f) = running.shutdown() {
        failure.get_or_insert(f);
    }
    let publishers: Vec<PublisherReport> = publisher_times
        .iter()
        .zip(&streams)
        .map(|((url, t), plan)| PublisherReport {
            url: url.clone(),
            protocol: sc.publisher[plan.group].protocol.name().into(),
            frames_sent: t.frames_sent.load(Ordering::Relaxed),
            bytes_sent: t.bytes_sent.load(Ordering::Relaxed),
            reconnects: t.reconnects.load(Ordering::Relaxed),
        })
        .collect();
    for p in &publishers {
        println!(
            "publisher ({}) {}: {} video frames, {:.1} MB sent, {} reconnects",
            p.protocol,
            p.url,
            p.frames_sent,
            p.bytes_sent as f64 / 1e6,
            p.reconnects
        );
    }
    if let Some(v) = &soak {
        println!(
            "soak: {} — RSS after warm-up {} MiB, at the end {} MiB ({}), fds after warm-up {} (before the viewers {}) → {} after the viewers left, {} viewers lost, {} publisher reconnects{}",
            if v.pass { "PASS" } else { "FAIL" },
            fmt_opt(v.rss_after_warmup.map(|b| b as f64 / 1048576.0)),
            fmt_opt(v.rss_end.map(|b| b as f64 / 1048576.0)),
            v.rss_change
                .map_or("-".into(), |c| format!("{:+.1}%", c * 100.0)),
            v.fds_baseline.map_or("-".into(), |f| f.to_string()),
            v.fds_before_viewers.map_or("-".into(), |f| f.to_string()),
            v.fds_after.map_or("-".into(), |f| f.to_string()),
            v.lost_viewers,
            v.publisher_reconnects,
            if v.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", v.reasons.join("; "))
            }
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let max_clean_viewers = steps
        .iter()
        .take_while(|s| s.clean)
        .map(|s| s.viewers)
        .last();
    if args.find_max {
        match max_clean_viewers {
            Some(n) => println!("largest clean step: {n} viewers"),
            None => println!("no clean step"),
        }
    }
    if let Some(f) = &failure {
        eprintln!("spate-bench run: {f}");
    }
    let report = Report {
        mode: "scenario".into(),
        label: sc.label.clone(),
        scenario: args.scenario.display().to_string(),
        target_http: sc.target.http.clone(),
        target_rtmp: sc.target.rtmp.clone(),
        streams: streams.iter().map(|s| s.url.clone()).collect(),
        publishers,
        duration: sc.duration,
        warmup: sc.warmup,
        find_max: args.find_max,
        max_clean_viewers,
        steps,
        soak: soak.clone(),
        failure: failure.clone(),
    };
    if let Some(path) = &args.json {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let j = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, j + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        let timeline: Vec<Second> = report
            .steps
            .iter()
            .scan(0.0, |offset, s| {
                let base = *offset;
                *offset += s.timeline.last().map_or(0.0, |l| l.t + 1.0);
                Some(s.timeline.iter().map(move |x| Second {
                    t: x.t + base,
                    ..x.clone()
                }))
            })
            .flatten()
            .collect();
        let title = if sc.label.is_empty() {
            args.scenario.display().to_string()
        } else {
            sc.label.clone()
        };
        let (lat, view) = plots(&title, &timeline);
        let (lp, vp) = plot_paths(path);
        std::fs::write(&lp, lat).map_err(|e| format!("{}: {e}", lp.display()))?;
        std::fs::write(&vp, view).map_err(|e| format!("{}: {e}", vp.display()))?;
        if !server.is_empty() {
            let mp = vp.with_file_name(
                vp.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .replace("-viewers.svg", "-memory.svg"),
            );
            std::fs::write(&mp, memory_plot(&title, &timeline))
                .map_err(|e| format!("{}: {e}", mp.display()))?;
        }
        eprintln!(
            "spate-bench run: wrote {}, {}, {}",
            path.display(),
            lp.display(),
            vp.display()
        );
    }
    let ok = failure.is_none()
        && report.soak.as_ref().is_none_or(|v| v.pass)
        && report
            .steps
            .last()
            .is_some_and(|s| s.clean || args.find_max && max_clean_viewers.is_some());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_step(
    sc: &Scenario,
    args: &RunArgs,
    r: &Running,
    server: &ServerProcs,
    m: f64,
) -> Result<StepReport, String> {
    let targets: Vec<usize> = r
        .groups
        .iter()
        .map(|g| ((g.count as f64 * m).round() as usize).max(1))
        .collect();
    let total: usize = targets.iter().sum();
    // Drop what was measured before this step.
    for g in &r.groups {
        g.collect()?;
    }
    for (g, &n) in r.groups.iter().zip(&targets) {
        g.set_target(n);
    }
    let t0 = Instant::now();
    let mut timeline = Vec::new();
    let mut totals: Vec<Totals> = r.groups.iter().map(Group::empty).collect();
    let mut startups: Vec<Histogram<u64>> = r
        .groups
        .iter()
        .map(|_| Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds"))
        .collect();
    // Init segments of the whole step: players fetch them as they join.
    let mut inits = vec![0u64; r.groups.len()];
    let mut phase = "connect";
    let mut phase_end: Option<Instant> = None;
    let connect_deadline = t0 + Duration::from_secs_f64(args.connect_deadline);
    let mut measure_start = None;
    let mut cpu_prev = server.cpu_seconds().ok().filter(|_| !server.is_empty());
    let mut self_prev = crate::procstat::self_cpu_seconds();
    let mut machine_prev = crate::procstat::MachineCpu::now();
    let (mut cpu_measured, mut rss_start, mut rss_end, mut rss_max) = (0.0, None, None, None);
    let (mut fds_start, mut fds_end) = (None, None);
    let mut next = t0 + Duration::from_secs(1);
    loop {
        // Sleep to the next second, leaving early when the viewers of the
        // connect phase are all live.
        while Instant::now() < next {
            if phase == "connect" && all_live(r, &targets) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let now = Instant::now();
        let mut sec = Totals::Live(live_viewer::Stats::new());
        let mut stalls = 0;
        let mut per_group = Vec::new();
        for g in &r.groups {
            let t = g.collect()?;
            stalls += t.stalled();
            if let Totals::Live(s) = &t {
                sec.merge(&Totals::Live(s.clone()));
            }
            per_group.push(t);
        }
        let Totals::Live(sec) = sec else {
            unreachable!()
        };
        let cpu = server.cpu_seconds().ok().filter(|_| !server.is_empty());
        let rss = server.rss_bytes().ok().filter(|_| !server.is_empty());
        let fds = server.fd_count().ok().filter(|_| !server.is_empty());
        let cpu_delta = cpu.zip(cpu_prev).map(|(a, b)| a - b);
        cpu_prev = cpu;
        let self_now = crate::procstat::self_cpu_seconds();
        let machine_now = crate::procstat::MachineCpu::now();
        let client_cpu = self_now - self_prev;
        let m = machine_prev.delta(&machine_now);
        let other_cpu = (m.total - m.idle - m.irq - client_cpu - cpu_delta.unwrap_or(0.0)).max(0.0);
        self_prev = self_now;
        machine_prev = machine_now;
        let connected: usize = r.groups.iter().map(Group::connected).sum();
        let live: usize = r.groups.iter().map(Group::live).sum();
        let client_fds = crate::procstat::self_fd_count();
        let p =
            |q| (!sec.latency.is_empty()).then(|| sec.latency.value_at_quantile(q) as f64 / 1000.0);
        let row = Second {
            t: (now - t0).as_secs_f64(),
            phase: phase.into(),
            connected,
            live,
            stalls,
            p50_ms: p(0.5),
            p99_ms: p(0.99),
            server_cpu: cpu_delta,
            server_rss: rss,
            server_fds: fds,
            client_cpu,
            other_cpu,
            client_fds,
        };
        if !args.quiet {
            eprintln!(
                "[{:>5.1}s {:<7}] viewers {connected}/{total} live {live} stalled {stalls} p99 {} ms, CPU bench {:.2} other {:.2}, bench fds {client_fds}{}",
                row.t,
                phase,
                fmt_opt(row.p99_ms),
                client_cpu,
                other_cpu,
                rss.map_or(String::new(), |b| format!(
                    " server RSS {:.1} MiB",
                    b as f64 / 1048576.0
                )),
            );
        }
        for (h, t) in startups.iter_mut().zip(&per_group) {
            h.add(t.startup()).expect("same bounds");
        }
        for (n, t) in inits.iter_mut().zip(&per_group) {
            if let Totals::Hls(s) = t {
                *n += s.inits;
            }
        }
        if phase == "measure" {
            for (t, s) in totals.iter_mut().zip(&per_group) {
                t.merge(s);
            }
            cpu_measured += cpu_delta.unwrap_or(0.0);
            rss_start = rss_start.or(rss);
            rss_end = rss.or(rss_end);
            rss_max = rss_max.max(rss);
            fds_start = fds_start.or(fds);
            fds_end = fds.or(fds_end);
        }
        timeline.push(row);
        if r.pubs.iter().any(|p| p.1.stopped.load(Ordering::Relaxed)) {
            return Err("a publisher stopped".into());
        }
        match phase {
            "connect" => {
                let all_live = all_live(r, &targets);
                if all_live || now >= connect_deadline {
                    if !all_live {
                        eprintln!(
                            "spate-bench run: only {live} of {total} viewers live after {:.0} s; measuring anyway",
                            args.connect_deadline
                        );
                    }
                    phase = "warmup";
                    phase_end = Some(now + Duration::from_secs_f64(sc.warmup));
                }
            }
            "warmup" if phase_end.is_some_and(|e| now >= e) => {
                phase = "measure";
                measure_start = Some(now);
                let d = if args.find_max {
                    sc.find_max.step_duration
                } else {
                    sc.duration
                };
                phase_end = Some(now + Duration::from_secs_f64(d));
            }
            "measure" if phase_end.is_some_and(|e| now + Duration::from_millis(100) >= e) => break,
            _ => {}
        }
        next = now + Duration::from_secs(1);
        if phase != "connect"
            && let Some(e) = phase_end
        {
            // Never overshoot the end of a phase by more than a tick.
            next = next.min(e.max(now + Duration::from_millis(50)));
        }
    }
    let seconds = measure_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let groups: Vec<GroupReport> = r
        .groups
        .iter()
        .zip(&totals)
        .zip(&targets)
        .zip(&startups)
        .zip(&inits)
        .map(|((((g, t), &n), h), &i)| GroupReport {
            init_segments: i,
            ..group_report(g, n, t, h, seconds)
        })
        .collect();
    let clean =
        groups.iter().all(|g| g.clean) && stall_ratio_ok(&groups, sc.find_max.max_stall_ratio);
    Ok(StepReport {
        multiplier: m,
        viewers: total,
        seconds,
        clean,
        groups,
        server: (!server.is_empty()).then(|| ServerUsage {
            pids: server.pids.clone(),
            cpu_seconds: Some(cpu_measured),
            cpu_per_second: Some(cpu_measured / seconds.max(1e-9)),
            rss_start,
            rss_end,
            rss_max,
            fds_start,
            fds_end,
        }),
        max_connected: timeline.iter().map(|s| s.connected).max().unwrap_or(0),
        client_fds_max: timeline.iter().map(|s| s.client_fds).max().unwrap_or(0),
        timeline,
    })
}

/// Every group has its viewers live (less its churn slack).
fn all_live(r: &Running, targets: &[usize]) -> bool {
    r.groups
        .iter()
        .zip(targets)
        .all(|(g, &n)| g.live() + g.churn.ceil() as usize >= n)
}

fn stall_ratio_ok(groups: &[GroupReport], max: f64) -> bool {
    let vs: u64 = groups.iter().map(|g| g.viewer_seconds).sum();
    let st: u64 = groups.iter().map(|g| g.stalled_viewer_seconds).sum();
    vs == 0 || st as f64 / vs as f64 <= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_of_merged_histograms() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
        let mut b = a.clone();
        for v in 1..=50u64 {
            a.record(v * 1000).unwrap();
        }
        for v in 51..=100u64 {
            b.record(v * 1000).unwrap();
        }
        a.add(&b).unwrap();
        let d = Dist::of(&a);
        assert_eq!(d.count, 100);
        assert!((d.p50.unwrap() - 50.0).abs() < 0.1, "{d:?}");
        assert!((d.p99.unwrap() - 99.0).abs() < 0.1, "{d:?}");
        assert!((d.max.unwrap() - 100.0).abs() < 0.1, "{d:?}");
        assert_eq!(Dist::of(&Histogram::new(3).unwrap()), Dist::default());
    }

    #[test]
    fn totals_merge_and_stalls() {
        let mut a = Totals::Live(live_viewer::Stats::new());
        let mut s = live_viewer::Stats::new();
        s.stalled_viewer_seconds = 2;
        s.disconnects = 1;
        s.latency.record(1500).unwrap();
        a.merge(&Totals::Live(s.clone()));
        a.merge(&Totals::Live(s));
        assert_eq!(a.stalled(), 4);
        assert_eq!(a.errors()["disconnect"], 2);
        let Totals::Live(l) = &a else { unreachable!() };
        assert_eq!(l.latency.len(), 2);
        let mut h = Totals::Hls(hls_viewer::Stats::new());
        let mut hs = hls_viewer::Stats::new();
        hs.viewers_stalled = 3;
        hs.errors.timeout = 1;
        h.merge(&Totals::Hls(hs));
        assert_eq!(h.stalled(), 3);
        assert_eq!(h.errors()["timeout"], 1);
    }

    #[test]
    fn plot_paths_and_plots() {
        let (a, b) = plot_paths(Path::new("/tmp/x/run1.json"));
        assert_eq!(a, Path::new("/tmp/x/run1-latency.svg"));
        assert_eq!(b, Path::new("/tmp/x/run1-viewers.svg"));
        let tl: Vec<Second> = (0..5)
            .map(|i| Second {
                t: f64::from(i),
                phase: "measure".into(),
                connected: 10,
                live: 10,
                stalls: u64::from(i == 3),
                p50_ms: (i != 2).then_some(1.0),
                p99_ms: Some(2.0 + f64::from(i)),
                server_cpu: None,
                server_rss: None,
                server_fds: None,
                client_cpu: 0.0,
                other_cpu: 0.0,
                client_fds: 0,
            })
            .collect();
        let (l, v) = plots("t", &tl);
        crate::svg::check(&l).unwrap();
        crate::svg::check(&v).unwrap();
    }

    fn step_with(rss: (u64, u64), errors: u64) -> StepReport {
        step_fds(rss, errors, Some(10))
    }

    /// `fds`: the server's fds at the first measured second.
    fn step_fds(rss: (u64, u64), errors: u64, fds: Option<u64>) -> StepReport {
        StepReport {
            multiplier: 1.0,
            viewers: 1,
            seconds: 1.0,
            clean: true,
            groups: vec![GroupReport {
                name: "g".into(),
                protocol: "http-flv".into(),
                url: String::new(),
                viewers: 1,
                connected: 1,
                live: 1,
                latency_kind: String::new(),
                latency: Dist::default(),
                end_to_end: None,
                startup: Dist::default(),
                viewer_seconds: 1,
                stalled_viewer_seconds: 0,
                stalls: 0,
                bytes: 0,
                bytes_per_s: 0.0,
                churned: 0,
                segments: 0,
                init_segments: 0,
                audio_segments: 0,
                range_ignored: 0,
                errors: [("disconnect".to_string(), errors)].into(),
                timestamps: None,
                first_error: None,
                clean: true,
            }],
            server: Some(ServerUsage {
                pids: vec![1],
                cpu_seconds: None,
                cpu_per_second: None,
                rss_start: Some(rss.0),
                rss_end: Some(rss.1),
                rss_max: Some(rss.1),
                fds_start: fds,
                fds_end: fds,
            }),
            max_connected: 1,
            client_fds_max: 0,
            timeline: vec![],
        }
    }

    #[test]
    fn soak_rss_uses_window_medians_of_the_timeline() {
        let second = |t: usize, rss: u64| Second {
            t: t as f64,
            phase: "measure".into(),
            connected: 1,
            live: 1,
            stalls: 0,
            p50_ms: None,
            p99_ms: None,
            server_cpu: None,
            server_rss: Some(rss),
            server_fds: Some(10),
            client_cpu: 0.0,
            other_cpu: 0.0,
            client_fds: 0,
        };
        let rule = scenario::Soak {
            rss_tolerance: 0.05,
            settle: 0.0,
        };
        // A sawtooth 94..=106 with no trend: the single samples at its ends
        // (94 -> 106, +12.8%) would fail; the window medians pass.
        let mut step = step_with((94, 106), 0);
        step.timeline = (0..600).map(|t| second(t, 94 + (t as u64 % 13))).collect();
        step.timeline[0].server_rss = Some(94);
        step.timeline[599].server_rss = Some(106);
        let v = soak_verdict(&rule, Some(&step), Some(10), Some(10), 0);
        assert!(v.pass, "{v:?}");
        // A steady climb of 10% fails whatever the windows.
        step.timeline = (0..600).map(|t| second(t, 1000 + t as u64 / 6)).collect();
        let v = soak_verdict(&rule, Some(&step), Some(10), Some(10), 0);
        assert!(!v.pass && v.reasons[0].contains("RSS"), "{v:?}");
        // Too few seconds: the two samples decide.
        assert_eq!(rss_window_medians(&step.timeline[..5]), None);
    }

    #[test]
    fn soak_rule() {
        let rule = scenario::Soak {
            rss_tolerance: 0.05,
            settle: 0.0,
        };
        let v = soak_verdict(
            &rule,
            Some(&step_with((100, 104), 0)),
            Some(10),
            Some(10),
            9,
        );
        assert!(v.pass, "{v:?}");
        assert_eq!(v.publisher_reconnects, 9);
        assert!((v.rss_change.unwrap() - 0.04).abs() < 1e-9);
        let v = soak_verdict(
            &rule,
            Some(&step_with((100, 106), 0)),
            Some(10),
            Some(10),
            0,
        );
        assert!(!v.pass && v.reasons[0].contains("RSS"), "{v:?}");
        let v = soak_verdict(&rule, Some(&step_with((100, 94), 0)), Some(10), Some(10), 0);
        assert!(!v.pass, "{v:?}");
        let v = soak_verdict(
            &rule,
            Some(&step_with((100, 100), 0)),
            Some(10),
            Some(12),
            0,
        );
        assert!(!v.pass && v.reasons[0].contains("fds"), "{v:?}");
        let v = soak_verdict(
            &rule,
            Some(&step_with((100, 100), 2)),
            Some(10),
            Some(10),
            0,
        );
        assert!(!v.pass && v.lost_viewers == 2, "{v:?}");
        assert!(!soak_verdict(&rule, None, None, None, 0).pass);
        // The baseline is after warm-up: fds made during warm-up and kept
        // (segment-store arenas: 18 before the viewers, 20 from warm-up on)
        // pass; the count before the viewers is reported.
        let v = soak_verdict(
            &rule,
            Some(&step_fds((100, 100), 0, Some(20))),
            Some(18),
            Some(20),
            0,
        );
        assert!(v.pass, "{v:?}");
        assert_eq!(
            (v.fds_before_viewers, v.fds_baseline, v.fds_after),
            (Some(18), Some(20), Some(20))
        );
        // Fewer after the viewers left (a server whose fds move with its
        // viewers) passes; one more than after warm-up fails.
        let v = soak_verdict(
            &rule,
            Some(&step_fds((100, 100), 0, Some(1420))),
            Some(18),
            Some(20),
            0,
        );
        assert!(v.pass, "{v:?}");
        let v = soak_verdict(
            &rule,
            Some(&step_fds((100, 100), 0, Some(20))),
            Some(18),
            Some(21),
            0,
        );
        assert!(!v.pass && v.reasons[0].contains("after warm-up"), "{v:?}");
        // No fd sample after warm-up: not judged as passing.
        let v = soak_verdict(
            &rule,
            Some(&step_fds((100, 100), 0, None)),
            Some(18),
            Some(18),
            0,
        );
        assert!(!v.pass && v.reasons[0].contains("fd"), "{v:?}");
        crate::svg::check(&memory_plot("m", &[])).unwrap();
    }

    #[test]
    fn bitrates() {
        assert_eq!(bits("1M"), 1e6);
        assert_eq!(bits("500k"), 5e5);
        assert_eq!(bits("800000"), 8e5);
    }
}
