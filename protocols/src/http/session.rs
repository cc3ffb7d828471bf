//! The per-connection server session.
//!
//! Memory: an idle session owns no heap memory. A head that arrives whole in
//! one chunk is parsed straight from the caller's slice; only a partial head,
//! a partial body, or pipelined bytes behind the current request are copied
//! into the session's buffer, which is freed again as soon as it is drained.
use std::mem;
use std::time::{Duration, Instant};

use super::head::{self, Parsed, Refusal};
use super::{HttpError, Request, response};

/// Limits a session enforces. All explicit, all configurable.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request head (request line + headers + CRLFCRLF). Over it: 431.
    pub max_head_bytes: usize,
    /// Most header lines. Over it: 431.
    pub max_headers: usize,
    /// Largest request body accepted; 0 = bodies rejected with 400.
    pub max_body_bytes: u64,
    /// Methods other than GET/HEAD/OPTIONS allowed (API listener: POST etc).
    pub allow_write_methods: bool,
    /// Time from the first byte of a head to its end (slowloris guard).
    pub head_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 0,
            allow_write_methods: false,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What the engine must do next.
#[derive(Debug)]
pub enum Output {
    /// A complete request to serve. Its body (when allowed) follows in `body`.
    Request(Request, Vec<u8>),
    /// Send these bytes (an error response) and close after them.
    Reject(Vec<u8>, HttpError),
    /// Close the connection now.
    Close,
}

/// One HTTP/1.1 server connection. Small when idle (no buffer allocated while
/// no partial head is pending).
///
/// Deadlines (`poll_timeout`):
/// - idle (nothing buffered): last `response_done` (or `new`) + `idle_timeout`;
///   passing it yields [`Output::Close`];
/// - a head partially received: its first byte + `head_timeout` (for a
///   pipelined head already buffered, the timer starts at `response_done`);
/// - a Content-Length body being received: last body bytes + `head_timeout`;
///   passing either yields a 408 [`Output::Reject`];
/// - while a request is out (between `Output::Request` and `response_done`):
///   none, the engine owns the send timer.
///
/// Pipelined bytes received while a request is being served are kept up to
/// `2 * max_head_bytes + max_body_bytes`; past that the session stops reading
/// and closes after the current response.
#[derive(Debug)]
pub struct ServerSession {
    /// Partial head, partial-head-after-pipelined-requests, or pipelined
    /// input not yet looked at. Empty (and unallocated) when idle.
    buf: Vec<u8>,
    state: State,
    /// Deadline for `Reading` / `Body`; meaningless in other states.
    deadline: Option<Instant>,
    /// No request after the current one (non-keep-alive request, EOF,
    /// graceful shutdown, backlog overflow).
    closing: bool,
    /// Input is ignored from now on (peer EOF, backlog overflow, reject).
    input_ended: bool,
}

#[derive(Debug)]
enum State {
    /// Waiting for a request head: idle when `buf` is empty, else a partial
    /// head is in `buf`.
    Reading,
    /// Head accepted, its Content-Length body being collected.
    Body(Box<PendingBody>),
    /// A complete request waiting for `poll_output`.
    Ready(Box<(Request, Vec<u8>)>),
    /// The request is out; waiting for `response_done`.
    Serving,
    /// An error response waiting for `poll_output`.
    Reject(Box<(Vec<u8>, HttpError)>),
    /// A close waiting for `poll_output`.
    Close,
    /// Reject or Close was handed out; nothing more happens.
    Done,
}

#[derive(Debug)]
struct PendingBody {
    request: Request,
    body: Vec<u8>,
}

impl PendingBody {
    fn remaining(&self) -> u64 {
        self.request.content_length - self.body.len() as u64
    }
}

/// Bodies are received into a buffer that grows as bytes arrive, starting at
/// most this large (a peer announcing a big length gets no memory for it).
const BODY_PREALLOC: u64 = 16 * 1024;

fn deadline_after(now: Instant, timeout: Duration) -> Option<Instant> {
    now.checked_add(timeout)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl ServerSession {
    /// A new session on a just-accepted connection at `now` (the idle timer
    /// starts).
    pub fn new(now: Instant, limits: &Limits) -> Self {
        Self {
            buf: Vec::new(),
            state: State::Reading,
            deadline: deadline_after(now, limits.idle_timeout),
            closing: false,
            input_ended: false,
        }
    }

    /// Feed received bytes. Never fails: problems surface as
    /// [`Output::Reject`] / [`Output::Close`] from `poll_output`.
    pub fn handle_input(&mut self, now: Instant, data: &[u8], limits: &Limits) {
        if data.is_empty() || self.input_ended {
            return;
        }
        match &mut self.state {
            State::Reading if self.buf.is_empty() => {
                // Fast path: parse straight from the caller's bytes.
                let used = self.start_request(now, data, limits);
                match self.state {
                    State::Reading => {
                        // Partial head: keep it, the head timer starts now.
                        self.buf.extend_from_slice(data);
                        self.deadline = deadline_after(now, limits.head_timeout);
                    }
                    State::Ready(_) => self.queue_backlog(&data[used..], limits),
                    _ => {}
                }
            }
            State::Reading => {
                // Only a line end can complete (or break) a head, so a chunk
                // without one is just appended: byte-at-a-time input does
                // not re-parse the head for every byte.
                if !data.contains(&b'\n') {
                    if self.buf.len() + data.len() > limits.max_head_bytes {
                        self.reject(Refusal::too_large(limits));
                    } else {
                        self.buf.extend_from_slice(data);
                    }
                    return;
                }
                self.buf.extend_from_slice(data);
                self.parse_buffered(now, limits);
            }
            State::Body(pending) => {
                let take = to_usize(pending.remaining()).min(data.len());
                pending.body.extend_from_slice(&data[..take]);
                if pending.remaining() > 0 {
                    self.deadline = deadline_after(now, limits.head_timeout);
                    return;
                }
                self.body_complete();
                self.queue_backlog(&data[take..], limits);
            }
            State::Ready(_) | State::Serving => self.queue_backlog(data, limits),
            State::Reject(_) | State::Close | State::Done => {}
        }
    }

    /// The peer closed its sending side (recv returned 0).
    pub fn handle_eof(&mut self) {
        self.input_ended = true;
        match self.state {
            State::Reading | State::Body(_) => self.close(),
            State::Ready(_) | State::Serving => self.closing = true,
            State::Reject(_) | State::Close | State::Done => {}
        }
    }

    /// The deadline from `poll_timeout` passed.
    pub fn handle_timeout(&mut self, now: Instant, limits: &Limits) {
        let _ = limits;
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.state {
            State::Reading if self.buf.is_empty() => self.close(),
            State::Reading | State::Body(_) => self.reject(Refusal {
                status: 408,
                error: HttpError::Timeout,
            }),
            _ => {}
        }
    }

    /// The response to the last request was fully handed to the socket.
    pub fn response_done(&mut self, now: Instant, limits: &Limits) {
        if !matches!(self.state, State::Serving) {
            return;
        }
        if self.closing {
            self.close();
            return;
        }
        self.state = State::Reading;
        if self.buf.is_empty() {
            self.buf = Vec::new();
            self.deadline = deadline_after(now, limits.idle_timeout);
            return;
        }
        self.parse_buffered(now, limits);
        if matches!(self.state, State::Reading) {
            self.deadline = deadline_after(now, limits.head_timeout);
        }
    }

    /// Next action, or `None` when waiting for input / a response to finish.
    pub fn poll_output(&mut self) -> Option<Output> {
        match mem::replace(&mut self.state, State::Done) {
            State::Ready(ready) => {
                let (mut request, body) = *ready;
                self.state = State::Serving;
                if !request.keep_alive {
                    self.closing = true;
                }
                if self.closing {
                    request.keep_alive = false;
                }
                Some(Output::Request(request, body))
            }
            State::Reject(reject) => {
                self.buf = Vec::new();
                let (bytes, error) = *reject;
                Some(Output::Reject(bytes, error))
            }
            State::Close => {
                self.buf = Vec::new();
                Some(Output::Close)
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// When `handle_timeout` must be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Reading | State::Body(_) => self.deadline,
            _ => None,
        }
    }

    /// Stop keep-alive: the current/next response is the last (graceful
    /// shutdown). An idle session yields `Output::Close`.
    ///
    /// A head or body already partly received is still completed (within its
    /// deadline) and served, with `keep_alive` false.
    pub fn close_after_response(&mut self) {
        self.closing = true;
        if matches!(self.state, State::Reading) && self.buf.is_empty() {
            self.close();
        }
    }

    /// Bytes the session holds on the heap for input (capacity of its
    /// buffer); 0 when idle. For tests and memory accounting.
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Look for a request head at the start of `bytes` (state `Reading`) and
    /// move to the state it leads to. Returns how many bytes of `bytes` were
    /// used (head and body); 0 while the head is partial.
    fn start_request(&mut self, now: Instant, bytes: &[u8], limits: &Limits) -> usize {
        match head::parse(bytes, limits) {
            Err(refusal) => {
                self.reject(refusal);
                bytes.len()
            }
            Ok(Parsed::Partial) => 0,
            Ok(Parsed::Complete { request, head_len }) => {
                let announced = request.content_length;
                if announced == 0 {
                    self.state = State::Ready(Box::new((request, Vec::new())));
                    return head_len;
                }
                let rest = &bytes[head_len..];
                let take = to_usize(announced).min(rest.len());
                let mut body = Vec::with_capacity(to_usize(announced.min(BODY_PREALLOC)).max(take));
                body.extend_from_slice(&rest[..take]);
                self.state = State::Body(Box::new(PendingBody { request, body }));
                if take as u64 == announced {
                    self.body_complete();
                } else {
                    self.deadline = deadline_after(now, limits.head_timeout);
                }
                head_len + take
            }
        }
    }

    /// Parse from the buffered bytes (state `Reading`, `buf` not empty).
    fn parse_buffered(&mut self, now: Instant, limits: &Limits) {
        let mut buf = mem::take(&mut self.buf);
        let used = self.start_request(now, &buf, limits);
        match self.state {
            State::Reading => self.buf = buf,
            State::Reject(_) => {}
            _ => {
                if used < buf.len() {
                    buf.drain(..used);
                    self.buf = buf;
                }
            }
        }
    }

    /// State `Body` with nothing remaining → `Ready`.
    fn body_complete(&mut self) {
        if let State::Body(pending) = mem::replace(&mut self.state, State::Done) {
            let PendingBody { request, body } = *pending;
            self.state = State::Ready(Box::new((request, body)));
        }
    }

    /// Keep pipelined bytes for after the current request, within bounds.
    fn queue_backlog(&mut self, data: &[u8], limits: &Limits) {
        if data.is_empty() {
            return;
        }
        let cap = limits
            .max_head_bytes
            .saturating_mul(2)
            .saturating_add(to_usize(limits.max_body_bytes));
        if self.buf.len().saturating_add(data.len()) > cap {
            self.buf = Vec::new();
            self.input_ended = true;
            self.closing = true;
            return;
        }
        self.buf.extend_from_slice(data);
    }

    fn reject(&mut self, refusal: Refusal) {
        let allow: &[(&str, &str)] = if refusal.status == 405 {
            &[("Allow", "GET, HEAD, OPTIONS")]
        } else {
            &[]
        };
        let mut body = String::with_capacity(48);
        body.push_str(response::reason(refusal.status));
        body.push('\n');
        let bytes = response::write_simple(refusal.status, &body, allow, None, false);
        self.state = State::Reject(Box::new((bytes, refusal.error)));
        self.buf = Vec::new();
        self.input_ended = true;
        self.closing = true;
    }

    fn close(&mut self) {
        self.state = State::Close;
        self.buf = Vec::new();
        self.input_ended = true;
        self.closing = true;
    }
}
