//! `http://` pull sources on a worker: MPEG-TS read from the body of an HTTP
//! response (a live, progressive `video/mp2t` body such as another server's
//! `/<stream>.ts`: an edge pulling from an origin), through the ring.
//!
//! Follow one connection: the source's owner (one worker, chosen by the
//! stream name like a UDP source's) takes the address (an IP literal at
//! once; a host name is resolved by a short-lived `spate-resolve` thread,
//! never on the loop, the result picked up on the next tick, and its
//! addresses, up to 8, tried in turn when a connect fails) → a
//! nonblocking TCP socket (socket2) and an `IORING_OP_CONNECT` → one `SEND`
//! of `GET PATH HTTP/1.1` (`Host`, `User-Agent: spate/…`, `Connection:
//! close`) → `RECV`s of up to 64 KiB into a buffer the source owns, one in
//! flight at a time → the response head is parsed (httparse): `200`
//! required; a `301/302/303/307/308` with a `Location` (an `http://` URL or
//! an absolute path) is followed, at most [`MAX_REDIRECTS`] times per
//! attempt; anything else is an error, logged with the status → the body
//! (`Content-Length`, `Transfer-Encoding: chunked`, or close-delimited)
//! goes into the source's [`TsIngest`](super::sources::TsIngest) exactly as
//! a UDP source's datagrams do (demuxer → publisher → every output).
//!
//! The connection ends on EOF, an error, the end of a `Content-Length` or
//! chunked body, no bytes for `[live] source_timeout`, no publishable stream
//! within twice that, a head larger than [`MAX_HEAD`] or not complete within
//! [`HEAD_TIMEOUT`] of the attempt's start (resolution and connect
//! included): the stream goes offline (reconnect grace, then it ends) and
//! the source connects again after a backoff of 1 s doubling to 30 s (back
//! to 1 s after a run that went live and lasted 30 s). Each failure is
//! logged with the source's name and URL and counted (`source_errors`).
//! Pull sources are always on (a connection costs nothing without viewers
//! but the origin's bandwidth).
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use io_uring::{opcode, types};
use socket2::{Domain, SockAddr, Socket, Type};
use spate_packager::ts::TsDemuxer;
use spate_protocols::http::upstream::{ChunkedDecoder, parse_head};

use super::exec_sources::{FIRST_BACKOFF, MAX_BACKOFF};
use super::sources::{IngestRef, TsIngest};
use super::{Token, Worker};
use crate::ingest::{HttpSource, SourceUrl};

/// Completion kind of a pull source's socket operations (slot = source
/// index, generation = attempt number << 2 | operation).
pub(super) const HTTP_SRC: u8 = 17;

const OP_CONNECT: u32 = 0;
const OP_SEND: u32 = 1;
const OP_RECV: u32 = 2;
/// Attempt numbers: 22 bits (the token's generation is 24).
const RUN_MASK: u32 = 0x003F_FFFF;

/// Largest response head accepted, bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// An attempt must have its response head by then (from its start: name
/// resolution and connect included).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed per attempt.
pub const MAX_REDIRECTS: u8 = 3;
/// Bytes one receive takes.
const READ_BUF: usize = 64 * 1024;
/// Addresses of a name tried, in the resolver's order.
const MAX_ADDRS: usize = 8;

/// How the response body ends.
#[derive(Debug)]
enum Body {
    /// `Content-Length`: bytes left.
    Length { left: u64, total: u64 },
    /// Close-delimited.
    Close,
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedDecoder),
}

impl Body {
    fn describe(&self) -> String {
        match self {
            Body::Length { total, .. } => format!("Content-Length {total}"),
            Body::Close => "close-delimited".into(),
            Body::Chunked(_) => "chunked".into(),
        }
    }
}

/// Where a pull source is.
#[derive(Debug)]
enum Phase {
    /// Waiting; connects at this instant.
    Backoff(Instant),
    /// A `spate-resolve` thread looks the host up.
    Resolving(Receiver<Result<Vec<SocketAddr>, String>>),
    Connecting,
    Sending,
    Head,
    Body(Body),
    /// Shutting down: never again.
    Stopped,
}

/// One `http://` source owned by this worker.
#[derive(Debug)]
pub(super) struct PullSource {
    pub(super) ing: TsIngest,
    /// As configured.
    url: HttpSource,
    /// What this attempt asks for (the configured URL, or a redirect's).
    target: HttpSource,
    phase: Phase,
    /// Number of the current attempt.
    run: u32,
    sock: Option<Socket>,
    peer: Option<SocketAddr>,
    /// A name's other addresses, tried in turn when a connect fails.
    more_addrs: Vec<SocketAddr>,
    /// The address being connected to: the kernel reads it while the
    /// connect is in flight.
    addr: Box<Option<SockAddr>>,
    /// The request: the kernel reads it while the send is in flight.
    req: Box<[u8]>,
    sent: usize,
    /// The receive buffer: the kernel writes into it while a receive is in
    /// flight, so it lives as long as the source.
    buf: Box<[u8]>,
    /// The generation of the operation in flight (one at a time): no new
    /// connection starts, and no buffer is reused, before it completes.
    inflight: Option<u32>,
    head: Vec<u8>,
    redirects: u8,
    attempt_at: Instant,
    body_at: Option<Instant>,
    received: u64,
    went_live: bool,
    backoff: Duration,
}

/// The `http://` sources of `config` that worker `index` of `workers` runs
/// (by stream name, as UDP sources).
pub(super) fn pull_sources_for(
    config: &crate::config::Config,
    index: usize,
    workers: usize,
) -> Vec<PullSource> {
    let now = Instant::now();
    let mut out = Vec::new();
    for st in &config.streams {
        let Some(url) = st.source.as_deref() else {
            continue;
        };
        let Ok(SourceUrl::TsHttp(h)) = SourceUrl::parse(url) else {
            continue;
        };
        if super::sources::owner_of(&st.name, workers) != index {
            continue;
        }
        let label = format!("source {} ({})", st.name, h.url);
        out.push(PullSource {
            ing: TsIngest::new(st.name.clone(), label),
            target: h.clone(),
            url: h,
            phase: Phase::Backoff(now),
            run: 0,
            sock: None,
            peer: None,
            more_addrs: Vec::new(),
            addr: Box::new(None),
            req: Box::default(),
            sent: 0,
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            inflight: None,
            head: Vec::new(),
            redirects: 0,
            attempt_at: now,
            body_at: None,
            received: 0,
            went_live: false,
            backoff: FIRST_BACKOFF,
        });
    }
    out
}

/// Feed body bytes to the demuxer; `Ok(true)` when the body is complete.
fn feed_body(
    body: &mut Body,
    input: &[u8],
    demux: &mut TsDemuxer,
    received: &mut u64,
) -> Result<bool, String> {
    match body {
        Body::Length { left, .. } => {
            let take = (*left).min(input.len() as u64) as usize;
            if take > 0 {
                demux.push(&input[..take]);
            }
            *left -= take as u64;
            *received += take as u64;
            Ok(*left == 0)
        }
        Body::Close => {
            demux.push(input);
            *received += input.len() as u64;
            Ok(false)
        }
        Body::Chunked(c) => c.feed(input, |d| {
            demux.push(d);
            *received += d.len() as u64;
        }),
    }
}

impl Worker {
    /// Per tick: start connections whose backoff is over, pick up name
    /// resolutions, and end connections past their deadlines.
    pub(super) fn http_tick(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        let now = self.now.get();
        let timeout = self.source_timeout;
        for i in 0..self.http.len() {
            let s = &self.http[i];
            let why = match &s.phase {
                Phase::Backoff(at) => {
                    if now >= *at && s.inflight.is_none() {
                        self.http_start(i, true);
                    }
                    continue;
                }
                Phase::Resolving(rx) => match rx.try_recv() {
                    Ok(Ok(mut addrs)) if !addrs.is_empty() => {
                        let first = addrs.remove(0);
                        addrs.reverse();
                        self.http[i].more_addrs = addrs;
                        self.http_connect(i, first);
                        continue;
                    }
                    Ok(Ok(_)) => format!("cannot resolve {:?}: no address", s.target.host),
                    Ok(Err(e)) => format!("cannot resolve {:?}: {e}", s.target.host),
                    Err(TryRecvError::Disconnected) => {
                        format!("cannot resolve {:?}: the resolver ended", s.target.host)
                    }
                    Err(TryRecvError::Empty) if now >= s.attempt_at + HEAD_TIMEOUT => format!(
                        "cannot resolve {:?} within {} s",
                        s.target.host,
                        HEAD_TIMEOUT.as_secs()
                    ),
                    Err(TryRecvError::Empty) => continue,
                },
                Phase::Connecting | Phase::Sending | Phase::Head => {
                    if now < s.attempt_at + HEAD_TIMEOUT {
                        continue;
                    }
                    let what = match s.phase {
                        Phase::Connecting => "connection not established",
                        _ => "no response head",
                    };
                    format!("{what} within {} s", HEAD_TIMEOUT.as_secs())
                }
                Phase::Body(_) => {
                    let since = s.ing.last_data.or(s.body_at).unwrap_or(now);
                    if now >= since + timeout {
                        format!("no data for {} s", timeout.as_secs_f64())
                    } else if !s.went_live && s.body_at.is_some_and(|t| now >= t + 2 * timeout) {
                        format!(
                            "no stream it could publish within {} s",
                            (2 * timeout).as_secs_f64()
                        )
                    } else {
                        continue;
                    }
                }
                Phase::Stopped => continue,
            };
            self.http_fail(i, why);
        }
    }

    /// A new attempt (`fresh`: from the configured URL; else to the current
    /// target, after a redirect).
    fn http_start(&mut self, i: usize, fresh: bool) {
        let now = self.now.get();
        let s = &mut self.http[i];
        s.run = s.run.wrapping_add(1) & RUN_MASK;
        s.attempt_at = now;
        s.head.clear();
        s.body_at = None;
        s.received = 0;
        s.went_live = false;
        s.more_addrs.clear();
        if fresh {
            s.target = s.url.clone();
            s.redirects = 0;
        }
        if let Some(addr) = s.target.literal() {
            self.http_connect(i, addr);
            return;
        }
        // Never resolve on the loop: a thread does it (at most one per
        // attempt; attempts are at least a backoff apart).
        let (tx, rx) = sync_channel(1);
        let (host, port) = (s.target.host.clone(), s.target.port);
        let spawned = std::thread::Builder::new()
            .name("spate-resolve".into())
            .spawn(move || {
                let r = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.take(MAX_ADDRS).collect())
                    .map_err(|e| e.to_string());
                let _ = tx.send(r);
            });
        match spawned {
            Ok(_) => s.phase = Phase::Resolving(rx),
            Err(e) => self.http_fail(i, format!("cannot start a resolver thread: {e}")),
        }
    }

    fn http_connect(&mut self, i: usize, addr: SocketAddr) {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)
            .and_then(|s| s.set_nonblocking(true).map(|()| s));
        let sock = match sock {
            Ok(s) => s,
            Err(e) => return self.http_fail(i, format!("cannot open a socket: {e}")),
        };
        let s = &mut self.http[i];
        *s.addr = Some(SockAddr::from(addr));
        let Some(sa) = s.addr.as_ref().as_ref() else {
            return;
        };
        let generation = (s.run << 2) | OP_CONNECT;
        let e = opcode::Connect::new(types::Fd(sock.as_raw_fd()), sa.as_ptr().cast(), sa.len())
            .build()
            .user_data(Token::new(HTTP_SRC, i as u32, generation).0);
        s.sock = Some(sock);
        s.peer = Some(addr);
        s.inflight = Some(generation);
        s.phase = Phase::Connecting;
        // The address is the source's (boxed, replaced only when no
        // operation is in flight).
        self.push(e);
    }

    fn http_arm(&mut self, i: usize, op: u32) {
        let s = &mut self.http[i];
        let Some(sock) = s.sock.as_ref() else {
            return;
        };
        if s.inflight.is_some() {
            return;
        }
        let generation = (s.run << 2) | op;
        let fd = types::Fd(sock.as_raw_fd());
        let e = if op == OP_SEND {
            let rest = &s.req[s.sent..];
            opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32).build()
        } else {
            opcode::Recv::new(fd, s.buf.as_mut_ptr(), s.buf.len() as u32).build()
        };
        s.inflight = Some(generation);
        // The request and the receive buffer are the source's (boxed, never
        // moved or freed while the worker lives; `inflight` keeps a second
        // operation from using them before this one completes).
        self.push(e.user_data(Token::new(HTTP_SRC, i as u32, generation).0));
    }

    /// A connect, send or receive of a pull source completed.
    pub(super) fn on_http_src(&mut self, t: Token, res: i32) {
        let i = t.slot() as usize;
        let generation = t.generation();
        let Some(s) = self.http.get_mut(i) else {
            return;
        };
        if s.inflight == Some(generation) {
            s.inflight = None;
        }
        let (run, op) = (generation >> 2, generation & 3);
        let current = run == s.run
            && match s.phase {
                Phase::Connecting => op == OP_CONNECT,
                Phase::Sending => op == OP_SEND,
                Phase::Head | Phase::Body(_) => op == OP_RECV,
                _ => false,
            };
        if !current || self.shutdown_at.is_some() {
            return;
        }
        let err = |res: i32| std::io::Error::from_raw_os_error(-res);
        match op {
            OP_CONNECT => {
                if res < 0 {
                    let peer = s.peer.map(|p| p.to_string()).unwrap_or_default();
                    if let Some(next) = s.more_addrs.pop() {
                        tracing::info!(
                            "{}: cannot connect to {peer}: {}; trying {next}",
                            s.ing.label,
                            err(res)
                        );
                        s.sock = None;
                        self.http_connect(i, next);
                        return;
                    }
                    return self.http_fail(i, format!("cannot connect to {peer}: {}", err(res)));
                }
                s.req = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: spate/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                    s.target.path,
                    s.target.authority,
                    env!("CARGO_PKG_VERSION")
                )
                .into_bytes()
                .into_boxed_slice();
                s.sent = 0;
                s.phase = Phase::Sending;
                self.http_arm(i, OP_SEND);
            }
            OP_SEND => {
                if res <= 0 {
                    let why = if res == 0 {
                        "sent nothing".to_string()
                    } else {
                        err(res).to_string()
                    };
                    return self.http_fail(i, format!("sending the request failed: {why}"));
                }
                s.sent += res as usize;
                if s.sent < s.req.len() {
                    self.http_arm(i, OP_SEND);
                } else {
                    s.phase = Phase::Head;
                    self.http_arm(i, OP_RECV);
                }
            }
            _ => {
                if res < 0 {
                    return self.http_fail(i, format!("receive failed: {}", err(res)));
                }
                if res == 0 {
                    let why = match &s.phase {
                        Phase::Body(Body::Length { left, total }) => format!(
                            "the origin closed the connection {left} bytes short of its Content-Length {total}"
                        ),
                        Phase::Body(Body::Chunked(_)) => {
                            "the origin closed the connection inside the chunked body".into()
                        }
                        Phase::Body(Body::Close) => format!(
                            "the origin closed the connection (end of the body, {} bytes)",
                            s.received
                        ),
                        _ => "the origin closed the connection before a response head".into(),
                    };
                    return self.http_fail(i, why);
                }
                let n = res as usize;
                if matches!(s.phase, Phase::Head) {
                    self.http_head_bytes(i, n);
                } else {
                    self.http_body_bytes(i, 0, n);
                }
                let s = &self.http[i];
                if s.run == run && matches!(s.phase, Phase::Head | Phase::Body(_)) {
                    self.http_arm(i, OP_RECV);
                }
            }
        }
    }

    /// `n` bytes of the response head (maybe with body bytes after it) are
    /// in the receive buffer.
    fn http_head_bytes(&mut self, i: usize, n: usize) {
        let now = self.now.get();
        let s = &mut self.http[i];
        let before = s.head.len();
        s.head.extend_from_slice(&s.buf[..n]);
        let head = match parse_head(&s.head) {
            Ok(Some(h)) if h.len <= MAX_HEAD => h,
            Ok(None) if s.head.len() <= MAX_HEAD => return,
            Ok(_) => {
                return self.http_fail(
                    i,
                    format!("response head larger than {} KiB", MAX_HEAD / 1024),
                );
            }
            Err(e) => return self.http_fail(i, e),
        };
        let peer = s.peer.map(|p| p.to_string()).unwrap_or_default();
        match head.code {
            200 => {}
            301 | 302 | 303 | 307 | 308 => {
                let why = match head.location.as_deref() {
                    None => Err("no Location".to_string()),
                    Some(_) if s.redirects >= MAX_REDIRECTS => {
                        Err(format!("more than {MAX_REDIRECTS} redirects"))
                    }
                    Some(loc) => s
                        .target
                        .redirect(loc)
                        .map_err(|e| format!("cannot follow it: {e}")),
                };
                match why {
                    Ok(next) => {
                        tracing::info!(
                            "{}: HTTP {} from {peer}: redirected to {}",
                            s.ing.label,
                            head.code,
                            next.url
                        );
                        s.target = next;
                        s.redirects += 1;
                        s.sock = None;
                        return self.http_start(i, false);
                    }
                    Err(e) => {
                        return self.http_fail(
                            i,
                            format!("HTTP {} {} from {peer}: {e}", head.code, head.reason),
                        );
                    }
                }
            }
            code => {
                return self.http_fail(i, format!("HTTP {code} {} from {peer}", head.reason));
            }
        }
        let body = match (head.transfer_encoding.as_deref(), head.content_length) {
            (Some(te), _) => {
                if te.eq_ignore_ascii_case("chunked") {
                    Body::Chunked(ChunkedDecoder::new())
                } else {
                    return self.http_fail(
                        i,
                        format!("unsupported Transfer-Encoding {te:?} from {peer}"),
                    );
                }
            }
            (None, Some(Ok(total))) => Body::Length { left: total, total },
            (None, Some(Err(()))) => {
                return self.http_fail(i, format!("bad Content-Length from {peer}"));
            }
            (None, None) => Body::Close,
        };
        tracing::info!(
            "{}: connected to {peer}: HTTP 200, {} body",
            s.ing.label,
            body.describe()
        );
        if matches!(body, Body::Length { total: 0, .. }) {
            return self.http_fail(i, format!("an empty body (Content-Length 0) from {peer}"));
        }
        s.phase = Phase::Body(body);
        s.body_at = Some(now);
        s.head.clear();
        // The body bytes that came with the head: still in the buffer, at
        // the end of this read.
        let start = head.len - before;
        if start < n {
            self.http_body_bytes(i, start, n);
        }
    }

    /// Body bytes `buf[from..to]`.
    fn http_body_bytes(&mut self, i: usize, from: usize, to: usize) {
        let now = self.now.get();
        let s = &mut self.http[i];
        let Phase::Body(body) = &mut s.phase else {
            return;
        };
        let r = feed_body(body, &s.buf[from..to], &mut s.ing.demux, &mut s.received);
        s.ing.last_data = Some(now);
        self.drain_ts(IngestRef::Http(i));
        let s = &mut self.http[i];
        s.went_live |= s.ing.publisher.is_some();
        match r {
            Ok(false) => {}
            Ok(true) => {
                let why = format!("the body ended ({} bytes)", s.received);
                self.http_fail(i, why);
            }
            Err(e) => {
                let why = format!("bad chunked body: {e}");
                self.http_fail(i, why);
            }
        }
    }

    /// Close the connection: cancel the operation in flight (its buffer
    /// stays with the source until it completes), close the socket.
    fn http_close_conn(&mut self, i: usize) {
        let s = &mut self.http[i];
        if let Some(g) = s.inflight {
            let e = opcode::AsyncCancel::new(Token::new(HTTP_SRC, i as u32, g).0)
                .build()
                .user_data(Token::new(super::CLOSE, 0, 0).0);
            self.push(e);
        }
        // The operation in flight holds its own reference to the socket.
        self.http[i].sock = None;
    }

    /// The attempt failed (or the body ended): offline, and connect again
    /// after the backoff.
    fn http_fail(&mut self, i: usize, why: String) {
        self.http_close_conn(i);
        self.ts_offline(IngestRef::Http(i), &why);
        self.counters.source_errors += 1;
        let now = self.now.get();
        let s = &mut self.http[i];
        if s.went_live && s.body_at.is_some_and(|t| now >= t + MAX_BACKOFF) {
            s.backoff = FIRST_BACKOFF;
        }
        let delay = s.backoff;
        s.backoff = (delay * 2).min(MAX_BACKOFF);
        let live = if s.body_at.is_some() && !s.went_live {
            " (without going live)"
        } else {
            ""
        };
        tracing::warn!(
            "{}: {why}{live}; reconnecting in {} s",
            s.ing.label,
            delay.as_secs()
        );
        s.phase = Phase::Backoff(now + delay);
    }

    /// A reload: stop the `http://` sources `config` no longer has for this
    /// worker, start the new ones; unchanged ones keep their connection.
    pub(super) fn reload_http_sources(&mut self, config: &crate::config::Config) {
        let wanted = pull_sources_for(config, self.index, self.mesh.workers());
        let same = |a: &PullSource, b: &PullSource| a.ing.name == b.ing.name && a.url == b.url;
        for i in 0..self.http.len() {
            if matches!(self.http[i].phase, Phase::Stopped)
                || wanted.iter().any(|w| same(w, &self.http[i]))
            {
                continue;
            }
            tracing::info!("{}: removed by a reload; closing", self.http[i].ing.label);
            self.http_close_conn(i);
            self.http[i].phase = Phase::Stopped;
            if let Some(p) = self.http[i].ing.publisher.take() {
                let label = self.http[i].ing.label.clone();
                self.finish_publish(p, &label);
            }
        }
        for w in wanted {
            let present = self
                .http
                .iter()
                .any(|s| !matches!(s.phase, Phase::Stopped) && same(s, &w));
            if !present {
                tracing::info!("{}: added by a reload", w.ing.label);
                self.http.push(w);
            }
        }
    }

    /// Shutdown: close every connection, end publishing.
    pub(super) fn close_http_sources(&mut self) {
        for i in 0..self.http.len() {
            self.http_close_conn(i);
            self.http[i].phase = Phase::Stopped;
            if let Some(p) = self.http[i].ing.publisher.take() {
                let label = self.http[i].ing.label.clone();
                self.finish_publish(p, &label);
            }
        }
    }
}
