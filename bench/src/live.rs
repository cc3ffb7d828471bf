//! `spate-bench live`: one RTMP publisher (an FLV file at real-time pace)
//! and N viewers (HTTP-FLV or RTMP play) in one process, so a frame's
//! arrival at a viewer minus its send instant at the publisher (same clock)
//! is the latency the server added. See `live_publish.rs` (timestamp
//! matching), `live_viewer.rs` (viewers, stall sampling).
//!
//! ```text
//! spate-bench live --publish rtmp://127.0.0.1:1935/live/live+bench --source src.flv
//!     --viewers N --viewer-url http://127.0.0.1:8080/live+bench.flv
//!     [--viewer-proto flv|rtmp] [--ramp PER_SEC] --duration S
//!     [--server-pid PID]... [--json OUT] [--find-max [--steps 500,1000,...]]
//! ```
use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::live_publish::{self, SendTimes};
use crate::live_rtmp::parse_rtmp_url;
use crate::live_viewer::{self, PHASE_STOP, Plan, Proto, Shared, Stats};
use crate::procstat::{self, ServerProcs};

/// Arguments of `spate-bench live`.
#[derive(Debug, clap::Args)]
pub struct LiveArgs {
    /// RTMP URL to publish to: rtmp://HOST:PORT/APP/NAME.
    #[arg(long)]
    publish: String,
    /// FLV file to publish (looped with continuing timestamps).
    #[arg(long)]
    source: PathBuf,
    /// Viewers (ignored with --find-max).
    #[arg(short = 'n', long, default_value_t = 100)]
    viewers: usize,
    /// What viewers open: http://HOST:PORT/NAME.flv or rtmp://HOST:PORT/APP/NAME.
    #[arg(long)]
    viewer_url: String,
    /// flv (HTTP-FLV GET) or rtmp (RTMP play); default from the URL scheme.
    #[arg(long)]
    viewer_proto: Option<String>,
    /// New viewer connections per second, all threads together (0: as fast
    /// as the connect concurrency allows).
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Seconds to measure (per step with --find-max, see --step-duration).
    #[arg(short = 'd', long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds after all viewers are live before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Viewer threads, one io_uring each (each holds at most 20,000 viewers).
    #[arg(short = 't', long, default_value_t = 2)]
    threads: usize,
    /// Source addresses for viewers, round robin: `A-B`, `A,B,C` or `A`.
    #[arg(long, default_value = "127.0.0.2-127.0.0.40")]
    sources: String,
    /// Video frame interval of the source, ms (stall threshold = this + tolerance).
    #[arg(long, default_value_t = 33)]
    frame_interval_ms: u32,
    /// Stall tolerance, ms: a viewer more than frame interval + this behind
    /// the publisher's newest sent frame in a 100 ms sample is stalled.
    #[arg(long, default_value_t = 50)]
    stall_tolerance_ms: u32,
    /// Server process to measure (CPU); repeatable.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Server process measured with its direct children (nginx master); repeatable.
    #[arg(long)]
    server_pids_from: Vec<u32>,
    /// Ramp viewers in steps; report the largest step with no stall, no
    /// disconnect, every viewer live and p99 ≤ --max-p99-ms.
    #[arg(long)]
    find_max: bool,
    /// Steps for --find-max.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "500,1000,2000,5000,10000,15000,20000,25000,30000"
    )]
    steps: Vec<usize>,
    /// Seconds measured per --find-max step.
    #[arg(long, default_value_t = 10.0)]
    step_duration: f64,
    /// --find-max: largest acceptable p99 server-added latency, ms.
    #[arg(long, default_value_t = 2.0)]
    max_p99_ms: f64,
    /// Seconds to wait for the viewers of a step to be up and live.
    #[arg(long, default_value_t = 60.0)]
    connect_deadline: f64,
    /// Connect attempts in flight per thread.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Provided receive buffers per thread (power of two ≤ 32768).
    #[arg(long, default_value_t = 4096)]
    recv_bufs: u16,
    /// Bytes per receive buffer.
    #[arg(long, default_value_t = 16384)]
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
    live: usize,
    up_seconds: f64,
    seconds: f64,
    stats: Stats,
    server_cpu: Option<f64>,
    client_cpu: f64,
    /// Busy CPU seconds of everything else (other processes, kernel
    /// threads; interrupts excluded): a noisy neighbour shows here.
    other_cpu: f64,
    frames_sent: u64,
    media_bytes_sent: u64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl StepResult {
    fn pct(&self, q: f64) -> Option<u64> {
        let h = &self.stats.latency;
        (!h.is_empty()).then(|| h.value_at_quantile(q))
    }
    fn mbit_s(&self) -> f64 {
        self.stats.bytes as f64 * 8.0 / self.seconds / 1e6
    }
    fn unmatched_share(&self) -> f64 {
        let t = self.stats.ts_matched + self.stats.ts_unmatched;
        if t == 0 {
            1.0
        } else {
            self.stats.ts_unmatched as f64 / t as f64
        }
    }
    fn clean(&self, max_p99_ms: f64) -> bool {
        self.connected == self.viewers
            && self.live == self.viewers
            && self.stats.stalled_viewer_seconds == 0
            && self.stats.disconnects == 0
            && self.stats.protocol_errors == 0
            && self.unmatched_share() < 0.01
            && self.pct(0.99).is_some_and(|p| ms(p) <= max_p99_ms)
    }
    fn json(&self, out: &mut String, max_p99_ms: f64) {
        let s = &self.stats;
        let p = |q| {
            self.pct(q)
                .map_or("null".to_string(), |v| format!("{:.3}", ms(v)))
        };
        let _ = write!(
            out,
            "{{\"viewers\":{},\"connected\":{},\"live\":{},\"up_seconds\":{:.2},\"seconds\":{:.3},\
             \"latency_ms\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{},\"frames\":{}}},\
             \"viewer_seconds\":{},\"stalled_viewer_seconds\":{},\"max_lag_ms\":{},\
             \"disconnects\":{},\"connect_errors\":{},\"protocol_errors\":{},\
             \"ts_matched\":{},\"ts_unmatched\":{},\"burst_frames\":{},\"nobufs\":{},\
             \"bytes\":{},\"mbit_s\":{:.2},\"frames_sent\":{},\"media_bytes_sent\":{},\
             \"server_cpu_s\":{},\"client_cpu_s\":{:.3},\"other_cpu_s\":{:.3},\"clean\":{},\"first_error\":{}}}",
            self.viewers,
            self.connected,
            self.live,
            self.up_seconds,
            self.seconds,
            p(0.5),
            p(0.9),
            p(0.99),
            p(0.999),
            if !s.latency.is_empty() {
                format!("{:.3}", ms(s.latency.max()))
            } else {
                "null".into()
            },
            s.latency.len(),
            s.viewer_seconds,
            s.stalled_viewer_seconds,
            s.max_lag_ms,
            s.disconnects,
            s.connect_errors,
            s.protocol_errors,
            s.ts_matched,
            s.ts_unmatched,
            s.burst_frames,
            s.nobufs,
            s.bytes,
            self.mbit_s(),
            self.frames_sent,
            self.media_bytes_sent,
            self.server_cpu
                .map_or("null".to_string(), |c| format!("{c:.3}")),
            self.client_cpu,
            self.other_cpu,
            self.clean(max_p99_ms),
            s.first_error
                .as_ref()
                .map_or("null".to_string(), |e| format!("{:?}", e)),
        );
    }
}

fn print_header() {
    println!(
        "{:>7} {:>7} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>9} {:>7} | {:>5} {:>8} | {:>8} {:>8} {:>7} | {:>7}",
        "viewers",
        "up",
        "live",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "max ms",
        "stall v-s",
        "of v-s",
        "disc",
        "Mbit/s",
        "srv CPU",
        "cli CPU",
        "oth CPU",
        "ts miss"
    );
}

fn print_row(r: &StepResult) {
    let p = |q| {
        r.pct(q)
            .map_or("-".to_string(), |v| format!("{:.3}", ms(v)))
    };
    let s = &r.stats;
    println!(
        "{:>7} {:>7} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>9} {:>7} | {:>5} {:>8.1} | {:>8} {:>8.2} {:>7.2} | {:>6.2}%",
        r.viewers,
        r.connected,
        r.live,
        p(0.5),
        p(0.99),
        p(0.999),
        if !s.latency.is_empty() {
            format!("{:.3}", ms(s.latency.max()))
        } else {
            "-".into()
        },
        s.stalled_viewer_seconds,
        s.viewer_seconds,
        s.disconnects,
        r.mbit_s(),
        r.server_cpu.map_or("-".to_string(), |c| format!("{c:.2}")),
        r.client_cpu,
        r.other_cpu,
        r.unmatched_share() * 100.0,
    );
    if let Some(e) = &s.first_error {
        println!("          first error: {e}");
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

/// Run `spate-bench live`.
pub fn run(args: LiveArgs) -> Result<ExitCode, String> {
    let publish = parse_rtmp_url(&args.publish)?;
    let proto_name = match args.viewer_proto.as_deref() {
        Some(p) => p.to_string(),
        None if args.viewer_url.starts_with("rtmp://") => "rtmp".into(),
        None => "flv".into(),
    };
    let (dest, proto): (SocketAddrV4, Proto) = match proto_name.as_str() {
        "flv" => {
            let (dest, host, path) = crate::parse_url(&args.viewer_url)?;
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: spate-bench\r\nAccept: */*\r\n\r\n"
            );
            (dest, Proto::Flv(Arc::new(req.into_bytes())))
        }
        "rtmp" => {
            let u = parse_rtmp_url(&args.viewer_url)?;
            let (dest, _, _) = crate::parse_url(&format!("http://{}/", u.hostport))?;
            (dest, Proto::Rtmp(Arc::new(u)))
        }
        o => return Err(format!("--viewer-proto {o}: expected flv or rtmp")),
    };
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
    let stall_ms = args.frame_interval_ms + args.stall_tolerance_ms;

    // Publisher first: viewers of a stream that is not live are refused.
    let times = Arc::new(SendTimes::new());
    let stop_pub = Arc::new(AtomicBool::new(false));
    let source = args.source.to_string_lossy().into_owned();
    let publisher = live_publish::start(&publish, &source, times.clone(), stop_pub.clone())?;
    std::thread::sleep(Duration::from_millis(500));
    eprintln!(
        "spate-bench live: publishing {} ({} frames sent so far); viewers: {} {} (stall = lag > {stall_ms} ms)",
        args.publish,
        times.frames_sent.load(Ordering::Relaxed),
        proto_name,
        args.viewer_url
    );

    let shared = Arc::new(Shared::new(threads));
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for index in 0..threads {
        let plan = Plan {
            index,
            dest,
            sources: sources.clone(),
            max_viewers: per_thread,
            proto: proto.clone(),
            connect_concurrency: args.connect_concurrency,
            ramp_per_sec: args.ramp / threads as f64,
            recv_bufs: args.recv_bufs,
            recv_buf_size: args.recv_buf_size,
            stall_ms,
            churn_per_sec: 0.0,
            learn_offset: false,
            pin_cpu: (!args.pin_cpus.is_empty())
                .then(|| args.pin_cpus[index % args.pin_cpus.len()]),
        };
        let (shared, times, tx) = (shared.clone(), times.clone(), tx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("viewers-{index}"))
                .spawn(move || live_viewer::run(plan, shared, times, tx))
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
            let live = shared.live.load(Ordering::Relaxed);
            if live >= n {
                break;
            }
            if Instant::now() >= deadline
                || handles.iter().any(|h| h.is_finished())
                || times.stopped.load(Ordering::Relaxed)
            {
                eprintln!(
                    "spate-bench live: {n} viewers: only {up} up, {live} live after {:.1} s; measuring anyway",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            if last_print.elapsed() >= Duration::from_secs(5) {
                eprintln!("spate-bench live: {n} viewers: {up} up, {live} live");
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
        let f0 = times.frames_sent.load(Ordering::Relaxed);
        let b0 = times.bytes_sent.load(Ordering::Relaxed);
        let t0 = Instant::now();
        shared.measuring.store(true, Ordering::Release);
        std::thread::sleep(Duration::from_secs_f64(duration));
        shared.measuring.store(false, Ordering::Release);
        let mut stats = collect(&shared, &rx, threads)?;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu1 = server.cpu_seconds().ok().filter(|_| !server.is_empty());
        let self1 = procstat::self_cpu_seconds();
        let m = m0.delta(&procstat::MachineCpu::now());
        let other_cpu = (m.total
            - m.idle
            - m.irq
            - (self1 - self0)
            - cpu1.zip(cpu0).map_or(0.0, |(b, a)| b - a))
        .max(0.0);
        // Errors and disconnects while connecting count too.
        stats.disconnects += early.disconnects;
        stats.connect_errors += early.connect_errors;
        stats.protocol_errors += early.protocol_errors;
        stats.ts_matched += early.ts_matched;
        stats.ts_unmatched += early.ts_unmatched;
        stats.burst_frames += early.burst_frames;
        if stats.first_error.is_none() {
            stats.first_error = early.first_error;
        }
        let r = StepResult {
            viewers: n,
            connected: shared.connected.load(Ordering::Relaxed),
            live: shared.live.load(Ordering::Relaxed),
            up_seconds,
            seconds,
            stats,
            server_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
            client_cpu: self1 - self0,
            other_cpu,
            frames_sent: times.frames_sent.load(Ordering::Relaxed) - f0,
            media_bytes_sent: times.bytes_sent.load(Ordering::Relaxed) - b0,
        };
        print_row(&r);
        if r.unmatched_share() >= 0.01 {
            eprintln!(
                "spate-bench live: {:.1}% of received video frames had a timestamp the publisher never sent: \
                 the server does not pass timestamps through, latency cannot be matched",
                r.unmatched_share() * 100.0
            );
        }
        let clean = r.clean(args.max_p99_ms);
        results.push(r);
        if times.stopped.load(Ordering::Relaxed) {
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
    match publisher.thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failure = Some(e),
        Err(_) => failure = Some("publisher panicked".into()),
    }

    let max_clean = results
        .iter()
        .take_while(|r| r.clean(args.max_p99_ms))
        .map(|r| r.viewers)
        .last();
    if args.find_max {
        match max_clean {
            Some(n) => println!(
                "largest clean step: {n} viewers (no stall, no disconnect, p99 ≤ {} ms)",
                args.max_p99_ms
            ),
            None => println!("no clean step"),
        }
    }
    if let Some(f) = &failure {
        eprintln!("spate-bench live: {f}");
    }
    if let Some(path) = &args.json {
        let mut j = String::new();
        let _ = write!(
            j,
            "{{\"mode\":\"live\",\"label\":{:?},\"publish\":{:?},\"viewer_url\":{:?},\"viewer_proto\":{:?},\
             \"threads\":{},\"stall_threshold_ms\":{},\"find_max\":{},\"max_p99_ms\":{},\"server_pids\":{:?},\
             \"max_clean\":{},\"failure\":{},\"steps\":[",
            args.label,
            args.publish,
            args.viewer_url,
            proto_name,
            threads,
            stall_ms,
            args.find_max,
            args.max_p99_ms,
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
    let ok = failure.is_none() && results.iter().all(|r| !r.stats.latency.is_empty());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
