//! `ts-exec:` sources on a worker: MPEG-TS read from a command's stdout
//! through the ring, and starting such sources on demand.
//!
//! Follow one run: the source's owner (one worker, chosen by the stream
//! name like a UDP source's) asks the `spate-exec` thread
//! ([`crate::ingest::exec`]) to start the command → the thread forks/execs
//! it and hands back its stdout pipe ([`ExecEvent::Started`]) → the worker
//! keeps one `IORING_OP_READ` of up to 64 KiB armed on the pipe, into a
//! buffer the source owns → each completion's bytes go into the source's
//! [`TsIngest`](super::sources::TsIngest), exactly as a UDP source's
//! datagrams do (demuxer → publisher → every output on every core) → the
//! read is re-armed. EOF, the process exiting ([`ExecEvent::Exited`]), no
//! output for `[live] source_timeout`, or no publishable stream within twice
//! that: the stream goes offline (reconnect grace, then it ends) and, while
//! the source is wanted, the command is started again after a backoff of
//! [`FIRST_BACKOFF`] doubling to [`MAX_BACKOFF`] (back to the first after a
//! run that went live and lasted [`MAX_BACKOFF`]). Each failure is logged
//! with the source's name and counted (`source_errors`).
//!
//! On demand (the default; `always_on = true` runs it from startup): a
//! request on any core for a live route of the stream (`/<s>.flv`,
//! `/<s>.ts`, `/hls/<s>/…`, `/cmaf/<s>/…`, RTMP play) marks it wanted —
//! directly on the owner, or by a [`WorkerMsg::SourceWanted`] over the mesh
//! (at most one per stream per core per second) — and, if the stream is not
//! ready, the request is parked: the connection holds a `Work::Waiting` and
//! is answered when the stream is live on this core (progressive and RTMP)
//! or has its first segment (HLS/DASH: a playlist without segments makes
//! players fail), or with a 404 after `[live] on_demand_wait`. Viewers on
//! any core keep it wanted (the same pings, once a second while a core has
//! viewers or parked requests of it). `[live] on_demand_idle` seconds
//! after the last ping, the owner stops the command.
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, types};
use spate_protocols::http::Request;

use super::sources::{IngestRef, TsIngest};
use super::{Token, Work, Worker, WorkerMsg};
use crate::ingest::SourceUrl;
use crate::ingest::exec::{ExecEvent, WorkerExec};

/// Completion kind of a source's stdout read (slot = source index,
/// generation = run number).
pub(super) const EXEC_READ: u8 = 16;

/// Bytes one read takes from a command's stdout.
const READ_BUF: usize = 64 * 1024;
/// The first restart delay after a run failed.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A core tells a stream's owner it is wanted at most this often.
const WANTED_EVERY: Duration = Duration::from_secs(1);
/// Run numbers live in a token's 24-bit generation.
const RUN_MASK: u32 = 0x00FF_FFFF;

/// Where a source's command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    /// Not running, not wanted.
    Idle,
    /// Failed; starts again at this instant if still wanted.
    Backoff(Instant),
    /// Asked the exec thread to start it.
    Spawning,
    /// Running; its stdout is being read.
    Running,
    /// Asked the exec thread to stop it; waiting for the exit.
    Stopping,
}

/// Why a run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// Nobody wants it (on demand, idle).
    NotWanted,
    /// Shutting down.
    Shutdown,
    /// It failed (closed its output, no output, no stream): restart.
    Failed,
}

/// One `ts-exec:` source owned by this worker.
#[derive(Debug)]
pub(super) struct ExecSource {
    pub(super) ing: TsIngest,
    argv: Arc<[String]>,
    label: Arc<str>,
    always_on: bool,
    state: RunState,
    /// Number of the current (or last) run.
    run: u32,
    backoff: Duration,
    stop: Option<StopReason>,
    /// Why the last run failed, for the log line of its exit.
    failure: Option<String>,
    /// The current run's stdout.
    pipe: Option<OwnedFd>,
    /// The read buffer: the kernel writes into it while a read is in
    /// flight, so it lives as long as the source.
    buf: Box<[u8]>,
    /// Run whose read is in flight.
    reading: Option<u32>,
    started_at: Option<Instant>,
    went_live: bool,
    last_wanted: Option<Instant>,
}

/// An on-demand stream as every core sees it.
#[derive(Debug)]
struct OnDemand {
    name: Arc<str>,
    owner: usize,
    /// Index in the owner's sources (used when the owner is this core).
    source: usize,
    last_ping: Option<Instant>,
}

/// What a parked request waits for.
#[derive(Debug)]
enum WaitFor {
    /// The stream live on this core (progressive viewers).
    Live,
    /// Its first segment (HLS, DASH).
    Segments,
    /// RTMP play: the stream live (replayed through `on_play`).
    Rtmp { app: String, key: String },
}

#[derive(Debug)]
struct Waiter {
    slot: u32,
    generation: u32,
    demand: usize,
    wait_for: WaitFor,
    until: Instant,
}

/// This worker's `ts-exec:` sources and its view of the on-demand streams.
#[derive(Debug)]
pub(super) struct ExecSources {
    pub(super) sources: Vec<ExecSource>,
    link: Option<WorkerExec>,
    on_demand: Vec<OnDemand>,
    waiters: Vec<Waiter>,
    idle: Duration,
    wait: Duration,
    /// `on_play` is being replayed for a waiter: do not park again.
    replaying: bool,
}

impl ExecSources {
    /// The sources of `config` that worker `index` of `workers` runs (by
    /// stream name, as UDP sources), and every on-demand stream's owner.
    pub(super) fn new(
        config: &crate::config::Config,
        index: usize,
        workers: usize,
        link: Option<WorkerExec>,
    ) -> Self {
        let mut sources = Vec::new();
        let mut on_demand = Vec::new();
        let mut per_owner = vec![0usize; workers.max(1)];
        for st in &config.streams {
            let Some(url) = st.source.as_deref() else {
                continue;
            };
            let Ok(SourceUrl::TsExec(e)) = SourceUrl::parse(url) else {
                continue;
            };
            let owner = super::sources::owner_of(&st.name, workers);
            let source = per_owner[owner];
            per_owner[owner] += 1;
            if !st.always_on {
                on_demand.push(OnDemand {
                    name: Arc::from(st.name.as_str()),
                    owner,
                    source,
                    last_ping: None,
                });
            }
            if owner == index {
                let label = format!("source {} ({})", st.name, SourceUrl::TsExec(e.clone()));
                sources.push(ExecSource {
                    ing: TsIngest::new(st.name.clone(), label.clone()),
                    argv: e.argv.into(),
                    label: label.into(),
                    always_on: st.always_on,
                    state: RunState::Idle,
                    run: 0,
                    backoff: FIRST_BACKOFF,
                    stop: None,
                    failure: None,
                    pipe: None,
                    buf: vec![0u8; READ_BUF].into_boxed_slice(),
                    reading: None,
                    started_at: None,
                    went_live: false,
                    last_wanted: None,
                });
            }
        }
        Self {
            sources,
            link,
            on_demand,
            waiters: Vec::new(),
            idle: Duration::from_secs_f64(config.live.on_demand_idle),
            wait: Duration::from_secs_f64(config.live.on_demand_wait),
            replaying: false,
        }
    }

    /// Whether requests are parked (the loop serves them each turn).
    pub(super) fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }
}

impl Worker {
    /// Per tick: keep the on-demand streams this core has viewers or parked
    /// requests of wanted; start, stop and restart this core's commands.
    pub(super) fn exec_tick(&mut self) {
        let now = self.now.get();
        if self.shutdown_at.is_some() {
            return;
        }
        for k in 0..self.exec.on_demand.len() {
            let name = &self.exec.on_demand[k].name;
            let viewers = self
                .live
                .by_name
                .get(name)
                .and_then(|id| self.live.streams.get(id))
                .is_some_and(|s| !s.viewers.is_empty());
            let parked = self.exec.waiters.iter().any(|w| w.demand == k);
            if viewers || parked {
                self.demand_ping(k);
            }
        }
        let timeout = self.source_timeout;
        let idle = self.exec.idle;
        for i in 0..self.exec.sources.len() {
            let s = &self.exec.sources[i];
            let wanted = s.always_on || s.last_wanted.is_some_and(|t| now < t + idle);
            match s.state {
                RunState::Idle if wanted => self.exec_start(i),
                RunState::Backoff(at) if now >= at => {
                    if wanted {
                        self.exec_start(i);
                    } else {
                        let s = &mut self.exec.sources[i];
                        s.state = RunState::Idle;
                        s.backoff = FIRST_BACKOFF;
                    }
                }
                RunState::Running if !wanted => {
                    tracing::info!(
                        "{}: no viewers for {} s; stopping the command",
                        s.label,
                        idle.as_secs_f64()
                    );
                    self.exec_stop(i, StopReason::NotWanted);
                }
                RunState::Running => {
                    let since = s.ing.last_data.or(s.started_at).unwrap_or(now);
                    let why = if now >= since + timeout {
                        Some(format!("no output for {} s", timeout.as_secs_f64()))
                    } else if !s.went_live && s.started_at.is_some_and(|t| now >= t + 2 * timeout) {
                        Some(format!(
                            "no stream it could publish within {} s",
                            (2 * timeout).as_secs_f64()
                        ))
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        tracing::warn!("{}: {why}; killing it", s.label);
                        self.exec.sources[i].failure = Some(why);
                        self.exec_stop(i, StopReason::Failed);
                    }
                }
                _ => {}
            }
        }
    }

    fn exec_start(&mut self, i: usize) {
        let Some(link) = self.exec.link.as_ref() else {
            return;
        };
        let s = &mut self.exec.sources[i];
        s.run = s.run.wrapping_add(1) & RUN_MASK;
        s.state = RunState::Spawning;
        s.stop = None;
        s.failure = None;
        s.went_live = false;
        s.started_at = None;
        link.spawn(i as u32, s.run, s.argv.clone(), s.label.clone());
    }

    fn exec_stop(&mut self, i: usize, why: StopReason) {
        let s = &mut self.exec.sources[i];
        if !matches!(s.state, RunState::Running | RunState::Spawning) {
            if why == StopReason::Shutdown {
                s.state = RunState::Idle;
            }
            return;
        }
        s.state = RunState::Stopping;
        s.stop = Some(why);
        if let Some(link) = self.exec.link.as_ref() {
            link.kill(i as u32, s.run);
        }
        // Closing our end makes a command blocked writing to a full pipe
        // fail at once (EPIPE), so SIGTERM is enough to end it.
        self.exec_close_pipe(i);
    }

    /// Events from the exec thread (the mesh wake brings them).
    pub(super) fn drain_exec_events(&mut self) {
        loop {
            let Some(ev) = self.exec.link.as_ref().and_then(WorkerExec::try_event) else {
                return;
            };
            self.on_exec_event(ev);
        }
    }

    fn on_exec_event(&mut self, ev: ExecEvent) {
        let now = self.now.get();
        match ev {
            ExecEvent::Started {
                source,
                run,
                pid,
                stdout,
            } => {
                let i = source as usize;
                let Some(s) = self.exec.sources.get_mut(i) else {
                    return;
                };
                if s.run != run {
                    return;
                }
                s.started_at = Some(now);
                match s.state {
                    RunState::Spawning => {
                        tracing::info!("{}: started {:?} (pid {pid})", s.label, s.argv[0]);
                        s.state = RunState::Running;
                        s.pipe = Some(stdout);
                        self.arm_exec_read(i);
                    }
                    // Stopped before it started: its exit follows.
                    _ => drop(stdout),
                }
            }
            ExecEvent::Failed { source, run, error } => {
                let i = source as usize;
                if self.exec.sources.get(i).is_none_or(|s| s.run != run) {
                    return;
                }
                self.counters.source_errors += 1;
                let s = &mut self.exec.sources[i];
                let stop = s.stop.take();
                if matches!(stop, Some(StopReason::NotWanted | StopReason::Shutdown)) {
                    s.state = RunState::Idle;
                    return;
                }
                let delay = next_backoff(s);
                tracing::warn!("{}: {error}; restarting in {} s", s.label, delay.as_secs());
                s.state = RunState::Backoff(now + delay);
            }
            ExecEvent::Exited {
                source,
                run,
                status,
                ran,
            } => {
                let i = source as usize;
                if self.exec.sources.get(i).is_none_or(|s| s.run != run) {
                    return;
                }
                self.exec_close_pipe(i);
                let stop = self.exec.sources[i].stop.take();
                let why = format!("command exited ({status})");
                self.ts_offline(IngestRef::Exec(i), &why);
                let s = &mut self.exec.sources[i];
                match stop {
                    Some(StopReason::NotWanted) => {
                        tracing::info!("{}: stopped ({status})", s.label);
                        s.state = RunState::Idle;
                        s.backoff = FIRST_BACKOFF;
                    }
                    Some(StopReason::Shutdown) => s.state = RunState::Idle,
                    Some(StopReason::Failed) | None => {
                        self.counters.source_errors += 1;
                        if s.went_live && ran >= MAX_BACKOFF {
                            s.backoff = FIRST_BACKOFF;
                        }
                        let delay = next_backoff(s);
                        let how = match s.failure.take() {
                            Some(f) => format!("ended ({f}; {status})"),
                            None => format!("exited ({status})"),
                        };
                        let live = if s.went_live {
                            ""
                        } else {
                            " without going live"
                        };
                        tracing::warn!(
                            "{}: command {how} after {:.1} s{live}; restarting in {} s",
                            s.label,
                            ran.as_secs_f64(),
                            delay.as_secs()
                        );
                        s.state = RunState::Backoff(now + delay);
                        let (name, uri, bin) = (
                            s.ing.name.to_string(),
                            format!("ts-exec:{}", s.argv.join(" ")),
                            s.argv[0].clone(),
                        );
                        self.trigger_input_abort(&name, &uri, &bin, &how);
                    }
                }
            }
        }
    }

    /// Keep one read armed on the current run's stdout.
    fn arm_exec_read(&mut self, i: usize) {
        let s = &mut self.exec.sources[i];
        if s.reading.is_some() || s.state != RunState::Running {
            return;
        }
        let Some(pipe) = s.pipe.as_ref() else {
            return;
        };
        s.reading = Some(s.run);
        let e = opcode::Read::new(
            types::Fd(pipe.as_raw_fd()),
            s.buf.as_mut_ptr(),
            s.buf.len() as u32,
        )
        .build()
        .user_data(Token::new(EXEC_READ, i as u32, s.run).0);
        // The buffer is the source's (boxed, never moved or freed while the
        // worker lives) and `reading` keeps a second read from being armed
        // into it before this one completes.
        self.push(e);
    }

    /// Stop reading the current run's stdout (cancel the read in flight,
    /// close our end).
    fn exec_close_pipe(&mut self, i: usize) {
        let s = &mut self.exec.sources[i];
        if let Some(run) = s.reading {
            let e = opcode::AsyncCancel::new(Token::new(EXEC_READ, i as u32, run).0)
                .build()
                .user_data(Token::new(super::CLOSE, 0, 0).0);
            self.push(e);
        }
        // The read in flight holds its own reference to the pipe; its
        // buffer stays with the source until it completes.
        self.exec.sources[i].pipe = None;
    }

    /// A read of a command's stdout completed.
    pub(super) fn on_exec_read(&mut self, t: Token, res: i32) {
        let i = t.slot() as usize;
        let now = self.now.get();
        let Some(s) = self.exec.sources.get_mut(i) else {
            return;
        };
        s.reading = None;
        if t.generation() != s.run || s.state != RunState::Running {
            // A read of an earlier run: the current one may be waiting for
            // the buffer.
            self.arm_exec_read(i);
            return;
        }
        if res > 0 {
            s.ing.demux.push(&s.buf[..res as usize]);
            s.ing.last_data = Some(now);
            self.drain_ts(IngestRef::Exec(i));
            let s = &mut self.exec.sources[i];
            s.went_live |= s.ing.publisher.is_some();
            if self.shutdown_at.is_none() {
                self.arm_exec_read(i);
            }
            return;
        }
        if res == -libc::ECANCELED {
            return;
        }
        let why = if res == 0 {
            "closed its output".to_string()
        } else {
            format!(
                "reading its output failed: {}",
                std::io::Error::from_raw_os_error(-res)
            )
        };
        tracing::debug!("{}: {why}", s.label);
        s.failure = Some(why);
        self.exec_stop(i, StopReason::Failed);
    }

    /// Shutdown: stop every command (the exec thread kills what is left
    /// when the server stops it), end publishing, answer parked requests.
    pub(super) fn close_exec_sources(&mut self) {
        for i in 0..self.exec.sources.len() {
            self.exec_close_pipe(i);
            self.exec_stop(i, StopReason::Shutdown);
            if let Some(p) = self.exec.sources[i].ing.publisher.take() {
                let label = self.exec.sources[i].ing.label.clone();
                self.finish_publish(p, &label);
            }
        }
        for w in std::mem::take(&mut self.exec.waiters) {
            self.answer_waiter(w, false, 503);
        }
    }

    /// Note that on-demand stream `k` is wanted on this core: tell its owner
    /// (directly, or over the mesh at most once a second).
    fn demand_ping(&mut self, k: usize) {
        let now = self.now.get();
        let d = &mut self.exec.on_demand[k];
        if d.owner == self.index {
            let i = d.source;
            self.exec_wanted(i);
            return;
        }
        if d.last_ping.is_some_and(|t| now < t + WANTED_EVERY) {
            return;
        }
        d.last_ping = Some(now);
        let (owner, name) = (d.owner, d.name.clone());
        match self.mesh.push(owner, WorkerMsg::SourceWanted(name)) {
            Ok(()) => self.wake_mask |= 1 << owner,
            Err(_) => {
                // Full queue: the next request or tick asks again.
                self.exec.on_demand[k].last_ping = None;
                self.counters.mesh_drops += 1;
            }
        }
    }

    /// Another core wants on-demand stream `name` (it has viewers or
    /// requests of it).
    pub(super) fn on_source_wanted(&mut self, name: &str) {
        if let Some(i) = self.exec.sources.iter().position(|s| s.ing.name == name) {
            self.exec_wanted(i);
        }
    }

    fn exec_wanted(&mut self, i: usize) {
        let now = self.now.get();
        let Some(s) = self.exec.sources.get_mut(i) else {
            return;
        };
        s.last_wanted = Some(now);
        if s.state == RunState::Idle && self.shutdown_at.is_none() {
            self.exec_start(i);
        }
    }

    fn demand_index(&self, name: &str) -> Option<usize> {
        self.exec.on_demand.iter().position(|d| &*d.name == name)
    }

    fn demand_ready(&self, k: usize, segments: bool) -> bool {
        self.live
            .by_name
            .get(&self.exec.on_demand[k].name)
            .and_then(|id| self.live.streams.get(id))
            .is_some_and(|s| !segments || s.segmented.is_some())
    }

    /// A request for a live route of stream `name`: if it is an on-demand
    /// stream, mark it wanted; if it is not ready (`segments`: has no
    /// segment yet), park the request and return `true`.
    pub(super) fn demand_request(
        &mut self,
        slot: u32,
        generation: u32,
        req: &Request,
        name: &str,
        segments: bool,
    ) -> bool {
        if self.exec.on_demand.is_empty() {
            return false;
        }
        let Some(k) = self.demand_index(name) else {
            return false;
        };
        self.demand_ping(k);
        if self.demand_ready(k, segments) || self.shutdown_at.is_some() {
            return false;
        }
        let until = self.now.get() + self.exec.wait;
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return true;
        };
        c.work = Some(Box::new(Work::Waiting(req.clone())));
        self.exec.waiters.push(Waiter {
            slot,
            generation,
            demand: k,
            wait_for: if segments {
                WaitFor::Segments
            } else {
                WaitFor::Live
            },
            until,
        });
        true
    }

    /// RTMP play of `name`, which is not live: if it is an on-demand stream,
    /// start it and park the play (`true`); `on_play` is called again when
    /// it is live or the wait is over.
    pub(super) fn demand_rtmp_play(
        &mut self,
        slot: u32,
        generation: u32,
        app: &str,
        key: &str,
        name: &str,
    ) -> bool {
        if self.exec.on_demand.is_empty() {
            return false;
        }
        let Some(k) = self.demand_index(name) else {
            return false;
        };
        self.demand_ping(k);
        if self.exec.replaying || self.shutdown_at.is_some() {
            return false;
        }
        let until = self.now.get() + self.exec.wait;
        self.exec.waiters.push(Waiter {
            slot,
            generation,
            demand: k,
            wait_for: WaitFor::Rtmp {
                app: app.to_string(),
                key: key.to_string(),
            },
            until,
        });
        true
    }

    /// Answer parked requests whose stream is ready or whose wait is over
    /// (every loop turn while any are parked).
    pub(super) fn serve_demand_waiters(&mut self) {
        let now = self.now.get();
        // Once per stream, not per waiter: many viewers may wait for one
        // stream to start.
        let ready: Vec<(bool, bool)> = (0..self.exec.on_demand.len())
            .map(|k| (self.demand_ready(k, false), self.demand_ready(k, true)))
            .collect();
        let mut i = 0;
        while i < self.exec.waiters.len() {
            let w = &self.exec.waiters[i];
            let (live, segmented) = ready[w.demand];
            let ready = if matches!(w.wait_for, WaitFor::Segments) {
                segmented
            } else {
                live
            };
            if ready || now >= w.until {
                let w = self.exec.waiters.swap_remove(i);
                self.answer_waiter(w, ready, 404);
            } else {
                i += 1;
            }
        }
    }

    /// Route a parked request again (`ready`), or answer it with `status`
    /// (404: did not go live in time; 503: shutting down).
    fn answer_waiter(&mut self, w: Waiter, ready: bool, status: u16) {
        let (slot, generation) = (w.slot, w.generation);
        match w.wait_for {
            WaitFor::Rtmp { app, key } => {
                if self.conns.get_mut(slot, generation).is_none() {
                    return;
                }
                self.exec.replaying = true;
                self.on_play(slot, generation, &app, &key);
                self.exec.replaying = false;
                self.live_drive(slot, generation);
            }
            WaitFor::Live | WaitFor::Segments => {
                let Some(c) = self.conns.get_mut(slot, generation) else {
                    return;
                };
                if !matches!(c.work.as_deref(), Some(Work::Waiting(_))) {
                    return;
                }
                let Some(Work::Waiting(req)) = c.work.take().map(|b| *b) else {
                    return;
                };
                if !ready {
                    let name = self.exec.on_demand[w.demand].name.clone();
                    tracing::info!(
                        "{}: {name} did not go live within {} s; {status}",
                        self.conn_id(slot, generation),
                        self.exec.wait.as_secs_f64()
                    );
                    self.respond_status(slot, generation, &req, status);
                } else if !self.route_live(slot, generation, &req) {
                    self.respond_status(slot, generation, &req, 404);
                }
            }
        }
    }
}

/// The delay before the next start, doubling the next one (up to
/// [`MAX_BACKOFF`]).
fn next_backoff(s: &mut ExecSource) -> Duration {
    let d = s.backoff;
    s.backoff = (d * 2).min(MAX_BACKOFF);
    d
}
