//! How busy a worker's loop is: time spent working versus waiting in the
//! ring, and the distribution of the working part of each loop turn.
//!
//! Per turn this costs one clock read (the loop already reads the clock
//! once when it wakes), two adds and one histogram record: no atomics, no
//! sharing. The control plane gets the numbers in a snapshot.
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::control::LoopSnapshot;

/// The quantiles reported for loop-turn durations.
const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

#[derive(Debug)]
pub(super) struct LoopStats {
    busy_ns: u64,
    wait_ns: u64,
    turns: u64,
    /// Busy part of each turn, ns (1 µs .. 60 s, 2 significant digits).
    hist: Histogram<u64>,
    window_start: Instant,
    window_busy_ns: u64,
    utilisation: f64,
}

impl LoopStats {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            busy_ns: 0,
            wait_ns: 0,
            turns: 0,
            hist: Histogram::new_with_bounds(1_000, 60_000_000_000, 2)
                .expect("valid histogram bounds"),
            window_start: now,
            window_busy_ns: 0,
            utilisation: 0.0,
        }
    }

    /// A turn ended at `end`: it had waited `wait`, then worked `busy`.
    pub(super) fn turn(&mut self, wait: Duration, busy: Duration, end: Instant) {
        let busy_ns = busy.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.busy_ns += busy_ns;
        self.wait_ns += wait.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.turns += 1;
        self.hist.saturating_record(busy_ns.max(1_000));
        self.window_busy_ns += busy_ns;
        let window = end.saturating_duration_since(self.window_start);
        if window >= Duration::from_secs(1) {
            self.utilisation = (self.window_busy_ns as f64 / window.as_nanos() as f64).min(1.0);
            self.window_start = end;
            self.window_busy_ns = 0;
        }
    }

    pub(super) fn snapshot(&self) -> LoopSnapshot {
        LoopSnapshot {
            busy_ns: self.busy_ns,
            wait_ns: self.wait_ns,
            utilisation: self.utilisation,
            turns: self.turns,
            turn_sum_ns: self.busy_ns,
            turn_quantiles: QUANTILES
                .iter()
                .map(|&q| (q, self.hist.value_at_quantile(q)))
                .collect(),
        }
    }
}
