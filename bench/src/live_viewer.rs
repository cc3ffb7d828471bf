//! One viewer thread of the live bench: one io_uring (the engine's
//! [`Ring`]), viewers as direct descriptors (see `client.rs` for the socket
//! life cycle), multishot receives into a provided [`BufRing`]. Each viewer
//! is an HTTP-FLV GET or an RTMP play; received bytes are scanned (bodies
//! skipped) and every completed video frame is matched with the publisher's
//! send instant of the frame with the same timestamp.
//!
//! Every 100 ms the thread samples each viewer's lag: the publisher's newest
//! sent video timestamp minus the viewer's newest received one. A lag above
//! `stall_ms` (one frame interval + tolerance) marks that viewer-second as
//! stalled; so does a viewer that has received no frame 2 s after it asked.
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{opcode, types};
use spate_engine::runtime::bufring::BufRing;
use spate_engine::runtime::ring::{Ring, Token, buffer_id, more};
use spate_engine::runtime::slab::Slab;
use spate_protocols::rtmp::{message_type, user_control};

use crate::client::{close_fixed, connect_fixed, sockaddr};
use crate::flvparse::{HttpFlvScanner, ScanError, TagSeen};
use crate::live_publish::SendTimes;
use crate::live_rtmp::{self, ChunkScanner, Reply, RtmpEvent, RtmpUrl, SERVER_HANDSHAKE};
use crate::tsparse::HttpTsScanner;

const K_CONNECT: u8 = 1;
const K_CONNECT_TIMEOUT: u8 = 2;
const K_SEND: u8 = 3;
const K_RECV: u8 = 4;
const K_SHUTDOWN: u8 = 5;
const K_CLOSE: u8 = 6;
const K_TICK: u8 = 7;

/// Threads keep running.
pub const PHASE_RUN: u8 = 0;
/// Threads leave their loops.
pub const PHASE_STOP: u8 = 1;

/// Viewer protocol.
#[derive(Debug, Clone)]
pub enum Proto {
    /// HTTP-FLV: this request is sent.
    Flv(Arc<Vec<u8>>),
    /// RTMP play of this URL.
    Rtmp(Arc<RtmpUrl>),
    /// Progressive MPEG-TS over HTTP: this request is sent (`tsparse.rs`).
    Ts(Arc<Vec<u8>>),
}

/// What one thread is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub index: usize,
    pub dest: SocketAddrV4,
    pub sources: Arc<Vec<Ipv4Addr>>,
    /// Most viewers this thread will ever hold (table size).
    pub max_viewers: usize,
    pub proto: Proto,
    pub connect_concurrency: usize,
    /// New connections per second (0: unlimited).
    pub ramp_per_sec: f64,
    pub recv_bufs: u16,
    pub recv_buf_size: u32,
    /// Lag (ms) above which a sample counts as a stall.
    pub stall_ms: u32,
    /// Viewers leaving per second (each replaced by a new one: churn).
    pub churn_per_sec: f64,
    /// When a frame's timestamp matches no send record, learn the server's
    /// timestamp offset (see `consume`) instead of leaving frames unmatched.
    pub learn_offset: bool,
    pub pin_cpu: Option<usize>,
}

/// State the control thread drives and watches.
#[derive(Debug)]
pub struct Shared {
    pub phase: AtomicU8,
    /// Count samples and latencies.
    pub measuring: AtomicBool,
    /// Bumped by the control thread to ask every thread for its stats
    /// (which are then reset).
    pub collect: AtomicU64,
    /// Viewers each thread should hold.
    pub targets: Vec<AtomicUsize>,
    /// Viewers connected (TCP up).
    pub connected: AtomicUsize,
    /// Viewers that received a frame sent after they asked.
    pub live: AtomicUsize,
}

impl Shared {
    pub fn new(threads: usize) -> Self {
        Self {
            phase: AtomicU8::new(PHASE_RUN),
            measuring: AtomicBool::new(false),
            collect: AtomicU64::new(0),
            targets: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            connected: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        }
    }
}

/// What a thread measured since the last collection.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Server-added latency per video frame, µs.
    pub latency: Histogram<u64>,
    /// Start-up time per viewer, µs: connect started → first keyframe
    /// (sent after the viewer asked or not: what a player could show).
    pub startup: Histogram<u64>,
    /// Viewers closed on purpose (churn).
    pub churned: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Viewer-seconds sampled and those with a stalled sample.
    pub viewer_seconds: u64,
    pub stalled_viewer_seconds: u64,
    /// Largest lag sampled, ms.
    pub max_lag_ms: u64,
    /// Viewers the server closed or reset (established ones).
    pub disconnects: u64,
    /// Connect failures.
    pub connect_errors: u64,
    /// Refusals (HTTP status ≠ 200, RTMP error status) and parse errors.
    pub protocol_errors: u64,
    /// Video frames whose timestamp matched a send record / did not.
    pub ts_matched: u64,
    pub ts_unmatched: u64,
    /// Times a viewer re-learned the server's timestamp offset.
    pub ts_shifts: u64,
    /// Matched frames sent before the viewer asked (its start-up burst).
    pub burst_frames: u64,
    pub nobufs: u64,
    /// First error message seen.
    pub first_error: Option<String>,
}

impl Stats {
    pub fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds"),
            startup: Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds"),
            churned: 0,
            bytes: 0,
            viewer_seconds: 0,
            stalled_viewer_seconds: 0,
            max_lag_ms: 0,
            disconnects: 0,
            connect_errors: 0,
            protocol_errors: 0,
            ts_matched: 0,
            ts_unmatched: 0,
            ts_shifts: 0,
            burst_frames: 0,
            nobufs: 0,
            first_error: None,
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        self.latency.add(&o.latency).expect("same bounds");
        self.startup.add(&o.startup).expect("same bounds");
        self.churned += o.churned;
        self.bytes += o.bytes;
        self.viewer_seconds += o.viewer_seconds;
        self.stalled_viewer_seconds += o.stalled_viewer_seconds;
        self.max_lag_ms = self.max_lag_ms.max(o.max_lag_ms);
        self.disconnects += o.disconnects;
        self.connect_errors += o.connect_errors;
        self.protocol_errors += o.protocol_errors;
        self.ts_matched += o.ts_matched;
        self.ts_unmatched += o.ts_unmatched;
        self.ts_shifts += o.ts_shifts;
        self.burst_frames += o.burst_frames;
        self.nobufs += o.nobufs;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
    }

    fn error(&mut self, e: String) {
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Open,
    Closing,
}

#[derive(Debug)]
enum Scan {
    Flv(HttpFlvScanner),
    Rtmp(Box<RtmpView>),
    Ts(HttpTsScanner),
}

#[derive(Debug)]
struct RtmpView {
    /// Handshake bytes received (S0 S1 S2), until `SERVER_HANDSHAKE`.
    hs_got: usize,
    s1: Vec<u8>,
    scanner: ChunkScanner,
    window: u64,
    received: u64,
    acked: u64,
    playing: bool,
}

#[derive(Debug)]
struct View {
    /// µs since epoch when the connect was started.
    opened_us: u64,
    /// A keyframe arrived (start-up recorded).
    started: bool,
    /// µs since epoch when the request / play was sent (0: not yet).
    asked_us: u64,
    /// Newest video frame timestamp + 1 (0: none), on the publisher's
    /// timeline (the viewer's minus `offset`).
    newest: u64,
    /// Viewer timestamp − publisher timestamp, ms (wrapping; 0 while the
    /// server passes timestamps through).
    offset: u32,
    live: bool,
    stalled_this_second: bool,
}

#[derive(Debug)]
struct Conn {
    state: State,
    scan: Scan,
    view: View,
    /// Bytes handed to the kernel (must stay put until the send completes).
    out: Vec<u8>,
    /// Bytes waiting for the send in flight to finish.
    pending: Vec<u8>,
    send_in_flight: bool,
}

struct Io {
    ring: Ring,
    bufs: BufRing,
}

struct Viewer {
    io: Io,
    plan: Plan,
    shared: Arc<Shared>,
    times: Arc<SendTimes>,
    tx: Sender<(usize, Stats)>,
    conns: Slab<Conn>,
    dest: libc::sockaddr_in,
    c0c1: Vec<u8>,
    connect_timeout: types::Timespec,
    tick: types::Timespec,
    connecting: usize,
    next_source: usize,
    retry_after: Option<Instant>,
    out: Stats,
    measuring: bool,
    collect_seen: u64,
    /// Ramp: connections allowed so far (token bucket).
    ramp_tokens: f64,
    ramp_last: Instant,
    samples: u32,
    last_sample: Instant,
    /// Churn: closes allowed so far (token bucket) and where the next
    /// victim search starts.
    churn_tokens: f64,
    churn_last: Instant,
    churn_cursor: usize,
    events: Vec<RtmpEvent>,
    tags: Vec<TagSeen>,
}

/// Run one viewer thread until the phase becomes STOP.
pub fn run(
    plan: Plan,
    shared: Arc<Shared>,
    times: Arc<SendTimes>,
    tx: Sender<(usize, Stats)>,
) -> io::Result<()> {
    if let Some(cpu) = plan.pin_cpu {
        crate::client::pin_to(cpu)?;
    }
    let ring = Ring::new(4096, plan.max_viewers.max(1) as u32)?;
    let bufs = BufRing::new(&ring, 0, plan.recv_bufs, plan.recv_buf_size)?;
    let mut v = Viewer {
        io: Io { ring, bufs },
        conns: Slab::with_capacity(plan.max_viewers),
        dest: sockaddr(plan.dest),
        c0c1: live_rtmp::c0c1(),
        connect_timeout: types::Timespec::new().sec(10),
        tick: types::Timespec::new().nsec(20_000_000),
        connecting: 0,
        next_source: plan.index,
        retry_after: None,
        out: Stats::new(),
        measuring: false,
        collect_seen: 0,
        ramp_tokens: 0.0,
        ramp_last: Instant::now(),
        samples: 0,
        last_sample: Instant::now(),
        churn_tokens: 0.0,
        churn_last: Instant::now(),
        churn_cursor: 0,
        events: Vec::new(),
        tags: Vec::new(),
        plan,
        shared,
        times,
        tx,
    };
    v.run()
}

/// Match a received video frame's timestamp `ts` with the publisher's send
/// records. `offset` (viewer − publisher, wrapping) is the viewer's current
/// idea of the server's shift, `newest` its newest matched publisher
/// timestamp + 1 (0: none). Returns the frame's publisher timestamp, its
/// send instant if it matched, and whether `offset` was re-learned.
///
/// A match never goes back on the publisher's timeline (a server that
/// shifted timestamps back after a publisher reconnect would otherwise
/// match older frames). With `learn`, a frame that matches neither with
/// `offset` nor as passed through is taken to be the newest frame sent and
/// the following ones are matched by that offset: until the viewer is
/// caught up this re-learns on every frame (they stay unmatched); once it
/// is, frames match exactly.
fn match_frame(
    offset: &mut u32,
    newest: u64,
    ts: u32,
    times: &SendTimes,
    learn: bool,
) -> (u32, Option<u64>, bool) {
    let prev = newest.checked_sub(1).map(|n| n as u32);
    let forward = |ts: u32| prev.is_none_or(|p| ts.wrapping_sub(p) < 0x8000_0000);
    let mapped = ts.wrapping_sub(*offset);
    if let Some(sent) = times.sent_us(mapped).filter(|_| forward(mapped)) {
        return (mapped, Some(sent), false);
    }
    if *offset != 0
        && let Some(sent) = times.sent_us(ts).filter(|_| forward(ts))
    {
        // Back to pass-through.
        *offset = 0;
        return (ts, Some(sent), false);
    }
    if learn && let Some(n) = times.newest() {
        *offset = ts.wrapping_sub(n);
        return (n, None, true);
    }
    (mapped, None, false)
}

impl Viewer {
    fn run(&mut self) -> io::Result<()> {
        self.push_tick();
        let mut cqes = Vec::with_capacity(4096);
        loop {
            if self.shared.phase.load(Ordering::Relaxed) == PHASE_STOP {
                break;
            }
            self.measuring = self.shared.measuring.load(Ordering::Relaxed);
            let c = self.shared.collect.load(Ordering::Acquire);
            if c != self.collect_seen {
                self.collect_seen = c;
                let s = std::mem::replace(&mut self.out, Stats::new());
                let _ = self.tx.send((self.plan.index, s));
            }
            self.churn();
            self.open_connections();
            self.io.ring.submit_and_wait(1)?;
            self.io.ring.drain_completions(&mut cqes);
            for &(ud, res, flags) in &cqes {
                self.complete(Token(ud), res, flags);
            }
            if self.last_sample.elapsed() >= Duration::from_millis(100) {
                self.last_sample += Duration::from_millis(100);
                if self.last_sample.elapsed() > Duration::from_millis(100) {
                    self.last_sample = Instant::now();
                }
                self.sample();
            }
        }
        Ok(())
    }

    fn push_tick(&mut self) {
        let e = opcode::Timeout::new(&self.tick)
            .build()
            .user_data(Token::new(K_TICK, 0, 0).0);
        // SAFETY: `self.tick` lives as long as the ring.
        unsafe { self.io.ring.push(&e) };
    }

    fn open_connections(&mut self) {
        if let Some(t) = self.retry_after {
            if Instant::now() < t {
                return;
            }
            self.retry_after = None;
        }
        let target = self.shared.targets[self.plan.index]
            .load(Ordering::Relaxed)
            .min(self.plan.max_viewers);
        if self.plan.ramp_per_sec > 0.0 {
            let now = Instant::now();
            let dt = now.duration_since(self.ramp_last).as_secs_f64();
            self.ramp_last = now;
            self.ramp_tokens = (self.ramp_tokens + dt * self.plan.ramp_per_sec).min(
                (self.plan.ramp_per_sec / 10.0).max(1.0), // at most 100 ms' worth at once
            );
        }
        while self.conns.len() < target && self.connecting < self.plan.connect_concurrency {
            if self.plan.ramp_per_sec > 0.0 {
                if self.ramp_tokens < 1.0 {
                    return;
                }
                self.ramp_tokens -= 1.0;
            }
            if let Err(e) = self.open_one() {
                self.out.connect_errors += 1;
                self.out.error(format!("connect: {e}"));
                self.retry_after = Some(Instant::now() + Duration::from_millis(100));
                return;
            }
        }
    }

    /// Close `churn_per_sec` open viewers a second (round robin over the
    /// slots); `open_connections` replaces them.
    fn churn(&mut self) {
        if self.plan.churn_per_sec <= 0.0 {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.churn_last).as_secs_f64();
        self.churn_last = now;
        self.churn_tokens = (self.churn_tokens + dt * self.plan.churn_per_sec)
            .min((self.plan.churn_per_sec / 10.0).max(1.0));
        if self.churn_tokens < 1.0 {
            return;
        }
        let slots: Vec<(u32, u32)> = self.conns.slots().collect();
        if slots.is_empty() {
            return;
        }
        let mut tries = 0;
        while self.churn_tokens >= 1.0 && tries < slots.len() {
            let (slot, generation) = slots[self.churn_cursor % slots.len()];
            self.churn_cursor = self.churn_cursor.wrapping_add(1);
            tries += 1;
            let open = self
                .conns
                .get_mut(slot, generation)
                .is_some_and(|c| c.state == State::Open && c.view.started);
            if open {
                self.churn_tokens -= 1.0;
                self.out.churned += 1;
                self.close(slot, generation);
            }
        }
    }

    fn open_one(&mut self) -> io::Result<()> {
        let src = if self.plan.sources.is_empty() {
            None
        } else {
            let s = self.plan.sources[self.next_source % self.plan.sources.len()];
            self.next_source += 1;
            Some(s)
        };
        let scan = match &self.plan.proto {
            Proto::Flv(_) => Scan::Flv(HttpFlvScanner::new()),
            Proto::Ts(_) => Scan::Ts(HttpTsScanner::new()),
            Proto::Rtmp(_) => Scan::Rtmp(Box::new(RtmpView {
                hs_got: 0,
                s1: Vec::new(),
                scanner: ChunkScanner::new(),
                window: 2_500_000,
                received: 0,
                acked: 0,
                playing: false,
            })),
        };
        let (slot, generation) = self.conns.insert(Conn {
            state: State::Connecting,
            scan,
            view: View {
                opened_us: self.times.now_us(),
                started: false,
                asked_us: 0,
                newest: 0,
                offset: 0,
                live: false,
                stalled_this_second: false,
            },
            out: Vec::new(),
            pending: Vec::new(),
            send_in_flight: false,
        });
        // SAFETY: `dest` and `connect_timeout` live as long as the ring.
        let r = unsafe {
            connect_fixed(
                &mut self.io.ring,
                slot,
                src,
                &self.dest,
                &self.connect_timeout,
                Token::new(K_CONNECT, slot, generation),
                Token::new(K_CONNECT_TIMEOUT, slot, generation),
            )
        };
        if let Err(e) = r {
            self.conns.remove(slot, generation);
            return Err(e);
        }
        self.connecting += 1;
        Ok(())
    }

    fn complete(&mut self, token: Token, res: i32, flags: u32) {
        match token.kind() {
            K_TICK => self.push_tick(),
            K_CONNECT_TIMEOUT | K_SHUTDOWN => {}
            K_CONNECT => self.on_connect(token, res),
            K_SEND => self.on_send(token, res),
            K_RECV => self.on_recv(token, res, flags),
            K_CLOSE => {
                if let Some(c) = self.conns.remove(token.slot(), token.generation())
                    && c.send_in_flight
                {
                    // A send still owns the buffer: never free it.
                    std::mem::forget(c.out);
                }
            }
            _ => {}
        }
    }

    fn on_connect(&mut self, token: Token, res: i32) {
        self.connecting -= 1;
        let (slot, generation) = (token.slot(), token.generation());
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if res < 0 {
            self.out.connect_errors += 1;
            self.out
                .error(format!("connect: {}", io::Error::from_raw_os_error(-res)));
            self.retry_after = Some(Instant::now() + Duration::from_millis(100));
            self.close(slot, generation);
            return;
        }
        conn.state = State::Open;
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
        let e = opcode::RecvMulti::new(types::Fixed(slot), self.io.bufs.group())
            .build()
            .user_data(Token::new(K_RECV, slot, generation).0);
        // SAFETY: buffers come from the registered buffer ring.
        unsafe { self.io.ring.push(&e) };
        match &self.plan.proto {
            Proto::Flv(req) | Proto::Ts(req) => {
                conn.pending.extend_from_slice(req);
                conn.view.asked_us = self.times.now_us();
            }
            Proto::Rtmp(_) => conn.pending.extend_from_slice(&self.c0c1),
        }
        self.flush(slot, generation);
    }

    fn arm_recv(&mut self, slot: u32, generation: u32) {
        let e = opcode::RecvMulti::new(types::Fixed(slot), self.io.bufs.group())
            .build()
            .user_data(Token::new(K_RECV, slot, generation).0);
        // SAFETY: buffers come from the registered buffer ring.
        unsafe { self.io.ring.push(&e) };
    }

    /// Send what is pending if no send is in flight.
    fn flush(&mut self, slot: u32, generation: u32) {
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if conn.send_in_flight || conn.state != State::Open {
            return;
        }
        if conn.out.is_empty() {
            if conn.pending.is_empty() {
                return;
            }
            std::mem::swap(&mut conn.out, &mut conn.pending);
        }
        conn.send_in_flight = true;
        let e = opcode::Send::new(types::Fixed(slot), conn.out.as_ptr(), conn.out.len() as u32)
            .build()
            .user_data(Token::new(K_SEND, slot, generation).0);
        // SAFETY: `conn.out` is not touched until this send completes (its
        // heap buffer does not move when the slab does).
        unsafe { self.io.ring.push(&e) };
    }

    fn on_send(&mut self, token: Token, res: i32) {
        let (slot, generation) = (token.slot(), token.generation());
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        conn.send_in_flight = false;
        if conn.state != State::Open {
            return;
        }
        if res < 0 {
            self.lost(
                slot,
                generation,
                format!("send: {}", io::Error::from_raw_os_error(-res)),
            );
            return;
        }
        conn.out.drain(..res as usize);
        self.flush(slot, generation);
    }

    /// An established viewer went away.
    fn lost(&mut self, slot: u32, generation: u32, why: String) {
        if self.shared.phase.load(Ordering::Relaxed) != PHASE_STOP {
            self.out.disconnects += 1;
            self.out.error(why);
        }
        self.close(slot, generation);
    }

    fn on_recv(&mut self, token: Token, res: i32, flags: u32) {
        let (slot, generation) = (token.slot(), token.generation());
        let bid = buffer_id(flags);
        let armed = more(flags);
        let open = matches!(
            self.conns.get_mut(slot, generation),
            Some(Conn {
                state: State::Open,
                ..
            })
        );
        if !open {
            if let Some(bid) = bid {
                self.io.bufs.recycle(bid);
            }
            return;
        }
        if res > 0 {
            let r = match bid {
                Some(bid) => {
                    let r = self.consume(slot, generation, bid, res as usize);
                    self.io.bufs.recycle(bid);
                    r
                }
                None => Ok(()),
            };
            match r {
                Ok(()) => {
                    if !armed && self.conns.get_mut(slot, generation).is_some() {
                        self.arm_recv(slot, generation);
                    }
                    self.flush(slot, generation);
                }
                Err(e) => {
                    self.out.protocol_errors += 1;
                    self.out.error(e);
                    self.close(slot, generation);
                }
            }
            return;
        }
        if let Some(bid) = bid {
            self.io.bufs.recycle(bid);
        }
        if res == -libc::ENOBUFS {
            self.out.nobufs += 1;
            if !armed {
                self.arm_recv(slot, generation);
            }
            return;
        }
        let why = if res == 0 {
            "server closed a viewer".to_string()
        } else {
            format!("recv: {}", io::Error::from_raw_os_error(-res))
        };
        self.lost(slot, generation, why);
    }

    fn consume(&mut self, slot: u32, generation: u32, bid: u16, len: usize) -> Result<(), String> {
        let now_us = self.times.now_us();
        let data = self.io.bufs.get(bid, len);
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return Ok(());
        };
        if self.measuring {
            self.out.bytes += len as u64;
        }
        let mut tags = std::mem::take(&mut self.tags);
        tags.clear();
        match &mut conn.scan {
            Scan::Flv(sc) => sc.feed(data, |t| tags.push(t)).map_err(|e| match e {
                ScanError::Status(s) => format!("HTTP status {s}"),
                other => format!("{other:?}"),
            })?,
            Scan::Ts(sc) => sc.feed(data, |t| tags.push(t)).map_err(|e| match e {
                ScanError::Status(s) => format!("HTTP status {s}"),
                other => format!("{other:?}"),
            })?,
            Scan::Rtmp(rv) => {
                let Proto::Rtmp(url) = &self.plan.proto else {
                    unreachable!()
                };
                let mut data = data;
                rv.received += len as u64;
                if rv.hs_got < SERVER_HANDSHAKE {
                    let take = (SERVER_HANDSHAKE - rv.hs_got).min(data.len());
                    // Keep S1 (bytes 1..1537) to echo as C2.
                    for (i, &b) in data[..take].iter().enumerate() {
                        let pos = rv.hs_got + i;
                        if (1..=1536).contains(&pos) {
                            rv.s1.push(b);
                        }
                    }
                    rv.hs_got += take;
                    data = &data[take..];
                    if rv.hs_got == SERVER_HANDSHAKE {
                        conn.pending.append(&mut rv.s1);
                        live_rtmp::connect_and_create(&mut conn.pending, url, false);
                    }
                }
                let mut events = std::mem::take(&mut self.events);
                events.clear();
                let r = rv.scanner.feed(data, &mut events);
                let mut refused = None;
                for ev in events.drain(..) {
                    match ev {
                        RtmpEvent::Media(t) => tags.push(t),
                        RtmpEvent::Message {
                            type_id, payload, ..
                        } => match type_id {
                            message_type::WINDOW_ACK_SIZE if payload.len() >= 4 => {
                                rv.window = u64::from(u32::from_be_bytes([
                                    payload[0], payload[1], payload[2], payload[3],
                                ]))
                                .max(4096);
                            }
                            message_type::USER_CONTROL if payload.len() >= 6 => {
                                let ev = u16::from_be_bytes([payload[0], payload[1]]);
                                if ev == user_control::PING_REQUEST {
                                    let mut p = user_control::PING_RESPONSE.to_be_bytes().to_vec();
                                    p.extend_from_slice(&payload[2..6]);
                                    live_rtmp::control(
                                        &mut conn.pending,
                                        message_type::USER_CONTROL,
                                        &p,
                                    );
                                }
                            }
                            message_type::COMMAND_AMF0 => match live_rtmp::parse_reply(&payload) {
                                Reply::Created(id) if !rv.playing => {
                                    rv.playing = true;
                                    live_rtmp::play(&mut conn.pending, id, &url.name);
                                    conn.view.asked_us = now_us;
                                }
                                Reply::Status { level, code } if level == "error" => {
                                    refused = Some(format!("RTMP play refused: {code}"));
                                }
                                Reply::Error(t) => {
                                    refused = Some(format!("RTMP _error for transaction {t}"));
                                }
                                _ => {}
                            },
                            _ => {}
                        },
                    }
                }
                self.events = events;
                if let Some(e) = refused {
                    return Err(e);
                }
                r.map_err(|e| format!("RTMP: {e}"))?;
                if rv.received - rv.acked >= rv.window / 2 {
                    rv.acked = rv.received;
                    live_rtmp::control(
                        &mut conn.pending,
                        message_type::ACKNOWLEDGEMENT,
                        &(rv.received as u32).to_be_bytes(),
                    );
                }
            }
        }
        for t in &tags {
            if !t.is_video_frame() {
                continue;
            }
            let v = &mut conn.view;
            let (ts, sent, shifted) = match_frame(
                &mut v.offset,
                v.newest,
                t.ts,
                &self.times,
                self.plan.learn_offset,
            );
            self.out.ts_shifts += u64::from(shifted);
            v.newest = u64::from(ts) + 1;
            if !v.started && t.peek[0] >> 4 == 1 {
                v.started = true;
                self.out
                    .startup
                    .saturating_record(now_us.saturating_sub(v.opened_us).max(1));
            }
            match sent {
                Some(sent) => {
                    self.out.ts_matched += 1;
                    self.times.note_server_offset(v.offset);
                    if v.asked_us > 0 && sent >= v.asked_us {
                        if !v.live {
                            v.live = true;
                            self.shared.live.fetch_add(1, Ordering::Relaxed);
                        }
                        if self.measuring {
                            self.out
                                .latency
                                .saturating_record(now_us.saturating_sub(sent).max(1));
                        }
                    } else {
                        self.out.burst_frames += 1;
                    }
                }
                None => self.out.ts_unmatched += 1,
            }
        }
        self.tags = tags;
        Ok(())
    }

    /// Every 100 ms: each viewer's lag behind the publisher.
    fn sample(&mut self) {
        let Some(newest) = self.times.newest() else {
            return;
        };
        let now_us = self.times.now_us();
        self.samples += 1;
        let second_done = self.samples.is_multiple_of(10);
        let measuring = self.measuring;
        let stall_ms = self.plan.stall_ms;
        let slots: Vec<(u32, u32)> = self.conns.slots().collect();
        for (slot, generation) in slots {
            let Some(conn) = self.conns.get_mut(slot, generation) else {
                continue;
            };
            if conn.state != State::Open || conn.view.asked_us == 0 {
                continue;
            }
            let v = &mut conn.view;
            let lag_ms = if v.newest == 0 {
                let waited = now_us.saturating_sub(v.asked_us) / 1000;
                (waited > 2000).then_some(waited)
            } else {
                let behind = newest.wrapping_sub((v.newest - 1) as u32);
                // Ahead (a frame sent after `newest` was read) is no lag.
                Some(if behind > 0x8000_0000 {
                    0
                } else {
                    u64::from(behind)
                })
            };
            if measuring {
                if let Some(l) = lag_ms {
                    self.out.max_lag_ms = self.out.max_lag_ms.max(l);
                    if l > u64::from(stall_ms) {
                        v.stalled_this_second = true;
                    }
                }
                if second_done {
                    self.out.viewer_seconds += 1;
                    if v.stalled_this_second {
                        self.out.stalled_viewer_seconds += 1;
                    }
                }
            }
            if second_done || !measuring {
                v.stalled_this_second = false;
            }
        }
    }

    fn close(&mut self, slot: u32, generation: u32) {
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if conn.state == State::Closing {
            return;
        }
        if conn.state == State::Open {
            self.shared.connected.fetch_sub(1, Ordering::Relaxed);
            if conn.view.live {
                self.shared.live.fetch_sub(1, Ordering::Relaxed);
            }
        }
        conn.state = State::Closing;
        close_fixed(
            &mut self.io.ring,
            slot,
            Token::new(K_SHUTDOWN, slot, generation),
            Token::new(K_CLOSE, slot, generation),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames every 33 ms from 0 to `last`, sent at µs = ts × 1000.
    fn sent_until(last: u32) -> SendTimes {
        let t = SendTimes::new();
        for ts in (0..=last).step_by(33) {
            t.record(ts, u64::from(ts) * 1000);
        }
        t
    }

    #[test]
    fn pass_through_matches_exactly() {
        let t = sent_until(3300);
        let mut off = 0;
        assert_eq!(
            match_frame(&mut off, 0, 99, &t, true),
            (99, Some(99_000), false)
        );
        assert_eq!(off, 0);
    }

    #[test]
    fn a_shifted_server_is_learned_then_matched() {
        // The server's timestamps run 5000 ms ahead of the publisher's.
        let t = sent_until(3300);
        let newest = t.newest().unwrap();
        let mut off = 0;
        // The first frame is taken for the newest sent: re-learned.
        let (ts, sent, shifted) = match_frame(&mut off, 0, newest + 5000, &t, true);
        assert_eq!((ts, sent, shifted), (newest, None, true));
        assert_eq!(off, 5000);
        // The next frame the server sends matches exactly by the offset.
        t.record(newest + 33, 9_999_000);
        assert_eq!(
            match_frame(&mut off, u64::from(ts) + 1, newest + 33 + 5000, &t, true),
            (newest + 33, Some(9_999_000), false)
        );
        // Without learning the frame stays unmatched and the offset is kept.
        let mut off = 0;
        let (_, sent, shifted) = match_frame(&mut off, 0, newest + 5000, &t, false);
        assert_eq!((sent, shifted, off), (None, false, 0));
    }

    #[test]
    fn never_matches_backwards_and_returns_to_pass_through() {
        let t = sent_until(3300);
        // Newest matched: 3300. A server shifted 300 ms back sends 3333 as
        // 3033, which is an old send record: not matched, re-learned.
        let mut off = 0;
        let (ts, sent, shifted) = match_frame(&mut off, 3301, 3033, &t, true);
        assert_eq!((ts, sent, shifted), (3300, None, true));
        assert_eq!(off, 3033u32.wrapping_sub(3300));
        // A later pass-through frame matches again and resets the offset.
        t.record(3366, 3_366_000);
        assert_eq!(
            match_frame(&mut off, 3301, 3366, &t, true),
            (3366, Some(3_366_000), false)
        );
        assert_eq!(off, 0);
    }
}
