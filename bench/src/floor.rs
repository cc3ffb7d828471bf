//! `spate-bench floor`: what the kernel alone costs this machine to deliver
//! a workload over loopback TCP, with no server in between.
//!
//! ```text
//! spate-bench floor --conns N --msg BYTES [--rate R] [--duration S] [--sendfile] [--json F]
//! ```
//! N connected loopback TCP pairs. A sender thread writes one `msg`-byte
//! message to every connection in turn (a "round": one frame fanned out to
//! N viewers, or one segment fetched by N viewers), `rate` rounds a second
//! (0 = as fast as it can). A receiver thread reads every connection in
//! the same order with a 256 KiB buffer, so when it falls behind one read
//! takes several messages (the cheapest a client can be). With `--spread`
//! each round's sends are spread evenly over the round, like HLS viewers
//! whose requests spread over a target duration.
//!
//! The sender does nothing a server could skip: one `write(2)` (or
//! `sendfile(2)` from a file with `--sendfile`) per message on a blocking
//! socket, no parsing, no buffers, no timers, no per-viewer state beyond the
//! socket. So the machine CPU it takes is a **floor** for any server plus
//! any load generator doing the same deliveries on this box: what the
//! kernel's TCP send, loopback, TCP receive and the copies cost. Reported:
//! deliveries per second, machine CPU per delivery (from /proc/stat, so
//! softirq counts), each thread's CPU, how long one round took (the time
//! to hand one message to every connection), and delivery latency (round
//! start → the message's last byte read).
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::procstat::{self, MachineCpu};

#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// Connected loopback TCP pairs (2 fds each).
    #[arg(short = 'c', long, default_value_t = 1000)]
    conns: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 1950)]
    msg: usize,
    /// Rounds (messages per connection) per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds to send for.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Send each message with sendfile(2) from a file (in /dev/shm) instead
    /// of write(2) from memory.
    #[arg(long)]
    sendfile: bool,
    /// With --rate: spread each round's sends evenly over the round (like
    /// HLS viewers whose requests spread over a target duration) instead of
    /// sending them in one burst at the round's start. Latency is then
    /// counted from each send's own slot.
    #[arg(long)]
    spread: bool,
    /// Set TCP_NODELAY on the sending sockets (live servers do).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    nodelay: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What the sender and receiver share.
struct Shared {
    /// Set once the sender has finished its last round.
    done: AtomicBool,
    /// Start of each round, ns since `base`.
    round_start: Mutex<Vec<u64>>,
    /// With --spread: ns between two connections' slots in a round.
    slot_ns: u64,
    base: Instant,
}

pub fn run(args: FloorArgs) -> Result<ExitCode, String> {
    if args.conns == 0 || args.msg == 0 {
        return Err("--conns and --msg must be at least 1".into());
    }
    if args.spread && args.rate <= 0.0 {
        return Err("--spread needs --rate".into());
    }
    if args.duration.is_nan() || args.duration <= 0.0 || args.rate < 0.0 || !args.rate.is_finite() {
        return Err("--duration must be > 0 and --rate ≥ 0".into());
    }
    let limit = spate_engine::net::nofile_limit();
    let need = 2 * args.conns as u64 + 64;
    if need > limit {
        return Err(format!(
            "{} pairs need {need} fds; the open-file limit is {limit} (at most {} pairs)",
            args.conns,
            limit.saturating_sub(64) / 2
        ));
    }

    let (senders, receivers) = connect_pairs(args.conns, args.nodelay)?;
    let payload = vec![0x47u8; args.msg];
    let file = if args.sendfile {
        Some(payload_file(&payload)?)
    } else {
        None
    };

    let shared = Arc::new(Shared {
        done: AtomicBool::new(false),
        round_start: Mutex::new(Vec::new()),
        slot_ns: if args.spread && args.rate > 0.0 {
            (1e9 / args.rate / args.conns as f64) as u64
        } else {
            0
        },
        base: Instant::now(),
    });

    let msg = args.msg as u64;
    let rx_shared = Arc::clone(&shared);
    let receiver = thread::Builder::new()
        .name("floor-rx".into())
        .spawn(move || receive(receivers, msg, &rx_shared))
        .map_err(|e| format!("receiver thread: {e}"))?;

    let cpu0 = MachineCpu::now();
    let proc0 = procstat::self_cpu_seconds();
    let t0 = Instant::now();
    let sent = send(&senders, &payload, file.as_ref(), &args, &shared);
    if sent.is_err() {
        // Close our ends so the receiver stops, and say what it saw too.
        drop(senders);
    }
    let received = receiver
        .join()
        .map_err(|_| "receiver thread panicked".to_string())?;
    let (tx, rx) = match (sent, received) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(s), Err(r)) => return Err(format!("{s}; receiver: {r}")),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
    };
    let wall = t0.elapsed().as_secs_f64();
    let proc_cpu = procstat::self_cpu_seconds() - proc0;
    let cpu = cpu0.delta(&MachineCpu::now());
    let ncpu = thread::available_parallelism().map_or(1, |n| n.get()) as f64;

    let deliveries = tx.rounds * args.conns as u64;
    let busy = (cpu.total - cpu.idle).max(0.0);
    let r = Report {
        conns: args.conns,
        msg: args.msg,
        mode: if args.sendfile { "sendfile" } else { "write" },
        rate_target: args.rate,
        spread: args.spread,
        rounds: tx.rounds,
        rounds_behind: tx.behind,
        wall_s: wall,
        deliveries,
        deliveries_per_s: deliveries as f64 / wall,
        gbit_per_s: (deliveries * msg) as f64 * 8.0 / wall / 1e9,
        machine_busy_s: busy,
        machine_cpus: ncpu,
        machine_user_s: cpu.user,
        machine_system_s: cpu.system,
        machine_irq_s: cpu.irq,
        process_cpu_s: proc_cpu,
        other_cpu_s: (busy - proc_cpu).max(0.0),
        sender_cpu_s: tx.thread_cpu,
        receiver_cpu_s: rx.thread_cpu,
        busy_us_per_delivery: busy * 1e6 / deliveries.max(1) as f64,
        sender_us_per_delivery: tx.thread_cpu * 1e6 / deliveries.max(1) as f64,
        receiver_us_per_delivery: rx.thread_cpu * 1e6 / deliveries.max(1) as f64,
        receiver_reads: rx.reads,
        round_ms: Pcts::of(&tx.round_us),
        latency_ms: Pcts::of(&rx.latency_us),
    };
    r.print();
    if let Some(p) = &args.json {
        let s = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
        fs::write(p, s + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// N connected pairs: (the accepted ends, which send; the connecting ends,
/// which receive).
fn connect_pairs(n: usize, nodelay: bool) -> Result<(Vec<TcpStream>, Vec<TcpStream>), String> {
    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("listen on 127.0.0.1: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let mut tx = Vec::with_capacity(n);
    let mut rx = Vec::with_capacity(n);
    for i in 0..n {
        let c = TcpStream::connect(addr).map_err(|e| format!("connect {i}: {e}"))?;
        let (s, _) = l.accept().map_err(|e| format!("accept {i}: {e}"))?;
        s.set_nodelay(nodelay).map_err(|e| e.to_string())?;
        rx.push(c);
        tx.push(s);
    }
    Ok((tx, rx))
}

/// The payload as a file on tmpfs (unlinked once open), for sendfile.
fn payload_file(payload: &[u8]) -> Result<fs::File, String> {
    let dir = if fs::metadata("/dev/shm").is_ok() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("spate-floor-{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let w = f.write_all(payload);
    let _ = fs::remove_file(&path);
    w.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(f)
}

struct SendResult {
    rounds: u64,
    /// Rounds the sender was behind its schedule at the end (paced runs).
    behind: u64,
    round_us: Histogram<u64>,
    thread_cpu: f64,
}

fn send(
    socks: &[TcpStream],
    payload: &[u8],
    file: Option<&fs::File>,
    args: &FloorArgs,
    sh: &Shared,
) -> Result<SendResult, String> {
    let mut hist = histogram();
    let start = Instant::now();
    let dur = Duration::from_secs_f64(args.duration);
    let cpu0 = thread_cpu_seconds();
    let mut rounds = 0u64;
    let mut behind = 0u64;
    let result = loop {
        let now = Instant::now();
        if now.duration_since(start) >= dur {
            if args.rate > 0.0 {
                let due = (args.duration * args.rate).floor() as u64;
                behind = due.saturating_sub(rounds);
            }
            break Ok(());
        }
        if args.rate > 0.0 {
            let at = start + Duration::from_secs_f64(rounds as f64 / args.rate);
            if at > now {
                thread::sleep(at - now);
            }
        }
        let t = Instant::now();
        sh.round_start
            .lock()
            .expect("round_start lock")
            .push(t.duration_since(sh.base).as_nanos() as u64);
        let mut failed = None;
        for (i, s) in socks.iter().enumerate() {
            if sh.slot_ns > 0 {
                // Sleep only when more than 0.5 ms early, so sends go in
                // small bursts and the sleeps (a wake-up each) stay a
                // small part of the sender's CPU. A send may therefore lead
                // its slot by up to 0.5 ms (its latency then reads ~0).
                let at = t + Duration::from_nanos(sh.slot_ns * i as u64);
                let now = Instant::now();
                if at > now + Duration::from_micros(500) {
                    thread::sleep(at - now);
                }
            }
            let r = match file {
                Some(f) => sendfile_all(s, f, payload.len()),
                None => (&*s).write_all(payload),
            };
            if let Err(e) = r {
                failed = Some(format!("send to connection {i}: {e}"));
                break;
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
        rounds += 1;
    };
    let thread_cpu = thread_cpu_seconds() - cpu0;
    sh.done.store(true, Ordering::Release);
    result?;
    for s in socks {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    Ok(SendResult {
        rounds,
        behind,
        round_us: hist,
        thread_cpu,
    })
}

/// sendfile(2) the whole file (offset 0, `len` bytes) to a blocking socket.
fn sendfile_all(sock: &TcpStream, file: &fs::File, len: usize) -> std::io::Result<()> {
    let mut off: libc::off_t = 0;
    while (off as usize) < len {
        // SAFETY: both descriptors are open for the duration of the call
        // (borrowed from live objects), and `off` is a valid, exclusive
        // pointer to an off_t for the call's duration.
        let n = unsafe {
            libc::sendfile(
                sock.as_raw_fd(),
                file.as_raw_fd(),
                &mut off,
                len - off as usize,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::other("sendfile sent nothing"));
        }
    }
    Ok(())
}

struct RecvResult {
    latency_us: Histogram<u64>,
    reads: u64,
    thread_cpu: f64,
}

fn receive(socks: Vec<TcpStream>, msg: u64, sh: &Shared) -> Result<RecvResult, String> {
    let mut got = vec![0u64; socks.len()];
    // When each connection's latest read returned, ns since `base`.
    let mut last_read = vec![0u64; socks.len()];
    let mut buf = vec![0u8; 256 * 1024];
    let mut hist = histogram();
    let mut reads = 0u64;
    let cpu0 = thread_cpu_seconds();
    let mut round = 0u64;
    loop {
        let want = (round + 1) * msg;
        let mut started_ns = None;
        for (i, s) in socks.iter().enumerate() {
            while got[i] < want {
                let n = (&*s)
                    .read(&mut buf)
                    .map_err(|e| format!("read connection {i}: {e}"))?;
                if n == 0 {
                    // The sender shuts every connection down after its last
                    // round: the end, if it falls between two rounds.
                    if i == 0 && got[i] == round * msg && sh.done.load(Ordering::Acquire) {
                        let thread_cpu = thread_cpu_seconds() - cpu0;
                        return Ok(RecvResult {
                            latency_us: hist,
                            reads,
                            thread_cpu,
                        });
                    }
                    return Err(format!("connection {i} closed in round {round}"));
                }
                reads += 1;
                got[i] += n as u64;
                last_read[i] = sh.base.elapsed().as_nanos() as u64;
            }
            // This round's data has arrived, so its start is recorded.
            let st = *started_ns.get_or_insert_with(|| {
                sh.round_start.lock().expect("round_start lock")[round as usize]
            });
            let slot = st + sh.slot_ns * i as u64;
            let _ = hist.record((last_read[i].saturating_sub(slot) / 1000).max(1));
        }
        round += 1;
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// This thread's CPU seconds (user + system), from /proc/thread-self/stat.
fn thread_cpu_seconds() -> f64 {
    let ticks = fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| procstat::parse_stat_ticks(&s))
        .unwrap_or(0);
    ticks as f64 / procstat::clock_ticks()
}

#[derive(Debug, serde::Serialize)]
struct Pcts {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Pcts {
    /// Percentiles in ms of a histogram of µs.
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, serde::Serialize)]
struct Report {
    conns: usize,
    msg: usize,
    mode: &'static str,
    rate_target: f64,
    spread: bool,
    rounds: u64,
    rounds_behind: u64,
    wall_s: f64,
    deliveries: u64,
    deliveries_per_s: f64,
    gbit_per_s: f64,
    machine_busy_s: f64,
    machine_cpus: f64,
    machine_user_s: f64,
    machine_system_s: f64,
    machine_irq_s: f64,
    process_cpu_s: f64,
    other_cpu_s: f64,
    sender_cpu_s: f64,
    receiver_cpu_s: f64,
    busy_us_per_delivery: f64,
    sender_us_per_delivery: f64,
    receiver_us_per_delivery: f64,
    receiver_reads: u64,
    round_ms: Pcts,
    latency_ms: Pcts,
}

impl Report {
    fn print(&self) {
        let rate = if self.rate_target > 0.0 {
            let spread = if self.spread { ", spread" } else { "" };
            format!("{}/s{spread}", self.rate_target)
        } else {
            "unpaced".into()
        };
        println!(
            "floor: {} conns, {} B per message by {}, {rate}, {:.1} s",
            self.conns, self.msg, self.mode, self.wall_s
        );
        println!(
            "  {} rounds ({} behind schedule), {} deliveries: {:.0}/s, {:.2} Gbit/s",
            self.rounds,
            self.rounds_behind,
            self.deliveries,
            self.deliveries_per_s,
            self.gbit_per_s
        );
        println!(
            "  machine busy {:.2} CPU-s of {:.1} ({:.0}%): user {:.2}, system {:.2}, irq+softirq {:.2}; this process {:.2}, other {:.2}",
            self.machine_busy_s,
            self.wall_s * self.machine_cpus,
            100.0 * self.machine_busy_s / (self.wall_s * self.machine_cpus).max(1e-9),
            self.machine_user_s,
            self.machine_system_s,
            self.machine_irq_s,
            self.process_cpu_s,
            self.other_cpu_s
        );
        println!(
            "  per delivery: machine {:.2} µs, sender thread {:.2} µs, receiver thread {:.2} µs ({:.2} reads per delivery)",
            self.busy_us_per_delivery,
            self.sender_us_per_delivery,
            self.receiver_us_per_delivery,
            self.receiver_reads as f64 / self.deliveries.max(1) as f64
        );
        println!(
            "  round (one message to every connection) ms: p50 {:.2} p99 {:.2} max {:.2}",
            self.round_ms.p50, self.round_ms.p99, self.round_ms.max
        );
        println!(
            "  latency (round start → last byte read) ms: p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
            self.latency_ms.p50, self.latency_ms.p99, self.latency_ms.p999, self.latency_ms.max
        );
    }
}
