//! `spate-bench udp-rx`: receive N MPEG-TS-over-UDP outputs (multicast
//! groups or unicast ports) at once and measure how well each is paced.
//!
//! Per output: datagrams, Mbit/s, the gap between datagrams (p50/p99/max)
//! and the PCR jitter seen by a receiver — for each datagram that carries a
//! PCR, its kernel arrival time (SO_TIMESTAMPNS) minus the PCR's time; a
//! least-squares line removes the clock drift between sender and receiver,
//! and the jitter is what remains (p99 of |deviation| and peak to peak), in
//! the spirit of ETSI TR 101 290's PCR overall jitter. Continuity-counter
//! gaps are counted too (lost or reordered datagrams).
//!
//! ```text
//! spate-bench udp-rx --group 239.1.1.1 --ports 5000-5049 --duration 20 [--iface-addr 127.0.0.1] [--json FILE]
//! ```
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use spate_packager::ts::packet_pcr;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct UdpRxArgs {
    /// Multicast group (or a unicast address to bind) of every output.
    #[arg(long, default_value = "239.1.1.1")]
    group: Ipv4Addr,
    /// Ports: one output per port, `5000` or `5000-5049`.
    #[arg(long)]
    ports: String,
    /// Seconds to receive.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds to receive before measuring (the outputs start up).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Address of the interface to join the groups on.
    #[arg(long, default_value = "127.0.0.1")]
    iface_addr: Ipv4Addr,
    /// Write the per-output results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.trim().parse().map_err(|_| format!("bad port {a:?}"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("bad port {b:?}"))?;
    if a == 0 || b < a || b - a > 1000 {
        return Err(format!("ports {s:?}: want P or P-Q with Q-P <= 1000"));
    }
    Ok((a..=b).collect())
}

/// What one output showed.
#[derive(Debug, Default, Clone)]
pub struct OutputStats {
    /// UDP port.
    pub port: u16,
    /// Datagrams received while measuring.
    pub datagrams: u64,
    /// Mbit/s received while measuring.
    pub mbps: f64,
    /// Gap between datagrams, µs: p50, p99, max.
    pub gap_us: (u64, u64, u64),
    /// PCR jitter after drift removal, µs: p99 of |deviation|, peak to peak.
    pub pcr_jitter_us: (f64, f64),
    /// PCR-carrying datagrams used.
    pub pcrs: usize,
    /// Continuity-counter gaps.
    pub cc_errors: u64,
}

/// Least-squares residuals of y over x.
fn residuals(points: &[(f64, f64)]) -> Vec<f64> {
    let n = points.len() as f64;
    if points.len() < 3 {
        return Vec::new();
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    points
        .iter()
        .map(|&(x, y)| y - (my + slope * (x - mx)))
        .collect()
}

/// The jitter figures of (media µs, arrival µs) pairs: p99 |dev|, peak to peak.
pub fn pcr_jitter(points: &[(f64, f64)]) -> (f64, f64) {
    let mut r = residuals(points);
    if r.is_empty() {
        return (0.0, 0.0);
    }
    let min = r.iter().cloned().fold(f64::MAX, f64::min);
    let max = r.iter().cloned().fold(f64::MIN, f64::max);
    for v in r.iter_mut() {
        *v = v.abs();
    }
    r.sort_by(|a, b| a.total_cmp(b));
    let p99 = r[((r.len() as f64 * 0.99) as usize).min(r.len() - 1)];
    (p99, max - min)
}

struct Output {
    port: u16,
    sock: std::net::UdpSocket,
    datagrams: u64,
    bytes: u64,
    gaps: Histogram<u64>,
    last_arrival: Option<f64>,
    points: Vec<(f64, f64)>,
    first_pcr: Option<u64>,
    cc: [Option<u8>; 8192],
    cc_errors: u64,
}

/// Receive with the kernel's arrival timestamp (µs on CLOCK_REALTIME).
fn recv_stamped(fd: i32, buf: &mut [u8]) -> Option<(usize, f64)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at live buffers for the call's duration.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let mut stamp = None;
    // SAFETY: walking the control messages recvmsg just wrote, with the
    // libc macros, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                stamp = Some(ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let t = stamp.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    });
    Some((n as usize, t))
}

/// Run the receiver; prints a table, writes JSON if asked.
pub fn run(args: UdpRxArgs) -> Result<std::process::ExitCode, String> {
    let ports = parse_ports(&args.ports)?;
    let mut outputs = Vec::new();
    for &port in &ports {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(|e| e.to_string())?;
        s.set_reuse_address(true).map_err(|e| e.to_string())?;
        let _ = s.set_recv_buffer_size(8 << 20);
        let bind = std::net::SocketAddr::from((args.group, port));
        s.bind(&bind.into())
            .map_err(|e| format!("bind {bind}: {e}"))?;
        if args.group.is_multicast() {
            s.join_multicast_v4(&args.group, &args.iface_addr)
                .map_err(|e| format!("join {} on {}: {e}", args.group, args.iface_addr))?;
        }
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int option on our socket.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        outputs.push(Output {
            port,
            sock: s.into(),
            datagrams: 0,
            bytes: 0,
            gaps: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            last_arrival: None,
            points: Vec::new(),
            first_pcr: None,
            cc: [None; 8192],
            cc_errors: 0,
        });
    }
    let mut pfds: Vec<libc::pollfd> = outputs
        .iter()
        .map(|o| libc::pollfd {
            fd: o.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        // SAFETY: pfds is a live array of pollfd of the given length.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
        if r <= 0 {
            continue;
        }
        let measuring = Instant::now() >= measure_from;
        for (i, pfd) in pfds.iter_mut().enumerate() {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            pfd.revents = 0;
            let o = &mut outputs[i];
            while let Some((n, t_us)) = recv_stamped(o.sock.as_raw_fd(), &mut buf) {
                if !measuring {
                    continue;
                }
                o.datagrams += 1;
                o.bytes += n as u64;
                if let Some(last) = o.last_arrival {
                    let _ = o.gaps.record(((t_us - last).max(1.0)) as u64);
                }
                o.last_arrival = Some(t_us);
                let data = &buf[..n];
                let ts = if data.first() == Some(&0x47) {
                    data
                } else if data.len() > 12 && data[0] >> 6 == 2 {
                    &data[12..]
                } else {
                    data
                };
                for p in ts.chunks(188) {
                    if p.len() < 4 || p[0] != 0x47 {
                        continue;
                    }
                    let pid = (usize::from(p[1] & 0x1F) << 8) | usize::from(p[2]);
                    let cc = p[3] & 0x0F;
                    let has_payload = p[3] & 0x10 != 0;
                    if has_payload && pid != 0x1FFF {
                        if let Some(prev) = o.cc[pid]
                            && cc != (prev + 1) & 0x0F
                            && cc != prev
                        {
                            o.cc_errors += 1;
                        }
                        o.cc[pid] = Some(cc);
                    }
                    if let Some(pcr) = packet_pcr(p) {
                        let p0 = *o.first_pcr.get_or_insert(pcr);
                        if pcr >= p0 {
                            o.points.push(((pcr - p0) as f64 / 27.0, t_us));
                        }
                    }
                }
            }
        }
    }
    let mut stats = Vec::new();
    println!(
        "{:>6} {:>9} {:>7} {:>9} {:>9} {:>9} {:>11} {:>11} {:>5}",
        "port",
        "datagrams",
        "Mbit/s",
        "gap p50",
        "gap p99",
        "gap max",
        "PCR jit p99",
        "PCR jit p-p",
        "CC"
    );
    for o in &outputs {
        // Arrival minus media time, over media time.
        let pts: Vec<(f64, f64)> = o.points.iter().map(|&(m, a)| (m, a - m)).collect();
        let (p99, pp) = pcr_jitter(&pts);
        let s = OutputStats {
            port: o.port,
            datagrams: o.datagrams,
            mbps: o.bytes as f64 * 8.0 / args.duration / 1e6,
            gap_us: (
                o.gaps.value_at_quantile(0.5),
                o.gaps.value_at_quantile(0.99),
                o.gaps.max(),
            ),
            pcr_jitter_us: (p99, pp),
            pcrs: o.points.len(),
            cc_errors: o.cc_errors,
        };
        println!(
            "{:>6} {:>9} {:>7.2} {:>7}us {:>7}us {:>7}us {:>9.0}us {:>9.0}us {:>5}",
            s.port,
            s.datagrams,
            s.mbps,
            s.gap_us.0,
            s.gap_us.1,
            s.gap_us.2,
            s.pcr_jitter_us.0,
            s.pcr_jitter_us.1,
            s.cc_errors
        );
        stats.push(s);
    }
    let mut worst: Vec<f64> = stats.iter().map(|s| s.pcr_jitter_us.0).collect();
    worst.sort_by(|a, b| a.total_cmp(b));
    let total: f64 = stats.iter().map(|s| s.mbps).sum();
    println!(
        "outputs {} · total {:.1} Mbit/s · PCR jitter p99: median over outputs {:.0} us, worst {:.0} us · CC errors {}",
        stats.len(),
        total,
        worst.get(worst.len() / 2).copied().unwrap_or(0.0),
        worst.last().copied().unwrap_or(0.0),
        stats.iter().map(|s| s.cc_errors).sum::<u64>()
    );
    if let Some(path) = &args.json {
        let rows: Vec<String> = stats
            .iter()
            .map(|s| {
                format!(
                    "  {{\"port\": {}, \"datagrams\": {}, \"mbps\": {:.3}, \"gap_us_p50\": {}, \"gap_us_p99\": {}, \"gap_us_max\": {}, \"pcr_jitter_us_p99\": {:.1}, \"pcr_jitter_us_pp\": {:.1}, \"pcrs\": {}, \"cc_errors\": {}}}",
                    s.port, s.datagrams, s.mbps, s.gap_us.0, s.gap_us.1, s.gap_us.2,
                    s.pcr_jitter_us.0, s.pcr_jitter_us.1, s.pcrs, s.cc_errors
                )
            })
            .collect();
        let text = format!("[\n{}\n]\n", rows.join(",\n"));
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_removed_and_jitter_remains() {
        // Arrival runs 0.01% fast (drift) with a ±500 µs square wave.
        let pts: Vec<(f64, f64)> = (0..1000)
            .map(|i| {
                let m = i as f64 * 40_000.0;
                let a = m * 1.0001 + if i % 2 == 0 { 500.0 } else { -500.0 };
                (m, a - m)
            })
            .collect();
        let (p99, pp) = pcr_jitter(&pts);
        assert!((p99 - 500.0).abs() < 5.0, "{p99}");
        assert!((pp - 1000.0).abs() < 10.0, "{pp}");
        assert_eq!(parse_ports("5000-5002").unwrap(), vec![5000, 5001, 5002]);
        assert!(parse_ports("5-1").is_err());
    }
}
