//! Results: a human table on stdout and a JSON document (written by hand:
//! flat numbers and strings only).
use std::fmt::Write as _;

use crate::client::{Errors, Outcome};
use crate::procstat::MachineCpu;

/// A load run's results.
#[derive(Debug)]
pub struct LoadReport {
    pub label: String,
    pub url: String,
    pub connections: usize,
    pub connected: usize,
    pub held_at_end: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub connect_seconds: f64,
    pub seconds: f64,
    pub server_pids: Vec<u32>,
    /// Server CPU seconds during the measurement.
    pub server_cpu: Option<f64>,
    /// This process's CPU seconds during the measurement.
    pub client_cpu: f64,
    /// The whole machine's CPU time during the measurement.
    pub machine: MachineCpu,
    pub outcome: Outcome,
}

/// An idle run's results.
#[derive(Debug)]
pub struct IdleReport {
    pub label: String,
    pub url: String,
    pub connections: usize,
    pub connected: usize,
    pub held_at_end: usize,
    pub request_first: bool,
    pub threads: usize,
    pub connect_seconds: f64,
    pub hold_seconds: f64,
    pub server_pids: Vec<u32>,
    pub pss_before: Option<u64>,
    /// Right after all connections were up.
    pub pss_held: Option<u64>,
    /// At the end of the hold.
    pub pss_end: Option<u64>,
    pub errors: Errors,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl LoadReport {
    pub fn req_per_s(&self) -> f64 {
        self.outcome.requests as f64 / self.seconds
    }
    pub fn mb_per_s(&self) -> f64 {
        self.outcome.bytes as f64 / self.seconds / 1e6
    }
    /// Busy CPU seconds charged to neither the server, this client, nor
    /// interrupts: other processes and kernel threads (a noisy neighbour
    /// shows here).
    pub fn other_cpu(&self) -> f64 {
        let m = &self.machine;
        (m.total - m.idle - m.irq - self.client_cpu - self.server_cpu.unwrap_or(0.0)).max(0.0)
    }

    pub fn req_per_server_cpu_s(&self) -> Option<f64> {
        self.server_cpu
            .filter(|&c| c > 0.0)
            .map(|c| self.outcome.requests as f64 / c)
    }

    pub fn print(&self) {
        let h = &self.outcome.latency;
        let e = &self.outcome.errors;
        println!("spate-bench http {}  {}", self.url, self.label);
        println!(
            "  connections   {} ({} up after {:.1} s, {} at end), {} threads, pipeline {}",
            self.connections,
            self.connected,
            self.connect_seconds,
            self.held_at_end,
            self.threads,
            self.pipeline
        );
        println!(
            "  requests      {} in {:.2} s = {:.0} req/s",
            self.outcome.requests,
            self.seconds,
            self.req_per_s()
        );
        println!("  throughput    {:.1} MB/s", self.mb_per_s());
        println!(
            "  latency       p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max())
        );
        println!(
            "  errors        connect {}  reset {}  closed {}  bad-status {}  timeout {}  parse {}",
            e.connect, e.reset, e.closed, e.bad_status, e.timeout, e.parse
        );
        if let Some(cpu) = self.server_cpu {
            println!(
                "  server CPU    {:.2} s (pids {:?}) = {:.0} req per server-CPU-second",
                cpu,
                self.server_pids,
                self.req_per_server_cpu_s().unwrap_or(0.0)
            );
        }
        let m = &self.machine;
        println!(
            "  client CPU    {:.2} s; other {:.2} s; machine busy {:.0}%: user {:.2} s, system {:.2} s, irq+softirq {:.2} s, idle {:.2} s",
            self.client_cpu,
            self.other_cpu(),
            m.busy() * 100.0,
            m.user,
            m.system,
            m.irq,
            m.idle
        );
        if self.outcome.nobufs > 0 {
            println!(
                "  note          receive re-armed {} times for lack of provided buffers",
                self.outcome.nobufs
            );
        }
    }

    pub fn json(&self) -> String {
        let h = &self.outcome.latency;
        let mut s = String::from("{\n");
        field_str(&mut s, "mode", "load");
        field_str(&mut s, "label", &self.label);
        field_str(&mut s, "url", &self.url);
        field(&mut s, "connections", self.connections);
        field(&mut s, "connected", self.connected);
        field(&mut s, "held_at_end", self.held_at_end);
        field(&mut s, "threads", self.threads);
        field(&mut s, "pipeline", self.pipeline);
        field(&mut s, "connect_seconds", f3(self.connect_seconds));
        field(&mut s, "seconds", f3(self.seconds));
        field(&mut s, "requests", self.outcome.requests);
        field(&mut s, "req_per_s", f3(self.req_per_s()));
        field(&mut s, "bytes", self.outcome.bytes);
        field(&mut s, "mb_per_s", f3(self.mb_per_s()));
        field(&mut s, "latency_p50_us", h.value_at_quantile(0.5));
        field(&mut s, "latency_p90_us", h.value_at_quantile(0.9));
        field(&mut s, "latency_p99_us", h.value_at_quantile(0.99));
        field(&mut s, "latency_p999_us", h.value_at_quantile(0.999));
        field(&mut s, "latency_max_us", h.max());
        field(&mut s, "latency_mean_us", f3(h.mean()));
        errors_json(&mut s, &self.outcome.errors);
        field(&mut s, "server_pids", format!("{:?}", self.server_pids));
        field(&mut s, "server_cpu_s", opt(self.server_cpu.map(f3)));
        field(
            &mut s,
            "req_per_server_cpu_s",
            opt(self.req_per_server_cpu_s().map(f3)),
        );
        field(&mut s, "client_cpu_s", f3(self.client_cpu));
        field(&mut s, "other_cpu_s", f3(self.other_cpu()));
        field(&mut s, "machine_busy", f3(self.machine.busy()));
        field(&mut s, "machine_user_s", f3(self.machine.user));
        field(&mut s, "machine_system_s", f3(self.machine.system));
        field(&mut s, "machine_irq_s", f3(self.machine.irq));
        field(&mut s, "machine_idle_s", f3(self.machine.idle));
        field(&mut s, "recv_nobufs", self.outcome.nobufs);
        field(&mut s, "connects", self.outcome.connects);
        finish(s)
    }
}

impl IdleReport {
    /// PSS growth per connection, from before any connection to the end of
    /// the hold.
    pub fn bytes_per_conn(&self) -> Option<f64> {
        let (b, e) = (self.pss_before?, self.pss_end?);
        (self.connected > 0).then(|| (e as f64 - b as f64) / self.connected as f64)
    }

    pub fn print(&self) {
        println!("spate-bench http {} --idle  {}", self.url, self.label);
        println!(
            "  connections   {} ({} up after {:.1} s, {} still open after {:.0} s), {} threads, {}",
            self.connections,
            self.connected,
            self.connect_seconds,
            self.held_at_end,
            self.hold_seconds,
            self.threads,
            if self.request_first {
                "one request each, then idle"
            } else {
                "no request sent"
            }
        );
        if let (Some(b), Some(h), Some(e)) = (self.pss_before, self.pss_held, self.pss_end) {
            println!(
                "  server PSS    before {:.1} MiB, held {:.1} MiB, end {:.1} MiB (pids {:?})",
                b as f64 / 1048576.0,
                h as f64 / 1048576.0,
                e as f64 / 1048576.0,
                self.server_pids
            );
            println!(
                "  per idle conn {:.0} bytes",
                self.bytes_per_conn().unwrap_or(0.0)
            );
        }
        let e = &self.errors;
        println!(
            "  errors        connect {}  reset {}  closed {}  bad-status {}  timeout {}  parse {}",
            e.connect, e.reset, e.closed, e.bad_status, e.timeout, e.parse
        );
    }

    pub fn json(&self) -> String {
        let mut s = String::from("{\n");
        field_str(&mut s, "mode", "idle");
        field_str(&mut s, "label", &self.label);
        field_str(&mut s, "url", &self.url);
        field(&mut s, "connections", self.connections);
        field(&mut s, "connected", self.connected);
        field(&mut s, "held_at_end", self.held_at_end);
        field(&mut s, "request_first", self.request_first);
        field(&mut s, "threads", self.threads);
        field(&mut s, "connect_seconds", f3(self.connect_seconds));
        field(&mut s, "hold_seconds", f3(self.hold_seconds));
        field(&mut s, "server_pids", format!("{:?}", self.server_pids));
        field(&mut s, "pss_before_bytes", opt(self.pss_before));
        field(&mut s, "pss_held_bytes", opt(self.pss_held));
        field(&mut s, "pss_end_bytes", opt(self.pss_end));
        field(
            &mut s,
            "pss_bytes_per_conn",
            opt(self.bytes_per_conn().map(f3)),
        );
        errors_json(&mut s, &self.errors);
        finish(s)
    }
}

fn f3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

fn field(s: &mut String, key: &str, v: impl std::fmt::Display) {
    let _ = writeln!(s, "  \"{key}\": {v},");
}

fn field_str(s: &mut String, key: &str, v: &str) {
    let mut esc = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '"' => esc.push_str("\\\""),
            '\\' => esc.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(esc, "\\u{:04x}", c as u32);
            }
            c => esc.push(c),
        }
    }
    let _ = writeln!(s, "  \"{key}\": \"{esc}\",");
}

fn errors_json(s: &mut String, e: &Errors) {
    let _ = writeln!(
        s,
        "  \"errors\": {{\"connect\": {}, \"reset\": {}, \"closed\": {}, \"bad_status\": {}, \"timeout\": {}, \"parse\": {}, \"total\": {}}},",
        e.connect,
        e.reset,
        e.closed,
        e.bad_status,
        e.timeout,
        e.parse,
        e.total()
    );
}

fn finish(mut s: String) -> String {
    // Drop the last ",\n" and close the object.
    s.truncate(s.trim_end_matches([',', '\n']).len());
    s.push_str("\n}\n");
    s
}
