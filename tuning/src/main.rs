//! `spate-tune`: checks the host settings an edge box running Spate needs.
//!
//! `spate-tune check` reads them and prints one line per setting with what
//! Spate wants and whether the host has it; it exits 1 when a required
//! setting is missing. Applying settings arrives with the host-doctor issue.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about = "Check host settings for Spate")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Read the host's settings and report (default).
    Check,
}

/// One checked setting.
#[derive(Debug)]
struct Check {
    name: &'static str,
    have: String,
    want: &'static str,
    ok: bool,
    required: bool,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let ma: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mi: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (ma, mi) >= (major, minor)
}

fn nofile() -> Option<(u64, u64)> {
    let limits = read("/proc/self/limits")?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut nums = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    Some((nums.next()?, nums.next()?))
}

fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    out.push(Check {
        name: "kernel",
        ok: kernel_at_least(&release, 6, 1),
        have: release,
        want: ">= 6.1 (multishot accept/recv, buffer rings, send_zc)",
        required: true,
    });
    let disabled = read("/proc/sys/kernel/io_uring_disabled").unwrap_or_else(|| "0".into());
    out.push(Check {
        name: "kernel.io_uring_disabled",
        ok: disabled == "0",
        have: disabled,
        want: "0",
        required: true,
    });
    if let Some((soft, hard)) = nofile() {
        out.push(Check {
            name: "open files (soft, hard)",
            ok: soft >= 16384,
            have: format!("{soft}, {hard}"),
            want: ">= 16384 soft: caps each worker's direct-descriptor table",
            required: false,
        });
    }
    let somax = read("/proc/sys/net/core/somaxconn").unwrap_or_default();
    out.push(Check {
        name: "net.core.somaxconn",
        ok: somax.parse::<u64>().is_ok_and(|v| v >= 4096),
        have: somax,
        want: ">= 4096 (listen backlog)",
        required: false,
    });
    let pipe = read("/proc/sys/fs/pipe-max-size").unwrap_or_default();
    out.push(Check {
        name: "fs.pipe-max-size",
        ok: pipe.parse::<u64>().is_ok_and(|v| v >= 1 << 20),
        have: pipe,
        want: ">= 1048576 (file_send = \"splice\")",
        required: false,
    });
    let ports = read("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let span = {
        let v: Vec<u64> = ports
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        if v.len() == 2 {
            v[1].saturating_sub(v[0])
        } else {
            0
        }
    };
    out.push(Check {
        name: "net.ipv4.ip_local_port_range",
        ok: span >= 28000,
        have: ports.replace('\t', " "),
        want: ">= 28000 ports (outgoing connections: pulls, pushes, load tests)",
        required: false,
    });
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd.unwrap_or(Cmd::Check) {
        Cmd::Check => {
            let mut failed = false;
            for c in checks() {
                let mark = match (c.ok, c.required) {
                    (true, _) => "ok  ",
                    (false, true) => {
                        failed = true;
                        "FAIL"
                    }
                    (false, false) => "warn",
                };
                println!("{mark} {:<32} {:<24} want {}", c.name, c.have, c.want);
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_compare() {
        assert!(kernel_at_least("6.1.0-18-amd64", 6, 1));
        assert!(kernel_at_least("6.18.44-fc", 6, 1));
        assert!(!kernel_at_least("5.19.0", 6, 1));
        assert!(!kernel_at_least("garbage", 6, 1));
    }

    #[test]
    fn checks_read_this_host() {
        let c = checks();
        assert!(c.iter().any(|c| c.name == "kernel" && !c.have.is_empty()));
    }
}
