//! `spate-bench hls`: N live-HLS viewers that behave like players (poll the
//! media playlist every target duration, fetch each new segment once, in
//! order, on one keep-alive connection each), with a playback-deadline
//! model per viewer that counts stalls. Optionally publishes an FLV file
//! over RTMP first (the live bench's publisher), so one command measures a
//! whole ingest → HLS path. See `hls_viewer.rs` (viewer behaviour),
//! `hls_playback.rs` (stall model), `hls_playlist.rs` (parser).
//!
//! ```text
//! spate-bench hls http://127.0.0.1:8080/hls/live+bench/index.m3u8 --viewers N --duration S
//!     [--publish src.flv --rtmp-url rtmp://127.0.0.1:1935/live/live+bench]
//!     [--sources 127.0.0.2-127.0.0.40] [--server-pid PID]... [--server-pids-from PID]...
//!     [--json OUT] [--find-max [--steps 500,1000,...]]
//! ```
//! The URL may name a media playlist or a multivariant one; of the latter
//! the first variant is followed (resolved once, before the viewers start).
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::hls_playlist::{self, MediaPlaylist, Playlist};
use crate::hls_viewer::{self, PHASE_STOP, Plan, Shared, Stats};
use crate::httpbody::{Framing, response_framing};
use crate::live_publish::{self, SendTimes};
use crate::live_rtmp::parse_rtmp_url;
use crate::procstat::{self, ServerProcs};

/// Arguments of `spate-bench hls`.
#[derive(Debug, clap::Args)]
pub struct HlsArgs {
    /// http://HOST:PORT/PATH of a media playlist, or of a multivariant
    /// playlist (its first variant is followed).
    url: String,
    /// Viewers (ignored with --find-max).
    #[arg(short = 'n', long, default_value_t = 100)]
    viewers: usize,
    /// Seconds to measure (per step with --find-max, see --step-duration).
    #[arg(short = 'd', long, default_value_t = 30.0)]
    duration: f64,
    /// FLV file to publish over RTMP (looped, real-time pace) before and
    /// while the viewers run; needs --rtmp-url.
    #[arg(long)]
    publish: Option<PathBuf>,
    /// Where --publish goes: rtmp://HOST:PORT/APP/NAME.
    #[arg(long)]
    rtmp_url: Option<String>,
    /// Before starting viewers, wait until the media playlist lists this
    /// many segments.
    #[arg(long, default_value_t = 4)]
    wait_segments: usize,
    /// Seconds to wait for that.
    #[arg(long, default_value_t = 40.0)]
    wait: f64,
    /// Join this many target durations before the end of the playlist
    /// (hls.js liveSyncDurationCount); 0 = the newest segment.
    #[arg(long, default_value_t = 3.0)]
    live_edge: f64,
    /// New viewers per second, all threads together (0: all at once, their
    /// first polls spread over --spread seconds).
    #[arg(long, default_value_t = 1000.0)]
    ramp: f64,
    /// Seconds over which first polls are spread when --ramp is 0.
    #[arg(long, default_value_t = 2.0)]
    spread: f64,
    /// Seconds to measure the server's CPU with the stream up and no
    /// viewers (ingest and packaging), before the viewers start.
    #[arg(long, default_value_t = 2.0)]
    baseline: f64,
    /// Seconds after every viewer is playing before measuring.
    #[arg(long, default_value_t = 4.0)]
    warmup: f64,
    /// Seconds a request may wait for its complete response before it
    /// counts as a timeout (the connection is replaced, the request retried).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Viewer threads, one io_uring each (each holds at most 20,000 viewers).
    #[arg(short = 't', long, default_value_t = 2)]
    threads: usize,
    /// Source addresses for viewers, round robin: `A-B`, `A,B,C` or `A`.
    #[arg(long, default_value = "127.0.0.2-127.0.0.40")]
    sources: String,
    /// Server process to measure (CPU); repeatable.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Server process measured with its direct children (nginx master); repeatable.
    #[arg(long)]
    server_pids_from: Vec<u32>,
    /// Ramp viewers in steps; report the largest clean step (every viewer
    /// playing, no stall, no error, p99 within --max-p99-ms if given).
    #[arg(long)]
    find_max: bool,
    /// Steps for --find-max.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "500,1000,2000,3000,5000,7500,10000,15000,20000"
    )]
    steps: Vec<usize>,
    /// Seconds measured per --find-max step.
    #[arg(long, default_value_t = 20.0)]
    step_duration: f64,
    /// --find-max: largest acceptable segment fetch p99, ms (none: no bound).
    #[arg(long)]
    max_p99_ms: Option<f64>,
    /// Seconds to wait for the viewers of a step to be playing.
    #[arg(long, default_value_t = 120.0)]
    connect_deadline: f64,
    /// Connect attempts in flight per thread.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Provided receive buffers per thread (power of two ≤ 32768).
    #[arg(long, default_value_t = 2048)]
    recv_bufs: u16,
    /// Bytes per receive buffer.
    #[arg(long, default_value_t = 32768)]
    recv_buf_size: u32,
    /// CPUs to pin viewer threads to, comma separated.
    #[arg(long, value_delimiter = ',')]
    pin_cpus: Vec<usize>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label copied into the output (e.g. the server's name).
    #[arg(long, default_value = "")]
    label: String,
}

/// One measured step.
#[derive(Debug)]
struct StepResult {
    viewers: usize,
    connected: usize,
    playing: usize,
    up_seconds: f64,
    seconds: f64,
    stats: Stats,
    /// Errors while the step's viewers joined and warmed up.
    join_errors: u64,
    server_cpu: Option<f64>,
    /// Server CPU seconds per second with no viewers (ingest, packaging).
    baseline_cpu_per_s: Option<f64>,
    client_cpu: f64,
    other_cpu: f64,
    machine: procstat::MachineCpu,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn pct(h: &hdrhistogram::Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| ms(h.value_at_quantile(q)))
}

fn num(v: Option<f64>, d: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or("null".into(), |v| format!("{v:.d$}"))
}

impl StepResult {
    fn errors(&self) -> u64 {
        self.stats.errors.total() + self.join_errors
    }
    fn mbit_s(&self) -> f64 {
        self.stats.bytes as f64 * 8.0 / self.seconds / 1e6
    }
    /// Server CPU cores busy on average.
    fn server_cores(&self) -> Option<f64> {
        self.server_cpu.map(|c| c / self.seconds)
    }
    fn viewers_per_core(&self) -> Option<f64> {
        self.server_cores()
            .filter(|&c| c > 0.0)
            .map(|c| self.viewers as f64 / c)
    }
    /// Server CPU µs per HTTP request (segments + playlists), the
    /// no-viewer baseline (ingest, packaging) taken off first.
    fn cpu_us_per_request(&self) -> Option<f64> {
        let reqs = self.stats.segments + self.stats.playlists;
        let base = self.baseline_cpu_per_s.unwrap_or(0.0) * self.seconds;
        self.server_cpu
            .filter(|_| reqs > 0)
            .map(|c| (c - base).max(0.0) * 1e6 / reqs as f64)
    }
    fn clean(&self, max_p99_ms: Option<f64>) -> bool {
        self.connected == self.viewers
            && self.playing == self.viewers
            && self.stats.viewers_active == self.viewers as u64
            && self.stats.stalls == 0
            && self.errors() == 0
            && max_p99_ms
                .is_none_or(|m| pct(&self.stats.segment_latency, 0.99).is_some_and(|p| p <= m))
    }

    fn json(&self, out: &mut String, max_p99_ms: Option<f64>) {
        let s = &self.stats;
        let e = &s.errors;
        let h = |h: &hdrhistogram::Histogram<u64>| {
            format!(
                "{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{},\"count\":{}}}",
                num(pct(h, 0.5), 3),
                num(pct(h, 0.9), 3),
                num(pct(h, 0.99), 3),
                num(pct(h, 0.999), 3),
                num((!h.is_empty()).then(|| ms(h.max())), 3),
                h.len()
            )
        };
        let _ = write!(
            out,
            "{{\"viewers\":{},\"connected\":{},\"playing\":{},\"active\":{},\"up_seconds\":{:.2},\"seconds\":{:.3},\
             \"segment_ms\":{},\"playlist_ms\":{},\"margin_ms\":{{\"min\":{},\"p01\":{},\"p50\":{}}},\
             \"segments\":{},\"playlists\":{},\"playlists_unchanged\":{},\
             \"stalls\":{},\"starved_at_end\":{},\"viewers_stalled\":{},\"stalled_s\":{:.3},\
             \"errors\":{{\"connect\":{},\"timeout\":{},\"closed\":{},\"reset\":{},\"not_found_segment\":{},\
             \"not_found_playlist\":{},\"bad_status\":{},\"parse\":{},\"skipped\":{},\"during_join\":{},\"total\":{}}},\
             \"reconnects\":{},\"idle_closes\":{},\"nobufs\":{},\
             \"bytes\":{},\"segment_bytes\":{},\"mbit_s\":{:.2},\"mb_s\":{:.3},\
             \"server_cpu_s\":{},\"baseline_cpu_per_s\":{},\"server_cores\":{},\"viewers_per_server_core\":{},\"server_cpu_us_per_request\":{},\
             \"client_cpu_s\":{:.3},\"other_cpu_s\":{:.3},\"machine_busy\":{:.3},\"machine_user_s\":{:.3},\"machine_system_s\":{:.3},\"machine_irq_s\":{:.3},\"clean\":{},\"first_error\":{}}}",
            self.viewers,
            self.connected,
            self.playing,
            s.viewers_active,
            self.up_seconds,
            self.seconds,
            h(&s.segment_latency),
            h(&s.playlist_latency),
            num((!s.margin.is_empty()).then(|| ms(s.margin.min())), 1),
            num(pct(&s.margin, 0.01), 1),
            num(pct(&s.margin, 0.5), 1),
            s.segments,
            s.playlists,
            s.playlists_unchanged,
            s.stalls,
            s.starved_at_end,
            s.viewers_stalled,
            s.stalled_us as f64 / 1e6,
            e.connect,
            e.timeout,
            e.closed,
            e.reset,
            e.not_found_segment,
            e.not_found_playlist,
            e.bad_status,
            e.parse,
            e.skipped,
            self.join_errors,
            self.errors(),
            s.reconnects,
            s.idle_closes,
            s.nobufs,
            s.bytes,
            s.segment_bytes,
            self.mbit_s(),
            s.bytes as f64 / self.seconds / 1e6,
            num(self.server_cpu, 3),
            num(self.baseline_cpu_per_s, 4),
            num(self.server_cores(), 3),
            num(self.viewers_per_core(), 0),
            num(self.cpu_us_per_request(), 1),
            self.client_cpu,
            self.other_cpu,
            self.machine.busy(),
            self.machine.user,
            self.machine.system,
            self.machine.irq,
            self.clean(max_p99_ms),
            s.first_error
                .as_ref()
                .map_or("null".to_string(), |e| format!("{e:?}")),
        );
    }
}

fn print_header() {
    println!(
        "{:>7} {:>6} {:>6} | {:>8} {:>8} {:>8} {:>8} | {:>6} {:>7} | {:>7} {:>7} | {:>6} | {:>7} | {:>7} {:>7} {:>7} | {:>7} {:>7}",
        "viewers",
        "up",
        "active",
        "seg p50",
        "p99",
        "p999",
        "max ms",
        "stalls",
        "v stall",
        "pl p50",
        "pl p99",
        "errors",
        "Mbit/s",
        "srv CPU",
        "v/core",
        "us/req",
        "cli CPU",
        "oth CPU"
    );
}

fn print_row(r: &StepResult) {
    let s = &r.stats;
    let p = |h, q| pct(h, q).map_or("-".to_string(), |v| format!("{v:.2}"));
    let o = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    println!(
        "{:>7} {:>6} {:>6} | {:>8} {:>8} {:>8} {:>8} | {:>6} {:>7} | {:>7} {:>7} | {:>6} | {:>7.1} | {:>7} {:>7} {:>7} | {:>7.2} {:>7.2}",
        r.viewers,
        r.connected,
        s.viewers_active,
        p(&s.segment_latency, 0.5),
        p(&s.segment_latency, 0.99),
        p(&s.segment_latency, 0.999),
        if s.segment_latency.is_empty() {
            "-".into()
        } else {
            format!("{:.1}", ms(s.segment_latency.max()))
        },
        s.stalls,
        s.viewers_stalled,
        p(&s.playlist_latency, 0.5),
        p(&s.playlist_latency, 0.99),
        r.errors(),
        r.mbit_s(),
        o(r.server_cpu, 2),
        o(r.viewers_per_core(), 0),
        o(r.cpu_us_per_request(), 0),
        r.client_cpu,
        r.other_cpu,
    );
    let e = &s.errors;
    println!(
        "          segments {} playlists {} ({} unchanged); margin min {} ms p1 {} ms; errors: connect {} timeout {} closed {} reset {} 404-seg {} 404-pl {} status {} parse {} skipped {} (+{} while joining); reconnects {}",
        s.segments,
        s.playlists,
        s.playlists_unchanged,
        if s.margin.is_empty() {
            "-".into()
        } else {
            format!("{:.0}", ms(s.margin.min()))
        },
        p(&s.margin, 0.01),
        e.connect,
        e.timeout,
        e.closed,
        e.reset,
        e.not_found_segment,
        e.not_found_playlist,
        e.bad_status,
        e.parse,
        e.skipped,
        r.join_errors,
        s.reconnects,
    );
    let m = &r.machine;
    println!(
        "          machine: busy {:.0}%, user {:.2} s, system {:.2} s, irq+softirq {:.2} s (server + bench + other + irq = busy)",
        m.busy() * 100.0,
        m.user,
        m.system,
        m.irq
    );
    if let Some(e) = &s.first_error {
        println!("          first error: {e}");
    }
}

/// A blocking `GET` (Connection: close) → (status, body).
pub(crate) fn http_get(
    dest: SocketAddrV4,
    host: &str,
    path: &str,
) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect_timeout(&dest.into(), Duration::from_secs(2))
        .map_err(|e| format!("connect {dest}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: spate-bench-hls\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let mut head = None;
    let mut body = Vec::new();
    loop {
        if head.is_none() {
            match response_framing(&buf).map_err(|e| format!("GET {path}: {e}"))? {
                Some((status, framing, used)) => {
                    buf.drain(..used);
                    head = Some((status, framing));
                }
                None if buf.len() > 64 * 1024 => {
                    return Err(format!("GET {path}: response head over 64 KiB"));
                }
                None => {}
            }
        }
        if let Some((status, framing)) = &mut head {
            let complete = match framing {
                Framing::Length(n) => {
                    if buf.len() as u64 >= *n {
                        buf.truncate(*n as usize);
                        body = std::mem::take(&mut buf);
                        true
                    } else {
                        false
                    }
                }
                Framing::Chunked(d) => {
                    let (_, fin) = d.feed(
                        &buf,
                        |e| format!("GET {path}: chunked body: {e}"),
                        |piece| {
                            body.extend_from_slice(piece);
                            Ok(())
                        },
                    )?;
                    buf.clear();
                    fin
                }
            };
            if complete {
                return Ok((*status, body));
            }
        }
        let n = s.read(&mut chunk).map_err(|e| format!("GET {path}: {e}"))?;
        if n == 0 {
            return Err(format!("GET {path}: connection closed early"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Follow the URL to a media playlist with at least `want` segments:
/// returns its path, the playlist, and the path of the audio rendition a
/// player of the variant followed would fetch too (see
/// [`hls_playlist::audio_rendition`]; `None`: no separate audio).
pub(crate) fn resolve_media(
    dest: SocketAddrV4,
    host: &str,
    path: &str,
    want: usize,
    wait: Duration,
) -> Result<(String, MediaPlaylist, Option<String>), String> {
    let deadline = Instant::now() + wait;
    let mut path = path.to_string();
    let mut audio = None;
    loop {
        let last;
        match http_get(dest, host, &path) {
            Ok((200, body)) => match hls_playlist::parse(&body) {
                Ok(Playlist::Multivariant(v)) => {
                    let first = &v[0];
                    audio = hls_playlist::audio_rendition(&body, first)
                        .and_then(|a| hls_playlist::resolve(&path, &a));
                    path = hls_playlist::resolve(&path, first)
                        .ok_or_else(|| format!("variant URI {first:?} is not http"))?;
                    eprintln!("spate-bench hls: multivariant playlist: following {path}");
                    continue;
                }
                Ok(Playlist::Media(m)) if m.segments.len() >= want => return Ok((path, m, audio)),
                Ok(Playlist::Media(m)) => {
                    last = format!("{} segments listed", m.segments.len());
                }
                Err(e) => last = e.to_string(),
            },
            Ok((s, _)) => last = format!("HTTP {s}"),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{path}: no media playlist with {want} segments after {:.0} s (last: {last})",
                wait.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Ask every thread for its stats (resetting them) and merge.
fn collect(
    shared: &Shared,
    rx: &mpsc::Receiver<(usize, Stats)>,
    threads: usize,
) -> Result<Stats, String> {
    shared.collect.fetch_add(1, Ordering::AcqRel);
    let mut total = Stats::new();
    for _ in 0..threads {
        let (_, s) = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "a viewer thread did not report within 10 s".to_string())?;
        total.merge(&s);
    }
    Ok(total)
}

/// Run `spate-bench hls`.
pub fn run(args: HlsArgs) -> Result<ExitCode, String> {
    let (dest, host, path) = crate::parse_url(&args.url)?;
    let steps: Vec<usize> = if args.find_max {
        args.steps.clone()
    } else {
        vec![args.viewers]
    };
    let max_n = steps.iter().copied().max().unwrap_or(0);
    if max_n == 0 || args.threads == 0 {
        return Err("--viewers / --steps and --threads must be > 0".into());
    }
    let threads = args.threads.min(max_n);
    let per_thread = max_n.div_ceil(threads);
    if per_thread > 20_000 {
        return Err(format!(
            "{max_n} viewers over {threads} threads is {per_thread} per ring (max 20,000): use more --threads"
        ));
    }
    let server = ServerProcs::resolve(&args.server_pid, &args.server_pids_from)
        .map_err(|e| format!("server processes: {e}"))?;
    let sources = Arc::new(crate::parse_sources(&args.sources)?);

    // Publisher first, then wait for the playlist to fill.
    let stop_pub = Arc::new(AtomicBool::new(false));
    let times = Arc::new(SendTimes::new());
    let publisher = match (&args.publish, &args.rtmp_url) {
        (Some(flv), Some(url)) => {
            let u = parse_rtmp_url(url)?;
            let p =
                live_publish::start(&u, &flv.to_string_lossy(), times.clone(), stop_pub.clone())?;
            eprintln!("spate-bench hls: publishing {} to {url}", flv.display());
            Some(p)
        }
        (None, None) => None,
        _ => return Err("--publish and --rtmp-url go together".into()),
    };
    let waited = Instant::now();
    let resolved = resolve_media(
        dest,
        &host,
        &path,
        args.wait_segments.max(1),
        Duration::from_secs_f64(args.wait),
    );
    let (media_path, first, _audio) = match resolved {
        Ok(r) => r,
        Err(e) => {
            stop_pub.store(true, Ordering::Relaxed);
            if let Some(p) = publisher {
                let _ = p.thread.join();
            }
            return Err(e);
        }
    };
    eprintln!(
        "spate-bench hls: {media_path}: target {:.1} s, {} segments listed (sequence {}), after {:.1} s",
        first.target_us as f64 / 1e6,
        first.segments.len(),
        first.media_sequence,
        waited.elapsed().as_secs_f64()
    );

    let baseline_cpu_per_s = if server.is_empty() || args.baseline <= 0.0 {
        None
    } else {
        let c0 = server.cpu_seconds().ok();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(args.baseline));
        let c1 = server.cpu_seconds().ok();
        let per_s = c0
            .zip(c1)
            .map(|(a, b)| (b - a) / t0.elapsed().as_secs_f64());
        if let Some(b) = per_s {
            eprintln!("spate-bench hls: server CPU with no viewers: {b:.4} s/s");
        }
        per_s
    };

    let shared = Arc::new(Shared::new(threads));
    let (tx, rx) = mpsc::channel();
    let epoch = Instant::now();
    let host: Arc<str> = host.into();
    let playlist_path: Arc<str> = media_path.clone().into();
    let mut handles = Vec::new();
    for index in 0..threads {
        let plan = Plan {
            index,
            dest,
            host: host.clone(),
            playlist_path: playlist_path.clone(),
            sources: sources.clone(),
            max_viewers: per_thread,
            connect_concurrency: args.connect_concurrency,
            ramp_per_sec: args.ramp / threads as f64,
            spread: Duration::from_secs_f64(args.spread),
            live_edge: args.live_edge,
            timeout: Duration::from_secs_f64(args.timeout),
            recv_bufs: args.recv_bufs,
            recv_buf_size: args.recv_buf_size,
            pin_cpu: (!args.pin_cpus.is_empty())
                .then(|| args.pin_cpus[index % args.pin_cpus.len()]),
            epoch,
            dash: false,
            audio: false,
            audio_playlist_path: None,
            times: None,
            fmp4_timescale: None,
            churn_per_sec: 0.0,
            e2e_every: 0,
            ts_offset_ms: 0,
        };
        let (shared, tx) = (shared.clone(), tx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("hls-{index}"))
                .spawn(move || hls_viewer::run(plan, shared, tx))
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    drop(tx);

    let duration = if args.find_max {
        args.step_duration
    } else {
        args.duration
    };
    let mut results = Vec::new();
    let mut failure = None;
    print_header();
    for &n in &steps {
        for (i, t) in shared.targets.iter().enumerate() {
            t.store(
                n / threads + usize::from(i < n % threads),
                Ordering::Relaxed,
            );
        }
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(args.connect_deadline);
        let mut last_print = Instant::now();
        loop {
            let up = shared.connected.load(Ordering::Relaxed);
            let playing = shared.playing.load(Ordering::Relaxed);
            if playing >= n {
                break;
            }
            if Instant::now() >= deadline
                || handles.iter().any(|h| h.is_finished())
                || times.stopped.load(Ordering::Relaxed)
            {
                eprintln!(
                    "spate-bench hls: {n} viewers: only {up} up, {playing} playing after {:.1} s; measuring anyway",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            if last_print.elapsed() >= Duration::from_secs(5) {
                eprintln!("spate-bench hls: {n} viewers: {up} up, {playing} playing");
                last_print = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let up_seconds = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs_f64(args.warmup));
        let early = collect(&shared, &rx, threads)?;
        let cpu0 = server.cpu_seconds().ok().filter(|_| !server.is_empty());
        let self0 = procstat::self_cpu_seconds();
        let m0 = procstat::MachineCpu::now();
        let t0 = Instant::now();
        shared.measuring.store(true, Ordering::Release);
        std::thread::sleep(Duration::from_secs_f64(duration));
        shared.measuring.store(false, Ordering::Release);
        let mut stats = collect(&shared, &rx, threads)?;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu1 = server.cpu_seconds().ok().filter(|_| !server.is_empty());
        let self1 = procstat::self_cpu_seconds();
        let m = m0.delta(&procstat::MachineCpu::now());
        let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
        let other_cpu =
            (m.total - m.idle - m.irq - (self1 - self0) - server_cpu.unwrap_or(0.0)).max(0.0);
        if stats.first_error.is_none() {
            stats.first_error = early.first_error.clone();
        }
        let r = StepResult {
            viewers: n,
            connected: shared.connected.load(Ordering::Relaxed),
            playing: shared.playing.load(Ordering::Relaxed),
            up_seconds,
            seconds,
            stats,
            join_errors: early.errors.total(),
            server_cpu,
            baseline_cpu_per_s,
            client_cpu: self1 - self0,
            other_cpu,
            machine: m,
        };
        print_row(&r);
        let clean = r.clean(args.max_p99_ms);
        results.push(r);
        if times.stopped.load(Ordering::Relaxed) && publisher.is_some() {
            failure = Some("publisher stopped".to_string());
            break;
        }
        if args.find_max && !clean {
            break;
        }
    }

    shared.phase.store(PHASE_STOP, Ordering::Relaxed);
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(format!("viewer thread {i}: {e}")),
            Err(_) => failure = Some(format!("viewer thread {i} panicked")),
        }
    }
    stop_pub.store(true, Ordering::Relaxed);
    if let Some(p) = publisher {
        match p.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("publisher panicked".into()),
        }
    }

    let max_clean = results
        .iter()
        .take_while(|r| r.clean(args.max_p99_ms))
        .map(|r| r.viewers)
        .last();
    if args.find_max {
        match max_clean {
            Some(n) => {
                println!("largest clean step: {n} viewers (all playing, no stall, no error)")
            }
            None => println!("no clean step"),
        }
    }
    if let Some(f) = &failure {
        eprintln!("spate-bench hls: {f}");
    }
    if let Some(path) = &args.json {
        let mut j = String::new();
        let _ = write!(
            j,
            "{{\"mode\":\"hls\",\"label\":{:?},\"url\":{:?},\"media_playlist\":{:?},\"target_s\":{:.3},\
             \"listed_at_start\":{},\"threads\":{},\"live_edge\":{},\"ramp\":{},\"warmup_s\":{},\
             \"find_max\":{},\"max_p99_ms\":{},\"server_pids\":{:?},\"max_clean\":{},\"failure\":{},\"steps\":[",
            args.label,
            args.url,
            media_path,
            first.target_us as f64 / 1e6,
            first.segments.len(),
            threads,
            args.live_edge,
            args.ramp,
            args.warmup,
            args.find_max,
            num(args.max_p99_ms, 3),
            server.pids,
            max_clean.map_or("null".to_string(), |n| n.to_string()),
            failure
                .as_ref()
                .map_or("null".to_string(), |f| format!("{f:?}")),
        );
        for (i, r) in results.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            r.json(&mut j, args.max_p99_ms);
        }
        j.push_str("]}\n");
        std::fs::write(path, j).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let ok = failure.is_none() && results.iter().all(|r| r.stats.segments > 0);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
