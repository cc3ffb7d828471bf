//! What the server used, read from /proc: CPU time (`/proc/PID/stat`
//! utime + stime, every thread included) and proportional set size
//! (`/proc/PID/smaps_rollup` `Pss:`), summed over the server's processes.
use std::fs;
use std::io;

/// A server's processes.
#[derive(Debug, Clone, Default)]
pub struct ServerProcs {
    /// Process ids whose usage is summed.
    pub pids: Vec<u32>,
}

impl ServerProcs {
    /// `pids` given one by one, plus each of `parents` with its direct
    /// children (e.g. an nginx master and its workers).
    pub fn resolve(pids: &[u32], parents: &[u32]) -> io::Result<Self> {
        let mut all: Vec<u32> = pids.to_vec();
        for &p in parents {
            all.push(p);
            all.extend(children_of(p)?);
        }
        all.sort_unstable();
        all.dedup();
        for &p in &all {
            if fs::metadata(format!("/proc/{p}")).is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no process {p}"),
                ));
            }
        }
        Ok(Self { pids: all })
    }

    /// Whether there is anything to measure.
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// CPU seconds (user + system) used so far by all the processes.
    pub fn cpu_seconds(&self) -> io::Result<f64> {
        let tck = clock_ticks();
        let mut ticks = 0u64;
        for &p in &self.pids {
            ticks += cpu_ticks(p)?;
        }
        Ok(ticks as f64 / tck)
    }

    /// Summed resident set size in bytes (`/proc/PID/statm`, cheap enough
    /// to read every second).
    pub fn rss_bytes(&self) -> io::Result<u64> {
        let page = page_size();
        let mut sum = 0;
        for &p in &self.pids {
            let t = fs::read_to_string(format!("/proc/{p}/statm"))?;
            sum += parse_statm_rss_pages(&t)
                .ok_or_else(|| io::Error::other(format!("/proc/{p}/statm: bad format")))?
                * page;
        }
        Ok(sum)
    }

    /// Summed open file descriptors (entries of `/proc/PID/fd`).
    pub fn fd_count(&self) -> io::Result<u64> {
        let mut sum = 0;
        for &p in &self.pids {
            sum += fs::read_dir(format!("/proc/{p}/fd"))?.count() as u64;
        }
        Ok(sum)
    }

    /// Summed PSS in bytes.
    pub fn pss_bytes(&self) -> io::Result<u64> {
        let mut sum = 0;
        for &p in &self.pids {
            sum += pss_bytes(p)?;
        }
        Ok(sum)
    }
}

/// Direct children of `pid` (from every thread's `children` list).
fn children_of(pid: u32) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("children");
        if let Ok(s) = fs::read_to_string(path) {
            out.extend(s.split_whitespace().filter_map(|w| w.parse::<u32>().ok()));
        }
    }
    Ok(out)
}

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory arguments.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_ticks(&s).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: unexpected format"),
        )
    })
}

/// Fields 14 and 15 (utime, stime) of a stat line; the command name (field
/// 2) is parenthesised and may contain spaces, so count from the last `)`.
pub fn parse_stat_ticks(s: &str) -> Option<u64> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn pss_bytes(pid: u32) -> io::Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("Pss:") {
            let kb: u64 = v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Pss line"))?;
            return Ok(kb * 1024);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("/proc/{pid}/smaps_rollup has no Pss line"),
    ))
}

/// CPU seconds this process has used (all threads).
pub fn self_cpu_seconds() -> f64 {
    cpu_ticks(std::process::id()).unwrap_or(0) as f64 / clock_ticks()
}

/// File descriptors this process has open (entries of `/proc/self/fd`;
/// connections held as io_uring direct descriptors are not among them).
pub fn self_fd_count() -> u64 {
    fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Machine-wide CPU time from the first line of /proc/stat, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    /// user + nice.
    pub user: f64,
    /// system.
    pub system: f64,
    /// irq + softirq (network receive processing on loopback lands here,
    /// charged to no process).
    pub irq: f64,
    /// idle + iowait.
    pub idle: f64,
    /// Everything, steal included.
    pub total: f64,
}

impl MachineCpu {
    /// Read the counters now.
    pub fn now() -> Self {
        let Ok(s) = fs::read_to_string("/proc/stat") else {
            return Self::default();
        };
        let Some(line) = s.lines().next() else {
            return Self::default();
        };
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse::<u64>().ok())
            .map(|t| t as f64 / clock_ticks())
            .collect();
        let g = |i: usize| v.get(i).copied().unwrap_or(0.0);
        Self {
            user: g(0) + g(1),
            system: g(2),
            irq: g(5) + g(6),
            idle: g(3) + g(4),
            total: v.iter().take(8).sum(),
        }
    }

    /// Usage between `self` (earlier) and `later`.
    pub fn delta(&self, later: &Self) -> Self {
        Self {
            user: later.user - self.user,
            system: later.system - self.system,
            irq: later.irq - self.irq,
            idle: later.idle - self.idle,
            total: later.total - self.total,
        }
    }

    /// Busy fraction (not idle) of all CPUs.
    pub fn busy(&self) -> f64 {
        if self.total > 0.0 {
            1.0 - self.idle / self.total
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_name() {
        let s = "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat_ticks(s), Some(325));
    }

    #[test]
    fn reads_own_usage() {
        let me = ServerProcs::resolve(&[std::process::id()], &[]).unwrap();
        assert!(me.cpu_seconds().unwrap() >= 0.0);
        assert!(me.pss_bytes().unwrap() > 0);
    }
}

/// Second field of `/proc/PID/statm`: resident pages.
pub fn parse_statm_rss_pages(t: &str) -> Option<u64> {
    t.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

#[cfg(test)]
mod statm_tests {
    #[test]
    fn statm() {
        assert_eq!(
            super::parse_statm_rss_pages("1000 250 30 4 0 100 0\n"),
            Some(250)
        );
        assert_eq!(super::parse_statm_rss_pages("1000"), None);
    }
}
