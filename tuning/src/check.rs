//! The host checks: each reads a few files (under a root directory, `/` on a
//! real host, a fixture tree in tests), says what it found, what Spate wants
//! and why, and how to fix it.
use std::path::{Path, PathBuf};

use crate::parse;
use crate::probe::{self, RingProbe};

/// How much a failed check matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Spate does not run (or runs badly broken) without it.
    Required,
    /// Spate runs, but holds fewer viewers or has worse latency.
    Recommended,
    /// Reported for the operator; nothing to fix.
    Info,
}

/// How a failed check is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// Write `value` to the file at `path` (relative to the root): a sysctl
    /// under `proc/sys` or a sysfs knob. `key` is what an operator calls it
    /// (`net.core.somaxconn`).
    Write {
        /// Sysctl name or sysfs path shown to the operator.
        key: String,
        /// The file, relative to the root (no leading `/`).
        path: String,
        /// What to write.
        value: String,
        /// A sysctl (persisted in /etc/sysctl.d by `apply --persist`).
        sysctl: bool,
    },
    /// A line of the service's systemd drop-in (`LimitNOFILE=1048576`).
    Systemd(String),
    /// Something only the operator can do (kernel command line, BIOS).
    Manual(String),
}

/// One checked setting.
#[derive(Debug, Clone)]
pub struct Check {
    /// Setting name.
    pub name: String,
    /// What the host has.
    pub have: String,
    /// What Spate wants.
    pub want: String,
    /// Why it matters.
    pub why: String,
    /// The host has what Spate wants.
    pub ok: bool,
    /// How much it matters.
    pub level: Level,
    /// How to fix it, when it fails.
    pub fixes: Vec<Fix>,
}

/// A host's files, read under a root directory.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    /// Files under `root` (`/` for this host).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` (absolute, as on a real host) under the root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// A file's text, trimmed; `None` if it cannot be read.
    pub fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.path(path))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// A sysctl by its dotted name.
    pub fn sysctl(&self, key: &str) -> Option<String> {
        self.read(&sysctl_path(key))
    }

    /// Names in a directory, sorted (empty if it cannot be read).
    pub fn list(&self, path: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(path))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The last component of a symlink's target (`device` → `virtio1`).
    pub fn link_name(&self, path: &str) -> Option<String> {
        let t = std::fs::read_link(self.path(path)).ok()?;
        Some(t.file_name()?.to_string_lossy().into_owned())
    }
}

/// `/proc/sys/...` path of a dotted sysctl name.
pub fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// What the checks are run for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Workers Spate will run (0 = one per online CPU).
    pub workers: usize,
    /// The io_uring probe of this kernel (`None`: not run, e.g. when the
    /// root is a fixture tree).
    pub probe: Option<RingProbe>,
}

/// File-descriptor limit Spate asks for: each worker's direct-descriptor
/// table is capped by it.
pub const WANT_NOFILE: u64 = 1 << 20;

fn sysctl_at_least(host: &Host, key: &str, want: u64, level: Level, why: &str) -> Check {
    let have = host.sysctl(key);
    let ok = have
        .as_deref()
        .and_then(parse::integer)
        .is_some_and(|v| v >= want);
    Check {
        name: key.to_string(),
        have: have.unwrap_or_else(|| "unreadable".into()),
        want: format!(">= {want}"),
        why: why.to_string(),
        ok,
        level,
        fixes: vec![Fix::Write {
            key: key.to_string(),
            path: sysctl_path(key).trim_start_matches('/').to_string(),
            value: want.to_string(),
            sysctl: true,
        }],
    }
}

fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let ma: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mi: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (ma, mi) >= (major, minor)
}

/// Every check, in report order.
pub fn checks(host: &Host, opts: &Options) -> Vec<Check> {
    let mut out = Vec::new();
    let release = host.read("/proc/sys/kernel/osrelease").unwrap_or_default();
    out.push(Check {
        name: "kernel".into(),
        ok: kernel_at_least(&release, 6, 1),
        have: if release.is_empty() {
            "unreadable".into()
        } else {
            release.clone()
        },
        want: ">= 6.1".into(),
        why: "multishot accept (5.19) and receive (6.0), provided buffer rings (5.19), \
              send_zc (6.0), direct descriptors: the engine's floor is 6.1"
            .into(),
        level: Level::Required,
        fixes: vec![Fix::Manual("boot a Linux >= 6.1 kernel".into())],
    });
    let disabled = host.sysctl("kernel.io_uring_disabled");
    out.push(Check {
        name: "kernel.io_uring_disabled".into(),
        ok: disabled.as_deref().is_none_or(|v| v == "0"),
        have: disabled.unwrap_or_else(|| "absent (kernel < 6.6: io_uring always on)".into()),
        want: "0".into(),
        why: "1 or 2 forbid io_uring to unprivileged or all processes; Spate's every \
              socket and file operation goes through io_uring"
            .into(),
        level: Level::Required,
        fixes: vec![Fix::Write {
            key: "kernel.io_uring_disabled".into(),
            path: "proc/sys/kernel/io_uring_disabled".into(),
            value: "0".into(),
            sysctl: true,
        }],
    });
    match &opts.probe {
        None => out.push(Check {
            name: "io_uring probe".into(),
            have: "not run (--no-probe, or a --root other than /)".into(),
            want: "the ops Spate submits".into(),
            why: "the probe asks the running kernel, so it only means something for /".into(),
            ok: true,
            level: Level::Info,
            fixes: Vec::new(),
        }),
        Some(p) => out.extend(probe_checks(p, &release)),
    }
    let limits = host.read("/proc/self/limits").unwrap_or_default();
    let nofile = parse::limit(&limits, "Max open files");
    out.push(Check {
        name: "open files (RLIMIT_NOFILE soft, hard)".into(),
        ok: nofile.is_some_and(|(soft, _)| soft >= WANT_NOFILE),
        have: nofile.map_or("unreadable".into(), |(s, h)| format!("{s}, {h}")),
        want: format!(">= {WANT_NOFILE} soft"),
        why: "each worker's direct-descriptor table (its connections) is capped by the \
              soft limit; the box holds workers x limit connections"
            .into(),
        level: Level::Recommended,
        fixes: vec![Fix::Systemd(format!("LimitNOFILE={WANT_NOFILE}"))],
    });
    out.push(sysctl_at_least(
        host,
        "fs.nr_open",
        WANT_NOFILE,
        Level::Recommended,
        "the ceiling of any process's open-file limit: LimitNOFILE cannot exceed it",
    ));
    let memlock = parse::limit(&limits, "Max locked memory");
    let new_accounting = kernel_at_least(&release, 5, 12);
    out.push(Check {
        name: "locked memory (RLIMIT_MEMLOCK soft)".into(),
        ok: new_accounting || memlock.is_some_and(|(s, _)| s >= 64 << 20),
        have: memlock.map_or("unreadable".into(), |(s, _)| {
            if s == u64::MAX {
                "unlimited".into()
            } else {
                format!("{s} bytes")
            }
        }),
        want: if new_accounting {
            "any (kernel >= 5.12 charges rings to the memory cgroup)".into()
        } else {
            ">= 64 MiB".into()
        },
        why: "before 5.12, io_uring rings and registered buffers count against it".into(),
        level: Level::Recommended,
        fixes: vec![Fix::Systemd("LimitMEMLOCK=infinity".into())],
    });
    out.push(sysctl_at_least(
        host,
        "net.core.somaxconn",
        4096,
        Level::Recommended,
        "listeners ask for a 4096 backlog; the kernel caps it here, and a full \
         backlog drops connection bursts",
    ));
    out.push(sysctl_at_least(
        host,
        "net.ipv4.tcp_max_syn_backlog",
        4096,
        Level::Recommended,
        "half-open connections queued per listener during a connection burst",
    ));
    let ports = host.sysctl("net.ipv4.ip_local_port_range");
    let span = ports
        .as_deref()
        .and_then(parse::port_range)
        .map_or(0, |(a, b)| u32::from(b - a) + 1);
    out.push(Check {
        name: "net.ipv4.ip_local_port_range".into(),
        ok: span >= 50_000,
        have: ports.map_or("unreadable".into(), |p| {
            p.split_whitespace().collect::<Vec<_>>().join(" ")
        }),
        want: "1024 65535 (>= 50000 ports)".into(),
        why: "outgoing connections (http:// pulls, load tests against this box) each \
              take a local port per destination"
            .into(),
        level: Level::Recommended,
        fixes: vec![Fix::Write {
            key: "net.ipv4.ip_local_port_range".into(),
            path: "proc/sys/net/ipv4/ip_local_port_range".into(),
            value: "1024 65535".into(),
            sysctl: true,
        }],
    });
    let tw = host.sysctl("net.ipv4.tcp_tw_reuse");
    out.push(Check {
        name: "net.ipv4.tcp_tw_reuse".into(),
        ok: tw.as_deref() == Some("1"),
        have: tw.unwrap_or_else(|| "unreadable".into()),
        want: "1".into(),
        why: "lets outgoing connections reuse TIME_WAIT ports (churning pulls and load \
              tests run out of ports otherwise); 2 = loopback only"
            .into(),
        level: Level::Recommended,
        fixes: vec![Fix::Write {
            key: "net.ipv4.tcp_tw_reuse".into(),
            path: "proc/sys/net/ipv4/tcp_tw_reuse".into(),
            value: "1".into(),
            sysctl: true,
        }],
    });
    out.extend(pacing_checks(
        host.sysctl("net.ipv4.tcp_congestion_control").as_deref(),
        host.sysctl("net.core.default_qdisc").as_deref(),
    ));
    out.push(sysctl_at_least(
        host,
        "net.core.rmem_max",
        8 << 20,
        Level::Recommended,
        "UDP sources ask for a 4 MiB receive buffer (the kernel doubles the request and \
         caps it here); a smaller one drops multicast TS under bursts",
    ));
    out.push(sysctl_at_least(
        host,
        "net.core.wmem_max",
        8 << 20,
        Level::Recommended,
        "UDP pushes and fast viewers need send buffers above the default cap",
    ));
    out.push(sysctl_at_least(
        host,
        "fs.pipe-max-size",
        1 << 20,
        Level::Recommended,
        "file_send = \"splice\" uses 1 MiB pipes",
    ));
    out.extend(cpu_checks(host, opts));
    out.extend(nic_checks(host, opts));
    let thp = host.read("/sys/kernel/mm/transparent_hugepage/enabled");
    let sel = thp.as_deref().and_then(parse::selected).map(str::to_string);
    out.push(Check {
        name: "transparent hugepages".into(),
        ok: sel.as_deref().is_none_or(|s| s != "always"),
        have: sel.clone().unwrap_or_else(|| "not available".into()),
        want: "madvise or never".into(),
        why: "always: khugepaged compaction stalls worker threads for milliseconds; \
              Spate's buffers gain nothing from huge pages"
            .into(),
        level: Level::Recommended,
        fixes: vec![Fix::Write {
            key: "/sys/kernel/mm/transparent_hugepage/enabled".into(),
            path: "sys/kernel/mm/transparent_hugepage/enabled".into(),
            value: "madvise".into(),
            sysctl: false,
        }],
    });
    out
}

/// TCP congestion control and who paces it, from the text of
/// `net.ipv4.tcp_congestion_control` and `net.core.default_qdisc` (`None`:
/// unreadable). BBR paces every socket: with the `fq` qdisc the qdisc does
/// it, with any other qdisc TCP arms an hrtimer per socket ("internal
/// pacing"), which costs CPU at many sockets. An interface's root qdisc is
/// not in /proc or /sys (only netlink, `tc qdisc show`, has it), so only the
/// default qdisc is checked.
pub fn pacing_checks(cc: Option<&str>, qdisc: Option<&str>) -> Vec<Check> {
    let cc_name = cc.and_then(parse::name);
    let qdisc_name = qdisc.and_then(parse::name);
    let bbr = cc_name.is_some_and(|c| c.starts_with("bbr"));
    let shown = |raw: Option<&str>| raw.map_or("unreadable".to_string(), |v| v.trim().to_string());
    let mut out = vec![Check {
        name: "net.ipv4.tcp_congestion_control".into(),
        have: shown(cc),
        want: "bbr with the fq qdisc, or cubic".into(),
        why: "bbr suits internet viewers (lossy, long paths) but paces every socket;               see net.core.default_qdisc"
            .into(),
        ok: true,
        level: Level::Info,
        fixes: Vec::new(),
    }];
    let fq = qdisc_name == Some("fq");
    out.push(Check {
        name: "net.core.default_qdisc".into(),
        have: shown(qdisc),
        want: if bbr {
            "fq (congestion control is bbr)".into()
        } else {
            "any (fq matters with bbr only)".into()
        },
        why: "with bbr and no fq qdisc, TCP paces each socket itself with an hrtimer \
              (internal pacing), which costs CPU at many sockets: 10,000 HLS viewers \
              over loopback took 11.5-12.6 server CPU-s per 20 s under bbr against 4.4 \
              under cubic with file_send = \"sendfile\" (one run each, docs/tuning.md); \
              fq paces in the qdisc instead. Only the default qdisc is checked: an \
              interface's root qdisc is not in /proc or /sys (`tc qdisc show` has it)"
            .into(),
        ok: !bbr || fq,
        level: Level::Recommended,
        fixes: vec![
            Fix::Write {
                key: "net.core.default_qdisc".into(),
                path: "proc/sys/net/core/default_qdisc".into(),
                value: "fq".into(),
                sysctl: true,
            },
            Fix::Manual(
                "the default applies to qdiscs created after the change: bring the NIC \
                 up again or `tc qdisc replace dev <nic> root fq` (loopback is always \
                 noqueue, so loopback traffic always uses internal pacing)"
                    .into(),
            ),
        ],
    });
    out
}

fn probe_checks(p: &RingProbe, release: &str) -> Vec<Check> {
    let mut out = Vec::new();
    if let Some(e) = &p.setup_error {
        out.push(Check {
            name: "io_uring setup".into(),
            have: e.clone(),
            want: "a ring can be created".into(),
            why: "the engine is built on io_uring".into(),
            ok: false,
            level: Level::Required,
            fixes: vec![Fix::Manual(
                "allow io_uring (kernel.io_uring_disabled = 0; container seccomp profiles \
                 often block io_uring_setup)"
                    .into(),
            )],
        });
        return out;
    }
    let missing: Vec<&str> = p
        .opcodes
        .iter()
        .filter(|(name, ok)| !ok && probe::REQUIRED.contains(name))
        .map(|(n, _)| *n)
        .collect();
    out.push(Check {
        name: "io_uring opcodes".into(),
        ok: missing.is_empty(),
        have: if missing.is_empty() {
            "all required present".into()
        } else {
            format!("missing: {}", missing.join(", "))
        },
        want: probe::REQUIRED.join(", "),
        why: "probed on this kernel (IORING_REGISTER_PROBE)".into(),
        level: Level::Required,
        fixes: vec![Fix::Manual("boot a Linux >= 6.1 kernel".into())],
    });
    for (name, why) in [
        (
            "send_zc",
            "zero-copy sends (file_send = \"send_zc\"); falls back to send",
        ),
        ("splice", "file_send = \"splice\"; falls back to send"),
        ("socket", "outgoing sockets as direct descriptors"),
        (
            "fixed_fd_install",
            "file_send = \"sendfile\" (Linux >= 6.8); falls back to send",
        ),
    ] {
        let ok = p.opcodes.iter().any(|(n, s)| *n == name && *s);
        out.push(Check {
            name: format!("io_uring {name}"),
            have: if ok { "supported" } else { "missing" }.into(),
            want: "supported".into(),
            why: why.into(),
            ok,
            level: Level::Recommended,
            fixes: vec![Fix::Manual("boot a Linux >= 6.1 kernel".into())],
        });
    }
    out.push(Check {
        name: "io_uring direct descriptors".into(),
        ok: p.direct_descriptors,
        have: if p.direct_descriptors {
            "sparse table registered".into()
        } else {
            "cannot register a sparse file table".into()
        },
        want: "supported".into(),
        why: "connections live in the ring's file table, past the process fd limit".into(),
        level: Level::Required,
        fixes: vec![Fix::Manual("boot a Linux >= 6.1 kernel".into())],
    });
    let multishot = kernel_at_least(release, 6, 0);
    out.push(Check {
        name: "multishot receive, buffer rings".into(),
        ok: multishot,
        have: format!("inferred from kernel {release}"),
        want: ">= 6.0".into(),
        why: "no opcode to probe: multishot recv is 6.0, buffer rings 5.19".into(),
        level: Level::Required,
        fixes: vec![Fix::Manual("boot a Linux >= 6.1 kernel".into())],
    });
    out
}

fn online_cpus(host: &Host) -> Vec<u32> {
    host.read("/sys/devices/system/cpu/online")
        .as_deref()
        .and_then(parse::cpu_list)
        .unwrap_or_default()
}

fn cpu_checks(host: &Host, opts: &Options) -> Vec<Check> {
    let mut out = Vec::new();
    let cpus = online_cpus(host);
    let workers = if opts.workers == 0 {
        cpus.len().max(1)
    } else {
        opts.workers
    };
    out.push(Check {
        name: "CPUs online".into(),
        have: format!(
            "{} ({})",
            cpus.len(),
            host.read("/sys/devices/system/cpu/online")
                .unwrap_or_default()
        ),
        want: format!(">= workers ({workers})"),
        why: "one pinned worker per core; more workers than cores share cores".into(),
        ok: cpus.len() >= workers,
        level: Level::Recommended,
        fixes: vec![Fix::Manual(format!(
            "[server] workers = {} (or 0: one per core)",
            cpus.len().max(1)
        ))],
    });
    let cmdline = host.read("/proc/cmdline").unwrap_or_default();
    let (isol, nohz) = parse::isolation(&cmdline);
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    out.push(Check {
        name: "CPU isolation (isolcpus, nohz_full)".into(),
        have: if isol.is_empty() && nohz.is_empty() {
            "none".into()
        } else {
            format!("isolcpus {}, nohz_full {}", list(&isol), list(&nohz))
        },
        want: "isolated cores for the workers on a dedicated edge box (optional)".into(),
        why: "isolated cores keep other tasks and timer ticks off the workers; pin \
              Spate to them"
            .into(),
        ok: true,
        level: Level::Info,
        fixes: if isol.is_empty() {
            Vec::new()
        } else {
            vec![Fix::Systemd(format!("CPUAffinity={}", list(&isol)))]
        },
    });
    let governors: Vec<(u32, String)> = cpus
        .iter()
        .filter_map(|c| {
            host.read(&format!(
                "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            ))
            .map(|g| (*c, g))
        })
        .collect();
    if governors.is_empty() {
        out.push(Check {
            name: "CPU frequency governor".into(),
            have: "not exposed (virtual machine, or no cpufreq driver)".into(),
            want: "performance".into(),
            why: "powersave/ondemand add wake-up latency to every loop turn".into(),
            ok: true,
            level: Level::Info,
            fixes: Vec::new(),
        });
    } else {
        let slow: Vec<&(u32, String)> = governors
            .iter()
            .filter(|(_, g)| g != "performance")
            .collect();
        out.push(Check {
            name: "CPU frequency governor".into(),
            have: {
                let mut g: Vec<&str> = governors.iter().map(|(_, g)| g.as_str()).collect();
                g.dedup();
                g.join(", ")
            },
            want: "performance".into(),
            why: "powersave/ondemand add wake-up latency to every loop turn".into(),
            ok: slow.is_empty(),
            level: Level::Recommended,
            fixes: slow
                .iter()
                .map(|(c, _)| Fix::Write {
                    key: format!("cpu{c} scaling_governor"),
                    path: format!("sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"),
                    value: "performance".into(),
                    sysctl: false,
                })
                .collect(),
        });
    }
    out
}

fn nic_checks(host: &Host, opts: &Options) -> Vec<Check> {
    let mut out = Vec::new();
    let cpus = online_cpus(host);
    let workers = if opts.workers == 0 {
        cpus.len().max(1)
    } else {
        opts.workers
    };
    let irq_text = host.read("/proc/interrupts").unwrap_or_default();
    let rows = parse::interrupts(&irq_text);
    for nic in host.list("/sys/class/net") {
        // Only physical or virtio NICs: they have a device link.
        let Some(device) = host.link_name(&format!("/sys/class/net/{nic}/device")) else {
            continue;
        };
        let queues = host.list(&format!("/sys/class/net/{nic}/queues"));
        let rx = queues.iter().filter(|q| q.starts_with("rx-")).count();
        let want_q = workers.min(cpus.len().max(1));
        out.push(Check {
            name: format!("{nic} receive queues"),
            have: rx.to_string(),
            want: format!(">= {want_q} (one per worker core)"),
            why: "with fewer queues than workers, some cores take every receive \
                  interrupt for the others (RSS spreads flows over queues)"
                .into(),
            ok: rx >= want_q,
            level: Level::Recommended,
            fixes: vec![Fix::Manual(format!(
                "ethtool -L {nic} combined {want_q} (if the NIC has them)"
            ))],
        });
        let virtio = device.starts_with("virtio").then_some(device.as_str());
        let irqs = parse::nic_irqs(&rows, &nic, virtio);
        if irqs.is_empty() {
            continue;
        }
        let mut cores = std::collections::BTreeSet::new();
        for r in &irqs {
            let aff = host
                .read(&format!("/proc/irq/{}/smp_affinity_list", r.irq))
                .as_deref()
                .and_then(parse::cpu_list)
                .unwrap_or_default();
            cores.extend(aff);
        }
        let covered = cores.len();
        out.push(Check {
            name: format!("{nic} interrupt affinity"),
            have: format!(
                "{} IRQs on cores {}",
                irqs.len(),
                cores
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            want: format!("spread over the {want_q} worker cores"),
            why: "a NIC whose interrupts all land on one core makes that core's worker \
                  do every other core's softirq work"
                .into(),
            ok: covered >= want_q,
            level: Level::Recommended,
            fixes: vec![Fix::Manual(if irqs.len() >= want_q {
                "spread /proc/irq/N/smp_affinity_list over the worker cores (or run \
                 irqbalance)"
                    .into()
            } else {
                format!(
                    "too few queue interrupts to spread: enable RPS \
                     (/sys/class/net/{nic}/queues/rx-*/rps_cpus = the worker cores' mask)"
                )
            })],
        });
    }
    out
}

/// No required check failed.
pub fn ready(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.ok || c.level != Level::Required)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_name<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn bbr_without_fq_recommends_fq() {
        let c = pacing_checks(Some("bbr\n"), Some("pfifo_fast\n"));
        let cc = by_name(&c, "net.ipv4.tcp_congestion_control");
        assert_eq!(
            (cc.ok, cc.level, cc.have.as_str()),
            (true, Level::Info, "bbr")
        );
        let q = by_name(&c, "net.core.default_qdisc");
        assert!(!q.ok);
        assert_eq!(q.level, Level::Recommended);
        assert_eq!(q.have, "pfifo_fast");
        assert!(q.want.starts_with("fq"), "{}", q.want);
        assert!(q.fixes.contains(&Fix::Write {
            key: "net.core.default_qdisc".into(),
            path: "proc/sys/net/core/default_qdisc".into(),
            value: "fq".into(),
            sysctl: true,
        }));
        assert!(
            q.fixes
                .iter()
                .any(|f| matches!(f, Fix::Manual(m) if m.contains("tc qdisc replace")))
        );
        // fq_codel does not pace: TCP still arms its own timer.
        assert!(
            !by_name(
                &pacing_checks(Some("bbr"), Some("fq_codel")),
                "net.core.default_qdisc"
            )
            .ok
        );
    }

    #[test]
    fn bbr_with_fq_and_cubic_with_anything_pass() {
        for (cc, qdisc) in [
            (Some("bbr"), Some("fq")),
            (Some("cubic"), Some("pfifo_fast")),
            (Some("cubic"), Some("fq_codel")),
            (None, Some("pfifo_fast")),
            (Some("bbr"), Some("fq\n")),
        ] {
            let c = pacing_checks(cc, qdisc);
            assert!(c.iter().all(|c| c.ok), "{cc:?} {qdisc:?}: {c:?}");
        }
        let c = pacing_checks(None, None);
        assert_eq!(
            by_name(&c, "net.ipv4.tcp_congestion_control").have,
            "unreadable"
        );
        assert_eq!(by_name(&c, "net.core.default_qdisc").have, "unreadable");
    }

    #[test]
    fn bbr_with_an_unreadable_qdisc_recommends_fq() {
        assert!(!by_name(&pacing_checks(Some("bbr"), None), "net.core.default_qdisc").ok);
    }
}
