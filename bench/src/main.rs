//! spate-bench: an HTTP/1.1 load generator built on Spate's own io_uring
//! runtime, so one process can hold more connections than it has file
//! descriptors (every connection is a direct descriptor in a ring's table).
//!
//! ```text
//! spate-bench http URL --connections N --duration S [--threads T]
//!     [--sources 127.0.0.2-127.0.0.40] [--pipeline 1] [--idle]
//!     [--server-pid PID]... [--server-pids-from PID]... [--json FILE]
//! ```
//! Load mode keeps `pipeline` GET requests outstanding on every connection
//! (keep-alive) and reports requests/s, MB/s, latency percentiles, errors by
//! kind, and the server's CPU seconds and requests per server-CPU-second.
//! Idle mode opens N connections, holds them and reports the server's PSS
//! growth per connection.
//!
//! `spate-bench live` (live.rs) publishes RTMP and runs HTTP-FLV / RTMP
//! viewers; `spate-bench hls` (hls.rs) runs player-like live HLS viewers
//! (playlist polls, each segment once, playback deadlines → stalls).
//! `spate-bench run SCENARIO.toml` (run.rs, scenario.rs) runs a scenario
//! file — publishers and viewer groups of HTTP-FLV, RTMP, HLS, DASH and HTTP-TS —
//! against any server and writes a table, a JSON report and SVG plots;
//! `spate-bench compare A.json B.json` (compare.rs) sets two side by side.
mod client;
mod compare;
mod dash_mpd;
mod floor;
mod flvparse;
mod fmp4scan;
mod hls;
mod hls_playback;
mod hls_playlist;
mod hls_viewer;
mod httpbody;
mod live;
mod live_publish;
mod live_rtmp;
mod live_viewer;
mod procstat;
mod report;
mod run;
mod scenario;
mod svg;
mod ts_publish;
mod tsparse;
mod udp_rx;

use std::net::{Ipv4Addr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use client::{Mode, Outcome, PHASE_MEASURE, PHASE_STOP, PHASE_WARMUP, Plan, Shared};
use procstat::ServerProcs;
use report::{IdleReport, LoadReport};

#[derive(Debug, Parser)]
#[command(name = "spate-bench", version, about = "Spate load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// HTTP/1.1 keep-alive GET load, or idle connections.
    Http(HttpArgs),
    /// Live streaming: an RTMP publisher and N HTTP-FLV / RTMP viewers.
    Live(live::LiveArgs),
    /// Live HLS: N player-like viewers of a media playlist (optionally with
    /// an RTMP publisher).
    Hls(hls::HlsArgs),
    /// MPEG-TS over UDP: receive N outputs and measure their pacing (PCR
    /// jitter, datagram gaps, continuity).
    UdpRx(udp_rx::UdpRxArgs),
    /// Run a scenario file (publishers, viewer groups of any protocol)
    /// against any server; table, JSON report and SVG plots.
    Run(run::RunArgs),
    /// Two `run` reports side by side, with ratios.
    Compare(compare::CompareArgs),
    /// The kernel's floor on this machine: N loopback TCP pairs, one
    /// message to each per round, nothing else (no server).
    Floor(floor::FloorArgs),
}

#[derive(Debug, clap::Args)]
struct HttpArgs {
    /// http://HOST:PORT/PATH (HOST: an IPv4 address or a name resolving to one).
    url: String,
    /// Connections to keep open (spread over the threads).
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: usize,
    /// Seconds to measure (load) or hold (idle).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Client threads, one io_uring each (each holds at most 20,000 connections).
    #[arg(short = 't', long, default_value_t = 2)]
    threads: usize,
    /// Source addresses to bind, round robin: `A-B` range, comma list or one
    /// address (ports per source/destination pair run out near 28,000).
    #[arg(long)]
    sources: Option<String>,
    /// Requests outstanding per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Idle mode: open the connections and hold them, measuring server PSS.
    #[arg(long)]
    idle: bool,
    /// Idle mode: send one request on each connection (and read the
    /// response) before holding it.
    #[arg(long)]
    idle_request: bool,
    /// Server process to measure (CPU, PSS); repeatable.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Server process to measure together with its direct children (e.g. an
    /// nginx master); repeatable.
    #[arg(long)]
    server_pids_from: Vec<u32>,
    /// Seconds of load before measuring starts (after all connections are up).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds a request may wait for its full response before it counts as
    /// a timeout (and the connection is replaced).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Seconds to wait for all connections to come up before going on anyway.
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
    /// CPUs to pin client threads to, comma separated (thread i → cpu i mod n).
    #[arg(long, value_delimiter = ',')]
    pin_cpus: Vec<usize>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label copied into the JSON (e.g. the server's name).
    #[arg(long, default_value = "")]
    label: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Http(args) => run(args),
        Command::Live(args) => live::run(args),
        Command::Hls(args) => hls::run(args),
        Command::UdpRx(args) => udp_rx::run(args),
        Command::Run(args) => run::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Floor(args) => floor::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spate-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// `http://host[:port][/path]` → (address, Host header value, path).
fn parse_url(url: &str) -> Result<(SocketAddrV4, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .find_map(|a| match a {
            std::net::SocketAddr::V4(v4) => Some(v4),
            std::net::SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| format!("{url}: no IPv4 address"))?;
    Ok((addr, hostport.to_string(), path.to_string()))
}

/// `A-B` (inclusive range), `A,B,C` or `A`.
fn parse_sources(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bad = |w: &str| format!("--sources: bad address {w:?}");
    if let Some((a, b)) = s.split_once('-') {
        let a: Ipv4Addr = a.trim().parse().map_err(|_| bad(a))?;
        let b: Ipv4Addr = b.trim().parse().map_err(|_| bad(b))?;
        let (a, b) = (u32::from(a), u32::from(b));
        if b < a || b - a > 65_535 {
            return Err(format!("--sources: bad range {s:?}"));
        }
        return Ok((a..=b).map(Ipv4Addr::from).collect());
    }
    s.split(',')
        .map(|w| w.trim().parse().map_err(|_| bad(w)))
        .collect()
}

fn run(args: HttpArgs) -> Result<ExitCode, String> {
    let (dest, host, path) = parse_url(&args.url)?;
    let sources = match &args.sources {
        Some(s) => parse_sources(s)?,
        None => Vec::new(),
    };
    if args.threads == 0 || args.connections == 0 || args.pipeline == 0 {
        return Err("--threads, --connections and --pipeline must be > 0".into());
    }
    let threads = args.threads.min(args.connections);
    let per_thread_max = args.connections.div_ceil(threads);
    if per_thread_max > 20_000 {
        return Err(format!(
            "{} connections over {threads} threads is {per_thread_max} per ring; \
             a ring's direct-descriptor table holds at most 20,000: use more --threads",
            args.connections
        ));
    }
    let server = ServerProcs::resolve(&args.server_pid, &args.server_pids_from)
        .map_err(|e| format!("server processes: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: spate-bench\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes();
    let mode = if args.idle {
        Mode::Idle {
            request_first: args.idle_request,
        }
    } else {
        Mode::Load
    };

    // Idle mode measures the server's memory before any connection exists.
    let pss_before = if args.idle && !server.is_empty() {
        Some(server.pss_bytes().map_err(|e| format!("PSS: {e}"))?)
    } else {
        None
    };

    let shared = Arc::new(Shared::default());
    shared.phase.store(client::PHASE_CONNECT, Ordering::Relaxed);
    let sources = Arc::new(sources);
    let request = Arc::new(request);
    let mut handles = Vec::new();
    for index in 0..threads {
        let connections =
            args.connections / threads + usize::from(index < args.connections % threads);
        let plan = Plan {
            index,
            dest,
            sources: sources.clone(),
            connections,
            request: request.clone(),
            pipeline: args.pipeline,
            mode,
            timeout: Duration::from_secs_f64(args.timeout),
            connect_concurrency: args.connect_concurrency,
            recv_bufs: args.recv_bufs,
            recv_buf_size: args.recv_buf_size,
            pin_cpu: (!args.pin_cpus.is_empty())
                .then(|| args.pin_cpus[index % args.pin_cpus.len()]),
        };
        let shared = shared.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-{index}"))
                .spawn(move || client::run(plan, shared))
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }

    // Wait for the connections (and, idle with a request, their responses).
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.connect_deadline);
    let want_ready = matches!(
        mode,
        Mode::Idle {
            request_first: true
        }
    );
    let mut last_print = Instant::now();
    loop {
        let up = shared.connected.load(Ordering::Relaxed);
        let ready = shared.idle_ready.load(Ordering::Relaxed);
        let done = up >= args.connections && (!want_ready || ready >= args.connections);
        if done || Instant::now() >= deadline || handles.iter().any(|h| h.is_finished()) {
            if !done {
                eprintln!(
                    "spate-bench: only {up} of {} connections up ({ready} answered) after {:.1} s; going on",
                    args.connections,
                    started.elapsed().as_secs_f64()
                );
            }
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            eprintln!("spate-bench: {up}/{} connections up", args.connections);
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let connected = shared.connected.load(Ordering::Relaxed);

    let code = if args.idle {
        let pss_held = if server.is_empty() {
            None
        } else {
            Some(server.pss_bytes().map_err(|e| format!("PSS: {e}"))?)
        };
        std::thread::sleep(Duration::from_secs_f64(args.duration));
        let pss_end = if server.is_empty() {
            None
        } else {
            Some(server.pss_bytes().map_err(|e| format!("PSS: {e}"))?)
        };
        let held_at_end = shared.connected.load(Ordering::Relaxed);
        shared.phase.store(PHASE_STOP, Ordering::Relaxed);
        let outcome = join(handles)?;
        let rep = IdleReport {
            label: args.label.clone(),
            url: args.url.clone(),
            connections: args.connections,
            connected,
            held_at_end,
            request_first: args.idle_request,
            threads,
            connect_seconds,
            hold_seconds: args.duration,
            server_pids: server.pids.clone(),
            pss_before,
            pss_held,
            pss_end,
            errors: outcome.errors,
        };
        rep.print();
        if let Some(p) = &args.json {
            std::fs::write(p, rep.json()).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        if connected == args.connections && held_at_end == args.connections {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    } else {
        shared.phase.store(PHASE_WARMUP, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs_f64(args.warmup));
        let cpu0 = if server.is_empty() {
            None
        } else {
            Some(
                server
                    .cpu_seconds()
                    .map_err(|e| format!("server CPU: {e}"))?,
            )
        };
        let self0 = procstat::self_cpu_seconds();
        let m0 = procstat::MachineCpu::now();
        let t0 = Instant::now();
        shared.phase.store(PHASE_MEASURE, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs_f64(args.duration));
        shared.phase.store(PHASE_STOP, Ordering::Relaxed);
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu1 = if server.is_empty() {
            None
        } else {
            Some(
                server
                    .cpu_seconds()
                    .map_err(|e| format!("server CPU: {e}"))?,
            )
        };
        let self1 = procstat::self_cpu_seconds();
        let m1 = procstat::MachineCpu::now();
        let held_at_end = shared.connected.load(Ordering::Relaxed);
        let outcome = join(handles)?;
        let rep = LoadReport {
            label: args.label.clone(),
            url: args.url.clone(),
            connections: args.connections,
            connected,
            held_at_end,
            threads,
            pipeline: args.pipeline,
            connect_seconds,
            seconds: elapsed,
            server_pids: server.pids.clone(),
            server_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
            client_cpu: self1 - self0,
            machine: m0.delta(&m1),
            outcome,
        };
        rep.print();
        if let Some(p) = &args.json {
            std::fs::write(p, rep.json()).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        if rep.outcome.requests > 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    };
    Ok(code)
}

fn join(
    handles: Vec<std::thread::JoinHandle<std::io::Result<Outcome>>>,
) -> Result<Outcome, String> {
    let mut total = Outcome::empty();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(o)) => total.merge(&o),
            Ok(Err(e)) => return Err(format!("client thread {i}: {e}")),
            Err(_) => return Err(format!("client thread {i} panicked")),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_sources() {
        let (a, h, p) = parse_url("http://127.0.0.1:8080/seg.ts").unwrap();
        assert_eq!(a, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((h.as_str(), p.as_str()), ("127.0.0.1:8080", "/seg.ts"));
        assert_eq!(parse_url("http://127.0.0.1").unwrap().2, "/");
        assert!(parse_url("https://x/").is_err());
        let s = parse_sources("127.0.0.2-127.0.0.40").unwrap();
        assert_eq!(s.len(), 39);
        assert_eq!(s[0], Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(parse_sources("127.0.0.2,127.0.0.3").unwrap().len(), 2);
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
    }
}
