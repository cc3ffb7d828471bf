//! # spate-protocols
//!
//! Every wire protocol Spate speaks, as a sans-IO state machine (the shape of
//! quinn-proto and str0m). No sockets, no file descriptors, no threads and no
//! clock: the engine hands bytes and a `now` in, and drains outputs until the
//! machine says what it waits for.
//!
//! The run-loop contract, for every session type in this crate:
//!
//! 1. Mutate: `handle_input(now, bytes)` with what the socket delivered, or
//!    `handle_timeout(now)` when the deadline from `poll_timeout()` passed.
//! 2. Drain: call `poll_output()` until it returns `None`, acting on each
//!    output (send bytes, serve a request, close).
//! 3. Ask `poll_timeout()` for the next deadline and sleep until input or it.
//!
//! Parsers accept split input (the two halves of a ring buffer) so the engine
//! never has to compact.
#![forbid(unsafe_code)]

pub mod http;

pub mod rtmp;
