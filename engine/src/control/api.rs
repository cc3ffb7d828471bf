//! The JSON API, `/metrics` and `/healthz`, on their own listener
//! (`[api]`, default `127.0.0.1:4242`).
//!
//! No async runtime and nothing on a worker loop: one `spate-api` thread
//! accepts on a blocking `TcpListener` and hands each connection to a
//! short-lived thread (at most `max_connections` at once; past that the
//! client gets 503 at once). Every connection has read and write timeouts
//! and a deadline for its whole request, so a stalled client holds one
//! thread for seconds, never the API. One request per connection
//! (`Connection: close`).
//!
//! Workers are reached only through the mesh: a [`ControlRequest`] per
//! worker, answered over a channel ([`ControlPlane::ask_all`]). Stream and
//! push edits change a copy of the configuration in force and put it in
//! force with [`ConfigStore::apply`].
//!
//! Every route is in [`ROUTES`] (dispatch, 404/405 and `GET /api` all read
//! it); docs/api.yaml documents each one, and a test checks both ways.
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{ConfigStore, ControlPlane, ControlRequest, SessionSnapshot, WorkerSnapshot};
use crate::config::{ApiConfig, Config, PushConfig, StreamConfig};

/// Largest request head, bytes.
const MAX_HEAD: usize = 16 * 1024;
/// Most header lines.
const MAX_HEADERS: usize = 64;
/// Read and write timeout of one socket operation.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client gets for its whole request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long workers get to answer a snapshot.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// `/healthz`: every worker must answer within this.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Deepest JSON nesting accepted in a request body.
const MAX_JSON_DEPTH: usize = 32;

/// Appends text to `/metrics` (the trigger runner's metrics, ...).
pub type MetricsWriter = Box<dyn Fn(&mut String) + Send + Sync>;

/// What the API thread works with.
pub struct ApiContext {
    control: Arc<ControlPlane>,
    store: Arc<ConfigStore>,
    started: Instant,
    extra_metrics: Mutex<Vec<MetricsWriter>>,
}

impl std::fmt::Debug for ApiContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiContext")
            .field("workers", &self.control.workers())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl ApiContext {
    /// The API's view of a started server.
    pub fn new(control: Arc<ControlPlane>, store: Arc<ConfigStore>) -> Self {
        Self {
            control,
            store,
            started: Instant::now(),
            extra_metrics: Mutex::new(Vec::new()),
        }
    }

    /// Add text to every `/metrics` answer (after Spate's own metrics; the
    /// writer must produce whole families in the exposition format).
    pub fn add_metrics_writer(&self, w: MetricsWriter) {
        self.extra_metrics.lock().expect("metrics lock").push(w);
    }

    fn snapshots(&self, timeout: Duration) -> Vec<WorkerSnapshot> {
        self.control.ask_all(timeout, ControlRequest::Snapshot)
    }
}

/// An address or network trusted like loopback (`[api] trusted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedNet {
    addr: IpAddr,
    prefix: u8,
}

impl TrustedNet {
    /// `10.1.2.3`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Self {
            addr: addr.to_canonical(),
            prefix,
        })
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Who may call without a token: loopback (127.0.0.0/8, ::1) and the
/// configured trusted networks.
#[derive(Debug, Clone)]
struct Auth {
    token: String,
    trusted: Vec<TrustedNet>,
}

impl Auth {
    /// From `[api]` (entries that do not parse were refused at validation).
    fn from_config(api: &ApiConfig) -> Self {
        Self {
            token: api.token.clone(),
            trusted: api
                .trusted
                .iter()
                .filter_map(|t| TrustedNet::parse(t).ok())
                .collect(),
        }
    }

    fn trusted(&self, peer: IpAddr) -> bool {
        peer.to_canonical().is_loopback() || self.trusted.iter().any(|n| n.contains(peer))
    }

    /// Whether the request may go on: a trusted peer, or the right token.
    fn allows(&self, peer: IpAddr, authorization: Option<&[u8]>) -> bool {
        if self.trusted(peer) {
            return true;
        }
        if self.token.is_empty() {
            return false;
        }
        let Some(given) = authorization.and_then(|h| {
            let h = h.trim_ascii();
            (h.len() > 7 && h[..7].eq_ignore_ascii_case(b"bearer ")).then(|| h[7..].trim_ascii())
        }) else {
            return false;
        };
        constant_time_eq(given, self.token.as_bytes())
    }
}

/// Compare without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

/// The running API listener.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Bind `[api] bind:port` (done first, so a busy port fails the start
    /// before any worker runs).
    pub fn bind(cfg: &ApiConfig) -> std::io::Result<TcpListener> {
        TcpListener::bind(SocketAddr::new(cfg.bind, cfg.port))
    }

    /// Serve on `listener` (from [`ApiServer::bind`]).
    pub fn start(
        listener: TcpListener,
        cfg: &ApiConfig,
        ctx: Arc<ApiContext>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        for t in &cfg.trusted {
            TrustedNet::parse(t)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let limits = Limits {
            max_body: cfg.max_body_bytes,
            max_connections: cfg.max_connections,
        };
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("spate-api".into())
                .spawn(move || accept_loop(listener, ctx, limits, &stop))?
        };
        tracing::info!("API, /metrics and /healthz on http://{addr}");
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting (requests being answered finish on their own
    /// threads).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        let woke = TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok();
        if let Some(t) = self.thread.take() {
            if woke {
                let _ = t.join();
            } else {
                tracing::warn!("API listener did not wake up to stop; leaving its thread");
            }
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_body: usize,
    max_connections: usize,
}

fn accept_loop(listener: TcpListener, ctx: Arc<ApiContext>, limits: Limits, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (mut sock, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("API: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
        let _ = sock.set_write_timeout(Some(IO_TIMEOUT));
        let _ = sock.set_nodelay(true);
        if active.load(Ordering::SeqCst) >= limits.max_connections {
            tracing::info!(
                "API: {peer}: {} connections busy; answering 503",
                limits.max_connections
            );
            let r = Reply::error(503, "too many API connections at once; retry shortly");
            let _ = sock.write_all(&r.to_bytes());
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (ctx, active2) = (ctx.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("spate-api-conn".into())
            .spawn(move || {
                // A bug in a handler must not leak the connection's slot.
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve(&mut sock, peer, &ctx, limits)
                }));
                if served.is_err() {
                    tracing::error!("API: {peer}: the handler panicked; connection closed");
                }
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("API: {peer}: cannot start a thread: {e}");
        }
    }
}

/// An answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    allow: Option<String>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Self {
        let mut body = serde_json::to_vec_pretty(v).unwrap_or_else(|_| b"{}".to_vec());
        body.push(b'\n');
        Self {
            status,
            content_type: "application/json",
            body,
            allow: None,
        }
    }

    fn ok(v: Value) -> Self {
        Self::json(200, &v)
    }

    fn error(status: u16, message: &str) -> Self {
        let code = match status {
            400 => "bad_request",
            401 => "unauthorized",
            404 => "not_found",
            405 => "method_not_allowed",
            409 => "conflict",
            411 => "length_required",
            413 => "too_large",
            431 => "head_too_large",
            503 => "unavailable",
            _ => "internal",
        };
        Self::json(
            status,
            &json!({"error": message, "code": code, "status": status}),
        )
    }

    fn no_route(method: &str, path: &str) -> Self {
        Self::json(
            404,
            &json!({
                "error": format!("no route {method} {path} (GET /api lists them)"),
                "code": "no_route",
                "status": 404
            }),
        )
    }

    fn text(status: u16, content_type: &'static str, body: String) -> Self {
        Self {
            status,
            content_type,
            body: body.into_bytes(),
            allow: None,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            411 => "Length Required",
            413 => "Payload Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nServer: spate\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 401 {
            head.push_str("WWW-Authenticate: Bearer realm=\"spate\"\r\n");
        }
        if let Some(a) = &self.allow {
            head.push_str(&format!("Allow: {a}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A parsed request.
#[derive(Debug)]
struct ApiRequest {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// Why a request could not be read; answered (if the client is still
/// there) and logged.
#[derive(Debug)]
enum ReadError {
    /// The client went away or stalled: nothing to answer.
    Gone(String),
    /// Answer this.
    Answer(Reply, String),
}

fn read_request(
    sock: &mut TcpStream,
    peer: SocketAddr,
    auth: &Auth,
    limits: Limits,
) -> Result<ApiRequest, ReadError> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Answer(
                Reply::error(431, &format!("request head over {MAX_HEAD} bytes")),
                "head too large".into(),
            ));
        }
        if Instant::now() >= deadline {
            return Err(ReadError::Gone("request head not complete in time".into()));
        }
        match sock.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(ReadError::Gone(String::new())),
            Ok(0) => return Err(ReadError::Gone("closed mid-head".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(ReadError::Gone(format!("reading the head: {e}"))),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let bad = |why: String| ReadError::Answer(Reply::error(400, &why), why);
    match req.parse(&buf[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete request head".into())),
        Err(e) => return Err(bad(format!("malformed request head: {e}"))),
    }
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    let mut content_length: Option<usize> = None;
    let mut authorization = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            match v {
                Some(v) if content_length.is_none_or(|c| c == v) => content_length = Some(v),
                _ => return Err(bad("bad or conflicting Content-Length".into())),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Answer(
                Reply::error(
                    411,
                    "Transfer-Encoding is not supported: send the body with Content-Length",
                ),
                "chunked body".into(),
            ));
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization = Some(h.value);
        }
    }
    // Authentication before the body: an unauthenticated client cannot
    // make us read (or judge) megabytes.
    if !auth.allows(peer.ip(), authorization) {
        let why = if authorization.is_some() {
            "wrong bearer token"
        } else {
            "this address needs Authorization: Bearer <token>"
        };
        return Err(ReadError::Answer(
            Reply::error(401, why),
            format!("{method} {path}: {why}"),
        ));
    }
    let len = content_length.unwrap_or(0);
    if len > limits.max_body {
        return Err(ReadError::Answer(
            Reply::error(
                413,
                &format!(
                    "request body of {len} bytes is over api.max_body_bytes ({})",
                    limits.max_body
                ),
            ),
            format!("{method} {path}: body of {len} bytes"),
        ));
    }
    let mut body = buf[head_end..].to_vec();
    body.truncate(len);
    while body.len() < len {
        if Instant::now() >= deadline {
            return Err(ReadError::Gone("request body not complete in time".into()));
        }
        let want = (len - body.len()).min(chunk.len());
        match sock.read(&mut chunk[..want]) {
            Ok(0) => return Err(ReadError::Gone("closed mid-body".into())),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(ReadError::Gone(format!("reading the body: {e}"))),
        }
    }
    Ok(ApiRequest { method, path, body })
}

fn serve(sock: &mut TcpStream, peer: SocketAddr, ctx: &ApiContext, limits: Limits) {
    // Token, trusted networks and the body limit as the configuration in
    // force says now (a reload changes them; address and connection limit
    // stay until a restart).
    let cfg = ctx.store.current();
    let auth = Auth::from_config(&cfg.api);
    let limits = Limits {
        max_body: cfg.api.max_body_bytes,
        ..limits
    };
    drop(cfg);
    let mut head_only = false;
    let reply = match read_request(sock, peer, &auth, limits) {
        Ok(mut req) => {
            // HEAD is GET without the body (Content-Length stays).
            let head = req.method == "HEAD";
            if head {
                req.method = "GET".into();
            }
            head_only = head;
            let r = dispatch(ctx, &req);
            tracing::debug!("API: {peer}: {} {} {}", req.method, req.path, r.status);
            r
        }
        Err(ReadError::Gone(why)) => {
            if !why.is_empty() {
                tracing::info!("API: {peer}: {why}; closing");
            }
            return;
        }
        Err(ReadError::Answer(r, why)) => {
            tracing::info!("API: {peer}: {} ({why}); closing", r.status);
            r
        }
    };
    let mut bytes = reply.to_bytes();
    if head_only {
        bytes.truncate(bytes.len() - reply.body.len());
    }
    if let Err(e) = sock.write_all(&bytes) {
        tracing::info!("API: {peer}: cannot send the answer: {e}");
        return;
    }
    let _ = sock.shutdown(std::net::Shutdown::Write);
    // Let the client read the answer before the close: drain what it still
    // sends (briefly), so unread input does not turn the close into a reset.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 4096];
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        match sock.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Path parameters of a matched route.
type Params = Vec<(&'static str, String)>;

type Handler = fn(&ApiContext, &ApiRequest, &Params) -> Reply;

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path; `{name}` segments are parameters (the last one takes the rest
    /// of the path, so a session id `w0/c12.3` may be sent as is or
    /// percent-encoded).
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    handler: Handler,
}

/// Every route, in the order `GET /api` lists them.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/healthz",
        summary: "ok when every worker answers within 1 s",
        handler: healthz,
    },
    Route {
        method: "GET",
        path: "/metrics",
        summary: "Prometheus metrics (text format 0.0.4)",
        handler: metrics,
    },
    Route {
        method: "GET",
        path: "/api",
        summary: "this list of routes",
        handler: routes,
    },
    Route {
        method: "GET",
        path: "/api/streams",
        summary: "every configured or live stream",
        handler: streams_list,
    },
    Route {
        method: "POST",
        path: "/api/streams",
        summary: "add or replace a [[stream]]",
        handler: streams_put,
    },
    Route {
        method: "GET",
        path: "/api/streams/{name}",
        summary: "one stream",
        handler: stream_get,
    },
    Route {
        method: "DELETE",
        path: "/api/streams/{name}",
        summary: "remove a [[stream]]",
        handler: stream_delete,
    },
    Route {
        method: "GET",
        path: "/api/sessions",
        summary: "every connection attached to a stream",
        handler: sessions_list,
    },
    Route {
        method: "DELETE",
        path: "/api/sessions/{id}",
        summary: "close one session",
        handler: session_delete,
    },
    Route {
        method: "POST",
        path: "/api/sessions/kick",
        summary: "close a session by id, or every session of a stream",
        handler: sessions_kick,
    },
    Route {
        method: "GET",
        path: "/api/totals",
        summary: "counters of every worker, added up",
        handler: totals,
    },
    Route {
        method: "GET",
        path: "/api/config",
        summary: "the configuration in force (secrets redacted)",
        handler: config_get,
    },
    Route {
        method: "POST",
        path: "/api/reload",
        summary: "read the configuration file again and apply it",
        handler: reload,
    },
    Route {
        method: "GET",
        path: "/api/pushes",
        summary: "configured push rules and running pushes",
        handler: pushes_list,
    },
    Route {
        method: "POST",
        path: "/api/pushes",
        summary: "start pushing one stream to a target",
        handler: push_start,
    },
    Route {
        method: "DELETE",
        path: "/api/pushes",
        summary: "stop pushing one stream to a target",
        handler: push_stop,
    },
    Route {
        method: "GET",
        path: "/api/push_rules",
        summary: "the [[push]] rules",
        handler: push_rules_list,
    },
    Route {
        method: "POST",
        path: "/api/push_rules",
        summary: "add a [[push]] rule (stream name or base+)",
        handler: push_rule_add,
    },
    Route {
        method: "DELETE",
        path: "/api/push_rules",
        summary: "remove a [[push]] rule",
        handler: push_rule_remove,
    },
];

/// Decode `%XX` escapes (invalid ones are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` matches `pattern`, and its parameters.
fn match_route(pattern: &'static str, path: &str) -> Option<Params> {
    let pat: Vec<&'static str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    let mut params = Vec::new();
    for (i, p) in pat.iter().enumerate() {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let value = if i == pat.len() - 1 {
                segs.get(i..).map(|rest| rest.join("/"))?
            } else {
                segs.get(i)?.to_string()
            };
            if value.is_empty() {
                return None;
            }
            params.push((name, percent_decode(&value)));
        } else if segs.get(i) != Some(p) {
            return None;
        }
    }
    if !pat.last().is_some_and(|p| p.starts_with('{')) && segs.len() != pat.len() {
        return None;
    }
    Some(params)
}

fn dispatch(ctx: &ApiContext, req: &ApiRequest) -> Reply {
    let path = if req.path.len() > 1 {
        req.path.trim_end_matches('/')
    } else {
        req.path.as_str()
    };
    let mut allowed = Vec::new();
    let mut best: Option<(&Route, Params)> = None;
    for r in ROUTES {
        let Some(params) = match_route(r.path, path) else {
            continue;
        };
        // A literal route beats one with a parameter
        // (`/api/sessions/kick` vs `/api/sessions/{id}`).
        let literal = params.is_empty();
        if r.method == req.method {
            let better = match &best {
                None => true,
                Some((_, p)) => literal && !p.is_empty(),
            };
            if better {
                best = Some((r, params));
            }
        } else if !allowed.contains(&r.method) {
            allowed.push(r.method);
        }
    }
    if let Some((r, params)) = best {
        return (r.handler)(ctx, req, &params);
    }
    if allowed.is_empty() {
        return Reply::no_route(&req.method, path);
    }
    let mut r = Reply::error(
        405,
        &format!(
            "{} is not allowed here; use {}",
            req.method,
            allowed.join(", ")
        ),
    );
    r.allow = Some(allowed.join(", "));
    r
}

fn param<'a>(params: &'a Params, name: &str) -> &'a str {
    params
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, v)| v.as_str())
}

/// How deep `{`/`[` nest in a JSON text (outside strings), stopping early
/// once past `limit`.
fn json_depth(body: &[u8], limit: usize) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in body {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
                if max > limit {
                    return max;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The body as `T` (unknown fields refused), or a 400 saying what is wrong.
fn parse_body<T: for<'de> Deserialize<'de>>(req: &ApiRequest) -> Result<T, Reply> {
    if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Reply::error(
            400,
            "request body: expected a JSON object, got nothing",
        ));
    }
    if json_depth(&req.body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH {
        return Err(Reply::error(
            400,
            &format!("request body: JSON nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    serde_json::from_slice(&req.body).map_err(|e| Reply::error(400, &format!("request body: {e}")))
}

/// Apply an edited configuration; the answer.
fn apply(ctx: &ApiContext, new: Config, what: Value) -> Reply {
    match ctx.store.apply(new) {
        Ok(summary) => Reply::ok(json!({"ok": true, "summary": summary, "applied": what})),
        Err(e) => Reply::error(400, &format!("configuration refused, nothing changed: {e}")),
    }
}

fn healthz(ctx: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    let n = ctx.snapshots(HEALTH_TIMEOUT).len();
    let want = ctx.control.workers();
    if n == want {
        Reply::text(200, "text/plain; charset=utf-8", "ok\n".into())
    } else {
        Reply::text(
            503,
            "text/plain; charset=utf-8",
            format!("unhealthy: {n} of {want} workers answered within 1 s\n"),
        )
    }
}

fn metrics(ctx: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    let snaps = ctx.snapshots(ASK_TIMEOUT);
    let mut out = String::with_capacity(16 * 1024);
    super::metrics::render(
        &snaps,
        ctx.control.workers(),
        ctx.started.elapsed().as_secs_f64(),
        &mut out,
    );
    for w in ctx.extra_metrics.lock().expect("metrics lock").iter() {
        w(&mut out);
    }
    Reply::text(200, super::metrics::CONTENT_TYPE, out)
}

fn routes(_: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    let list: Vec<Value> = ROUTES
        .iter()
        .map(|r| json!({"method": r.method, "path": r.path, "summary": r.summary}))
        .collect();
    Reply::ok(json!({ "routes": list }))
}

/// The configured base a stream name falls under.
fn configured<'a>(cfg: &'a Config, name: &str) -> Option<&'a StreamConfig> {
    let base = name.split_once('+').map_or(name, |(b, _)| b);
    cfg.streams.iter().find(|s| s.name == base)
}

fn stream_json(
    name: &str,
    cfg: Option<&StreamConfig>,
    live: Option<&super::StreamSnapshot>,
) -> Value {
    let state = match live {
        None => "offline",
        Some(s) if s.publisher.is_some() => "live",
        Some(s) if s.reconnecting => "reconnecting",
        Some(_) => "live",
    };
    let viewers = live.map(|s| s.viewers).unwrap_or_default();
    let p = live.and_then(|s| s.publisher.as_ref());
    json!({
        "name": name,
        "state": state,
        "configured": cfg.is_some(),
        "source": cfg.and_then(|c| c.source.clone()),
        "connector": p.map(|p| p.connector),
        "tracks": p.map(|p| p.tracks.clone()).unwrap_or_default(),
        "viewers": {
            "total": viewers.flv + viewers.ts + viewers.rtmp,
            "flv": viewers.flv,
            "ts": viewers.ts,
            "rtmp": viewers.rtmp,
            "hls_requests": viewers.hls_requests,
            "cmaf_requests": viewers.cmaf_requests,
        },
        "bytes_in": p.map_or(0, |p| p.bytes_in),
        "bitrate_in": p.map_or(0, |p| p.bitrate_in),
        "publishing_seconds": p.map_or(0.0, |p| p.seconds),
        "segments": live.map_or(0, |s| s.segments),
        "segment_bytes": live.map_or(0, |s| s.segment_bytes),
    })
}

fn streams_list(ctx: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    let cfg = ctx.store.current();
    let live = super::snapshot::merge_streams(&ctx.snapshots(ASK_TIMEOUT));
    let mut out = Vec::new();
    for (name, s) in &live {
        out.push(stream_json(name, configured(&cfg, name), Some(s)));
    }
    for st in &cfg.streams {
        if !live.contains_key(&st.name) {
            out.push(stream_json(&st.name, Some(st), None));
        }
    }
    Reply::ok(json!({ "streams": out }))
}

fn stream_get(ctx: &ApiContext, _: &ApiRequest, params: &Params) -> Reply {
    let name = param(params, "name");
    let cfg = ctx.store.current();
    let live = super::snapshot::merge_streams(&ctx.snapshots(ASK_TIMEOUT));
    let exact = cfg.streams.iter().find(|s| s.name == name);
    match live.get(name) {
        Some(s) => Reply::ok(stream_json(name, configured(&cfg, name), Some(s))),
        None if exact.is_some() => Reply::ok(stream_json(name, exact, None)),
        None => Reply::error(
            404,
            &format!("no stream {name:?} (neither live nor configured)"),
        ),
    }
}

fn streams_put(ctx: &ApiContext, req: &ApiRequest, _: &Params) -> Reply {
    let st: StreamConfig = match parse_body(req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut cfg = (*ctx.store.current()).clone();
    let what = serde_json::to_value(&st).unwrap_or(Value::Null);
    match cfg.streams.iter_mut().find(|s| s.name == st.name) {
        Some(s) => *s = st,
        None => cfg.streams.push(st),
    }
    apply(ctx, cfg, what)
}

fn stream_delete(ctx: &ApiContext, _: &ApiRequest, params: &Params) -> Reply {
    let name = param(params, "name");
    let mut cfg = (*ctx.store.current()).clone();
    let before = cfg.streams.len();
    cfg.streams.retain(|s| s.name != name);
    if cfg.streams.len() == before {
        return Reply::error(404, &format!("no [[stream]] named {name:?}"));
    }
    apply(ctx, cfg, json!({ "removed": name }))
}

fn all_sessions(ctx: &ApiContext) -> Vec<SessionSnapshot> {
    let mut all: Vec<SessionSnapshot> = ctx
        .control
        .ask_all(ASK_TIMEOUT, ControlRequest::Sessions)
        .into_iter()
        .flatten()
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

fn sessions_list(ctx: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    Reply::ok(json!({ "sessions": all_sessions(ctx) }))
}

fn kick(ctx: &ApiContext, id: Option<String>, stream: Option<String>) -> usize {
    ctx.control
        .ask_all(ASK_TIMEOUT, |reply| ControlRequest::Kick {
            id: id.clone(),
            stream: stream.clone(),
            reply,
        })
        .into_iter()
        .sum()
}

fn session_delete(ctx: &ApiContext, _: &ApiRequest, params: &Params) -> Reply {
    let id = param(params, "id");
    if crate::deliver::http_worker::parse_session_id(id).is_none() {
        return Reply::error(
            400,
            &format!("{id:?} is not a session id (like w0/c12.3, as GET /api/sessions lists)"),
        );
    }
    match kick(ctx, Some(id.to_string()), None) {
        0 => Reply::error(404, &format!("no session {id}")),
        n => Reply::ok(json!({ "kicked": n })),
    }
}

/// `POST /api/sessions/kick`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    id: Option<String>,
    stream: Option<String>,
}

fn sessions_kick(ctx: &ApiContext, req: &ApiRequest, _: &Params) -> Reply {
    let body: KickBody = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.id.is_none() && body.stream.is_none() {
        return Reply::error(400, "request body: give `id` or `stream`");
    }
    if let Some(id) = &body.id
        && crate::deliver::http_worker::parse_session_id(id).is_none()
    {
        return Reply::error(400, &format!("`id`: {id:?} is not a session id"));
    }
    Reply::ok(json!({ "kicked": kick(ctx, body.id, body.stream) }))
}

fn totals(ctx: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    let snaps = ctx.snapshots(ASK_TIMEOUT);
    let mut c = crate::deliver::http_worker::Counters::default();
    let (mut http, mut rtmp) = (0u64, 0u64);
    for s in &snaps {
        c.add(&s.counters);
        http += s.connections.http;
        rtmp += s.connections.rtmp;
    }
    let streams = super::snapshot::merge_streams(&snaps);
    let viewers: u64 = streams
        .values()
        .map(|s| s.viewers.flv + s.viewers.ts + s.viewers.rtmp)
        .sum();
    Reply::ok(json!({
        "workers": ctx.control.workers(),
        "workers_answering": snaps.len(),
        "uptime_seconds": ctx.started.elapsed().as_secs_f64(),
        "connections": {"http": http, "rtmp": rtmp},
        "streams_live": streams.len(),
        "viewers": viewers,
        "counters": c,
    }))
}

/// The configuration as JSON with its secrets replaced.
fn redacted(cfg: &Config) -> Value {
    let mut v = serde_json::to_value(cfg).unwrap_or(Value::Null);
    for (section, key) in [("api", "token"), ("access", "play_secret")] {
        if let Some(s) = v.get_mut(section).and_then(|s| s.get_mut(key))
            && s.as_str().is_some_and(|t| !t.is_empty())
        {
            *s = Value::String("<redacted>".into());
        }
    }
    v
}

fn config_get(ctx: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    let cfg = ctx.store.current();
    Reply::ok(json!({
        "config": redacted(&cfg),
        "last_reload_error": ctx.store.last_error(),
    }))
}

fn reload(ctx: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    match ctx.store.reload() {
        Ok(summary) => Reply::ok(json!({"ok": true, "summary": summary})),
        Err(e) if e.starts_with("cannot read config file") => {
            Reply::error(500, &format!("reload failed, configuration unchanged: {e}"))
        }
        Err(e) => Reply::error(
            400,
            &format!("reload refused, configuration unchanged: {e}"),
        ),
    }
}

fn pushes_list(ctx: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    let cfg = ctx.store.current();
    let mut running: Vec<super::PushSnapshot> = ctx
        .snapshots(ASK_TIMEOUT)
        .into_iter()
        .flat_map(|s| s.pushes)
        .collect();
    running.sort_by(|a, b| (&a.stream, &a.target).cmp(&(&b.stream, &b.target)));
    Reply::ok(json!({"rules": cfg.pushes, "running": running}))
}

fn push_rules_list(ctx: &ApiContext, _: &ApiRequest, _: &Params) -> Reply {
    Reply::ok(json!({"rules": ctx.store.current().pushes}))
}

/// Add the rule in the body (`exact`: a stream name, not `base+`).
fn add_rule(ctx: &ApiContext, req: &ApiRequest, exact: bool) -> Reply {
    let rule: PushConfig = match parse_body(req) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if exact && rule.stream.ends_with('+') {
        return Reply::error(
            400,
            "`stream`: a push is of one stream; POST /api/push_rules takes base+ patterns",
        );
    }
    let mut cfg = (*ctx.store.current()).clone();
    if cfg
        .pushes
        .iter()
        .any(|p| p.stream == rule.stream && p.target == rule.target)
    {
        return Reply::error(
            409,
            &format!("{} is already pushed to {}", rule.stream, rule.target),
        );
    }
    let what = json!({"stream": rule.stream, "target": rule.target});
    cfg.pushes.push(rule);
    apply(ctx, cfg, what)
}

/// Remove the rule in the body.
fn remove_rule(ctx: &ApiContext, req: &ApiRequest) -> Reply {
    let rule: PushConfig = match parse_body(req) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut cfg = (*ctx.store.current()).clone();
    let before = cfg.pushes.len();
    cfg.pushes
        .retain(|p| !(p.stream == rule.stream && p.target == rule.target));
    if cfg.pushes.len() == before {
        return Reply::error(
            404,
            &format!("no push of {} to {}", rule.stream, rule.target),
        );
    }
    apply(
        ctx,
        cfg,
        json!({"removed": {"stream": rule.stream, "target": rule.target}}),
    )
}

fn push_start(ctx: &ApiContext, req: &ApiRequest, _: &Params) -> Reply {
    add_rule(ctx, req, true)
}

fn push_stop(ctx: &ApiContext, req: &ApiRequest, _: &Params) -> Reply {
    remove_rule(ctx, req)
}

fn push_rule_add(ctx: &ApiContext, req: &ApiRequest, _: &Params) -> Reply {
    add_rule(ctx, req, false)
}

fn push_rule_remove(ctx: &ApiContext, req: &ApiRequest, _: &Params) -> Reply {
    remove_rule(ctx, req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_networks_match() {
        let n = TrustedNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.200.1.2".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.1.1".parse().unwrap()));
        let one = TrustedNet::parse("192.168.1.7").unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        assert!(
            TrustedNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            TrustedNet::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        for bad in ["", "10.0.0.0/33", "nope", "::/129", "1.2.3.4/x"] {
            assert!(TrustedNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        let auth = Auth {
            token: "s3cret".into(),
            trusted: vec![],
        };
        let far: IpAddr = "10.9.9.9".parse().unwrap();
        assert!(auth.allows("127.0.0.5".parse().unwrap(), None));
        assert!(auth.allows(far, Some(b"Bearer s3cret")));
        assert!(auth.allows(far, Some(b"bearer  s3cret ")));
        for bad in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cretx",
            b"s3cret",
            b"Bearer ",
            b"",
        ] {
            assert!(
                !auth.allows(far, Some(bad)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(!auth.allows(far, None));
        let no_token = Auth {
            token: String::new(),
            trusted: vec![],
        };
        assert!(!no_token.allows(far, Some(b"Bearer ")));
    }

    #[test]
    fn routes_match_with_parameters() {
        assert_eq!(match_route("/api/streams", "/api/streams"), Some(vec![]));
        assert_eq!(match_route("/api/streams", "/api/streams/x"), None);
        assert_eq!(
            match_route("/api/streams/{name}", "/api/streams/live+a"),
            Some(vec![("name", "live+a".to_string())])
        );
        assert_eq!(
            match_route("/api/sessions/{id}", "/api/sessions/w0/c1.2"),
            Some(vec![("id", "w0/c1.2".to_string())])
        );
        assert_eq!(
            match_route("/api/sessions/{id}", "/api/sessions/w0%2Fc1.2"),
            Some(vec![("id", "w0/c1.2".to_string())])
        );
        assert_eq!(match_route("/api/streams/{name}", "/api/streams/"), None);
    }

    #[test]
    fn json_depth_ignores_brackets_in_strings() {
        assert_eq!(json_depth(br#"{"a": "[[[[{{{"}"#, 32), 1);
        assert_eq!(json_depth(br#"[[[]]]"#, 32), 3);
        let deep = "[".repeat(10_000);
        assert!(json_depth(deep.as_bytes(), 32) > 32);
    }

    proptest::proptest! {
        /// Whatever a client sends as a path or body, the routing and body
        /// checks answer without panicking.
        #[test]
        fn arbitrary_paths_and_bodies_never_panic(path in "(/[a-z%0-9A-F.+{}]{0,12}){0,6}", body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            for r in ROUTES {
                let _ = match_route(r.path, &path);
            }
            let _ = percent_decode(&path);
            let _ = json_depth(&body, MAX_JSON_DEPTH);
            let req = ApiRequest { method: "POST".into(), path, body };
            let _ = parse_body::<KickBody>(&req);
            let _ = parse_body::<StreamConfig>(&req);
            let _ = crate::deliver::http_worker::parse_session_id(&req.path);
        }
    }

    #[test]
    fn every_route_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
