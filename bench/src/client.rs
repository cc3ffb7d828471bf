//! One load-generating thread: one io_uring (the engine's [`Ring`]), its
//! connections as direct descriptors (no process fd is held per
//! connection), multishot receives into a provided [`BufRing`], and an
//! HTTP/1.1 response counter per connection.
//!
//! A connection's life: a plain `socket(2)` bound to a source address (with
//! `IP_BIND_ADDRESS_NO_PORT`, so the port is picked at connect time per
//! 4-tuple) is moved into the ring's fixed-file table with
//! `register_files_update` and its fd closed at once → `Connect` on the fixed
//! slot, linked to a `LinkTimeout` → a multishot `Recv` is armed and the first
//! request(s) sent → each receive completion is parsed (status line +
//! `Content-Length`, then the body is only counted) → when a body is complete
//! the latency is recorded and the next request sent (keep-alive) → on any
//! error the slot is shut down and closed through the ring, and a new
//! connection replaces it.
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{opcode, squeue, types};
use spate_engine::runtime::bufring::BufRing;
use spate_engine::runtime::ring::{Ring, Token, buffer_id, more};
use spate_engine::runtime::slab::Slab;

/// Run phases, shared by the control thread and every client thread.
/// Connections are opened but load mode sends nothing yet, so a server's
/// accept queue is not competing with requests.
pub const PHASE_CONNECT: u8 = 0;
/// Requests flow but are not counted.
pub const PHASE_WARMUP: u8 = 1;
/// Completed requests and bytes are counted.
pub const PHASE_MEASURE: u8 = 2;
/// Threads leave their loops.
pub const PHASE_STOP: u8 = 3;

const K_CONNECT: u8 = 1;
const K_CONNECT_TIMEOUT: u8 = 2;
const K_SEND: u8 = 3;
const K_RECV: u8 = 4;
const K_SHUTDOWN: u8 = 5;
const K_CLOSE: u8 = 6;
const K_TICK: u8 = 7;

/// What the threads do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keep `pipeline` requests outstanding on every connection.
    Load,
    /// Hold the connection; send one request first if `request_first`.
    Idle {
        /// Send one request and read its response before holding.
        request_first: bool,
    },
}

/// What one thread is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Thread index (for source address spreading and pinning).
    pub index: usize,
    /// Server address.
    pub dest: SocketAddrV4,
    /// Source addresses to bind, round robin (empty: let the kernel pick).
    pub sources: Arc<Vec<Ipv4Addr>>,
    /// Connections this thread keeps open.
    pub connections: usize,
    /// One request, bytes on the wire.
    pub request: Arc<Vec<u8>>,
    /// Requests outstanding per connection.
    pub pipeline: usize,
    /// Load or idle.
    pub mode: Mode,
    /// A request with no complete response after this long is an error.
    pub timeout: Duration,
    /// Connect attempts in flight at once.
    pub connect_concurrency: usize,
    /// Provided receive buffers: count (power of two) and size.
    pub recv_bufs: u16,
    /// Size of each receive buffer.
    pub recv_buf_size: u32,
    /// Pin this thread to this CPU.
    pub pin_cpu: Option<usize>,
}

/// State the control thread watches.
#[derive(Debug, Default)]
pub struct Shared {
    /// One of the `PHASE_*` constants.
    pub phase: AtomicU8,
    /// Connections currently established (all threads).
    pub connected: AtomicUsize,
    /// Idle mode: connections whose first response arrived.
    pub idle_ready: AtomicUsize,
}

/// Errors by kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Errors {
    /// Socket/bind/connect failed or timed out.
    pub connect: u64,
    /// ECONNRESET, EPIPE and other receive/send errors.
    pub reset: u64,
    /// The server closed a connection (EOF) the client still wanted.
    pub closed: u64,
    /// Responses with a status outside 2xx.
    pub bad_status: u64,
    /// Requests with no complete response within the timeout.
    pub timeout: u64,
    /// Responses that did not parse (or had no Content-Length).
    pub parse: u64,
}

impl Errors {
    /// Sum of every kind.
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.closed + self.bad_status + self.timeout + self.parse
    }
    fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.reset += o.reset;
        self.closed += o.closed;
        self.bad_status += o.bad_status;
        self.timeout += o.timeout;
        self.parse += o.parse;
    }
}

/// What a thread measured.
#[derive(Debug)]
pub struct Outcome {
    /// Responses completed in the measurement phase.
    pub requests: u64,
    /// Bytes received in the measurement phase.
    pub bytes: u64,
    /// Errors over the whole run (warm-up included).
    pub errors: Errors,
    /// Connections opened successfully (whole run).
    pub connects: u64,
    /// Multishot receives re-armed because the buffer ring ran dry.
    pub nobufs: u64,
    /// Latency of responses completed in the measurement phase, µs.
    pub latency: Histogram<u64>,
}

impl Outcome {
    fn new() -> Self {
        Self {
            requests: 0,
            bytes: 0,
            errors: Errors::default(),
            connects: 0,
            nobufs: 0,
            latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
        }
    }

    /// Fold another thread's outcome into this one.
    pub fn merge(&mut self, o: &Outcome) {
        self.requests += o.requests;
        self.bytes += o.bytes;
        self.errors.add(&o.errors);
        self.connects += o.connects;
        self.nobufs += o.nobufs;
        self.latency.add(&o.latency).expect("same bounds");
    }

    /// An empty outcome to merge into.
    pub fn empty() -> Self {
        Self::new()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Open,
    Closing,
}

/// Per-connection state. Small: 10,000 of these per thread.
#[derive(Debug)]
struct Conn {
    state: State,
    /// Partial response head (only while a head spans receives).
    head: Vec<u8>,
    /// Body bytes still expected; `None` while reading a head.
    body_left: Option<u64>,
    /// Status of the response being read.
    status: u16,
    /// When each outstanding request was queued, oldest first.
    sent_at: VecDeque<Instant>,
    /// Request-stream bytes queued and handed to the kernel.
    queued: u64,
    sent: u64,
    send_in_flight: bool,
    /// Idle mode: the first response arrived.
    ready: bool,
}

impl Conn {
    fn new() -> Self {
        Self {
            state: State::Connecting,
            head: Vec::new(),
            body_left: None,
            status: 0,
            sent_at: VecDeque::new(),
            queued: 0,
            sent: 0,
            send_in_flight: false,
            ready: false,
        }
    }
}

/// The ring and its provided buffers. Field order matters: the ring (which
/// unregisters the buffer group) drops before the buffers' memory.
struct Io {
    ring: Ring,
    bufs: BufRing,
}

struct Client {
    io: Io,
    plan: Plan,
    shared: Arc<Shared>,
    conns: Slab<Conn>,
    dest: libc::sockaddr_in,
    /// `pipeline + 1` copies of the request, so any window of the request
    /// stream up to `pipeline` requests long is one contiguous slice.
    wire: Vec<u8>,
    connect_timeout: types::Timespec,
    tick: types::Timespec,
    connecting: usize,
    next_source: usize,
    retry_after: Option<Instant>,
    out: Outcome,
    measuring: bool,
    /// Load mode: requests may be sent (phase past CONNECT).
    sending: bool,
}

/// Run one client thread to completion (until the phase becomes STOP).
pub fn run(plan: Plan, shared: Arc<Shared>) -> io::Result<Outcome> {
    if let Some(cpu) = plan.pin_cpu {
        pin_to(cpu)?;
    }
    let files = plan.connections.max(1) as u32;
    let ring = Ring::new(4096, files)?;
    let bufs = BufRing::new(&ring, 0, plan.recv_bufs, plan.recv_buf_size)?;
    let dest = sockaddr(plan.dest);
    let req_len = plan.request.len();
    let mut wire = Vec::with_capacity(req_len * (plan.pipeline + 1));
    for _ in 0..=plan.pipeline {
        wire.extend_from_slice(&plan.request);
    }
    let mut c = Client {
        io: Io { ring, bufs },
        conns: Slab::with_capacity(plan.connections),
        dest,
        wire,
        connect_timeout: types::Timespec::new().sec(10),
        tick: types::Timespec::new().nsec(50_000_000),
        connecting: 0,
        next_source: plan.index,
        retry_after: None,
        out: Outcome::new(),
        measuring: false,
        sending: false,
        plan,
        shared,
    };
    c.run()?;
    Ok(c.out)
}

impl Client {
    fn run(&mut self) -> io::Result<()> {
        self.push_tick();
        let mut cqes = Vec::with_capacity(4096);
        let mut last_timeout_check = Instant::now();
        loop {
            let phase = self.shared.phase.load(Ordering::Relaxed);
            if phase == PHASE_STOP {
                break;
            }
            self.measuring = phase == PHASE_MEASURE;
            if !self.sending && phase >= PHASE_WARMUP {
                self.sending = true;
                if self.plan.mode == Mode::Load {
                    self.start_requests();
                }
            }
            self.open_connections();
            self.io.ring.submit_and_wait(1)?;
            self.io.ring.drain_completions(&mut cqes);
            for &(ud, res, flags) in &cqes {
                self.complete(Token(ud), res, flags);
            }
            if self.plan.mode == Mode::Load
                && last_timeout_check.elapsed() >= Duration::from_secs(1)
            {
                last_timeout_check = Instant::now();
                self.check_timeouts();
            }
        }
        Ok(())
    }

    /// Load mode leaves CONNECT: every open connection sends its first requests.
    fn start_requests(&mut self) {
        let slots: Vec<(u32, u32)> = self.conns.slots().collect();
        for (slot, generation) in slots {
            if let Some(conn) = self.conns.get_mut(slot, generation)
                && conn.state == State::Open
            {
                self.queue_requests(slot, generation, self.plan.pipeline);
            }
        }
    }

    fn push_tick(&mut self) {
        let e = opcode::Timeout::new(&self.tick)
            .build()
            .user_data(Token::new(K_TICK, 0, 0).0);
        // SAFETY: `self.tick` lives as long as the ring (same struct).
        unsafe { self.io.ring.push(&e) };
    }

    /// Open connections until this thread has its share (bounded by the
    /// connect concurrency; paused briefly after a failure).
    fn open_connections(&mut self) {
        if let Some(t) = self.retry_after {
            if Instant::now() < t {
                return;
            }
            self.retry_after = None;
        }
        while self.conns.len() < self.plan.connections
            && self.connecting < self.plan.connect_concurrency
        {
            if let Err(e) = self.open_one() {
                self.out.errors.connect += 1;
                if self.out.errors.connect <= 3 {
                    eprintln!("spate-bench: thread {}: connect: {e}", self.plan.index);
                }
                self.retry_after = Some(Instant::now() + Duration::from_millis(100));
                return;
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
        let (slot, generation) = self.conns.insert(Conn::new());
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
                self.conns.remove(token.slot(), token.generation());
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
            self.out.errors.connect += 1;
            if self.out.errors.connect <= 3 {
                eprintln!(
                    "spate-bench: thread {}: connect: {}",
                    self.plan.index,
                    io::Error::from_raw_os_error(-res)
                );
            }
            self.retry_after = Some(Instant::now() + Duration::from_millis(100));
            self.close(slot, generation);
            return;
        }
        conn.state = State::Open;
        self.out.connects += 1;
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
        self.arm_recv(slot, generation);
        match self.plan.mode {
            Mode::Load => {
                if self.sending {
                    self.queue_requests(slot, generation, self.plan.pipeline);
                }
            }
            Mode::Idle {
                request_first: true,
            } => self.queue_requests(slot, generation, 1),
            Mode::Idle {
                request_first: false,
            } => {}
        }
    }

    fn arm_recv(&mut self, slot: u32, generation: u32) {
        let e = opcode::RecvMulti::new(types::Fixed(slot), self.io.bufs.group())
            .build()
            .user_data(Token::new(K_RECV, slot, generation).0);
        // SAFETY: buffers come from the registered buffer ring, which lives
        // as long as the ring.
        unsafe { self.io.ring.push(&e) };
    }

    /// Queue `n` more requests on a connection and send if idle.
    fn queue_requests(&mut self, slot: u32, generation: u32, n: usize) {
        let now = Instant::now();
        let req_len = self.plan.request.len() as u64;
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        for _ in 0..n {
            conn.sent_at.push_back(now);
        }
        conn.queued += n as u64 * req_len;
        if !conn.send_in_flight {
            self.push_send(slot, generation);
        }
    }

    fn push_send(&mut self, slot: u32, generation: u32) {
        let req_len = self.plan.request.len() as u64;
        let window = self.plan.pipeline as u64 * req_len;
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        let start = (conn.sent % req_len) as usize;
        let len = (conn.queued - conn.sent).min(window) as usize;
        conn.send_in_flight = true;
        let e = opcode::Send::new(
            types::Fixed(slot),
            self.wire[start..start + len].as_ptr(),
            len as u32,
        )
        .build()
        .user_data(Token::new(K_SEND, slot, generation).0);
        // SAFETY: `wire` is never modified and lives as long as the ring.
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
            self.out.errors.reset += 1;
            self.close(slot, generation);
            return;
        }
        conn.sent += res as u64;
        if conn.sent < conn.queued {
            self.push_send(slot, generation);
        }
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
            let completed = match bid {
                Some(bid) => {
                    let r = self.consume(slot, generation, bid, res as usize);
                    self.io.bufs.recycle(bid);
                    r
                }
                None => Ok(0),
            };
            match completed {
                Ok(done) => {
                    if done > 0 {
                        self.after_responses(slot, generation, done);
                    }
                    if !armed && self.conns.get_mut(slot, generation).is_some() {
                        self.arm_recv(slot, generation);
                    }
                }
                Err(()) => {
                    self.out.errors.parse += 1;
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
        if res == 0 {
            self.out.errors.closed += 1;
        } else {
            self.out.errors.reset += 1;
        }
        self.close(slot, generation);
    }

    /// Parse received bytes; returns how many responses completed.
    fn consume(&mut self, slot: u32, generation: u32, bid: u16, len: usize) -> Result<usize, ()> {
        let measuring = self.measuring;
        let data = self.io.bufs.get(bid, len);
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return Ok(0);
        };
        if measuring {
            self.out.bytes += len as u64;
        }
        let mut rest = data;
        let mut done = 0;
        while !rest.is_empty() {
            match conn.body_left {
                None => {
                    let (status, body, used) = if conn.head.is_empty() {
                        match parse_head(rest)? {
                            Some(h) => h,
                            None => {
                                conn.head.extend_from_slice(rest);
                                return Ok(done);
                            }
                        }
                    } else {
                        let before = conn.head.len();
                        conn.head.extend_from_slice(rest);
                        match parse_head(&conn.head)? {
                            Some((s, b, used)) => {
                                conn.head.clear();
                                (s, b, used - before)
                            }
                            None => {
                                if conn.head.len() > 64 * 1024 {
                                    return Err(());
                                }
                                return Ok(done);
                            }
                        }
                    };
                    conn.status = status;
                    conn.body_left = Some(body);
                    rest = &rest[used..];
                }
                Some(left) => {
                    let take = (left.min(rest.len() as u64)) as usize;
                    conn.body_left = Some(left - take as u64);
                    rest = &rest[take..];
                }
            }
            if conn.body_left == Some(0) {
                conn.body_left = None;
                let now = Instant::now();
                let Some(t) = conn.sent_at.pop_front() else {
                    // A response nobody asked for.
                    return Err(());
                };
                if !(200..300).contains(&conn.status) {
                    self.out.errors.bad_status += 1;
                }
                if measuring {
                    self.out.requests += 1;
                    self.out
                        .latency
                        .saturating_record(now.duration_since(t).as_micros() as u64);
                }
                done += 1;
            }
        }
        Ok(done)
    }

    fn after_responses(&mut self, slot: u32, generation: u32, done: usize) {
        match self.plan.mode {
            Mode::Load => {
                if self.shared.phase.load(Ordering::Relaxed) != PHASE_STOP {
                    self.queue_requests(slot, generation, done);
                }
            }
            Mode::Idle { .. } => {
                if let Some(conn) = self.conns.get_mut(slot, generation)
                    && !conn.ready
                {
                    conn.ready = true;
                    self.shared.idle_ready.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Shut the connection down and close its slot through the ring; the
    /// slot is freed when the close completes.
    fn close(&mut self, slot: u32, generation: u32) {
        let Some(conn) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if conn.state == State::Closing {
            return;
        }
        if conn.state == State::Open {
            self.shared.connected.fetch_sub(1, Ordering::Relaxed);
            if conn.ready {
                self.shared.idle_ready.fetch_sub(1, Ordering::Relaxed);
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

    fn check_timeouts(&mut self) {
        let now = Instant::now();
        let timeout = self.plan.timeout;
        let mut late = Vec::new();
        let slots: Vec<(u32, u32)> = self.conns.slots().collect();
        for (slot, generation) in slots {
            if let Some(conn) = self.conns.get_mut(slot, generation)
                && conn.state == State::Open
                && let Some(&t) = conn.sent_at.front()
                && now.duration_since(t) > timeout
            {
                late.push((slot, generation));
            }
        }
        for (slot, generation) in late {
            self.out.errors.timeout += 1;
            self.close(slot, generation);
        }
    }
}

/// Parse a response head: `Ok(Some((status, content_length, head_len)))`,
/// `Ok(None)` if incomplete, `Err` if malformed or without Content-Length.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(u16, u64, usize)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let status = resp.code.ok_or(())?;
            let mut len = None;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    let s = std::str::from_utf8(h.value).map_err(|_| ())?;
                    len = Some(s.trim().parse::<u64>().map_err(|_| ())?);
                }
            }
            // 204/304 carry no body whatever the headers say.
            let len = if status == 204 || status == 304 {
                0
            } else {
                len.ok_or(())?
            };
            Ok(Some((status, len, n)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Open a TCP socket bound to `src` (see [`new_socket`]), move it into the
/// ring's direct-descriptor table at `slot` (the process fd is closed at
/// once, so no fd is held per connection) and queue a `Connect` to `dest`
/// linked to a `LinkTimeout` of `timeout`. The completions carry `connect`
/// and `link_timeout`.
///
/// # Safety
/// `dest` and `timeout` must stay valid and unmoved until both completions
/// have arrived (keep them in the struct that owns the ring).
pub(crate) unsafe fn connect_fixed(
    ring: &mut Ring,
    slot: u32,
    src: Option<Ipv4Addr>,
    dest: &libc::sockaddr_in,
    timeout: &types::Timespec,
    connect: Token,
    link_timeout: Token,
) -> io::Result<()> {
    let fd = new_socket(src)?;
    let moved = ring.submitter().register_files_update(slot, &[fd]);
    // SAFETY: `fd` is ours; the ring's table now holds its own reference
    // (or the update failed), so the process fd is closed either way.
    unsafe { libc::close(fd) };
    moved?;
    let c = opcode::Connect::new(
        types::Fixed(slot),
        std::ptr::from_ref(dest).cast(),
        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
    )
    .build()
    .flags(squeue::Flags::IO_LINK)
    .user_data(connect.0);
    let t = opcode::LinkTimeout::new(timeout)
        .build()
        .user_data(link_timeout.0);
    // SAFETY: the caller keeps `dest` and `timeout` alive (contract above).
    unsafe {
        ring.push(&c);
        ring.push(&t);
    }
    Ok(())
}

/// Shut a direct-descriptor connection down and close its slot through the
/// ring (`Shutdown` hard-linked to `Close`); the slot may be reused once the
/// `close` completion arrived.
pub(crate) fn close_fixed(ring: &mut Ring, slot: u32, shutdown: Token, close: Token) {
    let shut = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_RDWR)
        .build()
        .flags(squeue::Flags::IO_HARDLINK)
        .user_data(shutdown.0);
    let close = opcode::Close::new(types::Fixed(slot))
        .build()
        .user_data(close.0);
    // SAFETY: neither entry points to memory.
    unsafe {
        ring.push(&shut);
        ring.push(&close);
    }
}

pub(crate) fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A TCP socket (blocking: the ring does the waiting), bound to `src` with
/// the port chosen at connect time.
pub(crate) fn new_socket(src: Option<Ipv4Addr>) -> io::Result<i32> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fail = |fd: i32| {
        let e = io::Error::last_os_error();
        // SAFETY: fd is ours and not used afterwards.
        unsafe { libc::close(fd) };
        Err(e)
    };
    let one: libc::c_int = 1;
    for (level, name) in [
        (libc::IPPROTO_TCP, libc::TCP_NODELAY),
        (libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT),
    ] {
        // SAFETY: fd is valid; `one` is a c_int the call reads.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&raw const one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return fail(fd);
        }
    }
    if let Some(src) = src {
        let sa = sockaddr(SocketAddrV4::new(src, 0));
        // SAFETY: fd is valid; `sa` is a sockaddr_in of the length given.
        let r = unsafe {
            libc::bind(
                fd,
                (&raw const sa).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return fail(fd);
        }
    }
    Ok(fd)
}

/// Pin the calling thread to one CPU.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside `set` (cpu is checked by the kernel call).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 = this thread; `set` is a valid cpu_set_t.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parses_with_length() {
        let h = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX: y\r\n\r\nhello";
        assert_eq!(parse_head(h), Ok(Some((200, 12, h.len() - 5))));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le"), Ok(None));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n"), Err(()));
        assert_eq!(
            parse_head(b"HTTP/1.1 304 Not Modified\r\n\r\n"),
            Ok(Some((304, 0, 29)))
        );
    }
}
