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

mod head;
pub mod response;
mod session;

pub use head::{Method, RangeSpec, Request, Version};
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
}
