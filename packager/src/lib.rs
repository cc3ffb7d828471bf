//! # spate-packager
//!
//! The media model (tracks, frames) and every container format Spate writes
//! or reads. Design principles, in the spirit of mpeg2ts-reader:
//!
//! - **Pure.** No sockets, no file descriptors, no threads, no clock. Time is
//!   a value handed in by the caller.
//! - **Reference, don't copy.** Muxers write headers into a buffer they are
//!   handed and reference payload `Bytes` wherever the format allows.
//! - **Bad input is an error value**, never a panic: every parser returns
//!   [`Error`] naming what was wrong.
//!
//! The media model and the formats arrive with the live-core and segmented
//! delivery work; this crate currently holds only the error type.
#![forbid(unsafe_code)]

/// Errors of this crate: each variant says what was wrong with which input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input ended before a complete structure could be read.
    #[error("{what}: truncated, needed {needed} bytes, had {had}")]
    Truncated {
        /// Which structure was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        had: usize,
    },
}
