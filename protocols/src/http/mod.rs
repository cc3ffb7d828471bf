//! HTTP/1.1 server side, sans-IO.
//!
//! [`ServerSession`] turns received bytes into [`Request`]s (httparse does the
//! head), enforces the limits in [`Limits`], and tracks the keep-alive and
//! request-head deadlines. It never builds a response body: the engine decides
//! what a request maps to and uses [`response`] to write the head.
//!
//! Contract with the engine (one session per connection):
//! - `handle_input(now, data)` with each received chunk (any size, any split).
//! - Drain `poll_output()`:
//!   - [`Output::Request`]: serve it, then call `response_done(now)` when the
//!     whole response has been handed to the socket. Requests come out one at a
//!     time, in order (pipelining): the next one only after `response_done`.
//!   - [`Output::Reject`]: send these bytes (an error response), then close.
//!   - [`Output::Close`]: close the connection (peer finished, or
//!     `Connection: close` response done).
//! - `poll_timeout()` gives the deadline; past it call `handle_timeout(now)`,
//!   which yields [`Output::Close`] (or a 408 reject) for a stalled head or an
//!   idle keep-alive connection.
//!
//! Rejects (each with `Connection: close`, and without `Date`: the session
//! has no wall clock): 400 malformed head, bad target or percent-escape, or a
//! body where none is accepted; 405 (with `Allow: GET, HEAD, OPTIONS`) for
//! write methods unless `Limits::allow_write_methods`; 408 head/body timeout;
//! 411 chunked request body; 413 body over `Limits::max_body_bytes`; 431
//! head over `Limits::max_head_bytes` or `Limits::max_headers`; 505 version
//! other than HTTP/1.0 or 1.1.

mod head;
#[cfg(test)]
mod proptests;
pub mod response;
mod session;
#[cfg(test)]
mod tests;
pub mod upstream;

pub use head::{Method, RangeSpec, Request, Version, percent_decode};
pub use session::{Limits, Output, ServerSession};

/// What was wrong with a request, naming the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The head did not parse as HTTP/1.x.
    #[error("malformed request head: {0}")]
    Malformed(String),
    /// The head exceeded `Limits::max_head_bytes` (or header count).
    #[error("request head larger than {limit} bytes")]
    HeadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A method this server does not serve.
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    /// A request carried a body where none is accepted.
    #[error("request body not accepted ({0})")]
    UnexpectedBody(String),
    /// Unsupported HTTP version.
    #[error("unsupported HTTP version")]
    Version,
    /// A request body larger than `Limits::max_body_bytes` (answered 413).
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The head (or its body) did not arrive within `Limits::head_timeout`
    /// (answered 408).
    #[error("request not received within the head timeout")]
    Timeout,
}
