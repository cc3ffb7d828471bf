//! The per-connection server session.
use std::time::{Duration, Instant};

use super::{HttpError, Request};

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
#[derive(Debug)]
pub struct ServerSession {
    _private: (),
}

impl ServerSession {
    /// A new session on a just-accepted connection at `now` (the idle timer
    /// starts).
    pub fn new(now: Instant, limits: &Limits) -> Self {
        let _ = (now, limits);
        todo!()
    }

    /// Feed received bytes. Never fails: problems surface as
    /// [`Output::Reject`] / [`Output::Close`] from `poll_output`.
    pub fn handle_input(&mut self, now: Instant, data: &[u8], limits: &Limits) {
        let _ = (now, data, limits);
        todo!()
    }

    /// The peer closed its sending side (recv returned 0).
    pub fn handle_eof(&mut self) {
        todo!()
    }

    /// The deadline from `poll_timeout` passed.
    pub fn handle_timeout(&mut self, now: Instant, limits: &Limits) {
        let _ = (now, limits);
        todo!()
    }

    /// The response to the last request was fully handed to the socket.
    pub fn response_done(&mut self, now: Instant, limits: &Limits) {
        let _ = (now, limits);
        todo!()
    }

    /// Next action, or `None` when waiting for input / a response to finish.
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }

    /// When `handle_timeout` must be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Stop keep-alive: the current/next response is the last (graceful
    /// shutdown). An idle session yields `Output::Close`.
    pub fn close_after_response(&mut self) {
        todo!()
    }
}
