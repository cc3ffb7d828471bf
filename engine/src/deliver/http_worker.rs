//! The HTTP worker: one per core, one io_uring each.
//!
//! Follow one request: the multishot accept on this worker's SO_REUSEPORT
//! listener completes with a direct descriptor (a slot in the ring's file
//! table, no process fd) → a [`Conn`] goes into the slab and a multishot
//! receive is armed on it with buffer selection → each receive completion
//! names a provided buffer; its bytes go straight into the connection's
//! [`ServerSession`] and the buffer goes back to the ring → the session yields
//! a [`Request`] → the path is checked, and the file is taken from the
//! worker's [`FileCache`] or opened through the ring (`openat2` beneath the
//! root) → [`response::for_entity`] writes the head → head and file range go
//! out by one `sendmsg` (head + the file's shared mapping), by `send_zc`, or
//! by `splice` file → pipe → socket, per `http.file_send` → when the last
//! byte is accepted by the kernel, `response_done` lets the next pipelined
//! request out, or the connection closes.
//!
//! Timers: one ring timeout per tick; each tick checks every connection's
//! deadline (head, idle, send stall, linger). 20,000 connections cost a few
//! microseconds per tick.
use std::cell::Cell;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant, SystemTime};

use io_uring::{opcode, squeue, types};
use spate_protocols::http::{self, Method, Output, Request, ServerSession, response};

use super::static_files::{FileCache, OpenFile, Opened, Refusal, relative_path};
use crate::config::{Config, FileSend};
use crate::net::nofile_limit;
use crate::runtime::bufring::BufRing;
use crate::runtime::mesh::MeshEndpoint;
use crate::runtime::ring::{self, Ring, Token};
use crate::runtime::slab::Slab;

mod access;
mod control_msgs;
mod exec_sources;
mod http_sources;
mod json_sources;
mod live_conn;
mod live_routes;
mod loop_stats;
mod publisher;
mod reload;
mod sendfile;
mod sources;
mod trigger_hooks;
mod udp_push;

pub(crate) use control_msgs::parse_session_id;

/// Messages a worker receives over the mesh.
#[derive(Debug)]
pub enum WorkerMsg {
    /// Stop accepting, finish in-flight responses, exit.
    Shutdown,
    /// Live stream news from the core that publishes it.
    Live(crate::live::LiveMsg),
    /// An on-demand stream (`ts-exec:` source) has viewers or requests on
    /// the sending core: its owner keeps (or starts) the command.
    SourceWanted(Arc<str>),
    /// From the control plane (API, reload).
    Control(crate::control::ControlRequest),
}

/// Everything a worker thread needs, built by the control thread.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Worker index.
    pub index: usize,
    /// This worker's SO_REUSEPORT listener.
    pub listener: socket2::Socket,
    /// The mesh endpoint.
    pub mesh: MeshEndpoint<WorkerMsg>,
    /// Configuration.
    pub config: Arc<Config>,
    /// The static root, opened as a directory.
    pub root: Arc<File>,
    /// This worker's RTMP listener, when RTMP is enabled.
    pub rtmp_listener: Option<socket2::Socket>,
    /// Who publishes what (shared by all workers, touched per publish).
    pub registry: Arc<crate::live::Registry>,
    /// This worker's end of the `spate-exec` thread (runs `ts-exec:`
    /// commands), when any stream has such a source.
    pub exec: Option<crate::ingest::exec::WorkerExec>,
    /// This worker's end of the trigger runner, when any trigger is
    /// configured.
    pub triggers: Option<crate::control::triggers::WorkerTriggers>,
}

/// Counters a worker keeps: plain `u64`s on its own loop, sent to the
/// control plane in snapshots (`/metrics`, `/api/totals`) and merged for the
/// exit summary. A new counter goes into [`Counters::add`] too (and into
/// `control::metrics` to be exported).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// Requests answered.
    pub requests: u64,
    /// Requests rejected as malformed / too large / bad method.
    pub rejected: u64,
    /// Connections closed for a stalled request head.
    pub head_timeouts: u64,
    /// Connections closed for a stalled send.
    pub send_stalls: u64,
    /// Accepts refused because the direct-descriptor table was full.
    pub table_full: u64,
    /// Body bytes sent.
    pub body_bytes: u64,
    /// Live viewers moved forward to a keyframe because they lagged.
    pub viewer_skips: u64,
    /// Live viewers dropped because they fell out of the window.
    pub viewers_dropped: u64,
    /// RTMP connections closed for a protocol error.
    pub rtmp_errors: u64,
    /// Live items a full mesh queue could not take (that core's viewers
    /// skip ahead).
    pub mesh_drops: u64,
    /// Publishes refused (unknown name, busy, bad name).
    pub publish_refused: u64,
    /// Timestamp discontinuities smoothed over.
    pub rebases: u64,
    /// HLS/DASH segments packaged (on the stream's own core).
    pub segments: u64,
    /// Segmented requests (playlists, segments) answered.
    pub segmented_requests: u64,
    /// Stream sources (TS over UDP, ...): bad input and failures.
    pub source_errors: u64,
    /// UDP pushes: sockets that could not be opened, failed sends.
    pub push_errors: u64,
    /// Plays refused by the access rules (missing, bad or expired play
    /// token).
    pub access_denied: u64,
    /// Connections accepted on the RTMP listener (also in `accepted`).
    pub rtmp_accepted: u64,
    /// Sessions closed by the API (`DELETE /api/sessions/...`, kick).
    pub kicked: u64,
    /// Bytes received on live connections (RTMP publishers and players).
    pub live_bytes_in: u64,
    /// Bytes sent on live connections (HTTP-FLV/TS viewers, RTMP).
    pub live_bytes_out: u64,
    /// Sends submitted on live connections (one `sendmsg` each).
    pub live_sends: u64,
}

impl Counters {
    /// Add another worker's counters.
    pub fn add(&mut self, c: &Counters) {
        self.accepted += c.accepted;
        self.closed += c.closed;
        self.requests += c.requests;
        self.rejected += c.rejected;
        self.head_timeouts += c.head_timeouts;
        self.send_stalls += c.send_stalls;
        self.table_full += c.table_full;
        self.body_bytes += c.body_bytes;
        self.viewer_skips += c.viewer_skips;
        self.viewers_dropped += c.viewers_dropped;
        self.rtmp_errors += c.rtmp_errors;
        self.mesh_drops += c.mesh_drops;
        self.publish_refused += c.publish_refused;
        self.rebases += c.rebases;
        self.segments += c.segments;
        self.segmented_requests += c.segmented_requests;
        self.source_errors += c.source_errors;
        self.push_errors += c.push_errors;
        self.rtmp_accepted += c.rtmp_accepted;
        self.kicked += c.kicked;
        self.live_bytes_in += c.live_bytes_in;
        self.live_bytes_out += c.live_bytes_out;
        self.live_sends += c.live_sends;
        self.access_denied += c.access_denied;
    }
}

const ACCEPT: u8 = 1;
const RECV: u8 = 2;
const SEND: u8 = 3;
const SEND_ZC: u8 = 4;
const SPLICE_IN: u8 = 5;
const SPLICE_OUT: u8 = 6;
const OPEN: u8 = 7;
const CLOSE: u8 = 8;
const TICK: u8 = 9;
const WAKE: u8 = 10;
const SHUT_WR: u8 = 11;
const LIVE_SEND: u8 = 12;
const SOCKOPT: u8 = 13;

const TICK_EVERY: Duration = Duration::from_millis(200);
const LINGER: Duration = Duration::from_secs(2);
/// Largest piece of a body handed to one send / splice.
const CHUNK: u64 = 1 << 20;
const PIPE_SIZE: i32 = 1 << 20;
const MAX_PIPES: usize = 1024;
/// `file_send = "sendfile"`: bodies shorter than this go by `send` (one
/// sendmsg of head + body beats a send and a sendfile).
const SENDFILE_MIN: u64 = 16 * 1024;
/// Connections closed per loop turn during shutdown.
const SHUTDOWN_CLOSE_BATCH: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests (maybe serving one).
    Open,
    /// Write side shut after a last response; draining input until EOF.
    Lingering,
    /// Close submitted; waiting for in-flight operations to come back.
    Closing,
}

/// One connection. Kept small: an idle keep-alive connection is this struct
/// in the slab and nothing else (no receive buffer, no response state).
#[derive(Debug)]
struct Conn {
    fd: u32,
    phase: Phase,
    recv_armed: bool,
    /// Operations in flight other than the multishot receive.
    ops: u16,
    session: ServerSession,
    /// Send-stall or linger deadline.
    deadline: Option<Instant>,
    work: Option<Box<Work>>,
    /// RTMP connections and live viewers (HTTP-FLV included).
    live: Option<Box<live_conn::LiveConn>>,
    /// The peer's address (for logs, sessions, triggers, access rules).
    peer: PeerAddr,
    /// When the connection was accepted: seconds since the worker started
    /// (kept to 4 bytes: an idle connection is this struct and nothing
    /// else).
    since_s: u32,
}

/// A peer address in 18 bytes (IPv4 as IPv4-mapped IPv6) instead of
/// `SocketAddr`'s 32.
#[derive(Debug, Clone, Copy)]
struct PeerAddr {
    ip: [u8; 16],
    port: u16,
}

impl PeerAddr {
    fn new(a: std::net::SocketAddr) -> Self {
        let ip = match a.ip() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            std::net::IpAddr::V6(v6) => v6,
        };
        Self {
            ip: ip.octets(),
            port: a.port(),
        }
    }

    fn get(self) -> std::net::SocketAddr {
        let v6 = std::net::Ipv6Addr::from(self.ip);
        match v6.to_ipv4_mapped() {
            Some(v4) => std::net::SocketAddr::from((v4, self.port)),
            None => std::net::SocketAddr::from((v6, self.port)),
        }
    }
}

/// Accepts kept in flight per listener. Single-shot accepts (each with its
/// own address buffer) rather than one multishot accept, so every
/// connection's peer address is known: a direct descriptor cannot be asked
/// with `getpeername`.
const ACCEPTS_PER_LISTENER: usize = 8;

/// The address buffer of one in-flight accept.
#[derive(Debug)]
struct AcceptSlot {
    armed: bool,
    addr: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl AcceptSlot {
    fn new() -> Self {
        Self {
            armed: false,
            // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
            addr: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }

    /// The address the kernel wrote (unspecified if it is not IPv4/IPv6).
    fn peer(&self) -> std::net::SocketAddr {
        use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
        match i32::from(self.addr.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in (family AF_INET)
                // into this storage, which is large and aligned enough.
                let a = unsafe { &*(&self.addr as *const _ as *const libc::sockaddr_in) };
                SocketAddr::from((
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                ))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, a sockaddr_in6 for AF_INET6.
                let a = unsafe { &*(&self.addr as *const _ as *const libc::sockaddr_in6) };
                SocketAddr::from((
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                ))
            }
            _ => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

#[derive(Debug)]
enum Work {
    Opening {
        req: Request,
        path: CString,
    },
    Sending(Transfer),
    /// Parked until an on-demand stream is ready (`exec_sources`).
    Waiting(Request),
}

/// A response on its way out. Boxed, so the iovecs and msghdr the kernel
/// reads stay put while an operation is in flight.
#[derive(Debug)]
struct Transfer {
    head: Vec<u8>,
    head_off: usize,
    body: Option<BodySrc>,
    pos: u64,
    end: u64,
    status: u16,
    /// Close (lingering) after this response whatever the session says.
    last: bool,
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
    pipe: Option<Pipe>,
    /// Bytes in the pipe (signed: completions of a linked pair may be seen
    /// in either order; only read when no splice is in flight).
    piped: i64,
    zc_notifs: u16,
    /// `sendfile` mode could not get a regular fd: this body goes by send.
    no_sendfile: bool,
    log: Option<Box<str>>,
}

/// Where a response body comes from. Each holds what keeps its bytes alive
/// and unchanged until the transfer is dropped.
#[derive(Debug)]
enum BodySrc {
    /// A static file (shared mapping; splice reads the file).
    File(Rc<OpenFile>),
    /// A range of the segment store (memfd mapping; splice reads the memfd).
    Segment(crate::live::segment_store::SegmentBytes),
    /// Shared bytes in memory (playlists, MPDs, init segments): always sent
    /// from memory.
    Bytes(bytes::Bytes),
}

impl BodySrc {
    /// The body's first byte in this process's memory, if it has bytes.
    fn ptr(&self) -> Option<*const u8> {
        match self {
            BodySrc::File(f) => f.map.as_ref().map(|m| m.as_ptr()),
            BodySrc::Segment(s) => (!s.is_empty()).then(|| s.as_ptr()),
            BodySrc::Bytes(b) => (!b.is_empty()).then(|| b.as_ptr()),
        }
    }

    /// A descriptor to splice the body from and the file offset of its
    /// first byte.
    fn splice_src(&self) -> Option<(RawFd, u64)> {
        match self {
            BodySrc::File(f) => Some((f.file.as_raw_fd(), 0)),
            BodySrc::Segment(s) => Some(s.file_range()),
            BodySrc::Bytes(_) => None,
        }
    }
}

#[derive(Debug)]
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Capacity in bytes: a splice into the pipe never asks for more, so it
    /// cannot wait on the pipe being drained.
    cap: u32,
}

impl Pipe {
    fn new() -> std::io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds is a valid 2-int array; the result is checked.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 just returned two fresh descriptors we own.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: plain fcntls on a descriptor we own; a failed resize only
        // leaves the default capacity, which F_GETPIPE_SZ then reports.
        let cap = unsafe {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
            libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        if cap <= 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            r,
            w,
            cap: cap as u32,
        })
    }
}

/// Run a worker until shutdown. Sends `Ok(())` on `ready` once the ring is
/// up and accepting, or the error that stopped it.
pub fn run(setup: WorkerSetup, ready: SyncSender<Result<(), String>>) -> Counters {
    let files = effective_table_size(setup.config.http.max_connections_per_worker);
    let ring = match Ring::new(4096, files) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "worker {}: cannot set up io_uring with {files} direct descriptors: {e}",
                setup.index
            )));
            return Counters::default();
        }
    };
    let bufs = match BufRing::new(&ring, 0, 2048, 4096) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "worker {}: cannot register provided buffers: {e}",
                setup.index
            )));
            return Counters::default();
        }
    };
    let features = ring.features();
    let mut file_send = setup.config.http.file_send;
    if file_send == FileSend::SendZc && !features.send_zc {
        if setup.index == 0 {
            tracing::warn!("kernel lacks IORING_OP_SEND_ZC: file_send = \"send\" instead");
        }
        file_send = FileSend::Send;
    }
    if file_send == FileSend::Splice && !features.splice {
        if setup.index == 0 {
            tracing::warn!("kernel lacks IORING_OP_SPLICE: file_send = \"send\" instead");
        }
        file_send = FileSend::Send;
    }
    if file_send == FileSend::Sendfile && !features.fd_install {
        if setup.index == 0 {
            tracing::warn!(
                "kernel lacks IORING_OP_FIXED_FD_INSTALL (Linux >= 6.8): file_send = \"send\" instead"
            );
        }
        file_send = FileSend::Send;
    }
    if !features.openat2 {
        let _ = ready.send(Err(
            "kernel lacks IORING_OP_OPENAT2 (Linux >= 5.6 needed, 6.1 supported)".into(),
        ));
        return Counters::default();
    }
    let http = &setup.config.http;
    let limits = http::Limits {
        max_head_bytes: http.max_head_bytes,
        max_headers: http.max_headers,
        max_body_bytes: 0,
        allow_write_methods: false,
        head_timeout: http.head_timeout(),
        idle_timeout: http.idle_timeout(),
    };
    let cache_control: Option<&'static str> = if http.cache_control.is_empty() {
        None
    } else {
        Some(Box::leak(http.cache_control.clone().into_boxed_str()))
    };
    let rtmp_cfg = &setup.config.rtmp;
    let rtmp_limits = spate_protocols::rtmp::Limits {
        max_message_size: rtmp_cfg.max_message_bytes,
        max_buffered_bytes: rtmp_cfg.max_message_bytes as usize,
        out_chunk_size: rtmp_cfg.chunk_size,
        setup_timeout: Duration::from_secs(rtmp_cfg.setup_timeout),
        idle_timeout: Duration::from_secs(rtmp_cfg.publish_idle_timeout),
        ..Default::default()
    };
    if let Err(e) = rtmp_limits.validate() {
        let _ = ready.send(Err(format!("rtmp: {e}")));
        return Counters::default();
    }
    let mut w = Worker {
        index: setup.index,
        rtmp_limits,
        rtmp_chunk_size: rtmp_cfg.chunk_size,
        registry: setup.registry,
        live: crate::live::LiveCore::default(),
        graced: Vec::new(),
        wake_mask: 0,
        viewer_sndbuf: Box::new(
            setup.config.live.viewer_send_buffer.min(i32::MAX as u32) as libc::c_int
        ),
        sockopt_warned: false,
        pending_closes: Vec::new(),
        dirty_streams: Vec::new(),
        deferred_streams: Vec::new(),
        bufs,
        conns: Slab::with_capacity(files as usize),
        cache: FileCache::new(Duration::from_secs(http.open_file_cache_valid), 4096),
        pipes: Vec::new(),
        pipes_out: 0,
        sys_fds: sendfile::SysFds::new(
            files,
            if file_send == FileSend::Sendfile {
                sendfile::SysFds::budget(http.sendfile_descriptors, setup.config.worker_count())
            } else {
                0
            },
        ),
        limits,
        file_send,
        send_timeout: http.send_timeout(),
        shutdown_timeout: Duration::from_secs(setup.config.server.shutdown_timeout),
        cache_control,
        access_log: http.access_log,
        listeners: [Some(setup.listener), setup.rtmp_listener],
        root: setup.root,
        mesh: setup.mesh,
        sources: sources::sources_for(&setup.config, setup.index, setup.config.worker_count()),
        source_timeout: Duration::from_secs_f64(setup.config.live.source_timeout),
        http: http_sources::pull_sources_for(
            &setup.config,
            setup.index,
            setup.config.worker_count(),
        ),
        exec: Box::new(exec_sources::ExecSources::new(
            &setup.config,
            setup.index,
            setup.config.worker_count(),
            setup.exec,
        )),
        push_rules: setup
            .config
            .pushes
            .iter()
            .filter_map(|p| {
                crate::deliver::push::PushTarget::parse(&p.target)
                    .ok()
                    .map(|t| (p.stream.clone(), p.target.clone(), t))
            })
            .collect(),
        pushes: Vec::new(),
        config: setup.config.clone(),
        trig: Box::new(trigger_hooks::TriggerHooks::new(
            setup.triggers,
            &setup.config,
        )),
        open_how: Box::new(
            types::OpenHow::new()
                .flags((libc::O_RDONLY | libc::O_CLOEXEC) as u64)
                .resolve(libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS),
        ),
        tick: Box::new(types::Timespec::from(TICK_EVERY)),
        wake_buf: Box::new(0),
        accepts: Box::new(std::array::from_fn(|_| {
            std::array::from_fn(|_| AcceptSlot::new())
        })),
        accept_retry: false,
        shutdown_at: None,
        epoch: Instant::now(),
        now: Cell::new(Instant::now()),
        counters: Counters::default(),
        access: Box::new(crate::control::access::AccessRules::from_config(
            &setup.config,
        )),
        json_sources: json_sources::SourceUrls::from_config(&setup.config),
        loop_stats: loop_stats::LoopStats::new(Instant::now()),
        ring,
    };
    w.rearm_accepts();
    w.arm_tick();
    w.arm_wake();
    w.open_sources();
    let _ = ready.send(Ok(()));
    w.run_loop();
    w.counters
}

/// FNV-1a, 64 bits: which worker owns a source or a push, and validators.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn effective_table_size(wanted: u32) -> u32 {
    wanted.min(nofile_limit().min(u32::MAX as u64) as u32)
}

struct Worker {
    // Field order matters for drop: the ring (which unregisters the buffer
    // group and holds file references) goes first, then the buffers.
    ring: Ring,
    bufs: BufRing,
    index: usize,
    conns: Slab<Conn>,
    cache: FileCache,
    pipes: Vec<Pipe>,
    pipes_out: usize,
    /// `file_send = "sendfile"`: connections' installed regular fds.
    sys_fds: sendfile::SysFds,
    limits: http::Limits,
    file_send: FileSend,
    send_timeout: Duration,
    shutdown_timeout: Duration,
    cache_control: Option<&'static str>,
    access_log: bool,
    /// HTTP (0) and RTMP (1) listeners.
    listeners: [Option<socket2::Socket>; 2],
    root: Arc<File>,
    rtmp_limits: spate_protocols::rtmp::Limits,
    rtmp_chunk_size: u32,
    registry: Arc<crate::live::Registry>,
    live: crate::live::LiveCore,
    /// Streams whose publisher left from this core: (name, id, grace end).
    graced: Vec<(Arc<str>, crate::live::StreamId, Instant)>,
    /// Workers to wake at the end of this loop turn (mesh messages queued).
    wake_mask: u64,
    /// SO_SNDBUF value for live viewers (the ring reads it from here).
    viewer_sndbuf: Box<libc::c_int>,
    sockopt_warned: bool,
    /// Connections to close at shutdown, a batch per loop turn.
    pending_closes: Vec<(u32, u32)>,
    /// Streams that got items this loop turn (their viewers are pumped at
    /// the end of it).
    dirty_streams: Vec<crate::live::StreamId>,
    /// Streams with new items held back by `[live] viewer_coalesce_ms`, and
    /// when their viewers are due.
    deferred_streams: Vec<(crate::live::StreamId, Instant)>,
    mesh: MeshEndpoint<WorkerMsg>,
    /// Stream sources this worker runs (TS over UDP).
    sources: Vec<sources::Source>,
    /// `[live] source_timeout`.
    source_timeout: Duration,
    /// `http://` pull sources this worker runs.
    http: Vec<http_sources::PullSource>,
    /// `ts-exec:` sources this worker runs, on-demand streams, parked
    /// requests.
    exec: Box<exec_sources::ExecSources>,
    /// The configuration in force (replaced by a reload).
    config: Arc<Config>,
    /// `[[push]]` rules: (stream pattern, target URL, parsed target).
    push_rules: Vec<(String, String, crate::deliver::push::PushTarget)>,
    /// Pushes running on this core.
    pushes: Vec<udp_push::Push>,
    /// Triggers: the runner's end, blocking calls waiting for answers.
    trig: Box<trigger_hooks::TriggerHooks>,
    open_how: Box<types::OpenHow>,
    tick: Box<types::Timespec>,
    wake_buf: Box<u64>,
    /// In-flight accepts: `ACCEPTS_PER_LISTENER` per listener (HTTP, RTMP).
    accepts: Box<[[AcceptSlot; ACCEPTS_PER_LISTENER]; 2]>,
    accept_retry: bool,
    shutdown_at: Option<Instant>,
    /// When this worker started (connections' `since_s` count from it).
    epoch: Instant,
    now: Cell<Instant>,
    counters: Counters,
    /// Publish keys and play tokens (`[access]`, rebuilt on reload).
    access: Box<crate::control::access::AccessRules>,
    /// What `/json_<stream>.js` URLs are made of.
    json_sources: json_sources::SourceUrls,
    /// Busy versus waiting, per loop turn.
    loop_stats: loop_stats::LoopStats,
}

impl Worker {
    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every entry built in this module points only at memory
        // owned by the worker (boxed timespec, eventfd buffer, OpenHow, the
        // boxed address buffers of the accepts, the
        // boxed read buffer of each ts-exec source, the boxed address,
        // request and receive buffer of each http:// source), by a
        // connection's boxed Work (paths, heads, iovecs, msghdr) or by a
        // file mapping held through an Rc in that Work. None of these is
        // freed or moved before the operation's completion is processed:
        // Work is only dropped when the connection has no op in flight.
        unsafe { self.ring.push(&e) }
    }

    fn conn_id(&self, slot: u32, generation: u32) -> String {
        format!("w{}/c{}.{}", self.index, slot, generation)
    }

    /// A connection's peer address and when it was accepted.
    fn conn_peer(&self, slot: u32, generation: u32) -> Option<(std::net::SocketAddr, Instant)> {
        self.conns.get(slot, generation).map(|c| {
            (
                c.peer.get(),
                self.epoch + Duration::from_secs(u64::from(c.since_s)),
            )
        })
    }

    /// Arm accept `k` of listener `which` (0 HTTP, 1 RTMP): into a direct
    /// descriptor, with the peer's address written into the slot's buffer.
    fn arm_accept(&mut self, which: usize, k: usize) {
        let Some(l) = &self.listeners[which] else {
            return;
        };
        let fd = l.as_raw_fd();
        let a = &mut self.accepts[which][k];
        a.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        a.armed = true;
        let e = opcode::Accept::new(
            types::Fd(fd),
            (&mut a.addr as *mut libc::sockaddr_storage).cast(),
            &mut a.len,
        )
        .file_index(Some(types::DestinationSlot::auto_target()))
        .build()
        .user_data(Token::new(ACCEPT, (which * ACCEPTS_PER_LISTENER + k) as u32, 0).0);
        self.push(e);
    }

    fn rearm_accepts(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        for which in 0..2 {
            for k in 0..ACCEPTS_PER_LISTENER {
                if !self.accepts[which][k].armed {
                    self.arm_accept(which, k);
                }
            }
        }
    }

    fn arm_tick(&mut self) {
        let e = opcode::Timeout::new(&*self.tick)
            .build()
            .user_data(Token::new(TICK, 0, 0).0);
        self.push(e);
    }

    fn arm_wake(&mut self) {
        let e = opcode::Read::new(
            types::Fd(self.mesh.eventfd()),
            (&mut *self.wake_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(Token::new(WAKE, 0, 0).0);
        self.push(e);
    }

    fn run_loop(&mut self) {
        let mut cqes = Vec::with_capacity(1024);
        let mut woke = Instant::now();
        let mut waited = Duration::ZERO;
        loop {
            let turn_end = Instant::now();
            self.loop_stats.turn(waited, turn_end - woke, turn_end);
            let due = match (self.next_push_due(), self.next_pump_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let wait = due.map(|t| t.saturating_duration_since(turn_end));
            if let Err(e) = self.ring.submit_and_wait_timeout(1, wait) {
                tracing::error!("worker {}: io_uring wait failed: {e}", self.index);
                return;
            }
            self.ring.drain_completions(&mut cqes);
            woke = Instant::now();
            waited = woke - turn_end;
            self.now.set(woke);
            for &(ud, res, flags) in &cqes {
                self.complete(Token(ud), res, flags);
            }
            self.pump_dirty_streams();
            if self.exec.has_waiters() {
                self.serve_demand_waiters();
            }
            if !self.pushes.is_empty() {
                self.pushes_send_due();
            }
            self.flush_wakes();
            for _ in 0..SHUTDOWN_CLOSE_BATCH {
                let Some((slot, generation)) = self.pending_closes.pop() else {
                    break;
                };
                self.close(slot, generation);
            }
            if let Some(at) = self.shutdown_at {
                if self.conns.is_empty() {
                    tracing::debug!("worker {}: drained, exiting", self.index);
                    return;
                }
                if self.now.get() >= at + Duration::from_secs(2) {
                    tracing::warn!(
                        "worker {}: {} connections still busy after the shutdown deadline; leaving them",
                        self.index,
                        self.conns.len()
                    );
                    return;
                }
            }
        }
    }

    fn complete(&mut self, t: Token, res: i32, flags: u32) {
        tracing::trace!(
            "worker {}: completion kind {} slot {} res {res} flags {flags:#x}",
            self.index,
            t.kind(),
            t.slot()
        );
        match t.kind() {
            ACCEPT => self.on_accept(t.slot() as usize, res),
            TICK => {
                self.on_tick();
                self.arm_tick();
            }
            WAKE => {
                let mut msgs = Vec::new();
                self.mesh.drain(|_, m| msgs.push(m));
                for m in msgs {
                    match m {
                        WorkerMsg::Shutdown => self.begin_shutdown(),
                        WorkerMsg::Live(msg) => self.on_live_msg(msg),
                        WorkerMsg::SourceWanted(name) => self.on_source_wanted(&name),
                        WorkerMsg::Control(req) => self.on_control(req),
                    }
                }
                self.drain_exec_events();
                self.drain_trigger_events();
                self.arm_wake();
            }
            CLOSE => {}
            SOCKOPT => {
                if res < 0 && !self.sockopt_warned {
                    self.sockopt_warned = true;
                    tracing::warn!(
                        "worker {}: cannot set SO_SNDBUF on a viewer socket through the ring ({}); live viewers keep kernel autotuned buffers",
                        self.index,
                        std::io::Error::from_raw_os_error(-res)
                    );
                }
            }
            RECV => self.on_recv(t, res, flags),
            SEND
            | SEND_ZC
            | SPLICE_IN
            | SPLICE_OUT
            | OPEN
            | SHUT_WR
            | sendfile::FD_INSTALL
            | sendfile::POLL_OUT => self.on_op(t, res, flags),
            LIVE_SEND => self.on_live_send(t, res),
            sources::SRC_RECV => self.on_source_recv(t, res, flags),
            exec_sources::EXEC_READ => self.on_exec_read(t, res),
            http_sources::HTTP_SRC => self.on_http_src(t, res),
            udp_push::PUSH_SEND => self.on_push_send(t, res),
            k => tracing::error!("worker {}: completion of unknown kind {k}", self.index),
        }
    }

    fn on_accept(&mut self, slot: usize, res: i32) {
        let (which, k) = (
            (slot / ACCEPTS_PER_LISTENER).min(1),
            slot % ACCEPTS_PER_LISTENER,
        );
        self.accepts[which][k].armed = false;
        if res < 0 {
            let err = -res;
            if err == libc::ENFILE || err == libc::EMFILE {
                self.counters.table_full += 1;
                if self.counters.table_full == 1 || self.counters.table_full.is_power_of_two() {
                    tracing::warn!(
                        "worker {}: direct-descriptor table full ({} connections); accepting paused until one closes",
                        self.index,
                        self.conns.len()
                    );
                }
                return;
            }
            if err != libc::ECANCELED && self.shutdown_at.is_none() {
                // Retried on the next tick, so a persistent error cannot spin.
                tracing::warn!(
                    "worker {}: accept failed: {}; retrying",
                    self.index,
                    std::io::Error::from_raw_os_error(err)
                );
                self.accept_retry = true;
            }
            return;
        }
        let peer = self.accepts[which][k].peer();
        if self.shutdown_at.is_none() {
            self.arm_accept(which, k);
        }
        let fd = res as u32;
        self.counters.accepted += 1;
        if which == 1 {
            self.counters.rtmp_accepted += 1;
        }
        if self.shutdown_at.is_some() {
            self.push(
                opcode::Close::new(types::Fixed(fd))
                    .build()
                    .user_data(Token::new(CLOSE, 0, 0).0),
            );
            return;
        }
        let now = self.now.get();
        let (slot, generation) = self.conns.insert(Conn {
            fd,
            phase: Phase::Open,
            recv_armed: false,
            ops: 0,
            session: ServerSession::new(now, &self.limits),
            deadline: None,
            work: None,
            live: (which == 1).then(|| live_conn::LiveConn::rtmp(now, &self.rtmp_limits)),
            peer: PeerAddr::new(peer),
            since_s: now.saturating_duration_since(self.epoch).as_secs() as u32,
        });
        self.arm_recv(slot, generation);
    }

    fn arm_recv(&mut self, slot: u32, generation: u32) {
        let bgid = self.bufs.group();
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        c.recv_armed = true;
        let e = opcode::RecvMulti::new(types::Fixed(c.fd), bgid)
            .build()
            .user_data(Token::new(RECV, slot, generation).0);
        self.push(e);
    }

    fn on_recv(&mut self, t: Token, res: i32, flags: u32) {
        let (slot, generation) = (t.slot(), t.generation());
        let bid = ring::buffer_id(flags);
        let more = ring::more(flags);
        let now = self.now.get();
        let Some(c) = self.conns.get_mut(slot, generation) else {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            return;
        };
        if !more {
            c.recv_armed = false;
        }
        if res > 0 {
            let b = bid.expect("a receive with data names its buffer");
            if c.phase == Phase::Open
                && let Some(l) = c.live.as_deref_mut()
            {
                let data = self.bufs.get(b, res as usize);
                l.bytes_in += res as u64;
                self.counters.live_bytes_in += res as u64;
                l.input(now, data);
                self.bufs.recycle(b);
                self.live_drive(slot, generation);
                self.rearm_recv_if_needed(slot, generation);
                return;
            }
            if c.phase == Phase::Open {
                let data = self.bufs.get(b, res as usize);
                c.session.handle_input(now, data, &self.limits);
            }
            self.bufs.recycle(b);
            if c.phase == Phase::Open {
                self.drive(slot, generation);
            }
            self.rearm_recv_if_needed(slot, generation);
            return;
        }
        if let Some(b) = bid {
            self.bufs.recycle(b);
        }
        if res == 0 {
            // Peer closed its side.
            match c.phase {
                Phase::Open if c.live.is_some() => self.close(slot, generation),
                Phase::Open => {
                    c.session.handle_eof();
                    self.drive(slot, generation);
                }
                Phase::Lingering => self.close(slot, generation),
                Phase::Closing => self.maybe_free(slot, generation),
            }
            return;
        }
        let err = -res;
        if err == libc::ENOBUFS {
            // All provided buffers in use: they come back as soon as the
            // completions queued with this one are processed.
            self.rearm_recv_if_needed(slot, generation);
            return;
        }
        if c.phase != Phase::Closing && err != libc::ECANCELED {
            tracing::debug!(
                "{}: receive failed: {}",
                self.conn_id(slot, generation),
                std::io::Error::from_raw_os_error(err)
            );
        }
        self.close(slot, generation);
    }

    fn rearm_recv_if_needed(&mut self, slot: u32, generation: u32) {
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if c.phase == Phase::Closing {
            self.maybe_free(slot, generation);
        } else if !c.recv_armed {
            self.arm_recv(slot, generation);
        }
    }

    /// Act on the session's outputs until it waits.
    fn drive(&mut self, slot: u32, generation: u32) {
        loop {
            let Some(c) = self.conns.get_mut(slot, generation) else {
                return;
            };
            if c.phase != Phase::Open || c.work.is_some() || c.live.is_some() {
                return;
            }
            match c.session.poll_output() {
                None => return,
                Some(Output::Request(req, _body)) => self.start_request(slot, generation, req),
                Some(Output::Reject(bytes, err)) => {
                    self.counters.rejected += 1;
                    tracing::info!(
                        "{}: rejected request: {err}",
                        self.conn_id(slot, generation)
                    );
                    let status = parse_status(&bytes);
                    self.start_transfer(slot, generation, bytes, None, 0..0, status, true, None);
                    return;
                }
                Some(Output::Close) => {
                    self.linger_or_close(slot, generation);
                    return;
                }
            }
        }
    }

    fn start_request(&mut self, slot: u32, generation: u32, req: Request) {
        self.counters.requests += 1;
        let now_sys = SystemTime::now();
        let keep_alive = req.keep_alive && self.shutdown_at.is_none();
        match req.method {
            Method::Get | Method::Head => {}
            Method::Options => {
                let head = response::simple(
                    204,
                    "",
                    &[
                        ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
                        (
                            "Access-Control-Allow-Headers",
                            "Range, If-None-Match, If-Modified-Since",
                        ),
                        ("Access-Control-Max-Age", "86400"),
                        ("Allow", "GET, HEAD, OPTIONS"),
                    ],
                    now_sys,
                    keep_alive,
                );
                let log = self.log_line(&req);
                self.start_transfer(slot, generation, head, None, 0..0, 204, !keep_alive, log);
                return;
            }
            _ => {
                let head = response::simple(
                    405,
                    "method not allowed\n",
                    &[("Allow", "GET, HEAD, OPTIONS")],
                    now_sys,
                    keep_alive,
                );
                let log = self.log_line(&req);
                self.start_transfer(slot, generation, head, None, 0..0, 405, !keep_alive, log);
                return;
            }
        }
        if self.route_live(slot, generation, &req) {
            return;
        }
        let path = match relative_path(&req.path) {
            Ok(p) => p,
            Err(r) => {
                let status = match r {
                    Refusal::Forbidden => 403,
                    Refusal::NotFound => 404,
                };
                self.respond_status(slot, generation, &req, status);
                return;
            }
        };
        let now = self.now.get();
        if let Some(f) = self.cache.get(&path, now) {
            self.respond_file(slot, generation, req, f);
            return;
        }
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        c.work = Some(Box::new(Work::Opening { req, path }));
        c.ops += 1;
        let Some(Work::Opening { path, .. }) = c.work.as_deref() else {
            unreachable!()
        };
        let e = opcode::OpenAt2::new(
            types::Fd(self.root.as_raw_fd()),
            path.as_ptr(),
            &*self.open_how,
        )
        .build()
        .user_data(Token::new(OPEN, slot, generation).0);
        self.push(e);
    }

    fn log_line(&self, req: &Request) -> Option<Box<str>> {
        self.access_log.then(|| {
            let target = crate::control::access::redact_token(&req.target);
            format!("{:?} {target}", req.method).into_boxed_str()
        })
    }

    fn respond_status(&mut self, slot: u32, generation: u32, req: &Request, status: u16) {
        let keep_alive = req.keep_alive && self.shutdown_at.is_none();
        let body = match status {
            403 => "forbidden\n",
            404 => "not found\n",
            _ => "error\n",
        };
        let mut head = response::simple(status, body, &[], SystemTime::now(), keep_alive);
        if req.method == Method::Head {
            // Same head as GET, no body.
            let cut = head
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(head.len(), |p| p + 4);
            head.truncate(cut);
        }
        let log = self.log_line(req);
        self.start_transfer(slot, generation, head, None, 0..0, status, !keep_alive, log);
    }

    fn respond_file(&mut self, slot: u32, generation: u32, req: Request, f: Rc<OpenFile>) {
        let keep_alive = req.keep_alive && self.shutdown_at.is_none();
        let entity = response::Entity {
            len: f.len,
            modified: f.modified,
            etag: Some(f.etag.clone()),
            content_type: response::content_type_for(&req.path),
            cache_control: self.cache_control,
        };
        let d = response::for_entity(&req, &entity, SystemTime::now(), keep_alive);
        let log = self.log_line(&req);
        let body = d.body.clone().unwrap_or(0..0);
        self.start_transfer(
            slot,
            generation,
            d.head,
            Some(BodySrc::File(f)),
            body,
            d.status,
            !keep_alive,
            log,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn start_transfer(
        &mut self,
        slot: u32,
        generation: u32,
        head: Vec<u8>,
        source: Option<BodySrc>,
        body: std::ops::Range<u64>,
        status: u16,
        last: bool,
        log: Option<Box<str>>,
    ) {
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
        let msg: libc::msghdr = unsafe { std::mem::zeroed() };
        c.work = Some(Box::new(Work::Sending(Transfer {
            head,
            head_off: 0,
            body: source,
            pos: body.start,
            end: body.end,
            status,
            last,
            iov: [empty, empty],
            msg,
            pipe: None,
            piped: 0,
            zc_notifs: 0,
            // Small bodies go out with their head in one sendmsg.
            no_sendfile: body.end - body.start < SENDFILE_MIN,
            log,
        })));
        self.pump(slot, generation);
    }

    /// Submit the next operation of the connection's transfer, or finish it.
    fn pump(&mut self, slot: u32, generation: u32) {
        let now = self.now.get();
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        let fd = c.fd;
        let Some(Work::Sending(x)) = c.work.as_deref_mut() else {
            return;
        };
        let splice_src = x.body.as_ref().and_then(BodySrc::splice_src);
        let mode = match self.file_send {
            FileSend::Splice if splice_src.is_none() => FileSend::Send,
            FileSend::Sendfile if splice_src.is_none() || x.no_sendfile => FileSend::Send,
            m => m,
        };
        if c.ops > x.zc_notifs {
            // An operation of this transfer is in flight.
            return;
        }
        if mode == FileSend::Sendfile {
            let src = splice_src.expect("sendfile mode has a source");
            self.pump_sendfile(slot, generation, src);
            return;
        }
        let head_left = x.head.len() - x.head_off;
        let body_left = x.end - x.pos;
        let map_ptr = x.body.as_ref().and_then(BodySrc::ptr);
        let has_map = map_ptr.is_some();
        let entry = if head_left > 0 && mode == FileSend::Send && body_left > 0 && has_map {
            // Head and as much body as one sendmsg takes, from the mapping.
            x.iov[0] = libc::iovec {
                iov_base: x.head[x.head_off..].as_ptr() as *mut _,
                iov_len: head_left,
            };
            let base = map_ptr.expect("has_map");
            x.iov[1] = libc::iovec {
                // SAFETY: pos < end <= length of the body's bytes (the range
                // was decided against the entity's length), so the pointer
                // stays inside the mapping or buffer, which `x.body` keeps
                // alive.
                iov_base: unsafe { base.add(x.pos as usize) } as *mut _,
                iov_len: body_left.min(CHUNK) as usize,
            };
            x.msg.msg_iov = x.iov.as_mut_ptr();
            x.msg.msg_iovlen = 2;
            opcode::SendMsg::new(types::Fixed(fd), &x.msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
                .user_data(Token::new(SEND, slot, generation).0)
        } else if head_left > 0 {
            // The head alone: all there is, or the body follows another way.
            let more = if body_left > 0 { libc::MSG_MORE } else { 0 };
            opcode::Send::new(
                types::Fixed(fd),
                x.head[x.head_off..].as_ptr(),
                head_left as u32,
            )
            .flags(libc::MSG_NOSIGNAL | more)
            .build()
            .user_data(Token::new(SEND, slot, generation).0)
        } else if body_left > 0 || x.piped > 0 {
            match mode {
                FileSend::Send | FileSend::SendZc | FileSend::Sendfile => {
                    let Some(base) = map_ptr else {
                        unreachable!("a non-empty body has a mapping")
                    };
                    let take = body_left.min(CHUNK) as u32;
                    // SAFETY: pos < end <= mapping length (see above).
                    let p = unsafe { base.add(x.pos as usize) };
                    if mode == FileSend::SendZc {
                        opcode::SendZc::new(types::Fixed(fd), p, take)
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                            .user_data(Token::new(SEND_ZC, slot, generation).0)
                    } else {
                        opcode::Send::new(types::Fixed(fd), p, take)
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                            .user_data(Token::new(SEND, slot, generation).0)
                    }
                }
                FileSend::Splice => {
                    if x.pipe.is_none() {
                        x.pipe = match self.pipes.pop() {
                            Some(p) => Some(p),
                            None if self.pipes_out < MAX_PIPES => match Pipe::new() {
                                Ok(p) => Some(p),
                                Err(e) => {
                                    tracing::warn!(
                                        "worker {}: cannot create pipe: {e}",
                                        self.index
                                    );
                                    None
                                }
                            },
                            None => None,
                        };
                        if x.pipe.is_some() {
                            self.pipes_out += 1;
                        } else {
                            // Out of pipes: this response goes by send.
                            let Some(base) = map_ptr else { unreachable!() };
                            let take = body_left.min(CHUNK) as u32;
                            // SAFETY: pos < end <= mapping length.
                            let p = unsafe { base.add(x.pos as usize) };
                            let e = opcode::Send::new(types::Fixed(fd), p, take)
                                .flags(libc::MSG_NOSIGNAL)
                                .build()
                                .user_data(Token::new(SEND, slot, generation).0);
                            c.ops += 1;
                            c.deadline = Some(now + self.send_timeout);
                            self.push(e);
                            return;
                        }
                    }
                    let pipe = x.pipe.as_ref().expect("pipe taken above");
                    if x.piped > 0 {
                        let more = if body_left > 0 {
                            libc::SPLICE_F_MORE
                        } else {
                            0
                        };
                        opcode::Splice::new(
                            types::Fd(pipe.r.as_raw_fd()),
                            -1,
                            types::Fixed(fd),
                            -1,
                            x.piped as u32,
                        )
                        .flags(more)
                        .build()
                        .user_data(Token::new(SPLICE_OUT, slot, generation).0)
                    } else {
                        // File -> pipe linked to pipe -> socket: the kernel
                        // runs both on one io-wq pass (splice is always
                        // punted to io-wq), without a trip through this
                        // loop in between. A short splice-in (file truncated
                        // underneath) leaves the linked splice-out waiting;
                        // the send-stall timer ends it.
                        let (src_fd, src_off) = splice_src.expect("splice mode has a source");
                        let take = body_left.min(pipe.cap as u64) as u32;
                        let splice_in = opcode::Splice::new(
                            types::Fd(src_fd),
                            (src_off + x.pos) as i64,
                            types::Fd(pipe.w.as_raw_fd()),
                            -1,
                            take,
                        )
                        .build()
                        .flags(squeue::Flags::IO_LINK)
                        .user_data(Token::new(SPLICE_IN, slot, generation).0);
                        let more = if body_left > take as u64 {
                            libc::SPLICE_F_MORE
                        } else {
                            0
                        };
                        let splice_out = opcode::Splice::new(
                            types::Fd(pipe.r.as_raw_fd()),
                            -1,
                            types::Fixed(fd),
                            -1,
                            take,
                        )
                        .flags(more)
                        .build()
                        .user_data(Token::new(SPLICE_OUT, slot, generation).0);
                        c.ops += 2;
                        c.deadline = Some(now + self.send_timeout);
                        self.push(splice_in);
                        self.push(splice_out);
                        return;
                    }
                }
            }
        } else if x.zc_notifs > 0 {
            return;
        } else {
            self.finish_transfer(slot, generation);
            return;
        };
        c.ops += 1;
        c.deadline = Some(now + self.send_timeout);
        self.push(entry);
    }

    fn on_op(&mut self, t: Token, res: i32, flags: u32) {
        let (slot, generation) = (t.slot(), t.generation());
        let Some(c) = self.conns.get_mut(slot, generation) else {
            tracing::error!("worker {}: completion for a freed slot {slot}", self.index);
            return;
        };
        // A zero-copy send completes twice: the result (flagged MORE when a
        // notification follows) and the notification that the kernel let go
        // of the pages. Both count as in flight until the notification.
        let notif = t.kind() == SEND_ZC && ring::notif(flags);
        c.ops -= 1;
        if t.kind() == SEND_ZC {
            if let Some(Work::Sending(x)) = c.work.as_deref_mut() {
                if notif {
                    x.zc_notifs -= 1;
                } else if ring::more(flags) {
                    x.zc_notifs += 1;
                    c.ops += 1;
                }
            } else if !notif && ring::more(flags) {
                c.ops += 1;
            }
        }
        if t.kind() == sendfile::FD_INSTALL {
            let (fd, closing) = (c.fd, c.phase == Phase::Closing);
            self.on_fd_installed(slot, generation, fd, res, closing);
            return;
        }
        if c.phase == Phase::Closing {
            self.maybe_free(slot, generation);
            return;
        }
        if notif {
            self.pump(slot, generation);
            return;
        }
        match t.kind() {
            OPEN => self.on_open(slot, generation, res),
            sendfile::POLL_OUT => {
                if res < 0 {
                    tracing::debug!(
                        "{}: waiting to send failed: {}",
                        self.conn_id(slot, generation),
                        std::io::Error::from_raw_os_error(-res)
                    );
                    self.abort(slot, generation);
                    return;
                }
                self.pump(slot, generation);
            }
            SHUT_WR => {}
            SEND | SEND_ZC | SPLICE_IN | SPLICE_OUT => {
                if res < 0 {
                    let err = -res;
                    if err != libc::ECANCELED {
                        tracing::debug!(
                            "{}: send failed: {}",
                            self.conn_id(slot, generation),
                            std::io::Error::from_raw_os_error(err)
                        );
                    }
                    self.abort(slot, generation);
                    return;
                }
                let n = res as u64;
                let Some(Work::Sending(x)) = c.work.as_deref_mut() else {
                    return;
                };
                match t.kind() {
                    SPLICE_IN => {
                        if n == 0 {
                            tracing::warn!(
                                "{}: file shrank while being sent",
                                self.conn_id(slot, generation)
                            );
                            self.abort(slot, generation);
                            return;
                        }
                        x.pos += n;
                        // Bytes now in the pipe; the (linked) splice-out's
                        // completion subtracts what it moved, in whichever
                        // order the two completions are seen.
                        x.piped += n as i64;
                    }
                    SPLICE_OUT => {
                        x.piped -= n as i64;
                        self.counters.body_bytes += n;
                        if x.piped == 0
                            && x.pos == x.end
                            && let Some(p) = x.pipe.take()
                        {
                            self.pipes.push(p);
                            self.pipes_out -= 1;
                        }
                    }
                    _ => {
                        let head_left = (x.head.len() - x.head_off) as u64;
                        let from_head = n.min(head_left);
                        x.head_off += from_head as usize;
                        x.pos += n - from_head;
                        self.counters.body_bytes += n - from_head;
                        if x.pos > x.end {
                            tracing::error!(
                                "{}: sent past the body",
                                self.conn_id(slot, generation)
                            );
                            self.abort(slot, generation);
                            return;
                        }
                    }
                }
                c.deadline = Some(self.now.get() + self.send_timeout);
                self.pump(slot, generation);
            }
            _ => {}
        }
    }

    /// `file_send = "sendfile"`: head by `send`, body by `sendfile`, on the
    /// connection's installed descriptor, until done or the socket is full.
    fn pump_sendfile(&mut self, slot: u32, generation: u32, (src_fd, src_off): (RawFd, u64)) {
        let now = self.now.get();
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        let fd = c.fd;
        let Some(sys) = self.sys_fds.get(fd) else {
            if self.sys_fds.reserve() {
                c.ops += 1;
                let e = opcode::FixedFdInstall::new(types::Fixed(fd), 0)
                    .build()
                    .user_data(Token::new(sendfile::FD_INSTALL, slot, generation).0);
                self.push(e);
            } else if let Some(Work::Sending(x)) = c.work.as_deref_mut() {
                // Out of budget: this body goes by send (a later one
                // tries again: a closed connection gives its fd back).
                x.no_sendfile = true;
                self.pump(slot, generation);
            }
            return;
        };
        loop {
            let Some(c) = self.conns.get_mut(slot, generation) else {
                return;
            };
            let Some(Work::Sending(x)) = c.work.as_deref_mut() else {
                return;
            };
            let head_left = x.head.len() - x.head_off;
            let body_left = x.end - x.pos;
            let wrote = if head_left > 0 {
                sendfile::send_head(sys, &x.head[x.head_off..], body_left > 0)
            } else if body_left > 0 {
                sendfile::send_file(sys, src_fd, src_off + x.pos, body_left.min(CHUNK))
            } else {
                self.finish_transfer(slot, generation);
                return;
            };
            match wrote {
                sendfile::Wrote::Bytes(n) => {
                    if head_left > 0 {
                        x.head_off += n as usize;
                    } else if n == 0 {
                        tracing::warn!(
                            "{}: file shrank while being sent",
                            self.conn_id(slot, generation)
                        );
                        self.abort(slot, generation);
                        return;
                    } else {
                        x.pos += n;
                        self.counters.body_bytes += n;
                    }
                    c.deadline = Some(now + self.send_timeout);
                }
                sendfile::Wrote::Full => {
                    c.ops += 1;
                    c.deadline = Some(now + self.send_timeout);
                    let e = opcode::PollAdd::new(types::Fixed(fd), libc::POLLOUT as u32)
                        .build()
                        .user_data(Token::new(sendfile::POLL_OUT, slot, generation).0);
                    self.push(e);
                    return;
                }
                sendfile::Wrote::Failed(e) => {
                    tracing::debug!("{}: send failed: {e}", self.conn_id(slot, generation));
                    self.abort(slot, generation);
                    return;
                }
            }
        }
    }

    /// The install of a connection's regular descriptor came back.
    fn on_fd_installed(&mut self, slot: u32, generation: u32, fd: u32, res: i32, closing: bool) {
        if res < 0 || closing {
            self.sys_fds.unreserve((res >= 0).then_some(res));
            if res < 0 && self.sys_fds.warn_once() {
                tracing::warn!(
                    "worker {}: cannot install a descriptor for sendfile ({}); such connections send bodies by send",
                    self.index,
                    std::io::Error::from_raw_os_error(-res)
                );
            }
            if closing {
                self.maybe_free(slot, generation);
                return;
            }
            if let Some(c) = self.conns.get_mut(slot, generation)
                && let Some(Work::Sending(x)) = c.work.as_deref_mut()
            {
                x.no_sendfile = true;
            }
        } else {
            self.sys_fds.set(fd, res);
            if self.sys_fds.get(fd).is_none()
                && let Some(c) = self.conns.get_mut(slot, generation)
                && let Some(Work::Sending(x)) = c.work.as_deref_mut()
            {
                x.no_sendfile = true;
            }
        }
        self.pump(slot, generation);
    }

    fn on_open(&mut self, slot: u32, generation: u32, res: i32) {
        let now = self.now.get();
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        let Some(work) = c.work.take() else { return };
        let Work::Opening { req, path } = *work else {
            return;
        };
        if res < 0 {
            let status = match -res {
                libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG => 404,
                libc::EXDEV | libc::EACCES | libc::EPERM | libc::ELOOP => 403,
                e => {
                    tracing::warn!(
                        "{}: open {:?} failed: {}",
                        self.conn_id(slot, generation),
                        path,
                        std::io::Error::from_raw_os_error(e)
                    );
                    500
                }
            };
            self.respond_status(slot, generation, &req, status);
            return;
        }
        // SAFETY: a successful openat2 completion is a fresh descriptor that
        // nothing else owns.
        let file = unsafe { File::from_raw_fd(res) };
        match OpenFile::from_file(file, now) {
            Ok(Opened::File(f)) => {
                let f = self.cache.insert(path, f, now);
                self.respond_file(slot, generation, req, f);
            }
            Ok(Opened::NotAFile) => self.respond_status(slot, generation, &req, 404),
            Err(e) => {
                tracing::warn!(
                    "{}: cannot use {:?}: {e}",
                    self.conn_id(slot, generation),
                    path
                );
                self.respond_status(slot, generation, &req, 500);
            }
        }
    }

    fn finish_transfer(&mut self, slot: u32, generation: u32) {
        let now = self.now.get();
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        c.deadline = None;
        let Some(work) = c.work.take() else { return };
        let Work::Sending(x) = *work else { return };
        if let Some(p) = x.pipe {
            self.pipes.push(p);
            self.pipes_out -= 1;
        }
        if let Some(l) = &x.log {
            tracing::info!(target: "spate::access", "{} {} {} {}", self.conn_id(slot, generation), l, x.status, x.end);
        }
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if x.last {
            self.linger_or_close(slot, generation);
            return;
        }
        c.session.response_done(now, &self.limits);
        self.drive(slot, generation);
    }

    /// Close after our last response: shut our sending side so the peer sees
    /// the end, and keep reading (discarding) until it closes or the linger
    /// time passes, so unread input does not turn our close into a reset
    /// that destroys the response in flight.
    fn linger_or_close(&mut self, slot: u32, generation: u32) {
        let now = self.now.get();
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if !c.recv_armed || c.phase != Phase::Open {
            self.close(slot, generation);
            return;
        }
        c.phase = Phase::Lingering;
        c.deadline = Some(now + LINGER);
        c.ops += 1;
        let e = opcode::Shutdown::new(types::Fixed(c.fd), libc::SHUT_WR)
            .build()
            .user_data(Token::new(SHUT_WR, slot, generation).0);
        self.push(e);
    }

    /// Drop a connection that misbehaved or failed: cancel what is in flight.
    fn abort(&mut self, slot: u32, generation: u32) {
        self.close(slot, generation);
    }

    fn close(&mut self, slot: u32, generation: u32) {
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if c.phase == Phase::Closing {
            // Already closing: this is one of its in-flight operations
            // coming back; free the slot if it was the last.
            self.maybe_free(slot, generation);
            return;
        }
        if c.live.is_some() {
            self.live_on_close(slot, generation);
        }
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        c.phase = Phase::Closing;
        let fd = c.fd;
        // Cancel by user_data, not by descriptor: the kernel finds a
        // user_data in a hash bucket, while a by-descriptor cancel walks
        // every pending request of the ring — O(connections) per close,
        // which made closing 14,000 connections take seconds.
        let busy = c.ops > 0;
        let mut kinds: &[u8] = &[RECV];
        if busy {
            kinds = &[
                RECV,
                SEND,
                SEND_ZC,
                SPLICE_IN,
                SPLICE_OUT,
                OPEN,
                SHUT_WR,
                LIVE_SEND,
                sendfile::POLL_OUT,
            ];
        }
        self.sys_fds.release(fd);
        for &kind in kinds {
            let cancel = opcode::AsyncCancel::new(Token::new(kind, slot, generation).0)
                .build()
                .flags(squeue::Flags::IO_HARDLINK)
                .user_data(Token::new(CLOSE, 0, 0).0);
            self.push(cancel);
        }
        let close = opcode::Close::new(types::Fixed(fd))
            .build()
            .user_data(Token::new(CLOSE, 0, 0).0);
        self.push(close);
        self.counters.closed += 1;
        self.maybe_free(slot, generation);
    }

    fn maybe_free(&mut self, slot: u32, generation: u32) {
        let Some(c) = self.conns.get_mut(slot, generation) else {
            return;
        };
        if c.phase != Phase::Closing || c.ops > 0 || c.recv_armed {
            return;
        }
        let c = self.conns.remove(slot, generation).expect("present");
        if let Some(w) = c.work
            && let Work::Sending(x) = *w
            && x.pipe.is_some()
        {
            // A pipe may hold bytes of the dead response: drop it.
            self.pipes_out -= 1;
        }
        if self.counters.table_full > 0 {
            self.rearm_accepts();
        }
    }

    fn on_tick(&mut self) {
        let now = self.now.get();
        if self.accept_retry {
            self.accept_retry = false;
            self.rearm_accepts();
        }
        self.live_tick();
        self.sources_tick();
        self.exec_tick();
        self.http_tick();
        self.trigger_tick();
        let slots: Vec<(u32, u32)> = self.conns.slots().collect();
        for (slot, generation) in slots {
            let Some(c) = self.conns.get_mut(slot, generation) else {
                continue;
            };
            if c.phase == Phase::Closing {
                continue;
            }
            if let Some(d) = c.deadline {
                if now >= d {
                    if c.phase == Phase::Lingering {
                        self.close(slot, generation);
                    } else {
                        self.counters.send_stalls += 1;
                        tracing::info!(
                            "{}: response made no progress for {:?}; dropping the peer",
                            self.conn_id(slot, generation),
                            self.send_timeout
                        );
                        self.abort(slot, generation);
                    }
                }
                continue;
            }
            if c.work.is_some() || c.live.is_some() {
                continue;
            }
            if let Some(d) = c.session.poll_timeout()
                && now >= d
            {
                c.session.handle_timeout(now, &self.limits);
                self.drive(slot, generation);
            }
        }
        if let Some(at) = self.shutdown_at
            && now >= at
        {
            self.pending_closes = self.conns.slots().collect();
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        let now = self.now.get();
        self.shutdown_at = Some(now + self.shutdown_timeout);
        tracing::debug!(
            "worker {}: shutting down, {} connections open",
            self.index,
            self.conns.len()
        );
        self.close_sources();
        self.close_exec_sources();
        self.close_http_sources();
        // Stop accepting: cancel the accepts in flight and close the
        // listeners, so new connections are refused by the kernel.
        for slot in 0..(2 * ACCEPTS_PER_LISTENER) as u32 {
            let cancel = opcode::AsyncCancel::new(Token::new(ACCEPT, slot, 0).0)
                .build()
                .user_data(Token::new(CLOSE, 0, 0).0);
            self.push(cancel);
        }
        let _ = self.ring.submit_and_wait(0);
        self.listeners = [None, None];
        let slots: Vec<(u32, u32)> = self.conns.slots().collect();
        for (slot, generation) in slots {
            let Some(c) = self.conns.get_mut(slot, generation) else {
                continue;
            };
            if (c.work.is_none() && c.phase == Phase::Open) || c.live.is_some() {
                // Idle, or live (RTMP, viewers): nothing to finish. Closed
                // in batches by the loop, so tens of thousands of closes do
                // not flood the submission and completion queues at once.
                self.pending_closes.push((slot, generation));
            } else {
                c.session.close_after_response();
            }
        }
    }
}

fn parse_status(head: &[u8]) -> u16 {
    head.get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle keep-alive connection costs one slab entry: keep it small
    /// (the goal is ≤ 400 bytes of userspace memory per idle connection).
    #[test]
    fn idle_connection_state_is_small() {
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 128, "Conn is {size} bytes");
    }

    #[test]
    fn status_is_read_from_a_head() {
        assert_eq!(
            parse_status(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            431
        );
        assert_eq!(parse_status(b"junk"), 0);
    }
}
