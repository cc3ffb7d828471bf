//! MistServer-compatible triggers: the trigger runner.
//!
//! A trigger is an event (MistServer's names: `RTMP_PUSH_REWRITE`,
//! `USER_NEW`, `STREAM_BUFFER`...) with a payload of newline-separated lines
//! in Mist's order, handed to the handlers configured for it (`[[trigger]]`).
//! docs/triggers.md lists every trigger, its payload and what its answer does.
//!
//! Nothing here runs on a worker loop:
//!
//! - A worker holds a [`WorkerTriggers`]. Whether a trigger is configured for
//!   a stream is answered from the worker's own snapshot of the
//!   [`TriggerSet`] (one relaxed atomic load to see whether it was replaced,
//!   a bit test, then the handlers' stream filters): nothing configured = the
//!   normal path, unchanged.
//! - [`WorkerTriggers::fire`] (async) and [`WorkerTriggers::call`] (blocking)
//!   put a job on the runner's bounded queue (`[triggers] max_queued`; a full
//!   queue answers at once with the default, counted) and return. A
//!   blocking call's answer comes back later as a [`TriggerReply`] on the
//!   worker's channel, and the worker is woken through a duplicate of its
//!   mesh eventfd (as the `spate-exec` thread does); the connection waits,
//!   the loop does not.
//! - Runner threads (`spate-trig`, at most `[triggers] max_concurrent`, each
//!   running one handler at a time, so never more handler processes or
//!   requests than that at once) take jobs off the queue and run every
//!   handler of the job: an executable (argv = `handler`, `args`, then the
//!   trigger name as MistServer passes it; payload on stdin; response on
//!   stdout; no shell; a cleared signal mask; its own session, killed as a
//!   process group on timeout) or an `http://` URL (POST, `X-Trigger: NAME`,
//!   payload as the body, response = the body).
//! - A handler that fails (cannot start, exits non-zero or by a signal,
//!   HTTP error), times out, prints more than `[triggers]
//!   max_response_bytes`, or answers something the trigger cannot use
//!   (garbage) gets its `default` applied; each is logged and counted by
//!   reason. Latency goes into an hdrhistogram per trigger;
//!   [`Triggers::write_metrics`] writes it all in Prometheus text format.
//! - `USER_NEW` answers are cached per session id for `[triggers]
//!   session_cache` seconds (and concurrent calls for one session share one
//!   handler run), here, so every worker sees the same cache.
use spate_protocols::http::upstream;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Config, TriggerConfig, TriggersConfig};

macro_rules! triggers {
    ($($variant:ident = $name:literal, $blocking:literal, $answer:ident;)*) => {
        /// A trigger MistServer defines (and Spate fires).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Trigger {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl Trigger {
            /// Every trigger.
            pub const ALL: &'static [Trigger] = &[$(Trigger::$variant,)*];

            /// MistServer's name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Trigger::$variant => $name,)*
                }
            }

            /// Blocking by default (MistServer: its response matters).
            pub fn blocking_by_default(self) -> bool {
                match self {
                    $(Trigger::$variant => $blocking,)*
                }
            }

            /// What the trigger's answer is.
            pub fn answer(self) -> Answer {
                match self {
                    $(Trigger::$variant => Answer::$answer,)*
                }
            }
        }
    };
}

triggers! {
    SystemStart = "SYSTEM_START", false, Bool;
    SystemStop = "SYSTEM_STOP", false, Bool;
    StreamReady = "STREAM_READY", false, Bool;
    StreamUnload = "STREAM_UNLOAD", false, Bool;
    StreamPush = "STREAM_PUSH", true, Bool;
    StreamBuffer = "STREAM_BUFFER", false, Ignored;
    StreamEnd = "STREAM_END", false, Ignored;
    LiveTrackList = "LIVE_TRACK_LIST", false, Ignored;
    InputAbort = "INPUT_ABORT", false, Ignored;
    RtmpPushRewrite = "RTMP_PUSH_REWRITE", true, RtmpUrl;
    PushRewrite = "PUSH_REWRITE", true, StreamName;
    PushOutStart = "PUSH_OUT_START", true, Target;
    PushEnd = "PUSH_END", false, Ignored;
    ConnOpen = "CONN_OPEN", true, Bool;
    ConnClose = "CONN_CLOSE", false, Ignored;
    ConnPlay = "CONN_PLAY", true, Bool;
    PlayRewrite = "PLAY_REWRITE", true, StreamName;
    UserNew = "USER_NEW", true, Bool;
    UserEnd = "USER_END", false, Ignored;
}

/// What a trigger's response means, and so which responses are garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `true`/`false` (MistServer's words: `1`, `yes`, `true`, `cont...`
    /// accept; `0`, `no`, `false`, `off` and an empty response refuse).
    Bool,
    /// A new RTMP URL (`rtmp://...`), or empty = reject.
    RtmpUrl,
    /// A stream name, or empty = reject.
    StreamName,
    /// A push target URL, or empty = abort.
    Target,
    /// Not used.
    Ignored,
}

impl Trigger {
    /// The trigger of a MistServer name.
    pub fn from_name(name: &str) -> Option<Trigger> {
        Trigger::ALL.iter().copied().find(|t| t.name() == name)
    }

    fn bit(self) -> u64 {
        1 << (self as u32)
    }

    /// Whether `response` (trimmed) is something this trigger can use.
    pub fn response_is_usable(self, response: &str) -> bool {
        match self.answer() {
            Answer::Bool => response.is_empty() || parse_bool(response).is_some(),
            Answer::RtmpUrl => {
                response.is_empty()
                    || ((response.starts_with("rtmp://") || response.starts_with("rtmps://"))
                        && !response.bytes().any(|b| b.is_ascii_control() || b == b' '))
            }
            Answer::StreamName => {
                response.is_empty()
                    || (response.len() <= 201
                        && response.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+')
                        }))
            }
            Answer::Target => response.is_empty() || response.contains("://"),
            Answer::Ignored => true,
        }
    }
}

/// MistServer's reading of a boolean answer (`Util::stringToBool`, plus the
/// explicit refusals): `None` = neither.
pub fn parse_bool(s: &str) -> Option<bool> {
    let t: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(5)
        .collect::<String>()
        .to_ascii_lowercase();
    if t.is_empty() {
        return Some(false);
    }
    if t.starts_with('1') || t.starts_with("yes") || t.starts_with("true") || t.starts_with("cont")
    {
        return Some(true);
    }
    if t == "0" || t == "no" || t == "false" || t == "off" {
        return Some(false);
    }
    None
}

/// Where a handler is.
#[derive(Debug, Clone)]
enum HandlerKind {
    /// An executable: its argv (the trigger name is appended).
    Exec(Vec<String>),
    /// `http://host:port/path`.
    Http {
        host: String,
        port: u16,
        path: String,
    },
}

/// One `[[trigger]]`, ready to run.
#[derive(Debug)]
pub struct Handler {
    trigger: Trigger,
    kind: HandlerKind,
    streams: Vec<String>,
    sync: bool,
    timeout: Duration,
    default: Option<String>,
    /// `handler` as configured (for logs).
    label: String,
}

impl Handler {
    fn from_config(t: &TriggerConfig) -> Result<Self, String> {
        let trigger = Trigger::from_name(t.on.trim())
            .ok_or_else(|| format!("trigger.on: unknown trigger {:?}", t.on))?;
        let h = t.handler.trim();
        let kind = if let Some(rest) = h.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                    let port = port
                        .parse::<u16>()
                        .map_err(|_| format!("trigger.handler: bad port in {h:?}"))?;
                    (host, port)
                }
                _ => (authority, 80),
            };
            if host.is_empty() {
                return Err(format!("trigger.handler: no host in {h:?}"));
            }
            HandlerKind::Http {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                path: path.to_string(),
            }
        } else if h.starts_with("https://") {
            return Err(format!(
                "trigger.handler: {h:?}: https:// handlers are not supported; use http:// (e.g. to a local TLS-terminating proxy) or an executable"
            ));
        } else if h.contains("://") {
            return Err(format!(
                "trigger.handler: {h:?}: an executable path or an http:// URL"
            ));
        } else {
            let mut argv = vec![h.to_string()];
            argv.extend(t.args.iter().cloned());
            HandlerKind::Exec(argv)
        };
        Ok(Self {
            trigger,
            kind,
            streams: t.streams.clone(),
            sync: t.sync.unwrap_or_else(|| trigger.blocking_by_default()),
            timeout: Duration::from_secs_f64(t.timeout),
            default: t.default.clone(),
            label: h.to_string(),
        })
    }

    /// Whether this handler covers `stream` (`""`: a trigger without one).
    fn covers(&self, stream: &str) -> bool {
        stream_matches(&self.streams, stream)
    }
}

/// MistServer's stream filter: empty = every stream; else an entry equal to
/// the stream's name or to its base (the part before `+`).
pub fn stream_matches(filter: &[String], stream: &str) -> bool {
    if filter.is_empty() || stream.is_empty() {
        return true;
    }
    let base = stream.split_once('+').map_or(stream, |(b, _)| b);
    filter.iter().any(|f| f == stream || f == base)
}

/// The configured triggers (replaced as a whole on reload).
#[derive(Debug, Default)]
pub struct TriggerSet {
    handlers: Vec<Arc<Handler>>,
    mask: u64,
    limits: TriggersConfig,
}

impl TriggerSet {
    /// The triggers of `config`, or the first bad `[[trigger]]` (naming the
    /// key).
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut handlers = Vec::new();
        let mut mask = 0;
        for t in &config.trigger_list {
            let h = Handler::from_config(t)?;
            mask |= h.trigger.bit();
            handlers.push(Arc::new(h));
        }
        Ok(Self {
            handlers,
            mask,
            limits: config.triggers.clone(),
        })
    }

    /// Whether any trigger is configured.
    pub fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// Whether `trigger` has a handler for `stream`.
    pub fn wants(&self, trigger: Trigger, stream: &str) -> bool {
        self.mask & trigger.bit() != 0
            && self
                .handlers
                .iter()
                .any(|h| h.trigger == trigger && h.covers(stream))
    }

    fn matching(&self, trigger: Trigger, stream: &str) -> (Vec<Arc<Handler>>, Vec<Arc<Handler>>) {
        let mut sync = Vec::new();
        let mut not = Vec::new();
        if self.mask & trigger.bit() == 0 {
            return (sync, not);
        }
        for h in &self.handlers {
            if h.trigger == trigger && h.covers(stream) {
                if h.sync {
                    sync.push(h.clone());
                } else {
                    not.push(h.clone());
                }
            }
        }
        (sync, not)
    }
}

/// The answer of a blocking call: the response to act on, `None` when a
/// handler failed and has no `default` (the caller applies the trigger's
/// own fallback, docs/triggers.md).
pub type Response = Option<String>;

/// A blocking call's answer, for the worker that asked.
#[derive(Debug)]
pub struct TriggerReply {
    /// The token the worker gave [`WorkerTriggers::call`].
    pub token: u64,
    /// The response.
    pub response: Response,
}

/// What [`WorkerTriggers::call`] did.
#[derive(Debug)]
pub enum Call {
    /// No blocking handler for this trigger and stream (async ones, if
    /// any, were fired): carry on as if it were not configured.
    NotConfigured,
    /// Answered at once (a cached session, or the queue was full).
    Answered(Response),
    /// The answer comes as a [`TriggerReply`] with the token.
    Pending,
}

#[derive(Debug)]
enum ReplyTo {
    Nobody,
    Worker { worker: usize, token: u64 },
    Channel(Sender<Response>),
}

#[derive(Debug)]
struct Job {
    trigger: Trigger,
    payload: Arc<str>,
    handlers: Vec<Arc<Handler>>,
    reply: ReplyTo,
    session: Option<String>,
}

#[derive(Debug)]
enum Session {
    Running(Vec<ReplyTo>),
    Done { response: Response, until: Instant },
}

#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Runner threads alive / waiting for a job.
    threads: usize,
    idle: usize,
    running: usize,
    stopping: bool,
    sessions: HashMap<String, Session>,
    last_sweep: Option<Instant>,
}

/// Per-trigger numbers.
#[derive(Debug)]
struct TriggerStats {
    calls: u64,
    failures: Vec<(&'static str, u64)>,
    latency_us: hdrhistogram::Histogram<u64>,
    latency_sum: f64,
}

#[derive(Debug, Default)]
struct Stats {
    by_trigger: HashMap<Trigger, TriggerStats>,
    cache_hits: u64,
    most_running: usize,
}

impl Stats {
    fn entry(&mut self, t: Trigger) -> &mut TriggerStats {
        self.by_trigger.entry(t).or_insert_with(|| TriggerStats {
            calls: 0,
            failures: Vec::new(),
            latency_us: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("histogram bounds are valid"),
            latency_sum: 0.0,
        })
    }

    fn failure(&mut self, t: Trigger, reason: &'static str) {
        let e = self.entry(t);
        match e.failures.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => e.failures.push((reason, 1)),
        }
    }
}

#[derive(Debug)]
struct Shared {
    generation: AtomicU64,
    set: Mutex<Arc<TriggerSet>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    stats: Mutex<Stats>,
    workers: Vec<(Sender<TriggerReply>, OwnedFd)>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The trigger runner (owned by the server).
#[derive(Debug)]
pub struct Triggers {
    shared: Arc<Shared>,
}

impl Triggers {
    /// Start the runner for `config` (threads start with the first job).
    /// `worker_wakers[i]` wakes worker `i` (a duplicate of its mesh
    /// eventfd). Returns the runner and each worker's end.
    pub fn start(
        config: &Config,
        worker_wakers: Vec<OwnedFd>,
    ) -> Result<(Triggers, Vec<WorkerTriggers>), String> {
        let set = Arc::new(TriggerSet::from_config(config)?);
        let mut to_workers = Vec::new();
        let mut receivers = Vec::new();
        for waker in worker_wakers {
            let (tx, rx) = mpsc::channel();
            to_workers.push((tx, waker));
            receivers.push(rx);
        }
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(1),
            set: Mutex::new(set.clone()),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            stats: Mutex::new(Stats::default()),
            workers: to_workers,
            threads: Mutex::new(Vec::new()),
        });
        let ends = receivers
            .into_iter()
            .enumerate()
            .map(|(index, events)| WorkerTriggers {
                index,
                shared: shared.clone(),
                generation: 1,
                set: set.clone(),
                events,
            })
            .collect();
        Ok((Triggers { shared }, ends))
    }

    /// Replace the configured triggers (a reload). Jobs queued or running
    /// finish with the handlers they had.
    pub fn reconfigure(&self, config: &Config) -> Result<(), String> {
        let set = Arc::new(TriggerSet::from_config(config)?);
        *self.shared.set.lock().expect("trigger set lock") = set;
        self.shared.generation.fetch_add(1, Ordering::Release);
        // A lower max_concurrent: surplus threads leave when they look.
        self.shared.wake.notify_all();
        Ok(())
    }

    /// The configured triggers.
    pub fn set(&self) -> Arc<TriggerSet> {
        self.shared.set.lock().expect("trigger set lock").clone()
    }

    /// Fire `trigger` from a control thread (not a worker): blocking
    /// handlers are waited for (each up to its timeout), and their response
    /// returned; `None` = no blocking handler answered (not configured, or
    /// failed without a default).
    pub fn call_blocking(&self, trigger: Trigger, stream: &str, payload: &str) -> Option<Response> {
        let set = self.set();
        let (sync, not) = set.matching(trigger, stream);
        let payload: Arc<str> = Arc::from(payload);
        if !not.is_empty() {
            self.shared.submit(Job {
                trigger,
                payload: payload.clone(),
                handlers: not,
                reply: ReplyTo::Nobody,
                session: None,
            });
        }
        if sync.is_empty() {
            return None;
        }
        let wait: Duration =
            sync.iter().map(|h| h.timeout).sum::<Duration>() + Duration::from_secs(2);
        let (tx, rx) = mpsc::channel();
        if let Some(r) = self.shared.submit(Job {
            trigger,
            payload,
            handlers: sync,
            reply: ReplyTo::Channel(tx),
            session: None,
        }) {
            return Some(r);
        }
        rx.recv_timeout(wait).ok()
    }

    /// Stop: queued jobs are dropped, running handlers killed, threads
    /// joined.
    pub fn stop(&self) {
        {
            let mut q = self.shared.queue.lock().expect("trigger queue lock");
            q.stopping = true;
            q.jobs.clear();
        }
        self.shared.wake.notify_all();
        let threads = std::mem::take(&mut *self.shared.threads.lock().expect("threads lock"));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a trigger runner thread panicked");
            }
        }
    }

    /// The runner's metrics in Prometheus text format (appended to `out`).
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let (depth, running) = {
            let q = self.shared.queue.lock().expect("trigger queue lock");
            (q.jobs.len(), q.running)
        };
        let stats = self.shared.stats.lock().expect("trigger stats lock");
        let mut names: Vec<Trigger> = stats.by_trigger.keys().copied().collect();
        names.sort();
        let _ = writeln!(
            out,
            "# HELP spate_trigger_calls_total Trigger handler runs (and calls answered without one), by trigger.\n# TYPE spate_trigger_calls_total counter"
        );
        for t in &names {
            let _ = writeln!(
                out,
                "spate_trigger_calls_total{{trigger=\"{}\"}} {}",
                t.name(),
                stats.by_trigger[t].calls
            );
        }
        let _ = writeln!(
            out,
            "# HELP spate_trigger_failures_total Trigger handlers whose default was applied, by trigger and reason (spawn, exit, timeout, too_large, garbage, http, queue_full).\n# TYPE spate_trigger_failures_total counter"
        );
        for t in &names {
            for (reason, n) in &stats.by_trigger[t].failures {
                let _ = writeln!(
                    out,
                    "spate_trigger_failures_total{{trigger=\"{}\",reason=\"{reason}\"}} {n}",
                    t.name()
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP spate_trigger_latency_seconds Trigger handler run time, by trigger.\n# TYPE spate_trigger_latency_seconds summary"
        );
        for t in &names {
            let s = &stats.by_trigger[t];
            for q in [0.5, 0.9, 0.99] {
                let v = s.latency_us.value_at_quantile(q) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "spate_trigger_latency_seconds{{trigger=\"{}\",quantile=\"{q}\"}} {v}",
                    t.name()
                );
            }
            let _ = writeln!(
                out,
                "spate_trigger_latency_seconds_sum{{trigger=\"{}\"}} {}",
                t.name(),
                s.latency_sum
            );
            let _ = writeln!(
                out,
                "spate_trigger_latency_seconds_count{{trigger=\"{}\"}} {}",
                t.name(),
                s.latency_us.len()
            );
        }
        let _ = writeln!(
            out,
            "# HELP spate_trigger_queue_depth Trigger jobs waiting for a runner.\n# TYPE spate_trigger_queue_depth gauge\nspate_trigger_queue_depth {depth}"
        );
        let _ = writeln!(
            out,
            "# HELP spate_trigger_running Trigger handlers running now.\n# TYPE spate_trigger_running gauge\nspate_trigger_running {running}"
        );
        let _ = writeln!(
            out,
            "# HELP spate_trigger_session_cache_hits_total USER_NEW calls answered from the session cache.\n# TYPE spate_trigger_session_cache_hits_total counter\nspate_trigger_session_cache_hits_total {}",
            stats.cache_hits
        );
    }
}

impl Drop for Triggers {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    /// Queue a job; `Some(response)` = answered at once (queue full: the
    /// defaults), the job dropped.
    fn submit(self: &Arc<Self>, job: Job) -> Option<Response> {
        let limits = self.set.lock().expect("trigger set lock").limits.clone();
        let mut q = self.queue.lock().expect("trigger queue lock");
        if q.stopping {
            return Some(defaults(&job.handlers));
        }
        if q.jobs.len() >= limits.max_queued {
            drop(q);
            let mut stats = self.stats.lock().expect("trigger stats lock");
            for _ in &job.handlers {
                stats.failure(job.trigger, "queue_full");
            }
            drop(stats);
            tracing::warn!(
                "trigger {}: {} jobs queued already ([triggers] max_queued); default applied",
                job.trigger.name(),
                limits.max_queued
            );
            return Some(defaults(&job.handlers));
        }
        q.jobs.push_back(job);
        // More jobs waiting than idle runners to take them: another runner,
        // up to the limit.
        if q.jobs.len() > q.idle && q.threads < limits.max_concurrent {
            q.threads += 1;
            let n = q.threads;
            drop(q);
            let me = self.clone();
            match std::thread::Builder::new()
                .name(format!("spate-trig{n}"))
                .spawn(move || me.run_thread())
            {
                Ok(h) => self.threads.lock().expect("threads lock").push(h),
                Err(e) => {
                    tracing::error!("cannot start a trigger runner thread: {e}");
                    self.queue.lock().expect("trigger queue lock").threads -= 1;
                }
            }
        } else {
            drop(q);
        }
        self.wake.notify_one();
        None
    }

    fn run_thread(self: Arc<Self>) {
        loop {
            let job = {
                let mut q = self.queue.lock().expect("trigger queue lock");
                loop {
                    if q.stopping {
                        q.threads -= 1;
                        return;
                    }
                    let max = self
                        .set
                        .lock()
                        .expect("trigger set lock")
                        .limits
                        .max_concurrent;
                    if q.threads > max && q.jobs.is_empty() {
                        q.threads -= 1;
                        return;
                    }
                    if q.running < max
                        && let Some(j) = q.jobs.pop_front()
                    {
                        q.running += 1;
                        break j;
                    }
                    q.idle += 1;
                    let (g, _) = self
                        .wake
                        .wait_timeout(q, Duration::from_secs(1))
                        .expect("trigger queue lock");
                    q = g;
                    q.idle -= 1;
                }
            };
            {
                let running = self.queue.lock().expect("trigger queue lock").running;
                let mut s = self.stats.lock().expect("trigger stats lock");
                s.most_running = s.most_running.max(running);
            }
            let response = self.run_job(&job);
            let mut q = self.queue.lock().expect("trigger queue lock");
            q.running -= 1;
            let mut replies = vec![job.reply];
            if let Some(key) = job.session {
                let ttl = Duration::from_secs_f64(
                    self.set
                        .lock()
                        .expect("trigger set lock")
                        .limits
                        .session_cache,
                );
                if let Some(Session::Running(waiting)) = q.sessions.insert(
                    key,
                    Session::Done {
                        response: response.clone(),
                        until: Instant::now() + ttl,
                    },
                ) {
                    replies.extend(waiting);
                }
            }
            drop(q);
            for r in replies {
                self.reply(r, response.clone());
            }
        }
    }

    fn reply(&self, to: ReplyTo, response: Response) {
        match to {
            ReplyTo::Nobody => {}
            ReplyTo::Channel(tx) => {
                let _ = tx.send(response);
            }
            ReplyTo::Worker { worker, token } => {
                if let Some((tx, waker)) = self.workers.get(worker)
                    && tx.send(TriggerReply { token, response }).is_ok()
                {
                    crate::ingest::exec::wake(waker.as_raw_fd());
                }
            }
        }
    }

    /// Run every handler of a job, in order; the response of the last one
    /// (boolean triggers: every handler must accept, as in MistServer).
    fn run_job(&self, job: &Job) -> Response {
        let max_bytes = self
            .set
            .lock()
            .expect("trigger set lock")
            .limits
            .max_response_bytes;
        let mut result: Response = None;
        let mut refused = false;
        for h in &job.handlers {
            let started = Instant::now();
            let outcome = run_handler(self, h, job.trigger, &job.payload, max_bytes);
            let took = started.elapsed();
            let outcome = match outcome {
                Ok(r) if !h.sync => Ok(r),
                Ok(r) if !job.trigger.response_is_usable(&r) => Err(("garbage", {
                    let mut shown: String = r.chars().take(80).collect();
                    if shown.len() < r.len() {
                        shown.push('…');
                    }
                    format!("unusable response {shown:?}")
                })),
                other => other,
            };
            {
                let mut stats = self.stats.lock().expect("trigger stats lock");
                let e = stats.entry(job.trigger);
                e.calls += 1;
                let us = (took.as_micros() as u64).clamp(1, 3_600_000_000);
                let _ = e.latency_us.record(us);
                e.latency_sum += took.as_secs_f64();
                if let Err((reason, _)) = &outcome {
                    stats.failure(job.trigger, reason);
                }
            }
            let r = match outcome {
                Ok(r) => {
                    tracing::debug!(
                        "trigger {} ({}): answered {:?} in {:.1} ms",
                        job.trigger.name(),
                        h.label,
                        r.chars().take(200).collect::<String>(),
                        took.as_secs_f64() * 1e3
                    );
                    Some(r)
                }
                Err((reason, why)) => {
                    tracing::warn!(
                        "trigger {} ({}): {why} [{reason}]; {}",
                        job.trigger.name(),
                        h.label,
                        match &h.default {
                            Some(d) => format!("default {d:?} applied"),
                            None => "no default configured: the trigger's fallback applies".into(),
                        }
                    );
                    h.default.clone()
                }
            };
            if job.trigger.answer() == Answer::Bool {
                match r.as_deref().map(parse_bool) {
                    Some(Some(false)) | Some(None) => refused = true,
                    _ => {}
                }
            }
            result = r;
        }
        if refused {
            return Some("false".into());
        }
        result
    }
}

fn defaults(handlers: &[Arc<Handler>]) -> Response {
    handlers.last().and_then(|h| h.default.clone())
}

/// Trim one trailing newline (`\n` or `\r\n`), as MistServer's handlers'
/// answers end with `echo`'s.
fn trim_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

type Failure = (&'static str, String);

fn run_handler(
    shared: &Shared,
    h: &Handler,
    trigger: Trigger,
    payload: &str,
    max_bytes: usize,
) -> Result<String, Failure> {
    let deadline = Instant::now() + h.timeout;
    match &h.kind {
        HandlerKind::Exec(argv) => run_exec(shared, h, argv, trigger, payload, max_bytes, deadline),
        HandlerKind::Http { host, port, path } => run_http(
            shared, host, *port, path, trigger, payload, max_bytes, deadline,
        ),
    }
}

fn stopping(shared: &Shared) -> bool {
    shared.queue.lock().map(|q| q.stopping).unwrap_or(true)
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Whether process `pid` exited (without reaping it).
fn exited(pid: i32) -> bool {
    // SAFETY: siginfo_t is plain data; waitid fills it. WNOHANG never
    // blocks; WNOWAIT leaves the child a zombie for `wait`.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `info` is a live siginfo_t.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled `info` (si_pid stays 0 when nothing exited).
    rc < 0 || unsafe { info.si_pid() } != 0
}

fn kill_group(pid: i32) {
    // SAFETY: kill(2) on the process group the child leads (setsid in
    // pre_exec); the leader is not reaped yet, so the id cannot be reused.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

#[allow(clippy::too_many_arguments)]
fn run_exec(
    shared: &Shared,
    h: &Handler,
    argv: &[String],
    trigger: Trigger,
    payload: &str,
    max_bytes: usize,
    deadline: Instant,
) -> Result<String, Failure> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .arg(trigger.name())
        .env("MIST_TRIGGER", trigger.name())
        .env("MIST_TRIG_DEF", h.default.as_deref().unwrap_or(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    crate::ingest::exec::isolate(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| ("spawn", format!("cannot start {:?}: {e}", argv[0])))?;
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().expect("stdout was piped");
    if let Some(s) = &stdin {
        set_nonblocking(s.as_raw_fd());
    }
    set_nonblocking(stdout.as_raw_fd());
    let input = payload.as_bytes();
    let mut written = 0;
    let mut out = Vec::new();
    let mut eof = false;
    let mut failure: Option<Failure> = None;
    let mut buf = [0u8; 16 * 1024];
    // Feed stdin, read stdout, until EOF on stdout and exit, the deadline,
    // too much output, or shutdown.
    loop {
        if stdin.is_some() && written >= input.len() {
            stdin = None; // EOF for the handler
        }
        let now = Instant::now();
        if now >= deadline {
            failure = Some((
                "timeout",
                format!("no answer within {:.2} s; killed", h.timeout.as_secs_f64()),
            ));
            break;
        }
        if eof && exited(pid) {
            break;
        }
        if stopping(shared) {
            failure = Some(("timeout", "spate is stopping; killed".into()));
            break;
        }
        let mut fds = Vec::with_capacity(2);
        if !eof {
            fds.push(libc::pollfd {
                fd: stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(s) = &stdin {
            fds.push(libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        let left = deadline.saturating_duration_since(now).as_millis().min(100) as i32;
        let wait = if fds.is_empty() {
            left.min(5)
        } else {
            left.max(1)
        };
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(wait as u64));
        } else {
            // SAFETY: fds is a live array of fds.len() pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
        }
        if let Some(s) = stdin.as_mut() {
            match s.write(&input[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The handler closed its stdin (EPIPE): it does not read it.
                Err(_) => stdin = None,
            }
        }
        if !eof {
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        out.extend_from_slice(&buf[..n]);
                        if out.len() > max_bytes {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if out.len() > max_bytes {
                failure = Some((
                    "too_large",
                    format!(
                        "printed more than {max_bytes} bytes ([triggers] max_response_bytes); killed"
                    ),
                ));
                break;
            }
        }
    }
    drop(stdin);
    // Whatever is left of its group goes while the leader is unreaped
    // (its pid, the group's id, still reserved); then reap.
    kill_group(pid);
    let status = child.wait();
    if let Some(f) = failure {
        return Err(f);
    }
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(("exit", format!("handler failed ({s})"))),
        Err(e) => return Err(("exit", format!("wait failed: {e}"))),
    }
    let text =
        String::from_utf8(out).map_err(|_| ("garbage", "answer is not UTF-8".to_string()))?;
    Ok(trim_newline(text))
}

#[allow(clippy::too_many_arguments)]
fn run_http(
    shared: &Shared,
    host: &str,
    port: u16,
    path: &str,
    trigger: Trigger,
    payload: &str,
    max_bytes: usize,
    deadline: Instant,
) -> Result<String, Failure> {
    use std::net::ToSocketAddrs;
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(("timeout", format!("no answer from {host}:{port} in time")))
        } else {
            Ok(d)
        }
    };
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ("http", format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut s) = stream else {
        return Err((
            "http",
            format!(
                "cannot connect to {host}:{port}: {}",
                last.map_or("no address".to_string(), |e| e.to_string())
            ),
        ));
    };
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host_header}\r\nX-Trigger: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: spate\r\n\r\n",
        trigger.name(),
        payload.len()
    );
    let io_err = |e: io::Error| {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            ("timeout", format!("no answer from {host}:{port} in time"))
        } else {
            ("http", format!("{host}:{port}: {e}"))
        }
    };
    s.set_write_timeout(Some(left()?)).map_err(io_err)?;
    s.write_all(head.as_bytes()).map_err(io_err)?;
    s.write_all(payload.as_bytes()).map_err(io_err)?;
    let limit = max_bytes + 64 * 1024;
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        // Short reads, so a stop does not wait for a slow server.
        if stopping(shared) {
            return Err(("timeout", "spate is stopping".into()));
        }
        let wait = left()?.min(Duration::from_millis(250));
        s.set_read_timeout(Some(wait)).map_err(io_err)?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                if data.len() > limit {
                    return Err((
                        "too_large",
                        format!(
                            "answer longer than {max_bytes} bytes ([triggers] max_response_bytes)"
                        ),
                    ));
                }
                if let Some(body) = complete_body(&data) {
                    let body = body.map_err(|why| ("http", format!("{host}:{port}: {why}")))?;
                    return finish_http(body, max_bytes);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    match complete_body_at_eof(&data) {
        Ok(body) => finish_http(body, max_bytes),
        Err(why) => Err(("http", format!("{host}:{port}: {why}"))),
    }
}

fn finish_http(body: Vec<u8>, max_bytes: usize) -> Result<String, Failure> {
    if body.len() > max_bytes {
        return Err((
            "too_large",
            format!("answer longer than {max_bytes} bytes ([triggers] max_response_bytes)"),
        ));
    }
    let text =
        String::from_utf8(body).map_err(|_| ("garbage", "answer is not UTF-8".to_string()))?;
    Ok(trim_newline(text))
}

/// The head of the response once all of it is in `data`, with the status
/// checked.
fn checked_head(data: &[u8]) -> Option<Result<upstream::Head, String>> {
    match upstream::parse_head(data) {
        Ok(None) => None,
        Err(e) => Some(Err(e)),
        Ok(Some(h)) => Some(check_status(h.code).map(|()| h)),
    }
}

fn check_status(status: u16) -> Result<(), String> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

fn content_length(head: &upstream::Head) -> Result<Option<usize>, String> {
    match head.content_length {
        None => Ok(None),
        Some(Ok(n)) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(Err(())) => Err("bad Content-Length".into()),
    }
}

/// A chunked body: `Ok(Some)` once the last chunk is in `data`.
fn dechunk(data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut d = upstream::ChunkedDecoder::new();
    let mut out = Vec::new();
    let done = d.feed(data, |b| out.extend_from_slice(b))?;
    Ok(done.then_some(out))
}

/// The body once it is complete (by length or chunked), before EOF.
fn complete_body(data: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let head = match checked_head(data)? {
        Ok(h) => h,
        Err(e) => return Some(Err(e)),
    };
    let rest = &data[head.len..];
    if head.chunked() {
        return dechunk(rest).transpose();
    }
    match content_length(&head) {
        Err(e) => Some(Err(e)),
        Ok(None) => None,
        Ok(Some(len)) => (rest.len() >= len).then(|| Ok(rest[..len].to_vec())),
    }
}

fn complete_body_at_eof(data: &[u8]) -> Result<Vec<u8>, String> {
    let head = checked_head(data)
        .unwrap_or_else(|| Err("connection closed before a response head".into()))?;
    let rest = &data[head.len..];
    if head.chunked() {
        return dechunk(rest)?.ok_or_else(|| "chunked body cut short".to_string());
    }
    match content_length(&head)? {
        Some(n) if rest.len() < n => Err("body cut short".into()),
        Some(n) => Ok(rest[..n].to_vec()),
        None => Ok(rest.to_vec()),
    }
}

/// A worker's end of the trigger runner.
#[derive(Debug)]
pub struct WorkerTriggers {
    index: usize,
    shared: Arc<Shared>,
    generation: u64,
    set: Arc<TriggerSet>,
    events: Receiver<TriggerReply>,
}

impl WorkerTriggers {
    fn refresh(&mut self) {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.set = self.shared.set.lock().expect("trigger set lock").clone();
            self.generation = g;
        }
    }

    /// Whether `trigger` has a handler (blocking or not) for `stream`.
    pub fn wants(&mut self, trigger: Trigger, stream: &str) -> bool {
        self.refresh();
        self.set.wants(trigger, stream)
    }

    /// Fire `trigger` for `stream` without waiting: every handler runs,
    /// responses are ignored. `payload` is only built if one is configured.
    pub fn fire(&mut self, trigger: Trigger, stream: &str, payload: impl FnOnce() -> String) {
        self.refresh();
        let (mut sync, not) = self.set.matching(trigger, stream);
        sync.extend(not);
        if sync.is_empty() {
            return;
        }
        let _ = self.shared.submit(Job {
            trigger,
            payload: Arc::from(payload()),
            handlers: sync,
            reply: ReplyTo::Nobody,
            session: None,
        });
    }

    /// Call `trigger` for `stream`: async handlers are fired; blocking ones
    /// answer later with a [`TriggerReply`] carrying `token` (or at once,
    /// see [`Call`]). `session`: answers are cached per this key (USER_NEW).
    pub fn call(
        &mut self,
        trigger: Trigger,
        stream: &str,
        payload: impl FnOnce() -> String,
        token: u64,
        session: Option<String>,
    ) -> Call {
        self.refresh();
        let (sync, not) = self.set.matching(trigger, stream);
        if sync.is_empty() && not.is_empty() {
            return Call::NotConfigured;
        }
        let payload: Arc<str> = Arc::from(payload());
        if !not.is_empty() {
            let _ = self.shared.submit(Job {
                trigger,
                payload: payload.clone(),
                handlers: not,
                reply: ReplyTo::Nobody,
                session: None,
            });
        }
        if sync.is_empty() {
            return Call::NotConfigured;
        }
        let reply = ReplyTo::Worker {
            worker: self.index,
            token,
        };
        if let Some(key) = &session {
            let mut q = self.shared.queue.lock().expect("trigger queue lock");
            let now = Instant::now();
            sweep_sessions(&mut q, now);
            match q.sessions.get_mut(key) {
                Some(Session::Done { response, until }) if now < *until => {
                    let r = response.clone();
                    drop(q);
                    self.shared
                        .stats
                        .lock()
                        .expect("trigger stats lock")
                        .cache_hits += 1;
                    return Call::Answered(r);
                }
                Some(Session::Running(waiting)) => {
                    waiting.push(reply);
                    return Call::Pending;
                }
                _ => {
                    q.sessions.insert(key.clone(), Session::Running(Vec::new()));
                }
            }
        }
        match self.shared.submit(Job {
            trigger,
            payload,
            handlers: sync,
            reply,
            session: session.clone(),
        }) {
            Some(r) => {
                if let Some(key) = session {
                    // Not run: whoever joined the session's run gets the
                    // same answer, and nothing is cached.
                    let waiting = match self
                        .shared
                        .queue
                        .lock()
                        .expect("trigger queue lock")
                        .sessions
                        .remove(&key)
                    {
                        Some(Session::Running(w)) => w,
                        _ => Vec::new(),
                    };
                    for w in waiting {
                        self.shared.reply(w, r.clone());
                    }
                }
                Call::Answered(r)
            }
            None => Call::Pending,
        }
    }

    /// The next answer for this worker, if any (the runner writes the
    /// worker's mesh eventfd after sending one).
    pub fn try_event(&self) -> Option<TriggerReply> {
        self.events.try_recv().ok()
    }
}

/// Drop expired session answers (at most once a second).
fn sweep_sessions(q: &mut Queue, now: Instant) {
    if q.last_sweep
        .is_some_and(|t| now < t + Duration::from_secs(1))
    {
        return;
    }
    q.last_sweep = Some(now);
    q.sessions
        .retain(|_, s| !matches!(s, Session::Done { until, .. } if now >= *until));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    #[test]
    fn names_round_trip() {
        for t in Trigger::ALL {
            assert_eq!(Trigger::from_name(t.name()), Some(*t));
        }
        assert!(Trigger::ALL.len() < 64);
    }

    #[test]
    fn booleans_read_as_mistserver_does() {
        for s in ["true", "1", "yes", "TRUE\n", " cont"] {
            assert_eq!(parse_bool(s), Some(true), "{s}");
        }
        for s in ["false", "0", "no", "", "off"] {
            assert_eq!(parse_bool(s), Some(false), "{s}");
        }
        for s in ["banana", "2", "ok"] {
            assert_eq!(parse_bool(s), None, "{s}");
        }
    }

    #[test]
    fn stream_filters_match_names_and_bases() {
        let f = vec!["live".to_string(), "news+a".to_string()];
        assert!(stream_matches(&f, "live"));
        assert!(stream_matches(&f, "live+alice"));
        assert!(stream_matches(&f, "news+a"));
        assert!(!stream_matches(&f, "news+b"));
        assert!(!stream_matches(&f, "lively"));
        assert!(stream_matches(&[], "anything"));
    }

    #[test]
    fn garbage_is_recognised() {
        assert!(Trigger::RtmpPushRewrite.response_is_usable("rtmp://h/live/x"));
        assert!(Trigger::RtmpPushRewrite.response_is_usable(""));
        assert!(!Trigger::RtmpPushRewrite.response_is_usable("\u{1}\u{2}zz"));
        assert!(Trigger::PushRewrite.response_is_usable("live+alice"));
        assert!(!Trigger::PushRewrite.response_is_usable("live alice"));
        assert!(!Trigger::UserNew.response_is_usable("maybe"));
    }

    #[test]
    fn chunked_and_sized_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ntrue\r\n0\r\n\r\n";
        assert_eq!(complete_body(r).unwrap().unwrap(), b"true");
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfalse";
        assert_eq!(complete_body(r).unwrap().unwrap(), b"false");
        let r = b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
        assert!(complete_body(r).unwrap().is_err());
        assert!(complete_body(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfa").is_none());
    }

    #[test]
    fn https_is_refused_naming_the_key() {
        let c = Config::parse(
            "[[trigger]]\non = \"USER_NEW\"\nhandler = \"https://example.com/x\"\n",
            "t.toml",
        );
        let e = c.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("trigger.handler"), "{e}");
    }

    fn runner(toml: &str) -> Triggers {
        let c = Config::parse(toml, "t.toml").expect("config");
        Triggers::start(&c, Vec::new()).expect("runner").0
    }

    fn sh(on: &str, script: &str, extra: &str) -> String {
        format!(
            "[[trigger]]\non = \"{on}\"\nhandler = \"/bin/sh\"\nargs = [\"-c\", {script:?}]\n{extra}\n"
        )
    }

    #[test]
    fn failures_apply_the_default_and_are_counted() {
        let mut toml = String::new();
        toml += &sh(
            "USER_NEW",
            "sleep 5; echo true",
            "streams = [\"hang\"]\ntimeout = 0.3\ndefault = \"false\"",
        );
        toml += &sh(
            "USER_NEW",
            "echo banana",
            "streams = [\"junk\"]\ndefault = \"true\"",
        );
        toml += &sh(
            "USER_NEW",
            "head -c 100000 /dev/zero | tr '\\0' y",
            "streams = [\"big\"]\ndefault = \"false\"",
        );
        toml += &sh(
            "USER_NEW",
            "echo true; exit 3",
            "streams = [\"fails\"]\ndefault = \"false\"",
        );
        toml += &sh(
            "USER_NEW",
            "cat > /dev/null; echo yes",
            "streams = [\"good\"]",
        );
        toml += "[triggers]\nmax_response_bytes = 1000\n";
        let t = runner(&toml);
        let call = |s: &str| t.call_blocking(Trigger::UserNew, s, "payload\nlines");
        let started = Instant::now();
        assert_eq!(call("hang"), Some(Some("false".into())));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(call("junk"), Some(Some("true".into())));
        assert_eq!(call("big"), Some(Some("false".into())));
        assert_eq!(call("fails"), Some(Some("false".into())));
        assert_eq!(call("good"), Some(Some("yes".into())));
        assert_eq!(call("unconfigured"), None);
        let mut m = String::new();
        t.write_metrics(&mut m);
        for reason in ["timeout", "garbage", "too_large", "exit"] {
            let line = format!(
                "spate_trigger_failures_total{{trigger=\"USER_NEW\",reason=\"{reason}\"}} 1"
            );
            assert!(m.contains(&line), "{line} missing:\n{m}");
        }
        assert!(
            m.contains("spate_trigger_calls_total{trigger=\"USER_NEW\"} 5"),
            "{m}"
        );
        assert!(
            m.contains("spate_trigger_latency_seconds_count{trigger=\"USER_NEW\"} 5"),
            "{m}"
        );
        assert!(m.contains("spate_trigger_queue_depth 0"), "{m}");
        t.stop();
    }

    #[test]
    fn http_handlers_get_a_post_with_x_trigger() {
        use std::io::{BufRead, BufReader};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            let mut r = BufReader::new(s);
            let mut head = Vec::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).expect("line");
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().expect("length");
                }
                head.push(line);
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).expect("body");
            let mut s = r.into_inner();
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n19\r\nrtmp://h/live/live+alice\n\r\n0\r\n\r\n")
                .expect("answer");
            (head, String::from_utf8(body).expect("utf8"))
        });
        let t = runner(&format!(
            "[[trigger]]\non = \"RTMP_PUSH_REWRITE\"\nhandler = \"http://127.0.0.1:{port}/hook\"\n"
        ));
        let r = t.call_blocking(
            Trigger::RtmpPushRewrite,
            "",
            "rtmp://h/live/abc123\n10.0.0.1",
        );
        assert_eq!(r, Some(Some("rtmp://h/live/live+alice".into())));
        let (head, body) = server.join().expect("server");
        assert!(head[0].starts_with("POST /hook HTTP/1.1"), "{head:?}");
        assert!(
            head.iter()
                .any(|h| h.trim() == "X-Trigger: RTMP_PUSH_REWRITE"),
            "{head:?}"
        );
        assert_eq!(body, "rtmp://h/live/abc123\n10.0.0.1");
        // Nobody listening: the http failure falls back (no default: None).
        drop(t);
        let t = runner(&format!(
            "[[trigger]]\non = \"USER_NEW\"\nhandler = \"http://127.0.0.1:{port}/gone\"\ntimeout = 1.0\n"
        ));
        assert_eq!(t.call_blocking(Trigger::UserNew, "s", "x"), Some(None));
    }

    #[test]
    fn unknown_trigger_names_are_refused() {
        let e = Config::parse(
            "[[trigger]]\non = \"STREAM_BOGUS\"\nhandler = \"/bin/true\"\n",
            "t.toml",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("trigger.on"), "{e}");
    }

    #[test]
    fn reconfigure_replaces_the_triggers_workers_see() {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor nothing else owns.
        let waker = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = Config::parse(&sh("USER_NEW", "echo true", "streams = [\"a\"]"), "t.toml").unwrap();
        let (t, mut ends) = Triggers::start(&c, vec![waker]).expect("runner");
        let w = &mut ends[0];
        assert!(w.wants(Trigger::UserNew, "a+b"));
        assert!(!w.wants(Trigger::UserNew, "b"));
        assert!(!w.wants(Trigger::StreamBuffer, "a"));
        let c2 = Config::parse(&sh("STREAM_BUFFER", "true", ""), "t.toml").unwrap();
        t.reconfigure(&c2).expect("reconfigure");
        assert!(!w.wants(Trigger::UserNew, "a"));
        assert!(w.wants(Trigger::StreamBuffer, "anything"));
        // A blocking call's answer arrives on the worker's channel.
        t.reconfigure(&c).expect("reconfigure");
        assert!(matches!(
            w.call(Trigger::UserNew, "a", || "p".into(), 7, None),
            Call::Pending
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        let reply = loop {
            if let Some(r) = w.try_event() {
                break r;
            }
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(reply.token, 7);
        assert_eq!(reply.response.as_deref(), Some("true"));
        assert!(matches!(
            w.call(Trigger::UserNew, "zzz", || "p".into(), 8, None),
            Call::NotConfigured
        ));
    }

    #[test]
    fn a_full_queue_answers_with_the_default_at_once_and_counts_it() {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor nothing else owns.
        let waker = unsafe { OwnedFd::from_raw_fd(fd) };
        let toml = sh("USER_NEW", "sleep 0.5; echo true", "default = \"false\"")
            + "[triggers]\nmax_concurrent = 1\nmax_queued = 1\n";
        let c = Config::parse(&toml, "t.toml").unwrap();
        let (t, mut ends) = Triggers::start(&c, vec![waker]).expect("runner");
        let w = &mut ends[0];
        // One runs, one waits, the third finds the queue full.
        assert!(matches!(
            w.call(Trigger::UserNew, "s", || "a".into(), 1, None),
            Call::Pending
        ));
        std::thread::sleep(Duration::from_millis(100));
        assert!(matches!(
            w.call(Trigger::UserNew, "s", || "b".into(), 2, None),
            Call::Pending
        ));
        match w.call(Trigger::UserNew, "s", || "c".into(), 3, None) {
            Call::Answered(r) => assert_eq!(r.as_deref(), Some("false")),
            other => panic!("queue not full: {other:?}"),
        }
        let mut m = String::new();
        t.write_metrics(&mut m);
        assert!(
            m.contains(
                "spate_trigger_failures_total{trigger=\"USER_NEW\",reason=\"queue_full\"} 1"
            ),
            "{m}"
        );
        assert!(m.contains("spate_trigger_queue_depth 1"), "{m}");
        assert!(m.contains("spate_trigger_running 1"), "{m}");
        // Both queued calls are answered.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tokens = Vec::new();
        while tokens.len() < 2 && Instant::now() < deadline {
            if let Some(r) = w.try_event() {
                assert_eq!(r.response.as_deref(), Some("true"));
                tokens.push(r.token);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tokens.sort();
        assert_eq!(tokens, [1, 2]);
    }

    #[test]
    fn user_new_answers_are_cached_per_session() {
        let dir = std::env::temp_dir().join(format!("spate-trig-cache-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let count = dir.join("count");
        let _ = std::fs::remove_file(&count);
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor nothing else owns.
        let waker = unsafe { OwnedFd::from_raw_fd(fd) };
        let toml = sh(
            "USER_NEW",
            &format!("echo x >> {}; sleep 0.2; echo true", count.display()),
            "",
        );
        let c = Config::parse(&toml, "t.toml").unwrap();
        let (t, mut ends) = Triggers::start(&c, vec![waker]).expect("runner");
        let w = &mut ends[0];
        // Two calls of one session while the first runs: one handler run.
        for token in [1, 2] {
            assert!(matches!(
                w.call(
                    Trigger::UserNew,
                    "s",
                    || "p".into(),
                    token,
                    Some("k".into())
                ),
                Call::Pending
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = 0;
        while got < 2 && Instant::now() < deadline {
            if w.try_event().is_some() {
                got += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got, 2);
        // Later: answered from the cache at once.
        match w.call(Trigger::UserNew, "s", || "p".into(), 3, Some("k".into())) {
            Call::Answered(r) => assert_eq!(r.as_deref(), Some("true")),
            other => panic!("not cached: {other:?}"),
        }
        let runs = std::fs::read_to_string(&count).unwrap_or_default();
        assert_eq!(runs.lines().count(), 1, "{runs:?}");
        let mut m = String::new();
        t.write_metrics(&mut m);
        assert!(
            m.contains("spate_trigger_session_cache_hits_total 1"),
            "{m}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
